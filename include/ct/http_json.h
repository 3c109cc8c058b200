/* ct/http_json.h — JSON requests and responses for ct-http, with jansson (Debian's libjansson).
 * Kept out of ct/http.h so that only code that wants JSON includes jansson.h. */
#ifndef CT_HTTP_JSON_H
#define CT_HTTP_JSON_H

#include <jansson.h>

#include "ct/http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Send `value` as an application/json response and release it (the reference is stolen, also on
 * error). Returns as ct_http_respond(); -EINVAL for a NULL value; -ENOMEM. Thread: the request's.
 */
int ct_http_respond_json(ct_http_req_t *req, int status, json_t *value);

/* The request body parsed as JSON. On a missing or invalid body this answers 400 with a JSON
 * error and returns NULL. Ownership: the caller releases the result with json_decref(). */
json_t *ct_http_req_json(ct_http_req_t *req);

#ifdef __cplusplus
}
#endif
#endif
