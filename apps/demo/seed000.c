/* The scenarios of seed 000 ("CancellationToken in ASP.NET Core – A Complete Guide") on its own
 * URLs under /api/Demo/, with its parameters, defaults and camelCase response fields. Every
 * handler passes the request's token (or a token linked from it) to each call that waits, and
 * returns -ECANCELED when it fires: the server then answers by reason (nothing when the client
 * left, 408 on a route timeout, 503 on shutdown), and logs it at info level.
 *
 * Parameter bounds (out of range: 400 with a JSON body naming the parameter):
 *   reports/generate  rows 1..100000 (200), delayMs 0..60000 (25)
 *   timeout/run       timeoutMs 1..600000 (2000)
 *   linked/search     timeoutMs 1..600000 (1000)
 *   parallel/scrape   n 1..64 (5), delayMs 0..60000 (800), failWorker -1..64 (0: the seed's
 *                     random anti-bot failure; K: scraper K fails; -1: none fails)
 *   files/write       sizeMb 1..1024 (25), chunkMs 0..60000 (200) */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ct/file.h"
#include "ct/task.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "demo.h"

/* ---- GET reports/generate: client-initiated cancellation ------------------------------------ */

static int generate_report(ct_http_req_t *req, void *arg)
{
    int64_t rows, delay;
    int rc;
    (void) arg;
    if ((rc = ct_http_req_query_int(req, "rows", 200, 1, 100000, &rows)) < 0 ||
        (rc = ct_http_req_query_int(req, "delayMs", 25, 0, 60000, &delay)) < 0)
        return rc;
    const ct_token_t *tok = ct_http_req_token(req);
    json_t *started = demo_now_json();
    int64_t processed = 0;
    for (; processed < rows; processed++) {
        if ((rc = ct_sleep_ms(delay, tok)) < 0) { /* simulates processing one row */
            demo_log("Report generation cancelled after %lld of %lld rows (%s)",
                     (long long) processed, (long long) rows, ct_reason_name(ct_token_reason(tok)));
            json_decref(started);
            return rc; /* client gone: nothing is sent, the access log says 499 */
        }
    }
    return ct_http_respond_json(
        req, 200,
        json_pack("{s:o, s:o, s:I, s:I}", "startedAt", started, "completedAt", demo_now_json(),
                  "rowsProcessed", (json_int_t) processed, "delayPerRowMs", (json_int_t) delay));
}

/* ---- POST timeout/run: CancelAfter linked with the request ---------------------------------- */

static int run_with_timeout(ct_http_req_t *req, void *arg)
{
    int64_t timeout;
    int rc;
    (void) arg;
    if ((rc = ct_http_req_query_int(req, "timeoutMs", 2000, 1, 600000, &timeout)) < 0)
        return rc;
    const ct_token_t *outer = ct_http_req_token(req);
    ct_source_t *op;
    const ct_token_t *parents[] = {outer};
    if ((rc = ct_source_new_linked(&op, parents, 1)) < 0)
        return rc;
    ct_source_cancel_after(op, timeout);
    int64_t start = ct_now_ms();
    rc = ct_sleep_ms(3000, ct_source_token(op)); /* simulated I/O of 3 s */
    int64_t elapsed = ct_now_ms() - start;
    ct_source_free(op);
    if (rc < 0 && ct_token_canceled(outer))
        return rc; /* the client left, or the server stops: not our timeout */
    return ct_http_respond_json(req, 200,
                                json_pack("{s:b, s:I, s:b}", "completed", rc == 0, "elapsedMs",
                                          (json_int_t) elapsed, "timedOut", rc < 0));
}

/* ---- POST linked/search: a timeout linked with the client's abort --------------------------- */

