/* bench_token: the cost of ct's tokens, side by side with C++20 std::stop_source / stop_token /
 * stop_callback from libstdc++ (bench/stop_token_peer.cc), in one process, in one run.
 *
 * The process is made multi-threaded before anything is measured (an idle thread), because
 * libstdc++ takes slower paths once a second thread exists and real services have many.
 * Each figure is the median of REPS batches. Every loop is bounded by a count.
 *
 *   bench_token [--quick]        prints a Markdown table for docs/BENCHMARKS.md
 *   bench_token --lateness       only the timer lateness */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "ct.h"

double peer_check_ns(long n);
double peer_register_ns(long n);
double peer_source_ns(long n);
double peer_linked_ns(long n);
double peer_cancel_total_ns(long ncb, long reps, double clock_overhead_ns);

enum { REPS = 9 };
static int os_samples;
static long scale = 1; /* --quick divides every count by 10 */
static volatile long sink;

/* Median over REPS of fn(n). */
static double run(double (*fn)(long), long n)
{
    double v[REPS];
    n /= scale;
    fn(n / 10); /* warm-up */
    for (int i = 0; i < REPS; i++)
        v[i] = fn(n);
    return bench_median(v, REPS);
}

/* ---- ct side ------------------------------------------------------------------------------- */

static double ct_check_ns(long n)
{
    ct_source_t *s;
    ct_source_new(&s);
    const ct_token_t *tok = ct_source_token(s);
    long hits = 0;
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        hits += ct_token_canceled(tok);
    int64_t t1 = bench_now_ns();
    sink = hits;
    ct_source_free(s);
    return (double) (t1 - t0) / (double) n;
}

static void noop_cb(void *arg, const ct_token_t *tok)
{
    (void) arg;
    (void) tok;
}

static double ct_register_ns(long n)
{
    ct_source_t *s;
    ct_source_new(&s);
    const ct_token_t *tok = ct_source_token(s);
    ct_reg_t reg;
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        ct_token_register(tok, &reg, noop_cb, NULL);
        ct_token_unregister(&reg);
    }
    int64_t t1 = bench_now_ns();
    ct_source_free(s);
    return (double) (t1 - t0) / (double) n;
}

static double ct_source_ns(long n)
{
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        ct_source_t *s;
        ct_source_new(&s);
        sink = ct_token_canceled(ct_source_token(s));
        ct_source_free(s);
    }
    return (double) (bench_now_ns() - t0) / (double) n;
}

static double ct_linked_ns(long n)
{
    ct_source_t *p1, *p2;
    ct_source_new(&p1);
    ct_source_new(&p2);
    const ct_token_t *parents[] = {ct_source_token(p1), ct_source_token(p2)};
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        ct_source_t *c;
        ct_source_new_linked(&c, parents, 2);
        sink = ct_token_canceled(ct_source_token(c));
        ct_source_free(c);
    }
    int64_t t1 = bench_now_ns();
    ct_source_free(p1);
    ct_source_free(p2);
    return (double) (t1 - t0) / (double) n;
}

static double ct_timeout_ns(long n)
{
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++) {
        ct_source_t *s;
        ct_source_new_timeout(&s, 10000); /* armed ... */
        sink = ct_token_canceled(ct_source_token(s));
        ct_source_free(s); /* ... and disarmed */
    }
    return (double) (bench_now_ns() - t0) / (double) n;
}

static void count_cb(void *arg, const ct_token_t *tok)
{
    (void) tok;
    ++*(long *) arg;
}

static double ct_cancel_total_ns(long ncb, long reps, double clock_overhead_ns)
{
    ct_reg_t *regs = malloc(sizeof(*regs) * (size_t) ncb);
    long count = 0;
    double total = 0;
    for (long r = 0; r < reps; r++) {
        ct_source_t *s;
        ct_source_new(&s);
        for (long i = 0; i < ncb; i++)
            ct_token_register(ct_source_token(s), &regs[i], count_cb, &count);
        int64_t t0 = bench_now_ns();
        ct_source_cancel(s, CT_CANCELED, NULL);
        int64_t t1 = bench_now_ns();
        total += (double) (t1 - t0) - clock_overhead_ns;
        for (long i = 0; i < ncb; i++)
            ct_token_unregister(&regs[i]);
        ct_source_free(s);
    }
    free(regs);
    if (count != ncb * reps)
        abort();
    return total;
}

