/* ct-demo end to end, shared by the test files: start the real program on a loopback port, run
 * real curl against it, read its log from its stderr, stop it with SIGTERM. */
#ifndef CT_TEST_DEMO_UTIL_H
#define CT_TEST_DEMO_UTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/time.h"
#include "ct/wait.h"
#include "testutil.h"

struct demo {
    pid_t pid;
    int err; /* the demo's stderr */
    char log[1 << 18];
    size_t loglen;
    int port;
    char dir[64];
    bool signaled; /* SIGTERM sent: a second one would force an immediate exit (ct-host) */
};

/* SIGTERM, once: the host stops gracefully; a second signal would end it at once (exit 70). */
static inline void demo_sigterm(struct demo *d)
{
    if (!d->signaled)
        kill(d->pid, SIGTERM);
    d->signaled = true;
}

static bool logged(struct demo *d, const char *needle)
{
    ssize_t n;
    while (d->loglen < sizeof(d->log) - 1 &&
           (n = read(d->err, d->log + d->loglen, sizeof(d->log) - 1 - d->loglen)) > 0)
        d->loglen += (size_t) n;
    d->log[d->loglen] = '\0';
    return strstr(d->log, needle) != NULL;
}

/* Start ct-demo on a free loopback port with `extra` arguments (NULL-terminated, may be NULL),
 * in the data directory `dir` (NULL: a fresh one), and wait until it listens. */
static struct demo *demo_start_in(const char *dir, const char *const *extra)
{
    struct demo *d = calloc(1, sizeof(*d));
    if (dir) {
        snprintf(d->dir, sizeof(d->dir), "%s", dir);
    } else {
        strcpy(d->dir, "/tmp/ct-demo-test-XXXXXX");
        assert_non_null(mkdtemp(d->dir));
    }
    int p[2];
    assert_int_equal(0, pipe2(p, O_CLOEXEC));
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assertion never leaves a demo running */
        dup2(p[1], 2);
        const char *argv[24] = {CT_DEMO_PATH, "--listen",   "127.0.0.1:0", "--data-dir",
                                d->dir,       "--drain-ms", "300"};
        for (int n = 7; extra && *extra && n < 23; n++)
            argv[n] = *extra++;
        execv(CT_DEMO_PATH, (char **) argv);
        _exit(127);
    }
    close(p[1]);
    d->err = p[0];
    fcntl(d->err, F_SETFL, O_NONBLOCK);
    assert_true(CT_WAIT_FOR(logged(d, "listening on http://127.0.0.1:"), 10000));
    d->port = atoi(strstr(d->log, "listening on http://127.0.0.1:") + 30);
    assert_true(d->port > 0);
    return d;
}

static inline struct demo *demo_start_with(const char *const *extra)
{
    return demo_start_in(NULL, extra);
}

static inline struct demo *demo_start(void)
{
    return demo_start_in(NULL, NULL);
}

/* Wait for the demo to exit (after demo_sigterm); its exit status. The data directory stays,
 * for a restart with demo_start_in(); `d` is freed. */
static inline int demo_wait_exit(struct demo *d, char *dir, size_t cap)
{
    int status = 0;
    assert_true(CT_WAIT_FOR(waitpid(d->pid, &status, WNOHANG) == d->pid, 20000));
    close(d->err);
    snprintf(dir, cap, "%s", d->dir);
    free(d);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void) st;
    (void) type;
    (void) ftw;
    return remove(path);
}

/* SIGTERM, and the exit status. */
static int demo_stop(struct demo *d)
{
    demo_sigterm(d);
    int status = 0;
    assert_true(CT_WAIT_FOR(waitpid(d->pid, &status, WNOHANG) == d->pid, 20000));
    close(d->err);
    nftw(d->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(d);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Run curl with `args` (up to 12, NULL-terminated) against the demo; its stdout into `out`.
 * Returns curl's exit status (28: --max-time reached). */
static int curl(struct demo *d, char *out, size_t cap, const char *method, const char *path,
                const char *extra)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", d->port, path);
    int p[2];
    assert_int_equal(0, pipe2(p, O_CLOEXEC));
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        const char *argv[12] = {"curl", "-sS", "-X", method, url};
        int n = 5;
        char extra_copy[128];
        if (extra) {
            snprintf(extra_copy, sizeof(extra_copy), "%s", extra);
            for (char *tok = strtok(extra_copy, " "); tok && n < 11; tok = strtok(NULL, " "))
                argv[n++] = tok;
        }
        argv[n] = NULL;
        execvp("curl", (char **) argv);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t r;
    while (len < cap - 1 && (r = read(p[0], out + len, cap - 1 - len)) > 0)
        len += (size_t) r;
    out[len] = '\0';
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif
