/* Seed 001 (stop wasting server resources): the token passed from the controller through the
 * service to the repository and to the outbound call.
 *
 *   GET /products          every product, the request's token on the query
 *   GET /reports/sales     a slow aggregate in the database; the client leaving stops it there
 *                          (nothing is sent, the access log says 499)
 *   GET /orders/{id}       the order and its items from the database, then its shipping
 *                          information from an outbound HTTP call, one token for both
 *
 * Parameter bounds (out of range: 400 naming the parameter):
 *   reports/sales  scale 1..100000 (200, about 5 s on SQLite here): how many times the report scans
 * the sales orders/{id}    id 1..2147483647 (404 when there is no such order); shippingDelayMs
 * 0..600000 (the upstream's default): how long the shipping service takes to answer */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>

#include "demo.h"

/* ---- services ------------------------------------------------------------------------------- */

/* The order with its items, then its shipping information from the shipping service: the token
 * goes to the query and to the outbound call alike. */
static int order_details(struct demo *d, const ct_token_t *tok, int64_t id, int64_t delay_ms,
                         json_t **out)
{
    json_t *order, *shipping;
    int rc = demo_repo_order(d->db, tok, id, &order);
    if (rc < 0)
        return rc;
    char path[96];
    json_int_t shipping_id = json_integer_value(json_object_get(order, "shippingId"));
    if (delay_ms >= 0)
        snprintf(path, sizeof(path), "/upstream/shipping/info/%lld?delayMs=%lld",
                 (long long) shipping_id, (long long) delay_ms);
    else
        snprintf(path, sizeof(path), "/upstream/shipping/info/%lld", (long long) shipping_id);
    if ((rc = demo_upstream_get(d, path, tok, &shipping)) < 0) {
        json_decref(order);
        return rc;
    }
    json_object_set_new(order, "shipping", shipping);
    *out = order;
    return 0;
}

/* ---- controllers ---------------------------------------------------------------------------- */

static int get_products(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    const ct_token_t *tok = ct_http_req_token(req);
    json_t *list;
    int rc = demo_repo_products(d->db, tok, &list);
    if (rc < 0)
        return demo_answer_failure(req, tok, NULL, "products", rc);
    return ct_http_respond_json(req, 200, list);
}

static int get_sales_report(ct_http_req_t *req, void *arg)
{
    struct demo *d = arg;
    int64_t scale;
    int rc = ct_http_req_query_int(req, "scale", 200, 1, 100000, &scale);
    if (rc < 0)
        return rc;
    const ct_token_t *tok = ct_http_req_token(req);
    json_t *started = demo_now_json(), *rows;
    if ((rc = demo_repo_sales_report(d->db, tok, scale, &rows)) < 0) {
        json_decref(started);
        if (rc == -ECANCELED && ct_token_reason(tok) == CT_CLIENT_ABORTED)
            demo_log("Report generation cancelled by client after %lld ms (query stopped)",
                     (long long) ct_http_req_elapsed_ms(req));
        return demo_answer_failure(req, tok, NULL, "sales report", rc);
    }
    return ct_http_respond_json(req, 200,
                                json_pack("{s:o, s:o, s:I, s:o}", "startedAt", started,
                                          "completedAt", demo_now_json(), "scale",
                                          (json_int_t) scale, "products", rows));
}

static int get_order(ct_http_req_t *req, void *arg)
{
    int64_t id, delay;
    int rc;
    if ((rc = ct_http_req_param_int(req, "id", 1, INT32_MAX, &id)) < 0 ||
        (rc = ct_http_req_query_int(req, "shippingDelayMs", -1, 0, 600000, &delay)) < 0)
        return rc;
    const ct_token_t *tok = ct_http_req_token(req);
    json_t *order;
    if ((rc = order_details(arg, tok, id, delay, &order)) < 0)
        return demo_answer_failure(req, tok, NULL, "order", rc);
    return ct_http_respond_json(req, 200, order);
}

int demo_seed001_routes(ct_http_server_t *srv, struct demo *d)
{
    int rc;
    if ((rc = ct_http_route(srv, "GET", "/products", get_products, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/reports/sales", get_sales_report, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/orders/{id}", get_order, d, NULL)) < 0)
        return rc;
    return 0;
}
