/* ct-curl: outbound HTTP calls (libcurl) that stop when a token fires.
 *
 * A transfer runs over libcurl's multi interface, and the token's callback wakes the wait with
 * curl_multi_wakeup: a fired token aborts the transfer at once (measured here: well under a
 * millisecond), not at the next progress callback (up to a second, or never while the peer
 * sends nothing). The aborted transfer's connection is closed, so the upstream sees its caller
 * go; completed transfers leave their connection in the calling thread's cache for the next call.
 *
 * When the token has a deadline (ct_token_deadline: a timeout of its own or of a parent), the
 * time left is sent as a request header, CT-Timeout-Ms: <milliseconds>. It is relative, so the
 * two machines' clocks need not agree (like gRPC's grpc-timeout). ct-http gives an incoming
 * request that carries it a CT_TIMEOUT at that deadline: a deadline crosses services.
 *
 *     ct_curl_response_t res;
 *     int rc = ct_curl_get("http://127.0.0.1:8080/upstream/data", tok, NULL, &res);
 *     if (rc == 0 && res.status == 200)
 *         use(res.body, res.len);
 *     ct_curl_response_free(&res);
 *
 * For anything else (POST, your own write callback, TLS options), configure a CURL easy handle
 * and run it with ct_curl_perform. Errors are negative errno values: -ECANCELED (the token fired;
 * ct_token_reason says why), -ETIMEDOUT (the options' own timeout), -ECONNREFUSED, -EHOSTUNREACH
 * (the name did not resolve), -EFBIG (the body went past max_body), -ENOMEM, -EINVAL, -EIO (any
 * other libcurl error: set CURLOPT_ERRORBUFFER on your handle for libcurl's message). */
#ifndef CT_CURL_H
#define CT_CURL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The request header that carries a deadline across services: the milliseconds left. */
#define CT_CURL_DEADLINE_HEADER "CT-Timeout-Ms"

typedef struct ct_curl_options {
    int64_t timeout_ms;         /* the whole transfer, 0..86 400 000 (0: none but the token's) */
    size_t max_body;            /* largest body kept (0: 16 MiB); past it: -EFBIG */
    const char *const *headers; /* extra request headers "Name: value", NULL-terminated */
    bool no_deadline_header;    /* do not send CT-Timeout-Ms */
} ct_curl_options_t;

typedef struct ct_curl_response {
    long status; /* the HTTP status */
    char *body;  /* NUL-terminated (the NUL is not counted in len); NULL if empty */
    size_t len;
} ct_curl_response_t;

/* GET `url`, stopping when `tok` fires (NULL: never). `o` may be NULL.
 * Returns: 0 with *out filled (any HTTP status: check out->status), or a negative errno (see
 * above) with *out empty. Ownership: ct_curl_response_free(out) in both cases.
 * Thread: any; each thread keeps its own connections. */
int ct_curl_get(const char *url, const ct_token_t *tok, const ct_curl_options_t *o,
                ct_curl_response_t *out);

/* Free what a response holds and empty it. NULL is allowed. */
void ct_curl_response_free(ct_curl_response_t *res);

/* Run the transfer configured on `easy` until it completes or `tok` fires. The handle is yours:
 * ct only adds it to this thread's multi handle and removes it before returning (an aborted
 * transfer's connection is closed). No deadline header is added here: see
 * ct_curl_deadline_header.
 * Returns: 0 (the transfer completed: CURLINFO_RESPONSE_CODE has the status) or a negative errno.
 * Thread: any; one thread at a time per handle. */
int ct_curl_perform(CURL *easy, const ct_token_t *tok);

/* Format the deadline header for `tok` into `buf` ("CT-Timeout-Ms: 1234"), for a curl_slist.
 * Returns: 1 (written), 0 (the token has no deadline: nothing to send), -EINVAL, -ENOSPC.
 * Thread: any. */
int ct_curl_deadline_header(const ct_token_t *tok, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
