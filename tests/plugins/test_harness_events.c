/* Tests of ew_harness_consume_event (core/harness.c), with small plugins defined here:
 * a sink that records the events it gets, a 1.1-era sink without the callback, and a
 * detector, which may not be given events. */
#include <edgewatch/testing.h>

#include "ptest.h"
#include "ptest_event.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

typedef struct recorder {
    uint64_t last_id;
    ew_event_state last_state;
    size_t calls;
    int answer; /* what consume_event returns */
} recorder;

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    (void)host, (void)node, (void)config;
    recorder *r = calloc(1, sizeof *r);
    if (!r)
        return EW_ERR;
    *self = r;
    return EW_OK;
}

static int s_consume(void *self, const ew_batch *in)
{
    (void)self, (void)in;
    return EW_OK;
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    (void)self, (void)in, (void)out;
    return EW_OK;
}

static recorder *s_last; /* the instance of the test that runs: tests run one at a time */

static int s_consume_event(void *self, const ew_event *ev)
{
    recorder *r = self;
    s_last = r;
    r->calls++;
    r->last_id = ev->id;
    r->last_state = ev->state;
    return r->calls == 1 ? EW_EAGAIN : EW_OK; /* the first one: "retry later" reaches the test */
}

static void s_destroy(void *self)
{
    free(self);
}

static const ew_plugin s_events_sink = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SINK,
    .name = "recorder",
    .version = "1.0.0",
    .license = "MIT",
    .init = s_init,
    .consume = s_consume,
    .destroy = s_destroy,
    .consume_event = s_consume_event,
};

/* ptest.c's helpers open "this executable's plugin": the recorder. */
EW_PLUGIN_EXPORT(s_events_sink)

static const ew_plugin s_samples_sink = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SINK,
    .name = "samples_only",
    .version = "1.0.0",
    .license = "MIT",
    .init = s_init,
    .consume = s_consume,
    .destroy = s_destroy,
};

static const ew_plugin s_detector = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "quiet",
    .version = "1.0.0",
    .license = "MIT",
    .init = s_init,
    .process = s_process,
    .destroy = s_destroy,
    .consume_event = s_consume_event, /* a mistake the harness must not act on */
};

static ew_harness *s_open(const ew_plugin *p)
{
    ew_harness *h = ew_harness_new(p, NULL);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(ew_harness_input(h, 1, (const char *[]){"x"}), EW_OK);
    int rc = ew_harness_init(h);
    PTEST_ASSERT_INIT(h, rc);
    return h;
}

START_TEST(delivers_the_event_and_its_code)
{
    ew_harness *h = s_open(&s_events_sink);
    ew_event ev = ptest_event(EW_EVENT_CLOSED, 42);
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_EAGAIN);
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_OK);
    ck_assert_ptr_nonnull(s_last);
    ck_assert_uint_eq(s_last->calls, 2);
    ck_assert_uint_eq(s_last->last_id, 42);
    ck_assert_int_eq(s_last->last_state, EW_EVENT_CLOSED);
    ck_assert_int_eq(ew_harness_consume_event(h, NULL), EW_EINVAL);
    ck_assert_uint_eq(s_last->calls, 2);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(sink_without_the_callback_is_a_clear_error)
{
    ew_harness *h = s_open(&s_samples_sink);
    ew_event ev = ptest_event(EW_EVENT_OPEN, 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "samples_only has no consume_event"), "%s",
                  ew_harness_error(h));
    ew_harness_destroy(&h);
    /* A descriptor built against 1.1 ends before the field: never read past it. */
    ew_plugin old = s_samples_sink;
    old.abi_minor = 1;
    old.struct_size = (uint32_t)offsetof(ew_plugin, consume_event);
    h = s_open(&old);
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "before 1.2"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(not_for_other_kinds_or_before_init)
{
    s_last = NULL;
    ew_harness *h = s_open(&s_detector);
    ew_event ev = ptest_event(EW_EVENT_OPEN, 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "not of the right kind"), "%s", ew_harness_error(h));
    ck_assert_ptr_null(s_last);
    ew_harness_destroy(&h);
    h = ew_harness_new(&s_events_sink, NULL);
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "call ew_harness_init first"), "%s", ew_harness_error(h));
    ck_assert_ptr_null(s_last);
    ew_harness_destroy(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("harness-events");
    TCase *tc = tcase_create("consume_event");
    tcase_add_test(tc, delivers_the_event_and_its_code);
    tcase_add_test(tc, sink_without_the_callback_is_a_clear_error);
    tcase_add_test(tc, not_for_other_kinds_or_before_init);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
