/* ct-pg: a statement stops on the server when its token fires, and leaves no cancel behind.
 *
 * A query is sent with libpq's asynchronous API and the calling thread waits on the socket and
 * the token together (ct_fd_wait). When the token fires, that thread, not the token's callback,
 * sends the cancel request: PQcancel opens a second connection and blocks until the server has
 * processed the request, far too long for a callback that may run on an HTTP I/O thread.
 *
 * Two traps shape the rest (docs/pg.md has the measurements):
 *   - A cancel can be lost. Measured here: every cancel that reaches a backend during the first
 *     ~45 ms of its first JIT-compiled query (while LLVM is loaded) is swallowed, none with JIT
 *     off; the server also drops one that arrives while it is reading a command. So after
 *     sending one we wait only a short while for the result and send it again, at a steady
 *     pace for the first second (a lost cancel then costs about one interval past the end of
 *     the deaf window), backing off after that. A connection whose statement ignores cancels
 *     for CANCEL_GIVE_UP_MS is marked broken: the pool closes it, which ends the backend's work
 *     at its next write.
 *   - A cancel can land late and stop the *next* statement. PQcancel returns only once the
 *     server has signalled the backend, so when we stop waiting no cancel is on its way any
 *     more; the backend drops a pending one when it next waits for a command, but one that
 *     reached it while it was finishing the cancelled statement can stay pending. So after any
 *     cancel the connection runs `SELECT pg_sleep(0)`, which checks for interrupts at once and
 *     absorbs such a leftover (run again if it was hit), before the call returns. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "internal.h"

/* After a cancel, no result within CANCEL_RESEND_MS (or 3 times what sending the cancel took, if
 * longer): send it again, at that pace for CANCEL_STEADY_MS, then doubling the wait up to
 * CANCEL_MAX_RESEND_MS. Still no result after CANCEL_GIVE_UP_MS: the connection is broken. */
#define CANCEL_RESEND_MS     20
#define CANCEL_STEADY_MS     1000
#define CANCEL_MAX_RESEND_MS 500
#define CANCEL_GIVE_UP_MS    10000
#define ABSORB_MS            5000 /* bound on the round trip that absorbs a late cancel */
#define ABSORB_TRIES         3
#define RESTORE_MS           5000 /* bound on restoring statement_timeout */

static _Thread_local char connect_errmsg[512];

static void copy_msg(char *dst, size_t size, const char *msg)
{
    snprintf(dst, size, "%s", msg ? msg : "");
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
        dst[--n] = '\0';
}

static void set_err(ct_pg_t *c, const char *sqlstate, const char *msg)
{
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate ? sqlstate : "");
    copy_msg(c->errmsg, sizeof(c->errmsg), msg);
}

/* The connection cannot be used any more. */
static int lost(ct_pg_t *c)
{
    c->broken = true;
    set_err(c, "", PQerrorMessage(c->conn));
    if (!c->errmsg[0])
        set_err(c, "", "connection lost");
    return -ECONNRESET;
}

int ct_pg_connect(ct_pg_t **out, const char *conninfo, const ct_token_t *tok, int64_t deadline)
{
    connect_errmsg[0] = '\0';
    if (out)
        *out = NULL;
    if (!out || !conninfo || deadline < -1)
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    ct_pg_t *c = ct__calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int rc = 0;
    c->conn = PQconnectStart(conninfo);
    if (!c->conn) {
        rc = -ENOMEM;
        goto fail;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        rc = -EINVAL; /* libpq could not parse the conninfo */
        goto fail;
    }
    /* libpq's loop: start as if PQconnectPoll had asked to write. The socket can change between
     * polls (libpq tries each address in turn), so it is read again every time. */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            rc = strstr(PQerrorMessage(c->conn), "Connection refused") ? -ECONNREFUSED : -EIO;
            goto fail;
        }
        int w = ct_fd_wait(PQsocket(c->conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, tok,
                           deadline);
        if (w < 0) {
            rc = w;
            goto fail;
        }
        st = PQconnectPoll(c->conn);
    }
    if (PQsetnonblocking(c->conn, 1) != 0) {
        rc = -EIO;
        goto fail;
    }
    if (!(c->cancel = PQgetCancel(c->conn))) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (rc == -ECANCELED || rc == -ETIMEDOUT)
        copy_msg(connect_errmsg, sizeof(connect_errmsg),
                 rc == -ECANCELED ? "canceled by the token" : "deadline passed");
    else if (c->conn)
        copy_msg(connect_errmsg, sizeof(connect_errmsg), PQerrorMessage(c->conn));
    else
        copy_msg(connect_errmsg, sizeof(connect_errmsg), "out of memory");
    ct_pg_close(c);
    return rc;
}

