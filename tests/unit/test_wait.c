/* Cancellable waits: sleep, fd wait, semaphore, condition variable. Threads that must be blocked
 * before the test acts are lined up with semaphores; the token then cancels the wait. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "ct/time.h"
#include "ct/token.h"
#include "ct/wait.h"
#include "testutil.h"

static ct_source_t *new_source(void)
{
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    return s;
}

/* A thread running one wait; `started` is posted just before the wait begins. */
struct waiter {
    ct_sem_t started;
    const ct_token_t *tok;
    int fd;
    int64_t deadline;
    ct_sem_t *sem;
    ct_cond_t *cond;
    pthread_mutex_t *mu;
    int *pred;
    int rc;
    int held_after; /* cond: the mutex was held again when the wait returned */
};

static void waiter_init(struct waiter *w, const ct_token_t *tok)
{
    *w = (struct waiter){.tok = tok, .fd = -1, .deadline = -1};
    ct_sem_init(&w->started, 0);
}

static void *sleep_thread(void *arg)
{
    struct waiter *w = arg;
    ct_sem_post(&w->started);
    w->rc = ct_sleep_ms(60000, w->tok);
    return NULL;
}

/* Cancel a wait that is already blocked (or about to be: both must work) and join it. */
static int cancel_and_join(struct waiter *w, void *(*fn)(void *), ct_source_t *src)
{
    ct_test_thread_t *th = ct_test_thread_start(fn, w);
    assert_int_equal(0, ct_sem_wait(&w->started, NULL, -1));
    ct_source_cancel(src, CT_CLIENT_ABORTED, NULL);
    ct_test_thread_join(th);
    ct_sem_destroy(&w->started);
    return w->rc;
}

static void test_sleep_returns_ecanceled_when_the_token_fires(void **state)
{
    ct_source_t *s = new_source();
    struct waiter w;
    waiter_init(&w, ct_source_token(s));
    int64_t start = ct_test_now_ms();
    assert_int_equal(-ECANCELED, cancel_and_join(&w, sleep_thread, s));
    assert_true(ct_test_now_ms() - start < 60000);
    ct_source_free(s);
}

static void test_sleep_with_a_canceled_token_returns_at_once(void **state)
{
    ct_source_t *s = new_source();
    ct_source_cancel(s, CT_CANCELED, NULL);
    assert_int_equal(-ECANCELED, ct_sleep_ms(60000, ct_source_token(s)));
    assert_int_equal(-ECANCELED, ct_sleep_ms(0, ct_source_token(s)));
    ct_source_free(s);
}

static void test_sleep_waits_the_full_time(void **state)
{
    int64_t start = ct_now_ns();
    assert_int_equal(0, ct_sleep_ms(20, NULL));
    assert_true(ct_now_ns() - start >= 20 * 1000000);
    assert_int_equal(0, ct_sleep_ms(0, NULL));
    assert_int_equal(-EINVAL, ct_sleep_ms(-1, NULL));
}

/* ---- fd wait ------------------------------------------------------------------------------- */

static void make_pipe(int p[2])
{
    assert_int_equal(0, pipe2(p, O_NONBLOCK | O_CLOEXEC));
}

static void test_fd_wait_reports_readiness(void **state)
{
    int p[2];
    make_pipe(p);
    assert_int_equal(1, write(p[1], "x", 1));
    assert_int_equal(POLLIN, ct_fd_wait(p[0], POLLIN, NULL, -1));
    assert_int_equal(POLLOUT, ct_fd_wait(p[1], POLLOUT, NULL, -1));
    close(p[1]);
    int rc = ct_fd_wait(p[0], POLLIN, NULL, -1);
    assert_true(rc & POLLIN);
    close(p[0]);
}

static void test_fd_wait_reports_hangup(void **state)
{
    int p[2];
    make_pipe(p);
    close(p[1]);
    assert_true(ct_fd_wait(p[0], POLLIN, NULL, -1) & POLLHUP);
    close(p[0]);
}

static void *fd_wait_thread(void *arg)
{
    struct waiter *w = arg;
    ct_sem_post(&w->started);
    w->rc = ct_fd_wait(w->fd, POLLIN, w->tok, w->deadline);
    return NULL;
}

