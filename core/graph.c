/* graph: validates the configuration's sections and edges and orders the nodes. */
#include "graph.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* [pipeline] keys, parsed with the same option machinery as plugin options. */
typedef struct s_pipeline_cfg {
    const char *name;
    const char *state_dir;
    const char *plugin_path;
    const char *http;
    int log_level;
    int log_format;
    int64_t shutdown_timeout;
    int64_t batch_max;
    int64_t linger;
    int64_t queue;
} s_pipeline_cfg;

static const ew_option s_pipeline_options[] = {
    EW_OPTION("name", EW_OPT_STRING, "edgewatch", s_pipeline_cfg, name,
              "Name of the pipeline, shown in /health and logs."),
    EW_OPTION("state_dir", EW_OPT_STRING, "/var/lib/edgewatch", s_pipeline_cfg, state_dir,
              "Folder holding one sub-folder of state files (models) per node."),
    EW_OPTION("plugin_path", EW_OPT_STRING, NULL, s_pipeline_cfg, plugin_path,
              "Colon-separated folders searched for plugins before the built-in folder."),
    EW_OPTION("http", EW_OPT_STRING, "127.0.0.1:8080", s_pipeline_cfg, http,
              "Listen address of /health and /metrics (host:port), or off."),
    EW_OPTION_ENUM("log_level", "info", "error|warn|info|debug", s_pipeline_cfg, log_level,
                   "Least severe level logged."),
    EW_OPTION_ENUM("log_format", "text", "text|json", s_pipeline_cfg, log_format,
                   "Log lines as text or as one JSON object each."),
    EW_OPTION_RANGE("shutdown_timeout", EW_OPT_DURATION, "10s", 0.001, 3600, s_pipeline_cfg,
                    shutdown_timeout, "How long a graceful shutdown may take before it is forced."),
    EW_OPTION_RANGE("batch_max", EW_OPT_INT, "256", 1, 65536, s_pipeline_cfg, batch_max,
                    "Default most samples a source puts in one batch."),
    EW_OPTION_RANGE("linger", EW_OPT_DURATION, "1ms", 0, 60, s_pipeline_cfg, linger,
                    "Default longest time a partial batch waits before it is sent (0 = per sample)."),
    EW_OPTION_RANGE("queue", EW_OPT_INT, "16", 1, 1000000, s_pipeline_cfg, queue,
                    "Default batches each edge holds before the sender blocks or drops."),
    EW_OPTION_END,
};

/* Host keys of a node section; every other key goes to the plugin. */
typedef struct s_node_cfg {
    const char *plugin;
    ew_list input;
    int64_t batch_max;
    int64_t linger;
    int64_t queue;
    int on_full;
    int only;
    int calibrate;
    int64_t calibrate_window;
    int64_t calibrate_average;
    int64_t calibrate_warmup;
    double alert_on;
    double alert_off;
    int64_t alert_delay;
    int64_t alert_hold;
    int64_t alert_hold_time;
    int64_t alert_top;
} s_node_cfg;

