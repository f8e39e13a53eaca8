/* SQLite store. Schema changes are numbered migrations tracked in
 * PRAGMA user_version; each runs in its own transaction. */
#include "store.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct xf_store {
    sqlite3 *db;
    char err[512];
};

static xf_store_rc fail(xf_store *s, const char *what)
{
    snprintf(s->err, sizeof s->err, "%s: %s", what, sqlite3_errmsg(s->db));
    return XF_STORE_ERROR;
}

const char *xf_store_errmsg(const xf_store *s)
{
    return s->err;
}

static int exec(xf_store *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(s->err, sizeof s->err, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
    }
    return rc;
}

static int begin(xf_store *s)
{
    return exec(s, "BEGIN IMMEDIATE");
}

static xf_store_rc finish(xf_store *s, xf_store_rc rc)
{
    if (rc == XF_STORE_OK && exec(s, "COMMIT") != SQLITE_OK) rc = XF_STORE_ERROR;
    if (rc != XF_STORE_OK) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* ---- migrations -------------------------------------------------------- */

static const char schema_v1[] =
    "CREATE TABLE partners ("
    "  domain TEXT PRIMARY KEY NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  partner_type TEXT NOT NULL CHECK (partner_type IN"
    "    ('federated','public-verified','public-unverified')),"
    "  tls TEXT NOT NULL CHECK (tls IN ('required','optional','not-supported')),"
    "  sasl TEXT NOT NULL CHECK (sasl IN ('required','optional','not-supported')),"
    "  dialback INTEGER NOT NULL CHECK (dialback IN (0,1)),"
    "  connection_limit INTEGER NOT NULL DEFAULT 0,"
    "  keepalive INTEGER NOT NULL DEFAULT 1 CHECK (keepalive IN (0,1)),"
    "  proxy_fqdn TEXT NOT NULL DEFAULT '',"
    "  updated_at INTEGER NOT NULL DEFAULT (strftime('%s','now'))"
    ");"
    /* Every domain a partner answers for, primary included: the primary key
     * makes a domain unique across all partners. */
    "CREATE TABLE partner_domains ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  partner TEXT NOT NULL REFERENCES partners(domain) ON DELETE CASCADE,"
    "  is_primary INTEGER NOT NULL CHECK (is_primary IN (0,1)),"
    "  position INTEGER NOT NULL"
    ");"
    "CREATE INDEX partner_domains_by_partner ON partner_domains(partner, position);"
    "CREATE TABLE gateway ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  connection_limit INTEGER NOT NULL,"
    "  partner_connection_limit INTEGER NOT NULL,"
    "  dialback_passphrase TEXT NOT NULL,"
    "  keepalive_interval INTEGER NOT NULL,"
    "  stream_establishment_timeout INTEGER NOT NULL,"
    "  stream_inactivity_timeout INTEGER NOT NULL,"
    "  log_message_bodies INTEGER NOT NULL CHECK (log_message_bodies IN (0,1))"
    ");"
    /* Invites of spec §6: local user U invited partner user X. */
    "CREATE TABLE invites ("
    "  local_jid TEXT NOT NULL,"
    "  remote_jid TEXT NOT NULL,"
    "  remote_domain TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),"
    "  PRIMARY KEY (local_jid, remote_jid)"
    ");"
    "CREATE INDEX invites_by_domain ON invites(remote_domain);";

static xf_store_rc gateway_write(xf_store *s, const xf_gateway *g);

static xf_store_rc migrate_v1(xf_store *s)
{
    if (exec(s, schema_v1) != SQLITE_OK) return XF_STORE_ERROR;
    xf_gateway g;
    xf_gateway_defaults(&g);
    return gateway_write(s, &g);
}

typedef xf_store_rc (*migration_fn)(xf_store *s);
static const migration_fn migrations[XF_STORE_SCHEMA_VERSION] = {migrate_v1};

static int user_version(xf_store *s)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static xf_store_rc migrate(xf_store *s)
{
    for (;;) {
        int v = user_version(s);
        if (v < 0) return fail(s, "reading the schema version");
        if (v > XF_STORE_SCHEMA_VERSION) {
            snprintf(s->err, sizeof s->err,
                     "the store has schema version %d, newer than this xfed understands (%d): "
                     "upgrade xfed",
                     v, XF_STORE_SCHEMA_VERSION);
            return XF_STORE_ERROR;
        }
        if (v == XF_STORE_SCHEMA_VERSION) return XF_STORE_OK;
        if (begin(s) != SQLITE_OK) return XF_STORE_ERROR;
        /* Another process may have migrated while we waited for the lock. */
        if (user_version(s) != v) {
            finish(s, XF_STORE_OK);
            continue;
        }
        xf_store_rc rc = migrations[v](s);
        if (rc == XF_STORE_OK) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
            if (exec(s, sql) != SQLITE_OK) rc = XF_STORE_ERROR;
        }
        if (finish(s, rc) != XF_STORE_OK) return XF_STORE_ERROR;
    }
}

