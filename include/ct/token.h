/* ct/token.h — cancellation sources and tokens.
 *
 * A source can be canceled once, from any thread; the first cancel wins and records a reason and
 * a short detail. A token is the read-only view of a source: code that may only observe
 * cancellation gets a `const ct_token_t *`, never the source. A NULL token is never canceled, so
 * every function that takes a token accepts NULL.
 *
 *   ct_source_t *req;
 *   ct_source_new_timeout(&req, 2000);            // cancels itself with CT_TIMEOUT after 2 s
 *   rc = do_work(args, ct_source_token(req));     // passes the token down
 *   ct_source_free(req);
 *
 * Ownership: ct_source_new*() gives the caller the owner's reference; ct_source_free() gives it
 * back. A holder that may outlive the owner takes its own reference (ct_source_ref() to be able
 * to cancel, ct_token_ref() to observe) and drops it with the matching unref. Memory is released
 * when the last reference goes. A registered callback also holds a reference until it is
 * unregistered, so a token never disappears under its registrations.
 *
 * Reasons: CT_CANCELED, CT_TIMEOUT, CT_CLIENT_ABORTED, CT_SHUTDOWN, CT_SIBLING_FAILED, and user
 * codes from CT_REASON_USER to CT_REASON_MAX. A linked source inherits the reason and detail of the
 * parent that fired first, and remembers which source was canceled at the root (the origin).
 *
 * Callbacks run exactly once, on the thread that cancels (for a timeout: the timer thread), newest
 * first. Keep them short and non-blocking: wake a waiter, interrupt a query, set a flag. They may
 * cancel other sources and unregister any registration, including their own. */
#ifndef CT_TOKEN_H
#define CT_TOKEN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct/base.h"
#include "ct/time.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_source ct_source_t;
typedef struct ct_token ct_token_t;

/* Why a source was canceled. Values from CT_REASON_USER to CT_REASON_MAX are the application's. */
typedef enum ct_reason {
    CT_REASON_NONE = 0,    /* not canceled */
    CT_CANCELED = 1,       /* canceled on purpose (a user, an operator, a job cancel) */
    CT_TIMEOUT = 2,        /* a deadline passed */
    CT_CLIENT_ABORTED = 3, /* the client went away */
    CT_SHUTDOWN = 4,       /* the process is stopping */
    CT_SIBLING_FAILED = 5, /* another task of the same group failed */
    CT_REASON_USER = 1000,
    CT_REASON_MAX = 65535
} ct_reason_t;

/* Longest detail kept with a cancellation, including the terminating NUL; longer text is cut. */
#define CT_DETAIL_MAX 64

/* The token's state word. Private: read it only through the functions below. */
struct ct_token {
    uint64_t state_;
};

#define CT__CANCELED_BIT UINT64_C(1)
#define CT__REASON_SHIFT 16

/* Registration storage, supplied by the caller (no allocation on register or unregister).
 * Its fields are private. It must stay in place from ct_token_register() until
 * ct_token_unregister() has returned. */
typedef struct ct_reg ct_reg_t;
typedef void (*ct_cancel_cb)(void *arg, const ct_token_t *tok);
struct ct_reg {
    struct ct_reg *next_;
    struct ct_reg **pprev_;
    ct_cancel_cb cb_;
    void *arg_;
    ct_source_t *src_;
    int ran_;
};

/* ---- sources ------------------------------------------------------------------------------- */

/* Create a source that is canceled only by ct_source_cancel().
 * Returns: 0 and *out; -EINVAL if out is NULL; -ENOMEM.
 * Ownership: the caller holds the owner's reference; ct_source_free() gives it back.
 * Thread: any. */
int ct_source_new(ct_source_t **out);

/* Create a source that cancels itself with CT_TIMEOUT `timeout_ms` from now (the .NET
 * `new CancellationTokenSource(TimeSpan)`). A timeout of 0 is canceled before this returns.
 * Returns: 0 and *out; -EINVAL if out is NULL or timeout_ms is outside 0..CT_TIMEOUT_MAX_MS;
 * -ENOMEM; -EAGAIN if the timer thread could not start.
 * Thread: any. */
int ct_source_new_timeout(ct_source_t **out, int64_t timeout_ms);

