/* Tests of the pca detector plugin through the SDK harness: the eigensolver and
 * the classical limits, learning marks, T^2 and Q against a direct computation,
 * contributions, dynamic lags, determinism, persistence, refused mismatches and
 * hostile model payloads, retraining. (numpy agreement: tests/integration/test_pca.py.) */
#include <edgewatch/testing.h>

#include "../../plugins/pca/pca_model.h"
#include "ewp_linalg.h"
#include "ewp_rng.h"
#include "options.h"
#include "ptest.h"
#include "state.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCH 4
static const char *const s_names[NCH] = {"a", "b", "c", "d"};
static const char *const s_other[NCH] = {"a", "b", "c", "x"};

/* n rows of NCH channels from 2 latent factors plus noise: a = f1, b = f1 + f2,
 * c = f2, d = f1 - f2 (each with 0.1 noise), so the data lie near a plane. */
static double *s_rows(size_t n, uint64_t seed)
{
    ewp_rng rng;
    ewp_rng_seed(&rng, seed);
    double *v = malloc(n * NCH * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        double f1 = ewp_rng_normal(&rng), f2 = 0.7 * ewp_rng_normal(&rng);
        double *r = v + i * NCH;
        r[0] = 10 + f1 + 0.1 * ewp_rng_normal(&rng);
        r[1] = 100 * (f1 + f2) + 10 * ewp_rng_normal(&rng);
        r[2] = -5 + f2 + 0.1 * ewp_rng_normal(&rng);
        r[3] = f1 - f2 + 0.1 * ewp_rng_normal(&rng);
    }
    return v;
}

static void s_process(ew_harness *h, size_t n, const double *values)
{
    int64_t *ts = calloc(n ? n : 1, sizeof *ts);
    int rc = ew_harness_process(h, n, ts, values);
    ck_assert_msg(rc == EW_OK, "process: %s", ew_harness_error(h));
    free(ts);
}

/* A detector over a..d with options kv (NULL-terminated pairs), trained on 500 rows. */
static ew_harness *s_trained(const char *state, const char *const *kv)
{
    ew_harness *h = ptest_open(state, NCH, s_names, kv, NULL);
    double *train = s_rows(500, 1);
    s_process(h, 500, train);
    free(train);
    ck_assert(!ew_harness_learning(h));
    return h;
}

static int s_count_files(const char *state, const char *part)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/test", state);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

START_TEST(eigensolver_decomposes_symmetric_matrices)
{
    ewp_rng rng;
    ewp_rng_seed(&rng, 3);
    for (size_t n = 1; n <= 40; n += 13) {
        double *a = malloc(n * n * sizeof *a), *v = malloc(n * n * sizeof *v);
        double *val = malloc(n * sizeof *val), *work = malloc((n * n + 2 * n) * sizeof *work);
        for (size_t i = 0; i < n; i++)
            for (size_t j = i; j < n; j++)
                a[i * n + j] = a[j * n + i] = ewp_rng_normal(&rng);
        /* Two equal eigenvalues as well: a repeated root must not stop it. */
        if (n > 2)
            a[0] = a[n + 1] = 3, a[1] = a[n] = 0;
        ck_assert_int_ge(ewp_eig_sym(a, n, val, v, work), 0);
        for (size_t j = 0; j < n; j++) {
            if (j > 0)
                ck_assert(val[j] <= val[j - 1]);
            for (size_t r = 0; r < n; r++) {
                double av = 0;
                for (size_t c = 0; c < n; c++)
                    av += a[r * n + c] * v[c * n + j];
                ck_assert_msg(fabs(av - val[j] * v[r * n + j]) < 1e-10, "A v != lambda v");
            }
            for (size_t k = 0; k < n; k++) {
                double dot = 0;
                for (size_t r = 0; r < n; r++)
                    dot += v[r * n + j] * v[r * n + k];
                ck_assert(fabs(dot - (j == k)) < 1e-12);
            }
        }
        free(a), free(v), free(val), free(work);
    }
    /* A known case: [[2, 1], [1, 2]] has eigenvalues 3 and 1. */
    double a[4] = {2, 1, 1, 2}, v[4], val[2], work[8];
    ck_assert_int_ge(ewp_eig_sym(a, 2, val, v, work), 0);
    ck_assert(fabs(val[0] - 3) < 1e-14 && fabs(val[1] - 1) < 1e-14);
    ck_assert(fabs(v[0] - M_SQRT1_2) < 1e-14 && fabs(v[2] - M_SQRT1_2) < 1e-14);
    double bad[4] = {NAN, 0, 0, 1};
    ck_assert_int_eq(ewp_eig_sym(bad, 2, val, v, work), -1);
}
END_TEST