const char *ct_pg_connect_errmsg(void)
{
    return connect_errmsg;
}

void ct_pg_close(ct_pg_t *c)
{
    if (!c)
        return;
    if (c->cancel)
        PQfreeCancel(c->cancel);
    if (c->conn)
        PQfinish(c->conn);
    ct__free(c);
}

PGconn *ct_pg_handle(ct_pg_t *c)
{
    return c ? c->conn : NULL;
}

const char *ct_pg_errmsg(ct_pg_t *c)
{
    return c ? c->errmsg : "no connection";
}

const char *ct_pg_sqlstate(ct_pg_t *c)
{
    return c ? c->sqlstate : "";
}

/* One command in flight: what the caller asked, what happened. */
struct call {
    const ct_token_t *tok;
    int64_t deadline;
    bool canceled; /* we sent at least one cancel request */
    int why;       /* -ECANCELED or -ETIMEDOUT: what made us send it */
    bool copy;     /* the command started a COPY, which ct does not drive */
    bool copy_out; /* in COPY TO STDOUT: rows to read and drop */
    PGresult *res; /* the first error result, or else the last result */
};

/* Send a cancel request; returns how long that took, in ms. */
static int64_t send_cancel(ct_pg_t *c)
{
    char err[256];
    int64_t t0 = ct_now_ms();
    c->cancels++;
    /* A failure to reach the postmaster is not final: the re-send timer tries again. */
    (void) PQcancel(c->cancel, err, sizeof(err));
    return ct_now_ms() - t0;
}

static void keep(struct call *k, PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    bool r_err = s == PGRES_FATAL_ERROR;
    bool k_err = k->res && PQresultStatus(k->res) == PGRES_FATAL_ERROR;
    if (k_err && !r_err) {
        PQclear(r);
        return;
    }
    if (k_err && r_err) {
        PQclear(r); /* the first error is the one that matters */
        return;
    }
    PQclear(k->res);
    k->res = r;
}

/* Wait until the command just sent has been answered completely (PQgetResult gave NULL), or
 * the connection is lost. If the token fires or the deadline passes first, send a cancel
 * request and keep waiting for the answer, re-sending the request while none comes.
 * Returns: 0, every result read (k->res holds the one that counts); -ECONNRESET; k->why when
 * even the re-sent cancels got no answer (the connection is then marked broken). */
