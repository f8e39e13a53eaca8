/* xml_tok.c: the resumable tokenizer state machine.
 *
 * The machine runs over one contiguous buffer: the caller's chunk, or the spill buffer while a
 * "unit" (the stream header, a stanza, or a tag at stream level) straddles chunks. A unit
 * begins at its '<'; when the chunk ends inside one, its bytes so far move to the spill buffer
 * and later chunks are appended there until it completes. Names, attributes and namespace
 * declarations are kept as offsets relative to the unit start, so moving it costs no fix-ups.
 * Everything outside units (white space, text at the root level in document mode) is consumed
 * with resumable state alone: the UTF-8 decoder and the reference decoder keep their progress
 * in the struct, never by looking back.
 *
 * The unit size limit is enforced by clipping the scan end (lim_pos) at unit + unit_max, so the
 * error offset does not depend on how the input was chunked.
 */
#include "xml_tok.h"

#include <assert.h>
#include <string.h>

#include "xml_dec.h"
#include "xml_scan.h"

enum {
    ST_START,
    ST_PROLOG, /* prolog and epilog: white space, then '<' */
    ST_DECL,
    ST_LT,
    ST_STAG_NAME,
    ST_TAG,
    ST_ATTR_NAME,
    ST_ATTR_EQ,
    ST_ATTR_Q,
    ST_ATTR_VAL,
    ST_ATTR_U8,
    ST_EMPTY,
    ST_ETAG,
    ST_ETAG_WS,
    ST_BANG,
    ST_CDATA_OPEN,
    ST_CDATA,
    ST_CDATA_BR,
    ST_CDATA_U8,
    ST_TEXT,
    ST_TEXT_BR,
    ST_TEXT_U8,
    ST_REF,
    ST_WS1, /* stream mode, depth 1: keepalive white space between stanzas */
    ST_ERROR,
};

enum { RUN_EOB = -1 }; /* run(): the buffer is exhausted */

static const char ns_streams[] = "http://etherx.jabber.org/streams";
static const char ns_xml[] = "http://www.w3.org/XML/1998/namespace";
static const char ns_xmlns[] = "http://www.w3.org/2000/xmlns/";

const char *xf_xml_cond_name(xf_xml_cond cond)
{
    switch (cond) {
    case XF_XML_COND_NONE: return "none";
    case XF_XML_COND_NOT_WELL_FORMED: return "not-well-formed";
    case XF_XML_COND_RESTRICTED_XML: return "restricted-xml";
    case XF_XML_COND_POLICY_VIOLATION: return "policy-violation";
    case XF_XML_COND_UNSUPPORTED_ENCODING: return "unsupported-encoding";
    case XF_XML_COND_INVALID_NAMESPACE: return "invalid-namespace";
    case XF_XML_COND_BAD_FORMAT: return "bad-format";
    }
    return "?";
}

void xf_xml_limits_default(xf_xml_limits *lim)
{
    lim->stanza_bytes_max = XF_XML_STANZA_PREAUTH_MAX;
    lim->stanza_bytes_cap = XF_XML_STANZA_POSTAUTH_MAX;
    lim->header_bytes_max = 4096;
    lim->depth_max = 32;
    lim->attrs_max = 64;
    lim->ns_max = 64;
    lim->name_bytes_max = 1024;
}

static size_t align8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

/* The spill buffer holds any unit: a stanza or a stream-level tag. */
static uint32_t spill_cap(const xf_xml_limits *lim)
{
    return lim->stanza_bytes_cap > lim->header_bytes_max ? lim->stanza_bytes_cap
                                                         : lim->header_bytes_max;
}

size_t xf_xml_mem_size(const xf_xml_limits *lim)
{
    return align8(sizeof(xf_xml_elem) * lim->depth_max) +
           align8(sizeof(xf_xml_attr) * lim->attrs_max) + align8(sizeof(xf_xml_ns) * lim->ns_max) +
           align8(lim->header_bytes_max) + align8(spill_cap(lim));
}

static void state_clear(xf_xml_tok *t)
{
    t->unit = XF_XML_NONE;
    t->lim_pos = t->end;
    t->state = ST_START;
    t->root_done = 0;
    t->decl_ok = 0;
    t->bom_k = 0;
    t->pending_end = 0;
    t->brk = 0;
    t->depth = 0;
    t->nattrs = 0;
    t->ns_len = 0;
    t->ns_hdr = 0;
    t->hdr_len = 0;
    t->ka_len = 0;
    memset(&t->u8, 0, sizeof t->u8);
    memset(&t->err, 0, sizeof t->err);
}

void xf_xml_init(xf_xml_tok *t, const xf_xml_limits *lim, xf_xml_mode mode, void *mem,
                 size_t mem_len)
{
    assert(lim->stanza_bytes_max <= lim->stanza_bytes_cap);
    assert(lim->stanza_bytes_cap <= XF_XML_BYTES_CAP);
    assert(lim->header_bytes_max <= XF_XML_BYTES_CAP);
    assert(lim->depth_max >= 2 && lim->attrs_max >= 1 && lim->name_bytes_max >= 1);
    assert(lim->ns_max <= INT16_MAX); /* xf_xml_elem.def_ns */
    assert(mem_len >= xf_xml_mem_size(lim));
    assert(((uintptr_t)mem & 7u) == 0);
    memset(t, 0, sizeof *t);
    t->lim = *lim;
    t->mode = mode;
    char *m = mem;
    t->elems = (xf_xml_elem *)(void *)m;
    m += align8(sizeof(xf_xml_elem) * lim->depth_max);
    t->attrs = (xf_xml_attr *)(void *)m;
    m += align8(sizeof(xf_xml_attr) * lim->attrs_max);
    t->ns = (xf_xml_ns *)(void *)m;
    m += align8(sizeof(xf_xml_ns) * lim->ns_max);
    t->hdr = m;
    m += align8(lim->header_bytes_max);
    t->spill = m;
    t->buf = "";
    state_clear(t);
}

void xf_xml_reset(xf_xml_tok *t)
{
    assert(t->unit == XF_XML_NONE || t->state == ST_ERROR);
    assert(!t->in_spill || t->state == ST_ERROR);
    if (t->in_spill) { /* after an error inside a spilled unit: drop the rest of it */
        t->in_spill = false;
        t->buf = t->chunk;
        t->end = t->chunk_len;
        t->pos = t->end;
    }
    /* The unconsumed rest of the buffer starts the new stream at offset 0. */
    t->buf_abs = -(int64_t)t->pos;
    t->chunk_abs = t->buf_abs;
    t->next_abs = (int64_t)(t->end - t->pos);
    state_clear(t);
}

void xf_xml_set_stanza_max(xf_xml_tok *t, uint32_t bytes)
{
    assert(bytes <= t->lim.stanza_bytes_cap);
    assert(bytes > 0);
    t->lim.stanza_bytes_max = bytes;
}

static void set_lim(xf_xml_tok *t)
{
    if (t->unit == XF_XML_NONE) {
        t->lim_pos = t->end;
    } else {
        uint32_t cap = t->unit + t->unit_max;
        t->lim_pos = cap < t->end ? cap : t->end;
    }
}

void xf_xml_feed(xf_xml_tok *t, const void *chunk, size_t len)
{
    assert(t->pos == t->end); /* the previous chunk is consumed */
    assert(len < XF_XML_BYTES_CAP);
    assert(t->state != ST_ERROR);
    t->chunk = chunk;
    t->chunk_len = (uint32_t)len;
    t->chunk_abs = t->next_abs;
    t->next_abs += (int64_t)len;
    if (t->in_spill) {
        uint32_t room = spill_cap(&t->lim) - t->end;
        uint32_t n = (uint32_t)len < room ? (uint32_t)len : room;
        memcpy(t->spill + t->end, chunk, n);
        t->spill_at = t->end;
        t->end += n;
        assert(t->buf_abs + (int64_t)t->spill_at == t->chunk_abs);
    } else {
        t->buf = chunk;
        t->buf_abs = t->chunk_abs;
        t->pos = 0;
        t->end = (uint32_t)len;
    }
    set_lim(t);
}

