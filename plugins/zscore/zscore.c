/* zscore: a detector that scores each sample by how many standard deviations
 * its channels lie from their baseline, combined over channels into one
 * equivalent one-channel z.
 *
 *     [detector.pump_z]
 *     plugin = zscore
 *     input = pump
 *     window = 300
 *     threshold = 4
 *
 * Per channel c: z_c = |x_c - mean_c| / sd_c, against either the previous
 * `window` finite values (baseline = rolling; the sample is scored before it
 * joins the window) or the mean and sd of the first `train_samples` finite
 * values, then frozen (baseline = frozen; relearnt from the latest
 * train_samples values every `relearn_every` values when set). With
 * robust = true the median and 1.4826 * MAD replace mean and sd.
 *
 * The channels are combined (`combine`) into a statistic whose false-alarm
 * rate does not grow with the number of channels, expressed as the z of one
 * channel with the same two-sided Gaussian tail: the Sidak-corrected max
 * (tail 1 - (1 - p_max)^k) or the sum of squares against chi-square with k
 * degrees of freedom; `max` is the plain largest |z_c|. With extremes = on, a
 * value beyond the channel's running minimum or maximum by more than
 * extremes_margin of the range seen so far (after extremes_after values)
 * scores as S_Z_MAX. The result is the raw statistic (ABI 1.2) and the extra
 * channel `z`, clamped to S_Z_MAX; score = z^2 / (z^2 + threshold^2) (0.5 at
 * the threshold); anomaly = z > threshold; contrib = each channel's |z_c|.
 */
#include <edgewatch/plugin.h>

#include "ewplug.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values a channel needs before it is scored when warmup = -1 and the window
 * is longer: waiting for a whole long window would leave the start of a
 * stream unguarded. */
#define S_DEFAULT_WARMUP_MAX 100

/* MAD * 1.4826 estimates the standard deviation of normal data. */
#define S_MAD_SCALE 1.4826
/* When more than half the window is one value the MAD is 0; the mean
 * absolute deviation * sqrt(pi/2) (also an estimate of sd for normal data)
 * then still measures the spread of the rest. */
#define S_MEANAD_SCALE 1.2533141373155003

/* The largest statistic reported: a value off a flat baseline (z = inf), a
 * new extreme, or any z beyond it. A tail of 1e-10 is z = 6.4 and the score
 * is already 0.9999 at 100 x threshold 3; 1000 keeps every output finite
 * while ranking far above anything a real spread gives. */
#define S_Z_MAX 1000.0

/* Points of the table of the combined z over its argument (see s_table). */
#define S_TABLE_POINTS 2048

enum { S_BASELINE_ROLLING = 0, S_BASELINE_FROZEN = 1 };
enum { S_COMBINE_MAX = 0, S_COMBINE_SIDAK = 1, S_COMBINE_CHI2 = 2 };
enum { S_EXTREMES_AUTO = 0, S_EXTREMES_ON = 1, S_EXTREMES_OFF = 2 };

typedef struct zscore_config {
    int64_t window;
    double threshold;
    int64_t warmup;
    bool robust;
    int baseline;
    int64_t train_samples;
    int64_t relearn_every;
    int combine;
    int extremes;
    double extremes_margin;
    int64_t extremes_after;
} zscore_config;

/* The combined z as a function of u (the largest |z| for sidak, the root of the
 * sum of squares for chi2) at a fixed channel count k, tabulated with its
 * derivative on [0, umax] and read by cubic Hermite interpolation: the exact
 * tail and its inversion cost about a microsecond, which would make zscore
 * the slowest part of the host's pipeline. Beyond umax, or for another k
 * (missing values), the exact computation is used. */
typedef struct s_table {
    unsigned k;      /* 0 = no table */
    double h, umax;  /* step and end of the grid */
    double *f, *d;   /* z and dz/du at the S_TABLE_POINTS points */
} s_table;

/* One scored input channel. */
typedef struct s_channel {
    size_t column;       /* index in the input row */
    uint64_t seen;       /* accepted values so far */
    ewp_rollvar rv;      /* mean/sd mode */
    ewp_rollmed rm;      /* robust mode */
    /* Frozen baseline: z = |(x - shift) - offset| / spread. */
    bool frozen;
    double shift, offset, spread;
    uint64_t since_learnt; /* values since the baseline was last learnt */
    /* Extremes: the range seen so far (frozen mode: the range learnt). */
    double lo, hi;
    uint64_t ext_seen;
    bool warned_bad;
} s_channel;

