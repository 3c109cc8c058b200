/* The thread pool.
 *
 * One mutex guards the queue, the idle stack and the thread list. A submitted task goes straight
 * to the most recently idle thread when there is one (a direct hand-off through the thread's
 * waiter: one futex wake, no queue), else to the FIFO queue, and a thread is started if none is
 * idle and the pool may grow. Idle threads park on their own waiter, LIFO, so the threads that
 * stay idle longest are the ones that time out and end.
 *
 * A queued task has a callback on its token. When the token fires, the callback takes the task
 * out of the queue and completes it with -ECANCELED: the work is never started, and the
 * completion is not delayed until a thread would have reached it. Task states, under the mutex:
 *   NEW -> QUEUED -> RUNNING -> (done)       the normal path
 *   NEW -> RUNNING                           handed straight to an idle thread
 *   QUEUED -> DONE                           canceled while queued, or canceled by ct_pool_free
 *   NEW -> CANCELED_EARLY                    the token fired while ct_pool_submit registered
 * Whoever moves a task out of QUEUED owns its registration and unregisters it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include "ct/pool.h"
#include "ct/time.h"
#include "internal.h"
#include "park.h"

enum { T_NEW, T_QUEUED, T_RUNNING, T_CANCELED_EARLY, T_DONE };

struct worker {
    struct ct__waiter waiter; /* parked on while idle */
    struct worker *idle_next, *idle_prev;
    struct worker *all_next; /* every thread the pool started, for joining */
    ct_pool_task_t *task;    /* handed off by a submitter */
    ct_pool_t *pool;
    pthread_t thread;
    bool idle, exited, joined;
};

struct ct_pool {
    pthread_mutex_t mu;
    ct_pool_task_t *head, *tail; /* the queue */
    unsigned queued, queue_max;
    struct worker *idle; /* idle stack, most recent first */
    unsigned nidle;
    struct worker *all;
    unsigned threads, min_threads, max_threads;
    int64_t idle_ns;
    unsigned cancels_in_flight;  /* queued tasks being completed by their token's canceller */
    pthread_cond_t cancels_done; /* ct_pool_free() waits for cancels_in_flight to reach 0 */
    bool stopping;
    uint64_t submitted, started, completed, canceled_before_start, rejected; /* atomic */
};

