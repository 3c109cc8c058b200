/* ct-http on real loopback sockets: the request token fires when the client leaves (FIN or RST,
 * running or queued), on the route's timeout, on shutdown; the edge answers by reason; pipelined
 * requests are not aborts; bad input is answered 4xx and the server keeps serving. Handlers that
 * must be running when the test acts say so through a semaphore; nothing sleeps to synchronise. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/resource.h>
#include <string.h>

#include "http_util.h"

/* What the blocking handler saw. */
static struct probe {
    ct_sem_t entered, release, returned;
    int result, reason, calls; /* atomic */
} P;

static void probe_init(void)
{
    memset(&P, 0, sizeof(P));
    ct_sem_init(&P.entered, 0);
    ct_sem_init(&P.release, 0);
    ct_sem_init(&P.returned, 0);
}

static void wait_sem(ct_sem_t *s)
{
    assert_int_equal(0, ct_sem_wait(s, NULL, ct_deadline_after(10000 * ct_test_scale())));
}

/* Waits in a ct call until released (200) or its token fires (-ECANCELED). */
static int block(ct_http_req_t *req, void *arg)
{
    (void) arg;
    __atomic_add_fetch(&P.calls, 1, __ATOMIC_SEQ_CST);
    ct_sem_post(&P.entered);
    int rc = ct_sem_wait(&P.release, ct_http_req_token(req), -1);
    P.reason = ct_token_reason(ct_http_req_token(req));
    P.result = rc;
    ct_sem_post(&P.returned);
    if (rc < 0)
        return rc;
    return ct_http_respond(req, 200, "text/plain", "released\n", 9);
}

/* Ignores its token: waits for the release only. */
static int stubborn(ct_http_req_t *req, void *arg)
{
    (void) arg;
    ct_sem_post(&P.entered);
    ct_sem_wait(&P.release, NULL, -1);
    ct_sem_post(&P.returned);
    return ct_token_check(ct_http_req_token(req));
}

/* Answers, then lingers (as a handler that logs or cleans up after responding). */
static int respond_then_linger(ct_http_req_t *req, void *arg)
{
    (void) arg;
    int rc = ct_http_respond(req, 200, "text/plain", "ok\n", 3);
    ct_sem_post(&P.entered);
    ct_sem_wait(&P.release, NULL, -1);
    P.reason = ct_token_reason(ct_http_req_token(req));
    ct_sem_post(&P.returned);
    return rc;
}

static int hello(ct_http_req_t *req, void *arg)
{
    (void) arg;
    return ct_http_respond(req, 200, "text/plain", "hello\n", 6);
}

static int echo(ct_http_req_t *req, void *arg)
{
    size_t len;
    const void *body = ct_http_req_body(req, &len);
    (void) arg;
    return ct_http_respond(req, 200, "application/octet-stream", body, len);
}

static int item(ct_http_req_t *req, void *arg)
{
    int64_t id, rows;
    int rc;
    (void) arg;
    if ((rc = ct_http_req_param_int(req, "id", 1, 1000, &id)) < 0 ||
        (rc = ct_http_req_query_int(req, "rows", 10, 1, 500, &rows)) < 0)
        return rc;
    char b[64];
    int n = snprintf(b, sizeof(b), "id=%lld rows=%lld\n", (long long) id, (long long) rows);
    return ct_http_respond(req, 200, "text/plain", b, (size_t) n);
}

static int fail_io(ct_http_req_t *req, void *arg)
{
    (void) req;
    (void) arg;
    return -EIO;
}

static int say_nothing(ct_http_req_t *req, void *arg)
{
    (void) req;
    (void) arg;
    return 0;
}

static int stream(ct_http_req_t *req, void *arg)
{
    (void) arg;
    int rc = ct_http_stream_begin(req, 200, "text/plain");
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = ct_http_stream_write(req, "part\n", 5);
    return rc;
}

static int custom_timeout_body(ct_http_req_t *req, void *arg)
{
    (void) arg;
    return ct_http_respond(req, 504, "text/plain", "too slow\n", 9);
}

/* An on_io_thread answer bigger than any socket buffer: byte i is (i * 7) & 0xff. */
#define BIG_LEN (16u << 20)
static unsigned char *big_body;

static int big(ct_http_req_t *req, void *arg)
{
    (void) arg;
    return ct_http_respond(req, 200, "application/octet-stream", big_body, BIG_LEN);
}

