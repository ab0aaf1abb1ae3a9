/* Unit tests for core/options.c: value parsers, table checks, filling a config struct and describe. */
#include "options.h"

#include <edgewatch/plugin.h>

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A plugin config struct with one field of every option type. */
typedef struct t_cfg {
    const char *target;
    const char *label;
    int64_t count;
    double ratio;
    bool enabled;
    int mode;
    int64_t period;
    uint64_t buffer;
    ew_list tags;
    int64_t offset;
} t_cfg;

static const ew_option s_table[] = {
    EW_OPTION_REQUIRED("target", EW_OPT_STRING, t_cfg, target, "Where the data goes."),
    EW_OPTION("label", EW_OPT_STRING, "pump", t_cfg, label, "A label for the node."),
    EW_OPTION_RANGE("count", EW_OPT_INT, "10", 1, 1000000, t_cfg, count, "How many to keep."),
    EW_OPTION_RANGE("ratio", EW_OPT_DOUBLE, "0.5", 0, 1, t_cfg, ratio, "A fraction."),
    EW_OPTION("enabled", EW_OPT_BOOL, "true", t_cfg, enabled, "Whether it is on."),
    EW_OPTION_ENUM("mode", "slow", "fast|slow|off", t_cfg, mode, "How fast it goes."),
    EW_OPTION_RANGE("period", EW_OPT_DURATION, "1s", 0.001, 3600, t_cfg, period, "How often."),
    EW_OPTION_RANGE("buffer", EW_OPT_SIZE, "4KiB", 1, 1073741824, t_cfg, buffer, "How much memory."),
    EW_OPTION_RANGE("tags", EW_OPT_LIST, NULL, 0, 3, t_cfg, tags, "Tags, at most three."),
    EW_OPTION("offset", EW_OPT_INT, NULL, t_cfg, offset, "An offset without default."),
    EW_OPTION_END,
};

/* Fills a t_cfg from kvs; returns options_fill's result. */
static int s_fill(const options_kv *kvs, size_t n, t_cfg *cfg, options_mem *mem, options_error *err)
{
    memset(err, 0, sizeof *err);
    memset(mem, 0, sizeof *mem);
    return options_fill(s_table, sizeof *cfg, kvs, n, cfg, mem, err);
}

/* Fills with target = x plus one more key at line 7; expects failure and returns the message. */
static const char *s_fill_bad(const char *key, const char *value, options_error *err)
{
    options_kv kvs[] = {{"target", "x", 2}, {key, value, 7}};
    t_cfg cfg;
    options_mem mem;
    ck_assert_int_eq(s_fill(kvs, 2, &cfg, &mem, err), -1);
    options_mem_free(&mem);
    ck_assert_int_eq(err->line, 7);
    ck_assert_str_eq(err->key, key);
    return err->message;
}

START_TEST(test_parse_int)
{
    static const struct {
        const char *text;
        int64_t want;
    } ok[] = {
        {"42", 42},      {"-17", -17},  {"0", 0},      {"0x1F", 31},     {"0X1f", 31},
        {"-0x10", -16},  {" 7 ", 7},    {"+5", 5},     {"010", 10},      {"-007", -7},
        {"9223372036854775807", INT64_MAX},            {"-9223372036854775808", INT64_MIN},
        {"0x7fffffffffffffff", INT64_MAX},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -12345;
        ck_assert_msg(options_parse_int(ok[i].text, &v) == 0, "\"%s\" should parse", ok[i].text);
        ck_assert_msg(v == ok[i].want, "\"%s\" gave %lld", ok[i].text, (long long)v);
    }
    static const char *const bad[] = {"", "   ", "abc", "12abc", "1.5", "1e3", "0x", "0xg",
                                      "1 2", "- 5", "9223372036854775808", "-9223372036854775809",
                                      "99999999999999999999", "0x10000000000000000", "5,"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 99;
        ck_assert_msg(options_parse_int(bad[i], &v) == -1, "\"%s\" should be refused", bad[i]);
        ck_assert_int_eq(v, 99);
    }
}
END_TEST

