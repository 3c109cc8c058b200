/* The one parking primitive: wait for a token, an fd's readiness and a deadline together, plus a
 * direct signal from another thread (semaphores, condition variables, channels, the pool).
 *
 * A waiter lives on the waiting thread's stack. Its word carries the state:
 *   PARKED_FUTEX / PARKED_POLL  the thread is (about to be) asleep, in futex or in poll
 *   SIGNALED                    another thread handed it what it waited for (sticky)
 *   KICKED                      something changed: the token fired or the fake clock moved
 * A signaller sets SIGNALED while holding the lock of the queue the waiter is in (so the waiter
 * cannot have left), and wakes the futex after unlocking: a futex wake on an address that is no
 * longer a waiter is harmless. Kickers (token callback, fake clock) are synchronised with the
 * waiter's exit by unregister and by the fake-clock list lock, so they may also use the waiter's
 * eventfd. */
#ifndef CT_CORE_PARK_H
#define CT_CORE_PARK_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "ct/token.h"

#define CT__W_PARKED_FUTEX 1u
#define CT__W_PARKED_POLL  2u
#define CT__W_SIGNALED     4u
#define CT__W_KICKED       8u

struct ct__waiter {
    uint32_t word;                    /* atomic */
    int efd;                          /* the thread's eventfd while parked in poll */
    struct ct__waiter *next, *prev;   /* the owning queue's links (semaphore, channel, ...) */
    struct ct__waiter *fnext, *fprev; /* the fake-clock list */
    bool queued;                      /* the owning queue's flag, under its lock */
};

static inline void ct__waiter_init(struct ct__waiter *w)
{
    w->word = 0;
    w->efd = -1;
    w->next = w->prev = NULL;
    w->queued = false;
}

/* Mark `w` signaled. Call with the lock of the queue `w` is in; then, after unlocking, call
 * ct__waiter_wake() with the returned value and the address of w->word. Only for waiters that
 * park without an fd: the wake is a futex wake, which an address alone is enough for. */
static inline uint32_t ct__waiter_signal(struct ct__waiter *w)
{
    return __atomic_fetch_or(&w->word, CT__W_SIGNALED, __ATOMIC_RELEASE);
}

void ct__waiter_wake(uint32_t *word, uint32_t old);

/* A FIFO of waiters (a semaphore's, a condition variable's, a channel side's), guarded by its
 * owner's lock. `queued` says whether a waiter is still in it: a waiter that finds itself taken
 * off was signaled. */
static inline void ct__waitq_push(struct ct__waiter **head, struct ct__waiter **tail,
                                  struct ct__waiter *w)
{
    w->next = NULL;
    w->prev = *tail;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
    w->queued = true;
}

static inline void ct__waitq_remove(struct ct__waiter **head, struct ct__waiter **tail,
                                    struct ct__waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        *tail = w->prev;
    w->queued = false;
}

/* Park until signaled, kicked, `pfd` ready, `tok` fired or `deadline_ns` (ct clock, -1 none)
 * passed; spurious returns are possible.
 * Returns: -ECANCELED if tok fired; 1 if pfd is ready (pfd->revents set); -ETIMEDOUT if the
 * deadline passed; 0 otherwise (signaled, kicked or spurious: look at your own state);
 * -EMFILE/-ENFILE if no eventfd could be made for an fd wait. */
int ct__park(struct ct__waiter *w, struct pollfd *pfd, const ct_token_t *tok, int64_t deadline_ns);

/* Public deadlines are -1 (none) or >= 0 (absolute monotonic ms); anything else is -EINVAL. */
static inline bool ct__deadline_valid(int64_t deadline_ms)
{
    return deadline_ms >= -1;
}

/* Deadline in ns on the ct clock for a public deadline in ms (-1 stays -1). A deadline beyond
 * what nanoseconds can hold (about 292 years of uptime) is no deadline. */
static inline int64_t ct__deadline_ns(int64_t deadline_ms)
{
    return deadline_ms < 0 || deadline_ms >= INT64_MAX / 1000000 ? -1 : deadline_ms * 1000000;
}

#endif
