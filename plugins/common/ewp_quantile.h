/* ewp_quantile: sample quantiles (numpy's default "linear" method), for detectors
 * that set a threshold at a quantile of their training scores or errors. */
#ifndef EWP_QUANTILE_H
#define EWP_QUANTILE_H

#include <stddef.h>

/* Quantile q in [0, 1] of n ascending values: linear interpolation between the
 * order statistics at floor and ceil of q * (n - 1), as numpy.quantile does by
 * default. NaN when n == 0. */
double ewp_quantile_sorted(const double *sorted, size_t n, double q);

/* Sorts `values` ascending in place (NaNs, which should not be there, go last)
 * and returns ewp_quantile_sorted of them. */
double ewp_quantile(double *values, size_t n, double q);

#endif
