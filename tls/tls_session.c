#include "tls_session.h"

#include <wolfssl/options.h> /* must come first: the library's build configuration */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/openssl/x509v3.h>
#include <wolfssl/wolfio.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Server order: ChaCha20 first, since this wolfSSL build has no AES-NI
 * (ChaCha20-Poly1305 runs ~2.7x faster than AES-GCM here). */
static const char ciphers[] =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

#define SESSION_CACHE_MAX 256

typedef struct {
    char peer[254];
    WOLFSSL_SESSION *sess;
} cached_session;

struct xf_tls_ctx {
    size_t n;
    bool no_resume;       /* client side: full handshakes only (xf_tls_ctx_no_resume) */
    WOLFSSL_CTX **server; /* per local domain */
    WOLFSSL_CTX **client; /* per local domain: presents that domain's certificate */
    char (*domains)[254];
    pthread_mutex_t lock; /* the session cache only; taken with trylock, never waited on */
    cached_session cache[SESSION_CACHE_MAX];
    uint32_t cache_next;
};

struct xf_tls {
    xf_tls_ctx *ctx;
    WOLFSSL *ssl;
    bool server, ready, chain_bad, sink_full;
    const uint8_t *in;
    size_t in_len;
    xf_tls_sink sink;
    void *sink_arg;
    char peer[254]; /* client side: for the session cache */
    char err[160];
};

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    xf_tls *t = arg;
    if (t->in_len == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = (size_t)sz < t->in_len ? (size_t)sz : t->in_len;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    xf_tls *t = arg;
    if (!t->sink(t->sink_arg, (const uint8_t *)buf, (size_t)sz)) {
        t->sink_full = true;
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    }
    return sz;
}

/* Records the chain verdict instead of failing the handshake: the stream
 * layer decides what an invalid chain still allows (dialback). */
static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    xf_tls *t = store ? store->userCtx : NULL;
    if (!t || preverify) return 1;
    /* XMPP servers present their server certificate as a client certificate
     * (XEP-0178): a leaf whose extended key usage has serverAuth but not
     * clientAuth is fine. wolfSSL checks the usage only after the chain and
     * signature verified, so this error alone leaves the chain valid. */
    if (t->server && store->error == EXTKEYUSE_AUTH_E && store->error_depth == 0) {
        WOLFSSL_X509 *leaf = wolfSSL_X509_STORE_CTX_get_current_cert(store);
        if (leaf && (wolfSSL_X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER)) return 1;
    }
    t->chain_bad = true;
    return 1;
}

static int sni_cb(WOLFSSL *ssl, int *ret, void *arg)
{
    xf_tls_ctx *c = arg;
    const char *name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
    if (name)
        for (size_t i = 0; i < c->n; i++)
            if (strcasecmp(name, c->domains[i]) == 0) {
                wolfSSL_set_SSL_CTX(ssl, c->server[i]);
                break;
            }
    /* An unknown name keeps the default certificate; the stream header's
     * 'to' then gets host-unknown, with a clear text. */
    return 0;
}

