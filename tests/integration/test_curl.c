/* ct-curl against a real upstream on 127.0.0.1: a socket server thread written here, which
 * answers as told (at once, slowly, never) and records what it received and when it saw the
 * client close. And the deadline header end to end, through two ct-http servers. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ct/curl.h"
#include "ct/http.h"
#include "ct/time.h"
#include "ct/wait.h"
#include "testutil.h"

/* ---- the upstream ------------------------------------------------------------------------------
 */

enum answer { AT_ONCE, TRICKLE, NEVER, BIG };

struct upstream {
    int lfd, port;
    enum answer answer;
    pthread_t th;
    ct_sem_t closed;    /* posted when the client closed a connection */
    int accepted;       /* connections accepted (atomic) */
    int requests;       /* requests read (atomic) */
    char request[4096]; /* the last request's head */
    int stop;           /* atomic */
};

/* Read one request head; false when the client closed first. */
static bool read_head(struct upstream *u, int fd)
{
    char buf[4096];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) == 0) {
            if (__atomic_load_n(&u->stop, __ATOMIC_ACQUIRE))
                return false;
            continue;
        }
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return false;
        len += (size_t) n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n")) {
            memcpy(u->request, buf, len + 1);
            __atomic_add_fetch(&u->requests, 1, __ATOMIC_RELEASE);
            return true;
        }
    }
    return false;
}

/* Wait until the client closes (or 20 s, or stop): posts `closed` when it does. */
static void watch_close(struct upstream *u, int fd)
{
    for (int i = 0; i < 200 && !__atomic_load_n(&u->stop, __ATOMIC_ACQUIRE); i++) {
        struct pollfd p = {fd, POLLIN, 0};
        char c[256];
        if (poll(&p, 1, 100) > 0 && read(fd, c, sizeof(c)) <= 0) {
            ct_sem_post(&u->closed);
            return;
        }
    }
}

static void serve(struct upstream *u, int fd)
{
    while (read_head(u, fd)) {
        if (u->answer == AT_ONCE) {
            static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
            if (write(fd, r, sizeof(r) - 1) < 0)
                return;
            continue; /* keep-alive: the next request on the same connection */
        }
        if (u->answer == BIG) {
            static const char h[] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
            static char body[100000];
            if (write(fd, h, sizeof(h) - 1) < 0 || write(fd, body, sizeof(body)) < 0)
                return;
            continue;
        }
        if (u->answer == TRICKLE) {
            static const char h[] = "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n";
            if (write(fd, h, sizeof(h) - 1) < 0)
                return;
            /* One byte every 10 ms (20 s in all); a write that fails means the client left. */
            for (int i = 0; i < 2000 && !__atomic_load_n(&u->stop, __ATOMIC_ACQUIRE); i++) {
                struct pollfd p = {fd, POLLIN, 0};
                char c[64];
                if (poll(&p, 1, 10) > 0 && read(fd, c, sizeof(c)) <= 0) {
                    ct_sem_post(&u->closed);
                    return;
                }
                if (write(fd, "x", 1) < 0) {
                    ct_sem_post(&u->closed);
                    return;
                }
            }
            return;
        }
        watch_close(u, fd); /* NEVER: no answer at all */
        return;
    }
    ct_sem_post(&u->closed); /* closed between requests */
}

