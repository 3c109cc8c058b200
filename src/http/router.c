/* Routes and middleware. A route is a method and a path template ("/api/orders/{id}"); matching
 * is case-insensitive and segment by segment, as ASP.NET routing does; a parameter matches one
 * non-empty segment. Routes are few, so matching is a walk over them: no allocation except the
 * parameters' values, copied into the request's arena. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "../core/internal.h"
#include "internal.h"

static bool is_token_char(char c)
{
    return isalnum((unsigned char) c) || strchr("!#$%&'*+-.^_`|~", c);
}

static char *dup_lower(const char *s, size_t n, bool lower)
{
    char *d = ct__malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = lower ? (char) tolower((unsigned char) s[i]) : s[i];
    d[n] = '\0';
    return d;
}

static void route_free(struct route *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->nsegs; i++)
        ct__free(r->segs[i].text);
    ct__free(r->segs);
    ct__free(r->method);
    ct__free(r->pattern);
    ct__free(r);
}

/* Split "/a/{b}/c" into segments: literals lower-cased, parameters by their name. A single
 * trailing '/' is ignored; "//" is an error. */
static int parse_pattern(struct route *r, const char *pattern)
{
    if (pattern[0] != '/')
        return -EINVAL;
    unsigned n = 0;
    for (const char *p = pattern; *p; p++)
        n += *p == '/';
    r->segs = ct__calloc(n, sizeof(*r->segs));
    if (!r->segs)
        return -ENOMEM;
    const char *p = pattern + 1;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t) (end - p) : strlen(p);
        if (len == 0)
            return -EINVAL;
        struct seg *sg = &r->segs[r->nsegs++];
        if (p[0] == '{') {
            if (len < 3 || p[len - 1] != '}')
                return -EINVAL;
            for (size_t i = 1; i + 1 < len; i++)
                if (!isalnum((unsigned char) p[i]) && p[i] != '_')
                    return -EINVAL;
            if (++r->nparams > MAX_PARAMS)
                return -EINVAL;
            sg->param = true;
            sg->text = dup_lower(p + 1, len - 2, false);
        } else {
            for (size_t i = 0; i < len; i++)
                if (p[i] == '{' || p[i] == '}' || (unsigned char) p[i] <= ' ')
                    return -EINVAL;
            sg->text = dup_lower(p, len, true);
            sg->len = len;
        }
        if (!sg->text)
            return -ENOMEM;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

static bool same_route(const struct route *a, const struct route *b)
{
    if (strcmp(a->method, b->method) != 0 || a->nsegs != b->nsegs)
        return false;
    for (unsigned i = 0; i < a->nsegs; i++) {
        bool pa = a->segs[i].param, pb = b->segs[i].param;
        if (pa != pb || (!pa && strcmp(a->segs[i].text, b->segs[i].text) != 0))
            return false;
    }
    return true;
}

int ct_http_route(ct_http_server_t *s, const char *method, const char *pattern,
                  ct_http_handler_fn fn, void *arg, const ct_http_route_options_t *ro)
{
    if (!s || !method || !pattern || !fn || !*method)
        return -EINVAL;
    if (s->started)
        return -EBUSY;
    for (const char *p = method; *p; p++)
        if (!is_token_char(*p))
            return -EINVAL;
    if (ro && (ro->timeout.ms < CT_HTTP_NO_TIMEOUT || ro->timeout.ms > CT_TIMEOUT_MAX_MS ||
               (ro->timeout.status && (ro->timeout.status < 400 || ro->timeout.status > 599))))
        return -EINVAL;
    struct route *r = ct__calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    int rc = -ENOMEM;
    r->fn = fn;
    r->arg = arg;
    if (ro) {
        r->timeout = ro->timeout;
        r->on_io_thread = ro->on_io_thread;
    }
    if (!(r->method = dup_lower(method, strlen(method), false)) ||
        !(r->pattern = dup_lower(pattern, strlen(pattern), false)))
        goto fail;
    for (char *p = r->method; *p; p++)
        *p = (char) toupper((unsigned char) *p);
    if ((rc = parse_pattern(r, pattern)) < 0)
        goto fail;
    rc = -EINVAL;
    for (unsigned i = 0; i < s->nroutes; i++)
        if (same_route(s->routes[i], r))
            goto fail;
    rc = -ENOMEM;
    struct route **routes = ct__realloc(s->routes, (s->nroutes + 1) * sizeof(*routes));
    if (!routes)
        goto fail;
    s->routes = routes;
    r->index = s->nroutes;
    s->routes[s->nroutes++] = r;
    return 0;
fail:
    route_free(r);
    return rc;
}

