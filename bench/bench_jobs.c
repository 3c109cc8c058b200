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
 *
 *   bench_jobs [N_memory N_sqlite RUNS] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

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
    n_jobs = n;
    done_count = 0;
    ct_sem_init(&all_done, 0);
    ct_jobs_t *q;
    int rc = ct_jobs_new(
        &q, &(ct_jobs_options_t){
                .backend = backend, .path = path, .handler = trivial, .workers = WORKERS});
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

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child") == 0)
        return child(argv[2], strcmp(argv[3], "memory") == 0);
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

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
