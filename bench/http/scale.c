/* scale: many slow requests held at once, a few of them abandoned.
 *
 * For each server in turn:
 *   1. its RSS (VmRSS) while idle;
 *   2. `count` connections (10 000), each sending "GET /work?ms=30000&mode=io&traceId=K" and then
 *      waiting; once the server's CPU has gone quiet, its RSS again -> memory per request. A
 *      request the server answers or closes while held was not accepted;
 *   3. `abort` of them (500), chosen at random, closed (FIN) one every `gap` µs while the rest
 *      are held: client close -> token fired from the server's trace, for those whose handler
 *      ran (a request abandoned while queued has no handler and no trace line: counted apart);
 *   4. `shut` more (500), chosen at random, half-closed (shutdown(SHUT_WR), a FIN), each waiting
 *      for the server to close its side: client FIN -> server's FIN seen by the client, for
 *      every one of them, queued or running (an upper bound on noticing the abort, observable
 *      from outside); and close -> token fired from the trace where there is one;
 *   5. everything closed; the server's in-flight gauge (GET /metrics) polled until it is back
 *      to 1 (the scrape itself): the time that takes, and RSS again.
 *
 * Every wait has a deadline; every loop is bounded by `count`.
 *
 *   scale --server NAME,PORT,PID,TRACE,METRIC [--server ...] [--count 10000] [--abort 500]
 *         [--shut 500] [--ms 30000] [--gap-us 2000] [--seed 1] [--id-base 5000000] */
#define _GNU_SOURCE
#include <sys/epoll.h>

#include "bench_http.h"

#define MAX_SERVERS 4

enum { S_NONE, S_HELD, S_EARLY, S_ABORTED, S_SHUT, S_SHUT_DONE, S_CLOSED };

struct conn {
    int fd, state;
    int64_t t_sent, t_close, t_eof;
};

struct opts {
    struct bh_server srv[MAX_SERVERS];
    int nsrv, count, abort_n, shut_n, ms, gap_us;
    unsigned seed;
    int64_t id_base;
};

static uint64_t rng;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Handle whatever the server did to held connections: an answer or a close before we gave up
 * means the request was not accepted (or finished early); a shut connection reaching EOF is
 * timed. Waits at most `us` microseconds for the first event. */
