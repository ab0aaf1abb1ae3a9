/* runtime: the supervisor. Loads every node's plugin and options, starts the
 * node threads in order, serves /health and /metrics, handles signals and
 * drives a graceful (or, past the deadline, forced) shutdown. */
#ifndef EW_CORE_RUNTIME_H
#define EW_CORE_RUNTIME_H

#include "config.h"
#include "graph.h"
#include "loader.h"
#include "log.h"
#include "node.h"

#include <signal.h>

typedef struct runtime {
    const graph *g;
    const config *cfg;
    const logger *log;
    node_env env;
    struct ew_node *nodes; /* indexed like g->nodes */
    edge *edges;
    size_t n_edges;
    int64_t started_realtime_ns;
    _Atomic int phase; /* runtime_phase */
} runtime;

typedef enum runtime_phase {
    RUNTIME_STARTING = 0,
    RUNTIME_RUNNING = 1,
    RUNTIME_STOPPING = 2,
} runtime_phase;

/* Loads and vets every node's plugin and fills its options: everything
 * `edgewatch check` validates. Returns 0 or -1 with err (file:line context). */
int runtime_prepare(runtime *rt, const config *cfg, const graph *g, const loader_path *lp, const logger *lg,
                    config_error *err);

/* Runs the pipeline until every stream has ended, a fatal error, or a signal in
 * `signals` (blocked in every thread; read through a signalfd). Returns the exit
 * code: 0 when everything accepted was delivered, 1 on a runtime failure. */
int runtime_run(runtime *rt, const sigset_t *signals);

void runtime_free(runtime *rt);

#endif
