/* Tests of the autoencoder detector plugin through the SDK harness: learning,
 * scoring, determinism, the training thread, and the model file's persistence. */
#include <edgewatch/testing.h>

#include "../../plugins/autoencoder/ae_model.h"
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
#include <time.h>
#include <unistd.h>

static const char *const s_abc[] = {"a", "b", "c"};

/* ---- helpers ------------------------------------------------------------------------------ */

/* The state folder of the running test (each Check test runs in its own process). */
static char *s_fixture_state;

static void s_setup(void)
{
    s_fixture_state = ptest_tmpdir("ew-ae-test");
}

static void s_teardown(void)
{
    ptest_tmpdir_free(s_fixture_state);
    s_fixture_state = NULL;
}

/* A detector over `names`, state files under `state` (NULL = the test's folder), with
 * options as NULL-terminated pairs; initialised. */
static ew_harness *s_make(const char *state, size_t nch, const char *const *names,
                          const char *const *kv)
{
    return ptest_open(state ? state : s_fixture_state, nch, names, kv, NULL);
}

static void s_process(ew_harness *h, size_t n, const double *values)
{
    int64_t *ts = calloc(n ? n : 1, sizeof *ts);
    for (size_t i = 0; i < n; i++)
        ts[i] = (int64_t)i * 1000000;
    int rc = ew_harness_process(h, n, ts, values);
    ck_assert_msg(rc == EW_OK, "process failed (%d): %s", rc, ew_harness_error(h));
    free(ts);
}

/* n rows of 3 channels driven by one latent u in [-1, 1]: a = u, b = 0.5 u + 2,
 * c = -u, each with noise of sd 0.02. Every channel keeps to its range, but
 * only along that line. */
static double *s_correlated(size_t n, uint64_t seed)
{
    ewp_rng rng;
    ewp_rng_seed(&rng, seed);
    double *v = malloc(n * 3 * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        double u = 2 * ewp_rng_uniform(&rng) - 1;
        v[3 * i] = u + 0.02 * ewp_rng_normal(&rng);
        v[3 * i + 1] = 0.5 * u + 2 + 0.02 * ewp_rng_normal(&rng);
        v[3 * i + 2] = -u + 0.02 * ewp_rng_normal(&rng);
    }
    return v;
}

/* Options of a small, quick correlated-signal model, trained inside process. */
#define S_QUICK_OPTS "window", "1", "train_samples", "1000", "epochs", "60", "patience", "60", \
                     "learning_rate", "0.01", "background", "false"
#define S_QUICK "layers", "4, 1", S_QUICK_OPTS

/* Copies `n` doubles of the last process call's scores / errors. */
static double *s_copy(const double *src, size_t n)
{
    double *d = malloc(n * sizeof *d);
    memcpy(d, src, n * sizeof *d);
    return d;
}

/* The model payload saved in `state`, decoded with `names` and the config of `h`. */
static int s_read_payload(const char *state, void **data, size_t *len)
{
    char dir[4096], err[512];
    snprintf(dir, sizeof dir, "%s/test", state);
    int moved = 0;
    return state_load(dir, "model.bin", "autoencoder", data, len, &moved, err, sizeof err);
}

static void s_write_payload(const char *state, const void *data, size_t len)
{
    char dir[4096], err[512];
    snprintf(dir, sizeof dir, "%s/test", state);
    ck_assert_msg(state_save(dir, "model.bin", "autoencoder", data, len, err, sizeof err) == 0, "%s",
                  err);
}

/* How many files in state/test have names containing `part`. */
static int s_count_files(const char *state, const char *part)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/test", state);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, part))
            n++;
    closedir(d);
    return n;
}

/* The plugin's own score for error e at threshold t (as documented). */
static double s_score_of(double e, double t)
{
    double u = log2(1 + e / t);
    return u / (1 + u);
}

/* ---- tests -------------------------------------------------------------------------------- */

START_TEST(descriptor_and_schema)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_DETECTOR);
    ck_assert_str_eq(p->name, "autoencoder");
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
    ew_harness *h = s_make(NULL, 3, s_abc, NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 6);
    ck_assert_str_eq(out->names[3], "reconstruction_error");
    ck_assert_str_eq(out->names[4], "score");
    ck_assert_str_eq(out->names[5], "anomaly");
    ck_assert(ew_harness_learning(h));
    /* Several channels: the plugin's score, 0.5 at the learnt limit, is kept. */
    ck_assert(ew_harness_score_calibrated(h));
    ew_harness_destroy(&h);
}
END_TEST

/* Learns the line the three channels move along, then flags a sample that
 * leaves it although each of its values lies inside that channel's range. */
