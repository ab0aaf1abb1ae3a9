/* ewp_json: renders samples as JSON objects for the jsonl and mqtt sinks. */
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
