#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errno.h>

#include "ct/base.h"
#include "testutil.h"

int ct_test_main(int argc, char **argv, const struct CMUnitTest *tests, size_t n)
{
    if (argc > 1) {
        size_t i = 0;
        while (i < n && strcmp(tests[i].name, argv[1]) != 0)
            i++;
        if (i == n) {
            fprintf(stderr, "%s: no test named %s in CT_TEST_MAIN\n", argv[0], argv[1]);
            return 1;
        }
        cmocka_set_test_filter(argv[1]);
    }
    return _cmocka_run_group_tests("ct", tests, n, NULL, NULL);
}

int ct_test_scale(void)
{
    const char *s = getenv("CT_TEST_SCALE");
    int n = s ? atoi(s) : 1;
    return n > 0 ? n : 1;
}

int64_t ct_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ct_test_pause(void)
{
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

/* ---- counting allocator -------------------------------------------------------------------- */

static long calls, live, fail_at;

static bool fail_now(void)
{
    long n = __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    return n == __atomic_load_n(&fail_at, __ATOMIC_RELAXED);
}

static void *t_malloc(size_t n)
{
    if (fail_now())
        return NULL;
    void *p = malloc(n);
    if (p)
        __atomic_add_fetch(&live, 1, __ATOMIC_RELAXED);
    return p;
}

static void *t_calloc(size_t c, size_t n)
{
    if (fail_now())
        return NULL;
    void *p = calloc(c, n);
    if (p)
        __atomic_add_fetch(&live, 1, __ATOMIC_RELAXED);
    return p;
}

static void *t_realloc(void *old, size_t n)
{
    if (fail_now())
        return NULL;
    void *p = realloc(old, n);
    if (p && !old)
        __atomic_add_fetch(&live, 1, __ATOMIC_RELAXED);
    return p;
}

static void t_free(void *p)
{
    if (p)
        __atomic_sub_fetch(&live, 1, __ATOMIC_RELAXED);
    free(p);
}

void ct_test_alloc_install(void)
{
    static const ct_allocator_t a = {t_malloc, t_calloc, t_realloc, t_free};
    __atomic_store_n(&calls, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fail_at, 0, __ATOMIC_RELAXED);
    ct_allocator_set(&a);
}

void ct_test_alloc_fail_at(long call)
{
    __atomic_store_n(&calls, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fail_at, call, __ATOMIC_RELAXED);
}

struct ct_test_alloc_stats ct_test_alloc_stats(void)
{
    struct ct_test_alloc_stats s = {__atomic_load_n(&calls, __ATOMIC_RELAXED),
                                    __atomic_load_n(&live, __ATOMIC_RELAXED)};
    return s;
}

void ct_test_alloc_uninstall(void)
{
    ct_allocator_set(NULL);
}

int ct_test_alloc_torture(int (*scenario)(void *arg), void (*after)(void *arg, int rc), void *arg)
{
    ct_test_alloc_install();
    long baseline = ct_test_alloc_stats().live;
    int failures = 0;
    for (long n = 1;; n++) {
        ct_test_alloc_fail_at(n);
        int rc = scenario(arg);
        if (after)
            after(arg, rc);
        assert_int_equal(baseline, ct_test_alloc_stats().live);
        if (rc == 0)
            break;
        assert_int_equal(-ENOMEM, rc);
        failures++;
        assert_true(n < 1000);
    }
    ct_test_alloc_fail_at(0);
    ct_test_alloc_uninstall();
    return failures;
}

/* ---- threads ------------------------------------------------------------------------------- */

const void *ct_test_thread_self(void)
{
    static _Thread_local char id;
    return &id;
}

struct ct_test_thread {
    pthread_t th;
};

ct_test_thread_t *ct_test_thread_start(void *(*fn)(void *), void *arg)
{
    ct_test_thread_t *t = malloc(sizeof(*t));
    if (!t || pthread_create(&t->th, NULL, fn, arg) != 0)
        abort();
    return t;
}

void *ct_test_thread_join(ct_test_thread_t *t)
{
    void *ret = NULL;
    pthread_join(t->th, &ret);
    free(t);
    return ret;
}

const char *ct_test_pg_conninfo(void)
{
    static char buf[512];
    const char *path = getenv("CT_TEST_PG_FILE");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        fail_msg("no test PostgreSQL server: CT_TEST_PG_FILE=%s", path ? path : "(unset)");
    bool ok = fgets(buf, sizeof(buf), f) != NULL;
    fclose(f);
    if (!ok)
        fail_msg("empty conninfo file %s", path);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}
