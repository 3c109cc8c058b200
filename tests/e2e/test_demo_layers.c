/* ct-demo's layered endpoints end to end (seeds 001–004): the real program, its database (a SQLite
 * file in the test's data directory, or the test PostgreSQL server when built as
 * test_demo_layers_pg), its outbound calls to the upstream it serves itself, real curl as the
 * client. Each endpoint answers, and each stops where its work runs when the client leaves: the
 * query (the access log's 499 comes long before the query could have finished) or the outbound
 * transfer (the upstream logs that its caller went away). */
#define _GNU_SOURCE
#include <time.h>

#include "demo_util.h"

static char out[1 << 17];

/* ct-demo with `more` (NULL-terminated, up to 4) after the test's own arguments. */
static struct demo *start_with(const char *const *more)
{
    const char *args[8] = {NULL};
    int n = 0;
#ifdef CT_TEST_DEMO_PG
    /* The test server's "host=... port=... user=... dbname=..." as the URL users pass. */
    static char url[256];
    char host[64], user[64], dbname[64];
    int port;
    assert_int_equal(4, sscanf(ct_test_pg_conninfo(), "host=%63s port=%d user=%63s dbname=%63s",
                               host, &port, user, dbname));
    snprintf(url, sizeof(url), "postgresql://%s@%s:%d/%s", user, host, port, dbname);
    args[n++] = "--db";
    args[n++] = url;
#endif
    for (int i = 0; more && more[i] && n < 7; i++)
        args[n++] = more[i];
    return demo_start_with(args);
}

static struct demo *start(void)
{
    return start_with(NULL);
}

/* Seconds from the client giving up to the access log's 499 line for `needle`. */
static void assert_stops_soon(struct demo *d, const char *path, const char *max_time,
                              const char *logline)
{
    char opt[32];
    snprintf(opt, sizeof(opt), "--max-time %s", max_time);
    assert_int_equal(28, curl(d, out, sizeof(out), "GET", path, opt));
    int64_t gone = ct_now_ms();
    assert_true(CT_WAIT_FOR(logged(d, logline), 5000));
    /* The work would take far longer than this: it stopped where it ran. */
    assert_true(ct_now_ms() - gone < 3000 * ct_test_scale());
}

static void test_products_come_from_the_database_file(void **state)
{
    struct demo *d = start();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/products", NULL));
    assert_non_null(strstr(out, "{\"id\":1,\"name\":\"Compact Lamp 1\",\"priceCents\":"));
    assert_non_null(strstr(out, "{\"id\":50,"));
    assert_null(strstr(out, "{\"id\":51,"));
#ifdef CT_TEST_DEMO_PG
    assert_true(logged(d, "database PostgreSQL"));
#else
    assert_true(logged(d, "created the demo data"));
    char path[128];
    snprintf(path, sizeof(path), "%s/ct-demo.db", d->dir);
    assert_int_equal(0, access(path, R_OK));
#endif
    assert_int_equal(0, demo_stop(d));
}

static void test_weather_forecast_from_today_in_date_order(void **state)
{
    struct demo *d = start();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/api/WeatherForecast?days=5", NULL));
    char today[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof(today), "%Y-%m-%d", &tm);
    /* Five days, the first today (or tomorrow, if the date turned during the request). */
    const char *p = strstr(out, "\"date\":\"");
    assert_non_null(p);
    assert_true(strncmp(p + 8, today, 10) >= 0);
    char prev[16] = "";
    int n = 0;
    for (; p; p = strstr(p + 1, "\"date\":\""), n++) {
        assert_true(strncmp(p + 8, prev, 10) > 0);
        memcpy(prev, p + 8, 10);
    }
    assert_int_equal(5, n);
    assert_non_null(strstr(out, "\"temperatureF\":"));
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/weather-forecast", NULL));
    assert_non_null(strstr(out, "\"summary\":"));
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/weather-forecast-with-timeout", NULL));
    assert_non_null(strstr(out, "\"summary\":"));
    assert_int_equal(0, demo_stop(d));
}

static void test_weather_forecast_stops_its_query_when_the_client_leaves(void **state)
{
    struct demo *d = start();
    /* 365 days × 5 000 000 model runs: minutes of work in the database. */
    assert_stops_soon(d, "/api/WeatherForecast?days=365&ensembleRuns=5000000", "0.5",
                      "GET /api/WeatherForecast 499");
    assert_true(logged(d, "weather forecast: client disconnected"));
    /* The same through the seed's other URLs, timeouts linked or not. */
    assert_stops_soon(d, "/weather-forecast?days=365&ensembleRuns=5000000", "0.5",
                      "GET /weather-forecast 499");
    assert_stops_soon(d, "/weather-forecast-with-timeout?days=365&ensembleRuns=5000000", "0.5",
                      "GET /weather-forecast-with-timeout 499");
    assert_stops_soon(d,
                      "/api/WeatherForecast/multiple-timeouts?quickMs=60000&slowMs=120000&"
                      "days=365&ensembleRuns=5000000",
                      "0.5", "GET /api/WeatherForecast/multiple-timeouts 499");
    assert_int_equal(0, demo_stop(d));
}

