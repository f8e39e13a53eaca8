/* Partners and gateway settings as JSON, and the shared edit logic. */
#include "partner_json.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(XF_EDIT_DOMAIN_OPS_MAX >= XF_PARTNER_DOMAINS_MAX,
               "an edit can name every additional domain");

/* ---- applying edits (inside the commit transaction) ---------------------- */

bool xf_domain_arg(const char *in, char out[XF_DOMAIN_MAX + 1], const char *what, xf_verdict *v)
{
    char why[XF_VERDICT_MSG_MAX - 64];
    if (!xf_domain_normalize(in, out, why, sizeof why)) {
        xf_verdict_add(v, XF_COMMIT_REFUSED, "%s: %s", what, why);
        return false;
    }
    return true;
}

static void add_domain(xf_partner *p, const char *d, xf_verdict *v)
{
    char norm[XF_DOMAIN_MAX + 1];
    if (!xf_domain_arg(d, norm, "additional domain", v)) return;
    for (uint32_t i = 0; i < p->domain_count; i++)
        if (strcmp(p->domains[i], norm) == 0) return; /* already there: set semantics */
    if (p->domain_count == XF_PARTNER_DOMAINS_MAX) {
        xf_verdict_add(v, XF_COMMIT_REFUSED, "at most %d additional domains per partner",
                       XF_PARTNER_DOMAINS_MAX);
        return;
    }
    snprintf(p->domains[p->domain_count++], XF_DOMAIN_MAX + 1, "%s", norm);
}

