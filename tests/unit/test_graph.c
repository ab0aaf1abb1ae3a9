/* Unit tests for core/graph.c: [pipeline] settings, node sections, edges, errors, warnings and order. */
#include "graph.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A parsed config and the graph built from it. */
typedef struct built {
    config cfg;
    graph g;
    config_error err;
    char msg[1200]; /* the formatted error */
} built;

/* Parses text (which must be valid INI) and builds the graph; returns graph_build's result. */
static int s_build(const char *text, built *b)
{
    memset(b, 0, sizeof *b);
    config_error cerr = {0};
    int rc = config_load_string("test.ini", text, &b->cfg, &cerr);
    ck_assert_msg(rc == 0, "config error at line %d: %s", cerr.line, cerr.message);
    rc = graph_build(&b->cfg, &b->g, &b->err);
    if (rc < 0) {
        config_error_format("test.ini", &b->err, b->msg, sizeof b->msg);
        /* A failed build leaves nothing behind. */
        ck_assert_ptr_null(b->g.nodes);
        ck_assert_uint_eq(b->g.count, 0);
        ck_assert_ptr_null(b->g.mem.blocks);
    }
    return rc;
}

static void s_free(built *b)
{
    graph_free(&b->g);
    config_free(&b->cfg);
}

/* Builds text that must fail and checks the formatted message exactly. */
static void s_expect_error(const char *text, int line, const char *section, const char *key, const char *formatted)
{
    built b;
    ck_assert_msg(s_build(text, &b) == -1, "should fail:\n%s", text);
    ck_assert_int_eq(b.err.line, line);
    ck_assert_str_eq(b.err.section, section);
    ck_assert_str_eq(b.err.key, key);
    ck_assert_str_eq(b.msg, formatted);
    s_free(&b);
}

static const graph_node *s_node(const graph *g, const char *name)
{
    long i = graph_find(g, name);
    ck_assert_msg(i >= 0, "no node %s", name);
    return &g->nodes[i];
}

#define S_MINIMAL "[source.a]\nplugin = synth\n[sink.out]\nplugin = null\ninput = a\n"

START_TEST(test_pipeline_defaults)
{
    built b;
    ck_assert_int_eq(s_build(S_MINIMAL, &b), 0);
    const pipeline_settings *s = &b.g.settings;
    ck_assert_str_eq(s->name, "edgewatch");
    ck_assert_str_eq(s->state_dir, "/var/lib/edgewatch");
    ck_assert_ptr_null(s->plugin_path);
    ck_assert_str_eq(s->http, "127.0.0.1:8080");
    ck_assert_int_eq(s->log_level, EW_LOG_INFO);
    ck_assert_int_eq(s->log_format, LOG_FORMAT_TEXT);
    ck_assert_int_eq(s->shutdown_timeout_ns, 10000000000);
    ck_assert_int_eq(s->batch_max, 256);
    ck_assert_int_eq(s->linger_ns, 1000000);
    ck_assert_int_eq(s->queue, 16);
    ck_assert_uint_eq(b.g.count, 2);
    ck_assert_uint_eq(b.g.n_warnings, 0);
    s_free(&b);
}
END_TEST