static void *upstream_main(void *arg)
{
    struct upstream *u = arg;
    while (!__atomic_load_n(&u->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p = {u->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(u->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        __atomic_add_fetch(&u->accepted, 1, __ATOMIC_RELEASE);
        serve(u, fd);
        close(fd);
    }
    return NULL;
}

static struct upstream *upstream_start(enum answer a)
{
    struct upstream *u = calloc(1, sizeof(*u));
    u->answer = a;
    ct_sem_init(&u->closed, 0);
    u->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(0, bind(u->lfd, (struct sockaddr *) &sa, sizeof(sa)));
    assert_int_equal(0, listen(u->lfd, 16));
    socklen_t len = sizeof(sa);
    getsockname(u->lfd, (struct sockaddr *) &sa, &len);
    u->port = ntohs(sa.sin_port);
    pthread_create(&u->th, NULL, upstream_main, u);
    return u;
}

static void upstream_stop(struct upstream *u)
{
    __atomic_store_n(&u->stop, 1, __ATOMIC_RELEASE);
    pthread_join(u->th, NULL);
    close(u->lfd);
    ct_sem_destroy(&u->closed);
    free(u);
}

static char url[128];

static const char *url_of(struct upstream *u)
{
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/data", u->port);
    return url;
}

/* ---- tests -------------------------------------------------------------------------------------
 */

static void test_get_returns_status_and_body_and_reuses_the_connection(void **state)
{
    struct upstream *u = upstream_start(AT_ONCE);
    ct_curl_response_t res;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(0, ct_curl_get(url_of(u), NULL, NULL, &res));
        assert_int_equal(200, res.status);
        assert_int_equal(5, res.len);
        assert_string_equal("hello", res.body);
        ct_curl_response_free(&res);
    }
    /* Completed transfers leave their connection to this thread's next call. */
    assert_int_equal(1, __atomic_load_n(&u->accepted, __ATOMIC_ACQUIRE));
    assert_int_equal(3, __atomic_load_n(&u->requests, __ATOMIC_ACQUIRE));
    upstream_stop(u);
}

struct fire_later {
    ct_source_t *src;
    int64_t after_ms, fired_ms;
};

static void *fire_later(void *arg)
{
    struct fire_later *f = arg;
    ct_sleep_ms(f->after_ms, NULL);
    f->fired_ms = ct_test_now_ms();
    ct_source_cancel(f->src, CT_CLIENT_ABORTED, "the caller left");
    return NULL;
}

/* The token fires while the body trickles in (or before any answer): the call returns at once
 * and the upstream sees its connection close. */
static void abort_and_see_close(enum answer a)
{
    struct upstream *u = upstream_start(a);
    struct fire_later f = {.after_ms = 200};
    assert_int_equal(0, ct_source_new(&f.src));
    ct_test_thread_t *th = ct_test_thread_start(fire_later, &f);
    ct_curl_response_t res;
    assert_int_equal(-ECANCELED, ct_curl_get(url_of(u), ct_source_token(f.src), NULL, &res));
    int64_t returned = ct_test_now_ms();
    ct_test_thread_join(th);
    /* Without the wakeup, a silent upstream holds curl_multi_poll for its full second. */
    assert_true(returned - f.fired_ms < 500 * ct_test_scale());
    assert_null(res.body);
    /* Without the wakeup this waits for curl's next poll; without the close the upstream keeps
     * trickling into a connection nobody reads (and this fails). */
    assert_int_equal(0, ct_sem_wait(&u->closed, NULL, ct_deadline_after(2000 * ct_test_scale())));
    assert_int_equal(CT_CLIENT_ABORTED, ct_token_reason(ct_source_token(f.src)));
    ct_source_free(f.src);
    upstream_stop(u);
}

static void test_token_fired_mid_body_aborts_and_the_upstream_sees_the_close(void **state)
{
    abort_and_see_close(TRICKLE);
}

static void test_token_fired_before_any_answer_aborts_and_closes(void **state)
{
    abort_and_see_close(NEVER);
}

static void test_canceled_token_never_connects(void **state)
{
    struct upstream *u = upstream_start(AT_ONCE);
    ct_source_t *s;
    ct_source_new(&s);
    ct_source_cancel(s, CT_CANCELED, NULL);
    ct_curl_response_t res;
    assert_int_equal(-ECANCELED, ct_curl_get(url_of(u), ct_source_token(s), NULL, &res));
    /* A request that were sent would be counted by now: the server answers at once. */
    assert_int_equal(0, ct_curl_get(url_of(u), NULL, NULL, &res));
    ct_curl_response_free(&res);
    assert_int_equal(1, __atomic_load_n(&u->requests, __ATOMIC_ACQUIRE));
    ct_source_free(s);
    upstream_stop(u);
}

static void test_own_timeout_and_body_limit_and_errors(void **state)
{
    struct upstream *u = upstream_start(NEVER);
    ct_curl_options_t o = {.timeout_ms = 200};
    ct_curl_response_t res;
    assert_int_equal(-ETIMEDOUT, ct_curl_get(url_of(u), NULL, &o, &res));
    upstream_stop(u);
    u = upstream_start(BIG);
    o = (ct_curl_options_t){.max_body = 1000};
    assert_int_equal(-EFBIG, ct_curl_get(url_of(u), NULL, &o, &res));
    o.max_body = 100000;
    assert_int_equal(0, ct_curl_get(url_of(u), NULL, &o, &res));
    assert_int_equal(100000, res.len);
    ct_curl_response_free(&res);
    int port = u->port;
    upstream_stop(u);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port); /* nobody listens now */
    assert_int_equal(-ECONNREFUSED, ct_curl_get(url, NULL, NULL, &res));
    assert_int_equal(-EINVAL, ct_curl_get("gopher://127.0.0.1/", NULL, NULL, &res));
    assert_int_equal(-EINVAL, ct_curl_get(NULL, NULL, NULL, &res));
    assert_int_equal(-EINVAL, ct_curl_get(url, NULL, NULL, NULL));
    o = (ct_curl_options_t){.timeout_ms = -1};
    assert_int_equal(-EINVAL, ct_curl_get(url, NULL, &o, &res));
    assert_int_equal(-EINVAL, ct_curl_perform(NULL, NULL));
    char buf[8];
    assert_int_equal(-EINVAL, ct_curl_deadline_header(NULL, NULL, 0));
    assert_int_equal(0, ct_curl_deadline_header(NULL, buf, sizeof(buf)));
}

static void test_deadline_is_sent_as_ct_timeout_ms(void **state)
{
    struct upstream *u = upstream_start(AT_ONCE);
    ct_source_t *timeout, *linked;
    assert_int_equal(0, ct_source_new_timeout(&timeout, 5000));
    const ct_token_t *parents[] = {ct_source_token(timeout)};
    assert_int_equal(0, ct_source_new_linked(&linked, parents, 1));
    ct_curl_response_t res;
    assert_int_equal(0, ct_curl_get(url_of(u), ct_source_token(linked), NULL, &res));
    ct_curl_response_free(&res);
    const char *h = strstr(u->request, "CT-Timeout-Ms: ");
    assert_non_null(h);
    long left = atol(h + 15);
    assert_true(left > 5000 - 2000 * ct_test_scale() && left <= 5000);
    /* Turned off, or no deadline: no header. */
    ct_curl_options_t off = {.no_deadline_header = true};
    assert_int_equal(0, ct_curl_get(url_of(u), ct_source_token(linked), &off, &res));
    ct_curl_response_free(&res);
    assert_null(strstr(u->request, "CT-Timeout-Ms"));
    const char *extra[] = {"X-Trace: 42", NULL};
    ct_curl_options_t hdrs = {.headers = extra};
    assert_int_equal(0, ct_curl_get(url_of(u), NULL, &hdrs, &res));
    ct_curl_response_free(&res);
    assert_null(strstr(u->request, "CT-Timeout-Ms"));
    assert_non_null(strstr(u->request, "X-Trace: 42\r\n"));
    ct_source_free(linked);
    ct_source_free(timeout);
    upstream_stop(u);
}

struct par {
    struct upstream *u;
    ct_source_t *src;
    int rc;
};

static void *par_get(void *arg)
{
    struct par *p = arg;
    char my_url[128];
    snprintf(my_url, sizeof(my_url), "http://127.0.0.1:%d/", p->u->port);
    ct_curl_response_t res;
    p->rc = ct_curl_get(my_url, p->src ? ct_source_token(p->src) : NULL, NULL, &res);
    ct_curl_response_free(&res);
    return NULL;
}

static void test_one_canceled_transfer_leaves_the_others_alone(void **state)
{
    struct upstream *slow = upstream_start(TRICKLE), *fast[3];
    struct par p[4] = {{.u = slow}};
    ct_source_new(&p[0].src);
    ct_test_thread_t *th[4];
    th[0] = ct_test_thread_start(par_get, &p[0]);
    for (int i = 1; i < 4; i++) {
        fast[i - 1] = upstream_start(AT_ONCE);
        p[i].u = fast[i - 1];
        th[i] = ct_test_thread_start(par_get, &p[i]);
    }
    assert_true(CT_WAIT_FOR(__atomic_load_n(&slow->requests, __ATOMIC_ACQUIRE) == 1, 5000));
    ct_source_cancel(p[0].src, CT_CANCELED, NULL);
    for (int i = 0; i < 4; i++)
        ct_test_thread_join(th[i]);
    assert_int_equal(-ECANCELED, p[0].rc);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(0, p[i].rc);
        upstream_stop(fast[i - 1]);
    }
    ct_source_free(p[0].src);
    upstream_stop(slow);
}