/* Move the unfinished unit into the spill buffer so the caller may release the chunk. */
static void spill_unit(xf_xml_tok *t)
{
    assert(!t->in_spill);
    assert(t->unit != XF_XML_NONE && t->unit <= t->end);
    uint32_t n = t->end - t->unit;
    assert(n <= spill_cap(&t->lim));
    memmove(t->spill, t->buf + t->unit, n);
    t->buf_abs += t->unit;
    t->pos -= t->unit;
    t->name_start -= t->unit;
    t->val_start -= t->unit;
    t->unit = 0;
    t->buf = t->spill;
    t->end = n;
    t->in_spill = true;
    set_lim(t);
}

/* The unit is complete: go back to reading the chunk directly. Returns the new position. */
static uint32_t unit_end(xf_xml_tok *t, uint32_t p)
{
    t->unit = XF_XML_NONE;
    if (t->in_spill) {
        assert(p >= t->spill_at);
        p -= t->spill_at;
        assert(p <= t->chunk_len);
        t->in_spill = false;
        t->buf = t->chunk;
        t->buf_abs = t->chunk_abs;
        t->end = t->chunk_len;
    }
    set_lim(t);
    return p;
}

static void unit_begin(xf_xml_tok *t, uint32_t p, uint32_t max)
{
    assert(t->unit == XF_XML_NONE);
    t->unit = p;
    t->unit_max = max;
    set_lim(t);
}

static int fail(xf_xml_tok *t, xf_xml_event *ev, xf_xml_cond cond, uint32_t at, const char *text)
{
    t->state = ST_ERROR;
    t->err.cond = cond;
    t->err.text = text;
    t->err.stanza_too_big = false;
    t->err_abs = t->buf_abs + at;
    ev->type = XF_XML_EV_ERROR;
    ev->offset = (uint64_t)t->err_abs;
    ev->length = 0;
    ev->error = t->err;
    return XF_XML_EV_ERROR;
}

static const char *unit_base(const xf_xml_tok *t)
{
    return t->buf + t->unit;
}

static const char *loc_ptr(const xf_xml_tok *t, uint8_t where, uint32_t off)
{
    if (where == 2) return t->hdr + off;
    if (where == 3) return ns_xml;
    return unit_base(t) + off;
}

static xf_xml_slice loc_slice(const xf_xml_tok *t, const xf_xml_loc *l)
{
    xf_xml_slice s = {NULL, 0};
    if (l->where != 0) {
        s.ptr = loc_ptr(t, l->where, l->off);
        s.len = l->len;
    }
    return s;
}

/* memcmp(a, b, n) == 0 for the short, variable lengths of names, inline. */
static inline bool eqn(const void *a, const void *b, uint32_t n)
{
    const uint8_t *x = a, *y = b;
    uint64_t u, v;
    while (n >= 8) {
        memcpy(&u, x, 8);
        memcpy(&v, y, 8);
        if (u != v) return false;
        x += 8, y += 8, n -= 8;
    }
    if (n >= 4) {
        uint32_t u4, v4, w4, z4;
        memcpy(&u4, x, 4);
        memcpy(&v4, y, 4);
        memcpy(&w4, x + n - 4, 4);
        memcpy(&z4, y + n - 4, 4);
        return u4 == v4 && w4 == z4;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (x[i] != y[i]) return false;
    }
    return true;
}

static const char *ns_base(const xf_xml_tok *t, const xf_xml_ns *n)
{
    return n->in_hdr ? t->hdr : unit_base(t);
}

static int32_t ns_lookup(const xf_xml_tok *t, const char *pfx, uint32_t len)
{
    for (uint32_t i = t->ns_len; i-- > 0;) {
        const xf_xml_ns *n = &t->ns[i];
        if (n->prefix_len == len && eqn(ns_base(t, n) + n->prefix_off, pfx, len)) {
            return (int32_t)i;
        }
    }
    if (len == 3 && eqn(pfx, "xml", 3)) return XF_XML_NS_XML;
    return -1;
}

static bool value_eq(const char *v, uint32_t len, bool raw, const char *lit, size_t lit_len)
{
    if (!raw) return len == lit_len && memcmp(v, lit, len) == 0;
    xf_xml_slice s = {v, len};
    return xf_xml_decoded_eq(s, lit, lit_len);
}

/* Namespace URI of a stack entry (or the xml one) as pointer, length and raw flag. */
static void ns_uri(const xf_xml_tok *t, int32_t idx, const char **uri, uint32_t *len, bool *raw)
{
    if (idx == XF_XML_NS_XML) {
        *uri = ns_xml;
        *len = sizeof ns_xml - 1;
        *raw = false;
        return;
    }
    assert(idx >= 0 && (uint32_t)idx < t->ns_len);
    const xf_xml_ns *n = &t->ns[idx];
    *uri = ns_base(t, n) + n->uri_off;
    *len = n->uri_len;
    *raw = n->raw;
}

static bool ns_same(const xf_xml_tok *t, int32_t a, int32_t b)
{
    const char *ua, *ub;
    uint32_t la, lb;
    bool ra, rb;
    if (a == b) return true;
    ns_uri(t, a, &ua, &la, &ra);
    ns_uri(t, b, &ub, &lb, &rb);
    if (!ra && !rb) return la == lb && eqn(ua, ub, la);
    xf_xml_dec da, db;
    xf_xml_dec_init(&da, ua, la, XF_XML_DEC_ATTR);
    xf_xml_dec_init(&db, ub, lb, XF_XML_DEC_ATTR);
    for (;;) {
        int ca = xf_xml_dec_next(&da);
        int cb = xf_xml_dec_next(&db);
        if (ca != cb) return false;
        if (ca < 0) return true;
    }
}

/* Checks one namespace declaration and pushes it. Returns NULL or the error text. */
static const char *ns_declare(xf_xml_tok *t, const xf_xml_attr *a, const char *ub)
{
    const char *nm = ub + a->name_off;
    const char *pfx = a->decl == 2 ? nm + 6 : nm;
    uint32_t plen = a->decl == 2 ? a->name_len - 6u : 0u;
    const char *v = ub + a->val_off;
    bool is_xml = value_eq(v, a->val_len, a->raw, ns_xml, sizeof ns_xml - 1);
    bool is_xmlns = value_eq(v, a->val_len, a->raw, ns_xmlns, sizeof ns_xmlns - 1);
    bool pfx_xml = plen == 3 && memcmp(pfx, "xml", 3) == 0;
    if (plen == 5 && memcmp(pfx, "xmlns", 5) == 0) return "the xmlns prefix cannot be declared";
    if (pfx_xml != is_xml) return "the xml prefix and namespace go together only";
    if (is_xmlns) return "the xmlns namespace cannot be declared";
    if (plen > 0 && a->val_len == 0) return "a prefix cannot be undeclared in XML 1.0";
    assert(t->ns_len < t->lim.ns_max);
    xf_xml_ns *n = &t->ns[t->ns_len++];
    n->prefix_off = (uint32_t)(pfx - ub);
    n->prefix_len = (uint16_t)plen;
    n->uri_off = a->val_off;
    n->uri_len = a->val_len;
    n->in_hdr = 0;
    n->raw = a->raw;
    return NULL;
}

/* Which router attribute a qname is (XF_XML_TA_*), or -1. */
static int top_attr_index(const char *nm, uint32_t len)
{
    switch (len) {
    case 2:
        if (nm[0] == 't' && nm[1] == 'o') return XF_XML_TA_TO;
        if (nm[0] == 'i' && nm[1] == 'd') return XF_XML_TA_ID;
        return -1;
    case 4:
        if (eqn(nm, "from", 4)) return XF_XML_TA_FROM;
        if (eqn(nm, "type", 4)) return XF_XML_TA_TYPE;
        return -1;
    case 7: return eqn(nm, "version", 7) ? XF_XML_TA_VERSION : -1;
    case 8: return eqn(nm, "xml:lang", 8) ? XF_XML_TA_LANG : -1;
    default: return -1;
    }
}

