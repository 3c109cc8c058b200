/* The HTTP/1.1 request parser of ct-http (contract in parser.h).
 *
 * ct__http_parse_head() is a single forward pass over the buffer with no state kept between
 * calls: each call starts again from the first byte, as picohttpparser does, which costs little
 * because a head is small and bounded by max_header_bytes. Every error is decided by the bytes
 * seen so far and never by where the buffer happens to end, so a prefix of a request either needs
 * more bytes (0) or fails with the same status the whole request fails with; the fuzz target
 * checks that property.
 *
 * ct__http_chunked_decode() cannot rescan (the body is copied out and dropped from the buffer), so
 * it is a byte-driven state machine whose state lives in struct ct__http_chunked; chunk data are
 * copied with memcpy, not byte by byte. */
#include "parser.h"

#include <limits.h>
#include <string.h>

/* ---- character classes ---------------------------------------------------------------------- */

enum {
    C_TCHAR = 1,   /* tchar: a token character (RFC 9110 5.6.2) */
    C_VCHAR = 2,   /* VCHAR, %x21-7E: what a request-target is made of here */
    C_FVALUE = 4,  /* field-vchar, SP or HTAB: what may sit inside a field value (RFC 9110 5.5) */
    C_QDTEXT = 8,  /* qdtext: what may sit unescaped inside a quoted-string (RFC 9110 5.6.4) */
    C_HEX = 16,    /* HEXDIG */
    C_REGNAME = 32 /* unreserved or sub-delims: a reg-name character of a Host value (RFC 3986) */
};

