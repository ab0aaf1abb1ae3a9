/* bus: encodes and checks the frames that carry batches between nodes. */
#include "bus.h"

#include <stdio.h>
#include <string.h>

typedef struct s_header {
    uint32_t magic;
    uint16_t type;
    uint16_t reserved;
    uint32_t count;
    uint32_t channels;
    uint32_t reserved2[4];
} s_header;

_Static_assert(sizeof(s_header) == BUS_HEADER_SIZE, "bus header is 32 bytes");

size_t bus_frame_size(uint32_t count, uint32_t channels)
{
    return BUS_HEADER_SIZE + (size_t)count * sizeof(int64_t) + (size_t)count * channels * sizeof(double);
}

int bus_msg_data(zmq_msg_t *msg, uint32_t count, uint32_t channels, int64_t **ts, double **values)
{
    if (count == 0 || count > BUS_MAX_COUNT || channels > BUS_MAX_CHANNELS)
        return -1;
    if (zmq_msg_init_size(msg, bus_frame_size(count, channels)) != 0)
        return -1;
    unsigned char *p = zmq_msg_data(msg);
    s_header h = {BUS_MAGIC, BUS_DATA, 0, count, channels, {0}};
    memcpy(p, &h, sizeof h);
    /* Frames are never inline in zmq_msg_t (see bus.h), so this is 8-byte aligned. */
    *ts = (int64_t *)(void *)(p + BUS_HEADER_SIZE);
    *values = (double *)(void *)(p + BUS_HEADER_SIZE + (size_t)count * sizeof(int64_t));
    return 0;
}

int bus_msg_eos(zmq_msg_t *msg)
{
    if (zmq_msg_init_size(msg, BUS_HEADER_SIZE) != 0)
        return -1;
    s_header h = {BUS_MAGIC, BUS_EOS, 0, 0, 0, {0}};
    memcpy(zmq_msg_data(msg), &h, sizeof h);
    return 0;
}

int bus_decode(const void *data, size_t size, uint32_t expect_channels, bus_frame *out, char *err,
               size_t errlen)
{
    s_header h;
    if (size < sizeof h) {
        snprintf(err, errlen, "frame of %zu bytes is shorter than its header", size);
        return -1;
    }
    memcpy(&h, data, sizeof h);
    if (h.magic != BUS_MAGIC) {
        snprintf(err, errlen, "frame has bad magic 0x%08x", h.magic);
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (h.type == BUS_EOS) {
        if (size != sizeof h) {
            snprintf(err, errlen, "end-of-stream frame has %zu stray bytes", size - sizeof h);
            return -1;
        }
        out->type = BUS_EOS;
        return 0;
    }
    if (h.type != BUS_DATA) {
        snprintf(err, errlen, "frame has unknown type %u", h.type);
        return -1;
    }
    if (h.count == 0 || h.count > BUS_MAX_COUNT || h.channels > BUS_MAX_CHANNELS ||
        (expect_channels && h.channels != expect_channels)) {
        snprintf(err, errlen, "frame claims %u samples of %u channels (expected 1..%u of %u)", h.count,
                 h.channels, BUS_MAX_COUNT, expect_channels);
        return -1;
    }
    if (size != bus_frame_size(h.count, h.channels)) {
        snprintf(err, errlen, "frame is %zu bytes but %u x %u needs %zu", size, h.count, h.channels,
                 bus_frame_size(h.count, h.channels));
        return -1;
    }
    if (((uintptr_t)data & 7u) != 0) {
        snprintf(err, errlen, "frame is not 8-byte aligned");
        return -1;
    }
    const unsigned char *p = data;
    out->type = BUS_DATA;
    out->count = h.count;
    out->channels = h.channels;
    out->ts = (const int64_t *)(const void *)(p + BUS_HEADER_SIZE);
    out->values = (const double *)(const void *)(p + BUS_HEADER_SIZE + (size_t)h.count * sizeof(int64_t));
    return 0;
}
