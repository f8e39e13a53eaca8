/* XEP-0114 component links from xfed to an internal server: one per partner domain per
 * [internal NAME] section, on the core that owns the partner. xfed is the component: it
 * connects, opens a jabber:component:accept stream to the partner domain, proves the
 * shared secret (hex SHA-1 of stream id + secret) and then carries that domain's stanzas
 * both ways. A link that drops reconnects with bounded exponential backoff. */
#include "route.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha.h>

#include "heap.h"
#include "log.h"
#include "xml_el.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define NS_COMPONENT "jabber:component:accept"
#define NS_STREAMS   "http://etherx.jabber.org/streams"
#define NS_SERR      "urn:ietf:params:xml:ns:xmpp-streams"

enum { L_BACKOFF = 0, L_CONNECTING, L_HEADER, L_HANDSHAKE, L_READY, L_CLOSING };

struct xf_link {
    xf_route_shard *rs;
    xf_ldom *d; /* NULL once the domain is gone (the link then only closes) */
    char domain[XF_DOMAIN_MAX + 1];
    uint32_t internal;
    uint8_t state;
    bool removed; /* the domain is gone: no reconnect, free once closed */
    bool dead;
    uint8_t busy;
    xf_conn *c;
    xf_timer retry;
    uint32_t backoff_ms;
    uint64_t up_since;
    xf_xml_tok tok;
    void *tokmem;
};

static const xf_conn_ops link_ops;

static const char *iname(const xf_link *l)
{
    return l->rs->sh->app->internals[l->internal].name;
}

static void link_free(xf_link *l)
{
    if (l->d) l->d->links[l->internal] = NULL;
    xf_timer_cancel(xf_shard_wheel(l->rs->sh->shard), &l->retry);
    xf_heap_free(l->tokmem);
    xf_heap_free(l);
}

static void set_up(xf_link *l, bool up)
{
    bool was = l->state == L_READY;
    if (was == up) return;
    l->rs->links_up += up ? 1 : (uint32_t)-1;
    xf_metric_add(l->rs->sh->m, XF_METRIC_INTERNAL_LINKS_UP, up ? 1 : -1);
}

static void connect_now(xf_link *l)
{
    const struct xf_s2s_internal *in = &l->rs->sh->app->internals[l->internal];
    xf_xml_init(&l->tok, &l->rs->sh->lim, XF_XML_STREAM, l->tokmem, l->rs->sh->tokmem);
    l->c = xf_conn_connect(l->rs->sh->shard, (const struct sockaddr *)&in->addr, in->addrlen,
                           XF_LINK_CONNECT_MS, &link_ops, l);
    if (!l->c) {
        xf_log(XF_LOG_WARN, "link %s %s: no connection slot: retrying", iname(l), l->domain);
        l->state = L_BACKOFF;
        xf_timer_arm(xf_shard_wheel(l->rs->sh->shard), &l->retry, XF_LINK_BACKOFF_MAX_MS);
        return;
    }
    l->state = L_CONNECTING;
}

static void retry_fire(xf_timer *t)
{
    xf_link *l = (xf_link *)((char *)t - offsetof(xf_link, retry));
    if (l->state == L_BACKOFF && !l->removed) connect_now(l);
}

xf_link *xf_link_new(xf_route_shard *rs, xf_ldom *d, uint32_t internal)
{
    xf_heap *h = xf_shard_heap(rs->sh->shard);
    xf_link *l = xf_heap_malloc(h, sizeof *l);
    void *mem = xf_heap_malloc(h, rs->sh->tokmem);
    if (!l || !mem) {
        xf_heap_free(l);
        xf_heap_free(mem);
        return NULL;
    }
    memset(l, 0, sizeof *l);
    l->rs = rs;
    l->d = d;
    snprintf(l->domain, sizeof l->domain, "%s", d->domain);
    l->internal = internal;
    l->tokmem = mem;
    l->retry.fire = retry_fire;
    l->backoff_ms = XF_LINK_BACKOFF_MIN_MS;
    connect_now(l);
    return l;
}