#define IS_DIGIT_(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA_(c) (((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z'))
#define IS_TCHAR_(c)                                                                               \
    (IS_DIGIT_(c) || IS_ALPHA_(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||       \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||          \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VCHAR_(c)    ((c) >= 0x21 && (c) <= 0x7e)
#define IS_OBS_TEXT_(c) ((c) >= 0x80)
#define IS_FVALUE_(c)   (IS_VCHAR_(c) || IS_OBS_TEXT_(c) || (c) == ' ' || (c) == '\t')
#define IS_QDTEXT_(c)   (IS_FVALUE_(c) && (c) != '"' && (c) != '\\')
#define IS_HEX_(c)      (IS_DIGIT_(c) || ((c) >= 'A' && (c) <= 'F') || ((c) >= 'a' && (c) <= 'f'))
#define IS_REGNAME_(c)                                                                             \
    (IS_DIGIT_(c) || IS_ALPHA_(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' ||       \
     (c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||          \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define CLASS_(c)                                                                                  \
    ((IS_TCHAR_(c) ? C_TCHAR : 0) | (IS_VCHAR_(c) ? C_VCHAR : 0) |                                 \
     (IS_FVALUE_(c) ? C_FVALUE : 0) | (IS_QDTEXT_(c) ? C_QDTEXT : 0) | (IS_HEX_(c) ? C_HEX : 0) |  \
     (IS_REGNAME_(c) ? C_REGNAME : 0))
#define R4_(c)  CLASS_(c), CLASS_((c) + 1), CLASS_((c) + 2), CLASS_((c) + 3)
#define R16_(c) R4_(c), R4_((c) + 4), R4_((c) + 8), R4_((c) + 12)
#define R64_(c) R16_(c), R16_((c) + 16), R16_((c) + 32), R16_((c) + 48)

/* The table is computed by the compiler from the RFC's definitions above, so it cannot drift
 * from them; one load and one mask per byte is what keeps the scanning loops short. */
static const unsigned char cls[256] = {R64_(0), R64_(64), R64_(128), R64_(192)};

static inline bool is(unsigned char c, unsigned mask)
{
    return (cls[c] & mask) != 0;
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static inline unsigned hex_value(unsigned char c)
{
    return IS_DIGIT_(c) ? (unsigned) (c - '0') : (unsigned) ((c | 0x20) - 'a' + 10);
}

/* The first byte of p[0..end) not in `mask`, or end. Unrolled because header values and targets
 * are the bulk of a head: the loop bound is then tested once per eight bytes. */
static inline const unsigned char *skip(const unsigned char *p, const unsigned char *end,
                                        unsigned mask)
{
    while (end - p >= 8) {
        if (!is(p[0], mask))
            return p;
        if (!is(p[1], mask))
            return p + 1;
        if (!is(p[2], mask))
            return p + 2;
        if (!is(p[3], mask))
            return p + 3;
        if (!is(p[4], mask))
            return p + 4;
        if (!is(p[5], mask))
            return p + 5;
        if (!is(p[6], mask))
            return p + 6;
        if (!is(p[7], mask))
            return p + 7;
        p += 8;
    }
    while (p < end && is(*p, mask))
        p++;
    return p;
}

/* s[0..len) equals the lower-case literal `lower`, ASCII letters compared without case. The
 * parser calls this copy, which the compiler can inline; the exported one may be interposed. */
static inline bool lower_eq(const unsigned char *s, size_t len, const char *lower)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (lower[i] == '\0')
            return false;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char) (c + ('a' - 'A'));
        if (c != (unsigned char) lower[i])
            return false;
    }
    return lower[len] == '\0';
}

bool ct__http_token_eq(const char *s, size_t len, const char *lower)
{
    return lower_eq((const unsigned char *) s, len, lower);
}

static inline bool eq(const unsigned char *s, const unsigned char *e, const char *lower)
{
    return lower_eq(s, (size_t) (e - s), lower);
}

/* ---- the head ------------------------------------------------------------------------------- */

/* What the fields seen so far say about framing and the connection. */
struct seen {
    bool host, content_length, transfer_encoding, chunked, unknown_coding, close, keep_alive,
        expect;
};

/* The request line at *pp: method SP request-target SP HTTP-version CRLF (RFC 9112 3).
 * Returns 1 and moves *pp past the CRLF; 0 if more bytes are needed; a negative status. */
static int request_line(const unsigned char **pp, const unsigned char *end,
                        const struct ct__http_limits *lim, struct ct__http_head *h)
{
    const unsigned char *line = *pp, *p, *stop;
    size_t max = lim->max_request_line;

    /* A line is method SP target SP "HTTP/1.x": 10 bytes besides the method and the target, and
     * a target has at least one byte. A method longer than what leaves room for that is a bad
     * request (400); a target longer than what the method leaves is what 414 is for. Both are
     * reported at the first byte beyond the budget, without waiting for the line to end. */
    size_t method_max = max > 11 ? max - 11 : 0;
    stop = (size_t) (end - line) > method_max ? line + method_max : end;
    p = skip(line, stop, C_TCHAR);
    if (p == end)
        return 0;
    if (*p != ' ' || p == line)
        return -400;
    h->method = (const char *) line;
    h->method_len = (uint32_t) (p - line);

    const unsigned char *target = p + 1;
    size_t target_max = max - h->method_len - 10;
    stop = (size_t) (end - target) > target_max ? target + target_max : end;
    p = skip(target, stop, C_VCHAR);
    if (p == end)
        return 0;
    if (*p != ' ')
        return p == stop && is(*p, C_VCHAR) ? -414 : -400;
    if (p == target)
        return -400;
    h->target = (const char *) target;
    h->target_len = (uint32_t) (p - target);

    /* "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3). The version is judged as soon as
     * its eight bytes are in: a well-formed version other than 1.0 or 1.1 is 505 whatever
     * follows, so a prefix never gets a different answer from the whole line. */
    const unsigned char *v = p + 1;
    size_t avail = (size_t) (end - v);
    for (size_t i = 0; i < 8 && i < avail; i++) {
        if (i == 5 || i == 7 ? !IS_DIGIT_(v[i]) : v[i] != (unsigned char) "HTTP/1.1"[i])
            return -400;
    }
    if (avail < 8)
        return 0;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return -505;
    h->minor = v[7] - '0';
    p = v + 8;
    if (p == end)
        return 0;
    if (*p != '\r')
        return -400;
    if (p + 1 == end)
        return 0;
    if (p[1] != '\n')
        return -400;
    *pp = p + 2;
    return 1;
}

/* Content-Length = 1*DIGIT (RFC 9110 8.6). A list, even of equal values, is not accepted: it is
 * exactly what two parsers read differently. */
static int content_length(const unsigned char *v, const unsigned char *e,
                          const struct ct__http_limits *lim, struct ct__http_head *h)
{
    uint64_t n = 0;
    bool too_big = false;
    if (v == e)
        return -400;
    for (; v < e; v++) {
        if (!IS_DIGIT_(*v))
            return -400;
        unsigned d = (unsigned) (*v - '0');
        /* Every digit is checked before the size is judged, so "12x" is 400 however large the
         * digits before the x; past max_body the value stops growing and cannot overflow. */
        if (!too_big && (d > lim->max_body || n > (lim->max_body - d) / 10))
            too_big = true;
        else if (!too_big)
            n = n * 10 + d;
    }
    if (too_big)
        return -413;
    h->content_length = n;
    return 0;
}

/* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 5.6.4), with v at its
 * opening quote. Returns the byte after the closing quote, or NULL if it is malformed or cut. */
static const unsigned char *quoted_string(const unsigned char *v, const unsigned char *e)
{
    for (v++; v < e;) {
        if (*v == '"')
            return v + 1;
        if (*v == '\\') {
            if (e - v < 2 || !is(v[1], C_FVALUE))
                return NULL;
            v += 2;
        } else if (is(*v, C_QDTEXT)) {
            v++;
        } else {
            return NULL;
        }
    }
    return NULL;
}

/* transfer-parameter = token BWS "=" BWS ( token / quoted-string ), after the ";" at v. Returns
 * the byte after it, or NULL if it is malformed. */
static const unsigned char *transfer_parameter(const unsigned char *v, const unsigned char *e)
{
    while (v < e && is_ows(*v))
        v++;
    const unsigned char *name = v;
    v = skip(v, e, C_TCHAR);
    if (v == name)
        return NULL;
    while (v < e && is_ows(*v))
        v++;
    if (v == e || *v++ != '=')
        return NULL;
    while (v < e && is_ows(*v))
        v++;
    if (v < e && *v == '"')
        return quoted_string(v, e);
    const unsigned char *value = v;
    v = skip(v, e, C_TCHAR);
    return v == value ? NULL : v;
}

/* Transfer-Encoding = #transfer-coding (RFC 9112 6.1). Only "chunked" is implemented, so only a
 * list ending in one "chunked" frames a body. Anything after chunked, or chunked twice, leaves the
 * length undecidable: 400 at once (RFC 9112 6.3). A coding other than chunked is one this server
 * does not understand: 501 (RFC 9112 6.1), but only once the whole head has been read, because a
 * framing error anywhere in it (Content-Length as well, chunked not last) is the better answer. */
static int transfer_encoding(const unsigned char *v, const unsigned char *e, struct seen *s)
{
    while (v < e) {
        if (*v == ',' || is_ows(*v)) {
            v++; /* empty list elements are allowed (RFC 9110 5.6.1) */
            continue;
        }
        const unsigned char *name = v;
        v = skip(v, e, C_TCHAR);
        if (v == name)
            return -400;
        const unsigned char *name_end = v;
        bool params = false;
        for (;;) {
            while (v < e && is_ows(*v))
                v++;
            if (v == e || *v != ';')
                break;
            params = true;
            v = transfer_parameter(v + 1, e);
            if (!v)
                return -400;
        }
        if (v < e && *v != ',')
            return -400;
        if (s->chunked)
            return -400;
        if (eq(name, name_end, "chunked")) {
            if (params)
                return -400; /* chunked has no parameters; what one would mean is anyone's guess */
            s->chunked = true;
        } else {
            s->unknown_coding = true;
        }
    }
    return 0;
}

/* Connection = #connection-option, each a token (RFC 9110 7.6.1). */
static int connection(const unsigned char *v, const unsigned char *e, struct seen *s)
{
    while (v < e) {
        if (*v == ',' || is_ows(*v)) {
            v++;
            continue;
        }
        const unsigned char *opt = v;
        v = skip(v, e, C_TCHAR);
        if (v == opt)
            return -400;
        if (eq(opt, v, "close"))
            s->close = true;
        else if (eq(opt, v, "keep-alive"))
            s->keep_alive = true;
        while (v < e && is_ows(*v))
            v++;
        if (v < e && *v != ',')
            return -400;
    }
    return 0;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2), uri-host an IP-literal or a reg-name (RFC 3986);
 * empty is allowed. RFC 9110 7.2 makes an invalid Host a 400: a value that another component
 * would cut differently ("a b", "a/b", "a@b") must not get as far as routing. */
static bool host_valid(const unsigned char *v, const unsigned char *e)
{
    if (v < e && *v == '[') {
        const unsigned char *lit = ++v;
        while (v < e && (is(*v, C_REGNAME) || *v == ':'))
            v++;
        if (v == e || *v != ']' || v == lit)
            return false;
        v++;
    } else {
        while (v < e) {
            if (is(*v, C_REGNAME))
                v++;
            else if (*v == '%' && e - v >= 3 && is(v[1], C_HEX) && is(v[2], C_HEX))
                v += 3;
            else
                break;
        }
    }
    if (v == e)
        return true;
    if (*v++ != ':')
        return false;
    while (v < e && IS_DIGIT_(*v))
        v++;
    return v == e;
}

/* What a field means for framing and the connection; the fields are checked as they complete,
 * so a conflict is reported without waiting for the end of the head. */
static int on_field(const unsigned char *n, size_t nlen, const unsigned char *v,
                    const unsigned char *e, const struct ct__http_limits *lim,
                    struct ct__http_head *h, struct seen *s)
{
    switch (nlen) {
    case 4:
        if (!lower_eq(n, nlen, "host"))
            return 0;
        if (s->host || !host_valid(v, e))
            return -400;
        s->host = true;
        h->host = (const char *) v;
        h->host_len = (uint32_t) (e - v);
        return 0;
    case 6:
        /* Only the whole value "100-continue" is an expectation we act on; any other expectation
         * is ignored, as RFC 9110 10.1.1 allows (the alternative, 417, is the server's call). */
        if (lower_eq(n, nlen, "expect") && eq(v, e, "100-continue"))
            s->expect = true;
        return 0;
    case 10:
        if (!lower_eq(n, nlen, "connection"))
            return 0;
        return connection(v, e, s);
    case 14:
        if (!lower_eq(n, nlen, "content-length"))
            return 0;
        if (s->content_length || s->transfer_encoding)
            return -400;
        s->content_length = true;
        return content_length(v, e, lim, h);
    case 17:
        if (!lower_eq(n, nlen, "transfer-encoding"))
            return 0;
        /* Transfer-Encoding with Content-Length is the classic smuggling pair (RFC 9112 6.3 says
         * a server MAY reject it; here it always does), and in HTTP/1.0, which has no transfer
         * codings, the framing is faulty (RFC 9112 6.1). */
        if (s->content_length || h->minor == 0)
            return -400;
        s->transfer_encoding = true;
        return transfer_encoding(v, e, s);
    default:
        return 0;
    }
}

/* The head in buf[0..end), which ends within the head limit. Returns as ct__http_parse_head(). */
static int parse(const unsigned char *buf, const unsigned char *end,
                 const struct ct__http_limits *lim, struct ct__http_head *h)
{
    const unsigned char *p = buf;
    unsigned max_fields =
        lim->max_headers < CT__HTTP_MAX_HEADERS ? lim->max_headers : CT__HTTP_MAX_HEADERS;
    struct seen s = {0};
    int rc;

    /* RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request line. Only
     * CRLF counts as one; any number of them, within the head limit. */
    for (;;) {
        if (p == end)
            return 0;
        if (*p != '\r')
            break;
        if (p + 1 == end)
            return 0;
        if (p[1] != '\n')
            return -400;
        p += 2;
    }

    h->nfields = 0;
    h->host = NULL;
    h->host_len = 0;
    h->content_length = 0;
    rc = request_line(&p, end, lim, h);
    if (rc <= 0)
        return rc;

    for (;;) {
        if (p == end)
            return 0;
        if (*p == '\r') {
            if (p + 1 == end)
                return 0;
            if (p[1] != '\n')
                return -400;
            p += 2;
            break;
        }
        if (h->nfields == max_fields)
            return -431;

        /* field-line = field-name ":" OWS field-value OWS (RFC 9112 5). A name is a token, so a
         * line that starts with whitespace (obs-fold, or whitespace after the request line) or
         * has whitespace before its colon fails here. */
        const unsigned char *name = p;
        p = skip(p, end, C_TCHAR);
        if (p == end)
            return 0;
        if (*p != ':' || p == name)
            return -400;
        size_t name_len = (size_t) (p - name);
        p++;
        while (p < end && is_ows(*p))
            p++;
        const unsigned char *value = p;
        p = skip(p, end, C_FVALUE);
        if (p == end)
            return 0;
        /* The value stops at a byte that is not field-vchar, SP or HTAB: it must be the CR of a
         * CRLF. A bare LF, a bare CR, NUL or another control is never a line ending here. */
        if (*p != '\r')
            return -400;
        if (p + 1 == end)
            return 0;
        if (p[1] != '\n')
            return -400;
        const unsigned char *value_end = p;
        while (value_end > value && is_ows(value_end[-1]))
            value_end--;
        p += 2;

        struct ct__http_field *f = &h->fields[h->nfields++];
        f->name = (const char *) name;
        f->name_len = (uint32_t) name_len;
        f->value = (const char *) value;
        f->value_len = (uint32_t) (value_end - value);
        rc = on_field(name, name_len, value, value_end, lim, h, &s);
        if (rc < 0)
            return rc;
    }

    /* RFC 9112 3.2: an HTTP/1.1 request without Host is a 400. A transfer coding this server does
     * not implement is 501 (RFC 9112 6.1), and without one, a Transfer-Encoding whose final coding
     * is not chunked leaves the body length unknown: 400 (RFC 9112 6.3). */
    if (h->minor == 1 && !s.host)
        return -400;
    if (s.unknown_coding)
        return -501;
    if (s.transfer_encoding && !s.chunked)
        return -400;
    h->body = s.chunked          ? CT__HTTP_BODY_CHUNKED
              : s.content_length ? CT__HTTP_BODY_LENGTH
                                 : CT__HTTP_BODY_NONE;
    h->keep_alive = !s.close && (h->minor == 1 || s.keep_alive);
    /* RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored. */
    h->expect_continue = s.expect && h->minor == 1;
    return (int) (p - buf);
}

int ct__http_parse_head(const char *buf, size_t len, const struct ct__http_limits *lim,
                        struct ct__http_head *h)
{
    /* The scan never looks past max_header_bytes: a head that has not ended there is too large
     * (431) whatever follows, and knowing that needs only one byte more. The limit is capped at
     * INT_MAX because the length is returned as an int. */
    size_t cap = lim->max_header_bytes < INT_MAX ? lim->max_header_bytes : INT_MAX;
    size_t n = len < cap ? len : cap;
    const unsigned char *b = (const unsigned char *) buf;
    int rc = parse(b, b + n, lim, h);
    if (rc == 0 && len > n)
        return -431;
    return rc;
}

/* ---- chunked bodies ------------------------------------------------------------------------- */

/* RFC 9112 7.1:
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * Whitespace is accepted exactly where that grammar puts BWS and nowhere else: "5 ;a" is a chunk
 * of 5, "5 " alone is an error, as is any character the grammar does not allow. */
enum {
    CH_SIZE_START,    /* the first hex digit of a chunk size */
    CH_SIZE,          /* more hex digits */
    CH_BWS,           /* BWS after the size or a value: ";" must follow */
    CH_NAME_START,    /* after ";": BWS, then the first character of an extension name */
    CH_NAME,          /* more of the name */
    CH_NAME_BWS,      /* BWS after a name: "=" or ";" must follow */
    CH_VALUE_START,   /* after "=": BWS, then a token or a quoted-string */
    CH_VALUE_TOKEN,   /* more of a token value */
    CH_QUOTED,        /* inside a quoted-string */
    CH_QUOTED_PAIR,   /* after a backslash inside a quoted-string */
    CH_VALUE_END,     /* after the closing quote */
    CH_SIZE_LF,       /* the LF that ends the size line */
    CH_DATA,          /* chunk data */
    CH_DATA_CR,       /* the CR after chunk data */
    CH_DATA_LF,       /* the LF after chunk data */
    CH_TRAILER_LINE,  /* the start of a trailer line, or the CRLF that ends the body */
    CH_TRAILER_NAME,  /* a trailer field name */
    CH_TRAILER_VALUE, /* after its colon, up to the CR */
    CH_TRAILER_LF,    /* the LF that ends a trailer line */
    CH_END_LF,        /* the LF of the final CRLF */
    CH_DONE
};

/* Whether a byte read in state `st` belongs to a size line, CRLF excluded. */
static inline bool in_size_line(int st, unsigned char ch)
{
    return st < CH_SIZE_LF && ch != '\r';
}

/* Whether a byte read in state `st` belongs to a chunk extension (the line's CRLF excluded) or to
 * a trailer field line (its CRLF included; the empty line that ends the body is not counted). */
static inline bool is_meta(int st, unsigned char ch)
{
    if (st == CH_SIZE)
        return ch == ';' || is_ows(ch);
    if (st >= CH_BWS && st <= CH_VALUE_END)
        return ch != '\r';
    if (st == CH_TRAILER_LINE)
        return ch != '\r';
    return st == CH_TRAILER_NAME || st == CH_TRAILER_VALUE || st == CH_TRAILER_LF;
}

/* Count one more byte in *n unless that makes it exceed `max`. */
static inline bool bump(uint32_t *n, size_t max)
{
    if (*n >= max || *n == UINT32_MAX)
        return false;
    (*n)++;
    return true;
}

/* The size line has been read up to its first byte after the digits: judge the size. */
static int chunk_size_done(const struct ct__http_chunked *c, size_t out_len, size_t out_cap,
                           const struct ct__http_limits *lim)
{
    size_t room = out_len < out_cap ? out_cap - out_len : 0;
    if (c->chunk_left > lim->max_body - c->total || c->chunk_left > room)
        return -413;
    return 0;
}

/* The one byte a state allows, then the next state. */
static int expect(struct ct__http_chunked *c, unsigned char ch, unsigned char want, int next)
{
    if (ch != want)
        return -400;
    c->state = next;
    return 0;
}

/* One byte of everything but chunk data. Returns 0, or a negative status. */
static int chunked_byte(struct ct__http_chunked *c, unsigned char ch, size_t out_len,
                        size_t out_cap, const struct ct__http_limits *lim)
{
    switch (c->state) {
    case CH_SIZE_START:
        if (!is(ch, C_HEX))
            return -400;
        c->chunk_left = hex_value(ch);
        c->state = CH_SIZE;
        return 0;
    case CH_SIZE:
        if (is(ch, C_HEX)) {
            /* An overflowing size is malformed, not merely large: reject it before it wraps. */
            if (c->chunk_left > (UINT64_MAX >> 4))
                return -400;
            c->chunk_left = c->chunk_left << 4 | hex_value(ch);
            return 0;
        }
        if (ch == ';')
            c->state = CH_NAME_START;
        else if (is_ows(ch))
            c->state = CH_BWS;
        else if (ch == '\r')
            c->state = CH_SIZE_LF;
        else
            return -400;
        return chunk_size_done(c, out_len, out_cap, lim);
    case CH_BWS:
        if (ch == ';')
            c->state = CH_NAME_START;
        else if (!is_ows(ch))
            return -400;
        return 0;
    case CH_NAME_START:
        if (is(ch, C_TCHAR))
            c->state = CH_NAME;
        else if (!is_ows(ch))
            return -400;
        return 0;
    case CH_NAME:
    case CH_NAME_BWS:
        if (ch == '=')
            c->state = CH_VALUE_START;
        else if (ch == ';')
            c->state = CH_NAME_START;
        else if (is_ows(ch))
            c->state = CH_NAME_BWS;
        else if (ch == '\r' && c->state == CH_NAME)
            c->state = CH_SIZE_LF;
        else if (!(is(ch, C_TCHAR) && c->state == CH_NAME))
            return -400;
        return 0;
    case CH_VALUE_START:
        if (is(ch, C_TCHAR))
            c->state = CH_VALUE_TOKEN;
        else if (ch == '"')
            c->state = CH_QUOTED;
        else if (!is_ows(ch))
            return -400;
        return 0;
    case CH_VALUE_TOKEN:
    case CH_VALUE_END:
        if (ch == ';')
            c->state = CH_NAME_START;
        else if (is_ows(ch))
            c->state = CH_BWS;
        else if (ch == '\r')
            c->state = CH_SIZE_LF;
        else if (!(is(ch, C_TCHAR) && c->state == CH_VALUE_TOKEN))
            return -400;
        return 0;
    case CH_QUOTED:
        if (ch == '"')
            c->state = CH_VALUE_END;
        else if (ch == '\\')
            c->state = CH_QUOTED_PAIR;
        else if (!is(ch, C_QDTEXT))
            return -400;
        return 0;
    case CH_QUOTED_PAIR:
        /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
        if (!is(ch, C_FVALUE))
            return -400;
        c->state = CH_QUOTED;
        return 0;
    case CH_SIZE_LF:
        if (ch != '\n')
            return -400;
        c->line_len = 0;
        c->state = c->chunk_left ? CH_DATA : CH_TRAILER_LINE;
        return 0;
    case CH_DATA_CR:
        return expect(c, ch, '\r', CH_DATA_LF);
    case CH_DATA_LF:
        return expect(c, ch, '\n', CH_SIZE_START);
    case CH_TRAILER_LINE:
        /* A trailer field is a field line like those of the head, read with the same rules and
         * then dropped. */
        if (ch == '\r')
            c->state = CH_END_LF;
        else if (is(ch, C_TCHAR))
            c->state = CH_TRAILER_NAME;
        else
            return -400;
        return 0;
    case CH_TRAILER_NAME:
        if (ch == ':')
            c->state = CH_TRAILER_VALUE;
        else if (!is(ch, C_TCHAR))
            return -400;
        return 0;
    case CH_TRAILER_VALUE:
        if (ch == '\r')
            c->state = CH_TRAILER_LF;
        else if (!is(ch, C_FVALUE))
            return -400;
        return 0;
    case CH_TRAILER_LF:
        return expect(c, ch, '\n', CH_TRAILER_LINE);
    case CH_END_LF:
        return expect(c, ch, '\n', CH_DONE);
    default:
        return -400; /* a state this decoder never sets: the struct was not zero-initialised */
    }
}

long ct__http_chunked_decode(struct ct__http_chunked *c, const char *in, size_t len, char *out,
                             size_t out_cap, size_t *out_len, const struct ct__http_limits *lim,
                             bool *done)
{
    const unsigned char *p = (const unsigned char *) in, *end = p + len;
    int rc = 0;

    /* A failed decoder keeps its status (as -status in state) and repeats it. */
    if (c->state < 0) {
        *done = false;
        return c->state;
    }
    while (p < end && c->state != CH_DONE) {
        if (c->state == CH_DATA) {
            size_t n = (size_t) (end - p);
            if (n > c->chunk_left)
                n = (size_t) c->chunk_left;
            /* The size was checked against the room left in `out` when its line was read; this
             * check only matters to a caller that moved *out_len since. */
            if (*out_len > out_cap || n > out_cap - *out_len) {
                rc = -413;
                break;
            }
            memcpy(out + *out_len, p, n);
            *out_len += n;
            p += n;
            c->chunk_left -= n;
            c->total += n;
            if (c->chunk_left == 0)
                c->state = CH_DATA_CR;
            continue;
        }

        /* The framing around the data is bounded: one size line by max_request_line (leading
         * zeros and extensions cannot make it endless), and the extensions and trailers of the
         * whole body together by max_header_bytes, so that a client cannot send unbounded bytes
         * that never count as body (the amplification of CVE-2024-22019). */
        if (in_size_line(c->state, *p) && !bump(&c->line_len, lim->max_request_line)) {
            rc = -400;
            break;
        }
        if (is_meta(c->state, *p) && !bump(&c->meta_bytes, lim->max_header_bytes)) {
            rc = -413;
            break;
        }
        rc = chunked_byte(c, *p, *out_len, out_cap, lim);
        if (rc < 0)
            break;
        p++;
    }
    if (rc < 0) {
        c->state = rc;
        *done = false;
        return rc;
    }
    *done = c->state == CH_DONE;
    return (long) (p - (const unsigned char *) in);
}
