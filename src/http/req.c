/* The request as handlers see it: preparing it from the buffer, starting it on the pool, the
 * handler chain, the edge rules, responses, accessors and parameters.
 *
 * A request's life: the I/O thread prepares it (head terminated in place, path decoded), routes
 * it, creates its source and submits it to the pool with that token. A pool thread runs the
 * middleware chain and the handler, then answers for the handler if it did not (by the token's
 * reason). The pool's done callback records the outcome and hands the request back to its I/O
 * thread. A request whose token fires while it is queued never runs: the pool completes it on
 * the canceling thread; if the client is still there (a timeout, a shutdown) the I/O thread
 * answers it. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "internal.h"

/* ---- the arena ------------------------------------------------------------------------------ */

void *ct_http_req_alloc(ct_http_req_t *req, size_t size)
{
    size = (size + 15) & ~(size_t) 15;
    if (size <= ARENA_INLINE - req->inline_used) {
        void *p = req->inline_mem + req->inline_used;
        req->inline_used += size;
        return p;
    }
    struct arena_chunk *c = req->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > 8192 ? size : 8192;
        if (!(c = ct__malloc(sizeof(*c) + cap)))
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = req->chunks;
        req->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

void ct__http_req_init(ct_http_req_t *req)
{
    req->inline_used = 0;
    req->chunks = NULL;
}

void ct__http_req_reset(ct_http_req_t *req)
{
    while (req->chunks) {
        struct arena_chunk *c = req->chunks;
        req->chunks = c->next;
        ct__free(c);
    }
    ct__free(req->body_owned);
    ct_source_free(req->src);
    ct_http_server_t *srv = req->srv;
    struct conn *conn = req->conn;
    /* Everything up to the inline arena starts over; the arena's bytes need no clearing. */
    memset(req, 0, offsetof(ct_http_req_t, inline_mem));
    req->srv = srv;
    req->conn = conn;
}

/* ---- preparing ------------------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode %XX in place, except %2F, which stays encoded so that it cannot make a segment
 * boundary appear (ASP.NET does the same). Returns -400 for a malformed escape or a NUL. */
static int decode_path(char *p)
{
    char *out = p;
    for (char *in = p; *in; in++) {
        if (*in != '%') {
            *out++ = *in;
            continue;
        }
        int hi = hexval(in[1]), lo = hi < 0 ? -1 : hexval(in[2]);
        if (lo < 0)
            return -400;
        int v = hi * 16 + lo;
        if (v == 0)
            return -400;
        if (v == '/') {
            memmove(out, in, 3);
            out += 3;
        } else {
            *out++ = (char) v;
        }
        in += 2;
    }
    *out = '\0';
    return 0;
}

int ct__http_req_prepare(ct_http_req_t *req, char *buf, int head_len)
{
    struct ct__http_head *h = &req->head;
    /* The buffer may have moved since the first parse (the body grew it): parse again, at the
     * same cost as a copy, and terminate the strings in place. */
    int rc = ct__http_parse_head(buf, (size_t) head_len, &req->srv->limits, h);
    if (rc <= 0)
        return rc < 0 ? rc : -400;
    char *method = (char *) h->method, *target = (char *) h->target;
    method[h->method_len] = '\0';
    target[h->target_len] = '\0';
    for (unsigned i = 0; i < h->nfields; i++) {
        ((char *) h->fields[i].name)[h->fields[i].name_len] = '\0';
        ((char *) h->fields[i].value)[h->fields[i].value_len] = '\0';
    }
    req->method = method;
    char *path = target, *query = NULL;
    if (target[0] != '/' && strcmp(target, "*") != 0) {
        /* absolute-form (RFC 9112 3.2.2): scheme "://" authority [path] ["?" query]. The path may
         * be missing ("http://host?x=1"); it is then "/". */
        char *scheme = strstr(target, "://");
        if (!scheme)
            return -400; /* authority-form (CONNECT) is not served */
        char *rest = scheme + 3 + strcspn(scheme + 3, "/?");
        if (*rest == '/') {
            path = rest;
        } else {
            if (*rest == '?')
                query = rest + 1;
            if (!(path = ct_http_req_alloc(req, 2)))
                return -503;
            strcpy(path, "/");
        }
    }
    char *q = query ? NULL : strchr(path, '?');
    if (q) {
        *q = '\0';
        query = q + 1;
    }
    req->query = query ? query : "";
    if (decode_path(path) < 0)
        return -400;
    req->path = path;
    req->keep_alive = h->keep_alive;
    if (h->body == CT__HTTP_BODY_LENGTH) {
        req->body = buf + head_len;
        req->body_len = (size_t) h->content_length;
    } else if (h->body == CT__HTTP_BODY_CHUNKED) {
        req->body = req->body_owned;
    } else {
        req->body = "";
        req->body_len = 0;
    }
    return 0;
}

/* ---- the token ------------------------------------------------------------------------------ */

/* Let the I/O thread check on a running request whose token fired, once. The token can fire
 * while the pool thread is just starting the handler: on_fired() stores the time then reads the
 * state, ct__http_run() stores the state then reads the time, both sequentially consistent, so
 * at least one of them sees the other and `watching` makes it exactly one. */
static void watch_once(ct_http_req_t *req)
{
    if (__atomic_exchange_n(&req->watching, 1, __ATOMIC_SEQ_CST))
        return;
    struct io *io = req->conn->io;
    pthread_mutex_lock(&io->mu);
    req->fired_next = io->fired;
    io->fired = req;
    pthread_mutex_unlock(&io->mu);
    ct__http_io_wake(io);
}

/* The server's own callback on every request's token. Runs on the canceling thread. */
static void on_fired(void *arg, const ct_token_t *tok)
{
    ct_http_req_t *req = arg;
    (void) tok;
    __atomic_store_n(&req->t_fired, ct_now_ns(), __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&req->state, __ATOMIC_SEQ_CST) == REQ_RUNNING)
        watch_once(req);
}

