/* The s2s federation layer on the runtime (RFC 6120 server-to-server streams,
 * negotiated per partner by the matrix row, spec §4):
 *
 *   listeners       [s2s] listen (STARTTLS) and direct_tls_listen (XEP-0368)
 *   inbound         a partner connects: header checks, features, STARTTLS,
 *                   SASL EXTERNAL (XEP-0178) or dialback (XEP-0220, with the
 *                   XEP-0344 shortcut), answering db:verify for our own keys
 *   outbound        xfed connects to a partner (SRV via the core's c-ares
 *                   channel, or the partner's proxy FQDN) and authenticates
 *                   the way the row says
 *   verification    db:verify round trips to a partner's authoritative
 *                   server run on the verification thread (its own DNS and
 *                   connections), so a core never waits on one
 *
 * The control thread makes one xf_s2s, installs it into the runtime config
 * (listeners, message handlers, thread hooks) and publishes partner
 * snapshots as before; core threads do the rest.
 */
#ifndef XF_S2S_H
#define XF_S2S_H

#include "config.h"
#include "pstatus.h"
#include "rt.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct xf_s2s xf_s2s;

/* Loads the TLS identities of the config's local domains and the CAs.
 * NULL with a message on failure. */
xf_s2s *xf_s2s_new(const xf_config *cfg, xf_pstatus *pstatus, char *err, size_t errlen);
void xf_s2s_free(xf_s2s *s);

/* Adds the s2s listeners to rc and takes its hooks (on_msg, on_verify_msg,
 * on_shard_start, on_shard_stop; the verification thread's own set-up is
 * chained). rc->shards must be final. False with a message (bad address). */
bool xf_s2s_install(xf_s2s *s, xf_rt_config *rc, char *err, size_t errlen);

#endif
