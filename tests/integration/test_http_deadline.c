/* Cross-service deadlines: a request carrying `CT-Timeout-Ms: N` gets a CT_TIMEOUT N ms after its
 * head arrived unless its route's own timeout comes first, answered by the route's policy; a bad
 * value gets 400. End to end: server A's handler calls server B with ct_curl_get and its request
 * token, and B's handler is timed out by A's deadline, long before B's own route timeout. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct/curl.h"
#include "ct/http.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "http_util.h"
#include "testutil.h"

/* What the waiting handler saw. */
static struct seen {
    ct_sem_t entered, returned;
    int reason;
    int64_t deadline_left_ms; /* ct_token_deadline of its token, minus now, on entry */
    char header[32];          /* the CT-Timeout-Ms it received, "" if none */
} S;

static void seen_init(void)
{
    memset(&S, 0, sizeof(S));
    ct_sem_init(&S.entered, 0);
    ct_sem_init(&S.returned, 0);
}

/* Waits on its token for up to a minute. */
static int wait_on_token(ct_http_req_t *req, void *arg)
{
    (void) arg;
    const ct_token_t *tok = ct_http_req_token(req);
    const char *h = ct_http_req_header(req, CT_HTTP_DEADLINE_HEADER);
    snprintf(S.header, sizeof(S.header), "%s", h ? h : "");
    int64_t d = ct_token_deadline(tok);
    S.deadline_left_ms = d == CT_DEADLINE_NONE ? -1 : d - ct_now_ms();
    ct_sem_post(&S.entered);
    int rc = ct_sleep_ms(60000, tok);
    S.reason = ct_token_reason(tok);
    ct_sem_post(&S.returned);
    if (rc < 0)
        return rc;
    return ct_http_respond(req, 200, "text/plain", "done\n", 5);
}

static int quick(ct_http_req_t *req, void *arg)
{
    (void) arg;
    return ct_http_respond(req, 200, "text/plain", "ok\n", 3);
}

static void routes(ct_http_server_t *s, void *arg)
{
    (void) arg;
    ct_http_route_options_t slow = {.timeout = {.ms = 30000}};
    assert_int_equal(0, ct_http_route(s, "GET", "/wait", wait_on_token, NULL, &slow));
    ct_http_route_options_t short_route = {.timeout = {.ms = 200}};
    assert_int_equal(0, ct_http_route(s, "GET", "/short", wait_on_token, NULL, &short_route));
    ct_http_route_options_t gateway = {.timeout = {.ms = 30000, .status = 504}};
    assert_int_equal(0, ct_http_route(s, "GET", "/gateway", wait_on_token, NULL, &gateway));
    ct_http_route_options_t none = {.timeout = {.ms = CT_HTTP_NO_TIMEOUT}};
    assert_int_equal(0, ct_http_route(s, "GET", "/none", wait_on_token, NULL, &none));
    assert_int_equal(0, ct_http_route(s, "GET", "/quick", quick, NULL, NULL));
}

static struct tresp get_with(int port, const char *path, const char *value, int64_t *took_ms)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nCT-Timeout-Ms: %s\r\n\r\n", path,
             value);
    int64_t t0 = ct_test_now_ms();
    struct tresp r = tget(port, req, 10000);
    if (took_ms)
        *took_ms = ct_test_now_ms() - t0;
    return r;
}

static void test_header_times_out_before_longer_route_timeout(void **state)
{
    (void) state;
    seen_init();
    struct tsrv t;
    tsrv_start(&t, (ct_http_options_t){0}, routes, NULL);
    int64_t took;
    struct tresp r = get_with(t.port, "/wait", "200", &took);
    assert_int_equal(408, r.status);
    assert_non_null(strstr(r.body, "200 ms"));
    assert_true(took >= 195);                   /* not before the caller's deadline */
    assert_true(took < 5000 * ct_test_scale()); /* and far before the route's 30 s */
    assert_int_equal(0, ct_sem_wait(&S.returned, NULL, ct_deadline_after(5000)));
    assert_int_equal(CT_TIMEOUT, S.reason);
    assert_true(S.deadline_left_ms >= 0 && S.deadline_left_ms <= 200);
    tsrv_stop(&t);
}

static void test_route_timeout_wins_when_earlier(void **state)
{
    (void) state;
    seen_init();
    struct tsrv t;
    tsrv_start(&t, (ct_http_options_t){0}, routes, NULL);
    int64_t took;
    struct tresp r = get_with(t.port, "/short", "20000", &took);
    assert_int_equal(408, r.status);
    assert_non_null(strstr(r.body, "within 200 ms"));
    assert_true(took >= 195 && took < 5000 * ct_test_scale());
    assert_true(S.deadline_left_ms > 100 && S.deadline_left_ms <= 200);
    tsrv_stop(&t);
}

/* The route's policy answers, whichever deadline fired: its 504, on a route with no timeout of
 * its own too. */
static void test_header_deadline_uses_route_policy_and_applies_without_route_timeout(void **state)
{
    (void) state;
    seen_init();
    struct tsrv t;
    tsrv_start(&t, (ct_http_options_t){0}, routes, NULL);
    struct tresp r = get_with(t.port, "/gateway", "100", NULL);
    assert_int_equal(504, r.status);
    r = get_with(t.port, "/none", "100", NULL);
    assert_int_equal(408, r.status);
    /* 0: no time left at all; the handler never needs to run. */
    r = get_with(t.port, "/none", "0", NULL);
    assert_int_equal(408, r.status);
    /* The largest value is accepted; a quick handler answers long before it. */
    r = get_with(t.port, "/quick", "86400000", NULL);
    assert_int_equal(200, r.status);
    tsrv_stop(&t);
}

