/* ct/wait.h — cancellable waits: sleep, fd readiness, semaphore, condition variable, sockets.
 *
 * Every call here waits through one parking primitive that watches the token, the fd and the
 * deadline together, and returns as soon as the first of them fires:
 *   -ECANCELED  the token fired (ct_token_reason() says why);
 *   -ETIMEDOUT  the deadline passed.
 * The token may be NULL (never canceled). Deadlines are absolute monotonic milliseconds
 * (ct/time.h): -1 none, a time at or before now = do not block; below -1 every call returns
 * -EINVAL.
 * When the token has already fired, calls return -ECANCELED without trying: a canceled operation
 * never starts new work. */
#ifndef CT_WAIT_H
#define CT_WAIT_H

#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sleep `ms` milliseconds (Task.Delay(ms, token)).
 * Returns: 0 after the full time; -ECANCELED as soon as `tok` fires; -EINVAL if ms < 0.
 * Thread: any. */
int ct_sleep_ms(int64_t ms, const ct_token_t *tok);

/* Wait until `fd` is ready for `events` (POLLIN, POLLOUT, ...).
 * Returns: the ready events (> 0; POLLHUP / POLLERR are reported whatever `events` asked);
 * -ECANCELED; -ETIMEDOUT; -EBADF, -EINVAL, -EMFILE (no eventfd for the wake-up) and other
 * negative errno on failure.
 * Thread: any. */
int ct_fd_wait(int fd, int events, const ct_token_t *tok, int64_t deadline);

/* ---- semaphore ----------------------------------------------------------------------------- */

/* A counting semaphore whose wait can be canceled. Storage is the caller's; fields are private. */
typedef struct ct_sem {
    pthread_mutex_t mu_;
    int64_t count_;
    struct ct__waiter *head_, *tail_;
} ct_sem_t;

/* Initialise with `count` permits (0..INT32_MAX). Returns: 0; -EINVAL. Thread: owner. */
int ct_sem_init(ct_sem_t *sem, int64_t count);

/* Destroy; no thread may be waiting. Thread: owner. */
void ct_sem_destroy(ct_sem_t *sem);

/* Add one permit, waking the longest waiting thread if any.
 * Returns: 0; -EOVERFLOW if the count would exceed INT32_MAX. Thread: any. */
int ct_sem_post(ct_sem_t *sem);

/* Take one permit, waiting for it. Waiters are served first come, first served. A permit handed
 * to this waiter wins over a token or a deadline firing at the same moment (it is never lost).
 * Returns: 0 with the permit; -ECANCELED; -ETIMEDOUT. Thread: any. */
int ct_sem_wait(ct_sem_t *sem, const ct_token_t *tok, int64_t deadline);

/* Take a permit if one is free. Returns: 0; -EAGAIN. Thread: any. */
int ct_sem_trywait(ct_sem_t *sem);

/* ---- condition variable -------------------------------------------------------------------- */

/* A condition variable whose wait can be canceled, used with a pthread mutex. Fields private. */
typedef struct ct_cond {
    pthread_mutex_t mu_;
    struct ct__waiter *head_, *tail_;
} ct_cond_t;

/* Returns: 0; -errno from pthread. Thread: owner. */
int ct_cond_init(ct_cond_t *cond);

/* Destroy; no thread may be waiting. Thread: owner. */
void ct_cond_destroy(ct_cond_t *cond);

/* Unlock `mu`, wait for a signal, the token or the deadline, lock `mu` again. As with pthreads,
 * wake-ups can be spurious: check the predicate in a loop. A signal received at the same moment
 * as the token fires is reported as 0, so it is never lost for other waiters.
 *   while (!ready) if ((rc = ct_cond_wait(&c, &mu, tok, -1)) < 0) break;
 * Returns: 0 signaled (or spurious); -ECANCELED; -ETIMEDOUT. `mu` is held again in every case.
 * Thread: any holding `mu`. */
int ct_cond_wait(ct_cond_t *cond, pthread_mutex_t *mu, const ct_token_t *tok, int64_t deadline);

/* Wake one waiter / all waiters. Thread: any. */
void ct_cond_signal(ct_cond_t *cond);
void ct_cond_broadcast(ct_cond_t *cond);

/* ---- sockets and fds ----------------------------------------------------------------------- */
/* Sockets may be blocking or not: ct uses MSG_DONTWAIT. Other fds (pipes) must be non-blocking
 * for the wait to stay cancellable. EINTR is retried. */

/* Read up to `len` bytes once data is available.
 * Returns: bytes read (0 at end of stream); -ECANCELED; -ETIMEDOUT; other negative errno.
 * Thread: any. */
ssize_t ct_read(int fd, void *buf, size_t len, const ct_token_t *tok, int64_t deadline);

/* Write all `len` bytes. On an error after part of the data was written the stream is left in
 * an unknown state: close it.
 * Returns: len; -ECANCELED; -ETIMEDOUT; -EPIPE, -ECONNRESET and other negative errno; -EINVAL
 * if len > SSIZE_MAX.
 * Thread: any. */
ssize_t ct_write(int fd, const void *buf, size_t len, const ct_token_t *tok, int64_t deadline);

/* Write all the bytes of iov[0..iovcnt) in order (at most IOV_MAX buffers), as ct_write().
 * Returns: the total written; -ECANCELED; -ETIMEDOUT; -EINVAL (too many buffers, or more than
 * SSIZE_MAX bytes in all); -EPIPE and other negative errno. `iov` is not modified.
 * Thread: any. */
struct iovec;
ssize_t ct_writev(int fd, const struct iovec *iov, int iovcnt, const ct_token_t *tok,
                  int64_t deadline);

/* Connect socket `fd` (made non-blocking by this call) to `addr`.
 * Returns: 0 connected; -ECANCELED; -ETIMEDOUT; -ECONNREFUSED and other negative errno.
 * Thread: any. */
int ct_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, const ct_token_t *tok,
               int64_t deadline);

/* Accept one connection on listening socket `lfd` (made non-blocking by this call). The new
 * socket is non-blocking and close-on-exec. `addr` and `addrlen` may be NULL.
 * Returns: the new fd; -ECANCELED; -ETIMEDOUT; other negative errno. Thread: any. */
int ct_accept(int lfd, struct sockaddr *addr, socklen_t *addrlen, const ct_token_t *tok,
              int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif
