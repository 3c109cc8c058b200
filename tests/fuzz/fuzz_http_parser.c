/* libFuzzer target for the request parser (src/http/parser.h): `make fuzz`.
 *
 * Every input goes through ct__http_parse_head() under small limits (so that each limit is hit
 * often) and under ordinary ones, and through ct__http_chunked_decode() whole, in two pieces and
 * one byte at a time. Every buffer the parser sees is a heap copy of exactly its length, so ASan
 * reports a read past `len`. What is checked, besides the sanitizers:
 *   - return values are a length within the input and the head limit, 0, or one of the statuses;
 *   - every pointer of a parsed head lies inside the head, every field is made of the characters
 *     its rule allows, framing and connection flags agree with each other and the limits;
 *   - a parsed head, copied alone to a new buffer, parses again to the same head;
 *   - a prefix of the input needs more bytes (0) or fails with the status of the whole input;
 *   - a head accepted under the small limits is accepted identically under the ordinary ones;
 *   - the decoder's result does not depend on how its input is split; its output stays within
 *     out_cap, its total within max_body, and a done body ends with CRLF. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http_parser: invariant failed at line %d: %s\n", __LINE__,       \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct ct__http_limits small = {
    .max_request_line = 40,
    .max_header_bytes = 200,
    .max_headers = 6,
    .max_body = 64,
};

static const struct ct__http_limits ordinary = {
    .max_request_line = 8192,
    .max_header_bytes = 16384,
    .max_headers = 100,
    .max_body = 1 << 20,
};

static char *copy_of(const uint8_t *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

static bool is_status(long r, bool head)
{
    if (r == -400 || r == -413)
        return true;
    return head && (r == -414 || r == -431 || r == -501 || r == -505);
}

static bool inside(const char *p, uint32_t n, const char *buf, size_t len)
{
    return p >= buf && (size_t) (p - buf) <= len && n <= len - (size_t) (p - buf);
}

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* What must hold of a head that parsed to r > 0 bytes of buf. */
static void check_head(const char *buf, int r, const struct ct__http_limits *lim,
                       const struct ct__http_head *h)
{
    size_t len = (size_t) r;
    unsigned max_fields =
        lim->max_headers < CT__HTTP_MAX_HEADERS ? lim->max_headers : CT__HTTP_MAX_HEADERS;
    CHECK(len >= 16 && len <= lim->max_header_bytes);
    CHECK(memcmp(buf + len - 4, "\r\n\r\n", 4) == 0);
    CHECK(inside(h->method, h->method_len, buf, len) && h->method_len > 0);
    CHECK(inside(h->target, h->target_len, buf, len) && h->target_len > 0);
    CHECK(h->target == h->method + h->method_len + 1);
    CHECK((size_t) h->method_len + h->target_len + 10 <= lim->max_request_line);
    for (uint32_t i = 0; i < h->method_len; i++)
        CHECK(is_tchar((unsigned char) h->method[i]));
    for (uint32_t i = 0; i < h->target_len; i++)
        CHECK(h->target[i] > 0x20 && h->target[i] < 0x7f);
    CHECK(h->minor == 0 || h->minor == 1);
    CHECK(h->nfields <= max_fields);
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct ct__http_field *f = &h->fields[i];
        CHECK(inside(f->name, f->name_len, buf, len) && f->name_len > 0);
        CHECK(inside(f->value, f->value_len, buf, len));
        CHECK(f->name[f->name_len] == ':');
        for (uint32_t j = 0; j < f->name_len; j++)
            CHECK(is_tchar((unsigned char) f->name[j]));
        for (uint32_t j = 0; j < f->value_len; j++) {
            unsigned char c = (unsigned char) f->value[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (f->value_len) {
            CHECK(f->value[0] != ' ' && f->value[0] != '\t');
            CHECK(f->value[f->value_len - 1] != ' ' && f->value[f->value_len - 1] != '\t');
        }
    }
    /* The framing, recomputed from the fields the parser returned. */
    const struct ct__http_field *cl = NULL, *host = NULL;
    unsigned ncl = 0, nte = 0, nhost = 0;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct ct__http_field *f = &h->fields[i];
        if (ct__http_token_eq(f->name, f->name_len, "content-length")) {
            ncl++;
            cl = f;
        } else if (ct__http_token_eq(f->name, f->name_len, "transfer-encoding")) {
            nte++;
        } else if (ct__http_token_eq(f->name, f->name_len, "host")) {
            nhost++;
            host = f;
        }
    }
    switch (h->body) {
    case CT__HTTP_BODY_NONE:
        CHECK(h->content_length == 0 && ncl == 0 && nte == 0);
        break;
    case CT__HTTP_BODY_LENGTH: {
        CHECK(ncl == 1 && nte == 0 && cl->value_len > 0);
        uint64_t n = 0;
        for (uint32_t j = 0; j < cl->value_len; j++) {
            CHECK(cl->value[j] >= '0' && cl->value[j] <= '9');
            CHECK(n <= (UINT64_MAX - 9) / 10);
            n = n * 10 + (uint64_t) (cl->value[j] - '0');
        }
        CHECK(n == h->content_length && n <= lim->max_body);
        break;
    }
    case CT__HTTP_BODY_CHUNKED:
        CHECK(h->minor == 1 && h->content_length == 0 && ncl == 0 && nte >= 1);
        break;
    default:
        CHECK(!"a body kind out of range");
    }
    CHECK(nhost <= 1 && (h->minor == 0 || nhost == 1));
    CHECK(host ? h->host == host->value && h->host_len == host->value_len : h->host == NULL);
    CHECK(!h->expect_continue || h->minor == 1);
}

