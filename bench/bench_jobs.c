/* ct-jobs benchmarks.
 *
 * 1. Throughput: trivial jobs (the handler returns 0), enqueued from one thread while 4 workers
 *    run them, enqueue -> completed: jobs/s and the enqueue -> handler-start latency p50/p99.
 *    Peers measured in the same run: for the memory backend, the seeds' bare model (a ct
 *    channel of ids and 4 threads receiving from it, no status, no tokens per job); for SQLite,
 *    the three transactions a durable queue cannot do without (INSERT, claim UPDATE, complete
 *    UPDATE) on one connection in one thread, without ct-jobs.
 * 2. Shutdown: a child process (this program with --child) runs ct-host + ct-jobs with 50 jobs
 *    in flight, each waiting on its token; SIGTERM; per run the time from the last job
 *    observing its token to the process having exited (as seen by waitpid), and from SIGTERM to
 *    exit. SQLite backend (every interrupted job is written back as pending), and the memory
 *    backend as the baseline.
 * 3. PostgreSQL (when a conninfo file is given; `make bench` starts a throw-away server): the
 *    throughput of 1. with its peer (the same three statements with bare libpq, one connection,
 *    one thread), and the cross-process cancel latency: a child process (this program with
 *    --cancel-child) runs one worker; the parent enqueues a job, waits until it runs, calls
 *    ct_jobs_cancel and reads when the job's token fired in the child (CLOCK_MONOTONIC, printed
 *    by the child). Once through LISTEN/NOTIFY, once with the listener off (the heartbeat alone:
 *    the polling path, what the backend would give without NOTIFY), same heartbeat.
 *
 *   bench_jobs [N_memory N_sqlite RUNS [PG_CONNINFO_FILE [N_pg CANCEL_RUNS]]] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "../src/jobs/backend.h" /* ct__jobs_pg_no_listener */
#include "bench_util.h"
#include "ct/chan.h"
#include "ct/host.h"
#include "ct/jobs.h"
#include "ct/wait.h"

#define WORKERS 4

static int64_t *enq_ns, *start_ns;
static int n_jobs;
static int done_count;
static ct_sem_t all_done;

static int trivial(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    (void) tok;
    int64_t i = job->id - 1;
    if (i >= 0 && i < n_jobs)
        start_ns[i] = bench_now_ns();
    if (__atomic_add_fetch(&done_count, 1, __ATOMIC_ACQ_REL) == n_jobs)
        ct_sem_post(&all_done);
    return 0;
}

static void report(const char *name, int n, int64_t elapsed_ns)
{
    int64_t *lat = malloc(sizeof(int64_t) * (size_t) n);
    for (int i = 0; i < n; i++)
        lat[i] = start_ns[i] - enq_ns[i];
    printf("| %s | %d | %.0f | %.3f | %.3f |\n", name, n, n / (elapsed_ns / 1e9),
           bench_percentile(lat, n, 50) / 1e6, bench_percentile(lat, n, 99) / 1e6);
    free(lat);
}

static void throughput_ct_jobs(const char *name, ct_jobs_backend_t backend, const char *path, int n)
{
    /* PostgreSQL: `path` is the conninfo. */
    n_jobs = n;
    done_count = 0;
    ct_sem_init(&all_done, 0);
    ct_jobs_t *q;
    int rc = ct_jobs_new(&q, &(ct_jobs_options_t){.backend = backend,
                                                  .path = path,
                                                  .conninfo = path,
                                                  .handler = trivial,
                                                  .workers = WORKERS});
    if (rc < 0) {
        fprintf(stderr, "ct_jobs_new: %s\n", ct_strerror(rc));
        exit(1);
    }
    ct_jobs_start(q, NULL);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        enq_ns[i] = bench_now_ns();
        int64_t id;
        if ((rc = ct_jobs_enqueue(q, "t", "", NULL, &id)) < 0 || id != i + 1) {
            fprintf(stderr, "enqueue: %s (id %lld)\n", ct_strerror(rc), (long long) id);
            exit(1);
        }
    }
    ct_sem_wait(&all_done, NULL, -1);
    int64_t elapsed = bench_now_ns() - t0;
    ct_jobs_free(q);
    report(name, n, elapsed);
    ct_sem_destroy(&all_done);
}

