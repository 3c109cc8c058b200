/* abort_storm: clients that give up. For each server, work mode and way of closing:
 *
 *   N requests "GET /work?ms=5000&mode=M&traceId=K", C at a time; each is abandoned `abandon` ms
 *   after it was sent, by a FIN (close) or an RST (SO_LINGER 0, then close), and the time of
 *   that close is recorded (CLOCK_MONOTONIC, just before close()). Once the server is idle again
 *   (its in-flight gauge in /metrics at 1: the scrape itself), its trace file is joined with the
 *   close times:
 *     close -> token fired, close -> handler returned: p50, p99, max (ms);
 *     requests whose handler never ran (no trace line: abandoned before start);
 *     server CPU (utime + stime from /proc/PID/stat) from the first connect to idle.
 *
 * The servers are interleaved (ct io fin, go io fin, ct io rst, ...) so that they see the same
 * machine. Output: a Markdown table, one row per server, mode and close kind. Every loop is
 * bounded: N requests, and a deadline on every wait.
 *
 *   abort_storm --server NAME,PORT,PID,TRACE,METRIC [--server ...] [--n 200] [--conc 50]
 *               [--abandon-ms 200] [--ms 5000] [--modes io,cpu] [--kinds fin,rst]
 *               [--id-base 1000000] [--settle-ms 20000] [--stagger] [--dump FILE] [--no-header]
 *               [--path /any?query]
 *
 * --stagger: the first `conc` requests start abandon/conc apart, so that the aborts come one at a
 * time (with `conc` in flight) instead of in waves. --path: every request is "GET PATH&traceId=K"
 * instead of /work (a layered endpoint whose query or outbound call the abort must stop). --dump:
 * one line per request that ran: "server mode close id sent_ns close_ns fired_ns returned_ns
 * result". */
#define _GNU_SOURCE
#include <sys/epoll.h>

#include "bench_http.h"

#define MAX_SERVERS 4

struct opts {
    struct bh_server srv[MAX_SERVERS];
    int nsrv;
    int n, conc, abandon_ms, ms, settle_ms;
    int64_t id_base;
    const char *path; /* --path: this request instead of /work */
    bool modes[2], kinds[2], header, stagger;
    FILE *dump;
};

enum { MODE_IO, MODE_CPU };
enum { KIND_FIN, KIND_RST };
static const char *mode_name[] = {"io", "cpu"}, *kind_name[] = {"FIN", "RST"};

enum { C_FREE, C_CONNECTING, C_SENT, C_CLOSED };

struct client {
    int fd, state;
    int64_t t_sent, t_close;
    bool early; /* the server answered or closed before the client gave up */
};

struct result {
    int sent, ran, never_ran, not_fired, early, connect_failed;
    int64_t *fired, *returned; /* ns after the close, per request that ran */
    int nfired, nreturned;
    int64_t cpu_ns, cpu_after_ns, wall_ns;
    int last_wave; /* requests abandoned within 20 ms of the last one: in flight at the end */
    double in_flight_after;
};

