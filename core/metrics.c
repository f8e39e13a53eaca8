/* Metrics: the tables that declare every metric, the per-core blocks, label
 * rows and the Prometheus text rendering. See metrics.h for the threading rule. */
#include "metrics.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef XFED_VERSION
#define XFED_VERSION "unknown"
#endif

typedef enum { TYPE_COUNTER, TYPE_GAUGE } metric_type;

/* How the samples of one metric are rendered. */
typedef enum {
    SHOW_SUM,      /* one sample, summed over cores */
    SHOW_PER_CORE, /* one sample per core, label core="N" */
    SHOW_PROCESS,  /* one process-wide value set by the control thread */
    SHOW_BUILD,    /* xfed_build_info{version="..."} 1 */
} metric_show;

typedef struct {
    const char *name; /* xfed_..., counters end in _total */
    metric_type type;
    metric_show show;
    bool ns_as_seconds; /* stored in nanoseconds, rendered in seconds */
    const char *help;
} metric_def;

#define C TYPE_COUNTER
#define G TYPE_GAUGE

/* THE metric table: add a metric here and its id in metrics.h. */
static const metric_def metric_defs[XF_METRIC_COUNT] = {
    [XF_METRIC_LOOP_ITERATIONS] = {"xfed_core_loop_iterations_total", C, SHOW_PER_CORE, false,
                                   "Event loop iterations of each core thread."},
    [XF_METRIC_CPU_NS] = {"xfed_core_cpu_seconds_total", C, SHOW_PER_CORE, true,
                          "CPU time used by each core thread."},
    [XF_METRIC_URING_ENTERS] = {"xfed_io_uring_enter_total", C, SHOW_SUM, false,
                                "io_uring_enter system calls."},
    [XF_METRIC_CQES] = {"xfed_io_uring_cqes_total", C, SHOW_SUM, false,
                        "io_uring completions processed."},
    [XF_METRIC_CONNS_ACCEPTED] = {"xfed_connections_accepted_total", C, SHOW_SUM, false,
                                  "Inbound TCP connections accepted."},
    [XF_METRIC_CONNS_OUTBOUND] = {"xfed_connections_outbound_total", C, SHOW_SUM, false,
                                  "Outbound TCP connections opened."},
    [XF_METRIC_CONNS_CLOSED] = {"xfed_connections_closed_total", C, SHOW_SUM, false,
                                "TCP connections closed."},
    [XF_METRIC_CONNS_OPEN] = {"xfed_connections_open", G, SHOW_SUM, false,
                              "TCP connections open now."},
    [XF_METRIC_BYTES_RECEIVED] = {"xfed_received_bytes_total", C, SHOW_SUM, false,
                                  "Bytes received from sockets."},
    [XF_METRIC_BYTES_SENT] = {"xfed_sent_bytes_total", C, SHOW_SUM, false,
                              "Bytes sent to sockets."},
    [XF_METRIC_SENDS] = {"xfed_sends_total", C, SHOW_SUM, false, "Send operations issued."},
    [XF_METRIC_RECV_ENOBUFS] = {"xfed_recv_enobufs_total", C, SHOW_SUM, false,
                                "Receives that found no provided buffer (ENOBUFS)."},
    [XF_METRIC_PBUFS_IN_USE] = {"xfed_provided_buffers_in_use", G, SHOW_SUM, false,
                                "Provided receive buffers held by connections now."},
    [XF_METRIC_OUTPUT_BYTES_QUEUED] = {"xfed_output_queued_bytes", G, SHOW_SUM, false,
                                       "Bytes queued for sending now."},
    [XF_METRIC_BACKPRESSURE_PAUSES] = {"xfed_backpressure_pauses_total", C, SHOW_SUM, false,
                                       "Times a stream stopped reading because output was full."},
    [XF_METRIC_TIMERS_FIRED] = {"xfed_timers_fired_total", C, SHOW_SUM, false, "Timers fired."},
    [XF_METRIC_HANDOFF_MESSAGES] = {"xfed_handoff_messages_total", C, SHOW_SUM, false,
                                    "Messages handed to another core."},
    [XF_METRIC_HANDOFF_DOORBELLS] = {"xfed_handoff_doorbells_total", C, SHOW_SUM, false,
                                     "Doorbells rung on another core's ring."},
    [XF_METRIC_HANDOFF_QUEUE_FULL] = {"xfed_handoff_queue_full_total", C, SHOW_SUM, false,
                                      "Handoffs refused because the target queue was full."},
    [XF_METRIC_VERIFY_REQUESTS] = {"xfed_verification_requests_total", C, SHOW_SUM, false,
                                   "Requests sent to the verification ring."},
    [XF_METRIC_VERIFY_RESPONSES] = {"xfed_verification_responses_total", C, SHOW_SUM, false,
                                    "Verdicts received from the verification ring."},
    [XF_METRIC_SNAPSHOT_SWAPS] = {"xfed_snapshot_swaps_total", C, SHOW_SUM, false,
                                  "Partner table snapshots picked up by core threads."},
    [XF_METRIC_FAMILY_ROWS_FULL] = {"xfed_metric_rows_refused_total", C, SHOW_SUM, false,
                                    "Labelled metric rows refused because the family was full."},
    [XF_METRIC_S2S_IN_OPEN] = {"xfed_s2s_inbound_streams_open", G, SHOW_SUM, false,
                               "Inbound server-to-server streams open."},
    [XF_METRIC_S2S_OUT_OPEN] = {"xfed_s2s_outbound_streams_open", G, SHOW_SUM, false,
                                "Outbound server-to-server streams open."},
    [XF_METRIC_DNS_QUERIES] = {"xfed_dns_queries_total", C, SHOW_SUM, false,
                               "DNS lookups started (SRV pairs count once)."},
    [XF_METRIC_DNS_FAILURES] = {"xfed_dns_failures_total", C, SHOW_SUM, false,
                                "DNS lookups that failed (timeout, refused, NXDOMAIN)."},
    [XF_METRIC_DNS_CACHE_HITS] = {"xfed_dns_cache_hits_total", C, SHOW_SUM, false,
                                  "DNS lookups answered from the cache."},
    [XF_METRIC_DNS_LATENCY_NS] = {"xfed_dns_latency_seconds_total", C, SHOW_SUM, true,
                                  "Summed latency of answered DNS lookups (divide by "
                                  "xfed_dns_answers_total for the mean)."},
    [XF_METRIC_DNS_ANSWERS] = {"xfed_dns_answers_total", C, SHOW_SUM, false,
                               "DNS lookups answered by a server (the latency sum's count)."},
    [XF_METRIC_INTERNAL_LINKS_UP] = {"xfed_internal_links_up", G, SHOW_SUM, false,
                                     "XEP-0114 component links to internal servers that are up."},
    [XF_METRIC_INVITES] = {"xfed_invites_stored", G, SHOW_SUM, false,
                           "Invites (local user, partner user) in the store (spec 6)."},
    [XF_METRIC_OUT_QUEUED] = {"xfed_outbound_queue_stanzas", G, SHOW_SUM, false,
                              "Stanzas waiting for an outbound stream to authenticate."},
    [XF_METRIC_SM_UNACKED] = {"xfed_sm_unacked_stanzas", G, SHOW_SUM, false,
                              "Stanzas sent on XEP-0198 streams, not yet acknowledged."},
    [XF_METRIC_PARTNERS_ACTIVE] = {"xfed_partners_active", G, SHOW_PROCESS, false,
                                   "Partners in the current partner table."},
    [XF_METRIC_PARTNERS_SKIPPED] = {"xfed_partners_skipped", G, SHOW_PROCESS, false,
                                    "Stored partners skipped: refused by validation or damaged."},
    [XF_METRIC_CONFIG_RELOADS] = {"xfed_config_reloads_total", C, SHOW_PROCESS, false,
                                  "Configuration and store reloads."},
    [XF_METRIC_CONFIG_ERRORS] = {"xfed_config_errors_total", C, SHOW_PROCESS, false,
                                 "Errors found while loading the configuration or store."},
    [XF_METRIC_SNAPSHOT_VERSION] = {"xfed_partner_snapshot_version", G, SHOW_PROCESS, false,
                                    "Version of the partner table snapshot published last."},
    [XF_METRIC_BUILD_INFO] = {"xfed_build_info", G, SHOW_BUILD, false,
                              "Build information; the value is always 1."},
};

