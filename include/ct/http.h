/* ct/http.h — an HTTP/1.1 server whose request token fires when the client leaves.
 *
 * Every request has a token (ASP.NET's HttpContext.RequestAborted). It fires with the first of:
 *   CT_CLIENT_ABORTED  the client closed or reset the connection, while the request was queued
 *                      or running (a queued request then never starts);
 *   CT_TIMEOUT         the route's timeout policy;
 *   CT_SHUTDOWN        the server is stopping and the drain period is over.
 * Handlers run on a ct pool in plain blocking style and pass the token to every call that waits.
 *
 *   static int hello(ct_http_req_t *req, void *arg)
 *   {
 *       int rc = ct_sleep_ms(100, ct_http_req_token(req));   // stands for real work
 *       if (rc < 0)
 *           return rc;                                      // the server answers by reason
 *       return ct_http_respond(req, 200, "text/plain", "hello\n", 6);
 *   }
 *
 *   ct_http_server_t *srv;
 *   ct_http_options_t o = {.listen = "127.0.0.1:8080"};
 *   ct_http_server_new(&srv, &o);
 *   ct_http_route(srv, "GET", "/hello", hello, NULL, NULL);
 *   ct_http_server_start(srv);
 *   ...
 *   ct_http_server_stop(srv);                               // graceful: drains, then cancels
 *   ct_http_server_free(srv);
 *
 * The edge. When a handler returns without having started a response, the server answers for
 * it, chosen by what happened:
 *   - the token fired with CT_CLIENT_ABORTED: nothing is sent; the access log says 499;
 *   - CT_TIMEOUT: the route policy's status (408 by default) with a JSON body, or what its
 *     on_timeout handler writes;
 *   - CT_SHUTDOWN: 503 with "Connection: close";
 *   - another negative result: 500 with a JSON body naming the error;
 *   - 0: 204 No Content.
 * A handler still running cancel_grace_ms after its token fired is logged once as a warning
 * with its route and the time since, and counted (ct_http_cancel_ignored_total): cancellation
 * that is only decorative becomes visible.
 *
 * Once a response has started (its status line is on the wire) its status can no longer change:
 * if the token fires in the middle of a streamed response, the server closes the connection
 * instead of finishing it. */
#ifndef CT_HTTP_H
#define CT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ct/pool.h"
#include "ct/token.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_http_server ct_http_server_t;
typedef struct ct_http_req ct_http_req_t;

/* A handler (or a middleware: see ct_http_use()). Returns 0, or a negative errno value; the
 * server answers for a handler that did not (see the edge rules above). Runs on a pool thread
 * (on the I/O thread for an on_io_thread route). */
typedef int (*ct_http_handler_fn)(ct_http_req_t *req, void *arg);

/* A timeout policy, like ASP.NET's RequestTimeoutPolicy. */
typedef struct ct_http_timeout {
    int64_t ms;                    /* 0: the server's default policy; CT_HTTP_NO_TIMEOUT: none */
    int status;                    /* answered on timeout (0: 408) */
    ct_http_handler_fn on_timeout; /* optional: writes the timeout response instead */
    void *on_timeout_arg;
} ct_http_timeout_t;

#define CT_HTTP_NO_TIMEOUT INT64_C(-1)

/* Cross-service deadlines. A caller sends the time it has left as `CT-Timeout-Ms: N` (ct-curl
 * does, see ct/curl.h); the request's token then gets a CT_TIMEOUT N ms after the request's head
 * arrived, or at the route's own timeout if that comes first, and the route's timeout
 * policy answers it (408 by default). N is a decimal integer, 0..CT_HTTP_DEADLINE_MAX_MS (a
 * day); anything else is answered 400 with the code "invalid_header". */
#define CT_HTTP_DEADLINE_HEADER "CT-Timeout-Ms"
#define CT_HTTP_DEADLINE_MAX_MS INT64_C(86400000)

/* Access log formats. */
enum { CT_HTTP_LOG_TEXT = 0, CT_HTTP_LOG_JSON = 1, CT_HTTP_LOG_OFF = 2 };

