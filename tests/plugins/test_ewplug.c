/* Tests of the shared plugin library (plugins/common): timestamps, JSON numbers, rolling statistics, RNG. */
#include "ewplug.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_parse(const char *text, int64_t *ns)
{
    return ewp_time_parse(text, strlen(text), ns);
}

START_TEST(time_parse_valid)
{
    struct {
        const char *text;
        int64_t ns;
    } cases[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01 00:00:00", 0},
        {"2026-11-26T16:35:03.123456789Z", 1795710903123456789LL},
        {"2026-11-26T16:35:03,5Z", 1795710903500000000LL},
        {"2026-11-26T18:35:03.5+02:00", 1795710903500000000LL},
        {"2026-11-26T18:35:03.5+0200", 1795710903500000000LL},
        {"2026-11-26T18:35:03.5+02", 1795710903500000000LL},
        {"2024-02-29T00:00:00-05:30", 1709184600000000000LL},
        {"2000-02-29 00:00:00", 951782400000000000LL},
        {"1969-12-31 23:59:59.25", -750000000LL},
        {"2016-12-31T23:59:60Z", 1483228800000000000LL}, /* leap second = next minute */
        {"2262-04-11T23:47:16.854775807Z", INT64_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ns = 42;
        ck_assert_msg(s_parse(cases[i].text, &ns) == 0, "%s rejected", cases[i].text);
        ck_assert_msg(ns == cases[i].ns, "%s -> %lld", cases[i].text, (long long)ns);
    }
}
END_TEST

START_TEST(time_parse_invalid)
{
    const char *bad[] = {
        "", "2026-11-26", "2026-11-26T16:35", "2026-11-26T16:35:03.", "2026-11-26T16:35:03Zx",
        "2026-02-30 00:00:00", "2023-02-29 00:00:00", "1900-02-29 00:00:00", "2026-13-01 00:00:00",
        "2026-00-01 00:00:00", "2026-11-26T24:00:00Z", "2026-11-26T16:60:00Z", "2026-11-26T16:35:61",
        "2026-11-26T16:35:03+2", "2026-11-26T16:35:03+24:00", "20261126T163503Z",
        "2026-11-26_16:35:03", " 2026-11-26 16:35:03", "2263-01-01T00:00:00Z", "1e9",
        "2026-11-26T16:35:03.5.5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ns = 42;
        ck_assert_msg(s_parse(bad[i], &ns) < 0, "\"%s\" accepted", bad[i]);
        ck_assert_int_eq(ns, 42);
    }
    /* The length bounds the text: no reading past it. */
    int64_t ns;
    ck_assert_int_eq(ewp_time_parse("2026-11-26 16:35:03garbage", 19, &ns), 0);
    ck_assert_int_eq(ns, 1795710903000000000LL);
}
END_TEST

START_TEST(time_format)
{
    char buf[EWP_TIME_BUFSIZE];
    ck_assert_uint_eq(ewp_time_format(1795710903123456789LL, buf), 27);
    ck_assert_str_eq(buf, "2026-11-26T16:35:03.123456Z");
    ewp_time_format(-1, buf);
    ck_assert_str_eq(buf, "1969-12-31T23:59:59.999999Z");
    ewp_time_format(INT64_MAX, buf);
    ck_assert_str_eq(buf, "2262-04-11T23:47:16.854775Z");
    ewp_time_format(INT64_MIN, buf);
    ck_assert_str_eq(buf, "1677-09-21T00:12:43.145224Z");
    /* format -> parse is exact to the microsecond over the whole range. */
    ewp_rng rng;
    ewp_rng_seed(&rng, 99);
    for (int i = 0; i < 100000; i++) {
        int64_t ns = (int64_t)ewp_rng_next(&rng);
        int64_t us = ns / 1000 * 1000 - (ns % 1000 < 0 ? 1000 : 0);
        ewp_time_format(ns, buf);
        int64_t back;
        ck_assert_msg(s_parse(buf, &back) == 0 || us < -9223372036000000000LL, "%s", buf);
        if (us >= -9223372036000000000LL)
            ck_assert_msg(back == us, "%lld -> %s -> %lld", (long long)ns, buf, (long long)back);
    }
}
END_TEST

START_TEST(json_numbers)
{
    char buf[EWP_NUM_BUFSIZE];
    struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {-0.0, "-0"},
        {42, "42"},
        {-7, "-7"},
        {0.1, "0.1"},
        {1.0 / 3, "0.3333333333333333"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1e21, "1e+21"},
        {9007199254740992.0, "9007199254740992"},
        {-2.5e-7, "-2.5e-07"},
        {21.5, "21.5"},
        {-1013.25, "-1013.25"},
        {0.0001, "0.0001"},
        {-0.00012, "-0.00012"},
        {123456.789, "123456.789"},
        {1.23456789, "1.23456789"},
        {0.000123456789, "0.000123456789"},
        {1e14 + 0.5, "100000000000000.5"},
        {NAN, "null"},
        {INFINITY, "null"},
        {-INFINITY, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = ewp_fmt_json_number(cases[i].v, buf);
        ck_assert_str_eq(buf, cases[i].text);
        ck_assert_uint_eq(n, strlen(cases[i].text));
    }
    /* Short decimals of every size read back exactly and print as written. */
    for (int i = -99999; i <= 99999; i += 7) {
        char want[32];
        for (int d = 1; d <= 6; d++) {
            double v = i / pow(10, d);
            ewp_fmt_json_number(v, buf);
            ck_assert_msg(strtod(buf, NULL) == v, "%.17g -> %s", v, buf);
            if (i % 10 && fabs(v) >= 1e-4) {
                snprintf(want, sizeof want, "%.*f", d, v);
                ck_assert_msg(strcmp(buf, want) == 0, "%s vs %s", buf, want);
            }
        }
    }
    /* Any finite double reads back as itself. */
    ewp_rng rng;
    ewp_rng_seed(&rng, 5);
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = ewp_rng_next(&rng);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        size_t n = ewp_fmt_json_number(v, buf);
        ck_assert_uint_lt(n, EWP_NUM_BUFSIZE);
        ck_assert_msg(strtod(buf, NULL) == v, "%a -> %s", v, buf);
    }
}
END_TEST

