/* Tests of the iforest detector plugin through the SDK harness: learning on a
 * thread or in the batch, windows (shingles), retraining, outlier separation,
 * determinism, persistence, hostile model files. */
#include <edgewatch/testing.h>

#include "ewp_rng.h"
#include "options.h"
#include "ptest.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const s_two[] = {"a", "b"};
static const char *const s_three[] = {"a", "b", "c"};

/* Removes a folder of ptest_tmpdir, asserting it all went. */
static void s_rmtree(char *dir)
{
    ck_assert_int_eq(ptest_tmpdir_free(dir), 0);
}

/* A harness over nch channels with options (NULL-terminated pairs); returns the
 * init code in *rc (or asserts success when rc is NULL). */
static ew_harness *s_make(const char *state_dir, size_t nch, const char *const *names,
                          const char *const *kv, int *rc)
{
    return ptest_open(state_dir, nch, names, kv, rc);
}

/* n rows of 2 standard normal values (seeded). */
static double *s_normal(size_t n, size_t nch, uint64_t seed)
{
    ewp_rng *rng = malloc(sizeof *rng);
    ewp_rng_seed(rng, seed);
    double *v = malloc(n * nch * sizeof *v);
    for (size_t i = 0; i < n * nch; i++)
        v[i] = ewp_rng_normal(rng);
    free(rng);
    return v;
}

static void s_process(ew_harness *h, size_t n, const double *values)
{
    int64_t *ts = calloc(n ? n : 1, sizeof *ts);
    int rc = ew_harness_process(h, n, ts, values);
    ck_assert_msg(rc == EW_OK, "process: %s", ew_harness_error(h));
    free(ts);
}

/* Feeds one normal row at a time until the model is ready (bounded: 60 s). */
static void s_wait_ready(ew_harness *h, size_t nch)
{
    double row[8] = {0};
    ck_assert_uint_le(nch, 8);
    for (int i = 0; i < 60000 && ew_harness_learning(h); i++) {
        s_process(h, 1, row);
        if (ew_harness_learning(h))
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    ck_assert_msg(!ew_harness_learning(h), "the model was not ready within 60 s");
}

/* A trained 2-channel detector (train_samples 500, 50 trees, seed as given, no
 * retraining, contamination 0: score = the isolation score, threshold 0.5). */
static ew_harness *s_trained(const char *state_dir, const char *seed)
{
    ew_harness *h = s_make(state_dir, 2, s_two,
                           (const char *[]){"train_samples", "500", "trees", "50", "seed", seed,
                                            "retrain_every", "0", "contamination", "0", NULL},
                           NULL);
    double *train = s_normal(500, 2, 7);
    s_process(h, 500, train);
    free(train);
    s_wait_ready(h, 2);
    return h;
}

/* Test rows: 200 normal ones, then 4 far outliers. */
static double *s_test_rows(size_t *n)
{
    double *v = s_normal(204, 2, 99);
    const double out[8] = {8, 8, -7, 6, 0, 9, 10, -10};
    memcpy(v + 400, out, sizeof out);
    *n = 204;
    return v;
}

static double *s_scores_of(ew_harness *h, size_t n, const double *rows)
{
    s_process(h, n, rows);
    double *s = malloc(n * sizeof *s);
    memcpy(s, ew_harness_scores(h), n * sizeof *s);
    return s;
}

START_TEST(descriptor_and_schema)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_DETECTOR);
    ck_assert_str_eq(p->name, "iforest");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 2, s_two, NULL, NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 5);
    ck_assert_str_eq(out->names[2], "path_length");
    ck_assert_int_eq(out->score_index, 3);
    ck_assert_int_eq(out->anomaly_index, 4);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

START_TEST(learning_state_then_ready)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "500", NULL}, NULL);
    ck_assert(ew_harness_learning(h));
    double *train = s_normal(500, 2, 7);
    s_process(h, 500, train);
    /* While the forest is pending: marked learning, score 0, no anomaly, no
     * path length, no raw statistic. */
    for (size_t i = 0; i < 500; i++) {
        ck_assert(ew_harness_scores(h)[i] == 0 && ew_harness_flags(h)[i] == 0);
        ck_assert(isnan(ew_harness_extra(h)[i]) && isnan(ew_harness_raw(h)[i]));
        ck_assert_uint_eq(ew_harness_learning_flags(h)[i], 1);
    }
    /* The first forest scores from the next sample on: the stream waits for it. */
    s_process(h, 10, train);
    ck_assert(!ew_harness_learning(h));
    for (size_t i = 0; i < 10; i++) {
        ck_assert_uint_eq(ew_harness_learning_flags(h)[i], 0);
        ck_assert(isfinite(ew_harness_raw(h)[i]) && ew_harness_scores(h)[i] > 0);
    }
    ck_assert_uint_eq(ew_harness_counter(h, "iforest_trainings"), 1);
    char path[512];
    snprintf(path, sizeof path, "%s/test/forest.bin", dir);
    ck_assert_msg(access(path, R_OK) == 0, "%s not saved", path);
    free(train);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

START_TEST(separates_outliers)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_trained(dir, "1");
    size_t n;
    double *rows = s_test_rows(&n);
    s_process(h, n, rows);
    const double *score = ew_harness_scores(h), *path = ew_harness_extra(h);
    const uint8_t *flag = ew_harness_flags(h);
    double max_normal = 0, mean_normal = 0;
    for (size_t i = 0; i < 200; i++) {
        ck_assert(score[i] > 0 && score[i] < 1);
        mean_normal += score[i] / 200;
        if (score[i] > max_normal)
            max_normal = score[i];
        /* score = 2^(-path / c(256)) */
        ck_assert_double_eq_tol(score[i], pow(2, -path[i] / (2 * (log(255) + 0.5772156649015329) -
                                                            2.0 * 255 / 256)), 1e-12);
    }
    /* scikit-learn on such data (2-D normal, 500 samples, 50 trees) gives a
     * mean score of 0.456 to 0.481 over five seeds, and flags about a quarter of
     * the normal samples at its 'auto' threshold 0.5 (hence contamination). */
    ck_assert_msg(mean_normal > 0.42 && mean_normal < 0.5, "mean normal score %g", mean_normal);
    for (size_t i = 200; i < 204; i++) {
        ck_assert_msg(score[i] > 0.6 && flag[i] == 1, "outlier %zu: score %g", i, score[i]);
        size_t above = 0;
        for (size_t k = 0; k < 200; k++)
            above += score[i] > score[k];
        ck_assert_msg(above >= 196, "outlier %zu (%g) above only %zu of 200 normal samples (max %g)",
                      i, score[i], above, max_normal);
    }
    free(rows);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

