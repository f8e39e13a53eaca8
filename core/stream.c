/* The s2s stream state machine (RFC 6120 §4-§9, XEP-0220, XEP-0178, XEP-0344).
 *
 *   bytes ─► [TLS] ─► tokenizer events ─► header / element handlers
 *
 * Every decision about what a partner may do comes from negotiate.c (the
 * matrix row); this file only sequences the protocol. One stream per
 * connection; callbacks run on the owning thread. A stream is freed only when
 * no callback of it is on the stack (busy == 0) and its connection is gone. */
#include "stream.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "dialback.h"
#include "heap.h"
#include "route.h"
#include "log.h"
#include "tls_name.h"
#include "xml_el.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_SERVER  "jabber:server"
#define NS_DB      "jabber:server:dialback"
#define NS_TLS     "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL    "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SERR    "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_DBFEAT  "urn:xmpp:features:dialback"
#define NS_PING    "urn:xmpp:ping"
#define NS_SM      "urn:xmpp:sm:3"

enum { SM_OFF = 0, SM_ENABLING, SM_ON };
/* Log id of a stream: core.sequence */
#define SID(st) (unsigned)((st)->sid >> 40), (unsigned long long)((st)->sid & 0xffffffffffull)

enum {
    S_DIALING,  /* outbound: resolving and connecting */
    S_TLS,      /* TLS handshake before the (next) header */
    S_HEADER,   /* waiting for the peer's header */
    S_FEATURES, /* outbound: waiting for <stream:features> */
    S_STARTTLS, /* outbound: <starttls/> sent */
    S_SASL,     /* outbound: <auth/> sent */
    S_DB,       /* outbound: <db:result/> sent */
    S_VERIFY,   /* verification: <db:verify/> sent */
    S_OPEN,     /* inbound: header answered; pairs say what is authenticated */
    S_READY,    /* outbound: authenticated */
};

/* What an element handler asks the feed loop to do next. */
typedef enum { NEXT = 0, STOP, TLS_NOW } step;

static const char *dir_name(const xf_stream *st)
{
    return st->dir == XF_DIR_IN ? "in" : st->dir == XF_DIR_OUT ? "out" : "verify";
}

static const char *local_name(const xf_stream *st)
{
    return st->sh->app->locals[st->local];
}

/* ---- output ------------------------------------------------------------------ */

static bool wr(xf_stream *st, const void *data, size_t len)
{
    if (!st->c || xf_conn_closing(st->c)) return false;
    bool ok = st->tls ? xf_tls_write(st->tls, data, len) : xf_conn_write(st->c, data, len);
    if (!ok) {
        /* Past the output bound: a peer that stops reading is cut off. */
        xf_log(XF_LOG_WARN, "s2s %s #%u.%llu %s: output bound exceeded (%zu bytes queued): closing",
               dir_name(st), SID(st), st->remote, xf_conn_queued(st->c));
        xf_s2s_count_refusal(st->sh, st->dir, "output-bound");
        st->closing = true;
        xf_conn_close(st->c, false);
        return false;
    }
    st->last_tx = xf_now_ms();
    return true;
}

static bool wrf(xf_stream *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool wrf(xf_stream *st, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof buf); /* callers bound what they print */
    return wr(st, buf, (size_t)n);
}

/* Escapes text for an attribute value or character data. */
static const char *esc(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 7 < cap; in++) {
        const char *r = NULL;
        switch (*in) {
        case '&': r = "&amp;"; break;
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '\'': r = "&apos;"; break;
        case '"': r = "&quot;"; break;
        }
        if (r) {
            size_t k = strlen(r);
            memcpy(out + n, r, k);
            n += k;
        } else {
            out[n++] = *in;
        }
    }
    out[n] = 0;
    return out;
}

static void new_id(xf_stream *st)
{
    snprintf(st->id, sizeof st->id, "%016llx", (unsigned long long)xf_s2s_random(st->sh));
}

/* Our header: inbound answers (with our id), outbound opens. */
static bool send_header(xf_stream *st, bool db)
{
    char to[XF_DOMAIN_MAX * 6 + 1];
    const char *dbns = db ? " xmlns:db='" NS_DB "'" : "";
    st->header_sent = true;
    if (st->dir == XF_DIR_IN) {
        new_id(st);
        return wrf(st,
                   "<?xml version='1.0'?><stream:stream xmlns='" NS_SERVER
                   "' xmlns:stream='" NS_STREAMS "'%s id='%s' from='%s'%s%s%s%s>",
                   dbns, st->id, local_name(st), st->remote[0] ? " to='" : "",
                   st->remote[0] ? esc(st->remote, to, sizeof to) : "", st->remote[0] ? "'" : "",
                   st->peer_v1 || !st->got_header ? " version='1.0'" : "");
    }
    return wrf(st,
               "<?xml version='1.0'?><stream:stream xmlns='" NS_SERVER "' xmlns:stream='" NS_STREAMS
               "'%s from='%s' to='%s' version='1.0'>",
               dbns, local_name(st), esc(st->remote, to, sizeof to));
}

/* ---- ending ------------------------------------------------------------------- */

void xf_stream_fail(xf_stream *st, const char *cond, const char *fmt, ...)
{
    if (st->closing) return;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    xf_log(cond ? XF_LOG_WARN : XF_LOG_INFO, "s2s %s #%u.%llu %s%s%s: %s%s%s", dir_name(st),
           SID(st), local_name(st), st->dir == XF_DIR_IN ? "<-" : "->",
           st->remote[0] ? st->remote : "?", cond ? cond : "closed", cond ? ": " : "",
           cond ? why : "");
    if (cond) {
        const char *v[] = {cond};
        xf_family_inc(st->sh->m, XF_FAMILY_STREAMS_CLOSED,
                      xf_family_row(st->sh->m, XF_FAMILY_STREAMS_CLOSED, v), 1);
        xf_s2s_count_refusal(st->sh, st->dir, cond);
        if (st->status_row >= 0)
            xf_pstatus_auth_failed(st->sh->app->pstatus, st->sh->id, st->status_row, why,
                                   time(NULL));
    }
    if (st->c && !xf_conn_closing(st->c)) {
        if (cond) {
            if (!st->header_sent) send_header(st, false);
            char t[1024];
            wrf(st,
                "<stream:error><%s xmlns='" NS_SERR "'/>%s<text xmlns='" NS_SERR
                "'>%s</text></stream:error>",
                cond, st->too_big ? "<stanza-too-big xmlns='urn:xmpp:errors'/>" : "",
                esc(why, t, sizeof t));
        }
        if (st->header_sent) wr(st, "</stream:stream>", 16);
        if (st->tls) xf_tls_shutdown(st->tls);
    }
    st->closing = true;
    if (st->c) xf_conn_close(st->c, true);
}

static void stream_free(xf_stream *st)
{
    xf_s2s_shard *sh = st->sh;
    if (st->dir == XF_DIR_IN) { /* the core's inbound list */
        if (st->prev)
            st->prev->next = st->next;
        else if (sh->ins == st)
            sh->ins = st->next;
        if (st->next) st->next->prev = st->prev;
    }
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++)
        if (st->pairs[i].state == XF_PAIR_PENDING && st->pairs[i].pend >= 0)
            xf_s2s_pend_drop(sh, st->pairs[i].pend);
    if (st->tls) xf_tls_free(st->tls);
    xf_heap_free(st->tokmem);
    xf_heap_free(st->q);
    xf_heap_free(st->ua);
    xf_heap_free(st->vreq);
    xf_heap_free(st->dial);
    xf_heap_free(st);
}

static void enter(xf_stream *st)
{
    st->busy++;
}

static void leave(xf_stream *st)
{
    assert(st->busy > 0);
    if (--st->busy == 0 && st->dead && st->dns_pending == 0) stream_free(st);
}

void xf_stream_release(xf_stream *st)
{
    st->dead = true;
    st->busy++;
    leave(st);
}

/* ---- facts -------------------------------------------------------------------- */

static const xf_partner *partner_of(xf_stream *st, const char *domain)
{
    if (!domain || !domain[0]) return NULL;
    return xf_snapshot_find(xf_s2s_snap(st->sh), domain, strlen(domain));
}

static bool cert_names(xf_stream *st, const char *domain)
{
    const uint8_t *der;
    size_t len;
    if (!st->tls || !xf_tls_peer_chain_valid(st->tls) || !xf_tls_peer_cert(st->tls, &der, &len))
        return false;
    return xf_cert_names_domain(der, len, domain) != XF_ID_NONE;
}

static unsigned db_method(const xf_stream *st)
{
    return st->tls ? XF_METHOD_DB_TLS : XF_METHOD_DB_TCP;
}

