/* The s2s layer around the stream state machine: per-thread state, the
 * listeners, connection limits, outbound dialing (SRV / proxy FQDN, then
 * each address in turn), the verification thread's db:verify streams, and
 * the messages between threads. See s2s.h. */
#include "s2s.h"

#include "heap.h"
#include "log.h"
#include "relay.h"
#include "route.h"
#include "store.h"
#include "stream.h"
#include "tls_session.h"
#include "verify.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

struct xf_s2s {
    xf_s2s_app app;
    const xf_config *cfg;
};

#define CONNECT_TIMEOUT_MS 10000

/* ---- small helpers ---------------------------------------------------------------- */

const xf_snapshot *xf_s2s_snap(xf_s2s_shard *sh)
{
    return xf_shard_snapshot(sh->shard);
}

int xf_s2s_local_index(const xf_s2s_app *app, const char *domain, size_t len)
{
    for (uint32_t i = 0; i < app->nlocals; i++)
        if (strlen(app->locals[i]) == len && strncasecmp(app->locals[i], domain, len) == 0)
            return (int)i;
    return -1;
}

const char *xf_s2s_db_secret(xf_s2s_shard *sh, size_t *len)
{
    const xf_gateway *g = xf_snapshot_gateway(xf_s2s_snap(sh));
    const char *s = g->dialback_passphrase[0] ? g->dialback_passphrase : sh->app->random_secret;
    *len = strlen(s);
    return s;
}

uint64_t xf_s2s_random(xf_s2s_shard *sh)
{
    /* splitmix64 over a per-thread seed from getrandom: stream ids only need
     * to be unique and unguessable enough; the dialback secret guards keys. */
    uint64_t z = (sh->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void xf_s2s_count_refusal(xf_s2s_shard *sh, int dir, const char *reason)
{
    const char *v[] = {dir == XF_DIR_IN ? "in" : "out", reason};
    xf_family_inc(sh->m, XF_FAMILY_REFUSALS, xf_family_row(sh->m, XF_FAMILY_REFUSALS, v), 1);
}

static void dns_metrics(xf_s2s_shard *sh)
{
    const xf_resolver_stats *r = xf_shard_dns_stats(sh->dns);
    xf_metric_set(sh->m, XF_METRIC_DNS_QUERIES, r->queries);
    xf_metric_set(sh->m, XF_METRIC_DNS_FAILURES, r->failures);
    xf_metric_set(sh->m, XF_METRIC_DNS_CACHE_HITS, r->cache_hits);
    xf_metric_set(sh->m, XF_METRIC_DNS_LATENCY_NS, r->latency_ms_sum * 1000000ull);
    xf_metric_set(sh->m, XF_METRIC_DNS_ANSWERS, r->latency_count);
}

/* ---- connection limits (spec §5) ------------------------------------------------------ */

static uint64_t domain_key(const char *d)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *d; d++)
        h = (h ^ (uint8_t)(*d | 0x20)) * 0x100000001b3ull;
    return h ? h : 1;
}

/* The counter slot of a partner: open addressing, a key never leaves its slot. */
static int limit_slot(xf_s2s_app *app, const char *domain)
{
    uint64_t k = domain_key(domain);
    for (uint32_t n = 0; n < XF_S2S_LIMIT_SLOTS; n++) {
        uint32_t i = (uint32_t)(k + n) & (XF_S2S_LIMIT_SLOTS - 1);
        uint64_t cur = atomic_load(&app->limit_key[i]);
        if (cur == k) return (int)i;
        if (cur == 0) {
            uint64_t zero = 0;
            if (atomic_compare_exchange_strong(&app->limit_key[i], &zero, k)) return (int)i;
            if (zero == k) return (int)i;
        }
    }
    return -1;
}

