/* Task groups and the parallel for: the first failure cancels the siblings, who see
 * CT_SIBLING_FAILED; the parent's cancellation stops everything; loops stop early. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct/task.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "testutil.h"

static ct_pool_t *new_pool(unsigned max)
{
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = 1, .max_threads = max, .queue_max = 1024};
    assert_int_equal(0, ct_pool_new(&p, &o));
    return p;
}

static int64_t bound(void)
{
    return ct_deadline_after(10000 * ct_test_scale());
}

static int return_index(void *arg, const ct_token_t *tok)
{
    (void) tok;
    return (int) (intptr_t) arg;
}

struct hold {
    ct_sem_t started, release;
};

static int blocker(void *arg, const ct_token_t *tok)
{
    struct hold *h = arg;
    ct_sem_post(&h->started);
    return ct_sem_wait(&h->release, tok, -1);
}

static void test_group_of_successes_returns_zero(void **state)
{
    ct_pool_t *p = new_pool(4);
    ct_group_t *g;
    assert_int_equal(0, ct_group_new(&g, p, NULL));
    for (int i = 0; i < 8; i++)
        assert_int_equal(i, ct_group_spawn(g, return_index, (void *) (intptr_t) i));
    assert_int_equal(0, ct_group_wait(g));
    assert_int_equal(8, ct_group_size(g));
    for (int i = 0; i < 8; i++) {
        int result = -1;
        assert_int_equal(CT_TASK_SUCCEEDED, ct_group_status(g, i, &result));
        assert_int_equal(i, result);
    }
    assert_false(ct_token_canceled(ct_group_token(g)));
    assert_int_equal(-EINVAL, ct_group_status(g, 8, NULL));
    ct_group_free(g);
    ct_pool_free(p, CT_POOL_DRAIN);
}

/* Siblings that wait in a ct call until their token fires, and record why it fired. */
struct siblings {
    ct_sem_t started, go;
    int reasons[16];
    int nreasons; /* atomic */
};

static int sibling(void *arg, const ct_token_t *tok)
{
    struct siblings *s = arg;
    ct_sem_post(&s->started);
    int rc = ct_sleep_ms(60000, tok);
    int i = __atomic_fetch_add(&s->nreasons, 1, __ATOMIC_RELAXED);
    s->reasons[i] = ct_token_reason(tok);
    return rc;
}

static int failing(void *arg, const ct_token_t *tok)
{
    struct siblings *s = arg;
    (void) tok;
    ct_sem_wait(&s->go, NULL, -1);
    return -EIO;
}

static void test_first_failure_cancels_siblings_with_sibling_failed(void **state)
{
    enum { N = 8 };
    ct_pool_t *p = new_pool(N + 1);
    struct siblings s = {0};
    ct_sem_init(&s.started, 0);
    ct_sem_init(&s.go, 0);
    ct_group_t *g;
    ct_group_new(&g, p, NULL);
    for (int i = 0; i < N; i++)
        ct_group_spawn(g, sibling, &s);
    assert_int_equal(N, ct_group_spawn(g, failing, &s));
    for (int i = 0; i < N; i++)
        assert_int_equal(0, ct_sem_wait(&s.started, NULL, bound()));
    int64_t t0 = ct_now_ms();
    ct_sem_post(&s.go);
    assert_int_equal(-EIO, ct_group_wait(g));
    printf("failure to all siblings returned: %lld ms\n", (long long) (ct_now_ms() - t0));

    const ct_token_t *tok = ct_group_token(g);
    assert_int_equal(CT_SIBLING_FAILED, ct_token_reason(tok));
    assert_string_equal("task 8 failed: Input/output error", ct_token_detail(tok));
    assert_int_equal(N, s.nreasons);
    for (int i = 0; i < N; i++) {
        int result = 0;
        assert_int_equal(CT_SIBLING_FAILED, s.reasons[i]);
        assert_int_equal(CT_TASK_CANCELED, ct_group_status(g, i, &result));
        assert_int_equal(-ECANCELED, result);
    }
    int result = 0;
    assert_int_equal(CT_TASK_FAILED, ct_group_status(g, N, &result));
    assert_int_equal(-EIO, result);
    ct_group_free(g);
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_sem_destroy(&s.started);
    ct_sem_destroy(&s.go);
}

