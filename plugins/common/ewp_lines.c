/* ewp_lines: parses one text record (a serial line, a ZeroMQ message) in csv,
 * kv or json form into a timestamp and channel values; shared by the serial
 * and zmq sources so both read the same formats the same way. */
#include "ewp_lines.h"

#include "ewp_time.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_delims[] = {',', ';', '\t', '|', ' '};
#define S_DELIM_SPACE 4

struct ewp_lines {
    ewp_lines_spec spec;
    size_t nch;
    const char **names;      /* the channels, nch */
    int *col_channel;        /* csv: channel of each column, or -1 (the timestamp: -2) */
    size_t *name_len;        /* kv: strlen of each channel name */
    char *buf;               /* NUL-terminated copy of the record being parsed */
    size_t bufcap;
    char **fields;           /* csv: field starts, ncolumns + 1 */
    json_tokener *tok;
};

static void s_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void s_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || !whylen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static bool s_has_ts(const ewp_lines_spec *spec)
{
    return spec->timestamp_field && spec->timestamp_field[0];
}

static int s_find(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

static int s_unique(const char *option, const char *const *names, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (s_find(names, i, names[i]) >= 0) {
            s_why(err, errlen, "option %s: \"%s\" is listed twice", option, names[i]);
            return -1;
        }
    }
    return 0;
}

int ewp_lines_check(const ewp_lines_spec *spec, char *err, size_t errlen)
{
    const char *ts = s_has_ts(spec) ? spec->timestamp_field : NULL;
    if (s_unique("channels", spec->channels, spec->nchannels, err, errlen) < 0 ||
        s_unique("columns", spec->columns, spec->ncolumns, err, errlen) < 0)
        return -1;
    if (ts && s_find(spec->channels, spec->nchannels, ts) >= 0) {
        s_why(err, errlen,
              "option channels: \"%s\" is the timestamp_field and cannot also be a channel; remove "
              "it from channels or change timestamp_field",
              ts);
        return -1;
    }
    if (spec->format != EWP_LINES_CSV) {
        if (spec->nchannels == 0) {
            s_why(err, errlen,
                  "option channels is required with format = %s: list the names to emit, in order",
                  spec->format == EWP_LINES_KV ? "kv" : "json");
            return -1;
        }
        return 0;
    }
    if (spec->ncolumns == 0) {
        s_why(err, errlen,
              "option columns is required with format = csv: name every field of a line, in "
              "order (e.g. columns = time, temp, pressure)");
        return -1;
    }
    if (ts && s_find(spec->columns, spec->ncolumns, ts) < 0) {
        s_why(err, errlen,
              "option timestamp_field: \"%s\" is not one of the columns; add it to columns or "
              "leave timestamp_field empty",
              ts);
        return -1;
    }
    for (size_t i = 0; i < spec->nchannels; i++) {
        if (s_find(spec->columns, spec->ncolumns, spec->channels[i]) < 0) {
            s_why(err, errlen, "option channels: \"%s\" is not one of the columns; add it to columns",
                  spec->channels[i]);
            return -1;
        }
    }
    if (spec->nchannels == 0 && spec->ncolumns == (ts ? 1u : 0u)) {
        s_why(err, errlen, "option columns: the only column is the timestamp: name at least one "
                           "value column");
        return -1;
    }
    return 0;
}

void ewp_lines_free(ewp_lines **pp)
{
    if (!pp || !*pp)
        return;
    ewp_lines *p = *pp;
    free(p->names);
    free(p->col_channel);
    free(p->name_len);
    free(p->buf);
    free(p->fields);
    if (p->tok)
        json_tokener_free(p->tok);
    free(p);
    *pp = NULL;
}

