/* bench_sqlite: how long a SQLite statement keeps going after its token fires.
 *
 *   1. a running statement (a recursive CTE that would count for minutes), token fired by the
 *      timer after 5..20 ms: token fired -> ct_sqlite_step() returned, p50/p99;
 *   2. a statement waiting for another connection's write lock (busy timeout 10 s), same;
 *   3. the peer for 2: SQLite's own busy timeout (1 s here) with sqlite3_interrupt() called
 *      when the token fires, the usual way to "cancel" a query: it returns when the timeout
 *      does, whatever the interrupt.
 * The database is a file under /tmp (removed at the end). Every loop is bounded by a count.
 *   bench_sqlite [--quick] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "ct.h"
#include "ct/sqlite.h"

#define ENDLESS                                                                                    \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "        \
    "SELECT count(*) FROM c"

static char path[96];

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_sqlite: %s: %s\n", what, ct_strerror(rc));
    exit(1);
}

static void report(const char *name, int64_t *lat, int n)
{
    printf("| %s | %d | %.3f | %.3f | %.3f |\n", name, n, bench_percentile(lat, n, 50) / 1e6,
           bench_percentile(lat, n, 99) / 1e6, bench_percentile(lat, n, 100) / 1e6);
}

/* A source the timer cancels 5..20 ms from now. */
static ct_source_t *armed_source(void)
{
    ct_source_t *src;
    int rc = ct_source_new(&src);
    if (rc == 0)
        rc = ct_source_cancel_after(src, 5 + rand() % 16);
    if (rc < 0)
        die("source", rc);
    return src;
}

/* Run `sql` on `db` with a token the timer fires after 5..20 ms; returns fired -> returned. */
static int64_t stopped_after(ct_sqlite_t *db, const char *sql)
{
    ct_source_t *src = armed_source();
    int rc = ct_sqlite_exec(db, sql, ct_source_token(src));
    int64_t back = ct_now_ns();
    if (rc != -ECANCELED)
        die("expected -ECANCELED", rc);
    int64_t lat = back - ct_token_canceled_at_ns(ct_source_token(src));
    ct_source_free(src);
    return lat;
}

struct interrupt_arg {
    sqlite3 *h;
};

static void interrupt_cb(void *arg, const ct_token_t *tok)
{
    (void) tok;
    sqlite3_interrupt(((struct interrupt_arg *) arg)->h);
}

/* The peer: a plain connection with sqlite3_busy_timeout(1000) and sqlite3_interrupt. */
static int64_t plain_stopped_after(sqlite3 *h)
{
    ct_source_t *src = armed_source();
    struct interrupt_arg a = {h};
    ct_reg_t reg;
    ct_token_register(ct_source_token(src), &reg, interrupt_cb, &a);
    sqlite3_exec(h, "INSERT INTO t VALUES (2)", NULL, NULL, NULL);
    int64_t back = ct_now_ns();
    ct_token_unregister(&reg);
    int64_t lat = back - ct_token_canceled_at_ns(ct_source_token(src));
    ct_source_free(src);
    return lat;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int n = quick ? 40 : 200, n_peer = quick ? 2 : 5;
    srand(1);
    snprintf(path, sizeof(path), "/tmp/ct-bench-sqlite-%d.db", (int) getpid());
    printf("SQLite %s; token fired by ct's timer 5..20 ms after the statement began\n\n",
           sqlite3_libversion());
    printf("| statement | n | fired → returned p50 ms | p99 ms | max ms "
           "|\n|---|---:|---:|---:|---:|\n");

    ct_sqlite_t *db, *holder;
    int rc = ct_sqlite_open(&db, path, &(ct_sqlite_options_t){.busy_timeout_ms = 10000});
    if (rc == 0)
        rc = ct_sqlite_open(&holder, path, NULL);
    if (rc < 0)
        die("open", rc);
    int64_t *lat = calloc((size_t) n, sizeof(*lat));
    for (int i = 0; i < n; i++)
        lat[i] = stopped_after(db, ENDLESS);
    report("running (recursive CTE), ct_sqlite_step", lat, n);

    if ((rc = ct_sqlite_exec(holder, "CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)",
                             NULL)) < 0)
        die("holder", rc);
    for (int i = 0; i < n; i++)
        lat[i] = stopped_after(db, "INSERT INTO t VALUES (2)");
    report("waiting for a write lock (busy timeout 10 s), ct_sqlite_exec", lat, n);

    sqlite3 *plain;
    if (sqlite3_open(path, &plain) != SQLITE_OK)
        die("open plain", -EIO);
    sqlite3_busy_timeout(plain, 1000);
    for (int i = 0; i < n_peer; i++)
        lat[i] = plain_stopped_after(plain);
    report("peer: waiting for a write lock, sqlite3_busy_timeout(1000) + sqlite3_interrupt", lat,
           n_peer);
    sqlite3_close(plain);

    ct_sqlite_exec(holder, "COMMIT", NULL);
    ct_sqlite_close(holder);
    ct_sqlite_close(db);
    free(lat);
    char wal[128];
    unlink(path);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", path);
    unlink(wal);
    return 0;
}
