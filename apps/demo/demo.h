/* ct-demo: the seed articles' scenarios as an HTTP API on ct. Shared by its files. */
#ifndef CT_DEMO_H
#define CT_DEMO_H

#include <jansson.h>

#include "ct/host.h"
#include "ct/http.h"
#include "ct/http_json.h"
#include "ct/pool.h"

struct demo_db;

struct demo {
    const char *data_dir;
    ct_pool_t *work; /* the scrapers' tasks: a pool apart from the handlers' */
    ct_http_server_t *srv;
    struct demo_db *db;         /* the layered endpoints' database (db.h) */
    const char *upstream;       /* atomic: base URL of the outbound calls' server, set once the
                                   server listens ("http://127.0.0.1:8080"); NULL before */
    int64_t upstream_delay_ms;  /* how long the upstream endpoints take by default */
    int64_t heartbeat_ms;       /* the periodic worker's interval (0: none) */
    const ct_token_t *stopping; /* the host's stopping token: SIGINT / SIGTERM */
    struct ct_jobs *jobs;       /* the background queue (queue.c) */
};

/* Log a line to stderr, with a timestamp, as the seeds' Console.WriteLine does. */
void demo_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "2026-11-22T03:15:26.852+00:00", DateTimeOffset's round-trip form. */
json_t *demo_now_json(void);

/* The seed "CancellationToken in ASP.NET Core – A Complete Guide" (seed 000): /api/Demo/... */
int demo_seed000_routes(ct_http_server_t *srv, struct demo *d);

/* Seed 001 ("Stop Wasting Server Resources"): /products, /reports/sales, /orders/{id}. */
int demo_seed001_routes(ct_http_server_t *srv, struct demo *d);

/* Seed 002 (RequestAborted through the layers): /api/WeatherForecast..., /weather-forecast... */
int demo_seed002_routes(ct_http_server_t *srv, struct demo *d);

/* Seeds 003 and 004: /reports/{id}, /api/Data/fetch-data. */
int demo_seed003_routes(ct_http_server_t *srv, struct demo *d);

/* The upstream the outbound calls reach (ct-demo serves it itself, with a delay): /upstream/... */
int demo_upstream_routes(ct_http_server_t *srv, struct demo *d);

/* GET `path` (with its query) on the upstream with `tok`; *out the parsed JSON body.
 * Returns 0; -ECANCELED (the transfer was aborted: its connection is closed); -EREMOTEIO (the
 * upstream could not be reached or answered badly: logged). */
int demo_upstream_get(struct demo *d, const char *path, const ct_token_t *tok, json_t **out);

/* Seed 000's background worker on ct-jobs (queue.c): the queue as a hosted service, the
 * periodic heartbeat worker, and /api/Demo/queue/... */
/* The queue on the SQLite file `path`, or on PostgreSQL when `conninfo` is not NULL. */
int demo_queue_open(struct demo *d, const char *path, const char *conninfo, ct_host_t *host);
int demo_heartbeat_add(struct demo *d, ct_host_t *host);
int demo_queue_routes(ct_http_server_t *srv, struct demo *d);

/* The repositories (repo.c). Each passes `tok` to the database. */
int demo_repo_migrate(struct demo_db *db);
int demo_repo_forecasts(struct demo_db *db, const ct_token_t *tok, int64_t days, int64_t runs,
                        json_t **out);
int demo_repo_products(struct demo_db *db, const ct_token_t *tok, json_t **out);
int demo_repo_sales_report(struct demo_db *db, const ct_token_t *tok, int64_t scale, json_t **out);
int demo_repo_order(struct demo_db *db, const ct_token_t *tok, int64_t id, json_t **out);
int demo_repo_report_rows(struct demo_db *db, const ct_token_t *tok, int64_t product, int64_t scale,
                          json_t **out);

/* At the boundary, after an operation on `tok` (linked from the request's token and `timeout`)
 * failed with `rc`: name who asked in the log (`what` says what stopped) and answer — nothing
 * when the client left, 503 when the host stops, 408 with a JSON body when `timeout` fired, 404
 * for -ENOENT, 502 for -EREMOTEIO (an upstream failed), 500 for any other failure. */
int demo_answer_failure(ct_http_req_t *req, const ct_token_t *tok, const ct_token_t *timeout,
                        const char *what, int rc);

/* /healthz and the benchmark's /work. */
int demo_base_routes(ct_http_server_t *srv, struct demo *d);

#endif
