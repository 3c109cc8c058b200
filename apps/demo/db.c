/* ct-demo's database backends: a SQLite file (the default) and PostgreSQL. See db.h. */
#define _GNU_SOURCE
#include "db.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct/chan.h"
#include "ct/pg.h"
#include "ct/sqlite.h"
#include "ct/time.h"
#include "demo.h"

struct demo_db {
    bool pg;
    int nconns;
    ct_chan_t *idle; /* SQLite: the connections nobody uses; acquiring one waits on the token */
    ct_sqlite_t *lite[64];
    ct_pg_pool_t *pool; /* PostgreSQL: ct-pg's pool (cancellable acquire, reset, health check) */
};

bool demo_db_is_pg(const struct demo_db *db)
{
    return db->pg;
}

/* ---- SQLite: a few connections in a channel ------------------------------------------------
 * A connection serves one thread at a time; WAL lets the readers run beside one writer. */

static int lite_open(struct demo_db *db, const char *path)
{
    int rc = ct_chan_new(&db->idle, sizeof(ct_sqlite_t *), (size_t) db->nconns);
    for (int i = 0; rc == 0 && i < db->nconns; i++) {
        if ((rc = ct_sqlite_open(&db->lite[i], path, NULL)) < 0)
            demo_log("cannot open the database %s: %s", path, ct_strerror(rc));
        else
            rc = ct_chan_try_send(db->idle, &db->lite[i]);
    }
    return rc;
}

static int lite_acquire(struct demo_db *db, const ct_token_t *tok, ct_sqlite_t **c)
{
    return ct_chan_recv(db->idle, c, tok, -1);
}

static void lite_release(struct demo_db *db, ct_sqlite_t *c)
{
    ct_chan_try_send(db->idle, &c); /* never full: it holds at most the connections we have */
}

struct lite_rows {
    demo_row_fn row;
    void *arg;
};

static int lite_row(sqlite3_stmt *st, void *arg)
{
    struct lite_rows *r = arg;
    const char *cols[32];
    int n = sqlite3_column_count(st);
    if (n > 32)
        n = 32;
    for (int i = 0; i < n; i++)
        cols[i] = (const char *) sqlite3_column_text(st, i);
    return r->row ? r->row(r->arg, n, cols) : 0;
}

static int lite_query(struct demo_db *db, const ct_token_t *tok, const char *sql, int nparams,
                      const char *const *params, demo_row_fn row, void *arg)
{
    ct_sqlite_t *c;
    sqlite3_stmt *st = NULL;
    int rc = lite_acquire(db, tok, &c);
    if (rc < 0)
        return rc;
    if ((rc = ct_sqlite_prepare(c, &st, sql)) < 0) {
        demo_log("SQL error: %s", ct_sqlite_errmsg(c));
        goto out;
    }
    /* SQLite numbers named parameters in order of appearance: bind "$k" by its name. */
    for (int i = 0; i < nparams; i++) {
        char name[16];
        snprintf(name, sizeof(name), "$%d", i + 1);
        int idx = sqlite3_bind_parameter_index(st, name);
        if (idx > 0 && sqlite3_bind_text(st, idx, params[i], -1, SQLITE_TRANSIENT) != SQLITE_OK) {
            rc = -ENOMEM;
            goto out;
        }
    }
    struct lite_rows r = {row, arg};
    rc = ct_sqlite_rows(c, st, tok, lite_row, &r);
    if (rc < 0 && rc != -ECANCELED)
        demo_log("SQL error: %s", ct_sqlite_errmsg(c));
out:
    sqlite3_finalize(st);
    lite_release(db, c);
    return rc;
}

static int lite_script(struct demo_db *db, const ct_token_t *tok, const char *sql)
{
    ct_sqlite_t *c;
    int rc = lite_acquire(db, tok, &c);
    if (rc < 0)
        return rc;
    if ((rc = ct_sqlite_exec(c, "BEGIN IMMEDIATE", tok)) == 0 &&
        (rc = ct_sqlite_exec(c, sql, tok)) == 0)
        rc = ct_sqlite_exec(c, "COMMIT", tok);
    if (rc < 0) {
        if (rc != -ECANCELED)
            demo_log("SQL error: %s", ct_sqlite_errmsg(c));
        ct_sqlite_exec(c, "ROLLBACK", NULL);
    }
    lite_release(db, c);
    return rc;
}

