/* ct/host.h — a process host: SIGTERM/SIGINT become a stopping token, hosted services start in
 * order and stop in reverse, a shutdown timeout bounds the stop, systemd hears READY and STOPPING
 * (.NET's generic host: IHostedService, BackgroundService, HostOptions.ShutdownTimeout).
 *
 *   static int poll_loop(void *arg, const ct_token_t *stopping)
 *   {
 *       while (ct_sleep_ms(1000, stopping) == 0)
 *           refresh(arg);
 *       return 0;                        // the stopping token fired: the service is done
 *   }
 *
 *   int main(void)
 *   {
 *       ct_host_t *host;
 *       if (ct_host_new(&host, NULL) < 0)    // first, before any other thread starts
 *           return 1;
 *       ct_host_add_background(host, "poller", poll_loop, NULL);
 *       int rc = ct_host_run(host);          // returns after SIGTERM and the services' stop
 *       ct_host_free(host);
 *       return rc == 0 ? 0 : 1;
 *   }
 *
 * Signals. ct_host_new() blocks SIGTERM and SIGINT in the calling thread, and a thread of the
 * host reads them from a signalfd: no code runs in a signal handler. Threads inherit the mask of
 * the thread that creates them, so create the host in main() before any other thread starts
 * (ct's timer and pool threads included). A thread started earlier still has the signals
 * unblocked and the kernel may deliver SIGTERM to it, which kills the process the default way;
 * block the two signals in such threads yourself. The first signal cancels the stopping token
 * with CT_SHUTDOWN and the detail "SIGTERM" or "SIGINT". A second signal while the host is
 * stopping ends the process at once with _exit(CT_HOST_EXIT_FORCED) (the operator insisted;
 * a second Ctrl+C does not wait for the shutdown timeout). The signals stay blocked after
 * ct_host_free().
 *
 * Services. A service is a start(arg, stopping) and a stop(arg, deadline_tok). start runs on the
 * thread that calls ct_host_run(), in registration order, and must return soon (start a thread,
 * open a socket); stop runs in reverse order with a token that fires (CT_TIMEOUT) when the
 * shutdown timeout has passed. A service whose start fails makes the host stop the services
 * already started (in reverse) and ct_host_run() return that error. A background service is the
 * common case, one call: a thread running run(arg, stopping) until it returns.
 *
 * Shutdown timeout. From the moment the stopping token fires, every service has together
 * `shutdown_timeout_ms` (default 30 000, as .NET's HostOptions.ShutdownTimeout) to stop. A
 * service still stopping then is abandoned: the host logs its name and ct_host_run() returns
 * the number of abandoned services (> 0). Its thread keeps running until the process exits, so
 * return from main() (or exit) promptly after that.
 *
 * systemd. When NOTIFY_SOCKET is set (Type=notify), the host sends "READY=1" once every service
 * has started and "STOPPING=1" when the stopping token fires, as AF_UNIX datagrams; a name
 * starting with '@' is an abstract socket. No libsystemd is needed.
 *
 * Ownership: ct_host_new() gives the caller the host; ct_host_free() releases it. */
#ifndef CT_HOST_H
#define CT_HOST_H

#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_host ct_host_t;

/* The default and the largest shutdown timeout, in ms. */
#define CT_HOST_SHUTDOWN_TIMEOUT_DEFAULT_MS INT64_C(30000)
#define CT_HOST_SHUTDOWN_TIMEOUT_MAX_MS     INT64_C(3600000)

/* The exit status of a process ended by a second SIGTERM/SIGINT during shutdown. */
#define CT_HOST_EXIT_FORCED 70

/* A hosted service. `start` may be NULL (nothing to start), `stop` too (nothing to stop).
 * start(arg, stopping): returns >= 0 when started, a negative errno otherwise; `stopping` stays
 * valid until ct_host_free(). stop(arg, tok): returns once the service has stopped; it should
 * return -ECANCELED (or any negative value) when `tok` fires before that, and then it counts as
 * abandoned. start runs on the thread that calls ct_host_run(); stop runs on a thread of the
 * host, so that a stop that ignores its token cannot hold ct_host_run() past the timeout. */
