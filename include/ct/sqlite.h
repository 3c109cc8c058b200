/* ct-sqlite: SQLite statements that stop when a token fires.
 *
 * A token that fires while a statement runs interrupts it where it runs (sqlite3_interrupt from
 * the token's callback, backed by a progress handler that closes the gap between checking the
 * token and starting the statement), and the call returns -ECANCELED. A statement waiting for
 * another connection's write lock stops waiting at once too: the busy handler waits on the token
 * instead of sleeping blind (a plain busy timeout ignores interrupts). The connection stays
 * usable afterwards; an interrupted write inside an explicit transaction rolls that whole
 * transaction back (SQLite's rule), so the caller issues ROLLBACK or starts again.
 *
 * Model: a connection is used by one thread at a time. Give each worker thread its own, or keep
 * a few in a ct channel as a pool (see docs/sqlite.md); SQLite in WAL mode lets readers run
 * beside one writer. The sqlite3 handle stays reachable (ct_sqlite_handle) for everything ct
 * does not wrap: binding, reading columns, pragmas.
 *
 *     ct_sqlite_t *db;
 *     ct_sqlite_open(&db, "data/app.db", NULL);
 *     sqlite3_stmt *st;
 *     ct_sqlite_prepare(db, &st, "SELECT sum(amount) FROM sales WHERE day >= ?1");
 *     sqlite3_bind_int64(st, 1, since);
 *     int rc = ct_sqlite_step(db, st, tok);   // 1: a row, 0: done, -ECANCELED, ...
 *
 * Errors are negative errno values: -ECANCELED (the token fired; ct_token_reason says why),
 * -EBUSY (the lock stayed taken past the busy timeout), -EINVAL, -ENOMEM, -EIO (any other SQLite
 * error: ct_sqlite_errmsg has SQLite's message). */
#ifndef CT_SQLITE_H
#define CT_SQLITE_H

#include <sqlite3.h>
#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_sqlite ct_sqlite_t;

typedef struct ct_sqlite_options {
    int64_t busy_timeout_ms; /* how long to wait for another connection's lock, 0..3 600 000
                                (0: the default, 5 000; CT_SQLITE_NO_WAIT: not at all) */
    int readonly;            /* open read-only (the file must exist) */
} ct_sqlite_options_t;

#define CT_SQLITE_NO_WAIT INT64_C(-1)

/* Open (creating it unless read-only) the database file at `path`, in WAL mode with
 * synchronous=NORMAL and foreign keys on. `o` may be NULL.
 * Returns: 0 and *out; -EINVAL; -ENOMEM; the errno SQLite saw when it could not open the file
 * (-ENOENT, -EACCES, ...); -EIO otherwise. Ownership: ct_sqlite_close(). Thread: any. */
int ct_sqlite_open(ct_sqlite_t **out, const char *path, const ct_sqlite_options_t *o);

/* Finalize nothing, close the connection. Statements prepared on it must be finalized first
 * (sqlite3_finalize). NULL is allowed. Thread: the connection's. */
void ct_sqlite_close(ct_sqlite_t *db);

/* The SQLite handle, for what ct does not wrap. Do not close it. Thread: the connection's. */
sqlite3 *ct_sqlite_handle(ct_sqlite_t *db);

/* SQLite's message for the last error on this connection. Thread: the connection's. */
const char *ct_sqlite_errmsg(ct_sqlite_t *db);

/* Prepare one statement (sqlite3_prepare_v2). Returns: 0 and *st; -EINVAL (NULL arguments, or
 * `sql` holds no statement); -ENOMEM; -EIO (a syntax error: ct_sqlite_errmsg). Ownership:
 * sqlite3_finalize(). Thread: the connection's. */
int ct_sqlite_prepare(ct_sqlite_t *db, sqlite3_stmt **st, const char *sql);

/* Run `st` to its next row, stopping when `tok` fires (NULL: never).
 * Returns: 1 a row is ready (sqlite3_column_*); 0 the statement is done (it is reset, bindings
 * kept, ready to run again); -ECANCELED (the statement is reset); -EBUSY; -ENOMEM; -EIO.
 * Thread: the connection's. */
int ct_sqlite_step(ct_sqlite_t *db, sqlite3_stmt *st, const ct_token_t *tok);

/* Step `st` to its end, calling `row(st, arg)` for each row; a negative value from `row` stops
 * and is returned. The statement is reset afterwards in every case.
 * Returns: the number of rows (capped at INT_MAX), or what ct_sqlite_step or `row` returned.
 * Thread: the connection's. */
int ct_sqlite_rows(ct_sqlite_t *db, sqlite3_stmt *st, const ct_token_t *tok,
                   int (*row)(sqlite3_stmt *st, void *arg), void *arg);

/* Run every statement in `sql` (no rows expected; rows are skipped), checking the token before
 * each one: an interrupt between statements would be lost otherwise.
 * Returns: 0; -ECANCELED (statements before the one that was stopped have run: use a
 * transaction for all-or-nothing); -EBUSY; -ENOMEM; -EIO; -EINVAL. Thread: the connection's. */
int ct_sqlite_exec(ct_sqlite_t *db, const char *sql, const ct_token_t *tok);

#ifdef __cplusplus
}
#endif

#endif
