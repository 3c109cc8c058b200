/* ct-sqlite: a token that fires stops the statement where it runs.
 *
 * Three things stop a statement, each covering a gap the others leave:
 *   - the token's callback calls sqlite3_interrupt(): the statement stops within its next few
 *     VM instructions (~0.06 ms measured here);
 *   - but sqlite3_step() clears the interrupt flag when it starts the first statement of the
 *     connection, so a token that fires between our check and that moment would be lost: the
 *     callback also sets `fired`, which a progress handler returns every PROGRESS_OPS
 *     instructions;
 *   - a statement waiting for another connection's lock is not running instructions at all:
 *     the busy handler waits on the token (ct_sleep_ms) instead of sleeping, so it returns the
 *     moment the token fires.
 * sqlite3_interrupt() must never reach a closed connection: the callback is registered only for
 * the duration of one call on the connection's own thread, and ct_token_unregister() waits for a
 * callback that is running, so by the time a call returns nothing can touch the handle. */
#define _GNU_SOURCE
#include "ct/sqlite.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "ct/wait.h"

#define PROGRESS_OPS        1000 /* VM instructions between two looks at `fired` */
#define BUSY_DEFAULT_MS     5000
#define BUSY_MAX_MS         3600000
#define BUSY_MAX_BACKOFF_MS 20

struct ct_sqlite {
    sqlite3 *h;
    const ct_token_t *tok;   /* the token of the call in progress (connection's thread) */
    int fired;               /* atomic: the token fired during this call */
    ct_reg_t reg;            /* on the token, for the duration of one step */
    int64_t busy_timeout_ms; /* CT_SQLITE_NO_WAIT, or > 0 */
    int64_t busy_since;      /* ct_now_ns() when the current lock wait began */
};

static void on_cancel(void *arg, const ct_token_t *tok)
{
    ct_sqlite_t *db = arg;
    (void) tok;
    __atomic_store_n(&db->fired, 1, __ATOMIC_RELEASE);
    sqlite3_interrupt(db->h);
}

static int on_progress(void *arg)
{
    ct_sqlite_t *db = arg;
    return __atomic_load_n(&db->fired, __ATOMIC_ACQUIRE);
}

/* Another connection holds the lock: wait a little, on the token. Returns non-zero to retry. */
static int on_busy(void *arg, int count)
{
    ct_sqlite_t *db = arg;
    if (db->busy_timeout_ms == CT_SQLITE_NO_WAIT)
        return 0;
    int64_t now = ct_now_ns();
    if (count == 0)
        db->busy_since = now;
    int64_t left_ms = db->busy_timeout_ms - (now - db->busy_since) / 1000000;
    if (left_ms <= 0)
        return 0;
    int64_t wait = (int64_t) 1 << (count < 5 ? count : 5); /* 1, 2, 4, ... ms */
    if (wait > BUSY_MAX_BACKOFF_MS)
        wait = BUSY_MAX_BACKOFF_MS;
    if (wait > left_ms)
        wait = left_ms;
    return ct_sleep_ms(wait, db->tok) == 0;
}

int ct_sqlite_open(ct_sqlite_t **out, const char *path, const ct_sqlite_options_t *o)
{
    ct_sqlite_options_t opt = o ? *o : (ct_sqlite_options_t){0};
    if (!out || !path || opt.busy_timeout_ms < CT_SQLITE_NO_WAIT ||
        opt.busy_timeout_ms > BUSY_MAX_MS)
        return -EINVAL;
    *out = NULL;
    ct_sqlite_t *db = ct__calloc(1, sizeof(*db));
    if (!db)
        return -ENOMEM;
    db->busy_timeout_ms = opt.busy_timeout_ms ? opt.busy_timeout_ms : BUSY_DEFAULT_MS;
    int flags = opt.readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &db->h, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int err = db->h ? sqlite3_system_errno(db->h) : 0;
        rc = rc == SQLITE_NOMEM ? -ENOMEM : err > 0 ? -err : -EIO;
        goto fail;
    }
    sqlite3_extended_result_codes(db->h, 0);
    sqlite3_busy_handler(db->h, on_busy, db);
    sqlite3_progress_handler(db->h, PROGRESS_OPS, on_progress, db);
    const char *setup = opt.readonly ? "PRAGMA foreign_keys=ON"
                                     : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                       "PRAGMA foreign_keys=ON";
    if ((rc = ct_sqlite_exec(db, setup, NULL)) < 0)
        goto fail;
    *out = db;
    return 0;
