/* ct-jobs on PostgreSQL only, in one process, against the `pg` CTest fixture's server: a lease lost
 * to another worker, leases and due times on the server's clock, cancels delivered by
 * LISTEN/NOTIFY (and by the catch-up query after a reconnect, and by the heartbeat without a
 * listener), concurrent first use of a schema, and a stop while claims wait on a lock. The
 * contract every backend keeps is in test_jobs.c. */
#define _GNU_SOURCE
#include "jobs_util.h"

/* jobs_util.h's lost lease, on PostgreSQL: the row is changed from another connection. */
static void steal_pg_lease(void)
{
    admin_exec("UPDATE %s.ct_jobs SET attempts = 7, lease_token = 4242, lease_owner = 'other'"
               " WHERE status = 1",
               schema);
}

static void test_pg_worker_that_lost_its_lease_is_canceled_and_changes_nothing(void **state)
{
    (void) state;
    worker_that_lost_its_lease(CT_JOBS_POSTGRES, steal_pg_lease);
}

/* Leases and due times are on the server's clock: a worker whose clock is an hour behind (here
 * the backend is called directly with such a `now`) still enqueues a job due now and claims it
 * with a lease that ends lease_ms after the server's now. Checked: storing the `now` and `run_at`
 * the interface passes (the worker's clock) makes enqueued_at an hour off and this fails. */
static int64_t server_now_ms(void)
{
    ct_pg_t *c = admin();
    PGresult *r;
    assert_int_equal(0, ct_pg_query(c, &r, "SELECT (extract(epoch from now()) * 1000)::bigint", 0,
                                    NULL, NULL, NULL));
    int64_t v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    ct_pg_close(c);
    return v;
}

static void test_pg_leases_and_due_times_use_the_server_clock(void **state)
{
    (void) state;
    struct ct__jobs_backend *be;
    assert_int_equal(0, ct__jobs_pg_new(&be, conninfo, 1));
    int64_t behind = ct__jobs_wall_ms() - 3600 * 1000;
    int64_t id, t0 = server_now_ms();
    assert_int_equal(0, be->ops->enqueue(be, "ok", "", 3, behind, behind + 100, &id));
    ct_job_info_t i;
    assert_int_equal(0, be->ops->get(be, id, &i));
    int64_t t1 = server_now_ms();
    assert_true(i.enqueued_at_ms >= t0 && i.enqueued_at_ms <= t1);
    assert_int_equal(i.enqueued_at_ms + 100, i.run_at_ms);
    struct ct__jobs_claim c = {0};
    assert_int_equal(0, be->ops->claim(be, "w", 60000, &c, NULL, ct_deadline_after(5000)));
    assert_int_equal(id, c.id);
    ct_pg_t *a = admin();
    PGresult *r;
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT lease_expires, started_at FROM %s.ct_jobs WHERE id = %lld",
             schema, (long long) id);
    assert_int_equal(0, ct_pg_query(a, &r, sql, 0, NULL, NULL, NULL));
    assert_int_equal(atoll(PQgetvalue(r, 0, 1)) + 60000, atoll(PQgetvalue(r, 0, 0)));
    assert_true(atoll(PQgetvalue(r, 0, 1)) >= t1);
    PQclear(r);
    ct_pg_close(a);
    assert_int_equal(0, be->ops->renew(be, &c, 60000));
    assert_int_equal(0, be->ops->finish(be, &c, CT__JOB_DONE, 0, NULL));
    assert_int_equal(-ESTALE, be->ops->finish(be, &c, CT__JOB_DONE, 0, NULL));
    ct__jobs_claim_clear(&c);
    be->ops->free(be);
}

/* The queue's log lines, for the listener's state. */
static struct {
    pthread_mutex_t mu;
    char text[8192];
} logbuf = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void capture(void *arg, const char *line)
{
    (void) arg;
    pthread_mutex_lock(&logbuf.mu);
    size_t n = strlen(logbuf.text);
    snprintf(logbuf.text + n, sizeof(logbuf.text) - n, "%s\n", line);
    pthread_mutex_unlock(&logbuf.mu);
}

static int logged(const char *needle)
{
    pthread_mutex_lock(&logbuf.mu);
    int n = 0;
    for (const char *at = logbuf.text; (at = strstr(at, needle)); at += strlen(needle))
        n++;
    pthread_mutex_unlock(&logbuf.mu);
    return n;
}

static int canceled_by_id(void)
{
    return lease_detail_is("canceled by id");
}

/* A cancel from another queue (its own connections, as another process would have) reaches the
 * running job through LISTEN/NOTIFY, long before the first heartbeat (10 s) could read the flag.
 * Checked: with ct__jobs_pg_no_listener set, this fails (the token fires at the heartbeat). */
