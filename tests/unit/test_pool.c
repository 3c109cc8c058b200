/* The thread pool. Threads are held inside tasks on semaphores so that the queue's content is
 * known when the test cancels; nothing sleeps to synchronise. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "ct/pool.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "testutil.h"

/* A task that says it started, then waits to be released (or for its token). */
struct blocker {
    ct_pool_task_t task;
    ct_sem_t started, release, done;
    int ran, result, done_calls;
};

static void blocker_init(struct blocker *b)
{
    *b = (struct blocker){0};
    ct_sem_init(&b->started, 0);
    ct_sem_init(&b->release, 0);
    ct_sem_init(&b->done, 0);
}

static void blocker_destroy(struct blocker *b)
{
    ct_sem_destroy(&b->started);
    ct_sem_destroy(&b->release);
    ct_sem_destroy(&b->done);
}

static int blocker_fn(void *arg, const ct_token_t *tok)
{
    struct blocker *b = arg;
    b->ran++;
    ct_sem_post(&b->started);
    return ct_sem_wait(&b->release, tok, -1) == 0 ? 7 : -ECANCELED;
}

static void blocker_done(void *arg, int result)
{
    struct blocker *b = arg;
    b->result = result;
    b->done_calls++;
    ct_sem_post(&b->done);
}

/* A task that only counts. */
struct counted {
    ct_pool_task_t task;
    int ran, result, done_calls;
    ct_sem_t *done;
};

static int counted_fn(void *arg, const ct_token_t *tok)
{
    struct counted *c = arg;
    (void) tok;
    c->ran++;
    return 42;
}

static void counted_done(void *arg, int result)
{
    struct counted *c = arg;
    c->result = result;
    c->done_calls++;
    if (c->done)
        ct_sem_post(c->done);
}

static ct_pool_t *new_pool(unsigned min, unsigned max, unsigned queue)
{
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = min, .max_threads = max, .queue_max = queue};
    assert_int_equal(0, ct_pool_new(&p, &o));
    return p;
}

static void wait_sem(ct_sem_t *s)
{
    assert_int_equal(0, ct_sem_wait(s, NULL, ct_deadline_after(10000 * ct_test_scale())));
}

static void test_task_runs_and_reports_its_result(void **state)
{
    ct_pool_t *p = new_pool(1, 2, 16);
    ct_sem_t done;
    ct_sem_init(&done, 0);
    struct counted c = {.done = &done};
    assert_int_equal(0, ct_pool_submit(p, &c.task, counted_fn, counted_done, &c, NULL));
    wait_sem(&done);
    assert_int_equal(1, c.ran);
    assert_int_equal(42, c.result);
    ct_pool_free(p, CT_POOL_DRAIN);
    assert_int_equal(1, c.done_calls);
    ct_sem_destroy(&done);
}

static void test_task_canceled_while_queued_never_runs(void **state)
{
    ct_pool_t *p = new_pool(1, 1, 16);
    struct blocker b;
    blocker_init(&b);
    assert_int_equal(0, ct_pool_submit(p, &b.task, blocker_fn, blocker_done, &b, NULL));
    wait_sem(&b.started); /* the only thread is held */

    ct_source_t *s;
    ct_source_new(&s);
    struct counted c = {0};
    assert_int_equal(0,
                     ct_pool_submit(p, &c.task, counted_fn, counted_done, &c, ct_source_token(s)));
    ct_pool_stats_t st;
    ct_pool_stats(p, &st);
    assert_int_equal(1, st.queued);
    ct_source_cancel(s, CT_CLIENT_ABORTED, NULL);
    /* Completed on this thread, before cancel returned, without waiting for a thread. */
    assert_int_equal(1, c.done_calls);
    assert_int_equal(-ECANCELED, c.result);
    ct_pool_stats(p, &st);
    assert_int_equal(0, st.queued);
    assert_int_equal(1, st.canceled_before_start);

    ct_sem_post(&b.release);
    wait_sem(&b.done);
    ct_pool_free(p, CT_POOL_DRAIN);
    assert_int_equal(0, c.ran);
    assert_int_equal(7, b.result);
    ct_source_free(s);
    blocker_destroy(&b);
}