/* Server options; a zero field takes its default. Bounds are checked by ct_http_server_new(). */
typedef struct ct_http_options {
    const char *listen;        /* "host:port" to bind, IPv4 or [IPv6] (default
                                  "127.0.0.1:8080"; port 0 picks a free port) */
    unsigned io_threads;       /* epoll threads, 1..64 (default: the CPU count) */
    unsigned max_connections;  /* open connections, 1..1 000 000 (default: the open-file
                                  limit, less 64 for the application); beyond, or out of file
                                  descriptors, a new connection gets 503 and is closed */
    ct_pool_t *pool;           /* handlers' pool (default: one of the server's own, 2..256
                                  threads, queue 65 536) */
    uint32_t max_request_line; /* bytes, 64..65 536 (default 8 192): 414 or 400 beyond */
    uint32_t max_header_bytes; /* bytes, 256..1 048 576 (default 16 384): 431 beyond */
    uint32_t max_headers;      /* fields, 1..128 (default 100): 431 beyond */
    uint64_t max_body;         /* bytes, 0..1 GiB (default 1 MiB): 413 beyond */
    int64_t header_timeout_ms; /* to receive a request's head and body, 1..3 600 000
                                  (default 10 000): 408, then close (slow-loris) */
    int64_t idle_timeout_ms;   /* a keep-alive connection without a request, 1..3 600 000
                                  (default 60 000): closed */
    int64_t write_timeout_ms;  /* to write a response, 1..3 600 000 (default 30 000) */
    int64_t drain_timeout_ms;  /* ct_http_server_stop(): time for in-flight requests to
                                  finish before their tokens fire with CT_SHUTDOWN, 0..3 600 000
                                  (default 10 000) */
    int64_t cancel_grace_ms;   /* a handler still running this long after its token fired is
                                  reported, 1..3 600 000 (default 250) */
    ct_http_timeout_t timeout; /* the default timeout policy for routes (default: none) */
    int access_log;            /* CT_HTTP_LOG_TEXT (default), _JSON or _OFF */
    int log_fd;                /* where the access log and warnings go (default 2, stderr) */
} ct_http_options_t;

/* Create a server (not yet listening).
 * Returns: 0 and *out; -EINVAL for an option out of its bounds or a listen address that does not
 * parse; -ENOMEM. Ownership: ct_http_server_free(). Thread: any. */
int ct_http_server_new(ct_http_server_t **out, const ct_http_options_t *opts);

/* Per-route options. */
typedef struct ct_http_route_options {
    ct_http_timeout_t timeout; /* this route's policy; ms 0: the server's default */
    /* Run the handler (and the middleware) on the I/O thread that read the request, at once,
     * instead of on the pool: for handlers that answer from memory and never block (health
     * checks, metrics, fixed replies). It saves two thread hand-offs per request; a handler
     * that blocks here stalls every connection of its I/O thread, and a client leaving is only
     * seen once it has returned. */
    bool on_io_thread;
} ct_http_route_options_t;

/* Serve `method` requests whose path matches `pattern` with `fn`. The pattern is a path whose
 * segments may be parameters: "/api/orders/{id}". Matching is case-insensitive, as in ASP.NET
 * routing; a parameter matches one non-empty segment. A path that matches a pattern but not its
 * method gets 405; no pattern, 404. `ro` may be NULL.
 * Returns: 0; -EINVAL (bad pattern, method, or a duplicate route); -EBUSY once started; -ENOMEM.
 * Thread: owner, before ct_http_server_start(). */
int ct_http_route(ct_http_server_t *srv, const char *method, const char *pattern,
                  ct_http_handler_fn fn, void *arg, const ct_http_route_options_t *ro);

/* Add a middleware: it runs for every routed request, in the order added, around the handler.
 * It calls ct_http_next(req) to run the rest of the chain and returns what it returns (or its
 * own result). It can watch the token (register a callback on it) and see the outcome after
 * ct_http_next() returns: ct_http_req_status(), the token's reason.
 * Returns: 0; -EBUSY once started; -ENOMEM; -EINVAL. Thread: owner, before start. */
int ct_http_use(ct_http_server_t *srv, ct_http_handler_fn middleware, void *arg);

/* Run the rest of the middleware chain and the handler. Returns the handler's result.
 * Thread: the request's (from a middleware only). */
int ct_http_next(ct_http_req_t *req);

/* Bind, listen, start the I/O threads. GET /metrics is served by the server itself.
 * Returns: 0; -EADDRINUSE and other negative errno from bind/listen; -EAGAIN; -EBUSY if
 * started already. Thread: owner. */
int ct_http_server_start(ct_http_server_t *srv);

/* The address the server listens on (to find the port picked for port 0). Thread: any. */
int ct_http_server_addr(const ct_http_server_t *srv, struct sockaddr_storage *addr, socklen_t *len);

/* The stopping token: fires (CT_SHUTDOWN) the moment ct_http_server_stop() begins, so that work
 * linked with it (background jobs, long polls) can stop while requests drain.
 * Thread: any. Valid until ct_http_server_free(). */
const ct_token_t *ct_http_server_stopping(const ct_http_server_t *srv);

