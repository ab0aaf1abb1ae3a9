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
 *
 * A file can be rotated by size (rotate_size, rotate_keep): a line is always
 * written whole to one file, and rotation happens only between lines, as a
 * rename chain FILE.N-1 -> FILE.N ... FILE -> FILE.1 and a reopen. fsync =
 * batch | always makes lines durable (fdatasync) before consume returns.
 *
 * Alert events (ABI 1.2, a section with only = events) are lines too, written
 * by consume_event through the same buffer, rotation and fsync as a batch of
 * one: {"ts":"...","node":"pump_z","event":"open","id":1,"start":"...",
 * "end":null,"duration_s":0,"peak_score":0.97,"peak_ts":"...","samples":1,
 * "channels":[{"name":"temp","share":0.8}]} (ewp_json_event).
 */
#include <edgewatch/plugin.h>

#include "ewp_json.h"
#include "ewplug.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum s_flush { S_FLUSH_LINE = 0, S_FLUSH_BATCH = 1 };
enum s_fsync { S_SYNC_NEVER = 0, S_SYNC_BATCH = 1, S_SYNC_ALWAYS = 2 };

typedef struct jsonl_config {
    const char *path;
    int flush;
    uint64_t rotate_size;
    int64_t rotate_keep;
    int fsync;
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
    bool pending_event;        /* ... and it was an event, not a batch */
    size_t pending_count;      /* that batch's size and first/last timestamps, to */
    int64_t pending_first;     /* recognise the host's retry of it */
    int64_t pending_last;
    uint64_t pending_id;       /* that event's id, state and node, for the same reason */
    ew_event_state pending_state;
    char *pending_node;
    uint64_t size;             /* bytes in the current file (rotation) */
    bool dirty;                /* written since the last fdatasync */
    ew_counter *lines, *rotations;
} jsonl;

static const ew_option s_options[] = {
    EW_OPTION("path", EW_OPT_STRING, "-", jsonl_config, path,
              "File to append lines to (created with mode 0640); - = standard output."),
    EW_OPTION_ENUM("flush", "batch", "line|batch", jsonl_config, flush,
                   "Write after every line, or once per batch (fewer system calls)."),
    EW_OPTION("rotate_size", EW_OPT_SIZE, "0", jsonl_config, rotate_size,
              "Start a new file before a line would make the current one larger than this "
              "(a longer line gets a file of its own); 0 = never rotate."),
    EW_OPTION_RANGE("rotate_keep", EW_OPT_INT, "5", 1, 1000, jsonl_config, rotate_keep,
                    "Rotated files kept: PATH.1 (newest) to PATH.N; the oldest is removed."),
    EW_OPTION_ENUM("fsync", "never", "never|batch|always", jsonl_config, fsync,
                   "fdatasync the file after every batch or every line, so written lines "
                   "survive a power cut; never = leave it to the kernel."),
    EW_OPTION_END,
};

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const jsonl_config *cfg = config;
    *line = 0;
    if (strcmp(cfg->path, "-") == 0 && (cfg->rotate_size || cfg->fsync != S_SYNC_NEVER)) {
        snprintf(err, errlen, "option %s applies to a file only, and path = - is standard output; "
                              "set path to a file or remove %s",
                 cfg->rotate_size ? "rotate_size" : "fsync", cfg->rotate_size ? "rotate_size" : "fsync");
        return EW_ERR;
    }
    return EW_OK;
}

static void s_destroy(void *self)
{
    jsonl *j = self;
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    ewp_json_free(&j->json);
    free(j->buf);
    free(j->pending_node);
    free(j);
}

/* A crash mid-write can leave a last line without its newline; appending to
 * it would glue the next line on and make both unreadable. Cuts the file back
 * to just after its last newline (or to empty) and says what was cut. */