static void count_auth(xf_stream *st, const char *partner, unsigned method, bool ok)
{
    const char *v[] = {partner, xf_neg_method_name(method), ok ? "success" : "failure"};
    xf_family_inc(st->sh->m, XF_FAMILY_AUTHENTICATIONS,
                  xf_family_row(st->sh->m, XF_FAMILY_AUTHENTICATIONS, v), 1);
}

/* Registers the stream with its partner: limits, status. */
bool xf_stream_attach(xf_stream *st, const xf_partner *p)
{
    if (st->partner[0]) return true;
    const char *why = NULL;
    if (!xf_s2s_limit_take(st->sh, p, st->dir, &why)) {
        xf_stream_fail(st, "resource-constraint", "%s", why);
        return false;
    }
    st->counted = true;
    snprintf(st->partner, sizeof st->partner, "%s", p->domain);
    st->pol = (uint8_t)(0x80 | p->tls | p->sasl << 2 | (p->dialback ? 1 : 0) << 4);
    const char *v[] = {p->domain, st->dir == XF_DIR_IN ? "in" : "out"};
    if (st->dir == XF_DIR_OUT) { /* inbound stanzas are counted where they are delivered */
        st->row_routed = xf_family_row(st->sh->m, XF_FAMILY_STANZAS_ROUTED, v);
        st->row_bytes = xf_family_row(st->sh->m, XF_FAMILY_BYTES_ROUTED, v);
    }
    st->status_row = xf_pstatus_row(st->sh->app->pstatus, st->sh->id, p->domain);
    if (st->status_row >= 0)
        xf_pstatus_stream(st->sh->app->pstatus, st->sh->id, st->status_row,
                          st->dir == XF_DIR_IN ? XF_PSTATUS_IN : XF_PSTATUS_OUT, 1);
    return true;
}

/* ---- TLS ---------------------------------------------------------------------- */

static bool tls_sink(void *arg, const uint8_t *data, size_t len)
{
    xf_stream *st = arg;
    if (!st->c || xf_conn_closing(st->c)) return false;
    if (!xf_conn_write(st->c, data, len)) return false;
    st->last_tx = xf_now_ms();
    return true;
}

static void feed(xf_stream *st, const uint8_t *data, size_t len);
static void tls_ready(xf_stream *st);

static void tls_plain(void *arg, const uint8_t *data, size_t len)
{
    xf_stream *st = arg;
    /* Plaintext can come in the same input as the handshake's last flight. */
    if (!st->tls_done && !st->closing) tls_ready(st);
    if (!st->closing) feed(st, data, len);
}

static void count_tls(xf_stream *st, bool ok)
{
    const char *v[] = {st->dir == XF_DIR_IN ? "in" : "out", ok ? xf_tls_version(st->tls) : "none",
                       ok ? xf_tls_cipher(st->tls) : "none", ok ? "success" : "failure"};
    xf_family_inc(st->sh->m, XF_FAMILY_TLS_HANDSHAKES,
                  xf_family_row(st->sh->m, XF_FAMILY_TLS_HANDSHAKES, v), 1);
}

static void tls_ready(xf_stream *st)
{
    st->tls_done = true;
    count_tls(st, true);
    xf_log(XF_LOG_DEBUG, "s2s %s #%u.%llu: TLS %s %s%s", dir_name(st), SID(st),
           xf_tls_version(st->tls), xf_tls_cipher(st->tls),
           xf_tls_resumed(st->tls) ? " (resumed)" : "");
    st->state = S_HEADER;
    if (st->dir != XF_DIR_IN) send_header(st, true);
}

/* Ciphertext in; plaintext goes to feed(). */
static void tls_in(xf_stream *st, const uint8_t *data, size_t len)
{
    xf_tls_rc rc = xf_tls_input(st->tls, data, len, tls_plain, st);
    if (!st->tls_done && xf_tls_ready(st->tls) && !st->closing) tls_ready(st);
    if (rc == XF_TLS_ERROR && !st->closing) {
        if (!st->tls_done) count_tls(st, false);
        xf_log(XF_LOG_WARN, "s2s %s #%u.%llu %s: TLS failed: %s", dir_name(st), SID(st),
               st->remote[0] ? st->remote : "?", xf_tls_error(st->tls));
        xf_s2s_count_refusal(st->sh, st->dir, "tls-error");
        if (st->status_row >= 0)
            xf_pstatus_auth_failed(st->sh->app->pstatus, st->sh->id, st->status_row,
                                   "TLS handshake failed", time(NULL));
        st->closing = true; /* no stream error can travel over a broken TLS layer */
        xf_conn_close(st->c, false);
    } else if (rc == XF_TLS_CLOSED && !st->closing) {
        xf_stream_fail(st, NULL, "TLS closed by the peer");
    }
}

/* Switches to TLS; `rest` are bytes already received after the element. */
static void start_tls(xf_stream *st, const uint8_t *rest, size_t rest_len)
{
    xf_s2s_app *app = st->sh->app;
    if (st->dir == XF_DIR_IN)
        st->tls = xf_tls_accept(app->tls, tls_sink, st);
    else
        st->tls = xf_tls_connect(app->tls, st->remote, local_name(st),
                                 st->direct_tls ? "xmpp-server" : NULL, tls_sink, st);
    if (!st->tls) {
        xf_stream_fail(st, "internal-server-error", "could not start TLS (out of memory)");
        return;
    }
    xf_xml_init(&st->tok, &st->sh->lim, XF_XML_STREAM, st->tokmem, st->sh->tokmem);
    st->fed_end = 0;
    st->header_sent = false;
    st->got_header = false;
    st->state = S_TLS;
    if (st->dir != XF_DIR_IN || rest_len) tls_in(st, rest, rest_len); /* ClientHello */
}

/* ---- connection callbacks ------------------------------------------------------ */

static bool is_authed(const xf_stream *st)
{
    if (st->dir != XF_DIR_IN) return st->state == S_READY;
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++)
        if (st->pairs[i].state == XF_PAIR_VALID) return true;
    return false;
}

static void arm_timer(xf_stream *st);

static void on_data(xf_conn *c, const uint8_t *data, size_t len)
{
    xf_stream *st = xf_conn_ctx(c);
    if (!st || st->closing) return;
    enter(st);
    st->last_rx = xf_now_ms();
    if (st->tls)
        tls_in(st, data, len);
    else
        feed(st, data, len);
    leave(st);
}

/* The connection ends from below (EOF, graceful stop): end the stream politely. */
static void conn_ends(xf_conn *c, const char *cond, const char *why)
{
    xf_stream *st = xf_conn_ctx(c);
    if (!st) {
        xf_conn_close(c, true);
        return;
    }
    enter(st);
    if (!st->closing) xf_stream_fail(st, st->header_sent ? cond : NULL, "%s", why);
    leave(st);
}

static void on_eof(xf_conn *c)
{
    conn_ends(c, NULL, "the peer closed the connection");
}

static void on_connect(xf_conn *c, int err)
{
    xf_stream *st = xf_conn_ctx(c);
    if (!st || err) return; /* on_close follows and tries the next address */
    enter(st);
    xf_stream_connected(st, st->direct_tls);
    leave(st);
}

static void on_close(xf_conn *c, int err)
{
    xf_stream *st = xf_conn_ctx(c);
    xf_conn_set_ctx(c, NULL);
    if (!st) return;
    enter(st);
    st->c = NULL;
    xf_s2s_shard *sh = st->sh;
    if (st->state == S_DIALING && !st->closing) {
        char why[96];
        snprintf(why, sizeof why, "connect failed: %s", err ? strerror(-err) : "closed");
        if (err == -ECANCELED)
            xf_s2s_dial_abort(st, "xfed is shutting down");
        else
            xf_s2s_dial_next(st, why); /* may find another address */
        leave(st);
        return;
    }
    if (st->dir == XF_DIR_IN)
        xf_metric_add(sh->m, XF_METRIC_S2S_IN_OPEN, -1);
    else if (st->dir == XF_DIR_OUT)
        xf_metric_add(sh->m, XF_METRIC_S2S_OUT_OPEN, -1);
    if (st->counted) xf_s2s_limit_give(sh, st->partner, st->dir);
    if (st->status_row >= 0 && st->dir != XF_DIR_VERIFY)
        xf_pstatus_stream(sh->app->pstatus, sh->id, st->status_row,
                          st->dir == XF_DIR_IN ? XF_PSTATUS_IN : XF_PSTATUS_OUT, -1);
    if (st->dir == XF_DIR_VERIFY && st->vreq)
        xf_s2s_verify_done(st, XF_DB_ERROR, "the authoritative server closed the stream");
    if (st->dir == XF_DIR_OUT) {
        xf_s2s_out_unlink(st);
        xf_stream_out_abandon(st, "remote-server-timeout", "the stream to the partner ended");
    }
    xf_log(XF_LOG_DEBUG, "s2s %s #%u.%llu: connection closed (%d)", dir_name(st), SID(st), err);
    st->dead = true;
    leave(st);
}

