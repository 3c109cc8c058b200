/* ct/jobs.h — a job queue with workers: enqueue a named job with a payload, N workers run it
 * with a token, its status can be read and it can be canceled by id, failures are retried with
 * exponential backoff (the seeds' channel-backed BackgroundWorker, made durable).
 *
 *   static int send_mail(void *arg, const ct_job_t *job, const ct_token_t *tok)
 *   {
 *       return smtp_send(job->payload, tok);    // 0 done; -ECANCELED when tok fired; < 0 retry
 *   }
 *
 *   ct_jobs_t *jobs;
 *   ct_jobs_new(&jobs, &(ct_jobs_options_t){.path = "data/jobs.db", .workers = 4,
 *                                           .handler = send_mail});
 *   ct_jobs_start(jobs, ct_host_stopping(host));     // or ct_host_add(host, &svc) below
 *   int64_t id;
 *   ct_jobs_enqueue(jobs, "mail", "{\"to\":\"a@b\"}", NULL, &id);
 *   ...
 *   ct_jobs_stop(jobs, deadline_tok);                // interrupted jobs go back to pending
 *   ct_jobs_free(jobs);
 *
 * Backends. SQLite (the default: `path` names the file) is durable: jobs survive a restart, and
 * several processes may share one file. PostgreSQL (CT_JOBS_POSTGRES: `conninfo`) is durable and
 * shared by processes on several machines; a cancel reaches another process by LISTEN/NOTIFY.
 * The memory backend (CT_JOBS_MEMORY) is the seeds' ct channel: fast, not durable, one process.
 * All keep the same contract apart from durability.
 *
 * Guarantees (docs/jobs.md has the details):
 *   - at least once: a job runs until one attempt returns 0 (completed), it is canceled, or
 *     max_attempts attempts have failed (failed). A job may run again after a crash or a lost
 *     lease, so a handler must be safe to re-run (idempotent, or checking what it already did);
 *   - a job interrupted by shutdown (its token fired with CT_SHUTDOWN and it returned
 *     -ECANCELED) goes back to pending, and that attempt does not count;
 *   - SQLite, PostgreSQL: a running job holds a lease renewed by a heartbeat; if its process
 *     dies, the job runs again once the lease has expired, never before; a worker that lost its
 *     lease sees its token fire, and its late result changes nothing. PostgreSQL leases run on
 *     the database server's clock;
 *   - cancel by id: a pending job never runs (canceled); a running job's token fires with
 *     CT_CANCELED — at once in this process; from another process within heartbeat_ms
 *     (SQLite), or as soon as the notification arrives (PostgreSQL; heartbeat_ms at worst).
 *
 * Ownership: ct_jobs_new() gives the caller the queue; ct_jobs_free() releases it. */
#ifndef CT_JOBS_H
#define CT_JOBS_H

#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_jobs ct_jobs_t;

typedef enum ct_job_status {
    CT_JOB_PENDING = 0,   /* waiting for a worker */
    CT_JOB_RUNNING = 1,   /* a worker holds it */
    CT_JOB_COMPLETED = 2, /* an attempt returned 0 (final) */
    CT_JOB_CANCELED = 3,  /* canceled by id (final) */
    CT_JOB_FAILED = 4,    /* max_attempts attempts failed (final) */
    CT_JOB_REQUEUED = 5   /* an attempt failed; runs again at run_at (backoff) */
} ct_job_status_t;

/* What a handler gets. The strings are valid while the handler runs. */
typedef struct ct_job {
    int64_t id;
    const char *kind;
    const char *payload;
    int attempt; /* 1 for the first attempt */
    int max_attempts;
} ct_job_t;

/* Run one attempt of `job`. `tok` fires with CT_SHUTDOWN (the host or ct_jobs_stop), with
 * CT_CANCELED (ct_jobs_cancel, or the lease was lost: detail "lease lost"). Return 0 when done;
 * -ECANCELED when stopped by the token; any other negative errno to have it retried. */
typedef int (*ct_job_fn)(void *arg, const ct_job_t *job, const ct_token_t *tok);