START_TEST(test_pipeline_settings)
{
    built b;
    ck_assert_int_eq(s_build("[pipeline]\n"
                             "name = plant7\n"
                             "state_dir = /data/ew\n"
                             "plugin_path = /opt/a:/opt/b\n"
                             "http = off\n"
                             "log_level = debug\n"
                             "log_format = json\n"
                             "shutdown_timeout = 2.5s\n"
                             "batch_max = 1000\n"
                             "linger = 0\n"
                             "queue = 5\n" S_MINIMAL,
                             &b),
                     0);
    const pipeline_settings *s = &b.g.settings;
    ck_assert_str_eq(s->name, "plant7");
    ck_assert_str_eq(s->state_dir, "/data/ew");
    ck_assert_str_eq(s->plugin_path, "/opt/a:/opt/b");
    ck_assert_str_eq(s->http, "off");
    ck_assert_int_eq(s->log_level, EW_LOG_DEBUG);
    ck_assert_int_eq(s->log_format, LOG_FORMAT_JSON);
    ck_assert_int_eq(s->shutdown_timeout_ns, 2500000000);
    ck_assert_int_eq(s->batch_max, 1000);
    ck_assert_int_eq(s->linger_ns, 0);
    ck_assert_int_eq(s->queue, 5);
    s_free(&b);

    static const struct {
        const char *word;
        ew_log_level level;
    } levels[] = {{"error", EW_LOG_ERROR}, {"warn", EW_LOG_WARN}, {"info", EW_LOG_INFO}, {"debug", EW_LOG_DEBUG}};
    for (size_t i = 0; i < 4; i++) {
        char text[300];
        snprintf(text, sizeof text, "[pipeline]\nlog_level = %s\n" S_MINIMAL, levels[i].word);
        ck_assert_int_eq(s_build(text, &b), 0);
        ck_assert_int_eq(b.g.settings.log_level, levels[i].level);
        s_free(&b);
    }
}
END_TEST

START_TEST(test_pipeline_errors)
{
    s_expect_error("[pipeline]\nname = x\ncolour = red\n" S_MINIMAL, 3, "pipeline", "colour",
                   "test.ini:3: [pipeline] colour: unknown option; valid options: name, state_dir, plugin_path, "
                   "http, log_level, log_format, shutdown_timeout, batch_max, linger, queue");
    s_expect_error("[pipeline]\nqueue = 1000001\n" S_MINIMAL, 2, "pipeline", "queue",
                   "test.ini:2: [pipeline] queue: 1000001 is out of range: allowed 1 to 1000000");
    s_expect_error("[pipeline]\nbatch_max = 0\n" S_MINIMAL, 2, "pipeline", "batch_max",
                   "test.ini:2: [pipeline] batch_max: 0 is out of range: allowed 1 to 65536");
    s_expect_error("[pipeline]\nlog_level = loud\n" S_MINIMAL, 2, "pipeline", "log_level",
                   "test.ini:2: [pipeline] log_level: \"loud\" is not one of: error|warn|info|debug");
    s_expect_error("[pipeline]\nshutdown_timeout = 0\n" S_MINIMAL, 2, "pipeline", "shutdown_timeout",
                   "test.ini:2: [pipeline] shutdown_timeout: 0 seconds is out of range: allowed 0.001 to 3600 "
                   "seconds");
    s_expect_error("[pipeline]\nlinger = soon\n" S_MINIMAL, 2, "pipeline", "linger",
                   "test.ini:2: [pipeline] linger: \"soon\" is not a duration such as 250ms, 1.5s, 2m or 1h");
}
END_TEST

START_TEST(test_section_kind_and_name)
{
    s_expect_error(S_MINIMAL "[filter.x]\nplugin = y\n", 6, "filter.x", "",
                   "test.ini:6: [filter.x]: unknown section: expected [pipeline], [source.NAME], "
                   "[detector.NAME] or [sink.NAME]");
    s_expect_error("[sources.a]\nplugin = synth\n", 1, "sources.a", "",
                   "test.ini:1: [sources.a]: unknown section: expected [pipeline], [source.NAME], "
                   "[detector.NAME] or [sink.NAME]");
    s_expect_error("[Pipeline]\nname = x\n", 1, "Pipeline", "",
                   "test.ini:1: [Pipeline]: unknown section: expected [pipeline], [source.NAME], "
                   "[detector.NAME] or [sink.NAME]");
    s_expect_error("[source]\nplugin = synth\n", 1, "source", "",
                   "test.ini:1: [source]: node name \"\" is not valid: use 1 to 63 letters, digits, _ or -");
    s_expect_error("[source.]\nplugin = synth\n", 1, "source.", "",
                   "test.ini:1: [source.]: node name \"\" is not valid: use 1 to 63 letters, digits, _ or -");
    s_expect_error("[source.a.b]\nplugin = synth\n", 1, "source.a.b", "",
                   "test.ini:1: [source.a.b]: node name \"a.b\" is not valid: use 1 to 63 letters, digits, _ or -");
    s_expect_error("[source.pump 1]\nplugin = synth\n", 1, "source.pump 1", "",
                   "test.ini:1: [source.pump 1]: node name \"pump 1\" is not valid: use 1 to 63 letters, digits, "
                   "_ or -");
    /* 63 characters are allowed, 64 are not. */
    char name[65];
    memset(name, 'p', 64);
    name[64] = '\0';
    char text[400], want[400], section[80];
    snprintf(text, sizeof text, "[source.%s]\nplugin = synth\n", name);
    snprintf(section, sizeof section, "source.%s", name);
    snprintf(want, sizeof want, "test.ini:1: [%s]: node name \"%s\" is not valid: use 1 to 63 letters, digits, _ or -",
             section, name);
    s_expect_error(text, 1, section, "", want);
    name[63] = '\0';
    snprintf(text, sizeof text, "[source.%s]\nplugin = synth\n[sink.Out-2_x]\nplugin = null\ninput = %s\n", name,
             name);
    built b;
    ck_assert_int_eq(s_build(text, &b), 0);
    ck_assert_str_eq(b.g.nodes[0].name, name);
    ck_assert_str_eq(b.g.nodes[1].name, "Out-2_x");
    ck_assert_str_eq(b.g.nodes[1].section, "sink.Out-2_x");
    s_free(&b);
}
END_TEST

