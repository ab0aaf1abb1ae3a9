/* ae_net: forward pass and deterministic Adam training of a dense autoencoder. */
#include "ae_net.h"

#include "ewp_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Adam's usual constants (Kingma and Ba). */
#define S_BETA1 0.9
#define S_BETA2 0.999
#define S_EPS 1e-8
/* An epoch improves on the best loss only when it is lower by this fraction, so
 * that a plateau with tiny numerical wiggles still ends in early stopping. */
#define S_MIN_REL_IMPROVEMENT 1e-4

int ae_net_init(ae_net *net, size_t input, const size_t *hidden, size_t nhidden, ae_activation act)
{
    memset(net, 0, sizeof *net);
    net->act = act;
    net->dense = 2 * nhidden;
    net->width[0] = input;
    for (size_t k = 0; k < nhidden; k++) {
        net->width[1 + k] = hidden[k];
        net->width[net->dense - 1 - k] = hidden[k];
    }
    net->width[net->dense] = input;
    size_t off = 0;
    net->max_width = input;
    net->act_total = input;
    for (size_t l = 0; l < net->dense; l++) {
        size_t in = net->width[l], out = net->width[l + 1];
        net->w_off[l] = off;
        off += in * out;
        net->b_off[l] = off;
        off += out;
        if (out > net->max_width)
            net->max_width = out;
        net->act_total += out;
    }
    net->nparams = off;
    net->params = calloc(off ? off : 1, sizeof *net->params);
    return net->params ? 0 : -1;
}

void ae_net_free(ae_net *net)
{
    if (!net)
        return;
    free(net->params);
    net->params = NULL;
}

/* tanh as 1 - 2 / (e^2x + 1): one exp, about four times faster than libm's
 * tanh here, within ~1e-16 of it in absolute terms (what a network needs);
 * saturates cleanly to +-1 (e^2x overflows to inf or underflows to 0). Training
 * and scoring use the same function, so models stay bit-reproducible. */
static inline double s_tanh(double x)
{
    return 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
}

/* Applies the hidden activation to n values in place. */
static void s_activate(ae_activation act, double *v, size_t n)
{
    switch (act) {
    case AE_TANH:
        for (size_t i = 0; i < n; i++)
            v[i] = s_tanh(v[i]);
        break;
    case AE_RELU:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] > 0 ? v[i] : 0;
        break;
    case AE_SIGMOID:
        for (size_t i = 0; i < n; i++)
            v[i] = 1.0 / (1.0 + exp(-v[i]));
        break;
    }
}

/* The activation's derivative, from its output a (all three allow that). */
static inline double s_derivative(ae_activation act, double a)
{
    switch (act) {
    case AE_TANH:
        return 1.0 - a * a;
    case AE_RELU:
        return a > 0 ? 1.0 : 0.0;
    case AE_SIGMOID:
        return a * (1.0 - a);
    }
    return 1.0;
}

/* out = W in + b for dense layer l (no activation). */
static inline void s_dense(const ae_net *net, size_t l, const double *restrict in,
                           double *restrict out)
{
    const size_t nin = net->width[l], nout = net->width[l + 1];
    const double *restrict w = net->params + net->w_off[l];
    const double *restrict b = net->params + net->b_off[l];
    for (size_t o = 0; o < nout; o++) {
        const double *restrict row = w + o * nin;
        double s = b[o];
        for (size_t i = 0; i < nin; i++)
            s += row[i] * in[i];
        out[o] = s;
    }
}

double ae_net_error(const ae_net *net, const double *x, double *scratch)
{
    double *a = scratch, *b = scratch + net->max_width;
    const double *in = x;
    for (size_t l = 0; l < net->dense; l++) {
        s_dense(net, l, in, a);
        if (l + 1 < net->dense)
            s_activate(net->act, a, net->width[l + 1]);
        in = a;
        double *t = a;
        a = b;
        b = t;
    }
    /* `in` now holds the reconstruction. */
    const size_t d = net->width[0];
    double sum = 0;
    for (size_t i = 0; i < d; i++) {
        double e = in[i] - x[i];
        sum += e * e;
    }
    return sum / (double)d;
}