/* ---- peers ----------------------------------------------------------------------------------- */

static ct_chan_t *peer_chan;

static void *peer_worker(void *arg)
{
    (void) arg;
    int64_t id;
    while (ct_chan_recv(peer_chan, &id, NULL, -1) == 0)
        start_ns[id] = bench_now_ns();
    return NULL;
}

static void throughput_chan_peer(int n)
{
    ct_chan_new(&peer_chan, sizeof(int64_t), CT_CHAN_UNBOUNDED);
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&t[i], NULL, peer_worker, NULL);
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < n; i++) {
        enq_ns[i] = bench_now_ns();
        ct_chan_send(peer_chan, &i, NULL, -1);
    }
    ct_chan_close(peer_chan);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    int64_t elapsed = bench_now_ns() - t0;
    ct_chan_free(peer_chan);
    report("peer: ct channel + 4 threads (the seed's model, no bookkeeping)", n, elapsed);
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
}

static void throughput_sqlite_peer(const char *path, int n)
{
    sqlite3 *db;
    sqlite3_open(path, &db);
    exec_sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "CREATE TABLE q (id INTEGER PRIMARY KEY, payload TEXT, status INT, lease INT);"
                 "CREATE INDEX q_pending ON q (id) WHERE status = 0");
    sqlite3_stmt *ins, *claim, *done;
    sqlite3_prepare_v2(db, "INSERT INTO q (payload, status) VALUES ('', 0)", -1, &ins, NULL);
    sqlite3_prepare_v2(db,
                       "UPDATE q SET status = 1, lease = 1 WHERE id = "
                       "(SELECT id FROM q WHERE status = 0 ORDER BY id LIMIT 1) RETURNING id",
                       -1, &claim, NULL);
    sqlite3_prepare_v2(db, "UPDATE q SET status = 2 WHERE id = ?1 AND lease = 1", -1, &done, NULL);
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        enq_ns[i] = bench_now_ns();
        sqlite3_step(ins);
        sqlite3_reset(ins);
        if (sqlite3_step(claim) != SQLITE_ROW)
            exit(1);
        int64_t id = sqlite3_column_int64(claim, 0);
        sqlite3_step(claim);
        sqlite3_reset(claim);
        start_ns[i] = bench_now_ns();
        sqlite3_bind_int64(done, 1, id);
        sqlite3_step(done);
        sqlite3_reset(done);
    }
    int64_t elapsed = bench_now_ns() - t0;
    sqlite3_finalize(ins);
    sqlite3_finalize(claim);
    sqlite3_finalize(done);
    sqlite3_close(db);
    report("peer: bare SQLite, INSERT + claim UPDATE + complete UPDATE, 1 thread", n, elapsed);
}

/* ---- shutdown with 50 jobs in flight --------------------------------------------------------- */

#define INFLIGHT 50

static int inflight;

static int waiting_job(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    (void) job;
    if (__atomic_add_fetch(&inflight, 1, __ATOMIC_ACQ_REL) == INFLIGHT) {
        ssize_t w = write(1, "inflight\n", 9);
        (void) w;
    }
    int rc = ct_sleep_ms(600000, tok);
    char line[64];
    int n = snprintf(line, sizeof(line), "observed %lld\n", (long long) bench_now_ns());
    ssize_t w = write(1, line, (size_t) n);
    (void) w;
    return rc;
}

static int child(const char *path, int memory)
{
    ct_host_t *host;
    if (ct_host_new(&host, NULL) < 0)
        return 3;
    ct_jobs_t *q;
    if (ct_jobs_new(&q, &(ct_jobs_options_t){.backend = memory ? CT_JOBS_MEMORY : CT_JOBS_SQLITE,
                                             .path = path,
                                             .handler = waiting_job,
                                             .workers = INFLIGHT}) < 0)
        return 3;
    for (int i = 0; i < INFLIGHT; i++)
        ct_jobs_enqueue(q, "wait", "", NULL, NULL);
    ct_host_add(host, &(ct_host_service_t){"jobs", ct_jobs_service_start, ct_jobs_service_stop, q});
    int rc = ct_host_run(host);
    ct_jobs_free(q);
    ct_host_free(host);
    return rc == 0 ? 0 : 2;
}

