/* pca_model: fitting, per-row statistics and the checked payload of the PCA
 * monitoring model (see pca_model.h and README.md, "Model file"). */
#include "pca_model.h"

#include "ewp_linalg.h"
#include "ewp_quantile.h"

#include <edgewatch/bytes.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A standard deviation at or below this share of the channel's magnitude is a
 * constant channel: scaled by 1 instead, so that a later change shows in Q. */
#define S_CONSTANT_REL 1e-12
/* Eigenvalues below this share of the total variance are not retained: their
 * 1 / lambda would turn rounding noise into huge T^2 values. */
#define S_EIG_REL 1e-10
/* Floors of the limits, in standardised units, for data without residual variance. */
#define S_LIMIT_FLOOR 1e-9

size_t pca_work_size(const pca_model *m)
{
    return 4 * (size_t)m->d + 2 * (size_t)m->k;
}

int pca_state_alloc(pca_state *st, size_t channels)
{
    memset(st, 0, sizeof *st);
    st->ct2 = calloc(channels ? channels : 1, sizeof *st->ct2);
    st->cq = calloc(channels ? channels : 1, sizeof *st->cq);
    if (!st->ct2 || !st->cq) {
        pca_state_free(st);
        return -1;
    }
    return 0;
}

void pca_state_free(pca_state *st)
{
    free(st->ct2);
    free(st->cq);
    st->ct2 = st->cq = NULL;
}

void pca_state_copy(pca_state *dst, const pca_state *src, size_t channels)
{
    dst->primed = src->primed;
    dst->t2 = src->t2;
    dst->q = src->q;
    memcpy(dst->ct2, src->ct2, channels * sizeof *dst->ct2);
    memcpy(dst->cq, src->cq, channels * sizeof *dst->cq);
}

void pca_model_free(pca_model *m)
{
    if (!m)
        return;
    free(m->mean);
    free(m->sd);
    free(m->inv_sd);
    free(m->lambda);
    free(m->inv_l);
    free(m->inv_sqrt_l);
    free(m->p);
    free(m->pt);
    pca_state_free(&m->end);
    memset(m, 0, sizeof *m);
}

/* Allocates the arrays of a model with d columns and k components. */
static int s_alloc(pca_model *m, size_t d, size_t k, size_t channels)
{
    m->d = (uint32_t)d;
    m->k = (uint32_t)k;
    m->mean = malloc(d * sizeof *m->mean);
    m->sd = malloc(d * sizeof *m->sd);
    m->inv_sd = malloc(d * sizeof *m->inv_sd);
    m->lambda = malloc(k * sizeof *m->lambda);
    m->inv_l = malloc(k * sizeof *m->inv_l);
    m->inv_sqrt_l = malloc(k * sizeof *m->inv_sqrt_l);
    m->p = malloc(d * k * sizeof *m->p);
    m->pt = malloc(d * k * sizeof *m->pt);
    if (!m->mean || !m->sd || !m->inv_sd || !m->lambda || !m->inv_l || !m->inv_sqrt_l || !m->p ||
        !m->pt || pca_state_alloc(&m->end, channels) < 0)
        return -1;
    return 0;
}

/* Fills the derived arrays (1 / sd, 1 / lambda, the transposed loadings). */
static void s_derive(pca_model *m)
{
    const size_t d = m->d, k = m->k;
    for (size_t c = 0; c < d; c++)
        m->inv_sd[c] = 1.0 / m->sd[c];
    for (size_t j = 0; j < k; j++) {
        m->inv_l[j] = 1.0 / m->lambda[j];
        m->inv_sqrt_l[j] = 1.0 / sqrt(m->lambda[j]);
    }
    for (size_t c = 0; c < d; c++)
        for (size_t j = 0; j < k; j++)
            m->pt[j * d + c] = m->p[c * k + j];
}

/* Scores a row: z = (x - mean) / sd, scores t = P' z, T^2 = sum t_j^2 / lambda_j,
 * residual e = z - P t, Q = |e|^2. Per column: e_c^2 (the Q contributions) and
 * w_c^2 with w = P Lambda^(-1/2) t = D^(1/2) z, D = P Lambda^-1 P' (the complete
 * decomposition of T^2 = z' D z of Alcala & Qin 2009: >= 0, summing to T^2).
 * The loops run along contiguous rows of P or P' so that they vectorise. */
