#include "tls_cert.h"

#include <wolfssl/options.h> /* must come first: the library's build configuration */
#include <wolfssl/ssl.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/pem.h>

#include <stdio.h>

/* wolfSSL 5.5's check_private_key accepts a mismatched EC key, so prove the
 * pair instead: sign with the key and verify with the certificate's key. */
static bool key_matches(const char *cert, const char *key)
{
    bool ok = false;
    WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_file(cert, WOLFSSL_FILETYPE_PEM);
    WOLFSSL_EVP_PKEY *pub = x ? wolfSSL_X509_get_pubkey(x) : NULL;
    FILE *f = fopen(key, "r");
    WOLFSSL_EVP_PKEY *priv = f ? wolfSSL_PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f) fclose(f);
    WOLFSSL_EVP_MD_CTX *sctx = wolfSSL_EVP_MD_CTX_new(), *vctx = wolfSSL_EVP_MD_CTX_new();
    static const unsigned char msg[] = "xfed certificate and key pair check";
    unsigned char sig[1024];
    size_t siglen = sizeof sig;
    if (pub && priv && sctx && vctx &&
        wolfSSL_EVP_DigestSignInit(sctx, NULL, wolfSSL_EVP_sha256(), NULL, priv) == 1 &&
        wolfSSL_EVP_DigestSignUpdate(sctx, msg, sizeof msg) == 1 &&
        wolfSSL_EVP_DigestSignFinal(sctx, sig, &siglen) == 1 &&
        wolfSSL_EVP_DigestVerifyInit(vctx, NULL, wolfSSL_EVP_sha256(), NULL, pub) == 1 &&
        wolfSSL_EVP_DigestVerifyUpdate(vctx, msg, sizeof msg) == 1)
        ok = wolfSSL_EVP_DigestVerifyFinal(vctx, sig, siglen) == 1;
    wolfSSL_EVP_MD_CTX_free(sctx);
    wolfSSL_EVP_MD_CTX_free(vctx);
    wolfSSL_EVP_PKEY_free(priv);
    wolfSSL_EVP_PKEY_free(pub);
    wolfSSL_X509_free(x);
    return ok;
}

void xf_tls_global_init(void)
{
    wolfSSL_Init();
}

bool xf_tls_check_keypair(const char *cert, const char *key, char *err, size_t errlen)
{
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLS_server_method());
    bool ok = false;
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
    } else if (wolfSSL_CTX_use_certificate_chain_file(ctx, cert) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load certificate chain %s (missing, unreadable or not PEM)",
                 cert);
    } else if (wolfSSL_CTX_use_PrivateKey_file(ctx, key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load private key %s (missing, unreadable or not PEM)", key);
    } else if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS || !key_matches(cert, key)) {
        snprintf(err, errlen, "private key %s does not match certificate %s", key, cert);
    } else {
        ok = true;
    }
    if (ctx) wolfSSL_CTX_free(ctx);
    return ok;
}
