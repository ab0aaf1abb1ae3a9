/* fuzz_csv: the csv source replaying an arbitrary file through the SDK harness. */
#include <edgewatch/testing.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tempfiles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    if (fuzz_temp_file("csv", data, size, path, sizeof path) < 0)
        return 0;
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    if (h) {
        ew_harness_option(h, "path", path);
        /* The first byte picks the timestamp handling, to reach both parsers. */
        ew_harness_option(h, "timestamp_column", size && (data[0] & 1) ? "" : "timestamp");
        if (ew_harness_init(h) == EW_OK)
            ew_harness_run(h, 100000);
        ew_harness_destroy(&h);
    }
    unlink(path);
    return 0;
}
