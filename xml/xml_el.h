/* xml_el.h: read the small negotiation elements of a stream (<stream:features>,
 * <auth>, <db:result>, <iq><ping/></iq>) without a DOM.
 *
 * The input is one element the stream tokenizer already reported as a STANZA,
 * so it is well-formed and within the limits: this walker only finds names,
 * attribute values, direct children and text, in place, without allocation.
 *
 *   xf_el root;  xf_el_root(bytes, len, ns, &root);
 *   xf_el_attr(&root, "type", &v);                 raw value (xf_xml_decode it)
 *   for (const char *it = NULL; xf_el_child(&root, &it, &kid);)  direct children
 *   xf_el_text(&root, out, cap);                   decoded character data
 *
 * A child's namespace is its own xmlns attribute, or its parent's; a prefixed
 * child resolves the prefix on itself or its parent only (enough for the
 * elements above, whose prefixes, if any, are declared right there).
 */
#ifndef XF_XML_EL_H
#define XF_XML_EL_H

#include "xml_tok.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct xf_el {
    xf_xml_slice name; /* local name */
    xf_xml_slice ns;   /* namespace URI, ptr NULL when unknown */
    const char *tag;   /* '<' of the start tag */
    const char *attrs; /* after the name, up to the end of the start tag */
    const char *inner; /* content (after the start tag), NULL for <x/> */
    const char *end;   /* one past the element's last byte */
    const char *close; /* '<' of the end tag (== end for <x/>) */
    const struct xf_el *parent;
} xf_el;

/* The element at bytes[0..len). ns: its namespace as the tokenizer resolved it. */
bool xf_el_root(const char *bytes, size_t len, xf_xml_slice ns, xf_el *out);
/* The attribute `qname` of e (raw, undecoded); false when absent. */
bool xf_el_attr(const xf_el *e, const char *qname, xf_xml_slice *val);
/* Next direct child element: *it starts NULL. False after the last. */
bool xf_el_child(const xf_el *parent, const char **it, xf_el *out);
/* First direct child with this local name (and namespace, when ns != NULL). */
bool xf_el_find(const xf_el *parent, const char *name, const char *ns, xf_el *out);
/* Character data directly inside e (text and CDATA, references decoded), into
 * out (NUL-terminated when cap > 0). Returns the full length. */
size_t xf_el_text(const xf_el *e, char *out, size_t cap);

bool xf_slice_eq(xf_xml_slice s, const char *lit);

#endif
