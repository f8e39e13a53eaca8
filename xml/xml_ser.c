/* xml_ser.c: canonical re-serialisation of a validated stanza (see xml_ser.h).
 *
 * The input was accepted by the tokenizer, so this walker trusts its syntax and only splits it
 * into tags and text; it never recurses and writes into a bounded buffer.
 */
#include "xml_ser.h"

#include <assert.h>
#include <string.h>

#include "xml_dec.h"

typedef struct ser_out {
    char *p;
    size_t len, cap;
    bool overflow;
} ser_out;

typedef struct ser_ns { /* a prefix in scope in the output */
    const char *prefix, *uri;
    uint32_t prefix_len, uri_len;
    uint32_t depth;
} ser_ns;

typedef struct ser_attr {
    const char *name, *val;
    uint32_t name_len, val_len;
} ser_attr;

typedef struct ser {
    const xf_xml_tok *t;
    const xf_xml_ser_opts *o;
    ser_out out;
    ser_ns ns[XF_XML_SER_NS_MAX];
    uint32_t ns_len;
    uint32_t depth;
    uint32_t skip_depth; /* > 0 while inside a dropped child */
    bool open;           /* a start tag waits for '>' or '/>' */
} ser;

static void put(ser_out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) {
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* Decodes raw with mode, then escapes for an attribute value (attr) or for text. */
static void put_escaped(ser_out *o, const char *raw, uint32_t len, xf_xml_dec_mode mode, bool attr)
{
    xf_xml_dec d;
    int c;
    xf_xml_dec_init(&d, raw, len, mode);
    while ((c = xf_xml_dec_next(&d)) >= 0) {
        const char *e = NULL;
        if (c == '&') e = "&amp;";
        if (c == '<') e = "&lt;";
        if (c == '\r') e = "&#xD;";
        if (attr) {
            if (c == '"') e = "&quot;";
            if (c == '\t') e = "&#x9;";
            if (c == '\n') e = "&#xA;";
        } else if (c == '>') {
            e = "&gt;";
        }
        if (e != NULL) {
            put(o, e, strlen(e));
        } else {
            char ch = (char)c;
            put(o, &ch, 1);
        }
    }
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static uint32_t name_end(const char *p, const char *e)
{
    const char *q = p;
    while (q < e && !is_ws(*q) && *q != '/' && *q != '>' && *q != '=')
        q++;
    return (uint32_t)(q - p);
}

static uint32_t prefix_len(const char *name, uint32_t len)
{
    const char *c = memchr(name, ':', len);
    return c ? (uint32_t)(c - name) : 0;
}

/* Is this prefix bound in the output scope? */
static const ser_ns *scope_find(const ser *s, const char *p, uint32_t len)
{
    for (uint32_t i = s->ns_len; i-- > 0;) {
        if (s->ns[i].prefix_len == len && memcmp(s->ns[i].prefix, p, len) == 0) return &s->ns[i];
    }
    return NULL;
}

static bool scope_push(ser *s, const char *p, uint32_t plen, const char *uri, uint32_t ulen)
{
    if (s->ns_len >= XF_XML_SER_NS_MAX) return false;
    s->ns[s->ns_len++] = (ser_ns){p, uri, plen, ulen, s->depth};
    return true;
}

/* Namespace of a prefix for the drop filter: output scope first, then the stream header. */
static bool resolve(const ser *s, const char *p, uint32_t len, xf_xml_slice *uri)
{
    const ser_ns *n = scope_find(s, p, len);
    if (n != NULL) {
        *uri = (xf_xml_slice){n->uri, n->uri_len};
        return true;
    }
    return xf_xml_header_ns(s->t, p, len, uri);
}

/* Parses the attributes of a start tag at p (after the name); returns the tag end. *n is the
 * number of attributes, of which the first max are stored. */
static const char *parse_attrs(const char *p, const char *e, ser_attr *a, uint32_t *n, uint32_t max,
                               bool *empty)
{
    *n = 0;
    for (;;) {
        while (p < e && is_ws(*p))
            p++;
        assert(p < e);
        if (*p == '>') {
            *empty = false;
            return p + 1;
        }
        if (*p == '/') {
            *empty = true;
            return p + 2;
        }
        ser_attr at;
        at.name = p;
        at.name_len = name_end(p, e);
        p += at.name_len;
        while (is_ws(*p) || *p == '=')
            p++;
        char q = *p++;
        at.val = p;
        while (*p != q)
            p++;
        at.val_len = (uint32_t)(p - at.val);
        p++;
        if (*n < max) a[*n] = at;
        (*n)++;
    }
}

static bool drop_child(const ser *s, const char *name, uint32_t len, const ser_attr *a, uint32_t n)
{
    const xf_xml_ser_opts *o = s->o;
    if (o->drop_local == NULL || s->depth != 1) return false;
    uint32_t pl = prefix_len(name, len);
    uint32_t lo = pl ? pl + 1 : 0;
    if (len - lo != strlen(o->drop_local) || memcmp(name + lo, o->drop_local, len - lo) != 0) {
        return false;
    }
    if (o->drop_ns == NULL) return true;
    xf_xml_slice uri = {NULL, 0};
    for (uint32_t i = 0; i < n && pl == 0; i++) { /* its own default declaration */
        if (a[i].name_len == 5 && memcmp(a[i].name, "xmlns", 5) == 0) {
            uri = (xf_xml_slice){a[i].val, a[i].val_len};
        }
    }
    if (uri.ptr == NULL && !resolve(s, name, pl, &uri)) return false;
    return xf_xml_decoded_eq(uri, o->drop_ns, strlen(o->drop_ns));
}

static void put_attr(ser_out *out, const char *name, uint32_t nlen, const char *val, uint32_t vlen,
                     xf_xml_dec_mode mode)
{
    put(out, " ", 1);
    put(out, name, nlen);
    put(out, "=\"", 2);
    put_escaped(out, val, vlen, mode, true);
    put(out, "\"", 1);
}

/* Declares a header-bound prefix on the current element unless already in scope. */
static bool need_prefix(ser *s, const char *p, uint32_t len)
{
    if (len == 0 || (len == 3 && memcmp(p, "xml", 3) == 0)) return true;
    if (scope_find(s, p, len) != NULL) return true;
    xf_xml_slice uri;
    if (!xf_xml_header_ns(s->t, p, len, &uri)) return false;
    put(&s->out, " xmlns:", 7);
    put(&s->out, p, len);
    put(&s->out, "=\"", 2);
    put_escaped(&s->out, uri.ptr, uri.len, XF_XML_DEC_ATTR, true);
    put(&s->out, "\"", 1);
    return scope_push(s, p, len, uri.ptr, uri.len);
}

static bool start_tag(ser *s, const char *name, uint32_t nlen, ser_attr *a, uint32_t n)
{
    bool top = s->depth == 1, stamped = false; /* depth counts this element */
    put(&s->out, "<", 1);
    put(&s->out, name, nlen);
    for (uint32_t i = 0; i < n; i++) { /* the element's own declarations come first */
        bool decl = a[i].name_len >= 5 && memcmp(a[i].name, "xmlns", 5) == 0 &&
                    (a[i].name_len == 5 || a[i].name[5] == ':');
        if (!decl) continue;
        if (top && s->o->drop_top_xmlns && a[i].name_len == 5) continue;
        uint32_t pl = a[i].name_len == 5 ? 0 : a[i].name_len - 6;
        if (!scope_push(s, a[i].name + a[i].name_len - pl, pl, a[i].val, a[i].val_len)) {
            return false;
        }
        put_attr(&s->out, a[i].name, a[i].name_len, a[i].val, a[i].val_len, XF_XML_DEC_ATTR);
    }
    if (!need_prefix(s, name, prefix_len(name, nlen))) return false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pl = prefix_len(a[i].name, a[i].name_len);
        if (pl == 5 && memcmp(a[i].name, "xmlns", 5) == 0) continue;
        if (a[i].name_len == 5 && memcmp(a[i].name, "xmlns", 5) == 0) continue;
        if (!need_prefix(s, a[i].name, pl)) return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pl = prefix_len(a[i].name, a[i].name_len);
        if (pl == 5 && memcmp(a[i].name, "xmlns", 5) == 0) continue;
        if (a[i].name_len == 5 && memcmp(a[i].name, "xmlns", 5) == 0) continue;
        if (top && s->o->from.ptr != NULL && a[i].name_len == 4 &&
            memcmp(a[i].name, "from", 4) == 0) {
            put_attr(&s->out, "from", 4, s->o->from.ptr, s->o->from.len, XF_XML_DEC_CDATA);
            stamped = true;
            continue;
        }
        put_attr(&s->out, a[i].name, a[i].name_len, a[i].val, a[i].val_len, XF_XML_DEC_ATTR);
    }
    if (top && s->o->from.ptr != NULL && !stamped) {
        put_attr(&s->out, "from", 4, s->o->from.ptr, s->o->from.len, XF_XML_DEC_CDATA);
    }
    s->open = true;
    return true;
}

static void close_open(ser *s)
{
    if (s->open) put(&s->out, ">", 1);
    s->open = false;
}

/* Handles one tag at p ('<'); returns the position after it, or NULL on a bound. */
static const char *tag(ser *s, const char *p, const char *e)
{
    ser_attr a[XF_XML_SER_NS_MAX];
    if (p[1] == '/') { /* end tag */
        uint32_t nlen = name_end(p + 2, e);
        const char *next = memchr(p, '>', (size_t)(e - p)) + 1;
        assert(s->depth > 0);
        if (s->skip_depth == 0) {
            if (s->open) {
                put(&s->out, "/>", 2);
                s->open = false;
            } else {
                put(&s->out, "</", 2);
                put(&s->out, p + 2, nlen);
                put(&s->out, ">", 1);
            }
        }
        if (s->skip_depth == s->depth) s->skip_depth = 0;
        s->depth--;
        while (s->ns_len > 0 && s->ns[s->ns_len - 1].depth > s->depth)
            s->ns_len--;
        return next;
    }
    uint32_t nlen = name_end(p + 1, e), n;
    bool empty;
    const char *next = parse_attrs(p + 1 + nlen, e, a, &n, XF_XML_SER_NS_MAX, &empty);
    if (n > XF_XML_SER_NS_MAX) return NULL;
    if (s->skip_depth == 0 && drop_child(s, p + 1, nlen, a, n)) s->skip_depth = s->depth + 1;
    if (s->skip_depth == 0) {
        close_open(s);
        if (s->depth + 1 >= XF_XML_SER_DEPTH_MAX) return NULL;
        s->depth++;
        if (!start_tag(s, p + 1, nlen, a, n)) return NULL;
        s->depth--;
        /* Declarations pushed by start_tag belong to depth + 1. */
    }
    s->depth++;
    if (empty) {
        if (s->skip_depth == 0) {
            put(&s->out, "/>", 2);
            s->open = false;
        }
        if (s->skip_depth == s->depth) s->skip_depth = 0;
        s->depth--;
        while (s->ns_len > 0 && s->ns[s->ns_len - 1].depth > s->depth)
            s->ns_len--;
    }
    return next;
}

long xf_xml_reserialize(const xf_xml_tok *t, const xf_xml_stanza *st, const xf_xml_ser_opts *o,
                        char *out, size_t cap)
{
    static const xf_xml_ser_opts none = {{NULL, 0}, NULL, NULL, false};
    ser s;
    memset(&s, 0, sizeof s);
    s.t = t;
    s.o = o ? o : &none;
    s.out = (ser_out){out, 0, cap, false};
    const char *p = st->bytes.ptr, *e = p + st->bytes.len;
    assert(st->bytes.len >= 4 && p[0] == '<' && e[-1] == '>');
    while (p < e) {
        if (*p == '<' && p[1] == '!') { /* CDATA: its content as escaped text */
            const char *c = p + 9, *end = c;
            while (!(end[0] == ']' && end[1] == ']' && end[2] == '>'))
                end++;
            if (s.skip_depth == 0 && end > c) {
                close_open(&s);
                put_escaped(&s.out, c, (uint32_t)(end - c), XF_XML_DEC_CDATA, false);
            }
            p = end + 3;
        } else if (*p == '<') {
            p = tag(&s, p, e);
            if (p == NULL) return -1;
        } else {
            const char *end = memchr(p, '<', (size_t)(e - p));
            assert(end != NULL);
            if (s.skip_depth == 0) {
                close_open(&s);
                put_escaped(&s.out, p, (uint32_t)(end - p), XF_XML_DEC_TEXT, false);
            }
            p = end;
        }
        if (s.out.overflow) return -1;
    }
    assert(s.depth == 0);
    return (long)s.out.len;
}
