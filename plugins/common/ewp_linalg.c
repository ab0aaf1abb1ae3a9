/* ewp_linalg: cyclic Jacobi eigensolver and two-pass covariance (see ewp_linalg.h). */
#include "ewp_linalg.h"

#include <math.h>
#include <string.h>

/* Applies the rotation in the (p, q) plane that zeroes m[p][q] of the symmetric
 * matrix m, and accumulates it into the eigenvector matrix v. The angle follows
 * Golub & Van Loan (8.5.2): theta = (m_qq - m_pp) / (2 m_pq), t = tan(phi) the
 * smaller root of t^2 + 2 t theta - 1 = 0, so that |phi| <= pi/4; the updates of
 * the other entries use tau = s / (1 + c), which loses less to rounding than
 * c and s directly (Rutishauser). */
static void s_rotate(double *m, double *v, size_t n, size_t p, size_t q)
{
    double apq = m[p * n + q];
    double theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
    double t = 1.0 / (fabs(theta) + sqrt(theta * theta + 1.0));
    if (theta < 0)
        t = -t;
    double c = 1.0 / sqrt(t * t + 1.0), s = t * c, tau = s / (1.0 + c);
    m[p * n + p] -= t * apq;
    m[q * n + q] += t * apq;
    m[p * n + q] = m[q * n + p] = 0.0;
    for (size_t r = 0; r < n; r++) {
        if (r == p || r == q)
            continue;
        double arp = m[r * n + p], arq = m[r * n + q];
        double np = arp - s * (arq + tau * arp);
        double nq = arq + s * (arp - tau * arq);
        m[r * n + p] = m[p * n + r] = np;
        m[r * n + q] = m[q * n + r] = nq;
    }
    for (size_t r = 0; r < n; r++) {
        double vp = v[r * n + p], vq = v[r * n + q];
        v[r * n + p] = vp - s * (vq + tau * vp);
        v[r * n + q] = vq + s * (vp - tau * vq);
    }
}

int ewp_eig_sym(const double *a, size_t n, double *values, double *vectors, double *work)
{
    if (n == 0)
        return 0;
    double *m = work, *val = work + n * n;
    memcpy(m, a, n * n * sizeof *m);
    double *v = vectors;
    for (size_t i = 0; i < n * n; i++)
        v[i] = 0.0;
    for (size_t i = 0; i < n; i++)
        v[i * n + i] = 1.0;
    double frob = 0.0;
    for (size_t i = 0; i < n * n; i++)
        frob += m[i] * m[i];
    if (!isfinite(frob))
        return -1;
    int sweep = 0;
    for (;; sweep++) {
        double off = 0.0;
        for (size_t p = 0; p < n; p++)
            for (size_t q = p + 1; q < n; q++)
                off += m[p * n + q] * m[p * n + q];
        /* Converged when the off-diagonal mass is rounding noise of the whole. */
        if (off <= 1e-30 * frob || off == 0.0)
            break;
        if (sweep == 100)
            return -1;
        /* Rutishauser's threshold: in the first sweeps only rotate entries that
         * are large against the mean off-diagonal size, which saves work. */
        double thresh = sweep < 3 ? 0.2 * sqrt(off) / (double)(n * n) : 0.0;
        for (size_t p = 0; p < n; p++) {
            for (size_t q = p + 1; q < n; q++) {
                double apq = m[p * n + q];
                if (apq == 0.0 || fabs(apq) <= thresh)
                    continue;
                /* An entry too small to change either diagonal entry is zero. */
                double g = 100.0 * fabs(apq);
                if (sweep > 3 && fabs(m[p * n + p]) + g == fabs(m[p * n + p]) &&
                    fabs(m[q * n + q]) + g == fabs(m[q * n + q])) {
                    m[p * n + q] = m[q * n + p] = 0.0;
                    continue;
                }
                s_rotate(m, v, n, p, q);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        val[i] = m[i * n + i];
    /* Selection sort of the eigenpairs, descending (n is small; stable on ties
     * by taking the first largest), done on the columns of v in place. */
    for (size_t j = 0; j < n; j++) {
        size_t best = j;
        for (size_t i = j + 1; i < n; i++)
            if (val[i] > val[best])
                best = i;
        if (best != j) {
            double t = val[j];
            val[j] = val[best];
            val[best] = t;
            for (size_t r = 0; r < n; r++) {
                double x = v[r * n + j];
                v[r * n + j] = v[r * n + best];
                v[r * n + best] = x;
            }
        }
        values[j] = val[j];
    }
    for (size_t j = 0; j < n; j++) {
        size_t big = 0;
        for (size_t r = 1; r < n; r++)
            if (fabs(v[r * n + j]) > fabs(v[big * n + j]))
                big = r;
        if (v[big * n + j] < 0)
            for (size_t r = 0; r < n; r++)
                v[r * n + j] = -v[r * n + j];
    }
    return sweep;
}

void ewp_mean_cov(const double *x, size_t n, size_t d, double *mean, double *cov)
{
    for (size_t c = 0; c < d; c++) {
        /* Neumaier's compensated sum: exact to about one rounding whatever n. */
        double sum = 0.0, comp = 0.0;
        for (size_t i = 0; i < n; i++) {
            double v = x[i * d + c], t = sum + v;
            comp += fabs(sum) >= fabs(v) ? (sum - t) + v : (v - t) + sum;
            sum = t;
        }
        mean[c] = (sum + comp) / (double)n;
    }
    for (size_t i = 0; i < d * d; i++)
        cov[i] = 0.0;
    /* Sums of products of deviations, upper triangle, row by row: each row's
     * deviations are formed once and the inner loop runs along cov's row. */
    for (size_t i = 0; i < n; i++) {
        const double *row = x + i * d;
        for (size_t a = 0; a < d; a++) {
            double da = row[a] - mean[a];
            double *out = cov + a * d;
            for (size_t b = a; b < d; b++)
                out[b] += da * (row[b] - mean[b]);
        }
    }
    double scale = 1.0 / (double)(n - 1);
    for (size_t a = 0; a < d; a++)
        for (size_t b = a; b < d; b++)
            cov[b * d + a] = cov[a * d + b] *= scale;
}
