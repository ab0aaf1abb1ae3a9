/* scoring: calibration of a detector's raw statistic, the anomaly flag and alert
 * events with attribution, for the host and the harness alike.
 *
 * Calibration ("anomaly likelihood", after Ahmad, Lavin, Purdy and Agha, 2017,
 * "Unsupervised real-time anomaly detection for streaming data", and the
 * likelihood post-processing that Numenta describes for NAB): the raw statistic
 * r of each sample enters a short moving average m (calibrate_average values).
 * The last calibrate_window averages are the stream's own history; their mean mu
 * and standard deviation sd are re-estimated every S_REESTIMATE samples. The tail
 * probability of the current average, tail = Q((m - mu) / sd) with Q the
 * standard normal's upper tail, says how unusual this much raw statistic is for
 * this stream. The score reports it on a log scale, score = -ln(tail) / ln(1e10)
 * clamped to [0, 1]: 0.3 is a one-in-1000 average, 0.5 one in 10^5, 1 one in
 * 10^10 or rarer. Two refinements keep it sharp: only the first sample of a run
 * of red-zone tails (<= 1e-5) keeps its tail, the rest of the run reads 1e-3
 * (a sustained excursion is one rise, not a thousand alarms), and an average
 * enters the history at most 10 sd above its mean (one glitch does not blind
 * the stage for a whole window). Measured choices: docs/detectors.md.
 *
 * Flag and events follow the likelihood before the red-zone rule (the score
 * says when something became unusual; the flag and the event say for how long
 * it stays so): an event opens once alert_delay samples in a row reached
 * alert_on (with calibrate = none and alert_on unset, the plugin's own flag)
 * and starts at the first of them, stays open while samples are at or above
 * alert_off (or flagged by the plugin), and closes once alert_hold
 * samples in a row, and at least alert_hold_time, were below it. Its end is the
 * last sample above alert_off. A sample is flagged anomalous while an event is
 * open and the sample holds it (so a lone spike shorter than alert_delay is
 * not flagged). The contributions of these samples are added up per channel; the
 * event names the alert_top channels with the largest sums, with their shares.
 */
#include "scoring.h"

#include <edgewatch/bytes.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Samples between two estimates of the history's mean and sd. */
#define S_REESTIMATE 100
/* sd never falls below this share of the history's mean (a constant raw
 * statistic would otherwise make any change infinitely unlikely), nor below
 * S_SD_FLOOR_ABS. */
#define S_SD_FLOOR_REL 0.01
#define S_SD_FLOOR_ABS 1e-6
/* Raw values above this are taken as this. */
#define S_RAW_MAX 1e150
/* History entries are clamped at mean + S_HIST_CLAMP sd. */
#define S_HIST_CLAMP 10.0
/* The red zone (tail <= 1e-5, score 0.5) and the yellow tail (1e-3, score 0.3)
 * that repeated red samples are reported as. */
#define S_LN_RED (-11.512925464970229)
#define S_LN_YELLOW (-6.907755278982137)
/* ln(1e10): the tail at which the score reaches 1. */
#define S_LN_TAIL_FULL 23.025850929940457
#define S_SAVE_MAGIC "EWCAL001"
#define S_SAVE_HEADER 48

void scoring_settings_default(scoring_settings *s)
{
    *s = (scoring_settings){
        .calibrate = SCORING_AUTO,
        .window = SCORING_DEFAULT_WINDOW,
        .average = SCORING_DEFAULT_AVERAGE,
        .warmup = SCORING_DEFAULT_WARMUP,
        .alert_on = NAN,
        .alert_off = NAN,
        .delay = SCORING_DEFAULT_DELAY,
        .hold = SCORING_DEFAULT_HOLD,
        .hold_ns = 0,
        .top = SCORING_DEFAULT_TOP,
    };
}

struct scoring {
    scoring_settings set;
    bool calibrate;
    char node[64];
    size_t channels;
    const char *const *names;

    /* Calibration. */
    double *avg_ring;   /* the last `average` transformed raw values */
    size_t avg_len, avg_head;
    double avg_sum;
    size_t avg_pushes;  /* since avg_sum was last recomputed from the ring */
    double *hist;       /* the last `window` short averages */
    size_t hist_len, hist_head;
    size_t since_estimate;
    bool estimated;
    bool prev_red;      /* the previous sample's tail was in the red zone */
    double mu, sd;

