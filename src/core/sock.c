/* Socket and fd helpers that wait through ct_fd_wait(), so every one of them stops when the
 * token fires or the deadline passes. Sockets are used with MSG_DONTWAIT, so a blocking socket
 * is fine too; other fds fall back to read()/write() and must be non-blocking. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ct/wait.h"
#include "internal.h"
#include "park.h"

/* One read or write on `fd` that moves at least one byte, waiting for readiness (`out`: for
 * POLLOUT) while it would block. Sockets use recv/send with MSG_DONTWAIT (and MSG_NOSIGNAL);
 * the first ENOTSOCK switches *sock off for read/write. Returns bytes moved or negative errno. */
static ssize_t io_step(int fd, void *buf, size_t len, bool out, bool *sock, const ct_token_t *tok,
                       int64_t deadline)
{
    for (;;) {
        if (ct_token_canceled(tok))
            return -ECANCELED;
        ssize_t n;
        if (out)
            n = *sock ? send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) : write(fd, buf, len);
        else
            n = *sock ? recv(fd, buf, len, MSG_DONTWAIT) : read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == ENOTSOCK && *sock) {
            *sock = false;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = ct_fd_wait(fd, out ? POLLOUT : POLLIN, tok, deadline);
        if (rc < 0)
            return rc;
    }
}

ssize_t ct_read(int fd, void *buf, size_t len, const ct_token_t *tok, int64_t deadline)
{
    if (!ct__deadline_valid(deadline))
        return -EINVAL;
    bool sock = true;
    return io_step(fd, buf, len, false, &sock, tok, deadline);
}

ssize_t ct_write(int fd, const void *buf, size_t len, const ct_token_t *tok, int64_t deadline)
{
    if (len > SSIZE_MAX || !ct__deadline_valid(deadline))
        return -EINVAL;
    bool sock = true;
    for (size_t done = 0; done < len;) {
        ssize_t n = io_step(fd, (char *) buf + done, len - done, true, &sock, tok, deadline);
        if (n < 0)
            return n;
        done += (size_t) n;
    }
    if (len == 0 && ct_token_canceled(tok))
        return -ECANCELED;
    return (ssize_t) len;
}

ssize_t ct_writev(int fd, const struct iovec *iov, int iovcnt, const ct_token_t *tok,
                  int64_t deadline)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov) || !ct__deadline_valid(deadline))
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SSIZE_MAX - total)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    struct iovec local[64], *v = local;
    if (iovcnt > 64 && !(v = ct__malloc(sizeof(*v) * (size_t) iovcnt)))
        return -ENOMEM;
    memcpy(v, iov, sizeof(*v) * (size_t) iovcnt);
    bool sock = true;
    size_t done = 0;
    int first = 0;
    ssize_t rc = (ssize_t) total;
    while (done < total) {
        if (ct_token_canceled(tok)) {
            rc = -ECANCELED;
            break;
        }
        ssize_t n;
        if (sock) {
            struct msghdr mh = {.msg_iov = v + first, .msg_iovlen = (size_t) (iovcnt - first)};
            n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            n = writev(fd, v + first, iovcnt - first);
        }
        if (n < 0) {
            if (errno == ENOTSOCK && sock) {
                sock = false;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rc = -errno;
                break;
            }
            int w = ct_fd_wait(fd, POLLOUT, tok, deadline);
            if (w < 0) {
                rc = w;
                break;
            }
            continue;
        }
        done += (size_t) n;
        while (first < iovcnt && (size_t) n >= v[first].iov_len) { /* skip what went out */
            n -= (ssize_t) v[first].iov_len;
            first++;
        }
        if (first < iovcnt) {
            v[first].iov_base = (char *) v[first].iov_base + n;
            v[first].iov_len -= (size_t) n;
        }
    }
    if (total == 0 && ct_token_canceled(tok))
        rc = -ECANCELED;
    if (v != local)
        ct__free(v);
    return rc;
}

/* Make `fd` non-blocking if it is not: a blocking connect() or accept() could not be canceled. */
static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int ct_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, const ct_token_t *tok,
               int64_t deadline)
{
    if (!ct__deadline_valid(deadline))
        return -EINVAL;
    if (ct_token_canceled(tok))
        return -ECANCELED;
    int rc = set_nonblocking(fd);
    if (rc < 0)
        return rc;
    if (connect(fd, addr, addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return -errno;
    if ((rc = ct_fd_wait(fd, POLLOUT, tok, deadline)) < 0)
        return rc;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

int ct_accept(int lfd, struct sockaddr *addr, socklen_t *addrlen, const ct_token_t *tok,
              int64_t deadline)
{
    if (!ct__deadline_valid(deadline))
        return -EINVAL;
    int rc = set_nonblocking(lfd);
    if (rc < 0)
        return rc;
    for (;;) {
        if (ct_token_canceled(tok))
            return -ECANCELED;
        int fd = accept4(lfd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if ((rc = ct_fd_wait(lfd, POLLIN, tok, deadline)) < 0)
            return rc;
    }
}