bool xf_s2s_limit_take(xf_s2s_shard *sh, const xf_partner *p, int dir, const char **why)
{
    xf_s2s_app *app = sh->app;
    if (dir == XF_DIR_VERIFY) return true;
    const xf_gateway *g = xf_snapshot_gateway(xf_s2s_snap(sh));
    uint32_t total = atomic_fetch_add(&app->streams_total, 1) + 1;
    if (total > g->connection_limit) {
        atomic_fetch_sub(&app->streams_total, 1);
        snprintf(sh->why, sizeof sh->why, "the gateway's connection limit (%u streams) is reached",
                 g->connection_limit);
        *why = sh->why;
        return false;
    }
    uint32_t lim = p->connection_limit ? p->connection_limit : g->partner_connection_limit;
    int slot = limit_slot(app, p->domain);
    uint32_t n = slot < 0 ? UINT32_MAX : atomic_fetch_add(&app->limit_count[slot][dir], 1) + 1;
    if (n > lim) {
        if (slot >= 0) atomic_fetch_sub(&app->limit_count[slot][dir], 1);
        atomic_fetch_sub(&app->streams_total, 1);
        snprintf(sh->why, sizeof sh->why, "%s has %u %s streams already (its limit)", p->domain,
                 lim, dir == XF_DIR_IN ? "inbound" : "outbound");
        *why = sh->why;
        return false;
    }
    return true;
}

void xf_s2s_limit_give(xf_s2s_shard *sh, const char *partner_domain, int dir)
{
    xf_s2s_app *app = sh->app;
    if (dir == XF_DIR_VERIFY) return;
    int slot = limit_slot(app, partner_domain);
    if (slot >= 0) atomic_fetch_sub(&app->limit_count[slot][dir], 1);
    atomic_fetch_sub(&app->streams_total, 1);
}

/* ---- pending db:result checks ----------------------------------------------------------- */

int xf_s2s_pend_add(xf_s2s_shard *sh, xf_stream *st)
{
    for (uint32_t n = 0; n < XF_S2S_PENDING_MAX; n++) {
        uint32_t i = (sh->pend_next + n) % XF_S2S_PENDING_MAX;
        if (!sh->pend[i].st) {
            sh->pend[i] = (xf_pending_slot){st, st->sid};
            sh->pend_next = i + 1;
            return (int)i;
        }
    }
    return -1;
}

void xf_s2s_pend_drop(xf_s2s_shard *sh, int slot)
{
    if (slot >= 0 && slot < XF_S2S_PENDING_MAX) sh->pend[slot].st = NULL;
}

uint64_t xf_s2s_cookie(xf_s2s_shard *sh, int slot)
{
    return (sh->pend[slot].sid << 12) | (uint64_t)slot;
}

/* ---- dialing ------------------------------------------------------------------------------ */

struct xf_dial {
    xf_srv_target targets[XF_S2S_TARGETS_MAX];
    uint32_t ntargets, next_target;
    struct sockaddr_storage addrs[XF_S2S_ADDRS_MAX];
    uint32_t naddrs, next_addr;
    bool direct; /* the current target is _xmpps-server */
    char why[192];
};

static xf_shard_dns *dns_of(xf_s2s_shard *sh)
{
    if (!sh->dns) {
        char err[256];
        sh->dns =
            xf_shard_dns_new(sh->shard, sh->app->dns[0] ? sh->app->dns : NULL, err, sizeof err);
        if (!sh->dns) xf_log(XF_LOG_ERROR, "s2s: DNS resolver: %s", err);
    }
    return sh->dns;
}

static void dial_fail(xf_stream *st, const char *cond, const char *why)
{
    xf_s2s_shard *sh = st->sh;
    xf_log(XF_LOG_WARN, "s2s %s #%u.%llu %s->%s: %s: %s", st->dir == XF_DIR_OUT ? "out" : "verify",
           (unsigned)(st->sid >> 40), (unsigned long long)(st->sid & 0xffffffffffull),
           sh->app->locals[st->local], st->remote, cond, why);
    xf_s2s_count_refusal(sh, st->dir, cond);
    if (st->dir == XF_DIR_VERIFY) {
        xf_s2s_verify_done(st, XF_DB_ERROR, why);
    } else {
        if (st->status_row >= 0)
            xf_pstatus_auth_failed(sh->app->pstatus, sh->id, st->status_row, why, time(NULL));
        xf_s2s_out_unlink(st);
        xf_stream_out_abandon(st, cond, why);
        if (st->counted) xf_s2s_limit_give(sh, st->partner, st->dir);
        if (st->status_row >= 0)
            xf_pstatus_stream(sh->app->pstatus, sh->id, st->status_row, XF_PSTATUS_OUT, -1);
        st->counted = false;
    }
    st->closing = true;
    xf_stream_release(st);
}

