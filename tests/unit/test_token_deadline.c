/* ct_token_deadline: the earliest pending timeout of a token and of the sources it is linked to,
 * driven by the fake clock (no test sleeps). One test races the query against linking, moving
 * and freeing from other threads for TSan. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "ct/time.h"
#include "ct/token.h"
#include "testutil.h"

static int setup_fake(void **state)
{
    (void) state;
    ct_clock_fake_start();
    return 0;
}

static int teardown_fake(void **state)
{
    (void) state;
    ct_clock_fake_stop();
    ct_timers_stop();
    return 0;
}

#define FAKE(test) cmocka_unit_test_setup_teardown(test, setup_fake, teardown_fake)

static void test_null_token_has_no_deadline(void **state)
{
    (void) state;
    assert_int_equal(CT_DEADLINE_NONE, ct_token_deadline(NULL));
}

static void test_plain_source_has_no_deadline(void **state)
{
    (void) state;
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    assert_int_equal(CT_DEADLINE_NONE, ct_token_deadline(ct_source_token(s)));
    ct_source_free(s);
}

static void test_timeout_source_deadline_is_now_plus_timeout(void **state)
{
    (void) state;
    int64_t now = ct_now_ms();
    ct_source_t *s;
    assert_int_equal(0, ct_source_new_timeout(&s, 250));
    assert_int_equal(now + 250, ct_token_deadline(ct_source_token(s)));
    /* The deadline is absolute: it stays put while time passes. */
    assert_int_equal(0, ct_clock_fake_advance(100));
    assert_int_equal(now + 250, ct_token_deadline(ct_source_token(s)));
    ct_source_free(s);
}

static void test_fired_timeout_reports_when_it_was_canceled(void **state)
{
    (void) state;
    int64_t now = ct_now_ms();
    ct_source_t *s;
    assert_int_equal(0, ct_source_new_timeout(&s, 50));
    assert_int_equal(0, ct_clock_fake_advance(80)); /* fires at +80 ms, when the clock gets there */
    assert_true(ct_token_canceled(ct_source_token(s)));
    int64_t d = ct_token_deadline(ct_source_token(s));
    assert_true(d >= now + 50 && d <= now + 80);
    assert_true(d <= ct_now_ms()); /* no time left */
    ct_source_free(s);
}

static void test_canceled_plain_source_has_no_time_left(void **state)
{
    (void) state;
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    assert_int_equal(1, ct_source_cancel(s, CT_CANCELED, NULL));
    assert_int_equal(ct_now_ms(), ct_token_deadline(ct_source_token(s)));
    ct_source_free(s);
}

static void test_linked_child_inherits_parent_timeout(void **state)
{
    (void) state;
    int64_t now = ct_now_ms();
    ct_source_t *parent, *child;
    assert_int_equal(0, ct_source_new_timeout(&parent, 300));
    const ct_token_t *p = ct_source_token(parent);
    assert_int_equal(0, ct_source_new_linked(&child, &p, 1));
    assert_int_equal(now + 300, ct_token_deadline(ct_source_token(child)));
    /* A grandchild sees it too, through two links. */
    const ct_token_t *c = ct_source_token(child);
    ct_source_t *grand;
    assert_int_equal(0, ct_source_new_linked(&grand, &c, 1));
    assert_int_equal(now + 300, ct_token_deadline(ct_source_token(grand)));
    ct_source_free(grand);
    ct_source_free(child);
    ct_source_free(parent);
}

static void test_linked_takes_min_of_parents_and_own(void **state)
{
    (void) state;
    int64_t now = ct_now_ms();
    ct_source_t *a, *b, *plain, *child;
    assert_int_equal(0, ct_source_new_timeout(&a, 500));
    assert_int_equal(0, ct_source_new_timeout(&b, 200));
    assert_int_equal(0, ct_source_new(&plain));
    const ct_token_t *ps[] = {ct_source_token(a), NULL, ct_source_token(plain), ct_source_token(b)};
    assert_int_equal(0, ct_source_new_linked(&child, ps, 4));
    const ct_token_t *t = ct_source_token(child);
    assert_int_equal(now + 200, ct_token_deadline(t));
    /* Its own CancelAfter, earlier than both, wins; a later one does not. */
    assert_int_equal(0, ct_source_cancel_after(child, 100));
    assert_int_equal(now + 100, ct_token_deadline(t));
    assert_int_equal(0, ct_source_cancel_after(child, 1000));
    assert_int_equal(now + 200, ct_token_deadline(t));
    ct_source_free(child);
    ct_source_free(plain);
    ct_source_free(b);
    ct_source_free(a);
}

