/* Tests of the csv source plugin through the SDK harness, on files written to a temporary folder. */
#include <edgewatch/testing.h>

#include "options.h"
#include "ptest.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