/* raw keeps growing with the distance from the training data where the score
 * saturates; contrib names the channel that moved. */
START_TEST(raw_does_not_saturate_and_contrib_names_the_channel)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_trained(dir, "2");
    /* Channel b moves further and further out; a stays at its median. */
    const double far[] = {0, 6, 0, 10, 0, 100, 0, 1000, 0, 1e6};
    s_process(h, 5, far);
    const double *raw = ew_harness_raw(h), *score = ew_harness_scores(h);
    const double *contrib = ew_harness_contrib(h);
    for (size_t i = 0; i < 5; i++) {
        ck_assert_msg(isfinite(raw[i]), "row %zu raw %g", i, raw[i]);
        if (i > 0)
            ck_assert_msg(raw[i] > raw[i - 1] * 1.5, "raw %g then %g", raw[i - 1], raw[i]);
        ck_assert(contrib[i * 2] >= 0 && contrib[i * 2 + 1] > 0);
        ck_assert_msg(contrib[i * 2 + 1] > 5 * contrib[i * 2], "row %zu: contrib a %g, b %g", i,
                      contrib[i * 2], contrib[i * 2 + 1]);
        ck_assert_uint_eq(ew_harness_learning_flags(h)[i], 0);
    }
    /* The isolation score is bounded: from 100 on it barely moves. */
    ck_assert_double_lt(score[4] - score[2], 0.05);
    ck_assert_double_gt(raw[4], 1000 * raw[2] / 100);
    /* Channel a moves instead: the share goes to a. */
    const double fa[] = {50, 0};
    s_process(h, 1, fa);
    ck_assert(ew_harness_contrib(h)[0] > 5 * ew_harness_contrib(h)[1]);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

/* A plant register that never moves, and one that takes few values, next to
 * a noisy measurement: the default forest flags about its contamination, not
 * most of the samples. */
START_TEST(constant_and_repeated_registers_are_not_flagged)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 3, s_three, NULL, NULL);
    const size_t n = 5000;
    double *v = s_normal(n, 3, 17);
    for (size_t i = 0; i < n; i++) {
        v[i * 3 + 1] = 1500;                            /* a setpoint register */
        v[i * 3 + 2] = (double)((i * 7919) % 10 < 8 ? 3 : 4); /* mostly 3, sometimes 4 */
    }
    s_process(h, n, v);
    size_t flagged = 0, scored = 0;
    for (size_t i = 0; i < n; i++) {
        scored += !ew_harness_learning_flags(h)[i];
        flagged += ew_harness_flags(h)[i];
    }
    ck_assert_uint_eq(scored, n - 500);
    ck_assert_msg(flagged < scored / 20, "%zu of %zu flagged", flagged, scored);
    /* The register moving is seen in the raw statistic, named in contrib. */
    double step[3] = {0, 1600, 3};
    s_process(h, 1, step);
    ck_assert_double_gt(ew_harness_raw(h)[0], 1.0);
    ck_assert(ew_harness_contrib(h)[1] > ew_harness_contrib(h)[0] &&
              ew_harness_contrib(h)[1] > ew_harness_contrib(h)[2]);
    free(v);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

/* The default (contamination 0.005): a learnt forest's own score is 0.5 at the
 * limit learnt on its training rows (depth and distance beyond the fences);
 * about that share of new normal rows is flagged, far outliers are; a restart
 * keeps the calibration. */
START_TEST(calibrated_score_is_half_at_the_learnt_limit)
{
    char *dir = ptest_tmpdir("ew-iforest");
    const char *const kv[] = {"retrain_every", "0", NULL};
    ew_harness *h = s_make(dir, 2, s_two, kv, NULL);
    /* Frozen: its own score is declared calibrated; retrained (the default):
     * left to the host's likelihood. */
    ck_assert(ew_harness_score_calibrated(h));
    ew_harness *r = s_make(dir, 2, (const char *[]){"x", "y"}, NULL, NULL);
    ck_assert(!ew_harness_score_calibrated(r));
    ew_harness_destroy(&r);
    double *v = s_normal(4000, 2, 23);
    s_process(h, 500, v);
    s_process(h, 3000, v + 1000);
    const double *score = ew_harness_scores(h), *raw = ew_harness_raw(h);
    size_t flagged = 0;
    double max_normal = 0;
    for (size_t i = 0; i < 3000; i++) {
        flagged += ew_harness_flags(h)[i];
        ck_assert_uint_eq(ew_harness_flags(h)[i], score[i] > 0.5);
        ck_assert(isfinite(raw[i]) && score[i] > 0 && score[i] < 1);
        max_normal = fmax(max_normal, score[i]);
    }
    ck_assert_msg(flagged > 0 && flagged < 3000 / 50, "%zu of 3000 normal rows flagged", flagged);
    double *before = malloc(3000 * sizeof *before);
    memcpy(before, score, 3000 * sizeof *before);
    size_t n;
    double *rows = s_test_rows(&n);
    s_process(h, n, rows);
    for (size_t i = 200; i < 204; i++)
        ck_assert_msg(ew_harness_flags(h)[i] && ew_harness_scores(h)[i] > max_normal,
                      "outlier %zu: score %g", i, ew_harness_scores(h)[i]);
    ew_harness_destroy(&h);
    h = s_make(dir, 2, s_two, kv, NULL);
    ck_assert(!ew_harness_learning(h));
    s_process(h, 3000, v + 1000);
    ck_assert(memcmp(before, ew_harness_scores(h), 3000 * sizeof *before) == 0);
    ew_harness_destroy(&h);
    free(rows);
    free(before);
    free(v);
    s_rmtree(dir);
}
END_TEST

