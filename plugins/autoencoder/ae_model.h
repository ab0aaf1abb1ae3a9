/* ae_model: the autoencoder's trained model (network, scaler, threshold and the
 * settings it was learnt with) and its versioned little-endian file payload. */
#ifndef AE_MODEL_H
#define AE_MODEL_H

#include "ae_net.h"

#include <stddef.h>
#include <stdint.h>

/* First 8 bytes of the payload, and its format version. */
#define AE_MODEL_MAGIC "EWAEMODL"
#define AE_MODEL_VERSION 1
/* Longest channel name the SDK allows. */
#define AE_NAME_MAX 128

/* Everything in the config that shapes a model; a saved model is used only when
 * all of it matches the running config. */
typedef struct ae_settings {
    uint32_t activation;
    uint32_t window;
    uint32_t channels;
    uint32_t nhidden;
    uint32_t hidden[AE_MAX_HIDDEN];
    uint64_t train_samples, epochs, batch_size, patience, seed;
    double learning_rate, validation, quantile, factor;
} ae_settings;

/* A trained model. mean and sd have net.width[0] values each. */
typedef struct ae_model {
    ae_settings settings;
    ae_net net;
    double *mean;
    double *sd;
    double threshold;      /* reconstruction error above which a window is anomalous */
    uint64_t epochs_run;   /* for the log only */
    uint64_t rows;         /* training windows it was learnt from, for the log only */
} ae_model;

/* Allocates the network and the scaler for `s`, zeroed. Returns 0 or -1 (memory). */
int ae_model_alloc(ae_model *m, const ae_settings *s);
/* Frees what ae_model_alloc or ae_model_decode allocated; safe on a zeroed struct. */
void ae_model_free(ae_model *m);

/* Serialises the model and the input's channel names into a malloc'd payload.
 * Returns 0, or -1 when out of memory. */
int ae_model_encode(const ae_model *m, const char *const *names, void **data, size_t *len);

/* Parses and fully checks a payload: magic, version, bounded dimensions, exact
 * length, finite weights, positive scales and threshold (else -1, "corrupt"),
 * then that it was learnt for `names` and `expect` (else -2, "mismatch").
 * On 0 the model is filled (free it with ae_model_free); err says why otherwise. */
int ae_model_decode(const void *data, size_t len, const ae_settings *expect,
                    const char *const *names, ae_model *m, char *err, size_t errlen);

#endif