static void routes(ct_http_server_t *s, void *arg)
{
    (void) arg;
    if (!big_body) {
        big_body = malloc(BIG_LEN);
        for (size_t i = 0; i < BIG_LEN; i++)
            big_body[i] = (unsigned char) (i * 7);
    }
    ct_http_route_options_t here = {.on_io_thread = true};
    assert_int_equal(0, ct_http_route(s, "GET", "/here", hello, NULL, &here));
    assert_int_equal(0, ct_http_route(s, "GET", "/big", big, NULL, &here));
    assert_int_equal(0, ct_http_route(s, "GET", "/hello", hello, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/block", block, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/stubborn", stubborn, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "POST", "/echo", echo, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/items/{id}", item, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/fail", fail_io, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/nothing", say_nothing, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/stream", stream, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/linger", respond_then_linger, NULL, NULL));
    ct_http_route_options_t t1 = {.timeout = {.ms = 100}};
    assert_int_equal(0, ct_http_route(s, "GET", "/timeout", block, NULL, &t1));
    ct_http_route_options_t t2 = {.timeout = {.ms = 100, .status = 503}};
    assert_int_equal(0, ct_http_route(s, "GET", "/timeout503", block, NULL, &t2));
    ct_http_route_options_t t3 = {.timeout = {.ms = 100, .on_timeout = custom_timeout_body}};
    assert_int_equal(0, ct_http_route(s, "GET", "/timeoutcustom", block, NULL, &t3));
}

static struct tsrv *start(ct_http_options_t o)
{
    probe_init();
    struct tsrv *t = calloc(1, sizeof(*t));
    tsrv_start(t, o, routes, NULL);
    return t;
}

static void stop(struct tsrv *t)
{
    tsrv_stop(t);
    free(t);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: test\r\n\r\n"

/* ---- basics -------------------------------------------------------------------------------- */

static void test_requests_on_one_keep_alive_connection(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    for (int i = 0; i < 3; i++) {
        tsend(c->fd, GET("/hello"));
        struct tresp r = tread(c, 5000);
        assert_int_equal(200, r.status);
        assert_string_equal("hello\n", r.body);
        assert_false(r.closed);
    }
    close(c->fd);
    free(c);
    ct_http_stats_t st;
    ct_http_server_stats(t->s, &st);
    assert_int_equal(1, st.connections);
    stop(t);
}

static void test_pipelined_requests_are_answered_in_order_not_taken_for_aborts(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    /* The second and third requests arrive while the first one's handler runs. */
    tsend(c->fd, GET("/block") GET("/items/7?rows=3") GET("/hello"));
    wait_sem(&P.entered);
    ct_sem_post(&P.release);
    struct tresp r1 = tread(c, 5000), r2 = tread(c, 5000), r3 = tread(c, 5000);
    assert_int_equal(200, r1.status);
    assert_string_equal("released\n", r1.body);
    assert_int_equal(0, P.result);
    assert_int_equal(CT_REASON_NONE, P.reason);
    assert_int_equal(200, r2.status);
    assert_string_equal("id=7 rows=3\n", r2.body);
    assert_int_equal(200, r3.status);
    close(c->fd);
    free(c);
    stop(t);
}

static void test_request_body_is_read_by_content_length_and_chunked(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tresp r =
        tget(t->port, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde", 5000);
    assert_int_equal(200, r.status);
    assert_int_equal(5, r.body_len);
    assert_memory_equal("abcde", r.body, 5);
    r = tget(t->port,
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n",
             5000);
    assert_int_equal(200, r.status);
    assert_int_equal(7, r.body_len);
    assert_memory_equal("abcdefg", r.body, 7);
    stop(t);
}

static void test_routing_is_case_insensitive_and_answers_404_and_405(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    assert_int_equal(200, tget(t->port, GET("/HELLO"), 5000).status);
    assert_int_equal(200, tget(t->port, GET("/Items/12/"), 5000).status);
    struct tresp r = tget(t->port, GET("/nowhere"), 5000);
    assert_int_equal(404, r.status);
    assert_non_null(strstr(r.body, "\"error\":\"not_found\""));
    assert_int_equal(405, tget(t->port, "DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n", 5000).status);
    stop(t);
}

static void test_head_is_answered_like_get_without_a_body(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n" GET("/hello"));
    /* The head says 6 bytes, none follow: the next response must parse right after it. */
    char *end = NULL;
    int64_t deadline = ct_deadline_after(5000);
    while (!(end = strstr(c->pending, "\r\n\r\n")) && tfill(c, deadline))
        c->pending[c->npending] = '\0';
    assert_non_null(end);
    assert_non_null(strstr(c->pending, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(c->pending, "Content-Length: 6"));
    tconsume(c, (size_t) (end - c->pending) + 4);
    struct tresp r = tread(c, 5000);
    assert_int_equal(200, r.status);
    assert_string_equal("hello\n", r.body);
    close(c->fd);
    free(c);
    /* The server's own answers leave the body out too: a GET follows on the same connection. */
    c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, "HEAD /nowhere HTTP/1.1\r\nHost: t\r\n\r\n" GET("/hello"));
    deadline = ct_deadline_after(5000);
    while (!(end = strstr(c->pending, "\r\n\r\n")) && tfill(c, deadline))
        c->pending[c->npending] = '\0';
    assert_non_null(strstr(c->pending, "HTTP/1.1 404"));
    tconsume(c, (size_t) (end - c->pending) + 4);
    r = tread(c, 5000);
    assert_int_equal(200, r.status);
    close(c->fd);
    free(c);
    stop(t);
}

static void test_absolute_form_and_asterisk_targets_are_served(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    assert_int_equal(200,
                     tget(t->port, "GET http://t/hello HTTP/1.1\r\nHost: t\r\n\r\n", 5000).status);
    assert_int_equal(
        200,
        tget(t->port, "GET http://t:80/items/3?rows=2 HTTP/1.1\r\nHost: t\r\n\r\n", 5000).status);
    /* No path at all: it is "/" (there is no route for it), and the query still counts. */
    assert_int_equal(404,
                     tget(t->port, "GET http://t?a=1 HTTP/1.1\r\nHost: t\r\n\r\n", 5000).status);
    assert_int_equal(
        404, tget(t->port, "GET http://t:1234?a=1 HTTP/1.1\r\nHost: t\r\n\r\n", 5000).status);
    assert_int_equal(404, tget(t->port, "GET http://t HTTP/1.1\r\nHost: t\r\n\r\n", 5000).status);
    assert_int_equal(404, tget(t->port, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 5000).status);
    assert_int_equal(200, tget(t->port, GET("/hello"), 5000).status); /* still serving */
    stop(t);
}

static void test_parameters_out_of_bounds_get_400_naming_them(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tresp r = tget(t->port, GET("/items/5000"), 5000);
    assert_int_equal(400, r.status);
    assert_non_null(strstr(r.body, "\"parameter\":\"id\""));
    r = tget(t->port, GET("/items/5?rows=abc"), 5000);
    assert_int_equal(400, r.status);
    assert_non_null(strstr(r.body, "\"parameter\":\"rows\""));
    assert_non_null(strstr(r.body, "from 1 to 500"));
    assert_int_equal(200, tget(t->port, GET("/items/5?rows=500"), 5000).status);
    assert_int_equal(400, tget(t->port, GET("/items/5?rows=501"), 5000).status);
    stop(t);
}

static void test_edge_answers_500_for_errors_and_204_for_silence(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tresp r = tget(t->port, GET("/fail"), 5000);
    assert_int_equal(500, r.status);
    assert_non_null(strstr(r.body, "Input/output error"));
    assert_int_equal(204, tget(t->port, GET("/nothing"), 5000).status);
    stop(t);
}

static void test_streamed_response_is_chunked(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tresp r = tget(t->port, GET("/stream"), 5000);
    assert_int_equal(200, r.status);
    assert_string_equal("part\npart\npart\n", r.body);
    stop(t);
}

/* ---- the client leaves --------------------------------------------------------------------- */

static void abort_running(bool rst)
{
    struct tsrv *t = start((ct_http_options_t){0});
    int fd = tconnect(t->port);
    tsend(fd, GET("/block"));
    wait_sem(&P.entered);
    int64_t t0 = ct_now_ms();
    if (rst)
        treset(fd);
    else
        close(fd);
    wait_sem(&P.returned);
    printf("client %s -> handler returned after %lld ms\n", rst ? "RST" : "FIN",
           (long long) (ct_now_ms() - t0));
    assert_int_equal(-ECANCELED, P.result);
    assert_int_equal(CT_CLIENT_ABORTED, P.reason);
    assert_true(CT_WAIT_FOR(tsrv_logged(t, " 499 "), 5000));
    assert_true(tsrv_logged(t, "info GET /block 499"));
    assert_true(tsrv_logged(t, "reason=client_aborted"));
    ct_http_stats_t st;
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 0), 5000));
    assert_int_equal(1, st.canceled[CT_CLIENT_ABORTED]);
    assert_int_equal(0, st.cancel_ignored);
    stop(t);
}

static void test_client_fin_cancels_the_running_handler(void **state)
{
    abort_running(false);
}

static void test_client_rst_cancels_the_running_handler(void **state)
{
    abort_running(true);
}

static void test_closing_after_a_complete_response_is_not_an_abort(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, GET("/linger"));
    assert_int_equal(200, tread(c, 5000).status);
    wait_sem(&P.entered);
    close(c->fd); /* the client got everything and goes */
    ct_http_stats_t st;
    assert_false(
        CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.canceled[CT_CLIENT_ABORTED]), 100));
    ct_sem_post(&P.release);
    wait_sem(&P.returned);
    assert_int_equal(CT_REASON_NONE, P.reason);
    assert_true(CT_WAIT_FOR(tsrv_logged(t, "GET /linger 200"), 5000));
    assert_true(tsrv_logged(t, "reason=- route=/linger"));
    free(c);
    stop(t);
}

static void test_request_abandoned_while_queued_never_starts(void **state)
{
    ct_pool_t *pool;
    ct_pool_options_t po = {.min_threads = 1, .max_threads = 1, .queue_max = 16};
    assert_int_equal(0, ct_pool_new(&pool, &po));
    struct tsrv *t = start((ct_http_options_t){.pool = pool});
    int busy = tconnect(t->port);
    tsend(busy, GET("/block")); /* holds the only thread */
    wait_sem(&P.entered);
    int queued = tconnect(t->port);
    tsend(queued, GET("/block"));
    ct_pool_stats_t ps;
    assert_true(CT_WAIT_FOR((ct_pool_stats(pool, &ps), ps.queued == 1), 5000));
    close(queued);
    ct_http_stats_t st;
    assert_true(
        CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.abandoned_before_start == 1), 5000));
    ct_sem_post(&P.release);
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = busy;
    assert_int_equal(200, tread(c, 5000).status);
    close(busy);
    free(c);
    assert_int_equal(1, __atomic_load_n(&P.calls, __ATOMIC_SEQ_CST)); /* never started */
    assert_true(CT_WAIT_FOR(tsrv_logged(t, " 499 "), 5000));
    stop(t);
    ct_pool_free(pool, CT_POOL_DRAIN);
}

