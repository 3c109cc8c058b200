/* ct-jobs' contract, in one process, for each backend: the memory channel, a real SQLite file and
 * a real PostgreSQL server (the `pg` CTest fixture). Every behaviour is checked once per backend
 * (test_memory_*, test_sqlite_*, test_pg_*). Each PostgreSQL test gets a schema of its own
 * (named after its pid, selected with options=-csearch_path in the conninfo), so tests running
 * in parallel never see each other's jobs. What only PostgreSQL has (the server's clock,
 * LISTEN/NOTIFY) is in test_jobs_pg.c; durability, crashes and several processes in
 * test_jobs_proc.c. Handlers block on semaphores, never on sleeps; the few real-time checks
 * (backoff, delay) only assert lower bounds and loose upper ones. */
#define _GNU_SOURCE
#include "jobs_util.h"

/* A job enqueued runs once with its kind and payload, and ends completed with its timestamps. */
static void enqueued_job_completes_with_timestamps(int backend)
{
    ct_jobs_t *q = open_q(backend, 2, NULL);
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id = 0;
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "{\"file\":\"DEMO_01.dat\"}", NULL, &id));
    assert_true(id > 0);
    assert_true(CT_WAIT_FOR(status_of(q, id) == CT_JOB_COMPLETED, 2000));
    ct_job_info_t i = info(q, id);
    assert_int_equal(1, i.attempts);
    assert_string_equal("ok", i.kind);
    assert_true(i.enqueued_at_ms > 0);
    assert_true(i.started_at_ms >= i.enqueued_at_ms);
    assert_true(i.finished_at_ms >= i.started_at_ms);
    assert_int_equal(1, runs());
    assert_string_equal("{\"file\":\"DEMO_01.dat\"}", g.seen_payload);
    assert_int_equal(0, ct_jobs_stop(q, NULL));
    ct_jobs_free(q);
}

/* N workers run N jobs at the same time. */
static void workers_run_jobs_concurrently(int backend)
{
    ct_jobs_t *q = open_q(backend, 4, NULL);
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t ids[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &ids[i]));
    for (int i = 0; i < 4; i++)
        assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_int_equal(4, g.max_running);
    for (int i = 0; i < 4; i++)
        assert_int_equal(CT_JOB_RUNNING, status_of(q, ids[i]));
    for (int i = 0; i < 4; i++)
        ct_sem_post(&g.release);
    for (int i = 0; i < 4; i++)
        assert_true(CT_WAIT_FOR(status_of(q, ids[i]) == CT_JOB_COMPLETED, 2000));
    ct_jobs_free(q);
}

/* A pending job canceled by id never runs: with the only worker held by another job, the
 * canceled one is still queued when the worker becomes free, and is skipped. */
static void canceled_pending_job_never_runs(int backend)
{
    ct_jobs_t *q = open_q(backend, 1, NULL);
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t a, b, c;
    assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &a));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "b", NULL, &b));
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "c", NULL, &c));
    assert_int_equal(0, ct_jobs_cancel(q, b));
    assert_int_equal(CT_JOB_CANCELED, status_of(q, b));
    ct_sem_post(&g.release);
    assert_true(CT_WAIT_FOR(status_of(q, c) == CT_JOB_COMPLETED, 2000));
    assert_int_equal(CT_JOB_COMPLETED, status_of(q, a));
    assert_int_equal(CT_JOB_CANCELED, status_of(q, b));
    assert_int_equal(0, info(q, b).attempts);
    assert_int_equal(2, runs()); /* a and c, never b */
    assert_int_equal(-EALREADY, ct_jobs_cancel(q, b));
    assert_int_equal(-EALREADY, ct_jobs_cancel(q, c));
    assert_int_equal(-ENOENT, ct_jobs_cancel(q, 999));
    ct_jobs_free(q);
}

