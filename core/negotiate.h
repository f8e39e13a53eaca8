/* The negotiation policy of spec §4 as decisions: what a partner's matrix
 * row means for a stream at each step, in both directions. Pure functions of
 * the row (matrix.c, the one table) and the stream's facts; the stream state
 * machine asks, never decides by itself.
 *
 * Receiving (the partner initiates):
 *   xf_neg_features_in   the <stream:features> to offer
 *   xf_neg_check_in      whether an element the peer sent is acceptable now
 * Initiating (xfed connects out):
 *   xf_neg_next_out      the next step after the peer's features
 */
#ifndef XF_NEGOTIATE_H
#define XF_NEGOTIATE_H

#include "partner.h"

#include <stdbool.h>

/* The stream error (or SASL/dialback failure) to answer with. */
typedef enum {
    XF_NEG_OK = 0,
    XF_NEG_POLICY_VIOLATION,    /* stream error */
    XF_NEG_NOT_AUTHORIZED,      /* stream error: stanza before authentication */
    XF_NEG_SASL_ENCRYPTION,     /* SASL <failure><encryption-required/> */
    XF_NEG_SASL_NOT_AUTHORIZED, /* SASL <failure><not-authorized/> */
    XF_NEG_DB_POLICY_VIOLATION, /* dialback <error type='cancel'><policy-violation/> */
    XF_NEG_UNSUPPORTED_STANZA,  /* stream error: STARTTLS not offered / already active */
} xf_neg_verdict;

typedef enum { XF_STARTTLS_NONE = 0, XF_STARTTLS_OPTIONAL, XF_STARTTLS_REQUIRED } xf_starttls_offer;

typedef struct {
    xf_starttls_offer starttls;
    bool external;        /* SASL EXTERNAL in <mechanisms> */
    bool dialback;        /* xmlns:db on the header and <dialback><errors/></dialback> */
    const char *why_none; /* when nothing at all can authenticate: the stream error text */
} xf_features_in;

/* What the stream knows when it must decide. */
typedef struct {
    const xf_partner *partner; /* NULL: the header had no 'from' yet (decide per db:result) */
    bool tls;                  /* TLS is active on this stream */
    bool cert_ok;              /* chain valid AND the certificate names the 'from' domain */
} xf_neg_facts;

/* Receiving: the features after the stream header (and after each restart). */
xf_features_in xf_neg_features_in(const xf_neg_facts *f);

/* Receiving: may the peer send this now? `peer_db_errors`: the peer advertised
 * dialback errors (XEP-0220), so a refusal can be a dialback error rather than
 * a stream error. */
typedef enum {
    XF_IN_STARTTLS,  /* <starttls/> */
    XF_IN_AUTH,      /* SASL <auth mechanism='EXTERNAL'> */
    XF_IN_DB_RESULT, /* <db:result> (for the partner in facts, which must be set) */
    XF_IN_DB_VERIFY, /* <db:verify> (about a key we generated) */
    XF_IN_STANZA,    /* message / presence / iq before authentication */
} xf_in_element;

xf_neg_verdict xf_neg_check_in(const xf_neg_facts *f, xf_in_element e, bool peer_db_errors);

/* Initiating: what the peer offered in its <stream:features>. */
typedef struct {
    bool version_1; /* the peer's header has version='1.0' (else: no features, dialback only) */
    bool starttls;
    bool starttls_required;
    bool external;
    bool dialback; /* <dialback/> feature, or xmlns:db on its header */
} xf_features_out;

typedef enum {
    XF_OUT_STARTTLS,
    XF_OUT_EXTERNAL,
    XF_OUT_DIALBACK,
    XF_OUT_FAIL, /* give up: bounce queued stanzas; `why` says why */
} xf_out_action;

typedef struct {
    xf_out_action action;
    const char *why; /* for XF_OUT_FAIL: the log line and the stream error text */
} xf_out_step;

/* `external_failed`: an EXTERNAL attempt on this stream was refused; dialback
 * is the fallback only when the row allows it on this transport. */
xf_out_step xf_neg_next_out(const xf_partner *p, bool tls, const xf_features_out *offered,
                            bool external_failed);

/* The method a successful authentication used, for metrics and logs. */
const char *xf_neg_method_name(unsigned method);

#endif
