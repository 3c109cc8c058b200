/* ct-jobs' PostgreSQL backend: one table, shared by every process (on every machine) that opens
 * the same database and schema.
 *
 * Connections come from a ct-pg pool (one per worker, plus a few for the heartbeat and the
 * application's calls); every statement is one short autocommit transaction except cancel. A
 * claim waits on the worker's token, so a stopping worker never hangs in a query: ct-pg stops the
 * statement on the server. The calls that have no token (renew, finish, enqueue, get, cancel) are
 * bounded by a timeout of their own instead.
 *
 * Claims take one row with SELECT ... FOR UPDATE SKIP LOCKED inside the claiming UPDATE: two
 * workers never take the same row, and neither waits for the other's lock. Every time that says
 * when a lease ends, or when a job is due, is computed by the server (now()), never by a worker:
 * the machines' clocks may disagree, the database's is the one they share. A worker's wall-clock
 * times (the interface's `now` and `run_at`) are only used as delays from its own now.
 *
 * Cancel requests reach other processes in two ways. The cancel sets cancel_requested and sends
 * NOTIFY ct_jobs_cancel in the same transaction; each queue that runs jobs keeps one connection
 * LISTENing (pg_listen.c) and hands the id to the workers' layer at once. A notification sent
 * while that connection is down is lost for good (River's bug #1358), so the heartbeat's renew
 * still reads cancel_requested every beat, and the listener, each time it (re)connects, asks for
 * the running jobs whose cancel was requested. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "backend.h"
#include "ct/pg.h"
#include "pg_listen.h"
#include "ct/time.h"
#include "ct/wait.h"

#define OP_MS             10000 /* bound on a call without a token (acquire + statement) */
#define CONNECT_MS        10000
#define SPIN_PAUSE_MS     5 /* a due job another worker is claiming right now: look again soon */
#define EXTRA_CONNECTIONS 3 /* beside one per worker: heartbeat, listener's catch-up, API calls */

/* The server's clock, in ms since the epoch. now() is the start of the transaction: one
 * statement here, apart from cancel. */
#define NOW_MS "(extract(epoch from now()) * 1000)::bigint"

/* Two processes creating the table at once would collide in the catalogs (a unique violation
 * on pg_type): first use is serialized per schema by a transaction-scoped advisory lock. */
#define SCHEMA                                                                                     \
    "BEGIN;"                                                                                       \
    "SET LOCAL client_min_messages = warning;" /* no "already exists, skipping" notices */         \
    "SELECT pg_advisory_xact_lock(hashtext('ct_jobs:' || coalesce(current_schema(), '')));"        \
    "CREATE TABLE IF NOT EXISTS ct_jobs ("                                                         \
    " id bigserial PRIMARY KEY, kind text NOT NULL, payload text NOT NULL,"                        \
    " status int NOT NULL, attempts int NOT NULL DEFAULT 0, max_attempts int NOT NULL,"            \
    " run_at bigint NOT NULL, enqueued_at bigint NOT NULL, started_at bigint NOT NULL DEFAULT 0,"  \
    " finished_at bigint NOT NULL DEFAULT 0, lease_owner text, lease_token bigint,"                \
    " lease_expires bigint, cancel_requested int NOT NULL DEFAULT 0,"                              \
    " last_error text NOT NULL DEFAULT '');"                                                       \
    "CREATE INDEX IF NOT EXISTS ct_jobs_due ON ct_jobs (run_at, id) WHERE status IN (0, 5);"       \
    "CREATE INDEX IF NOT EXISTS ct_jobs_leases ON ct_jobs (lease_expires) WHERE status = 1;"       \
    "CREATE INDEX IF NOT EXISTS ct_jobs_finished ON ct_jobs (finished_at)"                         \
    " WHERE status IN (2, 3, 4);"                                                                  \
    "COMMIT"