static const ew_option s_node_options[] = {
    EW_OPTION_REQUIRED("plugin", EW_OPT_STRING, s_node_cfg, plugin,
                       "Name of the plugin this node runs, e.g. zscore."),
    EW_OPTION("input", EW_OPT_LIST, NULL, s_node_cfg, input,
              "Upstream nodes whose streams this node reads (detectors and sinks)."),
    EW_OPTION_RANGE("batch_max", EW_OPT_INT, NULL, 1, 65536, s_node_cfg, batch_max,
                    "Most samples this source puts in one batch."),
    EW_OPTION_RANGE("linger", EW_OPT_DURATION, NULL, 0, 60, s_node_cfg, linger,
                    "Longest time a partial batch of this source waits (0 = per sample)."),
    EW_OPTION_RANGE("queue", EW_OPT_INT, NULL, 1, 1000000, s_node_cfg, queue,
                    "Batches each input edge of this node holds."),
    EW_OPTION_ENUM("on_full", "block", "block|drop", s_node_cfg, on_full,
                   "When a downstream edge is full: wait, or drop the batch and count it."),
    EW_OPTION_ENUM("only", "all", "all|anomalies|events", s_node_cfg, only,
                   "Sinks: deliver every sample, only those flagged anomalous, or only alert events."),
    EW_OPTION_ENUM("calibrate", "auto", "auto|likelihood|none", s_node_cfg, calibrate,
                   "Detectors: turn the raw statistic into a likelihood score (auto: unless the plugin's "
                   "score is calibrated on training data)."),
    EW_OPTION_RANGE("calibrate_window", EW_OPT_INT, "8640", 10, 10000000, s_node_cfg, calibrate_window,
                    "Detectors: short averages of the raw statistic kept as the stream's history."),
    EW_OPTION_RANGE("calibrate_average", EW_OPT_INT, "10", 1, 10000, s_node_cfg, calibrate_average,
                    "Detectors: raw values in the short average that is scored."),
    EW_OPTION_RANGE("calibrate_warmup", EW_OPT_INT, "300", 2, 10000000, s_node_cfg, calibrate_warmup,
                    "Detectors: averages in the history before the first calibrated score."),
    EW_OPTION_RANGE("alert_on", EW_OPT_DOUBLE, NULL, 0, 1, s_node_cfg, alert_on,
                    "Detectors: score at which a sample is flagged and an event opens (default 0.5; "
                    "with calibrate = none, the plugin's own flag)."),
    EW_OPTION_RANGE("alert_off", EW_OPT_DOUBLE, NULL, 0, 1, s_node_cfg, alert_off,
                    "Detectors: score below which an open event starts to close (default 0.6 x alert_on)."),
    EW_OPTION_RANGE("alert_delay", EW_OPT_INT, "1", 1, 100000000, s_node_cfg, alert_delay,
                    "Detectors: samples in a row at alert_on that open an event (an on-delay against lone spikes)."),
    EW_OPTION_RANGE("alert_hold", EW_OPT_INT, "10", 1, 100000000, s_node_cfg, alert_hold,
                    "Detectors: samples in a row below alert_off that close an event."),
    EW_OPTION_RANGE("alert_hold_time", EW_OPT_DURATION, "0", 0, 86400, s_node_cfg, alert_hold_time,
                    "Detectors: and the least time below alert_off that closes an event."),
    EW_OPTION_RANGE("alert_top", EW_OPT_INT, "3", 0, 64, s_node_cfg, alert_top,
                    "Detectors: channels an event names, largest contribution first."),
    EW_OPTION_END,
};

const ew_option *graph_pipeline_options(void)
{
    return s_pipeline_options;
}

const ew_option *graph_node_options(void)
{
    return s_node_options;
}

const char *graph_kind_name(ew_kind kind)
{
    switch (kind) {
    case EW_KIND_SOURCE: return "source";
    case EW_KIND_DETECTOR: return "detector";
    case EW_KIND_SINK: return "sink";
    }
    return "unknown";
}

static bool s_is_host_key(const char *key)
{
    for (const ew_option *o = s_node_options; o->name; o++)
        if (strcmp(o->name, key) == 0)
            return true;
    return false;
}

static bool s_valid_node_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-'))
            return false;
    return true;
}

static bool s_valid_plugin_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 31) /* state file headers hold 32 bytes of plugin name */
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

static void s_from_options_error(config_error *err, const char *section, const options_error *oe,
                                 int section_line)
{
    config_error_set(err, oe->line ? oe->line : section_line, section, oe->key, "%s", oe->message);
}

/* Copies a section's entries into kv rows. */
static options_kv *s_kvs(const config_section *sec, bool host, size_t *n)
{
    options_kv *kvs = calloc(sec->count ? sec->count : 1, sizeof *kvs);
    if (!kvs)
        return NULL;
    *n = 0;
    for (size_t i = 0; i < sec->count; i++) {
        if (s_is_host_key(sec->entries[i].key) != host)
            continue;
        kvs[(*n)++] = (options_kv){sec->entries[i].key, sec->entries[i].value, sec->entries[i].line};
    }
    return kvs;
}

