/* harness: drives one plugin instance without the host, for plugin tests
 * (implements include/edgewatch/testing.h).
 *
 * Options go through the host's own options_fill and state files through the
 * host's state module, so a plugin tested here behaves the same in the host.
 * Clocks are the real ones plus an offset: ew_harness_run never sleeps, it
 * moves both clocks forward to the wake-up time the source asked for, so a
 * paced source runs at full speed with the timestamps it would have had.
 */
#include <edgewatch/testing.h>

#include "options.h"
#include "schema.h"
#include "state.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define S_NODE_NAME "test"
#define S_ORIGIN "upstream"
#define S_NAME_MAX 128

/* What the plugin gets as its node: a way back to the harness. */
struct ew_node {
    ew_harness *h;
};

/* A counter the plugin registered. */
struct ew_counter {
    char name[64];
    uint64_t value; /* updated atomically: counter_add is documented thread-safe */
};

/* An owned list of names. */
typedef struct s_names {
    size_t count;
    char **items;
} s_names;

struct ew_harness {
    struct ew_node node;
    const ew_plugin *plugin;
    ew_host host;
    char *state_dir;
    bool own_state_dir; /* state_dir is our temporary folder: removed by destroy */

    options_kv *kvs;
    size_t nkvs;
    void *config;
    options_mem mem;

    void *self;
    bool inited;   /* init succeeded: destroy is owed */
    bool in_init;  /* set_channels/add_channels are only valid now */
    bool stop;
    bool learning;
    bool degraded;
    char degraded_reason[256];
    char state_path[4096];
    int64_t clock_offset;

    s_names input;    /* detectors and sinks */
    s_names channels; /* sources */
    s_names extras;   /* detectors */
    s_names out;      /* detectors: input + extras + score + anomaly */
    ew_schema in_schema, out_schema;

    int64_t *ts;
    double *values;
    size_t emitted, emit_cap;

    double *scores;
    uint8_t *flags;
    double *extra;
    double *raw;            /* ABI 1.2 outputs of the last process call */
    double *contrib;
    uint8_t *learn_flags;
    bool score_calibrated;

    struct ew_counter **counters;
    size_t ncounters;
    size_t logged[EW_LOG_DEBUG + 1];
    char error[1024];
};

static void s_names_free(s_names *n)
{
    for (size_t i = 0; i < n->count; i++)
        free(n->items[i]);
    free(n->items);
    n->items = NULL;
    n->count = 0;
}

static int s_names_append(s_names *n, size_t count, const char *const *names)
{
    char **grown = realloc(n->items, (n->count + count + 1) * sizeof *grown);
    if (!grown)
        return -1;
    n->items = grown;
    for (size_t i = 0; i < count; i++) {
        n->items[n->count] = strdup(names[i]);
        if (!n->items[n->count])
            return -1;
        n->count++;
    }
    return 0;
}

static void s_error(ew_harness *h, const char *fmt, ...) EW_PRINTF(2, 3);

static void s_error(ew_harness *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->error, sizeof h->error, fmt, ap);
    va_end(ap);
}

static const char *s_level_name(ew_log_level level)
{
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    return (unsigned)level <= EW_LOG_DEBUG ? names[level] : "?";
}

/* ---- the host function table ---- */

static void s_host_log(ew_node *node, ew_log_level level, const char *fmt, ...) EW_PRINTF(3, 4);

static void s_host_log(ew_node *node, ew_log_level level, const char *fmt, ...)
{
    ew_harness *h = node->h;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    unsigned idx = (unsigned)level <= EW_LOG_DEBUG ? (unsigned)level : EW_LOG_DEBUG;
    h->logged[idx]++;
    /* Shown in the test log, which is where a failing test is debugged. */
    fprintf(stderr, "%-5s [%s %s] %s\n", s_level_name(level), h->plugin->name, S_NODE_NAME, line);
}

