/* The server: options, the listening socket, the I/O threads and their loop, shutdown.
 *
 * Each I/O thread has its own epoll set holding the listening socket (EPOLLEXCLUSIVE: one thread
 * is woken per new connection), its connections, and an eventfd through which other threads hand
 * back finished requests. Deadlines (a head that takes too long to arrive, an idle keep-alive
 * connection) are kept in FIFO lists per thread, oldest first, because every connection on a
 * list has the same timeout: the loop's epoll timeout is the earliest head of a list. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "internal.h"

static char listen_tag; /* epoll data for the listening socket */

/* ---- options -------------------------------------------------------------------------------- */

#define DEF(field, value)                                                                          \
    do {                                                                                           \
        if (!o->field)                                                                             \
            o->field = (value);                                                                    \
    } while (0)

static bool in_range(int64_t v, int64_t lo, int64_t hi)
{
    return v >= lo && v <= hi;
}

/* As many connections as the process may open files, less a reserve for the application's own
 * (databases, logs, files it writes). */
enum { FD_RESERVE = 64 };

static unsigned default_max_connections(void)
{
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur == RLIM_INFINITY)
        return 1000000;
    rlim_t n =
        nofile.rlim_cur > FD_RESERVE * 2 ? nofile.rlim_cur - FD_RESERVE : nofile.rlim_cur / 2;
    return n < 1 ? 1 : n > 1000000 ? 1000000 : (unsigned) n;
}

static int apply_defaults(ct_http_options_t *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    DEF(listen, "127.0.0.1:8080");
    DEF(io_threads, cpus > 0 ? (unsigned) cpus : 1);
    DEF(max_connections, default_max_connections());
    DEF(max_request_line, 8192);
    DEF(max_header_bytes, 16384);
    DEF(max_headers, 100);
    DEF(max_body, 1 << 20);
    DEF(header_timeout_ms, 10000);
    DEF(idle_timeout_ms, 60000);
    DEF(write_timeout_ms, 30000);
    DEF(drain_timeout_ms, 10000);
    DEF(cancel_grace_ms, 250);
    DEF(log_fd, 2);
    if (!in_range(o->io_threads, 1, 64) || !in_range(o->max_connections, 1, 1000000) ||
        !in_range(o->max_request_line, 64, 65536) || !in_range(o->max_header_bytes, 256, 1048576) ||
        !in_range(o->max_headers, 1, CT__HTTP_MAX_HEADERS) || o->max_body > ((uint64_t) 1 << 30) ||
        !in_range(o->header_timeout_ms, 1, 3600000) || !in_range(o->idle_timeout_ms, 1, 3600000) ||
        !in_range(o->write_timeout_ms, 1, 3600000) || !in_range(o->drain_timeout_ms, 0, 3600000) ||
        !in_range(o->cancel_grace_ms, 1, 3600000) ||
        !in_range(o->access_log, CT_HTTP_LOG_TEXT, CT_HTTP_LOG_OFF) || o->log_fd < 0)
        return -EINVAL;
    if (o->timeout.ms < CT_HTTP_NO_TIMEOUT || o->timeout.ms > CT_TIMEOUT_MAX_MS ||
        (o->timeout.status && !in_range(o->timeout.status, 400, 599)))
        return -EINVAL;
    return 0;
}

/* "host:port" or "[v6]:port" into a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t) (end - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t) (end - s - 1));
        host[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t) (colon - s) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || colon[1] == '\0' || port < 0 || port > 65535)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *) ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ss;
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t) port);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t) port);
        *len = sizeof(*in6);
        return 0;
    }
    return -EINVAL;
}

/* ---- creating and freeing ------------------------------------------------------------------- */