/* Records the attributes the router reads (stanza element or stream header). */
static void top_attrs(xf_xml_tok *t, const char *ub)
{
    for (uint32_t i = 0; i < t->nattrs; i++) {
        const xf_xml_attr *a = &t->attrs[i];
        if (a->decl == 1) {
            t->top_attr[XF_XML_TA_CONTENT] = (xf_xml_loc){a->val_off, a->val_len, 1};
            if (a->raw) t->top_flags |= XF_XML_RAW_CONTENT;
            continue;
        }
        if (a->decl) continue;
        int k = top_attr_index(ub + a->name_off, a->name_len);
        if (k >= 0) {
            t->top_attr[k] = (xf_xml_loc){a->val_off, a->val_len, 1};
            if (a->raw) t->top_flags |= 1u << k;
        }
    }
}

/* Namespace processing of a complete start tag: declarations, prefixes, uniqueness. */
static const char *stag_namespaces(xf_xml_tok *t, const char *ub, int32_t *el_ns, int32_t *def,
                                   bool *limit)
{
    const char *e;
    for (uint32_t i = 0; i < t->nattrs; i++) {
        xf_xml_attr *a = &t->attrs[i];
        const char *nm = ub + a->name_off;
        a->decl = 0;
        a->ns = -1;
        if (a->colon == 0) {
            if (a->name_len == 5 && memcmp(nm, "xmlns", 5) == 0) a->decl = 1;
        } else if (a->colon == 5 && memcmp(nm, "xmlns", 5) == 0) {
            a->decl = 2;
        }
        if (a->decl == 0) continue;
        if (t->ns_len >= t->lim.ns_max) {
            *limit = true;
            return "too many namespace declarations";
        }
        if ((e = ns_declare(t, a, ub)) != NULL) return e;
        if (a->decl == 1) *def = (int32_t)t->ns_len - 1;
    }
    const char *en = ub + t->el_off;
    if (t->el_colon) {
        if (t->el_colon == 5 && memcmp(en, "xmlns", 5) == 0) return "element with the xmlns prefix";
        *el_ns = ns_lookup(t, en, t->el_colon);
        if (*el_ns == -1) return "undeclared element prefix";
        if (*el_ns >= 0 && t->ns[*el_ns].in_hdr && t->depth > 0) t->top_hdr_used = 1;
    } else {
        *el_ns = *def; /* inherited, or declared on this element */
        assert(*el_ns == ns_lookup(t, "", 0) || (*el_ns == -1 && ns_lookup(t, "", 0) == -1));
        if (*el_ns >= 0 && t->ns[*el_ns].uri_len == 0) *el_ns = -1; /* xmlns="" */
    }
    for (uint32_t i = 0; i < t->nattrs; i++) {
        xf_xml_attr *a = &t->attrs[i];
        if (a->decl || a->colon == 0) continue;
        a->ns = ns_lookup(t, ub + a->name_off, a->colon);
        if (a->ns == -1) return "undeclared attribute prefix";
        if (a->ns >= 0 && t->ns[a->ns].in_hdr && t->depth > 0) t->top_hdr_used = 1;
    }
    for (uint32_t i = 1; i < t->nattrs; i++) {
        const xf_xml_attr *a = &t->attrs[i];
        for (uint32_t j = 0; j < i; j++) {
            const xf_xml_attr *b = &t->attrs[j];
            if (a->key == b->key && a->name_len == b->name_len &&
                eqn(ub + a->name_off, ub + b->name_off, a->name_len)) {
                return "duplicate attribute";
            }
            if (a->ns < 0 && a->ns != XF_XML_NS_XML) continue;
            if (b->ns < 0 && b->ns != XF_XML_NS_XML) continue;
            uint32_t la = a->name_len - a->colon - 1u, lb = b->name_len - b->colon - 1u;
            if (la != lb ||
                !eqn(ub + a->name_off + a->colon + 1, ub + b->name_off + b->colon + 1, la)) {
                continue;
            }
            if (ns_same(t, a->ns, b->ns)) return "duplicate attribute after namespace resolution";
        }
    }
    return NULL;
}

static const char *unique_qnames(const xf_xml_tok *t, const char *ub)
{
    for (uint32_t i = 1; i < t->nattrs; i++) {
        const xf_xml_attr *a = &t->attrs[i];
        for (uint32_t j = 0; j < i; j++) {
            const xf_xml_attr *b = &t->attrs[j];
            if (a->key == b->key && a->name_len == b->name_len &&
                eqn(ub + a->name_off, ub + b->name_off, a->name_len)) {
                return "duplicate attribute";
            }
        }
    }
    return NULL;
}

static xf_xml_loc ns_loc(const xf_xml_tok *t, int32_t idx)
{
    if (idx == XF_XML_NS_XML) return (xf_xml_loc){0, sizeof ns_xml - 1, 3};
    if (idx < 0) return (xf_xml_loc){0, 0, 0};
    const xf_xml_ns *n = &t->ns[idx];
    return (xf_xml_loc){n->uri_off, n->uri_len, (uint8_t)(n->in_hdr ? 2 : 1)};
}

static void emit_header(xf_xml_tok *t, xf_xml_event *ev, uint32_t p)
{
    xf_xml_header *h = &ev->header;
    ev->type = XF_XML_EV_HEADER;
    ev->offset = (uint64_t)(t->buf_abs + t->unit);
    ev->length = p - t->unit;
    h->qname = (xf_xml_slice){t->hdr + t->top_off, t->top_len};
    xf_xml_loc *ta = t->top_attr;
    h->ns = loc_slice(t, &ta[XF_XML_TA_NS]);
    h->content_ns = loc_slice(t, &ta[XF_XML_TA_CONTENT]);
    h->to = loc_slice(t, &ta[XF_XML_TA_TO]);
    h->from = loc_slice(t, &ta[XF_XML_TA_FROM]);
    h->id = loc_slice(t, &ta[XF_XML_TA_ID]);
    h->version = loc_slice(t, &ta[XF_XML_TA_VERSION]);
    h->lang = loc_slice(t, &ta[XF_XML_TA_LANG]);
    h->flags = t->top_flags;
    h->decl_count = 0;
    for (uint32_t i = 0; i < t->ns_hdr; i++)
        h->decl_count += t->ns[i].prefix_len > 0;
}

/* The root start tag is complete: keep it in the header store for the stream's lifetime. */
static int root_done(xf_xml_tok *t, xf_xml_event *ev, uint32_t p, int32_t el_ns, bool empty)
{
    uint32_t n = p - t->unit;
    assert(n <= t->lim.header_bytes_max);
    memcpy(t->hdr, unit_base(t), n);
    t->hdr_len = n;
    for (uint32_t i = 0; i < t->ns_len; i++)
        t->ns[i].in_hdr = 1;
    t->ns_hdr = t->ns_len;
    memset(t->top_attr, 0, sizeof t->top_attr);
    t->top_flags = 0;
    top_attrs(t, unit_base(t));
    t->top_attr[XF_XML_TA_NS] = ns_loc(t, el_ns);
    for (uint32_t k = 0; k < XF_XML_TA_COUNT; k++) {
        if (t->top_attr[k].where == 1) t->top_attr[k].where = 2;
    }
    t->top_off = t->el_off;
    t->top_len = t->el_len;
    if (t->mode == XF_XML_STREAM) {
        const char *local = t->hdr + t->el_off + (t->el_colon ? t->el_colon + 1 : 0);
        uint32_t llen = t->el_len - (t->el_colon ? t->el_colon + 1 : 0);
        xf_xml_slice ns = loc_slice(t, &t->top_attr[XF_XML_TA_NS]);
        bool ok = llen == 6 && memcmp(local, "stream", 6) == 0 && el_ns >= 0 &&
                  value_eq(ns.ptr, ns.len, t->ns[el_ns].raw, ns_streams, sizeof ns_streams - 1);
        if (!ok) {
            return fail(t, ev, XF_XML_COND_INVALID_NAMESPACE, t->unit,
                        "root is not {http://etherx.jabber.org/streams}stream");
        }
    }
    emit_header(t, ev, p);
    if (empty) {
        t->root_done = 1;
        t->pending_end = 1;
        ev->length = p - t->unit;
    }
    t->state = empty ? ST_PROLOG : (t->mode == XF_XML_STREAM ? ST_WS1 : ST_TEXT);
    t->pos = unit_end(t, p);
    return XF_XML_EV_HEADER;
}