static void s_host_set_error(ew_node *node, const char *fmt, ...) EW_PRINTF(2, 3);

static void s_host_set_error(ew_node *node, const char *fmt, ...)
{
    ew_harness *h = node->h;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->error, sizeof h->error, fmt, ap);
    va_end(ap);
}

static const char *s_host_node_name(ew_node *node)
{
    (void)node;
    return S_NODE_NAME;
}

static int64_t s_clock(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t s_host_now(ew_node *node)
{
    return s_clock(CLOCK_REALTIME) + node->h->clock_offset;
}

static int64_t s_host_monotonic(ew_node *node)
{
    return s_clock(CLOCK_MONOTONIC) + node->h->clock_offset;
}

/* Names must be non-empty printable text, unique within the output stream. */
static int s_check_names(ew_harness *h, const char *what, const s_names *existing, size_t count,
                         const char *const *names)
{
    for (size_t i = 0; i < count; i++) {
        const char *n = names ? names[i] : NULL;
        if (!n || !*n || strlen(n) > S_NAME_MAX) {
            s_error(h, "%s: channel %zu has an empty, missing or over-long (> %d) name", what, i + 1,
                    S_NAME_MAX);
            return EW_EINVAL;
        }
        for (const char *p = n; *p; p++) {
            if (iscntrl((unsigned char)*p)) {
                s_error(h, "%s: channel name \"%s\" contains a control character", what, n);
                return EW_EINVAL;
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[j], n) == 0) {
                s_error(h, "%s: channel name \"%s\" is given twice", what, n);
                return EW_EINVAL;
            }
        }
        for (size_t j = 0; existing && j < existing->count; j++) {
            if (strcmp(existing->items[j], n) == 0) {
                s_error(h, "%s: channel name \"%s\" already exists in the stream", what, n);
                return EW_EINVAL;
            }
        }
    }
    return EW_OK;
}

static int s_host_set_channels(ew_node *node, size_t count, const char *const *names)
{
    ew_harness *h = node->h;
    if (h->plugin->kind != EW_KIND_SOURCE || !h->in_init) {
        s_error(h, "set_channels: only a source may call it, and only in init");
        return EW_EINVAL;
    }
    if (count == 0) {
        s_error(h, "set_channels: a source needs at least one channel");
        return EW_EINVAL;
    }
    int rc = s_check_names(h, "set_channels", NULL, count, names);
    if (rc != EW_OK)
        return rc;
    s_names_free(&h->channels);
    if (s_names_append(&h->channels, count, names) < 0) {
        s_error(h, "set_channels: out of memory");
        return EW_ERR;
    }
    return EW_OK;
}

static const ew_schema *s_host_input_schema(ew_node *node)
{
    ew_harness *h = node->h;
    return h->plugin->kind == EW_KIND_SOURCE ? NULL : &h->in_schema;
}

static int s_host_add_channels(ew_node *node, size_t count, const char *const *names)
{
    ew_harness *h = node->h;
    if (h->plugin->kind != EW_KIND_DETECTOR || !h->in_init) {
        s_error(h, "add_channels: only a detector may call it, and only in init");
        return EW_EINVAL;
    }
    static const char *const reserved[] = {"score", "anomaly"};
    const s_names taken = {2, (char **)reserved};
    int rc = s_check_names(h, "add_channels", &h->input, count, names);
    if (rc == EW_OK)
        rc = s_check_names(h, "add_channels", &h->extras, count, names);
    if (rc == EW_OK)
        rc = s_check_names(h, "add_channels", &taken, count, names);
    if (rc != EW_OK)
        return rc;
    if (s_names_append(&h->extras, count, names) < 0) {
        s_error(h, "add_channels: out of memory");
        return EW_ERR;
    }
    return EW_OK;
}

