/* Helpers shared by the HTTP benchmarks' clients (abort_storm, scale, idle_conns, wait_port):
 * loopback sockets, a small blocking GET, what /proc says about a server process, and the
 * servers' /work trace files. Clients only: nothing here links ct.
 *
 * Every wait here is bounded by a deadline; a function that polls says so. */
#ifndef CT_BENCH_HTTP_H
#define CT_BENCH_HTTP_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "../bench_util.h"

/* A server under test, as given on a harness's command line: "name,port,pid,trace,metric".
 * `metric` is the name of its in-flight gauge in GET /metrics. */
struct bh_server {
    char name[32];
    int port;
    pid_t pid;
    char trace[512];
    char metric[128];
};

static inline int bh_parse_server(const char *arg, struct bh_server *s)
{
    char buf[800];
    snprintf(buf, sizeof(buf), "%s", arg);
    char *save = NULL, *f[5];
    int n = 0;
    for (char *t = strtok_r(buf, ",", &save); t && n < 5; t = strtok_r(NULL, ",", &save))
        f[n++] = t;
    if (n != 5)
        return -EINVAL;
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", f[0]);
    s->port = atoi(f[1]);
    s->pid = (pid_t) atoi(f[2]);
    snprintf(s->trace, sizeof(s->trace), "%s", f[3]);
    snprintf(s->metric, sizeof(s->metric), "%s", f[4]);
    return s->port > 0 && s->port < 65536 && s->pid > 0 ? 0 : -EINVAL;
}

static inline void bh_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Let this process open `want` files; as root the hard limit is raised too. Returns the soft
 * limit now in force. */
static inline rlim_t bh_raise_nofile(rlim_t want)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) < 0)
        return 0;
    if (r.rlim_cur >= want)
        return r.rlim_cur;
    struct rlimit n = {want, r.rlim_max > want ? r.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &n) < 0) {
        n.rlim_cur = r.rlim_max;
        n.rlim_max = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &n);
    }
    getrlimit(RLIMIT_NOFILE, &r);
    return r.rlim_cur;
}

/* A non-blocking TCP socket connecting to 127.0.0.1:port. Returns the fd (the connection may
 * still be in progress: wait for it to be writable and check SO_ERROR) or -errno. */
