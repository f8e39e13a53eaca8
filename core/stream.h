/* One s2s stream (inbound, outbound, or a verification stream on the
 * verification thread) and the per-thread state it lives in. Internal to
 * the s2s layer: stream.c is the state machine, s2s.c the threads, listeners,
 * dialing and messages around it. See core/s2s.h and core/README.md. */
#ifndef XF_STREAM_H
#define XF_STREAM_H

#include "config.h"
#include "metrics.h"
#include "negotiate.h"
#include "partner.h"
#include "pstatus.h"
#include "rt.h"
#include "shard_dns.h"
#include "snapshot.h"
#include "tls_session.h"
#include "xml_tok.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define XF_S2S_PAIRS_MAX     4     /* domain pairs authenticated on one inbound stream */
#define XF_S2S_ADDRS_MAX     8     /* addresses tried per outbound dial */
#define XF_S2S_TARGETS_MAX   8     /* SRV targets tried per outbound dial */
#define XF_S2S_PENDING_MAX   1024  /* db:result checks in flight per core */
#define XF_S2S_ID_LEN        16    /* our stream ids: 16 hex digits */
#define XF_S2S_PEER_ID_MAX   128   /* a peer's stream id we keep for dialback */
#define XF_S2S_KEY_MAX       256   /* a dialback key we accept */
#define XF_S2S_HEADER_MS     10000 /* the peer's header must come within 10 s (spec §8) */
#define XF_S2S_VERIFY_MS     30000 /* a db:verify round trip gives up after this */
#define XF_S2S_LIMIT_SLOTS   4096  /* per-partner connection counters (power of two) */
#define XF_S2S_QUEUE_STANZAS 10000 /* per outbound stream while it negotiates (spec §7) */
#define XF_S2S_QUEUE_BYTES   (16u << 20)

/* Message types between threads (below 64: the application's range). */
enum {
    XF_MSG_DBV_REQUEST = 17, /* core -> verification thread */
    XF_MSG_DBV_REPLY = 18,   /* verification thread -> core */
    XF_MSG_OUT_STANZA = 19,  /* any core -> the partner's owner core: send out */
};

typedef enum { XF_DB_VALID = 0, XF_DB_INVALID = 1, XF_DB_ERROR = 2 } xf_db_result;

typedef struct {
    uint64_t cookie;                        /* the asking core's pending slot and stream */
    char originating[XF_DOMAIN_MAX + 1];    /* the partner domain that claims the key */
    char receiving[XF_DOMAIN_MAX + 1];      /* our local domain */
    char stream_id[XF_S2S_PEER_ID_MAX + 1]; /* the id of the stream the key came on */
    char key[XF_S2S_KEY_MAX + 1];
    char proxy[XF_PROXY_MAX + 1]; /* the partner's proxy FQDN, or "" for SRV */
    uint8_t tls;                  /* the partner's TLS setting (xf_neg) */
} xf_dbv_request;

typedef struct {
    uint64_t cookie;
    uint32_t result; /* xf_db_result */
    char why[160];   /* for the log: what failed */
} xf_dbv_reply;

typedef enum { XF_DIR_IN = 0, XF_DIR_OUT = 1, XF_DIR_VERIFY = 2 } xf_sdir;

enum { XF_PAIR_FREE = 0, XF_PAIR_PENDING, XF_PAIR_VALID };

typedef struct {
    char remote[XF_DOMAIN_MAX + 1];
    uint8_t local; /* index into the local domains */
    uint8_t state;
    uint8_t method; /* XF_METHOD_* once valid */
    int16_t pend;   /* pending slot while PENDING, else -1 */
} xf_pair;

typedef struct xf_s2s_shard xf_s2s_shard;
typedef struct xf_stream xf_stream;
typedef struct xf_dial xf_dial;

