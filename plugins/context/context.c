/* context: a univariate streaming detector for each channel, built to find the
 * anomalies of the NAB corpus with one configuration: three simple tests on
 * every value, the strongest of which is the sample's statistic, and a rest
 * period after each alarm.
 *
 *     [detector.pump_ctx]
 *     plugin = context
 *     input = pump
 *
 * Per channel, each finite value x is judged by
 *  - a rolling z-score: |x - mean| / sd over the previous `window` values;
 *  - a new-extreme rule: once `settle` values are in, x beyond the running
 *    minimum or maximum by more than `extreme_margin` of the range seen so
 *    far (cut back to the last era's when that spans less than half of
 *    it) is as unusual as anything can be (z_cap);
 *  - a context-novelty test, after Smirnov's contextual anomaly detector
 *    (CAD OSE, NAB 2016): x is quantised into `bins` levels of the running
 *    range; the last `context` levels followed by x's level form a context;
 *    a context not met in the last one to two eras of `forget` values is a
 *    novelty. Novelties are common in noisy data and rare in regular data,
 *    so the test is a binomial z of the novelty rate of the last `short`
 *    values against the rate of the last `window` values: a burst of new
 *    contexts (a changed shape, frequency or rhythm; at least two of them)
 *    stands out however noisy the channel normally is.
 * The channel's statistic is the largest of the three z, at most z_cap; the
 * sample's is the largest over channels (raw), each channel's its contrib.
 * score = z^2 / (z^2 + threshold^2): 0.5 at the threshold, comparable across
 * streams. After a sample at or above the threshold, the next `rest` samples
 * score 0 (CAD OSE's rest period): one incident is one alarm, not a burst.
 *
 * Memory per channel: the window's values (8 bytes each), its novelty marks
 * (1 byte each), and two bitmaps of bins^(context+1) bits (128 bytes at the
 * defaults); time per value O(1).
 * The defaults were measured on the NAB corpus (README.md).
 */
#include <edgewatch/plugin.h>

#include "ewplug.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest statistic written: an infinite z (a flat window and a
 * different value) or a new extreme. Finite, so that the host's calibration
 * of `raw` can average it; score there is 1 - 1e-4 at the default threshold. */
#define S_Z_CAP 1000.0
/* Values beyond this magnitude are treated as missing: their squares would
 * overflow the rolling sums, and no physical reading is that large. */
#define S_VALUE_LIMIT 1e100
/* New contexts that make a burst: after a long spell without any, one new
 * context alone would stand 13 sd above the usual rate, and noise near a level
 * boundary makes one now and then (NAB: 64.44 with 2, 64.66 with 1). */
#define S_MIN_NOVELTIES 2
/* The running range is cut back to the last era's when that spans less than
 * this share of it (a glitch, or a channel that has settled down). */
#define S_RANGE_SHRINK 0.5
/* Most context bits a channel may hold (bins^(context+1)): 128 KiB. */
#define S_MAX_CONTEXTS (1u << 20)

typedef struct context_config {
    int64_t window;
    double threshold;
    int64_t warmup;
    int64_t settle;
    double extreme_margin;
    int64_t bins;
    int64_t context;
    int64_t short_window;
    int64_t rest;
    int64_t forget;
} context_config;

/* One scored input channel. */
typedef struct s_channel {
    size_t column;      /* index in the input row */
    uint64_t seen;      /* usable values so far */
    ewp_rollvar rv;     /* the z-score window */
    double lo, hi;      /* running range (cut back to the last era's, see S_RANGE_SHRINK) */
    double era_lo[2], era_hi[2]; /* range of each era's own values */
    uint32_t ctx;       /* the last `context` levels, base `bins` */
    uint8_t *known;     /* two bitmaps of contexts met: the current and the previous era */
    int era;            /* which of the two is current */
    uint64_t era_left;  /* values until the next era begins (forget > 0) */
    uint8_t *novel;     /* ring of the last `window` novelty marks */
    size_t novel_head, novel_count, novel_sum;
    size_t short_sum;   /* novelties among the last `short` marks */
} s_channel;