static inline void count(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

/* ---- queue and idle stack (mutex held) ----------------------------------------------------- */

static void enqueue(ct_pool_t *p, ct_pool_task_t *t)
{
    t->next_ = NULL;
    t->prev_ = p->tail;
    if (p->tail)
        p->tail->next_ = t;
    else
        p->head = t;
    p->tail = t;
    p->queued++;
    t->state_ = T_QUEUED;
}

static void dequeue(ct_pool_t *p, ct_pool_task_t *t)
{
    if (t->prev_)
        t->prev_->next_ = t->next_;
    else
        p->head = t->next_;
    if (t->next_)
        t->next_->prev_ = t->prev_;
    else
        p->tail = t->prev_;
    p->queued--;
}

static void idle_push(ct_pool_t *p, struct worker *w)
{
    w->idle_prev = NULL;
    w->idle_next = p->idle;
    if (p->idle)
        p->idle->idle_prev = w;
    p->idle = w;
    p->nidle++;
    w->idle = true;
}

static void idle_remove(ct_pool_t *p, struct worker *w)
{
    if (w->idle_prev)
        w->idle_prev->idle_next = w->idle_next;
    else
        p->idle = w->idle_next;
    if (w->idle_next)
        w->idle_next->idle_prev = w->idle_prev;
    p->nidle--;
    w->idle = false;
}

/* ---- running tasks ------------------------------------------------------------------------- */

static void complete(ct_pool_t *p, ct_pool_task_t *t, int result)
{
    ct_task_done_cb done = t->done_;
    void *arg = t->arg_;
    if (done)
        done(arg, result); /* t may be freed from here on */
    count(&p->completed);
}

static void run(ct_pool_t *p, ct_pool_task_t *t)
{
    ct_token_unregister(&t->reg_); /* the queued-cancel callback can no longer fire */
    int result;
    if (ct_token_canceled(t->tok_)) {
        result = -ECANCELED; /* fired between the hand-off and now: still never started */
        count(&p->canceled_before_start);
    } else {
        count(&p->started);
        result = t->fn_(t->arg_, t->tok_);
    }
    complete(p, t, result);
}

static void on_task_canceled(void *arg, const ct_token_t *tok)
{
    ct_pool_task_t *t = arg;
    ct_pool_t *p = t->pool_;
    (void) tok;
    pthread_mutex_lock(&p->mu);
    if (t->state_ == T_NEW) {
        t->state_ = T_CANCELED_EARLY; /* ct_pool_submit() sees it and backs out */
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (t->state_ != T_QUEUED) {
        pthread_mutex_unlock(&p->mu);
        return; /* running or finishing: the task sees its token itself */
    }
    dequeue(p, t);
    t->state_ = T_DONE;
    /* The completion runs here, on the canceller's thread, outside the lock: ct_pool_free()
     * must not free the pool under it, nor return before the done callback has. */
    p->cancels_in_flight++;
    pthread_mutex_unlock(&p->mu);
    count(&p->canceled_before_start);
    ct_token_unregister(&t->reg_); /* from inside its own callback: returns at once */
    complete(p, t, -ECANCELED);
    pthread_mutex_lock(&p->mu);
    if (--p->cancels_in_flight == 0 && p->stopping)
        pthread_cond_broadcast(&p->cancels_done);
    pthread_mutex_unlock(&p->mu);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct worker *me = arg;
    ct_pool_t *p = me->pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        ct_pool_task_t *t = me->task;
        if (t) {
            me->task = NULL;
        } else if ((t = p->head)) {
            dequeue(p, t);
            t->state_ = T_RUNNING;
        }
        if (t) {
            pthread_mutex_unlock(&p->mu);
            run(p, t);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (p->stopping)
            break;

        /* Idle: park until a submitter hands us a task, the pool stops, or we have been idle
         * long enough to end (only while the pool has more than min_threads). */
        ct__waiter_init(&me->waiter);
        idle_push(p, me);
        int64_t deadline = p->threads > p->min_threads ? ct_now_ns() + p->idle_ns : -1;
        bool leave = false;
        while (me->idle) {
            pthread_mutex_unlock(&p->mu);
            int rc = ct__park(&me->waiter, NULL, NULL, deadline);
            pthread_mutex_lock(&p->mu);
            if (me->idle && rc == -ETIMEDOUT) {
                if (p->threads > p->min_threads) {
                    idle_remove(p, me);
                    leave = true;
                } else {
                    deadline = -1;
                }
            }
        }
        if (leave)
            break;
    }
    p->threads--;
    me->exited = true;
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Start one more thread, reusing the slot of one that ended. Mutex held: creating under the
 * lock keeps ct_pool_free() from ever seeing a half-started thread. */
static int start_thread(ct_pool_t *p)
{
    struct worker *w = NULL;
    for (struct worker *z = p->all; z; z = z->all_next)
        if (z->exited) {
            if (!z->joined)
                pthread_join(z->thread, NULL); /* it has unlocked and is returning */
            z->joined = true;
            w = z;
            break;
        }
    bool fresh = w == NULL;
    if (fresh && !(w = ct__calloc(1, sizeof(*w))))
        return -ENOMEM;
    w->pool = p;
    w->task = NULL;
    w->idle = w->exited = w->joined = false;

    int rc = ct__thread_start(&w->thread, worker_main, w);
    if (rc < 0) {
        if (fresh)
            ct__free(w);
        else
            w->exited = w->joined = true; /* the slot stays free */
        return rc;
    }
    if (fresh) {
        w->all_next = p->all;
        p->all = w;
    }
    p->threads++;
    return 0;
}

/* ---- public -------------------------------------------------------------------------------- */

int ct_pool_new(ct_pool_t **out, const ct_pool_options_t *opts)
{
    ct_pool_options_t o = opts ? *opts : (ct_pool_options_t){0};
    if (!out)
        return -EINVAL;
    if (o.max_threads == 0)
        o.max_threads = 64;
    if (o.min_threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o.min_threads = cpus > 0 ? (unsigned) cpus : 1;
        if (o.min_threads > o.max_threads)
            o.min_threads = o.max_threads;
    }
    if (o.queue_max == 0)
        o.queue_max = 4096;
    if (o.idle_ms == 0)
        o.idle_ms = 10000;
    if (o.max_threads > CT_POOL_MAX_THREADS || o.min_threads > o.max_threads ||
        o.queue_max > CT_POOL_MAX_QUEUE || o.idle_ms < 0 || o.idle_ms > CT_TIMEOUT_MAX_MS)
        return -EINVAL;

    ct_pool_t *p = ct__calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cancels_done, NULL);
    p->queue_max = o.queue_max;
    p->min_threads = o.min_threads;
    p->max_threads = o.max_threads;
    p->idle_ns = o.idle_ms * 1000000;
    pthread_mutex_lock(&p->mu);
    for (unsigned i = 0; i < o.min_threads; i++) {
        int rc = start_thread(p);
        if (rc < 0) {
            pthread_mutex_unlock(&p->mu);
            ct_pool_free(p, CT_POOL_DRAIN);
            return rc == -ENOMEM ? rc : -EAGAIN;
        }
    }
    pthread_mutex_unlock(&p->mu);
    *out = p;
    return 0;
}

int ct_pool_submit(ct_pool_t *p, ct_pool_task_t *t, ct_task_fn fn, ct_task_done_cb done, void *arg,
                   const ct_token_t *tok)
{
    if (!p || !t || !fn)
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    t->fn_ = fn;
    t->done_ = done;
    t->arg_ = arg;
    t->tok_ = tok;
    t->pool_ = p;
    t->state_ = T_NEW;
    ct_token_register(tok, &t->reg_, on_task_canceled, t);

    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (t->state_ == T_CANCELED_EARLY) {
        rc = -ECANCELED;
    } else if (p->stopping) {
        rc = -ESHUTDOWN;
    } else if (p->idle) {
        struct worker *w = p->idle;
        idle_remove(p, w);
        w->task = t;
        t->state_ = T_RUNNING;
        count(&p->submitted);
        uint32_t old = ct__waiter_signal(&w->waiter);
        pthread_mutex_unlock(&p->mu);
        ct__waiter_wake(&w->waiter.word, old);
        return 0;
    } else if (p->queued >= p->queue_max) {
        count(&p->rejected);
        rc = -EAGAIN;
    } else {
        if (p->threads < p->max_threads && start_thread(p) < 0 && p->threads == 0)
            rc = -EAGAIN; /* nobody could ever run it */
        if (rc == 0) {
            enqueue(p, t);
            count(&p->submitted);
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (rc < 0)
        ct_token_unregister(&t->reg_);
    return rc;
}

void ct_pool_stats(ct_pool_t *p, ct_pool_stats_t *out)
{
    out->submitted = __atomic_load_n(&p->submitted, __ATOMIC_RELAXED);
    out->started = __atomic_load_n(&p->started, __ATOMIC_RELAXED);
    out->completed = __atomic_load_n(&p->completed, __ATOMIC_RELAXED);
    out->canceled_before_start = __atomic_load_n(&p->canceled_before_start, __ATOMIC_RELAXED);
    out->rejected = __atomic_load_n(&p->rejected, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->mu);
    out->threads = p->threads;
    out->idle = p->nidle;
    out->queued = p->queued;
    pthread_mutex_unlock(&p->mu);
}

void ct_pool_free(ct_pool_t *p, int flags)
{
    if (!p)
        return;
    ct_pool_task_t *canceled = NULL;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    if (flags & CT_POOL_CANCEL_QUEUED) {
        while (p->head) {
            ct_pool_task_t *t = p->head;
            dequeue(p, t);
            t->state_ = T_DONE;
            t->next_ = canceled;
            canceled = t;
        }
    }
    while (p->idle) {
        struct worker *w = p->idle;
        idle_remove(p, w);
        ct__waiter_wake(&w->waiter.word, ct__waiter_signal(&w->waiter));
    }
    pthread_mutex_unlock(&p->mu);

    while (canceled) {
        ct_pool_task_t *t = canceled;
        canceled = t->next_;
        ct_token_unregister(&t->reg_);
        count(&p->canceled_before_start);
        complete(p, t, -ECANCELED);
    }
    /* No thread starts once `stopping` is set, so the list is final. */
    for (struct worker *w = p->all, *next; w; w = next) {
        next = w->all_next;
        if (!w->joined)
            pthread_join(w->thread, NULL);
        ct__free(w);
    }
    /* Tasks canceled while queued complete on their canceller's thread: wait for those too. */
    pthread_mutex_lock(&p->mu);
    while (p->cancels_in_flight > 0)
        pthread_cond_wait(&p->cancels_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&p->cancels_done);
    pthread_mutex_destroy(&p->mu);
    ct__free(p);
}