static void on_timer(xf_conn *c)
{
    xf_stream *st = xf_conn_ctx(c);
    if (!st || st->closing) return;
    enter(st);
    const xf_gateway *g = xf_snapshot_gateway(xf_s2s_snap(st->sh));
    uint64_t now = xf_now_ms();
    bool authed = is_authed(st);
    const xf_partner *p = partner_of(st, st->partner);
    if (st->dir == XF_DIR_VERIFY) {
        if (now >= st->born + XF_S2S_VERIFY_MS) {
            xf_s2s_verify_done(st, XF_DB_ERROR, "the authoritative server did not answer in time");
            xf_stream_fail(st, "connection-timeout", "db:verify got no answer in %u s",
                           XF_S2S_VERIFY_MS / 1000);
        }
    } else if (!st->ever_header && st->dir == XF_DIR_IN && now >= st->born + XF_S2S_HEADER_MS) {
        xf_stream_fail(st, "connection-timeout", "no stream header within %u s",
                       XF_S2S_HEADER_MS / 1000);
    } else if (!authed && now >= st->born + (uint64_t)g->stream_establishment_timeout * 1000) {
        xf_stream_fail(st, "connection-timeout", "not authenticated within %u s",
                       g->stream_establishment_timeout);
    } else if (authed && now >= st->last_stanza + (uint64_t)g->stream_inactivity_timeout * 1000) {
        xf_stream_fail(st, "connection-timeout", "no stanza for %u s",
                       g->stream_inactivity_timeout);
    } else if (authed && p && p->keepalive &&
               now >= st->last_rx + (uint64_t)g->keepalive_interval * 1000) {
        xf_stream_fail(st, "connection-timeout", "silent for %u s (keepalive interval)",
                       g->keepalive_interval);
    } else if (authed && p && p->keepalive &&
               now >= st->last_tx + (uint64_t)g->keepalive_interval * 500) {
        wr(st, " ", 1); /* whitespace keepalive */
    }
    if (!st->closing) arm_timer(st);
    leave(st);
}

static void on_shutdown(xf_conn *c)
{
    conn_ends(c, "system-shutdown", "xfed is shutting down");
}

const xf_conn_ops xf_stream_ops = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_connect = on_connect,
    .on_close = on_close,
    .on_timer = on_timer,
    .on_shutdown = on_shutdown,
};

/* The next deadline: header, establishment, inactivity or keepalive. The
 * timer may fire early (deadlines only move later); it then re-arms. */
static void arm_timer(xf_stream *st)
{
    if (!st->c) return;
    const xf_gateway *g = xf_snapshot_gateway(xf_s2s_snap(st->sh));
    uint64_t now = xf_now_ms(), next;
    if (st->dir == XF_DIR_VERIFY)
        next = st->born + XF_S2S_VERIFY_MS;
    else if (!is_authed(st))
        next = st->born + (st->ever_header || st->dir != XF_DIR_IN
                               ? (uint64_t)g->stream_establishment_timeout * 1000
                               : XF_S2S_HEADER_MS);
    else {
        next = st->last_stanza + (uint64_t)g->stream_inactivity_timeout * 1000;
        uint64_t ka = st->last_tx + (uint64_t)g->keepalive_interval * 500;
        if (ka < next) next = ka;
        uint64_t est = st->born + (uint64_t)g->stream_establishment_timeout * 1000;
        if (est > now && est < next) next = est; /* still negotiating pairs */
    }
    uint64_t ms = next > now ? next - now : 1;
    if (ms > 3600000) ms = 3600000;
    xf_conn_timer(st->c, (uint32_t)ms);
}

/* ---- lifecycle ------------------------------------------------------------------ */

xf_stream *xf_stream_new(xf_s2s_shard *sh, xf_sdir dir)
{
    xf_heap *h = xf_shard_heap(sh->shard);
    xf_stream *st = xf_heap_malloc(h, sizeof *st);
    void *mem = xf_heap_malloc(h, sh->tokmem);
    if (!st || !mem) {
        xf_heap_free(st);
        xf_heap_free(mem);
        return NULL;
    }
    memset(st, 0, sizeof *st);
    st->sh = sh;
    st->dir = dir;
    st->tokmem = mem;
    st->status_row = -1;
    st->sid = ++sh->next_sid;
    st->born = st->last_rx = st->last_tx = st->last_stanza = xf_now_ms();
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++)
        st->pairs[i].pend = -1;
    xf_xml_init(&st->tok, &sh->lim, XF_XML_STREAM, mem, sh->tokmem);
    st->row_routed = st->row_bytes = -1;
    if (dir == XF_DIR_IN) {
        st->next = sh->ins;
        if (sh->ins) sh->ins->prev = st;
        sh->ins = st;
    }
    return st;
}

void xf_stream_accepted(xf_stream *st, xf_conn *c, bool direct)
{
    st->c = c;
    st->direct_tls = direct;
    st->state = S_HEADER;
    xf_conn_set_ctx(c, st);
    xf_conn_set_ops(c, &xf_stream_ops);
    xf_metric_add(st->sh->m, XF_METRIC_S2S_IN_OPEN, 1);
    xf_family_inc(st->sh->m, XF_FAMILY_STREAMS_OPENED, st->sh->row_in_opened, 1);
    arm_timer(st);
    if (direct) start_tls(st, NULL, 0);
}

void xf_stream_connected(xf_stream *st, bool direct)
{
    xf_heap_free(st->dial);
    st->dial = NULL;
    st->born = st->last_rx = st->last_tx = xf_now_ms();
    if (st->dir == XF_DIR_OUT) {
        xf_metric_add(st->sh->m, XF_METRIC_S2S_OUT_OPEN, 1);
        xf_family_inc(st->sh->m, XF_FAMILY_STREAMS_OPENED, st->sh->row_out_opened, 1);
    }
    xf_log(XF_LOG_DEBUG, "s2s %s #%u.%llu %s->%s: connected%s", dir_name(st), SID(st),
           local_name(st), st->remote, direct ? " (direct TLS)" : "");
    arm_timer(st);
    if (direct) {
        start_tls(st, NULL, 0);
    } else {
        st->state = S_HEADER;
        send_header(st, true);
    }
}

/* ---- outbound queue and XEP-0198 ---------------------------------------------------- */

/* Appends a packed stanza to a growable buffer (the wait queue or the unacked ring). */
static bool buf_append(xf_stream *st, uint8_t **b, uint32_t *blen, uint32_t *bcap,
                       const uint8_t *hdr, size_t hlen, const uint8_t *bytes, size_t len)
{
    size_t need = *blen + hlen + len;
    if (need > XF_S2S_QUEUE_BYTES + (XF_ROUTE_STANZA_MAX)) return false;
    if (need > *bcap) {
        uint32_t cap = *bcap ? *bcap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *q = xf_heap_malloc(xf_shard_heap(st->sh->shard), cap);
        if (!q) return false;
        if (*blen) memcpy(q, *b, *blen);
        xf_heap_free(*b);
        *b = q;
        *bcap = cap;
    }
    memcpy(*b + *blen, hdr, hlen);
    memcpy(*b + *blen + hlen, bytes, len);
    *blen += (uint32_t)(hlen + len);
    return true;
}

/* Writes one stanza on a ready stream; with XEP-0198 on, keeps a copy until acknowledged. */
static bool send_stanza(xf_stream *st, const uint8_t *hdr, size_t hlen, const uint8_t *bytes,
                        size_t len)
{
    if (!wr(st, bytes, len)) return false;
    st->last_stanza = xf_now_ms();
    xf_family_inc(st->sh->m, XF_FAMILY_STANZAS_ROUTED, st->row_routed, 1);
    xf_family_inc(st->sh->m, XF_FAMILY_BYTES_ROUTED, st->row_bytes, len);
    if (st->sm == SM_OFF) return true;
    st->sm_sent++;
    if (st->ua_head > (1u << 20) && st->ua_head * 2 > st->ua_len) { /* compact */
        memmove(st->ua, st->ua + st->ua_head, st->ua_len - st->ua_head);
        st->ua_len -= st->ua_head;
        st->ua_head = 0;
    }
    if (buf_append(st, &st->ua, &st->ua_len, &st->ua_cap, hdr, hlen, bytes, len)) {
        st->ua_count++;
        xf_metric_add(st->sh->m, XF_METRIC_SM_UNACKED, 1);
    } else {
        xf_log(XF_LOG_WARN,
               "s2s out #%u.%llu %s: unacknowledged stanzas past the bound: "
               "this one is no longer tracked",
               SID(st), st->remote);
    }
    if (!st->sm_r_out) {
        st->sm_r_out = true;
        wrf(st, "<r xmlns='" NS_SM "'/>");
    }
    return true;
}