static void test_cancel_after_moves_and_removes_the_deadline(void **state)
{
    (void) state;
    int64_t now = ct_now_ms();
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    const ct_token_t *t = ct_source_token(s);
    assert_int_equal(0, ct_source_cancel_after(s, 400));
    assert_int_equal(now + 400, ct_token_deadline(t));
    assert_int_equal(0, ct_source_cancel_after(s, 700)); /* later: replaces, as .NET does */
    assert_int_equal(now + 700, ct_token_deadline(t));
    assert_int_equal(0, ct_source_cancel_after(s, 50));
    assert_int_equal(now + 50, ct_token_deadline(t));
    assert_int_equal(0, ct_source_cancel_after(s, -1));
    assert_int_equal(CT_DEADLINE_NONE, ct_token_deadline(t));
    assert_int_equal(0, ct_clock_fake_advance(1000));
    assert_false(ct_token_canceled(t)); /* the removed deadline really is gone */
    ct_source_free(s);
}

static void test_shield_counts_only_its_own_timeout(void **state)
{
    (void) state;
    int64_t now = ct_now_ms();
    ct_source_t *outer, *shield;
    assert_int_equal(0, ct_source_new_timeout(&outer, 100));
    assert_int_equal(0, ct_source_new_shield(&shield, 5000));
    /* The shield does not follow the outer token, so the outer deadline is not its own. */
    assert_int_equal(now + 5000, ct_token_deadline(ct_source_token(shield)));
    ct_source_free(shield);
    ct_source_free(outer);
}

static void test_freed_parent_owner_drops_its_deadline(void **state)
{
    (void) state;
    ct_source_t *parent, *child;
    assert_int_equal(0, ct_source_new_timeout(&parent, 300));
    const ct_token_t *p = ct_source_token(parent);
    assert_int_equal(0, ct_source_new_linked(&child, &p, 1));
    ct_source_free(parent); /* its timer is killed: it will never fire */
    assert_int_equal(CT_DEADLINE_NONE, ct_token_deadline(ct_source_token(child)));
    ct_source_free(child);
}

static void test_child_freed_by_owner_no_longer_reports_parents(void **state)
{
    (void) state;
    ct_source_t *parent, *child;
    assert_int_equal(0, ct_source_new_timeout(&parent, 300));
    const ct_token_t *p = ct_source_token(parent);
    assert_int_equal(0, ct_source_new_linked(&child, &p, 1));
    const ct_token_t *kept = ct_token_ref(ct_source_token(child));
    ct_source_free(child); /* detached from its parent: the parent's timeout no longer reaches it */
    assert_int_equal(CT_DEADLINE_NONE, ct_token_deadline(kept));
    ct_token_unref(kept);
    ct_source_free(parent);
}

/* Readers walk a linked chain while other threads move the root's deadline and create and free
 * linked children: TSan checks the walk against unlinking, and every value read is one that was
 * set. */
struct race {
    ct_source_t *root;
    int stop;
};

static void *mover(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 2000; i++)
        assert_int_equal(0, ct_source_cancel_after(r->root, 1000 + (i % 2) * 1000));
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *linker(void *arg)
{
    struct race *r = arg;
    const ct_token_t *p = ct_source_token(r->root);
    for (int i = 0; i < 2000 && !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE); i++) {
        ct_source_t *c;
        assert_int_equal(0, ct_source_new_linked(&c, &p, 1));
        const ct_token_t *t = ct_token_ref(ct_source_token(c));
        int64_t d = ct_token_deadline(t);
        assert_true(d == CT_DEADLINE_NONE || d > ct_now_ms());
        ct_source_free(c);
        d = ct_token_deadline(t);
        assert_int_equal(CT_DEADLINE_NONE, d);
        ct_token_unref(t);
    }
    return NULL;
}

static void test_deadline_races_with_moves_links_and_frees(void **state)
{
    (void) state;
    struct race r = {0};
    assert_int_equal(0, ct_source_new(&r.root));
    ct_test_thread_t *a = ct_test_thread_start(mover, &r);
    ct_test_thread_t *b = ct_test_thread_start(linker, &r);
    ct_test_thread_t *c = ct_test_thread_start(linker, &r);
    ct_test_thread_join(a);
    ct_test_thread_join(b);
    ct_test_thread_join(c);
    int64_t d = ct_token_deadline(ct_source_token(r.root));
    assert_true(d != CT_DEADLINE_NONE && d > ct_now_ms());
    ct_source_free(r.root);
    ct_timers_stop();
}

CT_TEST_MAIN(cmocka_unit_test(test_null_token_has_no_deadline),
             cmocka_unit_test(test_plain_source_has_no_deadline),
             FAKE(test_timeout_source_deadline_is_now_plus_timeout),
             FAKE(test_fired_timeout_reports_when_it_was_canceled),
             FAKE(test_canceled_plain_source_has_no_time_left),
             FAKE(test_linked_child_inherits_parent_timeout),
             FAKE(test_linked_takes_min_of_parents_and_own),
             FAKE(test_cancel_after_moves_and_removes_the_deadline),
             FAKE(test_shield_counts_only_its_own_timeout),
             FAKE(test_freed_parent_owner_drops_its_deadline),
             FAKE(test_child_freed_by_owner_no_longer_reports_parents),
             cmocka_unit_test(test_deadline_races_with_moves_links_and_frees))
