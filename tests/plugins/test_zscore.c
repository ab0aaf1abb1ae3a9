/* Tests of the zscore detector plugin through the SDK harness, against hand-computed statistics. */
#include <edgewatch/testing.h>

#include "ewp_stats.h"
#include "options.h"
#include "ptest.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A detector over `names` with options (NULL-terminated pairs), initialised. */
static ew_harness *s_make(size_t nch, const char *const *names, const char *const *kv)
{
    return ptest_open(NULL, nch, names, kv, NULL);
}

/* Scores `n` rows of `values` (timestamps don't matter to zscore). */
static void s_process(ew_harness *h, size_t n, const double *values)
{
    int64_t *ts = calloc(n ? n : 1, sizeof *ts);
    for (size_t i = 0; i < n; i++)
        ts[i] = (int64_t)i * 1000000;
    ck_assert_int_eq(ew_harness_process(h, n, ts, values), EW_OK);
    free(ts);
}

static const char *const s_one[] = {"x"};
static const char *const s_two[] = {"a", "b"};

START_TEST(descriptor_and_schema)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_DETECTOR);
    ck_assert_str_eq(p->name, "zscore");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
    ew_harness *h = s_make(2, s_two, NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 5);
    ck_assert_str_eq(out->names[0], "a");
    ck_assert_str_eq(out->names[1], "b");
    ck_assert_str_eq(out->names[2], "z");
    ck_assert_str_eq(out->names[3], "score");
    ck_assert_str_eq(out->names[4], "anomaly");
    ck_assert_int_eq(out->score_index, 3);
    ck_assert_int_eq(out->anomaly_index, 4);
    ew_harness_destroy(&h);
}
END_TEST

/* Window [1, 2, 3, 4]: mean 2.5, sample variance 5/3; x = 10 gives
 * z^2 = 7.5^2 / (5/3) = 33.75 and, at threshold 2, score = 33.75 / 37.75. */
START_TEST(known_series)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "4", "threshold", "2", NULL});
    const double v[] = {1, 2, 3, 4, 10};
    s_process(h, 5, v);
    const double *score = ew_harness_scores(h), *z = ew_harness_extra(h);
    const uint8_t *flag = ew_harness_flags(h);
    for (int i = 0; i < 4; i++) {
        ck_assert(score[i] == 0 && flag[i] == 0);
        ck_assert(isnan(z[i]));
    }
    ck_assert_double_eq_tol(z[4], sqrt(33.75), 1e-12);
    ck_assert_double_eq_tol(score[4], 33.75 / 37.75, 1e-12);
    ck_assert_uint_eq(flag[4], 1);
    ew_harness_destroy(&h);
}
END_TEST

