/* Unit tests for core/config.c: sections, keys and their lines, comments, continuations, errors and ${VAR}. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Parses text that must be valid. */
static void s_load_ok(const char *text, config *cfg)
{
    config_error err = {0};
    int rc = config_load_string("test.ini", text, cfg, &err);
    ck_assert_msg(rc == 0, "unexpected error at line %d: %s", err.line, err.message);
}

/* Parses text that must fail; returns the formatted error in out. */
static void s_load_bad(const char *text, config_error *err, char *out, size_t outlen)
{
    config cfg;
    memset(err, 0, sizeof *err);
    ck_assert_int_eq(config_load_string("test.ini", text, &cfg, err), -1);
    /* A failed load leaves nothing to free. */
    ck_assert_ptr_null(cfg.sections);
    ck_assert_uint_eq(cfg.count, 0);
    config_error_format("test.ini", err, out, outlen);
}

static void s_assert_entry(const config *cfg, const char *section, const char *key, const char *value, int line)
{
    const config_section *sec = config_find(cfg, section);
    ck_assert_msg(sec != NULL, "no section [%s]", section);
    const config_entry *e = config_get(sec, key);
    ck_assert_msg(e != NULL, "no key %s in [%s]", key, section);
    ck_assert_str_eq(e->value, value);
    ck_assert_int_eq(e->line, line);
}

START_TEST(test_sections_and_lines)
{
    config cfg;
    s_load_ok("; a pipeline\n"            /* 1 */
              "[pipeline]\n"              /* 2 */
              "name = plant\n"            /* 3 */
              "\n"                        /* 4 */
              "# another comment\n"       /* 5 */
              "[source.pump]\n"           /* 6 */
              "   rate   =   10   \n"     /* 7: indented, but the first key: not a continuation */
              "plugin=synth\n"            /* 8 */
              "[sink.empty]\n"            /* 9: a section without keys */
              "[sink.out]\n"              /* 10 */
              "plugin = jsonl\n"          /* 11 */
              "input = pump\n",           /* 12 */
              &cfg);
    ck_assert_str_eq(cfg.path, "test.ini");
    ck_assert_uint_eq(cfg.count, 4);
    ck_assert_str_eq(cfg.sections[0].name, "pipeline");
    ck_assert_int_eq(cfg.sections[0].line, 2);
    ck_assert_str_eq(cfg.sections[1].name, "source.pump");
    ck_assert_int_eq(cfg.sections[1].line, 6);
    ck_assert_str_eq(cfg.sections[2].name, "sink.empty");
    ck_assert_int_eq(cfg.sections[2].line, 9);
    ck_assert_uint_eq(cfg.sections[2].count, 0);
    ck_assert_str_eq(cfg.sections[3].name, "sink.out");
    ck_assert_int_eq(cfg.sections[3].line, 10);
    ck_assert_uint_eq(cfg.sections[0].count, 1);
    ck_assert_uint_eq(cfg.sections[1].count, 2);
    ck_assert_uint_eq(cfg.sections[3].count, 2);
    s_assert_entry(&cfg, "pipeline", "name", "plant", 3);
    s_assert_entry(&cfg, "source.pump", "rate", "10", 7);
    s_assert_entry(&cfg, "source.pump", "plugin", "synth", 8);
    s_assert_entry(&cfg, "sink.out", "plugin", "jsonl", 11);
    s_assert_entry(&cfg, "sink.out", "input", "pump", 12);
    /* Keys keep their order. */
    ck_assert_str_eq(cfg.sections[3].entries[0].key, "plugin");
    ck_assert_str_eq(cfg.sections[3].entries[1].key, "input");
    ck_assert_ptr_null(config_find(&cfg, "sink.none"));
    ck_assert_ptr_null(config_get(config_find(&cfg, "pipeline"), "missing"));
    ck_assert_ptr_null(config_get(NULL, "name"));
    config_free(&cfg);
    ck_assert_ptr_null(cfg.sections);
    config_free(&cfg); /* twice is harmless */
}
END_TEST

START_TEST(test_comments)
{
    config cfg;
    s_load_ok("[s]\n"
              "; whole-line comment with = sign\n"
              "# hash comment with = sign\n"
              "    ; indented comment\n"
              "a = 1 ; inline comment\n"
              "b = x;y\n"
              "c =\n",
              &cfg);
    ck_assert_uint_eq(cfg.sections[0].count, 3);
    s_assert_entry(&cfg, "s", "a", "1", 5);
    s_assert_entry(&cfg, "s", "b", "x;y", 6);
    s_assert_entry(&cfg, "s", "c", "", 7);
    config_free(&cfg);
}
END_TEST

