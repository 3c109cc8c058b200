/* ct-demo's database: one small interface over the embedded default (a SQLite file under the data
 * directory) and PostgreSQL (--db postgres://...). The repositories write their SQL once, with
 * $1, $2... placeholders that both engines read, and get their rows as text; the backend passes
 * the caller's token to the query that runs, so a client that leaves stops the statement where
 * it runs (SQLite: interrupted; PostgreSQL: canceled on the server). */
#ifndef CT_DEMO_DB_H
#define CT_DEMO_DB_H

#include <stdbool.h>

#include "ct/token.h"

struct demo_db;

/* Open the database named by `url`: "postgres://..." or "postgresql://..." for PostgreSQL, else
 * the path of a SQLite file (created if missing). `conns` connections at most, 1..64.
 * Returns 0 and *out, or a negative errno (the message went to the log). */
int demo_db_open(struct demo_db **out, const char *url, int conns);
void demo_db_close(struct demo_db *db);

/* true on PostgreSQL: for the few statements whose SQL differs. */
bool demo_db_is_pg(const struct demo_db *db);

/* Called once per row with the row's columns as text (NULL for SQL NULL). A negative return
 * stops the query and is returned by demo_db_query. */
typedef int (*demo_row_fn)(void *arg, int ncols, const char *const *cols);

/* Run one statement with text parameters $1..$n, rows to `row` (may be NULL).
 * Returns the number of rows, -ECANCELED when `tok` fired (waiting for a connection or running),
 * or another negative errno (the database's message went to the log). */
int demo_db_query(struct demo_db *db, const ct_token_t *tok, const char *sql, int nparams,
                  const char *const *params, demo_row_fn row, void *arg);

/* Run a script of statements without parameters or rows (schema, seeding), in one transaction. */
int demo_db_script(struct demo_db *db, const ct_token_t *tok, const char *sql);

#endif
