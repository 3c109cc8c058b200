/* ct-pg's pool: a semaphore counts the connections that may still be handed out, a list under a
 * mutex holds the idle ones.
 *
 * A connection is made clean when it comes back, not when it goes out, so the thread that got
 * it into a state pays for leaving it: a transaction left open or aborted is rolled back, a
 * broken connection is closed. No cancel can be pending on a released connection: ct_pg calls
 * send cancels only synchronously, from the calling thread, and absorb a late one before they
 * return (src/pg/pg.c). On the way out an idle connection gets a check that costs no round trip
 * (has the server closed it or written to it while it sat idle?), and a round trip after a long
 * idle time, which finds a connection a firewall or a restart dropped silently. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "internal.h"

#define DEFAULT_MAX_SIZE      10
#define MAX_MAX_SIZE          10000
#define DEFAULT_CONNECT_MS    10000
#define DEFAULT_IDLE_CHECK_MS 30000
#define RESET_MS              5000 /* bound on the ROLLBACK of a released connection */
#define CHECK_MS              5000 /* bound on the round trip of the idle check */

struct ct_pg_pool {
    char *conninfo;
    ct_pg_pool_options_t o;
    ct_sem_t slots; /* one permit per connection that may still be handed out */
    pthread_mutex_t mu;
    ct_pg_t *idle; /* most recently released first: the warmest connection goes out next */
    int size, nidle, waiting;
    uint64_t opened, discarded, resets;
};

int ct_pg_pool_new(ct_pg_pool_t **out, const char *conninfo, const ct_pg_pool_options_t *o)
{
    ct_pg_pool_options_t opt = o ? *o : (ct_pg_pool_options_t){0};
    if (out)
        *out = NULL;
    if (!out || !conninfo || opt.max_size < 0 || opt.max_size > MAX_MAX_SIZE ||
        opt.connect_timeout_ms < 0 || opt.idle_check_ms < -1)
        return -EINVAL;
    if (!opt.max_size)
        opt.max_size = DEFAULT_MAX_SIZE;
    if (!opt.connect_timeout_ms)
        opt.connect_timeout_ms = DEFAULT_CONNECT_MS;
    if (!opt.idle_check_ms)
        opt.idle_check_ms = DEFAULT_IDLE_CHECK_MS;
    ct_pg_pool_t *p = ct__calloc(1, sizeof(*p));
    size_t n = strlen(conninfo) + 1;
    if (!p || !(p->conninfo = ct__malloc(n))) {
        ct__free(p);
        return -ENOMEM;
    }
    memcpy(p->conninfo, conninfo, n);
    p->o = opt;
    int rc = ct_sem_init(&p->slots, opt.max_size);
    if (rc < 0 || pthread_mutex_init(&p->mu, NULL) != 0) {
        if (rc == 0)
            ct_sem_destroy(&p->slots);
        ct__free(p->conninfo);
        ct__free(p);
        return rc < 0 ? rc : -ENOMEM;
    }
    *out = p;
    return 0;
}

void ct_pg_pool_free(ct_pg_pool_t *p)
{
    if (!p)
        return;
    while (p->idle) {
        ct_pg_t *c = p->idle;
        p->idle = c->next;
        ct_pg_close(c);
    }
    ct_sem_destroy(&p->slots);
    pthread_mutex_destroy(&p->mu);
    ct__free(p->conninfo);
    ct__free(p);
}