static void test_weather_with_timeout_answers_408(void **state)
{
    struct demo *d = start();
    int64_t t0 = ct_now_ms();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET",
                             "/api/WeatherForecast/with-timeout/1?days=365&ensembleRuns=5000000",
                             "-w %{http_code}"));
    assert_non_null(strstr(out, "Request processing timed out"));
    assert_non_null(strstr(out, "}408"));
    assert_true(ct_now_ms() - t0 >= 1000);
    assert_true(ct_now_ms() - t0 < 4000 * ct_test_scale());
    assert_true(CT_WAIT_FOR(logged(d, "weather forecast: operation timed out"), 5000));
    /* Two timeouts: the quick one fires first. */
    assert_int_equal(0, curl(d, out, sizeof(out), "GET",
                             "/api/WeatherForecast/multiple-timeouts?quickMs=200&slowMs=60000&"
                             "days=365&ensembleRuns=5000000",
                             "-w %{http_code}"));
    assert_non_null(strstr(out, "}408"));
    /* The client leaves before the timeout: nothing is answered, 499 in the log. */
    assert_stops_soon(d, "/api/WeatherForecast/with-timeout/30?days=365&ensembleRuns=5000000",
                      "0.5", "/api/WeatherForecast/with-timeout/30");
    assert_true(CT_WAIT_FOR(logged(d, "weather forecast: client disconnected"), 5000));
    /* A caller's deadline in CT-Timeout-Ms (what ct-curl sends) is a timeout too. */
    t0 = ct_now_ms();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET",
                             "/api/WeatherForecast?days=365&ensembleRuns=5000000",
                             "-H CT-Timeout-Ms:300 -w %{http_code}"));
    assert_non_null(strstr(out, "}408"));
    assert_true(ct_now_ms() - t0 < 3000 * ct_test_scale());
    assert_int_equal(0,
                     curl(d, out, sizeof(out), "GET", "/api/WeatherForecast/with-timeout/0", NULL));
    assert_non_null(strstr(out, "\"parameter\":\"seconds\""));
    assert_int_equal(0, demo_stop(d));
}

static void test_sales_report_completes_or_stops_in_the_database(void **state)
{
    struct demo *d = start();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/reports/sales?scale=1", NULL));
    assert_non_null(strstr(out, "\"scale\":1"));
    assert_non_null(strstr(out, "\"revenueCents\":"));
    assert_stops_soon(d, "/reports/sales?scale=100000", "0.5", "GET /reports/sales 499");
    assert_true(logged(d, "Report generation cancelled by client"));
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/reports/sales?scale=0", NULL));
    assert_non_null(strstr(out, "\"parameter\":\"scale\""));
    assert_int_equal(0, demo_stop(d));
}

static void test_order_with_items_and_shipping_from_the_upstream(void **state)
{
    struct demo *d = start();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/orders/7?shippingDelayMs=0", NULL));
    assert_non_null(strstr(out, "\"id\":7,"));
    assert_non_null(strstr(out, "\"shippingId\":5007"));
    assert_non_null(strstr(out, "\"items\":[{\"line\":1,"));
    assert_non_null(strstr(out, "{\"line\":3,"));
    assert_non_null(strstr(out, "\"shipping\":{\"shippingId\":5007,\"carrier\":"));
    assert_true(logged(d, "GET /upstream/shipping/info/5007 200"));
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/orders/1001", "-w %{http_code}"));
    assert_non_null(strstr(out, "}404"));
    assert_int_equal(0, demo_stop(d));
}

static void test_order_abort_reaches_the_outbound_call(void **state)
{
    struct demo *d = start();
    /* The shipping service takes 20 s; the client leaves after 0.5 s: the outbound transfer is
     * aborted and the upstream sees its caller go. */
    assert_stops_soon(d, "/orders/3?shippingDelayMs=20000", "0.5", "GET /orders/3 499");
    assert_true(CT_WAIT_FOR(logged(d, "order: client disconnected"), 5000));
    assert_true(CT_WAIT_FOR(logged(d, "upstream shipping info: stopped after"), 5000));
    assert_true(
        CT_WAIT_FOR(logged(d, "reason=client_aborted route=/upstream/shipping/info/{id}"), 5000));
    assert_int_equal(0, demo_stop(d));
}

