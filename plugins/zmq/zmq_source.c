/* zmq (source): receives samples from ZeroMQ publishers (SUB) or pushers (PULL)
 * over tcp:// or ipc://, one JSON object or csv record per message.
 *
 *     [source.plant]
 *     plugin = zmq
 *     socket = sub
 *     endpoint = tcp://10.0.0.5:5556
 *     topics = pump1, pump2
 *     format = json
 *     channels = temp, pressure
 *
 * The socket lives in the plugin's own ZeroMQ context (not the host's).
 * ZeroMQ reconnects by itself, so a publisher going away is not an error. The
 * host waits on the socket's ZMQ_FD, which is edge-triggered: produce drains
 * the socket until EAGAIN (or a bound, then asks to be called again at once)
 * and checks ZMQ_EVENTS before it lets the host sleep. Malformed messages are
 * counted and skipped.
 */
#include <edgewatch/plugin.h>

#include "ewp_lines.h"
#include "ewplug.h"
#include "zmq_endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Messages handled per produce call at most, so the host's loop stays responsive. */
#define S_MAX_MSGS 4096
/* Safety net: run produce this often even without a wake-up from ZMQ_FD. */
#define S_IDLE_NS 100000000LL
#define S_SHOWN 60

enum s_socket { S_SUB, S_PULL };
enum s_mode { S_CONNECT, S_BIND };

typedef struct zmq_source_config {
    int socket;
    const char *endpoint;
    int mode;
    ew_list topics;
    int format;
    ew_list channels;
    ew_list columns;
    int delimiter;
    const char *timestamp_field;
    int timestamp_unit;
    int64_t rcvhwm;
    uint64_t max_message;
} zmq_source_config;

typedef struct zmq_source {
    const ew_host *host;
    ew_node *node;
    const zmq_source_config *cfg;
    ewp_lines *parser;
    size_t nch;
    double *values;
    void *ctx;
    void *sock;               /* NULL until bound/connected */
    int fd;                   /* its ZMQ_FD */
    unsigned long long messages, bad;
    ew_counter *c_messages, *c_bad;
} zmq_source;

static const ew_option s_options[] = {
    EW_OPTION_ENUM("socket", "sub", "sub|pull", zmq_source_config, socket,
                   "sub: receive from publishers, filtered by topics; pull: receive from pushers "
                   "(load-balanced, nothing dropped)."),
    EW_OPTION_REQUIRED("endpoint", EW_OPT_STRING, zmq_source_config, endpoint,
                       "Where to connect or bind: tcp://host:port or ipc:///path."),
    EW_OPTION_ENUM("mode", "connect", "connect|bind", zmq_source_config, mode,
                   "Connect to the endpoint (ZeroMQ reconnects by itself) or bind it."),
    EW_OPTION("topics", EW_OPT_LIST, NULL, zmq_source_config, topics,
              "sub: topic prefixes to subscribe to; default every message."),
    EW_OPTION_ENUM("format", "json", "json|csv", zmq_source_config, format,
                   "Payload: a JSON object of channel -> number, or csv fields."),
    EW_OPTION_REQUIRED("channels", EW_OPT_LIST, zmq_source_config, channels,
                       "Names to emit, in order; a name missing from a message is NaN."),
    EW_OPTION("columns", EW_OPT_LIST, NULL, zmq_source_config, columns,
              "csv: the name of every field of a payload, in order; default: the channels."),
    EW_OPTION_ENUM("delimiter", "comma", EWP_LINES_DELIMITERS, zmq_source_config, delimiter,
                   "csv: field separator (space = runs of spaces or tabs)."),
    EW_OPTION("timestamp_field", EW_OPT_STRING, "ts", zmq_source_config, timestamp_field,
              "Field holding the sample time (ISO-8601 or epoch); empty or absent = time of "
              "arrival."),
    EW_OPTION_ENUM("timestamp_unit", "auto", "auto|s|ms|us|ns", zmq_source_config, timestamp_unit,
                   "Unit of numeric timestamps; auto: below 1e11 seconds, below 1e14 milliseconds, "
                   "below 1e17 microseconds, else nanoseconds."),
    EW_OPTION_RANGE("rcvhwm", EW_OPT_INT, "100000", 1, 100000000, zmq_source_config, rcvhwm,
                    "Messages ZeroMQ queues for this node (ZMQ_RCVHWM); beyond it a publisher drops "
                    "and a pusher waits."),
    EW_OPTION_RANGE("max_message", EW_OPT_SIZE, "64KiB", 16, 67108864, zmq_source_config,
                    max_message, "Largest payload in bytes; a larger message is counted as bad."),
    EW_OPTION_END,
};