START_TEST(learns_correlation_and_flags_a_break)
{
    ew_harness *h = s_make(NULL, 3, s_abc, (const char *[]){S_QUICK, NULL});
    double *train = s_correlated(1000, 7);
    s_process(h, 1000, train);
    ck_assert(!ew_harness_learning(h));
    for (size_t i = 0; i < 1000; i++)
        ck_assert(ew_harness_scores(h)[i] == 0 && isnan(ew_harness_extra(h)[i]) &&
                  isnan(ew_harness_raw(h)[i]) && ew_harness_learning_flags(h)[i] == 1);

    /* 500 fresh normal samples, then a = 0.8, b = 2.4 (as if u = 0.8) but c = +0.8. */
    double *test = s_correlated(501, 99);
    test[3 * 500] = 0.8;
    test[3 * 500 + 1] = 2.4;
    test[3 * 500 + 2] = 0.8;
    for (int c = 0; c < 3; c++) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < 1000; i++) {
            lo = fmin(lo, train[3 * i + c]);
            hi = fmax(hi, train[3 * i + c]);
        }
        ck_assert(test[3 * 500 + c] > lo && test[3 * 500 + c] < hi);
    }
    s_process(h, 501, test);
    const double *score = ew_harness_scores(h), *err = ew_harness_extra(h);
    const uint8_t *flag = ew_harness_flags(h);
    size_t false_alarms = 0;
    for (size_t i = 0; i < 500; i++) {
        ck_assert(score[i] >= 0 && score[i] <= 1 && isfinite(err[i]));
        false_alarms += flag[i];
    }
    ck_assert_msg(false_alarms <= 10, "%zu false alarms in 500 normal samples", false_alarms);
    ck_assert_msg(flag[500] == 1 && score[500] > 0.8, "break: score %g error %g", score[500], err[500]);
    /* score = u / (1 + u), u = log2(1 + e / threshold): recover the threshold
     * from one sample and check the rest. */
    double u0 = score[0] / (1 - score[0]);
    double t = err[0] / (exp2(u0) - 1);
    const double *raw = ew_harness_raw(h), *contrib = ew_harness_contrib(h);
    const uint8_t *learning = ew_harness_learning_flags(h);
    for (size_t i = 0; i <= 500; i++) {
        double u = log2(1 + err[i] / t);
        ck_assert_double_eq_tol(score[i], u / (1 + u), 1e-9);
        ck_assert_uint_eq(flag[i], err[i] > t * (1 + 1e-9));
        /* raw is the reconstruction error itself; contrib splits it by channel. */
        ck_assert(raw[i] == err[i] && learning[i] == 0);
        double sum = 0;
        for (int c = 0; c < 3; c++) {
            ck_assert(contrib[3 * i + c] >= 0);
            sum += contrib[3 * i + c];
        }
        ck_assert_double_eq_tol(sum, raw[i], 1e-12 * (1 + raw[i]));
    }
    /* Far above the threshold the score still tells larger errors apart. */
    ck_assert(s_score_of(100, 1) < s_score_of(10000, 1) - 0.05);
    free(train);
    free(test);
    ew_harness_destroy(&h);
}
END_TEST

/* contrib names the channels that broke: two independent pairs (a = -b,
 * c = -d); a sample where only c leaves its pair puts most of its error on
 * c and d, and the four contributions still add up to the raw error. */