static int s_repair_tail(jsonl *j, uint64_t size)
{
    if (size == 0)
        return EW_OK;
    char buf[4096];
    uint64_t end = size;
    while (end > 0) {
        size_t n = end < sizeof buf ? (size_t)end : sizeof buf;
        ssize_t got = pread(j->fd, buf, n, (off_t)(end - n));
        if (got != (ssize_t)n) {
            j->host->set_error(j->node, "cannot read the end of %s to check for a half-written line: %s",
                               j->shown_path, got < 0 ? strerror(errno) : "short read");
            return EW_ERR;
        }
        const char *nl = NULL;
        for (size_t i = n; i > 0 && !nl; i--)
            if (buf[i - 1] == '\n')
                nl = buf + i - 1;
        if (nl) {
            end = end - n + (uint64_t)(nl - buf) + 1;
            break;
        }
        end -= n;
    }
    if (end == size)
        return EW_OK;
    if (ftruncate(j->fd, (off_t)end) != 0) {
        j->host->set_error(j->node, "cannot cut the half-written last line of %s: %s", j->shown_path,
                           strerror(errno));
        return EW_ERR;
    }
    j->host->log(j->node, EW_LOG_WARN,
                 "cut %llu bytes of a half-written last line from %s at byte %llu (left by a crash)",
                 (unsigned long long)(size - end), j->shown_path, (unsigned long long)end);
    j->size = end;
    return EW_OK;
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const jsonl_config *cfg = config;
    char verr[512];
    int vline;
    if (s_validate(cfg, verr, sizeof verr, &vline) != EW_OK) {
        host->set_error(node, "%s", verr);
        return EW_EINVAL;
    }
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
        /* Read too: the tail is checked for a line a crash left half-written. */
        j->fd = open(cfg->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        j->shown_path = cfg->path;
        bool readable = j->fd >= 0;
        if (!readable && errno == EACCES)
            j->fd = open(cfg->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (j->fd < 0) {
            host->set_error(node, "cannot open %s for appending: %s; check that its folder exists "
                                  "and is writable, or set path = - for standard output",
                            cfg->path, strerror(errno));
            free(j);
            return EW_EINVAL;
        }
        struct stat st;
        if (fstat(j->fd, &st) == 0) {
            j->size = (uint64_t)st.st_size;
            if (!readable)
                host->log(node, EW_LOG_INFO,
                          "%s is write-only for edgewatch: a line a crash left half-written at its end "
                          "cannot be checked; give read permission too",
                          cfg->path);
            else if (S_ISREG(st.st_mode) && s_repair_tail(j, j->size) != EW_OK) {
                close(j->fd);
                free(j);
                return EW_ERR;
            }
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
    j->rotations = host->counter(node, "jsonl_rotations", "Files rotated by the jsonl sink");
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
        j->size += (uint64_t)n;
        j->dirty = true;
    }
    return EW_OK;
}

/* fdatasync of what was written; a failure may mean lost data, so it is fatal. */
static int s_sync(jsonl *j)
{
    if (!j->dirty)
        return EW_OK;
    if (fdatasync(j->fd) != 0) {
        j->host->set_error(j->node, "fdatasync of %s failed: %s; lines written since the last "
                                    "sync may not be on disk (check the disk and the kernel log)",
                           j->shown_path, strerror(errno));
        return EW_ERR;
    }
    j->dirty = false;
    return EW_OK;
}

/* Makes the folder's entries (renames, a new file) durable. */
static void s_sync_dir(jsonl *j)
{
    char *dir = strdup(j->cfg->path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir)
        d = "/";
    else if (slash) {
        *slash = '\0';
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0)
            j->host->log(j->node, EW_LOG_WARN, "fsync of folder %s failed: %s", d, strerror(errno));
        close(fd);
    }
    free(dir);
}

/* PATH.N-1 -> PATH.N, ..., PATH -> PATH.1, then a fresh PATH. The current file
 * stays open until the new one is, so a failure leaves the sink writable. */
static int s_rotate(jsonl *j)
{
    const char *path = j->cfg->path;
    int64_t keep = j->cfg->rotate_keep;
    if (j->cfg->fsync != S_SYNC_NEVER && s_sync(j) != EW_OK)
        return EW_ERR;
    size_t plen = strlen(path) + 24;
    char *from = malloc(plen), *to = malloc(plen);
    if (!from || !to) {
        free(from);
        free(to);
        j->host->set_error(j->node, "out of memory rotating %s", path);
        return EW_ERR;
    }
    int rc = EW_OK;
    for (int64_t k = keep - 1; k >= 1 && rc == EW_OK; k--) {
        snprintf(from, plen, "%s.%lld", path, (long long)k);
        snprintf(to, plen, "%s.%lld", path, (long long)k + 1);
        if (rename(from, to) != 0 && errno != ENOENT) {
            j->host->set_error(j->node, "cannot rotate %s: renaming %s to %s failed: %s; check the "
                                        "folder's permissions",
                               path, from, to, strerror(errno));
            rc = EW_ERR;
        }
    }
    snprintf(to, plen, "%s.1", path);
    if (rc == EW_OK && rename(path, to) != 0) {
        j->host->set_error(j->node, "cannot rotate %s: renaming it to %s failed: %s; check the "
                                    "folder's permissions",
                           path, to, strerror(errno));
        rc = EW_ERR;
    }
    if (rc == EW_OK) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            j->host->set_error(j->node, "rotated %s to %s but cannot create a new %s: %s", path, to,
                               path, strerror(errno));
            rc = EW_ERR;
        } else {
            close(j->fd);
            j->fd = fd;
            j->size = 0;
            j->dirty = false;
            if (j->cfg->fsync != S_SYNC_NEVER)
                s_sync_dir(j);
            j->host->counter_add(j->rotations, 1);
            j->host->log(j->node, EW_LOG_INFO, "rotated %s to %s", path, to);
        }
    }
    free(from);
    free(to);
    return rc;
}

