/* bench_http_parser: the cost of ct-http's request parser (src/http/parser.c) per request.
 *
 *   1. ct__http_parse_head on a typical browser-like GET of about 300 bytes (7 fields);
 *   2. the same head arriving in 4 reads: the parser is pure, so each read parses from the first
 *      byte again, and the figure is the sum of the 4 calls;
 *   3. a minimal "GET / HTTP/1.1" with Host only;
 *   4. ct__http_chunked_decode on a 4 KiB body in 8 chunks (with extensions on one of them);
 * next to a reference for 1: glibc's memmem finding the blank line in the same bytes, the one thing
 * every parser must do (a reference, not a floor: a SIMD scan would be faster still). Each figure
 * is the median of 9 batches.   bench_http_parser [--quick] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "parser.h"

#define REPS 9

static long iters = 2000000;
static volatile size_t sink;

static const char typical[] =
    "GET /api/v1/users/12345/orders?limit=20&offset=40 HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36\r\n"
    "Accept: application/json\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cookie: session=3f2a9c0d1e\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static const char minimal[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

static const struct ct__http_limits limits = {
    .max_request_line = 8192,
    .max_header_bytes = 16384,
    .max_headers = 100,
    .max_body = 1 << 20,
};

static struct ct__http_head head;

/* ns per call of fn over `iters` calls, the median of REPS batches. */
static double measure(void (*fn)(void))
{
    double v[REPS];
    for (int r = 0; r < REPS; r++) {
        int64_t t0 = bench_now_ns();
        for (long i = 0; i < iters; i++)
            fn();
        v[r] = (double) (bench_now_ns() - t0) / (double) iters;
    }
    return bench_median(v, REPS);
}

static void parse_typical(void)
{
    sink += (size_t) ct__http_parse_head(typical, sizeof(typical) - 1, &limits, &head);
}

static void parse_in_four_reads(void)
{
    size_t len = sizeof(typical) - 1;
    for (size_t k = 1; k <= 4; k++)
        sink += (size_t) ct__http_parse_head(typical, len * k / 4, &limits, &head);
}

static void parse_minimal(void)
{
    sink += (size_t) ct__http_parse_head(minimal, sizeof(minimal) - 1, &limits, &head);
}

static void reference_memmem(void)
{
    const char *e = memmem(typical, sizeof(typical) - 1, "\r\n\r\n", 4);
    sink += (size_t) (e - typical);
}

static char chunked[4096 + 256], out[4096];
static size_t chunked_len;

static void decode_body(void)
{
    struct ct__http_chunked c = {0};
    size_t out_len = 0;
    bool done = false;
    long n = ct__http_chunked_decode(&c, chunked, chunked_len, out, sizeof(out), &out_len, &limits,
                                     &done);
    if (n != (long) chunked_len || !done || out_len != sizeof(out))
        abort();
    sink += out_len;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--quick") == 0)
        iters /= 10;

    /* Every input must parse, or the figures would time an early error. */
    int r = ct__http_parse_head(typical, sizeof(typical) - 1, &limits, &head);
    if (r != (int) sizeof(typical) - 1 || head.nfields != 7) {
        fprintf(stderr, "bench_http_parser: the typical request does not parse (%d)\n", r);
        return 1;
    }
    for (int i = 0; i < 8; i++) {
        chunked_len +=
            (size_t) sprintf(chunked + chunked_len, i == 3 ? "200;name=value\r\n" : "200\r\n");
        memset(chunked + chunked_len, 'a' + i, 512);
        chunked_len += 512;
        chunked_len += (size_t) sprintf(chunked + chunked_len, "\r\n");
    }
    chunked_len += (size_t) sprintf(chunked + chunked_len, "0\r\n\r\n");

    double typ = measure(parse_typical), four = measure(parse_in_four_reads);
    double min = measure(parse_minimal), ref = measure(reference_memmem);
    double body = measure(decode_body);
    size_t tl = sizeof(typical) - 1;
    printf("| operation | ns | per byte |\n|---|---:|---:|\n");
    printf("| parse a %zu-byte GET head, 7 fields | %.1f | %.2f ns (%.0f MB/s) |\n", tl, typ,
           typ / (double) tl, (double) tl / typ * 1e3);
    printf("| the same head in 4 reads (4 calls, sum) | %.1f | — |\n", four);
    printf("| parse a %zu-byte GET head, Host only | %.1f | %.2f ns |\n", sizeof(minimal) - 1, min,
           min / (double) (sizeof(minimal) - 1));
    printf("| reference: memmem for the blank line in the %zu bytes | %.1f | %.2f ns |\n", tl, ref,
           ref / (double) tl);
    printf("| decode a 4 KiB chunked body, 8 chunks | %.1f | %.2f ns (%.0f MB/s) |\n", body,
           body / (double) chunked_len, (double) chunked_len / body * 1e3);
    return 0;
}
