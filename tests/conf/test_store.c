/* The SQLite store's invite records (spec §6): put (idempotent, remote domain
 * taken from the JID and lower-cased), the ordered walk and stopping it, del,
 * count, refusals, and persistence across close and open. */
#include "../check.h"
#include "store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

static char path[128];

static void remove_store(void)
{
    char p[160];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static xf_store *open_store(void)
{
    xf_store *st = NULL;
    char err[512] = "";
    xf_store_rc rc = xf_store_open(path, &st, err, sizeof err);
    if (rc != XF_STORE_OK) fprintf(stderr, "  open: %s\n", err);
    CHECK(rc == XF_STORE_OK);
    return st;
}

static uint64_t count(xf_store *st)
{
    uint64_t n = 99999;
    CHECK(xf_store_invite_count(st, &n) == XF_STORE_OK);
    return n;
}

typedef struct {
    char seen[512];
    int calls;
    int stop_after; /* 0: never */
} walk;

static int collect(const char *local_jid, const char *remote_jid, void *arg)
{
    walk *w = arg;
    size_t len = strlen(w->seen);
    snprintf(w->seen + len, sizeof w->seen - len, "%s>%s;", local_jid, remote_jid);
    w->calls++;
    return w->stop_after && w->calls == w->stop_after;
}

static const char *walk_all(xf_store *st, int stop_after)
{
    static walk w;
    memset(&w, 0, sizeof w);
    w.stop_after = stop_after;
    CHECK(xf_store_invite_each(st, collect, &w) == XF_STORE_OK);
    return w.seen;
}

/* The remote_domain column of one invite, read with SQLite directly. */
static void stored_domain(const char *local_jid, const char *remote_jid, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    out[0] = '\0';
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT remote_domain FROM invites WHERE local_jid = ?1 AND "
                             "remote_jid = ?2",
                             -1, &q, NULL) == SQLITE_OK);
    sqlite3_bind_text(q, 1, local_jid, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, remote_jid, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_invites(void)
{
    xf_store *st = open_store();
    if (!st) return;
    CHECK(count(st) == 0);
    CHECK_STR(walk_all(st, 0), "");

    CHECK(xf_store_invite_put(st, "alice@contoso.example", "bob@Fabrikam.EXAMPLE") == XF_STORE_OK);
    uint64_t v0 = xf_store_data_version(st);
    /* Idempotent: the same pair again adds nothing. */
    CHECK(xf_store_invite_put(st, "alice@contoso.example", "bob@Fabrikam.EXAMPLE") == XF_STORE_OK);
    CHECK(count(st) == 1);
    CHECK(xf_store_data_version(st) == v0); /* our own commits do not change it */

    CHECK(xf_store_invite_put(st, "carol@contoso.example", "dave@litware.example/phone") ==
          XF_STORE_OK);
    CHECK(xf_store_invite_put(st, "alice@contoso.example", "erin@litware.example") == XF_STORE_OK);
    CHECK(xf_store_invite_put(st, "alice@contoso.example", "conference.adatum.example.") ==
          XF_STORE_OK);
    CHECK(xf_store_invite_put(st, "bob@contoso.example", "frank@Fabrikam.example") == XF_STORE_OK);
    CHECK(count(st) == 5);

    char d[256];
    stored_domain("alice@contoso.example", "bob@Fabrikam.EXAMPLE", d, sizeof d);
    CHECK_STR(d, "fabrikam.example");
    stored_domain("carol@contoso.example", "dave@litware.example/phone", d, sizeof d);
    CHECK_STR(d, "litware.example");
    stored_domain("alice@contoso.example", "conference.adatum.example.", d, sizeof d);
    CHECK_STR(d, "conference.adatum.example");

    /* Ordered by remote domain, then local JID, then remote JID. */
    CHECK_STR(walk_all(st, 0), "alice@contoso.example>conference.adatum.example.;"
                               "alice@contoso.example>bob@Fabrikam.EXAMPLE;"
                               "bob@contoso.example>frank@Fabrikam.example;"
                               "alice@contoso.example>erin@litware.example;"
                               "carol@contoso.example>dave@litware.example/phone;");
    /* A non-zero return stops the walk. */
    CHECK_STR(walk_all(st, 2), "alice@contoso.example>conference.adatum.example.;"
                               "alice@contoso.example>bob@Fabrikam.EXAMPLE;");
    /* The store is usable after a stopped walk (its read transaction ended). */
    CHECK(xf_store_invite_put(st, "zed@contoso.example", "zoe@zeta.example") == XF_STORE_OK);
    CHECK(count(st) == 6);

    /* Refused: no domain part, no local JID; nothing written. */
    CHECK(xf_store_invite_put(st, "alice@contoso.example", "bob@") == XF_STORE_REFUSED);
    CHECK(strstr(xf_store_errmsg(st), "bob@") != NULL);
    CHECK(xf_store_invite_put(st, "alice@contoso.example", "") == XF_STORE_REFUSED);
    CHECK(xf_store_invite_put(st, "alice@contoso.example", "bob@/res") == XF_STORE_REFUSED);
    CHECK(xf_store_invite_put(st, "", "bob@fabrikam.example") == XF_STORE_REFUSED);
    CHECK(count(st) == 6);

    /* del: exact pairs only; a second del finds nothing. */
    CHECK(xf_store_invite_del(st, "alice@contoso.example", "bob@fabrikam.example") ==
          XF_STORE_NOTFOUND);
    CHECK(xf_store_invite_del(st, "zed@contoso.example", "zoe@zeta.example") == XF_STORE_OK);
    CHECK(xf_store_invite_del(st, "zed@contoso.example", "zoe@zeta.example") == XF_STORE_NOTFOUND);
    CHECK(xf_store_invite_del(st, "carol@contoso.example", "dave@litware.example/phone") ==
          XF_STORE_OK);
    CHECK(count(st) == 4);
    xf_store_close(st);

    /* Persistence: a new connection sees the committed state. */
    st = open_store();
    if (!st) return;
    CHECK(count(st) == 4);
    CHECK_STR(walk_all(st, 0), "alice@contoso.example>conference.adatum.example.;"
                               "alice@contoso.example>bob@Fabrikam.EXAMPLE;"
                               "bob@contoso.example>frank@Fabrikam.example;"
                               "alice@contoso.example>erin@litware.example;");
    CHECK(xf_store_invite_put(st, "alice@contoso.example", "bob@Fabrikam.EXAMPLE") == XF_STORE_OK);
    CHECK(count(st) == 4);
    CHECK(xf_store_invite_del(st, "alice@contoso.example", "erin@litware.example") == XF_STORE_OK);
    xf_store_close(st);
    st = open_store();
    if (!st) return;
    CHECK(count(st) == 3);
    CHECK(strstr(walk_all(st, 0), "erin@") == NULL);
    xf_store_close(st);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/xfed-test-store-%d.db", (int)getpid());
    remove_store();
    test_invites();
    remove_store();
    return check_report("test_store");
}