/* Graceful shutdown: stop accepting, close idle connections, let in-flight requests finish for
 * drain_timeout_ms (their responses close their connections), then fire their tokens with
 * CT_SHUTDOWN, and return once every handler has returned (or, if a handler ignores its token,
 * after a further drain_timeout_ms: such a server is reported and its connections closed).
 * Returns: 0 when everything returned; -ETIMEDOUT if handlers were still running at the end.
 * Thread: owner (not a handler). Calling it twice is harmless. */
int ct_http_server_stop(ct_http_server_t *srv);

/* Stop if needed, then free. NULL is ignored. Thread: owner. */
void ct_http_server_free(ct_http_server_t *srv);

/* ---- the request ------------------------------------------------------------------------- */
/* Accessors return pointers valid until the handler returns. Thread: the request's. */

const ct_token_t *ct_http_req_token(const ct_http_req_t *req);
const char *ct_http_req_method(const ct_http_req_t *req);
const char *ct_http_req_path(const ct_http_req_t *req);  /* without the query */
const char *ct_http_req_query(const ct_http_req_t *req); /* after '?', "" if none */
const char *ct_http_req_route(const ct_http_req_t *req); /* the matched pattern */

/* The value of header `name` (case-insensitive), NULL if absent. */
const char *ct_http_req_header(const ct_http_req_t *req, const char *name);

/* The body (empty if none). */
const void *ct_http_req_body(const ct_http_req_t *req, size_t *len);

/* A path parameter of the route ("id" in "/orders/{id}"), NULL if the pattern has none. */
const char *ct_http_req_param(const ct_http_req_t *req, const char *name);

/* A query parameter's raw value ("" for "?flag"), NULL if absent. */
const char *ct_http_req_query_param(ct_http_req_t *req, const char *name);

/* An integer query (or, for ct_http_req_param_int, path) parameter in [min, max]; `def` if the
 * query parameter is absent. If it does not parse or is out of range, this answers 400 with a
 * JSON body naming the parameter and its bounds, and returns -EINVAL: the handler just returns
 * that. Returns: 0 with *out; -EINVAL (answered). */
int ct_http_req_query_int(ct_http_req_t *req, const char *name, int64_t def, int64_t min,
                          int64_t max, int64_t *out);
int ct_http_req_param_int(ct_http_req_t *req, const char *name, int64_t min, int64_t max,
                          int64_t *out);

/* Memory that lives as long as the request (freed with it). NULL if out of memory. */
void *ct_http_req_alloc(ct_http_req_t *req, size_t size);

/* Milliseconds since the request's head was complete. */
int64_t ct_http_req_elapsed_ms(const ct_http_req_t *req);

/* ---- the response ------------------------------------------------------------------------ */

/* Add a response header (before the response starts). Returns: 0; -EALREADY once started;
 * -EINVAL for a name or value with invalid characters; -ENOMEM. */
int ct_http_set_header(ct_http_req_t *req, const char *name, const char *value);

/* Send a complete response with Content-Length.
 * Returns: 0; -EALREADY if a response was started; -EPIPE, -ECONNRESET, -ETIMEDOUT (write
 * deadline) and other negative errno: the connection is then closed. */
int ct_http_respond(ct_http_req_t *req, int status, const char *content_type, const void *body,
                    size_t len);

/* Send `status` with a JSON body {"error": code, "message": message} (message may be NULL). */
int ct_http_respond_error(ct_http_req_t *req, int status, const char *code, const char *message);

/* A streamed response (chunked): begin, write any number of times, end. Writes stop with
 * -ECANCELED once the request's token fires; the server then closes the connection rather than
 * end a response whose status claimed success. Returns as ct_http_respond(). */
int ct_http_stream_begin(ct_http_req_t *req, int status, const char *content_type);
int ct_http_stream_write(ct_http_req_t *req, const void *data, size_t len);
int ct_http_stream_end(ct_http_req_t *req);

/* The status sent (0 while none has started). After ct_http_next() this is the outcome. */
int ct_http_req_status(const ct_http_req_t *req);

/* ---- observability ------------------------------------------------------------------------- */

/* Counters since start (the same numbers /metrics exports). Thread: any. */
typedef struct ct_http_stats {
    uint64_t requests;               /* requests handed to a handler or answered by the server */
    uint64_t canceled[6];            /* requests whose token fired, by reason (index = reason,
                                        CT_CANCELED..CT_SIBLING_FAILED; user reasons in [0]) */
    uint64_t abandoned_before_start; /* client gone while the request was queued */
    uint64_t cancel_ignored;         /* handlers still running cancel_grace_ms after the token */
    uint64_t connections;            /* accepted */
    uint64_t rejected;               /* bad requests answered 4xx by the parser, or refused */
    unsigned in_flight;              /* requests queued or running now */
    unsigned open_connections;
} ct_http_stats_t;

void ct_http_server_stats(ct_http_server_t *srv, ct_http_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
