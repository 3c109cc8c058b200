/* Seed 000's background worker, on a durable queue: jobs enqueued over HTTP, processed by a
 * hosted worker that stops on the host's stopping token, a periodic heartbeat worker.
 *
 *   POST /api/Demo/queue/enqueue?count=3[&stepMs=500]   DEMO_01.dat ... -> {"enqueued":[ids]}
 *   GET  /api/Demo/queue/jobs/{id}                       its status, attempts, times
 *   POST /api/Demo/queue/jobs/{id}/cancel                pending: never runs; running: its
 *                                                        token fires with CT_CANCELED
 *
 * A job is the seed's: 5 steps of `stepMs` (500 ms), checking its token. Its log lines are the
 * seed's: "Processing DEMO_01.dat...", "Job DEMO_01.dat done.", "Job DEMO_01.dat canceled.",
 * and "Worker stopping (host shutdown)." when the host stops. Unlike the seed's in-memory
 * channel, the queue is ct-jobs on a SQLite file in the data directory (with --db
 * postgresql://..., on PostgreSQL beside the demo's tables): a job cut off by Ctrl+C goes back
 * to pending, without counting an attempt, and completes after the next start.
 *
 * Parameter bounds (out of range: 400 naming the parameter): count 1..100 (3), stepMs 0..60000
 * (500), id 1..2^62. The job's kind is its file name; its payload, the step length. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "ct/host.h"
#include "ct/jobs.h"
#include "ct/wait.h"
#include "demo.h"

/* ---- the worker ----------------------------------------------------------------------------- */

static int process_file(void *arg, const ct_job_t *job, const ct_token_t *tok)
{
    (void) arg;
    int64_t step_ms = strtoll(job->payload, NULL, 10);
    demo_log("Processing %s...", job->kind);
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) /* simulate work */
        if ((rc = ct_token_check(tok)) == 0)
            rc = ct_sleep_ms(step_ms, tok);
    if (rc < 0) {
        demo_log("Job %s canceled. (%s%s%s)", job->kind, ct_reason_name(ct_token_reason(tok)),
                 *ct_token_detail(tok) ? ": " : "", ct_token_detail(tok));
        return rc; /* shutdown: back to pending; canceled by id: canceled */
    }
    demo_log("Job %s done.", job->kind);
    return 0;
}

static void jobs_log(void *arg, const char *line)
{
    (void) arg;
    demo_log("jobs: %s", line);
}

static int jobs_stop(void *arg, const ct_token_t *tok)
{
    struct demo *d = arg;
    int rc = ct_jobs_stop(d->jobs, tok);
    demo_log("Worker stopping (host shutdown).");
    return rc;
}

static int jobs_start(void *arg, const ct_token_t *stopping)
{
    struct demo *d = arg;
    demo_log("Background worker started.");
    return ct_jobs_start(d->jobs, stopping);
}

int demo_queue_open(struct demo *d, const char *path, const char *conninfo, ct_host_t *host)
{
    ct_jobs_options_t o = {.backend = conninfo ? CT_JOBS_POSTGRES : CT_JOBS_SQLITE,
                           .path = path,
                           .conninfo = conninfo,
                           .handler = process_file,
                           .arg = d,
                           .workers = 1, /* the seed's single BackgroundService */
                           .max_attempts = 3,
                           .log = jobs_log};
    int rc = ct_jobs_new(&d->jobs, &o);
    if (rc < 0) {
        demo_log("cannot open the job queue %s: %s", conninfo ? "on PostgreSQL" : path,
                 ct_strerror(rc));
        return rc;
    }
    return ct_host_add(host, &(ct_host_service_t){"jobs", jobs_start, jobs_stop, d});
}

/* ---- the heartbeat: the seeds' periodic worker ---------------------------------------------- */

static int heartbeat(void *arg, const ct_token_t *tok)
{
    struct demo *d = arg;
    (void) tok;
    ct_http_stats_t st;
    ct_http_server_stats(d->srv, &st);
    demo_log("heartbeat: %u request(s) in flight", st.in_flight);
    return 0;
}