/* Process-wide, read-only once the runtime runs (except the atomics). */
typedef struct xf_s2s_app {
    xf_tls_ctx *tls;
    uint32_t nlocals;
    char locals[XF_LOCALS_MAX][XF_DOMAIN_MAX + 1];
    char random_secret[65]; /* dialback secret when the gateway passphrase is empty */
    char dns[XF_HOSTPORT_MAX];
    xf_pstatus *pstatus;
    uint32_t shards;
    xf_s2s_shard **sh; /* shards + 1 (the last: verification thread) */
    /* Connection limits (spec §5): all partner streams, and per partner and
     * direction in slots keyed by the partner's primary domain hash. */
    _Atomic uint32_t streams_total;
    _Atomic uint64_t limit_key[XF_S2S_LIMIT_SLOTS];
    _Atomic uint32_t limit_count[XF_S2S_LIMIT_SLOTS][2];
    void (*chained_start)(xf_shard *s);
    void (*chained_stop)(xf_shard *s);
    xf_msg_fn chained_verify_msg;
    struct xf_s2s_listener {
        struct xf_s2s_app *app;
        bool direct;
    } plain, direct;
    char ca_file[XF_PATH_MAX];
    /* The router (route.h): internal servers, the store for invites, and the invites
     * read at start ("U\0X\0" pairs; every core copies them into its own set). */
    uint32_t ninternals;
    struct xf_s2s_internal {
        char name[64];
        struct sockaddr_storage addr;
        socklen_t addrlen;
        char secret[XF_SECRET_MAX];
    } internals[XF_INTERNALS_MAX];
    char store_path[XF_PATH_MAX];
    char *invites_boot;
    size_t invites_boot_len;
    struct xf_store *vstore; /* the verification thread's own store connection */
} xf_s2s_app;

typedef struct {
    xf_stream *st;
    uint64_t sid;
} xf_pending_slot;

/* Per thread (each core and the verification thread). */
struct xf_s2s_shard {
    xf_s2s_app *app;
    xf_shard *shard;
    xf_shard_dns *dns; /* NULL until first use */
    xf_core_metrics *m;
    uint32_t id;
    uint64_t next_sid;
    uint64_t rng;
    xf_stream *outs; /* outbound streams of this core */
    xf_stream *ins;  /* inbound streams of this core */
    struct xf_route_shard *rs;
    uint8_t *scratch; /* a re-serialised stanza (XF_ROUTE_STANZA_MAX bytes) */
    xf_pending_slot pend[XF_S2S_PENDING_MAX];
    uint32_t pend_next;
    size_t tokmem;
    xf_xml_limits lim;
    int32_t row_in_opened, row_out_opened;
    char why[192]; /* the last limit refusal's text */
};

struct xf_stream {
    xf_s2s_shard *sh;
    xf_conn *c;
    xf_sdir dir;
    uint8_t state;
    uint8_t local;  /* local domain index */
    uint8_t method; /* outbound: the method that authenticated */
    bool direct_tls;
    bool peer_v1, peer_db, peer_db_errors;
    bool header_sent;
    bool external_failed;
    bool closing;
    bool dead;
    bool counted;  /* holds a connection-limit place */
    bool tls_done; /* handshake finished (metrics counted) */
    uint8_t busy;  /* nesting of callbacks: free only at 0 */
    uint8_t dns_pending;
    int32_t status_row; /* pstatus row of the partner, -1 unknown */
    uint64_t sid;
    uint64_t born, last_rx, last_tx, last_stanza;
    uint64_t fed_end;                /* tokenizer offset at the end of the data fed so far */
    char remote[XF_DOMAIN_MAX + 1];  /* in: the header's 'from' ("" none); out: the peer */
    char partner[XF_DOMAIN_MAX + 1]; /* the partner's primary domain ("" unknown) */
    char id[XF_S2S_ID_LEN + 1];      /* our stream id (inbound) */
    char peer_id[XF_S2S_PEER_ID_MAX + 1];
    xf_tls *tls;
    xf_pair pairs[XF_S2S_PAIRS_MAX];
    xf_dial *dial;                 /* outbound while connecting */
    xf_dbv_request *vreq;          /* verification streams: the question */
    uint32_t vsrc;                 /* verification streams: the asking core */
    xf_stream *next, *prev;        /* the core's outbound or inbound list */
    uint8_t pol;                   /* the partner's tls/sasl/dialback when attached */
    int32_t row_routed, row_bytes; /* metric rows for this partner and direction */
    /* outbound: stanzas waiting for the stream to authenticate (bounded), packed as
     * stanza.h says so that each can be bounced */
    uint8_t *q;
    uint32_t qlen, qcap, qcount;
    uint64_t q_since; /* when the oldest queued stanza arrived */
    /* outbound XEP-0198: stanzas sent but not acknowledged (same packing) */
    uint8_t sm;      /* SM_OFF, SM_ENABLING, SM_ON */
    bool sm_offered; /* the peer's features listed <sm xmlns='urn:xmpp:sm:3'/> */
    bool sm_r_out;   /* an <r/> is outstanding */
    uint8_t *ua;
    uint32_t ua_head, ua_len, ua_cap, ua_count; /* bytes [ua_head, ua_len) are unacked */
    uint32_t sm_sent, sm_acked;                 /* h values, mod 2^32 */
    bool sasl_ok;            /* outbound: SASL succeeded, waiting for the restarted stream */
    bool got_header;         /* on the current (restarted) stream */
    bool ever_header;        /* on this connection */
    bool restart;            /* SASL succeeded: the stream restarts after this element */
    bool too_big;            /* the stream error carries <stanza-too-big/> */
    xf_features_out offered; /* outbound: the peer's last features */
    xf_xml_tok tok;
    void *tokmem;
};

/* ---- stream.c --------------------------------------------------------------- */
extern const xf_conn_ops xf_stream_ops;
/* A new stream on sh (NULL when out of memory); the caller attaches a conn. */
xf_stream *xf_stream_new(xf_s2s_shard *sh, xf_sdir dir);
/* Inbound: a connection accepted (direct: TLS from the first byte). */
void xf_stream_accepted(xf_stream *st, xf_conn *c, bool direct);
/* Outbound/verification: connected on c (direct: XEP-0368 TLS first). */
void xf_stream_connected(xf_stream *st, bool direct);
/* Ends the stream with a stream error (cond NULL: a clean close). */
void xf_stream_fail(xf_stream *st, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Registers the stream with its partner (connection limits, status); on a
 * refusal the stream fails with resource-constraint and false is returned. */
bool xf_stream_attach(xf_stream *st, const xf_partner *p);
/* Frees a stream that has no connection (dial failed). */
void xf_stream_release(xf_stream *st);
/* A db:verify answer for pending slot `slot` arrived. */
void xf_stream_dbv_reply(xf_stream *st, int slot, const xf_dbv_reply *r);
/* Outbound: queue (or send, when ready) a stanza packed as stanza.h says (hdr: meta and
 * strings; bytes: the stanza); false when the queue is full. */
bool xf_stream_out_send(xf_stream *st, const uint8_t *hdr, size_t hlen, const uint8_t *bytes,
                        size_t len);
/* Outbound stream ending: queued and unacknowledged stanzas are bounced with `cond`. */
void xf_stream_out_abandon(xf_stream *st, const char *cond, const char *why);

/* ---- s2s.c (used by stream.c) ------------------------------------------------ */
const xf_snapshot *xf_s2s_snap(xf_s2s_shard *sh);
int xf_s2s_local_index(const xf_s2s_app *app, const char *domain, size_t len);
/* The dialback secret in force (gateway passphrase, or the random one). */
const char *xf_s2s_db_secret(xf_s2s_shard *sh, size_t *len);
/* Connection limits: take/give back a place for a partner stream. */
bool xf_s2s_limit_take(xf_s2s_shard *sh, const xf_partner *p, int dir, const char **why);
void xf_s2s_limit_give(xf_s2s_shard *sh, const char *partner_domain, int dir);
/* Pending db:result checks. */
int xf_s2s_pend_add(xf_s2s_shard *sh, xf_stream *st);
void xf_s2s_pend_drop(xf_s2s_shard *sh, int slot);
uint64_t xf_s2s_cookie(xf_s2s_shard *sh, int slot);
/* Outbound: start dialing (DNS, connect) for an outbound or verification stream. */
void xf_s2s_dial(xf_stream *st);
/* A dial step after a connection failed or closed before the stream opened. */
void xf_s2s_dial_next(xf_stream *st, const char *why);
void xf_s2s_dial_abort(xf_stream *st, const char *why);
void xf_s2s_out_unlink(xf_stream *st);
/* Verification thread: the answer to the asking core. */
void xf_s2s_verify_done(xf_stream *st, xf_db_result r, const char *why);
/* Sends a stanza (packed header + bytes, stanza.h) to `remote` from local domain `local`
 * through the partner's owner core and its outbound stream (opened on demand). On false
 * nothing was queued; *why (when not NULL) names the bounce condition. */
bool xf_s2s_route_out(xf_s2s_shard *sh, uint32_t local, const char *remote, const uint8_t *hdr,
                      size_t hlen, const uint8_t *bytes, size_t len, const char **why);
/* Closes the streams whose partner is gone or whose negotiation settings changed. */
void xf_s2s_prune_streams(xf_s2s_shard *sh);
void xf_s2s_count_refusal(xf_s2s_shard *sh, int dir, const char *reason);
uint64_t xf_s2s_random(xf_s2s_shard *sh);

#endif
