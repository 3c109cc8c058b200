/* ct-demo: the seed articles' scenarios as a real HTTP API on ct.
 *
 *   ct-demo [--listen HOST:PORT] [--data-dir DIR] [--db URL] [--upstream URL] [--help] ...
 *
 * Environment: CT_DEMO_LISTEN, CT_DEMO_DATA_DIR, CT_DEMO_DB, CT_DEMO_UPSTREAM (the options win).
 * Logs go to stderr: the access log (one line per request, 499 when the client left) and the
 * scenarios' own lines. SIGINT or SIGTERM stops it gracefully: no new connections, requests in
 * flight get the drain period, then their tokens fire with CT_SHUTDOWN. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ct/file.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "ct/host.h"
#include "ct/jobs.h"
#include "db.h"
#include "demo.h"

static const char usage[] =
    "usage: ct-demo [--listen HOST:PORT] [--data-dir DIR] [--db URL] [--upstream URL]\n"
    "\n"
    "The seed scenarios of cooperative cancellation as an HTTP API on ct.\n"
    "\n"
    "  --listen HOST:PORT  address to listen on (default 127.0.0.1:8080; env CT_DEMO_LISTEN)\n"
    "  --data-dir DIR      where files/write puts its files (default ./ct-demo-data;\n"
    "                      env CT_DEMO_DATA_DIR); created if missing\n"
    "  --db URL            the layered endpoints' database: postgres://... for PostgreSQL,\n"
    "                      else a SQLite file (default DIR/ct-demo.db; env CT_DEMO_DB);\n"
    "                      the demo data is created on first run\n"
    "  --db-conns N        database connections the endpoints share, 1..64 (default 8);\n"
    "                      a request waits for a free one with its token\n"
    "  --upstream URL      where the outbound calls go (default: this server itself, which\n"
    "                      serves /upstream/...; env CT_DEMO_UPSTREAM)\n"
    "  --upstream-delay-ms N  how long /upstream/... takes to answer, 0..600000 (default 300)\n"
    "  --heartbeat-ms N    the periodic heartbeat worker's interval, 0..3600000 (default\n"
    "                      30000; 0: no heartbeat)\n"
    "  --drain-ms N        on SIGINT/SIGTERM, time requests get to finish before their\n"
    "                      tokens fire with CT_SHUTDOWN, 0..600000 (default 10000)\n"
    "  --help              this text\n"
    "\n"
    "Endpoints (see docs/demo.md):\n"
    "  GET  /healthz\n"
    "  GET  /metrics\n"
    "  GET  /api/Demo/reports/generate?rows=200&delayMs=25\n"
    "  POST /api/Demo/timeout/run?timeoutMs=2000\n"
    "  POST /api/Demo/linked/search?timeoutMs=1000\n"
    "  POST /api/Demo/parallel/scrape?n=5&delayMs=800[&failWorker=K|-1]\n"
    "  POST /api/Demo/files/write?sizeMb=25&chunkMs=200\n"
    "  GET  /products   /reports/sales?scale=300   /orders/{id}[?shippingDelayMs=N]\n"
    "  GET  /api/WeatherForecast[?days=7&ensembleRuns=2000]\n"
    "  GET  /api/WeatherForecast/with-timeout/{seconds}   /api/WeatherForecast/multiple-timeouts\n"
    "  GET  /weather-forecast   /weather-forecast-with-timeout\n"
    "  GET  /reports/{id}?timeoutMs=10000&scale=2000   /api/Data/fetch-data[?delayMs=N]\n"
    "  GET  /upstream/shipping/info/{id}  /upstream/reports/{id}/metadata  /upstream/data\n"
    "  POST /api/Demo/queue/enqueue?count=3[&stepMs=500]\n"
    "  GET  /api/Demo/queue/jobs/{id}    POST /api/Demo/queue/jobs/{id}/cancel\n"
    "  GET  /work?ms=5000&mode=io|cpu  (the abort-storm benchmark's endpoint)\n"
    "\n"
    "With CT_DEMO_TRACE=<file>, each request with ?traceId=N appends\n"
    "\"N fired_ns returned_ns result\" to the file when its handler returns.\n";

void demo_log(const char *fmt, ...)
{
    char line[600], ts[40];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(line, sizeof(line), "%s.%03dZ demo ", ts, (int) (tv.tv_usec / 1000));
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t) n - 1, fmt, ap);
    va_end(ap);
    if (n > (int) sizeof(line) - 2)
        n = (int) sizeof(line) - 2;
    line[n++] = '\n';
    if (write(2, line, (size_t) n) < 0) {
        /* nowhere else to say it */
    }
}

