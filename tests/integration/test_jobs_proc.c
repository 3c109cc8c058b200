/* ct-jobs on SQLite and on PostgreSQL with real worker processes (tests/integration/jobs_prog.c:
 * ct-host + ct-jobs) and real signals: SIGTERM with jobs running, SIGKILL mid-job and the lease
 * that brings the job back, two processes on one queue, cancel from another process. The test
 * process opens the same file (or database schema) with a queue of its own (never started) to
 * enqueue, read and cancel. Each behaviour runs on both (test_* on SQLite, test_pg_* on the
 * `pg` fixture's server, in a schema of the test's own). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ct/jobs.h"
#include "ct/pg.h"
#include "ct/wait.h"
#include "proc_util.h"

#ifndef CT_JOBS_PROG
#error "CT_JOBS_PROG must name the worker program"
#endif

static char dir[64], path[96];
static int use_pg;                     /* this test runs on PostgreSQL */
static char schema[32], conninfo[512]; /* its schema, and the conninfo that selects it */

static int setup(void **state)
{
    (void) state;
    snprintf(dir, sizeof(dir), "/tmp/ct-jobs-proc-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jobs.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void) state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void admin_exec(const char *sql)
{
    ct_pg_t *c;
    assert_int_equal(0, ct_pg_connect(&c, ct_test_pg_conninfo(), NULL, ct_deadline_after(10000)));
    int rc = ct_pg_exec(c, sql, NULL);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", sql, ct_pg_errmsg(c));
    assert_int_equal(0, rc);
    ct_pg_close(c);
}

static int setup_pg(void **state)
{
    setup(state);
    use_pg = 1;
    snprintf(schema, sizeof(schema), "ct_jobs_p%d", (int) getpid());
    snprintf(conninfo, sizeof(conninfo), "%s options=-csearch_path=%s", ct_test_pg_conninfo(),
             schema);
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema,
             schema);
    admin_exec(sql);
    return 0;
}

static int teardown_pg(void **state)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    admin_exec(sql);
    return teardown(state);
}

static int never(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    (void) job;
    (void) tok;
    return -EIO; /* the test's queue never starts workers */
}

static ct_jobs_t *test_queue(void)
{
    ct_jobs_t *q;
    assert_int_equal(0, ct_jobs_new(&q, &(ct_jobs_options_t){.backend = use_pg ? CT_JOBS_POSTGRES
                                                                               : CT_JOBS_SQLITE,
                                                             .path = path,
                                                             .conninfo = conninfo,
                                                             .handler = never}));
    return q;
}

static ct_job_info_t info(ct_jobs_t *q, int64_t id)
{
    ct_job_info_t i;
    assert_int_equal(0, ct_jobs_get(q, id, &i));
    return i;
}

/* Start the worker program on the test's file (or schema) with up to 6 key=value options. */
static void start_worker(struct proc *p, const char *a, const char *b, const char *c, const char *d,
                         const char *e, const char *f)
{
    char *file[] = {CT_JOBS_PROG, path,       (char *) a, (char *) b, (char *) c,
                    (char *) d,   (char *) e, (char *) f, NULL};
    char *pg[] = {CT_JOBS_PROG, "--pg",     conninfo,   (char *) a, (char *) b,
                  (char *) c,   (char *) d, (char *) e, (char *) f, NULL};
    proc_start(p, use_pg ? pg : file, NULL);
}

static char *fmt(char *buf, size_t n, const char *key, long long v)
{
    snprintf(buf, n, "%s=%lld", key, v);
    return buf;
}

/* SIGTERM while 10 jobs run: every job's token fires, the process exits well within the shutdown
 * timeout, an enqueue during the shutdown gets -ESHUTDOWN, and no job is lost: all 10 are
 * pending again with the interrupted attempt not counted. A second process then completes each
 * of them on its first counted attempt. Checked: with the release not giving the attempt back,
 * this fails (attempts 1 after the SIGTERM). */