/* A running job canceled by id: its token fires at once with CT_CANCELED, and it ends canceled. */
static void canceled_running_job_sees_its_token_fire(int backend)
{
    ct_jobs_t *q = open_q(backend, 2, NULL);
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &id));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_int_equal(1, ct_jobs_cancel(q, id));
    assert_true(CT_WAIT_FOR(status_of(q, id) == CT_JOB_CANCELED, 2000));
    assert_int_equal(CT_CANCELED, g.last_reason);
    assert_string_equal("canceled by id", g.last_detail);
    assert_int_equal(1, info(q, id).attempts);
    assert_int_equal(1, runs());
    ct_jobs_free(q);
}

/* A handler that keeps failing is requeued with a doubling backoff, then failed after
 * max_attempts; the error text is kept. */
static void failing_job_is_retried_with_backoff_then_failed(int backend)
{
    ct_jobs_t *q = open_q(backend, 2, &(ct_jobs_options_t){.backoff_ms = 100, .poll_ms = 20});
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0,
                     ct_jobs_enqueue(q, "fail", "", &(ct_job_options_t){.max_attempts = 3}, &id));
    assert_true(CT_WAIT_FOR(info(q, id).attempts >= 1, 2000));
    /* Between attempts 1 and 2 it is requeued, due in the future. */
    assert_true(CT_WAIT_FOR(status_of(q, id) == CT_JOB_REQUEUED || info(q, id).attempts > 1, 2000));
    assert_true(CT_WAIT_FOR(status_of(q, id) == CT_JOB_FAILED, 5000));
    ct_job_info_t i = info(q, id);
    assert_int_equal(3, i.attempts);
    assert_int_equal(3, runs());
    assert_non_null(strstr(i.last_error, "Input/output error"));
    /* Backoff: 100 ms before the 2nd attempt, 200 ms before the 3rd. */
    assert_true(g.attempt_at[1] - g.attempt_at[0] >= 95);
    assert_true(g.attempt_at[2] - g.attempt_at[1] >= 195);
    ct_jobs_free(q);
}

static void flaky_job_completes_on_its_second_attempt(int backend)
{
    ct_jobs_t *q = open_q(backend, 1, &(ct_jobs_options_t){.backoff_ms = 10, .poll_ms = 20});
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "flaky", "", NULL, &id));
    assert_true(CT_WAIT_FOR(status_of(q, id) == CT_JOB_COMPLETED, 3000));
    assert_int_equal(2, info(q, id).attempts);
    ct_jobs_free(q);
}

/* A delayed job does not start before its delay. */
static void delayed_job_waits_for_its_delay(int backend)
{
    ct_jobs_t *q = open_q(backend, 1, &(ct_jobs_options_t){.poll_ms = 20});
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "", &(ct_job_options_t){.delay_ms = 300}, &id));
    assert_true(CT_WAIT_FOR(status_of(q, id) == CT_JOB_COMPLETED, 3000));
    ct_job_info_t i = info(q, id);
    assert_true(i.started_at_ms - i.enqueued_at_ms >= 300);
    ct_jobs_free(q);
}

/* Shutdown (the host's stopping token) interrupts a running job: it goes back to pending and the
 * attempt is not counted; enqueue now says -ESHUTDOWN instead of dropping the job. */
static void shutdown_puts_running_job_back_and_refuses_enqueue(int backend)
{
    ct_source_t *stopping;
    assert_int_equal(0, ct_source_new(&stopping));
    ct_jobs_t *q = open_q(backend, 2, NULL);
    assert_int_equal(0, ct_jobs_start(q, ct_source_token(stopping)));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &id));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_int_equal(1, info(q, id).attempts);
    ct_source_cancel(stopping, CT_SHUTDOWN, "SIGTERM");
    assert_int_equal(-ESHUTDOWN, ct_jobs_enqueue(q, "ok", "", NULL, NULL));
    assert_int_equal(0, ct_jobs_stop(q, NULL));
    assert_int_equal(CT_SHUTDOWN, g.last_reason);
    assert_string_equal("SIGTERM", g.last_detail);
    ct_job_info_t i = info(q, id);
    assert_int_equal(CT_JOB_PENDING, i.status);
    assert_int_equal(0, i.attempts);
    assert_int_equal(-ESHUTDOWN, ct_jobs_enqueue(q, "ok", "", NULL, NULL));
    ct_jobs_free(q);
    ct_source_free(stopping);
}

