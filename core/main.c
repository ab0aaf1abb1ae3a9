/* main: the edgewatch command line (run, check, plugins, describe, health). */
#include "config.h"
#include "graph.h"
#include "http.h"
#include "loader.h"
#include "log.h"
#include "options.h"
#include "runtime.h"
#include "state.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2

static const char s_usage[] =
    "usage: edgewatch COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run FILE            run the pipeline described by the INI file FILE\n"
    "  check FILE          validate FILE (plugins, options, graph) and print the graph; start nothing\n"
    "  plugins             list the plugins found, with kind and version\n"
    "  describe [--markdown] NAME\n"
    "                      show every option of plugin NAME (or kind.NAME); NAME = pipeline or node\n"
    "                      shows the host's own keys\n"
    "  health [URL]        exit 0 when the pipeline at URL is healthy\n"
    "                      (default http://127.0.0.1:8080/health)\n"
    "  --version           print the version and the plugin ABI\n"
    "  --help              print this help\n"
    "\n"
    "Plugins are searched in [pipeline] plugin_path, then EDGEWATCH_PLUGIN_PATH (colon-separated),\n"
    "then " EW_PLUGIN_DIR ".\n"
    "Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.\n";

static int s_usage_error(const char *fmt, ...) EW_PRINTF(1, 2);

static int s_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "edgewatch: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", s_usage);
    return EXIT_USAGE;
}

static void s_print_config_error(const char *path, const config_error *err)
{
    char line[1600];
    config_error_format(path, err, line, sizeof line);
    fprintf(stderr, "edgewatch: error: %s\n", line);
}

/* Everything `check` and `run` share: parse, build the graph, load plugins. */
typedef struct s_loaded {
    config cfg;
    graph g;
    loader_path lp;
    logger log;
    runtime rt;
} s_loaded;

static int s_load(const char *path, s_loaded *l)
{
    memset(l, 0, sizeof *l);
    l->log = log_default();
    config_error err = {0};
    if (config_load(path, &l->cfg, &err) < 0) {
        s_print_config_error(path, &err);
        return EXIT_USAGE;
    }
    if (graph_build(&l->cfg, &l->g, &err) < 0) {
        s_print_config_error(path, &err);
        return EXIT_USAGE;
    }
    l->log.level = l->g.settings.log_level;
    l->log.format = l->g.settings.log_format;
    for (size_t i = 0; i < l->g.n_warnings; i++)
        log_write(&l->log, EW_LOG_WARN, NULL, "%s", l->g.warnings[i]);
    if (loader_path_init(&l->lp, l->g.settings.plugin_path) < 0) {
        fprintf(stderr, "edgewatch: error: out of memory\n");
        return 1;
    }
    if (runtime_prepare(&l->rt, &l->cfg, &l->g, &l->lp, &l->log, &err) < 0) {
        s_print_config_error(path, &err);
        return EXIT_USAGE;
    }
    return 0;
}

static void s_unload(s_loaded *l)
{
    runtime_free(&l->rt);
    loader_path_free(&l->lp);
    graph_free(&l->g);
    config_free(&l->cfg);
}

static int s_cmd_check(const char *path)
{
    s_loaded l;
    int rc = s_load(path, &l);
    if (rc == 0) {
        graph_print(&l.g, stdout);
        for (size_t i = 0; i < l.g.count; i++)
            printf("  %-16s %s\n", l.g.nodes[i].name, l.rt.nodes[i].plugin.path);
        printf("%s: configuration OK\n", path);
    }
    s_unload(&l);
    return rc;
}

/* Locks state_dir for this process (one edgewatch per state folder) before any
 * node opens a file in it, and says so when the previous run did not stop
 * cleanly. Returns 0, or EXIT_USAGE when another instance holds the folder, 1 on
 * an error. *lock_fd stays -1 when the folder cannot be made: then nothing can be
 * kept there, and nodes that need it report that themselves. */
