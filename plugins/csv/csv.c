/* csv: a source that replays a CSV file (header line, one sample per row),
 * as fast as possible, at a fixed rate, or at a multiple of real time.
 *
 *     [source.replay]
 *     plugin = csv
 *     path = /data/pump.csv
 *     columns = temp, pressure
 *     speed = 10
 *
 * Bad rows (and lines longer than max_line) are reported with their line
 * number, counted and skipped; the stream ends at the end of the file, and
 * fails when every row of the file was rejected. Only the end of the file is
 * an end: a read error or a line that does not fit in memory is an error.
 */
#include <edgewatch/plugin.h>

#include "csv_time.h"
#include "ewplug.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define S_NS_PER_S 1000000000.0
/* Rows emitted per produce call at most, so the host's loop stays responsive. */
#define S_CHUNK 1024
/* Falling further behind a paced schedule than this shifts the schedule. */
#define S_MAX_LAG_NS 1000000000LL
/* Longest excerpt of a bad cell quoted in a log line. */
#define S_SHOWN 40
/* Bytes read from the file at a time. */
#define S_READ_BLOCK 65536

/* Returns of s_read_line besides a length. */
enum { S_LINE_EOF = -1, S_LINE_ERR = -2, S_LINE_LONG = -3 };

enum s_on_long { S_LONG_SKIP, S_LONG_STOP };

/* How timestamps are read: timestamp_format's named values, else a strptime format. */
enum s_ts_mode { S_TS_AUTO, S_TS_ISO, S_TS_EPOCH, S_TS_FORMAT };

enum s_delimiter { S_DELIM_AUTO, S_DELIM_COMMA, S_DELIM_SEMICOLON, S_DELIM_TAB, S_DELIM_PIPE };
static const char s_delim_chars[] = {0, ',', ';', '\t', '|'};

typedef struct csv_config {
    const char *path;
    const char *timestamp_column;
    ew_list columns;
    int delimiter;
    double rate;
    double speed;
    uint64_t max_line;
    int on_long_line;
    const char *timestamp_format;
} csv_config;

typedef struct csv {
    const ew_host *host;
    ew_node *node;
    const csv_config *cfg;
    FILE *fp;
    char *line;           /* the current line, NUL-terminated, at most max_line bytes */
    size_t linecap;
    size_t linelen;
    size_t nul_at;        /* offset + 1 of the first NUL byte in the line, 0 = none */
    char *rbuf;           /* S_READ_BLOCK bytes read ahead; [rpos, rlen) not consumed yet */
    size_t rpos, rlen;
    unsigned long long lineno; /* line number of the line in `line` */
    char delim;
    size_t nfields;       /* fields per row, from the header */
    char **names;         /* header names, nfields (copies) */
    /* Name index, so that finding a column and spotting a repeated name take
     * linear time in the number of columns: open addressing over `slots`
     * (a power of two, at least twice nfields) of field numbers, -1 = empty. */
    uint32_t *hashes;     /* hash of each name */
    int *slots;
    size_t nslots;
    int *twin;            /* another field with the same name, or -1 */
    char **fields;        /* fields of the current row, nfields + 1 slots */
    int ts_field;         /* field holding the timestamp, or -1 */
    size_t nch;
    size_t *col_field;    /* field of each channel */
    bool *chosen;         /* per field: it is a channel */
    double *values;       /* the current row's values */
    int64_t ts;           /* the current row's timestamp (when ts_field >= 0) */
    int ts_mode;          /* enum s_ts_mode */
    int64_t epoch_unit;   /* ns per unit of epoch timestamps; 0 = not known yet (auto) */
    bool have_row;        /* values/ts hold a parsed row not emitted yet */
    bool pending_line;    /* `line` holds a data line read in init, not parsed yet */
    bool eof;
    unsigned long long emitted;
    unsigned long long bad_rows;
    unsigned long long first_bad_line;
    char first_bad[256];  /* why the first bad row was rejected */
    ew_counter *bad_counter;
    /* Pacing (rate or speed): due times are relative to base_mono, plus `delay`
     * accumulated whenever the source fell more than S_MAX_LAG_NS behind. */
    bool started;
    int64_t base_mono;
    int64_t first_ts;
    int64_t latest_ts;    /* largest timestamp so far: rows going back in time are due at once */
    int64_t delay;
    unsigned long long lag_resets;
} csv;

