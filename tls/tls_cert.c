#include "tls_cert.h"

#include <wolfssl/options.h> /* must come first: the library's build configuration */
#include <wolfssl/ssl.h>

#include <stdio.h>

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
    } else if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "private key %s does not match certificate %s", key, cert);
    } else {
        ok = true;
    }
    if (ctx) wolfSSL_CTX_free(ctx);
    return ok;
}