#undef C
#undef G

typedef struct {
    const char *name; /* a counter: ends in _total */
    const char *help;
    uint32_t label_count;
    const char *labels[XF_FAMILY_LABELS_MAX];
    uint32_t rows_max;    /* per core */
    uint32_t arena_bytes; /* per core: label values of all rows */
} family_def;

/* THE family table: label-value rows are bounded by rows_max per core. */
static const family_def family_defs[XF_FAMILY_COUNT] = {
    [XF_FAMILY_STANZAS_ROUTED] = {"xfed_stanzas_routed_total",
                                  "Stanzas routed, by partner and direction (in/out).",
                                  2,
                                  {"partner", "direction"},
                                  XF_FAMILY_ROWS_MAX,
                                  XF_FAMILY_ROWS_MAX * 64},
    [XF_FAMILY_AUTHENTICATIONS] = {"xfed_authentications_total",
                                   "Stream authentications, by partner, method and result.",
                                   3,
                                   {"partner", "method", "result"},
                                   XF_FAMILY_ROWS_MAX,
                                   XF_FAMILY_ROWS_MAX * 80},
    [XF_FAMILY_STREAMS_CLOSED] = {"xfed_streams_closed_total",
                                  "Streams closed, by condition.",
                                  1,
                                  {"condition"},
                                  256,
                                  256 * 48},
    [XF_FAMILY_STREAMS_OPENED] = {"xfed_streams_opened_total",
                                  "Server-to-server streams opened, by direction.",
                                  1,
                                  {"direction"},
                                  4,
                                  4 * 8},
    [XF_FAMILY_REFUSALS] = {"xfed_stream_refusals_total",
                            "Streams and negotiation steps refused, by direction and reason.",
                            2,
                            {"direction", "reason"},
                            256,
                            256 * 64},
    [XF_FAMILY_TLS_HANDSHAKES] = {"xfed_tls_handshakes_total",
                                  "TLS handshakes, by direction, protocol version, cipher and "
                                  "result.",
                                  4,
                                  {"direction", "version", "cipher", "result"},
                                  256,
                                  256 * 96},
    [XF_FAMILY_BYTES_ROUTED] = {"xfed_bytes_routed_total",
                                "Stanza bytes routed, by partner and direction (in/out).",
                                2,
                                {"partner", "direction"},
                                XF_FAMILY_ROWS_MAX,
                                XF_FAMILY_ROWS_MAX * 64},
    [XF_FAMILY_STANZAS_REFUSED] = {"xfed_stanzas_refused_total",
                                   "Stanzas refused by policy or addressing, by partner and "
                                   "reason.",
                                   2,
                                   {"partner", "reason"},
                                   XF_FAMILY_ROWS_MAX,
                                   XF_FAMILY_ROWS_MAX * 64},
    [XF_FAMILY_BOUNCES] = {"xfed_bounces_total",
                           "Undeliverable stanzas answered with an error, by condition (dropped: "
                           "errors and results, which are never bounced).",
                           1,
                           {"condition"},
                           64,
                           64 * 48},
};