START_TEST(deterministic_per_seed)
{
    char *d1 = ptest_tmpdir("ew-iforest"), *d2 = ptest_tmpdir("ew-iforest"),
         *d3 = ptest_tmpdir("ew-iforest");
    ew_harness *a = s_trained(d1, "5"), *b = s_trained(d2, "5"), *c = s_trained(d3, "6");
    size_t n;
    double *rows = s_test_rows(&n);
    double *sa = s_scores_of(a, n, rows), *sb = s_scores_of(b, n, rows), *sc = s_scores_of(c, n, rows);
    ck_assert(memcmp(sa, sb, n * sizeof *sa) == 0);
    ck_assert(memcmp(sa, sc, n * sizeof *sa) != 0);
    free(sa);
    free(sb);
    free(sc);
    free(rows);
    ew_harness_destroy(&a);
    ew_harness_destroy(&b);
    ew_harness_destroy(&c);
    s_rmtree(d1);
    s_rmtree(d2);
    s_rmtree(d3);
}
END_TEST

START_TEST(persistence_round_trip)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_trained(dir, "3");
    size_t n;
    double *rows = s_test_rows(&n);
    double *before = s_scores_of(h, n, rows);
    ew_harness_destroy(&h);
    /* A restart: ready at once, the same scores from the first sample. */
    h = s_make(dir, 2, s_two,
               (const char *[]){"train_samples", "500", "trees", "50", "seed", "3", "retrain_every",
                                "0", "contamination", "0", NULL},
               NULL);
    ck_assert(!ew_harness_learning(h));
    double *after = s_scores_of(h, n, rows);
    ck_assert(memcmp(before, after, n * sizeof *before) == 0);
    ck_assert_uint_eq(ew_harness_counter(h, "iforest_trainings"), 0);
    free(before);
    free(after);
    free(rows);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

/* Lists the entries of dir whose name contains `part`. */
static int s_count_files(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int count = 0;
    for (struct dirent *e; (e = readdir(d));)
        count += strstr(e->d_name, part) != NULL;
    closedir(d);
    return count;
}

START_TEST(corrupt_state_is_moved_aside_and_relearnt)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_trained(dir, "1");
    ew_harness_destroy(&h);
    char path[600], folder[512];
    snprintf(folder, sizeof folder, "%s/test", dir);
    snprintf(path, sizeof path, "%s/forest.bin", folder);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 200, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(c ^ 0x55, f);
    fclose(f);
    h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "500", "trees", "50",
                                              "retrain_every", "0", NULL},
               NULL);
    ck_assert(ew_harness_learning(h));
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
    ck_assert_int_eq(s_count_files(folder, ".corrupt-"), 1);
    double *train = s_normal(500, 2, 7);
    s_process(h, 500, train);
    s_wait_ready(h, 2);
    ck_assert_msg(access(path, R_OK) == 0, "relearnt model not saved");
    free(train);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

/* A saved model records its channels and the options that shaped it: another
 * set is refused at start, naming what changed and what to do, or relearnt
 * with on_model_mismatch = retrain. */
START_TEST(saved_model_of_other_settings_is_refused_or_relearnt)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_trained(dir, "1");
    ew_harness_destroy(&h);
    int rc;
    const char *const same[] = {"train_samples", "500", "trees", "50", "seed", "1",
                                "retrain_every", "0", "contamination", "0", NULL};
    h = s_make(dir, 3, s_three, same, &rc);
    ck_assert_int_ne(rc, EW_OK);
    const char *err = ew_harness_error(h);
    ck_assert_msg(strstr(err, "channels (saved a,b; now a,b,c)") &&
                      strstr(err, "delete the node's state folder") &&
                      strstr(err, "on_model_mismatch = retrain"),
                  "%s", err);
    ew_harness_destroy(&h);
    /* Same count, other order: refused too. */
    h = s_make(dir, 2, (const char *[]){"b", "a"}, same, &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "channels (saved a,b; now b,a)"), "%s",
                  ew_harness_error(h));
    ew_harness_destroy(&h);
    /* An option that shapes the forest. */
    h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "500", "trees", "60", "seed", "1",
                                              "retrain_every", "0", "contamination", "0", NULL},
               &rc);
    ck_assert_int_ne(rc, EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "trees (saved 50, now 60)"), "%s",
                  ew_harness_error(h));
    ew_harness_destroy(&h);
    /* An option that does not (retrain_every, threshold): loaded. */
    h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "500", "trees", "50", "seed", "1",
                                              "retrain_every", "300", "threshold", "0.7",
                                              "contamination", "0", NULL},
               NULL);
    ck_assert(!ew_harness_learning(h));
    ew_harness_destroy(&h);
    /* on_model_mismatch = retrain: a warning, then learnt anew. */
    h = s_make(dir, 3, s_three, (const char *[]){"train_samples", "500", "on_model_mismatch",
                                                "retrain", NULL}, NULL);
    ck_assert(ew_harness_learning(h));
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

/* --- model files ----------------------------------------------------------- */

typedef struct s_buf {
    unsigned char b[8192];
    size_t n;
} s_buf;

static void s_u32(s_buf *m, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        m->b[m->n++] = (unsigned char)(v >> (8 * i));
}

static void s_u64(s_buf *m, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        m->b[m->n++] = (unsigned char)(v >> (8 * i));
}

static void s_f64(s_buf *m, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    s_u64(m, u);
}

static void s_node(s_buf *m, int32_t left, int32_t right, int32_t feature, double thr, uint64_t n)
{
    s_u32(m, (uint32_t)left);
    s_u32(m, (uint32_t)right);
    s_u32(m, (uint32_t)feature);
    s_u32(m, 0);
    s_f64(m, thr);
    s_u64(m, n);
}

static void s_header(s_buf *m, uint32_t flags, uint32_t nf, uint32_t trees, uint64_t psi, double thr)
{
    memcpy(m->b, "EWIFORST", 8);
    m->n = 8;
    s_u32(m, 1);
    s_u32(m, flags);
    s_u32(m, nf);
    s_u32(m, trees);
    s_u64(m, psi);
    s_f64(m, thr);
    s_u64(m, 0);
}

/* One tree over 2 features: root splits a <= 0.5 into a leaf of 1 sample
 * (left) and a leaf of 3 (right); sample size 4. */
static void s_small_model(s_buf *m)
{
    s_header(m, 0, 2, 1, 4, 0.5);
    s_u32(m, 3);
    s_u32(m, 0);
    s_node(m, 1, 2, 0, 0.5, 4);
    s_node(m, -1, -1, -2, -2, 1);
    s_node(m, -1, -1, -2, -2, 3);
}

