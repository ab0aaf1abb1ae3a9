/* Tests of the serial source through the SDK harness, reading the slave side of
 * pseudo-terminals the test writes to, and of the shared line parser (ewp_lines). */
#include <edgewatch/testing.h>

#include "ewp_lines.h"
#include "options.h"
#include "ptest.h"

#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A pseudo-terminal: the test writes to master; the plugin opens `link`, a
 * symbolic link to the slave (as socat's link= gives), so the device can be
 * made to disappear and come back under the same name. */
typedef struct s_pty {
    int master;
    char link[128];
} s_pty;

static void s_pty_open(s_pty *p, const char *link)
{
    p->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    ck_assert_int_ge(p->master, 0);
    ck_assert_int_eq(grantpt(p->master), 0);
    ck_assert_int_eq(unlockpt(p->master), 0);
    snprintf(p->link, sizeof p->link, "%s", link);
    unlink(link);
    ck_assert_int_eq(symlink(ptsname(p->master), link), 0);
}

static void s_pty_close(s_pty *p)
{
    if (p->master >= 0)
        close(p->master);
    p->master = -1;
    unlink(p->link);
}

static void s_send(s_pty *p, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(p->master, data, len);
        ck_assert_int_gt(n, 0);
        data += n;
        len -= (size_t)n;
    }
}

static void s_puts(s_pty *p, const char *text)
{
    s_send(p, text, strlen(text));
}

static char s_link[128];

static void s_setup(void)
{
    snprintf(s_link, sizeof s_link, "/tmp/ew-serial-test-%ld", (long)getpid());
}

static void s_teardown(void)
{
    unlink(s_link);
}

/* A harness on s_link with NULL-terminated option pairs; init's code in *rc. */
static ew_harness *s_open(const char *const *kv, int *rc)
{
    return ptest_open_source("device", s_link, kv, rc);
}

static ew_harness *s_make(const char *const *kv)
{
    return ptest_open_source("device", s_link, kv, NULL);
}

/* Produces until `lines` lines were read (good or bad): pty bytes reach the
 * slave asynchronously. Fails after 10 s. */
static void s_read_lines(ew_harness *h, uint64_t lines)
{
    ptest_produce_until(h, "serial_lines", lines, "lines");
}