json_t *demo_now_json(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char s[48];
    size_t n = strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(s + n, sizeof(s) - n, ".%03d+00:00", (int) (tv.tv_usec / 1000));
    return json_string(s);
}

/* ---- answering a failed operation by who asked ---------------------------------------------- */

int demo_answer_failure(ct_http_req_t *req, const ct_token_t *tok, const ct_token_t *timeout,
                        const char *what, int rc)
{
    if (rc == -ENOENT)
        return ct_http_respond_error(req, 404, "not_found", what);
    /* An upstream that gave up at the deadline we sent it (CT-Timeout-Ms, rounded down) fails
     * the call a moment before our own timeout fires: that is our timeout, not its failure. */
    int64_t left = ct_token_deadline(tok) - ct_now_ms();
    if (rc != -ECANCELED && left <= 10 && ct_sleep_ms((left > 0 ? left : 0) + 1000, tok) < 0)
        rc = -ECANCELED; /* returns as soon as the timeout fires: the timer may run late */
    if (rc != -ECANCELED) {
        demo_log("%s failed: %s", what, ct_strerror(rc));
        return rc == -EREMOTEIO
                   ? ct_http_respond_error(req, 502, "bad_gateway", "an upstream service failed")
                   : rc;
    }
    const ct_token_t *client = ct_http_req_token(req);
    int reason = ct_token_reason(tok);
    if (timeout && ct_token_caused_by(tok, timeout)) {
        demo_log("%s: operation timed out", what);
        return ct_http_respond_error(req, 408, "timeout", "Request processing timed out");
    }
    if (reason == CT_CLIENT_ABORTED)
        demo_log("%s: client disconnected", what);
    else if (reason == CT_SHUTDOWN)
        demo_log("%s: host is shutting down", what);
    else if (reason == CT_TIMEOUT)
        demo_log("%s: timed out (%s)", what, ct_token_detail(tok));
    else
        demo_log("%s: canceled (%s)", what, ct_reason_name(reason));
    if (ct_token_canceled(client))
        return rc; /* the server answers by the request's reason: nothing when the client left */
    /* Canceled by a token the request does not know about (the host stopping): say so. */
    if (reason == CT_SHUTDOWN)
        return ct_http_respond_error(req, 503, "shutting_down", "the server is shutting down");
    return ct_http_respond_error(req, reason == CT_TIMEOUT ? 408 : 503, ct_reason_name(reason),
                                 ct_token_detail(tok));
}

/* ---- /healthz and /work --------------------------------------------------------------------- */

static int healthz(ct_http_req_t *req, void *arg)
{
    (void) arg;
    static const char ok[] = "{\"status\":\"ok\"}";
    return ct_http_respond(req, 200, "application/json", ok, sizeof(ok) - 1);
}

/* CT_DEMO_TRACE=<file>: every request with a `traceId=N` query parameter appends
 * "<N> <token fired ns> <returned ns> <result>" when its handler returns (ct_now_ns,
 * CLOCK_MONOTONIC, so a benchmark on the same machine can compare it with the time its client
 * closed the connection). One write per line, O_APPEND. A middleware, so it measures every
 * endpoint the same way, and costs nothing when the variable is not set. */
static int trace_fd = -1;

static int trace(ct_http_req_t *req, void *arg)
{
    (void) arg;
    const char *id = ct_http_req_query_param(req, "traceId");
    int rc = ct_http_next(req);
    if (id) {
        char line[128];
        int n = snprintf(line, sizeof(line), "%.20s %lld %lld %d\n", id,
                         (long long) ct_token_canceled_at_ns(ct_http_req_token(req)),
                         (long long) ct_now_ns(), rc);
        if (write(trace_fd, line, (size_t) n) < 0) {
            /* a trace that cannot be written is not worth failing the request for */
        }
    }
    return rc;
}

/* The abort-storm endpoint: `ms` of work, either waiting in ct calls (io) or burning CPU in
 * 10 ms steps that check the token between them (cpu). */
static int work(ct_http_req_t *req, void *arg)
{
    int64_t ms;
    const char *mode = ct_http_req_query_param(req, "mode");
    const ct_token_t *tok = ct_http_req_token(req);
    int rc;
    (void) arg;
    if ((rc = ct_http_req_query_int(req, "ms", 1000, 0, 600000, &ms)) < 0)
        return rc;
    if (mode && strcmp(mode, "cpu") == 0) {
        for (int64_t done = 0; done < ms; done += 10) {
            if ((rc = ct_token_check(tok)) < 0)
                return rc;
            struct timespec t0, t;
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
            do { /* 10 ms of CPU */
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
            } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 10000000L);
        }
    } else if (mode && strcmp(mode, "io") != 0) {
        return ct_http_respond_error(req, 400, "invalid_parameter", "mode must be io or cpu");
    } else if ((rc = ct_sleep_ms(ms, tok)) < 0) {
        return rc;
    }
    return ct_http_respond(req, 200, "text/plain", "done\n", 5);
}

