/* ct-jobs' SQLite backend: one table in one file, shared by every process that opens it.
 *
 * One connection per queue, used by one thread at a time (a one-permit ct semaphore, whose wait
 * stops when the caller's token fires). SQLite serializes writers anyway, and one connection
 * keeps every statement prepared once: a claim, a finish or an enqueue is one short transaction
 * (WAL, synchronous=NORMAL: no fsync per commit).
 *
 * Claims run in BEGIN IMMEDIATE, so two processes never read the same candidate and both take
 * it: the write lock is taken before the read, and the other process waits in ct-sqlite's busy
 * handler (on its token). Leases are wall-clock times so that they mean the same to every
 * process and across a restart. Every change after the claim names (id, attempts, lease_token):
 * a worker whose lease expired and whose job was claimed again finds no row and gets -ESTALE.
 *
 * Idle workers of this process are woken by an enqueue here (a condition variable); jobs
 * enqueued by another process, and expired leases, are found by polling (poll_ms). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../core/internal.h"
#include "backend.h"
#include "ct/sqlite.h"
#include "ct/time.h"
#include "ct/wait.h"

#define SCHEMA                                                                                     \
    "CREATE TABLE IF NOT EXISTS ct_jobs ("                                                         \
    " id INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL,"                          \
    " status INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT "     \
    "NULL,"                                                                                        \
    " run_at INTEGER NOT NULL, enqueued_at INTEGER NOT NULL, started_at INTEGER NOT NULL DEFAULT " \
    "0,"                                                                                           \
    " finished_at INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_token INTEGER,"              \
    " lease_expires INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0,"                         \
    " last_error TEXT NOT NULL DEFAULT '');"                                                       \
    "CREATE INDEX IF NOT EXISTS ct_jobs_due ON ct_jobs(run_at) WHERE status IN (0, 5);"            \
    "CREATE INDEX IF NOT EXISTS ct_jobs_leases ON ct_jobs(lease_expires) WHERE status = 1;"        \
    "CREATE INDEX IF NOT EXISTS ct_jobs_finished ON ct_jobs(finished_at)"                          \
    " WHERE status IN (2, 3, 4);"

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_ENQUEUE,
    S_EXPIRE,
    S_CLAIM,
    S_RENEW,
    S_FINISH,
    S_CANCEL_PENDING,
    S_CANCEL_RUNNING,
    S_GET,
    S_NEXT_DUE,
    S_PEEK,
    S_PRUNE,
    S_COUNT
};

static const char *const sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_ENQUEUE] = "INSERT INTO ct_jobs (kind, payload, status, max_attempts, run_at, enqueued_at)"
                  " VALUES (?1, ?2, 0, ?3, ?4, ?5)",
    /* A job whose worker vanished after its last attempt has no attempt left to run. */
    [S_EXPIRE] = "UPDATE ct_jobs SET status = 4, finished_at = ?1, lease_owner = NULL,"
                 " lease_token = NULL, lease_expires = NULL,"
                 " last_error = 'lease expired on the last attempt'"
                 " WHERE status = 1 AND lease_expires < ?1 AND attempts >= max_attempts",
    [S_CLAIM] = "UPDATE ct_jobs SET status = 1, attempts = attempts + 1, lease_owner = ?2,"
                " lease_token = ?3, lease_expires = ?1 + ?4, started_at = ?1"
                " WHERE id = coalesce("
                "  (SELECT id FROM ct_jobs WHERE status = 1 AND lease_expires < ?1 LIMIT 1),"
                "  (SELECT id FROM ct_jobs WHERE status IN (0, 5) AND run_at <= ?1"
                "   ORDER BY run_at LIMIT 1))"
                " RETURNING id, kind, payload, attempts, max_attempts, cancel_requested",
    [S_RENEW] = "UPDATE ct_jobs SET lease_expires = ?1 + ?2"
                " WHERE id = ?3 AND status = 1 AND attempts = ?4 AND lease_token = ?5"
                " RETURNING cancel_requested",
    /* ?6: 1 when the attempt does not count (shutdown). */
    [S_FINISH] = "UPDATE ct_jobs SET status = ?1, finished_at = ?2, run_at = coalesce(?3, run_at),"
                 " last_error = coalesce(?4, last_error), attempts = attempts - ?6,"
                 " lease_owner = NULL, lease_token = NULL, lease_expires = NULL"
                 " WHERE id = ?5 AND status = 1 AND attempts = ?7 AND lease_token = ?8",
    [S_CANCEL_PENDING] = "UPDATE ct_jobs SET status = 3, finished_at = ?2"
                         " WHERE id = ?1 AND status IN (0, 5)",
    [S_CANCEL_RUNNING] = "UPDATE ct_jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 1",
    [S_GET] = "SELECT status, attempts, max_attempts, enqueued_at, started_at, finished_at,"
              " run_at, cancel_requested, kind, last_error FROM ct_jobs WHERE id = ?1",
    [S_NEXT_DUE] = "SELECT min(run_at) FROM ct_jobs WHERE status IN (0, 5)",
    /* Is there anything to claim? A read, so that idle workers polling the file do not take
     * the write lock every poll_ms. */
    [S_PEEK] = "SELECT EXISTS (SELECT 1 FROM ct_jobs WHERE status IN (0, 5) AND run_at <= ?1)"
               " OR EXISTS (SELECT 1 FROM ct_jobs WHERE status = 1 AND lease_expires < ?1)",
    /* The oldest finished jobs past their retention (?1: finished before), ?2 at most. */
    [S_PRUNE] = "DELETE FROM ct_jobs WHERE id IN (SELECT id FROM ct_jobs"
                " WHERE status IN (2, 3, 4) AND finished_at < ?1 ORDER BY finished_at LIMIT ?2)",
};