xf_route_shard *xf_link_shard(const xf_link *l)
{
    return l->rs;
}

bool xf_link_ready(const xf_link *l)
{
    return l && l->state == L_READY && l->c && !xf_conn_closing(l->c);
}

bool xf_link_write(xf_link *l, const void *data, size_t len)
{
    return xf_link_ready(l) && xf_conn_write(l->c, data, len);
}

static void wr(xf_link *l, const char *s)
{
    if (l->c && !xf_conn_closing(l->c)) xf_conn_write(l->c, s, strlen(s));
}

/* Ends the connection; on_close decides between reconnecting and freeing. */
static void link_close(xf_link *l, const char *cond, const char *why)
{
    if (l->state == L_CLOSING || !l->c) return;
    xf_log(cond ? XF_LOG_WARN : XF_LOG_INFO, "link %s %s: %s: %s", iname(l), l->domain,
           cond ? cond : "closing", why);
    if (cond) {
        char buf[512];
        snprintf(buf, sizeof buf,
                 "<stream:error><%s xmlns='" NS_SERR "'/><text xmlns='" NS_SERR
                 "'>%s</text></stream:error>",
                 cond, why);
        wr(l, buf);
    }
    if (l->state >= L_HEADER) wr(l, "</stream:stream>");
    set_up(l, false);
    l->state = L_CLOSING;
    xf_conn_close(l->c, true);
}

void xf_link_remove(xf_link *l)
{
    l->removed = true;
    l->d = NULL; /* the caller frees the domain entry */
    if (l->c) {
        link_close(l, NULL, "the partner domain was removed");
    } else if (l->busy) {
        l->dead = true;
    } else {
        link_free(l);
    }
}

static void header_in(xf_link *l, const xf_xml_header *h)
{
    char id[256];
    size_t n = h->id.ptr ? xf_xml_decode(h->id, id, sizeof id) : 0;
    if (!xf_slice_eq(h->content_ns, NS_COMPONENT) || n == 0 || n >= sizeof id) {
        link_close(l, "invalid-namespace",
                   "expected a jabber:component:accept stream header with an id");
        return;
    }
    const char *secret = l->rs->sh->app->internals[l->internal].secret;
    char buf[256 + XF_SECRET_MAX];
    size_t sl = strlen(secret);
    memcpy(buf, id, n);
    memcpy(buf + n, secret, sl);
    uint8_t dig[WC_SHA_DIGEST_SIZE];
    if (wc_ShaHash((const uint8_t *)buf, (word32)(n + sl), dig) != 0) {
        link_close(l, "internal-server-error", "SHA-1 failed");
        return;
    }
    char out[64 + 2 * WC_SHA_DIGEST_SIZE] = "<handshake>";
    size_t o = strlen(out);
    for (int i = 0; i < WC_SHA_DIGEST_SIZE; i++)
        o += (size_t)snprintf(out + o, sizeof out - o, "%02x", dig[i]);
    snprintf(out + o, sizeof out - o, "</handshake>");
    wr(l, out);
    l->state = L_HANDSHAKE;
}

