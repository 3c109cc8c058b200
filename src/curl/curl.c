/* ct-curl: libcurl transfers that stop when a token fires. See ct/curl.h.
 *
 * Each thread has one multi handle (created on its first call, cleaned up when it exits): its
 * connection cache lets a thread's next call reuse a connection a completed transfer left open.
 * A call adds the easy handle, registers a callback on the token that does one thing —
 * curl_multi_wakeup, which is safe from any thread — and loops on curl_multi_perform and
 * curl_multi_poll until the transfer is done or the token has fired. Removing an unfinished
 * transfer from the multi handle makes libcurl close its connection: the upstream sees the
 * caller go, and no half-read connection is ever reused. */
#define _GNU_SOURCE
#include "ct/curl.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ct/time.h"

#define DEFAULT_MAX_BODY ((size_t) 16 << 20)
#define MAX_TIMEOUT_MS   INT64_C(86400000)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t multi_key;
static CURLcode global_rc;

static void multi_free(void *m)
{
    curl_multi_cleanup(m);
}

static void init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (global_rc == CURLE_OK && pthread_key_create(&multi_key, multi_free) != 0)
        global_rc = CURLE_FAILED_INIT;
}

static CURLM *this_thread_multi(void)
{
    pthread_once(&once, init_once);
    if (global_rc != CURLE_OK)
        return NULL;
    CURLM *m = pthread_getspecific(multi_key);
    if (!m && (m = curl_multi_init()) && pthread_setspecific(multi_key, m) != 0) {
        curl_multi_cleanup(m);
        m = NULL;
    }
    return m;
}

static int errno_of(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* The token's callback: wake the thread waiting in curl_multi_poll. Nothing else. */
static void wake(void *arg, const ct_token_t *tok)
{
    (void) tok;
    curl_multi_wakeup(arg);
}

int ct_curl_perform(CURL *easy, const ct_token_t *tok)
{
    if (!easy)
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    CURLM *m = this_thread_multi();
    if (!m)
        return -ENOMEM;
    if (curl_multi_add_handle(m, easy) != CURLM_OK)
        return -EINVAL; /* already in a multi handle */
    ct_reg_t reg;
    ct_token_register(tok, &reg, wake, m); /* already fired: it woke us, the loop sees it */
    int rc = 0;
    CURLcode result = CURLE_OK;
    for (bool done = false; !done;) {
        int running;
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            rc = -EIO;
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)))
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
                result = msg->data.result;
                done = true;
            }
        if (done)
            break;
        if (ct_token_canceled(tok)) {
            rc = -ECANCELED;
            break;
        }
        /* The bound only matters if a wakeup were lost: libcurl's own timers are in the poll. */
        if (curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK) {
            rc = -EIO;
            break;
        }
    }
    if (tok)
        ct_token_unregister(&reg);
    curl_multi_remove_handle(m, easy); /* unfinished: its connection is closed */
    return rc < 0 ? rc : errno_of(result);
}

int ct_curl_deadline_header(const ct_token_t *tok, char *buf, size_t cap)
{
    if (!buf)
        return -EINVAL;
    int64_t deadline = ct_token_deadline(tok);
    if (deadline == INT64_MAX)
        return 0;
    int64_t left = deadline - ct_now_ms();
    if (left < 0)
        left = 0;
    int n = snprintf(buf, cap, CT_CURL_DEADLINE_HEADER ": %" PRId64, left);
    return n < 0 || (size_t) n >= cap ? -ENOSPC : 1;
}

/* ---- ct_curl_get ------------------------------------------------------------------------------
 */

struct sink {
    char *buf;
    size_t len, cap, max;
    bool too_big;
};

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;
    if (len > s->max - s->len) {
        s->too_big = true;
        return CURL_WRITEFUNC_ERROR;
    }
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len + 1)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b)
            return CURL_WRITEFUNC_ERROR;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
    return len;
}

void ct_curl_response_free(ct_curl_response_t *res)
{
    if (!res)
        return;
    free(res->body);
    memset(res, 0, sizeof(*res));
}

int ct_curl_get(const char *url, const ct_token_t *tok, const ct_curl_options_t *o,
                ct_curl_response_t *out)
{
    static const ct_curl_options_t defaults = {0};
    if (out)
        memset(out, 0, sizeof(*out));
    if (!o)
        o = &defaults;
    if (!url || !out || o->timeout_ms < 0 || o->timeout_ms > MAX_TIMEOUT_MS)
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    pthread_once(&once, init_once);
    if (global_rc != CURLE_OK)
        return -ENOMEM;
    CURL *easy = curl_easy_init();
    if (!easy)
        return -ENOMEM;
    struct sink sink = {.max = o->max_body ? o->max_body : DEFAULT_MAX_BODY};
    struct curl_slist *headers = NULL, *h;
    int rc = 0;
    char deadline[64];
    if (!o->no_deadline_header &&
        (rc = ct_curl_deadline_header(tok, deadline, sizeof(deadline))) == 1) {
        if (!(headers = curl_slist_append(NULL, deadline)))
            rc = -ENOMEM;
    }
    for (const char *const *x = o->headers; rc >= 0 && x && *x; x++) {
        if (!(h = curl_slist_append(headers, *x)))
            rc = -ENOMEM;
        else
            headers = h;
    }
    if (rc >= 0 && (curl_easy_setopt(easy, CURLOPT_URL, url) != CURLE_OK ||
                    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
                    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
                    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect) != CURLE_OK ||
                    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink) != CURLE_OK ||
                    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
                    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) o->timeout_ms) != CURLE_OK))
        rc = -EINVAL;
    if (rc >= 0)
        rc = ct_curl_perform(easy, tok);
    if (rc == -EIO && sink.too_big)
        rc = -EFBIG;
    if (rc == 0) {
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &out->status);
        out->body = sink.buf;
        out->len = sink.len;
    } else {
        free(sink.buf);
    }
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    return rc;
}