/* ---- the deadline across two ct-http servers ----------------------------------------------------
 */

struct hop {
    ct_http_server_t *a, *b;
    int port_b;
    ct_sem_t b_done;
    int b_reason;  /* the reason B's handler saw */
    long b_status; /* what B answered A */
    int64_t b_fired_after_ms;
};

static int port_of(ct_http_server_t *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    ct_http_server_addr(s, &ss, &len);
    return ntohs(((struct sockaddr_in *) &ss)->sin_port);
}

/* B: waits 10 s with its request's token, and says why it stopped. */
static int b_slow(ct_http_req_t *req, void *arg)
{
    struct hop *h = arg;
    int rc = ct_sleep_ms(10000, ct_http_req_token(req));
    h->b_reason = ct_token_reason(ct_http_req_token(req));
    h->b_fired_after_ms = ct_http_req_elapsed_ms(req);
    ct_sem_post(&h->b_done);
    return rc;
}

/* A: calls B with the deadline of its request's token (a 300 ms route timeout) in the header,
 * but without the token itself, so that only the header can stop B: were A to abort the call,
 * B would see its client leave instead (CT_CLIENT_ABORTED), at about the same moment. */
static int a_calls_b(ct_http_req_t *req, void *arg)
{
    struct hop *h = arg;
    char u[96], deadline[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/slow", h->port_b);
    CURL *easy = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    if (ct_curl_deadline_header(ct_http_req_token(req), deadline, sizeof(deadline)) == 1)
        hdrs = curl_slist_append(NULL, deadline);
    curl_easy_setopt(easy, CURLOPT_URL, u);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(easy, CURLOPT_NOBODY, 0L);
    int rc = ct_curl_perform(easy, NULL);
    if (rc == 0)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &h->b_status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(easy);
    return rc;
}

static void test_deadline_crosses_to_the_next_ct_http_server(void **state)
{
    struct hop h = {0};
    ct_sem_init(&h.b_done, 0);
    ct_http_options_t o = {.listen = "127.0.0.1:0", .access_log = CT_HTTP_LOG_OFF};
    assert_int_equal(0, ct_http_server_new(&h.b, &o));
    ct_http_route_options_t long_timeout = {.timeout = {.ms = 60000}};
    assert_int_equal(0, ct_http_route(h.b, "GET", "/slow", b_slow, &h, &long_timeout));
    assert_int_equal(0, ct_http_server_start(h.b));
    h.port_b = port_of(h.b);
    assert_int_equal(0, ct_http_server_new(&h.a, &o));
    ct_http_route_options_t short_timeout = {.timeout = {.ms = 300}};
    assert_int_equal(0, ct_http_route(h.a, "GET", "/call", a_calls_b, &h, &short_timeout));
    assert_int_equal(0, ct_http_server_start(h.a));

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/call", port_of(h.a));
    ct_curl_response_t res;
    assert_int_equal(0, ct_curl_get(url, NULL, NULL, &res));
    assert_int_equal(408, res.status);
    ct_curl_response_free(&res);
    assert_int_equal(0, ct_sem_wait(&h.b_done, NULL, ct_deadline_after(5000 * ct_test_scale())));
    /* B stopped by a timeout of its own at A's deadline, long before its route's 60 s, and
     * answered its route's timeout status. */
    assert_int_equal(CT_TIMEOUT, h.b_reason);
    assert_true(h.b_fired_after_ms < 2000 * ct_test_scale());
    assert_true(CT_WAIT_FOR(__atomic_load_n(&h.b_status, __ATOMIC_ACQUIRE) == 408, 5000));

    /* A deadline header that is not a plain number in bounds: 400. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", h.port_b);
    const char *bad[] = {"CT-Timeout-Ms: 12x", NULL};
    ct_curl_options_t ob = {.headers = bad};
    assert_int_equal(0, ct_curl_get(url, NULL, &ob, &res));
    assert_int_equal(400, res.status);
    assert_non_null(strstr(res.body, "CT-Timeout-Ms"));
    ct_curl_response_free(&res);
    const char *huge[] = {"CT-Timeout-Ms: 86400001", NULL};
    ob.headers = huge;
    assert_int_equal(0, ct_curl_get(url, NULL, &ob, &res));
    assert_int_equal(400, res.status);
    ct_curl_response_free(&res);

    ct_http_server_stop(h.a);
    ct_http_server_free(h.a);
    ct_http_server_stop(h.b);
    ct_http_server_free(h.b);
    ct_sem_destroy(&h.b_done);
}

CT_TEST_MAIN(cmocka_unit_test(test_get_returns_status_and_body_and_reuses_the_connection),
             cmocka_unit_test(test_token_fired_mid_body_aborts_and_the_upstream_sees_the_close),
             cmocka_unit_test(test_token_fired_before_any_answer_aborts_and_closes),
             cmocka_unit_test(test_canceled_token_never_connects),
             cmocka_unit_test(test_own_timeout_and_body_limit_and_errors),
             cmocka_unit_test(test_deadline_is_sent_as_ct_timeout_ms),
             cmocka_unit_test(test_one_canceled_transfer_leaves_the_others_alone),
             cmocka_unit_test(test_deadline_crosses_to_the_next_ct_http_server))