    /* The event being tracked. */
    bool open;
    uint64_t next_id;
    int64_t start, last_active_ts, peak_ts, below_since;
    double peak;
    uint64_t samples_active; /* samples from start to the last active one */
    uint64_t samples_since;  /* samples since the last active one */
    uint64_t below;          /* consecutive samples below alert_off */
    uint64_t pending;        /* consecutive samples at alert_on while no event is open */
    double *share_sum;       /* per channel */
    ew_event_channel *top;   /* scratch for the event handed out */
};

scoring *scoring_new(const scoring_settings *s, const char *node, size_t channels, const char *const *names,
                     bool plugin_calibrated)
{
    scoring *sc = calloc(1, sizeof *sc);
    if (!sc)
        return NULL;
    sc->set = *s;
    if (sc->set.window < 2)
        sc->set.window = 2;
    if (sc->set.average < 1)
        sc->set.average = 1;
    if (sc->set.top < 0)
        sc->set.top = 0;
    sc->calibrate = s->calibrate == SCORING_LIKELIHOOD || (s->calibrate == SCORING_AUTO && !plugin_calibrated);
    if (sc->calibrate && isnan(sc->set.alert_on))
        sc->set.alert_on = SCORING_DEFAULT_ALERT_ON;
    if (!isnan(sc->set.alert_on) && isnan(sc->set.alert_off))
        sc->set.alert_off = sc->set.alert_on * (SCORING_DEFAULT_ALERT_OFF / SCORING_DEFAULT_ALERT_ON);
    if (!isnan(sc->set.alert_off) && !isnan(sc->set.alert_on) && sc->set.alert_off > sc->set.alert_on)
        sc->set.alert_off = sc->set.alert_on;
    snprintf(sc->node, sizeof sc->node, "%s", node ? node : "");
    sc->channels = channels;
    sc->names = names;
    sc->next_id = 1;
    size_t top = (size_t)sc->set.top < channels ? (size_t)sc->set.top : channels;
    sc->share_sum = calloc(channels ? channels : 1, sizeof *sc->share_sum);
    sc->top = calloc(top ? top : 1, sizeof *sc->top);
    if (sc->calibrate) {
        sc->avg_ring = calloc((size_t)sc->set.average, sizeof *sc->avg_ring);
        sc->hist = calloc((size_t)sc->set.window, sizeof *sc->hist);
    }
    if (!sc->share_sum || !sc->top || (sc->calibrate && (!sc->avg_ring || !sc->hist))) {
        scoring_destroy(&sc);
        return NULL;
    }
    return sc;
}

bool scoring_calibrates(const scoring *sc)
{
    return sc && sc->calibrate;
}

void scoring_destroy(scoring **scp)
{
    if (!scp || !*scp)
        return;
    scoring *sc = *scp;
    free(sc->avg_ring);
    free(sc->hist);
    free(sc->share_sum);
    free(sc->top);
    free(sc);
    *scp = NULL;
}

/* Two passes over the history: its mean, then its spread around it. */
static void s_estimate(scoring *sc)
{
    size_t n = sc->hist_len;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += sc->hist[i];
    double mu = sum / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = sc->hist[i] - mu;
        ss += d * d;
    }
    double sd = n > 1 ? sqrt(ss / (double)(n - 1)) : 0;
    double floor = fabs(mu) * S_SD_FLOOR_REL;
    if (floor < S_SD_FLOOR_ABS)
        floor = S_SD_FLOOR_ABS;
    sc->mu = mu;
    sc->sd = sd > floor ? sd : floor;
    sc->estimated = true;
    sc->since_estimate = 0;
}

static void s_hist_push(scoring *sc, double v)
{
    size_t cap = (size_t)sc->set.window;
    sc->hist[sc->hist_head] = v;
    sc->hist_head = (sc->hist_head + 1) % cap;
    if (sc->hist_len < cap)
        sc->hist_len++;
}