static void test_only_uncanceled_queued_tasks_run(void **state)
{
    enum { N = 100 };
    ct_pool_t *p = new_pool(1, 1, N);
    struct blocker b;
    blocker_init(&b);
    ct_pool_submit(p, &b.task, blocker_fn, blocker_done, &b, NULL);
    wait_sem(&b.started);
    struct counted c[N] = {0};
    ct_source_t *s[N];
    for (int i = 0; i < N; i++) {
        ct_source_new(&s[i]);
        assert_int_equal(0, ct_pool_submit(p, &c[i].task, counted_fn, counted_done, &c[i],
                                           ct_source_token(s[i])));
    }
    for (int i = 0; i < N; i += 2)
        ct_source_cancel(s[i], CT_CANCELED, NULL);
    ct_sem_post(&b.release);
    ct_pool_free(p, CT_POOL_DRAIN);
    for (int i = 0; i < N; i++) {
        assert_int_equal(1, c[i].done_calls);
        assert_int_equal(i % 2 ? 1 : 0, c[i].ran);
        assert_int_equal(i % 2 ? 42 : -ECANCELED, c[i].result);
        ct_source_free(s[i]);
    }
    blocker_destroy(&b);
}

static void test_submit_with_a_canceled_token_is_refused(void **state)
{
    ct_pool_t *p = new_pool(1, 1, 4);
    ct_source_t *s;
    ct_source_new(&s);
    ct_source_cancel(s, CT_CANCELED, NULL);
    struct counted c = {0};
    assert_int_equal(-ECANCELED,
                     ct_pool_submit(p, &c.task, counted_fn, counted_done, &c, ct_source_token(s)));
    ct_pool_free(p, CT_POOL_DRAIN);
    assert_int_equal(0, c.done_calls);
    ct_source_free(s);
}

static void test_full_queue_refuses_with_eagain(void **state)
{
    ct_pool_t *p = new_pool(1, 1, 2);
    struct blocker b;
    blocker_init(&b);
    ct_pool_submit(p, &b.task, blocker_fn, blocker_done, &b, NULL);
    wait_sem(&b.started);
    struct counted c[3] = {0};
    assert_int_equal(0, ct_pool_submit(p, &c[0].task, counted_fn, counted_done, &c[0], NULL));
    assert_int_equal(0, ct_pool_submit(p, &c[1].task, counted_fn, counted_done, &c[1], NULL));
    assert_int_equal(-EAGAIN, ct_pool_submit(p, &c[2].task, counted_fn, counted_done, &c[2], NULL));
    ct_pool_stats_t st;
    ct_pool_stats(p, &st);
    assert_int_equal(1, st.rejected);
    ct_sem_post(&b.release);
    ct_pool_free(p, CT_POOL_DRAIN);
    assert_int_equal(1, c[0].ran);
    assert_int_equal(1, c[1].ran);
    assert_int_equal(0, c[2].done_calls);
    blocker_destroy(&b);
}

static void test_running_task_is_stopped_by_its_token(void **state)
{
    ct_pool_t *p = new_pool(1, 1, 4);
    struct blocker b;
    blocker_init(&b);
    ct_source_t *s;
    ct_source_new(&s);
    ct_pool_submit(p, &b.task, blocker_fn, blocker_done, &b, ct_source_token(s));
    wait_sem(&b.started);
    ct_source_cancel(s, CT_TIMEOUT, NULL);
    wait_sem(&b.done);
    assert_int_equal(-ECANCELED, b.result);
    ct_pool_stats_t st;
    ct_pool_stats(p, &st);
    assert_int_equal(1, st.started);
    assert_int_equal(0, st.canceled_before_start);
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_source_free(s);
    blocker_destroy(&b);
}

