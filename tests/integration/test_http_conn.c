/* ct-http connections on real loopback sockets: slow-loris and idle clients are closed, the
 * connection limit and running out of descriptors refuse with 503 and recover, and on_io_thread
 * routes answer pipelined requests in order, never block the I/O thread on a slow reader, and
 * give up on one that does not read. Nothing sleeps to synchronise. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>

#include "http_routes.h"

/* ---- deadlines and limits ------------------------------------------------------------------- */

static void test_slow_loris_gets_408_and_is_closed(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.header_timeout_ms = 150});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: "); /* and nothing more */
    struct tresp r = tread(c, 5000);
    assert_int_equal(408, r.status);
    assert_true(tserver_closes(c->fd, 5000));
    close(c->fd);
    free(c);
    stop(t);
}

static void test_idle_keep_alive_connection_is_closed(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.idle_timeout_ms = 100});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    tsend(c->fd, GET("/hello"));
    assert_int_equal(200, tread(c, 5000).status);
    assert_true(tserver_closes(c->fd, 5000));
    close(c->fd);
    free(c);
    stop(t);
}

static void test_connections_beyond_the_limit_are_refused(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.max_connections = 2});
    int a = tconnect(t->port), b = tconnect(t->port);
    ct_http_stats_t st;
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.open_connections == 2), 5000));
    struct tconn *cc = calloc(1, sizeof(*cc));
    cc->fd = tconnect(t->port); /* told why, then closed */
    struct tresp r = tread(cc, 5000);
    assert_int_equal(503, r.status);
    assert_true(r.closed);
    assert_non_null(strstr(r.body, "\"too many connections\""));
    assert_true(tserver_closes(cc->fd, 5000));
    tsend(a, GET("/hello"));
    struct tconn *ca = calloc(1, sizeof(*ca));
    ca->fd = a;
    assert_int_equal(200, tread(ca, 5000).status);
    ct_http_server_stats(t->s, &st);
    assert_int_equal(1, st.rejected);
    close(a);
    close(b);
    close(cc->fd);
    free(ca);
    free(cc);
    stop(t);
}

/* Out of file descriptors, a pending connection is refused at once (not left in the backlog
 * with the I/O thread spinning on it), and the server serves again once descriptors are back. */
static void test_out_of_descriptors_refuses_then_recovers(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1});
    /* Waiting on a descriptor takes one per thread, on first use: take it now. */
    int p[2];
    assert_int_equal(0, pipe(p));
    assert_int_equal(-ETIMEDOUT, ct_fd_wait(p[0], POLLIN, NULL, ct_deadline_after(1)));
    close(p[0]);
    close(p[1]);
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(probe >= 0);
    close(probe);
    low = old;
    low.rlim_cur = (rlim_t) probe + 64; /* what is open now, and a little room */
    assert_int_equal(0, setrlimit(RLIMIT_NOFILE, &low));
    int fill[128], nfill = 0;
    while (nfill < 128 && (fill[nfill] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nfill++;
    assert_int_equal(EMFILE, errno); /* the process is out of descriptors */
    close(fill[--nfill]);            /* room for the client's socket only */
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    struct tresp r = tread(c, 5000);
    assert_int_equal(503, r.status);
    close(c->fd);
    while (nfill > 0)
        close(fill[--nfill]);
    assert_int_equal(0, setrlimit(RLIMIT_NOFILE, &old));
    r = tget(t->port, GET("/hello"), 5000);
    assert_int_equal(200, r.status);
    ct_http_stats_t st;
    ct_http_server_stats(t->s, &st);
    assert_true(st.rejected >= 1);
    free(c);
    stop(t);
}

/* ---- on_io_thread routes ------------------------------------------------------------------- */

static void test_io_thread_route_answers_many_pipelined_requests_in_order(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1});
    struct tconn *c = calloc(1, sizeof(*c));
    c->fd = tconnect(t->port);
    /* More than one read's worth, mixed with pool routes: answered one after the other. */
    enum { N = 600 };
    static char burst[N * 64];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t) snprintf(burst + len, sizeof(burst) - len, "%s",
                                 i % 100 == 99 ? GET("/items/5") : GET("/here"));
    assert_int_equal((ssize_t) len, ct_write(c->fd, burst, len, NULL, -1));
    for (int i = 0; i < N; i++) {
        struct tresp r = tread(c, 5000);
        assert_int_equal(200, r.status);
        assert_string_equal(i % 100 == 99 ? "id=5 rows=10\n" : "hello\n", r.body);
    }
    ct_http_stats_t st; /* counted once answered: the last one may still be counting */
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.requests == N), 5000));
    close(c->fd);
    free(c);
    stop(t);
}

