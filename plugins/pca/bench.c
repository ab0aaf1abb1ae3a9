/* pca-bench: measures the pca plugin's scoring throughput through the SDK
 * harness (no host, no sockets), for tools/bench.d/pca.
 *
 *     pca-bench CHANNELS [SECONDS [BATCH [LAGS]]]
 *
 * Makes correlated rows (8 latent factors mixed into CHANNELS channels plus
 * noise), learns from the first 500 in a fresh state folder keeping 60 % of
 * the columns as components (as the Tennessee Eastman data needs: 31 of 52
 * for 90 % of the variance; the cost grows with the components), then scores
 * 100,000 rows in batches of BATCH (default 1024, the host's batch size) again
 * and again for at least SECONDS (default 2). Prints samples per second of
 * wall-clock and of CPU time (the fairer figure on a shared, loaded machine)
 * and the number of components kept.
 */
#include <edgewatch/testing.h>

#include "ewp_rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_ROWS 100000
#define S_TRAIN 500
#define S_FACTORS 8

static double s_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CHANNELS [SECONDS [BATCH [LAGS]]]\n", argv[0]);
        return 2;
    }
    size_t nch = (size_t)strtoul(argv[1], NULL, 10);
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 2.0;
    size_t batch = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 1024;
    const char *lags = argc > 4 ? argv[4] : "0";
    if (nch < 2 || nch > 512 || batch < 1 || strtoul(lags, NULL, 10) > 10) {
        fprintf(stderr, "bad CHANNELS or BATCH\n");
        return 2;
    }
    char dir[] = "/tmp/ew-pca-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = 1;
    ewp_rng rng;
    ewp_rng_seed(&rng, 1);
    double *mix = malloc(S_FACTORS * nch * sizeof *mix);
    double *values = malloc((size_t)S_ROWS * nch * sizeof *values);
    int64_t *ts = calloc(batch > S_TRAIN ? batch : S_TRAIN, sizeof *ts);
    char **names = calloc(nch, sizeof *names);
    ew_harness *h = NULL;
    if (!mix || !values || !ts || !names)
        goto oom;
    for (size_t i = 0; i < S_FACTORS * nch; i++)
        mix[i] = ewp_rng_normal(&rng);
    for (size_t r = 0; r < S_ROWS; r++) {
        double f[S_FACTORS];
        for (size_t j = 0; j < S_FACTORS; j++)
            f[j] = ewp_rng_normal(&rng);
        for (size_t c = 0; c < nch; c++) {
            double v = 0.3 * ewp_rng_normal(&rng);
            for (size_t j = 0; j < S_FACTORS; j++)
                v += f[j] * mix[j * nch + c];
            values[r * nch + c] = v;
        }
    }
    for (size_t c = 0; c < nch; c++) {
        if (!(names[c] = malloc(16)))
            goto oom;
        snprintf(names[c], 16, "c%zu", c);
    }
    if (!(h = ew_harness_new(ew_plugin_entry(), dir)))
        goto oom;
    ew_harness_input(h, nch, (const char *const *)names);
    /* The first `lags` rows are not complete rows: learn from the rest of the 500. */
    size_t nlags = (size_t)strtoul(lags, NULL, 10);
    char train[32], comps[32];
    snprintf(train, sizeof train, "%zu", S_TRAIN - nlags);
    snprintf(comps, sizeof comps, "%zu", nch * (nlags + 1) * 6 / 10);
    ew_harness_option(h, "train_samples", train);
    ew_harness_option(h, "lags", lags);
    ew_harness_option(h, "components", comps);
    if (ew_harness_init(h) != EW_OK) {
        fprintf(stderr, "init: %s\n", ew_harness_error(h));
        goto cleanup;
    }
    if (ew_harness_process(h, S_TRAIN, ts, values) != EW_OK || ew_harness_learning(h)) {
        fprintf(stderr, "training: %s\n", ew_harness_error(h));
        goto cleanup;
    }
    size_t done = 0;
    double start = s_clock(CLOCK_MONOTONIC), cpu0 = s_clock(CLOCK_PROCESS_CPUTIME_ID);
    double elapsed = 0;
    while (elapsed < seconds) {
        for (size_t i = 0; i < S_ROWS; i += batch) {
            size_t n = S_ROWS - i < batch ? S_ROWS - i : batch;
            if (ew_harness_process(h, n, ts, values + i * nch) != EW_OK) {
                fprintf(stderr, "process: %s\n", ew_harness_error(h));
                goto cleanup;
            }
            done += n;
        }
        elapsed = s_clock(CLOCK_MONOTONIC) - start;
    }
    double cpu = s_clock(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    printf("samples %zu wall_s %.3f cpu_s %.3f samples_per_wall_s %.0f samples_per_cpu_s %.0f\n",
           done, elapsed, cpu, (double)done / elapsed, (double)done / cpu);
    rc = 0;
    goto cleanup;
oom:
    fprintf(stderr, "out of memory\n");
cleanup:
    ew_harness_destroy(&h);
    for (size_t c = 0; names && c < nch; c++)
        free(names[c]);
    free(names);
    free(values);
    free(mix);
    free(ts);
    char path[64];
    snprintf(path, sizeof path, "%s/test/pca.bin", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/test", dir);
    rmdir(path);
    rmdir(dir);
    return rc;
}
