/* The invite set of spec §6, cached on every core: (local bare JID U, partner bare JID X)
 * pairs. A public-unverified partner's user X reaches U only when (U, X) is in the set.
 *
 * Every core holds the whole set (invites are few and change rarely), so the policy is
 * checked where the stanza arrives, without a hop. The core that sees U's subscribe adds
 * the pair to its own set, tells the other cores, and tells the verification thread,
 * which writes the store: a core never waits on SQLite. Allocation happens only when an
 * invite changes, never per routed stanza. */
#ifndef XF_INVITES_H
#define XF_INVITES_H

#include "heap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XF_INVITES_MAX (1u << 20) /* per core; beyond it new invites are refused and logged */

typedef struct xf_invites xf_invites;

xf_invites *xf_invites_new(xf_heap *h);
void xf_invites_free(xf_invites *v);
/* u and x are bare JIDs (domains lower-cased). add: false when full or out of memory. */
bool xf_invites_add(xf_invites *v, const char *u, const char *x);
bool xf_invites_del(xf_invites *v, const char *u, const char *x);
bool xf_invites_has(const xf_invites *v, const char *u, const char *x);
uint32_t xf_invites_count(const xf_invites *v);

/* The cross-thread message body of an invite change. */
typedef struct {
    uint8_t add; /* 1 add, 0 delete */
    uint8_t pad;
    uint16_t u_len, x_len; /* the strings follow, u then x, without NULs */
} xf_invite_msg;

#endif
