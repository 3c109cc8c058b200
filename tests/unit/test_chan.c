/* Channels: arguments, order, try_ calls, growth, close and drain, the iteration idiom,
 * cancellation and deadlines of blocked senders and receivers, allocation failure. Races and
 * many-thread stress are in test_chan_race.c.
 *
 * A thread that must be blocked before the test acts posts a semaphore just before its call; the
 * test then waits until the kernel reports the thread asleep (it parks on a futex), so that the
 * blocked path is the one exercised. If it were not asleep yet, the call must still behave the
 * same, so that wait is a way to cover the right path, never a condition for passing. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chan_util.h"
#include "ct/chan.h"
#include "ct/time.h"
#include "ct/token.h"
#include "ct/wait.h"
#include "testutil.h"

#define PENDING 1 /* an actor's rc before its call returned */

/* ---- one blocking call on another thread --------------------------------------------------- */

struct actor {
    ct_chan_t *ch;
    const ct_token_t *tok;
    int64_t deadline;
    int64_t value; /* to send, or received */
    int rc;        /* atomic: PENDING until the call returned */
    pid_t tid;     /* atomic */
    ct_sem_t started;
    ct_test_thread_t *th;
};

static void *send_actor(void *arg)
{
    struct actor *a = arg;
    __atomic_store_n(&a->tid, gettid(), __ATOMIC_RELEASE);
    ct_sem_post(&a->started);
    __atomic_store_n(&a->rc, ct_chan_send(a->ch, &a->value, a->tok, a->deadline), __ATOMIC_RELEASE);
    return NULL;
}

static void *recv_actor(void *arg)
{
    struct actor *a = arg;
    __atomic_store_n(&a->tid, gettid(), __ATOMIC_RELEASE);
    ct_sem_post(&a->started);
    __atomic_store_n(&a->rc, ct_chan_recv(a->ch, &a->value, a->tok, a->deadline), __ATOMIC_RELEASE);
    return NULL;
}

static int actor_rc(struct actor *a)
{
    return __atomic_load_n(&a->rc, __ATOMIC_ACQUIRE);
}

/* Start `fn` and return once it is blocked in its call. */
static void actor_start(struct actor *a, void *(*fn)(void *), ct_chan_t *ch, const ct_token_t *tok,
                        int64_t deadline, int64_t value)
{
    *a = (struct actor){.ch = ch, .tok = tok, .deadline = deadline, .value = value, .rc = PENDING};
    assert_int_equal(0, ct_sem_init(&a->started, 0));
    a->th = ct_test_thread_start(fn, a);
    assert_int_equal(0, ct_sem_wait(&a->started, NULL, -1));
    assert_true(CT_WAIT_FOR(asleep(__atomic_load_n(&a->tid, __ATOMIC_ACQUIRE)), 10000));
    assert_int_equal(PENDING, actor_rc(a)); /* it waits */
}

static int actor_join(struct actor *a)
{
    ct_test_thread_join(a->th);
    ct_sem_destroy(&a->started);
    return a->rc;
}

/* ---- arguments ------------------------------------------------------------------------------- */

static void test_new_rejects_bad_arguments(void **state)
{
    ct_chan_t *ch = NULL;
    assert_int_equal(-EINVAL, ct_chan_new(NULL, 8, 4));
    assert_int_equal(-EINVAL, ct_chan_new(&ch, 0, 4));
    assert_int_equal(-EINVAL, ct_chan_new(&ch, 0, CT_CHAN_UNBOUNDED));
    assert_int_equal(-EINVAL, ct_chan_new(&ch, 8, 0));
    assert_int_equal(-EINVAL, ct_chan_new(&ch, 8, CT_CHAN_CAPACITY_MAX + 1));
    assert_null(ch);
    /* Sizes that cannot be allocated are out of memory, not a crash. */
    assert_int_equal(-ENOMEM, ct_chan_new(&ch, SIZE_MAX / 2, CT_CHAN_CAPACITY_MAX));
    assert_int_equal(-ENOMEM, ct_chan_new(&ch, SIZE_MAX, 1));
    assert_null(ch);
}