struct sq {
    struct ct__jobs_backend base;
    ct_sqlite_t *db;
    sqlite3_stmt *st[S_COUNT];
    ct_sem_t lock;                 /* one permit: the connection */
    struct ct__jobs_doorbell bell; /* an enqueue or a requeue here: idle claims look again */
    uint64_t lease_base;
    uint64_t lease_seq; /* atomic */
};

static struct sq *S(struct ct__jobs_backend *be)
{
    return (struct sq *) be;
}

static int lock(struct sq *s, const ct_token_t *tok)
{
    return ct_sem_wait(&s->lock, tok, -1);
}

static void unlock(struct sq *s)
{
    ct_sem_post(&s->lock);
}

/* Run a statement without rows (or skipping them); returns 0 or a negative errno. */
static int run(struct sq *s, int i, const ct_token_t *tok)
{
    int rc;
    while ((rc = ct_sqlite_step(s->db, s->st[i], tok)) == 1)
        ;
    return rc;
}

static int begin(struct sq *s, const ct_token_t *tok)
{
    return run(s, S_BEGIN, tok);
}

/* Commit, or roll back after `rc` < 0. Returns rc, or the commit's error. */
static int end(struct sq *s, int rc)
{
    if (rc >= 0) {
        int c = run(s, S_COMMIT, NULL);
        if (c == 0)
            return rc;
        rc = c;
    }
    run(s, S_ROLLBACK, NULL);
    return rc;
}

static int sq_enqueue(struct ct__jobs_backend *be, const char *kind, const char *payload,
                      int max_attempts, int64_t now, int64_t run_at, int64_t *id)
{
    struct sq *s = S(be);
    int rc = lock(s, NULL);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = s->st[S_ENQUEUE];
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, payload, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, max_attempts);
    sqlite3_bind_int64(st, 4, run_at);
    sqlite3_bind_int64(st, 5, now);
    rc = run(s, S_ENQUEUE, NULL);
    if (rc == 0)
        *id = sqlite3_last_insert_rowid(ct_sqlite_handle(s->db));
    sqlite3_clear_bindings(st);
    unlock(s);
    if (rc == 0)
        ct__jobs_doorbell_ring(&s->bell);
    return rc;
}

