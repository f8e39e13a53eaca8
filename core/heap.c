#include "heap.h"

#include <stdlib.h>

#ifdef XFED_HAVE_MIMALLOC
#include <mimalloc.h>

xf_heap *xf_heap_new(void)
{
    return (xf_heap *)mi_heap_new();
}

void xf_heap_delete(xf_heap *h)
{
    if (h) mi_heap_delete((mi_heap_t *)h); /* live blocks move to the default heap */
}

void *xf_heap_malloc(xf_heap *h, size_t n)
{
    return h ? mi_heap_malloc((mi_heap_t *)h, n) : mi_malloc(n);
}

void xf_heap_free(void *p)
{
    mi_free(p);
}

#else

xf_heap *xf_heap_new(void)
{
    return NULL;
}

void xf_heap_delete(xf_heap *h) {}

void *xf_heap_malloc(xf_heap *h, size_t n)
{
    return malloc(n);
}

void xf_heap_free(void *p)
{
    free(p);
}

#endif
