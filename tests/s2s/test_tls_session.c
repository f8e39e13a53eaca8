/* TLS sessions over memory: handshakes driven by feeding each side's output
 * to the other, as the runtime does with provided buffers. */
#include "../check.h"
#include "tls_name.h"
#include "tls_session.h"

#include <stdlib.h>

typedef struct {
    uint8_t *data;
    size_t len, cap;
    size_t limit; /* refuse beyond this (backpressure test) */
} bytes;

static bool sink(void *arg, const uint8_t *p, size_t n)
{
    bytes *b = arg;
    if (b->limit && b->len + n > b->limit) return false;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

static void plain(void *arg, const uint8_t *p, size_t n)
{
    sink(arg, p, n);
}

typedef struct {
    xf_tls *c, *s;
    bytes c_out, s_out, c_plain, s_plain;
} pair;

/* Shuttles ciphertext both ways, in chunks of `chunk` bytes, until quiet. */
static bool pump(pair *p, size_t chunk)
{
    for (int round = 0; round < 1000; round++) {
        if (p->c_out.len == 0 && p->s_out.len == 0) return true;
        bytes from_c = p->c_out, from_s = p->s_out;
        p->c_out = (bytes){0};
        p->s_out = (bytes){0};
        for (size_t off = 0; off < from_c.len; off += chunk) {
            size_t n = from_c.len - off < chunk ? from_c.len - off : chunk;
            if (xf_tls_input(p->s, from_c.data + off, n, plain, &p->s_plain) == XF_TLS_ERROR)
                return false;
        }
        for (size_t off = 0; off < from_s.len; off += chunk) {
            size_t n = from_s.len - off < chunk ? from_s.len - off : chunk;
            if (xf_tls_input(p->c, from_s.data + off, n, plain, &p->c_plain) == XF_TLS_ERROR)
                return false;
        }
        free(from_c.data);
        free(from_s.data);
    }
    return false;
}

static void pair_free(pair *p)
{
    xf_tls_free(p->c);
    xf_tls_free(p->s);
    free(p->c_out.data);
    free(p->s_out.data);
    free(p->c_plain.data);
    free(p->s_plain.data);
}

int main(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "usage: test_tls_session CERT-DIR\n"), 1;
    char p[8][512];
    const char *d = argv[1];
    snprintf(p[0], sizeof p[0], "%s/contoso.crt", d);
    snprintf(p[1], sizeof p[1], "%s/contoso.key", d);
    snprintf(p[2], sizeof p[2], "%s/northwind.crt", d);
    snprintf(p[3], sizeof p[3], "%s/northwind.key", d);
    snprintf(p[4], sizeof p[4], "%s/fabrikam.crt", d);
    snprintf(p[5], sizeof p[5], "%s/fabrikam.key", d);
    snprintf(p[6], sizeof p[6], "%s/ca.crt", d);
    char err[256];
    xf_tls_identity local[] = {{"contoso.example", p[0], p[1]}, {"northwind.example", p[2], p[3]}};
    xf_tls_identity remote[] = {{"fabrikam.example", p[4], p[5]}};
    xf_tls_ctx *ours = xf_tls_ctx_new(local, 2, p[6], false, err, sizeof err);
    xf_tls_ctx *theirs = xf_tls_ctx_new(remote, 1, p[6], false, err, sizeof err);
    CHECK(ours && theirs);
    if (!ours || !theirs) return fprintf(stderr, "%s\n", err), 1;

    /* fabrikam connects to northwind (the second identity): SNI picks it. */
    pair a = {0};
    a.s = xf_tls_accept(ours, sink, &a.s_out);
    a.c = xf_tls_connect(theirs, "northwind.example", "fabrikam.example", NULL, sink, &a.c_out);
    CHECK(xf_tls_input(a.c, NULL, 0, plain, &a.c_plain) == XF_TLS_AGAIN); /* ClientHello */
    CHECK(pump(&a, 7)); /* odd chunking: records split anywhere */
    CHECK(xf_tls_ready(a.s) && xf_tls_ready(a.c));
    CHECK_STR(xf_tls_version(a.s), "TLSv1.3");
    CHECK(strstr(xf_tls_cipher(a.s), "CHACHA20") != NULL);
    CHECK(xf_tls_sni(a.s) && strcmp(xf_tls_sni(a.s), "northwind.example") == 0);
    const uint8_t *der;
    size_t len;
    CHECK(xf_tls_peer_cert(a.c, &der, &len)); /* the server presented northwind's */
    CHECK(xf_cert_names_domain(der, len, "northwind.example") == XF_ID_DNS);
    CHECK(xf_tls_peer_chain_valid(a.c));
    CHECK(xf_tls_peer_cert(a.s, &der, &len)); /* the client's certificate, for EXTERNAL */
    CHECK(xf_cert_names_domain(der, len, "fabrikam.example") == XF_ID_DNS);
    CHECK(xf_tls_peer_chain_valid(a.s));
    /* Data both ways, a large write included. */
    static uint8_t big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31);
    CHECK(xf_tls_write(a.c, "<stream:stream>", 15));
    CHECK(xf_tls_write(a.s, big, sizeof big));
    CHECK(pump(&a, 4096));
    CHECK(a.s_plain.len == 15 && memcmp(a.s_plain.data, "<stream:stream>", 15) == 0);
    CHECK(a.c_plain.len == sizeof big && memcmp(a.c_plain.data, big, sizeof big) == 0);
    CHECK(!xf_tls_resumed(a.c));
    pair_free(&a); /* the client keeps the session for northwind */

    /* Second connection: resumed. */
    pair b = {0};
    b.s = xf_tls_accept(ours, sink, &b.s_out);
    b.c = xf_tls_connect(theirs, "northwind.example", "fabrikam.example", NULL, sink, &b.c_out);
    xf_tls_input(b.c, NULL, 0, plain, &b.c_plain);
    CHECK(pump(&b, 1500));
    CHECK(xf_tls_ready(b.c) && xf_tls_resumed(b.c));
    pair_free(&b);

    /* A client certificate from an untrusted CA: the handshake completes and
     * the verdict says "not valid" (dialback may still run; EXTERNAL not). */
    snprintf(p[4], sizeof p[4], "%s/rogue.crt", d);
    snprintf(p[5], sizeof p[5], "%s/rogue.key", d);
    xf_tls_ctx *rogue = xf_tls_ctx_new(remote, 1, p[6], false, err, sizeof err);
    CHECK(rogue != NULL);
    pair c = {0};
    c.s = xf_tls_accept(ours, sink, &c.s_out);
    c.c = xf_tls_connect(rogue, "contoso.example", "fabrikam.example", NULL, sink, &c.c_out);
    xf_tls_input(c.c, NULL, 0, plain, &c.c_plain);
    CHECK(pump(&c, 512));
    CHECK(xf_tls_ready(c.s));
    CHECK(xf_tls_sni(c.s) && strcmp(xf_tls_sni(c.s), "contoso.example") == 0);
    CHECK(!xf_tls_peer_chain_valid(c.s));
    pair_free(&c);

    /* Garbage instead of a ClientHello: a clean error, no crash. */
    pair g = {0};
    g.s = xf_tls_accept(ours, sink, &g.s_out);
    static const uint8_t junk[] = "<stream:stream xmlns='jabber:server'>";
    CHECK(xf_tls_input(g.s, junk, sizeof junk - 1, plain, &g.s_plain) == XF_TLS_ERROR);
    CHECK(xf_tls_error(g.s)[0] != '\0');
    pair_free(&g);

    /* A sink that refuses: reported as an error, never a hang. */
    pair h = {0};
    h.s_out.limit = 100;
    h.s = xf_tls_accept(ours, sink, &h.s_out);
    h.c = xf_tls_connect(theirs, "contoso.example", "fabrikam.example", NULL, sink, &h.c_out);
    xf_tls_input(h.c, NULL, 0, plain, &h.c_plain);
    CHECK(xf_tls_input(h.s, h.c_out.data, h.c_out.len, plain, &h.s_plain) == XF_TLS_ERROR);
    CHECK(strstr(xf_tls_error(h.s), "output bound") != NULL);
    pair_free(&h);

    xf_tls_ctx_free(rogue);
    xf_tls_ctx_free(ours);
    xf_tls_ctx_free(theirs);
    return check_report("test_tls_session");
}
