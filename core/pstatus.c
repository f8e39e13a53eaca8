/* Per-partner runtime status: one single-writer table per core. */
#include "pstatus.h"

#include <assert.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define REASON_WORDS  (XF_PSTATUS_REASON_MAX / 8)
#define READ_TRIES    1024 /* a reader retries a changing status this often */
#define PSTATUS_ALIGN 64

_Static_assert(XF_PSTATUS_REASON_MAX % 8 == 0, "the reason is stored as whole words");

typedef struct {
    char domain[XF_DOMAIN_MAX + 1]; /* written once, before the row is published */
    uint64_t hash;
    _Atomic uint32_t streams[2]; /* xf_pstatus_dir */
    _Atomic uint32_t method;
    _Atomic int64_t last_success;
    _Atomic uint32_t seq; /* odd while the failure fields change */
    _Atomic int64_t last_failure;
    _Atomic uint64_t reason[REASON_WORDS]; /* words, so readers race on nothing */
} ps_row;

typedef struct {
    _Alignas(PSTATUS_ALIGN) uint32_t count; /* writer-private */
    uint32_t mask;                          /* index slots - 1 (a power of two) */
    _Atomic int32_t *index;                 /* slot -> row, -1 = empty */
    ps_row *rows;
} ps_core;

struct xf_pstatus {
    unsigned ncores;
    uint32_t rows_max;
    ps_core *cores;
};

static uint64_t domain_hash(const char *d)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (; *d; d++)
        h = (h ^ (unsigned char)*d) * 1099511628211ull;
    return h;
}

xf_pstatus *xf_pstatus_new(unsigned ncores, uint32_t rows_per_core)
{
    assert(ncores >= 1);
    assert(rows_per_core >= 1 && rows_per_core <= XF_PSTATUS_ROWS_MAX);
    xf_pstatus *ps = calloc(1, sizeof *ps);
    if (!ps) return NULL;
    ps->ncores = ncores;
    ps->rows_max = rows_per_core;
    ps->cores = aligned_alloc(PSTATUS_ALIGN, sizeof *ps->cores * ncores);
    if (!ps->cores) {
        free(ps);
        return NULL;
    }
    memset(ps->cores, 0, sizeof *ps->cores * ncores);
    uint32_t slots = 1;
    while (slots < 2 * rows_per_core) /* at most half full: short probes */
        slots <<= 1;
    for (unsigned c = 0; c < ncores; c++) {
        ps_core *pc = &ps->cores[c];
        pc->mask = slots - 1;
        pc->index = malloc(sizeof *pc->index * slots);
        pc->rows = calloc(rows_per_core, sizeof *pc->rows);
        if (!pc->index || !pc->rows) {
            xf_pstatus_free(ps);
            return NULL;
        }
        for (uint32_t i = 0; i < slots; i++)
            atomic_init(&pc->index[i], -1);
    }
    return ps;
}

void xf_pstatus_free(xf_pstatus *ps)
{
    if (!ps) return;
    for (unsigned c = 0; c < ps->ncores; c++) {
        free(ps->cores[c].index);
        free(ps->cores[c].rows);
    }
    free(ps->cores);
    free(ps);
}

int32_t xf_pstatus_row(xf_pstatus *ps, unsigned core, const char *domain)
{
    assert(ps != NULL);
    assert(core < ps->ncores);
    if (strlen(domain) > XF_DOMAIN_MAX) return -1;
    ps_core *pc = &ps->cores[core];
    uint64_t h = domain_hash(domain);
    for (uint32_t probe = 0, slot = (uint32_t)h & pc->mask; probe <= pc->mask;
         probe++, slot = (slot + 1) & pc->mask) {
        int32_t r = atomic_load_explicit(&pc->index[slot], memory_order_relaxed);
        if (r >= 0) {
            if (pc->rows[r].hash == h && strcmp(pc->rows[r].domain, domain) == 0) return r;
            continue;
        }
        if (pc->count == ps->rows_max) return -1;
        r = (int32_t)pc->count++;
        ps_row *row = &pc->rows[r];
        memcpy(row->domain, domain, strlen(domain) + 1);
        row->hash = h;
        /* Release: a reader that finds the slot sees the domain and hash. */
        atomic_store_explicit(&pc->index[slot], r, memory_order_release);
        return r;
    }
    assert(!"a table at most half full always has an empty slot");
    return -1;
}

static ps_row *owned_row(xf_pstatus *ps, unsigned core, int32_t row)
{
    assert(ps != NULL);
    assert(core < ps->ncores);
    if (row < 0) return NULL; /* the table was full: nothing is recorded */
    assert((uint32_t)row < ps->cores[core].count);
    return &ps->cores[core].rows[row];
}

void xf_pstatus_stream(xf_pstatus *ps, unsigned core, int32_t row, xf_pstatus_dir dir,
                       int32_t delta)
{
    ps_row *r = owned_row(ps, core, row);
    if (!r) return;
    assert(dir == XF_PSTATUS_IN || dir == XF_PSTATUS_OUT);
    uint32_t n = atomic_load_explicit(&r->streams[dir], memory_order_relaxed);
    assert(delta >= 0 || n >= (uint32_t)-delta);
    atomic_store_explicit(&r->streams[dir], n + (uint32_t)delta, memory_order_relaxed);
}

/* The writer's side of the sequence count: readers retry while it is odd. */
static void write_begin(ps_row *r)
{
    uint32_t s = atomic_load_explicit(&r->seq, memory_order_relaxed);
    assert(s % 2 == 0);
    atomic_store_explicit(&r->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* the odd count is seen before new values */
}

static void write_end(ps_row *r)
{
    uint32_t s = atomic_load_explicit(&r->seq, memory_order_relaxed);
    assert(s % 2 == 1);
    atomic_store_explicit(&r->seq, s + 1, memory_order_release);
}

void xf_pstatus_auth_ok(xf_pstatus *ps, unsigned core, int32_t row, unsigned method, int64_t unix_s)
{
    ps_row *r = owned_row(ps, core, row);
    if (!r) return;
    assert(method != 0);
    write_begin(r);
    atomic_store_explicit(&r->method, method, memory_order_relaxed);
    atomic_store_explicit(&r->last_success, unix_s, memory_order_relaxed);
    write_end(r);
}

void xf_pstatus_auth_failed(xf_pstatus *ps, unsigned core, int32_t row, const char *reason,
                            int64_t unix_s)
{
    ps_row *r = owned_row(ps, core, row);
    if (!r) return;
    char text[XF_PSTATUS_REASON_MAX] = {0};
    strncpy(text, reason, sizeof text - 1);
    write_begin(r);
    atomic_store_explicit(&r->last_failure, unix_s, memory_order_relaxed);
    for (size_t w = 0; w < REASON_WORDS; w++) {
        uint64_t word;
        memcpy(&word, text + 8 * w, 8);
        atomic_store_explicit(&r->reason[w], word, memory_order_relaxed);
    }
    write_end(r);
}

static const ps_row *find_row(const ps_core *pc, const char *domain, uint64_t h)
{
    for (uint32_t probe = 0, slot = (uint32_t)h & pc->mask; probe <= pc->mask;
         probe++, slot = (slot + 1) & pc->mask) {
        int32_t r = atomic_load_explicit(&pc->index[slot], memory_order_acquire);
        if (r < 0) return NULL;
        if (pc->rows[r].hash == h && strcmp(pc->rows[r].domain, domain) == 0) return &pc->rows[r];
    }
    return NULL;
}

typedef struct {
    unsigned method;
    int64_t last_success, last_failure;
    char reason[XF_PSTATUS_REASON_MAX];
} auth_state;

static void read_words(ps_row *r, auth_state *a)
{
    a->method = atomic_load_explicit(&r->method, memory_order_relaxed);
    a->last_success = atomic_load_explicit(&r->last_success, memory_order_relaxed);
    a->last_failure = atomic_load_explicit(&r->last_failure, memory_order_relaxed);
    for (size_t w = 0; w < REASON_WORDS; w++) {
        uint64_t word = atomic_load_explicit(&r->reason[w], memory_order_relaxed);
        memcpy(a->reason + 8 * w, &word, 8);
    }
}

/* The authentication fields as one consistent set. The writer's sections
 * are a few stores long, so a retry nearly always succeeds; a reader that
 * still loses READ_TRIES times (yielding in between) reports no
 * authentication rather than a torn one. */
static void read_auth(ps_row *r, auth_state *a)
{
    for (int t = 0; t < READ_TRIES; t++) {
        if (t >= 8) sched_yield(); /* let a preempted writer finish its section */
        uint32_t s1 = atomic_load_explicit(&r->seq, memory_order_acquire);
        if (s1 % 2) continue;
        read_words(r, a);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&r->seq, memory_order_relaxed) == s1) {
            a->reason[XF_PSTATUS_REASON_MAX - 1] = '\0';
            return;
        }
    }
    memset(a, 0, sizeof *a);
}

bool xf_pstatus_get(const xf_pstatus *ps, const char *domain, xf_pstatus_view *out)
{
    assert(ps != NULL);
    assert(out != NULL);
    memset(out, 0, sizeof *out);
    uint64_t h = domain_hash(domain);
    bool found = false;
    for (unsigned c = 0; c < ps->ncores; c++) {
        const ps_row *r = find_row(&ps->cores[c], domain, h);
        if (!r) continue;
        found = true;
        ps_row *w = (ps_row *)r; /* atomics are loaded, never stored, here */
        out->streams_in += atomic_load_explicit(&w->streams[XF_PSTATUS_IN], memory_order_relaxed);
        out->streams_out += atomic_load_explicit(&w->streams[XF_PSTATUS_OUT], memory_order_relaxed);
        auth_state st;
        read_auth(w, &st);
        if (st.last_success > out->last_success) {
            out->last_success = st.last_success;
            out->method = st.method;
        }
        if (st.last_failure > out->last_failure) {
            out->last_failure = st.last_failure;
            memcpy(out->reason, st.reason, sizeof st.reason);
        }
    }
    return found;
}