static char *s_write(const char *dir, const char *name, const void *data, size_t len)
{
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

/* Init with model = the bytes given; returns the init code, error text in err. */
static int s_try_model(const char *dir, const void *data, size_t len, char *err, size_t errlen)
{
    char *path = s_write(dir, "model.bin", data, len);
    int rc;
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"model", path, NULL}, &rc);
    snprintf(err, errlen, "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    free(path);
    return rc;
}

static double s_c(double n)
{
    return 2 * (log(n - 1) + 0.5772156649015329) - 2 * (n - 1) / n;
}

START_TEST(hand_made_model_scores_exactly)
{
    char *dir = ptest_tmpdir("ew-iforest");
    s_buf m;
    s_small_model(&m);
    char *path = s_write(dir, "model.bin", m.b, m.n);
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"model", path, NULL}, NULL);
    ck_assert(!ew_harness_learning(h));
    const double rows[] = {0, 5, 1, 5, 0.5, 0, NAN, 0};
    s_process(h, 4, rows);
    const double *score = ew_harness_scores(h), *path_len = ew_harness_extra(h);
    /* left leaf: depth 1 + c(1) = 1; right leaf: depth 1 + c(3) */
    ck_assert(path_len[0] == 1.0 && path_len[2] == 1.0);
    ck_assert_double_eq_tol(path_len[1], 1 + s_c(3), 1e-15);
    ck_assert_double_eq_tol(score[0], pow(2, -1 / s_c(4)), 1e-15);
    ck_assert_double_eq_tol(score[1], pow(2, -(1 + s_c(3)) / s_c(4)), 1e-15);
    ck_assert_uint_eq(ew_harness_flags(h)[0], score[0] > 0.5);
    /* NaN: score 0, no flag, no path length, counted. */
    ck_assert(score[3] == 0 && ew_harness_flags(h)[3] == 0 && isnan(path_len[3]));
    ck_assert_uint_eq(ew_harness_counter(h, "iforest_nonfinite_samples"), 1);
    /* A model file is read only: nothing goes to the state folder. */
    char state[512];
    snprintf(state, sizeof state, "%s/test/forest.bin", dir);
    ck_assert(access(state, F_OK) != 0);
    ew_harness_destroy(&h);
    free(path);
    s_rmtree(dir);
}
END_TEST

START_TEST(hostile_model_files_are_rejected)
{
    char *dir = ptest_tmpdir("ew-iforest");
    char err[512];
    s_buf good;
    s_small_model(&good);
    /* Every truncation. */
    for (size_t len = 0; len < good.n; len++) {
        int rc = s_try_model(dir, good.b, len, err, sizeof err);
        ck_assert_msg(rc != EW_OK, "truncated to %zu bytes but accepted", len);
        ck_assert_msg(strstr(err, "model file") && strstr(err, "export-sklearn-iforest"), "%s", err);
    }
    ck_assert_int_eq(s_try_model(dir, good.b, good.n, err, sizeof err), EW_OK);

    struct {
        const char *what, *expect;
        size_t at;      /* byte to overwrite */
        uint32_t value; /* with this u32 */
    } cases[] = {
        {"bad magic", "bad magic", 0, 0x41414141},
        {"future version", "version", 8, 4},
        {"unknown flag", "flags", 12, 4},
        {"huge tree count", "truncated", 20, 1000000},
        {"huge node count", "claims", 48, 0x7fffffff},
        {"left child out of range", "not below", 56, 7},
        {"child is the root (cycle)", "reached twice", 56, 0},
        {"both children the same", "reached twice", 60, 1},
        {"one child only", "one child", 60, 0xffffffff},
        {"feature out of range", "feature", 64, 2},
        {"zero features", "out of range", 16, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        s_buf m = good;
        for (int i = 0; i < 4; i++)
            m.b[cases[k].at + i] = (unsigned char)(cases[k].value >> (8 * i));
        int rc = s_try_model(dir, m.b, m.n, err, sizeof err);
        ck_assert_msg(rc != EW_OK, "%s accepted", cases[k].what);
        ck_assert_msg(strstr(err, cases[k].expect), "%s: %s", cases[k].what, err);
    }
    /* Trailing bytes; a NaN threshold; an unreachable node. */
    s_buf m = good;
    m.b[m.n++] = 0;
    ck_assert(s_try_model(dir, m.b, m.n, err, sizeof err) != EW_OK && strstr(err, "trailing"));
    m = good;
    m.n = 72;
    s_f64(&m, NAN);
    m.n = good.n;
    ck_assert(s_try_model(dir, m.b, m.n, err, sizeof err) != EW_OK && strstr(err, "NaN"));
    s_header(&m, 0, 2, 1, 4, 0.5);
    s_u32(&m, 3);
    s_u32(&m, 0);
    s_node(&m, -1, -1, -2, -2, 4);
    s_node(&m, -1, -1, -2, -2, 1);
    s_node(&m, -1, -1, -2, -2, 3);
    ck_assert(s_try_model(dir, m.b, m.n, err, sizeof err) != EW_OK && strstr(err, "not reachable"));
    /* A chain deeper than the scorer allows: node 2i splits into the leaf 2i+1
     * and node 2i+2, 70 times. */
    s_header(&m, 0, 2, 1, 4, 0.5);
    s_u32(&m, 2 * 70 + 1);
    s_u32(&m, 0);
    for (int32_t i = 0; i < 70; i++) {
        s_node(&m, 2 * i + 1, 2 * i + 2, 0, 0.5, 2);
        s_node(&m, -1, -1, -2, -2, 1);
    }
    s_node(&m, -1, -1, -2, -2, 1);
    ck_assert(s_try_model(dir, m.b, m.n, err, sizeof err) != EW_OK);
    ck_assert_msg(strstr(err, "deeper than 64"), "%s", err);
    /* A model for other channels. */
    s_small_model(&m);
    m.b[16] = 3;
    ck_assert(s_try_model(dir, m.b, m.n, err, sizeof err) != EW_OK && strstr(err, "expects 3"));
    /* No file at all. */
    int rc;
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"model", "/nonexistent/m.bin", NULL}, &rc);
    ck_assert(rc != EW_OK && strstr(ew_harness_error(h), "cannot open"));
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

