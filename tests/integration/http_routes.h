/* The routes and handlers the ct-http integration tests share (test_http.c, test_http_conn.c):
 * a handler that blocks in a ct call until released, one that ignores its token, plain answers,
 * a 16 MiB on_io_thread answer, timeout policies; start() and stop() a server with them. */
#ifndef CT_TEST_HTTP_ROUTES_H
#define CT_TEST_HTTP_ROUTES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"

/* What the blocking handler saw. */
static struct probe {
    ct_sem_t entered, release, returned;
    int result, reason, calls; /* atomic */
} P;

static inline void probe_init(void)
{
    memset(&P, 0, sizeof(P));
    ct_sem_init(&P.entered, 0);
    ct_sem_init(&P.release, 0);
    ct_sem_init(&P.returned, 0);
}

static inline void wait_sem(ct_sem_t *s)
{
    assert_int_equal(0, ct_sem_wait(s, NULL, ct_deadline_after(10000 * ct_test_scale())));
}

/* Waits in a ct call until released (200) or its token fires (-ECANCELED). */
static inline int block(ct_http_req_t *req, void *arg)
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
static inline int stubborn(ct_http_req_t *req, void *arg)
{
    (void) arg;
    ct_sem_post(&P.entered);
    ct_sem_wait(&P.release, NULL, -1);
    ct_sem_post(&P.returned);
    return ct_token_check(ct_http_req_token(req));
}

/* Answers, then lingers (as a handler that logs or cleans up after responding). */
static inline int respond_then_linger(ct_http_req_t *req, void *arg)
{
    (void) arg;
    int rc = ct_http_respond(req, 200, "text/plain", "ok\n", 3);
    ct_sem_post(&P.entered);
    ct_sem_wait(&P.release, NULL, -1);
    P.reason = ct_token_reason(ct_http_req_token(req));
    ct_sem_post(&P.returned);
    return rc;
}

static inline int hello(ct_http_req_t *req, void *arg)
{
    (void) arg;
    return ct_http_respond(req, 200, "text/plain", "hello\n", 6);
}

static inline int echo(ct_http_req_t *req, void *arg)
{
    size_t len;
    const void *body = ct_http_req_body(req, &len);
    (void) arg;
    return ct_http_respond(req, 200, "application/octet-stream", body, len);
}

static inline int item(ct_http_req_t *req, void *arg)
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

static inline int fail_io(ct_http_req_t *req, void *arg)
{
    (void) req;
    (void) arg;
    return -EIO;
}

static inline int say_nothing(ct_http_req_t *req, void *arg)
{
    (void) req;
    (void) arg;
    return 0;
}

static inline int stream(ct_http_req_t *req, void *arg)
{
    (void) arg;
    int rc = ct_http_stream_begin(req, 200, "text/plain");
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = ct_http_stream_write(req, "part\n", 5);
    return rc;
}

static inline int custom_timeout_body(ct_http_req_t *req, void *arg)
{
    (void) arg;
    return ct_http_respond(req, 504, "text/plain", "too slow\n", 9);
}

/* An on_io_thread answer bigger than any socket buffer: byte i is (i * 7) & 0xff. */
#define BIG_LEN (16u << 20)
static unsigned char *big_body;

static inline int big(ct_http_req_t *req, void *arg)
{
    (void) arg;
    return ct_http_respond(req, 200, "application/octet-stream", big_body, BIG_LEN);
}

static inline void routes(ct_http_server_t *s, void *arg)
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
    /* Added after the template it overlaps: the literal wins all the same. */
    assert_int_equal(0, ct_http_route(s, "GET", "/items/latest", hello, NULL, NULL));
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

static inline void stop(struct tsrv *t)
{
    tsrv_stop(t);
    free(t);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: test\r\n\r\n"

#endif