static void flush_queue(xf_stream *st)
{
    size_t off = 0;
    uint32_t n = 0;
    xf_spacked p;
    while (off < st->qlen && xf_smeta_unpack(st->q + off, st->qlen - off, &p)) {
        size_t hl = (size_t)(p.bytes - (st->q + off));
        if (!send_stanza(st, st->q + off, hl, p.bytes, p.m.len)) break;
        off += xf_spacked_size(&p.m);
        n++;
    }
    if (n) xf_log(XF_LOG_DEBUG, "s2s out #%u.%llu: %u queued stanza(s) sent", SID(st), n);
    if (off < st->qlen) /* the stream broke while flushing: the rest goes back */
        xf_route_bounce_all(st->sh, st->q + off, st->qlen - off, "remote-server-timeout",
                            "the stream to the partner failed");
    xf_metric_add(st->sh->m, XF_METRIC_OUT_QUEUED, -(int64_t)st->qcount);
    xf_heap_free(st->q);
    st->q = NULL;
    st->qlen = st->qcap = st->qcount = 0;
}

bool xf_stream_out_send(xf_stream *st, const uint8_t *hdr, size_t hlen, const uint8_t *bytes,
                        size_t len)
{
    if (st->state == S_READY && !st->closing) return send_stanza(st, hdr, hlen, bytes, len);
    if (st->closing || st->qcount >= XF_S2S_QUEUE_STANZAS ||
        st->qlen + hlen + len > XF_S2S_QUEUE_BYTES)
        return false;
    if (!buf_append(st, &st->q, &st->qlen, &st->qcap, hdr, hlen, bytes, len)) return false;
    if (st->qcount++ == 0) st->q_since = xf_now_ms();
    xf_metric_add(st->sh->m, XF_METRIC_OUT_QUEUED, 1);
    return true;
}

/* The stream ends: what waited and what was never acknowledged goes back (spec §7). */
void xf_stream_out_abandon(xf_stream *st, const char *cond, const char *why)
{
    if (st->qcount) {
        xf_log(XF_LOG_WARN, "s2s out #%u.%llu %s->%s: %u queued stanza(s) bounced (%s)", SID(st),
               local_name(st), st->remote, st->qcount, cond);
        xf_metric_add(st->sh->m, XF_METRIC_OUT_QUEUED, -(int64_t)st->qcount);
        uint8_t *q = st->q;
        uint32_t qlen = st->qlen;
        st->q = NULL;
        st->qlen = st->qcap = st->qcount = 0;
        xf_route_bounce_all(st->sh, q, qlen, cond, why);
        xf_heap_free(q);
    }
    if (st->ua_count) {
        xf_log(XF_LOG_WARN,
               "s2s out #%u.%llu %s->%s: %u stanza(s) sent but not acknowledged (XEP-0198): "
               "bounced",
               SID(st), local_name(st), st->remote, st->ua_count);
        xf_metric_add(st->sh->m, XF_METRIC_SM_UNACKED, -(int64_t)st->ua_count);
        uint8_t *ua = st->ua;
        uint32_t h = st->ua_head, l = st->ua_len;
        st->ua = NULL;
        st->ua_head = st->ua_len = st->ua_cap = st->ua_count = 0;
        xf_route_bounce_all(st->sh, ua + h, l - h, "remote-server-timeout",
                            "the stream to the partner ended before the stanza was acknowledged");
        xf_heap_free(ua);
    }
}

/* <a h='N'/>: the peer handled N stanzas since <enable/>; drop those from the unacked ring. */
static void sm_ack(xf_stream *st, const xf_el *e)
{
    xf_xml_slice hv;
    char hs[16];
    if (!xf_el_attr(e, "h", &hv) || xf_xml_decode(hv, hs, sizeof hs) >= sizeof hs) return;
    hs[sizeof hs - 1] = 0;
    uint32_t h = (uint32_t)strtoul(hs, NULL, 10);
    uint32_t n = h - st->sm_acked;
    if (n > st->ua_count) {
        xf_stream_fail(st, "undefined-condition", "the peer acknowledged %u stanzas, %u were sent",
                       h, st->sm_sent);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        xf_spacked p;
        if (!xf_smeta_unpack(st->ua + st->ua_head, st->ua_len - st->ua_head, &p)) break;
        st->ua_head += (uint32_t)xf_spacked_size(&p.m);
    }
    st->ua_count -= n;
    st->sm_acked = h;
    xf_metric_add(st->sh->m, XF_METRIC_SM_UNACKED, -(int64_t)n);
    if (st->ua_count == 0) st->ua_head = st->ua_len = 0;
    st->sm_r_out = false;
    if (st->ua_count) { /* more went out since that request */
        st->sm_r_out = true;
        wrf(st, "<r xmlns='" NS_SM "'/>");
    }
}

static void out_ready(xf_stream *st, unsigned method)
{
    st->state = S_READY;
    st->method = (uint8_t)method;
    st->last_stanza = xf_now_ms();
    xf_xml_set_stanza_max(&st->tok, XF_XML_STANZA_POSTAUTH_MAX);
    count_auth(st, st->partner, method, true);
    if (st->status_row >= 0)
        xf_pstatus_auth_ok(st->sh->app->pstatus, st->sh->id, st->status_row, method, time(NULL));
    xf_log(XF_LOG_INFO, "s2s out #%u.%llu %s->%s: authenticated, method=%s%s%s", SID(st),
           local_name(st), st->remote, xf_neg_method_name(method), st->tls ? " tls=" : "",
           st->tls ? xf_tls_version(st->tls) : "");
    arm_timer(st);
    if (st->sm_offered) { /* XEP-0198: acknowledgements tell what the partner really got */
        st->sm = SM_ENABLING;
        st->sm_sent = st->sm_acked = 0;
        wrf(st, "<enable xmlns='" NS_SM "'/>");
    }
    flush_queue(st);
}

/* ---- header ---------------------------------------------------------------------- */

static size_t decode_to(xf_xml_slice raw, char *out, size_t cap)
{
    if (!raw.ptr) {
        out[0] = 0;
        return 0;
    }
    size_t n = xf_xml_decode(raw, out, cap);
    if (n >= cap) return SIZE_MAX; /* too long */
    out[n] = 0;
    return n;
}

static void lower_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
}

static xf_features_in features_for(xf_stream *st, const xf_partner *p)
{
    xf_neg_facts f = {p, st->tls != NULL, p ? cert_names(st, st->remote) : false};
    return xf_neg_features_in(&f);
}

/* What both directions read from the peer's header: namespace, version, xmlns:db. */
static bool header_facts(xf_stream *st, const xf_xml_header *h)
{
    if (!xf_slice_eq(h->content_ns, NS_SERVER)) {
        xf_stream_fail(st, "invalid-namespace", "the stream's default namespace must be '%s'",
                       NS_SERVER);
        return false;
    }
    char ver[16];
    size_t vn = decode_to(h->version, ver, sizeof ver);
    st->peer_v1 = vn != SIZE_MAX && vn > 0 && ver[0] >= '1' && ver[0] <= '9';
    xf_xml_slice dbns;
    st->peer_db = xf_xml_header_ns(&st->tok, "db", 2, &dbns) && xf_slice_eq(dbns, NS_DB);
    return true;
}