void ae_net_error_block(const ae_net *net, const double *xt, size_t count, double *errors,
                        double *sq, double *scratch)
{
    enum { B = AE_BLOCK };
    double *a = scratch, *b = scratch + net->max_width * B;
    const double *in = xt;
    for (size_t l = 0; l < net->dense; l++) {
        const size_t nin = net->width[l], nout = net->width[l + 1];
        const double *restrict w = net->params + net->w_off[l];
        const double *restrict bias = net->params + net->b_off[l];
        for (size_t o = 0; o < nout; o++) {
            double *restrict acc = a + o * B;
            const double *restrict row = w + o * nin;
            for (size_t s = 0; s < B; s++)
                acc[s] = bias[o];
            for (size_t i = 0; i < nin; i++) {
                const double wi = row[i];
                const double *restrict xi = in + i * B;
                for (size_t s = 0; s < B; s++)
                    acc[s] += wi * xi[s];
            }
        }
        if (l + 1 < net->dense)
            s_activate(net->act, a, nout * B);
        in = a;
        double *t = a;
        a = b;
        b = t;
    }
    const size_t d = net->width[0];
    double sum[B];
    for (size_t s = 0; s < B; s++)
        sum[s] = 0;
    for (size_t j = 0; j < d; j++) {
        for (size_t s = 0; s < B; s++) {
            double e = in[j * B + s] - xt[j * B + s];
            sum[s] += e * e;
        }
        if (sq)
            for (size_t s = 0; s < B; s++) {
                double e = in[j * B + s] - xt[j * B + s];
                sq[j * B + s] = e * e;
            }
    }
    for (size_t s = 0; s < count; s++)
        errors[s] = sum[s] / (double)d;
}

/* Forward pass keeping every layer's output: acts[off[l]] holds layer l's
 * values (l = 0 is the input itself). */
static void s_forward_keep(const ae_net *net, const double *x, double *acts, const size_t *off)
{
    memcpy(acts, x, net->width[0] * sizeof *x);
    for (size_t l = 0; l < net->dense; l++) {
        double *out = acts + off[l + 1];
        s_dense(net, l, acts + off[l], out);
        if (l + 1 < net->dense)
            s_activate(net->act, out, net->width[l + 1]);
    }
}

/* Adds this row's gradient of (scale * sum of squared errors) to grad. */
static void s_backward(const ae_net *net, const double *x, const double *acts, const size_t *off,
                       double scale, double *grad, double *delta, double *delta_prev)
{
    const size_t last = net->dense - 1, d = net->width[0];
    const double *y = acts + off[net->dense];
    for (size_t o = 0; o < d; o++)
        delta[o] = 2.0 * scale * (y[o] - x[o]);
    for (size_t l = last + 1; l-- > 0;) {
        const size_t nin = net->width[l], nout = net->width[l + 1];
        const double *a_in = acts + off[l];
        const double *w = net->params + net->w_off[l];
        double *gw = grad + net->w_off[l], *gb = grad + net->b_off[l];
        for (size_t o = 0; o < nout; o++) {
            const double dlt = delta[o];
            double *grow = gw + o * nin;
            for (size_t i = 0; i < nin; i++)
                grow[i] += dlt * a_in[i];
            gb[o] += dlt;
        }
        if (l == 0)
            break;
        for (size_t i = 0; i < nin; i++)
            delta_prev[i] = 0;
        for (size_t o = 0; o < nout; o++) {
            const double dlt = delta[o];
            const double *row = w + o * nin;
            for (size_t i = 0; i < nin; i++)
                delta_prev[i] += row[i] * dlt;
        }
        for (size_t i = 0; i < nin; i++)
            delta_prev[i] *= s_derivative(net->act, a_in[i]);
        double *t = delta;
        delta = delta_prev;
        delta_prev = t;
    }
}

