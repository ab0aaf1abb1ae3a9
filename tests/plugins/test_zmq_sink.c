/* Tests of the zmq sink through the SDK harness, with ZeroMQ PULL and SUB peers
 * in the test process over ipc:// (a per-process socket path). */
#include <edgewatch/testing.h>

#include "options.h"
#include "ptest.h"
#include "ptest_event.h"

#include <check.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static char s_ep[160];
static void *s_ctx;

static void s_setup(void)
{
    snprintf(s_ep, sizeof s_ep, "ipc:///tmp/ew-zmq-sink-test-%ld.sock", (long)getpid());
    s_ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(s_ctx);
}

static void s_teardown(void)
{
    zmq_ctx_term(s_ctx);
    unlink(s_ep + strlen("ipc://"));
}

static ew_harness *s_open(size_t nch, const char *const *names, const char *const *kv, int *rc)
{
    return ptest_open(NULL, nch, names, kv, rc);
}

static ew_harness *s_make(size_t nch, const char *const *names, const char *const *kv)
{
    return ptest_open(NULL, nch, names, kv, NULL);
}

static void *s_peer(int type, bool bind, int hwm)
{
    void *s = zmq_socket(s_ctx, type);
    ck_assert_ptr_nonnull(s);
    int linger = 0, timeout = 10000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (hwm)
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (type == ZMQ_SUB)
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    ck_assert_int_eq(bind ? zmq_bind(s, s_ep) : zmq_connect(s, s_ep), 0);
    return s;
}

/* Receives one frame as a NUL-terminated string (bounded wait). */
static char *s_recv(void *s, bool *more)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    int n = zmq_msg_recv(&m, s, 0);
    ck_assert_msg(n >= 0, "no message within 10 s: %s", zmq_strerror(zmq_errno()));
    char *text = strndup(zmq_msg_data(&m), zmq_msg_size(&m));
    if (more)
        *more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    return text;
}

static double s_x(const char *text)
{
    json_object *o = json_tokener_parse(text);
    ck_assert_msg(o != NULL, "not JSON: %s", text);
    json_object *v, *x;
    ck_assert(json_object_object_get_ex(o, "values", &v) && json_object_object_get_ex(v, "x", &x));
    double d = json_object_get_double(x);
    json_object_put(o);
    return d;
}

START_TEST(descriptor)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_SINK);
    ck_assert_str_eq(p->name, "zmq");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
}
END_TEST

/* PUSH bound, nobody connected: the batch is refused as transient with the
 * endpoint named; once a puller connects, the retry delivers every sample once. */
START_TEST(push_waits_for_a_peer_then_delivers_all)
{
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names, (const char *[]){"endpoint", s_ep, "mode", "bind", NULL});
    enum { N = 50 };
    int64_t ts[N];
    double v[N];
    for (int i = 0; i < N; i++) {
        ts[i] = 1795710903000000000LL + i * 1000;
        v[i] = i;
    }
    ck_assert_int_eq(ew_harness_consume(h, N, ts, v), EW_EAGAIN);
    ck_assert_msg(strstr(ew_harness_error(h), "no peer connected to") && strstr(ew_harness_error(h), s_ep),
                  "%s", ew_harness_error(h));
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_sent"), 0);
    void *pull = s_peer(ZMQ_PULL, false, 0);
    int rc, tries = 0;
    while ((rc = ew_harness_consume(h, N, ts, v)) == EW_EAGAIN && tries++ < 1000)
        usleep(10000); /* the connection completes in the background */
    ck_assert_int_eq(rc, EW_OK);
    for (int i = 0; i < N; i++) {
        char *m = s_recv(pull, NULL);
        ck_assert(s_x(m) == i);
        free(m);
    }
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_sent"), N);
    ew_harness_destroy(&h);
    zmq_close(pull);
}
END_TEST

/* A connecting PUSH with ZMQ_IMMEDIATE queues nothing for an absent peer:
 * without it ZeroMQ would accept messages that are lost at close. */
START_TEST(push_connect_without_peer_takes_nothing)
{
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names, (const char *[]){"endpoint", s_ep, NULL});
    const int64_t ts[] = {1, 2};
    const double v[] = {1, 2};
    ck_assert_int_eq(ew_harness_consume(h, 2, ts, v), EW_EAGAIN);
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_sent"), 0);
    void *pull = s_peer(ZMQ_PULL, true, 0);
    int rc, tries = 0;
    while ((rc = ew_harness_consume(h, 2, ts, v)) == EW_EAGAIN && tries++ < 1000)
        usleep(10000);
    ck_assert_int_eq(rc, EW_OK);
    for (int i = 0; i < 2; i++) {
        char *m = s_recv(pull, NULL);
        ck_assert(s_x(m) == i + 1);
        free(m);
    }
    ew_harness_destroy(&h);
    zmq_close(pull);
}
END_TEST

/* Tiny high-water marks and a slow reader: the batch goes out in pieces over
 * many retries, and the reader sees every sample exactly once, in order. */
