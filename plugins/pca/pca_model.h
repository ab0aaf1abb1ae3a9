/* pca_model: the PCA monitoring model (standardisation, retained principal
 * directions, limits of Hotelling's T^2 and of Q), its fitting on training
 * rows, the per-sample statistics with their smoothing, and its versioned
 * little-endian file payload. */
#ifndef PCA_MODEL_H
#define PCA_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCA_MODEL_MAGIC "EWPCAMDL"
#define PCA_MODEL_VERSION 1
/* Longest channel name the SDK allows. */
#define PCA_NAME_MAX 128
/* Columns of a row (channels x (lags + 1)): the eigensolver is O(d^3) and
 * runs inside a batch, so a few seconds at most on a gateway. */
#define PCA_MAX_DIM 512
#define PCA_MAX_LAGS 100

/* Where the limits of T^2 and Q come from. */
typedef enum pca_limits {
    PCA_LIMITS_HOLDOUT = 0,     /* quantile on training rows the PCA was not fitted on */
    PCA_LIMITS_FITTED = 1,      /* quantile on the rows the PCA was fitted on */
    PCA_LIMITS_THEORETICAL = 2, /* F distribution (T^2) and Jackson-Mudholkar (Q) */
} pca_limits;

/* Everything in the config that shapes a model: a saved model is used only
 * when all of it, and the channel names, match the running node. */
typedef struct pca_settings {
    uint32_t channels;      /* input channels */
    uint32_t lags;          /* previous samples appended to each row */
    uint32_t components;    /* fixed number of components; 0 = by variance */
    uint32_t limits;        /* pca_limits */
    uint64_t train_samples; /* rows learnt from */
    double variance;        /* share of variance the components explain */
    double holdout;         /* share of the training rows held out for the limits */
    double quantile;        /* of the limits (1 - alpha for theoretical ones) */
    double smoothing;       /* EWMA lambda of T^2, Q and contributions; 0 = none */
} pca_settings;

/* The smoothed statistics: T^2, Q and each channel's contributions to them. */
typedef struct pca_state {
    bool primed;            /* false until the first row (which starts the EWMA) */
    double t2, q;
    double *ct2, *cq;       /* `channels` values each */
} pca_state;

typedef struct pca_model {
    pca_settings s;
    uint32_t d, k;          /* columns of a row; retained components */
    double *mean, *sd;      /* d each: standardisation */
    double *inv_sd;         /* d: 1 / sd */
    double *lambda;         /* k eigenvalues, descending */
    double *inv_l, *inv_sqrt_l; /* k: 1 / lambda, 1 / sqrt(lambda) */
    double *p;              /* d x k, row-major: loadings */
    double *pt;             /* k x d: the same, transposed (for the scoring loops) */
    double lim_t2, lim_q;   /* limits of the (smoothed) statistics */
    double explained;       /* share of variance of the k components */
    uint64_t rows_fit, rows_limit; /* rows the PCA and the limits came from */
    pca_state end;          /* smoothed statistics after the last training row */
} pca_model;

/* One row's results. */
typedef struct pca_result {
    double t2, q;           /* this row's T^2 and Q (unsmoothed) */
    double combined;        /* max(T2s / lim_t2, Qs / lim_q) of the smoothed ones */
    bool by_t2;             /* whether T^2 gave the maximum */
} pca_result;

/* Doubles of scratch pca_step needs. */
size_t pca_work_size(const pca_model *m);

/* Allocates a state of `channels` (zeroed, not primed). 0 or -1 (memory). */
int pca_state_alloc(pca_state *st, size_t channels);
void pca_state_free(pca_state *st);
void pca_state_copy(pca_state *dst, const pca_state *src, size_t channels);

/* Frees what pca_fit or pca_decode allocated; safe on a zeroed struct. */
void pca_model_free(pca_model *m);

/* Statistics of one complete row x (d columns: the lagged samples oldest first),
 * advancing the smoothed state. `contrib` (channels values, or NULL) gets each
 * channel's share of `combined`: its smoothed contribution to the statistic that
 * gave the maximum, over that statistic's limit (they sum to `combined`). No
 * allocation: `work` holds pca_work_size(m) doubles. */
void pca_step(const pca_model *m, const double *x, double *work, pca_state *st,
              pca_result *r, double *contrib);

/* Fits a model on n rows (oldest first) of d = channels * (lags + 1) columns and
 * sets its limits as `s` says; the rows are only read. Returns 0, or -1 with the
 * reason in err. `constant` (may be NULL) gets the columns that did not vary. */
int pca_fit(pca_model *m, const pca_settings *s, const double *rows, size_t n,
            size_t *constant, char *err, size_t errlen);

/* Serialises the model and the channel names into a malloc'd payload. 0 or -1. */
int pca_encode(const pca_model *m, const char *const *names, void **data, size_t *len);

/* Parses and fully checks a payload (magic, version, bounded sizes, exact length,
 * finite values, positive scales and limits, orthonormal loadings): -1 when it is
 * not a valid model; then compares it with `expect` and `names`: -2 when it was
 * learnt for other options or channels. err says why. On 0 *m is filled. */
int pca_decode(const void *data, size_t len, const pca_settings *expect,
               const char *const *names, pca_model *m, char *err, size_t errlen);

/* The classical limits: T^2 by the F distribution for a new observation,
 * k (n - 1) (n + 1) / (n (n - k)) F(k, n - k) at quantile q (Tracy, Young & Mason
 * 1992; Chiang, Russell & Braatz 2001), and Q by Jackson & Mudholkar (1979) from
 * the discarded eigenvalues, or Box's (1954) g chi^2(h) when their h0 <= 0. */
double pca_limit_t2_f(size_t k, size_t n, double q);
double pca_limit_q_jm(const double *discarded, size_t count, double q);

#endif
