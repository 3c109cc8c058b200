/* bench_pool: the thread pool and task groups.
 *
 *   1. submit-to-start latency on an idle pool (threads parked), p50/p99;
 *   2. the same, back to back (the thread has just finished the previous task);
 *   3. throughput: trivial tasks submitted from one thread, tasks/s;
 *   4. a task group of 8, then 64 siblings waiting in ct calls plus one that fails: time from the
 *      failing task's return to ct_group_wait() returning (every sibling has returned), p50/p99,
 *      next to the floor: 64 bare threads parked on futexes, woken one by one.
 * Every loop is bounded by a count.   bench_pool [--quick] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench_util.h"
#include "ct.h"

static int quick;

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* ---- 1, 2: submit to start ----------------------------------------------------------------- */

struct probe {
    ct_pool_task_t task;
    int64_t submitted, started;
    ct_sem_t done;
};

static int probe_fn(void *arg, const ct_token_t *tok)
{
    struct probe *p = arg;
    (void) tok;
    p->started = bench_now_ns();
    return 0;
}

static void probe_done(void *arg, int result)
{
    (void) result;
    ct_sem_post(&((struct probe *) arg)->done);
}

static void submit_to_start(ct_pool_t *pool, int samples, long gap_us, double *p50, double *p99)
{
    int64_t *lat = malloc(sizeof(*lat) * (size_t) samples);
    struct probe p;
    ct_sem_init(&p.done, 0);
    for (int i = 0; i < samples; i++) {
        if (gap_us)
            pause_us(gap_us); /* let the thread go back to sleep: the pool is idle */
        p.submitted = bench_now_ns();
        ct_pool_submit(pool, &p.task, probe_fn, probe_done, &p, NULL);
        ct_sem_wait(&p.done, NULL, -1);
        lat[i] = p.started - p.submitted;
    }
    *p50 = (double) bench_percentile(lat, samples, 50) / 1000.0;
    *p99 = (double) bench_percentile(lat, samples, 99) / 1000.0;
    free(lat);
    ct_sem_destroy(&p.done);
}

/* ---- 3: throughput ------------------------------------------------------------------------- */

struct counter {
    long target, n; /* n atomic */
    ct_sem_t all_done;
};

static int trivial(void *arg, const ct_token_t *tok)
{
    (void) arg;
    (void) tok;
    return 0;
}

static void count_done(void *arg, int result)
{
    struct counter *c = arg;
    (void) result;
    if (__atomic_add_fetch(&c->n, 1, __ATOMIC_ACQ_REL) == c->target)
        ct_sem_post(&c->all_done);
}

static double tasks_per_second(ct_pool_t *pool, long n)
{
    ct_pool_task_t *tasks = calloc((size_t) n, sizeof(*tasks));
    struct counter c = {.target = n};
    ct_sem_init(&c.all_done, 0);
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        while (ct_pool_submit(pool, &tasks[i], trivial, count_done, &c, NULL) == -EAGAIN)
            sched_yield(); /* the queue is full: let the threads catch up */
    ct_sem_wait(&c.all_done, NULL, -1);
    double secs = (double) (bench_now_ns() - t0) / 1e9;
    ct_sem_destroy(&c.all_done);
    free(tasks);
    return (double) n / secs;
}

/* ---- 4: first failure to all siblings returned --------------------------------------------- */

struct cascade {
    ct_sem_t started, go;
    int64_t failed_at;
};

static int sibling(void *arg, const ct_token_t *tok)
{
    struct cascade *c = arg;
    ct_sem_post(&c->started);
    return ct_sleep_ms(60000, tok);
}

static int failing(void *arg, const ct_token_t *tok)
{
    struct cascade *c = arg;
    (void) tok;
    ct_sem_wait(&c->go, NULL, -1);
    c->failed_at = bench_now_ns();
    return -EIO;
}

static void cascade(ct_pool_t *pool, int siblings, int rounds, double *p50, double *p99)
{
    int64_t *lat = malloc(sizeof(*lat) * (size_t) rounds);
    for (int r = 0; r < rounds; r++) {
        struct cascade c = {0};
        ct_sem_init(&c.started, 0);
        ct_sem_init(&c.go, 0);
        ct_group_t *g;
        ct_group_new(&g, pool, NULL);
        for (int i = 0; i < siblings; i++)
            ct_group_spawn(g, sibling, &c);
        ct_group_spawn(g, failing, &c);
        for (int i = 0; i < siblings; i++)
            ct_sem_wait(&c.started, NULL, -1);
        pause_us(1000); /* every sibling is parked in its ct call */
        ct_sem_post(&c.go);
        int rc = ct_group_wait(g);
        lat[r] = bench_now_ns() - c.failed_at;
        if (rc != -EIO)
            abort();
        ct_group_free(g);
        ct_sem_destroy(&c.started);
        ct_sem_destroy(&c.go);
    }
    *p50 = (double) bench_percentile(lat, rounds, 50) / 1000.0;
    *p99 = (double) bench_percentile(lat, rounds, 99) / 1000.0;
    free(lat);
}

