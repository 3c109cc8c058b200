/* The outbound side of the layered endpoints: the client that calls the upstream with the
 * caller's token (ct-curl: a fired token aborts the transfer and closes its connection at once),
 * and the upstream itself, which ct-demo serves so that the calls are real HTTP on the wire:
 *
 *   GET /upstream/shipping/info/{id}      seed 001's shipping service
 *   GET /upstream/reports/{id}/metadata   seed 003's metadata service
 *   GET /upstream/data                    seed 004's external API
 *
 * Each takes `delayMs` (0..600000; default --upstream-delay-ms) and sends its JSON slowly: the
 * headers at once, then a byte of whitespace every 50 ms, then the object — a slow upstream on
 * the wire. When the caller gives up, the upstream sees its connection close: its own request
 * token fires with CT_CLIENT_ABORTED and it stops sending. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ct/curl.h"
#include "ct/wait.h"
#include "demo.h"

/* ---- the client ----------------------------------------------------------------------------- */

int demo_upstream_get(struct demo *d, const char *path, const ct_token_t *tok, json_t **out)
{
    char url[512];
    const char *base = __atomic_load_n(&d->upstream, __ATOMIC_ACQUIRE);
    if (!base) /* a request that came in before the server published its own address */
        return -EREMOTEIO;
    if (snprintf(url, sizeof(url), "%s%s", base, path) >= (int) sizeof(url))
        return -EINVAL;
    ct_curl_options_t o = {.max_body = 1 << 20};
    ct_curl_response_t res;
    int rc = ct_curl_get(url, tok, &o, &res);
    if (rc < 0) {
        if (rc != -ECANCELED)
            demo_log("upstream GET %s: %s", url, ct_strerror(rc));
        return rc == -ECANCELED ? rc : -EREMOTEIO;
    }
    json_error_t err;
    json_t *v = res.status == 200 ? json_loadb(res.body, res.body_len, 0, &err) : NULL;
    if (!v)
        demo_log("upstream GET %s: status %ld, %s", url, res.status,
                 res.status == 200 ? err.text : "not 200");
    ct_curl_response_free(&res);
    if (!v)
        return -EREMOTEIO;
    *out = v;
    return 0;
}

/* ---- the upstream --------------------------------------------------------------------------- */

/* Send `body` (taken) after `delay_ms` of trickled whitespace, stopping when the caller leaves. */
static int trickle(ct_http_req_t *req, int64_t delay_ms, json_t *body, const char *what)
{
    const ct_token_t *tok = ct_http_req_token(req);
    int rc = ct_http_stream_begin(req, 200, "application/json");
    for (int64_t waited = 0; rc == 0 && waited < delay_ms; waited += 50) {
        int64_t step = delay_ms - waited < 50 ? delay_ms - waited : 50;
        if ((rc = ct_sleep_ms(step, tok)) == 0)
            rc = ct_http_stream_write(req, " ", 1);
    }
    char *text = rc == 0 ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (rc == 0 && !text)
        rc = -ENOMEM;
    if (rc == 0)
        rc = ct_http_stream_write(req, text, strlen(text));
    free(text);
    if (rc < 0)
        demo_log("upstream %s: stopped after %lld ms (%s)", what,
                 (long long) ct_http_req_elapsed_ms(req),
                 ct_token_canceled(tok) ? ct_reason_name(ct_token_reason(tok)) : ct_strerror(rc));
    return rc;
}

static int delay_param(ct_http_req_t *req, struct demo *d, int64_t *delay)
{
    return ct_http_req_query_int(req, "delayMs", d->upstream_delay_ms, 0, 600000, delay);
}

static int shipping_info(ct_http_req_t *req, void *arg)
{
    static const char *const status[] = {"label_created", "in_transit", "out_for_delivery",
                                         "delivered"};
    int64_t id, delay;
    int rc;
    if ((rc = ct_http_req_param_int(req, "id", 0, INT32_MAX, &id)) < 0 ||
        (rc = delay_param(req, arg, &delay)) < 0)
        return rc;
    return trickle(req, delay,
                   json_pack("{s:I, s:s, s:s, s:I}", "shippingId", (json_int_t) id, "carrier",
                             id % 2 ? "Parcelwise" : "NorthPost", "status", status[id % 4],
                             "estimatedDays", (json_int_t) (1 + id % 5)),
                   "shipping info");
}

static int report_metadata(ct_http_req_t *req, void *arg)
{
    int64_t delay;
    int rc = delay_param(req, arg, &delay);
    if (rc < 0)
        return rc;
    const char *id = ct_http_req_param(req, "id");
    char title[96];
    snprintf(title, sizeof(title), "Daily sales of product %.40s", id);
    return trickle(req, delay,
                   json_pack("{s:s, s:s, s:s}", "id", id, "title", title, "owner", "finance"),
                   "report metadata");
}

static int external_data(ct_http_req_t *req, void *arg)
{
    int64_t delay;
    int rc = delay_param(req, arg, &delay);
    if (rc < 0)
        return rc;
    return trickle(req, delay,
                   json_pack("{s:s, s:o}", "source", "upstream", "generatedAt", demo_now_json()),
                   "data");
}

int demo_upstream_routes(ct_http_server_t *srv, struct demo *d)
{
    int rc;
    if ((rc = ct_http_route(srv, "GET", "/upstream/shipping/info/{id}", shipping_info, d, NULL)) <
            0 ||
        (rc = ct_http_route(srv, "GET", "/upstream/reports/{id}/metadata", report_metadata, d,
                            NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/upstream/data", external_data, d, NULL)) < 0)
        return rc;
    return 0;
}