static int s_pipeline(const config *cfg, graph *g, config_error *err)
{
    const config_section *sec = config_find(cfg, "pipeline");
    config_section empty = {.name = "pipeline"};
    if (!sec)
        sec = &empty;
    size_t n = 0;
    options_kv *kvs = calloc(sec->count ? sec->count : 1, sizeof *kvs);
    if (!kvs)
        return -1;
    for (size_t i = 0; i < sec->count; i++)
        kvs[n++] = (options_kv){sec->entries[i].key, sec->entries[i].value, sec->entries[i].line};
    s_pipeline_cfg pc;
    options_error oe = {0};
    int rc = options_fill(s_pipeline_options, sizeof pc, kvs, n, &pc, &g->mem, &oe);
    free(kvs);
    if (rc < 0) {
        s_from_options_error(err, "pipeline", &oe, sec->line);
        return -1;
    }
    g->settings = (pipeline_settings){
        .name = pc.name,
        .state_dir = pc.state_dir,
        .plugin_path = pc.plugin_path,
        .http = pc.http,
        .log_level = (ew_log_level)pc.log_level,
        .log_format = (log_format)pc.log_format,
        .shutdown_timeout_ns = pc.shutdown_timeout,
        .batch_max = pc.batch_max,
        .linger_ns = pc.linger,
        .queue = pc.queue,
    };
    return 0;
}