static int s_host_emit(ew_node *node, int64_t ts, const double *values)
{
    ew_harness *h = node->h;
    if (h->stop)
        return EW_ESTOP;
    if (h->plugin->kind != EW_KIND_SOURCE || !h->inited) {
        s_error(h, "emit: only a source may call it, after init");
        return EW_EINVAL;
    }
    size_t nch = h->channels.count;
    if (h->emitted == h->emit_cap) {
        size_t cap = h->emit_cap ? h->emit_cap * 2 : 1024;
        int64_t *t = realloc(h->ts, cap * sizeof *t);
        if (t)
            h->ts = t;
        double *v = realloc(h->values, cap * (nch ? nch : 1) * sizeof *v);
        if (v)
            h->values = v;
        if (!t || !v) {
            s_error(h, "emit: out of memory after %zu samples", h->emitted);
            return EW_ERR;
        }
        h->emit_cap = cap;
    }
    h->ts[h->emitted] = ts;
    memcpy(h->values + h->emitted * nch, values, nch * sizeof *values);
    h->emitted++;
    return EW_OK;
}

/* With no state_dir given, a temporary folder of our own (TMPDIR or /tmp),
 * made on first use so a plugin without state leaves nothing behind. */
static int s_state_root(ew_harness *h, char *err, size_t errlen)
{
    if (h->state_dir)
        return 0;
    const char *tmp = getenv("TMPDIR");
    size_t len = strlen(tmp && *tmp ? tmp : "/tmp") + 32;
    char *dir = malloc(len);
    if (!dir) {
        snprintf(err, errlen, "out of memory making the harness's temporary state folder");
        return -1;
    }
    snprintf(dir, len, "%s/ew-harness-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(err, errlen, "cannot make a temporary state folder %s: %s; set TMPDIR or pass a "
                              "state_dir to ew_harness_new", dir, strerror(errno));
        free(dir);
        return -1;
    }
    h->state_dir = dir;
    h->own_state_dir = true;
    return 0;
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The node's state folder (state_dir/test), made on first use as the host does. */
static int s_state_folder(ew_harness *h, const char *file, char *dir, size_t dirlen)
{
    if (!state_name_valid(file)) {
        s_host_log(&h->node, EW_LOG_ERROR,
                   "state file name \"%s\" is invalid: use [A-Za-z0-9_.-]+, not starting with '.'",
                   file);
        return EW_EINVAL;
    }
    char err[512];
    if (s_state_root(h, err, sizeof err) < 0 ||
        state_prepare_dir(h->state_dir, S_NODE_NAME, dir, dirlen, err, sizeof err) < 0) {
        s_host_log(&h->node, EW_LOG_ERROR, "%s", err);
        return EW_ERR;
    }
    return EW_OK;
}

static int s_host_state_save(ew_node *node, const char *file, const void *data, size_t len)
{
    ew_harness *h = node->h;
    char dir[4096], err[512];
    int rc = s_state_folder(h, file, dir, sizeof dir);
    if (rc != EW_OK)
        return rc;
    if (state_save(dir, file, h->plugin->name, data, len, err, sizeof err) < 0) {
        s_host_log(node, EW_LOG_ERROR, "%s", err);
        return EW_ERR;
    }
    return EW_OK;
}

static int s_host_state_load(ew_node *node, const char *file, void **data, size_t *len)
{
    ew_harness *h = node->h;
    char dir[4096], err[512];
    *data = NULL;
    *len = 0;
    int rc = s_state_folder(h, file, dir, sizeof dir);
    if (rc != EW_OK)
        return rc;
    int moved = 0;
    err[0] = '\0';
    rc = state_load(dir, file, h->plugin->name, data, len, &moved, err, sizeof err);
    if (rc == 0)
        return EW_OK;
    if (rc == EW_ENOENT) {
        if (moved)
            s_host_log(node, EW_LOG_WARN, "%s", err);
        return EW_ENOENT;
    }
    s_host_log(node, EW_LOG_ERROR, "%s", err);
    return EW_ERR;
}

