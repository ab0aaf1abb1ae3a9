/* log: formats each event as one text or JSON line and writes it with a single write(2). */
#include "log.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* A whole line, newline included, never exceeds this: it equals PIPE_BUF on Linux,
 * so lines written by concurrent threads to a pipe never interleave. */
#define LOG_LINE_MAX 4096
/* Node names come from INI section names; a longer one is cut so that a hostile or
 * mistaken name cannot crowd out the message. */
#define LOG_NODE_MAX 128
/* Appended to a message that was cut, so a reader knows the line is incomplete. */
#define LOG_CUT_MARK "..."

logger log_default(void)
{
    logger lg = {.level = EW_LOG_INFO, .format = LOG_FORMAT_TEXT, .fd = 2};
    return lg;
}

int log_parse_level(const char *text, ew_log_level *out)
{
    static const struct {
        const char *name;
        ew_log_level level;
    } levels[] = {
        {"error", EW_LOG_ERROR},
        {"warn", EW_LOG_WARN},
        {"info", EW_LOG_INFO},
        {"debug", EW_LOG_DEBUG},
    };
    if (!text || !out)
        return -1;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        /* Case-insensitive because people write "INFO" as often as "info". */
        if (strcasecmp(text, levels[i].name) == 0) {
            *out = levels[i].level;
            return 0;
        }
    }
    return -1;
}

