/* graph: turns the parsed configuration into validated pipeline settings and
 * a graph of nodes (kinds, plugins, edges, host options), in topological order. */
#ifndef EW_CORE_GRAPH_H
#define EW_CORE_GRAPH_H

#include "config.h"
#include "log.h"
#include "options.h"
#include "scoring.h"

#include <edgewatch/plugin.h>
#include <stdbool.h>

/* [pipeline] settings with their defaults applied. */
typedef struct pipeline_settings {
    const char *name;        /* default "edgewatch" */
    const char *state_dir;   /* default "/var/lib/edgewatch" */
    const char *plugin_path; /* colon-separated folders, or NULL */
    const char *http;        /* listen address or "off"; default "127.0.0.1:8080" */
    ew_log_level log_level;  /* default info */
    log_format log_format;   /* default text */
    int64_t shutdown_timeout_ns;
    int64_t batch_max;
    int64_t linger_ns;
    int64_t queue;
} pipeline_settings;

/* Node settings the host itself reads (not passed to the plugin). */
typedef struct node_settings {
    int64_t batch_max;     /* samples per batch a source sends */
    int64_t linger_ns;     /* how long a partial batch may wait */
    int64_t queue;         /* batches each input edge may hold (high-water mark) */
    bool drop_when_full;   /* on_full = drop */
    bool only_anomalies;   /* sinks: only = anomalies */
    bool only_events;      /* sinks: only = events */
    int only_line;         /* line of the `only` key, 0 = not set */
    scoring_settings scoring; /* detectors: calibration, flag and events */
} node_settings;

typedef struct graph_node {
    char *name;            /* "pump" of [source.pump] */
    char *section;         /* "source.pump" */
    int line;              /* line of the section header */
    ew_kind kind;
    char *plugin;          /* plugin name */
    int plugin_line;
    int input_line;        /* line of `input`, 0 if none */
    const char *const *input_names; /* as written in `input` */
    size_t *inputs;        /* indices of upstream nodes */
    size_t n_inputs;
    size_t *outputs;       /* indices of downstream nodes */
    size_t n_outputs;
    node_settings settings;
    options_kv *plugin_kvs; /* every other key, for the plugin's option table */
    size_t n_plugin_kvs;
} graph_node;

typedef struct graph {
    pipeline_settings settings;
    graph_node *nodes;
    size_t count;
    size_t *order;         /* node indices, upstream before downstream */
    char **warnings;       /* "PATH:LINE: [section] ...", for the caller to log */
    size_t n_warnings;
    options_mem mem;       /* strings of the settings */
} graph;

/* The option tables of [pipeline] and of the host's keys in node sections,
 * for `edgewatch describe pipeline|node` and the configuration reference. */
const ew_option *graph_pipeline_options(void);
const ew_option *graph_node_options(void);

/* Lower-case name of a kind ("detector"). */
const char *graph_kind_name(ew_kind kind);

/* Builds and checks the graph: section kinds, node names, plugin names ([a-z0-9_]+),
 * host option values, unknown inputs, cycles, sources with inputs, detectors and
 * sinks without, nodes that reach no sink (a warning). Returns 0 or -1 with err.
 * The graph points into `cfg`, which must outlive it. */
int graph_build(const config *cfg, graph *g, config_error *err);

/* The node named `name`, or -1. */
long graph_find(const graph *g, const char *name);

/* Prints the graph for `edgewatch check`. */
void graph_print(const graph *g, FILE *out);

void graph_free(graph *g);

#endif
