/* xml_tok.h: resumable, zero-copy tokenizer for XMPP streams (RFC 6120 restricted XML).
 *
 * Interface
 *   xf_xml_limits lim; xf_xml_limits_default(&lim);
 *   void *mem = malloc(xf_xml_mem_size(&lim));            // caller owns all memory
 *   xf_xml_tok tok; xf_xml_init(&tok, &lim, XF_XML_STREAM, mem, xf_xml_mem_size(&lim));
 *   for each received chunk:
 *       xf_xml_feed(&tok, chunk, len);
 *       while ((type = xf_xml_next(&tok, &ev)) != XF_XML_EV_NONE) {
 *           HEADER | STANZA | KEEPALIVE | STREAM_END | ERROR (sticky: close the stream)
 *       }
 *       // NONE: the chunk is consumed; a partial stanza was copied to the spill buffer, so
 *       // the chunk (io_uring provided buffer) may be given back now.
 *
 * Every multi-byte construct may be split anywhere; feeding a stream whole, in any chunking or
 * one byte at a time gives the same events with the same byte ranges (a whitespace keepalive
 * run that straddles chunks may be reported as several KEEPALIVE events; adjacent ones add up).
 *
 * Slices point into caller memory and are valid until the next xf_xml_feed/xf_xml_next call:
 * a STANZA's bytes lie in the chunk when the stanza is wholly inside it, else in the spill
 * buffer (stanza.spilled). HEADER slices lie in the tokenizer's header store and stay valid
 * until xf_xml_reset. Attribute values are raw (entity references and literal white space
 * undecoded); xf_xml_decode() gives the XML value.
 *
 * Depth counts open elements: inside <stream:stream> it is 1, a stanza element is at 2.
 * Limits (spec §8) come from xf_xml_limits; exceeding one gives policy-violation.
 * No allocation, no recursion, no I/O. One tokenizer per stream, one thread at a time.
 */
#ifndef XF_XML_TOK_H
#define XF_XML_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xml_chars.h"

typedef struct xf_xml_slice {
    const char *ptr; /* NULL when absent */
    uint32_t len;
} xf_xml_slice;

/* The stream error condition to send (RFC 6120 §4.9.3). */
typedef enum xf_xml_cond {
    XF_XML_COND_NONE = 0,
    XF_XML_COND_NOT_WELL_FORMED,      /* malformed XML or invalid UTF-8 */
    XF_XML_COND_RESTRICTED_XML,       /* DTD, comment, PI, entity other than the five */
    XF_XML_COND_POLICY_VIOLATION,     /* a limit; error.stanza_too_big for the size limit */
    XF_XML_COND_UNSUPPORTED_ENCODING, /* XML declaration names an encoding other than UTF-8 */
    XF_XML_COND_INVALID_NAMESPACE,    /* root is not {http://etherx.jabber.org/streams}stream */
    XF_XML_COND_BAD_FORMAT,           /* well-formed but not XMPP: text at stream level */
} xf_xml_cond;

typedef enum xf_xml_mode {
    XF_XML_STREAM,   /* XMPP stream: root <stream:stream>, stanzas, keepalives */
    XF_XML_DOCUMENT, /* one document (xfed-xmlcheck, fuzzing): any root, any content */
} xf_xml_mode;

typedef enum xf_xml_event_type {
    XF_XML_EV_NONE = 0,   /* input consumed; feed the next chunk */
    XF_XML_EV_HEADER,     /* root start tag (<stream:stream ...>) complete */
    XF_XML_EV_STANZA,     /* element at depth 2 (document mode: a child of the root) complete */
    XF_XML_EV_KEEPALIVE,  /* white space between stanzas (stream mode) */
    XF_XML_EV_STREAM_END, /* root end tag (</stream:stream>) */
    XF_XML_EV_ERROR,      /* sticky until xf_xml_reset */
} xf_xml_event_type;

typedef struct xf_xml_limits {
    uint32_t stanza_bytes_max; /* current stanza size limit (pre-auth 8 KiB, post-auth 512 KiB) */
    uint32_t stanza_bytes_cap; /* spill capacity: the largest stanza_bytes_max ever set */
    uint32_t header_bytes_max; /* XML declaration, stream header, closing tag */
    uint16_t depth_max;        /* open elements, <stream:stream> included */
    uint16_t attrs_max;        /* attributes per element, namespace declarations included */
    uint16_t ns_max;           /* namespace declarations in scope at once */
    uint16_t name_bytes_max;   /* element or attribute name, prefix included */
} xf_xml_limits;

