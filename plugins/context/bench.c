/* context-bench: the context detector's time per sample through the SDK
 * harness (the plugin's own process callback, no host, no sockets), for
 * tools/bench.d/context.
 *
 *     context-bench [CHANNELS [SECONDS]]
 *
 * Scores a generated stream (a daily sine with noise and a spike every 997
 * samples, so that every test and the rest period run) in batches of 1024,
 * the host's batch size, again and again for at least SECONDS (default 2).
 * Prints samples and channel values per second and ns per sample, of
 * wall-clock and of CPU time (the fairer figure on a shared machine).
 */
#include <edgewatch/testing.h>

#include "ewp_rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define S_ROWS 65536
#define S_BATCH 1024

static double s_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t nch = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1;
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 2.0;
    if (nch < 1 || nch > 256 || !(seconds > 0)) {
        fprintf(stderr, "usage: %s [CHANNELS (1-256) [SECONDS]]\n", argv[0]);
        return 2;
    }
    double *values = malloc(S_ROWS * nch * sizeof *values);
    int64_t *ts = calloc(S_BATCH, sizeof *ts);
    char(*names)[16] = calloc(nch, sizeof *names);
    const char **namep = calloc(nch, sizeof *namep);
    ewp_rng *rng = malloc(sizeof *rng);
    int rc = 1;
    ew_harness *h = NULL;
    if (!values || !ts || !names || !namep || !rng) {
        fprintf(stderr, "out of memory\n");
        goto cleanup;
    }
    ewp_rng_seed(rng, 42);
    for (size_t i = 0; i < S_ROWS; i++)
        for (size_t c = 0; c < nch; c++)
            values[i * nch + c] = 10 * sin(2 * M_PI * (double)i / 288 + (double)c) +
                                  ewp_rng_normal(rng) + (i % 997 == 996 ? 40 : 0);
    for (size_t c = 0; c < nch; c++) {
        snprintf(names[c], sizeof names[c], "c%zu", c);
        namep[c] = names[c];
    }
    h = ew_harness_new(ew_plugin_entry(), NULL);
    if (!h || ew_harness_input(h, nch, namep) != EW_OK || ew_harness_init(h) != EW_OK) {
        fprintf(stderr, "init: %s\n", h ? ew_harness_error(h) : "out of memory");
        goto cleanup;
    }
    size_t done = 0;
    double start = s_clock(CLOCK_MONOTONIC), cpu0 = s_clock(CLOCK_PROCESS_CPUTIME_ID);
    double elapsed = 0;
    while (elapsed < seconds) {
        for (size_t i = 0; i < S_ROWS; i += S_BATCH) {
            if (ew_harness_process(h, S_BATCH, ts, values + i * nch) != EW_OK) {
                fprintf(stderr, "process: %s\n", ew_harness_error(h));
                goto cleanup;
            }
            done += S_BATCH;
        }
        elapsed = s_clock(CLOCK_MONOTONIC) - start;
    }
    double cpu = s_clock(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    printf("samples %zu channels %zu wall_s %.3f cpu_s %.3f samples_per_cpu_s %.0f "
           "ns_per_sample_cpu %.1f ns_per_sample_wall %.1f\n",
           done, nch, elapsed, cpu, (double)done / cpu, cpu * 1e9 / (double)done,
           elapsed * 1e9 / (double)done);
    rc = 0;
cleanup:
    ew_harness_destroy(&h);
    free(rng);
    free(namep);
    free(names);
    free(ts);
    free(values);
    return rc;
}
