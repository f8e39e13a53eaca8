#include "dialback.h"

#include <wolfssl/options.h> /* must come first: the library's build configuration */
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <string.h>

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

bool xf_dialback_key(const char *secret, size_t secret_len, const char *receiving,
                     const char *originating, const char *stream_id,
                     char out[XF_DIALBACK_KEY_LEN + 1])
{
    unsigned char digest[WC_SHA256_DIGEST_SIZE];
    char key[2 * WC_SHA256_DIGEST_SIZE + 1];
    if (wc_Sha256Hash((const unsigned char *)secret, (unsigned)secret_len, digest) != 0)
        return false;
    hex(digest, sizeof digest, key);

    Hmac h;
    bool ok = wc_HmacInit(&h, NULL, INVALID_DEVID) == 0;
    ok = ok && wc_HmacSetKey(&h, WC_SHA256, (const unsigned char *)key, 64) == 0;
    ok =
        ok && wc_HmacUpdate(&h, (const unsigned char *)receiving, (unsigned)strlen(receiving)) == 0;
    ok = ok && wc_HmacUpdate(&h, (const unsigned char *)" ", 1) == 0;
    ok = ok &&
         wc_HmacUpdate(&h, (const unsigned char *)originating, (unsigned)strlen(originating)) == 0;
    ok = ok && wc_HmacUpdate(&h, (const unsigned char *)" ", 1) == 0;
    ok =
        ok && wc_HmacUpdate(&h, (const unsigned char *)stream_id, (unsigned)strlen(stream_id)) == 0;
    ok = ok && wc_HmacFinal(&h, digest) == 0;
    wc_HmacFree(&h);
    if (ok) hex(digest, sizeof digest, out);
    return ok;
}

bool xf_dialback_key_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}