static const ew_option s_options[] = {
    EW_OPTION_REQUIRED("path", EW_OPT_STRING, csv_config, path,
                       "CSV file to replay; its first line names the columns."),
    EW_OPTION("timestamp_column", EW_OPT_STRING, "timestamp", csv_config, timestamp_column,
              "Column holding UTC timestamps; empty = stamp rows with the time they are read."),
    EW_OPTION("columns", EW_OPT_LIST, NULL, csv_config, columns,
              "Columns to emit as channels; default: every numeric column but the timestamp."),
    EW_OPTION_ENUM("delimiter", "auto", "auto|comma|semicolon|tab|pipe", csv_config, delimiter,
                   "Field separator; auto picks the most frequent of comma, semicolon, tab, "
                   "pipe in the header."),
    EW_OPTION_RANGE("rate", EW_OPT_DOUBLE, "0", 0, 1e9, csv_config, rate,
                    "Rows per second; 0 = as fast as downstream accepts (unless speed is set)."),
    EW_OPTION_RANGE("speed", EW_OPT_DOUBLE, "0", 0, 1e6, csv_config, speed,
                    "Replay at this multiple of real time, following the timestamps; 0 = off."),
    EW_OPTION_RANGE("max_line", EW_OPT_SIZE, "1MiB", 16, 1099511627776.0, csv_config, max_line,
                    "Longest line read, in bytes without its LF; a longer line is reported with "
                    "its number and handled per on_long_line."),
    EW_OPTION_ENUM("on_long_line", "skip", "skip|stop", csv_config, on_long_line,
                   "A line longer than max_line: skip = count it as a bad row and go on, stop = "
                   "stop the source with an error."),
    EW_OPTION("timestamp_format", EW_OPT_STRING, "auto", csv_config, timestamp_format,
              "How timestamps are written: auto (ISO-8601, or epoch numbers with the unit told "
              "by the first one's size), iso8601, epoch_s, epoch_ms, epoch_us, epoch_ns, or a "
              "strptime format (%d/%m/%Y %H:%M:%S; %f = fraction, %z = offset; UTC otherwise)."),
    EW_OPTION_END,
};

static void s_bad_row(csv *c, const char *fmt, ...) EW_PRINTF(2, 3);

/* A line longer than max_line (just read): a bad row, or the end of the source
 * with an error, per on_long_line. */
static int s_long_line(csv *c)
{
    if (c->cfg->on_long_line == S_LONG_STOP) {
        c->host->set_error(c->node,
                           "%s:%llu: line is longer than max_line = %llu bytes; stopping "
                           "(on_long_line = stop): raise max_line, or set on_long_line = skip",
                           c->cfg->path, c->lineno, (unsigned long long)c->cfg->max_line);
        return EW_ERR;
    }
    s_bad_row(c, "line is longer than max_line = %llu bytes (raise max_line to read it)",
              (unsigned long long)c->cfg->max_line);
    return EW_OK;
}

static void s_destroy(void *self)
{
    csv *c = self;
    if (!c)
        return;
    if (c->fp)
        fclose(c->fp);
    free(c->line);
    free(c->rbuf);
    if (c->names)
        for (size_t i = 0; i < c->nfields; i++)
            free(c->names[i]);
    free(c->names);
    free(c->hashes);
    free(c->slots);
    free(c->twin);
    free(c->fields);
    free(c->col_field);
    free(c->chosen);
    free(c->values);
    free(c);
}

/* Makes room in c->line for `need` bytes and a NUL. */
static int s_grow(csv *c, size_t need)
{
    if (need < c->linecap)
        return 0;
    size_t cap = c->linecap ? c->linecap : 256;
    while (cap <= need)
        cap *= 2;
    if (cap > c->cfg->max_line + 1)
        cap = (size_t)c->cfg->max_line + 1;
    char *line = realloc(c->line, cap);
    if (!line)
        return -1;
    c->line = line;
    c->linecap = cap;
    return 0;
}

/* Reads the next line into c->line without its line ending. Returns its
 * length; S_LINE_EOF at the end of the file; S_LINE_LONG for a line longer
 * than max_line (read to its end and counted, not kept); S_LINE_ERR on a read
 * error or when the line does not fit in memory (message set). The buffer
 * never grows past max_line, so one bad line cannot exhaust memory. */
