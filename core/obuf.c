#include "obuf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void xf_obpool_init(xf_obpool *p, uint32_t max_blocks, xf_heap *heap)
{
    memset(p, 0, sizeof *p);
    p->max = max_blocks;
    p->heap = heap;
}

void xf_obpool_free(xf_obpool *p)
{
    while (p->free) {
        xf_oblock *b = p->free;
        p->free = b->next;
        xf_heap_free(b);
        p->allocated--;
    }
    p->free_count = 0;
}

static void block_put(xf_obpool *p, xf_oblock *b);

uint32_t xf_obpool_reserve(xf_obpool *p, uint32_t n)
{
    uint32_t added = 0;
    for (; added < n && p->allocated < p->max; added++) {
        xf_oblock *b = xf_heap_malloc(p->heap, sizeof *b);
        if (!b) break;
        p->allocated++;
        block_put(p, b);
    }
    return added;
}

static xf_oblock *block_get(xf_obpool *p)
{
    xf_oblock *b = p->free;
    if (b) {
        p->free = b->next;
        p->free_count--;
    } else {
        if (p->allocated == p->max) return NULL;
        b = xf_heap_malloc(p->heap, sizeof *b); /* warm-up only: blocks are recycled after */
        if (!b) return NULL;
        p->allocated++;
    }
    b->next = NULL;
    b->start = b->end = 0;
    return b;
}

static void block_put(xf_obpool *p, xf_oblock *b)
{
    b->next = p->free;
    p->free = b;
    p->free_count++;
}

bool xf_obuf_append(xf_obuf *o, xf_obpool *p, const void *data, size_t len)
{
    size_t room = o->tail ? XF_OBUF_BLOCK - o->tail->end : 0;
    if (len > room) { /* reserve every block first: all or nothing */
        size_t need = (len - room + XF_OBUF_BLOCK - 1) / XF_OBUF_BLOCK;
        if (p->free_count + (p->max - p->allocated) < need) return false;
    }
    const uint8_t *src = data;
    size_t left = len;
    while (left) {
        if (!o->tail || o->tail->end == XF_OBUF_BLOCK) {
            xf_oblock *b = block_get(p);
            assert(b); /* reserved above */
            if (o->tail)
                o->tail->next = b;
            else
                o->head = b;
            o->tail = b;
        }
        size_t n = XF_OBUF_BLOCK - o->tail->end;
        if (n > left) n = left;
        memcpy(o->tail->data + o->tail->end, src, n);
        o->tail->end += (uint32_t)n;
        src += n;
        left -= n;
    }
    o->queued += len;
    return true;
}

int xf_obuf_iov(const xf_obuf *o, struct iovec *iov)
{
    int n = 0;
    for (xf_oblock *b = o->head; b && n < XF_OBUF_IOV_MAX; b = b->next) {
        if (b->end == b->start) continue;
        iov[n].iov_base = b->data + b->start;
        iov[n].iov_len = b->end - b->start;
        n++;
    }
    return n;
}

void xf_obuf_consume(xf_obuf *o, xf_obpool *p, size_t n)
{
    assert(n <= o->queued);
    o->queued -= n;
    while (n) {
        xf_oblock *b = o->head;
        size_t have = b->end - b->start;
        size_t take = n < have ? n : have;
        b->start += (uint32_t)take;
        n -= take;
        if (b->start == b->end && (b->next || b->end == XF_OBUF_BLOCK || o->queued == 0)) {
            o->head = b->next;
            if (!o->head) o->tail = NULL;
            block_put(p, b);
        }
    }
    /* An empty chain holds no block: idle connections cost no output memory. */
    if (o->queued == 0 && o->head) {
        assert(o->head == o->tail);
        block_put(p, o->head);
        o->head = o->tail = NULL;
    }
}

void xf_obuf_clear(xf_obuf *o, xf_obpool *p)
{
    while (o->head) {
        xf_oblock *b = o->head;
        o->head = b->next;
        block_put(p, b);
    }
    o->tail = NULL;
    o->queued = o->inflight = 0;
}
