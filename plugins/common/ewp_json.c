/* ewp_json: renders samples and alert events as JSON objects for the jsonl, mqtt and zmq sinks. */
#include "ewp_json.h"

#include "ewp_fmt.h"
#include "ewp_time.h"

#include <json-c/json.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ewp_json_stream {
    const ew_schema *schema;
    const char *const *names;  /* to notice a different schema at the same address */
    size_t channels;
    char *origin;              /* the origin it was built for */
    char *head;                /* ,"node":"..." */
    char **keys;               /* "name": per channel, NULL for score and anomaly */
    size_t bound;
};

struct ewp_json {
    ewp_json_stream **streams; /* one per (schema, origin) seen; fan-in gives several */
    size_t count;
};

static void s_stream_free(ewp_json_stream *st)
{
    if (!st)
        return;
    if (st->keys)
        for (size_t i = 0; i < st->channels; i++)
            free(st->keys[i]);
    free(st->keys);
    free(st->head);
    free(st->origin);
    free(st);
}

ewp_json *ewp_json_new(void)
{
    return calloc(1, sizeof(ewp_json));
}

void ewp_json_free(ewp_json **j)
{
    if (!j || !*j)
        return;
    for (size_t i = 0; i < (*j)->count; i++)
        s_stream_free((*j)->streams[i]);
    free((*j)->streams);
    free(*j);
    *j = NULL;
}

char *ewp_json_string(const char *text)
{
    json_object *o = json_object_new_string(text);
    if (!o)
        return NULL;
    const char *s =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = s ? strdup(s) : NULL;
    json_object_put(o);
    return copy;
}