START_TEST(test_continuation)
{
    config cfg;
    s_load_ok("[sink.out]\n"
              "input = a,\n"
              "   b,\n"
              "\tc\n"
              "plugin = jsonl\n",
              &cfg);
    ck_assert_uint_eq(cfg.sections[0].count, 2);
    s_assert_entry(&cfg, "sink.out", "input", "a, b, c", 2);
    s_assert_entry(&cfg, "sink.out", "plugin", "jsonl", 5);
    config_free(&cfg);
}
END_TEST

START_TEST(test_long_section_name)
{
    /* Node names may have 63 characters; the section name is then 72 long. */
    char name[64];
    memset(name, 'n', 63);
    name[63] = '\0';
    char text[400];
    snprintf(text, sizeof text, "[detector.%s]\nplugin = zscore\ninput = a\n", name);
    config cfg;
    s_load_ok(text, &cfg);
    char section[80];
    snprintf(section, sizeof section, "detector.%s", name);
    ck_assert_uint_eq(cfg.count, 1);
    s_assert_entry(&cfg, section, "plugin", "zscore", 2);
    s_assert_entry(&cfg, section, "input", "a", 3);
    config_free(&cfg);
}
END_TEST

START_TEST(test_duplicate_section)
{
    config_error err;
    char out[900];
    s_load_bad("[pipeline]\nname = a\n[source.a]\nplugin = synth\n\n[source.a]\nplugin = csv\n", &err, out,
               sizeof out);
    ck_assert_int_eq(err.line, 6);
    ck_assert_str_eq(err.section, "source.a");
    ck_assert_str_eq(err.key, "");
    ck_assert_str_eq(out, "test.ini:6: [source.a]: section is defined twice (first at line 3); merge the two");
}
END_TEST

