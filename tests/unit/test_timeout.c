/* Timeouts, CancelAfter, shields and the timer service, driven by the fake clock: no test sleeps
 * to see a timeout fire. One test uses the real clock to prove the timer thread fires on its own.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/time.h"
#include "ct/token.h"
#include "ct/wait.h"
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

#define FAKE(test) cmocka_unit_test_setup_teardown(test, setup_fake, teardown_fake)

struct fired {
    int count;
    const void *thread;
    int order[8];
};

static void fired_cb(void *arg, const ct_token_t *tok)
{
    struct fired *f = arg;
    (void) tok;
    f->count++;
    f->thread = ct_test_thread_self();
}

static void test_timeout_fires_when_the_clock_reaches_the_deadline(void **state)
{
    ct_source_t *s;
    assert_int_equal(0, ct_source_new_timeout(&s, 1000));
    const ct_token_t *t = ct_source_token(s);
    struct fired f = {0};
    ct_reg_t reg;
    ct_token_register(t, &reg, fired_cb, &f);
    ct_clock_fake_advance(999);
    assert_false(ct_token_canceled(t));
    ct_clock_fake_advance(1);
    assert_true(ct_token_canceled(t));
    assert_int_equal(CT_TIMEOUT, ct_token_reason(t));
    assert_string_equal("timed out after 1000 ms", ct_token_detail(t));
    assert_ptr_equal(t, ct_token_origin(t));
    /* Fired on the thread that advanced the clock, before advance returned. */
    assert_int_equal(1, f.count);
    assert_ptr_equal(ct_test_thread_self(), f.thread);
    ct_token_unregister(&reg);
    ct_source_free(s);
}

static void test_timeout_of_zero_is_canceled_at_creation(void **state)
{
    ct_source_t *s;
    assert_int_equal(0, ct_source_new_timeout(&s, 0));
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(s)));
    ct_source_free(s);
}

static void test_timeout_rejects_out_of_range_values(void **state)
{
    ct_source_t *s = NULL;
    assert_int_equal(-EINVAL, ct_source_new_timeout(&s, -1));
    assert_int_equal(-EINVAL, ct_source_new_timeout(&s, CT_TIMEOUT_MAX_MS + 1));
    assert_int_equal(-EINVAL, ct_source_new_timeout(NULL, 10));
    assert_null(s);
    assert_int_equal(0, ct_source_new(&s));
    assert_int_equal(-EINVAL, ct_source_cancel_after(s, -2));
    assert_int_equal(-EINVAL, ct_source_cancel_after(s, CT_TIMEOUT_MAX_MS + 1));
    assert_int_equal(-EINVAL, ct_source_cancel_after(NULL, 10));
    assert_int_equal(0, ct_source_cancel_after(s, CT_TIMEOUT_MAX_MS));
    ct_source_free(s);
}

static void test_cancel_after_arms_a_plain_source(void **state)
{
    ct_source_t *s;
    ct_source_new(&s);
    assert_int_equal(0, ct_source_cancel_after(s, 300));
    ct_clock_fake_advance(299);
    assert_false(ct_token_canceled(ct_source_token(s)));
    ct_clock_fake_advance(1);
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(s)));
    assert_string_equal("timed out after 300 ms", ct_token_detail(ct_source_token(s)));
    ct_source_free(s);
}

static void test_cancel_after_second_call_replaces_the_deadline(void **state)
{
    ct_source_t *s;
    /* Later: the first deadline no longer counts. */
    ct_source_new_timeout(&s, 100);
    ct_source_cancel_after(s, 500);
    ct_clock_fake_advance(499);
    assert_false(ct_token_canceled(ct_source_token(s)));
    ct_clock_fake_advance(1);
    assert_true(ct_token_canceled(ct_source_token(s)));
    ct_source_free(s);
    /* Earlier. */
    ct_source_new_timeout(&s, 1000);
    ct_source_cancel_after(s, 10);
    ct_clock_fake_advance(10);
    assert_true(ct_token_canceled(ct_source_token(s)));
    assert_string_equal("timed out after 10 ms", ct_token_detail(ct_source_token(s)));
    ct_source_free(s);
}

static void test_cancel_after_minus_one_disarms(void **state)
{
    ct_source_t *s;
    ct_source_new_timeout(&s, 100);
    assert_int_equal(0, ct_source_cancel_after(s, -1));
    ct_clock_fake_advance(1000);
    assert_false(ct_token_canceled(ct_source_token(s)));
    ct_source_free(s);
}