/* Create a source canceled when any of the `n` parents is (CreateLinkedTokenSource). NULL parents
 * never cancel and are skipped. It takes the reason and detail of the parent that fired first and
 * records it as the cause (see ct_token_origin()). If a parent is already canceled, the new
 * source is canceled before this returns. It can also be canceled directly, and given a timeout
 * with ct_source_cancel_after(). ct_source_free() detaches it from every parent.
 * Returns: 0 and *out; -EINVAL if out is NULL, or parents is NULL while n > 0; -ENOMEM.
 * Thread: any. The parents must stay valid during the call. */
int ct_source_new_linked(ct_source_t **out, const ct_token_t *const parents[], size_t n);

/* Create a shield for a critical section (a commit, a payment, a compensation): a token that does
 * not follow any outer token, so work under it is not abandoned half-way when the request is
 * canceled, but that still cancels itself with CT_TIMEOUT after `timeout_ms`, so a stuck
 * critical section cannot hold the process forever. Pass its token instead of the outer one to
 * the calls inside the section; check the outer token again once the section is done.
 * Returns: 0 and *out; -EINVAL if out is NULL or timeout_ms is outside 1..CT_TIMEOUT_MAX_MS (a
 * shield always has a deadline); -ENOMEM; -EAGAIN if the timer thread could not start.
 * Thread: any. */
int ct_source_new_shield(ct_source_t **out, int64_t timeout_ms);

/* Cancel `src` with `reason` and an optional `detail` (copied, cut at CT_DETAIL_MAX - 1 bytes).
 * The first cancel wins; later calls change nothing. The winner runs the registered callbacks on
 * this thread, newest first, before returning. A linked child is canceled by its registration
 * on `src`, in that same order, so its own callbacks run then too (a chain deeper than a few
 * dozen levels is finished from a queue, still before this returns). What this thread wrote
 * before canceling is visible to any thread that sees the token canceled.
 * Returns: 1 if this call canceled the source; 0 if it was already canceled; -EINVAL if src is
 * NULL or reason is not one of the reasons above (CT_REASON_NONE is not a reason).
 * Thread: any. */
int ct_source_cancel(ct_source_t *src, int reason, const char *detail);

/* Cancel `src` with CT_TIMEOUT `timeout_ms` from now (CancelAfter). A second call replaces the
 * first deadline, earlier or later, as .NET does; -1 removes it. 0 cancels on this thread before
 * returning. On a source that is already canceled, or whose owner has freed it, nothing happens.
 * A deadline that has already passed may still cancel while a call moves or removes it (the
 * timer thread was firing it); after ct_source_free() returns, no timeout fires.
 * Returns: 0; -EINVAL if src is NULL or timeout_ms is outside -1..CT_TIMEOUT_MAX_MS; -ENOMEM if
 * the timer heap could not grow; -EAGAIN if the timer thread could not start.
 * Thread: any. */
int ct_source_cancel_after(ct_source_t *src, int64_t timeout_ms);

/* The owner is done with `src`: detach it from its parents, remove its timer, and drop the
 * owner's reference. It is not canceled. Other holders keep a valid token that no parent and no
 * timeout cancels any more, only someone holding a source reference. NULL is ignored.
 * Thread: any; once per source. */
void ct_source_free(ct_source_t *src);

/* Take a reference that allows canceling `src` after its owner has freed it.
 * Returns: src. Thread: any. */
ct_source_t *ct_source_ref(ct_source_t *src);

/* Drop a reference taken with ct_source_ref(). Thread: any. */
void ct_source_unref(ct_source_t *src);

/* The token of `src`: valid as long as a reference to the source is held. NULL gives NULL. */
static inline const ct_token_t *ct_source_token(const ct_source_t *src)
{
    return (const ct_token_t *) (const void *) src;
}

/* ---- tokens -------------------------------------------------------------------------------- */

/* Has the token been canceled? One atomic load: no lock, no system call, no clock read.
 * Thread: any. */
static inline bool ct_token_canceled(const ct_token_t *tok)
{
    return tok && (__atomic_load_n(&tok->state_, __ATOMIC_ACQUIRE) & CT__CANCELED_BIT);
}

/* The ThrowIfCancellationRequested of C: 0 if `tok` has not fired, -ECANCELED if it has.
 *   if ((rc = ct_token_check(tok)) < 0) goto out;
 * Thread: any. */