static bool s_csv_uses_ts(const zmq_source_config *cfg)
{
    const char *ts = cfg->timestamp_field;
    if (!ts[0])
        return false;
    for (size_t i = 0; i < cfg->columns.count; i++)
        if (strcmp(cfg->columns.items[i], ts) == 0)
            return true;
    return false;
}

static void s_spec(const zmq_source_config *cfg, ewp_lines_spec *spec)
{
    bool csv = cfg->format == 1;
    *spec = (ewp_lines_spec){
        .format = csv ? EWP_LINES_CSV : EWP_LINES_JSON,
        .ncolumns = csv ? (cfg->columns.count ? cfg->columns.count : cfg->channels.count) : 0,
        .columns = csv ? (cfg->columns.count ? cfg->columns.items : cfg->channels.items) : NULL,
        .nchannels = cfg->channels.count,
        .channels = cfg->channels.items,
        /* In csv the default "ts" applies only when a column carries that name. */
        .timestamp_field = csv && !s_csv_uses_ts(cfg) ? "" : cfg->timestamp_field,
        .delimiter = cfg->delimiter,
        .ts_unit = (ewp_lines_ts_unit)cfg->timestamp_unit,
    };
}

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const zmq_source_config *cfg = config;
    *line = 0;
    const char *ep = cfg->endpoint;
    if (zmq_endpoint_check(ep, "tcp://127.0.0.1:5556, ipc:///run/edgewatch/in.sock", err, errlen) < 0)
        return EW_ERR;
    if (cfg->socket == S_PULL && cfg->topics.count) {
        snprintf(err, errlen, "option topics applies to socket = sub only; remove it or use "
                              "socket = sub");
        return EW_ERR;
    }
    if (cfg->format != 1 && cfg->columns.count) {
        snprintf(err, errlen, "option columns is for format = csv only");
        return EW_ERR;
    }
    ewp_lines_spec spec;
    s_spec(cfg, &spec);
    return ewp_lines_check(&spec, err, errlen) < 0 ? EW_ERR : EW_OK;
}

static void s_destroy(void *self)
{
    zmq_source *z = self;
    if (!z)
        return;
    if (z->sock)
        zmq_close(z->sock);
    if (z->ctx)
        zmq_ctx_term(z->ctx);
    ewp_lines_free(&z->parser);
    free(z->values);
    free(z);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const zmq_source_config *cfg = config;
    zmq_source *z = calloc(1, sizeof *z);
    if (!z) {
        host->set_error(node, "out of memory creating the zmq source");
        return EW_ERR;
    }
    z->host = host;
    z->node = node;
    z->cfg = cfg;
    z->fd = -1;
    char err[256];
    int line;
    if (s_validate(cfg, err, sizeof err, &line) != EW_OK) {
        host->set_error(node, "%s", err);
        free(z);
        return EW_EINVAL;
    }
    ewp_lines_spec spec;
    s_spec(cfg, &spec);
    z->parser = ewp_lines_new(&spec);
    if (z->parser)
        z->nch = ewp_lines_channels(z->parser);
    z->values = z->parser ? calloc(z->nch, sizeof *z->values) : NULL;
    z->ctx = zmq_ctx_new();
    if (!z->parser || !z->values || !z->ctx) {
        host->set_error(node, "cannot create the zmq source: %s",
                        z->ctx ? "out of memory" : zmq_strerror(errno));
        s_destroy(z);
        return EW_ERR;
    }
    int rc = host->set_channels(node, z->nch, ewp_lines_channel_names(z->parser));
    if (rc != EW_OK) {
        s_destroy(z);
        return rc;
    }
    z->c_messages = host->counter(node, "zmq_messages", "Messages received by the zmq source");
    z->c_bad = host->counter(node, "zmq_bad_messages",
                             "Messages the zmq source skipped: malformed, too large, too many frames");
    *self = z;
    return EW_OK;
}