int demo_base_routes(ct_http_server_t *srv, struct demo *d)
{
    int rc;
    /* A health check answers from memory: on the I/O thread, never queued behind slow work. */
    ct_http_route_options_t here = {.on_io_thread = true};
    if (trace_fd >= 0 && (rc = ct_http_use(srv, trace, NULL)) < 0)
        return rc;
    if ((rc = ct_http_route(srv, "GET", "/healthz", healthz, d, &here)) < 0 ||
        (rc = ct_http_route(srv, "GET", "/work", work, d, NULL)) < 0)
        return rc;
    return 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

static void host_log(void *arg, const char *line)
{
    (void) arg;
    demo_log("host: %s", line);
}

/* The HTTP server as a hosted service: started last, stopped first (it drains the requests in
 * flight while the workers are told to stop). */
struct http_service {
    struct demo *d;
    const char *upstream, *db_url;
};

static int http_start(void *arg, const ct_token_t *stopping)
{
    struct http_service *h = arg;
    struct demo *d = h->d;
    (void) stopping;
    int rc = ct_http_server_start(d->srv);
    if (rc < 0)
        return rc;
    struct sockaddr_storage ss;
    socklen_t sslen;
    char host[64] = "?";
    ct_http_server_addr(d->srv, &ss, &sslen);
    int port = 0;
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, host, sizeof(host));
        port = ntohs(((struct sockaddr_in *) &ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        host[0] = '[';
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, host + 1, sizeof(host) - 2);
        strcat(host, "]");
        port = ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
    }
    /* Handlers may run from here on: build the URL first, then publish it. */
    static char url[256];
    if (h->upstream && *h->upstream)
        snprintf(url, sizeof(url), "%s", h->upstream);
    else /* the upstream endpoints are ours: the outbound calls come back here */
        snprintf(url, sizeof(url), "http://%s:%d",
                 strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1"
                 : strcmp(host, "[::]") == 0  ? "[::1]"
                                              : host,
                 port);
    __atomic_store_n(&d->upstream, url, __ATOMIC_RELEASE);
    demo_log("listening on http://%s:%d (data in %s, database %s); Ctrl+C to stop", host, port,
             d->data_dir, demo_db_is_pg(d->db) ? "PostgreSQL" : h->db_url);
    return 0;
}

static int http_stop(void *arg, const ct_token_t *tok)
{
    struct http_service *h = arg;
    (void) tok; /* the drain period is the server's own bound, inside the host's */
    demo_log("%s: stopping (draining requests in flight)", ct_token_detail(h->d->stopping));
    return ct_http_server_stop(h->d->srv);
}