int ct_http_use(ct_http_server_t *s, ct_http_handler_fn fn, void *arg)
{
    if (!s || !fn)
        return -EINVAL;
    if (s->started)
        return -EBUSY;
    struct middleware *mw = ct__realloc(s->mw, (s->nmw + 1) * sizeof(*mw));
    if (!mw)
        return -ENOMEM;
    s->mw = mw;
    s->mw[s->nmw++] = (struct middleware){fn, arg};
    return 0;
}

void ct__http_routes_free(ct_http_server_t *s)
{
    for (unsigned i = 0; i < s->nroutes; i++)
        route_free(s->routes[i]);
    ct__free(s->routes);
    ct__free(s->mw);
}

/* Does `path` match `r`? With `req`, fills its parameters when it does. */
static bool match_one(ct_http_req_t *req, const struct route *r, const char *path)
{
    const char *p = path + (path[0] == '/');
    unsigned i = 0, np = 0;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t) (end - p) : strlen(p);
        if (len == 0 || i == r->nsegs)
            return false;
        const struct seg *sg = &r->segs[i++];
        if (sg->param) {
            if (req) {
                char *v = ct_http_req_alloc(req, len + 1);
                if (!v)
                    return false;
                memcpy(v, p, len);
                v[len] = '\0';
                req->params[np][0] = sg->text;
                req->params[np][1] = v;
            }
            np++;
        } else if (sg->len != len || strncasecmp(sg->text, p, len) != 0) {
            return false;
        }
        if (!end)
            break;
        p = end + 1; /* a single trailing '/' ends the loop with *p == 0 */
    }
    if (i != r->nsegs)
        return false;
    if (req)
        req->nparams = np;
    return true;
}

/* Of two routes that match the same path, the one with a literal where the other has a
 * parameter, at the first segment where they differ ("/reports/sales" over "/reports/{id}",
 * whatever the order they were added in, as ASP.NET routing ranks them). */
static bool more_specific(const struct route *a, const struct route *b)
{
    for (unsigned i = 0; i < a->nsegs && i < b->nsegs; i++)
        if (a->segs[i].param != b->segs[i].param)
            return !a->segs[i].param;
    return false;
}

static int match_method(ct_http_server_t *s, ct_http_req_t *req, const char *method,
                        bool *path_matched)
{
    struct route *best = NULL;
    for (unsigned i = 0; i < s->nroutes; i++) {
        struct route *r = s->routes[i];
        if (strcmp(r->method, method) != 0) {
            *path_matched = *path_matched || match_one(NULL, r, req->path);
            continue;
        }
        if ((!best || more_specific(r, best)) && match_one(NULL, r, req->path)) {
            best = r;
            if (r->nparams == 0)
                break; /* all literals: nothing is more specific */
        }
    }
    if (!best || !match_one(req, best, req->path))
        return MATCH_NONE;
    req->route = best;
    return MATCH_OK;
}

int ct__http_match(ct_http_server_t *s, ct_http_req_t *req)
{
    bool path_matched = false;
    if (match_method(s, req, req->method, &path_matched) == MATCH_OK)
        return MATCH_OK;
    /* HEAD is GET without the body (RFC 9110 9.3.2): a GET route serves it unless a HEAD route
     * does; the response functions leave the body out. */
    if (strcmp(req->method, "HEAD") == 0 && match_method(s, req, "GET", &path_matched) == MATCH_OK)
        return MATCH_OK;
    return path_matched ? MATCH_WRONG_METHOD : MATCH_NONE;
}