static void s_row(const pca_model *m, const double *x, double *work, double *t2out, double *qout)
{
    const size_t d = m->d, k = m->k;
    double *z = work, *rec = work + d, *w = work + 2 * d, *t = work + 4 * d, *u = t + k;
    for (size_t c = 0; c < d; c++)
        z[c] = (x[c] - m->mean[c]) * m->inv_sd[c];
    for (size_t j = 0; j < k; j++)
        t[j] = 0;
    for (size_t c = 0; c < d; c++) {
        const double zc = z[c], *pr = m->p + c * k;
        for (size_t j = 0; j < k; j++)
            t[j] += zc * pr[j];
    }
    double t2 = 0;
    for (size_t j = 0; j < k; j++) {
        t2 += t[j] * t[j] * m->inv_l[j];
        u[j] = t[j] * m->inv_sqrt_l[j];
    }
    for (size_t c = 0; c < d; c++)
        rec[c] = w[c] = 0;
    for (size_t j = 0; j < k; j++) {
        const double tj = t[j], uj = u[j], *pr = m->pt + j * d;
        for (size_t c = 0; c < d; c++) {
            rec[c] += tj * pr[c];
            w[c] += uj * pr[c];
        }
    }
    double q = 0;
    for (size_t c = 0; c < d; c++) {
        double e = z[c] - rec[c];
        rec[c] = e * e;     /* now the Q contribution of column c */
        w[c] = w[c] * w[c]; /* and the T^2 contribution */
        q += rec[c];
    }
    *t2out = t2;
    *qout = q;
}

void pca_step(const pca_model *m, const double *x, double *work, pca_state *st,
              pca_result *r, double *contrib)
{
    const size_t d = m->d, nch = m->s.channels;
    double t2, q;
    s_row(m, x, work, &t2, &q);
    const double *cq = work + d, *ct2 = work + 2 * d;
    /* Smoothing: s = lambda x + (1 - lambda) s, started at the first row's value;
     * contributions are smoothed the same way, so they still sum to the statistic. */
    const double lam = m->s.smoothing > 0 ? m->s.smoothing : 1.0;
    const double keep = st->primed ? 1.0 - lam : 0.0, take = st->primed ? lam : 1.0;
    st->t2 = take * t2 + keep * st->t2;
    st->q = take * q + keep * st->q;
    for (size_t ch = 0; ch < nch; ch++) {
        double a = 0, b = 0;
        /* Columns of a lagged row: lag slot * channels + channel. */
        for (size_t c = ch; c < d; c += nch) {
            a += ct2[c];
            b += cq[c];
        }
        st->ct2[ch] = take * a + keep * st->ct2[ch];
        st->cq[ch] = take * b + keep * st->cq[ch];
    }
    st->primed = true;
    double a = st->t2 / m->lim_t2, b = st->q / m->lim_q;
    r->t2 = t2;
    r->q = q;
    r->by_t2 = a >= b;
    r->combined = r->by_t2 ? a : b;
    if (contrib) {
        const double *src = r->by_t2 ? st->ct2 : st->cq;
        const double inv = 1.0 / (r->by_t2 ? m->lim_t2 : m->lim_q);
        for (size_t ch = 0; ch < nch; ch++)
            contrib[ch] = src[ch] * inv;
    }
}

