/* The monotonic clock, the fake clock, and the timer service.
 *
 * The timer service is one thread sleeping on a condition variable (CLOCK_MONOTONIC) until the
 * earliest deadline in a binary heap. Arming a timer wakes the thread only when the new deadline
 * is earlier than the one it sleeps until, so creating and freeing timeout sources in a loop costs
 * no system call. Removing a timer never wakes it: an early wake-up with nothing due is cheap.
 * The thread asks for a timer slack of 1 ns, because the default 50 µs would be most of the
 * lateness budget.
 *
 * Under the fake clock the thread fires nothing; ct_clock_fake_advance() fires due timers itself,
 * on the calling thread, so a test knows they have all run when it returns. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "ct/time.h"
#include "internal.h"
#include "timer.h"

/* ---- clock --------------------------------------------------------------------------------- */

static struct {
    int on;         /* atomic */
    int64_t now_ns; /* atomic */
} fake;

static int64_t real_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ct_now_ns(void)
{
    if (__builtin_expect(__atomic_load_n(&fake.on, __ATOMIC_ACQUIRE), 0))
        return __atomic_load_n(&fake.now_ns, __ATOMIC_ACQUIRE);
    return real_now_ns();
}

int64_t ct_now_ms(void)
{
    return ct_now_ns() / 1000000;
}

int64_t ct_deadline_after(int64_t ms)
{
    if (ms < 0)
        return -1;
    if (ms > CT_TIMEOUT_MAX_MS)
        ms = CT_TIMEOUT_MAX_MS;
    return ct_now_ms() + ms;
}

int64_t ct_deadline_remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - ct_now_ms();
    return left > 0 ? left : 0;
}

bool ct_clock_is_fake(void)
{
    return __atomic_load_n(&fake.on, __ATOMIC_ACQUIRE) != 0;
}

/* ---- timer service ------------------------------------------------------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ct__timer **heap;
    uint32_t len, cap;
    int64_t sleep_until; /* deadline the thread sleeps until; INT64_MIN while it is awake */
    bool running, stopping;
    bool armed_while_stopping; /* a timer was armed during ct_timers_stop(): start again */
    pthread_t thread;
} svc = {.mu = PTHREAD_MUTEX_INITIALIZER, .sleep_until = INT64_MIN};

static pthread_once_t svc_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER; /* one ct_timers_stop() at a time */

static void cv_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&svc.cv, &attr);
    pthread_condattr_destroy(&attr);
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&svc.mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&svc.mu);
}

/* The child has no timer thread; the next arming starts one. The condition variable still
 * counts the parent's sleeping timer thread as a waiter, and glibc's signal would wait for it
 * forever: both it and the mutex are made anew. */
static void atfork_child(void)
{
    pthread_mutex_init(&svc.mu, NULL);
    cv_init();
    svc.running = false;
    svc.stopping = false;
    svc.armed_while_stopping = false;
    svc.sleep_until = INT64_MIN;
}

static void svc_init(void)
{
    cv_init();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static inline bool earlier(const struct ct__timer *a, const struct ct__timer *b)
{
    return a->deadline_ns < b->deadline_ns;
}

static void heap_set(uint32_t i, struct ct__timer *t)
{
    svc.heap[i] = t;
    t->idx = i;
}

static void sift_up(uint32_t i)
{
    struct ct__timer *t = svc.heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!earlier(t, svc.heap[parent]))
            break;
        heap_set(i, svc.heap[parent]);
        i = parent;
    }
    heap_set(i, t);
}

static void sift_down(uint32_t i)
{
    struct ct__timer *t = svc.heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= svc.len)
            break;
        if (child + 1 < svc.len && earlier(svc.heap[child + 1], svc.heap[child]))
            child++;
        if (!earlier(svc.heap[child], t))
            break;
        heap_set(i, svc.heap[child]);
        i = child;
    }
    heap_set(i, t);
}

static void heap_remove(struct ct__timer *t)
{
    uint32_t i = t->idx;
    struct ct__timer *last = svc.heap[--svc.len];
    t->idx = CT__TIMER_IDLE;
    if (last == t)
        return;
    heap_set(i, last);
    if (i > 0 && earlier(last, svc.heap[(i - 1) / 2]))
        sift_up(i);
    else
        sift_down(i);
}

/* Pop the earliest timer if it is due at `now`, pinned. Lock held. */
static struct ct__timer *pop_due(int64_t now, int64_t *arg)
{
    if (svc.len == 0 || svc.heap[0]->deadline_ns > now)
        return NULL;
    struct ct__timer *t = svc.heap[0];
    heap_remove(t);
    t->ops->pin(t);
    *arg = t->arg;
    return t;
}

