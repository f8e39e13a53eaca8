/* A bounded DNS answer cache for one thread (c-ares 1.18 caches nothing):
 * SRV lists keyed by domain, honouring the TTL, with negative entries so a
 * missing domain is not asked again on every stanza. When full, the entry
 * closest to expiry goes. */
#ifndef XF_DNS_CACHE_H
#define XF_DNS_CACHE_H

#include "srv.h"

#include <stdint.h>

#define XF_DNS_CACHE_MAX    1024
#define XF_DNS_NEGATIVE_TTL 60    /* seconds, when the answer carried none */
#define XF_DNS_MAX_TTL      86400 /* cap what a server may ask for */

typedef struct {
    char name[254];
    uint64_t expires_ms;
    bool negative;
    int status; /* the resolver's failure, for negative entries */
    xf_srv_list srv;
} xf_dns_entry;

typedef struct {
    xf_dns_entry e[XF_DNS_CACHE_MAX];
    uint32_t used;
    uint64_t hits, misses, evictions;
} xf_dns_cache;

void xf_dns_cache_init(xf_dns_cache *c);
/* The live entry for name (case-insensitive), or NULL (expired ones are dropped). */
const xf_dns_entry *xf_dns_cache_get(xf_dns_cache *c, const char *name, uint64_t now_ms);
void xf_dns_cache_put(xf_dns_cache *c, const char *name, const xf_srv_list *srv, uint32_t ttl_s,
                      uint64_t now_ms);
void xf_dns_cache_put_negative(xf_dns_cache *c, const char *name, int status, uint32_t ttl_s,
                               uint64_t now_ms);

#endif
