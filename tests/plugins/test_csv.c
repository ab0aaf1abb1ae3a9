/* Tests of the csv source plugin through the SDK harness, on files written to a temporary folder. */
#include <edgewatch/testing.h>

#include "options.h"
#include "ptest.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>


static char s_dir[256];
static char s_path[512];

static void s_base_setup(void)
{
    ptest_suite_dir_make("csv");
}

/* Each test has its own folder inside the suite's. */
static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/t-XXXXXX", ptest_suite_dir());
    ck_assert_ptr_nonnull(mkdtemp(s_dir));
    snprintf(s_path, sizeof s_path, "%s/data.csv", s_dir);
}

static void s_teardown(void)
{
    ptest_rmtree(s_dir);
}

static void s_write(const char *text)
{
    FILE *f = fopen(s_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A harness for s_path (unless a path is given) with extra options
 * (NULL-terminated pairs); init's code in *rc. */
static ew_harness *s_open(const char *const *kv, int *rc)
{
    return ptest_open_source("path", s_path, kv, rc);
}

static ew_harness *s_make(const char *const *kv)
{
    return ptest_open_source("path", s_path, kv, NULL);
}

static char *s_init_error(const char *const *kv)
{
    int rc;
    ew_harness *h = s_open(kv, &rc);
    ck_assert_int_ne(rc, EW_OK);
    char *msg = strdup(ew_harness_error(h));
    ew_harness_destroy(&h);
    return msg;
}

/* Sends stderr (where the harness prints log lines) to a file; returns its path. */
static const char *s_capture_stderr(void)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/stderr.txt", s_dir);
    ptest_stderr_to(path);
    return path;
}

START_TEST(descriptor)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_SOURCE);
    ck_assert_str_eq(p->name, "csv");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
}
END_TEST