static const char SQL_ENQUEUE[] =
    "INSERT INTO ct_jobs (kind, payload, status, max_attempts, run_at, enqueued_at)"
    " VALUES ($1, $2, 0, $3, " NOW_MS " + $4, " NOW_MS ") RETURNING id";

/* A job whose worker vanished during its last attempt has none left: failed (x). Then one due
 * job, an expired lease first (c): the row is locked by the sub-select, and rows other workers
 * are claiming at this moment are skipped rather than waited for. When nothing was claimed, the
 * one row returned says, in its last column, how long until the next job is due (<= 0: one is
 * due but another worker was claiming it; NULL: none), so an idle worker costs one round trip. */
static const char SQL_CLAIM[] =
    "WITH x AS (UPDATE ct_jobs SET status = 4, finished_at = " NOW_MS ", lease_owner = NULL,"
    "  lease_token = NULL, lease_expires = NULL,"
    "  last_error = 'lease expired on the last attempt'"
    "  WHERE status = 1 AND lease_expires < " NOW_MS " AND attempts >= max_attempts),"
    " c AS (UPDATE ct_jobs SET status = 1, attempts = attempts + 1, lease_owner = $1,"
    "  lease_token = $2, lease_expires = " NOW_MS " + $3, started_at = " NOW_MS
    "  WHERE id = coalesce("
    "   (SELECT id FROM ct_jobs WHERE status = 1 AND lease_expires < " NOW_MS
    "    AND attempts < max_attempts LIMIT 1 FOR UPDATE SKIP LOCKED),"
    "   (SELECT id FROM ct_jobs WHERE status IN (0, 5) AND run_at <= " NOW_MS
    "    ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED))"
    "  RETURNING id, kind, payload, attempts, max_attempts, cancel_requested)"
    " SELECT id, kind, payload, attempts, max_attempts, cancel_requested, NULL::bigint FROM c"
    " UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL,"
    "  (SELECT min(run_at) - " NOW_MS " FROM ct_jobs WHERE status IN (0, 5))"
    " WHERE NOT EXISTS (SELECT 1 FROM c)";

static const char SQL_RENEW[] = "UPDATE ct_jobs SET lease_expires = " NOW_MS " + $1"
                                " WHERE id = $2 AND status = 1 AND attempts = $3"
                                " AND lease_token = $4 RETURNING cancel_requested";

/* $5: 1 when the attempt does not count (shutdown). $3: the retry's delay, NULL otherwise. */
static const char SQL_FINISH[] =
    "UPDATE ct_jobs SET status = $1, finished_at = CASE WHEN $2::int = 1 THEN " NOW_MS
    " ELSE 0 END, run_at = coalesce(" NOW_MS " + $3::bigint, run_at),"
    " last_error = coalesce($4, last_error), attempts = attempts - $5::int,"
    " lease_owner = NULL, lease_token = NULL, lease_expires = NULL"
    " WHERE id = $6 AND status = 1 AND attempts = $7 AND lease_token = $8";

static const char SQL_LOCK[] = "SELECT status FROM ct_jobs WHERE id = $1 FOR UPDATE";
static const char SQL_CANCEL_PENDING[] =
    "UPDATE ct_jobs SET status = 3, finished_at = " NOW_MS " WHERE id = $1";
/* The notification is delivered when the transaction commits, with the flag; pg_listen.c reads
 * it. */
static const char SQL_CANCEL_RUNNING[] =
    "WITH r AS (UPDATE ct_jobs SET cancel_requested = 1 WHERE id = $1 RETURNING id)"
    " SELECT pg_notify('" CT__JOBS_PG_CHANNEL "', current_schema() || ':' || id) FROM r";

/* The oldest finished jobs past their retention ($1 ms), $2 at most; rows another process is
 * deleting at the same time are skipped. */
static const char SQL_PRUNE[] =
    "DELETE FROM ct_jobs WHERE id IN (SELECT id FROM ct_jobs WHERE status IN (2, 3, 4)"
    " AND finished_at < " NOW_MS " - $1::bigint ORDER BY finished_at LIMIT $2::int"
    " FOR UPDATE SKIP LOCKED)";

