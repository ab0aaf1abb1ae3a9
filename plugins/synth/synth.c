/* synth: a source that generates sine + noise + drift per channel, with injected
 * spikes, level shifts and stuck values, deterministic for a given seed.
 *
 *     [source.demo]
 *     plugin = synth
 *     channels = temp, pressure
 *     rate = 100
 *     anomaly_rate = 0.005
 *
 * The waveform depends only on the seed and the sample index, never on timing:
 * two runs with the same options emit the same values (timestamps aside).
 */
#include <edgewatch/plugin.h>

#include "ewplug.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_NS_PER_S 1000000000.0
/* At rate = 0 (as fast as possible) the waveform is laid out as if sampled
 * at this rate, so that `period` and `drift` keep a meaning. */
#define S_NOMINAL_RATE 1000.0
/* Samples emitted per produce call at most, so the host's loop stays responsive. */
#define S_CHUNK 1024
/* The rotation recurrence is reset from sin/cos this often (in samples). */
#define S_RESYNC 1024
/* Falling further behind the schedule than this restarts it from now. */
#define S_MAX_LAG_NS 1000000000LL
/* Anomalous stretches (shift, stuck) last this many samples. */
#define S_STRETCH_MIN 10
#define S_STRETCH_MAX 100

typedef struct synth_config {
    ew_list channels;
    double rate;
    int64_t count;
    int64_t seed;
    double amplitude;
    int64_t period;
    double noise;
    double drift;
    double anomaly_rate;
    ew_list anomalies;
    int timestamps; /* 0 = scheduled, 1 = emitted */
} synth_config;

enum s_kind { S_SPIKE = 0, S_SHIFT = 1, S_STUCK = 2, S_KINDS = 3 };
static const char *const s_kind_names[S_KINDS] = {"spike", "shift", "stuck"};

/* One output channel: the rotating phasor and any anomaly in progress. */
typedef struct s_channel {
    double cos_a, sin_a;  /* cos and sin of the current angle */
    double phase;         /* angle at sample 0 */
    double shift;         /* level added during a shift */
    double stuck_value;   /* repeated during a stuck stretch */
    int64_t remaining;    /* samples left in the current stretch */
    int active;           /* S_SHIFT, S_STUCK or -1 */
} s_channel;

typedef struct synth {
    const ew_host *host;
    ew_node *node;
    const synth_config *cfg;
    ewp_rng rng;
    size_t nch;
    s_channel *ch;
    double *values;         /* one sample, nch values */
    int kinds[S_KINDS];     /* enabled anomaly kinds */
    int nkinds;
    double step_cos, step_sin; /* rotation by one sample */
    double samples_per_period;
    double drift_per_sample;
    double anomaly_scale;   /* typical size of the clean signal */
    int64_t n;              /* samples generated so far */
    /* Pacing: sample n is due at base_mono + (n - base_n) / rate. */
    bool started;
    int64_t base_mono;
    int64_t base_n;
    double ns_per_sample;
    uint64_t late_resets;
    ew_counter *anomaly_counter;
    bool stamped;           /* last_ts holds the previous sample's timestamp */
    int64_t last_ts;
} synth;

static const ew_option s_options[] = {
    EW_OPTION_RANGE("channels", EW_OPT_LIST, "value", 1, 4096, synth_config, channels,
                    "Names of the generated channels, one waveform each."),
    EW_OPTION_RANGE("rate", EW_OPT_DOUBLE, "10", 0, 1e9, synth_config, rate,
                    "Samples per second; 0 emits as fast as downstream accepts."),
    EW_OPTION_RANGE("count", EW_OPT_INT, "0", 0, 1e18, synth_config, count,
                    "Samples to emit before the stream ends; 0 = never end."),
    EW_OPTION("seed", EW_OPT_INT, "1", synth_config, seed,
              "Random seed; the same seed gives the same values."),
    EW_OPTION_RANGE("amplitude", EW_OPT_DOUBLE, "1", 0, 1e12, synth_config, amplitude,
                    "Amplitude of the sine wave."),
    EW_OPTION_RANGE("period", EW_OPT_DURATION, "60s", 0.001, 3.2e7, synth_config, period,
                    "Period of the sine wave (in sample time: index / rate)."),
    EW_OPTION_RANGE("noise", EW_OPT_DOUBLE, "0.1", 0, 1e12, synth_config, noise,
                    "Standard deviation of the Gaussian noise added to each value."),
    EW_OPTION_RANGE("drift", EW_OPT_DOUBLE, "0", -1e12, 1e12, synth_config, drift,
                    "Linear drift added per hour of sample time."),
    EW_OPTION_RANGE("anomaly_rate", EW_OPT_DOUBLE, "0.01", 0, 1, synth_config, anomaly_rate,
                    "Probability per sample that an anomaly starts on one random channel."),
    EW_OPTION_RANGE("anomalies", EW_OPT_LIST, "spike, shift, stuck", 1, 16, synth_config,
                    anomalies, "Kinds of anomaly to inject: any of spike, shift, stuck."),
    EW_OPTION_ENUM("timestamps", "scheduled", "scheduled|emitted", synth_config, timestamps,
                   "Paced samples carry their scheduled instant, or the instant they are emitted."),
    EW_OPTION_END,
};