static void stanza_top(xf_xml_tok *t, int32_t el_ns)
{
    memset(t->top_attr, 0, sizeof t->top_attr);
    t->top_flags = 0;
    top_attrs(t, unit_base(t));
    t->top_attr[XF_XML_TA_NS] = ns_loc(t, el_ns);
    if (el_ns >= 0 && t->ns[el_ns].raw) t->top_flags |= XF_XML_RAW_NS;
    t->top_off = t->el_off;
    t->top_len = t->el_len;
    t->top_colon = t->el_colon;
}

static int emit_stanza(xf_xml_tok *t, xf_xml_event *ev, uint32_t p)
{
    xf_xml_stanza *s = &ev->stanza;
    const char *ub = unit_base(t);
    const xf_xml_loc *ta = t->top_attr;
    ev->type = XF_XML_EV_STANZA;
    ev->offset = (uint64_t)(t->buf_abs + t->unit);
    ev->length = p - t->unit;
    s->bytes = (xf_xml_slice){ub, p - t->unit};
    uint32_t lo = t->top_colon ? t->top_colon + 1 : 0;
    s->name = (xf_xml_slice){ub + t->top_off + lo, t->top_len - lo};
    s->prefix = (xf_xml_slice){ub + t->top_off, t->top_colon};
    s->ns = loc_slice(t, &ta[XF_XML_TA_NS]);
    s->to = loc_slice(t, &ta[XF_XML_TA_TO]);
    s->from = loc_slice(t, &ta[XF_XML_TA_FROM]);
    s->type = loc_slice(t, &ta[XF_XML_TA_TYPE]);
    s->id = loc_slice(t, &ta[XF_XML_TA_ID]);
    s->lang = loc_slice(t, &ta[XF_XML_TA_LANG]);
    s->flags = t->top_flags;
    s->spilled = t->in_spill;
    s->needs_reserialize = t->top_hdr_used;
    t->state = t->mode == XF_XML_STREAM ? ST_WS1 : ST_TEXT;
    t->pos = unit_end(t, p);
    return XF_XML_EV_STANZA;
}

/* A start tag ended at p ('>' consumed). Returns an event type, or 0 to go on. */
static int finish_stag(xf_xml_tok *t, xf_xml_event *ev, uint32_t p, bool empty)
{
    const char *ub = unit_base(t);
    uint32_t tag = t->unit + t->tag_rel;
    uint32_t ns_mark = t->ns_len;
    int32_t el_ns = -1;
    int32_t def = t->depth > 0 ? t->elems[t->depth - 1].def_ns : -1;
    bool limit = false;
    if (t->depth + 1 > t->lim.depth_max) {
        return fail(t, ev, XF_XML_COND_POLICY_VIOLATION, tag, "elements nested too deep");
    }
    if (t->depth == 1) t->top_hdr_used = 0;
    const char *e = NULL;
    if (t->tag_special == 0 && t->el_colon == 0) {
        /* No declarations, no prefixes: only qname uniqueness and the inherited default. */
        el_ns = def >= 0 && t->ns[def].uri_len > 0 ? def : -1;
        e = unique_qnames(t, ub);
    } else {
        e = stag_namespaces(t, ub, &el_ns, &def, &limit);
    }
    if (e != NULL) {
        xf_xml_cond c = limit ? XF_XML_COND_POLICY_VIOLATION : XF_XML_COND_NOT_WELL_FORMED;
        return fail(t, ev, c, tag, e);
    }
    uint32_t depth = t->depth;
    if (depth == 1) stanza_top(t, el_ns);
    if (!empty) {
        xf_xml_elem *el = &t->elems[depth];
        el->name_off = t->el_off;
        el->name_len = (uint16_t)t->el_len;
        el->colon = (uint16_t)t->el_colon;
        el->ns_mark = (uint16_t)ns_mark;
        el->def_ns = (int16_t)def;
        t->depth = depth + 1;
    }
    if (depth == 0) return root_done(t, ev, p, el_ns, empty);
    if (empty) {
        t->ns_len = ns_mark;
        if (depth == 1) return emit_stanza(t, ev, p);
    }
    t->state = ST_TEXT;
    t->pos = p;
    return 0;
}

/* An end tag ended at p. Returns an event type, or 0 to go on. */
static int finish_etag(xf_xml_tok *t, xf_xml_event *ev, uint32_t p)
{
    assert(t->depth > 0);
    const xf_xml_elem *el = &t->elems[t->depth - 1];
    t->ns_len = el->ns_mark;
    t->depth--;
    if (t->depth == 1) return emit_stanza(t, ev, p);
    if (t->depth == 0) {
        ev->type = XF_XML_EV_STREAM_END;
        ev->offset = (uint64_t)(t->buf_abs + t->unit);
        ev->length = p - t->unit;
        t->root_done = 1;
        t->ns_len = 0;
        t->state = ST_PROLOG;
        t->pos = unit_end(t, p);
        return XF_XML_EV_STREAM_END;
    }
    t->state = ST_TEXT;
    t->pos = p;
    return 0;
}

/* XML declaration d[0..n) = "<?xml ... ?>". Returns NULL or the error (offset in *at). */
static const char *decl_value(const uint8_t *v, uint32_t vl, uint32_t k, xf_xml_cond *cond)
{
    if (k == 0) {
        if (vl < 3 || v[0] != '1' || v[1] != '.') return "unsupported XML version";
        for (uint32_t j = 2; j < vl; j++) {
            if (v[j] < '0' || v[j] > '9') return "unsupported XML version";
        }
        return NULL;
    }
    if (k == 1) {
        if (vl == 0 || !(xf_xml_cls[v[0]] & XF_XML_C_NS) || v[0] == '_') {
            return "invalid encoding name";
        }
        for (uint32_t j = 1; j < vl; j++) {
            if (!(xf_xml_cls[v[j]] & XF_XML_C_NAME)) return "invalid encoding name";
        }
        static const char utf8[] = "utf-8";
        bool same = vl == 5;
        for (uint32_t j = 0; same && j < 5; j++)
            same = (v[j] | 0x20) == utf8[j];
        if (!same) {
            *cond = XF_XML_COND_UNSUPPORTED_ENCODING;
            return "encoding other than UTF-8";
        }
        return NULL;
    }
    if (vl == 3 && memcmp(v, "yes", 3) == 0) return NULL;
    if (vl == 2 && memcmp(v, "no", 2) == 0) return NULL;
    return "standalone must be yes or no";
}

