/* A connection, on its I/O thread: read, parse, dispatch, take the request back, keep alive or
 * close.
 *
 * The bytes a client sends stay in one buffer. The head is parsed where it lies (once to learn
 * the framing, once more when the whole request is in, because growing the buffer moves it), a
 * Content-Length body is used in place, a chunked one is decoded into its own buffer. While the
 * request is dispatched the buffer is never moved: the I/O thread only appends to it what the
 * client sends meanwhile (a pipelined next request), and stops reading when it is full. So the
 * handler can read the head and body without copies or locks.
 *
 * While dispatched, the connection is watched for the client leaving: EPOLLRDHUP (FIN), EPOLLHUP
 * and EPOLLERR (RST, errors), and a read that returns 0. Any of them cancels the request's
 * source with CT_CLIENT_ABORTED. A half-close (FIN) after a complete request counts as leaving:
 * an HTTP/1.1 client that waits for an answer does not shut down its sending side, and the ones
 * that go away without reading the answer (curl --max-time, a browser tab closed, a proxy that
 * gave up) all start with a FIN. Go's net/http makes the same choice. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "internal.h"

#define BUF_MIN  4096
#define BUF_KEEP (16 * 1024) /* a connection that read a big request shrinks back after it */

/* ---- deadline lists ------------------------------------------------------------------------- */

static void list_push(struct conn_list *l, struct conn *c, int64_t deadline)
{
    c->deadline = deadline;
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    c->list = l;
}

void ct__http_list_remove(struct conn *c)
{
    struct conn_list *l = c->list;
    if (!l)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = NULL;
}

