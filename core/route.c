/* Routing decisions between partners' s2s streams and internal servers' links (route.h),
 * spec §6 (partner types, invites) and §7 (addressing, default-deny, bounces). */
#include "route.h"

#include "heap.h"
#include "log.h"
#include "store.h"
#include "xml_el.h"
#include "xml_ser.h"

#include <stdio.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------------------ */

static uint32_t me(const xf_s2s_shard *sh)
{
    return sh->id;
}

static uint32_t owner_of(const xf_s2s_shard *sh, const xf_partner *p)
{
    return xf_snapshot_shard(p->domain, strlen(p->domain), sh->app->shards);
}

static void count2(xf_s2s_shard *sh, xf_family f, const char *a, const char *b, uint64_t n)
{
    const char *v[] = {a, b};
    xf_family_inc(sh->m, f, xf_family_row(sh->m, f, v), n);
}

static void count_refused(xf_s2s_shard *sh, const char *partner, const char *reason)
{
    count2(sh, XF_FAMILY_STANZAS_REFUSED, partner, reason, 1);
}

static void count_bounce(xf_s2s_shard *sh, const char *cond)
{
    const char *v[] = {cond};
    xf_family_inc(sh->m, XF_FAMILY_BOUNCES, xf_family_row(sh->m, XF_FAMILY_BOUNCES, v), 1);
}

bool xf_route_log_bodies(xf_s2s_shard *sh)
{
    return xf_snapshot_gateway(xf_s2s_snap(sh))->log_message_bodies;
}

/* The stanza in a debug line: with its <body> elements removed unless the gateway's
 * log-message-bodies is on (spec §5: then no log line ever holds a body's text). */
static void log_stanza(xf_s2s_shard *sh, const char *what, const xf_xml_tok *t,
                       const xf_xml_stanza *s)
{
    if (!xf_log_enabled(XF_LOG_DEBUG)) return;
    if (xf_route_log_bodies(sh)) {
        xf_log(XF_LOG_DEBUG, "route %s: %.*s", what,
               (int)(s->bytes.len > 1500 ? 1500 : s->bytes.len), s->bytes.ptr);
        return;
    }
    char buf[1600];
    xf_xml_ser_opts o = {.drop_local = "body"};
    long n = xf_xml_reserialize(t, s, &o, buf, sizeof buf);
    if (n < 0)
        xf_log(XF_LOG_DEBUG, "route %s: <%.*s> (%u bytes, not shown)", what, (int)s->name.len,
               s->name.ptr, (unsigned)s->bytes.len);
    else
        xf_log(XF_LOG_DEBUG, "route %s: %.*s", what, (int)n, buf);
}

