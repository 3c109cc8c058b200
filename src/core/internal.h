/* Internal helpers shared by libct's files: allocation, futexes, spinning, thread identity. */
#ifndef CT_CORE_INTERNAL_H
#define CT_CORE_INTERNAL_H

/* syscall() and the other GNU interfaces below need _GNU_SOURCE before the first system header:
 * every libct .c file defines it on its first line. */
#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before any #include"
#endif

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <linux/futex.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ct/base.h"

#define ct__container_of(ptr, type, member)                                                        \
    ((type *) (void *) ((char *) (ptr) -offsetof(type, member)))

void *ct__malloc(size_t size);
void *ct__calloc(size_t count, size_t size);
void *ct__realloc(void *ptr, size_t size);
void ct__free(void *ptr);
/* A copy of `s` from ct__malloc (free with ct__free); NULL when out of memory. */
char *ct__strdup(const char *s);
/* Is the C library's allocator the one in use (no ct_allocator_set() in force)? */
extern bool ct__libc_allocator;
static inline bool ct__allocator_is_libc(void)
{
    return __atomic_load_n(&ct__libc_allocator, __ATOMIC_RELAXED);
}

/* Format one line (up to 255 bytes, cut beyond) and hand it to `log` with `arg`; nothing when
 * `log` is NULL. The libraries' own log callbacks all go through this. */
void ct__logf(void (*log)(void *arg, const char *line), void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pthread_create() with every signal but the faults (SIGSEGV, SIGBUS, ...) blocked in the new
 * thread: signals are the host's business (ct/host.h), and a ct thread must never be the one the
 * kernel picks to deliver them. Returns 0 or a negative errno. */
int ct__thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* An address unique to the calling thread, for "is this the thread that ..." questions. */
const void *ct__thread_id(void);

static inline void ct__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Back off inside a spin loop: pause first, give the core away after a while (on a 2-core
 * machine the thread we wait for may be preempted and need our core to finish). */
static inline void ct__spin(unsigned *n)
{
    if (++*n < 64)
        ct__cpu_relax();
    else
        sched_yield();
}

/* Futex wait while *word == expected, at most `timeout_ns` (< 0: forever). Spurious returns are
 * possible; callers loop on their own condition. */
static inline void ct__futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t) (timeout_ns / 1000000000);
        ts.tv_nsec = (long) (timeout_ns % 1000000000);
        tsp = &ts;
    }
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, tsp, NULL, 0);
}

/* Wake up to `n` threads waiting on `word`. The word may already be out of scope: waking an
 * address nobody waits on is harmless, and every ct waiter tolerates a spurious wake-up. */
static inline void ct__futex_wake(uint32_t *word, int n)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

#endif
