/* The interface between ct-jobs' workers (jobs.c) and a storage backend (memory.c, sqlite.c, and
 * pg.c for PostgreSQL, which also delivers cancels by LISTEN/NOTIFY).
 *
 * The model is leases. A worker claims one due job: the backend marks it running, counts the
 * attempt, and hands back a claim carrying a lease token unique to this claim. While the job
 * runs, the worker renews the lease every heartbeat; the renewal also reports whether someone
 * asked for the job to be canceled (polling; a backend with notifications calls
 * ct__jobs_notify_cancel() as well). Every change a worker makes afterwards (finish) is
 * conditional on (id, attempt, lease token): a worker whose lease expired and whose job was
 * claimed again changes nothing, and learns it from -ESTALE.
 *
 * Times given to and stored by a backend are wall-clock ms (ct__jobs_wall_ms()), because they
 * must mean the same in another process or after a restart; deadlines for waiting are ct's
 * monotonic ms. Every function may be called from any thread, concurrently. */
#ifndef CT_JOBS_BACKEND_H
#define CT_JOBS_BACKEND_H

#include <pthread.h>
#include <stdint.h>

#include "ct/jobs.h"
#include "ct/wait.h"

/* One claimed attempt. kind and payload are owned by the claim (ct__jobs_claim_clear). */
struct ct__jobs_claim {
    int64_t id;
    int attempt; /* this attempt's number, 1-based; part of the finish condition */
    int max_attempts;
    int64_t lease; /* unique per claim: the lease token */
    int cancel_requested;
    char *kind;
    char *payload;
};

/* How an attempt ended, for finish(). */
enum ct__jobs_outcome {
    CT__JOB_DONE = 0,   /* -> completed */
    CT__JOB_FAIL = 1,   /* -> failed (no attempts left) */
    CT__JOB_CANCEL = 2, /* -> canceled (canceled by id while running) */
    CT__JOB_RETRY = 3,  /* -> requeued, runs again at run_at */
    CT__JOB_RELEASE = 4 /* -> pending, due at once in its old place; the attempt does not count */
};
/* The status each outcome leaves a job in (CT_JOB_*), indexed by enum ct__jobs_outcome. */
extern const int ct__jobs_outcome_status[5];

struct ct__jobs_backend;
struct ct__jobs_backend_ops {
    /* Add a job enqueued at `now`, due at run_at. Returns 0 and *id; -ENOMEM; -EBUSY; -EIO. */
    int (*enqueue)(struct ct__jobs_backend *be, const char *kind, const char *payload,
                   int max_attempts, int64_t now, int64_t run_at, int64_t *id);
    /* Claim one due job (pending or requeued and due, or running with an expired lease) for
     * `worker` with a lease of lease_ms. Waits for one until `tok` fires or `deadline`.
     * Returns 0 and *c; -ETIMEDOUT; -ECANCELED; other negative errno. */
    int (*claim)(struct ct__jobs_backend *be, const char *worker, int64_t lease_ms,
                 struct ct__jobs_claim *c, const ct_token_t *tok, int64_t deadline);
    /* Extend c's lease to now + lease_ms. Returns 0 held; 1 held, and a cancel was requested;
     * -ESTALE the lease is lost (the job was claimed again or changed); other negative errno
     * (the database is busy: the lease is still held until it expires). */
    int (*renew)(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int64_t lease_ms);
    /* End c's attempt with `outcome` (run_at for CT__JOB_RETRY, error text may be NULL), only if
     * the job still holds this lease. Returns 0; -ESTALE nothing changed; other negative errno. */
    int (*finish)(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int outcome,
                  int64_t run_at, const char *error);
    /* Returns 0 pending/requeued -> canceled; 1 running: cancel requested (renew reports it);
     * -EALREADY final; -ENOENT; other negative errno. */
    int (*cancel)(struct ct__jobs_backend *be, int64_t id);
    int (*get)(struct ct__jobs_backend *be, int64_t id, ct_job_info_t *out);
    /* Delete up to `max` finished jobs (completed, canceled, failed) that finished more than
     * `retain_ms` ago by the backend's clock. `tok` bounds the call (the heartbeat's time for
     * it, or the queue stopping). Returns how many; -ECANCELED (tok); negative errno. */
    int64_t (*prune)(struct ct__jobs_backend *be, int64_t retain_ms, int max,
                     const ct_token_t *tok);
    /* Jobs still pending (for the memory backend's report at exit); -ENOTSUP if not cheap. */
    int64_t (*pending)(struct ct__jobs_backend *be);
    void (*free)(struct ct__jobs_backend *be);
};

struct ct__jobs_backend {
    const struct ct__jobs_backend_ops *ops;
    /* Set by the workers' layer: a backend that learns of a cancel request by notification
     * (not by renew) calls this; it fires the job's token if it runs in this process. */
    void (*notify_cancel)(void *ctx, int64_t id);
    void *notify_ctx;
    /* Set by the workers' layer: the queue's log (called with notify_ctx); NULL: none. */
    void (*log)(void *ctx, const char *line);
};

int ct__jobs_memory_new(struct ct__jobs_backend **out);
int ct__jobs_sqlite_new(struct ct__jobs_backend **out, const char *path);
/* PostgreSQL (pg.c): a pool of workers + a few connections to `conninfo`; creates the table in
 * the connection's current schema if missing. Returns 0; -ENOMEM; ct-pg's connect and query
 * errors (-ECONNREFUSED, -EIO, -ETIMEDOUT). */
int ct__jobs_pg_new(struct ct__jobs_backend **out, const char *conninfo, unsigned workers);
/* Tests and benchmarks only: set before a queue's first claim, no listener is started, and
 * cancels from other processes arrive through the heartbeat alone. */
extern int ct__jobs_pg_no_listener;

/* What the durable backends share. Their idle claims sleep on a doorbell until an enqueue or a
 * requeue in this process rings it, the next due job, or the caller's deadline (which is how
 * jobs of other processes and expired leases are found). */
struct ct__jobs_doorbell {
    pthread_mutex_t mu;
    ct_cond_t cond;
    uint64_t rings; /* guarded by mu */
};
void ct__jobs_doorbell_init(struct ct__jobs_doorbell *b);
void ct__jobs_doorbell_destroy(struct ct__jobs_doorbell *b);
void ct__jobs_doorbell_ring(struct ct__jobs_doorbell *b);
/* The count to pass to ct__jobs_doorbell_wait(): read before looking for a due job. */
uint64_t ct__jobs_doorbell_rings(struct ct__jobs_doorbell *b);
/* Sleep until a ring after `seen`, `due_in_ms` from now (< 0: no due job) or `deadline`.
 * Returns 0: look again; -ECANCELED; -ETIMEDOUT: the caller's deadline passed. */
int ct__jobs_doorbell_wait(struct ct__jobs_doorbell *b, uint64_t seen, const ct_token_t *tok,
                           int64_t deadline, int64_t due_in_ms);
/* The high bits of a queue's lease tokens, random per queue; a counter goes below, so two
 * processes (or two queues) never hand out the same token. */
uint64_t ct__jobs_lease_base(void);

void ct__jobs_claim_clear(struct ct__jobs_claim *c);
int64_t ct__jobs_wall_ms(void);

#endif