START_TEST(csv_lines_with_timestamps)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"format", "csv", "columns", "time, temp, pressure",
                                            "timestamp_field", "time", NULL});
    ck_assert_uint_eq(ew_harness_output(h)->channels, 2);
    ck_assert_str_eq(ew_harness_output(h)->names[0], "temp");
    ck_assert_str_eq(ew_harness_output(h)->names[1], "pressure");
    s_puts(&p, "2026-11-26T16:35:03.250Z,71.5,2.03\r\n"
               "1700000000.5, -1e3 ,\n"
               "1700000000123,\"4\",5\n"
               "\r\n"
               "2026-11-26T16:35:04Z,1,2,3\n");
    s_read_lines(h, 4);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    const int64_t *ts = ew_harness_emitted_ts(h);
    ck_assert_int_eq(ts[0], 1795710903250000000LL);
    ck_assert_int_eq(ts[1], 1700000000500000000LL);
    ck_assert_int_eq(ts[2], 1700000000123000000LL);
    ck_assert(ptest_row(h, 0)[0] == 71.5 && ptest_row(h, 0)[1] == 2.03);
    ck_assert(ptest_row(h, 1)[0] == -1000.0 && isnan(ptest_row(h, 1)[1]));
    ck_assert(ptest_row(h, 2)[0] == 4.0 && ptest_row(h, 2)[1] == 5.0);
    ck_assert_uint_eq(ew_harness_counter(h, "serial_bad_lines"), 1); /* 4 fields */
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(csv_without_timestamp_is_stamped_on_arrival)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"columns", "a, b, c", "channels", "c, a", "delimiter",
                                            "semicolon", NULL});
    int64_t before = (int64_t)time(NULL) * 1000000000LL;
    s_puts(&p, "1;2;3\n");
    s_read_lines(h, 1);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert(ptest_row(h, 0)[0] == 3.0 && ptest_row(h, 0)[1] == 1.0);
    ck_assert_int_ge(ew_harness_emitted_ts(h)[0], before);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(kv_pairs_any_order_missing_is_nan)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"format", "kv", "channels", "a, b", "timestamp_field",
                                            "t", NULL});
    s_puts(&p, "a=1 b=2\n"
               "b=3;a=4\n"
               "a=5, other=text,t=1700000000000\n"
               "x=1 y=2\n"         /* none of the channels */
               "a=abc b=1\n"       /* not a number */
               "hello world\n"     /* not pairs */
               "a=1 t=yesterday\n" /* bad timestamp */
               "a= b=7\n");        /* empty value: missing */
    s_read_lines(h, 8);
    ck_assert_uint_eq(ew_harness_emitted(h), 4);
    ck_assert(ptest_row(h, 0)[0] == 1 && ptest_row(h, 0)[1] == 2);
    ck_assert(ptest_row(h, 1)[0] == 4 && ptest_row(h, 1)[1] == 3);
    ck_assert(ptest_row(h, 2)[0] == 5 && isnan(ptest_row(h, 2)[1]));
    ck_assert_int_eq(ew_harness_emitted_ts(h)[2], 1700000000000000000LL);
    ck_assert(isnan(ptest_row(h, 3)[0]) && ptest_row(h, 3)[1] == 7);
    ck_assert_uint_eq(ew_harness_counter(h, "serial_bad_lines"), 4);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(json_objects)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"format", "json", "channels", "temp, rpm",
                                            "timestamp_field", "ts", NULL});
    s_puts(&p, "{\"temp\": 21.25, \"rpm\": 1500, \"ts\": \"2026-11-26T16:35:03Z\"}\n"
               "{\"temp\": null, \"rpm\": \"12.5\", \"extra\": [1]}\n"
               "{\"temp\": true}\n"
               "[1, 2]\n"                    /* not an object */
               "{\"temp\": 1\n"              /* truncated */
               "{\"temp\": \"hot\"}\n"       /* not a number */
               "{\"temp\": 1} trailing\n"    /* text after it */
               "{\"rpm\": {\"a\": 1}}\n"     /* object value */
               "{\"other\": 1}\n");          /* none of the channels */
    s_read_lines(h, 9);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[0], 1795710903000000000LL);
    ck_assert(ptest_row(h, 0)[0] == 21.25 && ptest_row(h, 0)[1] == 1500);
    ck_assert(isnan(ptest_row(h, 1)[0]) && ptest_row(h, 1)[1] == 12.5);
    ck_assert(ptest_row(h, 2)[0] == 1 && isnan(ptest_row(h, 2)[1]));
    ck_assert_uint_eq(ew_harness_counter(h, "serial_bad_lines"), 6);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(overlong_lines_are_discarded_to_the_newline)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"format", "kv", "channels", "a", "max_line", "16", NULL});
    char big[300];
    memset(big, 'x', sizeof big);
    s_puts(&p, "a=1\n");
    s_send(&p, big, sizeof big);
    s_puts(&p, "a=999\n");          /* the tail of the overlong line: dropped with it */
    s_puts(&p, "a=2\n");
    s_puts(&p, "a=1234567890123\n"); /* 15 bytes: fits */
    s_puts(&p, "a=12345678901234\n"); /* 16 bytes: fits exactly */
    s_puts(&p, "a=123456789012345\n"); /* 17: too long */
    s_puts(&p, "a=3\n");
    /* The overlong lines count as read lines only when they are reported: wait on the good ones. */
    for (int i = 0; i < 5000 && ew_harness_emitted(h) < 5; i++) {
        int64_t wake;
        ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
        ptest_nap();
    }
    ck_assert_uint_eq(ew_harness_emitted(h), 5);
    ck_assert(ptest_row(h, 0)[0] == 1 && ptest_row(h, 1)[0] == 2 &&
              ptest_row(h, 2)[0] == 1234567890123.0 && ptest_row(h, 3)[0] == 12345678901234.0 &&
              ptest_row(h, 4)[0] == 3);
    ck_assert_uint_eq(ew_harness_counter(h, "serial_overlong_lines"), 2);
    ck_assert_uint_eq(ew_harness_counter(h, "serial_bad_lines"), 2);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(binary_garbage_is_bad)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"format", "csv", "columns", "a", NULL});
    static const char junk[] = "\x00\xff\xfe\x01\x02\n\x1b[2J7\n1\x00\n\xc3\xa9\n42\n";
    s_send(&p, junk, sizeof junk - 1);
    s_read_lines(h, 5);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert(ptest_row(h, 0)[0] == 42);
    ck_assert_uint_eq(ew_harness_counter(h, "serial_bad_lines"), 4);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(bad_line_logs_are_rate_limited)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"format", "kv", "channels", "a", NULL});
    size_t before = ew_harness_logged(h, EW_LOG_WARN);
    for (int i = 0; i < 1000; i++)
        s_puts(&p, "junk\n");
    s_read_lines(h, 1000);
    ck_assert_uint_eq(ew_harness_counter(h, "serial_bad_lines"), 1000);
    /* The first 10, then the 1000th. */
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN) - before, 11);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(device_disappears_and_comes_back)
{
    s_pty p;
    s_pty_open(&p, s_link);
    ew_harness *h = s_make((const char *[]){"format", "kv", "channels", "a", NULL});
    s_puts(&p, "a=1\n");
    s_read_lines(h, 1);
    s_pty_close(&p); /* the far end closes and the link goes, as when socat exits */
    int rc = EW_OK;
    for (int i = 0; i < 5000 && rc == EW_OK; i++) {
        int64_t wake;
        rc = ew_harness_produce(h, &wake);
        if (rc == EW_OK)
            ptest_nap();
    }
    ck_assert_int_eq(rc, EW_EAGAIN);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), s_link));
    /* Still gone: reopening fails, transiently, naming the device. */
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EAGAIN);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "cannot open"));
    /* Back under the same name: reopened, reading resumes. */
    s_pty_open(&p, s_link);
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    s_puts(&p, "a=2\n");
    s_read_lines(h, 2);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ck_assert(ptest_row(h, 1)[0] == 2);
    ck_assert_uint_eq(ew_harness_counter(h, "serial_reopens"), 1);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(missing_device_at_start_is_retried)
{
    ew_harness *h = s_make((const char *[]){"format", "kv", "channels", "a", NULL});
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EAGAIN);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "No such file"));
    s_pty p;
    s_pty_open(&p, s_link);
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    s_puts(&p, "a=5\n");
    s_read_lines(h, 1);
    ck_assert(ptest_row(h, 0)[0] == 5);
    ew_harness_destroy(&h);
    s_pty_close(&p);
}
END_TEST