static void test_handler_ignoring_its_token_is_reported(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.cancel_grace_ms = 50});
    int fd = tconnect(t->port);
    tsend(fd, GET("/stubborn"));
    wait_sem(&P.entered);
    close(fd);
    assert_true(CT_WAIT_FOR(tsrv_logged(t, "handler still running"), 5000));
    assert_true(tsrv_logged(t, "route /stubborn"));
    ct_http_stats_t st;
    ct_http_server_stats(t->s, &st);
    assert_int_equal(1, st.cancel_ignored);
    ct_sem_post(&P.release);
    wait_sem(&P.returned);
    stop(t);
}

/* ---- timeouts ------------------------------------------------------------------------------- */

static void test_route_timeout_answers_the_policy_status(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    struct tresp r = tget(t->port, GET("/timeout"), 5000);
    assert_int_equal(408, r.status);
    assert_non_null(strstr(r.body, "\"error\":\"timeout\""));
    assert_int_equal(CT_TIMEOUT, P.reason);
    r = tget(t->port, GET("/timeout503"), 5000);
    assert_int_equal(503, r.status);
    r = tget(t->port, GET("/timeoutcustom"), 5000);
    assert_int_equal(504, r.status);
    assert_string_equal("too slow\n", r.body);
    assert_true(CT_WAIT_FOR(tsrv_logged(t, "reason=timeout"), 5000));
    stop(t);
}

static void test_server_default_timeout_applies_to_routes_without_one(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.timeout = {.ms = 100, .status = 504}});
    assert_int_equal(504, tget(t->port, GET("/block"), 5000).status);
    stop(t);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void test_bad_requests_are_answered_4xx_and_the_server_keeps_serving(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.max_body = 100, .max_header_bytes = 1024});
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET /hello HTTP/1.1\nHost: t\n\n", 400},                  /* bare LF */
        {"GET /hello HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", 400}, /* obs-fold */
        {"GET /hello HTTP/1.1\r\n\r\n", 400},                       /* no Host */
        {"GET /hello HTTP/2.0\r\nHost: t\r\n\r\n", 505},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n", 413},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
         "\r\n0\r\n\r\n",
         400}, /* smuggling */
        {"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
         400},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tresp r = tget(t->port, cases[i].req, 5000);
        if (r.status != cases[i].status)
            fail_msg("case %zu: got %d, want %d", i, r.status, cases[i].status);
        assert_true(r.closed);
    }
    char big[2048];
    snprintf(big, sizeof(big), "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: %01500d\r\n\r\n", 0);
    assert_int_equal(431, tget(t->port, big, 5000).status);
    assert_int_equal(200, tget(t->port, GET("/hello"), 5000).status);
    ct_http_stats_t st;
    ct_http_server_stats(t->s, &st);
    assert_int_equal(9, st.rejected);
    assert_true(CT_WAIT_FOR(tsrv_logged(t, "info - - 431"), 5000)); /* logged, not an error */
    stop(t);
}

