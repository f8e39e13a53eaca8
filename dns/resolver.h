/* Non-blocking DNS for s2s, on c-ares 1.18 (one channel per thread: 1.18
 * channels are not thread-safe). The resolver never blocks and owns no
 * loop: it tells the host loop which fds to watch (sock_fn) and when to tick
 * (xf_resolver_timeout_ms); the loop reports readiness back. In xfed the
 * verification thread's io_uring is that loop (poll operations + its timer
 * wheel); tests use poll().
 *
 * xf_resolver_srv: `_xmpps-server._tcp.D` and `_xmpp-server._tcp.D` asked
 * together, merged and ordered (srv.h); neither answering with records →
 * the domain itself on 5269 (RFC 6120 §3.2.2); a lone "." → no service.
 * Answers are cached per their TTL; failures negatively. */
#ifndef XF_RESOLVER_H
#define XF_RESOLVER_H

#include "cache.h"
#include "srv.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define XF_RESOLVE_PENDING_MAX 1024 /* lookups in flight per resolver */
#define XF_ADDRS_MAX           8

typedef struct xf_resolver xf_resolver;

typedef enum {
    XF_DNS_OK = 0,
    XF_DNS_NO_SERVICE = 1, /* SRV target "." */
    XF_DNS_NOT_FOUND = 2,  /* NXDOMAIN or no address */
    XF_DNS_FAILED = 3,     /* timeout, refused, server failure */
    XF_DNS_BUSY = 4,       /* too many lookups in flight */
} xf_dns_status;

const char *xf_dns_status_name(xf_dns_status s);

typedef void (*xf_dns_sock_fn)(void *loop, int fd, bool readable, bool writable);
typedef void (*xf_srv_fn)(void *arg, xf_dns_status st, const xf_srv_list *targets);
typedef void (*xf_addr_fn)(void *arg, xf_dns_status st, const struct sockaddr_storage *addrs,
                           uint32_t n);

/* servers: "HOST:PORT[,...]" or NULL for /etc/resolv.conf. */
xf_resolver *xf_resolver_new(const char *servers, xf_dns_sock_fn sock_fn, void *loop, uint64_t seed,
                             char *err, size_t errlen);
void xf_resolver_free(xf_resolver *r); /* pending callbacks run with XF_DNS_FAILED */

/* May call fn before returning (cache hit, a literal address, or BUSY). */
void xf_resolver_srv(xf_resolver *r, const char *domain, uint64_t now_ms, xf_srv_fn fn, void *arg);
void xf_resolver_addr(xf_resolver *r, const char *host, uint16_t port, xf_addr_fn fn, void *arg);

/* A literal IPv4 or IPv6 address with `port` into *out (and its length);
 * false when `host` is a name. */
bool xf_dns_literal(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *len);

/* Loop hooks. */
void xf_resolver_process(xf_resolver *r, int fd, bool readable, bool writable);
uint64_t xf_resolver_timeout_ms(xf_resolver *r); /* UINT64_MAX: nothing pending */
void xf_resolver_tick(xf_resolver *r);

/* Counters for metrics. */
typedef struct {
    uint64_t queries, failures, cache_hits;
    uint64_t latency_ms_sum, latency_count;
} xf_resolver_stats;
const xf_resolver_stats *xf_resolver_stats_get(const xf_resolver *r);

#endif