static void test_pool_grows_on_demand_up_to_max(void **state)
{
    enum { MAX = 4 };
    ct_pool_t *p = new_pool(1, MAX, 16);
    struct blocker b[MAX + 1];
    for (int i = 0; i <= MAX; i++) {
        blocker_init(&b[i]);
        assert_int_equal(0, ct_pool_submit(p, &b[i].task, blocker_fn, blocker_done, &b[i], NULL));
    }
    for (int i = 0; i < MAX; i++)
        wait_sem(&b[i].started); /* all four run at once: the pool grew */
    ct_pool_stats_t st;
    ct_pool_stats(p, &st);
    assert_int_equal(MAX, st.threads);
    assert_int_equal(1, st.queued); /* the fifth waits: the pool stops at max_threads */
    for (int i = 0; i <= MAX; i++)
        ct_sem_post(&b[i].release);
    ct_pool_free(p, CT_POOL_DRAIN);
    for (int i = 0; i <= MAX; i++) {
        assert_int_equal(7, b[i].result);
        blocker_destroy(&b[i]);
    }
}

static void test_idle_threads_above_min_end_after_idle_time(void **state)
{
    ct_clock_fake_start();
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = 1, .max_threads = 3, .idle_ms = 5000};
    assert_int_equal(0, ct_pool_new(&p, &o));
    struct blocker b[3];
    for (int i = 0; i < 3; i++) {
        blocker_init(&b[i]);
        ct_pool_submit(p, &b[i].task, blocker_fn, blocker_done, &b[i], NULL);
    }
    for (int i = 0; i < 3; i++)
        wait_sem(&b[i].started);
    for (int i = 0; i < 3; i++) {
        ct_sem_post(&b[i].release);
        wait_sem(&b[i].done);
    }
    ct_pool_stats_t st;
    assert_true(CT_WAIT_FOR((ct_pool_stats(p, &st), st.idle == 3), 5000));
    assert_int_equal(3, st.threads);
    ct_clock_fake_advance(4999);
    ct_pool_stats(p, &st);
    assert_int_equal(3, st.threads);
    /* Past the idle time, the two threads above the minimum end; the last one stays. */
    assert_true(
        CT_WAIT_FOR((ct_clock_fake_advance(1), ct_pool_stats(p, &st), st.threads == 1), 5000));
    /* And the pool still works, growing again. */
    ct_sem_t done;
    ct_sem_init(&done, 0);
    struct counted c = {.done = &done};
    ct_pool_submit(p, &c.task, counted_fn, counted_done, &c, NULL);
    wait_sem(&done);
    ct_pool_free(p, CT_POOL_DRAIN);
    for (int i = 0; i < 3; i++)
        blocker_destroy(&b[i]);
    ct_sem_destroy(&done);
    ct_clock_fake_stop();
}

struct freer {
    ct_pool_t *pool;
    int flags;
};

static void *free_thread(void *arg)
{
    struct freer *f = arg;
    ct_pool_free(f->pool, f->flags);
    return NULL;
}

/* Hold the only thread, queue n tasks, start ct_pool_free(flags) on another thread, wait until
 * submits are refused with -ESHUTDOWN, then release. */
static void run_free_with_queue(int flags, struct counted *c, int n)
{
    ct_pool_t *p = new_pool(1, 1, (unsigned) n); /* the n tasks fill the queue */
    struct blocker b;
    blocker_init(&b);
    ct_pool_submit(p, &b.task, blocker_fn, blocker_done, &b, NULL);
    wait_sem(&b.started);
    for (int i = 0; i < n; i++)
        assert_int_equal(0, ct_pool_submit(p, &c[i].task, counted_fn, counted_done, &c[i], NULL));
    struct freer f = {p, flags};
    ct_test_thread_t *th = ct_test_thread_start(free_thread, &f);
    /* Until the pool stops, a submit finds the queue full (-EAGAIN) and is not queued. */
    struct counted late = {0};
    int rc;
    assert_true(CT_WAIT_FOR(
        (rc = ct_pool_submit(p, &late.task, counted_fn, counted_done, &late, NULL)) == -ESHUTDOWN,
        5000));
    assert_int_equal(0, late.done_calls);
    ct_sem_post(&b.release);
    ct_test_thread_join(th);
    assert_int_equal(7, b.result);
    blocker_destroy(&b);
}