START_TEST(mean_and_covariance_keep_precision_far_from_zero)
{
    double x[6] = {1e9 + 1, 5, 1e9 + 2, 7, 1e9 + 3, 9};
    double mean[2], cov[4];
    ewp_mean_cov(x, 3, 2, mean, cov);
    ck_assert(mean[0] == 1e9 + 2 && mean[1] == 7);
    ck_assert(cov[0] == 1 && cov[3] == 4 && cov[1] == 2 && cov[2] == 2);
}
END_TEST

START_TEST(classical_limits_match_tables)
{
    /* F(0.95; 3, 10) = 3.7083 and F(0.99; 2, 20) = 5.8489 (statistical tables): the
     * T^2 limit is k (n - 1)(n + 1) / (n (n - k)) times it. */
    double f = pca_limit_t2_f(3, 13, 0.95) / (3.0 * 12 * 14 / (13.0 * 10));
    ck_assert_msg(fabs(f - 3.7083) < 1e-3, "F = %g", f);
    f = pca_limit_t2_f(2, 22, 0.99) / (2.0 * 21 * 23 / (22.0 * 20));
    ck_assert_msg(fabs(f - 5.8489) < 1e-3, "F = %g", f);
    ck_assert(isnan(pca_limit_t2_f(5, 5, 0.99)));
    /* Q of one discarded eigenvalue l is l chi^2(1): 6.635 l at 0.99; Jackson and
     * Mudholkar's approximation is within a few per cent of it. */
    double q = pca_limit_q_jm((double[]){2.0}, 1, 0.99);
    ck_assert_msg(fabs(q / 2.0 - 6.635) < 0.3, "Q limit %g", q);
    /* Many equal ones: l chi^2(m), chi^2(0.99; 20) = 37.566. */
    double l[20];
    for (int i = 0; i < 20; i++)
        l[i] = 0.5;
    q = pca_limit_q_jm(l, 20, 0.99);
    ck_assert_msg(fabs(q / 0.5 - 37.566) < 0.5, "Q limit %g", q);
}
END_TEST

START_TEST(descriptor_schema_and_calibration)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_DETECTOR);
    ck_assert_str_eq(p->name, "pca");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
    char *dir = ptest_tmpdir("ew-pca");
    ew_harness *h = ptest_open(dir, NCH, s_names, NULL, NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, NCH + 5);
    ck_assert_str_eq(out->names[NCH], "t2");
    ck_assert_str_eq(out->names[NCH + 1], "q");
    ck_assert_str_eq(out->names[NCH + 2], "spe_t2");
    ck_assert(ew_harness_score_calibrated(h));
    ck_assert(ew_harness_learning(h));
    ew_harness_destroy(&h);
    /* An input that already has a t2 channel gets names with the node's. */
    h = ptest_open(dir, 2, (const char *[]){"t2", "z"}, NULL, NULL);
    ck_assert_str_eq(ew_harness_output(h)->names[2], "t2_test");
    ew_harness_destroy(&h);
    ptest_tmpdir_free(dir);
}
END_TEST

/* T^2 and Q of row x under the model saved in `state`, computed here directly
 * from the decoded model (not with pca_step). */
static void s_direct(const pca_model *m, const double *x, double *t2, double *q)
{
    size_t d = m->d, k = m->k;
    double z[16], t[16];
    for (size_t c = 0; c < d; c++)
        z[c] = (x[c] - m->mean[c]) / m->sd[c];
    *t2 = 0;
    for (size_t j = 0; j < k; j++) {
        t[j] = 0;
        for (size_t c = 0; c < d; c++)
            t[j] += m->p[c * k + j] * z[c];
        *t2 += t[j] * t[j] / m->lambda[j];
    }
    *q = 0;
    for (size_t c = 0; c < d; c++) {
        double e = z[c];
        for (size_t j = 0; j < k; j++)
            e -= m->p[c * k + j] * t[j];
        *q += e * e;
    }
}