static const char *parse_decl(const uint8_t *d, uint32_t n, uint32_t *at, xf_xml_cond *cond)
{
    static const char *const names[3] = {"version", "encoding", "standalone"};
    uint32_t i = 5, end = n - 2;
    *cond = XF_XML_COND_NOT_WELL_FORMED;
    assert(n >= 7 && d[end] == '?' && d[end + 1] == '>');
    for (uint32_t k = 0; k < 3; k++) {
        uint32_t j = i;
        while (j < end && (xf_xml_cls[d[j]] & XF_XML_C_WS))
            j++;
        size_t nl = strlen(names[k]);
        *at = j;
        if (j + nl > end || memcmp(d + j, names[k], nl) != 0) {
            if (k == 0) return "the XML declaration needs a version";
            continue;
        }
        if (j == i) return "missing white space in the XML declaration";
        j += (uint32_t)nl;
        while (j < end && (xf_xml_cls[d[j]] & XF_XML_C_WS))
            j++;
        *at = j;
        if (j >= end || d[j] != '=') return "malformed XML declaration";
        j++;
        while (j < end && (xf_xml_cls[d[j]] & XF_XML_C_WS))
            j++;
        *at = j;
        if (j >= end || (d[j] != '"' && d[j] != '\'')) return "malformed XML declaration";
        uint8_t q = d[j++];
        uint32_t vs = j;
        while (j < end && d[j] != q)
            j++;
        *at = j;
        if (j >= end) return "malformed XML declaration";
        *at = vs;
        const char *e = decl_value(d + vs, j - vs, k, cond);
        if (e != NULL) return e;
        i = j + 1;
    }
    while (i < end && (xf_xml_cls[d[i]] & XF_XML_C_WS))
        i++;
    *at = i;
    if (i != end) return "malformed XML declaration";
    return NULL;
}

/* Reference state machine: after '&' up to ';'. */
enum { REF_MORE, REF_DONE, REF_BAD, REF_RESTRICTED };

static int ref_step(xf_xml_tok *t, uint8_t c)
{
    uint32_t d;
    switch (t->ref_st) {
    case 0:
        if (c == '#') {
            t->ref_st = 2;
            return REF_MORE;
        }
        if (!(xf_xml_cls[c] & XF_XML_C_NS) && c != ':' && c < 0x80) return REF_BAD;
        t->ref_st = 1;
        t->ref_len = 1;
        t->ref_name[0] = (char)c;
        return REF_MORE;
    case 1:
        if (c == ';') {
            static const char *const five[5] = {"lt", "gt", "amp", "quot", "apos"};
            for (int i = 0; i < 5; i++) {
                size_t n = strlen(five[i]);
                if (t->ref_len == n && memcmp(t->ref_name, five[i], n) == 0) return REF_DONE;
            }
            return REF_RESTRICTED;
        }
        if (!(xf_xml_cls[c] & XF_XML_C_NAME) && c != ':' && c < 0x80) return REF_BAD;
        if (t->ref_len < 4) t->ref_name[t->ref_len] = (char)c;
        if (t->ref_len < 5) t->ref_len++;
        return REF_MORE;
    case 2:
        t->ref_cp = 0;
        if (c == 'x') {
            t->ref_st = 4;
            return REF_MORE;
        }
        t->ref_st = 3;
        /* fall through */
    case 3:
        if (c == ';' && t->ref_st == 3 && t->ref_len == 1) goto end;
        if (c < '0' || c > '9') return REF_BAD;
        t->ref_len = 1;
        t->ref_cp = t->ref_cp * 10 + (c - '0');
        if (t->ref_cp > 0x10FFFF) t->ref_cp = 0x110000;
        return REF_MORE;
    case 4:
    case 5:
        if (c == ';' && t->ref_st == 5) goto end;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            d = (uint32_t)((c | 0x20) - 'a' + 10);
        } else {
            return REF_BAD;
        }
        t->ref_st = 5;
        t->ref_cp = t->ref_cp * 16 + d;
        if (t->ref_cp > 0x10FFFF) t->ref_cp = 0x110000;
        return REF_MORE;
    }
    return REF_BAD;
end:
    d = t->ref_cp;
    if (d < 0x20) return (d == 9 || d == 10 || d == 13) ? REF_DONE : REF_BAD;
    if (d >= 0xD800 && d <= 0xDFFF) return REF_BAD;
    if (d == 0xFFFE || d == 0xFFFF || d > 0x10FFFF) return REF_BAD;
    return REF_DONE;
}

static void ref_begin(xf_xml_tok *t, uint8_t ret)
{
    t->ref_st = 0;
    t->ref_len = 0;
    t->ref_ret = ret;
}

static void name_begin(xf_xml_tok *t, uint32_t p)
{
    assert(t->u8.need == 0);
    t->name_start = p;
    t->name_colon = 0;
    t->name_first = 1;
}

/* Scans a QName from *pp. Returns 1 at its end (b[*pp] follows it), 0 when input ran out,
 * -1 on an invalid character (at *pp). At most one colon, not first or last. */
static inline int scan_name(xf_xml_tok *t, const uint8_t *b, uint32_t *pp, uint32_t lim)
{
    uint32_t p = *pp;
    int r;
    for (;;) {
        if (t->u8.need == 0) {
            if (t->name_first) {
                if (p >= lim) break;
                if (b[p] >= 0x80) goto multi;
                if (!(xf_xml_cls[b[p]] & XF_XML_C_NS)) goto bad;
                t->name_first = 0;
                p++;
            }
            while (p < lim && (xf_xml_cls[b[p]] & XF_XML_C_NAME))
                p++;
            if (p >= lim) break;
            uint8_t c = b[p];
            if (c == ':') {
                if (t->name_colon) goto bad;
                t->name_colon = p - t->name_start;
                t->name_first = 1;
                p++;
                continue;
            }
            if (c < 0x80) {
                *pp = p;
                return 1;
            }
        }
    multi:
        for (;;) {
            if (p >= lim) goto more;
            r = xf_xml_u8_step(&t->u8, b[p]);
            if (r < 0) goto bad;
            p++;
            if (r > 0) break;
        }
        t->nonascii_names++;
        if (t->name_first ? !xf_xml_name_start_cp(t->u8.cp) : !xf_xml_name_cp(t->u8.cp)) {
            p--;
            goto bad;
        }
        t->name_first = 0;
    }
more:
    *pp = p;
    return 0;
bad:
    *pp = p;
    return -1;
}

/* A complete, valid UTF-8 character other than U+FFFE/U+FFFF at s (4 bytes readable): its
 * length, else 0 (then the resumable decoder finds the exact error or waits for input). */
static inline uint32_t u8_fast(const uint8_t *s)
{
    uint8_t c = s[0];
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] > 0x9F) return 0;
        if (c == 0xEF && s[1] == 0xBF && s[2] >= 0xBE) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] > 0x8F) return 0;
        return 4;
    }
    return 0;
}

/* A complete reference at s ('&', n bytes readable): the five entities and character
 * references of valid characters. Returns its length, else 0 (the resumable path decides). */
