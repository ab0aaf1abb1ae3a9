/* Tests of the synth source plugin through the SDK harness; `--bench` measures raw generator speed. */
#include <edgewatch/testing.h>

#include "options.h"
#include "ptest.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* When set, the wall clock of this process ticks every 10 ms, as a coarse
 * clock source (a VM's jiffies, CLOCK_REALTIME_COARSE) does. The harness reads
 * the clock through clock_gettime, which this definition takes the place of. */
static bool s_coarse_clock;

int clock_gettime(clockid_t id, struct timespec *ts)
{
    long rc = syscall(SYS_clock_gettime, id, ts);
    if (rc == 0 && s_coarse_clock && id == CLOCK_REALTIME)
        ts->tv_nsec -= ts->tv_nsec % 10000000;
    return (int)rc;
}

/* A harness with the given options (NULL-terminated key, value pairs), initialised. */
static ew_harness *s_make(const char *const *kv)
{
    return ptest_open(NULL, 0, NULL, kv, NULL);
}

/* Init must fail; returns the error text (owned by the caller). */
static char *s_init_error(const char *const *kv)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    for (size_t i = 0; kv[i]; i += 2)
        ew_harness_option(h, kv[i], kv[i + 1]);
    int rc = ew_harness_init(h);
    ck_assert_int_ne(rc, EW_OK);
    char *msg = strdup(ew_harness_error(h));
    ew_harness_destroy(&h);
    ck_assert_ptr_null(h);
    return msg;
}

START_TEST(descriptor)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_SOURCE);
    ck_assert_str_eq(p->name, "synth");
    ck_assert_int_eq(p->abi_major, EW_ABI_MAJOR);
    ck_assert_uint_eq(p->struct_size, sizeof(ew_plugin));
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
}
END_TEST

START_TEST(default_channel_is_value)
{
    ew_harness *h = s_make(NULL);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 1);
    ck_assert_str_eq(out->names[0], "value");
    ck_assert_int_eq(out->score_index, -1);
    ck_assert_int_eq(out->anomaly_index, -1);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(channel_names)
{
    ew_harness *h = s_make((const char *[]){"channels", " temp, pressure ,flow", NULL});
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 3);
    ck_assert_str_eq(out->names[0], "temp");
    ck_assert_str_eq(out->names[1], "pressure");
    ck_assert_str_eq(out->names[2], "flow");
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(duplicate_channel_is_an_error)
{
    char *msg = s_init_error((const char *[]){"channels", "a, b, a", NULL});
    ck_assert_msg(strstr(msg, "\"a\""), "%s", msg);
    free(msg);
}
END_TEST