/* As the host: [a-z0-9_]+, and not in the prefixes of the host's own metrics. */
static bool s_counter_name_valid(const char *name)
{
    static const char *const reserved[] = {"node_", "build_", "uptime_"};
    if (!name || !*name || strlen(name) >= sizeof((struct ew_counter *)0)->name)
        return false;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strncmp(name, reserved[i], strlen(reserved[i])) == 0)
            return false;
    for (const char *p = name; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            return false;
    return true;
}

static ew_counter *s_host_counter(ew_node *node, const char *name, const char *help)
{
    ew_harness *h = node->h;
    (void)help;
    if (!s_counter_name_valid(name)) {
        s_host_log(node, EW_LOG_ERROR,
                   "counter name \"%s\" is invalid: use [a-z0-9_]+, not starting with node_, "
                   "build_ or uptime_ (the host's own metrics)",
                   name ? name : "(null)");
        return NULL;
    }
    for (size_t i = 0; i < h->ncounters; i++)
        if (strcmp(h->counters[i]->name, name) == 0)
            return h->counters[i];
    struct ew_counter **grown = realloc(h->counters, (h->ncounters + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    h->counters = grown;
    /* Each counter is its own allocation, so its address survives later growth. */
    struct ew_counter *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->name, sizeof c->name, "%s", name);
    h->counters[h->ncounters++] = c;
    return c;
}

static void s_host_counter_add(ew_counter *counter, uint64_t delta)
{
    if (counter)
        __atomic_fetch_add(&counter->value, delta, __ATOMIC_RELAXED);
}

static bool s_host_stopping(ew_node *node)
{
    return node->h->stop;
}

static void s_host_set_score_calibrated(ew_node *node, bool calibrated)
{
    node->h->score_calibrated = calibrated;
}

static void s_host_set_learning(ew_node *node, bool learning)
{
    node->h->learning = learning;
}

static void s_host_set_degraded(ew_node *node, const char *reason)
{
    ew_harness *h = node->h;
    h->degraded = reason != NULL;
    snprintf(h->degraded_reason, sizeof h->degraded_reason, "%s", reason ? reason : "");
}

static const char *s_host_state_path(ew_node *node)
{
    ew_harness *h = node->h;
    char err[512];
    if (s_state_root(h, err, sizeof err) < 0 ||
        state_prepare_dir(h->state_dir, S_NODE_NAME, h->state_path, sizeof h->state_path, err,
                          sizeof err) < 0) {
        s_host_log(node, EW_LOG_ERROR, "%s", err);
        s_error(h, "%s", err);
        return NULL;
    }
    return h->state_path;
}

/* ---- the public API ---- */

ew_harness *ew_harness_new(const ew_plugin *plugin, const char *state_dir)
{
    if (!plugin)
        return NULL;
    ew_harness *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->node.h = h;
    h->plugin = plugin;
    if (state_dir && !(h->state_dir = strdup(state_dir))) {
        free(h);
        return NULL;
    }
    h->host = (ew_host){
        .struct_size = sizeof(ew_host),
        .abi_major = EW_ABI_MAJOR,
        .abi_minor = EW_ABI_MINOR,
        .log = s_host_log,
        .set_error = s_host_set_error,
        .node_name = s_host_node_name,
        .now = s_host_now,
        .monotonic = s_host_monotonic,
        .set_channels = s_host_set_channels,
        .input_schema = s_host_input_schema,
        .add_channels = s_host_add_channels,
        .emit = s_host_emit,
        .state_save = s_host_state_save,
        .state_load = s_host_state_load,
        .counter = s_host_counter,
        .counter_add = s_host_counter_add,
        .stopping = s_host_stopping,
        .set_learning = s_host_set_learning,
        .state_path = s_host_state_path,
        .set_degraded = s_host_set_degraded,
        .set_score_calibrated = s_host_set_score_calibrated,
    };
    h->in_schema.score_index = h->in_schema.anomaly_index = -1;
    h->out_schema.score_index = h->out_schema.anomaly_index = -1;
    return h;
}

int ew_harness_option(ew_harness *h, const char *key, const char *value)
{
    if (!h || !key || !value)
        return EW_EINVAL;
    if (h->inited) {
        s_error(h, "ew_harness_option(\"%s\"): options must be set before ew_harness_init", key);
        return EW_EINVAL;
    }
    options_kv *grown = realloc(h->kvs, (h->nkvs + 1) * sizeof *grown);
    if (!grown)
        return EW_ERR;
    h->kvs = grown;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return EW_ERR;
    }
    /* The n-th option set plays the part of line n of the node's section. */
    h->kvs[h->nkvs] = (options_kv){.key = k, .value = v, .line = (int)h->nkvs + 1};
    h->nkvs++;
    return EW_OK;
}

