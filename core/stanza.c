/* Stanza facts, packing and bounces (see stanza.h). */
#include "stanza.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool read_attr(xf_xml_slice raw, char *out, size_t cap, uint16_t *len)
{
    if (!raw.ptr) {
        out[0] = 0;
        *len = 0;
        return true;
    }
    size_t n = xf_xml_decode(raw, out, cap);
    if (n == SIZE_MAX || n >= cap) return false;
    out[n] = 0;
    *len = (uint16_t)n;
    return true;
}

bool xf_stanza_kind(xf_xml_slice name, uint8_t *kind)
{
    if (xf_xml_decoded_eq(name, "message", 7))
        *kind = XF_KIND_MESSAGE;
    else if (xf_xml_decoded_eq(name, "presence", 8))
        *kind = XF_KIND_PRESENCE;
    else if (xf_xml_decoded_eq(name, "iq", 2))
        *kind = XF_KIND_IQ;
    else
        return false;
    return true;
}

const char *xf_kind_name(unsigned kind)
{
    return kind == XF_KIND_MESSAGE ? "message" : kind == XF_KIND_PRESENCE ? "presence" : "iq";
}

xf_stype xf_stanza_type(const char *t)
{
    static const struct {
        const char *name;
        xf_stype type;
    } map[] = {{"error", XF_T_ERROR},
               {"result", XF_T_RESULT},
               {"get", XF_T_GET},
               {"set", XF_T_SET},
               {"subscribe", XF_T_SUBSCRIBE},
               {"subscribed", XF_T_SUBSCRIBED},
               {"unsubscribe", XF_T_UNSUBSCRIBE},
               {"unsubscribed", XF_T_UNSUBSCRIBED}};
    if (!t[0]) return XF_T_NONE;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(t, map[i].name) == 0) return map[i].type;
    return XF_T_OTHER;
}

const char *xf_sfacts_read(const xf_xml_stanza *s, xf_sfacts *f)
{
    memset(&f->m, 0, sizeof f->m);
    if (!xf_stanza_kind(s->name, &f->m.kind)) return "name";
    char type[16];
    uint16_t tl;
    if (!read_attr(s->type, type, sizeof type, &tl)) type[0] = 0, tl = 1; /* long: "other" */
    f->m.type = (uint8_t)(tl && !type[0] ? XF_T_OTHER : xf_stanza_type(type));
    if (!read_attr(s->from, f->from, sizeof f->from, &f->m.from_len) || !f->m.from_len)
        return "from";
    if (!read_attr(s->to, f->to, sizeof f->to, &f->m.to_len) || !f->m.to_len) return "to";
    if (!read_attr(s->id, f->id, sizeof f->id, &f->m.id_len)) return "id";
    return NULL;
}

bool xf_jid_domain(const char *jid, char *out, size_t cap)
{
    const char *slash = strchr(jid, '/');
    size_t end = slash ? (size_t)(slash - jid) : strlen(jid);
    const char *at = memchr(jid, '@', end);
    const char *d = at ? at + 1 : jid;
    size_t n = end - (size_t)(d - jid);
    if (n == 0 || n >= cap) return false;
    for (size_t i = 0; i < n; i++)
        out[i] = (d[i] >= 'A' && d[i] <= 'Z') ? (char)(d[i] + 32) : d[i];
    out[n] = 0;
    if (n > 1 && out[n - 1] == '.') out[n - 1] = 0; /* RFC 7622: a trailing dot is dropped */
    return true;
}

bool xf_jid_bare(const char *jid, char *out, size_t cap)
{
    const char *slash = strchr(jid, '/');
    size_t end = slash ? (size_t)(slash - jid) : strlen(jid);
    if (end == 0 || end >= cap) return false;
    const char *at = memchr(jid, '@', end);
    size_t dom = at ? (size_t)(at - jid) + 1 : 0;
    memcpy(out, jid, end);
    for (size_t i = dom; i < end; i++) /* domains compare case-insensitively */
        if (out[i] >= 'A' && out[i] <= 'Z') out[i] = (char)(out[i] + 32);
    out[end] = 0;
    return true;
}

