/* autoencoder: a detector that learns a dense autoencoder of a sliding window of
 * all its input channels on the device, then scores each window by how badly the
 * network reconstructs it.
 *
 *     [detector.pump_ae]
 *     plugin = autoencoder
 *     input = pump
 *     window = 1
 *     layers = 6, 3
 *     train_samples = 5000
 *
 * The first `train_samples` complete, finite windows are collected (score 0,
 * node state `learning`); a standardiser (mean/sd per input column) is fitted
 * on them and the network is trained with mini-batch Adam and early stopping on
 * a seeded held-out slice, on a thread of its own so the stream never waits for
 * it. The threshold is the `quantile` of the training windows' reconstruction
 * errors times `factor`. Then, per sample, e = mean squared error of the
 * standardised window; score = e / (e + threshold) (0.5 at the threshold);
 * anomaly = e > threshold; e is the extra channel `reconstruction_error`.
 * The model is saved as the state file model.bin and loaded at start, so a
 * restart scores from the first sample without relearning.
 * See README.md for the details and the model file format.
 */
#include <edgewatch/plugin.h>

#include "ae_model.h"
#include "ae_net.h"
#include "ewp_quantile.h"
#include "ewp_wait.h"
#include "ewplug.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Name of the state file that holds the model. */
#define S_MODEL_FILE "model.bin"
/* Smallest threshold: a network that reconstructs its training data exactly
 * would otherwise flag every rounding error. */
#define S_MIN_THRESHOLD 1e-12
/* Training windows are kept in memory: refuse configs that would need more. */
#define S_MAX_TRAIN_BYTES ((uint64_t)1 << 30)

typedef struct ae_config {
    int64_t window;
    ew_list layers;
    int activation;
    int64_t train_samples;
    int64_t epochs;
    double learning_rate;
    int64_t batch_size;
    double validation;
    int64_t patience;
    int64_t seed;
    double quantile;
    double factor;
    bool background;
} ae_config;

/* Where the detector is in its life. */
typedef enum s_phase {
    S_COLLECTING, /* gathering training windows */
    S_TRAINING,   /* the training thread runs */
    S_READY,      /* scoring with a model */
} s_phase;

typedef struct autoencoder {
    const ew_host *host;
    ew_node *node;
    const ae_config *cfg;
    ae_settings settings;

    size_t nch;              /* scored input channels */
    size_t *cols;            /* their columns in the input row */
    const char **names;      /* their names */
    size_t window;
    size_t d;                /* network input width: window * nch */

    /* Sliding window: each row is written twice, at p and p + window, so the
     * window (oldest first) is always contiguous at ring + (p + 1) * nch. */
    double *ring;
    size_t ring_pos;
    size_t seen;             /* rows pushed, capped at window */
    size_t since_bad;        /* rows since the last one with a non-finite value, capped */

    s_phase phase;
    double *train;           /* train_samples raw windows, row-major */
    size_t ntrain;

    /* Training thread: it reads `train` and writes `pending` and `train_rc`, then
     * sets `done`; the node thread touches them only after seeing `done`. */
    pthread_t thread;
    bool thread_running;
    atomic_bool done;
    atomic_bool cancel;
    ae_model pending;
    ae_train_report report;
    int train_rc;

    ae_model model;          /* valid in S_READY */
    double *inv_sd;          /* 1 / model.sd */
    double *xt;              /* standardised windows of a block, feature-major (AE_BLOCK wide) */
    size_t block_rows[AE_BLOCK]; /* the batch row of each window in the block */
    size_t block_count;
    double block_err[AE_BLOCK];
    double *scratch;         /* 2 * max_width * AE_BLOCK, for the forward pass */

    ew_counter *nonfinite;
    char extra_name[160];
} autoencoder;

