/* Unit tests for core/metrics.c: /health JSON and status, /metrics Prometheus text, and the HTTP handler. */
#include "metrics.h"

#include <check.h>

#define S_STR2(x) #x
#define S_STR(x) S_STR2(x)
#define S_ABI S_STR(EW_ABI_MAJOR) "." S_STR(EW_ABI_MINOR)
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A prepared runtime over a three-node graph; nothing runs. */
typedef struct fixture {
    config cfg;
    graph g;
    loader_path lp;
    logger lg;
    runtime rt;
} fixture;

static fixture fx;

static const char s_config[] = "[pipeline]\n"
                               "name = plant\n"
                               "http = off\n"
                               "[source.pump]\n"
                               "plugin = synth\n"
                               "[detector.z]\n"
                               "plugin = zscore\n"
                               "input = pump\n"
                               "window = 20\n"
                               "[sink.out]\n"
                               "plugin = null\n"
                               "input = z\n";

static void s_setup(void)
{
    memset(&fx, 0, sizeof fx);
    const char *build = getenv("EW_TEST_BUILD_DIR");
    ck_assert_msg(build && *build, "EW_TEST_BUILD_DIR is not set: run through meson test");
    char plugins[4096];
    snprintf(plugins, sizeof plugins, "%s/plugins", build);
    unsetenv("EDGEWATCH_PLUGIN_PATH");
    config_error err = {0};
    ck_assert_int_eq(config_load_string("m.ini", s_config, &fx.cfg, &err), 0);
    ck_assert_msg(graph_build(&fx.cfg, &fx.g, &err) == 0, "%s", err.message);
    ck_assert_int_eq(loader_path_init(&fx.lp, plugins), 0);
    fx.lg = log_default();
    ck_assert_msg(runtime_prepare(&fx.rt, &fx.cfg, &fx.g, &fx.lp, &fx.lg, &err) == 0, "%s", err.message);
}

static void s_teardown(void)
{
    runtime_free(&fx.rt);
    loader_path_free(&fx.lp);
    graph_free(&fx.g);
    config_free(&fx.cfg);
}

static struct ew_node *s_node(const char *name)
{
    long i = graph_find(&fx.g, name);
    ck_assert_msg(i >= 0, "no node %s", name);
    return &fx.rt.nodes[i];
}

static void s_state(const char *name, node_state st)
{
    atomic_store(&s_node(name)->state, (int)st);
}

static void s_all(node_state st)
{
    for (size_t i = 0; i < fx.g.count; i++)
        atomic_store(&fx.rt.nodes[i].state, (int)st);
}

/* Renders /health and parses it; *status gets the HTTP status. */
static json_object *s_health(int *status)
{
    http_response r = {0};
    metrics_health(&fx.rt, &r);
    ck_assert_ptr_nonnull(r.body);
    ck_assert_str_eq(r.content_type, "application/json");
    ck_assert_uint_eq(r.len, strlen(r.body));
    ck_assert_int_eq(r.body[r.len - 1], '\n');
    json_object *doc = json_tokener_parse(r.body);
    ck_assert_msg(doc != NULL, "not JSON: %s", r.body);
    *status = r.status;
    free(r.body);
    return doc;
}

static json_object *s_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no key %s in %s", key, json_object_to_json_string(o));
    return v;
}

static const char *s_str(json_object *o, const char *key)
{
    return json_object_get_string(s_get(o, key));
}

/* The names in a JSON array, joined with commas. */
static void s_names(json_object *arr, char *out, size_t len)
{
    ck_assert(json_object_is_type(arr, json_type_array));
    out[0] = '\0';
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", i ? "," : "", json_object_get_string(json_object_array_get_idx(arr, i)));
    }
}