START_TEST(nan_rows_are_scored_zero_and_not_learnt)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "100", "sample_size",
                                                          "64", NULL}, NULL);
    double *v = s_normal(200, 2, 1);
    for (size_t i = 0; i < 200; i += 2)
        v[i * 2 + (i % 4 == 0)] = (i % 8 == 0) ? INFINITY : NAN;
    s_process(h, 200, v);
    /* 100 finite rows: training has just started, not finished with NaN rows. */
    ck_assert_uint_eq(ew_harness_counter(h, "iforest_nonfinite_samples"), 100);
    s_wait_ready(h, 2);
    s_process(h, 200, v);
    for (size_t i = 0; i < 200; i++) {
        if (i % 2 == 0)
            ck_assert(ew_harness_scores(h)[i] == 0 && isnan(ew_harness_extra(h)[i]));
        else
            ck_assert(ew_harness_scores(h)[i] > 0);
    }
    free(v);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

START_TEST(contamination_sets_the_quantile)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "1000",
                                                          "contamination", "0.1",
                                                          "retrain_every", "0", NULL}, NULL);
    double *train = s_normal(1000, 2, 11);
    s_process(h, 1000, train);
    s_wait_ready(h, 2);
    s_process(h, 1000, train);
    size_t flagged = 0;
    for (size_t i = 0; i < 1000; i++)
        flagged += ew_harness_flags(h)[i];
    ck_assert_msg(flagged >= 95 && flagged <= 100, "%zu of 1000 training samples flagged", flagged);
    ew_harness_destroy(&h);
    /* The learnt threshold is saved with the model. */
    h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "1000", "contamination", "0.1",
                                              "retrain_every", "0", NULL}, NULL);
    s_process(h, 1000, train);
    size_t again = 0;
    for (size_t i = 0; i < 1000; i++)
        again += ew_harness_flags(h)[i];
    ck_assert_uint_eq(again, flagged);
    free(train);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

START_TEST(retrains_on_recent_normal_samples)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "300", "trees", "20",
                                                          "retrain_every", "500",
                                                          "learn_anomalies", "false", NULL},
                           NULL);
    double *v = s_normal(300, 2, 5);
    s_process(h, 300, v);
    s_wait_ready(h, 2);
    /* A level shift: outliers, which stay out of the retraining reservoir. */
    double *shifted = s_normal(300, 2, 6);
    for (size_t i = 0; i < 300; i++)
        shifted[i * 2] += 20;
    s_process(h, 300, shifted);
    ck_assert_uint_eq(ew_harness_flags(h)[299], 1);
    for (int k = 0; k < 60000 && ew_harness_counter(h, "iforest_trainings") < 2; k++) {
        s_process(h, 100, v); /* normal rows keep the reservoir filling */
        if (ew_harness_counter(h, "iforest_trainings") < 2)
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    ck_assert_uint_ge(ew_harness_counter(h, "iforest_trainings"), 2);
    ck_assert(!ew_harness_learning(h)); /* retraining is not `learning`: it keeps scoring */
    free(v);
    free(shifted);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

START_TEST(flush_waits_for_training_and_saves)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "500", NULL}, NULL);
    double *v = s_normal(500, 2, 5);
    s_process(h, 500, v);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert(!ew_harness_learning(h));
    char path[512];
    snprintf(path, sizeof path, "%s/test/forest.bin", dir);
    ck_assert(access(path, R_OK) == 0);
    free(v);
    ew_harness_destroy(&h);
    /* Destroy while a training runs: stops it, nothing leaks (ASan checks). */
    unlink(path);
    h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "100000", "trees", "1000", NULL},
               NULL);
    v = s_normal(100000, 2, 5);
    s_process(h, 100000, v);
    ew_harness_destroy(&h);
    free(v);
    s_rmtree(dir);
}
END_TEST

/* Inode of a file (a state file is replaced by rename at each save), 0 if none. */
static ino_t s_inode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* Retrained forests are saved at most once a minute (flash wear); the end of
 * the stream saves the latest. */
START_TEST(retrained_forests_are_saved_at_most_once_a_minute)
{
    char *dir = ptest_tmpdir("ew-iforest");
    char path[512];
    snprintf(path, sizeof path, "%s/test/forest.bin", dir);
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "200", "sample_size", "128",
                                                          "retrain_every", "100", "background",
                                                          "false", NULL},
                           NULL);
    double *v = s_normal(1200, 2, 41);
    s_process(h, 201, v); /* the first forest scores from sample 200 on */
    ino_t first = s_inode(path);
    ck_assert(first != 0);
    s_process(h, 1000, v + 400);
    ck_assert_uint_ge(ew_harness_counter(h, "iforest_trainings"), 10);
    ck_assert(s_inode(path) == first); /* ten retrainings, no save */
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert(s_inode(path) != first && s_inode(path) != 0);
    ew_harness_destroy(&h);
    free(v);
    s_rmtree(dir);
}
END_TEST

/* A stop (SIGTERM) while a long first training runs: flush waits about a
 * second, then abandons it; nothing is saved. A stop during a short one waits
 * for it and saves it. */
START_TEST(stop_abandons_a_long_training_but_waits_for_a_short_one)
{
    char *dir = ptest_tmpdir("ew-iforest");
    char path[512];
    snprintf(path, sizeof path, "%s/test/forest.bin", dir);
    /* Each tree walks all the training samples once: 20,000 trees x 500,000
     * samples take many seconds, in 20,000 x 31 nodes (20 MB). */
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "500000", "trees",
                                                          "20000", "sample_size", "16", NULL},
                           NULL);
    double *v = s_normal(500000, 2, 5);
    s_process(h, 500000, v);
    ck_assert(ew_harness_learning(h));
    ew_harness_request_stop(h);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert(ew_harness_learning(h));
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 1);
    ck_assert(access(path, F_OK) != 0);
    ew_harness_destroy(&h);

    h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "500", NULL}, NULL);
    s_process(h, 500, v);
    ew_harness_request_stop(h);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert(!ew_harness_learning(h));
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 0);
    ck_assert(access(path, R_OK) == 0);
    ew_harness_destroy(&h);
    free(v);
    s_rmtree(dir);
}
END_TEST

