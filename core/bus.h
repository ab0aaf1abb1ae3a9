/* bus: the frames that cross an edge between two nodes, one ZeroMQ message each.
 *
 * A frame is a 32-byte header then the payload, in host byte order (frames
 * never leave the process):
 *   magic u32 "EWB1" | type u16 | reserved u16 | count u32 | channels u32 | reserved (16)
 * The header is large enough that every frame exceeds ZeroMQ's inline message
 * size, so payloads live in malloc'd, 8-byte aligned memory.
 *   DATA: int64 ts[count], then double values[count * channels] (row-major)
 *   EOS:  no payload; the sender's stream has ended
 *   EVENT: an alert event (count = its channels, channels = bytes of names):
 *         u32 state | u32 0 | u64 id | i64 start | i64 end | i64 peak_ts |
 *         f64 peak_score | u64 samples | u64 0, then f64 share[count], then the
 *         node's name and each channel's name, each ending in NUL
 */
#ifndef EW_CORE_BUS_H
#define EW_CORE_BUS_H

#include <edgewatch/plugin.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define BUS_MAGIC 0x31425745u /* "EWB1" little-endian */
#define BUS_HEADER_SIZE 32
#define BUS_MAX_COUNT 65536u
#define BUS_MAX_CHANNELS 4096u
#define BUS_MAX_EVENT_CHANNELS 64u /* alert_top's maximum */

typedef enum bus_type {
    BUS_DATA = 1,
    BUS_EOS = 2,
    BUS_EVENT = 3,
} bus_type;

/* A decoded frame: pointers into the message's bytes. */
typedef struct bus_frame {
    bus_type type;
    uint32_t count;
    uint32_t channels;
    const int64_t *ts;
    const double *values;
    ew_event event;        /* EVENT: names point into the message's bytes */
    ew_event_channel event_channels[BUS_MAX_EVENT_CHANNELS];
} bus_frame;

/* Bytes a DATA frame of count x channels needs. */
size_t bus_frame_size(uint32_t count, uint32_t channels);

/* Initialises `msg` as a DATA frame of count x channels and returns pointers
 * to its timestamp and value areas for the caller to fill. Returns 0 or -1. */
int bus_msg_data(zmq_msg_t *msg, uint32_t count, uint32_t channels, int64_t **ts, double **values);

/* Initialises `msg` as an EOS frame. */
int bus_msg_eos(zmq_msg_t *msg);

/* Initialises `msg` as an EVENT frame holding `ev` (at most BUS_MAX_EVENT_CHANNELS
 * channels; names of at most 128 bytes). Returns 0 or -1. */
int bus_msg_event(zmq_msg_t *msg, const ew_event *ev);

/* Checks and decodes a frame; `expect_channels` is the stream's width (0 = any).
 * Returns 0, or -1 with err (bad magic, type, sizes). */
int bus_decode(const void *data, size_t size, uint32_t expect_channels, bus_frame *out, char *err,
               size_t errlen);

#endif
