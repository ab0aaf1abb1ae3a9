/* fuzz_iforest_model: a model file of arbitrary content given to the iforest
 * detector with `model = PATH`; init must load it or refuse it cleanly, and a
 * loaded model must score samples. */
#include <edgewatch/testing.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tempfiles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    if (fuzz_temp_file("iforest", data, size, path, sizeof path) < 0)
        return 0;
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    if (h) {
        ew_harness_input(h, 2, (const char *[]){"a", "b"});
        ew_harness_option(h, "model", path);
        if (ew_harness_init(h) == EW_OK) {
            /* Ordinary, extreme and missing values through every tree. */
            const int64_t ts[4] = {1, 2, 3, 4};
            const double v[8] = {0.5, -1.0, 1e300, -1e300, 0.0 / 0.0, 3.0, 1.0 / 0.0, 0.0};
            ew_harness_process(h, 4, ts, v);
        }
        ew_harness_destroy(&h);
    }
    unlink(path);
    return 0;
}