/* Window [0, 0, 0, 4]: mean 1, sd 2 exactly; x = 7 is z = 3 = threshold. */
START_TEST(score_is_one_half_at_threshold)
{
    ew_harness *h = s_make(2, s_two, (const char *[]){"window", "4", "threshold", "3", "combine", "max", NULL});
    const double v[] = {0, 0, 0, 0, 0, 0, 4, 4, 7, 1};
    s_process(h, 5, v);
    ck_assert(ew_harness_extra(h)[4] == 3.0);
    ck_assert(ew_harness_scores(h)[4] == 0.5);
    ck_assert_uint_eq(ew_harness_flags(h)[4], 0); /* anomaly is z > threshold */
    ew_harness_destroy(&h);

    h = s_make(2, s_two, (const char *[]){"window", "4", "threshold", "3", "combine", "max", NULL});
    const double w[] = {0, 0, 0, 0, 0, 0, 4, 4, 7.5, 1};
    s_process(h, 5, w);
    ck_assert(ew_harness_extra(h)[4] == 3.25);
    ck_assert_double_eq_tol(ew_harness_scores(h)[4], 10.5625 / 19.5625, 1e-15);
    ck_assert_uint_eq(ew_harness_flags(h)[4], 1);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(score_mapping_is_monotone_in_unit_interval)
{
    /* Window [0, 0, 0, 4] again (sd 2, mean 1), then x = 1 + 2z for several z. */
    const double zs[] = {0, 0.5, 1, 2.9, 3, 3.1, 6, 30, 999};
    double prev = -1;
    for (size_t k = 0; k < sizeof zs / sizeof zs[0]; k++) {
        ew_harness *h = s_make(1, s_one, (const char *[]){"window", "4", NULL});
        const double v[] = {0, 0, 0, 4, 1 + 2 * zs[k]};
        s_process(h, 5, v);
        double s = ew_harness_scores(h)[4];
        ck_assert_double_eq_tol(s, zs[k] * zs[k] / (zs[k] * zs[k] + 9), 1e-12);
        ck_assert(s >= 0 && s <= 1 && s > prev);
        prev = s;
        ew_harness_destroy(&h);
    }
}
END_TEST

START_TEST(max_over_channels)
{
    /* a: window [0,0,0,4] -> x=3 is z=1; b: same window -> x=5 is z=2. */
    ew_harness *h = s_make(2, s_two, (const char *[]){"window", "4", "combine", "max", NULL});
    const double v[] = {0, 0, 0, 0, 0, 0, 4, 4, 3, 5};
    s_process(h, 5, v);
    ck_assert(ew_harness_extra(h)[4] == 2.0);
    ck_assert(ew_harness_scores(h)[4] == 4.0 / 13.0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(explicit_warmup)
{
    /* warmup 2: samples 0 and 1 only fill the window; sample 2 is scored
     * against [1, 3] (mean 2, sd sqrt 2). */
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "4", "warmup", "2", NULL});
    const double v[] = {1, 3, 5};
    s_process(h, 3, v);
    ck_assert(isnan(ew_harness_extra(h)[0]) && isnan(ew_harness_extra(h)[1]));
    ck_assert(ew_harness_scores(h)[1] == 0);
    ck_assert_double_eq_tol(ew_harness_extra(h)[2], 3 / sqrt(2), 1e-12);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(default_warmup_is_the_window)
{
    /* window 4 (under 100): samples 0-3 only fill the window, even the spike at 2. */
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "4", NULL});
    const double v[] = {1, 2, 1e9, 1, 2, 1, 2, 1, 1e9};
    s_process(h, 9, v);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(ew_harness_scores(h)[i] == 0 && ew_harness_flags(h)[i] == 0, "sample %d", i);
        ck_assert(isnan(ew_harness_extra(h)[i]));
    }
    ck_assert(!isnan(ew_harness_extra(h)[4]));
    ck_assert_uint_eq(ew_harness_flags(h)[8], 1);
    ew_harness_destroy(&h);
}
END_TEST

/* The default warmup (-1) is the window length but at most 100 values: with
 * the default window (1500) a step is flagged from the 101st value on, and
 * the first 100 only fill the window. */
START_TEST(default_warmup_is_at_most_100)
{
    ew_harness *h = s_make(1, s_one, NULL);
    enum { N = 102 };
    double v[N];
    for (int i = 0; i < N; i++)
        v[i] = i % 2;    /* 0, 1, 0, 1, ...: mean 0.5, sd about 0.5 */
    v[50] = 1e6;         /* not scored: still warming up (and now in the window) */
    v[101] = 1e9;
    s_process(h, N, v);
    for (int i = 0; i < 100; i++)
        ck_assert_msg(isnan(ew_harness_extra(h)[i]) && ew_harness_flags(h)[i] == 0, "sample %d", i);
    ck_assert(!isnan(ew_harness_extra(h)[100]));
    ck_assert_uint_eq(ew_harness_flags(h)[101], 1);
    ew_harness_destroy(&h);
    /* An explicit -1 with a window of 300 also stops at 100. */
    h = s_make(1, s_one, (const char *[]){"window", "300", "warmup", "-1", NULL});
    s_process(h, N, v);
    ck_assert(isnan(ew_harness_extra(h)[99]));
    ck_assert(!isnan(ew_harness_extra(h)[100]));
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(state_carries_across_batches)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "4", "threshold", "2", NULL});
    const double a[] = {1, 2}, b[] = {3, 4}, c[] = {10};
    s_process(h, 2, a);
    s_process(h, 2, b);
    s_process(h, 1, c);
    ck_assert_double_eq_tol(ew_harness_extra(h)[0], sqrt(33.75), 1e-12);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(nan_and_inf_are_skipped)
{
    ew_harness *h = s_make(2, s_two, (const char *[]){"window", "4", "combine", "max", NULL});
    const double v[] = {
        0,   0,   0,   0,    0,        0, 4, 4, /* both windows [0,0,0,4] */
        NAN, 100, /* a missing: b alone decides (anomaly) */
        7,   1,   /* a still [0,0,0,4]: z = 3 exactly, had NaN not joined it */
        INFINITY, NAN, /* nothing finite: no verdict */
        -INFINITY, 1,  /* -inf ignored; b: small z */
    };
    s_process(h, 8, v);
    const double *z = ew_harness_extra(h), *score = ew_harness_scores(h);
    const uint8_t *flag = ew_harness_flags(h);
    ck_assert_uint_eq(flag[4], 1);
    ck_assert_msg(z[4] > 40, "z %g", z[4]);
    ck_assert(z[5] == 3.0 && score[5] == 0.5 && flag[5] == 0);
    ck_assert(isnan(z[6]) && score[6] == 0 && flag[6] == 0);
    ck_assert(isfinite(z[7]) && flag[7] == 0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(flat_signal)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "5", NULL});
    double v[20];
    for (int i = 0; i < 20; i++)
        v[i] = 3.3;
    v[6] = 3.3000000001; /* differs from a flat window: z = inf, reported as 1000 */
    v[7] = 1e6 / 3;      /* values that then leave the window */
    v[8] = -12345.678;
    v[9] = 0.1;
    s_process(h, 20, v);
    const double *z = ew_harness_extra(h), *score = ew_harness_scores(h);
    const uint8_t *flag = ew_harness_flags(h);
    ck_assert(z[5] == 0 && score[5] == 0 && flag[5] == 0);
    ck_assert(z[6] == 1000 && score[6] > 0.9999 && flag[6] == 1);
    ck_assert(ew_harness_raw(h)[6] == 1000);
    /* From sample 15 on the window is flat 3.3 again: the statistics must say
     * so exactly (no residue of the spikes), or equal values would alarm. */
    for (int i = 15; i < 20; i++)
        ck_assert_msg(z[i] == 0 && flag[i] == 0, "sample %d: z %g", i, z[i]);
    ew_harness_destroy(&h);

    h = s_make(1, s_one, (const char *[]){"window", "5", NULL});
    for (int i = 0; i < 20; i++)
        v[i] = 3.3;
    v[12] = 3.2;
    s_process(h, 20, v);
    ck_assert(ew_harness_extra(h)[12] == 1000 && ew_harness_flags(h)[12] == 1);
    ew_harness_destroy(&h);
}
END_TEST

