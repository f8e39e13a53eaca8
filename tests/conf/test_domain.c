/* Domain rules of spec §3. */
#include "../check.h"
#include "partner.h"

static bool ok(const char *in, const char *want)
{
    char out[XF_DOMAIN_MAX + 1], why[256];
    if (!xf_domain_normalize(in, out, why, sizeof why)) return false;
    return strcmp(out, want) == 0;
}

static bool refused(const char *in, const char *reason)
{
    char out[XF_DOMAIN_MAX + 1], why[256] = "";
    if (xf_domain_normalize(in, out, why, sizeof why)) return false;
    if (!strstr(why, reason)) fprintf(stderr, "  why for '%s': %s\n", in, why);
    return strstr(why, reason) != NULL;
}

int main(void)
{
    char l63[64], l64[65], long254[300], ok253[300];
    memset(l63, 'a', 63), l63[63] = 0;
    memset(l64, 'a', 64), l64[64] = 0;
    /* 253 = 4 labels of 63 + 3 dots + ... build it exactly. */
    snprintf(ok253, sizeof ok253, "%s.%s.%s.%.61s", l63, l63, l63, l63);
    snprintf(long254, sizeof long254, "%s.%s.%s.%.62s", l63, l63, l63, l63);
    CHECK(strlen(ok253) == 253 && strlen(long254) == 254);

    CHECK(ok("fabrikam.com", "fabrikam.com"));
    CHECK(ok("Fabrikam.COM", "fabrikam.com"));
    CHECK(ok("xn--bcher-kva.example", "xn--bcher-kva.example"));
    CHECK(ok("a-b.c0.example", "a-b.c0.example"));
    CHECK(ok("localhost", "localhost"));
    CHECK(ok(ok253, ok253));
    {
        char l[80];
        snprintf(l, sizeof l, "%s.example", l63);
        CHECK(ok(l, l));
    }
    CHECK(refused("", "empty"));
    CHECK(refused(long254, "253"));
    {
        char l[90];
        snprintf(l, sizeof l, "%s.example", l64);
        CHECK(refused(l, "63"));
    }
    CHECK(refused("fabrikam.com.", "trailing dot"));
    CHECK(refused("a..b", "empty label"));
    CHECK(refused(".a.b", "empty label"));
    CHECK(refused("bad_name.example", "letters, digits and hyphens"));
    CHECK(refused("bad name.example", "letters, digits and hyphens"));
    CHECK(refused("bad!.example", "letters, digits and hyphens"));
    CHECK(refused("b\xc3\xbc"
                  "cher.example",
                  "A-label"));
    CHECK(refused("-a.example", "starts with a hyphen"));
    CHECK(refused("a-.example", "ends with a hyphen"));
    CHECK(refused("ab--cd.example", "reserved"));
    return check_report("test_domain");
}
