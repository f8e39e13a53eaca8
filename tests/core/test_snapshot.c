/* Partner snapshots: lookups of primary and additional domains, ASCII case
 * folding, misses (near names, wrong lengths, unterminated input), partners
 * the build refuses, loading from a store (matrix-refused and local-domain
 * partners skipped), and the shard function's stability and spread. */
#include "../check.h"
#include "snapshot.h"
#include "store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

static void add_domain(xf_partner *p, const char *d)
{
    snprintf(p->domains[p->domain_count++], XF_DOMAIN_MAX + 1, "%s", d);
}

static bool finds(const xf_snapshot *s, const char *query, const char *primary)
{
    const xf_partner *p = xf_snapshot_find(s, query, strlen(query));
    if (primary == NULL) return p == NULL;
    return p != NULL && strcmp(p->domain, primary) == 0;
}

static void test_lookups(void)
{
    xf_partner *in = calloc(4, sizeof *in);
    xf_partner_defaults(&in[0], "fabrikam.com");
    add_domain(&in[0], "fabrikam.net");
    add_domain(&in[0], "MUC.Fabrikam.com"); /* lower-cased by the build */
    xf_partner_defaults(&in[1], "Litware.EXAMPLE");
    xf_partner_defaults(&in[2], "contoso.org");
    add_domain(&in[2], "fabrikam.net"); /* claimed by in[0]: in[2] is left out */
    xf_partner_defaults(&in[3], "tailspin.example");
    add_domain(&in[3], "a.tailspin.example");
    add_domain(&in[3], "a.tailspin.example"); /* repeated: left out */

    xf_snapshot *s = xf_snapshot_build(in, 4, 7);
    CHECK(s != NULL);
    CHECK(xf_snapshot_version(s) == 7);
    CHECK(xf_snapshot_count(s) == 2);
    CHECK_STR(xf_snapshot_partner(s, 1)->domain, "litware.example");
    CHECK(finds(s, "fabrikam.com", "fabrikam.com"));
    CHECK(finds(s, "fabrikam.net", "fabrikam.com"));
    CHECK(finds(s, "muc.fabrikam.com", "fabrikam.com"));
    CHECK(finds(s, "FaBrIkAm.NeT", "fabrikam.com"));
    CHECK(finds(s, "litware.example", "litware.example"));
    CHECK(finds(s, "LITWARE.EXAMPLE", "litware.example"));
    CHECK(finds(s, "contoso.org", NULL));
    CHECK(finds(s, "tailspin.example", NULL));
    CHECK(finds(s, "fabrikam.co", NULL));
    CHECK(finds(s, "fabrikam.comm", NULL));
    CHECK(finds(s, "abrikam.com", NULL));
    CHECK(finds(s, "fabrikam.com.", NULL));
    CHECK(finds(s, "", NULL));
    /* Wire input is not NUL-terminated: only `len` bytes count. */
    const char wire[] = "fabrikam.netXYZ";
    CHECK(xf_snapshot_find(s, wire, 12) == xf_snapshot_partner(s, 0));
    CHECK(xf_snapshot_find(s, wire, 11) == NULL);
    char huge[XF_DOMAIN_MAX + 2];
    memset(huge, 'a', sizeof huge);
    CHECK(xf_snapshot_find(s, huge, sizeof huge) == NULL);
    /* Non-ASCII bytes are not folded. */
    CHECK(finds(s,
                "f\xc3\xa1"
                "brikam.com",
                NULL));
    xf_snapshot_free(s);

    /* An empty snapshot answers every lookup with a miss. */
    s = xf_snapshot_build(NULL, 0, 1);
    CHECK(s != NULL && xf_snapshot_count(s) == 0);
    CHECK(finds(s, "fabrikam.com", NULL));
    xf_snapshot_free(s);
    free(in);
}

