/* xml_dec.c: lazy decoding of validated raw values. */
#include "xml_dec.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "xml_tok.h"

void xf_xml_dec_init(xf_xml_dec *d, const char *raw, uint32_t len, xf_xml_dec_mode mode)
{
    assert(raw != NULL || len == 0);
    d->p = (const uint8_t *)raw;
    d->e = d->p + len;
    d->out_len = 0;
    d->out_i = 0;
    d->mode = mode;
}

static uint8_t dec_utf8(uint8_t out[4], uint32_t cp)
{
    assert(cp <= 0x10FFFF);
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* d->p points just after '&'; the reference is known to be valid. */
static int dec_ref(xf_xml_dec *d)
{
    const uint8_t *p = d->p;
    const uint8_t *semi = memchr(p, ';', (size_t)(d->e - p));
    assert(semi != NULL);
    d->p = semi + 1;
    if (p[0] == '#') {
        uint32_t cp = 0;
        if (p[1] == 'x') {
            for (const uint8_t *q = p + 2; q < semi; q++) {
                uint32_t v = *q <= '9' ? (uint32_t)(*q - '0') : (uint32_t)((*q | 0x20) - 'a' + 10);
                cp = cp * 16 + v;
            }
        } else {
            for (const uint8_t *q = p + 1; q < semi; q++)
                cp = cp * 10 + (uint32_t)(*q - '0');
        }
        d->out_len = dec_utf8(d->out, cp);
        d->out_i = 1;
        return d->out[0];
    }
    size_t n = (size_t)(semi - p);
    if (n == 2 && p[0] == 'l') return '<';
    if (n == 2 && p[0] == 'g') return '>';
    if (n == 3) return '&';
    if (n == 4 && p[0] == 'q') return '"';
    assert(n == 4 && p[0] == 'a');
    return '\'';
}

int xf_xml_dec_next(xf_xml_dec *d)
{
    if (d->out_i < d->out_len) return d->out[d->out_i++];
    d->out_len = 0;
    d->out_i = 0;
    if (d->p >= d->e) return -1;
    uint8_t c = *d->p++;
    if (c == '&' && d->mode != XF_XML_DEC_CDATA) return dec_ref(d);
    if (c == '\r') {
        if (d->p < d->e && *d->p == '\n') d->p++;
        return d->mode == XF_XML_DEC_ATTR ? ' ' : '\n';
    }
    if ((c == '\n' || c == '\t') && d->mode == XF_XML_DEC_ATTR) return ' ';
    return c;
}

size_t xf_xml_decode(xf_xml_slice raw, char *out, size_t cap)
{
    xf_xml_dec d;
    size_t n = 0;
    int c;
    xf_xml_dec_init(&d, raw.ptr, raw.len, XF_XML_DEC_ATTR);
    while ((c = xf_xml_dec_next(&d)) >= 0) {
        if (n < cap) out[n] = (char)c;
        n++;
    }
    assert(n <= raw.len); /* decoding never grows a value */
    return n;
}

bool xf_xml_decoded_eq(xf_xml_slice raw, const char *lit, size_t lit_len)
{
    xf_xml_dec d;
    size_t i = 0;
    int c;
    xf_xml_dec_init(&d, raw.ptr, raw.len, XF_XML_DEC_ATTR);
    while ((c = xf_xml_dec_next(&d)) >= 0) {
        if (i >= lit_len || (uint8_t)lit[i] != c) return false;
        i++;
    }
    return i == lit_len;
}
