/* Channels: the waiting and the waking around the element stores of chan_store.c.
 *
 * The fast path takes no lock: a bounded channel is a lock-free ring, and a send or receive
 * that finds room or an element costs one CAS, two copies and one load that asks "is anyone
 * waiting on the other side?". Only when the answer is yes does it take the channel's lock, to
 * wake one waiter.
 *
 * A thread that has to wait spins briefly first (see SPIN_* below: a park and wake-up round trip
 * costs far more than the other side usually takes to move), then queues a ct__waiter on its
 * side's queue (senders wait for room, receivers for an element), tries once more, and parks in
 * ct__park(). Queuing is a seq_cst increment of the queue's count before the last try; the other
 * side's seq_cst CAS on the ring comes before its seq_cst load of that count. So either the last
 * try sees the other side's change, or the other side sees the waiter and wakes it: no wake-up
 * is lost, and nobody pays for one when nobody waits.
 *
 * A wake-up is a promise, not a transfer: the element stays in the ring until a receiver's CAS
 * takes it, so it can never be lost or taken twice. The waker dequeues the waiter and marks it
 * SIGNALED under the lock (the waiter cannot leave meanwhile), then wakes its futex after
 * unlocking. A waiter that was signaled always tries the ring again before it looks at its token
 * or deadline: a completed wake-up wins, as with ct_sem_wait(). If it was signaled but got what it
 * wanted some other way, it passes the wake-up on to the next waiter, so that no element (or
 * slot) is left behind while another thread sleeps. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>

#include "chan_store.h"
#include "ct/chan.h"
#include "ct/time.h"
#include "internal.h"
#include "park.h"

/* Before parking, try again SPIN_PAUSE_ROUNDS times after SPIN_PAUSES cpu pauses each (about
 * 2 us in all: the other side, running on the other core, usually moves by then), then
 * SPIN_YIELD_ROUNDS times after a sched_yield() each (when both sides share a core, the other
 * one must run before anything can change; a yield lets it, a futex round trip costs far more).
 * Tuned with bench/bench_chan.c on a 2-core VM, where a park and wake-up round trip costs tens
 * of microseconds. */
#define SPIN_PAUSE_ROUNDS 8
#define SPIN_PAUSES       8
#define SPIN_YIELD_ROUNDS 16

struct waitq {
    struct ct__waiter *head, *tail; /* under the channel's lock */
    uint32_t n;                     /* atomic: how many are queued, read without the lock */
};

struct ct_chan {
    struct ct__ring ring;   /* bounded channels; first, for the padding around head and tail */
    struct ct__growq growq; /* unbounded channels */
    size_t capacity;
    bool bounded;
    /* The wait queues change whenever threads wait: keep them off the lines above, which every
     * send and receive reads. */
    char pad[CT__CHAN_PAD];
    pthread_mutex_t mu;     /* guards both wait queues */
    struct waitq senders;   /* waiting for room */
    struct waitq receivers; /* waiting for an element */
    /* a bounded channel's slots follow */
};

/* What one attempt does: a send of `src` or a receive into `dst`. */
struct op {
    bool send;
    const void *src;
    void *dst;
};

/* ---- wait queues ---------------------------------------------------------------------------- */

static void waitq_add(ct_chan_t *ch, struct waitq *q, struct ct__waiter *w)
{
    pthread_mutex_lock(&ch->mu);
    ct__waitq_push(&q->head, &q->tail, w);
    __atomic_add_fetch(&q->n, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&ch->mu);
}

/* Unlink `w`; the caller holds the lock. */
static void waitq_unlink(struct waitq *q, struct ct__waiter *w)
{
    ct__waitq_remove(&q->head, &q->tail, w);
    __atomic_sub_fetch(&q->n, 1, __ATOMIC_SEQ_CST);
}

/* Leave the queue. Returns true if a waker took us off it first (we were signaled). */
static bool waitq_leave(ct_chan_t *ch, struct waitq *q, struct ct__waiter *w)
{
    pthread_mutex_lock(&ch->mu);
    bool signaled = !w->queued;
    if (!signaled)
        waitq_unlink(q, w);
    pthread_mutex_unlock(&ch->mu);
    return signaled;
}

/* Wake the longest waiting thread of `q`, if there is one. The common case, nobody waiting, is
 * one load. */