/* The earliest run_at of a job waiting for its time, in *next_due (-1 none).
 * Returns -EAGAIN (nothing to claim now) or a negative errno. */
static int next_due_of(struct sq *s, const ct_token_t *tok, int64_t *next_due)
{
    *next_due = -1;
    int rc = ct_sqlite_step(s->db, s->st[S_NEXT_DUE], tok);
    if (rc == 1) {
        if (sqlite3_column_type(s->st[S_NEXT_DUE], 0) != SQLITE_NULL)
            *next_due = sqlite3_column_int64(s->st[S_NEXT_DUE], 0);
        rc = run(s, S_NEXT_DUE, tok);
    }
    return rc < 0 ? rc : -EAGAIN;
}

/* One claim transaction. Returns 0 and *c; -EAGAIN nothing due; *next_due the earliest run_at of
 * a waiting job (-1 none); other negative errno. Called holding the connection. */
static int try_claim(struct sq *s, const char *worker, int64_t lease_ms, struct ct__jobs_claim *c,
                     const ct_token_t *tok, int64_t *next_due)
{
    int64_t now = ct__jobs_wall_ms();
    sqlite3_bind_int64(s->st[S_PEEK], 1, now);
    int rc = ct_sqlite_step(s->db, s->st[S_PEEK], tok);
    if (rc == 1) {
        int any = sqlite3_column_int(s->st[S_PEEK], 0);
        rc = run(s, S_PEEK, tok);
        if (rc == 0 && !any)
            return next_due_of(s, tok, next_due);
    }
    if (rc < 0)
        return rc;
    if ((rc = begin(s, tok)) < 0)
        return rc;
    sqlite3_bind_int64(s->st[S_EXPIRE], 1, now);
    if ((rc = run(s, S_EXPIRE, tok)) < 0)
        return end(s, rc);
    sqlite3_stmt *st = s->st[S_CLAIM];
    int64_t lease =
        (int64_t) (s->lease_base + __atomic_add_fetch(&s->lease_seq, 1, __ATOMIC_RELAXED));
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, worker, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, lease);
    sqlite3_bind_int64(st, 4, lease_ms);
    rc = ct_sqlite_step(s->db, st, tok);
    if (rc == 1) {
        *c = (struct ct__jobs_claim){.id = sqlite3_column_int64(st, 0),
                                     .kind = ct__strdup((const char *) sqlite3_column_text(st, 1)),
                                     .payload =
                                         ct__strdup((const char *) sqlite3_column_text(st, 2)),
                                     .attempt = sqlite3_column_int(st, 3),
                                     .max_attempts = sqlite3_column_int(st, 4),
                                     .cancel_requested = sqlite3_column_int(st, 5),
                                     .lease = lease};
        rc = run(s, S_CLAIM, tok); /* to the end of the statement */
        if (rc == 0 && (!c->kind || !c->payload))
            rc = -ENOMEM;
        if ((rc = end(s, rc)) < 0) /* rolled back: the job was not claimed */
            ct__jobs_claim_clear(c);
        return rc;
    }
    rc = end(s, rc); /* nothing was claimed (a due job went to another process) */
    return rc < 0 ? rc : next_due_of(s, tok, next_due);
}