static void *timer_thread(void *unused)
{
    (void) unused;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    pthread_mutex_lock(&svc.mu);
    while (!svc.stopping) {
        if (!ct_clock_is_fake()) {
            int64_t arg;
            struct ct__timer *t = pop_due(real_now_ns(), &arg);
            if (t) {
                pthread_mutex_unlock(&svc.mu);
                t->ops->fire(t, arg);
                pthread_mutex_lock(&svc.mu);
                continue;
            }
        }
        if (svc.len == 0 || ct_clock_is_fake()) {
            svc.sleep_until = INT64_MAX;
            pthread_cond_wait(&svc.cv, &svc.mu);
        } else {
            int64_t d = svc.heap[0]->deadline_ns;
            struct timespec ts = {(time_t) (d / 1000000000), (long) (d % 1000000000)};
            svc.sleep_until = d;
            pthread_cond_timedwait(&svc.cv, &svc.mu, &ts);
        }
        svc.sleep_until = INT64_MIN;
    }
    pthread_mutex_unlock(&svc.mu);
    return NULL;
}

/* Lock held. */
static int ensure_thread(void)
{
    if (svc.running)
        return 0;
    int rc = ct__thread_start(&svc.thread, timer_thread, NULL);
    if (rc < 0)
        return rc;
    svc.running = true;
    return 0;
}

int ct__timer_start(struct ct__timer *t, int64_t deadline_ns, int64_t arg)
{
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&svc.mu);
    int rc = 0;
    if (t->dead) {
        rc = -ESRCH;
        goto out;
    }
    if (svc.stopping)
        svc.armed_while_stopping = true; /* the stopping thread restarts one after joining */
    else if ((rc = ensure_thread()) < 0)
        goto out;
    if (t->idx == CT__TIMER_IDLE) {
        if (svc.len == svc.cap) {
            uint32_t cap = svc.cap ? svc.cap * 2 : 64;
            struct ct__timer **heap = ct__realloc(svc.heap, cap * sizeof(*heap));
            if (!heap) {
                rc = -ENOMEM;
                goto out;
            }
            svc.heap = heap;
            svc.cap = cap;
        }
        t->deadline_ns = deadline_ns;
        t->arg = arg;
        heap_set(svc.len++, t);
        sift_up(t->idx);
    } else {
        bool later = deadline_ns > t->deadline_ns;
        t->deadline_ns = deadline_ns;
        t->arg = arg;
        if (later)
            sift_down(t->idx);
        else
            sift_up(t->idx);
    }
    if (deadline_ns < svc.sleep_until)
        pthread_cond_signal(&svc.cv);
out:
    pthread_mutex_unlock(&svc.mu);
    return rc;
}

bool ct__timer_stop(struct ct__timer *t)
{
    pthread_mutex_lock(&svc.mu);
    bool armed = t->idx != CT__TIMER_IDLE;
    if (armed)
        heap_remove(t);
    pthread_mutex_unlock(&svc.mu);
    return armed;
}

void ct__timer_kill(struct ct__timer *t)
{
    pthread_mutex_lock(&svc.mu);
    if (t->idx != CT__TIMER_IDLE)
        heap_remove(t);
    t->dead = true;
    pthread_mutex_unlock(&svc.mu);
}

void ct_timers_stop(void)
{
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&stop_mu);
    pthread_mutex_lock(&svc.mu);
    if (!svc.running || pthread_equal(svc.thread, pthread_self())) {
        pthread_mutex_unlock(&svc.mu);
        pthread_mutex_unlock(&stop_mu);
        return;
    }
    svc.stopping = true;
    pthread_cond_signal(&svc.cv);
    pthread_t th = svc.thread;
    pthread_mutex_unlock(&svc.mu);
    pthread_join(th, NULL);
    pthread_mutex_lock(&svc.mu);
    svc.running = false;
    svc.stopping = false;
    if (svc.armed_while_stopping) {
        /* A timeout armed meanwhile found a thread on its way out: start another. If that
         * fails the timeout waits for the next arming, which tries again. */
        svc.armed_while_stopping = false;
        if (svc.len > 0)
            ensure_thread();
    }
    if (svc.len == 0) {
        ct__free(svc.heap);
        svc.heap = NULL;
        svc.cap = 0;
    }
    pthread_mutex_unlock(&svc.mu);
    pthread_mutex_unlock(&stop_mu);
}

/* ---- fake clock ---------------------------------------------------------------------------- */

void ct_clock_fake_start(void)
{
    __atomic_store_n(&fake.now_ns, real_now_ns(), __ATOMIC_RELEASE);
    __atomic_store_n(&fake.on, 1, __ATOMIC_RELEASE);
}

int ct_clock_fake_advance(int64_t ms)
{
    if (ms < 0 || ms > CT_TIMEOUT_MAX_MS || !ct_clock_is_fake())
        return -EINVAL;
    int64_t now = __atomic_add_fetch(&fake.now_ns, ms * 1000000, __ATOMIC_ACQ_REL);
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&svc.mu);
    int64_t arg;
    struct ct__timer *t;
    while ((t = pop_due(now, &arg))) {
        pthread_mutex_unlock(&svc.mu);
        t->ops->fire(t, arg);
        pthread_mutex_lock(&svc.mu);
    }
    pthread_mutex_unlock(&svc.mu);
    ct__park_clock_changed();
    return 0;
}

void ct_clock_fake_stop(void)
{
    __atomic_store_n(&fake.on, 0, __ATOMIC_RELEASE);
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&svc.mu);
    pthread_cond_signal(&svc.cv); /* back to real deadlines */
    pthread_mutex_unlock(&svc.mu);
    ct__park_clock_changed();
}