/* The short average of the last `average` values, after adding `v`. */
static double s_average(scoring *sc, double v)
{
    size_t cap = (size_t)sc->set.average;
    if (sc->avg_len == cap)
        sc->avg_sum -= sc->avg_ring[sc->avg_head];
    else
        sc->avg_len++;
    sc->avg_ring[sc->avg_head] = v;
    sc->avg_head = (sc->avg_head + 1) % cap;
    sc->avg_sum += v;
    /* The running sum drifts by rounding: rebuild it once per turn of the ring. */
    if (++sc->avg_pushes >= cap) {
        double s = 0;
        for (size_t i = 0; i < sc->avg_len; i++)
            s += sc->avg_ring[i];
        sc->avg_sum = s;
        sc->avg_pushes = 0;
    }
    return sc->avg_sum / (double)sc->avg_len;
}

/* The calibrated score of one raw value, or NaN while the history is too short;
 * *level is the same before the red-zone rule, which the flag and events follow. */
static double s_likelihood(scoring *sc, double raw, double *level)
{
    double v = raw > 0 ? raw : 0;
    if (!(v < S_RAW_MAX))
        v = S_RAW_MAX; /* sums of the history stay finite */
    double m = s_average(sc, v);
    double score = NAN;
    *level = NAN;
    if (sc->estimated && sc->hist_len >= (size_t)sc->set.warmup) {
        double z = (m - sc->mu) / sc->sd;
        /* ln of the upper tail; erfc underflows past z of about 38, where the
         * asymptotic ln Q(z) ~ -z^2/2 - ln(z sqrt(2 pi)) is exact enough. */
        double ln_tail = z < 30 ? log(0.5 * erfc(z / M_SQRT2)) : -0.5 * z * z - log(z * 2.5066282746310002);
        double full = -ln_tail / S_LN_TAIL_FULL;
        *level = full < 0 ? 0 : full > 1 ? 1 : full;
        /* Only the first sample of a run in the red zone keeps its tail: the rest of
         * the run reads as yellow, so a sustained excursion is one sharp rise. */
        bool red = ln_tail <= S_LN_RED;
        if (red && sc->prev_red)
            ln_tail = S_LN_YELLOW;
        sc->prev_red = red;
        score = -ln_tail / S_LN_TAIL_FULL;
        score = score < 0 ? 0 : score > 1 ? 1 : score;
    }
    /* An outlier enters the history at most S_HIST_CLAMP sd above its mean, so that
     * one glitch does not blind the stage for a whole window. */
    if (sc->estimated && m > sc->mu + S_HIST_CLAMP * sc->sd)
        m = sc->mu + S_HIST_CLAMP * sc->sd;
    s_hist_push(sc, m);
    if (++sc->since_estimate >= S_REESTIMATE || (!sc->estimated && sc->hist_len >= (size_t)sc->set.warmup))
        s_estimate(sc);
    return score;
}

/* Adds one sample's contributions to the event's sums: large contributions weigh
 * more than the small ones of the samples that trail an excursion. */
static void s_attribute(scoring *sc, const double *row)
{
    if (!row)
        return;
    for (size_t c = 0; c < sc->channels; c++)
        if (isfinite(row[c]) && row[c] > 0)
            sc->share_sum[c] += row[c] < S_RAW_MAX ? row[c] : S_RAW_MAX;
}

/* Fills the event handed to sinks from the tracker. */
static void s_event(scoring *sc, ew_event *ev, ew_event_state state)
{
    size_t k = (size_t)sc->set.top < sc->channels ? (size_t)sc->set.top : sc->channels;
    double total = 0;
    for (size_t c = 0; c < sc->channels; c++)
        total += sc->share_sum[c];
    size_t n = 0;
    if (total > 0) {
        /* Selection of the k largest: k is small and channels are few thousand at most. */
        for (; n < k; n++) {
            size_t best = sc->channels;
            for (size_t c = 0; c < sc->channels; c++) {
                bool taken = false;
                for (size_t j = 0; j < n && !taken; j++)
                    taken = strcmp(sc->top[j].name, sc->names[c]) == 0;
                if (!taken && sc->share_sum[c] > 0 && (best == sc->channels || sc->share_sum[c] > sc->share_sum[best]))
                    best = c;
            }
            if (best == sc->channels)
                break;
            sc->top[n] = (ew_event_channel){sc->names[best], sc->share_sum[best] / total};
        }
    }
    *ev = (ew_event){
        .struct_size = sizeof(ew_event),
        .state = state,
        .node = sc->node,
        .id = sc->next_id,
        .start = sc->start,
        .end = state == EW_EVENT_CLOSED ? sc->last_active_ts : 0,
        .peak_ts = sc->peak_ts,
        .peak_score = sc->peak,
        .samples = sc->samples_active,
        .n_channels = n,
        .channels = sc->top,
    };
}