/* The cost of two back-to-back clock reads, subtracted from single-cancel timings. */
static double clock_overhead(void)
{
    double v[REPS];
    for (int r = 0; r < REPS; r++) {
        int64_t sum = 0;
        for (int i = 0; i < 100000; i++) {
            int64_t a = bench_now_ns();
            sum += bench_now_ns() - a;
        }
        v[r] = (double) sum / 100000;
    }
    return bench_median(v, REPS);
}

/* Median over REPS of per-callback cancel cost with `ncb` callbacks (rounds sized so each
 * batch cancels about 100k callbacks). */
static double cancel_per_cb(double (*fn)(long, long, double), long ncb, double overhead)
{
    long reps = 100000 / ncb / scale;
    if (reps < 3)
        reps = 3;
    double v[REPS];
    fn(ncb, reps, overhead);
    for (int i = 0; i < REPS; i++)
        v[i] = fn(ncb, reps, overhead) / (double) (reps * ncb);
    return bench_median(v, REPS);
}

/* ---- timer lateness ------------------------------------------------------------------------ */

struct late {
    int64_t deadline_ns;
    int64_t fired_ns;
    ct_sem_t *done;
};

static void late_cb(void *arg, const ct_token_t *tok)
{
    struct late *l = arg;
    (void) tok;
    l->fired_ns = bench_now_ns();
    ct_sem_post(l->done);
}

/* Lateness of short timeouts (1..20 ms, 10 in flight at a time) while `pending` long timeouts
 * sit in the heap. Fills lateness samples in microseconds. */
static void timer_lateness(int pending, int samples, double *late_us)
{
    ct_source_t **far = malloc(sizeof(*far) * (size_t) pending);
    for (int i = 0; i < pending; i++)
        ct_source_new_timeout(&far[i], 3600 * 1000 + i);
    ct_sem_t done;
    ct_sem_init(&done, 0);
    unsigned seed = 42;
    enum { BATCH = 10 };
    for (int base = 0; base < samples; base += BATCH) {
        struct late l[BATCH];
        ct_source_t *s[BATCH];
        ct_reg_t reg[BATCH];
        int n = samples - base < BATCH ? samples - base : BATCH;
        for (int i = 0; i < n; i++) {
            int ms = 1 + (int) (rand_r(&seed) % 20);
            l[i] = (struct late){bench_now_ns() + (int64_t) ms * 1000000, 0, &done};
            ct_source_new_timeout(&s[i], ms);
            ct_token_register(ct_source_token(s[i]), &reg[i], late_cb, &l[i]);
        }
        for (int i = 0; i < n; i++)
            ct_sem_wait(&done, NULL, -1);
        for (int i = 0; i < n; i++) {
            ct_token_unregister(&reg[i]);
            ct_source_free(s[i]);
            late_us[base + i] = (double) (l[i].fired_ns - l[i].deadline_ns) / 1000.0;
        }
    }
    for (int i = 0; i < pending; i++)
        ct_source_free(far[i]);
    free(far);
    ct_sem_destroy(&done);
}

/* The floor the kernel and the machine give: a thread sleeping with clock_nanosleep() until the
 * same kind of deadlines, one at a time, with the same timer slack as ct's timer thread. */
