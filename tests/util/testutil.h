/* Shared helpers for ct's tests: the one-test-per-process runner, time scaling for slow machines,
 * waiting for a condition with a generous bound, and an allocator that counts and fails. */
#ifndef CT_TESTUTIL_H
#define CT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Run the tests of this file; with an argument, only the test of that name (CTest runs each
 * test in its own process that way). A name that is not in the list is an error, so a test
 * function left out of CT_TEST_MAIN cannot pass silently. */
#define CT_TEST_MAIN(...)                                                                          \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        const struct CMUnitTest tests[] = {__VA_ARGS__};                                           \
        return ct_test_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));                  \
    }
int ct_test_main(int argc, char **argv, const struct CMUnitTest *tests, size_t n);

/* Built with a sanitizer? (Their allocators keep freed memory, so RSS says little there.) */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CT_TEST_SANITIZED 1
#endif
#endif
#ifndef CT_TEST_SANITIZED
#define CT_TEST_SANITIZED 0
#endif
/* Built with TSan? (It cannot start threads in the child of a multi-threaded fork.) */
#if defined(__SANITIZE_THREAD__)
#define CT_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CT_TEST_TSAN 1
#endif
#endif
#ifndef CT_TEST_TSAN
#define CT_TEST_TSAN 0
#endif

/* The CT_TEST_SCALE multiplier (sanitizer builds are slower); at least 1. */
int ct_test_scale(void);

/* Wait until `cond` is true, checking about every 200 µs, for at most ms × scale milliseconds.
 * Returns whether it became true. For conditions another thread makes true; never a substitute
 * for synchronisation the code under test provides. */
#define CT_WAIT_FOR(cond, ms)                                                                      \
    ({                                                                                             \
        int64_t until_ = ct_test_now_ms() + (int64_t) (ms) *ct_test_scale();                       \
        bool ok_;                                                                                  \
        while (!(ok_ = (cond)) && ct_test_now_ms() < until_)                                       \
            ct_test_pause();                                                                       \
        ok_;                                                                                       \
    })
int64_t ct_test_now_ms(void); /* real monotonic time, whatever the fake clock says */
void ct_test_pause(void);

/* A counting allocator installed with ct_allocator_set(). */
struct ct_test_alloc_stats {
    long calls; /* allocation calls (malloc, calloc, realloc) */
    long live;  /* blocks allocated and not freed */
};
void ct_test_alloc_install(void);      /* count, never fail */
void ct_test_alloc_fail_at(long call); /* fail allocation call number `call` (1-based), 0 none */
struct ct_test_alloc_stats ct_test_alloc_stats(void);
void ct_test_alloc_uninstall(void);

/* Fail allocation call 1, then 2, 3, ... of scenario(arg) until a run succeeds (libuv's
 * loop-oom, curl's torture mode). Every failing run must return -ENOMEM; after every run,
 * after(arg, rc) (may be NULL) settles and checks what else must hold, and then the allocator's
 * live count must be back where it started. Installs the counting allocator, and removes it.
 * Returns the number of failing runs. */
int ct_test_alloc_torture(int (*scenario)(void *arg), void (*after)(void *arg, int rc), void *arg);

/* An address unique to the calling thread. */
const void *ct_test_thread_self(void);

/* Start a thread running fn(arg); join it. Aborts the test on failure. */
typedef struct ct_test_thread ct_test_thread_t;
ct_test_thread_t *ct_test_thread_start(void *(*fn)(void *), void *arg);
void *ct_test_thread_join(ct_test_thread_t *t);

/* The libpq conninfo of the test PostgreSQL server (scripts/pg-test.sh), read from the file that
 * CT_TEST_PG_FILE names: tests registered with ct_tests_require_pg() in tests/CMakeLists.txt
 * get it. Fails the test when there is none. */
const char *ct_test_pg_conninfo(void);

#endif