static void bad_arguments_are_einval(int backend)
{
    ct_jobs_t *q;
    assert_int_equal(-EINVAL, ct_jobs_new(NULL, NULL));
    assert_int_equal(-EINVAL, ct_jobs_new(&q, &(ct_jobs_options_t){.backend = backend}));
    assert_int_equal(-EINVAL, ct_jobs_new(&q, &(ct_jobs_options_t){.backend = backend,
                                                                   .path = path,
                                                                   .conninfo = conninfo,
                                                                   .handler = handler,
                                                                   .workers = 100000}));
    assert_int_equal(-EINVAL, ct_jobs_new(&q, &(ct_jobs_options_t){.backend = CT_JOBS_POSTGRES,
                                                                   .handler = handler}));
    assert_int_equal(-EINVAL,
                     ct_jobs_new(&q, &(ct_jobs_options_t){.backend = 7, .handler = handler}));
    assert_int_equal(-EINVAL, ct_jobs_new(&q, &(ct_jobs_options_t){.backend = backend,
                                                                   .path = path,
                                                                   .conninfo = conninfo,
                                                                   .handler = handler,
                                                                   .retain_ms = -2}));
    q = open_q(backend, 1, NULL);
    assert_int_equal(-EINVAL, ct_jobs_enqueue(q, NULL, "", NULL, NULL));
    assert_int_equal(-EINVAL, ct_jobs_enqueue(q, "", "", NULL, NULL));
    assert_int_equal(-EINVAL, ct_jobs_enqueue(q, "ok", NULL, NULL, NULL));
    assert_int_equal(-EINVAL,
                     ct_jobs_enqueue(q, "ok", "", &(ct_job_options_t){.max_attempts = -1}, NULL));
    assert_int_equal(-EINVAL,
                     ct_jobs_enqueue(q, "ok", "", &(ct_job_options_t){.delay_ms = -1}, NULL));
    ct_job_info_t i;
    assert_int_equal(-EINVAL, ct_jobs_get(q, 1, NULL));
    assert_int_equal(-EINVAL, ct_jobs_get(NULL, 1, &i));
    assert_int_equal(-ENOENT, ct_jobs_get(q, 12345, &i));
    assert_int_equal(-EINVAL, ct_jobs_cancel(q, 0));
    assert_int_equal(-EINVAL, ct_jobs_start(NULL, NULL));
    assert_int_equal(0, ct_jobs_start(q, NULL));
    assert_int_equal(-EBUSY, ct_jobs_start(q, NULL));
    ct_jobs_free(q);
    ct_jobs_free(NULL);
}

/* Each behaviour once per backend (CTest finds test functions by their signature, so they are
 * written out rather than generated by a macro). */
static bool gone(ct_jobs_t *q, int64_t id)
{
    ct_job_info_t i;
    return ct_jobs_get(q, id, &i) == -ENOENT;
}

/* Finished jobs (completed, canceled) are deleted by the heartbeat once their retention has
 * passed; a running and a pending job stay; the ids go on where they were. */
static void finished_jobs_are_deleted_after_their_retention(int backend)
{
    ct_jobs_t *q = open_q(
        backend, 2, &(ct_jobs_options_t){.retain_ms = 1, .lease_ms = 3000, .heartbeat_ms = 20});
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t running, done, canceled, waiting, next;
    assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &running));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "", NULL, &done));
    ct_job_options_t later = {.delay_ms = 600000};
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "", &later, &canceled));
    assert_int_equal(0, ct_jobs_cancel(q, canceled));
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "", &later, &waiting));
    assert_true(CT_WAIT_FOR(runs() == 2 && gone(q, done) && gone(q, canceled), 5000));
    assert_int_equal(CT_JOB_RUNNING, status_of(q, running));
    assert_int_equal(CT_JOB_PENDING, status_of(q, waiting));
    assert_int_equal(-ENOENT, ct_jobs_cancel(q, done));
    ct_sem_post(&g.release);
    assert_true(CT_WAIT_FOR(runs() == 2 && gone(q, running), 5000));
    assert_int_equal(CT_JOB_PENDING, status_of(q, waiting));
    assert_int_equal(0, ct_jobs_enqueue(q, "ok", "", NULL, &next));
    assert_true(next > waiting);
    assert_true(CT_WAIT_FOR(runs() == 3 && gone(q, next), 5000));
    assert_int_equal(CT_JOB_PENDING, status_of(q, waiting));
    ct_jobs_free(q);
}