START_TEST(push_partial_batches_resume_without_loss_or_repeat)
{
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names,
                           (const char *[]){"endpoint", s_ep, "mode", "bind", "sndhwm", "5", NULL});
    void *pull = s_peer(ZMQ_PULL, false, 5);
    enum { N = 2000 };
    int64_t *ts = malloc(N * sizeof *ts);
    double *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) {
        ts[i] = i;
        v[i] = i;
    }
    int got = 0, partial = 0, rc;
    while ((rc = ew_harness_consume(h, N, ts, v)) == EW_EAGAIN) {
        if (ew_harness_counter(h, "zmq_sent") > 0)
            partial++;
        /* read what is there (waiting a little for it), then let the retry continue */
        char *m;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        zmq_pollitem_t it = {pull, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 10);
        while (zmq_msg_recv(&msg, pull, ZMQ_DONTWAIT) >= 0) {
            m = strndup(zmq_msg_data(&msg), zmq_msg_size(&msg));
            ck_assert_msg(s_x(m) == got, "got %s, expected x = %d", m, got);
            free(m);
            got++;
        }
        zmq_msg_close(&msg);
    }
    ck_assert_int_eq(rc, EW_OK);
    ck_assert_int_gt(partial, 1); /* it really was sent in pieces */
    while (got < N) {
        char *m = s_recv(pull, NULL);
        ck_assert_msg(s_x(m) == got, "got %s, expected x = %d", m, got);
        free(m);
        got++;
    }
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_sent"), N);
    free(ts);
    free(v);
    ew_harness_destroy(&h);
    zmq_close(pull);
}
END_TEST

/* PUB: two frames, the producing node's name then the JSON object. */
START_TEST(pub_sends_topic_then_json)
{
    const char *const names[] = {"x", "score", "anomaly"};
    ew_harness *h = s_make(3, names,
                           (const char *[]){"endpoint", s_ep, "mode", "bind", "socket", "pub", NULL});
    void *sub = s_peer(ZMQ_SUB, false, 0);
    int poll_ms = 0;
    const int64_t ts[] = {1795710903123456789LL};
    const double v[] = {4.5, 0.75, 1};
    /* Slow joiner: publish until the subscription has reached the publisher. */
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    while (zmq_poll(&it, 1, 20) == 0 && poll_ms < 10000) {
        ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
        poll_ms += 20;
    }
    bool more;
    char *topic = s_recv(sub, &more);
    ck_assert_str_eq(topic, "upstream");
    ck_assert(more);
    char *payload = s_recv(sub, &more);
    ck_assert(!more);
    ck_assert_str_eq(payload, "{\"ts\":\"2026-11-26T16:35:03.123456Z\",\"node\":\"upstream\","
                              "\"score\":0.75,\"anomaly\":true,\"values\":{\"x\":4.5}}");
    ck_assert_uint_ge(ew_harness_counter(h, "zmq_sent"), 1);
    free(topic);
    free(payload);
    ew_harness_destroy(&h);
    zmq_close(sub);
}
END_TEST

/* PUB with no subscriber never blocks: ZeroMQ drops, the sink counts what it sent. */
START_TEST(pub_without_subscriber_is_fire_and_forget)
{
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names,
                           (const char *[]){"endpoint", s_ep, "mode", "bind", "socket", "pub",
                                            "sndhwm", "1", NULL});
    const int64_t ts[] = {1, 2, 3};
    const double v[] = {1, 2, 3};
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(ew_harness_consume(h, 3, ts, v), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_sent"), 30);
    ew_harness_destroy(&h);
}
END_TEST

/* csv: ISO-8601 ts, then every channel in stream order; NaN is empty. */
START_TEST(csv_payload)
{
    const char *const names[] = {"a", "b", "score", "anomaly"};
    ew_harness *h = s_make(4, names,
                           (const char *[]){"endpoint", s_ep, "mode", "bind", "format", "csv", NULL});
    void *pull = s_peer(ZMQ_PULL, false, 0);
    const int64_t ts[] = {1000, 1795710903123456789LL};
    const double v[] = {20.25, NAN, 0.5, 0, 0.1 + 0.2, -3, 1, 1};
    int rc, tries = 0;
    while ((rc = ew_harness_consume(h, 2, ts, v)) == EW_EAGAIN && tries++ < 1000)
        usleep(10000);
    ck_assert_int_eq(rc, EW_OK);
    char *m1 = s_recv(pull, NULL), *m2 = s_recv(pull, NULL);
    ck_assert_str_eq(m1, "1970-01-01T00:00:00.000001Z,20.25,,0.5,0");
    ck_assert_str_eq(m2, "2026-11-26T16:35:03.123456Z,0.30000000000000004,-3,1,1");
    free(m1);
    free(m2);
    ew_harness_destroy(&h);
    zmq_close(pull);
}
END_TEST