typedef struct context {
    const ew_host *host;
    ew_node *node;
    const context_config *cfg;
    size_t nch;
    s_channel *ch;
    uint32_t ctx_mod;   /* bins^context: the range of s_channel.ctx */
    size_t ctx_bits;    /* bins^(context+1) */
    size_t map_bytes;   /* bytes of one bitmap */
    uint64_t resting;   /* samples still to be scored 0 after an alarm */
    bool learning;      /* last state reported with set_learning */
    ew_counter *c_skipped;
    char z_name[80];
} context;

static const ew_option s_options[] = {
    EW_OPTION_RANGE("window", EW_OPT_INT, "1500", 10, 10000000, context_config, window,
                    "Values per channel behind the rolling mean and sd and the usual novelty rate."),
    EW_OPTION_RANGE("threshold", EW_OPT_DOUBLE, "8", 0.001, 1e6, context_config, threshold,
                    "z at and above which a sample is an anomaly (score 0.5) and starts a rest."),
    EW_OPTION_RANGE("warmup", EW_OPT_INT, "100", 2, 1e15, context_config, warmup,
                    "Values a channel must see before it is scored (marked learning until then)."),
    EW_OPTION_RANGE("settle", EW_OPT_INT, "288", 0, 1e15, context_config, settle,
                    "Values a channel must see before the new-extreme and novelty tests count."),
    EW_OPTION_RANGE("extreme_margin", EW_OPT_DOUBLE, "0.02", -1, 1e6, context_config,
                    extreme_margin,
                    "Fraction of the range seen so far by which a value must pass the running "
                    "minimum or maximum to be a new extreme; -1 turns the rule off."),
    EW_OPTION_RANGE("bins", EW_OPT_INT, "8", 2, 256, context_config, bins,
                    "Levels the running range is cut into for the contexts."),
    EW_OPTION_RANGE("context", EW_OPT_INT, "2", 1, 16, context_config, context,
                    "Previous levels that, with the current one, form a context."),
    EW_OPTION_RANGE("short", EW_OPT_INT, "8", 1, 100000, context_config, short_window,
                    "Recent values whose novelty rate is compared with the usual one."),
    EW_OPTION_RANGE("rest", EW_OPT_INT, "35", 0, 1e15, context_config, rest,
                    "Samples scored 0 after a sample at or above the threshold."),
    EW_OPTION_RANGE("forget", EW_OPT_INT, "8000", 0, 1e15, context_config, forget,
                    "Values per era of the context memory: a context not met for one to two "
                    "eras is new again; 0 = never forget."),
    EW_OPTION_END,
};

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const context_config *cfg = config;
    double bits = pow((double)cfg->bins, (double)(cfg->context + 1));
    if (bits > S_MAX_CONTEXTS) {
        snprintf(err, errlen,
                 "bins = %lld with context = %lld makes %.0f contexts per channel, more than "
                 "the %u allowed: lower bins or context",
                 (long long)cfg->bins, (long long)cfg->context, bits, S_MAX_CONTEXTS);
        *line = 0;
        return EW_ERR;
    }
    if (cfg->short_window > cfg->window) {
        snprintf(err, errlen, "short = %lld is longer than window = %lld: the recent novelty "
                              "rate must come from fewer values than the usual one",
                 (long long)cfg->short_window, (long long)cfg->window);
        *line = 0;
        return EW_ERR;
    }
    return EW_OK;
}

