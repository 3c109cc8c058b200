/* The chunked body decoder of ct-http (src/http/parser.h): each body is also decoded split at
 * every byte boundary, each piece a heap copy of exactly its size, so reading past what a call
 * was given is caught by ASan and a split never changes the outcome. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"
#include "testutil.h"

static const struct ct__http_limits lim = {
    .max_request_line = 8192,
    .max_header_bytes = 16384,
    .max_headers = 100,
    .max_body = 1 << 20,
};

/* ---- chunked bodies ------------------------------------------------------------------------- */

struct decoded {
    long rc;         /* the last call's return value */
    size_t consumed; /* bytes consumed over all calls */
    bool done;
    size_t out_len;
    char out[256];
    struct ct__http_chunked c;
};

/* Decode in[0..len) in pieces of `step` bytes (0: at once), each piece a heap copy of exactly its
 * size; the bytes a call does not consume are given again with the next piece, as a server that
 * keeps unconsumed input in its buffer does. */
static struct decoded decode_with(const char *in, size_t len, size_t step,
                                  const struct ct__http_limits *l)
{
    struct decoded d = {0};
    size_t avail = step ? (step < len ? step : len) : len;
    for (;;) {
        size_t n = avail - d.consumed;
        char *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, in + d.consumed, n);
        d.rc = ct__http_chunked_decode(&d.c, copy, n, d.out, sizeof(d.out), &d.out_len, l, &d.done);
        free(copy);
        if (d.rc < 0 || d.done || avail == len)
            break;
        d.consumed += (size_t) d.rc;
        avail = avail + step < len ? avail + step : len;
    }
    if (d.rc > 0 && d.done)
        d.consumed += (size_t) d.rc;
    return d;
}

static struct decoded decode(const char *in)
{
    return decode_with(in, strlen(in), 0, &lim);
}

/* `in` is one complete chunked body, possibly followed by more bytes: it decodes to `data`, and
 * so it does when split at every byte boundary and fed one byte at a time. */
static void decodes_to_with(const char *in, size_t body_len, const char *data,
                            const struct ct__http_limits *l)
{
    size_t len = strlen(in);
    for (size_t step = 0; step <= len; step++) {
        struct decoded d = decode_with(in, len, step, l);
        if (!d.done || d.consumed != body_len || d.out_len != strlen(data) ||
            memcmp(d.out, data, d.out_len) != 0)
            fail_msg("step %zu: rc %ld done %d consumed %zu (want %zu) out \"%.*s\" (want \"%s\")",
                     step, d.rc, d.done, d.consumed, body_len, (int) d.out_len, d.out, data);
        assert_int_equal(strlen(data), d.c.total);
    }
}

static void decodes_to(const char *in, size_t body_len, const char *data)
{
    decodes_to_with(in, body_len, data, &lim);
}

/* `in` fails with `status`, whichever way it is split. */
static void decode_fails(long status, const char *in, const struct ct__http_limits *l)
{
    size_t len = strlen(in);
    for (size_t step = 0; step <= len; step++) {
        struct decoded d = decode_with(in, len, step, l);
        if (d.rc != status)
            fail_msg("step %zu: got %ld (done %d), expected %ld for \"%s\"", step, d.rc, d.done,
                     status, in);
    }
}

static void test_chunked_decodes_chunks_up_to_the_last_chunk(void **state)
{
    const char *body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    decodes_to(body, strlen(body), "hello world");
    decodes_to("a\r\n0123456789\r\nA\r\n0123456789\r\n000\r\n\r\n", 37, "01234567890123456789");
    decodes_to("0\r\n\r\n", 5, "");
}

static void test_chunked_leaves_the_next_request_unconsumed(void **state)
{
    const char *in = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    decodes_to(in, 13, "abc");
    /* Once done, it consumes nothing more. */
    struct decoded d = decode(in);
    bool done = false;
    assert_int_equal(
        0, ct__http_chunked_decode(&d.c, "GET", 3, d.out, sizeof(d.out), &d.out_len, &lim, &done));
    assert_true(done);
}