/* Many partners, every domain of every one found, table sized for them. */
static void test_many(void)
{
    enum { N = 1000, EXTRA = 3 };
    xf_partner *in = calloc(N, sizeof *in);
    for (unsigned i = 0; i < N; i++) {
        char d[64];
        snprintf(d, sizeof d, "partner%u.example", i);
        xf_partner_defaults(&in[i], d);
        for (unsigned k = 0; k < EXTRA; k++) {
            snprintf(d, sizeof d, "d%u.partner%u.example", k, i);
            add_domain(&in[i], d);
        }
    }
    xf_snapshot *s = xf_snapshot_build(in, N, 2);
    CHECK(xf_snapshot_count(s) == N);
    unsigned found = 0;
    for (unsigned i = 0; i < N; i++) {
        const xf_partner *p = xf_snapshot_partner(s, i);
        found += xf_snapshot_find(s, p->domain, strlen(p->domain)) == p;
        for (unsigned k = 0; k < EXTRA; k++)
            found += xf_snapshot_find(s, p->domains[k], strlen(p->domains[k])) == p;
    }
    CHECK(found == N * (1 + EXTRA));
    CHECK(finds(s, "partner1000.example", NULL));
    xf_snapshot_free(s);
    free(in);
}

static void edit_domains(xf_partner *p, void *arg, xf_verdict *v)
{
    const char *extra = arg;
    if (extra) add_domain(p, extra);
}

static void test_load(void)
{
    char path[128];
    snprintf(path, sizeof path, "/tmp/xfed-test-snapshot-%d.db", (int)getpid());
    unlink(path);
    xf_store *st = NULL;
    char err[512];
    CHECK(xf_store_open(path, &st, err, sizeof err) == XF_STORE_OK);
    xf_verdict v;
    const char *names[][2] = {{"fabrikam.com", "fabrikam.net"},
                              {"litware.example", NULL},
                              {"refused.example", NULL},
                              {"contoso.example", NULL}};
    for (unsigned i = 0; i < 4; i++) {
        xf_verdict_init(&v);
        CHECK(xf_store_partner_commit(st, names[i][0], true, edit_domains, (void *)names[i][1],
                                      NULL, 0, &v) == XF_STORE_OK);
    }
    /* A row the matrix refuses (SASL without TLS), as if written by hand. */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "UPDATE partners SET tls='not-supported', sasl='required' "
                       "WHERE domain='refused.example'",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);

    /* contoso.example is a local domain of this config: no partner may claim it. */
    const char *locals[] = {"contoso.example"};
    uint32_t active = 99, skipped = 99;
    xf_snapshot *s = xf_snapshot_load(st, locals, 1, 5, &active, &skipped);
    CHECK(s != NULL);
    CHECK(active == 2);
    CHECK(skipped == 2);
    CHECK(xf_snapshot_version(s) == 5);
    CHECK(finds(s, "Fabrikam.NET", "fabrikam.com"));
    CHECK(finds(s, "litware.example", "litware.example"));
    CHECK(finds(s, "refused.example", NULL));
    CHECK(finds(s, "contoso.example", NULL));
    xf_snapshot_free(s);
    xf_store_close(st);
    unlink(path);
}

/* xf_snapshot_shard(d, len, 1000003) as first released; see test_shard. */
#define SHARD_FABRIKAM 531038u
#define SHARD_CONTOSO  843883u

static void test_shard(void)
{
    /* Golden values: the ownership rule must not change between releases. */
    CHECK(xf_snapshot_shard("fabrikam.com", 12, 1) == 0);
    CHECK(xf_snapshot_shard("fabrikam.com", 12, 1000003) == SHARD_FABRIKAM);
    CHECK(xf_snapshot_shard("contoso.example", 15, 1000003) == SHARD_CONTOSO);
    CHECK(xf_snapshot_shard("FABRIKAM.com", 12, 1000003) == SHARD_FABRIKAM);
    CHECK(xf_snapshot_shard("", 0, 7) < 7);
    /* Spread: 20000 names over 2..16 shards, each shard within 10% of even. */
    enum { NAMES = 20000 };
    for (uint32_t shards = 2; shards <= 16; shards *= 2) {
        unsigned count[16] = {0};
        for (unsigned i = 0; i < NAMES; i++) {
            char d[64];
            int n = snprintf(d, sizeof d, "host%u.example", i);
            count[xf_snapshot_shard(d, (size_t)n, shards)]++;
        }
        for (uint32_t k = 0; k < shards; k++) {
            double share = (double)count[k] * shards / NAMES;
            if (share < 0.9 || share > 1.1)
                fprintf(stderr, "shards %u: shard %u has %u names\n", shards, k, count[k]);
            CHECK(share >= 0.9 && share <= 1.1);
        }
    }
}

int main(void)
{
    test_lookups();
    test_many();
    test_load();
    test_shard();
    return check_report("test_snapshot");
}