static int heartbeat_run(void *arg, const ct_token_t *stopping)
{
    struct demo *d = arg;
    return ct_every(d->heartbeat_ms, heartbeat, d, stopping);
}

int demo_heartbeat_add(struct demo *d, ct_host_t *host)
{
    if (d->heartbeat_ms <= 0)
        return 0;
    return ct_host_add_background(host, "heartbeat", heartbeat_run, d);
}

/* ---- controllers ---------------------------------------------------------------------------- */

static int enqueue(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    int64_t count, step_ms;
    int rc;
    if ((rc = ct_http_req_query_int(req, "count", 3, 1, 100, &count)) < 0 ||
        (rc = ct_http_req_query_int(req, "stepMs", 500, 0, 60000, &step_ms)) < 0)
        return rc;
    char payload[24];
    snprintf(payload, sizeof(payload), "%lld", (long long) step_ms);
    json_t *ids = json_array();
    for (int64_t i = 1; i <= count; i++) {
        char name[32];
        snprintf(name, sizeof(name), "DEMO_%02lld.dat", (long long) i);
        int64_t id;
        if ((rc = ct_jobs_enqueue(d->jobs, name, payload, NULL, &id)) < 0)
            break;
        json_array_append_new(ids, json_integer(id));
    }
    if (rc == -ESHUTDOWN) { /* nothing is dropped silently: the caller learns which got in */
        json_decref(ids);
        return ct_http_respond_error(req, 503, "shutting_down",
                                     "the queue is stopping: no job was added after this");
    }
    if (rc < 0) {
        json_decref(ids);
        return rc;
    }
    return ct_http_respond_json(req, 200, json_pack("{s:o}", "enqueued", ids));
}

static json_t *time_json(int64_t ms)
{
    return ms ? json_integer(ms) : json_null();
}

static int get_job(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    int64_t id;
    int rc = ct_http_req_param_int(req, "id", 1, INT64_C(1) << 62, &id);
    if (rc < 0)
        return rc;
    ct_job_info_t info;
    if ((rc = ct_jobs_get(d->jobs, id, &info)) == -ENOENT)
        return ct_http_respond_error(req, 404, "not_found", "no such job");
    if (rc < 0)
        return rc;
    return ct_http_respond_json(
        req, 200,
        json_pack("{s:I, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:b, s:s}", "id", (json_int_t) id,
                  "fileName", info.kind, "status", ct_job_status_name(info.status), "attempts",
                  info.attempts, "maxAttempts", info.max_attempts, "enqueuedAtMs",
                  time_json(info.enqueued_at_ms), "startedAtMs", time_json(info.started_at_ms),
                  "finishedAtMs", time_json(info.finished_at_ms), "cancelRequested",
                  info.cancel_requested != 0, "lastError", info.last_error));
}

static int cancel_job(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    int64_t id;
    int rc = ct_http_req_param_int(req, "id", 1, INT64_C(1) << 62, &id);
    if (rc < 0)
        return rc;
    rc = ct_jobs_cancel(d->jobs, id);
    if (rc == -ENOENT)
        return ct_http_respond_error(req, 404, "not_found", "no such job");
    if (rc == -EALREADY)
        return ct_http_respond_error(req, 409, "already_final",
                                     "the job is already completed, failed or canceled");
    if (rc < 0)
        return rc;
    return ct_http_respond_json(req, rc == 0 ? 200 : 202,
                                json_pack("{s:I, s:s}", "id", (json_int_t) id, "result",
                                          rc == 0 ? "canceled" : "cancel_requested"));
}

int demo_queue_routes(ct_http_server_t *srv, struct demo *d)
{
    int rc;
    if ((rc = ct_http_route(srv, "POST", "/api/Demo/queue/enqueue", enqueue, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/api/Demo/queue/jobs/{id}", get_job, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "POST", "/api/Demo/queue/jobs/{id}/cancel", cancel_job, d, NULL)) <
            0)
        return rc;
    return 0;
}
