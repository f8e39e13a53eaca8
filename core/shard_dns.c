#include "shard_dns.h"

#include "log.h"

#include <poll.h>
#include <stdlib.h>

struct xf_shard_dns {
    xf_timer timer; /* first: the timer callback finds the resolver from it */
    xf_shard *shard;
    xf_resolver *r;
};

/* c-ares' next timeout onto the shard's wheel (or off it). */
static void rearm(xf_shard_dns *d)
{
    uint64_t ms = xf_resolver_timeout_ms(d->r);
    if (ms == UINT64_MAX)
        xf_timer_cancel(xf_shard_wheel(d->shard), &d->timer);
    else
        xf_timer_arm(xf_shard_wheel(d->shard), &d->timer, ms ? ms : 1);
}

static void on_timer(xf_timer *t)
{
    xf_shard_dns *d = (xf_shard_dns *)t;
    xf_resolver_tick(d->r);
    rearm(d);
}

static void on_ready(xf_shard *s, int fd, uint32_t revents, void *arg)
{
    xf_shard_dns *d = arg;
    xf_resolver_process(d->r, fd, (revents & (POLLIN | POLLERR | POLLHUP)) != 0,
                        (revents & POLLOUT) != 0);
    rearm(d);
}

static void on_sock(void *loop, int fd, bool readable, bool writable)
{
    xf_shard_dns *d = loop;
    uint32_t ev = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
    if (!xf_shard_watch(d->shard, fd, ev, on_ready, d))
        xf_log(XF_LOG_ERROR,
               "dns: shard %u watches too many sockets (%d): lookups on fd %d "
               "will time out",
               xf_shard_id(d->shard), XF_WATCH_MAX, fd);
}

xf_shard_dns *xf_shard_dns_new(xf_shard *s, const char *servers, char *err, size_t errlen)
{
    xf_shard_dns *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->shard = s;
    d->timer.fire = on_timer;
    d->r = xf_resolver_new(servers, on_sock, d, xf_now_ms() ^ ((uint64_t)xf_shard_id(s) << 32), err,
                           errlen);
    if (!d->r) {
        free(d);
        return NULL;
    }
    return d;
}

void xf_shard_dns_free(xf_shard_dns *d)
{
    if (!d) return;
    xf_timer_cancel(xf_shard_wheel(d->shard), &d->timer);
    xf_resolver_free(d->r); /* c-ares closes its sockets: on_sock stops the watches */
    free(d);
}

void xf_shard_dns_srv(xf_shard_dns *d, const char *domain, xf_srv_fn fn, void *arg)
{
    xf_resolver_srv(d->r, domain, xf_now_ms(), fn, arg);
    rearm(d);
}

void xf_shard_dns_addr(xf_shard_dns *d, const char *host, uint16_t port, xf_addr_fn fn, void *arg)
{
    xf_resolver_addr(d->r, host, port, fn, arg);
    rearm(d);
}

const xf_resolver_stats *xf_shard_dns_stats(const xf_shard_dns *d)
{
    return xf_resolver_stats_get(d->r);
}