static inline int bh_connect_nb(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* The error a non-blocking connect ended with (0 if it succeeded). */
static inline int bh_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

/* Close `fd` so that the peer sees a reset (RST) instead of a FIN. */
static inline void bh_close_rst(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

/* Wait up to `ms` for `events` on fd. Returns the revents, 0 on timeout. */
static inline int bh_poll1(int fd, short events, int ms)
{
    struct pollfd p = {fd, events, 0};
    int n;
    do {
        n = poll(&p, 1, ms);
    } while (n < 0 && errno == EINTR);
    return n > 0 ? p.revents : 0;
}

/* GET `path` from 127.0.0.1:port with "Connection: close", waiting at most timeout_ms in all.
 * The body (NUL-terminated) goes to out. Returns the status code, or -errno (-ETIMEDOUT). */
static inline int bh_http_get(int port, const char *path, char *out, size_t cap, int timeout_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t) timeout_ms * 1000000;
    int fd = bh_connect_nb(port);
    if (fd < 0)
        return fd;
    int rc = -ETIMEDOUT;
    if (!(bh_poll1(fd, POLLOUT, timeout_ms) & POLLOUT) || (rc = bh_connect_result(fd)) < 0) {
        close(fd);
        return rc < 0 ? rc : -ETIMEDOUT;
    }
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (send(fd, req, (size_t) n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -EIO;
    }
    size_t len = 0;
    char *buf = malloc(1 << 20);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    rc = -ETIMEDOUT;
    for (;;) {
        int left = (int) ((deadline - bench_now_ns()) / 1000000);
        if (left <= 0 || !(bh_poll1(fd, POLLIN, left) & (POLLIN | POLLHUP | POLLERR)))
            break;
        ssize_t got = recv(fd, buf + len, (1 << 20) - 1 - len, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0 || len + (size_t) got >= (1 << 20) - 1) {
            rc = got < 0 ? -errno : 0;
            break;
        }
        len += (size_t) got;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    if (len > 12 && sscanf(buf, "HTTP/1.%*d %d", &status) == 1 && status > 0) {
        const char *body = strstr(buf, "\r\n\r\n");
        body = body ? body + 4 : buf + len;
        snprintf(out, cap, "%s", body);
        rc = status;
    } else if (rc == 0) {
        rc = -EPROTO;
    }
    free(buf);
    return rc;
}

/* The value of the first sample of `name` (exact name, no labels) in a Prometheus text body,
 * or -1 if absent. */
static inline double bh_metric_value(const char *body, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return strtod(p + nl + 1, NULL);
    }
    return -1;
}

/* GET /metrics and read one gauge or counter. Returns -1 if it cannot be had. */
static inline double bh_get_metric(int port, const char *name, int timeout_ms)
{
    static char body[1 << 16];
    int st = bh_http_get(port, "/metrics", body, sizeof(body), timeout_ms);
    return st == 200 ? bh_metric_value(body, name) : -1;
}

/* Poll the server's in-flight gauge every 10 ms until it is at most `idle` (a scrape counts
 * itself on ct: 1), for at most max_ms. Returns the last value read (-1: never read). */
static inline double bh_wait_in_flight(const struct bh_server *s, double idle, int max_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t) max_ms * 1000000;
    double v = -1;
    while (bench_now_ns() < deadline) {
        v = bh_get_metric(s->port, s->metric, 2000);
        if (v >= 0 && v <= idle)
            return v;
        bh_sleep_ms(10);
    }
    return v;
}

/* ---- /proc ----------------------------------------------------------------------------------- */

/* CPU time (user + system, every thread, living or ended) of a process, in ns; -1 if gone.
 * The kernel counts it in clock ticks (10 ms here). */
static inline int64_t bh_proc_cpu_ns(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (int64_t) ((ut + st) * (1000000000ULL / (unsigned long long) hz));
}

/* A "Key:  N kB" field of /proc/PID/status (VmRSS, VmHWM, Threads), -1 if absent. */
static inline long bh_proc_status(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Poll the server's CPU time every 50 ms until it has not moved for quiet_ms (nothing left to
 * do), for at most max_ms. Returns true if it went quiet. */
static inline bool bh_wait_cpu_quiet(pid_t pid, int quiet_ms, int max_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t) max_ms * 1000000;
    int64_t last = bh_proc_cpu_ns(pid), since = bench_now_ns();
    while (bench_now_ns() < deadline) {
        bh_sleep_ms(50);
        int64_t c = bh_proc_cpu_ns(pid), now = bench_now_ns();
        if (c != last) {
            last = c;
            since = now;
        } else if (now - since >= (int64_t) quiet_ms * 1000000) {
            return true;
        }
    }
    return false;
}

/* ---- traces ---------------------------------------------------------------------------------- */

/* One /work request as the server traced it: "<id> <fired ns> <returned ns> <result>". */
struct bh_trace {
    int64_t fired, returned;
    int result;
    bool present;
};

/* Read the lines of `path` whose id is in [base, base + n) into t[id - base]. Returns the
 * number of such lines, or -errno. */
static inline int bh_trace_load(const char *path, int64_t base, int n, struct bh_trace *t)
{
    memset(t, 0, sizeof(*t) * (size_t) n);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    long long id, fired, ret;
    int result, found = 0;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%lld %lld %lld %d", &id, &fired, &ret, &result) != 4)
            continue;
        if (id < base || id >= base + n)
            continue;
        struct bh_trace *e = &t[id - base];
        if (!e->present)
            found++;
        *e = (struct bh_trace){fired, ret, result, true};
    }
    fclose(f);
    return found;
}

/* p50 and p99 of v[0..n) in ms (v in ns), sorting v; "-" when there is no sample. */
static inline void bh_fmt_pct(int64_t *v, int n, int p, char *out, size_t cap)
{
    if (n <= 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.3f", (double) bench_percentile(v, n, p) / 1e6);
}

#endif
