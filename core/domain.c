/* Domain rules of spec §3: ASCII LDH labels (RFC 1035/5891 A-labels), at most
 * 253 characters, lower-cased. IDNs must arrive as A-labels: converting
 * U-labels needs IDNA2008 tables we do not carry, so we say so instead. */
#include "partner.h"

#include <stdio.h>
#include <string.h>

static bool fail(char *why, size_t whylen, const char *msg, const char *in)
{
    if (why) snprintf(why, whylen, "invalid domain '%.80s': %s", in, msg);
    return false;
}

bool xf_domain_normalize(const char *in, char *out, char *why, size_t whylen)
{
    size_t len = strlen(in);
    if (len == 0) return fail(why, whylen, "it is empty", in);
    if (len > XF_DOMAIN_MAX) return fail(why, whylen, "longer than 253 characters", in);
    if (in[len - 1] == '.') return fail(why, whylen, "remove the trailing dot", in);

    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.' || c == '\0') {
            if (label == 0) return fail(why, whylen, "it has an empty label", in);
            if (in[i - 1] == '-') return fail(why, whylen, "a label ends with a hyphen", in);
            label = 0;
            out[i] = (char)c;
            continue;
        }
        if (c >= 0x80)
            return fail(why, whylen,
                        "non-ASCII characters: give an internationalized domain as its "
                        "A-label (xn--...)",
                        in);
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        bool ldh = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        if (!ldh)
            return fail(why, whylen, "only letters, digits and hyphens are allowed in a label", in);
        if (label == 0 && c == '-') return fail(why, whylen, "a label starts with a hyphen", in);
        if (++label > XF_LABEL_MAX)
            return fail(why, whylen, "a label is longer than 63 characters", in);
        out[i] = (char)c;
    }
    /* "xn--" is the only allowed use of hyphens in positions 3-4 (RFC 5891 §4.2.3.1). */
    for (const char *l = out; l; l = strchr(l, '.') ? strchr(l, '.') + 1 : NULL) {
        if (l[0] && l[1] && l[2] == '-' && l[3] == '-' && strncmp(l, "xn--", 4) != 0)
            return fail(why, whylen,
                        "'--' in the third and fourth positions is reserved for A-labels (xn--)",
                        in);
    }
    return true;
}
