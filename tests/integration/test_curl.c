/* ct-curl against a real slow upstream on 127.0.0.1 (slow_server.h: plain sockets that stall,
 * trickle or never answer, and record when the client closes): a token that fires aborts the
 * transfer wherever it is, and the upstream sees the connection close; completed transfers
 * keep their connection for the next call; curl's own timeout, body limits and bad arguments
 * give their codes. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct/curl.h"
#include "ct/time.h"
#include "slow_server.h"
#include "testutil.h"

static char url[128];

static const char *url_of(struct slow_server *s, const char *path)
{
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    return url;
}

static void test_get_returns_status_and_body(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_FULL, 1234);
    ct_curl_response_t res;
    assert_int_equal(0, ct_curl_get(url_of(&s, "/shipping/123"), NULL, NULL, &res));
    assert_int_equal(200, res.status);
    assert_int_equal(1234, res.body_len);
    assert_non_null(res.body);
    assert_int_equal('x', res.body[0]);
    assert_int_equal('x', res.body[1233]);
    assert_int_equal('\0', res.body[1234]);
    assert_int_equal(CURLE_OK, res.curl_code);
    assert_int_equal(CURLE_OK, ct_curl_last_code());
    assert_string_equal("", res.error);
    ct_curl_response_free(&res);
    assert_null(res.body);
    ct_curl_response_free(&res); /* twice is safe */
    ct_curl_response_free(NULL);
    slow_stop(&s);
}

static void test_empty_body_is_an_empty_string(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_FULL, 0);
    ct_curl_response_t res;
    assert_int_equal(0, ct_curl_get(url_of(&s, "/"), NULL, NULL, &res));
    assert_int_equal(200, res.status);
    assert_int_equal(0, res.body_len);
    assert_non_null(res.body);
    assert_string_equal("", res.body);
    ct_curl_response_free(&res);
    slow_stop(&s);
}

/* The acceptance point. The upstream stalls after the head and 100 body bytes; another thread
 * fires the token once the write callback has seen those bytes, so libcurl is back waiting
 * for more. Without curl_multi_wakeup from the token's callback the call notices only when
 * libcurl's own timer or the 1 s poll ends the wait (measured ~200 ms by removing the wakeup:
 * the 100 ms bound then fails in the plain build; sanitizer builds scale it). The upstream must
 * then see the connection close, not a connection kept for reuse. */
struct canceler {
    struct slow_server *s;
    ct_source_t *src;
    sem_t *go;
    int64_t canceled_at_ns;
    bool ok;
};

static void *cancel_on_go(void *arg)
{
    struct canceler *c = arg;
    c->ok = slow_sem_wait_ms(c->go, 10000);
    c->canceled_at_ns = slow_now_ns();
    ct_source_cancel(c->src, CT_CANCELED, "caller gave up");
    return NULL;
}

struct sink {
    size_t got;
    sem_t first_bytes;
};

static size_t sink(char *p, size_t size, size_t n, void *arg)
{
    (void) p;
    struct sink *k = arg;
    if (k->got == 0)
        sem_post(&k->first_bytes);
    k->got += size * n;
    return size * n;
}

static void assert_quick(int64_t from_ns, int64_t to_ns)
{
    int64_t took_ms = (to_ns - from_ns) / 1000000;
    if (took_ms >= 100 * ct_test_scale())
        fail_msg("the call returned %lld ms after the token fired", (long long) took_ms);
}

static void test_cancel_mid_body_aborts_and_closes_connection(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_STALL, 0);
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    struct sink k = {0};
    sem_init(&k.first_bytes, 0, 0);
    struct canceler c = {.s = &s, .src = src, .go = &k.first_bytes};
    ct_test_thread_t *t = ct_test_thread_start(cancel_on_go, &c);

    CURL *easy = curl_easy_init();
    assert_non_null(easy);
    curl_easy_setopt(easy, CURLOPT_URL, url_of(&s, "/slow"));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    int rc = ct_curl_perform(easy, ct_source_token(src));
    int64_t returned_at = slow_now_ns();
    ct_test_thread_join(t);
    assert_true(c.ok);
    assert_int_equal(-ECANCELED, rc);
    assert_int_equal(CURLE_ABORTED_BY_CALLBACK, ct_curl_last_code());
    assert_int_equal(CT_CANCELED, ct_token_reason(ct_source_token(src)));
    assert_quick(c.canceled_at_ns, returned_at);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(200, status);
    assert_int_equal(100, k.got);

    assert_true(slow_sem_wait_ms(&s.closed, 2000 * ct_test_scale()));
    assert_true(__atomic_load_n(&s.closed_at_ns, __ATOMIC_ACQUIRE) >= c.canceled_at_ns);

    /* The handle is the caller's again, out of any multi handle: it can run another transfer. */
    curl_easy_setopt(easy, CURLOPT_URL, "http://127.0.0.1:1/");
    assert_int_equal(-ECONNREFUSED, ct_curl_perform(easy, NULL));
    curl_easy_cleanup(easy);
    sem_destroy(&k.first_bytes);
    ct_source_free(src);
    slow_stop(&s);
}

