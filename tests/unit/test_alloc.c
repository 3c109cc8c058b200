/* Out of memory: fail allocation N for growing N (libuv's loop-oom, curl's torture mode); every
 * call must return -ENOMEM, leave nothing allocated, and the process must carry on. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ct/time.h"
#include "ct/token.h"
#include "ct/wait.h"
#include "testutil.h"

/* Everything the token module allocates for: plain, timeout, linked and shield sources,
 * CancelAfter on a linked source, and the timer service's heap. Returns 0 or the first error. */
static int scenario(void *unused)
{
    ct_source_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    int rc;
    (void) unused;
    if ((rc = ct_source_new(&a)) < 0)
        goto out;
    if ((rc = ct_source_new_timeout(&b, 60000)) < 0)
        goto out;
    const ct_token_t *parents[] = {ct_source_token(a), ct_source_token(b)};
    if ((rc = ct_source_new_linked(&c, parents, 2)) < 0)
        goto out;
    if ((rc = ct_source_cancel_after(c, 30000)) < 0)
        goto out;
    if ((rc = ct_source_new_shield(&d, 1000)) < 0)
        goto out;
    rc = 0;
out:
    ct_source_free(d);
    ct_source_free(c);
    ct_source_free(b);
    ct_source_free(a);
    return rc;
}

static void stop_timers(void *unused, int rc)
{
    (void) unused;
    (void) rc;
    ct_timers_stop(); /* frees the timer heap once it is empty */
}

static void test_every_allocation_failure_returns_enomem_and_leaks_nothing(void **state)
{
    /* One failure per allocation point: 4 sources, and the heap at its first arming. */
    assert_int_equal(5, ct_test_alloc_torture(scenario, stop_timers, NULL));
}

static void test_cancel_after_reports_enomem_and_the_source_still_works(void **state)
{
    enum { FULL = 64 }; /* the heap's first capacity */
    ct_test_alloc_install();
    ct_clock_fake_start();
    ct_source_t *pending[FULL], *s;
    for (int i = 0; i < FULL; i++)
        assert_int_equal(0, ct_source_new_timeout(&pending[i], 1000));
    assert_int_equal(0, ct_source_new(&s));
    ct_test_alloc_fail_at(1); /* the heap's growth */
    assert_int_equal(-ENOMEM, ct_source_cancel_after(s, 10));
    ct_test_alloc_fail_at(0);
    ct_clock_fake_advance(10);
    assert_false(ct_token_canceled(ct_source_token(s)));
    assert_int_equal(0, ct_source_cancel_after(s, 10)); /* grows now */
    ct_clock_fake_advance(10);
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(s)));
    ct_source_free(s);
    for (int i = 0; i < FULL; i++)
        ct_source_free(pending[i]);
    ct_clock_fake_stop();
    ct_timers_stop();
    assert_int_equal(0, ct_test_alloc_stats().live);
    ct_test_alloc_uninstall();
}

static void *fd_wait_without_fds(void *arg)
{
    int *rc = arg;
    int p[2];
    if (pipe(p) < 0)
        return NULL;
    struct rlimit old, lim;
    getrlimit(RLIMIT_NOFILE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t) p[1] + 1; /* no fd left for this thread's eventfd */
    setrlimit(RLIMIT_NOFILE, &lim);
    *rc = ct_fd_wait(p[0], POLLIN, NULL, -1);
    setrlimit(RLIMIT_NOFILE, &old);
    close(p[0]);
    close(p[1]);
    return NULL;
}

static void test_fd_wait_reports_emfile_when_no_eventfd_can_be_made(void **state)
{
    int rc = 0;
    ct_test_thread_join(ct_test_thread_start(fd_wait_without_fds, &rc)); /* a fresh thread */
    assert_int_equal(-EMFILE, rc);
}

static int make_and_free(void)
{
    ct_source_t *p, *c;
    int rc = ct_source_new(&p);
    if (rc < 0)
        return rc;
    const ct_token_t *parents[] = {ct_source_token(p)};
    if ((rc = ct_source_new_linked(&c, parents, 1)) == 0)
        ct_source_free(c);
    ct_source_free(p);
    return rc;
}

static void test_replaced_allocator_sees_every_source_even_after_caching(void **state)
{
    /* With the C library's allocator, freed sources are kept for reuse by this thread. Once
     * another allocator is installed, every source must come from it and go back to it. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(0, make_and_free()); /* fills this thread's cache */
    ct_test_alloc_install();
    long calls = ct_test_alloc_stats().calls;
    assert_int_equal(0, make_and_free());
    assert_int_equal(calls + 2, ct_test_alloc_stats().calls);
    assert_int_equal(0, ct_test_alloc_stats().live);
    /* Blocks allocated by the C library earlier go back to it, not to the counting allocator. */
    ct_source_t *s;
    ct_test_alloc_uninstall();
    assert_int_equal(0, ct_source_new(&s));
    ct_test_alloc_install();
    ct_source_free(s);
    assert_int_equal(0, ct_test_alloc_stats().live);
    ct_test_alloc_fail_at(1);
    assert_int_equal(-ENOMEM, make_and_free());
    ct_test_alloc_uninstall();
    assert_int_equal(0, make_and_free());
}

static void test_allocator_rejects_incomplete_tables(void **state)
{
    ct_allocator_t a = {malloc, calloc, realloc, NULL};
    assert_int_equal(-EINVAL, ct_allocator_set(&a));
    assert_int_equal(0, ct_allocator_set(NULL));
}

CT_TEST_MAIN(cmocka_unit_test(test_every_allocation_failure_returns_enomem_and_leaks_nothing),
             cmocka_unit_test(test_cancel_after_reports_enomem_and_the_source_still_works),
             cmocka_unit_test(test_fd_wait_reports_emfile_when_no_eventfd_can_be_made),
             cmocka_unit_test(test_replaced_allocator_sees_every_source_even_after_caching),
             cmocka_unit_test(test_allocator_rejects_incomplete_tables))