static void test_calls_reject_bad_arguments(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 2);
    int64_t v = 7;
    assert_int_equal(-EINVAL, ct_chan_send(NULL, &v, NULL, -1));
    assert_int_equal(-EINVAL, ct_chan_send(ch, NULL, NULL, -1));
    assert_int_equal(-EINVAL, ct_chan_send(ch, &v, NULL, -2));
    assert_int_equal(-EINVAL, ct_chan_recv(NULL, &v, NULL, -1));
    assert_int_equal(-EINVAL, ct_chan_recv(ch, NULL, NULL, -1));
    assert_int_equal(-EINVAL, ct_chan_recv(ch, &v, NULL, INT64_MIN));
    assert_int_equal(-EINVAL, ct_chan_try_send(NULL, &v));
    assert_int_equal(-EINVAL, ct_chan_try_send(ch, NULL));
    assert_int_equal(-EINVAL, ct_chan_try_recv(NULL, &v));
    assert_int_equal(-EINVAL, ct_chan_try_recv(ch, NULL));
    assert_int_equal(-EINVAL, ct_chan_close(NULL));
    assert_int_equal(0, ct_chan_len(ch)); /* nothing was sent */
    assert_int_equal(0, ct_chan_len(NULL));
    assert_int_equal(0, ct_chan_capacity(NULL));
    assert_false(ct_chan_closed(NULL));
    ct_chan_free(NULL);
    ct_chan_free(ch);
}

/* ---- order, try_, queries ------------------------------------------------------------------- */

static void test_try_calls_return_eagain_instead_of_waiting(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 2);
    int64_t v = 1;
    assert_int_equal(-EAGAIN, ct_chan_try_recv(ch, &v));
    assert_int_equal(1, v); /* untouched */
    v = 10;
    assert_int_equal(0, ct_chan_try_send(ch, &v));
    v = 11;
    assert_int_equal(0, ct_chan_try_send(ch, &v));
    v = 12;
    assert_int_equal(-EAGAIN, ct_chan_try_send(ch, &v));
    assert_int_equal(2, ct_chan_len(ch));
    assert_int_equal(0, ct_chan_try_recv(ch, &v));
    assert_int_equal(10, v);
    assert_int_equal(0, ct_chan_try_recv(ch, &v));
    assert_int_equal(11, v);
    assert_int_equal(-EAGAIN, ct_chan_try_recv(ch, &v));
    assert_int_equal(0, ct_chan_len(ch));
    ct_chan_free(ch);
}

static void test_len_and_capacity_report_the_channel(void **state)
{
    ct_chan_t *b = new_chan(sizeof(int64_t), 3);
    ct_chan_t *u = new_chan(sizeof(int64_t), CT_CHAN_UNBOUNDED);
    assert_int_equal(3, ct_chan_capacity(b));
    assert_true(ct_chan_capacity(u) == CT_CHAN_UNBOUNDED);
    /* Walk the ring around several laps at every fill level. */
    for (int lap = 0; lap < 10; lap++) {
        for (int64_t i = 0; i < 3; i++) {
            send_value(b, i);
            send_value(u, i);
            assert_int_equal(i + 1, ct_chan_len(b));
            assert_int_equal(i + 1, ct_chan_len(u));
        }
        for (int64_t i = 0; i < 3; i++) {
            assert_int_equal(i, recv_value(b));
            assert_int_equal(i, recv_value(u));
            assert_int_equal(2 - i, ct_chan_len(b));
        }
        send_value(b, 100 + lap); /* shift the ring's start by one */
        assert_int_equal(100 + lap, recv_value(b));
    }
    ct_chan_free(b);
    ct_chan_free(u);
}

static void test_elements_are_copied_by_value_whatever_their_size(void **state)
{
    const size_t sizes[] = {1, 3, 8, 13, 64, 1000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        ct_chan_t *b = new_chan(n, 3), *u = new_chan(n, CT_CHAN_UNBOUNDED);
        unsigned char in[1000], out[1001];
        for (int round = 0; round < 5; round++) {
            for (size_t i = 0; i < n; i++)
                in[i] = (unsigned char) (i * 7 + round + 1);
            assert_int_equal(0, ct_chan_send(b, in, NULL, -1));
            assert_int_equal(0, ct_chan_send(u, in, NULL, -1));
            memset(in, 0, n); /* the channel holds its own copy */
            memset(out, 0xAA, sizeof(out));
            assert_int_equal(0, ct_chan_recv(b, out, NULL, -1));
            for (size_t i = 0; i < n; i++)
                assert_int_equal((unsigned char) (i * 7 + round + 1), out[i]);
            assert_int_equal(0xAA, out[n]); /* nothing written past the element */
            assert_int_equal(0, ct_chan_recv(u, out, NULL, -1));
            for (size_t i = 0; i < n; i++)
                assert_int_equal((unsigned char) (i * 7 + round + 1), out[i]);
        }
        ct_chan_free(b);
        ct_chan_free(u);
    }
}

/* One producer, one consumer, a small ring: the consumer sees the producer's order. */
struct fifo {
    ct_chan_t *ch;
    int64_t n;
    int64_t bad; /* first out-of-order index, or -1 */
};

static void *fifo_consumer(void *arg)
{
    struct fifo *f = arg;
    for (int64_t i = 0; i < f->n; i++) {
        int64_t v;
        if (ct_chan_recv(f->ch, &v, NULL, -1) != 0 || v != i) {
            f->bad = i;
            return NULL;
        }
    }
    return NULL;
}

static void fifo_check(size_t capacity)
{
    struct fifo f = {.ch = new_chan(sizeof(int64_t), capacity), .n = 100000, .bad = -1};
    ct_test_thread_t *th = ct_test_thread_start(fifo_consumer, &f);
    for (int64_t i = 0; i < f.n; i++)
        send_value(f.ch, i);
    ct_test_thread_join(th);
    assert_int_equal(-1, f.bad);
    assert_int_equal(0, ct_chan_len(f.ch));
    ct_chan_free(f.ch);
}

static void test_one_producer_is_received_in_order(void **state)
{
    fifo_check(1);
    fifo_check(3);
    fifo_check(64);
    fifo_check(CT_CHAN_UNBOUNDED);
}

static void test_unbounded_channel_grows_without_blocking(void **state)
{
    enum { N = 100000 };
    ct_chan_t *ch = new_chan(sizeof(int64_t), CT_CHAN_UNBOUNDED);
    for (int64_t i = 0; i < N / 2; i++)
        assert_int_equal(0, ct_chan_send(ch, &i, NULL, 0)); /* deadline 0: must not wait */
    for (int64_t i = 0; i < N / 4; i++) /* let the ring wrap before it grows again */
        assert_int_equal(i, recv_value(ch));
    for (int64_t i = N / 2; i < N; i++)
        assert_int_equal(0, ct_chan_try_send(ch, &i));
    assert_int_equal(N - N / 4, ct_chan_len(ch));
    for (int64_t i = N / 4; i < N; i++)
        assert_int_equal(i, recv_value(ch));
    assert_int_equal(0, ct_chan_len(ch));
    ct_chan_free(ch);
}

/* ---- close and drain ------------------------------------------------------------------------ */

static void close_and_drain(ct_chan_t *ch)
{
    for (int64_t i = 0; i < 3; i++)
        send_value(ch, i);
    assert_false(ct_chan_closed(ch));
    assert_int_equal(1, ct_chan_close(ch));
    assert_int_equal(0, ct_chan_close(ch));
    assert_true(ct_chan_closed(ch));
    int64_t v = 99;
    assert_int_equal(-EPIPE, ct_chan_send(ch, &v, NULL, -1));
    assert_int_equal(-EPIPE, ct_chan_try_send(ch, &v));
    assert_int_equal(3, ct_chan_len(ch));
    assert_int_equal(0, recv_value(ch));
    assert_int_equal(0, ct_chan_try_recv(ch, &v));
    assert_int_equal(1, v);
    assert_int_equal(2, recv_value(ch));
    v = 99;
    assert_int_equal(-EPIPE, ct_chan_recv(ch, &v, NULL, -1));
    assert_int_equal(-EPIPE, ct_chan_recv(ch, &v, NULL, 0));
    assert_int_equal(-EPIPE, ct_chan_try_recv(ch, &v));
    assert_int_equal(99, v);
    ct_chan_free(ch);
}

static void test_close_lets_receivers_drain_then_returns_epipe(void **state)
{
    close_and_drain(new_chan(sizeof(int64_t), 3)); /* full when closed */
    close_and_drain(new_chan(sizeof(int64_t), 8));
    close_and_drain(new_chan(sizeof(int64_t), CT_CHAN_UNBOUNDED));
}