START_TEST(test_parse_double)
{
    static const struct {
        const char *text;
        double want;
    } ok[] = {{"2.5", 2.5}, {"-1e-3", -0.001}, {" 3 ", 3}, {"0", 0}, {"1e300", 1e300}, {"-42", -42}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double v = -1;
        ck_assert_msg(options_parse_double(ok[i].text, &v) == 0, "\"%s\" should parse", ok[i].text);
        ck_assert_double_eq(v, ok[i].want);
    }
    static const char *const bad[] = {"",     "nan",  "NaN",       "-nan", "inf", "-inf",   "Infinity",
                                      "1e400", "-1e400", "2.5x", "abc",  "1.2.3", "2.5 junk"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 7;
        ck_assert_msg(options_parse_double(bad[i], &v) == -1, "\"%s\" should be refused", bad[i]);
        ck_assert_double_eq(v, 7);
    }
}
END_TEST

START_TEST(test_parse_bool)
{
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes", "ON"};
    static const char *const no[] = {"false", "no", "off", "0", "FALSE", "No", "Off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool v = false;
        ck_assert_int_eq(options_parse_bool(yes[i], &v), 0);
        ck_assert_msg(v, "\"%s\" should be true", yes[i]);
        v = true;
        ck_assert_int_eq(options_parse_bool(no[i], &v), 0);
        ck_assert_msg(!v, "\"%s\" should be false", no[i]);
    }
    static const char *const bad[] = {"", "2", "y", "n", "truthy", "enable", "-1", "yes please"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool v = true;
        ck_assert_msg(options_parse_bool(bad[i], &v) == -1, "\"%s\" should be refused", bad[i]);
        ck_assert(v);
    }
}
END_TEST

