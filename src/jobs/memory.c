/* ct-jobs' memory backend: the seeds' model, a ct channel of job ids that the workers receive
 * from, plus a table of job records under a mutex for status, cancel and leases.
 *
 * The channel holds the ids of jobs that are due. A job canceled while its id waits in the
 * channel stays there and is skipped when a worker receives it: the status in the table, not
 * the presence of the id, says whether a job may run. Jobs due later (a delay, a retry's
 * backoff) wait in a small list and are moved to the channel by the next claim that finds them
 * due. Finished records past their retention are deleted (prune): the table then starts at a
 * later id. Nothing here survives the process. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../core/internal.h"
#include "backend.h"
#include "ct/chan.h"
#include "ct/time.h"

#define GONE (-1) /* a record's status once prune deleted it */

struct rec {
    char *kind, *payload;
    int status, attempts, max_attempts, cancel_requested;
    int64_t enqueued_at, started_at, finished_at, run_at;
    int64_t lease;
    char error[128];
};

struct later {
    int64_t id, run_at;
};

struct mem {
    struct ct__jobs_backend base;
    pthread_mutex_t mu;
    struct rec *recs; /* id i is recs[i - first] */
    size_t n, cap;
    int64_t first; /* the id of recs[0] */
    struct later *later;
    size_t nlater, caplater;
    int64_t next_lease;
    ct_chan_t *ready; /* int64_t ids, unbounded */
};

static struct mem *M(struct ct__jobs_backend *be)
{
    return (struct mem *) be;
}

/* The record of job `id`, or NULL (never enqueued, or deleted). Called with mu held. */
static struct rec *rec_of(struct mem *m, int64_t id)
{
    if (id < m->first || id - m->first >= (int64_t) m->n)
        return NULL;
    struct rec *r = &m->recs[id - m->first];
    return r->status == GONE ? NULL : r;
}

/* Queue `id` to run at run_at: now (the channel) or later (the list). Called with mu held. */
static int schedule(struct mem *m, int64_t id, int64_t run_at)
{
    if (run_at <= ct__jobs_wall_ms())
        return ct_chan_try_send(m->ready, &id);
    if (m->nlater == m->caplater) {
        size_t cap = m->caplater ? m->caplater * 2 : 16;
        struct later *n = ct__realloc(m->later, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        m->later = n;
        m->caplater = cap;
    }
    m->later[m->nlater++] = (struct later){id, run_at};
    return 0;
}

static int mem_enqueue(struct ct__jobs_backend *be, const char *kind, const char *payload,
                       int max_attempts, int64_t now, int64_t run_at, int64_t *id)
{
    struct mem *m = M(be);
    char *k = ct__strdup(kind), *p = ct__strdup(payload);
    if (!k || !p) {
        ct__free(k);
        ct__free(p);
        return -ENOMEM;
    }
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct rec *n = ct__realloc(m->recs, cap * sizeof(*n));
        if (!n) {
            rc = -ENOMEM;
            goto out;
        }
        m->recs = n;
        m->cap = cap;
    }
    m->recs[m->n] = (struct rec){.kind = k,
                                 .payload = p,
                                 .status = CT_JOB_PENDING,
                                 .max_attempts = max_attempts,
                                 .enqueued_at = now,
                                 .run_at = run_at};
    *id = m->first + (int64_t) m->n;
    if ((rc = schedule(m, *id, run_at)) == 0)
        m->n++;
out:
    pthread_mutex_unlock(&m->mu);
    if (rc < 0) {
        ct__free(k);
        ct__free(p);
    }
    return rc;
}

/* Move the jobs that fell due to the channel; return the earliest run_at still waiting, or -1.
 * Called with mu held. */
