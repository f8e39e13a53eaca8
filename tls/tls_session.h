/* TLS for s2s streams with wolfSSL on memory I/O callbacks: io_uring owns the
 * socket, so ciphertext comes in as byte slices (a provided buffer) and goes
 * out through a sink (the connection's output buffer). Nothing here blocks or
 * touches a socket.
 *
 *   xf_tls_ctx   one per process: a server context per local domain (SNI picks
 *                it), a client context; ChaCha20-Poly1305 first (Debian's
 *                wolfSSL has no AES-NI), TLS 1.2 minimum, a client certificate
 *                requested (SASL EXTERNAL) but not required (dialback fallback)
 *   xf_tls       one per stream: feed ciphertext, get plaintext; write plaintext
 *
 * The chain verdict never fails the handshake by itself: the stream layer
 * decides from it (SASL EXTERNAL only after chain AND name validation). */
#ifndef XF_TLS_SESSION_H
#define XF_TLS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct xf_tls_ctx xf_tls_ctx;
typedef struct xf_tls xf_tls;

typedef struct {
    const char *domain; /* a local domain */
    const char *cert;   /* PEM chain */
    const char *key;    /* PEM key */
} xf_tls_identity;

/* Ciphertext out: false when the sink is full (backpressure); the data is
 * then kept by wolfSSL and offered again on the next call. */
typedef bool (*xf_tls_sink)(void *arg, const uint8_t *data, size_t len);
/* Plaintext in. */
typedef void (*xf_tls_plain)(void *arg, const uint8_t *data, size_t len);

typedef enum {
    XF_TLS_AGAIN = 0,  /* needs more input */
    XF_TLS_CLOSED = 1, /* the peer sent close_notify */
    XF_TLS_ERROR = 2,  /* fatal: xf_tls_error says why */
} xf_tls_rc;

/* Loads every identity (the first is the default for clients without SNI)
 * and the CA file (plus the system CAs when system_cas). NULL with a message. */
xf_tls_ctx *xf_tls_ctx_new(const xf_tls_identity *ids, size_t n, const char *ca_file,
                           bool system_cas, char *err, size_t errlen);
void xf_tls_ctx_free(xf_tls_ctx *c);
/* Client side: never cache sessions, so every handshake is a full one (the
 * benchmark measures handshakes; call before the first connection). */
void xf_tls_ctx_no_resume(xf_tls_ctx *c);
/* A thread that used TLS or certificate checks calls this before it exits:
 * wolfSSL keeps a per-thread ECC point cache (FP_ECC) that only its own
 * thread can free. */
void xf_tls_thread_done(void);

/* Server side of an inbound STARTTLS or direct-TLS stream. */
xf_tls *xf_tls_accept(xf_tls_ctx *c, xf_tls_sink sink, void *sink_arg);
/* Client side towards `peer_domain` (SNI = peer_domain), presenting the
 * certificate of `local_domain`; alpn e.g. "xmpp-server" for XEP-0368 or NULL.
 * A cached session for peer_domain is resumed when there is one. */
xf_tls *xf_tls_connect(xf_tls_ctx *c, const char *peer_domain, const char *local_domain,
                       const char *alpn, xf_tls_sink sink, void *sink_arg);
void xf_tls_free(xf_tls *t);

/* Feeds ciphertext; drives the handshake and hands plaintext to `plain`. */
xf_tls_rc xf_tls_input(xf_tls *t, const uint8_t *data, size_t len, xf_tls_plain plain, void *arg);
/* Encrypts plaintext into the sink. False on error or when the sink refused
 * (then nothing of `data` was taken). Coalesce: one call per loop iteration. */
bool xf_tls_write(xf_tls *t, const void *data, size_t len);
/* Sends close_notify. */
void xf_tls_shutdown(xf_tls *t);

bool xf_tls_ready(const xf_tls *t); /* handshake complete */
bool xf_tls_resumed(xf_tls *t);
const char *xf_tls_version(xf_tls *t);
const char *xf_tls_cipher(xf_tls *t);
const char *xf_tls_error(const xf_tls *t);
/* Server side: the SNI the client asked for, or NULL. */
const char *xf_tls_sni(xf_tls *t);
/* The peer's leaf certificate (DER; valid while t lives), or false. */
bool xf_tls_peer_cert(xf_tls *t, const uint8_t **der, size_t *len);
/* True when the peer's chain validated against the trusted CAs. */
bool xf_tls_peer_chain_valid(const xf_tls *t);

#endif