/* Same with ct_curl_get, the token firing before any response head has arrived. */
static void test_cancel_before_response_head_closes_connection(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_SILENT, 0);
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    struct canceler c = {.s = &s, .src = src, .go = &s.requested};
    ct_test_thread_t *t = ct_test_thread_start(cancel_on_go, &c);

    ct_curl_response_t res;
    int rc = ct_curl_get(url_of(&s, "/silent"), ct_source_token(src), NULL, &res);
    int64_t returned_at = slow_now_ns();
    ct_test_thread_join(t);
    assert_true(c.ok);
    assert_int_equal(-ECANCELED, rc);
    assert_quick(c.canceled_at_ns, returned_at);
    assert_int_equal(0, res.status);
    assert_null(res.body);
    assert_int_equal(CURLE_ABORTED_BY_CALLBACK, res.curl_code);
    assert_true(slow_sem_wait_ms(&s.closed, 2000 * ct_test_scale()));
    ct_curl_response_free(&res);
    ct_source_free(src);
    slow_stop(&s);
}

/* A canceled token returns at once, without connecting: the upstream's only connection is the
 * one made by the call after it. */
static void test_canceled_token_returns_without_connecting(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_FULL, 10);
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    ct_source_cancel(src, CT_CANCELED, NULL);
    ct_curl_response_t res;
    assert_int_equal(-ECANCELED, ct_curl_get(url_of(&s, "/"), ct_source_token(src), NULL, &res));
    assert_int_equal(0, res.status);
    assert_null(res.body);
    ct_curl_response_free(&res);

    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url_of(&s, "/"));
    assert_int_equal(-ECANCELED, ct_curl_perform(easy, ct_source_token(src)));
    curl_easy_cleanup(easy);

    assert_int_equal(0, ct_curl_get(url_of(&s, "/"), NULL, NULL, &res));
    ct_curl_response_free(&res);
    assert_true(slow_sem_wait_ms(&s.requested, 2000));
    assert_int_equal(1, slow_accepted(&s));
    ct_source_free(src);
    slow_stop(&s);
}

static void test_curl_timeout_gives_etimedout_not_ecanceled(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_SILENT, 0);
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    ct_curl_options_t o = {.timeout_ms = 200};
    ct_curl_response_t res;
    int64_t t0 = ct_test_now_ms();
    assert_int_equal(-ETIMEDOUT, ct_curl_get(url_of(&s, "/"), ct_source_token(src), &o, &res));
    assert_true(ct_test_now_ms() - t0 >= 190);
    assert_int_equal(CURLE_OPERATION_TIMEDOUT, res.curl_code);
    assert_true(strlen(res.error) > 0);
    assert_false(ct_token_canceled(ct_source_token(src)));
    ct_curl_response_free(&res);
    assert_true(slow_sem_wait_ms(&s.closed, 2000 * ct_test_scale()));
    ct_source_free(src);
    slow_stop(&s);
}

/* With Content-Length, libcurl refuses the body before reading it (CURLOPT_MAXFILESIZE); without,
 * the write callback stops at the limit. Both are -EFBIG, and the connection is closed. */
static void test_body_over_max_body_gives_efbig(void **state)
{
    (void) state;
    for (int nolen = 0; nolen <= 1; nolen++) {
        struct slow_server s;
        slow_start(&s, nolen ? SLOW_FULL_NOLEN : SLOW_FULL, 10000);
        ct_curl_options_t o = {.max_body = 1000};
        ct_curl_response_t res;
        assert_int_equal(-EFBIG, ct_curl_get(url_of(&s, "/big"), NULL, &o, &res));
        assert_null(res.body);
        assert_int_equal(0, res.body_len);
        ct_curl_response_free(&res);
        /* Exactly at the limit is fine. */
        o.max_body = 10000;
        assert_int_equal(0, ct_curl_get(url_of(&s, "/big"), NULL, &o, &res));
        assert_int_equal(10000, res.body_len);
        ct_curl_response_free(&res);
        slow_stop(&s);
    }
}

