/* The request parser against the conformance corpus in tests/conformance/ (requests derived from
 * llhttp's tests, MIT licence, see the README there), judged the way the team's conformance.py
 * (conformance/http-requests/ in the shared folder) judges a server, one level down: instead of
 * responses on a socket, the messages the parser completes.
 *
 * Each case's bytes go to the parser as a server's I/O thread would give them: the head, then the
 * body by its framing (Content-Length bytes, or the chunked decoder), then the next pipelined
 * request if bytes remain; after a message whose keep_alive is false the server would close, so
 * the rest is not read. Like `conformance.py --add-host`, "Host: localhost" is inserted at the
 * precomputed offsets of the HTTP/1.1 cases that lack it (the parser rightly rejects those).
 * Every case is run twice: all bytes at once, and one byte at a time, with the same outcome.
 *
 * With n = expect_responses, the messages llhttp completed before its verdict:
 *   accept: at least n messages complete, none of the first n is rejected or cut by a close, and
 *     when the bytes after them are an incomplete request (trailing "incomplete") or nothing
 *     ("none") they are not rejected either; after upgrade/CONNECT bytes ("upgrade") what follows
 *     is tunnel data and is not judged.
 *   reject: the parser reports an error, or the connection closes, before more than n messages
 *     have completed: at or before the point llhttp did. When llhttp's error lay in a head
 *     (error_phase "head"), so must ours: accepting that head and failing in its body is late.
 *     Waiting for more bytes instead is a failure ("hang").
 * A contested case (nginx, h2o or libmicrohttpd disagreed with llhttp) is held to the decision in
 * the table below instead, with its status when that decision is to reject. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "parser.h"
#include "testutil.h"

#ifndef CT_CONFORMANCE_DIR
#error "CT_CONFORMANCE_DIR must name tests/conformance (set by tests/CMakeLists.txt)"
#endif

/* ---- the decisions on contested cases ------------------------------------------------------- */

struct decision {
    const char *id;
    bool accept;
    int status; /* the status when rejected in a head; 0 when the rejection is in a chunked body
                   (always 400 there) or the case is accepted */
    const char *why;
};

/* Every contested case of both corpus files, and what this parser does with it. Where the
 * decision differs from llhttp's verdict, the reason says so. docs/http-parser.md has the same
 * list in prose. */