/* ---- the floor: bare threads parked on futexes, woken by the kernel ------------------------ */

struct bare {
    uint32_t word[64];
    int ready, left; /* atomic */
    int64_t last;
};

struct bare_arg {
    struct bare *b;
    int i;
};

static void *bare_waiter(void *arg)
{
    struct bare_arg *a = arg;
    uint32_t *w = &a->b->word[a->i];
    __atomic_add_fetch(&a->b->ready, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == 0)
        syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    if (__atomic_sub_fetch(&a->b->left, 1, __ATOMIC_ACQ_REL) == 0)
        a->b->last = bench_now_ns();
    return NULL;
}

/* `n` plain threads each parked on its own futex; one thread sets the words and wakes them one
 * by one (what any canceller of parked waiters must do): time until the last one runs. */
static void bare_cascade(int n, int rounds, double *p50, double *p99)
{
    int64_t *lat = malloc(sizeof(*lat) * (size_t) rounds);
    for (int r = 0; r < rounds; r++) {
        struct bare b = {.left = n};
        struct bare_arg args[64];
        pthread_t th[64];
        for (int i = 0; i < n; i++) {
            args[i] = (struct bare_arg){&b, i};
            pthread_create(&th[i], NULL, bare_waiter, &args[i]);
        }
        while (__atomic_load_n(&b.ready, __ATOMIC_ACQUIRE) < n)
            pause_us(100);
        pause_us(1000); /* every thread is parked */
        int64_t t0 = bench_now_ns();
        for (int i = 0; i < n; i++) {
            __atomic_store_n(&b.word[i], 1, __ATOMIC_RELEASE);
            syscall(SYS_futex, &b.word[i], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        }
        for (int i = 0; i < n; i++)
            pthread_join(th[i], NULL);
        lat[r] = b.last - t0;
    }
    *p50 = (double) bench_percentile(lat, rounds, 50) / 1000.0;
    *p99 = (double) bench_percentile(lat, rounds, 99) / 1000.0;
    free(lat);
}

int main(int argc, char **argv)
{
    quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int div = quick ? 10 : 1;
    ct_pool_t *pool;
    ct_pool_options_t o = {.min_threads = 2, .max_threads = 2, .queue_max = 65536};
    if (ct_pool_new(&pool, &o) < 0)
        return 1;
    double p50, p99;
    printf("| measure | result | target |\n|---|---|---|\n");
    submit_to_start(pool, 5000 / div, 200, &p50, &p99);
    printf(
        "| submit → start, idle pool (threads parked) | p50 %.1f µs, p99 %.1f µs | p50 ≤ 10 µs |\n",
        p50, p99);
    submit_to_start(pool, 20000 / div, 0, &p50, &p99);
    printf("| submit → start, back to back | p50 %.1f µs, p99 %.1f µs | — |\n", p50, p99);
    double rate = 0;
    for (int i = 0; i < 3; i++) {
        double r = tasks_per_second(pool, 1000000 / div);
        rate = r > rate ? r : rate;
    }
    printf("| trivial tasks, 1 submitter, 2 threads (best of 3) | %.2f M tasks/s | — |\n",
           rate / 1e6);
    ct_pool_free(pool, CT_POOL_DRAIN);

    ct_pool_options_t big = {.min_threads = 72, .max_threads = 72, .queue_max = 1024};
    if (ct_pool_new(&pool, &big) < 0)
        return 1;
    cascade(pool, 8, 200 / div, &p50, &p99);
    printf("| first failure → all 8 siblings returned (siblings in `ct_sleep_ms`) | p50 %.0f µs, "
           "p99 %.0f µs | — |\n",
           p50, p99);
    cascade(pool, 64, 200 / div, &p50, &p99);
    printf("| first failure → all 64 siblings returned (siblings in `ct_sleep_ms`) | p50 %.0f µs, "
           "p99 %.0f µs | ≤ 1 ms |\n",
           p50, p99);
    bare_cascade(64, 200 / div, &p50, &p99);
    printf("| floor, same run: 64 bare threads parked on futexes, woken one by one → last one "
           "runs | p50 %.0f µs, p99 %.0f µs | — |\n",
           p50, p99);
    ct_pool_free(pool, CT_POOL_DRAIN);
    ct_timers_stop();
    return 0;
}
