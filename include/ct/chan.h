/* ct/chan.h — channels: fixed-size elements passed by value between threads, with a send and a
 * receive that stop when a token fires or a deadline passes, and a close that lets receivers
 * drain what is left (.NET's System.Threading.Channels, Go's chan).
 *
 * A channel is bounded (capacity >= 1: a send waits while it is full) or unbounded
 * (CT_CHAN_UNBOUNDED: a send never waits, the channel grows until memory runs out). Any number of
 * threads may send and receive at the same time. One thread's sends are received in the order it
 * sent them.
 *
 *   ct_chan_t *jobs;
 *   ct_chan_new(&jobs, sizeof(struct job), 64);
 *   rc = ct_chan_send(jobs, &job, tok, ct_deadline_after(500));   // producer
 *   rc = ct_chan_recv(jobs, &job, tok, -1);                         // consumer
 *   ct_chan_close(jobs);         // no more sends; receivers drain, then get -EPIPE
 *   ct_chan_free(jobs);
 *
 * Codes: -ECANCELED the token fired (the reason is on the token); -ETIMEDOUT the call's own
 * deadline passed; -EPIPE the channel is closed (for a receiver: closed and drained, the end of
 * the stream); -EAGAIN a try_ call would have had to wait. A token that has already fired makes
 * a call return -ECANCELED without doing anything. A wait that has been handed what it waited
 * for (an element, or room for one) wins over a token or deadline that fires at the same moment:
 * it returns 0 and the element is neither lost nor delivered twice. A call that returns an
 * error has not sent or received anything.
 *
 * Deadlines are absolute monotonic milliseconds (ct/time.h): -1 none, a time at or before now =
 * do not wait (one attempt, then -ETIMEDOUT).
 *
 * A bounded channel is a lock-free ring: a thread that finds a slot claimed by another thread
 * that has not finished copying its element yet waits for that copy (a few instructions; it
 * yields the core while it waits), even in a try_ call and even once its token has fired. Only a
 * thread descheduled or stopped in the middle of its copy makes that wait long.
 *
 * Ownership: ct_chan_new() gives the caller the channel; ct_chan_free() releases it. Elements are
 * copied in and out byte for byte; what they point to stays the sender's business until a
 * receiver takes it (drain before freeing a channel of pointers). */
#ifndef CT_CHAN_H
#define CT_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_chan ct_chan_t;

/* The capacity of a channel without bound. */
#define CT_CHAN_UNBOUNDED SIZE_MAX

/* Largest capacity of a bounded channel. */
#define CT_CHAN_CAPACITY_MAX ((size_t) INT32_MAX)

/* Create a channel of elements of `elem_size` bytes holding at most `capacity` of them, or any
 * number with CT_CHAN_UNBOUNDED. A bounded channel allocates its slots here; an unbounded one
 * allocates when it grows.
 * Returns: 0 and *out; -EINVAL if out is NULL, elem_size is 0, or capacity is 0 or above
 * CT_CHAN_CAPACITY_MAX (and not CT_CHAN_UNBOUNDED); -ENOMEM.
 * Ownership: the caller owns the channel; ct_chan_free() releases it.
 * Thread: any. */
int ct_chan_new(ct_chan_t **out, size_t elem_size, size_t capacity);

/* Release `ch` and the elements still in it (they are dropped, not received). NULL is ignored.
 * Thread: any, once, when no other thread uses the channel or will use it again (close it and
 * join or otherwise stop its users first). */
void ct_chan_free(ct_chan_t *ch);

/* Copy `elem` (elem_size bytes) into the channel, waiting while a bounded channel is full.
 * Returns: 0 sent; -ECANCELED `tok` fired (nothing sent); -ETIMEDOUT `deadline` passed while
 * full (nothing sent); -EPIPE the channel is closed; -ENOMEM an unbounded channel could not grow
 * (nothing sent, the channel is unchanged); -EINVAL if ch or elem is NULL or deadline < -1.
 * Thread: any. */
int ct_chan_send(ct_chan_t *ch, const void *elem, const ct_token_t *tok, int64_t deadline);

/* Take the oldest element into `elem` (elem_size bytes), waiting while the channel is empty.
 * After a close, the elements left are still received; then the channel is at its end.
 * Returns: 0 received; -EPIPE the channel is closed and empty (the end of the stream);
 * -ECANCELED `tok` fired; -ETIMEDOUT `deadline` passed while empty; -EINVAL if ch or elem is
 * NULL or deadline < -1. On an error `elem` is left as it was.
 * Thread: any. */
int ct_chan_recv(ct_chan_t *ch, void *elem, const ct_token_t *tok, int64_t deadline);

/* Send without waiting.
 * Returns: 0 sent; -EAGAIN a bounded channel is full; -EPIPE closed; -ENOMEM an unbounded
 * channel could not grow; -EINVAL if ch or elem is NULL.
 * Thread: any. */
int ct_chan_try_send(ct_chan_t *ch, const void *elem);

/* Receive without waiting.
 * Returns: 0 received; -EAGAIN empty; -EPIPE closed and empty; -EINVAL if ch or elem is NULL.
 * Thread: any. */
int ct_chan_try_recv(ct_chan_t *ch, void *elem);

/* Close `ch` (.NET's Writer.Complete, Go's close): every send from now on returns -EPIPE, and
 * so do the sends waiting for room, at once. Receivers keep receiving what the channel holds;
 * once it is empty, every receive, waiting or not, returns -EPIPE.
 * Returns: 1 if this call closed the channel; 0 if it was closed already; -EINVAL if ch is NULL.
 * Thread: any. */
int ct_chan_close(ct_chan_t *ch);

/* Has `ch` been closed? (It may still hold elements.) Thread: any. */
bool ct_chan_closed(const ct_chan_t *ch);

/* How many elements `ch` holds: a snapshot that other threads may change at once.
 * Thread: any. */
size_t ct_chan_len(const ct_chan_t *ch);

/* The capacity given to ct_chan_new(): CT_CHAN_UNBOUNDED for an unbounded channel.
 * Thread: any. */
size_t ct_chan_capacity(const ct_chan_t *ch);

/* Receive every element until the channel is closed and drained or `tok` fires: the C form of
 * .NET's `await foreach (var x in reader.ReadAllAsync(ct))`. `elem` points at the variable that
 * receives each element; `rc` is an int that holds, after the loop, why it ended:
 *   -EPIPE      the channel was closed and everything in it was received (the normal end);
 *   -ECANCELED  `tok` fired;
 *   0           the body left with `break`.
 *
 *   struct job job;
 *   int rc;
 *   CT_CHAN_FOREACH (jobs, &job, stopping, rc) {
 *       run(&job, stopping);
 *   }
 *   if (rc == -ECANCELED) ... host shutdown
 *
 * It is the plain loop `while ((rc = ct_chan_recv(ch, elem, tok, -1)) == 0) { body }`. */
#define CT_CHAN_FOREACH(ch, elem, tok, rc)                                                         \
    for ((rc) = ct_chan_recv((ch), (elem), (tok), -1); (rc) == 0;                                  \
         (rc) = ct_chan_recv((ch), (elem), (tok), -1))

#ifdef __cplusplus
}
#endif
#endif