typedef enum ct_jobs_backend {
    CT_JOBS_SQLITE = 0, /* the default: `path` */
    CT_JOBS_MEMORY = 1,
    CT_JOBS_POSTGRES = 2 /* `conninfo` */
} ct_jobs_backend_t;

/* ct_jobs_options_t.retain_ms: finished jobs are never deleted. */
#define CT_JOBS_KEEP_FOREVER (-1)

typedef struct ct_jobs_options {
    ct_jobs_backend_t backend;
    const char *path;       /* SQLite file (created if missing) */
    ct_job_fn handler;      /* required */
    void *arg;              /* handler's */
    unsigned workers;       /* concurrent jobs in this process, 1..256 (default 4) */
    int max_attempts;       /* default for enqueue, 1..1000 (default 5) */
    int64_t backoff_ms;     /* first retry delay; doubles per attempt (default 1 000) */
    int64_t backoff_max_ms; /* cap (default 300 000) */
    int64_t lease_ms;       /* SQLite, PG: a running job's lease (default 30 000, min 100) */
    int64_t heartbeat_ms;   /* SQLite, PG: lease renewal and cancel polling (default lease_ms/3) */
    int64_t poll_ms;        /* SQLite, PG: idle workers look for other processes' jobs (def. 200) */
    /* Finished jobs (completed, canceled, failed) are deleted this long after they finished, by
     * the heartbeat, a batch at a time; ct_jobs_get() then returns -ENOENT. 1..CT_TIMEOUT_MAX_MS
     * (default 86 400 000: a day); CT_JOBS_KEEP_FOREVER: never (delete them yourself). */
    int64_t retain_ms;
    void (*log)(void *arg, const char *line); /* NULL: stderr */
    void *log_arg;
    /* CT_JOBS_POSTGRES: a libpq conninfo ("host=... dbname=..." or a postgresql:// URL). The table
     * ct_jobs is created (if missing) in the connection's current schema, so queues that must
     * not see each other's jobs use different databases or schemas, e.g. with
     * "options=-csearch_path=myqueue" (the schema must exist). Copied. */
    const char *conninfo;
} ct_jobs_options_t;

/* Per-job options for ct_jobs_enqueue(). */
typedef struct ct_job_options {
    int max_attempts; /* 0: the queue's default; 1..1000 */
    int64_t delay_ms; /* run no earlier than this from now; 0..CT_TIMEOUT_MAX_MS */
} ct_job_options_t;

/* A job's state. Times are wall-clock ms since the epoch (they outlive the process); 0 = never. */
typedef struct ct_job_info {
    ct_job_status_t status;
    int attempts; /* attempts that counted (a shutdown interruption does not) */
    int max_attempts;
    int64_t enqueued_at_ms, started_at_ms, finished_at_ms, run_at_ms;
    int cancel_requested;
    char kind[64];        /* cut to fit */
    char last_error[128]; /* the last failed attempt's error text, "" if none */
} ct_job_info_t;

/* Create a queue (opening or creating the SQLite file; PostgreSQL: connecting, and creating the
 * table if missing). Workers start with ct_jobs_start().
 * Returns: 0 and *out; -EINVAL (no handler, a value out of range, no path for SQLite, no conninfo
 * for PostgreSQL); -ENOMEM; errors of ct_sqlite_open (-ENOENT, -EACCES, -EIO, -EBUSY); PostgreSQL:
 * -ECONNREFUSED, -EIO (connect or DDL failed: no such schema, no privilege), -ETIMEDOUT (10 s).
 * Ownership: ct_jobs_free(). Thread: any. */
int ct_jobs_new(ct_jobs_t **out, const ct_jobs_options_t *o);

/* Start the workers (and the heartbeat). Each job's token is linked to `stopping` (the host's
 * stopping token; may be NULL), to the queue's own stop and to its cancel handle. Once
 * `stopping` fires, enqueue returns -ESHUTDOWN.
 * Returns: 0; -EBUSY if started before; -EAGAIN (no thread); -ENOMEM. Thread: the owner. */
int ct_jobs_start(ct_jobs_t *q, const ct_token_t *stopping);

