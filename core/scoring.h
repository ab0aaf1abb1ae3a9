/* scoring: the host's half of a detector's scoring path, shared by the host and
 * the plugin test harness: the raw statistic a plugin writes is calibrated into
 * a score with the same meaning on every stream, flagged, and grouped into alert
 * events that name the channels contributing most (docs/detectors.md). */
#ifndef EW_CORE_SCORING_H
#define EW_CORE_SCORING_H

#include <edgewatch/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum scoring_calibrate {
    SCORING_AUTO = 0,       /* likelihood, unless the plugin says its score is calibrated */
    SCORING_LIKELIHOOD = 1, /* Gaussian tail of the short-term average of raw vs its history */
    SCORING_NONE = 2,       /* the plugin's own score and flag */
} scoring_calibrate;

/* A detector node's scoring keys, with the host's defaults applied. */
typedef struct scoring_settings {
    int calibrate;          /* scoring_calibrate */
    int64_t window;         /* calibrate_window: short averages kept as the history */
    int64_t average;        /* calibrate_average: raw values in the short average */
    int64_t warmup;         /* calibrate_warmup: averages seen before the first score */
    double alert_on;        /* an event opens at a score >= alert_on (also the anomaly flag) */
    double alert_off;       /* ... and closes once the score stays below alert_off */
    int64_t delay;          /* alert_delay: samples in a row at alert_on that open an event */
    int64_t hold;           /* alert_hold: for this many samples */
    int64_t hold_ns;        /* alert_hold_time: and for at least this long */
    int64_t top;            /* alert_top: channels an event names */
} scoring_settings;

/* The option rows of these keys (for the graph's node table) and their defaults. */
#define SCORING_DEFAULT_WINDOW 8640
#define SCORING_DEFAULT_AVERAGE 10
#define SCORING_DEFAULT_WARMUP 300
#define SCORING_DEFAULT_ALERT_ON 0.5
#define SCORING_DEFAULT_ALERT_OFF 0.3
#define SCORING_DEFAULT_DELAY 1
#define SCORING_DEFAULT_HOLD 10
#define SCORING_DEFAULT_TOP 3

/* Fills `s` with the defaults. */
void scoring_settings_default(scoring_settings *s);

/* Called with each event as it opens and as it closes. */
typedef int (*scoring_event_fn)(void *ctx, const ew_event *event);

typedef struct scoring scoring;

/* Creates the stage for a detector node named `node` whose input has `channels`
 * channels named `names` (borrowed, valid for the stage's life). `plugin_calibrated`
 * is what the plugin said through set_score_calibrated. NULL when out of memory. */
scoring *scoring_new(const scoring_settings *s, const char *node, size_t channels, const char *const *names,
                     bool plugin_calibrated);

/* Whether the stage calibrates (likelihood) or keeps the plugin's score. */
bool scoring_calibrates(const scoring *sc);

/* Turns what the plugin wrote for `count` samples into final scores and flags, in
 * place in out->score and out->anomaly: NaN score = not scored (learning, or no
 * statistic), flag 0. Events that open or close are passed to `emit` (which may be
 * NULL); its first non-zero return is returned. `events` counts events opened. */
int scoring_apply(scoring *sc, size_t count, const int64_t *ts, ew_scores *out, scoring_event_fn emit, void *ctx,
                  uint64_t *events);

/* Closes an event still open (end of stream, shutdown) and passes it to `emit`. */
int scoring_finish(scoring *sc, scoring_event_fn emit, void *ctx);

/* The calibration history as bytes to keep across a restart (malloc'd; caller
 * frees), or NULL when the stage does not calibrate or is out of memory. */
void *scoring_save(const scoring *sc, size_t *len);

/* Restores a history saved by scoring_save. Returns 0, or -1 with err when the
 * bytes are not such a history or were saved with other calibration options
 * (the history is then left empty). */
int scoring_load(scoring *sc, const void *data, size_t len, char *err, size_t errlen);

void scoring_destroy(scoring **sc);

#endif
