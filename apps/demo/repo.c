/* The repositories of the layered endpoints (seeds 001–003): the schema, the demo data created on
 * first run, and one function per query. Each takes the caller's token and hands it to the
 * database call, the bottom of "controller → service → repository → database".
 *
 * The slow queries are real work where the database runs them: an aggregate over rows generated
 * by a recursive CTE, `scale` or `runs` times over, so a canceled request visibly stops them
 * there. One SQL text serves both engines: numeric parameters arrive as text and are CAST. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "demo.h"

/* ---- schema and demo data ------------------------------------------------------------------- */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS demo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS weather_data (id INTEGER PRIMARY KEY, date TEXT NOT NULL,\n"
    "  temperature_c INTEGER NOT NULL, summary TEXT NOT NULL);\n"
    "CREATE INDEX IF NOT EXISTS weather_data_date ON weather_data (date);\n"
    "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT NOT NULL,\n"
    "  price_cents INTEGER NOT NULL, stock INTEGER NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS sales (id INTEGER PRIMARY KEY,\n"
    "  product_id INTEGER NOT NULL REFERENCES products (id), day TEXT NOT NULL,\n"
    "  quantity INTEGER NOT NULL, amount_cents INTEGER NOT NULL);\n"
    "CREATE INDEX IF NOT EXISTS sales_product ON sales (product_id);\n"
    "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL,\n"
    "  created_at TEXT NOT NULL, shipping_id INTEGER NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS order_items (order_id INTEGER NOT NULL REFERENCES orders (id),\n"
    "  line INTEGER NOT NULL, product_id INTEGER NOT NULL REFERENCES products (id),\n"
    "  quantity INTEGER NOT NULL, price_cents INTEGER NOT NULL, PRIMARY KEY (order_id, line));\n";

/* %1$s: the SQL of "day number i as YYYY-MM-DD" (the one thing the engines spell differently). */
static const char seed_data[] =
    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 50)\n"
    "INSERT INTO products (id, name, price_cents, stock)\n"
    "SELECT i, (CASE i %% 5 WHEN 0 THEN 'Classic' WHEN 1 THEN 'Compact' WHEN 2 THEN 'Deluxe'\n"
    "  WHEN 3 THEN 'Rugged' ELSE 'Travel' END) || ' ' || (CASE i %% 10 WHEN 0 THEN 'Kettle'\n"
    "  WHEN 1 THEN 'Lamp' WHEN 2 THEN 'Backpack' WHEN 3 THEN 'Headphones' WHEN 4 THEN 'Bottle'\n"
    "  WHEN 5 THEN 'Chair' WHEN 6 THEN 'Umbrella' WHEN 7 THEN 'Notebook' WHEN 8 THEN 'Scarf'\n"
    "  ELSE 'Mug' END) || ' ' || i, 199 + (i * 7919) %% 9800, (i * 31) %% 200 FROM g;\n"
    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 20000)\n"
    "INSERT INTO sales (id, product_id, day, quantity, amount_cents)\n"
    "SELECT i, 1 + (i * 37) %% 50, %1$s, 1 + i %% 7,\n"
    "  (1 + i %% 7) * (199 + ((1 + (i * 37) %% 50) * 7919) %% 9800) FROM g;\n"
    "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 1000)\n"
    "INSERT INTO orders (id, customer, created_at, shipping_id)\n"
    "SELECT i, 'customer-' || ((i * 13) %% 97), %1$s, 5000 + i FROM g;\n"
    "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 2999)\n"
    "INSERT INTO order_items (order_id, line, product_id, quantity, price_cents)\n"
    "SELECT 1 + i / 3, 1 + i %% 3, 1 + (i * 17) %% 50, 1 + i %% 4,\n"
    "  199 + ((1 + (i * 17) %% 50) * 7919) %% 9800 FROM g;\n"
    "WITH RECURSIVE g(i) AS (SELECT -30 UNION ALL SELECT i + 1 FROM g WHERE i < 3650)\n"
    "INSERT INTO weather_data (id, date, temperature_c, summary)\n"
    "SELECT i + 31, %2$s, t, CASE WHEN t < -10 THEN 'Freezing' WHEN t < -4 THEN 'Bracing'\n"
    "  WHEN t < 2 THEN 'Chilly' WHEN t < 8 THEN 'Cool' WHEN t < 14 THEN 'Mild'\n"
    "  WHEN t < 20 THEN 'Warm' WHEN t < 25 THEN 'Balmy' WHEN t < 30 THEN 'Hot'\n"
    "  WHEN t < 35 THEN 'Sweltering' ELSE 'Scorching' END\n"
    "FROM (SELECT i, -20 + (i * 7919 + 17) %% 55 AS t FROM g) AS days;\n"
    "INSERT INTO demo_meta (key, value) VALUES ('seeded', '%3$s');\n";