static const struct decision decisions[] = {
    /* Differs from llhttp. */
    {"sample-010-no-http-version", false, 400,
     "DIFFERS: HTTP/0.9 (no version) is not served; only HTTP/1.0 and HTTP/1.1"},
    {"transfer-encoding-020-post-with-chunked-as-last-transfer-encoding", false, 501,
     "DIFFERS: deflate is a transfer coding this server does not implement: 501 (RFC 9112 6.1)"},
    {"transfer-encoding-021-post-with-chunked-as-last-transfer-encoding-multiple-headers", false,
     501, "DIFFERS: as above, the coding list spread over two fields"},
    {"invalid-004-http-protocol-and-announce-method", true, 0,
     "DIFFERS: ANNOUNCE is a token, so a method (RFC 9110 9.1); the server may answer 501"},
    {"invalid-014-invalid-method", true, 0,
     "DIFFERS: MKCOLA is a token, so a method; unknown methods are the server's 501, not a parse "
     "error"},
    {"method-012-source-request-with-ice", false, 400, "DIFFERS: ICE/1.0 is not HTTP"},
    {"method-013-options-request-with-rtsp", false, 400, "DIFFERS: RTSP/1.0 is not HTTP"},
    {"method-014-announce-request-with-rtsp", false, 400, "DIFFERS: RTSP/1.0 is not HTTP"},

    /* Agrees with llhttp (where another server did not). */
    {"sample-012-line-folding-in-header-value-with-lf", false, 400, "bare LF"},
    {"content-length-005-error-on-simultaneous-content-length-and-transfer-encoding-i", false, 400,
     "Content-Length with Transfer-Encoding"},
    {"content-length-006-invalid-whitespace-token-with-content-length-header-field", false, 400,
     "whitespace before the colon"},
    {"content-length-010-spaces-in-content-length-surrounding", true, 0,
     "OWS around a field value is not part of it (RFC 9112 5)"},
    {"content-length-011-tabs-in-content-length-surrounding", true, 0, "HTAB is OWS too"},
    {"content-length-015-content-length-with-cr-instead-of-dash", false, 400,
     "bare CR in a field name"},
    {"transfer-encoding-008-no-semicolon-before-chunk-extensions", false, 0,
     "a chunk size followed by whitespace and no ';'"},
    {"transfer-encoding-009-no-extension-after-semicolon", false, 0, "';' without a name"},
    {"transfer-encoding-011-unbalanced-chunk-extensions-quoting", false, 0,
     "CR inside a quoted extension value"},
    {"transfer-encoding-012-ignoring-pigeons", false, 501, "unknown transfer coding"},
    {"transfer-encoding-013-post-with-transfer-encoding-and-content-length", false, 400,
     "Content-Length with Transfer-Encoding"},
    {"transfer-encoding-015-post-with-empty-transfer-encoding-and-content-length-lenient", false,
     400, "Content-Length with Transfer-Encoding, even empty"},
    {"transfer-encoding-016-post-with-chunked-before-other-transfer-coding-names", false, 400,
     "chunked not last"},
    {"transfer-encoding-022-post-with-chunkedchunked-as-transfer-encoding", false, 501,
     "'chunkedchunked' is an unknown coding"},
    {"transfer-encoding-024-validate-chunk-parameters", false, 0, "whitespace then bare LF"},
    {"transfer-encoding-026-chunk-header-not-terminated-by-crlf", false, 0, "CR CR in a size line"},
    {"transfer-encoding-028-chunk-data-not-terminated-by-crlf", false, 0,
     "chunk data not followed by CRLF"},
    {"transfer-encoding-030-space-after-chunk-header", false, 0,
     "whitespace after a size is BWS only before ';'"},
    {"invalid-005-headers-separated-by-cr", false, 400, "bare CR"},
    {"invalid-006-headers-separated-by-lf", false, 400, "bare LF"},
    {"invalid-009-empty-headers-separated-by-cr", false, 400, "bare CR"},
    {"invalid-010-empty-headers-separated-by-lf", false, 400, "bare LF"},
    {"invalid-011-invalid-header-token-1", false, 400, "'@' is not a token character"},
    {"invalid-012-invalid-header-token-2", false, 400, "a control in a field name"},
    {"invalid-013-invalid-header-token-3", false, 400, "empty field name"},
    {"invalid-018-missing-cr-between-headers", false, 400, "bare LF (the smuggling case)"},
    {"invalid-021-only-lfs-present", false, 400, "bare LF after the request line"},
    {"invalid-023-spaces-before-headers", false, 400, "obs-fold"},
    {"connection-005-crlf-between-requests-implicit-keep-alive", true, 0,
     "empty lines before a request line are skipped (RFC 9112 2.2)"},
    {"connection-006-not-treating-r-as", false, 400, "bare CR in a value"},
    {"connection-016-invalid-whitespace-token-with-connection-header-field", false, 400,
     "whitespace before the colon"},
    {"uri-007-disallow-utf-8-in-uri-path-in-strict-mode", false, 400,
     "a request-target is visible ASCII"},
    {"uri-009-underscore-in-hostname", true, 0, "CONNECT, authority-form: the head parses"},
    {"uri-010-host-port-and-basic-auth", true, 0, "absolute-form with userinfo: visible ASCII"},
    {"uri-011-space-in-uri", false, 400, "a space ends the target; 'bar/' is not a version"},
    {"method-002-connect-request", true, 0, "CONNECT, authority-form: the head parses"},
    {"method-003-connect-request-with-caps", true, 0, "CONNECT, authority-form"},
    {"method-004-connect-with-body", true, 0, "CONNECT, authority-form"},
    {"method-005-m-search-request", true, 0, "a token method and '*'"},
    {"sample-011-line-folding-in-header-value-with-crlf", false, 400, "obs-fold"},
    {"sample-018-x-ssl-nonsense", false, 400, "obs-fold"},
    {"transfer-encoding-014-post-with-transfer-encoding-and-content-length-lenient", false, 400,
     "Content-Length with Transfer-Encoding"},
    {"transfer-encoding-025-invalid-obs-fold-after-chunked-value", false, 400, "obs-fold"},
    {"transfer-encoding-027-chunk-header-not-terminated-by-crlf-lenient", false, 0,
     "CR CR in a size line"},
    {"invalid-022-only-lfs-present-lenient", false, 400, "bare LF after the request line"},
    {"connection-013-multiple-tokens-with-folding", false, 400, "obs-fold"},
    {"connection-015-multiple-tokens-with-folding-lws-and-crlf", false, 400, "obs-fold"},
};

#define NDECISIONS (sizeof(decisions) / sizeof(decisions[0]))

static const struct decision *decision_for(const char *id)
{
    for (size_t i = 0; i < NDECISIONS; i++)
        if (strcmp(decisions[i].id, id) == 0)
            return &decisions[i];
    return NULL;
}

/* ---- running a case ------------------------------------------------------------------------- */

static const struct ct__http_limits limits = {
    .max_request_line = 8192,
    .max_header_bytes = 16384,
    .max_headers = 100,
    .max_body = 1 << 20,
};

enum end { END_WAITING, END_REJECTED, END_CLOSED };

struct outcome {
    enum end end;
    int completed; /* messages completed (head and body) */
    int status;    /* END_REJECTED: the status */
    bool in_body;  /* END_REJECTED: the error was in a body */
};

/* Feed raw[0..len) to the parser as a server would, `step` bytes arriving at a time (0: all at
 * once). The parser is pure, so a head is parsed again from its first byte each time more bytes
 * arrive; the chunked decoder keeps its state and gets only the new bytes. */
static struct outcome run(const unsigned char *raw, size_t len, size_t step)
{
    struct outcome o = {END_WAITING, 0, 0, false};
    static struct ct__http_head h;
    static char body[1 << 20];
    size_t pos = 0, avail = step ? (step < len ? step : len) : len;

    for (;;) {
        int r;
        /* The head: wait for more bytes while it is incomplete. */
        while ((r = ct__http_parse_head((const char *) raw + pos, avail - pos, &limits, &h)) == 0) {
            if (avail == len)
                return o;
            avail = avail + step < len ? avail + step : len;
        }
        if (r < 0) {
            o.end = END_REJECTED;
            o.status = -r;
            return o;
        }
        pos += (size_t) r;
        if (avail < pos)
            avail = pos;

        /* The body, by its framing. */
        if (h.body == CT__HTTP_BODY_LENGTH) {
            while (avail - pos < h.content_length) {
                if (avail == len)
                    return o;
                avail = avail + step < len ? avail + step : len;
            }
            pos += h.content_length;
        } else if (h.body == CT__HTTP_BODY_CHUNKED) {
            struct ct__http_chunked c = {0};
            size_t out_len = 0;
            bool done = false;
            for (;;) {
                long n = ct__http_chunked_decode(&c, (const char *) raw + pos, avail - pos, body,
                                                 sizeof(body), &out_len, &limits, &done);
                if (n < 0) {
                    o.end = END_REJECTED;
                    o.status = (int) -n;
                    o.in_body = true;
                    return o;
                }
                pos += (size_t) n;
                if (done)
                    break;
                if (avail == len)
                    return o;
                avail = avail + step < len ? avail + step : len;
            }
        }
        o.completed++;
        if (!h.keep_alive) {
            o.end = END_CLOSED;
            return o;
        }
        if (pos == len)
            return o;
        if (avail == pos)
            avail = avail + step < len ? avail + step : len;
    }
}

