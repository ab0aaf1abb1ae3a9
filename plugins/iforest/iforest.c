/* iforest: a detector that scores each sample with an isolation forest over all
 * the node's input channels, learnt on the device (on its own thread) or loaded
 * from a model exported from scikit-learn.
 *
 *     [detector.pump_if]
 *     plugin = iforest
 *     input = pump
 *
 * The first `train_samples` finite rows are collected (marked `learning`); the
 * forest is grown on a plugin-owned thread, robustly scaled and with widened
 * splits, and put in use at a sample index fixed by the data. Each sample then
 * gets score = 2^(-E[h(x)] / c(sample_size)) (the isolation score of Liu et al.
 * and of scikit-learn's -score_samples), anomaly = score > threshold, the raw
 * statistic 1 - E[h(x)] / c(sample_size) + the distance outside the training
 * range (which keeps growing far from it), per-channel contributions, and the
 * mean path length as the extra channel `path_length`. Every `retrain_every`
 * samples a new forest is grown from a reservoir of recent rows and swapped in
 * `apply_delay` samples later: replays give the same bytes on every run. See
 * README.md for the details and the model format.
 */
#include <edgewatch/plugin.h>

#include "ewp_quantile.h"
#include "ewp_wait.h"
#include "ewplug.h"
#include "forest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
/* Splits of learnt forests are drawn over the node's range widened by this
 * share on each side, so that a value a little beyond the training range is
 * isolated in a step or two instead of sharing the edge leaf. */
#define S_WIDEN 0.1
/* A learnt forest's range per column: Tukey's fences with this k (see s_fences). */
#define S_FENCE 2.0
/* window = 0 (auto): a univariate stream is shingled over this many samples. */
#define S_AUTO_WINDOW 6
/* Slice of the waits for a training that a sample index needs. */
#define S_WAIT_SLICE_NS 100000000LL

enum { S_MISMATCH_REFUSE = 0, S_MISMATCH_RETRAIN = 1 };

typedef struct iforest_config {
    int64_t trees;
    int64_t sample_size;
    int64_t train_samples;
    int64_t retrain_every;
    int64_t memory;
    int64_t apply_delay;
    double threshold;
    double contamination;
    int64_t seed;
    const char *model;
    int64_t window;
    bool background;
    bool learn_anomalies;
    int on_model_mismatch;
} iforest_config;

/* One training run on the plugin's thread. The node thread owns everything
 * here until it starts the thread, and again once `done` is set. */
typedef struct s_job {
    pthread_t thread;
    atomic_bool done;
    atomic_bool stop;
    double *x;             /* rows to learn from, unscaled (owned) */
    size_t n;
    uint32_t nf, trees;    /* nf: columns (channels x window) */
    size_t channels;       /* channels: columns of one sample */
    uint64_t sample_size, seed;
    double contamination;
    bool initial;          /* the first model, not a retraining */
    bool threaded;         /* runs on `thread` (background = true) */
    uint64_t apply_at;     /* index of the first sample the new forest scores */
    double raw_limit, raw_spread; /* a retraining keeps the first forest's calibration */
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
    const char **names;     /* their names (the host's strings) */
    size_t w;               /* window: samples per row of the forest */
    size_t d;               /* columns of the forest: nf * w */
    /* The last w samples: each is written at p and p + w, so the window,
     * oldest first, is always contiguous at hist + (p + 1) * nf. */
    double *hist;
    size_t hist_pos;
    uint64_t clean;         /* finite samples in a row, up to the latest */
    uint64_t seen;          /* samples processed since start: the index of the next */
    uint64_t schema_hash;
    char *meta;             /* the metadata a model of this node must hold */
    ifo_forest *forest;     /* NULL while the first model is pending */
    double threshold;
    bool learning;
    bool from_file;         /* loaded with model = PATH: never saved */
    double *x;              /* per-batch scratch: gathered rows of d columns */
    double *xs;             /* the same, scaled as the forest sees them */
    double *sums;
    double *per;            /* per-batch scratch: d contributions of each row */
    double *gather;         /* per-batch scratch: the rows whose contributions are reported,
                               then their path shares (2 x cap rows) */
    size_t *gathered;       /* their indices in the batch */
    uint8_t *finite;
    size_t cap;
    double *train;          /* first model: finite rows collected so far */
    size_t train_n;
    double *ring;           /* retraining: the reservoir of recent rows */
    size_t ring_n, ring_pos;
    uint64_t offered;       /* rows offered to the reservoir */
    ewp_rng *rng;           /* the reservoir's choices (seeded: replays repeat them) */
    uint64_t since_train;
    uint64_t scored_since, flagged_since; /* rows the forest in use scored / flagged */
    uint64_t narrowing;                   /* retrainings that left out many rows */
    uint64_t generation;
    int64_t saved_at;       /* monotonic ns of the last save */
    bool unsaved;           /* a retrained forest waits for its save */
    s_job *job;
    ew_counter *c_nonfinite, *c_trainings, *c_save_failures, *c_waits;
    char path_name[80];
} iforest;