_Static_assert(XF_METRIC_CORE_COUNT < XF_METRIC_COUNT, "process-wide ids follow per-core ids");

/* Label values of the rows one core registered for one family. The core
 * writes a row, then publishes it by a release store of `count`; the admin
 * thread reads `count` with acquire and only rows below it. */
struct xf_family_rows {
    _Atomic uint32_t count;
    uint32_t rows_max;
    uint32_t arena_used;
    uint32_t arena_max;
    uint32_t index_mask; /* index has 2 * rows_max slots, a power of two */
    uint32_t *offset;    /* row -> start of its key in arena */
    uint16_t *length;    /* row -> key length: values each ending in '\0' */
    uint32_t *index;     /* open addressing: row + 1, 0 = empty */
    char *arena;
};

struct xf_metrics {
    _Alignas(XF_CACHE_LINE) _Atomic uint64_t process[XF_METRIC_COUNT - XF_METRIC_CORE_COUNT];
    unsigned ncores;
    xf_core_metrics *cores; /* ncores blocks */
};

static uint32_t fnv1a32(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static xf_family_rows *family_rows_new(const family_def *d)
{
    xf_family_rows *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->rows_max = d->rows_max;
    r->arena_max = d->arena_bytes;
    uint32_t slots = pow2_at_least(2 * d->rows_max);
    r->index_mask = slots - 1;
    r->offset = calloc(d->rows_max, sizeof *r->offset);
    r->length = calloc(d->rows_max, sizeof *r->length);
    r->index = calloc(slots, sizeof *r->index);
    /* calloc'd pages are not touched until rows are registered. */
    r->arena = calloc(1, d->arena_bytes);
    if (!r->offset || !r->length || !r->index || !r->arena) {
        free(r->offset), free(r->length), free(r->index), free(r->arena), free(r);
        return NULL;
    }
    return r;
}

static void family_rows_free(xf_family_rows *r)
{
    if (!r) return;
    free(r->offset);
    free(r->length);
    free(r->index);
    free(r->arena);
    free(r);
}

static void core_free(xf_core_metrics *cm)
{
    for (unsigned f = 0; f < XF_FAMILY_COUNT; f++) {
        free(cm->family_value[f]);
        family_rows_free(cm->family_rows[f]);
    }
}

static bool core_init(xf_core_metrics *cm)
{
    memset(cm, 0, sizeof *cm);
    for (unsigned f = 0; f < XF_FAMILY_COUNT; f++) {
        const family_def *d = &family_defs[f];
        assert(d->label_count >= 1 && d->label_count <= XF_FAMILY_LABELS_MAX);
        assert(d->rows_max >= 1 && d->rows_max <= XF_FAMILY_ROWS_MAX);
        cm->family_rows_max[f] = d->rows_max;
        cm->family_value[f] = calloc(d->rows_max, sizeof(_Atomic uint64_t));
        cm->family_rows[f] = family_rows_new(d);
        if (!cm->family_value[f] || !cm->family_rows[f]) return false;
    }
    return true;
}

xf_metrics *xf_metrics_new(unsigned ncores)
{
    assert(ncores >= 1);
    for (unsigned i = 0; i < XF_METRIC_COUNT; i++)
        assert(metric_defs[i].name != NULL);
    for (unsigned i = 0; i < XF_FAMILY_COUNT; i++)
        assert(family_defs[i].name != NULL);
    xf_metrics *m = aligned_alloc(XF_CACHE_LINE, sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->ncores = ncores;
    m->cores = aligned_alloc(XF_CACHE_LINE, sizeof(xf_core_metrics) * ncores);
    if (!m->cores) {
        free(m);
        return NULL;
    }
    memset(m->cores, 0, sizeof(xf_core_metrics) * ncores);
    for (unsigned c = 0; c < ncores; c++) {
        if (!core_init(&m->cores[c])) {
            xf_metrics_free(m);
            return NULL;
        }
    }
    atomic_store_explicit(&m->process[XF_METRIC_BUILD_INFO - XF_METRIC_CORE_COUNT], 1,
                          memory_order_relaxed);
    return m;
}

void xf_metrics_free(xf_metrics *m)
{
    if (!m) return;
    for (unsigned c = 0; c < m->ncores; c++)
        core_free(&m->cores[c]);
    free(m->cores);
    free(m);
}

unsigned xf_metrics_ncores(const xf_metrics *m)
{
    assert(m != NULL);
    return m->ncores;
}

xf_core_metrics *xf_metrics_core(xf_metrics *m, unsigned core)
{
    assert(m != NULL);
    assert(core < m->ncores);
    return &m->cores[core];
}

void xf_metrics_sample_cpu(xf_core_metrics *m)
{
    assert(m != NULL);
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return; /* keeps the last sample */
    assert(ts.tv_sec >= 0);
    xf_metric_set(m, XF_METRIC_CPU_NS, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

static _Atomic uint64_t *process_slot(xf_metrics *m, xf_metric id)
{
    assert((unsigned)id >= XF_METRIC_CORE_COUNT);
    assert((unsigned)id < XF_METRIC_COUNT);
    assert(id != XF_METRIC_BUILD_INFO);
    return &m->process[id - XF_METRIC_CORE_COUNT];
}

void xf_metrics_set(xf_metrics *m, xf_metric id, uint64_t v)
{
    atomic_store_explicit(process_slot(m, id), v, memory_order_relaxed);
}

void xf_metrics_add(xf_metrics *m, xf_metric id, uint64_t n)
{
    _Atomic uint64_t *p = process_slot(m, id);
    /* Single writer (the control thread): no locked RMW needed. */
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

uint64_t xf_metrics_get(const xf_metrics *m, xf_metric id)
{
    assert(m != NULL);
    assert((unsigned)id < XF_METRIC_COUNT);
    if ((unsigned)id >= XF_METRIC_CORE_COUNT)
        return atomic_load_explicit(&m->process[id - XF_METRIC_CORE_COUNT], memory_order_relaxed);
    uint64_t sum = 0;
    for (unsigned c = 0; c < m->ncores; c++)
        sum += atomic_load_explicit(&m->cores[c].value[id], memory_order_relaxed);
    return sum;
}

/* ---- label rows ---------------------------------------------------------- */

/* Builds the row key: each value, made safe for the text format, then '\0'.
 * Bytes outside printable ASCII (newline excepted, it is escaped) become '?',
 * so a label value is always valid UTF-8; doing it here, before rows are
 * compared, keeps two raw values that render alike in one row. */
static size_t family_key(const family_def *d, const char *const *values, char *key, size_t cap)
{
    size_t n = 0;
    for (uint32_t l = 0; l < d->label_count; l++) {
        assert(values[l] != NULL);
        size_t len = strnlen(values[l], XF_FAMILY_VALUE_MAX);
        if (len >= XF_FAMILY_VALUE_MAX) return 0;
        assert(n + len + 1 <= cap);
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)values[l][i];
            key[n++] = (ch == '\n' || (ch >= 0x20 && ch < 0x7f)) ? (char)ch : '?';
        }
        key[n++] = '\0';
    }
    return n;
}

static int32_t family_find(const xf_family_rows *r, const char *key, size_t n, uint32_t *slot)
{
    uint32_t i = fnv1a32(key, n) & r->index_mask;
    /* The index is at most half full, so the probe ends at an empty slot. */
    for (uint32_t probes = 0; probes <= r->index_mask; probes++) {
        uint32_t v = r->index[i];
        if (v == 0) {
            *slot = i;
            return XF_FAMILY_ROW_NONE;
        }
        uint32_t row = v - 1;
        if (r->length[row] == n && memcmp(r->arena + r->offset[row], key, n) == 0) return row;
        i = (i + 1) & r->index_mask;
    }
    assert(!"family index full");
    return XF_FAMILY_ROW_NONE;
}

int32_t xf_family_row(xf_core_metrics *m, xf_family f, const char *const *values)
{
    assert(m != NULL);
    assert((unsigned)f < XF_FAMILY_COUNT);
    const family_def *d = &family_defs[f];
    xf_family_rows *r = m->family_rows[f];
    char key[XF_FAMILY_LABELS_MAX * XF_FAMILY_VALUE_MAX];
    size_t n = family_key(d, values, key, sizeof key);
    if (n == 0) return XF_FAMILY_ROW_NONE;
    uint32_t slot = 0;
    int32_t row = family_find(r, key, n, &slot);
    if (row != XF_FAMILY_ROW_NONE) return row;

    /* Only this core writes `count`, so a relaxed load reads its own value. */
    uint32_t count = atomic_load_explicit(&r->count, memory_order_relaxed);
    if (count >= r->rows_max || n > r->arena_max - r->arena_used) {
        xf_metric_inc(m, XF_METRIC_FAMILY_ROWS_FULL, 1);
        return XF_FAMILY_ROW_NONE;
    }
    memcpy(r->arena + r->arena_used, key, n);
    r->offset[count] = r->arena_used;
    r->length[count] = (uint16_t)n;
    r->arena_used += (uint32_t)n;
    r->index[slot] = count + 1;
    /* Publishes the label values to the admin thread (acquire in render). */
    atomic_store_explicit(&r->count, count + 1, memory_order_release);
    return (int32_t)count;
}

/* ---- rendering ----------------------------------------------------------- */

/* Output sink: a fixed buffer (truncates, but counts the full length) or a
 * growing heap buffer. */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
    bool grow;
    bool failed; /* allocation failed */
} sink;

static void put(sink *s, const char *p, size_t n)
{
    if (s->grow && !s->failed && s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) {
            s->failed = true;
        } else {
            s->buf = nb;
            s->cap = cap;
        }
    }
    if (s->len < s->cap) {
        size_t room = s->cap - 1 - s->len; /* keep one byte for the NUL */
        memcpy(s->buf + s->len, p, n < room ? n : room);
    }
    s->len += n;
}

static void puts_(sink *s, const char *p)
{
    put(s, p, strlen(p));
}

/* Escapes per the text format: label values escape \ " and newline; HELP
 * text escapes \ and newline only. */
static void put_escaped(sink *s, const char *p, size_t n, bool quote)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = NULL;
        if (p[i] == '\\')
            esc = "\\\\";
        else if (p[i] == '\n')
            esc = "\\n";
        else if (quote && p[i] == '"')
            esc = "\\\"";
        if (!esc) continue;
        put(s, p + start, i - start);
        puts_(s, esc);
        start = i + 1;
    }
    put(s, p + start, n - start);
}

