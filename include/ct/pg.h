/* ct-pg: PostgreSQL queries that stop, on the server too, when a token fires.
 *
 * Every call uses libpq's asynchronous API and waits on the connection's socket and the token
 * together. When the token fires during a query, the waiting thread itself (never the token's
 * callback: PQcancel blocks) sends the server a cancel request, re-sends it if no answer comes
 * within a short bound (the server drops a cancel that arrives while it is still reading the
 * command), reads the query's error result, and makes sure no cancel can still hit the next
 * query on this connection before returning -ECANCELED (docs/pg.md explains the steps). The
 * connection stays usable: the next query on it runs normally.
 *
 * Model: a connection is used by one thread at a time; a pool (ct_pg_pool_*) hands connections
 * to threads, resets those returned inside a transaction and replaces broken ones. The PGconn
 * stays reachable (ct_pg_handle) for what ct does not wrap: reading results, notices, COPY.
 *
 *     ct_pg_t *c;
 *     ct_pg_connect(&c, "host=127.0.0.1 dbname=app", tok, ct_deadline_after(5000));
 *     PGresult *r;
 *     const char *params[] = {"42"};
 *     int rc = ct_pg_query(c, &r, "SELECT name FROM users WHERE id = $1", 1, params, tok, NULL);
 *     if (rc == 0) { use(PQgetvalue(r, 0, 0)); PQclear(r); }
 *     else if (rc == -ECANCELED) ...   // the token fired: the server stopped the query
 *     else if (rc == -EIO) ...         // the server said no: ct_pg_sqlstate(c), ct_pg_errmsg(c)
 *
 * Errors are negative errno values: -ECANCELED (the token fired; ct_token_reason says why),
 * -ETIMEDOUT (a deadline passed, or the server's statement_timeout stopped the statement),
 * -EIO (the server reported an error: SQLSTATE and message are on the connection),
 * -ECONNRESET (the connection is lost or unusable: close it, or release it to its pool),
 * -ECONNREFUSED (connect: nothing listens there), -EINVAL, -ENOMEM. */
#ifndef CT_PG_H
#define CT_PG_H

#include <libpq-fe.h>
#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_pg ct_pg_t;
typedef struct ct_pg_pool ct_pg_pool_t;

/* ---- connections ---------------------------------------------------------------------------- */

/* Connect to the server `conninfo` names (a libpq key=value string or a postgresql:// URL),
 * stopping when `tok` fires or at `deadline` (absolute monotonic ms, ct/time.h; -1 none). The
 * connection is put in non-blocking mode.
 * Returns: 0 and *out; -EINVAL (NULL arguments, a conninfo libpq cannot parse); -ENOMEM;
 * -ECANCELED; -ETIMEDOUT; -ECONNREFUSED (nothing listens at that address); -EIO (any other
 * failure, authentication included: ct_pg_connect_errmsg says why). *out is NULL on failure.
 * Ownership: ct_pg_close(). Thread: any. */
int ct_pg_connect(ct_pg_t **out, const char *conninfo, const ct_token_t *tok, int64_t deadline);

/* libpq's message for the last ct_pg_connect that failed on this thread ("" if none).
 * Valid until the next ct_pg_connect on this thread. Thread: any (per thread). */
const char *ct_pg_connect_errmsg(void);

/* Close the connection (PQfinish). NULL is allowed. A pooled connection goes back with
 * ct_pg_pool_release instead. Thread: the connection's. */
void ct_pg_close(ct_pg_t *c);

/* The libpq connection, for what ct does not wrap. Do not close it, and leave it idle (every
 * result read) before the next ct call. Thread: the connection's. */
PGconn *ct_pg_handle(ct_pg_t *c);

/* The server's (or libpq's) message for the last failed call on this connection, "" if none.
 * Valid until the next call on the connection. Thread: the connection's. */
const char *ct_pg_errmsg(ct_pg_t *c);

/* The SQLSTATE of the last failed call on this connection ("23505", "57014", ...), "" if the
 * failure did not come from the server. Valid until the next call. Thread: the connection's. */
const char *ct_pg_sqlstate(ct_pg_t *c);

typedef struct ct_pg_query_options {
    /* > 0: the server stops this statement after that many ms, and the call returns
     * -ETIMEDOUT. 0: the connection's own statement_timeout applies. Set for this one call
     * (the previous value is restored afterwards; this costs two short round trips). */
    int64_t statement_timeout_ms;
} ct_pg_query_options_t;