START_TEST(test_duplicate_node_name)
{
    s_expect_error("[source.a]\nplugin = synth\n\n[sink.a]\nplugin = null\ninput = a\n", 4, "sink.a", "",
                   "test.ini:4: [sink.a]: node name \"a\" is already used by [source.a] at line 1; node names must "
                   "be unique");
}
END_TEST

START_TEST(test_plugin_key)
{
    s_expect_error("[source.a]\nrate = 1\n[sink.out]\nplugin = null\ninput = a\n", 1, "source.a", "plugin",
                   "test.ini:1: [source.a] plugin: required option is missing: add `plugin = <string>` (Name of "
                   "the plugin this node runs, e.g. zscore.)");
    s_expect_error("[source.a]\nrate = 1\nplugin = ./libsynth.so\n", 3, "source.a", "plugin",
                   "test.ini:3: [source.a] plugin: \"./libsynth.so\" is not a plugin name: write a bare name such "
                   "as zscore ([a-z0-9_]+); plugins are found in plugin_path, never by file path");
    s_expect_error("[source.a]\nplugin = /usr/lib/edgewatch/plugins/source_synth.so\n", 2, "source.a", "plugin",
                   "test.ini:2: [source.a] plugin: \"/usr/lib/edgewatch/plugins/source_synth.so\" is not a plugin "
                   "name: write a bare name such as zscore ([a-z0-9_]+); plugins are found in plugin_path, never "
                   "by file path");
    s_expect_error("[source.a]\nplugin = Synth\n", 2, "source.a", "plugin",
                   "test.ini:2: [source.a] plugin: \"Synth\" is not a plugin name: write a bare name such as "
                   "zscore ([a-z0-9_]+); plugins are found in plugin_path, never by file path");
    s_expect_error("[source.a]\nplugin =\n", 2, "source.a", "plugin",
                   "test.ini:2: [source.a] plugin: \"\" is not a plugin name: write a bare name such as zscore "
                   "([a-z0-9_]+); plugins are found in plugin_path, never by file path");
}
END_TEST

