/* null: a sink that counts and discards samples, and on request reports the
 * throughput and end-to-end latency it saw; the sink for benchmarks.
 *
 *     [sink.bench]
 *     plugin = null
 *     input = gen
 *     report = true
 *
 * Latency of a sample = host->now() when its batch arrives minus its
 * timestamp, kept in a log-linear histogram (fixed memory, about 3 %
 * resolution), reported as p50 / p99 / max in microseconds at flush.
 *
 * Alert events (ABI 1.2, a section with only = events) are counted in
 * null_events and discarded, so tests and benchmarks can see them arrive.
 */
#include <edgewatch/plugin.h>

#include "ewplug.h"

#include <stdio.h>
#include <stdlib.h>

/* 2^S_SUB_BITS buckets per power of two: values below 32 ns are exact, above
 * that each bucket spans 1/32 of its power of two. */
#define S_SUB_BITS 5
#define S_SUB (1u << S_SUB_BITS)
#define S_BUCKETS ((64 - S_SUB_BITS + 1) * S_SUB)

typedef struct null_config {
    bool report;
} null_config;

typedef struct null_sink {
    const ew_host *host;
    ew_node *node;
    const null_config *cfg;
    ew_counter *samples_counter;
    ew_counter *events_counter;
    uint64_t samples;
    uint64_t events_open, events_closed;
    uint64_t future;          /* samples stamped later than their arrival */
    uint64_t max_ns;
    int64_t start_mono;       /* when start() ran */
    int64_t last_mono;        /* when the last batch arrived */
    uint64_t hist[S_BUCKETS]; /* latency histogram, see s_bucket */
} null_sink;

static const ew_option s_options[] = {
    EW_OPTION("report", EW_OPT_BOOL, "false", null_config, report,
              "At the end, log samples received, rate and latency p50/p99/max."),
    EW_OPTION_END,
};

static unsigned s_bucket(uint64_t v)
{
    if (v < S_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* floor(log2 v) >= S_SUB_BITS */
    unsigned shift = e - S_SUB_BITS;
    return (shift + 1) * S_SUB + (unsigned)((v >> shift) - S_SUB);
}

/* Largest value that falls into bucket `b`: reporting it errs on the safe side. */
static uint64_t s_bucket_high(unsigned b)
{
    if (b < S_SUB)
        return b;
    unsigned shift = b / S_SUB - 1, sub = b % S_SUB;
    uint64_t low = (uint64_t)(S_SUB + sub) << shift;
    return low + (((uint64_t)1 << shift) - 1);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    null_sink *n = calloc(1, sizeof *n);
    if (!n) {
        host->set_error(node, "out of memory allocating the null sink");
        return EW_ERR;
    }
    n->host = host;
    n->node = node;
    n->cfg = config;
    n->samples_counter =
        host->counter(node, "null_samples", "Samples received and discarded by the null sink");
    n->events_counter =
        host->counter(node, "null_events", "Alert events (open and closed) received by the null sink");
    n->start_mono = host->monotonic(node);
    *self = n;
    return EW_OK;
}

static int s_start(void *self)
{
    null_sink *n = self;
    n->start_mono = n->host->monotonic(n->node);
    return EW_OK;
}

static int s_consume(void *self, const ew_batch *in)
{
    null_sink *n = self;
    n->samples += in->count;
    if (n->samples_counter)
        n->host->counter_add(n->samples_counter, in->count);
    if (!n->cfg->report)
        return EW_OK;
    n->last_mono = n->host->monotonic(n->node);
    const int64_t now = n->host->now(n->node);
    for (size_t i = 0; i < in->count; i++) {
        int64_t lat = now - in->ts[i];
        uint64_t v = 0;
        if (lat < 0)
            n->future++;
        else
            v = (uint64_t)lat;
        if (v > n->max_ns)
            n->max_ns = v;
        n->hist[s_bucket(v)]++;
    }
    return EW_OK;
}

static int s_consume_event(void *self, const ew_event *event)
{
    null_sink *n = self;
    if (event->state == EW_EVENT_CLOSED)
        n->events_closed++;
    else
        n->events_open++;
    n->host->counter_add(n->events_counter, 1);
    return EW_OK;
}

/* The value below which a fraction q of the samples fall (bucket upper bound). */
static uint64_t s_quantile(const null_sink *n, double q)
{
    uint64_t rank = (uint64_t)(q * (double)n->samples + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < S_BUCKETS; b++) {
        seen += n->hist[b];
        if (seen >= rank) {
            uint64_t high = s_bucket_high(b);
            return high < n->max_ns ? high : n->max_ns;
        }
    }
    return n->max_ns;
}

static int s_flush(void *self)
{
    null_sink *n = self;
    if (!n->cfg->report)
        return EW_OK;
    if (n->events_open || n->events_closed)
        n->host->log(n->node, EW_LOG_INFO, "received %llu events opened and %llu closed",
                     (unsigned long long)n->events_open, (unsigned long long)n->events_closed);
    if (n->samples == 0) {
        if (!n->events_open && !n->events_closed)
            n->host->log(n->node, EW_LOG_INFO, "received 0 samples");
        return EW_OK;
    }
    double elapsed = (double)(n->last_mono - n->start_mono) / 1e9;
    char rate[64];
    if (elapsed > 0)
        snprintf(rate, sizeof rate, "%.0f samples/s", (double)n->samples / elapsed);
    else
        snprintf(rate, sizeof rate, "rate not measurable");
    n->host->log(n->node, EW_LOG_INFO,
                 "received %llu samples in %.3f s (%s); latency p50 %.1f us, p99 %.1f us, "
                 "max %.1f us%s",
                 (unsigned long long)n->samples, elapsed, rate, (double)s_quantile(n, 0.50) / 1e3,
                 (double)s_quantile(n, 0.99) / 1e3, (double)n->max_ns / 1e3,
                 n->future ? " (some samples were stamped in the future: clocks differ)" : "");
    return EW_OK;
}

static void s_destroy(void *self)
{
    free(self);
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SINK,
    .name = "null",
    .version = "1.1.0",
    .description = "Counts and discards samples and alert events; optionally reports rate and latency",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(null_config),
    .init = s_init,
    .start = s_start,
    .consume = s_consume,
    .flush = s_flush,
    .destroy = s_destroy,
    .consume_event = s_consume_event,
};

EW_PLUGIN_EXPORT(s_plugin)
