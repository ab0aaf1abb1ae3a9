/* ewp_stats: numerically careful rolling mean/variance and rolling median/MAD. */
#include "ewp_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Recompute exactly when m2 has fallen below this fraction of its peak: the
 * incremental update then carries an absolute error of about eps * peak per
 * step, which would be more than a 1e-7 relative error on the new m2. */
#define S_CANCEL_RATIO 1e-9

int ewp_rollvar_init(ewp_rollvar *rv, size_t cap)
{
    memset(rv, 0, sizeof *rv);
    if (cap == 0)
        return -1;
    rv->ring = malloc(cap * sizeof *rv->ring);
    if (!rv->ring)
        return -1;
    rv->cap = cap;
    return 0;
}

void ewp_rollvar_free(ewp_rollvar *rv)
{
    free(rv->ring);
    memset(rv, 0, sizeof *rv);
}

void ewp_rollvar_recompute(ewp_rollvar *rv)
{
    rv->updates = 0;
    if (rv->count == 0) {
        rv->mean = rv->m2 = rv->m2_peak = 0;
        return;
    }
    /* New shift: the oldest value, which is close to the data by construction. */
    const double k = rv->ring[rv->head];
    const double n = (double)rv->count;
    /* Neumaier-compensated sum of (x - K). */
    double sum = 0, comp = 0;
    for (size_t i = 0, j = rv->head; i < rv->count; i++, j = j + 1 == rv->cap ? 0 : j + 1) {
        double y = rv->ring[j] - k;
        double t = sum + y;
        comp += fabs(sum) >= fabs(y) ? (sum - t) + y : (y - t) + sum;
        sum = t;
    }
    const double mean = (sum + comp) / n;
    /* Corrected two-pass: the second term removes the residual of the mean. */
    double m2 = 0, resid = 0;
    for (size_t i = 0, j = rv->head; i < rv->count; i++, j = j + 1 == rv->cap ? 0 : j + 1) {
        double d = (rv->ring[j] - k) - mean;
        m2 += d * d;
        resid += d;
    }
    m2 -= resid * resid / n;
    rv->shift = k;
    rv->mean = mean;
    rv->m2 = m2 > 0 ? m2 : 0;
    rv->m2_peak = rv->m2;
}

int ewp_rollvar_push(ewp_rollvar *rv, double x)
{
    if (!ewp_stats_accepts(x))
        return -1;
    if (rv->count == 0) {
        rv->head = 0;
        rv->ring[0] = x;
        rv->count = 1;
        rv->shift = x;
        rv->mean = rv->m2 = rv->m2_peak = 0;
        rv->updates = 0;
        return 0;
    }
    const double y = x - rv->shift;
    if (rv->count < rv->cap) {
        size_t tail = rv->head + rv->count;
        rv->ring[tail >= rv->cap ? tail - rv->cap : tail] = x;
        rv->count++;
        const double d = y - rv->mean;
        rv->mean += d / (double)rv->count;
        rv->m2 += d * (y - rv->mean);
    } else {
        const double old = rv->ring[rv->head] - rv->shift;
        rv->ring[rv->head] = x;
        rv->head = rv->head + 1 == rv->cap ? 0 : rv->head + 1;
        const double mean_old = rv->mean;
        rv->mean += (y - old) / (double)rv->count;
        rv->m2 += (y - old) * ((y - rv->mean) + (old - mean_old));
    }
    if (rv->m2 > rv->m2_peak)
        rv->m2_peak = rv->m2;
    rv->updates++;
    if (rv->updates >= rv->cap || rv->m2 < 0 || rv->m2 < rv->m2_peak * S_CANCEL_RATIO)
        ewp_rollvar_recompute(rv);
    return 0;
}

void ewp_rollvar_minmax(const ewp_rollvar *rv, double *lo, double *hi)
{
    double a = NAN, b = NAN;
    for (size_t i = 0; i < rv->count; i++) {
        double x = rv->ring[i]; /* the window fills slots 0..count-1 before it wraps */
        if (i == 0 || x < a)
            a = x;
        if (i == 0 || x > b)
            b = x;
    }
    *lo = a;
    *hi = b;
}

