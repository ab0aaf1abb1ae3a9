/* iforest-bench: measures the iforest plugin's scoring throughput through the
 * SDK harness (no host, no sockets), for tools/bench.d/iforest.
 *
 *     iforest-bench MODEL ROWS.f64 CHANNELS [BATCH [SECONDS [SCORES_OUT]]]
 *
 * ROWS.f64 holds row-major native doubles, CHANNELS per row. The rows are
 * scored in batches of BATCH (default 1024, the host's batch size) again and
 * again for at least SECONDS (default 2); prints samples per second of wall-clock time
 * and per second of CPU time (the fairer figure on a shared, loaded machine). With
 * SCORES_OUT, the scores of one pass are written there as doubles.
 */
#include <edgewatch/testing.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double s_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads the whole file of rows, nch doubles each; *rows = 0 on failure. */
static double *s_read_rows(const char *path, size_t nch, size_t *rows)
{
    *rows = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return NULL;
    }
    double *values = NULL;
    long size = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    size_t n = size > 0 ? (size_t)size / (nch * sizeof(double)) : 0;
    if (n > 0 && fseek(fp, 0, SEEK_SET) == 0)
        values = malloc(n * nch * sizeof *values);
    if (values && fread(values, sizeof(double) * nch, n, fp) == n) {
        *rows = n;
    } else {
        fprintf(stderr, "cannot read %s\n", path);
        free(values);
        values = NULL;
    }
    fclose(fp);
    return values;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL ROWS.f64 CHANNELS [BATCH [SECONDS [SCORES_OUT]]]\n",
                argv[0]);
        return 2;
    }
    size_t nch = (size_t)strtoul(argv[3], NULL, 10);
    size_t batch = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 1024;
    double seconds = argc > 5 ? strtod(argv[5], NULL) : 2.0;
    if (nch < 1 || nch > 4096 || batch < 1) {
        fprintf(stderr, "bad CHANNELS or BATCH\n");
        return 2;
    }
    int rc = 1;
    ew_harness *h = NULL;
    char **names = NULL;
    int64_t *ts = NULL;
    size_t rows;
    double *values = s_read_rows(argv[2], nch, &rows);
    if (!values)
        goto cleanup;
    ts = calloc(batch, sizeof *ts);
    names = calloc(nch, sizeof *names);
    if (!ts || !names)
        goto oom;
    for (size_t c = 0; c < nch; c++) {
        names[c] = malloc(16);
        if (!names[c])
            goto oom;
        snprintf(names[c], 16, "c%zu", c);
    }
    h = ew_harness_new(ew_plugin_entry(), NULL);
    if (!h)
        goto oom;
    ew_harness_input(h, nch, (const char *const *)names);
    ew_harness_option(h, "model", argv[1]);
    if (ew_harness_init(h) != EW_OK) {
        fprintf(stderr, "init: %s\n", ew_harness_error(h));
        goto cleanup;
    }
    if (argc > 6) {
        FILE *out = fopen(argv[6], "wb");
        if (!out) {
            perror(argv[6]);
            goto cleanup;
        }
        for (size_t i = 0; i < rows; i += batch) {
            size_t n = rows - i < batch ? rows - i : batch;
            ew_harness_process(h, n, ts, values + i * nch);
            fwrite(ew_harness_scores(h), sizeof(double), n, out);
        }
        fclose(out);
    }
    size_t done = 0;
    double start = s_clock(CLOCK_MONOTONIC), cpu0 = s_clock(CLOCK_PROCESS_CPUTIME_ID);
    double elapsed = 0;
    while (elapsed < seconds) {
        for (size_t i = 0; i < rows; i += batch) {
            size_t n = rows - i < batch ? rows - i : batch;
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
    free(ts);
    return rc;
}