typedef struct zscore {
    const ew_host *host;
    ew_node *node;
    const zscore_config *cfg;
    const ew_schema *in;
    size_t nch;
    s_channel *ch;
    double *zc;          /* scratch: this sample's z per scored channel */
    s_table table;       /* the combination at k = every channel */
    uint64_t warmup;     /* values a channel needs before it is scored */
    bool learning;       /* last state reported with set_learning */
    bool extremes;       /* the new-extreme rule applies */
    ew_counter *c_bad;
    char z_name[80];     /* name of the extra channel */
} zscore;

static const ew_option s_options[] = {
    EW_OPTION_RANGE("window", EW_OPT_INT, "1500", 2, 10000000, zscore_config, window,
                    "Values per channel in the rolling window the statistics come from."),
    EW_OPTION_RANGE("threshold", EW_OPT_DOUBLE, "3", 0.001, 1e6, zscore_config, threshold,
                    "z above which a sample is an anomaly; its score there is 0.5."),
    EW_OPTION_RANGE("warmup", EW_OPT_INT, "-1", -1, 1e15, zscore_config, warmup,
                    "Values a channel must see before it is scored; -1 = the window length, at most 100."),
    EW_OPTION("robust", EW_OPT_BOOL, "false", zscore_config, robust,
              "Use the rolling median and 1.4826 * MAD instead of the mean and standard deviation."),
    EW_OPTION_ENUM("baseline", "rolling", "rolling|frozen", zscore_config, baseline,
                   "rolling: against the last `window` values; frozen: against the first "
                   "`train_samples` values, then fixed."),
    EW_OPTION_RANGE("train_samples", EW_OPT_INT, "1000", 2, 10000000, zscore_config, train_samples,
                    "baseline = frozen: finite values per channel the baseline is learnt from."),
    EW_OPTION_RANGE("relearn_every", EW_OPT_INT, "0", 0, 1e15, zscore_config, relearn_every,
                    "baseline = frozen: relearn from the latest train_samples values every this many "
                    "values; 0 = never."),
    EW_OPTION_ENUM("combine", "sidak", "max|sidak|chi2", zscore_config, combine,
                   "How channels combine into z: largest |z|, Sidak-corrected largest, or sum of "
                   "squares against chi-square; as a one-channel z."),
    EW_OPTION_ENUM("extremes", "auto", "auto|on|off", zscore_config, extremes,
                   "Score a value beyond the channel's range seen so far (by extremes_margin) as the "
                   "maximum; auto = on when one channel is scored, off with several."),
    EW_OPTION_RANGE("extremes_margin", EW_OPT_DOUBLE, "0.02", 0, 1000, zscore_config, extremes_margin,
                    "Share of the range seen so far a value must pass the minimum or maximum by."),
    EW_OPTION_RANGE("extremes_after", EW_OPT_INT, "500", 1, 1e15, zscore_config, extremes_after,
                    "Values a channel must have seen before a new extreme counts."),
    EW_OPTION_END,
};

/* ln P(|N| > u) and ln P(|N| < u), both accurate where they are small. */
static void s_tails(double u, double *lt, double *lin)
{
    *lt = ewp_normal_log_tail2(u);
    *lin = u < 1 ? log(erf(u / M_SQRT2)) : log1p(-exp(*lt));
}

/* The exact combined z of argument u over k channels, and dz/du in *dz. */
static double s_exact(int mode, double u, unsigned k, double *dz)
{
    double lt, ze, ld;
    if (mode == S_COMBINE_SIDAK) {
        /* P(max of k > u) = 1 - (1 - p)^k; for a tiny p that is k p to 1e-13. */
        double lp, lin;
        s_tails(u, &lp, &lin);
        lt = lp > -30 ? log(-expm1((double)k * lin)) : log((double)k) + lp;
        ze = ewp_normal_z_of_log_tail2(lt);
        /* dp/du = k (1 - p)^(k-1) * density; over the density at ze. */
        ld = log((double)k) + (k - 1) * lin + (ze * ze - u * u) / 2;
    } else {
        double ss = u * u;
        lt = ewp_chi2_log_tail(ss, k);
        ze = ewp_normal_z_of_log_tail2(lt);
        /* dQ/du = 2u f_k(u^2), f_k the chi-square density; over the normal's 2 phi(ze). */
        ld = u > 0 ? log(2 * u) + (k / 2.0 - 1) * log(ss) - ss / 2 - (k / 2.0) * M_LN2 -
                         ewp_log_gamma_half(k) + ze * ze / 2 - log(0.79788456080286536)
                   : -INFINITY;
    }
    if (dz)
        *dz = ze > 0 ? exp(ld) : 0;
    return ze;
}