/* Switching a new file to WAL needs a moment alone with it, and SQLite does
 * not always route that through the busy handler: when several processes
 * create the store at once, retry for up to 10 s. */
static int set_wal(xf_store *s)
{
    for (int attempt = 0;; attempt++) {
        int rc = exec(s, "PRAGMA journal_mode=WAL");
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) return rc;
        if (attempt == 1000) return rc;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

xf_store_rc xf_store_open(const char *path, xf_store **out, char *err, size_t errlen)
{
    xf_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return XF_STORE_ERROR;
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    xf_store_rc r = XF_STORE_OK;
    if (rc != SQLITE_OK) {
        snprintf(s->err, sizeof s->err, "cannot open store %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        r = XF_STORE_ERROR;
    } else {
        sqlite3_busy_timeout(s->db, 10000);
        if (set_wal(s) != SQLITE_OK ||
            exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON") != SQLITE_OK) {
            char tmp[sizeof s->err];
            snprintf(tmp, sizeof tmp, "%s", s->err);
            snprintf(s->err, sizeof s->err, "cannot open store %s: %s", path, tmp);
            r = XF_STORE_ERROR;
        } else {
            r = migrate(s);
        }
    }
    if (r != XF_STORE_OK) {
        snprintf(err, errlen, "%s", s->err);
        xf_store_close(s);
        return r;
    }
    *out = s;
    return XF_STORE_OK;
}

void xf_store_close(xf_store *s)
{
    if (!s) return;
    sqlite3_close(s->db);
    free(s);
}

uint64_t xf_store_data_version(xf_store *s)
{
    sqlite3_stmt *st;
    uint64_t v = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK) return 0;
    if (sqlite3_step(st) == SQLITE_ROW) v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ---- partners ----------------------------------------------------------- */

static const char partner_cols[] =
    "SELECT domain, description, partner_type, tls, sasl, dialback, connection_limit, "
    "keepalive, proxy_fqdn FROM partners";

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

/* Reads one partners row plus its additional domains. Returns a load error or NULL. */
static const char *load_partner(xf_store *s, sqlite3_stmt *st, xf_partner *p)
{
    char buf[64];
    const char *lerr = NULL;
    copy_text(p->domain, sizeof p->domain, st, 0);
    copy_text(p->description, sizeof p->description, st, 1);
    copy_text(buf, sizeof buf, st, 2);
    if (!xf_partner_type_parse(buf, &p->type)) lerr = "unknown partner_type";
    copy_text(buf, sizeof buf, st, 3);
    if (!xf_neg_parse(buf, &p->tls)) lerr = "unknown tls value";
    copy_text(buf, sizeof buf, st, 4);
    if (!xf_neg_parse(buf, &p->sasl)) lerr = "unknown sasl value";
    p->dialback = sqlite3_column_int(st, 5) != 0;
    sqlite3_int64 lim = sqlite3_column_int64(st, 6);
    p->connection_limit = lim < 0 || lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim;
    p->keepalive = sqlite3_column_int(st, 7) != 0;
    copy_text(p->proxy_fqdn, sizeof p->proxy_fqdn, st, 8);

    sqlite3_stmt *d;
    p->domain_count = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT name FROM partner_domains WHERE partner = ?1 AND "
                           "is_primary = 0 ORDER BY position",
                           -1, &d, NULL) != SQLITE_OK)
        return "cannot read additional domains";
    sqlite3_bind_text(d, 1, p->domain, -1, SQLITE_STATIC);
    while (sqlite3_step(d) == SQLITE_ROW) {
        if (p->domain_count == XF_PARTNER_DOMAINS_MAX) {
            lerr = "too many additional domains";
            break;
        }
        copy_text(p->domains[p->domain_count++], XF_DOMAIN_MAX + 1, d, 0);
    }
    sqlite3_finalize(d);
    return lerr;
}