/* --- window (shingling) and background = false ------------------------------ */

/* Init with model = the bytes given and the options; asserts success. */
static ew_harness *s_with_model(const char *dir, const s_buf *m, const char *window)
{
    char *path = s_write(dir, "model.bin", m->b, m->n);
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"model", path, "window", window, NULL},
                           NULL);
    free(path);
    return h;
}

/* One tree over 2 channels x window 2 (version 2 header): the root compares
 * column `feature` with thr, left a leaf of 1 sample, right one of 3. */
static void s_window_model(s_buf *m, uint32_t feature, double thr, uint32_t window)
{
    s_header(m, 0, 2 * window, 1, 4, 0.5);
    m->b[8] = 2; /* version 2: + u32 window, u32 reserved */
    s_u32(m, window);
    s_u32(m, 0);
    s_u32(m, 3);
    s_u32(m, 0);
    s_node(m, 1, 2, (int32_t)feature, thr, 4);
    s_node(m, -1, -1, -2, -2, 1);
    s_node(m, -1, -1, -2, -2, 3);
}

START_TEST(window_rows_are_the_last_samples_oldest_first)
{
    char *dir = ptest_tmpdir("ew-iforest");
    /* Rows (a, b): (10, 20), (11, 21), (12, 22). With window 2 the third
     * sample's row is [a(t-1), b(t-1), a(t), b(t)] = [11, 21, 12, 22]. */
    const double rows[] = {10, 20, 11, 21, 12, 22};
    const double expect[] = {11, 21, 12, 22};
    for (uint32_t k = 0; k < 4; k++) {
        for (int side = 0; side < 2; side++) {
            /* Just above the expected value: left (path 1); just below: right. */
            s_buf m;
            s_window_model(&m, k, expect[k] + (side ? -0.5 : 0.5), 2);
            ew_harness *h = s_with_model(dir, &m, "2");
            s_process(h, 3, rows);
            const double *score = ew_harness_scores(h), *len = ew_harness_extra(h);
            /* The first window - 1 samples have no complete row: score 0, no path. */
            ck_assert(score[0] == 0 && isnan(len[0]) && ew_harness_flags(h)[0] == 0);
            ck_assert_msg(len[2] == (side ? 1 + s_c(3) : 1.0), "column %u: path %g", k, len[2]);
            ck_assert(score[1] > 0);
            ck_assert_uint_eq(ew_harness_counter(h, "iforest_nonfinite_samples"), 0);
            ew_harness_destroy(&h);
        }
    }
    /* A NaN sample spoils every row it is in: w rows score 0; only it is counted. */
    s_buf m;
    s_window_model(&m, 0, 0.5, 2);
    ew_harness *h = s_with_model(dir, &m, "2");
    const double nan_rows[] = {1, 1, NAN, 1, 1, 1, 1, 1};
    s_process(h, 4, nan_rows);
    const double *score = ew_harness_scores(h);
    ck_assert(score[0] == 0 && score[1] == 0 && score[2] == 0 && score[3] > 0);
    ck_assert_uint_eq(ew_harness_counter(h, "iforest_nonfinite_samples"), 1);
    ew_harness_destroy(&h);
    /* A model of another window than the node's is refused, naming the window
     * to set; window = 0 (the default) takes the model's. */
    s_window_model(&m, 0, 0.5, 2);
    char *mpath = s_write(dir, "model.bin", m.b, m.n);
    int rc;
    h = s_make(dir, 2, s_two, (const char *[]){"model", mpath, "window", "1", NULL}, &rc);
    ck_assert(rc != EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "window = 2"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    free(mpath);
    char err[512];
    ck_assert_int_eq(s_try_model(dir, m.b, m.n, err, sizeof err), EW_OK);
    /* A window that does not divide the columns is not a valid model. */
    s_window_model(&m, 0, 0.5, 2);
    m.b[48] = 3;
    ck_assert(s_try_model(dir, m.b, m.n, err, sizeof err) != EW_OK);
    ck_assert_msg(strstr(err, "window 3"), "%s", err);
    s_rmtree(dir);
}
END_TEST

/* Rows of a sine on channel a and a slower one on b, plus noise (seeded). */
static double *s_waves(size_t n, uint64_t seed)
{
    double *v = s_normal(n, 2, seed);
    for (size_t i = 0; i < n; i++) {
        v[i * 2] = sin((double)i * 0.3) + 0.05 * v[i * 2];
        v[i * 2 + 1] = cos((double)i * 0.05) + 0.05 * v[i * 2 + 1];
    }
    return v;
}

START_TEST(window_rows_are_learnt_only_when_complete)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"window", "3", "train_samples", "10",
                                                          "sample_size", "8", "background",
                                                          "false", NULL}, NULL);
    double *v = s_waves(40, 3);
    /* Rows 0 and 1 are incomplete; rows 2..10 are 9 training rows: still learning. */
    s_process(h, 11, v);
    ck_assert(ew_harness_learning(h));
    ck_assert_uint_eq(ew_harness_counter(h, "iforest_trainings"), 0);
    /* Row 11 completes the 10: trained in this batch; the next rows are scored. */
    s_process(h, 3, v + 22);
    ck_assert(!ew_harness_learning(h));
    ck_assert_uint_eq(ew_harness_counter(h, "iforest_trainings"), 1);
    const double *score = ew_harness_scores(h);
    ck_assert(score[0] == 0 && score[1] > 0 && score[2] > 0);
    free(v);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

/* All scores of n rows through a detector with the options, in batches of `batch`. */
static double *s_run_batches(const char *dir, const char *const *kv, const double *v, size_t n,
                             size_t batch, uint64_t *trainings)
{
    ew_harness *h = s_make(dir, 2, s_two, kv, NULL);
    double *out = malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        s_process(h, m, v + i * 2);
        memcpy(out + i, ew_harness_scores(h), m * sizeof *out);
    }
    *trainings = ew_harness_counter(h, "iforest_trainings");
    ew_harness_destroy(&h);
    return out;
}