static void run_here(ct_http_req_t *req);

static const ct_http_timeout_t *policy(const ct_http_req_t *req)
{
    const ct_http_timeout_t *t = req->route ? &req->route->timeout : NULL;
    return t && t->ms ? t : &req->srv->o.timeout;
}

/* The caller's time left, from its CT-Timeout-Ms header (sent by ct-curl, see ct/curl.h): a
 * caller that gives up after N ms gains nothing from work done here after that.
 * Returns: N (0..CT_HTTP_DEADLINE_MAX_MS); -1 no such header; -2 not a number in that range. */
static int64_t caller_timeout_ms(const ct_http_req_t *req)
{
    const char *v = ct_http_req_header(req, CT_HTTP_DEADLINE_HEADER);
    if (!v)
        return -1;
    int64_t n = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9' && p - v < 9; p++)
        n = n * 10 + (*p - '0');
    return (p == v || *p || n > CT_HTTP_DEADLINE_MAX_MS) ? -2 : n;
}

/* I/O thread: route the request and hand it to the pool, or answer it here. Returns 0 if a
 * handler will run (or has been canceled), -1 if the request was answered here. */
int ct__http_req_start(ct_http_req_t *req)
{
    ct_http_server_t *s = req->srv;
    int m = ct__http_match(s, req);
    if (m != MATCH_OK) {
        req->t_start = req->t_end = ct_now_ns();
        ct__http_answer_now(req->conn, m == MATCH_NONE ? 404 : 405,
                            m == MATCH_NONE ? "not_found" : "method_not_allowed", NULL);
        ct__http_observe(req);
        return -1;
    }
    const ct_http_timeout_t *t = policy(req);
    /* The earlier of the route's timeout and the caller's wins; both use the route's policy
     * when they fire, through the one timer on the request's source. */
    int64_t caller = caller_timeout_ms(req);
    if (caller == -2) {
        req->t_start = req->t_end = ct_now_ns();
        ct__http_answer_now(req->conn, 400, "invalid_header",
                            "CT-Timeout-Ms must be a whole number of milliseconds, 0..86400000");
        ct__http_observe(req);
        return -1;
    }
    /* The caller's clock was already running when the head arrived: count from then. */
    req->timeout_ms = t->ms > 0 ? t->ms : -1;
    int64_t arm_ms = req->timeout_ms;
    if (caller >= 0) {
        int64_t left = (req->t_head + caller * 1000000 - ct_now_ns()) / 1000000;
        left = left < 0 ? 0 : left;
        if (arm_ms < 0 || left < arm_ms) {
            req->timeout_ms = caller;
            arm_ms = left;
        }
    }
    if (arm_ms == 0) {
        /* No time left: the caller has given up or is about to. Answer as a request timed out
         * in the queue is answered, without running the handler. */
        req->t_start = req->t_end = ct_now_ns();
        ct__http_answer_now(req->conn, t->status ? t->status : 408, "timeout",
                            "no time left (CT-Timeout-Ms)");
        ct__http_observe(req);
        return -1;
    }
    int rc = ct_source_new(&req->src);
    if (rc == 0 && arm_ms > 0)
        rc = ct_source_cancel_after(req->src, arm_ms);
    if (rc < 0) {
        ct__http_answer_now(req->conn, 503, "overloaded", "out of memory");
        ct__http_observe(req);
        return -1;
    }
    if (req->route->on_io_thread) {
        run_here(req);
        return -1;
    }
    __atomic_store_n(&req->state, REQ_QUEUED, __ATOMIC_RELAXED);
    ct_token_register(ct_source_token(req->src), &req->fired_reg, on_fired, req);
    rc = ct_pool_submit(s->pool, &req->task, ct__http_run, ct__http_finish, req,
                        ct_source_token(req->src));
    if (rc < 0) {
        ct_token_unregister(&req->fired_reg);
        ct__http_answer_now(req->conn, 503, "overloaded",
                            rc == -EAGAIN ? "too many requests waiting" : "shutting down");
        ct__http_observe(req);
        return -1;
    }
    return 0;
}

