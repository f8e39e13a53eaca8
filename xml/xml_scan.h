/* xml_scan.h: skipping runs of ordinary bytes (internal).
 *
 * Each scanner returns the first position in [p, lim) holding a byte the state machine must
 * look at, or lim. SSE2 (baseline on x86-64) compares 16 bytes at a time; a signed compare
 * against 0x20 catches control characters and every non-ASCII byte (negative as int8) in one
 * instruction, so UTF-8 is validated only where it occurs. Other targets use the class table.
 */
#ifndef XF_XML_SCAN_H
#define XF_XML_SCAN_H

#include <stdint.h>

#include "xml_chars.h"

#if defined(__SSE2__)
#include <emmintrin.h>

static inline uint32_t xf_xml_scan_text(const uint8_t *b, uint32_t p, uint32_t lim)
{
    const __m128i lt = _mm_set1_epi8('<'), amp = _mm_set1_epi8('&');
    const __m128i rb = _mm_set1_epi8(']'), sp = _mm_set1_epi8(0x20);
    while (lim - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + p));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, amp)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, rb), _mm_cmplt_epi8(v, sp)));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (mask) return p + (uint32_t)__builtin_ctz(mask);
        p += 16;
    }
    while (p < lim && !(xf_xml_cls[b[p]] & XF_XML_C_TXT))
        p++;
    return p;
}

static inline uint32_t xf_xml_scan_av(const uint8_t *b, uint32_t p, uint32_t lim, uint8_t quote)
{
    const __m128i q = _mm_set1_epi8((char)quote), lt = _mm_set1_epi8('<');
    const __m128i amp = _mm_set1_epi8('&'), sp = _mm_set1_epi8(0x20);
    while (lim - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + p));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, amp)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmplt_epi8(v, sp)));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (mask) return p + (uint32_t)__builtin_ctz(mask);
        p += 16;
    }
    while (p < lim && !(xf_xml_cls[b[p]] & XF_XML_C_AV) && b[p] != quote)
        p++;
    return p;
}

static inline uint32_t xf_xml_scan_cd(const uint8_t *b, uint32_t p, uint32_t lim)
{
    const __m128i rb = _mm_set1_epi8(']'), sp = _mm_set1_epi8(0x20);
    while (lim - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + p));
        __m128i m = _mm_or_si128(_mm_cmpeq_epi8(v, rb), _mm_cmplt_epi8(v, sp));
        unsigned mask = (unsigned)_mm_movemask_epi8(m);
        if (mask) return p + (uint32_t)__builtin_ctz(mask);
        p += 16;
    }
    while (p < lim && !(xf_xml_cls[b[p]] & XF_XML_C_CD))
        p++;
    return p;
}

#else

static inline uint32_t xf_xml_scan_text(const uint8_t *b, uint32_t p, uint32_t lim)
{
    while (p < lim && !(xf_xml_cls[b[p]] & XF_XML_C_TXT))
        p++;
    return p;
}

static inline uint32_t xf_xml_scan_av(const uint8_t *b, uint32_t p, uint32_t lim, uint8_t quote)
{
    while (p < lim && !(xf_xml_cls[b[p]] & XF_XML_C_AV) && b[p] != quote)
        p++;
    return p;
}

static inline uint32_t xf_xml_scan_cd(const uint8_t *b, uint32_t p, uint32_t lim)
{
    while (p < lim && !(xf_xml_cls[b[p]] & XF_XML_C_CD))
        p++;
    return p;
}

#endif
#endif