static const ew_option s_options[] = {
    EW_OPTION_RANGE("trees", EW_OPT_INT, "100", 1, 100000, iforest_config, trees,
                    "Trees in the forest."),
    EW_OPTION_RANGE("sample_size", EW_OPT_INT, "256", 2, 1000000, iforest_config, sample_size,
                    "Samples each tree is grown from, drawn without replacement (scikit-learn's "
                    "max_samples); trees are at most ceil(log2(sample_size)) deep."),
    EW_OPTION_RANGE("train_samples", EW_OPT_INT, "500", 2, 10000000, iforest_config,
                    train_samples,
                    "Finite rows (samples, or windows when window > 1) collected before the first "
                    "forest is grown; also the size of the reservoir of rows used for retraining."),
    EW_OPTION_RANGE("retrain_every", EW_OPT_INT, "100", 0, 1e15, iforest_config, retrain_every,
                    "Grow a new forest every this many samples from the reservoir of recent rows "
                    "(see memory and learn_anomalies), so that drift becomes normal; 0 = never."),
    EW_OPTION_RANGE("memory", EW_OPT_INT, "0", 0, 1e15, iforest_config, memory,
                    "How far back, in rows, the reservoir reaches on average: once full, each "
                    "new row replaces a random one with probability train_samples / memory; "
                    "0 = 100 x train_samples; train_samples or less = the last train_samples rows."),
    EW_OPTION_RANGE("apply_delay", EW_OPT_INT, "50", 0, 1000000, iforest_config, apply_delay,
                    "A retrained forest scores from this many samples after the one that started "
                    "its training (the stream waits there if it is not ready), so that the output "
                    "depends on the data only; the first forest scores from the next sample."),
    EW_OPTION_RANGE("threshold", EW_OPT_DOUBLE, "0.5", 0, 1, iforest_config, threshold,
                    "Score above which a sample is an anomaly (0.5 is scikit-learn's 'auto'); "
                    "ignored when contamination is set."),
    EW_OPTION_RANGE("contamination", EW_OPT_DOUBLE, "0.005", 0, 0.5, iforest_config,
                    contamination,
                    "Expected share of anomalies: the threshold becomes that upper quantile of "
                    "the training scores (or the model file's threshold); 0 = use threshold."),
    EW_OPTION("seed", EW_OPT_INT, "1", iforest_config, seed,
              "Seed of the random choices; the same seed and data give the same forest."),
    EW_OPTION("model", EW_OPT_STRING, NULL, iforest_config, model,
              "Model file to load instead of learning (e.g. from tools/export-sklearn-iforest); "
              "read only."),
    EW_OPTION_RANGE("window", EW_OPT_INT, "0", 0, 1000, iforest_config, window,
                    "Samples per row of the forest (shingling): its columns are the last window "
                    "values of every channel, oldest first; 1 = each sample alone "
                    "(scikit-learn's); 0 = 6 for a single channel, else 1."),
    EW_OPTION("background", EW_OPT_BOOL, "true", iforest_config, background,
              "Grow forests on a thread of the plugin while the stream goes on (true), or inside "
              "the batch (false); either way a forest is put in use at the same sample, so the "
              "scores are the same."),
    EW_OPTION("learn_anomalies", EW_OPT_BOOL, "true", iforest_config, learn_anomalies,
              "With retrain_every: the reservoir takes every finite row, anomalies too, so a "
              "lasting change becomes normal. false: flagged rows never enter it (see the "
              "README: the forest then narrows at each retraining unless its threshold flags "
              "few samples)."),
    EW_OPTION_ENUM("on_model_mismatch", "refuse", "refuse|retrain", iforest_config,
                   on_model_mismatch,
                   "What to do at start when the saved model was learnt with other options or "
                   "channels: refuse to start, naming the difference, or learn a new one."),
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
    /* The forest's size follows from the options alone; one retrained forest
     * grows while the other scores. */
    double forests = cfg->retrain_every > 0 ? 2.0 : 1.0;
    double mib = forests * (double)cfg->trees *
                 ifo_max_tree_nodes((double)cfg->sample_size, true) * (double)IFO_NODE_BYTES /
                 1048576.0;
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
    free(z->names);
    free(z->meta);
    free(z->x);
    free(z->xs);
    free(z->sums);
    free(z->per);
    free(z->gather);
    free(z->gathered);
    free(z->finite);
    free(z->train);
    free(z->ring);
    free(z->rng);
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

/* The metadata a learnt model of this node holds: one line per channel, in
 * order, then the options that shape the forest. Channel names are 1 to 128
 * bytes without control characters, so a line cannot hold a newline. */
static char *s_make_meta(const iforest *z)
{
    size_t cap = 512;
    for (size_t k = 0; k < z->nf; k++)
        cap += strlen(z->names[k]) + 16;
    char *m = malloc(cap);
    if (!m)
        return NULL;
    size_t len = 0;
    for (size_t k = 0; k < z->nf; k++)
        len += (size_t)snprintf(m + len, cap - len, "channel=%s\n", z->names[k]);
    const iforest_config *c = z->cfg;
    snprintf(m + len, cap - len,
             "trees=%lld\nsample_size=%lld\ntrain_samples=%lld\nwindow=%zu\nseed=%lld\n"
             "contamination=%.17g\nscaling=robust\nwiden=%.17g\n",
             (long long)c->trees, (long long)c->sample_size, (long long)c->train_samples, z->w,
             (long long)c->seed, c->contamination, S_WIDEN);
    return m;
}

/* Sets a learnt forest's metadata: the node's, then its score calibration. */
static int s_forest_meta(const iforest *z, ifo_forest *f)
{
    size_t len = strlen(z->meta);
    char *m = malloc(len + 96);
    if (!m)
        return -1;
    memcpy(m, z->meta, len + 1);
    if (f->raw_spread > 0)
        snprintf(m + len, 96, "raw_limit=%.17g\nraw_spread=%.17g\n", f->raw_limit,
                 f->raw_spread);
    int rc = ifo_set_meta(f, m);
    free(m);
    return rc;
}

/* The value of `key` in a metadata text, or NAN. */
static double s_meta_number(const char *meta, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = meta; p && *p;) {
        const char *e = strchr(p, '\n');
        if (strncmp(p, key, kl) == 0 && p[kl] == '=')
            return strtod(p + kl + 1, NULL);
        p = e ? e + 1 : p + strlen(p);
    }
    return NAN;
}