static int pump_us(int ep, struct conn *c, int64_t us)
{
    struct epoll_event ev[256];
    if (us < 0)
        us = 0;
    struct timespec ts = {(time_t) (us / 1000000), (long) (us % 1000000) * 1000};
    int n = epoll_pwait2(ep, ev, 256, &ts, NULL), early = 0;
    for (int i = 0; i < n; i++) {
        struct conn *x = &c[ev[i].data.u32];
        if (x->state == S_HELD) {
            x->state = S_EARLY;
            early++;
            epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
        } else if (x->state == S_SHUT) {
            char buf[512];
            ssize_t got;
            while ((got = recv(x->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
            }
            if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                x->t_eof = bench_now_ns();
                x->state = S_SHUT_DONE;
                epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
            }
        }
    }
    return early;
}

static int pump(int ep, struct conn *c, int ms)
{
    return pump_us(ep, c, (int64_t) ms * 1000);
}

/* Pump events until the server's CPU time has not moved for quiet_ms, at most max_ms. */
static bool settle(int ep, struct conn *c, pid_t pid, int quiet_ms, int max_ms, int *early)
{
    int64_t deadline = bench_now_ns() + (int64_t) max_ms * 1000000;
    int64_t last = bh_proc_cpu_ns(pid), since = bench_now_ns();
    while (bench_now_ns() < deadline) {
        *early += pump(ep, c, 50);
        int64_t cpu = bh_proc_cpu_ns(pid), now = bench_now_ns();
        if (cpu != last) {
            last = cpu;
            since = now;
        } else if (now - since >= (int64_t) quiet_ms * 1000000) {
            return true;
        }
    }
    return false;
}

/* Pick n distinct held connections at random and move them to `state`, calling act on each. */
static int pick(struct conn *c, int count, int n, int state, int gap_us, int ep, int *early,
                void (*act)(int ep, struct conn *x, int k))
{
    int *held = malloc(sizeof(int) * (size_t) count), nheld = 0, done = 0;
    for (int k = 0; k < count; k++)
        if (c[k].state == S_HELD)
            held[nheld++] = k;
    for (int i = 0; i < n && nheld > 0; i++) {
        int j = (int) (next_rand() % (uint64_t) nheld);
        int k = held[j];
        held[j] = held[--nheld];
        c[k].state = state;
        act(ep, &c[k], k);
        done++;
        /* Pacing, one abort at a time; meanwhile the events are taken as they come, so that a
         * half-closed connection's EOF is timed when it arrives. */
        int64_t next = bench_now_ns() + (int64_t) gap_us * 1000;
        do
            *early += pump_us(ep, c, (next - bench_now_ns()) / 1000);
        while (bench_now_ns() < next);
    }
    free(held);
    return done;
}

static void act_close(int ep, struct conn *x, int k)
{
    (void) k;
    epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
    x->t_close = bench_now_ns();
    close(x->fd);
    x->fd = -1;
}

static void act_shut(int ep, struct conn *x, int k)
{
    (void) ep;
    (void) k;
    x->t_close = bench_now_ns();
    shutdown(x->fd, SHUT_WR);
}

static void one(const struct opts *o, const struct bh_server *s, struct conn *c,
                struct bh_trace *tr, int64_t base)
{
    memset(c, 0, sizeof(*c) * (size_t) o->count);
    int ep = epoll_create1(EPOLL_CLOEXEC), early = 0, connect_failed = 0;
    bh_wait_cpu_quiet(s->pid, 300, 10000);
    long rss0 = bh_proc_status(s->pid, "VmRSS"), thr0 = bh_proc_status(s->pid, "Threads");

    /* 2: open and send, 256 connecting at a time. */
    int64_t t_open = bench_now_ns();
    for (int first = 0; first < o->count; first += 256) {
        int last = first + 256 < o->count ? first + 256 : o->count;
        for (int k = first; k < last; k++)
            c[k].fd = bh_connect_nb(s->port);
        for (int k = first; k < last; k++) {
            char req[160];
            int len = snprintf(req, sizeof(req),
                               "GET /work?ms=%d&mode=io&traceId=%lld HTTP/1.1\r\nHost: "
                               "127.0.0.1\r\n\r\n",
                               o->ms, (long long) (base + k));
            if (c[k].fd < 0 || !(bh_poll1(c[k].fd, POLLOUT, 5000) & POLLOUT) ||
                bh_connect_result(c[k].fd) < 0 ||
                send(c[k].fd, req, (size_t) len, MSG_NOSIGNAL) != len) {
                if (c[k].fd >= 0)
                    close(c[k].fd);
                c[k].fd = -1;
                c[k].state = S_NONE;
                connect_failed++;
                continue;
            }
            c[k].t_sent = bench_now_ns();
            c[k].state = S_HELD;
            struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t) k};
            epoll_ctl(ep, EPOLL_CTL_ADD, c[k].fd, &e);
        }
        early += pump(ep, c, 0);
    }
    int64_t t_sent = bench_now_ns();
    bool quiet = settle(ep, c, s->pid, 500, 20000, &early);
    long rss1 = bh_proc_status(s->pid, "VmRSS"), thr1 = bh_proc_status(s->pid, "Threads");
    int held = 0;
    for (int k = 0; k < o->count; k++)
        held += c[k].state == S_HELD;

    /* 3 and 4: aborts, one at a time, while the rest are held. */
    int64_t t_abort = bench_now_ns();
    int aborted = pick(c, o->count, o->abort_n, S_ABORTED, o->gap_us, ep, &early, act_close);
    int shut = pick(c, o->count, o->shut_n, S_SHUT, o->gap_us, ep, &early, act_shut);
    /* Wait for the half-closed ones to be closed by the server (at most 10 s). */
    int64_t deadline = bench_now_ns() + 10000000000LL;
    for (;;) {
        int waiting = 0;
        for (int k = 0; k < o->count; k++)
            waiting += c[k].state == S_SHUT;
        if (!waiting || bench_now_ns() >= deadline)
            break;
        early += pump(ep, c, 50);
    }
    settle(ep, c, s->pid, 300, 10000, &early);
    long rss2 = bh_proc_status(s->pid, "VmRSS");
    int64_t t_held_end = bench_now_ns();
    int still_held = 0;
    for (int k = 0; k < o->count; k++)
        still_held += c[k].state == S_HELD;

    /* 5: close everything; back to idle? */
    for (int k = 0; k < o->count; k++)
        if (c[k].fd >= 0) {
            close(c[k].fd);
            c[k].fd = -1;
        }
    int64_t t_closed = bench_now_ns();
    double in_flight = bh_wait_in_flight(s, 1, 60000);
    int64_t t_idle = bench_now_ns();
    static char body[1 << 16];
    int st = bh_http_get(s->port, "/metrics", body, sizeof(body), 5000);
    bh_wait_cpu_quiet(s->pid, 300, 10000);
    long rss3 = bh_proc_status(s->pid, "VmRSS"), thr3 = bh_proc_status(s->pid, "Threads");
    close(ep);

    /* The trace: close -> token fired. */
    int found = bh_trace_load(s->trace, base, o->count, tr);
    if (found < 0)
        fprintf(stderr, "scale: cannot read %s: %s\n", s->trace, strerror(-found));
    int64_t *fa = calloc((size_t) o->count, sizeof(int64_t));
    int64_t *fs = calloc((size_t) o->count, sizeof(int64_t));
    int64_t *eof = calloc((size_t) o->count, sizeof(int64_t));
    int nfa = 0, nfs = 0, neof = 0, a_untraced = 0, s_untraced = 0, s_no_eof = 0;
    for (int k = 0; k < o->count; k++) {
        if (c[k].state == S_ABORTED) {
            if (tr[k].present && tr[k].fired > 0)
                fa[nfa++] = tr[k].fired - c[k].t_close;
            else
                a_untraced++;
        } else if (c[k].state == S_SHUT || c[k].state == S_SHUT_DONE) {
            if (tr[k].present && tr[k].fired > 0)
                fs[nfs++] = tr[k].fired - c[k].t_close;
            else
                s_untraced++;
            if (c[k].state == S_SHUT_DONE)
                eof[neof++] = c[k].t_eof - c[k].t_close;
            else
                s_no_eof++;
        }
    }
    char a50[32], a99[32], s50[32], s99[32], e50[32], e99[32];
    bh_fmt_pct(fa, nfa, 50, a50, sizeof(a50));
    bh_fmt_pct(fa, nfa, 99, a99, sizeof(a99));
    bh_fmt_pct(fs, nfs, 50, s50, sizeof(s50));
    bh_fmt_pct(fs, nfs, 99, s99, sizeof(s99));
    bh_fmt_pct(eof, neof, 50, e50, sizeof(e50));
    bh_fmt_pct(eof, neof, 99, e99, sizeof(e99));
    int accepted = o->count - connect_failed - early;
    printf("| %s | %d / %d | %.2f | %.1f | %.1f | %.1f | %ld → %ld | %d: %d traced, %d untraced "
           "| %s | %s | %d: %d EOF | %s | %s | %d traced: %s / %s | %.0f | %.2f | %.1f (%ld "
           "threads) |\n",
           s->name, accepted, o->count, (double) (t_sent - t_open) / 1e9, rss0 / 1024.0,
           rss1 / 1024.0, (double) (rss1 - rss0) * 1024.0 / (double) (held ? held : 1) / 1024.0,
           thr0, thr1, aborted, nfa, a_untraced, a50, a99, shut, neof, e50, e99, nfs, s50, s99,
           in_flight, (double) (t_idle - t_closed) / 1e9, rss3 / 1024.0, thr3);
    fprintf(stderr,
            "scale %s: connect failed %d, answered/closed early %d, held after the aborts %d, "
            "server quiet after sending: %s, hold phase %.1f s (from the first send to the last "
            "close), RSS after the aborts %.1f MB, half-closed without the server's FIN %d "
            "(untraced: close %d, shut %d)\n",
            s->name, connect_failed, early, still_held, quiet ? "yes" : "no (20 s bound)",
            (double) (t_held_end - t_open) / 1e9, rss2 / 1024.0, s_no_eof, a_untraced, s_untraced);
    if (t_held_end - t_open > (int64_t) o->ms * 1000000 - 2000000000LL)
        fprintf(stderr,
                "scale %s: WARNING: the hold phase came within 2 s of the requests' own "
                "%d ms: some may have finished on their own\n",
                s->name, o->ms);
    (void) t_abort;
    if (st == 200) {
        static const char *names[] = {
            "ct_http_rejected_total",       "ct_http_abandoned_before_start_total",
            "ct_http_cancel_ignored_total", "ct_http_connections_total",
            "ct_http_open_connections",     "ct_pool_threads",
            "go_http_work_canceled_total",  "go_http_work_total",
        };
        fprintf(stderr, "scale %s: /metrics after:", s->name);
        for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
            double v = bh_metric_value(body, names[i]);
            if (v >= 0)
                fprintf(stderr, " %s=%.0f", names[i], v);
        }
        fputc('\n', stderr);
    }
    fflush(stdout);
    free(fa);
    free(fs);
    free(eof);
}