static const char SQL_GET[] =
    "SELECT status, attempts, max_attempts, enqueued_at, started_at, finished_at, run_at,"
    " cancel_requested, kind, last_error FROM ct_jobs WHERE id = $1";

/* For tests and benchmarks only: no listener, so cancels from other processes arrive through the
 * heartbeat alone (what the backend would do without LISTEN/NOTIFY). */
int ct__jobs_pg_no_listener;

struct pgq {
    struct ct__jobs_backend base;
    ct_pg_pool_t *pool;
    char *conninfo;
    char schema[64];               /* current_schema() of our connections */
    struct ct__jobs_doorbell bell; /* an enqueue or a requeue here: idle claims look again */
    int listener_tried;            /* atomic */
    struct ct__jobs_pg_listener *listener;
    uint64_t lease_base;
    uint64_t lease_seq; /* atomic */
};

static struct pgq *P(struct ct__jobs_backend *be)
{
    return (struct pgq *) be;
}

#define plog(s, ...) ct__logf((s)->base.log, (s)->base.notify_ctx, __VA_ARGS__)

/* A token for a call that has none: fires after OP_MS. */
struct bound {
    ct_source_t *src;
};

static int bound_start(struct bound *b, int64_t ms)
{
    return ct_source_new_timeout(&b->src, ms);
}

/* rc of a call made with the bound's token: its firing is this call's own timeout. */
static int bound_end(struct bound *b, int rc)
{
    if (rc == -ECANCELED)
        rc = -ETIMEDOUT;
    ct_source_free(b->src);
    return rc;
}

/* Run one statement on a pooled connection. Returns 0 and *res (the caller PQclear()s it), or a
 * negative errno: -ECANCELED (tok), -ETIMEDOUT (deadline), -EIO (a server error), -ECONNRESET,
 * connect errors. */
static int query(struct pgq *s, PGresult **res, const char *sql, int n, const char *const *params,
                 const ct_token_t *tok, int64_t deadline)
{
    ct_pg_t *c;
    int rc = ct_pg_pool_acquire(s->pool, &c, tok, deadline);
    if (rc < 0)
        return rc;
    rc = ct_pg_query(c, res, sql, n, params, tok, NULL);
    ct_pg_pool_release(s->pool, c);
    return rc;
}

/* The same, with a timeout of OP_MS instead of a token. */
static int query_bounded(struct pgq *s, PGresult **res, const char *sql, int n,
                         const char *const *params, int64_t ms)
{
    struct bound b;
    int rc = bound_start(&b, ms);
    if (rc < 0)
        return rc;
    rc = query(s, res, sql, n, params, ct_source_token(b.src), ct_deadline_after(ms));
    return bound_end(&b, rc);
}

static int64_t val64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int pg_enqueue(struct ct__jobs_backend *be, const char *kind, const char *payload,
                      int max_attempts, int64_t now, int64_t run_at, int64_t *id)
{
    struct pgq *s = P(be);
    char attempts[16], delay[24];
    snprintf(attempts, sizeof(attempts), "%d", max_attempts);
    snprintf(delay, sizeof(delay), "%lld", (long long) (run_at > now ? run_at - now : 0));
    const char *params[] = {kind, payload, attempts, delay};
    PGresult *r;
    int rc = query_bounded(s, &r, SQL_ENQUEUE, 4, params, OP_MS);
    if (rc < 0)
        return rc;
    *id = val64(r, 0, 0);
    PQclear(r);
    ct__jobs_doorbell_ring(&s->bell);
    return 0;
}

/* The listener starts with the first claim: a queue used only to enqueue, read and cancel
 * (never started) needs none. */