START_TEST(test_input_errors)
{
    s_expect_error(S_MINIMAL "[sink.b]\nplugin = null\ninput = a, nope\n", 8, "sink.b", "input",
                   "test.ini:8: [sink.b] input: no node is named \"nope\": define [source.nope] or [detector.nope], "
                   "or fix the name");
    s_expect_error(S_MINIMAL "[detector.d]\nplugin = zscore\ninput = d\n", 8, "detector.d", "input",
                   "test.ini:8: [detector.d] input: a node cannot read its own output");
    s_expect_error(S_MINIMAL "[sink.b]\nplugin = null\ninput = out\n", 8, "sink.b", "input",
                   "test.ini:8: [sink.b] input: \"out\" is a sink and has no output to read");
    s_expect_error(S_MINIMAL "[sink.b]\nplugin = null\ninput = a,a\n", 8, "sink.b", "input",
                   "test.ini:8: [sink.b] input: \"a\" is listed twice");
    s_expect_error("[source.a]\nplugin = synth\ninput = b\n[source.b]\nplugin = synth\n", 3, "source.a", "input",
                   "test.ini:3: [source.a] input: a source reads a device, not other nodes: remove input or make "
                   "this a detector");
    s_expect_error(S_MINIMAL "\n[detector.d]\nplugin = zscore\n", 7, "detector.d", "input",
                   "test.ini:7: [detector.d] input: a detector needs input = NODE[, NODE...] naming the nodes it "
                   "reads");
    s_expect_error("[source.a]\nplugin = synth\n[sink.out]\nplugin = null\n", 3, "sink.out", "input",
                   "test.ini:3: [sink.out] input: a sink needs input = NODE[, NODE...] naming the nodes it reads");
    s_expect_error("[source.a]\nplugin = synth\n[sink.out]\nplugin = null\ninput = , ,\n", 5, "sink.out", "input",
                   "test.ini:5: [sink.out] input: a sink needs input = NODE[, NODE...] naming the nodes it reads");
}
END_TEST

START_TEST(test_cycle)
{
    s_expect_error("[source.a]\nplugin = synth\n"
                   "[detector.x]\nplugin = zscore\ninput = a, z\n"
                   "[detector.y]\nplugin = zscore\ninput = x\n"
                   "[detector.z]\nplugin = zscore\ninput = y\n"
                   "[sink.s]\nplugin = null\ninput = z\n",
                   5, "detector.x", "input",
                   "test.ini:5: [detector.x] input: the graph has a cycle (x <- z <- y <- x): data must flow from "
                   "sources to sinks");
    /* The first node left over is downstream of the cycle, not on it. */
    s_expect_error("[source.a]\nplugin = synth\n"
                   "[sink.s]\nplugin = null\ninput = p\n"
                   "[detector.p]\nplugin = zscore\ninput = a, q\n"
                   "[detector.q]\nplugin = zscore\ninput = p\n",
                   8, "detector.p", "input",
                   "test.ini:8: [detector.p] input: the graph has a cycle (p <- q <- p): data must flow from "
                   "sources to sinks");
}
END_TEST

START_TEST(test_host_key_placement)
{
    s_expect_error(S_MINIMAL "[sink.b]\nplugin = null\ninput = a\nbatch_max = 10\n", 9, "sink.b", "batch_max",
                   "test.ini:9: [sink.b] batch_max: only sources batch samples; detectors and sinks keep their "
                   "input's batches");
    s_expect_error(S_MINIMAL "[detector.d]\nplugin = zscore\nlinger = 1ms\ninput = a\n", 8, "detector.d", "linger",
                   "test.ini:8: [detector.d] linger: only sources batch samples; detectors and sinks keep their "
                   "input's batches");
    s_expect_error(S_MINIMAL "[detector.d]\nplugin = zscore\ninput = a\nonly = anomalies\n", 9, "detector.d", "only",
                   "test.ini:9: [detector.d] only: only sinks filter samples; remove it here");
    s_expect_error("[source.a]\nplugin = synth\nonly = all\n", 3, "source.a", "only",
                   "test.ini:3: [source.a] only: only sinks filter samples; remove it here");
    s_expect_error(S_MINIMAL "[sink.b]\nplugin = null\ninput = a\non_full = maybe\n", 9, "sink.b", "on_full",
                   "test.ini:9: [sink.b] on_full: \"maybe\" is not one of: block|drop");
    s_expect_error("[source.a]\nplugin = synth\nbatch_max = 65537\n", 3, "source.a", "batch_max",
                   "test.ini:3: [source.a] batch_max: 65537 is out of range: allowed 1 to 65536");
    s_expect_error("[source.a]\nplugin = synth\nlinger = 2m\n", 3, "source.a", "linger",
                   "test.ini:3: [source.a] linger: 120 seconds is out of range: allowed 0 to 60 seconds");
    s_expect_error(S_MINIMAL "[sink.b]\nplugin = null\ninput = a\nqueue = 0\n", 9, "sink.b", "queue",
                   "test.ini:9: [sink.b] queue: 0 is out of range: allowed 1 to 1000000");
}
END_TEST