static inline uint32_t ref_fast(const uint8_t *s, uint32_t n)
{
    if (n >= 4 && s[2] == 't' && s[3] == ';' && (s[1] == 'l' || s[1] == 'g')) return 4;
    if (n >= 5 && s[1] == 'a' && s[2] == 'm' && s[3] == 'p' && s[4] == ';') return 5;
    if (n >= 6 && s[5] == ';') {
        if (s[1] == 'q' && s[2] == 'u' && s[3] == 'o' && s[4] == 't') return 6;
        if (s[1] == 'a' && s[2] == 'p' && s[3] == 'o' && s[4] == 's') return 6;
    }
    if (n < 4 || s[1] != '#') return 0;
    uint32_t cp = 0, i = 2;
    if (s[2] == 'x') {
        for (i = 3; i < n && i < 10; i++) {
            uint8_t c = s[i], d;
            if (c >= '0' && c <= '9') {
                d = (uint8_t)(c - '0');
            } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
                d = (uint8_t)((c | 0x20) - 'a' + 10);
            } else {
                break;
            }
            cp = cp * 16 + d;
        }
        if (i == 3) return 0;
    } else {
        for (; i < n && i < 9 && s[i] >= '0' && s[i] <= '9'; i++)
            cp = cp * 10 + (s[i] - '0');
        if (i == 2) return 0;
    }
    if (i >= n || s[i] != ';') return 0;
    if (cp < 0x20 ? (cp != 9 && cp != 10 && cp != 13) : (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    if (cp == 0xFFFE || cp == 0xFFFF || cp > 0x10FFFF) return 0;
    return i + 1;
}

/* The common name: ASCII, at most one colon, wholly in the buffer. Returns its end (the
 * terminator is at b[end]) and the prefix length in *colon, or 0 for the general path. */
static inline uint32_t name_fast(const uint8_t *b, uint32_t p, uint32_t lim, uint32_t *colon)
{
    uint32_t q = p;
    *colon = 0;
    if (q >= lim || !(xf_xml_cls[b[q]] & XF_XML_C_NS)) return 0;
    q++;
    while (q < lim && (xf_xml_cls[b[q]] & XF_XML_C_NAME))
        q++;
    if (q < lim && b[q] == ':') {
        *colon = q - p;
        q++;
        if (q >= lim || !(xf_xml_cls[b[q]] & XF_XML_C_NS)) return 0;
        q++;
        while (q < lim && (xf_xml_cls[b[q]] & XF_XML_C_NAME))
            q++;
    }
    if (q >= lim || b[q] >= 0x80 || b[q] == ':') return 0;
    return q;
}

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#define SUSPEND(st)                                                                                \
    do {                                                                                           \
        t->state = (st);                                                                           \
        t->pos = p;                                                                                \
        goto suspend;                                                                              \
    } while (0)

#define FAIL(cond, at, msg) return fail(t, ev, (cond), (at), (msg))
#define NWF                 XF_XML_COND_NOT_WELL_FORMED

static inline bool is_ws(uint8_t c)
{
    return (xf_xml_cls[c] & XF_XML_C_WS) != 0;
}

static inline bool ctrl_ok(uint8_t c)
{
    return c == '\t' || c == '\n' || c == '\r';
}

/* The state machine. Returns an event type, or RUN_EOB when the buffer is exhausted. */
static int run(xf_xml_tok *t, xf_xml_event *ev)
{
    const uint8_t *b;
    uint32_t p, lim;
    uint8_t c;
    int r;

dispatch:
    b = (const uint8_t *)t->buf;
    p = t->pos;
    lim = t->lim_pos;
    switch (t->state) {
    case ST_START: goto st_start;
    case ST_PROLOG: goto st_prolog;
    case ST_DECL: goto st_decl;
    case ST_LT: goto st_lt;
    case ST_STAG_NAME: goto st_stag_name;
    case ST_TAG: goto st_tag;
    case ST_ATTR_NAME: goto st_attr_name;
    case ST_ATTR_EQ: goto st_attr_eq;
    case ST_ATTR_Q: goto st_attr_q;
    case ST_ATTR_VAL: goto st_attr_val;
    case ST_ATTR_U8: goto st_attr_u8;
    case ST_EMPTY: goto st_empty;
    case ST_ETAG: goto st_etag;
    case ST_ETAG_WS: goto st_etag_ws;
    case ST_BANG: goto st_bang;
    case ST_CDATA_OPEN: goto st_cdata_open;
    case ST_CDATA: goto st_cdata;
    case ST_CDATA_BR: goto st_cdata_br;
    case ST_CDATA_U8: goto st_cdata_u8;
    case ST_TEXT: goto st_text;
    case ST_TEXT_BR: goto st_text_br;
    case ST_TEXT_U8: goto st_text_u8;
    case ST_REF: goto st_ref;
    case ST_WS1: goto st_ws1;
    default: assert(0); return RUN_EOB;
    }

st_start:
    if (UNLIKELY(p >= lim)) SUSPEND(ST_START);
    if (t->bom_k < 3 && (t->bom_k > 0 || b[p] == 0xEF)) {
        static const uint8_t bom[3] = {0xEF, 0xBB, 0xBF};
        if (b[p] != bom[t->bom_k]) FAIL(NWF, p, "invalid UTF-8");
        p++;
        t->bom_k++;
        goto st_start;
    }
    t->bom_k = 3;
    if (b[p] == '<') {
        unit_begin(t, p, t->lim.header_bytes_max);
        lim = t->lim_pos;
        t->decl_ok = 1;
        p++;
        goto st_lt;
    }
    goto st_prolog;

st_prolog:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_PROLOG);
        c = b[p];
        if (is_ws(c)) {
            p++;
            continue;
        }
        if (c != '<') FAIL(NWF, p, "text outside the root element");
        unit_begin(t, p, t->lim.header_bytes_max);
        lim = t->lim_pos;
        p++;
        goto st_lt;
    }

st_decl:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_DECL);
        c = b[p++];
        if (c == '>' && t->k) break;
        t->k = c == '?';
    }
    {
        const uint8_t *d = b + t->unit;
        uint32_t n = p - t->unit, at = 0;
        xf_xml_cond cond;
        bool target = n >= 7 && memcmp(d, "<?xml", 5) == 0 && (is_ws(d[5]) || d[5] == '?');
        if (!target) FAIL(XF_XML_COND_RESTRICTED_XML, t->unit, "processing instruction");
        const char *e = parse_decl(d, n, &at, &cond);
        if (e != NULL) FAIL(cond, t->unit + at, e);
        t->pos = unit_end(t, p);
        t->state = ST_PROLOG;
        goto dispatch;
    }

st_lt:
    if (UNLIKELY(p >= lim)) SUSPEND(ST_LT);
    c = b[p];
    t->tag_rel = p - 1 - t->unit;
    if ((xf_xml_cls[c] & XF_XML_C_NS) || c >= 0x80) {
        t->decl_ok = 0;
        if (t->depth == 0 && t->root_done) FAIL(NWF, p - 1, "content after the root element");
        name_begin(t, p);
        goto st_stag_name;
    }
    if (c == '?') {
        if (t->decl_ok) {
            t->decl_ok = 0;
            t->k = 0;
            p++;
            goto st_decl;
        }
        FAIL(XF_XML_COND_RESTRICTED_XML, p - 1, "processing instruction");
    }
    t->decl_ok = 0;
    if (c == '/') {
        if (t->depth == 0) FAIL(NWF, p - 1, "end tag outside the root element");
        t->etag_k = 0;
        p++;
        goto st_etag;
    }
    if (c == '!') {
        p++;
        goto st_bang;
    }
    FAIL(NWF, p, "invalid character after '<'");

st_stag_name:
    if (t->name_first && p == t->name_start) {
        uint32_t colon, q = name_fast(b, p, lim, &colon);
        if (q != 0) {
            t->name_colon = colon;
            t->name_first = 0;
            p = q;
            goto stag_name_done;
        }
    }
    r = scan_name(t, b, &p, lim);
    if (r == 0) SUSPEND(ST_STAG_NAME);
    if (r < 0) FAIL(NWF, p, "invalid character in element name");
stag_name_done:
    if (p - t->name_start > t->lim.name_bytes_max) {
        FAIL(XF_XML_COND_POLICY_VIOLATION, t->name_start, "element name too long");
    }
    t->el_off = t->name_start - t->unit;
    t->el_len = p - t->name_start;
    t->el_colon = t->name_colon;
    t->nattrs = 0;
    t->tag_special = 0;
    t->had_ws = 0;
    goto st_tag;

st_tag:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_TAG);
        c = b[p];
        if (is_ws(c)) {
            t->had_ws = 1;
            p++;
            continue;
        }
        if (c == '>') {
            p++;
            /* Fast path: inside a stanza, an unprefixed element whose attributes are neither
             * prefixed nor declarations needs no namespace work (it inherits its parent's
             * default namespace), only the qname uniqueness check. */
            if (t->tag_special == 0 && t->el_colon == 0 && t->depth >= 2 &&
                t->depth < t->lim.depth_max) {
                if (t->nattrs > 1 && unique_qnames(t, (const char *)b + t->unit) != NULL) {
                    FAIL(NWF, t->unit + t->tag_rel, "duplicate attribute");
                }
                xf_xml_elem *el = &t->elems[t->depth];
                el->name_off = t->el_off;
                el->name_len = (uint16_t)t->el_len;
                el->colon = 0;
                el->ns_mark = (uint16_t)t->ns_len;
                el->def_ns = t->elems[t->depth - 1].def_ns;
                t->depth++;
                goto st_text;
            }
            r = finish_stag(t, ev, p, false);
            if (r != 0) return r;
            goto dispatch;
        }
        if (c == '/') {
            p++;
            goto st_empty;
        }
        if (!(xf_xml_cls[c] & XF_XML_C_NS) && c < 0x80) FAIL(NWF, p, "invalid character in tag");
        if (!t->had_ws) FAIL(NWF, p, "missing white space before an attribute");
        name_begin(t, p);
        goto st_attr_name;
    }

