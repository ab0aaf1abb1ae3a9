/* pca: multivariate statistical process monitoring by principal component
 * analysis (Chiang, Russell & Braatz 2001; MacGregor & Kourti 1995): the
 * channels are standardised and projected on the principal directions of
 * normal operation; Hotelling's T^2 measures a sample's distance inside the
 * model, Q (the squared prediction error) its distance from it.
 *
 *     [detector.plant]
 *     plugin = pca
 *     input = plant
 *     train_samples = 500
 *
 * The first `train_samples` complete finite rows are learnt (marked `learning`);
 * the model is fitted inside the batch that completes them, so a replay always
 * gives the same bytes, and saved as the state file pca.bin. By default the
 * PCA is fitted on the first 65 % of those rows and the limits of T^2 and Q are
 * their 99.9 % quantiles on the other 35 % (held-out limits), after an EWMA
 * (smoothing = 0.2) of both. Each sample then gets the extra channels t2 and q
 * (unsmoothed), spe_t2 = max(T2s / limit, Qs / limit) of the smoothed
 * statistics (also the raw statistic), score = spe_t2 / (spe_t2 + 1) (0.5 at
 * the limit) and anomaly = spe_t2 > 1, with per-channel contributions. See
 * README.md for the formulas and the model file.
 */
#include <edgewatch/plugin.h>

#include "ewplug.h"
#include "pca_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_STATE_FILE "pca.bin"
/* A retrained model is saved at most this often (and at the end of the stream). */
#define S_SAVE_INTERVAL_NS (60 * (int64_t)1000000000)
/* Training rows are kept in memory: refuse configs that would need more. */
#define S_TRAIN_MAX_BYTES ((double)(1u << 30))

enum { S_MISMATCH_REFUSE = 0, S_MISMATCH_RETRAIN = 1 };

typedef struct pca_config {
    int64_t train_samples;
    double variance;
    int64_t components;
    int limits;
    double holdout;
    double quantile;
    double smoothing;
    int64_t lags;
    int64_t retrain_every;
    int on_model_mismatch;
} pca_config;

typedef struct pca {
    const ew_host *host;
    ew_node *node;
    const pca_config *cfg;
    pca_settings settings;
    size_t nf;              /* channels modelled */
    size_t *cols;           /* their columns in the input row */
    const char **names;     /* their names (the host's strings) */
    size_t w;               /* samples per row: lags + 1 */
    size_t d;               /* columns of a row: nf * w */
    /* The last w samples, each written at p and p + w, so the row, oldest
     * first, is always contiguous at hist + (p + 1) * nf. */
    double *hist;
    size_t hist_pos;
    uint64_t clean;         /* finite samples in a row, up to the latest */
    bool have_model;
    pca_model model;
    pca_state st;           /* smoothed statistics of the stream */
    double *work;           /* pca_step's scratch */
    double *contrib;        /* nf: one row's contributions */
    double *row;            /* d: the current row */
    double *train;          /* first model: rows collected so far */
    size_t train_n;
    double *ring;           /* retraining: the most recent normal rows */
    size_t ring_n, ring_pos;
    uint64_t since_train;
    int64_t saved_at;
    bool unsaved;
    ew_counter *c_nonfinite, *c_trainings, *c_save_failures;
    char names_out[3][80];
} pca;