static void lite_close(struct demo_db *db)
{
    for (int i = 0; i < db->nconns; i++)
        ct_sqlite_close(db->lite[i]);
    ct_chan_free(db->idle);
}

/* ---- PostgreSQL: ct-pg's pool ----------------------------------------------------------------
 * A fired token cancels the statement on the server (re-sent if the cancel is lost) and the
 * connection is drained before the pool hands it out again. */

static int pg_open(struct demo_db *db, const char *url)
{
    ct_pg_pool_options_t o = {.max_size = db->nconns};
    int rc = ct_pg_pool_new(&db->pool, url, &o);
    ct_pg_t *c;
    if (rc == 0 && (rc = ct_pg_pool_acquire(db->pool, &c, NULL, ct_deadline_after(10000))) == 0)
        ct_pg_pool_release(db->pool, c); /* fail now, not at the first request */
    if (rc < 0)
        demo_log("cannot connect to PostgreSQL: %s", ct_strerror(rc));
    return rc;
}

static int pg_query(struct demo_db *db, const ct_token_t *tok, const char *sql, int nparams,
                    const char *const *params, demo_row_fn row, void *arg)
{
    ct_pg_t *c;
    PGresult *res;
    int rc = ct_pg_pool_acquire(db->pool, &c, tok, -1);
    if (rc < 0)
        return rc;
    if ((rc = ct_pg_query(c, &res, sql, nparams, params, tok, NULL)) < 0) {
        if (rc == -EIO)
            demo_log("SQL error: %s", ct_pg_errmsg(c));
        ct_pg_pool_release(db->pool, c);
        return rc;
    }
    int rows = PQntuples(res), n = PQnfields(res) < 32 ? PQnfields(res) : 32;
    for (int r = 0; r < rows && rc >= 0 && row; r++) {
        const char *cols[32];
        for (int i = 0; i < n; i++)
            cols[i] = PQgetisnull(res, r, i) ? NULL : PQgetvalue(res, r, i);
        rc = row(arg, n, cols);
    }
    PQclear(res);
    ct_pg_pool_release(db->pool, c);
    return rc < 0 ? rc : rows;
}

static int pg_script(struct demo_db *db, const ct_token_t *tok, const char *sql)
{
    ct_pg_t *c;
    int rc = ct_pg_pool_acquire(db->pool, &c, tok, -1);
    if (rc < 0)
        return rc;
    /* One simple-protocol message: its statements run as one transaction. */
    if ((rc = ct_pg_exec(c, sql, tok)) == -EIO)
        demo_log("SQL error: %s", ct_pg_errmsg(c));
    ct_pg_pool_release(db->pool, c);
    return rc;
}

/* ---- the interface -------------------------------------------------------------------------- */

static bool is_pg_url(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

int demo_db_open(struct demo_db **out, const char *url, int conns)
{
    if (!out || !url || conns < 1 || conns > 64)
        return -EINVAL;
    struct demo_db *db = calloc(1, sizeof(*db));
    if (!db)
        return -ENOMEM;
    db->nconns = conns;
    db->pg = is_pg_url(url);
    int rc = db->pg ? pg_open(db, url) : lite_open(db, url);
    if (rc < 0) {
        demo_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void demo_db_close(struct demo_db *db)
{
    if (!db)
        return;
    if (db->pg)
        ct_pg_pool_free(db->pool);
    else
        lite_close(db);
    free(db);
}

int demo_db_query(struct demo_db *db, const ct_token_t *tok, const char *sql, int nparams,
                  const char *const *params, demo_row_fn row, void *arg)
{
    if (!db || !sql || nparams < 0 || (nparams > 0 && !params))
        return -EINVAL;
    return db->pg ? pg_query(db, tok, sql, nparams, params, row, arg)
                  : lite_query(db, tok, sql, nparams, params, row, arg);
}

int demo_db_script(struct demo_db *db, const ct_token_t *tok, const char *sql)
{
    if (!db || !sql)
        return -EINVAL;
    return db->pg ? pg_script(db, tok, sql) : lite_script(db, tok, sql);
}