static void test_memory_enqueued_job_completes_with_timestamps(void **state)
{
    (void) state;
    enqueued_job_completes_with_timestamps(CT_JOBS_MEMORY);
}
static void test_sqlite_enqueued_job_completes_with_timestamps(void **state)
{
    (void) state;
    enqueued_job_completes_with_timestamps(CT_JOBS_SQLITE);
}
static void test_pg_enqueued_job_completes_with_timestamps(void **state)
{
    (void) state;
    enqueued_job_completes_with_timestamps(CT_JOBS_POSTGRES);
}
static void test_memory_workers_run_jobs_concurrently(void **state)
{
    (void) state;
    workers_run_jobs_concurrently(CT_JOBS_MEMORY);
}
static void test_sqlite_workers_run_jobs_concurrently(void **state)
{
    (void) state;
    workers_run_jobs_concurrently(CT_JOBS_SQLITE);
}
static void test_pg_workers_run_jobs_concurrently(void **state)
{
    (void) state;
    workers_run_jobs_concurrently(CT_JOBS_POSTGRES);
}
static void test_memory_canceled_pending_job_never_runs(void **state)
{
    (void) state;
    canceled_pending_job_never_runs(CT_JOBS_MEMORY);
}
static void test_sqlite_canceled_pending_job_never_runs(void **state)
{
    (void) state;
    canceled_pending_job_never_runs(CT_JOBS_SQLITE);
}
static void test_pg_canceled_pending_job_never_runs(void **state)
{
    (void) state;
    canceled_pending_job_never_runs(CT_JOBS_POSTGRES);
}
static void test_memory_canceled_running_job_sees_its_token_fire(void **state)
{
    (void) state;
    canceled_running_job_sees_its_token_fire(CT_JOBS_MEMORY);
}
static void test_sqlite_canceled_running_job_sees_its_token_fire(void **state)
{
    (void) state;
    canceled_running_job_sees_its_token_fire(CT_JOBS_SQLITE);
}
static void test_pg_canceled_running_job_sees_its_token_fire(void **state)
{
    (void) state;
    canceled_running_job_sees_its_token_fire(CT_JOBS_POSTGRES);
}
static void test_memory_failing_job_is_retried_with_backoff_then_failed(void **state)
{
    (void) state;
    failing_job_is_retried_with_backoff_then_failed(CT_JOBS_MEMORY);
}
static void test_sqlite_failing_job_is_retried_with_backoff_then_failed(void **state)
{
    (void) state;
    failing_job_is_retried_with_backoff_then_failed(CT_JOBS_SQLITE);
}
static void test_pg_failing_job_is_retried_with_backoff_then_failed(void **state)
{
    (void) state;
    failing_job_is_retried_with_backoff_then_failed(CT_JOBS_POSTGRES);
}
static void test_memory_flaky_job_completes_on_its_second_attempt(void **state)
{
    (void) state;
    flaky_job_completes_on_its_second_attempt(CT_JOBS_MEMORY);
}
static void test_sqlite_flaky_job_completes_on_its_second_attempt(void **state)
{
    (void) state;
    flaky_job_completes_on_its_second_attempt(CT_JOBS_SQLITE);
}
static void test_pg_flaky_job_completes_on_its_second_attempt(void **state)
{
    (void) state;
    flaky_job_completes_on_its_second_attempt(CT_JOBS_POSTGRES);
}
static void test_memory_delayed_job_waits_for_its_delay(void **state)
{
    (void) state;
    delayed_job_waits_for_its_delay(CT_JOBS_MEMORY);
}
static void test_sqlite_delayed_job_waits_for_its_delay(void **state)
{
    (void) state;
    delayed_job_waits_for_its_delay(CT_JOBS_SQLITE);
}
static void test_pg_delayed_job_waits_for_its_delay(void **state)
{
    (void) state;
    delayed_job_waits_for_its_delay(CT_JOBS_POSTGRES);
}
static void test_memory_shutdown_puts_running_job_back_and_refuses_enqueue(void **state)
{
    (void) state;
    shutdown_puts_running_job_back_and_refuses_enqueue(CT_JOBS_MEMORY);
}
static void test_sqlite_shutdown_puts_running_job_back_and_refuses_enqueue(void **state)
{
    (void) state;
    shutdown_puts_running_job_back_and_refuses_enqueue(CT_JOBS_SQLITE);
}
static void test_pg_shutdown_puts_running_job_back_and_refuses_enqueue(void **state)
{
    (void) state;
    shutdown_puts_running_job_back_and_refuses_enqueue(CT_JOBS_POSTGRES);
}
static void test_memory_bad_arguments_are_einval(void **state)
{
    (void) state;
    bad_arguments_are_einval(CT_JOBS_MEMORY);
}
static void test_sqlite_bad_arguments_are_einval(void **state)
{
    (void) state;
    bad_arguments_are_einval(CT_JOBS_SQLITE);
}
static void test_pg_bad_arguments_are_einval(void **state)
{
    (void) state;
    bad_arguments_are_einval(CT_JOBS_POSTGRES);
}
static void test_memory_finished_jobs_are_deleted_after_their_retention(void **state)
{
    (void) state;
    finished_jobs_are_deleted_after_their_retention(CT_JOBS_MEMORY);
}
static void test_sqlite_finished_jobs_are_deleted_after_their_retention(void **state)
{
    (void) state;
    finished_jobs_are_deleted_after_their_retention(CT_JOBS_SQLITE);
}
static void test_pg_finished_jobs_are_deleted_after_their_retention(void **state)
{
    (void) state;
    finished_jobs_are_deleted_after_their_retention(CT_JOBS_POSTGRES);
}