/* ---- running -------------------------------------------------------------------------------- */

int ct_http_next(ct_http_req_t *req)
{
    ct_http_server_t *s = req->srv;
    if (req->chain < s->nmw) {
        struct middleware *mw = &s->mw[req->chain++];
        return mw->fn(req, mw->arg);
    }
    if (req->chain == s->nmw) {
        req->chain++;
        return req->route->fn(req, req->route->arg);
    }
    return -EINVAL; /* called twice from the same layer */
}

/* Answer for a handler that did not, by what happened to its token. */
static void edge(ct_http_req_t *req, int rc)
{
    if (req->streaming) {
        if (rc >= 0 && !req->broken && !ct_token_canceled(ct_source_token(req->src)))
            ct_http_stream_end(req);
        else
            req->broken = true; /* never finish a stream cut short: close instead */
        return;
    }
    if (req->status || req->broken)
        return;
    const ct_token_t *tok = ct_source_token(req->src);
    switch (ct_token_reason(tok)) {
    case CT_CLIENT_ABORTED:
        return; /* nobody to answer */
    case CT_TIMEOUT: {
        const ct_http_timeout_t *t = policy(req);
        if (t->on_timeout)
            t->on_timeout(req, t->on_timeout_arg);
        if (!req->status) {
            char msg[96];
            snprintf(msg, sizeof(msg), "the request did not complete within %" PRId64 " ms",
                     req->timeout_ms);
            ct__http_write_simple(req, t->status ? t->status : 408, "timeout", msg, false);
        }
        return;
    }
    case CT_SHUTDOWN:
        ct__http_write_simple(req, 503, "shutting_down", "the server is shutting down", true);
        return;
    case CT_REASON_NONE:
        break;
    default:
        ct__http_write_simple(req, 503, "canceled", ct_token_detail(tok), false);
        return;
    }
    if (rc < 0)
        ct__http_write_simple(req, 500, "internal_error", ct_strerror(rc), false);
    else
        ct_http_respond(req, 204, NULL, NULL, 0);
}

static int run_chain(ct_http_req_t *req)
{
    req->chain = 0;
    int rc = ct_http_next(req);
    req->result = rc;
    edge(req, rc);
    return rc;
}

int ct__http_run(void *arg, const ct_token_t *tok)
{
    ct_http_req_t *req = arg;
    (void) tok;
    req->t_start = ct_now_ns();
    __atomic_store_n(&req->state, REQ_RUNNING, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&req->t_fired, __ATOMIC_SEQ_CST))
        watch_once(req); /* it fired while queued: the handler may ignore it */
    return run_chain(req);
}

/* An on_io_thread route: no queue, no hand-off, nothing to watch (this thread is the watcher). */
static void run_here(ct_http_req_t *req)
{
    req->t_start = ct_now_ns();
    req->on_io = true;
    __atomic_store_n(&req->state, REQ_RUNNING, __ATOMIC_RELAXED);
    run_chain(req);
    __atomic_store_n(&req->state, REQ_DONE, __ATOMIC_RELAXED);
    req->t_end = ct_now_ns();
    ct__http_observe(req);
}