static void s_load_model(const char *state, const pca_settings *s, pca_model *m)
{
    char dir[4096], err[512];
    snprintf(dir, sizeof dir, "%s/test", state);
    void *data;
    size_t len;
    int moved = 0;
    ck_assert_int_eq(state_load(dir, "pca.bin", "pca", &data, &len, &moved, err, sizeof err), 0);
    ck_assert_msg(pca_decode(data, len, s, s_names, m, err, sizeof err) == 0, "%s", err);
    free(data);
}

static const pca_settings s_default_settings = {
    .channels = NCH, .train_samples = 500, .variance = 0.9, .holdout = 0.35,
    .quantile = 0.999, .smoothing = 0.2,
};

START_TEST(learns_then_scores_t2_q_and_contributions)
{
    char *state = ptest_tmpdir("ew-pca");
    ew_harness *h = ptest_open(state, NCH, s_names, NULL, NULL);
    double *train = s_rows(500, 1);
    s_process(h, 499, train);
    ck_assert(ew_harness_learning(h));
    for (size_t i = 0; i < 499; i++)
        ck_assert_uint_eq(ew_harness_learning_flags(h)[i], 1);
    s_process(h, 1, train + 499 * NCH);
    ck_assert_uint_eq(ew_harness_learning_flags(h)[0], 1);
    ck_assert(!ew_harness_learning(h));
    ck_assert_uint_eq(ew_harness_counter(h, "pca_trainings"), 1);
    free(train);
    pca_model m;
    s_load_model(state, &s_default_settings, &m);
    ck_assert_uint_eq(m.k, 2); /* two factors explain > 90 % */
    ck_assert_uint_eq(m.rows_fit, 325);
    ck_assert_uint_eq(m.rows_limit, 175);

    /* 300 normal rows, then one that breaks the correlation (Q) and one far along
     * the model's plane (T^2). */
    double *test = s_rows(302, 2);
    test[300 * NCH + 3] += 3;    /* d alone moves: off the plane */
    test[301 * NCH + 0] += 4;    /* f1 large: a, b and d move together */
    test[301 * NCH + 1] += 400;
    test[301 * NCH + 3] += 4;
    s_process(h, 302, test);
    const double *extra = ew_harness_extra(h), *raw = ew_harness_raw(h);
    const double *score = ew_harness_scores(h), *contrib = ew_harness_contrib(h);
    const uint8_t *flag = ew_harness_flags(h);
    size_t flagged = 0;
    double st2 = m.end.t2, sq = m.end.q;
    for (size_t i = 0; i < 302; i++) {
        double t2, q;
        s_direct(&m, test + i * NCH, &t2, &q);
        ck_assert_msg(fabs(extra[i * 3] - t2) <= 1e-9 * fmax(1, t2), "row %zu T^2", i);
        ck_assert_msg(fabs(extra[i * 3 + 1] - q) <= 1e-9 * fmax(1, q), "row %zu Q", i);
        st2 = 0.2 * t2 + 0.8 * st2;
        sq = 0.2 * q + 0.8 * sq;
        double comb = fmax(st2 / m.lim_t2, sq / m.lim_q);
        ck_assert(fabs(extra[i * 3 + 2] - comb) <= 1e-9 * fmax(1, comb));
        ck_assert(raw[i] == extra[i * 3 + 2]);
        ck_assert(fabs(score[i] - comb / (comb + 1)) < 1e-15);
        ck_assert_uint_eq(flag[i], comb > 1);
        ck_assert_uint_eq(ew_harness_learning_flags(h)[i], 0);
        double sum = 0;
        for (size_t c = 0; c < NCH; c++) {
            ck_assert(contrib[i * NCH + c] >= 0);
            sum += contrib[i * NCH + c];
        }
        ck_assert_msg(fabs(sum - comb) <= 1e-9 * fmax(1, comb), "contributions sum %g != %g",
                      sum, comb);
        flagged += i < 300 && flag[i];
    }
    ck_assert_uint_le(flagged, 6);
    /* The Q outlier: flagged, and d is the channel to blame. */
    ck_assert(flag[300]);
    ck_assert(extra[300 * 3 + 1] / m.lim_q > 10);
    for (size_t c = 0; c < 3; c++)
        ck_assert(contrib[300 * NCH + 3] > contrib[300 * NCH + c]);
    ck_assert(extra[301 * 3] > 20 * m.lim_t2 / 5);
    free(test);
    pca_model_free(&m);
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
}
END_TEST