/* On SQLite the row is changed from a connection of the test's own. */
static void steal_sqlite_lease(void)
{
    sqlite3 *db;
    assert_int_equal(SQLITE_OK, sqlite3_open(path, &db));
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(SQLITE_OK, sqlite3_exec(db,
                                             "UPDATE ct_jobs SET attempts = 7, lease_token = 4242,"
                                             " lease_owner = 'other' WHERE status = 1",
                                             NULL, NULL, NULL));
    sqlite3_close(db);
}

static void test_sqlite_worker_that_lost_its_lease_is_canceled_and_changes_nothing(void **state)
{
    (void) state;
    worker_that_lost_its_lease(CT_JOBS_SQLITE, steal_sqlite_lease);
}

/* Out of memory: every allocation of creating a memory queue, starting it, enqueueing, reading,
 * canceling and stopping is failed in turn; each failing run returns -ENOMEM and leaks nothing. */
static int oom_scenario(void *arg)
{
    (void) arg;
    ct_jobs_t *q;
    int rc = ct_jobs_new(
        &q, &(ct_jobs_options_t){.backend = CT_JOBS_MEMORY, .handler = handler, .workers = 1});
    if (rc < 0)
        return rc;
    int64_t a = 0, b = 0;
    ct_job_info_t i;
    if ((rc = ct_jobs_enqueue(q, "ok", "payload", NULL, &a)) < 0 ||
        (rc = ct_jobs_enqueue(q, "ok", "later", &(ct_job_options_t){.delay_ms = 60000}, &b)) < 0 ||
        (rc = ct_jobs_get(q, a, &i)) < 0 || (rc = ct_jobs_cancel(q, b)) < 0)
        goto out;
    rc = ct_jobs_start(q, NULL);
out:
    ct_jobs_free(q);
    return rc;
}

static void stop_timers(void *unused, int rc)
{
    (void) unused;
    (void) rc;
    ct_timers_stop(); /* the heartbeat's prune arms a timer: the heap is freed once empty */
}

static void test_memory_every_allocation_failure_returns_enomem_and_leaks_nothing(void **state)
{
    (void) state;
    assert_true(ct_test_alloc_torture(oom_scenario, stop_timers, NULL) > 5);
}

