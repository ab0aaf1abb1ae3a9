/* zmq (sink): sends every sample as one ZeroMQ message, PUSH (nothing lost:
 * upstream waits while no peer takes messages) or PUB (topic frame = the
 * producing node's name; fire-and-forget), as the jsonl JSON object or a csv record.
 *
 *     [sink.out]
 *     plugin = zmq
 *     input = pump_z
 *     socket = push
 *     mode = connect
 *     endpoint = tcp://10.0.0.9:5557
 *     format = json
 *
 * Sends never block the node: they use ZMQ_DONTWAIT. With PUSH, a send that
 * ZeroMQ cannot queue (no peer connected, or sndhwm messages already queued)
 * makes consume return EW_EAGAIN after noting how far the batch got, so the
 * host's retry of the same batch continues where it stopped: nothing is lost
 * or repeated, and upstream waits. Connecting PUSH sockets use ZMQ_IMMEDIATE,
 * so ZeroMQ queues nothing for a peer that is not there. With PUB, ZeroMQ
 * itself drops what no subscriber takes: that is PUB's contract.
 *
 * Alert events (ABI 1.2, a section with only = events) go out the same way,
 * one message per event: PUSH [JSON], PUB [detector node's name][JSON], the
 * JSON object of ewp_json_event whatever `format` says (csv has no shape for
 * an event's ranked channels). A send ZeroMQ cannot queue sends nothing of the
 * event, so the host's retry sends it whole, once.
 */
#include <edgewatch/plugin.h>

#include "ewp_fmt.h"
#include "ewp_json.h"
#include "ewp_time.h"
#include "ewplug.h"
#include "zmq_endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

enum s_socket { S_PUB, S_PUSH };
enum s_mode { S_CONNECT, S_BIND };
enum s_format { S_JSON, S_CSV };

typedef struct zmq_sink_config {
    int socket;
    const char *endpoint;
    int mode;
    int format;
    int64_t sndhwm;
    int64_t linger;
} zmq_sink_config;

typedef struct zmq_sink {
    const ew_host *host;
    ew_node *node;
    const zmq_sink_config *cfg;
    ewp_json *json;
    void *ctx;
    void *sock;
    char *buf;                /* one rendered message */
    size_t cap;
    /* The batch that stopped part-way (EW_EAGAIN): its identity and how many of
     * its samples ZeroMQ already took, so the host's retry resumes there. */
    bool pending;
    size_t pending_count, pending_sent;
    int64_t pending_first, pending_last;
    ew_counter *c_sent;
} zmq_sink;

static const ew_option s_options[] = {
    EW_OPTION_ENUM("socket", "push", "pub|push", zmq_sink_config, socket,
                   "push: to pullers, upstream waits while none takes messages (nothing lost); "
                   "pub: to subscribers, topic = node name, dropped when nobody subscribes."),
    EW_OPTION_REQUIRED("endpoint", EW_OPT_STRING, zmq_sink_config, endpoint,
                       "Where to connect or bind: tcp://host:port or ipc:///path."),
    EW_OPTION_ENUM("mode", "connect", "connect|bind", zmq_sink_config, mode,
                   "Connect to the endpoint (ZeroMQ reconnects by itself) or bind it."),
    EW_OPTION_ENUM("format", "json", "json|csv", zmq_sink_config, format,
                   "Payload: the jsonl JSON object, or csv: ISO-8601 ts then every channel in "
                   "stream order."),
    EW_OPTION_RANGE("sndhwm", EW_OPT_INT, "10000", 1, 100000000, zmq_sink_config, sndhwm,
                    "Messages ZeroMQ queues per peer (ZMQ_SNDHWM); beyond it push waits and pub "
                    "drops."),
    EW_OPTION_RANGE("linger", EW_OPT_DURATION, "5s", 0, 3600, zmq_sink_config, linger,
                    "At shutdown, how long ZeroMQ keeps trying to deliver the messages it has "
                    "queued."),
    EW_OPTION_END,
};

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const zmq_sink_config *cfg = config;
    *line = 0;
    const char *ep = cfg->endpoint;
    if (zmq_endpoint_check(ep, "tcp://127.0.0.1:5557, ipc:///run/edgewatch/out.sock", err, errlen) < 0)
        return EW_ERR;
    return EW_OK;
}

