/* fuzz_bus: the frame decoder on arbitrary bytes, and a full walk of what it accepts. */
#include "bus.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Frames arrive in malloc'd (aligned) memory, as ZeroMQ delivers them. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    bus_frame f;
    char err[200];
    uint32_t expect = size ? data[0] % 4 : 0;
    if (bus_decode(buf, size, expect, &f, err, sizeof err) == 0 && f.type == BUS_DATA) {
        volatile double sum = 0;
        for (size_t k = 0; k < (size_t)f.count; k++) {
            sum += (double)f.ts[k];
            for (size_t c = 0; c < f.channels; c++)
                sum += f.values[k * f.channels + c];
        }
        (void)sum;
    }
    free(buf);
    return 0;
}
