/* bench_chan: messages per second through a ct channel and through a plain bounded queue made of
 * one mutex and two condition variables (the baseline), same capacity, same element size, same
 * message count, runs interleaved in the same process.
 *
 *   bench_chan [-n messages] [-c capacity] [-s elem_size] [-r runs] [-l limit_s]
 *
 * Scenarios: 1 producer + 1 consumer, 4 producers + 1 consumer, 4 producers + 4 consumers.
 * Producers split the messages; when they are done the queue is closed, and consumers stop once
 * it is drained. Every message carries a value and the consumers' sums and counts are checked.
 * Every run is bounded by its message count and by a deadline (-l seconds): a run that passes
 * its deadline stops and the program exits with status 1. The median of the runs is reported. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ct/chan.h"
#include "ct/time.h"
#include "bench_util.h"

#define MAX_THREADS 8
#define MAX_RUNS    31
#define MAX_ELEM    4096

static long opt_msgs = 2000000;
static long opt_cap = 1024;
static long opt_size = 16;
static int opt_runs = 7;
static long opt_limit_s = 60;

/* ---- the baseline: mutex + two condition variables around a ring ----------------------------- */

struct bq {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    unsigned char *buf;
    size_t cap, esz, head, len;
    int closed;
};

static void bq_init(struct bq *q, size_t esz, size_t cap)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_condattr_destroy(&ca);
    q->buf = malloc(esz * cap);
    if (!q->buf)
        abort();
    q->cap = cap;
    q->esz = esz;
    q->head = q->len = 0;
    q->closed = 0;
}

static void bq_destroy(struct bq *q)
{
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    free(q->buf);
}

static struct timespec ms_to_ts(int64_t ms)
{
    struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000};
    return ts;
}

static int bq_send(struct bq *q, const void *elem, int64_t deadline_ms)
{
    struct timespec dl = ms_to_ts(deadline_ms);
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap && !q->closed) {
        if (pthread_cond_timedwait(&q->not_full, &q->mu, &dl) == ETIMEDOUT) {
            pthread_mutex_unlock(&q->mu);
            return -ETIMEDOUT;
        }
    }
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return -EPIPE;
    }
    size_t i = (q->head + q->len) % q->cap;
    memcpy(q->buf + i * q->esz, elem, q->esz);
    q->len++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int bq_recv(struct bq *q, void *elem, int64_t deadline_ms)
{
    struct timespec dl = ms_to_ts(deadline_ms);
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && !q->closed) {
        if (pthread_cond_timedwait(&q->not_empty, &q->mu, &dl) == ETIMEDOUT) {
            pthread_mutex_unlock(&q->mu);
            return -ETIMEDOUT;
        }
    }
    if (q->len == 0) {
        pthread_mutex_unlock(&q->mu);
        return -EPIPE;
    }
    memcpy(elem, q->buf + q->head * q->esz, q->esz);
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static void bq_close(struct bq *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

/* ---- one run --------------------------------------------------------------------------------- */

enum impl { IMPL_CT, IMPL_BASE };

struct run {
    enum impl impl;
    ct_chan_t *ch;
    struct bq bq;
    pthread_barrier_t start;
    int64_t deadline_ms; /* the run's time bound */
    long per_producer;
    int failed; /* atomic */
};

struct worker {
    struct run *run;
    int id;
    long count;
    uint64_t sum;
};

static void *producer(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    unsigned char elem[MAX_ELEM] = {0};
    pthread_barrier_wait(&r->start);
    for (long i = 0; i < r->per_producer; i++) {
        uint64_t v = ((uint64_t) w->id << 40) | (uint64_t) i;
        memcpy(elem, &v, sizeof(v));
        int rc = r->impl == IMPL_CT ? ct_chan_send(r->ch, elem, NULL, r->deadline_ms)
                                    : bq_send(&r->bq, elem, r->deadline_ms);
        if (rc < 0) {
            __atomic_store_n(&r->failed, rc, __ATOMIC_RELAXED);
            break;
        }
        w->count++;
        w->sum += v;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    unsigned char elem[MAX_ELEM];
    pthread_barrier_wait(&r->start);
    for (;;) {
        int rc = r->impl == IMPL_CT ? ct_chan_recv(r->ch, elem, NULL, r->deadline_ms)
                                    : bq_recv(&r->bq, elem, r->deadline_ms);
        if (rc == -EPIPE)
            break;
        if (rc < 0) {
            __atomic_store_n(&r->failed, rc, __ATOMIC_RELAXED);
            break;
        }
        uint64_t v;
        memcpy(&v, elem, sizeof(v));
        w->count++;
        w->sum += v;
    }
    return NULL;
}

/* Messages per second of one run, or -1 on failure (printed). */
static double run_once(enum impl impl, int np, int nc)
{
    struct run r = {.impl = impl, .per_producer = opt_msgs / np};
    if (impl == IMPL_CT) {
        int rc = ct_chan_new(&r.ch, (size_t) opt_size, (size_t) opt_cap);
        if (rc < 0) {
            fprintf(stderr, "ct_chan_new: %s\n", ct_strerror(rc));
            return -1;
        }
    } else {
        bq_init(&r.bq, (size_t) opt_size, (size_t) opt_cap);
    }
    pthread_barrier_init(&r.start, NULL, (unsigned) (np + nc + 1));
    r.deadline_ms = ct_now_ms() + opt_limit_s * 1000;

    struct worker prod[MAX_THREADS], cons[MAX_THREADS];
    pthread_t pt[MAX_THREADS], ctid[MAX_THREADS];
    for (int i = 0; i < nc; i++) {
        cons[i] = (struct worker){.run = &r, .id = i};
        pthread_create(&ctid[i], NULL, consumer, &cons[i]);
    }
    for (int i = 0; i < np; i++) {
        prod[i] = (struct worker){.run = &r, .id = i};
        pthread_create(&pt[i], NULL, producer, &prod[i]);
    }
    pthread_barrier_wait(&r.start);
    int64_t t0 = ct_now_ns();
    for (int i = 0; i < np; i++)
        pthread_join(pt[i], NULL);
    if (impl == IMPL_CT)
        ct_chan_close(r.ch);
    else
        bq_close(&r.bq);
    for (int i = 0; i < nc; i++)
        pthread_join(ctid[i], NULL);
    int64_t t1 = ct_now_ns();

    long sent = 0, got = 0;
    uint64_t ssum = 0, gsum = 0;
    for (int i = 0; i < np; i++)
        sent += prod[i].count, ssum += prod[i].sum;
    for (int i = 0; i < nc; i++)
        got += cons[i].count, gsum += cons[i].sum;
    if (impl == IMPL_CT)
        ct_chan_free(r.ch);
    else
        bq_destroy(&r.bq);
    pthread_barrier_destroy(&r.start);

    int failed = __atomic_load_n(&r.failed, __ATOMIC_RELAXED);
    if (failed || sent != r.per_producer * np || got != sent || gsum != ssum) {
        fprintf(stderr, "%s %dp%dc: FAILED (%s; sent %ld, received %ld, sums %s)\n",
                impl == IMPL_CT ? "ct" : "baseline", np, nc,
                failed ? ct_strerror(failed) : "no error", sent, got,
                gsum == ssum ? "equal" : "differ");
        return -1;
    }
    return (double) sent * 1e9 / (double) (t1 - t0);
}

static int scenario(int np, int nc)
{
    double ct[MAX_RUNS], base[MAX_RUNS];
    for (int i = 0; i < opt_runs; i++) {
        /* Interleave so that a change in the machine's load hits both alike. */
        if ((base[i] = run_once(IMPL_BASE, np, nc)) < 0)
            return -1;
        if ((ct[i] = run_once(IMPL_CT, np, nc)) < 0)
            return -1;
    }
    double mct = bench_median(ct, opt_runs), mbase = bench_median(base, opt_runs);
    printf("%d producer%s + %d consumer%s  ct %7.2f M msgs/s   baseline %7.2f M msgs/s   "
           "ratio %.2fx   (min..max ct %.2f..%.2f, baseline %.2f..%.2f)\n",
           np, np > 1 ? "s" : " ", nc, nc > 1 ? "s" : " ", mct / 1e6, mbase / 1e6, mct / mbase,
           ct[0] / 1e6, ct[opt_runs - 1] / 1e6, base[0] / 1e6, base[opt_runs - 1] / 1e6);
    fflush(stdout);
    return 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-n messages] [-c capacity] [-s elem_size] [-r runs] [-l limit_s]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "n:c:s:r:l:")) != -1) {
        switch (opt) {
        case 'n':
            opt_msgs = atol(optarg);
            break;
        case 'c':
            opt_cap = atol(optarg);
            break;
        case 's':
            opt_size = atol(optarg);
            break;
        case 'r':
            opt_runs = atoi(optarg);
            break;
        case 'l':
            opt_limit_s = atol(optarg);
            break;
        default:
            usage(argv[0]);
        }
    }
    if (opt_msgs < 8 || opt_cap < 1 || opt_cap > (long) CT_CHAN_CAPACITY_MAX ||
        opt_size < (long) sizeof(uint64_t) || opt_size > MAX_ELEM || opt_runs < 1 ||
        opt_runs > MAX_RUNS || opt_limit_s < 1)
        usage(argv[0]);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_chan: %ld messages of %ld bytes, capacity %ld, median of %d runs, %ld CPUs\n",
           opt_msgs, opt_size, opt_cap, opt_runs, ncpu);
    if (scenario(1, 1) < 0 || scenario(4, 1) < 0 || scenario(4, 4) < 0)
        return 1;
    return 0;
}