static void next_target(xf_stream *st);

/* A lookup of the stream's came back: false when the stream died meanwhile
 * (it is released here). */
static bool dns_back(xf_stream *st)
{
    st->dns_pending--;
    dns_metrics(st->sh);
    if (st->dead) {
        xf_stream_release(st);
        return false;
    }
    return true;
}

/* The core's resolver, counting the lookup the caller starts; NULL ends the dial. */
static xf_shard_dns *dns_for(xf_stream *st)
{
    xf_shard_dns *dns = dns_of(st->sh);
    if (!dns) {
        dial_fail(st, "remote-server-not-found", "no DNS resolver");
        return NULL;
    }
    st->dns_pending++;
    return dns;
}

void xf_s2s_dial_abort(xf_stream *st, const char *why)
{
    dial_fail(st, "remote-server-not-found", why);
}

static void next_addr(xf_stream *st)
{
    xf_dial *d = st->dial;
    while (d->next_addr < d->naddrs) {
        struct sockaddr_storage *a = &d->addrs[d->next_addr++];
        socklen_t len =
            a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        xf_conn *c = xf_conn_connect(st->sh->shard, (struct sockaddr *)a, len, CONNECT_TIMEOUT_MS,
                                     &xf_stream_ops, st);
        if (c) {
            st->c = c;
            st->direct_tls = d->direct;
            return;
        }
        snprintf(d->why, sizeof d->why, "no connection slot free");
    }
    next_target(st);
}

void xf_s2s_dial_next(xf_stream *st, const char *why)
{
    if (st->dial) snprintf(st->dial->why, sizeof st->dial->why, "%s", why);
    if (!st->dial) {
        dial_fail(st, "remote-server-timeout", why);
        return;
    }
    next_addr(st);
}

static void addr_done(void *arg, xf_dns_status s, const struct sockaddr_storage *addrs, uint32_t n)
{
    xf_stream *st = arg;
    if (!dns_back(st)) return;
    xf_dial *d = st->dial;
    d->naddrs = d->next_addr = 0;
    if (s != XF_DNS_OK) {
        xf_srv_target *t = &d->targets[d->next_target - 1];
        snprintf(d->why, sizeof d->why, "%s: %s", t->target, xf_dns_status_name(s));
    }
    for (uint32_t i = 0; s == XF_DNS_OK && i < n && i < XF_S2S_ADDRS_MAX; i++)
        d->addrs[d->naddrs++] = addrs[i];
    next_addr(st);
}

static void next_target(xf_stream *st)
{
    xf_dial *d = st->dial;
    if (d->next_target >= d->ntargets) {
        dial_fail(st, "remote-server-not-found", d->why[0] ? d->why : "no server to connect to");
        return;
    }
    xf_srv_target *t = &d->targets[d->next_target++];
    d->direct = t->direct_tls;
    xf_shard_dns *dns = dns_for(st);
    if (dns) xf_shard_dns_addr(dns, t->target, t->port, addr_done, st);
}

static void srv_done(void *arg, xf_dns_status s, const xf_srv_list *l)
{
    xf_stream *st = arg;
    if (!dns_back(st)) return;
    if (s == XF_DNS_NO_SERVICE || (l && l->no_service)) {
        dial_fail(st, "remote-server-not-found",
                  "the domain publishes no XMPP server service (SRV target '.')");
        return;
    }
    if (s != XF_DNS_OK || !l || l->count == 0) {
        char why[128];
        snprintf(why, sizeof why, "SRV lookup for %s: %s", st->remote, xf_dns_status_name(s));
        dial_fail(st, "remote-server-not-found", why);
        return;
    }
    xf_dial *d = st->dial;
    for (uint32_t i = 0; i < l->count && d->ntargets < XF_S2S_TARGETS_MAX; i++)
        d->targets[d->ntargets++] = l->t[i];
    next_target(st);
}

