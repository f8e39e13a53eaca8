/* xml_trace.c: see xml_trace.h. */
#include "xml_trace.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void (*xt_stanza_hook)(const xf_xml_tok *t, const xf_xml_stanza *s);

static void put(xt_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *s2 = realloc(b->s, cap);
        if (s2 == NULL) abort();
        b->s = s2;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void putf(xt_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_slice(xt_buf *b, const char *tag, xf_xml_slice s)
{
    putf(b, " %s=", tag);
    if (s.ptr == NULL) {
        put(b, "-", 1);
        return;
    }
    put(b, "[", 1);
    put(b, s.ptr, s.len);
    put(b, "]", 1);
}

void xt_free(xt_buf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

size_t xt_whole(void *ctx, size_t remaining)
{
    (void)ctx;
    return remaining;
}

size_t xt_bytewise(void *ctx, size_t remaining)
{
    (void)ctx;
    (void)remaining;
    return 1;
}

size_t xt_split(void *ctx, size_t remaining)
{
    size_t *first = ctx;
    size_t n = *first ? *first : remaining;
    *first = 0;
    return n < remaining ? n : remaining;
}

size_t xt_random(void *ctx, size_t remaining)
{
    uint64_t *s = ctx;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t r = (uint32_t)(*s >> 33);
    size_t n = (r & 7) == 0 ? 1 + (r >> 3) % 2048 : 1 + (r >> 3) % 64;
    return n < remaining ? n : remaining;
}

/* Check that an event's range is the same bytes in the input. */
static int check_range(const char *in, size_t len, uint64_t off, xf_xml_slice s, xt_buf *out)
{
    if (off > len || s.len > len - off || memcmp(in + off, s.ptr, s.len) != 0) {
        putf(out, "\nRANGE MISMATCH at %" PRIu64 "\n", off);
        return -1;
    }
    return 0;
}

static int record(const char *in, size_t len, const xf_xml_tok *t, const xf_xml_event *ev,
                  xt_buf *out, uint64_t *ka_end)
{
    switch (ev->type) {
    case XF_XML_EV_NONE: return 0;
    case XF_XML_EV_KEEPALIVE:
        if (*ka_end == ev->offset && out->len > 0) { /* merge with the previous keepalive */
            char *nl = out->len >= 2 ? memrchr(out->s, '\n', out->len - 1) : NULL;
            size_t at = nl ? (size_t)(nl - out->s) + 1 : 0;
            uint64_t o = 0, l = 0;
            if (sscanf(out->s + at, "K %" SCNu64 " %" SCNu64, &o, &l) == 2) {
                out->len = at;
                putf(out, "K %" PRIu64 " %" PRIu64 "\n", o, l + ev->length);
                *ka_end = ev->offset + ev->length;
                return 0;
            }
        }
        putf(out, "K %" PRIu64 " %" PRIu64 "\n", ev->offset, ev->length);
        *ka_end = ev->offset + ev->length;
        for (uint64_t i = ev->offset; i < ev->offset + ev->length; i++) {
            if (i >= len || (in[i] != ' ' && in[i] != '\t' && in[i] != '\n' && in[i] != '\r')) {
                putf(out, "\nKEEPALIVE NOT WHITE SPACE at %" PRIu64 "\n", i);
                return -1;
            }
        }
        return 0;
    case XF_XML_EV_HEADER: {
        const xf_xml_header *h = &ev->header;
        putf(out, "H %" PRIu64 " %" PRIu64, ev->offset, ev->length);
        put_slice(out, "qname", h->qname);
        put_slice(out, "ns", h->ns);
        put_slice(out, "content", h->content_ns);
        put_slice(out, "to", h->to);
        put_slice(out, "from", h->from);
        put_slice(out, "id", h->id);
        put_slice(out, "version", h->version);
        put_slice(out, "lang", h->lang);
        putf(out, " decls=%u flags=%x", h->decl_count, h->flags);
        for (uint32_t i = 0; i < h->decl_count; i++) {
            xf_xml_slice p, u;
            if (!xf_xml_header_decl(t, i, &p, &u)) return -1;
            put_slice(out, "p", p);
            put_slice(out, "u", u);
        }
        put(out, "\n", 1);
        if (ev->offset + ev->length > len) return -1;
        return check_range(in, len, ev->offset + 1, h->qname, out);
    }
    case XF_XML_EV_STANZA: {
        const xf_xml_stanza *s = &ev->stanza;
        putf(out, "S %" PRIu64 " %" PRIu64, ev->offset, ev->length);
        put_slice(out, "name", s->name);
        put_slice(out, "prefix", s->prefix);
        put_slice(out, "ns", s->ns);
        put_slice(out, "to", s->to);
        put_slice(out, "from", s->from);
        put_slice(out, "type", s->type);
        put_slice(out, "id", s->id);
        put_slice(out, "lang", s->lang);
        putf(out, " flags=%x reser=%d\n", s->flags, s->needs_reserialize);
        if (xt_stanza_hook != NULL) xt_stanza_hook(t, s);
        if (s->bytes.len != ev->length) return -1;
        return check_range(in, len, ev->offset, s->bytes, out);
    }
    case XF_XML_EV_STREAM_END:
        putf(out, "E %" PRIu64 " %" PRIu64 "\n", ev->offset, ev->length);
        return 0;
    case XF_XML_EV_ERROR:
        putf(out, "X %s%s %" PRIu64 " %s\n", xf_xml_cond_name(ev->error.cond),
             ev->error.stanza_too_big ? "+too-big" : "", ev->offset, ev->error.text);
        return 0;
    }
    return -1;
}

int xt_run(const xf_xml_limits *lim, xf_xml_mode mode, const char *in, size_t len,
           xt_chunker chunker, void *ctx, xt_buf *out)
{
    size_t mem_len = xf_xml_mem_size(lim);
    void *mem = malloc(mem_len);
    if (mem == NULL) abort();
    xf_xml_tok t;
    xf_xml_event ev;
    xf_xml_event_type type = XF_XML_EV_NONE;
    uint64_t ka_end = UINT64_MAX;
    int rc = 0;
    xf_xml_init(&t, lim, mode, mem, mem_len);
    size_t pos = 0;
    while (pos < len && type != XF_XML_EV_ERROR) {
        size_t n = chunker(ctx, len - pos);
        if (n == 0 || n > len - pos) abort();
        char *chunk = malloc(n);
        if (chunk == NULL) abort();
        memcpy(chunk, in + pos, n);
        xf_xml_feed(&t, chunk, n);
        while ((type = xf_xml_next(&t, &ev)) != XF_XML_EV_NONE) {
            if (record(in, len, &t, &ev, out, &ka_end) != 0) rc = -1;
            if (type != XF_XML_EV_KEEPALIVE) ka_end = UINT64_MAX;
            if (type == XF_XML_EV_ERROR) break;
        }
        memset(chunk, 0xA5, n); /* released: the tokenizer must not look at it again */
        free(chunk);
        pos += n;
    }
    if (type != XF_XML_EV_ERROR && mode == XF_XML_DOCUMENT) {
        while ((type = xf_xml_finish(&t, &ev)) != XF_XML_EV_NONE) {
            if (record(in, len, &t, &ev, out, &ka_end) != 0) rc = -1;
            if (type == XF_XML_EV_ERROR) break;
        }
        if (type == XF_XML_EV_NONE) put(out, "OK\n", 3);
    }
    if (out->s == NULL) put(out, "", 0);
    free(mem);
    return rc;
}