START_TEST(test_parse_duration)
{
    static const struct {
        const char *text;
        int64_t want;
    } ok[] = {
        {"5ns", 5},
        {"3us", 3000},
        {"250ms", 250000000},
        {"1.5s", 1500000000},
        {"2m", 120000000000},
        {"2min", 120000000000},
        {"1h", 3600000000000},
        {"1d", 86400000000000},
        {"10", 10000000000},
        {"0.25", 250000000},
        {"0", 0},
        {"10 ms", 10000000},
        {" 2s ", 2000000000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        ck_assert_msg(options_parse_duration(ok[i].text, &v) == 0, "\"%s\" should parse", ok[i].text);
        ck_assert_msg(v == ok[i].want, "\"%s\" gave %lld", ok[i].text, (long long)v);
    }
    static const char *const bad[] = {"",     "-1s",  "-5",     "5x",     "s",       "ms",  "1S",
                                      "nan",  "inf",  "inf s",  "10ms x", "1 2",     "1e10d", "1e400",
                                      "5 m s", "1sec"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 77;
        ck_assert_msg(options_parse_duration(bad[i], &v) == -1, "\"%s\" should be refused", bad[i]);
        ck_assert_int_eq(v, 77);
    }
}
END_TEST

START_TEST(test_parse_size)
{
    static const struct {
        const char *text;
        uint64_t want;
    } ok[] = {
        {"512", 512},
        {"512B", 512},
        {"1KB", 1000},
        {"1KiB", 1024},
        {"10MB", 10000000},
        {"2MiB", 2097152},
        {"1GB", 1000000000},
        {"1GiB", 1073741824},
        {"64K", 65536},
        {"3M", 3145728},
        {"2G", 2147483648u},
        {"1.5KiB", 1536},
        {"0", 0},
        {"8 KiB", 8192},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        ck_assert_msg(options_parse_size(ok[i].text, &v) == 0, "\"%s\" should parse", ok[i].text);
        ck_assert_msg(v == ok[i].want, "\"%s\" gave %llu", ok[i].text, (unsigned long long)v);
    }
    static const char *const bad[] = {"",    "-1",  "-1KiB", "1.5", "0.5B", "10XB", "KiB",
                                      "nan", "inf", "1e30",  "5 KiB junk",   "1 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 77;
        ck_assert_msg(options_parse_size(bad[i], &v) == -1, "\"%s\" should be refused", bad[i]);
        ck_assert_uint_eq(v, 77);
    }
}
END_TEST

START_TEST(test_type_names)
{
    ck_assert_str_eq(options_type_name(EW_OPT_STRING), "string");
    ck_assert_str_eq(options_type_name(EW_OPT_INT), "int");
    ck_assert_str_eq(options_type_name(EW_OPT_DOUBLE), "double");
    ck_assert_str_eq(options_type_name(EW_OPT_BOOL), "bool");
    ck_assert_str_eq(options_type_name(EW_OPT_ENUM), "enum");
    ck_assert_str_eq(options_type_name(EW_OPT_DURATION), "duration");
    ck_assert_str_eq(options_type_name(EW_OPT_SIZE), "size");
    ck_assert_str_eq(options_type_name(EW_OPT_LIST), "list");
    ck_assert_str_eq(options_type_name((ew_opt_type)99), "unknown");
}
END_TEST

START_TEST(test_fill_defaults)
{
    options_kv kvs[] = {{"target", "out.txt", 3}};
    t_cfg cfg;
    memset(&cfg, 0xA5, sizeof cfg); /* options_fill must zero what has no default */
    options_mem mem;
    options_error err;
    ck_assert_int_eq(s_fill(kvs, 1, &cfg, &mem, &err), 0);
    ck_assert_str_eq(cfg.target, "out.txt");
    ck_assert_ptr_ne(cfg.target, kvs[0].value); /* a copy the host owns */
    ck_assert_str_eq(cfg.label, "pump");
    ck_assert_int_eq(cfg.count, 10);
    ck_assert_double_eq(cfg.ratio, 0.5);
    ck_assert(cfg.enabled);
    ck_assert_int_eq(cfg.mode, 1);
    ck_assert_int_eq(cfg.period, 1000000000);
    ck_assert_uint_eq(cfg.buffer, 4096);
    ck_assert_uint_eq(cfg.tags.count, 0);
    ck_assert_ptr_null(cfg.tags.items);
    ck_assert_int_eq(cfg.offset, 0);
    options_mem_free(&mem);
    ck_assert_ptr_null(mem.blocks);
    ck_assert_uint_eq(mem.count, 0);
}
END_TEST

START_TEST(test_fill_every_type)
{
    options_kv kvs[] = {
        {"target", "tcp://1.2.3.4:5", 2}, {"label", "", 3},       {"count", "0x20", 4},
        {"ratio", "0.125", 5},            {"enabled", "off", 6},  {"mode", "off", 7},
        {"period", "250ms", 8},           {"buffer", "2MiB", 9},  {"tags", " a , ,b,, c ,", 10},
        {"offset", "-12", 11},
    };
    t_cfg cfg;
    options_mem mem;
    options_error err;
    ck_assert_int_eq(s_fill(kvs, sizeof kvs / sizeof kvs[0], &cfg, &mem, &err), 0);
    ck_assert_str_eq(cfg.target, "tcp://1.2.3.4:5");
    ck_assert_str_eq(cfg.label, "");
    ck_assert_int_eq(cfg.count, 32);
    ck_assert_double_eq(cfg.ratio, 0.125);
    ck_assert(!cfg.enabled);
    ck_assert_int_eq(cfg.mode, 2);
    ck_assert_int_eq(cfg.period, 250000000);
    ck_assert_uint_eq(cfg.buffer, 2097152);
    ck_assert_uint_eq(cfg.tags.count, 3);
    ck_assert_str_eq(cfg.tags.items[0], "a");
    ck_assert_str_eq(cfg.tags.items[1], "b");
    ck_assert_str_eq(cfg.tags.items[2], "c");
    ck_assert_int_eq(cfg.offset, -12);
    options_mem_free(&mem);
}
END_TEST

START_TEST(test_fill_enum_choices)
{
    static const char *const words[] = {"fast", "slow", "off"};
    for (int i = 0; i < 3; i++) {
        options_kv kvs[] = {{"target", "x", 1}, {"mode", words[i], 2}};
        t_cfg cfg;
        options_mem mem;
        options_error err;
        ck_assert_int_eq(s_fill(kvs, 2, &cfg, &mem, &err), 0);
        ck_assert_int_eq(cfg.mode, i);
        options_mem_free(&mem);
    }
    options_error err;
    ck_assert_str_eq(s_fill_bad("mode", "medium", &err), "\"medium\" is not one of: fast|slow|off");
    ck_assert_str_eq(s_fill_bad("mode", "Fast", &err), "\"Fast\" is not one of: fast|slow|off");
    ck_assert_str_eq(s_fill_bad("mode", "", &err), "\"\" is not one of: fast|slow|off");
}
END_TEST

START_TEST(test_fill_bad_values)
{
    options_error err;
    ck_assert_str_eq(s_fill_bad("count", "12abc", &err), "\"12abc\" is not an integer, e.g. 100");
    ck_assert_str_eq(s_fill_bad("count", "99999999999999999999", &err),
                     "\"99999999999999999999\" is not an integer, e.g. 100");
    ck_assert_str_eq(s_fill_bad("ratio", "nan", &err), "\"nan\" is not a finite number, e.g. 2.5");
    ck_assert_str_eq(s_fill_bad("ratio", "inf", &err), "\"inf\" is not a finite number, e.g. 2.5");
    ck_assert_str_eq(s_fill_bad("enabled", "maybe", &err), "\"maybe\" is not true or false");
    ck_assert_str_eq(s_fill_bad("period", "-1s", &err),
                     "\"-1s\" is not a duration such as 250ms, 1.5s, 2m or 1h");
    ck_assert_str_eq(s_fill_bad("period", "5 fortnights", &err),
                     "\"5 fortnights\" is not a duration such as 250ms, 1.5s, 2m or 1h");
    ck_assert_str_eq(s_fill_bad("buffer", "-5", &err), "\"-5\" is not a size such as 512, 64KiB, 10MB or 1GiB");
    ck_assert_str_eq(s_fill_bad("buffer", "12 parsecs", &err),
                     "\"12 parsecs\" is not a size such as 512, 64KiB, 10MB or 1GiB");
}
END_TEST

START_TEST(test_fill_range)
{
    options_error err;
    ck_assert_str_eq(s_fill_bad("count", "0", &err), "0 is out of range: allowed 1 to 1000000");
    /* Just past the limit: the message must not round the value onto the limit. */
    ck_assert_str_eq(s_fill_bad("count", "1000001", &err), "1000001 is out of range: allowed 1 to 1000000");
    ck_assert_str_eq(s_fill_bad("ratio", "1.5", &err), "1.5 is out of range: allowed 0 to 1");
    ck_assert_str_eq(s_fill_bad("ratio", "-0.25", &err), "-0.25 is out of range: allowed 0 to 1");
    ck_assert_str_eq(s_fill_bad("period", "2h", &err),
                     "7200 seconds is out of range: allowed 0.001 to 3600 seconds");
    ck_assert_str_eq(s_fill_bad("period", "500us", &err),
                     "0.0005 seconds is out of range: allowed 0.001 to 3600 seconds");
    ck_assert_str_eq(s_fill_bad("buffer", "0", &err), "0 bytes is out of range: allowed 1 to 1073741824 bytes");
    ck_assert_str_eq(s_fill_bad("buffer", "1073741825", &err),
                     "1073741825 bytes is out of range: allowed 1 to 1073741824 bytes");
    ck_assert_str_eq(s_fill_bad("tags", "a,b,c,d", &err), "4 items is out of range: allowed 0 to 3 items");

    /* The limits themselves are inside the range. */
    options_kv kvs[] = {{"target", "x", 1}, {"count", "1000000", 2}, {"ratio", "1", 3},
                        {"period", "1h", 4},  {"buffer", "1GiB", 5},  {"tags", "a,b,c", 6}};
    t_cfg cfg;
    options_mem mem;
    ck_assert_int_eq(s_fill(kvs, 6, &cfg, &mem, &err), 0);
    ck_assert_int_eq(cfg.count, 1000000);
    ck_assert_double_eq(cfg.ratio, 1);
    ck_assert_int_eq(cfg.period, 3600000000000);
    ck_assert_uint_eq(cfg.buffer, 1073741824);
    ck_assert_uint_eq(cfg.tags.count, 3);
    options_mem_free(&mem);
}
END_TEST

START_TEST(test_fill_unknown_key)
{
    options_error err;
    ck_assert_str_eq(s_fill_bad("colour", "red", &err),
                     "unknown option; valid options: target, label, count, ratio, enabled, mode, period, "
                     "buffer, tags, offset");

    /* A plugin without options says so. */
    options_kv kvs[] = {{"x", "1", 4}};
    char dummy[8];
    options_mem mem = {0};
    ck_assert_int_eq(options_fill(NULL, 0, kvs, 1, dummy, &mem, &err), -1);
    ck_assert_int_eq(err.line, 4);
    ck_assert_str_eq(err.key, "x");
    ck_assert_str_eq(err.message, "unknown option; valid options: (this plugin takes no options)");
    ck_assert_int_eq(options_fill(NULL, 0, NULL, 0, dummy, &mem, &err), 0);
    options_mem_free(&mem);
}
END_TEST

START_TEST(test_fill_key_twice)
{
    options_kv kvs[] = {{"target", "x", 2}, {"count", "5", 3}, {"ratio", "0.1", 4}, {"count", "6", 5}};
    t_cfg cfg;
    options_mem mem;
    options_error err;
    ck_assert_int_eq(s_fill(kvs, 4, &cfg, &mem, &err), -1);
    options_mem_free(&mem);
    ck_assert_int_eq(err.line, 5);
    ck_assert_str_eq(err.key, "count");
    ck_assert_str_eq(err.message, "set twice (first at line 3)");
}
END_TEST

START_TEST(test_fill_required_missing)
{
    options_kv kvs[] = {{"count", "5", 3}};
    t_cfg cfg;
    options_mem mem;
    options_error err;
    ck_assert_int_eq(s_fill(kvs, 1, &cfg, &mem, &err), -1);
    options_mem_free(&mem);
    ck_assert_int_eq(err.line, 0);
    ck_assert_str_eq(err.key, "target");
    ck_assert_str_eq(err.message, "required option is missing: add `target = <string>` (Where the data goes.)");
}
END_TEST

START_TEST(test_fill_long_value_shown_cut)
{
    char value[300];
    memset(value, 'z', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    options_error err;
    const char *msg = s_fill_bad("count", value, &err);
    /* The value is shown cut to 79 characters; the message stays readable. */
    char want[200];
    snprintf(want, sizeof want, "\"%.79s\" is not an integer, e.g. 100", value);
    ck_assert_str_eq(msg, want);
}
END_TEST

/* options_check_table on a one-row table (plus END) with the given row. */
static int s_check_one(ew_option row, size_t config_size, char *err, size_t errlen)
{
    ew_option table[2] = {row, EW_OPTION_END};
    err[0] = '\0';
    return options_check_table(table, config_size, err, errlen);
}

START_TEST(test_check_table_ok)
{
    char err[300] = "";
    ck_assert_int_eq(options_check_table(s_table, sizeof(t_cfg), err, sizeof err), 0);
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(options_check_table(NULL, 0, err, sizeof err), 0);
    ew_option empty[] = {EW_OPTION_END};
    ck_assert_int_eq(options_check_table(empty, 0, err, sizeof err), 0);
}
END_TEST

START_TEST(test_check_table_bad_names)
{
    char err[300];
    static const char *const bad[] = {"Window", "a-b", "", "with space", "dot.ted",
                                      "a_name_that_is_far_longer_than_forty_eight_characters"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ew_option row = EW_OPTION(bad[i], EW_OPT_INT, NULL, t_cfg, count, "x");
        ck_assert_int_eq(s_check_one(row, sizeof(t_cfg), err, sizeof err), -1);
        char want[200];
        snprintf(want, sizeof want, "option name \"%s\" is not [a-z0-9_]+", bad[i]);
        ck_assert_str_eq(err, want);
    }
    ew_option good = EW_OPTION("window_2", EW_OPT_INT, NULL, t_cfg, count, "x");
    ck_assert_int_eq(s_check_one(good, sizeof(t_cfg), err, sizeof err), 0);
}
END_TEST

START_TEST(test_check_table_duplicate)
{
    ew_option table[] = {
        EW_OPTION("count", EW_OPT_INT, NULL, t_cfg, count, "x"),
        EW_OPTION("ratio", EW_OPT_DOUBLE, NULL, t_cfg, ratio, "x"),
        EW_OPTION("count", EW_OPT_INT, NULL, t_cfg, offset, "x"),
        EW_OPTION_END,
    };
    char err[300];
    ck_assert_int_eq(options_check_table(table, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "option \"count\" is declared twice");
}
END_TEST

START_TEST(test_check_table_offsets)
{
    char err[300];
    ew_option row = EW_OPTION("count", EW_OPT_INT, NULL, t_cfg, count, "x");
    /* An int64 starting 4 bytes before the end sticks out. */
    row.offset = sizeof(t_cfg) - 4;
    ck_assert_int_eq(s_check_one(row, sizeof(t_cfg), err, sizeof err), -1);
    char want[200];
    snprintf(want, sizeof want, "option \"count\" lies outside the %zu-byte config struct", sizeof(t_cfg));
    ck_assert_str_eq(err, want);
    /* Exactly at the end still fits. */
    row.offset = sizeof(t_cfg) - sizeof(int64_t);
    ck_assert_int_eq(s_check_one(row, sizeof(t_cfg), err, sizeof err), 0);
    /* A config_size of 0 holds nothing. */
    row.offset = 0;
    ck_assert_int_eq(s_check_one(row, 0, err, sizeof err), -1);
    ck_assert_str_eq(err, "option \"count\" lies outside the 0-byte config struct");
    /* A huge offset must not wrap around the size check. */
    row.offset = SIZE_MAX - 3;
    ck_assert_int_eq(s_check_one(row, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, want);
    /* A list is 16 bytes. */
    ew_option list = EW_OPTION("tags", EW_OPT_LIST, NULL, t_cfg, tags, "x");
    list.offset = sizeof(t_cfg) - 8;
    ck_assert_int_eq(s_check_one(list, sizeof(t_cfg), err, sizeof err), -1);
    /* Larger config structs than the host can check are refused. */
    ck_assert_int_eq(s_check_one(row, 4096, err, sizeof err), -1);
    ck_assert_str_eq(err, "config_size 4096 is larger than 1024 bytes");
}
END_TEST

START_TEST(test_check_table_enum_and_type)
{
    char err[300];
    ew_option e1 = EW_OPTION_ENUM("mode", NULL, NULL, t_cfg, mode, "x");
    ck_assert_int_eq(s_check_one(e1, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "enum option \"mode\" has no choices");
    ew_option e2 = EW_OPTION_ENUM("mode", NULL, "", t_cfg, mode, "x");
    ck_assert_int_eq(s_check_one(e2, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "enum option \"mode\" has no choices");
    ew_option t = EW_OPTION("weird", (ew_opt_type)42, NULL, t_cfg, count, "x");
    ck_assert_int_eq(s_check_one(t, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "option \"weird\" has unknown type 42");
}
END_TEST

START_TEST(test_check_table_bad_defaults)
{
    char err[300];
    ew_option i = EW_OPTION("count", EW_OPT_INT, "ten", t_cfg, count, "x");
    ck_assert_int_eq(s_check_one(i, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "default of option \"count\" is invalid: \"ten\" is not an integer, e.g. 100");
    ew_option e = EW_OPTION_ENUM("mode", "medium", "fast|slow", t_cfg, mode, "x");
    ck_assert_int_eq(s_check_one(e, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "default of option \"mode\" is invalid: \"medium\" is not one of: fast|slow");
    ew_option r = EW_OPTION_RANGE("count", EW_OPT_INT, "0", 1, 5, t_cfg, count, "x");
    ck_assert_int_eq(s_check_one(r, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "default of option \"count\" is invalid: 0 is out of range: allowed 1 to 5");
    ew_option d = EW_OPTION("period", EW_OPT_DURATION, "soon", t_cfg, period, "x");
    ck_assert_int_eq(s_check_one(d, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "default of option \"period\" is invalid: \"soon\" is not a duration such as 250ms, "
                          "1.5s, 2m or 1h");
    ew_option b = EW_OPTION("enabled", EW_OPT_BOOL, "sure", t_cfg, enabled, "x");
    ck_assert_int_eq(s_check_one(b, sizeof(t_cfg), err, sizeof err), -1);
    ck_assert_str_eq(err, "default of option \"enabled\" is invalid: \"sure\" is not true or false");
    /* Good defaults of allocating types do not leak (ASAN checks). */
    ew_option l = EW_OPTION("tags", EW_OPT_LIST, "a, b", t_cfg, tags, "x");
    ck_assert_int_eq(s_check_one(l, sizeof(t_cfg), err, sizeof err), 0);
    ew_option s = EW_OPTION("label", EW_OPT_STRING, "hello", t_cfg, label, "x");
    ck_assert_int_eq(s_check_one(s, sizeof(t_cfg), err, sizeof err), 0);
}
END_TEST

/* Runs options_describe into a malloc'd string. */
static char *s_describe(const ew_option *table, int markdown)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    options_describe(table, f, markdown);
    fclose(f);
    return text;
}

START_TEST(test_describe_text)
{
    char *text = s_describe(s_table, 0);
    static const char *const lines[] = {
        "  target             string    default: (required)    \n"
        "                     Where the data goes.\n",
        "  label              string    default: pump          \n"
        "                     A label for the node.\n",
        "  count              int       default: 10             range: 1..1000000\n"
        "                     How many to keep.\n",
        "  ratio              double    default: 0.5            range: 0..1\n",
        "  enabled            bool      default: true          \n",
        "  mode               enum      default: slow           range: fast|slow|off\n",
        "  period             duration  default: 1s             range: 0.001..3600 s\n",
        "  buffer             size      default: 4KiB           range: 1..1073741824\n",
        "  tags               list      default: (none)         range: 0..3 items\n"
        "                     Tags, at most three.\n",
        "  offset             int       default: (none)        \n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ck_assert_msg(strstr(text, lines[i]), "missing:\n%s\nin:\n%s", lines[i], text);
    /* Rows in table order. */
    ck_assert(strstr(text, "  target ") < strstr(text, "  label "));
    ck_assert(strstr(text, "  tags ") < strstr(text, "  offset "));
    free(text);

    ew_option none[] = {EW_OPTION_END};
    text = s_describe(none, 0);
    ck_assert_str_eq(text, "  (no options)\n");
    free(text);
    text = s_describe(NULL, 0);
    ck_assert_str_eq(text, "  (no options)\n");
    free(text);
}
END_TEST

START_TEST(test_describe_markdown)
{
    char *text = s_describe(s_table, 1);
    static const char header[] = "| option | type | default | range | description |\n|---|---|---|---|---|\n";
    ck_assert_msg(strncmp(text, header, strlen(header)) == 0, "header: %s", text);
    static const char *const rows[] = {
        "| `target` | string | (required) |  | Where the data goes. |\n",
        "| `label` | string | `pump` |  | A label for the node. |\n",
        "| `count` | int | `10` | 1..1000000 | How many to keep. |\n",
        "| `ratio` | double | `0.5` | 0..1 | A fraction. |\n",
        "| `enabled` | bool | `true` |  | Whether it is on. |\n",
        /* A bare | would split the markdown cell. */
        "| `mode` | enum | `slow` | fast/slow/off | How fast it goes. |\n",
        "| `period` | duration | `1s` | 0.001..3600 s | How often. |\n",
        "| `buffer` | size | `4KiB` | 1..1073741824 | How much memory. |\n",
        "| `tags` | list |  | 0..3 items | Tags, at most three. |\n",
        "| `offset` | int |  |  | An offset without default. |\n",
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        ck_assert_msg(strstr(text, rows[i]), "missing:\n%s\nin:\n%s", rows[i], text);
    free(text);
    text = s_describe(NULL, 1);
    ck_assert_str_eq(text, "| option | type | default | range | description |\n|---|---|---|---|---|\n"
                           "| (none) | | | | |\n");
    free(text);
}
END_TEST

START_TEST(test_mem_free)
{
    /* Fill twice into the same mem (strings and lists allocate), and once failing half-way. */
    options_kv kvs[] = {{"target", "a", 1}, {"label", "b", 2}, {"tags", "x, y, z", 3}};
    t_cfg cfg;
    options_mem mem;
    options_error err;
    ck_assert_int_eq(s_fill(kvs, 3, &cfg, &mem, &err), 0);
    ck_assert_uint_gt(mem.count, 3);
    ck_assert_int_eq(options_fill(s_table, sizeof cfg, kvs, 3, &cfg, &mem, &err), 0);
    options_mem_free(&mem);
    ck_assert_ptr_null(mem.blocks);
    ck_assert_uint_eq(mem.count, 0);
    ck_assert_uint_eq(mem.cap, 0);
    options_mem_free(&mem); /* twice is harmless */
    options_mem_free(NULL);

    options_kv bad[] = {{"target", "a", 1}, {"tags", "p, q", 2}, {"offset", "nope", 3}};
    ck_assert_int_eq(s_fill(bad, 3, &cfg, &mem, &err), -1);
    options_mem_free(&mem);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("options");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, test_parse_int);
    tcase_add_test(parse, test_parse_double);
    tcase_add_test(parse, test_parse_bool);
    tcase_add_test(parse, test_parse_duration);
    tcase_add_test(parse, test_parse_size);
    tcase_add_test(parse, test_type_names);
    suite_add_tcase(s, parse);
    TCase *fill = tcase_create("fill");
    tcase_add_test(fill, test_fill_defaults);
    tcase_add_test(fill, test_fill_every_type);
    tcase_add_test(fill, test_fill_enum_choices);
    tcase_add_test(fill, test_fill_bad_values);
    tcase_add_test(fill, test_fill_range);
    tcase_add_test(fill, test_fill_unknown_key);
    tcase_add_test(fill, test_fill_key_twice);
    tcase_add_test(fill, test_fill_required_missing);
    tcase_add_test(fill, test_fill_long_value_shown_cut);
    tcase_add_test(fill, test_mem_free);
    suite_add_tcase(s, fill);
    TCase *table = tcase_create("table");
    tcase_add_test(table, test_check_table_ok);
    tcase_add_test(table, test_check_table_bad_names);
    tcase_add_test(table, test_check_table_duplicate);
    tcase_add_test(table, test_check_table_offsets);
    tcase_add_test(table, test_check_table_enum_and_type);
    tcase_add_test(table, test_check_table_bad_defaults);
    tcase_add_test(table, test_describe_text);
    tcase_add_test(table, test_describe_markdown);
    suite_add_tcase(s, table);
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
