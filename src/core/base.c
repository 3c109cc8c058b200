/* Error text and the replaceable allocator. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The allocator is read on every allocation, possibly while a test swaps in a failing one; each
 * pointer is loaded and stored atomically (relaxed: a plain load on the hot path). Mixing two
 * allocators is safe only if they can free each other's memory, which ct_allocator_set() says. */
static ct_allocator_t allocator = {malloc, calloc, realloc, free};
bool ct__libc_allocator = true;

#define LOAD(fn)     __atomic_load_n(&allocator.fn, __ATOMIC_RELAXED)
#define STORE(fn, v) __atomic_store_n(&allocator.fn, (v), __ATOMIC_RELAXED)

int ct_allocator_set(const ct_allocator_t *a)
{
    static const ct_allocator_t libc = {malloc, calloc, realloc, free};
    if (!a)
        a = &libc;
    if (!a->malloc_fn || !a->calloc_fn || !a->realloc_fn || !a->free_fn)
        return -EINVAL;
    __atomic_store_n(&ct__libc_allocator, a == &libc, __ATOMIC_RELAXED);
    STORE(malloc_fn, a->malloc_fn);
    STORE(calloc_fn, a->calloc_fn);
    STORE(realloc_fn, a->realloc_fn);
    STORE(free_fn, a->free_fn);
    return 0;
}

void *ct__malloc(size_t size)
{
    return LOAD(malloc_fn)(size);
}

void *ct__calloc(size_t count, size_t size)
{
    return LOAD(calloc_fn)(count, size);
}

void *ct__realloc(void *ptr, size_t size)
{
    return LOAD(realloc_fn)(ptr, size);
}

void ct__free(void *ptr)
{
    if (ptr)
        LOAD(free_fn)(ptr);
}

char *ct__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ct__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int ct__thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    /* Faults stay deliverable: blocked, the kernel would kill the process without running a
     * handler (a sanitizer's report, a crash handler). */
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
        sigdelset(&all, faults[i]);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

void ct__logf(void (*log)(void *arg, const char *line), void *arg, const char *fmt, ...)
{
    if (!log)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log(arg, line);
}

const void *ct__thread_id(void)
{
    static _Thread_local char id;
    return &id;
}

const char *ct_strerror(int err)
{
    if (err == INT_MIN)
        return "unknown error";
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case ECANCELED:
        return "operation canceled (the token fired)";
    case ETIMEDOUT:
        return "deadline passed";
    default:
        break;
    }
    const char *s = strerrordesc_np(err);
    return s ? s : "unknown error";
}