static void test_chunk_extensions_are_read_and_ignored(void **state)
{
    decodes_to("5;a\r\nhello\r\n0;b=c\r\n\r\n", 21, "hello");
    decodes_to("5;ilovew3=\"I \\\"love\\\"; \\\\extensions\\\\\";somuchlove=\"x\";blah;foo=bar\r\n"
               "hello\r\n0\r\n\r\n",
               80, "hello");
    /* BWS where RFC 9112 7.1.1 has it: around ';' and '='. */
    decodes_to("5 ;a = b ; c\r\nhello\r\n0\t;\td\r\n\r\n", 30, "hello");
    decodes_to("5;a=\"\xff\"\r\nhello\r\n0\r\n\r\n", 21, "hello");
}

static void test_malformed_chunk_extensions_are_400(void **state)
{
    const char *bad[] = {"5;\r\n",           "5 \r\n",      "5;a=\r\n",          "5;a=\"x\r\n",
                         "5;a b\r\n",        "5;a=b \r\n",  "5;=b\r\n",          "5;a=\"x\" \r\n",
                         "5;a=\"\x01\"\r\n", "5;a=b=c\r\n", "5;a=\"x\\\n\"\r\n", "5;a@\r\n",
                         "5 erfrferferf\r\n"};
    char in[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(in, sizeof(in), "%shello\r\n0\r\n\r\n", bad[i]);
        decode_fails(-400, in, &lim);
    }
}

static void test_trailers_are_checked_and_dropped(void **state)
{
    decodes_to("5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\nX:\r\n\r\n", 54, "hello");
    decodes_to("0\r\nX: D\xc3\xbc \t\r\n\r\n", 15, "");
    decode_fails(-400, "0\r\nX: a\r\n b\r\n\r\n", &lim);
    decode_fails(-400, "0\r\nX : a\r\n\r\n", &lim);
    decode_fails(-400, "0\r\nX: a\nY: b\r\n\r\n", &lim);
    decode_fails(-400, "0\r\nX: a\x7f\r\n\r\n", &lim);
    decode_fails(-400, "0\r\nNoColon\r\n\r\n", &lim);
    decode_fails(-400, "0\r\n: x\r\n\r\n", &lim);
    decode_fails(-400, "0\r\n\n", &lim);
    decode_fails(-400, "0\r\n\rX", &lim);
}

static void test_chunked_split_at_every_byte_boundary(void **state)
{
    const char *in =
        "4;x=\"y\"\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n";
    size_t len = strlen(in);
    /* decodes_to() feeds every step size; here every split into exactly two calls. */
    decodes_to(in, len, "Wikipedia in\r\n\r\nchunks.");
    for (size_t k = 0; k <= len; k++) {
        struct ct__http_chunked c = {0};
        char out[64];
        size_t out_len = 0;
        bool done = false;
        long a = ct__http_chunked_decode(&c, in, k, out, sizeof(out), &out_len, &lim, &done);
        assert_int_equal((long) k, a);
        assert_false(done && k < len);
        long b =
            ct__http_chunked_decode(&c, in + k, len - k, out, sizeof(out), &out_len, &lim, &done);
        assert_int_equal((long) (len - k), b);
        assert_true(done);
        assert_int_equal(23, out_len);
        assert_memory_equal("Wikipedia in\r\n\r\nchunks.", out, 23);
    }
}

