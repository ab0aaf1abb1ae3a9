/* metrics: renders /health (JSON) and /metrics (Prometheus text) from the
 * runtime's node states and counters. */
#ifndef EW_CORE_METRICS_H
#define EW_CORE_METRICS_H

#include "http.h"
#include "runtime.h"

/* The http_handler for the runtime (ctx = runtime *): /health, /metrics, 404. */
void metrics_http_handler(void *ctx, const char *path, http_response *out);

/* Fills `out` with the health document; status 200 when every node runs (or
 * has ended cleanly) and the pipeline is running, 503 otherwise. */
void metrics_health(const runtime *rt, http_response *out);

/* Fills `out` with the Prometheus exposition. */
void metrics_prometheus(const runtime *rt, http_response *out);

#endif
