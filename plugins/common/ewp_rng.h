/* ewp_rng: a small, fast, seeded random number generator for plugins
 * (xoshiro256** seeded through splitmix64, with ziggurat normal deviates). */
#ifndef EWP_RNG_H
#define EWP_RNG_H

#include <stdint.h>

/* Layers of the ziggurat; 128 is Marsaglia and Tsang's classic choice. */
#define EWP_ZIG_LAYERS 128

/* Generator state. Copyable; two copies produce the same sequence. The
 * ziggurat tables live here (2.5 KiB) so that no global state is needed. */
typedef struct ewp_rng {
    uint64_t s[4];
    uint32_t zig_k[EWP_ZIG_LAYERS];
    double zig_w[EWP_ZIG_LAYERS];
    double zig_f[EWP_ZIG_LAYERS];
} ewp_rng;

/* Seeds the generator; the same seed always gives the same sequence. */
void ewp_rng_seed(ewp_rng *rng, uint64_t seed);

/* Slow path of ewp_rng_normal (wedges and tail); not for direct use. */
double ewp_rng_normal_slow(ewp_rng *rng, int64_t hz, uint32_t iz);

static inline uint64_t ewp__rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Next 64 uniformly distributed bits (xoshiro256**). */
static inline uint64_t ewp_rng_next(ewp_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = ewp__rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ewp__rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double ewp_rng_uniform(ewp_rng *rng)
{
    return (double)(ewp_rng_next(rng) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n); n > 0. The bias (n / 2^53) is negligible for the
 * small n plugins use, and it avoids 128-bit arithmetic on 32-bit ARM. */
static inline uint64_t ewp_rng_below(ewp_rng *rng, uint64_t n)
{
    return (uint64_t)(ewp_rng_uniform(rng) * (double)n);
}

/* Standard normal deviate (mean 0, standard deviation 1). The layer index and
 * the value come from disjoint bits of one draw, so they are independent. */
static inline double ewp_rng_normal(ewp_rng *rng)
{
    uint64_t u = ewp_rng_next(rng);
    int64_t hz = (int32_t)(uint32_t)(u >> 32);
    uint32_t iz = (uint32_t)(u & (EWP_ZIG_LAYERS - 1));
    uint64_t mag = (uint64_t)(hz < 0 ? -hz : hz);
    if (mag < rng->zig_k[iz])
        return (double)hz * rng->zig_w[iz];
    return ewp_rng_normal_slow(rng, hz, iz);
}

#endif
