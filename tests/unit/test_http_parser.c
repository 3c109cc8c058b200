/* The request parser of ct-http: the contract of src/http/parser.h, one rule per test.
 *
 * accept() and reject() below do more than compare one return value: they also parse every prefix
 * of the request from a heap copy of exactly that many bytes, so that reading past `len` is caught
 * by ASan, and check that a prefix of a valid request is incomplete (0) and that a prefix of an
 * invalid one is either incomplete or fails with the same status as the whole. */
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

static struct ct__http_head h;

static int parse_with(const char *req, size_t len, const struct ct__http_limits *l)
{
    return ct__http_parse_head(req, len, l, &h);
}

/* Every proper prefix of req[0..len) must parse as 0 (want == 0) or as 0 or `want`. */
static void check_prefixes(const char *req, size_t len, const struct ct__http_limits *l, int want)
{
    struct ct__http_head scratch;
    for (size_t k = 0; k < len; k++) {
        char *copy = malloc(k ? k : 1);
        assert_non_null(copy);
        memcpy(copy, req, k);
        int r = ct__http_parse_head(copy, k, l, &scratch);
        free(copy);
        if (r != 0 && r != want)
            fail_msg("prefix of %zu of %zu bytes: got %d, expected 0%s%d", k, len, r,
                     want ? " or " : "", want ? want : 0);
    }
}

/* req is exactly one complete head: it parses to its full length, every prefix needs more. */
static void accept_with(const char *req, const struct ct__http_limits *l)
{
    size_t len = strlen(req);
    check_prefixes(req, len, l, 0);
    assert_int_equal((int) len, parse_with(req, len, l));
}

static void accept(const char *req)
{
    accept_with(req, &lim);
}

static void reject_with(int status, const char *req, const struct ct__http_limits *l)
{
    size_t len = strlen(req);
    check_prefixes(req, len, l, status);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, req, len);
    int r = ct__http_parse_head(copy, len, l, &h);
    free(copy);
    if (r != status)
        fail_msg("expected %d, got %d for \"%s\"", status, r, req);
}

static void reject(int status, const char *req)
{
    reject_with(status, req, &lim);
}

