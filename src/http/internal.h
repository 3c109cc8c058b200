/* Internal structures of ct-http, shared by its files:
 *   server.c  the server object, options, I/O threads, accept, shutdown
 *   conn.c    a connection: reading, parsing, dispatching, completing, closing
 *   req.c     the request seen by handlers: accessors, parameters, responses, the edge
 *   router.c  routes, matching, the middleware chain
 *   obs.c     the access log and /metrics
 *
 * Ownership and threads. A connection belongs to one I/O thread, which alone reads it, changes
 * its epoll interest and closes it. While a request is dispatched, a pool thread runs the
 * handler and writes the response on the same socket (blocking style, through ct_write); the
 * I/O thread keeps reading only to notice the client leaving and to buffer a pipelined next
 * request. When the handler is done, the request goes back to its I/O thread through that
 * thread's completion queue. A connection carries one request at a time (HTTP/1.1), so the
 * request lives inside the connection: no allocation per request. */
#ifndef CT_HTTP_INTERNAL_H
#define CT_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ct/http.h"
#include "parser.h"

struct conn;
struct io;

/* ---- routes and middleware ----------------------------------------------------------------- */

struct seg {
    char *text; /* a literal, lower-cased; or a parameter's name */
    size_t len;
    bool param;
};

struct route {
    char *method;  /* upper case */
    char *pattern; /* as given */
    struct seg *segs;
    unsigned nsegs, nparams;
    ct_http_handler_fn fn;
    void *arg;
    ct_http_timeout_t timeout;
    bool on_io_thread;
    unsigned index; /* in the metrics table */
};

struct middleware {
    ct_http_handler_fn fn;
    void *arg;
};

/* The result of matching a path. */
enum { MATCH_NONE, MATCH_WRONG_METHOD, MATCH_OK };

/* ---- the request --------------------------------------------------------------------------- */

#define MAX_PARAMS   16
#define ARENA_INLINE 1024

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
};

struct resp_header {
    struct resp_header *next;
    const char *name, *value;
};

struct ct_http_req {
    ct_pool_task_t task;
    ct_http_server_t *srv;
    struct conn *conn;
    struct route *route;
    ct_source_t *src;
    ct_reg_t fired_reg; /* the server's own callback on the token */

    /* The head, NUL-terminated in place in the connection's buffer. */
    const char *method, *path, *query;
    struct ct__http_head head;
    const char *body;
    size_t body_len;
    char *body_owned; /* a chunked body, decoded */
    size_t body_cap;
    const char *params[MAX_PARAMS][2];
    unsigned nparams;
    bool keep_alive;

    /* The response. */
    int status;       /* sent, 0 while none */
    bool streaming;   /* chunked, begun and not ended */
    bool broken;      /* a write failed or a stream was cut: close the connection */
    bool close_after; /* "Connection: close" was sent */
    int responded;    /* atomic: a complete response is being or has been written */
    struct resp_header *resp_headers;
    uint64_t bytes_out;

    unsigned chain; /* next middleware to run */
    int result;     /* what the handler chain returned */

    int64_t timeout_ms; /* the timeout armed on the token: the route's or CT-Timeout-Ms's */

    /* Timing, in ct_now_ns(). */
    int64_t t_head, t_start, t_end;
    int64_t t_fired; /* atomic: when the token fired, 0 if it has not */
    int state;       /* atomic: REQ_QUEUED, REQ_RUNNING, REQ_DONE */
    int watching;    /* atomic: handed to the I/O thread's watch list */
    bool warned;     /* the cancel_grace warning was given (I/O thread) */
    int pending;     /* canceled in the queue: the status the I/O thread answers with */
    bool on_io;      /* running on the I/O thread (an on_io_thread route) */
    struct ct_http_req *fired_next; /* the I/O thread's lists of fired, running requests */
    struct ct_http_req *done_next;  /* its queue of finished ones */

    /* Memory that lives as long as the request. */
    struct arena_chunk *chunks;
    size_t inline_used;
    char inline_mem[ARENA_INLINE];
};

enum { REQ_IDLE, REQ_QUEUED, REQ_RUNNING, REQ_DONE };

/* ---- connections --------------------------------------------------------------------------- */

enum conn_state {
    C_READING,    /* waiting for (the rest of) a request */
    C_DISPATCHED, /* its request is queued or running */
    C_WRITING,    /* an on_io_thread handler returned; the rest of its answer is being written */
    C_CLOSED
};

struct conn_list {
    struct conn *head, *tail;
};