static void test_parent_cancel_stops_the_group(void **state)
{
    ct_pool_t *p = new_pool(4);
    struct siblings s = {0};
    ct_sem_init(&s.started, 0);
    ct_source_t *parent;
    ct_source_new(&parent);
    ct_group_t *g;
    ct_group_new(&g, p, ct_source_token(parent));
    for (int i = 0; i < 3; i++)
        ct_group_spawn(g, sibling, &s);
    for (int i = 0; i < 3; i++)
        assert_int_equal(0, ct_sem_wait(&s.started, NULL, bound()));
    ct_source_cancel(parent, CT_CLIENT_ABORTED, "client left");
    assert_int_equal(-ECANCELED, ct_group_wait(g));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(CT_TASK_CANCELED, ct_group_status(g, i, NULL));
        assert_int_equal(CT_CLIENT_ABORTED, s.reasons[i]);
    }
    assert_ptr_equal(ct_source_token(parent), ct_token_origin(ct_group_token(g)));
    ct_group_free(g);
    ct_source_free(parent);
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_sem_destroy(&s.started);
}

static int must_not_run(void *arg, const ct_token_t *tok)
{
    (void) tok;
    ++*(int *) arg;
    return 0;
}

static void test_spawn_on_a_canceled_group_records_a_canceled_task(void **state)
{
    ct_pool_t *p = new_pool(2);
    ct_source_t *parent;
    ct_source_new(&parent);
    ct_source_cancel(parent, CT_SHUTDOWN, NULL);
    ct_group_t *g;
    ct_group_new(&g, p, ct_source_token(parent));
    int ran = 0;
    assert_int_equal(0, ct_group_spawn(g, must_not_run, &ran));
    assert_int_equal(-ECANCELED, ct_group_wait(g));
    assert_int_equal(CT_TASK_CANCELED, ct_group_status(g, 0, NULL));
    assert_int_equal(0, ran);
    ct_group_free(g);
    ct_source_free(parent);
    ct_pool_free(p, CT_POOL_DRAIN);
}

static void test_group_free_cancels_and_waits_for_running_tasks(void **state)
{
    ct_pool_t *p = new_pool(3);
    struct siblings s = {0};
    ct_sem_init(&s.started, 0);
    ct_group_t *g;
    ct_group_new(&g, p, NULL);
    ct_group_spawn(g, sibling, &s);
    ct_group_spawn(g, sibling, &s);
    for (int i = 0; i < 2; i++)
        assert_int_equal(0, ct_sem_wait(&s.started, NULL, bound()));
    ct_group_free(g); /* returns only once both have returned */
    assert_int_equal(2, s.nreasons);
    assert_int_equal(CT_CANCELED, s.reasons[0]);
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_sem_destroy(&s.started);
}

static void test_queued_siblings_never_start_after_a_failure(void **state)
{
    /* One thread: the failing task runs first, the others are still queued and never run. */
    ct_pool_t *p = new_pool(1);
    struct siblings s = {0};
    ct_sem_init(&s.go, 1);
    ct_group_t *g;
    ct_group_new(&g, p, NULL);
    ct_group_spawn(g, failing, &s);
    int ran = 0;
    for (int i = 0; i < 5; i++)
        ct_group_spawn(g, must_not_run, &ran);
    assert_int_equal(-EIO, ct_group_wait(g));
    assert_int_equal(0, ran);
    for (int i = 1; i < 6; i++)
        assert_int_equal(CT_TASK_CANCELED, ct_group_status(g, i, NULL));
    ct_group_free(g);
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_sem_destroy(&s.go);
}

struct waiter_arg {
    ct_group_t *g;
    int returned; /* atomic */
};

