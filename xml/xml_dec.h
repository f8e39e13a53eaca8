/* xml_dec.h: decoding of raw values that the tokenizer has already validated (internal).
 *
 * The tokenizer reports values raw; this decodes them lazily, one byte at a time, so that
 * comparisons (namespace URIs) and copies (to/from/type/id) need no buffer.
 */
#ifndef XF_XML_DEC_H
#define XF_XML_DEC_H

#include <stdint.h>

typedef enum xf_xml_dec_mode {
    XF_XML_DEC_ATTR,  /* attribute value: references; literal tab/CR/LF -> space, CRLF -> one */
    XF_XML_DEC_TEXT,  /* character data: references; CRLF and CR -> LF */
    XF_XML_DEC_CDATA, /* CDATA content: no references; CRLF and CR -> LF */
} xf_xml_dec_mode;

typedef struct xf_xml_dec {
    const uint8_t *p, *e;
    uint8_t out[4];
    uint8_t out_len, out_i;
    xf_xml_dec_mode mode;
} xf_xml_dec;

void xf_xml_dec_init(xf_xml_dec *d, const char *raw, uint32_t len, xf_xml_dec_mode mode);
/* Next decoded byte, or -1 at the end. The input must be valid (checked by the tokenizer). */
int xf_xml_dec_next(xf_xml_dec *d);

#endif