START_TEST(test_duplicate_key)
{
    config_error err;
    char out[900];
    s_load_bad("[source.a]\nplugin = synth\nrate = 1\nrate = 2\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 4);
    ck_assert_str_eq(err.section, "source.a");
    ck_assert_str_eq(err.key, "rate");
    ck_assert_str_eq(out, "test.ini:4: [source.a] rate: key is set twice in this section (first at line 3)");
}
END_TEST

START_TEST(test_key_outside_section)
{
    config_error err;
    char out[900];
    s_load_bad("; header\nname = x\n[pipeline]\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 2);
    ck_assert_str_eq(err.section, "");
    ck_assert_str_eq(err.key, "name");
    ck_assert_str_eq(out,
                     "test.ini:2: name: key outside any section: put it under [pipeline] or a node section");
}
END_TEST

START_TEST(test_malformed_line)
{
    config_error err;
    char out[900];
    s_load_bad("[pipeline]\nname = x\nthis line has no equals sign\nhttp = off\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 3);
    ck_assert_str_eq(err.section, "");
    ck_assert_str_eq(err.key, "");
    ck_assert_str_eq(out, "test.ini:3: cannot parse this line: expected `key = value`, `[section]` or a "
                          "comment starting with ; or #");
    /* A header without its closing bracket. */
    s_load_bad("[pipeline]\n[source.a\nplugin = x\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 2);
    ck_assert_str_eq(out, "test.ini:2: section header has no closing ']'");
    s_load_bad("[]\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 1);
    ck_assert_str_eq(out, "test.ini:1: section name is empty or longer than 95 characters");
}
END_TEST

START_TEST(test_indented_section_header)
{
    /* inih reads an indented line after a key as a continuation: refuse it clearly. */
    config_error err;
    char out[900];
    s_load_bad("[source.a]\nplugin = synth\n  [sink.b]\nplugin = null\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 3);
    ck_assert_msg(strstr(out, "test.ini:3: ") == out, "%s", out);
    ck_assert_msg(strstr(out, "internal error") == NULL, "%s", out);
    ck_assert_msg(strstr(out, "section header") != NULL, "%s", out);
}
END_TEST

START_TEST(test_line_length)
{
    /* 198 characters are allowed, 199 are not. */
    char text[600];
    char value[200];
    size_t prefix = strlen("k = ");
    memset(value, 'v', sizeof value);
    value[198 - prefix] = '\0';
    snprintf(text, sizeof text, "[s]\nk = %s\nj = 1\n", value);
    config cfg;
    s_load_ok(text, &cfg);
    s_assert_entry(&cfg, "s", "k", value, 2);
    s_assert_entry(&cfg, "s", "j", "1", 3);
    ck_assert_uint_eq(strlen(config_get(&cfg.sections[0], "k")->value), 198 - prefix);
    config_free(&cfg);

    value[199 - prefix] = '\0';
    memset(value, 'v', 199 - prefix);
    snprintf(text, sizeof text, "[s]\nj = 1\nk = %s\n", value);
    config_error err;
    char out[900];
    s_load_bad(text, &err, out, sizeof out);
    ck_assert_int_eq(err.line, 3);
    ck_assert_str_eq(out, "test.ini:3: line is 199 characters long; at most 198 are allowed");

    /* A very long line, and a long last line without a newline. */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *t = NULL;
    ck_assert_int_gt(asprintf(&t, "[s]\n; %s\n", big), 0);
    s_load_bad(t, &err, out, sizeof out);
    free(t);
    ck_assert_int_eq(err.line, 2);
    ck_assert_str_eq(out, "test.ini:2: line is 2001 characters long; at most 198 are allowed");
    ck_assert_int_gt(asprintf(&t, "[s]\nk = %.250s", big), 0);
    s_load_bad(t, &err, out, sizeof out);
    free(t);
    ck_assert_int_eq(err.line, 2);
    ck_assert_str_eq(out, "test.ini:2: line is 254 characters long; at most 198 are allowed");
}
END_TEST

START_TEST(test_bom)
{
    /* Editors on Windows start UTF-8 files with a byte order mark. */
    config cfg;
    s_load_ok("\xEF\xBB\xBF[pipeline]\nname = x\n[s]\nk = 1\n", &cfg);
    ck_assert_uint_eq(cfg.count, 2);
    s_assert_entry(&cfg, "pipeline", "name", "x", 2);
    s_assert_entry(&cfg, "s", "k", "1", 4);
    config_free(&cfg);
    /* Also before a comment or a blank line, and in a file. */
    s_load_ok("\xEF\xBB\xBF; comment\n[s]\nk = 1\n", &cfg);
    s_assert_entry(&cfg, "s", "k", "1", 3);
    config_free(&cfg);
    char path[] = "/tmp/ew-test-config-bom-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("\xEF\xBB\xBF[s]\nk = 2\n", f);
    fclose(f);
    config_error err = {0};
    int rc = config_load(path, &cfg, &err);
    unlink(path);
    ck_assert_msg(rc == 0, "line %d: %s", err.line, err.message);
    s_assert_entry(&cfg, "s", "k", "2", 2);
    config_free(&cfg);
    /* Only at the very start: elsewhere it is not white space. */
    char out[900];
    s_load_bad("[s]\n\xEF\xBB\xBF[t]\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 2);
}
END_TEST

START_TEST(test_long_key_continuation)
{
    /* inih remembers only 49 characters of a key for its continuation lines;
     * the value must still join the whole key, not start a truncated one. */
    char key[81];
    memset(key, 'k', 80);
    key[80] = '\0';
    char text[600];
    snprintf(text, sizeof text, "[s]\n%s = a,\n  b,\n  c\nz = 1\n", key);
    config cfg;
    s_load_ok(text, &cfg);
    ck_assert_uint_eq(cfg.sections[0].count, 2);
    s_assert_entry(&cfg, "s", key, "a, b, c", 2);
    s_assert_entry(&cfg, "s", "z", "1", 5);
    config_free(&cfg);

    /* Two long keys sharing their first 49 characters stay apart. */
    char key2[81];
    memcpy(key2, key, sizeof key2);
    key2[79] = 'q';
    snprintf(text, sizeof text, "[s]\n%s = a\n%s = b,\n  c\n", key, key2);
    s_load_ok(text, &cfg);
    ck_assert_uint_eq(cfg.sections[0].count, 2);
    s_assert_entry(&cfg, "s", key, "a", 2);
    s_assert_entry(&cfg, "s", key2, "b, c", 3);
    config_free(&cfg);

    /* A value continued over many lines is kept whole: longer than one line may be. */
    char *t = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&t, &len);
    fputs("[s]\nlist = x0", m);
    for (int i = 1; i < 200; i++)
        fprintf(m, ",\n    x%d", i);
    fputs("\n", m);
    fclose(m);
    s_load_ok(t, &cfg);
    free(t);
    const char *v = config_get(&cfg.sections[0], "list")->value;
    ck_assert_int_eq(strncmp(v, "x0, x1, x2,", 11), 0);
    ck_assert_ptr_nonnull(strstr(v, ", x199"));
    ck_assert_uint_eq(cfg.sections[0].count, 1);
    config_free(&cfg);
}
END_TEST

START_TEST(test_expand_vars)
{
    setenv("EW_T_HOST", "10.0.0.7", 1);
    setenv("EW_T_EMPTY", "", 1);
    unsetenv("EW_T_UNSET");
    config cfg;
    s_load_ok("[source.a]\n"
              "plugin = synth\n"
              "host = ${EW_T_HOST}:502\n"
              "def = ${EW_T_UNSET:-fallback value}\n"
              "set_def = ${EW_T_HOST:-unused}\n"
              "empty_def = ${EW_T_EMPTY:-dflt}\n"
              "empty = [${EW_T_EMPTY}]\n"
              "empty_default = ${EW_T_UNSET:-}\n"
              "dollars = cost $$5 and $$${EW_T_HOST}\n"
              "lone = a $ b $x\n"
              "two = ${EW_T_HOST}/${EW_T_HOST}\n",
              &cfg);
    s_assert_entry(&cfg, "source.a", "host", "10.0.0.7:502", 3);
    s_assert_entry(&cfg, "source.a", "def", "fallback value", 4);
    s_assert_entry(&cfg, "source.a", "set_def", "10.0.0.7", 5);
    s_assert_entry(&cfg, "source.a", "empty_def", "dflt", 6);
    s_assert_entry(&cfg, "source.a", "empty", "[]", 7);
    s_assert_entry(&cfg, "source.a", "empty_default", "", 8);
    s_assert_entry(&cfg, "source.a", "dollars", "cost $5 and $10.0.0.7", 9);
    s_assert_entry(&cfg, "source.a", "lone", "a $ b $x", 10);
    s_assert_entry(&cfg, "source.a", "two", "10.0.0.7/10.0.0.7", 11);
    config_free(&cfg);
}
END_TEST

START_TEST(test_expand_errors)
{
    unsetenv("EW_T_UNSET");
    config_error err;
    char out[900];
    s_load_bad("[source.a]\nplugin = synth\nhost = ${EW_T_UNSET}\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 3);
    ck_assert_str_eq(err.section, "source.a");
    ck_assert_str_eq(err.key, "host");
    ck_assert_str_eq(out, "test.ini:3: [source.a] host: environment variable EW_T_UNSET is not set: set it, "
                          "or give a default with ${EW_T_UNSET:-value}");
    s_load_bad("[source.a]\nhost = ${EW_T_HOST\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 2);
    ck_assert_str_eq(out, "test.ini:2: [source.a] host: variable reference ${EW_T_HOST has no closing } (or "
                          "use ${NAME:-default})");
    s_load_bad("[source.a]\nhost = ${EW_T_HOST:-abc\n", &err, out, sizeof out);
    ck_assert_str_eq(out, "test.ini:2: [source.a] host: variable reference ${EW_T_HOST:-... has no closing }");
    s_load_bad("[source.a]\nhost = ${}\n", &err, out, sizeof out);
    ck_assert_str_eq(out, "test.ini:2: [source.a] host: bad variable reference: ${ must be followed by a name "
                          "of letters, digits and _ (write $$ for a literal $)");
    s_load_bad("[source.a]\nhost = ${1X}\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 2);
    s_load_bad("[source.a]\nhost = ${\n", &err, out, sizeof out);
    ck_assert_int_eq(err.line, 2);

    /* config_expand directly. */
    char e[300] = "";
    char *s = config_expand("${EW_T_UNSET}", e, sizeof e);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(e, "environment variable EW_T_UNSET is not set: set it, or give a default with "
                        "${EW_T_UNSET:-value}");
    s = config_expand("plain", e, sizeof e);
    ck_assert_str_eq(s, "plain");
    free(s);
    s = config_expand("", e, sizeof e);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

START_TEST(test_error_format)
{
    char out[900];
    config_error err;
    config_error_set(&err, 12, "detector.z", "window", "must be %d or more", 2);
    ck_assert_int_eq(err.line, 12);
    ck_assert_str_eq(err.message, "must be 2 or more");
    config_error_format("/etc/ew/plant.ini", &err, out, sizeof out);
    ck_assert_str_eq(out, "/etc/ew/plant.ini:12: [detector.z] window: must be 2 or more");
    config_error_set(&err, 7, "detector.z", NULL, "bad section");
    config_error_format("p.ini", &err, out, sizeof out);
    ck_assert_str_eq(out, "p.ini:7: [detector.z]: bad section");
    config_error_set(&err, 0, "detector.z", "input", "needs input");
    config_error_format("p.ini", &err, out, sizeof out);
    ck_assert_str_eq(out, "p.ini: [detector.z] input: needs input");
    config_error_set(&err, 3, NULL, NULL, "cannot parse");
    config_error_format("p.ini", &err, out, sizeof out);
    ck_assert_str_eq(out, "p.ini:3: cannot parse");
    config_error_set(&err, 0, NULL, NULL, "no nodes");
    config_error_format("p.ini", &err, out, sizeof out);
    ck_assert_str_eq(out, "p.ini: no nodes");
    config_error_set(&err, 4, NULL, "name", "outside");
    config_error_format("p.ini", &err, out, sizeof out);
    ck_assert_str_eq(out, "p.ini:4: name: outside");
    /* A small buffer is cut, never overrun. */
    char small[10];
    config_error_set(&err, 12, "detector.z", "window", "must be 2 or more");
    config_error_format("p.ini", &err, small, sizeof small);
    ck_assert_str_eq(small, "p.ini:12:");
    config_error_set(NULL, 1, NULL, NULL, "ignored");
}
END_TEST

START_TEST(test_load_file)
{
    const char *tmp = getenv("TMPDIR");
    char path[256];
    snprintf(path, sizeof path, "%s/ew-test-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char text[] = "[pipeline]\nname = from file\n\n[sink.x]\nplugin = null\n";
    ck_assert_int_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    config cfg;
    config_error err = {0};
    int rc = config_load(path, &cfg, &err);
    unlink(path);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(cfg.path, path);
    s_assert_entry(&cfg, "pipeline", "name", "from file", 2);
    s_assert_entry(&cfg, "sink.x", "plugin", "null", 5);
    ck_assert_int_eq(cfg.sections[1].line, 4);
    config_free(&cfg);
}
END_TEST

START_TEST(test_load_missing_file)
{
    config cfg;
    config_error err = {0};
    ck_assert_int_eq(config_load("/nonexistent/edgewatch/missing.ini", &cfg, &err), -1);
    ck_assert_ptr_null(cfg.sections);
    ck_assert_ptr_null(cfg.path);
    ck_assert_int_eq(err.line, 0);
    char out[900];
    config_error_format("/nonexistent/edgewatch/missing.ini", &err, out, sizeof out);
    ck_assert_str_eq(out, "/nonexistent/edgewatch/missing.ini: cannot open the configuration file: No such "
                          "file or directory");
    config_free(&cfg);
}
END_TEST

START_TEST(test_empty_text)
{
    config cfg;
    s_load_ok("", &cfg);
    ck_assert_uint_eq(cfg.count, 0);
    config_free(&cfg);
    s_load_ok("; only a comment\n\n", &cfg);
    ck_assert_uint_eq(cfg.count, 0);
    config_free(&cfg);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("config");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, test_sections_and_lines);
    tcase_add_test(parse, test_comments);
    tcase_add_test(parse, test_continuation);
    tcase_add_test(parse, test_bom);
    tcase_add_test(parse, test_long_key_continuation);
    tcase_add_test(parse, test_long_section_name);
    tcase_add_test(parse, test_empty_text);
    tcase_add_test(parse, test_load_file);
    suite_add_tcase(s, parse);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_duplicate_section);
    tcase_add_test(errors, test_duplicate_key);
    tcase_add_test(errors, test_key_outside_section);
    tcase_add_test(errors, test_malformed_line);
    tcase_add_test(errors, test_indented_section_header);
    tcase_add_test(errors, test_line_length);
    tcase_add_test(errors, test_error_format);
    tcase_add_test(errors, test_load_missing_file);
    suite_add_tcase(s, errors);
    TCase *vars = tcase_create("vars");
    tcase_add_test(vars, test_expand_vars);
    tcase_add_test(vars, test_expand_errors);
    suite_add_tcase(s, vars);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