static int s_last_index(const s_names *n, const char *name)
{
    for (size_t i = n->count; i-- > 0;)
        if (strcmp(n->items[i], name) == 0)
            return (int)i;
    return -1;
}

int ew_harness_input(ew_harness *h, size_t channels, const char *const *names)
{
    if (!h || (channels && !names))
        return EW_EINVAL;
    if (h->inited) {
        s_error(h, "ew_harness_input: the input schema must be set before ew_harness_init");
        return EW_EINVAL;
    }
    s_names_free(&h->input);
    if (s_names_append(&h->input, channels, names) < 0)
        return EW_ERR;
    h->in_schema.channels = h->input.count;
    h->in_schema.names = (const char *const *)h->input.items;
    /* A stream with channels named score and anomaly is a detector's output,
     * where the host appends them last. */
    h->in_schema.score_index = s_last_index(&h->input, "score");
    h->in_schema.anomaly_index = s_last_index(&h->input, "anomaly");
    return EW_OK;
}

/* Catches descriptor mistakes the host's loader would refuse. */
static int s_check_descriptor(ew_harness *h)
{
    const ew_plugin *p = h->plugin;
    if (p->abi_major != EW_ABI_MAJOR || p->abi_minor > EW_ABI_MINOR ||
        p->struct_size < offsetof(ew_plugin, destroy) + sizeof p->destroy) {
        s_error(h, "plugin descriptor: ABI %u.%u (size %u) does not match the harness's %d.%d; "
                   "rebuild the plugin against this SDK",
                (unsigned)p->abi_major, (unsigned)p->abi_minor, (unsigned)p->struct_size,
                EW_ABI_MAJOR, EW_ABI_MINOR);
        return EW_EINVAL;
    }
    if (!p->name || !p->init) {
        s_error(h, "plugin descriptor: name and init are mandatory");
        return EW_EINVAL;
    }
    bool ok = (p->kind == EW_KIND_SOURCE && p->produce) ||
              (p->kind == EW_KIND_DETECTOR && p->process) || (p->kind == EW_KIND_SINK && p->consume);
    if (!ok) {
        s_error(h, "plugin descriptor of %s: kind %d lacks its data callback (produce, process or "
                   "consume)",
                p->name, (int)p->kind);
        return EW_EINVAL;
    }
    char err[512];
    if (options_check_table(p->options, p->config_size, err, sizeof err) < 0) {
        s_error(h, "option table of %s: %s", p->name, err);
        return EW_EINVAL;
    }
    return EW_OK;
}