static void start_listener(struct pgq *s)
{
    if (__atomic_load_n(&s->listener_tried, __ATOMIC_ACQUIRE) ||
        __atomic_exchange_n(&s->listener_tried, 1, __ATOMIC_ACQ_REL) ||
        __atomic_load_n(&ct__jobs_pg_no_listener, __ATOMIC_RELAXED))
        return;
    /* On failure (no thread, no memory) the heartbeat still delivers cancels. s->listener is
     * read again only by pg_free(), after every worker has returned. */
    if (ct__jobs_pg_listener_start(&s->listener, &s->base, s->conninfo, s->schema) < 0)
        plog(s, "cancel listener not started: cancels from other processes wait for the "
                "heartbeat");
}

/* One claim. Returns 0 and *c; -EAGAIN nothing due, *next_due_ms the delay until the next
 * waiting job (-1 none); other negative errno. */
static int try_claim(struct pgq *s, const char *worker, int64_t lease_ms, struct ct__jobs_claim *c,
                     const ct_token_t *tok, int64_t deadline, int64_t *next_due_ms)
{
    char lease_s[24], ms[24];
    int64_t lease =
        (int64_t) (s->lease_base + __atomic_add_fetch(&s->lease_seq, 1, __ATOMIC_RELAXED));
    snprintf(lease_s, sizeof(lease_s), "%lld", (long long) lease);
    snprintf(ms, sizeof(ms), "%lld", (long long) lease_ms);
    const char *params[] = {worker, lease_s, ms};
    ct_pg_t *conn;
    int rc = ct_pg_pool_acquire(s->pool, &conn, tok, deadline);
    if (rc < 0)
        return rc;
    PGresult *r;
    rc = ct_pg_query(conn, &r, SQL_CLAIM, 3, params, tok, NULL);
    ct_pg_pool_release(s->pool, conn);
    if (rc < 0)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return -EIO;
    }
    if (PQgetisnull(r, 0, 0)) {
        *next_due_ms = PQgetisnull(r, 0, 6) ? -1 : val64(r, 0, 6);
        if (*next_due_ms >= 0 && *next_due_ms < SPIN_PAUSE_MS)
            *next_due_ms = SPIN_PAUSE_MS;
        PQclear(r);
        return -EAGAIN;
    }
    *c = (struct ct__jobs_claim){.id = val64(r, 0, 0),
                                 .kind = ct__strdup(PQgetvalue(r, 0, 1)),
                                 .payload = ct__strdup(PQgetvalue(r, 0, 2)),
                                 .attempt = (int) val64(r, 0, 3),
                                 .max_attempts = (int) val64(r, 0, 4),
                                 .cancel_requested = (int) val64(r, 0, 5),
                                 .lease = lease};
    PQclear(r);
    if (!c->kind || !c->payload) {
        /* Claimed but cannot be run: give it back at once, not counted. */
        s->base.ops->finish(&s->base, c, CT__JOB_RELEASE, 0, NULL);
        ct__jobs_claim_clear(c);
        return -ENOMEM;
    }
    return 0;
}

static int pg_claim(struct ct__jobs_backend *be, const char *worker, int64_t lease_ms,
                    struct ct__jobs_claim *c, const ct_token_t *tok, int64_t deadline)
{
    struct pgq *s = P(be);
    start_listener(s);
    for (;;) {
        uint64_t seen = ct__jobs_doorbell_rings(&s->bell);
        int64_t next_due = -1;
        int rc = try_claim(s, worker, lease_ms, c, tok, deadline, &next_due);
        if (rc != -EAGAIN)
            return rc;
        /* Nothing due: next_due is ms from now on the server's clock. */
        if ((rc = ct__jobs_doorbell_wait(&s->bell, seen, tok, deadline, next_due)) < 0)
            return rc;
    }
}

