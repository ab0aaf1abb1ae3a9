/* edgewatch/bytes.h: little-endian loads and stores, for file formats (state
 * files, model files, spools) that must read back the same on every machine.
 *
 *     unsigned char hdr[12];
 *     ew_le_put32(hdr, magic);
 *     ew_le_put64(hdr + 4, count);
 *     ... count = ew_le_get64(hdr + 4);
 *
 * Header-only helpers of the SDK, free to use in plugins; not part of the
 * plugin ABI (nothing here crosses the host/plugin boundary). */
#ifndef EDGEWATCH_BYTES_H
#define EDGEWATCH_BYTES_H

#include <stdint.h>
#include <string.h>

static inline void ew_le_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void ew_le_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A double as the little-endian bytes of its IEEE 754 binary64 encoding. */
static inline void ew_le_put_f64(unsigned char *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    ew_le_put64(p, bits);
}

static inline uint32_t ew_le_get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t ew_le_get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline double ew_le_get_f64(const unsigned char *p)
{
    uint64_t bits = ew_le_get64(p);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

#endif
