/* runtime: supervises the node threads from start to a graceful or forced stop. */
#include "runtime.h"

#include "http.h"
#include "metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static int64_t s_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int runtime_prepare(runtime *rt, const config *cfg, const graph *g, const loader_path *lp, const logger *lg,
                    config_error *err)
{
    memset(rt, 0, sizeof *rt);
    rt->g = g;
    rt->cfg = cfg;
    rt->log = lg;
    rt->env = (node_env){.log = lg, .state_dir = g->settings.state_dir};
    rt->nodes = calloc(g->count, sizeof *rt->nodes);
    size_t n_edges = 0;
    for (size_t i = 0; i < g->count; i++)
        n_edges += g->nodes[i].n_inputs;
    rt->edges = calloc(n_edges + 1, sizeof *rt->edges);
    if (!rt->nodes || !rt->edges)
        goto oom;
    for (size_t i = 0; i < g->count; i++) {
        const graph_node *gn = &g->nodes[i];
        ew_node *n = &rt->nodes[i];
        n->index = i;
        n->g = gn;
        pthread_mutex_init(&n->degraded_lock, NULL);
        n->env = &rt->env;
        char why[1200];
        if (loader_open(lp, gn->kind, gn->plugin, EW_ABI_MAJOR, EW_ABI_MINOR, &n->plugin, why, sizeof why) < 0) {
            config_error_set(err, gn->plugin_line, gn->section, "plugin", "%s", why);
            return -1;
        }
        const ew_plugin *d = n->plugin.desc;
        n->config = calloc(1, d->config_size ? d->config_size : 1);
        if (!n->config)
            goto oom;
        options_error oe = {0};
        if (options_fill(d->options, d->config_size, gn->plugin_kvs, gn->n_plugin_kvs, n->config, &n->mem, &oe) <
            0) {
            config_error_set(err, oe.line ? oe.line : gn->line, gn->section, oe.key, "%s (plugin %s; see `edgewatch describe %s`)",
                             oe.message, d->name, d->name);
            return -1;
        }
        if (gn->settings.only_events && (!EW_PLUGIN_HAS(d, consume_event) || !d->consume_event)) {
            config_error_set(err, gn->settings.only_line ? gn->settings.only_line : gn->line, gn->section, "only",
                             "plugin %s %s takes no alert events (it has no consume_event): use only = all or "
                             "anomalies here, or a sink that delivers events (jsonl, mqtt, zmq, null)",
                             d->name, d->version);
            return -1;
        }
        if (EW_PLUGIN_HAS(d, validate) && d->validate) {
            char bad[600] = "";
            int line = 0;
            if (d->validate(n->config, bad, sizeof bad, &line) != EW_OK) {
                config_error_set(err, line > 0 ? line : gn->line, gn->section, NULL, "%s",
                                 bad[0] ? bad : "invalid configuration (the plugin gave no detail)");
                return -1;
            }
        }
        n->in_socks = calloc(gn->n_inputs + 1, sizeof *n->in_socks);
        n->in_edges = calloc(gn->n_inputs + 1, sizeof *n->in_edges);
        n->in_eos = calloc(gn->n_inputs + 1, sizeof *n->in_eos);
        n->in_schemas = calloc(gn->n_inputs + 1, sizeof *n->in_schemas);
        n->in_origins = calloc(gn->n_inputs + 1, sizeof *n->in_origins);
        n->out_socks = calloc(gn->n_outputs + 1, sizeof *n->out_socks);
        n->out_edges = calloc(gn->n_outputs + 1, sizeof *n->out_edges);
        if (!n->in_socks || !n->in_edges || !n->in_eos || !n->in_schemas || !n->in_origins || !n->out_socks ||
            !n->out_edges)
            goto oom;
    }
    for (size_t i = 0; i < g->count; i++) {
        const graph_node *gn = &g->nodes[i];
        ew_node *n = &rt->nodes[i];
        for (size_t k = 0; k < gn->n_inputs; k++) {
            size_t up = gn->inputs[k];
            edge *e = &rt->edges[rt->n_edges++];
            e->from = up;
            e->to = i;
            snprintf(e->endpoint, sizeof e->endpoint, "inproc://edge-%zu-%zu", up, i);
            n->in_edges[n->n_in] = e;
            n->in_schemas[n->n_in] = &rt->nodes[up].out_schema;
            n->in_origins[n->n_in] = g->nodes[up].name;
            n->n_in++;
            ew_node *u = &rt->nodes[up];
            u->out_edges[u->n_out++] = e;
        }
        n->n_in_open = n->n_in;
    }
    return 0;
oom:
    config_error_set(err, 0, NULL, NULL, "out of memory");
    return -1;
}

