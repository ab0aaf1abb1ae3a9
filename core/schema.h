/* schema: the rules for channel names and the layout of a detector's output
 * stream, shared by the host and the plugin test harness. */
#ifndef EW_CORE_SCHEMA_H
#define EW_CORE_SCHEMA_H

#include <edgewatch/plugin.h>

/* Whether `name` may name a channel: 1 to 128 bytes, no control characters. */
bool schema_name_valid(const char *name);

/* A detector's output channels: its input's channels except an upstream
 * detector's score and anomaly (this detector's verdict replaces them), then the
 * extras it declared, then score and anomaly. */
typedef struct schema_layout {
    const char **names;  /* `count` names, borrowed from the input, the extras and constants */
    size_t count;
    size_t *keep;        /* the input columns copied, in order (`n_keep` of them) */
    size_t n_keep;
} schema_layout;

/* Fills `out` (arrays the caller frees with schema_layout_free). Returns 0, or -1
 * with err when a name is invalid or repeated (e.g. an extra named like an input). */
int schema_detector_output(const ew_schema *in, size_t n_extra, const char *const *extras, schema_layout *out,
                           char *err, size_t errlen);

void schema_layout_free(schema_layout *layout);

#endif
