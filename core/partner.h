/* Partner and gateway model: the settings an operator commits, and the rules
 * every writer (xfedctl, admin API, daemon start) validates them with.
 *
 *   xf_partner       one XMPP federated partner (spec §3), fixed-size, no heap
 *   xf_gateway       the global gateway settings (spec §5)
 *   xf_matrix_row()  the negotiation matrix row for (tls, sasl, dialback) (spec §4)
 *   xf_partner_check the full validation of one partner; the store adds the
 *                    cross-partner uniqueness rule inside its transaction
 */
#ifndef XF_PARTNER_H
#define XF_PARTNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XF_DOMAIN_MAX          253 /* RFC 1035 name length, without a trailing dot */
#define XF_LABEL_MAX           63
#define XF_DESCRIPTION_MAX     1024
#define XF_PARTNER_DOMAINS_MAX 64 /* additional domains per partner */
#define XF_PROXY_MAX           (XF_DOMAIN_MAX + 6)
#define XF_PASSPHRASE_MAX      1024

typedef enum { XF_NEG_REQUIRED = 0, XF_NEG_OPTIONAL = 1, XF_NEG_NOT_SUPPORTED = 2 } xf_neg;

typedef enum {
    XF_PARTNER_FEDERATED = 0,
    XF_PARTNER_PUBLIC_VERIFIED = 1,
    XF_PARTNER_PUBLIC_UNVERIFIED = 2,
} xf_partner_type;

/* Authentication methods a matrix row allows (bit set). */
enum {
    XF_METHOD_SASL_TLS = 1u << 0, /* SASL EXTERNAL after STARTTLS */
    XF_METHOD_DB_TLS = 1u << 1,   /* dialback inside TLS */
    XF_METHOD_DB_TCP = 1u << 2,   /* dialback on plaintext */
};

typedef enum {
    XF_COMMIT_OK = 0,
    XF_COMMIT_INFO = 1,
    XF_COMMIT_WARN = 2,
    XF_COMMIT_REFUSED = 3,
} xf_commit_class;

typedef struct {
    int number; /* 1..18, as in spec §4 */
    xf_neg tls;
    xf_neg sasl;
    bool dialback;
    unsigned methods;
    xf_commit_class commit;
    const char *message; /* NULL for plain ok */
} xf_matrix_row_t;

typedef struct {
    char domain[XF_DOMAIN_MAX + 1];
    char description[XF_DESCRIPTION_MAX + 1];
    char domains[XF_PARTNER_DOMAINS_MAX][XF_DOMAIN_MAX + 1]; /* additional domains */
    uint32_t domain_count;
    xf_partner_type type;
    xf_neg tls;
    xf_neg sasl;
    bool dialback;
    uint32_t connection_limit; /* 0 = the gateway's partner connection limit */
    bool keepalive;
    char proxy_fqdn[XF_PROXY_MAX + 1]; /* host[:port], empty = resolve SRV */
} xf_partner;

typedef struct {
    uint32_t connection_limit;
    uint32_t partner_connection_limit;
    char dialback_passphrase[XF_PASSPHRASE_MAX + 1];
    uint32_t keepalive_interval;           /* seconds */
    uint32_t stream_establishment_timeout; /* seconds */
    uint32_t stream_inactivity_timeout;    /* seconds */
    bool log_message_bodies;
} xf_gateway;

/* Range of each numeric gateway setting (inclusive), for validation and --help. */
typedef struct {
    const char *name; /* the xfedctl option / JSON key, with '-' */
    uint32_t min, max, def;
    size_t offset; /* into xf_gateway */
} xf_gateway_field;
extern const xf_gateway_field xf_gateway_fields[];
extern const size_t xf_gateway_field_count;

/* Validation outcome: the worst class seen and the messages to print. */
#define XF_VERDICT_MSGS    4
#define XF_VERDICT_MSG_MAX 384
typedef struct {
    xf_commit_class cls;
    int row; /* matrix row of the checked partner, 0 if not reached */
    uint32_t count;
    xf_commit_class msg_cls[XF_VERDICT_MSGS];
    char msg[XF_VERDICT_MSGS][XF_VERDICT_MSG_MAX];
} xf_verdict;

void xf_verdict_init(xf_verdict *v);
void xf_verdict_add(xf_verdict *v, xf_commit_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *xf_commit_class_name(xf_commit_class cls);

/* Defaults of spec §3 / §5. */
void xf_partner_defaults(xf_partner *p, const char *domain);
void xf_gateway_defaults(xf_gateway *g);

const xf_matrix_row_t *xf_matrix_row(xf_neg tls, xf_neg sasl, bool dialback);
const xf_matrix_row_t *xf_matrix_rows(void); /* all 18, row i at index i-1 */

/* Domain rules of spec §3. Lower-cases `in` into `out` (XF_DOMAIN_MAX + 1 bytes).
 * Returns true when valid; otherwise writes the reason to `why`. */
bool xf_domain_normalize(const char *in, char *out, char *why, size_t whylen);

/* Validates one partner by itself: domains, description, proxy, limits, matrix.
 * `locals` (may be NULL) are the config's local domains, which no partner may claim. */
void xf_partner_check(const xf_partner *p, const char *const *locals, size_t nlocals,
                      xf_verdict *v);
void xf_gateway_check(const xf_gateway *g, xf_verdict *v);

/* Enum names: canonical output spelling, and a parser that accepts the canonical
 * names and the Lync cmdlet spellings, case-insensitively. */
const char *xf_neg_name(xf_neg n);
const char *xf_partner_type_name(xf_partner_type t);
bool xf_neg_parse(const char *s, xf_neg *out);
bool xf_partner_type_parse(const char *s, xf_partner_type *out);
bool xf_bool_parse(const char *s, bool *out);

#endif