int ct_http_server_new(ct_http_server_t **out, const ct_http_options_t *opts)
{
    if (!out)
        return -EINVAL;
    ct_http_options_t o = opts ? *opts : (ct_http_options_t){0};
    int rc = apply_defaults(&o);
    if (rc < 0)
        return rc;
    ct_http_server_t *s = ct__calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->o = o;
    s->lfd = -1;
    if ((rc = parse_listen(o.listen, &s->addr, &s->addrlen)) < 0)
        goto fail;
    s->o.listen = NULL; /* the caller's string need not outlive this call */
    s->limits =
        (struct ct__http_limits){o.max_request_line, o.max_header_bytes, o.max_headers, o.max_body};
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if ((rc = ct_source_new(&s->stopping)) < 0)
        goto fail;
    if ((rc = ct__http_metrics_new(s)) < 0)
        goto fail;
    if (o.pool) {
        s->pool = o.pool;
    } else {
        ct_pool_options_t po = {.min_threads = 2, .max_threads = 256, .queue_max = 65536};
        if ((rc = ct_pool_new(&s->pool, &po)) < 0)
            goto fail;
        s->own_pool = true;
    }
    *out = s;
    return 0;
fail:
    ct_http_server_free(s);
    return rc;
}

static void io_destroy(struct io *io)
{
    if (io->epfd >= 0)
        close(io->epfd);
    if (io->wakefd >= 0)
        close(io->wakefd);
    if (io->spare_fd >= 0)
        close(io->spare_fd);
    pthread_mutex_destroy(&io->mu);
}

static void tell_all(ct_http_server_t *s, bool *(*flag)(struct io *) );
static bool *flag_quit(struct io *io)
{
    return &io->quit;
}

void ct_http_server_free(ct_http_server_t *s)
{
    if (!s)
        return;
    ct_http_server_stop(s);
    if (s->started && !s->joined) {
        /* Handlers ignored their tokens past the end of stop(). Their memory is their
         * connection's: wait for them (the pool's drain, or the in-flight count for a pool
         * that is not ours), let the I/O threads take them back, then end the threads. */
        if (s->own_pool) {
            ct_pool_free(s->pool, CT_POOL_DRAIN);
            s->own_pool = false;
        }
        pthread_mutex_lock(&s->mu);
        while (__atomic_load_n(&s->in_flight, __ATOMIC_ACQUIRE) > 0)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        tell_all(s, flag_quit);
        for (unsigned i = 0; i < s->nio; i++)
            pthread_join(s->io[i].thread, NULL);
    }
    if (s->own_pool)
        ct_pool_free(s->pool, CT_POOL_DRAIN);
    if (s->io) {
        for (unsigned i = 0; i < s->nio; i++)
            io_destroy(&s->io[i]);
        ct__free(s->io);
    }
    if (s->lfd >= 0)
        close(s->lfd);
    ct__http_routes_free(s);
    ct__http_metrics_free(s);
    ct_source_free(s->stopping);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    ct__free(s);
}

int ct_http_server_addr(const ct_http_server_t *s, struct sockaddr_storage *addr, socklen_t *len)
{
    if (!s || !addr || !len)
        return -EINVAL;
    *addr = s->addr;
    *len = s->addrlen;
    return 0;
}

const ct_token_t *ct_http_server_stopping(const ct_http_server_t *s)
{
    return ct_source_token(s->stopping);
}

/* ---- the I/O loop --------------------------------------------------------------------------- */

void ct__http_io_wake(struct io *io)
{
    eventfd_write(io->wakefd, 1);
}

/* Any thread: a request is finished (handled, answered, or canceled before it started). */
void ct__http_request_done(ct_http_req_t *req)
{
    struct io *io = req->conn->io;
    pthread_mutex_lock(&io->mu);
    bool first = !io->done; /* a thread that finds the queue non-empty knows a wake is coming */
    req->done_next = io->done;
    io->done = req;
    pthread_mutex_unlock(&io->mu);
    if (first)
        ct__http_io_wake(io);
}

/* A connection the server will not serve: told so, then closed. The socket is new and its send
 * buffer empty, so the write does not block; a client that has already sent its request may see
 * a reset instead, which is the best that can be done for it. */
