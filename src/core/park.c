/* The parking primitive behind every ct wait. See park.h for the protocol.
 *
 * Recipe (libdill's): check first, arm every clause (token callback, fake-clock list, deadline),
 * wait once, disarm everything, then say which clause fired. Waits without an fd sleep on a
 * futex, the cheapest wake-up there is; waits with an fd sleep in ppoll() on the fd and on the
 * thread's eventfd, which the token callback writes. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>

#include "ct/time.h"
#include "internal.h"
#include "park.h"
#include "timer.h"

/* ---- the thread's eventfd ------------------------------------------------------------------ */

static _Thread_local int tls_efd = -1;
static pthread_key_t efd_key;
static pthread_once_t efd_once = PTHREAD_ONCE_INIT;

static void efd_close(void *p)
{
    close((int) (intptr_t) p - 1);
    tls_efd = -1; /* a later key destructor on this thread that waits makes a new one */
}

/* A forked child must not share its parent's eventfd: a parent's wake-up would reach it. */
static void efd_atfork_child(void)
{
    if (tls_efd >= 0) {
        close(tls_efd);
        pthread_setspecific(efd_key, NULL); /* or the thread's exit would close a reused fd */
    }
    tls_efd = -1;
}

static void efd_init(void)
{
    pthread_key_create(&efd_key, efd_close);
    pthread_atfork(NULL, NULL, efd_atfork_child);
}

/* ---- the fake-clock list ------------------------------------------------------------------- */

static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ct__waiter *fake_head;

static void fake_atfork_prepare(void)
{
    pthread_mutex_lock(&fake_mu);
}

static void fake_atfork_parent(void)
{
    pthread_mutex_unlock(&fake_mu);
}

/* The child's only thread is the forking one, which waits for nothing. */
static void fake_atfork_child(void)
{
    pthread_mutex_init(&fake_mu, NULL);
    fake_head = NULL;
}

static void fake_init(void)
{
    pthread_atfork(fake_atfork_prepare, fake_atfork_parent, fake_atfork_child);
}

static pthread_once_t fake_once = PTHREAD_ONCE_INIT;

static int thread_efd(void)
{
    if (tls_efd >= 0)
        return tls_efd;
    pthread_once(&efd_once, efd_init);
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    pthread_setspecific(efd_key, (void *) (intptr_t) (fd + 1)); /* closed at thread exit */
    return tls_efd = fd;
}

static void kick(struct ct__waiter *w)
{
    uint32_t old = __atomic_fetch_or(&w->word, CT__W_KICKED, __ATOMIC_ACQ_REL);
    if (old & CT__W_PARKED_POLL)
        eventfd_write(w->efd, 1);
    else if (old & CT__W_PARKED_FUTEX)
        ct__futex_wake(&w->word, 1);
}

void ct__park_clock_changed(void)
{
    pthread_mutex_lock(&fake_mu);
    for (struct ct__waiter *w = fake_head; w; w = w->fnext)
        kick(w);
    pthread_mutex_unlock(&fake_mu);
}

static void fake_add(struct ct__waiter *w)
{
    pthread_once(&fake_once, fake_init);
    pthread_mutex_lock(&fake_mu);
    w->fprev = NULL;
    w->fnext = fake_head;
    if (fake_head)
        fake_head->fprev = w;
    fake_head = w;
    pthread_mutex_unlock(&fake_mu);
}

static void fake_remove(struct ct__waiter *w)
{
    pthread_mutex_lock(&fake_mu);
    if (w->fprev)
        w->fprev->fnext = w->fnext;
    else
        fake_head = w->fnext;
    if (w->fnext)
        w->fnext->fprev = w->fprev;
    pthread_mutex_unlock(&fake_mu);
}

/* ---- parking ------------------------------------------------------------------------------- */

void ct__waiter_wake(uint32_t *word, uint32_t old)
{
    if (old & CT__W_PARKED_FUTEX)
        ct__futex_wake(word, 1);
}

static void on_token(void *arg, const ct_token_t *tok)
{
    (void) tok;
    kick(arg);
}

int ct__park(struct ct__waiter *w, struct pollfd *pfd, const ct_token_t *tok, int64_t deadline_ns)
{
    if (ct_token_canceled(tok))
        return -ECANCELED;
    int efd = -1;
    if (pfd && (efd = thread_efd()) < 0)
        return efd;
    w->efd = efd;

    ct_reg_t reg;
    if (ct_token_register(tok, &reg, on_token, w) == 1) {
        __atomic_fetch_and(&w->word, ~CT__W_KICKED, __ATOMIC_RELAXED); /* the callback's kick */
        return -ECANCELED;
    }
    /* The fake clock's list first, then the clock read: an advance in between kicks us. */
    bool fake = deadline_ns >= 0 && ct_clock_is_fake();
    if (fake)
        fake_add(w);

    int rc = 0;
    int64_t timeout_ns = -1;
    if (deadline_ns >= 0) {
        int64_t now = ct_now_ns();
        timeout_ns = now >= deadline_ns ? 0 : fake ? -1 : deadline_ns - now;
    }
    uint32_t parked = pfd ? CT__W_PARKED_POLL : CT__W_PARKED_FUTEX;
    uint32_t v = __atomic_fetch_or(&w->word, parked, __ATOMIC_ACQ_REL) | parked;
    bool ready_now = v & (CT__W_SIGNALED | CT__W_KICKED);
    if (pfd) {
        struct pollfd fds[2] = {*pfd, {efd, POLLIN, 0}};
        struct timespec ts, *tsp = NULL;
        if (ready_now || timeout_ns >= 0) {
            int64_t t = ready_now ? 0 : timeout_ns;
            ts.tv_sec = (time_t) (t / 1000000000);
            ts.tv_nsec = (long) (t % 1000000000);
            tsp = &ts;
        }
        int n = ppoll(fds, 2, tsp, NULL);
        if (n > 0 && fds[1].revents) {
            eventfd_t drained;
            eventfd_read(efd, &drained);
        }
        pfd->revents = n > 0 ? fds[0].revents : 0;
        if (pfd->revents)
            rc = 1;
    } else if (!ready_now && timeout_ns != 0) {
        ct__futex_wait(&w->word, v, timeout_ns);
    }
    __atomic_fetch_and(&w->word, ~(parked | CT__W_KICKED), __ATOMIC_ACQ_REL);

    ct_token_unregister(&reg);
    if (fake)
        fake_remove(w);
    if (ct_token_canceled(tok))
        return -ECANCELED;
    if (rc == 0 && deadline_ns >= 0 && ct_now_ns() >= deadline_ns)
        rc = -ETIMEDOUT;
    return rc;
}
