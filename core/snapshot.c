/* Partner table snapshots (immutable, hash-indexed) and the epoch-based RCU
 * that swaps them under the core threads. */
#include "snapshot.h"

#include "log.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAPSHOT_MAGIC 0x70616e73706678ull /* "xfpsnap", checked on every access */
#define SLOTS_MIN      16
#define RCU_LINE       64 /* reader slots and hot fields get their own cache line */

/* One hash table slot. `domain` points into the snapshot's own partner copy. */
typedef struct {
    uint32_t hash;    /* low 32 bits of the mixed hash, to skip most compares */
    uint32_t partner; /* index + 1; 0 = empty */
    const char *domain;
    uint32_t len;
} slot;

struct xf_snapshot {
    uint64_t magic;
    uint64_t version;
    uint32_t count; /* partners kept */
    uint32_t mask;  /* slots - 1, slots a power of two >= 2 x domains */
    xf_partner *partners;
    slot *slots;
    xf_gateway gateway; /* the gateway settings in force with these partners */
};

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* FNV-1a 64 over the lower-cased bytes, then the murmur3 finalizer so that the
 * low bits (table index, mod small shard counts) depend on every input byte. */
static uint64_t domain_hash(const char *d, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= lower((unsigned char)d[i]);
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

uint32_t xf_snapshot_shard(const char *domain, size_t len, uint32_t nshards)
{
    assert(domain != NULL || len == 0);
    assert(nshards >= 1);
    return (uint32_t)(domain_hash(domain, len) % nshards);
}

/* Compares a wire domain with a stored lower-case one. */
static bool domain_equal(const char *wire, const char *stored, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)wire[i]) != (unsigned char)stored[i]) return false;
    return true;
}

/* Returns the slot holding `domain`, or the empty slot where it would go. */
static slot *probe(const xf_snapshot *s, const char *domain, size_t len, uint64_t h)
{
    uint32_t i = (uint32_t)h & s->mask;
    /* At most half the slots are used, so an empty slot ends every probe. */
    for (uint32_t n = 0; n <= s->mask; n++) {
        slot *sl = &s->slots[i];
        if (sl->partner == 0) return sl;
        if (sl->hash == (uint32_t)h && sl->len == len && domain_equal(domain, sl->domain, len))
            return sl;
        i = (i + 1) & s->mask;
    }
    assert(!"snapshot table full");
    return NULL;
}

const xf_partner *xf_snapshot_find(const xf_snapshot *s, const char *domain, size_t len)
{
    assert(s != NULL);
    assert(s->magic == SNAPSHOT_MAGIC);
    if (len == 0 || len > XF_DOMAIN_MAX) return NULL;
    const slot *sl = probe(s, domain, len, domain_hash(domain, len));
    if (sl->partner == 0) return NULL;
    assert(sl->partner <= s->count);
    return &s->partners[sl->partner - 1];
}

uint64_t xf_snapshot_version(const xf_snapshot *s)
{
    assert(s->magic == SNAPSHOT_MAGIC);
    return s->version;
}

uint32_t xf_snapshot_count(const xf_snapshot *s)
{
    assert(s->magic == SNAPSHOT_MAGIC);
    return s->count;
}

const xf_partner *xf_snapshot_partner(const xf_snapshot *s, uint32_t index)
{
    assert(s->magic == SNAPSHOT_MAGIC);
    assert(index < s->count);
    return &s->partners[index];
}

void xf_snapshot_free(xf_snapshot *s)
{
    if (!s) return;
    assert(s->magic == SNAPSHOT_MAGIC);
    s->magic = 0; /* a use after free trips the magic assertion sooner */
    free(s->partners);
    free(s->slots);
    free(s);
}

/* Lower-cases one domain buffer in place; returns its length or 0 if invalid. */
static size_t domain_prepare(char *d)
{
    size_t len = strnlen(d, XF_DOMAIN_MAX + 1);
    if (len == 0 || len > XF_DOMAIN_MAX) return 0;
    for (size_t i = 0; i < len; i++)
        d[i] = (char)lower((unsigned char)d[i]);
    return len;
}

/* The domain list of p: index 0 is the primary, then the additional ones. */
static char *domain_at(xf_partner *p, uint32_t k)
{
    return k == 0 ? p->domain : p->domains[k - 1];
}

