/* iforest: a detector that scores each sample with an isolation forest over all
 * the node's input channels, learnt on the device (on its own thread) or loaded
 * from a model exported from scikit-learn.
 *
 *     [detector.pump_if]
 *     plugin = iforest
 *     input = pump
 *     train_samples = 2000
 *
 * The first `train_samples` finite samples are collected; the forest is then
 * grown on a plugin-owned thread while the stream keeps flowing (score 0, node
 * state `learning`); once it is ready it is saved as the state file forest.bin
 * and every sample gets score = 2^(-E[h(x)] / c(sample_size)), the isolation
 * score of Liu et al. and of scikit-learn (-score_samples), anomaly = score >
 * threshold, and the mean path length E[h(x)] as the extra channel
 * `path_length`. See README.md for the model format.
 *
 * With window = W the forest's row for a sample is the last W samples of every
 * channel (shingling), for streaming time series; background = false grows the
 * forests inside the batch so that replays are deterministic.
 */
#include <edgewatch/plugin.h>

#include "ewp_wait.h"
#include "ewplug.h"
#include "forest.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Name of the state file holding the trained forest. */
#define S_STATE_FILE "forest.bin"
/* A model file larger than this is refused before it is read. */
#define S_MODEL_MAX ((off_t)1 << 30)
/* A retrained forest is saved at most this often (and at the end of the
 * stream), so that retraining every few samples does not wear out the storage. */
#define S_SAVE_INTERVAL_NS (60 * (int64_t)1000000000)
/* Training rows are kept in memory: refuse configs that would need more. */
#define S_TRAIN_MAX_BYTES ((double)(1u << 30))

typedef struct iforest_config {
    int64_t trees;
    int64_t sample_size;
    int64_t train_samples;
    int64_t retrain_every;
    double threshold;
    double contamination;
    int64_t seed;
    const char *model;
    int64_t window;
    bool background;
    bool learn_anomalies;
} iforest_config;

/* One training run on the plugin's thread. The node thread owns everything
 * here until it starts the thread, and again once `done` is set. */
typedef struct s_job {
    pthread_t thread;
    atomic_bool done;
    atomic_bool stop;
    double *x;             /* rows to learn from (owned) */
    size_t n;
    uint32_t nf, trees;
    uint64_t sample_size, seed;
    double contamination;
    bool initial;          /* the first model, not a retraining */
    bool threaded;         /* runs on `thread` (background = true) */
    int64_t started;       /* monotonic ns */
    int rc;
    ifo_forest *result;
    char err[256];
} s_job;

typedef struct iforest {
    const ew_host *host;
    ew_node *node;
    const iforest_config *cfg;
    size_t nf;              /* channels the forest is over */
    size_t *cols;           /* their columns in the input row */
    size_t w;               /* window: samples per row of the forest */
    size_t d;               /* columns of the forest: nf * w */
    /* The last w samples: each is written at p and p + w, so the window,
     * oldest first, is always contiguous at hist + (p + 1) * nf. */
    double *hist;
    size_t hist_pos;
    uint64_t clean;         /* finite samples in a row, up to the latest */
    uint64_t schema_hash;
    ifo_forest *forest;     /* NULL while the first model is pending */
    double threshold;
    bool learning;
    bool from_file;         /* loaded with model = PATH: never saved */
    double *x;              /* per-batch scratch: gathered rows of d columns */
    double *sums;
    uint8_t *finite;
    size_t cap;
    double *train;          /* first model: finite rows collected so far */
    size_t train_n;
    double *ring;           /* retraining: the most recent normal rows */
    size_t ring_n, ring_pos;
    uint64_t since_train;
    uint64_t scored_since, flagged_since; /* rows the forest in use scored / flagged */
    uint64_t narrowing;                   /* retrainings that left out many rows */
    uint64_t generation;
    int64_t saved_at;       /* monotonic ns of the last save */
    bool unsaved;           /* a retrained forest waits for its save */
    s_job *job;
    ew_counter *c_nonfinite, *c_trainings, *c_save_failures;
    char path_name[80];
} iforest;