static int linked_search(ct_http_req_t *req, void *arg)
{
    int64_t timeout;
    int rc;
    (void) arg;
    if ((rc = ct_http_req_query_int(req, "timeoutMs", 1000, 1, 600000, &timeout)) < 0)
        return rc;
    const ct_token_t *client = ct_http_req_token(req);
    ct_source_t *deadline, *linked;
    if ((rc = ct_source_new_timeout(&deadline, timeout)) < 0)
        return rc;
    const ct_token_t *parents[] = {ct_source_token(deadline), client};
    if ((rc = ct_source_new_linked(&linked, parents, 2)) < 0) {
        ct_source_free(deadline);
        return rc;
    }
    const ct_token_t *tok = ct_source_token(linked);
    int64_t start = ct_now_ms();
    for (int i = 0; i < 10 && rc == 0; i++) /* ten steps of ~400 ms */
        if ((rc = ct_token_check(tok)) == 0)
            rc = ct_sleep_ms(400, tok);
    int64_t elapsed = ct_now_ms() - start;
    const char *reason = "All steps done";
    if (rc < 0) {
        /* Who asked for this? The linked token remembers which source fired first. */
        if (ct_token_caused_by(tok, ct_source_token(deadline))) {
            reason = "Timeout";
            demo_log("Request cancelled due to TIMEOUT after %lld ms", (long long) elapsed);
        } else if (ct_token_reason(tok) == CT_CLIENT_ABORTED) {
            reason = "ClientAborted";
            demo_log("Request cancelled by CLIENT after %lld ms", (long long) elapsed);
        } else {
            reason = "LinkedCancel";
            demo_log("Request cancelled for %s after %lld ms", ct_reason_name(ct_token_reason(tok)),
                     (long long) elapsed);
        }
    }
    ct_source_free(linked);
    ct_source_free(deadline);
    if (rc < 0 && ct_token_canceled(client))
        return rc; /* nobody is listening, or the server is stopping */
    return ct_http_respond_json(req, 200,
                                json_pack("{s:b, s:I, s:s}", "completed", rc == 0, "elapsedMs",
                                          (json_int_t) elapsed, "reason", reason));
}

/* ---- POST parallel/scrape: parallel tasks, the first failure cancels the others ------------- */

struct scraper {
    int id, steps, fail_at; /* fail_at: the step that hits the anti-bot check, -1 none */
    int64_t delay;
};

static int scrape_one(void *arg, const ct_token_t *tok)
{
    struct scraper *s = arg;
    for (int i = 0; i < s->steps; i++) {
        int rc = ct_token_check(tok);
        if (rc == 0)
            rc = ct_sleep_ms(s->delay, tok); /* a page fetch would take tok too */
        if (rc < 0) {
            demo_log("Scraper %d canceled at step %d (%s: %s)", s->id, i,
                     ct_reason_name(ct_token_reason(tok)), ct_token_detail(tok));
            return rc;
        }
        if (i == s->fail_at) {
            demo_log("Scraper %d hit anti-bot.", s->id);
            return -EACCES;
        }
    }
    return 0;
}

static int rand_between(int lo, int hi) /* [lo, hi) */
{
    unsigned r;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (unsigned) ct_now_ns();
    return lo + (int) (r % (unsigned) (hi - lo));
}

static int scrape_many(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    int64_t n, delay, fail_worker;
    int rc;
    if ((rc = ct_http_req_query_int(req, "n", 5, 1, 64, &n)) < 0 ||
        (rc = ct_http_req_query_int(req, "delayMs", 800, 0, 60000, &delay)) < 0 ||
        (rc = ct_http_req_query_int(req, "failWorker", 0, -1, 64, &fail_worker)) < 0)
        return rc;
    struct scraper *s = ct_http_req_alloc(req, sizeof(*s) * (size_t) n);
    if (!s)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        s[i] = (struct scraper){.id = i + 1, .steps = rand_between(5, 9), .delay = delay};
        /* As in the seed, about one scraper in nine hits the anti-bot at its third step;
         * failWorker=K makes it scraper K, and only it; failWorker=-1, none. */
        s[i].fail_at =
            fail_worker ? (i + 1 == fail_worker ? 2 : -1) : (rand_between(1, 10) == 7 ? 2 : -1);
    }
    ct_group_t *g;
    if ((rc = ct_group_new(&g, d->work, ct_http_req_token(req))) < 0)
        return rc;
    for (int i = 0; i < n && rc >= 0; i++)
        rc = ct_group_spawn(g, scrape_one, &s[i]);
    int first = ct_group_wait(g);
    json_t *body;
    if (rc >= 0 && first == 0) {
        json_t *results = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(results,
                                  json_pack("{s:i, s:i, s:I}", "worker", s[i].id, "steps",
                                            s[i].steps, "perStepDelayMs", (json_int_t) delay));
        body = json_pack("{s:b, s:o}", "completed", 1, "results", results);
    } else {
        int succeeded = 0, failed = -1;
        for (size_t i = 0; i < ct_group_size(g); i++) {
            int st = ct_group_status(g, i, NULL);
            succeeded += st == CT_TASK_SUCCEEDED;
            if (st == CT_TASK_FAILED && failed < 0)
                failed = (int) i;
        }
        char why[64], msg[160];
        if (failed >= 0)
            snprintf(why, sizeof(why), "Scraper %d hit anti-bot.", s[failed].id);
        else
            snprintf(why, sizeof(why), "%s", ct_strerror(rc < 0 ? rc : first));
        snprintf(msg, sizeof(msg), "One or more tasks canceled/failed -> others canceled (%s)",
                 why);
        body = json_pack("{s:b, s:b, s:i, s:s}", "completed", 0, "canceled", 1, "succeededCount",
                         succeeded, "message", msg);
    }
    ct_group_free(g);
    if (ct_token_canceled(ct_http_req_token(req))) {
        json_decref(body);
        return -ECANCELED; /* the client left: nobody to tell */
    }
    return ct_http_respond_json(req, 200, body);
}