START_TEST(contrib_points_at_the_broken_pair)
{
    const char *const abcd[] = {"a", "b", "c", "d"};
    ew_harness *h = s_make(NULL, 4, abcd,
                           (const char *[]){"window", "1", "layers", "2", "train_samples", "1000",
                                            "epochs", "80", "patience", "80", "background",
                                            "false", NULL});
    ewp_rng rng;
    ewp_rng_seed(&rng, 61);
    enum { N = 1001 };
    double *v = malloc(N * 4 * sizeof *v);
    for (size_t i = 0; i < N; i++) {
        double u = 2 * ewp_rng_uniform(&rng) - 1, w = 2 * ewp_rng_uniform(&rng) - 1;
        v[4 * i] = u + 0.02 * ewp_rng_normal(&rng);
        v[4 * i + 1] = -u + 0.02 * ewp_rng_normal(&rng);
        v[4 * i + 2] = w + 0.02 * ewp_rng_normal(&rng);
        v[4 * i + 3] = -w + 0.02 * ewp_rng_normal(&rng);
    }
    s_process(h, 1000, v);
    ck_assert(!ew_harness_learning(h));
    /* a and b on their line, c = d = 0.7 (c should be -0.7). */
    double brk[4] = {0.5, -0.5, 0.7, 0.7};
    s_process(h, 1, brk);
    const double *raw = ew_harness_raw(h), *contrib = ew_harness_contrib(h);
    ck_assert(ew_harness_flags(h)[0] == 1);
    double pair_cd = contrib[2] + contrib[3], pair_ab = contrib[0] + contrib[1];
    ck_assert_msg(pair_cd > 4 * pair_ab, "contrib %g %g %g %g", contrib[0], contrib[1], contrib[2],
                  contrib[3]);
    ck_assert_double_eq_tol(pair_ab + pair_cd, raw[0], 1e-12 * (1 + raw[0]));
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* Same data and seed: bit-identical scores and model files; another seed differs. */
START_TEST(deterministic)
{
    double *train = s_correlated(1000, 3), *test = s_correlated(300, 4);
    double *runs[3];
    void *models[3];
    size_t lens[3];
    const char *seeds[3] = {"5", "5", "6"};
    for (int r = 0; r < 3; r++) {
        char *state = ptest_tmpdir("ew-ae-test");
        ew_harness *h = s_make(state, 3, s_abc, (const char *[]){S_QUICK, "seed", seeds[r], NULL});
        s_process(h, 1000, train);
        s_process(h, 300, test);
        runs[r] = s_copy(ew_harness_scores(h), 300);
        ew_harness_destroy(&h);
        ck_assert_int_eq(s_read_payload(state, &models[r], &lens[r]), 0);
        ptest_tmpdir_free(state);
    }
    ck_assert(memcmp(runs[0], runs[1], 300 * sizeof(double)) == 0);
    ck_assert(lens[0] == lens[1] && memcmp(models[0], models[1], lens[0]) == 0);
    ck_assert(memcmp(runs[0], runs[2], 300 * sizeof(double)) != 0);
    for (int r = 0; r < 3; r++) {
        free(runs[r]);
        free(models[r]);
    }
    free(train);
    free(test);
}
END_TEST

/* window = 4 over one sine channel: every value of the test stays in [-1, 1],
 * but a sudden reversal breaks the shape the windows learnt. */
START_TEST(window_over_time)
{
    const char *const x[] = {"x"};
    ew_harness *h = s_make(NULL, 1, x,
                           (const char *[]){"window", "4", "layers", "3, 2", "train_samples", "2000",
                                            "epochs", "80", "patience", "80", "background",
                                            "false", NULL});
    enum { N = 2000 + 3 + 600 };
    double *v = malloc(N * sizeof *v);
    for (size_t i = 0; i < N; i++)
        v[i] = sin(0.1 * (double)i);
    /* Sample 2400: jump to the mirror image (-sin), still within [-1, 1]. */
    size_t brk = 2400;
    v[brk] = -v[brk];
    s_process(h, N, v);
    const double *score = ew_harness_scores(h), *err = ew_harness_extra(h);
    const uint8_t *flag = ew_harness_flags(h);
    /* The first 3 samples have no full window; the next 2000 are learnt. */
    for (size_t i = 0; i < 3; i++)
        ck_assert(isnan(err[i]) && score[i] == 0);
    ck_assert(isnan(err[2002]));
    ck_assert(isfinite(err[2003]));
    ck_assert(!ew_harness_learning(h));
    ck_assert_msg(v[brk] >= -1 && v[brk] <= 1 && flag[brk] == 1, "break error %g score %g",
                  err[brk], score[brk]);
    size_t false_alarms = 0;
    for (size_t i = 2003; i < brk; i++)
        false_alarms += flag[i];
    ck_assert_msg(false_alarms == 0, "%zu false alarms on the clean sine", false_alarms);
    free(v);
    ew_harness_destroy(&h);
}
END_TEST

/* A plateau: with patience 3 and 2000 epochs allowed, training stops early and
 * the model file says so. */
START_TEST(early_stopping)
{
    char *state = ptest_tmpdir("ew-ae-test");
    double *train = s_correlated(1000, 11);
    ew_harness *h = s_make(state, 3, s_abc,
                           (const char *[]){"window", "1", "layers", "4, 1", "train_samples", "1000",
                                            "epochs", "2000", "patience", "3", "background",
                                            "false", NULL});
    s_process(h, 1000, train);
    ew_harness_destroy(&h);
    void *data;
    size_t len;
    ck_assert_int_eq(s_read_payload(state, &data, &len), 0);
    /* epochs_run sits after the fixed header, the 2 widths, 5 u64 and 5 f64 fields. */
    size_t off = 8 + 6 * 4 + 2 * 4 + 5 * 8 + 5 * 8;
    uint64_t epochs_run = 0;
    for (int i = 0; i < 8; i++)
        epochs_run |= (uint64_t)((unsigned char *)data)[off + i] << (8 * i);
    ck_assert_msg(epochs_run >= 4 && epochs_run < 2000, "ran %llu epochs",
                  (unsigned long long)epochs_run);
    free(data);
    free(train);
    ptest_tmpdir_free(state);
}
END_TEST

/* In the background: every sample before the model exists is marked learning;
 * the model scores from sample train_samples + train_delay on, whatever the
 * batch sizes and however long the thread takes (the stream waits for it). */
START_TEST(learning_then_ready)
{
    double *data = s_correlated(1400, 21);
    double *scores[2];
    const size_t batch[2] = {1400, 7};
    for (int r = 0; r < 2; r++) {
        char *state = ptest_tmpdir("ew-ae-test");
        ew_harness *h = s_make(state, 3, s_abc,
                               (const char *[]){"window", "1", "layers", "4, 1", "train_samples",
                                                "1000", "epochs", "200", "patience", "200",
                                                "train_delay", "150", NULL});
        ck_assert(ew_harness_learning(h));
        scores[r] = malloc(1400 * sizeof(double));
        for (size_t at = 0; at < 1400; at += batch[r]) {
            size_t n = at + batch[r] <= 1400 ? batch[r] : 1400 - at;
            s_process(h, n, data + 3 * at);
            for (size_t i = 0; i < n; i++) {
                size_t k = at + i;
                /* The 1000th window is sample 999: its training applies at 999 + 1 + 150. */
                bool learnt = k >= 1150;
                ck_assert_msg(ew_harness_learning_flags(h)[i] == !learnt, "sample %zu", k);
                ck_assert_msg(isfinite(ew_harness_raw(h)[i]) == learnt, "sample %zu", k);
                if (!learnt)
                    ck_assert(ew_harness_scores(h)[i] == 0 && ew_harness_flags(h)[i] == 0);
                scores[r][k] = ew_harness_scores(h)[i];
            }
        }
        ck_assert(!ew_harness_learning(h));
        ew_harness_destroy(&h);
        ptest_tmpdir_free(state);
    }
    ck_assert(memcmp(scores[0], scores[1], 1400 * sizeof(double)) == 0);
    free(scores[0]);
    free(scores[1]);
    free(data);
}
END_TEST

/* A batch that ends before the apply sample returns at once: the model is
 * still being learnt (the stream does not wait for it before that sample). */
START_TEST(background_does_not_block_before_the_apply_sample)
{
    ew_harness *h = s_make(NULL, 3, s_abc,
                           (const char *[]){"window", "1", "layers", "4, 1", "train_samples",
                                            "1000", "epochs", "100000", "patience", "100000",
                                            "train_delay", "1000000", NULL});
    double *train = s_correlated(1200, 21);
    s_process(h, 1200, train);
    ck_assert(ew_harness_learning(h));
    for (size_t i = 0; i < 1200; i++)
        ck_assert(ew_harness_learning_flags(h)[i] == 1 && isnan(ew_harness_raw(h)[i]));
    ew_harness_request_stop(h);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    free(train);
    ew_harness_destroy(&h);
}
END_TEST

/* retrain_every: the model is relearnt from the recent windows, so a lasting
 * move to another line becomes normal; replays stay identical. */
START_TEST(retrain_follows_a_lasting_change)
{
    enum { N = 4000 };
    double *v = s_correlated(N, 51);
    /* From sample 1500 on, c follows +u instead of -u. */
    for (size_t i = 1500; i < N; i++)
        v[3 * i + 2] = -v[3 * i + 2];
    double *runs[2];
    for (int r = 0; r < 2; r++) {
        char *state = ptest_tmpdir("ew-ae-test");
        ew_harness *h = s_make(state, 3, s_abc,
                               (const char *[]){"window", "1", "layers", "4, 1", "train_samples",
                                                "1000", "epochs", "60", "patience", "60",
                                                "retrain_every", "250", "train_delay", "20", NULL});
        s_process(h, N, v);
        const uint8_t *flag = ew_harness_flags(h);
        size_t early = 0, late = 0;
        for (size_t i = 1500; i < 1600; i++)
            early += flag[i];
        for (size_t i = N - 500; i < N; i++)
            late += flag[i];
        ck_assert_msg(early > 50, "the change was flagged %zu times in 100", early);
        ck_assert_msg(late < 25, "still %zu flags in the last 500 after relearning", late);
        ck_assert_uint_ge(ew_harness_counter(h, "autoencoder_trainings"), 10);
        runs[r] = s_copy(ew_harness_scores(h), N);
        ew_harness_destroy(&h);
        ptest_tmpdir_free(state);
    }
    ck_assert(memcmp(runs[0], runs[1], N * sizeof(double)) == 0);
    free(runs[0]);
    free(runs[1]);
    free(v);
}
END_TEST

/* window = 0 and layers = auto: one channel gets 24-sample windows and an
 * 18-wide bottleneck, narrower than its input, so no identity is learnt. A
 * single channel leaves calibration to the host's likelihood stage. */
START_TEST(auto_window_and_layers)
{
    const char *const x[] = {"x"};
    char *state = ptest_tmpdir("ew-ae-test");
    ew_harness *h = s_make(state, 1, x,
                           (const char *[]){"train_samples", "300", "epochs", "5", "background",
                                            "false", NULL});
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 0);
    enum { N = 400 };
    double v[N];
    for (size_t i = 0; i < N; i++)
        v[i] = sin(0.3 * (double)i);
    s_process(h, N, v);
    ck_assert(!ew_harness_learning(h));
    /* 23 samples fill the first window, 300 windows are learnt. */
    for (size_t i = 0; i < N; i++)
        ck_assert_msg(ew_harness_learning_flags(h)[i] == (i < 323), "sample %zu", i);
    ck_assert(!ew_harness_score_calibrated(h));
    ew_harness_destroy(&h);
    void *data;
    size_t len;
    ck_assert_int_eq(s_read_payload(state, &data, &len), 0);
    const unsigned char *p = data;
    ck_assert_uint_eq(p[16], 24); /* window */
    ck_assert_uint_eq(p[24], 1);  /* one encoder layer */
    ck_assert_uint_eq(p[32], 18); /* of width 18 */
    free(data);
    ptest_tmpdir_free(state);
}
END_TEST