/* Appends to `out` what differs between two metadata texts: the channel lists
 * (named in full when they differ) and each option with its two values. */
static void s_meta_diff(const char *saved, const char *now, char *out, size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    /* Channels: compare the two lists of channel= lines. */
    char chs[2][600];
    const char *texts[2] = {saved, now};
    for (int t = 0; t < 2; t++) {
        size_t n = 0;
        chs[t][0] = '\0';
        for (const char *p = texts[t]; p && *p;) {
            const char *e = strchr(p, '\n');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (l > 8 && strncmp(p, "channel=", 8) == 0 && n + 4 < sizeof chs[t])
                n += (size_t)snprintf(chs[t] + n, sizeof chs[t] - n, "%s%.*s", n ? "," : "",
                                      (int)(l - 8), p + 8);
            p = e ? e + 1 : p + l;
        }
    }
    if (strcmp(chs[0], chs[1]) != 0)
        len += (size_t)snprintf(out + len, outlen - len, "channels (saved %s; now %s)",
                                chs[0][0] ? chs[0] : "not recorded", chs[1]);
    /* Options: every key=value of `now` that is not channel=. */
    for (const char *p = now; *p && len + 2 < outlen;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', l);
        if (eq && strncmp(p, "channel=", 8) != 0) {
            size_t kl = (size_t)(eq - p);
            const char *sv = NULL;
            size_t sl = 0;
            for (const char *q = saved; q && *q;) {
                const char *qe = strchr(q, '\n');
                size_t ql = qe ? (size_t)(qe - q) : strlen(q);
                if (ql > kl && strncmp(q, p, kl) == 0 && q[kl] == '=') {
                    sv = q + kl + 1;
                    sl = ql - kl - 1;
                    break;
                }
                q = qe ? qe + 1 : q + ql;
            }
            size_t vl = l - kl - 1;
            if (!sv || sl != vl || strncmp(sv, eq + 1, vl) != 0)
                len += (size_t)snprintf(out + len, outlen - len, "%s%.*s (saved %.*s, now %.*s)",
                                        len ? ", " : "", (int)kl, p, sv ? (int)sl : 12,
                                        sv ? sv : "not recorded", (int)vl, eq + 1);
        }
        p = e ? e + 1 : p + l;
    }
    if (len >= outlen)
        out[outlen - 1] = '\0';
}

/* Loads forest.bin from the node's state folder. EW_OK with z->forest set,
 * EW_ENOENT when there is nothing usable (learn), EW_EINVAL when it was learnt
 * for other options or channels and on_model_mismatch = refuse, EW_ERR when it
 * cannot be read. */
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
    char diff[1024] = "";
    if (!f->meta || strcmp(f->meta, z->meta) != 0)
        s_meta_diff(f->meta, z->meta, diff, sizeof diff);
    if (!diff[0] && (f->window != z->w || f->n_features != z->d))
        snprintf(diff, sizeof diff, "window or channels (saved %u columns of window %u, now %zu "
                 "of window %zu)", (unsigned)f->n_features, (unsigned)f->window, z->d, z->w);
    if (!diff[0]) {
        double limit = s_meta_number(f->meta, "raw_limit");
        double spread = s_meta_number(f->meta, "raw_spread");
        if (isfinite(limit) && spread > 0 && isfinite(spread)) {
            f->raw_limit = limit;
            f->raw_spread = spread;
        }
        z->forest = f;
        return EW_OK;
    }
    ifo_free(&f);
    if (z->cfg->on_model_mismatch == S_MISMATCH_RETRAIN) {
        z->host->log(z->node, EW_LOG_WARN,
                     "state file %s was learnt with other settings: %s; relearning "
                     "(on_model_mismatch = retrain)", S_STATE_FILE, diff);
        return EW_ENOENT;
    }
    const char *dir = EW_HOST_HAS(z->host, state_path) ? z->host->state_path(z->node) : NULL;
    z->host->set_error(z->node,
                       "the saved model %s%s%s was learnt with other settings: %s; to learn a new "
                       "one, delete the node's state folder%s%s or set on_model_mismatch = "
                       "retrain", dir ? dir : "", dir ? "/" : "", S_STATE_FILE, diff,
                       dir ? " " : "", dir ? dir : "");
    return EW_EINVAL;
}

