/* autoencoder: a detector that learns a dense autoencoder of a sliding window of
 * all its input channels on the device, then scores each window by how badly the
 * network reconstructs it.
 *
 *     [detector.pump_ae]
 *     plugin = autoencoder
 *     input = pump
 *     window = 0          ; auto: enough samples for at least 24 network inputs
 *     layers = auto       ; one bottleneck 3/4 as wide as the input
 *     train_samples = 500
 *
 * The first `train_samples` complete, finite windows are collected (node state
 * `learning`, every sample marked learning); a standardiser (mean/sd per input
 * column) is fitted on them and the network is trained with mini-batch Adam and
 * early stopping on a seeded held-out slice. The threshold is the `quantile` of
 * the training windows' reconstruction errors times `factor`. Then, per sample,
 * raw = e = mean squared error of the standardised window, contrib = each input
 * channel's share of it, score = u / (1 + u) with u = log2(1 + e / threshold)
 * (0.5 at the threshold, never saturating), anomaly = e > threshold.
 *
 * Learning is deterministic: a training started at sample N (background or not)
 * scores from sample N + 1 + train_delay on (train_delay only with background),
 * and the stream waits at that sample if the training thread is not done, so a
 * replay gives the same bytes whatever the machine's speed. With retrain_every
 * the model is relearnt the same way from the last train_samples windows.
 * The model is saved as the state file model.bin with the options and channel
 * names that shape it; at start a mismatch is refused or relearnt
 * (on_model_mismatch). See README.md for the details and the model file format.
 */
#include <edgewatch/plugin.h>

#include "ae_model.h"
#include "ae_net.h"
#include "ewp_quantile.h"
#include "ewp_wait.h"
#include "ewplug.h"

#include <float.h>
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
/* window = 0 (auto) takes the fewest samples that give the network at least this
 * many inputs: with fewer, a bottleneck narrow enough not to copy its input
 * cannot hold the normal variation either (one channel alone would be learnt as
 * the identity). Measured on NAB's single series with the host's likelihood
 * (standard profile): 8 samples 50.4, 16: 53.5, 24: 58.5, 32: 57.0. */
#define S_AUTO_MIN_INPUTS 24
/* layers = auto: one bottleneck of this fraction of the input width (measured:
 * on TEP's 52 channels 39 wide beat 26 and 31, as PCA keeps 31 components for
 * 90 % of the variance; on NAB's single channels, windows of 8, a bottleneck of 6
 * was within 0.6 of 2 or 4). */
#define S_AUTO_BOTTLENECK 0.75
/* A retrained model is saved at most this often (and at the end of the stream),
 * so that retraining every few samples does not wear out the storage. */
#define S_SAVE_INTERVAL_NS (60 * (int64_t)1000000000)
/* While waiting for a training at its apply sample, how often to look whether
 * the pipeline is stopping. */
#define S_WAIT_SLICE_NS 50000000LL

typedef struct ae_config {
    int64_t window;
    ew_list layers;
    int activation;
    int64_t train_samples;
    int64_t retrain_every;
    int64_t train_delay;
    int64_t epochs;
    double learning_rate;
    int64_t batch_size;
    double validation;
    int64_t patience;
    int64_t seed;
    double quantile;
    double factor;
    bool background;
    int on_model_mismatch;
} ae_config;

enum { S_MISMATCH_REFUSE = 0, S_MISMATCH_RETRAIN = 1 };

typedef struct autoencoder autoencoder;

/* One training: owns its rows (standardised in place) and its result. The
 * thread touches nothing else but the detector's constant settings; the node
 * thread reads the result only after seeing `done`. */
typedef struct s_job {
    const autoencoder *a;
    double *rows;
    size_t n;
    bool initial;           /* the first model, not a retraining */
    bool threaded;
    pthread_t thread;
    atomic_bool done;
    atomic_bool cancel;
    uint64_t apply_at;      /* index of the first sample the new model scores */
    ae_model model;
    ae_train_report report;
    int rc;
} s_job;

struct autoencoder {
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
    size_t since_bad;        /* rows since the last one with a non-finite value, capped */
    uint64_t t;              /* samples seen since start: the clock of the apply points */

    double *train;           /* first training set: train_samples raw windows */
    size_t ntrain;
    double *reservoir;       /* retrain_every: the last train_samples finite windows */
    size_t res_pos, res_n;
    uint64_t since_train;    /* finite windows since the last training started */
    s_job *job;