static void test_report_by_id_names_who_asked(void **state)
{
    struct demo *d = start();
    assert_int_equal(
        0, curl(d, out, sizeof(out), "GET", "/reports/7?scale=1&metadataDelayMs=0", NULL));
    assert_non_null(strstr(out, "\"metadata\":{\"id\":\"7\",\"title\":"));
    assert_non_null(strstr(out, "\"rows\":[{\"day\":"));
    /* Our timeout, during the outbound call. */
    assert_int_equal(0, curl(d, out, sizeof(out), "GET",
                             "/reports/7?timeoutMs=300&metadataDelayMs=20000", "-w %{http_code}"));
    assert_non_null(strstr(out, "}408"));
    assert_true(CT_WAIT_FOR(logged(d, "report 7: operation timed out"), 5000));
    /* Our timeout, during the query. */
    assert_int_equal(0, curl(d, out, sizeof(out), "GET",
                             "/reports/8?timeoutMs=500&metadataDelayMs=0&scale=1000000",
                             "-w %{http_code}"));
    assert_non_null(strstr(out, "}408"));
    assert_true(CT_WAIT_FOR(logged(d, "report 8: operation timed out"), 5000));
    /* The client. */
    assert_stops_soon(d, "/reports/9?metadataDelayMs=0&scale=1000000", "0.5", "GET /reports/9 499");
    assert_true(logged(d, "report 9: client disconnected"));
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/reports/51", NULL));
    assert_non_null(strstr(out, "\"parameter\":\"id\""));
    assert_int_equal(0, demo_stop(d));
}

struct bg_curl {
    struct demo *d;
    const char *path;
    const char *opts; /* curl's options; NULL: "-w %{http_code}" */
    char out[4096];
    int rc;
};

static void *bg_get(void *arg)
{
    struct bg_curl *b = arg;
    b->rc =
        curl(b->d, b->out, sizeof(b->out), "GET", b->path, b->opts ? b->opts : "-w %{http_code}");
    return NULL;
}

static bool in_flight(struct demo *d, int n)
{
    char m[1 << 15], line[64];
    snprintf(line, sizeof(line), "ct_http_requests_in_flight %d\n", n);
    return curl(d, m, sizeof(m), "GET", "/metrics", NULL) == 0 && strstr(m, line);
}

/* /products' query is instant; what a client can give up on is the wait for a connection. With
 * one connection, held by a slow report, the products request waits for it with its token: the
 * client leaving ends that wait at once, and the connection, once free, serves the next one. */
static void test_products_stops_waiting_for_a_connection_when_the_client_leaves(void **state)
{
    static const char *const one_conn[] = {"--db-conns", "1", NULL};
    struct demo *d = start_with(one_conn);
    struct bg_curl b = {.d = d, .path = "/reports/sales?scale=100000", .opts = "--max-time 5"};
    ct_test_thread_t *th = ct_test_thread_start(bg_get, &b);
    assert_true(CT_WAIT_FOR(in_flight(d, 2), 10000)); /* the report, and this /metrics */
    assert_stops_soon(d, "/products", "0.5", "GET /products 499");
    assert_false(logged(d, "GET /reports/sales 499")); /* the report still holds the connection */
    ct_test_thread_join(th);
    assert_int_equal(28, b.rc);
    assert_true(CT_WAIT_FOR(logged(d, "GET /reports/sales 499"), 5000));
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/products", NULL));
    assert_non_null(strstr(out, "{\"id\":50,"));
    assert_int_equal(0, demo_stop(d));
}

static void test_report_by_id_stops_when_the_host_shuts_down(void **state)
{
    struct demo *d = start();
    struct bg_curl b = {.d = d, .path = "/reports/5?metadataDelayMs=0&scale=1000000"};
    ct_test_thread_t *th = ct_test_thread_start(bg_get, &b);
    assert_true(CT_WAIT_FOR(in_flight(d, 2), 10000));
    demo_sigterm(d);
    ct_test_thread_join(th);
    assert_int_equal(0, b.rc);
    assert_non_null(strstr(b.out, "}503"));
    assert_true(CT_WAIT_FOR(logged(d, "report 5: host is shutting down"), 5000));
    assert_int_equal(0, demo_stop(d));
}

static void test_fetch_data_aborts_its_outbound_call(void **state)
{
    struct demo *d = start();
    assert_int_equal(0, curl(d, out, sizeof(out), "GET", "/api/Data/fetch-data?delayMs=0", NULL));
    assert_non_null(strstr(out, "\"source\":\"upstream\""));
    assert_stops_soon(d, "/api/Data/fetch-data?delayMs=20000", "0.5",
                      "GET /api/Data/fetch-data 499");
    assert_true(CT_WAIT_FOR(logged(d, "upstream data: stopped after"), 5000));
    assert_true(CT_WAIT_FOR(logged(d, "reason=client_aborted route=/upstream/data"), 5000));
    assert_int_equal(0, demo_stop(d));
}

CT_TEST_MAIN(cmocka_unit_test(test_products_come_from_the_database_file),
             cmocka_unit_test(test_products_stops_waiting_for_a_connection_when_the_client_leaves),
             cmocka_unit_test(test_weather_forecast_from_today_in_date_order),
             cmocka_unit_test(test_weather_forecast_stops_its_query_when_the_client_leaves),
             cmocka_unit_test(test_weather_with_timeout_answers_408),
             cmocka_unit_test(test_sales_report_completes_or_stops_in_the_database),
             cmocka_unit_test(test_order_with_items_and_shipping_from_the_upstream),
             cmocka_unit_test(test_order_abort_reaches_the_outbound_call),
             cmocka_unit_test(test_report_by_id_names_who_asked),
             cmocka_unit_test(test_report_by_id_stops_when_the_host_shuts_down),
             cmocka_unit_test(test_fetch_data_aborts_its_outbound_call))