START_TEST(test_health_ok)
{
    s_all(NODE_RUNNING);
    atomic_store(&fx.rt.phase, RUNTIME_RUNNING);
    atomic_store(&s_node("pump")->m.samples_out, 1000);
    atomic_store(&s_node("z")->m.samples_in, 1000);
    atomic_store(&s_node("z")->m.anomalies, 7);
    atomic_store(&s_node("z")->m.dropped, 3);
    atomic_store(&s_node("pump")->m.retries, 2);
    /* Three batches sent to z, one taken: two wait. */
    s_node("z")->in_edges[0]->batches_sent = 3;
    s_node("z")->in_edges[0]->batches_received = 1;
    int status;
    json_object *doc = s_health(&status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(s_str(doc, "status"), "ok");
    ck_assert_str_eq(s_str(doc, "pipeline"), "plant");
    ck_assert_str_eq(s_str(doc, "version"), EW_VERSION);
    ck_assert_double_eq(json_object_get_double(s_get(doc, "uptime_seconds")), 0);
    char names[200];
    s_names(s_get(doc, "failed"), names, sizeof names);
    ck_assert_str_eq(names, "");
    s_names(s_get(doc, "retrying"), names, sizeof names);
    ck_assert_str_eq(names, "");
    json_object *nodes = s_get(doc, "nodes");
    ck_assert_int_eq(json_object_object_length(nodes), 3);
    json_object *pump = s_get(nodes, "pump"), *z = s_get(nodes, "z"), *out = s_get(nodes, "out");
    ck_assert_str_eq(s_str(pump, "kind"), "source");
    ck_assert_str_eq(s_str(pump, "plugin"), "synth");
    ck_assert_str_eq(s_str(pump, "state"), "running");
    ck_assert_int_eq(json_object_get_int64(s_get(pump, "samples_out")), 1000);
    ck_assert_int_eq(json_object_get_int64(s_get(pump, "retries")), 2);
    ck_assert_int_eq(json_object_get_int64(s_get(pump, "queue_depth")), 0);
    ck_assert_str_eq(s_str(z, "kind"), "detector");
    ck_assert_str_eq(s_str(z, "plugin"), "zscore");
    ck_assert_int_eq(json_object_get_int64(s_get(z, "samples_in")), 1000);
    ck_assert_int_eq(json_object_get_int64(s_get(z, "samples_out")), 0);
    ck_assert_int_eq(json_object_get_int64(s_get(z, "anomalies")), 7);
    ck_assert_int_eq(json_object_get_int64(s_get(z, "dropped")), 3);
    ck_assert_int_eq(json_object_get_int64(s_get(z, "queue_depth")), 2);
    ck_assert_str_eq(s_str(out, "kind"), "sink");
    ck_assert_str_eq(s_str(out, "plugin"), "null");
    ck_assert(!json_object_object_get_ex(z, "error", NULL));
    json_object_put(doc);

    /* Nodes that ended cleanly are healthy too. */
    s_state("pump", NODE_ENDED);
    doc = s_health(&status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(s_str(doc, "status"), "ok");
    ck_assert_str_eq(s_str(s_get(s_get(doc, "nodes"), "pump"), "state"), "ended");
    json_object_put(doc);
}
END_TEST

START_TEST(test_health_failed_and_retrying)
{
    s_all(NODE_RUNNING);
    atomic_store(&fx.rt.phase, RUNTIME_RUNNING);
    s_state("z", NODE_FAILED);
    snprintf(s_node("z")->error, sizeof s_node("z")->error, "model file is \"corrupt\"");
    snprintf(s_node("out")->error, sizeof s_node("out")->error, "stale error of a running node");
    int status;
    json_object *doc = s_health(&status);
    char names[200];
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "failed");
    s_names(s_get(doc, "failed"), names, sizeof names);
    ck_assert_str_eq(names, "z");
    s_names(s_get(doc, "retrying"), names, sizeof names);
    ck_assert_str_eq(names, "");
    json_object *nodes = s_get(doc, "nodes");
    ck_assert_str_eq(s_str(s_get(nodes, "z"), "state"), "failed");
    ck_assert_str_eq(s_str(s_get(nodes, "z"), "error"), "model file is \"corrupt\"");
    ck_assert(!json_object_object_get_ex(s_get(nodes, "out"), "error", NULL));
    json_object_put(doc);

    s_state("z", NODE_RUNNING);
    s_state("pump", NODE_RETRYING);
    snprintf(s_node("pump")->error, sizeof s_node("pump")->error, "device 10.0.0.7 unreachable");
    doc = s_health(&status);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "retrying");
    s_names(s_get(doc, "retrying"), names, sizeof names);
    ck_assert_str_eq(names, "pump");
    s_names(s_get(doc, "failed"), names, sizeof names);
    ck_assert_str_eq(names, "");
    ck_assert_str_eq(s_str(s_get(s_get(doc, "nodes"), "pump"), "error"), "device 10.0.0.7 unreachable");
    json_object_put(doc);

    /* Failed wins over retrying; both lists name their nodes. */
    s_state("z", NODE_FAILED);
    s_state("out", NODE_FAILED);
    doc = s_health(&status);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "failed");
    s_names(s_get(doc, "failed"), names, sizeof names);
    ck_assert_str_eq(names, "z,out");
    s_names(s_get(doc, "retrying"), names, sizeof names);
    ck_assert_str_eq(names, "pump");
    json_object_put(doc);
}
END_TEST