START_TEST(not_a_tty_is_fatal)
{
    FILE *f = fopen(s_link, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    int rc;
    ew_harness *h = s_open((const char *[]){"format", "kv", "channels", "a", NULL}, &rc);
    ck_assert_int_eq(rc, EW_ERR);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "not a serial device"));
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
    s_expect_error((const char *[]){"format", "csv", NULL}, "columns is required");
    s_expect_error((const char *[]){"format", "kv", NULL}, "channels is required");
    s_expect_error((const char *[]){"format", "json", "channels", "a", "columns", "a", NULL},
                   "csv only");
    s_expect_error((const char *[]){"columns", "a,b", "channels", "c", NULL}, "\"c\" is not one");
    s_expect_error((const char *[]){"columns", "a,b", "timestamp_field", "t", NULL}, "\"t\" is not");
    s_expect_error((const char *[]){"columns", "a,a", NULL}, "listed twice");
    s_expect_error((const char *[]){"columns", "t", "timestamp_field", "t", NULL}, "only column");
    s_expect_error((const char *[]){"format", "kv", "channels", "a,t", "timestamp_field", "t", NULL},
                   "cannot also be a channel");
    s_expect_error((const char *[]){"format", "kv", "channels", "a", "baud", "12345", NULL},
                   "not a standard rate");
    s_expect_error((const char *[]){"format", "kv", "channels", "a", "data_bits", "9", NULL},
                   "data_bits");
    s_expect_error((const char *[]){"format", "kv", "channels", "a", "parity", "mark", NULL},
                   "parity");
}
END_TEST

/* The shared parser directly: timestamp units and the excerpt of bad input. */
START_TEST(lines_timestamp_units_and_excerpt)
{
    const char *cols[] = {"t", "v"};
    ewp_lines_spec spec = {.format = EWP_LINES_CSV, .ncolumns = 2, .columns = cols,
                           .timestamp_field = "t", .ts_unit = EWP_TS_MS};
    char err[200];
    ck_assert_int_eq(ewp_lines_check(&spec, err, sizeof err), 0);
    ewp_lines *p = ewp_lines_new(&spec);
    ck_assert_ptr_nonnull(p);
    int64_t ts;
    bool has;
    double v;
    ck_assert_int_eq(ewp_lines_parse(p, "5,1", 3, &ts, &has, &v, err, sizeof err), 0);
    ck_assert(has && ts == 5000000 && v == 1);
    ck_assert_int_eq(ewp_lines_parse(p, ",2", 2, &ts, &has, &v, err, sizeof err), 0);
    ck_assert(!has && v == 2);
    ck_assert_int_eq(ewp_lines_parse(p, "99999999999999999999,1", 22, &ts, &has, &v, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "bad timestamp"));
    ewp_lines_free(&p);
    ck_assert_ptr_null(p);
    char out[64];
    ewp_lines_excerpt("a\x01\\b", 4, 10, out, sizeof out);
    ck_assert_str_eq(out, "a\\x01\\x5cb");
    ewp_lines_excerpt("abcdef", 6, 3, out, sizeof out);
    ck_assert_str_eq(out, "abc...");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-serial");
    TCase *tc = tcase_create("serial");
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, csv_lines_with_timestamps);
    tcase_add_test(tc, csv_without_timestamp_is_stamped_on_arrival);
    tcase_add_test(tc, kv_pairs_any_order_missing_is_nan);
    tcase_add_test(tc, json_objects);
    tcase_add_test(tc, overlong_lines_are_discarded_to_the_newline);
    tcase_add_test(tc, binary_garbage_is_bad);
    tcase_add_test(tc, bad_line_logs_are_rate_limited);
    tcase_add_test(tc, device_disappears_and_comes_back);
    tcase_add_test(tc, missing_device_at_start_is_retried);
    tcase_add_test(tc, not_a_tty_is_fatal);
    tcase_add_test(tc, option_errors);
    tcase_add_test(tc, lines_timestamp_units_and_excerpt);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
