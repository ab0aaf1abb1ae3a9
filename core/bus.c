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

#define S_EVENT_FIXED 64
#define S_NAME_MAX 128

int bus_msg_event(zmq_msg_t *msg, const ew_event *ev)
{
    if (ev->n_channels > BUS_MAX_EVENT_CHANNELS || !ev->node)
        return -1;
    size_t names = strnlen(ev->node, S_NAME_MAX + 1) + 1;
    for (size_t i = 0; i < ev->n_channels; i++)
        names += strnlen(ev->channels[i].name, S_NAME_MAX + 1) + 1;
    if (names > (ev->n_channels + 1) * (S_NAME_MAX + 1))
        return -1;
    size_t size = BUS_HEADER_SIZE + S_EVENT_FIXED + ev->n_channels * sizeof(double) + names;
    if (zmq_msg_init_size(msg, size) != 0)
        return -1;
    unsigned char *p = zmq_msg_data(msg);
    s_header h = {BUS_MAGIC, BUS_EVENT, 0, (uint32_t)ev->n_channels, (uint32_t)names, {0}};
    memcpy(p, &h, sizeof h);
    unsigned char *q = p + BUS_HEADER_SIZE;
    uint32_t state = (uint32_t)ev->state, zero = 0;
    uint64_t zero64 = 0;
    memcpy(q, &state, 4);
    memcpy(q + 4, &zero, 4);
    memcpy(q + 8, &ev->id, 8);
    memcpy(q + 16, &ev->start, 8);
    memcpy(q + 24, &ev->end, 8);
    memcpy(q + 32, &ev->peak_ts, 8);
    memcpy(q + 40, &ev->peak_score, 8);
    memcpy(q + 48, &ev->samples, 8);
    memcpy(q + 56, &zero64, 8);
    q += S_EVENT_FIXED;
    for (size_t i = 0; i < ev->n_channels; i++, q += sizeof(double))
        memcpy(q, &ev->channels[i].share, sizeof(double));
    size_t len = strlen(ev->node) + 1;
    memcpy(q, ev->node, len);
    q += len;
    for (size_t i = 0; i < ev->n_channels; i++) {
        len = strlen(ev->channels[i].name) + 1;
        memcpy(q, ev->channels[i].name, len);
        q += len;
    }
    return 0;
}

/* Checks an EVENT frame's payload and points out->event into it. */
static int s_decode_event(const s_header *h, const unsigned char *p, size_t size, bus_frame *out, char *err,
                          size_t errlen)
{
    if (h->count > BUS_MAX_EVENT_CHANNELS || h->channels < 1 ||
        h->channels > (h->count + 1) * (S_NAME_MAX + 1) ||
        size != BUS_HEADER_SIZE + S_EVENT_FIXED + (size_t)h->count * sizeof(double) + h->channels) {
        snprintf(err, errlen, "event frame of %zu bytes claims %u channels and %u bytes of names", size,
                 h->count, h->channels);
        return -1;
    }
    const unsigned char *q = p + BUS_HEADER_SIZE;
    uint32_t state;
    ew_event *ev = &out->event;
    memset(ev, 0, sizeof *ev);
    memcpy(&state, q, 4);
    if (state != EW_EVENT_OPEN && state != EW_EVENT_CLOSED) {
        snprintf(err, errlen, "event frame has unknown state %u", state);
        return -1;
    }
    ev->struct_size = sizeof *ev;
    ev->state = (ew_event_state)state;
    memcpy(&ev->id, q + 8, 8);
    memcpy(&ev->start, q + 16, 8);
    memcpy(&ev->end, q + 24, 8);
    memcpy(&ev->peak_ts, q + 32, 8);
    memcpy(&ev->peak_score, q + 40, 8);
    memcpy(&ev->samples, q + 48, 8);
    q += S_EVENT_FIXED;
    for (uint32_t i = 0; i < h->count; i++, q += sizeof(double))
        memcpy(&out->event_channels[i].share, q, sizeof(double));
    /* Names: count + 1 strings, each ending in NUL, filling the rest exactly. */
    const char *names = (const char *)q, *end = (const char *)p + size;
    const char *at = names;
    for (uint32_t i = 0; i <= h->count; i++) {
        const char *nul = memchr(at, '\0', (size_t)(end - at));
        if (!nul || nul == at || nul - at > S_NAME_MAX) {
            snprintf(err, errlen, "event frame has a bad name %u", i);
            return -1;
        }
        if (i == 0)
            ev->node = at;
        else
            out->event_channels[i - 1].name = at;
        at = nul + 1;
    }
    if (at != end) {
        snprintf(err, errlen, "event frame has %zu stray bytes", (size_t)(end - at));
        return -1;
    }
    ev->n_channels = h->count;
    ev->channels = out->event_channels;
    out->type = BUS_EVENT;
    out->count = h->count;
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
    if (h.type == BUS_EVENT)
        return s_decode_event(&h, data, size, out, err, errlen);
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