static void refuse(ct_http_server_t *s, int fd)
{
#define REFUSAL_BODY                                                                               \
    "{\"error\":\"overloaded\",\"message\":\"too many connections\",\"status\":503}"
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 68\r\n"
                               "Connection: close\r\n\r\n" REFUSAL_BODY;
    _Static_assert(sizeof(REFUSAL_BODY) - 1 == 68, "the refusal's Content-Length");
#undef REFUSAL_BODY
    send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    close(fd);
    __atomic_add_fetch(&s->rejected, 1, __ATOMIC_RELAXED);
}

/* Out of file descriptors, a pending connection cannot be accepted and the listening socket
 * stays readable: the thread would spin. Give up the spare descriptor, accept the connection
 * to refuse it, take the spare back. */
static void refuse_without_fd(struct io *io)
{
    ct_http_server_t *s = io->srv;
    if (io->spare_fd >= 0) {
        close(io->spare_fd);
        io->spare_fd = -1;
    }
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        refuse(s, fd);
    io->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void accept_some(struct io *io)
{
    ct_http_server_t *s = io->srv;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                refuse_without_fd(io);
                continue;
            }
            return; /* EAGAIN, or the socket was shut down */
        }
        unsigned open = __atomic_add_fetch(&s->open_connections, 1, __ATOMIC_RELAXED);
        if (open > s->o.max_connections) {
            __atomic_sub_fetch(&s->open_connections, 1, __ATOMIC_RELAXED);
            refuse(s, fd);
            continue;
        }
        __atomic_add_fetch(&s->connections, 1, __ATOMIC_RELAXED);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ct__http_conn_accepted(io, fd);
    }
}

/* Requests whose token fired while they ran: report the ones still running after the grace. */
static int64_t check_watch(struct io *io, int64_t now)
{
    ct_http_server_t *s = io->srv;
    int64_t grace = s->o.cancel_grace_ms * 1000000, next = INT64_MAX;
    for (ct_http_req_t **p = &io->watch; *p;) {
        ct_http_req_t *r = *p;
        int64_t due = __atomic_load_n(&r->t_fired, __ATOMIC_ACQUIRE) + grace;
        if (now < due) {
            next = due < next ? due : next;
            p = &r->fired_next;
            continue;
        }
        *p = r->fired_next;
        r->fired_next = NULL;
        if (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == REQ_RUNNING && !r->warned) {
            r->warned = true;
            __atomic_add_fetch(&s->cancel_ignored, 1, __ATOMIC_RELAXED);
            ct__http_warn(s,
                          "handler still running %lld ms after its token fired (%s): %s %s "
                          "(route %s)",
                          (long long) ((now - (due - grace)) / 1000000),
                          ct_reason_name(ct_token_reason(ct_source_token(r->src))), r->method,
                          r->path, r->route ? r->route->pattern : "-");
        }
    }
    return next;
}

static void unwatch(struct io *io, ct_http_req_t *req)
{
    for (ct_http_req_t **p = &io->watch; *p; p = &(*p)->fired_next)
        if (*p == req) {
            *p = req->fired_next;
            req->fired_next = NULL;
            return;
        }
}

static void cancel_busy(struct io *io)
{
    for (struct conn *c = io->busy.head; c; c = c->next)
        ct_source_cancel(c->req.src, CT_SHUTDOWN, "server stopping: drain period over");
}