static int s_build_output(ew_harness *h)
{
    const ew_plugin *p = h->plugin;
    if (p->kind == EW_KIND_SOURCE) {
        if (h->channels.count == 0) {
            s_error(h, "source %s declared no channels in init (call host->set_channels)", p->name);
            return EW_ERR;
        }
        h->out_schema = (ew_schema){.channels = h->channels.count,
                                    .names = (const char *const *)h->channels.items,
                                    .score_index = -1,
                                    .anomaly_index = -1};
    } else if (p->kind == EW_KIND_DETECTOR) {
        /* The same layout as the host's (core/schema.c). */
        schema_layout lay;
        char why[300];
        if (schema_detector_output(&h->in_schema, h->extras.count, (const char *const *)h->extras.items, &lay,
                                   why, sizeof why) < 0) {
            s_error(h, "output schema of %s: %s", p->name, why);
            return EW_ERR;
        }
        int rc = s_names_append(&h->out, lay.count, lay.names);
        schema_layout_free(&lay);
        if (rc < 0) {
            s_error(h, "out of memory building the output schema");
            return EW_ERR;
        }
        h->out_schema = (ew_schema){.channels = h->out.count,
                                    .names = (const char *const *)h->out.items,
                                    .score_index = (int)h->out.count - 2,
                                    .anomaly_index = (int)h->out.count - 1};
    } else {
        h->out_schema = h->in_schema;
    }
    return EW_OK;
}

int ew_harness_init(ew_harness *h)
{
    if (!h)
        return EW_EINVAL;
    if (h->inited) {
        s_error(h, "ew_harness_init called twice");
        return EW_EINVAL;
    }
    const ew_plugin *p = h->plugin;
    int rc = s_check_descriptor(h);
    if (rc != EW_OK)
        return rc;
    h->config = calloc(1, p->config_size ? p->config_size : 1);
    if (!h->config) {
        s_error(h, "out of memory allocating the config struct");
        return EW_ERR;
    }
    static const ew_option no_options[] = {EW_OPTION_END};
    options_error oerr = {0};
    if (options_fill(p->options ? p->options : no_options, p->config_size, h->kvs, h->nkvs,
                     h->config, &h->mem, &oerr) < 0) {
        if (oerr.key[0])
            s_error(h, "option %s (line %d): %s", oerr.key, oerr.line, oerr.message);
        else
            s_error(h, "%s", oerr.message);
        return EW_EINVAL;
    }
    if (EW_PLUGIN_HAS(p, validate) && p->validate) {
        char why[512] = "";
        int line = 0;
        if (p->validate(h->config, why, sizeof why, &line) != EW_OK) {
            s_error(h, "invalid configuration (line %d): %s", line, why[0] ? why : "no detail given");
            return EW_EINVAL;
        }
    }
    h->error[0] = '\0';
    h->in_init = true;
    void *self = NULL;
    rc = p->init(&h->host, &h->node, h->config, &self);
    h->in_init = false;
    if (rc != EW_OK) {
        if (!h->error[0])
            s_error(h, "init of %s returned %d without setting an error message (plugin bug: "
                       "call host->set_error)",
                    p->name, rc);
        return rc;
    }
    h->self = self;
    h->inited = true;
    rc = s_build_output(h);
    if (rc != EW_OK)
        return rc;
    if (p->start) {
        rc = p->start(h->self);
        if (rc != EW_OK && !h->error[0])
            s_error(h, "start of %s returned %d without setting an error message", p->name, rc);
    }
    return rc;
}

static int s_require(ew_harness *h, ew_kind kind, const char *fn)
{
    if (!h)
        return EW_EINVAL;
    if (!h->inited) {
        s_error(h, "%s: call ew_harness_init first (and check that it succeeded)", fn);
        return EW_EINVAL;
    }
    if (h->plugin->kind != kind) {
        s_error(h, "%s: plugin %s is not of the right kind for this call", fn, h->plugin->name);
        return EW_EINVAL;
    }
    return EW_OK;
}

int ew_harness_produce(ew_harness *h, int64_t *wake_at)
{
    int rc = s_require(h, EW_KIND_SOURCE, "ew_harness_produce");
    if (rc != EW_OK)
        return rc;
    int64_t wake = 0;
    rc = h->plugin->produce(h->self, &wake);
    if (wake_at)
        *wake_at = wake;
    return rc;
}

