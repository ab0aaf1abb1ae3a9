/* zscore: a detector that scores each sample by how many (rolling) standard
 * deviations its most unusual channel lies from that channel's rolling mean.
 *
 *     [detector.pump_z]
 *     plugin = zscore
 *     input = pump
 *     window = 300
 *     threshold = 4
 *
 * The defaults (window 1500, scoring once 100 values are in) were chosen on the
 * NAB corpus as a whole (docs/detectors.md): a long window keeps the baseline
 * steady through daily cycles and bursts, and 100 values already estimate the
 * spread well enough to flag gross deviations early.
 *
 * Per channel c: z_c = |x_c - mean_c| / sd_c over the previous `window`
 * finite values (the sample itself is scored before it joins the window);
 * z = max over channels; score = z^2 / (z^2 + threshold^2), which is 0 at
 * z = 0, exactly 0.5 at z = threshold and tends to 1; anomaly = z > threshold.
 * With robust = true the median and 1.4826 * MAD replace mean and sd.
 * The raw z is an extra output channel, for tuning the threshold.
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

typedef struct zscore_config {
    int64_t window;
    double threshold;
    int64_t warmup;
    bool robust;
} zscore_config;

/* One scored input channel. */
typedef struct s_channel {
    size_t column;       /* index in the input row */
    uint64_t seen;       /* finite values added so far */
    ewp_rollvar rv;      /* mean/sd mode */
    ewp_rollmed rm;      /* robust mode */
} s_channel;

typedef struct zscore {
    const ew_host *host;
    ew_node *node;
    const zscore_config *cfg;
    size_t nch;
    s_channel *ch;
    uint64_t warmup;     /* values a channel needs before it is scored */
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
    EW_OPTION_END,
};

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
    free(z);
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
    if (cfg->warmup >= 0)
        z->warmup = (uint64_t)cfg->warmup;
    else
        z->warmup = cfg->window < S_DEFAULT_WARMUP_MAX ? (uint64_t)cfg->window
                                                       : S_DEFAULT_WARMUP_MAX;
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
        int rc = cfg->robust ? ewp_rollmed_init(&ch->rm, (size_t)cfg->window)
                             : ewp_rollvar_init(&ch->rv, (size_t)cfg->window);
        if (rc < 0)
            goto oom;
    }
    if (z->nch == 0) {
        host->set_error(node, "the input stream has no channels to score (only score/anomaly): "
                              "connect zscore to a source or a detector with measurements");
        s_destroy(z);
        return EW_EINVAL;
    }
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
    *self = z;
    return EW_OK;
oom:
    host->set_error(node, "out of memory allocating %zu windows of %lld values", in->channels,
                    (long long)cfg->window);
    s_destroy(z);
    return EW_ERR;
}

/* |x - centre| / spread against the window as it is now; +inf when the
 * window is flat and x differs from it, 0 when x equals it. */
static double s_z(const zscore *z, const s_channel *ch, double x)
{
    double dev, spread;
    if (z->cfg->robust) {
        dev = x - ewp_rollmed_median(&ch->rm);
        spread = S_MAD_SCALE * ewp_rollmed_mad(&ch->rm);
        if (spread == 0)
            spread = S_MEANAD_SCALE * ewp_rollmed_meanad(&ch->rm);
    } else {
        dev = ewp_rollvar_deviation(&ch->rv, x);
        spread = sqrt(ewp_rollvar_variance(&ch->rv));
    }
    if (dev == 0)
        return 0;
    if (spread == 0)
        return INFINITY;
    return fabs(dev) / spread;
}

/* z^2 / (z^2 + T^2), written as 1 / (1 + (T/z)^2) so that z = 0 and z = inf
 * need no special case and nothing overflows. */
static double s_score(double zv, double threshold)
{
    double r = threshold / zv;
    return 1.0 / (1.0 + r * r);
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    zscore *z = self;
    const size_t stride = in->schema->channels;
    const double threshold = z->cfg->threshold;
    for (size_t i = 0; i < in->count; i++) {
        const double *row = in->values + i * stride;
        double zmax = -1;
        for (size_t k = 0; k < z->nch; k++) {
            s_channel *ch = &z->ch[k];
            double x = row[ch->column];
            /* Missing or infinite readings neither raise alarms nor pollute the window. */
            if (!isfinite(x))
                continue;
            size_t held = z->cfg->robust ? ewp_rollmed_count(&ch->rm) : ewp_rollvar_count(&ch->rv);
            if (ch->seen >= z->warmup && held >= 2) {
                double zc = s_z(z, ch, x);
                if (zc > zmax)
                    zmax = zc;
            }
            if (z->cfg->robust)
                ewp_rollmed_push(&ch->rm, x);
            else
                ewp_rollvar_push(&ch->rv, x);
            ch->seen++;
        }
        if (zmax < 0) {
            /* Warming up, or no finite value in this sample: nothing to judge. */
            out->score[i] = 0;
            out->anomaly[i] = 0;
            if (out->extra)
                out->extra[i * out->extra_channels] = NAN;
        } else {
            out->score[i] = s_score(zmax, threshold);
            out->anomaly[i] = zmax > threshold;
            if (out->extra)
                out->extra[i * out->extra_channels] = zmax;
        }
    }
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "zscore",
    .version = "1.0.0",
    .description = "Rolling z-score per channel (mean/sd or median/MAD), max over channels",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(zscore_config),
    .init = s_init,
    .process = s_process,
    .destroy = s_destroy,
};

EW_PLUGIN_EXPORT(s_plugin)
