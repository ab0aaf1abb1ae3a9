/* ewp_json: a sample or an alert event as one JSON object (the jsonl line, the mqtt
 * payload, the zmq message), one implementation. */
#ifndef EWP_JSON_H
#define EWP_JSON_H

#include <edgewatch/plugin.h>

#include <stddef.h>

/* The escaped JSON names of the streams a sink has seen, built once per
 * (schema, origin) and reused for every sample. */
typedef struct ewp_json ewp_json;
typedef struct ewp_json_stream ewp_json_stream;

/* A new, empty cache; NULL when out of memory. */
ewp_json *ewp_json_new(void);
/* Frees the cache and sets *j to NULL. */
void ewp_json_free(ewp_json **j);
/* The prepared names of this batch's stream (built on its first batch); NULL when out of memory. */
const ewp_json_stream *ewp_json_stream_for(ewp_json *j, const ew_batch *in);
/* Upper bound of one rendered object of this stream, without a prefix. */
size_t ewp_json_bound(const ewp_json_stream *st);
/* Writes sample i of `in` as {prefix"ts":"...","node":"...","score":..,"anomaly":..,"values":{..}}
 * (no newline) to out, which holds ewp_json_bound + strlen(prefix) bytes. `prefix`
 * is inserted verbatim after the brace (e.g. "\"seq\":12,"), "" for none. Returns the length. */
size_t ewp_json_render(const ewp_json_stream *st, const ew_batch *in, size_t i, const char *prefix,
                       char *out);
/* json-c's escaping of `text`, quotes included, in a new string (NULL when out of memory). */
char *ewp_json_string(const char *text);

/* Writes alert event `ev` as one JSON object, keys in this order:
 *   {prefix"ts":"..","node":"..","event":"open"|"closed","id":N,"start":"..",
 *    "end":null|"..","duration_s":S,"peak_score":P,"peak_ts":"..","samples":N,
 *    "channels":[{"name":"..","share":F},..]}
 * (no newline): ts is the start of an open event and the end of a closed one;
 * timestamps as in sample lines; an open event has end null and duration_s 0.
 * `prefix` is inserted verbatim after the brace, "" for none. Returns the text in
 * a new string (its length in *len), or NULL with the reason in err: an event no
 * host makes (unknown state, missing node or channel names, a struct older than
 * ABI 1.2) or out of memory. */
char *ewp_json_event(const ew_event *ev, const char *prefix, size_t *len, char *err, size_t errlen);

#endif
