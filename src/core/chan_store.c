/* The element stores behind a channel: a lock-free bounded ring and a growable queue under a
 * mutex. See chan_store.h.
 *
 * The ring's words. `head` and `tail` count positions as {lap, index}: index < cap in the low
 * bits, the lap above the closed mark (tail only). Slot i's stamp says what the slot waits for:
 *   stamp == tail      empty, waiting for the sender at position `tail`;
 *   stamp == head + 1  full, waiting for the receiver at position `head`.
 * A sender claims position `tail` with a CAS, copies the element in, and publishes it by storing
 * stamp = tail + 1 (release); a receiver claims `head` with a CAS, copies the element out, and
 * frees the slot for the next lap by storing stamp = head + one_lap. The counters are 64 bits
 * and only compared for equality, so they may wrap.
 *
 * The CASes on head and tail and the loads of the other end when deciding "full" or "empty" are
 * sequentially consistent: chan.c relies on that to decide, without a lock, whether anyone is
 * waiting to be woken (a waiter registers with a seq_cst increment, then checks the ring). */
#define _GNU_SOURCE
#include <string.h>

#include "chan_store.h"
#include "internal.h"

#define STAMP_SIZE sizeof(uint64_t)

size_t ct__ring_bytes(size_t elem_size, size_t cap)
{
    if (elem_size > SIZE_MAX - 2 * STAMP_SIZE)
        return 0;
    size_t stride = STAMP_SIZE + (elem_size + STAMP_SIZE - 1) / STAMP_SIZE * STAMP_SIZE;
    if (cap > SIZE_MAX / stride)
        return 0;
    return cap * stride;
}

void ct__ring_init(struct ct__ring *r, size_t elem_size, size_t cap, void *buf)
{
    uint64_t mark = 1;
    while (mark <= cap)
        mark <<= 1;
    r->head = 0;
    r->tail = 0;
    r->cap = cap;
    r->elem_size = elem_size;
    r->stride = ct__ring_bytes(elem_size, 1);
    r->mark = mark;
    r->one_lap = mark * 2;
    r->buf = buf;
    for (size_t i = 0; i < cap; i++)
        __atomic_store_n((uint64_t *) (void *) (r->buf + i * r->stride), (uint64_t) i,
                         __ATOMIC_RELAXED);
}

static inline uint64_t *stamp_of(const struct ct__ring *r, uint64_t pos)
{
    return (uint64_t *) (void *) (r->buf + (pos & (r->mark - 1)) * r->stride);
}

/* The position after `pos`: the next index, or index 0 of the next lap. */
static inline uint64_t next_pos(const struct ct__ring *r, uint64_t pos)
{
    if ((pos & (r->mark - 1)) + 1 < r->cap)
        return pos + 1;
    return (pos & ~(r->one_lap - 1)) + r->one_lap;
}

int ct__ring_try_send(struct ct__ring *r, const void *elem)
{
    unsigned spins = 0;
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
    for (;;) {
        if (tail & r->mark)
            return -EPIPE;
        uint64_t *stamp = stamp_of(r, tail);
        uint64_t s = __atomic_load_n(stamp, __ATOMIC_ACQUIRE);
        if (s == tail) {
            if (__atomic_compare_exchange_n(&r->tail, &tail, next_pos(r, tail), true,
                                            __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
                memcpy(stamp + 1, elem, r->elem_size);
                __atomic_store_n(stamp, tail + 1, __ATOMIC_RELEASE);
                return 0;
            }
            ct__cpu_relax(); /* another sender took it; `tail` holds the new value */
        } else if (s + r->one_lap == tail + 1) {
            /* The slot still holds last lap's element: full, unless a receiver has claimed it
             * and is copying it out right now. */
            uint64_t head = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
            if (head + r->one_lap == tail)
                return -EAGAIN;
            ct__spin(&spins);
            tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
        } else {
            /* Another sender claimed this position and moved on: look again. */
            ct__spin(&spins);
            tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
        }
    }
}

int ct__ring_try_recv(struct ct__ring *r, void *elem)
{
    unsigned spins = 0;
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t *stamp = stamp_of(r, head);
        uint64_t s = __atomic_load_n(stamp, __ATOMIC_ACQUIRE);
        if (s == head + 1) {
            if (__atomic_compare_exchange_n(&r->head, &head, next_pos(r, head), true,
                                            __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
                memcpy(elem, stamp + 1, r->elem_size);
                __atomic_store_n(stamp, head + r->one_lap, __ATOMIC_RELEASE);
                return 0;
            }
            ct__cpu_relax();
        } else if (s == head) {
            /* Empty, unless a sender has claimed this slot and is copying its element in: then
             * the element is as good as sent (a close cannot undo it), so wait for it. */
            uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST);
            if ((tail & ~r->mark) == head)
                return (tail & r->mark) ? -EPIPE : -EAGAIN;
            ct__spin(&spins);
            head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
        } else {
            ct__spin(&spins);
            head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
        }
    }
}