#define XF_XML_STANZA_PREAUTH_MAX  (8u * 1024u)
#define XF_XML_STANZA_POSTAUTH_MAX (512u * 1024u)
#define XF_XML_BYTES_CAP           (1u << 30) /* offsets are 32-bit inside one buffer */

typedef struct xf_xml_header {
    xf_xml_slice qname;      /* "stream:stream" */
    xf_xml_slice ns;         /* namespace of the root element */
    xf_xml_slice content_ns; /* default namespace declared on the root ("jabber:server") */
    xf_xml_slice to, from, id, version, lang;
    uint32_t decl_count; /* prefixed declarations on the root: xf_xml_header_decl() */
    uint32_t flags;      /* XF_XML_RAW_* bits: which values need xf_xml_decode() */
} xf_xml_header;

typedef struct xf_xml_stanza {
    xf_xml_slice bytes;  /* exact bytes, '<' to the final '>' */
    xf_xml_slice name;   /* local name */
    xf_xml_slice prefix; /* empty when unprefixed */
    xf_xml_slice ns;     /* namespace URI (raw value); ptr NULL when in no namespace */
    xf_xml_slice to, from, type, id, lang; /* raw attribute values; ptr NULL when absent */
    uint32_t flags;                        /* XF_XML_RAW_* bits */
    bool spilled;                          /* bytes lie in the spill buffer */
    bool needs_reserialize;                /* a prefix in it is bound only on the stream header */
} xf_xml_stanza;

enum {
    XF_XML_RAW_TO = 1u << 0, /* value holds '&' or literal tab/CR/LF: decode before use */
    XF_XML_RAW_FROM = 1u << 1,
    XF_XML_RAW_TYPE = 1u << 2,
    XF_XML_RAW_ID = 1u << 3,
    XF_XML_RAW_LANG = 1u << 4,
    XF_XML_RAW_VERSION = 1u << 5,
    XF_XML_RAW_NS = 1u << 6,
    XF_XML_RAW_CONTENT = 1u << 7,
};

typedef struct xf_xml_error {
    xf_xml_cond cond;
    bool stanza_too_big; /* send <stanza-too-big xmlns='urn:xmpp:errors'/> too */
    const char *text;    /* static, human readable */
} xf_xml_error;

typedef struct xf_xml_event {
    xf_xml_event_type type;
    uint64_t offset; /* absolute stream offset of the event's first byte (error: where found) */
    uint64_t length; /* bytes covered (0 for errors) */
    union {
        xf_xml_header header;
        xf_xml_stanza stanza;
        xf_xml_error error;
    };
} xf_xml_event;

/* Internal records kept in caller memory (see xf_xml_mem_size). */
typedef struct xf_xml_elem {
    uint32_t name_off; /* relative to the unit (or header store for the root) */
    uint16_t name_len;
    uint16_t colon;   /* prefix length, 0 when unprefixed */
    uint16_t ns_mark; /* namespace stack height before this element */
    int16_t def_ns;   /* default namespace in effect inside it: stack index or -1 */
} xf_xml_elem;

typedef struct xf_xml_attr {
    uint32_t name_off;
    uint32_t val_off;
    uint32_t val_len;
    uint32_t key; /* cheap hash of the qname for the uniqueness check */
    int32_t ns;   /* namespace stack index, XF_XML_NS_XML, or -1 */
    uint16_t name_len;
    uint16_t colon;
    uint8_t raw;  /* value needs decoding */
    uint8_t decl; /* 0: attribute, 1: xmlns, 2: xmlns:prefix */
} xf_xml_attr;

typedef struct xf_xml_ns {
    uint32_t prefix_off;
    uint32_t uri_off;
    uint32_t uri_len;
    uint16_t prefix_len;
    uint8_t in_hdr; /* offsets are into the header store */
    uint8_t raw;
} xf_xml_ns;

#define XF_XML_NS_XML (-2) /* the predefined xml prefix */

typedef struct xf_xml_loc { /* a value inside the current unit or the header store */
    uint32_t off;
    uint32_t len;
    uint8_t where; /* 0 absent, 1 unit, 2 header store, 3 static */
} xf_xml_loc;

enum {
    XF_XML_TA_TO,
    XF_XML_TA_FROM,
    XF_XML_TA_TYPE,
    XF_XML_TA_ID,
    XF_XML_TA_LANG,
    XF_XML_TA_VERSION,
    XF_XML_TA_NS,
    XF_XML_TA_CONTENT,
    XF_XML_TA_COUNT
};