static const ew_option s_options[] = {
    EW_OPTION_RANGE("train_samples", EW_OPT_INT, "500", 10, 10000000, pca_config, train_samples,
                    "Complete finite rows learnt before scoring (marked learning); also the size "
                    "of the reservoir of recent normal rows used by retrain_every."),
    EW_OPTION_RANGE("variance", EW_OPT_DOUBLE, "0.9", 0.01, 1, pca_config, variance,
                    "Keep the fewest principal components that explain this share of the "
                    "standardised variance (ignored when components is set)."),
    EW_OPTION_RANGE("components", EW_OPT_INT, "0", 0, PCA_MAX_DIM, pca_config, components,
                    "Fixed number of principal components; 0 = chosen by variance."),
    EW_OPTION_ENUM("limits", "holdout", "holdout|fitted|theoretical", pca_config, limits,
                   "Limits of T^2 and Q: holdout = the quantile of their (smoothed) values on "
                   "the training rows the PCA was not fitted on (see holdout); fitted = on the "
                   "rows it was fitted on (too tight once smoothed); theoretical = the F "
                   "distribution for T^2 and Jackson-Mudholkar for Q (for unsmoothed "
                   "statistics: use with smoothing = 0)."),
    EW_OPTION_RANGE("holdout", EW_OPT_DOUBLE, "0.35", 0.05, 0.9, pca_config, holdout,
                    "With limits = holdout: the share of the training rows (the last ones) that "
                    "the PCA is not fitted on and that the limits are taken from."),
    EW_OPTION_RANGE("quantile", EW_OPT_DOUBLE, "0.999", 0.5, 0.999999, pca_config, quantile,
                    "Quantile of the limits (theoretical: 1 - the false-alarm probability)."),
    EW_OPTION_RANGE("smoothing", EW_OPT_DOUBLE, "0.2", 0, 1, pca_config, smoothing,
                    "EWMA weight lambda of T^2, Q and the contributions (s = lambda x + (1 - "
                    "lambda) s); 0 or 1 = no smoothing."),
    EW_OPTION_RANGE("lags", EW_OPT_INT, "0", 0, PCA_MAX_LAGS, pca_config, lags,
                    "Dynamic PCA: each row is extended with the previous lags samples of every "
                    "channel (oldest first); 0 = static PCA."),
    EW_OPTION_RANGE("retrain_every", EW_OPT_INT, "0", 0, 1e15, pca_config, retrain_every,
                    "Refit every this many scored samples on the last train_samples rows that "
                    "were not flagged; 0 = never (plants: a slow fault would become normal)."),
    EW_OPTION_ENUM("on_model_mismatch", "refuse", "refuse|retrain", pca_config,
                   on_model_mismatch,
                   "A saved model learnt with other options or channels, or not a valid model: "
                   "refuse to start (refuse), or learn a new one (retrain)."),
    EW_OPTION_END,
};

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const pca_config *cfg = config;
    *line = 0;
    if (cfg->limits == PCA_LIMITS_HOLDOUT) {
        double held = round(cfg->holdout * (double)cfg->train_samples);
        if (held < 2 || (double)cfg->train_samples - held < 2) {
            snprintf(err, errlen, "holdout = %g of train_samples = %lld leaves %.0f rows for the "
                                  "limits: raise train_samples or holdout", cfg->holdout,
                     (long long)cfg->train_samples, held);
            return EW_ERR;
        }
    }
    return EW_OK;
}

static void s_destroy(void *self)
{
    pca *z = self;
    if (!z)
        return;
    pca_model_free(&z->model);
    pca_state_free(&z->st);
    free(z->cols);
    free(z->names);
    free(z->hist);
    free(z->work);
    free(z->contrib);
    free(z->row);
    free(z->train);
    free(z->ring);
    free(z);
}

static void s_set_learning(pca *z, bool learning)
{
    if (EW_HOST_HAS(z->host, set_learning))
        z->host->set_learning(z->node, learning);
}

static void s_save(pca *z)
{
    void *data = NULL;
    size_t len = 0;
    if (pca_encode(&z->model, z->names, &data, &len) != 0) {
        z->host->log(z->node, EW_LOG_WARN, "out of memory encoding the model: not saved");
        z->host->counter_add(z->c_save_failures, 1);
        return;
    }
    if (z->host->state_save(z->node, S_STATE_FILE, data, len) != EW_OK) {
        z->host->log(z->node, EW_LOG_WARN, "the model could not be saved (see above): it will "
                                           "be relearnt after a restart; scoring goes on");
        z->host->counter_add(z->c_save_failures, 1);
    }
    free(data);
    z->saved_at = z->host->monotonic(z->node);
    z->unsaved = false;
}

/* Puts model m in use (taking it over) with its end-of-training state. */
static int s_install(pca *z, pca_model *m)
{
    double *work = realloc(z->work, pca_work_size(m) * sizeof *work);
    if (!work) {
        z->host->set_error(z->node, "out of memory installing the pca model");
        return EW_ERR;
    }
    z->work = work;
    pca_model_free(&z->model);
    z->model = *m;
    memset(m, 0, sizeof *m);
    pca_state_copy(&z->st, &z->model.end, z->nf);
    z->have_model = true;
    return EW_OK;
}

