/* ct-curl: a token that fires aborts the transfer at once and closes its connection.
 *
 * Why the multi interface: a blocking curl_easy_perform() can only be stopped from its progress
 * or write callbacks, which libcurl calls when data moves or about once a second when it does
 * not, and not at all in some states (measured: 9 ms to ~1 s, or never for a silent peer). The
 * multi interface waits in curl_multi_poll(), which curl_multi_wakeup() interrupts from any
 * thread, so the token's callback does exactly that and nothing else; the waiting thread sees
 * the token canceled when poll returns and stops.
 *
 * Why the connection closes: the easy handle is removed from the multi handle before its
 * transfer is done, and libcurl treats that as premature and disconnects instead of putting the
 * connection back in the cache (multi_done, for any connection that is not multiplexed). A
 * half-read response can therefore never be mistaken for the start of the next one.
 *
 * Why a multi handle per thread: completed transfers leave their connection in the multi
 * handle's cache, so a thread that calls the same service again skips the TCP handshake. A
 * multi handle is not thread-safe, and one per thread needs no lock; it is freed when the thread
 * exits. curl_multi_wakeup() never reaches a freed handle: the token's callback is unregistered
 * (which waits for a callback that is running) before the call returns. */
#define _GNU_SOURCE
#include "ct/curl.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../core/internal.h"
#include "ct/time.h"

#define POLL_MS 1000 /* the longest poll; the token and libcurl's own timers wake it sooner */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_code;
static pthread_key_t multi_key;

struct thread_multi {
    CURLM *multi;
    bool busy; /* a ct_curl_perform is running on it (a callback may call ct_curl_perform) */
};

static _Thread_local struct thread_multi *thread_multi;
static _Thread_local CURLcode last_code;

static void thread_multi_free(void *arg)
{
    struct thread_multi *t = arg;
    curl_multi_cleanup(t->multi);
    ct__free(t);
}

static void global_init(void)
{
    init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (init_code == CURLE_OK && pthread_key_create(&multi_key, thread_multi_free) != 0)
        init_code = CURLE_FAILED_INIT;
}

static int ensure_init(void)
{
    pthread_once(&init_once, global_init);
    if (init_code == CURLE_OK)
        return 0;
    last_code = init_code;
    return init_code == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

/* This thread's multi handle, created on first use. */
static struct thread_multi *get_thread_multi(void)
{
    if (thread_multi)
        return thread_multi;
    struct thread_multi *t = ct__calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->multi = curl_multi_init();
    if (!t->multi || pthread_setspecific(multi_key, t) != 0) {
        if (t->multi)
            curl_multi_cleanup(t->multi);
        ct__free(t);
        return NULL;
    }
    thread_multi = t;
    return t;
}

CURLcode ct_curl_last_code(void)
{
    return last_code;
}

static void on_cancel(void *arg, const ct_token_t *tok)
{
    (void) tok;
    curl_multi_wakeup(arg);
}

static int map_code(CURLcode c, const ct_token_t *tok)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    case CURLE_ABORTED_BY_CALLBACK:
        /* The caller's own progress callback may abort too; only the token makes it a cancel. */
        return ct_token_canceled(tok) ? -ECANCELED : -EIO;
    default:
        return -EIO;
    }
}

static int map_mcode(CURLMcode mc)
{
    switch (mc) {
    case CURLM_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLM_ADDED_ALREADY:
    case CURLM_BAD_EASY_HANDLE:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* Drive `easy` on `m` until it is done or the token fires. Returns the ct code. */
static int run(CURLM *m, CURL *easy, const ct_token_t *tok)
{
    CURLMcode mc = curl_multi_add_handle(m, easy);
    if (mc != CURLM_OK) {
        last_code = CURLE_FAILED_INIT;
        return map_mcode(mc);
    }
    ct_reg_t reg;
    ct_token_register(tok, &reg, on_cancel, m); /* if it fired already, the wakeup is pending */

    int rc = 1; /* 1: still running */
    while (rc == 1) {
        int running;
        mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK) {
            last_code = CURLE_FAILED_INIT;
            rc = map_mcode(mc);
            break;
        }
        CURLMsg *msg;
        int queued;
        while ((msg = curl_multi_info_read(m, &queued))) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
                last_code = msg->data.result;
                rc = map_code(msg->data.result, tok);
            }
        }
        if (rc != 1)
            break; /* done: a token that fires now no longer matters */
        if (ct_token_canceled(tok)) {
            rc = -ECANCELED;
            break;
        }
        /* A wakeup sent after the check above is not lost: it makes this poll return. */
        mc = curl_multi_poll(m, NULL, 0, POLL_MS, NULL);
        if (mc != CURLM_OK) {
            last_code = CURLE_FAILED_INIT;
            rc = map_mcode(mc);
            break;
        }
        if (ct_token_canceled(tok))
            rc = -ECANCELED;
    }
    if (rc == -ECANCELED)
        last_code = CURLE_ABORTED_BY_CALLBACK;

    /* Unregister first: after this no callback can touch `m`. Then remove the handle; for a
     * transfer that is not done, libcurl closes its connection rather than caching it. */
    ct_token_unregister(&reg);
    curl_multi_remove_handle(m, easy);
    return rc;
}

