/* ct-jobs: the workers. Each worker claims a job from the backend, runs the handler with a token
 * linked to the queue's run token (host stopping + ct_jobs_stop), records how the attempt ended,
 * and claims the next. A heartbeat thread renews the leases of the jobs running here and turns
 * "cancel requested" and "lease lost" into the job's token firing.
 *
 * Which token fired decides the outcome of an attempt that did not return 0: the job's own
 * cancel (by id) -> canceled; a lost lease -> nothing (another worker owns the job now); the
 * run token (shutdown) -> back to pending, attempt not counted; no token -> a failure, retried
 * with backoff until max_attempts. A worker's `why` field, set under `mu` by whoever cancels
 * the job's source, records which of its own causes fired first. */
#define _GNU_SOURCE
#include "ct/jobs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../core/internal.h"
#include "backend.h"
#include "ct/time.h"
#include "ct/wait.h"

#define WORKERS_DEFAULT      4
#define WORKERS_MAX          256
#define ATTEMPTS_DEFAULT     5
#define ATTEMPTS_MAX         1000
#define BACKOFF_DEFAULT_MS   1000
#define BACKOFF_MAX_MS       300000
#define LEASE_DEFAULT_MS     30000
#define LEASE_MIN_MS         100
#define POLL_DEFAULT_MS      200
#define CLAIM_ERROR_PAUSE_MS 100
#define RETAIN_DEFAULT_MS    86400000 /* a day, like River's completed jobs */
#define PRUNE_BATCH          500      /* rows a prune statement deletes at most */
#define PRUNE_BATCHES        40       /* batches a heartbeat runs at most */

enum { WHY_NONE = 0, WHY_CANCEL = 1, WHY_LEASE = 2 };

struct worker {
    ct_jobs_t *q;
    pthread_t thread;
    /* Guarded by q->mu: the job running now, for cancel by id and the heartbeat. */
    int busy;
    int why;
    struct ct__jobs_claim c;
    ct_source_t *src;
};

struct ct_jobs {
    ct_jobs_options_t o;
    struct ct__jobs_backend *be;
    char worker_id[96];
    const ct_token_t *stopping; /* the host's, referenced */
    ct_source_t *stop_src;      /* ct_jobs_stop() */
    ct_source_t *run_src;       /* linked: stopping + stop_src; the workers' token */
    ct_source_t *hb_stop;       /* ends the heartbeat once the workers are gone */
    pthread_mutex_t mu;
    struct worker *w;
    unsigned nstarted;
    pthread_t hb_thread;
    int hb_started;
    ct_sem_t exited; /* one post per worker thread that has returned */
    unsigned joined;
    int started;
    int stopping_flag; /* atomic: enqueue refuses */
    int stop_done;
};

int64_t ct__jobs_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const int ct__jobs_outcome_status[5] = {[CT__JOB_DONE] = CT_JOB_COMPLETED,
                                        [CT__JOB_FAIL] = CT_JOB_FAILED,
                                        [CT__JOB_CANCEL] = CT_JOB_CANCELED,
                                        [CT__JOB_RETRY] = CT_JOB_REQUEUED,
                                        [CT__JOB_RELEASE] = CT_JOB_PENDING};

void ct__jobs_claim_clear(struct ct__jobs_claim *c)
{
    ct__free(c->kind);
    ct__free(c->payload);
    memset(c, 0, sizeof(*c));
}

void ct__jobs_doorbell_init(struct ct__jobs_doorbell *b)
{
    pthread_mutex_init(&b->mu, NULL);
    ct_cond_init(&b->cond);
    b->rings = 0;
}

void ct__jobs_doorbell_destroy(struct ct__jobs_doorbell *b)
{
    ct_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
}

void ct__jobs_doorbell_ring(struct ct__jobs_doorbell *b)
{
    pthread_mutex_lock(&b->mu);
    b->rings++;
    pthread_mutex_unlock(&b->mu);
    ct_cond_broadcast(&b->cond);
}

uint64_t ct__jobs_doorbell_rings(struct ct__jobs_doorbell *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t n = b->rings;
    pthread_mutex_unlock(&b->mu);
    return n;
}

int ct__jobs_doorbell_wait(struct ct__jobs_doorbell *b, uint64_t seen, const ct_token_t *tok,
                           int64_t deadline, int64_t due_in_ms)
{
    int64_t until = deadline;
    if (due_in_ms >= 0) {
        int64_t at = ct_deadline_after(due_in_ms);
        if (until < 0 || at < until)
            until = at;
    }
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    while (b->rings == seen && rc == 0)
        rc = ct_cond_wait(&b->cond, &b->mu, tok, until);
    pthread_mutex_unlock(&b->mu);
    if (rc == -ECANCELED || (rc == -ETIMEDOUT && until == deadline))
        return rc;
    return 0;
}