static void test_pg_cancel_from_another_queue_arrives_by_notify_before_any_heartbeat(void **state)
{
    (void) state;
    ct_jobs_t *q =
        open_q(CT_JOBS_POSTGRES, 1,
               &(ct_jobs_options_t){.lease_ms = 30000, .heartbeat_ms = 10000, .log = capture});
    ct_jobs_t *other = open_q(CT_JOBS_POSTGRES, 1, NULL); /* never started */
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &id));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_true(CT_WAIT_FOR(logged("cancel listener connected") == 1, 5000));
    int64_t t0 = ct_test_now_ms();
    assert_int_equal(1, ct_jobs_cancel(other, id));
    assert_true(CT_WAIT_FOR(canceled_by_id(), 2000));
    int64_t took = ct_test_now_ms() - t0;
    printf("cancel from another queue reached the job after %lld ms (heartbeat 10000 ms)\n",
           (long long) took);
    assert_true(took < 5000); /* half the heartbeat, however slow the machine */
    assert_int_equal(CT_CANCELED, g.last_reason);
    assert_true(CT_WAIT_FOR(status_of(other, id) == CT_JOB_CANCELED, 3000));
    ct_jobs_free(q);
    ct_jobs_free(other);
}

/* River's bug #1358: a notification sent while the listener is reconnecting is lost for good.
 * Here the listener's backend is terminated and its role may not connect again; the cancel is
 * made while it is down (its NOTIFY goes nowhere); then connections are allowed again. The token
 * still fires well before the 10 s heartbeat: on reconnecting, the listener asks for the running
 * jobs whose cancel was requested. Checked: without that query (listen_connect in
 * src/jobs/pg_listen.c), this fails (the token fires only at the heartbeat). */
static void test_pg_cancel_made_while_the_listener_was_down_arrives_when_it_reconnects(void **state)
{
    (void) state;
    /* The queue connects as a role of its own, so that only its connections can be refused. */
    admin_exec("CREATE ROLE %s LOGIN; GRANT ALL ON SCHEMA %s TO %s", schema, schema, schema);
    char base[512];
    snprintf(base, sizeof(base), "%s", conninfo);
    snprintf(conninfo, sizeof(conninfo), "%.400s user=%s", base, schema);
    ct_jobs_t *q =
        open_q(CT_JOBS_POSTGRES, 1,
               &(ct_jobs_options_t){.lease_ms = 30000, .heartbeat_ms = 10000, .log = capture});
    snprintf(conninfo, sizeof(conninfo), "%s", base);
    ct_jobs_t *other = open_q(CT_JOBS_POSTGRES, 1, NULL);
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &id));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_true(CT_WAIT_FOR(logged("cancel listener connected") == 1, 5000));

    admin_exec("ALTER ROLE %s CONNECTION LIMIT 0", schema);
    ct_pg_t *c = admin();
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE application_name = 'ct-jobs listener %s'",
             schema);
    PGresult *r;
    assert_int_equal(0, ct_pg_query(c, &r, sql, 0, NULL, NULL, NULL));
    assert_string_equal("1", PQgetvalue(r, 0, 0));
    PQclear(r);
    ct_pg_close(c);
    /* Down, and refused at least once since: the cancel below is made while it is not listening. */
    assert_true(CT_WAIT_FOR(logged("reconnecting in") >= 2, 5000));
    assert_int_equal(1, ct_jobs_cancel(other, id));
    int64_t t0 = ct_test_now_ms();
    assert_false(canceled_by_id());
    admin_exec("ALTER ROLE %s CONNECTION LIMIT -1", schema);

    assert_true(CT_WAIT_FOR(canceled_by_id(), 4000));
    int64_t took = ct_test_now_ms() - t0;
    printf("cancel made while the listener was down reached the job %lld ms after connections "
           "were allowed again (heartbeat 10000 ms)\n",
           (long long) took);
    assert_true(took < 5000);
    /* The catch-up query fires the token before the listener logs that it is back. */
    assert_true(CT_WAIT_FOR(logged("cancel listener reconnected") == 1, 2000));
    assert_true(CT_WAIT_FOR(status_of(other, id) == CT_JOB_CANCELED, 3000));
    ct_jobs_free(q);
    ct_jobs_free(other);
}

/* Without any listener, the heartbeat's renewal still reads the flag: the cancel arrives within
 * about one heartbeat (here 300 ms), as with SQLite. Checked: with renew not reporting
 * cancel_requested (SQL_RENEW returning 0), this fails. */
static void test_pg_without_a_listener_the_heartbeat_delivers_the_cancel(void **state)
{
    (void) state;
    ct__jobs_pg_no_listener = 1;
    ct_jobs_t *q =
        open_q(CT_JOBS_POSTGRES, 1, &(ct_jobs_options_t){.lease_ms = 3000, .heartbeat_ms = 300});
    ct_jobs_t *other = open_q(CT_JOBS_POSTGRES, 1, NULL);
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "block", "", NULL, &id));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    assert_int_equal(1, ct_jobs_cancel(other, id));
    assert_true(CT_WAIT_FOR(canceled_by_id(), 3000));
    assert_true(CT_WAIT_FOR(status_of(other, id) == CT_JOB_CANCELED, 3000));
    ct_jobs_free(q);
    ct_jobs_free(other);
}

/* Eight queues created at once on a fresh schema all succeed: the DDL runs under an advisory
 * lock. Checked: without pg_advisory_xact_lock in SCHEMA (src/jobs/pg.c), some ct_jobs_new
 * fails with -EIO (a unique violation in pg_type) in most runs. */
