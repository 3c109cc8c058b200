/* ct_token_deadline: the earliest armed timeout of a token and its parents, on the fake clock so
 * that every figure is exact. */
#define _GNU_SOURCE
#include <stdint.h>

#include "ct/time.h"
#include "ct/token.h"
#include "testutil.h"

static int setup_fake(void **state)
{
    ct_clock_fake_start();
    return 0;
}

static int teardown_fake(void **state)
{
    ct_clock_fake_stop();
    ct_timers_stop();
    return 0;
}

static void test_no_timeout_means_no_deadline(void **state)
{
    assert_true(ct_token_deadline(NULL) == INT64_MAX);
    ct_source_t *s;
    assert_int_equal(0, ct_source_new(&s));
    assert_true(ct_token_deadline(ct_source_token(s)) == INT64_MAX);
    ct_source_free(s);
}

static void test_timeout_and_cancel_after_move_the_deadline(void **state)
{
    int64_t t0 = ct_now_ms();
    ct_source_t *s;
    assert_int_equal(0, ct_source_new_timeout(&s, 5000));
    assert_true(ct_token_deadline(ct_source_token(s)) == t0 + 5000);
    assert_int_equal(0, ct_source_cancel_after(s, 1200));
    assert_true(ct_token_deadline(ct_source_token(s)) == t0 + 1200);
    assert_int_equal(0, ct_source_cancel_after(s, -1));
    assert_true(ct_token_deadline(ct_source_token(s)) == INT64_MAX);
    ct_source_free(s);
}

static void test_linked_source_takes_the_earliest_of_its_parents(void **state)
{
    int64_t t0 = ct_now_ms();
    ct_source_t *slow, *quick, *plain, *linked, *grandchild;
    assert_int_equal(0, ct_source_new_timeout(&slow, 30000));
    assert_int_equal(0, ct_source_new_timeout(&quick, 5000));
    assert_int_equal(0, ct_source_new(&plain));
    const ct_token_t *parents[] = {ct_source_token(plain), ct_source_token(slow),
                                   ct_source_token(quick)};
    assert_int_equal(0, ct_source_new_linked(&linked, parents, 3));
    assert_true(ct_token_deadline(ct_source_token(linked)) == t0 + 5000);
    /* Through two levels, and the child's own earlier deadline wins. */
    const ct_token_t *p2[] = {ct_source_token(linked)};
    assert_int_equal(0, ct_source_new_linked(&grandchild, p2, 1));
    assert_true(ct_token_deadline(ct_source_token(grandchild)) == t0 + 5000);
    assert_int_equal(0, ct_source_cancel_after(grandchild, 700));
    assert_true(ct_token_deadline(ct_source_token(grandchild)) == t0 + 700);
    /* Time passes: the deadline stays where it was, closer now. */
    ct_clock_fake_advance(300);
    assert_true(ct_token_deadline(ct_source_token(grandchild)) == t0 + 700);
    ct_source_free(grandchild);
    ct_source_free(linked);
    ct_source_free(plain);
    ct_source_free(quick);
    ct_source_free(slow);
}

static void test_shield_has_only_its_own_deadline(void **state)
{
    int64_t t0 = ct_now_ms();
    ct_source_t *shield;
    assert_int_equal(0, ct_source_new_shield(&shield, 2500));
    assert_true(ct_token_deadline(ct_source_token(shield)) == t0 + 2500);
    ct_source_free(shield);
}

static void test_canceled_token_reports_when_it_was_canceled(void **state)
{
    ct_source_t *s;
    assert_int_equal(0, ct_source_new_timeout(&s, 100));
    ct_clock_fake_advance(100);
    assert_true(ct_token_canceled(ct_source_token(s)));
    assert_true(ct_token_deadline(ct_source_token(s)) <= ct_now_ms());
    ct_source_free(s);
}

CT_TEST_MAIN(cmocka_unit_test_setup_teardown(test_no_timeout_means_no_deadline, setup_fake,
                                             teardown_fake),
             cmocka_unit_test_setup_teardown(test_timeout_and_cancel_after_move_the_deadline,
                                             setup_fake, teardown_fake),
             cmocka_unit_test_setup_teardown(test_linked_source_takes_the_earliest_of_its_parents,
                                             setup_fake, teardown_fake),
             cmocka_unit_test_setup_teardown(test_shield_has_only_its_own_deadline, setup_fake,
                                             teardown_fake),
             cmocka_unit_test_setup_teardown(test_canceled_token_reports_when_it_was_canceled,
                                             setup_fake, teardown_fake))
