/* http: the bounded GET-only server for /health and /metrics, and the `edgewatch health` client. */
#include "http.h"

#include <edgewatch/plugin.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Limits of the server. /health and /metrics are read by a health checker and a
 * scraper; nothing legitimate needs more, and an edge device must not be tied up
 * by a port scan or a slow client. */
#define HTTP_MAX_CONNECTIONS 16u
#define HTTP_MAX_PER_IP 8u /* half: one noisy client cannot lock out the health check */
#define HTTP_TIMEOUT_S 5u
/* The idle timeout restarts with every byte, so a client sending one byte at a
 * time would hold its connection for ever. Each exchange (request read, response
 * sent; or, on a kept-alive connection, the wait for the next request) must end
 * within this deadline or the connection is cut. */
#define HTTP_EXCHANGE_DEADLINE_MS 3000
/* Sockets MHD may hold at once. Beyond HTTP_MAX_CONNECTIONS the oldest connection
 * still waiting for its request is cut at each new one, so slow clients from many
 * addresses can never fill the server: a new health check always gets in, and its
 * request, sent at once, is answered before it is the oldest. */
#define HTTP_MAX_SOCKETS 64u
#define HTTP_WATCHDOG_MS 100
#define HTTP_MEMORY_PER_CONNECTION ((size_t)16 * 1024) /* bigger headers get 431 */

/* Client limits. */
#define HTTP_GET_DEFAULT_TIMEOUT_MS 5000
#define HTTP_GET_HEADER_MAX 8192

/* One open connection, as the watchdog sees it (a slot of http_server.conns). */
typedef struct s_conn {
    int fd; /* -1: free slot */
    dev_t dev;
    ino_t ino; /* of the socket: an fd number reused after a close is never cut */
    int64_t since_ms; /* start of the current exchange */
    bool answered;    /* its current request was read in full */
    bool cut;         /* shut down by us; MHD closes it */
} s_conn;

struct http_server {
    struct MHD_Daemon *daemon;
    pthread_mutex_t mu; /* guards conns and stopping */
    pthread_cond_t wake;
    pthread_t watchdog;
    bool watchdog_started, stopping;
    s_conn conns[HTTP_MAX_SOCKETS];
    http_handler handler;
    void *ctx;
    unsigned port;
    /* MHD reports why it could not start only through its logger: while starting we
     * keep the first message for err; afterwards everything is dropped, because MHD
     * has no logger handle and a scanner must not be able to flood stderr. */
    atomic_int capturing;
    atomic_flag claimed;
    char start_error[256];
    int start_errno; /* errno right after a failed start, for the advice in err */
};

static void s_err(char *err, size_t errlen, const char *fmt, ...) EW_PRINTF(3, 4);
static void s_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- http_parse_listen --------------------------------------------------------------------- */