int ct_curl_perform(CURL *easy, const ct_token_t *tok)
{
    if (!easy) {
        last_code = CURLE_BAD_FUNCTION_ARGUMENT;
        return -EINVAL;
    }
    if (ct_token_canceled(tok)) {
        last_code = CURLE_ABORTED_BY_CALLBACK;
        return -ECANCELED;
    }
    int rc = ensure_init();
    if (rc < 0)
        return rc;
    struct thread_multi *t = get_thread_multi();
    if (!t) {
        last_code = CURLE_OUT_OF_MEMORY;
        return -ENOMEM;
    }
    if (t->busy) {
        /* Called from a libcurl callback of this thread's transfer: curl_multi_perform is not
         * reentrant, so this call gets a multi handle of its own. */
        CURLM *m = curl_multi_init();
        if (!m) {
            last_code = CURLE_OUT_OF_MEMORY;
            return -ENOMEM;
        }
        rc = run(m, easy, tok);
        curl_multi_cleanup(m);
        return rc;
    }
    t->busy = true;
    rc = run(t->multi, easy, tok);
    t->busy = false;
    return rc;
}

int ct_curl_deadline_header(const ct_token_t *tok, struct curl_slist **list)
{
    if (!list)
        return -EINVAL;
    int64_t deadline = ct_token_deadline(tok);
    if (deadline == CT_DEADLINE_NONE)
        return 0;
    /* Rounded down, from the ns clock: never claim more time than the caller has. */
    int64_t left = (deadline * 1000000 - ct_now_ns()) / 1000000;
    if (left < 0)
        left = 0;
    char line[64];
    snprintf(line, sizeof(line), CT_CURL_DEADLINE_HEADER ": %lld", (long long) left);
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return -ENOMEM;
    *list = l;
    return 1;
}

/* ---- ct_curl_get --------------------------------------------------------------------------- */

struct body {
    char *data;
    size_t len, cap, max;
    bool too_big;
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    if (n > b->max - b->len) {
        b->too_big = true;
        return 0; /* CURLE_WRITE_ERROR: libcurl stops and closes the connection */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        char *d = ct__realloc(b->data, cap);
        if (!d)
            return 0; /* reported as -ENOMEM below: data stays NULL-or-old, too_big false */
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

static bool header_ok(const char *h)
{
    return h && h[0] && !strpbrk(h, "\r\n");
}

int ct_curl_get(const char *url, const ct_token_t *tok, const ct_curl_options_t *o,
                ct_curl_response_t *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    ct_curl_options_t opt = o ? *o : (ct_curl_options_t){0};
    if (!url || opt.timeout_ms < 0 || opt.timeout_ms > CT_TIMEOUT_MAX_MS ||
        opt.connect_timeout_ms < 0 || opt.connect_timeout_ms > CT_TIMEOUT_MAX_MS ||
        opt.max_body > SIZE_MAX / 2) {
        out->curl_code = last_code = CURLE_BAD_FUNCTION_ARGUMENT;
        return -EINVAL;
    }
    for (const char *const *h = opt.headers; h && *h; h++) {
        if (!header_ok(*h)) {
            out->curl_code = last_code = CURLE_BAD_FUNCTION_ARGUMENT;
            return -EINVAL;
        }
    }
    if (ct_token_canceled(tok)) {
        out->curl_code = last_code = CURLE_ABORTED_BY_CALLBACK;
        return -ECANCELED;
    }
    int rc = ensure_init();
    if (rc < 0) {
        out->curl_code = last_code;
        return rc;
    }

    struct body b = {.max = opt.max_body ? opt.max_body : CT_CURL_MAX_BODY_DEFAULT};
    struct curl_slist *headers = NULL;
    CURL *easy = curl_easy_init();
    rc = easy ? 0 : -ENOMEM;
    for (const char *const *h = opt.headers; rc == 0 && h && *h; h++) {
        struct curl_slist *l = curl_slist_append(headers, *h);
        if (l)
            headers = l;
        else
            rc = -ENOMEM;
    }
    if (rc == 0 && !opt.no_deadline_header)
        rc = ct_curl_deadline_header(tok, &headers) < 0 ? -ENOMEM : 0;
    if (rc == 0) {
        int c = CURLE_OK;
        /* Each setopt either stores a value or copies a string: only the copies can fail. */
        c |= curl_easy_setopt(easy, CURLOPT_URL, url);
        c |= curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
        c |= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        c |= curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, out->error);
        c |= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
        c |= curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
        c |= curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) b.max);
        c |= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) opt.timeout_ms);
        c |= curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) opt.connect_timeout_ms);
        if (headers)
            c |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        if (c != CURLE_OK)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        rc = ct_curl_perform(easy, tok);
        out->curl_code = last_code;
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        out->status = status;
        if (b.too_big || last_code == CURLE_FILESIZE_EXCEEDED)
            rc = -EFBIG;
        else if (rc == -EIO && last_code == CURLE_WRITE_ERROR)
            rc = -ENOMEM; /* the only other way on_write refuses data */
    } else {
        out->curl_code = last_code = CURLE_OUT_OF_MEMORY;
    }
    if (rc == 0 && !b.data) {
        b.data = ct__malloc(1);
        if (!b.data)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        b.data[b.len] = '\0';
        out->body = b.data;
        out->body_len = b.len;
        out->error[0] = '\0';
    } else {
        ct__free(b.data);
    }
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    return rc;
}

void ct_curl_response_free(ct_curl_response_t *res)
{
    if (!res)
        return;
    ct__free(res->body);
    res->body = NULL;
    res->body_len = 0;
}
