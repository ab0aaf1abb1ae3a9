/* Unit tests for core/http.c: the server and its limits, the client, listen address parsing. */
#include "http.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What the test handler saw; shared with the server thread. */
typedef struct handler_ctx {
    atomic_int calls;
    char last_path[256];
} handler_ctx;

static void s_handler(void *ctx, const char *path, http_response *out)
{
    handler_ctx *h = ctx;
    atomic_fetch_add(&h->calls, 1);
    snprintf(h->last_path, sizeof h->last_path, "%s", path);
    if (strcmp(path, "/health") == 0) {
        out->status = 200;
        out->content_type = "application/json";
        out->body = strdup("{\"status\":\"ok\"}");
        out->len = strlen(out->body);
    } else if (strcmp(path, "/metrics") == 0) {
        out->status = 200;
        out->content_type = "text/plain; version=0.0.4";
        out->body = strdup("edgewatch_up 1\n");
        out->len = strlen(out->body);
    } else if (strcmp(path, "/broken") == 0) {
        /* Leaves the response untouched: the server must still answer sanely. */
    } else {
        out->status = 404;
        out->body = strdup("not found\n");
        out->len = strlen(out->body);
    }
}

typedef struct fixture {
    http_server *srv;
    handler_ctx h;
    unsigned port;
    char url[128];
    char err[512];
} fixture;

/* Check runs each test in its own child; the fixture lives there. */
static fixture fx;

static void s_setup(void)
{
    memset(&fx, 0, sizeof fx);
    fx.srv = http_server_start("127.0.0.1:0", s_handler, &fx.h, fx.err, sizeof fx.err);
    ck_assert_msg(fx.srv != NULL, "start failed: %s", fx.err);
    fx.port = http_server_port(fx.srv);
    ck_assert_uint_gt(fx.port, 0);
    snprintf(fx.url, sizeof fx.url, "http://127.0.0.1:%u", fx.port);
}

static void s_teardown(void)
{
    http_server_stop(&fx.srv);
    ck_assert_ptr_null(fx.srv);
}

static int s_connect_loopback(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Reads until the peer closes or timeout_ms passes; returns bytes read (NUL-terminated). */
static size_t s_read_until_close(int fd, char *buf, size_t cap, int timeout_ms, int *closed)
{
    size_t len = 0;
    *closed = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (spent >= timeout_ms)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(timeout_ms - spent)) <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0) {
            *closed = 1; /* EOF or reset: either way the server let go */
            break;
        }
        len += (size_t)n;
        if (len == cap - 1)
            break;
    }
    buf[len] = '\0';
    return len;
}