static const ew_option s_options[] = {
    EW_OPTION_RANGE("trees", EW_OPT_INT, "100", 1, 100000, iforest_config, trees,
                    "Trees in the forest."),
    EW_OPTION_RANGE("sample_size", EW_OPT_INT, "256", 2, 1000000, iforest_config, sample_size,
                    "Samples each tree is grown from, drawn without replacement (scikit-learn's "
                    "max_samples); trees are at most ceil(log2(sample_size)) deep."),
    EW_OPTION_RANGE("train_samples", EW_OPT_INT, "1000", 2, 10000000, iforest_config,
                    train_samples,
                    "Finite rows (samples, or windows when window > 1) collected before the forest "
                    "is grown; also the size of the reservoir of recent rows used for retraining."),
    EW_OPTION_RANGE("retrain_every", EW_OPT_INT, "0", 0, 1e15, iforest_config, retrain_every,
                    "Grow a new forest every this many samples from the reservoir of recent rows "
                    "(see learn_anomalies); 0 = never."),
    EW_OPTION_RANGE("threshold", EW_OPT_DOUBLE, "0.5", 0, 1, iforest_config, threshold,
                    "Score above which a sample is an anomaly (0.5 is scikit-learn's 'auto'); "
                    "ignored when contamination is set."),
    EW_OPTION_RANGE("contamination", EW_OPT_DOUBLE, "0", 0, 0.5, iforest_config, contamination,
                    "Expected share of anomalies: the threshold becomes that upper quantile of "
                    "the training scores (or the model file's threshold); 0 = use threshold."),
    EW_OPTION("seed", EW_OPT_INT, "1", iforest_config, seed,
              "Seed of the random choices; the same seed and data give the same forest."),
    EW_OPTION("model", EW_OPT_STRING, NULL, iforest_config, model,
              "Model file to load instead of learning (e.g. from tools/export-sklearn-iforest); "
              "read only."),
    EW_OPTION_RANGE("window", EW_OPT_INT, "1", 1, 1000, iforest_config, window,
                    "Samples per row of the forest (shingling): its columns are the last window "
                    "values of every channel, oldest first; 1 = each sample alone "
                    "(scikit-learn's)."),
    EW_OPTION("background", EW_OPT_BOOL, "true", iforest_config, background,
              "Grow forests on a thread of the plugin while the stream goes on (true), or inside "
              "the batch that completes the training set or reaches retrain_every (false: "
              "replays give the same scores whatever the machine's speed, but that batch waits "
              "for the training)."),
    EW_OPTION("learn_anomalies", EW_OPT_BOOL, "true", iforest_config, learn_anomalies,
              "With retrain_every: the reservoir keeps every recent finite sample, anomalies "
              "too, so a lasting change becomes normal after about train_samples samples. "
              "false: flagged samples never enter it (see the README: the forest then narrows "
              "at each retraining unless its threshold flags few samples)."),
    EW_OPTION_END,
};

/* Scores this close to the threshold are a tie, not an anomaly: summing the
 * path lengths of 100 trees rounds by about 1e-15, so a forest learnt from
 * identical samples scores them 0.5000000000000007 instead of 0.5. */
#define S_TIE 1e-12

/* A limit on the forests' memory, so that a typo in trees or sample_size is a
 * clear error at `edgewatch check` rather than the kernel's OOM killer. */