/* Run one SQL statement with text parameters $1..$n (params[i] NULL is SQL NULL; `params` may
 * be NULL when nparams is 0), through the extended protocol, stopping when `tok` fires. `o` may
 * be NULL. A statement that completes is returned even if the token fired meanwhile.
 * Returns: 0 and *res (PGRES_TUPLES_OK or PGRES_COMMAND_OK); -ECANCELED (the server stopped
 * the statement; inside a transaction, the transaction is now aborted: ROLLBACK); -ETIMEDOUT
 * (statement_timeout); -EIO (a server error: ct_pg_sqlstate, ct_pg_errmsg); -ECONNRESET;
 * -EINVAL (NULL arguments, nparams < 0 or > 65535, a negative statement_timeout_ms; COPY,
 * which ct does not drive: FROM STDIN is ended with an error, TO STDOUT's rows are dropped);
 * -ENOMEM. *res is NULL on failure.
 * Ownership: the caller PQclear()s *res. Thread: the connection's. */
int ct_pg_query(ct_pg_t *c, PGresult **res, const char *sql, int nparams, const char *const *params,
                const ct_token_t *tok, const ct_pg_query_options_t *o);

/* Run every statement in `sql` (simple protocol, no parameters; rows are discarded), stopping
 * when `tok` fires. For BEGIN, COMMIT, SET, DDL. Statements run as one implicit transaction
 * unless `sql` manages its own.
 * Returns: 0; -ECANCELED; -ETIMEDOUT; -EIO (the first error; later statements did not run);
 * -ECONNRESET; -EINVAL; -ENOMEM. Thread: the connection's. */
int ct_pg_exec(ct_pg_t *c, const char *sql, const ct_token_t *tok);

/* ---- pool ------------------------------------------------------------------------------------ */

typedef struct ct_pg_pool_options {
    int max_size;               /* connections open at most, 1..10 000 (0: 10) */
    int64_t connect_timeout_ms; /* bound on opening one connection (0: 10 000) */
    int64_t idle_check_ms;      /* a connection idle longer than this is checked with a round
                                   trip before it is handed out (0: 30 000; -1: never) */
} ct_pg_pool_options_t;

typedef struct ct_pg_pool_stats {
    int size;           /* connections open, idle or handed out */
    int idle;           /* connections waiting in the pool */
    int waiting;        /* threads blocked in ct_pg_pool_acquire */
    uint64_t opened;    /* connections opened since the pool was made */
    uint64_t discarded; /* connections closed because they were broken or could not be reset */
    uint64_t resets;    /* connections returned inside a transaction and rolled back */
} ct_pg_pool_stats_t;

/* A pool of at most max_size connections to `conninfo` (copied). Connections are opened when
 * needed, not here. `o` may be NULL.
 * Returns: 0 and *out; -EINVAL; -ENOMEM. Ownership: ct_pg_pool_free(). Thread: any. */
int ct_pg_pool_new(ct_pg_pool_t **out, const char *conninfo, const ct_pg_pool_options_t *o);

/* Close the idle connections and free the pool. Every connection must have been released and
 * no thread may be waiting in ct_pg_pool_acquire. NULL is allowed. Thread: any. */
void ct_pg_pool_free(ct_pg_pool_t *p);

/* Take a connection, waiting (first come, first served) while max_size are handed out, until
 * `tok` fires or `deadline` (absolute monotonic ms; -1 none) passes. An idle connection is
 * checked before it is handed out: one whose server closed it is replaced at once, one idle
 * longer than idle_check_ms answers a round trip first. A new connection is opened when none is
 * idle and the pool is not full.
 * Returns: 0 and *out, idle and outside any transaction; -ECANCELED; -ETIMEDOUT;
 * -ECONNREFUSED, -EIO (a new connection could not be opened: ct_pg_connect_errmsg); -EINVAL;
 * -ENOMEM. Ownership: ct_pg_pool_release(). Thread: any. */
int ct_pg_pool_acquire(ct_pg_pool_t *p, ct_pg_t **out, const ct_token_t *tok, int64_t deadline);

/* Give `c` back, in whatever state it is in: a connection left inside a transaction (open or
 * aborted) is rolled back, one that is broken or cannot be reset within a few seconds is closed.
 * Wakes the longest waiting ct_pg_pool_acquire. NULL `c` is ignored.
 * Thread: any (the thread that used `c` last, or after it is done with it). */
void ct_pg_pool_release(ct_pg_pool_t *p, ct_pg_t *c);

/* A snapshot of the pool's counters. Thread: any. */
void ct_pg_pool_stats(ct_pg_pool_t *p, ct_pg_pool_stats_t *st);

#ifdef __cplusplus
}
#endif

#endif