static int s_table_build(s_table *t, int mode, unsigned k)
{
    t->f = malloc(S_TABLE_POINTS * sizeof *t->f);
    t->d = malloc(S_TABLE_POINTS * sizeof *t->d);
    if (!t->f || !t->d)
        return -1;
    /* sidak: u is a |z|, interesting up to about 40; chi2: the root of a sum of k
     * squares, sqrt(k) when normal. */
    t->umax = 40 + (mode == S_COMBINE_CHI2 ? sqrt((double)k) : 0);
    t->h = t->umax / (S_TABLE_POINTS - 1);
    for (size_t i = 0; i < S_TABLE_POINTS; i++)
        t->f[i] = s_exact(mode, (double)i * t->h, k, &t->d[i]);
    t->k = k;
    return 0;
}

static double s_table_get(const s_table *t, double u)
{
    double x = u / t->h;
    size_t i = (size_t)x;
    if (i >= S_TABLE_POINTS - 1)
        i = S_TABLE_POINTS - 2;
    double s = x - (double)i, r = 1 - s;
    double v = (1 + 2 * s) * r * r * t->f[i] + s * r * r * t->h * t->d[i] +
               s * s * (3 - 2 * s) * t->f[i + 1] - s * s * r * t->h * t->d[i + 1];
    return v > 0 ? v : 0;
}

/* The channels' z values (k >= 1 of them) as one equivalent one-channel z. */
static double s_combine(const zscore *z, const double *zc, size_t k)
{
    double zmax = 0, ss = 0;
    for (size_t i = 0; i < k; i++) {
        if (zc[i] > zmax)
            zmax = zc[i];
        ss += zc[i] * zc[i];
    }
    if (k == 1 || z->cfg->combine == S_COMBINE_MAX || zmax >= S_Z_MAX)
        return zmax;
    double u = z->cfg->combine == S_COMBINE_SIDAK ? zmax : sqrt(ss);
    double ze = z->table.k == k && u < z->table.umax ? s_table_get(&z->table, u)
                                                     : s_exact(z->cfg->combine, u, (unsigned)k, NULL);
    return ze < S_Z_MAX ? ze : S_Z_MAX;
}

static void s_destroy(void *self)
{
    zscore *z = self;
    if (!z)
        return;
    for (size_t i = 0; z->ch && i < z->nch; i++) {
        ewp_rollvar_free(&z->ch[i].rv);
        ewp_rollmed_free(&z->ch[i].rm);
    }
    free(z->ch);
    free(z->zc);
    free(z->table.f);
    free(z->table.d);
    free(z);
}

static void s_set_learning(zscore *z, bool learning)
{
    if (z->learning == learning)
        return;
    z->learning = learning;
    if (EW_HOST_HAS(z->host, set_learning))
        z->host->set_learning(z->node, learning);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const zscore_config *cfg = config;
    const ew_schema *in = host->input_schema(node);
    if (!in) {
        host->set_error(node, "zscore has no input schema: give the node an input = <node>");
        return EW_EINVAL;
    }
    zscore *z = calloc(1, sizeof *z);
    if (!z) {
        host->set_error(node, "out of memory allocating the zscore detector");
        return EW_ERR;
    }
    z->host = host;
    z->node = node;
    z->cfg = cfg;
    z->in = in;
    const bool frozen = cfg->baseline == S_BASELINE_FROZEN;
    if (cfg->warmup >= 0)
        z->warmup = (uint64_t)cfg->warmup;
    else
        z->warmup = cfg->window < S_DEFAULT_WARMUP_MAX ? (uint64_t)cfg->window
                                                       : S_DEFAULT_WARMUP_MAX;
    /* A frozen baseline keeps the last train_samples values (to relearn from). */
    const size_t cap = frozen ? (size_t)cfg->train_samples : (size_t)cfg->window;
    z->ch = calloc(in->channels ? in->channels : 1, sizeof *z->ch);
    z->zc = calloc(in->channels ? in->channels : 1, sizeof *z->zc);
    if (!z->ch || !z->zc)
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
        ch->lo = ch->hi = NAN;
        int rc = cfg->robust ? ewp_rollmed_init(&ch->rm, cap) : ewp_rollvar_init(&ch->rv, cap);
        if (rc < 0)
            goto oom;
    }
    if (z->nch == 0) {
        host->set_error(node, "the input stream has no channels to score (only score/anomaly): "
                              "connect zscore to a source or a detector with measurements");
        s_destroy(z);
        return EW_EINVAL;
    }
    if (z->nch > 1 && cfg->combine != S_COMBINE_MAX && s_table_build(&z->table, cfg->combine, (unsigned)z->nch) < 0)
        goto oom;
    /* The rule has no correction for the number of channels: each adds its own
     * new extremes (on TEP's 52, 13.6 % of normal rows; README). */
    z->extremes = cfg->extremes == S_EXTREMES_ON || (cfg->extremes == S_EXTREMES_AUTO && z->nch == 1);
    z->c_bad = host->counter(node, "zscore_bad_values",
                             "Finite values too large for the statistics (|x| > 1e150), not scored");
    /* When chained after another zscore, keep both statistics apart. */
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
    if (frozen) {
        /* The score is z against limits learnt from training data, 0.5 at the
         * threshold. A rolling baseline learns from the stream it scores: the host's
         * likelihood over z does better there (NAB 56.5 against 55.2, README). */
        if (EW_HOST_HAS(host, set_score_calibrated))
            host->set_score_calibrated(node, true);
        s_set_learning(z, true);
    }
    *self = z;
    return EW_OK;