static void notify(ct_chan_t *ch, struct waitq *q)
{
    if (__atomic_load_n(&q->n, __ATOMIC_SEQ_CST) == 0)
        return;
    pthread_mutex_lock(&ch->mu);
    struct ct__waiter *w = q->head;
    if (!w) {
        pthread_mutex_unlock(&ch->mu);
        return;
    }
    waitq_unlink(q, w);
    uint32_t *word = &w->word;
    uint32_t old = ct__waiter_signal(w);
    pthread_mutex_unlock(&ch->mu);
    ct__waiter_wake(word, old);
}

/* Wake every waiter of `q`; the caller holds the lock. Waking under the lock keeps the waiters
 * from leaving before we are done with them (as ct_cond_broadcast() does). */
static void wake_all(struct waitq *q)
{
    struct ct__waiter *w;
    while ((w = q->head)) {
        waitq_unlink(q, w);
        ct__waiter_wake(&w->word, ct__waiter_signal(w));
    }
}

/* ---- attempts ------------------------------------------------------------------------------- */

/* One attempt that does not wait; on success, wake one thread waiting on the other side.
 * Returns: 0; -EAGAIN; -EPIPE; -ENOMEM. */
static int attempt(ct_chan_t *ch, const struct op *op)
{
    int rc;
    if (op->send) {
        rc = ch->bounded ? ct__ring_try_send(&ch->ring, op->src)
                         : ct__growq_try_send(&ch->growq, op->src);
        if (rc == 0)
            notify(ch, &ch->receivers);
    } else {
        rc = ch->bounded ? ct__ring_try_recv(&ch->ring, op->dst)
                         : ct__growq_try_recv(&ch->growq, op->dst);
        if (rc == 0 && ch->bounded)
            notify(ch, &ch->senders); /* an unbounded channel's senders never wait */
    }
    return rc;
}

/* Try again for a little while before parking; stop early if the token fires or the deadline
 * passes (the caller then parks, which sorts out which). */
static int spin(ct_chan_t *ch, const struct op *op, const ct_token_t *tok, int64_t deadline_ns)
{
    for (int i = 0; i < SPIN_PAUSE_ROUNDS + SPIN_YIELD_ROUNDS; i++) {
        if (i < SPIN_PAUSE_ROUNDS) {
            for (int k = 0; k < SPIN_PAUSES; k++)
                ct__cpu_relax();
        } else {
            sched_yield();
            if (deadline_ns >= 0 && ct_now_ns() >= deadline_ns)
                return -EAGAIN;
        }
        if (ct_token_canceled(tok))
            return -ECANCELED;
        int rc = attempt(ch, op);
        if (rc != -EAGAIN)
            return rc;
    }
    return -EAGAIN;
}

/* Queue on `q`, try again, park; repeat until the attempt stops saying -EAGAIN, the token fires
 * or the deadline passes. */
static int wait_on(ct_chan_t *ch, struct waitq *q, const struct op *op, const ct_token_t *tok,
                   int64_t deadline_ns)
{
    struct ct__waiter w;
    for (;;) {
        ct__waiter_init(&w); /* nobody else holds it: we are off the queue and unparked */
        waitq_add(ch, q, &w);
        int rc = attempt(ch, op); /* from here on, the other side's change wakes us */
        if (rc != -EAGAIN) {
            if (waitq_leave(ch, q, &w))
                notify(ch, q); /* a wake-up meant for a waiter we no longer are */
            return rc;
        }
        int prc = ct__park(&w, NULL, tok, deadline_ns);
        bool signaled = waitq_leave(ch, q, &w);
        if (signaled || prc == 0) {
            rc = attempt(ch, op);
            if (rc != -EAGAIN)
                return rc; /* even if the token fired meanwhile: the wake-up wins */
        }
        /* Signaled but beaten to it by a thread that did not wait: the ring was full (or empty)
         * again at our attempt, so there is no wake-up to pass on. */
        if (prc < 0)
            return prc;
    }
}