/* ---- ct_every -------------------------------------------------------------------------------- */

struct tick {
    int n;
    ct_source_t *stop;
    int stop_at;
    int fail_at;
};

static int on_tick(void *arg, const ct_token_t *tok)
{
    (void) tok;
    struct tick *t = arg;
    if (++t->n == t->stop_at)
        ct_source_cancel(t->stop, CT_SHUTDOWN, "enough");
    return t->n == t->fail_at ? -EIO : 0;
}

/* The periodic worker runs its body, waits the interval, runs again, and ends as soon as the
 * token fires (here from the third call: the wait after it returns at once). */
static void test_every_runs_until_the_token_fires(void **state)
{
    (void) state;
    struct tick t = {.stop_at = 3};
    assert_int_equal(0, ct_source_new(&t.stop));
    int64_t t0 = ct_test_now_ms();
    assert_int_equal(-ECANCELED, ct_every(50, on_tick, &t, ct_source_token(t.stop)));
    int64_t took = ct_test_now_ms() - t0;
    assert_int_equal(3, t.n);
    assert_true(took >= 100); /* two intervals between three calls */
    assert_true(took < 100 + 2000 * ct_test_scale());
    ct_source_free(t.stop);
}

/* A long interval does not delay the end: the wait is canceled, not finished. */
static void test_every_stops_during_its_delay(void **state)
{
    (void) state;
    struct tick t = {.stop_at = 0};
    assert_int_equal(0, ct_source_new(&t.stop));
    assert_int_equal(0, ct_source_cancel_after(t.stop, 100));
    int64_t t0 = ct_test_now_ms();
    assert_int_equal(-ECANCELED, ct_every(60000, on_tick, &t, ct_source_token(t.stop)));
    assert_true(ct_test_now_ms() - t0 < 2000 * ct_test_scale());
    assert_int_equal(1, t.n);
    ct_source_free(t.stop);
}

static void test_every_ends_with_the_body_error_and_checks_arguments(void **state)
{
    (void) state;
    struct tick t = {.fail_at = 2};
    assert_int_equal(0, ct_source_new(&t.stop));
    assert_int_equal(-EIO, ct_every(0, on_tick, &t, ct_source_token(t.stop)));
    assert_int_equal(2, t.n);
    assert_int_equal(-EINVAL, ct_every(-1, on_tick, &t, NULL));
    assert_int_equal(-EINVAL, ct_every(10, NULL, &t, NULL));
    ct_source_free(t.stop);
}

#define BOTH_TESTS(name)                                                                           \
    cmocka_unit_test_setup_teardown(test_memory_##name, setup, teardown),                          \
        cmocka_unit_test_setup_teardown(test_sqlite_##name, setup, teardown),                      \
        cmocka_unit_test_setup_teardown(test_pg_##name, setup_pg, teardown_pg)

CT_TEST_MAIN(
    BOTH_TESTS(enqueued_job_completes_with_timestamps), BOTH_TESTS(workers_run_jobs_concurrently),
    BOTH_TESTS(canceled_pending_job_never_runs),
    BOTH_TESTS(canceled_running_job_sees_its_token_fire),
    BOTH_TESTS(failing_job_is_retried_with_backoff_then_failed),
    BOTH_TESTS(flaky_job_completes_on_its_second_attempt),
    BOTH_TESTS(delayed_job_waits_for_its_delay),
    BOTH_TESTS(shutdown_puts_running_job_back_and_refuses_enqueue),
    BOTH_TESTS(bad_arguments_are_einval),
    BOTH_TESTS(finished_jobs_are_deleted_after_their_retention),
    cmocka_unit_test_setup_teardown(
        test_sqlite_worker_that_lost_its_lease_is_canceled_and_changes_nothing, setup, teardown),
    cmocka_unit_test(test_memory_every_allocation_failure_returns_enomem_and_leaks_nothing),
    cmocka_unit_test(test_every_runs_until_the_token_fires),
    cmocka_unit_test(test_every_stops_during_its_delay),
    cmocka_unit_test(test_every_ends_with_the_body_error_and_checks_arguments))