static void test_slow_loris_gets_408_and_is_closed(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.header_timeout_ms = 150});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: "); /* and nothing more */
    struct tresp r = tread(c, 5000);
    assert_int_equal(408, r.status);
    assert_true(tserver_closes(c->fd, 5000));
    close(c->fd);
    free(c);
    stop(t);
}

static void test_idle_keep_alive_connection_is_closed(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.idle_timeout_ms = 100});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, GET("/hello"));
    assert_int_equal(200, tread(c, 5000).status);
    assert_true(tserver_closes(c->fd, 5000));
    close(c->fd);
    free(c);
    stop(t);
}

static void test_connections_beyond_the_limit_are_refused(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.max_connections = 2});
    int a = tconnect(t->port), b = tconnect(t->port);
    ct_http_stats_t st;
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.open_connections == 2), 5000));
    struct tconn *cc = calloc(1, sizeof(*cc));
    cc->fd = tconnect(t->port); /* told why, then closed */
    struct tresp r = tread(cc, 5000);
    assert_int_equal(503, r.status);
    assert_true(r.closed);
    assert_non_null(strstr(r.body, "\"too many connections\""));
    assert_true(tserver_closes(cc->fd, 5000));
    tsend(a, GET("/hello"));
    struct tconn *ca = calloc(1, sizeof(*ca));
    ca->fd = a;
    assert_int_equal(200, tread(ca, 5000).status);
    ct_http_server_stats(t->s, &st);
    assert_int_equal(1, st.rejected);
    close(a);
    close(b);
    close(cc->fd);
    free(ca);
    free(cc);
    stop(t);
}

/* Out of file descriptors, a pending connection is refused at once (not left in the backlog
 * with the I/O thread spinning on it), and the server serves again once descriptors are back. */
static void test_out_of_descriptors_refuses_then_recovers(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1});
    /* Waiting on a descriptor takes one per thread, on first use: take it now. */
    int p[2];
    assert_int_equal(0, pipe(p));
    assert_int_equal(-ETIMEDOUT, ct_fd_wait(p[0], POLLIN, NULL, ct_deadline_after(1)));
    close(p[0]);
    close(p[1]);
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(probe >= 0);
    close(probe);
    low = old;
    low.rlim_cur = (rlim_t) probe + 64; /* what is open now, and a little room */
    assert_int_equal(0, setrlimit(RLIMIT_NOFILE, &low));
    int fill[128], nfill = 0;
    while (nfill < 128 && (fill[nfill] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nfill++;
    assert_int_equal(EMFILE, errno); /* the process is out of descriptors */
    close(fill[--nfill]);            /* room for the client's socket only */
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    struct tresp r = tread(c, 5000);
    assert_int_equal(503, r.status);
    close(c->fd);
    while (nfill > 0)
        close(fill[--nfill]);
    assert_int_equal(0, setrlimit(RLIMIT_NOFILE, &old));
    r = tget(t->port, GET("/hello"), 5000);
    assert_int_equal(200, r.status);
    ct_http_stats_t st;
    ct_http_server_stats(t->s, &st);
    assert_true(st.rejected >= 1);
    free(c);
    stop(t);
}

/* ---- on_io_thread routes ------------------------------------------------------------------- */

static void test_io_thread_route_answers_many_pipelined_requests_in_order(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    /* More than one read's worth, mixed with pool routes: answered one after the other. */
    enum { N = 600 };
    static char burst[N * 64];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t) snprintf(burst + len, sizeof(burst) - len, "%s",
                                 i % 100 == 99 ? GET("/items/5") : GET("/here"));
    assert_int_equal((ssize_t) len, ct_write(c->fd, burst, len, NULL, -1));
    for (int i = 0; i < N; i++) {
        struct tresp r = tread(c, 5000);
        assert_int_equal(200, r.status);
        assert_string_equal(i % 100 == 99 ? "id=5 rows=10\n" : "hello\n", r.body);
    }
    ct_http_stats_t st; /* counted once answered: the last one may still be counting */
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.requests == N), 5000));
    close(c->fd);
    free(c);
    stop(t);
}