static void header_in(xf_stream *st, const xf_xml_header *h)
{
    char to[XF_DOMAIN_MAX + 2], from[XF_DOMAIN_MAX + 2];
    bool restart = st->ever_header;
    st->got_header = st->ever_header = true;
    if (!restart) arm_timer(st); /* from the header deadline to the establishment one */
    if (!header_facts(st, h)) return;
    /* A 1.0 peer saw our <dialback><errors/></dialback>: it takes dialback errors. */
    st->peer_db_errors = st->peer_v1;
    size_t tn = decode_to(h->to, to, sizeof to);
    int li = tn == SIZE_MAX ? -1 : xf_s2s_local_index(st->sh->app, to, tn);
    if (li < 0 || (restart && li != st->local)) {
        xf_stream_fail(st, "host-unknown", "'%s' is not a domain served here",
                       tn == SIZE_MAX ? "(too long)"
                       : tn == 0      ? "(no 'to')"
                                      : to);
        return;
    }
    st->local = (uint8_t)li;
    size_t fn = decode_to(h->from, from, sizeof from);
    if (fn == SIZE_MAX) fn = 0, from[0] = 0;
    lower_ascii(from);
    const xf_partner *p = NULL;
    if (fn) {
        if (restart && st->remote[0] && strcmp(from, st->remote) != 0) {
            xf_stream_fail(st, "invalid-from", "the restarted stream names '%s', not '%s'", from,
                           st->remote);
            return;
        }
        snprintf(st->remote, sizeof st->remote, "%s", from);
        p = partner_of(st, from);
        if (!p) {
            xf_stream_fail(st, "policy-violation", "'%s' is not a federated partner domain", from);
            return;
        }
        if (!xf_stream_attach(st, p)) return;
    }
    bool sasl_done = false;
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++)
        sasl_done |=
            st->pairs[i].state == XF_PAIR_VALID && st->pairs[i].method == XF_METHOD_SASL_TLS;
    if (!st->peer_v1) {
        /* Pre-1.0 (XEP-0220 legacy): no features, dialback on this transport only. */
        if (p && !(xf_matrix_row(p->tls, p->sasl, p->dialback)->methods & db_method(st))) {
            send_header(st, false);
            xf_stream_fail(st, "policy-violation",
                           "the peer speaks pre-1.0 XMPP (dialback only) but %s is not allowed "
                           "for '%s'",
                           xf_neg_method_name(db_method(st)), p->domain);
            return;
        }
        send_header(st, true);
        st->state = S_OPEN;
        return;
    }
    if (sasl_done) { /* restarted after SASL: nothing left to negotiate */
        send_header(st, false);
        wrf(st, "<stream:features/>");
        st->state = S_OPEN;
        return;
    }
    xf_features_in f = features_for(st, p);
    send_header(st, f.dialback);
    if (f.why_none) {
        xf_stream_fail(st, "policy-violation", "%s", f.why_none);
        return;
    }
    char buf[512];
    int n = snprintf(buf, sizeof buf, "<stream:features>");
    if (f.starttls != XF_STARTTLS_NONE)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "<starttls xmlns='" NS_TLS "'>%s</starttls>",
                      f.starttls == XF_STARTTLS_REQUIRED ? "<required/>" : "");
    if (f.external)
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "<mechanisms xmlns='" NS_SASL
                      "'><mechanism>EXTERNAL</mechanism></mechanisms>");
    if (f.dialback)
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "<dialback xmlns='" NS_DBFEAT "'><errors/></dialback>");
    n += snprintf(buf + n, sizeof buf - (size_t)n, "</stream:features>");
    wr(st, buf, (size_t)n);
    st->state = S_OPEN;
}

static void out_step(xf_stream *st);

static void header_out(xf_stream *st, const xf_xml_header *h)
{
    st->got_header = true;
    if (!header_facts(st, h)) return;
    if (decode_to(h->id, st->peer_id, sizeof st->peer_id) == SIZE_MAX) st->peer_id[0] = 0;
    if (st->peer_v1) {
        st->state = S_FEATURES;
        return;
    }
    memset(&st->offered, 0, sizeof st->offered);
    st->offered.dialback = st->peer_db;
    out_step(st); /* pre-1.0: no features will come */
}

/* ---- outbound negotiation ------------------------------------------------------------ */

static void send_db_verify(xf_stream *st)
{
    xf_dbv_request *q = st->vreq;
    char a[XF_DOMAIN_MAX * 6], b[XF_DOMAIN_MAX * 6], id[XF_S2S_PEER_ID_MAX * 6],
        k[XF_S2S_KEY_MAX * 6];
    wrf(st, "<db:verify xmlns:db='" NS_DB "' from='%s' to='%s' id='%s'>%s</db:verify>",
        esc(q->receiving, a, sizeof a), esc(q->originating, b, sizeof b),
        esc(q->stream_id, id, sizeof id), esc(q->key, k, sizeof k));
    st->state = S_VERIFY;
}

/* After features (or a pre-1.0 header): the next step the row allows. */
static void out_step(xf_stream *st)
{
    if (st->dir == XF_DIR_VERIFY) {
        if (!st->tls && st->peer_v1 && st->offered.starttls) {
            wrf(st, "<starttls xmlns='" NS_TLS "'/>");
            st->state = S_STARTTLS;
        } else {
            send_db_verify(st);
        }
        return;
    }
    if (st->sasl_ok) {
        out_ready(st, XF_METHOD_SASL_TLS);
        return;
    }
    const xf_partner *p = partner_of(st, st->partner);
    if (!p) {
        xf_stream_fail(st, "policy-violation", "'%s' is no longer a federated partner", st->remote);
        return;
    }
    xf_out_step s = xf_neg_next_out(p, st->tls != NULL, &st->offered, st->external_failed);
    switch (s.action) {
    case XF_OUT_STARTTLS:
        wrf(st, "<starttls xmlns='" NS_TLS "'/>");
        st->state = S_STARTTLS;
        break;
    case XF_OUT_EXTERNAL:
        wrf(st, "<auth xmlns='" NS_SASL "' mechanism='EXTERNAL'>=</auth>");
        st->state = S_SASL;
        break;
    case XF_OUT_DIALBACK: {
        if (!st->peer_id[0]) {
            xf_stream_fail(st, "invalid-id", "the peer's stream header has no id for dialback");
            return;
        }
        size_t slen;
        const char *secret = xf_s2s_db_secret(st->sh, &slen);
        char key[XF_DIALBACK_KEY_LEN + 1];
        if (!xf_dialback_key(secret, slen, st->remote, local_name(st), st->peer_id, key)) {
            xf_stream_fail(st, "internal-server-error", "dialback key computation failed");
            return;
        }
        char to[XF_DOMAIN_MAX * 6];
        wrf(st, "<db:result xmlns:db='" NS_DB "' from='%s' to='%s'>%s</db:result>", local_name(st),
            esc(st->remote, to, sizeof to), key);
        st->state = S_DB;
        break;
    }
    case XF_OUT_FAIL:
        count_auth(st, st->partner, 0, false);
        xf_stream_fail(st, "policy-violation", "%s", s.why);
        break;
    }
}

static void features_out(xf_stream *st, const xf_el *f)
{
    xf_el k;
    memset(&st->offered, 0, sizeof st->offered);
    st->offered.version_1 = true;
    st->offered.dialback = st->peer_db;
    for (const char *it = NULL; xf_el_child(f, &it, &k);) {
        if (xf_slice_eq(k.name, "starttls") && xf_slice_eq(k.ns, NS_TLS)) {
            xf_el r;
            st->offered.starttls = true;
            st->offered.starttls_required = xf_el_find(&k, "required", NULL, &r);
        } else if (xf_slice_eq(k.name, "mechanisms") && xf_slice_eq(k.ns, NS_SASL)) {
            xf_el m;
            for (const char *i2 = NULL; xf_el_child(&k, &i2, &m);) {
                char mech[32];
                xf_el_text(&m, mech, sizeof mech);
                if (strcmp(mech, "EXTERNAL") == 0) st->offered.external = true;
            }
        } else if (xf_slice_eq(k.name, "dialback") && xf_slice_eq(k.ns, NS_DBFEAT)) {
            st->offered.dialback = true;
        } else if (xf_slice_eq(k.name, "sm") && xf_slice_eq(k.ns, NS_SM)) {
            st->sm_offered = true;
        }
    }
    out_step(st);
}

static step element_out(xf_stream *st, const xf_xml_stanza *s, const xf_el *e)
{
    if (st->state == S_FEATURES && xf_slice_eq(s->name, "features") &&
        xf_slice_eq(s->ns, NS_STREAMS)) {
        features_out(st, e);
        return NEXT;
    }
    if (st->state == S_STARTTLS && xf_slice_eq(s->ns, NS_TLS)) {
        if (xf_slice_eq(s->name, "proceed")) return TLS_NOW;
        xf_stream_fail(st, NULL, "the peer refused STARTTLS");
        return STOP;
    }
    if (st->state == S_SASL && xf_slice_eq(s->ns, NS_SASL)) {
        if (xf_slice_eq(s->name, "success")) {
            st->sasl_ok = true;
            st->restart = true; /* the feed loop restarts the stream */
            return NEXT;
        }
        xf_el cond;
        const char *it = NULL;
        char cn[64] = "?";
        if (xf_el_child(e, &it, &cond))
            snprintf(cn, sizeof cn, "%.*s", (int)cond.name.len, cond.name.ptr);
        xf_log(XF_LOG_WARN, "s2s out #%u.%llu %s->%s: SASL EXTERNAL refused (%s)", SID(st),
               local_name(st), st->remote, cn);
        count_auth(st, st->partner, XF_METHOD_SASL_TLS, false);
        st->external_failed = true;
        out_step(st);
        return NEXT;
    }
    if ((st->state == S_DB || st->state == S_VERIFY) && xf_slice_eq(s->ns, NS_DB)) {
        xf_xml_slice type;
        bool is_result = xf_slice_eq(s->name, "result");
        if ((is_result && st->state != S_DB) || (!is_result && st->state != S_VERIFY) ||
            !xf_el_attr(e, "type", &type))
            return NEXT; /* not the answer we wait for */
        if (st->state == S_VERIFY) {
            xf_s2s_verify_done(st,
                               xf_slice_eq(type, "valid")     ? XF_DB_VALID
                               : xf_slice_eq(type, "invalid") ? XF_DB_INVALID
                                                              : XF_DB_ERROR,
                               "the authoritative server answered");
            xf_stream_fail(st, NULL, "db:verify answered");
            return STOP;
        }
        if (xf_slice_eq(type, "valid")) {
            out_ready(st, db_method(st));
            return NEXT;
        }
        count_auth(st, st->partner, db_method(st), false);
        xf_stream_fail(st, NULL, "the partner answered our dialback key '%.*s'", (int)type.len,
                       type.ptr);
        if (st->status_row >= 0)
            xf_pstatus_auth_failed(st->sh->app->pstatus, st->sh->id, st->status_row,
                                   "the partner refused our dialback key", time(NULL));
        return STOP;
    }
    if (st->state == S_READY && xf_slice_eq(s->ns, NS_SM)) {
        if (xf_slice_eq(s->name, "enabled") && st->sm == SM_ENABLING) {
            st->sm = SM_ON;
            xf_log(XF_LOG_DEBUG, "s2s out #%u.%llu %s: stream management on", SID(st), st->remote);
        } else if (xf_slice_eq(s->name, "failed")) { /* sent stanzas lose their tracking */
            xf_metric_add(st->sh->m, XF_METRIC_SM_UNACKED, -(int64_t)st->ua_count);
            st->sm = SM_OFF;
            st->ua_head = st->ua_len = st->ua_count = 0;
        } else if (xf_slice_eq(s->name, "a") && st->sm != SM_OFF) {
            sm_ack(st, e);
        } else if (xf_slice_eq(s->name, "r")) {
            wrf(st, "<a xmlns='" NS_SM "' h='0'/>"); /* nothing is sent to us on this stream */
        }
        return st->closing ? STOP : NEXT;
    }
    return NEXT; /* stanzas on our outbound stream: nothing for us */
}