void xf_s2s_dial(xf_stream *st)
{
    xf_dial *d = xf_heap_malloc(xf_shard_heap(st->sh->shard), sizeof *d);
    if (!d) {
        dial_fail(st, "resource-constraint", "out of memory");
        return;
    }
    memset(d, 0, sizeof *d);
    st->dial = d;
    const char *proxy = "";
    if (st->dir == XF_DIR_VERIFY) {
        proxy = st->vreq->proxy;
    } else {
        const xf_partner *p = xf_snapshot_find(xf_s2s_snap(st->sh), st->remote, strlen(st->remote));
        if (p) proxy = p->proxy_fqdn;
    }
    if (proxy[0]) { /* the operator's proxy FQDN overrides SRV */
        xf_hostport hp;
        if (!xf_hostport_parse(proxy, 5269, &hp)) {
            dial_fail(st, "remote-server-not-found", "the partner's proxy FQDN is not HOST[:PORT]");
            return;
        }
        snprintf(d->targets[0].target, sizeof d->targets[0].target, "%s", hp.host);
        d->targets[0].port = hp.port;
        d->ntargets = 1;
        next_target(st);
        return;
    }
    xf_shard_dns *dns = dns_for(st);
    if (dns) xf_shard_dns_srv(dns, st->remote, srv_done, st);
}

/* ---- outbound streams of a core ------------------------------------------------------------ */

void xf_s2s_out_unlink(xf_stream *st)
{
    for (xf_stream **pp = &st->sh->outs; *pp; pp = &(*pp)->next)
        if (*pp == st) {
            *pp = st->next;
            st->next = NULL;
            return;
        }
}

static bool out_local(xf_s2s_shard *sh, uint32_t local, const char *remote, const uint8_t *hdr,
                      size_t hlen, const uint8_t *bytes, size_t len, const char **why)
{
    xf_stream *st = sh->outs;
    while (st && (st->closing || st->local != local || strcmp(st->remote, remote) != 0))
        st = st->next;
    if (!st) {
        const xf_partner *p = xf_snapshot_find(xf_s2s_snap(sh), remote, strlen(remote));
        if (!p) {
            if (why) *why = "not-allowed";
            return false;
        }
        st = xf_stream_new(sh, XF_DIR_OUT);
        if (!st) {
            if (why) *why = "resource-constraint";
            return false;
        }
        st->local = (uint8_t)local;
        snprintf(st->remote, sizeof st->remote, "%s", remote);
        if (!xf_stream_attach(st, p)) {
            xf_stream_release(st);
            if (why) *why = "resource-constraint";
            return false;
        }
        st->next = sh->outs;
        sh->outs = st;
        xf_log(XF_LOG_DEBUG, "s2s out #%u.%llu %s->%s: opening", (unsigned)(st->sid >> 40),
               (unsigned long long)(st->sid & 0xffffffffffull), sh->app->locals[local], remote);
        xf_stream_out_send(st, hdr, hlen, bytes, len); /* an empty queue takes it */
        xf_s2s_dial(st);
        return true;
    }
    if (xf_stream_out_send(st, hdr, hlen, bytes, len)) return true;
    if (why) *why = "resource-constraint";
    return false;
}

typedef struct {
    uint32_t local;
    char remote[XF_DOMAIN_MAX + 1];
} out_hdr;

bool xf_s2s_route_out(xf_s2s_shard *sh, uint32_t local, const char *remote, const uint8_t *hdr,
                      size_t hlen, const uint8_t *bytes, size_t len, const char **why)
{
    const xf_partner *p = xf_snapshot_find(xf_s2s_snap(sh), remote, strlen(remote));
    if (!p) {
        if (why) *why = "not-allowed";
        return false;
    }
    uint32_t owner = xf_snapshot_shard(p->domain, strlen(p->domain), sh->app->shards);
    if (owner == sh->id) return out_local(sh, local, remote, hdr, hlen, bytes, len, why);
    /* One copy into the owner's queue: header, packed meta, then the stanza's bytes. */
    uint8_t buf[sizeof(out_hdr) + sizeof(xf_smeta) + 3 * (XF_JID_MAX + 1)];
    if (hlen > sizeof buf - sizeof(out_hdr)) return false;
    out_hdr h = {local, ""};
    snprintf(h.remote, sizeof h.remote, "%s", remote);
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, hdr, hlen);
    if (xf_shard_send2(sh->shard, owner, XF_MSG_OUT_STANZA, buf, (uint32_t)(sizeof h + hlen), bytes,
                       (uint32_t)len))
        return true;
    if (why) *why = "resource-constraint";
    return false;
}