static void test_invalid_header_gets_400_naming_it(void **state)
{
    (void) state;
    seen_init();
    struct tsrv t;
    tsrv_start(&t, (ct_http_options_t){0}, routes, NULL);
    const char *bad[] = {"abc", "-1", "86400001", "1.5", "12x", "+5", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tresp r = get_with(t.port, "/quick", bad[i], NULL);
        if (r.status != 400)
            fail_msg("CT-Timeout-Ms: %s gave %d", bad[i], r.status);
        assert_non_null(strstr(r.head, "application/json"));
        assert_non_null(strstr(r.body, "CT-Timeout-Ms"));
        assert_non_null(strstr(r.body, "invalid_header"));
    }
    /* An empty value is invalid too. */
    struct tresp r =
        tget(t.port, "GET /quick HTTP/1.1\r\nHost: x\r\nCT-Timeout-Ms:\r\n\r\n", 10000);
    assert_int_equal(400, r.status);
    /* No header: the route's handler runs as usual. */
    r = tget(t.port, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n", 10000);
    assert_int_equal(200, r.status);
    tsrv_stop(&t);
}

/* ---- end to end: A calls B with its request token ------------------------------------------- */

static int b_port;
static int a_rc;        /* atomic: what A's ct_curl_get returned (1: not yet) */
static long a_b_status; /* B's status as A saw it; written before a_rc */

static int call_b(ct_http_req_t *req, void *arg)
{
    (void) arg;
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/wait", b_port);
    ct_curl_response_t res;
    int rc = ct_curl_get(url, ct_http_req_token(req), NULL, &res);
    a_b_status = res.status;
    ct_curl_response_free(&res);
    __atomic_store_n(&a_rc, rc, __ATOMIC_RELEASE);
    return rc < 0 ? rc : ct_http_respond_error(req, 504, "upstream_timeout", "B timed out");
}

static void routes_a(ct_http_server_t *s, void *arg)
{
    (void) arg;
    ct_http_route_options_t ro = {.timeout = {.ms = 300}};
    assert_int_equal(0, ct_http_route(s, "GET", "/orders", call_b, NULL, &ro));
}

static void test_end_to_end_deadline_reaches_the_called_service(void **state)
{
    (void) state;
    seen_init();
    __atomic_store_n(&a_rc, 1, __ATOMIC_RELEASE);
    struct tsrv a, b;
    tsrv_start(&b, (ct_http_options_t){0}, routes, NULL); /* B's /wait: a 30 s route timeout */
    b_port = b.port;
    tsrv_start(&a, (ct_http_options_t){0}, routes_a, NULL);

    int64_t t0 = ct_test_now_ms();
    struct tresp r = tget(a.port, "GET /orders HTTP/1.1\r\nHost: x\r\n\r\n", 10000);
    /* A's own timeout answered (408), or B's timeout reached A first and A's handler said so. */
    assert_true(r.status == 408 || r.status == 504);

    /* B's handler received A's time left and its token carried that deadline... */
    assert_int_equal(0, ct_sem_wait(&S.returned, NULL, ct_deadline_after(10000)));
    long sent = atol(S.header);
    assert_true(sent > 0 && sent <= 300);
    assert_true(S.deadline_left_ms >= 0 && S.deadline_left_ms <= 300);
    /* ...and it fired at about A's deadline, not after B's 30 s. */
    int64_t took = ct_test_now_ms() - t0;
    assert_true(took < 5000 * ct_test_scale());
    assert_true(CT_WAIT_FOR(__atomic_load_n(&a_rc, __ATOMIC_ACQUIRE) != 1, 5000));
    int rc = __atomic_load_n(&a_rc, __ATOMIC_ACQUIRE);
    /* B's deadline is A's time left, rounded down and counted from when B had the head, so B's
     * timer is normally due first (one timer thread fires both, in deadline order): B's token
     * fires with CT_TIMEOUT and its 408 reaches A's call. The two deadlines are less than a
     * millisecond apart, though, and when B reads the head late (a loaded machine, TSan) A's
     * fires first: A's call returns -ECANCELED and closes the connection, and B may then see
     * the client leave before its own timer fires. Each outcome is checked for what it must
     * imply; the deadline checks above fail without the header (checked by ignoring it in
     * req.c: B's token then has no deadline). */
    if (rc == 0) {
        assert_int_equal(408, a_b_status);
        assert_int_equal(CT_TIMEOUT, S.reason);
    } else {
        assert_int_equal(-ECANCELED, rc);
        assert_true(S.reason == CT_TIMEOUT || S.reason == CT_CLIENT_ABORTED);
    }
    tsrv_stop(&a);
    tsrv_stop(&b);
}

CT_TEST_MAIN(
    cmocka_unit_test(test_header_times_out_before_longer_route_timeout),
    cmocka_unit_test(test_route_timeout_wins_when_earlier),
    cmocka_unit_test(test_header_deadline_uses_route_policy_and_applies_without_route_timeout),
    cmocka_unit_test(test_invalid_header_gets_400_naming_it),
    cmocka_unit_test(test_end_to_end_deadline_reaches_the_called_service))
