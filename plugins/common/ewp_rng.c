/* ewp_rng: seeding and the rare slow path of the ziggurat normal generator. */
#include "ewp_rng.h"

#include <math.h>

/* Right edge of the base layer and the area of each layer (Marsaglia & Tsang 2000). */
#define S_ZIG_R 3.442619855899
#define S_ZIG_V 9.91256303526217e-3
#define S_M31 2147483648.0

static uint64_t s_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Ziggurat tables for 31-bit signed draws. Computed per generator instead of
 * once globally: 128 exp() calls at seed time cost nothing and keep plugins
 * free of global mutable state. */
static void s_zig_tables(ewp_rng *rng)
{
    double dn = S_ZIG_R, tn = dn;
    const double q = S_ZIG_V / exp(-0.5 * dn * dn);
    const int last = EWP_ZIG_LAYERS - 1;
    rng->zig_k[0] = (uint32_t)((dn / q) * S_M31);
    rng->zig_k[1] = 0;
    rng->zig_w[0] = q / S_M31;
    rng->zig_w[last] = dn / S_M31;
    rng->zig_f[0] = 1.0;
    rng->zig_f[last] = exp(-0.5 * dn * dn);
    for (int i = last - 1; i >= 1; i--) {
        dn = sqrt(-2.0 * log(S_ZIG_V / dn + exp(-0.5 * dn * dn)));
        rng->zig_k[i + 1] = (uint32_t)((dn / tn) * S_M31);
        tn = dn;
        rng->zig_f[i] = exp(-0.5 * dn * dn);
        rng->zig_w[i] = dn / S_M31;
    }
}

void ewp_rng_seed(ewp_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = s_splitmix64(&x);
    /* xoshiro must not start from all zeros; splitmix64 never yields four zeros,
     * but keep the guarantee explicit. */
    if (!(rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]))
        rng->s[0] = 1;
    s_zig_tables(rng);
}

/* Uniform in (0, 1): never 0, so log() stays finite. */
static double s_open_uniform(ewp_rng *rng)
{
    return ((double)(ewp_rng_next(rng) >> 11) + 0.5) * 0x1.0p-53;
}

double ewp_rng_normal_slow(ewp_rng *rng, int64_t hz, uint32_t iz)
{
    for (;;) {
        double x = (double)hz * rng->zig_w[iz];
        if (iz == 0) {
            /* Tail beyond R: Marsaglia's exponential rejection method. */
            double xt, y;
            do {
                xt = -log(s_open_uniform(rng)) / S_ZIG_R;
                y = -log(s_open_uniform(rng));
            } while (y + y < xt * xt);
            return hz > 0 ? S_ZIG_R + xt : -S_ZIG_R - xt;
        }
        /* Wedge: accept under the density curve. */
        if (rng->zig_f[iz] + s_open_uniform(rng) * (rng->zig_f[iz - 1] - rng->zig_f[iz]) <
            exp(-0.5 * x * x))
            return x;
        uint64_t u = ewp_rng_next(rng);
        hz = (int32_t)(uint32_t)(u >> 32);
        iz = (uint32_t)(u & (EWP_ZIG_LAYERS - 1));
        uint64_t mag = (uint64_t)(hz < 0 ? -hz : hz);
        if (mag < rng->zig_k[iz])
            return (double)hz * rng->zig_w[iz];
    }
}
