/* ct/pool.h — a thread pool whose tasks carry a token.
 *
 * Tasks run in blocking style on worker threads. Every task carries a token: a task whose token
 * fires while it is still queued is taken out of the queue at once and never runs; its
 * completion reports -ECANCELED, and the pool counts the work saved. A running task gets its token
 * and stops when it fires, like any ct call.
 *
 *   static int work(void *arg, const ct_token_t *tok) { return ct_sleep_ms(100, tok); }
 *   static void done(void *arg, int result) { ... result is work()'s, or -ECANCELED ... }
 *
 *   ct_pool_task_t *t = &req->task;                     // storage in the caller's object
 *   rc = ct_pool_submit(pool, t, work, done, req, tok); // 0: done() will be called once
 *
 * Threads: min_threads start with the pool; more start on demand, up to max_threads, when a task
 * finds no idle thread; threads above min_threads end after idle_ms without work. A submitted
 * task goes straight to an idle thread when there is one, else into a bounded FIFO queue. */
#ifndef CT_POOL_H
#define CT_POOL_H

#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_pool ct_pool_t;

/* The work: runs on a pool thread with the task's token. Its return value is the task's result
 * (by convention >= 0 success, negative errno failure, -ECANCELED when the token stopped it). */
typedef int (*ct_task_fn)(void *arg, const ct_token_t *tok);

/* Called exactly once per successfully submitted task, with the task's result, or -ECANCELED if
 * the task never started (its token fired first, or the pool was freed with
 * CT_POOL_CANCEL_QUEUED). Runs on the pool thread that ran the task; for a task canceled while
 * queued, on the thread that canceled the token, before ct_source_cancel() returns (keep it
 * short). After it returns the task storage may be reused or freed. */
typedef void (*ct_task_done_cb)(void *arg, int result);

/* Task storage, supplied by the caller (usually inside the object the task works on). Fields are
 * private. It must stay in place from ct_pool_submit() until the done callback has returned. */
typedef struct ct_pool_task {
    struct ct_pool_task *next_, *prev_;
    ct_task_fn fn_;
    ct_task_done_cb done_;
    void *arg_;
    const ct_token_t *tok_;
    ct_pool_t *pool_;
    ct_reg_t reg_;
    int state_;
} ct_pool_task_t;

typedef struct ct_pool_options {
    unsigned min_threads; /* threads started at once and kept when idle, <= max_threads
                           * (default: the CPU count, at most max_threads) */
    unsigned max_threads; /* 1..CT_POOL_MAX_THREADS (default: 64) */
    unsigned queue_max; /* tasks that may wait for a thread, 0..CT_POOL_MAX_QUEUE (default 4096) */
    int64_t idle_ms;    /* idle time after which a thread above min_threads ends (default 10 s) */
} ct_pool_options_t;

#define CT_POOL_MAX_THREADS 4096u
#define CT_POOL_MAX_QUEUE   (1u << 24)

/* Create a pool. `opts` may be NULL for the defaults; a zero field takes its default.
 * Returns: 0 and *out; -EINVAL for values out of range (min_threads > max_threads included);
 * -ENOMEM; -EAGAIN if the first threads could not be started.
 * Ownership: the caller frees it with ct_pool_free(). Thread: any. */
int ct_pool_new(ct_pool_t **out, const ct_pool_options_t *opts);

/* Run fn(arg, tok) on the pool; then done(arg, result) (done may be NULL when the caller learns
 * of completion otherwise). If `tok` fires before the task starts, it never runs and done gets
 * -ECANCELED. done may run before this returns (the token fired meanwhile, or a thread was idle
 * and quick).
 * Returns: 0 submitted (done will be called once); -ECANCELED if `tok` had already fired;
 * -EAGAIN if the queue is full; -ESHUTDOWN if the pool is being freed; -EINVAL. When this
 * returns an error, done is never called.
 * Thread: any, pool threads included. */
int ct_pool_submit(ct_pool_t *pool, ct_pool_task_t *task, ct_task_fn fn, ct_task_done_cb done,
                   void *arg, const ct_token_t *tok);

/* Counters since the pool was created, and its state now. */
typedef struct ct_pool_stats {
    uint64_t submitted;             /* tasks accepted by ct_pool_submit() */
    uint64_t started;               /* tasks whose fn was called */
    uint64_t completed;             /* done callbacks returned (whatever the result) */
    uint64_t canceled_before_start; /* tasks that never ran because their token fired */
    uint64_t rejected;              /* submits refused with -EAGAIN (queue full) */
    unsigned threads;               /* threads now */
    unsigned idle;                  /* of which idle */
    unsigned queued;                /* tasks waiting for a thread */
} ct_pool_stats_t;

/* Read the counters. Thread: any. */
void ct_pool_stats(ct_pool_t *pool, ct_pool_stats_t *out);

enum {
    CT_POOL_DRAIN = 0,        /* ct_pool_free(): queued tasks still run */
    CT_POOL_CANCEL_QUEUED = 1 /* ct_pool_free(): queued tasks complete with -ECANCELED */
};

/* Shut down and free: submits fail with -ESHUTDOWN from now on; queued tasks run, or with
 * CT_POOL_CANCEL_QUEUED complete with -ECANCELED without running; running tasks are waited for
 * (cancel their tokens to make that quick); every thread is joined; and every done callback has
 * returned, including those running on a canceller's thread. NULL is ignored.
 * Thread: any except a pool thread or a done callback (it would wait for itself). */
void ct_pool_free(ct_pool_t *pool, int flags);

#ifdef __cplusplus
}
#endif
#endif