static void s_destroy(void *self)
{
    zmq_sink *z = self;
    if (!z)
        return;
    if (z->sock)
        zmq_close(z->sock); /* keeps delivering queued messages for `linger` */
    if (z->ctx)
        zmq_ctx_term(z->ctx);
    ewp_json_free(&z->json);
    free(z->buf);
    free(z);
}

static int s_open(zmq_sink *z)
{
    const zmq_sink_config *cfg = z->cfg;
    void *s = zmq_socket(z->ctx, cfg->socket == S_PUB ? ZMQ_PUB : ZMQ_PUSH);
    if (!s) {
        z->host->set_error(z->node, "cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        return EW_ERR;
    }
    int linger = (int)(cfg->linger / 1000000);
    int hwm = (int)cfg->sndhwm;
    int one = 1;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    /* Queue only for completed connections: otherwise a connecting PUSH would
     * accept messages for a peer that may never come, and lose them at close. */
    if (cfg->socket == S_PUSH)
        zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one);
    int rc = cfg->mode == S_BIND ? zmq_bind(s, cfg->endpoint) : zmq_connect(s, cfg->endpoint);
    if (rc != 0) {
        int e = errno;
        zmq_close(s);
        z->host->set_error(z->node, "cannot %s %s: %s%s", cfg->mode == S_BIND ? "bind" : "connect",
                           cfg->endpoint, zmq_strerror(e),
                           e == EADDRINUSE ? "; another program uses that address: pick another "
                                             "port or path"
                                           : "; check the endpoint");
        return EW_ERR;
    }
    z->sock = s;
    return EW_OK;
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const zmq_sink_config *cfg = config;
    char err[512];
    int line;
    if (s_validate(cfg, err, sizeof err, &line) != EW_OK) {
        host->set_error(node, "%s", err);
        return EW_EINVAL;
    }
    zmq_sink *z = calloc(1, sizeof *z);
    if (!z) {
        host->set_error(node, "out of memory creating the zmq sink");
        return EW_ERR;
    }
    z->host = host;
    z->node = node;
    z->cfg = cfg;
    z->json = ewp_json_new();
    z->ctx = zmq_ctx_new();
    if (!z->json || !z->ctx) {
        host->set_error(node, "cannot create the zmq sink: %s",
                        z->ctx ? "out of memory" : zmq_strerror(errno));
        s_destroy(z);
        return EW_ERR;
    }
    if (s_open(z) != EW_OK) {
        s_destroy(z);
        return EW_ERR;
    }
    z->c_sent = host->counter(node, "zmq_sent", "Messages handed to ZeroMQ by the zmq sink");
    *self = z;
    return EW_OK;
}

static bool s_reserve(zmq_sink *z, size_t n)
{
    if (n <= z->cap)
        return true;
    char *b = realloc(z->buf, n);
    if (!b)
        return false;
    z->buf = b;
    z->cap = n;
    return true;
}

/* Sample i as csv: ts (ISO-8601 UTC, microseconds), then every channel in
 * schema order; NaN is an empty field, infinities too (csv has no spelling). */
static size_t s_render_csv(zmq_sink *z, const ew_batch *in, size_t i)
{
    size_t ch = in->schema->channels;
    char *p = z->buf;
    p += ewp_time_format(in->ts[i], p);
    for (size_t c = 0; c < ch; c++) {
        *p++ = ',';
        char num[EWP_NUM_BUFSIZE];
        size_t n = ewp_fmt_json_number(in->values[i * ch + c], num);
        if (strcmp(num, "null") != 0) {
            memcpy(p, num, n);
            p += n;
        }
    }
    return (size_t)(p - z->buf);
}

static bool s_same_batch(const zmq_sink *z, const ew_batch *in)
{
    return in->count == z->pending_count &&
           (in->count == 0 ||
            (in->ts[0] == z->pending_first && in->ts[in->count - 1] == z->pending_last));
}

