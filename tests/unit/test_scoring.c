/* Unit tests for core/scoring.c: the likelihood calibration, the anomaly flag,
 * alert events with hysteresis, hold and attribution, and the saved history. */
#include "scoring.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX 4096
#define S_CH 4

static const char *const s_names[S_CH] = {"a", "b", "c", "d"};

/* What the plugin would have written for a batch, and what the stage emitted. */
typedef struct s_batch {
    size_t count;
    int64_t ts[S_MAX];
    double score[S_MAX], raw[S_MAX], contrib[S_MAX * S_CH];
    uint8_t anomaly[S_MAX], learning[S_MAX];
    ew_scores out;
} s_batch;

typedef struct s_events {
    size_t n;
    ew_event ev[64];
    char top[64][8]; /* the first channel named by each event */
    size_t n_channels[64];
} s_events;

static int s_collect(void *ctx, const ew_event *ev)
{
    s_events *e = ctx;
    ck_assert_uint_lt(e->n, 64);
    e->ev[e->n] = *ev;
    e->n_channels[e->n] = ev->n_channels;
    snprintf(e->top[e->n], sizeof e->top[0], "%s", ev->n_channels ? ev->channels[0].name : "");
    if (ev->n_channels > 1)
        ck_assert(ev->channels[0].share >= ev->channels[1].share);
    e->n++;
    return 0;
}

/* A deterministic noise in [0, 1). */
static double s_noise(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0;
}

static s_batch *s_new_batch(size_t count)
{
    s_batch *b = calloc(1, sizeof *b);
    b->count = count;
    for (size_t i = 0; i < count; i++) {
        b->ts[i] = (int64_t)i * 1000000000LL;
        b->score[i] = NAN;
        b->raw[i] = NAN;
        for (size_t c = 0; c < S_CH; c++)
            b->contrib[i * S_CH + c] = NAN;
    }
    b->out = (ew_scores){b->score, b->anomaly, NULL, 0, b->raw, b->contrib, S_CH, b->learning};
    return b;
}

static scoring *s_stage(int calibrate, double on, double off, int64_t hold)
{
    scoring_settings set;
    scoring_settings_default(&set);
    set.calibrate = calibrate;
    set.alert_on = on;
    set.alert_off = off;
    set.hold = hold;
    set.warmup = 100;
    set.window = 1000;
    scoring *sc = scoring_new(&set, "det", S_CH, s_names, false);
    ck_assert_ptr_nonnull(sc);
    return sc;
}

START_TEST(test_likelihood_scores_a_spike_and_not_the_noise)
{
    s_batch *b = s_new_batch(2000);
    uint64_t rng = 1;
    for (size_t i = 0; i < b->count; i++)
        b->raw[i] = 1 + s_noise(&rng);
    for (size_t i = 1500; i < 1520; i++)
        b->raw[i] = 40;
    scoring *sc = s_stage(SCORING_LIKELIHOOD, NAN, NAN, 10);
    s_events ev = {0};
    uint64_t opened = 0;
    ck_assert_int_eq(scoring_apply(sc, b->count, b->ts, &b->out, s_collect, &ev, &opened), 0);
    /* The first averages are the history: not scored yet. */
    ck_assert(isnan(b->score[0]));
    ck_assert(isnan(b->score[98]));
    ck_assert(!isnan(b->score[100]));
    size_t flagged_before = 0;
    for (size_t i = 100; i < 1500; i++) {
        ck_assert(b->score[i] >= 0 && b->score[i] <= 1);
        flagged_before += b->anomaly[i];
    }
    ck_assert_uint_eq(flagged_before, 0);
    /* The spike: one sharp rise to the top, then the run reads as yellow (0.3). */
    double peak = 0;
    for (size_t i = 1500; i < 1530; i++)
        peak = b->score[i] > peak ? b->score[i] : peak;
    ck_assert_double_eq_tol(peak, 1.0, 1e-12);
    ck_assert_double_eq_tol(b->score[1515], 0.3, 1e-9);
    ck_assert(b->anomaly[1515]);
    /* One event for the whole spike, opened and closed. */
    ck_assert_uint_eq(opened, 1);
    ck_assert_uint_eq(ev.n, 2);
    ck_assert_int_eq(ev.ev[0].state, EW_EVENT_OPEN);
    ck_assert_int_eq(ev.ev[1].state, EW_EVENT_CLOSED);
    ck_assert_uint_eq(ev.ev[0].id, ev.ev[1].id);
    ck_assert_int_ge(ev.ev[1].start, b->ts[1500]);
    ck_assert_int_lt(ev.ev[1].start, b->ts[1505]);
    ck_assert_int_ge(ev.ev[1].end, ev.ev[1].start);
    ck_assert_double_eq_tol(ev.ev[1].peak_score, 1.0, 1e-12);
    ck_assert_str_eq(ev.ev[1].node, "det");
    scoring_destroy(&sc);
    ck_assert_ptr_null(sc);
    free(b);
}
END_TEST

