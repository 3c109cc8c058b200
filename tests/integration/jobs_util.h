/* What test_jobs.c (the contract, per backend) and test_jobs_pg.c (PostgreSQL only) share: the
 * handler and its shared state, a temporary directory for SQLite, a schema of its own per
 * PostgreSQL test (named after the pid, selected with options=-csearch_path), and small readers.
 * Handlers block on semaphores, never on sleeps. */
#ifndef CT_TEST_JOBS_UTIL_H
#define CT_TEST_JOBS_UTIL_H
#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE first"
#endif
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ct/jobs.h"
#include "ct/pg.h"
#include "../../src/jobs/backend.h" /* ct__jobs_pg_no_listener */
#include "ct/time.h"
#include "ct/wait.h"
#include "testutil.h"

static char dir[64], path[96];
static char schema[32], conninfo[512]; /* PostgreSQL tests: this test's schema */

static struct {
    pthread_mutex_t mu;
    ct_sem_t started; /* a "block" job began */
    ct_sem_t release; /* let one "block" job finish */
    int runs;         /* handler calls */
    int running, max_running;
    int64_t attempt_at[16]; /* ct_now_ms() of each "fail" attempt */
    int nfail;
    int last_reason;
    char last_detail[CT_DETAIL_MAX];
    char seen_payload[64];
    int64_t seen_id[64];
    int nseen;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static inline int handler(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    pthread_mutex_lock(&g.mu);
    g.runs++;
    if (++g.running > g.max_running)
        g.max_running = g.running;
    if (g.nseen < 64)
        g.seen_id[g.nseen++] = job->id;
    snprintf(g.seen_payload, sizeof(g.seen_payload), "%s", job->payload);
    if (strcmp(job->kind, "fail") == 0 && g.nfail < 16)
        g.attempt_at[g.nfail++] = ct_test_now_ms();
    pthread_mutex_unlock(&g.mu);
    int rc = 0;
    if (strcmp(job->kind, "block") == 0) {
        ct_sem_post(&g.started);
        rc = ct_sem_wait(&g.release, tok, -1);
        if (rc == -ECANCELED) {
            pthread_mutex_lock(&g.mu);
            g.last_reason = ct_token_reason(tok);
            snprintf(g.last_detail, sizeof(g.last_detail), "%s", ct_token_detail(tok));
            pthread_mutex_unlock(&g.mu);
        }
    } else if (strcmp(job->kind, "late") == 0) {
        /* Waits like "block", but finishes anyway once its token fired: a late completion. */
        ct_sem_post(&g.started);
        if (ct_sem_wait(&g.release, tok, -1) == -ECANCELED) {
            pthread_mutex_lock(&g.mu);
            g.last_reason = ct_token_reason(tok);
            snprintf(g.last_detail, sizeof(g.last_detail), "%s", ct_token_detail(tok));
            pthread_mutex_unlock(&g.mu);
        }
        rc = 0;
    } else if (strcmp(job->kind, "fail") == 0) {
        rc = -EIO;
    } else if (strcmp(job->kind, "flaky") == 0) {
        rc = job->attempt == 1 ? -EIO : 0;
    }
    pthread_mutex_lock(&g.mu);
    g.running--;
    pthread_mutex_unlock(&g.mu);
    return rc;
}

static inline int setup(void **state)
{
    (void) state;
    snprintf(dir, sizeof(dir), "/tmp/ct-jobs-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jobs.db", dir);
    ct_sem_init(&g.started, 0);
    ct_sem_init(&g.release, 0);
    return 0;
}

static inline int teardown(void **state)
{
    (void) state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A superuser connection to the test server, for what the tests do behind the queue's back. */
static ct_pg_t *admin(void)
{
    ct_pg_t *c;
    assert_int_equal(0, ct_pg_connect(&c, ct_test_pg_conninfo(), NULL, ct_deadline_after(10000)));
    return c;
}

static inline void admin_exec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void admin_exec(const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    ct_pg_t *c = admin();
    int rc = ct_pg_exec(c, sql, NULL);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", sql, ct_pg_errmsg(c));
    assert_int_equal(0, rc);
    ct_pg_close(c);
}

static inline int setup_pg(void **state)
{
    setup(state);
    snprintf(schema, sizeof(schema), "ct_jobs_t%d", (int) getpid());
    snprintf(conninfo, sizeof(conninfo), "%s options=-csearch_path=%s", ct_test_pg_conninfo(),
             schema);
    admin_exec("DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema, schema);
    return 0;
}

static inline int teardown_pg(void **state)
{
    admin_exec("DROP SCHEMA IF EXISTS %s CASCADE; DROP ROLE IF EXISTS %s", schema, schema);
    return teardown(state);
}

static ct_jobs_t *open_q(int backend, unsigned workers, const ct_jobs_options_t *extra)
{
    ct_jobs_options_t o = extra ? *extra : (ct_jobs_options_t){0};
    o.backend = backend;
    o.path = path;
    o.conninfo = conninfo;
    o.handler = handler;
    o.workers = workers;
    ct_jobs_t *q;
    assert_int_equal(0, ct_jobs_new(&q, &o));
    return q;
}

static inline ct_job_info_t info(ct_jobs_t *q, int64_t id)
{
    ct_job_info_t i;
    assert_int_equal(0, ct_jobs_get(q, id, &i));
    return i;
}

static inline int status_of(ct_jobs_t *q, int64_t id)
{
    return info(q, id).status;
}

static inline int runs(void)
{
    pthread_mutex_lock(&g.mu);
    int n = g.runs;
    pthread_mutex_unlock(&g.mu);
    return n;
}

static inline int lease_detail_is(const char *want)
{
    pthread_mutex_lock(&g.mu);
    int same = strcmp(g.last_detail, want) == 0;
    pthread_mutex_unlock(&g.mu);
    return same;
}

/* test_*_worker_that_lost_its_lease_*: a worker loses its lease because `steal` changes the
 * running row as another worker's claim would (attempt 7, lease token 4242). Its job's token
 * fires with "lease lost" at the next heartbeat, and its late completion changes nothing: the row
 * stays the other worker's. Checked: with the lease condition removed from the finish UPDATE
 * (SQLite and PostgreSQL alike), this fails (completed). */
static inline void worker_that_lost_its_lease(int backend, void (*steal)(void))
{
    ct_jobs_t *q = open_q(backend, 1, &(ct_jobs_options_t){.lease_ms = 60000, .heartbeat_ms = 50});
    assert_int_equal(0, ct_jobs_start(q, NULL));
    int64_t id;
    assert_int_equal(0, ct_jobs_enqueue(q, "late", "", NULL, &id));
    assert_int_equal(0, ct_sem_wait(&g.started, NULL, ct_deadline_after(5000)));
    steal();
    assert_true(CT_WAIT_FOR(lease_detail_is("lease lost"), 3000));
    assert_int_equal(CT_CANCELED, g.last_reason);
    assert_int_equal(0, ct_jobs_stop(q, NULL)); /* the late completion has been attempted */
    ct_job_info_t i = info(q, id);
    assert_int_equal(CT_JOB_RUNNING, i.status);
    assert_int_equal(7, i.attempts);
    ct_jobs_free(q);
}

#endif
