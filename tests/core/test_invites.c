/* The per-core invite set (open addressing, backward-shift deletion) against a plain
 * reference array under random adds and deletes; and the stanza facts / bounce builder. */
#include "../check.h"
#include "heap.h"
#include "invites.h"
#include "stanza.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define USERS 40

static void test_set(void)
{
    xf_heap *h = xf_heap_new();
    xf_invites *v = xf_invites_new(h);
    static bool ref[USERS][USERS];
    char u[64], x[64];
    uint64_t rng = 42;
    for (int step = 0; step < 200000; step++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int a = (int)((rng >> 33) % USERS), b = (int)((rng >> 45) % USERS);
        bool add = (rng >> 20) % 3 != 0;
        snprintf(u, sizeof u, "u%d@contoso.example", a);
        snprintf(x, sizeof x, "x%d@fabrikam.example", b);
        if (add) {
            CHECK(xf_invites_add(v, u, x));
            ref[a][b] = true;
        } else {
            CHECK(xf_invites_del(v, u, x) == ref[a][b]);
            ref[a][b] = false;
        }
        if (step % 997 == 0) { /* full comparison now and then */
            bool same = true;
            for (int i = 0; i < USERS; i++)
                for (int j = 0; j < USERS; j++) {
                    snprintf(u, sizeof u, "u%d@contoso.example", i);
                    snprintf(x, sizeof x, "x%d@fabrikam.example", j);
                    same &= xf_invites_has(v, u, x) == ref[i][j];
                }
            CHECK(same);
        }
    }
    uint32_t n = 0;
    for (int i = 0; i < USERS; i++)
        for (int j = 0; j < USERS; j++)
            n += ref[i][j];
    CHECK(xf_invites_count(v) == n);
    /* ("ab","c") and ("a","bc") are different pairs */
    CHECK(xf_invites_add(v, "ab", "c"));
    CHECK(!xf_invites_has(v, "a", "bc"));
    xf_invites_free(v);
    xf_heap_delete(h);
}

static void test_bounce(void)
{
    char out[2048];
    size_t n =
        xf_bounce_build(XF_KIND_MESSAGE, "alice@contoso.example/w", 23, "bob@fabrikam.example", 20,
                        "m'1", 3, "remote-server-timeout", "gone <now>", out, sizeof out);
    CHECK(n > 0);
    CHECK_STR(out, "<message type='error' from='bob@fabrikam.example' "
                   "to='alice@contoso.example/w' id='m&apos;1'><error type='wait'>"
                   "<remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                   "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone &lt;now&gt;</text>"
                   "</error></message>");
    CHECK(xf_bounce_build(XF_KIND_IQ, "a@b", 3, "c@d", 3, "", 0, "not-allowed", NULL, out, 40) ==
          0); /* too small: nothing half-written is used */
    xf_smeta m = {.kind = XF_KIND_IQ, .type = XF_T_RESULT};
    CHECK(!xf_stanza_bounces(&m)); /* results and errors never bounce */
    m.type = XF_T_ERROR, m.kind = XF_KIND_MESSAGE;
    CHECK(!xf_stanza_bounces(&m));
    m.type = XF_T_NONE, m.origin = XF_ORIGIN_XFED;
    CHECK(!xf_stanza_bounces(&m));
    m.origin = XF_ORIGIN_INTERNAL;
    CHECK(xf_stanza_bounces(&m));
    char d[300];
    CHECK(xf_jid_domain("Bob@Fabrikam.Example./res@x", d, sizeof d));
    CHECK_STR(d, "fabrikam.example");
    CHECK(xf_jid_bare("Bob@Fabrikam.Example/r", d, sizeof d));
    CHECK_STR(d, "Bob@fabrikam.example");
    CHECK(!xf_jid_domain("bob@/r", d, sizeof d));
    CHECK(xf_stanza_type("subscribed") == XF_T_SUBSCRIBED);
    CHECK(xf_stanza_type("chat") == XF_T_OTHER);
}

int main(void)
{
    test_set();
    test_bounce();
    return check_report("test_invites");
}
