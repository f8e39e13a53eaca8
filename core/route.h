/* The router inside the s2s layer: XEP-0114 links to the internal servers (link.c) and
 * the routing decisions between them and the partners' s2s streams (route.c).
 *
 *   partner -> internal   an inbound stream (any core) checks the stanza's addresses and
 *                         the partner-type policy, then hands it to the core that owns the
 *                         partner (xf_snapshot_shard of its primary domain), which writes it
 *                         to the link serving the stanza's 'from' domain
 *   internal -> partner   a link (on the owner core) checks 'to' is a partner and 'from' a
 *                         local domain, records invites, strips <status/> for public
 *                         partners, and queues the stanza on the partner's outbound stream
 *                         (opened on demand, bounded queue)
 *   bounces               whatever cannot be delivered goes back as an RFC 6120 §8.3 error
 *                         to where it came from; errors are never bounced
 *
 * Internal to the s2s library, like stream.h. */
#ifndef XF_ROUTE_H
#define XF_ROUTE_H

#include "invites.h"
#include "stanza.h"
#include "stream.h"

#define XF_LINK_BACKOFF_MIN_MS 250
#define XF_LINK_BACKOFF_MAX_MS 8000 /* reconnect attempts back off to this, no further */
#define XF_LINK_CONNECT_MS     5000
#define XF_ROUTE_TICK_MS       250 /* partner changes are noticed within this (plus the 1 s poll) */
#define XF_ROUTE_STANZA_MAX    (XF_XML_STANZA_POSTAUTH_MAX + 16384) /* a rewritten stanza */
/* The per-core scratch area: a rewritten stanza, then two stanza-fact records (A: the
 * stanza being routed, B: the error that bounces one). */
#define XF_ROUTE_SCRATCH (XF_ROUTE_STANZA_MAX + 2 * sizeof(xf_sfacts))
#define XF_SCRATCH_FACTS(sh, i)                                                                    \
    ((xf_sfacts *)((sh)->scratch + XF_ROUTE_STANZA_MAX + (i) * sizeof(xf_sfacts)))

enum {
    XF_MSG_TO_INTERNAL = 20, /* any core -> the partner's owner core: write to a link */
    XF_MSG_INVITE = 21,      /* a core -> every other core and the verification thread */
};

typedef struct xf_route_shard xf_route_shard;
typedef struct xf_link xf_link;

/* One partner domain this core serves, with its link to each internal server. */
typedef struct xf_ldom {
    char domain[XF_DOMAIN_MAX + 1];
    char partner[XF_DOMAIN_MAX + 1]; /* the partner's primary domain */
    uint64_t seen;                   /* the snapshot version that last listed it */
    xf_link *links[XF_INTERNALS_MAX];
    struct xf_ldom *next;
} xf_ldom;

struct xf_route_shard {
    xf_s2s_shard *sh;
    xf_invites *invites;
    xf_ldom **dom_index; /* hash index over doms, rebuilt when the set changes */
    uint32_t dom_cap;
    xf_ldom *doms;
    uint64_t version; /* the snapshot version reconciled last */
    xf_timer tick;
    int32_t row_bounce[8];
    uint32_t links_up;
    /* Per-stanza log lines are rate limited (XF_ROUTE_LOG_PER_S a second per core):
     * under overload they would otherwise cost more than the stanzas. */
    uint64_t log_second;
    uint32_t log_lines;
    uint64_t log_suppressed;
};
#define XF_ROUTE_LOG_PER_S 50

/* ---- link.c ---------------------------------------------------------------------- */
xf_link *xf_link_new(xf_route_shard *rs, xf_ldom *d, uint32_t internal);
/* Closes (politely) and frees once the connection is gone; no reconnect. */
void xf_link_remove(xf_link *l);
bool xf_link_ready(const xf_link *l);
xf_route_shard *xf_link_shard(const xf_link *l);
/* Writes a stanza; false when the link is not ready or its output is full. */
bool xf_link_write(xf_link *l, const void *data, size_t len);

/* ---- route.c --------------------------------------------------------------------- */
xf_route_shard *xf_route_shard_new(xf_s2s_shard *sh);
void xf_route_shard_free(xf_route_shard *rs);
/* A stanza from an internal server arrived on link l (the tokenizer's event). */
void xf_route_from_internal(xf_link *l, const xf_xml_tok *t, const xf_xml_stanza *s);
/* A stanza from a partner passed the stream's checks (authenticated pair, local 'to');
 * f: its facts, read once by the stream (XF_SCRATCH_FACTS(sh, 0)). */
void xf_route_from_partner(xf_stream *st, const xf_xml_tok *t, const xf_xml_stanza *s,
                           uint32_t local, const char *from_domain, xf_sfacts *f);
/* A stanza that cannot go on: bounced to where it came from (or counted as dropped). */
void xf_route_bounce(xf_s2s_shard *sh, const xf_spacked *p, const char *cond, const char *text);
/* Every packed stanza of a queue buffer, bounced. */
void xf_route_bounce_all(xf_s2s_shard *sh, const uint8_t *q, size_t len, const char *cond,
                         const char *text);
/* Core messages of the router (XF_MSG_TO_INTERNAL, XF_MSG_INVITE); false: not ours. */
bool xf_route_msg(xf_s2s_shard *sh, uint32_t src, const xf_spsc_rec *r);
/* The verification thread's part: invite changes into the store. */
void xf_route_verify_msg(xf_s2s_app *app, xf_shard *s, const xf_spsc_rec *r);
/* Whether a stanza body may appear in logs (the gateway's log-message-bodies). */
bool xf_route_log_bodies(xf_s2s_shard *sh);

#endif
