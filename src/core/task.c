/* Task groups and the parallel for, on the pool.
 *
 * A group keeps one record per task (allocated one by one: the pool holds pointers into them)
 * in a growing array. The pool's done callback fills in the record; the first failure cancels
 * the group's source, always without holding the group's mutex, because canceling runs the
 * pool's callbacks for queued siblings, whose done callbacks take that mutex. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "ct/task.h"
#include "ct/wait.h"
#include "internal.h"

struct record {
    ct_pool_task_t task;
    ct_group_t *group;
    ct_task_fn fn;
    void *arg;
    size_t index;
    int result, status; /* under the group's mutex */
    bool started;       /* fn was called (set on the pool thread before it runs) */
};

struct ct_group {
    ct_pool_t *pool;
    ct_source_t *src;
    pthread_mutex_t mu;
    ct_cond_t done_cond;
    struct record **tasks;
    size_t n, cap;
    size_t outstanding;  /* mutex */
    size_t first_failed; /* mutex; SIZE_MAX while none */
};

int ct_group_new(ct_group_t **out, ct_pool_t *pool, const ct_token_t *parent)
{
    if (!out || !pool)
        return -EINVAL;
    ct_group_t *g = ct__calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    const ct_token_t *parents[] = {parent};
    int rc = ct_source_new_linked(&g->src, parents, 1);
    if (rc == 0 && (rc = ct_cond_init(&g->done_cond)) < 0)
        ct_source_free(g->src);
    if (rc < 0) {
        ct__free(g);
        return rc;
    }
    pthread_mutex_init(&g->mu, NULL);
    g->pool = pool;
    g->first_failed = SIZE_MAX;
    *out = g;
    return 0;
}

const ct_token_t *ct_group_token(const ct_group_t *g)
{
    return ct_source_token(g->src);
}

static int run_record(void *arg, const ct_token_t *tok)
{
    struct record *r = arg;
    r->started = true; /* read by record_done on this same thread */
    return r->fn(r->arg, tok);
}

/* Record the outcome; the first failure cancels the siblings. */
static void record_done(void *arg, int result)
{
    struct record *r = arg;
    ct_group_t *g = r->group;
    bool fail_first = false;
    pthread_mutex_lock(&g->mu);
    r->result = result;
    if (result >= 0) {
        r->status = CT_TASK_SUCCEEDED;
    } else if (result == -ECANCELED &&
               (!r->started || ct_token_canceled(ct_source_token(g->src)))) {
        /* Asked to stop, or never started (the group canceled, or the pool shutting down with
         * CT_POOL_CANCEL_QUEUED): not a failure of the task, and no cascade. */
        r->status = CT_TASK_CANCELED;
    } else {
        r->status = CT_TASK_FAILED;
        if (g->first_failed == SIZE_MAX) {
            g->first_failed = r->index;
            fail_first = true;
        }
    }
    size_t index = r->index;
    pthread_mutex_unlock(&g->mu);

    if (fail_first) {
        char detail[CT_DETAIL_MAX];
        snprintf(detail, sizeof(detail), "task %zu failed: %s", index, ct_strerror(result));
        ct_source_cancel(g->src, CT_SIBLING_FAILED, detail);
    }
    /* Last: once outstanding reaches 0 the group may be freed by its waiter. */
    pthread_mutex_lock(&g->mu);
    if (--g->outstanding == 0)
        ct_cond_broadcast(&g->done_cond);
    pthread_mutex_unlock(&g->mu);
}

int ct_group_spawn(ct_group_t *g, ct_task_fn fn, void *arg)
{
    if (!g || !fn)
        return -EINVAL;
    struct record *r = ct__calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    pthread_mutex_lock(&g->mu);
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        struct record **tasks =
            g->n < INT32_MAX ? ct__realloc(g->tasks, cap * sizeof(*tasks)) : NULL;
        if (!tasks) {
            pthread_mutex_unlock(&g->mu);
            ct__free(r);
            return -ENOMEM;
        }
        g->tasks = tasks;
        g->cap = cap;
    }
    *r = (struct record){.group = g, .fn = fn, .arg = arg, .index = g->n};
    g->tasks[g->n++] = r;
    g->outstanding++;
    pthread_mutex_unlock(&g->mu);

    int rc = ct_pool_submit(g->pool, &r->task, run_record, record_done, r, ct_source_token(g->src));
    if (rc == -ECANCELED) {
        record_done(r, -ECANCELED); /* the group was canceled already: recorded, never run */
    } else if (rc < 0) {
        pthread_mutex_lock(&g->mu); /* spawns are serialized: r is still the last record */
        g->n--;
        if (--g->outstanding == 0)
            ct_cond_broadcast(&g->done_cond); /* a waiter may have seen it at 1 */
        pthread_mutex_unlock(&g->mu);
        ct__free(r);
        return rc;
    }
    return (int) r->index;
}

