/* ewp_lines: parses one text record (a serial line, a ZeroMQ message) in csv,
 * kv (name=value pairs) or json form into a timestamp and channel values. */
#ifndef EWP_LINES_H
#define EWP_LINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record formats, in the order of the option choices "csv|kv|json". */
typedef enum ewp_lines_format {
    EWP_LINES_CSV = 0,  /* fields separated by a delimiter, named by `columns` */
    EWP_LINES_KV = 1,   /* name=value pairs separated by spaces, commas or semicolons */
    EWP_LINES_JSON = 2, /* one JSON object: {"name": number, ...} */
} ewp_lines_format;

/* How a numeric timestamp is read, in the order of the choices "auto|s|ms|us|ns". */
typedef enum ewp_lines_ts_unit {
    EWP_TS_AUTO = 0, /* by magnitude: < 1e11 seconds, < 1e14 ms, < 1e17 us, else ns */
    EWP_TS_S = 1,
    EWP_TS_MS = 2,
    EWP_TS_US = 3,
    EWP_TS_NS = 4,
} ewp_lines_ts_unit;

/* CSV delimiters, in the order of the choices "comma|semicolon|tab|pipe|space". */
#define EWP_LINES_DELIMITERS "comma|semicolon|tab|pipe|space"

/* What records look like; the strings stay owned by the caller and must
 * outlive the parser. */
typedef struct ewp_lines_spec {
    ewp_lines_format format;
    size_t ncolumns;              /* csv: every field of a record, in order (required) */
    const char *const *columns;
    size_t nchannels;             /* channels to emit, in order; csv: 0 = every column
                                     but the timestamp; kv, json: required */
    const char *const *channels;
    const char *timestamp_field;  /* field holding the time; NULL or "" = none */
    int delimiter;                /* csv: index into EWP_LINES_DELIMITERS */
    ewp_lines_ts_unit ts_unit;
} ewp_lines_spec;

typedef struct ewp_lines ewp_lines;

/* Checks a spec for contradictions (csv without columns, a channel that is not
 * a column, names listed twice, ...). Returns 0, or -1 with the reason in err,
 * naming the option (columns, channels, timestamp_field) to change. */
int ewp_lines_check(const ewp_lines_spec *spec, char *err, size_t errlen);

/* Creates a parser for a spec that passed ewp_lines_check; NULL when out of memory. */
ewp_lines *ewp_lines_new(const ewp_lines_spec *spec);
void ewp_lines_free(ewp_lines **p);

/* Number of values ewp_lines_parse writes, and their names in that order. */
size_t ewp_lines_channels(const ewp_lines *p);
const char *const *ewp_lines_channel_names(const ewp_lines *p);

/* Parses `len` bytes of `rec` (no line ending needed; may hold any bytes,
 * NULs included; trailing CR and white space are ignored). Writes ewp_lines_channels(p) values (NaN for
 * a channel the record does not carry or leaves empty) and, when the spec has
 * a timestamp field and the record carries it, *ts (ns since the epoch) with
 * *has_ts = true. Returns 0, or -1 with the reason in why: control characters,
 * wrong field count, a value that is not a number, a bad timestamp, or a
 * record that carries none of the channels. */
int ewp_lines_parse(ewp_lines *p, const char *rec, size_t len, int64_t *ts, bool *has_ts,
                    double *values, char *why, size_t whylen);

/* Writes at most `max` bytes of `rec` as printable text for a log line
 * (non-printable bytes as \xHH, "..." when cut) into out[outlen]. */
void ewp_lines_excerpt(const char *rec, size_t len, size_t max, char *out, size_t outlen);

#endif
