/* forest: an isolation forest as scikit-learn 1.2 defines it: training, fast
 * scoring, and the binary model format (see README.md, "Model format"). */
#ifndef IFO_FOREST_H
#define IFO_FOREST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Versions of the model format: 1 (scikit-learn's, a forest over single samples),
 * 2 (adds the window: the forest's columns are the last `window` samples of
 * each channel) and 3 (adds a metadata text: the channel names in order and
 * the options that shaped the model; and, with IFO_FLAG_SCALED, the scaling
 * and the training range of every column). ifo_serialize writes 3 when there
 * is metadata or scaling, else 1 or 2 as before; ifo_parse reads all three. */
#define IFO_FORMAT_VERSION 1
#define IFO_FORMAT_VERSION_WINDOW 2
#define IFO_FORMAT_VERSION_META 3
/* Flag: compare inputs rounded to float32, as scikit-learn's trees do. */
#define IFO_FLAG_FLOAT32 1u
/* Flag (version 3): inputs are scaled, (x - center) / scale per column, before
 * the trees see them, and lo/hi (the training range, scaled) and the fences
 * flo/fhi are stored. */
#define IFO_FLAG_SCALED 2u
/* Longest metadata text a model may hold. */
#define IFO_META_MAX (1u << 20)
/* Deepest tree a model may hold; scoring walks every tree this many steps at most.
 * scikit-learn's limit is ceil(log2(max_samples)), so 64 leaves ample room. */
#define IFO_MAX_DEPTH 64

/* One node, laid out for branch-free scoring: an internal node sends x to
 * child (x <= thr) or child + 1; a leaf points at itself with thr = +inf so that
 * extra steps stay put. */
typedef struct ifo_node {
    double thr;       /* split threshold; +inf at a leaf */
    uint32_t feature; /* column compared; 0 at a leaf */
    uint32_t child;   /* index (in its tree) of the left child; the right one follows it */
} ifo_node;

/* A trained or loaded forest. Read-only once built, so the scoring thread and a
 * training thread never share anything mutable. */
typedef struct ifo_forest {
    uint32_t n_features;  /* columns per row the trees see: channels x window */
    uint32_t window;      /* samples per row (1 = each sample alone); divides n_features */
    uint32_t n_trees;
    uint32_t flags;       /* IFO_FLAG_* */
    uint64_t sample_size; /* samples each tree was grown from (scikit-learn's max_samples_) */
    double threshold;     /* score threshold learnt with the forest (contamination), or 0.5 */
    uint64_t schema_hash; /* ifo_schema_hash of the channels it was trained on; 0 = unknown */
    double denominator;   /* n_trees * c(sample_size) */
    uint32_t *tree_start; /* n_trees + 1 offsets into nodes */
    uint8_t *tree_depth;  /* steps from the root to the deepest leaf, per tree */
    ifo_node *nodes;
    double *leaf_value;   /* per node: depth + c(n_node_samples) at a leaf, summed as sklearn does */
    uint64_t *node_samples; /* training samples that reached each node (kept for saving) */
    /* Per column (n_features): with IFO_FLAG_SCALED the scaling and the scaled
     * training range; otherwise center 0, scale 1, and lo/hi the smallest and
     * largest split threshold on the column (NaN when never split on). */
    double *center, *scale, *lo, *hi;
    /* Per column, learnt forests: Tukey's fences of the training rows (scaled),
     * the range of the own score's distance term; NaN = none (lo/hi apply). */
    double *flo, *fhi;
    /* Per column: the unit in which a value's distance outside [lo, hi] is
     * counted by ifo_outside (1 when scaled; a quarter of hi - lo otherwise). */
    double *unit;
    /* A learnt forest's own score calibration (kept in its metadata): score =
     * 1 / (1 + exp(-(raw - raw_limit) / raw_spread)); raw_spread 0 = none. */
    double raw_limit, raw_spread;
    char *meta;           /* metadata text (version 3), NUL-terminated, or NULL */
    uint32_t meta_len;    /* its length without the NUL */
} ifo_forest;

/* Bytes one node of a grown forest takes: a tree of s samples has at most
 * 2 s - 1 nodes, so a forest takes about trees x (2 s - 1) x IFO_NODE_BYTES. */
#define IFO_NODE_BYTES (sizeof(ifo_node) + sizeof(double) + sizeof(uint64_t))

/* c(n): average path length of an unsuccessful search in a binary search tree of
 * n keys, exactly as sklearn's _average_path_length (c(0) = c(1) = 0, c(2) = 1). */
double ifo_average_path_length(double n);

/* FNV-1a hash of channel names, to recognise a model saved for other channels. */
uint64_t ifo_schema_hash(size_t count, const char *const *names);

/* Grows a forest from n rows of nf values (row-major, all finite). Each tree is
 * grown from min(sample_size, n) rows drawn without replacement. A split's
 * threshold is drawn uniformly over the node's range [lo, hi] widened by
 * `widen` x (hi - lo) on each side (0 = scikit-learn's rule); a side that gets
 * no sample is a leaf of 0 samples, so that values beyond what the node saw
 * are isolated early. Records lo/hi per column (the range of x). Stops early
 * (returns -1 with "stopped") when *stop becomes true. Returns 0 or -1 with err. */
int ifo_train(ifo_forest **out, const double *x, size_t n, uint32_t nf, uint32_t n_trees,
              uint64_t sample_size, double widen, uint64_t seed, const atomic_bool *stop,
              char *err, size_t errlen);

/* Nodes a tree of `psi` samples can take at most when grown with widen > 0
 * (a full tree of depth ceil(log2 psi)), or 2 psi - 1 with widen = 0. */
double ifo_max_tree_nodes(double psi, bool widened);

/* Sum over the columns of how far row x (as the trees see it) lies outside the
 * column's [lo, hi], in the column's unit; per column in `per` when not NULL
 * (n_features values, added to). */
double ifo_outside(const ifo_forest *f, const double *x, double *per);

/* As ifo_outside, but outside the fences [flo, fhi] where the forest has them. */
double ifo_outside_fences(const ifo_forest *f, const double *x);

/* For n rows, adds to per[row * n_features + column] each tree's share of the
 * row's isolation: a tree whose path length h is below c(sample_size) gives
 * (1 - h / c(sample_size)) / n_trees, split equally between the features of
 * the splits on the row's path. */
void ifo_path_features(const ifo_forest *f, const double *x, size_t n, double *per);

/* Sets the metadata text (copied). Returns 0 or -1 (no memory, or too long). */
int ifo_set_meta(ifo_forest *f, const char *text);

/* Scores n rows of f->n_features finite values (already rounded to float32
 * when f->flags says so). sums[i] = the sum over trees of the path length, in
 * sklearn's order; score = ifo_score_from_sum. */
void ifo_path_sums(const ifo_forest *f, const double *x, size_t n, double *sums);

/* The isolation score 2^(-mean path / c(sample_size)) from a sum of path lengths. */
double ifo_score_from_sum(const ifo_forest *f, double sum);

/* Serialises into a malloc'd buffer (the model format). Returns 0 or -1 (no memory). */
int ifo_serialize(const ifo_forest *f, unsigned char **out, size_t *len);

/* Parses and validates a model: every count is checked against the bytes
 * present before anything is allocated, every node index is in range and
 * reached exactly once, trees are at most IFO_MAX_DEPTH deep. Returns 0 or -1
 * with a reason in err. */
int ifo_parse(ifo_forest **out, const void *data, size_t len, char *err, size_t errlen);

/* Frees a forest and sets *f to NULL. */
void ifo_free(ifo_forest **f);

#endif
