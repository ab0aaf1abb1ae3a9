/* schema: channel-name rules and the composition of a detector's output stream. */
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool schema_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > 128)
        return false;
    for (size_t k = 0; k < len; k++)
        if ((unsigned char)name[k] < 0x20 || name[k] == 0x7f)
            return false;
    return true;
}

static int s_add(schema_layout *out, const char *name, char *err, size_t errlen)
{
    if (!schema_name_valid(name)) {
        snprintf(err, errlen, "channel %zu: a name must be 1 to 128 bytes without control characters",
                 out->count + 1);
        return -1;
    }
    for (size_t i = 0; i < out->count; i++) {
        if (strcmp(out->names[i], name) == 0) {
            snprintf(err, errlen, "channel \"%s\" is declared twice", name);
            return -1;
        }
    }
    out->names[out->count++] = name;
    return 0;
}

int schema_detector_output(const ew_schema *in, size_t n_extra, const char *const *extras, schema_layout *out,
                           char *err, size_t errlen)
{
    *out = (schema_layout){.names = calloc(in->channels + n_extra + 2, sizeof *out->names),
                           .keep = calloc(in->channels + 1, sizeof *out->keep)};
    if (!out->names || !out->keep) {
        schema_layout_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t c = 0; c < in->channels; c++) {
        if ((int)c == in->score_index || (int)c == in->anomaly_index)
            continue;
        out->keep[out->n_keep++] = c;
        if (s_add(out, in->names[c], err, errlen) < 0)
            goto fail;
    }
    for (size_t e = 0; e < n_extra; e++)
        if (s_add(out, extras[e], err, errlen) < 0)
            goto fail;
    if (s_add(out, "score", err, errlen) < 0 || s_add(out, "anomaly", err, errlen) < 0)
        goto fail;
    return 0;
fail:
    schema_layout_free(out);
    return -1;
}

void schema_layout_free(schema_layout *layout)
{
    free(layout->names);
    free(layout->keep);
    memset(layout, 0, sizeof *layout);
}
