/* Races: cancel against register, unregister and free, from several threads, in long loops.
 * Each iteration lines the threads up on a spin barrier so that the operations really overlap;
 * the assertions are the exact counts the contract promises. Run under TSan and ASan as well. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ct/time.h"
#include "ct/token.h"
#include "testutil.h"

#define ITERATIONS 100000

/* A reusable barrier for a fixed number of threads; spinning keeps the threads' arrival tight. */
struct barrier {
    int count; /* atomic */
    int gen;   /* atomic */
    int n;
};

static void barrier_wait(struct barrier *b)
{
    int gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->gen, gen + 1, __ATOMIC_RELEASE);
        return;
    }
    unsigned spins = 0;
    while (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen)
        if (++spins % 64 == 0)
            sched_yield();
}

static int iterations(void)
{
    return ITERATIONS;
}

static void count_cb(void *arg, const ct_token_t *tok)
{
    (void) tok;
    __atomic_add_fetch((int *) arg, 1, __ATOMIC_RELAXED);
}

/* ---- cancel against register --------------------------------------------------------------- */

struct shared {
    struct barrier bar;
    ct_source_t *src; /* written by main between iterations, behind the barrier */
    int count;        /* atomic */
    int in_cb;        /* atomic */
    int failures;     /* atomic */
    int done;         /* atomic */
};

static void *register_side(void *arg)
{
    struct shared *sh = arg;
    for (int i = 0; i < iterations(); i++) {
        ct_reg_t reg;
        barrier_wait(&sh->bar);
        ct_token_register(ct_source_token(sh->src), &reg, count_cb, &sh->count);
        barrier_wait(&sh->bar); /* main has canceled */
        if (!ct_token_unregister(&reg))
            __atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED);
        barrier_wait(&sh->bar);
    }
    return NULL;
}

static void test_race_cancel_against_register_runs_callback_exactly_once(void **state)
{
    struct shared sh = {.bar = {.n = 2}};
    ct_test_thread_t *th = ct_test_thread_start(register_side, &sh);
    for (int i = 0; i < iterations(); i++) {
        assert_int_equal(0, ct_source_new(&sh.src));
        __atomic_store_n(&sh.count, 0, __ATOMIC_RELAXED);
        barrier_wait(&sh.bar);
        ct_source_cancel(sh.src, CT_CANCELED, NULL);
        barrier_wait(&sh.bar);
        barrier_wait(&sh.bar); /* the other side has unregistered */
        int count = __atomic_load_n(&sh.count, __ATOMIC_RELAXED);
        if (count != 1)
            fail_msg("iteration %d: callback ran %d times", i, count);
        ct_source_free(sh.src);
    }
    ct_test_thread_join(th);
    assert_int_equal(0, sh.failures);
}

/* ---- cancel against unregister ------------------------------------------------------------- */

static void slow_cb(void *arg, const ct_token_t *tok)
{
    struct shared *sh = arg;
    (void) tok;
    __atomic_store_n(&sh->in_cb, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 50; i++)
        __asm__ __volatile__("" ::: "memory");
    __atomic_add_fetch(&sh->count, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&sh->in_cb, 0, __ATOMIC_SEQ_CST);
}

static void *unregister_side(void *arg)
{
    struct shared *sh = arg;
    for (int i = 0; i < iterations(); i++) {
        ct_reg_t reg;
        barrier_wait(&sh->bar); /* main has made a source */
        ct_token_register(ct_source_token(sh->src), &reg, slow_cb, sh);
        barrier_wait(&sh->bar);
        bool ran = ct_token_unregister(&reg);
        /* Once unregister returns, the callback is not running and its count is final. */
        int in_cb = __atomic_load_n(&sh->in_cb, __ATOMIC_SEQ_CST);
        int count = __atomic_load_n(&sh->count, __ATOMIC_SEQ_CST);
        if (in_cb || count != (ran ? 1 : 0))
            __atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED);
        barrier_wait(&sh->bar);
    }
    return NULL;
}

static void test_race_cancel_against_unregister_never_runs_after_return(void **state)
{
    struct shared sh = {.bar = {.n = 2}};
    ct_test_thread_t *th = ct_test_thread_start(unregister_side, &sh);
    int ran = 0;
    for (int i = 0; i < iterations(); i++) {
        assert_int_equal(0, ct_source_new(&sh.src));
        __atomic_store_n(&sh.count, 0, __ATOMIC_SEQ_CST);
        barrier_wait(&sh.bar);
        barrier_wait(&sh.bar);
        ct_source_cancel(sh.src, CT_CANCELED, NULL);
        barrier_wait(&sh.bar);
        int count = __atomic_load_n(&sh.count, __ATOMIC_SEQ_CST);
        if (count > 1)
            fail_msg("iteration %d: callback ran %d times", i, count);
        ran += count;
        ct_source_free(sh.src);
    }
    ct_test_thread_join(th);
    assert_int_equal(0, sh.failures);
    /* Both outcomes must have happened, or the race was not exercised. */
    printf("callback ran in %d of %d iterations\n", ran, iterations());
    assert_true(ran > 0);
    assert_true(ran < iterations());
}

