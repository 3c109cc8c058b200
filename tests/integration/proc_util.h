/* Child processes for the ct-host and ct-jobs tests: start a program with its stdout and stderr
 * on a pipe, wait for a line to appear (with a generous bound), send it real signals, and wait
 * for it to exit. Every wait is bounded; a child still running at the end is killed by pid. */
#ifndef CT_TEST_PROC_UTIL_H
#define CT_TEST_PROC_UTIL_H

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

struct proc {
    pid_t pid;
    int out;    /* read end of the child's stdout + stderr */
    int status; /* wait status once it exited */
    int exited;
    char buf[1 << 18];
    size_t len;
};

/* Start argv[0] with extra environment `env` ("NAME=value", may be NULL). */
static __attribute__((unused)) void proc_start(struct proc *p, char *const argv[], const char *env)
{
    int fds[2];
    memset(p, 0, sizeof(*p));
    assert_int_equal(0, pipe2(fds, O_CLOEXEC));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        if (env)
            putenv((char *) env);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    p->pid = pid;
    p->out = fds[0];
}

/* Read what the child wrote, waiting at most `ms` for something.
 * Returns 1 read something, 0 nothing yet, -1 end of output (or the buffer is full). */
static __attribute__((unused)) int proc_read(struct proc *p, int64_t ms)
{
    struct pollfd pfd = {.fd = p->out, .events = POLLIN};
    if (poll(&pfd, 1, (int) ms) <= 0)
        return 0;
    if (p->len + 1 >= sizeof(p->buf))
        return -1;
    ssize_t n = read(p->out, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
    if (n == 0)
        return -1;
    if (n < 0)
        return 0;
    p->len += (size_t) n;
    p->buf[p->len] = '\0';
    return 1;
}

/* Offset of `needle` in the output so far, or -1. */
static __attribute__((unused)) long proc_pos(struct proc *p, const char *needle)
{
    const char *at = p->len ? strstr(p->buf, needle) : NULL;
    return at ? at - p->buf : -1;
}

/* How many times `needle` occurs in the output so far. */
static __attribute__((unused)) int proc_count(struct proc *p, const char *needle)
{
    int n = 0;
    for (const char *at = p->buf; p->len && (at = strstr(at, needle)); at += strlen(needle))
        n++;
    return n;
}

/* Wait until `needle` has been written, at most ms × scale. */
static __attribute__((unused)) bool proc_expect(struct proc *p, const char *needle, int64_t ms)
{
    int64_t until = ct_test_now_ms() + ms * ct_test_scale();
    while (proc_pos(p, needle) < 0) {
        int64_t left = until - ct_test_now_ms();
        if (left <= 0 || proc_read(p, left > 50 ? 50 : left) < 0)
            return proc_pos(p, needle) >= 0;
    }
    return true;
}

/* Wait for the child to exit, at most ms × scale, reading its output meanwhile. Returns the
 * wait status; on timeout kills it (SIGKILL, by pid) and fails the test. */
static __attribute__((unused)) int proc_wait(struct proc *p, int64_t ms)
{
    int64_t until = ct_test_now_ms() + ms * ct_test_scale();
    while (!p->exited) {
        pid_t r = waitpid(p->pid, &p->status, WNOHANG);
        if (r == p->pid) {
            p->exited = 1;
            break;
        }
        if (ct_test_now_ms() > until) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &p->status, 0);
            p->exited = 1;
            fprintf(stderr, "child %d did not exit in time; output:\n%s\n", (int) p->pid, p->buf);
            fail();
        }
        proc_read(p, 5);
    }
    for (int i = 0; i < 1000 && proc_read(p, 20) > 0; i++) /* what is left in the pipe */
        ;
    return p->status;
}

/* Kill a child that is still running (end of a failed test) and close the pipe. */
static __attribute__((unused)) void proc_close(struct proc *p)
{
    if (p->pid > 0 && !p->exited) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &p->status, 0);
        p->exited = 1;
    }
    if (p->out >= 0)
        close(p->out);
    p->out = -1;
}

#endif