static int64_t run_storm(const struct opts *o, const struct bh_server *s, int mode, int kind,
                         int64_t base, struct client *cl, struct result *r)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int started = 0, done = 0, active = 0, head = 0; /* head: oldest sent, not yet closed */
    int *order = calloc((size_t) o->n, sizeof(int)); /* clients in the order they were sent */
    int nsent = 0;
    memset(cl, 0, sizeof(*cl) * (size_t) o->n);
    int64_t abandon = (int64_t) o->abandon_ms * 1000000;
    int64_t t0 = bench_now_ns(), last_close = t0;
    /* A bound on the whole storm: every request takes `abandon` once its turn comes. */
    int64_t give_up = t0 + (int64_t) (o->n / o->conc + 2) * (abandon + 2000000000LL);
    struct epoll_event ev[64];
    while (done < o->n && bench_now_ns() < give_up) {
        while (active < o->conc && started < o->n) {
            /* Staggered: the first window starts one request every abandon/conc, so that the
             * aborts come one at a time instead of in waves of `conc`. */
            if (o->stagger && started < o->conc &&
                bench_now_ns() < t0 + abandon / o->conc * started)
                break;
            struct client *c = &cl[started];
            c->fd = bh_connect_nb(s->port);
            if (c->fd < 0) {
                r->connect_failed++;
                c->state = C_CLOSED;
                done++;
                started++;
                continue;
            }
            c->state = C_CONNECTING;
            struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t) started};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
            active++;
            started++;
        }
        int64_t now = bench_now_ns();
        int timeout = -1;
        while (head < nsent && cl[order[head]].state != C_SENT)
            head++;
        if (head < nsent) {
            int64_t due = cl[order[head]].t_sent + abandon;
            timeout = due <= now ? 0 : (int) ((due - now + 999999) / 1000000);
        } else if (active == 0 && started >= o->n) {
            break;
        }
        if (o->stagger && started < o->conc && started < o->n) {
            int64_t due = t0 + abandon / o->conc * started;
            int t = due <= now ? 0 : (int) ((due - now + 999999) / 1000000);
            if (timeout < 0 || t < timeout)
                timeout = t;
        }
        if (timeout < 0 || timeout > 1000)
            timeout = 1000;
        int nev = epoll_wait(ep, ev, 64, timeout);
        for (int i = 0; i < nev; i++) {
            int k = (int) ev[i].data.u32;
            struct client *c = &cl[k];
            if (c->state == C_CONNECTING) {
                if (bh_connect_result(c->fd) < 0) {
                    r->connect_failed++;
                    goto drop;
                }
                char req[512];
                int len = o->path ? snprintf(req, sizeof(req),
                                             "GET %s%straceId=%lld HTTP/1.1\r\nHost: "
                                             "127.0.0.1\r\n\r\n",
                                             o->path, strchr(o->path, '?') ? "&" : "?",
                                             (long long) (base + k))
                                  : snprintf(req, sizeof(req),
                                             "GET /work?ms=%d&mode=%s&traceId=%lld HTTP/1.1\r\n"
                                             "Host: 127.0.0.1\r\n\r\n",
                                             o->ms, mode_name[mode], (long long) (base + k));
                if (send(c->fd, req, (size_t) len, MSG_NOSIGNAL) != len) {
                    r->connect_failed++;
                    goto drop;
                }
                c->t_sent = bench_now_ns();
                c->state = C_SENT;
                order[nsent++] = k;
                r->sent++;
                struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t) k};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                continue;
            }
            if (c->state == C_SENT) {
                c->early = true; /* an answer or a close before we gave up: not an abort */
                r->early++;
            }
        drop:
            if (c->state != C_CLOSED) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->state = C_CLOSED;
                active--;
                done++;
            }
        }
        now = bench_now_ns();
        while (head < nsent) {
            struct client *c = &cl[order[head]];
            if (c->state != C_SENT) {
                head++;
                continue;
            }
            if (c->t_sent + abandon > now)
                break;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            if (kind == KIND_RST) {
                struct linger l = {1, 0};
                setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
            }
            c->t_close = bench_now_ns();
            close(c->fd);
            last_close = c->t_close;
            c->state = C_CLOSED;
            active--;
            done++;
            head++;
            now = bench_now_ns();
        }
    }
    /* Whatever is left (the bound was hit) is closed now and counted as not measured. */
    for (int k = 0; k < started; k++)
        if (cl[k].state == C_CONNECTING || cl[k].state == C_SENT) {
            close(cl[k].fd);
            cl[k].state = C_CLOSED;
            cl[k].early = true;
            r->early++;
        }
    for (int k = 0; k < started; k++)
        r->last_wave += cl[k].t_close && cl[k].t_close >= last_close - 20000000;
    free(order);
    close(ep);
    r->wall_ns = last_close - t0;
    return last_close;
}

