/* forest: isolation forest training, branch-free scoring and the model file
 * format, written to score exactly as scikit-learn 1.2's IsolationForest. */
#include "forest.h"

#include <edgewatch/bytes.h>

#include "ewp_rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_magic[8] = {'E', 'W', 'I', 'F', 'O', 'R', 'S', 'T'};

enum {
    S_HEADER_SIZE = 48,
    S_HEADER_SIZE_V2 = 56, /* version 2: + u32 window, u32 reserved; version 3: u32 meta length */
    S_TREE_HEADER_SIZE = 8,
    S_NODE_SIZE = 32,
};

/* Generous caps that still stop a hostile header from asking for absurd work;
 * the byte count of the file is the real bound on allocation. */
#define S_MAX_FEATURES (1u << 20)
#define S_MAX_TREES (1u << 20)
#define S_MAX_SAMPLE_SIZE ((uint64_t)1 << 53)

/* numpy's np.euler_gamma, the constant sklearn uses. */
#define S_EULER_GAMMA 0.5772156649015329

/* Rows scored together, tree by tree (see ifo_path_sums). */
#define S_CHUNK 256

static void s_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void s_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

double ifo_average_path_length(double n)
{
    if (n <= 1)
        return 0.0;
    if (n == 2)
        return 1.0;
    return 2.0 * (log(n - 1.0) + S_EULER_GAMMA) - 2.0 * (n - 1.0) / n;
}

uint64_t ifo_schema_hash(size_t count, const char *const *names)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < count; i++) {
        for (const unsigned char *p = (const unsigned char *)names[i];; p++) {
            h = (h ^ *p) * 0x100000001b3ull;
            if (!*p)
                break;
        }
    }
    return h ? h : 1; /* 0 means "unknown" in the format */
}

void ifo_free(ifo_forest **f)
{
    if (!f || !*f)
        return;
    free((*f)->tree_start);
    free((*f)->tree_depth);
    free((*f)->nodes);
    free((*f)->leaf_value);
    free((*f)->node_samples);
    free((*f)->center);
    free((*f)->scale);
    free((*f)->lo);
    free((*f)->hi);
    free((*f)->unit);
    free((*f)->flo);
    free((*f)->fhi);
    free((*f)->meta);
    free(*f);
    *f = NULL;
}

static ifo_forest *s_alloc(uint32_t nf, uint32_t n_trees, size_t total_nodes)
{
    ifo_forest *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->n_features = nf;
    f->window = 1;
    f->n_trees = n_trees;
    f->tree_start = calloc((size_t)n_trees + 1, sizeof *f->tree_start);
    f->tree_depth = calloc(n_trees, 1);
    f->nodes = calloc(total_nodes, sizeof *f->nodes);
    f->leaf_value = calloc(total_nodes, sizeof *f->leaf_value);
    f->node_samples = calloc(total_nodes, sizeof *f->node_samples);
    f->center = malloc(nf * sizeof *f->center);
    f->scale = malloc(nf * sizeof *f->scale);
    f->lo = malloc(nf * sizeof *f->lo);
    f->hi = malloc(nf * sizeof *f->hi);
    f->unit = malloc(nf * sizeof *f->unit);
    f->flo = malloc(nf * sizeof *f->flo);
    f->fhi = malloc(nf * sizeof *f->fhi);
    if (!f->tree_start || !f->tree_depth || !f->nodes || !f->leaf_value || !f->node_samples ||
        !f->center || !f->scale || !f->lo || !f->hi || !f->unit || !f->flo || !f->fhi) {
        ifo_free(&f);
        return NULL;
    }
    for (uint32_t k = 0; k < nf; k++) {
        f->center[k] = 0;
        f->scale[k] = 1;
        f->lo[k] = f->hi[k] = NAN;
        f->flo[k] = f->fhi[k] = NAN;
        f->unit[k] = 1;
    }
    return f;
}

int ifo_set_meta(ifo_forest *f, const char *text)
{
    size_t len = strlen(text);
    if (len > IFO_META_MAX)
        return -1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, text, len + 1);
    free(f->meta);
    f->meta = copy;
    f->meta_len = (uint32_t)len;
    return 0;
}