static void test_cancel_after_zero_cancels_now(void **state)
{
    ct_source_t *s;
    ct_source_new(&s);
    assert_int_equal(0, ct_source_cancel_after(s, 0));
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(s)));
    ct_source_free(s);
}

static void test_cancel_after_on_a_canceled_source_changes_nothing(void **state)
{
    ct_source_t *s;
    ct_source_new(&s);
    ct_source_cancel(s, CT_CLIENT_ABORTED, "gone");
    assert_int_equal(0, ct_source_cancel_after(s, 10));
    ct_clock_fake_advance(20);
    assert_int_equal(CT_CLIENT_ABORTED, ct_token_reason(ct_source_token(s)));
    assert_string_equal("gone", ct_token_detail(ct_source_token(s)));
    ct_source_free(s);
}

static void test_freed_timeout_source_never_fires(void **state)
{
    ct_source_t *s;
    ct_source_new_timeout(&s, 100);
    const ct_token_t *t = ct_token_ref(ct_source_token(s));
    ct_source_free(s);
    ct_clock_fake_advance(200);
    assert_false(ct_token_canceled(t));
    /* A holder cannot re-arm a freed source either. */
    ct_source_t *held = ct_source_ref((ct_source_t *) (void *) t);
    assert_int_equal(0, ct_source_cancel_after(held, 10));
    ct_clock_fake_advance(20);
    assert_false(ct_token_canceled(t));
    ct_source_unref(held);
    ct_token_unref(t);
}

struct slot {
    int *fired, *n, ms;
};

static void fired_cb_order(void *arg, const ct_token_t *tok)
{
    struct slot *sl = arg;
    (void) tok;
    sl->fired[(*sl->n)++] = sl->ms;
}

static void test_timeouts_fire_in_deadline_order(void **state)
{
    enum { N = 200 };
    ct_source_t *s[N];
    int order[N], fired[N], nfired = 0;
    for (int i = 0; i < N; i++)
        order[i] = i;
    srand(7);
    for (int i = N - 1; i > 0; i--) {
        int j = rand() % (i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    struct slot slots[N];
    ct_reg_t regs[N];
    for (int i = 0; i < N; i++) {
        int ms = 10 * (order[i] + 1);
        assert_int_equal(0, ct_source_new_timeout(&s[i], ms));
        slots[i] = (struct slot){fired, &nfired, ms};
    }
    for (int i = 0; i < N; i++)
        ct_token_register(ct_source_token(s[i]), &regs[i], fired_cb_order, &slots[i]);
    ct_clock_fake_advance(10 * N);
    assert_int_equal(N, nfired);
    for (int i = 0; i < N; i++)
        assert_int_equal(10 * (i + 1), fired[i]);
    for (int i = 0; i < N; i++) {
        ct_token_unregister(&regs[i]);
        ct_source_free(s[i]);
    }
}

static void test_timeout_linked_with_outer_token_says_who_asked(void **state)
{
    /* The cookbook's pattern: the request's token, linked with an operation's own timeout. */
    for (int outer_first = 0; outer_first < 2; outer_first++) {
        ct_source_t *request, *timeout, *op;
        ct_source_new(&request);
        ct_source_new_timeout(&timeout, 5000);
        const ct_token_t *parents[] = {ct_source_token(request), ct_source_token(timeout)};
        ct_source_new_linked(&op, parents, 2);
        const ct_token_t *t = ct_source_token(op);
        if (outer_first)
            ct_source_cancel(request, CT_CLIENT_ABORTED, "client left");
        else
            ct_clock_fake_advance(5000);
        assert_true(ct_token_canceled(t));
        assert_int_equal(outer_first ? CT_CLIENT_ABORTED : CT_TIMEOUT, ct_token_reason(t));
        assert_true(ct_token_caused_by(t, parents[outer_first ? 0 : 1]));
        assert_false(ct_token_caused_by(t, parents[outer_first ? 1 : 0]));
        ct_source_free(op);
        ct_source_free(timeout);
        ct_source_free(request);
    }
}

static void test_shield_ignores_the_outer_token_but_keeps_its_deadline(void **state)
{
    ct_source_t *request, *shield;
    ct_source_new(&request);
    assert_int_equal(0, ct_source_new_shield(&shield, 2000));
    ct_source_cancel(request, CT_CLIENT_ABORTED, "client left");
    assert_false(ct_token_canceled(ct_source_token(shield)));
    ct_clock_fake_advance(1999);
    assert_false(ct_token_canceled(ct_source_token(shield)));
    ct_clock_fake_advance(1);
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(shield)));
    assert_string_equal("shield deadline of 2000 ms passed",
                        ct_token_detail(ct_source_token(shield)));
    ct_source_free(shield);
    ct_source_free(request);
}

