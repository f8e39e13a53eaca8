/* peer.c: the load generator's connections (see peer.h). Negotiation is parsed
 * with the project's tokenizer; once a stream is up its bytes are only scanned
 * for markers (gen.h). Everything here runs on the runtime's core threads,
 * except the bench_* entry points at the end, which run on the main thread and
 * talk to the cores with xf_rt_post() and atomics. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "peer.h"

#include "gen.h"
#include "rt.h"
#include "tls_session.h"
#include "xml_tok.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STAGE_BYTES  (16u * 1024u) /* TLS senders coalesce a batch into one record run */
#define BURST_MAX    512u          /* open loop: stanzas per direction per loop iteration */
#define LATE_LIMIT   100000u       /* open loop: a backlog past this is dropped as "late" */
#define TOK_STANZA   (64u * 1024u) /* negotiation stanzas (and priming) only */
#define CONNECT_MS   10000u
#define LOG_FAILURES 20u

enum { MSG_WAKE = 100, CMD_CONNECT, CMD_IDLE, CMD_CLOSE_IDLE, CMD_CLOSE_ALL };
enum { PH_NONE, PH_CLOSED, PH_OPEN };
typedef enum { R_OUT, R_IN, R_INT_IN, R_INT_OUT } brole;
typedef enum {
    N_HDR,
    N_FEAT,
    N_DB,
    N_TLS,
    N_HDR2,
    N_FEAT2,
    N_AUTH,
    N_HDR3,
    N_FEAT3,
    N_HS,
    N_UP
} bstate;

typedef struct bconn bconn;
typedef struct bshard bshard;

typedef struct {
    bench_deck deck;
    uint32_t next;       /* sender core only */
    uint64_t sent;       /* sender core only */
    uint64_t phase_sent; /* sender core only: sent since the open-loop phase began */
    _Atomic uint64_t sent_pub, recv, recv_bytes, late, bounced;
    bconn *sender;            /* sender core only */
    _Atomic int sender_shard; /* -1: none */
} bdir;

typedef struct {
    uint32_t set, idx; /* set 0: pI.bench (plaintext or raw), 1: tI.bench (TLS) */
    char pdom[24], cdom[24];
    bdir d[2]; /* 0: partner -> internal, 1: internal -> partner */
    _Atomic int out_up, int_up;
} blane;

struct bconn {
    bconn *prev, *next;
    bshard *sh;
    xf_conn *c;
    brole role;
    bench_mode mode;
    blane *lane;
    bstate st;
    bool scan, want_scan, up, idle, authed, tls_client;
    bool closed; /* on_close ran: freed at the next loop iteration, never touched again */
    void *tokmem;
    xf_xml_tok tok;
    xf_tls *tls;
    bench_scan sc;
    char id[24];
    char why[160]; /* why it failed, for the log */
    uint8_t *stage;
    uint32_t stage_len;
    bdir *acc_dir; /* receive counts, added to the direction once per chunk */
    uint32_t acc_n;
};

struct bshard {
    bench *b;
    xf_shard *s;
    uint32_t id;
    bench_hist hist;
    _Atomic uint32_t hist_gen_seen;
    uint32_t phase_gen_seen;
    bdir *senders[4 * BENCH_LANES_MAX];
    uint32_t nsenders;
    bconn *conns;
    bconn *grave; /* closed, freed in on_loop: a close may run inside our own callbacks */
    uint32_t idle_want, idle_opened, idle_pending, idle_conc;
    bench_mode idle_mode;
    uint32_t wake_pending[XF_SHARDS_MAX / 32]; /* bitmap: cores to wake after this chunk */
    uint64_t now_ns;
};

struct bench {
    bench_opts o;
    xf_rt *rt;
    xf_tls_ctx *tls;
    xf_xml_limits lim;
    size_t tokmem_size;
    blane lanes[2][BENCH_LANES_MAX];
    bool decks_made[2];
    bench_target target; /* written before CMD_CONNECT / CMD_IDLE are posted */
    _Atomic uint32_t phase, phase_set, window, phase_gen, hist_gen;
    _Atomic uint64_t rate_milli, phase_t0;
    _Atomic uint32_t idle_up, idle_failed, live;
    _Atomic uint64_t failures, lost;
    _Atomic uint32_t logged;
    bshard *_Atomic sh[XF_SHARDS_MAX];
};

typedef struct {
    uint32_t set, n, conc;
} cmd_idle;

static const xf_conn_ops bconn_ops;

/* ---- helpers ---------------------------------------------------------------- */

static bool gone(const bconn *bc)
{
    return bc->closed || xf_conn_closing(bc->c);
}

static void vnote(bconn *bc, const char *fmt, va_list ap)
{
    if (!bc->why[0]) vsnprintf(bc->why, sizeof bc->why, fmt, ap); /* the first cause counts */
}

