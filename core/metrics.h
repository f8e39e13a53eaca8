/* Metrics (spec §9): per-core counters and gauges, process-wide values, labelled
 * counter families, rendered in the Prometheus text format (0.0.4).
 *
 *   xf_metrics_new(ncores)           one object; one cache-line aligned block per core
 *   xf_metrics_core(m, core)         the block a core thread writes
 *   xf_metric_inc/add/set(cm, id..)  hot path: relaxed load + store, no locked RMW;
 *                                    ONLY the owning core writes its block
 *   xf_metrics_set/add(m, id, ..)    process-wide values, written by the control thread only
 *   xf_family_row(cm, f, values)     registers a label-value row (core thread, no allocation)
 *   xf_family_inc(cm, f, row, n)     hot path, like xf_metric_inc
 *   xf_metrics_render*(m, ..)        admin thread: sums the blocks (relaxed loads)
 *
 * Every metric and family is declared once, in the tables at the top of metrics.c.
 */
#ifndef XF_METRICS_H
#define XF_METRICS_H

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define XF_CACHE_LINE 64

/* Metric ids. Per-core ones come first (they index xf_core_metrics.value); the
 * process-wide ones follow XF_METRIC_CORE_COUNT. Keep in step with the table. */
typedef enum {
    XF_METRIC_LOOP_ITERATIONS,     /* counter, per core */
    XF_METRIC_CPU_NS,              /* counter, per core: thread CPU time in ns, set */
    XF_METRIC_URING_ENTERS,        /* counter */
    XF_METRIC_CQES,                /* counter */
    XF_METRIC_CONNS_ACCEPTED,      /* counter */
    XF_METRIC_CONNS_OUTBOUND,      /* counter */
    XF_METRIC_CONNS_CLOSED,        /* counter */
    XF_METRIC_CONNS_OPEN,          /* gauge */
    XF_METRIC_BYTES_RECEIVED,      /* counter */
    XF_METRIC_BYTES_SENT,          /* counter */
    XF_METRIC_SENDS,               /* counter */
    XF_METRIC_RECV_ENOBUFS,        /* counter */
    XF_METRIC_PBUFS_IN_USE,        /* gauge */
    XF_METRIC_OUTPUT_BYTES_QUEUED, /* gauge */
    XF_METRIC_BACKPRESSURE_PAUSES, /* counter */
    XF_METRIC_TIMERS_FIRED,        /* counter */
    XF_METRIC_HANDOFF_MESSAGES,    /* counter */
    XF_METRIC_HANDOFF_DOORBELLS,   /* counter */
    XF_METRIC_HANDOFF_QUEUE_FULL,  /* counter */
    XF_METRIC_VERIFY_REQUESTS,     /* counter */
    XF_METRIC_VERIFY_RESPONSES,    /* counter */
    XF_METRIC_SNAPSHOT_SWAPS,      /* counter */
    XF_METRIC_FAMILY_ROWS_FULL,    /* counter: family rows refused (table full) */
    XF_METRIC_S2S_IN_OPEN,         /* gauge: inbound s2s streams */
    XF_METRIC_S2S_OUT_OPEN,        /* gauge: outbound s2s streams */
    XF_METRIC_DNS_QUERIES,         /* counter, set from the core's resolver */
    XF_METRIC_DNS_FAILURES,        /* counter, set */
    XF_METRIC_DNS_CACHE_HITS,      /* counter, set */
    XF_METRIC_DNS_LATENCY_NS,      /* counter, set: summed lookup latency */
    XF_METRIC_DNS_ANSWERS,         /* counter, set: lookups in that sum */
    XF_METRIC_INTERNAL_LINKS_UP,   /* gauge: XEP-0114 links to internal servers up */
    XF_METRIC_INVITES,             /* gauge, set by the verification thread: invites stored */
    XF_METRIC_OUT_QUEUED,          /* gauge: stanzas waiting for an outbound stream */
    XF_METRIC_SM_UNACKED,          /* gauge: stanzas sent, not yet acknowledged (XEP-0198) */
    XF_METRIC_CORE_COUNT,

    XF_METRIC_PARTNERS_ACTIVE = XF_METRIC_CORE_COUNT, /* gauge, process-wide */
    XF_METRIC_PARTNERS_SKIPPED,                       /* gauge */
    XF_METRIC_CONFIG_RELOADS,                         /* counter */
    XF_METRIC_CONFIG_ERRORS,                          /* counter */
    XF_METRIC_SNAPSHOT_VERSION,                       /* gauge */
    XF_METRIC_BUILD_INFO,                             /* gauge, constant 1, label version */
    XF_METRIC_COUNT
} xf_metric;

/* Labelled counter families (bounded cardinality). */
typedef enum {
    XF_FAMILY_STANZAS_ROUTED,  /* partner, direction */
    XF_FAMILY_AUTHENTICATIONS, /* partner, method, result */
    XF_FAMILY_STREAMS_CLOSED,  /* condition */
    XF_FAMILY_STREAMS_OPENED,  /* direction */
    XF_FAMILY_REFUSALS,        /* direction, reason */
    XF_FAMILY_TLS_HANDSHAKES,  /* direction, version, cipher, result */
    XF_FAMILY_BYTES_ROUTED,    /* partner, direction */
    XF_FAMILY_STANZAS_REFUSED, /* partner, reason */
    XF_FAMILY_BOUNCES,         /* condition */
    XF_FAMILY_COUNT
} xf_family;