/* Creates, configures and binds or connects the socket. EW_EAGAIN when it may
 * work later (address in use), EW_ERR when it never will. */
static int s_open(zmq_source *z)
{
    const zmq_source_config *cfg = z->cfg;
    void *s = zmq_socket(z->ctx, cfg->socket == S_SUB ? ZMQ_SUB : ZMQ_PULL);
    if (!s) {
        z->host->set_error(z->node, "cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        return EW_ERR;
    }
    int linger = 0, hwm = (int)cfg->rcvhwm;
    int64_t maxmsg = -1;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (cfg->socket == S_SUB) {
        if (cfg->topics.count == 0)
            zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
        for (size_t i = 0; i < cfg->topics.count; i++)
            zmq_setsockopt(s, ZMQ_SUBSCRIBE, cfg->topics.items[i], strlen(cfg->topics.items[i]));
    }
    int rc = cfg->mode == S_BIND ? zmq_bind(s, cfg->endpoint) : zmq_connect(s, cfg->endpoint);
    if (rc != 0) {
        int e = errno;
        zmq_close(s);
        bool transient = e == EADDRINUSE || e == EADDRNOTAVAIL || e == ENODEV || e == ENOENT ||
                         e == EACCES;
        z->host->set_error(z->node, "cannot %s %s: %s%s", cfg->mode == S_BIND ? "bind" : "connect",
                           cfg->endpoint, zmq_strerror(e),
                           transient ? "; retrying"
                                     : " (check the address: tcp://HOST:PORT or ipc:///path)");
        return transient ? EW_EAGAIN : EW_ERR;
    }
    size_t fdlen = sizeof z->fd;
    if (zmq_getsockopt(s, ZMQ_FD, &z->fd, &fdlen) != 0) {
        z->host->set_error(z->node, "cannot get the ZeroMQ socket's descriptor: %s",
                           zmq_strerror(errno));
        zmq_close(s);
        z->fd = -1;
        return EW_ERR;
    }
    z->sock = s;
    z->host->log(z->node, EW_LOG_INFO, "%s %s %s", cfg->socket == S_SUB ? "SUB" : "PULL",
                 cfg->mode == S_BIND ? "bound to" : "connecting to", cfg->endpoint);
    return EW_OK;
}

static int s_start(void *self)
{
    zmq_source *z = self;
    int rc = s_open(z);
    return rc == EW_EAGAIN ? EW_OK : rc; /* produce retries */
}

static void s_bad(zmq_source *z, const char *data, size_t len, const char *why)
{
    z->bad++;
    z->host->counter_add(z->c_bad, 1);
    if (!ewp_should_report(z->bad))
        return;
    char shown[S_SHOWN * 4 + 8];
    ewp_lines_excerpt(data, len, S_SHOWN, shown, sizeof shown);
    z->host->log(z->node, EW_LOG_WARN, "%s: bad message skipped: %s: \"%s\" (%llu bad messages so far)",
                 z->cfg->endpoint, why, shown, z->bad);
}

/* A single-frame SUB message may carry its topic in front: "pump1 {...}". */
static void s_strip_topic(const zmq_source *z, const char **data, size_t *len)
{
    const ew_list *t = &z->cfg->topics;
    for (size_t i = 0; i < t->count; i++) {
        size_t n = strlen(t->items[i]);
        if (n < *len && memcmp(*data, t->items[i], n) == 0 && ((*data)[n] == ' ' || (*data)[n] == '\t')) {
            *data += n + 1;
            *len -= n + 1;
            return;
        }
    }
}

/* Handles one received message (frames: 1 = payload, 2 = topic + payload). */
static int s_message(zmq_source *z, zmq_msg_t *frames, size_t nframes, size_t total)
{
    z->messages++;
    z->host->counter_add(z->c_messages, 1);
    zmq_msg_t *pay = &frames[nframes - 1];
    const char *data = zmq_msg_data(pay);
    size_t len = zmq_msg_size(pay);
    char why[256];
    if (total > 2) {
        snprintf(why, sizeof why, "%zu frames, expected 1 (payload) or 2 (topic, payload)", total);
        s_bad(z, data, len, why);
        return EW_OK;
    }
    if (len > z->cfg->max_message) {
        snprintf(why, sizeof why, "%zu bytes, more than max_message (%llu)", len,
                 (unsigned long long)z->cfg->max_message);
        s_bad(z, data, len, why);
        return EW_OK;
    }
    if (total == 1 && z->cfg->socket == S_SUB)
        s_strip_topic(z, &data, &len);
    int64_t ts = 0;
    bool has_ts = false;
    if (ewp_lines_parse(z->parser, data, len, &ts, &has_ts, z->values, why, sizeof why) < 0) {
        s_bad(z, data, len, why);
        return EW_OK;
    }
    return z->host->emit(z->node, has_ts ? ts : z->host->now(z->node), z->values);
}

static int s_produce(void *self, int64_t *wake_at)
{
    zmq_source *z = self;
    if (!z->sock) {
        int rc = s_open(z);
        if (rc != EW_OK)
            return rc;
    }
    zmq_msg_t frames[2];
    zmq_msg_init(&frames[0]);
    zmq_msg_init(&frames[1]);
    int rc = EW_OK;
    size_t handled = 0;
    for (; handled < S_MAX_MSGS; handled++) {
        if (zmq_msg_recv(&frames[0], z->sock, ZMQ_DONTWAIT) < 0) {
            if (errno == EAGAIN)
                break;
            if (errno == EINTR) {
                handled--;
                continue;
            }
            z->host->set_error(z->node, "receiving from %s failed: %s", z->cfg->endpoint,
                               zmq_strerror(errno));
            rc = errno == ETERM ? EW_ESTOP : EW_ERR;
            goto out;
        }
        /* The frames of one message arrive together: no EAGAIN between them. */
        size_t n = 1, total = 1;
        while (zmq_msg_more(n == 1 ? &frames[0] : &frames[1])) {
            zmq_msg_t *into = &frames[1];
            if (zmq_msg_recv(into, z->sock, 0) < 0)
                break;
            n = 2;
            total++;
            if (total > 2 && !zmq_msg_more(into))
                break;
        }
        rc = s_message(z, frames, n, total);
        if (rc != EW_OK)
            goto out;
    }
    if (handled == S_MAX_MSGS) {
        *wake_at = 0;
    } else {
        /* Drained to EAGAIN. Reading ZMQ_EVENTS also re-arms ZMQ_FD; if a message
         * slipped in meanwhile, come back at once rather than wait for an edge. */
        int events = 0;
        size_t elen = sizeof events;
        zmq_getsockopt(z->sock, ZMQ_EVENTS, &events, &elen);
        *wake_at = (events & ZMQ_POLLIN) ? 0 : z->host->monotonic(z->node) + S_IDLE_NS;
    }
out:
    zmq_msg_close(&frames[0]);
    zmq_msg_close(&frames[1]);
    return rc;
}

static int s_poll_fd(void *self)
{
    const zmq_source *z = self;
    return z->sock ? z->fd : -1;
}

static int s_flush(void *self)
{
    zmq_source *z = self;
    z->host->log(z->node, EW_LOG_INFO, "%s: %llu messages received, %llu bad messages skipped",
                 z->cfg->endpoint, z->messages, z->bad);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SOURCE,
    .name = "zmq",
    .version = "1.0.0",
    .description = "Receives JSON or csv samples from ZeroMQ publishers (SUB) or pushers (PULL).",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(zmq_source_config),
    .init = s_init,
    .start = s_start,
    .produce = s_produce,
    .poll_fd = s_poll_fd,
    .flush = s_flush,
    .destroy = s_destroy,
    .validate = s_validate,
};

EW_PLUGIN_EXPORT(s_plugin)
