/* Cross-thread handoff: a bounded single-producer single-consumer byte ring per
 * (sender, receiver) pair, in user memory. Records are [len][type][payload]
 * copied in and out, so neither side ever frees the other's memory. Waking
 * the receiver is separate (one MSG_RING doorbell per batch, see shard.c),
 * and only when it may be asleep.
 *
 * Ordering: the producer publishes `tail` with release after writing a
 * record; the consumer reads it with acquire, so a record's bytes are visible
 * before its presence. The consumer returns space by publishing `head`. */
#ifndef XF_HANDOFF_H
#define XF_HANDOFF_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    alignas(64) _Atomic uint64_t head; /* consumer position */
    uint64_t cached_tail;              /* consumer's copy of tail */
    alignas(64) _Atomic uint64_t tail; /* producer position */
    uint64_t cached_head;              /* producer's copy of head */
    alignas(64) uint8_t *buf;
    uint64_t cap; /* power of two */
} xf_spsc;

typedef struct {
    uint32_t type;
    uint32_t len;
    const uint8_t *data; /* valid until xf_spsc_pop */
} xf_spsc_rec;

int xf_spsc_init(xf_spsc *q, uint64_t cap);
void xf_spsc_free(xf_spsc *q);
/* Largest payload one record can carry. */
uint64_t xf_spsc_max_payload(const xf_spsc *q);

/* Producer: copies hdr then data as one record; false when full (nothing written). */
bool xf_spsc_push2(xf_spsc *q, uint32_t type, const void *hdr, uint32_t hlen, const void *data,
                   uint32_t len);
static inline bool xf_spsc_push(xf_spsc *q, uint32_t type, const void *data, uint32_t len)
{
    return xf_spsc_push2(q, type, NULL, 0, data, len);
}

/* Consumer: the next record, or false when empty. */
bool xf_spsc_peek(xf_spsc *q, xf_spsc_rec *r);
void xf_spsc_pop(xf_spsc *q);
bool xf_spsc_empty(xf_spsc *q);

#endif