static void shutdown_runs(const char *self, const char *dir, int memory, int runs)
{
    int64_t *after_last = malloc(sizeof(int64_t) * (size_t) runs);
    int64_t *total = malloc(sizeof(int64_t) * (size_t) runs);
    for (int r = 0; r < runs; r++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/shutdown-%d-%d.db", dir, memory, r);
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
            exit(1);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(fds[1], 1);
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2); /* the host's and the queue's log lines */
            execl(self, self, "--child", path, memory ? "memory" : "sqlite", (char *) NULL);
            _exit(127);
        }
        close(fds[1]);
        char buf[8192];
        size_t len = 0;
        while (!memmem(buf, len, "inflight\n", 9)) {
            ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);
            if (n <= 0) {
                fprintf(stderr, "child ended early\n");
                exit(1);
            }
            len += (size_t) n;
        }
        int64_t t0 = bench_now_ns();
        kill(pid, SIGTERM);
        int st;
        waitpid(pid, &st, 0);
        int64_t t_exit = bench_now_ns();
        ssize_t n;
        while ((n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
            len += (size_t) n;
        buf[len] = '\0';
        close(fds[0]);
        int64_t last = 0;
        int seen = 0;
        for (char *p = buf; (p = strstr(p, "observed ")); p += 9) {
            int64_t t = atoll(p + 9);
            if (t > last)
                last = t;
            seen++;
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || seen != INFLIGHT) {
            fprintf(stderr, "run %d: status %d, %d jobs observed\n", r, st, seen);
            exit(1);
        }
        after_last[r] = t_exit - last;
        total[r] = t_exit - t0;
    }
    printf("| %s | %d | %d | %.2f | %.2f | %.2f | %.2f |\n",
           memory ? "memory (baseline)" : "SQLite", INFLIGHT, runs,
           bench_percentile(after_last, runs, 50) / 1e6,
           bench_percentile(after_last, runs, 99) / 1e6, bench_percentile(total, runs, 50) / 1e6,
           bench_percentile(total, runs, 99) / 1e6);
    free(after_last);
    free(total);
}

/* ---- PostgreSQL ------------------------------------------------------------------------------ */

static PGconn *pg_open(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pg: %s\n", PQerrorMessage(c));
        exit(1);
    }
    return c;
}

static void pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "pg: %s: %s\n", sql, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

/* A fresh schema for one measurement; *conninfo selects it. */
static void pg_schema(const char *base, const char *name, char *conninfo, size_t size)
{
    PGconn *c = pg_open(base);
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", name, name);
    pg_exec(c, sql);
    PQfinish(c);
    snprintf(conninfo, size, "%s options=-csearch_path=%s", base, name);
}

static void throughput_pg_peer(const char *conninfo, int n)
{
    PGconn *c = pg_open(conninfo);
    pg_exec(c, "CREATE TABLE q (id bigserial PRIMARY KEY, payload text, status int, lease bigint);"
               "CREATE INDEX q_pending ON q (id) WHERE status = 0");
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        enq_ns[i] = bench_now_ns();
        pg_exec(c, "INSERT INTO q (payload, status) VALUES ('', 0)");
        PGresult *r = PQexec(c, "UPDATE q SET status = 1, lease = 1 WHERE id = (SELECT id FROM q"
                                " WHERE status = 0 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                                " RETURNING id");
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
            exit(1);
        const char *id[] = {PQgetvalue(r, 0, 0)};
        start_ns[i] = bench_now_ns();
        PGresult *d = PQexecParams(c, "UPDATE q SET status = 2 WHERE id = $1 AND lease = 1", 1,
                                   NULL, id, NULL, NULL, 0);
        if (PQresultStatus(d) != PGRES_COMMAND_OK)
            exit(1);
        PQclear(d);
        PQclear(r);
    }
    int64_t elapsed = bench_now_ns() - t0;
    PQfinish(c);
    report("peer: bare libpq, INSERT + claim UPDATE (SKIP LOCKED) + complete UPDATE, 1 thread", n,
           elapsed);
}