xf_store_rc xf_store_partner_get(xf_store *s, const char *domain, xf_partner *out)
{
    char sql[256];
    snprintf(sql, sizeof sql, "%s WHERE domain = ?1", partner_cols);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(s, "reading a partner");
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    xf_store_rc rc = XF_STORE_NOTFOUND;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        const char *lerr = load_partner(s, st, out);
        rc = XF_STORE_OK;
        if (lerr) {
            snprintf(s->err, sizeof s->err, "partner %s: %s", domain, lerr);
            rc = XF_STORE_ERROR;
        }
    } else if (step != SQLITE_DONE) {
        rc = fail(s, "reading a partner");
    }
    sqlite3_finalize(st);
    return rc;
}

xf_store_rc xf_store_partner_owner(xf_store *s, const char *domain, char owner[XF_DOMAIN_MAX + 1])
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT partner FROM partner_domains WHERE name = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return fail(s, "reading partner domains");
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    xf_store_rc rc = XF_STORE_NOTFOUND;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        copy_text(owner, XF_DOMAIN_MAX + 1, st, 0);
        rc = XF_STORE_OK;
    } else if (step != SQLITE_DONE) {
        rc = fail(s, "reading partner domains");
    }
    sqlite3_finalize(st);
    return rc;
}

xf_store_rc xf_store_partner_each(xf_store *s, xf_partner_fn fn, void *arg)
{
    char sql[256];
    snprintf(sql, sizeof sql, "%s ORDER BY domain", partner_cols);
    sqlite3_stmt *st;
    /* One read transaction, so the walk sees one consistent state. */
    if (exec(s, "BEGIN") != SQLITE_OK) return XF_STORE_ERROR;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        xf_store_rc rc = fail(s, "listing partners");
        exec(s, "ROLLBACK");
        return rc;
    }
    xf_partner *p = malloc(sizeof *p);
    int step = SQLITE_DONE;
    while (p && (step = sqlite3_step(st)) == SQLITE_ROW) {
        memset(p, 0, sizeof *p);
        const char *lerr = load_partner(s, st, p);
        if (fn(p, lerr, arg) != 0) break;
    }
    xf_store_rc rc = XF_STORE_OK;
    if (!p) {
        snprintf(s->err, sizeof s->err, "out of memory");
        rc = XF_STORE_ERROR;
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = fail(s, "listing partners");
    }
    free(p);
    sqlite3_finalize(st);
    exec(s, "COMMIT");
    return rc;
}

