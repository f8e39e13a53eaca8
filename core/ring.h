/* The only liburing user: ring setup for a core thread, the provided-buffer
 * ring (mapped by hand: liburing 2.3 has no io_uring_setup_buf_ring), and the
 * user_data encoding {op, conn index, generation} every SQE carries. */
#ifndef XF_RING_H
#define XF_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

/* What a completion is for. */
typedef enum {
    XF_OP_NONE = 0,
    XF_OP_ACCEPT,   /* multishot accept on listener `idx` */
    XF_OP_RECV,     /* multishot recv on conn `idx` */
    XF_OP_SEND,     /* the one send in flight on conn `idx` */
    XF_OP_CONNECT,  /* outbound connect on conn `idx` (linked timeout follows) */
    XF_OP_CLOSE,    /* close (after cancel) of conn `idx` */
    XF_OP_CANCEL,   /* cancel of conn `idx`'s requests; result ignored */
    XF_OP_LTIMEOUT, /* linked timeout of a connect; result ignored */
    XF_OP_DOORBELL, /* MSG_RING from another thread: look at the inboxes */
    XF_OP_POLL,     /* poll on a foreign fd (c-ares, eventfd), `idx` = slot */
    XF_OP_TIMEOUT,  /* a plain timeout, `idx` = owner-defined */
} xf_op;

static inline uint64_t xf_ud(xf_op op, uint32_t idx, uint32_t gen)
{
    return (uint64_t)op << 56 | (uint64_t)(idx & 0xffffff) << 32 | gen;
}
static inline xf_op xf_ud_op(uint64_t ud)
{
    return (xf_op)(ud >> 56);
}
static inline uint32_t xf_ud_idx(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xffffff;
}
static inline uint32_t xf_ud_gen(uint64_t ud)
{
    return (uint32_t)ud;
}
#define XF_CONN_IDX_MAX 0xffffffu

/* Provided buffers for multishot recv: `count` (power of two) buffers of
 * `size` bytes in one lazily-touched anonymous mapping. */
typedef struct {
    struct io_uring_buf_ring *br;
    uint8_t *mem;
    uint32_t count, size, mask;
    uint16_t bgid;
    uint32_t pending; /* buffers re-added but not yet published */
    uint32_t in_use;  /* handed to the kernel's completions and not returned */
} xf_bufring;

/* Creates the calling thread's ring: SINGLE_ISSUER | DEFER_TASKRUN |
 * SUBMIT_ALL, CQ sized for multishot traffic, registered ring fd, and a sparse
 * fixed-file table of `files` slots. Returns 0 or -errno. */
int xf_ring_init(struct io_uring *ring, uint32_t sq_entries, uint32_t files);

int xf_bufring_init(struct io_uring *ring, xf_bufring *b, uint16_t bgid, uint32_t count,
                    uint32_t size);
void xf_bufring_free(struct io_uring *ring, xf_bufring *b);
static inline uint8_t *xf_bufring_buf(const xf_bufring *b, uint16_t bid)
{
    return b->mem + (size_t)bid * b->size;
}
/* Gives a buffer back; published to the kernel by xf_bufring_publish. */
void xf_bufring_return(xf_bufring *b, uint16_t bid);
void xf_bufring_publish(xf_bufring *b);

/* An SQE, submitting first if the SQ is full. Never NULL. */
struct io_uring_sqe *xf_ring_sqe(struct io_uring *ring);

#endif
