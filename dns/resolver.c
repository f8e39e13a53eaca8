#include "resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct srv_lookup {
    xf_resolver *r;
    char domain[254];
    xf_srv_fn fn;
    void *arg;
    int outstanding; /* of the two SRV queries */
    int nxdomain;    /* answers saying the name does not exist */
    int failed;      /* answers that failed otherwise */
    uint32_t ttl;
    uint64_t started_ms;
    xf_srv_list list;
    struct srv_lookup *next_free;
} srv_lookup;

struct xf_resolver {
    ares_channel ch;
    xf_dns_sock_fn sock_fn;
    void *loop;
    xf_rng rng;
    xf_dns_cache cache;
    srv_lookup lookups[XF_RESOLVE_PENDING_MAX];
    srv_lookup *free;
    uint32_t pending_addr;
    xf_resolver_stats stats;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *xf_dns_status_name(xf_dns_status s)
{
    static const char *const names[] = {"ok", "no-service", "not-found", "failed", "busy"};
    return s <= XF_DNS_BUSY ? names[s] : "?";
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    xf_resolver *r = data;
    r->sock_fn(r->loop, fd, readable != 0, writable != 0);
}

xf_resolver *xf_resolver_new(const char *servers, xf_dns_sock_fn sock_fn, void *loop, uint64_t seed,
                             char *err, size_t errlen)
{
    xf_resolver *r = calloc(1, sizeof *r);
    if (!r) return snprintf(err, errlen, "out of memory"), NULL;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = r;
    o.timeout = 1000; /* ms per try */
    o.tries = 3;
    o.lookups = (char *)"b"; /* DNS only: /etc/hosts would hide SRV problems */
    int rc = ares_init_options(&r->ch, &o,
                               ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
                                   ARES_OPT_LOOKUPS);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    if (servers && servers[0] &&
        (rc = ares_set_servers_ports_csv(r->ch, servers)) != ARES_SUCCESS) {
        snprintf(err, errlen, "DNS servers '%s': %s", servers, ares_strerror(rc));
        ares_destroy(r->ch);
        free(r);
        return NULL;
    }
    r->sock_fn = sock_fn;
    r->loop = loop;
    r->rng.s = seed;
    xf_dns_cache_init(&r->cache);
    for (int i = XF_RESOLVE_PENDING_MAX - 1; i >= 0; i--) {
        r->lookups[i].next_free = r->free;
        r->free = &r->lookups[i];
    }
    return r;
}

void xf_resolver_free(xf_resolver *r)
{
    if (!r) return;
    ares_destroy(r->ch); /* pending callbacks run with ARES_EDESTRUCTION */
    free(r);
}

/* The smallest TTL of the answer section, from the raw reply (c-ares 1.18's
 * ares_parse_srv_reply drops TTLs). */
static uint32_t answer_ttl(const unsigned char *abuf, int alen)
{
    if (alen < HFIXEDSZ) return 0;
    /* Header: id, flags, qdcount, ancount, ... (RFC 1035 §4.1.1). */
    int qd = abuf[4] << 8 | abuf[5], an = abuf[6] << 8 | abuf[7];
    const unsigned char *p = abuf + HFIXEDSZ, *end = abuf + alen;
    char *name;
    long len;
    for (int i = 0; i < qd; i++) {
        if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS) return 0;
        ares_free_string(name);
        p += len + QFIXEDSZ;
        if (p > end) return 0;
    }
    uint32_t ttl = UINT32_MAX;
    for (int i = 0; i < an; i++) {
        if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS) break;
        ares_free_string(name);
        p += len;
        if (end - p < RRFIXEDSZ) break;
        /* type(2) class(2) ttl(4) rdlength(2) */
        uint32_t t = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        int rdlen = p[8] << 8 | p[9];
        if (t < ttl) ttl = t;
        p += RRFIXEDSZ + rdlen;
        if (p > end) break;
    }
    return ttl == UINT32_MAX ? 0 : ttl;
}

static void srv_finish(srv_lookup *l)
{
    xf_resolver *r = l->r;
    uint64_t now = now_ms();
    r->stats.latency_ms_sum += now - l->started_ms;
    r->stats.latency_count++;
    xf_dns_status st;
    if (l->list.count > 0 || l->list.no_service) {
        xf_srv_order(&l->list, &r->rng);
        st = l->list.no_service ? XF_DNS_NO_SERVICE : XF_DNS_OK;
        xf_dns_cache_put(&r->cache, l->domain, &l->list, l->ttl, now);
    } else if (l->failed) {
        /* A server failure says nothing about the domain: do not fall back to
         * A/AAAA as if there were no SRV records. */
        st = XF_DNS_FAILED;
        r->stats.failures++;
        xf_dns_cache_put_negative(&r->cache, l->domain, st, 5, now);
    } else {
        /* No SRV records (or NXDOMAIN for both): the domain itself on 5269. */
        xf_srv_add(&l->list, l->domain, 5269, 0, 0, false);
        st = XF_DNS_OK;
        xf_dns_cache_put(&r->cache, l->domain, &l->list, XF_DNS_NEGATIVE_TTL, now);
    }
    l->fn(l->arg, st, &l->list);
    l->next_free = r->free;
    r->free = l;
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen, bool tls)
{
    srv_lookup *l = arg;
    if (status == ARES_SUCCESS) {
        struct ares_srv_reply *rep = NULL;
        if (ares_parse_srv_reply(abuf, alen, &rep) == ARES_SUCCESS) {
            for (struct ares_srv_reply *s = rep; s; s = s->next)
                xf_srv_add(&l->list, s->host, s->port, s->priority, s->weight, tls);
            ares_free_data(rep);
            uint32_t ttl = answer_ttl(abuf, alen);
            if (ttl < l->ttl) l->ttl = ttl;
        }
    } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        l->nxdomain++;
    } else {
        l->failed++;
    }
    if (--l->outstanding == 0) srv_finish(l);
}