static void set_interest(struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(c->io->epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->events = events;
}

static void drop_interest(struct conn *c)
{
    if (c->events) {
        epoll_ctl(c->io->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->events = 0;
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

void ct__http_conn_accepted(struct io *io, int fd)
{
    ct_http_server_t *s = io->srv;
    struct conn *c = ct__calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        __atomic_sub_fetch(&s->open_connections, 1, __ATOMIC_RELAXED);
        return;
    }
    c->fd = fd;
    c->io = io;
    c->state = C_READING;
    c->req.srv = s;
    c->req.conn = c;
    ct__http_req_init(&c->req);
    io->nconns++;
    set_interest(c, EPOLLIN | EPOLLRDHUP);
    list_push(&io->reading, c, ct_now_ns() + s->o.header_timeout_ms * 1000000);
}

void ct__http_conn_close(struct conn *c)
{
    if (c->state == C_CLOSED)
        return;
    struct io *io = c->io;
    ct__http_list_remove(c);
    drop_interest(c);
    close(c->fd);
    c->state = C_CLOSED;
    io->nconns--;
    __atomic_sub_fetch(&io->srv->open_connections, 1, __ATOMIC_RELAXED);
    /* Events for it may still be in this turn's batch: free it at the end of the turn. */
    c->next = io->graveyard;
    io->graveyard = c;
}

void ct__http_conn_reap(struct io *io)
{
    while (io->graveyard) {
        struct conn *c = io->graveyard;
        io->graveyard = c->next;
        ct__http_req_reset(&c->req);
        ct__free(c->buf);
        ct__free(c->out);
        ct__free(c);
    }
}

/* ---- reading -------------------------------------------------------------------------------- */

/* Make room for at least one more byte, up to `limit` bytes in all. Returns false at the limit
 * or out of memory. */
static bool grow(struct conn *c, size_t limit)
{
    if (c->len < c->cap)
        return true;
    if (c->cap >= limit)
        return false;
    size_t cap = c->cap ? c->cap * 2 : BUF_MIN;
    if (cap > limit)
        cap = limit;
    char *buf = ct__realloc(c->buf, cap);
    if (!buf)
        return false;
    c->buf = buf;
    c->cap = cap;
    return true;
}

/* How much the buffer may hold while the current request is read. */
static size_t read_limit(struct conn *c)
{
    ct_http_server_t *s = c->io->srv;
    if (c->head_len <= 0)
        return s->o.max_header_bytes + 1; /* one more, so that the parser sees the excess */
    if (c->req.head.body == CT__HTTP_BODY_LENGTH)
        return (size_t) c->head_len + (size_t) c->req.head.content_length;
    /* Chunked: the raw chunks (framing included) may exceed the body a little. */
    return (size_t) c->head_len + (size_t) s->o.max_body + s->o.max_header_bytes + 4096;
}

/* Read what is available. Returns 1 if bytes came, 0 if none (EAGAIN), -1 if the client closed
 * its side or the connection failed. */
static int read_some(struct conn *c, size_t limit)
{
    int got = 0;
    for (;;) {
        if (!grow(c, limit))
            return got; /* full: the parser decides what that means */
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t) n;
            got = 1;
            if ((size_t) n < c->cap - c->len + (size_t) n)
                return got; /* a short read: the socket is drained */
            continue;
        }
        if (n == 0)
            return -1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return got;
        return -1;
    }
}

static bool dispatch(struct conn *c);
static bool take_back(struct conn *c);
static void write_some(struct conn *c);

/* Answer an invalid request from this thread and close: its framing cannot be trusted. */
static void reject(struct conn *c, int status)
{
    __atomic_add_fetch(&c->io->srv->rejected, 1, __ATOMIC_RELAXED);
    const char *msg = status == 431   ? "request header fields too large"
                      : status == 413 ? "request body too large"
                      : status == 414 ? "request target too long"
                      : status == 505 ? "HTTP version not supported"
                      : status == 501 ? "transfer coding not implemented"
                      : status == 408 ? "request not received in time"
                                      : "malformed request";
    ct__http_answer_now(c, status, "bad_request", msg);
    c->req.t_end = ct_now_ns();
    ct__http_observe(&c->req); /* method and path are "-": the head could not be trusted */
    ct__http_conn_close(c);
}

/* Make what progress the buffer allows on the current request. Returns true if the request was
 * answered here and the next one is already in the buffer. */
static bool process_one(struct conn *c)
{
    ct_http_server_t *s = c->io->srv;
    ct_http_req_t *req = &c->req;
    if (c->head_len <= 0) {
        int rc = ct__http_parse_head(c->buf, c->len, &s->limits, &req->head);
        if (rc < 0) {
            reject(c, -rc);
            return false;
        }
        if (rc == 0) {
            if (c->len > s->o.max_header_bytes)
                reject(c, 431);
            return false;
        }
        c->head_len = rc;
        req->t_head = ct_now_ns();
        if (req->head.expect_continue && req->head.body != CT__HTTP_BODY_NONE &&
            c->len == (size_t) rc && !c->sent_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            c->sent_continue = true;
            send(c->fd, cont, sizeof(cont) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
    }
    size_t head = (size_t) c->head_len;
    switch (req->head.body) {
    case CT__HTTP_BODY_NONE:
        c->req_len = head;
        break;
    case CT__HTTP_BODY_LENGTH:
        if (c->len - head < req->head.content_length)
            return false;
        c->req_len = head + (size_t) req->head.content_length;
        break;
    case CT__HTTP_BODY_CHUNKED: {
        size_t avail = c->len - head - c->chunk_in;
        size_t need = req->body_len + avail; /* decoded bytes never outnumber raw ones */
        if (need > req->body_cap) {
            char *b = ct__realloc(req->body_owned, need ? need : 1);
            if (!b) {
                reject(c, 503);
                return false;
            }
            req->body_owned = b;
            req->body_cap = need;
        }
        bool done = false;
        long n = ct__http_chunked_decode(&c->chunked, c->buf + head + c->chunk_in, avail,
                                         req->body_owned, req->body_cap, &req->body_len, &s->limits,
                                         &done);
        if (n < 0) {
            reject(c, (int) -n);
            return false;
        }
        c->chunk_in += (size_t) n;
        if (!done)
            return false;
        c->req_len = head + c->chunk_in;
        break;
    }
    }
    return dispatch(c);
}

/* Pipelined requests answered on this thread are taken one after the other, not recursively. */
static void process(struct conn *c)
{
    while (process_one(c))
        ;
}

/* A request has begun on a keep-alive connection: its head now has a deadline. */
static void begin_request(struct conn *c)
{
    if (c->list == &c->io->idle) {
        ct__http_list_remove(c);
        list_push(&c->io->reading, c, ct_now_ns() + c->io->srv->o.header_timeout_ms * 1000000);
    }
}

static void abort_request(struct conn *c, const char *why)
{
    c->peer_gone = true;
    drop_interest(c); /* EPOLLHUP cannot be masked: stop watching altogether */
    /* A client that closes after reading the whole response has not aborted anything: the
     * handler may still be finishing up (logging, cleaning) and must not be told otherwise. */
    if (!__atomic_load_n(&c->req.responded, __ATOMIC_ACQUIRE))
        ct_source_cancel(c->req.src, CT_CLIENT_ABORTED, why);
}

void ct__http_conn_event(struct conn *c, uint32_t events)
{
    if (c->state == C_CLOSED)
        return;
    if (c->state == C_WRITING) {
        if (events & (EPOLLHUP | EPOLLERR))
            c->req.broken = true;
        write_some(c);
        return;
    }
    if (c->state == C_READING) {
        int rc = read_some(c, read_limit(c));
        if (c->len > 0)
            begin_request(c);
        process(c);
        if (c->state == C_READING && (rc < 0 || (events & (EPOLLHUP | EPOLLERR))))
            ct__http_conn_close(c); /* gone before its request was complete */
        return;
    }
    /* Dispatched: only the client leaving matters; a pipelined request is kept for later. */
    if ((events & EPOLLIN) && !c->stop_reading) {
        size_t limit = c->cap; /* never move the buffer under the running request */
        int rc = read_some(c, limit);
        if (rc < 0) {
            abort_request(c, "client closed the connection");
            return;
        }
        if (c->len == c->cap) {
            c->stop_reading = true;
            set_interest(c, EPOLLRDHUP);
        }
    }
    if (events & (EPOLLHUP | EPOLLERR))
        abort_request(c, "connection reset");
    else if (events & EPOLLRDHUP)
        abort_request(c, "client closed the connection");
}

/* ---- dispatching and taking back ------------------------------------------------------------- */

/* Returns true if the request was answered on this thread and the next one is already in the
 * buffer (see process()). */
static bool dispatch(struct conn *c)
{
    struct io *io = c->io;
    ct_http_server_t *s = io->srv;
    ct_http_req_t *req = &c->req;
    ct__http_list_remove(c);
    int rc = ct__http_req_prepare(req, c->buf, c->head_len);
    if (rc < 0) {
        reject(c, -rc);
        return false;
    }
    __atomic_add_fetch(&s->in_flight, 1, __ATOMIC_RELAXED);
    c->state = C_DISPATCHED;
    list_push(&io->busy, c, INT64_MAX);
    c->stop_reading = c->len == c->cap;
    set_interest(c, c->stop_reading ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP);
    if (ct__http_req_start(req) == 0)
        return false; /* on the pool */
    /* Answered here (404, 405, 503 when the pool is full, an on_io_thread route). */
    if (c->out_len) {
        ct__http_list_remove(c);
        c->state = C_WRITING;
        set_interest(c, EPOLLOUT);
        list_push(&io->writing, c, ct_now_ns() + s->o.write_timeout_ms * 1000000);
        return false;
    }
    return take_back(c);
}

/* ---- writing for on_io_thread handlers ------------------------------------------------------- */

#define OUT_MAX ((size_t) 64 << 20) /* one answer of an on_io_thread handler, at most */

/* Write what the socket takes now and keep the rest, in order, for write_some(). The handler
 * never waits: the connection reads no further request until its answer is out. */
int ct__http_conn_send(struct conn *c, const struct iovec *iov, int n)
{
    size_t total = 0, sent = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (c->out_len == 0) {
        struct msghdr mh = {.msg_iov = (struct iovec *) iov, .msg_iovlen = (size_t) n};
        ssize_t w;
        do
            w = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno != EAGAIN)
            return -errno;
        sent = w > 0 ? (size_t) w : 0;
        if (sent == total)
            return 0;
    }
    size_t need = c->out_len + total - sent;
    if (need > OUT_MAX)
        return -EMSGSIZE;
    char *out = ct__realloc(c->out, need);
    if (!out)
        return -ENOMEM;
    c->out = out;
    for (int i = 0; i < n; i++) {
        size_t skip = sent < iov[i].iov_len ? sent : iov[i].iov_len;
        sent -= skip;
        memcpy(c->out + c->out_len, (const char *) iov[i].iov_base + skip, iov[i].iov_len - skip);
        c->out_len += iov[i].iov_len - skip;
    }
    return 0;
}

static void write_some(struct conn *c)
{
    while (!c->req.broken && c->out_off < c->out_len) {
        ssize_t w =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w >= 0)
            c->out_off += (size_t) w;
        else if (errno == EAGAIN)
            return; /* EPOLLOUT brings us back */
        else if (errno != EINTR)
            c->req.broken = true;
    }
    ct__free(c->out); /* rare: most answers are written at once */
    c->out = NULL;
    c->out_len = c->out_off = 0;
    ct__http_conn_complete(c);
}

/* Stopping, after the drain period: clients that do not read their answers are closed. */
void ct__http_conn_abort_writes(struct io *io)
{
    while (io->writing.head) {
        io->writing.head->req.broken = true;
        write_some(io->writing.head);
    }
}

static void reset_for_next(struct conn *c)
{
    size_t rest = c->len - c->req_len;
    if (rest)
        memmove(c->buf, c->buf + c->req_len, rest);
    c->len = rest;
    c->req_len = 0;
    c->head_len = 0;
    c->chunk_in = 0;
    memset(&c->chunked, 0, sizeof(c->chunked));
    c->sent_continue = false;
    c->stop_reading = false;
    if (c->cap > BUF_KEEP && c->len <= BUF_MIN) {
        char *buf = ct__realloc(c->buf, BUF_MIN);
        if (buf) {
            c->buf = buf;
            c->cap = BUF_MIN;
        }
    }
}

/* The request is over: close the connection, or make it ready for the next request. Returns true
 * if that request is already in the buffer. */
static bool take_back(struct conn *c)
{
    struct io *io = c->io;
    ct_http_server_t *s = io->srv;
    ct_http_req_t *req = &c->req;
    ct__http_req_answer_pending(req); /* a request canceled in the queue by a timeout or stop */
    bool keep = !c->peer_gone && !req->broken && !req->close_after && req->keep_alive &&
                !io->draining && req->status != 0;
    ct__http_list_remove(c);
    ct__http_req_reset(req);
    if (__atomic_sub_fetch(&s->in_flight, 1, __ATOMIC_ACQ_REL) == 0 &&
        __atomic_load_n(&s->stopped, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    if (!keep) {
        ct__http_conn_close(c);
        return false;
    }
    reset_for_next(c);
    c->state = C_READING;
    set_interest(c, EPOLLIN | EPOLLRDHUP);
    if (c->len > 0) {
        list_push(&io->reading, c, ct_now_ns() + s->o.header_timeout_ms * 1000000);
        return true; /* a pipelined request is already here */
    }
    list_push(&io->idle, c, ct_now_ns() + s->o.idle_timeout_ms * 1000000);
    return false;
}

void ct__http_conn_complete(struct conn *c)
{
    if (take_back(c))
        process(c);
}

/* ---- deadlines ------------------------------------------------------------------------------ */

void ct__http_conn_expire(struct io *io, int64_t now)
{
    while (io->reading.head && io->reading.head->deadline <= now) {
        struct conn *c = io->reading.head;
        if (c->len > 0)
            reject(c, 408); /* a request began and did not arrive in time (slow-loris) */
        else
            ct__http_conn_close(c);
    }
    while (io->idle.head && io->idle.head->deadline <= now)
        ct__http_conn_close(io->idle.head);
    while (io->writing.head && io->writing.head->deadline <= now) {
        io->writing.head->req.broken = true; /* the client does not read: give up on it */
        write_some(io->writing.head);
    }
}