START_TEST(config_errors)
{
    const char *const names[] = {"x"};
    int rc;
    ew_harness *h = s_open(1, names, (const char *[]){"endpoint", "http://example.org/", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "endpoint") && strstr(ew_harness_error(h), "tcp://"), "%s",
                  ew_harness_error(h));
    ew_harness_destroy(&h);
    h = s_open(1, names, (const char *[]){"endpoint", s_ep, "socket", "req", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "pub|push"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    /* the address is taken: the message names it and says what to do */
    void *other = zmq_socket(s_ctx, ZMQ_PULL);
    int linger = 0;
    zmq_setsockopt(other, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(zmq_bind(other, "tcp://127.0.0.1:*"), 0);
    char taken[128];
    size_t tlen = sizeof taken;
    ck_assert_int_eq(zmq_getsockopt(other, ZMQ_LAST_ENDPOINT, taken, &tlen), 0);
    h = s_open(1, names, (const char *[]){"endpoint", taken, "mode", "bind", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "cannot bind") && strstr(ew_harness_error(h), taken) &&
                      strstr(ew_harness_error(h), "another program"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    zmq_close(other);
}
END_TEST

/* ---- alert events (ABI 1.2 consume_event) ---- */

/* Whether a message arrives within `ms`. */
static bool s_pending(void *s, int ms)
{
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    return zmq_poll(&it, 1, ms) > 0;
}

/* PUSH: an event waits (transient error) until a puller is there, then goes
 * once, as one frame of the exact JSON; csv format does not apply to events. */
START_TEST(push_event_waits_then_is_sent_once)
{
    ew_harness *h = s_make(1, (const char *[]){"x"},
                           (const char *[]){"endpoint", s_ep, "mode", "bind", "format", "csv", NULL});
    ew_event open = ptest_event(EW_EVENT_OPEN, 1), closed = ptest_event(EW_EVENT_CLOSED, 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &open), EW_EAGAIN);
    ck_assert_msg(strstr(ew_harness_error(h), "open event 1 of node pump_z waits") &&
                      strstr(ew_harness_error(h), s_ep),
                  "%s", ew_harness_error(h));
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_sent"), 0);
    void *pull = s_peer(ZMQ_PULL, false, 0);
    int rc, tries = 0;
    while ((rc = ew_harness_consume_event(h, &open)) == EW_EAGAIN && tries++ < 1000)
        usleep(10000);
    ck_assert_int_eq(rc, EW_OK);
    ck_assert_int_eq(ew_harness_consume_event(h, &closed), EW_OK);
    bool more;
    char *m = s_recv(pull, &more);
    ck_assert(!more);
    ck_assert_str_eq(m, PTEST_EVENT_OPEN_JSON);
    free(m);
    m = s_recv(pull, &more);
    ck_assert(!more);
    ck_assert_str_eq(m, PTEST_EVENT_CLOSED_JSON);
    free(m);
    ck_assert_msg(!s_pending(pull, 200), "an event was sent twice");
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_sent"), 2);
    ew_harness_destroy(&h);
    zmq_close(pull);
}
END_TEST

/* PUB: [detector node's name][JSON], as samples are [origin][JSON]. */
START_TEST(pub_event_has_the_node_as_topic)
{
    ew_harness *h = s_make(1, (const char *[]){"x"},
                           (const char *[]){"endpoint", s_ep, "mode", "bind", "socket", "pub", NULL});
    void *sub = s_peer(ZMQ_SUB, false, 0);
    ew_event closed = ptest_event(EW_EVENT_CLOSED, 1);
    int waited = 0;
    while (!s_pending(sub, 20) && waited < 10000) { /* slow joiner */
        ck_assert_int_eq(ew_harness_consume_event(h, &closed), EW_OK);
        waited += 20;
    }
    bool more;
    char *topic = s_recv(sub, &more);
    ck_assert_str_eq(topic, "pump_z");
    ck_assert(more);
    char *payload = s_recv(sub, &more);
    ck_assert(!more);
    ck_assert_str_eq(payload, PTEST_EVENT_CLOSED_JSON);
    free(topic);
    free(payload);
    ew_harness_destroy(&h);
    zmq_close(sub);
}
END_TEST

START_TEST(bad_event_is_refused_clearly)
{
    ew_harness *h = s_make(1, (const char *[]){"x"}, (const char *[]){"endpoint", s_ep, "mode", "bind", NULL});
    ew_event ev = ptest_event(EW_EVENT_OPEN, 3);
    ev.n_channels = 4;
    ev.channels = NULL;
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "event 3 of node pump_z says 4 channels but gives none"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-zmq_sink");
    TCase *tc = tcase_create("zmq_sink");
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, descriptor);
    tcase_add_test(tc, push_waits_for_a_peer_then_delivers_all);
    tcase_add_test(tc, push_connect_without_peer_takes_nothing);
    tcase_add_test(tc, push_partial_batches_resume_without_loss_or_repeat);
    tcase_add_test(tc, pub_sends_topic_then_json);
    tcase_add_test(tc, pub_without_subscriber_is_fire_and_forget);
    tcase_add_test(tc, csv_payload);
    tcase_add_test(tc, config_errors);
    tcase_add_test(tc, push_event_waits_then_is_sent_once);
    tcase_add_test(tc, pub_event_has_the_node_as_topic);
    tcase_add_test(tc, bad_event_is_refused_clearly);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
