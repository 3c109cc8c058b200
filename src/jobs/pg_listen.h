/* ct-jobs' PostgreSQL cancel listener (pg_listen.c), used by the backend in pg.c. */
#ifndef CT_JOBS_PG_LISTEN_H
#define CT_JOBS_PG_LISTEN_H

#include "backend.h"

/* The channel; the payload is "<schema>:<id>" (queues in different schemas of one database share
 * the channel and must not cancel each other's jobs). */
#define CT__JOBS_PG_CHANNEL "ct_jobs_cancel"

struct ct__jobs_pg_listener;

/* Start a thread that keeps one connection to `conninfo` LISTENing and calls
 * be->notify_cancel(be->notify_ctx, id) for each cancel notified for `schema`, and for each
 * running job whose cancel was requested, every time it (re)connects. It reconnects with backoff
 * and logs through be->log. conninfo and schema must outlive it. The thread inherits the
 * caller's signal mask.
 * Returns: 0 and *out; -ENOMEM; -EAGAIN (no thread). Thread: any. */
int ct__jobs_pg_listener_start(struct ct__jobs_pg_listener **out, struct ct__jobs_backend *be,
                               const char *conninfo, const char *schema);

/* Stop the thread (its waits end at once), join it and free it. NULL is ignored. */
void ct__jobs_pg_listener_stop(struct ct__jobs_pg_listener *l);

#endif