static void one(const struct opts *o, const struct bh_server *s, int mode, int kind, int64_t base,
                struct client *cl, struct bh_trace *tr)
{
    struct result r = {0};
    r.fired = calloc((size_t) o->n, sizeof(int64_t));
    r.returned = calloc((size_t) o->n, sizeof(int64_t));
    int64_t cpu0 = bh_proc_cpu_ns(s->pid);
    run_storm(o, s, mode, kind, base, cl, &r);
    int64_t cpu_close = bh_proc_cpu_ns(s->pid);
    r.in_flight_after = bh_wait_in_flight(s, 1, o->settle_ms);
    int64_t cpu1 = bh_proc_cpu_ns(s->pid);
    r.cpu_ns = cpu1 - cpu0;
    r.cpu_after_ns = cpu1 - cpu_close;

    int found = bh_trace_load(s->trace, base, o->n, tr);
    if (found < 0)
        fprintf(stderr, "abort_storm: cannot read %s: %s\n", s->trace, strerror(-found));
    for (int k = 0; k < o->n; k++) {
        struct client *c = &cl[k];
        if (!c->t_sent)
            continue;
        if (!tr[k].present) {
            if (!c->early)
                r.never_ran++;
            continue;
        }
        r.ran++;
        if (o->dump)
            fprintf(o->dump, "%s %s %s %lld %lld %lld %lld %lld %d\n", s->name, mode_name[mode],
                    kind_name[kind], (long long) (base + k), (long long) c->t_sent,
                    (long long) c->t_close, (long long) tr[k].fired, (long long) tr[k].returned,
                    tr[k].result);
        if (c->early || !c->t_close)
            continue;
        if (tr[k].fired > 0)
            r.fired[r.nfired++] = tr[k].fired - c->t_close;
        else
            r.not_fired++;
        r.returned[r.nreturned++] = tr[k].returned - c->t_close;
    }
    char f50[32], f99[32], r50[32], r99[32], rmax[32];
    bh_fmt_pct(r.fired, r.nfired, 50, f50, sizeof(f50));
    bh_fmt_pct(r.fired, r.nfired, 99, f99, sizeof(f99));
    bh_fmt_pct(r.returned, r.nreturned, 50, r50, sizeof(r50));
    bh_fmt_pct(r.returned, r.nreturned, 99, r99, sizeof(r99));
    bh_fmt_pct(r.returned, r.nreturned, 100, rmax, sizeof(rmax));
    double base_s = (double) o->n * o->ms / 1000.0;
    printf("| %s | %s | %s | %d | %d | %d | %s | %s | %s | %s | %s | %.2f | %.2f | %.3f %% "
           "| %.2f / %d = %.1f ms |%s\n",
           s->name, mode_name[mode], kind_name[kind], r.sent, r.ran, r.never_ran, f50, f99, r50,
           r99, rmax, (double) r.wall_ns / 1e9, (double) r.cpu_ns / 1e9,
           100.0 * ((double) r.cpu_ns / 1e9) / base_s, (double) r.cpu_after_ns / 1e9, r.last_wave,
           (double) r.cpu_after_ns / 1e6 / (r.last_wave ? r.last_wave : 1),
           r.early || r.connect_failed || r.not_fired || r.in_flight_after != 1 ? " anomalies below"
                                                                                : "");
    if (r.early || r.connect_failed || r.not_fired || r.in_flight_after != 1)
        printf("|   | ↳ answered/closed by the server before the abort: %d; connect failed: %d; "
               "ran to completion (token never fired): %d; in flight after: %.0f ||||||||||||||\n",
               r.early, r.connect_failed, r.not_fired, r.in_flight_after);
    fflush(stdout);
    free(r.fired);
    free(r.returned);
}