#define S_MAX_FOREST_MIB 1024

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const iforest_config *cfg = config;
    *line = 0;
    if (cfg->model && cfg->retrain_every > 0) {
        snprintf(err, errlen, "model = %s is read only, so retrain_every = %lld cannot apply: "
                              "remove one of the two", cfg->model, (long long)cfg->retrain_every);
        return EW_ERR;
    }
    /* The forest's size follows from the options alone; one retrained forest
     * grows while the other scores. */
    double forests = cfg->retrain_every > 0 ? 2.0 : 1.0;
    double mib = forests * (double)cfg->trees * (2.0 * (double)cfg->sample_size - 1.0) *
                 (double)IFO_NODE_BYTES / 1048576.0;
    if (!cfg->model && mib > S_MAX_FOREST_MIB) {
        snprintf(err, errlen, "trees = %lld with sample_size = %lld needs about %.0f MiB for %s, "
                              "more than the %d MiB an edge detector may take; lower trees or "
                              "sample_size (scikit-learn's 100 trees of 256 take %.1f MiB)",
                 (long long)cfg->trees, (long long)cfg->sample_size, mib,
                 forests > 1 ? "two forests (one grows while the other scores)" : "the forest",
                 S_MAX_FOREST_MIB, 100.0 * 511.0 * (double)IFO_NODE_BYTES / 1048576.0);
        return EW_ERR;
    }
    if (!cfg->model && cfg->sample_size > cfg->train_samples) {
        snprintf(err, errlen, "sample_size = %lld is larger than train_samples = %lld: each tree "
                              "draws sample_size of the training samples; lower sample_size or "
                              "raise train_samples", (long long)cfg->sample_size,
                 (long long)cfg->train_samples);
        return EW_ERR;
    }
    return EW_OK;
}

/* Waits for a running job and frees it with its result. */
static void s_job_free(s_job **jp, bool stop)
{
    s_job *job = *jp;
    if (!job)
        return;
    if (stop)
        atomic_store(&job->stop, true);
    if (job->threaded)
        pthread_join(job->thread, NULL);
    free(job->x);
    ifo_free(&job->result);
    free(job);
    *jp = NULL;
}

static void s_destroy(void *self)
{
    iforest *z = self;
    if (!z)
        return;
    s_job_free(&z->job, true);
    ifo_free(&z->forest);
    free(z->cols);
    free(z->x);
    free(z->sums);
    free(z->finite);
    free(z->train);
    free(z->ring);
    free(z->hist);
    free(z);
}

/* Reads a whole model file, refusing anything that is not a plain file of sane size. */
static int s_read_model(iforest *z, const char *path, unsigned char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        z->host->set_error(z->node, "model file %s: cannot open it: %s: check the model option",
                           path, strerror(errno));
        return EW_EINVAL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > S_MODEL_MAX) {
        z->host->set_error(z->node, "model file %s: not a regular file of at most 1 GiB", path);
        close(fd);
        return EW_EINVAL;
    }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        z->host->set_error(z->node, "model file %s: out of memory reading %zu bytes", path, size);
        return EW_ERR;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *len = got; /* a file that shrank while read is caught by the parser as truncated */
    return EW_OK;
}

/* The threshold that applies with forest f. */
static double s_threshold(const iforest *z, const ifo_forest *f)
{
    return z->cfg->contamination > 0 ? f->threshold : z->cfg->threshold;
}

static void s_save(iforest *z)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    if (ifo_serialize(z->forest, &buf, &len) != 0) {
        z->host->log(z->node, EW_LOG_WARN, "out of memory serialising the model: not saved");
        z->host->counter_add(z->c_save_failures, 1);
        return;
    }
    if (z->host->state_save(z->node, S_STATE_FILE, buf, len) != EW_OK) {
        z->host->log(z->node, EW_LOG_WARN,
                     "the model could not be saved (see above): it will be relearnt after a "
                     "restart; scoring goes on");
        z->host->counter_add(z->c_save_failures, 1);
    }
    free(buf);
}

static void s_set_learning(iforest *z, bool learning)
{
    z->learning = learning;
    if (EW_HOST_HAS(z->host, set_learning))
        z->host->set_learning(z->node, learning);
}

/* Loads forest.bin from the node's state folder. EW_OK with z->forest set,
 * EW_ENOENT when there is nothing usable (learn), EW_ERR when it cannot be read. */