/* "d1, d2,,d3": entries trimmed of spaces, empty ones skipped. */
static void add_domains_csv(xf_partner *p, const char *csv, xf_verdict *v)
{
    char *list = strdup(csv);
    if (!list) {
        xf_verdict_add(v, XF_COMMIT_REFUSED, "out of memory");
        return;
    }
    for (char *save, *d = strtok_r(list, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
        while (*d == ' ')
            d++;
        char *end = d + strlen(d);
        while (end > d && end[-1] == ' ')
            *--end = '\0';
        if (*d) add_domain(p, d, v);
    }
    free(list);
}

static void remove_domain(xf_partner *p, const char *d, const char *what, xf_verdict *v)
{
    char norm[XF_DOMAIN_MAX + 1];
    if (!xf_domain_arg(d, norm, what, v)) return;
    uint32_t j = 0;
    while (j < p->domain_count && strcmp(p->domains[j], norm) != 0)
        j++;
    if (j == p->domain_count) {
        xf_verdict_add(v, XF_COMMIT_REFUSED, "'%s' is not an additional domain of partner '%s'",
                       norm, p->domain);
        return;
    }
    memmove(p->domains[j], p->domains[j + 1],
            (size_t)(p->domain_count - j - 1) * sizeof p->domains[0]);
    p->domain_count--;
}

void xf_partner_apply(xf_partner *p, void *arg, xf_verdict *v)
{
    const xf_partner_edits *e = arg;
    assert(p != NULL);
    assert(e != NULL);
    assert(e->ndomains <= XF_EDIT_DOMAIN_OPS_MAX);
    if (e->set & XF_EDIT_DESCRIPTION) {
        if (strlen(e->description) > XF_DESCRIPTION_MAX)
            xf_verdict_add(v, XF_COMMIT_REFUSED, "the description is longer than %d characters",
                           XF_DESCRIPTION_MAX);
        else
            snprintf(p->description, sizeof p->description, "%s", e->description);
    }
    if (e->set & XF_EDIT_CLEAR) p->domain_count = 0;
    if (e->set & XF_EDIT_DOMAINS) {
        p->domain_count = 0;
        if (e->domains_csv) add_domains_csv(p, e->domains_csv, v);
        for (size_t i = 0; i < e->ndomains; i++)
            add_domain(p, e->domains[i], v);
    }
    for (size_t i = 0; i < e->nadd; i++)
        add_domain(p, e->add[i], v);
    for (size_t i = 0; i < e->ndel; i++)
        remove_domain(p, e->del[i], e->del_name ? e->del_name : "--remove-domain", v);
    if (e->set & XF_EDIT_TYPE) p->type = e->type;
    if (e->set & XF_EDIT_TLS) p->tls = e->tls;
    if (e->set & XF_EDIT_SASL) p->sasl = e->sasl;
    if (e->set & XF_EDIT_DIALBACK) p->dialback = e->dialback;
    if (e->set & XF_EDIT_LIMIT) p->connection_limit = e->limit;
    if (e->set & XF_EDIT_KEEPALIVE) p->keepalive = e->keepalive;
    if (e->set & XF_EDIT_PROXY) {
        if (strlen(e->proxy) > XF_PROXY_MAX)
            xf_verdict_add(v, XF_COMMIT_REFUSED, "the proxy FQDN is too long");
        else
            snprintf(p->proxy_fqdn, sizeof p->proxy_fqdn, "%s", e->proxy);
    }
}

void xf_gateway_edits_init(xf_gateway_edits *e)
{
    memset(e, 0, sizeof *e);
    e->log_bodies = -1;
}

void xf_gateway_apply(xf_gateway *g, void *arg, xf_verdict *v)
{
    const xf_gateway_edits *e = arg;
    assert(g != NULL);
    assert(xf_gateway_field_count <= XF_GATEWAY_FIELDS_MAX);
    for (size_t i = 0; i < xf_gateway_field_count; i++)
        if (e->has[i]) *(uint32_t *)((char *)g + xf_gateway_fields[i].offset) = e->val[i];
    if (e->passphrase) {
        if (strlen(e->passphrase) > XF_PASSPHRASE_MAX)
            xf_verdict_add(v, XF_COMMIT_REFUSED, "the dialback passphrase is longer than %d bytes",
                           XF_PASSPHRASE_MAX);
        else
            snprintf(g->dialback_passphrase, sizeof g->dialback_passphrase, "%s", e->passphrase);
    }
    if (e->log_bodies >= 0) g->log_message_bodies = e->log_bodies;
}

/* ---- reading edits from JSON --------------------------------------------- */

/* A string value without embedded NULs (C strings would cut it short). */
static bool json_cstr(const json_t *j, const char *key, const char **out, char *err, size_t n)
{
    if (!json_is_string(j)) {
        snprintf(err, n, "'%s' must be a string", key);
        return false;
    }
    *out = json_string_value(j);
    if (strlen(*out) != json_string_length(j)) {
        snprintf(err, n, "'%s' contains a NUL character", key);
        return false;
    }
    return true;
}

static bool json_bool_field(const json_t *j, const char *key, bool *out, char *err, size_t n)
{
    if (!json_is_boolean(j)) {
        snprintf(err, n, "'%s' must be true or false", key);
        return false;
    }
    *out = json_is_true(j);
    return true;
}

static bool json_u32_field(const json_t *j, const char *key, uint32_t *out, char *err, size_t n)
{
    if (!json_is_integer(j) || json_integer_value(j) < 0 ||
        json_integer_value(j) > (json_int_t)UINT32_MAX) {
        snprintf(err, n, "'%s' must be a whole number from 0 to %u", key, UINT32_MAX);
        return false;
    }
    *out = (uint32_t)json_integer_value(j);
    return true;
}

static bool json_domain_list(const json_t *j, const char *key, const char **list, size_t *count,
                             char *err, size_t n)
{
    if (!json_is_array(j)) {
        snprintf(err, n, "'%s' must be an array of domain names", key);
        return false;
    }
    if (json_array_size(j) > XF_EDIT_DOMAIN_OPS_MAX) {
        snprintf(err, n, "'%s' names more than %d domains", key, XF_EDIT_DOMAIN_OPS_MAX);
        return false;
    }
    *count = 0;
    for (size_t i = 0; i < json_array_size(j); i++)
        if (!json_cstr(json_array_get(j, i), key, &list[(*count)++], err, n)) return false;
    return true;
}

static bool json_neg_field(const json_t *j, const char *key, xf_neg *out, char *err, size_t n)
{
    const char *s;
    if (!json_cstr(j, key, &s, err, n)) return false;
    if (xf_neg_parse(s, out)) return true;
    snprintf(err, n, "'%s': '%.64s' is not required, optional or not-supported", key, s);
    return false;
}

/* One key of a partner body; false with err set when malformed. */
static bool partner_key(const char *key, const json_t *val, xf_partner_edits *e,
                        const char **domain, char *err, size_t n)
{
    if (strcmp(key, "domain") == 0) return json_cstr(val, key, domain, err, n);
    if (strcmp(key, "matrix_row") == 0 || strcmp(key, "methods") == 0) return true;
    if (strcmp(key, "description") == 0) {
        e->set |= XF_EDIT_DESCRIPTION;
        return json_cstr(val, key, &e->description, err, n);
    }
    if (strcmp(key, "additional_domains") == 0) {
        e->set |= XF_EDIT_DOMAINS;
        return json_domain_list(val, key, e->domains, &e->ndomains, err, n);
    }
    if (strcmp(key, "add_domains") == 0)
        return json_domain_list(val, key, e->add, &e->nadd, err, n);
    if (strcmp(key, "remove_domains") == 0)
        return json_domain_list(val, key, e->del, &e->ndel, err, n);
    if (strcmp(key, "partner_type") == 0) {
        const char *s;
        e->set |= XF_EDIT_TYPE;
        if (!json_cstr(val, key, &s, err, n)) return false;
        if (xf_partner_type_parse(s, &e->type)) return true;
        snprintf(err, n, "'%s': '%.64s' is not federated, public-verified or public-unverified",
                 key, s);
        return false;
    }
    if (strcmp(key, "tls") == 0)
        return e->set |= XF_EDIT_TLS, json_neg_field(val, key, &e->tls, err, n);
    if (strcmp(key, "sasl") == 0)
        return e->set |= XF_EDIT_SASL, json_neg_field(val, key, &e->sasl, err, n);
    if (strcmp(key, "dialback") == 0)
        return e->set |= XF_EDIT_DIALBACK, json_bool_field(val, key, &e->dialback, err, n);
    if (strcmp(key, "keepalive") == 0)
        return e->set |= XF_EDIT_KEEPALIVE, json_bool_field(val, key, &e->keepalive, err, n);
    if (strcmp(key, "connection_limit") == 0)
        return e->set |= XF_EDIT_LIMIT, json_u32_field(val, key, &e->limit, err, n);
    if (strcmp(key, "proxy_fqdn") == 0)
        return e->set |= XF_EDIT_PROXY, json_cstr(val, key, &e->proxy, err, n);
    snprintf(err, n, "unknown field '%.64s'", key);
    return false;
}

bool xf_partner_edits_json(const json_t *obj, xf_partner_edits *e, const char **domain, char *err,
                           size_t errlen)
{
    assert(e != NULL);
    assert(domain != NULL);
    *domain = NULL;
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "the body must be a JSON object");
        return false;
    }
    e->del_name = "remove_domains";
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        if (!partner_key(key, val, e, domain, err, errlen)) return false;
    }
    return true;
}