/* The child of the cancel measurement: one worker; each job says it runs, waits on its token and
 * prints when it saw it fire. Ends when its stdin closes. */
static int say_line(const char *what, long long a, long long b)
{
    char line[96];
    int n = snprintf(line, sizeof(line), "%s %lld %lld\n", what, a, b);
    return write(1, line, (size_t) n) == n ? 0 : -1;
}

static int cancel_job(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    say_line("run", (long long) job->id, 0);
    int rc = ct_sleep_ms(600000, tok);
    say_line("fired", (long long) job->id, (long long) bench_now_ns());
    return rc;
}

static int cancel_child(const char *conninfo, int64_t heartbeat, int nolisten)
{
    ct__jobs_pg_no_listener = nolisten;
    ct_jobs_t *q;
    int rc = ct_jobs_new(&q, &(ct_jobs_options_t){.backend = CT_JOBS_POSTGRES,
                                                  .conninfo = conninfo,
                                                  .handler = cancel_job,
                                                  .workers = 1,
                                                  .lease_ms = 3 * heartbeat,
                                                  .heartbeat_ms = heartbeat,
                                                  .poll_ms = 5});
    if (rc < 0 || ct_jobs_start(q, NULL) < 0)
        return 3;
    char buf[64];
    while (read(0, buf, sizeof(buf)) > 0)
        ;
    ct_jobs_free(q);
    return 0;
}

/* Read lines from the child until one starts with `want` "<id> "; returns its second number. */
static int64_t await_line(int fd, char *buf, size_t *len, size_t cap, const char *want, int64_t id)
{
    char needle[48];
    snprintf(needle, sizeof(needle), "%s %lld ", want, (long long) id);
    for (;;) {
        buf[*len] = '\0';
        char *at = strstr(buf, needle);
        char *eol = at ? strchr(at, '\n') : NULL;
        if (eol) {
            int64_t v = atoll(at + strlen(needle));
            size_t rest = *len - (size_t) (eol + 1 - buf);
            memmove(buf, eol + 1, rest);
            *len = rest;
            return v;
        }
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n <= 0) {
            fprintf(stderr, "cancel child ended early\n");
            exit(1);
        }
        *len += (size_t) n;
    }
}

static int never_run(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    (void) job;
    (void) tok;
    return -EIO;
}