static void stanza_in(xf_link *l, const xf_xml_stanza *s)
{
    if (xf_slice_eq(s->ns, NS_STREAMS) && xf_slice_eq(s->name, "error")) {
        xf_el e, cond, tx;
        char text[256] = "", cn[64] = "?";
        const char *it = NULL;
        if (xf_el_root(s->bytes.ptr, s->bytes.len, s->ns, &e)) {
            if (xf_el_child(&e, &it, &cond))
                snprintf(cn, sizeof cn, "%.*s", (int)cond.name.len, cond.name.ptr);
            if (xf_el_find(&e, "text", NS_SERR, &tx)) xf_el_text(&tx, text, sizeof text);
        }
        char why[400];
        snprintf(why, sizeof why, "the internal server sent stream error %s%s%s", cn,
                 text[0] ? ": " : "", text);
        link_close(l, NULL, why);
        return;
    }
    if (l->state == L_HANDSHAKE) {
        if (!xf_slice_eq(s->name, "handshake")) {
            link_close(l, "not-authorized", "a stanza before the handshake was accepted");
            return;
        }
        set_up(l, true);
        l->state = L_READY;
        l->backoff_ms = XF_LINK_BACKOFF_MIN_MS;
        l->up_since = xf_now_ms();
        xf_xml_set_stanza_max(&l->tok, XF_XML_STANZA_POSTAUTH_MAX);
        xf_log(XF_LOG_INFO, "link %s %s: up", iname(l), l->domain);
        return;
    }
    if (l->state == L_READY) xf_route_from_internal(l, &l->tok, s);
}

static void on_data(xf_conn *c, const uint8_t *data, size_t len)
{
    xf_link *l = xf_conn_ctx(c);
    if (!l || l->state == L_CLOSING) return;
    l->busy++;
    xf_xml_feed(&l->tok, data, len);
    xf_xml_event ev;
    while (l->state != L_CLOSING && !l->dead) {
        xf_xml_event_type t = xf_xml_next(&l->tok, &ev);
        if (t == XF_XML_EV_NONE) break;
        if (t == XF_XML_EV_HEADER && l->state == L_HEADER)
            header_in(l, &ev.header);
        else if (t == XF_XML_EV_HEADER)
            link_close(l, "not-well-formed", "a second stream header");
        else if (t == XF_XML_EV_STANZA)
            stanza_in(l, &ev.stanza);
        else if (t == XF_XML_EV_STREAM_END)
            link_close(l, NULL, "the internal server ended the stream");
        else if (t == XF_XML_EV_ERROR)
            link_close(l, xf_xml_cond_name(ev.error.cond), ev.error.text);
    }
    if (--l->busy == 0 && l->dead) link_free(l);
}

static void on_connect(xf_conn *c, int err)
{
    xf_link *l = xf_conn_ctx(c);
    if (!l || err) return; /* on_close follows */
    char to[XF_DOMAIN_MAX + 1];
    snprintf(to, sizeof to, "%s", l->domain);
    char buf[512];
    snprintf(buf, sizeof buf,
             "<?xml version='1.0'?><stream:stream xmlns='" NS_COMPONENT
             "' xmlns:stream='" NS_STREAMS "' to='%s'>",
             to);
    l->state = L_HEADER;
    wr(l, buf);
}

static void on_close(xf_conn *c, int err)
{
    xf_link *l = xf_conn_ctx(c);
    xf_conn_set_ctx(c, NULL);
    if (!l) return;
    l->c = NULL;
    bool was_up = l->state == L_READY;
    set_up(l, false);
    if (l->removed) {
        if (l->busy)
            l->dead = true;
        else
            link_free(l);
        return;
    }
    if (was_up || l->state != L_CLOSING || err)
        xf_log(XF_LOG_WARN, "link %s %s: %s; reconnecting in %u ms", iname(l), l->domain,
               err ? strerror(-err) : "connection closed", l->backoff_ms);
    l->state = L_BACKOFF;
    xf_timer_arm(xf_shard_wheel(l->rs->sh->shard), &l->retry, l->backoff_ms);
    l->backoff_ms =
        l->backoff_ms * 2 > XF_LINK_BACKOFF_MAX_MS ? XF_LINK_BACKOFF_MAX_MS : l->backoff_ms * 2;
}

static void on_shutdown(xf_conn *c)
{
    xf_link *l = xf_conn_ctx(c);
    if (!l) {
        xf_conn_close(c, true);
        return;
    }
    l->removed = true; /* xfed is stopping: no reconnect */
    link_close(l, NULL, "xfed is shutting down");
}

static const xf_conn_ops link_ops = {
    .on_data = on_data,
    .on_connect = on_connect,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
};
