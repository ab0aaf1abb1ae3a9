/* ae_net: a small dense autoencoder (flat weight arrays), its forward pass for
 * scoring and its deterministic mini-batch Adam training with early stopping. */
#ifndef AE_NET_H
#define AE_NET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Encoder layers at most (the decoder mirrors them: twice as many dense layers). */
#define AE_MAX_HIDDEN 16
/* Widest layer, and widest input (window * channels). */
#define AE_MAX_WIDTH 4096
/* Dense layers at most. */
#define AE_MAX_DENSE (2 * AE_MAX_HIDDEN)

/* Hidden-layer activation; the output layer is always linear. Values are stored
 * in the model file: append only. */
typedef enum ae_activation {
    AE_TANH = 0,
    AE_RELU = 1,
    AE_SIGMOID = 2,
} ae_activation;

/* The network: dense layer l maps width[l] values to width[l + 1] with
 * y = W x + b, W row-major (out x in) at params + w_off[l], b at params + b_off[l].
 * width[0] = width[dense] = the input width. */
typedef struct ae_net {
    ae_activation act;
    size_t dense;                      /* dense layers: 2 * encoder layers */
    size_t width[AE_MAX_DENSE + 1];
    size_t w_off[AE_MAX_DENSE];
    size_t b_off[AE_MAX_DENSE];
    size_t nparams;                    /* weights and biases, all layers */
    size_t max_width;                  /* widest layer, for scratch buffers */
    size_t act_total;                  /* sum of all widths, for training buffers */
    double *params;
} ae_net;

/* Training settings (validated by the plugin's option table). */
typedef struct ae_train_opts {
    size_t epochs;
    double learning_rate;
    size_t batch_size;
    double validation;   /* held-out fraction; 0 = stop on the training loss */
    size_t patience;     /* epochs without improvement before stopping */
    uint64_t seed;
} ae_train_opts;

/* What a training run did. */
typedef struct ae_train_report {
    size_t epochs_run;        /* epochs completed */
    bool stopped_early;       /* patience ran out before `epochs` */
    size_t best_epoch;        /* 1-based epoch whose weights were kept */
    double best_loss;         /* its validation (or training) loss */
    size_t train_rows, validation_rows;
} ae_train_report;

/* Lays out a network of `hidden` encoder widths over `input` values, mirrored;
 * allocates zeroed parameters. Returns 0, or -1 when out of memory. */
int ae_net_init(ae_net *net, size_t input, const size_t *hidden, size_t nhidden, ae_activation act);
/* Frees the parameters; safe on a zeroed struct. */
void ae_net_free(ae_net *net);

/* Mean squared reconstruction error of one (standardised) input row x.
 * `scratch` holds 2 * net->max_width doubles. */
double ae_net_error(const ae_net *net, const double *x, double *scratch);

/* Samples evaluated together by ae_net_error_block. */
#define AE_BLOCK 16

/* ae_net_error of `count` <= AE_BLOCK rows at once, bit-identical to it (same
 * operations in the same order), but with independent per-row chains the CPU
 * can overlap. xt is feature-major: value j of row s at xt[j * AE_BLOCK + s].
 * When sq is not NULL it receives each value's squared error, feature-major like
 * xt (the per-channel attribution). `scratch` holds 2 * net->max_width * AE_BLOCK
 * doubles. */
void ae_net_error_block(const ae_net *net, const double *xt, size_t count, double *errors,
                        double *sq, double *scratch);

/* Trains `net` on n standardised rows of width[0] values (row-major): Glorot/He
 * initialisation, a seeded shuffle split into training and held-out rows, then
 * epochs of shuffled mini-batches with Adam on the MSE, keeping the weights of
 * the best held-out loss and stopping after `patience` epochs without a
 * relative improvement of 1e-4. Deterministic for the same rows and options.
 * Checks *cancel between mini-batches (may be NULL). Returns 0, 1 when
 * cancelled, or -1 when out of memory. */
int ae_net_train(ae_net *net, const double *rows, size_t n, const ae_train_opts *opts,
                 const atomic_bool *cancel, ae_train_report *report);

#endif