/* End of the line that starts at or contains buf[at], newline included. */
static size_t s_line_end(const jsonl *j, size_t at)
{
    const char *nl = memchr(j->buf + at, '\n', j->len - at);
    return nl ? (size_t)(nl - j->buf) + 1 : j->len;
}

/* Writes what is in buf, per line or as many whole lines as the current file
 * takes, rotating between lines; a line cut by a failed write is finished in
 * the same file before anything else. */
static int s_drain(jsonl *j)
{
    const jsonl_config *c = j->cfg;
    bool per_line = c->flush == S_FLUSH_LINE || c->fsync == S_SYNC_ALWAYS;
    int rc = EW_OK;
    while (rc == EW_OK && j->done < j->len) {
        size_t upto = s_line_end(j, j->done);
        bool line_start = j->done == 0 || j->buf[j->done - 1] == '\n';
        if (line_start && c->rotate_size && j->size > 0 && j->size + (upto - j->done) > c->rotate_size) {
            rc = s_rotate(j);
            if (rc != EW_OK)
                break;
        }
        if (line_start && !per_line) {
            if (!c->rotate_size)
                upto = j->len;
            while (upto < j->len) {
                size_t next = s_line_end(j, upto);
                if (j->size + (next - j->done) > c->rotate_size)
                    break;
                upto = next;
            }
        }
        rc = s_write(j, upto);
        if (rc == EW_OK && c->fsync == S_SYNC_ALWAYS)
            rc = s_sync(j);
    }
    if (rc == EW_OK && c->fsync == S_SYNC_BATCH)
        rc = s_sync(j);
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
    return !j->pending_event && in->count == j->pending_count &&
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
    j->pending_event = false;
    j->pending_count = in->count;
    j->pending_first = in->count ? in->ts[0] : 0;
    j->pending_last = in->count ? in->ts[in->count - 1] : 0;
    return s_drain(j);
}

static bool s_same_event(const jsonl *j, const ew_event *ev)
{
    return j->pending_event && ev && ev->id == j->pending_id && ev->state == j->pending_state &&
           ev->node && j->pending_node && strcmp(ev->node, j->pending_node) == 0;
}

static int s_consume_event(void *self, const ew_event *ev)
{
    jsonl *j = self;
    if (j->pending) {
        /* As in consume: finish the line that failed instead of writing it twice. */
        int rc = s_drain(j);
        if (rc != EW_OK || s_same_event(j, ev))
            return rc;
    }
    char err[512];
    size_t n = 0;
    char *line = ewp_json_event(ev, "", &n, err, sizeof err);
    if (!line) {
        j->host->set_error(j->node, "cannot write the event: %s", err);
        return EW_ERR;
    }
    char *node = strdup(ev->node);
    if (!node || !s_reserve(j, n + 1)) {
        free(node);
        free(line);
        j->host->set_error(j->node, "out of memory writing event %llu of node %s",
                           (unsigned long long)ev->id, ev->node);
        return EW_ERR;
    }
    memcpy(j->buf + j->len, line, n);
    j->len += n;
    j->buf[j->len++] = '\n';
    free(line);
    free(j->pending_node);
    j->pending_node = node;
    j->pending_event = true;
    j->pending_id = ev->id;
    j->pending_state = ev->state;
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
                                    "the last %s are lost; free space on its disk",
                           j->shown_path, j->len - j->done,
                           (unsigned long long)s_count_lines(j->buf + j->done, j->len - j->done),
                           j->pending_event ? "event" : "batch");
        return EW_ERR;
    }
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SINK,
    .name = "jsonl",
    .version = "1.2.0",
    .description = "Writes one JSON object per sample or alert event to standard output or a file",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(jsonl_config),
    .init = s_init,
    .consume = s_consume,
    .flush = s_flush,
    .destroy = s_destroy,
    .validate = s_validate,
    .consume_event = s_consume_event,
};

EW_PLUGIN_EXPORT(s_plugin)