/* ---- the corpus ----------------------------------------------------------------------------- */

static int b64(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode standard base64 (with padding) into a new buffer; *len its length. */
static unsigned char *b64_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    unsigned char *out = malloc(n / 4 * 3 + 3);
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    assert_non_null(out);
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        int v = b64((unsigned char) s[i]);
        assert_true(v >= 0);
        acc = acc << 6 | (unsigned) v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char) (acc >> bits);
        }
    }
    *len = o;
    return out;
}

static int cmp_desc(const void *a, const void *b)
{
    size_t x = *(const size_t *) a, y = *(const size_t *) b;
    return (x < y) - (x > y);
}

/* The case's bytes with "Host: localhost\r\n" inserted at its host_insert_offsets. */
static unsigned char *case_bytes(json_t *c, size_t *len)
{
    static const char host[] = "Host: localhost\r\n";
    const size_t hlen = sizeof(host) - 1;
    unsigned char *raw = b64_decode(json_string_value(json_object_get(c, "raw_base64")), len);
    json_t *offs = json_object_get(c, "host_insert_offsets");
    size_t n = json_array_size(offs), off[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++)
        off[i] = (size_t) json_integer_value(json_array_get(offs, i));
    qsort(off, n, sizeof(off[0]), cmp_desc);
    raw = realloc(raw, *len + n * hlen);
    assert_non_null(raw);
    for (size_t i = 0; i < n; i++) {
        assert_true(off[i] <= *len);
        memmove(raw + off[i] + hlen, raw + off[i], *len - off[i]);
        memcpy(raw + off[i], host, hlen);
        *len += hlen;
    }
    return raw;
}

static const char *json_str(json_t *c, const char *key)
{
    const char *s = json_string_value(json_object_get(c, key));
    return s ? s : "";
}

/* Judge one outcome; on failure, write why into `why` and return false. */
static bool judge(json_t *c, const struct decision *d, const struct outcome *o, char *why,
                  size_t cap)
{
    int n = (int) json_integer_value(json_object_get(c, "expect_responses"));
    const char *trailing = json_str(c, "trailing");
    bool accept = d ? d->accept : strcmp(json_str(c, "expect"), "accept") == 0;

    if (accept) {
        if (o->end == END_REJECTED && (o->completed < n || strcmp(trailing, "upgrade") != 0)) {
            snprintf(why, cap, "rejected with %d after %d message(s), expected %d accepted",
                     o->status, o->completed, n);
            return false;
        }
        if (o->completed < n) {
            snprintf(why, cap, "%s after %d of %d message(s)",
                     o->end == END_CLOSED ? "closed" : "still waiting", o->completed, n);
            return false;
        }
        return true;
    }
    if (o->end == END_WAITING || o->completed > n) {
        snprintf(why, cap, "%s after %d message(s), at most %d allowed before the rejection",
                 o->end == END_WAITING ? "hang: waiting for more bytes" : "accepted", o->completed,
                 n);
        return false;
    }
    if (o->end == END_REJECTED && o->completed == n && o->in_body &&
        strcmp(json_str(c, "error_phase"), "head") == 0) {
        snprintf(why, cap, "accepted a head llhttp rejected; failed in its body instead");
        return false;
    }
    if (d && o->end == END_REJECTED &&
        (d->status ? o->status != d->status || o->in_body : !o->in_body || o->status != 400)) {
        snprintf(why, cap, "rejected with %d (%s), the documented decision is %d (%s)", o->status,
                 o->in_body ? "body" : "head", d->status ? d->status : 400,
                 d->status ? "head" : "body");
        return false;
    }
    return true;
}