/* Checks that every domain of p (already copied and lower-cased in place) is
 * valid, distinct and unclaimed. Writes the reason on failure. */
static bool partner_fits(const xf_snapshot *s, xf_partner *p, char *why, size_t whylen)
{
    if (p->domain_count > XF_PARTNER_DOMAINS_MAX) {
        snprintf(why, whylen, "%u additional domains (at most %d)", p->domain_count,
                 XF_PARTNER_DOMAINS_MAX);
        return false;
    }
    for (uint32_t k = 0; k <= p->domain_count; k++) {
        char *d = domain_at(p, k);
        size_t len = domain_prepare(d);
        if (len == 0) {
            snprintf(why, whylen, "domain %u is empty or longer than %d bytes", k, XF_DOMAIN_MAX);
            return false;
        }
        for (uint32_t j = 0; j < k; j++) {
            if (strcmp(domain_at(p, j), d) == 0) {
                snprintf(why, whylen, "domain %s is listed twice", d);
                return false;
            }
        }
        const slot *sl = probe(s, d, len, domain_hash(d, len));
        if (sl->partner != 0) {
            snprintf(why, whylen, "domain %s already belongs to partner %s", d,
                     s->partners[sl->partner - 1].domain);
            return false;
        }
    }
    return true;
}

static void partner_insert(xf_snapshot *s, uint32_t index)
{
    xf_partner *p = &s->partners[index];
    for (uint32_t k = 0; k <= p->domain_count; k++) {
        const char *d = domain_at(p, k);
        size_t len = strlen(d);
        uint64_t h = domain_hash(d, len);
        slot *sl = probe(s, d, len, h);
        assert(sl->partner == 0);
        *sl = (slot){(uint32_t)h, index + 1, d, (uint32_t)len};
    }
}

static size_t slots_for(const xf_partner *partners, size_t n)
{
    size_t domains = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t extra = partners[i].domain_count;
        domains += 1 + (extra <= XF_PARTNER_DOMAINS_MAX ? extra : 0);
    }
    size_t slots = SLOTS_MIN;
    while (slots < 2 * domains)
        slots *= 2;
    return slots;
}

xf_snapshot *xf_snapshot_build(const xf_partner *partners, size_t n, uint64_t version)
{
    assert(partners != NULL || n == 0);
    assert(n < UINT32_MAX);
    size_t nslots = slots_for(partners, n);
    xf_snapshot *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->magic = SNAPSHOT_MAGIC;
    s->version = version;
    xf_gateway_defaults(&s->gateway);
    s->mask = (uint32_t)(nslots - 1);
    s->partners = malloc(sizeof *s->partners * (n ? n : 1));
    s->slots = calloc(nslots, sizeof *s->slots);
    if (!s->partners || !s->slots) {
        xf_snapshot_free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        xf_partner *p = &s->partners[s->count];
        memcpy(p, &partners[i], sizeof *p);
        char why[2 * XF_DOMAIN_MAX + 64];
        if (!partner_fits(s, p, why, sizeof why)) {
            xf_log(XF_LOG_ERROR, "partner %.*s skipped: %s", XF_DOMAIN_MAX, partners[i].domain,
                   why);
            continue;
        }
        partner_insert(s, s->count);
        s->count++;
    }
    assert(s->count <= n);
    return s;
}

/* ---- loading from the store ---------------------------------------------- */

typedef struct {
    const char *const *locals;
    size_t nlocals;
    xf_partner *list;
    size_t count, cap;
    uint32_t skipped;
    bool oom;
} load_walk;

static int load_partner(const xf_partner *p, const char *load_error, void *arg)
{
    load_walk *w = arg;
    if (load_error) {
        xf_log(XF_LOG_ERROR, "partner %s skipped: the stored record is damaged (%s)", p->domain,
               load_error);
        w->skipped++;
        return 0;
    }
    xf_verdict v;
    xf_verdict_init(&v);
    xf_partner_check(p, w->locals, w->nlocals, &v);
    if (v.cls == XF_COMMIT_REFUSED) {
        for (uint32_t i = 0; i < v.count; i++)
            if (v.msg_cls[i] == XF_COMMIT_REFUSED)
                xf_log(XF_LOG_ERROR, "partner %s skipped (matrix row %d): %s", p->domain, v.row,
                       v.msg[i]);
        w->skipped++;
        return 0;
    }
    if (w->count == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        xf_partner *nl = realloc(w->list, cap * sizeof *nl);
        if (!nl) {
            w->oom = true;
            return 1; /* stops the walk */
        }
        w->list = nl;
        w->cap = cap;
    }
    w->list[w->count++] = *p;
    return 0;
}

