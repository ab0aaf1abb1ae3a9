/* Tests of the jsonl sink plugin through the SDK harness: lines are parsed back with json-c. */
#include <edgewatch/testing.h>

#include "options.h"
#include "ptest.h"
#include "ptest_event.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static char s_dir[256];
static char s_path[512];

static int s_saved_stdout = -1;

/* Points fd 1 at `fd` until the teardown, which puts the real stdout back
 * (so the suite also runs unforked, CK_FORK=no). */
static void s_redirect_stdout(int fd)
{
    fflush(stdout);
    if (s_saved_stdout < 0)
        s_saved_stdout = dup(1);
    dup2(fd, 1);
    close(fd);
}

static void s_base_setup(void)
{
    ptest_suite_dir_make("jsonl");
}

static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/t-XXXXXX", ptest_suite_dir());
    ck_assert_ptr_nonnull(mkdtemp(s_dir));
    snprintf(s_path, sizeof s_path, "%s/out.jsonl", s_dir);
}

static void s_teardown(void)
{
    if (s_saved_stdout >= 0) {
        fflush(stdout);
        dup2(s_saved_stdout, 1);
        close(s_saved_stdout);
        s_saved_stdout = -1;
    }
    ptest_rmtree(s_dir);
}

static ew_harness *s_open(size_t nch, const char *const *names, const char *const *kv, int *rc)
{
    return ptest_open(NULL, nch, names, kv, rc);
}

static ew_harness *s_make(size_t nch, const char *const *names, const char *const *kv)
{
    return ptest_open(NULL, nch, names, kv, NULL);
}

/* Splits `text` into lines and parses each; returns the count. */
static size_t s_parse_lines(char *text, json_object **out, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        ck_assert_uint_lt(n, max);
        enum json_tokener_error err;
        out[n] = json_tokener_parse_verbose(line, &err);
        ck_assert_msg(out[n] != NULL, "line %zu is not JSON (%s): %s", n + 1,
                      json_tokener_error_desc(err), line);
        n++;
    }
    return n;
}

static json_object *s_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no key \"%s\" in %s", key,
                  json_object_to_json_string(o));
    return v;
}

static double s_num(json_object *o, const char *key)
{
    json_object *v = s_get(o, key);
    ck_assert_msg(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int),
                  "%s is not a number", key);
    return json_object_get_double(v);
}

static const char *const s_scored[] = {"a", "b", "z", "score", "anomaly"};

START_TEST(descriptor)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_SINK);
    ck_assert_str_eq(p->name, "jsonl");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
}
END_TEST

START_TEST(lines_parse_back_exactly)
{
    ew_harness *h = s_make(5, s_scored, (const char *[]){"path", s_path, NULL});
    const int64_t ts[] = {1795710903123456789LL, -1, 0};
    const double v[] = {
        1.5,  0.1 + 0.2, -0.0,       0.1 + 0.2, 1,
        NAN,  INFINITY,  1e-300,     1,         0,
        -1e300, 123456789012345678.0, 4.9e-324, NAN, 0,
    };
    ck_assert_int_eq(ew_harness_consume(h, 3, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "jsonl_lines"), 3);
    ew_harness_destroy(&h);

    char *text = ptest_slurp(s_path);
    /* json-c reads -0 as the integer 0, so check its sign in the text. */
    ck_assert_msg(strstr(text, "\"z\":-0}"), "%s", text);
    json_object *lines[8];
    ck_assert_uint_eq(s_parse_lines(text, lines, 8), 3);

    ck_assert_str_eq(json_object_get_string(s_get(lines[0], "ts")), "2026-11-26T16:35:03.123456Z");
    ck_assert_str_eq(json_object_get_string(s_get(lines[1], "ts")), "1969-12-31T23:59:59.999999Z");
    ck_assert_str_eq(json_object_get_string(s_get(lines[2], "ts")), "1970-01-01T00:00:00.000000Z");
    ck_assert_str_eq(json_object_get_string(s_get(lines[0], "node")), "upstream");

    ck_assert(s_num(lines[0], "score") == 0.1 + 0.2);
    ck_assert(json_object_get_boolean(s_get(lines[0], "anomaly")) == 1);
    ck_assert(s_num(lines[1], "score") == 1);
    ck_assert(json_object_get_boolean(s_get(lines[1], "anomaly")) == 0);
    ck_assert(json_object_is_type(s_get(lines[2], "score"), json_type_null));

    json_object *v0 = s_get(lines[0], "values");
    ck_assert_int_eq(json_object_object_length(v0), 3); /* a, b, z: not score, anomaly */
    ck_assert(s_num(v0, "a") == 1.5);
    ck_assert(s_num(v0, "b") == 0.1 + 0.2);
    ck_assert(s_num(v0, "z") == 0);
    json_object *v1 = s_get(lines[1], "values");
    ck_assert(json_object_is_type(s_get(v1, "a"), json_type_null));
    ck_assert(json_object_is_type(s_get(v1, "b"), json_type_null));
    ck_assert(s_num(v1, "z") == 1e-300);
    json_object *v2 = s_get(lines[2], "values");
    ck_assert(s_num(v2, "a") == -1e300);
    ck_assert(s_num(v2, "b") == 123456789012345678.0);
    ck_assert(s_num(v2, "z") == 4.9e-324);
    for (int i = 0; i < 3; i++)
        json_object_put(lines[i]);
    free(text);
}
END_TEST

