/* The example program, run as a real process and stopped with a real signal: the timeout
 * request is canceled by its own deadline, the last one by the shutdown the signal starts. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/time.h"
#include "ct/wait.h"
#include "testutil.h"

struct child {
    pid_t pid;
    int out;
    char buf[8192];
    size_t len;
};

static void spawn(struct child *c)
{
    int p[2];
    assert_int_equal(0, pipe2(p, O_CLOEXEC));
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        execl(CT_EXAMPLE_PATH, CT_EXAMPLE_PATH, (char *) NULL);
        _exit(127);
    }
    close(p[1]);
    c->out = p[0];
    fcntl(c->out, F_SETFL, O_NONBLOCK);
    c->len = 0;
}

/* Read the child's output until `text` appears or the bound passes. */
static bool read_until(struct child *c, const char *text, int64_t ms)
{
    int64_t deadline = ct_deadline_after(ms * ct_test_scale());
    while (!strstr(c->buf, text)) {
        ssize_t n = ct_read(c->out, c->buf + c->len, sizeof(c->buf) - 1 - c->len, NULL, deadline);
        if (n <= 0)
            return false;
        c->len += (size_t) n;
        c->buf[c->len] = '\0';
    }
    return true;
}

static void test_example_stops_on_timeout_and_on_sigint(void **state)
{
    struct child c;
    spawn(&c);
    assert_true(read_until(&c, "request 1: completed 5 steps", 10000));
    assert_true(read_until(&c, "request 2: canceled", 10000));
    assert_non_null(strstr(c.buf, "timeout (timed out after 800 ms), by its own timeout"));
    assert_true(read_until(&c, "press Ctrl+C", 10000));

    assert_int_equal(0, kill(c.pid, SIGINT));
    assert_true(read_until(&c, "request 3: canceled", 10000));
    assert_true(read_until(&c, "shutdown (SIGINT), by the process shutting down", 10000));
    int status;
    assert_int_equal(c.pid, waitpid(c.pid, &status, 0));
    assert_true(WIFEXITED(status));
    assert_int_equal(0, WEXITSTATUS(status));
    close(c.out);
}

static void test_example_stops_on_sigterm(void **state)
{
    struct child c;
    spawn(&c);
    assert_true(read_until(&c, "press Ctrl+C", 10000));
    assert_int_equal(0, kill(c.pid, SIGTERM));
    assert_true(read_until(&c, "shutdown (SIGTERM)", 10000));
    int status;
    assert_int_equal(c.pid, waitpid(c.pid, &status, 0));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(c.out);
}

CT_TEST_MAIN(cmocka_unit_test(test_example_stops_on_timeout_and_on_sigint),
             cmocka_unit_test(test_example_stops_on_sigterm))