static void test_close_wakes_blocked_receivers_with_epipe(void **state)
{
    enum { N = 3 };
    ct_chan_t *ch = new_chan(sizeof(int64_t), 4);
    struct actor a[N];
    for (int i = 0; i < N; i++)
        actor_start(&a[i], recv_actor, ch, NULL, -1, -1);
    assert_int_equal(1, ct_chan_close(ch));
    for (int i = 0; i < N; i++) {
        assert_int_equal(-EPIPE, actor_join(&a[i]));
        assert_int_equal(-1, a[i].value);
    }
    ct_chan_free(ch);
}

static void test_close_wakes_a_blocked_sender_and_keeps_what_was_sent(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 2);
    send_value(ch, 1);
    send_value(ch, 2);
    struct actor a;
    actor_start(&a, send_actor, ch, NULL, -1, 3);
    assert_int_equal(1, ct_chan_close(ch));
    assert_int_equal(-EPIPE, actor_join(&a));
    assert_int_equal(1, recv_value(ch));
    assert_int_equal(2, recv_value(ch));
    int64_t v;
    assert_int_equal(-EPIPE, ct_chan_recv(ch, &v, NULL, -1));
    ct_chan_free(ch);
}

/* ---- the iteration idiom -------------------------------------------------------------------- */

static void test_foreach_receives_everything_then_ends_with_epipe(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), CT_CHAN_UNBOUNDED);
    for (int64_t i = 0; i < 10; i++)
        send_value(ch, i);
    ct_chan_close(ch);
    ct_source_t *s = new_source();
    int64_t v, expect = 0;
    int rc;
    CT_CHAN_FOREACH(ch, &v, ct_source_token(s), rc)
    {
        assert_int_equal(expect, v);
        expect++;
    }
    assert_int_equal(-EPIPE, rc);
    assert_int_equal(10, expect);
    ct_source_free(s);
    ct_chan_free(ch);
}

struct foreach_worker {
    ct_chan_t *ch;
    const ct_token_t *tok;
    int64_t count;
    int rc;
    ct_sem_t got; /* posted for every element */
};

static void *foreach_thread(void *arg)
{
    struct foreach_worker *w = arg;
    int64_t v;
    CT_CHAN_FOREACH(w->ch, &v, w->tok, w->rc)
    {
        w->count++;
        ct_sem_post(&w->got);
    }
    return NULL;
}

static void test_foreach_ends_with_ecanceled_when_the_token_fires(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 4);
    ct_source_t *s = new_source();
    struct foreach_worker w = {.ch = ch, .tok = ct_source_token(s), .rc = PENDING};
    ct_sem_init(&w.got, 0);
    ct_test_thread_t *th = ct_test_thread_start(foreach_thread, &w);
    for (int64_t i = 0; i < 5; i++) {
        send_value(ch, i);
        assert_int_equal(0, ct_sem_wait(&w.got, NULL, ct_deadline_after(10000 * ct_test_scale())));
    }
    ct_source_cancel(s, CT_SHUTDOWN, "stopping");
    ct_test_thread_join(th);
    assert_int_equal(-ECANCELED, w.rc);
    assert_int_equal(5, w.count);
    assert_false(ct_chan_closed(ch));
    ct_sem_destroy(&w.got);
    ct_source_free(s);
    ct_chan_free(ch);
}

/* ---- cancellation and deadlines -------------------------------------------------------------- */

static void test_canceled_token_returns_ecanceled_without_doing_anything(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 4);
    ct_source_t *s = new_source();
    ct_source_cancel(s, CT_CANCELED, NULL);
    const ct_token_t *tok = ct_source_token(s);
    int64_t v = 5;
    assert_int_equal(-ECANCELED, ct_chan_send(ch, &v, tok, -1));
    assert_int_equal(-ECANCELED, ct_chan_send(ch, &v, tok, 0));
    assert_int_equal(0, ct_chan_len(ch)); /* room, but nothing was sent */
    send_value(ch, 6);
    v = 0;
    assert_int_equal(-ECANCELED, ct_chan_recv(ch, &v, tok, -1));
    assert_int_equal(0, v);
    assert_int_equal(1, ct_chan_len(ch)); /* an element, but nothing was received */
    ct_chan_close(ch);
    assert_int_equal(-ECANCELED, ct_chan_send(ch, &v, tok, -1)); /* the token is looked at first */
    ct_source_free(s);
    ct_chan_free(ch);
}