int ew_harness_run(ew_harness *h, size_t max_samples)
{
    int rc = s_require(h, EW_KIND_SOURCE, "ew_harness_run");
    if (rc != EW_OK)
        return rc;
    size_t start = h->emitted;
    for (;;) {
        int64_t wake = 0;
        rc = h->plugin->produce(h->self, &wake);
        if (rc != EW_OK)
            return rc;
        if (max_samples && h->emitted - start >= max_samples)
            return EW_OK;
        /* Instead of sleeping, jump the clocks to the wake-up time. */
        int64_t now = s_host_monotonic(&h->node);
        if (wake > now)
            h->clock_offset += wake - now;
    }
}

size_t ew_harness_emitted(const ew_harness *h)
{
    return h ? h->emitted : 0;
}

const int64_t *ew_harness_emitted_ts(const ew_harness *h)
{
    return h ? h->ts : NULL;
}

const double *ew_harness_emitted_values(const ew_harness *h)
{
    return h ? h->values : NULL;
}

void ew_harness_clear(ew_harness *h)
{
    if (h)
        h->emitted = 0;
}

const ew_schema *ew_harness_output(const ew_harness *h)
{
    return h ? &h->out_schema : NULL;
}

static ew_batch s_batch(ew_harness *h, size_t count, const int64_t *ts, const double *values)
{
    return (ew_batch){.count = count,
                      .ts = ts,
                      .values = values,
                      .schema = &h->in_schema,
                      .origin = S_ORIGIN};
}

int ew_harness_process(ew_harness *h, size_t count, const int64_t *ts, const double *values)
{
    int rc = s_require(h, EW_KIND_DETECTOR, "ew_harness_process");
    if (rc != EW_OK)
        return rc;
    size_t nextra = h->extras.count, nin = h->in_schema.channels;
    size_t rows = count ? count : 1;
    free(h->scores);
    free(h->flags);
    free(h->extra);
    free(h->raw);
    free(h->contrib);
    free(h->learn_flags);
    h->scores = malloc(rows * sizeof *h->scores);
    h->flags = calloc(rows, sizeof *h->flags);
    h->extra = nextra ? malloc(rows * nextra * sizeof *h->extra) : NULL;
    h->raw = malloc(rows * sizeof *h->raw);
    h->contrib = malloc(rows * (nin ? nin : 1) * sizeof *h->contrib);
    h->learn_flags = calloc(rows, sizeof *h->learn_flags);
    if (!h->scores || !h->flags || (nextra && !h->extra) || !h->raw || !h->contrib || !h->learn_flags) {
        s_error(h, "ew_harness_process: out of memory for %zu samples", count);
        return EW_ERR;
    }
    /* NaN marks anything the plugin forgot to write. */
    for (size_t i = 0; i < count; i++)
        h->scores[i] = h->raw[i] = NAN;
    for (size_t i = 0; i < count * nextra; i++)
        h->extra[i] = NAN;
    for (size_t i = 0; i < count * nin; i++)
        h->contrib[i] = NAN;
    ew_scores out = {.score = h->scores, .anomaly = h->flags, .extra = h->extra,
                     .extra_channels = nextra, .raw = h->raw, .contrib = h->contrib,
                     .contrib_channels = nin, .learning = h->learn_flags};
    ew_batch in = s_batch(h, count, ts, values);
    return h->plugin->process(h->self, &in, &out);
}

const double *ew_harness_scores(const ew_harness *h)
{
    return h ? h->scores : NULL;
}

const uint8_t *ew_harness_flags(const ew_harness *h)
{
    return h ? h->flags : NULL;
}

const double *ew_harness_extra(const ew_harness *h)
{
    return h ? h->extra : NULL;
}

const double *ew_harness_raw(const ew_harness *h)
{
    return h ? h->raw : NULL;
}

const double *ew_harness_contrib(const ew_harness *h)
{
    return h ? h->contrib : NULL;
}