START_TEST(test_health_phases)
{
    int status;
    /* Starting: nothing runs yet. */
    s_all(NODE_STARTING);
    atomic_store(&fx.rt.phase, RUNTIME_STARTING);
    json_object *doc = s_health(&status);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "starting");
    json_object_put(doc);
    /* Every node runs but the supervisor has not switched phase yet. */
    s_all(NODE_RUNNING);
    doc = s_health(&status);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "starting");
    json_object_put(doc);
    /* The phase is running but one node has not reached its loop: still starting, not stopping. */
    atomic_store(&fx.rt.phase, RUNTIME_RUNNING);
    s_state("out", NODE_STARTING);
    doc = s_health(&status);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "starting");
    json_object_put(doc);
    /* Stopping. */
    atomic_store(&fx.rt.phase, RUNTIME_STOPPING);
    s_all(NODE_STOPPING);
    doc = s_health(&status);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "stopping");
    json_object_put(doc);
    s_all(NODE_ENDED);
    doc = s_health(&status);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(s_str(doc, "status"), "stopping");
    json_object_put(doc);
}
END_TEST

START_TEST(test_health_uptime)
{
    s_all(NODE_RUNNING);
    atomic_store(&fx.rt.phase, RUNTIME_RUNNING);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fx.rt.started_realtime_ns = ((int64_t)ts.tv_sec - 5) * 1000000000LL + ts.tv_nsec;
    int status;
    json_object *doc = s_health(&status);
    double up = json_object_get_double(s_get(doc, "uptime_seconds"));
    ck_assert_msg(up >= 5.0 && up < 6.0, "uptime %f", up);
    json_object_put(doc);
}
END_TEST

/* Renders /metrics into a malloc'd NUL-terminated string. */
static char *s_prometheus(void)
{
    http_response r = {0};
    metrics_prometheus(&fx.rt, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_ptr_nonnull(r.body);
    ck_assert_uint_eq(r.len, strlen(r.body));
    ck_assert_int_eq(r.body[r.len - 1], '\n');
    return r.body;
}

static size_t s_occurrences(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Checks the exposition's shape: each family has one HELP and one TYPE, before its samples, and its
 * samples are contiguous; every sample line is "name{labels} value" or "name value". */
static void s_check_families(const char *text)
{
    char seen[64][128];
    size_t n_seen = 0;
    char current[128] = "";
    char *copy = strdup(text);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[128];
        if (strncmp(line, "# HELP ", 7) == 0) {
            ck_assert_int_eq(sscanf(line + 7, "%127s", name), 1);
            for (size_t i = 0; i < n_seen; i++)
                ck_assert_msg(strcmp(seen[i], name) != 0, "family %s declared twice", name);
            ck_assert_uint_lt(n_seen, 64);
            snprintf(seen[n_seen++], sizeof seen[0], "%s", name);
            snprintf(current, sizeof current, "%s", name);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char type[32];
            ck_assert_int_eq(sscanf(line + 7, "%127s %31s", name, type), 2);
            ck_assert_msg(strcmp(name, current) == 0, "TYPE %s does not follow its HELP", name);
            ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0, "type %s", type);
        } else {
            ck_assert_msg(line[0] != '#', "stray comment: %s", line);
            size_t len = strcspn(line, "{ ");
            ck_assert_msg(len == strlen(current) && strncmp(line, current, len) == 0,
                          "sample \"%s\" outside its family (current %s)", line, current);
            const char *value = strrchr(line, ' ');
            ck_assert_ptr_nonnull(value);
            char *end;
            strtod(value + 1, &end);
            ck_assert_msg(*end == '\0' && end != value + 1, "bad value in \"%s\"", line);
        }
    }
    free(copy);
}

