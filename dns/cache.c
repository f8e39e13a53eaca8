#include "cache.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void xf_dns_cache_init(xf_dns_cache *c)
{
    memset(c, 0, sizeof *c);
}

/* Linear probing would need tombstones; 1024 entries scanned once per
 * lookup miss is cheap next to a DNS round trip, and lookups are per new
 * stream, not per stanza. */
static xf_dns_entry *find(xf_dns_cache *c, const char *name)
{
    for (uint32_t i = 0; i < c->used; i++)
        if (strcasecmp(c->e[i].name, name) == 0) return &c->e[i];
    return NULL;
}

const xf_dns_entry *xf_dns_cache_get(xf_dns_cache *c, const char *name, uint64_t now_ms)
{
    xf_dns_entry *e = find(c, name);
    if (e && e->expires_ms <= now_ms) {
        *e = c->e[--c->used]; /* drop it: move the last entry into its place */
        e = NULL;
    }
    if (e)
        c->hits++;
    else
        c->misses++;
    return e;
}

static xf_dns_entry *slot(xf_dns_cache *c, const char *name, uint64_t now_ms)
{
    xf_dns_entry *e = find(c, name);
    if (e) return e;
    if (c->used < XF_DNS_CACHE_MAX) return &c->e[c->used++];
    /* Full: evict the entry that expires first (expired ones first of all). */
    xf_dns_entry *victim = &c->e[0];
    for (uint32_t i = 1; i < c->used; i++)
        if (c->e[i].expires_ms < victim->expires_ms) victim = &c->e[i];
    c->evictions++;
    return victim;
}

static uint64_t expiry(uint32_t ttl_s, uint64_t now_ms)
{
    if (ttl_s > XF_DNS_MAX_TTL) ttl_s = XF_DNS_MAX_TTL;
    return now_ms + (uint64_t)ttl_s * 1000;
}

void xf_dns_cache_put(xf_dns_cache *c, const char *name, const xf_srv_list *srv, uint32_t ttl_s,
                      uint64_t now_ms)
{
    if (ttl_s == 0) return; /* TTL 0: use once, never cache (RFC 1035 §3.2.1) */
    xf_dns_entry *e = slot(c, name, now_ms);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->expires_ms = expiry(ttl_s, now_ms);
    e->negative = false;
    e->status = 0;
    e->srv = *srv;
}

void xf_dns_cache_put_negative(xf_dns_cache *c, const char *name, int status, uint32_t ttl_s,
                               uint64_t now_ms)
{
    xf_dns_entry *e = slot(c, name, now_ms);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->expires_ms = expiry(ttl_s ? ttl_s : XF_DNS_NEGATIVE_TTL, now_ms);
    e->negative = true;
    e->status = status;
    memset(&e->srv, 0, sizeof e->srv);
}