static int count_row(void *arg, int ncols, const char *const *cols)
{
    (void) ncols;
    *(long *) arg = cols[0] ? atol(cols[0]) : 0;
    return 0;
}

int demo_repo_migrate(struct demo_db *db)
{
    int rc = demo_db_script(db, NULL, schema);
    long seeded = 0;
    if (rc == 0)
        rc = demo_db_query(db, NULL, "SELECT count(*) FROM demo_meta WHERE key = 'seeded'", 0, NULL,
                           count_row, &seeded);
    if (rc < 0 || seeded)
        return rc < 0 ? rc : 0;
    /* Sales and orders go back two years from today, the weather ten years ahead: the data is
     * created relative to the first run and stays valid for a long time. */
    char today[16], *sql = NULL;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof(today), "%Y-%m-%d", &tm);
    char sales_day[96], weather_day[96];
    if (demo_db_is_pg(db)) {
        snprintf(sales_day, sizeof(sales_day), "to_char(DATE '%s' - i %% 730, 'YYYY-MM-DD')",
                 today);
        snprintf(weather_day, sizeof(weather_day), "to_char(DATE '%s' + i, 'YYYY-MM-DD')", today);
    } else {
        snprintf(sales_day, sizeof(sales_day), "date('%s', '-' || (i %% 730) || ' days')", today);
        snprintf(weather_day, sizeof(weather_day), "date('%s', i || ' days')", today);
    }
    if (asprintf(&sql, seed_data, sales_day, weather_day, today) < 0)
        return -ENOMEM;
    rc = demo_db_script(db, NULL, sql);
    free(sql);
    if (rc == 0)
        demo_log("created the demo data (50 products, 20000 sales, 1000 orders, 3681 days of "
                 "weather from %s)",
                 today);
    return rc;
}

/* ---- rows to JSON --------------------------------------------------------------------------- */

/* A column's text as a JSON integer (the engines hand every column over as text). */
static json_t *jint(const char *s)
{
    return json_integer(s ? strtoll(s, NULL, 10) : 0);
}

static json_t *jstr(const char *s)
{
    return json_string(s ? s : "");
}

/* ---- seed 002: weather ---------------------------------------------------------------------- */

static int forecast_row(void *arg, int ncols, const char *const *cols)
{
    (void) ncols;
    long long c = strtoll(cols[1] ? cols[1] : "0", NULL, 10);
    json_t *f =
        json_pack("{s:o, s:I, s:I, s:o}", "date", jstr(cols[0]), "temperatureC", (json_int_t) c,
                  "temperatureF", (json_int_t) (32 + c * 9 / 5), "summary", jstr(cols[2]));
    return f && json_array_append_new(arg, f) == 0 ? 0 : -ENOMEM;
}

int demo_repo_forecasts(struct demo_db *db, const ct_token_t *tok, int64_t days, int64_t runs,
                        json_t **out)
{
    /* Every day's temperature is corrected by an "ensemble" of `runs` model runs: an aggregate
     * over `runs` generated rows per day, computed by the database. */
    static const char sql[] =
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g\n"
        "                        WHERE i < CAST($3 AS INTEGER))\n"
        "SELECT w.date, w.temperature_c + (SELECT CAST(sum(((i % 9973) * 7919 + w.id) % 11) AS "
        "INTEGER)\n"
        "                                  FROM g) / CAST($3 AS INTEGER) - 5, w.summary\n"
        "FROM weather_data w WHERE w.date >= $1 ORDER BY w.date LIMIT CAST($2 AS INTEGER)";
    char today[16], ndays[24], nruns[24];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof(today), "%Y-%m-%d", &tm);
    snprintf(ndays, sizeof(ndays), "%lld", (long long) days);
    snprintf(nruns, sizeof(nruns), "%lld", (long long) runs);
    const char *params[] = {today, ndays, nruns};
    json_t *list = json_array();
    int rc = list ? demo_db_query(db, tok, sql, 3, params, forecast_row, list) : -ENOMEM;
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return 0;
}

/* ---- seed 001: products, the sales report, orders ------------------------------------------- */

static int product_row(void *arg, int ncols, const char *const *cols)
{
    (void) ncols;
    json_t *p = json_pack("{s:o, s:o, s:o, s:o}", "id", jint(cols[0]), "name", jstr(cols[1]),
                          "priceCents", jint(cols[2]), "stock", jint(cols[3]));
    return p && json_array_append_new(arg, p) == 0 ? 0 : -ENOMEM;
}

int demo_repo_products(struct demo_db *db, const ct_token_t *tok, json_t **out)
{
    json_t *list = json_array();
    int rc = list ? demo_db_query(db, tok,
                                  "SELECT id, name, price_cents, stock FROM products ORDER BY id",
                                  0, NULL, product_row, list)
                  : -ENOMEM;
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return 0;
}

