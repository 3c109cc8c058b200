/* bench_pg: what a server-side cancel costs, bare and through ct_pg_query.
 *
 *   a. the peer, raw libpq: a query doing real work (count over generate_series, seconds of
 *      CPU), PQcancel sent 5..30 ms in, from the sending thread: PQcancel called -> the query's
 *      error result has arrived, p50/p99. A cancel that gets no answer within 1 s is counted as
 *      lost and sent again (the time then includes the wait).
 *   b. ct: the same query through ct_pg_query with a token that ct's timer fires 5..30 ms in:
 *      token fired -> ct_pg_query returned (the connection clean: the error read, a late
 *      cancel absorbed), and token fired -> the backend shows `idle` in pg_stat_activity
 *      (polled from a second connection), p50/p99; and the cancelled queries left running on the
 *      server afterwards (must be 0).
 * Both use a fresh connection every CONN_EVERY queries, where lost cancels happen most (the
 * first extended-protocol query of a connection, with JIT).
 *   bench_pg CONNINFO_FILE [--quick]       (make bench starts a server: scripts/pg-test.sh) */
#define _GNU_SOURCE
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pg/internal.h"
#include "bench_util.h"
#include "ct.h"
#include "ct/pg.h"

/* Pure CPU: the set-returning function in the select list streams (ProjectSet); in FROM it
 * would be written to a tuplestore, spilling to disk, and the cancel would wait for file I/O. */
#define WORK       "SELECT count(*) FROM (SELECT generate_series(1, 200000000)) s"
#define CONN_EVERY 50

static char conninfo[512];

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_pg: %s: %s\n", what, detail);
    exit(1);
}

static void report(const char *name, int64_t *lat, int n)
{
    printf("| %s | %d | %.3f | %.3f | %.3f |\n", name, n, bench_percentile(lat, n, 50) / 1e6,
           bench_percentile(lat, n, 99) / 1e6, bench_percentile(lat, n, 100) / 1e6);
}

static int delay_ms(void)
{
    return 5 + rand() % 26;
}

static PGconn *raw_connect(void)
{
    PGconn *pc = PQconnectdb(conninfo);
    if (PQstatus(pc) != CONNECTION_OK)
        die("connect", PQerrorMessage(pc));
    return pc;
}

/* a. Bare libpq. Returns PQcancel called -> error result, in ns, or -1 if the first cancel was
 * lost (the query is then stopped by re-sending it every second). */
static int64_t raw_cancel(PGconn *pc)
{
    if (!PQsendQueryParams(pc, WORK, 0, NULL, NULL, NULL, NULL, 0))
        die("send", PQerrorMessage(pc));
    struct timespec d = {0, delay_ms() * 1000000L};
    nanosleep(&d, NULL);
    PGcancel *cn = PQgetCancel(pc);
    char err[256];
    int64_t t0 = bench_now_ns(), t1 = 0;
    bool lost = false;
    PQcancel(cn, err, sizeof(err));
    for (int tries = 0; tries < 60 && !t1; tries++) {
        struct pollfd pfd = {.fd = PQsocket(pc), .events = POLLIN};
        while (!t1 && poll(&pfd, 1, 1000) > 0) {
            PQconsumeInput(pc);
            if (!PQisBusy(pc))
                t1 = bench_now_ns();
        }
        if (!t1) {
            lost = true;
            PQcancel(cn, err, sizeof(err));
        }
    }
    if (!t1)
        die("raw", "the query kept running after 60 cancels");
    PGresult *r;
    while ((r = PQgetResult(pc)))
        PQclear(r);
    PQfreeCancel(cn);
    return lost ? -1 : t1 - t0;
}

/* pg_stat_activity's state for `pid`. */
static bool is_idle(PGconn *admin, int pid)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", pid);
    const char *params[] = {p};
    PGresult *r = PQexecParams(admin, "SELECT state FROM pg_stat_activity WHERE pid = $1::int", 1,
                               NULL, params, NULL, NULL, 0);
    bool idle = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "idle") == 0;
    PQclear(r);
    return idle;
}