uint64_t ct__jobs_lease_base(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t) sizeof(r))
        r = (uint64_t) ct_now_ns() * 0x9e3779b97f4a7c15u;
    return r & 0x7fffffff00000000u;
}

static void default_log(void *arg, const char *line)
{
    (void) arg;
    fprintf(stderr, "ct-jobs: %s\n", line);
}

#define jlog(q, ...) ct__logf((q)->o.log, (q)->o.log_arg, __VA_ARGS__)

const char *ct_job_status_name(int status)
{
    static const char *const names[] = {"pending",  "running", "completed",
                                        "canceled", "failed",  "requeued"};
    return status >= 0 && status <= CT_JOB_REQUEUED ? names[status] : "unknown";
}

/* Cancel the running job `id` if a worker of this process runs it. Returns whether one did. */
static bool cancel_local(ct_jobs_t *q, int64_t id, int why, const char *detail)
{
    bool found = false;
    pthread_mutex_lock(&q->mu);
    for (unsigned i = 0; i < q->nstarted; i++) {
        struct worker *w = &q->w[i];
        if (w->busy && w->c.id == id) {
            if (!w->why)
                w->why = why;
            /* Under mu so the worker cannot free the source meanwhile; the callbacks on a job's
             * token wake its waits and must not call back into the queue. */
            ct_source_cancel(w->src, CT_CANCELED, detail);
            found = true;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return found;
}

static void notify_cancel(void *ctx, int64_t id)
{
    cancel_local(ctx, id, WHY_CANCEL, "canceled by id");
}

static void backend_log(void *ctx, const char *line)
{
    ct_jobs_t *q = ctx;
    q->o.log(q->o.log_arg, line);
}

int ct_jobs_new(ct_jobs_t **out, const ct_jobs_options_t *opt)
{
    if (!out || !opt || !opt->handler)
        return -EINVAL;
    *out = NULL;
    ct_jobs_options_t o = *opt;
    if (o.backend != CT_JOBS_SQLITE && o.backend != CT_JOBS_MEMORY && o.backend != CT_JOBS_POSTGRES)
        return -EINVAL;
    if (o.backend == CT_JOBS_SQLITE && (!o.path || !*o.path))
        return -EINVAL;
    if (o.backend == CT_JOBS_POSTGRES && (!o.conninfo || !*o.conninfo))
        return -EINVAL;
    if (!o.workers)
        o.workers = WORKERS_DEFAULT;
    if (!o.max_attempts)
        o.max_attempts = ATTEMPTS_DEFAULT;
    if (!o.backoff_ms)
        o.backoff_ms = BACKOFF_DEFAULT_MS;
    if (!o.backoff_max_ms)
        o.backoff_max_ms = BACKOFF_MAX_MS;
    if (!o.lease_ms)
        o.lease_ms = LEASE_DEFAULT_MS;
    if (!o.heartbeat_ms)
        o.heartbeat_ms = o.lease_ms / 3;
    if (!o.poll_ms)
        o.poll_ms = POLL_DEFAULT_MS;
    if (!o.retain_ms)
        o.retain_ms = RETAIN_DEFAULT_MS;
    if (!o.log)
        o.log = default_log;
    if (o.workers > WORKERS_MAX || o.max_attempts < 1 || o.max_attempts > ATTEMPTS_MAX ||
        o.backoff_ms < 0 || o.backoff_ms > CT_TIMEOUT_MAX_MS || o.backoff_max_ms < 0 ||
        o.backoff_max_ms > CT_TIMEOUT_MAX_MS || o.lease_ms < LEASE_MIN_MS ||
        o.lease_ms > CT_TIMEOUT_MAX_MS || o.heartbeat_ms < 1 || o.heartbeat_ms >= o.lease_ms ||
        o.poll_ms < 1 || o.poll_ms > CT_TIMEOUT_MAX_MS ||
        (o.retain_ms != CT_JOBS_KEEP_FOREVER &&
         (o.retain_ms < 1 || o.retain_ms > CT_TIMEOUT_MAX_MS)))
        return -EINVAL;
    ct_jobs_t *q = ct__calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->o = o;
    q->o.path = NULL; /* not kept: the caller's strings */
    q->o.conninfo = NULL;
    pthread_mutex_init(&q->mu, NULL);
    ct_sem_init(&q->exited, 0);
    int rc;
    q->w = ct__calloc(o.workers, sizeof(*q->w));
    if (!q->w) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = ct_source_new(&q->stop_src)) < 0 || (rc = ct_source_new(&q->hb_stop)) < 0)
        goto fail;
    rc = o.backend == CT_JOBS_MEMORY   ? ct__jobs_memory_new(&q->be)
         : o.backend == CT_JOBS_SQLITE ? ct__jobs_sqlite_new(&q->be, opt->path)
                                       : ct__jobs_pg_new(&q->be, opt->conninfo, o.workers);
    if (rc < 0)
        goto fail;
    q->be->notify_cancel = notify_cancel;
    q->be->notify_ctx = q;
    q->be->log = backend_log;
    char host[48] = "host";
    gethostname(host, sizeof(host) - 1);
    unsigned r = (unsigned) (ct_now_ns() ^ (uint64_t) (uintptr_t) q);
    snprintf(q->worker_id, sizeof(q->worker_id), "%s:%d:%08x", host, (int) getpid(), r);
    *out = q;
    return 0;
fail:
    ct_jobs_free(q);
    return rc;
}