static int s_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int pca_fit(pca_model *m, const pca_settings *s, const double *rows, size_t n,
            size_t *constant, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    const size_t d = (size_t)s->channels * (s->lags + 1);
    const bool holdout = s->limits == PCA_LIMITS_HOLDOUT;
    size_t held = holdout ? (size_t)llround(s->holdout * (double)n) : 0;
    size_t nfit = n - held;
    if (nfit < 2 || (holdout && held < 2))
        return s_fail(err, errlen, "%zu training rows are too few to fit on %zu and hold out %zu",
                      n, nfit, held);
    double *mean = malloc(d * sizeof *mean), *cov = malloc(d * d * sizeof *cov);
    double *vals = malloc(d * sizeof *vals), *vecs = malloc(d * d * sizeof *vecs);
    double *work = malloc((d * d + 2 * d) * sizeof *work);
    double *t2s = NULL, *qs = NULL, *swork = NULL;
    int rc = -1;
    if (!mean || !cov || !vals || !vecs || !work) {
        s_fail(err, errlen, "out of memory fitting %zu columns", d);
        goto done;
    }
    ewp_mean_cov(rows, nfit, d, mean, cov);
    size_t nconst = 0;
    for (size_t c = 0; c < d; c++) {
        double sd = sqrt(cov[c * d + c]);
        if (!(sd > S_CONSTANT_REL * fmax(1.0, fabs(mean[c])))) {
            nconst++;
            vals[c] = 0; /* marks the column constant below */
        } else {
            vals[c] = sd;
        }
    }
    /* The correlation matrix; a constant column gets zero row and column (an
     * eigenvalue 0, never retained, so a change in it shows in Q). */
    for (size_t a = 0; a < d; a++)
        for (size_t b = 0; b < d; b++)
            cov[a * d + b] = vals[a] > 0 && vals[b] > 0 ? cov[a * d + b] / (vals[a] * vals[b]) : 0.0;
    for (size_t a = 0; a < d; a++)
        if (vals[a] > 0)
            cov[a * d + a] = 1.0;
    double *sd = malloc(d * sizeof *sd);
    if (!sd) {
        s_fail(err, errlen, "out of memory fitting %zu columns", d);
        goto done;
    }
    for (size_t c = 0; c < d; c++)
        sd[c] = vals[c] > 0 ? vals[c] : 1.0;
    if (ewp_eig_sym(cov, d, vals, vecs, work) < 0) {
        free(sd);
        s_fail(err, errlen, "the eigensolver did not converge (non-finite training values?)");
        goto done;
    }
    double total = 0;
    for (size_t j = 0; j < d; j++) {
        if (vals[j] < 0)
            vals[j] = 0;
        total += vals[j];
    }
    bool flat = !(total > 0);
    if (flat) {
        /* Every column was constant: a one-component model along the first column
         * with unit variance, so that any later change shows in T^2 or Q (at its
         * raw size) instead of the node failing on a flat-lining plant. */
        for (size_t i = 0; i < d * d; i++)
            vecs[i] = (i % (d + 1)) == 0 ? 1.0 : 0.0;
        vals[0] = total = 1.0;
    }
    size_t usable = 0;
    while (usable < d && vals[usable] > S_EIG_REL * total)
        usable++;
    size_t k;
    if (s->components > 0) {
        k = s->components;
    } else {
        double cum = 0;
        k = 0;
        while (k < d && cum < s->variance * total)
            cum += vals[k++];
    }
    /* Leave a residual space for Q whenever there are two columns or more. */
    if (d > 1 && k > d - 1)
        k = d - 1;
    if (k > usable)
        k = usable;
    if (k < 1)
        k = 1;
    if (s_alloc(m, d, k, s->channels) < 0) {
        free(sd);
        s_fail(err, errlen, "out of memory for the model");
        goto done;
    }
    m->s = *s;
    memcpy(m->mean, mean, d * sizeof *mean);
    memcpy(m->sd, sd, d * sizeof *sd);
    free(sd);
    double kept = 0;
    for (size_t j = 0; j < k; j++) {
        m->lambda[j] = vals[j];
        kept += vals[j];
    }
    m->explained = kept / total;
    for (size_t c = 0; c < d; c++)
        for (size_t j = 0; j < k; j++)
            m->p[c * k + j] = vecs[c * d + j];
    s_derive(m);
    m->rows_fit = nfit;
    m->rows_limit = holdout ? held : n;
    /* Statistics of every training row in order, unsmoothed limits first (1) so
     * that combined values are defined, then the quantiles of the smoothed ones. */
    m->lim_t2 = m->lim_q = 1.0;
    t2s = malloc(n * sizeof *t2s);
    qs = malloc(n * sizeof *qs);
    swork = malloc(pca_work_size(m) * sizeof *swork);
    if (!t2s || !qs || !swork) {
        s_fail(err, errlen, "out of memory for the limits");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        pca_result r;
        pca_step(m, rows + i * d, swork, &m->end, &r, NULL);
        t2s[i] = m->end.t2;
        qs[i] = m->end.q;
    }
    if (s->limits == PCA_LIMITS_THEORETICAL) {
        m->lim_t2 = pca_limit_t2_f(k, nfit, s->quantile);
        m->lim_q = pca_limit_q_jm(vals + k, d - k, s->quantile);
    } else {
        size_t from = holdout ? nfit : 0;
        m->lim_t2 = ewp_quantile(t2s + from, n - from, s->quantile);
        m->lim_q = ewp_quantile(qs + from, n - from, s->quantile);
    }
    if (!isfinite(m->lim_t2) || !isfinite(m->lim_q)) {
        s_fail(err, errlen, "the limits are not finite (T^2 %g, Q %g)", m->lim_t2, m->lim_q);
        goto done;
    }
    m->lim_t2 = fmax(m->lim_t2, S_LIMIT_FLOOR);
    m->lim_q = fmax(m->lim_q, S_LIMIT_FLOOR * (double)d);
    if (constant)
        *constant = nconst;
    rc = 0;
done:
    if (rc != 0)
        pca_model_free(m);
    free(mean);
    free(cov);
    free(vals);
    free(vecs);
    free(work);
    free(t2s);
    free(qs);
    free(swork);
    return rc;
}

/* ---- payload ------------------------------------------------------------------------------ */

/* Bytes of the fixed part: magic, version, 5 u32, 1 u64, 4 settings doubles. */
#define S_HEAD (8 + 4 + 5 * 4 + 8 + 4 * 8)

typedef struct s_cursor {
    unsigned char *w;
    const unsigned char *r, *end;
    bool bad;
} s_cursor;

static void s_put32(s_cursor *c, uint32_t v)
{
    ew_le_put32(c->w, v);
    c->w += 4;
}

static void s_put64(s_cursor *c, uint64_t v)
{
    ew_le_put64(c->w, v);
    c->w += 8;
}

static void s_putf(s_cursor *c, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++, c->w += 8)
        ew_le_put_f64(c->w, v[i]);
}

static bool s_has(s_cursor *c, size_t n)
{
    if (c->bad || (size_t)(c->end - c->r) < n)
        c->bad = true;
    return !c->bad;
}

static uint32_t s_get32(s_cursor *c)
{
    if (!s_has(c, 4))
        return 0;
    uint32_t v = ew_le_get32(c->r);
    c->r += 4;
    return v;
}

static uint64_t s_get64(s_cursor *c)
{
    if (!s_has(c, 8))
        return 0;
    uint64_t v = ew_le_get64(c->r);
    c->r += 8;
    return v;
}

/* Reads n doubles; false when short or when one is not finite. */
static bool s_getf(s_cursor *c, double *v, size_t n)
{
    if (!s_has(c, 8 * n))
        return false;
    for (size_t i = 0; i < n; i++, c->r += 8) {
        v[i] = ew_le_get_f64(c->r);
        if (!isfinite(v[i]))
            return false;
    }
    return true;
}

static size_t s_payload_size(const pca_model *m, const char *const *names)
{
    size_t d = m->d, k = m->k, nch = m->s.channels;
    size_t size = S_HEAD + 2 * 4;
    for (size_t c = 0; c < nch; c++)
        size += 4 + strlen(names[c]);
    size += (size_t)8 * (2 * d + k + d * k + 3) + (size_t)2 * 8 + (size_t)8 * (2 + 2 * nch) + 4;
    return size;
}

