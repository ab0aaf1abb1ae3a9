/* node: runs one plugin instance on its own thread and implements the host API it calls. */
#include "node.h"

#include "bus.h"
#include "schema.h"
#include "state.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <zmq.h>

#define S_BACKOFF_MIN_NS 100000000LL   /* 100 ms */
#define S_BACKOFF_MAX_NS 30000000000LL /* 30 s */

const char *node_state_name(node_state s)
{
    switch (s) {
    case NODE_STARTING: return "starting";
    case NODE_RUNNING: return "running";
    case NODE_RETRYING: return "retrying";
    case NODE_ENDED: return "ended";
    case NODE_FAILED: return "failed";
    case NODE_STOPPING: return "stopping";
    case NODE_LEARNING: return "learning";
    case NODE_DEGRADED: return "degraded";
    }
    return "unknown";
}

node_state node_shown_state(const ew_node *n)
{
    node_state st = (node_state)atomic_load(&((ew_node *)n)->state);
    if (st == NODE_RUNNING && atomic_load(&((ew_node *)n)->degraded))
        return NODE_DEGRADED;
    return st == NODE_RUNNING && atomic_load(&((ew_node *)n)->learning) ? NODE_LEARNING : st;
}

void node_degraded_reason(ew_node *n, char *out, size_t outlen)
{
    pthread_mutex_lock(&n->degraded_lock);
    snprintf(out, outlen, "%s", atomic_load(&n->degraded) ? n->degraded_reason : "");
    pthread_mutex_unlock(&n->degraded_lock);
}

static int64_t s_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t s_mono(void)
{
    return s_clock(CLOCK_MONOTONIC);
}

static void s_set_state(ew_node *n, node_state s)
{
    atomic_store_explicit(&n->state, (int)s, memory_order_relaxed);
}

static void s_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void s_log(ew_node *n, ew_log_level level, const char *fmt, ...) EW_PRINTF(3, 4);

static void s_log(ew_node *n, ew_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(n->env->log, level, n->g->name, fmt, ap);
    va_end(ap);
}

/* ---- host API ---------------------------------------------------------------------------- */

static void s_api_log(ew_node *n, ew_log_level level, const char *fmt, ...) EW_PRINTF(3, 4);
static void s_api_set_error(ew_node *n, const char *fmt, ...) EW_PRINTF(2, 3);

static void s_api_log(ew_node *n, ew_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(n->env->log, level, n->g->name, fmt, ap);
    va_end(ap);
}

static void s_api_set_error(ew_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->error, sizeof n->error, fmt, ap);
    va_end(ap);
}

static const char *s_api_node_name(ew_node *n)
{
    return n->g->name;
}

static int64_t s_api_now(ew_node *n)
{
    (void)n;
    return s_clock(CLOCK_REALTIME);
}

static int64_t s_api_monotonic(ew_node *n)
{
    (void)n;
    return s_mono();
}

/* Appends names to the node's output names, refusing empty or repeated ones. */
static int s_append_names(ew_node *n, size_t count, const char *const *names)
{
    if (count == 0 || n->n_out_names + count > BUS_MAX_CHANNELS) {
        snprintf(n->error, sizeof n->error, "between 1 and %u channels are allowed, not %zu", BUS_MAX_CHANNELS,
                 n->n_out_names + count);
        return EW_EINVAL;
    }
    char **grown = realloc(n->out_names, (n->n_out_names + count) * sizeof *grown);
    if (!grown)
        return EW_ERR;
    n->out_names = grown;
    for (size_t i = 0; i < count; i++) {
        if (!schema_name_valid(names[i])) {
            snprintf(n->error, sizeof n->error,
                     "channel %zu: a name must be 1 to 128 bytes without control characters", i + 1);
            return EW_EINVAL;
        }
        for (size_t j = 0; j < n->n_out_names; j++) {
            if (strcmp(n->out_names[j], names[i]) == 0) {
                snprintf(n->error, sizeof n->error, "channel \"%s\" is declared twice", names[i]);
                return EW_EINVAL;
            }
        }
        n->out_names[n->n_out_names] = strdup(names[i]);
        if (!n->out_names[n->n_out_names])
            return EW_ERR;
        n->n_out_names++;
    }
    return EW_OK;
}

static int s_api_set_channels(ew_node *n, size_t count, const char *const *names)
{
    if (n->g->kind != EW_KIND_SOURCE || n->n_out_names || n->initialized)
        return EW_EINVAL;
    return s_append_names(n, count, names);
}

static const ew_schema *s_api_input_schema(ew_node *n)
{
    return n->n_in ? n->in_schemas[0] : NULL;
}

static int s_api_add_channels(ew_node *n, size_t count, const char *const *names)
{
    if (n->g->kind != EW_KIND_DETECTOR || n->initialized)
        return EW_EINVAL;
    int rc = s_append_names(n, count, names);
    if (rc == EW_OK)
        n->n_extra += count;
    return rc;
}

/* Sends one message to every output edge. Blocks while an edge is full unless the
 * node drops on full (never for end-of-stream); returns EW_ESTOP on abort. */