/* Loads pca.bin: EW_OK with a model, EW_ENOENT to learn, or an error. */
static int s_load(pca *z)
{
    void *data = NULL;
    size_t len = 0;
    int rc = z->host->state_load(z->node, S_STATE_FILE, &data, &len);
    if (rc == EW_ENOENT)
        return EW_ENOENT;
    if (rc != EW_OK) {
        z->host->set_error(z->node, "cannot read the state file %s (see the log): make the "
                                    "state folder readable, or remove the file to relearn",
                           S_STATE_FILE);
        return EW_ERR;
    }
    pca_model m;
    char why[400];
    int drc = pca_decode(data, len, &z->settings, z->names, &m, why, sizeof why);
    free(data);
    if (drc != 0) {
        const char *what = drc == -2 ? "was learnt for another config" : "is not a valid pca model";
        if (z->cfg->on_model_mismatch == S_MISMATCH_RETRAIN) {
            z->host->log(z->node, EW_LOG_WARN, "state file %s %s (%s): relearning from the next "
                                               "%lld samples (on_model_mismatch = retrain)",
                         S_STATE_FILE, what, why, (long long)z->cfg->train_samples);
            return EW_ENOENT;
        }
        z->host->set_error(z->node, "state file %s %s: %s; restore the options it was learnt "
                                    "with, remove the file, or set on_model_mismatch = retrain "
                                    "to learn a new model", S_STATE_FILE, what, why);
        return EW_EINVAL;
    }
    if ((rc = s_install(z, &m)) != EW_OK) {
        pca_model_free(&m);
        return rc;
    }
    z->host->log(z->node, EW_LOG_INFO,
                 "loaded the saved model %s: %u of %zu components (%.1f %% of the variance), "
                 "limits T^2 %.6g, Q %.6g; scoring from the first sample",
                 S_STATE_FILE, z->model.k, z->d, 100.0 * z->model.explained, z->model.lim_t2,
                 z->model.lim_q);
    return EW_OK;
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const pca_config *cfg = config;
    char verr[300];
    int vline;
    if (s_validate(cfg, verr, sizeof verr, &vline) != EW_OK) {
        host->set_error(node, "%s", verr);
        return EW_EINVAL;
    }
    const ew_schema *in = host->input_schema(node);
    if (!in) {
        host->set_error(node, "pca has no input schema: give the node an input = <node>");
        return EW_EINVAL;
    }
    pca *z = calloc(1, sizeof *z);
    if (!z) {
        host->set_error(node, "out of memory allocating the pca detector");
        return EW_ERR;
    }
    z->host = host;
    z->node = node;
    z->cfg = cfg;
    size_t nin = in->channels ? in->channels : 1;
    z->cols = calloc(nin, sizeof *z->cols);
    z->names = calloc(nin, sizeof *z->names);
    if (!z->cols || !z->names)
        goto oom;
    static const char *const extra_base[3] = {"t2", "q", "spe_t2"};
    bool clash = false;
    for (size_t c = 0; c < in->channels; c++) {
        for (int e = 0; e < 3; e++)
            clash |= strcmp(in->names[c], extra_base[e]) == 0;
        /* An upstream detector's verdict is not a measurement. */
        if ((int)c == in->score_index || (int)c == in->anomaly_index)
            continue;
        z->names[z->nf] = in->names[c];
        z->cols[z->nf++] = c;
    }
    if (z->nf == 0) {
        host->set_error(node, "the input stream has no channels to model (only score/anomaly): "
                              "connect pca to a source or a detector with measurements");
        s_destroy(z);
        return EW_EINVAL;
    }
    z->w = (size_t)cfg->lags + 1;
    z->d = z->nf * z->w;
    if (z->d > PCA_MAX_DIM) {
        host->set_error(node, "%zu channels x (lags + 1 = %zu) = %zu columns, more than the %d "
                              "the eigensolver takes inside a batch: lower lags or split the "
                              "channels over several pca nodes", z->nf, z->w, z->d, PCA_MAX_DIM);
        s_destroy(z);
        return EW_EINVAL;
    }
    if ((double)cfg->train_samples * (double)z->d * sizeof(double) > S_TRAIN_MAX_BYTES) {
        host->set_error(node, "train_samples = %lld rows of %zu columns need more than 1 GiB: "
                              "lower train_samples or lags", (long long)cfg->train_samples, z->d);
        s_destroy(z);
        return EW_EINVAL;
    }
    if (cfg->components > 0 && (size_t)cfg->components >= z->d && z->d > 1) {
        host->set_error(node, "components = %lld leaves no residual for Q with %zu columns: "
                              "use at most %zu, or components = 0 to choose by variance",
                        (long long)cfg->components, z->d, z->d - 1);
        s_destroy(z);
        return EW_EINVAL;
    }
    z->settings = (pca_settings){
        .channels = (uint32_t)z->nf,
        .lags = (uint32_t)cfg->lags,
        .components = (uint32_t)cfg->components,
        .limits = (uint32_t)cfg->limits,
        .train_samples = (uint64_t)cfg->train_samples,
        .variance = cfg->variance,
        .holdout = cfg->limits == PCA_LIMITS_HOLDOUT ? cfg->holdout : 0,
        .quantile = cfg->quantile,
        .smoothing = cfg->smoothing,
    };
    z->hist = calloc(2 * z->w * z->nf, sizeof *z->hist);
    z->contrib = calloc(z->nf, sizeof *z->contrib);
    z->row = calloc(z->d, sizeof *z->row);
    if (!z->hist || !z->contrib || !z->row || pca_state_alloc(&z->st, z->nf) < 0)
        goto oom;
    const char *extra[3];
    for (int e = 0; e < 3; e++) {
        if (clash)
            snprintf(z->names_out[e], sizeof z->names_out[e], "%s_%s", extra_base[e],
                     host->node_name(node));
        else
            snprintf(z->names_out[e], sizeof z->names_out[e], "%s", extra_base[e]);
        extra[e] = z->names_out[e];
    }
    int rc = host->add_channels(node, 3, extra);
    if (rc != EW_OK) {
        s_destroy(z);
        return rc;
    }
    z->c_nonfinite = host->counter(node, "pca_nonfinite_samples",
                                   "Samples with a NaN or infinite value: scored 0, never learnt");
    z->c_trainings = host->counter(node, "pca_trainings", "Models fitted by this node");
    z->c_save_failures = host->counter(node, "pca_save_failures",
                                       "Fitted models that could not be saved");
    if (EW_HOST_HAS(host, set_score_calibrated))
        host->set_score_calibrated(node, true);
    rc = s_load(z);
    if (rc == EW_ENOENT) {
        if (!(z->train = malloc((size_t)cfg->train_samples * z->d * sizeof *z->train)))
            goto oom;
        s_set_learning(z, true);
        host->log(node, EW_LOG_INFO, "learning the model from the first %lld complete samples "
                                     "of %zu channels", (long long)cfg->train_samples, z->nf);
    } else if (rc != EW_OK) {
        s_destroy(z);
        return rc;
    }
    if (cfg->retrain_every > 0 &&
        !(z->ring = malloc((size_t)cfg->train_samples * z->d * sizeof *z->ring)))
        goto oom;
    *self = z;
    return EW_OK;
oom:
    host->set_error(node, "out of memory allocating the pca detector (train_samples = %lld)",
                    (long long)cfg->train_samples);
    s_destroy(z);
    return EW_ERR;
}

