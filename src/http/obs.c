/* Observability: one access-log line per request, warnings, counters and histograms, and
 * GET /metrics in the Prometheus text format.
 *
 * Counters are plain atomic adds on arrays sized when the server starts (one row of statuses
 * per route, plus one for requests that matched no route), so recording costs no lock. A log
 * line is formatted on the stack and written with one write(2), so lines from several threads
 * never interleave. A client that went away is logged as 499 at info level: cancellation is
 * normal control flow, not a server error. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/internal.h"
#include "ct/time.h"
#include "internal.h"

#define STATUS_MIN   100
#define STATUS_SLOTS 500 /* 100..599 */
#define NBUCKETS     16

static const double bucket_s[NBUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                          1,      2.5,     5,      10};

struct hist {
    uint64_t bucket[NBUCKETS + 1]; /* the last is +Inf */
    uint64_t count;
    int64_t sum_ns;
};

struct metrics {
    unsigned rows; /* routes + 1 (unrouted) */
    uint64_t (*by_status)[STATUS_SLOTS];
    uint64_t requests;
    uint64_t canceled[6]; /* by reason; user reasons in [0] */
    struct hist cancel_to_return, queue_wait;
};

static inline void add(uint64_t *c, uint64_t v)
{
    __atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

static inline uint64_t get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

int ct__http_metrics_new(ct_http_server_t *s)
{
    s->metrics = ct__calloc(1, sizeof(*s->metrics));
    return s->metrics ? 0 : -ENOMEM;
}

/* Called when the routes are final: one row per route and one for the unrouted. */
int ct__http_metrics_start(ct_http_server_t *s)
{
    struct metrics *m = s->metrics;
    m->rows = s->nroutes + 1;
    m->by_status = ct__calloc(m->rows, sizeof(*m->by_status));
    return m->by_status ? 0 : -ENOMEM;
}

void ct__http_metrics_free(ct_http_server_t *s)
{
    if (s->metrics)
        ct__free(s->metrics->by_status);
    ct__free(s->metrics);
}

static void hist_add(struct hist *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    double secs = (double) ns / 1e9;
    int b = 0;
    while (b < NBUCKETS && secs > bucket_s[b])
        b++;
    add(&h->bucket[b], 1);
    add(&h->count, 1);
    __atomic_add_fetch(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

/* ---- the log -------------------------------------------------------------------------------- */

static void write_line(int fd, const char *line, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* a log that cannot be written must not stop the server */
        line += n;
        len -= (size_t) n;
    }
}

/* UTC, to the millisecond; the part up to the second is formatted once a second per thread. */
static size_t timestamp(char *out, size_t cap)
{
    static _Thread_local char second[24];
    static _Thread_local time_t when = -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != when) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(second, sizeof(second), "%Y-%m-%dT%H:%M:%S", &tm);
        when = ts.tv_sec;
    }
    return (size_t) snprintf(out, cap, "%s.%03dZ", second, (int) (ts.tv_nsec / 1000000));
}

/* Copy `s` for a JSON string (or a text line: quotes and controls escaped the same way). */
static size_t escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\')
            out[n++] = '\\', out[n++] = (char) c;
        else if (c < 0x20 || c == 0x7f)
            n += (size_t) snprintf(out + n, cap - n, "\\u%04x", c);
        else
            out[n++] = (char) c;
    }
    out[n] = '\0';
    return n;
}

void ct__http_warn(ct_http_server_t *s, const char *fmt, ...)
{
    if (s->o.access_log == CT_HTTP_LOG_OFF)
        return;
    char msg[512], esc[700], line[900], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof(ts));
    int n;
    if (s->o.access_log == CT_HTTP_LOG_JSON) {
        escape(esc, sizeof(esc), msg);
        n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"warn\",\"msg\":\"%s\"}\n", ts,
                     esc);
    } else {
        n = snprintf(line, sizeof(line), "%s warn %s\n", ts, msg);
    }
    write_line(s->o.log_fd, line, (size_t) n < sizeof(line) ? (size_t) n : sizeof(line) - 1);
}