START_TEST(background_false_is_deterministic_whatever_the_batches)
{
    char *dir1 = ptest_tmpdir("ew-iforest"), *dir2 = ptest_tmpdir("ew-iforest");
    const char *const kv[] = {"window", "4", "train_samples", "200", "sample_size", "64",
                              "trees", "30", "retrain_every", "150", "background", "false", NULL};
    const size_t n = 1200;
    double *v = s_waves(n, 11);
    uint64_t t1, t2;
    double *a = s_run_batches(dir1, kv, v, n, n, &t1);
    double *b = s_run_batches(dir2, kv, v, n, 7, &t2);
    /* Grown on a thread: each forest is put in use at the same sample, so the
     * scores are the same too, whatever the thread's timing. */
    const char *const kv_bg[] = {"window", "4", "train_samples", "200", "sample_size", "64",
                                 "trees", "30", "retrain_every", "150", "background", "true",
                                 NULL};
    char *dir3 = ptest_tmpdir("ew-iforest");
    uint64_t t3;
    double *c = s_run_batches(dir3, kv_bg, v, n, 5, &t3);
    ck_assert_uint_eq(t3, t1);
    ck_assert_msg(memcmp(a, c, n * sizeof *a) == 0, "background = true gave other scores");
    free(c);
    s_rmtree(dir3);
    /* First model after 3 + 200 rows, then a retraining every 150 rows. */
    ck_assert_uint_eq(t1, 1 + (n - 203) / 150);
    ck_assert_uint_eq(t1, t2);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(a[i] == b[i], "row %zu: %.17g in one batch, %.17g in batches of 7", i, a[i],
                      b[i]);
        ck_assert(i < 203 ? a[i] == 0 : a[i] > 0);
    }
    free(a);
    free(b);
    free(v);
    s_rmtree(dir1);
    s_rmtree(dir2);
}
END_TEST

START_TEST(saved_model_keeps_its_window)
{
    char *dir = ptest_tmpdir("ew-iforest");
    const char *const kv3[] = {"window", "3", "train_samples", "100", "sample_size", "64",
                               "background", "false", "retrain_every", "0", NULL};
    double *v = s_waves(300, 5);
    ew_harness *h = s_make(dir, 2, s_two, kv3, NULL);
    s_process(h, 150, v);
    ck_assert(!ew_harness_learning(h));
    s_process(h, 150, v + 300);
    double *before = malloc(150 * sizeof *before);
    memcpy(before, ew_harness_scores(h), 150 * sizeof *before);
    ew_harness_destroy(&h);
    /* Same window: loaded, the same scores once the window is full again. */
    h = s_make(dir, 2, s_two, kv3, NULL);
    ck_assert(!ew_harness_learning(h));
    s_process(h, 150, v + 300);
    for (size_t i = 2; i < 150; i++)
        ck_assert(ew_harness_scores(h)[i] == before[i]);
    ew_harness_destroy(&h);
    /* Another window: the saved model does not fit; refused, or relearnt. */
    int rc;
    h = s_make(dir, 2, s_two, (const char *[]){"window", "2", "train_samples", "100",
                                              "sample_size", "64", "retrain_every", "0", NULL},
               &rc);
    ck_assert(rc != EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "window (saved 3, now 2)"), "%s",
                  ew_harness_error(h));
    ew_harness_destroy(&h);
    h = s_make(dir, 2, s_two, (const char *[]){"window", "2", "train_samples", "100",
                                              "sample_size", "64", "retrain_every", "0",
                                              "on_model_mismatch", "retrain", NULL}, NULL);
    ck_assert(ew_harness_learning(h));
    ew_harness_destroy(&h);
    free(before);
    free(v);
    s_rmtree(dir);
}
END_TEST

/* Share of the last n rows' anomaly flags that are set. */
static double s_flagged(ew_harness *h, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ew_harness_flags(h)[i] != 0;
    return (double)k / (double)n;
}

START_TEST(learn_anomalies_makes_a_lasting_shift_normal)
{
    for (int learn = 0; learn < 2; learn++) {
        char *dir = ptest_tmpdir("ew-iforest");
        ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "200",
                                                              "sample_size", "128",
                                                              "retrain_every", "100",
                                                              "background", "false",
                                                              "threshold", "0.6",
                                                              "contamination", "0",
                                                              "memory", "200",
                                                              "learn_anomalies",
                                                              learn ? "true" : "false", NULL},
                               NULL);
        double *v = s_normal(201, 2, 21);
        s_process(h, 201, v);
        ck_assert(!ew_harness_learning(h));
        /* The level moves for good: far outliers at first, whatever the option. */
        double *shifted = s_normal(1000, 2, 22);
        for (size_t i = 0; i < 1000; i++)
            shifted[i * 2] += 20;
        s_process(h, 50, shifted);
        ck_assert_double_gt(s_flagged(h, 50), 0.9);
        s_process(h, 650, shifted + 100);
        /* After 700 shifted rows (several retrainings): learnt as the new normal
         * only when anomalies enter the reservoir. */
        s_process(h, 300, shifted + 1400);
        if (learn)
            ck_assert_double_lt(s_flagged(h, 300), 0.2);
        else
            ck_assert_double_gt(s_flagged(h, 300), 0.9);
        free(v);
        free(shifted);
        ew_harness_destroy(&h);
        s_rmtree(dir);
    }
}
END_TEST

/* A stationary stream, retrained every 1000 samples: with the default
 * (learn_anomalies = true) each forest flags about the share the first did
 * (scikit-learn's 'auto' threshold flags about a fifth of a Gaussian). With
 * false, leaving the flagged rows out narrows each forest, the share climbs, and
 * a warning says why. */
START_TEST(stationary_stream_keeps_its_flag_rate_across_retrainings)
{
    for (int learn = 1; learn >= 0; learn--) {
        char *dir = ptest_tmpdir("ew-iforest");
        ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"train_samples", "1000",
                                                              "retrain_every", "1000",
                                                              "background", "false",
                                                              "contamination", "0",
                                                              "memory", "1000",
                                                              "learn_anomalies",
                                                              learn ? "true" : "false", NULL},
                               NULL);
        double *v = s_normal(13000, 2, 31);
        s_process(h, 1000, v);
        double first = -1, last = 0;
        for (size_t b = 1; b < 13; b++) {
            s_process(h, 1000, v + b * 2000);
            last = s_flagged(h, 1000);
            if (first < 0)
                first = last;
        }
        ck_assert_uint_ge(ew_harness_counter(h, "iforest_trainings"), 12);
        ck_assert_double_gt(first, 0.05);
        ck_assert_double_lt(first, 0.35);
        if (learn) {
            ck_assert_msg(last < first + 0.08, "flagged %.3f after 11 retrainings, %.3f at first",
                          last, first);
            ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 0);
        } else {
            ck_assert_msg(last > 2 * first, "flagged %.3f after 11 retrainings, %.3f at first",
                          last, first);
            ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
        }
        free(v);
        ew_harness_destroy(&h);
        s_rmtree(dir);
    }
}
END_TEST