    bool has_model;
    ae_model model;
    double *inv_sd;          /* 1 / model.sd */
    double *xt;              /* standardised windows of a block, feature-major (AE_BLOCK wide) */
    double *sq;              /* their squared errors, same layout */
    size_t block_rows[AE_BLOCK]; /* the batch row of each window in the block */
    size_t block_count;
    double block_err[AE_BLOCK];
    double *scratch;         /* 2 * max_width * AE_BLOCK, for the forward pass */
    bool unsaved;            /* a retrained model waits for its save */
    int64_t saved_at;        /* monotonic ns of the last save */

    ew_counter *nonfinite;
    ew_counter *trainings;
    char extra_name[160];
};

static const ew_option s_options[] = {
    EW_OPTION_RANGE("window", EW_OPT_INT, "0", 0, 1000, ae_config, window,
                    "Consecutive samples in one input of the network; 0 = auto, the fewest that "
                    "give at least 24 inputs (24 for one channel, 1 from 24 channels on)."),
    EW_OPTION_RANGE("layers", EW_OPT_LIST, "auto", 1, AE_MAX_HIDDEN, ae_config, layers,
                    "Widths of the encoder's layers, outermost first (the decoder mirrors them), "
                    "or auto: one bottleneck 3/4 as wide as window x channels (always narrower)."),
    EW_OPTION_ENUM("activation", "tanh", "tanh|relu|sigmoid", ae_config, activation,
                   "Activation of the hidden layers; the output layer is linear."),
    EW_OPTION_RANGE("train_samples", EW_OPT_INT, "500", 2, 10000000, ae_config, train_samples,
                    "Complete, finite windows to learn from before scoring starts; also the size "
                    "of the reservoir of recent windows used by retrain_every."),
    EW_OPTION_RANGE("retrain_every", EW_OPT_INT, "0", 0, 1e15, ae_config, retrain_every,
                    "Relearn the model every this many finite windows from the last "
                    "train_samples windows (anomalies included); 0 = never."),
    EW_OPTION_RANGE("train_delay", EW_OPT_INT, "10", 0, 1e9, ae_config, train_delay,
                    "With background = true: samples between the one that starts a training and "
                    "the first one its model scores; the stream waits there for an unfinished "
                    "training, so replays are identical at any speed."),
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
              "Train on a thread of its own while the stream goes on for train_delay samples "
              "(true, for live sources), or inside the sample that completes the training set."),
    EW_OPTION_ENUM("on_model_mismatch", "refuse", "refuse|retrain", ae_config, on_model_mismatch,
                   "A saved model learnt with other options or channels: refuse to start "
                   "(saying what changed), or learn a new one and overwrite it."),
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

static bool s_layers_auto(const ae_config *cfg)
{
    return cfg->layers.count == 1 && strcmp(cfg->layers.items[0], "auto") == 0;
}

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const ae_config *cfg = config;
    *line = 0;
    if (cfg->layers.count == 0) {
        snprintf(err, errlen, "layers is empty: give the encoder's widths, e.g. layers = 6, 3, "
                              "or layers = auto");
        return EW_ERR;
    }
    if (s_layers_auto(cfg))
        return EW_OK;
    for (size_t k = 0; k < cfg->layers.count; k++) {
        size_t w;
        if (s_parse_width(cfg->layers.items[k], &w) < 0) {
            snprintf(err, errlen,
                     "layers item %zu is \"%s\": each width must be a whole number from 1 to %d "
                     "(e.g. layers = 6, 3), or the whole list auto",
                     k + 1, cfg->layers.items[k], AE_MAX_WIDTH);
            return EW_ERR;
        }
    }
    return EW_OK;
}

/* ---- training jobs ------------------------------------------------------------------------ */

/* Fits the standardiser, trains the network and sets the threshold, from
 * job->rows into job->model. 0, -1 out of memory, -2 diverged, 1 cancelled. */
static int s_learn(s_job *job)
{
    const autoencoder *a = job->a;
    const size_t n = job->n, d = a->d;
    ae_model *m = &job->model;
    if (ae_model_alloc(m, &a->settings) < 0)
        return -1;
    double *rows = job->rows;
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
    int rc = ae_net_train(&m->net, rows, n, &opts, &job->cancel, &job->report);
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
    m->epochs_run = job->report.epochs_run;
    m->rows = n;
    return 0;
}

