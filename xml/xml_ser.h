/* xml_ser.h: re-serialise a stanza the router must rewrite.
 *
 * Used for the rare stanzas that cannot be forwarded byte for byte: one that uses a prefix
 * declared only on the sender's stream header (xf_xml_stanza.needs_reserialize, e.g.
 * <db:result> with xmlns:db on the header), one whose 'from' must be stamped, or one that must
 * lose a child (<status/>). The output is namespace-self-contained and canonical:
 *  - each header-bound prefix gets its declaration on the outermost element that uses it;
 *    unprefixed names keep inheriting the stream's content namespace (XMPP convention);
 *  - attribute values are decoded and written in double quotes, escaping & < " and tab/LF/CR
 *    as character references; text escapes & < > and CR; CDATA becomes escaped text;
 *  - white space inside tags is one space; elements without content are written <a/>.
 * Re-serialising the output again gives the same bytes.
 */
#ifndef XF_XML_SER_H
#define XF_XML_SER_H

#include <stdbool.h>
#include <stddef.h>

#include "xml_tok.h"

typedef struct xf_xml_ser_opts {
    xf_xml_slice from;      /* ptr != NULL: stamp this decoded value as 'from' on the stanza */
    const char *drop_local; /* non-NULL: drop children of the stanza with this local name */
    const char *drop_ns;    /* ... in this namespace (NULL: any) */
    bool drop_top_xmlns;    /* drop the stanza's own xmlns='...': it takes the new stream's */
} xf_xml_ser_opts;

#define XF_XML_SER_DEPTH_MAX 256
#define XF_XML_SER_NS_MAX    256

/* s: a STANZA event of t, before the next xf_xml_next call. Returns the output length, or -1
 * when out (cap bytes) is too small or the stanza exceeds the bounds above. */
long xf_xml_reserialize(const xf_xml_tok *t, const xf_xml_stanza *s, const xf_xml_ser_opts *o,
                        char *out, size_t cap);

#endif
