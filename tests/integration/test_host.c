/* ct-host with real processes and real signals: tests/integration/host_prog.c is started with a
 * list of services, receives SIGTERM / SIGINT from the test, and its output and exit status say
 * what the host did. systemd's notification socket is a real datagram socket bound here. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ct/host.h"
#include "ct/wait.h"
#include "proc_util.h"

#ifndef CT_HOST_PROG
#error "CT_HOST_PROG must name the test program"
#endif

static void start_prog(struct proc *p, const char *env, const char *a1, const char *a2,
                       const char *a3, const char *a4)
{
    char *argv[] = {CT_HOST_PROG, (char *) a1, (char *) a2, (char *) a3, (char *) a4, NULL};
    proc_start(p, argv, env);
}

/* SIGTERM fires the stopping token (CT_SHUTDOWN, "SIGTERM"), the services stop in the reverse of
 * their start order, and the process exits 0 well within the shutdown timeout. */
static void test_sigterm_fires_stopping_token_and_stops_services_in_reverse(void **state)
{
    (void) state;
    struct proc p;
    start_prog(&p, NULL, "timeout:5000", "svc:a", "bg:b", "svc:c");
    assert_true(proc_expect(&p, "start c", 2000));
    assert_true(proc_expect(&p, "run b", 2000));
    assert_true(proc_expect(&p, "service(s) started", 2000));
    int64_t t0 = ct_test_now_ms();
    kill(p.pid, SIGTERM);
    int st = proc_wait(&p, 3000);
    int64_t took = ct_test_now_ms() - t0;
    assert_true(WIFEXITED(st));
    assert_int_equal(0, WEXITSTATUS(st));
    assert_true(took < 2000 * ct_test_scale()); /* the timeout is 5 s: nobody waited for it */
    assert_true(proc_pos(&p, "token b reason=shutdown detail=SIGTERM") >= 0);
    assert_true(proc_pos(&p, "start a") < proc_pos(&p, "run b"));
    /* The token reaches b at once; the stop calls go c, then b (waiting for b's thread to
     * return), then a: so a, registered before b, is stopped only after b has finished. */
    long c = proc_pos(&p, "stop c"), b = proc_pos(&p, "return b"), a = proc_pos(&p, "stop a");
    assert_true(c >= 0 && b >= 0 && a >= 0);
    assert_true(c < a);
    assert_true(b < a);
    assert_true(proc_pos(&p, "exit rc=0") > a);
    proc_close(&p);
}