static void *s_thread(void *arg)
{
    s_job *job = arg;
    job->rc = s_learn(job);
    atomic_store_explicit(&job->done, true, memory_order_release);
    return NULL;
}

static void s_job_free(s_job **jp)
{
    s_job *job = *jp;
    if (!job)
        return;
    if (job->threaded) {
        atomic_store(&job->cancel, true);
        pthread_join(job->thread, NULL);
    }
    ae_model_free(&job->model);
    free(job->rows);
    free(job);
    *jp = NULL;
}

static int s_finish_job(autoencoder *a);

/* Starts a training on `rows` (taken over) at sample index a->t: in the
 * background, applied from sample a->t + 1 + train_delay on, or right here and
 * installed at once, so that it scores from the next sample on. */
static int s_start_job(autoencoder *a, double *rows, size_t n, bool initial)
{
    s_job *job = calloc(1, sizeof *job);
    if (!job) {
        free(rows);
        a->host->set_error(a->node, "out of memory starting a training");
        return EW_ERR;
    }
    job->a = a;
    job->rows = rows;
    job->n = n;
    job->initial = initial;
    atomic_init(&job->done, false);
    atomic_init(&job->cancel, false);
    a->job = job;
    a->since_train = 0;
    a->host->counter_add(a->trainings, 1);
    bool background = a->cfg->background;
    job->apply_at = a->t + 1 + (uint64_t)a->cfg->train_delay;
    a->host->log(a->node, initial ? EW_LOG_INFO : EW_LOG_DEBUG,
                     "training on %zu windows (at most %lld epochs)%s", n,
                     (long long)a->cfg->epochs,
                     background ? ", in the background" : ", inside this batch");
    if (background) {
        if (pthread_create(&job->thread, NULL, s_thread, job) == 0) {
            job->threaded = true;
            return EW_OK;
        }
        a->host->log(a->node, EW_LOG_WARN,
                     "cannot start the training thread: training inside this batch instead");
    }
    job->rc = s_learn(job);
    atomic_store(&job->done, true);
    return s_finish_job(a);
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
    a->has_model = true;
    return 0;
}

static void s_save(autoencoder *a, bool loud)
{
    void *data;
    size_t len;
    a->unsaved = false;
    a->saved_at = a->host->monotonic(a->node);
    if (ae_model_encode(&a->model, a->names, &data, &len) < 0) {
        a->host->log(a->node, EW_LOG_WARN, "out of memory encoding the model: not saved");
        return;
    }
    if (a->host->state_save(a->node, S_MODEL_FILE, data, len) == EW_OK)
        a->host->log(a->node, loud ? EW_LOG_INFO : EW_LOG_DEBUG,
                     "model saved to %s (%zu bytes)", S_MODEL_FILE, len);
    else
        a->host->log(a->node, EW_LOG_WARN,
                     "the model could not be saved (see above): it will be relearnt at the "
                     "next start");
    free(data);
}

/* Takes a finished job's result: installs (and saves) the model, or fails. */
static int s_finish_job(autoencoder *a)
{
    s_job *job = a->job;
    if (job->threaded)
        pthread_join(job->thread, NULL);
    job->threaded = false;
    int rc = job->rc;
    if (rc == -1) {
        s_job_free(&a->job);
        a->host->set_error(a->node, "out of memory while training the autoencoder");
        return EW_ERR;
    }
    if (rc != 0) {
        s_job_free(&a->job);
        a->host->set_error(a->node, "training diverged (non-finite reconstruction errors): "
                                    "lower learning_rate or check the input for huge values");
        return EW_ERR;
    }
    ae_train_report r = job->report;
    bool initial = job->initial;
    if (s_install(a, &job->model) < 0) {
        s_job_free(&a->job);
        a->host->set_error(a->node, "out of memory installing the autoencoder model");
        return EW_ERR;
    }
    s_job_free(&a->job);
    a->host->log(a->node, initial ? EW_LOG_INFO : EW_LOG_DEBUG,
                 "%s from %zu windows (%zu held out): %zu epochs%s, best held-out loss %.6g "
                 "at epoch %zu, threshold %.6g",
                 initial ? "learnt" : "relearnt", r.train_rows + r.validation_rows,
                 r.validation_rows, r.epochs_run, r.stopped_early ? " (early stop)" : "",
                 r.best_loss, r.best_epoch, a->model.threshold);
    if (initial) {
        s_save(a, true);
        if (EW_HOST_HAS(a->host, set_learning))
            a->host->set_learning(a->node, false);
    } else {
        a->unsaved = true;
        if (a->host->monotonic(a->node) - a->saved_at >= S_SAVE_INTERVAL_NS)
            s_save(a, false);
    }
    return EW_OK;
}

