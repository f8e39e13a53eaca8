/* The negotiation decisions of spec §4 for every matrix row, both directions,
 * on plaintext and on TLS, written against the spec's words. */
#include "../check.h"
#include "negotiate.h"

static xf_partner row_partner(int row)
{
    const xf_matrix_row_t *r = &xf_matrix_rows()[row - 1];
    xf_partner p;
    xf_partner_defaults(&p, "fabrikam.example");
    p.tls = r->tls, p.sasl = r->sasl, p.dialback = r->dialback;
    return p;
}

static const xf_features_out full_offer = {true, true, false, true, true};

int main(void)
{
    for (int row = 1; row <= 18; row++) {
        xf_partner p = row_partner(row);
        unsigned m = xf_matrix_rows()[row - 1].methods;
        if (m == 0) continue; /* refused rows never reach a stream */

        /* Receiving, before TLS. */
        xf_neg_facts pre = {&p, false, false};
        xf_features_in fi = xf_neg_features_in(&pre);
        CHECK(!fi.external); /* never EXTERNAL on plaintext */
        if (p.tls == XF_NEG_REQUIRED) {
            /* Only <starttls><required/></starttls>, and everything else refused. */
            CHECK(fi.starttls == XF_STARTTLS_REQUIRED && !fi.dialback);
            CHECK(xf_neg_check_in(&pre, XF_IN_STANZA, true) == XF_NEG_POLICY_VIOLATION);
            CHECK(xf_neg_check_in(&pre, XF_IN_DB_RESULT, true) == XF_NEG_POLICY_VIOLATION);
            CHECK(xf_neg_check_in(&pre, XF_IN_AUTH, true) == XF_NEG_POLICY_VIOLATION);
            CHECK(xf_neg_check_in(&pre, XF_IN_DB_VERIFY, true) == XF_NEG_POLICY_VIOLATION);
            CHECK(xf_neg_check_in(&pre, XF_IN_STARTTLS, true) == XF_NEG_OK);
        } else {
            CHECK(fi.starttls ==
                  (p.tls == XF_NEG_OPTIONAL ? XF_STARTTLS_OPTIONAL : XF_STARTTLS_NONE));
            CHECK(fi.dialback == ((m & XF_METHOD_DB_TCP) != 0));
            CHECK(xf_neg_check_in(&pre, XF_IN_AUTH, true) == XF_NEG_SASL_ENCRYPTION);
            CHECK(xf_neg_check_in(&pre, XF_IN_STANZA, true) == XF_NEG_NOT_AUTHORIZED);
            xf_neg_verdict db = xf_neg_check_in(&pre, XF_IN_DB_RESULT, true);
            CHECK((db == XF_NEG_OK) == ((m & XF_METHOD_DB_TCP) != 0));
            if (db != XF_NEG_OK) {
                CHECK(db == XF_NEG_DB_POLICY_VIOLATION);
                CHECK(xf_neg_check_in(&pre, XF_IN_DB_RESULT, false) == XF_NEG_POLICY_VIOLATION);
            }
            CHECK((xf_neg_check_in(&pre, XF_IN_STARTTLS, true) == XF_NEG_OK) ==
                  (p.tls == XF_NEG_OPTIONAL));
        }

        /* Receiving, after TLS, with and without a certificate that proves 'from'. */
        for (int ok = 0; ok <= 1; ok++) {
            xf_neg_facts post = {&p, true, ok != 0};
            xf_features_in ft = xf_neg_features_in(&post);
            CHECK(ft.starttls == XF_STARTTLS_NONE);
            CHECK(ft.external == (ok && (m & XF_METHOD_SASL_TLS)));
            CHECK(ft.dialback == ((m & XF_METHOD_DB_TLS) != 0));
            CHECK((ft.why_none != NULL) == (!ft.external && !ft.dialback));
            CHECK((xf_neg_check_in(&post, XF_IN_AUTH, true) == XF_NEG_OK) ==
                  (ok && (m & XF_METHOD_SASL_TLS)));
            CHECK((xf_neg_check_in(&post, XF_IN_DB_RESULT, true) == XF_NEG_OK) ==
                  ((m & XF_METHOD_DB_TLS) != 0));
            CHECK(xf_neg_check_in(&post, XF_IN_STARTTLS, true) == XF_NEG_UNSUPPORTED_STANZA);
            CHECK(xf_neg_check_in(&post, XF_IN_STANZA, true) == XF_NEG_NOT_AUTHORIZED);
        }

        /* Initiating, against a peer offering everything. */
        xf_out_step s = xf_neg_next_out(&p, false, &full_offer, false);
        if (p.tls == XF_NEG_NOT_SUPPORTED)
            CHECK(s.action == XF_OUT_DIALBACK); /* row 17 */
        else
            CHECK(s.action == XF_OUT_STARTTLS);
        s = xf_neg_next_out(&p, true, &full_offer, false);
        CHECK(s.action == ((m & XF_METHOD_SASL_TLS) ? XF_OUT_EXTERNAL
                           : (m & XF_METHOD_DB_TLS) ? XF_OUT_DIALBACK
                                                    : XF_OUT_FAIL)); /* row 17: never over TLS */
        /* EXTERNAL refused: dialback only where the row allows it over TLS. */
        s = xf_neg_next_out(&p, true, &full_offer, true);
        CHECK(s.action == ((m & XF_METHOD_DB_TLS) ? XF_OUT_DIALBACK : XF_OUT_FAIL));
        /* A plaintext-only peer. */
        xf_features_out plain = {true, false, false, false, true};
        s = xf_neg_next_out(&p, false, &plain, false);
        CHECK(s.action == ((p.tls != XF_NEG_REQUIRED && (m & XF_METHOD_DB_TCP)) ? XF_OUT_DIALBACK
                                                                                : XF_OUT_FAIL));
        if (s.action == XF_OUT_FAIL) CHECK(s.why != NULL);
        /* A pre-1.0 peer: no features at all. */
        xf_features_out old = {false, false, false, false, false};
        s = xf_neg_next_out(&p, false, &old, false);
        CHECK(s.action == ((p.tls != XF_NEG_REQUIRED && (m & XF_METHOD_DB_TCP)) ? XF_OUT_DIALBACK
                                                                                : XF_OUT_FAIL));
    }
    /* Row 17 against a peer that requires TLS: give up, clearly. */
    xf_partner p17 = row_partner(17);
    xf_features_out req = {true, true, true, false, true};
    xf_out_step s = xf_neg_next_out(&p17, false, &req, false);
    CHECK(s.action == XF_OUT_FAIL && strstr(s.why, "requires TLS"));
    /* Row 7 against a peer without STARTTLS: policy says give up. */
    xf_partner p7 = row_partner(7);
    xf_features_out none = {true, false, false, false, true};
    s = xf_neg_next_out(&p7, false, &none, false);
    CHECK(s.action == XF_OUT_FAIL && strstr(s.why, "does not offer STARTTLS"));
    /* Row 8 (dialback off): a db:result is refused even inside TLS. */
    xf_partner p8 = row_partner(8);
    xf_neg_facts f8 = {&p8, true, false};
    CHECK(xf_neg_check_in(&f8, XF_IN_DB_RESULT, true) == XF_NEG_DB_POLICY_VIOLATION);
    CHECK(xf_neg_features_in(&f8).why_none != NULL); /* no valid cert, no dialback */
    /* Unknown sender ('from' missing): STARTTLS offered, dialback judged later. */
    xf_neg_facts anon = {NULL, false, false};
    xf_features_in fa = xf_neg_features_in(&anon);
    CHECK(fa.starttls == XF_STARTTLS_OPTIONAL && fa.dialback && !fa.external);
    CHECK(xf_neg_check_in(&anon, XF_IN_AUTH, true) == XF_NEG_SASL_ENCRYPTION);
    CHECK_STR(xf_neg_method_name(XF_METHOD_DB_TCP), "dialback_tcp");
    return check_report("test_negotiate");
}