static int pg_renew(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int64_t lease_ms)
{
    char ms[24], id[24], attempt[16], lease[24];
    snprintf(ms, sizeof(ms), "%lld", (long long) lease_ms);
    snprintf(id, sizeof(id), "%lld", (long long) c->id);
    snprintf(attempt, sizeof(attempt), "%d", c->attempt);
    snprintf(lease, sizeof(lease), "%lld", (long long) c->lease);
    const char *params[] = {ms, id, attempt, lease};
    PGresult *r;
    /* Past the lease, the renewal is pointless: bound it by the lease. */
    int rc = query_bounded(P(be), &r, SQL_RENEW, 4, params, lease_ms < OP_MS ? lease_ms : OP_MS);
    if (rc < 0)
        return rc;
    rc = PQntuples(r) == 0 ? -ESTALE : val64(r, 0, 0) ? 1 : 0;
    PQclear(r);
    return rc;
}

static int pg_finish(struct ct__jobs_backend *be, const struct ct__jobs_claim *c, int outcome,
                     int64_t run_at, const char *error)
{
    struct pgq *s = P(be);
    bool final = outcome == CT__JOB_DONE || outcome == CT__JOB_FAIL || outcome == CT__JOB_CANCEL;
    char st[8], delay[24], id[24], attempt[16], lease[24];
    snprintf(st, sizeof(st), "%d", ct__jobs_outcome_status[outcome]);
    if (outcome == CT__JOB_RETRY) {
        /* run_at is this machine's wall clock: only the delay it means is sent. */
        int64_t d = run_at - ct__jobs_wall_ms();
        snprintf(delay, sizeof(delay), "%lld", (long long) (d > 0 ? d : 0));
    }
    snprintf(id, sizeof(id), "%lld", (long long) c->id);
    snprintf(attempt, sizeof(attempt), "%d", c->attempt);
    snprintf(lease, sizeof(lease), "%lld", (long long) c->lease);
    const char *params[] = {st,
                            final ? "1" : "0",
                            outcome == CT__JOB_RETRY ? delay : NULL,
                            error && outcome != CT__JOB_RELEASE ? error : NULL,
                            outcome == CT__JOB_RELEASE ? "1" : "0",
                            id,
                            attempt,
                            lease};
    PGresult *r;
    int rc = query_bounded(s, &r, SQL_FINISH, 8, params, OP_MS);
    if (rc < 0)
        return rc;
    rc = strcmp(PQcmdTuples(r), "0") == 0 ? -ESTALE : 0;
    PQclear(r);
    if (rc == 0 && !final)
        ct__jobs_doorbell_ring(&s->bell);
    return rc;
}

static int pg_cancel(struct ct__jobs_backend *be, int64_t id)
{
    struct pgq *s = P(be);
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", (long long) id);
    const char *params[] = {ids};
    struct bound b;
    int rc = bound_start(&b, OP_MS);
    if (rc < 0)
        return rc;
    const ct_token_t *tok = ct_source_token(b.src);
    ct_pg_t *c;
    if ((rc = ct_pg_pool_acquire(s->pool, &c, tok, ct_deadline_after(OP_MS))) < 0)
        return bound_end(&b, rc);
    /* The row lock orders this against a claim of the same job: pending stays pending until we
     * commit, running is running. */
    PGresult *r = NULL;
    if ((rc = ct_pg_exec(c, "BEGIN", tok)) < 0 ||
        (rc = ct_pg_query(c, &r, SQL_LOCK, 1, params, tok, NULL)) < 0)
        goto out;
    int st = PQntuples(r) ? (int) val64(r, 0, 0) : -1;
    PQclear(r);
    r = NULL;
    if (st < 0) {
        rc = -ENOENT;
    } else if (st == CT_JOB_PENDING || st == CT_JOB_REQUEUED) {
        rc = ct_pg_query(c, &r, SQL_CANCEL_PENDING, 1, params, tok, NULL);
    } else if (st == CT_JOB_RUNNING) {
        rc = ct_pg_query(c, &r, SQL_CANCEL_RUNNING, 1, params, tok, NULL);
        rc = rc < 0 ? rc : 1;
    } else {
        rc = -EALREADY;
    }
    PQclear(r);
    if (rc >= 0) {
        int e = ct_pg_exec(c, "COMMIT", tok);
        if (e < 0)
            rc = e;
    }
out:
    ct_pg_pool_release(s->pool, c); /* rolls back what did not commit */
    return bound_end(&b, rc);
}

