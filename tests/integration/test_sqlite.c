/* ct-sqlite against a real SQLite file: a statement that would run for minutes stops when its
 * token fires, wherever it is (running, about to start, waiting for another connection's lock),
 * the connection stays usable, and nothing touches a connection after its call returned. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ct/sqlite.h"
#include "ct/time.h"
#include "testutil.h"

/* Counts to a billion: minutes of work unless stopped. */
#define ENDLESS                                                                                    \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "        \
    "SELECT count(*) FROM c"

static char dir[64], path[96];

static int setup(void **state)
{
    (void) state;
    snprintf(dir, sizeof(dir), "/tmp/ct-sqlite-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/test.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void) state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static ct_sqlite_t *open_db(const ct_sqlite_options_t *o)
{
    ct_sqlite_t *db;
    assert_int_equal(0, ct_sqlite_open(&db, path, o));
    return db;
}

static int64_t one_int(ct_sqlite_t *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(0, ct_sqlite_prepare(db, &st, sql));
    assert_int_equal(1, ct_sqlite_step(db, st, NULL));
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_open_uses_wal_and_reports_bad_arguments(void **state)
{
    (void) state;
    ct_sqlite_t *db = open_db(NULL);
    sqlite3_stmt *st;
    assert_int_equal(0, ct_sqlite_prepare(db, &st, "PRAGMA journal_mode"));
    assert_int_equal(1, ct_sqlite_step(db, st, NULL));
    assert_string_equal("wal", (const char *) sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    assert_int_equal(-EINVAL, ct_sqlite_open(NULL, path, NULL));
    ct_sqlite_t *other;
    assert_int_equal(-EINVAL, ct_sqlite_open(&other, NULL, NULL));
    assert_int_equal(-EINVAL,
                     ct_sqlite_open(&other, path, &(ct_sqlite_options_t){.busy_timeout_ms = -2}));
    assert_int_equal(-ENOENT, ct_sqlite_open(&other, "/nonexistent-dir/x.db", NULL));
    assert_int_equal(-EIO, ct_sqlite_prepare(db, &st, "SELEC 1"));
    assert_non_null(strstr(ct_sqlite_errmsg(db), "syntax error"));
    assert_int_equal(-EINVAL, ct_sqlite_prepare(db, &st, "  -- nothing"));
    assert_int_equal(-EINVAL, ct_sqlite_step(db, NULL, NULL));
    assert_int_equal(-EINVAL, ct_sqlite_exec(NULL, "SELECT 1", NULL));
    ct_sqlite_close(db);
}

/* A statement running for minutes returns -ECANCELED soon after its token fires, and the
 * connection answers the next statement. */
static void test_running_statement_stops_when_the_token_fires(void **state)
{
    (void) state;
    ct_sqlite_t *db = open_db(NULL);
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    assert_int_equal(0, ct_source_cancel_after(src, 50));
    sqlite3_stmt *st;
    assert_int_equal(0, ct_sqlite_prepare(db, &st, ENDLESS));
    assert_int_equal(-ECANCELED, ct_sqlite_step(db, st, ct_source_token(src)));
    int64_t late_ms = (ct_now_ns() - ct_token_canceled_at_ns(ct_source_token(src))) / 1000000;
    assert_true(late_ms < 500 * ct_test_scale());
    assert_int_equal(CT_TIMEOUT, ct_token_reason(ct_source_token(src)));
    sqlite3_finalize(st);
    assert_int_equal(42, one_int(db, "SELECT 42"));
    ct_source_free(src);
    ct_sqlite_close(db);
}

static void test_canceled_token_runs_nothing(void **state)
{
    (void) state;
    ct_sqlite_t *db = open_db(NULL);
    assert_int_equal(0, ct_sqlite_exec(db, "CREATE TABLE t(x)", NULL));
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    ct_source_cancel(src, CT_CLIENT_ABORTED, "gone");
    sqlite3_stmt *st;
    assert_int_equal(0, ct_sqlite_prepare(db, &st, "INSERT INTO t VALUES (1)"));
    assert_int_equal(-ECANCELED, ct_sqlite_step(db, st, ct_source_token(src)));
    sqlite3_finalize(st);
    assert_int_equal(-ECANCELED,
                     ct_sqlite_exec(db, "INSERT INTO t VALUES (2)", ct_source_token(src)));
    assert_int_equal(0, one_int(db, "SELECT count(*) FROM t"));
    ct_source_free(src);
    ct_sqlite_close(db);
}

/* exec checks the token before each statement: those before the stop ran, none after. */
static void test_exec_stops_between_and_inside_statements(void **state)
{
    (void) state;
    ct_sqlite_t *db = open_db(NULL);
    assert_int_equal(0, ct_sqlite_exec(db, "CREATE TABLE t(x)", NULL));
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    assert_int_equal(0, ct_source_cancel_after(src, 50));
    assert_int_equal(-ECANCELED, ct_sqlite_exec(db,
                                                "INSERT INTO t VALUES (1);" ENDLESS
                                                ";INSERT INTO t VALUES (2);",
                                                ct_source_token(src)));
    assert_int_equal(1, one_int(db, "SELECT count(*) FROM t"));
    assert_int_equal(1, one_int(db, "SELECT x FROM t"));
    ct_source_free(src);
    ct_sqlite_close(db);
}

/* Waiting for another connection's write lock: a busy timeout of 10 s does not hold the call
 * once the token fires; without a token the timeout is kept. */
static void test_lock_wait_stops_when_the_token_fires(void **state)
{
    (void) state;
    ct_sqlite_t *holder = open_db(NULL);
    assert_int_equal(0, ct_sqlite_exec(holder,
                                       "CREATE TABLE t(x); BEGIN IMMEDIATE;"
                                       "INSERT INTO t VALUES (1)",
                                       NULL));
    ct_sqlite_t *db = open_db(&(ct_sqlite_options_t){.busy_timeout_ms = 10000});
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    assert_int_equal(0, ct_source_cancel_after(src, 50));
    int64_t t0 = ct_test_now_ms();
    assert_int_equal(-ECANCELED,
                     ct_sqlite_exec(db, "INSERT INTO t VALUES (2)", ct_source_token(src)));
    assert_true(ct_test_now_ms() - t0 < 5000); /* not the 10 s busy timeout */
    int64_t late_ms = (ct_now_ns() - ct_token_canceled_at_ns(ct_source_token(src))) / 1000000;
    assert_true(late_ms < 500 * ct_test_scale());
    ct_source_free(src);

    ct_sqlite_t *quick = open_db(&(ct_sqlite_options_t){.busy_timeout_ms = 200});
    t0 = ct_test_now_ms();
    assert_int_equal(-EBUSY, ct_sqlite_exec(quick, "INSERT INTO t VALUES (3)", NULL));
    assert_true(ct_test_now_ms() - t0 >= 190);
    ct_sqlite_t *never = open_db(&(ct_sqlite_options_t){.busy_timeout_ms = CT_SQLITE_NO_WAIT});
    assert_int_equal(-EBUSY, ct_sqlite_exec(never, "INSERT INTO t VALUES (4)", NULL));

    assert_int_equal(0, ct_sqlite_exec(holder, "COMMIT", NULL));
    assert_int_equal(0, ct_sqlite_exec(db, "INSERT INTO t VALUES (5)", NULL));
    assert_int_equal(2, one_int(db, "SELECT count(*) FROM t"));
    ct_sqlite_close(never);
    ct_sqlite_close(quick);
    ct_sqlite_close(db);
    ct_sqlite_close(holder);
}

/* The token fires at any moment around the start of the statement (before the check, between
 * the check and sqlite3_step clearing its interrupt flag, while it runs): every round ends with
 * -ECANCELED; none runs on for minutes. The connection is closed right after each round while
 * the canceling thread may still be in its callback: nothing may touch it then (ASan). */
struct race {
    ct_source_t *src;
    unsigned spin;
    int ready, go; /* atomic */
};

static void *cancel_soon(void *arg)
{
    struct race *r = arg;
    __atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&r->go, __ATOMIC_ACQUIRE))
        ;
    for (unsigned spin = r->spin; spin; spin--)
        __asm__ volatile("" ::: "memory");
    ct_source_cancel(r->src, CT_CANCELED, NULL);
    return NULL;
}

static void test_cancel_racing_the_statement_start_is_never_lost(void **state)
{
    (void) state;
    int rounds = CT_TEST_SANITIZED ? 400 : 2000;
    for (int i = 0; i < rounds; i++) {
        ct_sqlite_t *db = open_db(NULL);
        sqlite3_stmt *st;
        assert_int_equal(0, ct_sqlite_prepare(db, &st, ENDLESS));
        /* Both threads are running when it starts; the cancel lands within a few µs. */
        struct race r = {.spin = (unsigned) i % 1000}; /* a sweep across the first µs or so */
        assert_int_equal(0, ct_source_new(&r.src));
        ct_test_thread_t *t = ct_test_thread_start(cancel_soon, &r);
        while (!__atomic_load_n(&r.ready, __ATOMIC_ACQUIRE))
            ;
        __atomic_store_n(&r.go, 1, __ATOMIC_RELEASE);
        assert_int_equal(-ECANCELED, ct_sqlite_step(db, st, ct_source_token(r.src)));
        sqlite3_finalize(st);
        ct_sqlite_close(db);
        ct_test_thread_join(t);
        ct_source_free(r.src);
    }
}

static int count_until(sqlite3_stmt *st, void *arg)
{
    int *seen = arg;
    if (sqlite3_column_int(st, 0) > 5)
        return -ERANGE;
    (*seen)++;
    return 0;
}

static void test_rows_iterates_and_stops_on_the_callbacks_error(void **state)
{
    (void) state;
    ct_sqlite_t *db = open_db(NULL);
    sqlite3_stmt *st;
    assert_int_equal(0, ct_sqlite_prepare(db, &st,
                                          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                                          "FROM c WHERE x < ?1) SELECT x FROM c"));
    sqlite3_bind_int(st, 1, 5);
    int seen = 0;
    assert_int_equal(5, ct_sqlite_rows(db, st, NULL, count_until, &seen));
    assert_int_equal(5, seen);
    sqlite3_bind_int(st, 1, 100); /* the statement was reset: it runs again */
    seen = 0;
    assert_int_equal(-ERANGE, ct_sqlite_rows(db, st, NULL, count_until, &seen));
    assert_int_equal(5, seen);
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    ct_source_cancel(src, CT_TIMEOUT, NULL);
    assert_int_equal(-ECANCELED, ct_sqlite_rows(db, st, ct_source_token(src), count_until, &seen));
    ct_source_free(src);
    sqlite3_finalize(st);
    ct_sqlite_close(db);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
CT_TEST_MAIN(T(test_open_uses_wal_and_reports_bad_arguments),
             T(test_running_statement_stops_when_the_token_fires),
             T(test_canceled_token_runs_nothing), T(test_exec_stops_between_and_inside_statements),
             T(test_lock_wait_stops_when_the_token_fires),
             T(test_cancel_racing_the_statement_start_is_never_lost),
             T(test_rows_iterates_and_stops_on_the_callbacks_error))