static int s_send_all(ew_node *n, zmq_msg_t *msg, uint32_t samples, bool is_eos)
{
    int rc = EW_OK;
    for (size_t i = 0; i < n->n_out && rc == EW_OK; i++) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, msg);
        for (;;) {
            if (zmq_msg_send(&copy, n->out_socks[i], ZMQ_DONTWAIT) >= 0) {
                atomic_fetch_add_explicit(&n->out_edges[i]->batches_sent, 1, memory_order_relaxed);
                break;
            }
            if (errno != EAGAIN) {
                snprintf(n->error, sizeof n->error, "sending to %s failed: %s", n->out_edges[i]->endpoint,
                         zmq_strerror(errno));
                zmq_msg_close(&copy);
                rc = EW_ERR;
                break;
            }
            if (n->g->settings.drop_when_full && !is_eos) {
                s_add(&n->m.dropped, samples);
                zmq_msg_close(&copy);
                break;
            }
            zmq_pollitem_t items[2] = {{n->out_socks[i], 0, ZMQ_POLLOUT, 0}, {n->ctl, 0, ZMQ_POLLIN, 0}};
            if (zmq_poll(items, 2, 1000) < 0 && errno != EINTR) {
                zmq_msg_close(&copy);
                rc = EW_ERR;
                break;
            }
            if (items[1].revents & ZMQ_POLLIN) {
                char cmd[16] = "";
                int len = zmq_recv(n->ctl, cmd, sizeof cmd - 1, ZMQ_DONTWAIT);
                if (len > 0 && strncmp(cmd, NODE_MSG_ABORT, (size_t)len) == 0) {
                    n->abort_requested = true;
                    zmq_msg_close(&copy);
                    rc = EW_ESTOP;
                    break;
                }
                if (len > 0 && strncmp(cmd, NODE_MSG_STOP, (size_t)len) == 0)
                    n->stop_requested = true;
            }
        }
    }
    zmq_msg_close(msg);
    return rc;
}

/* Sends the source's pending batch, if any. */
static int s_flush_batch(ew_node *n)
{
    if (!n->batch_count)
        return EW_OK;
    uint32_t count = (uint32_t)n->batch_count;
    uint32_t ch = (uint32_t)n->out_schema.channels;
    zmq_msg_t msg;
    int64_t *ts;
    double *values;
    if (bus_msg_data(&msg, count, ch, &ts, &values) < 0) {
        snprintf(n->error, sizeof n->error, "out of memory for a batch of %u samples", count);
        return EW_ERR;
    }
    memcpy(ts, n->batch_ts, count * sizeof *ts);
    memcpy(values, n->batch_values, (size_t)count * ch * sizeof *values);
    n->batch_count = 0;
    s_add(&n->m.samples_out, count);
    s_add(&n->m.batches_out, 1);
    return s_send_all(n, &msg, count, false);
}

static int s_api_emit(ew_node *n, int64_t ts, const double *values)
{
    if (n->abort_requested)
        return EW_ESTOP;
    size_t ch = n->out_schema.channels;
    if (n->batch_count == 0)
        n->batch_first_mono = n->g->settings.linger_ns ? s_mono() : 0;
    n->batch_ts[n->batch_count] = ts;
    memcpy(n->batch_values + n->batch_count * ch, values, ch * sizeof *values);
    n->batch_count++;
    if (n->batch_count >= (size_t)n->g->settings.batch_max || n->g->settings.linger_ns == 0 ||
        s_mono() - n->batch_first_mono >= n->g->settings.linger_ns)
        return s_flush_batch(n);
    return EW_OK;
}

/* Makes state_dir/<node> on first use, so nodes that keep no state need no volume. */
static int s_state_dir(ew_node *n)
{
    if (n->state_path[0])
        return 0;
    char err[400];
    if (state_prepare_dir(n->env->state_dir, n->g->name, n->state_path, sizeof n->state_path, err,
                          sizeof err) < 0) {
        n->state_path[0] = '\0';
        s_log(n, EW_LOG_ERROR, "state folder unusable: %s", err);
        snprintf(n->error, sizeof n->error, "state folder unusable: %s", err);
        return -1;
    }
    return 0;
}

static int s_api_state_save(ew_node *n, const char *file, const void *data, size_t len)
{
    if (!state_name_valid(file)) {
        snprintf(n->error, sizeof n->error, "invalid state file name \"%s\"", file ? file : "(null)");
        return EW_EINVAL;
    }
    if (s_state_dir(n) < 0)
        return EW_ERR;
    char err[400];
    if (state_save(n->state_path, file, n->plugin.desc->name, data, len, err, sizeof err) < 0) {
        s_log(n, EW_LOG_ERROR, "saving state file %s failed: %s", file, err);
        snprintf(n->error, sizeof n->error, "saving state file %s failed: %s", file, err);
        return EW_ERR;
    }
    return EW_OK;
}

static int s_api_state_load(ew_node *n, const char *file, void **data, size_t *len)
{
    if (!state_name_valid(file) || !data || !len)
        return EW_EINVAL;
    if (s_state_dir(n) < 0)
        return EW_ERR;
    char err[400] = "";
    int moved = 0;
    int rc = state_load(n->state_path, file, n->plugin.desc->name, data, len, &moved, err, sizeof err);
    if (rc == 0)
        return EW_OK;
    if (moved)
        s_log(n, EW_LOG_WARN, "%s", err);
    if (rc == EW_ENOENT)
        return EW_ENOENT;
    s_log(n, EW_LOG_ERROR, "loading state file %s failed: %s", file, err);
    snprintf(n->error, sizeof n->error, "loading state file %s failed: %s", file, err);
    return EW_ERR;
}

static ew_counter *s_api_counter(ew_node *n, const char *name, const char *help)
{
    size_t count = atomic_load(&n->n_counters);
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= sizeof n->counters[0].name || count >= NODE_MAX_COUNTERS)
        return NULL;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return NULL;
    /* The host's own families are edgewatch_node_*, _build_*, _uptime_*. */
    if (strncmp(name, "node_", 5) == 0 || strncmp(name, "build_", 6) == 0 || strncmp(name, "uptime_", 7) == 0)
        return NULL;
    for (size_t i = 0; i < count; i++)
        if (strcmp(n->counters[i].name, name) == 0)
            return &n->counters[i];
    struct ew_counter *c = &n->counters[count];
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->help, sizeof c->help, "%s", help ? help : "");
    atomic_store(&c->value, 0);
    /* Published after it is filled: /metrics reads n_counters from another thread. */
    atomic_store_explicit(&n->n_counters, count + 1, memory_order_release);
    return c;
}

