/* A worker process for test_jobs_proc and bench_jobs: ct-host + ct-jobs on the SQLite file named
 * first on the command line (or, with `--pg CONNINFO` first, on that PostgreSQL database),
 * printing one line per job event:
 *   run id=N attempt=A pid=P      a handler started
 *   done id=N                     it returned 0
 *   stopped id=N reason=R detail=D   its token fired (R: shutdown, canceled)
 * Options (key=value): workers, lease, heartbeat, poll (ms), timeout (shutdown timeout, ms),
 * fast=1 (ignore the payload and finish at once; otherwise a job waits payload ms on its token),
 * memory=1 (the memory backend; enqueue=N jobs of payload jobms are added at start),
 * nolisten=1 (PostgreSQL without its cancel listener: cancels arrive by the heartbeat alone).
 * When the host stops, a service tries to enqueue and prints "enqueue during shutdown rc=N".
 * Exits 0 (everything stopped), 2 (abandoned after the shutdown timeout), 3 (an error). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/jobs/backend.h" /* ct__jobs_pg_no_listener */
#include "ct/host.h"
#include "ct/jobs.h"
#include "ct/wait.h"

static int fast;
static int first_opt = 2; /* argv index of the first key=value */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int) sizeof(line) - 2)
        n = (int) sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(1, line, (size_t) n); /* one write per line: lines never interleave */
    (void) w;
}

static int handler(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    say("run id=%lld attempt=%d pid=%d", (long long) job->id, job->attempt, (int) getpid());
    int rc = fast ? ct_token_check(tok) : ct_sleep_ms(atoll(job->payload), tok);
    if (rc == 0)
        say("done id=%lld", (long long) job->id);
    else
        say("stopped id=%lld reason=%s detail=%s", (long long) job->id,
            ct_reason_name(ct_token_reason(tok)), ct_token_detail(tok));
    return rc;
}

static int probe(void *arg, const ct_token_t *stopping)
{
    while (ct_sleep_ms(CT_TIMEOUT_MAX_MS, stopping) == 0)
        ;
    say("enqueue during shutdown rc=%d", ct_jobs_enqueue(arg, "sleep", "1", NULL, NULL));
    return 0;
}

static long long opt(int argc, char **argv, const char *key, long long def)
{
    size_t n = strlen(key);
    for (int i = first_opt; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=')
            return atoll(argv[i] + n + 1);
    return def;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DB|--pg CONNINFO [key=value...]\n", argv[0]);
        return 3;
    }
    int pg = strcmp(argv[1], "--pg") == 0;
    if (pg && argc < 3)
        return 3;
    first_opt = pg ? 3 : 2;
    ct__jobs_pg_no_listener = (int) opt(argc, argv, "nolisten", 0);
    ct_host_t *host;
    int rc = ct_host_new(
        &host, &(ct_host_options_t){.shutdown_timeout_ms = opt(argc, argv, "timeout", 10000)});
    if (rc < 0)
        return 3;
    fast = (int) opt(argc, argv, "fast", 0);
    ct_jobs_options_t o = {
        .backend = pg                             ? CT_JOBS_POSTGRES
                   : opt(argc, argv, "memory", 0) ? CT_JOBS_MEMORY
                                                  : CT_JOBS_SQLITE,
        .path = argv[1],
        .conninfo = pg ? argv[2] : NULL,
        .handler = handler,
        .workers = (unsigned) opt(argc, argv, "workers", 4),
        .lease_ms = opt(argc, argv, "lease", 0),
        .heartbeat_ms = opt(argc, argv, "heartbeat", 0),
        .poll_ms = opt(argc, argv, "poll", 0),
    };
    ct_jobs_t *jobs;
    if ((rc = ct_jobs_new(&jobs, &o)) < 0) {
        say("ct_jobs_new: %s", ct_strerror(rc));
        return 3;
    }
    char payload[32];
    snprintf(payload, sizeof(payload), "%lld", opt(argc, argv, "jobms", 60000));
    for (long long i = opt(argc, argv, "enqueue", 0); i > 0; i--)
        ct_jobs_enqueue(jobs, "sleep", payload, NULL, NULL);
    ct_host_add(host,
                &(ct_host_service_t){"jobs", ct_jobs_service_start, ct_jobs_service_stop, jobs});
    ct_host_add_background(host, "probe", probe, jobs);
    rc = ct_host_run(host);
    say("exit rc=%d", rc);
    if (rc > 0)
        _exit(2); /* abandoned workers may still run: exit without freeing what they use */
    ct_jobs_free(jobs);
    ct_host_free(host);
    return rc == 0 ? 0 : 3;
}
