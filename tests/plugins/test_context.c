/* Tests of the context detector plugin through the SDK harness, on generated
 * streams: a spike, a level shift and a frequency change are found, normal
 * data is not flagged, the rest period holds, memory stays bounded, and
 * missing or absurd values are counted and survived. */
#include <edgewatch/testing.h>

#include "ewp_rng.h"
#include "options.h"
#include "ptest.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A detector over `names` with options (NULL-terminated pairs), initialised. */
static ew_harness *s_make(size_t nch, const char *const *names, const char *const *kv)
{
    return ptest_open(NULL, nch, names, kv, NULL);
}

/* Scores `n` rows of `values` in batches of `batch` (timestamps don't matter). */
static void s_process_in(ew_harness *h, size_t n, const double *values, size_t nch, size_t batch)
{
    int64_t *ts = calloc(batch, sizeof *ts);
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        ck_assert_int_eq(ew_harness_process(h, m, ts, values + i * nch), EW_OK);
    }
    free(ts);
}

static void s_process(ew_harness *h, size_t n, const double *values)
{
    s_process_in(h, n, values, 1, n ? n : 1);
}

/* n values of N(0, sd) noise, seeded. */
static double *s_noise(size_t n, double sd, uint64_t seed)
{
    ewp_rng *rng = malloc(sizeof *rng);
    double *v = malloc(n * sizeof *v);
    ck_assert(rng && v);
    ewp_rng_seed(rng, seed);
    for (size_t i = 0; i < n; i++)
        v[i] = sd * ewp_rng_normal(rng);
    free(rng);
    return v;
}

/* Index of the first flagged sample in [from, to), or -1. */
static long s_first_flag(const uint8_t *flag, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (flag[i])
            return (long)i;
    return -1;
}

/* Flagged samples in [from, to). */
static size_t s_flags(const uint8_t *flag, size_t from, size_t to)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++)
        n += flag[i];
    return n;
}

static const char *const s_one[] = {"x"};
static const char *const s_two[] = {"a", "b"};

START_TEST(descriptor_and_schema)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_DETECTOR);
    ck_assert_str_eq(p->name, "context");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
    ew_harness *h = s_make(2, s_two, NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 5);
    ck_assert_str_eq(out->names[2], "z");
    ck_assert_int_eq(out->score_index, 3);
    /* Its own score is calibrated (0.5 at the threshold), so auto keeps it. */
    ck_assert(ew_harness_score_calibrated(h));
    ew_harness_destroy(&h);
}
END_TEST

/* The first `warmup` values are marked learning, score 0 with no raw; then scored. */
START_TEST(warmup_is_marked_learning)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"warmup", "50", NULL});
    double *v = s_noise(60, 1, 1);
    ck_assert(ew_harness_learning(h));
    s_process(h, 60, v);
    const uint8_t *learn = ew_harness_learning_flags(h);
    const double *raw = ew_harness_raw(h), *score = ew_harness_scores(h);
    const double *contrib = ew_harness_contrib(h);
    for (int i = 0; i < 50; i++) {
        ck_assert_msg(learn[i] == 1 && isnan(raw[i]) && score[i] == 0, "sample %d", i);
        ck_assert(contrib[i] == 0);
    }
    for (int i = 50; i < 60; i++) {
        ck_assert_msg(learn[i] == 0 && isfinite(raw[i]) && raw[i] >= 0, "sample %d", i);
        ck_assert(contrib[i] == raw[i]);
        ck_assert(ew_harness_extra(h)[i] == raw[i]);
    }
    ck_assert(!ew_harness_learning(h));
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* Noise with a spike of 12 sd: flagged at once with a score near 1. Noise
 * alone raises an alarm now and then, mostly new records of the range seen
 * so far (README.md: 3 to 6 in 5000 values of N(0, 1)): at most 7 here. */
START_TEST(detects_a_spike)
{
    enum { N = 5000, AT = 4000 };
    ew_harness *h = s_make(1, s_one, NULL);
    double *v = s_noise(N, 1, 2);
    v[AT] = 12;
    s_process(h, N, v);
    const uint8_t *flag = ew_harness_flags(h);
    ck_assert_uint_eq(flag[AT], 1);
    ck_assert_msg(ew_harness_scores(h)[AT] > 0.6, "score %g", ew_harness_scores(h)[AT]);
    size_t noise = s_flags(flag, 0, N) - 1;
    ck_assert_msg(noise <= 7, "%zu alarms on noise", noise);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* A level shift of 6 sd, less than a spike's z-score threshold: found within
 * a few samples as new extremes. */
START_TEST(detects_a_level_shift)
{
    enum { N = 5000, AT = 3000 };
    ew_harness *h = s_make(1, s_one, NULL);
    double *v = s_noise(N, 1, 3);
    for (size_t i = AT; i < N; i++)
        v[i] += 6;
    s_process(h, N, v);
    const uint8_t *flag = ew_harness_flags(h);
    ck_assert_msg(s_flags(flag, 0, AT) <= 7, "%zu alarms before", s_flags(flag, 0, AT));
    long at = s_first_flag(flag, AT, N);
    ck_assert_msg(at >= AT && at < AT + 10, "first flag at %ld", at);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* A sine of period 48 whose period becomes 12 at the same amplitude: no value
 * leaves the range and no z-score is large, only the contexts are new. */
START_TEST(detects_a_frequency_change)
{
    enum { N = 6000, AT = 4000 };
    double *v = s_noise(N, 0.05, 4);
    for (size_t i = 0; i < N; i++)
        v[i] += 10 * sin(2 * M_PI * (double)i / (i < AT ? 48.0 : 12.0));
    ew_harness *h = s_make(1, s_one, NULL);
    s_process(h, N, v);
    const uint8_t *flag = ew_harness_flags(h);
    ck_assert_msg(s_flags(flag, 0, AT) <= 3, "%zu alarms before", s_flags(flag, 0, AT));
    long at = s_first_flag(flag, AT, N);
    ck_assert_msg(at >= AT && at < AT + 48, "first flag at %ld", at);
    /* The values alone are unremarkable there: the z-score of the value is small. */
    ew_harness_destroy(&h);
    h = s_make(1, s_one, (const char *[]){"settle", "1000000", NULL});
    s_process(h, N, v);
    for (size_t i = AT; i < AT + 48; i++)
        ck_assert_msg(ew_harness_extra(h)[i] < 3, "value z %g at %zu", ew_harness_extra(h)[i], i);
    ck_assert_int_eq(s_first_flag(ew_harness_flags(h), 0, N), -1);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* A rhythm met long ago is new again once its contexts are forgotten (two eras
 * of `forget` values later), and known forever with forget = 0. */
START_TEST(contexts_are_forgotten_after_two_eras)
{
    enum { N = 9000, B = 1500, A = 7000 };
    double *v = s_noise(N, 0.05, 11);
    for (size_t i = 0; i < N; i++)
        v[i] += 10 * sin(2 * M_PI * (double)i / (i < B || i >= A ? 48.0 : 12.0));
    const char *forget[] = {"0", "2000"};
    long first[2];
    for (int k = 0; k < 2; k++) {
        ew_harness *h = s_make(1, s_one, (const char *[]){"forget", forget[k], NULL});
        s_process(h, N, v);
        const uint8_t *flag = ew_harness_flags(h);
        ck_assert_msg(s_first_flag(flag, B, B + 48) >= 0, "forget = %s: change at %d missed",
                      forget[k], B);
        /* The junction itself makes new contexts either way: look past it (and
         * past the rest it starts). */
        first[k] = s_first_flag(flag, A + 40, A + 240);
        ew_harness_destroy(&h);
    }
    ck_assert_msg(first[0] == -1, "forget = 0: the old rhythm flagged at %ld", first[0]);
    ck_assert_msg(first[1] >= A, "forget = 2000: the forgotten rhythm was not flagged");
    free(v);
}
END_TEST

/* A glitch of 1e6 widens the range only until an era's values span less than
 * half of it: afterwards a level shift of 6 sd (z below the threshold) is a
 * new extreme again, not a value deep inside a range of a million. */
START_TEST(a_glitch_is_forgotten)
{
    enum { N = 6000, AT = 5000 };
    double *v = s_noise(N, 1, 12);
    v[500] = 1e6;
    for (size_t i = AT; i < N; i++)
        v[i] += 6;
    ew_harness *h = s_make(1, s_one, (const char *[]){"forget", "1000", NULL});
    s_process(h, N, v);
    ck_assert(ew_harness_flags(h)[500] == 1);
    /* The first shifted value is a new extreme (the largest statistic): it is
     * not flagged here only because a record of the noise at 4978 began a rest. */
    ck_assert_msg(ew_harness_raw(h)[AT] == 1000, "raw %g", ew_harness_raw(h)[AT]);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* After an alarm the next `rest` samples score 0, spikes included; then the
 * detector alarms again. */
START_TEST(rest_after_an_alarm)
{
    enum { N = 3000 };
    ew_harness *h = s_make(1, s_one, (const char *[]){"rest", "20", NULL});
    double *v = s_noise(N, 1, 5);
    v[2000] = 50;
    v[2010] = 50;  /* inside the rest */
    v[2021] = -50; /* the first sample after it */
    s_process(h, N, v);
    const uint8_t *flag = ew_harness_flags(h);
    const double *score = ew_harness_scores(h), *raw = ew_harness_raw(h);
    ck_assert(flag[2000] == 1);
    for (int i = 2001; i <= 2020; i++)
        ck_assert_msg(score[i] == 0 && flag[i] == 0, "sample %d: %g", i, score[i]);
    /* The raw statistic is the test's, rest or not. */
    ck_assert_msg(raw[2010] > 8, "raw %g", raw[2010]);
    ck_assert(flag[2021] == 1 && score[2021] > 0.5);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* score = z^2 / (z^2 + threshold^2): 0.5 at the threshold, below it not flagged. */
START_TEST(score_is_one_half_at_threshold)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"warmup", "4", "window", "10", "short",
                                                      "4", "settle", "1000", NULL});
    /* Window [0, 0, 0, 4]: mean 1, sd 2: x = 17 is z = 8, the default threshold;
     * x = 16.9 is just below it. */
    const double v[] = {0, 0, 0, 4, 17};
    s_process(h, 5, v);
    ck_assert(ew_harness_raw(h)[4] == 8.0);
    ck_assert(ew_harness_scores(h)[4] == 0.5 && ew_harness_flags(h)[4] == 1);
    ew_harness_destroy(&h);
    h = s_make(1, s_one, (const char *[]){"warmup", "4", "window", "10", "short", "4", "settle",
                                          "1000", NULL});
    const double w[] = {0, 0, 0, 4, 16.9};
    s_process(h, 5, w);
    ck_assert(ew_harness_scores(h)[4] < 0.5 && ew_harness_flags(h)[4] == 0);
    ew_harness_destroy(&h);
}
END_TEST

/* Two channels: the sample's raw is the larger channel statistic and each
 * channel's contribution is its own; a spike on b is attributed to b. */
START_TEST(channels_score_apart_and_combine_by_max)
{
    enum { N = 3000, AT = 2500 };
    double *a = s_noise(N, 1, 6), *b = s_noise(N, 1, 7);
    double *v = malloc((size_t)2 * N * sizeof *v);
    for (size_t i = 0; i < N; i++) {
        v[2 * i] = a[i];
        v[2 * i + 1] = 100 + 5 * b[i];
    }
    v[2 * AT + 1] = 100 + 5 * 15;
    ew_harness *h = s_make(2, s_two, NULL);
    s_process_in(h, N, v, 2, 1024);
    const double *raw = ew_harness_raw(h), *contrib = ew_harness_contrib(h);
    const uint8_t *flag = ew_harness_flags(h);
    /* The last batch began at 2048. */
    size_t at = AT - 2048;
    ck_assert(flag[at] == 1);
    ck_assert_msg(contrib[2 * at + 1] > 8 && contrib[2 * at] < 5, "contrib %g %g",
                  contrib[2 * at], contrib[2 * at + 1]);
    for (size_t i = 0; i < N - 2048; i++)
        ck_assert(raw[i] == fmax(contrib[2 * i], contrib[2 * i + 1]));
    free(a);
    free(b);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* NaN, infinities and values beyond 1e100 are counted, leave the state alone,
 * and every output stays finite; a spike after them is still found. */
START_TEST(nan_and_huge_values_are_counted_and_survived)
{
    enum { N = 4000 };
    double *v = s_noise(N, 1, 8);
    size_t bad = 0;
    for (size_t i = 500; i < 3500; i += 37) {
        v[i] = (bad % 4 == 0) ? NAN : (bad % 4 == 1) ? INFINITY : (bad % 4 == 2) ? -1e300 : 1e101;
        bad++;
    }
    v[3600] = 12;
    ew_harness *h = s_make(1, s_one, NULL);
    s_process(h, N, v);
    ck_assert_uint_eq(ew_harness_counter(h, "context_skipped_values"), bad);
    const double *score = ew_harness_scores(h), *raw = ew_harness_raw(h);
    for (size_t i = 0; i < N; i++) {
        ck_assert_msg(score[i] >= 0 && score[i] <= 1, "score %g at %zu", score[i], i);
        ck_assert(isnan(raw[i]) || (isfinite(raw[i]) && raw[i] >= 0));
    }
    ck_assert_uint_eq(ew_harness_flags(h)[3600], 1);
    ck_assert_msg(s_flags(ew_harness_flags(h), 0, N) <= 8, "%zu alarms",
                  s_flags(ew_harness_flags(h), 0, N));

    /* Huge but usable values (1e90) and a flat stream: finite, capped raw. */
    ew_harness_destroy(&h);
    h = s_make(1, s_one, NULL);
    for (size_t i = 0; i < N; i++)
        v[i] = i % 500 == 499 ? 1e90 : 3.0;
    s_process(h, N, v);
    for (size_t i = 0; i < N; i++)
        ck_assert(isnan(ew_harness_raw(h)[i]) || ew_harness_raw(h)[i] <= 1000);
    ck_assert(ew_harness_flags(h)[499] == 1);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* Resident memory does not grow with the stream: 2 million values of ever
 * new noise after the first 100,000 add less than 512 KiB (the allocator's
 * own slack; one byte kept per value would be 2000 KiB). */
static long s_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    char line[128] = "";
    ck_assert(f);
    ck_assert(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    /* "size resident shared ...", in pages. */
    char *end;
    strtol(line, &end, 10);
    long rss = strtol(end, &end, 10);
    ck_assert(rss > 0);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* AddressSanitizer keeps freed memory in quarantine (the harness allocates per
 * batch), so RSS says nothing about the plugin there: this check runs in the
 * plain build only. */
#if defined(__SANITIZE_ADDRESS__)
#define S_RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_RSS_MEANINGFUL 0
#endif
#endif
#ifndef S_RSS_MEANINGFUL
#define S_RSS_MEANINGFUL 1
#endif

START_TEST(memory_is_bounded)
{
    if (!S_RSS_MEANINGFUL)
        return;
    enum { N = 100000 };
    double *v = s_noise(N, 1, 9);
    ew_harness *h = s_make(1, s_one, (const char *[]){"bins", "16", "context", "3", NULL});
    s_process_in(h, N, v, 1, 1024);
    long before = s_rss_kib();
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < N; i++)
            v[i] = v[i] * 1.01 + (double)round; /* new values, drifting range */
        s_process_in(h, N, v, 1, 1024);
    }
    long after = s_rss_kib();
    ck_assert_msg(after - before < 512, "RSS grew by %ld KiB", after - before);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* Same values in, same bytes out, however the stream is cut into batches. */
START_TEST(deterministic_across_batchings)
{
    enum { N = 6000 };
    double *v = s_noise(N, 1, 10);
    for (size_t i = 0; i < N; i++)
        v[i] += 5 * sin((double)i / 30) + (i % 1111 == 0 ? 9 : 0);
    double *first = malloc(N * sizeof *first), *raw = malloc(N * sizeof *raw);
    ew_harness *h = s_make(1, s_one, NULL);
    s_process(h, N, v);
    memcpy(first, ew_harness_scores(h), N * sizeof *first);
    memcpy(raw, ew_harness_raw(h), N * sizeof *raw);
    ew_harness_destroy(&h);
    h = s_make(1, s_one, NULL);
    for (size_t i = 0; i < N; i += 7) {
        size_t m = N - i < 7 ? N - i : 7;
        s_process(h, m, v + i);
        ck_assert(memcmp(ew_harness_scores(h), first + i, m * sizeof *first) == 0);
        ck_assert(memcmp(ew_harness_raw(h), raw + i, m * sizeof *raw) == 0);
    }
    free(first);
    free(raw);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(option_errors)
{
    struct {
        const char *key, *value, *key2, *value2, *want;
    } cases[] = {
        {"window", "5", NULL, NULL, "out of range"},
        {"threshold", "0", NULL, NULL, "out of range"},
        {"bins", "1", NULL, NULL, "out of range"},
        {"extreme_margin", "-2", NULL, NULL, "out of range"},
        {"bins", "64", "context", "4", "contexts per channel"},
        {"short", "200", "window", "100", "longer than window"},
        {"windw", "10", NULL, NULL, "unknown option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
        ew_harness_input(h, 1, s_one);
        ew_harness_option(h, cases[i].key, cases[i].value);
        if (cases[i].key2)
            ew_harness_option(h, cases[i].key2, cases[i].value2);
        ck_assert_int_ne(ew_harness_init(h), EW_OK);
        const char *msg = ew_harness_error(h);
        ck_assert_msg(strstr(msg, cases[i].key) && strstr(msg, cases[i].want), "%s = %s: %s",
                      cases[i].key, cases[i].value, msg);
        ew_harness_destroy(&h);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-context");
    TCase *tc = tcase_create("context");
    tcase_add_test(tc, descriptor_and_schema);
    tcase_add_test(tc, warmup_is_marked_learning);
    tcase_add_test(tc, detects_a_spike);
    tcase_add_test(tc, detects_a_level_shift);
    tcase_add_test(tc, detects_a_frequency_change);
    tcase_add_test(tc, contexts_are_forgotten_after_two_eras);
    tcase_add_test(tc, a_glitch_is_forgotten);
    tcase_add_test(tc, rest_after_an_alarm);
    tcase_add_test(tc, score_is_one_half_at_threshold);
    tcase_add_test(tc, channels_score_apart_and_combine_by_max);
    tcase_add_test(tc, nan_and_huge_values_are_counted_and_survived);
    tcase_add_test(tc, memory_is_bounded);
    tcase_add_test(tc, deterministic_across_batchings);
    tcase_add_test(tc, option_errors);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
