/* Cancellable sleep, fd wait, semaphore and condition variable, all on ct__park(). */
#define _GNU_SOURCE
#include <stdint.h>

#include "ct/time.h"
#include "ct/wait.h"
#include "internal.h"
#include "park.h"

int ct_sleep_ms(int64_t ms, const ct_token_t *tok)
{
    if (ms < 0)
        return -EINVAL;
    if (ms > CT_TIMEOUT_MAX_MS)
        ms = CT_TIMEOUT_MAX_MS;
    int64_t deadline = ct_now_ns() + ms * 1000000;
    struct ct__waiter w;
    ct__waiter_init(&w);
    for (;;) {
        int rc = ct__park(&w, NULL, tok, deadline);
        if (rc == -ETIMEDOUT)
            return 0;
        if (rc < 0)
            return rc;
    }
}

int ct_fd_wait(int fd, int events, const ct_token_t *tok, int64_t deadline)
{
    if (fd < 0)
        return -EBADF;
    if (!ct__deadline_valid(deadline))
        return -EINVAL;
    struct ct__waiter w;
    ct__waiter_init(&w);
    for (;;) {
        struct pollfd pfd = {fd, (short) events, 0};
        int rc = ct__park(&w, &pfd, tok, ct__deadline_ns(deadline));
        if (rc == 1)
            return (pfd.revents & POLLNVAL) ? -EBADF : pfd.revents;
        if (rc < 0)
            return rc;
    }
}

/* ---- semaphore ----------------------------------------------------------------------------- */

int ct_sem_init(ct_sem_t *sem, int64_t count)
{
    if (!sem || count < 0 || count > INT32_MAX)
        return -EINVAL;
    int rc = pthread_mutex_init(&sem->mu_, NULL);
    if (rc)
        return -rc;
    sem->count_ = count;
    sem->head_ = sem->tail_ = NULL;
    return 0;
}

void ct_sem_destroy(ct_sem_t *sem)
{
    pthread_mutex_destroy(&sem->mu_);
}

int ct_sem_post(ct_sem_t *sem)
{
    pthread_mutex_lock(&sem->mu_);
    struct ct__waiter *w = sem->head_;
    if (!w) {
        if (sem->count_ == INT32_MAX) {
            pthread_mutex_unlock(&sem->mu_);
            return -EOVERFLOW;
        }
        sem->count_++;
        pthread_mutex_unlock(&sem->mu_);
        return 0;
    }
    /* Hand the permit straight to the first waiter, so a late thread cannot steal it. */
    ct__waitq_remove(&sem->head_, &sem->tail_, w);
    uint32_t *word = &w->word;
    uint32_t old = ct__waiter_signal(w);
    pthread_mutex_unlock(&sem->mu_);
    ct__waiter_wake(word, old);
    return 0;
}

int ct_sem_trywait(ct_sem_t *sem)
{
    pthread_mutex_lock(&sem->mu_);
    int rc = -EAGAIN;
    if (sem->count_ > 0) {
        sem->count_--;
        rc = 0;
    }
    pthread_mutex_unlock(&sem->mu_);
    return rc;
}

int ct_sem_wait(ct_sem_t *sem, const ct_token_t *tok, int64_t deadline)
{
    if (!ct__deadline_valid(deadline))
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    pthread_mutex_lock(&sem->mu_);
    if (sem->count_ > 0) {
        sem->count_--;
        pthread_mutex_unlock(&sem->mu_);
        return 0;
    }
    struct ct__waiter w;
    ct__waiter_init(&w);
    ct__waitq_push(&sem->head_, &sem->tail_, &w);
    pthread_mutex_unlock(&sem->mu_);

    int64_t dl = ct__deadline_ns(deadline);
    for (;;) {
        int rc = ct__park(&w, NULL, tok, dl);
        pthread_mutex_lock(&sem->mu_);
        if (!w.queued) {
            /* A post handed us the permit; it wins over a token or deadline firing meanwhile. */
            pthread_mutex_unlock(&sem->mu_);
            return 0;
        }
        if (rc < 0) {
            ct__waitq_remove(&sem->head_, &sem->tail_, &w);
            pthread_mutex_unlock(&sem->mu_);
            return rc;
        }
        pthread_mutex_unlock(&sem->mu_);
    }
}

/* ---- condition variable -------------------------------------------------------------------- */

int ct_cond_init(ct_cond_t *cond)
{
    int rc = pthread_mutex_init(&cond->mu_, NULL);
    if (rc)
        return -rc;
    cond->head_ = cond->tail_ = NULL;
    return 0;
}

void ct_cond_destroy(ct_cond_t *cond)
{
    pthread_mutex_destroy(&cond->mu_);
}

int ct_cond_wait(ct_cond_t *cond, pthread_mutex_t *mu, const ct_token_t *tok, int64_t deadline)
{
    if (!ct__deadline_valid(deadline))
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    struct ct__waiter w;
    ct__waiter_init(&w);
    pthread_mutex_lock(&cond->mu_);
    ct__waitq_push(&cond->head_, &cond->tail_, &w);
    pthread_mutex_unlock(&cond->mu_);
    pthread_mutex_unlock(mu);

    int rc = ct__park(&w, NULL, tok, ct__deadline_ns(deadline));

    pthread_mutex_lock(&cond->mu_);
    bool signaled = !w.queued;
    if (!signaled)
        ct__waitq_remove(&cond->head_, &cond->tail_, &w);
    pthread_mutex_unlock(&cond->mu_);
    pthread_mutex_lock(mu);
    if (signaled || rc > 0)
        return 0;
    return rc;
}

void ct_cond_signal(ct_cond_t *cond)
{
    pthread_mutex_lock(&cond->mu_);
    struct ct__waiter *w = cond->head_;
    if (!w) {
        pthread_mutex_unlock(&cond->mu_);
        return;
    }
    ct__waitq_remove(&cond->head_, &cond->tail_, w);
    uint32_t *word = &w->word;
    uint32_t old = ct__waiter_signal(w);
    pthread_mutex_unlock(&cond->mu_);
    ct__waiter_wake(word, old);
}

void ct_cond_broadcast(ct_cond_t *cond)
{
    /* Wake under the lock: the waiters cannot leave before we are done with them, and there is
     * no bounded place to keep their addresses for after unlocking. */
    pthread_mutex_lock(&cond->mu_);
    struct ct__waiter *w;
    while ((w = cond->head_)) {
        ct__waitq_remove(&cond->head_, &cond->tail_, w);
        ct__waiter_wake(&w->word, ct__waiter_signal(w));
    }
    pthread_mutex_unlock(&cond->mu_);
}
