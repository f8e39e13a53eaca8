/* RCU swap of partner snapshots. Goal: no core thread ever reads a snapshot
 * that has been freed, and every retired snapshot is freed in the end.
 *
 * Method: reader threads play core loops (online, lookups, quiescent, now and
 * then offline and online again) and check every snapshot they see: each
 * partner's domains map back to it, its description is the version-stamped
 * canary, the snapshot is not marked freed before or after the lookups, and
 * versions never go backwards. The main thread plays the control thread and
 * publishes thousands of snapshots, reclaiming as it goes; a counting free
 * function marks each freed version. Run under TSan (label tsan) and ASan, a
 * use after free or a missing happens-before is reported by the sanitizer.
 * Single-threaded cases pin the rules: an online core holds back reclamation,
 * an offline one does not, and a full retire list refuses the publish. */
#include "../check.h"
#include "snapshot.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define READERS   3
#define PUBLISHES 3000
#define PARTNERS  4
#define EXTRA     2

static _Atomic unsigned char freed_flag[PUBLISHES + XF_RCU_RETIRE_MAX + 8]; /* by version */
static _Atomic uint64_t built, released;
static _Atomic bool stop;
static _Atomic unsigned readers_started;

static xf_snapshot *make(uint64_t version)
{
    static xf_partner partners[PARTNERS]; /* control thread only */
    for (unsigned i = 0; i < PARTNERS; i++) {
        char d[64];
        snprintf(d, sizeof d, "p%u.example", i);
        xf_partner_defaults(&partners[i], d);
        snprintf(partners[i].description, sizeof partners[i].description, "v=%" PRIu64, version);
        snprintf(partners[i].domains[0], XF_DOMAIN_MAX + 1, "x%u.p%u.example", i, i);
        snprintf(partners[i].domains[1], XF_DOMAIN_MAX + 1, "v%" PRIu64 ".p%u.example", version, i);
        partners[i].domain_count = EXTRA;
    }
    xf_snapshot *s = xf_snapshot_build(partners, PARTNERS, version);
    assert(s != NULL);
    atomic_fetch_add(&built, 1);
    return s;
}

static void count_free(xf_snapshot *s, void *arg)
{
    uint64_t v = xf_snapshot_version(s);
    assert(v < sizeof freed_flag);
    atomic_store(&freed_flag[v], 1); /* before the free: a reader checks after its reads */
    atomic_fetch_add(&released, 1);
    xf_snapshot_free(s);
}

typedef struct {
    xf_rcu *rcu;
    unsigned core;
    uint64_t lookups, versions_seen, bad;
} reader_arg;

/* Everything a core may rely on in a snapshot it holds. */
static bool consistent(const xf_snapshot *s)
{
    uint64_t v = xf_snapshot_version(s);
    if (atomic_load(&freed_flag[v])) return false;
    char canary[32];
    snprintf(canary, sizeof canary, "v=%" PRIu64, v);
    if (xf_snapshot_count(s) != PARTNERS) return false;
    for (uint32_t i = 0; i < PARTNERS; i++) {
        const xf_partner *p = xf_snapshot_partner(s, i);
        if (strcmp(p->description, canary) != 0) return false;
        if (xf_snapshot_find(s, p->domain, strlen(p->domain)) != p) return false;
        for (uint32_t k = 0; k < p->domain_count; k++)
            if (xf_snapshot_find(s, p->domains[k], strlen(p->domains[k])) != p) return false;
    }
    return atomic_load(&freed_flag[v]) == 0;
}

static void *reader(void *p)
{
    reader_arg *a = p;
    const xf_snapshot *s = xf_rcu_online(a->rcu, a->core);
    atomic_fetch_add(&readers_started, 1);
    uint64_t last = 0;
    for (uint64_t round = 0; !atomic_load_explicit(&stop, memory_order_relaxed); round++) {
        assert(s != NULL); /* version 1 is published before readers start */
        uint64_t v = xf_snapshot_version(s);
        if (v < last) a->bad++;
        if (v != last) a->versions_seen++;
        last = v;
        for (unsigned i = 0; i < 8; i++) {
            if (!consistent(s)) a->bad++;
            a->lookups++;
        }
        if (round % 16 == 15) {
            /* As before io_uring_enter: a sleeping core holds nothing. */
            xf_rcu_offline(a->rcu, a->core);
            sched_yield();
            s = xf_rcu_online(a->rcu, a->core);
        } else {
            s = xf_rcu_quiescent(a->rcu, a->core);
        }
    }
    xf_rcu_offline(a->rcu, a->core);
    return NULL;
}