/* Fits a model on n rows and puts it in use; `initial` for the first one. */
static int s_fit(pca *z, const double *rows, size_t n, bool initial)
{
    pca_model m;
    char why[300];
    size_t constant = 0;
    if (pca_fit(&m, &z->settings, rows, n, &constant, why, sizeof why) != 0) {
        if (!initial) {
            z->host->log(z->node, EW_LOG_WARN, "retraining failed (%s): the model in use is kept",
                         why);
            return EW_OK;
        }
        z->host->set_error(z->node, "fitting the pca model on %zu samples failed: %s", n, why);
        return EW_ERR;
    }
    int rc = s_install(z, &m);
    if (rc != EW_OK) {
        pca_model_free(&m);
        return rc;
    }
    z->host->counter_add(z->c_trainings, 1);
    const pca_model *pm = &z->model;
    int64_t now = z->host->monotonic(z->node);
    bool save = initial || now - z->saved_at >= S_SAVE_INTERVAL_NS;
    z->host->log(z->node, EW_LOG_INFO,
                 "%s: %u of %zu components (%.1f %% of the variance) fitted on %llu samples, "
                 "limits T^2 %.6g and Q %.6g from %llu samples; %s %s",
                 initial ? "model ready" : "model retrained", pm->k, z->d, 100.0 * pm->explained,
                 (unsigned long long)pm->rows_fit, pm->lim_t2, pm->lim_q,
                 (unsigned long long)pm->rows_limit, save ? "saved as" : "saved later as",
                 S_STATE_FILE);
    if (initial && constant == z->d)
        z->host->log(z->node, EW_LOG_WARN,
                     "every channel was constant in the training samples: any later change is "
                     "flagged (remove %s to learn again from a period when they vary)",
                     S_STATE_FILE);
    else if (initial && constant > 0)
        z->host->log(z->node, EW_LOG_WARN,
                     "%zu of %zu columns never changed in the training samples: a later change "
                     "in them shows in Q at its raw size (scale 1)", constant, z->d);
    if (save)
        s_save(z);
    else
        z->unsaved = true;
    return EW_OK;
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    pca *z = self;
    const size_t stride = in->schema->channels, nf = z->nf, d = z->d, w = z->w;
    const size_t cw = out->contrib ? out->contrib_channels : 0;
    uint64_t nonfinite = 0;
    for (size_t i = 0; i < in->count; i++) {
        const double *src = in->values + i * stride;
        double *h0 = z->hist + z->hist_pos * nf, *h1 = z->hist + (z->hist_pos + w) * nf;
        bool ok = true;
        for (size_t k = 0; k < nf; k++) {
            double v = src[z->cols[k]];
            h0[k] = h1[k] = v;
            ok = ok && isfinite(v);
        }
        nonfinite += !ok;
        z->clean = ok ? z->clean + 1 : 0;
        const double *row = z->hist + (z->hist_pos + 1) * nf;
        z->hist_pos = z->hist_pos + 1 == w ? 0 : z->hist_pos + 1;
        bool complete = z->clean >= w;
        double *extra = out->extra ? out->extra + i * out->extra_channels : NULL;
        out->score[i] = 0;
        out->anomaly[i] = 0;
        if (extra)
            extra[0] = extra[1] = extra[2] = NAN;
        if (!z->have_model) {
            if (!complete || !z->train)
                continue;
            memcpy(z->train + z->train_n * d, row, d * sizeof *row);
            if (out->learning)
                out->learning[i] = 1;
            if (++z->train_n == (size_t)z->cfg->train_samples) {
                int rc = s_fit(z, z->train, z->train_n, true);
                if (rc != EW_OK)
                    return rc;
                free(z->train);
                z->train = NULL;
                s_set_learning(z, false);
            }
            continue;
        }
        if (!complete)
            continue;
        /* The row is copied: a retraining below must not see it change. */
        memcpy(z->row, row, d * sizeof *row);
        pca_result r;
        pca_step(&z->model, z->row, z->work, &z->st, &r, z->contrib);
        /* max(T2s / limit, Qs / limit) is finite for finite rows; bound it anyway
         * so that a huge value never reaches the host as infinity. */
        double comb = r.combined < 1e300 ? r.combined : 1e300;
        out->score[i] = comb / (comb + 1.0);
        out->anomaly[i] = comb > 1.0;
        if (extra) {
            extra[0] = r.t2;
            extra[1] = r.q;
            extra[2] = comb;
        }
        if (out->raw)
            out->raw[i] = comb;
        if (cw) {
            double *c = out->contrib + i * cw;
            for (size_t k = 0; k < cw; k++)
                c[k] = 0;
            for (size_t k = 0; k < nf; k++)
                c[z->cols[k]] = z->contrib[k] < 1e300 ? z->contrib[k] : 1e300;
        }
        if (!z->ring)
            continue;
        const size_t cap = (size_t)z->cfg->train_samples;
        if (!out->anomaly[i]) {
            memcpy(z->ring + z->ring_pos * d, z->row, d * sizeof *z->row);
            z->ring_pos = (z->ring_pos + 1) % cap;
            if (z->ring_n < cap)
                z->ring_n++;
        }
        if (++z->since_train >= (uint64_t)z->cfg->retrain_every && z->ring_n == cap) {
            z->since_train = 0;
            /* The reservoir, oldest row first, so the same stream gives the same model:
             * rotate it in place to start at the oldest row. */
            double *x = malloc(cap * d * sizeof *x);
            if (!x) {
                z->host->set_error(z->node, "out of memory copying the retraining reservoir");
                return EW_ERR;
            }
            for (size_t k = 0; k < cap; k++)
                memcpy(x + k * d, z->ring + ((z->ring_pos + k) % cap) * d, d * sizeof *x);
            int rc = s_fit(z, x, cap, false);
            free(x);
            if (rc != EW_OK)
                return rc;
        }
    }
    z->host->counter_add(z->c_nonfinite, nonfinite);
    return EW_OK;
}

static int s_flush(void *self)
{
    pca *z = self;
    if (z->unsaved)
        s_save(z);
    if (!z->have_model)
        z->host->log(z->node, EW_LOG_INFO,
                     "the stream ended after %zu of the %lld training samples: no model learnt",
                     z->train_n, (long long)z->cfg->train_samples);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "pca",
    .version = "1.0.0",
    .description = "PCA process monitoring over all channels: Hotelling T^2 and Q (SPE) against "
                   "limits learnt from normal operation, with per-channel contributions",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(pca_config),
    .init = s_init,
    .process = s_process,
    .flush = s_flush,
    .destroy = s_destroy,
    .validate = s_validate,
};

EW_PLUGIN_EXPORT(s_plugin)