struct conn {
    int fd;
    struct io *io;
    enum conn_state state;
    char *buf;
    size_t len, cap; /* bytes in buf; its size */
    size_t req_len;  /* bytes of buf the current request (head + body) takes */
    int head_len;    /* > 0 once the head is complete */
    struct ct__http_chunked chunked;
    size_t chunk_in;  /* bytes of buf after the head the chunk decoder consumed */
    int64_t deadline; /* header or idle deadline (ct_now_ns), for the lists below */
    struct conn *prev, *next;
    struct conn_list *list; /* which deadline list it is on, NULL if none */
    uint32_t events;        /* the epoll interest now */
    bool peer_gone;         /* FIN, RST or an error: the client left */
    bool stop_reading;      /* the buffer is full while dispatched */
    bool sent_continue;
    char *out;               /* C_WRITING: what could not be written at once */
    size_t out_len, out_off; /* bytes in out; bytes of them written */
    struct ct_http_req req;
};

/* ---- I/O threads --------------------------------------------------------------------------- */

struct io {
    ct_http_server_t *srv;
    int epfd, wakefd;
    int spare_fd; /* /dev/null, given up to refuse a connection when out of descriptors */
    pthread_t thread;
    pthread_mutex_t mu;             /* guards the two queues below */
    struct ct_http_req *done;       /* completed requests to take back (linked through done_next) */
    struct ct_http_req *fired;      /* requests whose token fired while running (reported later) */
    struct conn_list reading, idle; /* deadlines, oldest first */
    struct conn_list writing;       /* C_WRITING, with the write timeout */
    struct conn_list busy;          /* connections whose request is dispatched */
    struct ct_http_req *watch;      /* fired and running: checked at t_fired + grace */
    struct conn *graveyard;         /* closed in this loop turn, freed at its end */
    bool stopping, cancel_all, quit; /* set by the server under mu */
    bool draining;                   /* the thread has acted on `stopping` */
    unsigned nconns;
};

/* ---- the server ---------------------------------------------------------------------------- */

struct metrics; /* obs.c */

struct ct_http_server {
    ct_http_options_t o;
    struct ct__http_limits limits;
    ct_pool_t *pool;
    bool own_pool;
    struct route **routes;
    unsigned nroutes;
    struct middleware *mw;
    unsigned nmw;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int lfd;
    struct io *io;
    unsigned nio;
    ct_source_t *stopping;
    bool started, joined;
    bool stopped;       /* atomic: ct_http_server_stop() has begun */
    pthread_mutex_t mu; /* guards in_flight waits during stop */
    pthread_cond_t cv;
    unsigned in_flight;        /* atomic */
    unsigned open_connections; /* atomic */
    struct metrics *metrics;
    uint64_t connections, rejected, abandoned, cancel_ignored; /* atomic */
};

/* server.c */
void ct__http_io_wake(struct io *io);
void ct__http_request_done(ct_http_req_t *req); /* any thread: hand back to the I/O thread */

/* conn.c */
void ct__http_conn_accepted(struct io *io, int fd);
void ct__http_conn_event(struct conn *c, uint32_t events);
void ct__http_conn_complete(struct conn *c); /* I/O thread: the request came back */
int ct__http_conn_send(struct conn *c, const struct iovec *iov, int n); /* on_io_thread handlers */
void ct__http_conn_abort_writes(struct io *io); /* close what is still being written */
void ct__http_conn_close(struct conn *c);
void ct__http_conn_expire(struct io *io, int64_t now); /* close what passed its deadline */
void ct__http_list_remove(struct conn *c);
void ct__http_conn_reap(struct io *io); /* free the connections closed in this loop turn */

/* req.c */
void ct__http_req_init(ct_http_req_t *req);
void ct__http_req_reset(ct_http_req_t *req);
int ct__http_req_prepare(ct_http_req_t *req, char *buf, int head_len);
int ct__http_req_start(ct_http_req_t *req);           /* I/O thread: route, submit */
void ct__http_req_answer_pending(ct_http_req_t *req); /* I/O thread: canceled in the queue */
int ct__http_run(void *arg, const ct_token_t *tok);   /* the pool task */
void ct__http_finish(void *arg, int result);          /* the pool's done callback */
int ct__http_write_simple(ct_http_req_t *req, int status, const char *json_code,
                          const char *message, bool close);
/* Answer from the I/O thread without a handler (parse errors, 503 when full): non-blocking. */
void ct__http_answer_now(struct conn *c, int status, const char *code, const char *message);
const char *ct__http_reason_phrase(int status);

/* router.c */
int ct__http_match(ct_http_server_t *srv, ct_http_req_t *req);
void ct__http_routes_free(ct_http_server_t *srv);

/* obs.c */
int ct__http_metrics_new(ct_http_server_t *srv);
int ct__http_metrics_start(ct_http_server_t *srv); /* the routes are final */
void ct__http_metrics_stats(ct_http_server_t *srv, ct_http_stats_t *out);
void ct__http_metrics_free(ct_http_server_t *srv);
void ct__http_observe(ct_http_req_t *req); /* the request ended: log and count */
void ct__http_warn(ct_http_server_t *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int ct__http_serve_metrics(ct_http_req_t *req, void *arg);

#endif