/* Refuses any of p's domains that another partner already lists. */
static xf_store_rc check_unique(xf_store *s, const xf_partner *p, xf_verdict *v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT partner, is_primary FROM partner_domains "
                           "WHERE name = ?1 AND partner <> ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, "checking domain uniqueness");
    for (uint32_t i = 0; i <= p->domain_count; i++) {
        const char *d = i == 0 ? p->domain : p->domains[i - 1];
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, d, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->domain, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            xf_verdict_add(v, XF_COMMIT_REFUSED,
                           "domain '%s' already belongs to partner '%s' (as its %s domain); "
                           "a domain can belong to one partner only",
                           d, (const char *)sqlite3_column_text(st, 0),
                           sqlite3_column_int(st, 1) ? "primary" : "additional");
        } else if (step != SQLITE_DONE) {
            sqlite3_finalize(st);
            return fail(s, "checking domain uniqueness");
        }
    }
    sqlite3_finalize(st);
    return XF_STORE_OK;
}

static xf_store_rc partner_write(xf_store *s, const xf_partner *p)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO partners (domain, description, partner_type, tls, sasl, "
                           "dialback, connection_limit, keepalive, proxy_fqdn) VALUES "
                           "(?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT(domain) DO UPDATE SET "
                           "description=?2, partner_type=?3, tls=?4, sasl=?5, dialback=?6, "
                           "connection_limit=?7, keepalive=?8, proxy_fqdn=?9, "
                           "updated_at=strftime('%s','now')",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, "writing a partner");
    sqlite3_bind_text(st, 1, p->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, p->description, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, xf_partner_type_name(p->type), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, xf_neg_name(p->tls), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, xf_neg_name(p->sasl), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, p->dialback);
    sqlite3_bind_int64(st, 7, p->connection_limit);
    sqlite3_bind_int(st, 8, p->keepalive);
    sqlite3_bind_text(st, 9, p->proxy_fqdn, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return fail(s, "writing a partner");

    if (sqlite3_prepare_v2(s->db, "DELETE FROM partner_domains WHERE partner = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return fail(s, "writing partner domains");
    sqlite3_bind_text(st, 1, p->domain, -1, SQLITE_STATIC);
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return fail(s, "writing partner domains");

    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO partner_domains (name, partner, is_primary, position) "
                           "VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, "writing partner domains");
    for (uint32_t i = 0; i <= p->domain_count; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, i == 0 ? p->domain : p->domains[i - 1], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->domain, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, i == 0);
        sqlite3_bind_int(st, 4, (int)i);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_finalize(st);
            return fail(s, "writing partner domains");
        }
    }
    sqlite3_finalize(st);
    return XF_STORE_OK;
}

xf_store_rc xf_store_partner_commit(xf_store *s, const char *domain, bool create,
                                    xf_partner_edit edit, void *arg, const char *const *locals,
                                    size_t nlocals, xf_verdict *v)
{
    xf_partner *p = malloc(sizeof *p);
    if (!p) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return XF_STORE_ERROR;
    }
    xf_store_rc rc = XF_STORE_OK;
    if (begin(s) != SQLITE_OK) {
        free(p);
        return XF_STORE_ERROR;
    }
    xf_store_rc got = xf_store_partner_get(s, domain, p);
    char owner[XF_DOMAIN_MAX + 1];
    if (got == XF_STORE_ERROR) {
        rc = XF_STORE_ERROR;
    } else if (create && got == XF_STORE_OK) {
        xf_verdict_add(v, XF_COMMIT_REFUSED,
                       "partner '%s' already exists: use 'partner set' to change it", domain);
        rc = XF_STORE_REFUSED;
    } else if (!create && got == XF_STORE_NOTFOUND) {
        if (xf_store_partner_owner(s, domain, owner) == XF_STORE_OK)
            xf_verdict_add(v, XF_COMMIT_REFUSED,
                           "'%s' is an additional domain of partner '%s', not a partner of its "
                           "own",
                           domain, owner);
        else
            xf_verdict_add(v, XF_COMMIT_REFUSED, "no partner '%s': use 'partner new' to create it",
                           domain);
        rc = XF_STORE_NOTFOUND;
    } else {
        if (create) xf_partner_defaults(p, domain);
        edit(p, arg, v);
        xf_partner_check(p, locals, nlocals, v);
        if (v->cls != XF_COMMIT_REFUSED) rc = check_unique(s, p, v);
        if (rc == XF_STORE_OK && v->cls == XF_COMMIT_REFUSED) rc = XF_STORE_REFUSED;
        if (rc == XF_STORE_OK) rc = partner_write(s, p);
    }
    free(p);
    return finish(s, rc);
}