fail:
    ct_sqlite_close(db);
    return rc;
}

void ct_sqlite_close(ct_sqlite_t *db)
{
    if (!db)
        return;
    sqlite3_close_v2(db->h);
    ct__free(db);
}

sqlite3 *ct_sqlite_handle(ct_sqlite_t *db)
{
    return db ? db->h : NULL;
}

const char *ct_sqlite_errmsg(ct_sqlite_t *db)
{
    return db ? sqlite3_errmsg(db->h) : "no connection";
}

static int from_sqlite(int rc)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_DONE:
        return 0;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_INTERRUPT:
        return -ECANCELED;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
        return -EINVAL;
    default:
        return -EIO;
    }
}

int ct_sqlite_prepare(ct_sqlite_t *db, sqlite3_stmt **st, const char *sql)
{
    if (!db || !st || !sql)
        return -EINVAL;
    *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return rc == SQLITE_ERROR ? -EIO : from_sqlite(rc);
    return *st ? 0 : -EINVAL; /* only whitespace or comments */
}

int ct_sqlite_step(ct_sqlite_t *db, sqlite3_stmt *st, const ct_token_t *tok)
{
    if (!db || !st || sqlite3_db_handle(st) != db->h)
        return -EINVAL;
    __atomic_store_n(&db->fired, 0, __ATOMIC_RELAXED);
    db->tok = tok;
    if (ct_token_register(tok, &db->reg, on_cancel, db) == 1) {
        /* Fired already: the statement does not start. The callback's interrupt found nothing
         * running and is cleared when the next statement starts. */
        ct_token_unregister(&db->reg);
        db->tok = NULL;
        sqlite3_reset(st);
        return -ECANCELED;
    }
    int rc = sqlite3_step(st);
    ct_token_unregister(&db->reg);
    db->tok = NULL;
    /* The busy handler sees the token canceled before the canceller reaches our callback (which
     * unregister may then have removed): the token's own state counts as fired too. */
    bool fired = __atomic_load_n(&db->fired, __ATOMIC_ACQUIRE) || ct_token_canceled(tok);
    if (rc == SQLITE_ROW)
        return 1; /* a row that was complete is the caller's, fired or not */
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (fired && (rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_INTERRUPT))
        return -ECANCELED;
    return from_sqlite(rc);
}

int ct_sqlite_rows(ct_sqlite_t *db, sqlite3_stmt *st, const ct_token_t *tok,
                   int (*row)(sqlite3_stmt *st, void *arg), void *arg)
{
    if (!db || !st || !row)
        return -EINVAL;
    int n = 0, rc;
    while ((rc = ct_sqlite_step(db, st, tok)) == 1) {
        if ((rc = row(st, arg)) < 0)
            break;
        if (n < INT_MAX)
            n++;
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : n;
}

int ct_sqlite_exec(ct_sqlite_t *db, const char *sql, const ct_token_t *tok)
{
    if (!db || !sql)
        return -EINVAL;
    const char *next = sql;
    while (*next) {
        int rc = ct_token_check(tok); /* an interrupt between statements would be lost */
        if (rc < 0)
            return rc;
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db->h, next, -1, &st, &next);
        if (rc != SQLITE_OK)
            return rc == SQLITE_ERROR ? -EIO : from_sqlite(rc);
        if (!st)
            break; /* the rest is whitespace or comments */
        while ((rc = ct_sqlite_step(db, st, tok)) == 1)
            ;
        sqlite3_finalize(st);
        if (rc < 0)
            return rc;
    }
    return 0;
}