START_TEST(numbers_are_shortest_round_trip)
{
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names, (const char *[]){"path", s_path, NULL});
    const int64_t ts[] = {0, 0, 0, 0};
    const double v[] = {0.1, 42, 0.1 + 0.2, -2.5e-7};
    ck_assert_int_eq(ew_harness_consume(h, 4, ts, v), EW_OK);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_path);
    ck_assert_msg(strstr(text, "{\"x\":0.1}"), "%s", text);
    ck_assert_msg(strstr(text, "{\"x\":42}"), "%s", text);
    ck_assert_msg(strstr(text, "{\"x\":0.30000000000000004}"), "%s", text);
    ck_assert_msg(strstr(text, "{\"x\":-2.5e-07}"), "%s", text);
    free(text);
}
END_TEST

START_TEST(no_score_keys_without_a_score)
{
    const char *const names[] = {"temp"};
    ew_harness *h = s_make(1, names, (const char *[]){"path", s_path, "flush", "line", NULL});
    const int64_t ts[] = {1000};
    const double v[] = {20.25};
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_path);
    ck_assert_str_eq(text, "{\"ts\":\"1970-01-01T00:00:00.000001Z\",\"node\":\"upstream\","
                           "\"values\":{\"temp\":20.25}}\n");
    free(text);
}
END_TEST

START_TEST(odd_channel_names_are_escaped)
{
    const char *const names[] = {"say \"hi\"", "back\\slash", "tab\there", "nl\nx",
                                 "\x01" "ctl", "path/to", "ünïcödé €", "score"};
    ew_harness *h = s_make(8, names, (const char *[]){"path", s_path, NULL});
    const int64_t ts[] = {0};
    const double v[] = {1, 2, 3, 4, 5, 6, 7, 0.5};
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_path);
    ck_assert_msg(strchr(text, '\n') == text + strlen(text) - 1, "one line only: %s", text);
    json_object *lines[2];
    ck_assert_uint_eq(s_parse_lines(text, lines, 2), 1);
    json_object *values = s_get(lines[0], "values");
    ck_assert_int_eq(json_object_object_length(values), 7);
    for (int i = 0; i < 7; i++)
        ck_assert(s_num(values, names[i]) == v[i]);
    ck_assert(s_num(lines[0], "score") == 0.5);
    json_object_put(lines[0]);
    free(text);
}
END_TEST

START_TEST(file_is_appended_with_mode_0640)
{
    umask(022);
    const char *const names[] = {"x"};
    const int64_t ts[] = {0};
    const double one[] = {1}, two[] = {2};
    ew_harness *h = s_make(1, names, (const char *[]){"path", s_path, NULL});
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, one), EW_OK);
    ew_harness_destroy(&h);
    struct stat st;
    ck_assert_int_eq(stat(s_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    h = s_make(1, names, (const char *[]){"path", s_path, NULL});
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, two), EW_OK);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_path);
    json_object *lines[4];
    ck_assert_uint_eq(s_parse_lines(text, lines, 4), 2);
    ck_assert(s_num(s_get(lines[0], "values"), "x") == 1);
    ck_assert(s_num(s_get(lines[1], "values"), "x") == 2);
    json_object_put(lines[0]);
    json_object_put(lines[1]);
    free(text);
}
END_TEST

/* A crash can leave a half-written last line; the sink cuts it before
 * appending (so every line stays JSON) and logs what it cut (issue 14 item 11). */