/* ---- the workers ----------------------------------------------------------------------------- */

static int64_t backoff_ms(const ct_jobs_t *q, int attempt)
{
    int64_t d = q->o.backoff_ms;
    for (int i = 1; i < attempt && d < q->o.backoff_max_ms; i++)
        d *= 2;
    return d < q->o.backoff_max_ms ? d : q->o.backoff_max_ms;
}

static void run_one(struct worker *w, struct ct__jobs_claim *c)
{
    ct_jobs_t *q = w->q;
    const ct_token_t *run_tok = ct_source_token(q->run_src);
    ct_source_t *src;
    int rc = ct_source_new_linked(&src, &run_tok, 1);
    if (rc < 0) {
        q->be->ops->finish(q->be, c, CT__JOB_RELEASE, 0, NULL);
        return;
    }
    pthread_mutex_lock(&q->mu);
    w->c = *c;
    w->src = src;
    w->why = WHY_NONE;
    w->busy = 1;
    if (c->cancel_requested) {
        w->why = WHY_CANCEL;
        ct_source_cancel(src, CT_CANCELED, "canceled by id");
    }
    pthread_mutex_unlock(&q->mu);

    const ct_token_t *tok = ct_source_token(src);
    ct_job_t job = {.id = c->id,
                    .kind = c->kind,
                    .payload = c->payload,
                    .attempt = c->attempt,
                    .max_attempts = c->max_attempts};
    rc = q->o.handler(q->o.arg, &job, tok);

    pthread_mutex_lock(&q->mu);
    w->busy = 0;
    int why = w->why;
    pthread_mutex_unlock(&q->mu);

    int outcome;
    int64_t run_at = 0;
    const char *err = rc < 0 ? ct_strerror(rc) : NULL;
    if (rc >= 0)
        outcome = CT__JOB_DONE;
    else if (why == WHY_LEASE)
        outcome = -1; /* another worker may own it now: leave it alone */
    else if (why == WHY_CANCEL)
        outcome = CT__JOB_CANCEL;
    else if (ct_token_canceled(tok))
        outcome = CT__JOB_RELEASE; /* shutdown interrupted it: not the job's fault */
    else if (c->attempt >= c->max_attempts)
        outcome = CT__JOB_FAIL;
    else {
        outcome = CT__JOB_RETRY;
        run_at = ct__jobs_wall_ms() + backoff_ms(q, c->attempt);
    }
    if (outcome >= 0) {
        /* No token: the result of work that ran must be recorded, shutdown or not. */
        int frc = q->be->ops->finish(q->be, c, outcome, run_at, err);
        if (frc == -ESTALE)
            jlog(q, "job %lld attempt %d: lease lost, its result is dropped", (long long) c->id,
                 c->attempt);
        else if (frc < 0)
            jlog(q, "job %lld attempt %d: recording the result failed: %s", (long long) c->id,
                 c->attempt, ct_strerror(frc));
    } else {
        jlog(q, "job %lld attempt %d: lease lost while running, result dropped", (long long) c->id,
             c->attempt);
    }
    pthread_mutex_lock(&q->mu);
    w->src = NULL;
    memset(&w->c, 0, sizeof(w->c));
    pthread_mutex_unlock(&q->mu);
    ct_source_free(src);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    ct_jobs_t *q = w->q;
    const ct_token_t *run_tok = ct_source_token(q->run_src);
    while (!ct_token_canceled(run_tok)) {
        struct ct__jobs_claim c = {0};
        int rc = q->be->ops->claim(q->be, q->worker_id, q->o.lease_ms, &c, run_tok,
                                   ct_deadline_after(q->o.poll_ms));
        if (rc == -ETIMEDOUT)
            continue;
        if (rc == -ECANCELED)
            break;
        if (rc < 0) {
            jlog(q, "claim failed: %s", ct_strerror(rc));
            ct_sleep_ms(CLAIM_ERROR_PAUSE_MS, run_tok);
            continue;
        }
        run_one(w, &c);
        ct__jobs_claim_clear(&c);
    }
    ct_sem_post(&q->exited);
    return NULL;
}