int ewp_rollmed_init(ewp_rollmed *rm, size_t cap)
{
    memset(rm, 0, sizeof *rm);
    if (cap == 0)
        return -1;
    rm->ring = malloc(cap * sizeof *rm->ring);
    rm->sorted = malloc(cap * sizeof *rm->sorted);
    if (!rm->ring || !rm->sorted) {
        ewp_rollmed_free(rm);
        return -1;
    }
    rm->cap = cap;
    return 0;
}

void ewp_rollmed_free(ewp_rollmed *rm)
{
    free(rm->ring);
    free(rm->sorted);
    memset(rm, 0, sizeof *rm);
}

/* First index whose value is >= x (x >= every element gives count). */
static size_t s_lower_bound(const double *a, size_t n, double x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int ewp_rollmed_push(ewp_rollmed *rm, double x)
{
    if (!ewp_stats_accepts(x))
        return -1;
    if (rm->count == rm->cap) {
        /* Evict the oldest from the sorted copy; it is there, so the lower bound finds it. */
        double old = rm->ring[rm->head];
        size_t p = s_lower_bound(rm->sorted, rm->count, old);
        memmove(rm->sorted + p, rm->sorted + p + 1, (rm->count - p - 1) * sizeof *rm->sorted);
        rm->count--;
        rm->ring[rm->head] = x;
        rm->head = rm->head + 1 == rm->cap ? 0 : rm->head + 1;
    } else {
        size_t tail = rm->head + rm->count;
        rm->ring[tail >= rm->cap ? tail - rm->cap : tail] = x;
    }
    size_t q = s_lower_bound(rm->sorted, rm->count, x);
    memmove(rm->sorted + q + 1, rm->sorted + q, (rm->count - q) * sizeof *rm->sorted);
    rm->sorted[q] = x;
    rm->count++;
    return 0;
}

double ewp_rollmed_median(const ewp_rollmed *rm)
{
    size_t n = rm->count;
    if (n == 0)
        return NAN;
    const double *s = rm->sorted;
    if (n & 1)
        return s[n / 2];
    /* a + (b - a) / 2 cannot overflow where (a + b) / 2 could. */
    return s[n / 2 - 1] + (s[n / 2] - s[n / 2 - 1]) / 2;
}

/* The deviations, as two ascending sequences: A[t] = m - s[h-1-t] (the lower
 * half walked down from the middle) and B[t] = s[h+t] - m (the upper half). */
typedef struct s_devs {
    const double *s;
    size_t h, n;
    double m;
} s_devs;

static double s_dev_a(const s_devs *d, size_t t)
{
    return d->m - d->s[d->h - 1 - t];
}

static double s_dev_b(const s_devs *d, size_t t)
{
    return d->s[d->h + t] - d->m;
}

/* k-th smallest (0-based) of the union of A (length h) and B (length n - h):
 * binary search for how many of the k + 1 smallest come from A. */
static double s_kth(const s_devs *d, size_t k)
{
    size_t la = d->h, lb = d->n - d->h;
    size_t lo = k + 1 > lb ? k + 1 - lb : 0;
    size_t hi = k + 1 < la ? k + 1 : la;
    while (lo < hi) {
        size_t i = lo + (hi - lo) / 2;
        size_t j = k + 1 - i;
        if (s_dev_a(d, i) < s_dev_b(d, j - 1))
            lo = i + 1;
        else
            hi = i;
    }
    size_t i = lo, j = k + 1 - lo;
    double a = i > 0 ? s_dev_a(d, i - 1) : -INFINITY;
    double b = j > 0 ? s_dev_b(d, j - 1) : -INFINITY;
    return a > b ? a : b;
}

double ewp_rollmed_mad(const ewp_rollmed *rm)
{
    size_t n = rm->count;
    if (n == 0)
        return NAN;
    s_devs d = {.s = rm->sorted, .h = (n + 1) / 2, .n = n, .m = ewp_rollmed_median(rm)};
    if (n & 1)
        return s_kth(&d, n / 2);
    double a = s_kth(&d, n / 2 - 1), b = s_kth(&d, n / 2);
    return a + (b - a) / 2;
}

double ewp_rollmed_meanad(const ewp_rollmed *rm)
{
    if (rm->count == 0)
        return NAN;
    double m = ewp_rollmed_median(rm), sum = 0;
    for (size_t i = 0; i < rm->count; i++)
        sum += fabs(rm->sorted[i] - m);
    return sum / (double)rm->count;
}

/* Beyond this x, erfc(x) nears the end of the double range: ln erfc(x) is
 * taken from the asymptotic series erfc(x) = e^(-x^2) / (x sqrt(pi)) *
 * (1 - 1/(2x^2) + 3/(2x^2)^2 - 15/(2x^2)^3 + ...), whose first omitted term
 * is below 1e-14 there. */
#define S_ERFC_ASYMPTOTIC 26.0
#define S_LN_SQRT_PI 0.57236494292470008

/* ln erfc(x) for x >= 0. */
static double s_log_erfc(double x)
{
    if (x < S_ERFC_ASYMPTOTIC)
        return log(erfc(x));
    const double u = 1 / (2 * x * x);
    return -x * x - log(x) - S_LN_SQRT_PI + log1p(u * (-1 + u * (3 + u * (-15 + u * 105))));
}

double ewp_normal_log_tail2(double z)
{
    if (!(z > 0))
        return 0;
    if (isinf(z))
        return -INFINITY;
    return s_log_erfc(z / M_SQRT2);
}

double ewp_normal_z_of_log_tail2(double lt)
{
    if (!(lt < 0))
        return 0;
    if (isinf(lt))
        return INFINITY;
    /* erfc(x) <= e^(-x^2) brackets the root: at z = sqrt(-2 lt) the tail is
     * at most e^lt; at 0 it is 1. Newton steps on the concave, decreasing
     * ln-tail, kept inside the bracket (bisection when they leave it). */
    double lo = 0, hi = sqrt(-2 * lt), z = hi;
    for (int it = 0; it < 100; it++) {
        double f = ewp_normal_log_tail2(z) - lt;
        if (f > 0)
            lo = z;
        else
            hi = z;
        /* d/dz ln P(|N| > z) = -sqrt(2/pi) e^(-z^2/2) / P(|N| > z) */
        double slope = -0.79788456080286536 * exp(-0.5 * z * z - ewp_normal_log_tail2(z));
        double next = z - f / slope;
        if (!(next > lo && next < hi))
            next = lo + (hi - lo) / 2;
        if (fabs(next - z) <= 1e-13 * z || hi - lo <= 1e-13 * hi)
            return next;
        z = next;
    }
    return z;
}

double ewp_log_gamma_half(unsigned k)
{
    /* Gamma(a + 1) = a Gamma(a), from Gamma(1/2) = sqrt(pi) or Gamma(1) = 1. */
    double lg = k % 2 ? S_LN_SQRT_PI : 0;
    for (unsigned j = k % 2 ? 1 : 2; j < k; j += 2)
        lg += log(j / 2.0);
    return lg;
}

double ewp_chi2_log_tail(double s, unsigned k)
{
    if (!(s > 0) || k == 0)
        return 0;
    if (isinf(s))
        return -INFINITY;
    const double a = k / 2.0, x = s / 2, eps = 1e-15, tiny = 1e-300;
    /* ln(e^-x x^a / Gamma(a)), the common factor of both expansions. */
    const double lpre = -x + a * log(x) - ewp_log_gamma_half(k);
    if (x < a + 1) {
        /* Lower tail by its power series, P = pre / a * sum x^n / ((a+1)...(a+n));
         * here P is not close to 1 in a way that loses Q (x is near the bulk). */
        double term = 1 / a, sum = term;
        for (int n = 1; n < 1000; n++) {
            term *= x / (a + n);
            sum += term;
            if (term < sum * eps)
                break;
        }
        double q = -expm1(lpre + log(sum));
        return q > 0 ? log(q) : -745.0; /* ln of the smallest double: not reached in the bulk */
    }
    /* Upper tail by its continued fraction Q = pre / (x + 1 - a - 1(1 - a) /
     * (x + 3 - a - 2(2 - a) / ...)), evaluated with the modified Lentz method. */
    double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < eps)
            break;
    }
    return lpre + log(h);
}