xf_store_rc xf_store_partner_remove(xf_store *s, const char *domain)
{
    sqlite3_stmt *st;
    if (begin(s) != SQLITE_OK) return XF_STORE_ERROR;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM partners WHERE domain = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return finish(s, fail(s, "removing a partner"));
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return finish(s, fail(s, "removing a partner"));
    return finish(s, sqlite3_changes(s->db) == 0 ? XF_STORE_NOTFOUND : XF_STORE_OK);
}

/* ---- gateway ------------------------------------------------------------ */

xf_store_rc xf_store_gateway_get(xf_store *s, xf_gateway *g)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT connection_limit, partner_connection_limit, "
                           "dialback_passphrase, keepalive_interval, "
                           "stream_establishment_timeout, stream_inactivity_timeout, "
                           "log_message_bodies FROM gateway WHERE id = 1",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, "reading gateway settings");
    xf_store_rc rc = XF_STORE_OK;
    if (sqlite3_step(st) == SQLITE_ROW) {
        memset(g, 0, sizeof *g);
        g->connection_limit = (uint32_t)sqlite3_column_int64(st, 0);
        g->partner_connection_limit = (uint32_t)sqlite3_column_int64(st, 1);
        copy_text(g->dialback_passphrase, sizeof g->dialback_passphrase, st, 2);
        g->keepalive_interval = (uint32_t)sqlite3_column_int64(st, 3);
        g->stream_establishment_timeout = (uint32_t)sqlite3_column_int64(st, 4);
        g->stream_inactivity_timeout = (uint32_t)sqlite3_column_int64(st, 5);
        g->log_message_bodies = sqlite3_column_int(st, 6) != 0;
    } else {
        rc = fail(s, "reading gateway settings (row missing)");
    }
    sqlite3_finalize(st);
    return rc;
}

static xf_store_rc gateway_write(xf_store *s, const xf_gateway *g)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO gateway (id, connection_limit, "
                           "partner_connection_limit, dialback_passphrase, keepalive_interval, "
                           "stream_establishment_timeout, stream_inactivity_timeout, "
                           "log_message_bodies) VALUES (1,?1,?2,?3,?4,?5,?6,?7)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, "writing gateway settings");
    sqlite3_bind_int64(st, 1, g->connection_limit);
    sqlite3_bind_int64(st, 2, g->partner_connection_limit);
    sqlite3_bind_text(st, 3, g->dialback_passphrase, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, g->keepalive_interval);
    sqlite3_bind_int64(st, 5, g->stream_establishment_timeout);
    sqlite3_bind_int64(st, 6, g->stream_inactivity_timeout);
    sqlite3_bind_int(st, 7, g->log_message_bodies);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? XF_STORE_OK : fail(s, "writing gateway settings");
}

xf_store_rc xf_store_gateway_commit(xf_store *s, xf_gateway_edit edit, void *arg, xf_verdict *v)
{
    xf_gateway g;
    if (begin(s) != SQLITE_OK) return XF_STORE_ERROR;
    xf_store_rc rc = xf_store_gateway_get(s, &g);
    if (rc == XF_STORE_OK) {
        edit(&g, arg, v);
        xf_gateway_check(&g, v);
        rc = v->cls == XF_COMMIT_REFUSED ? XF_STORE_REFUSED : gateway_write(s, &g);
    }
    return finish(s, rc);
}

/* ---- invites ------------------------------------------------------------- */

#define JID_DOMAIN_MAX 1023 /* RFC 7622 §3.2 */