int pca_encode(const pca_model *m, const char *const *names, void **data, size_t *len)
{
    const size_t d = m->d, k = m->k, nch = m->s.channels;
    size_t size = s_payload_size(m, names);
    unsigned char *buf = malloc(size);
    if (!buf)
        return -1;
    s_cursor c = {.w = buf};
    memcpy(c.w, PCA_MODEL_MAGIC, 8);
    c.w += 8;
    s_put32(&c, PCA_MODEL_VERSION);
    s_put32(&c, m->s.channels);
    s_put32(&c, m->s.lags);
    s_put32(&c, m->s.components);
    s_put32(&c, m->s.limits);
    s_put32(&c, 0); /* reserved */
    s_put64(&c, m->s.train_samples);
    s_putf(&c, (double[]){m->s.variance, m->s.holdout, m->s.quantile, m->s.smoothing}, 4);
    s_put32(&c, m->d);
    s_put32(&c, m->k);
    for (size_t i = 0; i < nch; i++) {
        size_t n = strlen(names[i]);
        s_put32(&c, (uint32_t)n);
        memcpy(c.w, names[i], n);
        c.w += n;
    }
    s_putf(&c, m->mean, d);
    s_putf(&c, m->sd, d);
    s_putf(&c, m->lambda, k);
    s_putf(&c, m->p, d * k);
    s_putf(&c, (double[]){m->lim_t2, m->lim_q, m->explained}, 3);
    s_put64(&c, m->rows_fit);
    s_put64(&c, m->rows_limit);
    s_putf(&c, (double[]){m->end.t2, m->end.q}, 2);
    s_putf(&c, m->end.ct2, nch);
    s_putf(&c, m->end.cq, nch);
    s_put32(&c, m->end.primed);
    *data = buf;
    *len = (size_t)(c.w - buf);
    return 0;
}

