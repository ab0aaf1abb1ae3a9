/* fuzz_http: arbitrary bytes sent as a request to the health server over loopback. */
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_handler(void *ctx, const char *path, http_response *out)
{
    (void)ctx;
    out->status = strcmp(path, "/health") == 0 ? 200 : 404;
    out->content_type = "text/plain";
    out->body = strdup("ok\n");
    out->len = out->body ? 3 : 0;
}

/* libFuzzer calls the harness many times in one process: the server is started
 * once and lives until the process ends (this harness is test code, not the host). */
static http_server *s_server(void)
{
    static http_server *srv;
    if (!srv) {
        char err[300];
        srv = http_server_start("127.0.0.1:0", s_handler, NULL, err, sizeof err);
        if (!srv)
            abort();
    }
    return srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_server *srv = s_server();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(srv))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        size_t off = 0;
        while (off < size) {
            ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        shutdown(fd, SHUT_WR);
        char buf[4096];
        struct pollfd p = {fd, POLLIN, 0};
        /* Read until the answer's headers are complete, the server closes, or 100 ms
         * pass (an incomplete request gets no answer: the server waits for more). */
        size_t got = 0;
        char head[8192];
        ssize_t n;
        while (poll(&p, 1, 100) > 0 && (n = recv(fd, buf, sizeof buf, 0)) > 0) {
            size_t take = (size_t)n < sizeof head - 1 - got ? (size_t)n : sizeof head - 1 - got;
            memcpy(head + got, buf, take);
            got += take;
            head[got] = '\0';
            if (memmem(head, got, "\r\n\r\n", 4))
                break;
        }
    }
    close(fd);
    return 0;
}