/* Read a /big answer on `fd` and check every byte. */
static void read_big(int fd)
{
    static char head[4096];
    size_t hlen = 0;
    int64_t deadline = ct_deadline_after(20000 * ct_test_scale());
    char *end = NULL;
    while (!end) {
        ssize_t n = ct_read(fd, head + hlen, 1, NULL, deadline); /* byte by byte: head only */
        assert_int_equal(1, n);
        hlen++;
        head[hlen] = '\0';
        end = hlen >= 4 ? strstr(head, "\r\n\r\n") : NULL;
    }
    assert_int_equal(200, atoi(head + 9));
    assert_non_null(strcasestr(head, "Content-Length: 16777216"));
    static unsigned char chunk[1 << 16];
    size_t got = 0;
    while (got < BIG_LEN) {
        size_t want = BIG_LEN - got < sizeof(chunk) ? BIG_LEN - got : sizeof(chunk);
        ssize_t n = ct_read(fd, chunk, want, NULL, deadline);
        assert_true(n > 0);
        for (ssize_t i = 0; i < n; i++)
            if (chunk[i] != (unsigned char) ((got + (size_t) i) * 7))
                fail_msg("byte %zu is wrong", got + (size_t) i);
        got += (size_t) n;
    }
}

/* A client slow to read a big answer holds only its own connection: the I/O thread goes on
 * serving others, then finishes the answer, and the connection is kept alive after it. */
static void test_io_thread_route_big_answer_blocks_nobody(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1});
    int a = tconnect(t->port);
    tsend(a, GET("/big"));
    ct_http_stats_t st;
    /* Its answer is not all written until it reads: it stays in flight. */
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 1), 5000));
    for (int i = 0; i < 3; i++) {
        struct tresp r = tget(t->port, GET("/here"), 5000);
        assert_int_equal(200, r.status);
    }
    /* Each answer is sent before its request is counted out: wait for the count to settle. */
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 1), 5000));
    assert_true(st.open_connections >= 1);
    read_big(a);
    struct tconn *ca = calloc(1, sizeof(*ca));
    ca->fd = a;
    tsend(a, GET("/here"));
    struct tresp r = tread(ca, 5000);
    assert_int_equal(200, r.status);
    assert_false(r.closed);
    close(a);
    free(ca);
    stop(t);
}

/* A client that never reads its answer is closed after write_timeout_ms. */
static void test_io_thread_route_gives_up_on_a_client_that_does_not_read(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1, .write_timeout_ms = 200});
    int a = tconnect(t->port);
    tsend(a, GET("/big"));
    ct_http_stats_t st;
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 1), 5000));
    int64_t t0 = ct_now_ms();
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.open_connections == 0), 10000));
    assert_true(ct_now_ms() - t0 >= 150); /* given its write timeout first, not closed at once */
    assert_int_equal(0, st.in_flight);
    assert_true(tserver_closes(a, 5000));
    assert_int_equal(200, tget(t->port, GET("/here"), 5000).status);
    close(a);
    stop(t);
}

/* ---- shutdown ------------------------------------------------------------------------------- */

static void *stop_thread(void *arg)
{
    return (void *) (intptr_t) ct_http_server_stop(arg);
}

static void test_shutdown_drains_then_answers_503(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.drain_timeout_ms = 100});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, GET("/block"));
    wait_sem(&P.entered);
    assert_false(ct_token_canceled(ct_http_server_stopping(t->s)));
    ct_test_thread_t *th = ct_test_thread_start(stop_thread, t->s);
    assert_true(CT_WAIT_FOR(ct_token_canceled(ct_http_server_stopping(t->s)), 5000));
    struct tresp r = tread(c, 5000);
    assert_int_equal(503, r.status);
    assert_true(r.closed);
    assert_int_equal(CT_SHUTDOWN, P.reason);
    assert_int_equal(0, (int) (intptr_t) ct_test_thread_join(th));
    /* Stopped: nobody accepts any more. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) t->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(-1, connect(fd, (struct sockaddr *) &a, sizeof(a)));
    close(fd);
    close(c->fd);
    free(c);
    stop(t);
}

static void test_shutdown_lets_a_request_finish_within_the_drain(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.drain_timeout_ms = 10000});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, GET("/block"));
    wait_sem(&P.entered);
    ct_test_thread_t *th = ct_test_thread_start(stop_thread, t->s);
    assert_true(CT_WAIT_FOR(ct_token_canceled(ct_http_server_stopping(t->s)), 5000));
    ct_sem_post(&P.release); /* finishes inside the drain period */
    struct tresp r = tread(c, 5000);
    assert_int_equal(200, r.status);
    assert_true(r.closed); /* no keep-alive during a shutdown */
    assert_int_equal(0, (int) (intptr_t) ct_test_thread_join(th));
    close(c->fd);
    free(c);
    stop(t);
}

