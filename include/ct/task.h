/* ct/task.h — task groups (first failure cancels the siblings) and a cancellable parallel for.
 *
 * A group is Go's errgroup, or .NET's Task.WhenAll with cascading cancellation: it owns a source
 * linked to a parent token; its tasks run on a pool with the group's token; the first task that
 * fails cancels the group with CT_SIBLING_FAILED (detail: which task, which error), so its
 * siblings stop at their next ct call; ct_group_wait() waits for every task and returns the
 * first error.
 *
 *   ct_group_t *g;
 *   ct_group_new(&g, pool, request_token);
 *   for (int i = 0; i < n; i++)
 *       ct_group_spawn(g, scrape, &sites[i]);
 *   rc = ct_group_wait(g);            // 0, the first failure's error, or -ECANCELED
 *   ... ct_group_status(g, i, &result) for each task ...
 *   ct_group_free(g);
 *
 * A task's result decides its status: >= 0 succeeded; -ECANCELED once the group's token has
 * fired is canceled (it stopped because it was asked to, not a failure); any other negative value
 * failed, and the first failure cancels the group. A task that never started (the group was
 * canceled first, or the pool was freed with CT_POOL_CANCEL_QUEUED) is reported canceled. */
#ifndef CT_TASK_H
#define CT_TASK_H

#include <stddef.h>

#include "ct/pool.h"
#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_group ct_group_t;

typedef enum ct_task_status {
    CT_TASK_PENDING = 0, /* queued or running */
    CT_TASK_SUCCEEDED,
    CT_TASK_FAILED,
    CT_TASK_CANCELED
} ct_task_status_t;

/* Create a group whose tasks run on `pool`, canceled when `parent` is (parent may be NULL).
 * Returns: 0 and *out; -EINVAL; -ENOMEM.
 * Ownership: the caller frees it with ct_group_free(). Thread: any. */
int ct_group_new(ct_group_t **out, ct_pool_t *pool, const ct_token_t *parent);

/* The group's token: fires when the parent does, when a task fails (CT_SIBLING_FAILED), or when
 * the group is freed with tasks still running. Valid until ct_group_free(). Thread: any. */
const ct_token_t *ct_group_token(const ct_group_t *g);

/* Start fn(arg, group token) on the pool. If the group is already canceled the task is recorded
 * as canceled and never runs.
 * Returns: the task's index (>= 0, in spawn order); -EAGAIN if the pool's queue is full;
 * -ESHUTDOWN if the pool is stopping; -ENOMEM; -EINVAL. On error nothing is recorded.
 * Thread: any, one at a time (spawn from several threads needs the caller's lock). */
int ct_group_spawn(ct_group_t *g, ct_task_fn fn, void *arg);

/* Wait until every task spawned so far has finished. This wait is not cancellable on purpose:
 * the tasks use the group's memory, and the group's token already stops them when the parent
 * fires.
 * Returns: 0 if every task succeeded; the first failed task's result; else -ECANCELED if any task
 * was canceled (the parent fired). Thread: any. */
int ct_group_wait(ct_group_t *g);

/* Status of task `index`, and its result in *result (may be NULL) once it is not pending.
 * Returns: the status; -EINVAL for an index never returned by ct_group_spawn(). Thread: any. */
int ct_group_status(ct_group_t *g, size_t index, int *result);

/* Number of tasks spawned. Thread: any. */
size_t ct_group_size(ct_group_t *g);

/* Free the group. Tasks still running are canceled (CT_CANCELED, "group freed") and waited for.
 * NULL is ignored. Thread: any, not from one of the group's tasks. */
void ct_group_free(ct_group_t *g);

/* The body of a parallel loop: handle index `i`. Return >= 0 to go on, a negative value to stop
 * the loop (the first one is ct_parallel_for()'s result). */
typedef int (*ct_for_fn)(void *arg, size_t i, const ct_token_t *tok);

/* Run fn(arg, i, tok') for every i in [0, n) on the pool and on the calling thread, in parallel,
 * in blocks handed out dynamically (PLINQ's WithCancellation). The token is checked before every
 * index, so the whole loop stops within one call of `fn` per thread once `tok` fires or a call
 * fails; tok' fires in both cases, so long calls can stop too.
 * Returns: 0 when every index ran; the first negative value returned by fn (other than
 * -ECANCELED after tok' fired); -ECANCELED if `tok` fired; -EINVAL; -ENOMEM. If the pool cannot
 * take helpers the calling thread does the work alone.
 * Thread: any, not a pool thread of `pool` if the pool may be full (it would wait for itself). */
int ct_parallel_for(ct_pool_t *pool, size_t n, ct_for_fn fn, void *arg, const ct_token_t *tok);

#ifdef __cplusplus
}
#endif
#endif
