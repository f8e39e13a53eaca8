/* xml_el.c: a walker over one well-formed element; see xml_el.h. */
#include "xml_el.h"

#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* From '<' of a start tag: the byte after its '>', and whether it was "/>". */
static const char *tag_end(const char *p, const char *end, bool *empty)
{
    char q = 0;
    for (p++; p < end; p++) {
        if (q) {
            if (*p == q) q = 0;
        } else if (*p == '"' || *p == '\'') {
            q = *p;
        } else if (*p == '>') {
            *empty = p[-1] == '/';
            return p + 1;
        }
    }
    return NULL;
}

static const char *skip_to(const char *p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    for (; p + n <= end; p++)
        if (memcmp(p, lit, n) == 0) return p + n;
    return NULL;
}

/* Parses the start tag at p and finds the element's end. */
static bool element_at(const char *p, const char *end, xf_el *out)
{
    if (p >= end || *p != '<') return false;
    const char *n = p + 1, *ne = n;
    while (ne < end && !is_space(*ne) && *ne != '/' && *ne != '>')
        ne++;
    const char *colon = memchr(n, ':', (size_t)(ne - n));
    const char *local = colon ? colon + 1 : n;
    out->name = (xf_xml_slice){local, (uint32_t)(ne - local)};
    out->tag = p;
    out->attrs = ne;
    bool empty = false;
    const char *q = tag_end(p, end, &empty);
    if (!q) return false;
    if (empty) {
        out->inner = NULL;
        out->close = out->end = q;
        return true;
    }
    out->inner = q;
    unsigned depth = 1;
    while (q < end) {
        const char *lt = memchr(q, '<', (size_t)(end - q));
        if (!lt) return false;
        if (lt + 1 < end && lt[1] == '/') {
            const char *gt = memchr(lt, '>', (size_t)(end - lt));
            if (!gt) return false;
            if (--depth == 0) {
                out->close = lt;
                out->end = gt + 1;
                return true;
            }
            q = gt + 1;
        } else if (end - lt >= 9 && memcmp(lt, "<![CDATA[", 9) == 0) {
            q = skip_to(lt + 9, end, "]]>");
        } else if (end - lt >= 4 && memcmp(lt, "<!--", 4) == 0) {
            q = skip_to(lt + 4, end, "-->");
        } else if (lt + 1 < end && lt[1] == '?') {
            q = skip_to(lt + 2, end, "?>");
        } else {
            bool e2 = false;
            q = tag_end(lt, end, &e2);
            if (q && !e2) depth++;
        }
        if (!q) return false;
    }
    return false;
}

bool xf_el_root(const char *bytes, size_t len, xf_xml_slice ns, xf_el *out)
{
    memset(out, 0, sizeof *out);
    if (!element_at(bytes, bytes + len, out)) return false;
    out->ns = ns;
    return true;
}

bool xf_el_attr(const xf_el *e, const char *qname, xf_xml_slice *val)
{
    size_t qn = strlen(qname);
    const char *p = e->attrs;
    const char *stop = e->inner ? e->inner : e->end;
    while (p < stop) {
        while (p < stop && (is_space(*p) || *p == '/' || *p == '>'))
            p++;
        const char *an = p;
        while (p < stop && *p != '=' && !is_space(*p))
            p++;
        size_t alen = (size_t)(p - an);
        while (p < stop && *p != '"' && *p != '\'')
            p++;
        if (p >= stop) return false;
        char q = *p++;
        const char *v = p;
        while (p < stop && *p != q)
            p++;
        if (p >= stop) return false;
        if (alen == qn && memcmp(an, qname, qn) == 0) {
            *val = (xf_xml_slice){v, (uint32_t)(p - v)};
            return true;
        }
        p++;
    }
    return false;
}

static void child_ns(const xf_el *parent, xf_el *c)
{
    xf_xml_slice v;
    const char *n = c->tag + 1;
    size_t plen = (size_t)(c->name.ptr - n);
    if (plen > 0) { /* prefixed: xmlns:prefix on the child or the parent */
        char q[80];
        if (plen - 1 + 6 >= sizeof q) {
            c->ns = (xf_xml_slice){NULL, 0};
            return;
        }
        memcpy(q, "xmlns:", 6);
        memcpy(q + 6, n, plen - 1);
        q[6 + plen - 1] = 0;
        if (xf_el_attr(c, q, &v) || xf_el_attr(parent, q, &v))
            c->ns = v;
        else
            c->ns = (xf_xml_slice){NULL, 0};
        return;
    }
    c->ns = xf_el_attr(c, "xmlns", &v) ? v : parent->ns;
}

bool xf_el_child(const xf_el *parent, const char **it, xf_el *out)
{
    if (!parent->inner) return false;
    const char *p = *it ? *it : parent->inner;
    const char *end = parent->close;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt) return false;
        if (end - lt >= 9 && memcmp(lt, "<![CDATA[", 9) == 0) {
            p = skip_to(lt + 9, end, "]]>");
            if (!p) return false;
            continue;
        }
        if (lt + 1 < end && (lt[1] == '!' || lt[1] == '?' || lt[1] == '/')) {
            p = memchr(lt, '>', (size_t)(end - lt));
            if (!p) return false;
            p++;
            continue;
        }
        memset(out, 0, sizeof *out);
        if (!element_at(lt, end, out)) return false;
        out->parent = parent;
        child_ns(parent, out);
        *it = out->end;
        return true;
    }
    return false;
}

bool xf_slice_eq(xf_xml_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.ptr && s.len == n && memcmp(s.ptr, lit, n) == 0;
}

bool xf_el_find(const xf_el *parent, const char *name, const char *ns, xf_el *out)
{
    for (const char *it = NULL; xf_el_child(parent, &it, out);)
        if (xf_slice_eq(out->name, name) && (!ns || xf_slice_eq(out->ns, ns))) return true;
    return false;
}

size_t xf_el_text(const xf_el *e, char *out, size_t cap)
{
    size_t n = 0;
    if (cap) out[0] = 0;
    if (!e->inner) return 0;
    const char *p = e->inner, *end = e->close;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        const char *stop = lt ? lt : end;
        if (stop > p) { /* text: decode references */
            char tmp[1024];
            size_t m = xf_xml_decode((xf_xml_slice){p, (uint32_t)(stop - p)}, tmp, sizeof tmp);
            for (size_t i = 0; i < m && i < sizeof tmp; i++, n++)
                if (n + 1 < cap) out[n] = tmp[i];
        }
        if (!lt) break;
        if (end - lt >= 9 && memcmp(lt, "<![CDATA[", 9) == 0) {
            const char *c = lt + 9, *ce = skip_to(c, end, "]]>");
            if (!ce) break;
            for (; c < ce - 3; c++, n++)
                if (n + 1 < cap) out[n] = *c;
            p = ce;
            continue;
        }
        xf_el kid;
        if (lt + 1 < end && lt[1] != '/' && lt[1] != '!' && lt[1] != '?' &&
            element_at(lt, end, &kid)) {
            p = kid.end; /* skip child elements */
            continue;
        }
        const char *gt = memchr(lt, '>', (size_t)(end - lt));
        if (!gt) break;
        p = gt + 1;
    }
    if (cap) out[n < cap ? n : cap - 1] = 0;
    return n;
}