/* Delete the finished jobs past their retention, a batch at a time, for at most half a heartbeat
 * (the next renewals must not be late) and at most PRUNE_BATCHES batches; what is left waits for
 * the next beat. A prune blocked in the database (a lock) is canceled at the end of that time. */
static void prune_finished(ct_jobs_t *q, const ct_token_t *stop)
{
    if (q->o.retain_ms == CT_JOBS_KEEP_FOREVER)
        return;
    ct_source_t *src;
    if (ct_source_new_linked(&src, &stop, 1) < 0)
        return;
    if (ct_source_cancel_after(src, q->o.heartbeat_ms / 2 + 1) < 0) {
        ct_source_free(src); /* unbounded, it could make renewals late: next beat */
        return;
    }
    for (int i = 0; i < PRUNE_BATCHES; i++) {
        int64_t n = q->be->ops->prune(q->be, q->o.retain_ms, PRUNE_BATCH, ct_source_token(src));
        if (n == -ECANCELED && !ct_token_canceled(stop))
            jlog(q, "deleting finished jobs took longer than half a heartbeat: again next beat");
        else if (n < 0 && n != -ECANCELED)
            jlog(q, "deleting finished jobs failed: %s", ct_strerror((int) n));
        if (n < PRUNE_BATCH)
            break;
    }
    ct_source_free(src);
}

/* Renew the leases of the jobs running here; deliver cancel requests and lost leases. Then
 * delete the finished jobs past their retention. */
static void *heartbeat_main(void *arg)
{
    ct_jobs_t *q = arg;
    const ct_token_t *stop = ct_source_token(q->hb_stop);
    prune_finished(q, stop);
    while (ct_sleep_ms(q->o.heartbeat_ms, stop) == 0) {
        for (unsigned i = 0; i < q->nstarted; i++) {
            struct worker *w = &q->w[i];
            struct ct__jobs_claim c = {0};
            pthread_mutex_lock(&q->mu);
            if (w->busy)
                c = (struct ct__jobs_claim){
                    .id = w->c.id, .attempt = w->c.attempt, .lease = w->c.lease};
            pthread_mutex_unlock(&q->mu);
            if (!c.id)
                continue;
            int rc = q->be->ops->renew(q->be, &c, q->o.lease_ms);
            if (rc != 1 && rc != -ESTALE)
                continue; /* held (or the database is busy: try again next beat) */
            pthread_mutex_lock(&q->mu);
            if (w->busy && w->c.lease == c.lease) {
                if (!w->why)
                    w->why = rc == 1 ? WHY_CANCEL : WHY_LEASE;
                ct_source_cancel(w->src, CT_CANCELED, rc == 1 ? "canceled by id" : "lease lost");
            }
            pthread_mutex_unlock(&q->mu);
        }
        prune_finished(q, stop);
    }
    return NULL;
}

int ct_jobs_start(ct_jobs_t *q, const ct_token_t *stopping)
{
    if (!q)
        return -EINVAL;
    if (q->started)
        return -EBUSY;
    q->started = 1;
    q->stopping = ct_token_ref(stopping);
    const ct_token_t *parents[2] = {stopping, ct_source_token(q->stop_src)};
    int rc = ct_source_new_linked(&q->run_src, parents, 2);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < q->o.workers; i++) {
        q->w[i].q = q;
        if ((rc = ct__thread_start(&q->w[i].thread, worker_main, &q->w[i])) < 0)
            break;
        pthread_mutex_lock(&q->mu);
        q->nstarted++;
        pthread_mutex_unlock(&q->mu);
    }
    if (rc == 0 && (rc = ct__thread_start(&q->hb_thread, heartbeat_main, q)) == 0)
        q->hb_started = 1;
    if (rc < 0) {
        ct_jobs_stop(q, NULL);
        return rc;
    }
    return 0;
}

