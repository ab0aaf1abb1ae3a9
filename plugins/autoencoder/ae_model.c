/* ae_model: encoding and checked decoding of the autoencoder's model payload
 * (layout documented in plugins/autoencoder/README.md, "Model file"). */
#include "ae_model.h"

#include <edgewatch/bytes.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ae_model_alloc(ae_model *m, const ae_settings *s)
{
    memset(m, 0, sizeof *m);
    m->settings = *s;
    size_t hidden[AE_MAX_HIDDEN];
    for (size_t k = 0; k < s->nhidden; k++)
        hidden[k] = s->hidden[k];
    size_t d = (size_t)s->window * s->channels;
    if (ae_net_init(&m->net, d, hidden, s->nhidden, (ae_activation)s->activation) < 0)
        return -1;
    m->mean = calloc(d ? d : 1, sizeof *m->mean);
    m->sd = calloc(d ? d : 1, sizeof *m->sd);
    if (!m->mean || !m->sd) {
        ae_model_free(m);
        return -1;
    }
    return 0;
}

void ae_model_free(ae_model *m)
{
    if (!m)
        return;
    ae_net_free(&m->net);
    free(m->mean);
    free(m->sd);
    m->mean = m->sd = NULL;
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct s_writer {
    unsigned char *p;
} s_writer;

static void s_u32(s_writer *w, uint32_t v)
{
    ew_le_put32(w->p, v);
    w->p += 4;
}

static void s_u64(s_writer *w, uint64_t v)
{
    ew_le_put64(w->p, v);
    w->p += 8;
}

static void s_f64(s_writer *w, double v)
{
    ew_le_put_f64(w->p, v);
    w->p += 8;
}

static void s_f64s(s_writer *w, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s_f64(w, v[i]);
}

int ae_model_encode(const ae_model *m, const char *const *names, void **data, size_t *len)
{
    const ae_settings *s = &m->settings;
    const size_t d = m->net.width[0];
    size_t size = 8 + 4 * 6 + 4 * (size_t)s->nhidden + (size_t)8 * 5 + (size_t)8 * 4 + (size_t)8 * 3;
    for (size_t c = 0; c < s->channels; c++)
        size += 4 + strlen(names[c]);
    size += 8 * (2 * d + m->net.nparams);
    unsigned char *buf = malloc(size);
    if (!buf)
        return -1;
    s_writer w = {buf};
    memcpy(w.p, AE_MODEL_MAGIC, 8);
    w.p += 8;
    s_u32(&w, AE_MODEL_VERSION);
    s_u32(&w, s->activation);
    s_u32(&w, s->window);
    s_u32(&w, s->channels);
    s_u32(&w, s->nhidden);
    s_u32(&w, 0); /* reserved, 0 */
    for (size_t k = 0; k < s->nhidden; k++)
        s_u32(&w, s->hidden[k]);
    s_u64(&w, s->train_samples);
    s_u64(&w, s->epochs);
    s_u64(&w, s->batch_size);
    s_u64(&w, s->patience);
    s_u64(&w, s->seed);
    s_f64(&w, s->learning_rate);
    s_f64(&w, s->validation);
    s_f64(&w, s->quantile);
    s_f64(&w, s->factor);
    s_f64(&w, m->threshold);
    s_u64(&w, m->epochs_run);
    s_u64(&w, m->rows);
    for (size_t c = 0; c < s->channels; c++) {
        size_t n = strlen(names[c]);
        s_u32(&w, (uint32_t)n);
        memcpy(w.p, names[c], n);
        w.p += n;
    }
    s_f64s(&w, m->mean, d);
    s_f64s(&w, m->sd, d);
    s_f64s(&w, m->net.params, m->net.nparams);
    *data = buf;
    *len = size;
    return 0;
}

/* ---- decoding ----------------------------------------------------------------------------- */

typedef struct s_reader {
    const unsigned char *p;
    size_t left;
} s_reader;

static int s_take(s_reader *r, size_t n, const unsigned char **out)
{
    if (r->left < n)
        return -1;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return 0;
}

static int s_get_u32(s_reader *r, uint32_t *v)
{
    const unsigned char *p;
    if (s_take(r, 4, &p) < 0)
        return -1;
    *v = ew_le_get32(p);
    return 0;
}

static int s_get_u64(s_reader *r, uint64_t *v)
{
    const unsigned char *p;
    if (s_take(r, 8, &p) < 0)
        return -1;
    *v = ew_le_get64(p);
    return 0;
}

static int s_get_f64(s_reader *r, double *v)
{
    const unsigned char *p;
    if (s_take(r, 8, &p) < 0)
        return -1;
    *v = ew_le_get_f64(p);
    return 0;
}

static void s_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void s_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *const s_act_names[] = {"tanh", "relu", "sigmoid"};

static const char *s_act_name(uint32_t a)
{
    return a < 3 ? s_act_names[a] : "?";
}

/* Names the first setting that differs between the saved model and the config. */
static int s_compare(const ae_settings *got, const ae_settings *want, char *err, size_t errlen)
{
#define S_CMP_U(field, what)                                                                          \
    if (got->field != want->field) {                                                              \
        s_err(err, errlen, "it was learnt with %s = %llu, the config has %llu", what,               \
              (unsigned long long)got->field, (unsigned long long)want->field);                     \
        return -1;                                                                                  \
    }
#define S_CMP_D(field, what)                                                                          \
    if (got->field != want->field) {                                                              \
        s_err(err, errlen, "it was learnt with %s = %.15g, the config has %.15g", what, got->field, \
              want->field);                                                                         \
        return -1;                                                                                  \
    }
    if (got->activation != want->activation) {
        s_err(err, errlen, "it was learnt with activation = %s, the config has %s",
              s_act_name(got->activation), s_act_name(want->activation));
        return -1;
    }
    S_CMP_U(window, "window")
    S_CMP_U(channels, "input channels")
    bool same_layers = got->nhidden == want->nhidden;
    for (size_t k = 0; same_layers && k < got->nhidden; k++)
        same_layers = got->hidden[k] == want->hidden[k];
    if (!same_layers) {
        char a[128] = "", b[128] = "";
        for (size_t k = 0; k < got->nhidden; k++)
            snprintf(a + strlen(a), sizeof a - strlen(a), "%s%u", k ? ", " : "", got->hidden[k]);
        for (size_t k = 0; k < want->nhidden; k++)
            snprintf(b + strlen(b), sizeof b - strlen(b), "%s%u", k ? ", " : "", want->hidden[k]);
        s_err(err, errlen, "it was learnt with layers = %s, the config has %s", a, b);
        return -1;
    }
    S_CMP_U(train_samples, "train_samples")
    S_CMP_U(epochs, "epochs")
    S_CMP_U(batch_size, "batch_size")
    S_CMP_U(patience, "patience")
    S_CMP_U(seed, "seed")
    S_CMP_D(learning_rate, "learning_rate")
    S_CMP_D(validation, "validation")
    S_CMP_D(quantile, "quantile")
    S_CMP_D(factor, "factor")
#undef S_CMP_U
#undef S_CMP_D
    return 0;
}

static int s_finite_all(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

int ae_model_decode(const void *data, size_t len, const ae_settings *expect,
                    const char *const *names, ae_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    s_reader r = {data, len};
    const unsigned char *p;
    ae_settings s;
    memset(&s, 0, sizeof s);
    uint32_t version, reserved;
    if (s_take(&r, 8, &p) < 0 || memcmp(p, AE_MODEL_MAGIC, 8) != 0) {
        s_err(err, errlen, "not an autoencoder model (bad magic)");
        return -1;
    }
    if (s_get_u32(&r, &version) < 0)
        goto truncated;
    if (version != AE_MODEL_VERSION) {
        s_err(err, errlen, "model format version %u, this plugin reads version %d", version,
              AE_MODEL_VERSION);
        return -1;
    }
    if (s_get_u32(&r, &s.activation) < 0 || s_get_u32(&r, &s.window) < 0 ||
        s_get_u32(&r, &s.channels) < 0 || s_get_u32(&r, &s.nhidden) < 0 ||
        s_get_u32(&r, &reserved) < 0)
        goto truncated;
    if (s.activation > AE_SIGMOID || s.window == 0 || s.channels == 0 ||
        (uint64_t)s.window * s.channels > AE_MAX_WIDTH || s.nhidden == 0 ||
        s.nhidden > AE_MAX_HIDDEN || reserved != 0) {
        s_err(err, errlen, "impossible dimensions (activation %u, window %u, channels %u, layers %u)",
              s.activation, s.window, s.channels, s.nhidden);
        return -1;
    }
    for (size_t k = 0; k < s.nhidden; k++) {
        if (s_get_u32(&r, &s.hidden[k]) < 0)
            goto truncated;
        if (s.hidden[k] == 0 || s.hidden[k] > AE_MAX_WIDTH) {
            s_err(err, errlen, "impossible layer width %u", s.hidden[k]);
            return -1;
        }
    }
    double threshold;
    uint64_t epochs_run, rows;
    if (s_get_u64(&r, &s.train_samples) < 0 || s_get_u64(&r, &s.epochs) < 0 ||
        s_get_u64(&r, &s.batch_size) < 0 || s_get_u64(&r, &s.patience) < 0 ||
        s_get_u64(&r, &s.seed) < 0 || s_get_f64(&r, &s.learning_rate) < 0 ||
        s_get_f64(&r, &s.validation) < 0 || s_get_f64(&r, &s.quantile) < 0 ||
        s_get_f64(&r, &s.factor) < 0 || s_get_f64(&r, &threshold) < 0 ||
        s_get_u64(&r, &epochs_run) < 0 || s_get_u64(&r, &rows) < 0)
        goto truncated;
    if (!isfinite(threshold) || threshold <= 0) {
        s_err(err, errlen, "threshold %g is not a positive finite number", threshold);
        return -1;
    }
    /* Channel names: read all of them before comparing, so that a foreign model
     * is told apart from a damaged one. */
    char saved[AE_NAME_MAX + 1];
    int names_differ = -1;
    for (size_t c = 0; c < s.channels; c++) {
        uint32_t n;
        if (s_get_u32(&r, &n) < 0)
            goto truncated;
        if (n == 0 || n > AE_NAME_MAX) {
            s_err(err, errlen, "channel name of impossible length %u", n);
            return -1;
        }
        if (s_take(&r, n, &p) < 0)
            goto truncated;
        if (names_differ < 0 && c < expect->channels &&
            (strlen(names[c]) != n || memcmp(names[c], p, n) != 0)) {
            memcpy(saved, p, n);
            saved[n] = '\0';
            names_differ = (int)c;
        }
    }
    /* The rest is exactly the scaler and the parameters; the dimensions above are
     * bounded, so this size cannot overflow. */
    ae_model tmp;
    if (ae_model_alloc(&tmp, &s) < 0) {
        s_err(err, errlen, "out of memory");
        return -1;
    }
    const size_t d = tmp.net.width[0];
    const size_t want = 8 * (2 * d + tmp.net.nparams);
    if (r.left != want) {
        s_err(err, errlen, "%zu bytes of weights where the dimensions need %zu", r.left, want);
        ae_model_free(&tmp);
        return -1;
    }
    for (size_t i = 0; i < d; i++)
        s_get_f64(&r, &tmp.mean[i]);
    for (size_t i = 0; i < d; i++)
        s_get_f64(&r, &tmp.sd[i]);
    for (size_t i = 0; i < tmp.net.nparams; i++)
        s_get_f64(&r, &tmp.net.params[i]);
    if (!s_finite_all(tmp.mean, d) || !s_finite_all(tmp.sd, d) ||
        !s_finite_all(tmp.net.params, tmp.net.nparams)) {
        s_err(err, errlen, "a weight or scaler value is not finite");
        ae_model_free(&tmp);
        return -1;
    }
    for (size_t i = 0; i < d; i++) {
        if (!(tmp.sd[i] > 0)) {
            s_err(err, errlen, "scale %zu is %g, not positive", i, tmp.sd[i]);
            ae_model_free(&tmp);
            return -1;
        }
    }
    if (s_compare(&s, expect, err, errlen) < 0) {
        ae_model_free(&tmp);
        return -2;
    }
    if (names_differ >= 0) {
        s_err(err, errlen, "it was learnt for channel \"%s\" at column %d, the input has \"%s\"",
              saved, names_differ + 1, names[names_differ]);
        ae_model_free(&tmp);
        return -2;
    }
    tmp.threshold = threshold;
    tmp.epochs_run = epochs_run;
    tmp.rows = rows;
    *m = tmp;
    return 0;
truncated:
    s_err(err, errlen, "truncated after %zu of %zu bytes", len - r.left, len);
    return -1;
}