static WOLFSSL_CTX *make_ctx(bool server, const xf_tls_identity *id, const char *ca_file,
                             bool system_cas, char *err, size_t errlen)
{
    WOLFSSL_CTX *ctx =
        wolfSSL_CTX_new(server ? wolfSSLv23_server_method() : wolfSSLv23_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    const char *what = NULL;
    if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS)
        what = "cannot require TLS 1.2";
    else if (wolfSSL_CTX_set_cipher_list(ctx, ciphers) != WOLFSSL_SUCCESS)
        what = "cannot set the cipher list";
    else if (wolfSSL_CTX_use_certificate_chain_file(ctx, id->cert) != WOLFSSL_SUCCESS)
        what = "cannot load the certificate chain";
    else if (wolfSSL_CTX_use_PrivateKey_file(ctx, id->key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        what = "cannot load the private key";
    else if (ca_file && ca_file[0] &&
             wolfSSL_CTX_load_verify_locations(ctx, ca_file, NULL) != WOLFSSL_SUCCESS)
        what = "cannot load the CA file";
    if (what) {
        snprintf(err, errlen, "%s: %s (%s)", id->domain, what,
                 strcmp(what, "cannot load the CA file") == 0 ? ca_file : id->cert);
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    if (system_cas) wolfSSL_CTX_load_system_CA_certs(ctx); /* best effort */
    /* Ask for the peer's certificate (servers: for SASL EXTERNAL) but never
     * require it here. */
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, verify_cb);
    wolfSSL_CTX_SetIORecv(ctx, io_recv);
    wolfSSL_CTX_SetIOSend(ctx, io_send);
    return ctx;
}

void xf_tls_ctx_free(xf_tls_ctx *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        if (c->server && c->server[i]) wolfSSL_CTX_free(c->server[i]);
        if (c->client && c->client[i]) wolfSSL_CTX_free(c->client[i]);
    }
    for (size_t i = 0; i < SESSION_CACHE_MAX; i++)
        if (c->cache[i].sess) wolfSSL_SESSION_free(c->cache[i].sess);
    pthread_mutex_destroy(&c->lock);
    free(c->server);
    free(c->client);
    free(c->domains);
    free(c);
}

xf_tls_ctx *xf_tls_ctx_new(const xf_tls_identity *ids, size_t n, const char *ca_file,
                           bool system_cas, char *err, size_t errlen)
{
    if (n == 0) {
        snprintf(err, errlen, "no local domain with a certificate");
        return NULL;
    }
    wolfSSL_Init();
    xf_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->n = n;
    c->server = calloc(n, sizeof *c->server);
    c->client = calloc(n, sizeof *c->client);
    c->domains = calloc(n, sizeof *c->domains);
    if (!c->server || !c->client || !c->domains) {
        snprintf(err, errlen, "out of memory");
        xf_tls_ctx_free(c);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(c->domains[i], sizeof c->domains[i], "%s", ids[i].domain);
        c->server[i] = make_ctx(true, &ids[i], ca_file, system_cas, err, errlen);
        c->client[i] =
            c->server[i] ? make_ctx(false, &ids[i], ca_file, system_cas, err, errlen) : NULL;
        if (!c->client[i]) {
            xf_tls_ctx_free(c);
            return NULL;
        }
        wolfSSL_CTX_set_servername_callback(c->server[i], sni_cb);
        wolfSSL_CTX_set_servername_arg(c->server[i], c);
    }
    return c;
}

static xf_tls *session_new(xf_tls_ctx *c, WOLFSSL_CTX *wctx, bool server, xf_tls_sink sink,
                           void *arg)
{
    xf_tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ctx = c;
    t->server = server;
    t->sink = sink;
    t->sink_arg = arg;
    t->ssl = wolfSSL_new(wctx);
    if (!t->ssl) {
        free(t);
        return NULL;
    }
    wolfSSL_SetIOReadCtx(t->ssl, t);
    wolfSSL_SetIOWriteCtx(t->ssl, t);
    wolfSSL_SetCertCbCtx(t->ssl, t);
    return t;
}

void xf_tls_ctx_no_resume(xf_tls_ctx *c)
{
    c->no_resume = true;
}

xf_tls *xf_tls_accept(xf_tls_ctx *c, xf_tls_sink sink, void *sink_arg)
{
    xf_tls *t = session_new(c, c->server[0], true, sink, sink_arg);
    if (!t) return NULL;
    /* XEP-0368 clients ask for ALPN "xmpp-server"; others send none. */
    char alpn[] = "xmpp-server";
    wolfSSL_UseALPN(t->ssl, alpn, sizeof alpn - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
    return t;
}

xf_tls *xf_tls_connect(xf_tls_ctx *c, const char *peer_domain, const char *local_domain,
                       const char *alpn, xf_tls_sink sink, void *sink_arg)
{
    size_t i = 0;
    for (size_t k = 0; k < c->n; k++)
        if (local_domain && strcasecmp(local_domain, c->domains[k]) == 0) i = k;
    xf_tls *t = session_new(c, c->client[i], false, sink, sink_arg);
    if (!t) return NULL;
    snprintf(t->peer, sizeof t->peer, "%s", peer_domain);
    wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, peer_domain, (unsigned short)strlen(peer_domain));
    if (alpn) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", alpn);
        wolfSSL_UseALPN(t->ssl, buf, (unsigned)strlen(buf), WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
    }
    if (pthread_mutex_trylock(&c->lock) == 0) {
        for (size_t k = 0; k < SESSION_CACHE_MAX; k++)
            if (c->cache[k].sess && strcasecmp(c->cache[k].peer, peer_domain) == 0) {
                wolfSSL_set_session(t->ssl, c->cache[k].sess);
                break;
            }
        pthread_mutex_unlock(&c->lock);
    }
    return t;
}

static void remember_session(xf_tls *t)
{
    xf_tls_ctx *c = t->ctx;
    if (t->server || !t->ready || c->no_resume || pthread_mutex_trylock(&c->lock) != 0) return;
    WOLFSSL_SESSION *s = wolfSSL_get1_session(t->ssl);
    if (s) {
        size_t slot = c->cache_next;
        for (size_t k = 0; k < SESSION_CACHE_MAX; k++)
            if (c->cache[k].sess && strcasecmp(c->cache[k].peer, t->peer) == 0) slot = k;
        if (slot == c->cache_next) c->cache_next = (c->cache_next + 1) % SESSION_CACHE_MAX;
        if (c->cache[slot].sess) wolfSSL_SESSION_free(c->cache[slot].sess);
        c->cache[slot].sess = s;
        snprintf(c->cache[slot].peer, sizeof c->cache[slot].peer, "%s", t->peer);
    }
    pthread_mutex_unlock(&c->lock);
}

void xf_tls_free(xf_tls *t)
{
    if (!t) return;
    remember_session(t);
    wolfSSL_free(t->ssl);
    free(t);
}

static xf_tls_rc fail(xf_tls *t, int rc)
{
    int e = wolfSSL_get_error(t->ssl, rc);
    char buf[WOLFSSL_MAX_ERROR_SZ];
    if (t->sink_full)
        snprintf(t->err, sizeof t->err, "output bound exceeded");
    else
        snprintf(t->err, sizeof t->err, "%s (%d)", wolfSSL_ERR_error_string((unsigned long)e, buf),
                 e);
    return XF_TLS_ERROR;
}

xf_tls_rc xf_tls_input(xf_tls *t, const uint8_t *data, size_t len, xf_tls_plain plain, void *arg)
{
    t->in = data;
    t->in_len = len;
    for (;;) {
        if (!t->ready) {
            int rc = t->server ? wolfSSL_accept(t->ssl) : wolfSSL_connect(t->ssl);
            if (rc != WOLFSSL_SUCCESS) {
                int e = wolfSSL_get_error(t->ssl, rc);
                if (e == WOLFSSL_ERROR_WANT_READ && !t->sink_full) return XF_TLS_AGAIN;
                return fail(t, rc);
            }
            t->ready = true;
        }
        uint8_t buf[16384];
        int n = wolfSSL_read(t->ssl, buf, sizeof buf);
        if (n > 0) {
            plain(arg, buf, (size_t)n);
            continue;
        }
        int e = wolfSSL_get_error(t->ssl, n);
        if (e == WOLFSSL_ERROR_WANT_READ && !t->sink_full) {
            if (t->in_len == 0) return XF_TLS_AGAIN;
            continue; /* wolfSSL wants more of what we still hold */
        }
        if (e == WOLFSSL_ERROR_ZERO_RETURN) return XF_TLS_CLOSED;
        return fail(t, n);
    }
}

bool xf_tls_write(xf_tls *t, const void *data, size_t len)
{
    if (!t->ready || t->sink_full) return false;
    const uint8_t *p = data;
    while (len) { /* wolfSSL_write takes an int: large writes go in pieces */
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        int n = wolfSSL_write(t->ssl, p, chunk);
        if (n <= 0) {
            fail(t, n);
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

void xf_tls_shutdown(xf_tls *t)
{
    wolfSSL_shutdown(t->ssl);
}

bool xf_tls_ready(const xf_tls *t)
{
    return t->ready;
}

bool xf_tls_resumed(xf_tls *t)
{
    return wolfSSL_session_reused(t->ssl) == 1;
}

const char *xf_tls_version(xf_tls *t)
{
    return wolfSSL_get_version(t->ssl);
}

const char *xf_tls_cipher(xf_tls *t)
{
    return wolfSSL_get_cipher_name(t->ssl);
}

const char *xf_tls_error(const xf_tls *t)
{
    return t->err;
}

const char *xf_tls_sni(xf_tls *t)
{
    return t->server ? wolfSSL_get_servername(t->ssl, WOLFSSL_SNI_HOST_NAME) : NULL;
}

bool xf_tls_peer_cert(xf_tls *t, const uint8_t **der, size_t *len)
{
    WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(t->ssl);
    if (!chain || wolfSSL_get_chain_count(chain) < 1) return false;
    *der = wolfSSL_get_chain_cert(chain, 0);
    *len = (size_t)wolfSSL_get_chain_length(chain, 0);
    return *der != NULL && *len > 0;
}

bool xf_tls_peer_chain_valid(const xf_tls *t)
{
    if (!t->ready || t->chain_bad) return false;
    WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(t->ssl);
    return chain && wolfSSL_get_chain_count(chain) > 0;
}

void xf_tls_thread_done(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
}