static void usage(void)
{
    fputs("usage: scale --server NAME,PORT,PID,TRACE,METRIC [--server ...] [--count 10000]\n"
          "             [--abort 500] [--shut 500] [--ms 30000] [--gap-us 2000] [--seed 1]\n"
          "             [--id-base 5000000]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    struct opts o = {.count = 10000,
                     .abort_n = 500,
                     .shut_n = 500,
                     .ms = 30000,
                     .gap_us = 2000,
                     .seed = 1,
                     .id_base = 5000000};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--server") == 0) {
            if (o.nsrv == MAX_SERVERS || bh_parse_server(v, &o.srv[o.nsrv++]) < 0)
                usage();
        } else if (strcmp(a, "--count") == 0) {
            o.count = atoi(v);
        } else if (strcmp(a, "--abort") == 0) {
            o.abort_n = atoi(v);
        } else if (strcmp(a, "--shut") == 0) {
            o.shut_n = atoi(v);
        } else if (strcmp(a, "--ms") == 0) {
            o.ms = atoi(v);
        } else if (strcmp(a, "--gap-us") == 0) {
            o.gap_us = atoi(v);
        } else if (strcmp(a, "--seed") == 0) {
            o.seed = (unsigned) atoi(v);
        } else if (strcmp(a, "--id-base") == 0) {
            o.id_base = atoll(v);
        } else {
            usage();
        }
    }
    if (o.nsrv == 0 || o.count < 1 || o.count > 100000 || o.abort_n < 0 || o.shut_n < 0 ||
        o.abort_n + o.shut_n > o.count || o.gap_us < 0 || o.gap_us > 1000000)
        usage();
    if (bh_raise_nofile((rlim_t) o.count + 256) < (rlim_t) o.count + 64) {
        fprintf(stderr, "scale: cannot open %d files (RLIMIT_NOFILE)\n", o.count);
        return 1;
    }
    rng = 0x9e3779b97f4a7c15ULL ^ o.seed;
    struct conn *c = calloc((size_t) o.count, sizeof(*c));
    struct bh_trace *tr = calloc((size_t) o.count, sizeof(*tr));
    printf("%d requests GET /work?ms=%d&mode=io held at once; %d closed (FIN) at random one "
           "every %d µs, then %d half-closed; RSS in MB, memory per request in KB\n\n",
           o.count, o.ms, o.abort_n, o.gap_us, o.shut_n);
    printf("| server | accepted | open s | RSS idle | RSS held | KB/request | threads | "
           "closed: traced/untraced | close→fired p50 ms | p99 ms | half-closed: server FIN "
           "seen | FIN→server FIN p50 ms | p99 ms | FIN→fired (traced) p50 / p99 ms "
           "| in flight after | s to idle | RSS after |\n"
           "|---|---|---:|---:|---:|---:|---|---|---:|---:|---|---:|---:|---|---:|---:|---|\n");
    fflush(stdout);
    for (int s = 0; s < o.nsrv; s++)
        one(&o, &o.srv[s], c, tr, o.id_base + (int64_t) s * o.count);
    free(c);
    free(tr);
    return 0;
}