/* "connection-limit" -> "connection_limit" */
static void gateway_key(const xf_gateway_field *f, char *key, size_t n)
{
    snprintf(key, n, "%s", f->name);
    for (char *k = key; *k; k++)
        if (*k == '-') *k = '_';
}

bool xf_gateway_edits_json(const json_t *obj, xf_gateway_edits *e, int *changes, char *err,
                           size_t errlen)
{
    assert(e != NULL);
    assert(xf_gateway_field_count <= XF_GATEWAY_FIELDS_MAX);
    *changes = 0;
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "the body must be a JSON object");
        return false;
    }
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        bool known = false;
        for (size_t f = 0; f < xf_gateway_field_count && !known; f++) {
            char name[64];
            gateway_key(&xf_gateway_fields[f], name, sizeof name);
            if (strcmp(name, key) != 0) continue;
            if (!json_u32_field(val, key, &e->val[f], err, errlen)) return false;
            e->has[f] = known = true;
        }
        if (!known && strcmp(key, "dialback_passphrase") == 0) {
            if (!json_cstr(val, key, &e->passphrase, err, errlen)) return false;
            known = true;
        } else if (!known && strcmp(key, "log_message_bodies") == 0) {
            bool b;
            if (!json_bool_field(val, key, &b, err, errlen)) return false;
            e->log_bodies = b;
            known = true;
        } else if (!known && strcmp(key, "dialback_passphrase_set") == 0) {
            continue; /* read-only */
        }
        if (!known) {
            snprintf(err, errlen, "unknown field '%.64s'", key);
            return false;
        }
        (*changes)++;
    }
    return true;
}