static void *os_sleeper(void *arg)
{
    double *late_us = arg;
    unsigned seed = 42;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    for (int i = 0; i < os_samples; i++) {
        int64_t d = bench_now_ns() + (int64_t) (1 + rand_r(&seed) % 20) * 1000000;
        struct timespec ts = {(time_t) (d / 1000000000), (long) (d % 1000000000)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        late_us[i] = (double) (bench_now_ns() - d) / 1000.0;
    }
    return NULL;
}

static void percentiles(double *v, int n, double *p50, double *p99)
{
    qsort(v, (size_t) n, sizeof(*v), bench_cmp_double);
    *p50 = v[n / 2];
    *p99 = v[(int) ((int64_t) n * 99 / 100)];
}

/* ---- main ---------------------------------------------------------------------------------- */

static int idle_pipe[2];

static void *idle_thread(void *arg)
{
    char c;
    (void) arg;
    while (read(idle_pipe[0], &c, 1) < 0)
        ;
    return NULL;
}

static void row(const char *what, double ct, double peer, const char *target)
{
    if (peer > 0)
        printf("| %s | %.2f | %.2f | %.2fx | %s |\n", what, ct, peer, peer / ct, target);
    else
        printf("| %s | %.2f | — | — | %s |\n", what, ct, target);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    bool lateness_only = argc > 1 && strcmp(argv[1], "--lateness") == 0;
    if (argc > 1 && strcmp(argv[1], "--quick") == 0)
        scale = 10;
    if (pipe(idle_pipe) < 0)
        return 1;
    pthread_t idle;
    pthread_create(&idle, NULL, idle_thread, NULL); /* the process is multi-threaded from here */

    double overhead = 0;
    if (lateness_only)
        goto lateness;
    printf("| operation (multi-threaded process) | ct ns | libstdc++ ns | ct speed-up | target "
           "(ct) |\n");
    printf("|---|---:|---:|---:|---|\n");
    row("check (`ct_token_canceled` / `stop_requested`)", run(ct_check_ns, 200000000),
        run(peer_check_ns, 200000000), "≤ 1 ns");
    row("register + unregister, uncontended", run(ct_register_ns, 20000000),
        run(peer_register_ns, 20000000), "≤ 20 ns");
    row("source new + free", run(ct_source_ns, 20000000), run(peer_source_ns, 20000000), "≤ 30 ns");
    row("linked child of 2 parents, new + free", run(ct_linked_ns, 10000000),
        run(peer_linked_ns, 10000000), "≤ 50 ns");
    row("timeout source new + free (timer armed, disarmed)", run(ct_timeout_ns, 5000000), 0,
        "≤ 100 ns");
    overhead = clock_overhead();
    long counts[] = {1, 100, 10000};
    for (int i = 0; i < 3; i++) {
        char what[96];
        snprintf(what, sizeof(what), "cancel with %ld callback%s, per callback", counts[i],
                 counts[i] > 1 ? "s" : "");
        row(what, cancel_per_cb(ct_cancel_total_ns, counts[i], overhead),
            cancel_per_cb(peer_cancel_total_ns, counts[i], overhead), "≤ 30 ns");
    }
lateness:;
    /* Five rounds, each with ct's timer thread and a bare clock_nanosleep() thread measured at
     * the same time, so the machine's own wake-up jitter shows next to ct's. */
    int samples = 1000 / (int) scale;
    os_samples = samples / 4; /* about the same duration: it waits one deadline at a time */
    double ct50[5], ct99[5], os50[5], os99[5];
    double *ct_late = malloc(sizeof(double) * (size_t) samples);
    double *os_late = malloc(sizeof(double) * (size_t) os_samples);
    for (int r = 0; r < 5; r++) {
        pthread_t th;
        pthread_create(&th, NULL, os_sleeper, os_late);
        timer_lateness(10000, samples, ct_late);
        pthread_join(th, NULL);
        percentiles(ct_late, samples, &ct50[r], &ct99[r]);
        percentiles(os_late, os_samples, &os50[r], &os99[r]);
    }
    printf("\nTimer lateness, 10 000 timeouts pending, 5 rounds of %d samples of 1-20 ms timeouts; "
           "median of the rounds (best-worst round):\n",
           samples);
    /* bench_median sorts: afterwards [0] and [4] are the best and the worst round. */
    double m[4] = {bench_median(ct50, 5), bench_median(ct99, 5), bench_median(os50, 5),
                   bench_median(os99, 5)};
    printf("| | p50 µs | p99 µs | target |\n|---|---|---|---|\n");
    printf("| ct timer service | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | p50 ≤ 300, p99 ≤ 2000 |\n",
           m[0], ct50[0], ct50[4], m[1], ct99[0], ct99[4]);
    printf("| bare clock_nanosleep, same run | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | — |\n", m[2],
           os50[0], os50[4], m[3], os99[0], os99[4]);
    free(ct_late);
    free(os_late);
    if (!lateness_only)
        printf("(clock read pair overhead subtracted from cancel timings: %.1f ns)\n", overhead);

    char c = 0;
    if (write(idle_pipe[1], &c, 1) != 1)
        return 1;
    pthread_join(idle, NULL);
    ct_timers_stop();
    return 0;
}