static void s_destroy(void *self)
{
    synth *s = self;
    if (!s)
        return;
    free(s->ch);
    free(s->values);
    free(s);
}

static int s_parse_kinds(synth *s)
{
    bool seen[S_KINDS] = {false};
    for (size_t i = 0; i < s->cfg->anomalies.count; i++) {
        const char *item = s->cfg->anomalies.items[i];
        int k = -1;
        for (int j = 0; j < S_KINDS; j++)
            if (strcmp(item, s_kind_names[j]) == 0)
                k = j;
        if (k < 0) {
            s->host->set_error(s->node,
                               "option anomalies: unknown kind \"%s\"; use any of spike, shift, "
                               "stuck",
                               item);
            return EW_EINVAL;
        }
        if (!seen[k]) {
            seen[k] = true;
            s->kinds[s->nkinds++] = k;
        }
    }
    return EW_OK;
}

/* Puts the phasor of channel c at the exact angle of sample n. Resetting from
 * sin/cos every S_RESYNC samples bounds the recurrence's rounding drift, and
 * depending on n alone keeps the output independent of how produce is chunked. */
static void s_resync(synth *s, s_channel *c, int64_t n)
{
    double cycles = (double)n / s->samples_per_period;
    double a = c->phase + 2 * M_PI * (cycles - floor(cycles));
    c->cos_a = cos(a);
    c->sin_a = sin(a);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const synth_config *cfg = config;
    synth *s = calloc(1, sizeof *s);
    if (!s) {
        host->set_error(node, "out of memory allocating the synth source");
        return EW_ERR;
    }
    s->host = host;
    s->node = node;
    s->cfg = cfg;
    s->nch = cfg->channels.count;
    int rc = s_parse_kinds(s);
    if (rc != EW_OK)
        goto fail;
    s->ch = calloc(s->nch, sizeof *s->ch);
    s->values = calloc(s->nch, sizeof *s->values);
    if (!s->ch || !s->values) {
        host->set_error(node, "out of memory allocating %zu channels", s->nch);
        rc = EW_ERR;
        goto fail;
    }
    rc = host->set_channels(node, s->nch, cfg->channels.items);
    if (rc != EW_OK)
        goto fail;
    s->anomaly_counter =
        host->counter(node, "synth_anomalies", "Anomalies injected by the synth source");

    double sample_rate = cfg->rate > 0 ? cfg->rate : S_NOMINAL_RATE;
    s->samples_per_period = (double)cfg->period / S_NS_PER_S * sample_rate;
    if (s->samples_per_period < 1e-9)
        s->samples_per_period = 1e-9;
    double step = 2 * M_PI / s->samples_per_period;
    s->step_cos = cos(step);
    s->step_sin = sin(step);
    s->drift_per_sample = cfg->drift / 3600.0 / sample_rate;
    s->ns_per_sample = cfg->rate > 0 ? S_NS_PER_S / cfg->rate : 0;
    /* Anomalies are sized against the spread of the clean signal (a sine of
     * amplitude A has standard deviation A / sqrt 2), so they stand out. */
    s->anomaly_scale = sqrt(cfg->amplitude * cfg->amplitude / 2 + cfg->noise * cfg->noise);
    if (s->anomaly_scale == 0)
        s->anomaly_scale = 1;

    ewp_rng_seed(&s->rng, (uint64_t)cfg->seed);
    for (size_t i = 0; i < s->nch; i++) {
        s->ch[i].phase = 2 * M_PI * ewp_rng_uniform(&s->rng);
        s->ch[i].active = -1;
        s_resync(s, &s->ch[i], 0);
    }
    *self = s;
    return EW_OK;
fail:
    s_destroy(s);
    return rc;
}

static int64_t s_stretch(synth *s)
{
    return S_STRETCH_MIN + (int64_t)ewp_rng_below(&s->rng, S_STRETCH_MAX - S_STRETCH_MIN + 1);
}

/* Computes sample s->n into s->values. Every random draw happens in a fixed
 * order per sample, which is what makes the output a function of the seed. */