static int64_t promote(struct mem *m)
{
    int64_t now = ct__jobs_wall_ms(), next = -1;
    for (size_t i = 0; i < m->nlater;) {
        struct later l = m->later[i];
        if (l.run_at <= now && ct_chan_try_send(m->ready, &l.id) == 0) {
            m->later[i] = m->later[--m->nlater];
            continue;
        }
        if (next < 0 || l.run_at < next)
            next = l.run_at;
        i++;
    }
    return next;
}

static int mem_claim(struct ct__jobs_backend *be, const char *worker, int64_t lease_ms,
                     struct ct__jobs_claim *c, const ct_token_t *tok, int64_t deadline)
{
    struct mem *m = M(be);
    (void) worker;
    (void) lease_ms; /* one process: a lease cannot be lost to a crash */
    for (;;) {
        pthread_mutex_lock(&m->mu);
        int64_t next = promote(m);
        pthread_mutex_unlock(&m->mu);
        int64_t until = deadline;
        if (next >= 0) {
            int64_t at = ct_deadline_after(next - ct__jobs_wall_ms());
            if (until < 0 || at < until)
                until = at;
        }
        int64_t id;
        int rc = ct_chan_recv(m->ready, &id, tok, until);
        if (rc == -ETIMEDOUT && (deadline < 0 || ct_now_ms() < deadline))
            continue; /* a delayed job fell due */
        if (rc < 0)
            return rc;
        pthread_mutex_lock(&m->mu);
        struct rec *r = rec_of(m, id);
        if (!r || (r->status != CT_JOB_PENDING && r->status != CT_JOB_REQUEUED)) {
            pthread_mutex_unlock(&m->mu);
            continue; /* canceled (and maybe deleted) while it waited */
        }
        char *k = ct__strdup(r->kind), *p = ct__strdup(r->payload);
        if (!k || !p) {
            ct_chan_try_send(m->ready, &id); /* put it back */
            pthread_mutex_unlock(&m->mu);
            ct__free(k);
            ct__free(p);
            return -ENOMEM;
        }
        r->status = CT_JOB_RUNNING;
        r->attempts++;
        r->started_at = ct__jobs_wall_ms();
        r->lease = ++m->next_lease;
        *c = (struct ct__jobs_claim){.id = id,
                                     .attempt = r->attempts,
                                     .max_attempts = r->max_attempts,
                                     .lease = r->lease,
                                     .cancel_requested = r->cancel_requested,
                                     .kind = k,
                                     .payload = p};
        pthread_mutex_unlock(&m->mu);
        return 0;
    }
}

/* The record holding c's lease, or NULL. Called with mu held. */
static struct rec *held(struct mem *m, const struct ct__jobs_claim *c)
{
    struct rec *r = rec_of(m, c->id);
    return r && r->status == CT_JOB_RUNNING && r->lease == c->lease && r->attempts == c->attempt
               ? r
               : NULL;
}

