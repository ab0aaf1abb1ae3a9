/* jsonl: a sink that writes one JSON object per sample (JSON Lines) to stdout
 * or appends it to a file.
 *
 *     [sink.alerts]
 *     plugin = jsonl
 *     input = pump_z
 *     path = /var/lib/edgewatch/alerts.jsonl
 *     only = anomalies
 *
 * A line: {"ts":"2026-11-26T16:35:03.123456Z","node":"pump_z","score":0.73,
 * "anomaly":true,"values":{"temp":71.5,"z":4.1}}; score and anomaly appear when
 * the stream has them; NaN and infinities are written as null.
 *
 * Lines are written with write(2) from our own buffer rather than stdio: when
 * the disk is full we know exactly which bytes reached the file, keep the rest
 * and return EW_EAGAIN, so the host's retry neither loses nor repeats a line.
 */
#include <edgewatch/plugin.h>

#include "ewp_json.h"
#include "ewplug.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum s_flush { S_FLUSH_LINE = 0, S_FLUSH_BATCH = 1 };

typedef struct jsonl_config {
    const char *path;
    int flush;
} jsonl_config;

typedef struct jsonl {
    const ew_host *host;
    ew_node *node;
    const jsonl_config *cfg;
    int fd;
    const char *shown_path;    /* "stdout" or the path, for messages */
    ewp_json *json;            /* the escaped names of each stream seen */
    char *buf;                 /* rendered lines */
    size_t len, cap;
    size_t done;               /* bytes of buf already written */
    bool pending;              /* buf holds a batch that failed to write completely */
    size_t pending_count;      /* that batch's size and first/last timestamps, to */
    int64_t pending_first;     /* recognise the host's retry of it */
    int64_t pending_last;
    ew_counter *lines;
} jsonl;

static const ew_option s_options[] = {
    EW_OPTION("path", EW_OPT_STRING, "-", jsonl_config, path,
              "File to append lines to (created with mode 0640); - = standard output."),
    EW_OPTION_ENUM("flush", "batch", "line|batch", jsonl_config, flush,
                   "Write after every line, or once per batch (fewer system calls)."),
    EW_OPTION_END,
};