/* ---- middleware and metrics ----------------------------------------------------------------- */

static struct {
    int fired_reason, status_after, calls; /* atomic */
    ct_sem_t saw;
} M;

static void mw_saw_cancel(void *arg, const ct_token_t *tok)
{
    (void) arg;
    M.fired_reason = ct_token_reason(tok);
    ct_sem_post(&M.saw);
}

/* Waits for its token, then for the middleware's callback to have seen it too: callbacks run
 * newest first, so the handler's own wait wakes before the middleware hears of it. */
static int block_until_seen(ct_http_req_t *req, void *arg)
{
    (void) arg;
    ct_sem_post(&P.entered);
    int rc = ct_sem_wait(&P.release, ct_http_req_token(req), -1);
    ct_sem_wait(&M.saw, NULL, ct_deadline_after(10000));
    ct_sem_post(&P.returned);
    return rc;
}

/* The seeds' CancellationAwareMiddleware: watch the token, run the rest, see the outcome. */
static int watching_mw(ct_http_req_t *req, void *arg)
{
    (void) arg;
    ct_reg_t reg;
    ct_token_register(ct_http_req_token(req), &reg, mw_saw_cancel, NULL);
    int rc = ct_http_next(req);
    ct_token_unregister(&reg);
    M.status_after = ct_http_req_status(req);
    __atomic_add_fetch(&M.calls, 1, __ATOMIC_SEQ_CST);
    return rc;
}

static void mw_routes(ct_http_server_t *s, void *arg)
{
    routes(s, arg);
    assert_int_equal(0, ct_http_route(s, "GET", "/seen", block_until_seen, NULL, NULL));
    assert_int_equal(0, ct_http_use(s, watching_mw, NULL));
}

static void test_middleware_sees_the_token_fire_and_the_outcome(void **state)
{
    probe_init();
    memset(&M, 0, sizeof(M));
    ct_sem_init(&M.saw, 0);
    struct tsrv *t = calloc(1, sizeof(*t));
    tsrv_start(t, (ct_http_options_t){0}, mw_routes, NULL);
    assert_int_equal(200, tget(t->port, GET("/hello"), 5000).status);
    assert_true(CT_WAIT_FOR(__atomic_load_n(&M.calls, __ATOMIC_SEQ_CST) == 1, 5000));
    assert_int_equal(200, M.status_after);
    int fd = tconnect(t->port);
    tsend(fd, GET("/seen"));
    wait_sem(&P.entered);
    close(fd);
    wait_sem(&P.returned);
    assert_true(CT_WAIT_FOR(__atomic_load_n(&M.calls, __ATOMIC_SEQ_CST) == 2, 5000));
    assert_int_equal(CT_CLIENT_ABORTED, M.fired_reason);
    assert_int_equal(0, M.status_after); /* nothing was sent: the client had left */
    stop(t);
}

static void test_metrics_count_requests_by_route_status_and_reason(void **state)
{
    struct tsrv *t = start((ct_http_options_t){0});
    for (int i = 0; i < 3; i++)
        assert_int_equal(200, tget(t->port, GET("/hello"), 5000).status);
    assert_int_equal(408, tget(t->port, GET("/timeout"), 5000).status);
    /* A response can arrive before its request is recorded: wait until all four are. */
    ct_http_stats_t st;
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.requests == 4), 5000));
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 0), 5000));
    struct tresp r = tget(t->port, GET("/metrics"), 5000);
    assert_int_equal(200, r.status);
    assert_non_null(strstr(r.body, "ct_http_requests_total{route=\"/hello\",status=\"200\"} 3\n"));
    assert_non_null(
        strstr(r.body, "ct_http_requests_total{route=\"/timeout\",status=\"408\"} 1\n"));
    assert_non_null(strstr(r.body, "ct_http_requests_canceled_total{reason=\"timeout\"} 1\n"));
    /* Recorded for a handler that ran; on a loaded machine the 100 ms may pass in the queue. */
    char want[64];
    snprintf(want, sizeof(want), "ct_http_cancel_to_return_seconds_count %d\n",
             __atomic_load_n(&P.calls, __ATOMIC_SEQ_CST));
    assert_non_null(strstr(r.body, want));
    assert_non_null(strstr(r.body, "ct_http_requests_in_flight 1\n")); /* this one */
    assert_non_null(strstr(r.body, "ct_http_abandoned_before_start_total 0\n"));
    assert_non_null(strstr(r.body, "ct_http_cancel_ignored_total 0\n"));
    assert_non_null(strstr(r.body, "ct_http_queue_wait_seconds_bucket{le=\"+Inf\"}"));
    stop(t);
}

