/* Partner and gateway settings: defaults, enum spellings and validation. */
#include "partner.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const xf_gateway_field xf_gateway_fields[] = {
    {"connection-limit", 1, 1000000, 1000, offsetof(xf_gateway, connection_limit)},
    {"partner-connection-limit", 1, 65535, 20, offsetof(xf_gateway, partner_connection_limit)},
    {"keepalive-interval", 10, 86400, 300, offsetof(xf_gateway, keepalive_interval)},
    {"stream-establishment-timeout", 5, 3600, 60,
     offsetof(xf_gateway, stream_establishment_timeout)},
    {"stream-inactivity-timeout", 10, 604800, 600, offsetof(xf_gateway, stream_inactivity_timeout)},
};
const size_t xf_gateway_field_count = sizeof xf_gateway_fields / sizeof xf_gateway_fields[0];

void xf_verdict_init(xf_verdict *v)
{
    memset(v, 0, sizeof *v);
}

void xf_verdict_add(xf_verdict *v, xf_commit_class cls, const char *fmt, ...)
{
    if (cls > v->cls) v->cls = cls;
    if (v->count == XF_VERDICT_MSGS) return; /* the first few say enough */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->msg[v->count], XF_VERDICT_MSG_MAX, fmt, ap);
    va_end(ap);
    v->msg_cls[v->count++] = cls;
}

const char *xf_commit_class_name(xf_commit_class cls)
{
    static const char *const names[] = {"ok", "info", "warning", "refused"};
    assert(cls <= XF_COMMIT_REFUSED);
    return names[cls];
}

void xf_partner_defaults(xf_partner *p, const char *domain)
{
    memset(p, 0, sizeof *p);
    snprintf(p->domain, sizeof p->domain, "%s", domain);
    p->type = XF_PARTNER_PUBLIC_UNVERIFIED;
    p->tls = XF_NEG_REQUIRED; /* row 7 */
    p->sasl = XF_NEG_OPTIONAL;
    p->dialback = true;
    p->keepalive = true;
}

void xf_gateway_defaults(xf_gateway *g)
{
    memset(g, 0, sizeof *g);
    for (size_t i = 0; i < xf_gateway_field_count; i++)
        *(uint32_t *)((char *)g + xf_gateway_fields[i].offset) = xf_gateway_fields[i].def;
    g->log_message_bodies = false;
}

static bool is_local(const char *d, const char *const *locals, size_t nlocals)
{
    for (size_t i = 0; i < nlocals; i++)
        if (strcasecmp(d, locals[i]) == 0) return true;
    return false;
}

static void check_domain(const char *d, const char *what, const char *const *locals, size_t nlocals,
                         xf_verdict *v)
{
    char norm[XF_DOMAIN_MAX + 1], why[XF_VERDICT_MSG_MAX - 64];
    if (!xf_domain_normalize(d, norm, why, sizeof why)) {
        xf_verdict_add(v, XF_COMMIT_REFUSED, "%s %s", what, why);
        return;
    }
    if (strcmp(norm, d) != 0)
        xf_verdict_add(v, XF_COMMIT_REFUSED, "%s '%s' must be lower-case", what, d);
    else if (is_local(d, locals, nlocals))
        xf_verdict_add(v, XF_COMMIT_REFUSED,
                       "%s '%s' is a local domain of this gateway (a [local] section of the "
                       "config); a partner cannot claim it",
                       what, d);
}

/* host[:port]: a DNS name or an IPv4 literal, port 1..65535. */
static bool proxy_valid(const char *s, char *why, size_t whylen)
{
    char host[XF_PROXY_MAX + 1];
    snprintf(host, sizeof host, "%s", s);
    char *colon = strrchr(host, ':');
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
            snprintf(why, whylen, "proxy FQDN '%.80s': the port must be 1..65535", s);
            return false;
        }
        *colon = '\0';
    }
    char norm[XF_DOMAIN_MAX + 1], dwhy[200];
    if (!xf_domain_normalize(host, norm, dwhy, sizeof dwhy)) {
        snprintf(why, whylen, "proxy FQDN '%.80s' is not a host name: use HOST[:PORT]", s);
        return false;
    }
    return true;
}

void xf_partner_check(const xf_partner *p, const char *const *locals, size_t nlocals, xf_verdict *v)
{
    check_domain(p->domain, "primary domain", locals, nlocals, v);
    if (p->domain_count > XF_PARTNER_DOMAINS_MAX)
        xf_verdict_add(v, XF_COMMIT_REFUSED, "at most %d additional domains per partner",
                       XF_PARTNER_DOMAINS_MAX);
    for (uint32_t i = 0; i < p->domain_count && i < XF_PARTNER_DOMAINS_MAX; i++) {
        check_domain(p->domains[i], "additional domain", locals, nlocals, v);
        if (strcmp(p->domains[i], p->domain) == 0)
            xf_verdict_add(v, XF_COMMIT_REFUSED,
                           "additional domain '%s' is the partner's primary domain", p->domains[i]);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(p->domains[i], p->domains[j]) == 0)
                xf_verdict_add(v, XF_COMMIT_REFUSED, "additional domain '%s' is listed twice",
                               p->domains[i]);
    }
    if (strlen(p->description) > XF_DESCRIPTION_MAX)
        xf_verdict_add(v, XF_COMMIT_REFUSED, "the description is longer than %d characters",
                       XF_DESCRIPTION_MAX);
    if (p->connection_limit > 65535)
        xf_verdict_add(v, XF_COMMIT_REFUSED, "connection limit %u is out of range 0..65535",
                       p->connection_limit);
    char why[XF_VERDICT_MSG_MAX];
    if (p->proxy_fqdn[0] && !proxy_valid(p->proxy_fqdn, why, sizeof why))
        xf_verdict_add(v, XF_COMMIT_REFUSED, "%s", why);
    if (p->type > XF_PARTNER_PUBLIC_UNVERIFIED || p->tls > XF_NEG_NOT_SUPPORTED ||
        p->sasl > XF_NEG_NOT_SUPPORTED) {
        xf_verdict_add(v, XF_COMMIT_REFUSED, "unknown partner type or negotiation value");
        return;
    }
    const xf_matrix_row_t *row = xf_matrix_row(p->tls, p->sasl, p->dialback);
    v->row = row->number;
    /* A change refused for another reason does not also get the row's note. */
    if (row->message && (row->commit == XF_COMMIT_REFUSED || v->cls != XF_COMMIT_REFUSED))
        xf_verdict_add(v, row->commit, "%s", row->message);
}

void xf_gateway_check(const xf_gateway *g, xf_verdict *v)
{
    for (size_t i = 0; i < xf_gateway_field_count; i++) {
        const xf_gateway_field *f = &xf_gateway_fields[i];
        uint32_t val = *(const uint32_t *)((const char *)g + f->offset);
        if (val < f->min || val > f->max)
            xf_verdict_add(v, XF_COMMIT_REFUSED, "%s %u is out of range %u..%u", f->name, val,
                           f->min, f->max);
    }
    if (strlen(g->dialback_passphrase) > XF_PASSPHRASE_MAX)
        xf_verdict_add(v, XF_COMMIT_REFUSED, "the dialback passphrase is longer than %d bytes",
                       XF_PASSPHRASE_MAX);
    if (g->keepalive_interval > g->stream_inactivity_timeout)
        xf_verdict_add(v, XF_COMMIT_WARN,
                       "the keepalive interval (%u s) is longer than the stream inactivity "
                       "timeout (%u s): idle streams close before a keepalive is sent",
                       g->keepalive_interval, g->stream_inactivity_timeout);
}

/* Compares ignoring case and the characters '-' and '_', so "not-supported",
 * "NotSupported" and "not_supported" all match. */
static bool enum_eq(const char *a, const char *b)
{
    for (;;) {
        while (*a == '-' || *a == '_')
            a++;
        while (*b == '-' || *b == '_')
            b++;
        if (!*a || !*b) return !*a && !*b;
        if ((*a | 0x20) != (*b | 0x20)) return false;
        a++, b++;
    }
}

static const char *const neg_names[] = {"required", "optional", "not-supported"};
static const char *const type_names[] = {"federated", "public-verified", "public-unverified"};

const char *xf_neg_name(xf_neg n)
{
    assert(n <= XF_NEG_NOT_SUPPORTED);
    return neg_names[n];
}

const char *xf_partner_type_name(xf_partner_type t)
{
    assert(t <= XF_PARTNER_PUBLIC_UNVERIFIED);
    return type_names[t];
}

bool xf_neg_parse(const char *s, xf_neg *out)
{
    for (int i = 0; i < 3; i++)
        if (enum_eq(s, neg_names[i])) return *out = (xf_neg)i, true;
    return false;
}

bool xf_partner_type_parse(const char *s, xf_partner_type *out)
{
    for (int i = 0; i < 3; i++)
        if (enum_eq(s, type_names[i])) return *out = (xf_partner_type)i, true;
    return false;
}

bool xf_bool_parse(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1", "$true"};
    static const char *const no[] = {"false", "no", "off", "0", "$false"};
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, true;
        if (strcasecmp(s, no[i]) == 0) return *out = false, true;
    }
    return false;
}