/* Without stored ranges (scikit-learn's forests, formats 1 and 2), a column's
 * range is that of its split thresholds, and its unit a quarter of it: about
 * a standard deviation for data spread like a Gaussian's. */
static void s_ranges_from_thresholds(ifo_forest *f)
{
    for (uint32_t k = 0; k < f->n_features; k++)
        f->lo[k] = f->hi[k] = NAN;
    for (uint32_t t = 0; t < f->n_trees; t++) {
        for (uint32_t a = f->tree_start[t]; a < f->tree_start[t + 1]; a++) {
            const ifo_node *nd = &f->nodes[a];
            if (nd->child == a - f->tree_start[t])
                continue; /* a leaf */
            uint32_t k = nd->feature;
            if (!(nd->thr >= f->lo[k]))
                f->lo[k] = nd->thr;
            if (!(nd->thr <= f->hi[k]))
                f->hi[k] = nd->thr;
        }
    }
    for (uint32_t k = 0; k < f->n_features; k++) {
        double span = f->hi[k] - f->lo[k];
        f->unit[k] = span > 0 && isfinite(span) ? span / 4 : INFINITY;
    }
}

double ifo_max_tree_nodes(double psi, bool widened)
{
    if (!widened)
        return 2.0 * psi - 1.0;
    return ldexp(1.0, (int)ceil(log2(psi < 2 ? 2 : psi)) + 1) - 1.0;
}

double ifo_outside_fences(const ifo_forest *f, const double *x)
{
    double sum = 0;
    for (uint32_t k = 0; k < f->n_features; k++) {
        double lo = isnan(f->flo[k]) ? f->lo[k] : f->flo[k];
        double hi = isnan(f->fhi[k]) ? f->hi[k] : f->fhi[k];
        double d = x[k] > hi ? x[k] - hi : x[k] < lo ? lo - x[k] : 0;
        d /= f->unit[k];
        if (d > 0)
            sum += d;
    }
    return sum;
}

double ifo_outside(const ifo_forest *f, const double *x, double *per)
{
    double sum = 0;
    for (uint32_t k = 0; k < f->n_features; k++) {
        double d = x[k] > f->hi[k] ? x[k] - f->hi[k] : x[k] < f->lo[k] ? f->lo[k] - x[k] : 0;
        d /= f->unit[k];
        if (!(d > 0)) /* NaN ranges and infinite units count nothing */
            continue;
        sum += d;
        if (per)
            per[k] += d;
    }
    return sum;
}

/* Adds one tree's isolation share of row r, which reached leaf a after
 * recording the d features on its path. */
static inline void s_share(const double *value, uint32_t a, const uint32_t *feats, unsigned d,
                           double c, uint32_t n_trees, double *pr)
{
    double strength = 1.0 - value[a] / c;
    if (!(strength > 0) || d == 0)
        return;
    double share = strength / ((double)n_trees * (double)d);
    for (unsigned k = 0; k < d; k++)
        pr[feats[k]] += share;
}

void ifo_path_features(const ifo_forest *f, const double *x, size_t n, double *per)
{
    const double c = ifo_average_path_length((double)f->sample_size);
    const size_t nf = f->n_features;
    if (!(c > 0))
        return;
    enum { W = 8 };
    uint32_t feats[W][IFO_MAX_DEPTH];
    /* Tree-major over chunks of rows, eight walks at once, as ifo_path_sums:
     * one tree stays hot in the cache and the loads of the walks overlap. */
    for (size_t b = 0; b < n; b += S_CHUNK) {
        const size_t m = n - b < S_CHUNK ? n - b : S_CHUNK;
        for (uint32_t t = 0; t < f->n_trees; t++) {
            const ifo_node *tree = f->nodes + f->tree_start[t];
            const double *value = f->leaf_value + f->tree_start[t];
            const unsigned depth = f->tree_depth[t];
            for (size_t r = b; r < b + m; r += W) {
                const size_t w = b + m - r < W ? b + m - r : W;
                uint32_t a[W] = {0};
                unsigned d[W] = {0};
                for (unsigned step = 0; step < depth; step++) {
                    for (size_t k = 0; k < w; k++) {
                        const ifo_node *nd = &tree[a[k]];
                        if (nd->child == a[k])
                            continue; /* at its leaf */
                        feats[k][d[k]++] = nd->feature;
                        a[k] = nd->child + (x[(r + k) * nf + nd->feature] > nd->thr);
                    }
                }
                for (size_t k = 0; k < w; k++)
                    s_share(value, a[k], feats[k], d[k], c, f->n_trees, per + (r + k) * nf);
            }
        }
    }
}