/* Streams whose partner is gone, or whose negotiation settings changed, are closed (the
 * peer reconnects under the new settings); their queued stanzas are bounced. */
void xf_s2s_prune_streams(xf_s2s_shard *sh)
{
    const xf_snapshot *snap = xf_s2s_snap(sh);
    for (int pass = 0; pass < 2; pass++) {
        for (xf_stream *st = pass ? sh->ins : sh->outs, *next; st; st = next) {
            next = st->next;
            if (st->closing || !st->partner[0]) continue;
            const xf_partner *p =
                snap ? xf_snapshot_find(snap, st->remote, strlen(st->remote)) : NULL;
            if (!p || strcmp(p->domain, st->partner) != 0) {
                xf_stream_fail(st, "policy-violation", "'%s' is no longer a federated partner",
                               st->remote);
                continue;
            }
            uint8_t pol = (uint8_t)(0x80 | p->tls | p->sasl << 2 | (p->dialback ? 1 : 0) << 4);
            if (pol != st->pol) {
                xf_stream_fail(st, "policy-violation",
                               "the negotiation settings of partner '%s' changed", p->domain);
                continue;
            }
            for (int i = 0; pass && i < XF_S2S_PAIRS_MAX; i++) {
                xf_pair *pr = &st->pairs[i];
                if (pr->state == XF_PAIR_FREE) continue;
                if (!xf_snapshot_find(snap, pr->remote, strlen(pr->remote))) {
                    xf_stream_fail(st, "policy-violation", "'%s' is no longer a federated partner",
                                   pr->remote);
                    break;
                }
            }
        }
    }
}

/* ---- the verification thread ------------------------------------------------------------- */

void xf_s2s_verify_done(xf_stream *st, xf_db_result r, const char *why)
{
    if (!st->vreq) return;
    xf_dbv_reply rep = {st->vreq->cookie, (uint32_t)r, ""};
    snprintf(rep.why, sizeof rep.why, "%s", why);
    xf_log(r == XF_DB_VALID ? XF_LOG_DEBUG : XF_LOG_WARN, "verify: %s claims %s: %s (%s)",
           st->vreq->originating, st->vreq->receiving,
           r == XF_DB_VALID     ? "valid"
           : r == XF_DB_INVALID ? "invalid"
                                : "error",
           why);
    if (!xf_shard_send(st->sh->shard, st->vsrc, XF_MSG_DBV_REPLY, &rep, sizeof rep))
        xf_log(XF_LOG_ERROR, "verify: reply queue to core %u full: the check times out there",
               st->vsrc);
    xf_metric_inc(st->sh->m, XF_METRIC_VERIFY_RESPONSES, 1);
    xf_heap_free(st->vreq);
    st->vreq = NULL;
}

static void verify_start(xf_s2s_shard *sh, uint32_t src, const xf_dbv_request *q)
{
    xf_stream *st = xf_stream_new(sh, XF_DIR_VERIFY);
    xf_dbv_request *copy = st ? xf_heap_malloc(xf_shard_heap(sh->shard), sizeof *copy) : NULL;
    if (!copy) {
        if (st) xf_stream_release(st);
        xf_dbv_reply rep = {q->cookie, XF_DB_ERROR, "verification thread out of memory"};
        xf_shard_send(sh->shard, src, XF_MSG_DBV_REPLY, &rep, sizeof rep);
        return;
    }
    *copy = *q;
    st->vreq = copy;
    st->vsrc = src;
    int li = xf_s2s_local_index(sh->app, q->receiving, strlen(q->receiving));
    st->local = (uint8_t)(li < 0 ? 0 : li);
    snprintf(st->remote, sizeof st->remote, "%s", q->originating);
    xf_s2s_dial(st);
}