/* Parses a decimal port 0..65535; 0 asks the kernel for a free one. */
static int s_parse_port(const char *text, size_t len, unsigned *port)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(text[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = v;
    return 0;
}

/* Resolves host to a numeric address. IPv4 is preferred for names such as
 * "localhost" because containers often run without IPv6, where binding ::1 fails. */
static int s_numeric_host(const char *name, int numeric_only, char *out, size_t outlen, char *err,
                          size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = numeric_only ? AI_NUMERICHOST : 0};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0 || !res) {
        s_err(err, errlen, "cannot resolve listen host '%s': %s", name,
              rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    char buf[NI_MAXHOST];
    rc = getnameinfo(pick->ai_addr, pick->ai_addrlen, buf, sizeof buf, NULL, 0, NI_NUMERICHOST);
    freeaddrinfo(res);
    if (rc != 0) {
        s_err(err, errlen, "cannot resolve listen host '%s': %s", name, gai_strerror(rc));
        return -1;
    }
    if (strlen(buf) >= outlen) {
        s_err(err, errlen, "listen host '%s' is too long", name);
        return -1;
    }
    memcpy(out, buf, strlen(buf) + 1);
    return 0;
}

int http_parse_listen(const char *spec, char *host, size_t hostlen, unsigned *port, char *err,
                      size_t errlen)
{
    static const char hint[] = "write HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or :8080";
    if (!spec || !host || hostlen == 0 || !port) {
        s_err(err, errlen, "http_parse_listen: missing argument");
        return -1;
    }
    host[0] = '\0';
    char name[256];
    const char *port_text;
    if (strstr(spec, "://")) {
        s_err(err, errlen,
              "invalid listen address '%s': write HOST:PORT without a scheme, e.g. "
              "127.0.0.1:8080",
              spec);
        return -1;
    }
    int bracketed = spec[0] == '[';
    if (bracketed) {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') {
            s_err(err, errlen, "invalid listen address '%s': %s", spec,
                  close ? "missing ':PORT' after ']'" : "missing ']'");
            return -1;
        }
        size_t n = (size_t)(close - spec - 1);
        if (n == 0 || n >= sizeof name) {
            s_err(err, errlen, "invalid listen address '%s': empty or overlong IPv6 address", spec);
            return -1;
        }
        memcpy(name, spec + 1, n);
        name[n] = '\0';
        port_text = close + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon) {
            s_err(err, errlen, "invalid listen address '%s': missing port: %s", spec, hint);
            return -1;
        }
        if (memchr(spec, ':', (size_t)(colon - spec))) {
            s_err(err, errlen,
                  "invalid listen address '%s': put IPv6 addresses in brackets, e.g. [::1]:8080",
                  spec);
            return -1;
        }
        size_t n = (size_t)(colon - spec);
        if (n >= sizeof name) {
            s_err(err, errlen, "invalid listen address '%s': host too long", spec);
            return -1;
        }
        memcpy(name, spec, n);
        name[n] = '\0';
        port_text = colon + 1;
    }
    if (s_parse_port(port_text, strlen(port_text), port) != 0) {
        s_err(err, errlen, "invalid listen address '%s': %s port '%s': use 0 to 65535", spec,
              port_text[0] ? "bad" : "missing", port_text);
        return -1;
    }
    for (const char *p = name; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == '[' || *p == ']') {
            s_err(err, errlen, "invalid listen address '%s': bad host: %s", spec, hint);
            return -1;
        }
    }
    if (name[0] == '\0') {
        if (bracketed) {
            s_err(err, errlen, "invalid listen address '%s': empty host", spec);
            return -1;
        }
        return 0; /* ":8080": all interfaces */
    }
    /* Brackets hold an IPv6 literal only; a name there is a typo. */
    if (bracketed && !strchr(name, ':')) {
        s_err(err, errlen, "invalid listen address '%s': brackets are for IPv6 addresses", spec);
        return -1;
    }
    char why[300];
    if (s_numeric_host(name, bracketed, host, hostlen, why, sizeof why) != 0) {
        s_err(err, errlen, "invalid listen address '%s': %s", spec, why);
        host[0] = '\0';
        return -1;
    }
    return 0;
}

/* ---- server -------------------------------------------------------------------------------- */

static void s_mhd_logger(void *cls, const char *fmt, va_list ap) EW_PRINTF(2, 0);
static void s_mhd_logger(void *cls, const char *fmt, va_list ap)
{
    struct http_server *srv = cls;
    if (!atomic_load(&srv->capturing) || atomic_flag_test_and_set(&srv->claimed))
        return;
    vsnprintf(srv->start_error, sizeof srv->start_error, fmt, ap);
    size_t n = strlen(srv->start_error);
    while (n > 0 && (srv->start_error[n - 1] == '\n' || srv->start_error[n - 1] == '.'))
        srv->start_error[--n] = '\0';
}

static int64_t s_now_ms(void);

/* Cuts a connection: MHD sees the end of its stream and closes it, calling
 * s_on_connection (CLOSED) before the fd is released. The caller holds srv->mu. */
