/* ct-demo's background queue end to end (seed 000's worker, on ct-host and ct-jobs): jobs
 * enqueued over HTTP and processed by the hosted worker, canceled by id, cut off by SIGTERM and
 * completed after a restart, and the periodic heartbeat worker. The real program, real curl,
 * real signals, the queue in a SQLite file of the data directory. */
#define _GNU_SOURCE
#include "demo_util.h"

static char out[1 << 16];

/* The demo's arguments for this build: none (SQLite), or --db on the test PostgreSQL server. */
static const char *const *db_args(void)
{
#ifdef CT_TEST_DEMO_PG
    static char url[256];
    static const char *args[] = {"--db", url, NULL};
    char host[64], user[64], dbname[64];
    int port;
    assert_int_equal(4, sscanf(ct_test_pg_conninfo(), "host=%63s port=%d user=%63s dbname=%63s",
                               host, &port, user, dbname));
    snprintf(url, sizeof(url), "postgresql://%s@%s:%d/%s", user, host, port, dbname);
    return args;
#else
    return NULL;
#endif
}

/* The ids of {"enqueued":[...]}. */
static int ids_of(const char *body, int64_t *ids, int max)
{
    const char *p = strstr(body, "\"enqueued\":[");
    int n = 0;
    if (!p)
        return 0;
    for (p += 12; n < max && *p && *p != ']'; p++)
        if (*p >= '0' && *p <= '9')
            ids[n++] = strtoll(p, (char **) &p, 10);
    return n;
}

static bool job_has(struct demo *d, int64_t id, const char *needle)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/Demo/queue/jobs/%lld", (long long) id);
    return curl(d, out, sizeof(out), "GET", path, NULL) == 0 && strstr(out, needle);
}

static void test_enqueued_jobs_are_processed_in_order(void **state)
{
    struct demo *d = demo_start_in(NULL, db_args());
    assert_int_equal(
        0, curl(d, out, sizeof(out), "POST", "/api/Demo/queue/enqueue?count=3&stepMs=20", NULL));
    int64_t ids[3];
    assert_int_equal(3, ids_of(out, ids, 3));
    for (int i = 0; i < 3; i++)
        assert_true(CT_WAIT_FOR(job_has(d, ids[i], "\"status\":\"completed\""), 10000));
    assert_true(job_has(d, ids[0], "\"fileName\":\"DEMO_01.dat\""));
    assert_true(job_has(d, ids[2], "\"attempts\":1,"));
    assert_true(logged(d, "Background worker started."));
    assert_true(logged(d, "Processing DEMO_01.dat..."));
    assert_true(logged(d, "Job DEMO_03.dat done."));
    /* Bounds: 400 naming the parameter; unknown job: 404. */
    assert_int_equal(0,
                     curl(d, out, sizeof(out), "POST", "/api/Demo/queue/enqueue?count=101", NULL));
    assert_non_null(strstr(out, "\"parameter\":\"count\""));
    assert_int_equal(
        0, curl(d, out, sizeof(out), "GET", "/api/Demo/queue/jobs/999999", "-w %{http_code}"));
    assert_non_null(strstr(out, "}404"));
    assert_int_equal(0, demo_stop(d));
}