static int s_claim_state_dir(const logger *log, const char *state_dir, int *lock_fd)
{
    char err[1200];
    int fd = state_lock(state_dir, err, sizeof err);
    if (fd == STATE_LOCK_BUSY) {
        log_write(log, EW_LOG_ERROR, NULL, "%s", err);
        return EXIT_USAGE;
    }
    if (fd == STATE_LOCK_NONE) {
        log_write(log, EW_LOG_DEBUG, NULL, "%s; running without the instance lock", err);
        return 0;
    }
    if (fd < 0) {
        log_write(log, EW_LOG_ERROR, NULL, "%s", err);
        return 1;
    }
    *lock_fd = fd;
    char previous[128];
    int found = state_mark_running(state_dir, previous, sizeof previous, err, sizeof err);
    if (found < 0)
        log_write(log, EW_LOG_WARN, NULL, "%s; an unclean stop of this run will not be noticed at the next start",
                  err);
    if (found > 0)
        log_write(log, EW_LOG_WARN, NULL,
                  "the previous run on state folder %s did not stop cleanly (%s): it was killed (an out-of-memory "
                  "kill under a container memory limit leaves no other trace: see edgewatch_process_resident_bytes "
                  "in /metrics and the container's OOM events), crashed, or the machine lost power",
                  state_dir, previous[0] ? previous : "no details");
    return 0;
}

static int s_cmd_run(const char *path)
{
    /* Blocked before any thread exists, so every thread inherits the mask and
     * only the supervisor's signalfd sees these. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    s_loaded l;
    int lock_fd = -1;
    int rc = s_load(path, &l);
    if (rc == 0) {
        if (geteuid() == 0)
            log_write(&l.log, EW_LOG_WARN, NULL,
                      "running as root: a fault in a plugin or a hostile device would have full control of "
                      "this machine; run as a dedicated user (in the dialout group for serial devices), as the "
                      "container image does with uid 1000");
        log_write(&l.log, EW_LOG_INFO, NULL, "edgewatch %s starting pipeline %s from %s", EW_VERSION,
                  l.g.settings.name, path);
        rc = s_claim_state_dir(&l.log, l.g.settings.state_dir, &lock_fd);
    }
    if (rc == 0) {
        rc = runtime_run(&l.rt, &signals);
        /* Whatever the exit code, the process ended on its own: a clean stop. */
        if (lock_fd >= 0)
            state_mark_stopped(l.g.settings.state_dir);
    }
    s_unload(&l);
    /* Released only now, after every node has closed its files in the folder. */
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

static void s_list_one(void *ctx, const loaded_plugin *p)
{
    (void)ctx;
    printf("%-9s %-14s %-9s %s\n", graph_kind_name(p->desc->kind), p->desc->name,
           p->desc->version ? p->desc->version : "?", p->desc->description ? p->desc->description : "");
}

static void s_list_bad(void *ctx, const char *path, const char *why)
{
    (void)ctx;
    (void)path;
    fprintf(stderr, "edgewatch: warning: skipped %s\n", why);
}

static int s_cmd_plugins(void)
{
    loader_path lp;
    if (loader_path_init(&lp, NULL) < 0)
        return 1;
    printf("%-9s %-14s %-9s %s\n", "KIND", "NAME", "VERSION", "DESCRIPTION");
    loader_list(&lp, s_list_one, s_list_bad, NULL);
    loader_path_free(&lp);
    return 0;
}

static void s_describe_table(const char *title, const char *intro, const ew_option *table, int markdown)
{
    if (markdown)
        printf("### %s\n\n%s\n\n", title, intro);
    else
        printf("%s\n  %s\n\noptions:\n", title, intro);
    options_describe(table, stdout, markdown);
    putchar('\n');
}