static ssize_t s_read_line(csv *c)
{
    const size_t max = (size_t)c->cfg->max_line;
    size_t len = 0;
    bool too_long = false, any = false;
    c->nul_at = 0;
    for (;;) {
        if (c->rpos == c->rlen) {
            if (!c->rbuf && !(c->rbuf = malloc(S_READ_BLOCK))) {
                c->host->set_error(c->node, "%s:%llu: out of memory", c->cfg->path,
                                   c->lineno + 1);
                return S_LINE_ERR;
            }
            errno = 0;
            c->rpos = 0;
            c->rlen = fread(c->rbuf, 1, S_READ_BLOCK, c->fp);
            if (c->rlen == 0) {
                if (ferror(c->fp)) {
                    c->host->set_error(c->node, "reading %s failed after line %llu: %s",
                                       c->cfg->path, c->lineno, strerror(errno ? errno : EIO));
                    return S_LINE_ERR;
                }
                if (!any)
                    return S_LINE_EOF;
                break; /* a last line without LF */
            }
        }
        any = true;
        char *start = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        char *nl = memchr(start, '\n', avail);
        size_t seg = nl ? (size_t)(nl - start) : avail;
        c->rpos += seg + (nl ? 1 : 0);
        if (!too_long && seg > max - len)
            too_long = true;
        if (!too_long && seg) {
            if (s_grow(c, len + seg) < 0) {
                c->host->set_error(c->node,
                                   "%s:%llu: out of memory holding a line of more than %zu "
                                   "bytes; lower max_line (now %zu) or give the process more "
                                   "memory",
                                   c->cfg->path, c->lineno + 1, len, max);
                return S_LINE_ERR;
            }
            memcpy(c->line + len, start, seg);
            if (!c->nul_at) {
                const char *z = memchr(start, '\0', seg);
                if (z)
                    c->nul_at = len + (size_t)(z - start) + 1;
            }
            len += seg;
        }
        if (nl)
            break;
    }
    c->lineno++;
    if (too_long)
        return S_LINE_LONG;
    if (s_grow(c, len) < 0) { /* an empty first line: no buffer yet */
        c->host->set_error(c->node, "%s:%llu: out of memory", c->cfg->path, c->lineno);
        return S_LINE_ERR;
    }
    while (len > 0 && c->line[len - 1] == '\r')
        len--;
    c->line[len] = '\0';
    c->linelen = len;
    return (ssize_t)len;
}

static bool s_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return false;
    return true;
}

/* Reads lines until a non-blank one (blank lines are not rows). Same returns as s_read_line. */
static ssize_t s_read_nonblank(csv *c)
{
    for (;;) {
        ssize_t n = s_read_line(c);
        if (n < 0 || c->nul_at || !s_blank(c->line))
            return n;
    }
}

static bool s_is_space(char ch, char delim)
{
    return ch == ' ' || (ch == '\t' && delim != '\t');
}

/* Splits `line` in place into fields: quoted fields lose their quotes and
 * doubled quotes become one; unquoted fields are trimmed. Stores at most `max`
 * field pointers but counts them all. Returns the count, or -1 with *why. */
static long s_split(char *line, char delim, char **fields, size_t max, const char **why)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        while (s_is_space(*p, delim))
            p++;
        char *start, *out;
        if (*p == '"') {
            start = out = ++p;
            for (;;) {
                if (*p == '\0') {
                    *why = "unterminated quoted field (a quoted field cannot span lines)";
                    return -1;
                }
                if (*p == '"') {
                    if (p[1] == '"') {
                        *out++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *out++ = *p++;
            }
            while (s_is_space(*p, delim))
                p++;
            if (*p != delim && *p != '\0') {
                *why = "text after the closing quote of a quoted field";
                return -1;
            }
        } else {
            start = p;
            while (*p != delim && *p != '\0')
                p++;
            out = p;
            while (out > start && s_is_space(out[-1], delim))
                out--;
        }
        bool last = *p == '\0';
        *out = '\0'; /* may overwrite the delimiter at p: `last` was read first */
        if (fields && n < max) /* fields is NULL when the caller only counts */
            fields[n] = start;
        n++;
        if (last)
            return (long)n;
        p++;
    }
}

/* The delimiter that occurs most often outside quotes in the header line;
 * ties go to the earlier of , ; tab |, and a single-column header to comma. */
static char s_detect_delimiter(const char *header)
{
    size_t counts[4] = {0};
    const char cands[4] = {',', ';', '\t', '|'};
    bool quoted = false;
    for (const char *p = header; *p; p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (!quoted)
            for (int i = 0; i < 4; i++)
                counts[i] += *p == cands[i];
    }
    int best = 0;
    for (int i = 1; i < 4; i++)
        if (counts[i] > counts[best])
            best = i;
    return cands[best];
}

/* Parses a numeric cell: empty = NaN (a missing value); anything strtod does
 * not consume entirely is an error. */
