/* ct-demo: the seed articles' scenarios as an HTTP API on ct. Shared by its files. */
#ifndef CT_DEMO_H
#define CT_DEMO_H

#include <jansson.h>

#include "ct/http.h"
#include "ct/http_json.h"
#include "ct/pool.h"

struct demo {
    const char *data_dir;
    ct_pool_t *work; /* the scrapers' tasks: a pool apart from the handlers' */
    ct_http_server_t *srv;
};

/* Log a line to stderr, with a timestamp, as the seeds' Console.WriteLine does. */
void demo_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "2026-11-22T03:15:26.852+00:00", DateTimeOffset's round-trip form. */
json_t *demo_now_json(void);

/* The seed "CancellationToken in ASP.NET Core – A Complete Guide" (seed 000): /api/Demo/... */
int demo_seed000_routes(ct_http_server_t *srv, struct demo *d);

/* /healthz and the benchmark's /work. */
int demo_base_routes(ct_http_server_t *srv, struct demo *d);

#endif
