/* JSON for ct-http through jansson: the one file of libct-http that includes jansson.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ct/http_json.h"

int ct_http_respond_json(ct_http_req_t *req, int status, json_t *value)
{
    if (!req || !value) {
        json_decref(value);
        return -EINVAL;
    }
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(value);
    if (!text)
        return -ENOMEM;
    int rc = ct_http_respond(req, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

json_t *ct_http_req_json(ct_http_req_t *req)
{
    size_t len;
    const char *body = ct_http_req_body(req, &len);
    json_error_t err;
    json_t *v = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &err) : NULL;
    if (!v)
        ct_http_respond_error(req, 400, "invalid_json", len ? err.text : "a JSON body is required");
    return v;
}