/* The tokenizer. Fields are private; it is public only so callers can embed it. */
typedef struct xf_xml_tok {
    xf_xml_limits lim;
    xf_xml_mode mode;
    /* caller memory */
    xf_xml_elem *elems;
    xf_xml_attr *attrs;
    xf_xml_ns *ns;
    char *hdr;
    char *spill;
    /* input */
    const char *chunk;
    uint32_t chunk_len;
    int64_t chunk_abs; /* stream offset of chunk[0] */
    int64_t next_abs;  /* stream offset of the next chunk */
    const char *buf;   /* chunk or spill */
    int64_t buf_abs;   /* stream offset of buf[0] */
    uint32_t pos, end; /* parse position and end of data in buf */
    uint32_t lim_pos;  /* min(end, unit + unit_max) */
    uint32_t unit;     /* start of the retained unit (stanza, header, tag) or XF_XML_NONE */
    uint32_t unit_max;
    uint32_t spill_at; /* spill offset of chunk[0] while in_spill */
    bool in_spill;
    /* parser */
    uint8_t state;
    uint8_t root_done;
    uint8_t decl_ok;
    uint8_t bom_k;
    uint8_t pending_end;
    uint8_t had_ws, quote, val_raw, brk, k;
    uint8_t ref_st, ref_ret, ref_len;
    char ref_name[4];
    uint32_t ref_cp;
    uint32_t depth;
    uint32_t nattrs;
    uint32_t tag_special; /* attributes of the current tag that are prefixed or xmlns */
    uint32_t ns_len, ns_hdr;
    uint32_t name_start, name_colon;
    uint8_t name_first;
    uint32_t val_start;
    uint32_t tag_rel; /* start of the current tag, relative to unit */
    uint32_t etag_k;
    uint32_t el_off, el_len, el_colon;
    uint32_t hdr_len;
    uint64_t ka_len;
    int64_t ka_abs;
    xf_xml_u8 u8;
    /* the root (header) or the stanza element being reported */
    uint32_t top_off, top_len, top_colon, top_flags;
    uint8_t top_hdr_used;
    xf_xml_loc top_attr[XF_XML_TA_COUNT];
    /* error */
    xf_xml_error err;
    int64_t err_abs;
    uint64_t nonascii_names; /* statistics: names with non-ASCII characters */
} xf_xml_tok;

#define XF_XML_NONE UINT32_MAX

void xf_xml_limits_default(xf_xml_limits *lim);
size_t xf_xml_mem_size(const xf_xml_limits *lim);
/* mem: at least xf_xml_mem_size(lim) bytes, 8-byte aligned, owned by the caller. */
void xf_xml_init(xf_xml_tok *t, const xf_xml_limits *lim, xf_xml_mode mode, void *mem,
                 size_t mem_len);
/* Stream restart (after STARTTLS or SASL success): forget the stream, keep the unconsumed
 * rest of the current chunk, which starts the new stream at offset 0. Only between stanzas. */
void xf_xml_reset(xf_xml_tok *t);
/* Switch the stanza size limit (pre-auth / post-auth); applies from the next stanza. */
void xf_xml_set_stanza_max(xf_xml_tok *t, uint32_t bytes);
/* Give the next chunk. The previous one must be consumed (xf_xml_next returned NONE). */
void xf_xml_feed(xf_xml_tok *t, const void *chunk, size_t len);
xf_xml_event_type xf_xml_next(xf_xml_tok *t, xf_xml_event *ev);
/* End of input: ERROR (not-well-formed) unless the root element was closed; else NONE. */
xf_xml_event_type xf_xml_finish(xf_xml_tok *t, xf_xml_event *ev);

/* Prefixed namespace declarations of the current stream header, i < header.decl_count. */
bool xf_xml_header_decl(const xf_xml_tok *t, uint32_t i, xf_xml_slice *prefix, xf_xml_slice *uri);
/* Namespace bound to a prefix on the header (prefix len 0: the content namespace). */
bool xf_xml_header_ns(const xf_xml_tok *t, const char *prefix, uint32_t prefix_len,
                      xf_xml_slice *uri);

const char *xf_xml_cond_name(xf_xml_cond cond);

/* Decode a raw attribute value (references, attribute-value white space normalisation) into
 * out; returns the decoded length (which may exceed cap: then out holds the first cap bytes). */
size_t xf_xml_decode(xf_xml_slice raw, char *out, size_t cap);
/* Does raw decode to exactly lit? */
bool xf_xml_decoded_eq(xf_xml_slice raw, const char *lit, size_t lit_len);

#endif