static void test_invalid_chunk_sizes_are_400(void **state)
{
    const char *bad[] = {"x\r\n",       "\r\n",         "-1\r\n",         " 5\r\n",
                         "5\n",         "5\r\r",        "0x5\r\n",        "+5\r\n",
                         "5\r\nhelloX", "5\r\nhello\n", "5\r\nhello\r\r", "3\r\nfoo\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        decode_fails(-400, bad[i], &lim);
}

static void test_chunk_size_overflow_is_400(void **state)
{
    struct ct__http_limits l = lim;
    l.max_body = UINT64_MAX;
    decode_fails(-400, "10000000000000000\r\n", &l);
    decode_fails(-400, "FFFFFFFFFFFFFFFFF\r\n", &lim);
    /* Leading zeros are not an overflow. */
    decodes_to("00000000000000000000005\r\nhello\r\n0\r\n\r\n", 37, "hello");
}

static void test_chunked_body_above_max_body_is_413(void **state)
{
    struct ct__http_limits l = lim;
    l.max_body = 10;
    /* Exactly max_body is fine... */
    struct decoded d = decode_with("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 25, 0, &l);
    assert_true(d.done);
    assert_int_equal(10, d.out_len);
    /* ...one byte more is 413, at the size line, before any of its data arrives. */
    decode_fails(-413, "5\r\nhello\r\n6\r\n", &l);
    decode_fails(-413, "b\r\n", &l);
    /* A size far past max_body but within 64 bits is 413 too. */
    decode_fails(-413, "FFFFFFFFFFFFFFFF\r\n", &lim);
}

static void test_chunked_body_above_out_cap_is_413(void **state)
{
    struct ct__http_chunked c = {0};
    char out[4];
    size_t out_len = 0;
    bool done = false;
    assert_int_equal(-413, ct__http_chunked_decode(&c, "5\r\nhello", 8, out, sizeof(out), &out_len,
                                                   &lim, &done));
    assert_int_equal(0, out_len);
    /* A caller that moved *out_len past the room it had checked still cannot overflow `out`. */
    struct ct__http_chunked c2 = {0};
    out_len = 0;
    assert_int_equal(
        3, ct__http_chunked_decode(&c2, "4\r\n", 3, out, sizeof(out), &out_len, &lim, &done));
    out_len = 2;
    assert_int_equal(
        -413, ct__http_chunked_decode(&c2, "abcd", 4, out, sizeof(out), &out_len, &lim, &done));
    assert_int_equal(2, out_len);
}

static void test_chunked_error_is_returned_again(void **state)
{
    struct ct__http_chunked c = {0};
    char out[16];
    size_t out_len = 0;
    bool done = true;
    assert_int_equal(-400,
                     ct__http_chunked_decode(&c, "z", 1, out, sizeof(out), &out_len, &lim, &done));
    assert_false(done);
    assert_int_equal(
        -400, ct__http_chunked_decode(&c, "0\r\n\r\n", 5, out, sizeof(out), &out_len, &lim, &done));
    assert_false(done);
}

static void test_chunked_framing_bytes_are_bounded(void **state)
{
    struct ct__http_limits l = lim;
    char in[512];
    /* One size line: at most max_request_line bytes, leading zeros included. */
    l.max_request_line = 10;
    decodes_to_with("0000000005\r\nhello\r\n0\r\n\r\n", 24, "hello", &l);
    decodes_to_with("5;abcdefgh\r\nhello\r\n0\r\n\r\n", 24, "hello", &l);
    decode_fails(-400, "00000000005\r\nhello\r\n0\r\n\r\n", &l);
    decode_fails(-400, "5;abcdefghi\r\nhello\r\n0\r\n\r\n", &l);
    /* Extensions and trailers of the whole body: at most max_header_bytes together. */
    l = lim;
    l.max_header_bytes = 20;
    snprintf(in, sizeof(in), "1;aaaaaaaa\r\nx\r\n1;bbbbbbbb\r\ny\r\n0\r\n\r\n"); /* 18 */
    struct decoded d = decode_with(in, strlen(in), 0, &l);
    assert_true(d.done);
    snprintf(in, sizeof(in), "1;aaaaaaaa\r\nx\r\n1;bbbbbbbb\r\ny\r\n0\r\nT: 1234567\r\n\r\n");
    decode_fails(-413, in, &l);
    snprintf(in, sizeof(in), "0\r\nT: 12345678901234567\r\n\r\n");
    decode_fails(-413, in, &l);
}

CT_TEST_MAIN(cmocka_unit_test(test_chunked_decodes_chunks_up_to_the_last_chunk),
             cmocka_unit_test(test_chunked_leaves_the_next_request_unconsumed),
             cmocka_unit_test(test_chunk_extensions_are_read_and_ignored),
             cmocka_unit_test(test_malformed_chunk_extensions_are_400),
             cmocka_unit_test(test_trailers_are_checked_and_dropped),
             cmocka_unit_test(test_chunked_split_at_every_byte_boundary),
             cmocka_unit_test(test_invalid_chunk_sizes_are_400),
             cmocka_unit_test(test_chunk_size_overflow_is_400),
             cmocka_unit_test(test_chunked_body_above_max_body_is_413),
             cmocka_unit_test(test_chunked_body_above_out_cap_is_413),
             cmocka_unit_test(test_chunked_error_is_returned_again),
             cmocka_unit_test(test_chunked_framing_bytes_are_bounded))