/* The pool's done callback: any thread. */
void ct__http_finish(void *arg, int result)
{
    ct_http_req_t *req = arg;
    ct_http_server_t *s = req->srv;
    (void) result;
    bool ran = __atomic_load_n(&req->state, __ATOMIC_ACQUIRE) == REQ_RUNNING;
    ct_token_unregister(&req->fired_reg);
    __atomic_store_n(&req->state, REQ_DONE, __ATOMIC_RELEASE);
    req->t_end = ct_now_ns();
    if (!ran) {
        /* Canceled while queued: it never started. The I/O thread answers if the client is
         * still there (a timeout or a shutdown); a client that left gets nothing. */
        int reason = ct_token_reason(ct_source_token(req->src));
        if (reason == CT_CLIENT_ABORTED)
            __atomic_add_fetch(&s->abandoned, 1, __ATOMIC_RELAXED);
        else if (reason == CT_TIMEOUT)
            req->pending = policy(req)->status ? policy(req)->status : 408;
        else
            req->pending = 503;
    }
    ct__http_observe(req);
    ct__http_request_done(req);
}

/* I/O thread: answer a request that was canceled in the queue, now that it is back. */
void ct__http_req_answer_pending(ct_http_req_t *req)
{
    if (!req->pending || req->conn->peer_gone)
        return;
    if (req->pending == 503)
        ct__http_answer_now(req->conn, 503, "shutting_down", "the server is shutting down");
    else
        ct__http_answer_now(req->conn, req->pending, "timeout",
                            "the request timed out before it started");
}

/* ---- responses ------------------------------------------------------------------------------ */

const char *ct__http_reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 300   ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Error"
                              : "Server Error";
    }
}

/* "Date: ...\r\n", formatted once a second per thread. */
static const char *date_line(void)
{
    static _Thread_local char line[48];
    static _Thread_local time_t when;
    time_t now = time(NULL);
    if (now != when) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        when = now;
    }
    return line;
}

/* A HEAD request gets the status line and headers of the GET response, and no body. */
static bool is_head(const ct_http_req_t *req)
{
    return req->method && strcmp(req->method, "HEAD") == 0;
}

static bool must_close(ct_http_req_t *req)
{
    return !req->keep_alive || ct_token_canceled(ct_source_token(req->srv->stopping)) ||
           ct_token_reason(ct_source_token(req->src)) == CT_SHUTDOWN;
}

/* Format the status line and headers into `buf` (size `cap`). Returns the length, or -1 if it
 * does not fit. */
static int format_head(ct_http_req_t *req, char *buf, size_t cap, int status,
                       const char *content_type, long long length, bool close)
{
    int n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\n%s", status, ct__http_reason_phrase(status),
                     date_line());
    if (content_type && n >= 0 && (size_t) n < cap)
        n += snprintf(buf + n, cap - (size_t) n, "Content-Type: %s\r\n", content_type);
    if (n >= 0 && (size_t) n < cap)
        n += length >= 0 ? snprintf(buf + n, cap - (size_t) n, "Content-Length: %lld\r\n", length)
                         : snprintf(buf + n, cap - (size_t) n, "Transfer-Encoding: chunked\r\n");
    if (close && n >= 0 && (size_t) n < cap)
        n += snprintf(buf + n, cap - (size_t) n, "Connection: close\r\n");
    for (struct resp_header *h = req->resp_headers; h && n >= 0 && (size_t) n < cap; h = h->next)
        n += snprintf(buf + n, cap - (size_t) n, "%s: %s\r\n", h->name, h->value);
    if (n >= 0 && (size_t) n < cap)
        n += snprintf(buf + n, cap - (size_t) n, "\r\n");
    return n >= 0 && (size_t) n < cap ? n : -1;
}

static int send_iov(ct_http_req_t *req, struct iovec *iov, int n)
{
    if (req->on_io) {
        int rc = ct__http_conn_send(req->conn, iov, n);
        if (rc < 0) {
            req->broken = true;
            return rc;
        }
        for (int i = 0; i < n; i++)
            req->bytes_out += iov[i].iov_len;
        return 0;
    }
    int64_t deadline = ct_deadline_after(req->srv->o.write_timeout_ms);
    ssize_t rc = ct_writev(req->conn->fd, iov, n, NULL, deadline);
    if (rc < 0) {
        req->broken = true;
        return (int) rc;
    }
    req->bytes_out += (uint64_t) rc;
    return 0;
}