static int await(ct_pg_t *c, struct call *k)
{
    int sock = PQsocket(c->conn);
    bool flushed = false;
    int64_t resend_at = -1, give_up = -1, interval = CANCEL_RESEND_MS, first = -1;
    for (;;) {
        if (!flushed) {
            int f = PQflush(c->conn);
            if (f < 0)
                return lost(c);
            flushed = f == 0;
        }
        while (!PQisBusy(c->conn)) {
            PGresult *r = PQgetResult(c->conn);
            if (!r)
                return PQstatus(c->conn) == CONNECTION_OK ? 0 : lost(c);
            ExecStatusType s = PQresultStatus(r);
            if (s == PGRES_COPY_IN) {
                k->copy = true;
                PQclear(r);
                if (PQputCopyEnd(c->conn, "COPY is not supported by ct_pg_query") < 0)
                    return lost(c);
                flushed = false;
                continue;
            }
            if (s == PGRES_COPY_BOTH) {
                /* Replication streams never end on their own: give up on the connection. */
                PQclear(r);
                c->broken = true;
                set_err(c, "", "COPY BOTH is not supported by ct_pg_query");
                return -ECONNRESET;
            }
            if (s == PGRES_COPY_OUT) {
                PQclear(r);
                k->copy = k->copy_out = true;
            }
            if (k->copy_out) {
                /* Read the rows of COPY TO STDOUT and drop them, so the command can end. */
                char *buf;
                int n;
                while ((n = PQgetCopyData(c->conn, &buf, 1)) > 0)
                    PQfreemem(buf);
                if (n == -2)
                    return lost(c);
                if (n == 0)
                    break; /* more to come: wait for it */
                k->copy_out = false;
                continue;
            }
            keep(k, r);
        }
        if (PQstatus(c->conn) != CONNECTION_OK)
            return lost(c);
        int events = POLLIN | (flushed ? 0 : POLLOUT);
        int w = k->canceled ? ct_fd_wait(sock, events, NULL, resend_at)
                            : ct_fd_wait(sock, events, k->tok, k->deadline);
        if (w == -ECANCELED || w == -ETIMEDOUT) {
            int64_t now = ct_now_ms();
            if (!k->canceled) {
                k->canceled = true;
                k->why = w;
                first = now;
                give_up = now + CANCEL_GIVE_UP_MS;
            } else if (now >= give_up) {
                c->broken = true;
                set_err(c, "", "the server did not answer the cancel requests");
                return k->why;
            } else if (now - first >= CANCEL_STEADY_MS) {
                interval =
                    interval * 2 < CANCEL_MAX_RESEND_MS ? interval * 2 : CANCEL_MAX_RESEND_MS;
            }
            /* A loaded server is slow to fork the process that delivers a cancel and slow to
             * act on it alike: wait at least a few times what sending the request took before
             * calling it lost, or every slow cancel would be sent twice. */
            int64_t took = send_cancel(c);
            if (interval < 3 * took)
                interval = 3 * took < CANCEL_MAX_RESEND_MS ? 3 * took : CANCEL_MAX_RESEND_MS;
            now = ct_now_ms();
            resend_at = now + interval < give_up ? now + interval : give_up;
            continue;
        }
        if (w < 0) {
            c->broken = true;
            set_err(c, "", strerror(-w));
            return w;
        }
        if (!PQconsumeInput(c->conn))
            return lost(c);
    }
}

/* The code for a completed command's result (NULL: none). */
static int from_result(ct_pg_t *c, const struct call *k, const PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK || s == PGRES_EMPTY_QUERY)
        return k->copy ? -EINVAL : 0;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    set_err(c, state, msg ? msg : r ? PQresultErrorMessage(r) : "no result");
    if (PQstatus(c->conn) != CONNECTION_OK) {
        c->broken = true;
        return -ECONNRESET;
    }
    if (k->copy)
        return -EINVAL;
    if (state && strcmp(state, "57014") == 0)
        return k->canceled ? k->why : -ETIMEDOUT; /* not ours: the server's statement_timeout */
    return -EIO;
}

static int run(ct_pg_t *c, PGresult **res, const char *sql, int nparams, const char *const *params,
               bool simple, const ct_token_t *tok, int64_t deadline);

/* After a cancel: absorb one that may still be pending in the backend (see the top of the
 * file). Outside a transaction only: in an aborted one nothing but ROLLBACK runs, and the
 * backend drops a pending cancel when it waits for that command. The caller's error stays. */
static void absorb(ct_pg_t *c)
{
    char state[sizeof(c->sqlstate)], msg[sizeof(c->errmsg)];
    memcpy(state, c->sqlstate, sizeof(state));
    memcpy(msg, c->errmsg, sizeof(msg));
    int i;
    c->absorbing = true;
    for (i = 0; i < ABSORB_TRIES && !c->broken; i++) {
        if (PQtransactionStatus(c->conn) != PQTRANS_IDLE)
            break;
        int rc =
            run(c, NULL, "SELECT pg_sleep(0)", 0, NULL, true, NULL, ct_deadline_after(ABSORB_MS));
        if (rc == 0)
            break;
        if (rc != -ETIMEDOUT && rc != -ECANCELED) {
            c->broken = true; /* something else is wrong: do not trust the connection */
            break;
        }
    }
    c->absorbing = false;
    if (i == ABSORB_TRIES)
        c->broken = true;
    memcpy(c->sqlstate, state, sizeof(state));
    memcpy(c->errmsg, msg, sizeof(msg));
}

