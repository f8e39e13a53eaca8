/* What the router knows about one stanza, and the error that bounces it.
 *
 * A stanza moves between cores and waits in queues as [xf_smeta][from][to][id][bytes]:
 * the decoded addresses travel beside the forwarded bytes, so a stanza can be bounced
 * (RFC 6120 §8.3) long after its tokenizer is gone, without parsing it again. */
#ifndef XF_STANZA_H
#define XF_STANZA_H

#include "xml_tok.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XF_JID_MAX 3071 /* RFC 7622: 1023 local + 1023 domain + 1023 resource + 2 */

typedef enum { XF_KIND_MESSAGE = 0, XF_KIND_PRESENCE = 1, XF_KIND_IQ = 2 } xf_kind;

typedef enum {
    XF_T_NONE = 0, /* no type: message normal, presence available */
    XF_T_ERROR,
    XF_T_RESULT,
    XF_T_GET,
    XF_T_SET,
    XF_T_SUBSCRIBE,
    XF_T_SUBSCRIBED,
    XF_T_UNSUBSCRIBE,
    XF_T_UNSUBSCRIBED,
    XF_T_OTHER, /* chat, headline, unavailable, probe, ... */
} xf_stype;

/* Where a stanza came from: only those from outside xfed are ever bounced. */
enum { XF_ORIGIN_INTERNAL = 0, XF_ORIGIN_PARTNER = 1, XF_ORIGIN_XFED = 2 };

typedef struct {
    uint32_t len; /* the stanza's bytes, after the strings */
    uint16_t from_len, to_len, id_len;
    uint8_t kind;   /* xf_kind */
    uint8_t type;   /* xf_stype */
    uint8_t origin; /* XF_ORIGIN_* */
    uint8_t local;  /* the local domain's index (the local side of the exchange) */
    uint8_t pad[2];
} xf_smeta;

/* The decoded facts of a stanza event. */
typedef struct {
    xf_smeta m;
    char from[XF_JID_MAX + 1], to[XF_JID_MAX + 1], id[XF_JID_MAX + 1];
} xf_sfacts;

/* NULL when read, else the name of the attribute that is missing or too long ("from", "to",
 * "id") or "name" for an element that is not a stanza. */
const char *xf_sfacts_read(const xf_xml_stanza *s, xf_sfacts *f);
/* kind from the element's local name; false for anything that is not a stanza. */
bool xf_stanza_kind(xf_xml_slice name, uint8_t *kind);
xf_stype xf_stanza_type(const char *type);
const char *xf_kind_name(unsigned kind);

/* The domain of a JID (lower-cased into out), and its bare form (local@domain). */
bool xf_jid_domain(const char *jid, char *out, size_t cap);
bool xf_jid_bare(const char *jid, char *out, size_t cap);

/* The packed header: meta then the three strings; returns its length, 0 when cap is short. */
size_t xf_smeta_pack(const xf_sfacts *f, uint8_t *out, size_t cap);
/* Reads a packed header back; the strings point into `p` (NUL-less, lengths in meta). */
typedef struct {
    xf_smeta m;
    const char *from, *to, *id;
    const uint8_t *bytes; /* m.len bytes */
} xf_spacked;
bool xf_smeta_unpack(const uint8_t *p, size_t len, xf_spacked *out);
size_t xf_spacked_size(const xf_smeta *m); /* header + strings + bytes */
/* The same for a header and a stanza held apart (hdr: meta and strings; bytes: m.len bytes). */
bool xf_spacked_join(const uint8_t *hdr, size_t hlen, const uint8_t *bytes, xf_spacked *out);

/* Whether a stanza that cannot be delivered gets an error back: never for errors, never for
 * IQ results, never for what xfed itself made. */
bool xf_stanza_bounces(const xf_smeta *m);
/* Writes the error stanza answering (from, to, id): from/to swapped, <error type=...><cond/>
 * [<text/>]. Returns the length, 0 when cap is short. */
size_t xf_bounce_build(unsigned kind, const char *from, size_t from_len, const char *to,
                       size_t to_len, const char *id, size_t id_len, const char *cond,
                       const char *text, char *out, size_t cap);
/* The RFC 6120 §8.3.2 error type of a condition (cancel, wait, modify, auth). */
const char *xf_error_type(const char *cond);

/* Escapes for an attribute value or text; returns bytes written (0 when cap is short). */
size_t xf_xml_escape(const char *in, size_t len, char *out, size_t cap);

#endif