static const char *end_name(const struct outcome *o)
{
    return o->end == END_WAITING ? "waiting" : o->end == END_REJECTED ? "rejected" : "closed";
}

/* Run every case of one corpus file; every case must pass. */
static void run_corpus(const char *file, int expect_cases)
{
    char path[4096];
    json_error_t err;
    snprintf(path, sizeof(path), "%s/%s", CT_CONFORMANCE_DIR, file);
    json_t *cases = json_load_file(path, 0, &err);
    if (!cases)
        fail_msg("%s: %s (line %d)", path, err.text, err.line);
    assert_true(json_is_array(cases));

    int npass = 0, nfail = 0, ncontested = 0, differs = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        const char *id = json_str(c, "id");
        bool contested = json_is_true(json_object_get(c, "contested"));
        const struct decision *d = decision_for(id);
        size_t len;
        unsigned char *raw = case_bytes(c, &len);
        struct outcome whole = run(raw, len, 0), bytewise = run(raw, len, 1);
        char why[256] = "";
        bool ok = judge(c, contested ? d : NULL, &whole, why, sizeof(why));

        if (contested && !d) {
            ok = false;
            snprintf(why, sizeof(why), "contested, and no documented decision in this file");
        }
        if (!contested && d) {
            ok = false;
            snprintf(why, sizeof(why), "has a decision but the corpus does not contest it");
        }
        if (ok && (whole.end != bytewise.end || whole.completed != bytewise.completed ||
                   whole.status != bytewise.status || whole.in_body != bytewise.in_body)) {
            ok = false;
            snprintf(why, sizeof(why), "byte by byte: %s after %d (status %d), at once: %s",
                     end_name(&bytewise), bytewise.completed, bytewise.status, end_name(&whole));
        }
        ncontested += contested;
        differs += d && d->accept != (strcmp(json_str(c, "expect"), "accept") == 0);
        if (ok) {
            npass++;
        } else {
            nfail++;
            print_message("FAIL %s (expect %s%s): %s; got %s after %d message(s), status %d\n", id,
                          json_str(c, "expect"), contested ? ", contested" : "", why,
                          end_name(&whole), whole.completed, whole.status);
        }
        free(raw);
    }
    print_message("%s: %d of %d cases pass (%d contested, %d of them decided against llhttp's "
                  "verdict)\n",
                  file, npass, npass + nfail, ncontested, differs);
    json_decref(cases);
    assert_int_equal(0, nfail);
    assert_int_equal(expect_cases, npass);
}

static void test_llhttp_corpus_is_judged_as_documented(void **state)
{
    run_corpus("corpus.json", 120);
}

static void test_supplementary_corpus_is_rejected(void **state)
{
    run_corpus("corpus_supplementary.json", 9);
}

/* The table must not hold decisions for cases that are not in the corpus (a renamed case would
 * otherwise leave a stale entry and a contested case without one). */
static void test_every_decision_names_a_contested_case(void **state)
{
    const char *files[] = {"corpus.json", "corpus_supplementary.json"};
    int found = 0;
    for (size_t f = 0; f < 2; f++) {
        char path[4096];
        json_error_t err;
        snprintf(path, sizeof(path), "%s/%s", CT_CONFORMANCE_DIR, files[f]);
        json_t *cases = json_load_file(path, 0, &err);
        assert_non_null(cases);
        size_t i;
        json_t *c;
        json_array_foreach(cases, i, c)
        {
            if (decision_for(json_str(c, "id"))) {
                assert_true(json_is_true(json_object_get(c, "contested")));
                found++;
            }
        }
        json_decref(cases);
    }
    assert_int_equal((int) NDECISIONS, found);
}

CT_TEST_MAIN(cmocka_unit_test(test_llhttp_corpus_is_judged_as_documented),
             cmocka_unit_test(test_supplementary_corpus_is_rejected),
             cmocka_unit_test(test_every_decision_names_a_contested_case))