static void note_failure(bconn *bc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_failure(bconn *bc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(bc, fmt, ap);
    va_end(ap);
}

/* Notes why and closes (after flushing what was written). */
static void fail(bconn *bc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(bconn *bc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(bc, fmt, ap);
    va_end(ap);
    if (!gone(bc)) xf_conn_close(bc->c, true);
}

static bool slice_eq(xf_xml_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.ptr && s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static void slice_str(xf_xml_slice s, char *out, size_t cap)
{
    size_t n = s.ptr ? (s.len < cap - 1 ? s.len : cap - 1) : 0;
    if (n) memcpy(out, s.ptr, n);
    out[n] = 0;
}

/* "p12.bench" -> lane 12 of set 0; "t3.bench" -> set 1; "c5.bench" -> lane 5, set -1. */
static blane *lane_of(bench *b, xf_xml_slice dom, int want_set)
{
    char d[32];
    slice_str(dom, d, sizeof d);
    char kind = d[0];
    char *end;
    unsigned long i = strtoul(d + 1, &end, 10);
    if (strcmp(end, ".bench") != 0 || i >= b->o.lanes) return NULL;
    int set = kind == 'p' ? 0 : kind == 't' ? 1 : kind == 'c' ? want_set : -1;
    if (set < 0) return NULL;
    return &b->lanes[set][i];
}

static bool sink(void *arg, const uint8_t *data, size_t len)
{
    bconn *bc = arg;
    if (gone(bc)) return false;
    return xf_conn_write(bc->c, data, len);
}

static bool out(bconn *bc, const void *p, size_t n)
{
    if (bc->closed) return false;
    if (!bc->tls) return xf_conn_write(bc->c, p, n);
    if (bc->stage && n <= STAGE_BYTES) {
        if (bc->stage_len + n > STAGE_BYTES) {
            if (!xf_tls_write(bc->tls, bc->stage, bc->stage_len)) return false;
            bc->stage_len = 0;
        }
        memcpy(bc->stage + bc->stage_len, p, n);
        bc->stage_len += (uint32_t)n;
        return true;
    }
    return xf_tls_write(bc->tls, p, n);
}

static void outf(bconn *bc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(bconn *bc, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && !out(bc, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1))
        fail(bc, "output refused while negotiating");
}

static void flush_stage(bconn *bc)
{
    if (bc->tls && bc->stage_len) {
        if (xf_tls_write(bc->tls, bc->stage, bc->stage_len))
            bc->stage_len = 0;
        else
            fail(bc, "TLS write refused");
    }
}

#define STREAM_NS "xmlns:stream='http://etherx.jabber.org/streams'"

static void server_header(bconn *bc, const char *from, const char *to, bool features)
{
    outf(bc,
         "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
         " xmlns:db='jabber:server:dialback' from='%s' to='%s' id='%s' version='1.0'>",
         from, to, bc->id);
    if (!features) return;
    if (bc->mode == BENCH_TLS && !bc->tls)
        outf(bc, "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                 "<required/></starttls></stream:features>");
    else if (bc->mode == BENCH_TLS && !bc->authed)
        outf(bc, "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                 "<mechanism>EXTERNAL</mechanism></mechanisms></stream:features>");
    else if (bc->mode == BENCH_TLS)
        outf(bc, "<stream:features/>");
    else
        outf(bc,
             "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>");
}

static void client_header(bconn *bc)
{
    const blane *l = bc->lane;
    outf(bc,
         "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
         " xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>",
         l->pdom, l->cdom);
}

static void handshake_hex(const char *id, const char *secret, char hex[41])
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s%s", id, secret);
    uint8_t dig[WC_SHA_DIGEST_SIZE];
    wc_ShaHash((const uint8_t *)buf, (word32)n, dig);
    for (int i = 0; i < WC_SHA_DIGEST_SIZE; i++)
        sprintf(hex + 2 * i, "%02x", dig[i]);
}

/* ---- receiving ---------------------------------------------------------------- */

static void acc_flush(bconn *bc)
{
    bdir *d = bc->acc_dir;
    if (!d || !bc->acc_n) return;
    atomic_fetch_add_explicit(&d->recv, bc->acc_n, memory_order_relaxed);
    bc->acc_n = 0;
    int ss = atomic_load_explicit(&d->sender_shard, memory_order_relaxed);
    if (ss >= 0 && (uint32_t)ss != bc->sh->id) bc->sh->wake_pending[ss / 32] |= 1u << (ss % 32);
}

static void on_mark(void *arg, uint32_t tag, uint64_t sent_ns)
{
    bconn *bc = arg;
    bench *b = bc->sh->b;
    uint32_t dir = tag & 1, li = tag >> 1, set = li / BENCH_LANES_MAX, idx = li % BENCH_LANES_MAX;
    if (set > 1 || idx >= b->o.lanes) return;
    bdir *d = &b->lanes[set][idx].d[dir];
    /* Links carry direction 0 to us, partner streams direction 1: a marker of the
     * other direction is a stanza the target bounced back (same id). */
    uint32_t expect = bc->role == R_INT_IN || bc->role == R_INT_OUT ? 0 : 1;
    if (dir != expect) {
        atomic_fetch_add_explicit(&d->bounced, 1, memory_order_relaxed);
        return;
    }
    if (bc->sh->now_ns > sent_ns) bench_hist_add(&bc->sh->hist, bc->sh->now_ns - sent_ns);
    if (d != bc->acc_dir) {
        acc_flush(bc);
        bc->acc_dir = d;
    }
    bc->acc_n++;
}

static void count_bytes(bconn *bc, size_t n)
{
    if (bc->acc_dir) atomic_fetch_add_explicit(&bc->acc_dir->recv_bytes, n, memory_order_relaxed);
}

static void register_sender(bconn *bc, bdir *d)
{
    bshard *sh = bc->sh;
    if (d->sender || atomic_load(&d->sender_shard) >= 0) return; /* an extra stream (idle) */
    if (sh->nsenders == sizeof sh->senders / sizeof sh->senders[0]) return;
    d->sender = bc;
    sh->senders[sh->nsenders++] = d;
    if (bc->tls && !bc->stage) bc->stage = malloc(STAGE_BYTES);
    atomic_store(&d->sender_shard, (int)sh->id);
}

static void unregister_sender(bconn *bc)
{
    bshard *sh = bc->sh;
    for (uint32_t i = 0; i < sh->nsenders;)
        if (sh->senders[i]->sender == bc) {
            atomic_store(&sh->senders[i]->sender_shard, -1);
            sh->senders[i]->sender = NULL;
            sh->senders[i] = sh->senders[--sh->nsenders];
        } else {
            i++;
        }
}

/* The stream is negotiated: what it is used for from now on. */
static void stream_up(bconn *bc)
{
    bench *b = bc->sh->b;
    blane *l = bc->lane;
    bc->up = true;
    bc->st = N_UP;
    bc->want_scan = true;
    if (bc->idle) {
        atomic_fetch_add(&b->idle_up, 1);
        bc->sh->idle_pending--;
        return;
    }
    switch (bc->role) {
    case R_OUT:
        register_sender(bc, &l->d[0]);
        atomic_fetch_add(&l->out_up, 1);
        break;
    case R_INT_IN:
    case R_INT_OUT:
        register_sender(bc, &l->d[1]);
        atomic_fetch_add(&l->int_up, 1);
        break;
    case R_IN:
        if (b->target.parse_back) bc->want_scan = false;
        break;
    }
}

static void tls_plain(void *arg, const uint8_t *data, size_t len);

static void start_tls(bconn *bc, bool client)
{
    bench *b = bc->sh->b;
    bc->tls = client ? xf_tls_connect(b->tls, bc->lane->cdom, bc->lane->pdom, NULL, sink, bc)
                     : xf_tls_accept(b->tls, sink, bc);
    if (!bc->tls) {
        fail(bc, "cannot start TLS");
        return;
    }
    bc->tls_client = client;
    xf_xml_init(&bc->tok, &b->lim, XF_XML_STREAM, bc->tokmem, b->tokmem_size);
    bc->st = N_TLS;
    if (client) { /* the ClientHello */
        static const uint8_t none[1];
        if (xf_tls_input(bc->tls, none, 0, tls_plain, bc) == XF_TLS_ERROR)
            fail(bc, "TLS: %s", xf_tls_error(bc->tls));
    }
}

static void on_header(bconn *bc, const xf_xml_header *h)
{
    bench *b = bc->sh->b;
    switch (bc->role) {
    case R_OUT:
        if (b->target.raw)
            stream_up(bc);
        else if (bc->st == N_HDR)
            bc->st = N_FEAT;
        else if (bc->st == N_HDR2)
            bc->st = N_FEAT2;
        else if (bc->st == N_HDR3)
            bc->st = N_FEAT3;
        break;
    case R_IN: {
        blane *l = lane_of(b, h->to, -1);
        if (!l) {
            fail(bc, "stream to an unknown partner domain");
            return;
        }
        bc->lane = l;
        bc->mode = l->set ? BENCH_TLS : BENCH_PLAIN;
        char from[64];
        slice_str(h->from, from, sizeof from);
        server_header(bc, l->pdom, from[0] ? from : l->cdom, true);
        if (bc->authed) stream_up(bc); /* TLS stream back from the target */
        break;
    }
    case R_INT_IN:
        if (slice_eq(h->content_ns, "jabber:component:accept")) {
            blane *l = lane_of(b, h->to, -1);
            if (!l) {
                fail(bc, "component link for an unknown domain");
                return;
            }
            bc->lane = l;
            outf(bc,
                 "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' " STREAM_NS
                 " from='%s' id='%s'>",
                 l->pdom, bc->id);
            bc->st = N_HS;
        } else { /* the raw relay: the partner's own header came through */
            blane *l = lane_of(b, h->from, -1);
            if (!l) {
                fail(bc, "relayed stream from an unknown domain");
                return;
            }
            bc->lane = l;
            outf(bc,
                 "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " STREAM_NS
                 " from='%s' to='%s' id='%s' version='1.0'>",
                 l->cdom, l->pdom, bc->id);
            stream_up(bc);
        }
        break;
    case R_INT_OUT: {
        char id[128], hex[41];
        slice_str(h->id, id, sizeof id);
        handshake_hex(id, b->o.secret, hex);
        outf(bc, "<handshake>%s</handshake>", hex);
        bc->st = N_HS;
        break;
    }
    }
}

static void on_stanza(bconn *bc, const xf_xml_stanza *s)
{
    bench *b = bc->sh->b;
    if (slice_eq(s->name, "error") && slice_eq(s->prefix, "stream")) {
        fail(bc, "stream error from the target: %.*s",
             (int)(s->bytes.len < 120 ? s->bytes.len : 120), s->bytes.ptr);
        return;
    }
    bool db = slice_eq(s->ns, "jabber:server:dialback");
    if (slice_eq(s->name, "message") || slice_eq(s->name, "presence") || slice_eq(s->name, "iq")) {
        bench_scan one = {0}; /* a stanza that came while negotiating (priming) */
        bench_scan_chunk(&one, (const uint8_t *)s->bytes.ptr, s->bytes.len, on_mark, bc);
        count_bytes(bc, s->bytes.len);
        return;
    }
    switch (bc->role) {
    case R_OUT:
        if (slice_eq(s->name, "features")) {
            if (bc->st == N_FEAT && bc->mode == BENCH_PLAIN) {
                outf(bc, "<db:result from='%s' to='%s'>%s</db:result>", bc->lane->pdom,
                     bc->lane->cdom, "3b1a9c8e7f6d5a4b3c2d1e0f9a8b7c6d");
                bc->st = N_DB;
            } else if (bc->st == N_FEAT) {
                outf(bc, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            } else if (bc->st == N_FEAT2) {
                outf(
                    bc,
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>");
                bc->st = N_AUTH;
            } else if (bc->st == N_FEAT3) {
                stream_up(bc);
            }
        } else if (db && slice_eq(s->name, "result")) {
            if (slice_eq(s->type, "valid"))
                stream_up(bc);
            else
                fail(bc, "dialback refused: %.*s", (int)s->bytes.len, s->bytes.ptr);
        } else if (slice_eq(s->name, "proceed")) {
            start_tls(bc, true);
        } else if (slice_eq(s->name, "success")) {
            xf_xml_reset(&bc->tok);
            client_header(bc);
            bc->st = N_HDR3;
        } else if (slice_eq(s->name, "failure")) {
            fail(bc, "refused: %.*s", (int)s->bytes.len, s->bytes.ptr);
        }
        break;
    case R_IN:
        if (db && slice_eq(s->name, "verify")) {
            char from[64], to[64], id[96];
            slice_str(s->from, from, sizeof from);
            slice_str(s->to, to, sizeof to);
            slice_str(s->id, id, sizeof id);
            outf(bc, "<db:verify from='%s' to='%s' id='%s' type='valid'/>", to, from, id);
        } else if (db && slice_eq(s->name, "result")) {
            char from[64], to[64];
            slice_str(s->from, from, sizeof from);
            slice_str(s->to, to, sizeof to);
            outf(bc, "<db:result from='%s' to='%s' type='valid'/>", to, from);
            if (!bc->up) stream_up(bc);
        } else if (slice_eq(s->name, "starttls")) {
            outf(bc, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            start_tls(bc, false);
        } else if (slice_eq(s->name, "auth")) {
            outf(bc, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
            bc->authed = true;
            xf_xml_reset(&bc->tok);
        }
        break;
    case R_INT_IN:
        if (bc->st == N_HS && slice_eq(s->name, "handshake")) {
            char want[41], got[64];
            handshake_hex(bc->id, b->o.secret, want);
            slice_str(s->bytes, got, sizeof got);
            if (!strstr(got, want)) {
                fail(bc, "component handshake does not match the secret");
                return;
            }
            outf(bc, "<handshake/>");
            stream_up(bc);
        }
        break;
    case R_INT_OUT:
        if (bc->st == N_HS && slice_eq(s->name, "handshake")) stream_up(bc);
        break;
    }
}

/* Plaintext in: parsed while negotiating, scanned once up. */
static void plain_in(bconn *bc, const uint8_t *p, size_t n)
{
    if (bc->scan) {
        bench_scan_chunk(&bc->sc, p, n, on_mark, bc);
        count_bytes(bc, n);
        return;
    }
    xf_xml_feed(&bc->tok, p, n);
    xf_xml_event ev;
    for (;;) {
        xf_xml_event_type t = xf_xml_next(&bc->tok, &ev);
        if (t == XF_XML_EV_NONE) break;
        if (t == XF_XML_EV_ERROR) {
            fail(bc, "bad XML from the target: %s", ev.error.text);
            return;
        }
        if (t == XF_XML_EV_HEADER)
            on_header(bc, &ev.header);
        else if (t == XF_XML_EV_STANZA)
            on_stanza(bc, &ev.stanza);
        else if (t == XF_XML_EV_STREAM_END)
            fail(bc, "the target closed the stream");
        if (gone(bc) || bc->st == N_TLS) break; /* TLS: the rest is ciphertext */
    }
    if (bc->want_scan && !bc->scan) {
        bc->scan = true; /* nothing else is negotiated on this stream */
        free(bc->tokmem);
        bc->tokmem = NULL;
    }
}

static void tls_plain(void *arg, const uint8_t *data, size_t len)
{
    plain_in(arg, data, len);
}

static void tls_in(bconn *bc, const uint8_t *data, size_t len)
{
    static const uint8_t none[1];
    xf_tls_rc rc = xf_tls_input(bc->tls, len ? data : none, len, tls_plain, bc);
    if (rc == XF_TLS_ERROR) {
        fail(bc, "TLS: %s", xf_tls_error(bc->tls));
        return;
    }
    if (rc == XF_TLS_CLOSED) {
        fail(bc, "TLS closed by the target");
        return;
    }
    if (bc->st == N_TLS && xf_tls_ready(bc->tls)) {
        bc->st = N_HDR2;
        if (bc->tls_client) client_header(bc);
    }
}

static void on_data(xf_conn *c, const uint8_t *data, size_t len)
{
    bconn *bc = xf_conn_ctx(c);
    bshard *sh = bc->sh;
    sh->now_ns = bench_now_ns();
    if (bc->tls)
        tls_in(bc, data, len);
    else
        plain_in(bc, data, len);
    acc_flush(bc);
    for (uint32_t w = 0; w < XF_SHARDS_MAX / 32; w++)
        while (sh->wake_pending[w]) {
            uint32_t bit = (uint32_t)__builtin_ctz(sh->wake_pending[w]);
            sh->wake_pending[w] &= ~(1u << bit);
            xf_shard_send(sh->s, w * 32 + bit, MSG_WAKE, NULL, 0);
        }
}

/* ---- connections ---------------------------------------------------------------- */

static bconn *bconn_new(bshard *sh, brole role, bench_mode mode, blane *lane)
{
    bench *b = sh->b;
    bconn *bc = calloc(1, sizeof *bc);
    if (!bc) return NULL;
    bc->tokmem = malloc(b->tokmem_size);
    if (!bc->tokmem) {
        free(bc);
        return NULL;
    }
    xf_xml_init(&bc->tok, &b->lim, XF_XML_STREAM, bc->tokmem, b->tokmem_size);
    bc->sh = sh;
    bc->role = role;
    bc->mode = mode;
    bc->lane = lane;
    static _Atomic uint64_t ids;
    snprintf(bc->id, sizeof bc->id, "bench%llx", (unsigned long long)atomic_fetch_add(&ids, 1));
    bc->next = sh->conns;
    if (sh->conns) sh->conns->prev = bc;
    sh->conns = bc;
    atomic_fetch_add(&b->live, 1);
    return bc;
}

static void on_connect(xf_conn *c, int err)
{
    bconn *bc = xf_conn_ctx(c);
    if (err) {
        note_failure(bc, "connect: %s", strerror(-err));
        return;
    }
    if (bc->role == R_OUT)
        client_header(bc);
    else if (bc->role == R_INT_OUT)
        outf(bc,
             "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' " STREAM_NS
             " to='%s'>",
             bc->lane->cdom);
}

static void on_close(xf_conn *c, int err)
{
    bconn *bc = xf_conn_ctx(c);
    bshard *sh = bc->sh;
    bench *b = sh->b;
    acc_flush(bc);
    unregister_sender(bc);
    if (bc->idle && !bc->up) {
        sh->idle_pending--;
        atomic_fetch_add(&b->idle_failed, 1);
    }
    if (!bc->up && !(bc->role == R_IN && bc->lane)) { /* dialback checks end normally */
        atomic_fetch_add(&b->failures, 1);
        if (atomic_fetch_add(&b->logged, 1) < LOG_FAILURES)
            fprintf(stderr, "xfed-bench: %s stream%s%s closed while negotiating: %s%s\n",
                    bc->role == R_OUT      ? "partner"
                    : bc->role == R_IN     ? "inbound partner"
                    : bc->role == R_INT_IN ? "component link"
                                           : "component",
                    bc->lane ? " of " : "", bc->lane ? bc->lane->pdom : "",
                    bc->why[0] ? bc->why : "closed by the peer",
                    err ? (err == -ECONNRESET ? " (reset)" : "") : "");
    }
    if (bc->prev)
        bc->prev->next = bc->next;
    else
        sh->conns = bc->next;
    if (bc->next) bc->next->prev = bc->prev;
    bc->closed = true;
    bc->next = sh->grave; /* freed by on_loop, after every callback that may hold bc */
    sh->grave = bc;
    atomic_fetch_sub(&b->live, 1);
}

static void bury(bshard *sh)
{
    while (sh->grave) {
        bconn *bc = sh->grave;
        sh->grave = bc->next;
        if (bc->tls) xf_tls_free(bc->tls);
        free(bc->tokmem);
        free(bc->stage);
        free(bc);
    }
}

static void on_eof(xf_conn *c)
{
    bconn *bc = xf_conn_ctx(c);
    if (!bc->up) note_failure(bc, "the target closed the connection");
    xf_conn_close(c, true);
}

static void on_shutdown(xf_conn *c)
{
    xf_conn_close(c, false);
}

static const xf_conn_ops bconn_ops = {
    .on_data = on_data,
    .on_eof = on_eof,
    .on_connect = on_connect,
    .on_close = on_close,
    .on_shutdown = on_shutdown,
};

static void accept_common(xf_conn *c, brole role)
{
    bshard *sh = xf_shard_user(xf_conn_shard(c));
    bconn *bc = bconn_new(sh, role, BENCH_PLAIN, NULL);
    if (!bc) {
        xf_conn_close(c, false);
        return;
    }
    bc->c = c;
    xf_conn_set_ctx(c, bc);
}

static void accept_in(xf_conn *c, void *arg)
{
    (void)arg;
    accept_common(c, R_IN);
}

static void accept_int(xf_conn *c, void *arg)
{
    (void)arg;
    accept_common(c, R_INT_IN);
}

static bool connect_to(bshard *sh, brole role, blane *l, uint16_t port, bool idle)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    bconn *bc = bconn_new(sh, role, l->set ? BENCH_TLS : BENCH_PLAIN, l);
    if (!bc) return false;
    bc->idle = idle;
    bc->c = xf_conn_connect(sh->s, (struct sockaddr *)&a, sizeof a, CONNECT_MS, &bconn_ops, bc);
    if (!bc->c) { /* table full: undo */
        if (bc->prev)
            bc->prev->next = bc->next;
        else
            sh->conns = bc->next;
        if (bc->next) bc->next->prev = bc->prev;
        free(bc->tokmem);
        free(bc);
        atomic_fetch_sub(&sh->b->live, 1);
        return false;
    }
    return true;
}

/* ---- the core's loop: pacing ------------------------------------------------------- */

static void send_batch(bdir *d, uint32_t n, uint64_t now)
{
    bconn *bc = d->sender;
    for (uint32_t k = 0; k < n; k++) {
        bench_stanza *s = &d->deck.s[d->next];
        bench_stamp(s, now);
        if (!out(bc, s->bytes, s->len)) break;
        d->next = d->next + 1 == BENCH_DECK ? 0 : d->next + 1;
        d->sent++;
        d->phase_sent++;
    }
    flush_stage(bc);
    atomic_store_explicit(&d->sent_pub, d->sent, memory_order_relaxed);
}

static void on_loop(xf_shard *s)
{
    bshard *sh = xf_shard_user(s);
    bench *b = sh->b;
    bury(sh);
    uint32_t hg = atomic_load_explicit(&b->hist_gen, memory_order_acquire);
    if (hg != atomic_load_explicit(&sh->hist_gen_seen, memory_order_relaxed)) {
        bench_hist_clear(&sh->hist);
        atomic_store_explicit(&sh->hist_gen_seen, hg, memory_order_release);
    }
    while (sh->idle_opened < sh->idle_want && sh->idle_pending < sh->idle_conc) {
        blane *l = &b->lanes[sh->idle_mode == BENCH_TLS]
                            [(sh->idle_opened * b->o.threads + sh->id) % b->o.lanes];
        sh->idle_opened++;
        if (connect_to(sh, R_OUT, l, b->target.s2s_port, true))
            sh->idle_pending++;
        else
            atomic_fetch_add(&b->idle_failed, 1);
    }
    uint32_t ph = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (ph == PH_NONE) {
        /* While idle streams are being opened, look again every millisecond. */
        xf_shard_loop_wait(s, sh->idle_opened < sh->idle_want || sh->idle_pending ? 1000 : 0);
        return;
    }
    uint32_t gen = atomic_load_explicit(&b->phase_gen, memory_order_relaxed);
    if (gen != sh->phase_gen_seen) {
        sh->phase_gen_seen = gen;
        for (uint32_t i = 0; i < sh->nsenders; i++)
            sh->senders[i]->phase_sent = 0;
    }
    uint32_t set = atomic_load_explicit(&b->phase_set, memory_order_relaxed);
    uint32_t window = atomic_load_explicit(&b->window, memory_order_relaxed);
    uint64_t rate = atomic_load_explicit(&b->rate_milli, memory_order_relaxed);
    uint64_t t0 = atomic_load_explicit(&b->phase_t0, memory_order_relaxed);
    uint64_t now = bench_now_ns();
    xf_shard_loop_wait(s, ph == PH_OPEN ? 20 : 0);
    for (uint32_t i = 0; i < sh->nsenders; i++) {
        bdir *d = sh->senders[i];
        if (!d->sender || xf_conn_write_full(d->sender->c)) continue;
        if (d->sender->lane->set != set) continue;
        uint64_t n = 0;
        if (ph == PH_CLOSED) {
            uint64_t inflight = d->sent - atomic_load_explicit(&d->recv, memory_order_relaxed) -
                                atomic_load_explicit(&d->bounced, memory_order_relaxed);
            n = window > inflight ? window - inflight : 0;
        } else if (now > t0) {
            uint64_t due = (uint64_t)((double)(now - t0) * (double)rate / 1e12);
            if (due > d->phase_sent + LATE_LIMIT) {
                atomic_fetch_add(&d->late, due - d->phase_sent);
                d->phase_sent = due;
            }
            n = due > d->phase_sent ? due - d->phase_sent : 0;
            if (n > BURST_MAX) n = BURST_MAX;
        }
        if (n) send_batch(d, (uint32_t)n, now);
    }
}

/* ---- messages from the main thread ---------------------------------------------- */

static void on_msg(xf_shard *s, uint32_t src, const xf_spsc_rec *r)
{
    (void)src;
    bshard *sh = xf_shard_user(s);
    bench *b = sh->b;
    switch (r->type) {
    case MSG_WAKE: break; /* on_loop refills the window */
    case CMD_CONNECT: {   /* [set, 0: partner streams | 1: component connections] */
        uint32_t a[2];
        memcpy(a, r->data, sizeof a);
        for (uint32_t i = sh->id; i < b->o.lanes; i += b->o.threads) {
            blane *l = &b->lanes[a[0]][i];
            bool ok = a[1] ? connect_to(sh, R_INT_OUT, l, b->target.comp_port, false)
                           : connect_to(sh, R_OUT, l, b->target.s2s_port, false);
            if (!ok) atomic_fetch_add(&b->failures, 1);
        }
        break;
    }
    case CMD_IDLE: {
        cmd_idle c;
        memcpy(&c, r->data, sizeof c);
        sh->idle_mode = c.set ? BENCH_TLS : BENCH_PLAIN;
        sh->idle_want += c.n;
        sh->idle_conc = c.conc ? c.conc : 1;
        break;
    }
    case CMD_CLOSE_IDLE:
    case CMD_CLOSE_ALL:
        sh->idle_want = sh->idle_opened;
        for (bconn *bc = sh->conns, *next; bc; bc = next) {
            next = bc->next; /* a close may free bc */
            if (r->type == CMD_CLOSE_ALL || bc->idle) {
                if (!bc->up) bc->up = true; /* a deliberate close is no failure */
                if (bc->idle && bc->sh->idle_pending && bc->st != N_UP) bc->sh->idle_pending--;
                bc->idle = false;
                if (!gone(bc)) xf_conn_close(bc->c, false);
            }
        }
        if (r->type == CMD_CLOSE_ALL) sh->idle_want = sh->idle_opened = sh->idle_pending = 0;
        break;
    }
}

static void shard_start(xf_shard *s)
{
    bench *b = xf_rt_app(xf_shard_rt(s));
    bshard *sh = calloc(1, sizeof *sh);
    if (!sh) abort();
    sh->b = b;
    sh->s = s;
    sh->id = xf_shard_id(s);
    xf_shard_set_user(s, sh);
    atomic_store(&b->sh[sh->id], sh);
}

static void shard_stop(xf_shard *s)
{
    bshard *sh = xf_shard_user(s);
    if (sh) bury(sh);
    xf_tls_thread_done();
}

/* ---- the main thread's side ---------------------------------------------------- */

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

bench *bench_start(const bench_opts *o, char *err, size_t errlen)
{
    if (o->lanes == 0 || o->lanes > BENCH_LANES_MAX || o->threads == 0) {
        snprintf(err, errlen, "lanes must be 1..%d", BENCH_LANES_MAX);
        return NULL;
    }
    bench *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->o = *o;
    xf_xml_limits_default(&b->lim);
    b->lim.stanza_bytes_max = TOK_STANZA;
    b->lim.stanza_bytes_cap = TOK_STANZA;
    b->tokmem_size = xf_xml_mem_size(&b->lim);
    for (uint32_t set = 0; set < 2; set++)
        for (uint32_t i = 0; i < o->lanes; i++) {
            blane *l = &b->lanes[set][i];
            l->set = set;
            l->idx = i;
            snprintf(l->pdom, sizeof l->pdom, "%c%u.bench", set ? 't' : 'p', i);
            snprintf(l->cdom, sizeof l->cdom, "c%u.bench", i);
            atomic_store(&l->d[0].sender_shard, -1);
            atomic_store(&l->d[1].sender_shard, -1);
        }
    /* One identity per partner domain (all the same certificate), so that the
     * client side presents the right one and SNI finds one on the server side. */
    xf_tls_identity ids[2 * BENCH_LANES_MAX];
    for (uint32_t i = 0; i < 2 * o->lanes; i++)
        ids[i] = (xf_tls_identity){b->lanes[i / o->lanes][i % o->lanes].pdom, o->cert, o->key};
    b->tls = xf_tls_ctx_new(ids, 2 * o->lanes, o->ca, false, err, errlen);
    if (!b->tls) {
        free(b);
        return NULL;
    }
    xf_tls_ctx_no_resume(b->tls); /* every TLS stream pays a full handshake */

    xf_rt_config rc;
    xf_rt_config_defaults(&rc);
    rc.shards = o->threads;
    rc.pin = getenv("XFED_BENCH_PIN") != NULL;
    rc.app = b;
    rc.on_msg = on_msg;
    rc.on_shard_start = shard_start;
    rc.on_shard_stop = shard_stop;
    rc.on_loop = on_loop;
    uint16_t ports[2] = {o->s2s_port, o->int_port};
    for (int i = 0; i < 2; i++) {
        xf_listen_spec *l = &rc.listen[rc.listen_count++];
        struct sockaddr_in *a = (struct sockaddr_in *)&l->addr;
        memset(l, 0, sizeof *l);
        a->sin_family = AF_INET;
        a->sin_port = htons(ports[i]);
        inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
        l->addrlen = sizeof *a;
        l->ops = &bconn_ops;
        l->on_accept = i == 0 ? accept_in : accept_int;
    }
    b->rt = xf_rt_start(&rc, err, errlen);
    if (!b->rt) {
        xf_tls_ctx_free(b->tls);
        free(b);
        return NULL;
    }
    return b;
}

void bench_stop(bench *b)
{
    if (!b) return;
    xf_rt_stop(b->rt);
    for (uint32_t i = 0; i <= b->o.threads; i++)
        free(atomic_load(&b->sh[i])); /* + verification thread */
    for (uint32_t set = 0; set < 2; set++)
        for (uint32_t i = 0; i < b->o.lanes; i++) {
            bench_deck_free(&b->lanes[set][i].d[0].deck);
            bench_deck_free(&b->lanes[set][i].d[1].deck);
        }
    xf_tls_ctx_free(b->tls);
    free(b);
}

static void post_all(bench *b, uint32_t type, const void *data, uint32_t len)
{
    for (uint32_t i = 0; i < b->o.threads; i++)
        while (!xf_rt_post(b->rt, i, type, data, len))
            sleep_ms(1);
}

static bool lanes_ready(bench *b, uint32_t set)
{
    for (uint32_t i = 0; i < b->o.lanes; i++) {
        blane *l = &b->lanes[set][i];
        if (atomic_load(&l->out_up) < 1 || atomic_load(&l->int_up) < 1) return false;
    }
    return true;
}

static bool primed(bench *b, uint32_t set)
{
    for (uint32_t i = 0; i < b->o.lanes; i++)
        for (int d = 0; d < 2; d++)
            if (atomic_load(&b->lanes[set][i].d[d].recv) < 1) return false;
    return true;
}

static bool drained(bench *b, uint32_t set)
{
    for (uint32_t i = 0; i < b->o.lanes; i++)
        for (int d = 0; d < 2; d++) {
            bdir *x = &b->lanes[set][i].d[d];
            if (atomic_load(&x->recv) + atomic_load(&x->bounced) < atomic_load(&x->sent_pub))
                return false;
        }
    return true;
}

int bench_lanes_up(bench *b, const bench_target *t, bench_mode mode, uint32_t timeout_ms, char *err,
                   size_t errlen)
{
    uint32_t set = mode == BENCH_TLS;
    b->target = *t;
    if (!b->decks_made[set]) {
        for (uint32_t i = 0; i < b->o.lanes; i++) {
            blane *l = &b->lanes[set][i];
            char from[48], to[48];
            uint32_t tag = (set * BENCH_LANES_MAX + i) * 2;
            snprintf(from, sizeof from, "%s", l->pdom);
            snprintf(to, sizeof to, "%s", l->cdom);
            if (bench_deck_make(&l->d[0].deck, from, to, tag, 1000 + i) ||
                bench_deck_make(&l->d[1].deck, to, from, tag + 1, 2000 + i)) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
        b->decks_made[set] = true;
    }
    uint64_t until = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    if (t->comp_port) { /* the component domains must exist before partners stream to them */
        uint32_t a[2] = {set, 1};
        post_all(b, CMD_CONNECT, a, sizeof a);
        for (uint32_t i = 0; i < b->o.lanes; i++)
            while (atomic_load(&b->lanes[set][i].int_up) < 1 && bench_now_ns() < until)
                sleep_ms(2);
    }
    uint32_t a[2] = {set, 0};
    post_all(b, CMD_CONNECT, a, sizeof a);
    while (!lanes_ready(b, set)) {
        if (bench_now_ns() > until) {
            uint32_t out = 0, in = 0;
            for (uint32_t i = 0; i < b->o.lanes; i++) {
                out += atomic_load(&b->lanes[set][i].out_up) > 0;
                in += atomic_load(&b->lanes[set][i].int_up) > 0;
            }
            snprintf(err, errlen,
                     "lanes not up after %u ms: %u/%u partner streams, %u/%u internal links",
                     timeout_ms, out, b->o.lanes, in, b->o.lanes);
            return -1;
        }
        sleep_ms(2);
    }
    /* Priming: one stanza each way per lane makes the target open its streams back. */
    bench_load(b, mode, 1, 0);
    while (!primed(b, set)) {
        if (bench_now_ns() > until) {
            uint32_t got = 0, back = 0;
            for (uint32_t i = 0; i < b->o.lanes; i++) {
                got += atomic_load(&b->lanes[set][i].d[0].recv) > 0;
                back += atomic_load(&b->lanes[set][i].d[1].recv) > 0;
            }
            bench_load_stop(b);
            snprintf(err, errlen, "priming: %u/%u lanes routed a stanza in, %u/%u back", got,
                     b->o.lanes, back, b->o.lanes);
            return -1;
        }
        sleep_ms(2);
    }
    bench_load_stop(b);
    return 0;
}

void bench_load(bench *b, bench_mode mode, uint32_t window, double rate)
{
    uint32_t set = mode == BENCH_TLS, senders = 2 * b->o.lanes;
    atomic_store(&b->phase, PH_NONE);
    atomic_store(&b->phase_set, set);
    atomic_store(&b->window, window);
    atomic_store(&b->rate_milli, (uint64_t)(rate * 1000.0 / senders));
    atomic_store(&b->phase_t0, bench_now_ns());
    atomic_fetch_add(&b->phase_gen, 1);
    atomic_store_explicit(&b->phase, window ? PH_CLOSED : PH_OPEN, memory_order_release);
    post_all(b, MSG_WAKE, NULL, 0);
}

void bench_load_stop(bench *b)
{
    uint32_t set = atomic_load(&b->phase_set);
    atomic_store(&b->phase, PH_NONE);
    uint64_t until = bench_now_ns() + 5000000000ull;
    while (!drained(b, set) && bench_now_ns() < until)
        sleep_ms(2);
    /* What has not arrived after the drain is lost; the receive count is then
     * brought level so the next phase's window starts empty. */
    for (uint32_t i = 0; i < b->o.lanes; i++)
        for (int d = 0; d < 2; d++) {
            bdir *x = &b->lanes[set][i].d[d];
            uint64_t sent = atomic_load(&x->sent_pub),
                     recv = atomic_load(&x->recv) + atomic_load(&x->bounced);
            if (sent > recv) {
                atomic_fetch_add(&b->lost, sent - recv);
                atomic_fetch_add(&x->recv, sent - recv); /* so the next window starts even */
            }
        }
}

uint64_t bench_lost(bench *b)
{
    return atomic_exchange(&b->lost, 0);
}

void bench_hist_reset(bench *b)
{
    uint32_t g = atomic_fetch_add(&b->hist_gen, 1) + 1;
    post_all(b, MSG_WAKE, NULL, 0);
    for (uint32_t i = 0; i < b->o.threads; i++) {
        bshard *sh = atomic_load(&b->sh[i]);
        while (atomic_load_explicit(&sh->hist_gen_seen, memory_order_acquire) != g)
            sleep_ms(1);
    }
}

void bench_hist_read(bench *b, uint64_t *h)
{
    memset(h, 0, BENCH_HIST_BUCKETS * sizeof *h);
    for (uint32_t i = 0; i < b->o.threads; i++)
        bench_hist_merge(h, &atomic_load(&b->sh[i])->hist);
}

void bench_counts_read(bench *b, bench_counts *c)
{
    memset(c, 0, sizeof *c);
    for (uint32_t set = 0; set < 2; set++)
        for (uint32_t i = 0; i < b->o.lanes; i++)
            for (int d = 0; d < 2; d++) {
                bdir *x = &b->lanes[set][i].d[d];
                c->stanzas += atomic_load_explicit(&x->recv, memory_order_relaxed);
                c->bytes += atomic_load_explicit(&x->recv_bytes, memory_order_relaxed);
                c->late += atomic_load_explicit(&x->late, memory_order_relaxed);
                c->bounced += atomic_load_explicit(&x->bounced, memory_order_relaxed);
            }
}

uint32_t bench_idle_open(bench *b, const bench_target *t, bench_mode mode, uint32_t n,
                         uint32_t concurrent, uint32_t timeout_ms, double *secs)
{
    b->target = *t;
    uint32_t up0 = atomic_load(&b->idle_up), failed0 = atomic_load(&b->idle_failed);
    uint64_t t0 = bench_now_ns(), until = t0 + (uint64_t)timeout_ms * 1000000u;
    for (uint32_t i = 0; i < b->o.threads; i++) {
        cmd_idle c = {mode == BENCH_TLS, n / b->o.threads + (i < n % b->o.threads),
                      concurrent / b->o.threads + 1};
        while (!xf_rt_post(b->rt, i, CMD_IDLE, &c, sizeof c))
            sleep_ms(1);
    }
    uint32_t up, seen = 0;
    uint64_t t_last = t0; /* the time of the last stream that came up (or failed) */
    for (;;) {
        up = atomic_load(&b->idle_up) - up0;
        uint32_t failed = atomic_load(&b->idle_failed) - failed0;
        uint64_t now = bench_now_ns();
        if (up + failed != seen) {
            seen = up + failed;
            t_last = now;
        }
        /* done, out of time, or stuck: 5 s without a stream coming up */
        if (up + failed >= n || now > until || now - t_last > 5000000000ull) break;
        sleep_ms(1);
    }
    *secs = (double)(t_last - t0) / 1e9;
    return up;
}

static void wait_closed(bench *b, uint32_t ms)
{
    uint64_t until = bench_now_ns() + (uint64_t)ms * 1000000u;
    while (atomic_load(&b->live) > 0 && bench_now_ns() < until)
        sleep_ms(5);
}

void bench_close_idle(bench *b)
{
    post_all(b, CMD_CLOSE_IDLE, NULL, 0);
    sleep_ms(200);
}

void bench_close_all(bench *b)
{
    atomic_store(&b->phase, PH_NONE);
    post_all(b, CMD_CLOSE_ALL, NULL, 0);
    wait_closed(b, 10000);
    for (uint32_t set = 0; set < 2; set++)
        for (uint32_t i = 0; i < b->o.lanes; i++) {
            blane *l = &b->lanes[set][i];
            atomic_store(&l->out_up, 0);
            atomic_store(&l->int_up, 0);
            for (int d = 0; d < 2; d++) {
                bdir *x = &l->d[d];
                x->next = 0;
                x->sent = x->phase_sent = 0;
                x->sender = NULL;
                atomic_store(&x->sender_shard, -1);
                atomic_store(&x->sent_pub, 0);
                atomic_store(&x->recv, 0);
                atomic_store(&x->recv_bytes, 0);
                atomic_store(&x->late, 0);
                atomic_store(&x->bounced, 0);
            }
        }
    atomic_store(&b->idle_up, 0);
    atomic_store(&b->idle_failed, 0);
}

uint64_t bench_failures(bench *b)
{
    return atomic_exchange(&b->failures, 0);
}