ewp_lines *ewp_lines_new(const ewp_lines_spec *spec)
{
    ewp_lines *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->spec = *spec;
    const char *ts = s_has_ts(spec) ? spec->timestamp_field : NULL;
    size_t max = spec->nchannels ? spec->nchannels : spec->ncolumns;
    p->names = calloc(max ? max : 1, sizeof *p->names);
    p->name_len = calloc(max ? max : 1, sizeof *p->name_len);
    if (!p->names || !p->name_len)
        goto oom;
    size_t nch = 0;
    if (spec->nchannels) {
        for (size_t i = 0; i < spec->nchannels; i++)
            p->names[nch++] = spec->channels[i];
    } else {
        for (size_t i = 0; i < spec->ncolumns; i++)
            if (!ts || strcmp(spec->columns[i], ts) != 0)
                p->names[nch++] = spec->columns[i];
    }
    for (size_t i = 0; i < nch; i++)
        p->name_len[i] = strlen(p->names[i]);
    p->nch = nch;
    if (spec->format == EWP_LINES_CSV) {
        p->col_channel = calloc(spec->ncolumns ? spec->ncolumns : 1, sizeof *p->col_channel);
        p->fields = calloc(spec->ncolumns + 1, sizeof *p->fields);
        if (!p->col_channel || !p->fields)
            goto oom;
        for (size_t i = 0; i < spec->ncolumns; i++) {
            p->col_channel[i] = s_find(p->names, p->nch, spec->columns[i]);
            if (ts && strcmp(spec->columns[i], ts) == 0)
                p->col_channel[i] = -2;
        }
    }
    if (spec->format == EWP_LINES_JSON) {
        p->tok = json_tokener_new();
        if (!p->tok)
            goto oom;
    }
    return p;
oom:
    ewp_lines_free(&p);
    return NULL;
}

size_t ewp_lines_channels(const ewp_lines *p)
{
    return p->nch;
}

const char *const *ewp_lines_channel_names(const ewp_lines *p)
{
    return p->names;
}