const uint8_t *ew_harness_learning_flags(const ew_harness *h)
{
    return h ? h->learn_flags : NULL;
}

bool ew_harness_score_calibrated(const ew_harness *h)
{
    return h && h->score_calibrated;
}

int ew_harness_consume(ew_harness *h, size_t count, const int64_t *ts, const double *values)
{
    int rc = s_require(h, EW_KIND_SINK, "ew_harness_consume");
    if (rc != EW_OK)
        return rc;
    ew_batch in = s_batch(h, count, ts, values);
    return h->plugin->consume(h->self, &in);
}

int ew_harness_flush(ew_harness *h)
{
    if (!h)
        return EW_EINVAL;
    if (!h->inited) {
        s_error(h, "ew_harness_flush: call ew_harness_init first");
        return EW_EINVAL;
    }
    return h->plugin->flush ? h->plugin->flush(h->self) : EW_OK;
}

const char *ew_harness_error(const ew_harness *h)
{
    return h ? h->error : "";
}

uint64_t ew_harness_counter(const ew_harness *h, const char *name)
{
    if (!h || !name)
        return 0;
    for (size_t i = 0; i < h->ncounters; i++)
        if (strcmp(h->counters[i]->name, name) == 0)
            return __atomic_load_n(&h->counters[i]->value, __ATOMIC_RELAXED);
    return 0;
}

size_t ew_harness_logged(const ew_harness *h, ew_log_level level)
{
    if (!h)
        return 0;
    size_t n = 0;
    for (unsigned l = 0; l <= EW_LOG_DEBUG && l <= (unsigned)level; l++)
        n += h->logged[l];
    return n;
}

void ew_harness_request_stop(ew_harness *h)
{
    if (h)
        h->stop = true;
}

void ew_harness_destroy(ew_harness **hp)
{
    if (!hp || !*hp)
        return;
    ew_harness *h = *hp;
    if (h->inited && h->plugin->destroy)
        h->plugin->destroy(h->self);
    options_mem_free(&h->mem);
    free(h->config);
    for (size_t i = 0; i < h->nkvs; i++) {
        free((char *)h->kvs[i].key);
        free((char *)h->kvs[i].value);
    }
    free(h->kvs);
    s_names_free(&h->input);
    s_names_free(&h->channels);
    s_names_free(&h->extras);
    s_names_free(&h->out);
    free(h->ts);
    free(h->values);
    free(h->scores);
    free(h->flags);
    free(h->extra);
    free(h->raw);
    free(h->contrib);
    free(h->learn_flags);
    for (size_t i = 0; i < h->ncounters; i++)
        free(h->counters[i]);
    free(h->counters);
    if (h->own_state_dir)
        nftw(h->state_dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(h->state_dir);
    free(h);
    *hp = NULL;
}

bool ew_harness_learning(const ew_harness *h)
{
    return h && h->learning;
}

const char *ew_harness_degraded(const ew_harness *h)
{
    return h && h->degraded ? h->degraded_reason : NULL;
}

int ew_harness_consume_event(ew_harness *h, const ew_event *event)
{
    int rc = s_require(h, EW_KIND_SINK, "ew_harness_consume_event");
    if (rc != EW_OK)
        return rc;
    const ew_plugin *p = h->plugin;
    if (!EW_PLUGIN_HAS(p, consume_event) || !p->consume_event) {
        s_error(h, "ew_harness_consume_event: sink %s has no consume_event (built against ABI "
                   "%u.%u%s); the host gives it no events",
                p->name, (unsigned)p->abi_major, (unsigned)p->abi_minor,
                EW_PLUGIN_HAS(p, consume_event) ? ", the callback is NULL" : ", before 1.2");
        return EW_EINVAL;
    }
    if (!event) {
        s_error(h, "ew_harness_consume_event: the event is NULL");
        return EW_EINVAL;
    }
    return p->consume_event(h->self, event);
}
