/* pca_limits: the classical control limits of T^2 (F distribution) and Q
 * (Jackson-Mudholkar, or Box's approximation), with the distribution
 * functions they need: the regularised incomplete beta function by its
 * continued fraction (evaluated with the modified Lentz method) and quantiles
 * by bisection of the distribution functions. */
#include "pca_model.h"

#include <float.h>
#include <math.h>

/* Continued fraction of the incomplete beta function (Abramowitz & Stegun
 * 26.5.8), evaluated by the modified Lentz method; converges fast for
 * x < (a + 1) / (a + b + 2). */
static double s_beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1.0, dd = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(dd) < tiny)
        dd = tiny;
    dd = 1.0 / dd;
    double h = dd;
    for (int m = 1; m <= 500; m++) {
        double m2 = 2.0 * m;
        double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        for (int half = 0; half < 2; half++) {
            dd = 1.0 + num * dd;
            if (fabs(dd) < tiny)
                dd = tiny;
            c = 1.0 + num / c;
            if (fabs(c) < tiny)
                c = tiny;
            dd = 1.0 / dd;
            double del = dd * c;
            h *= del;
            if (half == 1 && fabs(del - 1.0) < 1e-15)
                return h;
            num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        }
    }
    return h;
}

/* I_x(a, b), the regularised incomplete beta function. */
static double s_beta_inc(double a, double b, double x)
{
    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    double lfront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0))
        return exp(lfront) * s_beta_cf(a, b, x) / a;
    return 1.0 - exp(lfront) * s_beta_cf(b, a, 1.0 - x) / b;
}

/* P(F(d1, d2) <= f). */
static double s_f_cdf(double f, double d1, double d2)
{
    return f <= 0 ? 0 : s_beta_inc(d1 / 2.0, d2 / 2.0, d1 * f / (d1 * f + d2));
}

/* Smallest x with cdf(x) >= p, by bisection on a bracket that doubles until it holds it. */
static double s_f_quantile(double p, double d1, double d2)
{
    double lo = 0, hi = 1;
    while (s_f_cdf(hi, d1, d2) < p && hi < 1e300)
        hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-14 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (s_f_cdf(mid, d1, d2) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* The standard normal quantile, by bisection of 0.5 erfc(-x / sqrt 2). */
static double s_norm_quantile(double p)
{
    double lo = -40, hi = 40;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

double pca_limit_t2_f(size_t k, size_t n, double q)
{
    double dk = (double)k, dn = (double)n;
    if (n <= k)
        return NAN;
    return dk * (dn - 1.0) * (dn + 1.0) / (dn * (dn - dk)) * s_f_quantile(q, dk, dn - dk);
}

double pca_limit_q_jm(const double *discarded, size_t count, double q)
{
    double th1 = 0, th2 = 0, th3 = 0;
    for (size_t i = 0; i < count; i++) {
        double l = discarded[i] > 0 ? discarded[i] : 0;
        th1 += l;
        th2 += l * l;
        th3 += l * l * l;
    }
    if (th1 <= 0 || th2 <= 0)
        return 0;
    double z = s_norm_quantile(q);
    double h0 = 1.0 - 2.0 * th1 * th3 / (3.0 * th2 * th2);
    if (h0 > 0) {
        double base = z * sqrt(2.0 * th2 * h0 * h0) / th1 + 1.0 + th2 * h0 * (h0 - 1.0) / (th1 * th1);
        if (base > 0)
            return th1 * pow(base, 1.0 / h0);
    }
    /* Box: Q ~ g chi^2(h), g = th2 / th1, h = th1^2 / th2, with the chi^2 quantile
     * of Wilson & Hilferty's cube-root normal approximation. */
    double g = th2 / th1, h = th1 * th1 / th2;
    double c = 1.0 - 2.0 / (9.0 * h) + z * sqrt(2.0 / (9.0 * h));
    return g * h * (c > 0 ? c * c * c : DBL_MIN);
}
