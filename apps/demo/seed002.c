/* Seed 002 (HttpContext.RequestAborted from the pipeline to the database): the weather forecast,
 * as controller → service → repository → database, each layer passing the token on.
 *
 *   GET /api/WeatherForecast                        the request's token only
 *   GET /api/WeatherForecast/with-timeout/{seconds} a timeout linked with the request's token
 *   GET /api/WeatherForecast/multiple-timeouts      two timeouts and the request's token
 *   GET /weather-forecast                           the seed's first controller
 *   GET /weather-forecast-with-timeout              its 5 s linked timeout
 *
 * Timeout: 408 with a JSON body. Client gone: nothing is sent (the access log says 499).
 *
 * Parameter bounds (out of range: 400 naming the parameter):
 *   days          1..365 (7)       forecast days from today on
 *   ensembleRuns  1..5000000 (2000) model runs per day the database aggregates: the slow part
 *   seconds       1..600           with-timeout/{seconds}
 *   quickMs       1..600000 (5000), slowMs 1..600000 (30000)   multiple-timeouts */
#define _GNU_SOURCE
#include <errno.h>

#include "demo.h"

/* ---- service -------------------------------------------------------------------------------- */

/* The forecast for `days` days from today. The repository's query runs with `tok`; the mapping
 * after it checks the token too, between the database and the CPU work, as the seed's service
 * does with ThrowIfCancellationRequested. */
static int weather_forecast(struct demo *d, const ct_token_t *tok, int64_t days, int64_t runs,
                            json_t **out)
{
    json_t *rows;
    int rc = demo_repo_forecasts(d->db, tok, days, runs, &rows);
    if (rc < 0)
        return rc;
    if ((rc = ct_token_check(tok)) < 0) {
        json_decref(rows);
        return rc;
    }
    *out = rows;
    return 0;
}

/* ---- controllers ---------------------------------------------------------------------------- */

static int forecast_params(ct_http_req_t *req, int64_t *days, int64_t *runs)
{
    int rc;
    if ((rc = ct_http_req_query_int(req, "days", 7, 1, 365, days)) < 0 ||
        (rc = ct_http_req_query_int(req, "ensembleRuns", 2000, 1, 5000000, runs)) < 0)
        return rc;
    return 0;
}

/* The request's token alone: a client that leaves stops the query; nothing is answered. */
static int get_forecast(ct_http_req_t *req, void *arg)
{
    int64_t days, runs;
    json_t *list;
    int rc = forecast_params(req, &days, &runs);
    if (rc < 0)
        return rc;
    const ct_token_t *tok = ct_http_req_token(req);
    if ((rc = weather_forecast(arg, tok, days, runs, &list)) < 0)
        return demo_answer_failure(req, tok, NULL, "weather forecast", rc);
    return ct_http_respond_json(req, 200, list);
}

/* Up to three parents: the request's token and one or two timeouts of our own. */
static int forecast_linked(ct_http_req_t *req, struct demo *d, const int64_t *timeouts, int n)
{
    int64_t days, runs;
    int rc = forecast_params(req, &days, &runs);
    if (rc < 0)
        return rc;
    ct_source_t *timeout[2] = {NULL, NULL}, *linked = NULL;
    const ct_token_t *parents[3] = {ct_http_req_token(req)};
    for (int i = 0; i < n && rc == 0; i++)
        if ((rc = ct_source_new_timeout(&timeout[i], timeouts[i])) == 0)
            parents[1 + i] = ct_source_token(timeout[i]);
    if (rc == 0)
        rc = ct_source_new_linked(&linked, parents, (size_t) (1 + n));
    json_t *list = NULL;
    if (rc == 0) {
        const ct_token_t *tok = ct_source_token(linked);
        if ((rc = weather_forecast(d, tok, days, runs, &list)) < 0) {
            /* Which timeout fired, if one did: the linked token remembers its origin. */
            const ct_token_t *which = NULL;
            for (int i = 0; i < n; i++)
                if (ct_token_caused_by(tok, ct_source_token(timeout[i])))
                    which = ct_source_token(timeout[i]);
            rc = demo_answer_failure(req, tok, which, "weather forecast", rc);
        } else {
            rc = ct_http_respond_json(req, 200, list);
        }
    }
    ct_source_free(linked);
    ct_source_free(timeout[1]);
    ct_source_free(timeout[0]);
    return rc;
}

static int get_forecast_with_timeout(ct_http_req_t *req, void *arg)
{
    int64_t seconds;
    int rc = ct_http_req_param_int(req, "seconds", 1, 600, &seconds);
    if (rc < 0)
        return rc;
    int64_t ms = seconds * 1000;
    return forecast_linked(req, arg, &ms, 1);
}

static int get_forecast_with_5s_timeout(ct_http_req_t *req, void *arg)
{
    static const int64_t five_seconds = 5000;
    return forecast_linked(req, arg, &five_seconds, 1);
}

static int get_forecast_multiple_timeouts(ct_http_req_t *req, void *arg)
{
    int64_t t[2];
    int rc;
    if ((rc = ct_http_req_query_int(req, "quickMs", 5000, 1, 600000, &t[0])) < 0 ||
        (rc = ct_http_req_query_int(req, "slowMs", 30000, 1, 600000, &t[1])) < 0)
        return rc;
    return forecast_linked(req, arg, t, 2);
}

int demo_seed002_routes(ct_http_server_t *srv, struct demo *d)
{
    int rc;
    if ((rc = ct_http_route(srv, "GET", "/api/WeatherForecast", get_forecast, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/api/WeatherForecast/with-timeout/{seconds}",
                            get_forecast_with_timeout, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/api/WeatherForecast/multiple-timeouts",
                            get_forecast_multiple_timeouts, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/weather-forecast", get_forecast, d, NULL)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/weather-forecast-with-timeout",
                            get_forecast_with_5s_timeout, d, NULL)) < 0)
        return rc;
    return 0;
}