xf_snapshot *xf_snapshot_load(xf_store *st, const char *const *locals, size_t nlocals,
                              uint64_t version, uint32_t *active, uint32_t *skipped)
{
    assert(st != NULL);
    load_walk w = {locals, nlocals, NULL, 0, 0, 0, false};
    xf_snapshot *s = NULL;
    if (xf_store_partner_each(st, load_partner, &w) != XF_STORE_OK) {
        xf_log(XF_LOG_ERROR, "store: %s", xf_store_errmsg(st));
    } else if (w.oom) {
        xf_log(XF_LOG_ERROR, "partner table: out of memory");
    } else {
        s = xf_snapshot_build(w.list, w.count, version);
    }
    if (s) {
        /* Partners the build left out (a domain claimed twice) count as skipped. */
        w.skipped += (uint32_t)(w.count - s->count);
        if (active) *active = s->count;
        if (skipped) *skipped = w.skipped;
    }
    free(w.list);
    return s;
}

/* ---- RCU ------------------------------------------------------------------
 *
 * Quiescent-state-based reclamation with a global epoch. Each core has a slot
 * holding the epoch it last announced, or 0 while it is offline (blocked in
 * io_uring_enter, holding no snapshot pointer).
 *
 * Reader (online and quiescent):  e = load(epoch); store(slot, e); s = load(current)
 * Writer (publish):               old = exchange(current, new); tag = ++epoch
 * Writer (reclaim):               free old once every slot is 0 or >= tag
 *
 * Why that is safe. All six operations are seq_cst, so they lie in one total
 * order S. (1) A slot value >= tag was read from the epoch at or after the
 * increment that made `tag`, which follows the exchange in S; the reader's
 * load of `current` follows its epoch load, so it returns new (or later),
 * never old: a reader that announced >= tag holds no pointer to old, since
 * every announcement also drops the pointers taken before it. (2) If reclaim
 * reads a slot as 0 (offline) although that core is just going online, the
 * core's store to its slot comes after reclaim's load in S, and its load of
 * `current` after that store, hence after the exchange: it gets new. This is
 * the Dekker pattern (store slot, then load current; versus store current,
 * then load slot), which is why the store and both loads must be seq_cst; an
 * acquire/release pair would let each side miss the other's store. (3) The
 * reader's reads of a snapshot happen-before the writer's free: the reader's
 * later slot store (quiescent or offline) is a release that the writer's load
 * reads from before it frees. (4) A new snapshot's contents happen-before any
 * reader's use: the exchange releases them, the reader's load acquires them.
 * Stale slot values only delay reclamation, never hasten it. (5) When the
 * slot already holds e, the reader skips the store: every pointer it holds was
 * loaded after it announced e, so any snapshot it holds retires with a tag
 * > e, and reclaim waits for a later (releasing) store to this slot.
 */

typedef struct {
    _Alignas(RCU_LINE) _Atomic uint64_t epoch; /* 0 = offline */
    bool online;                               /* owner core only, for assertions */
} rcu_reader;

typedef struct {
    xf_snapshot *snapshot;
    uint64_t tag; /* epoch after the swap that retired it */
} rcu_retired;

struct xf_rcu {
    /* Read by every core on each iteration, written on publish only. */
    _Alignas(RCU_LINE) _Atomic(xf_snapshot *) current;
    _Atomic uint64_t epoch;
    /* Writer-private from here on. */
    _Alignas(RCU_LINE) unsigned ncores;
    rcu_reader *readers;
    xf_rcu_free_fn free_fn;
    void *arg;
    uint32_t retired_count;
    rcu_retired retired[XF_RCU_RETIRE_MAX];
};

static void rcu_release(xf_rcu *r, xf_snapshot *s)
{
    if (r->free_fn)
        r->free_fn(s, r->arg);
    else
        xf_snapshot_free(s);
}