static void usage(void)
{
    fputs("usage: abort_storm --server NAME,PORT,PID,TRACE,METRIC [--server ...] [--n 200]\n"
          "         [--conc 50] [--abandon-ms 200] [--ms 5000] [--modes io,cpu] [--kinds fin,rst]\n"
          "         [--id-base 1000000] [--settle-ms 20000] [--stagger] [--no-header]\n"
          "         [--path /any?query]   (this request instead of /work; mode shows as io)\n"
          "         [--dump FILE]   (FILE: server mode close id sent_ns close_ns fired_ns\n"
          "                          returned_ns result, one line per request that ran)\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    struct opts o = {.n = 200,
                     .conc = 50,
                     .abandon_ms = 200,
                     .ms = 5000,
                     .settle_ms = 20000,
                     .id_base = 1000000,
                     .modes = {true, true},
                     .kinds = {true, true},
                     .header = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-header") == 0 || strcmp(a, "--stagger") == 0) {
            if (a[2] == 'n')
                o.header = false;
            else
                o.stagger = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--server") == 0) {
            if (o.nsrv == MAX_SERVERS || bh_parse_server(v, &o.srv[o.nsrv++]) < 0)
                usage();
        } else if (strcmp(a, "--n") == 0) {
            o.n = atoi(v);
        } else if (strcmp(a, "--conc") == 0) {
            o.conc = atoi(v);
        } else if (strcmp(a, "--abandon-ms") == 0) {
            o.abandon_ms = atoi(v);
        } else if (strcmp(a, "--ms") == 0) {
            o.ms = atoi(v);
        } else if (strcmp(a, "--settle-ms") == 0) {
            o.settle_ms = atoi(v);
        } else if (strcmp(a, "--id-base") == 0) {
            o.id_base = atoll(v);
        } else if (strcmp(a, "--path") == 0) {
            if (strlen(v) > 400 || v[0] != '/')
                usage();
            o.path = v;
            o.modes[MODE_IO] = true;
            o.modes[MODE_CPU] = false;
        } else if (strcmp(a, "--dump") == 0) {
            if (!(o.dump = fopen(v, "we"))) {
                perror(v);
                return 1;
            }
        } else if (strcmp(a, "--modes") == 0) {
            o.modes[MODE_IO] = strstr(v, "io") != NULL;
            o.modes[MODE_CPU] = strstr(v, "cpu") != NULL;
        } else if (strcmp(a, "--kinds") == 0) {
            o.kinds[KIND_FIN] = strstr(v, "fin") != NULL;
            o.kinds[KIND_RST] = strstr(v, "rst") != NULL;
        } else {
            usage();
        }
    }
    if (o.nsrv == 0 || o.n < 1 || o.n > 100000 || o.conc < 1 || o.abandon_ms < 1 || o.ms < 1)
        usage();
    bh_raise_nofile((rlim_t) o.conc + 64);
    struct client *cl = calloc((size_t) o.n, sizeof(*cl));
    struct bh_trace *tr = calloc((size_t) o.n, sizeof(*tr));
    if (o.header) {
        printf("%d requests per row, %d at a time (%s), each abandoned %d ms after it was sent; "
               "no-cancellation baseline %d x %.1f s = %.0f CPU s; ideal CPU: io ~0, cpu "
               "%.1f s (%d x %d ms, if each handler had a core to itself)\n\n",
               o.n, o.conc,
               o.stagger ? "the first ones staggered: aborts come one at a time"
                         : "started together: aborts come in waves",
               o.abandon_ms, o.n, o.ms / 1000.0, o.n * (o.ms / 1000.0),
               o.n * (o.abandon_ms / 1000.0), o.n, o.abandon_ms);
        printf("| server | mode | close | sent | ran | never ran | close→fired p50 ms | p99 ms "
               "| close→returned p50 ms | p99 ms | max ms | storm s | server CPU s "
               "| %% of baseline | CPU after the last close / requests in the last wave |\n"
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
               "|\n");
        fflush(stdout);
    }
    int64_t base = o.id_base;
    for (int mode = 0; mode < 2; mode++)
        for (int kind = 0; kind < 2; kind++) {
            if (!o.modes[mode] || !o.kinds[kind])
                continue;
            for (int s = 0; s < o.nsrv; s++) {
                one(&o, &o.srv[s], mode, kind, base, cl, tr);
                base += o.n;
            }
        }
    if (o.dump)
        fclose(o.dump);
    free(cl);
    free(tr);
    return 0;
}