static int s_close(scoring *sc, scoring_event_fn emit, void *ctx)
{
    ew_event ev;
    s_event(sc, &ev, EW_EVENT_CLOSED);
    sc->open = false;
    sc->next_id++;
    return emit ? emit(ctx, &ev) : 0;
}

int scoring_apply(scoring *sc, size_t count, const int64_t *ts, ew_scores *out, scoring_event_fn emit, void *ctx,
                  uint64_t *events)
{
    int result = 0;
    bool use_level = !isnan(sc->set.alert_on);
    for (size_t i = 0; i < count; i++) {
        const uint8_t learning = out->learning ? out->learning[i] : 0;
        double raw = out->raw && !isnan(out->raw[i]) ? out->raw[i] : out->score[i];
        double s, level; /* the score written, and the level the flag and events follow */
        if (learning || isnan(raw)) {
            s = level = NAN;
        } else if (sc->calibrate) {
            s = s_likelihood(sc, raw, &level);
        } else {
            s = out->score[i];
            s = level = isnan(s) ? NAN : s < 0 ? 0 : s > 1 ? 1 : s;
        }
        if (isnan(level)) {
            out->score[i] = s;
            out->anomaly[i] = 0;
            continue; /* learning or unscored: neither opens nor holds an event */
        }
        /* on: opens an event; keep: holds an open one (hysteresis). */
        bool on = use_level ? level >= sc->set.alert_on : out->anomaly[i] != 0;
        bool keep = use_level ? level >= sc->set.alert_off : on;
        const double *row = out->contrib ? out->contrib + i * out->contrib_channels : NULL;
        out->score[i] = s;
        out->anomaly[i] = 0;
        if (!sc->open) {
            if (!on) {
                sc->pending = 0;
                continue;
            }
            /* An event opens after alert_delay samples in a row at alert_on (an
             * on-delay, as alarm management calls it): a lone spike opens none. */
            if (sc->pending++ == 0) {
                sc->start = sc->peak_ts = ts[i];
                sc->peak = level;
                memset(sc->share_sum, 0, sc->channels * sizeof *sc->share_sum);
            } else if (level > sc->peak) {
                sc->peak = level;
                sc->peak_ts = ts[i];
            }
            s_attribute(sc, row);
            if (sc->pending < (uint64_t)(sc->set.delay > 0 ? sc->set.delay : 1))
                continue;
            sc->open = true;
            sc->pending = 0;
            sc->last_active_ts = ts[i];
            sc->samples_active = (uint64_t)(sc->set.delay > 0 ? sc->set.delay : 1);
            sc->samples_since = 0;
            sc->below = 0;
            out->anomaly[i] = 1;
            if (events)
                (*events)++;
            ew_event ev;
            s_event(sc, &ev, EW_EVENT_OPEN);
            int rc = emit ? emit(ctx, &ev) : 0;
            if (rc && !result)
                result = rc;
            continue;
        }
        sc->samples_since++;
        if (keep) {
            out->anomaly[i] = 1;
            sc->samples_active += sc->samples_since;
            sc->samples_since = 0;
            sc->last_active_ts = ts[i];
            sc->below = 0;
            if (level > sc->peak) {
                sc->peak = level;
                sc->peak_ts = ts[i];
            }
            s_attribute(sc, row);
            continue;
        }
        if (sc->below++ == 0)
            sc->below_since = ts[i];
        if (sc->below >= (uint64_t)(sc->set.hold > 0 ? sc->set.hold : 1) && ts[i] - sc->below_since >= sc->set.hold_ns) {
            int rc = s_close(sc, emit, ctx);
            if (rc && !result)
                result = rc;
        }
    }
    return result;
}