st_attr_name:
    if (t->name_first && p == t->name_start) {
        uint32_t colon, q = name_fast(b, p, lim, &colon);
        if (q != 0) {
            t->name_colon = colon;
            t->name_first = 0;
            p = q;
            goto attr_name_done;
        }
    }
    r = scan_name(t, b, &p, lim);
    if (r == 0) SUSPEND(ST_ATTR_NAME);
    if (r < 0) FAIL(NWF, p, "invalid character in attribute name");
attr_name_done : {
    /* Locals: stores through a (uint32_t fields) could alias t's fields otherwise. */
    uint32_t start = t->name_start, colon = t->name_colon, k = t->nattrs;
    uint32_t n = p - start;
    if (n > t->lim.name_bytes_max) {
        FAIL(XF_XML_COND_POLICY_VIOLATION, start, "attribute name too long");
    }
    if (k >= t->lim.attrs_max) FAIL(XF_XML_COND_POLICY_VIOLATION, start, "too many attributes");
    if (colon != 0 || (n == 5 && eqn(b + start, "xmlns", 5))) t->tag_special++;
    xf_xml_attr *a = &t->attrs[k];
    *a = (xf_xml_attr){.name_off = start - t->unit,
                       .key = n ^ ((uint32_t)b[start] << 16) ^ ((uint32_t)b[p - 1] << 24),
                       .ns = -1,
                       .name_len = (uint16_t)n,
                       .colon = (uint16_t)colon};
}
    if (lim - p >= 2 && b[p] == '=' && (b[p + 1] == '"' || b[p + 1] == '\'')) { /* name="v" */
        t->quote = b[p + 1];
        p += 2;
        t->val_start = p;
        t->val_raw = 0;
        goto st_attr_val;
    }
    goto st_attr_eq;

st_attr_eq:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_ATTR_EQ);
        c = b[p];
        if (is_ws(c)) {
            p++;
            continue;
        }
        if (c != '=') FAIL(NWF, p, "expected '=' after the attribute name");
        p++;
        goto st_attr_q;
    }

st_attr_q:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_ATTR_Q);
        c = b[p];
        if (is_ws(c)) {
            p++;
            continue;
        }
        if (c != '"' && c != '\'') FAIL(NWF, p, "expected a quoted attribute value");
        t->quote = c;
        p++;
        t->val_start = p;
        t->val_raw = 0;
        goto st_attr_val;
    }

st_attr_val:
    for (;;) {
        p = xf_xml_scan_av(b, p, lim, t->quote);
        if (UNLIKELY(p >= lim)) SUSPEND(ST_ATTR_VAL);
        c = b[p];
        if (c == t->quote) {
            xf_xml_attr *a = &t->attrs[t->nattrs++];
            a->val_off = t->val_start - t->unit;
            a->val_len = p - t->val_start;
            a->raw = t->val_raw;
            t->had_ws = 0;
            p++;
            goto st_tag;
        }
        if (c == '&') {
            t->val_raw = 1;
            if ((r = (int)ref_fast(b + p, lim - p)) != 0) {
                p += (uint32_t)r;
                continue;
            }
            ref_begin(t, ST_ATTR_VAL);
            p++;
            goto st_ref;
        }
        if (c == '<') FAIL(NWF, p, "'<' in an attribute value");
        if (c < 0x20) {
            if (!ctrl_ok(c)) FAIL(NWF, p, "control character");
            t->val_raw = 1;
            p++;
            continue;
        }
        if (c < 0x80) { /* the other quote */
            p++;
            continue;
        }
        if (lim - p >= 4 && (r = (int)u8_fast(b + p)) != 0) {
            p += (uint32_t)r;
            continue;
        }
        goto st_attr_u8;
    }

st_attr_u8:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_ATTR_U8);
        r = xf_xml_u8_step(&t->u8, b[p]);
        if (r < 0) FAIL(NWF, p, "invalid UTF-8");
        p++;
        if (r > 0) {
            if (!xf_xml_char_ok(t->u8.cp)) FAIL(NWF, p - 1, "character not allowed in XML");
            goto st_attr_val;
        }
    }

st_empty:
    if (UNLIKELY(p >= lim)) SUSPEND(ST_EMPTY);
    if (b[p] != '>') FAIL(NWF, p, "expected '>' after '/'");
    p++;
    if (t->tag_special == 0 && t->el_colon == 0 && t->depth >= 2 && t->depth < t->lim.depth_max) {
        if (t->nattrs > 1 && unique_qnames(t, (const char *)b + t->unit) != NULL) {
            FAIL(NWF, t->unit + t->tag_rel, "duplicate attribute");
        }
        goto st_text; /* as above, and nothing to push */
    }
    r = finish_stag(t, ev, p, true);
    if (r != 0) return r;
    goto dispatch;

st_etag:
    assert(t->depth > 0);
    {
        const xf_xml_elem *el = &t->elems[t->depth - 1];
        const uint8_t *nm = (const uint8_t *)(t->depth == 1 ? t->hdr : (const char *)b + t->unit);
        nm += el->name_off;
        uint32_t k = t->etag_k, n = el->name_len;
        if (k == 0 && lim - p >= n && eqn(b + p, nm, n)) {
            p += n;
            goto st_etag_ws;
        }
        for (; k < n; k++, p++) {
            if (p >= lim) {
                t->etag_k = k;
                SUSPEND(ST_ETAG);
            }
            if (b[p] != nm[k]) FAIL(NWF, p, "end tag does not match the start tag");
        }
        goto st_etag_ws;
    }

st_etag_ws:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_ETAG_WS);
        c = b[p];
        if (is_ws(c)) {
            p++;
            continue;
        }
        if (c != '>') FAIL(NWF, p, "end tag does not match the start tag");
        p++;
        r = finish_etag(t, ev, p);
        if (r != 0) return r;
        goto dispatch;
    }

st_bang:
    if (UNLIKELY(p >= lim)) SUSPEND(ST_BANG);
    c = b[p];
    if (c == '-') FAIL(XF_XML_COND_RESTRICTED_XML, p - 2, "comment");
    if (c == 'D') FAIL(XF_XML_COND_RESTRICTED_XML, p - 2, "document type declaration");
    if (c != '[' || t->depth == 0) FAIL(NWF, p, "invalid markup declaration");
    if (t->depth == 1 && t->mode == XF_XML_STREAM) {
        FAIL(XF_XML_COND_BAD_FORMAT, p - 2, "CDATA at stream level");
    }
    t->k = 0;
    goto st_cdata_open;

st_cdata_open:
    while (t->k < 7) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_CDATA_OPEN);
        if (b[p] != (uint8_t) "[CDATA["[t->k]) FAIL(NWF, p, "invalid CDATA section");
        p++;
        t->k++;
    }
    t->brk = 0;
    if (t->depth == 1) { /* root level in document mode: the text needs no retention */
        t->pos = unit_end(t, p);
        t->state = ST_CDATA;
        goto dispatch;
    }
    goto st_cdata;

