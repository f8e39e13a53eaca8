#include "negotiate.h"

#include <assert.h>

static unsigned methods_of(const xf_partner *p)
{
    return xf_matrix_row(p->tls, p->sasl, p->dialback)->methods;
}

/* The dialback method that applies on the current transport. */
static unsigned db_method(bool tls)
{
    return tls ? XF_METHOD_DB_TLS : XF_METHOD_DB_TCP;
}

xf_features_in xf_neg_features_in(const xf_neg_facts *f)
{
    xf_features_in out = {XF_STARTTLS_NONE, false, false, NULL};
    if (!f->partner) {
        /* No 'from' on the header: offer TLS, and let each db:result be
         * judged by its own domain's row (xf_neg_check_in). */
        out.starttls = f->tls ? XF_STARTTLS_NONE : XF_STARTTLS_OPTIONAL;
        out.dialback = true;
        return out;
    }
    const xf_partner *p = f->partner;
    unsigned m = methods_of(p);
    if (!f->tls) {
        if (p->tls == XF_NEG_REQUIRED) {
            out.starttls = XF_STARTTLS_REQUIRED; /* and nothing else before TLS */
            return out;
        }
        if (p->tls == XF_NEG_OPTIONAL) out.starttls = XF_STARTTLS_OPTIONAL;
        out.dialback = (m & XF_METHOD_DB_TCP) != 0;
    } else {
        out.external = (m & XF_METHOD_SASL_TLS) && f->cert_ok;
        out.dialback = (m & XF_METHOD_DB_TLS) != 0;
    }
    if (out.starttls == XF_STARTTLS_NONE && !out.external && !out.dialback) {
        if (f->tls && (m & XF_METHOD_SASL_TLS))
            out.why_none = "the certificate does not prove the sending domain (chain or name), "
                           "and dialback is not allowed for this partner";
        else
            out.why_none = "no authentication method of this partner's settings applies to "
                           "this stream";
    }
    return out;
}

xf_neg_verdict xf_neg_check_in(const xf_neg_facts *f, xf_in_element e, bool peer_db_errors)
{
    const xf_partner *p = f->partner;
    /* TLS required: nothing but STARTTLS before TLS (spec §4, §10). */
    if (p && !f->tls && p->tls == XF_NEG_REQUIRED && e != XF_IN_STARTTLS)
        return XF_NEG_POLICY_VIOLATION;
    switch (e) {
    case XF_IN_STARTTLS:
        if (f->tls) return XF_NEG_UNSUPPORTED_STANZA; /* TLS is already on */
        if (p && p->tls == XF_NEG_NOT_SUPPORTED) return XF_NEG_POLICY_VIOLATION;
        return XF_NEG_OK;
    case XF_IN_AUTH:
        if (!f->tls) return XF_NEG_SASL_ENCRYPTION; /* never EXTERNAL on plaintext */
        if (!p || !(methods_of(p) & XF_METHOD_SASL_TLS) || !f->cert_ok)
            return XF_NEG_SASL_NOT_AUTHORIZED;
        return XF_NEG_OK;
    case XF_IN_DB_RESULT:
        assert(p); /* the caller resolves the db:result's 'from' first */
        if (methods_of(p) & db_method(f->tls)) return XF_NEG_OK;
        return peer_db_errors ? XF_NEG_DB_POLICY_VIOLATION : XF_NEG_POLICY_VIOLATION;
    case XF_IN_DB_VERIFY: return XF_NEG_OK; /* answering for our own keys needs no authentication */
    case XF_IN_STANZA: return XF_NEG_NOT_AUTHORIZED;
    }
    return XF_NEG_POLICY_VIOLATION;
}

xf_out_step xf_neg_next_out(const xf_partner *p, bool tls, const xf_features_out *o,
                            bool external_failed)
{
    unsigned m = methods_of(p);
    if (!tls) {
        bool can_tls = o->version_1 && o->starttls;
        if (p->tls == XF_NEG_REQUIRED) {
            if (can_tls) return (xf_out_step){XF_OUT_STARTTLS, NULL};
            return (xf_out_step){XF_OUT_FAIL, "TLS is required for this partner but its server "
                                              "does not offer STARTTLS"};
        }
        if (p->tls == XF_NEG_OPTIONAL && can_tls) return (xf_out_step){XF_OUT_STARTTLS, NULL};
        if (o->starttls_required)
            return (xf_out_step){XF_OUT_FAIL, "the partner's server requires TLS, which is "
                                              "not-supported in this partner's settings"};
        /* Pre-1.0 peers send no features: dialback is all they speak. */
        if ((m & XF_METHOD_DB_TCP) && (o->dialback || !o->version_1))
            return (xf_out_step){XF_OUT_DIALBACK, NULL};
        return (xf_out_step){XF_OUT_FAIL, "no authentication method this partner allows is "
                                          "possible without TLS"};
    }
    if ((m & XF_METHOD_SASL_TLS) && o->external && !external_failed)
        return (xf_out_step){XF_OUT_EXTERNAL, NULL};
    if ((m & XF_METHOD_DB_TLS) && (o->dialback || !o->version_1))
        return (xf_out_step){XF_OUT_DIALBACK, NULL};
    if (external_failed)
        return (xf_out_step){XF_OUT_FAIL, "SASL EXTERNAL was refused and dialback is not "
                                          "allowed for this partner"};
    if (m & XF_METHOD_SASL_TLS)
        return (xf_out_step){XF_OUT_FAIL, "the partner's server does not offer SASL EXTERNAL "
                                          "(and dialback over TLS is not allowed)"};
    return (xf_out_step){XF_OUT_FAIL, "the partner's server does not offer dialback"};
}

const char *xf_neg_method_name(unsigned method)
{
    switch (method) {
    case XF_METHOD_SASL_TLS: return "sasl_tls";
    case XF_METHOD_DB_TLS: return "dialback_tls";
    case XF_METHOD_DB_TCP: return "dialback_tcp";
    default: return "none";
    }
}