static int sq_claim(struct ct__jobs_backend *be, const char *worker, int64_t lease_ms,
                    struct ct__jobs_claim *c, const ct_token_t *tok, int64_t deadline)
{
    struct sq *s = S(be);
    for (;;) {
        uint64_t seen = ct__jobs_doorbell_rings(&s->bell);
        int rc = lock(s, tok);
        if (rc < 0)
            return rc;
        int64_t next_due = -1;
        rc = try_claim(s, worker, lease_ms, c, tok, &next_due);
        unlock(s);
        if (rc != -EAGAIN)
            return rc;
        /* Nothing due: next_due is wall-clock ms (another process may have set it). */
        int64_t now = ct__jobs_wall_ms();
        int64_t due_in = next_due < 0 ? -1 : next_due > now ? next_due - now : 0;
        if ((rc = ct__jobs_doorbell_wait(&s->bell, seen, tok, deadline, due_in)) < 0)
            return rc;
    }
}

static int sq_renew(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int64_t lease_ms)
{
    struct sq *s = S(be);
    int rc = lock(s, NULL);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = s->st[S_RENEW];
    sqlite3_bind_int64(st, 1, ct__jobs_wall_ms());
    sqlite3_bind_int64(st, 2, lease_ms);
    sqlite3_bind_int64(st, 3, c->id);
    sqlite3_bind_int(st, 4, c->attempt);
    sqlite3_bind_int64(st, 5, c->lease);
    rc = ct_sqlite_step(s->db, st, NULL);
    if (rc == 1) {
        int cancel = sqlite3_column_int(st, 0);
        rc = run(s, S_RENEW, NULL);
        rc = rc < 0 ? rc : cancel ? 1 : 0;
    } else if (rc == 0) {
        rc = -ESTALE;
    }
    unlock(s);
    return rc;
}

static int sq_finish(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int outcome,
                     int64_t run_at, const char *error)
{
    struct sq *s = S(be);
    int rc = lock(s, NULL);
    if (rc < 0)
        return rc;
    int64_t now = ct__jobs_wall_ms();
    bool final = outcome == CT__JOB_DONE || outcome == CT__JOB_FAIL || outcome == CT__JOB_CANCEL;
    sqlite3_stmt *st = s->st[S_FINISH];
    sqlite3_bind_int(st, 1, ct__jobs_outcome_status[outcome]);
    sqlite3_bind_int64(st, 2, final ? now : 0);
    if (outcome == CT__JOB_RETRY)
        sqlite3_bind_int64(st, 3, run_at);
    else
        sqlite3_bind_null(st, 3);
    if (error && outcome != CT__JOB_RELEASE)
        sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, c->id);
    sqlite3_bind_int(st, 6, outcome == CT__JOB_RELEASE);
    sqlite3_bind_int(st, 7, c->attempt);
    sqlite3_bind_int64(st, 8, c->lease);
    rc = run(s, S_FINISH, NULL);
    if (rc == 0 && sqlite3_changes(ct_sqlite_handle(s->db)) == 0)
        rc = -ESTALE;
    sqlite3_clear_bindings(st);
    unlock(s);
    if (rc == 0 && !final)
        ct__jobs_doorbell_ring(&s->bell);
    return rc;
}

static int sq_cancel(struct ct__jobs_backend *be, int64_t id)
{
    struct sq *s = S(be);
    int rc = lock(s, NULL);
    if (rc < 0)
        return rc;
    sqlite3 *h = ct_sqlite_handle(s->db);
    if ((rc = begin(s, NULL)) < 0)
        goto out;
    sqlite3_bind_int64(s->st[S_CANCEL_PENDING], 1, id);
    sqlite3_bind_int64(s->st[S_CANCEL_PENDING], 2, ct__jobs_wall_ms());
    if ((rc = run(s, S_CANCEL_PENDING, NULL)) < 0)
        goto done;
    if (sqlite3_changes(h) > 0) {
        rc = 0;
        goto done;
    }
    sqlite3_bind_int64(s->st[S_CANCEL_RUNNING], 1, id);
    if ((rc = run(s, S_CANCEL_RUNNING, NULL)) < 0)
        goto done;
    if (sqlite3_changes(h) > 0) {
        rc = 1;
        goto done;
    }
    sqlite3_bind_int64(s->st[S_GET], 1, id);
    rc = ct_sqlite_step(s->db, s->st[S_GET], NULL);
    sqlite3_reset(s->st[S_GET]);
    rc = rc == 1 ? -EALREADY : rc == 0 ? -ENOENT : rc;
done:
    if (rc == -EALREADY || rc == -ENOENT) {
        int e = end(s, 0);
        if (e < 0)
            rc = e;
    } else {
        rc = end(s, rc);
    }
out:
    unlock(s);
    return rc;
}