/* ---- inbound elements --------------------------------------------------------------- */

static xf_pair *pair_find(xf_stream *st, const char *remote, int local)
{
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++) {
        xf_pair *p = &st->pairs[i];
        if (p->state != XF_PAIR_FREE && p->local == local && strcmp(p->remote, remote) == 0)
            return p;
    }
    return NULL;
}

static xf_pair *pair_new(xf_stream *st, const char *remote, int local)
{
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++) {
        xf_pair *p = &st->pairs[i];
        if (p->state == XF_PAIR_FREE) {
            snprintf(p->remote, sizeof p->remote, "%s", remote);
            p->local = (uint8_t)local;
            p->pend = -1;
            return p;
        }
    }
    return NULL;
}

static void pair_valid(xf_stream *st, xf_pair *pr, unsigned method)
{
    pr->state = XF_PAIR_VALID;
    pr->method = (uint8_t)method;
    pr->pend = -1;
    xf_xml_set_stanza_max(&st->tok, XF_XML_STANZA_POSTAUTH_MAX);
    const xf_partner *p = partner_of(st, pr->remote);
    const char *pd = p ? p->domain : pr->remote;
    count_auth(st, pd, method, true);
    if (st->status_row >= 0)
        xf_pstatus_auth_ok(st->sh->app->pstatus, st->sh->id, st->status_row, method, time(NULL));
    xf_log(XF_LOG_INFO, "s2s in #%u.%llu %s<-%s: authenticated, method=%s%s%s", SID(st),
           st->sh->app->locals[pr->local], pr->remote, xf_neg_method_name(method),
           st->tls ? " tls=" : "", st->tls ? xf_tls_version(st->tls) : "");
    st->last_stanza = xf_now_ms();
    arm_timer(st);
}

static void refuse_verdict(xf_stream *st, xf_neg_verdict v, const char *what)
{
    switch (v) {
    case XF_NEG_NOT_AUTHORIZED:
        xf_stream_fail(st, "not-authorized", "%s before the stream was authenticated", what);
        break;
    case XF_NEG_UNSUPPORTED_STANZA:
        xf_stream_fail(st, "unsupported-stanza-type", "%s is not possible now", what);
        break;
    default:
        xf_stream_fail(st, "policy-violation",
                       "%s is not allowed by this partner's settings on this %s stream", what,
                       st->tls ? "TLS" : "plaintext");
        break;
    }
}

static void db_error(xf_stream *st, const char *el, const char *from, const char *to,
                     const char *cond, const char *text)
{
    char a[XF_DOMAIN_MAX * 6], b[XF_DOMAIN_MAX * 6], t[512];
    wrf(st,
        "<db:%s xmlns:db='" NS_DB "' from='%s' to='%s' type='error'><error type='cancel'><%s "
        "xmlns='" NS_STANZAS "'/><text xmlns='" NS_STANZAS "'>%s</text></error></db:%s>",
        el, esc(from, a, sizeof a), esc(to, b, sizeof b), cond, esc(text, t, sizeof t), el);
    xf_log(XF_LOG_WARN, "s2s in #%u.%llu %s<-%s: db:%s refused: %s: %s", SID(st), from, to, el,
           cond, text);
    xf_s2s_count_refusal(st->sh, st->dir, cond);
}

static void db_answer(xf_stream *st, const char *from, const char *to, const char *type)
{
    char a[XF_DOMAIN_MAX * 6], b[XF_DOMAIN_MAX * 6];
    wrf(st, "<db:result xmlns:db='" NS_DB "' from='%s' to='%s' type='%s'/>", esc(from, a, sizeof a),
        esc(to, b, sizeof b), type);
}

static void db_result_in(xf_stream *st, const xf_el *e)
{
    char from[XF_DOMAIN_MAX + 2], to[XF_DOMAIN_MAX + 2], key[XF_S2S_KEY_MAX + 2];
    xf_xml_slice a;
    size_t fn = xf_el_attr(e, "from", &a) ? decode_to(a, from, sizeof from) : 0;
    size_t tn = xf_el_attr(e, "to", &a) ? decode_to(a, to, sizeof to) : 0;
    if (fn == 0 || tn == 0 || fn == SIZE_MAX || tn == SIZE_MAX) {
        xf_stream_fail(st, "improper-addressing", "db:result needs 'from' and 'to' domains");
        return;
    }
    lower_ascii(from);
    int li = xf_s2s_local_index(st->sh->app, to, tn);
    if (li < 0) {
        if (st->peer_db_errors) {
            db_error(st, "result", to, from, "item-not-found", "not a domain served here");
            return;
        }
        xf_stream_fail(st, "host-unknown", "'%s' is not a domain served here", to);
        return;
    }
    const xf_partner *p = partner_of(st, from);
    if (!p) {
        if (st->peer_db_errors) {
            db_error(st, "result", to, from, "not-allowed", "not a federated partner domain");
            return;
        }
        xf_stream_fail(st, "policy-violation", "'%s' is not a federated partner domain", from);
        return;
    }
    xf_neg_facts f = {p, st->tls != NULL, cert_names(st, from)};
    xf_neg_verdict v = xf_neg_check_in(&f, XF_IN_DB_RESULT, st->peer_db_errors);
    if (v == XF_NEG_DB_POLICY_VIOLATION) {
        count_auth(st, p->domain, db_method(st), false);
        db_error(st, "result", to, from, "policy-violation",
                 "dialback is not allowed for this partner on this transport");
        return;
    }
    if (v != XF_NEG_OK) {
        count_auth(st, p->domain, db_method(st), false);
        refuse_verdict(st, v, "dialback");
        return;
    }
    if (!st->partner[0] && !xf_stream_attach(st, p)) return;
    if (!st->remote[0]) snprintf(st->remote, sizeof st->remote, "%s", from);
    xf_pair *pr = pair_find(st, from, li);
    if (pr && pr->state == XF_PAIR_VALID) {
        db_answer(st, to, from, "valid");
        return;
    }
    if (pr && pr->state == XF_PAIR_PENDING) return; /* the first check answers */
    pr = pair_new(st, from, li);
    if (!pr) {
        if (st->peer_db_errors)
            db_error(st, "result", to, from, "resource-constraint",
                     "too many domain pairs on one stream");
        else
            xf_stream_fail(st, "resource-constraint", "too many domain pairs on one stream");
        return;
    }
    if (f.cert_ok) { /* XEP-0344: the certificate already proves the domain */
        db_answer(st, to, from, "valid");
        pair_valid(st, pr, db_method(st));
        return;
    }
    size_t kn = xf_el_text(e, key, sizeof key);
    if (kn == 0 || kn > XF_S2S_KEY_MAX) {
        pr->state = XF_PAIR_FREE;
        xf_stream_fail(st, "not-authorized", "the dialback key is empty or too long");
        return;
    }
    int slot = xf_s2s_pend_add(st->sh, st);
    xf_dbv_request q;
    memset(&q, 0, sizeof q);
    if (slot >= 0) {
        q.cookie = xf_s2s_cookie(st->sh, slot);
        snprintf(q.originating, sizeof q.originating, "%s", from);
        snprintf(q.receiving, sizeof q.receiving, "%s", to);
        snprintf(q.stream_id, sizeof q.stream_id, "%s", st->id);
        snprintf(q.key, sizeof q.key, "%s", key);
        snprintf(q.proxy, sizeof q.proxy, "%s", p->proxy_fqdn);
        q.tls = (uint8_t)p->tls;
    }
    if (slot < 0 || !xf_shard_send(st->sh->shard, xf_rt_verify_id(xf_shard_rt(st->sh->shard)),
                                   XF_MSG_DBV_REQUEST, &q, sizeof q)) {
        if (slot >= 0) xf_s2s_pend_drop(st->sh, slot);
        pr->state = XF_PAIR_FREE;
        db_error(st, "result", to, from, "resource-constraint",
                 "too many dialback checks in progress");
        return;
    }
    xf_metric_inc(st->sh->m, XF_METRIC_VERIFY_REQUESTS, 1);
    pr->state = XF_PAIR_PENDING;
    pr->pend = (int16_t)slot;
    xf_log(XF_LOG_DEBUG, "s2s in #%u.%llu %s<-%s: db:result -> asking the authoritative server",
           SID(st), to, from);
}