static void s_destroy(void *self)
{
    context *z = self;
    if (!z)
        return;
    for (size_t i = 0; z->ch && i < z->nch; i++) {
        ewp_rollvar_free(&z->ch[i].rv);
        free(z->ch[i].known);
        free(z->ch[i].novel);
    }
    free(z->ch);
    free(z);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const context_config *cfg = config;
    char err[256];
    int line;
    if (s_validate(cfg, err, sizeof err, &line) != EW_OK) {
        host->set_error(node, "%s", err);
        return EW_EINVAL;
    }
    const ew_schema *in = host->input_schema(node);
    if (!in) {
        host->set_error(node, "context has no input schema: give the node an input = <node>");
        return EW_EINVAL;
    }
    context *z = calloc(1, sizeof *z);
    if (!z) {
        host->set_error(node, "out of memory allocating the context detector");
        return EW_ERR;
    }
    z->host = host;
    z->node = node;
    z->cfg = cfg;
    z->ctx_mod = 1;
    for (int64_t i = 0; i < cfg->context; i++)
        z->ctx_mod *= (uint32_t)cfg->bins;
    z->ctx_bits = (size_t)z->ctx_mod * (size_t)cfg->bins;
    z->map_bytes = (z->ctx_bits + 7) / 8;
    z->ch = calloc(in->channels ? in->channels : 1, sizeof *z->ch);
    if (!z->ch)
        goto oom;
    bool has_z = false;
    for (size_t c = 0; c < in->channels; c++) {
        if (strcmp(in->names[c], "z") == 0)
            has_z = true;
        /* An upstream detector's verdict is not a measurement to score again. */
        if ((int)c == in->score_index || (int)c == in->anomaly_index)
            continue;
        s_channel *ch = &z->ch[z->nch++];
        ch->column = c;
        ch->lo = ch->era_lo[0] = ch->era_lo[1] = INFINITY;
        ch->hi = ch->era_hi[0] = ch->era_hi[1] = -INFINITY;
        ch->known = calloc(2 * z->map_bytes, 1);
        ch->era_left = (uint64_t)cfg->forget;
        ch->novel = calloc((size_t)cfg->window, 1);
        if (!ch->known || !ch->novel || ewp_rollvar_init(&ch->rv, (size_t)cfg->window) < 0)
            goto oom;
    }
    if (z->nch == 0) {
        host->set_error(node, "the input stream has no channels to score (only score/anomaly): "
                              "connect context to a source or a detector with measurements");
        s_destroy(z);
        return EW_EINVAL;
    }
    z->c_skipped = host->counter(node, "context_skipped_values",
                                 "Input values not scored: missing, infinite or beyond 1e100");
    if (has_z)
        snprintf(z->z_name, sizeof z->z_name, "z_%s", host->node_name(node));
    else
        snprintf(z->z_name, sizeof z->z_name, "z");
    const char *names[1] = {z->z_name};
    int rc = host->add_channels(node, 1, names);
    if (rc != EW_OK) {
        s_destroy(z);
        return rc;
    }
    /* The own score (z against the channel's rolling statistics, 0.5 at the
     * threshold, with the rest period) scored 65.3 on NAB against 25 to 30 for
     * the host's likelihood of raw (README.md): calibrate = auto keeps it. */
    if (EW_HOST_HAS(host, set_score_calibrated))
        host->set_score_calibrated(node, true);
    z->learning = true;
    if (EW_HOST_HAS(host, set_learning))
        host->set_learning(node, true);
    *self = z;
    return EW_OK;
oom:
    host->set_error(node, "out of memory allocating %zu channels of %lld values", in->channels,
                    (long long)cfg->window);
    s_destroy(z);
    return EW_ERR;
}

/* The rolling z of x against the window as it is now. */
static double s_value_z(const s_channel *ch, double x)
{
    double dev = ewp_rollvar_deviation(&ch->rv, x);
    double sd = sqrt(ewp_rollvar_variance(&ch->rv));
    if (dev == 0)
        return 0;
    if (!(sd > 0))
        return S_Z_CAP;
    return fabs(dev) / sd;
}