oom:
    host->set_error(node, "out of memory allocating %zu windows of %zu values", in->channels, cap);
    s_destroy(z);
    return EW_ERR;
}

static size_t s_held(const zscore *z, const s_channel *ch)
{
    return z->cfg->robust ? ewp_rollmed_count(&ch->rm) : ewp_rollvar_count(&ch->rv);
}

/* Centre and spread of the window as it is now, as shift + offset and spread. */
static void s_window_stats(const zscore *z, const s_channel *ch, double *shift, double *offset,
                           double *spread)
{
    if (z->cfg->robust) {
        *shift = ewp_rollmed_median(&ch->rm);
        *offset = 0;
        *spread = S_MAD_SCALE * ewp_rollmed_mad(&ch->rm);
        if (*spread == 0)
            *spread = S_MEANAD_SCALE * ewp_rollmed_meanad(&ch->rm);
    } else {
        *shift = ch->rv.shift;
        *offset = ch->rv.mean;
        *spread = sqrt(ewp_rollvar_variance(&ch->rv));
    }
}

/* |x - centre| / spread, at most S_Z_MAX: a flat baseline gives 0 for a value
 * equal to it and S_Z_MAX for any other. */
static double s_z(double x, double shift, double offset, double spread)
{
    double dev = (x - shift) - offset;
    if (dev == 0)
        return 0;
    double zc = fabs(dev) / spread;
    return zc < S_Z_MAX ? zc : S_Z_MAX; /* also spread == 0 (inf) */
}

/* Freezes the baseline of a channel from its window (the last train_samples values). */
static void s_learn(zscore *z, s_channel *ch)
{
    s_window_stats(z, ch, &ch->shift, &ch->offset, &ch->spread);
    ch->since_learnt = 0;
    if (z->cfg->robust) {
        ch->lo = ch->rm.sorted[0];
        ch->hi = ch->rm.sorted[ch->rm.count - 1];
    } else {
        ewp_rollvar_minmax(&ch->rv, &ch->lo, &ch->hi);
    }
    if (ch->spread == 0 && !ch->frozen)
        z->host->log(z->node, EW_LOG_WARN,
                     "channel %s was constant (%g) in its %zu training values: any other value "
                     "will score as the maximum (z = %g); give the baseline data where it varies "
                     "or leave the channel out",
                     z->in->names[ch->column], ch->lo, s_held(z, ch), S_Z_MAX);
    ch->frozen = true;
}

/* Whether x passes the range seen so far by more than the margin. */
static bool s_extreme(const zscore *z, const s_channel *ch, double x)
{
    if (!z->extremes || ch->ext_seen < (uint64_t)z->cfg->extremes_after || isnan(ch->lo))
        return false;
    double margin = z->cfg->extremes_margin * (ch->hi - ch->lo);
    return x > ch->hi + margin || x < ch->lo - margin;
}

