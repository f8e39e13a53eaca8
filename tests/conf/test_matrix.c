/* The matrix table against spec §4, written out here independently. */
#include "../check.h"
#include "partner.h"

#define R XF_NEG_REQUIRED
#define O XF_NEG_OPTIONAL
#define N XF_NEG_NOT_SUPPORTED
#define S XF_METHOD_SASL_TLS
#define T XF_METHOD_DB_TLS
#define P XF_METHOD_DB_TCP

static const struct {
    xf_neg tls, sasl;
    bool db;
    unsigned methods;
    xf_commit_class cls;
    const char *text; /* substring of the message */
} spec[18] = {
    {R, R, true, S, XF_COMMIT_WARN, "Dialback will not operate if both SASL and TLS are required."},
    {R, R, false, S, XF_COMMIT_OK, NULL},
    {O, R, true, S | T | P, XF_COMMIT_WARN, "Allowing TLS to be optional may result in failed"},
    {O, R, false, S, XF_COMMIT_WARN, "Allowing TLS to be optional may result in failed"},
    {N, R, true, 0, XF_COMMIT_REFUSED, "Set TLS to required or optional, or SASL to not-supported"},
    {N, R, false, 0, XF_COMMIT_REFUSED,
     "Set TLS to required or optional, or SASL to not-supported"},
    {R, O, true, S | T, XF_COMMIT_OK, NULL},
    {R, O, false, S, XF_COMMIT_OK, NULL},
    {O, O, true, S | T | P, XF_COMMIT_WARN, "Allowing TLS to be optional may result in failed"},
    {O, O, false, S, XF_COMMIT_WARN, "Allowing TLS to be optional may result in failed"},
    {N, O, true, 0, XF_COMMIT_REFUSED, "Set TLS to required or optional, or SASL to not-supported"},
    {N, O, false, 0, XF_COMMIT_REFUSED,
     "Set TLS to required or optional, or SASL to not-supported"},
    {R, N, true, T, XF_COMMIT_INFO, "Configuration allows for TLS Dialback."},
    {R, N, false, 0, XF_COMMIT_REFUSED, "SASL or Dialback must be enabled."},
    {O, N, true, T | P, XF_COMMIT_INFO,
     "TCP or TLS Dialback will be accepted, based on the other end's negotiation choices."},
    {O, N, false, 0, XF_COMMIT_REFUSED, "SASL or Dialback must be enabled."},
    {N, N, true, P, XF_COMMIT_INFO, "TCP Dialback is the only negotiation method available."},
    {N, N, false, 0, XF_COMMIT_REFUSED, "SASL or Dialback must be enabled."},
};

int main(void)
{
    for (int i = 0; i < 18; i++) {
        const xf_matrix_row_t *row = xf_matrix_row(spec[i].tls, spec[i].sasl, spec[i].db);
        CHECK(row == &xf_matrix_rows()[i]);
        CHECK(row->number == i + 1);
        CHECK(row->methods == spec[i].methods);
        CHECK(row->commit == spec[i].cls);
        if (spec[i].text)
            CHECK(row->message && strstr(row->message, spec[i].text));
        else
            CHECK(row->message == NULL);

        /* The partner check reports the row and its class. */
        xf_partner p;
        xf_partner_defaults(&p, "fabrikam.example");
        p.tls = spec[i].tls, p.sasl = spec[i].sasl, p.dialback = spec[i].db;
        xf_verdict v;
        xf_verdict_init(&v);
        xf_partner_check(&p, NULL, 0, &v);
        CHECK(v.row == i + 1);
        CHECK(v.cls == spec[i].cls);
    }
    /* Defaults are row 7. */
    xf_partner p;
    xf_partner_defaults(&p, "x.example");
    CHECK(xf_matrix_row(p.tls, p.sasl, p.dialback)->number == 7);
    CHECK(p.type == XF_PARTNER_PUBLIC_UNVERIFIED && p.keepalive && p.connection_limit == 0);

    /* Enum spellings. */
    xf_neg n;
    xf_partner_type t;
    bool b;
    CHECK(xf_neg_parse("NotSupported", &n) && n == N);
    CHECK(xf_neg_parse("not-supported", &n) && n == N);
    CHECK(xf_neg_parse("REQUIRED", &n) && n == R);
    CHECK(!xf_neg_parse("require", &n));
    CHECK(!xf_neg_parse("", &n));
    CHECK(xf_partner_type_parse("PublicVerified", &t) && t == XF_PARTNER_PUBLIC_VERIFIED);
    CHECK(xf_partner_type_parse("public-unverified", &t) && t == XF_PARTNER_PUBLIC_UNVERIFIED);
    CHECK(!xf_partner_type_parse("public", &t));
    CHECK(xf_bool_parse("True", &b) && b);
    CHECK(xf_bool_parse("false", &b) && !b);
    CHECK(!xf_bool_parse("maybe", &b));
    return check_report("test_matrix");
}