/* Take back what other threads handed over, and act on what the server asked. */
static void drain_queues(struct io *io)
{
    eventfd_t v;
    eventfd_read(io->wakefd, &v);
    pthread_mutex_lock(&io->mu);
    ct_http_req_t *done = io->done, *fired = io->fired;
    io->done = io->fired = NULL;
    bool stopping = io->stopping, cancel_all = io->cancel_all;
    io->cancel_all = false;
    pthread_mutex_unlock(&io->mu);

    /* Fired first: a request that fired and finished shows up in both, fired first. */
    while (fired) {
        ct_http_req_t *r = fired;
        fired = r->fired_next;
        r->fired_next = io->watch;
        io->watch = r;
    }
    while (done) {
        ct_http_req_t *r = done;
        done = r->done_next;
        unwatch(io, r);
        ct__http_conn_complete(r->conn);
    }
    if (stopping && !io->draining) {
        /* Stop accepting, and close every connection that has no request running. */
        io->draining = true;
        epoll_ctl(io->epfd, EPOLL_CTL_DEL, io->srv->lfd, NULL);
        while (io->idle.head)
            ct__http_conn_close(io->idle.head);
        while (io->reading.head)
            ct__http_conn_close(io->reading.head);
    }
    if (cancel_all) {
        cancel_busy(io);
        ct__http_conn_abort_writes(io);
    }
}

static int timeout_ms(struct io *io, int64_t now, int64_t watch_next)
{
    int64_t next = watch_next;
    if (io->reading.head && io->reading.head->deadline < next)
        next = io->reading.head->deadline;
    if (io->idle.head && io->idle.head->deadline < next)
        next = io->idle.head->deadline;
    if (io->writing.head && io->writing.head->deadline < next)
        next = io->writing.head->deadline;
    if (next == INT64_MAX)
        return -1;
    int64_t ms = (next - now + 999999) / 1000000;
    return ms < 0 ? 0 : ms > 60000 ? 60000 : (int) ms;
}

static void *io_main(void *arg)
{
    struct io *io = arg;
    struct epoll_event ev[128];
    int64_t watch_next = INT64_MAX;
    for (;;) {
        int n = epoll_wait(io->epfd, ev, 128, timeout_ms(io, ct_now_ns(), watch_next));
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &listen_tag)
                accept_some(io);
            else if (p == io)
                drain_queues(io);
            else
                ct__http_conn_event(p, ev[i].events);
        }
        int64_t now = ct_now_ns();
        ct__http_conn_expire(io, now);
        watch_next = check_watch(io, now);
        ct__http_conn_reap(io);
        pthread_mutex_lock(&io->mu);
        bool quit = io->quit;
        pthread_mutex_unlock(&io->mu);
        if (quit)
            break;
    }
    /* Connections without a running request; the server only quits once none is running. */
    ct__http_conn_abort_writes(io);
    while (io->idle.head)
        ct__http_conn_close(io->idle.head);
    while (io->reading.head)
        ct__http_conn_close(io->reading.head);
    ct__http_conn_reap(io);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------------- */

static int listen_socket(ct_http_server_t *s)
{
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *) &s->addr, s->addrlen) < 0 || listen(fd, 4096) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    s->addrlen = sizeof(s->addr);
    getsockname(fd, (struct sockaddr *) &s->addr, &s->addrlen);
    s->lfd = fd;
    return 0;
}

static int io_init(ct_http_server_t *s, struct io *io)
{
    io->srv = s;
    pthread_mutex_init(&io->mu, NULL);
    io->epfd = epoll_create1(EPOLL_CLOEXEC);
    io->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    io->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (io->epfd < 0 || io->wakefd < 0 || io->spare_fd < 0)
        return -errno;
    struct epoll_event wake = {.events = EPOLLIN, .data.ptr = io};
    struct epoll_event lis = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listen_tag};
    if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->wakefd, &wake) < 0 ||
        epoll_ctl(io->epfd, EPOLL_CTL_ADD, s->lfd, &lis) < 0)
        return -errno;
    return 0;
}