static int mem_renew(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int64_t lease_ms)
{
    struct mem *m = M(be);
    (void) lease_ms;
    pthread_mutex_lock(&m->mu);
    struct rec *r = held(m, c);
    int rc = !r ? -ESTALE : r->cancel_requested ? 1 : 0;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_finish(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int outcome,
                      int64_t run_at, const char *error)
{
    struct mem *m = M(be);
    pthread_mutex_lock(&m->mu);
    struct rec *r = held(m, c);
    int rc = 0;
    if (!r) {
        rc = -ESTALE;
        goto out;
    }
    int64_t now = ct__jobs_wall_ms();
    r->lease = 0;
    if (error)
        snprintf(r->error, sizeof(r->error), "%s", error);
    r->status = ct__jobs_outcome_status[outcome];
    if (outcome == CT__JOB_RETRY || outcome == CT__JOB_RELEASE) {
        if (outcome == CT__JOB_RELEASE) {
            r->attempts--;      /* shutdown interrupted it: the attempt does not count */
            run_at = r->run_at; /* and it keeps its place: it was due already */
        }
        r->run_at = run_at;
        rc = schedule(m, c->id, run_at);
    } else {
        r->finished_at = now;
    }
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_cancel(struct ct__jobs_backend *be, int64_t id)
{
    struct mem *m = M(be);
    pthread_mutex_lock(&m->mu);
    int rc;
    struct rec *r = rec_of(m, id);
    if (!r) {
        rc = -ENOENT;
    } else {
        if (r->status == CT_JOB_PENDING || r->status == CT_JOB_REQUEUED) {
            r->status = CT_JOB_CANCELED;
            r->finished_at = ct__jobs_wall_ms();
            rc = 0;
        } else if (r->status == CT_JOB_RUNNING) {
            r->cancel_requested = 1;
            rc = 1;
        } else {
            rc = -EALREADY;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_get(struct ct__jobs_backend *be, int64_t id, ct_job_info_t *out)
{
    struct mem *m = M(be);
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    struct rec *r = rec_of(m, id);
    if (!r) {
        rc = -ENOENT;
    } else {
        *out = (ct_job_info_t){.status = r->status,
                               .attempts = r->attempts,
                               .max_attempts = r->max_attempts,
                               .enqueued_at_ms = r->enqueued_at,
                               .started_at_ms = r->started_at,
                               .finished_at_ms = r->finished_at,
                               .run_at_ms = r->run_at,
                               .cancel_requested = r->cancel_requested};
        snprintf(out->kind, sizeof(out->kind), "%s", r->kind);
        snprintf(out->last_error, sizeof(out->last_error), "%s", r->error);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int64_t mem_prune(struct ct__jobs_backend *be, int64_t retain_ms, int max,
                         const ct_token_t *tok)
{
    (void) tok; /* never waits */
    struct mem *m = M(be);
    int64_t before = ct__jobs_wall_ms() - retain_ms, n = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n && n < max; i++) {
        struct rec *r = &m->recs[i];
        if ((r->status == CT_JOB_COMPLETED || r->status == CT_JOB_CANCELED ||
             r->status == CT_JOB_FAILED) &&
            r->finished_at < before) {
            ct__free(r->kind);
            ct__free(r->payload);
            *r = (struct rec){.status = GONE};
            n++;
        }
    }
    /* The table starts at the oldest record still kept. */
    size_t gone = 0;
    while (gone < m->n && m->recs[gone].status == GONE)
        gone++;
    if (gone) {
        memmove(m->recs, m->recs + gone, (m->n - gone) * sizeof(*m->recs));
        m->n -= gone;
        m->first += (int64_t) gone;
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

static int64_t mem_pending(struct ct__jobs_backend *be)
{
    struct mem *m = M(be);
    int64_t n = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++)
        n += m->recs[i].status == CT_JOB_PENDING || m->recs[i].status == CT_JOB_REQUEUED;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void mem_free(struct ct__jobs_backend *be)
{
    struct mem *m = M(be);
    for (size_t i = 0; i < m->n; i++) {
        ct__free(m->recs[i].kind);
        ct__free(m->recs[i].payload);
    }
    ct__free(m->recs);
    ct__free(m->later);
    ct_chan_free(m->ready);
    pthread_mutex_destroy(&m->mu);
    ct__free(m);
}

static const struct ct__jobs_backend_ops mem_ops = {
    .enqueue = mem_enqueue,
    .claim = mem_claim,
    .renew = mem_renew,
    .finish = mem_finish,
    .cancel = mem_cancel,
    .get = mem_get,
    .prune = mem_prune,
    .pending = mem_pending,
    .free = mem_free,
};

int ct__jobs_memory_new(struct ct__jobs_backend **out)
{
    struct mem *m = ct__calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    int rc = ct_chan_new(&m->ready, sizeof(int64_t), CT_CHAN_UNBOUNDED);
    if (rc < 0) {
        ct__free(m);
        return rc;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->first = 1;
    m->base.ops = &mem_ops;
    *out = &m->base;
    return 0;
}