/* Sends a control message to a node's thread. */
static void s_tell(void *ctl, const char *msg)
{
    zmq_send(ctl, msg, strlen(msg), ZMQ_DONTWAIT);
}

/* Waits for a node's reply to its start: true when it is READY. A signal meanwhile
 * is honoured at once: the node then has shutdown_timeout to finish its init
 * (a csv source opening a FIFO nobody writes may never), after which the process
 * exits 1 without it, since a thread stuck in a plugin's init cannot be joined.
 * Nothing has flowed yet, so nothing accepted is lost. */
static bool s_wait_ready(runtime *rt, const ew_node *n, void *ctl, int sfd, bool *signalled)
{
    int64_t deadline = 0;
    for (;;) {
        zmq_pollitem_t items[2] = {{ctl, 0, ZMQ_POLLIN, 0}, {NULL, sfd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, *signalled ? 100 : -1) < 0 && errno != EINTR)
            return false;
        if (items[1].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGHUP)
                    continue;
                if (*signalled) {
                    log_write(rt->log, EW_LOG_WARN, NULL, "second signal (%s) during start-up: exiting at once",
                              strsignal((int)si.ssi_signo));
                    _exit(1);
                }
                log_write(rt->log, EW_LOG_WARN, NULL, "%s during start-up: stopping (node %s is starting)",
                          strsignal((int)si.ssi_signo), n->g->name);
                *signalled = true;
                deadline = s_clock(CLOCK_MONOTONIC) + rt->g->settings.shutdown_timeout_ns;
            }
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char msg[16] = "";
            int len = zmq_recv(ctl, msg, sizeof msg - 1, 0);
            if (len > 0)
                msg[len < (int)sizeof msg - 1 ? len : (int)sizeof msg - 1] = '\0';
            return strcmp(msg, NODE_MSG_READY) == 0;
        }
        if (*signalled && s_clock(CLOCK_MONOTONIC) > deadline) {
            log_write(rt->log, EW_LOG_ERROR, n->g->name,
                      "still starting (in the plugin's init) %.1f s after the signal (shutdown_timeout): exiting "
                      "without it; nothing had been accepted yet",
                      (double)rt->g->settings.shutdown_timeout_ns / 1e9);
            _exit(1);
        }
    }
}

/* Logs what a forced stop leaves undelivered. */
static void s_report_loss(runtime *rt)
{
    uint64_t batches = 0;
    for (size_t i = 0; i < rt->n_edges; i++) {
        uint64_t s = atomic_load(&rt->edges[i].batches_sent), r = atomic_load(&rt->edges[i].batches_received);
        batches += s > r ? s - r : 0;
    }
    for (size_t i = 0; i < rt->g->count; i++) {
        ew_node *n = &rt->nodes[i];
        node_state st = (node_state)atomic_load(&n->state);
        if (st != NODE_ENDED)
            log_write(rt->log, EW_LOG_ERROR, n->g->name,
                      "forced stop while %s: samples_in=%llu samples_out=%llu queued_batches=%llu", node_state_name(st),
                      (unsigned long long)atomic_load(&n->m.samples_in),
                      (unsigned long long)atomic_load(&n->m.samples_out),
                      (unsigned long long)node_queue_depth(n));
    }
    log_write(rt->log, EW_LOG_ERROR, NULL,
              "forced stop: %llu batches still queued between nodes were not delivered", (unsigned long long)batches);
}

