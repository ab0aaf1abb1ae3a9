/* edgewatch plugin test harness: drives one plugin instance without the host,
 * for unit tests of plugins (in tree or out of tree, e.g. with Check).
 *
 *     ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);  // NULL: temporary state folder
 *     ew_harness_option(h, "window", "50");
 *     ew_harness_input(h, 1, (const char *[]){"temp"});   // detectors only
 *     if (ew_harness_init(h) != EW_OK) puts(ew_harness_error(h));
 *     ew_harness_process(h, n, ts, values);                // values: n x 1 channel
 *     const double *scores = ew_harness_scores(h);         // n scores, until the next call
 *     ew_harness_destroy(&h);
 *
 * Options are parsed and validated exactly as the host does. Link with
 * `pkg-config --libs edgewatch-testing`.
 */
#ifndef EDGEWATCH_TESTING_H
#define EDGEWATCH_TESTING_H

#include <edgewatch/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ew_harness ew_harness;

/* Creates a harness for `plugin`, named "test"; state files go under state_dir.
 * With NULL, the state functions use a temporary folder the harness makes (in
 * TMPDIR, else /tmp) on first use and removes in ew_harness_destroy, so state
 * lasts for this harness only; give a folder to test a restart. Returns NULL
 * when out of memory. */
ew_harness *ew_harness_new(const ew_plugin *plugin, const char *state_dir);
/* Sets an option as if written `key = value` in the node's section. */
int ew_harness_option(ew_harness *h, const char *key, const char *value);
/* Detectors and sinks: the schema of the input stream (before init). */
int ew_harness_input(ew_harness *h, size_t channels, const char *const *names);
/* Validates the options, calls init then start. Returns the first error code;
 * ew_harness_error tells why. */
int ew_harness_init(ew_harness *h);
/* Sources: calls produce once; emitted samples accumulate (see below). */
int ew_harness_produce(ew_harness *h, int64_t *wake_at);
/* Sources: runs produce until EW_EOF, an error, or `max_samples` emitted
 * (0 = no limit), ignoring wake_at. Returns the last code. */
int ew_harness_run(ew_harness *h, size_t max_samples);
/* Samples emitted so far; values are row-major with ew_harness_output(h)->channels. */
size_t ew_harness_emitted(const ew_harness *h);
const int64_t *ew_harness_emitted_ts(const ew_harness *h);
const double *ew_harness_emitted_values(const ew_harness *h);
/* Drops the accumulated samples. */
void ew_harness_clear(ew_harness *h);
/* The node's output schema (for detectors: input + extras + score + anomaly). */
const ew_schema *ew_harness_output(const ew_harness *h);
/* Detectors: scores `count` samples; scores/flags/extra may be read back with
 * the accessors below until the next call. */
int ew_harness_process(ew_harness *h, size_t count, const int64_t *ts, const double *values);
const double *ew_harness_scores(const ew_harness *h);
const uint8_t *ew_harness_flags(const ew_harness *h);
const double *ew_harness_extra(const ew_harness *h);
/* Detectors, ABI 1.2: the raw statistics (NaN where not written), the per-channel
 * contributions (count x input channels, NaN where not written) and the learning
 * marks of the last process call. */
const double *ew_harness_raw(const ew_harness *h);
const double *ew_harness_contrib(const ew_harness *h);
const uint8_t *ew_harness_learning_flags(const ew_harness *h);
/* Whether the plugin said in init that its own score is calibrated (ABI 1.2). */
bool ew_harness_score_calibrated(const ew_harness *h);
/* Sinks: delivers a batch of the input schema. */
int ew_harness_consume(ew_harness *h, size_t count, const int64_t *ts, const double *values);
/* Calls flush. */
int ew_harness_flush(ew_harness *h);
/* The message of the last error (from set_error or option validation), or "". */
const char *ew_harness_error(const ew_harness *h);
/* Value of a counter the plugin registered, 0 if none. */
uint64_t ew_harness_counter(const ew_harness *h, const char *name);
/* Number of lines the plugin logged at `level` or more severe. */
size_t ew_harness_logged(const ew_harness *h, ew_log_level level);
/* Asks the plugin to stop: host->stopping returns true and emit returns EW_ESTOP. */
void ew_harness_request_stop(ew_harness *h);
/* Whether the plugin last reported its model as being learnt (ABI 1.1 set_learning). */
bool ew_harness_learning(const ew_harness *h);
/* The reason the plugin last gave with set_degraded, or NULL when it is not degraded. */
const char *ew_harness_degraded(const ew_harness *h);
/* Calls destroy (if init succeeded), frees everything, sets *h to NULL. */
void ew_harness_destroy(ew_harness **h);
/* Sinks, ABI 1.2: delivers one alert event as the host does for a sink set to
 * `only = events` (fill struct_size = sizeof(ew_event), as the host does). Returns
 * the plugin's code; EW_EINVAL for a plugin that is not a sink or has no
 * consume_event (ew_harness_error tells which). */
int ew_harness_consume_event(ew_harness *h, const ew_event *event);

#ifdef __cplusplus
}
#endif

#endif