/* ---- output -------------------------------------------------------------- */

json_t *xf_methods_json(unsigned methods)
{
    json_t *a = json_array();
    if (!a) return NULL;
    if (methods & XF_METHOD_SASL_TLS) json_array_append_new(a, json_string("sasl_tls"));
    if (methods & XF_METHOD_DB_TLS) json_array_append_new(a, json_string("dialback_tls"));
    if (methods & XF_METHOD_DB_TCP) json_array_append_new(a, json_string("dialback_tcp"));
    return a;
}

json_t *xf_partner_json(const xf_partner *p)
{
    assert(p != NULL);
    assert(p->domain_count <= XF_PARTNER_DOMAINS_MAX);
    json_t *doms = json_array();
    for (uint32_t i = 0; doms && i < p->domain_count; i++)
        json_array_append_new(doms, json_string(p->domains[i]));
    const xf_matrix_row_t *row = xf_matrix_row(p->tls, p->sasl, p->dialback);
    /* "o" steals the references, also when packing fails. */
    return json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:b, s:I, s:b, s:s, s:i, s:o}", "domain",
                     p->domain, "description", p->description, "additional_domains", doms,
                     "partner_type", xf_partner_type_name(p->type), "tls", xf_neg_name(p->tls),
                     "sasl", xf_neg_name(p->sasl), "dialback", p->dialback, "connection_limit",
                     (json_int_t)p->connection_limit, "keepalive", p->keepalive, "proxy_fqdn",
                     p->proxy_fqdn, "matrix_row", row->number, "methods",
                     xf_methods_json(row->methods));
}

json_t *xf_gateway_json(const xf_gateway *g)
{
    assert(g != NULL);
    json_t *j = json_object();
    if (!j) return NULL;
    for (size_t f = 0; f < xf_gateway_field_count; f++) {
        char key[64];
        gateway_key(&xf_gateway_fields[f], key, sizeof key);
        json_object_set_new(
            j, key,
            json_integer(*(const uint32_t *)((const char *)g + xf_gateway_fields[f].offset)));
    }
    json_object_set_new(j, "dialback_passphrase_set",
                        json_boolean(g->dialback_passphrase[0] != '\0'));
    json_object_set_new(j, "log_message_bodies", json_boolean(g->log_message_bodies));
    return j;
}

json_t *xf_matrix_json(void)
{
    const xf_matrix_row_t *rows = xf_matrix_rows();
    json_t *a = json_array();
    for (int i = 0; a && i < 18; i++) {
        const xf_matrix_row_t *r = &rows[i];
        assert(r->number == i + 1);
        json_array_append_new(a, json_pack("{s:i, s:s, s:s, s:b, s:o, s:s, s:s?}", "row", r->number,
                                           "tls", xf_neg_name(r->tls), "sasl", xf_neg_name(r->sasl),
                                           "dialback", r->dialback, "methods",
                                           xf_methods_json(r->methods), "commit",
                                           xf_commit_class_name(r->commit), "message", r->message));
    }
    return a;
}
