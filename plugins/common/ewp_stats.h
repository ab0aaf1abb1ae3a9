/* ewp_stats: rolling statistics over the last N values of a stream: mean and
 * variance in O(1) per value, median and MAD in O(N) memmove + O(log N). */
#ifndef EWP_STATS_H
#define EWP_STATS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

/* The largest magnitude the rolling statistics accept. Squares of deviations
 * of such values, summed over a window of up to 1e7 values, stay below
 * DBL_MAX (4e300 * 1e7 = 4e307), so no value that is accepted can make a
 * variance, a MAD or a difference of two window values overflow. Larger
 * finite values (a corrupt reading, 1e155 squared is inf) are refused by
 * the push functions: callers report them as bad input. */
#define EWP_STATS_MAX_ABS 1e150

/* True when x can enter a rolling statistic: finite and |x| <= EWP_STATS_MAX_ABS. */
static inline bool ewp_stats_accepts(double x)
{
    return isfinite(x) && fabs(x) <= EWP_STATS_MAX_ABS;
}

/* Rolling mean and variance over a window of `cap` values.
 *
 * Values are kept relative to a shift K (a recent value), so that data such
 * as 1e9 + small noise is summed as small numbers and keeps its precision.
 * Welford's add/replace updates are O(1); the sums are recomputed exactly
 * (shifted two-pass with compensated summation) every `cap` updates and
 * whenever the sum of squares falls far below its recent peak, which is
 * exactly when the incremental update has cancelled away its precision
 * (e.g. a spike leaving the window of a flat signal). */
typedef struct ewp_rollvar {
    double *ring;    /* the raw values, oldest at `head` */
    size_t cap;      /* window length */
    size_t count;    /* values held, <= cap */
    size_t head;     /* index of the oldest value */
    double shift;    /* K: statistics are of (x - K) */
    double mean;     /* mean of (x - K) */
    double m2;       /* sum of squared deviations from the mean */
    double m2_peak;  /* largest m2 since the last exact recompute */
    size_t updates;  /* updates since the last exact recompute */
} ewp_rollvar;

/* Allocates the window. Returns 0, or -1 when out of memory (or cap == 0). */
int ewp_rollvar_init(ewp_rollvar *rv, size_t cap);
/* Frees the window; safe on a zeroed struct. */
void ewp_rollvar_free(ewp_rollvar *rv);
/* Adds a value, evicting the oldest once the window is full. Returns 0, or -1
 * (and leaves the window as it was) when ewp_stats_accepts(x) is false. */
int ewp_rollvar_push(ewp_rollvar *rv, double x);
/* Recomputes mean and m2 exactly from the window (done automatically). */
void ewp_rollvar_recompute(ewp_rollvar *rv);

/* Values in the window. */
static inline size_t ewp_rollvar_count(const ewp_rollvar *rv)
{
    return rv->count;
}

/* Mean of the window (NaN when empty). */
static inline double ewp_rollvar_mean(const ewp_rollvar *rv)
{
    return rv->count ? rv->shift + rv->mean : NAN;
}

/* x minus the window mean, computed in the shifted frame for precision. */
static inline double ewp_rollvar_deviation(const ewp_rollvar *rv, double x)
{
    return (x - rv->shift) - rv->mean;
}

/* Sample variance (divisor n - 1, as pandas' rolling std); NaN below 2 values. */
static inline double ewp_rollvar_variance(const ewp_rollvar *rv)
{
    return rv->count >= 2 ? rv->m2 / (double)(rv->count - 1) : NAN;
}

/* Smallest and largest value in the window (NaN, NaN when empty), O(N). */
void ewp_rollvar_minmax(const ewp_rollvar *rv, double *lo, double *hi);

/* Rolling median and median absolute deviation over a window of `cap` values.
 * A sorted copy of the window is kept up to date with binary search and
 * memmove; the MAD is then a k-th smallest of two sorted sequences (the
 * deviations below and above the median), found in O(log N). */
typedef struct ewp_rollmed {
    double *ring;    /* the values in arrival order, oldest at `head` */
    double *sorted;  /* the same values, ascending */
    size_t cap, count, head;
} ewp_rollmed;

/* Allocates the window. Returns 0, or -1 when out of memory (or cap == 0). */
int ewp_rollmed_init(ewp_rollmed *rm, size_t cap);
/* Frees the window; safe on a zeroed struct. */
void ewp_rollmed_free(ewp_rollmed *rm);
/* Adds a value, evicting the oldest once the window is full. Returns 0, or -1
 * (and leaves the window as it was) when ewp_stats_accepts(x) is false. */
int ewp_rollmed_push(ewp_rollmed *rm, double x);
/* Median of the window (mean of the two middle values for an even count); NaN when empty. */
double ewp_rollmed_median(const ewp_rollmed *rm);
/* Median of |x_i - median| over the window (unscaled); NaN when empty. */
double ewp_rollmed_mad(const ewp_rollmed *rm);
/* Mean of |x_i - median| over the window, O(N); NaN when empty. */
double ewp_rollmed_meanad(const ewp_rollmed *rm);

/* Values in the window. */
static inline size_t ewp_rollmed_count(const ewp_rollmed *rm)
{
    return rm->count;
}

/* Tail probabilities, on a log scale so that nothing underflows: a z of 50 or
 * a chi-square of 1e4 has a tail far below DBL_MIN but a finite logarithm. */

/* ln P(|N(0,1)| > z), the two-sided normal tail, for any z (0 for z <= 0). */
double ewp_normal_log_tail2(double z);
/* The z >= 0 whose two-sided normal tail is e^lt (lt <= 0): the inverse of
 * ewp_normal_log_tail2, to express any tail probability as a one-channel z. */
double ewp_normal_z_of_log_tail2(double lt);
/* ln Gamma(k / 2) for k >= 1, by exact recurrence from Gamma(1/2) and Gamma(1). */
double ewp_log_gamma_half(unsigned k);
/* ln P(X > s) for X chi-square with k >= 1 degrees of freedom (0 for s <= 0):
 * ln of the regularised upper incomplete gamma function Q(k/2, s/2). */
double ewp_chi2_log_tail(double s, unsigned k);

#endif