static void s_cut(s_conn *c)
{
    struct stat st;
    if (!c->cut && fstat(c->fd, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        shutdown(c->fd, SHUT_RDWR);
    c->cut = true;
}

static void s_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                            enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *srv = cls;
    pthread_mutex_lock(&srv->mu);
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        s_conn *c = *socket_context;
        if (c)
            c->fd = -1;
        *socket_context = NULL;
        pthread_mutex_unlock(&srv->mu);
        return;
    }
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = info ? info->connect_fd : -1;
    struct stat st;
    s_conn *slot = NULL, *oldest = NULL;
    unsigned n_open = 0;
    for (size_t i = 0; i < HTTP_MAX_SOCKETS; i++) {
        s_conn *c = &srv->conns[i];
        if (c->fd < 0) {
            if (!slot)
                slot = c;
            continue;
        }
        if (c->cut)
            continue;
        n_open++;
        if (!c->answered && (!oldest || c->since_ms < oldest->since_ms))
            oldest = c;
    }
    if (fd < 0 || !slot || fstat(fd, &st) != 0) {
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        pthread_mutex_unlock(&srv->mu);
        return;
    }
    if (n_open >= HTTP_MAX_CONNECTIONS && oldest)
        s_cut(oldest);
    *slot = (s_conn){.fd = fd, .dev = st.st_dev, .ino = st.st_ino, .since_ms = s_now_ms()};
    *socket_context = slot;
    pthread_mutex_unlock(&srv->mu);
}

/* Marks the connection's request as read (answered) or its exchange as over. */
static void s_mark(struct http_server *srv, struct MHD_Connection *conn, bool answered)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    pthread_mutex_lock(&srv->mu);
    s_conn *c = info ? info->socket_context : NULL;
    if (c && c->fd >= 0) {
        c->answered = answered;
        if (!answered)
            c->since_ms = s_now_ms();
    }
    pthread_mutex_unlock(&srv->mu);
}

static void s_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                           enum MHD_RequestTerminationCode toe)
{
    (void)req_cls;
    (void)toe;
    s_mark(cls, conn, false);
}

/* Cuts every connection whose exchange has run past the deadline. */
static void *s_watchdog(void *arg)
{
    struct http_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    while (!srv->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += HTTP_WATCHDOG_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->wake, &srv->mu, &until);
        int64_t now = s_now_ms();
        for (size_t i = 0; i < HTTP_MAX_SOCKETS; i++) {
            s_conn *c = &srv->conns[i];
            if (c->fd >= 0 && !c->cut && now - c->since_ms > HTTP_EXCHANGE_DEADLINE_MS)
                s_cut(c);
        }
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* Queues a response. `fixed` is a constant body; `owned` a malloc'd one that MHD frees. */
static enum MHD_Result s_queue(struct MHD_Connection *conn, int status, const char *type,
                               const char *fixed, char *owned, size_t len, const char *allow)
{
    struct MHD_Response *resp;
    if (owned) {
        resp = MHD_create_response_from_buffer_with_free_callback(len, owned, &free);
        if (!resp)
            free(owned);
    } else {
        /* MHD's API is not const-correct; PERSISTENT promises it never writes. */
        resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)(fixed ? fixed : ""),
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    /* Health and metrics are live values: no proxy or browser may serve them stale. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static void s_add_process_metrics(http_response *out);

static enum MHD_Result s_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **req_cls)
{
    struct http_server *srv = cls;
    static const char text[] = "text/plain; charset=utf-8";
    (void)version;
    (void)upload_data;

    if (*req_cls) {
        /* The response was queued on the first call; anything the client still
         * sends is dropped unread. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    *req_cls = srv;
    s_mark(srv, conn, true);

    int is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    int is_head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (!is_get && !is_head) {
        static const char msg[] = "method not allowed: only GET and HEAD are served\n";
        return s_queue(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, msg, NULL, sizeof msg - 1,
                       "GET, HEAD");
    }
    /* Answering before reading means a body is never buffered: GET and HEAD carry none. */
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (te || (cl && strspn(cl, "0") != strlen(cl)) || (cl && cl[0] == '\0')) {
        static const char msg[] = "request bodies are not accepted\n";
        return s_queue(conn, MHD_HTTP_CONTENT_TOO_LARGE, text, msg, NULL, sizeof msg - 1, NULL);
    }

    http_response out = {.status = 500, .content_type = NULL, .body = NULL, .len = 0};
    srv->handler(srv->ctx, url, &out);
    int status = (out.status >= 100 && out.status <= 599) ? out.status : 500;
    if (!out.body)
        out.len = 0;
    if (status == 200 && out.body && strcmp(url, "/metrics") == 0)
        s_add_process_metrics(&out);
    return s_queue(conn, status, out.content_type ? out.content_type : text, NULL, out.body,
                   out.len, NULL);
}

/* Resident memory of this process from /proc/self/statm (pages), in bytes; -1
 * when unreadable. */
static long long s_resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return -1;
    char line[128] = "";
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    /* "size resident shared ...", in pages. */
    char *end = line;
    errno = 0;
    (void)strtoull(line, &end, 10);
    char *after = end;
    unsigned long long resident = ok ? strtoull(end, &after, 10) : 0;
    long page = sysconf(_SC_PAGESIZE);
    return ok && errno == 0 && after != end && page > 0 ? (long long)(resident * (unsigned long long)page) : -1;
}