size_t xf_smeta_pack(const xf_sfacts *f, uint8_t *out, size_t cap)
{
    size_t need = sizeof f->m + f->m.from_len + f->m.to_len + f->m.id_len;
    if (need > cap) return 0;
    memcpy(out, &f->m, sizeof f->m);
    uint8_t *p = out + sizeof f->m;
    memcpy(p, f->from, f->m.from_len);
    p += f->m.from_len;
    memcpy(p, f->to, f->m.to_len);
    p += f->m.to_len;
    memcpy(p, f->id, f->m.id_len);
    return need;
}

bool xf_smeta_unpack(const uint8_t *p, size_t len, xf_spacked *out)
{
    if (len < sizeof out->m) return false;
    memcpy(&out->m, p, sizeof out->m);
    size_t strs = (size_t)out->m.from_len + out->m.to_len + out->m.id_len;
    if (len < sizeof out->m + strs + out->m.len) return false;
    out->from = (const char *)p + sizeof out->m;
    out->to = out->from + out->m.from_len;
    out->id = out->to + out->m.to_len;
    out->bytes = (const uint8_t *)out->id + out->m.id_len;
    return true;
}

bool xf_spacked_join(const uint8_t *hdr, size_t hlen, const uint8_t *bytes, xf_spacked *out)
{
    if (hlen < sizeof out->m) return false;
    memcpy(&out->m, hdr, sizeof out->m);
    if (hlen != sizeof out->m + (size_t)out->m.from_len + out->m.to_len + out->m.id_len)
        return false;
    out->from = (const char *)hdr + sizeof out->m;
    out->to = out->from + out->m.from_len;
    out->id = out->to + out->m.to_len;
    out->bytes = bytes;
    return true;
}

size_t xf_spacked_size(const xf_smeta *m)
{
    return sizeof *m + m->from_len + m->to_len + m->id_len + m->len;
}

bool xf_stanza_bounces(const xf_smeta *m)
{
    if (m->origin == XF_ORIGIN_XFED || m->type == XF_T_ERROR) return false;
    return !(m->kind == XF_KIND_IQ && m->type == XF_T_RESULT);
}

const char *xf_error_type(const char *cond)
{
    if (strcmp(cond, "remote-server-timeout") == 0 || strcmp(cond, "resource-constraint") == 0 ||
        strcmp(cond, "policy-violation") == 0)
        return "wait";
    if (strcmp(cond, "not-authorized") == 0 || strcmp(cond, "forbidden") == 0) return "auth";
    if (strcmp(cond, "improper-addressing") == 0 || strcmp(cond, "jid-malformed") == 0)
        return "modify";
    return "cancel";
}

size_t xf_xml_escape(const char *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *r = NULL;
        switch (in[i]) {
        case '&': r = "&amp;"; break;
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '\'': r = "&apos;"; break;
        case '"': r = "&quot;"; break;
        }
        size_t k = r ? strlen(r) : 1;
        if (n + k >= cap) return 0;
        if (r)
            memcpy(out + n, r, k);
        else
            out[n] = in[i];
        n += k;
    }
    out[n] = 0;
    return n;
}

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

size_t xf_bounce_build(unsigned kind, const char *from, size_t from_len, const char *to,
                       size_t to_len, const char *id, size_t id_len, const char *cond,
                       const char *text, char *out, size_t cap)
{
    /* Escaped values take at most 6 bytes per byte. */
    char ef[6 * 1024 + 8], et[6 * 1024 + 8], ei[6 * 1024 + 8], ex[1024];
    if (from_len > 1024 || to_len > 1024 || id_len > 1024) return 0;
    if (!xf_xml_escape(to, to_len, et, sizeof et) && to_len) return 0;
    if (!xf_xml_escape(from, from_len, ef, sizeof ef) && from_len) return 0;
    if (!xf_xml_escape(id, id_len, ei, sizeof ei) && id_len) ei[0] = 0;
    if (!id_len) ei[0] = 0;
    ex[0] = 0;
    if (text) xf_xml_escape(text, strlen(text), ex, sizeof ex);
    const char *k = xf_kind_name(kind);
    int n =
        snprintf(out, cap,
                 "<%s type='error' from='%s' to='%s'%s%s%s><error type='%s'><%s xmlns='" NS_STANZAS
                 "'/>%s%s%s</error></%s>",
                 k, et, ef, id_len ? " id='" : "", ei, id_len ? "'" : "", xf_error_type(cond), cond,
                 ex[0] ? "<text xmlns='" NS_STANZAS "'>" : "", ex, ex[0] ? "</text>" : "", k);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