static void test_shield_requires_a_deadline(void **state)
{
    ct_source_t *s = NULL;
    assert_int_equal(-EINVAL, ct_source_new_shield(&s, 0));
    assert_int_equal(-EINVAL, ct_source_new_shield(&s, -1));
    assert_int_equal(-EINVAL, ct_source_new_shield(&s, CT_TIMEOUT_MAX_MS + 1));
    assert_null(s);
}

struct sleeper {
    int64_t slept_ms;
    int rc;
    int done; /* atomic */
};

static void *sleeper_thread(void *arg)
{
    struct sleeper *sl = arg;
    int64_t start = ct_now_ms();
    sl->rc = ct_sleep_ms(1000, NULL);
    sl->slept_ms = ct_now_ms() - start;
    __atomic_store_n(&sl->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_sleep_ends_when_the_fake_clock_passes_its_deadline(void **state)
{
    struct sleeper sl = {0};
    ct_test_thread_t *th = ct_test_thread_start(sleeper_thread, &sl);
    /* The sleeper computes its deadline at some point we cannot see: keep advancing. */
    assert_true(CT_WAIT_FOR(
        ct_clock_fake_advance(250) == 0 && __atomic_load_n(&sl.done, __ATOMIC_ACQUIRE), 5000));
    ct_test_thread_join(th);
    assert_int_equal(0, sl.rc);
    assert_true(sl.slept_ms >= 1000);
}

static void test_fake_clock_reports_its_own_time(void **state)
{
    assert_true(ct_clock_is_fake());
    int64_t t0 = ct_now_ms();
    assert_int_equal(0, ct_clock_fake_advance(1234));
    assert_int_equal(t0 + 1234, ct_now_ms());
    assert_int_equal(-EINVAL, ct_clock_fake_advance(-1));
    int64_t d = ct_deadline_after(100);
    assert_int_equal(t0 + 1234 + 100, d);
    assert_int_equal(100, ct_deadline_remaining(d));
    ct_clock_fake_advance(150);
    assert_int_equal(0, ct_deadline_remaining(d));
    assert_int_equal(-1, ct_deadline_remaining(-1));
    assert_int_equal(-1, ct_deadline_after(-5));
}

/* ---- the real timer thread ----------------------------------------------------------------- */

static void post_cb(void *arg, const ct_token_t *tok)
{
    (void) tok;
    ct_sem_post(arg);
}

static void test_timer_thread_fires_on_the_real_clock(void **state)
{
    ct_sem_t sem;
    ct_sem_init(&sem, 0);
    ct_source_t *s;
    int64_t start = ct_now_ns();
    assert_int_equal(0, ct_source_new_timeout(&s, 20));
    ct_reg_t reg;
    ct_token_register(ct_source_token(s), &reg, post_cb, &sem);
    assert_int_equal(0, ct_sem_wait(&sem, NULL, ct_deadline_after(10000 * ct_test_scale())));
    int64_t elapsed_us = (ct_now_ns() - start) / 1000;
    printf("20 ms timeout fired after %lld us\n", (long long) elapsed_us);
    assert_true(elapsed_us >= 20000);
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(s)));
    ct_token_unregister(&reg);
    ct_source_free(s);
    ct_sem_destroy(&sem);

    /* Stopped, then started again by the next timeout. */
    ct_timers_stop();
    ct_sem_init(&sem, 0);
    assert_int_equal(0, ct_source_new_timeout(&s, 5));
    ct_token_register(ct_source_token(s), &reg, post_cb, &sem);
    assert_int_equal(0, ct_sem_wait(&sem, NULL, ct_deadline_after(10000 * ct_test_scale())));
    ct_token_unregister(&reg);
    ct_source_free(s);
    ct_sem_destroy(&sem);
    ct_timers_stop();
}