static void s_two_pass(const double *x, size_t n, double *mean, double *var)
{
    long double m = 0, s = 0;
    for (size_t i = 0; i < n; i++)
        m += x[i];
    m /= (long double)n;
    for (size_t i = 0; i < n; i++)
        s += (x[i] - m) * (x[i] - m);
    *mean = (double)m;
    *var = n > 1 ? (double)(s / (long double)(n - 1)) : NAN;
}

START_TEST(rollvar_matches_two_pass)
{
    const size_t windows[] = {1, 2, 3, 10, 64};
    ewp_rng rng;
    ewp_rng_seed(&rng, 1);
    enum { N = 5000 };
    double *x = malloc(N * sizeof *x);
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        size_t cap = windows[w];
        ewp_rollvar rv;
        ck_assert_int_eq(ewp_rollvar_init(&rv, cap), 0);
        for (int i = 0; i < N; i++) {
            /* Level jumps and spikes, to exercise the exact recomputes. */
            x[i] = 1e6 * (i / 500 % 2) + ewp_rng_normal(&rng) + (i % 97 == 0 ? 1e4 : 0);
            ewp_rollvar_push(&rv, x[i]);
            size_t n = (size_t)i + 1 < cap ? (size_t)i + 1 : cap;
            ck_assert_uint_eq(ewp_rollvar_count(&rv), n);
            double mean, var;
            s_two_pass(x + i + 1 - n, n, &mean, &var);
            ck_assert_msg(fabs(ewp_rollvar_mean(&rv) - mean) <= 1e-9 * fmax(1, fabs(mean)),
                          "window %zu at %d: mean %.17g vs %.17g", cap, i, ewp_rollvar_mean(&rv),
                          mean);
            if (n > 1)
                ck_assert_msg(fabs(ewp_rollvar_variance(&rv) - var) <= 1e-7 * fmax(1, var),
                              "window %zu at %d: var %.17g vs %.17g", cap, i,
                              ewp_rollvar_variance(&rv), var);
            else
                ck_assert(isnan(ewp_rollvar_variance(&rv)));
        }
        ewp_rollvar_free(&rv);
    }
    free(x);
}
END_TEST

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double s_median_sorted(const double *s, size_t n)
{
    return n % 2 ? s[n / 2] : s[n / 2 - 1] + (s[n / 2] - s[n / 2 - 1]) / 2;
}

