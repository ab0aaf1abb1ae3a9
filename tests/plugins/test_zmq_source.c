/* Tests of the zmq source through the SDK harness, with ZeroMQ PUSH and XPUB
 * peers in the test process over ipc:// and tcp://. */
#include <edgewatch/testing.h>

#include "options.h"
#include "ptest.h"

#include <check.h>
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
    snprintf(s_ep, sizeof s_ep, "ipc:///tmp/ew-zmq-test-%ld.sock", (long)getpid());
    s_ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(s_ctx);
}

static void s_teardown(void)
{
    zmq_ctx_term(s_ctx);
    unlink(s_ep + strlen("ipc://"));
}

static void *s_peer(int type, const char *ep, bool bind)
{
    void *s = zmq_socket(s_ctx, type);
    ck_assert_ptr_nonnull(s);
    int linger = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(bind ? zmq_bind(s, ep) : zmq_connect(s, ep), 0);
    return s;
}

static void s_send(void *s, const char *topic, const char *payload)
{
    if (topic)
        ck_assert_int_ge(zmq_send(s, topic, strlen(topic), ZMQ_SNDMORE), 0);
    ck_assert_int_ge(zmq_send(s, payload, strlen(payload), 0), 0);
}

static ew_harness *s_open(const char *const *kv, int *rc)
{
    return ptest_open_source("endpoint", s_ep, kv, rc);
}

static ew_harness *s_make(const char *const *kv)
{
    return ptest_open_source("endpoint", s_ep, kv, NULL);
}

/* Produces until `n` messages were received (good or bad); fails after 10 s. */
static void s_receive(ew_harness *h, uint64_t n)
{
    ptest_produce_until(h, "zmq_messages", n, "messages");
}

