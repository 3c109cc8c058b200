/* What the pool needs to know about a connection. */
#ifndef CT_PG_INTERNAL_H
#define CT_PG_INTERNAL_H

#include <stdbool.h>

#include "ct/pg.h"

struct ct_pg {
    PGconn *conn;
    PGcancel *cancel; /* made once at connect: PQgetCancel allocates */
    bool broken;      /* unusable: a cancel went unanswered, or the drain failed */
    bool absorbing;   /* running the round trip that absorbs a late cancel */
    char sqlstate[6];
    char errmsg[512];
    /* pool bookkeeping (the pool's lock) */
    struct ct_pg *next; /* in the idle list */
    int64_t idle_since; /* ct_now_ms() when released */
    unsigned cancels;   /* cancel requests sent since the connection was opened */
};

/* Run `sql` (simple protocol) with no token and a deadline; the pool's checks and resets.
 * Returns as ct_pg_exec, -ETIMEDOUT at the deadline (the connection is then marked broken). */
int ct__pg_exec_bounded(ct_pg_t *c, const char *sql, int64_t deadline);

#endif