static void s_api_counter_add(ew_counter *c, uint64_t delta)
{
    if (c)
        atomic_fetch_add_explicit(&c->value, delta, memory_order_relaxed);
}

static bool s_ctl_handle(ew_node *n);

/* Also reads a stop that is waiting on the control socket, so that a plugin
 * blocked inside one callback (a detector waiting for its training to be put in
 * use) sees it; only on the node's own thread, since the socket is not
 * thread-safe: another thread (a training thread) sees the flags alone. */
static bool s_api_stopping(ew_node *n)
{
    if (!n->stop_requested && !n->abort_requested && n->ctl && n->thread_started &&
        pthread_equal(pthread_self(), n->thread)) {
        zmq_pollitem_t item = {n->ctl, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 0) > 0)
            (void)s_ctl_handle(n);
    }
    return n->stop_requested || n->abort_requested;
}

static void s_api_set_learning(ew_node *n, bool learning)
{
    if (atomic_exchange(&n->learning, learning) != learning)
        s_log(n, EW_LOG_INFO, "%s", learning ? "learning the model" : "model ready: scoring");
}

static void s_api_set_degraded(ew_node *n, const char *reason)
{
    pthread_mutex_lock(&n->degraded_lock);
    bool was = atomic_load(&n->degraded);
    bool changed = reason ? !was || strcmp(n->degraded_reason, reason) != 0 : was;
    if (reason)
        snprintf(n->degraded_reason, sizeof n->degraded_reason, "%s", reason);
    atomic_store(&n->degraded, reason != NULL);
    pthread_mutex_unlock(&n->degraded_lock);
    if (changed)
        s_log(n, reason ? EW_LOG_WARN : EW_LOG_INFO, "%s%s", reason ? "degraded: " : "no longer degraded",
              reason ? reason : "");
}

static void s_api_set_score_calibrated(ew_node *n, bool calibrated)
{
    n->score_calibrated = calibrated;
}

static const char *s_api_state_path(ew_node *n)
{
    return s_state_dir(n) == 0 ? n->state_path : NULL;
}

static const ew_host s_host = {
    .struct_size = sizeof(ew_host),
    .abi_major = EW_ABI_MAJOR,
    .abi_minor = EW_ABI_MINOR,
    .log = s_api_log,
    .set_error = s_api_set_error,
    .node_name = s_api_node_name,
    .now = s_api_now,
    .monotonic = s_api_monotonic,
    .set_channels = s_api_set_channels,
    .input_schema = s_api_input_schema,
    .add_channels = s_api_add_channels,
    .emit = s_api_emit,
    .state_save = s_api_state_save,
    .state_load = s_api_state_load,
    .counter = s_api_counter,
    .counter_add = s_api_counter_add,
    .stopping = s_api_stopping,
    .set_learning = s_api_set_learning,
    .state_path = s_api_state_path,
    .set_degraded = s_api_set_degraded,
    .set_score_calibrated = s_api_set_score_calibrated,
};

const ew_host *node_host_api(void)
{
    return &s_host;
}

uint64_t node_queue_depth(const ew_node *n)
{
    uint64_t depth = 0;
    for (size_t i = 0; i < n->n_in; i++) {
        uint64_t sent = atomic_load_explicit(&n->in_edges[i]->batches_sent, memory_order_relaxed);
        uint64_t got = atomic_load_explicit(&n->in_edges[i]->batches_received, memory_order_relaxed);
        depth += sent > got ? sent - got : 0;
    }
    return depth;
}

/* ---- thread ------------------------------------------------------------------------------ */

static void s_ctl_send(ew_node *n, const char *msg)
{
    zmq_send(n->ctl, msg, strlen(msg), 0);
}

/* Reads one control message; returns its first letters or "" on none. */
static void s_ctl_recv(ew_node *n, char *out, size_t outlen, int flags)
{
    int len = zmq_recv(n->ctl, out, outlen - 1, flags);
    out[len > 0 ? (size_t)len < outlen - 1 ? (size_t)len : outlen - 1 : 0] = '\0';
}

/* Handles a control message during the run; true when the loop must end now. */
static bool s_ctl_handle(ew_node *n)
{
    char cmd[16];
    s_ctl_recv(n, cmd, sizeof cmd, ZMQ_DONTWAIT);
    if (strcmp(cmd, NODE_MSG_ABORT) == 0) {
        n->abort_requested = true;
        return true;
    }
    if (strcmp(cmd, NODE_MSG_STOP) == 0) {
        n->stop_requested = true;
        return n->g->kind == EW_KIND_SOURCE;
    }
    return false;
}

static void *s_socket(ew_node *n, int type, int hwm_opt, int hwm)
{
    void *s = zmq_socket(n->env->zctx, type);
    if (!s)
        return NULL;
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, hwm_opt, &hwm, sizeof hwm);
    return s;
}

/* Checks that all inputs of a detector share one schema. */
static int s_check_inputs(ew_node *n)
{
    if (n->g->kind != EW_KIND_DETECTOR)
        return 0;
    const ew_schema *a = n->in_schemas[0];
    for (size_t i = 1; i < n->n_in; i++) {
        const ew_schema *b = n->in_schemas[i];
        bool same = a->channels == b->channels;
        for (size_t c = 0; same && c < a->channels; c++)
            same = strcmp(a->names[c], b->names[c]) == 0;
        if (!same) {
            snprintf(n->error, sizeof n->error,
                     "inputs %s and %s have different channels; a detector's inputs must share one schema "
                     "(use one detector per input)",
                     n->in_origins[0], n->in_origins[i]);
            return -1;
        }
    }
    return 0;
}

/* The calibration history of a detector node, kept beside the plugin's own state. */
#define S_SCORING_FILE "host-calibration"

/* The node's state folder for the host's own files, or NULL when there is none
 * usable: the history then starts anew at each run, which is worth a warning,
 * not a failure (a detector that keeps no state of its own needs no volume). */
