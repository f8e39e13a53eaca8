#include "relay.h"

#include "config.h"
#include "log.h"
#include "resolver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each side's context is the other side's connection: no allocation per pair. */

static void relay_data(xf_conn *c, const uint8_t *data, size_t len)
{
    xf_conn *peer = xf_conn_ctx(c);
    if (!peer) return; /* the other side is gone; this one is closing */
    if (!xf_conn_write(peer, data, len)) {
        /* Past the hard bound despite the pause: refuse rather than grow. */
        xf_log(XF_LOG_WARN, "relay: output bound exceeded (%zu bytes queued): closing the pair",
               xf_conn_queued(peer));
        xf_conn_close(peer, false);
        xf_conn_close(c, false);
        return;
    }
    if (xf_conn_write_full(peer)) xf_conn_pause(c); /* backpressure to the sender */
}

static void relay_drain(xf_conn *c)
{
    xf_conn *src = xf_conn_ctx(c);
    if (src) xf_conn_resume(src);
}

static void relay_eof(xf_conn *c)
{
    xf_conn *peer = xf_conn_ctx(c);
    if (peer) xf_conn_close(peer, true);
    xf_conn_close(c, true);
}

static void relay_close(xf_conn *c, int err)
{
    xf_conn *peer = xf_conn_ctx(c);
    xf_conn_set_ctx(c, NULL);
    if (peer) {
        xf_conn_set_ctx(peer, NULL);
        xf_conn_close(peer, true);
    }
}

static const xf_conn_ops relay_ops = {
    .on_data = relay_data,
    .on_eof = relay_eof,
    .on_drain = relay_drain,
    .on_close = relay_close,
};

static void relay_accept(xf_conn *c, void *arg)
{
    xf_relay *r = arg;
    xf_conn *out = xf_conn_connect(xf_conn_shard(c), (const struct sockaddr *)&r->target,
                                   r->target_len, r->connect_timeout_ms, &relay_ops, c);
    if (!out) {
        xf_log(XF_LOG_WARN, "relay: cannot open the outbound connection");
        xf_conn_close(c, false);
        return;
    }
    xf_conn_set_ctx(c, out);
}

void xf_relay_listen(xf_rt_config *cfg, xf_relay *r, const struct sockaddr *addr, socklen_t len)
{
    xf_listen_spec *l = &cfg->listen[cfg->listen_count++];
    memcpy(&l->addr, addr, len);
    l->addrlen = len;
    l->ops = &relay_ops;
    l->on_accept = relay_accept;
    l->arg = r;
}

bool xf_sockaddr_parse(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
    xf_hostport hp; /* the same HOST:PORT / [V6]:PORT rules as the config */
    if (!xf_hostport_parse(s, 0, &hp) || strchr(s, ':') == NULL) return false;
    return xf_dns_literal(hp.host, hp.port, out, len);
}
