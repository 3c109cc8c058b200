/* idle_conns: hold K idle connections open to a server while something else measures it.
 *
 *   idle_conns --port P --count K [--request PATH] [--max-seconds 900]
 *
 * Opens K connections to 127.0.0.1:P, at most 256 connecting at a time. Without --request they
 * send nothing; with it each sends one "GET PATH" and reads its answer first, so that it is an
 * idle keep-alive connection between requests. Then prints one line
 *     ready open=N failed=F
 * and holds them until its standard input reaches end-of-file or says "stop", SIGTERM or SIGINT
 * arrives, or --max-seconds pass; then prints
 *     stopped open=N closed_by_server=M
 * (a connection the server closed meanwhile reads end-of-file or an error) and closes them all.
 * As root it raises its own RLIMIT_NOFILE to fit K. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/epoll.h>

#include "bench_http.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void) sig;
    stop = 1;
}

/* Read one complete response (head + Content-Length body) from a blocking-polled fd. */
static int read_response(int fd, int timeout_ms)
{
    char buf[4096];
    size_t len = 0;
    int64_t deadline = bench_now_ns() + (int64_t) timeout_ms * 1000000;
    for (;;) {
        int left = (int) ((deadline - bench_now_ns()) / 1000000);
        if (left <= 0 || !(bh_poll1(fd, POLLIN, left) & (POLLIN | POLLHUP | POLLERR)))
            return -ETIMEDOUT;
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return -EPIPE;
        len += (size_t) n;
        buf[len] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        const char *cl = strcasestr(buf, "\r\ncontent-length:");
        size_t body = cl && cl < end ? (size_t) strtoul(cl + 17, NULL, 10) : 0;
        if (len >= (size_t) (end + 4 - buf) + body)
            return 0;
        if (len >= sizeof(buf) - 1)
            return -EMSGSIZE;
    }
}

int main(int argc, char **argv)
{
    int port = 0, count = 0, max_seconds = 900;
    const char *request = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--count") == 0)
            count = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--request") == 0)
            request = argv[i + 1];
        else if (strcmp(argv[i], "--max-seconds") == 0)
            max_seconds = atoi(argv[i + 1]);
    }
    if (port <= 0 || count < 0 || count > 100000 || max_seconds < 1) {
        fputs("usage: idle_conns --port P --count K [--request PATH] [--max-seconds 900]\n",
              stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (bh_raise_nofile((rlim_t) count + 64) < (rlim_t) count + 16) {
        fprintf(stderr, "idle_conns: cannot open %d files (RLIMIT_NOFILE)\n", count);
        return 1;
    }
    int *fds = calloc((size_t) count + 1, sizeof(int));
    int open_n = 0, failed = 0;
    char req[512];
    int reqlen =
        request ? snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", request)
                : 0;
    /* Connect in waves of 256, so that the listen queue never overflows (a dropped SYN is
     * retried a second later and would stretch the setup). */
    for (int first = 0; first < count && !stop; first += 256) {
        int last = first + 256 < count ? first + 256 : count;
        for (int k = first; k < last; k++)
            fds[k] = bh_connect_nb(port);
        for (int k = first; k < last; k++) {
            if (fds[k] < 0 || !(bh_poll1(fds[k], POLLOUT, 5000) & POLLOUT) ||
                bh_connect_result(fds[k]) < 0) {
                if (fds[k] >= 0)
                    close(fds[k]);
                fds[k] = -1;
                failed++;
                continue;
            }
            if (reqlen) {
                if (send(fds[k], req, (size_t) reqlen, MSG_NOSIGNAL) != reqlen ||
                    read_response(fds[k], 5000) < 0) {
                    close(fds[k]);
                    fds[k] = -1;
                    failed++;
                    continue;
                }
            }
            open_n++;
        }
    }
    printf("ready open=%d failed=%d\n", open_n, failed);
    fflush(stdout);

    /* Hold until told to stop, polling stdin only (the connections need nothing from us). */
    int64_t deadline = bench_now_ns() + (int64_t) max_seconds * 1000000000;
    while (!stop && bench_now_ns() < deadline) {
        int revents = bh_poll1(0, POLLIN, 500);
        if (revents & (POLLIN | POLLHUP)) {
            char line[64];
            ssize_t n = read(0, line, sizeof(line) - 1);
            if (n <= 0)
                break;
            line[n] = '\0';
            if (strstr(line, "stop"))
                break;
        } else if (revents & (POLLNVAL | POLLERR)) {
            break;
        }
    }
    int still = 0, gone = 0;
    for (int k = 0; k < count; k++) {
        if (fds[k] < 0)
            continue;
        char b;
        ssize_t n = recv(fds[k], &b, 1, MSG_DONTWAIT | MSG_PEEK);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            gone++;
        else
            still++;
        close(fds[k]);
    }
    printf("stopped open=%d closed_by_server=%d\n", still, gone);
    fflush(stdout);
    free(fds);
    return 0;
}
