/* Server dialback keys (XEP-0185, used by XEP-0220):
 *   key = hex(HMAC-SHA256(hex(SHA256(secret)), receiving + " " + originating + " " + id))
 * The secret is the gateway's dialback passphrase, so every edge host of a pool
 * can answer db:verify for keys another host generated. */
#ifndef XF_DIALBACK_H
#define XF_DIALBACK_H

#include <stdbool.h>
#include <stddef.h>

#define XF_DIALBACK_KEY_LEN 64 /* hex characters */

/* Writes the key (64 hex characters and a NUL) to out. False on a crypto failure. */
bool xf_dialback_key(const char *secret, size_t secret_len, const char *receiving,
                     const char *originating, const char *stream_id,
                     char out[XF_DIALBACK_KEY_LEN + 1]);

/* Compares a presented key with the expected one in constant time. */
bool xf_dialback_key_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