static int pg_get(struct ct__jobs_backend *be, int64_t id, ct_job_info_t *out)
{
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", (long long) id);
    const char *params[] = {ids};
    PGresult *r;
    int rc = query_bounded(P(be), &r, SQL_GET, 1, params, OP_MS);
    if (rc < 0)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return -ENOENT;
    }
    *out = (ct_job_info_t){.status = (int) val64(r, 0, 0),
                           .attempts = (int) val64(r, 0, 1),
                           .max_attempts = (int) val64(r, 0, 2),
                           .enqueued_at_ms = val64(r, 0, 3),
                           .started_at_ms = val64(r, 0, 4),
                           .finished_at_ms = val64(r, 0, 5),
                           .run_at_ms = val64(r, 0, 6),
                           .cancel_requested = (int) val64(r, 0, 7)};
    snprintf(out->kind, sizeof(out->kind), "%s", PQgetvalue(r, 0, 8));
    snprintf(out->last_error, sizeof(out->last_error), "%s", PQgetvalue(r, 0, 9));
    PQclear(r);
    return 0;
}

static int64_t pg_prune(struct ct__jobs_backend *be, int64_t retain_ms, int max,
                        const ct_token_t *tok)
{
    char retain[24], n[16];
    snprintf(retain, sizeof(retain), "%lld", (long long) retain_ms);
    snprintf(n, sizeof(n), "%d", max);
    const char *params[] = {retain, n};
    PGresult *r;
    int rc = query(P(be), &r, SQL_PRUNE, 2, params, tok, -1);
    if (rc < 0)
        return rc;
    int64_t deleted = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return deleted;
}

static void pg_free(struct ct__jobs_backend *be)
{
    struct pgq *s = P(be);
    ct__jobs_pg_listener_stop(s->listener);
    ct_pg_pool_free(s->pool);
    ct__free(s->conninfo);
    ct__jobs_doorbell_destroy(&s->bell);
    ct__free(s);
}

static const struct ct__jobs_backend_ops pg_ops = {
    .enqueue = pg_enqueue,
    .claim = pg_claim,
    .renew = pg_renew,
    .finish = pg_finish,
    .cancel = pg_cancel,
    .get = pg_get,
    .prune = pg_prune,
    .pending = NULL, /* durable: nothing is dropped */
    .free = pg_free,
};

int ct__jobs_pg_new(struct ct__jobs_backend **out, const char *conninfo, unsigned workers)
{
    struct pgq *s = ct__calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    ct__jobs_doorbell_init(&s->bell);
    s->base.ops = &pg_ops;
    s->lease_base = ct__jobs_lease_base();
    int rc;
    if (!(s->conninfo = ct__strdup(conninfo))) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = ct_pg_pool_new(&s->pool, conninfo,
                        &(ct_pg_pool_options_t){.max_size = (int) workers + EXTRA_CONNECTIONS,
                                                .connect_timeout_ms = CONNECT_MS});
    if (rc < 0)
        goto fail;
    ct_pg_t *c;
    if ((rc = ct_pg_pool_acquire(s->pool, &c, NULL, ct_deadline_after(CONNECT_MS))) < 0)
        goto fail;
    PGresult *r = NULL;
    if ((rc = ct_pg_exec(c, SCHEMA, NULL)) == 0 &&
        (rc = ct_pg_query(c, &r, "SELECT current_schema()", 0, NULL, NULL, NULL)) == 0) {
        snprintf(s->schema, sizeof(s->schema), "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    ct_pg_pool_release(s->pool, c);
    if (rc < 0)
        goto fail;
    *out = &s->base;
    return 0;
fail:
    pg_free(&s->base);
    return rc;
}