START_TEST(test_learning_and_missing_samples_are_not_scored)
{
    s_batch *b = s_new_batch(10);
    for (size_t i = 0; i < 10; i++) {
        b->score[i] = 0.9;
        b->anomaly[i] = 1;
        b->learning[i] = i < 5;
    }
    b->score[7] = NAN; /* the plugin wrote nothing for this one */
    scoring *sc = s_stage(SCORING_NONE, NAN, NAN, 1);
    ck_assert(!scoring_calibrates(sc));
    uint64_t opened = 0;
    ck_assert_int_eq(scoring_apply(sc, b->count, b->ts, &b->out, NULL, NULL, &opened), 0);
    for (size_t i = 0; i < 5; i++) {
        ck_assert(isnan(b->score[i]));
        ck_assert_uint_eq(b->anomaly[i], 0);
    }
    ck_assert(isnan(b->score[7]));
    ck_assert_uint_eq(b->anomaly[7], 0);
    ck_assert_double_eq(b->score[5], 0.9);
    ck_assert_uint_eq(b->anomaly[5], 1);
    ck_assert_uint_eq(opened, 1);
    scoring_destroy(&sc);
    free(b);
}

END_TEST

START_TEST(test_auto_keeps_a_calibrated_plugin_score)
{
    scoring_settings set;
    scoring_settings_default(&set);
    scoring *sc = scoring_new(&set, "det", S_CH, s_names, true);
    ck_assert(!scoring_calibrates(sc));
    scoring_destroy(&sc);
    sc = scoring_new(&set, "det", S_CH, s_names, false);
    ck_assert(scoring_calibrates(sc));
    scoring_destroy(&sc);
}
END_TEST

/* calibrate = none with alert levels: hysteresis and hold decide the events. */
START_TEST(test_hysteresis_and_hold)
{
    s_batch *b = s_new_batch(60);
    static const double level[60] = {
        0, 0, 0.6, 0.4, 0.2, 0.2, 0.4, 0.1, 0.1, 0.1, 0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* one event: 2..6 */
        0.7, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.1, 0,                                   /* one: dips < hold */
    };
    for (size_t i = 0; i < 60; i++)
        b->score[i] = level[i];
    scoring *sc = s_stage(SCORING_NONE, 0.5, 0.3, 4);
    s_events ev = {0};
    uint64_t opened = 0;
    ck_assert_int_eq(scoring_apply(sc, b->count, b->ts, &b->out, s_collect, &ev, &opened), 0);
    ck_assert_uint_eq(opened, 2);
    ck_assert_uint_eq(ev.n, 4);
    ck_assert_int_eq(ev.ev[1].start, b->ts[2]);
    ck_assert_int_eq(ev.ev[1].end, b->ts[6]); /* the last sample at or above alert_off */
    ck_assert_uint_eq(ev.ev[1].samples, 5);
    ck_assert_double_eq(ev.ev[1].peak_score, 0.6);
    ck_assert_int_eq(ev.ev[1].peak_ts, b->ts[2]);
    /* Flags follow the event: above alert_off while it is open. */
    ck_assert_uint_eq(b->anomaly[2], 1);
    ck_assert_uint_eq(b->anomaly[3], 1);
    ck_assert_uint_eq(b->anomaly[4], 0);
    ck_assert_uint_eq(b->anomaly[6], 1);
    ck_assert_uint_eq(b->anomaly[7], 0);
    /* The second: 20 and 23 are one event because the dip is shorter than the hold. */
    ck_assert_int_eq(ev.ev[3].start, b->ts[20]);
    ck_assert_int_eq(ev.ev[3].end, b->ts[23]);
    ck_assert_double_eq(ev.ev[3].peak_score, 0.8);
    scoring_destroy(&sc);
    free(b);
}
END_TEST