static void put_header(sink *s, const char *name, const char *help, metric_type type)
{
    puts_(s, "# HELP ");
    puts_(s, name);
    puts_(s, " ");
    put_escaped(s, help, strlen(help), false);
    puts_(s, "\n# TYPE ");
    puts_(s, name);
    puts_(s, type == TYPE_COUNTER ? " counter\n" : " gauge\n");
}

static void put_value(sink *s, const metric_def *d, uint64_t v)
{
    char num[48];
    if (d->ns_as_seconds)
        snprintf(num, sizeof num, " %" PRIu64 ".%09" PRIu64 "\n", v / 1000000000u, v % 1000000000u);
    else if (d->type == TYPE_GAUGE)
        snprintf(num, sizeof num, " %" PRId64 "\n", (int64_t)v); /* deltas may be negative */
    else
        snprintf(num, sizeof num, " %" PRIu64 "\n", v);
    puts_(s, num);
}

static void render_metric(const xf_metrics *m, sink *s, unsigned id)
{
    const metric_def *d = &metric_defs[id];
    put_header(s, d->name, d->help, d->type);
    if (d->show == SHOW_PER_CORE) {
        assert(id < XF_METRIC_CORE_COUNT);
        for (unsigned c = 0; c < m->ncores; c++) {
            char label[32];
            snprintf(label, sizeof label, "{core=\"%u\"}", c);
            puts_(s, d->name);
            puts_(s, label);
            put_value(s, d, atomic_load_explicit(&m->cores[c].value[id], memory_order_relaxed));
        }
        return;
    }
    puts_(s, d->name);
    if (d->show == SHOW_BUILD) {
        puts_(s, "{version=\"");
        put_escaped(s, XFED_VERSION, strlen(XFED_VERSION), true);
        puts_(s, "\"}");
    }
    put_value(s, d, xf_metrics_get(m, (xf_metric)id));
}