static void test_cancel_by_id_pending_never_runs_running_stops(void **state)
{
    struct demo *d = demo_start_in(NULL, db_args());
    /* One worker: the first job runs (5 x 2 s), the second waits. */
    assert_int_equal(
        0, curl(d, out, sizeof(out), "POST", "/api/Demo/queue/enqueue?count=2&stepMs=2000", NULL));
    int64_t ids[2];
    assert_int_equal(2, ids_of(out, ids, 2));
    assert_true(CT_WAIT_FOR(logged(d, "Processing DEMO_01.dat..."), 10000));
    char path[80];
    snprintf(path, sizeof(path), "/api/Demo/queue/jobs/%lld/cancel", (long long) ids[1]);
    assert_int_equal(0, curl(d, out, sizeof(out), "POST", path, "-w %{http_code}"));
    assert_non_null(strstr(out, "\"result\":\"canceled\"}200"));
    snprintf(path, sizeof(path), "/api/Demo/queue/jobs/%lld/cancel", (long long) ids[0]);
    int64_t t0 = ct_now_ms();
    assert_int_equal(0, curl(d, out, sizeof(out), "POST", path, "-w %{http_code}"));
    assert_non_null(strstr(out, "\"result\":\"cancel_requested\"}202"));
    assert_true(CT_WAIT_FOR(logged(d, "Job DEMO_01.dat canceled. (canceled"), 5000));
    assert_true(ct_now_ms() - t0 < 2000 * ct_test_scale()); /* not the 10 s of the job */
    assert_true(CT_WAIT_FOR(job_has(d, ids[0], "\"status\":\"canceled\""), 5000));
    assert_true(job_has(d, ids[1], "\"status\":\"canceled\""));
    assert_false(logged(d, "Processing DEMO_02.dat"));
    /* Final: 409. */
    assert_int_equal(0, curl(d, out, sizeof(out), "POST", path, "-w %{http_code}"));
    assert_non_null(strstr(out, "}409"));
    assert_int_equal(0, demo_stop(d));
}

static void test_sigterm_requeues_the_running_job_and_a_restart_completes_all(void **state)
{
    struct demo *d = demo_start_in(NULL, db_args());
    assert_int_equal(
        0, curl(d, out, sizeof(out), "POST", "/api/Demo/queue/enqueue?count=3&stepMs=300", NULL));
    int64_t ids[3];
    assert_int_equal(3, ids_of(out, ids, 3));
    assert_true(CT_WAIT_FOR(logged(d, "Processing DEMO_01.dat..."), 10000));
    int64_t t0 = ct_now_ms();
    demo_sigterm(d);
    /* The seed's lines, at once, not after the job's 1.5 s. */
    assert_true(CT_WAIT_FOR(logged(d, "demo stopped"), 10000));
    assert_true(ct_now_ms() - t0 < 1400 * ct_test_scale());
    assert_true(logged(d, "Job DEMO_01.dat canceled. (shutdown: SIGTERM)"));
    assert_true(logged(d, "Worker stopping (host shutdown)."));
    assert_false(logged(d, "Job DEMO_01.dat done."));
    char dir[64];
    assert_int_equal(0, demo_wait_exit(d, dir, sizeof(dir)));

    /* The next start finds the interrupted job pending and runs all three. */
    d = demo_start_in(dir, db_args());
    for (int i = 0; i < 3; i++)
        assert_true(CT_WAIT_FOR(job_has(d, ids[i], "\"status\":\"completed\""), 15000));
    /* The interrupted attempt did not count. */
    assert_true(job_has(d, ids[0], "\"attempts\":1,"));
    assert_true(logged(d, "Job DEMO_01.dat done."));
    assert_int_equal(0, demo_stop(d));
}

static void test_heartbeat_worker_ticks_and_stops_with_the_host(void **state)
{
    const char *extra[] = {"--heartbeat-ms", "100", NULL};
    struct demo *d = demo_start_in(NULL, extra);
    assert_true(CT_WAIT_FOR(logged(d, "heartbeat: ") &&
                                strstr(strstr(d->log, "heartbeat: ") + 1, "heartbeat: "),
                            10000));
    int64_t t0 = ct_now_ms();
    assert_int_equal(0, demo_stop(d));
    assert_true(ct_now_ms() - t0 < 3000 * ct_test_scale());
}

CT_TEST_MAIN(cmocka_unit_test(test_enqueued_jobs_are_processed_in_order),
             cmocka_unit_test(test_cancel_by_id_pending_never_runs_running_stops),
             cmocka_unit_test(test_sigterm_requeues_the_running_job_and_a_restart_completes_all),
             cmocka_unit_test(test_heartbeat_worker_ticks_and_stops_with_the_host))
