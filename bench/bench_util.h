/* Small helpers shared by the benchmarks: a raw monotonic clock, medians and percentiles. */
#ifndef CT_BENCH_UTIL_H
#define CT_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* The real monotonic clock in ns (not ct's, which a test may fake). */
static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static inline int bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

/* Median of v[0..n), sorting v. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The p-th percentile (0..100) of v[0..n) in the unit of v, sorting v. */
static inline int64_t bench_percentile(int64_t *v, int n, int p)
{
    qsort(v, (size_t) n, sizeof(*v), bench_cmp_i64);
    int i = (int) ((int64_t) n * p / 100);
    return v[i < n ? i : n - 1];
}

#endif