int ct_jobs_stop(ct_jobs_t *q, const ct_token_t *tok)
{
    if (!q)
        return -EINVAL;
    __atomic_store_n(&q->stopping_flag, 1, __ATOMIC_RELEASE);
    if (!q->started || q->stop_done)
        return 0;
    /* When the host is stopping, say why in its words: the host's own cancel may still be
     * running the callbacks on its token (newest first, so the host's wake-up can run before
     * our link), and whichever reaches the jobs' token first gives it its detail. */
    const char *why = ct_token_canceled(q->stopping) ? ct_token_detail(q->stopping) : NULL;
    ct_source_cancel(q->stop_src, CT_SHUTDOWN, why ? why : "jobs stopping");
    while (q->joined < q->nstarted) {
        int rc = ct_sem_wait(&q->exited, tok, -1);
        if (rc < 0)
            return rc; /* the workers still running keep the queue; see the header */
        q->joined++;
    }
    for (unsigned i = 0; i < q->nstarted; i++)
        pthread_join(q->w[i].thread, NULL);
    ct_source_cancel(q->hb_stop, CT_SHUTDOWN, "jobs stopped");
    if (q->hb_started)
        pthread_join(q->hb_thread, NULL);
    q->stop_done = 1;
    return 0;
}

int ct_jobs_service_start(void *q, const ct_token_t *stopping)
{
    return ct_jobs_start(q, stopping);
}

int ct_jobs_service_stop(void *q, const ct_token_t *tok)
{
    return ct_jobs_stop(q, tok);
}

void ct_jobs_free(ct_jobs_t *q)
{
    if (!q)
        return;
    if (q->started && !q->stop_done)
        ct_jobs_stop(q, NULL);
    if (q->be) {
        int64_t left = q->be->ops->pending ? q->be->ops->pending(q->be) : -ENOTSUP;
        if (left > 0)
            jlog(q, "%lld pending job(s) dropped: the memory backend is not durable",
                 (long long) left);
        q->be->ops->free(q->be);
    }
    ct_source_free(q->run_src);
    ct_source_free(q->stop_src);
    ct_source_free(q->hb_stop);
    ct_token_unref(q->stopping);
    ct__free(q->w);
    ct_sem_destroy(&q->exited);
    pthread_mutex_destroy(&q->mu);
    ct__free(q);
}

/* ---- the API --------------------------------------------------------------------------------- */

int ct_jobs_enqueue(ct_jobs_t *q, const char *kind, const char *payload, const ct_job_options_t *o,
                    int64_t *id)
{
    ct_job_options_t jo = o ? *o : (ct_job_options_t){0};
    if (!q || !kind || !payload || !*kind || strlen(kind) > 63 || jo.max_attempts < 0 ||
        jo.max_attempts > ATTEMPTS_MAX || jo.delay_ms < 0 || jo.delay_ms > CT_TIMEOUT_MAX_MS)
        return -EINVAL;
    if (__atomic_load_n(&q->stopping_flag, __ATOMIC_ACQUIRE) || ct_token_canceled(q->stopping))
        return -ESHUTDOWN;
    int64_t dummy, now = ct__jobs_wall_ms();
    return q->be->ops->enqueue(q->be, kind, payload,
                               jo.max_attempts ? jo.max_attempts : q->o.max_attempts, now,
                               now + jo.delay_ms, id ? id : &dummy);
}

int ct_jobs_get(ct_jobs_t *q, int64_t id, ct_job_info_t *out)
{
    if (!q || !out || id <= 0)
        return -EINVAL;
    return q->be->ops->get(q->be, id, out);
}

int ct_jobs_cancel(ct_jobs_t *q, int64_t id)
{
    if (!q || id <= 0)
        return -EINVAL;
    int rc = q->be->ops->cancel(q->be, id);
    if (rc == 1)
        cancel_local(q, id, WHY_CANCEL, "canceled by id");
    return rc;
}

/* ---- periodic work --------------------------------------------------------------------------- */

int ct_every(int64_t interval_ms, int (*fn)(void *arg, const ct_token_t *tok), void *arg,
             const ct_token_t *tok)
{
    if (!fn || interval_ms < 0 || interval_ms > CT_TIMEOUT_MAX_MS)
        return -EINVAL;
    while (!ct_token_canceled(tok)) {
        int rc = fn(arg, tok);
        if (rc < 0 && rc != -ECANCELED)
            return rc;
        if ((rc = ct_sleep_ms(interval_ms, tok)) < 0)
            return rc;
    }
    return -ECANCELED;
}