static void s_generate(synth *s)
{
    const synth_config *cfg = s->cfg;
    const int64_t n = s->n;
    const bool resync = n % S_RESYNC == 0;
    const double drift = s->drift_per_sample * (double)n;

    /* Does an anomaly start at this sample, and where? */
    int start_kind = -1;
    size_t start_ch = 0;
    double sign = 1, magnitude = 0;
    if (cfg->anomaly_rate > 0 && ewp_rng_uniform(&s->rng) < cfg->anomaly_rate) {
        start_ch = (size_t)ewp_rng_below(&s->rng, s->nch);
        start_kind = s->kinds[ewp_rng_below(&s->rng, (uint64_t)s->nkinds)];
        sign = ewp_rng_next(&s->rng) & 1 ? 1.0 : -1.0;
        /* 6 to 10 (spike) or 3 to 6 (shift) times the signal's spread. */
        double u = ewp_rng_uniform(&s->rng);
        magnitude = s->anomaly_scale * (start_kind == S_SPIKE ? 6 + 4 * u : 3 + 3 * u);
    }

    for (size_t i = 0; i < s->nch; i++) {
        s_channel *c = &s->ch[i];
        if (resync && n > 0)
            s_resync(s, c, n);
        double v = cfg->amplitude * c->sin_a + drift;
        if (cfg->noise > 0)
            v += cfg->noise * ewp_rng_normal(&s->rng);
        /* Rotate the phasor by one sample for the next call. */
        double nc = c->cos_a * s->step_cos - c->sin_a * s->step_sin;
        c->sin_a = c->sin_a * s->step_cos + c->cos_a * s->step_sin;
        c->cos_a = nc;

        if (start_kind >= 0 && i == start_ch && c->active < 0) {
            if (s->anomaly_counter)
                s->host->counter_add(s->anomaly_counter, 1);
            if (start_kind == S_SHIFT) {
                c->active = S_SHIFT;
                c->shift = sign * magnitude;
                c->remaining = s_stretch(s);
            } else if (start_kind == S_STUCK) {
                c->active = S_STUCK;
                c->stuck_value = v;
                c->remaining = s_stretch(s);
            } else {
                v += sign * magnitude;
            }
        }
        if (c->active == S_SHIFT)
            v += c->shift;
        else if (c->active == S_STUCK)
            v = c->stuck_value;
        if (c->active >= 0 && --c->remaining <= 0)
            c->active = -1;
        s->values[i] = v;
    }
    s->n++;
}

static bool s_done(const synth *s)
{
    return s->cfg->count > 0 && s->n >= s->cfg->count;
}

/* Timestamps strictly increase: a coarse clock (or a fast loop within one
 * tick, or the wall clock stepped back) would otherwise give several samples
 * the same instant, which downstream cannot tell apart. Such a sample takes
 * the nanosecond after the previous one. */
static int64_t s_stamp(synth *s, int64_t ts)
{
    if (s->stamped && ts <= s->last_ts)
        ts = s->last_ts + 1;
    s->stamped = true;
    s->last_ts = ts;
    return ts;
}

static int s_produce(void *self, int64_t *wake_at)
{
    synth *s = self;
    const ew_host *host = s->host;
    *wake_at = 0;
    if (s_done(s))
        return EW_EOF;

    if (s->cfg->rate <= 0) {
        for (int i = 0; i < S_CHUNK && !s_done(s); i++) {
            s_generate(s);
            int rc = host->emit(s->node, s_stamp(s, host->now(s->node)), s->values);
            if (rc != EW_OK)
                return rc;
        }
        return EW_OK;
    }

    const int64_t mono = host->monotonic(s->node);
    if (!s->started) {
        s->started = true;
        s->base_mono = mono;
        s->base_n = s->n;
    }
    int64_t due = s->base_mono + (int64_t)((double)(s->n - s->base_n) * s->ns_per_sample);
    if (mono - due > S_MAX_LAG_NS) {
        /* Downstream (or the machine) is slower than `rate`. Nothing is dropped:
         * the schedule restarts from now, and the stream is simply late. */
        s->late_resets++;
        if (ewp_should_report(s->late_resets))
            host->log(s->node, EW_LOG_WARN,
                      "%.2f s behind the schedule of rate = %g samples/s; restarting the "
                      "schedule (%llu times so far): lower `rate` or speed up downstream nodes",
                      (double)(mono - due) / S_NS_PER_S, s->cfg->rate,
                      (unsigned long long)s->late_resets);
        s->base_mono = mono;
        s->base_n = s->n;
    }
    /* Timestamps: the scheduled instant, mapped from the monotonic schedule to
     * wall-clock time, so samples are evenly spaced even when emitted in a burst. */
    const int64_t wall = host->now(s->node);
    for (int i = 0; i < S_CHUNK && !s_done(s); i++) {
        due = s->base_mono + (int64_t)((double)(s->n - s->base_n) * s->ns_per_sample);
        if (due > mono) {
            *wake_at = due;
            return EW_OK;
        }
        s_generate(s);
        /* `emitted` leaves the machine's timer lateness out of latency measurements. */
        int64_t ts = s->cfg->timestamps ? host->now(s->node) : wall - (mono - due);
        int rc = host->emit(s->node, s_stamp(s, ts), s->values);
        if (rc != EW_OK)
            return rc;
    }
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SOURCE,
    .name = "synth",
    .version = "1.0.0",
    .description = "Synthetic sine + noise + drift channels with injected anomalies",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(synth_config),
    .init = s_init,
    .produce = s_produce,
    .destroy = s_destroy,
};

EW_PLUGIN_EXPORT(s_plugin)