/* Abandons the running training because the pipeline stops; a first model is
 * collected again at the next start (not in this run, which is ending). */
static void s_abandon(autoencoder *a)
{
    bool initial = a->job->initial;
    s_job_free(&a->job);
    a->host->log(a->node, EW_LOG_WARN,
                 "stopping while the model is being learnt: training abandoned after waiting "
                 "%.0f s for it; %s",
                 (double)EWP_STOP_GRACE_NS / 1e9,
                 initial ? "nothing saved, the model is learnt again at the next start"
                         : "the model in use is kept");
}

/* Waits for the job to finish; when the pipeline stops meanwhile, waits at most
 * the stop grace and then abandons it. Returns true when the job is done. */
static bool s_wait_job(autoencoder *a)
{
    s_job *job = a->job;
    while (!atomic_load_explicit(&job->done, memory_order_acquire)) {
        if (a->host->stopping(a->node)) {
            if (ewp_wait_flag(&job->done, EWP_STOP_GRACE_NS))
                return true;
            s_abandon(a);
            return false;
        }
        ewp_wait_flag(&job->done, S_WAIT_SLICE_NS);
    }
    return true;
}

/* ---- start: the saved model ---------------------------------------------------------------- */

/* Loads model.bin if there is a usable one. EW_OK with or without a model;
 * EW_ERR when the state folder cannot be read, EW_EINVAL for a model learnt for
 * another config under on_model_mismatch = refuse. */
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
    if (drc == -2 && a->cfg->on_model_mismatch == S_MISMATCH_REFUSE) {
        a->host->set_error(a->node,
                           "the saved model %s was learnt for another config: %s. Restore that "
                           "setting, or set on_model_mismatch = retrain to learn a new model "
                           "(it overwrites %s), or delete %s from the node's state folder",
                           S_MODEL_FILE, err, S_MODEL_FILE, S_MODEL_FILE);
        return EW_EINVAL;
    }
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

static void s_destroy(void *self)
{
    autoencoder *a = self;
    if (!a)
        return;
    s_job_free(&a->job);
    ae_model_free(&a->model);
    free(a->cols);
    free(a->names);
    free(a->ring);
    free(a->train);
    free(a->reservoir);
    free(a->inv_sd);
    free(a->xt);
    free(a->sq);
    free(a->scratch);
    free(a);
}

/* The widths of layers = auto for d inputs: one bottleneck of about 3/4 of
 * them, narrower than the input whenever d > 1. */
static size_t s_auto_layers(size_t d, uint32_t *hidden)
{
    double b = floor(S_AUTO_BOTTLENECK * (double)d + 0.5);
    if (b >= (double)d)
        b = (double)d - 1;
    hidden[0] = b < 1 ? 1 : (uint32_t)b;
    return 1;
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
    a->window = cfg->window > 0 ? (size_t)cfg->window
                                : (S_AUTO_MIN_INPUTS + a->nch - 1) / a->nch;
    a->d = a->window * a->nch;
    if (a->d > AE_MAX_WIDTH) {
        host->set_error(node, "window %zu times %zu channels = %zu network inputs, more than %d: "
                              "use a smaller window", a->window, a->nch, a->d, AE_MAX_WIDTH);
        s_destroy(a);
        return EW_EINVAL;
    }
    double copies = cfg->retrain_every > 0 ? 3.0 : 1.0; /* collected, reservoir, a job's copy */
    if (copies * (double)cfg->train_samples * (double)a->d * sizeof(double) >
        (double)S_MAX_TRAIN_BYTES) {
        host->set_error(node, "train_samples = %lld windows of %zu values need more than 1 GiB%s: "
                              "lower train_samples or window", (long long)cfg->train_samples, a->d,
                        cfg->retrain_every > 0 ? " (kept three times with retrain_every)" : "");
        s_destroy(a);
        return EW_EINVAL;
    }

    ae_settings *s = &a->settings;
    s->activation = (uint32_t)cfg->activation;
    s->window = (uint32_t)a->window;
    s->channels = (uint32_t)a->nch;
    size_t narrowest = AE_MAX_WIDTH;
    if (s_layers_auto(cfg)) {
        s->nhidden = (uint32_t)s_auto_layers(a->d, s->hidden);
    } else {
        s->nhidden = (uint32_t)cfg->layers.count;
        for (size_t k = 0; k < cfg->layers.count; k++) {
            size_t w = 0;
            s_parse_width(cfg->layers.items[k], &w);
            s->hidden[k] = (uint32_t)w;
        }
    }
    for (size_t k = 0; k < s->nhidden; k++)
        if (s->hidden[k] < narrowest)
            narrowest = s->hidden[k];
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
                  "narrower than window * channels, or layers = auto", narrowest, a->d);

    /* Never a 0-byte request (+ 1): its NULL would read as out of memory. */
    a->ring = calloc(2 * a->d + 1, sizeof *a->ring);
    /* calloc: the unused lanes of a partial block are computed too. */
    a->xt = calloc(a->d * AE_BLOCK + 1, sizeof *a->xt);
    a->sq = calloc(a->d * AE_BLOCK + 1, sizeof *a->sq);
    if (!a->ring || !a->xt || !a->sq)
        goto oom;
    if (cfg->retrain_every > 0) {
        a->reservoir = malloc(((size_t)cfg->train_samples * a->d + 1) * sizeof *a->reservoir);
        if (!a->reservoir)
            goto oom;
    }
    a->nonfinite = host->counter(node, "autoencoder_nonfinite_windows",
                                 "Windows with a NaN or infinite value: not scored and not learnt");
    a->trainings = host->counter(node, "autoencoder_trainings",
                                 "Trainings started (the first model and each retraining)");
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
    if (!a->has_model) {
        a->train = malloc((size_t)cfg->train_samples * a->d * sizeof *a->train);
        if (!a->train)
            goto oom;
        if (EW_HOST_HAS(host, set_learning))
            host->set_learning(node, true);
    }
    /* Measured (README, "Calibration"): on several channels the error against
     * the limit learnt from normal operation is the better verdict (TEP: 0.776
     * mean detection at 6.3 % false alarms, against 0.226 for the host's
     * likelihood, which adapts to a lasting fault and stops flagging it); on a
     * single channel the host's likelihood is (NAB standard 55.3 against 0.8:
     * a lone series drifts away from any limit learnt at the start). */
    if (EW_HOST_HAS(host, set_score_calibrated))
        host->set_score_calibrated(node, a->nch > 1);
    a->saved_at = host->monotonic(node);
    *self = a;
    return EW_OK;
oom:
    host->set_error(node, "out of memory allocating the autoencoder (%zu inputs)", a->d);
    s_destroy(a);
    return EW_ERR;
}

/* ---- scoring ------------------------------------------------------------------------------ */

/* u / (1 + u) with u = log2(1 + e / T): 0 at e = 0, exactly 0.5 at e = T, and
 * still rising by a visible step for each doubling of e far above T (e / (e + T)
 * is 0.99 at 100 T and tells 100 T from 10,000 T by 0.01 only). */
static inline double s_score(double e, double threshold)
{
    double u = log2(1.0 + e / threshold);
    return u / (1.0 + u);
}

/* Scores the windows gathered in the block and writes their results. */
static void s_score_block(autoencoder *a, ew_scores *out)
{
    const size_t n = a->block_count;
    if (n == 0)
        return;
    double *contrib = out->contrib && out->contrib_channels ? out->contrib : NULL;
    ae_net_error_block(&a->model.net, a->xt, n, a->block_err, contrib ? a->sq : NULL,
                       a->scratch);
    const double t = a->model.threshold;
    const size_t nch = a->nch, w = a->window, d = a->d;
    for (size_t s = 0; s < n; s++) {
        const size_t i = a->block_rows[s];
        double e = a->block_err[s];
        if (!(e <= DBL_MAX))
            e = DBL_MAX; /* overflow inside the network: far outside anything learnt */
        out->score[i] = s_score(e, t);
        out->anomaly[i] = e > t;
        if (out->raw)
            out->raw[i] = e;
        if (out->extra)
            out->extra[i * out->extra_channels] = getenv("AE_EXP") ? e / t : e;
        if (contrib) {
            double *row = contrib + i * out->contrib_channels;
            for (size_t c = 0; c < out->contrib_channels; c++)
                row[c] = 0;
            for (size_t k = 0; k < nch; k++) {
                double sum = 0;
                for (size_t p = 0; p < w; p++)
                    sum += a->sq[(p * nch + k) * AE_BLOCK + s];
                sum /= (double)d;
                row[a->cols[k]] = sum <= DBL_MAX ? sum : DBL_MAX;
            }
        }
    }
    a->block_count = 0;
}