typedef struct {
    const char *key;
    uint32_t len;
    uint64_t value;
} row_sample;

static int row_sample_cmp(const void *a, const void *b)
{
    const row_sample *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Collects every published row of family f from every core. */
static size_t family_collect(const xf_metrics *m, unsigned f, row_sample *out)
{
    size_t n = 0;
    for (unsigned c = 0; c < m->ncores; c++) {
        const xf_core_metrics *cm = &m->cores[c];
        const xf_family_rows *r = cm->family_rows[f];
        uint32_t count = atomic_load_explicit(&r->count, memory_order_acquire);
        assert(count <= r->rows_max);
        for (uint32_t i = 0; i < count; i++) {
            out[n].key = r->arena + r->offset[i];
            out[n].len = r->length[i];
            out[n].value = atomic_load_explicit(&cm->family_value[f][i], memory_order_relaxed);
            n++;
        }
    }
    return n;
}

static void put_row(sink *s, const family_def *d, const row_sample *row, uint64_t value)
{
    const char *p = row->key;
    puts_(s, d->name);
    for (uint32_t l = 0; l < d->label_count; l++) {
        size_t len = strlen(p);
        puts_(s, l == 0 ? "{" : ",");
        puts_(s, d->labels[l]);
        puts_(s, "=\"");
        put_escaped(s, p, len, true);
        puts_(s, "\"");
        p += len + 1;
    }
    assert(p == row->key + row->len);
    char num[32];
    snprintf(num, sizeof num, "} %" PRIu64 "\n", value);
    puts_(s, num);
}

/* Rows with equal label values on different cores render as one sample. */
static bool render_family(const xf_metrics *m, sink *s, unsigned f)
{
    const family_def *d = &family_defs[f];
    row_sample *rows = malloc(sizeof *rows * d->rows_max * m->ncores);
    if (!rows) return false;
    size_t n = family_collect(m, f, rows);
    if (n > 0) {
        qsort(rows, n, sizeof *rows, row_sample_cmp);
        put_header(s, d->name, d->help, TYPE_COUNTER);
        for (size_t i = 0; i < n;) {
            uint64_t sum = 0;
            size_t j = i;
            while (j < n && row_sample_cmp(&rows[i], &rows[j]) == 0)
                sum += rows[j++].value;
            put_row(s, d, &rows[i], sum);
            i = j;
        }
    }
    free(rows);
    return true;
}

static bool render(const xf_metrics *m, sink *s)
{
    assert(m != NULL);
    for (unsigned id = 0; id < XF_METRIC_COUNT; id++)
        render_metric(m, s, id);
    for (unsigned f = 0; f < XF_FAMILY_COUNT; f++)
        if (!render_family(m, s, f)) return false;
    return !s->failed;
}

size_t xf_metrics_render(const xf_metrics *m, char *buf, size_t cap)
{
    sink s = {buf, cap, 0, false, false};
    render(m, &s);
    if (cap > 0) buf[s.len < cap ? s.len : cap - 1] = '\0';
    return s.len;
}

char *xf_metrics_render_alloc(const xf_metrics *m, size_t *len)
{
    sink s = {NULL, 0, 0, true, false};
    if (!render(m, &s) || s.buf == NULL) {
        free(s.buf);
        return NULL;
    }
    assert(s.len < s.cap);
    s.buf[s.len] = '\0';
    if (len) *len = s.len;
    return s.buf;
}