START_TEST(rollmed_matches_brute_force)
{
    const size_t windows[] = {1, 2, 3, 4, 7, 50};
    ewp_rng rng;
    ewp_rng_seed(&rng, 2);
    enum { N = 3000 };
    double *x = malloc(N * sizeof *x), tmp[64], dev[64];
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        size_t cap = windows[w];
        ewp_rollmed rm;
        ck_assert_int_eq(ewp_rollmed_init(&rm, cap), 0);
        ck_assert(isnan(ewp_rollmed_median(&rm)) && isnan(ewp_rollmed_mad(&rm)));
        for (int i = 0; i < N; i++) {
            /* Few distinct values, so ties are common. */
            x[i] = (double)ewp_rng_below(&rng, 12) - 4 + (i % 50 == 0 ? 1000 : 0);
            ewp_rollmed_push(&rm, x[i]);
            size_t n = (size_t)i + 1 < cap ? (size_t)i + 1 : cap;
            memcpy(tmp, x + i + 1 - n, n * sizeof *tmp);
            qsort(tmp, n, sizeof *tmp, s_cmp);
            double med = s_median_sorted(tmp, n), sum = 0;
            for (size_t k = 0; k < n; k++) {
                dev[k] = fabs(tmp[k] - med);
                sum += dev[k];
            }
            qsort(dev, n, sizeof *dev, s_cmp);
            ck_assert_uint_eq(ewp_rollmed_count(&rm), n);
            ck_assert_msg(ewp_rollmed_median(&rm) == med, "window %zu at %d", cap, i);
            ck_assert_msg(ewp_rollmed_mad(&rm) == s_median_sorted(dev, n), "window %zu at %d: %g vs %g",
                          cap, i, ewp_rollmed_mad(&rm), s_median_sorted(dev, n));
            ck_assert(fabs(ewp_rollmed_meanad(&rm) - sum / (double)n) < 1e-9);
        }
        ewp_rollmed_free(&rm);
    }
    free(x);
}
END_TEST

START_TEST(rng_is_seeded_and_uniform)
{
    ewp_rng a, b, c;
    ewp_rng_seed(&a, 123);
    ewp_rng_seed(&b, 123);
    ewp_rng_seed(&c, 124);
    int same = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = ewp_rng_next(&a);
        ck_assert(x == ewp_rng_next(&b));
        same += x == ewp_rng_next(&c);
    }
    ck_assert_int_eq(same, 0);
    double sum = 0;
    int buckets[10] = {0};
    for (int i = 0; i < 1000000; i++) {
        double u = ewp_rng_uniform(&a);
        ck_assert(u >= 0 && u < 1);
        sum += u;
        buckets[(int)(u * 10)]++;
        ck_assert(ewp_rng_below(&a, 7) < 7);
    }
    ck_assert_double_eq_tol(sum / 1e6, 0.5, 0.002);
    for (int k = 0; k < 10; k++)
        ck_assert_msg(abs(buckets[k] - 100000) < 1500, "bucket %d: %d", k, buckets[k]);
}
END_TEST

START_TEST(rng_normal_moments_and_tails)
{
    ewp_rng r;
    ewp_rng_seed(&r, 77);
    enum { N = 4000000 };
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    int beyond1 = 0, beyond3 = 0, beyond4 = 0, positive = 0;
    for (int i = 0; i < N; i++) {
        double x = ewp_rng_normal(&r);
        s1 += x;
        s2 += x * x;
        s3 += x * x * x;
        s4 += x * x * x * x;
        beyond1 += fabs(x) > 1;
        beyond3 += fabs(x) > 3;
        beyond4 += fabs(x) > 4;
        positive += x > 0;
    }
    ck_assert_double_eq_tol(s1 / N, 0, 0.002);
    ck_assert_double_eq_tol(s2 / N, 1, 0.003);
    ck_assert_double_eq_tol(s3 / N, 0, 0.01);
    ck_assert_double_eq_tol(s4 / N, 3, 0.03);
    /* P(|x| > 1) = 0.3173, P(|x| > 3) = 0.0026998, P(|x| > 4) = 6.334e-5 */
    ck_assert_double_eq_tol((double)beyond1 / N, 0.31731, 0.001);
    ck_assert_double_eq_tol((double)beyond3 / N, 0.0026998, 0.0001);
    ck_assert_msg(beyond4 > 200 && beyond4 < 320, "%d beyond 4 sd", beyond4);
    ck_assert_double_eq_tol((double)positive / N, 0.5, 0.001);
}
END_TEST

START_TEST(report_rate_limit)
{
    for (uint64_t n = 1; n <= 10; n++)
        ck_assert(ewp_should_report(n));
    ck_assert(!ewp_should_report(11));
    ck_assert(!ewp_should_report(999));
    ck_assert(ewp_should_report(1000));
    ck_assert(!ewp_should_report(1001));
    ck_assert(ewp_should_report(5000));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-ewplug");
    TCase *tc = tcase_create("ewplug");
    tcase_add_test(tc, time_parse_valid);
    tcase_add_test(tc, time_parse_invalid);
    tcase_add_test(tc, time_format);
    tcase_add_test(tc, json_numbers);
    tcase_add_test(tc, rollvar_matches_two_pass);
    tcase_add_test(tc, rollmed_matches_brute_force);
    tcase_add_test(tc, rng_is_seeded_and_uniform);
    tcase_add_test(tc, rng_normal_moments_and_tails);
    tcase_add_test(tc, report_rate_limit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