/* z^2 / (z^2 + T^2), written as 1 / (1 + (T/z)^2) so that z = 0 needs no
 * special case and nothing overflows. */
static double s_score(double zv, double threshold)
{
    double r = threshold / zv;
    return 1.0 / (1.0 + r * r);
}

static void s_bad_value(zscore *z, s_channel *ch, double x, int64_t ts)
{
    z->host->counter_add(z->c_bad, 1);
    if (ch->warned_bad)
        return;
    ch->warned_bad = true;
    z->host->log(z->node, EW_LOG_WARN,
                 "channel %s: value %g at ts %lld is beyond +-1e150, too large for the "
                 "statistics: not scored (a corrupt reading or a wrong scale?); further ones are "
                 "counted in zscore_bad_values",
                 z->in->names[ch->column], x, (long long)ts);
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    zscore *z = self;
    const zscore_config *cfg = z->cfg;
    const size_t stride = in->schema->channels;
    const bool frozen = cfg->baseline == S_BASELINE_FROZEN;
    for (size_t i = 0; i < in->count; i++) {
        const double *row = in->values + i * stride;
        double *contrib = out->contrib ? out->contrib + i * out->contrib_channels : NULL;
        size_t k = 0;
        bool learnt = false; /* a value of this sample went to learning, not scoring */
        bool extreme = false;
        for (size_t c = 0; c < z->nch; c++) {
            s_channel *ch = &z->ch[c];
            double x = row[ch->column];
            /* Missing or infinite readings neither raise alarms nor pollute the window. */
            if (!isfinite(x))
                continue;
            if (!ewp_stats_accepts(x)) {
                s_bad_value(z, ch, x, in->ts[i]);
                continue;
            }
            double zc = NAN;
            if (frozen) {
                if (ch->frozen)
                    zc = s_z(x, ch->shift, ch->offset, ch->spread);
            } else if (ch->seen >= z->warmup && s_held(z, ch) >= 2) {
                double shift, offset, spread;
                s_window_stats(z, ch, &shift, &offset, &spread);
                zc = s_z(x, shift, offset, spread);
            }
            if (!isnan(zc)) {
                if (s_extreme(z, ch, x)) {
                    zc = S_Z_MAX;
                    extreme = true;
                }
                z->zc[k++] = zc;
                if (contrib && ch->column < out->contrib_channels)
                    contrib[ch->column] = zc;
            } else {
                learnt = true;
            }
            /* The range: all values in rolling mode; the training values in frozen mode. */
            if (!frozen) {
                ch->lo = isnan(ch->lo) || x < ch->lo ? x : ch->lo;
                ch->hi = isnan(ch->hi) || x > ch->hi ? x : ch->hi;
                ch->ext_seen++;
            } else if (ch->frozen) {
                ch->ext_seen++;
            }
            if (!frozen || !ch->frozen || cfg->relearn_every > 0) {
                if (cfg->robust)
                    ewp_rollmed_push(&ch->rm, x);
                else
                    ewp_rollvar_push(&ch->rv, x);
            }
            ch->seen++;
            if (frozen) {
                if (!ch->frozen && s_held(z, ch) >= (size_t)cfg->train_samples) {
                    s_learn(z, ch);
                    ch->ext_seen = ch->seen;
                } else if (ch->frozen && cfg->relearn_every > 0 &&
                           ++ch->since_learnt >= (uint64_t)cfg->relearn_every) {
                    s_learn(z, ch);
                }
            }
        }
        if (out->learning)
            out->learning[i] = k == 0 && learnt;
        if (k == 0) {
            /* Learning, or no finite value in this sample: nothing to judge. */
            out->score[i] = 0;
            out->anomaly[i] = 0;
            if (out->extra)
                out->extra[i * out->extra_channels] = NAN;
            continue;
        }
        if (frozen)
            s_set_learning(z, false);
        double zv = extreme ? S_Z_MAX : s_combine(z, z->zc, k);
        out->score[i] = s_score(zv, cfg->threshold);
        out->anomaly[i] = zv > cfg->threshold;
        if (out->raw)
            out->raw[i] = zv;
        if (out->extra)
            out->extra[i * out->extra_channels] = zv;
    }
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "zscore",
    .version = "1.2.0",
    .description = "z-score per channel against a rolling or frozen baseline, combined over "
                   "channels as one equivalent z",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(zscore_config),
    .init = s_init,
    .process = s_process,
    .destroy = s_destroy,
};

EW_PLUGIN_EXPORT(s_plugin)