static int s_warn(graph *g, const char *path, int line, const char *section, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int s_warn(graph *g, const char *path, int line, const char *section, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char **w = realloc(g->warnings, (g->n_warnings + 1) * sizeof *w);
    if (!w)
        return -1;
    g->warnings = w;
    if (asprintf(&g->warnings[g->n_warnings], "%s:%d: [%s] %s", path, line, section, msg) < 0)
        return -1;
    g->n_warnings++;
    return 0;
}

/* Parses one node section into g->nodes[g->count]. */
static int s_node(const config_section *sec, graph *g, config_error *err)
{
    const char *dot = strchr(sec->name, '.');
    ew_kind kind;
    size_t klen = dot ? (size_t)(dot - sec->name) : strlen(sec->name);
    if (klen == 6 && strncmp(sec->name, "source", 6) == 0)
        kind = EW_KIND_SOURCE;
    else if (klen == 8 && strncmp(sec->name, "detector", 8) == 0)
        kind = EW_KIND_DETECTOR;
    else if (klen == 4 && strncmp(sec->name, "sink", 4) == 0)
        kind = EW_KIND_SINK;
    else {
        config_error_set(err, sec->line, sec->name, NULL,
                         "unknown section: expected [pipeline], [source.NAME], [detector.NAME] or [sink.NAME]");
        return -1;
    }
    const char *name = dot ? dot + 1 : "";
    if (!s_valid_node_name(name)) {
        config_error_set(err, sec->line, sec->name, NULL,
                         "node name \"%s\" is not valid: use 1 to 63 letters, digits, _ or -", name);
        return -1;
    }
    for (size_t i = 0; i < g->count; i++) {
        if (strcmp(g->nodes[i].name, name) == 0) {
            config_error_set(err, sec->line, sec->name, NULL,
                             "node name \"%s\" is already used by [%s] at line %d; node names must be unique",
                             name, g->nodes[i].section, g->nodes[i].line);
            return -1;
        }
    }
    /* The node joins g->count only once it has its name and section, so every
     * counted node can be compared by name and freed by graph_free. */
    char *node_name = strdup(name);
    char *section = strdup(sec->name);
    if (!node_name || !section) {
        free(node_name);
        free(section);
        goto oom;
    }
    graph_node *n = &g->nodes[g->count++];
    *n = (graph_node){.name = node_name, .section = section, .line = sec->line, .kind = kind};

    size_t nk = 0;
    options_kv *kvs = s_kvs(sec, true, &nk);
    if (!kvs)
        goto oom;
    s_node_cfg nc;
    options_error oe = {0};
    int rc = options_fill(s_node_options, sizeof nc, kvs, nk, &nc, &g->mem, &oe);
    free(kvs);
    if (rc < 0) {
        s_from_options_error(err, sec->name, &oe, sec->line);
        return -1;
    }
    const config_entry *pe = config_get(sec, "plugin");
    n->plugin_line = pe->line;
    if (!s_valid_plugin_name(nc.plugin)) {
        config_error_set(err, pe->line, sec->name, "plugin",
                         "\"%s\" is not a plugin name: write a bare name such as zscore ([a-z0-9_]+); "
                         "plugins are found in plugin_path, never by file path",
                         nc.plugin);
        return -1;
    }
    n->plugin = strdup(nc.plugin);
    if (!n->plugin)
        goto oom;
    const config_entry *ie = config_get(sec, "input");
    n->input_line = ie ? ie->line : 0;
    static const char *const source_only[] = {"batch_max", "linger"};
    for (size_t i = 0; i < 2; i++) {
        const config_entry *e = config_get(sec, source_only[i]);
        if (e && kind != EW_KIND_SOURCE) {
            config_error_set(err, e->line, sec->name, e->key,
                             "only sources batch samples; detectors and sinks keep their input's batches");
            return -1;
        }
    }
    static const char *const detector_only[] = {"calibrate", "calibrate_window", "calibrate_average",
                                                "calibrate_warmup", "alert_on", "alert_off",
                                                "alert_delay", "alert_hold", "alert_hold_time", "alert_top"};
    for (size_t i = 0; i < sizeof detector_only / sizeof *detector_only; i++) {
        const config_entry *e = config_get(sec, detector_only[i]);
        if (e && kind != EW_KIND_DETECTOR) {
            config_error_set(err, e->line, sec->name, e->key,
                             "only detectors score samples; set it on the detector section that feeds this node");
            return -1;
        }
    }
    const config_entry *e_on = config_get(sec, "alert_on"), *e_off = config_get(sec, "alert_off");
    if (e_off && e_on && nc.alert_off > nc.alert_on) {
        config_error_set(err, e_off->line, sec->name, "alert_off",
                         "alert_off (%g) is above alert_on (%g): an event would close before it opens; "
                         "set alert_off at or below alert_on",
                         nc.alert_off, nc.alert_on);
        return -1;
    }
    if (e_off && !e_on && nc.alert_off > SCORING_DEFAULT_ALERT_ON) {
        config_error_set(err, e_off->line, sec->name, "alert_off",
                         "alert_off (%g) is above the default alert_on (%g): set alert_on too",
                         nc.alert_off, SCORING_DEFAULT_ALERT_ON);
        return -1;
    }
    const config_entry *oe_only = config_get(sec, "only");
    if (oe_only && kind != EW_KIND_SINK) {
        config_error_set(err, oe_only->line, sec->name, "only", "only sinks filter samples; remove it here");
        return -1;
    }
    if (kind == EW_KIND_SOURCE && ie) {
        config_error_set(err, ie->line, sec->name, "input",
                         "a source reads a device, not other nodes: remove input or make this a detector");
        return -1;
    }
    if (kind != EW_KIND_SOURCE && (!ie || nc.input.count == 0)) {
        config_error_set(err, ie ? ie->line : sec->line, sec->name, "input",
                         "a %s needs input = NODE[, NODE...] naming the nodes it reads",
                         graph_kind_name(kind));
        return -1;
    }
    n->settings = (node_settings){
        .batch_max = config_get(sec, "batch_max") ? nc.batch_max : g->settings.batch_max,
        .linger_ns = config_get(sec, "linger") ? nc.linger : g->settings.linger_ns,
        .queue = config_get(sec, "queue") ? nc.queue : g->settings.queue,
        .drop_when_full = nc.on_full == 1,
        .only_anomalies = nc.only == 1,
        .only_events = nc.only == 2,
        .only_line = oe_only ? oe_only->line : 0,
    };
    n->settings.scoring = (scoring_settings){
        .calibrate = nc.calibrate,
        .window = nc.calibrate_window,
        .average = nc.calibrate_average,
        .warmup = nc.calibrate_warmup,
        .alert_on = e_on ? nc.alert_on : NAN,
        .alert_off = e_off ? nc.alert_off : NAN,
        .delay = nc.alert_delay,
        .hold = nc.alert_hold,
        .hold_ns = nc.alert_hold_time,
        .top = nc.alert_top,
    };
    /* Input names are resolved into indices once every node is known. */
    n->inputs = calloc(nc.input.count ? nc.input.count : 1, sizeof *n->inputs);
    if (!n->inputs)
        goto oom;
    n->n_inputs = nc.input.count;
    n->input_names = nc.input.items;
    n->plugin_kvs = s_kvs(sec, false, &n->n_plugin_kvs);
    if (!n->plugin_kvs)
        goto oom;
    return 0;
oom:
    config_error_set(err, sec->line, sec->name, NULL, "out of memory");
    return -1;
}

/* Turns input names into node indices and fills the output lists. */
static int s_resolve(graph *g, config_error *err)
{
    for (size_t i = 0; i < g->count; i++) {
        graph_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_inputs; k++) {
            const char *in = n->input_names[k];
            long j = graph_find(g, in);
            if (j < 0) {
                config_error_set(err, n->input_line, n->section, "input",
                                 "no node is named \"%s\": define [source.%s] or [detector.%s], or fix the name",
                                 in, in, in);
                return -1;
            }
            if ((size_t)j == i) {
                config_error_set(err, n->input_line, n->section, "input", "a node cannot read its own output");
                return -1;
            }
            if (g->nodes[j].kind == EW_KIND_SINK) {
                config_error_set(err, n->input_line, n->section, "input",
                                 "\"%s\" is a sink and has no output to read", in);
                return -1;
            }
            for (size_t m = 0; m < k; m++) {
                if (n->inputs[m] == (size_t)j) {
                    config_error_set(err, n->input_line, n->section, "input", "\"%s\" is listed twice", in);
                    return -1;
                }
            }
            n->inputs[k] = (size_t)j;
        }
    }
    for (size_t i = 0; i < g->count; i++) {
        graph_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_inputs; k++) {
            graph_node *up = &g->nodes[n->inputs[k]];
            size_t *o = realloc(up->outputs, (up->n_outputs + 1) * sizeof *o);
            if (!o)
                return -1;
            up->outputs = o;
            up->outputs[up->n_outputs++] = i;
        }
    }
    return 0;
}

