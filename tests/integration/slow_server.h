/* A deliberately slow HTTP/1.1 upstream on 127.0.0.1 for ct-curl's tests and benchmark: plain
 * sockets, one thread per connection, keep-alive. Depending on its mode it answers at once,
 * stalls after the first bytes of the body, trickles the body, or never answers; in every mode
 * it notices when the client closes the connection (FIN or RST) and records when, which is what
 * the tests assert on. No cmocka here: the benchmark uses it too. Failures abort. */
#ifndef CT_TEST_SLOW_SERVER_H
#define CT_TEST_SLOW_SERVER_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum slow_mode {
    SLOW_FULL,       /* answer 200 with the whole body and Content-Length, keep the connection */
    SLOW_FULL_NOLEN, /* answer 200 with the whole body, no length: ends by closing */
    SLOW_STALL,      /* send the head (Content-Length: 1 MB) and 100 body bytes, then nothing */
    SLOW_TRICKLE,    /* send the body in 100-byte pieces 5 ms apart, then finish normally */
    SLOW_SILENT,     /* read the request, never answer */
};

#define SLOW_MAX_CONNS 64
#define SLOW_HEAD_MAX  4096

struct slow_server {
    int lfd, port;
    enum slow_mode mode;
    size_t body_len;      /* SLOW_FULL*, SLOW_TRICKLE */
    sem_t requested;      /* posted when a request head has been read */
    sem_t body_started;   /* posted when the first body bytes have been sent */
    sem_t closed;         /* posted when the client closed a connection before the end */
    int accepted;         /* atomic: connections accepted */
    int64_t closed_at_ns; /* atomic: CLOCK_MONOTONIC time of the last close seen */
    int stop;             /* atomic */
    pthread_mutex_t lock; /* guards last_head */
    char last_head[SLOW_HEAD_MAX];
    pthread_t acceptor;
    pthread_t conns[SLOW_MAX_CONNS];
    int nconns; /* acceptor's only, read after it joined */
};

static inline int64_t slow_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline bool slow_stopping(struct slow_server *s)
{
    return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

static inline void slow_saw_close(struct slow_server *s)
{
    __atomic_store_n(&s->closed_at_ns, slow_now_ns(), __ATOMIC_RELEASE);
    sem_post(&s->closed);
}

/* Wait up to ms for fd to become readable; true if the peer closed (EOF or error) meanwhile,
 * reading and dropping anything else it sent. */
static inline bool slow_peer_closed(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return false;
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static inline bool slow_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t) w;
    }
    return true;
}

/* Read one request head. Returns 1 read, 0 the client closed, -1 stopping. */
static inline int slow_read_head(struct slow_server *s, int fd)
{
    char head[SLOW_HEAD_MAX];
    size_t len = 0;
    for (int i = 0; i < 20000; i++) { /* at most ~20 s of 1 ms polls, or a stop */
        if (slow_stopping(s))
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1) <= 0)
            continue;
        ssize_t n = recv(fd, head + len, sizeof(head) - 1 - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t) n;
        head[len] = '\0';
        if (strstr(head, "\r\n\r\n")) {
            pthread_mutex_lock(&s->lock);
            memcpy(s->last_head, head, len + 1);
            pthread_mutex_unlock(&s->lock);
            sem_post(&s->requested);
            return 1;
        }
        if (len == sizeof(head) - 1)
            return 0;
    }
    return -1;
}

/* Wait (bounded, ~30 s) for the client to close; record it. */
static inline void slow_wait_close(struct slow_server *s, int fd)
{
    for (int i = 0; i < 3000 && !slow_stopping(s); i++) {
        if (slow_peer_closed(fd, 10)) {
            slow_saw_close(s);
            return;
        }
    }
}

struct slow_conn {
    struct slow_server *s;
    int fd;
};

static void *slow_conn_main(void *arg)
{
    struct slow_conn c = *(struct slow_conn *) arg;
    free(arg);
    struct slow_server *s = c.s;
    char body[100];
    memset(body, 'x', sizeof(body));
    for (int req = 0; req < 1000; req++) {
        int r = slow_read_head(s, c.fd);
        if (r == 0 && req == 0)
            slow_saw_close(s); /* closed before sending anything */
        if (r <= 0)
            break;
        char head[256];
        if (s->mode == SLOW_SILENT) {
            slow_wait_close(s, c.fd);
            break;
        }
        if (s->mode == SLOW_STALL) {
            snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
            if (!slow_send(c.fd, head, strlen(head)) || !slow_send(c.fd, body, sizeof(body)))
                break;
            sem_post(&s->body_started);
            slow_wait_close(s, c.fd);
            break;
        }
        bool nolen = s->mode == SLOW_FULL_NOLEN;
        if (nolen)
            snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        else
            snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                     s->body_len);
        if (!slow_send(c.fd, head, strlen(head)))
            break;
        size_t sent = 0;
        bool ok = true;
        while (ok && sent < s->body_len) {
            size_t n = s->body_len - sent < sizeof(body) ? s->body_len - sent : sizeof(body);
            ok = slow_send(c.fd, body, n);
            sent += n;
            if (sent == n)
                sem_post(&s->body_started);
            if (ok && s->mode == SLOW_TRICKLE && sent < s->body_len && slow_peer_closed(c.fd, 5))
                ok = false;
        }
        if (!ok) {
            slow_saw_close(s);
            break;
        }
        if (nolen)
            break;
    }
    close(c.fd);
    return NULL;
}

static void *slow_acceptor(void *arg)
{
    struct slow_server *s = arg;
    while (!slow_stopping(s) && s->nconns < SLOW_MAX_CONNS) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        __atomic_fetch_add(&s->accepted, 1, __ATOMIC_ACQ_REL);
        struct slow_conn *c = malloc(sizeof(*c));
        if (!c)
            abort();
        c->s = s;
        c->fd = fd;
        if (pthread_create(&s->conns[s->nconns], NULL, slow_conn_main, c) != 0)
            abort();
        s->nconns++;
    }
    return NULL;
}

static inline void slow_start(struct slow_server *s, enum slow_mode mode, size_t body_len)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->body_len = body_len;
    sem_init(&s->requested, 0, 0);
    sem_init(&s->body_started, 0, 0);
    sem_init(&s->closed, 0, 0);
    pthread_mutex_init(&s->lock, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *) &a, sizeof(a)) != 0 ||
        listen(s->lfd, 128) != 0 || getsockname(s->lfd, (struct sockaddr *) &a, &len) != 0)
        abort();
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->acceptor, NULL, slow_acceptor, s) != 0)
        abort();
}

static inline void slow_stop(struct slow_server *s)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < s->nconns; i++)
        pthread_join(s->conns[i], NULL);
    close(s->lfd);
    sem_destroy(&s->requested);
    sem_destroy(&s->body_started);
    sem_destroy(&s->closed);
    pthread_mutex_destroy(&s->lock);
}

/* sem_wait with a bound; true if posted in time. */
static inline bool slow_sem_wait_ms(sem_t *sem, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    while (sem_timedwait(sem, &ts) != 0) {
        if (errno != EINTR)
            return false;
    }
    return true;
}

static inline int slow_accepted(struct slow_server *s)
{
    return __atomic_load_n(&s->accepted, __ATOMIC_ACQUIRE);
}

#endif