/* Window [1, 2, 3, 4, 100]: median 3, |dev| = 2,1,0,1,97 -> MAD 1, so
 * x = 6 is z = 3 / 1.4826; the 100 does not inflate the spread. */
START_TEST(robust_odd_window)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "5", "robust", "true", "threshold",
                                                      "2", NULL});
    const double v[] = {1, 100, 3, 2, 4, 6};
    s_process(h, 6, v);
    ck_assert_double_eq_tol(ew_harness_extra(h)[5], 3 / 1.4826, 1e-12);
    ck_assert_uint_eq(ew_harness_flags(h)[5], 1);
    ew_harness_destroy(&h);
}
END_TEST

/* Window [10, 1, 4, 2]: median 3, |dev| = 7,2,1,1 -> MAD 1.5; x = 9 is
 * z = 6 / (1.5 * 1.4826). Then the window slides to [1, 4, 2, 9]: median 3,
 * |dev| = 2,1,1,6 -> MAD 1.5; x = 0 is z = 3 / 2.2239. */
START_TEST(robust_even_window_slides)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "4", "robust", "yes", NULL});
    const double v[] = {10, 1, 4, 2, 9, 0};
    s_process(h, 6, v);
    ck_assert_double_eq_tol(ew_harness_extra(h)[4], 6 / (1.5 * 1.4826), 1e-12);
    ck_assert_double_eq_tol(ew_harness_extra(h)[5], 3 / (1.5 * 1.4826), 1e-12);
    ew_harness_destroy(&h);
}
END_TEST

/* More than half the window equal: MAD = 0, so the mean absolute deviation
 * from the median (0.2 here) times sqrt(pi/2) measures the spread. */
START_TEST(robust_zero_mad)
{
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "5", "robust", "on", NULL});
    const double v[] = {5, 5, 6, 5, 5, 6};
    s_process(h, 6, v);
    ck_assert_double_eq_tol(ew_harness_extra(h)[5], 1 / (0.2 * 1.2533141373155003), 1e-9);
    ew_harness_destroy(&h);
    h = s_make(1, s_one, (const char *[]){"window", "5", "robust", "on", NULL});
    const double w[] = {5, 5, 5, 5, 5, 6, 5};
    s_process(h, 6, w);
    ck_assert(ew_harness_extra(h)[5] == 1000 && ew_harness_flags(h)[5] == 1);
    ew_harness_destroy(&h);
}
END_TEST