/* Two heads parsed from buffers a and b describe the same request at the same offsets. */
static void check_same_head(const char *a, const struct ct__http_head *x, const char *b,
                            const struct ct__http_head *y)
{
    CHECK(x->method - a == y->method - b && x->method_len == y->method_len);
    CHECK(x->target - a == y->target - b && x->target_len == y->target_len);
    CHECK(x->minor == y->minor && x->nfields == y->nfields && x->body == y->body);
    CHECK(x->content_length == y->content_length && x->keep_alive == y->keep_alive);
    CHECK(x->expect_continue == y->expect_continue && x->host_len == y->host_len);
    CHECK((x->host == NULL) == (y->host == NULL));
    CHECK(!x->host || x->host - a == y->host - b);
    for (unsigned i = 0; i < x->nfields; i++) {
        CHECK(x->fields[i].name - a == y->fields[i].name - b);
        CHECK(x->fields[i].name_len == y->fields[i].name_len);
        CHECK(x->fields[i].value - a == y->fields[i].value - b);
        CHECK(x->fields[i].value_len == y->fields[i].value_len);
    }
}

static struct ct__http_head head, again, other;

/* Parse the input under `lim` and check everything about the result. Returns it. */
static int fuzz_head(const uint8_t *data, size_t size, const struct ct__http_limits *lim,
                     bool all_prefixes)
{
    char *buf = copy_of(data, size);
    int r = ct__http_parse_head(buf, size, lim, &head);
    CHECK(r == 0 || is_status(r, true) || (r > 0 && (size_t) r <= size));
    if (r > 0) {
        check_head(buf, r, lim, &head);
        char *alone = copy_of(data, (size_t) r);
        CHECK(ct__http_parse_head(alone, (size_t) r, lim, &again) == r);
        check_same_head(buf, &head, alone, &again);
        free(alone);
    }

    /* Prefixes: all of them when asked (the small limits keep that cheap), else a sample. The
     * parser reads no further than max_header_bytes + 1 bytes, so longer ones add nothing. */
    size_t end = r > 0 ? (size_t) r : size;
    if (end > lim->max_header_bytes + 2)
        end = lim->max_header_bytes + 2;
    size_t stride = all_prefixes || end < 64 ? 1 : end / 32;
    for (size_t k = 0; k < end; k += stride) {
        char *pre = copy_of(data, k);
        int p = ct__http_parse_head(pre, k, lim, &other);
        free(pre);
        CHECK(p == 0 || (r < 0 && p == r));
    }
    free(buf);
    return r;
}