/* `text` as a whole number in min..max into *out; false (after saying so) otherwise. */
static bool num_arg(const char *flag, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "ct-demo: %s must be %ld..%ld\n", flag, min, max);
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    const char *listen = getenv("CT_DEMO_LISTEN"), *data_dir = getenv("CT_DEMO_DATA_DIR");
    const char *db_url = getenv("CT_DEMO_DB"), *upstream = getenv("CT_DEMO_UPSTREAM");
    long drain_ms = 10000, upstream_delay = 300, heartbeat_ms = 30000, db_conns = 8;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            data_dir = argv[++i];
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db_url = argv[++i];
        } else if (strcmp(argv[i], "--upstream") == 0 && i + 1 < argc) {
            upstream = argv[++i];
        } else if (strcmp(argv[i], "--upstream-delay-ms") == 0 && i + 1 < argc) {
            if (!num_arg(argv[i], argv[i + 1], 0, 600000, &upstream_delay))
                return 2;
            i++;
        } else if (strcmp(argv[i], "--heartbeat-ms") == 0 && i + 1 < argc) {
            if (!num_arg(argv[i], argv[i + 1], 0, 3600000, &heartbeat_ms))
                return 2;
            i++;
        } else if (strcmp(argv[i], "--drain-ms") == 0 && i + 1 < argc) {
            if (!num_arg(argv[i], argv[i + 1], 0, 600000, &drain_ms))
                return 2;
            i++;
        } else if (strcmp(argv[i], "--db-conns") == 0 && i + 1 < argc) {
            if (!num_arg(argv[i], argv[i + 1], 1, 64, &db_conns))
                return 2;
            i++;
        } else {
            fprintf(stderr, "ct-demo: unknown argument '%s'\n\n%s", argv[i], usage);
            return 2;
        }
    }
    if (!listen || !*listen)
        listen = "127.0.0.1:8080";
    if (!data_dir || !*data_dir)
        data_dir = "ct-demo-data";
    if (mkdir(data_dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "ct-demo: cannot create %s: %s\n", data_dir, strerror(errno));
        return 1;
    }
    const char *trace = getenv("CT_DEMO_TRACE");
    if (trace && *trace &&
        (trace_fd = open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "ct-demo: cannot open CT_DEMO_TRACE %s: %s\n", trace, strerror(errno));
        return 1;
    }
    /* Every connection is a file descriptor: use all the process may have. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    int swept = ct_file_sweep(data_dir, NULL); /* what a killed run may have left */
    if (swept > 0)
        demo_log("removed %d temporary file(s) a previous run left in %s", swept, data_dir);

    /* The host first, before any thread starts: it takes SIGINT and SIGTERM for the whole
     * process and turns them into its stopping token. */
    ct_host_t *host;
    ct_host_options_t ho = {.shutdown_timeout_ms = drain_ms + 20000, .log = host_log};
    int rc = ct_host_new(&host, &ho);
    if (rc < 0) {
        fprintf(stderr, "ct-demo: %s\n", ct_strerror(rc));
        return 1;
    }
    struct demo d = {.data_dir = data_dir,
                     .upstream_delay_ms = upstream_delay,
                     .heartbeat_ms = heartbeat_ms,
                     .stopping = ct_host_stopping(host)};
    char db_path[4096];
    if (!db_url || !*db_url) {
        snprintf(db_path, sizeof(db_path), "%s/ct-demo.db", data_dir);
        db_url = db_path;
    }
    if (upstream && strlen(upstream) > 200) {
        fprintf(stderr, "ct-demo: --upstream is longer than 200 bytes\n");
        return 2;
    }
    if (demo_db_open(&d.db, db_url, (int) db_conns) < 0 || demo_repo_migrate(d.db) < 0) {
        fprintf(stderr, "ct-demo: cannot use the database %s (see above)\n", db_url);
        return 1;
    }
    char jobs_path[4096];
    snprintf(jobs_path, sizeof(jobs_path), "%s/ct-demo-jobs.db", data_dir);
    ct_pool_options_t po = {.min_threads = 2, .max_threads = 128, .queue_max = 4096};
    rc = ct_pool_new(&d.work, &po);
    ct_http_options_t o = {.listen = listen, .drain_timeout_ms = drain_ms};
    if (rc == 0)
        rc = ct_http_server_new(&d.srv, &o);
    if (rc < 0) {
        fprintf(stderr, "ct-demo: %s\n", ct_strerror(rc));
        return 1;
    }
    struct http_service http = {&d, upstream, db_url};
    if ((rc = demo_base_routes(d.srv, &d)) < 0 || (rc = demo_seed000_routes(d.srv, &d)) < 0 ||
        (rc = demo_seed001_routes(d.srv, &d)) < 0 || (rc = demo_seed002_routes(d.srv, &d)) < 0 ||
        (rc = demo_seed003_routes(d.srv, &d)) < 0 || (rc = demo_upstream_routes(d.srv, &d)) < 0 ||
        (rc = demo_queue_routes(d.srv, &d)) < 0 ||
        /* Services start in this order and stop in reverse: the HTTP server stops first. */
        (rc = demo_queue_open(&d, jobs_path, demo_db_is_pg(d.db) ? db_url : NULL, host)) < 0 ||
        (rc = demo_heartbeat_add(&d, host)) < 0 ||
        (rc = ct_host_add(host, &(ct_host_service_t){"http", http_start, http_stop, &http})) < 0) {
        fprintf(stderr, "ct-demo: cannot set up: %s\n", ct_strerror(rc));
        return 1;
    }
    rc = ct_host_run(host);
    if (rc < 0) {
        fprintf(stderr, "ct-demo: cannot start on %s: %s\n", listen, ct_strerror(rc));
        return 1;
    }
    if (rc > 0) { /* services that did not stop in time: their threads still run; just leave */
        demo_log("stopped: %d service(s) did not stop within the shutdown timeout", rc);
        return 1;
    }
    ct_http_server_free(d.srv);
    ct_jobs_free(d.jobs);
    ct_pool_free(d.work, CT_POOL_CANCEL_QUEUED);
    demo_db_close(d.db);
    ct_host_free(host);
    ct_timers_stop();
    demo_log("stopped");
    return 0;
}