/* Robust mode against a brute-force median/MAD on random data. */
START_TEST(robust_matches_brute_force)
{
    enum { N = 3000, W = 37 };
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "37", "robust", "true", NULL});
    double *v = malloc(N * sizeof *v);
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        /* Coarse values, so ties and zero deviations occur. */
        v[i] = (double)((seed >> 16) % 50) / 4;
    }
    s_process(h, N, v);
    double win[W], dev[W];
    for (int i = W; i < N; i++) {
        memcpy(win, v + i - W, sizeof win);
        for (int a = 1; a < W; a++)
            for (int b = a; b > 0 && win[b - 1] > win[b]; b--) {
                double t = win[b];
                win[b] = win[b - 1];
                win[b - 1] = t;
            }
        double med = win[W / 2];
        for (int k = 0; k < W; k++)
            dev[k] = fabs(win[k] - med);
        for (int a = 1; a < W; a++)
            for (int b = a; b > 0 && dev[b - 1] > dev[b]; b--) {
                double t = dev[b];
                dev[b] = dev[b - 1];
                dev[b - 1] = t;
            }
        double spread = 1.4826 * dev[W / 2];
        if (spread == 0) {
            double sum = 0;
            for (int k = 0; k < W; k++)
                sum += dev[k];
            spread = 1.2533141373155003 * sum / W;
        }
        double want = v[i] == med ? 0 : spread == 0 ? 1000 : fmin(1000, fabs(v[i] - med) / spread);
        double got = ew_harness_extra(h)[i];
        ck_assert_msg(got == want || fabs(got - want) <= 1e-12 * want, "sample %d: %g vs %g", i,
                      got, want);
    }
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* Box-Muller from a tiny LCG: good enough noise for a numerical test. */
static double s_gauss(unsigned long long *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    double u1 = ((double)(*state >> 11) + 0.5) / 9007199254740992.0;
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    double u2 = (double)(*state >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* Values near 1e9 with small noise: a sum-of-squares implementation loses
 * every digit here. Compare z with a two-pass computation in long double. */
static void s_check_stability(double base, double noise, double level, double tolerance)
{
    enum { N = 100000, W = 100 };
    ew_harness *h = s_make(1, s_one, (const char *[]){"window", "100", "extremes", "off", NULL});
    double *v = malloc(N * sizeof *v);
    unsigned long long st = 42;
    /* Every 700 samples the level jumps by `level` and back: while the window
     * spans a jump its sum of squares is huge, and when the jump leaves it an
     * incremental update cancels away all precision unless recomputed. */
    for (int i = 0; i < N; i++)
        v[i] = base + noise * s_gauss(&st) + (i / 700 % 2 ? level : 0) +
               (i % 5000 == 0 ? 50 * noise : 0);
    s_process(h, N, v);
    double worst = 0;
    for (int i = W; i < N; i++) {
        long double mean = 0, m2 = 0;
        for (int k = i - W; k < i; k++)
            mean += (long double)v[k];
        mean /= W;
        for (int k = i - W; k < i; k++)
            m2 += ((long double)v[k] - mean) * ((long double)v[k] - mean);
        long double want = fabsl((long double)v[i] - mean) / sqrtl(m2 / (W - 1));
        if (want > 1000)
            want = 1000; /* the statistic's documented ceiling */
        double got = ew_harness_extra(h)[i];
        double err = fabs((double)(got - want)) / fmax(1.0, (double)want);
        if (err > worst)
            worst = err;
    }
    ck_assert_msg(worst < tolerance, "base %g noise %g: worst error %g", base, noise, worst);
    free(v);
    ew_harness_destroy(&h);
}

START_TEST(numerically_stable_near_1e9)
{
    s_check_stability(1e9, 1.0, 0, 1e-9);
    s_check_stability(1e9, 1e-3, 0, 1e-6);
    s_check_stability(-3e12, 0.5, 0, 1e-6);
    s_check_stability(1e9, 1.0, -1e9, 1e-6);
    s_check_stability(0, 1e-3, 1e7, 1e-6);
}
END_TEST

/* One huge but finite reading (1e155: its square overflows) used to make the
 * variance inf and then NaN: the detector went blind for a window, then every
 * sample alarmed. It must be refused as bad input (counted), leave the
 * statistics as they were, and the stream go on being scored normally. */
START_TEST(huge_value_does_not_poison_the_statistics)
{
    const char *const modes[] = {"false", "true"};
    for (int m = 0; m < 2; m++) {
        ew_harness *h = s_make(1, s_one, (const char *[]){"window", "100", "robust", modes[m], NULL});
        enum { N = 3000 };
        double *v = malloc(N * sizeof *v);
        unsigned long long st = 7;
        for (int i = 0; i < N; i++)
            v[i] = 10 + s_gauss(&st);
        v[1000] = 1e155;
        v[1500] = -1.7e308;
        v[1050] = v[1600] = 40; /* 30 sd: the detector must still see these */
        s_process(h, N, v);
        const double *z = ew_harness_extra(h);
        const uint8_t *flag = ew_harness_flags(h);
        int alarms = 0;
        for (int i = 100; i < N; i++) {
            if (i == 1000 || i == 1500)
                continue;
            ck_assert_msg(isfinite(z[i]), "robust %s, sample %d: z %g", modes[m], i, z[i]);
            alarms += flag[i];
        }
        ck_assert_msg(flag[1050] && flag[1600], "robust %s: blind after the huge value", modes[m]);
        /* Gaussian noise beyond 3 sd: about 0.3 % of 2900 samples. */
        ck_assert_msg(alarms < 30, "robust %s: %d alarms", modes[m], alarms);
        ck_assert_uint_eq(ew_harness_counter(h, "zscore_bad_values"), 2);
        ck_assert(ew_harness_logged(h, EW_LOG_WARN) >= 1);
        free(v);
        ew_harness_destroy(&h);
    }
}
END_TEST

/* ABI 1.2: raw = the statistic (also the z channel), contrib = each input
 * channel's |z|, learning = 1 while no channel can be scored yet. */
START_TEST(raw_contrib_and_learning)
{
    ew_harness *h = s_make(2, s_two, (const char *[]){"window", "4", NULL});
    ck_assert(!ew_harness_score_calibrated(h)); /* rolling: the host calibrates raw */
    /* Windows [0,0,0,4] for both; then a = 1 (z 0), b = 9 (z 4). */
    const double v[] = {0, 0, 0, 0, 0, 0, 4, 4, 1, 9};
    s_process(h, 5, v);
    const double *raw = ew_harness_raw(h), *contrib = ew_harness_contrib(h);
    const uint8_t *learning = ew_harness_learning_flags(h);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(learning[i] == 1 && isnan(raw[i]), "sample %d", i);
        ck_assert(isnan(contrib[2 * i]) && isnan(contrib[2 * i + 1]));
    }
    ck_assert_uint_eq(learning[4], 0);
    ck_assert(contrib[8] == 0 && contrib[9] == 4);
    /* Sidak over 2 channels: the tail of max |z| = 4, 1 - (1 - p)^2, as one z. */
    double p = erfc(4 / M_SQRT2), want = 1 - (1 - p) * (1 - p);
    ck_assert_msg(fabs(erfc(raw[4] / M_SQRT2) / want - 1) < 1e-9, "raw %.17g", raw[4]);
    ck_assert(raw[4] < 4 && raw[4] > 3.5);
    ck_assert(ew_harness_extra(h)[4] == raw[4]);
    ew_harness_destroy(&h);
}
END_TEST

/* The three ways to combine channels, on z_a = 3, z_b = 0. */
START_TEST(combine_modes)
{
    const char *const modes[] = {"max", "sidak", "chi2"};
    double got[3];
    for (int m = 0; m < 3; m++) {
        ew_harness *h = s_make(2, s_two, (const char *[]){"window", "4", "combine", modes[m], NULL});
        const double v[] = {0, 0, 0, 0, 0, 0, 4, 4, 7, 1};
        s_process(h, 5, v);
        got[m] = ew_harness_raw(h)[4];
        ew_harness_destroy(&h);
    }
    ck_assert(got[0] == 3);
    double p = erfc(3 / M_SQRT2);
    ck_assert(fabs(erfc(got[1] / M_SQRT2) / (1 - (1 - p) * (1 - p)) - 1) < 1e-9);
    /* Chi-square with 2 degrees of freedom: P(X > 9) = e^-4.5. */
    ck_assert_msg(fabs(erfc(got[2] / M_SQRT2) / exp(-4.5) - 1) < 1e-9, "chi2 z %.17g", got[2]);
}
END_TEST

/* The combined z (tabulated for speed) against the tails computed here from
 * the per-channel |z| in contrib: 4 channels, Sidak and chi-square (for 4
 * degrees of freedom Q = e^-x (1 + x), x = sum / 2). */
START_TEST(combined_z_matches_its_definition)
{
    enum { K = 4, N = 4000 };
    const char *const names[K] = {"a", "b", "c", "d"};
    double *v = malloc(N * K * sizeof *v);
    unsigned long long st = 3;
    for (int i = 0; i < N * K; i++)
        v[i] = s_gauss(&st) * (i % 97 == 0 ? 6 : 1);
    const char *const modes[] = {"sidak", "chi2"};
    for (int m = 0; m < 2; m++) {
        ew_harness *h = s_make(K, names, (const char *[]){"window", "50", "combine", modes[m], NULL});
        s_process(h, N, v);
        const double *raw = ew_harness_raw(h), *contrib = ew_harness_contrib(h);
        int checked = 0;
        for (int i = 50; i < N; i++) {
            double mx = 0, ss = 0;
            for (int c = 0; c < K; c++) {
                mx = fmax(mx, contrib[i * K + c]);
                ss += contrib[i * K + c] * contrib[i * K + c];
            }
            double want = m == 0 ? -expm1(K * log1p(-erfc(mx / M_SQRT2))) : exp(-ss / 2) * (1 + ss / 2);
            if (raw[i] < 0.05 || raw[i] > 8)
                continue;
            checked++;
            ck_assert_msg(fabs(erfc(raw[i] / M_SQRT2) / want - 1) < 1e-8, "%s sample %d: z %.17g",
                          modes[m], i, raw[i]);
        }
        ck_assert(checked > N / 2);
        ew_harness_destroy(&h);
    }
    free(v);
}
END_TEST

/* 50 independent Gaussian channels against a frozen baseline: with `max`,
 * some channel passes 3 in about 1 - (1 - 0.0027)^50 = 12.6 % of samples;
 * the Sidak and chi-square statistics keep one channel's 0.27 %. */
START_TEST(false_alarms_do_not_grow_with_channels)
{
    enum { K = 50, TRAIN = 5000, N = 25000 };
    const char *names[K];
    char buf[K][8];
    for (int c = 0; c < K; c++) {
        snprintf(buf[c], sizeof buf[c], "c%d", c);
        names[c] = buf[c];
    }
    double *v = malloc((size_t)N * K * sizeof *v);
    unsigned long long st = 99;
    for (size_t i = 0; i < (size_t)N * K; i++)
        v[i] = 5 + 2 * s_gauss(&st);
    const char *const modes[] = {"max", "sidak", "chi2"};
    for (int m = 0; m < 3; m++) {
        ew_harness *h = s_make(K, names, (const char *[]){"baseline", "frozen", "train_samples", "5000",
                                                          "combine", modes[m], NULL});
        s_process(h, N, v);
        const uint8_t *flag = ew_harness_flags(h), *learning = ew_harness_learning_flags(h);
        int flagged = 0;
        for (int i = 0; i < N; i++) {
            ck_assert_uint_eq(learning[i], i < TRAIN);
            if (i >= TRAIN)
                flagged += flag[i];
        }
        double rate = (double)flagged / (N - TRAIN);
        if (m == 0)
            ck_assert_msg(rate > 0.09 && rate < 0.17, "max: %.4f", rate);
        else
            ck_assert_msg(rate > 0.0010 && rate < 0.0060, "%s: %.4f", modes[m], rate);
        ew_harness_destroy(&h);
    }
    free(v);
}
END_TEST

/* A frozen baseline keeps flagging a lasting shift that a rolling window
 * absorbs; with relearn_every it is relearnt and becomes normal. */
START_TEST(frozen_baseline)
{
    enum { N = 1500 };
    double v[N];
    unsigned long long st = 5;
    for (int i = 0; i < N; i++)
        v[i] = 20 + s_gauss(&st) + (i >= 500 ? 10 : 0);
    ew_harness *h = s_make(1, s_one, (const char *[]){"baseline", "frozen", "train_samples", "200",
                                                      "extremes", "off", NULL});
    ck_assert(ew_harness_learning(h));
    s_process(h, N, v);
    const uint8_t *flag = ew_harness_flags(h), *learning = ew_harness_learning_flags(h);
    const double *raw = ew_harness_raw(h);
    for (int i = 0; i < 200; i++)
        ck_assert_msg(learning[i] == 1 && isnan(raw[i]) && ew_harness_scores(h)[i] == 0, "%d", i);
    ck_assert(!ew_harness_learning(h));
    ck_assert(ew_harness_score_calibrated(h));
    int early = 0, late = 0;
    for (int i = 200; i < 500; i++)
        early += flag[i];
    for (int i = 500; i < N; i++)
        late += flag[i];
    ck_assert_msg(early < 10 && late == N - 500, "early %d late %d", early, late);
    ew_harness_destroy(&h);

    /* The rolling window (100 values) has absorbed the shift 100 values later. */
    h = s_make(1, s_one, (const char *[]){"window", "100", "extremes", "off", NULL});
    s_process(h, N, v);
    late = 0;
    for (int i = 700; i < N; i++)
        late += ew_harness_flags(h)[i];
    ck_assert_msg(late < 20, "rolling: %d", late);
    ew_harness_destroy(&h);

    /* Relearnt every 300 values from the last 200: the shift is normal after 900. */
    h = s_make(1, s_one, (const char *[]){"baseline", "frozen", "train_samples", "200",
                                          "relearn_every", "300", "extremes", "off", NULL});
    s_process(h, N, v);
    late = 0;
    for (int i = 500; i < 800; i++)
        ck_assert_msg(ew_harness_flags(h)[i] == 1, "%d", i); /* relearnt at 500 from 300..499 */
    for (int i = 800; i < N; i++)
        late += ew_harness_flags(h)[i];
    ck_assert_msg(late < 30, "relearnt: %d", late);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(frozen_constant_channel_is_named)
{
    ew_harness *h = s_make(2, s_two, (const char *[]){"baseline", "frozen", "train_samples", "10", NULL});
    double v[40];
    for (int i = 0; i < 20; i++) {
        v[2 * i] = 3;           /* a: constant in training */
        v[2 * i + 1] = i % 3;   /* b: varies */
    }
    v[2 * 15] = 3.5;
    s_process(h, 20, v);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 1);
    ck_assert(ew_harness_contrib(h)[2 * 15] == 1000);
    ck_assert(ew_harness_raw(h)[15] == 1000 && ew_harness_flags(h)[15] == 1);
    ck_assert(ew_harness_raw(h)[14] < 3);
    ew_harness_destroy(&h);
}
END_TEST

/* The new-extreme rule: after extremes_after values, a value beyond the range
 * seen so far by more than extremes_margin of it scores as the maximum. */
START_TEST(new_extremes)
{
    enum { N = 320 };
    double v[N];
    for (int i = 0; i < N; i++)
        v[i] = i % 11; /* 0..10: range 10, margin 0.2 */
    v[100] = 10.5;     /* before 288 values: an ordinary z */
    v[300] = 10.6;     /* within 0.2 of the max so far (10.5): not extreme */
    v[310] = 10.9;     /* beyond 10.6 + 0.218 */
    ew_harness *h = s_make(1, s_one, (const char *[]){"extremes_after", "288", NULL});
    s_process(h, N, v);
    const double *raw = ew_harness_raw(h);
    ck_assert(raw[100] < 3 && raw[300] < 3);
    ck_assert(raw[310] == 1000 && ew_harness_contrib(h)[310] == 1000 && ew_harness_flags(h)[310]);
    ew_harness_destroy(&h);

    h = s_make(1, s_one, (const char *[]){"extremes", "off", NULL});
    s_process(h, N, v);
    ck_assert(ew_harness_raw(h)[310] < 3);
    ew_harness_destroy(&h);
    h = s_make(1, s_one, NULL); /* the default extremes_after is 500 */
    s_process(h, N, v);
    ck_assert(ew_harness_raw(h)[310] < 3);
    ew_harness_destroy(&h);
    h = s_make(1, s_one, (const char *[]){"extremes_margin", "0.001", "extremes_after", "50", NULL});
    s_process(h, N, v);
    ck_assert(ew_harness_raw(h)[100] == 1000 && ew_harness_raw(h)[300] == 1000);
    ew_harness_destroy(&h);

    /* auto: off with two channels (no correction for their number), unless asked. */
    double w[2 * N];
    for (int i = 0; i < N; i++)
        w[2 * i] = w[2 * i + 1] = v[i];
    h = s_make(2, s_two, (const char *[]){"extremes_after", "288", NULL});
    s_process(h, N, w);
    ck_assert(ew_harness_raw(h)[310] < 3);
    ew_harness_destroy(&h);
    h = s_make(2, s_two, (const char *[]){"extremes", "on", "extremes_after", "288", NULL});
    s_process(h, N, w);
    ck_assert(ew_harness_raw(h)[310] == 1000);
    ew_harness_destroy(&h);
}
END_TEST

/* The tail functions behind combine, far into the tails. */
START_TEST(tail_functions)
{
    for (double z = 0.01; z < 1000; z *= 1.37) {
        double lt = ewp_normal_log_tail2(z);
        ck_assert(isfinite(lt) && lt < 0);
        ck_assert_msg(fabs(ewp_normal_z_of_log_tail2(lt) - z) < 1e-9 * z, "z %g", z);
        /* Chi-square with 1 degree of freedom is the square of a normal. */
        ck_assert_msg(fabs(ewp_chi2_log_tail(z * z, 1) - lt) < 1e-9 * fmax(1, fabs(lt)), "z %g", z);
        if (z < 8)
            ck_assert(fabs(lt - log(erfc(z / M_SQRT2))) < 1e-12 * fmax(1, fabs(lt)));
    }
    /* Even k: Q = e^(-s/2) sum_{j < k/2} (s/2)^j / j!, summed here in logs. */
    const double ss[] = {0.5, 3, 10, 40, 200, 5000, 1e6};
    for (unsigned k = 2; k <= 60; k += 2)
        for (size_t i = 0; i < sizeof ss / sizeof ss[0]; i++) {
            double x = ss[i] / 2, lmax = -INFINITY, lj[30];
            for (unsigned j = 0; j < k / 2; j++) {
                lj[j] = j * log(x) - lgamma(j + 1.0);
                lmax = fmax(lmax, lj[j]);
            }
            double sum = 0;
            for (unsigned j = 0; j < k / 2; j++)
                sum += exp(lj[j] - lmax);
            double want = -x + lmax + log(sum), got = ewp_chi2_log_tail(ss[i], k);
            ck_assert_msg(fabs(got - want) < 1e-9 * fmax(1, fabs(want)), "k %u s %g: %.17g vs %.17g",
                          k, ss[i], got, want);
        }
    ck_assert(ewp_normal_z_of_log_tail2(0) == 0 && ewp_chi2_log_tail(0, 5) == 0);
}
END_TEST

START_TEST(chained_after_a_detector)
{
    /* An upstream detector's score and anomaly are not scored again (and our verdict
     * replaces them in the output), and its z channel keeps its name: ours is named
     * after the node. */
    const char *const names[] = {"a", "z", "score", "anomaly"};
    ew_harness *h = s_make(4, names, (const char *[]){"window", "4", NULL});
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 5);
    ck_assert_str_eq(out->names[1], "z");
    ck_assert_str_eq(out->names[2], "z_test");
    ck_assert_str_eq(out->names[3], "score");
    /* a and z are flat at 1; score and anomaly jump, which must not matter. */
    const double v[] = {1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0.9, 1};
    s_process(h, 5, v);
    ck_assert(ew_harness_extra(h)[4] == 0 && ew_harness_flags(h)[4] == 0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(option_errors)
{
    struct {
        const char *key, *value, *want;
    } cases[] = {
        {"window", "1", "out of range"},
        {"window", "ten", "integer"},
        {"threshold", "0", "out of range"},
        {"warmup", "-2", "out of range"},
        {"robust", "maybe", "true or false"},
        {"baseline", "fixed", "rolling"},
        {"combine", "sum", "sidak"},
        {"extremes", "yes", "auto"},
        {"train_samples", "1", "out of range"},
        {"extremes_margin", "-1", "out of range"},
        {"windw", "10", "unknown option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
        ew_harness_input(h, 1, s_one);
        ew_harness_option(h, cases[i].key, cases[i].value);
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
    Suite *s = suite_create("plugin-zscore");
    TCase *tc = tcase_create("zscore");
    tcase_add_test(tc, descriptor_and_schema);
    tcase_add_test(tc, known_series);
    tcase_add_test(tc, score_is_one_half_at_threshold);
    tcase_add_test(tc, score_mapping_is_monotone_in_unit_interval);
    tcase_add_test(tc, max_over_channels);
    tcase_add_test(tc, explicit_warmup);
    tcase_add_test(tc, default_warmup_is_the_window);
    tcase_add_test(tc, default_warmup_is_at_most_100);
    tcase_add_test(tc, state_carries_across_batches);
    tcase_add_test(tc, nan_and_inf_are_skipped);
    tcase_add_test(tc, flat_signal);
    tcase_add_test(tc, robust_odd_window);
    tcase_add_test(tc, robust_even_window_slides);
    tcase_add_test(tc, robust_zero_mad);
    tcase_add_test(tc, robust_matches_brute_force);
    tcase_add_test(tc, numerically_stable_near_1e9);
    tcase_add_test(tc, huge_value_does_not_poison_the_statistics);
    tcase_add_test(tc, raw_contrib_and_learning);
    tcase_add_test(tc, combine_modes);
    tcase_add_test(tc, combined_z_matches_its_definition);
    tcase_add_test(tc, false_alarms_do_not_grow_with_channels);
    tcase_add_test(tc, frozen_baseline);
    tcase_add_test(tc, frozen_constant_channel_is_named);
    tcase_add_test(tc, new_extremes);
    tcase_add_test(tc, tail_functions);
    tcase_add_test(tc, chained_after_a_detector);
    tcase_add_test(tc, option_errors);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
