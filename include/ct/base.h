/* ct/base.h — error codes, error text and the allocator every ct module uses.
 *
 * Errors: every ct function that can fail returns a negative errno value. Two of them carry
 * ct's cancellation contract and are kept apart everywhere:
 *   -ECANCELED  the token passed to the call fired (the reason is on the token);
 *   -ETIMEDOUT  the call's own deadline passed.
 * Out of memory is -ENOMEM; ct never aborts the process. */
#ifndef CT_BASE_H
#define CT_BASE_H

#include <stddef.h>
#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Text for `err`, a negative errno value returned by ct (a positive one is accepted too).
 * Returns: a static string; never NULL.
 * Thread: any. */
const char *ct_strerror(int err);

/* The allocator ct uses for all of its memory (libuv's uv_replace_allocator). */
typedef struct ct_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*calloc_fn)(size_t count, size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} ct_allocator_t;

/* Replace the allocator. Pass NULL to go back to the C library's.
 * Call it before any ct object exists, or only switch between allocators that can free each
 * other's memory (a wrapper around malloc that counts or fails calls, as the tests do).
 * Returns: 0; -EINVAL if a function pointer is missing.
 * Thread: any, but not while other threads use ct. */
int ct_allocator_set(const ct_allocator_t *allocator);

#ifdef __cplusplus
}
#endif
#endif