#define XF_FAMILY_LABELS_MAX 4
#define XF_FAMILY_ROWS_MAX   4096 /* per family per core */
#define XF_FAMILY_VALUE_MAX  256  /* bytes of one label value, NUL included */
#define XF_FAMILY_ROW_NONE   (-1)

typedef struct xf_metrics xf_metrics;
typedef struct xf_family_rows xf_family_rows; /* private: label values, index */

/* One core's block. Only that core writes it; the admin thread reads it. */
typedef struct xf_core_metrics {
    _Alignas(XF_CACHE_LINE) _Atomic uint64_t value[XF_METRIC_CORE_COUNT];
    _Atomic uint64_t *family_value[XF_FAMILY_COUNT]; /* rows_max counters each */
    xf_family_rows *family_rows[XF_FAMILY_COUNT];
    uint32_t family_rows_max[XF_FAMILY_COUNT];
} xf_core_metrics;

_Static_assert(sizeof(xf_core_metrics) % XF_CACHE_LINE == 0, "blocks share no cache line");

/* Counters: add n. A single writer needs no locked instruction: a relaxed load
 * and store keep the value tear-free for the admin thread. */
static inline void xf_metric_inc(xf_core_metrics *m, xf_metric id, uint64_t n)
{
    assert(m != NULL);
    assert((unsigned)id < XF_METRIC_CORE_COUNT);
    uint64_t v = atomic_load_explicit(&m->value[id], memory_order_relaxed);
    atomic_store_explicit(&m->value[id], v + n, memory_order_relaxed);
}

/* Gauges: add a signed delta (two's complement, so per-core sums stay right
 * even when one core's share goes below zero). */
static inline void xf_metric_add(xf_core_metrics *m, xf_metric id, int64_t delta)
{
    assert(m != NULL);
    assert((unsigned)id < XF_METRIC_CORE_COUNT);
    uint64_t v = atomic_load_explicit(&m->value[id], memory_order_relaxed);
    atomic_store_explicit(&m->value[id], v + (uint64_t)delta, memory_order_relaxed);
}

/* Gauges, and counters the core measures itself (XF_METRIC_CPU_NS). */
static inline void xf_metric_set(xf_core_metrics *m, xf_metric id, uint64_t v)
{
    assert(m != NULL);
    assert((unsigned)id < XF_METRIC_CORE_COUNT);
    atomic_store_explicit(&m->value[id], v, memory_order_relaxed);
}

/* Labelled counter: `row` comes from xf_family_row on the same core. */
static inline void xf_family_inc(xf_core_metrics *m, xf_family f, int32_t row, uint64_t n)
{
    assert(m != NULL);
    assert((unsigned)f < XF_FAMILY_COUNT);
    if (row < 0) return; /* the row was refused: the table was full */
    assert((uint32_t)row < m->family_rows_max[f]);
    _Atomic uint64_t *c = &m->family_value[f][row];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Stores the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID) in
 * XF_METRIC_CPU_NS of m: a core thread calls it on its own block, now and then
 * (it is a system call, so not every iteration). */
void xf_metrics_sample_cpu(xf_core_metrics *m);

/* Lifetime. ncores >= 1. The blocks are preallocated here, families included. */
xf_metrics *xf_metrics_new(unsigned ncores);
void xf_metrics_free(xf_metrics *m);
unsigned xf_metrics_ncores(const xf_metrics *m);
xf_core_metrics *xf_metrics_core(xf_metrics *m, unsigned core);

/* Process-wide values (XF_METRIC_CORE_COUNT <= id < XF_METRIC_COUNT, not BUILD_INFO);
 * control thread only. */
void xf_metrics_set(xf_metrics *m, xf_metric id, uint64_t v);
void xf_metrics_add(xf_metrics *m, xf_metric id, uint64_t n);
uint64_t xf_metrics_get(const xf_metrics *m, xf_metric id); /* summed over cores */

/* Finds or registers the row for `values` (one NUL-terminated string per label
 * of the family, in the table's order; each shorter than XF_FAMILY_VALUE_MAX).
 * Core thread only; no allocation. Returns the row, or XF_FAMILY_ROW_NONE when
 * the family is full on this core (counted in XF_METRIC_FAMILY_ROWS_FULL) or a
 * value is too long. Keep the row: lookups hash the values every call. */
int32_t xf_family_row(xf_core_metrics *m, xf_family f, const char *const *values);

/* Renders the text format into buf (NUL-terminated when cap > 0). Returns the
 * full length, which is >= cap when the output was truncated (like snprintf). */
size_t xf_metrics_render(const xf_metrics *m, char *buf, size_t cap);
/* Renders into a malloc'd NUL-terminated buffer; *len gets its length. NULL on
 * allocation failure. */
char *xf_metrics_render_alloc(const xf_metrics *m, size_t *len);

#endif