/* ---- cancel against free, with a third thread registering ---------------------------------- */

struct free_race {
    struct barrier bar;
    ct_source_t *parent, *child;
    const ct_token_t *child_tok; /* a reference held by the observer */
    int count;
};

static void *free_side(void *arg)
{
    struct free_race *fr = arg;
    for (int i = 0; i < iterations(); i++) {
        barrier_wait(&fr->bar);
        ct_source_free(fr->child);
        barrier_wait(&fr->bar);
    }
    return NULL;
}

static void *observer_side(void *arg)
{
    struct free_race *fr = arg;
    for (int i = 0; i < iterations(); i++) {
        ct_reg_t reg;
        barrier_wait(&fr->bar);
        ct_token_register(fr->child_tok, &reg, count_cb, &fr->count);
        ct_token_unregister(&reg);
        ct_token_unref(fr->child_tok);
        barrier_wait(&fr->bar);
    }
    return NULL;
}

static void test_race_cancel_against_free_and_register(void **state)
{
    struct free_race fr = {.bar = {.n = 3}};
    ct_test_thread_t *freer = ct_test_thread_start(free_side, &fr);
    ct_test_thread_t *observer = ct_test_thread_start(observer_side, &fr);
    for (int i = 0; i < iterations(); i++) {
        assert_int_equal(0, ct_source_new(&fr.parent));
        const ct_token_t *parents[] = {ct_source_token(fr.parent)};
        assert_int_equal(0, ct_source_new_linked(&fr.child, parents, 1));
        fr.child_tok = ct_token_ref(ct_source_token(fr.child));
        barrier_wait(&fr.bar);
        ct_source_cancel(fr.parent, CT_SHUTDOWN, NULL);
        barrier_wait(&fr.bar);
        ct_source_free(fr.parent);
    }
    ct_test_thread_join(freer);
    ct_test_thread_join(observer);
    printf("observer callback ran %d times in %d iterations\n", fr.count, iterations());
}

/* ---- many cancellers ----------------------------------------------------------------------- */

struct cancellers {
    struct barrier bar;
    ct_source_t *src;
    int wins[4]; /* per thread */
};

struct canceller_arg {
    struct cancellers *c;
    int id;
};

static void *canceller(void *arg)
{
    struct canceller_arg *a = arg;
    for (int i = 0; i < iterations() / 4; i++) {
        barrier_wait(&a->c->bar);
        if (ct_source_cancel(a->c->src, CT_REASON_USER + a->id, NULL) == 1) {
            a->c->wins[a->id]++;
            if (ct_token_reason(ct_source_token(a->c->src)) != CT_REASON_USER + a->id)
                a->c->wins[a->id] = -1000000;
        }
        barrier_wait(&a->c->bar);
    }
    return NULL;
}

static void test_race_concurrent_cancels_have_one_winner(void **state)
{
    struct cancellers c = {.bar = {.n = 5}};
    struct canceller_arg args[4];
    ct_test_thread_t *th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct canceller_arg){&c, i};
        th[i] = ct_test_thread_start(canceller, &args[i]);
    }
    for (int i = 0; i < iterations() / 4; i++) {
        assert_int_equal(0, ct_source_new(&c.src));
        barrier_wait(&c.bar);
        barrier_wait(&c.bar);
        ct_source_free(c.src);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        ct_test_thread_join(th[i]);
        assert_true(c.wins[i] >= 0);
        total += c.wins[i];
    }
    assert_int_equal(iterations() / 4, total);
}

/* ---- a cancel publishes what was written before it --------------------------------------- */

struct publish {
    ct_source_t *src;
    int payload; /* written before cancel, read after seeing the token canceled: no atomics */
};

static void *publisher(void *arg)
{
    struct publish *p = arg;
    p->payload = 42;
    ct_source_cancel(p->src, CT_SIBLING_FAILED, NULL);
    return NULL;
}

static void test_cancel_publishes_the_writes_made_before_it(void **state)
{
    /* The reader synchronises only through the token. TSan reports a race if the cancel's CAS
     * is not a release; on x86 the value check alone cannot fail. */
    for (int i = 0; i < 2000; i++) {
        struct publish p = {0};
        ct_source_new(&p.src);
        ct_test_thread_t *th = ct_test_thread_start(publisher, &p);
        unsigned spins = 0;
        while (!ct_token_canceled(ct_source_token(p.src)))
            if (++spins % 64 == 0)
                sched_yield();
        assert_int_equal(42, p.payload);
        ct_test_thread_join(th);
        ct_source_free(p.src);
    }
}

/* ---- a timeout never fires after free returns -------------------------------------------- */

struct fire_race {
    struct barrier bar;
    ct_source_t *src;
    const ct_token_t *tok;
    int canceled_at_free_return;
};