static void *group_waiter(void *arg)
{
    struct waiter_arg *w = arg;
    ct_group_wait(w->g);
    __atomic_store_n(&w->returned, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_failed_spawns_do_not_strand_a_waiter(void **state)
{
    /* A saturated pool: every spawn fails with -EAGAIN after briefly counting as outstanding. A
     * thread waiting on the group meanwhile must still return. */
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = 1, .max_threads = 1, .queue_max = 1};
    ct_pool_new(&p, &o);
    struct hold h;
    ct_sem_init(&h.started, 0);
    ct_sem_init(&h.release, 0);
    ct_pool_task_t t[2];
    ct_pool_submit(p, &t[0], blocker, NULL, &h, NULL);
    assert_int_equal(0, ct_sem_wait(&h.started, NULL, bound()));
    ct_pool_submit(p, &t[1], blocker, NULL, &h, NULL); /* fills the queue */
    ct_group_t *g;
    ct_group_new(&g, p, NULL);
    for (int round = 0; round < 20; round++) {
        struct waiter_arg w = {g, 0};
        ct_test_thread_t *th = ct_test_thread_start(group_waiter, &w);
        for (int i = 0; i < 2000 && !__atomic_load_n(&w.returned, __ATOMIC_SEQ_CST); i++)
            assert_int_equal(-EAGAIN, ct_group_spawn(g, return_index, NULL));
        assert_true(CT_WAIT_FOR(__atomic_load_n(&w.returned, __ATOMIC_SEQ_CST), 5000));
        ct_test_thread_join(th);
    }
    assert_int_equal(0, ct_group_size(g));
    ct_group_free(g);
    ct_sem_post(&h.release);
    ct_sem_post(&h.release);
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_sem_destroy(&h.started);
    ct_sem_destroy(&h.release);
}

static void *free_canceling_queued(void *arg)
{
    ct_pool_free(arg, CT_POOL_CANCEL_QUEUED);
    return NULL;
}

static void test_tasks_canceled_by_pool_shutdown_are_canceled_not_failed(void **state)
{
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = 1, .max_threads = 1, .queue_max = 16};
    ct_pool_new(&p, &o);
    struct hold h;
    ct_sem_init(&h.started, 0);
    ct_sem_init(&h.release, 0);
    ct_pool_task_t t;
    ct_pool_submit(p, &t, blocker, NULL, &h, NULL);
    assert_int_equal(0, ct_sem_wait(&h.started, NULL, bound()));
    ct_group_t *g;
    ct_group_new(&g, p, NULL);
    int ran = 0;
    for (int i = 0; i < 3; i++)
        ct_group_spawn(g, must_not_run, &ran); /* queued behind the blocker */
    ct_test_thread_t *freer = ct_test_thread_start(free_canceling_queued, p);
    /* Once free has started, the queue has been emptied: the three never run. */
    assert_true(CT_WAIT_FOR(ct_group_spawn(g, must_not_run, &ran) == -ESHUTDOWN, 5000));
    ct_sem_post(&h.release);
    ct_test_thread_join(freer);
    assert_int_equal(-ECANCELED, ct_group_wait(g));
    assert_int_equal(0, ran);
    for (int i = 0; i < 3; i++) {
        int result = 0;
        assert_int_equal(CT_TASK_CANCELED, ct_group_status(g, i, &result));
        assert_int_equal(-ECANCELED, result);
    }
    /* Shutdown is not a sibling's failure. */
    assert_false(ct_token_canceled(ct_group_token(g)));
    ct_group_free(g);
    ct_sem_destroy(&h.started);
    ct_sem_destroy(&h.release);
}

/* ---- parallel for -------------------------------------------------------------------------- */

struct visits {
    int *count;
    size_t fail_at;
    int calls_after_failure; /* atomic */
    int failed;              /* atomic */
    ct_source_t *cancel_me;
};

static int visit(void *arg, size_t i, const ct_token_t *tok)
{
    struct visits *v = arg;
    /* A call that begins with the loop's token already fired: the loop checked the token just
     * before it fired. At most one such call per thread. */
    if (ct_token_canceled(tok))
        __atomic_add_fetch(&v->calls_after_failure, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&v->count[i], 1, __ATOMIC_RELAXED);
    if (i == v->fail_at) {
        __atomic_store_n(&v->failed, 1, __ATOMIC_RELEASE);
        if (v->cancel_me) {
            ct_source_cancel(v->cancel_me, CT_CANCELED, "enough");
            return 0;
        }
        return -EIO;
    }
    return 0;
}

static void test_parallel_for_visits_every_index_once(void **state)
{
    enum { N = 100000 };
    ct_pool_t *p = new_pool(4);
    struct visits v = {.count = calloc(N, sizeof(int)), .fail_at = SIZE_MAX};
    assert_int_equal(0, ct_parallel_for(p, N, visit, &v, NULL));
    for (size_t i = 0; i < N; i++)
        assert_int_equal(1, v.count[i]);
    assert_int_equal(0, ct_parallel_for(p, 0, visit, &v, NULL));
    assert_int_equal(-EINVAL, ct_parallel_for(NULL, 1, visit, &v, NULL));
    free(v.count);
    ct_pool_free(p, CT_POOL_DRAIN);
}

static size_t visited(const struct visits *v, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += (size_t) v->count[i];
    return k;
}

static void test_parallel_for_stops_early_when_an_index_fails(void **state)
{
    enum { N = 1000000 };
    ct_pool_t *p = new_pool(4);
    struct visits v = {.count = calloc(N, sizeof(int)), .fail_at = 1000};
    assert_int_equal(-EIO, ct_parallel_for(p, N, visit, &v, NULL));
    size_t k = visited(&v, N);
    printf("visited %zu of %d indices, %d calls began after the token fired\n", k, N,
           v.calls_after_failure);
    assert_true(k < N);
    /* Each of the 4 pool threads and the caller may have passed its check just before. */
    assert_true(v.calls_after_failure <= 5);
    free(v.count);
    ct_pool_free(p, CT_POOL_DRAIN);
}