/* The channel names a model file records, comma-separated, or "" when none. */
static void s_meta_channels(const char *meta, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = meta; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 8 && strncmp(p, "channel=", 8) == 0 && n + 4 < outlen)
            n += (size_t)snprintf(out + n, outlen - n, "%s%.*s", n ? "," : "", (int)(l - 8),
                                  p + 8);
        p = e ? e + 1 : p + l;
    }
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
    if (z->cfg->window != 0 && f->window != z->w) {
        z->host->set_error(z->node, "model file %s was made with window = %u but the node has "
                                    "window = %zu: set window = %u",
                           z->cfg->model, (unsigned)f->window, z->w, (unsigned)f->window);
        ifo_free(&f);
        return EW_EINVAL;
    }
    /* window = 0 (auto) takes the model's own window. */
    z->w = f->window;
    z->d = z->nf * z->w;
    if (f->n_features != z->d) {
        z->host->set_error(z->node, "model file %s expects %u channels but the input has %zu: "
                                    "fit the model on the same channels, in the input's order",
                           z->cfg->model, (unsigned)(f->n_features / f->window), z->nf);
        ifo_free(&f);
        return EW_EINVAL;
    }
    char saved[2048], now[2048];
    s_meta_channels(f->meta, saved, sizeof saved);
    size_t n = 0;
    now[0] = '\0';
    for (size_t k = 0; k < z->nf && n + 4 < sizeof now; k++)
        n += (size_t)snprintf(now + n, sizeof now - n, "%s%s", k ? "," : "", z->names[k]);
    if (saved[0] && strcmp(saved, now) != 0) {
        z->host->set_error(z->node, "model file %s was fitted on the columns %s, but the input's "
                                    "channels are %s: feed the channels in the model's order "
                                    "(e.g. fix the source's columns), or fit and export the "
                                    "model again on these", z->cfg->model, saved, now);
        ifo_free(&f);
        return EW_EINVAL;
    }
    if (!saved[0] && f->schema_hash && f->schema_hash != z->schema_hash) {
        z->host->set_error(z->node, "model file %s was fitted on other channel names than the "
                                    "input's (%s): fit and export the model again on these",
                           z->cfg->model, now);
        ifo_free(&f);
        return EW_EINVAL;
    }
    if (!saved[0])
        z->host->log(z->node, EW_LOG_WARN,
                     "model file %s does not record its column names, so their order cannot be "
                     "checked: export it again with tools/export-sklearn-iforest", z->cfg->model);
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
    size_t nch = in->channels ? in->channels : 1;
    if (!z || !(z->cols = calloc(nch, sizeof *z->cols)) ||
        !(z->names = calloc(nch, sizeof *z->names))) {
        s_destroy(z);
        host->set_error(node, "out of memory allocating the iforest detector");
        return EW_ERR;
    }
    z->host = host;
    z->node = node;
    z->cfg = cfg;
    bool has_path = false;
    for (size_t c = 0; c < in->channels; c++) {
        if (strcmp(in->names[c], "path_length") == 0)
            has_path = true;
        /* An upstream detector's verdict is not a measurement. */
        if ((int)c == in->score_index || (int)c == in->anomaly_index)
            continue;
        z->names[z->nf] = in->names[c];
        z->cols[z->nf++] = c;
    }
    z->schema_hash = ifo_schema_hash(z->nf, z->names);
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
    z->w = cfg->window > 0 ? (size_t)cfg->window : z->nf == 1 ? S_AUTO_WINDOW : 1;
    z->d = z->nf * z->w;
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
    z->c_waits = host->counter(node, "iforest_training_waits",
                               "Times the stream waited for a forest still being grown at the "
                               "sample it was due");

    if (cfg->model) {
        rc = s_load_model_file(z);
    } else {
        if (!(z->meta = s_make_meta(z))) {
            host->set_error(node, "out of memory allocating the iforest detector");
            s_destroy(z);
            return EW_ERR;
        }
        rc = s_load_state(z);
    }
    if (rc != EW_OK && rc != EW_ENOENT) {
        s_destroy(z);
        return rc;
    }
    if ((double)cfg->train_samples * (double)z->d * sizeof(double) > S_TRAIN_MAX_BYTES ||
        z->d > UINT32_MAX / 2) {
        host->set_error(node, "train_samples = %lld rows of %zu channels x window %zu need more "
                              "than 1 GiB: lower train_samples or window",
                        (long long)cfg->train_samples, z->nf, z->w);
        s_destroy(z);
        return EW_EINVAL;
    }
    if (!(z->hist = calloc(2 * z->w * z->nf, sizeof *z->hist)) ||
        !(z->rng = malloc(sizeof *z->rng))) {
        host->set_error(node, "out of memory allocating the iforest detector");
        s_destroy(z);
        return EW_ERR;
    }
    ewp_rng_seed(z->rng, (uint64_t)cfg->seed ^ 0x5265736572766f69ull);
    /* A frozen forest learnt here (no retraining) has a score calibrated against
     * the limit learnt from its training rows (0.5 at the limit): keep it under
     * calibrate = auto, as a plant monitor's limit should stay. A retrained one
     * follows the process, and so leaves its raw statistic to the host's rolling
     * likelihood, which follows it too. */
    if (!cfg->model && cfg->retrain_every == 0 && cfg->contamination > 0 &&
        EW_HOST_HAS(host, set_score_calibrated))
        host->set_score_calibrated(node, true);
    if (rc == EW_OK) {
        z->threshold = s_threshold(z, z->forest);
        host->log(node, EW_LOG_INFO, "loaded %s: %u trees over %zu channels, threshold %.6g; "
                                     "scoring from the first sample",
                  cfg->model ? cfg->model : "the saved model " S_STATE_FILE,
                  (unsigned)z->forest->n_trees, z->nf, z->threshold);
    } else {
        z->train = malloc((size_t)cfg->train_samples * z->d * sizeof *z->train);
        if (!z->train) {
            host->set_error(node, "out of memory for %lld training samples of %zu channels: "
                                  "lower train_samples", (long long)cfg->train_samples, z->nf);
            s_destroy(z);
            return EW_ERR;
        }
        s_set_learning(z, true);
    }
    if (!cfg->model && cfg->retrain_every > 0 &&
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

/* Robust scaling of one channel from its n values v (sorted in place): center
 * the median, scale the MAD x 1.4826 (a standard deviation for Gaussian
 * data); when more than half the values are equal (a quantised or mostly
 * constant register) the IQR / 1.349, then the standard deviation; for a
 * constant channel a hundredth of its magnitude, at least 1, so that any
 * later change counts but a step of one count is not a thousand sigmas. */
static void s_robust_scale(double *v, size_t n, double *center, double *scale)
{
    qsort(v, n, sizeof *v, s_cmp_double);
    double med = ewp_quantile_sorted(v, n, 0.5);
    double iqr = ewp_quantile_sorted(v, n, 0.75) - ewp_quantile_sorted(v, n, 0.25);
    double mean = 0, m2 = 0;
    for (size_t i = 0; i < n; i++)
        mean += v[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        m2 += (v[i] - mean) * (v[i] - mean);
    double sd = n > 1 ? sqrt(m2 / (double)(n - 1)) : 0;
    for (size_t i = 0; i < n; i++)
        v[i] = fabs(v[i] - med);
    double mad = ewp_quantile(v, n, 0.5) * 1.4826;
    *center = med;
    double s = mad > 0 ? mad : iqr > 0 ? iqr / 1.349 : sd;
    /* Below 1e-9 of the magnitude is rounding noise, not spread. */
    if (!(s > 1e-9 * fabs(med)) || !isfinite(s))
        s = fmax(fabs(med) * 0.01, 1.0);
    *scale = s;
}

/* Sets a learnt forest's range per column to Tukey's fences of the training
 * rows, [q25 - k IQR, q75 + k IQR] with k = S_FENCE: about 3.4 standard
 * deviations from the center for Gaussian data. Not the minimum and maximum:
 * a few faulty rows that enter the reservoir would stretch those to take in
 * the fault, which would then stop counting as outside; the quartiles move
 * only once a quarter of the reservoir is faulty. */
static int s_fences(ifo_forest *f, const double *xs, size_t n, size_t d)
{
    if (n == 0 || d != f->n_features)
        return -1;
    double *v = malloc(n * sizeof *v);
    if (!v)
        return -1;
    for (size_t k = 0; k < d; k++) {
        for (size_t i = 0; i < n; i++)
            v[i] = xs[i * d + k];
        qsort(v, n, sizeof *v, s_cmp_double);
        double q1 = ewp_quantile_sorted(v, n, 0.25), q3 = ewp_quantile_sorted(v, n, 0.75);
        f->flo[k] = q1 - S_FENCE * (q3 - q1);
        f->fhi[k] = q3 + S_FENCE * (q3 - q1);
    }
    free(v);
    return 0;
}

/* With contamination, the first forest's own score is calibrated on the raw
 * statistic of its training rows: 0.5 at their (1 - contamination) quantile
 * (the limit), about 0.05 at their median. Retrained forests keep that
 * calibration: raw means the same for them (a depth deficit, and a distance
 * beyond fences in robust standard deviations), and a high quantile of a
 * reservoir that a lasting fault has begun to fill would be the fault's own
 * level (2 % of faulty rows lift the 99th percentile to it). */
static void s_calibrate(s_job *job, const double *xs)
{
    ifo_forest *f = job->result;
    const size_t n = job->n, d = job->nf;
    double *raw = malloc(n * sizeof *raw), *tmp = malloc(n * sizeof *tmp);
    f->threshold = 0.5;
    if (!raw || !tmp || n < 2)
        goto done; /* no calibration: the isolation score and 0.5 */
    ifo_path_sums(f, xs, n, raw);
    const double c = ifo_average_path_length((double)f->sample_size);
    for (size_t i = 0; i < n; i++)
        raw[i] = tmp[i] = (c > 0 ? 1.0 - raw[i] / f->n_trees / c : 0.0) +
                          ifo_outside_fences(f, xs + i * d);
    double limit = ewp_quantile(raw, n, 1.0 - job->contamination);
    double median = ewp_quantile(tmp, n, 0.5);
    f->raw_limit = limit;
    f->raw_spread = fmax((limit - median) / 3.0, 1e-9);
done:
    free(raw);
    free(tmp);
}

/* Grows the job's forest (on the thread, or in the batch with background = false):
 * scaling from the rows, the scaled rows, the forest, its threshold. */
static void s_train(s_job *job)
{
    const size_t n = job->n, d = job->nf, nch = job->channels;
    if (n == 0 || d == 0 || nch == 0 || d % nch != 0) {
        snprintf(job->err, sizeof job->err, "no training rows or columns");
        job->rc = -1;
        return;
    }
    double *center = malloc(d * sizeof *center), *scale = malloc(d * sizeof *scale);
    double *v = malloc(n * (d / nch) * sizeof *v);
    double *xs = malloc(n * d * sizeof *xs);
    if (!center || !scale || !v || !xs) {
        snprintf(job->err, sizeof job->err, "out of memory scaling the training samples");
        job->rc = -1;
        goto done;
    }
    /* One scaling per channel, from its values at every position of the window. */
    for (size_t c = 0; c < nch; c++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t p = c; p < d; p += nch)
                v[m++] = job->x[i * d + p];
        double ce, sc;
        s_robust_scale(v, m, &ce, &sc);
        for (size_t p = c; p < d; p += nch) {
            center[p] = ce;
            scale[p] = sc;
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < d; k++)
            xs[i * d + k] = (job->x[i * d + k] - center[k]) / scale[k];
    job->rc = ifo_train(&job->result, xs, n, job->nf, job->trees, job->sample_size, S_WIDEN,
                        job->seed, &job->stop, job->err, sizeof job->err);
    if (job->rc != 0)
        goto done;
    job->result->flags |= IFO_FLAG_SCALED;
    memcpy(job->result->center, center, d * sizeof *center);
    memcpy(job->result->scale, scale, d * sizeof *scale);
    if (s_fences(job->result, xs, n, d) != 0) {
        snprintf(job->err, sizeof job->err, "out of memory for the training fences");
        job->rc = -1;
        goto done;
    }
    if (job->raw_spread > 0) {
        job->result->raw_limit = job->raw_limit;
        job->result->raw_spread = job->raw_spread;
        job->result->threshold = 0.5;
    } else if (job->contamination > 0) {
        s_calibrate(job, xs);
    }
done:
    free(center);
    free(scale);
    free(v);
    free(xs);
}

static void *s_train_thread(void *arg)
{
    s_job *job = arg;
    s_train(job);
    atomic_store(&job->done, true);
    return NULL;
}

/* Starts growing a forest from `n` rows in `x` (ownership passes to the job),
 * to be put in use at sample `apply_at`; with background = false it is grown
 * here, and still put in use at that sample. */
static int s_start_job(iforest *z, double *x, size_t n, bool initial, uint64_t apply_at)
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
    job->channels = z->nf;
    job->trees = (uint32_t)z->cfg->trees;
    job->sample_size = (uint64_t)z->cfg->sample_size;
    job->seed = (uint64_t)z->cfg->seed + z->generation;
    job->contamination = z->cfg->contamination;
    job->initial = initial;
    job->apply_at = apply_at;
    if (!initial && z->forest && z->forest->raw_spread > 0) {
        job->raw_limit = z->forest->raw_limit;
        job->raw_spread = z->forest->raw_spread;
    }
    job->started = z->host->monotonic(z->node);
    z->job = job;
    z->generation++;
    if (!z->cfg->background) {
        s_train(job);
        atomic_store(&job->done, true);
        return EW_OK;
    }
    job->threaded = true;
    int err = pthread_create(&job->thread, NULL, s_train_thread, job);
    if (err != 0) {
        z->job = NULL;
        free(job->x);
        free(job);
        z->host->set_error(z->node, "cannot start the training thread: %s", strerror(err));
        return EW_ERR;
    }
    return EW_OK;
}

/* Names the channels that did not vary in the first training set: the trees
 * never split on them; only their distance from the training value counts. */
static void s_report_constant(iforest *z, const double *x, size_t n)
{
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
                                    z->names[k]);
    }
    if (count == z->nf)
        z->host->log(z->node, EW_LOG_WARN,
                     "every training sample was the same: the forest cannot tell samples apart; "
                     "only a change from that value raises the raw statistic (remove %s to learn "
                     "again, or keep retrain_every so that later variation is learnt)",
                     S_STATE_FILE);
    else if (count > 0)
        z->host->log(z->node, EW_LOG_WARN,
                     "%zu channel(s) never changed in the training samples, so the trees do not "
                     "split on them; a change in them counts only as a distance outside the "
                     "training range: %s%s",
                     count, list, len + 40 >= sizeof list ? ", ..." : "");
}