/* Keeps a finite window in the retraining reservoir (the last train_samples). */
static void s_keep(autoencoder *a, const double *win)
{
    const size_t cap = (size_t)a->cfg->train_samples;
    memcpy(a->reservoir + a->res_pos * a->d, win, a->d * sizeof *win);
    a->res_pos = a->res_pos + 1 == cap ? 0 : a->res_pos + 1;
    if (a->res_n < cap)
        a->res_n++;
}

/* Starts a retraining from the reservoir, oldest window first, so that the same
 * stream always gives the same model. */
static int s_retrain(autoencoder *a)
{
    const size_t d = a->d, cap = (size_t)a->cfg->train_samples, n = a->res_n;
    double *rows = malloc((n * d + 1) * sizeof *rows);
    if (!rows) {
        a->host->set_error(a->node, "out of memory copying the retraining reservoir");
        return EW_ERR;
    }
    size_t first = n < cap ? 0 : a->res_pos;
    for (size_t k = 0; k < n; k++)
        memcpy(rows + k * d, a->reservoir + ((first + k) % cap) * d, d * sizeof *rows);
    return s_start_job(a, rows, n, false);
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    autoencoder *a = self;
    const size_t stride = in->schema->channels, nch = a->nch, w = a->window, d = a->d;
    const size_t xs = out->extra_channels;
    uint64_t nonfinite = 0;
    int rc;
    for (size_t i = 0; i < in->count; i++, a->t++) {
        /* The sample from which a training's model scores: fixed by the data. */
        if (a->job && a->t >= a->job->apply_at) {
            s_score_block(a, out);
            if (s_wait_job(a) && (rc = s_finish_job(a)) != EW_OK)
                return rc;
        }
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
        a->since_bad = finite ? (a->since_bad < w ? a->since_bad + 1 : w) : 0;

        out->score[i] = 0;
        out->anomaly[i] = 0;
        if (out->learning)
            out->learning[i] = !a->has_model;
        double *extra = out->extra ? out->extra + i * xs : NULL;
        if (extra)
            extra[0] = NAN;
        if (a->since_bad < w) {
            /* A missing value (or a window not yet full): no verdict for the
             * windows that hold it, and they are not learnt either. */
            nonfinite += a->t + 1 >= w;
            continue;
        }
        if (a->has_model) {
            /* Gathered into a block, scored AE_BLOCK windows at a time. */
            const double *mean = a->model.mean, *inv = a->inv_sd;
            const size_t s = a->block_count;
            double *x = a->xt + s;
            for (size_t j = 0; j < d; j++)
                x[j * AE_BLOCK] = (win[j] - mean[j]) * inv[j];
            a->block_rows[s] = i;
            if (++a->block_count == AE_BLOCK)
                s_score_block(a, out);
            if (a->reservoir) {
                s_keep(a, win);
                if (++a->since_train >= (uint64_t)a->cfg->retrain_every && !a->job) {
                    if ((rc = s_retrain(a)) != EW_OK)
                        return rc;
                }
            }
        } else if (!a->job && a->train) {
            memcpy(a->train + a->ntrain * d, win, d * sizeof *win);
            if (a->reservoir)
                s_keep(a, win);
            if (++a->ntrain == (size_t)a->cfg->train_samples) {
                double *train = a->train;
                a->train = NULL;
                if ((rc = s_start_job(a, train, a->ntrain, true)) != EW_OK)
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
    if (a->job) {
        /* A stop (SIGTERM) must end within shutdown_timeout: a long training
         * is abandoned rather than forced off half-way. */
        if (a->job->threaded && !atomic_load(&a->job->done) && !a->host->stopping(a->node))
            a->host->log(a->node, EW_LOG_INFO, "end of stream: waiting for training to finish");
        if (s_wait_job(a)) {
            int rc = s_finish_job(a);
            if (rc != EW_OK)
                return rc;
        }
    }
    if (a->has_model && a->unsaved)
        s_save(a, false);
    if (!a->has_model && a->ntrain > 0 && a->train)
        a->host->log(a->node, EW_LOG_WARN,
                     "the stream ended after %zu of train_samples = %lld training windows: "
                     "nothing learnt, nothing saved", a->ntrain, (long long)a->cfg->train_samples);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "autoencoder",
    .version = "1.2.0",
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