static int s_load_state(iforest *z)
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
    char why[256];
    ifo_forest *f = NULL;
    if (ifo_parse(&f, data, len, why, sizeof why) != 0) {
        z->host->log(z->node, EW_LOG_WARN, "state file %s is not a usable model (%s): relearning",
                     S_STATE_FILE, why);
        free(data);
        return EW_ENOENT;
    }
    free(data);
    if (f->window != z->w) {
        z->host->log(z->node, EW_LOG_WARN,
                     "state file %s holds a model of window %u, the node's window is %zu: "
                     "relearning", S_STATE_FILE, (unsigned)f->window, z->w);
        ifo_free(&f);
        return EW_ENOENT;
    }
    if (f->n_features != z->d || (f->schema_hash && f->schema_hash != z->schema_hash)) {
        z->host->log(z->node, EW_LOG_WARN,
                     "state file %s holds a model of other input channels (%u, not %zu, or "
                     "other names): relearning", S_STATE_FILE, (unsigned)(f->n_features / f->window),
                     z->nf);
        ifo_free(&f);
        return EW_ENOENT;
    }
    z->forest = f;
    return EW_OK;
}

static int s_load_model_file(iforest *z)
{
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = s_read_model(z, z->cfg->model, &data, &len);
    if (rc != EW_OK)
        return rc;
    char why[256];
    ifo_forest *f = NULL;
    rc = ifo_parse(&f, data, len, why, sizeof why);
    free(data);
    if (rc != 0) {
        z->host->set_error(z->node, "model file %s is not a valid isolation forest: %s: export "
                                    "it again with tools/export-sklearn-iforest",
                           z->cfg->model, why);
        return EW_EINVAL;
    }
    if (f->window != z->w) {
        z->host->set_error(z->node, "model file %s was made with window = %u but the node has "
                                    "window = %zu: set window = %u",
                           z->cfg->model, (unsigned)f->window, z->w, (unsigned)f->window);
        ifo_free(&f);
        return EW_EINVAL;
    }
    if (f->n_features != z->d) {
        z->host->set_error(z->node, "model file %s expects %u channels but the input has %zu: "
                                    "fit the model on the same channels, in the input's order",
                           z->cfg->model, (unsigned)(f->n_features / f->window), z->nf);
        ifo_free(&f);
        return EW_EINVAL;
    }
    z->forest = f;
    z->from_file = true;
    return EW_OK;
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const iforest_config *cfg = config;
    const ew_schema *in = host->input_schema(node);
    if (!in) {
        host->set_error(node, "iforest has no input schema: give the node an input = <node>");
        return EW_EINVAL;
    }
    iforest *z = calloc(1, sizeof *z);
    if (!z || !(z->cols = calloc(in->channels ? in->channels : 1, sizeof *z->cols))) {
        free(z);
        host->set_error(node, "out of memory allocating the iforest detector");
        return EW_ERR;
    }
    z->host = host;
    z->node = node;
    z->cfg = cfg;
    bool has_path = false;
    const char **names = calloc(in->channels ? in->channels : 1, sizeof *names);
    if (!names) {
        s_destroy(z);
        host->set_error(node, "out of memory allocating the iforest detector");
        return EW_ERR;
    }
    for (size_t c = 0; c < in->channels; c++) {
        if (strcmp(in->names[c], "path_length") == 0)
            has_path = true;
        /* An upstream detector's verdict is not a measurement. */
        if ((int)c == in->score_index || (int)c == in->anomaly_index)
            continue;
        names[z->nf] = in->names[c];
        z->cols[z->nf++] = c;
    }
    z->schema_hash = ifo_schema_hash(z->nf, names);
    free(names);
    if (z->nf == 0) {
        host->set_error(node, "the input stream has no channels to score (only score/anomaly): "
                              "connect iforest to a source or a detector with measurements");
        s_destroy(z);
        return EW_EINVAL;
    }
    if (has_path)
        snprintf(z->path_name, sizeof z->path_name, "path_length_%s", host->node_name(node));
    else
        snprintf(z->path_name, sizeof z->path_name, "path_length");
    z->w = (size_t)cfg->window;
    z->d = z->nf * z->w;
    if ((double)cfg->train_samples * (double)z->d * sizeof(double) > S_TRAIN_MAX_BYTES ||
        z->d > UINT32_MAX / 2) {
        host->set_error(node, "train_samples = %lld rows of %zu channels x window %zu need more "
                              "than 1 GiB: lower train_samples or window",
                        (long long)cfg->train_samples, z->nf, z->w);
        s_destroy(z);
        return EW_EINVAL;
    }
    if (!(z->hist = calloc(2 * z->w * z->nf, sizeof *z->hist))) {
        host->set_error(node, "out of memory allocating the iforest detector");
        s_destroy(z);
        return EW_ERR;
    }
    const char *extra[1] = {z->path_name};
    int rc = host->add_channels(node, 1, extra);
    if (rc != EW_OK) {
        s_destroy(z);
        return rc;
    }
    z->c_nonfinite = host->counter(node, "iforest_nonfinite_samples",
                                   "Samples with a NaN or infinite value: scored 0, never learnt");
    z->c_trainings = host->counter(node, "iforest_trainings", "Forests grown by this node");
    z->c_save_failures = host->counter(node, "iforest_save_failures",
                                       "Trained models that could not be saved");

    rc = cfg->model ? s_load_model_file(z) : s_load_state(z);
    if (rc == EW_OK) {
        z->threshold = s_threshold(z, z->forest);
        host->log(node, EW_LOG_INFO, "loaded %s: %u trees over %zu channels, threshold %.6g; "
                                     "scoring from the first sample",
                  cfg->model ? cfg->model : "the saved model " S_STATE_FILE,
                  (unsigned)z->forest->n_trees, z->nf, z->threshold);
    } else if (rc == EW_ENOENT) {
        z->train = malloc((size_t)cfg->train_samples * z->d * sizeof *z->train);
        if (!z->train) {
            host->set_error(node, "out of memory for %lld training samples of %zu channels: "
                                  "lower train_samples", (long long)cfg->train_samples, z->nf);
            s_destroy(z);
            return EW_ERR;
        }
        s_set_learning(z, true);
    } else {
        s_destroy(z);
        return rc;
    }
    if (cfg->retrain_every > 0 &&
        !(z->ring = malloc((size_t)cfg->train_samples * z->d * sizeof *z->ring))) {
        host->set_error(node, "out of memory for the retraining reservoir: lower train_samples");
        s_destroy(z);
        return EW_ERR;
    }
    *self = z;
    return EW_OK;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Grows the job's forest (on the thread, or in the batch with background = false). */
static void s_train(s_job *job)
{
    job->rc = ifo_train(&job->result, job->x, job->n, job->nf, job->trees, job->sample_size,
                        job->seed, &job->stop, job->err, sizeof job->err);
    if (job->rc == 0 && job->contamination > 0) {
        /* The threshold is the (1 - contamination) quantile of the training
         * scores, interpolated linearly like numpy.percentile (sklearn's offset_). */
        double *s = malloc(job->n * sizeof *s);
        if (!s) {
            snprintf(job->err, sizeof job->err, "out of memory scoring the training samples");
            job->rc = -1;
        } else {
            ifo_path_sums(job->result, job->x, job->n, s);
            for (size_t i = 0; i < job->n; i++)
                s[i] = ifo_score_from_sum(job->result, s[i]);
            qsort(s, job->n, sizeof *s, s_cmp_double);
            double pos = (1.0 - job->contamination) * (double)(job->n - 1);
            size_t lo = (size_t)floor(pos);
            size_t hi = lo + 1 < job->n ? lo + 1 : lo;
            job->result->threshold = s[lo] + (pos - (double)lo) * (s[hi] - s[lo]);
            free(s);
        }
    }
}

static void *s_train_thread(void *arg)
{
    s_job *job = arg;
    s_train(job);
    atomic_store(&job->done, true);
    return NULL;
}

static int s_finish_job(iforest *z, bool wait);

/* Starts growing a forest from `n` rows in `x` (ownership passes to the job);
 * with background = false, grows it here and puts it in use. */
static int s_start_job(iforest *z, double *x, size_t n, bool initial)
{
    s_job *job = calloc(1, sizeof *job);
    if (!job) {
        free(x);
        z->host->set_error(z->node, "out of memory starting a training");
        return EW_ERR;
    }
    atomic_init(&job->done, false);
    atomic_init(&job->stop, false);
    job->x = x;
    job->n = n;
    job->nf = (uint32_t)z->d;
    job->trees = (uint32_t)z->cfg->trees;
    job->sample_size = (uint64_t)z->cfg->sample_size;
    job->seed = (uint64_t)z->cfg->seed + z->generation;
    job->contamination = z->cfg->contamination;
    job->initial = initial;
    job->started = z->host->monotonic(z->node);
    if (!z->cfg->background) {
        z->job = job;
        z->generation++;
        s_train(job);
        atomic_store(&job->done, true);
        return s_finish_job(z, true);
    }
    job->threaded = true;
    int err = pthread_create(&job->thread, NULL, s_train_thread, job);
    if (err != 0) {
        free(job->x);
        free(job);
        z->host->set_error(z->node, "cannot start the training thread: %s", strerror(err));
        return EW_ERR;
    }
    z->job = job;
    z->generation++;
    return EW_OK;
}

/* Names the channels that did not vary in the first training set: the trees
 * never split on them, so a later change in them alone is not flagged. */
static void s_report_constant(iforest *z, const double *x, size_t n)
{
    const ew_schema *in = z->host->input_schema(z->node);
    char list[400] = "";
    size_t len = 0, count = 0;
    for (size_t k = 0; k < z->nf && n > 0; k++) {
        /* Column k of a row is channel k at the row's oldest sample. */
        size_t i = 1;
        while (i < n && x[i * z->d + k] == x[k])
            i++;
        if (i < n)
            continue;
        count++;
        if (len + 40 < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", count > 1 ? ", " : "",
                                    in ? in->names[z->cols[k]] : "?");
    }
    if (count == z->nf)
        z->host->log(z->node, EW_LOG_WARN,
                     "every training sample was the same: the forest cannot tell any sample "
                     "apart and will flag nothing; learn from a period when the channels vary "
                     "(remove %s to learn again)",
                     S_STATE_FILE);
    else if (count > 0)
        z->host->log(z->node, EW_LOG_WARN,
                     "%zu channel(s) never changed in the training samples, so the forest "
                     "ignores them and will not flag a change in them alone: %s%s (a zscore "
                     "detector flags such changes)",
                     count, list, len + 40 >= sizeof list ? ", ..." : "");
}

/* Installs the result of a finished job (waiting for it when `wait`). */
static int s_finish_job(iforest *z, bool wait)
{
    s_job *job = z->job;
    if (!job || (!wait && !atomic_load(&job->done)))
        return EW_OK;
    if (job->threaded)
        pthread_join(job->thread, NULL);
    if (job->rc != 0) {
        z->host->set_error(z->node, "training the isolation forest failed: %s", job->err);
        free(job->x);
        free(job);
        z->job = NULL;
        return EW_ERR;
    }
    ifo_free(&z->forest);
    z->forest = job->result;
    job->result = NULL;
    z->forest->schema_hash = z->schema_hash;
    z->forest->window = (uint32_t)z->w;
    if (z->cfg->contamination <= 0)
        z->forest->threshold = z->cfg->threshold;
    z->threshold = s_threshold(z, z->forest);
    z->host->counter_add(z->c_trainings, 1);
    int64_t now = z->host->monotonic(z->node);
    double ms = (double)(now - job->started) / 1e6;
    bool save = job->initial || now - z->saved_at >= S_SAVE_INTERVAL_NS;
    z->host->log(z->node, EW_LOG_INFO,
                 "%s: %u trees from %zu samples in %.1f ms, threshold %.6g; %s %s",
                 job->initial ? "model ready" : "model retrained", (unsigned)z->forest->n_trees,
                 job->n, ms, z->threshold, save ? "saved as" : "saved later as",
                 S_STATE_FILE);
    bool initial = job->initial;
    if (initial)
        s_report_constant(z, job->x, job->n);
    free(job->x);
    free(job);
    z->job = NULL;
    z->unsaved = !save;
    if (save) {
        s_save(z);
        z->saved_at = now;
    }
    if (initial)
        s_set_learning(z, false);
    return EW_OK;
}

static int s_reserve(iforest *z, size_t n)
{
    if (n <= z->cap)
        return EW_OK;
    size_t cap = z->cap ? z->cap : 256;
    while (cap < n)
        cap *= 2;
    double *x = realloc(z->x, cap * z->d * sizeof *x);
    if (x)
        z->x = x;
    double *s = realloc(z->sums, cap * sizeof *s);
    if (s)
        z->sums = s;
    uint8_t *f = realloc(z->finite, cap);
    if (f)
        z->finite = f;
    if (!x || !s || !f) {
        z->host->set_error(z->node, "out of memory for a batch of %zu samples", n);
        return EW_ERR;
    }
    z->cap = cap;
    return EW_OK;
}

/* Scores rows [from, to) of the gathered batch with the forest in use, then
 * keeps the finite rows that are not anomalies in the retraining reservoir. */
static void s_score_rows(iforest *z, size_t from, size_t to, ew_scores *out)
{
    const ifo_forest *f = z->forest;
    const size_t d = z->d;
    if (f && to > from) {
        if (f->flags & IFO_FLAG_FLOAT32) {
            /* scikit-learn's trees compare float32 copies of the inputs. */
            for (size_t i = from * d; i < to * d; i++)
                z->x[i] = (double)(float)z->x[i];
        }
        /* Rows with NaN walk harmlessly (NaN > t is false) and are overwritten below. */
        ifo_path_sums(f, z->x + from * d, to - from, z->sums + from);
    }
    for (size_t i = from; i < to; i++) {
        double *extra = out->extra ? out->extra + i * out->extra_channels : NULL;
        if (!f || !z->finite[i]) {
            out->score[i] = 0;
            out->anomaly[i] = 0;
            if (extra)
                extra[0] = NAN;
            continue;
        }
        double score = ifo_score_from_sum(f, z->sums[i]);
        out->score[i] = score;
        out->anomaly[i] = score > z->threshold + S_TIE;
        z->scored_since++;
        z->flagged_since += out->anomaly[i];
        if (extra)
            extra[0] = z->sums[i] / f->n_trees;
    }
    if (!f || !z->ring)
        return;
    const size_t cap = (size_t)z->cfg->train_samples;
    for (size_t i = from; i < to; i++) {
        if (z->finite[i] && (z->cfg->learn_anomalies || !out->anomaly[i])) {
            memcpy(z->ring + z->ring_pos * d, z->x + i * d, d * sizeof *z->x);
            z->ring_pos = (z->ring_pos + 1) % cap;
            if (z->ring_n < cap)
                z->ring_n++;
        }
    }
}

/* Starts a retraining from the reservoir, oldest row first, so that the same
 * stream always gives the same forest. */
static int s_retrain(iforest *z)
{
    z->since_train = 0;
    /* Leaving a large share out narrows what the next forest calls normal, so
     * that it flags still more: a loop that ends with every sample flagged. */
    if (!z->cfg->learn_anomalies && z->flagged_since * 10 > z->scored_since &&
        ewp_should_report(++z->narrowing))
        z->host->log(z->node, EW_LOG_WARN,
                     "retraining without the %.1f%% of the last %llu samples, which this forest "
                     "flagged (learn_anomalies = false); if they are normal data, each forest "
                     "learnt without them is narrower and flags more than the last: set "
                     "learn_anomalies = true, or raise threshold or set contamination so that "
                     "few samples are flagged (%llu times so far)",
                     100.0 * (double)z->flagged_since / (double)z->scored_since,
                     (unsigned long long)z->scored_since, (unsigned long long)z->narrowing);
    z->scored_since = z->flagged_since = 0;
    if (z->ring_n < 2)
        return EW_OK; /* everything was an anomaly: keep the forest */
    const size_t d = z->d, cap = (size_t)z->cfg->train_samples;
    double *x = malloc(z->ring_n * d * sizeof *x);
    if (!x) {
        z->host->set_error(z->node, "out of memory copying the retraining reservoir");
        return EW_ERR;
    }
    size_t first = z->ring_n < cap ? 0 : z->ring_pos;
    for (size_t k = 0; k < z->ring_n; k++)
        memcpy(x + k * d, z->ring + ((first + k) % cap) * d, d * sizeof *x);
    return s_start_job(z, x, z->ring_n, false);
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    iforest *z = self;
    int rc = s_finish_job(z, false);
    if (rc != EW_OK)
        return rc;
    if ((rc = s_reserve(z, in->count)) != EW_OK)
        return rc;
    const size_t stride = in->schema->channels, nf = z->nf, d = z->d, w = z->w;
    uint64_t nonfinite = 0;
    /* Rows are scored in segments: a segment ends where a training starts, so
     * that with background = false the new forest scores from the next row on,
     * whatever the batch sizes. */
    size_t seg = 0;
    for (size_t i = 0; i < in->count; i++) {
        const double *row = in->values + i * stride;
        double *h0 = z->hist + z->hist_pos * nf, *h1 = z->hist + (z->hist_pos + w) * nf;
        bool ok = true;
        for (size_t k = 0; k < nf; k++) {
            double v = row[z->cols[k]];
            h0[k] = h1[k] = v;
            ok = ok && isfinite(v);
        }
        nonfinite += !ok;
        z->clean = ok ? z->clean + 1 : 0;
        /* The row: the last w samples, oldest first; complete and finite or not used. */
        double *x = z->x + i * d;
        memcpy(x, z->hist + (z->hist_pos + 1) * nf, d * sizeof *x);
        z->hist_pos = z->hist_pos + 1 == w ? 0 : z->hist_pos + 1;
        z->finite[i] = z->clean >= w;
        bool initial = false, retrain = false;
        /* Collect the first model's training rows. */
        if (z->finite[i] && !z->forest && !z->job && z->train) {
            memcpy(z->train + z->train_n * d, x, d * sizeof *x);
            initial = ++z->train_n == (size_t)z->cfg->train_samples;
        }
        if (z->forest && z->ring) {
            z->since_train++;
            retrain = z->since_train >= (uint64_t)z->cfg->retrain_every && !z->job;
        }
        if (!initial && !retrain)
            continue;
        s_score_rows(z, seg, i + 1, out);
        seg = i + 1;
        if (initial) {
            double *train = z->train;
            z->train = NULL;
            rc = s_start_job(z, train, z->train_n, true);
        } else {
            rc = s_retrain(z);
        }
        if (rc != EW_OK)
            return rc;
    }
    s_score_rows(z, seg, in->count, out);
    z->host->counter_add(z->c_nonfinite, nonfinite);
    return EW_OK;
}

static int s_flush(void *self)
{
    iforest *z = self;
    /* A stop (SIGTERM) must end within shutdown_timeout: a long training is
     * abandoned (the forest in use, if any, is kept and saved). */
    if (z->job && z->job->threaded && z->host->stopping(z->node) &&
        !ewp_wait_flag(&z->job->done, EWP_STOP_GRACE_NS)) {
        bool initial = z->job->initial;
        s_job_free(&z->job, true);
        z->host->log(z->node, EW_LOG_WARN,
                     "stopping while a forest is being grown: abandoned after waiting %.0f s "
                     "for it; %s",
                     (double)EWP_STOP_GRACE_NS / 1e9,
                     initial ? "nothing saved, the model is learnt again at the next start"
                             : "the forest in use is kept");
    }
    int rc = s_finish_job(z, true);
    if (rc != EW_OK)
        return rc;
    if (z->unsaved) {
        s_save(z);
        z->unsaved = false;
    }
    if (!z->forest && z->train)
        z->host->log(z->node, EW_LOG_INFO,
                     "the stream ended after %zu of the %lld training samples: no model learnt",
                     z->train_n, (long long)z->cfg->train_samples);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "iforest",
    .version = "1.0.0",
    .description = "Isolation forest over all channels (scikit-learn compatible), learnt on the "
                   "device or loaded from a model file",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(iforest_config),
    .init = s_init,
    .process = s_process,
    .flush = s_flush,
    .destroy = s_destroy,
    .validate = s_validate,
};

EW_PLUGIN_EXPORT(s_plugin)