int ct_group_wait(ct_group_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (g->outstanding > 0)
        ct_cond_wait(&g->done_cond, &g->mu, NULL, -1);
    int rc = 0;
    if (g->first_failed != SIZE_MAX) {
        rc = g->tasks[g->first_failed]->result;
    } else {
        for (size_t i = 0; i < g->n && rc == 0; i++)
            if (g->tasks[i]->status == CT_TASK_CANCELED)
                rc = -ECANCELED;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

int ct_group_status(ct_group_t *g, size_t index, int *result)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    if (index >= g->n) {
        pthread_mutex_unlock(&g->mu);
        return -EINVAL;
    }
    struct record *r = g->tasks[index];
    int status = r->status;
    if (result && status != CT_TASK_PENDING)
        *result = r->result;
    pthread_mutex_unlock(&g->mu);
    return status;
}

size_t ct_group_size(ct_group_t *g)
{
    pthread_mutex_lock(&g->mu);
    size_t n = g->n;
    pthread_mutex_unlock(&g->mu);
    return n;
}

void ct_group_free(ct_group_t *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    bool running = g->outstanding > 0;
    pthread_mutex_unlock(&g->mu);
    if (running)
        ct_source_cancel(g->src, CT_CANCELED, "group freed");
    ct_group_wait(g);
    for (size_t i = 0; i < g->n; i++)
        ct__free(g->tasks[i]);
    ct__free(g->tasks);
    ct_source_free(g->src);
    ct_cond_destroy(&g->done_cond);
    pthread_mutex_destroy(&g->mu);
    ct__free(g);
}

/* ---- parallel for -------------------------------------------------------------------------- */

/* The loop's shared state lives on the caller's stack; the caller waits for every helper. */
struct loop {
    ct_for_fn fn;
    void *arg;
    size_t n, grain;
    size_t next;          /* atomic: next index to hand out */
    size_t done;          /* atomic: indices finished */
    int error;            /* atomic: first failure */
    ct_source_t *src;     /* the loop's token (linked to the caller's), passed to fn */
    ct_source_t *helpers; /* cancels helpers that have not started once the work is handed out */
    ct_sem_t finished;    /* one post per helper */
};

static int loop_run(void *arg, const ct_token_t *unused)
{
    struct loop *l = arg;
    const ct_token_t *tok = ct_source_token(l->src);
    (void) unused;
    for (;;) {
        size_t begin = __atomic_fetch_add(&l->next, l->grain, __ATOMIC_RELAXED);
        if (begin >= l->n)
            return 0;
        size_t end = begin + l->grain < l->n ? begin + l->grain : l->n;
        for (size_t i = begin; i < end; i++) {
            int rc = ct_token_check(tok);
            if (rc == 0)
                rc = l->fn(l->arg, i, tok);
            if (rc < 0) {
                int expected = 0;
                if (!(rc == -ECANCELED && ct_token_canceled(tok)) &&
                    __atomic_compare_exchange_n(&l->error, &expected, rc, false, __ATOMIC_ACQ_REL,
                                                __ATOMIC_RELAXED))
                    ct_source_cancel(l->src, CT_SIBLING_FAILED, "parallel for: an index failed");
                __atomic_store_n(&l->next, l->n, __ATOMIC_RELAXED); /* hand out nothing more */
                return rc;
            }
            __atomic_add_fetch(&l->done, 1, __ATOMIC_RELAXED);
        }
    }
}

static void helper_done(void *arg, int result)
{
    (void) result;
    ct_sem_post(&((struct loop *) arg)->finished);
}

int ct_parallel_for(ct_pool_t *pool, size_t n, ct_for_fn fn, void *arg, const ct_token_t *tok)
{
    if (!pool || !fn)
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    if (n == 0)
        return 0;
    ct_pool_stats_t st;
    ct_pool_stats(pool, &st);
    size_t workers = st.threads > 0 ? st.threads : 1;
    size_t nhelpers = workers < n ? workers : n - 1;

    struct loop l = {.fn = fn, .arg = arg, .n = n};
    /* Blocks small enough to balance (about 8 per thread), and at least one index. */
    l.grain = n / ((nhelpers + 1) * 8);
    if (l.grain == 0)
        l.grain = 1;
    const ct_token_t *parents[] = {tok};
    int rc = ct_source_new_linked(&l.src, parents, 1);
    if (rc < 0)
        return rc;
    const ct_token_t *lp[] = {ct_source_token(l.src)};
    if ((rc = ct_source_new_linked(&l.helpers, lp, 1)) < 0) {
        ct_source_free(l.src);
        return rc;
    }
    ct_pool_task_t *tasks = nhelpers ? ct__calloc(nhelpers, sizeof(*tasks)) : NULL;
    if (nhelpers && !tasks)
        nhelpers = 0; /* no memory for helpers: do the work alone */
    ct_sem_init(&l.finished, 0);
    size_t started = 0;
    for (size_t i = 0; i < nhelpers; i++, started++)
        if (ct_pool_submit(pool, &tasks[i], loop_run, helper_done, &l, ct_source_token(l.helpers)) <
            0)
            break;

    loop_run(&l, NULL);
    /* Everything is handed out: helpers still queued have nothing left to do. */
    ct_source_cancel(l.helpers, CT_CANCELED, "parallel for: work handed out");
    for (size_t i = 0; i < started; i++)
        ct_sem_wait(&l.finished, NULL, -1);

    rc = __atomic_load_n(&l.error, __ATOMIC_ACQUIRE);
    if (rc == 0 && __atomic_load_n(&l.done, __ATOMIC_ACQUIRE) != n)
        rc = -ECANCELED;
    ct_sem_destroy(&l.finished);
    ct__free(tasks);
    ct_source_free(l.helpers);
    ct_source_free(l.src);
    return rc;
}