static void test_blocked_receiver_returns_ecanceled_when_the_token_fires(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 4);
    ct_source_t *s = new_source();
    struct actor a;
    actor_start(&a, recv_actor, ch, ct_source_token(s), -1, -1);
    ct_source_cancel(s, CT_CLIENT_ABORTED, NULL);
    assert_int_equal(-ECANCELED, actor_join(&a));
    assert_int_equal(-1, a.value);
    /* It left the queue and took nothing: the next element stays for the next receiver. */
    send_value(ch, 42);
    assert_int_equal(1, ct_chan_len(ch));
    assert_int_equal(42, recv_value(ch));
    ct_source_free(s);
    ct_chan_free(ch);
}

static void test_blocked_sender_returns_ecanceled_when_the_token_fires(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 2);
    send_value(ch, 1);
    send_value(ch, 2);
    ct_source_t *s = new_source();
    struct actor a;
    actor_start(&a, send_actor, ch, ct_source_token(s), -1, 3);
    ct_source_cancel(s, CT_TIMEOUT, NULL);
    assert_int_equal(-ECANCELED, actor_join(&a));
    assert_int_equal(2, ct_chan_len(ch));
    assert_int_equal(1, recv_value(ch));
    assert_int_equal(2, recv_value(ch));
    int64_t v;
    assert_int_equal(-EAGAIN, ct_chan_try_recv(ch, &v)); /* 3 was never sent */
    ct_source_free(s);
    ct_chan_free(ch);
}

static void test_blocked_receiver_is_woken_by_a_send(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 1);
    struct actor a;
    actor_start(&a, recv_actor, ch, NULL, -1, -1);
    send_value(ch, 77);
    assert_int_equal(0, actor_join(&a));
    assert_int_equal(77, a.value);
    assert_int_equal(0, ct_chan_len(ch));
    ct_chan_free(ch);
}

static void test_blocked_sender_is_woken_by_a_receive(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 1);
    send_value(ch, 1);
    struct actor a;
    actor_start(&a, send_actor, ch, NULL, -1, 2);
    assert_int_equal(1, recv_value(ch));
    assert_int_equal(0, actor_join(&a));
    assert_int_equal(2, recv_value(ch));
    ct_chan_free(ch);
}

static void test_past_deadline_tries_once_and_does_not_wait(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 1);
    int64_t v = 1;
    assert_int_equal(-ETIMEDOUT, ct_chan_recv(ch, &v, NULL, 0));
    assert_int_equal(0, ct_chan_send(ch, &v, NULL, 0));
    assert_int_equal(-ETIMEDOUT, ct_chan_send(ch, &v, NULL, ct_now_ms() - 1));
    assert_int_equal(0, ct_chan_recv(ch, &v, NULL, ct_now_ms()));
    assert_int_equal(1, v);
    ct_chan_free(ch);
}

static void test_receive_times_out_at_its_deadline(void **state)
{
    ct_chan_t *ch = new_chan(sizeof(int64_t), 1);
    int64_t v, start = ct_now_ms();
    assert_int_equal(-ETIMEDOUT, ct_chan_recv(ch, &v, NULL, start + 20));
    assert_true(ct_now_ms() >= start + 20);
    ct_chan_free(ch);
}

static void test_deadlines_follow_the_fake_clock(void **state)
{
    ct_clock_fake_start();
    ct_chan_t *ch = new_chan(sizeof(int64_t), 1);
    ct_source_t *s = new_source(); /* a token as well: the deadline, not the token, ends it */
    int64_t deadline = ct_now_ms() + 1000;
    struct actor r;
    actor_start(&r, recv_actor, ch, ct_source_token(s), deadline, -1);
    assert_int_equal(0, ct_clock_fake_advance(999));
    assert_true(CT_WAIT_FOR(asleep(r.tid), 10000)); /* woken by the advance, parked again */
    assert_int_equal(PENDING, actor_rc(&r));
    assert_int_equal(0, ct_clock_fake_advance(1));
    assert_int_equal(-ETIMEDOUT, actor_join(&r));

    send_value(ch, 1); /* full: now the sender waits */
    struct actor w;
    actor_start(&w, send_actor, ch, ct_source_token(s), ct_now_ms() + 500, 2);
    assert_int_equal(0, ct_clock_fake_advance(500));
    assert_int_equal(-ETIMEDOUT, actor_join(&w));
    assert_int_equal(1, ct_chan_len(ch));
    assert_false(ct_token_canceled(ct_source_token(s)));
    ct_clock_fake_stop();
    ct_source_free(s);
    ct_chan_free(ch);
}

/* ---- allocation failure --------------------------------------------------------------------- */