static void on_srv_tls(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    on_srv(arg, status, timeouts, abuf, alen, true);
}

static void on_srv_tcp(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    on_srv(arg, status, timeouts, abuf, alen, false);
}

void xf_resolver_srv(xf_resolver *r, const char *domain, uint64_t now, xf_srv_fn fn, void *arg)
{
    const xf_dns_entry *e = xf_dns_cache_get(&r->cache, domain, now);
    if (e) {
        r->stats.cache_hits++;
        if (e->negative) {
            fn(arg, (xf_dns_status)e->status, &e->srv);
        } else {
            /* A new weighted draw for each use of a cached answer. */
            xf_srv_list l = e->srv;
            xf_srv_order(&l, &r->rng);
            fn(arg, l.no_service ? XF_DNS_NO_SERVICE : XF_DNS_OK, &l);
        }
        return;
    }
    srv_lookup *l = r->free;
    if (!l) {
        fn(arg, XF_DNS_BUSY, NULL);
        return;
    }
    r->free = l->next_free;
    memset(l, 0, sizeof *l);
    l->r = r;
    snprintf(l->domain, sizeof l->domain, "%s", domain);
    l->fn = fn;
    l->arg = arg;
    l->ttl = XF_DNS_MAX_TTL;
    l->outstanding = 2;
    l->started_ms = now_ms();
    r->stats.queries += 2;
    char name[300];
    snprintf(name, sizeof name, "_xmpps-server._tcp.%s", domain);
    ares_query(r->ch, name, ns_c_in, ns_t_srv, on_srv_tls, l);
    snprintf(name, sizeof name, "_xmpp-server._tcp.%s", domain);
    ares_query(r->ch, name, ns_c_in, ns_t_srv, on_srv_tcp, l);
}

typedef struct {
    xf_resolver *r;
    xf_addr_fn fn;
    void *arg;
    uint16_t port;
} addr_lookup;

static void on_addr(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    addr_lookup *a = arg;
    struct sockaddr_storage addrs[XF_ADDRS_MAX];
    uint32_t n = 0;
    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_node *node = res->nodes; node && n < XF_ADDRS_MAX;
             node = node->ai_next) {
            if (node->ai_addrlen > sizeof addrs[0]) continue;
            memcpy(&addrs[n], node->ai_addr, node->ai_addrlen);
            if (node->ai_family == AF_INET)
                ((struct sockaddr_in *)&addrs[n])->sin_port = htons(a->port);
            else if (node->ai_family == AF_INET6)
                ((struct sockaddr_in6 *)&addrs[n])->sin6_port = htons(a->port);
            else
                continue;
            n++;
        }
    }
    if (res) ares_freeaddrinfo(res);
    xf_dns_status st =
        n ? XF_DNS_OK
        : (status == ARES_ENOTFOUND || status == ARES_ENODATA || status == ARES_SUCCESS)
            ? XF_DNS_NOT_FOUND
            : XF_DNS_FAILED;
    if (st != XF_DNS_OK) a->r->stats.failures++;
    a->r->pending_addr--;
    a->fn(a->arg, st, addrs, n);
    free(a);
}

bool xf_dns_literal(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        if (len) *len = sizeof *v4;
        return true;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        if (len) *len = sizeof *v6;
        return true;
    }
    return false;
}

void xf_resolver_addr(xf_resolver *r, const char *host, uint16_t port, xf_addr_fn fn, void *arg)
{
    /* A literal address (a proxy FQDN such as 192.0.2.7:5269) needs no lookup:
     * through c-ares it was answered only when the loop next drove the channel. */
    struct sockaddr_storage lit;
    if (xf_dns_literal(host, port, &lit, NULL)) {
        r->stats.queries++;
        fn(arg, XF_DNS_OK, &lit, 1);
        return;
    }
    addr_lookup *a = r->pending_addr < XF_RESOLVE_PENDING_MAX ? malloc(sizeof *a) : NULL;
    if (!a) {
        fn(arg, XF_DNS_BUSY, NULL, 0);
        return;
    }
    *a = (addr_lookup){r, fn, arg, port};
    r->pending_addr++;
    r->stats.queries++;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(r->ch, host, NULL, &hints, on_addr, a);
}

void xf_resolver_process(xf_resolver *r, int fd, bool readable, bool writable)
{
    ares_process_fd(r->ch, readable ? fd : ARES_SOCKET_BAD, writable ? fd : ARES_SOCKET_BAD);
}

uint64_t xf_resolver_timeout_ms(xf_resolver *r)
{
    struct timeval tv, *t = ares_timeout(r->ch, NULL, &tv);
    if (!t) return UINT64_MAX;
    return (uint64_t)t->tv_sec * 1000 + (uint64_t)(t->tv_usec + 999) / 1000;
}

void xf_resolver_tick(xf_resolver *r)
{
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

const xf_resolver_stats *xf_resolver_stats_get(const xf_resolver *r)
{
    return &r->stats;
}