static void on_verify_msg(xf_shard *s, uint32_t src, const xf_spsc_rec *r)
{
    xf_s2s_app *app = xf_rt_app(xf_shard_rt(s));
    if (r->type == XF_MSG_DBV_REQUEST && r->len == sizeof(xf_dbv_request)) {
        xf_dbv_request q;
        memcpy(&q, r->data, sizeof q);
        verify_start(app->sh[xf_shard_id(s)], src, &q);
        return;
    }
    if (r->type == XF_MSG_INVITE) {
        xf_route_verify_msg(app, s, r);
        return;
    }
    if (app->chained_verify_msg) app->chained_verify_msg(s, src, r);
}

/* ---- core messages -------------------------------------------------------------------------- */

static void on_core_msg(xf_shard *s, uint32_t src, const xf_spsc_rec *r)
{
    xf_s2s_app *app = xf_rt_app(xf_shard_rt(s));
    xf_s2s_shard *sh = app->sh[xf_shard_id(s)];
    switch (r->type) {
    case XF_MSG_DBV_REPLY: {
        if (r->len != sizeof(xf_dbv_reply)) break;
        xf_dbv_reply rep;
        memcpy(&rep, r->data, sizeof rep);
        int slot = (int)(rep.cookie & 0xfff);
        uint64_t sid = rep.cookie >> 12;
        xf_metric_inc(sh->m, XF_METRIC_VERIFY_RESPONSES, 1);
        if (slot >= XF_S2S_PENDING_MAX || !sh->pend[slot].st || sh->pend[slot].sid != sid)
            break; /* the stream is gone */
        xf_stream *st = sh->pend[slot].st;
        sh->pend[slot].st = NULL;
        xf_stream_dbv_reply(st, slot, &rep);
        break;
    }
    case XF_MSG_OUT_STANZA: {
        if (r->len < sizeof(out_hdr)) break;
        out_hdr h;
        memcpy(&h, r->data, sizeof h);
        h.remote[XF_DOMAIN_MAX] = 0;
        xf_spacked p;
        if (h.local >= app->nlocals || !xf_smeta_unpack(r->data + sizeof h, r->len - sizeof h, &p))
            break;
        const uint8_t *hdr = r->data + sizeof h;
        const char *why = "resource-constraint";
        if (!out_local(sh, h.local, h.remote, hdr, (size_t)(p.bytes - hdr), p.bytes, p.m.len,
                       &why)) {
            xf_log(XF_LOG_WARN, "s2s: a stanza for %s could not be queued (%s)", h.remote, why);
            xf_route_bounce(sh, &p, why, NULL);
        }
        break;
    }
    default:
        if (!xf_route_msg(sh, src, r))
            xf_log(XF_LOG_ERROR, "s2s: unexpected message type %u from %u", r->type, src);
        break;
    }
}

/* ---- accepting ----------------------------------------------------------------------------- */

static void on_accept(xf_conn *c, void *arg)
{
    struct xf_s2s_listener *l = arg;
    xf_s2s_shard *sh = l->app->sh[xf_shard_id(xf_conn_shard(c))];
    xf_stream *st = xf_stream_new(sh, XF_DIR_IN);
    if (!st) {
        xf_log(XF_LOG_ERROR, "s2s: out of memory for an inbound stream: refused");
        xf_conn_close(c, false);
        return;
    }
    xf_stream_accepted(st, c, l->direct);
}

/* ---- thread hooks ------------------------------------------------------------------------------
 */

