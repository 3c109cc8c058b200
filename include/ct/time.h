/* ct/time.h — the monotonic clock, deadlines, the timer service and the fake clock for tests.
 *
 * Deadlines are absolute times on the monotonic clock in milliseconds, the convention of every
 * ct call that waits: -1 means no deadline, and any deadline at or before now (0 included) means
 * "do not block".
 *
 * Every timeout source shares one timer service: a thread with a binary heap, started the first
 * time a timeout is armed. Its callbacks run on that thread.
 *
 * The fake clock replaces the monotonic clock for the whole process so that tests drive time by
 * hand: while it runs, time moves only when ct_clock_fake_advance() is called, which fires the
 * timeouts that fell due on the calling thread and wakes every ct wait whose deadline passed. */
#ifndef CT_TIME_H
#define CT_TIME_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest timeout or relative deadline ct accepts, in ms (about 31 years). */
#define CT_TIMEOUT_MAX_MS INT64_C(1000000000000)

/* Monotonic time in milliseconds / nanoseconds (the fake clock's while it runs). Thread: any. */
int64_t ct_now_ms(void);
int64_t ct_now_ns(void);

/* The absolute deadline `ms` milliseconds from now; -1 (no deadline) if ms < 0; ms above
 * CT_TIMEOUT_MAX_MS counts as CT_TIMEOUT_MAX_MS. Thread: any. */
int64_t ct_deadline_after(int64_t ms);

/* Milliseconds left until `deadline`: -1 for no deadline, 0 once it has passed. Thread: any. */
int64_t ct_deadline_remaining(int64_t deadline);

/* Start the fake clock at the current monotonic time. Timeouts already pending keep their
 * deadlines and fire when the fake clock reaches them.
 * Thread: any, but meant for a test's setup, before the code under test runs. */
void ct_clock_fake_start(void);

/* Move the fake clock forward by `ms` (>= 0). Before returning, fires on this thread every timeout
 * that fell due (their callbacks run here) and wakes every wait whose deadline passed.
 * Returns: 0; -EINVAL if ms is outside 0..CT_TIMEOUT_MAX_MS or the fake clock is not running.
 * Thread: any. */
int ct_clock_fake_advance(int64_t ms);

/* Go back to the real monotonic clock. Thread: as ct_clock_fake_start(). */
void ct_clock_fake_stop(void);

/* Is the fake clock running? Thread: any. */
bool ct_clock_is_fake(void);

/* Stop the timer service's thread and wait for it to end, for a clean process exit (leak checkers,
 * tests). Pending timeouts stay armed; arming another one starts the thread again.
 * Thread: any (concurrent calls are serialized); from a timeout callback it does nothing. */
void ct_timers_stop(void);

#ifdef __cplusplus
}
#endif
#endif