static void *advance_side(void *arg)
{
    struct fire_race *fr = arg;
    for (int i = 0; i < iterations() / 10; i++) {
        barrier_wait(&fr->bar);
        ct_clock_fake_advance(10);
        barrier_wait(&fr->bar);
    }
    return NULL;
}

static void test_race_timeout_never_fires_after_free_returns(void **state)
{
    struct fire_race fr = {.bar = {.n = 2}};
    ct_clock_fake_start();
    ct_test_thread_t *th = ct_test_thread_start(advance_side, &fr);
    int fired_before = 0;
    for (int i = 0; i < iterations() / 10; i++) {
        assert_int_equal(0, ct_source_new_timeout(&fr.src, 10));
        fr.tok = ct_token_ref(ct_source_token(fr.src));
        barrier_wait(&fr.bar);
        ct_source_free(fr.src); /* races the firing on the other thread */
        bool at_return = ct_token_canceled(fr.tok);
        barrier_wait(&fr.bar);
        if (at_return != ct_token_canceled(fr.tok))
            fail_msg("iteration %d: the timeout fired after free returned", i);
        fired_before += at_return;
        ct_token_unref(fr.tok);
    }
    ct_test_thread_join(th);
    ct_clock_fake_stop();
    printf("fired before free returned in %d of %d iterations\n", fired_before, iterations() / 10);
}

/* ---- long-lived parent, short-lived children ----------------------------------------------- */

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_million_linked_children_keep_memory_flat(void **state)
{
    ct_test_alloc_install();
    ct_source_t *parent, *other;
    assert_int_equal(0, ct_source_new(&parent));
    assert_int_equal(0, ct_source_new(&other));
    const ct_token_t *parents[] = {ct_source_token(parent), ct_source_token(other)};
    long live_before = ct_test_alloc_stats().live;
    long rss_before = 0;
    for (int i = 0; i < 1000000; i++) {
        ct_source_t *child;
        assert_int_equal(0, ct_source_new_linked(&child, parents, 2));
        ct_source_free(child);
        if (i == 10000)
            rss_before = rss_kb(); /* after the allocator's caches warmed up */
    }
    long rss_after = rss_kb();
    assert_int_equal(live_before, ct_test_alloc_stats().live);
    printf("rss %ld kB after 10k children, %ld kB after 1M\n", rss_before, rss_after);
    if (!CT_TEST_SANITIZED)
        assert_true(rss_after - rss_before < 1024);

    /* The parent holds no registration from its dead children: canceling it runs only ours. */
    int count = 0;
    ct_reg_t reg;
    ct_token_register(ct_source_token(parent), &reg, count_cb, &count);
    ct_source_cancel(parent, CT_SHUTDOWN, NULL);
    assert_int_equal(1, count);
    ct_token_unregister(&reg);
    ct_source_free(parent);
    ct_source_free(other);
    assert_int_equal(0, ct_test_alloc_stats().live);
    ct_test_alloc_uninstall();
}

struct churn {
    ct_source_t *parent;
    int canceled_before; /* atomic: the parent's cancel has returned */
    int failures;        /* atomic */
};

static void *churn_side(void *arg)
{
    struct churn *c = arg;
    const ct_token_t *parents[] = {ct_source_token(c->parent)};
    for (int i = 0; i < iterations(); i++) {
        bool after_cancel = __atomic_load_n(&c->canceled_before, __ATOMIC_ACQUIRE);
        ct_source_t *child;
        if (ct_source_new_linked(&child, parents, 1) < 0)
            abort();
        if (after_cancel && !ct_token_canceled(ct_source_token(child)))
            __atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
        ct_source_free(child);
    }
    return NULL;
}

static void test_race_children_created_while_parent_cancels(void **state)
{
    struct churn c = {0};
    assert_int_equal(0, ct_source_new(&c.parent));
    ct_test_thread_t *a = ct_test_thread_start(churn_side, &c);
    ct_test_thread_t *b = ct_test_thread_start(churn_side, &c);
    /* Cancel somewhere in the middle of the churn. */
    for (volatile int spin = 0; spin < 200000; spin++)
        ;
    ct_source_cancel(c.parent, CT_SHUTDOWN, NULL);
    __atomic_store_n(&c.canceled_before, 1, __ATOMIC_RELEASE);
    ct_test_thread_join(a);
    ct_test_thread_join(b);
    assert_int_equal(0, c.failures);
    ct_source_free(c.parent);
}

CT_TEST_MAIN(cmocka_unit_test(test_race_cancel_against_register_runs_callback_exactly_once),
             cmocka_unit_test(test_race_cancel_against_unregister_never_runs_after_return),
             cmocka_unit_test(test_race_cancel_against_free_and_register),
             cmocka_unit_test(test_race_concurrent_cancels_have_one_winner),
             cmocka_unit_test(test_million_linked_children_keep_memory_flat),
             cmocka_unit_test(test_race_children_created_while_parent_cancels),
             cmocka_unit_test(test_cancel_publishes_the_writes_made_before_it),
             cmocka_unit_test(test_race_timeout_never_fires_after_free_returns))
