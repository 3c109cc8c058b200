/* wait_port: wait until 127.0.0.1:PORT accepts connections, polling connect() every 10 ms for
 * at most MS milliseconds (default 10000). Exit status 0 once a connection succeeded, 1 if the
 * time ran out. With --free, print the first loopback port from FROM (default 20000, below the
 * ephemeral range that the clients' connections use) that can be bound now, for a server about
 * to be started.
 *
 *   wait_port PORT [MS]
 *   wait_port --free [FROM] */
#define _GNU_SOURCE
#include "bench_http.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: wait_port PORT [MS]\n", stderr);
        return 2;
    }
    if (strcmp(argv[1], "--free") == 0) {
        int from = argc > 2 ? atoi(argv[2]) : 20000;
        for (int port = from; port < from + 1000 && port < 65536; port++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            int ok = fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
            if (fd >= 0)
                close(fd);
            if (ok) {
                printf("%d\n", port);
                return 0;
            }
        }
        return 1;
    }
    int port = atoi(argv[1]), ms = argc > 2 ? atoi(argv[2]) : 10000;
    int64_t deadline = bench_now_ns() + (int64_t) ms * 1000000;
    do {
        int fd = bh_connect_nb(port);
        if (fd >= 0) {
            bool ok = (bh_poll1(fd, POLLOUT, 1000) & POLLOUT) && bh_connect_result(fd) == 0;
            close(fd);
            if (ok)
                return 0;
        }
        bh_sleep_ms(10);
    } while (bench_now_ns() < deadline);
    fprintf(stderr, "wait_port: nothing accepts on 127.0.0.1:%d after %d ms\n", port, ms);
    return 1;
}