/* Can `c`, idle in the pool, be handed out? */
static bool healthy(ct_pg_pool_t *p, ct_pg_t *c)
{
    if (c->broken || PQstatus(c->conn) != CONNECTION_OK ||
        PQtransactionStatus(c->conn) != PQTRANS_IDLE)
        return false;
    /* An idle connection has nothing to read, unless the server closed it (a FATAL message and
     * the end of the stream, after pg_terminate_backend or a restart) or sent a notification.
     * The FATAL message can come before the end of the stream, leaving libpq's status OK for
     * now, so anything read here is settled with a round trip. */
    struct pollfd pfd = {.fd = PQsocket(c->conn), .events = POLLIN};
    bool spoke = poll(&pfd, 1, 0) != 0;
    if (spoke && (!PQconsumeInput(c->conn) || PQstatus(c->conn) != CONNECTION_OK))
        return false;
    if (spoke || (p->o.idle_check_ms >= 0 && ct_now_ms() - c->idle_since > p->o.idle_check_ms))
        return ct__pg_exec_bounded(c, "", ct_deadline_after(CHECK_MS)) == 0;
    return true;
}

static void discard(ct_pg_pool_t *p, ct_pg_t *c)
{
    pthread_mutex_lock(&p->mu);
    p->size--;
    p->discarded++;
    pthread_mutex_unlock(&p->mu);
    ct_pg_close(c);
}

int ct_pg_pool_acquire(ct_pg_pool_t *p, ct_pg_t **out, const ct_token_t *tok, int64_t deadline)
{
    if (out)
        *out = NULL;
    if (!p || !out || deadline < -1)
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    p->waiting++;
    pthread_mutex_unlock(&p->mu);
    int rc = ct_sem_wait(&p->slots, tok, deadline);
    pthread_mutex_lock(&p->mu);
    p->waiting--;
    pthread_mutex_unlock(&p->mu);
    if (rc < 0)
        return rc;
    /* Each turn takes one connection off the idle list: the loop ends. */
    for (;;) {
        pthread_mutex_lock(&p->mu);
        ct_pg_t *c = p->idle;
        if (c) {
            p->idle = c->next;
            p->nidle--;
        }
        pthread_mutex_unlock(&p->mu);
        if (!c)
            break;
        if (healthy(p, c)) {
            c->next = NULL;
            *out = c;
            return 0;
        }
        discard(p, c);
    }
    int64_t dl = ct_deadline_after(p->o.connect_timeout_ms);
    if (deadline >= 0 && deadline < dl)
        dl = deadline;
    ct_pg_t *c;
    if ((rc = ct_pg_connect(&c, p->conninfo, tok, dl)) < 0) {
        ct_sem_post(&p->slots);
        return rc;
    }
    pthread_mutex_lock(&p->mu);
    p->size++;
    p->opened++;
    pthread_mutex_unlock(&p->mu);
    *out = c;
    return 0;
}

void ct_pg_pool_release(ct_pg_pool_t *p, ct_pg_t *c)
{
    if (!p || !c)
        return;
    bool ok = !c->broken && PQstatus(c->conn) == CONNECTION_OK;
    bool reset = false;
    if (ok) {
        PGTransactionStatusType ts = PQtransactionStatus(c->conn);
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            reset = true;
            ok = ct__pg_exec_bounded(c, "ROLLBACK", ct_deadline_after(RESET_MS)) == 0 &&
                 PQtransactionStatus(c->conn) == PQTRANS_IDLE;
        } else if (ts != PQTRANS_IDLE) {
            ok = false; /* a command still running through the raw handle, or unknown */
        }
    }
    if (ok) {
        c->idle_since = ct_now_ms();
        pthread_mutex_lock(&p->mu);
        c->next = p->idle;
        p->idle = c;
        p->nidle++;
        if (reset)
            p->resets++;
        pthread_mutex_unlock(&p->mu);
    } else {
        discard(p, c);
    }
    ct_sem_post(&p->slots);
}

void ct_pg_pool_stats(ct_pg_pool_t *p, ct_pg_pool_stats_t *st)
{
    if (!st)
        return;
    memset(st, 0, sizeof(*st));
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    st->size = p->size;
    st->idle = p->nidle;
    st->waiting = p->waiting;
    st->opened = p->opened;
    st->discarded = p->discarded;
    st->resets = p->resets;
    pthread_mutex_unlock(&p->mu);
}