START_TEST(test_no_nodes_no_sink)
{
    s_expect_error("", 0, "", "",
                   "test.ini: the pipeline has no nodes: add at least a [source.NAME] and a [sink.NAME]");
    s_expect_error("[pipeline]\nname = x\n", 0, "", "",
                   "test.ini: the pipeline has no nodes: add at least a [source.NAME] and a [sink.NAME]");
    s_expect_error("[source.a]\nplugin = synth\n[detector.d]\nplugin = zscore\ninput = a\n", 0, "", "",
                   "test.ini: the pipeline has no sink: add a [sink.NAME] section");
}
END_TEST

START_TEST(test_warnings)
{
    built b;
    ck_assert_int_eq(s_build("[source.a]\nplugin = synth\n"        /* 1 */
                             "[source.idle]\nplugin = synth\n"     /* 3 */
                             "[detector.d]\nplugin = zscore\ninput = a\n" /* 5 */
                             "[detector.e]\nplugin = zscore\ninput = idle\n" /* 8 */
                             "[sink.out]\nplugin = null\ninput = a\n", /* 11 */
                             &b),
                     0);
    ck_assert_uint_eq(b.g.n_warnings, 3);
    ck_assert_str_eq(b.g.warnings[0], "test.ini:3: [source.idle] node \"idle\" reaches no sink: its output is "
                                      "discarded (add it to a sink's input)");
    ck_assert_str_eq(b.g.warnings[1], "test.ini:5: [detector.d] node \"d\" reaches no sink: its output is "
                                      "discarded (add it to a sink's input)");
    ck_assert_str_eq(b.g.warnings[2], "test.ini:8: [detector.e] node \"e\" reaches no sink: its output is "
                                      "discarded (add it to a sink's input)");
    s_free(&b);
    /* Reaching a sink through a detector is enough. */
    ck_assert_int_eq(s_build("[source.a]\nplugin = synth\n[detector.d]\nplugin = zscore\ninput = a\n"
                             "[sink.out]\nplugin = null\ninput = d\n",
                             &b),
                     0);
    ck_assert_uint_eq(b.g.n_warnings, 0);
    s_free(&b);
}
END_TEST

/* Position of node index i in g->order. */
static size_t s_rank(const graph *g, size_t i)
{
    for (size_t r = 0; r < g->count; r++)
        if (g->order[r] == i)
            return r;
    ck_abort_msg("node %zu is not in the order", i);
    return 0;
}