/* sklearn: depths += node_indicator.sum(axis=1) + _average_path_length(n) - 1.0,
 * where the indicator counts depth + 1 nodes; same operations, same rounding. */
static double s_leaf_value(unsigned depth, uint64_t n)
{
    return ((double)(depth + 1) + ifo_average_path_length((double)n)) - 1.0;
}

static void s_make_leaf(ifo_forest *f, size_t at, uint32_t self, unsigned depth, uint64_t n)
{
    f->nodes[at] = (ifo_node){.thr = INFINITY, .feature = 0, .child = self};
    f->leaf_value[at] = s_leaf_value(depth, n);
    f->node_samples[at] = n;
}

static void s_finish(ifo_forest *f, uint64_t sample_size)
{
    f->sample_size = sample_size;
    f->denominator = (double)f->n_trees * ifo_average_path_length((double)sample_size);
}

/* --- training ------------------------------------------------------------- */

typedef struct s_task {
    uint32_t node; /* index in the tree */
    uint32_t lo, hi; /* range of the tree's sample index array */
    unsigned depth;
} s_task;

int ifo_train(ifo_forest **out, const double *x, size_t n, uint32_t nf, uint32_t n_trees,
              uint64_t sample_size, double widen, uint64_t seed, const atomic_bool *stop,
              char *err, size_t errlen)
{
    *out = NULL;
    if (n < 1 || nf < 1 || n_trees < 1 || sample_size < 1 || n > UINT32_MAX / 2) {
        s_err(err, errlen, "cannot train on %zu samples of %u channels", n, (unsigned)nf);
        return -1;
    }
    size_t psi = sample_size < n ? (size_t)sample_size : n;
    /* sklearn: max_depth = ceil(log2(max(max_samples_, 2))) */
    unsigned max_depth = (unsigned)ceil(log2((double)(psi < 2 ? 2 : psi)));
    /* With widened splits a side may be empty, so a tree can hold more nodes
     * than 2 psi - 1 (but never more than a full tree of max_depth). */
    size_t per_tree = (size_t)ifo_max_tree_nodes((double)psi, widen > 0);
    ifo_forest *f = s_alloc(nf, n_trees, per_tree * n_trees);
    size_t *perm = malloc(n * sizeof *perm);
    uint32_t *sample = malloc(psi * sizeof *sample);
    uint32_t *features = malloc(nf * sizeof *features);
    s_task *stack = malloc(((size_t)max_depth + 2) * 2 * sizeof *stack);
    ewp_rng *rng = malloc(sizeof *rng);
    if (!f || !perm || !sample || !features || !stack || !rng) {
        s_err(err, errlen, "out of memory training %u trees of %zu samples", (unsigned)n_trees, psi);
        goto fail;
    }
    size_t used = 0;
    for (uint32_t t = 0; t < n_trees; t++) {
        if (stop && atomic_load(stop)) {
            s_err(err, errlen, "stopped");
            goto fail;
        }
        /* One stream per tree, so a tree depends only on (seed, t). */
        ewp_rng_seed(rng, seed * 0x9e3779b97f4a7c15ull + t + 1);
        for (size_t i = 0; i < n; i++)
            perm[i] = i;
        for (size_t i = 0; i < psi; i++) {
            size_t j = i + (size_t)ewp_rng_below(rng, n - i);
            size_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
            sample[i] = (uint32_t)perm[i];
        }
        f->tree_start[t] = (uint32_t)used;
        uint32_t count = 1;
        unsigned deepest = 0;
        size_t top = 0;
        stack[top++] = (s_task){.node = 0, .lo = 0, .hi = (uint32_t)psi, .depth = 0};
        while (top > 0) {
            s_task task = stack[--top];
            size_t at = used + task.node;
            uint32_t m = task.hi - task.lo;
            if (task.depth > deepest)
                deepest = task.depth;
            bool split = false;
            uint32_t feature = 0;
            double lo_v = 0, hi_v = 0;
            if (task.depth < max_depth && m > 1) {
                /* sklearn's random splitter with max_features = 1 draws features
                 * until one is not constant in the node. */
                for (uint32_t k = 0; k < nf; k++)
                    features[k] = k;
                for (uint32_t left = nf; left > 0 && !split; left--) {
                    uint32_t j = (uint32_t)ewp_rng_below(rng, left);
                    feature = features[j];
                    features[j] = features[left - 1];
                    lo_v = hi_v = x[(size_t)sample[task.lo] * nf + feature];
                    for (uint32_t i = task.lo + 1; i < task.hi; i++) {
                        double v = x[(size_t)sample[i] * nf + feature];
                        if (v < lo_v)
                            lo_v = v;
                        if (v > hi_v)
                            hi_v = v;
                    }
                    split = hi_v > lo_v;
                }
            }
            if (!split) {
                s_make_leaf(f, at, task.node, task.depth, m);
                continue;
            }
            double thr;
            if (widen > 0) {
                double span = hi_v - lo_v;
                thr = (lo_v - widen * span) + ewp_rng_uniform(rng) * (1.0 + 2.0 * widen) * span;
            } else {
                thr = lo_v + ewp_rng_uniform(rng) * (hi_v - lo_v);
                if (thr >= hi_v) /* rounding; sklearn moves it to the minimum likewise */
                    thr = lo_v;
            }
            uint32_t i = task.lo, j = task.hi;
            while (i < j) {
                if (x[(size_t)sample[i] * nf + feature] <= thr) {
                    i++;
                } else {
                    uint32_t tmp = sample[i];
                    sample[i] = sample[--j];
                    sample[j] = tmp;
                }
            }
            uint32_t child = count;
            count += 2;
            f->nodes[at] = (ifo_node){.thr = thr, .feature = feature, .child = child};
            f->leaf_value[at] = 0;
            f->node_samples[at] = m;
            stack[top++] = (s_task){.node = child + 1, .lo = i, .hi = task.hi, .depth = task.depth + 1};
            stack[top++] = (s_task){.node = child, .lo = task.lo, .hi = i, .depth = task.depth + 1};
        }
        f->tree_depth[t] = (uint8_t)deepest;
        used += count;
    }
    f->tree_start[n_trees] = (uint32_t)used;
    s_finish(f, psi);
    f->threshold = 0.5;
    /* The training range of each column, for ifo_outside. */
    for (uint32_t k = 0; k < nf; k++) {
        double lo = x[k], hi = x[k];
        for (size_t i = 1; i < n; i++) {
            double v = x[i * nf + k];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        f->lo[k] = lo;
        f->hi[k] = hi;
        f->unit[k] = 1;
    }
    free(perm);
    free(sample);
    free(features);
    free(stack);
    free(rng);
    *out = f;
    return 0;
fail:
    ifo_free(&f);
    free(perm);
    free(sample);
    free(features);
    free(stack);
    free(rng);
    return -1;
}

/* --- scoring -------------------------------------------------------------- */

/* One step of 8 independent walks down the same tree. */
#define S_STEP(k)                                                                                  \
    do {                                                                                           \
        const ifo_node *nd = &tree[a##k];                                                          \
        a##k = nd->child + (x##k[nd->feature] > nd->thr);                                          \
    } while (0)

void ifo_path_sums(const ifo_forest *f, const double *x, size_t n, double *sums)
{
    const size_t nf = f->n_features;
    /* Chunks of rows small enough to stay in L1/L2 while every tree is walked
     * by all of them: tree-major order keeps one tree (a few KiB) hot at a
     * time, and eight walks at once hide the latency of each load. */
    for (size_t b = 0; b < n; b += S_CHUNK) {
        const size_t m = n - b < S_CHUNK ? n - b : S_CHUNK;
        const double *xb = x + b * nf;
        double *acc = sums + b;
        for (size_t s = 0; s < m; s++)
            acc[s] = 0;
        for (uint32_t t = 0; t < f->n_trees; t++) {
            const ifo_node *tree = f->nodes + f->tree_start[t];
            const double *value = f->leaf_value + f->tree_start[t];
            const unsigned depth = f->tree_depth[t];
            size_t s = 0;
            for (; s + 8 <= m; s += 8) {
                const double *x0 = xb + s * nf, *x1 = x0 + nf, *x2 = x1 + nf, *x3 = x2 + nf;
                const double *x4 = x3 + nf, *x5 = x4 + nf, *x6 = x5 + nf, *x7 = x6 + nf;
                uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
                /* Every walk takes `depth` steps; leaves point at themselves. */
                for (unsigned d = 0; d < depth; d++) {
                    S_STEP(0);
                    S_STEP(1);
                    S_STEP(2);
                    S_STEP(3);
                    S_STEP(4);
                    S_STEP(5);
                    S_STEP(6);
                    S_STEP(7);
                }
                acc[s] += value[a0];
                acc[s + 1] += value[a1];
                acc[s + 2] += value[a2];
                acc[s + 3] += value[a3];
                acc[s + 4] += value[a4];
                acc[s + 5] += value[a5];
                acc[s + 6] += value[a6];
                acc[s + 7] += value[a7];
            }
            for (; s < m; s++) {
                const double *x0 = xb + s * nf;
                uint32_t a0 = 0;
                for (unsigned d = 0; d < depth; d++)
                    S_STEP(0);
                acc[s] += value[a0];
            }
        }
    }
}

double ifo_score_from_sum(const ifo_forest *f, double sum)
{
    /* sklearn: 2 ** -(depths / denominator), with the ratio 1 when the denominator is 0. */
    double ratio = f->denominator != 0 ? sum / f->denominator : 1.0;
    return pow(2.0, -ratio);
}

/* --- model format --------------------------------------------------------- */

int ifo_serialize(const ifo_forest *f, unsigned char **out, size_t *len)
{
    const bool v3 = f->meta_len > 0 || (f->flags & IFO_FLAG_SCALED);
    const bool v2 = !v3 && f->window > 1;
    const size_t header = v2 || v3 ? S_HEADER_SIZE_V2 : S_HEADER_SIZE;
    const size_t meta = v3 ? f->meta_len : 0;
    const size_t ranges = (f->flags & IFO_FLAG_SCALED) ? 6 * (size_t)f->n_features * 8 : 0;
    size_t total = header + meta + ranges + (size_t)f->n_trees * S_TREE_HEADER_SIZE +
                   (size_t)f->tree_start[f->n_trees] * S_NODE_SIZE;
    unsigned char *buf = calloc(1, total);
    if (!buf)
        return -1;
    memcpy(buf, s_magic, sizeof s_magic);
    ew_le_put32(buf + 8, v3   ? IFO_FORMAT_VERSION_META
                         : v2 ? IFO_FORMAT_VERSION_WINDOW
                              : IFO_FORMAT_VERSION);
    ew_le_put32(buf + 12, f->flags);
    ew_le_put32(buf + 16, f->n_features);
    ew_le_put32(buf + 20, f->n_trees);
    ew_le_put64(buf + 24, f->sample_size);
    ew_le_put_f64(buf + 32, f->threshold);
    ew_le_put64(buf + 40, f->schema_hash);
    if (v2 || v3)
        ew_le_put32(buf + 48, f->window);
    if (v3)
        ew_le_put32(buf + 52, (uint32_t)meta);
    unsigned char *p = buf + header;
    if (meta) {
        memcpy(p, f->meta, meta);
        p += meta;
    }
    if (ranges) {
        const double *arrays[6] = {f->center, f->scale, f->lo, f->hi, f->flo, f->fhi};
        for (int a = 0; a < 6; a++)
            for (uint32_t k = 0; k < f->n_features; k++, p += 8)
                ew_le_put_f64(p, arrays[a][k]);
    }
    for (uint32_t t = 0; t < f->n_trees; t++) {
        uint32_t start = f->tree_start[t], count = f->tree_start[t + 1] - start;
        ew_le_put32(p, count);
        p += S_TREE_HEADER_SIZE;
        for (uint32_t k = 0; k < count; k++, p += S_NODE_SIZE) {
            const ifo_node *node = &f->nodes[start + k];
            bool leaf = node->child == k;
            ew_le_put32(p, leaf ? UINT32_MAX : node->child);           /* left, -1 = leaf */
            ew_le_put32(p + 4, leaf ? UINT32_MAX : node->child + 1);   /* right */
            ew_le_put32(p + 8, leaf ? UINT32_MAX : node->feature);     /* feature */
            ew_le_put_f64(p + 16, leaf ? 0.0 : node->thr);
            ew_le_put64(p + 24, f->node_samples[start + k]);
        }
    }
    *out = buf;
    *len = total;
    return 0;
}

/* Value k of array `which` (0 center, 1 scale, 2 lo, 3 hi, 4 flo, 5 fhi) of a
 * version 3 file. */
static double s_range(const unsigned char *ranges, uint32_t nf, unsigned which, uint32_t k)
{
    return ew_le_get_f64(ranges + 8 * ((size_t)which * nf + k));
}

int ifo_parse(ifo_forest **out, const void *data, size_t len, char *err, size_t errlen)
{
    const unsigned char *b = data;
    *out = NULL;
    if (len < S_HEADER_SIZE) {
        s_err(err, errlen, "truncated: %zu bytes, shorter than the %d-byte header", len,
              S_HEADER_SIZE);
        return -1;
    }
    if (memcmp(b, s_magic, sizeof s_magic) != 0) {
        s_err(err, errlen, "not an edgewatch isolation forest model (bad magic)");
        return -1;
    }
    uint32_t version = ew_le_get32(b + 8), flags = ew_le_get32(b + 12);
    uint32_t nf = ew_le_get32(b + 16), n_trees = ew_le_get32(b + 20);
    uint64_t sample_size = ew_le_get64(b + 24);
    double threshold = ew_le_get_f64(b + 32);
    if (version != IFO_FORMAT_VERSION && version != IFO_FORMAT_VERSION_WINDOW &&
        version != IFO_FORMAT_VERSION_META) {
        s_err(err, errlen, "model format version %u, this edgewatch reads versions %d to %d",
              (unsigned)version, IFO_FORMAT_VERSION, IFO_FORMAT_VERSION_META);
        return -1;
    }
    size_t header = version == IFO_FORMAT_VERSION ? S_HEADER_SIZE : S_HEADER_SIZE_V2;
    uint32_t window = 1, meta_len = 0;
    if (version != IFO_FORMAT_VERSION) {
        if (len < S_HEADER_SIZE_V2) {
            s_err(err, errlen, "truncated: %zu bytes, shorter than the %d-byte header of "
                  "version %u", len, S_HEADER_SIZE_V2, (unsigned)version);
            return -1;
        }
        window = ew_le_get32(b + 48);
        uint32_t reserved = ew_le_get32(b + 52);
        if (version == IFO_FORMAT_VERSION_META)
            meta_len = reserved;
        if (window < 1 || nf % window != 0 ||
            (version == IFO_FORMAT_VERSION_WINDOW && reserved != 0)) {
            s_err(err, errlen, "window %u does not divide the %u features (or the reserved "
                  "field is not 0)", (unsigned)window, (unsigned)nf);
            return -1;
        }
    }
    const uint32_t known = version == IFO_FORMAT_VERSION_META ? IFO_FLAG_FLOAT32 | IFO_FLAG_SCALED
                                                              : IFO_FLAG_FLOAT32;
    if (flags & ~known) {
        s_err(err, errlen, "unknown flags 0x%x", (unsigned)flags);
        return -1;
    }
    if (nf < 1 || nf > S_MAX_FEATURES || n_trees < 1 || n_trees > S_MAX_TREES) {
        s_err(err, errlen, "%u features and %u trees: out of range (1..%u each)", (unsigned)nf,
              (unsigned)n_trees, (unsigned)S_MAX_FEATURES);
        return -1;
    }
    if (sample_size < 1 || sample_size > S_MAX_SAMPLE_SIZE) {
        s_err(err, errlen, "sample size %llu out of range", (unsigned long long)sample_size);
        return -1;
    }
    if (!(threshold >= 0 && threshold <= 1)) {
        s_err(err, errlen, "threshold %g is not in [0, 1]", threshold);
        return -1;
    }
    /* Version 3: the metadata text, then with IFO_FLAG_SCALED six arrays of
     * nf doubles (center, scale, lo, hi, flo, fhi), before the trees. */
    const unsigned char *meta = b + header, *ranges = NULL;
    if (meta_len > IFO_META_MAX || meta_len > len - header) {
        s_err(err, errlen, "metadata of %u bytes: longer than the file or than %u bytes",
              (unsigned)meta_len, (unsigned)IFO_META_MAX);
        return -1;
    }
    if (memchr(meta, 0, meta_len)) {
        s_err(err, errlen, "metadata holds a NUL byte");
        return -1;
    }
    header += meta_len;
    if (flags & IFO_FLAG_SCALED) {
        if ((len - header) / 48 < nf) {
            s_err(err, errlen, "truncated in the scaling of the %u columns", (unsigned)nf);
            return -1;
        }
        ranges = b + header;
        header += (size_t)nf * 48;
        for (uint32_t k = 0; k < nf; k++) {
            double c = s_range(ranges, nf, 0, k), sc = s_range(ranges, nf, 1, k);
            double lo = s_range(ranges, nf, 2, k), hi = s_range(ranges, nf, 3, k);
            double flo = s_range(ranges, nf, 4, k), fhi = s_range(ranges, nf, 5, k);
            if (!isfinite(c) || !(sc > 0) || !isfinite(sc) || !isfinite(lo) || !isfinite(hi) ||
                lo > hi || !isfinite(flo) || !isfinite(fhi) || flo > fhi) {
                s_err(err, errlen, "column %u: scaling (center %g, scale %g) or range [%g, %g] "
                      "is not usable", (unsigned)k, c, sc, lo, hi);
                return -1;
            }
        }
    }
    /* Pass 1: walk the tree headers, trusting each count only as far as the
     * bytes that follow it, before any allocation. */
    size_t off = header, total_nodes = 0, max_nodes = 0;
    if (off > len) {
        s_err(err, errlen, "truncated before the first tree");
        return -1;
    }
    for (uint32_t t = 0; t < n_trees; t++) {
        if (len - off < S_TREE_HEADER_SIZE) {
            s_err(err, errlen, "truncated in the header of tree %u (byte %zu)", (unsigned)t, off);
            return -1;
        }
        uint32_t count = ew_le_get32(b + off);
        off += S_TREE_HEADER_SIZE;
        if (count < 1 || count > (len - off) / S_NODE_SIZE) {
            s_err(err, errlen, "tree %u claims %u nodes but only %zu bytes follow", (unsigned)t,
                  (unsigned)count, len - off);
            return -1;
        }
        off += (size_t)count * S_NODE_SIZE;
        total_nodes += count;
        if (count > max_nodes)
            max_nodes = count;
    }
    if (off != len) {
        s_err(err, errlen, "%zu bytes of trailing data after tree %u", len - off,
              (unsigned)n_trees - 1);
        return -1;
    }
    if (total_nodes > UINT32_MAX) {
        s_err(err, errlen, "too many nodes (%zu)", total_nodes);
        return -1;
    }
    ifo_forest *f = s_alloc(nf, n_trees, total_nodes);
    uint32_t *queue = malloc(max_nodes * sizeof *queue);
    uint8_t *depth = malloc(max_nodes);
    uint8_t *seen = malloc(max_nodes);
    if (!f || !queue || !depth || !seen) {
        s_err(err, errlen, "out of memory for %zu nodes", total_nodes);
        goto fail;
    }
    f->flags = flags;
    f->window = window;
    f->threshold = threshold;
    f->schema_hash = ew_le_get64(b + 40);
    if (meta_len) {
        if (!(f->meta = malloc((size_t)meta_len + 1))) {
            s_err(err, errlen, "out of memory for the metadata");
            goto fail;
        }
        memcpy(f->meta, meta, meta_len);
        f->meta[meta_len] = '\0';
        f->meta_len = meta_len;
    }
    /* Pass 2: breadth first from the root, so that each node is reached once and
     * the two children of a node get adjacent indices; the queue position is the
     * node's new index. No recursion: the depth is checked, never used as stack. */
    off = header;
    size_t used = 0;
    for (uint32_t t = 0; t < n_trees; t++) {
        uint32_t count = ew_le_get32(b + off);
        const unsigned char *rec = b + off + S_TREE_HEADER_SIZE;
        off += S_TREE_HEADER_SIZE + (size_t)count * S_NODE_SIZE;
        memset(seen, 0, count);
        uint32_t head = 0, tail = 0;
        unsigned deepest = 0;
        queue[tail] = 0;
        depth[tail++] = 0;
        seen[0] = 1;
        f->tree_start[t] = (uint32_t)used;
        for (; head < tail; head++) {
            uint32_t k = queue[head];
            const unsigned char *r = rec + (size_t)k * S_NODE_SIZE;
            int32_t left = (int32_t)ew_le_get32(r), right = (int32_t)ew_le_get32(r + 4);
            uint32_t feature = ew_le_get32(r + 8);
            double thr = ew_le_get_f64(r + 16);
            uint64_t samples = ew_le_get64(r + 24);
            unsigned d = depth[head];
            if (d > deepest)
                deepest = d;
            if (samples > S_MAX_SAMPLE_SIZE) {
                s_err(err, errlen, "tree %u node %u: %llu samples is out of range", (unsigned)t,
                      (unsigned)k, (unsigned long long)samples);
                goto fail;
            }
            f->node_samples[used + head] = samples;
            if (left < 0 || right < 0) {
                if (left != right) {
                    s_err(err, errlen, "tree %u node %u has one child (left %d, right %d)",
                          (unsigned)t, (unsigned)k, (int)left, (int)right);
                    goto fail;
                }
                s_make_leaf(f, used + head, head, d, samples);
                continue;
            }
            if ((uint32_t)left >= count || (uint32_t)right >= count) {
                s_err(err, errlen, "tree %u node %u: child index %d or %d is not below %u",
                      (unsigned)t, (unsigned)k, (int)left, (int)right, (unsigned)count);
                goto fail;
            }
            if (seen[left] || seen[right] || left == right) {
                s_err(err, errlen, "tree %u node %u: a child is reached twice (not a tree)",
                      (unsigned)t, (unsigned)k);
                goto fail;
            }
            if (feature >= nf) {
                s_err(err, errlen, "tree %u node %u: feature %u, the model has %u", (unsigned)t,
                      (unsigned)k, (unsigned)feature, (unsigned)nf);
                goto fail;
            }
            if (isnan(thr)) {
                s_err(err, errlen, "tree %u node %u: threshold is NaN", (unsigned)t, (unsigned)k);
                goto fail;
            }
            if (d + 1 > IFO_MAX_DEPTH) {
                s_err(err, errlen, "tree %u is deeper than %d levels", (unsigned)t, IFO_MAX_DEPTH);
                goto fail;
            }
            seen[left] = seen[right] = 1;
            f->nodes[used + head] = (ifo_node){.thr = thr, .feature = feature, .child = tail};
            queue[tail] = (uint32_t)left;
            depth[tail++] = (uint8_t)(d + 1);
            queue[tail] = (uint32_t)right;
            depth[tail++] = (uint8_t)(d + 1);
        }
        if (tail != count) {
            s_err(err, errlen, "tree %u: %u of its %u nodes are not reachable from the root",
                  (unsigned)t, (unsigned)(count - tail), (unsigned)count);
            goto fail;
        }
        f->tree_depth[t] = (uint8_t)deepest;
        used += count;
    }
    f->tree_start[n_trees] = (uint32_t)used;
    s_finish(f, sample_size);
    if (ranges) {
        for (uint32_t k = 0; k < nf; k++) {
            f->center[k] = s_range(ranges, nf, 0, k);
            f->scale[k] = s_range(ranges, nf, 1, k);
            f->lo[k] = s_range(ranges, nf, 2, k);
            f->hi[k] = s_range(ranges, nf, 3, k);
            f->flo[k] = s_range(ranges, nf, 4, k);
            f->fhi[k] = s_range(ranges, nf, 5, k);
            f->unit[k] = 1;
        }
    } else {
        s_ranges_from_thresholds(f);
    }
    free(queue);
    free(depth);
    free(seen);
    *out = f;
    return 0;
fail:
    ifo_free(&f);
    free(queue);
    free(depth);
    free(seen);
    return -1;
}