/* The status a request ended with: what was sent, or 499 if nothing was and the client left. */
static int outcome(const ct_http_req_t *req)
{
    if (req->status)
        return req->status;
    if (req->pending)
        return req->pending;
    return 499;
}

void ct__http_observe(ct_http_req_t *req)
{
    ct_http_server_t *s = req->srv;
    struct metrics *m = s->metrics;
    int status = outcome(req);
    unsigned row = req->route ? req->route->index : m->rows - 1;
    if (m->by_status && status >= STATUS_MIN && status < STATUS_MIN + STATUS_SLOTS)
        add(&m->by_status[row][status - STATUS_MIN], 1);
    int reason = req->src ? ct_token_reason(ct_source_token(req->src)) : CT_REASON_NONE;
    if (reason != CT_REASON_NONE)
        add(&m->canceled[reason <= CT_SIBLING_FAILED ? reason : 0], 1);
    int64_t fired = req->src ? ct_token_canceled_at_ns(ct_source_token(req->src)) : 0;
    if (req->t_start && req->src) {
        hist_add(&m->queue_wait, req->t_start - req->t_head);
        if (fired)
            hist_add(&m->cancel_to_return, req->t_end - fired);
    }
    /* Last, with release: whoever sees the count sees everything recorded above. */
    __atomic_add_fetch(&m->requests, 1, __ATOMIC_RELEASE);
    if (s->o.access_log == CT_HTTP_LOG_OFF)
        return;

    char ts[40], path[512], route[256], line[1200];
    timestamp(ts, sizeof(ts));
    escape(path, sizeof(path), req->path ? req->path : "-");
    escape(route, sizeof(route), req->route ? req->route->pattern : "-");
    int64_t us = req->t_head ? (req->t_end - req->t_head) / 1000 : 0; /* printed as ms */
    const char *level = status >= 500 ? "error" : "info";
    const char *why = reason ? ct_reason_name(reason) : "-";
    int n;
    if (s->o.access_log == CT_HTTP_LOG_JSON)
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
                     "\"status\":%d,\"duration_ms\":%" PRId64 ".%03d,\"reason\":\"%s\","
                     "\"route\":\"%s\",\"bytes\":%" PRIu64 "}\n",
                     ts, level, req->method ? req->method : "-", path, status, us / 1000,
                     (int) (us % 1000), why, route, req->bytes_out);
    else
        n = snprintf(line, sizeof(line), "%s %s %s %s %d %" PRId64 ".%dms reason=%s route=%s\n", ts,
                     level, req->method ? req->method : "-", path, status, us / 1000,
                     (int) (us % 1000 / 100), why, route);
    write_line(s->o.log_fd, line, (size_t) n < sizeof(line) ? (size_t) n : sizeof(line) - 1);
}

void ct__http_metrics_stats(ct_http_server_t *s, ct_http_stats_t *out)
{
    struct metrics *m = s->metrics;
    out->requests = __atomic_load_n(&m->requests, __ATOMIC_ACQUIRE);
    for (int i = 0; i < 6; i++)
        out->canceled[i] = get(&m->canceled[i]);
}

/* ---- /metrics ------------------------------------------------------------------------------- */

struct text {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = t->oom ? 0 : vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (t->oom)
            return;
        if ((size_t) n < t->cap - t->len) {
            t->len += (size_t) n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t) n;
        char *b = ct__realloc(t->buf, cap);
        if (!b) {
            t->oom = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

/* A label value: backslash, double quote and newline escaped. */
static const char *label(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"')
            out[n++] = '\\', out[n++] = *s;
        else if (*s == '\n')
            out[n++] = '\\', out[n++] = 'n';
        else
            out[n++] = *s;
    }
    out[n] = '\0';
    return out;
}

static void put_hist(struct text *t, const char *name, const char *help, const struct hist *h)
{
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b <= NBUCKETS; b++) {
        cum += get(&h->bucket[b]);
        if (b < NBUCKETS)
            put(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bucket_s[b], cum);
        else
            put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    put(t, "%s_sum %.9f\n%s_count %" PRIu64 "\n", name,
        (double) __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED) / 1e9, name, get(&h->count));
}