/* Appends the process gauges to a /metrics body. They are the server's own, as
 * a Prometheus client library's process collector is: under a container memory
 * limit the growth towards an OOM kill is only visible here. */
static void s_add_process_metrics(http_response *out)
{
    long long rss = s_resident_bytes();
    if (rss < 0)
        return;
    char extra[256];
    int n = snprintf(extra, sizeof extra,
                     "# HELP edgewatch_process_resident_bytes Resident memory of the edgewatch process "
                     "(RSS, from /proc/self/statm).\n"
                     "# TYPE edgewatch_process_resident_bytes gauge\n"
                     "edgewatch_process_resident_bytes %lld\n",
                     rss);
    if (n < 0 || (size_t)n >= sizeof extra)
        return;
    char *body = realloc(out->body, out->len + (size_t)n + 1);
    if (!body)
        return;
    memcpy(body + out->len, extra, (size_t)n + 1);
    out->body = body;
    out->len += (size_t)n;
}

/* Fills a socket address for a numeric host ("" = any); returns 0 or -1. */
static int s_sockaddr(const char *host, unsigned port, struct sockaddr_storage *ss)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    if (getaddrinfo(host[0] ? host : NULL, service, &hints, &res) != 0 || !res)
        return -1;
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static struct MHD_Daemon *s_start_daemon(struct http_server *srv, const struct sockaddr *sa,
                                         unsigned extra_flags)
{
    unsigned flags =
        MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | extra_flags;
    /* Port 0 in the argument; MHD takes the real port from the socket address. */
    errno = 0;
    /* One option and its value per line. */
    /* clang-format off */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, &s_on_request, srv,
        MHD_OPTION_EXTERNAL_LOGGER, &s_mhd_logger, srv,
        MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_CONNECTION_LIMIT, HTTP_MAX_SOCKETS,
        MHD_OPTION_NOTIFY_CONNECTION, &s_on_connection, srv,
        MHD_OPTION_NOTIFY_COMPLETED, &s_on_completed, srv,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, HTTP_MAX_PER_IP,
        MHD_OPTION_CONNECTION_TIMEOUT, HTTP_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_MEMORY_PER_CONNECTION,
        MHD_OPTION_END);
    /* clang-format on */
    srv->start_errno = d ? 0 : errno;
    return d;
}

/* Writes why the server did not start and what to do about it. */
static void s_start_failed(const struct http_server *srv, const char *listen, char *err,
                           size_t errlen)
{
    const char *reason = srv->start_error[0] ? srv->start_error : "libmicrohttpd failed to start";
    /* MHD says "Failed to bind to port 0: <reason>" because we pass the port inside
     * the socket address; keep only the reason. */
    const char *tail = strrchr(reason, ':');
    if (strncmp(reason, "Failed to bind", 14) == 0 && tail)
        reason = tail + 2;
    const char *advice = "change the listen address in [pipeline] or turn HTTP off";
    int e = srv->start_errno;
    if (e && strcmp(reason, strerror(e)) == 0) {
        if (e == EADDRINUSE)
            advice = "is another edgewatch or service using that port? change the listen "
                     "address in [pipeline] or turn HTTP off";
        else if (e == EADDRNOTAVAIL)
            advice = "that address is not one of this host's: change the listen address in "
                     "[pipeline]";
        else if (e == EACCES)
            advice = "ports below 1024 need privileges: use a higher port in [pipeline]";
    }
    s_err(err, errlen, "cannot serve HTTP on %s: %s: %s", listen, reason, advice);
}