static void sigterm_with_ten_jobs_running_loses_none_restart_completes_them(void)
{
    ct_jobs_t *q = test_queue();
    int64_t ids[10];
    for (int i = 0; i < 10; i++)
        assert_int_equal(0, ct_jobs_enqueue(q, "sleep", "60000", NULL, &ids[i]));
    struct proc p;
    start_worker(&p, "workers=10", "timeout=5000", NULL, NULL, NULL, NULL);
    assert_true(CT_WAIT_FOR((proc_read(&p, 10), proc_count(&p, "run id=") == 10), 5000));
    for (int i = 0; i < 10; i++) {
        ct_job_info_t j = info(q, ids[i]);
        assert_int_equal(CT_JOB_RUNNING, j.status);
        assert_int_equal(1, j.attempts);
    }
    int64_t t0 = ct_test_now_ms();
    kill(p.pid, SIGTERM);
    int st = proc_wait(&p, 10000);
    int64_t took = ct_test_now_ms() - t0;
    assert_true(WIFEXITED(st));
    assert_int_equal(0, WEXITSTATUS(st));
    assert_true(took < 5000); /* the shutdown timeout: nothing was abandoned */
    if (proc_count(&p, "reason=shutdown detail=SIGTERM") != 10)
        fprintf(stderr, "output:\n%s\n", p.buf);
    assert_int_equal(10, proc_count(&p, "reason=shutdown detail=SIGTERM"));
    char want[64];
    snprintf(want, sizeof(want), "enqueue during shutdown rc=%d", -ESHUTDOWN);
    assert_true(proc_pos(&p, want) >= 0);
    for (int i = 0; i < 10; i++) {
        ct_job_info_t j = info(q, ids[i]);
        assert_int_equal(CT_JOB_PENDING, j.status);
        assert_int_equal(0, j.attempts); /* the interruption did not count */
    }
    proc_close(&p);

    struct proc r;
    start_worker(&r, "workers=4", "fast=1", NULL, NULL, NULL, NULL);
    for (int i = 0; i < 10; i++)
        assert_true(CT_WAIT_FOR(info(q, ids[i]).status == CT_JOB_COMPLETED, 5000));
    for (int i = 0; i < 10; i++)
        assert_int_equal(1, info(q, ids[i]).attempts);
    kill(r.pid, SIGTERM);
    st = proc_wait(&r, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(10, proc_count(&r, "done id="));
    proc_close(&r);
    ct_jobs_free(q);
}

/* SIGKILL mid-job: nobody releases the job, so it stays running under the dead process's lease.
 * A second process polling the file every 50 ms must not take it while the lease holds (checked
 * at half the lease after the kill), and takes it as attempt 2 once the lease has expired. The
 * same second process ran beside the first one before the kill: a healthy heartbeat kept it
 * from taking the job then too. Checked: with the claim ignoring lease_expires, this fails (the
 * second process takes the job at once). */
static void sigkill_mid_job_is_recovered_after_the_lease_expires_and_not_before(void)
{
    int64_t lease = 2000 * ct_test_scale(), beat = 300 * ct_test_scale();
    char l[32], h[32];
    fmt(l, sizeof(l), "lease", lease);
    fmt(h, sizeof(h), "heartbeat", beat);
    ct_jobs_t *q = test_queue();
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "sleep", "60000", NULL, &id));
    struct proc a, b;
    start_worker(&a, "workers=1", l, h, NULL, NULL, NULL);
    assert_true(proc_expect(&a, "run id=1 attempt=1", 5000));
    start_worker(&b, "workers=2", l, h, "poll=50", "fast=1", NULL);
    assert_true(proc_expect(&b, "service(s) started", 5000));
    /* Three lease periods with both running: A's heartbeat keeps the job. */
    int64_t until = ct_test_now_ms() + 3 * lease;
    while (ct_test_now_ms() < until)
        proc_read(&b, 50);
    assert_int_equal(CT_JOB_RUNNING, info(q, id).status);
    assert_int_equal(0, proc_count(&b, "run id=1 "));

    kill(a.pid, SIGKILL);
    int64_t killed = ct_test_now_ms();
    proc_wait(&a, 5000);
    while (ct_test_now_ms() < killed + lease / 2)
        proc_read(&b, 20);
    ct_job_info_t j = info(q, id);
    assert_int_equal(CT_JOB_RUNNING, j.status); /* still the dead process's lease */
    assert_int_equal(1, j.attempts);
    assert_int_equal(0, proc_count(&b, "run id=1 "));

    assert_true(CT_WAIT_FOR(info(q, id).status == CT_JOB_COMPLETED, 10000));
    int64_t recovered = ct_test_now_ms() - killed;
    assert_true(recovered >= lease - beat); /* the lease was renewed at most `beat` before */
    assert_int_equal(2, info(q, id).attempts);
    assert_true(proc_expect(&b, "run id=1 attempt=2", 2000));
    kill(b.pid, SIGTERM);
    int st = proc_wait(&b, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    proc_close(&a);
    proc_close(&b);
    ct_jobs_free(q);
}

