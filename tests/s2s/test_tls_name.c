/* RFC 6125 identity checks: DNS-ID (wildcards), SRV-ID, XmppAddr, CN-ID, and
 * malformed subjectAltName DER that must neither crash nor match. */
#include "../check.h"
#include "tls_name.h"

#include <stdio.h>
#include <stdlib.h>

static size_t load(const char *dir, const char *name, uint8_t *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.der", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static int count_names(const xf_san_name *n, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

int main(int argc, char **argv)
{
    /* DNS-ID matching. */
    CHECK(xf_dns_id_match("fabrikam.example", 16, "fabrikam.example", 16));
    CHECK(xf_dns_id_match("Fabrikam.EXAMPLE", 16, "fabrikam.example", 16));
    CHECK(xf_dns_id_match("fabrikam.example.", 17, "fabrikam.example", 16));
    CHECK(!xf_dns_id_match("fabrikam.example", 16, "fabrikam.exampl", 15));
    CHECK(xf_dns_id_match("*.fabrikam.example", 18, "muc.fabrikam.example", 20));
    CHECK(!xf_dns_id_match("*.fabrikam.example", 18, "fabrikam.example", 16));
    CHECK(!xf_dns_id_match("*.fabrikam.example", 18, "a.muc.fabrikam.example", 22));
    CHECK(!xf_dns_id_match("m*.fabrikam.example", 19, "muc.fabrikam.example", 20));
    CHECK(!xf_dns_id_match("*uc.fabrikam.example", 20, "muc.fabrikam.example", 20));
    CHECK(!xf_dns_id_match("muc.*.example", 13, "muc.fabrikam.example", 20));
    /* A wildcard needs two labels after it: "*.example" is too broad to trust. */
    CHECK(!xf_dns_id_match("*.example", 9, "fabrikam.example", 16));
    CHECK(!xf_dns_id_match("*.com", 5, "example.com", 11));
    CHECK(!xf_dns_id_match("*", 1, "com", 3));
    CHECK(!xf_dns_id_match("", 0, "", 0));

    /* Malformed DER: truncated, bad lengths, wrong tags, embedded NUL. */
    static const uint8_t ok_der[] = {0x30, 0x0a, 0x82, 0x08, 'a', '.',
                                     'e',  'x',  'a',  'm',  'p', 'l'};
    int n = 0;
    CHECK(xf_san_walk(ok_der, sizeof ok_der, count_names, &n) == 1 && n == 1);
    for (size_t cut = 0; cut < sizeof ok_der; cut++)
        CHECK(xf_san_walk(ok_der, cut, NULL, NULL) < 0);
    static const uint8_t long_len[] = {0x30, 0x84, 0xff, 0xff, 0xff, 0xff};
    CHECK(xf_san_walk(long_len, sizeof long_len, NULL, NULL) < 0);
    static const uint8_t indefinite[] = {0x30, 0x80, 0x82, 0x01, 'a', 0x00, 0x00};
    CHECK(xf_san_walk(indefinite, sizeof indefinite, NULL, NULL) < 0);
    static const uint8_t nul_name[] = {0x30, 0x05, 0x82, 0x03, 'a', 0x00, 'b'};
    CHECK(xf_san_walk(nul_name, sizeof nul_name, NULL, NULL) < 0);
    static const uint8_t bad_other[] = {0x30, 0x06, 0xa0, 0x04, 0x05, 0x00, 0xa0, 0x00};
    CHECK(xf_san_walk(bad_other, sizeof bad_other, NULL, NULL) < 0);
    /* Every truncation and every single-byte corruption of a real SAN is safe. */
    if (argc > 1) {
        uint8_t cert[4096];
        size_t len = load(argv[1], "mixed", cert, sizeof cert);
        for (size_t i = 0; i < len; i++) {
            uint8_t saved = cert[i];
            for (int v = 0; v < 256; v += 51) {
                cert[i] = (uint8_t)v;
                (void)xf_cert_names_domain(cert, len, "b.example");
            }
            cert[i] = saved;
            (void)xf_cert_names_domain(cert, i, "b.example");
        }
        CHECK(xf_cert_names_domain(cert, len, "b.example") == XF_ID_XMPPADDR);
    }

    if (argc < 2) {
        fprintf(stderr, "usage: test_tls_name CERT-DIR (made by make-certs.sh)\n");
        return 1;
    }
    const char *dir = argv[1];
    uint8_t cert[4096];
    size_t len;
    len = load(dir, "dns", cert, sizeof cert);
    CHECK(xf_cert_names_domain(cert, len, "fabrikam.example") == XF_ID_DNS);
    CHECK(xf_cert_names_domain(cert, len, "conference.fabrikam.example") == XF_ID_DNS);
    CHECK(xf_cert_names_domain(cert, len, "ignored.example") == XF_ID_NONE); /* CN not used */
    CHECK(xf_cert_names_domain(cert, len, "wingtip.example") == XF_ID_NONE);
    len = load(dir, "wild", cert, sizeof cert);
    CHECK(xf_cert_names_domain(cert, len, "muc.fabrikam.example") == XF_ID_DNS_WILDCARD);
    CHECK(xf_cert_names_domain(cert, len, "fabrikam.example") == XF_ID_NONE);
    CHECK(xf_cert_names_domain(cert, len, "a.b.fabrikam.example") == XF_ID_NONE);
    len = load(dir, "xmpp", cert, sizeof cert);
    CHECK(xf_cert_names_domain(cert, len, "wingtip.example") == XF_ID_XMPPADDR);
    CHECK(xf_cert_names_domain(cert, len, "WingTip.Example") == XF_ID_XMPPADDR);
    CHECK(xf_cert_names_domain(cert, len, "fabrikam.example") == XF_ID_NONE);
    len = load(dir, "srv", cert, sizeof cert);
    CHECK(xf_cert_names_domain(cert, len, "litware.example") == XF_ID_SRV);
    CHECK(xf_cert_names_domain(cert, len, "_xmpp-server.litware.example") == XF_ID_NONE);
    len = load(dir, "mixed", cert, sizeof cert);
    CHECK(xf_cert_names_domain(cert, len, "a.example") == XF_ID_DNS);
    CHECK(xf_cert_names_domain(cert, len, "b.example") == XF_ID_XMPPADDR);
    CHECK(xf_cert_names_domain(cert, len, "c.example") == XF_ID_SRV);
    CHECK(xf_cert_names_domain(cert, len, "d.example") == XF_ID_NONE); /* rfc822Name */
    len = load(dir, "cnonly", cert, sizeof cert);
    CHECK(xf_cert_names_domain(cert, len, "contoso.example") == XF_ID_CN);
    CHECK(xf_cert_names_domain(cert, len, "fabrikam.example") == XF_ID_NONE);
    CHECK(xf_cert_names_domain((const uint8_t *)"junk", 4, "contoso.example") == XF_ID_NONE);
    return check_report("test_tls_name");
}