static void s_free(struct http_server *srv)
{
    pthread_cond_destroy(&srv->wake);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

http_server *http_server_start(const char *listen, http_handler handler, void *ctx, char *err,
                               size_t errlen)
{
    char host[NI_MAXHOST];
    unsigned port = 0;
    if (!handler) {
        s_err(err, errlen, "http_server_start: no handler");
        return NULL;
    }
    if (http_parse_listen(listen, host, sizeof host, &port, err, errlen) != 0)
        return NULL;
    struct http_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        s_err(err, errlen, "cannot start the HTTP server: out of memory");
        return NULL;
    }
    srv->handler = handler;
    srv->ctx = ctx;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->wake, &ca);
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < HTTP_MAX_SOCKETS; i++)
        srv->conns[i].fd = -1;
    atomic_init(&srv->capturing, 1);
    atomic_flag_clear(&srv->claimed);

    struct sockaddr_storage ss;
    if (host[0] == '\0') {
        /* All interfaces: IPv6 dual-stack where the kernel has IPv6, else IPv4 only
         * (containers and some gateways run with IPv6 disabled). */
        struct sockaddr_in6 any6 = {.sin6_family = AF_INET6,
                                    .sin6_port = htons((uint16_t)port),
                                    .sin6_addr = IN6ADDR_ANY_INIT};
        srv->daemon = s_start_daemon(srv, (const struct sockaddr *)&any6, MHD_USE_DUAL_STACK);
        if (!srv->daemon) {
            struct sockaddr_in any4 = {.sin_family = AF_INET,
                                       .sin_port = htons((uint16_t)port),
                                       .sin_addr.s_addr = htonl(INADDR_ANY)};
            srv->start_error[0] = '\0';
            atomic_flag_clear(&srv->claimed);
            srv->daemon = s_start_daemon(srv, (const struct sockaddr *)&any4, 0);
        }
    } else if (s_sockaddr(host, port, &ss) == 0) {
        srv->daemon = s_start_daemon(srv, (const struct sockaddr *)&ss,
                                     ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    } else {
        snprintf(srv->start_error, sizeof srv->start_error, "bad address");
    }
    atomic_store(&srv->capturing, 0);

    if (!srv->daemon) {
        s_start_failed(srv, listen, err, errlen);
        s_free(srv);
        return NULL;
    }
    if (pthread_create(&srv->watchdog, NULL, s_watchdog, srv) != 0) {
        s_err(err, errlen, "cannot start the HTTP server's watchdog thread: %s", strerror(errno));
        MHD_stop_daemon(srv->daemon);
        s_free(srv);
        return NULL;
    }
    srv->watchdog_started = true;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : port;
    return srv;
}

unsigned http_server_port(const http_server *srv)
{
    return srv ? srv->port : 0;
}

void http_server_stop(http_server **srv)
{
    if (!srv || !*srv)
        return;
    struct http_server *s = *srv;
    if (s->watchdog_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->watchdog, NULL);
    }
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    s_free(s);
    *srv = NULL;
}

/* ---- client -------------------------------------------------------------------------------- */

typedef struct s_url {
    char host[256]; /* without brackets */
    char port[8];
    char path[1024];
} s_url;