void xf_stream_dbv_reply(xf_stream *st, int slot, const xf_dbv_reply *r)
{
    if (st->closing) return;
    enter(st);
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++) {
        xf_pair *pr = &st->pairs[i];
        if (pr->state != XF_PAIR_PENDING || pr->pend != slot) continue;
        const char *local = st->sh->app->locals[pr->local];
        if (r->result == XF_DB_VALID) {
            db_answer(st, local, pr->remote, "valid");
            pair_valid(st, pr, db_method(st));
            break;
        }
        const xf_partner *p = partner_of(st, pr->remote);
        count_auth(st, p ? p->domain : pr->remote, db_method(st), false);
        xf_log(XF_LOG_WARN, "s2s in #%u.%llu %s<-%s: dialback %s: %s", SID(st), local, pr->remote,
               r->result == XF_DB_INVALID ? "key invalid" : "check failed", r->why);
        if (r->result == XF_DB_ERROR && st->peer_db_errors)
            db_error(st, "result", local, pr->remote, "remote-server-timeout", r->why);
        else
            db_answer(st, local, pr->remote, "invalid");
        if (st->status_row >= 0)
            xf_pstatus_auth_failed(st->sh->app->pstatus, st->sh->id, st->status_row,
                                   r->result == XF_DB_INVALID ? "dialback key invalid"
                                                              : "dialback check failed",
                                   time(NULL));
        pr->state = XF_PAIR_FREE;
        pr->pend = -1;
        break;
    }
    leave(st);
}

static void db_verify_in(xf_stream *st, const xf_el *e)
{
    char from[XF_DOMAIN_MAX + 2], to[XF_DOMAIN_MAX + 2], id[XF_S2S_PEER_ID_MAX + 2],
        key[XF_S2S_KEY_MAX + 2];
    xf_xml_slice a;
    size_t fn = xf_el_attr(e, "from", &a) ? decode_to(a, from, sizeof from) : 0;
    size_t tn = xf_el_attr(e, "to", &a) ? decode_to(a, to, sizeof to) : 0;
    size_t in = xf_el_attr(e, "id", &a) ? decode_to(a, id, sizeof id) : 0;
    if (fn == 0 || tn == 0 || in == 0 || fn == SIZE_MAX || tn == SIZE_MAX || in == SIZE_MAX) {
        xf_stream_fail(st, "improper-addressing", "db:verify needs 'from', 'to' and 'id'");
        return;
    }
    lower_ascii(from);
    const xf_partner *p = partner_of(st, from);
    xf_neg_facts f = {p, st->tls != NULL, false};
    xf_neg_verdict v = p ? xf_neg_check_in(&f, XF_IN_DB_VERIFY, st->peer_db_errors) : XF_NEG_OK;
    if (v != XF_NEG_OK) {
        refuse_verdict(st, v, "db:verify");
        return;
    }
    bool ok = false;
    int li = xf_s2s_local_index(st->sh->app, to, tn);
    size_t kn = xf_el_text(e, key, sizeof key);
    if (li >= 0 && p && kn > 0 && kn <= XF_S2S_KEY_MAX) {
        size_t slen;
        const char *secret = xf_s2s_db_secret(st->sh, &slen);
        char want[XF_DIALBACK_KEY_LEN + 1];
        ok = xf_dialback_key(secret, slen, from, st->sh->app->locals[li], id, want) &&
             xf_dialback_key_equal(key, kn, want, XF_DIALBACK_KEY_LEN);
    }
    char ea[XF_DOMAIN_MAX * 6], eb[XF_DOMAIN_MAX * 6], ei[XF_S2S_PEER_ID_MAX * 6];
    wrf(st, "<db:verify xmlns:db='" NS_DB "' from='%s' to='%s' id='%s' type='%s'/>",
        esc(to, ea, sizeof ea), esc(from, eb, sizeof eb), esc(id, ei, sizeof ei),
        ok ? "valid" : "invalid");
    xf_log(ok ? XF_LOG_DEBUG : XF_LOG_WARN, "s2s in #%u.%llu: db:verify from %s for %s: %s",
           SID(st), from, to, ok ? "valid" : (p ? "invalid key" : "not a partner: invalid"));
}

static void sasl_in(xf_stream *st, const xf_el *e)
{
    xf_xml_slice mech;
    if (!xf_el_attr(e, "mechanism", &mech) || !xf_slice_eq(mech, "EXTERNAL")) {
        wrf(st, "<failure xmlns='" NS_SASL "'><invalid-mechanism/></failure>");
        xf_s2s_count_refusal(st->sh, st->dir, "invalid-mechanism");
        return;
    }
    const xf_partner *p = partner_of(st, st->remote);
    xf_neg_facts f = {p, st->tls != NULL, p ? cert_names(st, st->remote) : false};
    xf_neg_verdict v = xf_neg_check_in(&f, XF_IN_AUTH, st->peer_db_errors);
    const char *pd = p ? p->domain : st->remote[0] ? st->remote : "unknown";
    if (v == XF_NEG_SASL_ENCRYPTION) {
        count_auth(st, pd, XF_METHOD_SASL_TLS, false);
        wrf(st, "<failure xmlns='" NS_SASL "'><encryption-required/></failure>");
        xf_stream_fail(st, "policy-violation", "SASL EXTERNAL on a plaintext stream");
        return;
    }
    if (v == XF_NEG_SASL_NOT_AUTHORIZED) {
        count_auth(st, pd, XF_METHOD_SASL_TLS, false);
        xf_s2s_count_refusal(st->sh, st->dir, "sasl-not-authorized");
        xf_log(XF_LOG_WARN, "s2s in #%u.%llu %s<-%s: SASL EXTERNAL refused: %s", SID(st),
               local_name(st), st->remote[0] ? st->remote : "?",
               !p           ? "no partner named on the stream header"
               : !f.cert_ok ? "the certificate does not prove the domain (chain or name)"
                            : "SASL is not allowed by this partner's settings");
        wrf(st, "<failure xmlns='" NS_SASL "'><not-authorized/></failure>");
        return;
    }
    if (v != XF_NEG_OK) {
        count_auth(st, pd, XF_METHOD_SASL_TLS, false);
        refuse_verdict(st, v, "SASL");
        return;
    }
    /* XEP-0178: an authzid, if any, must be the domain the certificate proved. */
    char b64[512];
    size_t n = xf_el_text(e, b64, sizeof b64);
    if (n > 0 && !(n == 1 && b64[0] == '=')) {
        char authzid[XF_DOMAIN_MAX + 2];
        word32 outlen = sizeof authzid - 1;
        if (n >= sizeof b64 ||
            Base64_Decode((const byte *)b64, (word32)n, (byte *)authzid, &outlen) != 0 ||
            (authzid[outlen] = 0, strcasecmp(authzid, st->remote) != 0)) {
            count_auth(st, pd, XF_METHOD_SASL_TLS, false);
            xf_s2s_count_refusal(st->sh, st->dir, "invalid-authzid");
            wrf(st, "<failure xmlns='" NS_SASL "'><invalid-authzid/></failure>");
            return;
        }
    }
    xf_pair *pr = pair_find(st, st->remote, st->local);
    if (!pr) pr = pair_new(st, st->remote, st->local);
    if (!pr) {
        xf_stream_fail(st, "resource-constraint", "too many domain pairs on one stream");
        return;
    }
    wrf(st, "<success xmlns='" NS_SASL "'/>");
    pair_valid(st, pr, XF_METHOD_SASL_TLS);
    st->restart = true; /* the peer opens a new stream now */
}