START_TEST(nonfinite_rows_are_not_learnt_nor_scored)
{
    char *state = ptest_tmpdir("ew-pca");
    ew_harness *h = ptest_open(state, NCH, s_names, (const char *[]){"train_samples", "20", NULL},
                               NULL);
    double *rows = s_rows(40, 5);
    rows[3 * NCH + 1] = NAN;
    rows[30 * NCH + 2] = INFINITY;
    s_process(h, 20, rows);
    ck_assert(ew_harness_learning(h)); /* 19 finite rows of 20 */
    ck_assert_uint_eq(ew_harness_learning_flags(h)[3], 0);
    ck_assert(isnan(ew_harness_raw(h)[3]));
    s_process(h, 20, rows + 20 * NCH);
    ck_assert(!ew_harness_learning(h));
    ck_assert_uint_eq(ew_harness_learning_flags(h)[0], 1);
    ck_assert_uint_eq(ew_harness_learning_flags(h)[1], 0);
    ck_assert(isnan(ew_harness_raw(h)[10]) && ew_harness_scores(h)[10] == 0);
    ck_assert(isnan(ew_harness_extra(h)[10 * 3]));
    ck_assert(!isnan(ew_harness_raw(h)[11]));
    ck_assert_uint_eq(ew_harness_counter(h, "pca_nonfinite_samples"), 2);
    free(rows);
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
}
END_TEST

/* The whole output of a detector over `rows`, fed in batches of `batch`; with
 * state NULL, in a fresh state folder removed afterwards. */
static double *s_outputs(const char *state, const char *const *kv, const double *rows, size_t n,
                         size_t batch)
{
    char *fresh = state ? NULL : ptest_tmpdir("ew-pca");
    ew_harness *h = ptest_open(state ? state : fresh, NCH, s_names, kv, NULL);
    double *out = malloc(n * 5 * sizeof *out);
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        s_process(h, m, rows + i * NCH);
        for (size_t k = 0; k < m; k++) {
            out[(i + k) * 5] = ew_harness_scores(h)[k];
            memcpy(out + (i + k) * 5 + 1, ew_harness_extra(h) + k * 3, 3 * sizeof *out);
            out[(i + k) * 5 + 4] = ew_harness_contrib(h)[k * NCH + 3];
        }
    }
    ew_harness_destroy(&h);
    if (fresh)
        ptest_tmpdir_free(fresh);
    return out;
}

START_TEST(deterministic_whatever_the_batches_and_after_a_restart)
{
    const char *kv[] = {"retrain_every", "150", NULL};
    double *rows = s_rows(1500, 9);
    double *a = s_outputs(NULL, kv, rows, 1500, 1500);
    double *b = s_outputs(NULL, kv, rows, 1500, 7);
    ck_assert(memcmp(a, b, 1500 * 5 * sizeof *a) == 0);
    free(a), free(b);
    /* Train, save, load: the loaded model continues exactly where training ended. */
    char *state = ptest_tmpdir("ew-pca");
    double *whole = s_outputs(NULL, NULL, rows, 1500, 1500);
    free(s_outputs(state, NULL, rows, 500, 500));
    double *loaded = s_outputs(state, NULL, rows + 500 * NCH, 1000, 64);
    ck_assert(memcmp(whole + 500 * 5, loaded, 1000 * 5 * sizeof *loaded) == 0);
    free(whole), free(loaded), free(rows);
    ptest_tmpdir_free(state);
}
END_TEST