/* Read a /big answer on `fd` and check every byte. */
static void read_big(int fd)
{
    static char head[4096];
    size_t hlen = 0;
    int64_t deadline = ct_deadline_after(20000 * ct_test_scale());
    char *end = NULL;
    while (!end) {
        ssize_t n = ct_read(fd, head + hlen, 1, NULL, deadline); /* byte by byte: head only */
        assert_int_equal(1, n);
        hlen++;
        head[hlen] = '\0';
        end = hlen >= 4 ? strstr(head, "\r\n\r\n") : NULL;
    }
    assert_int_equal(200, atoi(head + 9));
    assert_non_null(strcasestr(head, "Content-Length: 16777216"));
    static unsigned char chunk[1 << 16];
    size_t got = 0;
    while (got < BIG_LEN) {
        size_t want = BIG_LEN - got < sizeof(chunk) ? BIG_LEN - got : sizeof(chunk);
        ssize_t n = ct_read(fd, chunk, want, NULL, deadline);
        assert_true(n > 0);
        for (ssize_t i = 0; i < n; i++)
            if (chunk[i] != (unsigned char) ((got + (size_t) i) * 7))
                fail_msg("byte %zu is wrong", got + (size_t) i);
        got += (size_t) n;
    }
}

/* A client slow to read a big answer holds only its own connection: the I/O thread goes on
 * serving others, then finishes the answer, and the connection is kept alive after it. */
static void test_io_thread_route_big_answer_blocks_nobody(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1});
    int a = tconnect(t->port);
    tsend(a, GET("/big"));
    ct_http_stats_t st;
    /* Its answer is not all written until it reads: it stays in flight. */
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 1), 5000));
    for (int i = 0; i < 3; i++) {
        struct tresp r = tget(t->port, GET("/here"), 5000);
        assert_int_equal(200, r.status);
    }
    /* Each answer is sent before its request is counted out: wait for the count to settle. */
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 1), 5000));
    assert_true(st.open_connections >= 1);
    read_big(a);
    struct tconn *ca = calloc(1, sizeof(*ca));
    ca->fd = a;
    tsend(a, GET("/here"));
    struct tresp r = tread(ca, 5000);
    assert_int_equal(200, r.status);
    assert_false(r.closed);
    close(a);
    free(ca);
    stop(t);
}

/* A client that never reads its answer is closed after write_timeout_ms. */
static void test_io_thread_route_gives_up_on_a_client_that_does_not_read(void **state)
{
    struct tsrv *t = start((ct_http_options_t){.io_threads = 1, .write_timeout_ms = 200});
    int a = tconnect(t->port);
    tsend(a, GET("/big"));
    ct_http_stats_t st;
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.in_flight == 1), 5000));
    int64_t t0 = ct_now_ms();
    assert_true(CT_WAIT_FOR((ct_http_server_stats(t->s, &st), st.open_connections == 0), 10000));
    assert_true(ct_now_ms() - t0 >= 150); /* given its write timeout first, not closed at once */
    assert_int_equal(0, st.in_flight);
    assert_true(tserver_closes(a, 5000));
    assert_int_equal(200, tget(t->port, GET("/here"), 5000).status);
    close(a);
    stop(t);
}

CT_TEST_MAIN(cmocka_unit_test(test_slow_loris_gets_408_and_is_closed),
             cmocka_unit_test(test_idle_keep_alive_connection_is_closed),
             cmocka_unit_test(test_connections_beyond_the_limit_are_refused),
             cmocka_unit_test(test_out_of_descriptors_refuses_then_recovers),
             cmocka_unit_test(test_io_thread_route_answers_many_pipelined_requests_in_order),
             cmocka_unit_test(test_io_thread_route_big_answer_blocks_nobody),
             cmocka_unit_test(test_io_thread_route_gives_up_on_a_client_that_does_not_read))