/* Identical training samples: scored as ties (0.5 plus rounding), not
 * anomalies, and a warning says the forest can tell nothing apart. A channel
 * constant in training is named in a warning. */
START_TEST(constant_training_data_is_reported_and_not_flagged)
{
    char *dir = ptest_tmpdir("ew-iforest");
    ew_harness *h = s_make(dir, 3, s_three, (const char *[]){"train_samples", "300",
                                                            "background", "false",
                                                            "contamination", "0", NULL},
                           NULL);
    double *v = malloc(600 * 3 * sizeof *v);
    for (size_t i = 0; i < 600 * 3; i++)
        v[i] = (double)(i % 3) + 1.0;
    s_process(h, 600, v);
    ck_assert(!ew_harness_learning(h));
    ck_assert_double_gt(ew_harness_scores(h)[599], 0.5); /* the rounding this guards against */
    ck_assert_double_lt(ew_harness_scores(h)[599], 0.5 + 1e-12);
    ck_assert_double_eq(s_flagged(h, 300) + s_flagged(h, 600), 0);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 1);
    ew_harness_destroy(&h);
    s_rmtree(dir);

    dir = ptest_tmpdir("ew-iforest");
    h = s_make(dir, 3, s_three, (const char *[]){"train_samples", "300", "background", "false",
                                                NULL},
               NULL);
    double *n = s_normal(600, 3, 9);
    for (size_t i = 0; i < 600; i++)
        n[i * 3 + 1] = 7.0; /* channel b is stuck */
    char log[4096];
    ptest_capture_stderr(log, sizeof log); /* for the rest of this test (its own process) */
    s_process(h, 600, n);
    char *text = ptest_slurp(log);
    ptest_release_stderr(log);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 1);
    ck_assert_msg(strstr(text, "1 channel(s) never changed in the training samples") &&
                      strstr(text, "outside the training range: b"),
                  "%s", text);
    free(text);
    free(n);
    free(v);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

START_TEST(option_errors)
{
    char *dir = ptest_tmpdir("ew-iforest");
    int rc;
    ew_harness *h = s_make(dir, 2, s_two, (const char *[]){"sample_size", "300", "train_samples",
                                                          "200", NULL}, &rc);
    ck_assert(rc != EW_OK && strstr(ew_harness_error(h), "sample_size"));
    ew_harness_destroy(&h);
    /* A forest too large for an edge device: refused before anything is allocated. */
    h = s_make(dir, 2, s_two, (const char *[]){"trees", "100000", "sample_size", "4096",
                                              "train_samples", "5000", NULL}, &rc);
    ck_assert(rc != EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "trees = 100000 with sample_size = 4096 needs about "
                                              "49994 MiB for two forests"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    const char *bad[][2] = {{"trees", "0"}, {"threshold", "1.5"}, {"contamination", "0.6"},
                            {"sample_size", "1"}, {"bogus", "1"}, {"trees", "many"},
                            {"window", "-1"}, {"window", "1001"},
                            {"on_model_mismatch", "ignore"}, {"apply_delay", "-1"}, {"background", "maybe"},
                            {"learn_anomalies", "2"}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        h = ew_harness_new(ew_plugin_entry(), dir);
        ew_harness_input(h, 2, s_two);
        int r = ew_harness_option(h, bad[k][0], bad[k][1]);
        if (r == EW_OK)
            r = ew_harness_init(h);
        ck_assert_msg(r != EW_OK, "%s = %s accepted", bad[k][0], bad[k][1]);
        ew_harness_destroy(&h);
    }
    /* Only score/anomaly upstream: nothing to score. */
    h = ew_harness_new(ew_plugin_entry(), dir);
    ew_harness_input(h, 2, (const char *[]){"score", "anomaly"});
    ck_assert(ew_harness_init(h) != EW_OK);
    ew_harness_destroy(&h);
    s_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-iforest");
    TCase *tc = tcase_create("iforest");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, descriptor_and_schema);
    tcase_add_test(tc, learning_state_then_ready);
    tcase_add_test(tc, separates_outliers);
    tcase_add_test(tc, raw_does_not_saturate_and_contrib_names_the_channel);
    tcase_add_test(tc, constant_and_repeated_registers_are_not_flagged);
    tcase_add_test(tc, calibrated_score_is_half_at_the_learnt_limit);
    tcase_add_test(tc, deterministic_per_seed);
    tcase_add_test(tc, persistence_round_trip);
    tcase_add_test(tc, corrupt_state_is_moved_aside_and_relearnt);
    tcase_add_test(tc, saved_model_of_other_settings_is_refused_or_relearnt);
    tcase_add_test(tc, hand_made_model_scores_exactly);
    tcase_add_test(tc, hostile_model_files_are_rejected);
    tcase_add_test(tc, nan_rows_are_scored_zero_and_not_learnt);
    tcase_add_test(tc, contamination_sets_the_quantile);
    tcase_add_test(tc, retrains_on_recent_normal_samples);
    tcase_add_test(tc, flush_waits_for_training_and_saves);
    tcase_add_test(tc, stop_abandons_a_long_training_but_waits_for_a_short_one);
    tcase_add_test(tc, retrained_forests_are_saved_at_most_once_a_minute);
    tcase_add_test(tc, window_rows_are_the_last_samples_oldest_first);
    tcase_add_test(tc, window_rows_are_learnt_only_when_complete);
    tcase_add_test(tc, background_false_is_deterministic_whatever_the_batches);
    tcase_add_test(tc, saved_model_keeps_its_window);
    tcase_add_test(tc, learn_anomalies_makes_a_lasting_shift_normal);
    tcase_add_test(tc, stationary_stream_keeps_its_flag_rate_across_retrainings);
    tcase_add_test(tc, constant_training_data_is_reported_and_not_flagged);
    tcase_add_test(tc, option_errors);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