static void shard_start(xf_shard *s)
{
    xf_s2s_app *app = xf_rt_app(xf_shard_rt(s));
    uint32_t id = xf_shard_id(s);
    xf_s2s_shard *sh = xf_heap_malloc(xf_shard_heap(s), sizeof *sh);
    if (!sh) abort(); /* at start: nothing can run without it */
    memset(sh, 0, sizeof *sh);
    sh->app = app;
    sh->shard = s;
    sh->id = id;
    sh->m = xf_shard_metrics(s);
    if (getrandom(&sh->rng, sizeof sh->rng, 0) != sizeof sh->rng) sh->rng = (uint64_t)time(NULL);
    sh->next_sid = (uint64_t)id << 40;
    xf_xml_limits_default(&sh->lim);
    sh->tokmem = xf_xml_mem_size(&sh->lim);
    const char *in[] = {"in"}, *out[] = {"out"};
    sh->row_in_opened = xf_family_row(sh->m, XF_FAMILY_STREAMS_OPENED, in);
    sh->row_out_opened = xf_family_row(sh->m, XF_FAMILY_STREAMS_OPENED, out);
    app->sh[id] = sh;
    if (id < app->shards) {
        sh->rs = xf_route_shard_new(sh);
        if (!sh->rs) abort(); /* at start: nothing can run without it */
    } else if (app->store_path[0]) {
        /* the verification thread keeps the invites gauge */
        char err[256];
        uint64_t n = 0;
        if (xf_store_open(app->store_path, &app->vstore, err, sizeof err) == XF_STORE_OK &&
            xf_store_invite_count(app->vstore, &n) == XF_STORE_OK)
            xf_metric_set(sh->m, XF_METRIC_INVITES, n);
    }
    if (app->chained_start) app->chained_start(s);
}

static void shard_stop(xf_shard *s)
{
    xf_s2s_app *app = xf_rt_app(xf_shard_rt(s));
    xf_s2s_shard *sh = app->sh[xf_shard_id(s)];
    if (app->chained_stop) app->chained_stop(s);
    if (!sh) return;
    if (sh->dns) xf_shard_dns_free(sh->dns); /* pending lookups end their dials */
    sh->dns = NULL;
    xf_route_shard_free(sh->rs);
    sh->rs = NULL;
    if (xf_shard_id(s) == app->shards && app->vstore) {
        xf_store_close(app->vstore);
        app->vstore = NULL;
    }
    app->sh[xf_shard_id(s)] = NULL;
    xf_heap_free(sh);
    xf_tls_thread_done();
}

/* ---- set-up -----------------------------------------------------------------------------------
 */

typedef struct {
    char *buf;
    size_t len, cap;
} boot_buf;

static int boot_invite(const char *u, const char *x, void *arg)
{
    boot_buf *b = arg;
    size_t need = strlen(u) + strlen(x) + 2;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + need)
            cap *= 2;
        char *n = realloc(b->buf, cap);
        if (!n) return 1;
        b->buf = n;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, u, strlen(u) + 1);
    memcpy(b->buf + b->len + strlen(u) + 1, x, strlen(x) + 1);
    b->len += need;
    return 0;
}

/* The router's part of the set-up (control thread, before the cores run): the internal
 * servers' addresses (resolved here, once: a core never waits on a resolver) and the
 * invites stored so far. */
static bool load_router(xf_s2s_app *app, const xf_config *cfg, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < cfg->internal_count; i++) {
        const xf_internal *in = &cfg->internals[i];
        struct xf_s2s_internal *o = &app->internals[i];
        snprintf(o->name, sizeof o->name, "%s", in->name);
        snprintf(o->secret, sizeof o->secret, "%s", in->secret);
        char port[8];
        snprintf(port, sizeof port, "%u", in->addr.port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(in->addr.host, port, &hints, &res);
        if (rc != 0 || !res) {
            snprintf(err, errlen, "[internal %s] host '%s': %s", in->name, in->addr.host,
                     gai_strerror(rc));
            return false;
        }
        memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
        o->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    }
    app->ninternals = cfg->internal_count;
    snprintf(app->store_path, sizeof app->store_path, "%s", cfg->store);
    if (!cfg->store[0]) return true;
    xf_store *st = NULL;
    if (xf_store_open(cfg->store, &st, err, errlen) != XF_STORE_OK) return false;
    boot_buf b = {0};
    xf_store_rc rc = xf_store_invite_each(st, boot_invite, &b);
    if (rc != XF_STORE_OK) {
        snprintf(err, errlen, "reading invites: %s", xf_store_errmsg(st));
        xf_store_close(st);
        free(b.buf);
        return false;
    }
    xf_store_close(st);
    app->invites_boot = b.buf;
    app->invites_boot_len = b.len;
    return true;
}