static int s_consume(void *self, const ew_batch *in)
{
    zmq_sink *z = self;
    size_t start = 0;
    if (z->pending && s_same_batch(z, in))
        start = z->pending_sent; /* the host's retry: ZeroMQ has the first ones */
    z->pending = false;
    const ewp_json_stream *st = NULL;
    size_t bound;
    if (z->cfg->format == S_JSON) {
        st = ewp_json_stream_for(z->json, in);
        if (!st) {
            z->host->set_error(z->node, "out of memory preparing the JSON names of stream %s",
                               in->origin ? in->origin : "?");
            return EW_ERR;
        }
        bound = ewp_json_bound(st);
    } else {
        bound = EWP_TIME_BUFSIZE + in->schema->channels * (EWP_NUM_BUFSIZE + 1);
    }
    if (!s_reserve(z, bound)) {
        z->host->set_error(z->node, "out of memory rendering a message");
        return EW_ERR;
    }
    const char *topic = in->origin ? in->origin : "";
    size_t tlen = strlen(topic);
    size_t i = start;
    for (; i < in->count; i++) {
        size_t len = st ? ewp_json_render(st, in, i, "", z->buf) : s_render_csv(z, in, i);
        /* A PUB message is [topic, payload]: once the first frame is queued
         * ZeroMQ takes the whole message, so only the first send can fail. */
        if (z->cfg->socket == S_PUB && zmq_send(z->sock, topic, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            break;
        if (zmq_send(z->sock, z->buf, len, ZMQ_DONTWAIT) < 0)
            break;
    }
    if (i > start)
        z->host->counter_add(z->c_sent, i - start);
    if (i == in->count)
        return EW_OK;
    int e = zmq_errno();
    if (e == EAGAIN) {
        z->pending = true;
        z->pending_count = in->count;
        z->pending_sent = i;
        z->pending_first = in->count ? in->ts[0] : 0;
        z->pending_last = in->count ? in->ts[in->count - 1] : 0;
        z->host->set_error(z->node,
                           "no peer connected to %s (or the peers hold sndhwm = %lld messages "
                           "already); %zu messages of this batch wait, upstream waits too",
                           z->cfg->endpoint, (long long)z->cfg->sndhwm, in->count - i);
        return EW_EAGAIN;
    }
    z->host->set_error(z->node, "sending to %s failed: %s; %zu messages of this batch are lost",
                       z->cfg->endpoint, zmq_strerror(e), in->count - i);
    return EW_ERR;
}

static int s_consume_event(void *self, const ew_event *ev)
{
    zmq_sink *z = self;
    char err[512];
    size_t len = 0;
    char *msg = ewp_json_event(ev, "", &len, err, sizeof err);
    if (!msg) {
        z->host->set_error(z->node, "cannot send the event: %s", err);
        return EW_ERR;
    }
    int rc = 0;
    if (z->cfg->socket == S_PUB)
        rc = zmq_send(z->sock, ev->node, strlen(ev->node), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zmq_send(z->sock, msg, len, ZMQ_DONTWAIT);
    free(msg);
    if (rc >= 0) {
        z->host->counter_add(z->c_sent, 1);
        return EW_OK;
    }
    int e = zmq_errno();
    if (e == EAGAIN) {
        z->host->set_error(z->node,
                           "no peer connected to %s (or the peers hold sndhwm = %lld messages "
                           "already); %s event %llu of node %s waits, upstream waits too",
                           z->cfg->endpoint, (long long)z->cfg->sndhwm,
                           ev->state == EW_EVENT_OPEN ? "open" : "closed",
                           (unsigned long long)ev->id, ev->node);
        return EW_EAGAIN;
    }
    z->host->set_error(z->node, "sending to %s failed: %s; event %llu of node %s is lost",
                       z->cfg->endpoint, zmq_strerror(e), (unsigned long long)ev->id, ev->node);
    return EW_ERR;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SINK,
    .name = "zmq",
    .version = "1.1.0",
    .description = "Sends one ZeroMQ message per sample (PUSH or PUB), as JSON or csv, and per alert event",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(zmq_sink_config),
    .init = s_init,
    .consume = s_consume,
    .destroy = s_destroy,
    .validate = s_validate,
    .consume_event = s_consume_event,
};

EW_PLUGIN_EXPORT(s_plugin)