static int sq_get(struct ct__jobs_backend *be, int64_t id, ct_job_info_t *out)
{
    struct sq *s = S(be);
    int rc = lock(s, NULL);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = s->st[S_GET];
    sqlite3_bind_int64(st, 1, id);
    rc = ct_sqlite_step(s->db, st, NULL);
    if (rc == 1) {
        *out = (ct_job_info_t){.status = sqlite3_column_int(st, 0),
                               .attempts = sqlite3_column_int(st, 1),
                               .max_attempts = sqlite3_column_int(st, 2),
                               .enqueued_at_ms = sqlite3_column_int64(st, 3),
                               .started_at_ms = sqlite3_column_int64(st, 4),
                               .finished_at_ms = sqlite3_column_int64(st, 5),
                               .run_at_ms = sqlite3_column_int64(st, 6),
                               .cancel_requested = sqlite3_column_int(st, 7)};
        snprintf(out->kind, sizeof(out->kind), "%s", (const char *) sqlite3_column_text(st, 8));
        snprintf(out->last_error, sizeof(out->last_error), "%s",
                 (const char *) sqlite3_column_text(st, 9));
        rc = run(s, S_GET, NULL);
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    unlock(s);
    return rc;
}

static int64_t sq_prune(struct ct__jobs_backend *be, int64_t retain_ms, int max,
                        const ct_token_t *tok)
{
    struct sq *s = S(be);
    int rc = lock(s, tok);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s->st[S_PRUNE], 1, ct__jobs_wall_ms() - retain_ms);
    sqlite3_bind_int(s->st[S_PRUNE], 2, max);
    int64_t n = run(s, S_PRUNE, tok);
    if (n == 0)
        n = sqlite3_changes(ct_sqlite_handle(s->db));
    unlock(s);
    return n;
}

static void sq_free(struct ct__jobs_backend *be)
{
    struct sq *s = S(be);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    ct_sqlite_close(s->db);
    ct_sem_destroy(&s->lock);
    ct__jobs_doorbell_destroy(&s->bell);
    ct__free(s);
}

static const struct ct__jobs_backend_ops sq_ops = {
    .enqueue = sq_enqueue,
    .claim = sq_claim,
    .renew = sq_renew,
    .finish = sq_finish,
    .cancel = sq_cancel,
    .get = sq_get,
    .prune = sq_prune,
    .pending = NULL, /* durable: nothing is dropped */
    .free = sq_free,
};

int ct__jobs_sqlite_new(struct ct__jobs_backend **out, const char *path)
{
    struct sq *s = ct__calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    ct_sem_init(&s->lock, 1);
    ct__jobs_doorbell_init(&s->bell);
    s->base.ops = &sq_ops;
    s->lease_base = ct__jobs_lease_base();
    int rc = ct_sqlite_open(&s->db, path, NULL);
    if (rc < 0)
        goto fail;
    if ((rc = ct_sqlite_exec(s->db, "BEGIN IMMEDIATE; " SCHEMA " COMMIT", NULL)) < 0) {
        ct_sqlite_exec(s->db, "ROLLBACK", NULL);
        goto fail;
    }
    for (int i = 0; i < S_COUNT; i++)
        if ((rc = ct_sqlite_prepare(s->db, &s->st[i], sql[i])) < 0)
            goto fail;
    *out = &s->base;
    return 0;
fail:
    sq_free(&s->base);
    return rc;
}