int ct_http_server_start(ct_http_server_t *s)
{
    if (!s)
        return -EINVAL;
    if (s->started)
        return -EBUSY;
    ct_http_route_options_t here = {.on_io_thread = true}; /* seen even when the pool is full */
    int rc = ct_http_route(s, "GET", "/metrics", ct__http_serve_metrics, NULL, &here);
    if (rc < 0 && rc != -EINVAL) /* -EINVAL: the application serves /metrics itself */
        return rc;
    if ((rc = ct__http_metrics_start(s)) < 0)
        return rc;
    if ((rc = listen_socket(s)) < 0)
        return rc;
    s->io = ct__calloc(s->o.io_threads, sizeof(*s->io));
    if (!s->io)
        return -ENOMEM;
    for (unsigned i = 0; i < s->o.io_threads; i++) {
        s->io[i].epfd = s->io[i].wakefd = s->io[i].spare_fd = -1;
        s->nio++;
        if ((rc = io_init(s, &s->io[i])) < 0)
            return rc;
    }
    for (unsigned i = 0; i < s->nio; i++) {
        if ((rc = ct__thread_start(&s->io[i].thread, io_main, &s->io[i])) < 0) {
            s->nio = i; /* the started ones are stopped by free */
            s->started = true;
            return rc;
        }
    }
    s->started = true;
    return 0;
}

/* Wait until no request is in flight, or `deadline` (ct_now_ns). Returns the number left. */
static unsigned wait_in_flight(ct_http_server_t *s, int64_t deadline)
{
    pthread_mutex_lock(&s->mu);
    unsigned left;
    while ((left = __atomic_load_n(&s->in_flight, __ATOMIC_ACQUIRE)) > 0) {
        int64_t now = ct_now_ns();
        if (now >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait = deadline - now < 50000000 ? deadline - now : 50000000;
        ts.tv_nsec += wait % 1000000000;
        ts.tv_sec += wait / 1000000000 + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return left;
}

static void tell_all(ct_http_server_t *s, bool *(*flag)(struct io *) )
{
    for (unsigned i = 0; i < s->nio; i++) {
        struct io *io = &s->io[i];
        pthread_mutex_lock(&io->mu);
        *flag(io) = true;
        pthread_mutex_unlock(&io->mu);
        ct__http_io_wake(io);
    }
}

static bool *flag_stopping(struct io *io)
{
    return &io->stopping;
}

static bool *flag_cancel_all(struct io *io)
{
    return &io->cancel_all;
}

int ct_http_server_stop(ct_http_server_t *s)
{
    if (!s || !s->started || s->stopped)
        return 0;
    __atomic_store_n(&s->stopped, true, __ATOMIC_RELEASE); /* read by the I/O threads */
    ct_source_cancel(s->stopping, CT_SHUTDOWN, "server stopping");
    shutdown(s->lfd, SHUT_RD); /* refuses new connections at once */
    tell_all(s, flag_stopping);
    int64_t drain = s->o.drain_timeout_ms * 1000000;
    unsigned left = wait_in_flight(s, ct_now_ns() + drain);
    if (left > 0) {
        /* The drain period is over: what still runs is canceled with CT_SHUTDOWN. */
        tell_all(s, flag_cancel_all);
        left = wait_in_flight(s, ct_now_ns() + drain);
        if (left > 0) {
            ct__http_warn(s, "stop: %u handler(s) still running %lld ms after CT_SHUTDOWN", left,
                          (long long) s->o.drain_timeout_ms);
            return -ETIMEDOUT; /* ct_http_server_free() waits for them */
        }
    }
    tell_all(s, flag_quit);
    for (unsigned i = 0; i < s->nio; i++)
        pthread_join(s->io[i].thread, NULL);
    s->joined = true;
    return 0;
}

void ct_http_server_stats(ct_http_server_t *s, ct_http_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->connections = __atomic_load_n(&s->connections, __ATOMIC_RELAXED);
    out->rejected = __atomic_load_n(&s->rejected, __ATOMIC_RELAXED);
    out->abandoned_before_start = __atomic_load_n(&s->abandoned, __ATOMIC_RELAXED);
    out->cancel_ignored = __atomic_load_n(&s->cancel_ignored, __ATOMIC_RELAXED);
    out->in_flight = __atomic_load_n(&s->in_flight, __ATOMIC_RELAXED);
    out->open_connections = __atomic_load_n(&s->open_connections, __ATOMIC_RELAXED);
    ct__http_metrics_stats(s, out);
}