static void cancel_latency(const char *base, const char *name, int64_t heartbeat, int nolisten,
                           int runs)
{
    char conninfo[600], hb[24];
    pg_schema(base, name, conninfo, sizeof(conninfo));
    ct_jobs_t *q;
    if (ct_jobs_new(&q, &(ct_jobs_options_t){.backend = CT_JOBS_POSTGRES,
                                             .conninfo = conninfo,
                                             .handler = never_run}) < 0)
        exit(1);
    snprintf(hb, sizeof(hb), "%lld", (long long) heartbeat);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl("/proc/self/exe", "bench_jobs", "--cancel-child", conninfo, hb, nolisten ? "1" : "0",
              (char *) NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    int64_t *lat = malloc(sizeof(int64_t) * (size_t) runs);
    char buf[4096];
    size_t len = 0;
    unsigned seed = 1;
    for (int r = 0; r < runs; r++) {
        int64_t id;
        if (ct_jobs_enqueue(q, "wait", "", NULL, &id) < 0)
            exit(1);
        await_line(out[0], buf, &len, sizeof(buf), "run", id);
        /* A random phase against the heartbeat, as a user's cancel would have: otherwise every
         * job would start just after the beat that delivered the previous cancel. (NOTIFY does
         * not depend on it; a short pause is enough there.) */
        ct_sleep_ms(rand_r(&seed) % (nolisten ? heartbeat : 20), NULL);
        int64_t t0 = bench_now_ns();
        if (ct_jobs_cancel(q, id) != 1)
            exit(1);
        lat[r] = await_line(out[0], buf, &len, sizeof(buf), "fired", id) - t0;
    }
    close(in[1]);
    int st;
    waitpid(pid, &st, 0);
    close(out[0]);
    ct_jobs_free(q);
    printf("| %s | %lld | %d | %.2f | %.2f | %.2f |\n",
           nolisten ? "heartbeat only (listener off: the polling path)" : "LISTEN/NOTIFY",
           (long long) heartbeat, runs, bench_percentile(lat, runs, 50) / 1e6,
           bench_percentile(lat, runs, 99) / 1e6, bench_percentile(lat, runs, 100) / 1e6);
    free(lat);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child") == 0)
        return child(argv[2], strcmp(argv[3], "memory") == 0);
    if (argc == 5 && strcmp(argv[1], "--cancel-child") == 0)
        return cancel_child(argv[2], atoll(argv[3]), atoi(argv[4]));
    int n_mem = argc > 1 ? atoi(argv[1]) : 200000;
    int n_sql = argc > 2 ? atoi(argv[2]) : 20000;
    int runs = argc > 3 ? atoi(argv[3]) : 20;
    int n_max = n_mem > n_sql ? n_mem : n_sql;
    enq_ns = calloc((size_t) n_max, sizeof(int64_t));
    start_ns = calloc((size_t) n_max, sizeof(int64_t));
    char dir[] = "/tmp/bench-jobs-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256];

    printf("## trivial jobs, enqueue -> completed, %d workers\n\n", WORKERS);
    printf("| queue | jobs | jobs/s | enqueue -> start p50 ms | p99 ms "
           "|\n|---|---:|---:|---:|---:|\n");
    throughput_ct_jobs("ct-jobs memory", CT_JOBS_MEMORY, NULL, n_mem);
    throughput_chan_peer(n_mem);
    snprintf(path, sizeof(path), "%s/throughput.db", dir);
    throughput_ct_jobs("ct-jobs SQLite", CT_JOBS_SQLITE, path, n_sql);
    snprintf(path, sizeof(path), "%s/peer.db", dir);
    throughput_sqlite_peer(path, n_sql);

    printf("\n## SIGTERM -> process exit with %d jobs in flight (ct-host + ct-jobs, %d runs)\n\n",
           INFLIGHT, runs);
    printf("| backend | jobs in flight | runs | last job saw its token -> exit p50 ms | p99 ms | "
           "SIGTERM -> exit p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
    shutdown_runs("/proc/self/exe", dir, 1, runs);
    shutdown_runs("/proc/self/exe", dir, 0, runs);

    if (argc > 4) {
        char base[512] = "", conninfo[600];
        FILE *f = fopen(argv[4], "r");
        if (!f || !fgets(base, sizeof(base), f)) {
            fprintf(stderr, "cannot read the conninfo in %s\n", argv[4]);
            return 1;
        }
        fclose(f);
        base[strcspn(base, "\n")] = '\0';
        int n_pg = argc > 5 ? atoi(argv[5]) : 10000;
        int cancel_runs = argc > 6 ? atoi(argv[6]) : 200;
        if (n_pg > n_max) {
            enq_ns = realloc(enq_ns, sizeof(int64_t) * (size_t) n_pg);
            start_ns = realloc(start_ns, sizeof(int64_t) * (size_t) n_pg);
        }
        printf("\n## PostgreSQL: trivial jobs, enqueue -> completed, %d workers\n\n", WORKERS);
        printf("| queue | jobs | jobs/s | enqueue -> start p50 ms | p99 ms "
               "|\n|---|---:|---:|---:|---:|\n");
        pg_schema(base, "bench_jobs_tp", conninfo, sizeof(conninfo));
        throughput_ct_jobs("ct-jobs PostgreSQL", CT_JOBS_POSTGRES, conninfo, n_pg);
        pg_schema(base, "bench_jobs_peer", conninfo, sizeof(conninfo));
        throughput_pg_peer(conninfo, n_pg);

        printf("\n## PostgreSQL: ct_jobs_cancel in one process -> the running job's token fired in "
               "another\n\n");
        printf("| path | heartbeat ms | runs | p50 ms | p99 ms | max ms "
               "|\n|---|---:|---:|---:|---:|---:|\n");
        cancel_latency(base, "bench_jobs_notify", 1000, 0, cancel_runs);
        cancel_latency(base, "bench_jobs_poll", 1000, 1,
                       cancel_runs / 4 > 10 ? cancel_runs / 4 : 10);
    }

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