/* ---- POST files/write: cleanup on cancel ---------------------------------------------------- */

static int write_large_file(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    int64_t size_mb, chunk_ms;
    int rc;
    if ((rc = ct_http_req_query_int(req, "sizeMb", 25, 1, 1024, &size_mb)) < 0 ||
        (rc = ct_http_req_query_int(req, "chunkMs", 200, 0, 60000, &chunk_ms)) < 0)
        return rc;
    const ct_token_t *tok = ct_http_req_token(req);
    unsigned char id[16];
    if (getrandom(id, sizeof(id), 0) != sizeof(id))
        return -EIO;
    char name[64], path[4200];
    int n = snprintf(name, sizeof(name), "ct-demo-");
    for (int i = 0; i < 16; i++)
        n += snprintf(name + n, sizeof(name) - (size_t) n, "%02x", id[i]);
    snprintf(name + n, sizeof(name) - (size_t) n, ".bin");
    snprintf(path, sizeof(path), "%s/%s", d->data_dir, name);

    enum { MIB = 1 << 20 };
    char *chunk = malloc(MIB);
    if (!chunk)
        return -ENOMEM;
    for (size_t off = 0; off < MIB; off += 256)
        getrandom(chunk + off, 256, 0);
    ct_file_t *f;
    if ((rc = ct_file_new(&f, path, 0644, 0)) < 0) {
        free(chunk);
        return rc;
    }
    int64_t start = ct_now_ms();
    for (int64_t i = 0; i < size_mb && rc >= 0; i++) {
        ssize_t w = ct_file_write(f, chunk, MIB, tok);
        rc = w < 0 ? (int) w : ct_sleep_ms(chunk_ms, tok); /* work per chunk */
    }
    if (rc >= 0)
        rc = ct_file_commit(f, tok);
    ct_file_free(f); /* without a commit: the temporary goes, nothing is left under `name` */
    free(chunk);
    int64_t elapsed = ct_now_ms() - start;
    if (rc == -ECANCELED) {
        demo_log("File write cancelled (%s): nothing left of %s",
                 ct_reason_name(ct_token_reason(tok)), name);
        return rc;
    }
    if (rc < 0)
        return rc;
    return ct_http_respond_json(req, 200,
                                json_pack("{s:s, s:I, s:I, s:b}", "fileName", name, "sizeMB",
                                          (json_int_t) size_mb, "elapsedMs", (json_int_t) elapsed,
                                          "canceled", 0));
}

int demo_seed000_routes(ct_http_server_t *srv, struct demo *d)
{
    int rc;
    if ((rc = ct_http_route(srv, "GET", "/api/Demo/reports/generate", generate_report, d, NULL)) <
            0 ||
        (rc = ct_http_route(srv, "POST", "/api/Demo/timeout/run", run_with_timeout, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "POST", "/api/Demo/linked/search", linked_search, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "POST", "/api/Demo/parallel/scrape", scrape_many, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "POST", "/api/Demo/files/write", write_large_file, d, NULL)) < 0)
        return rc;
    return 0;
}