/* Level of x in [0, bins) of the range [lo, hi] (which holds x). */
static uint32_t s_level(const s_channel *ch, double x, int64_t bins)
{
    double range = ch->hi - ch->lo;
    if (!(range > 0))
        return 0;
    double l = floor((x - ch->lo) / range * (double)bins);
    return l >= (double)bins ? (uint32_t)bins - 1 : (uint32_t)l;
}

/* Marks the context ending in x's level, updates the novelty rates and returns
 * the binomial z of the recent rate against the usual one (0 until scored). */
static double s_novelty_z(const context *z, s_channel *ch, double x, bool score)
{
    const context_config *cfg = z->cfg;
    uint32_t level = s_level(ch, x, cfg->bins);
    uint8_t novel = 0;
    /* The first `context` values have no full context before them. */
    if (ch->seen >= (uint64_t)cfg->context) {
        size_t key = (size_t)ch->ctx * (size_t)cfg->bins + level;
        uint8_t bit = (uint8_t)(1u << (key & 7));
        const uint8_t *prev = ch->known + (size_t)(1 - ch->era) * z->map_bytes;
        uint8_t *cur = ch->known + (size_t)ch->era * z->map_bytes;
        novel = ((cur[key >> 3] | prev[key >> 3]) & bit) == 0;
        cur[key >> 3] |= bit;
    }
    ch->ctx = (ch->ctx * (uint32_t)cfg->bins + level) % z->ctx_mod;
    /* A new era forgets the contexts of the one before the last: memory spans
     * one to two eras, so that a long-running channel keeps a novelty test
     * that can still see new contexts after every one has been met once. */
    if (cfg->forget > 0 && --ch->era_left == 0) {
        ch->era = 1 - ch->era;
        memset(ch->known + (size_t)ch->era * z->map_bytes, 0, z->map_bytes);
        /* The range forgets too, when the last era's values span less than half
         * of it: one glitch would otherwise widen it for ever, crowding every
         * later value into one level and hiding new extremes. A range that
         * merely breathes is kept, as moving the levels makes new contexts. */
        double last_lo = ch->era_lo[1 - ch->era], last_hi = ch->era_hi[1 - ch->era];
        if (last_hi - last_lo < S_RANGE_SHRINK * (ch->hi - ch->lo)) {
            ch->lo = last_lo;
            ch->hi = last_hi;
        }
        ch->era_lo[ch->era] = INFINITY;
        ch->era_hi[ch->era] = -INFINITY;
        ch->era_left = (uint64_t)cfg->forget;
    }

    /* The short window is the newest `short` marks of the long ring, this one
     * included: the mark `short` back leaves it. */
    size_t window = (size_t)cfg->window, shortw = (size_t)cfg->short_window;
    size_t held = ch->novel_count < shortw ? ch->novel_count : shortw;
    size_t leaving = held == shortw ? ch->novel[(ch->novel_head + window - shortw) % window] : 0;
    size_t recent_sum = ch->short_sum - leaving + novel;
    size_t recent = held == shortw ? shortw : held + 1;
    double zn = 0;
    if (score && ch->novel_count > 0) {
        double rate = (double)ch->novel_sum / (double)ch->novel_count;
        double now = (double)recent_sum / (double)recent;
        /* A window without novelties still has a rate of about 1 / count. */
        double var = rate * (1 - rate), floor_var = 1.0 / (double)ch->novel_count;
        double sd = sqrt((var > floor_var ? var : floor_var) / (double)recent);
        if (now > rate && recent_sum >= S_MIN_NOVELTIES)
            zn = (now - rate) / sd;
    }
    ch->short_sum = recent_sum;
    if (ch->novel_count == window)
        ch->novel_sum -= ch->novel[ch->novel_head];
    else
        ch->novel_count++;
    ch->novel[ch->novel_head] = novel;
    ch->novel_sum += novel;
    ch->novel_head = (ch->novel_head + 1) % window;
    return zn;
}

/* The channel's statistic for x (updating its state), or -1 while warming up. */
static double s_channel_z(const context *z, s_channel *ch, double x)
{
    const context_config *cfg = z->cfg;
    double zc = -1;
    bool scored = ch->seen >= (uint64_t)cfg->warmup && ewp_rollvar_count(&ch->rv) >= 2;
    bool settled = ch->seen >= (uint64_t)cfg->settle;
    if (scored)
        zc = s_value_z(ch, x);
    if (scored && settled && cfg->extreme_margin >= 0) {
        double margin = cfg->extreme_margin * (ch->hi - ch->lo);
        if (x > ch->hi + margin || x < ch->lo - margin)
            zc = S_Z_CAP;
    }
    if (x < ch->lo)
        ch->lo = x;
    if (x > ch->hi)
        ch->hi = x;
    if (x < ch->era_lo[ch->era])
        ch->era_lo[ch->era] = x;
    if (x > ch->era_hi[ch->era])
        ch->era_hi[ch->era] = x;
    double zn = s_novelty_z(z, ch, x, scored && settled);
    if (zn > zc && scored)
        zc = zn;
    ewp_rollvar_push(&ch->rv, x);
    ch->seen++;
    return zc > S_Z_CAP ? S_Z_CAP : zc;
}

/* z^2 / (z^2 + T^2), as 1 / (1 + (T/z)^2) so that z = 0 needs no case. */
static double s_score(double zv, double threshold)
{
    double r = threshold / zv;
    return 1.0 / (1.0 + r * r);
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    context *z = self;
    const size_t stride = in->schema->channels;
    const double threshold = z->cfg->threshold;
    uint64_t skipped = 0;
    for (size_t i = 0; i < in->count; i++) {
        const double *row = in->values + i * stride;
        double *contrib = out->contrib ? out->contrib + i * out->contrib_channels : NULL;
        double zmax = -1;
        bool warming = false;
        for (size_t k = 0; k < z->nch; k++) {
            s_channel *ch = &z->ch[k];
            double x = row[ch->column];
            /* Missing or absurd readings neither raise alarms nor pollute the state. */
            if (!isfinite(x) || fabs(x) > S_VALUE_LIMIT) {
                skipped++;
                if (contrib)
                    contrib[ch->column] = 0;
                continue;
            }
            double zc = s_channel_z(z, ch, x);
            if (zc < 0)
                warming = true;
            if (contrib)
                contrib[ch->column] = zc < 0 ? 0 : zc;
            if (zc > zmax)
                zmax = zc;
        }
        double score = 0;
        if (zmax >= 0) {
            if (z->resting > 0) {
                z->resting--;
            } else {
                score = s_score(zmax, threshold);
                if (zmax >= threshold)
                    z->resting = (uint64_t)z->cfg->rest;
            }
        }
        out->score[i] = score;
        out->anomaly[i] = zmax >= threshold && score > 0;
        if (out->extra)
            out->extra[i * out->extra_channels] = zmax < 0 ? NAN : zmax;
        if (out->raw)
            out->raw[i] = zmax < 0 ? NAN : zmax;
        /* Learning: no channel is scored yet (a channel still warming up next to
         * scored ones leaves the sample scored). */
        if (out->learning)
            out->learning[i] = zmax < 0 && warming;
        if (zmax >= 0 && z->learning) {
            z->learning = false;
            if (EW_HOST_HAS(z->host, set_learning))
                z->host->set_learning(z->node, false);
        }
    }
    if (skipped)
        z->host->counter_add(z->c_skipped, skipped);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "context",
    .version = "1.0.0",
    .description = "Univariate streaming detector: rolling z, new extremes and context novelty, "
                   "with a rest after each alarm; max over channels",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(context_config),
    .init = s_init,
    .process = s_process,
    .destroy = s_destroy,
    .validate = s_validate,
};

EW_PLUGIN_EXPORT(s_plugin)