/* Does the stanza's start tag declare its own default namespace (xmlns='jabber:client')? */
static bool own_xmlns(const xf_xml_stanza *s)
{
    const char *p = s->bytes.ptr, *end = p + s->bytes.len;
    const char *gt = memchr(p, '>', (size_t)(end - p));
    if (!gt) return false;
    for (const char *q = p + 1; q + 6 <= gt; q++) /* p[0] is '<' */
        if ((q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n' || q[-1] == '\r') &&
            memcmp(q, "xmlns", 5) == 0 && (q[5] == '=' || q[5] == ' '))
            return true;
    return false;
}

/* The bytes to forward: the original ones (the zero-copy path) unless the stanza must be
 * rewritten (a header-bound prefix, its own content namespace, <status/> to drop). */
static bool forward_bytes(xf_s2s_shard *sh, const xf_xml_tok *t, const xf_xml_stanza *s,
                          bool drop_status, const uint8_t **out, size_t *len)
{
    bool ns = own_xmlns(s);
    if (!s->needs_reserialize && !ns && !drop_status) {
        *out = (const uint8_t *)s->bytes.ptr;
        *len = s->bytes.len;
        return true;
    }
    xf_xml_ser_opts o = {.drop_local = drop_status ? "status" : NULL, .drop_top_xmlns = ns};
    long n = xf_xml_reserialize(t, s, &o, (char *)sh->scratch, XF_ROUTE_STANZA_MAX);
    if (n < 0) return false;
    *out = sh->scratch;
    *len = (size_t)n;
    return true;
}

static bool has_status(const xf_xml_stanza *s)
{
    xf_el e, st;
    return xf_el_root(s->bytes.ptr, s->bytes.len, s->ns, &e) && xf_el_find(&e, "status", NULL, &st);
}

/* ---- the partner domains this core serves ------------------------------------------- */

static uint64_t dom_hash(const char *d)
{
    uint64_t h = 1469598103934665603ull;
    for (; *d; d++)
        h = (h ^ (uint8_t)*d) * 1099511628211ull;
    return h ^ (h >> 29);
}

static xf_ldom *dom_find(const xf_route_shard *rs, const char *domain)
{
    if (!rs->dom_cap) return NULL;
    for (uint32_t i = (uint32_t)dom_hash(domain) & (rs->dom_cap - 1);;
         i = (i + 1) & (rs->dom_cap - 1)) {
        xf_ldom *d = rs->dom_index[i];
        if (!d) return NULL;
        if (strcmp(d->domain, domain) == 0) return d;
    }
}

static void dom_reindex(xf_route_shard *rs)
{
    uint32_t n = 0;
    for (xf_ldom *d = rs->doms; d; d = d->next)
        n++;
    uint32_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    xf_ldom **idx = xf_heap_malloc(xf_shard_heap(rs->sh->shard), cap * sizeof *idx);
    if (!idx) {
        xf_log(XF_LOG_ERROR, "route: out of memory for the link index: keeping the old one");
        return;
    }
    memset(idx, 0, cap * sizeof *idx);
    for (xf_ldom *d = rs->doms; d; d = d->next) {
        uint32_t i = (uint32_t)dom_hash(d->domain) & (cap - 1);
        while (idx[i])
            i = (i + 1) & (cap - 1);
        idx[i] = d;
    }
    xf_heap_free(rs->dom_index);
    rs->dom_index = idx;
    rs->dom_cap = cap;
}

static void dom_add(xf_route_shard *rs, const char *domain, const xf_partner *p, uint64_t v)
{
    xf_ldom *d = dom_find(rs, domain);
    if (!d) {
        for (d = rs->doms; d && strcmp(d->domain, domain) != 0; d = d->next) {
        }
    }
    if (d) {
        d->seen = v;
        snprintf(d->partner, sizeof d->partner, "%s", p->domain);
        return;
    }
    d = xf_heap_malloc(xf_shard_heap(rs->sh->shard), sizeof *d);
    if (!d) {
        xf_log(XF_LOG_ERROR, "route: out of memory for the links of %s", domain);
        return;
    }
    memset(d, 0, sizeof *d);
    snprintf(d->domain, sizeof d->domain, "%s", domain);
    snprintf(d->partner, sizeof d->partner, "%s", p->domain);
    d->seen = v;
    d->next = rs->doms;
    rs->doms = d;
    for (uint32_t i = 0; i < rs->sh->app->ninternals; i++)
        d->links[i] = xf_link_new(rs, d, i);
    if (rs->sh->app->ninternals)
        xf_log(XF_LOG_INFO, "route: opening %u link(s) for %s (partner %s)",
               rs->sh->app->ninternals, domain, p->domain);
}

/* Brings the links in line with the partner snapshot; closes streams of removed partners. */
static void reconcile(xf_route_shard *rs)
{
    xf_s2s_shard *sh = rs->sh;
    const xf_snapshot *snap = xf_s2s_snap(sh);
    uint64_t v = snap ? xf_snapshot_version(snap) : 0;
    if (v == rs->version) return;
    uint32_t n = snap ? xf_snapshot_count(snap) : 0;
    for (uint32_t i = 0; i < n; i++) {
        const xf_partner *p = xf_snapshot_partner(snap, i);
        if (owner_of(sh, p) != me(sh)) continue;
        dom_add(rs, p->domain, p, v);
        for (uint32_t k = 0; k < p->domain_count; k++)
            dom_add(rs, p->domains[k], p, v);
    }
    for (xf_ldom **pp = &rs->doms; *pp;) {
        xf_ldom *d = *pp;
        if (d->seen == v) {
            pp = &d->next;
            continue;
        }
        xf_log(XF_LOG_INFO, "route: %s is no longer a partner domain: closing its links",
               d->domain);
        for (uint32_t i = 0; i < XF_INTERNALS_MAX; i++)
            if (d->links[i]) xf_link_remove(d->links[i]);
        *pp = d->next;
        xf_heap_free(d);
    }
    dom_reindex(rs);
    xf_s2s_prune_streams(sh);
    rs->version = v;
}

static void log_flush_suppressed(xf_route_shard *rs, uint64_t second);

static void tick_fire(xf_timer *t)
{
    xf_route_shard *rs = (xf_route_shard *)((char *)t - offsetof(xf_route_shard, tick));
    reconcile(rs);
    uint64_t second = xf_shard_wheel(rs->sh->shard)->now_ms / 1000;
    if (rs->log_suppressed && second != rs->log_second) log_flush_suppressed(rs, second);
    xf_timer_arm(xf_shard_wheel(rs->sh->shard), &rs->tick, XF_ROUTE_TICK_MS);
}

xf_route_shard *xf_route_shard_new(xf_s2s_shard *sh)
{
    xf_heap *h = xf_shard_heap(sh->shard);
    xf_route_shard *rs = xf_heap_malloc(h, sizeof *rs);
    sh->scratch = xf_heap_malloc(h, XF_ROUTE_SCRATCH);
    if (!rs || !sh->scratch) {
        xf_heap_free(rs);
        return NULL;
    }
    memset(rs, 0, sizeof *rs);
    rs->sh = sh;
    rs->version = UINT64_MAX;
    rs->invites = xf_invites_new(h);
    if (!rs->invites) {
        xf_heap_free(rs);
        return NULL;
    }
    const char *p = sh->app->invites_boot;
    const char *end = p ? p + sh->app->invites_boot_len : NULL;
    while (p && p < end) {
        const char *x = p + strlen(p) + 1;
        if (!xf_invites_add(rs->invites, p, x))
            xf_log(XF_LOG_ERROR, "route: invite %s -> %s not cached (full)", p, x);
        p = x + strlen(x) + 1;
    }
    rs->tick.fire = tick_fire;
    xf_timer_arm(xf_shard_wheel(sh->shard), &rs->tick, 1); /* open the links at once */
    return rs;
}

void xf_route_shard_free(xf_route_shard *rs)
{
    if (!rs) return;
    xf_timer_cancel(xf_shard_wheel(rs->sh->shard), &rs->tick);
    while (rs->doms) {
        xf_ldom *d = rs->doms;
        rs->doms = d->next;
        for (uint32_t i = 0; i < XF_INTERNALS_MAX; i++)
            if (d->links[i]) xf_link_remove(d->links[i]);
        xf_heap_free(d);
    }
    xf_heap_free(rs->dom_index);
    xf_invites_free(rs->invites);
    xf_heap_free(rs->sh->scratch);
    rs->sh->scratch = NULL;
    xf_heap_free(rs);
}

/* ---- per-stanza log lines, rate limited ------------------------------------------------- */

static void log_flush_suppressed(xf_route_shard *rs, uint64_t second)
{
    if (rs->log_suppressed)
        xf_log(XF_LOG_WARN, "route: %llu per-stanza log line(s) suppressed (more than %u a second)",
               (unsigned long long)rs->log_suppressed, XF_ROUTE_LOG_PER_S);
    rs->log_suppressed = 0;
    rs->log_lines = 0;
    rs->log_second = second;
}

static bool log_ok(xf_s2s_shard *sh)
{
    xf_route_shard *rs = sh->rs;
    uint64_t second = xf_shard_wheel(sh->shard)->now_ms / 1000;
    if (second != rs->log_second) log_flush_suppressed(rs, second);
    if (rs->log_lines < XF_ROUTE_LOG_PER_S) {
        rs->log_lines++;
        return true;
    }
    rs->log_suppressed++;
    return false;
}

#define SLOG(sh, level, ...)                                                                       \
    do {                                                                                           \
        if (log_ok(sh)) xf_log(level, __VA_ARGS__);                                                \
    } while (0)

/* ---- delivery to an internal server -------------------------------------------------- */

static void deliver_internal_here(xf_s2s_shard *sh, const char *domain, const xf_spacked *p)
{
    xf_ldom *d = dom_find(sh->rs, domain);
    const char *why = "no link to an internal server is up";
    if (d) {
        for (uint32_t i = 0; i < sh->app->ninternals; i++) {
            if (!xf_link_ready(d->links[i])) continue;
            if (xf_link_write(d->links[i], p->bytes, p->m.len)) {
                count2(sh, XF_FAMILY_STANZAS_ROUTED, d->partner, "in", 1);
                count2(sh, XF_FAMILY_BYTES_ROUTED, d->partner, "in", p->m.len);
                return;
            }
            why = "the internal server's link is full";
        }
    } else {
        why = "no link serves this domain";
    }
    SLOG(sh, XF_LOG_INFO, "route: %s from %.*s to %.*s not delivered: %s", xf_kind_name(p->m.kind),
         (int)p->m.from_len, p->from, (int)p->m.to_len, p->to, why);
    xf_route_bounce(sh, p, "service-unavailable", NULL);
}

/* hdr: packed meta and strings (stanza.h); bytes: the stanza. `domain` picks the link. */
static void deliver_internal(xf_s2s_shard *sh, const char *domain, const xf_partner *pt,
                             const uint8_t *hdr, size_t hlen, const uint8_t *bytes, size_t len)
{
    uint32_t owner = owner_of(sh, pt);
    if (owner == me(sh)) {
        xf_spacked p;
        if (xf_spacked_join(hdr, hlen, bytes, &p)) deliver_internal_here(sh, domain, &p);
        return;
    }
    uint8_t buf[XF_DOMAIN_MAX + 1 + 3 * (XF_JID_MAX + 1) + sizeof(xf_smeta)];
    size_t dl = strlen(domain) + 1;
    memcpy(buf, domain, dl);
    memcpy(buf + dl, hdr, hlen);
    if (!xf_shard_send2(sh->shard, owner, XF_MSG_TO_INTERNAL, buf, (uint32_t)(dl + hlen), bytes,
                        (uint32_t)len)) {
        xf_spacked p;
        SLOG(sh, XF_LOG_WARN, "route: the queue to core %u is full: stanza bounced", owner);
        if (xf_spacked_join(hdr, hlen, bytes, &p))
            xf_route_bounce(sh, &p, "resource-constraint", NULL);
    }
}

/* ---- bounces ------------------------------------------------------------------------ */

/* Counts the bounce and writes its error stanza into out; 0 when this stanza never bounces. */
static size_t bounce_text(xf_s2s_shard *sh, const xf_smeta *m, const char *from, const char *to,
                          const char *id, const char *cond, const char *text, char *out, size_t cap)
{
    if (!xf_stanza_bounces(m)) {
        count_bounce(sh, "dropped");
        return 0;
    }
    count_bounce(sh, cond);
    return xf_bounce_build(m->kind, from, m->from_len, to, m->to_len, id, m->id_len, cond, text,
                           out, cap);
}

void xf_route_bounce(xf_s2s_shard *sh, const xf_spacked *p, const char *cond, const char *text)
{
    char out[8192];
    size_t n = bounce_text(sh, &p->m, p->from, p->to, p->id, cond, text, out, sizeof out);
    if (!n) return;
    /* The error travels back: its 'from' is the original 'to'. */
    xf_sfacts *f = XF_SCRATCH_FACTS(sh, 1);
    memset(&f->m, 0, sizeof f->m);
    f->m.kind = p->m.kind;
    f->m.type = XF_T_ERROR;
    f->m.origin = XF_ORIGIN_XFED;
    f->m.local = p->m.local;
    f->m.len = (uint32_t)n;
    f->m.from_len = p->m.to_len;
    f->m.to_len = p->m.from_len;
    f->m.id_len = 0;
    memcpy(f->from, p->to, p->m.to_len);
    f->from[p->m.to_len] = 0;
    memcpy(f->to, p->from, p->m.from_len);
    f->to[p->m.from_len] = 0;
    uint8_t hdr[sizeof(xf_smeta) + 2 * (XF_JID_MAX + 1)];
    size_t hl = xf_smeta_pack(f, hdr, sizeof hdr);
    char dom[XF_DOMAIN_MAX + 2];
    if (!hl) return;
    if (p->m.origin == XF_ORIGIN_INTERNAL) {
        /* back through the link serving the domain the stanza was for */
        if (!xf_jid_domain(f->from, dom, sizeof dom)) return;
        const xf_partner *pt = xf_snapshot_find(xf_s2s_snap(sh), dom, strlen(dom));
        if (!pt) {
            SLOG(sh, XF_LOG_INFO, "route: %s error for %s dropped: %s is no longer a partner", cond,
                 f->to, dom);
            return;
        }
        deliver_internal(sh, dom, pt, hdr, hl, (const uint8_t *)out, n);
    } else {
        if (!xf_jid_domain(f->to, dom, sizeof dom)) return;
        const char *why = NULL;
        if (!xf_s2s_route_out(sh, p->m.local, dom, hdr, hl, (const uint8_t *)out, n, &why))
            SLOG(sh, XF_LOG_INFO, "route: %s error to %s dropped (%s)", cond, f->to,
                 why ? why : "no stream");
    }
}

void xf_route_bounce_all(xf_s2s_shard *sh, const uint8_t *q, size_t len, const char *cond,
                         const char *text)
{
    size_t off = 0;
    xf_spacked p;
    while (off < len && xf_smeta_unpack(q + off, len - off, &p)) {
        xf_route_bounce(sh, &p, cond, text);
        off += xf_spacked_size(&p.m);
    }
}

/* ---- invites ------------------------------------------------------------------------ */

static void invite_change(xf_s2s_shard *sh, bool add, const char *u, const char *x)
{
    bool had = xf_invites_has(sh->rs->invites, u, x);
    if (add == had) return; /* nothing changes: no store write either */
    if (add ? !xf_invites_add(sh->rs->invites, u, x) : !xf_invites_del(sh->rs->invites, u, x)) {
        xf_log(XF_LOG_ERROR, "route: invite %s -> %s not recorded (cache full)", u, x);
        return;
    }
    xf_log(XF_LOG_INFO, "route: invite %s -> %s %s", u, x, add ? "recorded" : "deleted");
    uint8_t buf[sizeof(xf_invite_msg) + 2 * (XF_JID_MAX + 1)];
    xf_invite_msg m = {add, 0, (uint16_t)strlen(u), (uint16_t)strlen(x)};
    memcpy(buf, &m, sizeof m);
    memcpy(buf + sizeof m, u, m.u_len);
    memcpy(buf + sizeof m + m.u_len, x, m.x_len);
    uint32_t len = (uint32_t)(sizeof m + m.u_len + m.x_len);
    xf_rt *rt = xf_shard_rt(sh->shard);
    for (uint32_t i = 0; i < sh->app->shards; i++)
        if (i != me(sh) && !xf_shard_send(sh->shard, i, XF_MSG_INVITE, buf, len))
            xf_log(XF_LOG_ERROR, "route: invite change not sent to core %u (queue full)", i);
    if (!xf_shard_send(sh->shard, xf_rt_verify_id(rt), XF_MSG_INVITE, buf, len))
        xf_log(XF_LOG_ERROR, "route: invite %s -> %s not stored (queue full)", u, x);
}

static bool invite_unpack(const xf_spsc_rec *r, bool *add, char *u, char *x)
{
    xf_invite_msg m;
    if (r->len < sizeof m) return false;
    memcpy(&m, r->data, sizeof m);
    if (r->len != sizeof m + m.u_len + m.x_len || m.u_len > XF_JID_MAX || m.x_len > XF_JID_MAX)
        return false;
    memcpy(u, r->data + sizeof m, m.u_len);
    u[m.u_len] = 0;
    memcpy(x, r->data + sizeof m + m.u_len, m.x_len);
    x[m.x_len] = 0;
    *add = m.add;
    return true;
}

void xf_route_verify_msg(xf_s2s_app *app, xf_shard *s, const xf_spsc_rec *r)
{
    char u[XF_JID_MAX + 1], x[XF_JID_MAX + 1];
    bool add;
    if (!invite_unpack(r, &add, u, x)) return;
    if (!app->vstore) {
        char err[256];
        if (xf_store_open(app->store_path, &app->vstore, err, sizeof err) != XF_STORE_OK) {
            xf_log(XF_LOG_ERROR, "invites: store %s: %s: invite %s -> %s not saved",
                   app->store_path, err, u, x);
            app->vstore = NULL;
            return;
        }
    }
    xf_store_rc rc =
        add ? xf_store_invite_put(app->vstore, u, x) : xf_store_invite_del(app->vstore, u, x);
    if (rc != XF_STORE_OK && !(rc == XF_STORE_NOTFOUND && !add))
        xf_log(XF_LOG_ERROR, "invites: %s -> %s not %s: %s", u, x, add ? "saved" : "deleted",
               xf_store_errmsg(app->vstore));
    uint64_t n = 0;
    if (xf_store_invite_count(app->vstore, &n) == XF_STORE_OK)
        xf_metric_set(xf_shard_metrics(s), XF_METRIC_INVITES, n);
}

/* ---- internal -> partner ------------------------------------------------------------- */

/* An error written straight back on the link the stanza came from. */
static void refuse_on_link(xf_s2s_shard *sh, xf_link *l, const xf_sfacts *f, const char *cond,
                           const char *text, const char *partner, const char *reason)
{
    count_refused(sh, partner, reason);
    SLOG(sh, XF_LOG_INFO, "route: %s from %s to %s refused: %s", xf_kind_name(f->m.kind), f->from,
         f->to, text);
    char out[8192];
    size_t n = bounce_text(sh, &f->m, f->from, f->to, f->id, cond, text, out, sizeof out);
    if (n) xf_link_write(l, out, n);
}

void xf_route_from_internal(xf_link *l, const xf_xml_tok *t, const xf_xml_stanza *s)
{
    xf_s2s_shard *sh = xf_link_shard(l)->sh;
    xf_sfacts *f = XF_SCRATCH_FACTS(sh, 0);
    if (xf_sfacts_read(s, f)) {
        count_refused(sh, "", "improper-addressing");
        xf_log(XF_LOG_WARN,
               "route: a <%.*s> from an internal server without valid from/to: dropped",
               (int)s->name.len, s->name.ptr);
        return;
    }
    f->m.origin = XF_ORIGIN_INTERNAL;
    char to_dom[XF_DOMAIN_MAX + 2], from_dom[XF_DOMAIN_MAX + 2];
    if (!xf_jid_domain(f->to, to_dom, sizeof to_dom) ||
        !xf_jid_domain(f->from, from_dom, sizeof from_dom)) {
        refuse_on_link(sh, l, f, "jid-malformed", "a malformed address", "", "jid-malformed");
        return;
    }
    const xf_partner *pt = xf_snapshot_find(xf_s2s_snap(sh), to_dom, strlen(to_dom));
    if (!pt) {
        char text[400];
        snprintf(text, sizeof text, "'%s' is not a federated partner domain", to_dom);
        refuse_on_link(sh, l, f, "not-allowed", text, "", "not-a-partner");
        return;
    }
    int li = xf_s2s_local_index(sh->app, from_dom, strlen(from_dom));
    if (li < 0) {
        char text[400];
        snprintf(text, sizeof text, "'%s' is not a local domain of this gateway", from_dom);
        refuse_on_link(sh, l, f, "not-allowed", text, pt->domain, "not-local");
        return;
    }
    f->m.local = (uint8_t)li;
    log_stanza(sh, "internal->partner", t, s);
    bool drop_status = false;
    if (f->m.kind == XF_KIND_PRESENCE) {
        char u[XF_JID_MAX + 1], x[XF_JID_MAX + 1];
        if ((f->m.type == XF_T_SUBSCRIBE || f->m.type == XF_T_SUBSCRIBED ||
             f->m.type == XF_T_UNSUBSCRIBE || f->m.type == XF_T_UNSUBSCRIBED) &&
            xf_jid_bare(f->from, u, sizeof u) && xf_jid_bare(f->to, x, sizeof x))
            invite_change(sh, f->m.type == XF_T_SUBSCRIBE || f->m.type == XF_T_SUBSCRIBED, u, x);
        drop_status = pt->type != XF_PARTNER_FEDERATED && has_status(s);
    }
    const uint8_t *bytes;
    size_t len;
    if (!forward_bytes(sh, t, s, drop_status, &bytes, &len)) {
        refuse_on_link(sh, l, f, "resource-constraint", "the stanza could not be rewritten",
                       pt->domain, "rewrite-failed");
        return;
    }
    f->m.len = (uint32_t)len;
    uint8_t hdr[sizeof(xf_smeta) + 3 * (XF_JID_MAX + 1)];
    size_t hl = xf_smeta_pack(f, hdr, sizeof hdr);
    const char *why = NULL;
    if (!hl || !xf_s2s_route_out(sh, (uint32_t)li, to_dom, hdr, hl, bytes, len, &why)) {
        xf_spacked p;
        if (xf_spacked_join(hdr, hl, bytes, &p))
            xf_route_bounce(sh, &p, why ? why : "resource-constraint", NULL);
    }
}

/* ---- partner -> internal ------------------------------------------------------------- */

void xf_route_from_partner(xf_stream *st, const xf_xml_tok *t, const xf_xml_stanza *s,
                           uint32_t local, const char *from_domain, xf_sfacts *f)
{
    xf_s2s_shard *sh = st->sh;
    const xf_partner *p = xf_snapshot_find(xf_s2s_snap(sh), from_domain, strlen(from_domain));
    if (!p) return; /* the stream's checks ran on this snapshot: cannot happen */
    f->m.origin = XF_ORIGIN_PARTNER;
    f->m.local = (uint8_t)local;
    log_stanza(sh, "partner->internal", t, s);
    if (p->type == XF_PARTNER_PUBLIC_UNVERIFIED) {
        char u[XF_JID_MAX + 1], x[XF_JID_MAX + 1];
        if (!xf_jid_bare(f->to, u, sizeof u) || !xf_jid_bare(f->from, x, sizeof x) ||
            !xf_invites_has(sh->rs->invites, u, x)) {
            count_refused(sh, p->domain, "no-invite");
            xf_log(XF_LOG_INFO,
                   "route: %s%s%s from %s to %s refused: %s has no invite for it (partner %s is "
                   "public-unverified)",
                   xf_kind_name(f->m.kind), f->m.type == XF_T_SUBSCRIBE ? " subscribe" : "", "",
                   f->from, f->to, u, p->domain);
            if (f->m.kind == XF_KIND_PRESENCE && f->m.type == XF_T_SUBSCRIBE) {
                /* answered from U's bare JID, as if U declined */
                char out[8192], eu[6 * 1024 + 8], ex[6 * 1024 + 8];
                if (!xf_xml_escape(u, strlen(u), eu, sizeof eu) ||
                    !xf_xml_escape(f->from, f->m.from_len, ex, sizeof ex))
                    return;
                int n = snprintf(out, sizeof out,
                                 "<presence type='unsubscribed' from='%s' to='%s'/>", eu, ex);
                if (n <= 0 || (size_t)n >= sizeof out) return;
                xf_sfacts *a = f; /* reuse: the answer's facts */
                a->m.type = XF_T_UNSUBSCRIBED;
                a->m.origin = XF_ORIGIN_XFED;
                a->m.len = (uint32_t)n;
                a->m.id_len = 0;
                char tmp[XF_JID_MAX + 1];
                snprintf(tmp, sizeof tmp, "%s", a->from);
                snprintf(a->from, sizeof a->from, "%s", u);
                snprintf(a->to, sizeof a->to, "%s", tmp);
                a->m.from_len = (uint16_t)strlen(a->from);
                a->m.to_len = (uint16_t)strlen(a->to);
                uint8_t hdr[sizeof(xf_smeta) + 3 * (XF_JID_MAX + 1)];
                size_t hl = xf_smeta_pack(a, hdr, sizeof hdr);
                if (hl)
                    xf_s2s_route_out(sh, local, from_domain, hdr, hl, (const uint8_t *)out,
                                     (size_t)n, NULL);
            } else if (f->m.kind != XF_KIND_PRESENCE) {
                xf_spacked pk = {.m = f->m, .from = f->from, .to = f->to, .id = f->id};
                xf_route_bounce(sh, &pk, "service-unavailable", NULL);
            }
            return;
        }
    }
    const uint8_t *bytes;
    size_t len;
    if (!forward_bytes(sh, t, s, false, &bytes, &len)) {
        xf_spacked pk = {.m = f->m, .from = f->from, .to = f->to, .id = f->id};
        xf_route_bounce(sh, &pk, "resource-constraint", NULL);
        return;
    }
    f->m.len = (uint32_t)len;
    uint8_t hdr[sizeof(xf_smeta) + 3 * (XF_JID_MAX + 1)];
    size_t hl = xf_smeta_pack(f, hdr, sizeof hdr);
    if (!hl) return;
    deliver_internal(sh, from_domain, p, hdr, hl, bytes, len);
}

/* ---- messages ---------------------------------------------------------------------- */

bool xf_route_msg(xf_s2s_shard *sh, uint32_t src, const xf_spsc_rec *r)
{
    (void)src;
    if (r->type == XF_MSG_INVITE) {
        char u[XF_JID_MAX + 1], x[XF_JID_MAX + 1];
        bool add;
        if (invite_unpack(r, &add, u, x)) {
            if (add)
                xf_invites_add(sh->rs->invites, u, x);
            else
                xf_invites_del(sh->rs->invites, u, x);
        }
        return true;
    }
    if (r->type != XF_MSG_TO_INTERNAL) return false;
    const char *domain = (const char *)r->data;
    size_t dl = strnlen(domain, r->len < XF_DOMAIN_MAX + 1 ? r->len : XF_DOMAIN_MAX + 1);
    xf_spacked p;
    if (dl >= r->len || !xf_smeta_unpack(r->data + dl + 1, r->len - dl - 1, &p)) return true;
    deliver_internal_here(sh, domain, &p);
    return true;
}
