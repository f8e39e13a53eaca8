/* The partner table snapshot and its RCU-style swap.
 *
 * A snapshot is immutable once built: the valid partners plus an open-addressing
 * hash table from every domain (primary and additional, lower-case) to its
 * partner. The control thread builds one per store change and publishes it;
 * core threads read whichever snapshot is current without locks:
 *
 *   control thread                         core thread (each loop iteration)
 *   s = xf_snapshot_load(store, ...)       s = xf_rcu_online(r, core)      after waking
 *   xf_rcu_publish(r, s)                   ... xf_snapshot_find(s, d, n) ...
 *   xf_rcu_reclaim(r)   (periodically)     s = xf_rcu_quiescent(r, core)   drop old pointers
 *                                          xf_rcu_offline(r, core)        before io_uring_enter
 *
 * A core may keep a snapshot pointer only between online/quiescent and the next
 * quiescent/offline; a retired snapshot is freed once every core has passed a
 * quiescent point after the swap or is offline.
 */
#ifndef XF_SNAPSHOT_H
#define XF_SNAPSHOT_H

#include "partner.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct xf_snapshot xf_snapshot;

/* Copies the partners (their domains lower-cased). A partner whose domain is
 * empty, too long, repeated within itself or already claimed by an earlier
 * partner is left out with an error log line; xf_snapshot_count tells how many
 * were kept. NULL on allocation failure. */
xf_snapshot *xf_snapshot_build(const xf_partner *partners, size_t n, uint64_t version);

/* Builds from the store: partners refused by xf_partner_check or damaged are
 * skipped and logged. *active / *skipped (either may be NULL) get the counts.
 * NULL on a store error (logged) or allocation failure. */
xf_snapshot *xf_snapshot_load(xf_store *st, const char *const *locals, size_t nlocals,
                              uint64_t version, uint32_t *active, uint32_t *skipped);

void xf_snapshot_free(xf_snapshot *s);

/* The partner owning `domain` (primary or additional), ASCII case-insensitive;
 * NULL when none. O(1), no allocation; `domain` need not be NUL-terminated. */
const xf_partner *xf_snapshot_find(const xf_snapshot *s, const char *domain, size_t len);

uint64_t xf_snapshot_version(const xf_snapshot *s);
/* The gateway settings published with the partners (spec §5 defaults until
 * set): the cores read timeouts, limits and the dialback secret here. */
const xf_gateway *xf_snapshot_gateway(const xf_snapshot *s);
void xf_snapshot_set_gateway(xf_snapshot *s, const xf_gateway *g);
uint32_t xf_snapshot_count(const xf_snapshot *s);
const xf_partner *xf_snapshot_partner(const xf_snapshot *s, uint32_t index);

/* The ownership rule: the streams and internal links of a partner domain live
 * on core xf_snapshot_shard(domain, len, threads). FNV-1a 64 over the
 * lower-cased bytes, a 64-bit finalizer, then mod nshards. Stable across
 * versions and runs: never change it without a migration plan for pools. */
uint32_t xf_snapshot_shard(const char *domain, size_t len, uint32_t nshards);

/* ---- RCU ---------------------------------------------------------------- */

#define XF_RCU_RETIRE_MAX 64 /* snapshots waiting to be freed */
#define XF_RCU_CORES_MAX  1024

typedef struct xf_rcu xf_rcu;

/* Called for each snapshot the RCU frees (reclaim, and xf_rcu_free). NULL
 * means xf_snapshot_free. Tests pass a counting wrapper. */
typedef void (*xf_rcu_free_fn)(xf_snapshot *s, void *arg);

xf_rcu *xf_rcu_new(unsigned ncores, xf_rcu_free_fn free_fn, void *arg);
/* Frees the current and every retired snapshot: no core may be running. */
void xf_rcu_free(xf_rcu *r);

/* Reader side: core threads, each with its own `core` index. */
const xf_snapshot *xf_rcu_online(xf_rcu *r, unsigned core);
const xf_snapshot *xf_rcu_quiescent(xf_rcu *r, unsigned core);
void xf_rcu_offline(xf_rcu *r, unsigned core);

/* Writer side: the control thread only. publish swaps `s` in and retires the
 * old one (it reclaims first). Returns false, leaving `s` unpublished and
 * owned by the caller, when the retire list stays full: some core has been
 * online without a quiescent point for XF_RCU_RETIRE_MAX publishes. */
bool xf_rcu_publish(xf_rcu *r, xf_snapshot *s);
/* Frees retired snapshots every core is done with; returns how many remain. */
uint32_t xf_rcu_reclaim(xf_rcu *r);
/* The current snapshot, for the control thread (the only writer). */
const xf_snapshot *xf_rcu_current(const xf_rcu *r);

#endif