/* Two processes, four workers each, 300 short jobs on one file: every job runs exactly once
 * (BEGIN IMMEDIATE claims), none is lost, all complete on attempt 1. */
static void two_processes_never_run_the_same_job_attempt_twice(void)
{
    enum { N = 300 };
    ct_jobs_t *q = test_queue();
    int64_t first = 0, last = 0;
    for (int i = 0; i < N; i++) {
        int64_t id;
        assert_int_equal(0, ct_jobs_enqueue(q, "sleep", "1", NULL, &id));
        if (!first)
            first = id;
        last = id;
    }
    struct proc a, b;
    start_worker(&a, "workers=4", "poll=20", NULL, NULL, NULL, NULL);
    start_worker(&b, "workers=4", "poll=20", NULL, NULL, NULL, NULL);
    assert_true(CT_WAIT_FOR((proc_read(&a, 5), proc_read(&b, 5),
                             proc_count(&a, "done id=") + proc_count(&b, "done id=") >= N),
                            30000));
    kill(a.pid, SIGTERM);
    kill(b.pid, SIGTERM);
    int sa = proc_wait(&a, 10000), sb = proc_wait(&b, 10000);
    assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    int total = proc_count(&a, "run id=") + proc_count(&b, "run id=");
    assert_int_equal(N, total);
    for (int64_t id = first; id <= last; id++) {
        char needle[48];
        snprintf(needle, sizeof(needle), "run id=%lld ", (long long) id);
        assert_int_equal(1, proc_count(&a, needle) + proc_count(&b, needle));
        ct_job_info_t j = info(q, id);
        assert_int_equal(CT_JOB_COMPLETED, j.status);
        assert_int_equal(1, j.attempts);
    }
    printf("process A ran %d jobs, process B %d\n", proc_count(&a, "run id="),
           proc_count(&b, "run id="));
    proc_close(&a);
    proc_close(&b);
    ct_jobs_free(q);
}

/* A long job (three leases long) with a healthy heartbeat, and a second process polling the
 * file all along: it runs once, on attempt 1, and completes. Checked: with the claim ignoring
 * lease_expires, the two processes take it from each other and it never completes. */
static void long_job_with_healthy_heartbeat_runs_once(void)
{
    int64_t lease = 600 * ct_test_scale();
    char l[32], h[32], payload[32];
    fmt(l, sizeof(l), "lease", lease);
    fmt(h, sizeof(h), "heartbeat", lease / 4);
    snprintf(payload, sizeof(payload), "%lld", (long long) (3 * lease));
    ct_jobs_t *q = test_queue();
    struct proc a, b;
    start_worker(&a, "workers=1", l, h, "poll=20", NULL, NULL);
    start_worker(&b, "workers=1", l, h, "poll=20", NULL, NULL);
    assert_true(proc_expect(&a, "service(s) started", 5000));
    assert_true(proc_expect(&b, "service(s) started", 5000));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "sleep", payload, NULL, &id));
    assert_true(CT_WAIT_FOR(
        (proc_read(&a, 5), proc_read(&b, 5), info(q, id).status == CT_JOB_COMPLETED), 20000));
    assert_int_equal(1, info(q, id).attempts);
    kill(a.pid, SIGTERM);
    kill(b.pid, SIGTERM);
    proc_wait(&a, 10000);
    proc_wait(&b, 10000);
    assert_int_equal(1, proc_count(&a, "run id=") + proc_count(&b, "run id="));
    assert_int_equal(1, proc_count(&a, "done id=") + proc_count(&b, "done id="));
    proc_close(&a);
    proc_close(&b);
    ct_jobs_free(q);
}

/* Cancel by id from another process (the test) of a job running in the worker process: the
 * worker's heartbeat reads the flag and fires the job's token with CT_CANCELED within about one
 * heartbeat; the job ends canceled. A pending job canceled the same way never runs.
 * PostgreSQL: the heartbeat is 10 s (× scale) and the token must fire within 2 s (× scale), which
 * only the NOTIFY can do (the worker's listener waits on it). Checked: with nolisten=1 added to
 * the worker's options, the PostgreSQL variant fails. */