static int s_cmd_describe(const char *name, int markdown)
{
    if (strcmp(name, "pipeline") == 0) {
        s_describe_table("[pipeline]", "Settings of the whole pipeline.", graph_pipeline_options(), markdown);
        return 0;
    }
    if (strcmp(name, "node") == 0) {
        s_describe_table("node sections", "Keys the host reads in every [source.*], [detector.*] and [sink.*] section.",
                         graph_node_options(), markdown);
        return 0;
    }
    static const ew_kind kinds[] = {EW_KIND_SOURCE, EW_KIND_DETECTOR, EW_KIND_SINK};
    const char *bare = name;
    ew_kind only = 0;
    const char *dot = strchr(name, '.');
    if (dot) {
        for (size_t k = 0; k < 3; k++)
            if (strncmp(name, graph_kind_name(kinds[k]), (size_t)(dot - name)) == 0 &&
                strlen(graph_kind_name(kinds[k])) == (size_t)(dot - name))
                only = kinds[k];
        if (!only)
            return s_usage_error("describe: \"%s\" is not NAME or source.NAME, detector.NAME, sink.NAME", name);
        bare = dot + 1;
    }
    for (const char *p = bare; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return s_usage_error("describe: \"%s\" is not a plugin name ([a-z0-9_]+)", bare);
    loader_path lp;
    if (loader_path_init(&lp, NULL) < 0)
        return 1;
    int found = 0;
    for (size_t k = 0; k < 3; k++) {
        if (only && kinds[k] != only)
            continue;
        loaded_plugin p;
        char err[1200];
        if (loader_open(&lp, kinds[k], bare, EW_ABI_MAJOR, EW_ABI_MINOR, &p, err, sizeof err) < 0) {
            if (strstr(err, "no ") != err && !strstr(err, " is a "))
                fprintf(stderr, "edgewatch: warning: %s\n", err);
            continue;
        }
        const ew_plugin *d = p.desc;
        char title[160], intro[4800];
        snprintf(title, sizeof title, "%s %s %s", graph_kind_name(d->kind), d->name, d->version ? d->version : "");
        snprintf(intro, sizeof intro, "%s (licence %s, ABI %u.%u, %s)", d->description ? d->description : "",
                 d->license ? d->license : "unknown", d->abi_major, d->abi_minor, p.path);
        s_describe_table(title, intro, d->options, markdown);
        loader_close(&p);
        found++;
    }
    loader_path_free(&lp);
    if (!found) {
        fprintf(stderr, "edgewatch: error: no plugin named \"%s\" was found; run `edgewatch plugins` to list them\n",
                name);
        return EXIT_USAGE;
    }
    return 0;
}

static int s_cmd_health(const char *url)
{
    int status = 0;
    char body[8192], err[400];
    if (http_get(url, 2000, &status, body, sizeof body, err, sizeof err) < 0) {
        fprintf(stderr, "edgewatch: health: %s\n", err);
        return 1;
    }
    fputs(body, stdout);
    if (status != 200) {
        fprintf(stderr, "edgewatch: health: %s answered %d\n", url, status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return s_usage_error("%s", "a command is needed");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(s_usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 || strcmp(cmd, "version") == 0) {
        printf("edgewatch %s (plugin ABI %d.%d)\n", EW_VERSION, EW_ABI_MAJOR, EW_ABI_MINOR);
        return 0;
    }
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "check") == 0) {
        if (argc != 3)
            return s_usage_error("%s needs exactly one argument: the configuration file", cmd);
        return cmd[0] == 'r' ? s_cmd_run(argv[2]) : s_cmd_check(argv[2]);
    }
    if (strcmp(cmd, "plugins") == 0) {
        if (argc != 2)
            return s_usage_error("%s takes no arguments", cmd);
        return s_cmd_plugins();
    }
    if (strcmp(cmd, "describe") == 0) {
        int markdown = argc == 4 && strcmp(argv[2], "--markdown") == 0;
        if (argc != 3 + markdown)
            return s_usage_error("%s", "describe needs a plugin name, e.g. `edgewatch describe zscore`");
        return s_cmd_describe(argv[2 + markdown], markdown);
    }
    if (strcmp(cmd, "health") == 0) {
        if (argc > 3)
            return s_usage_error("%s", "health takes at most one argument: the URL");
        return s_cmd_health(argc == 3 ? argv[2] : "http://127.0.0.1:8080/health");
    }
    return s_usage_error("unknown command \"%s\"", cmd);
}