static int start(ct_http_req_t *req, int status, const char *content_type, long long length,
                 const void *body, size_t body_len)
{
    if (req->status)
        return -EALREADY;
    if (status < 100 || status > 599)
        return -EINVAL;
    bool close = must_close(req);
    char small[1024], *head = small;
    int n = format_head(req, small, sizeof(small), status, content_type, length, close);
    if (n < 0) {
        size_t cap = 1024;
        for (struct resp_header *h = req->resp_headers; h; h = h->next)
            cap += strlen(h->name) + strlen(h->value) + 4;
        if (!(head = ct_http_req_alloc(req, cap)))
            return -ENOMEM;
        n = format_head(req, head, cap, status, content_type, length, close);
    }
    req->status = status;
    req->close_after = close;
    /* A complete response is final from the moment it is written: a client that closes once it
     * has read it must not count as an abort, even if it is quicker than this thread. */
    if (length >= 0)
        __atomic_store_n(&req->responded, 1, __ATOMIC_RELEASE);
    struct iovec iov[2] = {{head, (size_t) n}, {(void *) body, body_len}};
    return send_iov(req, iov, body_len && !is_head(req) ? 2 : 1);
}

int ct_http_respond(ct_http_req_t *req, int status, const char *content_type, const void *body,
                    size_t len)
{
    if (!req || (len && !body))
        return -EINVAL;
    return start(req, status, content_type, (long long) len, body, len);
}

/* Append `s` to `out` as a JSON string body (without quotes). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char) c;
        } else if (c < 0x20) {
            n += (size_t) snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char) c;
        }
    }
    out[n] = '\0';
    return n;
}

static int error_body(char *out, size_t cap, int status, const char *code, const char *message)
{
    char c[64], m[256];
    json_escape(c, sizeof(c), code ? code : "error");
    json_escape(m, sizeof(m), message ? message : ct__http_reason_phrase(status));
    return snprintf(out, cap, "{\"error\":\"%s\",\"message\":\"%s\",\"status\":%d}", c, m, status);
}

int ct_http_respond_error(ct_http_req_t *req, int status, const char *code, const char *message)
{
    char body[512];
    int n = error_body(body, sizeof(body), status, code, message);
    return ct_http_respond(req, status, "application/json", body, (size_t) n);
}

int ct__http_write_simple(ct_http_req_t *req, int status, const char *code, const char *message,
                          bool close)
{
    if (close)
        req->keep_alive = false;
    return ct_http_respond_error(req, status, code, message);
}

/* I/O thread: a small answer, written without blocking; if it does not all fit in the socket
 * buffer the connection is closed. */
void ct__http_answer_now(struct conn *c, int status, const char *code, const char *message)
{
    ct_http_req_t *req = &c->req;
    char body[512], head[512];
    int blen = error_body(body, sizeof(body), status, code, message);
    bool close = status >= 400 && status != 404 && status != 405;
    close = close || !req->keep_alive || c->io->draining;
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.1 %d %s\r\n%sContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n%s\r\n",
                        status, ct__http_reason_phrase(status), date_line(), blen,
                        close ? "Connection: close\r\n" : "");
    struct iovec iov[2] = {{head, (size_t) hlen}, {body, (size_t) blen}};
    if (is_head(req))
        blen = 0; /* Content-Length says what a GET would get; no body follows */
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = blen ? 2 : 1};
    ssize_t n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    req->status = status;
    req->close_after = close;
    if (n != hlen + blen)
        req->broken = true;
    else
        req->bytes_out += (uint64_t) n;
}

int ct_http_stream_begin(ct_http_req_t *req, int status, const char *content_type)
{
    if (!req)
        return -EINVAL;
    int rc = start(req, status, content_type, -1, NULL, 0);
    if (rc == 0)
        req->streaming = true;
    return rc;
}

int ct_http_stream_write(ct_http_req_t *req, const void *data, size_t len)
{
    if (!req || !req->streaming || (len && !data))
        return -EINVAL;
    if (ct_token_canceled(ct_source_token(req->src))) {
        req->broken = true;
        return -ECANCELED;
    }
    if (len == 0 || is_head(req))
        return 0;
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    struct iovec iov[3] = {{size, (size_t) n}, {(void *) data, len}, {(void *) "\r\n", 2}};
    return send_iov(req, iov, 3);
}

int ct_http_stream_end(ct_http_req_t *req)
{
    if (!req || !req->streaming)
        return -EINVAL;
    req->streaming = false;
    __atomic_store_n(&req->responded, 1, __ATOMIC_RELEASE);
    if (is_head(req))
        return 0;
    struct iovec iov = {(void *) "0\r\n\r\n", 5};
    return send_iov(req, &iov, 1);
}

int ct_http_req_status(const ct_http_req_t *req)
{
    return req->status;
}

