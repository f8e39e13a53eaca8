#include "ring.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int xf_ring_init(struct io_uring *ring, uint32_t sq_entries, uint32_t files)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    /* Multishot recv and accept post many CQEs per SQE: size the CQ at 8x. */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
              IORING_SETUP_CQSIZE;
    p.cq_entries = sq_entries * 8;
    int rc = io_uring_queue_init_params(sq_entries, ring, &p);
    if (rc < 0) return rc;
    if (io_uring_register_ring_fd(ring) < 0) { /* an optimisation; fine without */
    }
    if (files) {
        rc = io_uring_register_files_sparse(ring, files);
        if (rc < 0) {
            io_uring_queue_exit(ring);
            ring->ring_fd = -1;
            return rc;
        }
    }
    return 0;
}

int xf_bufring_init(struct io_uring *ring, xf_bufring *b, uint16_t bgid, uint32_t count,
                    uint32_t size)
{
    assert(count && (count & (count - 1)) == 0 && count <= 32768);
    memset(b, 0, sizeof *b);
    size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
    void *r = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return -errno;
    void *mem = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        int e = errno;
        munmap(r, ring_bytes);
        return -e;
    }
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)r, .ring_entries = count, .bgid = bgid};
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc < 0) {
        munmap(r, ring_bytes);
        munmap(mem, (size_t)count * size);
        return rc;
    }
    b->br = r;
    b->mem = mem;
    b->count = count;
    b->size = size;
    b->mask = (uint32_t)io_uring_buf_ring_mask(count);
    b->bgid = bgid;
    io_uring_buf_ring_init(b->br);
    for (uint32_t i = 0; i < count; i++)
        io_uring_buf_ring_add(b->br, xf_bufring_buf(b, (uint16_t)i), size, (uint16_t)i,
                              (int)b->mask, (int)i);
    io_uring_buf_ring_advance(b->br, (int)count);
    return 0;
}

void xf_bufring_free(struct io_uring *ring, xf_bufring *b)
{
    if (!b->br) return;
    io_uring_unregister_buf_ring(ring, b->bgid);
    munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
    munmap(b->mem, (size_t)b->count * b->size);
    b->br = NULL;
}

void xf_bufring_return(xf_bufring *b, uint16_t bid)
{
    assert(bid < b->count && b->in_use > 0);
    io_uring_buf_ring_add(b->br, xf_bufring_buf(b, bid), b->size, bid, (int)b->mask,
                          (int)b->pending);
    b->pending++;
    b->in_use--;
}

void xf_bufring_publish(xf_bufring *b)
{
    if (!b->pending) return;
    io_uring_buf_ring_advance(b->br, (int)b->pending);
    b->pending = 0;
}

struct io_uring_sqe *xf_ring_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    while (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}