static void test_concurrent(void)
{
    xf_rcu *r = xf_rcu_new(READERS, count_free, NULL);
    CHECK(xf_rcu_publish(r, make(1)));
    pthread_t t[READERS];
    reader_arg args[READERS];
    for (unsigned i = 0; i < READERS; i++) {
        args[i] = (reader_arg){r, i, 0, 0, 0};
        pthread_create(&t[i], NULL, reader, &args[i]);
    }
    /* Publishing starts once every reader is inside its loop, and yields
     * after each swap so that readers on this 2-core machine overlap it. */
    while (atomic_load(&readers_started) < READERS)
        sched_yield();
    uint64_t refused = 0;
    for (uint64_t v = 2; v <= PUBLISHES; v++) {
        xf_snapshot *s = make(v);
        while (!xf_rcu_publish(r, s)) {
            refused++; /* a reader has not passed a quiescent point yet */
            sched_yield();
        }
        if (v % 8 == 0) xf_rcu_reclaim(r);
        sched_yield();
    }
    atomic_store(&stop, true);
    uint64_t lookups = 0, versions = 0;
    for (unsigned i = 0; i < READERS; i++) {
        pthread_join(t[i], NULL);
        CHECK(args[i].bad == 0);
        CHECK(args[i].lookups > 0);
        lookups += args[i].lookups;
        versions += args[i].versions_seen;
    }
    CHECK(versions > READERS); /* the readers did overlap the swaps */
    /* Every core is offline now: everything retired can go. */
    CHECK(xf_rcu_reclaim(r) == 0);
    CHECK(atomic_load(&built) == PUBLISHES);
    CHECK(atomic_load(&released) == PUBLISHES - 1);
    CHECK(xf_snapshot_version(xf_rcu_current(r)) == PUBLISHES);
    CHECK(atomic_load(&freed_flag[PUBLISHES]) == 0);
    xf_rcu_free(r);
    CHECK(atomic_load(&released) == PUBLISHES);
    printf("rcu swap: %d publishes, %" PRIu64 " refused while full, %" PRIu64
           " snapshot checks, %" PRIu64 " version changes seen\n",
           PUBLISHES, refused, lookups, versions);
}

/* The rules, one step at a time, on two cores. */
static void test_rules(void)
{
    atomic_store(&built, 0);
    atomic_store(&released, 0);
    for (size_t i = 0; i < sizeof freed_flag; i++)
        atomic_store(&freed_flag[i], 0);
    xf_rcu *r = xf_rcu_new(2, count_free, NULL);
    CHECK(xf_rcu_online(r, 0) == NULL); /* nothing published yet */
    CHECK(xf_rcu_publish(r, make(1)));
    CHECK(xf_snapshot_version(xf_rcu_quiescent(r, 0)) == 1);

    /* Core 0 holds version 1; core 1 is offline and holds nothing. */
    CHECK(xf_rcu_publish(r, make(2)));
    CHECK(xf_rcu_reclaim(r) == 1);
    CHECK(atomic_load(&released) == 0);
    CHECK(xf_snapshot_version(xf_rcu_quiescent(r, 0)) == 2);
    CHECK(xf_rcu_reclaim(r) == 0);
    CHECK(atomic_load(&freed_flag[1]) == 1);

    /* A core that stays online without a quiescent point fills the list. */
    uint64_t v = 3;
    while (v < 3 + XF_RCU_RETIRE_MAX)
        CHECK(xf_rcu_publish(r, make(v++)));
    xf_snapshot *extra = make(v);
    CHECK(!xf_rcu_publish(r, extra));
    CHECK(xf_snapshot_version(xf_rcu_current(r)) == v - 1);
    xf_rcu_offline(r, 0);
    CHECK(xf_rcu_publish(r, extra)); /* reclaims first, then fits */
    CHECK(xf_rcu_reclaim(r) == 0);

    /* Going online again sees the newest snapshot. */
    CHECK(xf_snapshot_version(xf_rcu_online(r, 1)) == v);
    xf_rcu_offline(r, 1);
    xf_rcu_free(r);
    CHECK(atomic_load(&released) == atomic_load(&built));
}

int main(void)
{
    test_rules();
    atomic_store(&built, 0);
    atomic_store(&released, 0);
    for (size_t i = 0; i < sizeof freed_flag; i++)
        atomic_store(&freed_flag[i], 0);
    test_concurrent();
    return check_report("test_rcu_swap");
}
