/* fuzz_lines: the csv, kv and json record parser of the serial and zmq sources
 * (plugins/common/ewp_lines) on arbitrary lines; the first byte picks the format. */
#include "ewp_lines.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const char *const columns[] = {"ts", "a", "b", "c"};
    static const char *const channels[] = {"a", "b", "c"};
    /* The first byte: format (bits 0-1), csv delimiter (bits 2-4), timestamp unit
     * (bits 5-7); the unit's top choice also drops the timestamp field. */
    unsigned sel = data[0];
    ewp_lines_spec spec = {
        .format = (ewp_lines_format)((sel & 3) % 3),
        .ncolumns = 4,
        .columns = columns,
        .nchannels = (sel & 3) == 0 ? 0 : 3,
        .channels = channels,
        .timestamp_field = (sel >> 5) == 7 ? NULL : "ts",
        .delimiter = (int)((sel >> 2) & 7) % 5,
        .ts_unit = (ewp_lines_ts_unit)((sel >> 5) % 5),
    };
    char err[300];
    if (ewp_lines_check(&spec, err, sizeof err) < 0)
        abort(); /* the spec above is valid: a refusal is a bug */
    ewp_lines *p = ewp_lines_new(&spec);
    if (!p)
        return 0;
    size_t nch = ewp_lines_channels(p);
    double values[8];
    /* Each line is copied into a buffer of its exact size, so that a read past
     * its end is caught by the address sanitizer. */
    const uint8_t *rest = data + 1, *end = data + size;
    while (rest <= end) {
        const uint8_t *nl = memchr(rest, '\n', (size_t)(end - rest));
        size_t len = (size_t)((nl ? nl : end) - rest);
        char *line = malloc(len ? len : 1);
        if (!line)
            break;
        memcpy(line, rest, len);
        int64_t ts = 0;
        bool has_ts = false;
        char why[300];
        if (nch <= 8)
            ewp_lines_parse(p, line, len, &ts, &has_ts, values, why, sizeof why);
        char excerpt[80];
        ewp_lines_excerpt(line, len, 40, excerpt, sizeof excerpt);
        free(line);
        if (!nl)
            break;
        rest = nl + 1;
    }
    ewp_lines_free(&p);
    return 0;
}