static void test_fd_wait_returns_ecanceled_when_the_token_fires(void **state)
{
    int p[2];
    make_pipe(p);
    ct_source_t *s = new_source();
    struct waiter w;
    waiter_init(&w, ct_source_token(s));
    w.fd = p[0];
    assert_int_equal(-ECANCELED, cancel_and_join(&w, fd_wait_thread, s));
    /* The thread's eventfd was drained: the next wait on this thread is not woken spuriously. */
    assert_int_equal(-ETIMEDOUT, ct_fd_wait(p[0], POLLIN, NULL, ct_deadline_after(5)));
    ct_source_free(s);
    close(p[0]);
    close(p[1]);
}

static void test_fd_wait_times_out_at_the_deadline(void **state)
{
    int p[2];
    make_pipe(p);
    int64_t start = ct_now_ms();
    assert_int_equal(-ETIMEDOUT, ct_fd_wait(p[0], POLLIN, NULL, start + 20));
    assert_true(ct_now_ms() >= start + 20);
    close(p[0]);
    close(p[1]);
}

static void test_fd_wait_with_a_past_deadline_polls_once(void **state)
{
    int p[2];
    make_pipe(p);
    assert_int_equal(-ETIMEDOUT, ct_fd_wait(p[0], POLLIN, NULL, 0));
    assert_int_equal(1, write(p[1], "x", 1));
    assert_int_equal(POLLIN, ct_fd_wait(p[0], POLLIN, NULL, 0));
    close(p[0]);
    close(p[1]);
}

static void test_fd_wait_rejects_bad_fds(void **state)
{
    assert_int_equal(-EBADF, ct_fd_wait(-1, POLLIN, NULL, -1));
    /* A number no open fd has (the wait's own eventfd takes the lowest free number). */
    assert_int_equal(-EBADF, ct_fd_wait(1 << 20, POLLIN, NULL, -1));
}

static void test_fd_wait_deadline_follows_the_fake_clock(void **state)
{
    int p[2];
    make_pipe(p);
    ct_clock_fake_start();
    struct waiter w;
    waiter_init(&w, NULL);
    w.fd = p[0];
    w.deadline = ct_now_ms() + 1000;
    ct_test_thread_t *th = ct_test_thread_start(fd_wait_thread, &w);
    ct_sem_wait(&w.started, NULL, -1);
    ct_clock_fake_advance(1000);
    ct_test_thread_join(th);
    assert_int_equal(-ETIMEDOUT, w.rc);
    ct_clock_fake_stop();
    ct_sem_destroy(&w.started);
    close(p[0]);
    close(p[1]);
}

static void test_deadlines_below_minus_one_are_rejected(void **state)
{
    int p[2];
    make_pipe(p);
    ct_sem_t sem;
    ct_sem_init(&sem, 1);
    char c;
    assert_int_equal(-EINVAL, ct_fd_wait(p[0], POLLIN, NULL, -2));
    assert_int_equal(-EINVAL, ct_sem_wait(&sem, NULL, -5));
    assert_int_equal(-EINVAL, ct_read(p[0], &c, 1, NULL, INT64_MIN));
    assert_int_equal(-EINVAL, ct_write(p[1], "x", 1, NULL, -2));
    assert_int_equal(0, ct_sem_trywait(&sem)); /* the refused wait took nothing */
    ct_sem_destroy(&sem);
    close(p[0]);
    close(p[1]);
}

static void test_far_future_deadlines_mean_no_deadline(void **state)
{
    int p[2];
    make_pipe(p);
    assert_int_equal(1, write(p[1], "x", 1));
    assert_int_equal(POLLIN, ct_fd_wait(p[0], POLLIN, NULL, INT64_MAX));
    ct_sem_t sem;
    ct_sem_init(&sem, 1);
    assert_int_equal(0, ct_sem_wait(&sem, NULL, INT64_MAX));
    ct_source_t *s = new_source();
    ct_source_cancel(s, CT_CANCELED, NULL);
    assert_int_equal(-ECANCELED, ct_sem_wait(&sem, ct_source_token(s), INT64_MAX));
    ct_source_free(s);
    ct_sem_destroy(&sem);
    close(p[0]);
    close(p[1]);
}

/* ---- semaphore ----------------------------------------------------------------------------- */

static void test_sem_counts_permits(void **state)
{
    ct_sem_t sem;
    assert_int_equal(0, ct_sem_init(&sem, 2));
    assert_int_equal(0, ct_sem_wait(&sem, NULL, -1));
    assert_int_equal(0, ct_sem_trywait(&sem));
    assert_int_equal(-EAGAIN, ct_sem_trywait(&sem));
    assert_int_equal(0, ct_sem_post(&sem));
    assert_int_equal(0, ct_sem_wait(&sem, NULL, 0));
    assert_int_equal(-ETIMEDOUT, ct_sem_wait(&sem, NULL, 0));
    ct_sem_destroy(&sem);
    assert_int_equal(-EINVAL, ct_sem_init(&sem, -1));
    assert_int_equal(-EINVAL, ct_sem_init(&sem, (int64_t) INT32_MAX + 1));
}