static int running_work(PGconn *admin)
{
    PGresult *r = PQexec(admin, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                "AND query LIKE '%generate_series(1, 200000000))%' "
                                "AND pid <> pg_backend_pid()");
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage", "bench_pg CONNINFO_FILE [--quick]");
    FILE *f = fopen(argv[1], "r");
    if (!f || !fgets(conninfo, sizeof(conninfo), f))
        die("cannot read", argv[1]);
    fclose(f);
    conninfo[strcspn(conninfo, "\n")] = '\0';
    int n = argc > 2 && strcmp(argv[2], "--quick") == 0 ? 100 : 1000;
    srand(42);
    int64_t *bare = calloc((size_t) n, sizeof(*bare)), *ret = calloc((size_t) n, sizeof(*ret)),
            *idle = calloc((size_t) n, sizeof(*idle)),
            *steady = calloc((size_t) n, sizeof(*steady));
    int nsteady = 0;
    if (!bare || !ret || !idle || !steady)
        die("calloc", "out of memory");

    PGconn *admin = raw_connect();
    printf("PostgreSQL %d, libpq %d; `%s`, cancelled 5..30 ms in; a fresh connection every %d\n\n",
           PQserverVersion(admin), PQlibVersion(), WORK, CONN_EVERY);

    int raw_lost = 0, nbare = 0;
    PGconn *pc = NULL;
    for (int i = 0; i < n; i++) {
        if (i % CONN_EVERY == 0) {
            if (pc)
                PQfinish(pc);
            pc = raw_connect();
        }
        int64_t t = raw_cancel(pc);
        if (t < 0)
            raw_lost++;
        else
            bare[nbare++] = t;
    }
    PQfinish(pc);

    ct_pg_t *c = NULL;
    int left_running = 0, not_idle = 0, wrong = 0;
    unsigned cancels = 0;
    for (int i = 0; i < n; i++) {
        if (i % CONN_EVERY == 0) {
            if (c) {
                cancels += c->cancels;
                ct_pg_close(c);
            }
            int rc = ct_pg_connect(&c, conninfo, NULL, ct_deadline_after(10000));
            if (rc < 0)
                die("ct_pg_connect", ct_pg_connect_errmsg());
        }
        int pid = PQbackendPID(ct_pg_handle(c));
        ct_source_t *src;
        if (ct_source_new(&src) < 0 || ct_source_cancel_after(src, delay_ms()) < 0)
            die("source", "failed");
        PGresult *r;
        int rc = ct_pg_query(c, &r, WORK, 0, NULL, ct_source_token(src), NULL);
        int64_t back = ct_now_ns(), fired = ct_token_canceled_at_ns(ct_source_token(src));
        if (rc != -ECANCELED) {
            wrong++;
            PQclear(r);
        }
        ret[i] = back - fired;
        if (i % CONN_EVERY != 0)
            steady[nsteady++] = ret[i];
        int polls = 0;
        while (!is_idle(admin, pid) && polls++ < 50000)
            ;
        idle[i] = ct_now_ns() - fired;
        if (polls > 50000)
            not_idle++;
        if (running_work(admin) > 0)
            left_running++;
        ct_source_free(src);
    }
    cancels += c->cancels;
    ct_pg_close(c);

    printf("| measure | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
    report("a. raw libpq: PQcancel called → error result (cancels not lost)", bare, nbare);
    report("b. ct: token fired → ct_pg_query returned, connection clean", ret, n);
    report("b. ct: token fired → backend idle in pg_stat_activity", idle, n);
    report("b. ct: token fired → returned, not a connection's first query", steady, nsteady);
    printf("\nraw cancels lost (no result within 1 s, then re-sent): %d; ct cancel requests sent: "
           "%u for %d "
           "aborts (%d re-sent)\n",
           raw_lost, cancels, n, (int) cancels - n);
    printf("ct calls that did not return -ECANCELED: %d; backends not idle after return: %d; "
           "cancelled queries left running on the server: %d\n",
           wrong, not_idle, left_running);
    int64_t b99 = bench_percentile(bare, nbare, 99), r99 = bench_percentile(ret, n, 99);
    printf("target ct p99 <= 2 x bare p99: %.3f <= %.3f ms: %s\n", r99 / 1e6, 2 * b99 / 1e6,
           r99 <= 2 * b99 ? "met" : "NOT met");
    PQfinish(admin);
    free(bare);
    free(ret);
    free(idle);
    free(steady);
    return left_running || wrong ? 1 : 0;
}