/* Everything a channel allocates for: a bounded channel (one block), an unbounded one (the
 * channel, then its buffer at the first send and at each doubling: 16, 32, 64, 128 elements).
 * Returns 0 or the first error. */
static int alloc_scenario(void)
{
    ct_chan_t *b = NULL, *u = NULL;
    int rc;
    if ((rc = ct_chan_new(&b, 24, 100)) < 0)
        goto out;
    if ((rc = ct_chan_new(&u, 24, CT_CHAN_UNBOUNDED)) < 0)
        goto out;
    char elem[24] = {0};
    for (int i = 0; i < 100; i++) {
        elem[0] = (char) i;
        if ((rc = ct_chan_send(u, elem, NULL, -1)) < 0)
            goto out;
    }
    rc = 0;
out:
    ct_chan_free(u);
    ct_chan_free(b);
    return rc;
}

static int alloc_scenario_arg(void *unused)
{
    (void) unused;
    return alloc_scenario();
}

static void test_every_allocation_failure_returns_enomem_and_leaks_nothing(void **state)
{
    /* two channels, four buffer sizes */
    assert_int_equal(6, ct_test_alloc_torture(alloc_scenario_arg, NULL, NULL));
}

static void test_failed_growth_leaves_the_channel_as_it_was(void **state)
{
    ct_test_alloc_install();
    long baseline = ct_test_alloc_stats().live;
    ct_chan_t *ch = new_chan(sizeof(int64_t), CT_CHAN_UNBOUNDED);
    for (int64_t i = 0; i < 16; i++) /* the first buffer, full */
        send_value(ch, i);
    assert_int_equal(0, recv_value(ch)); /* wrap the ring: growth must unwrap it */
    send_value(ch, 16);
    ct_test_alloc_fail_at(1);
    int64_t v = 17;
    assert_int_equal(-ENOMEM, ct_chan_send(ch, &v, NULL, -1));
    ct_test_alloc_fail_at(1);
    assert_int_equal(-ENOMEM, ct_chan_try_send(ch, &v));
    ct_test_alloc_fail_at(0);
    assert_int_equal(16, ct_chan_len(ch));
    send_value(ch, 17); /* grows now */
    for (int64_t i = 1; i <= 17; i++)
        assert_int_equal(i, recv_value(ch));
    assert_int_equal(0, ct_chan_len(ch));
    ct_chan_free(ch);
    assert_int_equal(baseline, ct_test_alloc_stats().live);
    ct_test_alloc_uninstall();
}

CT_TEST_MAIN(cmocka_unit_test(test_new_rejects_bad_arguments),
             cmocka_unit_test(test_calls_reject_bad_arguments),
             cmocka_unit_test(test_try_calls_return_eagain_instead_of_waiting),
             cmocka_unit_test(test_len_and_capacity_report_the_channel),
             cmocka_unit_test(test_elements_are_copied_by_value_whatever_their_size),
             cmocka_unit_test(test_one_producer_is_received_in_order),
             cmocka_unit_test(test_unbounded_channel_grows_without_blocking),
             cmocka_unit_test(test_close_lets_receivers_drain_then_returns_epipe),
             cmocka_unit_test(test_close_wakes_blocked_receivers_with_epipe),
             cmocka_unit_test(test_close_wakes_a_blocked_sender_and_keeps_what_was_sent),
             cmocka_unit_test(test_foreach_receives_everything_then_ends_with_epipe),
             cmocka_unit_test(test_foreach_ends_with_ecanceled_when_the_token_fires),
             cmocka_unit_test(test_canceled_token_returns_ecanceled_without_doing_anything),
             cmocka_unit_test(test_blocked_receiver_returns_ecanceled_when_the_token_fires),
             cmocka_unit_test(test_blocked_sender_returns_ecanceled_when_the_token_fires),
             cmocka_unit_test(test_blocked_receiver_is_woken_by_a_send),
             cmocka_unit_test(test_blocked_sender_is_woken_by_a_receive),
             cmocka_unit_test(test_past_deadline_tries_once_and_does_not_wait),
             cmocka_unit_test(test_receive_times_out_at_its_deadline),
             cmocka_unit_test(test_deadlines_follow_the_fake_clock),
             cmocka_unit_test(test_every_allocation_failure_returns_enomem_and_leaks_nothing),
             cmocka_unit_test(test_failed_growth_leaves_the_channel_as_it_was))
