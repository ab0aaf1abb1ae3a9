/* ewp_linalg: dense symmetric linear algebra for detectors that learn a linear
 * model of their channels (PCA): the symmetric eigendecomposition by the cyclic
 * Jacobi method, and a numerically careful covariance of stored rows. */
#ifndef EWP_LINALG_H
#define EWP_LINALG_H

#include <stddef.h>

/* Eigendecomposition of the symmetric n x n matrix `a` (row-major; only read,
 * the lower triangle must mirror the upper one) by cyclic Jacobi rotations
 * (Jacobi 1846; Golub & Van Loan, "Matrix Computations", section 8.5; the
 * threshold strategy of Rutishauser). On success `values` holds the n
 * eigenvalues in descending order and column j of `vectors` (row-major n x n,
 * vectors[r * n + j]) the unit eigenvector of values[j], each signed so that its
 * largest component (the first one on a tie) is positive, which makes the
 * result deterministic. `work` must hold n * n + 2 * n doubles.
 * Returns the number of sweeps used (>= 0), or -1 when it did not converge in
 * 100 sweeps (which needs NaN or infinite input: Jacobi converges quadratically). */
int ewp_eig_sym(const double *a, size_t n, double *values, double *vectors, double *work);

/* Mean and covariance (divisor n - 1) of n rows of d columns (row-major), by two
 * passes: the mean with compensated (Neumaier) summation, then the sums of
 * products of deviations from it, so that data far from zero (1e9 + noise) keeps
 * its precision. `mean` gets d values, `cov` d * d (row-major, symmetric).
 * Needs n >= 2. */
void ewp_mean_cov(const double *x, size_t n, size_t d, double *mean, double *cov);

#endif