/* The domain part of a JID ([local@]domain[/resource]), ASCII lower-cased,
 * without a trailing dot. False when there is none or it is too long. */
static bool jid_domain(const char *jid, char out[JID_DOMAIN_MAX + 1])
{
    size_t end = strcspn(jid, "/");
    const char *at = memchr(jid, '@', end);
    const char *d = at ? at + 1 : jid;
    size_t n = end - (size_t)(d - jid);
    if (n > 0 && d[n - 1] == '.') n--;
    if (n == 0 || n > JID_DOMAIN_MAX) return false;
    for (size_t i = 0; i < n; i++)
        out[i] = d[i] >= 'A' && d[i] <= 'Z' ? (char)(d[i] - 'A' + 'a') : d[i];
    out[n] = '\0';
    return true;
}

xf_store_rc xf_store_invite_put(xf_store *s, const char *local_jid, const char *remote_jid)
{
    char domain[JID_DOMAIN_MAX + 1];
    if (local_jid[0] == '\0') {
        snprintf(s->err, sizeof s->err, "an invite needs a local JID");
        return XF_STORE_REFUSED;
    }
    if (!jid_domain(remote_jid, domain)) {
        snprintf(s->err, sizeof s->err, "'%.200s' is not a JID with a domain part", remote_jid);
        return XF_STORE_REFUSED;
    }
    sqlite3_stmt *st;
    if (begin(s) != SQLITE_OK) return XF_STORE_ERROR;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR IGNORE INTO invites (local_jid, remote_jid, remote_domain) "
                           "VALUES (?1, ?2, ?3)",
                           -1, &st, NULL) != SQLITE_OK)
        return finish(s, fail(s, "writing an invite"));
    sqlite3_bind_text(st, 1, local_jid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, remote_jid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, domain, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    return finish(s, step == SQLITE_DONE ? XF_STORE_OK : fail(s, "writing an invite"));
}

xf_store_rc xf_store_invite_del(xf_store *s, const char *local_jid, const char *remote_jid)
{
    sqlite3_stmt *st;
    if (begin(s) != SQLITE_OK) return XF_STORE_ERROR;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM invites WHERE local_jid = ?1 AND remote_jid = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return finish(s, fail(s, "removing an invite"));
    sqlite3_bind_text(st, 1, local_jid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, remote_jid, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return finish(s, fail(s, "removing an invite"));
    return finish(s, sqlite3_changes(s->db) == 0 ? XF_STORE_NOTFOUND : XF_STORE_OK);
}

xf_store_rc xf_store_invite_each(xf_store *s, xf_invite_fn fn, void *arg)
{
    sqlite3_stmt *st;
    /* One read transaction, so the walk sees one consistent state. */
    if (exec(s, "BEGIN") != SQLITE_OK) return XF_STORE_ERROR;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT local_jid, remote_jid FROM invites "
                           "ORDER BY remote_domain, local_jid, remote_jid",
                           -1, &st, NULL) != SQLITE_OK) {
        xf_store_rc rc = fail(s, "listing invites");
        exec(s, "ROLLBACK");
        return rc;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *l = sqlite3_column_text(st, 0);
        const unsigned char *r = sqlite3_column_text(st, 1);
        if (fn(l ? (const char *)l : "", r ? (const char *)r : "", arg) != 0) break;
    }
    xf_store_rc rc = XF_STORE_OK;
    if (step != SQLITE_ROW && step != SQLITE_DONE) rc = fail(s, "listing invites");
    sqlite3_finalize(st);
    exec(s, "COMMIT");
    return rc;
}

xf_store_rc xf_store_invite_count(xf_store *s, uint64_t *n)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM invites", -1, &st, NULL) != SQLITE_OK)
        return fail(s, "counting invites");
    xf_store_rc rc = XF_STORE_OK;
    if (sqlite3_step(st) == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        rc = fail(s, "counting invites");
    sqlite3_finalize(st);
    return rc;
}