static const ew_option s_options[] = {
    EW_OPTION_RANGE("window", EW_OPT_INT, "1", 1, 1000, ae_config, window,
                    "Consecutive samples in one input of the network (1 = each sample alone)."),
    EW_OPTION_RANGE("layers", EW_OPT_LIST, "6, 3", 1, AE_MAX_HIDDEN, ae_config, layers,
                    "Widths of the encoder's layers, outermost first; the decoder mirrors them."),
    EW_OPTION_ENUM("activation", "tanh", "tanh|relu|sigmoid", ae_config, activation,
                   "Activation of the hidden layers; the output layer is linear."),
    EW_OPTION_RANGE("train_samples", EW_OPT_INT, "1000", 2, 10000000, ae_config, train_samples,
                    "Complete, finite windows to learn from before scoring starts."),
    EW_OPTION_RANGE("epochs", EW_OPT_INT, "100", 1, 100000, ae_config, epochs,
                    "Most passes over the training windows."),
    EW_OPTION_RANGE("learning_rate", EW_OPT_DOUBLE, "0.01", 1e-7, 1, ae_config, learning_rate,
                    "Step size of the Adam optimiser."),
    EW_OPTION_RANGE("batch_size", EW_OPT_INT, "32", 1, 65536, ae_config, batch_size,
                    "Windows per mini-batch (one Adam step each)."),
    EW_OPTION_RANGE("validation", EW_OPT_DOUBLE, "0.1", 0, 0.9, ae_config, validation,
                    "Fraction of the training windows held out for early stopping; 0 = stop on the training loss."),
    EW_OPTION_RANGE("patience", EW_OPT_INT, "10", 1, 100000, ae_config, patience,
                    "Epochs without a 0.01 % improvement of the held-out loss before training stops."),
    EW_OPTION("seed", EW_OPT_INT, "1", ae_config, seed,
              "Seed of the weight initialisation, the held-out split and the shuffles."),
    EW_OPTION_RANGE("quantile", EW_OPT_DOUBLE, "0.99", 0.5, 1, ae_config, quantile,
                    "Quantile of the training windows' reconstruction errors the threshold starts from."),
    EW_OPTION_RANGE("factor", EW_OPT_DOUBLE, "1.5", 0.01, 1000, ae_config, factor,
                    "Threshold = quantile of the training errors times this factor; score 0.5 there."),
    EW_OPTION("background", EW_OPT_BOOL, "true", ae_config, background,
              "Train on a thread of its own (true) or inside the batch that completes the training set."),
    EW_OPTION_END,
};

/* Parses a layer width: a whole number 1..AE_MAX_WIDTH. */
static int s_parse_width(const char *text, size_t *out)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || v < 1 || v > AE_MAX_WIDTH)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const ae_config *cfg = config;
    *line = 0;
    if (cfg->layers.count == 0) {
        snprintf(err, errlen, "layers is empty: give the encoder's widths, e.g. layers = 6, 3");
        return EW_ERR;
    }
    for (size_t k = 0; k < cfg->layers.count; k++) {
        size_t w;
        if (s_parse_width(cfg->layers.items[k], &w) < 0) {
            snprintf(err, errlen,
                     "layers item %zu is \"%s\": each width must be a whole number from 1 to %d "
                     "(e.g. layers = 6, 3)",
                     k + 1, cfg->layers.items[k], AE_MAX_WIDTH);
            return EW_ERR;
        }
    }
    return EW_OK;
}

static void s_join(autoencoder *a)
{
    if (a->thread_running) {
        pthread_join(a->thread, NULL);
        a->thread_running = false;
    }
}

static void s_destroy(void *self)
{
    autoencoder *a = self;
    if (!a)
        return;
    atomic_store(&a->cancel, true);
    s_join(a);
    ae_model_free(&a->pending);
    ae_model_free(&a->model);
    free(a->cols);
    free(a->names);
    free(a->ring);
    free(a->train);
    free(a->inv_sd);
    free(a->xt);
    free(a->scratch);
    free(a);
}

/* Makes `m` the model in use: precomputes 1/sd and the scratch space. */
static int s_install(autoencoder *a, ae_model *m)
{
    double *inv = malloc(a->d * sizeof *inv);
    double *scratch = malloc(2 * m->net.max_width * AE_BLOCK * sizeof *scratch);
    if (!inv || !scratch) {
        free(inv);
        free(scratch);
        return -1;
    }
    for (size_t j = 0; j < a->d; j++)
        inv[j] = 1.0 / m->sd[j];
    ae_model_free(&a->model);
    a->model = *m;
    memset(m, 0, sizeof *m);
    free(a->inv_sd);
    free(a->scratch);
    a->inv_sd = inv;
    a->scratch = scratch;
    a->phase = S_READY;
    return 0;
}

/* The training job: fits the standardiser, trains the network and sets the
 * threshold, from a->train into a->pending. Touches nothing of the host. */