START_TEST(test_order_and_edges)
{
    built b;
    /* Declared downstream first, so the file order is no topological order. */
    ck_assert_int_eq(s_build("[sink.out]\nplugin = jsonl\ninput = z2, z1\n"
                             "[detector.z2]\nplugin = zscore\ninput = z1 , b\n"
                             "[detector.z1]\nplugin = zscore\ninput = a\n"
                             "[sink.raw]\nplugin = null\ninput = a,b\n"
                             "[source.b]\nplugin = synth\n"
                             "[source.a]\nplugin = csv\n",
                             &b),
                     0);
    const graph *g = &b.g;
    ck_assert_uint_eq(g->count, 6);
    /* A permutation in which every input comes before its node. */
    bool seen[6] = {false};
    for (size_t r = 0; r < g->count; r++) {
        ck_assert_uint_lt(g->order[r], 6);
        ck_assert(!seen[g->order[r]]);
        seen[g->order[r]] = true;
    }
    for (size_t i = 0; i < g->count; i++)
        for (size_t k = 0; k < g->nodes[i].n_inputs; k++)
            ck_assert_uint_lt(s_rank(g, g->nodes[i].inputs[k]), s_rank(g, i));

    const graph_node *out = s_node(g, "out"), *z2 = s_node(g, "z2"), *z1 = s_node(g, "z1"),
                     *raw = s_node(g, "raw"), *a = s_node(g, "a"), *bn = s_node(g, "b");
    ck_assert_int_eq(out->kind, EW_KIND_SINK);
    ck_assert_int_eq(z2->kind, EW_KIND_DETECTOR);
    ck_assert_int_eq(a->kind, EW_KIND_SOURCE);
    ck_assert_str_eq(a->plugin, "csv");
    ck_assert_int_eq(a->line, 15);
    ck_assert_int_eq(a->plugin_line, 16);
    ck_assert_int_eq(a->input_line, 0);
    ck_assert_int_eq(z2->input_line, 6);
    /* Inputs in the order written, names trimmed. */
    ck_assert_uint_eq(z2->n_inputs, 2);
    ck_assert_str_eq(z2->input_names[0], "z1");
    ck_assert_str_eq(z2->input_names[1], "b");
    ck_assert_uint_eq(z2->inputs[0], (size_t)graph_find(g, "z1"));
    ck_assert_uint_eq(z2->inputs[1], (size_t)graph_find(g, "b"));
    /* Outputs: every node that reads it, in node order. */
    ck_assert_uint_eq(a->n_outputs, 2);
    ck_assert_uint_eq(a->outputs[0], (size_t)graph_find(g, "z1"));
    ck_assert_uint_eq(a->outputs[1], (size_t)graph_find(g, "raw"));
    ck_assert_uint_eq(bn->n_outputs, 2);
    ck_assert_uint_eq(bn->outputs[0], (size_t)graph_find(g, "z2"));
    ck_assert_uint_eq(bn->outputs[1], (size_t)graph_find(g, "raw"));
    ck_assert_uint_eq(z1->n_outputs, 2);
    ck_assert_uint_eq(z1->outputs[0], (size_t)graph_find(g, "out"));
    ck_assert_uint_eq(z1->outputs[1], (size_t)graph_find(g, "z2"));
    ck_assert_uint_eq(z2->n_outputs, 1);
    ck_assert_uint_eq(z2->outputs[0], (size_t)graph_find(g, "out"));
    ck_assert_uint_eq(out->n_outputs, 0);
    ck_assert_uint_eq(raw->n_outputs, 0);
    ck_assert_int_eq(graph_find(g, "nope"), -1);
    ck_assert_uint_eq(g->n_warnings, 0);
    s_free(&b);
}
END_TEST

START_TEST(test_plugin_kvs_and_settings)
{
    built b;
    ck_assert_int_eq(s_build("[pipeline]\nbatch_max = 100\nlinger = 5ms\nqueue = 10\n"  /* 1-4 */
                             "[source.a]\nplugin = synth\nrate = 50\nbatch_max = 7\nchannels = x, y\n" /* 5-9 */
                             "[source.b]\nplugin = synth\nlinger = 0\n"                  /* 10-12 */
                             "[detector.z]\nplugin = zscore\ninput = a, b\nwindow = 50\nqueue = 3\n" /* 13-17 */
                             "on_full = drop\nthreshold = 4\n"                           /* 18-19 */
                             "[sink.out]\nplugin = jsonl\ninput = z\nonly = anomalies\npath = -\n", /* 20-24 */
                             &b),
                     0);
    const graph *g = &b.g;
    const graph_node *a = s_node(g, "a"), *bn = s_node(g, "b"), *z = s_node(g, "z"), *out = s_node(g, "out");
    /* Only the plugin's keys, with their lines, in file order. */
    ck_assert_uint_eq(a->n_plugin_kvs, 2);
    ck_assert_str_eq(a->plugin_kvs[0].key, "rate");
    ck_assert_str_eq(a->plugin_kvs[0].value, "50");
    ck_assert_int_eq(a->plugin_kvs[0].line, 7);
    ck_assert_str_eq(a->plugin_kvs[1].key, "channels");
    ck_assert_str_eq(a->plugin_kvs[1].value, "x, y");
    ck_assert_int_eq(a->plugin_kvs[1].line, 9);
    ck_assert_uint_eq(bn->n_plugin_kvs, 0);
    ck_assert_uint_eq(z->n_plugin_kvs, 2);
    ck_assert_str_eq(z->plugin_kvs[0].key, "window");
    ck_assert_int_eq(z->plugin_kvs[0].line, 16);
    ck_assert_str_eq(z->plugin_kvs[1].key, "threshold");
    ck_assert_str_eq(z->plugin_kvs[1].value, "4");
    ck_assert_int_eq(z->plugin_kvs[1].line, 19);
    ck_assert_uint_eq(out->n_plugin_kvs, 1);
    ck_assert_str_eq(out->plugin_kvs[0].key, "path");
    ck_assert_int_eq(out->plugin_kvs[0].line, 24);

    /* Host settings: overrides win, the rest inherit [pipeline]. */
    ck_assert_int_eq(a->settings.batch_max, 7);
    ck_assert_int_eq(a->settings.linger_ns, 5000000);
    ck_assert_int_eq(a->settings.queue, 10);
    ck_assert_int_eq(bn->settings.batch_max, 100);
    ck_assert_int_eq(bn->settings.linger_ns, 0);
    ck_assert_int_eq(bn->settings.queue, 10);
    ck_assert_int_eq(z->settings.batch_max, 100);
    ck_assert_int_eq(z->settings.linger_ns, 5000000);
    ck_assert_int_eq(z->settings.queue, 3);
    ck_assert(z->settings.drop_when_full);
    ck_assert(!z->settings.only_anomalies);
    ck_assert(!a->settings.drop_when_full);
    ck_assert(out->settings.only_anomalies);
    ck_assert(!out->settings.drop_when_full);
    ck_assert_int_eq(out->settings.queue, 10);
    s_free(&b);
}
END_TEST