const ewp_json_stream *ewp_json_stream_for(ewp_json *j, const ew_batch *in)
{
    const char *origin = in->origin ? in->origin : "";
    for (size_t i = 0; i < j->count; i++) {
        ewp_json_stream *st = j->streams[i];
        if (st->schema == in->schema && st->names == in->schema->names &&
            st->channels == in->schema->channels && strcmp(st->origin, origin) == 0)
            return st;
    }
    ewp_json_stream **grown = realloc(j->streams, (j->count + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    j->streams = grown;
    ewp_json_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->schema = in->schema;
    st->names = in->schema->names;
    st->channels = in->schema->channels;
    st->origin = strdup(origin);
    char *node = ewp_json_string(origin);
    st->keys = calloc(st->channels ? st->channels : 1, sizeof *st->keys);
    bool ok = st->origin && node && st->keys;
    if (ok && asprintf(&st->head, ",\"node\":%s", node) < 0) {
        st->head = NULL;
        ok = false;
    }
    free(node);
    for (size_t c = 0; ok && c < st->channels; c++) {
        if ((int)c == in->schema->score_index || (int)c == in->schema->anomaly_index)
            continue;
        char *name = ewp_json_string(in->schema->names[c]);
        if (!name || asprintf(&st->keys[c], "%s:", name) < 0) {
            st->keys[c] = NULL;
            ok = false;
        }
        free(name);
    }
    if (!ok) {
        s_stream_free(st);
        return NULL;
    }
    st->bound = 64 + EWP_TIME_BUFSIZE + strlen(st->head) + (size_t)2 * EWP_NUM_BUFSIZE;
    for (size_t c = 0; c < st->channels; c++)
        st->bound += (st->keys[c] ? strlen(st->keys[c]) : 0) + EWP_NUM_BUFSIZE + 1;
    j->streams[j->count++] = st;
    return st;
}

size_t ewp_json_bound(const ewp_json_stream *st)
{
    return st->bound;
}

static void s_put(char *out, size_t *len, const char *s, size_t n)
{
    memcpy(out + *len, s, n);
    *len += n;
}

size_t ewp_json_render(const ewp_json_stream *st, const ew_batch *in, size_t i, const char *prefix,
                       char *out)
{
    const ew_schema *sc = in->schema;
    const double *row = in->values + i * sc->channels;
    char num[EWP_NUM_BUFSIZE];
    char ts[EWP_TIME_BUFSIZE];
    size_t len = 0;
    s_put(out, &len, "{", 1);
    s_put(out, &len, prefix, strlen(prefix));
    s_put(out, &len, "\"ts\":\"", 6);
    size_t tslen = ewp_time_format(in->ts[i], ts); /* fill first: then copy */
    s_put(out, &len, ts, tslen);
    s_put(out, &len, "\"", 1);
    s_put(out, &len, st->head, strlen(st->head));
    if (sc->score_index >= 0) {
        s_put(out, &len, ",\"score\":", 9);
        size_t nlen = ewp_fmt_json_number(row[sc->score_index], num);
        s_put(out, &len, num, nlen);
    }
    if (sc->anomaly_index >= 0) {
        if (row[sc->anomaly_index] != 0 && !isnan(row[sc->anomaly_index]))
            s_put(out, &len, ",\"anomaly\":true", 15);
        else
            s_put(out, &len, ",\"anomaly\":false", 16);
    }
    s_put(out, &len, ",\"values\":{", 11);
    bool first = true;
    for (size_t c = 0; c < sc->channels; c++) {
        if (!st->keys[c])
            continue;
        if (!first)
            s_put(out, &len, ",", 1);
        first = false;
        s_put(out, &len, st->keys[c], strlen(st->keys[c]));
        size_t nlen = ewp_fmt_json_number(row[c], num);
        s_put(out, &len, num, nlen);
    }
    s_put(out, &len, "}}", 2);
    return len;
}

/* Structural checks only: an event with odd timestamps (end before start, from a
 * stream whose clock stepped back) is still written as it is, never dropped. */
static int s_event_check(const ew_event *ev, char *err, size_t errlen)
{
    if (!ev) {
        snprintf(err, errlen, "no event (NULL)");
        return -1;
    }
    if (ev->struct_size < offsetof(ew_event, channels) + sizeof ev->channels) {
        snprintf(err, errlen, "event struct of %u bytes is older than ABI 1.2 (%zu bytes)",
                 (unsigned)ev->struct_size, sizeof *ev);
        return -1;
    }
    if (ev->state != EW_EVENT_OPEN && ev->state != EW_EVENT_CLOSED) {
        snprintf(err, errlen, "event %llu has unknown state %d (expected open or closed)",
                 (unsigned long long)ev->id, (int)ev->state);
        return -1;
    }
    if (!ev->node || !*ev->node) {
        snprintf(err, errlen, "event %llu names no detector node", (unsigned long long)ev->id);
        return -1;
    }
    if (ev->n_channels && !ev->channels) {
        snprintf(err, errlen, "event %llu of node %s says %zu channels but gives none",
                 (unsigned long long)ev->id, ev->node, ev->n_channels);
        return -1;
    }
    for (size_t c = 0; c < ev->n_channels; c++) {
        if (!ev->channels[c].name) {
            snprintf(err, errlen, "event %llu of node %s: channel %zu has no name",
                     (unsigned long long)ev->id, ev->node, c + 1);
            return -1;
        }
    }
    return 0;
}

static void s_put_str(char *out, size_t *len, const char *s)
{
    s_put(out, len, s, strlen(s));
}

static void s_put_ts(char *out, size_t *len, int64_t ns)
{
    char ts[EWP_TIME_BUFSIZE];
    size_t n = ewp_time_format(ns, ts);
    s_put(out, len, "\"", 1);
    s_put(out, len, ts, n);
    s_put(out, len, "\"", 1);
}

static void s_put_num(char *out, size_t *len, double v)
{
    char num[EWP_NUM_BUFSIZE];
    size_t n = ewp_fmt_json_number(v, num);
    s_put(out, len, num, n);
}

static void s_put_u64(char *out, size_t *len, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    s_put(out, len, num, (size_t)n);
}

/* Seconds from start to end; exact for any span the int64 difference holds. */
static double s_duration_s(int64_t start, int64_t end)
{
    int64_t d;
    if (__builtin_sub_overflow(end, start, &d))
        return ((double)end - (double)start) / 1e9;
    return (double)d / 1e9;
}

char *ewp_json_event(const ew_event *ev, const char *prefix, size_t *len, char *err, size_t errlen)
{
    if (s_event_check(ev, err, errlen) < 0)
        return NULL;
    char *node = ewp_json_string(ev->node);
    char **names = calloc(ev->n_channels ? ev->n_channels : 1, sizeof *names);
    bool ok = node && names;
    /* The fixed text (under 160 bytes), two integers, four timestamps, two numbers. */
    size_t bound = 256 + strlen(prefix) + (size_t)4 * (EWP_TIME_BUFSIZE + 2) + (size_t)2 * EWP_NUM_BUFSIZE;
    if (node)
        bound += strlen(node);
    for (size_t c = 0; ok && c < ev->n_channels; c++) {
        names[c] = ewp_json_string(ev->channels[c].name);
        ok = names[c] != NULL;
        if (ok)
            bound += strlen(names[c]) + 24 + EWP_NUM_BUFSIZE;
    }
    char *out = ok ? malloc(bound) : NULL;
    if (out) {
        bool open = ev->state == EW_EVENT_OPEN;
        size_t n = 0;
        s_put(out, &n, "{", 1);
        s_put_str(out, &n, prefix);
        s_put_str(out, &n, "\"ts\":");
        s_put_ts(out, &n, open ? ev->start : ev->end);
        s_put_str(out, &n, ",\"node\":");
        s_put_str(out, &n, node);
        s_put_str(out, &n, open ? ",\"event\":\"open\",\"id\":" : ",\"event\":\"closed\",\"id\":");
        s_put_u64(out, &n, ev->id);
        s_put_str(out, &n, ",\"start\":");
        s_put_ts(out, &n, ev->start);
        s_put_str(out, &n, ",\"end\":");
        if (open)
            s_put_str(out, &n, "null");
        else
            s_put_ts(out, &n, ev->end);
        s_put_str(out, &n, ",\"duration_s\":");
        s_put_num(out, &n, open ? 0.0 : s_duration_s(ev->start, ev->end));
        s_put_str(out, &n, ",\"peak_score\":");
        s_put_num(out, &n, ev->peak_score);
        s_put_str(out, &n, ",\"peak_ts\":");
        s_put_ts(out, &n, ev->peak_ts);
        s_put_str(out, &n, ",\"samples\":");
        s_put_u64(out, &n, ev->samples);
        s_put_str(out, &n, ",\"channels\":[");
        for (size_t c = 0; c < ev->n_channels; c++) {
            s_put_str(out, &n, c ? ",{\"name\":" : "{\"name\":");
            s_put_str(out, &n, names[c]);
            s_put_str(out, &n, ",\"share\":");
            s_put_num(out, &n, ev->channels[c].share);
            s_put(out, &n, "}", 1);
        }
        s_put(out, &n, "]}", 2);
        out[n] = '\0';
        *len = n;
    } else {
        snprintf(err, errlen, "out of memory rendering event %llu of node %s",
                 (unsigned long long)ev->id, ev->node);
    }
    for (size_t c = 0; names && c < ev->n_channels; c++)
        free(names[c]);
    free(names);
    free(node);
    return out;
}