/* alert_delay: a lone spike opens nothing; a run opens one event dated from its start. */
START_TEST(test_on_delay)
{
    s_batch *b = s_new_batch(30);
    static const double level[30] = {0, 0.9, 0, 0, 0.9, 0.9, 0, 0, 0, 0, 0.9, 0.9, 0.9, 0.9, 0};
    for (size_t i = 0; i < 30; i++)
        b->score[i] = level[i];
    scoring_settings set;
    scoring_settings_default(&set);
    set.calibrate = SCORING_NONE;
    set.alert_on = 0.5;
    set.delay = 3;
    set.hold = 2;
    scoring *sc = scoring_new(&set, "det", S_CH, s_names, false);
    s_events ev = {0};
    uint64_t opened = 0;
    ck_assert_int_eq(scoring_apply(sc, b->count, b->ts, &b->out, s_collect, &ev, &opened), 0);
    ck_assert_uint_eq(opened, 1);
    ck_assert_uint_eq(ev.n, 2);
    ck_assert_int_eq(ev.ev[1].start, b->ts[10]);
    ck_assert_int_eq(ev.ev[1].end, b->ts[13]);
    ck_assert_uint_eq(ev.ev[1].samples, 4);
    for (size_t i = 0; i < 12; i++)
        ck_assert_uint_eq(b->anomaly[i], 0); /* pending samples are not flagged */
    ck_assert_uint_eq(b->anomaly[12], 1);
    ck_assert_uint_eq(b->anomaly[13], 1);
    ck_assert_uint_eq(b->anomaly[14], 0);
    scoring_destroy(&sc);
    free(b);
}
END_TEST

START_TEST(test_attribution_ranks_the_contributing_channel)
{
    s_batch *b = s_new_batch(30);
    for (size_t i = 0; i < 30; i++) {
        bool fault = i >= 10 && i < 15;
        b->score[i] = fault ? 0.9 : 0.1;
        for (size_t c = 0; c < S_CH; c++)
            b->contrib[i * S_CH + c] = c == 2 && fault ? 10.0 : c == 1 ? 1.0 : 0.5;
    }
    scoring_settings set;
    scoring_settings_default(&set);
    set.calibrate = SCORING_NONE;
    set.alert_on = 0.5;
    set.hold = 3;
    set.top = 2;
    scoring *sc = scoring_new(&set, "det", S_CH, s_names, false);
    s_events ev = {0};
    ck_assert_int_eq(scoring_apply(sc, b->count, b->ts, &b->out, s_collect, &ev, NULL), 0);
    ck_assert_uint_eq(ev.n, 2);
    ck_assert_str_eq(ev.top[1], "c");
    ck_assert_uint_eq(ev.n_channels[1], 2);
    ck_assert_double_eq_tol(ev.ev[1].channels[0].share, 10.0 / 12.0, 1e-12);
    scoring_destroy(&sc);
    free(b);
}
END_TEST

START_TEST(test_finish_closes_an_open_event)
{
    s_batch *b = s_new_batch(5);
    for (size_t i = 0; i < 5; i++)
        b->score[i] = i >= 3 ? 0.9 : 0.0;
    scoring *sc = s_stage(SCORING_NONE, 0.5, 0.3, 10);
    s_events ev = {0};
    ck_assert_int_eq(scoring_apply(sc, b->count, b->ts, &b->out, s_collect, &ev, NULL), 0);
    ck_assert_uint_eq(ev.n, 1);
    ck_assert_int_eq(scoring_finish(sc, s_collect, &ev), 0);
    ck_assert_uint_eq(ev.n, 2);
    ck_assert_int_eq(ev.ev[1].state, EW_EVENT_CLOSED);
    ck_assert_int_eq(ev.ev[1].end, b->ts[4]);
    ck_assert_int_eq(scoring_finish(sc, s_collect, &ev), 0);
    ck_assert_uint_eq(ev.n, 2); /* nothing left open */
    scoring_destroy(&sc);
    free(b);
}
END_TEST