xf_s2s *xf_s2s_new(const xf_config *cfg, xf_pstatus *pstatus, char *err, size_t errlen)
{
    xf_s2s *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    xf_s2s_app *app = &s->app;
    s->cfg = cfg;
    xf_tls_identity ids[XF_LOCALS_MAX];
    for (uint32_t i = 0; i < cfg->local_count; i++) {
        ids[i] = (xf_tls_identity){cfg->locals[i].domain, cfg->locals[i].cert, cfg->locals[i].key};
        snprintf(app->locals[i], sizeof app->locals[i], "%s", cfg->locals[i].domain);
    }
    app->nlocals = cfg->local_count;
    if (app->nlocals == 0) {
        snprintf(err, errlen, "no [local DOMAIN] section: nothing to federate");
        free(s);
        return NULL;
    }
    app->tls = xf_tls_ctx_new(ids, cfg->local_count, cfg->ca_file[0] ? cfg->ca_file : NULL, true,
                              err, errlen);
    if (!app->tls) {
        free(s);
        return NULL;
    }
    uint8_t rnd[32];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
        snprintf(err, errlen, "getrandom failed");
        xf_tls_ctx_free(app->tls);
        free(s);
        return NULL;
    }
    for (int i = 0; i < 32; i++)
        snprintf(app->random_secret + 2 * i, 3, "%02x", rnd[i]);
    snprintf(app->dns, sizeof app->dns, "%s", cfg->dns);
    app->pstatus = pstatus;
    if (!load_router(app, cfg, err, errlen)) {
        xf_tls_ctx_free(app->tls);
        free(app->invites_boot);
        free(s);
        return NULL;
    }
    app->plain = (struct xf_s2s_listener){app, false};
    app->direct = (struct xf_s2s_listener){app, true};
    return s;
}

void xf_s2s_free(xf_s2s *s)
{
    if (!s) return;
    free(s->app.invites_boot);
    xf_tls_ctx_free(s->app.tls);
    free(s->app.sh);
    free(s);
}

static bool add_listener(xf_rt_config *rc, const xf_hostport *hp, struct xf_s2s_listener *l,
                         char *err, size_t errlen)
{
    if (rc->listen_count >= XF_LISTENERS_MAX) {
        snprintf(err, errlen, "too many listeners (at most %d)", XF_LISTENERS_MAX);
        return false;
    }
    xf_listen_spec *ls = &rc->listen[rc->listen_count];
    char spec[XF_HOSTPORT_MAX + 8];
    snprintf(spec, sizeof spec, "%s:%u", hp->host, hp->port);
    if (strchr(hp->host, ':')) snprintf(spec, sizeof spec, "[%s]:%u", hp->host, hp->port);
    if (!xf_sockaddr_parse(spec, &ls->addr, &ls->addrlen)) {
        snprintf(err, errlen, "listen address '%s' is not a numeric HOST:PORT", spec);
        return false;
    }
    ls->ops = &xf_stream_ops;
    ls->on_accept = on_accept;
    ls->arg = l;
    rc->listen_count++;
    return true;
}

bool xf_s2s_install(xf_s2s *s, xf_rt_config *rc, char *err, size_t errlen)
{
    xf_s2s_app *app = &s->app;
    const xf_config *cfg = s->cfg;
    for (uint32_t i = 0; i < cfg->s2s_listen_count; i++)
        if (!add_listener(rc, &cfg->s2s_listen[i], &app->plain, err, errlen)) return false;
    for (uint32_t i = 0; i < cfg->direct_tls_listen_count; i++)
        if (!add_listener(rc, &cfg->direct_tls_listen[i], &app->direct, err, errlen)) return false;
    app->shards = rc->shards;
    app->sh = calloc(rc->shards + 1, sizeof *app->sh);
    if (!app->sh) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    app->chained_start = rc->on_shard_start;
    app->chained_stop = rc->on_shard_stop;
    app->chained_verify_msg = rc->on_verify_msg;
    rc->on_shard_start = shard_start;
    rc->on_shard_stop = shard_stop;
    rc->on_verify_msg = on_verify_msg;
    rc->on_msg = on_core_msg;
    rc->app = app;
    return true;
}