int pca_decode(const void *data, size_t len, const pca_settings *expect,
               const char *const *names, pca_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    s_cursor c = {.r = data, .end = (const unsigned char *)data + len};
    if (len < S_HEAD || memcmp(data, PCA_MODEL_MAGIC, 8) != 0)
        return s_fail(err, errlen, "not a pca model (bad magic or too short)");
    c.r += 8;
    uint32_t version = s_get32(&c);
    if (version != PCA_MODEL_VERSION)
        return s_fail(err, errlen, "model format version %u, this plugin reads %d", version,
                      PCA_MODEL_VERSION);
    pca_settings s = {0};
    s.channels = s_get32(&c);
    s.lags = s_get32(&c);
    s.components = s_get32(&c);
    s.limits = s_get32(&c);
    (void)s_get32(&c);
    s.train_samples = s_get64(&c);
    double set[4];
    if (!s_getf(&c, set, 4))
        return s_fail(err, errlen, "settings truncated or not finite");
    s.variance = set[0], s.holdout = set[1], s.quantile = set[2], s.smoothing = set[3];
    uint32_t d = s_get32(&c), k = s_get32(&c);
    if (c.bad || s.channels < 1 || s.lags > PCA_MAX_LAGS || s.limits > PCA_LIMITS_THEORETICAL ||
        d != (uint64_t)s.channels * (s.lags + 1) || d > PCA_MAX_DIM || k < 1 || k > d ||
        !(s.variance > 0 && s.variance <= 1) || !(s.holdout >= 0 && s.holdout < 1) ||
        !(s.quantile > 0 && s.quantile < 1) || !(s.smoothing >= 0 && s.smoothing <= 1))
        return s_fail(err, errlen, "sizes or settings out of range (channels %u, lags %u, "
                                   "columns %u, components %u)", s.channels, s.lags, d, k);
    /* Every later field has a known size: the remaining length must match exactly
     * once the names are read, so nothing is allocated from an untrusted size. */
    const char *mismatch = NULL;
    char what[300] = "";
    for (size_t i = 0; i < s.channels; i++) {
        uint32_t n = s_get32(&c);
        if (c.bad || n < 1 || n > PCA_NAME_MAX || !s_has(&c, n))
            return s_fail(err, errlen, "channel name %zu truncated or of bad length", i);
        for (uint32_t b = 0; b < n; b++)
            if (c.r[b] < 0x20 || c.r[b] == 0x7f)
                return s_fail(err, errlen, "channel name %zu has a control character", i);
        if (!mismatch && (i >= expect->channels || strlen(names[i]) != n ||
                          memcmp(names[i], c.r, n) != 0)) {
            snprintf(what, sizeof what, "input channel %zu is '%.*s' in the model but '%s' here",
                     i + 1, (int)(n > 60 ? 60 : n), (const char *)c.r,
                     i < expect->channels ? names[i] : "(none)");
            mismatch = what;
        }
        c.r += n;
    }
    size_t nch = s.channels;
    size_t rest = 8 * (2 * (size_t)d + k + (size_t)d * k + 3) + 16 + 8 * (2 + 2 * nch) + 4;
    if ((size_t)(c.end - c.r) != rest)
        return s_fail(err, errlen, "length %zu does not match its sizes (expected %zu more bytes "
                                   "after the names, found %zu)", len, rest,
                      (size_t)(c.end - c.r));
    if (s_alloc(m, d, k, nch) < 0)
        return s_fail(err, errlen, "out of memory");
    m->s = s;
    double lim[3], st[2];
    bool ok = s_getf(&c, m->mean, d) && s_getf(&c, m->sd, d) && s_getf(&c, m->lambda, k) &&
              s_getf(&c, m->p, (size_t)d * k) && s_getf(&c, lim, 3);
    m->rows_fit = s_get64(&c);
    m->rows_limit = s_get64(&c);
    ok = ok && s_getf(&c, st, 2) && s_getf(&c, m->end.ct2, nch) && s_getf(&c, m->end.cq, nch);
    uint32_t primed = s_get32(&c);
    const char *why = NULL;
    if (!ok || c.bad)
        why = "a value is not finite";
    for (size_t i = 0; !why && i < d; i++)
        if (!(m->sd[i] > 0))
            why = "a scale is not positive";
    for (size_t j = 0; !why && j < k; j++)
        if (!(m->lambda[j] > 0) || (j > 0 && m->lambda[j] > m->lambda[j - 1]))
            why = "eigenvalues are not positive and descending";
    if (!why && (!(lim[0] > 0) || !(lim[1] > 0) || !(lim[2] > 0 && lim[2] <= 1 + 1e-9)))
        why = "limits are not positive";
    if (!why && (!(st[0] >= 0) || !(st[1] >= 0) || primed > 1))
        why = "the smoothed state is invalid";
    for (size_t i = 0; !why && i < nch; i++)
        if (!(m->end.ct2[i] >= 0) || !(m->end.cq[i] >= 0))
            why = "the smoothed contributions are invalid";
    /* The loadings must be orthonormal: T^2 and Q mean nothing otherwise. */
    for (size_t a = 0; !why && a < k; a++)
        for (size_t b = a; !why && b < k; b++) {
            double dot = 0;
            for (size_t r = 0; r < d; r++)
                dot += m->p[r * k + a] * m->p[r * k + b];
            if (fabs(dot - (a == b ? 1.0 : 0.0)) > 1e-6)
                why = "the loadings are not orthonormal";
        }
    if (why) {
        pca_model_free(m);
        return s_fail(err, errlen, "%s", why);
    }
    m->lim_t2 = lim[0];
    m->lim_q = lim[1];
    m->explained = lim[2];
    m->end.t2 = st[0];
    m->end.q = st[1];
    m->end.primed = primed;
    s_derive(m);
    /* Now the comparison with the running config. */
    char diff[200] = "";
    if (s.channels != expect->channels)
        snprintf(diff, sizeof diff, "it has %u input channels, the node %u", s.channels,
                 expect->channels);
    else if (mismatch)
        snprintf(diff, sizeof diff, "%s", mismatch);
    else if (s.lags != expect->lags)
        snprintf(diff, sizeof diff, "lags = %u in the model, %u here", s.lags, expect->lags);
    else if (s.components != expect->components)
        snprintf(diff, sizeof diff, "components = %u in the model, %u here", s.components,
                 expect->components);
    else if (s.limits != expect->limits)
        snprintf(diff, sizeof diff, "another limits option");
    else if (s.train_samples != expect->train_samples)
        snprintf(diff, sizeof diff, "train_samples = %llu in the model, %llu here",
                 (unsigned long long)s.train_samples, (unsigned long long)expect->train_samples);
    else if (s.variance != expect->variance)
        snprintf(diff, sizeof diff, "variance = %g in the model, %g here", s.variance,
                 expect->variance);
    else if (s.holdout != expect->holdout)
        snprintf(diff, sizeof diff, "holdout = %g in the model, %g here", s.holdout,
                 expect->holdout);
    else if (s.quantile != expect->quantile)
        snprintf(diff, sizeof diff, "quantile = %g in the model, %g here", s.quantile,
                 expect->quantile);
    else if (s.smoothing != expect->smoothing)
        snprintf(diff, sizeof diff, "smoothing = %g in the model, %g here", s.smoothing,
                 expect->smoothing);
    if (diff[0]) {
        pca_model_free(m);
        snprintf(err, errlen, "%s", diff);
        return -2;
    }
    return 0;
}