static int s_parse_url(const char *url, s_url *u, char *err, size_t errlen)
{
    const char *p = url;
    const char *scheme_end = strstr(url, "://");
    if (scheme_end) {
        if ((size_t)(scheme_end - url) != 4 || strncasecmp(url, "http", 4) != 0) {
            s_err(err, errlen, "unsupported URL '%s': only http:// is supported", url);
            return -1;
        }
        p = scheme_end + 3;
    }
    size_t auth_len = strcspn(p, "/?#");
    const char *rest = p + auth_len;
    if (memchr(p, '@', auth_len)) {
        s_err(err, errlen, "unsupported URL '%s': user names are not supported", url);
        return -1;
    }
    const char *host = p, *port = NULL;
    size_t host_len;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', auth_len);
        if (!close) {
            s_err(err, errlen, "invalid URL '%s': missing ']'", url);
            return -1;
        }
        host = p + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < rest) {
            if (close[1] != ':') {
                s_err(err, errlen, "invalid URL '%s': expected ':PORT' after ']'", url);
                return -1;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', auth_len);
        host_len = colon ? (size_t)(colon - p) : auth_len;
        if (colon)
            port = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof u->host) {
        s_err(err, errlen, "invalid URL '%s': missing or overlong host", url);
        return -1;
    }
    memcpy(u->host, host, host_len);
    u->host[host_len] = '\0';
    unsigned portnum = 80;
    if (port && s_parse_port(port, (size_t)(rest - port), &portnum) != 0) {
        s_err(err, errlen, "invalid URL '%s': bad port", url);
        return -1;
    }
    if (portnum == 0) {
        s_err(err, errlen, "invalid URL '%s': port 0", url);
        return -1;
    }
    snprintf(u->port, sizeof u->port, "%u", portnum);
    const char *path = rest[0] == '/' ? rest : "/";
    size_t path_len = rest[0] == '/' ? strcspn(rest, "#") : 1;
    if (rest[0] == '?') {
        /* "http://h:1?x": keep the query on the root path. */
        if (strlen(rest) + 1 >= sizeof u->path) {
            s_err(err, errlen, "invalid URL '%s': path too long", url);
            return -1;
        }
        snprintf(u->path, sizeof u->path, "/%.*s", (int)strcspn(rest, "#"), rest);
    } else {
        if (path_len >= sizeof u->path) {
            s_err(err, errlen, "invalid URL '%s': path too long", url);
            return -1;
        }
        memcpy(u->path, path, path_len);
        u->path[path_len] = '\0';
    }
    /* The path goes into the request line verbatim: no spaces or control bytes. */
    for (const char *c = u->path; *c; c++) {
        if ((unsigned char)*c <= ' ' || (unsigned char)*c == 0x7f) {
            s_err(err, errlen, "invalid URL '%s': spaces or control characters in the path", url);
            return -1;
        }
    }
    return 0;
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline; returns 1 ready, 0 timed out, -1 error. */
static int s_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - s_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int rc = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -1;
        if (rc == 0)
            return 0;
        return 1;
    }
}

/* "127.0.0.1:8080" or "[::1]:8080" for messages. */
static void s_addr_text(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

/* Connects to the first address that answers; returns the socket or -1 with err. */
static int s_connect(const s_url *u, int64_t deadline, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0 || !res) {
        s_err(err, errlen, "cannot resolve '%s': %s", u->host,
              rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    int last_errno = 0;
    char where[NI_MAXHOST + 16] = "";
    int fd = -1;
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        s_addr_text(ai->ai_addr, ai->ai_addrlen, where, sizeof where);
        int s =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (s < 0) {
            last_errno = errno;
            continue;
        }
        if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0) {
            fd = s;
            break;
        }
        if (errno != EINPROGRESS) {
            last_errno = errno;
            close(s);
            continue;
        }
        int w = s_wait(s, POLLOUT, deadline);
        if (w == 0) {
            last_errno = ETIMEDOUT;
            close(s);
            break; /* the total time is spent: no other address gets a chance */
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (w < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            last_errno = w < 0 ? errno : soerr ? soerr : errno;
            close(s);
            continue;
        }
        fd = s;
    }
    freeaddrinfo(res);
    if (fd >= 0)
        return fd;
    if (last_errno == ECONNREFUSED)
        s_err(err, errlen, "connection refused to %s: is edgewatch running with http enabled?",
              where);
    else if (last_errno == ETIMEDOUT)
        s_err(err, errlen,
              "no connection to %s within %d ms: is the address right and the host up?", where,
              timeout_ms);
    else
        s_err(err, errlen, "cannot connect to %s: %s", where, strerror(last_errno));
    return -1;
}

/* Finds a header's value in the raw header block (case-insensitive name). */
static const char *s_find_header(const char *headers, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = strchr(headers, '\n'); line; line = strchr(line, '\n')) {
        line++;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    }
    return NULL;
}