START_TEST(test_history_survives_a_restart)
{
    s_batch *b = s_new_batch(400), *c = s_new_batch(400), *d = s_new_batch(400);
    uint64_t rng = 7;
    for (size_t i = 0; i < 400; i++)
        b->raw[i] = c->raw[i] = d->raw[i] = s_noise(&rng);
    memcpy(c->raw, b->raw, sizeof b->raw);
    scoring *one = s_stage(SCORING_LIKELIHOOD, NAN, NAN, 10);
    ck_assert_ptr_null(scoring_save(one, &(size_t){0})); /* nothing learnt, nothing saved */
    ck_assert_int_eq(scoring_apply(one, 200, b->ts, &b->out, NULL, NULL, NULL), 0);
    size_t len = 0;
    void *saved = scoring_save(one, &len);
    ck_assert_ptr_nonnull(saved);
    /* A restarted stage with the saved history scores as the one that went on. */
    scoring *two = s_stage(SCORING_LIKELIHOOD, NAN, NAN, 10);
    char err[300];
    ck_assert_int_eq(scoring_load(two, saved, len, err, sizeof err), 0);
    ew_scores rest1 = b->out, rest2 = c->out;
    rest1.score += 200, rest1.anomaly += 200, rest1.raw += 200, rest1.learning += 200, rest1.contrib += 200 * S_CH;
    rest2.score += 200, rest2.anomaly += 200, rest2.raw += 200, rest2.learning += 200, rest2.contrib += 200 * S_CH;
    ck_assert_int_eq(scoring_apply(one, 200, b->ts + 200, &rest1, NULL, NULL, NULL), 0);
    ck_assert_int_eq(scoring_apply(two, 200, c->ts + 200, &rest2, NULL, NULL, NULL), 0);
    for (size_t i = 200; i < 400; i++)
        ck_assert_double_eq_tol(b->score[i], c->score[i], 1e-9);
    /* Other options, or damaged bytes: refused with a reason, history left empty. */
    scoring_settings set;
    scoring_settings_default(&set);
    set.window = 999;
    scoring *other = scoring_new(&set, "det", S_CH, s_names, false);
    ck_assert_int_eq(scoring_load(other, saved, len, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "calibrate_window = 1000"));
    ((unsigned char *)saved)[0] ^= 0xff;
    ck_assert_int_eq(scoring_load(two, saved, len, err, sizeof err), -1);
    ck_assert_int_eq(scoring_load(two, saved, 3, err, sizeof err), -1);
    free(saved);
    scoring_destroy(&one);
    scoring_destroy(&two);
    scoring_destroy(&other);
    free(b);
    free(c);
    free(d);
}
END_TEST

START_TEST(test_huge_raw_values_stay_finite)
{
    s_batch *b = s_new_batch(1000);
    uint64_t rng = 3;
    for (size_t i = 0; i < 1000; i++)
        b->raw[i] = i == 500 ? 1e300 : i == 600 ? INFINITY : s_noise(&rng);
    scoring *sc = s_stage(SCORING_LIKELIHOOD, NAN, NAN, 10);
    ck_assert_int_eq(scoring_apply(sc, b->count, b->ts, &b->out, NULL, NULL, NULL), 0);
    for (size_t i = 100; i < 1000; i++)
        ck_assert(b->score[i] >= 0 && b->score[i] <= 1);
    ck_assert_double_eq_tol(b->score[500], 1.0, 1e-12);
    /* One glitch does not blind the stage: a later spike still reads as unusual. */
    ck_assert(b->score[600] > 0.5);
    scoring_destroy(&sc);
    free(b);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("scoring");
    TCase *tc = tcase_create("scoring");
    tcase_add_test(tc, test_likelihood_scores_a_spike_and_not_the_noise);
    tcase_add_test(tc, test_learning_and_missing_samples_are_not_scored);
    tcase_add_test(tc, test_auto_keeps_a_calibrated_plugin_score);
    tcase_add_test(tc, test_hysteresis_and_hold);
    tcase_add_test(tc, test_on_delay);
    tcase_add_test(tc, test_attribution_ranks_the_contributing_channel);
    tcase_add_test(tc, test_finish_closes_an_open_event);
    tcase_add_test(tc, test_history_survives_a_restart);
    tcase_add_test(tc, test_huge_raw_values_stay_finite);
    suite_add_tcase(s, tc);
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