START_TEST(count_then_eof)
{
    ew_harness *h = s_make((const char *[]){"rate", "0", "count", "2500", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2500);
    int64_t wake = -1;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 2500);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(rate_zero_emits_a_chunk_per_call)
{
    ew_harness *h = s_make((const char *[]){"rate", "0", NULL});
    int64_t wake = -1;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    ck_assert_int_eq(wake, 0);
    size_t first = ew_harness_emitted(h);
    ck_assert_uint_gt(first, 1);
    ck_assert_uint_le(first, 4096);
    /* Timestamps come from the wall clock and never go backwards. */
    const int64_t *ts = ew_harness_emitted_ts(h);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t wall = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    ck_assert(llabs(ts[0] - wall) < 5000000000LL);
    for (size_t i = 1; i < first; i++)
        ck_assert(ts[i] >= ts[i - 1]);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(rate_zero_timestamps_strictly_increase)
{
    /* As fast as possible, many samples are generated within one tick of a
     * coarse clock; each sample still gets its own instant. */
    s_coarse_clock = true;
    ew_harness *h = s_make((const char *[]){"rate", "0", "count", "50000", "channels", "a",
                                            NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    size_t n = ew_harness_emitted(h);
    ck_assert_uint_eq(n, 50000);
    const int64_t *ts = ew_harness_emitted_ts(h);
    size_t repeats = 0;
    for (size_t i = 1; i < n; i++)
        repeats += ts[i] <= ts[i - 1];
    ck_assert_msg(repeats == 0, "%zu of %zu timestamps repeat or go back", repeats, n);
    ew_harness_destroy(&h);
}
END_TEST

static ew_harness *s_run(const char *seed, const char *rate, size_t count)
{
    char cnt[32];
    snprintf(cnt, sizeof cnt, "%zu", count);
    ew_harness *h = s_make((const char *[]){"seed", seed, "rate", rate, "count", cnt, "channels",
                                            "a, b, c", "anomaly_rate", "0.02", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), count);
    return h;
}

START_TEST(same_seed_same_values)
{
    ew_harness *a = s_run("7", "0", 5000), *b = s_run("7", "0", 5000), *c = s_run("8", "0", 5000);
    const double *va = ew_harness_emitted_values(a), *vb = ew_harness_emitted_values(b);
    const double *vc = ew_harness_emitted_values(c);
    ck_assert(memcmp(va, vb, 5000 * 3 * sizeof(double)) == 0);
    size_t differ = 0;
    for (size_t i = 0; i < 5000 * 3; i++)
        differ += va[i] != vc[i];
    ck_assert_uint_gt(differ, 5000 * 3 * 9 / 10);
    ew_harness_destroy(&a);
    ew_harness_destroy(&b);
    ew_harness_destroy(&c);
}
END_TEST

/* Values depend on the sample index only: a paced run (small, uneven chunks)
 * equals an unpaced one (chunks of 1024) when the waveform's sample rate is the
 * same (rate = 0 lays the waveform out at 1000 samples/s). */
START_TEST(values_do_not_depend_on_chunking)
{
    ew_harness *fast = s_run("3", "0", 3000), *paced = s_run("3", "1000", 3000);
    ck_assert(memcmp(ew_harness_emitted_values(fast), ew_harness_emitted_values(paced),
                     3000 * 3 * sizeof(double)) == 0);
    ew_harness_destroy(&fast);
    ew_harness_destroy(&paced);
}
END_TEST

START_TEST(paced_timestamps_are_evenly_spaced)
{
    ew_harness *h = s_make((const char *[]){"rate", "10", "count", "30", NULL});
    int64_t wake = 0;
    /* The first sample is due at once; the next one 100 ms later. */
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_OK);
    ck_assert_uint_eq(ew_harness_emitted(h), 1);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    int64_t mono = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    ck_assert(wake > mono + 90000000 && wake < mono + 110000000);
    /* run() jumps the harness clocks to each wake-up instead of sleeping. */
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    ck_assert_uint_eq(ew_harness_emitted(h), 30);
    const int64_t *ts = ew_harness_emitted_ts(h);
    for (size_t i = 1; i < 30; i++) {
        int64_t d = ts[i] - ts[i - 1];
        ck_assert_msg(llabs(d - 100000000) < 1000000, "spacing %lld ns at %zu", (long long)d, i);
    }
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(sine_has_amplitude_and_period)
{
    /* 100 samples per period; compare periods far apart to catch phase drift
     * of the rotation recurrence. */
    ew_harness *h = s_make((const char *[]){"rate", "100", "period", "1s", "amplitude", "2",
                                            "noise", "0", "anomaly_rate", "0", "count", "200000",
                                            NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    const double *v = ew_harness_emitted_values(h);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < 100; i++) {
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    ck_assert_double_eq_tol(hi, 2.0, 0.01);
    ck_assert_double_eq_tol(lo, -2.0, 0.01);
    for (size_t i = 0; i < 100; i++) {
        ck_assert_double_eq_tol(v[i + 100], v[i], 1e-9);
        ck_assert_double_eq_tol(v[i + 199800], v[i], 1e-9);
    }
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(drift_is_per_hour_of_sample_time)
{
    ew_harness *h = s_make((const char *[]){"rate", "10", "drift", "3600", "amplitude", "0",
                                            "noise", "0", "anomaly_rate", "0", "count", "1000",
                                            NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    const double *v = ew_harness_emitted_values(h);
    /* 3600 per hour = 1 per second = 0.1 per sample at 10 samples/s. */
    for (size_t i = 0; i < 1000; i++)
        ck_assert_double_eq_tol(v[i], 0.1 * (double)i, 1e-9);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(noise_has_its_standard_deviation)
{
    ew_harness *h = s_make((const char *[]){"rate", "0", "amplitude", "0", "noise", "2.5",
                                            "anomaly_rate", "0", "count", "200000", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    const double *v = ew_harness_emitted_values(h);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < 200000; i++) {
        sum += v[i];
        sq += v[i] * v[i];
    }
    double mean = sum / 200000, sd = sqrt(sq / 200000 - mean * mean);
    ck_assert_double_eq_tol(mean, 0, 0.03);
    ck_assert_double_eq_tol(sd, 2.5, 0.03);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(spikes_at_the_configured_rate)
{
    /* A flat zero signal: every non-zero value is a spike. */
    ew_harness *h = s_make((const char *[]){"rate", "0", "channels", "a, b", "amplitude", "0",
                                            "noise", "0", "anomalies", "spike", "anomaly_rate",
                                            "0.05", "count", "20000", "seed", "11", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    const double *v = ew_harness_emitted_values(h);
    size_t spikes = 0;
    for (size_t i = 0; i < 20000; i++) {
        size_t here = (v[2 * i] != 0) + (v[2 * i + 1] != 0);
        ck_assert_uint_le(here, 1); /* one channel per anomaly */
        for (int c = 0; c < 2; c++) {
            double x = fabs(v[2 * i + c]);
            if (x != 0)
                ck_assert_msg(x >= 6 && x <= 10, "spike of %g", x);
        }
        spikes += here;
    }
    /* Binomial(20000, 0.05): mean 1000, sd 31. */
    ck_assert_msg(spikes > 880 && spikes < 1120, "%zu spikes", spikes);
    ck_assert_uint_eq(ew_harness_counter(h, "synth_anomalies"), spikes);
    ew_harness_destroy(&h);
}
END_TEST

/* Counts maximal runs of equal values at least `min_len` long, checking that
 * none is longer than a stretch can be; with skip_zero, zeros (the clean
 * signal) are not runs and any other value must belong to a long run. */
static size_t s_count_runs(const double *v, size_t n, size_t min_len, bool skip_zero)
{
    size_t runs = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && v[j] == v[i];)
            j++;
        if (skip_zero && v[i] == 0)
            continue;
        if (j - i >= min_len) {
            ck_assert_msg(j - i <= 100, "run of %zu at %zu", j - i, i);
            runs++;
        } else {
            ck_assert_msg(!skip_zero, "short non-zero run of %zu at %zu", j - i, i);
        }
    }
    return runs;
}

START_TEST(level_shifts_last_a_stretch)
{
    ew_harness *h = s_make((const char *[]){"rate", "0", "amplitude", "0", "noise", "0",
                                            "anomalies", "shift", "anomaly_rate", "0.002", "count",
                                            "50000", "seed", "5", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    size_t runs = s_count_runs(ew_harness_emitted_values(h), 50000, 10, true);
    ck_assert_uint_eq(ew_harness_counter(h, "synth_anomalies"), runs);
    ck_assert_msg(runs > 50 && runs < 140, "%zu shifts", runs);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(stuck_values_repeat)
{
    /* With noise, consecutive values never repeat unless stuck. */
    ew_harness *h = s_make((const char *[]){"rate", "0", "noise", "0.1", "anomalies", "stuck",
                                            "anomaly_rate", "0.002", "count", "50000", "seed", "9",
                                            NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    const double *v = ew_harness_emitted_values(h);
    size_t runs = s_count_runs(v, 50000, 2, false);
    ck_assert_uint_eq(ew_harness_counter(h, "synth_anomalies"), runs);
    ck_assert_msg(runs > 50 && runs < 140, "%zu stuck stretches", runs);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(no_anomalies_at_rate_zero)
{
    ew_harness *h = s_make((const char *[]){"rate", "0", "amplitude", "0", "noise", "0",
                                            "anomaly_rate", "0", "count", "10000", NULL});
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    const double *v = ew_harness_emitted_values(h);
    for (size_t i = 0; i < 10000; i++)
        ck_assert(v[i] == 0);
    ck_assert_uint_eq(ew_harness_counter(h, "synth_anomalies"), 0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(option_errors)
{
    char *msg = s_init_error((const char *[]){"rat", "5", NULL});
    ck_assert_msg(strstr(msg, "rat") && strstr(msg, "unknown"), "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"rate", "-1", NULL});
    ck_assert_msg(strstr(msg, "rate") && strstr(msg, "range"), "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"anomaly_rate", "1.5", NULL});
    ck_assert_msg(strstr(msg, "anomaly_rate"), "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"period", "fast", NULL});
    ck_assert_msg(strstr(msg, "period") && strstr(msg, "duration"), "%s", msg);
    free(msg);
    msg = s_init_error((const char *[]){"anomalies", "spike, spikes", NULL});
    ck_assert_msg(strstr(msg, "\"spikes\"") && strstr(msg, "spike, shift, stuck"), "%s", msg);
    free(msg);
}
END_TEST

START_TEST(stop_is_honoured)
{
    ew_harness *h = s_make((const char *[]){"rate", "0", NULL});
    ew_harness_request_stop(h);
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_ESTOP);
    ck_assert_uint_eq(ew_harness_emitted(h), 0);
    ew_harness_destroy(&h);
}
END_TEST

/* Removes the backslash of every "\\|", so a README may escape the pipes of enum
 * choices (as Markdown tables need) and still match the plain text. */
/* ---- raw speed, without the harness's sample storage ---- */

struct ew_node {
    uint64_t emitted;
};

static void s_bench_log(ew_node *node, ew_log_level level, const char *fmt, ...) EW_PRINTF(3, 4);
static void s_bench_log(ew_node *node, ew_log_level level, const char *fmt, ...)
{
    (void)node;
    (void)level;
    (void)fmt;
}
static void s_bench_err(ew_node *node, const char *fmt, ...) EW_PRINTF(2, 3);
static void s_bench_err(ew_node *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    (void)node;
}
static int64_t s_bench_now(ew_node *node)
{
    (void)node;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
static int s_bench_set_channels(ew_node *node, size_t count, const char *const *names)
{
    (void)node, (void)count, (void)names;
    return EW_OK;
}
static int s_bench_emit(ew_node *node, int64_t ts, const double *values)
{
    (void)ts;
    /* Read a value so the generator's work cannot be optimised away. */
    node->emitted += values[0] != values[0];
    node->emitted++;
    return EW_OK;
}
static ew_counter *s_bench_counter(ew_node *node, const char *name, const char *help)
{
    (void)node, (void)name, (void)help;
    return NULL;
}

static int s_bench(void)
{
    const ew_plugin *p = ew_plugin_entry();
    ew_host host = {.struct_size = sizeof host, .abi_major = EW_ABI_MAJOR, .abi_minor = EW_ABI_MINOR,
                    .log = s_bench_log, .set_error = s_bench_err, .now = s_bench_now,
                    .monotonic = s_bench_now, .set_channels = s_bench_set_channels,
                    .emit = s_bench_emit, .counter = s_bench_counter};
    static const char *const channel_sets[] = {"a", "a,b,c,d,e,f,g,h"};
    for (int set = 0; set < 2; set++) {
        const uint64_t count = set ? 5000000 : 20000000;
        char cnt[32];
        snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)count);
        options_kv kv[] = {{"channels", channel_sets[set], 1}, {"rate", "0", 2}, {"count", cnt, 3}};
        char config[1024];
        options_mem mem = {0};
        options_error oerr;
        if (options_fill(p->options, p->config_size, kv, 3, config, &mem, &oerr) < 0) {
            fprintf(stderr, "options: %s\n", oerr.message);
            return 1;
        }
        struct ew_node node = {0};
        void *self;
        if (p->init(&host, &node, config, &self) != EW_OK)
            return 1;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int64_t wake;
        while (p->produce(self, &wake) == EW_OK)
            ;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        p->destroy(self);
        options_mem_free(&mem);
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        int nch = set ? 8 : 1;
        printf("synth, %d channel%s, rate 0 (one clock read per sample): %llu samples in %.3f s = "
               "%.2f M samples/s (%.1f M values/s)\n",
               nch, nch > 1 ? "s" : "", (unsigned long long)node.emitted, s,
               (double)node.emitted / s / 1e6, (double)node.emitted * nch / s / 1e6);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return s_bench();
    Suite *s = suite_create("plugin-synth");
    TCase *tc = tcase_create("synth");
    tcase_add_test(tc, descriptor);
    tcase_add_test(tc, default_channel_is_value);
    tcase_add_test(tc, channel_names);
    tcase_add_test(tc, duplicate_channel_is_an_error);
    tcase_add_test(tc, count_then_eof);
    tcase_add_test(tc, rate_zero_emits_a_chunk_per_call);
    tcase_add_test(tc, rate_zero_timestamps_strictly_increase);
    tcase_add_test(tc, same_seed_same_values);
    tcase_add_test(tc, values_do_not_depend_on_chunking);
    tcase_add_test(tc, paced_timestamps_are_evenly_spaced);
    tcase_add_test(tc, sine_has_amplitude_and_period);
    tcase_add_test(tc, drift_is_per_hour_of_sample_time);
    tcase_add_test(tc, noise_has_its_standard_deviation);
    tcase_add_test(tc, spikes_at_the_configured_rate);
    tcase_add_test(tc, level_shifts_last_a_stretch);
    tcase_add_test(tc, stuck_values_repeat);
    tcase_add_test(tc, no_anomalies_at_rate_zero);
    tcase_add_test(tc, option_errors);
    tcase_add_test(tc, stop_is_honoured);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
