/* metrics: health and Prometheus views of the running pipeline. */
#include "metrics.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void s_set_text(http_response *out, int status, const char *type, char *body, size_t len)
{
    out->status = status;
    out->content_type = type;
    out->body = body;
    out->len = len;
}

static double s_uptime(const runtime *rt)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    return rt->started_realtime_ns ? (double)(now - rt->started_realtime_ns) / 1e9 : 0.0;
}

void metrics_health(const runtime *rt, http_response *out)
{
    json_object *root = json_object_new_object();
    json_object *nodes = json_object_new_object();
    json_object *failed = json_object_new_array();
    json_object *retrying = json_object_new_array();
    json_object *degraded = json_object_new_array();
    bool healthy = atomic_load(&((runtime *)rt)->phase) == RUNTIME_RUNNING;
    bool any_starting = false;
    for (size_t i = 0; i < rt->g->count; i++) {
        const ew_node *n = &rt->nodes[i];
        node_state st = node_shown_state(n);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "kind", json_object_new_string(graph_kind_name(n->g->kind)));
        json_object_object_add(o, "plugin", json_object_new_string(n->g->plugin));
        json_object_object_add(o, "state", json_object_new_string(node_state_name(st)));
        json_object_object_add(o, "samples_in", json_object_new_uint64(atomic_load(&((ew_node *)n)->m.samples_in)));
        json_object_object_add(o, "samples_out", json_object_new_uint64(atomic_load(&((ew_node *)n)->m.samples_out)));
        json_object_object_add(o, "anomalies", json_object_new_uint64(atomic_load(&((ew_node *)n)->m.anomalies)));
        json_object_object_add(o, "events", json_object_new_uint64(atomic_load(&((ew_node *)n)->m.events)));
        json_object_object_add(o, "dropped", json_object_new_uint64(atomic_load(&((ew_node *)n)->m.dropped)));
        json_object_object_add(o, "retries", json_object_new_uint64(atomic_load(&((ew_node *)n)->m.retries)));
        json_object_object_add(o, "queue_depth", json_object_new_uint64(node_queue_depth(n)));
        if ((st == NODE_FAILED || st == NODE_RETRYING) && n->error[0])
            json_object_object_add(o, "error", json_object_new_string(n->error));
        if (st == NODE_DEGRADED) {
            char reason[256];
            node_degraded_reason((ew_node *)n, reason, sizeof reason);
            json_object_object_add(o, "reason", json_object_new_string(reason));
            json_object_array_add(degraded, json_object_new_string(n->g->name));
        }
        json_object_object_add(nodes, n->g->name, o);
        if (st == NODE_FAILED)
            json_object_array_add(failed, json_object_new_string(n->g->name));
        if (st == NODE_RETRYING)
            json_object_array_add(retrying, json_object_new_string(n->g->name));
        if (st != NODE_RUNNING && st != NODE_LEARNING && st != NODE_DEGRADED && st != NODE_ENDED)
            healthy = false;
        any_starting |= st == NODE_STARTING;
    }
    int phase = atomic_load(&((runtime *)rt)->phase);
    /* A node still starting while the phase is already running (just after GO) is starting, not stopping. */
    const char *status = healthy ? (json_object_array_length(degraded) ? "degraded" : "ok") : json_object_array_length(failed) ? "failed"
                                     : json_object_array_length(retrying) ? "retrying"
                                     : phase == RUNTIME_STARTING || (phase == RUNTIME_RUNNING && any_starting)
                                         ? "starting"
                                         : "stopping";
    json_object_object_add(root, "status", json_object_new_string(status));
    json_object_object_add(root, "pipeline", json_object_new_string(rt->g->settings.name));
    json_object_object_add(root, "version", json_object_new_string(EW_VERSION));
    json_object_object_add(root, "uptime_seconds", json_object_new_double(s_uptime(rt)));
    json_object_object_add(root, "nodes", nodes);
    json_object_object_add(root, "failed", failed);
    json_object_object_add(root, "retrying", retrying);
    json_object_object_add(root, "degraded", degraded);
    size_t len = 0;
    const char *text = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN, &len);
    char *body = malloc(len + 2);
    if (body) {
        memcpy(body, text, len);
        body[len++] = '\n';
        body[len] = '\0';
    }
    json_object_put(root);
    s_set_text(out, body ? (healthy ? 200 : 503) : 500, "application/json", body, body ? len : 0);
}

/* One counter family over every node. */
typedef struct s_family {
    const char *name;
    const char *type;
    const char *help;
    size_t offset; /* into node_metrics */
    double scale;
} s_family;

static const s_family s_families[] = {
    {"edgewatch_node_samples_in_total", "counter", "Samples a node received.", offsetof(node_metrics, samples_in), 1},
    {"edgewatch_node_samples_out_total", "counter", "Samples a node emitted or delivered.",
     offsetof(node_metrics, samples_out), 1},
    {"edgewatch_node_batches_in_total", "counter", "Batches a node received.", offsetof(node_metrics, batches_in), 1},
    {"edgewatch_node_batches_out_total", "counter", "Batches a node sent or delivered.",
     offsetof(node_metrics, batches_out), 1},
    {"edgewatch_node_anomalies_total", "counter", "Samples flagged anomalous (detectors) or delivered as such (sinks).",
     offsetof(node_metrics, anomalies), 1},
    {"edgewatch_node_events_total", "counter", "Alert events opened (detectors) or delivered (sinks, only = events).",
     offsetof(node_metrics, events), 1},
    {"edgewatch_node_dropped_total", "counter", "Samples dropped because a downstream edge was full (on_full = drop).",
     offsetof(node_metrics, dropped), 1},
    {"edgewatch_node_retries_total", "counter", "Transient faults retried with backoff.", offsetof(node_metrics, retries), 1},
    {"edgewatch_node_errors_total", "counter", "Malformed frames and other counted faults.",
     offsetof(node_metrics, errors), 1},
    {"edgewatch_node_processing_seconds_total", "counter", "Time spent in the plugin's data callbacks.",
     offsetof(node_metrics, busy_ns), 1e-9},
};