static void s_destroy(void *self)
{
    jsonl *j = self;
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    ewp_json_free(&j->json);
    free(j->buf);
    free(j);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const jsonl_config *cfg = config;
    jsonl *j = calloc(1, sizeof *j);
    if (!j) {
        host->set_error(node, "out of memory allocating the jsonl sink");
        return EW_ERR;
    }
    j->host = host;
    j->node = node;
    j->cfg = cfg;
    if (strcmp(cfg->path, "-") == 0) {
        /* Our own descriptor: closing it in destroy leaves the host's stdout open. */
        j->fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        j->shown_path = "standard output";
        if (j->fd < 0) {
            host->set_error(node, "cannot write to standard output: %s", strerror(errno));
            free(j);
            return EW_ERR;
        }
    } else {
        j->fd = open(cfg->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        j->shown_path = cfg->path;
        if (j->fd < 0) {
            host->set_error(node, "cannot open %s for appending: %s; check that its folder exists "
                                  "and is writable, or set path = - for standard output",
                            cfg->path, strerror(errno));
            free(j);
            return EW_EINVAL;
        }
    }
    j->json = ewp_json_new();
    if (!j->json) {
        host->set_error(node, "out of memory allocating the jsonl sink");
        close(j->fd);
        free(j);
        return EW_ERR;
    }
    j->lines = host->counter(node, "jsonl_lines", "JSON lines written by the jsonl sink");
    *self = j;
    return EW_OK;
}

static bool s_reserve(jsonl *j, size_t more)
{
    if (j->len + more <= j->cap)
        return true;
    size_t cap = j->cap ? j->cap : 4096;
    while (cap < j->len + more)
        cap *= 2;
    char *b = realloc(j->buf, cap);
    if (!b)
        return false;
    j->buf = b;
    j->cap = cap;
    return true;
}

static uint64_t s_count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

/* Whether a failed write may succeed later (disk full, quota, a full pipe)
 * or never will (the reader of the pipe is gone, the file is too large). */
static bool s_transient(int e)
{
    return !(e == EPIPE || e == EBADF || e == EINVAL || e == EFBIG);
}

/* Writes buf[done, upto) with write(2). Returns EW_OK, EW_EAGAIN (transient)
 * or EW_ERR with the error set; `done` records what reached the file. */
static int s_write(jsonl *j, size_t upto)
{
    while (j->done < upto) {
        ssize_t n = write(j->fd, j->buf + j->done, upto - j->done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            if (!s_transient(e)) {
                j->host->set_error(j->node, "writing to %s failed: %s; %zu bytes cannot be "
                                            "delivered (check the reader or the file's size limit)",
                                   j->shown_path, strerror(e), j->len - j->done);
                return EW_ERR;
            }
            j->host->set_error(j->node, "writing to %s failed: %s; will retry (%zu bytes waiting)",
                               j->shown_path, strerror(e), j->len - j->done);
            return EW_EAGAIN;
        }
        if (j->lines)
            j->host->counter_add(j->lines, s_count_lines(j->buf + j->done, (size_t)n));
        j->done += (size_t)n;
    }
    return EW_OK;
}

/* Writes what is in buf, per line or all at once. */
static int s_drain(jsonl *j)
{
    int rc = EW_OK;
    if (j->cfg->flush == S_FLUSH_LINE) {
        while (rc == EW_OK && j->done < j->len) {
            const char *nl = memchr(j->buf + j->done, '\n', j->len - j->done);
            size_t upto = nl ? (size_t)(nl - j->buf) + 1 : j->len;
            rc = s_write(j, upto);
        }
    } else {
        rc = s_write(j, j->len);
    }
    if (rc != EW_OK) {
        j->pending = true;
        return rc;
    }
    j->pending = false;
    j->len = j->done = 0;
    return EW_OK;
}

static bool s_same_batch(const jsonl *j, const ew_batch *in)
{
    return in->count == j->pending_count &&
           (in->count == 0 ||
            (in->ts[0] == j->pending_first && in->ts[in->count - 1] == j->pending_last));
}

static int s_consume(void *self, const ew_batch *in)
{
    jsonl *j = self;
    if (j->pending) {
        /* The lines of the batch that failed are rendered and partly written:
         * finish them rather than render again, which would repeat lines. */
        int rc = s_drain(j);
        if (rc != EW_OK || s_same_batch(j, in))
            return rc;
        /* The host moved on to a new batch: it still needs writing. */
    }
    const ewp_json_stream *st = ewp_json_stream_for(j->json, in);
    if (!st) {
        j->host->set_error(j->node, "out of memory preparing the JSON names of stream %s",
                           in->origin ? in->origin : "?");
        return EW_ERR;
    }
    size_t bound = ewp_json_bound(st) + 1;
    if (in->count && bound > ((size_t)-1 - j->len) / in->count) {
        j->host->set_error(j->node, "batch of %zu samples is too large to render", in->count);
        return EW_ERR;
    }
    if (!s_reserve(j, bound * in->count)) {
        j->host->set_error(j->node, "out of memory rendering %zu JSON lines", in->count);
        return EW_ERR;
    }
    for (size_t i = 0; i < in->count; i++) {
        j->len += ewp_json_render(st, in, i, "", j->buf + j->len);
        j->buf[j->len++] = '\n';
    }
    j->pending_count = in->count;
    j->pending_first = in->count ? in->ts[0] : 0;
    j->pending_last = in->count ? in->ts[in->count - 1] : 0;
    return s_drain(j);
}

static int s_flush(void *self)
{
    jsonl *j = self;
    if (!j->pending)
        return EW_OK;
    int rc = s_drain(j);
    if (rc != EW_OK) {
        j->host->set_error(j->node, "writing to %s failed at shutdown: %zu bytes (%llu lines) of "
                                    "the last batch are lost; free space on its disk",
                           j->shown_path, j->len - j->done,
                           (unsigned long long)s_count_lines(j->buf + j->done, j->len - j->done));
        return EW_ERR;
    }
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SINK,
    .name = "jsonl",
    .version = "1.0.0",
    .description = "Writes one JSON object per sample to standard output or a file",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(jsonl_config),
    .init = s_init,
    .consume = s_consume,
    .flush = s_flush,
    .destroy = s_destroy,
};

EW_PLUGIN_EXPORT(s_plugin)