static bool span_eq(const char *p, uint32_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

#define assert_span(expect, ptr, len)                                                              \
    do {                                                                                           \
        if (!span_eq((ptr), (len), (expect)))                                                      \
            fail_msg("expected \"%s\", got \"%.*s\"", (expect), (int) (len), (ptr));               \
    } while (0)

/* ---- valid requests ------------------------------------------------------------------------- */

static void test_simple_get_parses_every_part(void **state)
{
    const char *req = "GET /index.html?q=1 HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "Accept: */*\r\n"
                      "\r\n";
    accept(req);
    assert_ptr_equal(req, h.method);
    assert_span("GET", h.method, h.method_len);
    assert_ptr_equal(req + 4, h.target);
    assert_span("/index.html?q=1", h.target, h.target_len);
    assert_int_equal(1, h.minor);
    assert_int_equal(2, h.nfields);
    assert_span("Host", h.fields[0].name, h.fields[0].name_len);
    assert_span("example.com", h.fields[0].value, h.fields[0].value_len);
    assert_span("Accept", h.fields[1].name, h.fields[1].name_len);
    assert_span("*/*", h.fields[1].value, h.fields[1].value_len);
    assert_ptr_equal(h.fields[0].value, h.host);
    assert_span("example.com", h.host, h.host_len);
    assert_int_equal(CT__HTTP_BODY_NONE, h.body);
    assert_true(h.keep_alive);
    assert_false(h.expect_continue);
}

static void test_post_with_content_length_frames_a_body(void **state)
{
    const char *req = "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
    assert_int_equal((int) strlen(req) - 11, parse_with(req, strlen(req), &lim));
    assert_span("POST", h.method, h.method_len);
    assert_int_equal(CT__HTTP_BODY_LENGTH, h.body);
    assert_int_equal(11, h.content_length);
    accept("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(CT__HTTP_BODY_LENGTH, h.body);
    assert_int_equal(0, h.content_length);
}

static void test_chunked_post_frames_a_chunked_body(void **state)
{
    accept("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(CT__HTTP_BODY_CHUNKED, h.body);
    assert_int_equal(0, h.content_length);
}

static void test_field_value_excludes_surrounding_whitespace(void **state)
{
    accept("GET / HTTP/1.1\r\nHost: a\r\nX: \t a \t b \t \r\nEmpty:\r\nBlank: \t \r\n\r\n");
    assert_int_equal(4, h.nfields);
    assert_span("a \t b", h.fields[1].value, h.fields[1].value_len);
    assert_int_equal(0, h.fields[2].value_len);
    assert_int_equal(0, h.fields[3].value_len);
    assert_span("Blank", h.fields[3].name, h.fields[3].name_len);
}

static void test_obs_text_is_allowed_in_values(void **state)
{
    accept("GET / HTTP/1.1\r\nHost: a\r\nCity: D\xc3\xbcsseldorf\r\nX: \xff\x80\r\n\r\n");
    assert_span("D\xc3\xbcsseldorf", h.fields[1].value, h.fields[1].value_len);
    assert_span("\xff\x80", h.fields[2].value, h.fields[2].value_len);
}

static void test_leading_empty_lines_are_skipped_and_counted(void **state)
{
    const char *req = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    accept(req);
    assert_ptr_equal(req + 4, h.method);
    reject(-400, "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, " GET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_pipelined_requests_parse_one_at_a_time(void **state)
{
    const char buf[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                       "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                       "\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
                       "GET /4 HTTP/1.1\r\nHo";
    size_t len = sizeof(buf) - 1, pos = 0;
    int r = parse_with(buf, len, &lim);
    assert_int_equal(28, r);
    assert_span("/1", h.target, h.target_len);
    pos += (size_t) r;
    r = parse_with(buf + pos, len - pos, &lim);
    assert_int_equal(48, r);
    assert_span("/2", h.target, h.target_len);
    assert_int_equal(5, h.content_length);
    pos += (size_t) r + 5;
    r = parse_with(buf + pos, len - pos, &lim);
    assert_int_equal(30, r); /* the CRLF before it counts */
    assert_span("/3", h.target, h.target_len);
    pos += (size_t) r;
    assert_int_equal(0, parse_with(buf + pos, len - pos, &lim));
}

static void test_every_prefix_of_a_valid_request_is_incomplete(void **state)
{
    /* accept() checks this for every request in this file; these add the shapes that matter
     * most: a split inside CRLF, inside the version, right after a colon. */
    accept("GET / HTTP/1.0\r\n\r\n");
    accept("\r\nOPTIONS * HTTP/1.1\r\nHost: h:1\r\nA:\r\nB: x\r\n\r\n");
    accept("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 123\r\nExpect: 100-continue\r\n"
           "Transfer-Encoding-X: y\r\nConnection: keep-alive, Upgrade\r\n\r\n");
}

static void test_request_target_forms_are_accepted(void **state)
{
    accept("GET http://example.com:8080/a?b#c HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
    assert_span("http://example.com:8080/a?b#c", h.target, h.target_len);
    accept("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_span("*", h.target, h.target_len);
    accept("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_span("example.com:443", h.target, h.target_len);
    accept("GET /with_\"quotes\"?a=\\b|{} HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_any_token_is_a_method(void **state)
{
    accept("MKCOLA / HTTP/1.1\r\nHost: a\r\n\r\n");
    accept("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n");
    accept("get / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_span("get", h.method, h.method_len);
}

static void test_http10_without_host_is_accepted(void **state)
{
    accept("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(0, h.minor);
    assert_null(h.host);
    assert_int_equal(0, h.host_len);
    assert_int_equal(0, h.nfields);
}

/* ---- the request line ----------------------------------------------------------------------- */

static void test_method_must_be_a_token(void **state)
{
    reject(-400, "G@T / HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GE\x80T / HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "/ HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_request_line_takes_single_spaces_only(void **state)
{
    reject(-400, "GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET /  HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET /\tHTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
    reject(-400, "GET /foo bar HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_target_must_be_visible_ascii(void **state)
{
    reject(-400, "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET /\xce\xb4 HTTP/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n");
    const char nul[] = "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(-400, parse_with(nul, sizeof(nul) - 1, &lim));
}

static void test_only_http_1_0_and_1_1_are_accepted(void **state)
{
    reject(-505, "GET / HTTP/2.0\r\nHost: a\r\n\r\n");
    reject(-505, "GET / HTTP/1.2\r\nHost: a\r\n\r\n");
    reject(-505, "GET / HTTP/0.9\r\n\r\n");
    reject(-505, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    /* Judged as soon as its eight bytes are in, whatever follows. */
    reject(-505, "GET / HTTP/5.6");
    reject(-505, "GET / HTTP/5.6x\r\n\r\n");
}

static void test_malformed_version_is_400(void **state)
{
    reject(-400, "GET / http/1.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1x\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.10\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/11.1\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.\r\nHost: a\r\n\r\n");
    reject(-400, "GET / ICE/1.0\r\nHost: a\r\n\r\n");
    reject(-400, "GET / RTSP/1.0\r\nHost: a\r\n\r\n");
    reject(-400, "GET /\r\n\r\n"); /* HTTP/0.9 */
    reject(-400, "GET\r\n\r\n");
}

/* ---- line endings, folding, field syntax ---------------------------------------------------- */

static void test_bare_lf_is_not_a_line_ending(void **state)
{
    reject(-400, "GET / HTTP/1.1\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nX:\nY: z\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\n\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: localhost\r\nDummy: x\nContent-Length: 23\r\n\r\n"
                 "GET / HTTP/1.1\r\nDummy: GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n");
}

static void test_bare_cr_is_an_error(void **state)
{
    reject(-400, "GET / HTTP/1.1\rHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nConnection: keep\ralive\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\n\rX");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n");
}

static void test_obs_fold_is_rejected(void **state)
{
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n b\r\n\r\n");
    /* Whitespace between the request line and the first field (RFC 9112 2.2). */
    reject(-400, "GET / HTTP/1.1\r\n Host: a\r\n\r\n");
}

static void test_whitespace_before_colon_is_rejected(void **state)
{
    reject(-400, "GET / HTTP/1.1\r\nHost : a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n");
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd");
}

static void test_field_name_must_be_a_token(void **state)
{
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nFo@: x\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nX\x01y: x\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xbc: x\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nname\r\n : value\r\n\r\n");
}

static void test_control_characters_in_values_are_rejected(void **state)
{
    const char *ctls[] = {"\x01", "\x08", "\x0b", "\x1b", "\x1f", "\x7f"};
    char req[128];
    for (size_t i = 0; i < sizeof(ctls) / sizeof(ctls[0]); i++) {
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\nX: a%sb\r\n\r\n", ctls[i]);
        reject(-400, req);
    }
    /* NUL cannot go through a C string: build it by hand. */
    const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    assert_int_equal(-400, parse_with(nul, sizeof(nul) - 1, &lim));
    accept("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n");
}

/* ---- Content-Length ------------------------------------------------------------------------- */

static void test_content_length_is_digits_only(void **state)
{
    const char *bad[] = {"+5", "-1", "0x5", "5 5", "5,5", "5, 5", "", "5a", "5.0", "\"5\""};
    char req[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n",
                 bad[i]);
        reject(-400, req);
    }
    accept("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\n");
    assert_int_equal(3, h.content_length);
    accept("POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH:\t 42 \t\r\n\r\n");
    assert_int_equal(42, h.content_length);
}

static void test_repeated_content_length_is_rejected_even_if_equal(void **state)
{
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\n");
}

static void test_content_length_above_max_body_is_413(void **state)
{
    struct ct__http_limits l = lim;
    l.max_body = 100;
    accept_with("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", &l);
    assert_int_equal(100, h.content_length);
    reject_with(-413, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", &l);
    reject_with(-413, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000101\r\n\r\n", &l);
    /* Far past any uint64_t: still 413, no overflow. */
    reject_with(-413,
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000000\r\n\r\n", &l);
    /* Every digit is checked first: a bad character makes it 400 however large the number. */
    reject_with(
        -400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000000x\r\n\r\n", &l);
    l.max_body = UINT64_MAX;
    accept_with("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", &l);
    assert_true(h.content_length == UINT64_MAX);
    reject_with(-413, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
                &l);
    l.max_body = 0;
    accept_with("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &l);
    reject_with(-413, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n", &l);
}

static void test_transfer_encoding_with_content_length_is_rejected(void **state)
{
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: 5\r\n\r\n");
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n\r\n");
    /* A framing conflict outranks an unknown coding: 400, not 501. */
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n"
                 "Content-Length: 5\r\n\r\n");
}

/* ---- Transfer-Encoding ---------------------------------------------------------------------- */

static void test_chunked_is_recognised_in_any_case_and_list_shape(void **state)
{
    const char *ok[] = {"chunked",   "Chunked",  "CHUNKED",      " chunked \t",
                        ", chunked", "chunked,", ",, chunked ,,"};
    char req[128];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n",
                 ok[i]);
        accept(req);
        assert_int_equal(CT__HTTP_BODY_CHUNKED, h.body);
    }
}

static void test_unknown_transfer_coding_is_501(void **state)
{
    const char *codings[] = {
        "gzip",     "gzip, chunked",  "deflate,chunked",         "pigeons",
        "identity", "chunkedchunked", "gzip;q=\"a,b\", chunked", "gzip ; q = \"a\\\"b\" , chunked",
        "x;a=b;c=d"};
    char req[128];
    for (size_t i = 0; i < sizeof(codings) / sizeof(codings[0]); i++) {
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n",
                 codings[i]);
        reject(-501, req);
    }
    reject(-501, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
}

static void test_chunked_not_last_or_repeated_is_400(void **state)
{
    const char *bad[] = {
        "chunked, gzip", "chunked, chunked", "chunked;a=b", "chunked x",    "",          ",",
        "gzip;",         "gzip;a",           "gzip;a=\"b",  "gzip;a=\"b\\", "gzip;a=b c"};
    char req[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n",
                 bad[i]);
        reject(-400, req);
    }
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
    reject(-400, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: gzip\r\n\r\n");
}

static void test_transfer_encoding_in_http10_is_rejected(void **state)
{
    reject(-400, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
}

/* ---- Host ----------------------------------------------------------------------------------- */

static void test_http11_requires_exactly_one_host(void **state)
{
    reject(-400, "GET / HTTP/1.1\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nX-Host: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
    reject(-400, "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n");
    accept("GET / HTTP/1.1\r\nX: y\r\nHOST: a.b:80\r\n\r\n");
    assert_span("a.b:80", h.host, h.host_len);
}

static void test_host_value_must_be_an_authority(void **state)
{
    const char *ok[] = {
        "example.com", "example.com:8080", "[::1]:80", "[v1.x]", "", "0.0.0.0=5000", "a%20b", "a:",
        "_a-b~"};
    const char *bad[] = {"a b", "a/b", "a@b", "a:b:c", "[::1", "[]", "a:8x", "%zz", "a]", "a,b\""};
    char req[128];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", ok[i]);
        accept(req);
        assert_span(ok[i], h.host, h.host_len);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
        reject(-400, req);
    }
}

/* ---- Connection and Expect ------------------------------------------------------------------ */

static void test_http11_keeps_alive_unless_close(void **state)
{
    const char *values[] = {"close", "Close", "keep-alive, close", "foo, CLOSE", "close,"};
    char req[128];
    accept("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(h.keep_alive);
    accept("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, keep-alive\r\n\r\n");
    assert_true(h.keep_alive);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\nConnection: %s\r\n\r\n",
                 values[i]);
        accept(req);
        assert_false(h.keep_alive);
    }
    accept("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
    assert_false(h.keep_alive);
    accept("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
    assert_true(h.keep_alive);
}

static void test_http10_keeps_alive_only_when_asked(void **state)
{
    accept("GET / HTTP/1.0\r\n\r\n");
    assert_false(h.keep_alive);
    accept("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_true(h.keep_alive);
    accept("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(h.keep_alive);
    accept("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    assert_false(h.keep_alive);
}

static void test_connection_must_be_a_token_list(void **state)
{
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep alive\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close;\r\n\r\n");
    reject(-400, "GET / HTTP/1.1\r\nHost: a\r\nConnection: \"close\"\r\n\r\n");
    accept("GET / HTTP/1.1\r\nHost: a\r\nConnection:\r\n\r\n");
    assert_true(h.keep_alive);
}

static void test_expect_100_continue_is_recognised_in_http11_only(void **state)
{
    accept("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_true(h.expect_continue);
    accept("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue \r\n\r\n");
    assert_true(h.expect_continue);
    accept("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    assert_false(h.expect_continue);
    /* Other expectations are ignored, not refused. */
    accept("POST / HTTP/1.1\r\nHost: a\r\nExpect: something-else\r\n\r\n");
    assert_false(h.expect_continue);
    accept("POST / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_false(h.expect_continue);
}

/* ---- limits --------------------------------------------------------------------------------- */

static void test_long_target_is_414_as_soon_as_it_is_too_long(void **state)
{
    struct ct__http_limits l = lim;
    const char *line = "GET /abcdefghij HTTP/1.1"; /* 24 bytes */
    l.max_request_line = 24;
    accept_with("GET /abcdefghij HTTP/1.1\r\nHost: a\r\n\r\n", &l);
    reject_with(-414, "GET /abcdefghijk HTTP/1.1\r\nHost: a\r\n\r\n", &l);
    /* Reported at the first target byte beyond the budget, long before the line ends. */
    assert_int_equal(-414, parse_with("GET /abcdefghijk", 16, &l));
    assert_int_equal(0, parse_with("GET /abcdefghij", 15, &l));
    assert_int_equal(24, (int) strlen(line));
    /* A bad byte at the budget's edge is still a bad byte. */
    reject_with(-400, "GET /abcdefghij\x01 HTTP/1.1\r\n\r\n", &l);
}

static void test_long_method_is_400(void **state)
{
    struct ct__http_limits l = lim;
    l.max_request_line = 16; /* a method of 5 bytes leaves 1 for the target */
    accept_with("ABCDE / HTTP/1.1\r\nHost: a\r\n\r\n", &l);
    reject_with(-400, "ABCDEF / HTTP/1.1\r\nHost: a\r\n\r\n", &l);
    assert_int_equal(-400, parse_with("ABCDEF", 6, &l));
    reject_with(-414, "ABCDE /a HTTP/1.1\r\nHost: a\r\n\r\n", &l);
    l.max_request_line = 11; /* no request line fits */
    reject_with(-400, "G / HTTP/1.1\r\nHost: a\r\n\r\n", &l);
}

static void test_head_above_max_header_bytes_is_431_as_soon_as_it_is(void **state)
{
    struct ct__http_limits l = lim;
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n";
    size_t len = strlen(req);
    l.max_header_bytes = len;
    accept_with(req, &l);
    l.max_header_bytes = len - 1;
    reject_with(-431, req, &l);
    /* Incomplete and within the limit: wait; one byte past it with no end in sight: 431. */
    l.max_header_bytes = 20;
    assert_int_equal(0, parse_with(req, 20, &l));
    assert_int_equal(-431, parse_with(req, 21, &l));
    /* Leading empty lines count. */
    l.max_header_bytes = len + 1;
    reject_with(-431, "\r\nGET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n", &l);
    /* An error seen before the limit is that error. */
    l.max_header_bytes = 20;
    assert_int_equal(-400, parse_with("GET / HTTP/1.1\r\nHo@st: a\r\n\r\n", 28, &l));
}

static void test_too_many_fields_is_431_as_soon_as_one_more_begins(void **state)
{
    struct ct__http_limits l = lim;
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n\r\n";
    l.max_headers = 3;
    accept_with(req, &l);
    assert_int_equal(3, h.nfields);
    l.max_headers = 2;
    reject_with(-431, req, &l);
    /* The first byte of the third field is enough. */
    assert_int_equal(-431, parse_with(req, 32, &l));
    assert_int_equal(0, parse_with(req, 31, &l));
    l.max_headers = 0;
    reject_with(-431, req, &l);
    accept_with("GET / HTTP/1.0\r\n\r\n", &l);
}

static void test_max_headers_is_capped_at_the_array_size(void **state)
{
    struct ct__http_limits l = lim;
    char req[4096];
    size_t n = (size_t) sprintf(req, "GET / HTTP/1.1\r\n");
    l.max_headers = 1000;
    for (int i = 0; i < CT__HTTP_MAX_HEADERS; i++)
        n += (size_t) sprintf(req + n, i ? "X%d: y\r\n" : "Host: a\r\n", i);
    sprintf(req + n, "\r\n");
    accept_with(req, &l);
    assert_int_equal(CT__HTTP_MAX_HEADERS, h.nfields);
    sprintf(req + n, "Y: z\r\n\r\n");
    assert_int_equal(-431, parse_with(req, strlen(req), &l));
}

/* ---- the token helper ----------------------------------------------------------------------- */

static void test_token_eq_is_case_insensitive_and_exact_in_length(void **state)
{
    assert_true(ct__http_token_eq("Chunked", 7, "chunked"));
    assert_true(ct__http_token_eq("CHUNKED", 7, "chunked"));
    assert_false(ct__http_token_eq("chunke", 6, "chunked"));
    assert_false(ct__http_token_eq("chunkeds", 8, "chunked"));
    assert_true(ct__http_token_eq("chunkedXYZ", 7, "chunked"));
    assert_true(ct__http_token_eq("", 0, ""));
    assert_false(ct__http_token_eq("a", 1, ""));
    /* Only letters fold: '@' (0x40) is not '`' (0x60), '[' is not '{'. */
    assert_false(ct__http_token_eq("@", 1, "`"));
    assert_false(ct__http_token_eq("[", 1, "{"));
    assert_true(ct__http_token_eq("100-CONTINUE", 12, "100-continue"));
}

CT_TEST_MAIN(cmocka_unit_test(test_simple_get_parses_every_part),
             cmocka_unit_test(test_post_with_content_length_frames_a_body),
             cmocka_unit_test(test_chunked_post_frames_a_chunked_body),
             cmocka_unit_test(test_field_value_excludes_surrounding_whitespace),
             cmocka_unit_test(test_obs_text_is_allowed_in_values),
             cmocka_unit_test(test_leading_empty_lines_are_skipped_and_counted),
             cmocka_unit_test(test_pipelined_requests_parse_one_at_a_time),
             cmocka_unit_test(test_every_prefix_of_a_valid_request_is_incomplete),
             cmocka_unit_test(test_request_target_forms_are_accepted),
             cmocka_unit_test(test_any_token_is_a_method),
             cmocka_unit_test(test_http10_without_host_is_accepted),
             cmocka_unit_test(test_method_must_be_a_token),
             cmocka_unit_test(test_request_line_takes_single_spaces_only),
             cmocka_unit_test(test_target_must_be_visible_ascii),
             cmocka_unit_test(test_only_http_1_0_and_1_1_are_accepted),
             cmocka_unit_test(test_malformed_version_is_400),
             cmocka_unit_test(test_bare_lf_is_not_a_line_ending),
             cmocka_unit_test(test_bare_cr_is_an_error),
             cmocka_unit_test(test_obs_fold_is_rejected),
             cmocka_unit_test(test_whitespace_before_colon_is_rejected),
             cmocka_unit_test(test_field_name_must_be_a_token),
             cmocka_unit_test(test_control_characters_in_values_are_rejected),
             cmocka_unit_test(test_content_length_is_digits_only),
             cmocka_unit_test(test_repeated_content_length_is_rejected_even_if_equal),
             cmocka_unit_test(test_content_length_above_max_body_is_413),
             cmocka_unit_test(test_transfer_encoding_with_content_length_is_rejected),
             cmocka_unit_test(test_chunked_is_recognised_in_any_case_and_list_shape),
             cmocka_unit_test(test_unknown_transfer_coding_is_501),
             cmocka_unit_test(test_chunked_not_last_or_repeated_is_400),
             cmocka_unit_test(test_transfer_encoding_in_http10_is_rejected),
             cmocka_unit_test(test_http11_requires_exactly_one_host),
             cmocka_unit_test(test_host_value_must_be_an_authority),
             cmocka_unit_test(test_http11_keeps_alive_unless_close),
             cmocka_unit_test(test_http10_keeps_alive_only_when_asked),
             cmocka_unit_test(test_connection_must_be_a_token_list),
             cmocka_unit_test(test_expect_100_continue_is_recognised_in_http11_only),
             cmocka_unit_test(test_long_target_is_414_as_soon_as_it_is_too_long),
             cmocka_unit_test(test_long_method_is_400),
             cmocka_unit_test(test_head_above_max_header_bytes_is_431_as_soon_as_it_is),
             cmocka_unit_test(test_too_many_fields_is_431_as_soon_as_one_more_begins),
             cmocka_unit_test(test_max_headers_is_capped_at_the_array_size),
             cmocka_unit_test(test_token_eq_is_case_insensitive_and_exact_in_length))