static const char *s_scoring_dir(ew_node *n)
{
    if (n->state_path[0])
        return n->state_path;
    char err[400];
    if (state_prepare_dir(n->env->state_dir, n->g->name, n->state_path, sizeof n->state_path, err, sizeof err) < 0) {
        n->state_path[0] = '\0';
        s_log(n, EW_LOG_WARN, "the calibration history will not survive a restart: %s", err);
        return NULL;
    }
    return n->state_path;
}

static void s_scoring_load(ew_node *n)
{
    if (!scoring_calibrates(n->scoring) || !n->env->state_dir)
        return;
    const char *dir = s_scoring_dir(n);
    if (!dir)
        return;
    void *data = NULL;
    size_t len = 0;
    int moved = 0;
    char err[400] = "";
    int rc = state_load(dir, S_SCORING_FILE, "edgewatch", &data, &len, &moved, err, sizeof err);
    if (rc == 0 && scoring_load(n->scoring, data, len, err, sizeof err) == 0)
        s_log(n, EW_LOG_INFO, "calibration history restored (%zu bytes)", len);
    else if (rc != EW_ENOENT || moved)
        s_log(n, EW_LOG_WARN, "calibration history not restored: %s", err);
    free(data);
}

static void s_scoring_save(ew_node *n)
{
    if (!scoring_calibrates(n->scoring) || !n->env->state_dir)
        return;
    size_t len = 0;
    void *data = scoring_save(n->scoring, &len);
    const char *dir = data ? s_scoring_dir(n) : NULL;
    char err[400];
    if (dir && state_save(dir, S_SCORING_FILE, "edgewatch", data, len, err, sizeof err) < 0)
        s_log(n, EW_LOG_WARN, "saving the calibration history failed: %s", err);
    free(data);
}

/* Drops events queued and not sent. */
static void s_events_reset(ew_node *n)
{
    for (size_t i = 0; i < n->n_events; i++)
        zmq_msg_close(&n->events[i]);
    n->n_events = 0;
}

/* Queues an event of the scoring stage, to follow the batch it came from. */
static int s_queue_event(void *ctx, const ew_event *ev)
{
    ew_node *n = ctx;
    s_log(n, EW_LOG_DEBUG, "event %llu %s", (unsigned long long)ev->id, ev->state == EW_EVENT_OPEN ? "opened" : "closed");
    if (!n->n_out)
        return EW_OK;
    if (n->n_events == n->events_cap) {
        size_t cap = n->events_cap ? 2 * n->events_cap : 8;
        zmq_msg_t *grown = realloc(n->events, cap * sizeof *grown);
        if (!grown)
            return EW_ERR;
        n->events = grown;
        n->events_cap = cap;
    }
    if (bus_msg_event(&n->events[n->n_events], ev) < 0)
        return EW_ERR;
    n->n_events++;
    return EW_OK;
}

/* Sends the queued events downstream. Events are never dropped on a full edge:
 * they are few, and they are what operators act on. */
static int s_send_events(ew_node *n)
{
    int rc = EW_OK;
    size_t i = 0;
    for (; i < n->n_events && rc == EW_OK; i++)
        rc = s_send_all(n, &n->events[i], 0, true);
    for (; i < n->n_events; i++)
        zmq_msg_close(&n->events[i]);
    n->n_events = 0;
    return rc;
}

/* Builds the output schema once init has declared channels. */
static int s_finish_schema(ew_node *n)
{
    if (n->g->kind == EW_KIND_SINK)
        return 0;
    if (n->g->kind == EW_KIND_SOURCE && n->n_out_names == 0) {
        snprintf(n->error, sizeof n->error, "plugin declared no channels in init (host->set_channels)");
        return -1;
    }
    if (n->g->kind == EW_KIND_DETECTOR) {
        /* The layout rules are shared with the SDK's harness (core/schema.c). */
        size_t n_extra = n->n_out_names;
        char **extras = n->out_names;
        n->out_names = NULL;
        n->n_out_names = 0;
        schema_layout lay;
        int rc = schema_detector_output(n->in_schemas[0], n_extra, (const char *const *)extras, &lay, n->error,
                                        sizeof n->error) == 0
                     ? s_append_names(n, lay.count, lay.names)
                     : EW_EINVAL;
        if (rc == EW_OK) {
            n->keep = lay.keep; /* taken over; freed with the node's other run-time parts */
            n->n_keep = lay.n_keep;
            lay.keep = NULL;
        }
        schema_layout_free(&lay);
        for (size_t i = 0; i < n_extra; i++)
            free(extras[i]);
        free(extras);
        if (rc != EW_OK)
            return -1;
        n->out_schema.score_index = (int)(n->n_out_names - 2);
        n->out_schema.anomaly_index = (int)(n->n_out_names - 1);
        const ew_schema *in = n->in_schemas[0];
        n->scoring = scoring_new(&n->g->settings.scoring, n->g->name, in->channels, in->names, n->score_calibrated);
        if (!n->scoring) {
            snprintf(n->error, sizeof n->error, "out of memory for the scoring stage");
            return -1;
        }
        s_scoring_load(n);
    } else {
        n->out_schema.score_index = -1;
        n->out_schema.anomaly_index = -1;
    }
    n->out_schema.channels = n->n_out_names;
    n->out_schema.names = (const char *const *)n->out_names;
    if (n->g->kind == EW_KIND_SOURCE) {
        size_t bm = (size_t)n->g->settings.batch_max;
        n->batch_ts = malloc(bm * sizeof *n->batch_ts);
        n->batch_values = malloc(bm * n->out_schema.channels * sizeof *n->batch_values);
        if (!n->batch_ts || !n->batch_values)
            return -1;
    }
    return 0;
}

