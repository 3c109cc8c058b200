/* Helpers for ct-http's tests: a server on a loopback port with its log captured through a
 * pipe, and a raw-socket client that can send any bytes and leave by FIN or RST. */
#ifndef CT_TEST_HTTP_UTIL_H
#define CT_TEST_HTTP_UTIL_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ct/http.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "testutil.h"

struct tsrv {
    ct_http_server_t *s;
    int port;
    int log_r, log_w;
    char log[1 << 16];
    size_t loglen;
};

/* Start a server on 127.0.0.1 and a free port; `routes` adds routes and middleware. */
static inline void tsrv_start(struct tsrv *t, ct_http_options_t o,
                              void (*routes)(ct_http_server_t *, void *), void *arg)
{
    int p[2];
    assert_int_equal(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
    t->log_r = p[0];
    t->log_w = p[1];
    t->loglen = 0;
    t->log[0] = '\0';
    o.listen = "127.0.0.1:0";
    o.log_fd = t->log_w;
    assert_int_equal(0, ct_http_server_new(&t->s, &o));
    if (routes)
        routes(t->s, arg);
    assert_int_equal(0, ct_http_server_start(t->s));
    struct sockaddr_storage ss;
    socklen_t len;
    ct_http_server_addr(t->s, &ss, &len);
    t->port = ntohs(((struct sockaddr_in *) &ss)->sin_port);
}

static inline void tsrv_stop(struct tsrv *t)
{
    ct_http_server_free(t->s);
    close(t->log_r);
    close(t->log_w);
}

/* Read what the server logged so far; is `needle` in it? */
static inline bool tsrv_logged(struct tsrv *t, const char *needle)
{
    ssize_t n;
    while ((n = read(t->log_r, t->log + t->loglen, sizeof(t->log) - 1 - t->loglen)) > 0)
        t->loglen += (size_t) n;
    t->log[t->loglen] = '\0';
    return strstr(t->log, needle) != NULL;
}

static inline int tconnect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(0, connect(fd, (struct sockaddr *) &a, sizeof(a)));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static inline void tsend(int fd, const char *s)
{
    size_t len = strlen(s);
    assert_int_equal((ssize_t) len, ct_write(fd, s, len, NULL, ct_deadline_after(5000)));
}

/* Leave with a RST instead of a FIN. */
static inline void treset(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

struct tresp {
    int status; /* 0: nothing before the connection closed; -1: nothing before the bound */
    char head[4096];
    char body[1 << 16];
    size_t body_len;
    bool closed; /* the server closed the connection after it */
};

/* Read one response (Content-Length or chunked) within ms × scale. Bytes after it stay in
 * `pending` (pipelined responses). */
struct tconn {
    int fd;
    char pending[1 << 17];
    size_t npending;
};

static inline bool tfill(struct tconn *c, int64_t deadline)
{
    if (c->npending >= sizeof(c->pending))
        return false;
    ssize_t n =
        ct_read(c->fd, c->pending + c->npending, sizeof(c->pending) - c->npending, NULL, deadline);
    if (n <= 0)
        return false;
    c->npending += (size_t) n;
    return true;
}

static inline void tconsume(struct tconn *c, size_t n)
{
    memmove(c->pending, c->pending + n, c->npending - n);
    c->npending -= n;
}

static inline struct tresp tread(struct tconn *c, int ms)
{
    struct tresp r = {0};
    int64_t deadline = ct_deadline_after((int64_t) ms * ct_test_scale());
    char *end;
    for (;;) {
        c->pending[c->npending] = '\0';
        end = c->npending ? strstr(c->pending, "\r\n\r\n") : NULL;
        if (end)
            break;
        if (!tfill(c, deadline)) {
            r.status = ct_now_ms() >= deadline ? -1 : 0;
            r.closed = r.status == 0;
            return r;
        }
    }
    size_t hlen = (size_t) (end - c->pending) + 4;
    memcpy(r.head, c->pending, hlen < sizeof(r.head) - 1 ? hlen : sizeof(r.head) - 1);
    r.status = atoi(c->pending + 9);
    tconsume(c, hlen);
    const char *cl = strcasestr(r.head, "\r\nContent-Length:");
    if (cl) {
        size_t want = (size_t) atol(cl + 17);
        while (c->npending < want)
            if (!tfill(c, deadline))
                break;
        r.body_len = want < c->npending ? want : c->npending;
        memcpy(r.body, c->pending, r.body_len);
        tconsume(c, r.body_len);
    } else if (strcasestr(r.head, "\r\nTransfer-Encoding: chunked")) {
        for (;;) {
            c->pending[c->npending] = '\0';
            char *crlf = strstr(c->pending, "\r\n");
            if (!crlf) {
                if (!tfill(c, deadline))
                    return r;
                continue;
            }
            size_t size = strtoul(c->pending, NULL, 16), line = (size_t) (crlf - c->pending) + 2;
            while (c->npending < line + size + 2)
                if (!tfill(c, deadline))
                    return r;
            memcpy(r.body + r.body_len, c->pending + line, size);
            r.body_len += size;
            tconsume(c, line + size + 2);
            if (size == 0)
                break;
        }
    }
    r.body[r.body_len] = '\0';
    r.closed = strcasestr(r.head, "\r\nConnection: close") != NULL;
    return r;
}

/* One request on a new connection; returns its response. */
static inline struct tresp tget(int port, const char *request, int ms)
{
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(port);
    tsend(c->fd, request);
    struct tresp r = tread(c, ms);
    close(c->fd);
    free(c);
    return r;
}

/* Does the server close `fd` (read returns 0 or an error) within ms × scale? */
static inline bool tserver_closes(int fd, int ms)
{
    char b[4096];
    int64_t deadline = ct_deadline_after((int64_t) ms * ct_test_scale());
    for (;;) {
        ssize_t n = ct_read(fd, b, sizeof(b), NULL, deadline);
        if (n == 0 || n == -ECONNRESET)
            return true;
        if (n < 0)
            return false;
    }
}

#endif