/* End of stream while training: flush waits for the model and saves it. */
START_TEST(flush_waits_for_training)
{
    char *state = ptest_tmpdir("ew-ae-test");
    ew_harness *h = s_make(state, 3, s_abc,
                           (const char *[]){"window", "1", "layers", "4, 1", "train_samples",
                                            "1000", NULL});
    double *train = s_correlated(1000, 21);
    s_process(h, 1000, train);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert(!ew_harness_learning(h));
    ck_assert_int_eq(s_count_files(state, "model.bin"), 1);
    ew_harness_destroy(&h);
    free(train);
    ptest_tmpdir_free(state);
}
END_TEST

/* A stop (SIGTERM) while a long training runs: flush waits about a second,
 * then abandons it; nothing is saved and the model stays to be learnt. */
START_TEST(stop_abandons_a_long_training)
{
    char *state = ptest_tmpdir("ew-ae-test");
    ew_harness *h = s_make(state, 3, s_abc,
                           (const char *[]){"window", "1", "layers", "4, 1", "train_samples", "1000", "epochs",
                                            "100000", "patience", "100000", NULL});
    double *train = s_correlated(1000, 21);
    s_process(h, 1000, train);
    ck_assert(ew_harness_learning(h));
    ew_harness_request_stop(h);
    size_t warned = ew_harness_logged(h, EW_LOG_WARN);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert(ew_harness_learning(h));
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), warned + 1);
    ck_assert_int_eq(s_count_files(state, "model.bin"), 0);
    ew_harness_destroy(&h);
    free(train);
    ptest_tmpdir_free(state);
}
END_TEST