static void test_free_runs_queued_tasks(void **state)
{
    struct counted c[5] = {0};
    run_free_with_queue(CT_POOL_DRAIN, c, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(1, c[i].ran);
        assert_int_equal(42, c[i].result);
    }
}

static void test_free_can_cancel_queued_tasks(void **state)
{
    struct counted c[5] = {0};
    run_free_with_queue(CT_POOL_CANCEL_QUEUED, c, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(0, c[i].ran);
        assert_int_equal(1, c[i].done_calls);
        assert_int_equal(-ECANCELED, c[i].result);
    }
}

static void test_bad_arguments_are_rejected(void **state)
{
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = 5, .max_threads = 2};
    assert_int_equal(-EINVAL, ct_pool_new(&p, &o));
    o = (ct_pool_options_t){.max_threads = CT_POOL_MAX_THREADS + 1};
    assert_int_equal(-EINVAL, ct_pool_new(&p, &o));
    o = (ct_pool_options_t){.queue_max = CT_POOL_MAX_QUEUE + 1};
    assert_int_equal(-EINVAL, ct_pool_new(&p, &o));
    o = (ct_pool_options_t){.idle_ms = -5};
    assert_int_equal(-EINVAL, ct_pool_new(&p, &o));
    assert_int_equal(-EINVAL, ct_pool_new(NULL, NULL));
    assert_int_equal(0, ct_pool_new(&p, NULL));
    struct counted c = {0};
    assert_int_equal(-EINVAL, ct_pool_submit(p, NULL, counted_fn, NULL, &c, NULL));
    assert_int_equal(-EINVAL, ct_pool_submit(p, &c.task, NULL, NULL, &c, NULL));
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_pool_free(NULL, CT_POOL_DRAIN);
}

static int new_and_free_pool(void *unused)
{
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = 2, .max_threads = 4};
    (void) unused;
    int rc = ct_pool_new(&p, &o);
    if (rc == 0)
        ct_pool_free(p, CT_POOL_DRAIN);
    return rc;
}

static void test_allocation_failures_return_enomem_and_leak_nothing(void **state)
{
    /* the pool, and each of its two first threads */
    assert_int_equal(3, ct_test_alloc_torture(new_and_free_pool, NULL, NULL));
}

/* A done callback that runs on a canceller's thread and takes its time. */
struct slow_done {
    ct_pool_task_t task;
    ct_sem_t entered, leave;
    int returned; /* atomic */
};

static void slow_done_cb(void *arg, int result)
{
    struct slow_done *d = arg;
    (void) result;
    ct_sem_post(&d->entered);
    ct_sem_wait(&d->leave, NULL, -1);
    __atomic_store_n(&d->returned, 1, __ATOMIC_SEQ_CST);
}

struct cancel_arg {
    ct_source_t *src;
};

static void *cancel_thread(void *arg)
{
    ct_source_cancel(((struct cancel_arg *) arg)->src, CT_CANCELED, NULL);
    return NULL;
}

struct freeing {
    ct_pool_t *pool;
    struct slow_done *d;
    int freed;             /* atomic: ct_pool_free returned */
    int done_had_returned; /* what it saw then */
};

