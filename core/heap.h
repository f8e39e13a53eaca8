/* The allocation seam of the runtime: one heap per core thread. With mimalloc
 * (XFED_HAVE_MIMALLOC) a heap is mi_heap_new() made on the owning thread, so
 * per-core allocations never share a page or a lock with other cores; without
 * it the process allocator stands in and a heap is NULL. */
#ifndef XF_HEAP_H
#define XF_HEAP_H

#include <stddef.h>

typedef struct xf_heap xf_heap;

/* On the thread that will allocate from it; NULL means the process allocator. */
xf_heap *xf_heap_new(void);
/* On the owning thread; blocks still allocated stay valid (freed with xf_heap_free). */
void xf_heap_delete(xf_heap *h);
/* Only the owning thread allocates from h; any thread may free. */
void *xf_heap_malloc(xf_heap *h, size_t n);
void xf_heap_free(void *p);

#endif
