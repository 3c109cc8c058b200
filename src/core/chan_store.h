/* The two element stores behind a channel. Neither waits: they say 0, -EAGAIN (full or empty),
 * -EPIPE (closed) or -ENOMEM, and chan.c does the waiting and the waking around them.
 *
 * ct__ring: a bounded ring that many threads send to and receive from without a lock
 * (Dmitry Vyukov's bounded MPMC queue, laid out as crossbeam-channel's array flavour does).
 * Each slot carries a stamp saying whose turn it is; `tail` carries the closed mark, so that a
 * send and a close are ordered by one atomic word: a send either lands before the close (and
 * will be drained) or sees the mark.
 *
 * ct__growq: an unbounded queue, a ring under a mutex that doubles when full. */
#ifndef CT_CORE_CHAN_STORE_H
#define CT_CORE_CHAN_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A cache line and the adjacent-line prefetch: keep the senders' and receivers' hot words
 * this far apart. Padding, not _Alignas: the channel comes from a malloc-like allocator. */
#define CT__CHAN_PAD 128

struct ct__ring {
    uint64_t head; /* atomic: {lap, index} of the next slot to receive from */
    char pad_head[CT__CHAN_PAD - sizeof(uint64_t)];
    uint64_t tail; /* atomic: {lap, closed mark, index} of the next slot to send to */
    char pad_tail[CT__CHAN_PAD - sizeof(uint64_t)];
    size_t cap;         /* slots */
    size_t elem_size;   /* bytes per element */
    size_t stride;      /* bytes per slot: the stamp, then the element */
    uint64_t mark;      /* the closed bit in `tail`: a power of two above every index */
    uint64_t one_lap;   /* the unit of the lap field: 2 * mark */
    unsigned char *buf; /* cap slots */
};

/* Bytes of slot memory for `cap` elements of `elem_size`; 0 if that does not fit in a size_t. */
size_t ct__ring_bytes(size_t elem_size, size_t cap);

/* Set up `r` over `buf` (ct__ring_bytes() bytes, 8-byte aligned). */
void ct__ring_init(struct ct__ring *r, size_t elem_size, size_t cap, void *buf);

int ct__ring_try_send(struct ct__ring *r, const void *elem);
int ct__ring_try_recv(struct ct__ring *r, void *elem);
bool ct__ring_close(struct ct__ring *r); /* true if this call closed it */
bool ct__ring_closed(const struct ct__ring *r);
size_t ct__ring_len(const struct ct__ring *r);

struct ct__growq {
    pthread_mutex_t mu;
    unsigned char *buf; /* cap elements, allocated on the first send */
    size_t cap, head, len, elem_size;
    bool closed;
};

int ct__growq_init(struct ct__growq *q, size_t elem_size);
void ct__growq_destroy(struct ct__growq *q);
int ct__growq_try_send(struct ct__growq *q, const void *elem);
int ct__growq_try_recv(struct ct__growq *q, void *elem);
bool ct__growq_close(struct ct__growq *q);
bool ct__growq_closed(const struct ct__growq *q);
size_t ct__growq_len(const struct ct__growq *q);

#endif
