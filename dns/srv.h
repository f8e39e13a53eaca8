/* SRV target selection for s2s (RFC 6120 §3.2, RFC 2782, XEP-0368):
 * `_xmpps-server._tcp` (direct TLS) and `_xmpp-server._tcp` (STARTTLS)
 * records are merged into one list, ordered by priority, and within a
 * priority by the RFC 2782 weighted random draw. A single record whose
 * target is "." means the domain offers no service. */
#ifndef XF_SRV_H
#define XF_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XF_SRV_MAX 32 /* targets kept per domain */

typedef struct {
    char target[254];
    uint16_t port;
    uint16_t priority;
    uint16_t weight;
    bool direct_tls; /* from _xmpps-server */
} xf_srv_target;

typedef struct {
    xf_srv_target t[XF_SRV_MAX];
    uint32_t count;
    bool no_service; /* "." */
} xf_srv_list;

/* A small deterministic generator for the weighted draw (tests seed it). */
typedef struct {
    uint64_t s;
} xf_rng;
uint64_t xf_rng_next(xf_rng *r);

/* Adds one record; records beyond XF_SRV_MAX are dropped (returns false). */
bool xf_srv_add(xf_srv_list *l, const char *target, uint16_t port, uint16_t priority,
                uint16_t weight, bool direct_tls);
/* Orders the list in place for connection attempts. */
void xf_srv_order(xf_srv_list *l, xf_rng *rng);

#endif
