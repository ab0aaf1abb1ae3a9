/* Tests of the null sink plugin through the SDK harness: counting, and the rate/latency report. */
#include <edgewatch/testing.h>

#include "options.h"
#include "ptest.h"
#include "ptest_event.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


static char s_log[256];

static void s_base_setup(void)
{
    ptest_suite_dir_make("null");
}

/* The harness's log lines (stderr) go to a file per test. */
static void s_setup(void)
{
    ptest_capture_stderr(s_log, sizeof s_log);
}

static void s_teardown(void)
{
    ptest_release_stderr(s_log);
}

static ew_harness *s_make(const char *const *kv)
{
    const char *const names[] = {"a", "b"};
    return ptest_open(NULL, 2, names, kv, NULL);
}

static int64_t s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

START_TEST(descriptor)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_SINK);
    ck_assert_str_eq(p->name, "null");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
}
END_TEST

START_TEST(counts_and_discards)
{
    ew_harness *h = s_make(NULL);
    int64_t ts[100] = {0};
    double v[200] = {0};
    ck_assert_int_eq(ew_harness_consume(h, 100, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_consume(h, 37, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_consume(h, 0, ts, v), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "null_samples"), 137);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_DEBUG), 0); /* report is off */
    ew_harness_destroy(&h);
}
END_TEST

/* Reads "p50 X us, p99 Y us, max Z us" from the report. */
static void s_read_report(const char *text, unsigned long long *n, double *p50, double *p99,
                          double *max)
{
    const char *r = strstr(text, "received ");
    ck_assert_msg(r != NULL, "no report in: %s", text);
    ck_assert_int_eq(sscanf(r, "received %llu samples", n), 1);
    const char *l = strstr(r, "latency p50 ");
    ck_assert_msg(l != NULL, "%s", r);
    ck_assert_int_eq(sscanf(l, "latency p50 %lf us, p99 %lf us, max %lf us", p50, p99, max), 3);
}

START_TEST(report_gives_rate_and_latency_percentiles)
{
    ew_harness *h = s_make((const char *[]){"report", "true", NULL});
    /* Latencies of 1, 2, ..., 1000 ms (plus the moment it takes to consume). */
    enum { N = 1000 };
    int64_t ts[N];
    double v[2 * N] = {0};
    int64_t now = s_now();
    for (int i = 0; i < N; i++)
        ts[i] = now - (int64_t)(i + 1) * 1000000;
    ck_assert_int_eq(ew_harness_consume(h, N, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "null_samples"), N);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_log);
    unsigned long long n;
    double p50, p99, max;
    s_read_report(text, &n, &p50, &p99, &max);
    ck_assert_uint_eq(n, N);
    /* Buckets are 1/32 of a power of two wide (about 3 %); allow 50 ms of slack
     * for a slow machine between building the batch and consuming it. */
    ck_assert_msg(p50 >= 500e3 && p50 <= 500e3 * 1.04 + 50e3, "p50 %g", p50);
    ck_assert_msg(p99 >= 990e3 && p99 <= 990e3 * 1.04 + 50e3, "p99 %g", p99);
    ck_assert_msg(max >= 1000e3 && max <= 1000e3 + 50e3, "max %g", max);
    ck_assert_msg(p50 <= p99 && p99 <= max, "%s", text);
    ck_assert_msg(strstr(text, "samples/s"), "%s", text);
    free(text);
}
END_TEST

START_TEST(report_flags_future_timestamps)
{
    ew_harness *h = s_make((const char *[]){"report", "yes", NULL});
    int64_t ts[2] = {s_now() + 60000000000LL, s_now() - 1000000};
    double v[4] = {0};
    ck_assert_int_eq(ew_harness_consume(h, 2, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_log);
    ck_assert_msg(strstr(text, "future"), "%s", text);
    free(text);
}
END_TEST

START_TEST(report_without_samples)
{
    ew_harness *h = s_make((const char *[]){"report", "on", NULL});
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_INFO), 1);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_log);
    ck_assert_msg(strstr(text, "received 0 samples"), "%s", text);
    free(text);
}
END_TEST

START_TEST(option_errors)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    ew_harness_option(h, "report", "sometimes");
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "report") &&
                      strstr(ew_harness_error(h), "true or false"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(counts_events_apart_from_samples)
{
    ew_harness *h = s_make((const char *[]){"report", "on", NULL});
    ew_event open = ptest_event(EW_EVENT_OPEN, 1), closed = ptest_event(EW_EVENT_CLOSED, 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &open), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "null_events"), 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &closed), EW_OK);
    open.id = 2;
    ck_assert_int_eq(ew_harness_consume_event(h, &open), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "null_events"), 3);
    ck_assert_uint_eq(ew_harness_counter(h, "null_samples"), 0);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_log);
    ck_assert_msg(strstr(text, "received 2 events opened and 1 closed"), "%s", text);
    ck_assert_msg(!strstr(text, "received 0 samples"), "%s", text);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-null");
    TCase *tc = tcase_create("null");
    tcase_add_unchecked_fixture(tc, s_base_setup, ptest_suite_dir_remove);
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, descriptor);
    tcase_add_test(tc, counts_and_discards);
    tcase_add_test(tc, report_gives_rate_and_latency_percentiles);
    tcase_add_test(tc, report_flags_future_timestamps);
    tcase_add_test(tc, report_without_samples);
    tcase_add_test(tc, option_errors);
    tcase_add_test(tc, counts_events_apart_from_samples);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
