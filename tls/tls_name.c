#include "tls_name.h"

#include <wolfssl/options.h> /* must come first: the library's build configuration */
#include <wolfssl/ssl.h>

#include <string.h>
#include <strings.h>

/* id-on-xmppAddr 1.3.6.1.5.5.7.8.5 and id-on-dnsSRV 1.3.6.1.5.5.7.8.7 (RFC 4985). */
static const uint8_t oid_xmppaddr[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05};
static const uint8_t oid_srv[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07};

const char *xf_id_kind_name(xf_id_kind k)
{
    static const char *const names[] = {"none",   "DNS-ID",   "DNS-ID wildcard",
                                        "SRV-ID", "XmppAddr", "CN-ID"};
    return k <= XF_ID_CN ? names[k] : "?";
}

/* Reads one DER TLV at *p (bounded by end): tag, and the value's span. */
static bool tlv(const uint8_t **p, const uint8_t *end, uint8_t *tag, const uint8_t **val,
                size_t *len)
{
    const uint8_t *q = *p;
    if (end - q < 2) return false;
    *tag = *q++;
    size_t l = *q++;
    if (l & 0x80) {
        size_t n = l & 0x7f;
        if (n == 0 || n > 3 || (size_t)(end - q) < n) return false; /* no indefinite form */
        l = 0;
        while (n--)
            l = l << 8 | *q++;
    }
    if ((size_t)(end - q) < l) return false;
    *val = q;
    *len = l;
    *p = q + l;
    return true;
}

int xf_san_walk(const uint8_t *der, size_t len, int (*fn)(const xf_san_name *n, void *arg),
                void *arg)
{
    const uint8_t *p = der, *end = der + len, *seq;
    size_t seqlen;
    uint8_t tag;
    if (!tlv(&p, end, &tag, &seq, &seqlen) || tag != 0x30) return -1;
    int count = 0;
    for (const uint8_t *q = seq, *qend = seq + seqlen; q < qend;) {
        const uint8_t *v;
        size_t vlen;
        if (!tlv(&q, qend, &tag, &v, &vlen)) return -1;
        xf_san_name n = {XF_ID_NONE, NULL, 0};
        if (tag == 0x82) { /* [2] dNSName, IA5String */
            n = (xf_san_name){XF_ID_DNS, v, vlen};
        } else if (tag == 0xa0) { /* [0] otherName: type-id OID, [0] EXPLICIT value */
            const uint8_t *r = v, *rend = v + vlen, *oid, *wrapped, *str;
            size_t oidlen, wlen, slen;
            uint8_t t1, t2, t3;
            if (!tlv(&r, rend, &t1, &oid, &oidlen) || t1 != 0x06) return -1;
            if (!tlv(&r, rend, &t2, &wrapped, &wlen) || t2 != 0xa0) return -1;
            const uint8_t *w = wrapped;
            if (!tlv(&w, wrapped + wlen, &t3, &str, &slen)) return -1;
            if (oidlen == sizeof oid_xmppaddr && !memcmp(oid, oid_xmppaddr, oidlen) && t3 == 0x0c)
                n = (xf_san_name){XF_ID_XMPPADDR, str, slen}; /* UTF8String */
            else if (oidlen == sizeof oid_srv && !memcmp(oid, oid_srv, oidlen) && t3 == 0x16)
                n = (xf_san_name){XF_ID_SRV, str, slen}; /* IA5String */
        }
        if (n.kind == XF_ID_NONE) continue;       /* other GeneralName forms: not ours */
        if (memchr(n.value, 0, n.len)) return -1; /* an embedded NUL is an attack */
        count++;
        if (fn && fn(&n, arg)) break;
    }
    return count;
}

static bool ieq(const char *a, const char *b, size_t n)
{
    return strncasecmp(a, b, n) == 0;
}

bool xf_dns_id_match(const char *pattern, size_t plen, const char *domain, size_t dlen)
{
    if (plen && pattern[plen - 1] == '.') plen--; /* an absolute name is the same name */
    if (dlen && domain[dlen - 1] == '.') dlen--;
    if (plen == 0 || dlen == 0) return false;
    if (plen >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = memchr(domain, '.', dlen);
        if (!dot || dot == domain) return false; /* the wildcard stands for one whole label */
        size_t rest = dlen - (size_t)(dot - domain);
        /* The pattern's rest needs at least two labels: "*.com" names no one. */
        if (!memchr(pattern + 2, '.', plen - 2)) return false;
        return rest == plen - 1 && ieq(dot, pattern + 1, rest);
    }
    if (memchr(pattern, '*', plen)) return false; /* partial-label wildcards never match */
    return plen == dlen && ieq(pattern, domain, dlen);
}

typedef struct {
    const char *domain;
    size_t dlen;
    xf_id_kind found;
} match_ctx;

static int match_one(const xf_san_name *n, void *arg)
{
    match_ctx *m = arg;
    const char *v = (const char *)n->value;
    switch (n->kind) {
    case XF_ID_DNS:
        if (xf_dns_id_match(v, n->len, m->domain, m->dlen))
            m->found = n->len && v[0] == '*' ? XF_ID_DNS_WILDCARD : XF_ID_DNS;
        break;
    case XF_ID_SRV: /* "_xmpp-server." + domain; no wildcards in SRV-IDs */
        if (n->len == 13 + m->dlen && ieq(v, "_xmpp-server.", 13) &&
            ieq(v + 13, m->domain, m->dlen))
            m->found = XF_ID_SRV;
        break;
    case XF_ID_XMPPADDR: /* a bare domain JID */
        if (n->len == m->dlen && ieq(v, m->domain, m->dlen)) m->found = XF_ID_XMPPADDR;
        break;
    default: break;
    }
    return m->found != XF_ID_NONE;
}

xf_id_kind xf_cert_names_domain(const uint8_t *cert_der, size_t cert_len, const char *domain)
{
    WOLFSSL_X509 *x = wolfSSL_X509_d2i(NULL, cert_der, (int)cert_len);
    if (!x) return XF_ID_NONE;
    match_ctx m = {domain, strlen(domain), XF_ID_NONE};
    int loc = wolfSSL_X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    if (loc >= 0) {
        WOLFSSL_X509_EXTENSION *ext = wolfSSL_X509_get_ext(x, loc);
        WOLFSSL_ASN1_STRING *data = ext ? wolfSSL_X509_EXTENSION_get_data(ext) : NULL;
        if (data)
            xf_san_walk((const uint8_t *)wolfSSL_ASN1_STRING_data(data),
                        (size_t)wolfSSL_ASN1_STRING_length(data), match_one, &m);
    } else {
        /* No subjectAltName at all: RFC 6125 §6.4.4 lets the CN stand in. */
        char cn[256];
        WOLFSSL_X509_NAME *subj = wolfSSL_X509_get_subject_name(x);
        int n = subj ? wolfSSL_X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof cn) : -1;
        if (n > 0 && (size_t)n < sizeof cn && xf_dns_id_match(cn, (size_t)n, domain, m.dlen))
            m.found = XF_ID_CN;
    }
    wolfSSL_X509_free(x);
    return m.found;
}