int http_get(const char *url, int timeout_ms, int *status, char *body, size_t bodylen, char *err,
             size_t errlen)
{
    if (status)
        *status = 0;
    if (body && bodylen > 0)
        body[0] = '\0';
    if (!url || !status) {
        s_err(err, errlen, "http_get: missing argument");
        return -1;
    }
    if (timeout_ms <= 0)
        timeout_ms = HTTP_GET_DEFAULT_TIMEOUT_MS;
    s_url u;
    if (s_parse_url(url, &u, err, errlen) != 0)
        return -1;
    int64_t deadline = s_now_ms() + timeout_ms;
    int fd = s_connect(&u, deadline, timeout_ms, err, errlen);
    if (fd < 0)
        return -1;

    char where[300];
    snprintf(where, sizeof where, strchr(u.host, ':') ? "[%s]:%s" : "%s:%s", u.host, u.port);
    char req[1600];
    int reqlen = snprintf(req, sizeof req,
                          "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: edgewatch-health\r\n"
                          "Accept: */*\r\nConnection: close\r\n\r\n",
                          u.path, where);
    size_t sent = 0;
    while (sent < (size_t)reqlen) {
        ssize_t n = send(fd, req + sent, (size_t)reqlen - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        int w = (errno == EAGAIN || errno == EWOULDBLOCK) ? s_wait(fd, POLLOUT, deadline) : -1;
        if (w <= 0) {
            s_err(err, errlen, "cannot send the request to %s: %s", where,
                  w == 0 ? "timed out" : strerror(errno));
            close(fd);
            return -1;
        }
    }

    /* Read headers into hdr; whatever follows them is the start of the body. */
    char hdr[HTTP_GET_HEADER_MAX + 1];
    size_t hlen = 0, body_used = 0, body_cap = (body && bodylen > 0) ? bodylen - 1 : 0;
    long long content_length = -1;
    int have_headers = 0;
    const char *failure = NULL;
    for (;;) {
        if (have_headers && (body_used >= body_cap ||
                             (content_length >= 0 && (long long)body_used >= content_length)))
            break; /* all we want (or have room for) is here */
        char chunk[4096];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = s_wait(fd, POLLIN, deadline);
                if (w == 0) {
                    failure = "timed out waiting for the response";
                    break;
                }
                if (w > 0)
                    continue;
            }
            failure = strerror(errno);
            break;
        }
        if (n == 0)
            break; /* the server closed: the response is complete */
        const char *data = chunk;
        size_t len = (size_t)n;
        if (!have_headers) {
            size_t room = HTTP_GET_HEADER_MAX - hlen;
            size_t take = len < room ? len : room;
            memcpy(hdr + hlen, chunk, take);
            size_t old = hlen;
            hlen += take;
            hdr[hlen] = '\0';
            /* memmem, not strstr: a hostile server may send NUL bytes. */
            size_t from = old > 3 ? old - 3 : 0;
            char *end = memmem(hdr + from, hlen - from, "\r\n\r\n", 4);
            if (!end) {
                if (hlen >= HTTP_GET_HEADER_MAX) {
                    failure = "response headers are too long";
                    break;
                }
                continue;
            }
            have_headers = 1;
            size_t header_bytes = (size_t)(end - hdr) + 4;
            /* Bytes past the headers in this chunk belong to the body. */
            size_t consumed_from_chunk = header_bytes - old;
            data = chunk + consumed_from_chunk;
            len -= consumed_from_chunk;
            end[2] = '\0'; /* keep the last header's line end for s_find_header */
            const char *cl = s_find_header(hdr, "Content-Length");
            if (cl)
                content_length = strtoll(cl, NULL, 10);
        }
        size_t room = body_cap - body_used;
        size_t take = len < room ? len : room;
        if (take > 0)
            memcpy(body + body_used, data, take);
        body_used += take;
    }
    close(fd);
    if (body && bodylen > 0)
        body[body_used] = '\0';

    if (!have_headers) {
        if (!failure && hlen == 0)
            failure = "the connection was closed before a response";
        else if (!failure)
            failure = "the response ended inside its headers";
        s_err(err, errlen, "no valid HTTP response from %s: %s", where, failure);
        return -1;
    }
    /* "HTTP/1.x NNN ...": the status is the three digits after the version. */
    int code = 0;
    if (strncmp(hdr, "HTTP/1.", 7) == 0 && hdr[7] >= '0' && hdr[7] <= '9' && hdr[8] == ' ') {
        char *end = NULL;
        long v = strtol(hdr + 9, &end, 10);
        if (end == hdr + 12 && (*end == ' ' || *end == '\r' || *end == '\n' || *end == '\0'))
            code = (int)v;
    }
    if (code < 100 || code > 599) {
        s_err(err, errlen, "malformed status line from %s", where);
        return -1;
    }
    if (failure && !(content_length >= 0 && (long long)body_used >= content_length)) {
        s_err(err, errlen, "incomplete response from %s (status %d): %s", where, code, failure);
        return -1;
    }
    *status = code;
    return 0;
}