int runtime_run(runtime *rt, const sigset_t *signals)
{
    const graph *g = rt->g;
    int exit_code = 0;
    int sfd = signalfd(-1, signals, SFD_CLOEXEC | SFD_NONBLOCK);
    void *zctx = zmq_ctx_new();
    void **ctl = calloc(g->count, sizeof *ctl);
    bool *done = calloc(g->count, sizeof *done);
    http_server *http = NULL;
    size_t started = 0, n_done = 0;
    if (sfd < 0 || !zctx || !ctl || !done) {
        log_write(rt->log, EW_LOG_ERROR, NULL, "cannot set up the runtime: %s", strerror(errno));
        exit_code = 1;
        goto out;
    }
    zmq_ctx_set(zctx, ZMQ_BLOCKY, 0);
    /* Every graph socket is inproc, which needs no I/O thread. */
    zmq_ctx_set(zctx, ZMQ_IO_THREADS, 0);
    rt->env.zctx = zctx;
    rt->started_realtime_ns = s_clock(CLOCK_REALTIME);

    if (strcmp(g->settings.http, "off") != 0) {
        char err[400];
        http = http_server_start(g->settings.http, metrics_http_handler, rt, err, sizeof err);
        if (!http) {
            log_write(rt->log, EW_LOG_ERROR, NULL,
                      "cannot serve /health on %s: %s; choose another address with http = HOST:PORT in [pipeline], "
                      "or http = off",
                      g->settings.http, err);
            exit_code = 1;
            goto out;
        }
        log_write(rt->log, EW_LOG_INFO, NULL, "health and metrics at http://%s/health and /metrics (port %u)",
                  g->settings.http, http_server_port(http));
    }

    /* Upstream first: a detector's init needs its input's schema. */
    bool signalled = false;
    bool start_failed = false;
    for (size_t r = 0; r < g->count && !start_failed && !signalled; r++) {
        size_t i = g->order[r];
        ew_node *n = &rt->nodes[i];
        char endpoint[48];
        snprintf(endpoint, sizeof endpoint, "inproc://ctl-%zu", i);
        ctl[i] = zmq_socket(zctx, ZMQ_PAIR);
        n->ctl = zmq_socket(zctx, ZMQ_PAIR);
        int linger = 0;
        zmq_setsockopt(ctl[i], ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(n->ctl, ZMQ_LINGER, &linger, sizeof linger);
        if (!ctl[i] || !n->ctl || zmq_bind(ctl[i], endpoint) != 0 || zmq_connect(n->ctl, endpoint) != 0 ||
            pthread_create(&n->thread, NULL, node_thread, n) != 0) {
            log_write(rt->log, EW_LOG_ERROR, n->g->name, "cannot start the node's thread: %s", strerror(errno));
            start_failed = true;
            break;
        }
        n->thread_started = true;
        started++;
        if (!s_wait_ready(rt, n, ctl[i], sfd, &signalled)) {
            log_write(rt->log, EW_LOG_ERROR, n->g->name, "%s %s failed to start: %s",
                      graph_kind_name(n->g->kind), n->g->plugin, n->error[0] ? n->error : "no detail given");
            start_failed = true;
        }
    }
    if (start_failed || signalled) {
        exit_code = start_failed ? 1 : 0;
        for (size_t i = 0; i < g->count; i++)
            if (rt->nodes[i].thread_started)
                s_tell(ctl[i], NODE_MSG_ABORT);
        goto join;
    }

    /* Downstream first, so nothing is sent before its reader runs. */
    for (size_t r = g->count; r-- > 0;)
        s_tell(ctl[g->order[r]], NODE_MSG_GO);
    atomic_store(&rt->phase, RUNTIME_RUNNING);
    log_write(rt->log, EW_LOG_INFO, NULL, "pipeline %s running: %zu nodes", g->settings.name, g->count);

    bool stopping = false, failing = false, forced = false;
    int64_t deadline = 0;
    zmq_pollitem_t *items = calloc(g->count + 1, sizeof *items);
    size_t *map = calloc(g->count + 1, sizeof *map);
    if (!items || !map) {
        free(items);
        free(map);
        exit_code = 1;
        for (size_t i = 0; i < g->count; i++)
            s_tell(ctl[i], NODE_MSG_ABORT);
        goto join;
    }
    while (n_done < started) {
        size_t ni = 0;
        items[ni++] = (zmq_pollitem_t){NULL, sfd, ZMQ_POLLIN, 0};
        for (size_t i = 0; i < g->count; i++) {
            if (!done[i]) {
                map[ni] = i;
                items[ni++] = (zmq_pollitem_t){ctl[i], 0, ZMQ_POLLIN, 0};
            }
        }
        if (zmq_poll(items, (int)ni, 200) < 0 && errno != EINTR)
            break;
        bool force_now = false;
        if (items[0].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                int sig = (int)si.ssi_signo;
                if (sig == SIGHUP) {
                    log_write(rt->log, EW_LOG_WARN, NULL,
                              "SIGHUP ignored: restart edgewatch to apply a changed configuration");
                } else if (!stopping) {
                    stopping = true;
                    deadline = s_clock(CLOCK_MONOTONIC) + g->settings.shutdown_timeout_ns;
                    atomic_store(&rt->phase, RUNTIME_STOPPING);
                    log_write(rt->log, EW_LOG_INFO, NULL,
                              "%s received: stopping sources and draining the pipeline (at most %.1f s)",
                              strsignal(sig), (double)g->settings.shutdown_timeout_ns / 1e9);
                    /* Sources stop producing; the others learn that the stream is
                     * draining (host->stopping) and go on until end-of-stream. */
                    for (size_t i = 0; i < g->count; i++)
                        if (!done[i])
                            s_tell(ctl[i], NODE_MSG_STOP);
                } else {
                    log_write(rt->log, EW_LOG_WARN, NULL, "second signal (%s): stopping at once", strsignal(sig));
                    force_now = true;
                }
            }
        }
        for (size_t k = 1; k < ni; k++) {
            if (!(items[k].revents & ZMQ_POLLIN))
                continue;
            size_t i = map[k];
            char msg[16] = "";
            int len = zmq_recv(ctl[i], msg, sizeof msg - 1, ZMQ_DONTWAIT);
            if (len <= 0 || strncmp(msg, NODE_MSG_DONE, 4) != 0)
                continue;
            done[i] = true;
            n_done++;
            pthread_join(rt->nodes[i].thread, NULL);
            rt->nodes[i].thread_started = false;
            if (atomic_load(&rt->nodes[i].state) == NODE_FAILED && !failing) {
                failing = true;
                exit_code = 1;
                atomic_store(&rt->phase, RUNTIME_STOPPING);
                log_write(rt->log, EW_LOG_ERROR, NULL, "node %s failed: stopping the pipeline",
                          rt->nodes[i].g->name);
                for (size_t j = 0; j < g->count; j++)
                    if (!done[j])
                        s_tell(ctl[j], NODE_MSG_ABORT);
            }
        }
        if (!forced && n_done < started &&
            (force_now || (stopping && s_clock(CLOCK_MONOTONIC) > deadline))) {
            forced = true;
            exit_code = 1;
            if (!force_now)
                log_write(rt->log, EW_LOG_ERROR, NULL, "shutdown_timeout of %.1f s passed: forcing the stop",
                          (double)g->settings.shutdown_timeout_ns / 1e9);
            s_report_loss(rt);
            for (size_t j = 0; j < g->count; j++)
                if (!done[j])
                    s_tell(ctl[j], NODE_MSG_ABORT);
            /* Give threads a moment to notice; a thread stuck in a plugin call is abandoned. */
            deadline = s_clock(CLOCK_MONOTONIC) + 2000000000LL;
            stopping = true;
        } else if (forced && s_clock(CLOCK_MONOTONIC) > deadline) {
            for (size_t j = 0; j < g->count; j++)
                if (!done[j])
                    log_write(rt->log, EW_LOG_ERROR, rt->nodes[j].g->name,
                              "did not stop within 2 s of being told to; exiting without it");
            _exit(1);
        }
    }
    free(items);
    free(map);

join:
    for (size_t i = 0; i < g->count; i++) {
        ew_node *n = &rt->nodes[i];
        if (n->thread_started) {
            /* Unlike the main loop, these threads never reached the run phase: they
             * end right after the abort. */
            char msg[16];
            zmq_recv(ctl[i], msg, sizeof msg, 0);
            pthread_join(n->thread, NULL);
            n->thread_started = false;
        }
    }
out:
    if (http)
        http_server_stop(&http);
    for (size_t i = 0; ctl && i < g->count; i++) {
        if (ctl[i])
            zmq_close(ctl[i]);
        if (rt->nodes[i].ctl)
            zmq_close(rt->nodes[i].ctl);
        rt->nodes[i].ctl = NULL;
    }
    free(ctl);
    free(done);
    if (zctx)
        zmq_ctx_term(zctx);
    rt->env.zctx = NULL;
    if (sfd >= 0)
        close(sfd);
    if (exit_code == 0)
        log_write(rt->log, EW_LOG_INFO, NULL, "pipeline %s stopped cleanly", g->settings.name);
    return exit_code;
}

void runtime_free(runtime *rt)
{
    if (!rt->nodes)
        return;
    for (size_t i = 0; i < rt->g->count; i++) {
        ew_node *n = &rt->nodes[i];
        free(n->config);
        options_mem_free(&n->mem);
        for (size_t k = 0; k < n->n_out_names; k++)
            free(n->out_names[k]);
        free(n->out_names);
        free(n->in_socks);
        free(n->in_edges);
        free(n->in_eos);
        free(n->in_schemas);
        free(n->in_origins);
        free(n->out_socks);
        free(n->out_edges);
        loader_close(&n->plugin);
        pthread_mutex_destroy(&n->degraded_lock);
    }
    free(rt->nodes);
    free(rt->edges);
    memset(rt, 0, sizeof *rt);
}