typedef struct ct_host_service {
    const char *name; /* for the log; copied */
    int (*start)(void *arg, const ct_token_t *stopping);
    int (*stop)(void *arg, const ct_token_t *tok);
    void *arg;
} ct_host_service_t;

/* The body of a background service: runs on its own thread until it returns. Return when
 * `stopping` fires; the value is logged when negative and not -ECANCELED. */
typedef int (*ct_host_run_fn)(void *arg, const ct_token_t *stopping);

typedef struct ct_host_options {
    int64_t shutdown_timeout_ms; /* 0: CT_HOST_SHUTDOWN_TIMEOUT_DEFAULT_MS; 1..MAX */
    int no_signals;              /* do not touch signals: stop only with ct_host_stop() */
    /* Log lines (no newline). NULL: "ct-host: <line>\n" on stderr. Any thread. */
    void (*log)(void *arg, const char *line);
    void *log_arg;
} ct_host_options_t;

/* Create a host; unless `no_signals`, block SIGTERM and SIGINT in this thread and start the
 * thread that reads them. `o` may be NULL.
 * Returns: 0 and *out; -EINVAL (out NULL, timeout out of range); -ENOMEM; -EMFILE and other
 * negative errno when the signalfd or the thread cannot be created.
 * Ownership: ct_host_free(). Thread: main, before other threads start (see above). */
int ct_host_new(ct_host_t **out, const ct_host_options_t *o);

/* Register a service; the struct is copied.
 * Returns: 0; -EINVAL (NULL arguments); -EBUSY once ct_host_run() has been called; -ENOMEM.
 * Thread: the host's owner. */
int ct_host_add(ct_host_t *host, const ct_host_service_t *svc);

/* Register a background service: at start, a thread runs run(arg, stopping); at stop, the host
 * waits for run() to return (it was told by the stopping token), up to the shutdown timeout.
 * Returns: as ct_host_add(). Thread: the host's owner. */
int ct_host_add_background(ct_host_t *host, const char *name, ct_host_run_fn run, void *arg);

/* The application-stopping token: fires with CT_SHUTDOWN (detail "SIGTERM", "SIGINT", or the
 * one given to ct_host_stop()) when the host starts to stop. Valid until ct_host_free().
 * Thread: any. */
const ct_token_t *ct_host_stopping(const ct_host_t *host);

/* Start the services, tell systemd READY=1, wait until the stopping token fires, tell systemd
 * STOPPING=1, stop the services in reverse order within the shutdown timeout.
 * Returns: 0 every service stopped in time; > 0 the number of services abandoned after the
 * shutdown timeout; a start's negative error (the services started before it were stopped);
 * -EINVAL (NULL); -EBUSY if called a second time; -ENOMEM; -EAGAIN (no thread).
 * Thread: the host's owner, once. */
int ct_host_run(ct_host_t *host);

/* Ask the host to stop, as SIGTERM would (an admin endpoint, a test, a fatal condition): the
 * stopping token fires with CT_SHUTDOWN and `detail` (NULL: "stop requested"). Only the first
 * request (or signal) counts; it does not force an exit.
 * Returns: 1 if this call started the shutdown; 0 if it had started; -EINVAL if host is NULL.
 * Thread: any, services and signal-free contexts included (not a signal handler). */
int ct_host_stop(ct_host_t *host, const char *detail);

/* Release the host: stop its signal thread, free what it holds. Call it after ct_host_run()
 * has returned, never while an abandoned service may still use the host's token: after a
 * return > 0, exit the process instead. NULL is ignored. Thread: the host's owner. */
void ct_host_free(ct_host_t *host);

#ifdef __cplusplus
}
#endif
#endif