/* Binds input sockets and runs the plugin's init. */
static int s_setup(ew_node *n)
{
    for (size_t i = 0; i < n->n_in; i++) {
        n->in_socks[i] = s_socket(n, ZMQ_PAIR, ZMQ_RCVHWM, (int)n->g->settings.queue);
        if (!n->in_socks[i] || zmq_bind(n->in_socks[i], n->in_edges[i]->endpoint) != 0) {
            snprintf(n->error, sizeof n->error, "cannot bind %s: %s", n->in_edges[i]->endpoint,
                     zmq_strerror(errno));
            return -1;
        }
    }
    if (s_check_inputs(n) < 0)
        return -1;
    n->error[0] = '\0';
    int rc = n->plugin.desc->init(&s_host, n, n->config, &n->self);
    if (rc != EW_OK) {
        if (!n->error[0])
            snprintf(n->error, sizeof n->error, "init returned %d", rc);
        return -1;
    }
    n->initialized = true;
    return s_finish_schema(n);
}

/* Connects output sockets; every receiver has bound by now. */
static int s_connect_outputs(ew_node *n)
{
    for (size_t i = 0; i < n->n_out; i++) {
        /* A small sender-side HWM keeps the edge's capacity close to the receiver's queue. */
        n->out_socks[i] = s_socket(n, ZMQ_PAIR, ZMQ_SNDHWM, 1);
        if (!n->out_socks[i] || zmq_connect(n->out_socks[i], n->out_edges[i]->endpoint) != 0) {
            snprintf(n->error, sizeof n->error, "cannot connect %s: %s", n->out_edges[i]->endpoint,
                     zmq_strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int s_send_eos(ew_node *n)
{
    zmq_msg_t msg;
    if (bus_msg_eos(&msg) < 0)
        return EW_ERR;
    return s_send_all(n, &msg, 0, true);
}

/* Next delay of the exponential backoff, with +-25% jitter so that many nodes
 * retrying one device do not hit it in step. */
static int64_t s_backoff(ew_node *n)
{
    int64_t base = S_BACKOFF_MIN_NS;
    for (unsigned i = 1; i < n->retry_streak && base < S_BACKOFF_MAX_NS; i++)
        base *= 2;
    if (base > S_BACKOFF_MAX_NS)
        base = S_BACKOFF_MAX_NS;
    n->jitter_seed = n->jitter_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    double r = (double)(n->jitter_seed >> 11) / 9007199254740992.0; /* [0, 1) */
    return (int64_t)((double)base * (0.75 + 0.5 * r));
}

/* Records a transient fault and returns when to try again. */
static int64_t s_transient(ew_node *n, const char *what)
{
    n->retry_streak++;
    s_add(&n->m.retries, 1);
    s_set_state(n, NODE_RETRYING);
    int64_t delay = s_backoff(n);
    s_log(n, EW_LOG_WARN, "%s failed (transient, attempt %u): %s; retrying in %.1f s", what, n->retry_streak,
          n->error[0] ? n->error : "no detail given", (double)delay / 1e9);
    return s_mono() + delay;
}

static void s_recovered(ew_node *n)
{
    if (n->retry_streak) {
        s_log(n, EW_LOG_INFO, "recovered after %u retries", n->retry_streak);
        n->retry_streak = 0;
        s_set_state(n, NODE_RUNNING);
    }
}

static long s_timeout_ms(int64_t deadline, int64_t now)
{
    if (deadline <= now)
        return 0;
    int64_t ms = (deadline - now + 999999) / 1000000;
    return ms > 1000 ? 1000 : (long)ms;
}

/* What a data callback's failure means for the node. EW_ERR is the plugin's fatal
 * error; EW_ESTOP while the host is stopping is a normal stop. Any other
 * code (EW_EINVAL, EW_ENOENT, a positive value, EW_EAGAIN where no retry is
 * defined) is not one the SDK allows there: a plugin fault, reported with the code
 * and treated as fatal, so that the node is marked failed and the graph stops
 * instead of stalling behind a node that no longer reads. */
static int s_callback_failed(ew_node *n, const char *what, int rc)
{
    if (rc == EW_ESTOP && (n->abort_requested || n->stop_requested))
        return EW_ESTOP;
    if (rc == EW_ERR) {
        if (!n->error[0])
            snprintf(n->error, sizeof n->error, "%s returned EW_ERR without a message", what);
        return EW_ERR;
    }
    char detail[300];
    size_t len = strnlen(n->error, sizeof detail - 1);
    memcpy(detail, n->error, len);
    detail[len] = '\0';
    snprintf(n->error, sizeof n->error,
             "plugin fault: %s returned %d, a code the SDK does not allow there (see docs/abi.md)%s%s", what, rc,
             detail[0] ? "; its message: " : "", detail);
    return EW_ERR;
}

/* A source: produce on schedule or when its fd is readable, until EOF or stop. */
static int s_run_source(ew_node *n)
{
    const ew_plugin *d = n->plugin.desc;
    int64_t wake_at = 0;
    int fd = d->poll_fd ? d->poll_fd(n->self) : -1;
    for (;;) {
        int64_t now = s_mono();
        int64_t deadline = wake_at;
        if (n->batch_count && n->batch_first_mono + n->g->settings.linger_ns < deadline)
            deadline = n->batch_first_mono + n->g->settings.linger_ns;
        zmq_pollitem_t items[2] = {{n->ctl, 0, ZMQ_POLLIN, 0}, {NULL, fd, ZMQ_POLLIN, 0}};
        /* zmq_poll counts whole milliseconds: wait the whole ones there, then the
         * rest with a precise sleep, so paced sources keep their schedule. */
        long whole_ms = deadline > now ? (long)((deadline - now) / 1000000) : 0;
        int rc = zmq_poll(items, fd >= 0 ? 2 : 1, whole_ms > 1000 ? 1000 : whole_ms);
        if (rc < 0 && errno != EINTR) {
            snprintf(n->error, sizeof n->error, "poll failed: %s", zmq_strerror(errno));
            return EW_ERR;
        }
        if (rc == 0 && whole_ms <= 1000 && deadline > s_mono()) {
            struct timespec until = {(time_t)(deadline / 1000000000LL), (long)(deadline % 1000000000LL)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
        }
        if ((items[0].revents & ZMQ_POLLIN) && s_ctl_handle(n))
            return n->abort_requested ? EW_ESTOP : EW_OK;
        now = s_mono();
        /* A hung-up device (POLLHUP) arrives as ZMQ_POLLERR: produce must see it too. */
        bool readable = fd >= 0 && (items[1].revents & (ZMQ_POLLIN | ZMQ_POLLERR));
        if (now >= wake_at || readable) {
            n->error[0] = '\0';
            int64_t next = 0;
            rc = d->produce(n->self, &next);
            int64_t after = s_mono();
            s_add(&n->m.busy_ns, (uint64_t)(after - now));
            if (rc == EW_OK) {
                s_recovered(n);
                wake_at = next;
            } else if (rc == EW_EOF) {
                s_log(n, EW_LOG_INFO, "end of stream");
                return EW_EOF;
            } else if (rc == EW_EAGAIN) {
                wake_at = s_transient(n, "produce");
            } else if (rc == EW_ESTOP || n->abort_requested) {
                return n->abort_requested ? EW_ESTOP : EW_OK;
            } else {
                return s_callback_failed(n, "produce", rc);
            }
            if (d->poll_fd)
                fd = d->poll_fd(n->self);
            if (n->stop_requested)
                return EW_OK;
        }
        if (n->batch_count && s_mono() - n->batch_first_mono >= n->g->settings.linger_ns) {
            rc = s_flush_batch(n);
            if (rc != EW_OK)
                return rc;
        }
    }
}

/* Grows detector and sink scratch arrays to hold `count` samples. */
static int s_scratch(ew_node *n, size_t count, size_t channels)
{
    if (count <= n->scratch_cap)
        return 0;
    size_t cap = count < 256 ? 256 : count;
    free(n->scores);
    free(n->flags);
    free(n->extra);
    free(n->raw);
    free(n->contrib);
    free(n->learn_flags);
    free(n->filter_ts);
    free(n->filter_values);
    size_t nin = n->n_in ? n->in_schemas[0]->channels : 1;
    n->scores = malloc(cap * sizeof *n->scores);
    n->flags = malloc(cap);
    n->extra = malloc(cap * (n->n_extra ? n->n_extra : 1) * sizeof *n->extra);
    n->raw = malloc(cap * sizeof *n->raw);
    n->contrib = malloc(cap * (nin ? nin : 1) * sizeof *n->contrib);
    n->learn_flags = malloc(cap);
    n->filter_ts = malloc(cap * sizeof *n->filter_ts);
    n->filter_values = malloc(cap * (channels ? channels : 1) * sizeof *n->filter_values);
    n->scratch_cap = n->scores && n->flags && n->extra && n->raw && n->contrib && n->learn_flags && n->filter_ts &&
                             n->filter_values
                         ? cap
                         : 0;
    return n->scratch_cap ? 0 : -1;
}

/* Scores a batch and sends input + extras + score + anomaly downstream. */
static int s_detect(ew_node *n, const ew_batch *in)
{
    size_t count = in->count, ich = in->schema->channels;
    size_t och = n->out_schema.channels;
    if (s_scratch(n, count, 0) < 0) {
        snprintf(n->error, sizeof n->error, "out of memory for a batch of %zu samples", count);
        return EW_ERR;
    }
    size_t nin = in->schema->channels;
    ew_scores out = {n->scores, n->flags, n->n_extra ? n->extra : NULL, n->n_extra, n->raw, n->contrib, nin,
                     n->learn_flags};
    memset(n->flags, 0, count);
    memset(n->learn_flags, 0, count);
    for (size_t i = 0; i < count; i++)
        n->scores[i] = n->raw[i] = NAN;
    for (size_t i = 0; i < count * nin; i++)
        n->contrib[i] = NAN;
    int64_t t0 = s_mono();
    n->error[0] = '\0';
    int rc = n->plugin.desc->process(n->self, in, &out);
    s_add(&n->m.busy_ns, (uint64_t)(s_mono() - t0));
    if (rc != EW_OK)
        return s_callback_failed(n, "process", rc);
    /* Scores and events go out in stream order: this batch, then what it opened or
     * closed, queued meanwhile. */
    uint64_t opened = 0;
    s_events_reset(n);
    int erc = scoring_apply(n->scoring, count, in->ts, &out, s_queue_event, n, &opened);
    if (erc != EW_OK) {
        snprintf(n->error, sizeof n->error, "out of memory for events");
        return EW_ERR;
    }
    s_add(&n->m.events, opened);
    uint64_t anomalies = 0;
    for (size_t i = 0; i < count; i++)
        anomalies += n->flags[i] != 0;
    s_add(&n->m.anomalies, anomalies);
    s_add(&n->m.samples_out, count);
    s_add(&n->m.batches_out, 1);
    if (!n->n_out)
        return EW_OK;
    zmq_msg_t msg;
    int64_t *ts;
    double *values;
    if (bus_msg_data(&msg, (uint32_t)count, (uint32_t)och, &ts, &values) < 0) {
        snprintf(n->error, sizeof n->error, "out of memory for a batch of %zu samples", count);
        return EW_ERR;
    }
    memcpy(ts, in->ts, count * sizeof *ts);
    size_t kept = n->n_keep;
    for (size_t i = 0; i < count; i++) {
        double *row = values + i * och;
        const double *src = in->values + i * ich;
        if (kept == ich) {
            memcpy(row, src, ich * sizeof *row);
        } else {
            for (size_t k = 0; k < kept; k++)
                row[k] = src[n->keep[k]];
        }
        if (n->n_extra)
            memcpy(row + kept, n->extra + i * n->n_extra, n->n_extra * sizeof *row);
        row[och - 2] = n->scores[i]; /* in [0, 1], or NaN: not scored */
        row[och - 1] = n->flags[i] ? 1.0 : 0.0;
    }
    rc = s_send_all(n, &msg, (uint32_t)count, false);
    return rc == EW_OK ? s_send_events(n) : rc;
}

static int s_sink_call(ew_node *n, const ew_batch *b, const ew_event *ev);

/* Delivers a batch to a sink, keeping only anomalies when asked, retrying
 * transient faults with backoff while upstream waits. */
static int s_deliver(ew_node *n, const ew_batch *in)
{
    ew_batch b = *in;
    if (n->g->settings.only_events)
        return EW_OK; /* this sink takes the events of its inputs, not their samples */
    if (n->g->settings.only_anomalies) {
        int ai = in->schema->anomaly_index;
        if (ai < 0)
            return EW_OK; /* a stream without scores has no anomalies */
        size_t ch = in->schema->channels, kept = 0;
        if (s_scratch(n, in->count, ch) < 0)
            return EW_ERR;
        for (size_t i = 0; i < in->count; i++) {
            if (in->values[i * ch + (size_t)ai] != 0) {
                n->filter_ts[kept] = in->ts[i];
                memcpy(n->filter_values + kept * ch, in->values + i * ch, ch * sizeof(double));
                kept++;
            }
        }
        if (!kept)
            return EW_OK;
        b.count = kept;
        b.ts = n->filter_ts;
        b.values = n->filter_values;
    }
    int rc = s_sink_call(n, &b, NULL);
    if (rc == EW_OK) {
        s_add(&n->m.samples_out, b.count);
        s_add(&n->m.batches_out, 1);
        if (in->schema->anomaly_index >= 0) {
            uint64_t a = 0;
            for (size_t i = 0; i < b.count; i++)
                a += b.values[i * in->schema->channels + (size_t)in->schema->anomaly_index] != 0;
            s_add(&n->m.anomalies, a);
        }
    }
    return rc;
}

/* Delivers an alert event to a sink set to only = events that takes them. */
static int s_deliver_event(ew_node *n, const ew_event *ev)
{
    const ew_plugin *d = n->plugin.desc;
    if (!n->g->settings.only_events || !EW_PLUGIN_HAS(d, consume_event) || !d->consume_event)
        return EW_OK;
    int rc = s_sink_call(n, NULL, ev);
    if (rc == EW_OK)
        s_add(&n->m.events, 1);
    return rc;
}

/* Calls the sink's consume (batch) or consume_event (event), retrying transient
 * faults with backoff while upstream waits. */
static int s_sink_call(ew_node *n, const ew_batch *b, const ew_event *ev)
{
    for (;;) {
        n->error[0] = '\0';
        int64_t t0 = s_mono();
        int rc = b ? n->plugin.desc->consume(n->self, b) : n->plugin.desc->consume_event(n->self, ev);
        s_add(&n->m.busy_ns, (uint64_t)(s_mono() - t0));
        if (rc == EW_OK) {
            s_recovered(n);
            return EW_OK;
        }
        const char *what = b ? "consume" : "consume_event";
        if (rc != EW_EAGAIN)
            return s_callback_failed(n, what, rc);
        int64_t retry_at = s_transient(n, what);
        /* Wait for the retry time, listening only to control: inputs stay unread,
         * so upstream blocks instead of losing data. */
        while (s_mono() < retry_at) {
            zmq_pollitem_t item = {n->ctl, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&item, 1, s_timeout_ms(retry_at, s_mono())) > 0 && s_ctl_handle(n) &&
                n->abort_requested) {
                if (b)
                    s_log(n, EW_LOG_ERROR, "stopped while retrying: %zu samples of this batch were not delivered",
                          b->count);
                else
                    s_log(n, EW_LOG_ERROR, "stopped while retrying: event %llu was not delivered",
                          (unsigned long long)ev->id);
                return EW_ESTOP;
            }
        }
    }
}

/* A detector or sink: read inputs fairly until every one has ended. */
static int s_run_consumer(ew_node *n)
{
    zmq_pollitem_t *items = calloc(n->n_in + 1, sizeof *items);
    size_t *map = calloc(n->n_in + 1, sizeof *map);
    if (!items || !map) {
        free(items);
        free(map);
        return EW_ERR;
    }
    int result = EW_OK;
    while (n->n_in_open > 0 && result == EW_OK) {
        size_t ni = 0;
        items[ni++] = (zmq_pollitem_t){n->ctl, 0, ZMQ_POLLIN, 0};
        for (size_t i = 0; i < n->n_in; i++) {
            if (!n->in_eos[i]) {
                map[ni] = i;
                items[ni++] = (zmq_pollitem_t){n->in_socks[i], 0, ZMQ_POLLIN, 0};
            }
        }
        if (zmq_poll(items, (int)ni, 1000) < 0) {
            if (errno == EINTR)
                continue;
            snprintf(n->error, sizeof n->error, "poll failed: %s", zmq_strerror(errno));
            result = EW_ERR;
            break;
        }
        if ((items[0].revents & ZMQ_POLLIN) && s_ctl_handle(n) && n->abort_requested) {
            result = EW_ESTOP;
            break;
        }
        /* One message from each ready input per round: fair fan-in. */
        for (size_t k = 1; k < ni && result == EW_OK; k++) {
            if (!(items[k].revents & ZMQ_POLLIN))
                continue;
            size_t i = map[k];
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, n->in_socks[i], ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&msg);
                continue;
            }
            atomic_fetch_add_explicit(&n->in_edges[i]->batches_received, 1, memory_order_relaxed);
            bus_frame f;
            char err[200];
            const ew_schema *schema = n->in_schemas[i];
            if (bus_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), (uint32_t)schema->channels, &f, err,
                           sizeof err) < 0) {
                s_add(&n->m.errors, 1);
                s_log(n, EW_LOG_ERROR, "dropped a malformed frame from %s: %s", n->in_origins[i], err);
            } else if (f.type == BUS_EOS) {
                n->in_eos[i] = true;
                n->n_in_open--;
            } else if (f.type == BUS_EVENT) {
                if (n->g->kind == EW_KIND_DETECTOR) {
                    /* An upstream detector's event passes through to this node's sinks. */
                    zmq_msg_t fwd;
                    zmq_msg_init(&fwd);
                    zmq_msg_copy(&fwd, &msg);
                    result = n->n_out ? s_send_all(n, &fwd, 0, true) : (zmq_msg_close(&fwd), EW_OK);
                } else {
                    result = s_deliver_event(n, &f.event);
                }
            } else {
                s_add(&n->m.samples_in, f.count);
                s_add(&n->m.batches_in, 1);
                ew_batch b = {f.count, f.ts, f.values, schema, n->in_origins[i]};
                result = n->g->kind == EW_KIND_DETECTOR ? s_detect(n, &b) : s_deliver(n, &b);
            }
            zmq_msg_close(&msg);
        }
    }
    free(items);
    free(map);
    return result;
}