START_TEST(rows_become_samples_with_exact_values)
{
    s_write("timestamp,a,b\n"
            "2026-11-26T16:35:03Z,1.5,-2250\n"
            "2026-11-26T16:35:04Z,0.1,1e-300\n"
            "2026-11-26T16:35:05Z,123456789.123456789,-0\n");
    ew_harness *h = s_make(NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 2);
    ck_assert_str_eq(out->names[0], "a");
    ck_assert_str_eq(out->names[1], "b");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    const double *v = ew_harness_emitted_values(h);
    const int64_t *ts = ew_harness_emitted_ts(h);
    const double want[] = {1.5, -2250, 0.1, 1e-300, 123456789.123456789, -0.0};
    for (int i = 0; i < 6; i++)
        ck_assert_msg(v[i] == want[i], "value %d: %.17g", i, v[i]);
    ck_assert_int_eq(ts[0], 1795710903000000000LL);
    ck_assert_int_eq(ts[1], 1795710904000000000LL);
    ck_assert_int_eq(ts[2], 1795710905000000000LL);
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 0);
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(timestamp_formats_parse_to_exact_ns)
{
    s_write("timestamp,a\n"
            "2026-11-26T16:35:03.123456789Z,1\n"
            "2026-11-26 16:35:03,2\n"
            "2026-11-26T18:35:03.5+02:00,3\n"
            "1969-12-31 23:59:59.25,4\n"
            "2024-02-29T00:00:00-0530,5\n"
            "2026-11-26t16:35:03.1234567891z,6\n");
    ew_harness *h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 6);
    const int64_t *ts = ew_harness_emitted_ts(h);
    ck_assert_int_eq(ts[0], 1795710903123456789LL);
    ck_assert_int_eq(ts[1], 1795710903000000000LL);
    ck_assert_int_eq(ts[2], 1795710903500000000LL);
    ck_assert_int_eq(ts[3], -750000000LL);
    ck_assert_int_eq(ts[4], 1709184600000000000LL);
    ck_assert_int_eq(ts[5], 1795710903123456789LL); /* digits beyond ns are dropped */
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(quoted_fields)
{
    s_write("\"timestamp\",\"flow, l/min\",\"say \"\"hi\"\"\"\n"
            "\"2026-01-01 00:00:00\",\"12.5\", 3 \n"
            "2026-01-01 00:00:01 , \"-1\" ,\"4\"\n");
    ew_harness *h = s_make(NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 2);
    ck_assert_str_eq(out->names[0], "flow, l/min");
    ck_assert_str_eq(out->names[1], "say \"hi\"");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    const double *v = ew_harness_emitted_values(h);
    ck_assert(v[0] == 12.5 && v[1] == 3 && v[2] == -1 && v[3] == 4);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[1], 1767225601000000000LL);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(semicolon_is_detected)
{
    /* Commas inside quotes must not outvote the real delimiter. */
    s_write("timestamp;\"a,b,c,d\";x\n"
            "2026-01-01 00:00:00;1.25;2\n");
    ew_harness *h = s_make(NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 2);
    ck_assert_str_eq(out->names[0], "a,b,c,d");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert(ew_harness_emitted_values(h)[0] == 1.25);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(tab_and_pipe)
{
    s_write("timestamp\ta\tb\n2026-01-01 00:00:00\t1\t2\n");
    ew_harness *h = s_make(NULL);
    ck_assert_uint_eq(ew_harness_output(h)->channels, 2);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert(ew_harness_emitted_values(h)[1] == 2);
    ew_harness_destroy(&h);

    s_write("timestamp|a,b\n2026-01-01 00:00:00|1\n");
    h = s_make((const char *[]){"delimiter", "pipe", NULL});
    ck_assert_str_eq(ew_harness_output(h)->names[0], "a,b");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(crlf_line_endings)
{
    s_write("timestamp,a\r\n2026-01-01 00:00:00,1.5\r\n2026-01-01 00:00:01,2.5\r\n");
    ew_harness *h = s_make(NULL);
    ck_assert_str_eq(ew_harness_output(h)->names[0], "a");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ck_assert(ew_harness_emitted_values(h)[1] == 2.5);
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(bad_rows_are_reported_counted_and_skipped)
{
    const char *log = s_capture_stderr();
    s_write("timestamp,a,b\n"                     /* line 1 */
            "2026-01-01 00:00:00,1,2\n"           /* 2: good */
            "2026-01-01 00:00:01,1\n"             /* 3: too few fields */
            "2026-01-01 00:00:02,x1,2\n"          /* 4: not a number */
            "2026-13-01 00:00:03,1,2\n"           /* 5: bad month */
            "\n"                                  /* 6: blank, not a row */
            "2026-01-01 00:00:04,3,4\n"           /* 7: good */
            "2026-01-01 00:00:05,\"5,6\n"         /* 8: unterminated quote */
            "2026-01-01 00:00:06,1,2,3\n");       /* 9: too many fields */
    ew_harness *h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    const double *v = ew_harness_emitted_values(h);
    ck_assert(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 5);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 5);
    ew_harness_destroy(&h);
    fflush(stderr);
    char *text = ptest_slurp(log);
    char want[700];
    const int lines[] = {3, 4, 5, 8, 9};
    for (int i = 0; i < 5; i++) {
        snprintf(want, sizeof want, "%s:%d: ", s_path, lines[i]);
        ck_assert_msg(strstr(text, want), "no report for line %d in:\n%s", lines[i], text);
    }
    ck_assert_msg(!strstr(text, ":6: ") && !strstr(text, ":7: "), "%s", text);
    ck_assert(strstr(text, "expected 3 fields as in the header, found 2"));
    ck_assert(strstr(text, "\"x1\" is not a number"));
    ck_assert(strstr(text, "timestamp \"2026-13-01 00:00:03\""));
    ck_assert(strstr(text, "unterminated quoted field"));
    free(text);
}
END_TEST

START_TEST(bad_row_reports_are_rate_limited)
{
    FILE *f = fopen(s_path, "w");
    fputs("timestamp,a\n2026-01-01 00:00:00,1\n", f);
    for (int i = 0; i < 2500; i++)
        fputs("2026-01-01 00:00:00,oops\n", f);
    fputs("2026-01-01 00:00:00,2\n", f);
    fclose(f);
    ew_harness *h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 2500);
    /* The first 10, then the 1000th and 2000th. */
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 12);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(empty_cells_are_nan)
{
    s_write("timestamp,a,b\n2026-01-01 00:00:00,,2\n2026-01-01 00:00:01,3,\n");
    ew_harness *h = s_make(NULL);
    ck_assert_uint_eq(ew_harness_output(h)->channels, 2);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    const double *v = ew_harness_emitted_values(h);
    ck_assert(isnan(v[0]) && v[1] == 2 && v[2] == 3 && isnan(v[3]));
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(text_columns_are_left_out)
{
    s_write("timestamp,site,temp,state\n2026-01-01 00:00:00,pump-1,20.5,ok\n"
            "2026-01-01 00:00:01,pump-1,21,ok\n");
    ew_harness *h = s_make(NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 1);
    ck_assert_str_eq(out->names[0], "temp");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert(ew_harness_emitted_values(h)[1] == 21);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(named_columns_in_their_order)
{
    s_write("b,timestamp,a,c\n5,2026-01-01 00:00:00,6,7\n");
    ew_harness *h = s_make((const char *[]){"columns", "c, b", NULL});
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 2);
    ck_assert_str_eq(out->names[0], "c");
    ck_assert_str_eq(out->names[1], "b");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert(ew_harness_emitted_values(h)[0] == 7 && ew_harness_emitted_values(h)[1] == 5);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(missing_column_is_an_init_error)
{
    s_write("timestamp,a,b\n2026-01-01 00:00:00,1,2\n");
    char *msg = s_init_error((const char *[]){"columns", "a, nope", NULL});
    ck_assert_msg(strstr(msg, "\"nope\"") && strstr(msg, "available columns: timestamp, a, b"),
                  "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"timestamp_column", "time", NULL});
    ck_assert_msg(strstr(msg, "\"time\"") && strstr(msg, "timestamp, a, b"), "%s", msg);
    free(msg);
}
END_TEST

START_TEST(missing_file_is_an_init_error)
{
    char *msg = s_init_error((const char *[]){"path", "/nonexistent/edgewatch/pump.csv", NULL});
    ck_assert_msg(strstr(msg, "/nonexistent/edgewatch/pump.csv") &&
                      strstr(msg, "No such file or directory"),
                  "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"path", s_dir, NULL});
    ck_assert_msg(strstr(msg, s_dir) && strstr(msg, "folder"), "%s", msg);
    free(msg);
}
END_TEST

START_TEST(path_is_required)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "path"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(empty_file_is_an_init_error)
{
    s_write("");
    char *msg = s_init_error(NULL);
    ck_assert_msg(strstr(msg, s_path) && strstr(msg, "header"), "%s", msg);
    free(msg);
}
END_TEST

START_TEST(no_timestamp_column_stamps_with_now)
{
    s_write("a,b\n1,2\n3,4\n");
    ew_harness *h = s_make((const char *[]){"timestamp_column", "", NULL});
    ck_assert_uint_eq(ew_harness_output(h)->channels, 2);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    int64_t before = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    clock_gettime(CLOCK_REALTIME, &t);
    int64_t after = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    const int64_t *ts = ew_harness_emitted_ts(h);
    ck_assert(ts[0] >= before && ts[1] <= after && ts[1] >= ts[0]);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(bom_and_blank_lines)
{
    s_write("\xEF\xBB\xBFtimestamp,a\n\n2026-01-01 00:00:00,1\n   \n2026-01-01 00:00:01,2\n\n");
    ew_harness *h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(long_lines)
{
    FILE *f = fopen(s_path, "w");
    fputs("timestamp,note,a\n2026-01-01 00:00:00,", f);
    for (int i = 0; i < 200000; i++)
        fputc('x', f);
    fputs(",42\n", f);
    fclose(f);
    ew_harness *h = s_make((const char *[]){"columns", "a", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert(ew_harness_emitted_values(h)[0] == 42);
    ew_harness_destroy(&h);
}
END_TEST

static int64_t s_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

START_TEST(speed_follows_the_timestamps)
{
    s_write("timestamp,a\n2026-01-01 00:00:00,1\n2026-01-01 00:00:01,2\n2026-01-01 00:00:03,3\n");
    ew_harness *h = s_make((const char *[]){"speed", "10", NULL});
    int64_t wake = 0;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    /* One second of file time at 10x is 100 ms. */
    int64_t in = wake - s_mono();
    ck_assert_msg(in > 80000000 && in <= 100000000, "wake in %lld ns", (long long)in);
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[2], 1767225603000000000LL);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(rate_paces_rows)
{
    s_write("a\n1\n2\n3\n4\n5\n");
    ew_harness *h = s_make((const char *[]){"rate", "4", "timestamp_column", "", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 5);
    const int64_t *ts = ew_harness_emitted_ts(h);
    for (int i = 1; i < 5; i++)
        ck_assert_msg(llabs(ts[i] - ts[i - 1] - 250000000) < 1000000, "spacing %lld",
                      (long long)(ts[i] - ts[i - 1]));
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(option_errors)
{
    s_write("timestamp,a\n2026-01-01 00:00:00,1\n");
    char *msg = s_init_error((const char *[]){"delimiter", "colon", NULL});
    ck_assert_msg(strstr(msg, "delimiter") && strstr(msg, "auto|comma|semicolon|tab|pipe"), "%s",
                  msg);
    free(msg);
    msg = s_init_error((const char *[]){"rate", "5", "speed", "2", NULL});
    ck_assert_msg(strstr(msg, "rate") && strstr(msg, "speed"), "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"speed", "2", "timestamp_column", "", NULL});
    ck_assert_msg(strstr(msg, "timestamp_column"), "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"columns", "timestamp", NULL});
    ck_assert_msg(strstr(msg, "timestamp column"), "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"sped", "2", NULL});
    ck_assert_msg(strstr(msg, "sped") && strstr(msg, "unknown"), "%s", msg);
    free(msg);
}
END_TEST

/* ---- issue 14: bounded lines, linear columns, epoch timestamps, rejected input ------------- */

/* Counts the name comparisons of the code under test: this definition takes
 * the place of the C library's for the plugin's objects linked in here. */
static unsigned long long s_strcmp_calls;

int strcmp(const char *a, const char *b)
{
    s_strcmp_calls++;
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (*x && *x == *y)
        x++, y++;
    return *x - *y;
}

START_TEST(over_long_line_is_reported_and_skipped)
{
    const char *log = s_capture_stderr();
    FILE *f = fopen(s_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("timestamp,a\n2026-01-01 00:00:00,1\n2026-01-01 00:00:01,", f); /* lines 1-3 */
    /* 2 MiB of padding: a valid row, but longer than the default max_line (1 MiB). */
    for (int i = 0; i < 2 * 1024 * 1024; i++)
        fputc(' ', f);
    fputs("2\n2026-01-01 00:00:02,3\n2026-01-01 00:00:03,x\n", f); /* lines 4, 5 */
    fclose(f);
    ew_harness *h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    const double *v = ew_harness_emitted_values(h);
    ck_assert(v[0] == 1 && v[1] == 3);
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 2);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(log);
    char want[700];
    snprintf(want, sizeof want, "%s:3: line is longer than max_line = 1048576 bytes", s_path);
    ck_assert_msg(strstr(text, want), "no report of line 3 in:\n%s", text);
    /* Line numbers stay right after the skipped line. */
    snprintf(want, sizeof want, "%s:5: column \"a\"", s_path);
    ck_assert_msg(strstr(text, want), "no report of line 5 in:\n%s", text);
    free(text);
}
END_TEST

START_TEST(over_long_line_stops_when_asked)
{
    s_write("timestamp,a\n"
            "2026-01-01 00:00:00,1\n"
            "2026-01-01 00:00:01,22222222222222222222222222222222222222222222222222\n"
            "2026-01-01 00:00:02,3\n");
    ew_harness *h = s_make((const char *[]){"max_line", "40", "on_long_line", "stop", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_ERR);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    char want[700];
    snprintf(want, sizeof want, "%s:3: line is longer than max_line = 40 bytes", s_path);
    ck_assert_msg(strstr(ew_harness_error(h), want), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);

    /* A header longer than max_line cannot be skipped. */
    s_write("timestamp,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n2026-01-01 00:00:00,1\n");
    char *msg = s_init_error((const char *[]){"max_line", "40", NULL});
    snprintf(want, sizeof want, "%s:1: the header line is longer than max_line = 40 bytes", s_path);
    ck_assert_msg(strstr(msg, want), "%s", msg);
    free(msg);
}
END_TEST

static size_t s_vm_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    size_t kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1)
            break;
    fclose(f);
    ck_assert_uint_gt(kib, 0);
    return kib * 1024;
}

START_TEST(out_of_memory_is_an_error_not_the_end)
{
    /* A 256 MiB line with memory limited to 64 MiB more than in use now: the
     * line cannot be held, which must stop the source with an error rather
     * than end the stream as if the file were complete. AddressSanitizer
     * reserves terabytes of address space and aborts on a failed malloc, so
     * the sanitizer build leaves this case to the normal one. */
#if defined(__SANITIZE_ADDRESS__)
    return;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return;
#endif
#endif
    FILE *f = fopen(s_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("timestamp,a\n2026-01-01 00:00:00,1\n2026-01-01 00:00:01,", f);
    static char pad[1 << 20];
    memset(pad, ' ', sizeof pad);
    for (int i = 0; i < 256; i++)
        fwrite(pad, 1, sizeof pad, f);
    fputs("2\n2026-01-01 00:00:02,3\n", f);
    fclose(f);
    ew_harness *h = s_make((const char *[]){"max_line", "1GiB", NULL});
    struct rlimit lim = {.rlim_cur = s_vm_bytes() + (64u << 20), .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
    int rc = ew_harness_run(h, 0);
    lim.rlim_cur = RLIM_INFINITY;
    setrlimit(RLIMIT_AS, &lim);
    ck_assert_int_eq(rc, EW_ERR);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert_msg(strstr(ew_harness_error(h), ":3: out of memory"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

/* A file of `ncols` columns c1..cN after the timestamp, 3 rows; cell = row * 10000 + column. */
static void s_write_wide(size_t ncols, const char *dup_last)
{
    FILE *f = fopen(s_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("timestamp", f);
    for (size_t c = 1; c <= ncols; c++) {
        if (c == ncols && dup_last)
            fprintf(f, ",%s", dup_last);
        else
            fprintf(f, ",c%zu", c);
    }
    for (int r = 0; r < 3; r++) {
        fprintf(f, "\n2026-01-01 00:00:0%d", r);
        for (size_t c = 1; c <= ncols; c++)
            fprintf(f, ",%zu", (size_t)r * 10000 + c);
    }
    fputc('\n', f);
    fclose(f);
}

START_TEST(many_columns_take_linear_work)
{
    /* Work is counted in name comparisons, the cost that grew with the square
     * of the number of columns. The host's own check of the channel names
     * (set_channels) compares each channel with the ones before it, so the
     * counted runs emit few channels from a wide header. */
    const size_t n = 2000;
    s_write_wide(n, NULL);
    char list[64 * 12] = "";
    size_t used = 0;
    for (size_t c = n; c > n - 50; c--)
        used += (size_t)snprintf(list + used, sizeof list - used, "%sc%zu", c == n ? "" : ",", c);
    s_strcmp_calls = 0;
    ew_harness *h = s_make((const char *[]){"columns", list, NULL});
    /* Looking each of the 50 up among 2000 names one by one is 100,000 comparisons. */
    ck_assert_msg(s_strcmp_calls < 2 * n, "%llu name comparisons for 50 of %zu columns",
                  s_strcmp_calls, n);
    ck_assert_uint_eq(ew_harness_output(h)->channels, 50);
    ck_assert_str_eq(ew_harness_output(h)->names[0], "c2000");
    ck_assert_str_eq(ew_harness_output(h)->names[49], "c1951");
    s_strcmp_calls = 0;
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_msg(s_strcmp_calls < n, "%llu comparisons reading 3 rows", s_strcmp_calls);
    ck_assert(ptest_row(h, 2)[0] == 22000 && ptest_row(h, 2)[49] == 21951);
    ew_harness_destroy(&h);

    /* The timestamp column last: found at once, checked for twins at once. */
    FILE *f = fopen(s_path, "w");
    ck_assert_ptr_nonnull(f);
    for (size_t c = 1; c <= n; c++)
        fprintf(f, "c%zu,", c);
    fputs("time\n", f);
    for (size_t c = 1; c <= n; c++)
        fprintf(f, "%zu,", c);
    fputs("2026-01-01 00:00:00\n", f);
    fclose(f);
    s_strcmp_calls = 0;
    h = s_make((const char *[]){"timestamp_column", "time", "columns", "c7", NULL});
    ck_assert_msg(s_strcmp_calls < n, "%llu name comparisons for %zu columns", s_strcmp_calls, n);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert(ptest_row(h, 0)[0] == 7);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[0], 1767225600000000000LL);
    ew_harness_destroy(&h);

    /* Every column a channel, by default and named in reverse: exact values. */
    s_write_wide(n, NULL);
    h = s_make(NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, n);
    ck_assert_str_eq(out->names[0], "c1");
    ck_assert_str_eq(out->names[n - 1], "c2000");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    for (int r = 0; r < 3; r++)
        for (size_t c = 0; c < n; c++)
            ck_assert(ptest_row(h, (size_t)r)[c] == (double)(r * 10000 + (int)c + 1));
    ew_harness_destroy(&h);
    char *all = malloc(n * 8);
    ck_assert_ptr_nonnull(all);
    used = 0;
    for (size_t c = n; c >= 1; c--)
        used += (size_t)sprintf(all + used, "%sc%zu", c == n ? "" : ",", c);
    h = s_make((const char *[]){"columns", all, NULL});
    ck_assert_str_eq(ew_harness_output(h)->names[0], "c2000");
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert(ptest_row(h, 2)[0] == 22000 && ptest_row(h, 2)[n - 1] == 20001);
    ew_harness_destroy(&h);
    /* A column named twice in `columns`, far apart. */
    all[used] = '\0';
    strcat(all, ",c2000");
    char *msg = s_init_error((const char *[]){"columns", all, NULL});
    ck_assert_msg(strstr(msg, "\"c2000\" is listed twice"), "%s", msg);
    free(msg);
    free(all);

    /* A duplicate name at the far end is still found. */
    s_write_wide(n, "c1");
    msg = s_init_error(NULL);
    ck_assert_msg(strstr(msg, "column \"c1\" appears twice in the header") &&
                      strstr(msg, "(fields 2 and 2001)"),
                  "%s", msg);
    free(msg);
}
END_TEST

START_TEST(epoch_timestamps_by_magnitude)
{
    s_write("timestamp,a\n"
            "1700000000.123,1\n"
            "1700000001,2\n"
            "1700000002.000000001,3\n");
    ew_harness *h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_counter(h, "csv_bad_rows"), 0);
    ck_assert_uint_eq(ew_harness_emitted(h), 3);
    const int64_t *ts = ew_harness_emitted_ts(h);
    ck_assert_int_eq(ts[0], 1700000000123000000LL);
    ck_assert_int_eq(ts[1], 1700000001000000000LL);
    ck_assert_int_eq(ts[2], 1700000002000000001LL);
    ew_harness_destroy(&h);

    const char *files[] = {"timestamp,a\n1700000000123,1\n1700000000124.5,2\n",
                           "timestamp,a\n1700000000123000,1\n1700000000124000.5,2\n",
                           "timestamp,a\n1700000000123000000,1\n1700000000124000000,2\n"};
    const int64_t second[] = {1700000000124500000LL, 1700000000124000500LL,
                              1700000000124000000LL};
    for (int i = 0; i < 3; i++) {
        s_write(files[i]);
        h = s_make(NULL);
        ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
        ck_assert_uint_eq(ew_harness_emitted(h), 2);
        ts = ew_harness_emitted_ts(h);
        ck_assert_int_eq(ts[0], 1700000000123000000LL);
        ck_assert_int_eq(ts[1], second[i]);
        ew_harness_destroy(&h);
    }
}
END_TEST

START_TEST(timestamp_format_option)
{
    /* Set units: small numbers are not guessed. */
    s_write("timestamp,a\n0,1\n1.5,2\n-2,3\n");
    const char *units[] = {"epoch_s", "epoch_ms", "epoch_us", "epoch_ns"};
    const int64_t scale[] = {1000000000LL, 1000000LL, 1000LL, 1LL};
    for (int i = 0; i < 4; i++) {
        ew_harness *h = s_make((const char *[]){"timestamp_format", units[i], NULL});
        ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
        ck_assert_uint_eq(ew_harness_emitted(h), 3); /* finer than ns: dropped */
        const int64_t *ts = ew_harness_emitted_ts(h);
        ck_assert_int_eq(ts[0], 0);
        {
            ck_assert_int_eq(ts[1], 3 * scale[i] / 2);
            ck_assert_int_eq(ts[2], -2 * scale[i]);
        }
        ew_harness_destroy(&h);
    }
    /* iso8601 only. */
    s_write("timestamp,a\n2026-01-01 00:00:00,1\n1700000000,2\n");
    ew_harness *h = s_make((const char *[]){"timestamp_format", "iso8601", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ew_harness_destroy(&h);
    /* A strftime-style format, with %f for a fraction and %z for an offset. */
    s_write("timestamp;a\n"
            "26/11/2026 16:35:03;1\n"
            "26/11/2026 18:35:03.25 +0200;2\n"
            "31/12/1969 23:59:59.5;3\n"
            "2026-11-26 16:35:03;4\n");
    h = s_make((const char *[]){"timestamp_format", "%d/%m/%Y %H:%M:%S", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[0], 1795710903000000000LL);
    ew_harness_destroy(&h);
    h = s_make((const char *[]){"timestamp_format", "%d/%m/%Y %H:%M:%S%f %z", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[0], 1795710903250000000LL);
    ew_harness_destroy(&h);
    h = s_make((const char *[]){"timestamp_format", "%d/%m/%Y %H:%M:%S%f", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[0], 1795710903000000000LL);
    ck_assert_int_eq(ew_harness_emitted_ts(h)[1], -500000000LL);
    ew_harness_destroy(&h);
    /* A format that reads no time at all is refused at start. */
    char *msg = s_init_error((const char *[]){"timestamp_format", "hello", NULL});
    ck_assert_msg(strstr(msg, "option timestamp_format"), "%s", msg);
    free(msg);
}
END_TEST

START_TEST(rejecting_every_row_is_a_failure)
{
    s_write("timestamp,a\n"
            "26.11.2026 16:35,1\n"
            "26.11.2026 16:36,2\n");
    ew_harness *h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_ERR);
    ck_assert_uint_eq(ew_harness_emitted(h), 0);
    const char *err = ew_harness_error(h);
    ck_assert_msg(strstr(err, "all 2 data rows") && strstr(err, "line 2") &&
                      strstr(err, "timestamp_format"),
                  "%s", err);
    ew_harness_destroy(&h);
    /* A header alone is an empty replay, not a failure; one good row is enough. */
    s_write("timestamp,a\n");
    h = s_make((const char *[]){"columns", "a", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ew_harness_destroy(&h);
    s_write("timestamp,a\nx,1\n2026-01-01 00:00:00,2\n");
    h = s_make(NULL);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(invalid_utf8_header_is_refused)
{
    s_write("timestamp,caf\xE9,b\n2026-01-01 00:00:00,1,2\n");
    char *msg = s_init_error(NULL);
    char want[700];
    snprintf(want, sizeof want, "%s:1: the name of column 2 is not valid UTF-8", s_path);
    ck_assert_msg(strstr(msg, want), "%s", msg);
    free(msg);
    /* Also overlong forms and surrogates; valid multi-byte names are fine. */
    s_write("timestamp,a\xC0\xAF,b\n2026-01-01 00:00:00,1,2\n");
    msg = s_init_error(NULL);
    ck_assert_msg(strstr(msg, "column 2 is not valid UTF-8"), "%s", msg);
    free(msg);
    s_write("\xEF\xBB\xBFtimestamp,x,\xED\xA0\x80\n2026-01-01 00:00:00,1,2\n");
    msg = s_init_error(NULL);
    ck_assert_msg(strstr(msg, ":1: the name of column 3 is not valid UTF-8"), "%s", msg);
    free(msg);
    s_write("\n\ntimestamp,temp \xC2\xB0" "C,\xE6\xB8\xA9\xE5\xBA\xA6\n2026-01-01 00:00:00,1,2\n");
    ew_harness *h = s_make(NULL);
    ck_assert_str_eq(ew_harness_output(h)->names[0], "temp \xC2\xB0" "C");
    ew_harness_destroy(&h);
    s_write("\ntimestamp,ok,bad\xFF\n2026-01-01 00:00:00,1,2\n");
    msg = s_init_error(NULL);
    ck_assert_msg(strstr(msg, ":2: the name of column 3"), "%s", msg);
    free(msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-csv");
    TCase *tc = tcase_create("csv");
    tcase_add_unchecked_fixture(tc, s_base_setup, ptest_suite_dir_remove);
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, descriptor);
    tcase_add_test(tc, rows_become_samples_with_exact_values);
    tcase_add_test(tc, timestamp_formats_parse_to_exact_ns);
    tcase_add_test(tc, quoted_fields);
    tcase_add_test(tc, semicolon_is_detected);
    tcase_add_test(tc, tab_and_pipe);
    tcase_add_test(tc, crlf_line_endings);
    tcase_add_test(tc, bad_rows_are_reported_counted_and_skipped);
    tcase_add_test(tc, bad_row_reports_are_rate_limited);
    tcase_add_test(tc, empty_cells_are_nan);
    tcase_add_test(tc, text_columns_are_left_out);
    tcase_add_test(tc, named_columns_in_their_order);
    tcase_add_test(tc, missing_column_is_an_init_error);
    tcase_add_test(tc, missing_file_is_an_init_error);
    tcase_add_test(tc, path_is_required);
    tcase_add_test(tc, empty_file_is_an_init_error);
    tcase_add_test(tc, no_timestamp_column_stamps_with_now);
    tcase_add_test(tc, bom_and_blank_lines);
    tcase_add_test(tc, long_lines);
    tcase_add_test(tc, speed_follows_the_timestamps);
    tcase_add_test(tc, rate_paces_rows);
    tcase_add_test(tc, option_errors);
    tcase_add_test(tc, over_long_line_is_reported_and_skipped);
    tcase_add_test(tc, over_long_line_stops_when_asked);
    tcase_add_test(tc, out_of_memory_is_an_error_not_the_end);
    tcase_add_test(tc, many_columns_take_linear_work);
    tcase_add_test(tc, epoch_timestamps_by_magnitude);
    tcase_add_test(tc, timestamp_format_option);
    tcase_add_test(tc, rejecting_every_row_is_a_failure);
    tcase_add_test(tc, invalid_utf8_header_is_refused);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