int ct__http_serve_metrics(ct_http_req_t *req, void *arg)
{
    ct_http_server_t *s = req->srv;
    struct metrics *m = s->metrics;
    struct text t = {ct__malloc(8192), 0, 8192, false};
    t.oom = !t.buf;
    (void) arg;
    char lab[300];
    put(&t, "# HELP ct_http_requests_total Requests, by route and status (499: the client left).\n"
            "# TYPE ct_http_requests_total counter\n");
    for (unsigned r = 0; r < m->rows; r++) {
        const char *route = r < s->nroutes ? s->routes[r]->pattern : "(unrouted)";
        for (int i = 0; i < STATUS_SLOTS; i++) {
            uint64_t v = get(&m->by_status[r][i]);
            if (v)
                put(&t, "ct_http_requests_total{route=\"%s\",status=\"%d\"} %" PRIu64 "\n",
                    label(lab, sizeof(lab), route), i + STATUS_MIN, v);
        }
    }
    put(&t, "# HELP ct_http_requests_canceled_total Requests whose token fired, by reason.\n"
            "# TYPE ct_http_requests_canceled_total counter\n");
    static const int reasons[] = {CT_CANCELED, CT_TIMEOUT, CT_CLIENT_ABORTED, CT_SHUTDOWN,
                                  CT_SIBLING_FAILED};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        put(&t, "ct_http_requests_canceled_total{reason=\"%s\"} %" PRIu64 "\n",
            ct_reason_name(reasons[i]), get(&m->canceled[reasons[i]]));
    put(&t, "ct_http_requests_canceled_total{reason=\"user\"} %" PRIu64 "\n", get(&m->canceled[0]));
    put_hist(&t, "ct_http_cancel_to_return_seconds",
             "From a request's token firing to its handler returning.", &m->cancel_to_return);
    put_hist(&t, "ct_http_queue_wait_seconds",
             "From a request's head being complete to its handler starting.", &m->queue_wait);
    ct_pool_stats_t ps;
    ct_pool_stats(s->pool, &ps);
    put(&t,
        "# HELP ct_http_requests_in_flight Requests queued or running.\n"
        "# TYPE ct_http_requests_in_flight gauge\nct_http_requests_in_flight %u\n"
        "# HELP ct_http_abandoned_before_start_total Requests whose client left while they were "
        "queued: never started.\n"
        "# TYPE ct_http_abandoned_before_start_total counter\n"
        "ct_http_abandoned_before_start_total %" PRIu64 "\n"
        "# HELP ct_http_cancel_ignored_total Handlers still running cancel_grace_ms after their "
        "token fired.\n"
        "# TYPE ct_http_cancel_ignored_total counter\nct_http_cancel_ignored_total %" PRIu64 "\n"
        "# HELP ct_http_connections_total Connections accepted.\n"
        "# TYPE ct_http_connections_total counter\nct_http_connections_total %" PRIu64 "\n"
        "# HELP ct_http_open_connections Connections open now.\n"
        "# TYPE ct_http_open_connections gauge\nct_http_open_connections %u\n"
        "# HELP ct_http_rejected_total Requests refused by the parser or the connection limit.\n"
        "# TYPE ct_http_rejected_total counter\nct_http_rejected_total %" PRIu64 "\n"
        "# HELP ct_pool_threads Handler threads.\n# TYPE ct_pool_threads gauge\n"
        "ct_pool_threads %u\n"
        "# HELP ct_pool_queued Requests waiting for a handler thread.\n"
        "# TYPE ct_pool_queued gauge\nct_pool_queued %u\n",
        __atomic_load_n(&s->in_flight, __ATOMIC_RELAXED), get(&s->abandoned),
        get(&s->cancel_ignored), get(&s->connections),
        __atomic_load_n(&s->open_connections, __ATOMIC_RELAXED), get(&s->rejected), ps.threads,
        ps.queued);
    int rc = t.oom ? ct_http_respond_error(req, 503, "overloaded", "out of memory")
                   : ct_http_respond(req, 200, "text/plain; version=0.0.4", t.buf, t.len);
    ct__free(t.buf);
    return rc;
}
