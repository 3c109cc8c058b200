/* Socket helpers on real loopback sockets: data moves, and every wait stops on the token or the
 * deadline. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ct/time.h"
#include "ct/token.h"
#include "ct/wait.h"
#include "testutil.h"

static void pair(int sv[2])
{
    assert_int_equal(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
}

static int listen_loopback(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(0, bind(fd, (struct sockaddr *) addr, sizeof(*addr)));
    assert_int_equal(0, listen(fd, 16));
    socklen_t len = sizeof(*addr);
    assert_int_equal(0, getsockname(fd, (struct sockaddr *) addr, &len));
    return fd;
}

struct io {
    ct_sem_t started;
    int fd;
    const ct_token_t *tok;
    int64_t deadline;
    char *buf;
    size_t len;
    ssize_t rc;
};

static void io_init(struct io *io, int fd, const ct_token_t *tok)
{
    *io = (struct io){.fd = fd, .tok = tok, .deadline = -1};
    ct_sem_init(&io->started, 0);
}

static void test_read_returns_available_data(void **state)
{
    int sv[2];
    pair(sv);
    char buf[16];
    assert_int_equal(5, write(sv[1], "hello", 5));
    assert_int_equal(5, ct_read(sv[0], buf, sizeof(buf), NULL, -1));
    assert_memory_equal("hello", buf, 5);
    close(sv[1]);
    assert_int_equal(0, ct_read(sv[0], buf, sizeof(buf), NULL, -1)); /* end of stream */
    close(sv[0]);
}

static void *read_thread(void *arg)
{
    struct io *io = arg;
    char buf[64];
    ct_sem_post(&io->started);
    io->rc = ct_read(io->fd, buf, sizeof(buf), io->tok, io->deadline);
    return NULL;
}

static void test_read_returns_ecanceled_when_the_token_fires(void **state)
{
    int sv[2];
    pair(sv);
    ct_source_t *s;
    ct_source_new(&s);
    struct io io;
    io_init(&io, sv[0], ct_source_token(s));
    ct_test_thread_t *th = ct_test_thread_start(read_thread, &io);
    ct_sem_wait(&io.started, NULL, -1);
    ct_source_cancel(s, CT_CLIENT_ABORTED, NULL);
    ct_test_thread_join(th);
    assert_int_equal(-ECANCELED, io.rc);
    ct_source_free(s);
    ct_sem_destroy(&io.started);
    close(sv[0]);
    close(sv[1]);
}

static void test_read_times_out(void **state)
{
    int sv[2];
    pair(sv);
    char buf[4];
    int64_t start = ct_now_ms();
    assert_int_equal(-ETIMEDOUT, ct_read(sv[0], buf, sizeof(buf), NULL, start + 20));
    assert_true(ct_now_ms() >= start + 20);
    close(sv[0]);
    close(sv[1]);
}

static void test_canceled_token_starts_no_io(void **state)
{
    int sv[2];
    pair(sv);
    ct_source_t *s;
    ct_source_new(&s);
    ct_source_cancel(s, CT_CANCELED, NULL);
    char buf[4];
    assert_int_equal(1, write(sv[1], "x", 1));
    assert_int_equal(-ECANCELED, ct_read(sv[0], buf, sizeof(buf), ct_source_token(s), -1));
    assert_int_equal(-ECANCELED, ct_write(sv[0], "y", 1, ct_source_token(s), -1));
    assert_int_equal(1, read(sv[0], buf, sizeof(buf))); /* the byte is still there */
    ct_source_free(s);
    close(sv[0]);
    close(sv[1]);
}

static void *drain_thread(void *arg)
{
    struct io *io = arg;
    size_t got = 0;
    ssize_t n;
    while ((n = ct_read(io->fd, io->buf + got, io->len - got, NULL, -1)) > 0)
        got += (size_t) n;
    io->rc = (ssize_t) got;
    return NULL;
}

static void test_write_sends_everything(void **state)
{
    int sv[2];
    pair(sv);
    size_t len = 4 << 20;
    char *out = malloc(len), *in = malloc(len);
    for (size_t i = 0; i < len; i++)
        out[i] = (char) (i * 31);
    struct io io;
    io_init(&io, sv[1], NULL);
    io.buf = in;
    io.len = len;
    ct_test_thread_t *th = ct_test_thread_start(drain_thread, &io);
    assert_int_equal((ssize_t) len, ct_write(sv[0], out, len, NULL, -1));
    close(sv[0]);
    ct_test_thread_join(th);
    assert_int_equal((ssize_t) len, io.rc);
    assert_memory_equal(out, in, len);
    free(out);
    free(in);
    ct_sem_destroy(&io.started);
    close(sv[1]);
}

static void *write_thread(void *arg)
{
    struct io *io = arg;
    ct_sem_post(&io->started);
    io->rc = ct_write(io->fd, io->buf, io->len, io->tok, io->deadline);
    return NULL;
}