/* Saved after training, loaded at init: no relearning, identical scores from
 * the first sample. */
START_TEST(save_load_round_trip)
{
    char *state = ptest_tmpdir("ew-ae-test");
    double *train = s_correlated(1000, 31), *test = s_correlated(200, 32);
    ew_harness *h = s_make(state, 3, s_abc, (const char *[]){S_QUICK, NULL});
    s_process(h, 1000, train);
    s_process(h, 200, test);
    double *first = s_copy(ew_harness_scores(h), 200), *first_err = s_copy(ew_harness_extra(h), 200);
    ew_harness_destroy(&h);

    h = s_make(state, 3, s_abc, (const char *[]){S_QUICK, NULL});
    ck_assert(!ew_harness_learning(h));
    s_process(h, 200, test);
    ck_assert(memcmp(first, ew_harness_scores(h), 200 * sizeof(double)) == 0);
    ck_assert(memcmp(first_err, ew_harness_extra(h), 200 * sizeof(double)) == 0);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN), 0);
    ew_harness_destroy(&h);
    free(first);
    free(first_err);
    free(train);
    free(test);
    ptest_tmpdir_free(state);
}
END_TEST

/* Trains once into `state` with S_QUICK; returns the payload (caller frees). */
static void *s_trained_payload(const char *state, size_t *len)
{
    double *train = s_correlated(1000, 41);
    ew_harness *h = s_make(state, 3, s_abc, (const char *[]){S_QUICK, NULL});
    s_process(h, 1000, train);
    ew_harness_destroy(&h);
    free(train);
    void *data;
    ck_assert_int_eq(s_read_payload(state, &data, len), 0);
    return data;
}

/* A model the detector must refuse: it logs why, learns again, and overwrites it. */
static void s_expect_relearn(const char *state, const char *const *names, const char *const *kv)
{
    ew_harness *h = s_make(state, 3, names, kv);
    ck_assert(ew_harness_learning(h));
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
    double *train = s_correlated(1000, 43);
    s_process(h, 1000, train);
    ck_assert(!ew_harness_learning(h));
    free(train);
    ew_harness_destroy(&h);
}

