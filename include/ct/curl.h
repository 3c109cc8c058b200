/* ct-curl: outbound HTTP calls (libcurl) that stop when a token fires.
 *
 * The transfer runs over libcurl's multi interface. The token's callback does one thing,
 * curl_multi_wakeup(), so a token that fires wakes the waiting thread at once (well under a
 * millisecond here) rather than at libcurl's next progress tick (up to a second, or never for a
 * silent peer). The aborted transfer is removed from the multi handle before it finished, and
 * libcurl then closes its connection: the upstream sees FIN/RST, and a half-used connection
 * never goes back to the connection cache. Completed transfers leave their connection in a
 * per-thread cache, so the next call from the same thread to the same host reuses it.
 *
 * Cross-service deadlines: when the token has a deadline (ct_token_deadline), the request
 * carries the time left as `CT-Timeout-Ms: <ms>` (decimal, relative, like gRPC's grpc-timeout),
 * and a ct-http server downstream gives its request token that deadline (see docs/http.md).
 * ct_curl_get sends it by default; with ct_curl_perform, add it to your header list with
 * ct_curl_deadline_header().
 *
 *     ct_curl_response_t res;
 *     int rc = ct_curl_get("http://127.0.0.1:8081/shipping/123", req_tok, NULL, &res);
 *     if (rc == 0 && res.status == 200)
 *         use(res.body, res.body_len);          // NUL-terminated as well
 *     ct_curl_response_free(&res);              // after any return
 *
 * Errors are negative errno values: -ECANCELED (the token fired; ct_token_reason says why),
 * -ETIMEDOUT (curl's own timeout, CURLOPT_TIMEOUT_MS / options.timeout_ms), -ECONNREFUSED
 * (nothing listens there), -EFBIG (ct_curl_get: the body is larger than max_body), -EINVAL,
 * -ENOMEM, -EIO (any other libcurl error: ct_curl_last_code() / the response's `error`).
 * An HTTP error status (404, 500...) is not an error here: the call returns 0 with the status. */
#ifndef CT_CURL_H
#define CT_CURL_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The request header that carries the caller's remaining time in milliseconds. */
#define CT_CURL_DEADLINE_HEADER "CT-Timeout-Ms"

/* The largest response body ct_curl_get keeps when options.max_body is 0 (1 MiB). */
#define CT_CURL_MAX_BODY_DEFAULT ((size_t) 1 << 20)

/* Run the transfer configured on `easy` (URL, write callback, headers, ... as for
 * curl_easy_perform) until it completes or `tok` fires (NULL: never). ct adds the handle to
 * this thread's multi handle for the call and removes it before returning; it sets no option
 * on `easy`. A token already canceled returns -ECANCELED before anything is connected.
 * Returns: 0 the transfer completed (the HTTP status: curl_easy_getinfo(CURLINFO_RESPONSE_CODE));
 * -ECANCELED the token fired: the transfer was aborted and its connection closed;
 * -ETIMEDOUT curl's own timeout (CURLOPT_TIMEOUT_MS, CURLOPT_CONNECTTIMEOUT_MS);
 * -ECONNREFUSED; -EINVAL (`easy` is NULL or already in a multi handle, a malformed URL, an
 * unsupported scheme); -ENOMEM;
 * -EIO any other libcurl error (ct_curl_last_code(); set CURLOPT_ERRORBUFFER for the detail).
 * A write callback that stops the transfer (returns less than it was given) gives -EIO with
 * CURLE_WRITE_ERROR.
 * Thread: any; `easy` is used by one thread at a time. Do not call it from inside a libcurl
 * callback of another transfer on the same thread (it then works, but on a one-off multi handle
 * without the connection cache). */
int ct_curl_perform(CURL *easy, const ct_token_t *tok);

/* The CURLcode of this thread's last ct_curl_perform or ct_curl_get: CURLE_OK after 0,
 * CURLE_ABORTED_BY_CALLBACK after -ECANCELED, CURLE_OPERATION_TIMEDOUT after -ETIMEDOUT, the
 * failing code after -EIO and the others. curl_easy_strerror() names it. Thread: any (per thread).
 */
CURLcode ct_curl_last_code(void);

/* Append `CT-Timeout-Ms: <ms left>` to `*list` if `tok` has a deadline (ct_token_deadline);
 * ms left is rounded down, and 0 once the deadline has passed. Call it just before ct_curl_perform:
 * the value is the time left now. `*list` may be NULL (a new list is started), as with
 * curl_slist_append.
 * Returns: 1 appended; 0 no deadline (nothing appended, also for a NULL token); -EINVAL if
 * `list` is NULL; -ENOMEM (the list is unchanged).
 * Ownership: the list stays the caller's (curl_slist_free_all). Thread: any. */
int ct_curl_deadline_header(const ct_token_t *tok, struct curl_slist **list);

/* Options for ct_curl_get. Zero-initialise and set what you need; NULL means all defaults. */
typedef struct ct_curl_options {
    int64_t timeout_ms;         /* curl's limit on the whole transfer, 0..CT_TIMEOUT_MAX_MS
                                   (0: none; the token's own deadline still applies) */
    int64_t connect_timeout_ms; /* limit on connecting, 0..CT_TIMEOUT_MAX_MS (0: curl's, 300 s) */
    size_t max_body;            /* the largest body kept (0: CT_CURL_MAX_BODY_DEFAULT); a larger
                                   one stops the transfer with -EFBIG */
    const char *const *headers; /* extra request headers, "Name: value", NULL-terminated list */
    int no_deadline_header;     /* nonzero: do not send CT-Timeout-Ms */
} ct_curl_options_t;

/* What ct_curl_get collected. */
typedef struct ct_curl_response {
    long status;                 /* HTTP status, 0 if no response head arrived */
    char *body;                  /* the body, NUL-terminated (the NUL is not in body_len);
                                    NULL unless the call returned 0 */
    size_t body_len;             /* its length in bytes */
    int curl_code;               /* the CURLcode, as ct_curl_last_code() */
    char error[CURL_ERROR_SIZE]; /* libcurl's message for a failure, "" otherwise */
} ct_curl_response_t;

/* GET `url` with `tok` (NULL: never canceled), following no redirects, and collect the status
 * and body into `*out`. Sends CT-Timeout-Ms when the token has a deadline, unless
 * o->no_deadline_header. `o` may be NULL.
 * Returns: 0 (any HTTP status; out->status, out->body); -ECANCELED; -ETIMEDOUT; -ECONNREFUSED;
 * -EFBIG (the body exceeded max_body; the connection is closed); -EINVAL (NULL url or out, an
 * option out of range, a header containing CR or LF, a malformed URL, a scheme other than http
 * and https); -ENOMEM; -EIO (out->error says what libcurl saw).
 * `*out` is filled in on every return except -EINVAL with a NULL out, so ct_curl_response_free()
 * is always safe to call on it.
 * Ownership: ct_curl_response_free(out). Thread: any. */
int ct_curl_get(const char *url, const ct_token_t *tok, const ct_curl_options_t *o,
                ct_curl_response_t *out);

/* Free the body held by `res` and reset it to empty. NULL is ignored; calling it twice is safe.
 * Thread: the one that owns `res`. */
void ct_curl_response_free(ct_curl_response_t *res);

#ifdef __cplusplus
}
#endif

#endif