static void test_write_to_a_stalled_peer_is_canceled(void **state)
{
    int sv[2];
    pair(sv);
    ct_source_t *s;
    ct_source_new(&s);
    struct io io;
    io_init(&io, sv[0], ct_source_token(s));
    io.len = 16 << 20; /* far more than the socket buffers hold */
    io.buf = calloc(1, io.len);
    ct_test_thread_t *th = ct_test_thread_start(write_thread, &io);
    ct_sem_wait(&io.started, NULL, -1);
    ct_source_cancel(s, CT_TIMEOUT, NULL);
    ct_test_thread_join(th);
    assert_int_equal(-ECANCELED, io.rc);
    free(io.buf);
    ct_source_free(s);
    ct_sem_destroy(&io.started);
    close(sv[0]);
    close(sv[1]);
}

static void test_write_to_a_closed_peer_is_epipe(void **state)
{
    int sv[2];
    pair(sv);
    close(sv[1]);
    assert_int_equal(-EPIPE, ct_write(sv[0], "x", 1, NULL, -1)); /* no SIGPIPE either */
    close(sv[0]);
}

static void test_connect_and_accept_on_loopback(void **state)
{
    struct sockaddr_in addr;
    int lfd = listen_loopback(&addr);
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(
        0, ct_connect(cfd, (struct sockaddr *) &addr, sizeof(addr), NULL, ct_deadline_after(5000)));
    int afd = ct_accept(lfd, NULL, NULL, NULL, ct_deadline_after(5000));
    assert_true(afd >= 0);
    assert_true(fcntl(afd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(afd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(4, ct_write(cfd, "ping", 4, NULL, -1));
    char buf[8];
    assert_int_equal(4, ct_read(afd, buf, sizeof(buf), NULL, ct_deadline_after(5000)));
    assert_memory_equal("ping", buf, 4);
    close(afd);
    close(cfd);
    close(lfd);
}

static void *accept_thread(void *arg)
{
    struct io *io = arg;
    ct_sem_post(&io->started);
    io->rc = ct_accept(io->fd, NULL, NULL, io->tok, io->deadline);
    return NULL;
}

static void test_accept_returns_ecanceled_when_the_token_fires(void **state)
{
    struct sockaddr_in addr;
    int lfd = listen_loopback(&addr);
    ct_source_t *s;
    ct_source_new(&s);
    struct io io;
    io_init(&io, lfd, ct_source_token(s));
    ct_test_thread_t *th = ct_test_thread_start(accept_thread, &io);
    ct_sem_wait(&io.started, NULL, -1);
    ct_source_cancel(s, CT_SHUTDOWN, NULL);
    ct_test_thread_join(th);
    assert_int_equal(-ECANCELED, io.rc);
    ct_source_free(s);
    ct_sem_destroy(&io.started);
    close(lfd);
}

static void test_accept_times_out(void **state)
{
    struct sockaddr_in addr;
    int lfd = listen_loopback(&addr);
    assert_int_equal(-ETIMEDOUT, ct_accept(lfd, NULL, NULL, NULL, ct_deadline_after(20)));
    close(lfd);
}

static void test_connect_to_a_closed_port_is_refused(void **state)
{
    struct sockaddr_in addr;
    int lfd = listen_loopback(&addr);
    close(lfd); /* the port is now closed */
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(-ECONNREFUSED, ct_connect(cfd, (struct sockaddr *) &addr, sizeof(addr), NULL,
                                               ct_deadline_after(5000)));
    close(cfd);
}

static void test_writev_sends_every_buffer_in_order(void **state)
{
    int sv[2];
    pair(sv);
    size_t len = 3 << 20;
    char *in = malloc(len), *out = malloc(len);
    for (size_t i = 0; i < len; i++)
        out[i] = (char) (i * 7);
    struct iovec iov[5] = {{out, 10},
                           {out + 10, 0},
                           {out + 10, len / 2},
                           {out + 10 + len / 2, 1},
                           {out + 11 + len / 2, len - 11 - len / 2}};
    struct io io;
    io_init(&io, sv[1], NULL);
    io.buf = in;
    io.len = len;
    ct_test_thread_t *th = ct_test_thread_start(drain_thread, &io);
    assert_int_equal((ssize_t) len, ct_writev(sv[0], iov, 5, NULL, -1));
    close(sv[0]);
    ct_test_thread_join(th);
    assert_int_equal((ssize_t) len, io.rc);
    assert_memory_equal(out, in, len);
    assert_int_equal(10, iov[0].iov_len); /* the caller's array is left alone */
    assert_int_equal(-EINVAL, ct_writev(sv[1], iov, -1, NULL, -1));
    free(in);
    free(out);
    ct_sem_destroy(&io.started);
    close(sv[1]);
}

CT_TEST_MAIN(cmocka_unit_test(test_read_returns_available_data),
             cmocka_unit_test(test_read_returns_ecanceled_when_the_token_fires),
             cmocka_unit_test(test_read_times_out),
             cmocka_unit_test(test_canceled_token_starts_no_io),
             cmocka_unit_test(test_write_sends_everything),
             cmocka_unit_test(test_writev_sends_every_buffer_in_order),
             cmocka_unit_test(test_write_to_a_stalled_peer_is_canceled),
             cmocka_unit_test(test_write_to_a_closed_peer_is_epipe),
             cmocka_unit_test(test_connect_and_accept_on_loopback),
             cmocka_unit_test(test_accept_returns_ecanceled_when_the_token_fires),
             cmocka_unit_test(test_accept_times_out),
             cmocka_unit_test(test_connect_to_a_closed_port_is_refused))