void ewp_lines_excerpt(const char *rec, size_t len, size_t max, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (!outlen)
        return;
    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)rec[i];
        if (o + 8 >= outlen)
            break;
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (len > max && o + 4 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static bool s_space(char c)
{
    return c == ' ' || c == '\t';
}

/* A trimmed NUL-terminated field as a number: empty = NaN (missing). */
static int s_number(const char *text, double *out)
{
    if (*text == '\0') {
        *out = NAN;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0')
        return -1;
    *out = v; /* overflow gives +-HUGE_VAL = infinity, which the host accepts */
    return 0;
}

static const double s_unit_ns[] = {0, 1e9, 1e6, 1e3, 1};
static const int64_t s_unit_ns_int[] = {0, 1000000000LL, 1000000LL, 1000LL, 1};

static ewp_lines_ts_unit s_auto_unit(double magnitude)
{
    if (magnitude < 1e11)
        return EWP_TS_S;
    if (magnitude < 1e14)
        return EWP_TS_MS;
    if (magnitude < 1e17)
        return EWP_TS_US;
    return EWP_TS_NS;
}

static int s_ts_from_double(const ewp_lines *p, double v, int64_t *ns)
{
    if (!isfinite(v))
        return -1;
    ewp_lines_ts_unit u = p->spec.ts_unit == EWP_TS_AUTO ? s_auto_unit(fabs(v)) : p->spec.ts_unit;
    double t = v * s_unit_ns[u];
    if (!(t > -9.2e18 && t < 9.2e18))
        return -1;
    *ns = (int64_t)llround(t);
    return 0;
}

static int s_ts_from_int(const ewp_lines *p, long long v, int64_t *ns)
{
    ewp_lines_ts_unit u =
        p->spec.ts_unit == EWP_TS_AUTO ? s_auto_unit(fabs((double)v)) : p->spec.ts_unit;
    int64_t scale = s_unit_ns_int[u];
    if (v > INT64_MAX / scale || v < INT64_MIN / scale)
        return -1;
    *ns = (int64_t)v * scale;
    return 0;
}

/* A timestamp written as text: an integer or decimal number of epoch units,
 * or ISO-8601. */
static int s_ts_text(const ewp_lines *p, const char *text, int64_t *ns)
{
    size_t len = strlen(text);
    if (len == 0)
        return -1;
    char *end;
    errno = 0;
    long long iv = strtoll(text, &end, 10);
    if (end != text && *end == '\0')
        return errno ? -1 : s_ts_from_int(p, iv, ns);
    double dv;
    if (s_number(text, &dv) == 0)
        return s_ts_from_double(p, dv, ns);
    int64_t t;
    if (ewp_time_parse(text, len, &t) < 0)
        return -1;
    *ns = t;
    return 0;
}

#define S_TS_HINT "expected ISO-8601 (2026-11-26T16:35:03.250Z) or epoch seconds/milliseconds"

/* Splits buf into csv fields in place; returns the field count (all counted,
 * at most ncolumns + 1 stored). */
static size_t s_split_csv(ewp_lines *p, char *buf)
{
    size_t n = 0, max = p->spec.ncolumns + 1;
    char delim = s_delims[p->spec.delimiter];
    char *s = buf;
    if (p->spec.delimiter == S_DELIM_SPACE) {
        for (;;) {
            while (s_space(*s))
                s++;
            if (*s == '\0')
                return n;
            if (n < max)
                p->fields[n] = s;
            n++;
            while (*s && !s_space(*s))
                s++;
            if (*s == '\0')
                return n;
            *s++ = '\0';
        }
    }
    for (;;) {
        while (s_space(*s))
            s++;
        char *start = s;
        while (*s && *s != delim)
            s++;
        bool last = *s == '\0';
        char *e = s;
        while (e > start && s_space(e[-1]))
            e--;
        *e = '\0';
        /* A field in double quotes loses them (spreadsheets quote numbers too). */
        if (e - start >= 2 && *start == '"' && e[-1] == '"') {
            e[-1] = '\0';
            start++;
        }
        if (n < max)
            p->fields[n] = start;
        n++;
        if (last)
            return n;
        s++;
    }
}

static int s_parse_csv(ewp_lines *p, char *buf, int64_t *ts, bool *has_ts, double *values, char *why,
                       size_t whylen)
{
    size_t n = s_split_csv(p, buf);
    if (n != p->spec.ncolumns) {
        s_why(why, whylen, "%zu fields, expected %zu (columns)", n, p->spec.ncolumns);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int ch = p->col_channel[i];
        if (ch == -1)
            continue;
        if (ch == -2) {
            if (p->fields[i][0] == '\0')
                continue; /* no timestamp in this line: stamped on arrival */
            if (s_ts_text(p, p->fields[i], ts) < 0) {
                s_why(why, whylen, "column \"%s\": bad timestamp \"%.40s\" (%s)", p->spec.columns[i],
                      p->fields[i], S_TS_HINT);
                return -1;
            }
            *has_ts = true;
            continue;
        }
        if (s_number(p->fields[i], &values[ch]) < 0) {
            s_why(why, whylen, "column \"%s\": \"%.40s\" is not a number", p->spec.columns[i],
                  p->fields[i]);
            return -1;
        }
    }
    return 0;
}

static bool s_kv_sep(char c)
{
    return c == ' ' || c == '\t' || c == ',' || c == ';';
}

static int s_parse_kv(ewp_lines *p, char *buf, int64_t *ts, bool *has_ts, double *values, char *why,
                      size_t whylen)
{
    const char *tsname = s_has_ts(&p->spec) ? p->spec.timestamp_field : NULL;
    size_t found = 0;
    char *s = buf;
    for (;;) {
        while (s_kv_sep(*s))
            s++;
        if (*s == '\0')
            break;
        char *name = s;
        while (*s && *s != '=' && !s_kv_sep(*s))
            s++;
        if (*s != '=' || s == name) {
            s_why(why, whylen, "\"%.*s\" is not a name=value pair", (int)(s - name > 40 ? 40 : s - name),
                  name);
            if (s == name)
                s_why(why, whylen, "a pair without a name (\"=\")");
            return -1;
        }
        size_t nlen = (size_t)(s - name);
        char *value = ++s;
        while (*s && !s_kv_sep(*s))
            s++;
        bool last = *s == '\0';
        *s = '\0';
        if (tsname && strlen(tsname) == nlen && memcmp(name, tsname, nlen) == 0) {
            if (*value) {
                if (s_ts_text(p, value, ts) < 0) {
                    s_why(why, whylen, "%s: bad timestamp \"%.40s\" (%s)", tsname, value, S_TS_HINT);
                    return -1;
                }
                *has_ts = true;
            }
        } else {
            for (size_t c = 0; c < p->nch; c++) {
                if (p->name_len[c] == nlen && memcmp(p->names[c], name, nlen) == 0) {
                    if (s_number(value, &values[c]) < 0) {
                        s_why(why, whylen, "%s: \"%.40s\" is not a number", p->names[c], value);
                        return -1;
                    }
                    found++;
                    break;
                }
            }
        }
        if (last)
            break;
        s++;
    }
    if (!found) {
        s_why(why, whylen, "none of the channels is in the line");
        return -1;
    }
    return 0;
}

/* A JSON value as a channel value: numbers, null (missing), booleans (1/0) and
 * numeric strings. */
static int s_json_value(json_object *v, double *out)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        *out = NAN;
        return 0;
    case json_type_boolean:
        *out = json_object_get_boolean(v) ? 1.0 : 0.0;
        return 0;
    case json_type_int:
    case json_type_double:
        *out = json_object_get_double(v);
        return 0;
    case json_type_string:
        return s_number(json_object_get_string(v), out);
    default:
        return -1;
    }
}