START_TEST(torn_last_line_is_cut_before_appending)
{
    static const char *const kept = "{\"ts\":\"1970-01-01T00:00:00.000000000Z\",\"values\":{\"x\":7}}\n";
    static const char *const torn[] = {"{\"ts\":\"1970-01-01T00:00:00.0", "{"};
    for (size_t k = 0; k < 2; k++) {
        for (int whole = 0; whole < 2; whole++) {
            FILE *f = fopen(s_path, "w");
            ck_assert_ptr_nonnull(f);
            if (whole)
                fputs(kept, f);
            fputs(torn[k], f);
            fclose(f);
            char log[600];
            ptest_capture_stderr(log, sizeof log);
            const char *const names[] = {"x"};
            ew_harness *h = s_make(1, names, (const char *[]){"path", s_path, NULL});
            const int64_t ts[] = {0};
            const double v[] = {1};
            ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
            ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 1);
            ew_harness_destroy(&h);
            char *text = ptest_slurp(log);
            char want[900];
            snprintf(want, sizeof want, "cut %zu bytes of a half-written last line from %s at byte %zu",
                     strlen(torn[k]), s_path, whole ? strlen(kept) : 0);
            ck_assert_msg(strstr(text, want), "log has no \"%s\": %s", want, text);
            free(text);
            ptest_release_stderr(log);
            text = ptest_slurp(s_path);
            if (whole)
                ck_assert_msg(strncmp(text, kept, strlen(kept)) == 0, "%s", text);
            json_object *lines[4];
            ck_assert_uint_eq(s_parse_lines(text, lines, 4), whole ? 2u : 1u);
            ck_assert(s_num(s_get(lines[whole], "values"), "x") == 1);
            for (int i = 0; i <= whole; i++)
                json_object_put(lines[i]);
            free(text);
        }
    }
}
END_TEST

/* A file edgewatch may write but not read is still appended to (the tail
 * cannot be checked then, and the log says so): the repair must not cost a
 * sink that worked before. Needs root to become another user. */
START_TEST(write_only_file_is_still_appended)
{
    const char *fork_mode = getenv("CK_FORK");
    if (geteuid() != 0 || (fork_mode && strcmp(fork_mode, "no") == 0))
        return; /* setuid below would outlive this test unforked */
    FILE *f = fopen(s_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"a\":1}\n", f);
    fclose(f);
    ck_assert_int_eq(chown(s_path, 65534, 65534), 0);
    ck_assert_int_eq(chmod(s_path, 0200), 0);
    ck_assert_int_eq(chmod(ptest_suite_dir(), 0711), 0);
    ck_assert_int_eq(chmod(s_dir, 0711), 0);
    ck_assert_int_eq(setgid(65534), 0);
    ck_assert_int_eq(setuid(65534), 0);
    const char *const names[] = {"x"};
    int rc;
    ew_harness *h = s_open(1, names, (const char *[]){"path", s_path, NULL}, &rc);
    ck_assert_msg(rc == EW_OK, "%s", ew_harness_error(h));
    const int64_t ts[] = {0};
    const double v[] = {1};
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 0);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_INFO), 1);
    ew_harness_destroy(&h);
    struct stat st;
    ck_assert_int_eq(stat(s_path, &st), 0);
    ck_assert_int_gt(st.st_size, 8 + 20);
}
END_TEST