static void test_parallel_for_stops_when_the_token_fires(void **state)
{
    enum { N = 1000000 };
    ct_pool_t *p = new_pool(4);
    ct_source_t *s;
    ct_source_new(&s);
    struct visits v = {.count = calloc(N, sizeof(int)), .fail_at = 500, .cancel_me = s};
    assert_int_equal(-ECANCELED, ct_parallel_for(p, N, visit, &v, ct_source_token(s)));
    assert_true(visited(&v, N) < N);
    assert_true(v.calls_after_failure <= 5);
    assert_int_equal(-ECANCELED, ct_parallel_for(p, N, visit, &v, ct_source_token(s)));
    free(v.count);
    ct_source_free(s);
    ct_pool_free(p, CT_POOL_DRAIN);
}

struct blocked_loop {
    ct_sem_t started;
};

static int block_index(void *arg, size_t i, const ct_token_t *tok)
{
    struct blocked_loop *b = arg;
    (void) i;
    ct_sem_post(&b->started);
    return ct_sleep_ms(60000, tok);
}

struct canceller {
    ct_source_t *src;
    ct_sem_t *started;
    int wait_for;
};

static void *cancel_after_starts(void *arg)
{
    struct canceller *c = arg;
    for (int i = 0; i < c->wait_for; i++)
        ct_sem_wait(c->started, NULL, -1);
    ct_source_cancel(c->src, CT_TIMEOUT, NULL);
    return NULL;
}

static void test_parallel_for_with_blocking_bodies_is_canceled(void **state)
{
    ct_pool_t *p = new_pool(2);
    ct_source_t *s;
    ct_source_new(&s);
    struct blocked_loop b;
    ct_sem_init(&b.started, 0);
    struct canceller c = {s, &b.started, 2}; /* the caller and at least one helper are inside */
    ct_test_thread_t *th = ct_test_thread_start(cancel_after_starts, &c);
    assert_int_equal(-ECANCELED, ct_parallel_for(p, 1000, block_index, &b, ct_source_token(s)));
    ct_test_thread_join(th);
    ct_sem_destroy(&b.started);
    ct_source_free(s);
    ct_pool_free(p, CT_POOL_DRAIN);
}

static void test_parallel_for_on_a_busy_pool_runs_on_the_calling_thread(void **state)
{
    ct_pool_t *p;
    ct_pool_options_t o = {.min_threads = 1, .max_threads = 1, .queue_max = 16};
    ct_pool_new(&p, &o);
    struct hold h;
    ct_sem_init(&h.started, 0);
    ct_sem_init(&h.release, 0);
    ct_pool_task_t t;
    ct_pool_submit(p, &t, blocker, NULL, &h, NULL);
    assert_int_equal(0, ct_sem_wait(&h.started, NULL, bound())); /* the only thread is busy */
    struct visits v = {.count = calloc(1000, sizeof(int)), .fail_at = SIZE_MAX};
    assert_int_equal(0, ct_parallel_for(p, 1000, visit, &v, NULL));
    assert_int_equal(1000, visited(&v, 1000));
    ct_pool_stats_t st;
    ct_pool_stats(p, &st);
    assert_int_equal(0, st.queued); /* the helper that never got a thread was withdrawn */
    ct_sem_post(&h.release);
    ct_pool_free(p, CT_POOL_DRAIN);
    ct_sem_destroy(&h.started);
    ct_sem_destroy(&h.release);
    free(v.count);
}

CT_TEST_MAIN(cmocka_unit_test(test_group_of_successes_returns_zero),
             cmocka_unit_test(test_first_failure_cancels_siblings_with_sibling_failed),
             cmocka_unit_test(test_parent_cancel_stops_the_group),
             cmocka_unit_test(test_spawn_on_a_canceled_group_records_a_canceled_task),
             cmocka_unit_test(test_group_free_cancels_and_waits_for_running_tasks),
             cmocka_unit_test(test_queued_siblings_never_start_after_a_failure),
             cmocka_unit_test(test_failed_spawns_do_not_strand_a_waiter),
             cmocka_unit_test(test_tasks_canceled_by_pool_shutdown_are_canceled_not_failed),
             cmocka_unit_test(test_parallel_for_visits_every_index_once),
             cmocka_unit_test(test_parallel_for_stops_early_when_an_index_fails),
             cmocka_unit_test(test_parallel_for_stops_when_the_token_fires),
             cmocka_unit_test(test_parallel_for_with_blocking_bodies_is_canceled),
             cmocka_unit_test(test_parallel_for_on_a_busy_pool_runs_on_the_calling_thread))