xf_rcu *xf_rcu_new(unsigned ncores, xf_rcu_free_fn free_fn, void *arg)
{
    assert(ncores >= 1);
    assert(ncores <= XF_RCU_CORES_MAX);
    xf_rcu *r = aligned_alloc(RCU_LINE, sizeof *r);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->readers = aligned_alloc(RCU_LINE, sizeof *r->readers * ncores);
    if (!r->readers) {
        free(r);
        return NULL;
    }
    memset(r->readers, 0, sizeof *r->readers * ncores);
    atomic_init(&r->current, NULL);
    atomic_init(&r->epoch, 1); /* 0 means offline in reader slots */
    for (unsigned c = 0; c < ncores; c++)
        atomic_init(&r->readers[c].epoch, 0);
    r->ncores = ncores;
    r->free_fn = free_fn;
    r->arg = arg;
    return r;
}

void xf_rcu_free(xf_rcu *r)
{
    if (!r) return;
    for (unsigned c = 0; c < r->ncores; c++)
        assert(atomic_load(&r->readers[c].epoch) == 0); /* every core offline */
    for (uint32_t i = 0; i < r->retired_count; i++)
        rcu_release(r, r->retired[i].snapshot);
    xf_snapshot *cur = atomic_load(&r->current);
    if (cur) rcu_release(r, cur);
    free(r->readers);
    free(r);
}

/* Announces the current epoch, then takes the current snapshot (see above). */
static const xf_snapshot *rcu_announce(xf_rcu *r, rcu_reader *rd)
{
    uint64_t e = atomic_load(&r->epoch);
    assert(e != 0);
    /* Skipping the store when the slot already says e keeps the common
     * iteration (no swap since the last one) free of a fence; see (5). */
    if (atomic_load_explicit(&rd->epoch, memory_order_relaxed) != e) atomic_store(&rd->epoch, e);
    return atomic_load(&r->current);
}

const xf_snapshot *xf_rcu_online(xf_rcu *r, unsigned core)
{
    assert(core < r->ncores);
    rcu_reader *rd = &r->readers[core];
    assert(!rd->online);
    rd->online = true;
    return rcu_announce(r, rd);
}

const xf_snapshot *xf_rcu_quiescent(xf_rcu *r, unsigned core)
{
    assert(core < r->ncores);
    rcu_reader *rd = &r->readers[core];
    assert(rd->online);
    return rcu_announce(r, rd);
}

void xf_rcu_offline(xf_rcu *r, unsigned core)
{
    assert(core < r->ncores);
    rcu_reader *rd = &r->readers[core];
    assert(rd->online);
    rd->online = false;
    /* Release would do for (3); seq_cst keeps the whole protocol in one order. */
    atomic_store(&rd->epoch, 0);
}

uint32_t xf_rcu_reclaim(xf_rcu *r)
{
    assert(r != NULL);
    uint64_t min = UINT64_MAX;
    for (unsigned c = 0; c < r->ncores; c++) {
        uint64_t e = atomic_load(&r->readers[c].epoch);
        if (e != 0 && e < min) min = e;
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < r->retired_count; i++) {
        if (r->retired[i].tag <= min)
            rcu_release(r, r->retired[i].snapshot);
        else
            r->retired[kept++] = r->retired[i];
    }
    assert(kept <= r->retired_count);
    r->retired_count = kept;
    return kept;
}

bool xf_rcu_publish(xf_rcu *r, xf_snapshot *s)
{
    assert(r != NULL);
    assert(s != NULL);
    assert(s->magic == SNAPSHOT_MAGIC);
    if (xf_rcu_reclaim(r) == XF_RCU_RETIRE_MAX) return false;
    xf_snapshot *old = atomic_exchange(&r->current, s);
    assert(old != s);
    /* Only this thread writes the epoch; the RMW keeps it in the seq_cst order. */
    uint64_t tag = atomic_fetch_add(&r->epoch, 1) + 1;
    if (old) {
        assert(r->retired_count < XF_RCU_RETIRE_MAX);
        r->retired[r->retired_count++] = (rcu_retired){old, tag};
    }
    return true;
}

const xf_snapshot *xf_rcu_current(const xf_rcu *r)
{
    assert(r != NULL);
    return atomic_load_explicit(&((xf_rcu *)r)->current, memory_order_acquire);
}

const xf_gateway *xf_snapshot_gateway(const xf_snapshot *s)
{
    return &s->gateway;
}

void xf_snapshot_set_gateway(xf_snapshot *s, const xf_gateway *g)
{
    s->gateway = *g;
}
