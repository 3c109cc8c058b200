/* ct-example: request-like operations stopped by a timeout and by a signal.
 *
 * Three "requests" run one after the other, each a loop of 100 ms steps that waits in a ct call
 * with the request's token. The token is linked from two sources: the request's own timeout, and
 * the process's stopping token, which SIGINT/SIGTERM cancel with CT_SHUTDOWN. When a request
 * stops, it says who asked for it.
 *
 *   request 1: 5 steps with a 2 s budget                       -> completes
 *   request 2: 30 steps with an 800 ms budget                  -> canceled by its own timeout
 *   request 3: runs until Ctrl+C (SIGINT) or SIGTERM (60 s max) -> canceled by the shutdown
 *
 * Signals are taken by a thread that waits for them with sigwait(); nothing runs in a handler. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ct.h"

static ct_source_t *stopping; /* canceled with CT_SHUTDOWN on SIGINT / SIGTERM */

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig;
    if (sigwait(set, &sig) == 0)
        ct_source_cancel(stopping, CT_SHUTDOWN, sig == SIGINT ? "SIGINT" : "SIGTERM");
    return NULL;
}

/* The "handler": work in steps, each a cancellable wait, like a query or an outbound call. */
static int process(int steps, const ct_token_t *tok, int *done)
{
    for (*done = 0; *done < steps; (*done)++) {
        int rc = ct_sleep_ms(100, tok);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int run_request(int id, int steps, int64_t budget_ms)
{
    ct_source_t *timeout, *req;
    int rc = ct_source_new_timeout(&timeout, budget_ms);
    if (rc < 0)
        return rc;
    const ct_token_t *parents[] = {ct_source_token(stopping), ct_source_token(timeout)};
    if ((rc = ct_source_new_linked(&req, parents, 2)) < 0) {
        ct_source_free(timeout);
        return rc;
    }
    const ct_token_t *tok = ct_source_token(req);

    printf("request %d: %d steps of 100 ms, budget %lld ms\n", id, steps, (long long) budget_ms);
    if (id == 3)
        printf("request %d: press Ctrl+C (or send SIGTERM to pid %d) to shut down\n", id,
               (int) getpid());
    fflush(stdout);
    int64_t start = ct_now_ms();
    int done;
    rc = process(steps, tok, &done);
    long long took = (long long) (ct_now_ms() - start);
    if (rc == 0) {
        printf("request %d: completed %d steps in %lld ms\n", id, done, took);
    } else if (rc == -ECANCELED) {
        /* Who asked for this? The linked token knows which source fired first. */
        const char *who = ct_token_caused_by(tok, ct_source_token(timeout))
                              ? "its own timeout"
                              : "the process shutting down";
        printf("request %d: canceled after %d steps, %lld ms: %s (%s), by %s\n", id, done, took,
               ct_reason_name(ct_token_reason(tok)), ct_token_detail(tok), who);
    } else {
        printf("request %d: failed: %s\n", id, ct_strerror(rc));
    }
    fflush(stdout);
    ct_source_free(req);
    ct_source_free(timeout);
    return rc;
}

int main(void)
{
    /* A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded
     * even while blocked: restore the default so that sigwait() sees it. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: all inherit the mask */

    if (ct_source_new(&stopping) < 0)
        return 1;
    pthread_t th;
    pthread_create(&th, NULL, signal_thread, &set);

    run_request(1, 5, 2000);
    run_request(2, 30, 800);
    int rc = run_request(3, 600, 60000);

    if (!ct_token_canceled(ct_source_token(stopping))) {
        /* Request 3 ended by itself: stop the signal thread the same way a signal would. */
        pthread_kill(th, SIGTERM);
    }
    pthread_join(th, NULL);
    ct_source_free(stopping);
    ct_timers_stop();
    return rc == 0 || rc == -ECANCELED ? 0 : 1;
}