START_TEST(pull_json_with_timestamps)
{
    ew_harness *h = s_make((const char *[]){"socket", "pull", "mode", "bind", "channels",
                                            "temp, rpm", NULL});
    void *push = s_peer(ZMQ_PUSH, s_ep, false);
    s_send(push, NULL, "{\"temp\": 21.5, \"rpm\": 1500, \"ts\": 1700000000123}");
    s_send(push, NULL, "{\"rpm\": 7, \"ts\": \"2026-11-26T16:35:03.5Z\"}");
    s_send(push, NULL, "{\"temp\": -0.125}");
    s_receive(h, 3);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    const int64_t *ts = ew_harness_emitted_ts(h);
    ck_assert_int_eq(ts[0], 1700000000123000000LL);
    ck_assert_int_eq(ts[1], 1795710903500000000LL);
    ck_assert_int_gt(ts[2], 1700000000000000000LL); /* arrival time */
    ck_assert(ptest_row(h, 0)[0] == 21.5 && ptest_row(h, 0)[1] == 1500);
    ck_assert(isnan(ptest_row(h, 1)[0]) && ptest_row(h, 1)[1] == 7);
    ck_assert(ptest_row(h, 2)[0] == -0.125 && isnan(ptest_row(h, 2)[1]));
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_bad_messages"), 0);
    zmq_close(push);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(malformed_messages_are_counted_and_skipped)
{
    ew_harness *h = s_make((const char *[]){"socket", "pull", "mode", "bind", "channels", "a",
                                            "max_message", "64", NULL});
    void *push = s_peer(ZMQ_PUSH, s_ep, false);
    char big[200];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"a\": 1}", 8);
    big[sizeof big - 1] = '\0';
    s_send(push, NULL, "not json");
    s_send(push, NULL, "{\"a\": ");
    s_send(push, NULL, "[1]");
    s_send(push, NULL, "{\"a\": \"x\"}");
    s_send(push, NULL, "{\"b\": 1}");
    s_send(push, NULL, big);
    ck_assert_int_ge(zmq_send(push, "a", 1, ZMQ_SNDMORE), 0); /* three frames */
    ck_assert_int_ge(zmq_send(push, "b", 1, ZMQ_SNDMORE), 0);
    ck_assert_int_ge(zmq_send(push, "{\"a\": 1}", 8, 0), 0);
    ck_assert_int_ge(zmq_send(push, "{\"a\":\0}", 7, 0), 0); /* a NUL byte */
    s_send(push, NULL, "{\"a\": 2}");
    s_receive(h, 9);
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_bad_messages"), 8);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert(ptest_row(h, 0)[0] == 2);
    zmq_close(push);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(csv_payloads)
{
    ew_harness *h = s_make((const char *[]){"socket", "pull", "mode", "bind", "format", "csv",
                                            "channels", "x, y", NULL});
    void *push = s_peer(ZMQ_PUSH, s_ep, false);
    s_send(push, NULL, "1.5,2.5");
    s_send(push, NULL, "3,");
    s_send(push, NULL, "1,2,3");
    s_send(push, NULL, "a,b");
    s_receive(h, 4);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ck_assert(ptest_row(h, 0)[0] == 1.5 && ptest_row(h, 0)[1] == 2.5);
    ck_assert(ptest_row(h, 1)[0] == 3 && isnan(ptest_row(h, 1)[1]));
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_bad_messages"), 2);
    zmq_close(push);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(csv_with_a_timestamp_column)
{
    ew_harness *h = s_make((const char *[]){"socket", "pull", "mode", "bind", "format", "csv",
                                            "columns", "ts, x", "channels", "x", NULL});
    void *push = s_peer(ZMQ_PUSH, s_ep, false);
    s_send(push, NULL, "1700000000,4");
    s_receive(h, 1);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[0], 1700000000000000000LL);
    ck_assert(ptest_row(h, 0)[0] == 4);
    zmq_close(push);
    ew_harness_destroy(&h);
}
END_TEST

/* An XPUB peer tells when the subscription arrived, so nothing is sent before
 * the subscriber can receive it. */
static void s_wait_subscription(void *xpub, const char *topic)
{
    char buf[256];
    for (;;) {
        zmq_pollitem_t it = {xpub, 0, ZMQ_POLLIN, 0};
        ck_assert_int_eq(zmq_poll(&it, 1, 10000), 1);
        int n = zmq_recv(xpub, buf, sizeof buf, 0);
        ck_assert_int_ge(n, 1);
        if (buf[0] == 1 && (size_t)n - 1 == strlen(topic) && memcmp(buf + 1, topic, (size_t)n - 1) == 0)
            return;
    }
}

START_TEST(sub_with_topic_filters_over_tcp)
{
    void *pub = s_peer(ZMQ_XPUB, "tcp://127.0.0.1:*", true);
    char ep[128];
    size_t len = sizeof ep;
    ck_assert_int_eq(zmq_getsockopt(pub, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    ew_harness *h = s_make((const char *[]){"endpoint", ep, "topics", "pump1, pump2", "channels",
                                            "v", NULL});
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    s_wait_subscription(pub, "pump1");
    s_wait_subscription(pub, "pump2");
    s_send(pub, "other", "{\"v\": 100}");  /* not subscribed: never seen */
    s_send(pub, "pump1", "{\"v\": 1}");
    s_send(pub, NULL, "pump2 {\"v\": 2}");  /* topic in front of a single frame */
    s_send(pub, NULL, "other {\"v\": 101}");
    s_send(pub, "pump2x", "{\"v\": 3}");    /* a prefix match, as ZeroMQ filters */
    s_receive(h, 3);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    ck_assert(ptest_row(h, 0)[0] == 1 && ptest_row(h, 1)[0] == 2 && ptest_row(h, 2)[0] == 3);
    ck_assert_uint_eq(ew_harness_counter(h, "zmq_bad_messages"), 0);
    zmq_close(pub);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(connect_before_the_peer_exists)
{
    /* ZeroMQ connects in the background: no error while nobody listens. */
    ew_harness *h = s_make((const char *[]){"socket", "pull", "channels", "a", NULL});
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    ck_assert_uint_eq(ew_harness_emitted(h), 0);
    void *push = s_peer(ZMQ_PUSH, s_ep, true);
    s_send(push, NULL, "{\"a\": 9}");
    s_receive(h, 1);
    ck_assert(ptest_row(h, 0)[0] == 9);
    zmq_close(push);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(address_in_use_is_transient)
{
    void *pull = s_peer(ZMQ_PULL, "tcp://127.0.0.1:*", true);
    char ep[128];
    size_t len = sizeof ep;
    ck_assert_int_eq(zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    ew_harness *h = s_make((const char *[]){"socket", "pull", "mode", "bind", "endpoint", ep,
                                            "channels", "a", NULL});
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EAGAIN);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "cannot bind"));
    zmq_close(pull);
    ew_harness_destroy(&h);
}
END_TEST

static void s_expect_error(const char *const *kv, const char *needle)
{
    int rc;
    ew_harness *h = s_open(kv, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), needle), "\"%s\" lacks \"%s\"", ew_harness_error(h),
                  needle);
    ew_harness_destroy(&h);
}

START_TEST(option_errors)
{
    s_expect_error((const char *[]){"endpoint", "udp://x", "channels", "a", NULL}, "tcp://");
    s_expect_error((const char *[]){"socket", "pull", "topics", "x", "channels", "a", NULL},
                   "topics");
    s_expect_error((const char *[]){"channels", "a", "columns", "a", NULL}, "csv only");
    s_expect_error((const char *[]){"format", "csv", "channels", "a", "columns", "b", NULL},
                   "\"a\" is not one");
    s_expect_error((const char *[]){"channels", "a, a", NULL}, "listed twice");
    s_expect_error((const char *[]){"socket", "req", "channels", "a", NULL}, "socket");
    s_expect_error((const char *[]){NULL}, "channels");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-zmq-source");
    TCase *tc = tcase_create("zmq_source");
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, pull_json_with_timestamps);
    tcase_add_test(tc, malformed_messages_are_counted_and_skipped);
    tcase_add_test(tc, csv_payloads);
    tcase_add_test(tc, csv_with_a_timestamp_column);
    tcase_add_test(tc, sub_with_topic_filters_over_tcp);
    tcase_add_test(tc, connect_before_the_peer_exists);
    tcase_add_test(tc, address_in_use_is_transient);
    tcase_add_test(tc, option_errors);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