START_TEST(test_host_option_tables)
{
    char err[300] = "";
    ck_assert_int_eq(options_check_table(graph_pipeline_options(), 256, err, sizeof err), 0);
    ck_assert_int_eq(options_check_table(graph_node_options(), 256, err, sizeof err), 0);
    ck_assert_str_eq(graph_pipeline_options()[0].name, "name");
    ck_assert_str_eq(graph_node_options()[0].name, "plugin");
    ck_assert_str_eq(graph_kind_name(EW_KIND_SOURCE), "source");
    ck_assert_str_eq(graph_kind_name(EW_KIND_DETECTOR), "detector");
    ck_assert_str_eq(graph_kind_name(EW_KIND_SINK), "sink");
    ck_assert_str_eq(graph_kind_name((ew_kind)0), "unknown");
}
END_TEST

START_TEST(test_print)
{
    built b;
    ck_assert_int_eq(s_build("[pipeline]\nname = p1\n[sink.out]\nplugin = null\ninput = d\n"
                             "[detector.d]\nplugin = zscore\ninput = a\n[source.a]\nplugin = synth\n",
                             &b),
                     0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    graph_print(&b.g, f);
    fclose(f);
    ck_assert_str_eq(text, "pipeline \"p1\": 3 nodes\n"
                           "  source   a                plugin=synth  -> d\n"
                           "  detector d                plugin=zscore  <- a  -> out\n"
                           "  sink     out              plugin=null  <- d\n");
    free(text);
    s_free(&b);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("graph");
    TCase *settings = tcase_create("settings");
    tcase_add_test(settings, test_pipeline_defaults);
    tcase_add_test(settings, test_pipeline_settings);
    tcase_add_test(settings, test_pipeline_errors);
    tcase_add_test(settings, test_host_option_tables);
    tcase_add_test(settings, test_plugin_kvs_and_settings);
    suite_add_tcase(s, settings);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_section_kind_and_name);
    tcase_add_test(errors, test_duplicate_node_name);
    tcase_add_test(errors, test_plugin_key);
    tcase_add_test(errors, test_input_errors);
    tcase_add_test(errors, test_cycle);
    tcase_add_test(errors, test_host_key_placement);
    tcase_add_test(errors, test_no_nodes_no_sink);
    suite_add_tcase(s, errors);
    TCase *shape = tcase_create("shape");
    tcase_add_test(shape, test_warnings);
    tcase_add_test(shape, test_order_and_edges);
    tcase_add_test(shape, test_print);
    suite_add_tcase(s, shape);
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
