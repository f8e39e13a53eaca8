/* Partners and gateway settings as JSON, and the edits a writer applies inside
 * the store's commit transaction. Shared by xfedctl and the admin API so that
 * both print the same shape and validate the same way.
 *
 *   xf_partner_json / xf_gateway_json   the `--json` shape (the passphrase is never output)
 *   xf_partner_edits + xf_partner_apply an xf_partner_edit for xf_store_partner_commit:
 *                                       fields marked in `set` change, the others keep
 *                                       their values (the `partner set` semantics)
 *   xf_partner_edits_json               fills edits from a JSON object (the API's bodies)
 *   xf_gateway_edits + xf_gateway_apply the same for xf_store_gateway_commit
 */
#ifndef XF_PARTNER_JSON_H
#define XF_PARTNER_JSON_H

#include "partner.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fields an edit changes (xf_partner_edits.set). */
enum {
    XF_EDIT_DESCRIPTION = 1u << 0,
    XF_EDIT_DOMAINS = 1u << 1, /* replace the additional domains */
    XF_EDIT_TYPE = 1u << 2,
    XF_EDIT_TLS = 1u << 3,
    XF_EDIT_SASL = 1u << 4,
    XF_EDIT_DIALBACK = 1u << 5,
    XF_EDIT_LIMIT = 1u << 6,
    XF_EDIT_KEEPALIVE = 1u << 7,
    XF_EDIT_PROXY = 1u << 8,
    XF_EDIT_CLEAR = 1u << 9, /* remove every additional domain first */
};

#define XF_EDIT_DOMAIN_OPS_MAX 256 /* domains named by one edit, per list */

/* What one command or request changes. Strings are borrowed: from argv, or
 * from the JSON object the edits were read from, which must outlive them. */
typedef struct {
    unsigned set;
    const char *description;
    const char *domains_csv;                     /* XF_EDIT_DOMAINS from the CLI: "d1, d2" */
    const char *domains[XF_EDIT_DOMAIN_OPS_MAX]; /* XF_EDIT_DOMAINS from JSON */
    size_t ndomains;
    xf_partner_type type;
    xf_neg tls, sasl;
    bool dialback, keepalive;
    uint32_t limit;
    const char *proxy;
    const char *add[XF_EDIT_DOMAIN_OPS_MAX];
    size_t nadd;
    const char *del[XF_EDIT_DOMAIN_OPS_MAX];
    size_t ndel;
    const char *del_name; /* how messages name a removal: "--remove-domain" */
} xf_partner_edits;

/* An xf_partner_edit: `arg` is a const xf_partner_edits. */
void xf_partner_apply(xf_partner *p, void *arg, xf_verdict *v);

/* Lower-cases and checks one domain argument; a refusal naming `what` goes to v. */
bool xf_domain_arg(const char *in, char out[XF_DOMAIN_MAX + 1], const char *what, xf_verdict *v);

/* Fills `e` (zeroed by the caller) from a JSON object with the keys of
 * xf_partner_json, plus "add_domains" / "remove_domains" arrays. "domain" is
 * accepted and returned in *domain (NULL when absent); "matrix_row" and
 * "methods" are read-only and ignored, so an object read back can be sent
 * again. Returns false with a message for a malformed body: an unknown key, a
 * value of the wrong type or an enum value that does not parse. Range and
 * matrix rules are left to the commit, as for xfedctl. */
bool xf_partner_edits_json(const json_t *obj, xf_partner_edits *e, const char **domain, char *err,
                           size_t errlen);

/* The `partner get --json` object. */
json_t *xf_partner_json(const xf_partner *p);
/* ["sasl_tls", "dialback_tls", "dialback_tcp"] filtered by the bit set. */
json_t *xf_methods_json(unsigned methods);

#define XF_GATEWAY_FIELDS_MAX 8

typedef struct {
    bool has[XF_GATEWAY_FIELDS_MAX]; /* indexed like xf_gateway_fields */
    uint32_t val[XF_GATEWAY_FIELDS_MAX];
    const char *passphrase; /* NULL: unchanged */
    int log_bodies;         /* -1: unchanged */
} xf_gateway_edits;

void xf_gateway_edits_init(xf_gateway_edits *e);
/* An xf_gateway_edit: `arg` is a const xf_gateway_edits. */
void xf_gateway_apply(xf_gateway *g, void *arg, xf_verdict *v);
/* Keys of xf_gateway_json (dialback_passphrase_set is read-only and ignored)
 * plus "dialback_passphrase". Returns false with a message like
 * xf_partner_edits_json; *changes counts the settings named. */
bool xf_gateway_edits_json(const json_t *obj, xf_gateway_edits *e, int *changes, char *err,
                           size_t errlen);
/* The `gateway get --json` object: never the passphrase, only whether one is set. */
json_t *xf_gateway_json(const xf_gateway *g);

/* The negotiation matrix (spec §4) as an array of 18 objects: row, tls, sasl,
 * dialback, methods, commit ("ok", "info", "warning", "refused"), message. */
json_t *xf_matrix_json(void);

#endif
