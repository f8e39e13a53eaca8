/* The embedded store (SQLite, WAL): partners, gateway settings, invites.
 *
 * Every commit is one IMMEDIATE transaction: validation runs inside it, so two
 * writers cannot both pass the uniqueness check, and a refused change rolls
 * back with nothing written. Core threads never call this module; the
 * daemon's control thread and the tools do.
 */
#ifndef XF_STORE_H
#define XF_STORE_H

#include "partner.h"

#include <stdint.h>

typedef struct xf_store xf_store;

typedef enum {
    XF_STORE_OK = 0,
    XF_STORE_NOTFOUND = 1, /* no such partner */
    XF_STORE_REFUSED = 2,  /* validation refused; the verdict says why */
    XF_STORE_ERROR = 3,    /* SQLite or I/O failure; xf_store_errmsg says why */
} xf_store_rc;

#define XF_STORE_SCHEMA_VERSION 1

/* Opens (creating and migrating when needed) the store at `path`. */
xf_store_rc xf_store_open(const char *path, xf_store **out, char *err, size_t errlen);
void xf_store_close(xf_store *s);
const char *xf_store_errmsg(const xf_store *s);

/* Changes whenever another connection committed (PRAGMA data_version). */
uint64_t xf_store_data_version(xf_store *s);

/* Partners. `get` looks up a primary domain; `owner` finds the partner that
 * lists `domain` as primary or additional. */
xf_store_rc xf_store_partner_get(xf_store *s, const char *domain, xf_partner *out);
xf_store_rc xf_store_partner_owner(xf_store *s, const char *domain, char owner[XF_DOMAIN_MAX + 1]);

/* Calls fn for every partner ordered by domain. load_error is non-NULL when a
 * stored field could not be read (the partner's domain is still set). A
 * non-zero return from fn stops the walk. */
typedef int (*xf_partner_fn)(const xf_partner *p, const char *load_error, void *arg);
xf_store_rc xf_store_partner_each(xf_store *s, xf_partner_fn fn, void *arg);

/* Edits a partner inside the transaction. `create` makes a new partner with
 * defaults (refused when it exists); otherwise the partner must exist. The
 * edit callback changes fields and may add refusals to the verdict. */
typedef void (*xf_partner_edit)(xf_partner *p, void *arg, xf_verdict *v);
xf_store_rc xf_store_partner_commit(xf_store *s, const char *domain, bool create,
                                    xf_partner_edit edit, void *arg, const char *const *locals,
                                    size_t nlocals, xf_verdict *v);
xf_store_rc xf_store_partner_remove(xf_store *s, const char *domain);

/* Gateway settings: one row. */
xf_store_rc xf_store_gateway_get(xf_store *s, xf_gateway *out);
typedef void (*xf_gateway_edit)(xf_gateway *g, void *arg, xf_verdict *v);
xf_store_rc xf_store_gateway_commit(xf_store *s, xf_gateway_edit edit, void *arg, xf_verdict *v);

/* Invites (spec §6): local user `local_jid` invited partner user `remote_jid`.
 * JIDs are stored as given; remote_domain is the domain part of remote_jid,
 * lower-cased. `put` is idempotent (an existing invite keeps its created_at);
 * `put` refuses (XF_STORE_REFUSED, xf_store_errmsg says why) a JID without a
 * domain part; `del` answers XF_STORE_NOTFOUND when there was no such invite.
 * Each change is one short transaction. */
xf_store_rc xf_store_invite_put(xf_store *s, const char *local_jid, const char *remote_jid);
xf_store_rc xf_store_invite_del(xf_store *s, const char *local_jid, const char *remote_jid);

/* Calls fn for every invite ordered by remote_domain, local_jid, remote_jid,
 * inside one read transaction (fn must not call the store). A non-zero return
 * from fn stops the walk. */
typedef int (*xf_invite_fn)(const char *local_jid, const char *remote_jid, void *arg);
xf_store_rc xf_store_invite_each(xf_store *s, xf_invite_fn fn, void *arg);
xf_store_rc xf_store_invite_count(xf_store *s, uint64_t *n);

#endif