static void s_shuffle(ewp_rng *rng, size_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ewp_rng_below(rng, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* Mean reconstruction error over the rows listed in idx. */
static double s_mean_error(const ae_net *net, const double *rows, const size_t *idx, size_t n,
                           double *scratch)
{
    const size_t d = net->width[0];
    double sum = 0;
    for (size_t k = 0; k < n; k++)
        sum += ae_net_error(net, rows + idx[k] * d, scratch);
    return n ? sum / (double)n : NAN;
}

int ae_net_train(ae_net *net, const double *rows, size_t n, const ae_train_opts *opts,
                 const atomic_bool *cancel, ae_train_report *report)
{
    memset(report, 0, sizeof *report);
    const size_t d = net->width[0], np = net->nparams;
    ewp_rng *rng = malloc(sizeof *rng);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    size_t off[AE_MAX_DENSE + 1];
    double *acts = malloc(net->act_total * sizeof *acts);
    double *delta = malloc(2 * net->max_width * sizeof *delta);
    double *scratch = malloc(2 * net->max_width * sizeof *scratch);
    double *grad = malloc(np * sizeof *grad);
    double *m = calloc(np, sizeof *m), *v = calloc(np, sizeof *v);
    double *best = malloc(np * sizeof *best);
    int rc = -1;
    if (!rng || !idx || !acts || !delta || !scratch || !grad || !m || !v || !best)
        goto out;
    off[0] = 0;
    for (size_t l = 0; l < net->dense; l++)
        off[l + 1] = off[l] + net->width[l];

    ewp_rng_seed(rng, opts->seed);
    /* Glorot uniform for tanh and sigmoid, He uniform for ReLU layers; biases 0. */
    for (size_t l = 0; l < net->dense; l++) {
        const size_t nin = net->width[l], nout = net->width[l + 1];
        bool relu_in = net->act == AE_RELU && l + 1 < net->dense;
        double limit = relu_in ? sqrt(6.0 / (double)nin) : sqrt(6.0 / (double)(nin + nout));
        double *w = net->params + net->w_off[l];
        for (size_t i = 0; i < nin * nout; i++)
            w[i] = (2.0 * ewp_rng_uniform(rng) - 1.0) * limit;
        memset(net->params + net->b_off[l], 0, nout * sizeof(double));
    }

    /* Seeded split: the last `validation` fraction of a shuffled order is held out. */
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    s_shuffle(rng, idx, n);
    size_t nval = 0;
    if (opts->validation > 0 && n >= 2) {
        nval = (size_t)floor(opts->validation * (double)n);
        if (nval == 0)
            nval = 1;
        if (nval >= n)
            nval = n - 1;
    }
    const size_t ntrain = n - nval;
    size_t *train = idx, *held = idx + ntrain;
    report->train_rows = ntrain;
    report->validation_rows = nval;

    memcpy(best, net->params, np * sizeof *best);
    double best_loss = INFINITY;
    size_t since_best = 0, t = 0;
    const size_t bsz = opts->batch_size ? opts->batch_size : 1;
    for (size_t epoch = 1; epoch <= opts->epochs; epoch++) {
        s_shuffle(rng, train, ntrain);
        for (size_t start = 0; start < ntrain; start += bsz) {
            if (cancel && atomic_load_explicit(cancel, memory_order_relaxed)) {
                rc = 1;
                goto out;
            }
            size_t bs = ntrain - start < bsz ? ntrain - start : bsz;
            memset(grad, 0, np * sizeof *grad);
            /* The loss is the mean over the batch and the columns. */
            const double scale = 1.0 / ((double)d * (double)bs);
            for (size_t k = 0; k < bs; k++) {
                const double *x = rows + train[start + k] * d;
                s_forward_keep(net, x, acts, off);
                s_backward(net, x, acts, off, scale, grad, delta, delta + net->max_width);
            }
            t++;
            const double lr_t = opts->learning_rate * sqrt(1.0 - pow(S_BETA2, (double)t)) /
                                (1.0 - pow(S_BETA1, (double)t));
            double *p = net->params;
            for (size_t i = 0; i < np; i++) {
                m[i] = S_BETA1 * m[i] + (1.0 - S_BETA1) * grad[i];
                v[i] = S_BETA2 * v[i] + (1.0 - S_BETA2) * grad[i] * grad[i];
                p[i] -= lr_t * m[i] / (sqrt(v[i]) + S_EPS);
            }
        }
        report->epochs_run = epoch;
        double loss = nval ? s_mean_error(net, rows, held, nval, scratch)
                           : s_mean_error(net, rows, train, ntrain, scratch);
        if (isfinite(loss) && loss < best_loss * (1.0 - S_MIN_REL_IMPROVEMENT)) {
            best_loss = loss;
            report->best_epoch = epoch;
            memcpy(best, net->params, np * sizeof *best);
            since_best = 0;
        } else if (++since_best >= opts->patience) {
            report->stopped_early = epoch < opts->epochs;
            break;
        }
    }
    memcpy(net->params, best, np * sizeof *best);
    report->best_loss = best_loss;
    rc = 0;
out:
    free(rng);
    free(idx);
    free(acts);
    free(delta);
    free(scratch);
    free(grad);
    free(m);
    free(v);
    free(best);
    return rc;
}