static void test_access_log_can_be_json_lines(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.access_log = CT_HTTP_LOG_JSON});
    assert_int_equal(200, tget(t->port, GET("/hello"), 5000).status);
    assert_true(CT_WAIT_FOR(tsrv_logged(t, "\"status\":200"), 5000));
    assert_true(tsrv_logged(t, "{\"ts\":\""));
    assert_true(tsrv_logged(t, "\"level\":\"info\",\"method\":\"GET\",\"path\":\"/hello\""));
    stop(t);
}

static void test_options_out_of_bounds_are_rejected(void **state)
{
    ct_http_server_t *s;
    ct_http_options_t bad[] = {
        {.listen = "nonsense"},
        {.listen = "127.0.0.1:99999"},
        {.io_threads = 65},
        {.max_headers = 129},
        {.max_body = (1ull << 30) + 1},
        {.header_timeout_ms = -5},
        {.timeout = {.status = 200}},
        {.access_log = 7},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ct_http_server_new(&s, &bad[i]) != -EINVAL)
            fail_msg("options case %zu accepted", i);
    assert_int_equal(0, ct_http_server_new(&s, NULL));
    assert_int_equal(-EINVAL, ct_http_route(s, "GET", "no-slash", hello, NULL, NULL));
    assert_int_equal(-EINVAL, ct_http_route(s, "GET", "/a//b", hello, NULL, NULL));
    assert_int_equal(-EINVAL, ct_http_route(s, "GE T", "/a", hello, NULL, NULL));
    assert_int_equal(-EINVAL, ct_http_route(s, "GET", "/a/{b-c}", hello, NULL, NULL));
    assert_int_equal(0, ct_http_route(s, "GET", "/a/{id}", hello, NULL, NULL));
    assert_int_equal(-EINVAL, ct_http_route(s, "get", "/A/{other}", hello, NULL, NULL));
    ct_http_server_free(s);
}

CT_TEST_MAIN(cmocka_unit_test(test_requests_on_one_keep_alive_connection),
             cmocka_unit_test(test_pipelined_requests_are_answered_in_order_not_taken_for_aborts),
             cmocka_unit_test(test_request_body_is_read_by_content_length_and_chunked),
             cmocka_unit_test(test_routing_is_case_insensitive_and_answers_404_and_405),
             cmocka_unit_test(test_head_is_answered_like_get_without_a_body),
             cmocka_unit_test(test_absolute_form_and_asterisk_targets_are_served),
             cmocka_unit_test(test_parameters_out_of_bounds_get_400_naming_them),
             cmocka_unit_test(test_edge_answers_500_for_errors_and_204_for_silence),
             cmocka_unit_test(test_streamed_response_is_chunked),
             cmocka_unit_test(test_client_fin_cancels_the_running_handler),
             cmocka_unit_test(test_client_rst_cancels_the_running_handler),
             cmocka_unit_test(test_closing_after_a_complete_response_is_not_an_abort),
             cmocka_unit_test(test_request_abandoned_while_queued_never_starts),
             cmocka_unit_test(test_handler_ignoring_its_token_is_reported),
             cmocka_unit_test(test_route_timeout_answers_the_policy_status),
             cmocka_unit_test(test_server_default_timeout_applies_to_routes_without_one),
             cmocka_unit_test(test_bad_requests_are_answered_4xx_and_the_server_keeps_serving),
             cmocka_unit_test(test_slow_loris_gets_408_and_is_closed),
             cmocka_unit_test(test_idle_keep_alive_connection_is_closed),
             cmocka_unit_test(test_connections_beyond_the_limit_are_refused),
             cmocka_unit_test(test_out_of_descriptors_refuses_then_recovers),
             cmocka_unit_test(test_io_thread_route_answers_many_pipelined_requests_in_order),
             cmocka_unit_test(test_io_thread_route_big_answer_blocks_nobody),
             cmocka_unit_test(test_io_thread_route_gives_up_on_a_client_that_does_not_read),
             cmocka_unit_test(test_shutdown_drains_then_answers_503),
             cmocka_unit_test(test_shutdown_lets_a_request_finish_within_the_drain),
             cmocka_unit_test(test_middleware_sees_the_token_fire_and_the_outcome),
             cmocka_unit_test(test_metrics_count_requests_by_route_status_and_reason),
             cmocka_unit_test(test_access_log_can_be_json_lines),
             cmocka_unit_test(test_options_out_of_bounds_are_rejected))