static int s_json_ts(const ewp_lines *p, json_object *v, int64_t *ns)
{
    switch (json_object_get_type(v)) {
    case json_type_int:
        return s_ts_from_int(p, (long long)json_object_get_int64(v), ns);
    case json_type_double:
        return s_ts_from_double(p, json_object_get_double(v), ns);
    case json_type_string:
        return s_ts_text(p, json_object_get_string(v), ns);
    default:
        return -1;
    }
}

static int s_parse_json(ewp_lines *p, const char *buf, size_t len, int64_t *ts, bool *has_ts,
                        double *values, char *why, size_t whylen)
{
    json_tokener_reset(p->tok);
    json_object *obj = json_tokener_parse_ex(p->tok, buf, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(p->tok);
    if (!obj) {
        s_why(why, whylen, "not JSON: %s",
              jerr == json_tokener_continue ? "the object is incomplete"
                                            : json_tokener_error_desc(jerr));
        return -1;
    }
    int rc = -1;
    size_t end = json_tokener_get_parse_end(p->tok);
    while (end < len && s_space(buf[end]))
        end++;
    if (end != len) {
        s_why(why, whylen, "text after the JSON value");
        goto out;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        s_why(why, whylen, "not a JSON object");
        goto out;
    }
    size_t found = 0;
    for (size_t c = 0; c < p->nch; c++) {
        json_object *v;
        if (!json_object_object_get_ex(obj, p->names[c], &v))
            continue;
        if (s_json_value(v, &values[c]) < 0) {
            s_why(why, whylen, "\"%s\": %.40s is not a number", p->names[c],
                  json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
            goto out;
        }
        found++;
    }
    if (s_has_ts(&p->spec)) {
        json_object *v;
        if (json_object_object_get_ex(obj, p->spec.timestamp_field, &v) &&
            !json_object_is_type(v, json_type_null)) {
            if (s_json_ts(p, v, ts) < 0) {
                s_why(why, whylen, "\"%s\": bad timestamp %.40s (%s)", p->spec.timestamp_field,
                      json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), S_TS_HINT);
                goto out;
            }
            *has_ts = true;
        }
    }
    if (!found) {
        s_why(why, whylen, "none of the channels is in the object");
        goto out;
    }
    rc = 0;
out:
    json_object_put(obj);
    return rc;
}

int ewp_lines_parse(ewp_lines *p, const char *rec, size_t len, int64_t *ts, bool *has_ts,
                    double *values, char *why, size_t whylen)
{
    *has_ts = false;
    for (size_t c = 0; c < p->nch; c++)
        values[c] = NAN;
    while (len > 0 && (rec[len - 1] == '\r' || rec[len - 1] == '\n' || s_space(rec[len - 1])))
        len--;
    /* Binary garbage (line noise, a wrong baud rate) shows as control bytes. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)rec[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            s_why(why, whylen, "control byte 0x%02x at offset %zu (binary data or a wrong baud rate?)",
                  c, i);
            return -1;
        }
    }
    if (len == 0) {
        s_why(why, whylen, "empty");
        return -1;
    }
    if (p->spec.format == EWP_LINES_JSON)
        return s_parse_json(p, rec, len, ts, has_ts, values, why, whylen);
    if (len + 1 > p->bufcap) {
        size_t cap = len + 1 < 256 ? 256 : len + 1;
        char *b = realloc(p->buf, cap);
        if (!b) {
            s_why(why, whylen, "out of memory for a record of %zu bytes", len);
            return -1;
        }
        p->buf = b;
        p->bufcap = cap;
    }
    memcpy(p->buf, rec, len);
    p->buf[len] = '\0';
    if (p->spec.format == EWP_LINES_CSV)
        return s_parse_csv(p, p->buf, ts, has_ts, values, why, whylen);
    return s_parse_kv(p, p->buf, ts, has_ts, values, why, whylen);
}