static void test_completed_transfer_reuses_connection_aborted_does_not(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_FULL, 100);
    ct_curl_response_t res;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(0, ct_curl_get(url_of(&s, "/"), NULL, NULL, &res));
        ct_curl_response_free(&res);
    }
    assert_int_equal(1, slow_accepted(&s)); /* one connection for three calls on this thread */

    /* A call stopped by max_body closes its connection: the next one connects again. */
    ct_curl_options_t o = {.max_body = 10};
    assert_int_equal(-EFBIG, ct_curl_get(url_of(&s, "/"), NULL, &o, &res));
    ct_curl_response_free(&res);
    assert_int_equal(0, ct_curl_get(url_of(&s, "/"), NULL, NULL, &res));
    ct_curl_response_free(&res);
    assert_int_equal(2, slow_accepted(&s));
    slow_stop(&s);
}

/* Several threads fetch a trickled body at once; one of them is canceled mid-body. It alone
 * stops; the others get the whole body. */
#define PAR 4
struct par {
    struct slow_server *s;
    const ct_token_t *tok;
    int rc;
    size_t len;
};

static void *par_get(void *arg)
{
    struct par *p = arg;
    char u[128];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", p->s->port);
    ct_curl_response_t res;
    p->rc = ct_curl_get(u, p->tok, NULL, &res);
    p->len = res.body_len;
    ct_curl_response_free(&res);
    return NULL;
}

static void test_parallel_transfers_one_canceled_others_complete(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_TRICKLE, 5000); /* 50 pieces, 5 ms apart: ~250 ms per transfer */
    ct_source_t *src;
    assert_int_equal(0, ct_source_new(&src));
    struct par p[PAR];
    ct_test_thread_t *t[PAR];
    for (int i = 0; i < PAR; i++) {
        p[i] = (struct par){.s = &s, .tok = i == 0 ? ct_source_token(src) : NULL};
        t[i] = ct_test_thread_start(par_get, &p[i]);
    }
    assert_true(slow_sem_wait_ms(&s.body_started, 10000));
    ct_source_cancel(src, CT_CANCELED, NULL);
    for (int i = 0; i < PAR; i++)
        ct_test_thread_join(t[i]);
    /* Thread 0 may have finished before the cancel on a very slow machine; it cannot have been
     * half-served. */
    assert_true(p[0].rc == -ECANCELED || (p[0].rc == 0 && p[0].len == 5000));
    for (int i = 1; i < PAR; i++) {
        assert_int_equal(0, p[i].rc);
        assert_int_equal(5000, p[i].len);
    }
    ct_source_free(src);
    slow_stop(&s);
}

static bool head_has(struct slow_server *s, const char *needle, char *value, size_t cap)
{
    pthread_mutex_lock(&s->lock);
    const char *p = strcasestr(s->last_head, needle);
    if (p && value) {
        p += strlen(needle);
        size_t n = strcspn(p, "\r\n");
        snprintf(value, cap, "%.*s", (int) n, p);
    }
    pthread_mutex_unlock(&s->lock);
    return p != NULL;
}

static void test_deadline_header_carries_time_left(void **state)
{
    (void) state;
    struct slow_server s;
    slow_start(&s, SLOW_FULL, 2);
    ct_source_t *src;
    assert_int_equal(0, ct_source_new_timeout(&src, 5000));
    const char *hdrs[] = {"X-Trace: abc", NULL};
    ct_curl_options_t o = {.headers = hdrs};
    ct_curl_response_t res;
    assert_int_equal(0, ct_curl_get(url_of(&s, "/"), ct_source_token(src), &o, &res));
    ct_curl_response_free(&res);
    char v[32];
    assert_true(head_has(&s, "\r\nCT-Timeout-Ms: ", v, sizeof(v)));
    long left = atol(v);
    assert_true(left > 3000 && left <= 5000);
    assert_true(head_has(&s, "\r\nX-Trace: abc", NULL, 0));

    o.no_deadline_header = 1;
    assert_int_equal(0, ct_curl_get(url_of(&s, "/"), ct_source_token(src), &o, &res));
    ct_curl_response_free(&res);
    assert_false(head_has(&s, "CT-Timeout-Ms", NULL, 0));
    assert_true(head_has(&s, "\r\nX-Trace: abc", NULL, 0));

    /* A token without a deadline sends none. */
    ct_source_t *plain;
    assert_int_equal(0, ct_source_new(&plain));
    assert_int_equal(0, ct_curl_get(url_of(&s, "/"), ct_source_token(plain), NULL, &res));
    ct_curl_response_free(&res);
    assert_false(head_has(&s, "CT-Timeout-Ms", NULL, 0));

    /* ct_curl_perform: the caller appends it. */
    struct curl_slist *list = NULL;
    assert_int_equal(0, ct_curl_deadline_header(ct_source_token(plain), &list));
    assert_null(list);
    assert_int_equal(1, ct_curl_deadline_header(ct_source_token(src), &list));
    assert_non_null(list);
    assert_int_equal(-EINVAL, ct_curl_deadline_header(ct_source_token(src), NULL));
    CURL *easy = curl_easy_init();
    struct sink k = {0};
    sem_init(&k.first_bytes, 0, 0);
    curl_easy_setopt(easy, CURLOPT_URL, url_of(&s, "/"));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &k);
    assert_int_equal(0, ct_curl_perform(easy, ct_source_token(src)));
    assert_int_equal(2, k.got);
    sem_destroy(&k.first_bytes);
    assert_true(head_has(&s, "\r\nCT-Timeout-Ms: ", v, sizeof(v)));
    assert_true(atol(v) > 3000 && atol(v) <= 5000);
    curl_easy_cleanup(easy);
    curl_slist_free_all(list);
    ct_source_free(plain);
    ct_source_free(src);
    slow_stop(&s);
}