/* Sends raw bytes and returns the response text (until close). */
static size_t s_raw(unsigned port, const char *req, size_t reqlen, char *resp, size_t cap)
{
    int fd = s_connect_loopback(port);
    size_t sent = 0;
    while (sent < reqlen) {
        ssize_t n = send(fd, req + sent, reqlen - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may refuse before we finish: read what it said */
        sent += (size_t)n;
    }
    int closed;
    size_t len = s_read_until_close(fd, resp, cap, 3000, &closed);
    close(fd);
    return len;
}

static int s_status_of(const char *resp)
{
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* Finds a response header's value (case-insensitive name) or NULL. */
static const char *s_header(const char *resp, const char *name)
{
    size_t n = strlen(name);
    const char *end = strstr(resp, "\r\n\r\n");
    for (const char *line = strstr(resp, "\r\n"); line && line < end; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':')
            return line + n + 1 + strspn(line + n + 1, " ");
    }
    return NULL;
}

static const char *s_body(const char *resp)
{
    const char *end = strstr(resp, "\r\n\r\n");
    return end ? end + 4 : NULL;
}

START_TEST(test_get_health_with_client)
{
    char url[160], body[256];
    int status = 0;
    snprintf(url, sizeof url, "%s/health", fx.url);
    ck_assert_msg(http_get(url, 2000, &status, body, sizeof body, fx.err, sizeof fx.err) == 0, "%s",
                  fx.err);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "{\"status\":\"ok\"}");
    ck_assert_str_eq(fx.h.last_path, "/health");
    ck_assert_int_eq(atomic_load(&fx.h.calls), 1);

    snprintf(url, sizeof url, "%s/metrics", fx.url);
    ck_assert_int_eq(http_get(url, 2000, &status, body, sizeof body, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(status, 200);
    /* The handler's text, then the server's own process gauge (the RSS). */
    char metrics[1024];
    ck_assert_int_eq(http_get(url, 2000, &status, metrics, sizeof metrics, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_msg(strncmp(metrics, "edgewatch_up 1\n# HELP edgewatch_process_resident_bytes ", 55) == 0, "%s",
                  metrics);
    const char *rss = strstr(metrics, "\nedgewatch_process_resident_bytes ");
    ck_assert_ptr_nonnull(rss);
    ck_assert_int_gt(strtoll(rss + 34, NULL, 10), 1 << 20);

    /* Without a scheme, and with a query string the handler never sees. */
    snprintf(url, sizeof url, "127.0.0.1:%u/health?verbose=1", fx.port);
    ck_assert_int_eq(http_get(url, 2000, &status, body, sizeof body, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(fx.h.last_path, "/health");
}
END_TEST

START_TEST(test_get_health_raw_socket)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char resp[4096];
    s_raw(fx.port, req, sizeof req - 1, resp, sizeof resp);
    ck_assert_int_eq(s_status_of(resp), 200);
    ck_assert_ptr_nonnull(s_header(resp, "Content-Type"));
    ck_assert_int_eq(strncmp(s_header(resp, "Content-Type"), "application/json\r\n", 18), 0);
    ck_assert_int_eq(strncmp(s_header(resp, "Content-Length"), "15\r\n", 4), 0);
    ck_assert_int_eq(strncmp(s_header(resp, "Cache-Control"), "no-store\r\n", 10), 0);
    ck_assert_str_eq(s_body(resp), "{\"status\":\"ok\"}");
}
END_TEST

START_TEST(test_not_found_and_broken_handler)
{
    char url[160], body[256];
    int status = 0;
    snprintf(url, sizeof url, "%s/nope", fx.url);
    ck_assert_int_eq(http_get(url, 2000, &status, body, sizeof body, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(status, 404);
    ck_assert_str_eq(body, "not found\n");
    ck_assert_str_eq(fx.h.last_path, "/nope");

    /* A handler that fills nothing yields a 500 with an empty body, not a hang. */
    snprintf(url, sizeof url, "%s/broken", fx.url);
    ck_assert_int_eq(http_get(url, 2000, &status, body, sizeof body, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(status, 500);
    ck_assert_str_eq(body, "");
}
END_TEST

START_TEST(test_other_methods_get_405)
{
    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char req[256], resp[4096];
        int n = snprintf(req, sizeof req,
                         "%s /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", methods[i]);
        s_raw(fx.port, req, (size_t)n, resp, sizeof resp);
        ck_assert_msg(s_status_of(resp) == 405, "%s got: %s", methods[i], resp);
        const char *allow = s_header(resp, "Allow");
        ck_assert_ptr_nonnull(allow);
        ck_assert_int_eq(strncmp(allow, "GET, HEAD\r\n", 11), 0);
    }
    /* A POST with a body is refused the same way, without reading the body. */
    static const char post[] = "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                               "Connection: close\r\n\r\nhello=world";
    char resp[4096];
    s_raw(fx.port, post, sizeof post - 1, resp, sizeof resp);
    ck_assert_int_eq(s_status_of(resp), 405);
    ck_assert_int_eq(atomic_load(&fx.h.calls), 0);
}
END_TEST

START_TEST(test_get_with_body_refused)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                              "Connection: close\r\n\r\nhello";
    char resp[4096];
    s_raw(fx.port, req, sizeof req - 1, resp, sizeof resp);
    ck_assert_msg(s_status_of(resp) == 413, "got: %s", resp);
    static const char chunked[] =
        "GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    s_raw(fx.port, chunked, sizeof chunked - 1, resp, sizeof resp);
    ck_assert_msg(s_status_of(resp) == 413, "got: %s", resp);
    ck_assert_int_eq(atomic_load(&fx.h.calls), 0);

    /* "Content-Length: 0" is no body and is served. */
    static const char empty[] = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                "Connection: close\r\n\r\n";
    s_raw(fx.port, empty, sizeof empty - 1, resp, sizeof resp);
    ck_assert_int_eq(s_status_of(resp), 200);
}
END_TEST

START_TEST(test_oversized_header_refused_quietly)
{
    /* Capture stderr: the server must not print MHD's complaints. */
    int errpipe[2];
    ck_assert_int_eq(pipe(errpipe), 0);
    fcntl(errpipe[0], F_SETFL, O_NONBLOCK);
    int saved_stderr = dup(2);
    dup2(errpipe[1], 2);

    size_t big = 64 * 1024;
    char *req = malloc(big + 256);
    int n = snprintf(req, 256, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\nConnection: close\r\n\r\n", 24);
    char resp[4096];
    s_raw(fx.port, req, (size_t)n + big + 23, resp, sizeof resp);
    int status = s_status_of(resp);
    /* Either a 4xx (431 from MHD) or a closed or reset connection, never a 200. */
    ck_assert_msg(status == 0 || (status >= 400 && status < 500), "got status %d", status);
    ck_assert_int_eq(atomic_load(&fx.h.calls), 0);

    /* 20 KiB is under MHD's 32 KiB default but over our 16 KiB per-connection memory:
     * this proves the limit is ours. */
    n = snprintf(req, 256, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', 20 * 1024);
    memcpy(req + n + 20 * 1024, "\r\nConnection: close\r\n\r\n", 24);
    s_raw(fx.port, req, (size_t)n + 20 * 1024 + 23, resp, sizeof resp);
    ck_assert_msg(s_status_of(resp) == 431, "got: %.200s", resp);

    /* A huge request line as well. */
    memcpy(req, "GET /", 5);
    memset(req + 5, 'p', big);
    memcpy(req + 5 + big, " HTTP/1.1\r\nHost: x\r\n\r\n", 22);
    s_raw(fx.port, req, 5 + big + 22, resp, sizeof resp);
    status = s_status_of(resp);
    ck_assert_msg(status == 0 || (status >= 400 && status < 500), "got status %d", status);
    free(req);

    /* Garbage that is not HTTP at all. */
    s_raw(fx.port, "\x16\x03\x01 hello\r\n\r\n", 14, resp, sizeof resp);

    /* The server is still alive and serving. */
    int code = 0;
    char url[160], body[64];
    snprintf(url, sizeof url, "%s/health", fx.url);
    ck_assert_msg(http_get(url, 2000, &code, body, sizeof body, fx.err, sizeof fx.err) == 0, "%s",
                  fx.err);
    ck_assert_int_eq(code, 200);

    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(errpipe[1]);
    char noise[512];
    ssize_t got = read(errpipe[0], noise, sizeof noise - 1);
    close(errpipe[0]);
    ck_assert_msg(got <= 0, "server wrote to stderr: %.*s", (int)got, noise);
}
END_TEST

START_TEST(test_head)
{
    static const char req[] = "HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char resp[4096];
    s_raw(fx.port, req, sizeof req - 1, resp, sizeof resp);
    ck_assert_int_eq(s_status_of(resp), 200);
    ck_assert_ptr_nonnull(s_header(resp, "Content-Type"));
    /* No body after the headers, though the handler produced one. */
    ck_assert_ptr_nonnull(s_body(resp));
    ck_assert_str_eq(s_body(resp), "");
    ck_assert_int_eq(atomic_load(&fx.h.calls), 1);
}
END_TEST

typedef struct client_arg {
    const char *url;
    int ok;
} client_arg;

static void *s_client(void *p)
{
    client_arg *a = p;
    for (int i = 0; i < 25; i++) {
        int status = 0;
        char body[64], err[256];
        if (http_get(a->url, 3000, &status, body, sizeof body, err, sizeof err) == 0 &&
            status == 200 && strcmp(body, "{\"status\":\"ok\"}") == 0)
            a->ok++;
    }
    return NULL;
}

START_TEST(test_concurrent_clients)
{
    char url[160];
    snprintf(url, sizeof url, "%s/health", fx.url);
    pthread_t threads[6];
    client_arg args[6];
    for (int i = 0; i < 6; i++) {
        args[i] = (client_arg){.url = url};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, s_client, &args[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(threads[i], NULL);
        ck_assert_int_eq(args[i].ok, 25);
    }
    ck_assert_int_eq(atomic_load(&fx.h.calls), 6 * 25);
}
END_TEST

START_TEST(test_connection_limit_per_ip)
{
    /* Hold many idle connections: beyond the per-client limit new ones are closed
     * at once, and once they go the server serves again. */
    int fds[20];
    for (int i = 0; i < 20; i++)
        fds[i] = s_connect_loopback(fx.port);
    int refused = 0;
    for (int i = 0; i < 20; i++) {
        char buf[64];
        int closed;
        s_read_until_close(fds[i], buf, sizeof buf, 200, &closed);
        refused += closed;
    }
    ck_assert_msg(refused >= 4, "only %d of 20 idle connections were refused", refused);
    for (int i = 0; i < 20; i++)
        close(fds[i]);

    char url[160], body[64];
    int status = 0, rc = -1;
    snprintf(url, sizeof url, "%s/health", fx.url);
    for (int attempt = 0; attempt < 20 && rc != 0; attempt++) {
        rc = http_get(url, 1000, &status, body, sizeof body, fx.err, sizeof fx.err);
        if (rc != 0)
            usleep(50 * 1000);
    }
    ck_assert_msg(rc == 0 && status == 200, "%s", fx.err);
}
END_TEST

START_TEST(test_slow_client_dropped)
{
    /* Half a request, then silence: the server closes after its 5 s timeout. */
    int fd = s_connect_loopback(fx.port);
    ck_assert_int_eq(send(fd, "GET /health HTTP/1.1\r\nHo", 24, MSG_NOSIGNAL), 24);
    char buf[512];
    int closed = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    s_read_until_close(fd, buf, sizeof buf, 9000, &closed);
    clock_gettime(CLOCK_MONOTONIC, &b);
    close(fd);
    ck_assert_msg(closed, "connection still open after 9 s");
    ck_assert_int_ge(b.tv_sec - a.tv_sec, 2);
}
END_TEST

START_TEST(test_byte_at_a_time_client_dropped)
{
    /* One byte every 200 ms restarts the 5 s idle timeout each time; the deadline
     * of a whole exchange (3 s) still cuts the connection (issue 14 item 8). */
    static const char req[] = "GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int fd = s_connect_loopback(fx.port);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int cut = 0;
    for (size_t i = 0; i < sizeof req - 1 && !cut; i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
            cut = 1;
            break;
        }
        char buf[512];
        int closed = 0;
        s_read_until_close(fd, buf, sizeof buf, 200, &closed);
        cut = closed;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    close(fd);
    double spent = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    ck_assert_msg(cut, "a client sending a byte every 200 ms was never cut (%.1f s)", spent);
    ck_assert_msg(spent >= 2.5 && spent < 6.0, "cut after %.1f s, not the 3 s deadline", spent);
}
END_TEST

START_TEST(test_client_body_truncated_to_buffer)
{
    char url[160], body[8];
    int status = 0;
    snprintf(url, sizeof url, "%s/health", fx.url);
    ck_assert_int_eq(http_get(url, 2000, &status, body, sizeof body, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "{\"statu");
    /* Status only. */
    ck_assert_int_eq(http_get(url, 2000, &status, NULL, 0, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(status, 200);
}
END_TEST

START_TEST(test_stop_then_connection_refused)
{
    unsigned port = fx.port;
    http_server_stop(&fx.srv);
    ck_assert_ptr_null(fx.srv);
    http_server_stop(&fx.srv); /* stopping twice is harmless */
    char url[160], body[64];
    int status = -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/health", port);
    ck_assert_int_eq(http_get(url, 2000, &status, body, sizeof body, fx.err, sizeof fx.err), -1);
    char expect[128];
    snprintf(expect, sizeof expect,
             "connection refused to 127.0.0.1:%u: is edgewatch running with http enabled?", port);
    ck_assert_str_eq(fx.err, expect);
    ck_assert_int_eq(status, 0);
}
END_TEST

START_TEST(test_start_errors)
{
    char err[512];
    handler_ctx h;
    memset(&h, 0, sizeof h);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", fx.port);
    http_server *second = http_server_start(listen, s_handler, &h, err, sizeof err);
    ck_assert_ptr_null(second);
    ck_assert_msg(strstr(err, listen) && strstr(err, "in use"), "%s", err);

    ck_assert_ptr_null(http_server_start("nonsense", s_handler, &h, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "nonsense"));
    ck_assert_ptr_null(http_server_start("127.0.0.1:0", NULL, &h, err, sizeof err));
}
END_TEST

START_TEST(test_ipv6_loopback)
{
    char err[512];
    handler_ctx h;
    memset(&h, 0, sizeof h);
    http_server *srv = http_server_start("[::1]:0", s_handler, &h, err, sizeof err);
    if (!srv)
        return; /* no IPv6 on this machine (common in containers) */
    char url[160], body[64];
    int status = 0;
    snprintf(url, sizeof url, "http://[::1]:%u/health", http_server_port(srv));
    ck_assert_msg(http_get(url, 2000, &status, body, sizeof body, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(status, 200);
    http_server_stop(&srv);
}
END_TEST

START_TEST(test_all_interfaces)
{
    char err[512];
    handler_ctx h;
    memset(&h, 0, sizeof h);
    http_server *srv = http_server_start(":0", s_handler, &h, err, sizeof err);
    ck_assert_msg(srv != NULL, "%s", err);
    char url[160], body[64];
    int status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/health", http_server_port(srv));
    ck_assert_msg(http_get(url, 2000, &status, body, sizeof body, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(status, 200);
    http_server_stop(&srv);
}
END_TEST

/* ---- client against fake servers -------------------------------------------------------- */

typedef struct fake_server {
    int listen_fd;
    unsigned port;
    const char *reply; /* sent after reading the request; NULL = never answer */
    size_t reply_len;
    pthread_t thread;
} fake_server;

static void *s_fake_serve(void *p)
{
    fake_server *f = p;
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    (void)n;
    if (f->reply) {
        ssize_t w = send(fd, f->reply, f->reply_len, MSG_NOSIGNAL);
        (void)w;
        close(fd);
    } else {
        usleep(1500 * 1000); /* hold the connection, say nothing */
        close(fd);
    }
    return NULL;
}

static void s_fake_start(fake_server *f, const char *reply, size_t reply_len)
{
    f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(f->listen_fd, 4), 0);
    socklen_t sl = sizeof sa;
    getsockname(f->listen_fd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    f->reply = reply;
    f->reply_len = reply_len;
    ck_assert_int_eq(pthread_create(&f->thread, NULL, s_fake_serve, f), 0);
}

static void s_fake_stop(fake_server *f)
{
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

static int s_get_fake(const char *reply, size_t reply_len, int timeout_ms, int *status, char *body,
                      size_t bodylen, char *err, size_t errlen)
{
    fake_server f;
    s_fake_start(&f, reply, reply_len);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/x", f.port);
    int rc = http_get(url, timeout_ms, status, body, bodylen, err, errlen);
    s_fake_stop(&f);
    return rc;
}

START_TEST(test_client_against_bad_servers)
{
    char body[64], err[256];
    int status = 0;

    static const char ok10[] = "HTTP/1.0 503 Service Unavailable\r\nContent-Type: x\r\n\r\ndown";
    ck_assert_int_eq(
        s_get_fake(ok10, sizeof ok10 - 1, 2000, &status, body, sizeof body, err, sizeof err), 0);
    ck_assert_int_eq(status, 503);
    ck_assert_str_eq(body, "down");

    static const char garbage[] = "HELLO THERE\r\n\r\nbody";
    ck_assert_int_eq(
        s_get_fake(garbage, sizeof garbage - 1, 2000, &status, body, sizeof body, err, sizeof err),
        -1);
    ck_assert_msg(strstr(err, "malformed status line"), "%s", err);

    ck_assert_int_eq(s_get_fake("", 0, 2000, &status, body, sizeof body, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "closed before a response"), "%s", err);

    static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Len";
    ck_assert_int_eq(
        s_get_fake(cut, sizeof cut - 1, 2000, &status, body, sizeof body, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "ended inside its headers"), "%s", err);

    /* A peer that accepts and never answers: the total timeout holds. */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(s_get_fake(NULL, 0, 300, &status, body, sizeof body, err, sizeof err), -1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_msg(strstr(err, "timed out"), "%s", err);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    /* The fake server holds the socket 1.5 s; http_get must have given up long before
     * (the join above adds that wait, so compare against it). */
    ck_assert_int_lt(ms, 1500 + 800);
}
END_TEST

START_TEST(test_client_bad_urls)
{
    char body[16], err[256];
    int status = 0;
    ck_assert_int_eq(
        http_get("https://127.0.0.1:1/", 500, &status, body, sizeof body, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "only http://"));
    ck_assert_int_eq(http_get("http://", 500, &status, body, sizeof body, err, sizeof err), -1);
    ck_assert_int_eq(
        http_get("http://127.0.0.1:99999/", 500, &status, body, sizeof body, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "bad port"));
    ck_assert_int_eq(
        http_get("http://127.0.0.1:80x/", 500, &status, body, sizeof body, err, sizeof err), -1);
    ck_assert_int_eq(http_get("http://[::1/", 500, &status, body, sizeof body, err, sizeof err),
                     -1);
    ck_assert_int_eq(
        http_get("http://127.0.0.1:8080/a b", 500, &status, body, sizeof body, err, sizeof err),
        -1);
    ck_assert_int_eq(http_get("http://no-such-host.invalid:8080/", 2000, &status, body, sizeof body,
                              err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot resolve"));
}
END_TEST

/* ---- http_parse_listen --------------------------------------------------------------------- */

START_TEST(test_parse_listen_valid)
{
    char host[64], err[256];
    unsigned port = 1;
    ck_assert_int_eq(http_parse_listen("127.0.0.1:8080", host, sizeof host, &port, err, sizeof err),
                     0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 8080);
    ck_assert_int_eq(http_parse_listen("0.0.0.0:80", host, sizeof host, &port, err, sizeof err), 0);
    ck_assert_str_eq(host, "0.0.0.0");
    ck_assert_uint_eq(port, 80);
    ck_assert_int_eq(http_parse_listen("[::1]:8080", host, sizeof host, &port, err, sizeof err), 0);
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(port, 8080);
    ck_assert_int_eq(http_parse_listen("[::]:9000", host, sizeof host, &port, err, sizeof err), 0);
    ck_assert_str_eq(host, "::");
    ck_assert_int_eq(http_parse_listen(":8080", host, sizeof host, &port, err, sizeof err), 0);
    ck_assert_str_eq(host, "");
    ck_assert_uint_eq(port, 8080);
    ck_assert_int_eq(http_parse_listen("127.0.0.1:0", host, sizeof host, &port, err, sizeof err),
                     0);
    ck_assert_uint_eq(port, 0);
    ck_assert_int_eq(
        http_parse_listen("127.0.0.1:65535", host, sizeof host, &port, err, sizeof err), 0);
    ck_assert_uint_eq(port, 65535);
    /* Names are resolved to a numeric address, IPv4 first. */
    ck_assert_int_eq(http_parse_listen("localhost:8080", host, sizeof host, &port, err, sizeof err),
                     0);
    ck_assert_msg(strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0, "%s", host);
    ck_assert_uint_eq(port, 8080);
}
END_TEST

START_TEST(test_parse_listen_invalid)
{
    static const struct {
        const char *spec;
        const char *says;
    } bad[] = {
        {"127.0.0.1:65536", "port"},
        {"127.0.0.1:-1", "port"},
        {"127.0.0.1:80x", "port"},
        {"127.0.0.1:123456", "port"},
        {"127.0.0.1:", "missing port"},
        {"127.0.0.1", "missing port"},
        {"8080", "missing port"},
        {"", "missing port"},
        {"::1:8080", "brackets"},
        {"[::1]8080", "]"},
        {"[::1]", "]"},
        {"[::1", "]"},
        {"[]:80", "empty"},
        {"[localhost]:80", "IPv6"},
        {"[127.0.0.1]:80", "IPv6"},
        {"[zz::zz]:80", "resolve"},
        {"a b:80", "host"},
        {"http://x:80", "scheme"},
        {"no-such-host.invalid:80", "resolve"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64] = "unchanged", err[256] = "";
        unsigned port = 0;
        ck_assert_msg(http_parse_listen(bad[i].spec, host, sizeof host, &port, err, sizeof err) ==
                          -1,
                      "'%s' accepted", bad[i].spec);
        ck_assert_msg(strstr(err, bad[i].says), "'%s': err '%s' lacks '%s'", bad[i].spec, err,
                      bad[i].says);
        ck_assert_msg(strstr(err, bad[i].spec), "'%s': err '%s' does not quote it", bad[i].spec,
                      err);
    }
    char tiny[4], err[256];
    unsigned port;
    ck_assert_int_eq(http_parse_listen("127.0.0.1:80", tiny, sizeof tiny, &port, err, sizeof err),
                     -1);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("http");
    TCase *server = tcase_create("server");
    tcase_add_checked_fixture(server, s_setup, s_teardown);
    tcase_set_timeout(server, 30);
    tcase_add_test(server, test_get_health_with_client);
    tcase_add_test(server, test_get_health_raw_socket);
    tcase_add_test(server, test_not_found_and_broken_handler);
    tcase_add_test(server, test_other_methods_get_405);
    tcase_add_test(server, test_get_with_body_refused);
    tcase_add_test(server, test_oversized_header_refused_quietly);
    tcase_add_test(server, test_head);
    tcase_add_test(server, test_concurrent_clients);
    tcase_add_test(server, test_connection_limit_per_ip);
    tcase_add_test(server, test_slow_client_dropped);
    tcase_add_test(server, test_byte_at_a_time_client_dropped);
    tcase_add_test(server, test_client_body_truncated_to_buffer);
    tcase_add_test(server, test_stop_then_connection_refused);
    tcase_add_test(server, test_start_errors);
    suite_add_tcase(s, server);

    TCase *other = tcase_create("standalone");
    tcase_set_timeout(other, 30);
    tcase_add_test(other, test_ipv6_loopback);
    tcase_add_test(other, test_all_interfaces);
    tcase_add_test(other, test_client_against_bad_servers);
    tcase_add_test(other, test_client_bad_urls);
    tcase_add_test(other, test_parse_listen_valid);
    tcase_add_test(other, test_parse_listen_invalid);
    suite_add_tcase(s, other);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