/* Installs the result of the finished job. */
static int s_install_job(iforest *z)
{
    s_job *job = z->job;
    if (job->threaded)
        pthread_join(job->thread, NULL);
    if (job->rc != 0) {
        z->host->set_error(z->node, "training the isolation forest failed: %s", job->err);
        free(job->x);
        ifo_free(&job->result);
        free(job);
        z->job = NULL;
        return EW_ERR;
    }
    ifo_free(&z->forest);
    z->forest = job->result;
    job->result = NULL;
    z->forest->schema_hash = z->schema_hash;
    z->forest->window = (uint32_t)z->w;
    if (s_forest_meta(z, z->forest) != 0) {
        z->host->set_error(z->node, "out of memory for the model's metadata");
        return EW_ERR;
    }
    if (z->cfg->contamination <= 0)
        z->forest->threshold = z->cfg->threshold;
    z->threshold = s_threshold(z, z->forest);
    z->host->counter_add(z->c_trainings, 1);
    int64_t now = z->host->monotonic(z->node);
    double ms = (double)(now - job->started) / 1e6;
    bool save = job->initial || now - z->saved_at >= S_SAVE_INTERVAL_NS;
    z->host->log(z->node, EW_LOG_INFO,
                 "%s: %u trees from %zu samples, in use from sample %" PRIu64 " (%.1f ms after "
                 "its start), threshold %.6g; %s %s",
                 job->initial ? "model ready" : "model retrained", (unsigned)z->forest->n_trees,
                 job->n, job->apply_at, ms, z->threshold, save ? "saved as" : "saved later as",
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

/* Waits for the job, which is due now: without limit while the pipeline
 * runs (the output must not depend on the machine's speed), at most the stop
 * grace once it is stopping, then abandons it. Returns EW_OK (installed or
 * abandoned) or an error. */
static int s_await_job(iforest *z)
{
    s_job *job = z->job;
    if (job->threaded && !atomic_load(&job->done)) {
        z->host->counter_add(z->c_waits, 1);
        int64_t stop_since = 0;
        while (!ewp_wait_flag(&job->done, S_WAIT_SLICE_NS)) {
            if (!z->host->stopping(z->node))
                continue;
            int64_t now = z->host->monotonic(z->node);
            if (!stop_since)
                stop_since = now;
            if (now - stop_since < EWP_STOP_GRACE_NS)
                continue;
            bool initial = job->initial;
            s_job_free(&z->job, true);
            z->host->log(z->node, EW_LOG_WARN,
                         "stopping while a forest is being grown: abandoned after waiting %.0f s "
                         "for it; %s",
                         (double)EWP_STOP_GRACE_NS / 1e9,
                         initial ? "nothing saved, the model is learnt again at the next start"
                                 : "the forest in use is kept");
            return EW_OK;
        }
    }
    return s_install_job(z);
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
    double *xs = realloc(z->xs, cap * z->d * sizeof *xs);
    if (xs)
        z->xs = xs;
    double *s = realloc(z->sums, cap * sizeof *s);
    if (s)
        z->sums = s;
    uint8_t *f = realloc(z->finite, cap);
    if (f)
        z->finite = f;
    double *per = realloc(z->per, cap * z->d * sizeof *per);
    if (per)
        z->per = per;
    double *g = realloc(z->gather, 2 * cap * z->d * sizeof *g);
    if (g)
        z->gather = g;
    size_t *gi = realloc(z->gathered, cap * sizeof *gi);
    if (gi)
        z->gathered = gi;
    if (!x || !xs || !s || !f || !per || !g || !gi) {
        z->host->set_error(z->node, "out of memory for a batch of %zu samples", n);
        return EW_ERR;
    }
    z->cap = cap;
    return EW_OK;
}

/* Offers a finite row to the reservoir: kept whole until full; then, with
 * memory = train_samples or less, it replaces the oldest row; otherwise a
 * random row with probability train_samples / memory, so that the reservoir
 * holds rows of the last `memory` rows or so (older ones fading out), as Random
 * Cut Forest's time-decayed sample does. The draws are seeded: replays repeat them. */
static void s_offer(iforest *z, const double *x)
{
    const size_t cap = (size_t)z->cfg->train_samples, d = z->d;
    uint64_t memory = z->cfg->memory > 0 ? (uint64_t)z->cfg->memory : 100 * (uint64_t)cap;
    z->offered++;
    size_t slot;
    if (z->ring_n < cap) {
        slot = z->ring_n++;
    } else if (memory <= cap) {
        slot = z->ring_pos;
        z->ring_pos = (z->ring_pos + 1) % cap;
    } else {
        if (ewp_rng_uniform(z->rng) * (double)memory >= (double)cap)
            return;
        slot = (size_t)ewp_rng_below(z->rng, cap);
    }
    memcpy(z->ring + slot * d, x, d * sizeof *x);
}

/* Scores rows [from, to) of the gathered batch with the forest in use, then
 * offers the finite rows to the retraining reservoir. */
static void s_score_rows(iforest *z, size_t from, size_t to, ew_scores *out)
{
    const ifo_forest *f = z->forest;
    const size_t d = z->d;
    if (f && to > from) {
        const bool scaled = f->flags & IFO_FLAG_SCALED, f32 = f->flags & IFO_FLAG_FLOAT32;
        for (size_t i = from; i < to; i++) {
            const double *x = z->x + i * d;
            double *xs = z->xs + i * d;
            for (size_t k = 0; k < d; k++) {
                double v = scaled ? (x[k] - f->center[k]) / f->scale[k] : x[k];
                /* scikit-learn's trees compare float32 copies of the inputs. */
                xs[k] = f32 ? (double)(float)v : v;
            }
        }
        /* Rows with NaN walk harmlessly (NaN > t is false) and are overwritten below. */
        ifo_path_sums(f, z->xs + from * d, to - from, z->sums + from);
    }
    if (f && to > from && out->contrib) {
        /* Contributions are worth their cost (a second walk of every tree) for
         * the rows that stand out: isolated faster than average (score above
         * 0.5) or outside the training range. The bulk gets NaN: not reported. */
        size_t m = 0;
        for (size_t i = from; i < to; i++) {
            double *per = z->per + i * d;
            for (size_t k = 0; k < d; k++)
                per[k] = 0;
            if (!z->finite[i])
                continue;
            double outside = ifo_outside(f, z->xs + i * d, per);
            if (outside > 0 || ifo_score_from_sum(f, z->sums[i]) > 0.5) {
                memcpy(z->gather + m * d, z->xs + i * d, d * sizeof *z->gather);
                z->gathered[m++] = i;
            }
        }
        if (m > 0) {
            /* The gathered rows' path shares, in place of the rows themselves. */
            double *shares = z->gather + m * d;
            memset(shares, 0, m * d * sizeof *shares);
            ifo_path_features(f, z->gather, m, shares);
            for (size_t j = 0; j < m; j++) {
                double *per = z->per + z->gathered[j] * d;
                for (size_t k = 0; k < d; k++)
                    per[k] += shares[j * d + k];
            }
        }
        for (size_t i = from, j = 0; i < to; i++) {
            bool reported = j < m && z->gathered[j] == i;
            j += reported;
            if (!reported)
                z->per[i * d] = NAN; /* marks the row: contributions not reported */
        }
    }
    const double c = f ? ifo_average_path_length((double)f->sample_size) : 0;
    for (size_t i = from; i < to; i++) {
        double *extra = out->extra ? out->extra + i * out->extra_channels : NULL;
        if (!f || !z->finite[i]) {
            out->score[i] = 0;
            out->anomaly[i] = 0;
            if (out->learning)
                out->learning[i] = !f;
            if (extra)
                extra[0] = NAN;
            continue;
        }
        const double *xs = z->xs + i * d;
        double mean_path = z->sums[i] / f->n_trees;
        double depth = c > 0 ? 1.0 - mean_path / c : 0.0;
        double raw = depth + ifo_outside(f, xs, NULL);
        double score = ifo_score_from_sum(f, z->sums[i]);
        if (f->raw_spread > 0) {
            double fenced = depth + ifo_outside_fences(f, xs);
            score = 1.0 / (1.0 + exp(-(fenced - f->raw_limit) / f->raw_spread));
        }
        out->score[i] = score;
        out->anomaly[i] = score > z->threshold + S_TIE;
        z->scored_since++;
        z->flagged_since += out->anomaly[i];
        if (extra)
            extra[0] = mean_path;
        if (out->raw)
            out->raw[i] = raw;
        if (out->contrib && !isnan(z->per[i * d])) {
            const double *per = z->per + i * d;
            double *row = out->contrib + i * out->contrib_channels;
            for (size_t ch = 0; ch < out->contrib_channels; ch++)
                row[ch] = 0;
            /* Column p of a row is channel p % nf at one of the window's samples. */
            for (size_t p = 0, k = 0; p < d; p++, k = k + 1 == z->nf ? 0 : k + 1)
                if (z->cols[k] < out->contrib_channels)
                    row[z->cols[k]] += per[p];
        }
    }
    if (!f || !z->ring)
        return;
    for (size_t i = from; i < to; i++)
        if (z->finite[i] && (z->cfg->learn_anomalies || !out->anomaly[i]))
            s_offer(z, z->x + i * d);
}

/* Starts a retraining from the reservoir, to be put in use at `apply_at`. */
static int s_retrain(iforest *z, uint64_t apply_at)
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
    const size_t d = z->d;
    double *x = malloc(z->ring_n * d * sizeof *x);
    if (!x) {
        z->host->set_error(z->node, "out of memory copying the retraining reservoir");
        return EW_ERR;
    }
    memcpy(x, z->ring, z->ring_n * d * sizeof *x);
    return s_start_job(z, x, z->ring_n, false, apply_at);
}

static int s_process(void *self, const ew_batch *in, ew_scores *out)
{
    iforest *z = self;
    int rc;
    if ((rc = s_reserve(z, in->count)) != EW_OK)
        return rc;
    const size_t stride = in->schema->channels, nf = z->nf, d = z->d, w = z->w;
    uint64_t nonfinite = 0;
    /* Rows are scored in segments: a segment ends where a forest is put in use
     * or a training starts, so that which forest scores a sample depends on its
     * index only, whatever the batch sizes and the machine's speed. */
    size_t seg = 0;
    for (size_t i = 0; i < in->count; i++, z->seen++) {
        if (z->job && z->seen >= z->job->apply_at) {
            s_score_rows(z, seg, i, out);
            seg = i;
            if ((rc = s_await_job(z)) != EW_OK)
                return rc;
        }
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
            /* The first forest scores from the next sample on: nothing can be
             * scored before it, so waiting for it costs no more than learning. */
            rc = s_start_job(z, train, z->train_n, true, z->seen + 1);
            if (rc == EW_OK && z->ring) {
                /* The reservoir starts with the training rows. */
                memcpy(z->ring, z->job->x, z->train_n * d * sizeof *z->ring);
                z->ring_n = z->train_n;
                z->ring_pos = 0;
            }
        } else {
            uint64_t delay = (uint64_t)z->cfg->apply_delay;
            rc = s_retrain(z, z->seen + (delay > 0 ? delay : 1));
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
    /* The end of the stream: a forest being grown is waited for and saved
     * (within the stop grace when stopping). */
    if (z->job) {
        int rc = s_await_job(z);
        if (rc != EW_OK)
            return rc;
    }
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
    .version = "1.2.0",
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
