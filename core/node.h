/* node: one running instance of a plugin on its own thread: the host API the
 * plugin calls, its sockets, batching, retry with backoff, and its metrics. */
#ifndef EW_CORE_NODE_H
#define EW_CORE_NODE_H

#include "graph.h"
#include "loader.h"
#include "log.h"
#include "options.h"
#include "scoring.h"

#include <edgewatch/plugin.h>
#include <pthread.h>
#include <zmq.h>
#include <stdatomic.h>
#include <stdbool.h>

#define NODE_MAX_COUNTERS 32

typedef enum node_state {
    NODE_STARTING = 0, /* loading, init */
    NODE_RUNNING = 1,  /* data flows */
    NODE_RETRYING = 2, /* a transient fault; backing off */
    NODE_ENDED = 3,    /* its stream ended and it finished cleanly */
    NODE_FAILED = 4,   /* a fatal error stopped it */
    NODE_STOPPING = 5, /* draining after a shutdown request */
    NODE_LEARNING = 6, /* running while a detector learns its model (healthy) */
    NODE_DEGRADED = 7, /* running, but cannot do all of its job (healthy, with a reason) */
} node_state;

/* Lower-case name of a state ("retrying"). */
const char *node_state_name(node_state s);

/* The state to show in /health and /metrics: running reads as learning while the
 * plugin says its model is being learnt. */
node_state node_shown_state(const struct ew_node *n);

/* Copies the reason given with set_degraded into out ("" when not degraded). */
void node_degraded_reason(struct ew_node *n, char *out, size_t outlen);

/* Counters every node keeps; written by the node's thread, read by /metrics. */
typedef struct node_metrics {
    _Atomic uint64_t samples_in;
    _Atomic uint64_t samples_out;
    _Atomic uint64_t batches_in;
    _Atomic uint64_t batches_out;
    _Atomic uint64_t anomalies;
    _Atomic uint64_t dropped;  /* samples dropped on full edges (on_full = drop) */
    _Atomic uint64_t retries;  /* transient faults retried */
    _Atomic uint64_t errors;   /* bad frames and other counted faults */
    _Atomic uint64_t busy_ns;  /* time spent in the plugin's data callbacks */
    _Atomic uint64_t events;   /* alert events opened (detectors) or delivered (sinks) */
} node_metrics;

/* A plugin-registered counter (struct ew_counter of the SDK). */
struct ew_counter {
    char name[64];
    char help[160];
    _Atomic uint64_t value;
};

/* One directed link between two nodes, with its own socket pair. */
typedef struct edge {
    size_t from, to;
    char endpoint[48];
    _Atomic uint64_t batches_sent;
    _Atomic uint64_t batches_received;
} edge;

/* What every node shares; read-only while nodes run. */
typedef struct node_env {
    const logger *log;
    void *zctx;
    const char *state_dir;
} node_env;

struct ew_node {
    size_t index;
    const graph_node *g;
    const node_env *env;
    loaded_plugin plugin;
    void *config;            /* the plugin's filled config struct */
    options_mem mem;
    void *self;              /* the plugin instance */
    bool initialized;

    ew_schema out_schema;
    char **out_names;
    size_t n_out_names;
    size_t n_extra;                  /* detectors: extra channels before score, anomaly */
    size_t *keep;                    /* detectors: input columns copied to the output (all
                                        but an upstream detector's score and anomaly) */
    size_t n_keep;
    const ew_schema **in_schemas;    /* per input, the upstream's out_schema */
    const char **in_origins;         /* per input, the upstream's name */

    void *ctl;                       /* PAIR to the supervisor */
    void **in_socks;
    edge **in_edges;
    bool *in_eos;
    size_t n_in, n_in_open;
    void **out_socks;
    edge **out_edges;
    size_t n_out;

    /* Source batching. */
    int64_t *batch_ts;
    double *batch_values;
    size_t batch_count;
    int64_t batch_first_mono;

    /* Detector and sink scratch, grown to the largest batch seen. */
    double *scores;
    uint8_t *flags;
    double *extra;
    double *raw;                     /* detectors, ABI 1.2: raw statistics */
    double *contrib;                 /* detectors, ABI 1.2: per-input-channel contributions */
    uint8_t *learn_flags;            /* detectors, ABI 1.2: samples taken for learning */
    int64_t *filter_ts;
    double *filter_values;
    size_t scratch_cap;

    _Atomic int state;
    _Atomic bool learning;   /* set through host->set_learning */
    _Atomic bool degraded;   /* set through host->set_degraded */
    bool score_calibrated;   /* set through host->set_score_calibrated, in init */
    scoring *scoring;        /* detectors: calibration, flag and events (core/scoring.c) */
    zmq_msg_t *events;       /* detectors: event frames waiting for their batch to go out */
    size_t n_events, events_cap;
    char degraded_reason[256]; /* guarded by degraded_lock */
    pthread_mutex_t degraded_lock;
    node_metrics m;
    struct ew_counter counters[NODE_MAX_COUNTERS];
    _Atomic size_t n_counters;

    char error[512];          /* last message from set_error */
    char state_path[4096];    /* state_dir/<node>, once prepared */
    bool stop_requested;      /* a graceful stop was asked for */
    bool abort_requested;     /* stop at once */
    unsigned retry_streak;
    uint64_t jitter_seed;
    pthread_t thread;
    bool thread_started;
};

/* The host function table given to every plugin. */
const ew_host *node_host_api(void);

/* Thread body: init (reports READY or FAIL on ctl), waits for GO, runs the
 * kind's loop, flushes, destroys and reports DONE. `arg` is the ew_node. */
void *node_thread(void *arg);

/* Batches waiting on the node's input edges. */
uint64_t node_queue_depth(const struct ew_node *n);

/* Control messages between the supervisor and a node. */
#define NODE_MSG_READY "READY"
#define NODE_MSG_FAIL "FAIL"
#define NODE_MSG_GO "GO"
#define NODE_MSG_STOP "STOP"
#define NODE_MSG_ABORT "ABORT"
#define NODE_MSG_DONE "DONE"

#endif