int scoring_finish(scoring *sc, scoring_event_fn emit, void *ctx)
{
    if (!sc || !sc->open)
        return 0;
    return s_close(sc, emit, ctx);
}

void *scoring_save(const scoring *sc, size_t *len)
{
    if (!sc || !sc->calibrate || sc->hist_len == 0)
        return NULL; /* nothing learnt: leave no file behind */
    size_t n = S_SAVE_HEADER + (sc->hist_len + sc->avg_len) * 8;
    unsigned char *buf = malloc(n), *p = buf;
    if (!buf)
        return NULL;
    memcpy(p, S_SAVE_MAGIC, 8);
    ew_le_put64(p + 8, (uint64_t)sc->set.window);
    ew_le_put64(p + 16, (uint64_t)sc->set.average);
    ew_le_put64(p + 24, sc->hist_len);
    ew_le_put64(p + 32, sc->avg_len);
    ew_le_put64(p + 40, 0);
    p += S_SAVE_HEADER;
    /* Oldest first, so that a load can push them back in order. */
    size_t cap = (size_t)sc->set.window, start = (sc->hist_head + cap - sc->hist_len) % cap;
    for (size_t i = 0; i < sc->hist_len; i++, p += 8)
        ew_le_put_f64(p, sc->hist[(start + i) % cap]);
    size_t acap = (size_t)sc->set.average, astart = (sc->avg_head + acap - sc->avg_len) % acap;
    for (size_t i = 0; i < sc->avg_len; i++, p += 8)
        ew_le_put_f64(p, sc->avg_ring[(astart + i) % acap]);
    *len = n;
    return buf;
}

int scoring_load(scoring *sc, const void *data, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = data;
    if (!sc->calibrate) {
        snprintf(err, errlen, "the node does not calibrate (calibrate = none); history ignored");
        return -1;
    }
    if (len < S_SAVE_HEADER || memcmp(p, S_SAVE_MAGIC, 8) != 0) {
        snprintf(err, errlen, "not a calibration history (bad magic or %zu bytes)", len);
        return -1;
    }
    uint64_t window = ew_le_get64(p + 8), average = ew_le_get64(p + 16);
    uint64_t hist_len = ew_le_get64(p + 24), avg_len = ew_le_get64(p + 32);
    if (window != (uint64_t)sc->set.window || average != (uint64_t)sc->set.average) {
        snprintf(err, errlen,
                 "history saved with calibrate_window = %llu and calibrate_average = %llu, the node now has %lld "
                 "and %lld: starting a new history",
                 (unsigned long long)window, (unsigned long long)average, (long long)sc->set.window,
                 (long long)sc->set.average);
        return -1;
    }
    if (hist_len > window || avg_len > average || len != S_SAVE_HEADER + (hist_len + avg_len) * 8) {
        snprintf(err, errlen, "calibration history is inconsistent (%zu bytes)", len);
        return -1;
    }
    p += S_SAVE_HEADER;
    for (uint64_t i = 0; i < hist_len; i++, p += 8) {
        double v = ew_le_get_f64(p);
        if (!isfinite(v)) {
            snprintf(err, errlen, "calibration history holds a value that is not finite");
            sc->hist_len = sc->hist_head = 0;
            return -1;
        }
        s_hist_push(sc, v);
    }
    sc->avg_len = sc->avg_head = 0;
    sc->avg_sum = 0;
    for (uint64_t i = 0; i < avg_len; i++, p += 8) {
        double v = ew_le_get_f64(p);
        if (!isfinite(v)) {
            snprintf(err, errlen, "calibration history holds a value that is not finite");
            sc->hist_len = sc->hist_head = sc->avg_len = sc->avg_head = 0;
            sc->avg_sum = 0;
            return -1;
        }
        sc->avg_ring[sc->avg_head] = v;
        sc->avg_head = (sc->avg_head + 1) % (size_t)sc->set.average;
        sc->avg_len++;
        sc->avg_sum += v;
    }
    if (sc->hist_len >= 2 && sc->hist_len >= (size_t)sc->set.warmup)
        s_estimate(sc);
    return 0;
}