bool ct__ring_close(struct ct__ring *r)
{
    return !(__atomic_fetch_or(&r->tail, r->mark, __ATOMIC_SEQ_CST) & r->mark);
}

bool ct__ring_closed(const struct ct__ring *r)
{
    return __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST) & r->mark;
}

size_t ct__ring_len(const struct ct__ring *r)
{
    for (;;) {
        uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST);
        uint64_t head = __atomic_load_n(&r->head, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&r->tail, __ATOMIC_SEQ_CST) != tail)
            continue; /* read a consistent pair */
        tail &= ~r->mark;
        uint64_t hi = head & (r->mark - 1), ti = tail & (r->mark - 1);
        if (hi < ti)
            return (size_t) (ti - hi);
        if (hi > ti)
            return (size_t) (r->cap - hi + ti);
        return tail == head ? 0 : r->cap;
    }
}

/* ---- the unbounded queue ------------------------------------------------------------------- */

/* First allocation, in elements: small, so an idle channel costs little. */
#define GROWQ_FIRST 16

int ct__growq_init(struct ct__growq *q, size_t elem_size)
{
    int rc = pthread_mutex_init(&q->mu, NULL);
    if (rc)
        return -rc;
    q->buf = NULL;
    q->cap = q->head = q->len = 0;
    q->elem_size = elem_size;
    q->closed = false;
    return 0;
}

void ct__growq_destroy(struct ct__growq *q)
{
    ct__free(q->buf);
    pthread_mutex_destroy(&q->mu);
}

/* Double the buffer, unwrapping the ring into the new one. On failure nothing changes. */
static int grow(struct ct__growq *q)
{
    size_t cap = q->cap ? q->cap * 2 : GROWQ_FIRST;
    if (cap < q->cap || cap > SIZE_MAX / q->elem_size)
        return -ENOMEM;
    unsigned char *buf = ct__malloc(cap * q->elem_size);
    if (!buf)
        return -ENOMEM;
    size_t first = q->cap - q->head < q->len ? q->cap - q->head : q->len;
    if (q->len) {
        memcpy(buf, q->buf + q->head * q->elem_size, first * q->elem_size);
        memcpy(buf + first * q->elem_size, q->buf, (q->len - first) * q->elem_size);
    }
    ct__free(q->buf);
    q->buf = buf;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int ct__growq_try_send(struct ct__growq *q, const void *elem)
{
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    if (q->closed)
        rc = -EPIPE;
    else if (q->len == q->cap)
        rc = grow(q);
    if (rc == 0) {
        size_t i = q->head + q->len;
        if (i >= q->cap)
            i -= q->cap;
        memcpy(q->buf + i * q->elem_size, elem, q->elem_size);
        __atomic_store_n(&q->len, q->len + 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int ct__growq_try_recv(struct ct__growq *q, void *elem)
{
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    if (q->len == 0) {
        rc = q->closed ? -EPIPE : -EAGAIN;
    } else {
        memcpy(elem, q->buf + q->head * q->elem_size, q->elem_size);
        q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
        __atomic_store_n(&q->len, q->len - 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

bool ct__growq_close(struct ct__growq *q)
{
    pthread_mutex_lock(&q->mu);
    bool first = !q->closed;
    __atomic_store_n(&q->closed, true, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&q->mu);
    return first;
}

/* `closed` and `len` are written under the mutex and read here without it: a snapshot. */
bool ct__growq_closed(const struct ct__growq *q)
{
    return __atomic_load_n(&q->closed, __ATOMIC_RELAXED);
}

size_t ct__growq_len(const struct ct__growq *q)
{
    return __atomic_load_n(&q->len, __ATOMIC_RELAXED);
}