static void s_free_runtime_parts(ew_node *n)
{
    for (size_t i = 0; i < n->n_in; i++)
        if (n->in_socks[i])
            zmq_close(n->in_socks[i]);
    for (size_t i = 0; i < n->n_out; i++)
        if (n->out_socks[i])
            zmq_close(n->out_socks[i]);
    free(n->keep);
    n->keep = NULL;
    n->n_keep = 0;
    scoring_destroy(&n->scoring);
    s_events_reset(n);
    free(n->events);
    n->events = NULL;
    n->events_cap = 0;
    free(n->batch_ts);
    free(n->batch_values);
    free(n->scores);
    free(n->flags);
    free(n->extra);
    free(n->raw);
    free(n->contrib);
    free(n->learn_flags);
    free(n->filter_ts);
    free(n->filter_values);
    n->raw = NULL;
    n->contrib = NULL;
    n->learn_flags = NULL;
    n->batch_ts = NULL;
    n->batch_values = NULL;
    n->scores = NULL;
    n->flags = NULL;
    n->extra = NULL;
    n->filter_ts = NULL;
    n->filter_values = NULL;
    n->scratch_cap = 0;
}

/* Runs start and the kind's loop, then ends the stream downstream. */
static int s_run(ew_node *n)
{
    const ew_plugin *d = n->plugin.desc;
    if (s_connect_outputs(n) < 0)
        return EW_ERR;
    if (d->start) {
        n->error[0] = '\0';
        int rc = d->start(n->self);
        if (rc != EW_OK) {
            if (!n->error[0])
                snprintf(n->error, sizeof n->error, "start returned %d", rc);
            return EW_ERR;
        }
    }
    s_set_state(n, NODE_RUNNING);
    int rc = d->kind == EW_KIND_SOURCE ? s_run_source(n) : s_run_consumer(n);
    if (rc == EW_ERR)
        return rc;
    if (!n->abort_requested) {
        if (n->stop_requested || rc == EW_EOF)
            s_set_state(n, NODE_STOPPING);
        int frc = d->kind == EW_KIND_SOURCE ? s_flush_batch(n) : EW_OK;
        if (frc == EW_OK && n->scoring) {
            /* An event still open at the end of the stream is closed and delivered. */
            s_events_reset(n);
            frc = scoring_finish(n->scoring, s_queue_event, n) == EW_OK ? s_send_events(n) : EW_ERR;
            s_scoring_save(n);
        }
        if (frc == EW_OK)
            frc = s_send_eos(n);
        if (frc == EW_ERR)
            return frc;
    }
    return n->abort_requested ? EW_ESTOP : EW_OK;
}