static void stanza_in(xf_stream *st, const xf_xml_stanza *s, const xf_el *e)
{
    bool any_valid = false;
    for (int i = 0; i < XF_S2S_PAIRS_MAX; i++)
        any_valid |= st->pairs[i].state == XF_PAIR_VALID;
    if (!any_valid) {
        xf_neg_facts nf = {partner_of(st, st->remote), st->tls != NULL, false};
        refuse_verdict(st, xf_neg_check_in(&nf, XF_IN_STANZA, st->peer_db_errors), "a stanza");
        return;
    }
    /* Read once: the router works on these facts too. */
    xf_sfacts *f = XF_SCRATCH_FACTS(st->sh, 0);
    char from[XF_DOMAIN_MAX + 2], to[XF_DOMAIN_MAX + 2];
    const char *bad = xf_sfacts_read(s, f);
    if (!bad && !xf_jid_domain(f->from, from, sizeof from)) bad = "from";
    if (!bad && !xf_jid_domain(f->to, to, sizeof to)) bad = "to";
    if (bad) {
        xf_stream_fail(st, "improper-addressing", "a stanza without a valid '%s'", bad);
        return;
    }
    int li = xf_s2s_local_index(st->sh->app, to, strlen(to));
    if (li < 0) {
        xf_stream_fail(st, "host-unknown", "'%s' is not a domain served here", to);
        return;
    }
    xf_pair *pr = pair_find(st, from, li);
    if (!pr || pr->state != XF_PAIR_VALID) {
        xf_stream_fail(st, "invalid-from", "'%s' is not authenticated towards '%s' on this stream",
                       from, to);
        return;
    }
    st->last_stanza = xf_now_ms();
    bool to_bare = !strchr(f->to, '@') && !strchr(f->to, '/');
    xf_el ping;
    if (f->m.kind == XF_KIND_IQ && f->m.type == XF_T_GET && to_bare &&
        xf_el_find(e, "ping", NS_PING, &ping)) {
        /* XEP-0199: the server answers for its own domain. */
        char out[16384], ei[6 * 1024 + 8], ef[6 * 1024 + 8];
        if (f->m.id_len > 1024 || f->m.from_len > 1024) return;
        int n = snprintf(out, sizeof out, "<iq type='result' id='%s' from='%s' to='%s'/>",
                         esc(f->id, ei, sizeof ei), st->sh->app->locals[li],
                         esc(f->from, ef, sizeof ef));
        memcpy(f->to, f->from, f->m.from_len + 1u); /* the answer goes back */
        f->m.to_len = f->m.from_len;
        snprintf(f->from, sizeof f->from, "%s", st->sh->app->locals[li]);
        f->m.from_len = (uint16_t)strlen(f->from);
        f->m.id_len = 0;
        f->m.type = XF_T_RESULT;
        f->m.origin = XF_ORIGIN_XFED;
        f->m.local = (uint8_t)li;
        f->m.len = n > 0 ? (uint32_t)n : 0;
        uint8_t hdr[sizeof(xf_smeta) + 2 * 1024 + XF_DOMAIN_MAX + 1];
        size_t hl = xf_smeta_pack(f, hdr, sizeof hdr);
        if (n > 0 && (size_t)n < sizeof out && hl &&
            !xf_s2s_route_out(st->sh, (uint32_t)li, from, hdr, hl, (const uint8_t *)out, (size_t)n,
                              NULL))
            xf_log(XF_LOG_WARN, "s2s: ping answer to %s dropped: no outbound capacity", from);
        return;
    }
    xf_route_from_partner(st, &st->tok, s, (uint32_t)li, from, f);
}

static step element_in(xf_stream *st, const xf_xml_stanza *s, const xf_el *e)
{
    if (xf_slice_eq(s->ns, NS_TLS) && xf_slice_eq(s->name, "starttls")) {
        const xf_partner *p = partner_of(st, st->remote);
        xf_neg_facts f = {p, st->tls != NULL, false};
        xf_neg_verdict v = xf_neg_check_in(&f, XF_IN_STARTTLS, st->peer_db_errors);
        if (v != XF_NEG_OK) {
            refuse_verdict(st, v, "STARTTLS");
            return STOP;
        }
        wrf(st, "<proceed xmlns='" NS_TLS "'/>");
        return TLS_NOW;
    }
    if (xf_slice_eq(s->ns, NS_SASL) && xf_slice_eq(s->name, "auth")) {
        sasl_in(st, e);
        return st->closing ? STOP : NEXT;
    }
    if (xf_slice_eq(s->ns, NS_DB) && xf_slice_eq(s->name, "result")) {
        xf_xml_slice t;
        if (xf_el_attr(e, "type", &t)) return NEXT; /* answers are for the other direction */
        db_result_in(st, e);
        return st->closing ? STOP : NEXT;
    }
    if (xf_slice_eq(s->ns, NS_DB) && xf_slice_eq(s->name, "verify")) {
        xf_xml_slice t;
        if (xf_el_attr(e, "type", &t)) return NEXT;
        db_verify_in(st, e);
        return st->closing ? STOP : NEXT;
    }
    if (xf_slice_eq(s->ns, NS_SERVER) &&
        (xf_slice_eq(s->name, "message") || xf_slice_eq(s->name, "presence") ||
         xf_slice_eq(s->name, "iq"))) {
        stanza_in(st, s, e);
        return st->closing ? STOP : NEXT;
    }
    xf_stream_fail(st, "unsupported-stanza-type", "<%.*s/> in namespace '%.*s' is not supported",
                   (int)s->name.len, s->name.ptr, s->ns.ptr ? (int)s->ns.len : 0,
                   s->ns.ptr ? s->ns.ptr : "");
    return STOP;
}

/* ---- the feed loop ----------------------------------------------------------------- */

static void restart_stream(xf_stream *st, uint64_t consumed)
{
    xf_xml_reset(&st->tok);
    st->fed_end -= consumed;
    st->header_sent = st->dir != XF_DIR_IN;
    st->got_header = false;
    st->state = S_HEADER;
}

static void feed(xf_stream *st, const uint8_t *data, size_t len)
{
    xf_xml_feed(&st->tok, data, len);
    st->fed_end += len;
    xf_xml_event ev;
    while (!st->closing) {
        xf_xml_event_type t = xf_xml_next(&st->tok, &ev);
        if (t == XF_XML_EV_NONE) break;
        switch (t) {
        case XF_XML_EV_HEADER:
            if (st->state != S_HEADER) {
                xf_stream_fail(st, "not-well-formed", "a second stream header");
                break;
            }
            if (st->dir == XF_DIR_IN)
                header_in(st, &ev.header);
            else
                header_out(st, &ev.header);
            break;
        case XF_XML_EV_STANZA: {
            const xf_xml_stanza *s = &ev.stanza;
            xf_el e;
            if (!xf_el_root(s->bytes.ptr, s->bytes.len, s->ns, &e)) {
                xf_stream_fail(st, "internal-server-error", "element walker failed");
                break;
            }
            if (xf_slice_eq(s->ns, NS_STREAMS) && xf_slice_eq(s->name, "error")) {
                xf_el cond;
                const char *it = NULL;
                char text[256] = "";
                xf_el tx;
                bool has = xf_el_child(&e, &it, &cond);
                if (xf_el_find(&e, "text", NS_SERR, &tx)) xf_el_text(&tx, text, sizeof text);
                xf_log(XF_LOG_WARN, "s2s %s #%u.%llu %s: the peer sent stream error %.*s%s%s",
                       dir_name(st), SID(st), st->remote[0] ? st->remote : "?",
                       has ? (int)cond.name.len : 1, has ? cond.name.ptr : "?", text[0] ? ": " : "",
                       text);
                if (st->dir == XF_DIR_VERIFY)
                    xf_s2s_verify_done(st, XF_DB_ERROR,
                                       "the authoritative server sent a "
                                       "stream error");
                xf_stream_fail(st, NULL, "after the peer's stream error");
                break;
            }
            step r = st->dir == XF_DIR_IN ? element_in(st, s, &e) : element_out(st, s, &e);
            uint64_t end = ev.offset + ev.length;
            if (r == TLS_NOW) {
                uint64_t rest = st->fed_end - end;
                start_tls(st, data + len - rest, (size_t)rest);
                return; /* the rest was ciphertext */
            }
            if (st->closing) break;
            if (st->restart) {
                st->restart = false;
                restart_stream(st, end);
                if (st->dir != XF_DIR_IN) send_header(st, true);
            }
            break;
        }
        case XF_XML_EV_KEEPALIVE: break;
        case XF_XML_EV_STREAM_END:
            if (st->dir == XF_DIR_VERIFY && st->vreq)
                xf_s2s_verify_done(st, XF_DB_ERROR, "the authoritative server closed the stream");
            xf_stream_fail(st, NULL, "the peer ended the stream");
            break;
        case XF_XML_EV_ERROR:
            st->too_big = ev.error.stanza_too_big;
            xf_stream_fail(st, xf_xml_cond_name(ev.error.cond), "%s", ev.error.text);
            break;
        default: break;
        }
    }
}