struct decoded {
    long rc;
    size_t consumed, out_len;
    bool done;
    char out[128];
};

/* Decode in[0..len) giving it at most `step` new bytes per call (0: all at once). */
static struct decoded decode(const uint8_t *in, size_t len, size_t step,
                             const struct ct__http_limits *lim)
{
    struct decoded d = {0};
    struct ct__http_chunked c = {0};
    size_t out_cap = lim->max_body < sizeof(d.out) ? (size_t) lim->max_body : sizeof(d.out);
    for (;;) {
        size_t n = len - d.consumed;
        if (step && n > step)
            n = step;
        char *piece = copy_of(in + d.consumed, n);
        d.rc = ct__http_chunked_decode(&c, piece, n, d.out, out_cap, &d.out_len, lim, &d.done);
        free(piece);
        CHECK(d.rc < 0 ? is_status(d.rc, false) && !d.done : (size_t) d.rc <= n);
        CHECK(d.out_len <= out_cap && c.total == d.out_len && c.total <= lim->max_body);
        if (d.rc < 0)
            break;
        CHECK(d.done || (size_t) d.rc == n); /* only a finished body leaves bytes unconsumed */
        d.consumed += (size_t) d.rc;
        if (d.done || d.consumed == len)
            break;
    }
    if (d.rc < 0) {
        /* A failed decoder repeats its status. */
        bool done = true;
        size_t out_len = d.out_len;
        CHECK(ct__http_chunked_decode(&c, "0\r\n\r\n", 5, d.out, out_cap, &out_len, lim, &done) ==
              d.rc);
        CHECK(!done && out_len == d.out_len);
    } else if (d.done) {
        CHECK(d.consumed >= 5 && memcmp(in + d.consumed - 2, "\r\n", 2) == 0);
        bool done = false;
        CHECK(ct__http_chunked_decode(&c, "x", 1, d.out, out_cap, &d.out_len, lim, &done) == 0);
        CHECK(done);
    }
    return d;
}

static void fuzz_chunked(const uint8_t *data, size_t size, const struct ct__http_limits *lim)
{
    struct decoded whole = decode(data, size, 0, lim);
    size_t steps[] = {1, 2, 7, size / 2 + 1};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct decoded d = decode(data, size, steps[i], lim);
        CHECK(d.done == whole.done && d.out_len == whole.out_len);
        CHECK((d.rc < 0) == (whole.rc < 0) && (d.rc >= 0 || d.rc == whole.rc));
        CHECK(d.rc < 0 || d.consumed == whole.consumed);
        CHECK(memcmp(d.out, whole.out, d.out_len) == 0 || d.rc < 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int rs = fuzz_head(data, size, &small, true);
    int ro = fuzz_head(data, size, &ordinary, false);
    /* Larger limits never turn an accepted head into anything else, nor change an error that
     * no limit caused (400 can come from the request-line limit, 413 from max_body). */
    if (rs > 0 || rs == -501 || rs == -505)
        CHECK(ro == rs);

    fuzz_chunked(data, size, &small);
    fuzz_chunked(data, size, &ordinary);
    /* The body after a chunked head, as the server would decode it. */
    if (ro > 0) {
        struct ct__http_head h;
        ct__http_parse_head((const char *) data, size, &ordinary, &h);
        if (h.body == CT__HTTP_BODY_CHUNKED)
            fuzz_chunked(data + ro, size - (size_t) ro, &small);
    }
    return 0;
}
