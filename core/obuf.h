/* Per-connection output: a bounded chain of fixed-size blocks from a per-core
 * pool, coalescing everything written in one loop iteration into as few sends
 * as possible. Blocks are recycled, so steady state allocates nothing. */
#ifndef XF_OBUF_H
#define XF_OBUF_H

#include "heap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define XF_OBUF_BLOCK   16384u
#define XF_OBUF_IOV_MAX 8 /* blocks per send: up to 128 KiB in one sendmsg */

typedef struct xf_oblock {
    struct xf_oblock *next;
    uint32_t start, end; /* unsent bytes are data[start, end) */
    uint8_t data[XF_OBUF_BLOCK];
} xf_oblock;

/* The per-core block pool: at most `max` blocks ever exist. */
typedef struct {
    xf_oblock *free;
    uint32_t allocated, max, free_count;
    xf_heap *heap; /* the owning core's */
} xf_obpool;

typedef struct {
    xf_oblock *head, *tail;
    size_t queued;   /* unsent bytes */
    size_t inflight; /* bytes handed to the send in flight */
} xf_obuf;

void xf_obpool_init(xf_obpool *p, uint32_t max_blocks, xf_heap *heap);
/* Allocates up to n blocks ahead (within the bound): traffic that fits in
 * them never allocates, not even the first time. Returns the blocks added. */
uint32_t xf_obpool_reserve(xf_obpool *p, uint32_t n);
void xf_obpool_free(xf_obpool *p);

/* Appends all of data or nothing: false when the pool is exhausted. The
 * per-connection limit is the caller's (xf_conn_write). */
bool xf_obuf_append(xf_obuf *o, xf_obpool *p, const void *data, size_t len);
/* Fills iov with the unsent data (up to XF_OBUF_IOV_MAX blocks); returns count. */
int xf_obuf_iov(const xf_obuf *o, struct iovec *iov);
/* Marks n bytes as sent and recycles emptied blocks. */
void xf_obuf_consume(xf_obuf *o, xf_obpool *p, size_t n);
void xf_obuf_clear(xf_obuf *o, xf_obpool *p);

#endif
