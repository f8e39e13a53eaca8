/* A c-ares resolver on one shard's ring: its sockets are watched with
 * multishot polls (xf_shard_watch) and its timeouts ride the shard's timer
 * wheel, so a lookup never blocks the core. One per thread that needs DNS
 * (c-ares 1.18 channels are not thread-safe). Callbacks run on the shard. */
#ifndef XF_SHARD_DNS_H
#define XF_SHARD_DNS_H

#include "resolver.h"
#include "rt.h"

typedef struct xf_shard_dns xf_shard_dns;

/* servers: "HOST:PORT[,...]" ([xfed] dns) or NULL for /etc/resolv.conf. */
xf_shard_dns *xf_shard_dns_new(xf_shard *s, const char *servers, char *err, size_t errlen);
void xf_shard_dns_free(xf_shard_dns *d);

void xf_shard_dns_srv(xf_shard_dns *d, const char *domain, xf_srv_fn fn, void *arg);
void xf_shard_dns_addr(xf_shard_dns *d, const char *host, uint16_t port, xf_addr_fn fn, void *arg);
const xf_resolver_stats *xf_shard_dns_stats(const xf_shard_dns *d);

#endif