START_TEST(test_prometheus_values)
{
    s_all(NODE_RUNNING);
    s_state("z", NODE_FAILED);
    atomic_store(&fx.rt.phase, RUNTIME_RUNNING);
    struct ew_node *pump = s_node("pump"), *z = s_node("z"), *out = s_node("out");
    atomic_store(&pump->m.samples_out, 1000);
    atomic_store(&pump->m.batches_out, 4);
    atomic_store(&pump->m.retries, 2);
    atomic_store(&pump->m.busy_ns, 1500000000);
    atomic_store(&z->m.samples_in, 1000);
    atomic_store(&z->m.samples_out, 990);
    atomic_store(&z->m.batches_in, 4);
    atomic_store(&z->m.batches_out, 4);
    atomic_store(&z->m.anomalies, 7);
    atomic_store(&z->m.events, 2);
    atomic_store(&z->m.dropped, 10);
    atomic_store(&z->m.errors, 1);
    atomic_store(&z->m.busy_ns, 250000);
    atomic_store(&out->m.samples_in, 990);
    atomic_store(&out->m.batches_in, 4);
    atomic_store(&out->m.anomalies, 7);
    atomic_store(&out->m.samples_out, 18446744073709551615u);
    z->in_edges[0]->batches_sent = 10;
    z->in_edges[0]->batches_received = 7;
    char *text = s_prometheus();
    s_check_families(text);
    static const char *const lines[] = {
        "# HELP edgewatch_build_info Version of this edgewatch.\n# TYPE edgewatch_build_info gauge\n"
        "edgewatch_build_info{version=\"" EW_VERSION "\",abi=\"" S_ABI "\"} 1\n",
        "# TYPE edgewatch_uptime_seconds gauge\nedgewatch_uptime_seconds 0.000\n",
        "# HELP edgewatch_node_samples_in_total Samples a node received.\n"
        "# TYPE edgewatch_node_samples_in_total counter\n"
        "edgewatch_node_samples_in_total{node=\"pump\",kind=\"source\",plugin=\"synth\"} 0\n"
        "edgewatch_node_samples_in_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 1000\n"
        "edgewatch_node_samples_in_total{node=\"out\",kind=\"sink\",plugin=\"null\"} 990\n",
        "edgewatch_node_samples_out_total{node=\"pump\",kind=\"source\",plugin=\"synth\"} 1000\n"
        "edgewatch_node_samples_out_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 990\n"
        "edgewatch_node_samples_out_total{node=\"out\",kind=\"sink\",plugin=\"null\"} 18446744073709551615\n",
        "edgewatch_node_batches_in_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 4\n",
        "edgewatch_node_batches_out_total{node=\"pump\",kind=\"source\",plugin=\"synth\"} 4\n",
        "edgewatch_node_anomalies_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 7\n"
        "edgewatch_node_anomalies_total{node=\"out\",kind=\"sink\",plugin=\"null\"} 7\n",
        "edgewatch_node_events_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 2\n",
        "edgewatch_node_dropped_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 10\n",
        "edgewatch_node_retries_total{node=\"pump\",kind=\"source\",plugin=\"synth\"} 2\n",
        "edgewatch_node_errors_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 1\n",
        "# TYPE edgewatch_node_processing_seconds_total counter\n"
        "edgewatch_node_processing_seconds_total{node=\"pump\",kind=\"source\",plugin=\"synth\"} 1.500000\n"
        "edgewatch_node_processing_seconds_total{node=\"z\",kind=\"detector\",plugin=\"zscore\"} 0.000250\n"
        "edgewatch_node_processing_seconds_total{node=\"out\",kind=\"sink\",plugin=\"null\"} 0.000000\n",
        "# TYPE edgewatch_node_queue_depth gauge\n"
        "edgewatch_node_queue_depth{node=\"pump\"} 0\n"
        "edgewatch_node_queue_depth{node=\"z\"} 3\n"
        "edgewatch_node_queue_depth{node=\"out\"} 0\n",
        "# TYPE edgewatch_node_up gauge\n"
        "edgewatch_node_up{node=\"pump\",state=\"running\"} 1\n"
        "edgewatch_node_up{node=\"z\",state=\"failed\"} 0\n"
        "edgewatch_node_up{node=\"out\",state=\"running\"} 1\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ck_assert_msg(strstr(text, lines[i]), "missing:\n%s\nin:\n%s", lines[i], text);
    /* Ten per-node counter families, each with one line per node. */
    ck_assert_uint_eq(s_occurrences(text, "# TYPE edgewatch_node_"), 12);
    ck_assert_uint_eq(s_occurrences(text, "{node=\"z\",kind=\"detector\",plugin=\"zscore\"} "), 10);
    ck_assert_uint_eq(s_occurrences(text, "{node=\"pump\""), 12);
    free(text);
}
END_TEST

/* Registers a plugin counter on a node as the host API would. */
static void s_counter(const char *node, const char *name, const char *help, uint64_t value)
{
    struct ew_node *n = s_node(node);
    size_t c = atomic_load(&n->n_counters);
    ck_assert_uint_lt(c, NODE_MAX_COUNTERS);
    snprintf(n->counters[c].name, sizeof n->counters[c].name, "%s", name);
    snprintf(n->counters[c].help, sizeof n->counters[c].help, "%s", help);
    atomic_store(&n->counters[c].value, value);
    atomic_store(&n->n_counters, c + 1);
}

START_TEST(test_prometheus_plugin_counters)
{
    s_all(NODE_RUNNING);
    atomic_store(&fx.rt.phase, RUNTIME_RUNNING);
    s_counter("pump", "synth_anomalies", "Anomalies injected by the synth source", 5);
    s_counter("z", "shared_events", "Events seen.", 1);
    s_counter("out", "null_samples", "Samples discarded", 990);
    s_counter("out", "shared_events", "Another help text, not shown.", 2);
    s_counter("z", "quiet", "", 0);
    char *text = s_prometheus();
    s_check_families(text);
    static const char *const blocks[] = {
        "# HELP edgewatch_synth_anomalies_total Anomalies injected by the synth source\n"
        "# TYPE edgewatch_synth_anomalies_total counter\n"
        "edgewatch_synth_anomalies_total{node=\"pump\"} 5\n",
        /* One family for a name several nodes registered, its lines together. */
        "# HELP edgewatch_shared_events_total Events seen.\n"
        "# TYPE edgewatch_shared_events_total counter\n"
        "edgewatch_shared_events_total{node=\"z\"} 1\n"
        "edgewatch_shared_events_total{node=\"out\"} 2\n",
        "# HELP edgewatch_quiet_total Plugin counter.\n"
        "# TYPE edgewatch_quiet_total counter\n"
        "edgewatch_quiet_total{node=\"z\"} 0\n",
        "# HELP edgewatch_null_samples_total Samples discarded\n"
        "# TYPE edgewatch_null_samples_total counter\n"
        "edgewatch_null_samples_total{node=\"out\"} 990\n",
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        ck_assert_msg(strstr(text, blocks[i]), "missing:\n%s\nin:\n%s", blocks[i], text);
    ck_assert_uint_eq(s_occurrences(text, "# HELP edgewatch_shared_events_total"), 1);
    ck_assert_uint_eq(s_occurrences(text, "# TYPE edgewatch_shared_events_total"), 1);
    ck_assert_ptr_null(strstr(text, "Another help text"));
    free(text);
}
END_TEST

START_TEST(test_prometheus_help_escaped)
{
    /* HELP text escapes backslash and newline, or the exposition breaks. */
    s_all(NODE_RUNNING);
    s_counter("z", "odd_help", "first line\nsecond \\ line", 3);
    char *text = s_prometheus();
    s_check_families(text);
    ck_assert_msg(strstr(text, "# HELP edgewatch_odd_help_total first line\\nsecond \\\\ line\n"
                               "# TYPE edgewatch_odd_help_total counter\n"
                               "edgewatch_odd_help_total{node=\"z\"} 3\n"),
                  "%s", text);
    free(text);
}
END_TEST

START_TEST(test_http_handler)
{
    s_all(NODE_RUNNING);
    atomic_store(&fx.rt.phase, RUNTIME_RUNNING);
    http_response r = {0};
    metrics_http_handler(&fx.rt, "/health", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "application/json");
    ck_assert_ptr_nonnull(strstr(r.body, "\"status\":\"ok\""));
    free(r.body);
    memset(&r, 0, sizeof r);
    metrics_http_handler(&fx.rt, "/metrics", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(r.body, "edgewatch_node_up{node=\"z\",state=\"running\"} 1\n"));
    free(r.body);
    static const char *const others[] = {"/", "/healthz", "/health/", "/metrics/x", "/favicon.ico", ""};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        memset(&r, 0, sizeof r);
        metrics_http_handler(&fx.rt, others[i], &r);
        ck_assert_msg(r.status == 404, "%s gave %d", others[i], r.status);
        ck_assert_str_eq(r.content_type, "text/plain");
        ck_assert_str_eq(r.body, "not found: edgewatch serves /health and /metrics\n");
        ck_assert_uint_eq(r.len, strlen(r.body));
        free(r.body);
    }
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, test_health_ok);
    tcase_add_test(tc, test_health_failed_and_retrying);
    tcase_add_test(tc, test_health_phases);
    tcase_add_test(tc, test_health_uptime);
    tcase_add_test(tc, test_prometheus_values);
    tcase_add_test(tc, test_prometheus_plugin_counters);
    tcase_add_test(tc, test_prometheus_help_escaped);
    tcase_add_test(tc, test_http_handler);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