static void *free_pool_thread(void *arg)
{
    struct freeing *f = arg;
    ct_pool_free(f->pool, CT_POOL_DRAIN);
    f->done_had_returned = __atomic_load_n(&f->d->returned, __ATOMIC_SEQ_CST);
    __atomic_store_n(&f->freed, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_free_waits_for_done_callbacks_on_a_cancellers_thread(void **state)
{
    ct_pool_t *p = new_pool(1, 1, 16);
    struct blocker b;
    blocker_init(&b);
    ct_pool_submit(p, &b.task, blocker_fn, blocker_done, &b, NULL);
    wait_sem(&b.started);
    struct slow_done d = {0};
    ct_sem_init(&d.entered, 0);
    ct_sem_init(&d.leave, 0);
    ct_source_t *s;
    ct_source_new(&s);
    assert_int_equal(0,
                     ct_pool_submit(p, &d.task, counted_fn, slow_done_cb, &d, ct_source_token(s)));
    struct cancel_arg ca = {s};
    ct_test_thread_t *canceller = ct_test_thread_start(cancel_thread, &ca);
    wait_sem(&d.entered); /* the done callback runs on the canceller's thread */
    ct_sem_post(&b.release);
    wait_sem(&b.done);
    struct freeing f = {p, &d, 0, 0};
    ct_test_thread_t *freer = ct_test_thread_start(free_pool_thread, &f);
    /* The pool's threads end at once, but free must wait for the callback still running. */
    assert_false(CT_WAIT_FOR(__atomic_load_n(&f.freed, __ATOMIC_SEQ_CST), 50));
    ct_sem_post(&d.leave);
    ct_test_thread_join(freer);
    assert_int_equal(1, f.done_had_returned);
    ct_test_thread_join(canceller);
    ct_source_free(s);
    ct_sem_destroy(&d.entered);
    ct_sem_destroy(&d.leave);
    blocker_destroy(&b);
}

/* Tokens fire while tasks are queued, handed off and dequeued: every task completes once, and
 * runs if and only if it did not complete with -ECANCELED before starting. */
struct race_task {
    ct_pool_task_t task;
    int ran, result, done_calls; /* atomic */
};

static int race_fn(void *arg, const ct_token_t *tok)
{
    struct race_task *r = arg;
    (void) tok;
    __atomic_add_fetch(&r->ran, 1, __ATOMIC_RELAXED);
    return 1;
}

static void race_done(void *arg, int result)
{
    struct race_task *r = arg;
    __atomic_store_n(&r->result, result, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->done_calls, 1, __ATOMIC_RELEASE);
}

static void test_race_cancel_against_dequeue_completes_each_task_once(void **state)
{
    enum { N = 20000 };
    ct_pool_t *p = new_pool(2, 2, N);
    struct race_task *r = calloc(N, sizeof(*r));
    ct_source_t **s = calloc(N, sizeof(*s));
    for (int i = 0; i < N; i++) {
        ct_source_new(&s[i]);
        int rc = ct_pool_submit(p, &r[i].task, race_fn, race_done, &r[i], ct_source_token(s[i]));
        assert_int_equal(0, rc);
        if (i >= 8)
            ct_source_cancel(s[i - 8], CT_CANCELED, NULL); /* a few behind: queued or running */
    }
    ct_pool_free(p, CT_POOL_DRAIN);
    int ran = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(1, r[i].done_calls);
        assert_int_equal(r[i].ran ? 1 : -ECANCELED, r[i].result);
        ran += r[i].ran;
        ct_source_free(s[i]);
    }
    printf("%d of %d tasks ran\n", ran, N);
    free(r);
    free(s);
}

CT_TEST_MAIN(cmocka_unit_test(test_task_runs_and_reports_its_result),
             cmocka_unit_test(test_task_canceled_while_queued_never_runs),
             cmocka_unit_test(test_only_uncanceled_queued_tasks_run),
             cmocka_unit_test(test_submit_with_a_canceled_token_is_refused),
             cmocka_unit_test(test_full_queue_refuses_with_eagain),
             cmocka_unit_test(test_running_task_is_stopped_by_its_token),
             cmocka_unit_test(test_pool_grows_on_demand_up_to_max),
             cmocka_unit_test(test_idle_threads_above_min_end_after_idle_time),
             cmocka_unit_test(test_free_runs_queued_tasks),
             cmocka_unit_test(test_free_can_cancel_queued_tasks),
             cmocka_unit_test(test_bad_arguments_are_rejected),
             cmocka_unit_test(test_allocation_failures_return_enomem_and_leak_nothing),
             cmocka_unit_test(test_race_cancel_against_dequeue_completes_each_task_once),
             cmocka_unit_test(test_free_waits_for_done_callbacks_on_a_cancellers_thread))
