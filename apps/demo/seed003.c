/* Seed 003 (forward the token, and ask who canceled): a report whose metadata comes from an
 * outbound call and whose rows come from the repository, under one token linked from three
 * reasons to stop — the client leaving, our own timeout, the host shutting down. The log line
 * names which one it was. And seed 004: an outbound call that stops when the client leaves.
 *
 *   GET /reports/{id}          id 1..50 (a product); timeoutMs 1..600000 (10000);
 *                              scale 1..1000000 (2000): how many times the rows are scanned;
 *                              metadataDelayMs 0..600000 (the upstream's default)
 *   GET /api/Data/fetch-data   delayMs 0..600000 (the upstream's default)
 *
 * Answers: 200; 408 (our timeout); 503 (the host stops); nothing when the client left (499 in
 * the access log). Seed 004 answers 500 on any cancellation; here the reason decides. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>

#include "demo.h"

/* ---- service -------------------------------------------------------------------------------- */

/* The report: metadata from the metadata service, then the rows from the repository, the same
 * token for both. */
static int generate_report(struct demo *d, const ct_token_t *tok, int64_t id, int64_t scale,
                           int64_t metadata_delay, json_t **out)
{
    char path[96];
    json_t *metadata, *rows;
    if (metadata_delay >= 0)
        snprintf(path, sizeof(path), "/upstream/reports/%lld/metadata?delayMs=%lld", (long long) id,
                 (long long) metadata_delay);
    else
        snprintf(path, sizeof(path), "/upstream/reports/%lld/metadata", (long long) id);
    int rc = demo_upstream_get(d, path, tok, &metadata);
    if (rc < 0)
        return rc;
    if ((rc = demo_repo_report_rows(d->db, tok, id, scale, &rows)) < 0) {
        json_decref(metadata);
        return rc;
    }
    *out = json_pack("{s:o, s:o}", "metadata", metadata, "rows", rows);
    return *out ? 0 : -ENOMEM;
}

/* ---- controllers ---------------------------------------------------------------------------- */

static int get_report(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    int64_t id, timeout_ms, scale, metadata_delay;
    int rc;
    if ((rc = ct_http_req_param_int(req, "id", 1, 50, &id)) < 0 ||
        (rc = ct_http_req_query_int(req, "timeoutMs", 10000, 1, 600000, &timeout_ms)) < 0 ||
        (rc = ct_http_req_query_int(req, "scale", 2000, 1, 1000000, &scale)) < 0 ||
        (rc = ct_http_req_query_int(req, "metadataDelayMs", -1, 0, 600000, &metadata_delay)) < 0)
        return rc;
    ct_source_t *timeout, *linked = NULL;
    if ((rc = ct_source_new_timeout(&timeout, timeout_ms)) < 0)
        return rc;
    /* One token for the call chain; the reasons stay apart for the log. */
    const ct_token_t *parents[] = {ct_http_req_token(req), ct_source_token(timeout), d->stopping};
    if ((rc = ct_source_new_linked(&linked, parents, 3)) == 0) {
        const ct_token_t *tok = ct_source_token(linked);
        json_t *report;
        char what[48];
        snprintf(what, sizeof(what), "report %lld", (long long) id);
        if ((rc = generate_report(d, tok, id, scale, metadata_delay, &report)) < 0)
            rc = demo_answer_failure(req, tok, ct_source_token(timeout), what, rc);
        else
            rc = ct_http_respond_json(req, 200, report);
    }
    ct_source_free(linked);
    ct_source_free(timeout);
    return rc;
}

/* Seed 004: the external API's answer, passed on; the request's token aborts the transfer. */
static int fetch_data(ct_http_req_t *req, void *arg)
{
    int64_t delay;
    int rc = ct_http_req_query_int(req, "delayMs", -1, 0, 600000, &delay);
    if (rc < 0)
        return rc;
    char path[64] = "/upstream/data";
    if (delay >= 0)
        snprintf(path, sizeof(path), "/upstream/data?delayMs=%lld", (long long) delay);
    const ct_token_t *tok = ct_http_req_token(req);
    json_t *data;
    if ((rc = demo_upstream_get(arg, path, tok, &data)) < 0)
        return demo_answer_failure(req, tok, NULL, "fetch-data", rc);
    return ct_http_respond_json(req, 200, data);
}

int demo_seed003_routes(ct_http_server_t *srv, struct demo *d)
{
    int rc;
    if ((rc = ct_http_route(srv, "GET", "/reports/{id}", get_report, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/api/Data/fetch-data", fetch_data, d, NULL)) < 0)
        return rc;
    return 0;
}