/* Writes a HELP text with backslash and newline escaped, as the exposition format requires. */
static void s_put_help(FILE *f, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

/* Node j's counter named `name`, or NULL. */
static const struct ew_counter *s_counter_find(const runtime *rt, size_t j, const char *name)
{
    size_t nc = atomic_load_explicit(&((ew_node *)&rt->nodes[j])->n_counters, memory_order_acquire);
    for (size_t q = 0; q < nc; q++)
        if (strcmp(rt->nodes[j].counters[q].name, name) == 0)
            return &rt->nodes[j].counters[q];
    return NULL;
}

/* Whether a node before i registered `name`: its family is printed already. */
static bool s_counter_seen_before(const runtime *rt, size_t i, const char *name)
{
    for (size_t j = 0; j < i; j++)
        if (s_counter_find(rt, j, name))
            return true;
    return false;
}

void metrics_prometheus(const runtime *rt, http_response *out)
{
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (!f) {
        s_set_text(out, 500, "text/plain", NULL, 0);
        return;
    }
    fprintf(f, "# HELP edgewatch_build_info Version of this edgewatch.\n# TYPE edgewatch_build_info gauge\n");
    fprintf(f, "edgewatch_build_info{version=\"%s\",abi=\"%d.%d\"} 1\n", EW_VERSION, EW_ABI_MAJOR, EW_ABI_MINOR);
    fprintf(f, "# HELP edgewatch_uptime_seconds Seconds since the pipeline started.\n"
               "# TYPE edgewatch_uptime_seconds gauge\nedgewatch_uptime_seconds %.3f\n",
            s_uptime(rt));
    for (size_t k = 0; k < sizeof s_families / sizeof s_families[0]; k++) {
        const s_family *fam = &s_families[k];
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name, fam->type);
        for (size_t i = 0; i < rt->g->count; i++) {
            const ew_node *n = &rt->nodes[i];
            _Atomic uint64_t *c = (_Atomic uint64_t *)(void *)((char *)&((ew_node *)n)->m + fam->offset);
            uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
            fprintf(f, "%s{node=\"%s\",kind=\"%s\",plugin=\"%s\"} ", fam->name, n->g->name,
                    graph_kind_name(n->g->kind), n->g->plugin);
            if (fam->scale == 1)
                fprintf(f, "%llu\n", (unsigned long long)v);
            else
                fprintf(f, "%.6f\n", (double)v * fam->scale);
        }
    }
    fprintf(f, "# HELP edgewatch_node_queue_depth Batches waiting on a node's input edges.\n"
               "# TYPE edgewatch_node_queue_depth gauge\n");
    for (size_t i = 0; i < rt->g->count; i++)
        fprintf(f, "edgewatch_node_queue_depth{node=\"%s\"} %llu\n", rt->nodes[i].g->name,
                (unsigned long long)node_queue_depth(&rt->nodes[i]));
    fprintf(f, "# HELP edgewatch_node_up Whether a node is running (1) or not (0).\n"
               "# TYPE edgewatch_node_up gauge\n");
    for (size_t i = 0; i < rt->g->count; i++) {
        node_state st = node_shown_state(&rt->nodes[i]);
        fprintf(f, "edgewatch_node_up{node=\"%s\",state=\"%s\"} %d\n", rt->nodes[i].g->name, node_state_name(st),
                st == NODE_RUNNING || st == NODE_LEARNING || st == NODE_DEGRADED);
    }
    /* Plugin counters: one family per counter name, all its nodes together. */
    for (size_t i = 0; i < rt->g->count; i++) {
        size_t nc = atomic_load_explicit(&((ew_node *)&rt->nodes[i])->n_counters, memory_order_acquire);
        for (size_t c = 0; c < nc; c++) {
            const char *name = rt->nodes[i].counters[c].name;
            if (s_counter_seen_before(rt, i, name))
                continue;
            const char *help = rt->nodes[i].counters[c].help;
            fprintf(f, "# HELP edgewatch_%s_total ", name);
            s_put_help(f, help[0] ? help : "Plugin counter.");
            fprintf(f, "\n# TYPE edgewatch_%s_total counter\n", name);
            for (size_t j = i; j < rt->g->count; j++) {
                const struct ew_counter *ctr = s_counter_find(rt, j, name);
                if (ctr)
                    fprintf(f, "edgewatch_%s_total{node=\"%s\"} %llu\n", name, rt->nodes[j].g->name,
                            (unsigned long long)atomic_load(&((struct ew_counter *)ctr)->value));
            }
        }
    }
    fclose(f);
    s_set_text(out, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

void metrics_http_handler(void *ctx, const char *path, http_response *out)
{
    const runtime *rt = ctx;
    if (strcmp(path, "/health") == 0) {
        metrics_health(rt, out);
    } else if (strcmp(path, "/metrics") == 0) {
        metrics_prometheus(rt, out);
    } else {
        static const char msg[] = "not found: edgewatch serves /health and /metrics\n";
        char *body = strdup(msg);
        s_set_text(out, 404, "text/plain", body, body ? sizeof msg - 1 : 0);
    }
}
