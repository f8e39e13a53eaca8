/* The admin API behind the listener's routes (private to admin.c and
 * admin_api.c). Every handler runs on MHD's one internal thread.
 *
 *   GET  /api/partners            every stored partner (the `partner get --json` array)
 *   POST /api/partners            create: 201, 409 when it exists, 422 when refused
 *   GET/PUT/DELETE /api/partners/{domain}
 *                                 PUT changes the fields present (the `partner set`
 *                                 semantics; also add_domains / remove_domains)
 *   GET/PUT /api/gateway          the gateway settings (PUT may set dialback_passphrase;
 *                                 GET never returns it)
 *   GET  /api/status              per partner of the live snapshot: streams, method,
 *                                 last success and failure
 *   GET  /api/matrix              the negotiation matrix, for the panel's live notes
 *
 * Every /api route needs `Authorization: Bearer <token>` (401), bodies must be
 * application/json (415), at most XF_ADMIN_BODY_MAX bytes (413), and parse as
 * one JSON object (400). Validation is the store's commit, as for xfedctl.
 */
#ifndef XF_ADMIN_API_H
#define XF_ADMIN_API_H

#include "admin.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

/* Method bits a route accepts. */
enum {
    XF_ADMIN_GET = 1u << 0,
    XF_ADMIN_HEAD = 1u << 1,
    XF_ADMIN_POST = 1u << 2,
    XF_ADMIN_PUT = 1u << 3,
    XF_ADMIN_DELETE = 1u << 4,
};

#define XF_ADMIN_TOKEN_MAX 256 /* bytes of a token file's token */

typedef struct {
    unsigned method;  /* one XF_ADMIN_* bit */
    const char *rest; /* a prefix route's path after the prefix */
    const char *body; /* NUL-terminated; NULL when the request had none */
    size_t body_len;
    bool body_too_large; /* more than XF_ADMIN_BODY_MAX bytes came (and were drained) */
} xf_admin_request;

typedef struct xf_api xf_api;

/* Opens the API's state: reads or generates the token, opens the store.
 * NULL cfg or no token file: a disabled API (every /api route answers 403).
 * Returns NULL with err set when the token file or the store fails. */
xf_api *xf_api_open(const xf_admin_api *cfg, xf_metrics *m, char *err, size_t errlen);
void xf_api_close(xf_api *api);

xf_api *xf_admin_api_of(xf_admin *a); /* admin.c */

typedef enum MHD_Result (*xf_admin_handler)(xf_admin *a, struct MHD_Connection *c,
                                            const xf_admin_request *rq);
enum MHD_Result xf_api_partners(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq);
enum MHD_Result xf_api_partner(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq);
enum MHD_Result xf_api_gateway(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq);
enum MHD_Result xf_api_status(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq);
enum MHD_Result xf_api_matrix(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq);

/* Queues a response with the listener's security headers. `body` (len bytes)
 * is copied; `extra_name`/`extra_value` (NULL: none) is one more header. */
enum MHD_Result xf_admin_reply(struct MHD_Connection *c, unsigned status, const char *type,
                               const char *body, size_t len, const char *extra_name,
                               const char *extra_value);

/* Constant-time comparison of a presented token with the configured one: the
 * time depends on the configured token's length only. */
bool xf_admin_token_equal(const char *given, size_t given_len, const char *token, size_t token_len);

#endif