st_cdata:
    for (;;) {
        p = xf_xml_scan_cd(b, p, lim);
        if (UNLIKELY(p >= lim)) SUSPEND(ST_CDATA);
        c = b[p];
        if (c == ']') goto st_cdata_br;
        if (c < 0x20) {
            if (!ctrl_ok(c)) FAIL(NWF, p, "control character");
            p++;
            continue;
        }
        if (lim - p >= 4 && (r = (int)u8_fast(b + p)) != 0) {
            p += (uint32_t)r;
            continue;
        }
        goto st_cdata_u8;
    }

st_cdata_br:
    while (p < lim && b[p] == ']') {
        if (t->brk < 2) t->brk++;
        p++;
    }
    if (UNLIKELY(p >= lim)) SUSPEND(ST_CDATA_BR);
    if (b[p] == '>' && t->brk == 2) {
        t->brk = 0;
        p++;
        goto st_text;
    }
    t->brk = 0;
    goto st_cdata;

st_cdata_u8:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_CDATA_U8);
        r = xf_xml_u8_step(&t->u8, b[p]);
        if (r < 0) FAIL(NWF, p, "invalid UTF-8");
        p++;
        if (r > 0) {
            if (!xf_xml_char_ok(t->u8.cp)) FAIL(NWF, p - 1, "character not allowed in XML");
            goto st_cdata;
        }
    }

st_text:
    for (;;) {
        uint32_t q = xf_xml_scan_text(b, p, lim);
        if (q != p) t->brk = 0;
        p = q;
        if (UNLIKELY(p >= lim)) SUSPEND(ST_TEXT);
        c = b[p];
        if (c == '<') {
            if (t->depth == 1) {
                unit_begin(t, p, t->lim.stanza_bytes_max);
                lim = t->lim_pos;
            }
            p++;
            goto st_lt;
        }
        if (c == ']') goto st_text_br;
        t->brk = 0;
        if (c == '&') {
            if ((r = (int)ref_fast(b + p, lim - p)) != 0) {
                p += (uint32_t)r;
                continue;
            }
            ref_begin(t, ST_TEXT);
            p++;
            goto st_ref;
        }
        if (c < 0x20) {
            if (!ctrl_ok(c)) FAIL(NWF, p, "control character");
            p++;
            continue;
        }
        if (lim - p >= 4 && (r = (int)u8_fast(b + p)) != 0) {
            p += (uint32_t)r;
            continue;
        }
        goto st_text_u8;
    }

st_text_br:
    while (p < lim && b[p] == ']') {
        if (t->brk < 2) t->brk++;
        p++;
    }
    if (UNLIKELY(p >= lim)) SUSPEND(ST_TEXT_BR);
    if (b[p] == '>' && t->brk == 2) FAIL(NWF, p, "']]>' in character data");
    t->brk = 0;
    goto st_text;

st_text_u8:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_TEXT_U8);
        r = xf_xml_u8_step(&t->u8, b[p]);
        if (r < 0) FAIL(NWF, p, "invalid UTF-8");
        p++;
        if (r > 0) {
            if (!xf_xml_char_ok(t->u8.cp)) FAIL(NWF, p - 1, "character not allowed in XML");
            goto st_text;
        }
    }

st_ref:
    for (;;) {
        if (UNLIKELY(p >= lim)) SUSPEND(ST_REF);
        r = ref_step(t, b[p]);
        if (r == REF_BAD) FAIL(NWF, p, "invalid reference");
        if (r == REF_RESTRICTED) {
            FAIL(XF_XML_COND_RESTRICTED_XML, p, "entity other than the predefined five");
        }
        p++;
        if (r == REF_DONE) break;
    }
    if (t->ref_ret == ST_TEXT) goto st_text;
    goto st_attr_val;

st_ws1:
    for (;;) {
        uint32_t q = p;
        while (p < lim && is_ws(b[p]))
            p++;
        if (p > q) {
            if (t->ka_len == 0) t->ka_abs = t->buf_abs + q;
            t->ka_len += p - q;
        }
        if (UNLIKELY(p >= lim)) SUSPEND(ST_WS1);
        if (t->ka_len) { /* report the run before whatever ends it, even an error */
            ev->type = XF_XML_EV_KEEPALIVE;
            ev->offset = (uint64_t)t->ka_abs;
            ev->length = t->ka_len;
            t->ka_len = 0;
            t->pos = p;
            t->state = ST_WS1;
            return XF_XML_EV_KEEPALIVE;
        }
        if (b[p] != '<') FAIL(XF_XML_COND_BAD_FORMAT, p, "text at stream level");
        unit_begin(t, p, t->lim.stanza_bytes_max);
        lim = t->lim_pos;
        p++;
        goto st_lt;
    }

suspend:
    if (t->lim_pos < t->end || (t->in_spill && t->end - t->spill_at < t->chunk_len)) {
        if (t->depth == 0) {
            FAIL(XF_XML_COND_POLICY_VIOLATION, p, "stream header too big");
        }
        r = fail(t, ev, XF_XML_COND_POLICY_VIOLATION, p, "stanza too big");
        ev->error.stanza_too_big = true;
        t->err.stanza_too_big = true;
        return r;
    }
    return RUN_EOB;
}

xf_xml_event_type xf_xml_next(xf_xml_tok *t, xf_xml_event *ev)
{
    if (t->state == ST_ERROR) {
        ev->type = XF_XML_EV_ERROR;
        ev->offset = (uint64_t)t->err_abs;
        ev->length = 0;
        ev->error = t->err;
        return XF_XML_EV_ERROR;
    }
    if (t->pending_end) {
        t->pending_end = 0;
        ev->type = XF_XML_EV_STREAM_END;
        ev->offset = (uint64_t)(t->buf_abs + t->pos);
        ev->length = 0;
        return XF_XML_EV_STREAM_END;
    }
    int r = run(t, ev);
    if (r != RUN_EOB) return (xf_xml_event_type)r;
    assert(t->pos == t->end);
    if (t->state == ST_WS1 && t->ka_len) {
        ev->type = XF_XML_EV_KEEPALIVE;
        ev->offset = (uint64_t)t->ka_abs;
        ev->length = t->ka_len;
        t->ka_len = 0;
        return XF_XML_EV_KEEPALIVE;
    }
    if (!t->in_spill && t->unit != XF_XML_NONE) spill_unit(t);
    ev->type = XF_XML_EV_NONE;
    return XF_XML_EV_NONE;
}

xf_xml_event_type xf_xml_finish(xf_xml_tok *t, xf_xml_event *ev)
{
    if (t->state == ST_ERROR) return xf_xml_next(t, ev);
    if (t->pending_end) return xf_xml_next(t, ev);
    if (t->root_done && t->state == ST_PROLOG && t->unit == XF_XML_NONE) {
        ev->type = XF_XML_EV_NONE;
        return XF_XML_EV_NONE;
    }
    return (xf_xml_event_type)fail(t, ev, NWF, t->end, "unexpected end of input");
}

bool xf_xml_header_ns(const xf_xml_tok *t, const char *prefix, uint32_t prefix_len,
                      xf_xml_slice *uri)
{
    for (uint32_t i = t->ns_hdr; i-- > 0;) {
        const xf_xml_ns *n = &t->ns[i];
        assert(n->in_hdr);
        if (n->prefix_len == prefix_len &&
            memcmp(t->hdr + n->prefix_off, prefix, prefix_len) == 0) {
            *uri = (xf_xml_slice){t->hdr + n->uri_off, n->uri_len};
            return true;
        }
    }
    return false;
}

bool xf_xml_header_decl(const xf_xml_tok *t, uint32_t i, xf_xml_slice *prefix, xf_xml_slice *uri)
{
    for (uint32_t k = 0; k < t->ns_hdr; k++) {
        const xf_xml_ns *n = &t->ns[k];
        if (n->prefix_len == 0) continue;
        if (i-- == 0) {
            *prefix = (xf_xml_slice){t->hdr + n->prefix_off, n->prefix_len};
            *uri = (xf_xml_slice){t->hdr + n->uri_off, n->uri_len};
            return true;
        }
    }
    return false;
}