static void cancel_from_another_process_reaches_the_job_within_a_heartbeat(void)
{
    int64_t beat = use_pg ? 10000 * ct_test_scale() : 200;
    int64_t bound = use_pg ? 2000 : 3000;
    char h[32], l[32];
    fmt(h, sizeof(h), "heartbeat", beat);
    fmt(l, sizeof(l), "lease", use_pg ? 3 * beat : 1000);
    ct_jobs_t *q = test_queue();
    int64_t id, later;
    assert_int_equal(0, ct_jobs_enqueue(q, "sleep", "60000", NULL, &id));
    assert_int_equal(
        0, ct_jobs_enqueue(q, "sleep", "1", &(ct_job_options_t){.delay_ms = 60000}, &later));
    struct proc a;
    start_worker(&a, "workers=2", l, h, NULL, NULL, NULL);
    assert_true(proc_expect(&a, "run id=1 attempt=1", 5000));
    int64_t t0 = ct_test_now_ms();
    assert_int_equal(1, ct_jobs_cancel(q, id));
    assert_true(proc_expect(&a, "stopped id=1 reason=canceled detail=canceled by id", bound));
    int64_t took = ct_test_now_ms() - t0;
    printf("cancel from another process reached the job after %lld ms (heartbeat %lld ms)\n",
           (long long) took, (long long) beat);
    assert_true(took < bound * ct_test_scale());
    if (use_pg)
        assert_true(took < beat); /* not the heartbeat: the notification */
    assert_true(CT_WAIT_FOR(info(q, id).status == CT_JOB_CANCELED, 3000));
    assert_int_equal(0, ct_jobs_cancel(q, later));
    assert_int_equal(CT_JOB_CANCELED, info(q, later).status);
    kill(a.pid, SIGTERM);
    int st = proc_wait(&a, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(0, proc_count(&a, "run id=2 "));
    proc_close(&a);
    ct_jobs_free(q);
}

static void test_sigterm_with_ten_jobs_running_loses_none_restart_completes_them(void **state)
{
    (void) state;
    sigterm_with_ten_jobs_running_loses_none_restart_completes_them();
}
static void test_pg_sigterm_with_ten_jobs_running_loses_none_restart_completes_them(void **state)
{
    (void) state;
    sigterm_with_ten_jobs_running_loses_none_restart_completes_them();
}
static void test_sigkill_mid_job_is_recovered_after_the_lease_expires_and_not_before(void **state)
{
    (void) state;
    sigkill_mid_job_is_recovered_after_the_lease_expires_and_not_before();
}
static void test_pg_sigkill_mid_job_is_recovered_after_the_lease_and_not_before(void **state)
{
    (void) state;
    sigkill_mid_job_is_recovered_after_the_lease_expires_and_not_before();
}
static void test_two_processes_never_run_the_same_job_attempt_twice(void **state)
{
    (void) state;
    two_processes_never_run_the_same_job_attempt_twice();
}
static void test_pg_two_processes_never_run_the_same_job_attempt_twice(void **state)
{
    (void) state;
    two_processes_never_run_the_same_job_attempt_twice();
}
static void test_long_job_with_healthy_heartbeat_runs_once(void **state)
{
    (void) state;
    long_job_with_healthy_heartbeat_runs_once();
}
static void test_pg_long_job_with_healthy_heartbeat_runs_once(void **state)
{
    (void) state;
    long_job_with_healthy_heartbeat_runs_once();
}
static void test_cancel_from_another_process_reaches_the_job_within_a_heartbeat(void **state)
{
    (void) state;
    cancel_from_another_process_reaches_the_job_within_a_heartbeat();
}
static void test_pg_cancel_from_another_process_reaches_the_job_by_notify(void **state)
{
    (void) state;
    cancel_from_another_process_reaches_the_job_within_a_heartbeat();
}

#define BOTH_TESTS(name)                                                                           \
    cmocka_unit_test_setup_teardown(test_##name, setup, teardown),                                 \
        cmocka_unit_test_setup_teardown(test_pg_##name, setup_pg, teardown_pg)

CT_TEST_MAIN(
    BOTH_TESTS(sigterm_with_ten_jobs_running_loses_none_restart_completes_them),
    cmocka_unit_test_setup_teardown(
        test_sigkill_mid_job_is_recovered_after_the_lease_expires_and_not_before, setup, teardown),
    cmocka_unit_test_setup_teardown(
        test_pg_sigkill_mid_job_is_recovered_after_the_lease_and_not_before, setup_pg, teardown_pg),
    BOTH_TESTS(two_processes_never_run_the_same_job_attempt_twice),
    BOTH_TESTS(long_job_with_healthy_heartbeat_runs_once),
    cmocka_unit_test_setup_teardown(
        test_cancel_from_another_process_reaches_the_job_within_a_heartbeat, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pg_cancel_from_another_process_reaches_the_job_by_notify,
                                    setup_pg, teardown_pg))