static void test_bad_arguments_and_refused_connection(void **state)
{
    (void) state;
    ct_curl_response_t res;
    assert_int_equal(-EINVAL, ct_curl_get("http://127.0.0.1:1/", NULL, NULL, NULL));
    assert_int_equal(-EINVAL, ct_curl_get(NULL, NULL, NULL, &res));
    ct_curl_response_free(&res);
    ct_curl_options_t o = {.timeout_ms = -1};
    assert_int_equal(-EINVAL, ct_curl_get("http://127.0.0.1:1/", NULL, &o, &res));
    o = (ct_curl_options_t){.connect_timeout_ms = CT_TIMEOUT_MAX_MS + 1};
    assert_int_equal(-EINVAL, ct_curl_get("http://127.0.0.1:1/", NULL, &o, &res));
    const char *crlf[] = {"X-A: 1\r\nX-Injected: 2", NULL};
    o = (ct_curl_options_t){.headers = crlf};
    assert_int_equal(-EINVAL, ct_curl_get("http://127.0.0.1:1/", NULL, &o, &res));
    assert_int_equal(-EINVAL, ct_curl_get("file:///etc/passwd", NULL, NULL, &res));
    assert_null(res.body);
    assert_int_equal(-EINVAL, ct_curl_get("not a url", NULL, NULL, &res));
    assert_int_equal(-EINVAL, ct_curl_perform(NULL, NULL));

    /* A port nobody listens on: bind one, then close it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(0, bind(fd, (struct sockaddr *) &a, sizeof(a)));
    assert_int_equal(0, getsockname(fd, (struct sockaddr *) &a, &len));
    close(fd);
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(a.sin_port));
    assert_int_equal(-ECONNREFUSED, ct_curl_get(u, NULL, NULL, &res));
    assert_int_equal(CURLE_COULDNT_CONNECT, res.curl_code);
    ct_curl_response_free(&res);

    /* An easy handle already in a multi handle is refused, not run twice. */
    CURLM *m = curl_multi_init();
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, u);
    assert_int_equal(CURLM_OK, curl_multi_add_handle(m, easy));
    assert_int_equal(-EINVAL, ct_curl_perform(easy, NULL));
    curl_multi_remove_handle(m, easy);
    curl_easy_cleanup(easy);
    curl_multi_cleanup(m);
}

CT_TEST_MAIN(cmocka_unit_test(test_get_returns_status_and_body),
             cmocka_unit_test(test_empty_body_is_an_empty_string),
             cmocka_unit_test(test_cancel_mid_body_aborts_and_closes_connection),
             cmocka_unit_test(test_cancel_before_response_head_closes_connection),
             cmocka_unit_test(test_canceled_token_returns_without_connecting),
             cmocka_unit_test(test_curl_timeout_gives_etimedout_not_ecanceled),
             cmocka_unit_test(test_body_over_max_body_gives_efbig),
             cmocka_unit_test(test_completed_transfer_reuses_connection_aborted_does_not),
             cmocka_unit_test(test_parallel_transfers_one_canceled_others_complete),
             cmocka_unit_test(test_deadline_header_carries_time_left),
             cmocka_unit_test(test_bad_arguments_and_refused_connection))
