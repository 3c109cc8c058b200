/* jobs_cycles: does a durable queue lose jobs when its worker process is stopped again and
 * again? (issue 6: zero jobs lost across 20 SIGTERM and 20 SIGKILL cycles.)
 *
 *   jobs_cycles [--cycles 20] [--jobs 200] [--job-ms 50] [--worker PATH]
 *
 * The worker is ct_jobs_prog (tests/integration/jobs_prog.c: ct-host + ct-jobs on a SQLite file,
 * 4 workers, a 1 s lease renewed every 250 ms). For each of SIGTERM and SIGKILL, on a fresh
 * file: enqueue `jobs` jobs of `job-ms` each; then `cycles` times start the worker, let it run a
 * random 150..450 ms (the point of the benchmark is to interrupt it anywhere), send the signal,
 * reap it; then start it once more and let it finish the queue (bounded: 120 s). From the
 * queue's own records and the workers' output ("done id=N" lines): jobs completed, jobs lost
 * (not completed), jobs whose handler finished twice (at-least-once: possible only when a
 * process dies between a job's end and its completion's commit), attempts counted more than
 * once. Prints Markdown. Every process it starts it ends, by pid. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/jobs.h"
#include "ct/time.h"
#include "ct/wait.h"

static int never(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    (void) job;
    (void) tok;
    return -EINVAL; /* this process only enqueues and reads */
}

/* Start the worker on `db`, its stdout appended to `out`. */
static pid_t start(const char *worker, const char *db, const char *out)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        dup2(fd, 1);
        dup2(null, 2);
        execl(worker, worker, db, "workers=4", "lease=1000", "heartbeat=250", "poll=50",
              "timeout=5000", (char *) NULL);
        _exit(127);
    }
    return pid;
}

static int reap(pid_t pid, int max_ms)
{
    int status = 0;
    for (int waited = 0; waited < max_ms; waited += 5) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ct_sleep_ms(5, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void one(const char *worker, int sig, int cycles, int njobs, int job_ms)
{
    char dir[] = "/tmp/ct-jobs-cycles-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    char db[128], out[128], payload[16];
    snprintf(db, sizeof(db), "%s/jobs.db", dir);
    snprintf(out, sizeof(out), "%s/out.txt", dir);
    snprintf(payload, sizeof(payload), "%d", job_ms);
    ct_jobs_t *q;
    if (ct_jobs_new(&q, &(ct_jobs_options_t){.path = db, .handler = never}) < 0) {
        fprintf(stderr, "jobs_cycles: cannot open %s\n", db);
        exit(1);
    }
    int64_t *ids = calloc((size_t) njobs, sizeof(*ids));
    for (int i = 0; i < njobs; i++)
        if (ct_jobs_enqueue(q, "sleep", payload, NULL, &ids[i]) < 0) {
            fprintf(stderr, "jobs_cycles: enqueue failed\n");
            exit(1);
        }
    int64_t t0 = ct_now_ms();
    int bad_exit = 0;
    for (int c = 0; c < cycles; c++) {
        pid_t pid = start(worker, db, out);
        uint32_t r = 0;
        getrandom(&r, sizeof(r), 0);
        ct_sleep_ms(150 + r % 300, NULL);
        kill(pid, sig);
        int st = reap(pid, 20000);
        if (getenv("JC_DEBUG"))
            fprintf(stderr, "cycle %d exit %d\n", c, st);
        bad_exit += sig == SIGTERM ? st != 0 : st != 128 + SIGKILL;
    }
    /* Once more, to the end of the queue. */
    pid_t pid = start(worker, db, out);
    int64_t started = ct_now_ms();
    int completed = 0;
    for (int64_t until = ct_now_ms() + 120000; ct_now_ms() < until; ct_sleep_ms(50, NULL)) {
        completed = 0;
        for (int i = 0; i < njobs; i++) {
            ct_job_info_t info;
            completed += ct_jobs_get(q, ids[i], &info) == 0 && info.status == CT_JOB_COMPLETED;
        }
        if (completed == njobs)
            break;
    }
    int64_t wall = ct_now_ms() - t0;
    /* Not before the worker has set its host up, as in the cycles (150 ms at least): a SIGTERM
     * before that would end it the default way. */
    if (ct_now_ms() - started < 150)
        ct_sleep_ms(150 - (ct_now_ms() - started), NULL);
    kill(pid, SIGTERM);
    int last = reap(pid, 20000);
    if (getenv("JC_DEBUG"))
        fprintf(stderr, "final exit %d\n", last);
    bad_exit += last != 0;
    /* The workers' own account: how many times each job's handler finished. */
    int *done = calloc((size_t) njobs, sizeof(*done)), twice = 0, extra_attempts = 0;
    FILE *f = fopen(out, "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f)) {
        long long id;
        if (sscanf(line, "done id=%lld", &id) == 1)
            for (int i = 0; i < njobs; i++)
                if (ids[i] == id)
                    done[i]++;
    }
    if (f)
        fclose(f);
    for (int i = 0; i < njobs; i++) {
        ct_job_info_t info;
        twice += done[i] > 1;
        if (ct_jobs_get(q, ids[i], &info) == 0 && info.attempts > 1)
            extra_attempts++;
    }
    printf("| %s | %d | %d | %d | **%d** | %d | %d | %d | %.1f |\n",
           sig == SIGTERM ? "SIGTERM" : "SIGKILL", cycles, njobs, completed, njobs - completed,
           twice, extra_attempts, bad_exit, (double) wall / 1000.0);
    fflush(stdout);
    ct_jobs_free(q);
    free(done);
    free(ids);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "jobs_cycles: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    const char *worker = CT_JOBS_PROG;
    int cycles = 20, njobs = 200, job_ms = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--cycles") == 0)
            cycles = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--jobs") == 0)
            njobs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--job-ms") == 0)
            job_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--worker") == 0)
            worker = argv[i + 1];
    }
    if (cycles < 1 || cycles > 1000 || njobs < 1 || njobs > 100000 || job_ms < 0 ||
        job_ms > 60000) {
        fputs("jobs_cycles: --cycles 1..1000, --jobs 1..100000, --job-ms 0..60000\n", stderr);
        return 2;
    }
    printf(
        "ct-jobs on SQLite, a worker process (4 workers, lease 1 s, heartbeat 250 ms) stopped "
        "%d times by a signal 150..450 ms after it started, then run to the end of the queue\n\n",
        cycles);
    printf("| signal | cycles | jobs | completed | lost | handler finished twice | attempts > 1 "
           "| unexpected exits | wall s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    one(worker, SIGTERM, cycles, njobs, job_ms);
    one(worker, SIGKILL, cycles, njobs, job_ms);
    return 0;
}
