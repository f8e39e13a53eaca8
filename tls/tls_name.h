/* RFC 6125 identity checks for XMPP server certificates (RFC 6120 §13.7.1.2,
 * XEP-0178): does a peer's certificate name a domain?
 *
 * Presented identifiers, from the subjectAltName extension read as raw DER
 * (wolfSSL's parsed SAN APIs drop otherName, so XmppAddr needs our own walk):
 *   DNS-ID    dNSName; a wildcard only as the whole left-most label
 *   SRV-ID    otherName id-on-dnsSRV "_xmpp-server.<domain>"
 *   XmppAddr  otherName id-on-xmppAddr "<domain>"
 *   CN-ID     the subject CN, only when the certificate has no subjectAltName
 * A malformed SAN never crashes and never matches. */
#ifndef XF_TLS_NAME_H
#define XF_TLS_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    XF_ID_NONE = 0,
    XF_ID_DNS = 1,
    XF_ID_DNS_WILDCARD = 2,
    XF_ID_SRV = 3,
    XF_ID_XMPPADDR = 4,
    XF_ID_CN = 5,
} xf_id_kind;

const char *xf_id_kind_name(xf_id_kind k);

/* One presented identifier. `value` points into the DER. */
typedef struct {
    xf_id_kind kind; /* DNS, SRV or XMPPADDR */
    const uint8_t *value;
    size_t len;
} xf_san_name;

/* Calls fn for each dNSName, SRVName and XmppAddr of a DER-encoded
 * subjectAltName value (the SEQUENCE of GeneralName). Returns the number of
 * names seen, or -1 when the DER is malformed (fn may have been called for the
 * names before the damage). fn returns non-zero to stop. */
int xf_san_walk(const uint8_t *der, size_t len, int (*fn)(const xf_san_name *n, void *arg),
                void *arg);

/* DNS-ID match, ASCII case-insensitive; "*.example.com" matches exactly one
 * label in place of the '*', never "example.com" itself, and partial-label
 * wildcards ("f*.example.com") never match. */
bool xf_dns_id_match(const char *pattern, size_t plen, const char *domain, size_t dlen);

/* Checks a DER certificate against `domain`. Returns the kind of identifier
 * that matched, or XF_ID_NONE. */
xf_id_kind xf_cert_names_domain(const uint8_t *cert_der, size_t cert_len, const char *domain);

#endif