int ct_http_set_header(ct_http_req_t *req, const char *name, const char *value)
{
    if (!req || !name || !value || !*name)
        return -EINVAL;
    if (req->status)
        return -EALREADY;
    for (const char *p = name; *p; p++)
        if (*p <= ' ' || *p == ':' || *p == 0x7f)
            return -EINVAL;
    for (const char *p = value; *p; p++)
        if ((*p < ' ' && *p != '\t') || *p == 0x7f)
            return -EINVAL; /* CR or LF would let a value write its own headers */
    struct resp_header *h = ct_http_req_alloc(req, sizeof(*h));
    char *n = ct_http_req_alloc(req, strlen(name) + 1),
         *v = ct_http_req_alloc(req, strlen(value) + 1);
    if (!h || !n || !v)
        return -ENOMEM;
    strcpy(n, name);
    strcpy(v, value);
    h->name = n;
    h->value = v;
    h->next = req->resp_headers;
    req->resp_headers = h;
    return 0;
}

/* ---- accessors ------------------------------------------------------------------------------ */

const ct_token_t *ct_http_req_token(const ct_http_req_t *req)
{
    return ct_source_token(req->src);
}

const char *ct_http_req_method(const ct_http_req_t *req)
{
    return req->method;
}

const char *ct_http_req_path(const ct_http_req_t *req)
{
    return req->path;
}

const char *ct_http_req_query(const ct_http_req_t *req)
{
    return req->query;
}

const char *ct_http_req_route(const ct_http_req_t *req)
{
    return req->route ? req->route->pattern : NULL;
}

const char *ct_http_req_header(const ct_http_req_t *req, const char *name)
{
    for (unsigned i = 0; i < req->head.nfields; i++)
        if (strcasecmp(req->head.fields[i].name, name) == 0)
            return req->head.fields[i].value;
    return NULL;
}

const void *ct_http_req_body(const ct_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body;
}

const char *ct_http_req_param(const ct_http_req_t *req, const char *name)
{
    for (unsigned i = 0; i < req->nparams; i++)
        if (strcasecmp(req->params[i][0], name) == 0)
            return req->params[i][1];
    return NULL;
}

int64_t ct_http_req_elapsed_ms(const ct_http_req_t *req)
{
    return (ct_now_ns() - req->t_head) / 1000000;
}

/* Decode a query component into the arena: %XX and '+' for a space. */
static char *decode_component(ct_http_req_t *req, const char *s, size_t len)
{
    char *out = ct_http_req_alloc(req, len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '+') {
            out[n++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 &&
                   (lo = hexval(s[i + 2])) >= 0) {
            out[n++] = (char) (hi * 16 + lo);
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    return out;
}

const char *ct_http_req_query_param(ct_http_req_t *req, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *p = req->query; *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t) (end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t) (eq - p) : len;
        if (klen == nlen && strncasecmp(p, name, nlen) == 0)
            return eq ? decode_component(req, eq + 1, len - klen - 1) : "";
        if (!end)
            break;
        p = end + 1;
    }
    return NULL;
}

/* Parse a whole decimal integer. */
static bool parse_int(const char *s, int64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || s[0] == ' ' || s[0] == '+')
        return false;
    *out = v;
    return true;
}

static int bad_param(ct_http_req_t *req, const char *name, int64_t min, int64_t max)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "%s must be an integer from %" PRId64 " to %" PRId64, name, min,
             max);
    char body[512], n[96], m[256];
    json_escape(n, sizeof(n), name);
    json_escape(m, sizeof(m), msg);
    int len = snprintf(body, sizeof(body),
                       "{\"error\":\"invalid_parameter\",\"parameter\":\"%s\",\"message\":\"%s\","
                       "\"status\":400}",
                       n, m);
    ct_http_respond(req, 400, "application/json", body, (size_t) len);
    return -EINVAL;
}

int ct_http_req_query_int(ct_http_req_t *req, const char *name, int64_t def, int64_t min,
                          int64_t max, int64_t *out)
{
    const char *v = ct_http_req_query_param(req, name);
    if (!v) {
        *out = def;
        return 0;
    }
    int64_t x;
    if (!parse_int(v, &x) || x < min || x > max)
        return bad_param(req, name, min, max);
    *out = x;
    return 0;
}

int ct_http_req_param_int(ct_http_req_t *req, const char *name, int64_t min, int64_t max,
                          int64_t *out)
{
    int64_t x;
    if (!parse_int(ct_http_req_param(req, name), &x) || x < min || x > max)
        return bad_param(req, name, min, max);
    *out = x;
    return 0;
}