/* A model learnt for another config, under the default on_model_mismatch =
 * refuse: init fails with a message that names the change and the ways out. */
static void s_expect_refusal(const char *state, size_t nch, const char *const *names,
                             const char *const *kv, const char *change)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), state);
    ew_harness_input(h, nch, names);
    for (size_t k = 0; kv[k]; k += 2)
        ew_harness_option(h, kv[k], kv[k + 1]);
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    const char *msg = ew_harness_error(h);
    ck_assert_msg(strstr(msg, change) && strstr(msg, "on_model_mismatch = retrain") &&
                      strstr(msg, "model.bin"),
                  "%s", msg);
    ew_harness_destroy(&h);
    ck_assert_int_eq(s_count_files(state, "model.bin"), 1); /* left as it was */
}

/* A file that fails the host's checksum is moved aside by the host and relearnt. */
START_TEST(corrupt_file_is_moved_aside_and_relearnt)
{
    char *state = ptest_tmpdir("ew-ae-test");
    size_t len;
    free(s_trained_payload(state, &len));
    char path[4096];
    snprintf(path, sizeof path, "%s/test/model.bin", state);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, -20, SEEK_END);
    fputc(0x5a, f);
    fclose(f);
    s_expect_relearn(state, s_abc, (const char *[]){S_QUICK, NULL});
    ck_assert_int_eq(s_count_files(state, "model.bin.corrupt-"), 1);
    void *data;
    ck_assert_int_eq(s_read_payload(state, &data, &len), 0); /* relearnt and saved again */
    free(data);
    ptest_tmpdir_free(state);
}
END_TEST

