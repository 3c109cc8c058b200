/* The process-wide timer service (one thread, one binary heap) and the fake clock.
 * Internal to libct: timeout sources are its users. */
#ifndef CT_CORE_TIMER_H
#define CT_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

struct ct__timer;

struct ct__timer_ops {
    /* Called with the service lock held when the timer is taken off the heap to fire: take
     * whatever reference keeps the owner alive until fire() returns. Must not block. */
    void (*pin)(struct ct__timer *t);
    /* Called without the lock on the firing thread (the timer thread, or the thread advancing
     * the fake clock). `arg` is the value given to ct__timer_start() for this arming. */
    void (*fire)(struct ct__timer *t, int64_t arg);
};

/* Embedded in its owner. All fields are guarded by the service lock. */
struct ct__timer {
    int64_t deadline_ns;
    int64_t arg;
    const struct ct__timer_ops *ops;
    uint32_t idx; /* heap position, CT__TIMER_IDLE when not armed */
    bool dead;    /* killed: never armed again */
};

#define CT__TIMER_IDLE UINT32_MAX

static inline void ct__timer_init(struct ct__timer *t, const struct ct__timer_ops *ops)
{
    t->idx = CT__TIMER_IDLE;
    t->dead = false;
    t->ops = ops;
}

/* Arm (or re-arm) `t` to fire at `deadline_ns` on the ct clock, passing `arg` to fire().
 * Returns: 0; -ESRCH if the timer was killed; -ENOMEM / -EAGAIN if the heap could not grow or
 * the thread could not start. */
int ct__timer_start(struct ct__timer *t, int64_t deadline_ns, int64_t arg);

/* Disarm. Returns true if it was armed (fire() will not run for that arming). */
bool ct__timer_stop(struct ct__timer *t);

/* Disarm for good: later ct__timer_start() calls return -ESRCH. After this returns the service
 * holds no pointer to `t`, though a fire() that already began may still be running (pin() is
 * there to keep the owner alive for it). */
void ct__timer_kill(struct ct__timer *t);

/* Wake every parked ct wait so it re-reads the clock (the fake clock moved or stopped).
 * Defined by the parking primitive. */
void ct__park_clock_changed(void);

#endif