/* Stop: enqueue returns -ESHUTDOWN from now on, the running jobs' tokens fire with CT_SHUTDOWN,
 * and this waits for the workers. A job that returns -ECANCELED is put back as pending without
 * counting the attempt. If `tok` fires first (a shutdown deadline), the workers still running
 * are left to finish on their own and their jobs' leases expire (SQLite, PG) — call ct_jobs_free()
 * only when the process is about to exit then, or not at all.
 * Returns: 0 every worker stopped; -ECANCELED `tok` fired first. Thread: the owner. */
int ct_jobs_stop(ct_jobs_t *q, const ct_token_t *tok);

/* The same two calls, with the signatures of a ct_host_service_t (arg is the ct_jobs_t *):
 *   ct_host_add(host, &(ct_host_service_t){"jobs", ct_jobs_service_start,
 *                                           ct_jobs_service_stop, jobs}); */
int ct_jobs_service_start(void *q, const ct_token_t *stopping);
int ct_jobs_service_stop(void *q, const ct_token_t *tok);

/* Release the queue; stops it first if needed (waiting for the workers without a deadline).
 * NULL is ignored. Thread: the owner, never a worker. */
void ct_jobs_free(ct_jobs_t *q);

/* Add a job: `kind` names it for the handler (1..63 bytes), `payload` is any text ("" allowed).
 * `o` may be NULL. On success *id (if id is not NULL) is the job's id.
 * Returns: 0; -ESHUTDOWN the queue is stopping (the stopping token fired, or ct_jobs_stop was
 * called): nothing was added; -EINVAL; -ENOMEM; SQLite: -EBUSY (the file stayed locked), -EIO;
 * PostgreSQL: -EIO, -ECONNRESET, -ECONNREFUSED, -ETIMEDOUT (10 s).
 * Thread: any. */
int ct_jobs_enqueue(ct_jobs_t *q, const char *kind, const char *payload, const ct_job_options_t *o,
                    int64_t *id);

/* Read a job's state into *out.
 * Returns: 0; -ENOENT no such job; -EINVAL; SQLite: -EBUSY, -EIO; PostgreSQL: as enqueue.
 * Thread: any. */
int ct_jobs_get(ct_jobs_t *q, int64_t id, ct_job_info_t *out);

/* Cancel a job. Pending or requeued: it never runs again (status canceled). Running in this
 * process: its token fires now with CT_CANCELED ("canceled by id"); running in another process
 * sharing the database: the flag is set and that process's heartbeat fires the token within
 * heartbeat_ms (PostgreSQL: its listener does at once, on the NOTIFY this sends). The job becomes
 * canceled when its handler returns -ECANCELED (a handler that finishes anyway completes). Returns:
 * 0 canceled before running; 1 cancel requested of a running job; -EALREADY the job is completed,
 * failed or canceled; -ENOENT; -EINVAL; SQLite: -EBUSY, -EIO; PostgreSQL: as enqueue. Thread: any.
 */
int ct_jobs_cancel(ct_jobs_t *q, int64_t id);

/* A short name for a status ("pending", "running", ...). Thread: any. */
const char *ct_job_status_name(int status);

/* ---- periodic work --------------------------------------------------------------------------- */

/* The seeds' periodic worker, `while (!stopping) { work; delay(interval, stopping); }`: call
 * fn(arg, tok) now, then again `interval_ms` after each call returns, until `tok` fires. The
 * delay is a cancellable wait, so the loop ends as soon as the token fires, not at the next
 * tick. fn returning a negative value other than -ECANCELED ends the loop with that value;
 * return >= 0 to keep going (log your own transient errors).
 * Returns: -ECANCELED once `tok` fired (the normal end); fn's negative value; -EINVAL if fn is
 * NULL or interval_ms is outside 0..CT_TIMEOUT_MAX_MS. Thread: any (it runs on the caller's). */
int ct_every(int64_t interval_ms, int (*fn)(void *arg, const ct_token_t *tok), void *arg,
             const ct_token_t *tok);

#ifdef __cplusplus
}
#endif
#endif