static int run(ct_chan_t *ch, struct waitq *q, const struct op *op, const ct_token_t *tok,
               int64_t deadline)
{
    if (ct_token_canceled(tok))
        return -ECANCELED;
    int rc = attempt(ch, op);
    if (rc != -EAGAIN)
        return rc;
    int64_t deadline_ns = ct__deadline_ns(deadline);
    if (deadline_ns >= 0 && ct_now_ns() >= deadline_ns)
        return -ETIMEDOUT;
    rc = spin(ch, op, tok, deadline_ns);
    if (rc != -EAGAIN)
        return rc;
    return wait_on(ch, q, op, tok, deadline_ns);
}

/* ---- public API ----------------------------------------------------------------------------- */

int ct_chan_new(ct_chan_t **out, size_t elem_size, size_t capacity)
{
    if (!out || elem_size == 0 || capacity == 0 ||
        (capacity > CT_CHAN_CAPACITY_MAX && capacity != CT_CHAN_UNBOUNDED))
        return -EINVAL;
    bool bounded = capacity != CT_CHAN_UNBOUNDED;
    size_t bytes = sizeof(struct ct_chan);
    if (bounded) {
        size_t slots = ct__ring_bytes(elem_size, capacity);
        if (slots == 0 || slots > SIZE_MAX - bytes)
            return -ENOMEM;
        bytes += slots;
    }
    ct_chan_t *ch = ct__malloc(bytes);
    if (!ch)
        return -ENOMEM;
    ch->capacity = capacity;
    ch->bounded = bounded;
    ch->senders = (struct waitq){NULL, NULL, 0};
    ch->receivers = (struct waitq){NULL, NULL, 0};
    int rc = pthread_mutex_init(&ch->mu, NULL);
    if (rc) {
        ct__free(ch);
        return -rc;
    }
    if (bounded) {
        ct__ring_init(&ch->ring, elem_size, capacity, ch + 1);
    } else if ((rc = ct__growq_init(&ch->growq, elem_size)) < 0) {
        pthread_mutex_destroy(&ch->mu);
        ct__free(ch);
        return rc;
    }
    *out = ch;
    return 0;
}

void ct_chan_free(ct_chan_t *ch)
{
    if (!ch)
        return;
    if (!ch->bounded)
        ct__growq_destroy(&ch->growq);
    pthread_mutex_destroy(&ch->mu);
    ct__free(ch);
}

int ct_chan_send(ct_chan_t *ch, const void *elem, const ct_token_t *tok, int64_t deadline)
{
    if (!ch || !elem || deadline < -1)
        return -EINVAL;
    struct op op = {.send = true, .src = elem};
    return run(ch, &ch->senders, &op, tok, deadline);
}

int ct_chan_recv(ct_chan_t *ch, void *elem, const ct_token_t *tok, int64_t deadline)
{
    if (!ch || !elem || deadline < -1)
        return -EINVAL;
    struct op op = {.send = false, .dst = elem};
    return run(ch, &ch->receivers, &op, tok, deadline);
}

int ct_chan_try_send(ct_chan_t *ch, const void *elem)
{
    if (!ch || !elem)
        return -EINVAL;
    struct op op = {.send = true, .src = elem};
    return attempt(ch, &op);
}

int ct_chan_try_recv(ct_chan_t *ch, void *elem)
{
    if (!ch || !elem)
        return -EINVAL;
    struct op op = {.send = false, .dst = elem};
    return attempt(ch, &op);
}

int ct_chan_close(ct_chan_t *ch)
{
    if (!ch)
        return -EINVAL;
    bool first = ch->bounded ? ct__ring_close(&ch->ring) : ct__growq_close(&ch->growq);
    if (!first)
        return 0;
    /* Every waiter queued before this lock is woken and finds the channel closed; every one
     * queued after it finds the mark in its last attempt before parking. */
    pthread_mutex_lock(&ch->mu);
    wake_all(&ch->senders);
    wake_all(&ch->receivers);
    pthread_mutex_unlock(&ch->mu);
    return 1;
}

bool ct_chan_closed(const ct_chan_t *ch)
{
    if (!ch)
        return false;
    return ch->bounded ? ct__ring_closed(&ch->ring) : ct__growq_closed(&ch->growq);
}

size_t ct_chan_len(const ct_chan_t *ch)
{
    if (!ch)
        return 0;
    return ch->bounded ? ct__ring_len(&ch->ring) : ct__growq_len(&ch->growq);
}

size_t ct_chan_capacity(const ct_chan_t *ch)
{
    return ch ? ch->capacity : 0;
}
