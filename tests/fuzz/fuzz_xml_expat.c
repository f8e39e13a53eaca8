/* fuzz_xml_expat: xfed's tokenizer (document mode) and expat 2.5 (namespace processing,
 * UTF-8 forced) must agree on well-formedness of the input.
 *
 * Inputs on which the answers may legitimately differ are skipped, each for a stated reason:
 *  - xfed says restricted-xml: comments, PIs, DTDs and undefined entities are forbidden by
 *    RFC 6120 §11 but well-formed XML (or, for entities, an error in expat too);
 *  - xfed says policy-violation: the limits of spec §8 are not XML rules;
 *  - xfed says unsupported-encoding: expat accepts other encodings (the declared one is
 *    ignored here because UTF-8 is forced, as XMPP requires);
 *  - a name contains a non-ASCII character: expat 2.5 uses the Name character classes of
 *    XML 1.0 before the fifth edition (Unicode 2.0 tables), xfed those of the fifth edition.
 *  - the XML declaration's version is not 1.x: XML 1.0 (fifth edition) requires '1.' [0-9]+
 *    and XMPP uses XML 1.0, but expat does not check the value;
 *  - the input holds a NUL byte: expat's XML_Parse stops reporting at an internal position
 *    for some NULs in odd places; both reject them, which is all that is compared anyway.
 */
#include <expat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int xfed_check(const uint8_t *data, size_t size, xf_xml_cond *cond, uint64_t *nonascii,
                      const char **text)
{
    static void *mem;
    static xf_xml_limits lim;
    if (mem == NULL) {
        xf_xml_limits_default(&lim);
        lim.stanza_bytes_max = lim.stanza_bytes_cap = 1u << 20;
        lim.header_bytes_max = 1u << 20;
        lim.depth_max = 1024;
        lim.attrs_max = 1024;
        lim.ns_max = 1024;
        lim.name_bytes_max = 65535;
        mem = malloc(xf_xml_mem_size(&lim));
    }
    xf_xml_tok t;
    xf_xml_event ev;
    xf_xml_event_type type;
    xf_xml_init(&t, &lim, XF_XML_DOCUMENT, mem, xf_xml_mem_size(&lim));
    xf_xml_feed(&t, data, size);
    while ((type = xf_xml_next(&t, &ev)) != XF_XML_EV_NONE && type != XF_XML_EV_ERROR) {
    }
    while (type != XF_XML_EV_ERROR && (type = xf_xml_finish(&t, &ev)) != XF_XML_EV_NONE) {
    }
    *cond = type == XF_XML_EV_ERROR ? ev.error.cond : XF_XML_COND_NONE;
    *nonascii = t.nonascii_names;
    *text = type == XF_XML_EV_ERROR ? ev.error.text : "";
    return type != XF_XML_EV_ERROR;
}

static int expat_check(const uint8_t *data, size_t size, enum XML_Error *err)
{
    XML_Parser p = XML_ParserCreateNS("UTF-8", '\x01');
    if (p == NULL) abort();
    int ok = XML_Parse(p, (const char *)data, (int)size, 1) == XML_STATUS_OK;
    *err = XML_GetErrorCode(p);
    XML_ParserFree(p);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    if (memchr(data, 0, size) != NULL) return 0;
    xf_xml_cond cond;
    uint64_t nonascii = 0;
    enum XML_Error err;
    const char *text = "";
    int ours = xfed_check(data, size, &cond, &nonascii, &text);
    if (strcmp(text, "unsupported XML version") == 0) return 0;
    if (cond == XF_XML_COND_RESTRICTED_XML || cond == XF_XML_COND_POLICY_VIOLATION ||
        cond == XF_XML_COND_UNSUPPORTED_ENCODING || nonascii > 0) {
        return 0;
    }
    int theirs = expat_check(data, size, &err);
    if (ours != theirs) {
        fprintf(stderr, "disagreement: xfed %s (%s: %s), expat %s (%s)\n", ours ? "ok" : "error",
                xf_xml_cond_name(cond), text, theirs ? "ok" : "error", XML_ErrorString(err));
        abort();
    }
    return 0;
}
