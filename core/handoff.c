#include "handoff.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define HDR       8u /* u32 len, u32 type */
#define WRAP      0xffffffffu
#define ALIGN8(n) (((n) + 7u) & ~(uint64_t)7)

int xf_spsc_init(xf_spsc *q, uint64_t cap)
{
    assert(cap >= 4096 && (cap & (cap - 1)) == 0);
    memset(q, 0, sizeof *q);
    /* Lazily touched: an idle pair of cores costs no memory. */
    void *m =
        mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return -errno;
    q->buf = m;
    q->cap = cap;
    return 0;
}

void xf_spsc_free(xf_spsc *q)
{
    if (q->buf) munmap(q->buf, q->cap);
    q->buf = NULL;
}

uint64_t xf_spsc_max_payload(const xf_spsc *q)
{
    /* A record never wraps: it must fit in half the ring to always find room. */
    return q->cap / 2 - HDR;
}

bool xf_spsc_push2(xf_spsc *q, uint32_t type, const void *hdr, uint32_t hlen, const void *data,
                   uint32_t len)
{
    uint64_t payload = (uint64_t)hlen + len;
    if (payload > xf_spsc_max_payload(q)) return false;
    uint64_t need = ALIGN8(HDR + payload);
    uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint64_t off = tail & (q->cap - 1);
    uint64_t pad = q->cap - off < need ? q->cap - off : 0; /* skip to the start */
    if (tail + pad + need - q->cached_head > q->cap) {
        q->cached_head = atomic_load_explicit(&q->head, memory_order_acquire);
        if (tail + pad + need - q->cached_head > q->cap) return false;
    }
    if (pad) {
        uint32_t wrap = WRAP;
        memcpy(q->buf + off, &wrap, 4); /* off is 8-aligned and pad >= 8 */
        tail += pad;
        off = 0;
    }
    uint32_t h[2] = {(uint32_t)payload, type};
    memcpy(q->buf + off, h, HDR);
    if (hlen) memcpy(q->buf + off + HDR, hdr, hlen);
    if (len) memcpy(q->buf + off + HDR + hlen, data, len);
    atomic_store_explicit(&q->tail, tail + need, memory_order_release);
    return true;
}

bool xf_spsc_peek(xf_spsc *q, xf_spsc_rec *r)
{
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    if (head == q->cached_tail) {
        q->cached_tail = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (head == q->cached_tail) return false;
    }
    uint64_t off = head & (q->cap - 1);
    uint32_t h[2];
    memcpy(h, q->buf + off, HDR);
    if (h[0] == WRAP) { /* the producer skipped the end of the ring */
        head += q->cap - off;
        atomic_store_explicit(&q->head, head, memory_order_release);
        off = 0;
        memcpy(h, q->buf, HDR);
    }
    r->len = h[0];
    r->type = h[1];
    r->data = q->buf + off + HDR;
    return true;
}

void xf_spsc_pop(xf_spsc *q)
{
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t len;
    memcpy(&len, q->buf + (head & (q->cap - 1)), 4);
    assert(len != WRAP);
    atomic_store_explicit(&q->head, head + ALIGN8(HDR + len), memory_order_release);
}

bool xf_spsc_empty(xf_spsc *q)
{
    return atomic_load_explicit(&q->head, memory_order_acquire) ==
           atomic_load_explicit(&q->tail, memory_order_acquire);
}