static void test_sem_post_reports_overflow(void **state)
{
    ct_sem_t sem;
    ct_sem_init(&sem, INT32_MAX);
    assert_int_equal(-EOVERFLOW, ct_sem_post(&sem));
    ct_sem_destroy(&sem);
}

static void *sem_wait_thread(void *arg)
{
    struct waiter *w = arg;
    ct_sem_post(&w->started);
    w->rc = ct_sem_wait(w->sem, w->tok, w->deadline);
    return NULL;
}

static void test_sem_wait_returns_ecanceled_and_takes_no_permit(void **state)
{
    ct_sem_t sem;
    ct_sem_init(&sem, 0);
    ct_source_t *s = new_source();
    struct waiter w;
    waiter_init(&w, ct_source_token(s));
    w.sem = &sem;
    assert_int_equal(-ECANCELED, cancel_and_join(&w, sem_wait_thread, s));
    ct_sem_post(&sem);
    assert_int_equal(0, ct_sem_trywait(&sem)); /* the canceled waiter left the queue */
    ct_sem_destroy(&sem);
    ct_source_free(s);
}

static void test_sem_wait_times_out(void **state)
{
    ct_sem_t sem;
    ct_sem_init(&sem, 0);
    int64_t start = ct_now_ms();
    assert_int_equal(-ETIMEDOUT, ct_sem_wait(&sem, NULL, start + 20));
    assert_true(ct_now_ms() >= start + 20);
    ct_sem_destroy(&sem);
}

static void test_sem_post_wakes_a_blocked_waiter(void **state)
{
    ct_sem_t sem;
    ct_sem_init(&sem, 0);
    struct waiter w;
    waiter_init(&w, NULL);
    w.sem = &sem;
    ct_test_thread_t *th = ct_test_thread_start(sem_wait_thread, &w);
    ct_sem_wait(&w.started, NULL, -1);
    ct_sem_post(&sem);
    ct_test_thread_join(th);
    assert_int_equal(0, w.rc);
    assert_int_equal(-EAGAIN, ct_sem_trywait(&sem));
    ct_sem_destroy(&w.started);
    ct_sem_destroy(&sem);
}

/* Posts racing cancellations: every permit ends up either taken by a waiter or still counted. */
struct permit_race {
    ct_sem_t sem;
    ct_source_t *src;
    int taken; /* atomic */
};

static void *permit_taker(void *arg)
{
    struct permit_race *pr = arg;
    for (;;) {
        int rc = ct_sem_wait(&pr->sem, ct_source_token(pr->src), -1);
        if (rc == 0)
            __atomic_add_fetch(&pr->taken, 1, __ATOMIC_RELAXED);
        else
            return NULL;
    }
}

static void test_sem_permit_is_never_lost_when_cancel_races_post(void **state)
{
    for (int round = 0; round < 200; round++) {
        struct permit_race pr = {0};
        ct_sem_init(&pr.sem, 0);
        pr.src = new_source();
        ct_test_thread_t *a = ct_test_thread_start(permit_taker, &pr);
        ct_test_thread_t *b = ct_test_thread_start(permit_taker, &pr);
        int posts = 0;
        for (int i = 0; i < 50; i++, posts++)
            ct_sem_post(&pr.sem);
        ct_source_cancel(pr.src, CT_CANCELED, NULL);
        for (int i = 0; i < 50; i++, posts++)
            ct_sem_post(&pr.sem);
        ct_test_thread_join(a);
        ct_test_thread_join(b);
        int left = 0;
        while (ct_sem_trywait(&pr.sem) == 0)
            left++;
        assert_int_equal(posts, pr.taken + left);
        ct_source_free(pr.src);
        ct_sem_destroy(&pr.sem);
    }
}

/* ---- condition variable -------------------------------------------------------------------- */

static void *cond_wait_thread(void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(w->mu);
    ct_sem_post(&w->started);
    w->rc = 0;
    while (!*w->pred && w->rc == 0)
        w->rc = ct_cond_wait(w->cond, w->mu, w->tok, w->deadline);
    w->held_after = pthread_mutex_trylock(w->mu) != 0; /* EBUSY/EDEADLK: we hold it */
    pthread_mutex_unlock(w->mu);
    return NULL;
}