static int s_parse_number(const char *text, double *out)
{
    if (*text == '\0') {
        *out = NAN;
        return 0;
    }
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* "a, b, c" into out, for messages. */
static void s_join_names(const csv *c, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < c->nfields && used + 1 < outlen; i++) {
        int n = snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", c->names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* FNV-1a: names are short, and only need spreading over the slots. */
static uint32_t s_hash(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* The slot holding a field named `name` (hash h), or the empty slot where it would go. */
static size_t s_slot(const csv *c, const char *name, uint32_t h)
{
    size_t mask = c->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        int f = c->slots[i];
        if (f < 0 || (c->hashes[f] == h && strcmp(c->names[f], name) == 0))
            return i;
    }
}

/* Indexes the header names; a repeated name links the fields as twins. */
static int s_index_names(csv *c)
{
    c->nslots = 16;
    while (c->nslots < 2 * c->nfields)
        c->nslots *= 2;
    c->slots = malloc(c->nslots * sizeof *c->slots);
    c->hashes = calloc(c->nfields ? c->nfields : 1, sizeof *c->hashes);
    c->twin = malloc((c->nfields ? c->nfields : 1) * sizeof *c->twin);
    if (!c->slots || !c->hashes || !c->twin)
        return -1;
    for (size_t i = 0; i < c->nslots; i++)
        c->slots[i] = -1;
    for (size_t f = 0; f < c->nfields; f++) {
        c->hashes[f] = s_hash(c->names[f]);
        c->twin[f] = -1;
        size_t i = s_slot(c, c->names[f], c->hashes[f]);
        int first = c->slots[i];
        if (first < 0) {
            c->slots[i] = (int)f;
        } else {
            c->twin[f] = first;
            if (c->twin[first] < 0)
                c->twin[first] = (int)f;
        }
    }
    return 0;
}

static int s_find_field(const csv *c, const char *name)
{
    return c->slots[s_slot(c, name, s_hash(name))];
}

/* A name that appears twice in the header is ambiguous only if it is used. */
static int s_check_unique(csv *c, size_t field)
{
    int other = c->twin[field];
    if (other < 0)
        return EW_OK;
    size_t i = (size_t)other;
    c->host->set_error(c->node,
                       "column \"%s\" appears twice in the header of %s (fields %zu and %zu): "
                       "rename one of them",
                       c->names[field], c->cfg->path, (i < field ? i : field) + 1,
                       (i < field ? field : i) + 1);
    return EW_EINVAL;
}

/* Length of the valid UTF-8 prefix of s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF); strlen(s) when all of it is valid. */
static size_t s_utf8_valid_prefix(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (p[i]) {
        unsigned char b = p[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (b < 0x80)
            n = 1;
        else if (b >= 0xC2 && b <= 0xDF)
            n = 2;
        else if (b >= 0xE0 && b <= 0xEF) {
            n = 3;
            if (b == 0xE0)
                lo = 0xA0;
            else if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            n = 4;
            if (b == 0xF0)
                lo = 0x90;
            else if (b == 0xF4)
                hi = 0x8F;
        } else
            return i;
        for (size_t k = 1; k < n; k++) {
            unsigned cb = p[i + k];
            if (k == 1 ? (cb < lo || cb > hi) : (cb < 0x80 || cb > 0xBF))
                return i;
        }
        i += n;
    }
    return i;
}

static int s_read_header(csv *c)
{
    ssize_t n = s_read_nonblank(c);
    if (n == S_LINE_ERR)
        return EW_ERR;
    if (n == S_LINE_EOF) {
        c->host->set_error(c->node, "%s is empty: expected a header line naming the columns",
                           c->cfg->path);
        return EW_EINVAL;
    }
    if (n == S_LINE_LONG) {
        c->host->set_error(c->node,
                           "%s:%llu: the header line is longer than max_line = %llu bytes; raise "
                           "max_line",
                           c->cfg->path, c->lineno, (unsigned long long)c->cfg->max_line);
        return EW_EINVAL;
    }
    if (c->nul_at) {
        c->host->set_error(c->node,
                           "%s:%llu: the header line has a NUL byte at byte %zu: is this a text "
                           "file (UTF-16 files must be converted to UTF-8)?",
                           c->cfg->path, c->lineno, c->nul_at);
        return EW_EINVAL;
    }
    char *header = c->line;
    /* Spreadsheet exports often start with a UTF-8 byte order mark. */
    if (strncmp(header, "\xEF\xBB\xBF", 3) == 0)
        header += 3;
    c->delim = c->cfg->delimiter == S_DELIM_AUTO ? s_detect_delimiter(header)
                                                 : s_delim_chars[c->cfg->delimiter];
    /* Count on a copy first: splitting rewrites the line in place. */
    char *copy = strdup(header);
    if (!copy)
        goto oom;
    const char *why = NULL;
    long count = s_split(copy, c->delim, NULL, 0, &why);
    free(copy);
    if (count < 0) {
        c->host->set_error(c->node, "%s:%llu: cannot read the header line: %s", c->cfg->path,
                           c->lineno, why);
        return EW_EINVAL;
    }
    if (count > INT_MAX / 4) { /* fields are numbered with int */
        c->host->set_error(c->node, "%s:%llu: the header has %ld fields; at most %d are read",
                           c->cfg->path, c->lineno, count, INT_MAX / 4);
        return EW_EINVAL;
    }
    c->nfields = (size_t)count;
    c->names = calloc(c->nfields, sizeof *c->names);
    c->fields = calloc(c->nfields + 1, sizeof *c->fields);
    if (!c->names || !c->fields)
        goto oom;
    s_split(header, c->delim, c->fields, c->nfields + 1, &why);
    for (size_t i = 0; i < c->nfields; i++) {
        char unnamed[32];
        /* Unnamed columns get a name users can write in `columns`. */
        snprintf(unnamed, sizeof unnamed, "column_%zu", i + 1);
        c->names[i] = strdup(*c->fields[i] ? c->fields[i] : unnamed);
        if (!c->names[i])
            goto oom;
        /* Names become channel names, which go into JSON and metrics as text. */
        size_t valid = s_utf8_valid_prefix(c->names[i]);
        if (c->names[i][valid]) {
            c->host->set_error(c->node,
                               "%s:%llu: the name of column %zu is not valid UTF-8 (byte 0x%02X "
                               "after \"%.*s\"); save the file as UTF-8",
                               c->cfg->path, c->lineno, i + 1,
                               (unsigned)(unsigned char)c->names[i][valid], (int)valid,
                               c->names[i]);
            return EW_EINVAL;
        }
    }
    if (s_index_names(c) < 0)
        goto oom;
    return EW_OK;
oom:
    c->host->set_error(c->node, "out of memory reading the header of %s", c->cfg->path);
    return EW_ERR;
}

static int s_add_channel(csv *c, size_t field)
{
    int rc = s_check_unique(c, field);
    if (rc != EW_OK)
        return rc;
    c->col_field[c->nch++] = field;
    c->chosen[field] = true;
    return EW_OK;
}

/* Channels named in `columns`: each must exist and not be the timestamp. */
static int s_select_named(csv *c)
{
    const ew_list *cols = &c->cfg->columns;
    char avail[1024];
    for (size_t i = 0; i < cols->count; i++) {
        int f = s_find_field(c, cols->items[i]);
        if (f < 0) {
            s_join_names(c, avail, sizeof avail);
            c->host->set_error(c->node,
                               "option columns: no column \"%s\" in the header of %s; available "
                               "columns: %s",
                               cols->items[i], c->cfg->path, avail);
            return EW_EINVAL;
        }
        if (f == c->ts_field) {
            c->host->set_error(c->node,
                               "option columns: \"%s\" is the timestamp column and cannot also be "
                               "a channel; remove it from columns or change timestamp_column",
                               cols->items[i]);
            return EW_EINVAL;
        }
        /* The channels so far are distinct fields: a field met again is a name listed twice. */
        if (c->chosen[f]) {
            c->host->set_error(c->node, "option columns: \"%s\" is listed twice",
                               cols->items[i]);
            return EW_EINVAL;
        }
        int rc = s_add_channel(c, (size_t)f);
        if (rc != EW_OK)
            return rc;
    }
    return EW_OK;
}

/* Default channels: every column but the timestamp whose cell in the first
 * data row is a number or empty (a missing reading). The row is kept in
 * c->line for produce. */
static int s_select_numeric(csv *c)
{
    ssize_t n;
    while ((n = s_read_nonblank(c)) == S_LINE_LONG)
        if (s_long_line(c) != EW_OK)
            return EW_EINVAL;
    if (n == S_LINE_ERR)
        return EW_ERR;
    char *probe = NULL;
    long count = 0;
    if (n >= 0) {
        c->pending_line = true;
        probe = strdup(c->line);
        if (!probe) {
            c->host->set_error(c->node, "out of memory reading %s", c->cfg->path);
            return EW_ERR;
        }
        const char *why;
        count = s_split(probe, c->delim, c->fields, c->nfields + 1, &why);
    }
    char skipped[512] = "";
    size_t used = 0;
    int rc = EW_OK;
    for (size_t f = 0; f < c->nfields && rc == EW_OK; f++) {
        if ((int)f == c->ts_field)
            continue;
        double v;
        /* A column the first row lacks (a bad row) cannot be judged: keep it. */
        if (count <= 0 || f >= (size_t)count || s_parse_number(c->fields[f], &v) == 0) {
            rc = s_add_channel(c, f);
        } else if (used + 1 < sizeof skipped) {
            int k = snprintf(skipped + used, sizeof skipped - used, "%s%s", used ? ", " : "",
                             c->names[f]);
            if (k > 0)
                used += (size_t)k;
        }
    }
    free(probe);
    if (rc != EW_OK)
        return rc;
    if (used)
        c->host->log(c->node, EW_LOG_INFO,
                     "%s: columns %s are not numeric in line %llu and are not emitted (name them in "
                     "`columns` to force them)",
                     c->cfg->path, skipped, c->lineno);
    if (c->nch == 0) {
        char avail[1024];
        s_join_names(c, avail, sizeof avail);
        c->host->set_error(c->node,
                           "%s has no numeric column besides the timestamp (columns: %s); name the "
                           "columns to read with the columns option",
                           c->cfg->path, avail);
        return EW_EINVAL;
    }
    return EW_OK;
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const csv_config *cfg = config;
    if (cfg->rate > 0 && cfg->speed > 0) {
        host->set_error(node, "options rate = %g and speed = %g are both set: set only one (rate "
                              "paces rows evenly, speed follows the timestamps)",
                        cfg->rate, cfg->speed);
        return EW_EINVAL;
    }
    if (cfg->speed > 0 && !*cfg->timestamp_column) {
        host->set_error(node, "option speed = %g replays by the file's timestamps, but "
                              "timestamp_column is empty: name the timestamp column or use rate",
                        cfg->speed);
        return EW_EINVAL;
    }
    static const char *const ts_names[] = {"epoch_s", "epoch_ms", "epoch_us", "epoch_ns"};
    static const int64_t ts_units[] = {1000000000, 1000000, 1000, 1};
    int ts_mode = S_TS_FORMAT;
    int64_t epoch_unit = 0;
    if (strcmp(cfg->timestamp_format, "auto") == 0)
        ts_mode = S_TS_AUTO;
    else if (strcmp(cfg->timestamp_format, "iso8601") == 0)
        ts_mode = S_TS_ISO;
    for (int i = 0; i < 4; i++) {
        if (strcmp(cfg->timestamp_format, ts_names[i]) == 0) {
            ts_mode = S_TS_EPOCH;
            epoch_unit = ts_units[i];
        }
    }
    if (ts_mode == S_TS_FORMAT) {
        const char *why = csv_time_format_check(cfg->timestamp_format);
        if (why) {
            host->set_error(node, "option timestamp_format = \"%s\": %s", cfg->timestamp_format,
                            why);
            return EW_EINVAL;
        }
    }
    csv *c = calloc(1, sizeof *c);
    if (!c) {
        host->set_error(node, "out of memory allocating the csv source");
        return EW_ERR;
    }
    c->host = host;
    c->node = node;
    c->cfg = cfg;
    c->ts_field = -1;
    c->ts_mode = ts_mode;
    c->epoch_unit = epoch_unit;
    c->bad_counter =
        host->counter(node, "csv_bad_rows", "CSV rows skipped because they were malformed");
    int rc = EW_EINVAL;

    c->fp = fopen(cfg->path, "re");
    if (!c->fp) {
        host->set_error(node, "cannot open CSV file %s: %s; check the path option and the file's "
                              "permissions",
                        cfg->path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fileno(c->fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        host->set_error(node, "cannot read CSV file %s: it is a folder; set path to a file",
                        cfg->path);
        goto fail;
    }
    rc = s_read_header(c);
    if (rc != EW_OK)
        goto fail;
    if (*cfg->timestamp_column) {
        c->ts_field = s_find_field(c, cfg->timestamp_column);
        if (c->ts_field < 0) {
            char avail[1024];
            s_join_names(c, avail, sizeof avail);
            host->set_error(node,
                            "option timestamp_column: no column \"%s\" in the header of %s; "
                            "available columns: %s (set timestamp_column to one of them, or to an "
                            "empty value to stamp rows with the time they are read)",
                            cfg->timestamp_column, cfg->path, avail);
            rc = EW_EINVAL;
            goto fail;
        }
        rc = s_check_unique(c, (size_t)c->ts_field);
        if (rc != EW_OK)
            goto fail;
    }
    c->col_field = calloc(c->nfields, sizeof *c->col_field);
    c->chosen = calloc(c->nfields ? c->nfields : 1, sizeof *c->chosen);
    c->values = calloc(c->nfields ? c->nfields : 1, sizeof *c->values);
    if (!c->col_field || !c->chosen || !c->values) {
        host->set_error(node, "out of memory reading %s", cfg->path);
        rc = EW_ERR;
        goto fail;
    }
    rc = cfg->columns.count ? s_select_named(c) : s_select_numeric(c);
    if (rc != EW_OK)
        goto fail;

    const char **chnames = calloc(c->nch, sizeof *chnames);
    if (!chnames) {
        host->set_error(node, "out of memory reading %s", cfg->path);
        rc = EW_ERR;
        goto fail;
    }
    for (size_t i = 0; i < c->nch; i++)
        chnames[i] = c->names[c->col_field[i]];
    rc = host->set_channels(node, c->nch, chnames);
    free(chnames);
    if (rc != EW_OK)
        goto fail;
    *self = c;
    return EW_OK;
fail:
    s_destroy(c);
    return rc;
}

/* Logs one bad row, rate-limited, and counts it. */
static void s_bad_row(csv *c, const char *fmt, ...)
{
    c->bad_rows++;
    if (c->bad_counter)
        c->host->counter_add(c->bad_counter, 1);
    bool first = c->bad_rows == 1;
    if (!first && !ewp_should_report(c->bad_rows))
        return;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (first) { /* for the message when no row at all is good */
        snprintf(c->first_bad, sizeof c->first_bad, "%s", why);
        c->first_bad_line = c->lineno;
    }
    if (!ewp_should_report(c->bad_rows))
        return;
    c->host->log(c->node, EW_LOG_WARN, "%s:%llu: %s; row skipped (%llu bad rows so far)",
                 c->cfg->path, c->lineno, why, c->bad_rows);
}

/* Parses a timestamp cell per timestamp_format. Returns false (after
 * reporting the row) when it is not one. */
static bool s_parse_ts(csv *c, const char *t)
{
    const char *fmt = c->cfg->timestamp_format;
    switch (c->ts_mode) {
    case S_TS_ISO:
        if (ewp_time_parse(t, strlen(t), &c->ts) == 0)
            return true;
        s_bad_row(c,
                  "timestamp \"%.*s\" is not ISO-8601 (2026-11-26T16:35:03.5Z) or "
                  "YYYY-MM-DD HH:MM:SS",
                  S_SHOWN, t);
        return false;
    case S_TS_EPOCH:
        if (csv_time_epoch(t, c->epoch_unit, &c->ts) == 0)
            return true;
        s_bad_row(c, "timestamp \"%.*s\" is not a number of %s since 1970 (timestamp_format = %s)",
                  S_SHOWN, t, fmt + strlen("epoch_"), fmt);
        return false;
    case S_TS_FORMAT:
        if (csv_time_strptime(t, fmt, &c->ts) == 0)
            return true;
        s_bad_row(c, "timestamp \"%.*s\" does not match timestamp_format = \"%s\"", S_SHOWN, t,
                  fmt);
        return false;
    default: /* auto */
        if (ewp_time_parse(t, strlen(t), &c->ts) == 0)
            return true;
        int64_t unit;
        if (csv_time_epoch_guess(t, &unit)) {
            if (!c->epoch_unit) {
                /* One unit for the whole file, from the first epoch timestamp's size. */
                c->epoch_unit = unit;
                c->host->log(c->node, EW_LOG_INFO,
                             "%s:%llu: timestamps are epoch %s (from the size of \"%.*s\"); set "
                             "timestamp_format to say otherwise",
                             c->cfg->path, c->lineno,
                             unit == 1000000000 ? "seconds"
                             : unit == 1000000  ? "milliseconds"
                             : unit == 1000     ? "microseconds"
                                                : "nanoseconds",
                             S_SHOWN, t);
            }
            if (csv_time_epoch(t, c->epoch_unit, &c->ts) == 0)
                return true;
        }
        s_bad_row(c,
                  "timestamp \"%.*s\" is neither ISO-8601 (2026-11-26T16:35:03.5Z, YYYY-MM-DD "
                  "HH:MM:SS) nor an epoch number; set timestamp_format (a strptime format such as "
                  "%%d.%%m.%%Y %%H:%%M, or epoch_s, epoch_ms...)",
                  S_SHOWN, t);
        return false;
    }
}

/* Parses the row in c->line into c->ts / c->values. Returns false (after
 * reporting it) for a bad row. */
static bool s_parse_row(csv *c)
{
    if (c->nul_at) {
        s_bad_row(c, "NUL byte at byte %zu of the line", c->nul_at);
        return false;
    }
    const char *why = NULL;
    long count = s_split(c->line, c->delim, c->fields, c->nfields + 1, &why);
    if (count < 0) {
        s_bad_row(c, "%s", why);
        return false;
    }
    if ((size_t)count != c->nfields) {
        s_bad_row(c, "expected %zu fields as in the header, found %ld", c->nfields, count);
        return false;
    }
    if (c->ts_field >= 0 && !s_parse_ts(c, c->fields[c->ts_field]))
        return false;
    for (size_t i = 0; i < c->nch; i++) {
        const char *cell = c->fields[c->col_field[i]];
        if (s_parse_number(cell, &c->values[i]) < 0) {
            s_bad_row(c, "column \"%s\": \"%.*s\" is not a number", c->names[c->col_field[i]],
                      S_SHOWN, cell);
            return false;
        }
    }
    return true;
}

/* Reads rows until a good one is parsed. Returns 1 for a row, 0 at the end of
 * the file, EW_ERR on a read error. */
static int s_next_row(csv *c)
{
    for (;;) {
        if (c->pending_line) {
            c->pending_line = false;
        } else {
            ssize_t n = s_read_nonblank(c);
            if (n == S_LINE_ERR)
                return EW_ERR;
            if (n == S_LINE_EOF)
                return 0;
            if (n == S_LINE_LONG) {
                if (s_long_line(c) != EW_OK)
                    return EW_ERR;
                continue;
            }
        }
        if (s_parse_row(c))
            return 1;
    }
}

/* When the current row is due (CLOCK_MONOTONIC ns); 0 when unpaced. */
static int64_t s_due(csv *c)
{
    if (c->cfg->rate > 0)
        return c->base_mono + c->delay + (int64_t)((double)c->emitted * S_NS_PER_S / c->cfg->rate);
    if (c->cfg->speed > 0) {
        if (c->ts > c->latest_ts)
            c->latest_ts = c->ts;
        return c->base_mono + c->delay +
               (int64_t)((double)(c->latest_ts - c->first_ts) / c->cfg->speed);
    }
    return 0;
}

static int s_produce(void *self, int64_t *wake_at)
{
    csv *c = self;
    const ew_host *host = c->host;
    const bool paced = c->cfg->rate > 0 || c->cfg->speed > 0;
    *wake_at = 0;
    int64_t mono = paced ? host->monotonic(c->node) : 0;
    int64_t wall = paced ? host->now(c->node) : 0;
    for (int i = 0; i < S_CHUNK; i++) {
        if (!c->have_row) {
            if (c->eof)
                return EW_EOF;
            int rc = s_next_row(c);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                c->eof = true;
                if (c->emitted == 0 && c->bad_rows > 0) {
                    /* Nothing usable came out of a file full of rows: a wrong
                     * option or file, not a replay that finished. */
                    host->set_error(c->node,
                                    "%s: all %llu data rows were rejected, none emitted (the "
                                    "first at line %llu: %s); check the file and the options "
                                    "timestamp_format, timestamp_column, columns and delimiter",
                                    c->cfg->path, c->bad_rows, c->first_bad_line, c->first_bad);
                    return EW_ERR;
                }
                host->log(c->node, EW_LOG_INFO, "end of %s: %llu rows emitted, %llu bad rows skipped",
                          c->cfg->path, c->emitted, c->bad_rows);
                /* Samples emitted in this call go out first; EOF comes next call. */
                return i ? EW_OK : EW_EOF;
            }
            c->have_row = true;
        }
        int64_t ts = c->ts;
        if (paced) {
            if (!c->started) {
                c->started = true;
                c->base_mono = mono;
                c->first_ts = c->latest_ts = c->ts;
            }
            int64_t due = s_due(c);
            if (due > mono) {
                *wake_at = due;
                return EW_OK;
            }
            if (mono - due > S_MAX_LAG_NS) {
                /* Downstream is slower than the replay: shift the schedule rather
                 * than bursting to catch up. Nothing is dropped. */
                c->delay += mono - due;
                c->lag_resets++;
                if (ewp_should_report(c->lag_resets))
                    host->log(c->node, EW_LOG_WARN,
                              "replay of %s is %.2f s behind schedule at line %llu; continuing "
                              "from now (%llu times so far): lower rate/speed or speed up "
                              "downstream nodes",
                              c->cfg->path, (double)(mono - due) / S_NS_PER_S, c->lineno,
                              c->lag_resets);
                due = mono;
            }
            if (c->ts_field < 0)
                ts = wall - (mono - due);
        } else if (c->ts_field < 0) {
            ts = host->now(c->node);
        }
        int rc = host->emit(c->node, ts, c->values);
        if (rc != EW_OK)
            return rc;
        c->have_row = false;
        c->emitted++;
    }
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SOURCE,
    .name = "csv",
    .version = "1.0.0",
    .description = "Replays a CSV file: one sample per row, timestamps from a column",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(csv_config),
    .init = s_init,
    .produce = s_produce,
    .destroy = s_destroy,
};

EW_PLUGIN_EXPORT(s_plugin)