START_TEST(open_error_names_the_path)
{
    const char *const names[] = {"x"};
    int rc;
    ew_harness *h = s_open(1, names, (const char *[]){"path", "/nonexistent/ew/out.jsonl", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "/nonexistent/ew/out.jsonl") &&
                      strstr(ew_harness_error(h), "No such file or directory"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(stdout_by_default)
{
    int fd = open(s_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    s_redirect_stdout(fd);
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names, NULL);
    const int64_t ts[] = {0};
    const double v[] = {7};
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
    ew_harness_destroy(&h);
    /* destroy closed the plugin's descriptor only: stdout still works. */
    ck_assert_int_eq(write(1, "", 0), 0);
    char *text = ptest_slurp(s_path);
    ck_assert_msg(strstr(text, "\"values\":{\"x\":7}}\n"), "%s", text);
    free(text);
}
END_TEST

START_TEST(disk_full_is_transient_then_lost_at_flush)
{
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names, (const char *[]){"path", "/dev/full", NULL});
    const int64_t ts[] = {0, 1};
    const double v[] = {1, 2};
    ck_assert_int_eq(ew_harness_consume(h, 2, ts, v), EW_EAGAIN);
    ck_assert_msg(strstr(ew_harness_error(h), "/dev/full") &&
                      strstr(ew_harness_error(h), "No space left on device"),
                  "%s", ew_harness_error(h));
    ck_assert_int_eq(ew_harness_consume(h, 2, ts, v), EW_EAGAIN);
    ck_assert_int_eq(ew_harness_flush(h), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "2 lines") && strstr(ew_harness_error(h), "lost"),
                  "%s", ew_harness_error(h));
    ck_assert_uint_eq(ew_harness_counter(h, "jsonl_lines"), 0);
    ew_harness_destroy(&h);
}
END_TEST

/* A non-blocking pipe that fills up stands in for a full disk that frees up:
 * retrying the same batch must deliver every line exactly once, in order. */
static void s_retry_delivers_once(const char *flush)
{
    enum { N = 300 };
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_ge(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
    fcntl(p[1], F_SETFL, O_NONBLOCK); /* shared with the plugin's dup of fd 1 */
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    s_redirect_stdout(p[1]);
    const char *const names[] = {"x", "score", "anomaly"};
    ew_harness *h = s_make(3, names, (const char *[]){"flush", flush, NULL});
    int64_t ts[N];
    double v[N * 3];
    for (int i = 0; i < N; i++) {
        ts[i] = 1795710903000000000LL + i;
        v[3 * i] = i + 0.5;
        v[3 * i + 1] = 0.25;
        v[3 * i + 2] = i % 2;
    }
    size_t cap = 1 << 20, got = 0;
    char *out = malloc(cap);
    int rc, retries = 0;
    while ((rc = ew_harness_consume(h, N, ts, v)) == EW_EAGAIN) {
        ck_assert_msg(strstr(ew_harness_error(h), "will retry"), "%s", ew_harness_error(h));
        retries++;
        ssize_t n;
        while ((n = read(p[0], out + got, cap - got)) > 0)
            got += (size_t)n;
    }
    ck_assert_int_eq(rc, EW_OK);
    ck_assert_int_gt(retries, 3); /* the batch really was written in pieces */
    ssize_t n;
    while ((n = read(p[0], out + got, cap - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    ck_assert_uint_eq(ew_harness_counter(h, "jsonl_lines"), N);
    ew_harness_destroy(&h);
    close(p[0]);
    json_object **lines = calloc(N + 1, sizeof *lines);
    ck_assert_uint_eq(s_parse_lines(out, lines, N + 1), N);
    for (int i = 0; i < N; i++) {
        ck_assert(s_num(s_get(lines[i], "values"), "x") == i + 0.5);
        ck_assert(json_object_get_boolean(s_get(lines[i], "anomaly")) == (i % 2));
        json_object_put(lines[i]);
    }
    free(lines);
    free(out);
}

START_TEST(retry_after_partial_write_batch)
{
    s_retry_delivers_once("batch");
}
END_TEST

START_TEST(retry_after_partial_write_line)
{
    s_retry_delivers_once("line");
}
END_TEST

START_TEST(option_errors)
{
    const char *const names[] = {"x"};
    int rc;
    ew_harness *h = s_open(1, names, (const char *[]){"flush", "sometimes", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "flush") && strstr(ew_harness_error(h), "line|batch"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = s_open(1, names, (const char *[]){"file", s_path, NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "file") && strstr(ew_harness_error(h), "path, flush"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

/* PATH.k, or PATH itself for k = 0. */
static void s_rotated(char *out, size_t len, int k)
{
    if (k)
        snprintf(out, len, "%s.%d", s_path, k);
    else
        snprintf(out, len, "%s", s_path);
}

/* Reads `path` and returns its x values in order (NULL and 0 when absent);
 * checks every line is whole JSON and the file is at most `max` bytes. */
static double *s_file_xs(const char *path, size_t max, size_t *n)
{
    *n = 0;
    if (access(path, F_OK) != 0)
        return NULL;
    char *text = ptest_slurp(path);
    size_t len = strlen(text);
    ck_assert_msg(len <= max, "%s holds %zu bytes, more than rotate_size %zu", path, len, max);
    ck_assert_msg(len == 0 || text[len - 1] == '\n', "%s does not end with a whole line", path);
    json_object *lines[4096];
    size_t count = s_parse_lines(text, lines, 4096);
    double *xs = malloc((count + 1) * sizeof *xs);
    for (size_t i = 0; i < count; i++) {
        xs[i] = s_num(s_get(lines[i], "values"), "x");
        json_object_put(lines[i]);
    }
    free(text);
    *n = count;
    return xs;
}

/* Rotation: rotate_keep files plus the current one, none over rotate_size,
 * every line whole, and together the newest lines once each, in order. */
static void s_rotation(const char *flush, const char *fsync_mode)
{
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names, (const char *[]){"path", s_path, "rotate_size", "300", "rotate_keep",
                                                      "3", "flush", flush, "fsync", fsync_mode, NULL});
    enum { N = 200, B = 7 };
    for (int i = 0; i < N; i += B) {
        int64_t ts[B];
        double v[B];
        int n = i + B <= N ? B : N - i;
        for (int k = 0; k < n; k++) {
            ts[k] = 1795710903000000000LL + (i + k);
            v[k] = i + k;
        }
        ck_assert_int_eq(ew_harness_consume(h, (size_t)n, ts, v), EW_OK);
    }
    ck_assert_uint_eq(ew_harness_counter(h, "jsonl_lines"), N);
    ck_assert_uint_gt(ew_harness_counter(h, "jsonl_rotations"), 10);
    ew_harness_destroy(&h);
    char p4[600];
    snprintf(p4, sizeof p4, "%s.4", s_path);
    ck_assert_msg(access(p4, F_OK) != 0, "%s exists: rotate_keep = 3 keeps 3", p4);
    double expect = -1;
    size_t total = 0;
    for (int k = 3; k >= 0; k--) {
        char path[600];
        s_rotated(path, sizeof path, k);
        ck_assert_msg(access(path, F_OK) == 0, "%s is missing", path);
        size_t n;
        double *xs = s_file_xs(path, 300, &n);
        ck_assert_uint_gt(n, 0);
        for (size_t i = 0; i < n; i++) {
            if (expect < 0)
                expect = xs[i];
            ck_assert_msg(xs[i] == expect, "%s: x = %g where %g was expected", path, xs[i], expect);
            expect++;
        }
        total += n;
        free(xs);
    }
    ck_assert(expect == N); /* the newest line is the last one */
    ck_assert_uint_lt(total, N);
}

START_TEST(rotation_batch)
{
    s_rotation("batch", "batch");
}
END_TEST

START_TEST(rotation_line_fsync_always)
{
    s_rotation("line", "always");
}
END_TEST

START_TEST(rotation_never_sync)
{
    s_rotation("batch", "never");
}
END_TEST

/* A line longer than rotate_size gets a file of its own, never split. */
START_TEST(rotation_long_line_gets_its_own_file)
{
    const char *const names[] = {"x"};
    ew_harness *h =
        s_make(1, names, (const char *[]){"path", s_path, "rotate_size", "10", "rotate_keep", "5", NULL});
    const int64_t ts[] = {0, 1, 2};
    const double v[] = {1, 2, 3};
    ck_assert_int_eq(ew_harness_consume(h, 3, ts, v), EW_OK);
    ew_harness_destroy(&h);
    for (int k = 2; k >= 0; k--) {
        char path[600];
        s_rotated(path, sizeof path, k);
        size_t n;
        double *xs = s_file_xs(path, 1000, &n);
        ck_assert_uint_eq(n, 1);
        ck_assert(xs[0] == 3 - k);
        free(xs);
    }
}
END_TEST

/* The size of an existing file counts: it is rotated once it is full. */
START_TEST(rotation_counts_an_existing_file)
{
    FILE *f = fopen(s_path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 290; i++)
        fputc(i % 29 == 28 ? '\n' : 'a', f); /* whole lines: a torn one would be cut */
    fclose(f);
    const char *const names[] = {"x"};
    ew_harness *h = s_make(1, names, (const char *[]){"path", s_path, "rotate_size", "300", NULL});
    const int64_t ts[] = {0};
    const double v[] = {1};
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "jsonl_rotations"), 1);
    ew_harness_destroy(&h);
    char p1[600];
    snprintf(p1, sizeof p1, "%s.1", s_path);
    struct stat st;
    ck_assert_int_eq(stat(p1, &st), 0);
    ck_assert_int_eq(st.st_size, 290);
    size_t n;
    double *xs = s_file_xs(s_path, 300, &n);
    ck_assert_uint_eq(n, 1);
    free(xs);
}
END_TEST

/* A rotation that cannot rename says which rename and why, and stops the node
 * without losing the lines already written. */
START_TEST(rotation_error_is_clear)
{
    char p1[600];
    snprintf(p1, sizeof p1, "%s.1", s_path);
    ck_assert_int_eq(mkdir(p1, 0700), 0); /* PATH -> PATH.1 fails: it is a folder */
    const char *const names[] = {"x"};
    ew_harness *h =
        s_make(1, names, (const char *[]){"path", s_path, "rotate_size", "100", "rotate_keep", "1", NULL});
    const int64_t ts[] = {0, 1, 2, 3};
    const double v[] = {1, 2, 3, 4};
    ck_assert_int_eq(ew_harness_consume(h, 4, ts, v), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "cannot rotate") && strstr(ew_harness_error(h), p1) &&
                      strstr(ew_harness_error(h), "Is a directory"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    size_t n;
    double *xs = s_file_xs(s_path, 100, &n);
    ck_assert_uint_ge(n, 1);
    ck_assert(xs[0] == 1);
    free(xs);
}
END_TEST

START_TEST(rotation_and_fsync_need_a_file)
{
    const char *const names[] = {"x"};
    int rc;
    ew_harness *h = s_open(1, names, (const char *[]){"rotate_size", "1MiB", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "rotate_size") && strstr(ew_harness_error(h), "standard output"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = s_open(1, names, (const char *[]){"fsync", "batch", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "fsync"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = s_open(1, names, (const char *[]){"path", s_path, "fsync", "sometimes", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "never|batch|always"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

/* ---- alert events (ABI 1.2 consume_event) ---- */

START_TEST(events_are_exact_lines)
{
    ew_harness *h = s_make(1, (const char *[]){"x"}, (const char *[]){"path", s_path, "flush", "line", NULL});
    ew_event open = ptest_event(EW_EVENT_OPEN, 1), closed = ptest_event(EW_EVENT_CLOSED, 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &open), EW_OK);
    /* Written when consume_event returns, not at flush. */
    char *text = ptest_slurp(s_path);
    ck_assert_str_eq(text, PTEST_EVENT_OPEN_JSON "\n");
    free(text);
    ck_assert_int_eq(ew_harness_consume_event(h, &closed), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "jsonl_lines"), 2);
    ew_harness_destroy(&h);
    text = ptest_slurp(s_path);
    ck_assert_str_eq(text, PTEST_EVENT_OPEN_JSON "\n" PTEST_EVENT_CLOSED_JSON "\n");
    json_object *lines[4];
    ck_assert_uint_eq(s_parse_lines(text, lines, 4), 2);
    json_object *ch = s_get(lines[1], "channels");
    ck_assert_int_eq(json_object_array_length(ch), 2);
    ck_assert_str_eq(json_object_get_string(s_get(json_object_array_get_idx(ch, 1), "name")), "say \"hi\"");
    ck_assert(s_num(lines[1], "duration_s") == 12.5);
    ck_assert(json_object_is_type(s_get(lines[0], "end"), json_type_null));
    json_object_put(lines[0]);
    json_object_put(lines[1]);
    free(text);
}
END_TEST

/* Events and samples share one file, in the order they came. */
START_TEST(events_between_samples_keep_their_order)
{
    ew_harness *h = s_make(1, (const char *[]){"x"}, (const char *[]){"path", s_path, NULL});
    const int64_t ts[] = {10, 11};
    const double v[] = {1, 2};
    ew_event open = ptest_event(EW_EVENT_OPEN, 7);
    open.n_channels = 0; /* a detector without attribution */
    open.channels = NULL;
    open.peak_score = NAN;
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_consume_event(h, &open), EW_OK);
    ck_assert_int_eq(ew_harness_consume(h, 1, ts + 1, v + 1), EW_OK);
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_path);
    json_object *lines[4];
    ck_assert_uint_eq(s_parse_lines(text, lines, 4), 3);
    ck_assert(s_num(s_get(lines[0], "values"), "x") == 1);
    ck_assert_str_eq(json_object_get_string(s_get(lines[1], "event")), "open");
    ck_assert_int_eq(json_object_get_int64(s_get(lines[1], "id")), 7);
    ck_assert_int_eq(json_object_array_length(s_get(lines[1], "channels")), 0);
    ck_assert(json_object_is_type(s_get(lines[1], "peak_score"), json_type_null));
    ck_assert(s_num(s_get(lines[2], "values"), "x") == 2);
    for (int i = 0; i < 3; i++)
        json_object_put(lines[i]);
    free(text);
}
END_TEST

/* Events rotate like samples: no file over rotate_size, every line whole,
 * the newest events once each and in order across PATH.N .. PATH. */
START_TEST(events_rotate)
{
    ew_harness *h = s_make(1, (const char *[]){"x"},
                           (const char *[]){"path", s_path, "rotate_size", "1000", "rotate_keep", "3",
                                            "fsync", "always", NULL});
    enum { N = 40 };
    for (uint64_t id = 1; id <= N; id++) {
        ew_event ev = ptest_event(id % 2 ? EW_EVENT_OPEN : EW_EVENT_CLOSED, (id + 1) / 2);
        ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_OK);
    }
    ck_assert_uint_eq(ew_harness_counter(h, "jsonl_lines"), N);
    ck_assert_uint_gt(ew_harness_counter(h, "jsonl_rotations"), 5);
    ew_harness_destroy(&h);
    int64_t expect = -1;
    for (int k = 3; k >= 0; k--) {
        char path[600];
        s_rotated(path, sizeof path, k);
        char *text = ptest_slurp(path);
        size_t len = strlen(text);
        ck_assert_msg(len > 0 && len <= 1000 && text[len - 1] == '\n', "%s: %zu bytes", path, len);
        json_object *lines[16];
        size_t n = s_parse_lines(text, lines, 16);
        for (size_t i = 0; i < n; i++) {
            /* Line number k of the stream is event (k+1)/2, open when k is odd. */
            int64_t seq = 2 * json_object_get_int64(s_get(lines[i], "id")) -
                          (strcmp(json_object_get_string(s_get(lines[i], "event")), "open") == 0);
            if (expect < 0)
                expect = seq;
            ck_assert_int_eq(seq, expect);
            expect++;
            json_object_put(lines[i]);
        }
        free(text);
    }
    ck_assert_int_eq(expect, N + 1);
}
END_TEST

/* fsync applies to events: a file that cannot be synced (a FIFO) fails the
 * event with the reason when fsync is on, and is fine when it is off. */
START_TEST(events_are_synced)
{
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/fifo", s_dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    ck_assert_int_ge(rd, 0);
    ew_event ev = ptest_event(EW_EVENT_OPEN, 1);
    ew_harness *h = s_make(1, (const char *[]){"x"}, (const char *[]){"path", fifo, "fsync", "batch", NULL});
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "fdatasync of") && strstr(ew_harness_error(h), fifo),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = s_make(1, (const char *[]){"x"}, (const char *[]){"path", fifo, NULL});
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_OK);
    ew_harness_destroy(&h);
    char buf[8192];
    ssize_t n = read(rd, buf, sizeof buf - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    /* The line written before the failed sync, then the one of the second run. */
    ck_assert_str_eq(buf, PTEST_EVENT_OPEN_JSON "\n" PTEST_EVENT_OPEN_JSON "\n");
    close(rd);
}
END_TEST

/* An event line larger than the pipe is finished on the host's retry, never
 * repeated; an event after it is written too. */
START_TEST(event_retry_after_partial_write)
{
    enum { NCH = 200 };
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_ge(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    s_redirect_stdout(p[1]);
    ew_harness *h = s_make(1, (const char *[]){"x"}, NULL);
    static char names[NCH][48];
    ew_event_channel ch[NCH];
    for (int i = 0; i < NCH; i++) {
        snprintf(names[i], sizeof names[i], "a_rather_long_channel_name_%03d", i);
        ch[i] = (ew_event_channel){names[i], 1.0 / NCH};
    }
    ew_event big = ptest_event(EW_EVENT_CLOSED, 3);
    big.n_channels = NCH;
    big.channels = ch;
    ew_event next = ptest_event(EW_EVENT_OPEN, 4);
    size_t cap = 1 << 20, got = 0;
    char *out = malloc(cap);
    int rc, retries = 0;
    while ((rc = ew_harness_consume_event(h, &big)) == EW_EAGAIN) {
        ck_assert_msg(strstr(ew_harness_error(h), "will retry"), "%s", ew_harness_error(h));
        ck_assert_int_lt(++retries, 1000);
        ssize_t n;
        while ((n = read(p[0], out + got, cap - got)) > 0)
            got += (size_t)n;
    }
    ck_assert_int_eq(rc, EW_OK);
    ck_assert_int_gt(retries, 0);
    ck_assert_int_eq(ew_harness_consume_event(h, &next), EW_OK);
    ssize_t n;
    while ((n = read(p[0], out + got, cap - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    ew_harness_destroy(&h);
    close(p[0]);
    json_object *lines[4];
    ck_assert_uint_eq(s_parse_lines(out, lines, 4), 2);
    ck_assert_int_eq(json_object_array_length(s_get(lines[0], "channels")), NCH);
    ck_assert_int_eq(json_object_get_int64(s_get(lines[0], "id")), 3);
    ck_assert_int_eq(json_object_get_int64(s_get(lines[1], "id")), 4);
    json_object_put(lines[0]);
    json_object_put(lines[1]);
    free(out);
}
END_TEST

START_TEST(event_disk_full_is_transient_then_lost_at_flush)
{
    ew_harness *h = s_make(1, (const char *[]){"x"}, (const char *[]){"path", "/dev/full", NULL});
    ew_event ev = ptest_event(EW_EVENT_OPEN, 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_EAGAIN);
    ck_assert_msg(strstr(ew_harness_error(h), "No space left on device"), "%s", ew_harness_error(h));
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_EAGAIN);
    ck_assert_int_eq(ew_harness_flush(h), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "1 lines") && strstr(ew_harness_error(h), "last event"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

/* Events no host makes are refused with the reason, and nothing is written. */
START_TEST(bad_events_are_refused_clearly)
{
    ew_harness *h = s_make(1, (const char *[]){"x"}, (const char *[]){"path", s_path, NULL});
    ew_event ev = ptest_event(EW_EVENT_OPEN, 5);
    ev.node = NULL;
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "event 5 names no detector node"), "%s", ew_harness_error(h));
    ev = ptest_event(EW_EVENT_OPEN, 5);
    ev.state = (ew_event_state)9;
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "unknown state 9"), "%s", ew_harness_error(h));
    ev = ptest_event(EW_EVENT_OPEN, 5);
    ev.struct_size = 8;
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "older than ABI 1.2"), "%s", ew_harness_error(h));
    ck_assert_int_eq(ew_harness_consume_event(h, NULL), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "NULL"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    char *text = ptest_slurp(s_path);
    ck_assert_str_eq(text, "");
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-jsonl");
    TCase *tc = tcase_create("jsonl");
    tcase_add_unchecked_fixture(tc, s_base_setup, ptest_suite_dir_remove);
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, descriptor);
    tcase_add_test(tc, lines_parse_back_exactly);
    tcase_add_test(tc, numbers_are_shortest_round_trip);
    tcase_add_test(tc, no_score_keys_without_a_score);
    tcase_add_test(tc, odd_channel_names_are_escaped);
    tcase_add_test(tc, file_is_appended_with_mode_0640);
    tcase_add_test(tc, torn_last_line_is_cut_before_appending);
    tcase_add_test(tc, write_only_file_is_still_appended);
    tcase_add_test(tc, open_error_names_the_path);
    tcase_add_test(tc, stdout_by_default);
    tcase_add_test(tc, disk_full_is_transient_then_lost_at_flush);
    tcase_add_test(tc, retry_after_partial_write_batch);
    tcase_add_test(tc, retry_after_partial_write_line);
    tcase_add_test(tc, option_errors);
    tcase_add_test(tc, rotation_batch);
    tcase_add_test(tc, rotation_line_fsync_always);
    tcase_add_test(tc, rotation_never_sync);
    tcase_add_test(tc, rotation_long_line_gets_its_own_file);
    tcase_add_test(tc, rotation_counts_an_existing_file);
    tcase_add_test(tc, rotation_error_is_clear);
    tcase_add_test(tc, rotation_and_fsync_need_a_file);
    tcase_add_test(tc, events_are_exact_lines);
    tcase_add_test(tc, events_between_samples_keep_their_order);
    tcase_add_test(tc, events_rotate);
    tcase_add_test(tc, events_are_synced);
    tcase_add_test(tc, event_retry_after_partial_write);
    tcase_add_test(tc, event_disk_full_is_transient_then_lost_at_flush);
    tcase_add_test(tc, bad_events_are_refused_clearly);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
