/* The HTTP/1.1 request parser of ct-http: strict RFC 9112, incremental, no allocation.
 *
 * Internal to libct-http. The I/O thread keeps the bytes a connection sent in one buffer and
 * calls ct__http_parse_head() on it each time more arrive, until the head is complete; then it
 * reads the body (Content-Length bytes, or chunks through ct__http_chunked_decode()).
 *
 * Strict means: CRLF line endings only (a bare LF or bare CR is an error, not a line ending),
 * no obs-fold, no whitespace between a field name and its colon, tokens and field values made
 * of the characters RFC 9110 allows, one Content-Length at most (a list or a repeat is an error,
 * even with equal values), never both Content-Length and Transfer-Encoding, Transfer-Encoding
 * only as "chunked" last (anything else: 501 when the coding is unknown, 400 when chunked is not
 * last or repeated), HTTP/1.1 requires exactly one Host field, only HTTP/1.0 and HTTP/1.1 are
 * accepted (505 for other versions). The point of being strict is that a request can never be
 * read one way here and another way by a proxy in front (request smuggling). */
#ifndef CT_HTTP_PARSER_H
#define CT_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits; every one of them has a status when exceeded. */
struct ct__http_limits {
    size_t max_request_line; /* bytes of method + target + version (414 when the target is what
                                makes it too long, else 400) */
    size_t max_header_bytes; /* bytes of the whole head, request line and leading empty lines
                                included (431); at most INT_MAX */
    unsigned max_headers;    /* header fields (431); at most CT__HTTP_MAX_HEADERS */
    uint64_t max_body;       /* body bytes, Content-Length or the sum of the chunks (413) */
};

#define CT__HTTP_MAX_HEADERS 128

/* A header field as it appears in the buffer: name without the colon, value without leading
 * and trailing whitespace. Pointers into the caller's buffer. */
struct ct__http_field {
    const char *name, *value;
    uint32_t name_len, value_len;
};

enum ct__http_body { CT__HTTP_BODY_NONE, CT__HTTP_BODY_LENGTH, CT__HTTP_BODY_CHUNKED };

/* The parsed head. Every pointer points into the buffer given to ct__http_parse_head(). */
struct ct__http_head {
    const char *method, *target; /* target: the request-target as sent (origin-form, or
                                    absolute-form, or "*" for OPTIONS, or authority-form for
                                    CONNECT) */
    uint32_t method_len, target_len;
    int minor; /* HTTP/1.<minor>: 0 or 1 */
    struct ct__http_field fields[CT__HTTP_MAX_HEADERS];
    unsigned nfields;
    enum ct__http_body body;
    uint64_t content_length; /* CT__HTTP_BODY_LENGTH */
    bool keep_alive;         /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
                                "Connection: keep-alive" */
    bool expect_continue;    /* "Expect: 100-continue" */
    const char *host;        /* the Host field's value, NULL if absent (HTTP/1.0) */
    uint32_t host_len;
};

/* Parse the request head at the start of buf[0..len).
 * Returns: the length of the head (> 0, up to and including its blank line) with *h filled;
 *   0 if the head is not complete yet and nothing is wrong so far (read more and call again with
 *     the same buffer, grown; a limit that is already exceeded is reported at once, not when the
 *     head completes);
 *   -400, -413, -414, -431, -501, -505: the request is invalid; the value is the status to answer
 *     with (-413 only for a Content-Length above max_body).
 * Leading empty lines (CRLF) before a request line are skipped, as RFC 9112 allows, and count
 * in the returned length. *h is meaningful only after a return > 0. Thread: any; no state. */
int ct__http_parse_head(const char *buf, size_t len, const struct ct__http_limits *lim,
                        struct ct__http_head *h);

/* Decoder state for a chunked body; zero-initialise it before the first call. */
struct ct__http_chunked {
    int state;
    uint64_t chunk_left; /* bytes of the current chunk still to copy */
    uint64_t total;      /* body bytes decoded so far */
    uint32_t line_len;   /* bytes of the current size/extension line, to bound it */
    uint32_t meta_bytes; /* bytes of chunk extensions and trailer fields so far, to bound them */
};

/* Decode chunked body bytes from in[0..len), copying the data into out[0..out_cap) from
 * *out_len on. Chunk extensions are read and ignored; trailer fields are read, checked and
 * dropped. Returns: the number of bytes of `in` consumed (>= 0); *out_len advanced; *done set
 * once the last chunk and the trailers are complete (the bytes after them belong to the next
 * request and are not consumed);
 *   -400 invalid framing (a size that is not hex, overflows, a missing CRLF, a bad trailer, a
 *     size line longer than max_request_line);
 *   -413 the body would exceed max_body (or out_cap, which the caller sizes to max_body), or
 *     the chunk extensions and trailers of the body together exceed max_header_bytes.
 * After an error the decoder returns the same status again. Call again with more input until
 * *done. Thread: any (one decoder per body). */
long ct__http_chunked_decode(struct ct__http_chunked *c, const char *in, size_t len, char *out,
                             size_t out_cap, size_t *out_len, const struct ct__http_limits *lim,
                             bool *done);

/* Case-insensitive comparison of a token with a NUL-terminated lower-case literal. */
bool ct__http_token_eq(const char *s, size_t len, const char *lower);

#endif
