/* ct-host: signals become a stopping token; services start in order and stop in reverse within
 * a shutdown timeout.
 *
 * Threads. The signal thread reads a signalfd (the signals are blocked everywhere, so nothing
 * runs in a handler and no thread is interrupted by EINTR). ct_host_run() starts the services on
 * the caller's thread, then waits for the stopping token. The stop calls run on a stopper thread
 * so that ct_host_run() can give up on them when the shutdown timeout passes: a stop callback
 * that ignores its token would otherwise hold the process for ever, which is what the timeout
 * exists to prevent. An abandoned stopper (and the background threads it waited for) keeps
 * references to what it uses, so nothing it touches is freed under it. */
#define _GNU_SOURCE
#include "ct/host.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "ct/wait.h"

/* After the shutdown timeout, how long a stop that honours its token has to report back. */
#define GRACE_MS 200

struct bg {
    int refs; /* atomic: the host's service entry and the thread */
    ct_host_run_fn run;
    void *arg;
    const ct_token_t *stopping;
    ct_host_t *host;
    char *name;
    ct_sem_t done;
    pthread_t thread;
};

struct svc {
    char *name;
    ct_host_service_t s;
    struct bg *bg;
    int started;
};

struct stopper {
    int refs; /* atomic: ct_host_run() and the stopper thread */
    ct_host_t *host;
    const ct_token_t *tok; /* fires at the shutdown deadline */
    ct_sem_t done;
    int next;      /* atomic: index of the service being stopped; -1 when all have returned */
    int abandoned; /* atomic: stops that returned an error after the deadline token fired */
};

struct ct_host {
    ct_host_options_t opt;
    ct_source_t *stopping;
    ct_source_t *closing; /* ends the signal thread */
    int sfd;
    pthread_t sig_thread;
    int has_sig_thread;
    char notify[sizeof(((struct sockaddr_un *) 0)->sun_path) + 1];
    struct svc *svcs;
    int nsvcs, cap;
    int ran;
    int abandoned; /* ct_host_run() gave up on a stop: the stopper may still use the host */
};

static void default_log(void *arg, const char *line)
{
    (void) arg;
    fprintf(stderr, "ct-host: %s\n", line);
}

#define hlog(h, ...) ct__logf((h)->opt.log, (h)->opt.log_arg, __VA_ARGS__)

/* ---- systemd notification -------------------------------------------------------------------- */