int log_parse_format(const char *text, log_format *out)
{
    if (!text || !out)
        return -1;
    if (strcasecmp(text, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcasecmp(text, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

const char *log_level_name(ew_log_level level)
{
    switch (level) {
    case EW_LOG_ERROR:
        return "error";
    case EW_LOG_WARN:
        return "warn";
    case EW_LOG_INFO:
        return "info";
    case EW_LOG_DEBUG:
        return "debug";
    }
    return "unknown";
}

/* Upper-case, padded to five columns so that text messages line up. */
static const char *s_level_tag(ew_log_level level)
{
    switch (level) {
    case EW_LOG_ERROR:
        return "ERROR";
    case EW_LOG_WARN:
        return "WARN ";
    case EW_LOG_INFO:
        return "INFO ";
    case EW_LOG_DEBUG:
        return "DEBUG";
    }
    return "?????";
}

/* Writes "2026-11-26T16:35:03.123Z" (24 characters) into buf. */
static void s_timestamp(char *buf, size_t len)
{
    struct timespec now;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || !gmtime_r(&now.tv_sec, &tm)) {
        snprintf(buf, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03uZ", (unsigned)(now.tv_nsec / 1000000) % 1000u);
}

/* Length of the longest prefix of s[0..len) not ending inside a UTF-8 sequence,
 * so that cutting a message never leaves half a character behind. */
static size_t s_utf8_cut(const char *s, size_t len)
{
    size_t i = len;
    /* Step back over at most three continuation bytes to the lead byte. */
    size_t back = 0;
    while (i > 0 && back < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0)
        return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need == 1)
        return len;
    /* The lead byte sits at i-1; the sequence is complete when it has `need` bytes. */
    return (len - (i - 1) >= need) ? len : i - 1;
}

/* Appends `src` to dst[*pos..cap) escaping control characters as \n, \r, \t or \xHH,
 * because a text line must stay one line whatever a device or plugin put in the
 * message. Stops (without splitting an escape) when the buffer is full. Returns
 * how many bytes of src were consumed. */
static size_t s_append_text_escaped(char *dst, size_t *pos, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    for (; src[i]; i++) {
        unsigned char c = (unsigned char)src[i];
        char esc[4];
        size_t n;
        if (c == '\n') {
            esc[0] = '\\', esc[1] = 'n', n = 2;
        } else if (c == '\r') {
            esc[0] = '\\', esc[1] = 'r', n = 2;
        } else if (c == '\t') {
            esc[0] = '\\', esc[1] = 't', n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\', esc[1] = 'x', esc[2] = hex[c >> 4], esc[3] = hex[c & 15], n = 4;
        } else {
            esc[0] = (char)c, n = 1;
        }
        if (*pos + n > cap)
            break;
        memcpy(dst + *pos, esc, n);
        *pos += n;
    }
    return i;
}

/* Writes the whole line, retrying after signals; a failure drops the line. */
static void s_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

static void s_write_text(const logger *lg, ew_log_level level, const char *ts, const char *node,
                         const char *msg)
{
    char line[LOG_LINE_MAX];
    size_t pos;
    int n;
    if (node)
        n = snprintf(line, sizeof line, "%s %s [%.*s] ", ts, s_level_tag(level), LOG_NODE_MAX,
                     node);
    else
        n = snprintf(line, sizeof line, "%s %s ", ts, s_level_tag(level));
    if (n < 0)
        return;
    pos = (size_t)n;
    /* Keep room for the cut mark and the newline. */
    size_t cap = sizeof line - 1 - (sizeof LOG_CUT_MARK - 1);
    size_t used = s_append_text_escaped(line, &pos, cap, msg);
    if (msg[used]) {
        /* The message did not fit: cut at a character boundary and say so. */
        size_t start = (size_t)n;
        pos = start + s_utf8_cut(line + start, pos - start);
        memcpy(line + pos, LOG_CUT_MARK, sizeof LOG_CUT_MARK - 1);
        pos += sizeof LOG_CUT_MARK - 1;
    }
    line[pos++] = '\n';
    s_write_all(lg->fd, line, pos);
}

/* Serialises one JSON object; returns its length, or 0 when json-c failed. The
 * result is copied into line (which has room for LOG_LINE_MAX bytes) when it fits. */
static size_t s_json_render(char *line, const char *ts, ew_log_level level, const char *node,
                            const char *msg, size_t msglen)
{
    size_t len = 0;
    json_object *obj = json_object_new_object();
    if (!obj)
        return 0;
    json_object_object_add(obj, "ts", json_object_new_string(ts));
    json_object_object_add(obj, "level", json_object_new_string(log_level_name(level)));
    if (node)
        json_object_object_add(obj, "node",
                               json_object_new_string_len(node, (int)strnlen(node, LOG_NODE_MAX)));
    json_object_object_add(obj, "msg", json_object_new_string_len(msg, (int)msglen));
    size_t outlen = 0;
    const char *text = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &outlen);
    if (text) {
        len = outlen;
        if (len + 1 <= LOG_LINE_MAX)
            memcpy(line, text, len);
    }
    json_object_put(obj);
    return len;
}

/* Copies src into dst (room for cap bytes plus a NUL) replacing every byte that is
 * not part of well-formed UTF-8 with U+FFFD: json-c passes such bytes through, and
 * one stray byte from a serial line would make the line unparsable for jq or Loki.
 * Returns the length written. */
static size_t s_utf8_sanitize(char *dst, size_t cap, const char *src)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    const unsigned char *s = (const unsigned char *)src;
    size_t out = 0;
    while (*s) {
        size_t n = 0;
        if (s[0] < 0x80)
            n = 1;
        else if (s[0] >= 0xC2 && s[0] <= 0xDF && (s[1] & 0xC0) == 0x80)
            n = 2;
        else if (s[0] >= 0xE0 && s[0] <= 0xEF && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
                 !(s[0] == 0xE0 && s[1] < 0xA0) &&
                 !(s[0] == 0xED && s[1] >= 0xA0)) /* overlong forms and surrogates */
            n = 3;
        else if (s[0] >= 0xF0 && s[0] <= 0xF4 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 &&
                 (s[3] & 0xC0) == 0x80 && !(s[0] == 0xF0 && s[1] < 0x90) &&
                 !(s[0] == 0xF4 && s[1] >= 0x90))
            n = 4;
        const char *piece = n ? (const char *)s : replacement;
        size_t piece_len = n ? n : sizeof replacement - 1;
        if (out + piece_len > cap)
            break;
        memcpy(dst + out, piece, piece_len);
        out += piece_len;
        s += n ? n : 1;
    }
    dst[out] = '\0';
    return out;
}

static void s_write_json(const logger *lg, ew_log_level level, const char *ts, const char *node,
                         const char *raw_msg)
{
    char line[LOG_LINE_MAX];
    char msg[LOG_LINE_MAX];
    char cut[LOG_LINE_MAX + sizeof LOG_CUT_MARK];
    size_t msglen = s_utf8_sanitize(msg, sizeof msg - 1, raw_msg);
    size_t len = s_json_render(line, ts, level, node, msg, msglen);
    if (len + 1 > LOG_LINE_MAX) {
        /* Escaping can grow a message up to six-fold, so search for the longest
         * prefix whose escaped line, cut mark included, still fits. Only overlong
         * lines pay for the dozen renders this takes. */
        size_t lo = 0, hi = msglen < LOG_LINE_MAX ? msglen : LOG_LINE_MAX;
        size_t best = SIZE_MAX;
        while (lo <= hi) {
            size_t mid = lo + (hi - lo) / 2;
            size_t keep = s_utf8_cut(msg, mid);
            memcpy(cut, msg, keep);
            memcpy(cut + keep, LOG_CUT_MARK, sizeof LOG_CUT_MARK - 1);
            size_t n = s_json_render(line, ts, level, node, cut, keep + sizeof LOG_CUT_MARK - 1);
            if (n > 0 && n + 1 <= LOG_LINE_MAX) {
                best = keep;
                lo = mid + 1;
            } else {
                if (mid == 0)
                    break;
                hi = mid - 1;
            }
        }
        if (best == SIZE_MAX)
            return; /* not even an empty message fits: drop the line */
        memcpy(cut, msg, best);
        memcpy(cut + best, LOG_CUT_MARK, sizeof LOG_CUT_MARK - 1);
        len = s_json_render(line, ts, level, node, cut, best + sizeof LOG_CUT_MARK - 1);
    }
    if (len == 0)
        return;
    line[len++] = '\n';
    s_write_all(lg->fd, line, len);
}

void log_vwrite(const logger *lg, ew_log_level level, const char *node, const char *fmt, va_list ap)
{
    if (!lg || !fmt || lg->fd < 0 || level > lg->level)
        return;
    /* Callers often log right after a failing call and then read errno. */
    int saved_errno = errno;
    char msg[LOG_LINE_MAX];
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    char ts[32];
    s_timestamp(ts, sizeof ts);
    if (lg->format == LOG_FORMAT_JSON)
        s_write_json(lg, level, ts, node, msg);
    else
        s_write_text(lg, level, ts, node, msg);
    errno = saved_errno;
}

void log_write(const logger *lg, ew_log_level level, const char *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lg, level, node, fmt, ap);
    va_end(ap);
}