struct first_use {
    ct_sem_t *go;
    int rc;
};

static void *first_use_thread(void *arg)
{
    struct first_use *f = arg;
    ct_sem_wait(f->go, NULL, -1);
    ct_jobs_t *q;
    f->rc = ct_jobs_new(&q, &(ct_jobs_options_t){.backend = CT_JOBS_POSTGRES,
                                                 .conninfo = conninfo,
                                                 .handler = handler,
                                                 .workers = 1});
    if (f->rc == 0)
        ct_jobs_free(q);
    return NULL;
}

static void test_pg_concurrent_first_use_of_a_schema_does_not_fail(void **state)
{
    (void) state;
    enum { N = 8, ROUNDS = 5 };
    char base[512];
    snprintf(base, sizeof(base), "%s", conninfo);
    for (int round = 0; round < ROUNDS; round++) {
        admin_exec("DROP SCHEMA IF EXISTS %s_%d CASCADE; CREATE SCHEMA %s_%d", schema, round,
                   schema, round);
        snprintf(conninfo, sizeof(conninfo), "%.400s_%d", base, round);
        ct_sem_t go;
        ct_sem_init(&go, 0);
        struct first_use f[N];
        ct_test_thread_t *t[N];
        for (int i = 0; i < N; i++) {
            f[i] = (struct first_use){.go = &go};
            t[i] = ct_test_thread_start(first_use_thread, &f[i]);
        }
        for (int i = 0; i < N; i++)
            ct_sem_post(&go);
        for (int i = 0; i < N; i++)
            ct_test_thread_join(t[i]);
        for (int i = 0; i < N; i++)
            assert_int_equal(0, f[i].rc);
        ct_sem_destroy(&go);
        admin_exec("DROP SCHEMA %s_%d CASCADE", schema, round);
    }
    snprintf(conninfo, sizeof(conninfo), "%s", base);
}

/* A stopping worker never hangs in a query: with the table locked by another session, the
 * workers' claims wait in the server; ct_jobs_stop still returns at once, because each claim
 * runs with the worker's token and ct-pg cancels it on the server. Checked: with the claim
 * query run without a token, ct_jobs_stop waits for the lock (the test times out). */
static void test_pg_stop_does_not_wait_for_a_claim_blocked_in_the_server(void **state)
{
    (void) state;
    ct_jobs_t *q = open_q(CT_JOBS_POSTGRES, 2, &(ct_jobs_options_t){.poll_ms = 20});
    ct_pg_t *locker = admin();
    char sql[256];
    snprintf(sql, sizeof(sql), "BEGIN; LOCK TABLE %s.ct_jobs IN ACCESS EXCLUSIVE MODE", schema);
    assert_int_equal(0, ct_pg_exec(locker, sql, NULL));
    assert_int_equal(0, ct_jobs_start(q, NULL));
    ct_pg_t *c = admin();
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
             " AND query LIKE '%%lease_owner = $1%%' AND backend_type = 'client backend'");
    int waiting = 0;
    for (int i = 0; i < 1000 && waiting < 2; i++) {
        PGresult *r;
        assert_int_equal(0, ct_pg_query(c, &r, sql, 0, NULL, NULL, NULL));
        waiting = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (waiting < 2)
            ct_sleep_ms(10, NULL); /* polling the server's view, not synchronising with it */
    }
    assert_true(waiting >= 2);
    int64_t t0 = ct_test_now_ms();
    assert_int_equal(0, ct_jobs_stop(q, NULL));
    int64_t took = ct_test_now_ms() - t0;
    printf("ct_jobs_stop with both claims blocked on a lock: %lld ms\n", (long long) took);
    assert_true(took < 2000 * ct_test_scale());
    assert_int_equal(0, ct_pg_exec(locker, "ROLLBACK", NULL));
    ct_pg_close(locker);
    ct_pg_close(c);
    ct_jobs_free(q);
}

CT_TEST_MAIN(
    cmocka_unit_test_setup_teardown(
        test_pg_worker_that_lost_its_lease_is_canceled_and_changes_nothing, setup_pg, teardown_pg),
    cmocka_unit_test_setup_teardown(test_pg_leases_and_due_times_use_the_server_clock, setup_pg,
                                    teardown_pg),
    cmocka_unit_test_setup_teardown(
        test_pg_cancel_from_another_queue_arrives_by_notify_before_any_heartbeat, setup_pg,
        teardown_pg),
    cmocka_unit_test_setup_teardown(
        test_pg_cancel_made_while_the_listener_was_down_arrives_when_it_reconnects, setup_pg,
        teardown_pg),
    cmocka_unit_test_setup_teardown(test_pg_without_a_listener_the_heartbeat_delivers_the_cancel,
                                    setup_pg, teardown_pg),
    cmocka_unit_test_setup_teardown(test_pg_concurrent_first_use_of_a_schema_does_not_fail,
                                    setup_pg, teardown_pg),
    cmocka_unit_test_setup_teardown(test_pg_stop_does_not_wait_for_a_claim_blocked_in_the_server,
                                    setup_pg, teardown_pg))