static void notify(ct_host_t *h, const char *msg)
{
    if (!h->notify[0])
        return;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(h->notify);
    memcpy(a.sun_path, h->notify, n);
    if (a.sun_path[0] == '@')
        a.sun_path[0] = '\0'; /* abstract namespace: the name is the n bytes, no terminator */
    socklen_t len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *) &a, len) < 0)
        hlog(h, "NOTIFY_SOCKET %s: %s not sent: %s", h->notify, msg, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* ---- signals --------------------------------------------------------------------------------- */

static void *signal_main(void *arg)
{
    ct_host_t *h = arg;
    const ct_token_t *closing = ct_source_token(h->closing);
    for (;;) {
        int rc = ct_fd_wait(h->sfd, POLLIN, closing, -1);
        if (rc == -ECANCELED)
            break;
        struct signalfd_siginfo si;
        ssize_t n = read(h->sfd, &si, sizeof(si));
        if (n != (ssize_t) sizeof(si))
            continue; /* EAGAIN: another reader, or a spurious wake-up */
        const char *name = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
        if (!ct_token_canceled(ct_source_token(h->stopping))) {
            hlog(h, "%s received: stopping", name); /* before the token wakes everyone */
            ct_source_cancel(h->stopping, CT_SHUTDOWN, name);
        } else {
            /* The operator asked twice: do not make them wait for the shutdown timeout. */
            hlog(h, "second signal (%s) during shutdown: exiting now with status %d", name,
                 CT_HOST_EXIT_FORCED);
            _exit(CT_HOST_EXIT_FORCED);
        }
    }
    return NULL;
}

int ct_host_new(ct_host_t **out, const ct_host_options_t *o)
{
    ct_host_options_t opt = o ? *o : (ct_host_options_t){0};
    if (!out || opt.shutdown_timeout_ms < 0 ||
        opt.shutdown_timeout_ms > CT_HOST_SHUTDOWN_TIMEOUT_MAX_MS)
        return -EINVAL;
    *out = NULL;
    if (!opt.shutdown_timeout_ms)
        opt.shutdown_timeout_ms = CT_HOST_SHUTDOWN_TIMEOUT_DEFAULT_MS;
    if (!opt.log)
        opt.log = default_log;
    ct_host_t *h = ct__calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->opt = opt;
    h->sfd = -1;
    int rc;
    if ((rc = ct_source_new(&h->stopping)) < 0 || (rc = ct_source_new(&h->closing)) < 0)
        goto fail;
    const char *ns = getenv("NOTIFY_SOCKET");
    if (ns && *ns) {
        if (strlen(ns) < sizeof(h->notify) - 1)
            strcpy(h->notify, ns);
        else
            hlog(h, "NOTIFY_SOCKET is too long; systemd will not be notified");
    }
    if (!opt.no_signals) {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        /* An ignored signal is discarded even while blocked, and a shell starts a background
         * job with SIGINT ignored: take both back to the default so the signalfd sees them
         * (blocked, the default action never runs). */
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        h->sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
        if (h->sfd < 0) {
            rc = -errno;
            goto fail;
        }
        if ((rc = ct__thread_start(&h->sig_thread, signal_main, h)) < 0)
            goto fail;
        h->has_sig_thread = 1;
    }
    *out = h;
    return 0;
fail:
    ct_host_free(h);
    return rc;
}

/* ---- services -------------------------------------------------------------------------------- */

static int add(ct_host_t *h, const ct_host_service_t *svc, struct bg *bg)
{
    if (h->ran)
        return -EBUSY;
    if (h->nsvcs == h->cap) {
        int cap = h->cap ? h->cap * 2 : 8;
        struct svc *n = ct__realloc(h->svcs, (size_t) cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        h->svcs = n;
        h->cap = cap;
    }
    char *name = ct__strdup(svc->name ? svc->name : "service");
    if (!name)
        return -ENOMEM;
    h->svcs[h->nsvcs++] = (struct svc){.name = name, .s = *svc, .bg = bg};
    return 0;
}

int ct_host_add(ct_host_t *host, const ct_host_service_t *svc)
{
    if (!host || !svc)
        return -EINVAL;
    return add(host, svc, NULL);
}

static void bg_unref(struct bg *bg)
{
    if (__atomic_sub_fetch(&bg->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        ct_sem_destroy(&bg->done);
        ct__free(bg->name);
        ct__free(bg);
    }
}

static void *bg_main(void *arg)
{
    struct bg *bg = arg;
    int rc = bg->run(bg->arg, bg->stopping);
    if (rc < 0 && rc != -ECANCELED)
        hlog(bg->host, "background service %s returned %s", bg->name, ct_strerror(rc));
    ct_sem_post(&bg->done);
    bg_unref(bg);
    return NULL;
}

static int bg_start(void *arg, const ct_token_t *stopping)
{
    struct bg *bg = arg;
    bg->stopping = stopping;
    __atomic_add_fetch(&bg->refs, 1, __ATOMIC_RELAXED);
    int rc = ct__thread_start(&bg->thread, bg_main, bg);
    if (rc < 0)
        __atomic_sub_fetch(&bg->refs, 1, __ATOMIC_RELAXED);
    return rc;
}

static int bg_stop(void *arg, const ct_token_t *tok)
{
    struct bg *bg = arg;
    int rc = ct_sem_wait(&bg->done, tok, -1);
    if (rc < 0) {
        pthread_detach(bg->thread); /* abandoned: it frees its half when run() returns */
        return rc;
    }
    pthread_join(bg->thread, NULL);
    return 0;
}

int ct_host_add_background(ct_host_t *host, const char *name, ct_host_run_fn run, void *arg)
{
    if (!host || !run)
        return -EINVAL;
    struct bg *bg = ct__calloc(1, sizeof(*bg));
    if (!bg)
        return -ENOMEM;
    bg->refs = 1;
    bg->run = run;
    bg->arg = arg;
    bg->host = host;
    bg->name = ct__strdup(name ? name : "background");
    int rc = bg->name ? ct_sem_init(&bg->done, 0) : -ENOMEM;
    if (rc < 0) {
        ct__free(bg->name);
        ct__free(bg);
        return rc;
    }
    rc = add(host,
             &(ct_host_service_t){.name = name, .start = bg_start, .stop = bg_stop, .arg = bg}, bg);
    if (rc < 0)
        bg_unref(bg);
    return rc;
}

const ct_token_t *ct_host_stopping(const ct_host_t *host)
{
    return host ? ct_source_token(host->stopping) : NULL;
}

int ct_host_stop(ct_host_t *host, const char *detail)
{
    if (!host)
        return -EINVAL;
    return ct_source_cancel(host->stopping, CT_SHUTDOWN, detail ? detail : "stop requested");
}

/* ---- run and stop ---------------------------------------------------------------------------- */

static void stopper_unref(struct stopper *st)
{
    if (__atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        ct_sem_destroy(&st->done);
        ct__free(st);
    }
}

static void *stopper_main(void *arg)
{
    struct stopper *st = arg;
    ct_host_t *h = st->host;
    for (int i = h->nsvcs - 1; i >= 0; i--) {
        struct svc *s = &h->svcs[i];
        if (!s->started)
            continue;
        __atomic_store_n(&st->next, i, __ATOMIC_RELEASE);
        int rc = s->s.stop ? s->s.stop(s->s.arg, st->tok) : 0;
        if (rc < 0 && ct_token_canceled(st->tok)) {
            __atomic_add_fetch(&st->abandoned, 1, __ATOMIC_RELAXED);
            hlog(h, "service %s did not stop within the shutdown timeout (%lld ms): abandoned",
                 s->name, (long long) h->opt.shutdown_timeout_ms);
        } else if (rc < 0) {
            hlog(h, "service %s: stop returned %s", s->name, ct_strerror(rc));
        }
    }
    __atomic_store_n(&st->next, -1, __ATOMIC_RELEASE);
    ct_sem_post(&st->done);
    stopper_unref(st);
    return NULL;
}

/* Stop the started services in reverse order within the shutdown timeout.
 * Returns the number of services abandoned, or a negative errno if no stop could be attempted. */
static int stop_services(ct_host_t *h)
{
    ct_source_t *deadline;
    int rc = ct_source_new_timeout(&deadline, h->opt.shutdown_timeout_ms);
    if (rc < 0)
        return rc;
    struct stopper *st = ct__calloc(1, sizeof(*st));
    if (!st) {
        ct_source_free(deadline);
        return -ENOMEM;
    }
    st->refs = 2;
    st->host = h;
    st->tok = ct_token_ref(ct_source_token(deadline));
    st->next = h->nsvcs;
    ct_sem_init(&st->done, 0);
    pthread_t t;
    if ((rc = ct__thread_start(&t, stopper_main, st)) < 0) {
        ct_token_unref(st->tok);
        ct_sem_destroy(&st->done);
        ct__free(st);
        ct_source_free(deadline);
        return rc;
    }
    rc = ct_sem_wait(&st->done, st->tok, -1);
    if (rc == -ECANCELED) /* the deadline: a stop that honours its token reports back at once */
        rc = ct_sem_wait(&st->done, NULL, ct_deadline_after(GRACE_MS));
    int abandoned;
    if (rc == 0) {
        pthread_join(t, NULL);
        abandoned = __atomic_load_n(&st->abandoned, __ATOMIC_RELAXED);
        ct_token_unref(st->tok);
        stopper_unref(st);
    } else {
        /* A stop ignored its token: it and every service before it are abandoned. The stopper
         * keeps its reference and the deadline token, and the host its services. */
        pthread_detach(t);
        int next = __atomic_load_n(&st->next, __ATOMIC_ACQUIRE);
        abandoned = __atomic_load_n(&st->abandoned, __ATOMIC_RELAXED);
        for (int i = next; i >= 0 && i < h->nsvcs; i--)
            if (h->svcs[i].started) {
                hlog(h, "service %s: abandoned after the shutdown timeout (%lld ms)",
                     h->svcs[i].name, (long long) h->opt.shutdown_timeout_ms);
                abandoned++;
            }
        h->abandoned = 1;
        stopper_unref(st);
    }
    if (abandoned > 0)
        h->abandoned = 1; /* their threads still use the host's token and may log */
    ct_source_free(deadline);
    return abandoned;
}

int ct_host_run(ct_host_t *host)
{
    if (!host)
        return -EINVAL;
    if (host->ran)
        return -EBUSY;
    host->ran = 1;
    const ct_token_t *stopping = ct_source_token(host->stopping);
    int failed = 0;
    for (int i = 0; i < host->nsvcs && !ct_token_canceled(stopping); i++) {
        struct svc *s = &host->svcs[i];
        int rc = s->s.start ? s->s.start(s->s.arg, stopping) : 0;
        if (rc < 0) {
            hlog(host, "service %s failed to start: %s", s->name, ct_strerror(rc));
            char detail[CT_DETAIL_MAX];
            snprintf(detail, sizeof(detail), "start failed: %s", s->name);
            ct_source_cancel(host->stopping, CT_SHUTDOWN, detail);
            failed = rc;
            break;
        }
        s->started = 1;
    }
    if (!ct_token_canceled(stopping)) {
        hlog(host, "%d service(s) started", host->nsvcs);
        notify(host, "READY=1");
    }
    while (ct_sleep_ms(CT_TIMEOUT_MAX_MS, stopping) == 0)
        ;
    notify(host, "STOPPING=1");
    hlog(host, "stopping (%s), shutdown timeout %lld ms", ct_token_detail(stopping),
         (long long) host->opt.shutdown_timeout_ms);
    int abandoned = stop_services(host);
    if (failed < 0)
        return failed;
    if (abandoned == 0)
        hlog(host, "stopped");
    return abandoned;
}

void ct_host_free(ct_host_t *host)
{
    if (!host)
        return;
    if (host->has_sig_thread) {
        ct_source_cancel(host->closing, CT_SHUTDOWN, "host freed");
        pthread_join(host->sig_thread, NULL);
    }
    if (host->sfd >= 0)
        close(host->sfd);
    ct_source_free(host->closing);
    if (host->abandoned)
        return; /* an abandoned stop may still read the services and the stopping token */
    for (int i = 0; i < host->nsvcs; i++) {
        ct__free(host->svcs[i].name);
        if (host->svcs[i].bg)
            bg_unref(host->svcs[i].bg);
    }
    ct__free(host->svcs);
    ct_source_free(host->stopping);
    ct__free(host);
}