static int sales_row(void *arg, int ncols, const char *const *cols)
{
    (void) ncols;
    json_t *r = json_pack("{s:o, s:o, s:o, s:o}", "productId", jint(cols[0]), "product",
                          jstr(cols[1]), "quantity", jint(cols[2]), "revenueCents", jint(cols[3]));
    return r && json_array_append_new(arg, r) == 0 ? 0 : -ENOMEM;
}

int demo_repo_sales_report(struct demo_db *db, const ct_token_t *tok, int64_t scale, json_t **out)
{
    /* Revenue per product over every sale, the sales scanned `scale` times: a stand-in for a
     * table `scale` times larger. The totals are per scan. */
    static const char sql[] = "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g\n"
                              "                        WHERE i < CAST($1 AS INTEGER))\n"
                              "SELECT p.id, p.name, sum(s.quantity) / CAST($1 AS INTEGER),\n"
                              "       sum(s.amount_cents) / CAST($1 AS INTEGER)\n"
                              "FROM g CROSS JOIN sales s JOIN products p ON p.id = s.product_id\n"
                              "GROUP BY p.id, p.name ORDER BY 4 DESC, p.id";
    char n[24];
    snprintf(n, sizeof(n), "%lld", (long long) scale);
    const char *params[] = {n};
    json_t *list = json_array();
    int rc = list ? demo_db_query(db, tok, sql, 1, params, sales_row, list) : -ENOMEM;
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return 0;
}

static int order_row(void *arg, int ncols, const char *const *cols)
{
    (void) ncols;
    json_t **order = arg;
    *order = json_pack("{s:o, s:o, s:o, s:o, s:[]}", "id", jint(cols[0]), "customer", jstr(cols[1]),
                       "createdAt", jstr(cols[2]), "shippingId", jint(cols[3]), "items");
    return *order ? 0 : -ENOMEM;
}

static int item_row(void *arg, int ncols, const char *const *cols)
{
    (void) ncols;
    json_t *it =
        json_pack("{s:o, s:o, s:o, s:o, s:o}", "line", jint(cols[0]), "productId", jint(cols[1]),
                  "product", jstr(cols[2]), "quantity", jint(cols[3]), "priceCents", jint(cols[4]));
    return it && json_array_append_new(arg, it) == 0 ? 0 : -ENOMEM;
}

int demo_repo_order(struct demo_db *db, const ct_token_t *tok, int64_t id, json_t **out)
{
    char n[24];
    snprintf(n, sizeof(n), "%lld", (long long) id);
    const char *params[] = {n};
    json_t *order = NULL;
    int rc = demo_db_query(db, tok,
                           "SELECT id, customer, created_at, shipping_id FROM orders "
                           "WHERE id = CAST($1 AS INTEGER)",
                           1, params, order_row, &order);
    if (rc == 0)
        return -ENOENT;
    if (rc > 0) /* the order's items, as EF Core's Include(o => o.Items) would load them */
        rc = demo_db_query(db, tok,
                           "SELECT i.line, i.product_id, p.name, i.quantity, i.price_cents\n"
                           "FROM order_items i JOIN products p ON p.id = i.product_id\n"
                           "WHERE i.order_id = CAST($1 AS INTEGER) ORDER BY i.line",
                           1, params, item_row, json_object_get(order, "items"));
    if (rc < 0) {
        json_decref(order);
        return rc;
    }
    *out = order;
    return 0;
}

/* ---- seed 003: a report's rows -------------------------------------------------------------- */

static int report_row(void *arg, int ncols, const char *const *cols)
{
    (void) ncols;
    json_t *r = json_pack("{s:o, s:o, s:o}", "day", jstr(cols[0]), "quantity", jint(cols[1]),
                          "revenueCents", jint(cols[2]));
    return r && json_array_append_new(arg, r) == 0 ? 0 : -ENOMEM;
}

int demo_repo_report_rows(struct demo_db *db, const ct_token_t *tok, int64_t product, int64_t scale,
                          json_t **out)
{
    /* The product's 30 latest sales days, every sale of it scanned `scale` times. */
    static const char sql[] = "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g\n"
                              "                        WHERE i < CAST($2 AS INTEGER))\n"
                              "SELECT s.day, sum(s.quantity) / CAST($2 AS INTEGER),\n"
                              "       sum(s.amount_cents) / CAST($2 AS INTEGER)\n"
                              "FROM g CROSS JOIN sales s WHERE s.product_id = CAST($1 AS INTEGER)\n"
                              "GROUP BY s.day ORDER BY s.day DESC LIMIT 30";
    char p[24], n[24];
    snprintf(p, sizeof(p), "%lld", (long long) product);
    snprintf(n, sizeof(n), "%lld", (long long) scale);
    const char *params[] = {p, n};
    json_t *list = json_array();
    int rc = list ? demo_db_query(db, tok, sql, 2, params, report_row, list) : -ENOMEM;
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return 0;
}