static void test_sigint_detail_names_the_signal(void **state)
{
    (void) state;
    struct proc p;
    start_prog(&p, NULL, "bg:b", NULL, NULL, NULL);
    assert_true(proc_expect(&p, "run b", 2000));
    kill(p.pid, SIGINT);
    int st = proc_wait(&p, 3000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(proc_pos(&p, "token b reason=shutdown detail=SIGINT") >= 0);
    proc_close(&p);
}

/* A service that ignores its token is abandoned once the shutdown timeout (300 ms here) has
 * passed: the process exits with the "abandoned" status soon after, not after the 60 s the
 * service sleeps. Without the timeout the test would hit its own limit. */
static void test_service_ignoring_its_token_is_abandoned_after_the_shutdown_timeout(void **state)
{
    (void) state;
    struct proc p;
    start_prog(&p, NULL, "timeout:300", "svc:a", "stubborn:s", NULL);
    assert_true(proc_expect(&p, "run s", 2000));
    assert_true(proc_expect(&p, "service(s) started", 2000));
    int64_t t0 = ct_test_now_ms();
    kill(p.pid, SIGTERM);
    int st = proc_wait(&p, 5000);
    int64_t took = ct_test_now_ms() - t0;
    assert_true(WIFEXITED(st));
    assert_int_equal(2, WEXITSTATUS(st));
    assert_true(took >= 300);                   /* it did wait for the timeout */
    assert_true(took < 3000 * ct_test_scale()); /* and not for the service */
    assert_true(proc_pos(&p, "s did not stop within the shutdown timeout (300 ms): abandoned") >=
                    0 ||
                proc_pos(&p, "service s: abandoned after the shutdown timeout") >= 0);
    assert_true(proc_pos(&p, "exit rc=1") >= 0);
    proc_close(&p);
}

/* A second SIGTERM while the host waits for a stubborn service ends the process at once with
 * CT_HOST_EXIT_FORCED instead of waiting out the 20 s shutdown timeout. */
static void test_second_signal_during_shutdown_forces_exit(void **state)
{
    (void) state;
    struct proc p;
    start_prog(&p, NULL, "timeout:20000", "stubborn:s", NULL, NULL);
    assert_true(proc_expect(&p, "run s", 2000));
    kill(p.pid, SIGTERM);
    assert_true(proc_expect(&p, "SIGTERM received: stopping", 2000));
    kill(p.pid, SIGTERM);
    int st = proc_wait(&p, 3000);
    assert_true(WIFEXITED(st));
    assert_int_equal(CT_HOST_EXIT_FORCED, WEXITSTATUS(st));
    assert_true(proc_pos(&p, "second signal (SIGTERM) during shutdown") >= 0);
    proc_close(&p);
}

/* A start that fails stops the services already started, in reverse, never starts the next one
 * and never stops itself; ct_host_run returns its error. No signal is involved. */
static void test_start_failure_stops_started_services_in_reverse_and_returns_the_error(void **state)
{
    (void) state;
    struct proc p;
    start_prog(&p, NULL, "svc:a", "svc:b", "fail:c", "svc:d");
    int st = proc_wait(&p, 5000);
    assert_true(WIFEXITED(st));
    assert_int_equal(3, WEXITSTATUS(st));
    char want[32];
    snprintf(want, sizeof(want), "exit rc=%d", -EIO);
    assert_true(proc_pos(&p, want) >= 0);
    assert_true(proc_pos(&p, "start c") >= 0);
    assert_true(proc_pos(&p, "start d") < 0);
    assert_true(proc_pos(&p, "stop c") < 0);
    assert_true(proc_pos(&p, "stop d") < 0);
    long b = proc_pos(&p, "stop b"), a = proc_pos(&p, "stop a");
    assert_true(b >= 0 && a > b);
    assert_true(proc_pos(&p, "service c failed to start") >= 0);
    proc_close(&p);
}

static void notify_case(const char *name, bool abstract)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(a.sun_path, name, n);
    if (abstract)
        a.sun_path[0] = '\0';
    else
        unlink(name);
    assert_int_equal(0, bind(fd, (struct sockaddr *) &a,
                             (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n)));
    char env[160];
    snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", name);
    struct proc p;
    start_prog(&p, env, "svc:a", "bg:b", NULL, NULL);
    char msg[64];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(1, poll(&pfd, 1, 3000 * ct_test_scale()));
    ssize_t len = recv(fd, msg, sizeof(msg) - 1, 0);
    assert_true(len > 0);
    msg[len] = '\0';
    assert_string_equal("READY=1", msg);
    assert_true(proc_pos(&p, "stop a") < 0); /* READY came before any stop */
    kill(p.pid, SIGTERM);
    assert_int_equal(1, poll(&pfd, 1, 3000 * ct_test_scale()));
    len = recv(fd, msg, sizeof(msg) - 1, 0);
    assert_true(len > 0);
    msg[len] = '\0';
    assert_string_equal("STOPPING=1", msg);
    int st = proc_wait(&p, 3000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    proc_close(&p);
    close(fd);
    if (!abstract)
        unlink(name);
}

static void test_notify_socket_abstract_receives_ready_then_stopping(void **state)
{
    (void) state;
    char name[64];
    snprintf(name, sizeof(name), "@ct-host-test-%d", (int) getpid());
    notify_case(name, true);
}

static void test_notify_socket_path_receives_ready_then_stopping(void **state)
{
    (void) state;
    char name[64];
    snprintf(name, sizeof(name), "/tmp/ct-host-notify-%d", (int) getpid());
    notify_case(name, false);
}

/* In-process: ct_host_stop() is the programmatic SIGTERM (no signals handled here). */
static int stop_from_service(void *arg, const ct_token_t *stopping)
{
    ct_host_t *host = arg;
    assert_int_equal(1, ct_host_stop(host, "admin endpoint"));
    assert_int_equal(0, ct_host_stop(host, "again"));
    return ct_sleep_ms(CT_TIMEOUT_MAX_MS, stopping) == -ECANCELED ? 0 : -EIO;
}

static void test_stop_fires_the_token_with_its_detail_and_run_returns_zero(void **state)
{
    (void) state;
    ct_host_t *host;
    assert_int_equal(0, ct_host_new(&host, &(ct_host_options_t){.no_signals = 1}));
    assert_int_equal(0, ct_host_add_background(host, "stopper", stop_from_service, host));
    assert_int_equal(0, ct_host_run(host));
    const ct_token_t *tok = ct_host_stopping(host);
    assert_int_equal(CT_SHUTDOWN, ct_token_reason(tok));
    assert_string_equal("admin endpoint", ct_token_detail(tok));
    assert_int_equal(-EBUSY, ct_host_run(host));
    assert_int_equal(-EBUSY, ct_host_add_background(host, "late", stop_from_service, host));
    ct_host_free(host);
}

/* Out of memory: every allocation of creating a host and registering services is failed in
 * turn; each failing run returns -ENOMEM and leaks nothing. */
static int quick_run(void *arg, const ct_token_t *stopping)
{
    (void) arg;
    (void) stopping;
    return 0;
}

static int oom_scenario(void *arg)
{
    (void) arg;
    ct_host_t *host;
    int rc = ct_host_new(&host, &(ct_host_options_t){.no_signals = 1});
    if (rc < 0)
        return rc;
    for (int i = 0; i < 10 && rc == 0; i++) /* past the first growth of the service list */
        rc = ct_host_add(host, &(ct_host_service_t){.name = "plain"});
    if (rc == 0)
        rc = ct_host_add_background(host, "bg", quick_run, NULL);
    ct_host_free(host);
    return rc;
}

static void test_every_allocation_failure_returns_enomem_and_leaks_nothing(void **state)
{
    (void) state;
    assert_true(ct_test_alloc_torture(oom_scenario, NULL, NULL) > 5);
}

static void test_bad_arguments_are_einval(void **state)
{
    (void) state;
    ct_host_t *host;
    assert_int_equal(-EINVAL, ct_host_new(NULL, NULL));
    assert_int_equal(-EINVAL, ct_host_new(&host, &(ct_host_options_t){.shutdown_timeout_ms = -1}));
    assert_int_equal(
        -EINVAL, ct_host_new(&host, &(ct_host_options_t){.shutdown_timeout_ms =
                                                             CT_HOST_SHUTDOWN_TIMEOUT_MAX_MS + 1}));
    assert_int_equal(-EINVAL, ct_host_add(NULL, &(ct_host_service_t){0}));
    assert_int_equal(-EINVAL, ct_host_run(NULL));
    assert_int_equal(-EINVAL, ct_host_stop(NULL, NULL));
    assert_null(ct_host_stopping(NULL));
    assert_int_equal(0, ct_host_new(&host, &(ct_host_options_t){.no_signals = 1}));
    assert_int_equal(-EINVAL, ct_host_add(host, NULL));
    assert_int_equal(-EINVAL, ct_host_add_background(host, "x", NULL, NULL));
    ct_host_free(host);
    ct_host_free(NULL);
}

CT_TEST_MAIN(
    cmocka_unit_test(test_sigterm_fires_stopping_token_and_stops_services_in_reverse),
    cmocka_unit_test(test_sigint_detail_names_the_signal),
    cmocka_unit_test(test_service_ignoring_its_token_is_abandoned_after_the_shutdown_timeout),
    cmocka_unit_test(test_second_signal_during_shutdown_forces_exit),
    cmocka_unit_test(test_start_failure_stops_started_services_in_reverse_and_returns_the_error),
    cmocka_unit_test(test_notify_socket_abstract_receives_ready_then_stopping),
    cmocka_unit_test(test_notify_socket_path_receives_ready_then_stopping),
    cmocka_unit_test(test_stop_fires_the_token_with_its_detail_and_run_returns_zero),
    cmocka_unit_test(test_every_allocation_failure_returns_enomem_and_leaks_nothing),
    cmocka_unit_test(test_bad_arguments_are_einval))