void *node_thread(void *arg)
{
    ew_node *n = arg;
    n->jitter_seed = (uint64_t)s_clock(CLOCK_REALTIME) ^ ((uint64_t)n->index << 32);
    if (n->g->kind == EW_KIND_SOURCE && n->g->settings.linger_ns == 0)
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* per-sample latency asked for: wake on time */
    if (s_setup(n) < 0) {
        s_set_state(n, NODE_FAILED);
        s_ctl_send(n, NODE_MSG_FAIL);
    } else {
        s_ctl_send(n, NODE_MSG_READY);
        char cmd[16];
        s_ctl_recv(n, cmd, sizeof cmd, 0);
        int rc = EW_OK;
        if (strcmp(cmd, NODE_MSG_GO) == 0) {
            rc = s_run(n);
            if (rc == EW_ERR) {
                s_set_state(n, NODE_FAILED);
                s_log(n, EW_LOG_ERROR, "stopped by a fatal error: %s", n->error);
            }
        } else {
            n->abort_requested = true;
        }
        if (n->plugin.desc->flush && n->initialized) {
            n->error[0] = '\0';
            int frc = n->plugin.desc->flush(n->self);
            if (frc != EW_OK)
                s_log(n, EW_LOG_ERROR, "flush failed: %s", n->error[0] ? n->error : "no detail given");
        }
        if (atomic_load(&n->state) != NODE_FAILED)
            s_set_state(n, NODE_ENDED);
        s_log(n, EW_LOG_INFO, "finished (%s): samples_in=%llu samples_out=%llu dropped=%llu anomalies=%llu",
              node_state_name((node_state)atomic_load(&n->state)),
              (unsigned long long)atomic_load(&n->m.samples_in),
              (unsigned long long)atomic_load(&n->m.samples_out), (unsigned long long)atomic_load(&n->m.dropped),
              (unsigned long long)atomic_load(&n->m.anomalies));
    }
    if (n->initialized && n->plugin.desc->destroy)
        n->plugin.desc->destroy(n->self);
    n->self = NULL;
    n->initialized = false;
    s_free_runtime_parts(n);
    s_ctl_send(n, NODE_MSG_DONE);
    return NULL;
}