static inline int ct_token_check(const ct_token_t *tok)
{
    return ct_token_canceled(tok) ? -ECANCELED : 0;
}

/* The reason `tok` was canceled with, or CT_REASON_NONE if it has not been. Thread: any. */
static inline int ct_token_reason(const ct_token_t *tok)
{
    uint64_t s = tok ? __atomic_load_n(&tok->state_, __ATOMIC_ACQUIRE) : 0;
    return (s & CT__CANCELED_BIT) ? (int) ((s >> CT__REASON_SHIFT) & 0xffff) : CT_REASON_NONE;
}

/* The detail given with the cancellation ("" if none), or NULL if `tok` has not been canceled.
 * The text stays valid as long as the token does. Thread: any. */
const char *ct_token_detail(const ct_token_t *tok);

/* When `tok` was canceled, on the ct monotonic clock in ns (ct_now_ns()); 0 if it has not been.
 * For a linked source, when it was canceled (its parent's cancellation reached it), which is
 * the same moment within the canceling thread's callbacks. Thread: any. */
int64_t ct_token_canceled_at_ns(const ct_token_t *tok);

/* The source that was canceled directly (by ct_source_cancel() or its own timeout) and caused
 * `tok` to be canceled, through any number of linked sources; `tok` itself if it was canceled
 * directly; NULL if it has not been canceled. Valid as long as `tok` is. Thread: any. */
const ct_token_t *ct_token_origin(const ct_token_t *tok);

/* Did `cause` take part in canceling `tok`: is it `tok` itself, its origin, or a linked source
 * between them? This answers "who asked for this?" for a token linked from several sources:
 *   if (ct_token_caused_by(tok, ct_source_token(my_timeout))) ... my deadline, not the client
 * Returns false if `tok` has not been canceled or either token is NULL. Thread: any. */
bool ct_token_caused_by(const ct_token_t *tok, const ct_token_t *cause);

/* ct_token_deadline() of a token that nothing will cancel on a clock. */
#define CT_DEADLINE_NONE INT64_MAX

/* The earliest pending timeout of `tok` on the ct_now_ms() clock: its own source's (a timeout
 * source, a shield, ct_source_cancel_after) and, for a linked source, its parents' recursively.
 * This is what a call that leaves the process should pass on ("this much time is left").
 * A shield does not follow outer tokens, so only its own timeout counts. A source whose owner
 * has freed it has no timer any more, and a freed parent no longer cancels its children.
 * Returns: the deadline in ms; CT_DEADLINE_NONE if no timeout is pending (and for NULL); for a
 * token already canceled, the ms it was canceled at (so the time left is <= 0).
 * Thread: any. Cost: one lock per source on the way up, no allocation. */
int64_t ct_token_deadline(const ct_token_t *tok);

/* Take a reference that keeps `tok` valid after its owner has freed the source.
 * Returns: tok (NULL gives NULL). Thread: any. */
const ct_token_t *ct_token_ref(const ct_token_t *tok);

/* Drop a reference taken with ct_token_ref(). NULL is ignored. Thread: any. */
void ct_token_unref(const ct_token_t *tok);

/* Call `cb(arg, tok)` once when `tok` is canceled, on the canceling thread. If `tok` is already
 * canceled, `cb` runs on this thread before this returns. With a NULL token nothing is
 * registered and `cb` never runs. Every successful call is paired with ct_token_unregister().
 * Returns: 0 registered (or NULL token); 1 the token was already canceled and `cb` has run;
 * -EINVAL if reg or cb is NULL (cb is not called).
 * Thread: any. */
int ct_token_register(const ct_token_t *tok, ct_reg_t *reg, ct_cancel_cb cb, void *arg);

/* Remove a registration. When this returns, the callback is not running and never will, so
 * `reg` and whatever `arg` points to may be freed. If the callback is running on another thread,
 * this waits for it to return; called from inside that same callback it does not wait.
 * Returns: true if the callback ran (or was running), false if it never will (or reg is NULL).
 * Thread: any. */
bool ct_token_unregister(ct_reg_t *reg);

/* A short lower-case name for `reason` ("timeout", "client_aborted", ...; "user" for user codes).
 * Thread: any. */
const char *ct_reason_name(int reason);

#ifdef __cplusplus
}
#endif
#endif
