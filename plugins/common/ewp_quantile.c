/* ewp_quantile: sample quantiles by linear interpolation of order statistics. */
#include "ewp_quantile.h"

#include <math.h>
#include <stdlib.h>

double ewp_quantile_sorted(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return NAN;
    if (q <= 0)
        return sorted[0];
    if (q >= 1)
        return sorted[n - 1];
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo >= n - 1)
        return sorted[n - 1];
    double frac = pos - (double)lo;
    /* a + (b - a) * f, which equals a exactly at f = 0 and is monotone in f. */
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

static int s_cmp(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    if (isnan(a) || isnan(b))
        return isnan(a) - isnan(b);
    return (a > b) - (a < b);
}

double ewp_quantile(double *values, size_t n, double q)
{
    if (n > 1)
        qsort(values, n, sizeof *values, s_cmp);
    return ewp_quantile_sorted(values, n, q);
}
