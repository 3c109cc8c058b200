/* ct-http on real loopback sockets: the request token fires when the client leaves (FIN or RST,
 * running or queued), on the route's timeout, on shutdown; the edge answers by reason; pipelined
 * requests are not aborts; bad input is answered 4xx and the server keeps serving. Handlers that
 * must be running when the test acts say so through a semaphore; nothing sleeps to synchronise. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "http_routes.h"

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
    /* A literal segment beats a parameter, whatever the order the routes were added in. */
    r = tget(t->port, GET("/items/LATEST"), 5000);
    assert_int_equal(200, r.status);
    assert_memory_equal("hello\n", r.body, 6);
    assert_int_equal(200, tget(t->port, GET("/items/12"), 5000).status);
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
             cmocka_unit_test(test_shutdown_drains_then_answers_503),
             cmocka_unit_test(test_shutdown_lets_a_request_finish_within_the_drain),
             cmocka_unit_test(test_middleware_sees_the_token_fire_and_the_outcome),
             cmocka_unit_test(test_metrics_count_requests_by_route_status_and_reason),
             cmocka_unit_test(test_access_log_can_be_json_lines),
             cmocka_unit_test(test_options_out_of_bounds_are_rejected))
