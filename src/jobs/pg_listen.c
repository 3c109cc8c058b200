/* ct-jobs' PostgreSQL cancel listener: one connection per queue LISTENing on the cancel channel.
 *
 * A thread waits on the connection's socket and its stop token together (ct_fd_wait), reads what
 * arrived and hands every id notified for our schema to the workers' layer, which fires the
 * job's token if the job runs here. A notification sent while the connection is down is lost
 * for good (River's bug #1358): so each time the listener (re)connects, once LISTEN is in place,
 * it asks for the running jobs whose cancel was requested, and delivers those too; and the
 * heartbeat's renewal (pg.c) reads the flag every beat in any case. The connection breaks when
 * the server restarts or an administrator terminates its backend; the listener reconnects with
 * backoff (50 ms doubling to 5 s), and logs each change. */
#define _GNU_SOURCE
#include "pg_listen.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "ct/pg.h"
#include "ct/time.h"
#include "ct/wait.h"

#define CONNECT_MS         10000
#define LISTEN_BACKOFF_MS  50 /* first wait before reconnecting; doubles */
#define LISTEN_BACKOFF_MAX 5000

static const char SQL_REQUESTED[] =
    "SELECT id FROM ct_jobs WHERE status = 1 AND cancel_requested = 1";

struct ct__jobs_pg_listener {
    struct ct__jobs_backend *be;
    const char *conninfo, *schema;
    ct_source_t *stop;
    pthread_t thread;
};

#define plog(s, ...) ct__logf((s)->be->log, (s)->be->notify_ctx, __VA_ARGS__)

/* Hand every notification read so far to the workers' layer. */
static void deliver(struct ct__jobs_pg_listener *s, PGconn *conn)
{
    PGnotify *n;
    size_t len = strlen(s->schema);
    while ((n = PQnotifies(conn))) {
        const char *p = n->extra;
        if (strncmp(p, s->schema, len) == 0 && p[len] == ':') {
            int64_t id = strtoll(p + len + 1, NULL, 10);
            if (id > 0)
                s->be->notify_cancel(s->be->notify_ctx, id);
        }
        PQfreemem(n);
    }
}

/* Connect, LISTEN, then ask for the cancels requested while we were not listening. */
static int listen_connect(struct ct__jobs_pg_listener *s, ct_pg_t **out, const ct_token_t *stop)
{
    ct_pg_t *c;
    int rc = ct_pg_connect(&c, s->conninfo, stop, ct_deadline_after(CONNECT_MS));
    if (rc < 0)
        return rc;
    char app[96];
    snprintf(app, sizeof(app), "ct-jobs listener %s", s->schema);
    const char *params[] = {app};
    PGresult *r;
    if ((rc = ct_pg_query(c, &r, "SELECT set_config('application_name', $1, false)", 1, params,
                          stop, NULL)) < 0)
        goto fail;
    PQclear(r);
    if ((rc = ct_pg_exec(c, "LISTEN " CT__JOBS_PG_CHANNEL, stop)) < 0)
        goto fail;
    /* Only now, with LISTEN in place: a cancel committed from here on is either notified or
     * seen by this query. */
    if ((rc = ct_pg_query(c, &r, SQL_REQUESTED, 0, NULL, stop, NULL)) < 0)
        goto fail;
    for (int i = 0; i < PQntuples(r); i++)
        s->be->notify_cancel(s->be->notify_ctx, strtoll(PQgetvalue(r, i, 0), NULL, 10));
    PQclear(r);
    *out = c;
    return 0;
fail:
    ct_pg_close(c);
    return rc;
}

static void *listener_main(void *arg)
{
    struct ct__jobs_pg_listener *s = arg;
    const ct_token_t *stop = ct_source_token(s->stop);
    int64_t backoff = LISTEN_BACKOFF_MS;
    int was_connected = 0;
    while (!ct_token_canceled(stop)) {
        ct_pg_t *c = NULL;
        int rc = listen_connect(s, &c, stop);
        if (rc == 0) {
            plog(s, "cancel listener %s", was_connected ? "reconnected" : "connected");
            was_connected = 1;
            backoff = LISTEN_BACKOFF_MS;
            PGconn *conn = ct_pg_handle(c);
            deliver(s, conn); /* notifications that came with the last answers */
            for (;;) {
                rc = ct_fd_wait(PQsocket(conn), POLLIN, stop, -1);
                if (rc < 0)
                    break;
                if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK) {
                    rc = -ECONNRESET;
                    break;
                }
                deliver(s, conn);
            }
            ct_pg_close(c);
        }
        if (ct_token_canceled(stop))
            break;
        plog(s,
             "cancel listener: %s; reconnecting in %lld ms (the heartbeat still delivers "
             "cancels)",
             ct_strerror(rc), (long long) backoff);
        ct_sleep_ms(backoff, stop);
        backoff = backoff * 2 < LISTEN_BACKOFF_MAX ? backoff * 2 : LISTEN_BACKOFF_MAX;
    }
    return NULL;
}

int ct__jobs_pg_listener_start(struct ct__jobs_pg_listener **out, struct ct__jobs_backend *be,
                               const char *conninfo, const char *schema)
{
    struct ct__jobs_pg_listener *s = ct__calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    *s = (struct ct__jobs_pg_listener){.be = be, .conninfo = conninfo, .schema = schema};
    int rc = ct_source_new(&s->stop);
    if (rc == 0 && (rc = ct__thread_start(&s->thread, listener_main, s)) < 0)
        ct_source_free(s->stop);
    if (rc < 0) {
        ct__free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void ct__jobs_pg_listener_stop(struct ct__jobs_pg_listener *s)
{
    if (!s)
        return;
    ct_source_cancel(s->stop, CT_SHUTDOWN, "jobs freed");
    pthread_join(s->thread, NULL);
    ct_source_free(s->stop);
    ct__free(s);
}