/* Kahn's algorithm; on a cycle, names its members. */
static int s_order(graph *g, config_error *err)
{
    size_t *indeg = calloc(g->count + 1, sizeof *indeg);
    g->order = calloc(g->count + 1, sizeof *g->order);
    if (!indeg || !g->order) {
        free(indeg);
        return -1;
    }
    for (size_t i = 0; i < g->count; i++)
        indeg[i] = g->nodes[i].n_inputs;
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < g->count; i++)
        if (!indeg[i])
            g->order[tail++] = i;
    while (head < tail) {
        graph_node *n = &g->nodes[g->order[head++]];
        for (size_t k = 0; k < n->n_outputs; k++)
            if (--indeg[n->outputs[k]] == 0)
                g->order[tail++] = n->outputs[k];
    }
    if (tail == g->count) {
        free(indeg);
        return 0;
    }
    /* Walk inputs among the unordered nodes until one repeats: that is a cycle. */
    size_t start = 0;
    while (indeg[start] == 0)
        start++;
    size_t *seen = calloc(g->count, sizeof *seen);
    size_t cur = start, step = 1;
    while (seen && !seen[cur]) {
        seen[cur] = step++;
        const graph_node *n = &g->nodes[cur];
        for (size_t k = 0; k < n->n_inputs; k++) {
            if (indeg[n->inputs[k]]) {
                cur = n->inputs[k];
                break;
            }
        }
    }
    char path[400] = "";
    size_t used = 0;
    size_t first = cur;
    do {
        int w = snprintf(path + used, sizeof path - used, "%s <- ", g->nodes[cur].name);
        if (w < 0 || (size_t)w >= sizeof path - used)
            break;
        used += (size_t)w;
        const graph_node *n = &g->nodes[cur];
        for (size_t k = 0; k < n->n_inputs; k++) {
            if (indeg[n->inputs[k]]) {
                cur = n->inputs[k];
                break;
            }
        }
    } while (cur != first);
    snprintf(path + used, sizeof path - used, "%s", g->nodes[first].name);
    const graph_node *fn = &g->nodes[first];
    config_error_set(err, fn->input_line, fn->section, "input",
                     "the graph has a cycle (%s): data must flow from sources to sinks", path);
    free(seen);
    free(indeg);
    return -1;
}

