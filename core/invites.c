/* Open addressing with linear probing over heap-allocated "U\0X\0" keys; deletion by
 * backward shift, so no tombstones accumulate. */
#include "invites.h"

#include <string.h>

struct xf_invites {
    xf_heap *heap;
    char **slot; /* NULL = empty */
    uint64_t *hash;
    uint32_t cap, count; /* cap: power of two, count <= cap / 2 */
};

static uint64_t key_hash(const char *u, const char *x)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = u; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* the separator: ("ab","c") != ("a","bc") */
    for (const char *p = x; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static bool key_eq(const char *k, const char *u, const char *x)
{
    size_t ul = strlen(u);
    return memcmp(k, u, ul + 1) == 0 && strcmp(k + ul + 1, x) == 0;
}

xf_invites *xf_invites_new(xf_heap *h)
{
    xf_invites *v = xf_heap_malloc(h, sizeof *v);
    if (!v) return NULL;
    memset(v, 0, sizeof *v);
    v->heap = h;
    return v;
}

void xf_invites_free(xf_invites *v)
{
    if (!v) return;
    for (uint32_t i = 0; i < v->cap; i++)
        xf_heap_free(v->slot[i]);
    xf_heap_free(v->slot);
    xf_heap_free(v->hash);
    xf_heap_free(v);
}

static int64_t find(const xf_invites *v, uint64_t h, const char *u, const char *x)
{
    if (!v->cap) return -1;
    for (uint32_t i = (uint32_t)h & (v->cap - 1);; i = (i + 1) & (v->cap - 1)) {
        if (!v->slot[i]) return -1;
        if (v->hash[i] == h && key_eq(v->slot[i], u, x)) return i;
    }
}

static bool grow(xf_invites *v)
{
    uint32_t cap = v->cap ? v->cap * 2 : 64;
    char **slot = xf_heap_malloc(v->heap, cap * sizeof *slot);
    uint64_t *hash = xf_heap_malloc(v->heap, cap * sizeof *hash);
    if (!slot || !hash) {
        xf_heap_free(slot);
        xf_heap_free(hash);
        return false;
    }
    memset(slot, 0, cap * sizeof *slot);
    for (uint32_t i = 0; i < v->cap; i++) {
        if (!v->slot[i]) continue;
        uint32_t j = (uint32_t)v->hash[i] & (cap - 1);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = v->slot[i];
        hash[j] = v->hash[i];
    }
    xf_heap_free(v->slot);
    xf_heap_free(v->hash);
    v->slot = slot;
    v->hash = hash;
    v->cap = cap;
    return true;
}

bool xf_invites_add(xf_invites *v, const char *u, const char *x)
{
    uint64_t h = key_hash(u, x);
    if (find(v, h, u, x) >= 0) return true;
    if (v->count >= XF_INVITES_MAX) return false;
    if ((v->count + 1) * 2 > v->cap && !grow(v)) return false;
    size_t ul = strlen(u), xl = strlen(x);
    char *k = xf_heap_malloc(v->heap, ul + xl + 2);
    if (!k) return false;
    memcpy(k, u, ul + 1);
    memcpy(k + ul + 1, x, xl + 1);
    uint32_t i = (uint32_t)h & (v->cap - 1);
    while (v->slot[i])
        i = (i + 1) & (v->cap - 1);
    v->slot[i] = k;
    v->hash[i] = h;
    v->count++;
    return true;
}

bool xf_invites_del(xf_invites *v, const char *u, const char *x)
{
    int64_t at = find(v, key_hash(u, x), u, x);
    if (at < 0) return false;
    uint32_t i = (uint32_t)at, mask = v->cap - 1;
    xf_heap_free(v->slot[i]);
    v->slot[i] = NULL;
    v->count--;
    /* Backward shift: move later members of the probe run into the hole. */
    for (uint32_t j = (i + 1) & mask; v->slot[j]; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)v->hash[j] & mask;
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (!movable) continue;
        v->slot[i] = v->slot[j];
        v->hash[i] = v->hash[j];
        v->slot[j] = NULL;
        i = j;
    }
    return true;
}

bool xf_invites_has(const xf_invites *v, const char *u, const char *x)
{
    return find(v, key_hash(u, x), u, x) >= 0;
}

uint32_t xf_invites_count(const xf_invites *v)
{
    return v->count;
}
