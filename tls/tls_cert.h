/* Certificate and key checks done at start and by `xfed --check`. */
#ifndef XF_TLS_CERT_H
#define XF_TLS_CERT_H

#include <stdbool.h>
#include <stddef.h>

void xf_tls_global_init(void);

/* Loads a PEM certificate chain and private key and checks that they match.
 * Returns false with a message in err. */
bool xf_tls_check_keypair(const char *cert, const char *key, char *err, size_t errlen);

#endif