/* Send one command, wait for its whole answer, map it. res NULL: the result is not wanted. */
static int run(ct_pg_t *c, PGresult **res, const char *sql, int nparams, const char *const *params,
               bool simple, const ct_token_t *tok, int64_t deadline)
{
    set_err(c, "", "");
    if (c->broken || PQstatus(c->conn) != CONNECTION_OK) {
        c->broken = true;
        set_err(c, "", "the connection is broken");
        return -ECONNRESET;
    }
    if (ct_token_canceled(tok))
        return -ECANCELED;
    int ok = simple ? PQsendQuery(c->conn, sql)
                    : PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (!ok) {
        if (PQstatus(c->conn) != CONNECTION_OK)
            return lost(c);
        set_err(c, "", PQerrorMessage(c->conn)); /* another command in progress, ... */
        return -EINVAL;
    }
    struct call k = {.tok = tok, .deadline = deadline};
    int rc = await(c, &k);
    if (rc == 0)
        rc = from_result(c, &k, k.res);
    if (k.canceled && !c->broken && !c->absorbing)
        absorb(c);
    if (rc == 0 && res)
        *res = k.res;
    else
        PQclear(k.res);
    return rc;
}

int ct_pg_query(ct_pg_t *c, PGresult **res, const char *sql, int nparams, const char *const *params,
                const ct_token_t *tok, const ct_pg_query_options_t *o)
{
    ct_pg_query_options_t opt = o ? *o : (ct_pg_query_options_t){0};
    if (res)
        *res = NULL;
    if (!c || !res || !sql || nparams < 0 || nparams > 65535 || (nparams > 0 && !params) ||
        opt.statement_timeout_ms < 0 || opt.statement_timeout_ms > INT32_MAX)
        return -EINVAL;
    if (opt.statement_timeout_ms == 0)
        return run(c, res, sql, nparams, params, false, tok, -1);

    /* SET before and restore after (two round trips of ~0.1 ms each here), rather than SET LOCAL,
     * which would need a transaction around a statement that may not want one. */
    char ms[24];
    snprintf(ms, sizeof(ms), "%lld", (long long) opt.statement_timeout_ms);
    const char *set[] = {ms};
    PGresult *r;
    int rc = run(c, &r,
                 "SELECT current_setting('statement_timeout'), "
                 "set_config('statement_timeout', $1, false)",
                 1, set, false, tok, -1);
    if (rc < 0)
        return rc;
    char prev[64];
    snprintf(prev, sizeof(prev), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    rc = run(c, res, sql, nparams, params, false, tok, -1);

    char state[sizeof(c->sqlstate)], msg[sizeof(c->errmsg)];
    memcpy(state, c->sqlstate, sizeof(state));
    memcpy(msg, c->errmsg, sizeof(msg));
    const char *restore[] = {prev};
    int rc2 = run(c, &r, "SELECT set_config('statement_timeout', $1, false)", 1, restore, false,
                  NULL, ct_deadline_after(RESTORE_MS));
    if (rc2 == 0)
        PQclear(r);
    else if (!c->broken && PQtransactionStatus(c->conn) == PQTRANS_IDLE)
        c->broken = true; /* the setting would outlive this call: do not reuse the connection */
    /* In an aborted transaction the restore fails, and ROLLBACK undoes the SET anyway. */
    memcpy(c->sqlstate, state, sizeof(state));
    memcpy(c->errmsg, msg, sizeof(msg));
    return rc;
}

int ct_pg_exec(ct_pg_t *c, const char *sql, const ct_token_t *tok)
{
    if (!c || !sql)
        return -EINVAL;
    return run(c, NULL, sql, 0, NULL, true, tok, -1);
}

int ct__pg_exec_bounded(ct_pg_t *c, const char *sql, int64_t deadline)
{
    int rc = run(c, NULL, sql, 0, NULL, true, NULL, deadline);
    if (rc == -ETIMEDOUT && PQtransactionStatus(c->conn) == PQTRANS_ACTIVE)
        c->broken = true;
    return rc;
}