START_TEST(mismatched_models_are_refused_or_relearnt)
{
    char *state = ptest_tmpdir("ew-pca");
    ew_harness *h = s_trained(state, NULL);
    ew_harness_destroy(&h);
    /* Same options: loaded. */
    h = ptest_open(state, NCH, s_names, NULL, NULL);
    ck_assert(!ew_harness_learning(h));
    ew_harness_destroy(&h);
    struct {
        const char *key, *value, *expect;
    } cases[] = {
        {"variance", "0.8", "variance = 0.9 in the model, 0.8 here"},
        {"lags", "1", "lags = 0 in the model, 1 here"},
        {"smoothing", "0", "smoothing"},
        {"limits", "fitted", "limits"},
        {"train_samples", "400", "train_samples"},
        {"components", "2", "components"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int rc;
        h = ptest_open(state, NCH, s_names, (const char *[]){cases[k].key, cases[k].value, NULL},
                       &rc);
        ck_assert_int_ne(rc, EW_OK);
        ck_assert_msg(strstr(ew_harness_error(h), cases[k].expect) &&
                          strstr(ew_harness_error(h), "on_model_mismatch = retrain"),
                      "%s: %s", cases[k].key, ew_harness_error(h));
        ew_harness_destroy(&h);
    }
    int rc;
    h = ptest_open(state, NCH, s_other, NULL, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "input channel 4 is 'd' in the model but 'x' here"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = ptest_open(state, 3, s_names, NULL, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ew_harness_destroy(&h);
    /* retrain: learns a new model and replaces the file. */
    h = ptest_open(state, NCH, s_other, (const char *[]){"on_model_mismatch", "retrain", NULL},
                   NULL);
    ck_assert(ew_harness_learning(h));
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
    double *train = s_rows(500, 1);
    s_process(h, 500, train);
    free(train);
    ew_harness_destroy(&h);
    h = ptest_open(state, NCH, s_other, NULL, NULL);
    ck_assert(!ew_harness_learning(h));
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
}
END_TEST

static void s_write_payload(const char *state, const void *data, size_t len)
{
    char dir[4096], err[512];
    snprintf(dir, sizeof dir, "%s/test", state);
    ck_assert_msg(state_save(dir, "pca.bin", "pca", data, len, err, sizeof err) == 0, "%s", err);
}

START_TEST(hostile_payloads_are_refused)
{
    char *state = ptest_tmpdir("ew-pca");
    ew_harness *h = s_trained(state, NULL);
    ew_harness_destroy(&h);
    char dir[4096], err[512];
    snprintf(dir, sizeof dir, "%s/test", state);
    void *data;
    size_t len;
    int moved;
    ck_assert_int_eq(state_load(dir, "pca.bin", "pca", &data, &len, &moved, err, sizeof err), 0);
    unsigned char *good = data, *bad = malloc(len + 8);
    /* Offsets: magic 0, version 8, channels 12, lags 16; after the 72-byte head
     * and d, k (80) the names (4 x (4 + 1)), then mean. */
    const size_t mean_at = 80 + NCH * 5, sd_at = mean_at + 8 * NCH, lambda_at = sd_at + 8 * NCH;
    const size_t p_at = lambda_at + 8 * 2;
    struct {
        const char *what;
        size_t at;
        unsigned char byte;
        long delta; /* length change */
    } cases[] = {
        {"truncated", 0, 0, -8},
        {"trailing bytes", 0, 0, 8},
        {"bad magic", 0, 'X', 0},
        {"future version", 8, 2, 0},
        {"huge channel count", 15, 0x7f, 0},
        {"huge lags", 19, 0x7f, 0},
        {"name with a control character", 80 + 4, 0x01, 0},
        {"NaN mean", mean_at + 7, 0x7f, 0},
        {"negative scale", sd_at + 7, 0xc0, 0},
        {"zero eigenvalue", lambda_at + 7, 0x00, 0},
        {"loadings not orthonormal", p_at + 6, 0x7f, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memset(bad, 0, len + 8);
        memcpy(bad, good, len);
        if (cases[k].delta == 0) {
            bad[cases[k].at] = cases[k].byte;
            if (strcmp(cases[k].what, "NaN mean") == 0)
                bad[cases[k].at - 1] = 0xf8;
            if (strcmp(cases[k].what, "zero eigenvalue") == 0)
                memset(bad + lambda_at, 0, 8);
        }
        s_write_payload(state, bad, (size_t)((long)len + cases[k].delta));
        int rc;
        h = ptest_open(state, NCH, s_names, NULL, &rc);
        ck_assert_msg(rc != EW_OK, "%s was accepted", cases[k].what);
        ck_assert_msg(strstr(ew_harness_error(h), "is not a valid pca model"), "%s: %s",
                      cases[k].what, ew_harness_error(h));
        ew_harness_destroy(&h);
        /* retrain learns over it instead. */
        h = ptest_open(state, NCH, s_names, (const char *[]){"on_model_mismatch", "retrain", NULL},
                       NULL);
        ck_assert_msg(ew_harness_learning(h), "%s", cases[k].what);
        ew_harness_destroy(&h);
    }
    free(bad);
    free(good);
    /* A file that fails the host's checksum is moved aside by the host and relearnt. */
    char path[4200];
    snprintf(path, sizeof path, "%s/pca.bin", dir);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, -20, SEEK_END);
    fputc(0x5a, f);
    fclose(f);
    h = ptest_open(state, NCH, s_names, NULL, NULL);
    ck_assert(ew_harness_learning(h));
    ck_assert_int_eq(s_count_files(state, "pca.bin.corrupt-"), 1);
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
}
END_TEST

/* AR(1)-like pairs: b follows a one step later; static PCA sees no link
 * between them, dynamic PCA (lags = 1) learns it. */
static double *s_lagged(size_t n, uint64_t seed, bool broken_from)
{
    ewp_rng rng;
    ewp_rng_seed(&rng, seed);
    double *v = malloc(n * 2 * sizeof *v);
    double prev = 0;
    for (size_t i = 0; i < n; i++) {
        double a = ewp_rng_normal(&rng);
        v[i * 2] = a;
        v[i * 2 + 1] = (broken_from && i >= n / 2 ? -prev : prev) + 0.05 * ewp_rng_normal(&rng);
        prev = a;
    }
    return v;
}

START_TEST(lags_learn_the_dynamics)
{
    const char *const ab[] = {"a", "b"};
    double *train = s_lagged(500, 4, false), *test = s_lagged(400, 5, true);
    size_t flagged[2][2] = {{0}};
    for (int lags = 0; lags <= 1; lags++) {
        char *state = ptest_tmpdir("ew-pca");
        ew_harness *h = ptest_open(state, 2, ab,
                                   (const char *[]){"lags", lags ? "1" : "0", "smoothing", "0",
                                                    "train_samples", "499", NULL},
                                   NULL);
        s_process(h, 500, train);
        ck_assert(!ew_harness_learning(h));
        s_process(h, 400, test);
        for (size_t i = 0; i < 400; i++)
            flagged[lags][i >= 200] += ew_harness_flags(h)[i];
        if (lags) {
            /* Contributions still sum to the statistic over the lagged columns. */
            const double *c = ew_harness_contrib(h), *raw = ew_harness_raw(h);
            for (size_t i = 0; i < 400; i++)
                ck_assert(fabs(c[2 * i] + c[2 * i + 1] - raw[i]) <= 1e-9 * fmax(1, raw[i]));
        }
        ew_harness_destroy(&h);
        ptest_tmpdir_free(state);
    }
    /* b = -a(t-1) instead of a(t-1): invisible without lags, obvious with them. */
    ck_assert_uint_le(flagged[0][1], 20);
    ck_assert_uint_ge(flagged[1][1], 180);
    ck_assert_uint_le(flagged[1][0], 5);
    free(train), free(test);
}
END_TEST

START_TEST(retrains_on_recent_normal_rows)
{
    char *state = ptest_tmpdir("ew-pca");
    ew_harness *h = ptest_open(state, NCH, s_names,
                               (const char *[]){"retrain_every", "100", "train_samples", "200",
                                                NULL},
                               NULL);
    double *rows = s_rows(1000, 6);
    s_process(h, 1000, rows);
    /* First model at 200, then every 100 scored rows once 200 normal rows are held. */
    ck_assert_uint_ge(ew_harness_counter(h, "pca_trainings"), 7);
    free(rows);
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
}
END_TEST

START_TEST(limits_options)
{
    /* fitted and theoretical limits give finite models and score. */
    const char *modes[] = {"fitted", "theoretical"};
    for (size_t k = 0; k < 2; k++) {
        char *state = ptest_tmpdir("ew-pca");
        ew_harness *h = ptest_open(state, NCH, s_names,
                                   (const char *[]){"limits", modes[k], "smoothing", "0", NULL},
                                   NULL);
        double *rows = s_rows(800, 7);
        s_process(h, 800, rows);
        size_t flagged = 0;
        for (size_t i = 0; i < 300; i++)
            flagged += ew_harness_flags(h)[500 + i];
        ck_assert_msg(flagged <= 10, "%s: %zu of 300 normal rows flagged", modes[k], flagged);
        free(rows);
        ew_harness_destroy(&h);
        ptest_tmpdir_free(state);
    }
}
END_TEST

START_TEST(constant_training_data_is_reported_and_changes_are_flagged)
{
    char *state = ptest_tmpdir("ew-pca");
    ew_harness *h = ptest_open(state, NCH, s_names, NULL, NULL);
    double *rows = calloc(700 * NCH, sizeof *rows);
    for (size_t i = 0; i < 700 * NCH; i++)
        rows[i] = 3.5;
    rows[650 * NCH + 2] = 3.6;
    s_process(h, 700, rows);
    ck_assert(!ew_harness_learning(h));
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
    for (size_t i = 500; i < 650; i++)
        ck_assert_uint_eq(ew_harness_flags(h)[i], 0);
    ck_assert(ew_harness_flags(h)[650]);
    ck_assert(ew_harness_contrib(h)[650 * NCH + 2] > 0);
    free(rows);
    ew_harness_destroy(&h);
    /* The model is saved and loads. */
    h = ptest_open(state, NCH, s_names, NULL, NULL);
    ck_assert(!ew_harness_learning(h));
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
}
END_TEST

START_TEST(option_errors)
{
    int rc;
    char *state = ptest_tmpdir("ew-pca");
    ew_harness *h = ptest_open(state, NCH, s_names,
                               (const char *[]){"train_samples", "10", "holdout", "0.05", NULL},
                               &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "raise train_samples"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = ptest_open(state, NCH, s_names, (const char *[]){"components", "4", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "no residual for Q"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = ptest_open(state, 6, (const char *[]){"a", "b", "c", "d", "e", "f"},
                   (const char *[]){"lags", "100", NULL}, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "lower lags"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    ew_harness *none = ew_harness_new(ew_plugin_entry(), NULL);
    ck_assert_int_ne(ew_harness_init(none), EW_OK);
    ew_harness_destroy(&none);
    ptest_tmpdir_free(state);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-pca");
    TCase *tc = tcase_create("pca");
    tcase_add_test(tc, eigensolver_decomposes_symmetric_matrices);
    tcase_add_test(tc, mean_and_covariance_keep_precision_far_from_zero);
    tcase_add_test(tc, classical_limits_match_tables);
    tcase_add_test(tc, descriptor_schema_and_calibration);
    tcase_add_test(tc, learns_then_scores_t2_q_and_contributions);
    tcase_add_test(tc, nonfinite_rows_are_not_learnt_nor_scored);
    tcase_add_test(tc, deterministic_whatever_the_batches_and_after_a_restart);
    tcase_add_test(tc, mismatched_models_are_refused_or_relearnt);
    tcase_add_test(tc, hostile_payloads_are_refused);
    tcase_add_test(tc, lags_learn_the_dynamics);
    tcase_add_test(tc, retrains_on_recent_normal_rows);
    tcase_add_test(tc, limits_options);
    tcase_add_test(tc, constant_training_data_is_reported_and_changes_are_flagged);
    tcase_add_test(tc, option_errors);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