static void test_earlier_timeout_wakes_the_sleeping_timer_thread(void **state)
{
    /* The thread sleeps until a deadline an hour away; a 10 ms timeout must still fire. */
    ct_source_t *far, *near;
    assert_int_equal(0, ct_source_new_timeout(&far, 3600 * 1000));
    ct_sem_t sem;
    ct_sem_init(&sem, 0);
    assert_int_equal(0, ct_source_new_timeout(&near, 10));
    ct_reg_t reg;
    ct_token_register(ct_source_token(near), &reg, post_cb, &sem);
    assert_int_equal(0, ct_sem_wait(&sem, NULL, ct_deadline_after(10000 * ct_test_scale())));
    assert_false(ct_token_canceled(ct_source_token(far)));
    ct_token_unregister(&reg);
    ct_source_free(near);
    ct_source_free(far);
    ct_sem_destroy(&sem);
    ct_timers_stop();
}

/* Are all the other threads of this process asleep (state S in /proc)? */
static bool others_asleep(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return false;
    bool asleep = true;
    struct dirent *e;
    pid_t self = (pid_t) syscall(SYS_gettid);
    while (asleep && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        char path[300], buf[256];
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *close_paren = strrchr(buf, ')');
        asleep = close_paren && close_paren[1] == ' ' && close_paren[2] == 'S';
    }
    closedir(d);
    return asleep;
}

static void test_forked_child_can_use_timeouts(void **state)
{
    /* The parent's timer thread sleeps on its condition variable when the process forks; the
     * child must start its own and use it, more than once. */
    if (CT_TEST_TSAN)
        skip(); /* TSan cannot run threads in the child of a multi-threaded process */
    ct_source_t *s;
    assert_int_equal(0, ct_source_new_timeout(&s, 3600 * 1000));
    assert_true(CT_WAIT_FOR(others_asleep(), 5000));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 3; i++) {
            ct_sem_t sem;
            ct_sem_init(&sem, 0);
            ct_source_t *t;
            if (ct_source_new_timeout(&t, 5) < 0)
                _exit(2);
            ct_reg_t reg;
            ct_token_register(ct_source_token(t), &reg, post_cb, &sem);
            if (ct_sem_wait(&sem, NULL, ct_deadline_after(10000)) < 0)
                _exit(3);
            ct_token_unregister(&reg);
            ct_source_free(t);
        }
        _exit(0);
    }
    int status = 0;
    assert_true(CT_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 20000));
    assert_true(WIFEXITED(status));
    assert_int_equal(0, WEXITSTATUS(status));
    ct_source_free(s);
    ct_timers_stop();
}

static void *stop_thread(void *arg)
{
    (void) arg;
    ct_timers_stop();
    return NULL;
}

static void test_concurrent_timers_stop_calls_all_return(void **state)
{
    for (int round = 0; round < 50; round++) {
        ct_source_t *s;
        assert_int_equal(0, ct_source_new_timeout(&s, 60000)); /* the thread runs */
        ct_test_thread_t *a = ct_test_thread_start(stop_thread, NULL);
        ct_test_thread_t *b = ct_test_thread_start(stop_thread, NULL);
        ct_timers_stop();
        ct_test_thread_join(a);
        ct_test_thread_join(b);
        ct_source_free(s);
    }
}

CT_TEST_MAIN(FAKE(test_timeout_fires_when_the_clock_reaches_the_deadline),
             FAKE(test_timeout_of_zero_is_canceled_at_creation),
             FAKE(test_timeout_rejects_out_of_range_values),
             FAKE(test_cancel_after_arms_a_plain_source),
             FAKE(test_cancel_after_second_call_replaces_the_deadline),
             FAKE(test_cancel_after_minus_one_disarms), FAKE(test_cancel_after_zero_cancels_now),
             FAKE(test_cancel_after_on_a_canceled_source_changes_nothing),
             FAKE(test_freed_timeout_source_never_fires),
             FAKE(test_timeouts_fire_in_deadline_order),
             FAKE(test_timeout_linked_with_outer_token_says_who_asked),
             FAKE(test_shield_ignores_the_outer_token_but_keeps_its_deadline),
             FAKE(test_shield_requires_a_deadline),
             FAKE(test_sleep_ends_when_the_fake_clock_passes_its_deadline),
             FAKE(test_fake_clock_reports_its_own_time),
             cmocka_unit_test(test_timer_thread_fires_on_the_real_clock),
             cmocka_unit_test(test_earlier_timeout_wakes_the_sleeping_timer_thread),
             cmocka_unit_test(test_forked_child_can_use_timeouts),
             cmocka_unit_test(test_concurrent_timers_stop_calls_all_return))
