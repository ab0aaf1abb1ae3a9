/* Unit tests for core/log.c: formats, level filter, JSON escaping, long and concurrent lines. */
#include "log.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A logger writing into a pipe, and everything read back from it. */
typedef struct capture {
    int fds[2];
    logger lg;
} capture;

static void s_capture_open(capture *c, ew_log_level level, log_format format)
{
    ck_assert_int_eq(pipe(c->fds), 0);
    c->lg = (logger){.level = level, .format = format, .fd = c->fds[1]};
}

/* Closes the write end and returns all that was written (malloc'd, NUL-terminated). */
static char *s_capture_read(capture *c)
{
    close(c->fds[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n = read(c->fds[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_int_ge(n, 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(c->fds[0]);
    buf[len] = '\0';
    return buf;
}

static size_t s_count_lines(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

static int s_matches(const char *text, const char *pattern)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    return rc == 0;
}

/* Asserts that ts is a UTC timestamp with milliseconds within a few seconds of now. */
static void s_check_timestamp(const char *ts)
{
    ck_assert_msg(
        s_matches(ts, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"),
        "bad timestamp '%s'", ts);
    struct tm tm = {0};
    const char *rest = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    ck_assert_ptr_nonnull(rest);
    time_t when = timegm(&tm);
    long diff = (long)(time(NULL) - when);
    ck_assert_msg(diff >= -2 && diff <= 5, "timestamp %s is %ld s away from now: not UTC?", ts,
                  diff);
}

/* Parses one JSON line (without its newline) and returns the object. */
static json_object *s_parse_json_line(const char *line, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *obj = json_tokener_parse_ex(tok, line, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    json_tokener_free(tok);
    ck_assert_msg(obj && jerr == json_tokener_success, "not JSON: %.*s", (int)len, line);
    ck_assert(json_object_is_type(obj, json_type_object));
    return obj;
}

static const char *s_get_string(json_object *obj, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(obj, key, &v), "missing key %s", key);
    ck_assert(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

START_TEST(test_text_format)
{
    capture c;
    s_capture_open(&c, EW_LOG_DEBUG, LOG_FORMAT_TEXT);
    log_write(&c.lg, EW_LOG_WARN, "pump_z", "pressure %d bar", 42);
    char *out = s_capture_read(&c);
    ck_assert_msg(s_matches(out,
                            "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                            "WARN  \\[pump_z\\] pressure 42 bar\n$"),
                  "unexpected line: %s", out);
    s_check_timestamp(out);
    free(out);
}
END_TEST

START_TEST(test_text_levels_and_no_node)
{
    capture c;
    s_capture_open(&c, EW_LOG_DEBUG, LOG_FORMAT_TEXT);
    log_write(&c.lg, EW_LOG_ERROR, NULL, "e");
    log_write(&c.lg, EW_LOG_WARN, NULL, "w");
    log_write(&c.lg, EW_LOG_INFO, NULL, "i");
    log_write(&c.lg, EW_LOG_DEBUG, NULL, "d");
    char *out = s_capture_read(&c);
    ck_assert_uint_eq(s_count_lines(out), 4);
    ck_assert_msg(s_matches(out, "^[^\n]{24} ERROR e\n[^\n]{24} WARN  w\n[^\n]{24} INFO  i\n"
                                 "[^\n]{24} DEBUG d\n$"),
                  "unexpected lines: %s", out);
    ck_assert_ptr_null(strchr(out, '['));
    free(out);
}
END_TEST

START_TEST(test_level_filter)
{
    capture c;
    s_capture_open(&c, EW_LOG_WARN, LOG_FORMAT_TEXT);
    log_write(&c.lg, EW_LOG_DEBUG, "n", "debug dropped");
    log_write(&c.lg, EW_LOG_INFO, "n", "info dropped");
    log_write(&c.lg, EW_LOG_WARN, "n", "warn kept");
    log_write(&c.lg, EW_LOG_ERROR, "n", "error kept");
    char *out = s_capture_read(&c);
    ck_assert_uint_eq(s_count_lines(out), 2);
    ck_assert_ptr_null(strstr(out, "dropped"));
    ck_assert_ptr_nonnull(strstr(out, "warn kept"));
    ck_assert_ptr_nonnull(strstr(out, "error kept"));
    free(out);

    s_capture_open(&c, EW_LOG_ERROR, LOG_FORMAT_JSON);
    log_write(&c.lg, EW_LOG_WARN, "n", "warn dropped");
    out = s_capture_read(&c);
    ck_assert_str_eq(out, "");
    free(out);
}
END_TEST

START_TEST(test_text_control_chars_stay_on_one_line)
{
    capture c;
    s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_TEXT);
    log_write(&c.lg, EW_LOG_INFO, "n", "line1\nfake 2026 ERROR line2\r\tend\x01");
    char *out = s_capture_read(&c);
    ck_assert_uint_eq(s_count_lines(out), 1);
    ck_assert_ptr_nonnull(strstr(out, "line1\\nfake 2026 ERROR line2\\r\\tend\\x01\n"));
    free(out);
}
END_TEST

START_TEST(test_json_fields)
{
    capture c;
    s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_JSON);
    log_write(&c.lg, EW_LOG_ERROR, "pump_z", "model %s failed", "m1");
    char *out = s_capture_read(&c);
    ck_assert_uint_eq(s_count_lines(out), 1);
    size_t len = strlen(out);
    ck_assert_int_eq(out[len - 1], '\n');
    json_object *obj = s_parse_json_line(out, len - 1);
    ck_assert_str_eq(s_get_string(obj, "level"), "error");
    ck_assert_str_eq(s_get_string(obj, "node"), "pump_z");
    ck_assert_str_eq(s_get_string(obj, "msg"), "model m1 failed");
    const char *ts = s_get_string(obj, "ts");
    ck_assert_uint_eq(strlen(ts), 24);
    s_check_timestamp(ts);
    ck_assert_int_eq(json_object_object_length(obj), 4);
    json_object_put(obj);
    free(out);
}
END_TEST

START_TEST(test_json_without_node)
{
    capture c;
    s_capture_open(&c, EW_LOG_DEBUG, LOG_FORMAT_JSON);
    log_write(&c.lg, EW_LOG_DEBUG, NULL, "hello");
    char *out = s_capture_read(&c);
    json_object *obj = s_parse_json_line(out, strlen(out) - 1);
    ck_assert(!json_object_object_get_ex(obj, "node", NULL));
    ck_assert_str_eq(s_get_string(obj, "level"), "debug");
    ck_assert_str_eq(s_get_string(obj, "msg"), "hello");
    json_object_put(obj);
    free(out);
}
END_TEST

START_TEST(test_json_escaping)
{
    static const char tricky[] =
        "quote \" backslash \\ slash / newline \n cr \r tab \t bell \x07 us \x1f del \x7f "
        "unicode \xc3\xa9\xe2\x82\xac end";
    capture c;
    s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_JSON);
    log_write(&c.lg, EW_LOG_INFO, "we\"ird\nnode", "%s", tricky);
    char *out = s_capture_read(&c);
    /* Exactly one physical line: the newline inside the message must be escaped. */
    ck_assert_uint_eq(s_count_lines(out), 1);
    ck_assert_ptr_nonnull(strstr(out, "\\\""));
    ck_assert_ptr_nonnull(strstr(out, "\\n"));
    ck_assert_ptr_nonnull(strstr(out, "\\u0007"));
    ck_assert_ptr_nonnull(strstr(out, "\\u001f"));
    for (const char *p = out; p[1]; p++)
        ck_assert_msg((unsigned char)*p >= 0x20, "raw control byte 0x%02x in JSON line",
                      (unsigned char)*p);
    json_object *obj = s_parse_json_line(out, strlen(out) - 1);
    ck_assert_str_eq(s_get_string(obj, "msg"), tricky);
    ck_assert_str_eq(s_get_string(obj, "node"), "we\"ird\nnode");
    json_object_put(obj);
    free(out);
}
END_TEST

START_TEST(test_json_invalid_utf8_replaced)
{
    capture c;
    s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_JSON);
    log_write(&c.lg, EW_LOG_INFO, NULL, "bad \xff byte, cut \xe2\x82 and ok \xc3\xa9");
    char *out = s_capture_read(&c);
    json_object *obj = s_parse_json_line(out, strlen(out) - 1);
    ck_assert_str_eq(s_get_string(obj, "msg"),
                     "bad \xef\xbf\xbd byte, cut \xef\xbf\xbd\xef\xbf\xbd and ok \xc3\xa9");
    json_object_put(obj);
    free(out);
}
END_TEST

START_TEST(test_long_text_line_is_cut)
{
    char *msg = malloc(10001);
    memset(msg, 'x', 10000);
    msg[10000] = '\0';
    capture c;
    s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_TEXT);
    log_write(&c.lg, EW_LOG_INFO, "n", "%s", msg);
    char *out = s_capture_read(&c);
    size_t len = strlen(out);
    ck_assert_uint_eq(s_count_lines(out), 1);
    ck_assert_uint_le(len, 4096);
    ck_assert_uint_ge(len, 4000);
    ck_assert_str_eq(out + len - 4, "...\n");
    free(out);
    free(msg);
}
END_TEST

START_TEST(test_long_json_line_is_cut)
{
    /* Quotes double in size when escaped and control bytes grow six-fold: the cut
     * must account for escaping, stay valid JSON and not split a character. */
    static const char *fill[] = {"\"", "\x01", "\xe2\x82\xac", "a"};
    for (size_t f = 0; f < sizeof fill / sizeof fill[0]; f++) {
        size_t unit = strlen(fill[f]);
        size_t count = 9000 / unit;
        char *msg = malloc(count * unit + 1);
        for (size_t i = 0; i < count; i++)
            memcpy(msg + i * unit, fill[f], unit);
        msg[count * unit] = '\0';
        capture c;
        s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_JSON);
        log_write(&c.lg, EW_LOG_INFO, "node", "%s", msg);
        char *out = s_capture_read(&c);
        size_t len = strlen(out);
        ck_assert_uint_eq(s_count_lines(out), 1);
        ck_assert_uint_le(len, 4096);
        ck_assert_uint_ge(len, 3000);
        json_object *obj = s_parse_json_line(out, len - 1);
        const char *got = s_get_string(obj, "msg");
        size_t got_len = strlen(got);
        ck_assert_uint_gt(got_len, 3);
        ck_assert_str_eq(got + got_len - 3, "...");
        /* What is left is a whole number of fill units taken from the start. */
        ck_assert_uint_eq((got_len - 3) % unit, 0);
        ck_assert_int_eq(memcmp(got, msg, got_len - 3), 0);
        json_object_put(obj);
        free(out);
        free(msg);
    }
}
END_TEST

typedef struct writer_arg {
    const logger *lg;
    int id;
} writer_arg;

static void *s_writer(void *p)
{
    const writer_arg *a = p;
    char pad[1500];
    memset(pad, 'a' + a->id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < 200; i++)
        log_write(a->lg, EW_LOG_INFO, "t", "writer=%d seq=%d %s", a->id, i, pad);
    return NULL;
}

typedef struct reader_arg {
    int fd;
    char *buf;
    size_t len, cap;
} reader_arg;

static void *s_reader(void *p)
{
    reader_arg *r = p;
    for (;;) {
        if (r->len + 65536 > r->cap) {
            r->cap = r->cap ? r->cap * 2 : 1 << 20;
            r->buf = realloc(r->buf, r->cap);
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    r->buf[r->len] = '\0';
    return NULL;
}

START_TEST(test_concurrent_lines_do_not_interleave)
{
    /* Lines of ~1.6 KB from 8 threads into one pipe: with one write(2) per line
     * (under PIPE_BUF) every line arrives whole and parses. */
    capture c;
    s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_JSON);
    reader_arg r = {.fd = c.fds[0]};
    pthread_t reader, writers[8];
    writer_arg args[8];
    ck_assert_int_eq(pthread_create(&reader, NULL, s_reader, &r), 0);
    for (int i = 0; i < 8; i++) {
        args[i] = (writer_arg){.lg = &c.lg, .id = i};
        ck_assert_int_eq(pthread_create(&writers[i], NULL, s_writer, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(writers[i], NULL);
    close(c.fds[1]);
    pthread_join(reader, NULL);
    close(c.fds[0]);

    int seen[8] = {0};
    size_t lines = 0;
    for (char *line = r.buf; *line;) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        json_object *obj = s_parse_json_line(line, (size_t)(nl - line));
        int id = -1, seq = -1;
        ck_assert_int_eq(sscanf(s_get_string(obj, "msg"), "writer=%d seq=%d", &id, &seq), 2);
        ck_assert(id >= 0 && id < 8);
        ck_assert_int_eq(seq, seen[id]); /* each writer's lines arrive in order */
        seen[id]++;
        json_object_put(obj);
        lines++;
        line = nl + 1;
    }
    ck_assert_uint_eq(lines, 8 * 200);
    free(r.buf);
}
END_TEST

START_TEST(test_parse_level_and_format)
{
    ew_log_level level = EW_LOG_ERROR;
    ck_assert_int_eq(log_parse_level("debug", &level), 0);
    ck_assert_int_eq(level, EW_LOG_DEBUG);
    ck_assert_int_eq(log_parse_level("warn", &level), 0);
    ck_assert_int_eq(level, EW_LOG_WARN);
    ck_assert_int_eq(log_parse_level("INFO", &level), 0);
    ck_assert_int_eq(level, EW_LOG_INFO);
    ck_assert_int_eq(log_parse_level("error", &level), 0);
    ck_assert_int_eq(level, EW_LOG_ERROR);
    ck_assert_int_eq(log_parse_level("verbose", &level), -1);
    ck_assert_int_eq(log_parse_level("", &level), -1);
    ck_assert_int_eq(log_parse_level("warning ", &level), -1);
    ck_assert_int_eq(log_parse_level(NULL, &level), -1);
    ck_assert_int_eq(level, EW_LOG_ERROR); /* untouched on failure */

    log_format format = LOG_FORMAT_TEXT;
    ck_assert_int_eq(log_parse_format("json", &format), 0);
    ck_assert_int_eq(format, LOG_FORMAT_JSON);
    ck_assert_int_eq(log_parse_format("text", &format), 0);
    ck_assert_int_eq(format, LOG_FORMAT_TEXT);
    ck_assert_int_eq(log_parse_format("xml", &format), -1);
    ck_assert_int_eq(log_parse_format(NULL, &format), -1);

    ck_assert_str_eq(log_level_name(EW_LOG_ERROR), "error");
    ck_assert_str_eq(log_level_name(EW_LOG_WARN), "warn");
    ck_assert_str_eq(log_level_name(EW_LOG_INFO), "info");
    ck_assert_str_eq(log_level_name(EW_LOG_DEBUG), "debug");
}
END_TEST

START_TEST(test_default_and_robustness)
{
    logger lg = log_default();
    ck_assert_int_eq(lg.level, EW_LOG_INFO);
    ck_assert_int_eq(lg.format, LOG_FORMAT_TEXT);
    ck_assert_int_eq(lg.fd, 2);

    /* errno survives a log call, so "log then report errno" works. */
    capture c;
    s_capture_open(&c, EW_LOG_INFO, LOG_FORMAT_TEXT);
    errno = ENOSPC;
    log_write(&c.lg, EW_LOG_INFO, NULL, "x");
    ck_assert_int_eq(errno, ENOSPC);
    free(s_capture_read(&c));

    /* Unwritable destinations drop the line quietly. */
    logger bad = {.level = EW_LOG_DEBUG, .format = LOG_FORMAT_JSON, .fd = -1};
    log_write(&bad, EW_LOG_ERROR, "n", "dropped");
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    close(fds[0]);
    close(fds[1]);
    bad.fd = fds[1]; /* closed: EBADF */
    log_write(&bad, EW_LOG_ERROR, "n", "dropped");
    log_write(NULL, EW_LOG_ERROR, "n", "dropped");
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_text_format);
    tcase_add_test(tc, test_text_levels_and_no_node);
    tcase_add_test(tc, test_level_filter);
    tcase_add_test(tc, test_text_control_chars_stay_on_one_line);
    tcase_add_test(tc, test_json_fields);
    tcase_add_test(tc, test_json_without_node);
    tcase_add_test(tc, test_json_escaping);
    tcase_add_test(tc, test_json_invalid_utf8_replaced);
    tcase_add_test(tc, test_long_text_line_is_cut);
    tcase_add_test(tc, test_long_json_line_is_cut);
    tcase_add_test(tc, test_concurrent_lines_do_not_interleave);
    tcase_add_test(tc, test_parse_level_and_format);
    tcase_add_test(tc, test_default_and_robustness);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
