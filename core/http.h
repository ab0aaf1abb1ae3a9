/* http: the bounded GET-only server behind /health and /metrics, and the
 * small client used by `edgewatch health`. */
#ifndef EW_CORE_HTTP_H
#define EW_CORE_HTTP_H

#include <stddef.h>

typedef struct http_server http_server;

/* What a handler returns: a status, a content type and a malloc'd body the
 * server frees. */
typedef struct http_response {
    int status;
    const char *content_type;
    char *body;
    size_t len;
} http_response;

/* Renders the response for `path` ("/health", "/metrics", anything else). Called
 * on the server's thread for GET and HEAD only; must be thread-safe. */
typedef void (*http_handler)(void *ctx, const char *path, http_response *out);

/* Parses a listen address: "127.0.0.1:8080", "0.0.0.0:8080", "[::1]:8080",
 * "localhost:8080", ":8080" (all interfaces). Fills host (numeric, "" = any) and
 * port. Returns 0 or -1 with err. "off" is handled by the caller. */
int http_parse_listen(const char *spec, char *host, size_t hostlen, unsigned *port, char *err,
                      size_t errlen);

/* Starts serving on its own thread. Other methods get 405 with Allow: GET, HEAD;
 * bodies, oversized headers and slow clients are refused; at most 16 connections.
 * Returns NULL with err (e.g. address in use) on failure. */
http_server *http_server_start(const char *listen, http_handler handler, void *ctx, char *err,
                               size_t errlen);
/* The port actually bound (useful with port 0). */
unsigned http_server_port(const http_server *srv);
/* Stops the server and frees it; sets *srv to NULL. */
void http_server_stop(http_server **srv);

/* GETs `url` (http://host:port/path, IPv4/IPv6/name) with a total timeout. Fills
 * *status and up to bodylen-1 bytes of body (NUL-terminated). Returns 0 when a
 * response was read, -1 with err otherwise. */
int http_get(const char *url, int timeout_ms, int *status, char *body, size_t bodylen, char *err,
             size_t errlen);

#endif