/* Warns about nodes whose output reaches no sink: their work is wasted. */
static int s_reachability(graph *g, const char *path)
{
    bool *reaches = calloc(g->count + 1, sizeof *reaches);
    if (!reaches)
        return -1;
    for (size_t r = g->count; r-- > 0;) {
        size_t i = g->order[r];
        graph_node *n = &g->nodes[i];
        reaches[i] = n->kind == EW_KIND_SINK;
        for (size_t k = 0; k < n->n_outputs && !reaches[i]; k++)
            reaches[i] = reaches[n->outputs[k]];
    }
    int rc = 0;
    for (size_t i = 0; i < g->count && rc == 0; i++)
        if (!reaches[i])
            rc = s_warn(g, path, g->nodes[i].line, g->nodes[i].section,
                        "node \"%s\" reaches no sink: its output is discarded (add it to a sink's input)",
                        g->nodes[i].name);
    free(reaches);
    return rc;
}

int graph_build(const config *cfg, graph *g, config_error *err)
{
    memset(g, 0, sizeof *g);
    /* The node array is sized from the configuration alone; it is allocated
     * first, while the graph is still empty. */
    g->nodes = calloc(cfg->count + 1, sizeof *g->nodes);
    if (!g->nodes)
        goto fail;
    if (s_pipeline(cfg, g, err) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->count; i++) {
        if (strcmp(cfg->sections[i].name, "pipeline") == 0)
            continue;
        if (s_node(&cfg->sections[i], g, err) < 0)
            goto fail;
    }
    if (g->count == 0) {
        config_error_set(err, 0, NULL, NULL,
                         "the pipeline has no nodes: add at least a [source.NAME] and a [sink.NAME]");
        goto fail;
    }
    if (s_resolve(g, err) < 0 || s_order(g, err) < 0)
        goto fail;
    bool has_sink = false;
    for (size_t i = 0; i < g->count; i++)
        has_sink |= g->nodes[i].kind == EW_KIND_SINK;
    if (!has_sink) {
        config_error_set(err, 0, NULL, NULL, "the pipeline has no sink: add a [sink.NAME] section");
        goto fail;
    }
    if (s_reachability(g, cfg->path) < 0)
        goto fail;
    return 0;
fail:
    if (!err->message[0])
        config_error_set(err, 0, NULL, NULL, "out of memory");
    graph_free(g);
    return -1;
}

long graph_find(const graph *g, const char *name)
{
    for (size_t i = 0; i < g->count; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return (long)i;
    return -1;
}

void graph_print(const graph *g, FILE *out)
{
    fprintf(out, "pipeline \"%s\": %zu nodes\n", g->settings.name, g->count);
    for (size_t r = 0; r < g->count; r++) {
        const graph_node *n = &g->nodes[g->order[r]];
        fprintf(out, "  %-8s %-16s plugin=%s", graph_kind_name(n->kind), n->name, n->plugin);
        if (n->n_inputs) {
            fprintf(out, "  <- ");
            for (size_t k = 0; k < n->n_inputs; k++)
                fprintf(out, "%s%s", k ? ", " : "", g->nodes[n->inputs[k]].name);
        }
        if (n->n_outputs) {
            fprintf(out, "  -> ");
            for (size_t k = 0; k < n->n_outputs; k++)
                fprintf(out, "%s%s", k ? ", " : "", g->nodes[n->outputs[k]].name);
        }
        fputc('\n', out);
    }
}

void graph_free(graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->count; i++) {
        graph_node *n = &g->nodes[i];
        free(n->name);
        free(n->section);
        free(n->plugin);
        free(n->inputs);
        free(n->outputs);
        free(n->plugin_kvs);
    }
    free(g->nodes);
    free(g->order);
    for (size_t i = 0; i < g->n_warnings; i++)
        free(g->warnings[i]);
    free(g->warnings);
    options_mem_free(&g->mem);
    memset(g, 0, sizeof *g);
}