/* Payloads that pass the host's checksum but are not a usable model. */
START_TEST(invalid_payloads_are_rejected)
{
    char *state = ptest_tmpdir("ew-ae-test");
    size_t len;
    unsigned char *good = s_trained_payload(state, &len);
    unsigned char *bad = malloc(len);
    const size_t weights_end = len; /* the last double is a bias */
    struct {
        const char *what;
        size_t len;
        size_t at;
        unsigned char byte;
    } cases[] = {
        {"truncated", len - 8, 0, 0},
        {"bad magic", len, 0, 'X'},
        {"future version", len, 8, 2},
        {"huge window", len, 16 + 3, 0x7f},
        {"zero width", len, 32, 0},
        {"NaN weight", len, weights_end - 1, 0x7f},
        {"trailing bytes", len, 0, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(bad, good, len);
        size_t n = cases[k].len;
        unsigned char *buf = bad;
        unsigned char *longer = NULL;
        if (strcmp(cases[k].what, "trailing bytes") == 0) {
            longer = calloc(len + 8, 1);
            memcpy(longer, good, len);
            buf = longer;
            n = len + 8;
        } else if (cases[k].len == len) {
            buf[cases[k].at] = cases[k].byte;
            if (strcmp(cases[k].what, "NaN weight") == 0)
                buf[cases[k].at - 1] = 0xf8; /* exponent all ones, mantissa non-zero */
        }
        s_write_payload(state, buf, n);
        ew_harness *h = s_make(state, 3, s_abc, (const char *[]){S_QUICK, NULL});
        ck_assert_msg(ew_harness_learning(h), "%s was accepted", cases[k].what);
        ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
        ew_harness_destroy(&h);
        free(longer);
    }
    free(bad);
    free(good);
    ptest_tmpdir_free(state);
}
END_TEST

/* A model learnt for other channels or options is refused (the default) and
 * relearnt with on_model_mismatch = retrain. */
START_TEST(foreign_model_is_refused_or_relearnt)
{
    char *state = ptest_tmpdir("ew-ae-test");
    size_t len;
    free(s_trained_payload(state, &len));
    const char *const abd[] = {"a", "b", "d"};
    s_expect_refusal(state, 3, abd, (const char *[]){S_QUICK, NULL},
                     "learnt for channel \"c\" at column 3, the input has \"d\"");
    s_expect_refusal(state, 3, s_abc, (const char *[]){"layers", "5, 2", S_QUICK_OPTS, NULL},
                     "learnt with layers = 4, 1, the config has 5, 2");
    s_expect_refusal(state, 3, s_abc, (const char *[]){S_QUICK, "factor", "2", NULL}, "factor");
    const char *const abcd[] = {"a", "b", "c", "d"};
    s_expect_refusal(state, 4, abcd, (const char *[]){S_QUICK, NULL}, "input channels = 3");
    /* retrain: learnt again for the new config, which then loads it. */
    s_expect_relearn(state, abd, (const char *[]){S_QUICK, "on_model_mismatch", "retrain", NULL});
    ew_harness *h = s_make(state, 3, abd, (const char *[]){S_QUICK, NULL});
    ck_assert(!ew_harness_learning(h));
    ew_harness_destroy(&h);
    char path[4096];
    snprintf(path, sizeof path, "%s/test/model.bin", state);
    ck_assert_int_eq(unlink(path), 0);
    free(s_trained_payload(state, &len));
    s_expect_relearn(state, s_abc,
                     (const char *[]){"layers", "5, 2", S_QUICK_OPTS, "on_model_mismatch",
                                      "retrain", NULL});
    h = s_make(state, 3, s_abc, (const char *[]){"layers", "5, 2", S_QUICK_OPTS, NULL});
    ck_assert(!ew_harness_learning(h));
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
}
END_TEST

/* Windows holding a NaN or infinity: score 0, error NaN, counted, not learnt. */
START_TEST(nonfinite_windows)
{
    const char *const ab[] = {"a", "b"};
    ew_harness *h = s_make(NULL, 2, ab,
                           (const char *[]){"window", "2", "layers", "1", "train_samples", "10",
                                            "epochs", "2", "background", "false", NULL});
    double v[2 * 15];
    for (int i = 0; i < 15; i++) {
        v[2 * i] = i;
        v[2 * i + 1] = -i;
    }
    v[2 * 3 + 1] = NAN;      /* windows ending at 3 and 4 hold it */
    v[2 * 8] = INFINITY;     /* windows ending at 8 and 9 */
    s_process(h, 15, v);
    /* Complete windows end at 1..14 (14 of them), 4 hold a non-finite value, so
     * the 10th finite window ends at sample 14. */
    ck_assert_uint_eq(ew_harness_counter(h, "autoencoder_nonfinite_windows"), 4);
    ck_assert(!ew_harness_learning(h));
    for (int i = 0; i < 15; i++)
        ck_assert(ew_harness_scores(h)[i] == 0 && isnan(ew_harness_extra(h)[i]));
    /* Scored now: a NaN gets no verdict, the next finite windows do. */
    const double w[] = {1, 2, NAN, 3, 4, 5, 6, 7};
    s_process(h, 4, w);
    const double *err = ew_harness_extra(h);
    ck_assert(isfinite(err[0]) && isnan(err[1]) && isnan(err[2]) && isfinite(err[3]));
    ck_assert(ew_harness_scores(h)[1] == 0 && ew_harness_flags(h)[1] == 0);
    ck_assert_uint_eq(ew_harness_counter(h, "autoencoder_nonfinite_windows"), 6);
    ew_harness_destroy(&h);
}
END_TEST

/* The blocked forward pass used for scoring equals the one-row pass used in
 * training and for the threshold, bit for bit. */
START_TEST(block_matches_single)
{
    for (int act = AE_TANH; act <= AE_SIGMOID; act++) {
        ae_net net;
        const size_t hidden[] = {6, 3};
        ck_assert_int_eq(ae_net_init(&net, 8, hidden, 2, (ae_activation)act), 0);
        ewp_rng rng;
        ewp_rng_seed(&rng, 5);
        for (size_t i = 0; i < net.nparams; i++)
            net.params[i] = ewp_rng_normal(&rng);
        double xt[8 * AE_BLOCK], row[8], errs[AE_BLOCK];
        double scratch[2 * 8 * AE_BLOCK];
        for (size_t i = 0; i < 8 * AE_BLOCK; i++)
            xt[i] = 3 * ewp_rng_normal(&rng);
        ae_net_error_block(&net, xt, AE_BLOCK - 3, errs, NULL, scratch);
        for (size_t s = 0; s < AE_BLOCK - 3; s++) {
            for (size_t j = 0; j < 8; j++)
                row[j] = xt[j * AE_BLOCK + s];
            double one = ae_net_error(&net, row, scratch);
            ck_assert_msg(memcmp(&one, &errs[s], sizeof one) == 0, "act %d row %zu: %.17g vs %.17g",
                          act, s, one, errs[s]);
        }
        ae_net_free(&net);
    }
}
END_TEST

START_TEST(option_errors)
{
    struct {
        const char *key, *value, *want;
    } cases[] = {
        {"layers", "", "layers"},
        {"layers", "6, 0", "layers item 2"},
        {"layers", "6, x", "whole number"},
        {"layers", "5000", "whole number"},
        {"window", "-1", "out of range"},
        {"layers", "auto, 3", "whole number"},
        {"on_model_mismatch", "ignore", "on_model_mismatch"},
        {"train_delay", "-1", "out of range"},
        {"activation", "softmax", "activation"},
        {"quantile", "1.5", "out of range"},
        {"validation", "0.95", "out of range"},
        {"train_samples", "1", "out of range"},
        {"layrs", "3", "unknown option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ew_harness *h = ew_harness_new(ew_plugin_entry(), s_fixture_state);
        ew_harness_input(h, 3, s_abc);
        ew_harness_option(h, cases[i].key, cases[i].value);
        ck_assert_int_ne(ew_harness_init(h), EW_OK);
        const char *msg = ew_harness_error(h);
        ck_assert_msg(strstr(msg, cases[i].want), "%s = %s: %s", cases[i].key, cases[i].value, msg);
        ew_harness_destroy(&h);
    }
    /* Too many inputs for the network. */
    const char *const five[] = {"a", "b", "c", "d", "e"};
    ew_harness *h = ew_harness_new(ew_plugin_entry(), s_fixture_state);
    ew_harness_input(h, 5, five);
    ew_harness_option(h, "window", "1000");
    ew_harness_option(h, "layers", "3");
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "smaller window"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

/* --bench: scoring throughput of the plugin alone (8 channels, window 1,
 * layers 6, 3) and training time, printed for tools/bench.d/autoencoder. */
static int s_bench(size_t train_n, size_t score_n)
{
    const char *const names[] = {"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"};
    char tn[32];
    snprintf(tn, sizeof tn, "%zu", train_n);
    char *state = strdup("/tmp/ew-ae-bench-XXXXXX");
    if (!mkdtemp(state)) {
        perror("mkdtemp");
        return 1;
    }
    ew_harness *h = ew_harness_new(ew_plugin_entry(), state);
    ew_harness_input(h, 8, names);
    ew_harness_option(h, "window", "1");
    ew_harness_option(h, "layers", "6, 3");
    ew_harness_option(h, "train_samples", tn);
    ew_harness_option(h, "background", "false");
    if (ew_harness_init(h) != EW_OK) {
        fprintf(stderr, "init: %s\n", ew_harness_error(h));
        return 1;
    }
    ewp_rng rng;
    ewp_rng_seed(&rng, 1);
    enum { BATCH = 1024 };
    size_t rows = train_n > BATCH ? train_n : BATCH;
    double *v = malloc(rows * 8 * sizeof *v);
    int64_t *ts = calloc(rows, sizeof *ts);
    for (size_t i = 0; i < rows; i++) {
        double u = ewp_rng_normal(&rng), w = ewp_rng_normal(&rng);
        for (int c = 0; c < 8; c++)
            v[8 * i + c] = (c % 2 ? u : w) * (1 + c) + 0.05 * ewp_rng_normal(&rng);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ew_harness_process(h, train_n, ts, v);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double train_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (ew_harness_learning(h)) {
        fprintf(stderr, "model not ready after training\n");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t done = 0;
    while (done < score_n) {
        ew_harness_process(h, BATCH, ts, v);
        done += BATCH;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double score_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("autoencoder training: %zu samples (8 channels, layers 6,3, default options) in %.3f s\n",
           train_n, train_s);
    printf("autoencoder scoring: %.0f samples/s (8 channels, window 1, layers 6,3; %zu samples in "
           "batches of %d, plugin alone)\n", (double)done / score_s, done, BATCH);
    free(v);
    free(ts);
    ew_harness_destroy(&h);
    ptest_tmpdir_free(state);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--bench") == 0) {
        size_t train_n = argc >= 3 ? strtoull(argv[2], NULL, 10) : 10000;
        size_t score_n = argc >= 4 ? strtoull(argv[3], NULL, 10) : 20000000;
        return s_bench(train_n, score_n);
    }
    Suite *s = suite_create("plugin-autoencoder");
    TCase *tc = tcase_create("autoencoder");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, descriptor_and_schema);
    tcase_add_test(tc, learns_correlation_and_flags_a_break);
    tcase_add_test(tc, contrib_points_at_the_broken_pair);
    tcase_add_test(tc, deterministic);
    tcase_add_test(tc, window_over_time);
    tcase_add_test(tc, early_stopping);
    tcase_add_test(tc, learning_then_ready);
    tcase_add_test(tc, flush_waits_for_training);
    tcase_add_test(tc, stop_abandons_a_long_training);
    tcase_add_test(tc, save_load_round_trip);
    tcase_add_test(tc, corrupt_file_is_moved_aside_and_relearnt);
    tcase_add_test(tc, invalid_payloads_are_rejected);
    tcase_add_test(tc, foreign_model_is_refused_or_relearnt);
    tcase_add_test(tc, background_does_not_block_before_the_apply_sample);
    tcase_add_test(tc, retrain_follows_a_lasting_change);
    tcase_add_test(tc, auto_window_and_layers);
    tcase_add_test(tc, nonfinite_windows);
    tcase_add_test(tc, block_matches_single);
    tcase_add_test(tc, option_errors);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