static void test_cond_signal_wakes_a_waiter(void **state)
{
    ct_cond_t cond;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int pred = 0;
    ct_cond_init(&cond);
    struct waiter w;
    waiter_init(&w, NULL);
    w.cond = &cond;
    w.mu = &mu;
    w.pred = &pred;
    ct_test_thread_t *th = ct_test_thread_start(cond_wait_thread, &w);
    ct_sem_wait(&w.started, NULL, -1);
    pthread_mutex_lock(&mu);
    pred = 1;
    ct_cond_signal(&cond);
    pthread_mutex_unlock(&mu);
    ct_test_thread_join(th);
    assert_int_equal(0, w.rc);
    assert_true(w.held_after);
    ct_cond_destroy(&cond);
    ct_sem_destroy(&w.started);
}

static void test_cond_wait_returns_ecanceled_with_the_mutex_held(void **state)
{
    ct_cond_t cond;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int pred = 0;
    ct_cond_init(&cond);
    ct_source_t *s = new_source();
    struct waiter w;
    waiter_init(&w, ct_source_token(s));
    w.cond = &cond;
    w.mu = &mu;
    w.pred = &pred;
    assert_int_equal(-ECANCELED, cancel_and_join(&w, cond_wait_thread, s));
    assert_true(w.held_after);
    ct_cond_destroy(&cond);
    ct_source_free(s);
}

static void test_cond_wait_times_out(void **state)
{
    ct_cond_t cond;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    ct_cond_init(&cond);
    pthread_mutex_lock(&mu);
    int64_t start = ct_now_ms();
    int rc;
    while ((rc = ct_cond_wait(&cond, &mu, NULL, start + 20)) == 0)
        ;
    assert_int_equal(-ETIMEDOUT, rc);
    assert_true(ct_now_ms() >= start + 20);
    pthread_mutex_unlock(&mu);
    ct_cond_destroy(&cond);
}

static void test_cond_broadcast_wakes_every_waiter(void **state)
{
    enum { N = 4 };
    ct_cond_t cond;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int pred = 0;
    ct_cond_init(&cond);
    struct waiter w[N];
    ct_test_thread_t *th[N];
    for (int i = 0; i < N; i++) {
        waiter_init(&w[i], NULL);
        w[i].cond = &cond;
        w[i].mu = &mu;
        w[i].pred = &pred;
        th[i] = ct_test_thread_start(cond_wait_thread, &w[i]);
        ct_sem_wait(&w[i].started, NULL, -1);
    }
    pthread_mutex_lock(&mu);
    pred = 1;
    ct_cond_broadcast(&cond);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < N; i++) {
        ct_test_thread_join(th[i]);
        assert_int_equal(0, w[i].rc);
        ct_sem_destroy(&w[i].started);
    }
    ct_cond_destroy(&cond);
}

CT_TEST_MAIN(cmocka_unit_test(test_sleep_returns_ecanceled_when_the_token_fires),
             cmocka_unit_test(test_sleep_with_a_canceled_token_returns_at_once),
             cmocka_unit_test(test_sleep_waits_the_full_time),
             cmocka_unit_test(test_fd_wait_reports_readiness),
             cmocka_unit_test(test_fd_wait_reports_hangup),
             cmocka_unit_test(test_fd_wait_returns_ecanceled_when_the_token_fires),
             cmocka_unit_test(test_fd_wait_times_out_at_the_deadline),
             cmocka_unit_test(test_fd_wait_with_a_past_deadline_polls_once),
             cmocka_unit_test(test_fd_wait_rejects_bad_fds),
             cmocka_unit_test(test_fd_wait_deadline_follows_the_fake_clock),
             cmocka_unit_test(test_far_future_deadlines_mean_no_deadline),
             cmocka_unit_test(test_deadlines_below_minus_one_are_rejected),
             cmocka_unit_test(test_sem_counts_permits),
             cmocka_unit_test(test_sem_post_reports_overflow),
             cmocka_unit_test(test_sem_wait_returns_ecanceled_and_takes_no_permit),
             cmocka_unit_test(test_sem_wait_times_out),
             cmocka_unit_test(test_sem_post_wakes_a_blocked_waiter),
             cmocka_unit_test(test_sem_permit_is_never_lost_when_cancel_races_post),
             cmocka_unit_test(test_cond_signal_wakes_a_waiter),
             cmocka_unit_test(test_cond_wait_returns_ecanceled_with_the_mutex_held),
             cmocka_unit_test(test_cond_wait_times_out),
             cmocka_unit_test(test_cond_broadcast_wakes_every_waiter))