static int s_learn(autoencoder *a)
{
    const size_t n = a->ntrain, d = a->d;
    ae_model *m = &a->pending;
    if (ae_model_alloc(m, &a->settings) < 0)
        return -1;
    double *rows = a->train;
    /* Population mean and sd per column (as scikit-learn's StandardScaler); a
     * constant column gets sd 1, so it is only centred. */
    for (size_t j = 0; j < d; j++) {
        double s = 0;
        for (size_t i = 0; i < n; i++)
            s += rows[i * d + j];
        double mean = s / (double)n, ss = 0;
        for (size_t i = 0; i < n; i++) {
            double dv = rows[i * d + j] - mean;
            ss += dv * dv;
        }
        double sd = sqrt(ss / (double)n);
        m->mean[j] = mean;
        m->sd[j] = sd > 0 && isfinite(sd) ? sd : 1.0;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            rows[i * d + j] = (rows[i * d + j] - m->mean[j]) / m->sd[j];
    ae_train_opts opts = {
        .epochs = (size_t)a->cfg->epochs,
        .learning_rate = a->cfg->learning_rate,
        .batch_size = (size_t)a->cfg->batch_size,
        .validation = a->cfg->validation,
        .patience = (size_t)a->cfg->patience,
        .seed = (uint64_t)a->cfg->seed,
    };
    int rc = ae_net_train(&m->net, rows, n, &opts, &a->cancel, &a->report);
    if (rc != 0)
        return rc;
    double *errors = malloc((n ? n : 1) * sizeof *errors);
    double *scratch = malloc(2 * m->net.max_width * sizeof *scratch);
    if (!errors || !scratch) {
        free(errors);
        free(scratch);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        errors[i] = ae_net_error(&m->net, rows + i * d, scratch);
    double t = ewp_quantile(errors, n, a->cfg->quantile) * a->cfg->factor;
    free(errors);
    free(scratch);
    if (!isfinite(t))
        return -2;
    m->threshold = t > S_MIN_THRESHOLD ? t : S_MIN_THRESHOLD;
    m->epochs_run = a->report.epochs_run;
    m->rows = n;
    return 0;
}

static void *s_thread(void *arg)
{
    autoencoder *a = arg;
    a->train_rc = s_learn(a);
    atomic_store_explicit(&a->done, true, memory_order_release);
    return NULL;
}

/* Takes the result of s_learn: installs and saves the model, or fails. */
static int s_finish_training(autoencoder *a)
{
    free(a->train);
    a->train = NULL;
    if (a->train_rc == -1) {
        a->host->set_error(a->node, "out of memory while training the autoencoder");
        return EW_ERR;
    }
    if (a->train_rc != 0) {
        a->host->set_error(a->node, "training diverged (non-finite reconstruction errors): "
                                    "lower learning_rate or check the input for huge values");
        return EW_ERR;
    }
    ae_train_report r = a->report;
    if (s_install(a, &a->pending) < 0) {
        a->host->set_error(a->node, "out of memory installing the autoencoder model");
        return EW_ERR;
    }
    a->host->log(a->node, EW_LOG_INFO,
                 "learnt from %zu windows (%zu held out): %zu epochs%s, best held-out loss %.6g "
                 "at epoch %zu, threshold %.6g",
                 r.train_rows, r.validation_rows, r.epochs_run,
                 r.stopped_early ? " (early stop)" : "", r.best_loss, r.best_epoch,
                 a->model.threshold);
    void *data;
    size_t len;
    if (ae_model_encode(&a->model, a->names, &data, &len) < 0) {
        a->host->log(a->node, EW_LOG_WARN, "out of memory encoding the model: not saved");
    } else {
        if (a->host->state_save(a->node, S_MODEL_FILE, data, len) == EW_OK)
            a->host->log(a->node, EW_LOG_INFO, "model saved to %s (%zu bytes)", S_MODEL_FILE, len);
        else
            a->host->log(a->node, EW_LOG_WARN,
                         "the model could not be saved (see above): it will be relearnt at the "
                         "next start");
        free(data);
    }
    if (EW_HOST_HAS(a->host, set_learning))
        a->host->set_learning(a->node, false);
    return EW_OK;
}

/* The training set is complete: trains in the background or right here. */
static int s_start_training(autoencoder *a)
{
    a->phase = S_TRAINING;
    a->host->log(a->node, EW_LOG_INFO, "training on %zu windows (at most %lld epochs)%s",
                 a->ntrain, (long long)a->cfg->epochs,
                 a->cfg->background ? ", in the background" : ", inside this batch");
    if (a->cfg->background) {
        atomic_store(&a->done, false);
        if (pthread_create(&a->thread, NULL, s_thread, a) == 0) {
            a->thread_running = true;
            return EW_OK;
        }
        a->host->log(a->node, EW_LOG_WARN,
                     "cannot start the training thread: training inside this batch instead");
    }
    a->train_rc = s_learn(a);
    return s_finish_training(a);
}

/* Installs a model that the training thread has finished, if it has. */
static int s_poll_training(autoencoder *a, bool wait)
{
    if (a->phase != S_TRAINING || !a->thread_running)
        return EW_OK;
    if (!wait && !atomic_load_explicit(&a->done, memory_order_acquire))
        return EW_OK;
    s_join(a);
    return s_finish_training(a);
}

/* Loads model.bin if there is a usable one. EW_OK with or without a model;
 * EW_ERR when the state folder cannot be read. */
static int s_load(autoencoder *a)
{
    void *data = NULL;
    size_t len = 0;
    int rc = a->host->state_load(a->node, S_MODEL_FILE, &data, &len);
    if (rc == EW_ENOENT)
        return EW_OK; /* none, or corrupt and moved aside (the host logged it) */
    if (rc != EW_OK) {
        a->host->set_error(a->node, "cannot read the autoencoder's model file %s: check that "
                                    "state_dir is a readable and writable folder", S_MODEL_FILE);
        return EW_ERR;
    }
    ae_model m;
    char err[400];
    int drc = ae_model_decode(data, len, &a->settings, a->names, &m, err, sizeof err);
    free(data);
    if (drc < 0) {
        a->host->log(a->node, EW_LOG_WARN, "%s rejected (%s): %s; relearning from the next %lld windows",
                     S_MODEL_FILE, drc == -2 ? "learnt for another config" : "invalid", err,
                     (long long)a->cfg->train_samples);
        return EW_OK;
    }
    a->host->log(a->node, EW_LOG_INFO,
                 "loaded %s: learnt from %llu windows in %llu epochs, threshold %.6g; scoring "
                 "without relearning", S_MODEL_FILE, (unsigned long long)m.rows,
                 (unsigned long long)m.epochs_run, m.threshold);
    if (s_install(a, &m) < 0) {
        ae_model_free(&m);
        a->host->set_error(a->node, "out of memory installing the autoencoder model");
        return EW_ERR;
    }
    return EW_OK;
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const ae_config *cfg = config;
    char verr[300];
    int vline;
    if (s_validate(cfg, verr, sizeof verr, &vline) != EW_OK) {
        host->set_error(node, "%s", verr);
        return EW_EINVAL;
    }
    const ew_schema *in = host->input_schema(node);
    if (!in) {
        host->set_error(node, "autoencoder has no input schema: give the node an input = <node>");
        return EW_EINVAL;
    }
    autoencoder *a = calloc(1, sizeof *a);
    if (!a) {
        host->set_error(node, "out of memory allocating the autoencoder detector");
        return EW_ERR;
    }
    a->host = host;
    a->node = node;
    a->cfg = cfg;
    a->cols = calloc(in->channels ? in->channels : 1, sizeof *a->cols);
    a->names = calloc(in->channels ? in->channels : 1, sizeof *a->names);
    if (!a->cols || !a->names)
        goto oom;
    bool has_extra_name = false;
    for (size_t c = 0; c < in->channels; c++) {
        if (strcmp(in->names[c], "reconstruction_error") == 0)
            has_extra_name = true;
        /* An upstream detector's verdict is not a measurement to learn. */
        if ((int)c == in->score_index || (int)c == in->anomaly_index)
            continue;
        a->cols[a->nch] = c;
        a->names[a->nch] = in->names[c];
        a->nch++;
    }
    if (a->nch == 0) {
        host->set_error(node, "the input stream has no channels to learn (only score/anomaly): "
                              "connect autoencoder to a source or a detector with measurements");
        s_destroy(a);
        return EW_EINVAL;
    }
    a->window = (size_t)cfg->window;
    a->d = a->window * a->nch;
    if (a->d > AE_MAX_WIDTH) {
        host->set_error(node, "window %zu times %zu channels = %zu network inputs, more than %d: "
                              "use a smaller window", a->window, a->nch, a->d, AE_MAX_WIDTH);
        s_destroy(a);
        return EW_EINVAL;
    }
    if ((uint64_t)cfg->train_samples * a->d * sizeof(double) > S_MAX_TRAIN_BYTES) {
        host->set_error(node, "train_samples = %lld windows of %zu values need more than 1 GiB: "
                              "lower train_samples or window", (long long)cfg->train_samples, a->d);
        s_destroy(a);
        return EW_EINVAL;
    }

    ae_settings *s = &a->settings;
    s->activation = (uint32_t)cfg->activation;
    s->window = (uint32_t)a->window;
    s->channels = (uint32_t)a->nch;
    s->nhidden = (uint32_t)cfg->layers.count;
    size_t narrowest = AE_MAX_WIDTH;
    for (size_t k = 0; k < cfg->layers.count; k++) {
        size_t w = 0;
        s_parse_width(cfg->layers.items[k], &w);
        s->hidden[k] = (uint32_t)w;
        if (w < narrowest)
            narrowest = w;
    }
    s->train_samples = (uint64_t)cfg->train_samples;
    s->epochs = (uint64_t)cfg->epochs;
    s->batch_size = (uint64_t)cfg->batch_size;
    s->patience = (uint64_t)cfg->patience;
    s->seed = (uint64_t)cfg->seed;
    s->learning_rate = cfg->learning_rate;
    s->validation = cfg->validation;
    s->quantile = cfg->quantile;
    s->factor = cfg->factor;
    if (narrowest >= a->d)
        host->log(node, EW_LOG_WARN,
                  "the narrowest layer (%zu) is not narrower than the input (%zu values): the "
                  "network can learn to copy its input and then misses anomalies; use a layer "
                  "narrower than window * channels", narrowest, a->d);

    /* Never a 0-byte request: its NULL would read as out of memory. */
    a->ring = calloc(a->d ? 2 * a->d : 1, sizeof *a->ring);
    /* calloc: the unused lanes of a partial block are computed too. */
    a->xt = calloc(a->d ? a->d * AE_BLOCK : 1, sizeof *a->xt);
    if (!a->ring || !a->xt)
        goto oom;
    a->nonfinite = host->counter(node, "autoencoder_nonfinite_windows",
                                 "Windows with a NaN or infinite value: scored 0 and not learnt");
    if (has_extra_name)
        snprintf(a->extra_name, sizeof a->extra_name, "reconstruction_error_%s",
                 host->node_name(node));
    else
        snprintf(a->extra_name, sizeof a->extra_name, "reconstruction_error");
    const char *extra[1] = {a->extra_name};
    int rc = host->add_channels(node, 1, extra);
    if (rc != EW_OK) {
        s_destroy(a);
        return rc;
    }
    rc = s_load(a);
    if (rc != EW_OK) {
        s_destroy(a);
        return rc;
    }
    if (a->phase != S_READY) {
        a->train = malloc((size_t)cfg->train_samples * a->d * sizeof *a->train);
        if (!a->train)
            goto oom;
        if (EW_HOST_HAS(host, set_learning))
            host->set_learning(node, true);
    }
    *self = a;
    return EW_OK;
oom:
    host->set_error(node, "out of memory allocating the autoencoder (%zu inputs)", a->d);
    s_destroy(a);
    return EW_ERR;
}

/* 1 / (1 + T / e) = e / (e + T): 0 at e = 0, 0.5 at e = T, 1 as e grows
 * without bound, with no division by zero at either end. */
static inline double s_score(double e, double threshold)
{
    return 1.0 / (1.0 + threshold / e);
}

/* Scores the windows gathered in the block and writes their results. */
static void s_score_block(autoencoder *a, ew_scores *out)
{
    const size_t n = a->block_count;
    if (n == 0)
        return;
    ae_net_error_block(&a->model.net, a->xt, n, a->block_err, a->scratch);
    const double t = a->model.threshold;
    for (size_t s = 0; s < n; s++) {
        const size_t i = a->block_rows[s];
        double e = a->block_err[s];
        if (isnan(e))
            e = INFINITY; /* overflow inside the network: far outside anything learnt */
        out->score[i] = s_score(e, t);
        out->anomaly[i] = e > t;
        if (out->extra)
            out->extra[i * out->extra_channels] = e;
    }
    a->block_count = 0;
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    autoencoder *a = self;
    int rc = s_poll_training(a, false);
    if (rc != EW_OK)
        return rc;
    const size_t stride = in->schema->channels, nch = a->nch, w = a->window, d = a->d;
    const size_t xs = out->extra_channels;
    uint64_t nonfinite = 0;
    for (size_t i = 0; i < in->count; i++) {
        const double *row = in->values + i * stride;
        double *slot = a->ring + a->ring_pos * nch, *twin = slot + w * nch;
        bool finite = true;
        for (size_t k = 0; k < nch; k++) {
            double v = row[a->cols[k]];
            slot[k] = v;
            twin[k] = v;
            finite &= isfinite(v) != 0;
        }
        const double *win = a->ring + (a->ring_pos + 1) * nch;
        a->ring_pos = a->ring_pos + 1 == w ? 0 : a->ring_pos + 1;
        if (a->seen < w)
            a->seen++;
        a->since_bad = finite ? (a->since_bad < w ? a->since_bad + 1 : w) : 0;

        out->score[i] = 0;
        out->anomaly[i] = 0;
        double *extra = out->extra ? out->extra + i * xs : NULL;
        if (extra)
            extra[0] = NAN;
        if (a->since_bad < w) {
            /* A missing value: no verdict for the windows that hold it, and
             * they are not learnt either. */
            if (a->seen == w)
                nonfinite++;
            continue;
        }
        if (a->phase == S_READY) {
            /* Gathered into a block, scored AE_BLOCK windows at a time. */
            const double *mean = a->model.mean, *inv = a->inv_sd;
            const size_t s = a->block_count;
            double *x = a->xt + s;
            for (size_t j = 0; j < d; j++)
                x[j * AE_BLOCK] = (win[j] - mean[j]) * inv[j];
            a->block_rows[s] = i;
            if (++a->block_count == AE_BLOCK)
                s_score_block(a, out);
        } else if (a->phase == S_COLLECTING) {
            memcpy(a->train + a->ntrain * d, win, d * sizeof *win);
            if (++a->ntrain == (size_t)a->cfg->train_samples) {
                rc = s_start_training(a);
                if (rc != EW_OK)
                    return rc;
            }
        }
    }
    s_score_block(a, out);
    if (nonfinite)
        a->host->counter_add(a->nonfinite, nonfinite);
    return EW_OK;
}

static int s_flush(void *self)
{
    autoencoder *a = self;
    if (a->phase == S_TRAINING) {
        /* A stop (SIGTERM) must end within shutdown_timeout: a long training
         * is abandoned rather than forced off half-way. */
        if (a->thread_running && a->host->stopping(a->node) &&
            !ewp_wait_flag(&a->done, EWP_STOP_GRACE_NS)) {
            atomic_store(&a->cancel, true);
            s_join(a);
            ae_model_free(&a->pending);
            free(a->train);
            a->train = NULL;
            a->ntrain = 0;
            a->phase = S_COLLECTING;
            a->host->log(a->node, EW_LOG_WARN,
                         "stopping while the model is being learnt: training abandoned after "
                         "waiting %.0f s for it; nothing saved, the model is learnt again at "
                         "the next start",
                         (double)EWP_STOP_GRACE_NS / 1e9);
            return EW_OK;
        }
        a->host->log(a->node, EW_LOG_INFO, "end of stream: waiting for training to finish");
        return s_poll_training(a, true);
    }
    if (a->phase == S_COLLECTING && a->ntrain > 0)
        a->host->log(a->node, EW_LOG_WARN,
                     "the stream ended after %zu of train_samples = %lld training windows: "
                     "nothing learnt, nothing saved", a->ntrain, (long long)a->cfg->train_samples);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "autoencoder",
    .version = "1.0.0",
    .description = "Dense autoencoder over a window of all channels, trained on the device",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(ae_config),
    .init = s_init,
    .process = s_process,
    .flush = s_flush,
    .destroy = s_destroy,
    .validate = s_validate,
};

EW_PLUGIN_EXPORT(s_plugin)
