/* Metrics: per-core counters written by several threads while another renders
 * (the tsan build checks the single-writer rule), labelled families merged
 * across cores, label escaping, bounded rows, and the shape of the text:
 * HELP and TYPE once per family, no duplicate series. */
#include "../check.h"
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define CORES      4
#define ITERATIONS 200000

typedef struct {
    xf_metrics *metrics;
    unsigned core;
} writer_arg;

static _Atomic bool writers_done;
static _Atomic unsigned thread_failures; /* CHECK is not thread-safe: threads count here */

/* One core thread: counters, a gauge up and down, one family row shared by
 * every core and one of its own. */
static void *writer(void *p)
{
    writer_arg *a = p;
    xf_core_metrics *cm = xf_metrics_core(a->metrics, a->core);
    char own[32];
    snprintf(own, sizeof own, "core%u.example", a->core);
    const char *shared_values[] = {"fabrikam.example", "in"};
    const char *own_values[] = {own, "out"};
    int32_t shared = xf_family_row(cm, XF_FAMILY_STANZAS_ROUTED, shared_values);
    int32_t mine = xf_family_row(cm, XF_FAMILY_STANZAS_ROUTED, own_values);
    for (unsigned i = 0; i < ITERATIONS; i++) {
        xf_metric_inc(cm, XF_METRIC_LOOP_ITERATIONS, 1);
        xf_metric_inc(cm, XF_METRIC_BYTES_RECEIVED, 3);
        xf_metric_add(cm, XF_METRIC_CONNS_OPEN, +1);
        xf_metric_add(cm, XF_METRIC_CONNS_OPEN, -1);
        xf_family_inc(cm, XF_FAMILY_STANZAS_ROUTED, shared, 1);
        xf_family_inc(cm, XF_FAMILY_STANZAS_ROUTED, mine, 2);
        /* A core re-registering a row gets the same one back. */
        if (i % 50000 == 0 && xf_family_row(cm, XF_FAMILY_STANZAS_ROUTED, shared_values) != shared)
            atomic_fetch_add(&thread_failures, 1);
    }
    xf_metric_add(cm, XF_METRIC_CONNS_OPEN, (int64_t)a->core); /* 0+1+2+3 = 6 open */
    xf_metric_set(cm, XF_METRIC_CPU_NS, 1500000000ull + a->core);
    return NULL;
}

/* The admin thread: renders while the cores write. */
static void *renderer(void *p)
{
    xf_metrics *m = p;
    unsigned renders = 0;
    while (!atomic_load(&writers_done) || renders < 3) {
        size_t len = 0;
        char *text = xf_metrics_render_alloc(m, &len);
        if (text == NULL || strlen(text) != len) atomic_fetch_add(&thread_failures, 1);
        free(text);
        renders++;
    }
    return NULL;
}

/* The identity of a text line: "# HELP name" / "# TYPE name", or a sample's
 * name and labels (no value in this test contains '}'). */
static size_t line_identity(const char *p, size_t len)
{
    if (p[0] == '#') {
        const char *third = len > 7 ? memchr(p + 7, ' ', len - 7) : NULL;
        return third ? (size_t)(third - p) : len;
    }
    const char *brace = memchr(p, '}', len);
    if (brace) return (size_t)(brace - p) + 1;
    const char *space = memchr(p, ' ', len);
    return space ? (size_t)(space - p) : len;
}

/* Every sample appears once; every HELP and TYPE line once per family. */
static void check_unique_lines(const char *text)
{
    size_t cap = 1024, n = 0;
    char **seen = malloc(cap * sizeof *seen);
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        CHECK(nl != NULL);
        if (!nl) break;
        size_t id_len = line_identity(p, (size_t)(nl - p));
        for (size_t i = 0; i < n; i++) {
            if (strlen(seen[i]) == id_len && memcmp(seen[i], p, id_len) == 0) {
                fprintf(stderr, "duplicate: %.*s\n", (int)id_len, p);
                CHECK(false);
            }
        }
        if (n == cap) seen = realloc(seen, (cap *= 2) * sizeof *seen);
        seen[n++] = strndup(p, id_len);
        p = nl + 1;
    }
    CHECK(n > 0);
    for (size_t i = 0; i < n; i++)
        free(seen[i]);
    free(seen);
}

static void test_threads(void)
{
    xf_metrics *m = xf_metrics_new(CORES);
    CHECK(m != NULL);
    CHECK(xf_metrics_ncores(m) == CORES);
    pthread_t w[CORES], r;
    writer_arg args[CORES];
    atomic_store(&writers_done, false);
    pthread_create(&r, NULL, renderer, m);
    for (unsigned c = 0; c < CORES; c++) {
        args[c] = (writer_arg){m, c};
        pthread_create(&w[c], NULL, writer, &args[c]);
    }
    for (unsigned c = 0; c < CORES; c++)
        pthread_join(w[c], NULL);
    atomic_store(&writers_done, true);
    pthread_join(r, NULL);
    CHECK(atomic_load(&thread_failures) == 0);

    CHECK(xf_metrics_get(m, XF_METRIC_LOOP_ITERATIONS) == (uint64_t)CORES * ITERATIONS);
    CHECK(xf_metrics_get(m, XF_METRIC_BYTES_RECEIVED) == (uint64_t)CORES * ITERATIONS * 3);
    CHECK(xf_metrics_get(m, XF_METRIC_CONNS_OPEN) == 6);

    xf_metrics_set(m, XF_METRIC_PARTNERS_ACTIVE, 12);
    xf_metrics_set(m, XF_METRIC_PARTNERS_SKIPPED, 1);
    xf_metrics_add(m, XF_METRIC_CONFIG_RELOADS, 2);
    xf_metrics_add(m, XF_METRIC_CONFIG_RELOADS, 1);
    xf_metrics_set(m, XF_METRIC_SNAPSHOT_VERSION, 42);
    CHECK(xf_metrics_get(m, XF_METRIC_CONFIG_RELOADS) == 3);

    size_t len = 0;
    char *text = xf_metrics_render_alloc(m, &len);
    CHECK(text != NULL);
    char want[160];
    snprintf(want, sizeof want, "\nxfed_core_loop_iterations_total{core=\"3\"} %u\n", ITERATIONS);
    CHECK(strstr(text, want) != NULL);
    CHECK(strstr(text, "\nxfed_core_cpu_seconds_total{core=\"2\"} 1.500000002\n") != NULL);
    CHECK(strstr(text, "# TYPE xfed_core_cpu_seconds_total counter\n") != NULL);
    CHECK(strstr(text, "\nxfed_connections_open 6\n") != NULL);
    CHECK(strstr(text, "# TYPE xfed_connections_open gauge\n") != NULL);
    CHECK(strstr(text, "\nxfed_partners_active 12\n") != NULL);
    CHECK(strstr(text, "\nxfed_config_reloads_total 3\n") != NULL);
    CHECK(strstr(text, "\nxfed_partner_snapshot_version 42\n") != NULL);
    CHECK(strstr(text, "\nxfed_build_info{version=\"") != NULL);
    /* The shared row is summed over the four cores; own rows stay apart. */
    snprintf(want, sizeof want,
             "\nxfed_stanzas_routed_total{partner=\"fabrikam.example\",direction=\"in\"} %u\n",
             CORES * ITERATIONS);
    CHECK(strstr(text, want) != NULL);
    snprintf(want, sizeof want,
             "\nxfed_stanzas_routed_total{partner=\"core1.example\",direction=\"out\"} %u\n",
             2 * ITERATIONS);
    CHECK(strstr(text, want) != NULL);
    /* Families without rows are not rendered at all. */
    CHECK(strstr(text, "xfed_authentications_total") == NULL);
    check_unique_lines(text);

    /* The fixed-buffer form truncates like snprintf and reports the full length. */
    char small[100];
    size_t full = xf_metrics_render(m, small, sizeof small);
    CHECK(full == len);
    CHECK(strlen(small) == sizeof small - 1);
    CHECK(memcmp(small, text, sizeof small - 1) == 0);
    free(text);
    xf_metrics_free(m);
}

static void test_escaping_and_bounds(void)
{
    xf_metrics *m = xf_metrics_new(2);
    xf_core_metrics *c0 = xf_metrics_core(m, 0);
    xf_core_metrics *c1 = xf_metrics_core(m, 1);
    const char *odd[] = {"a\"b\\c\nd", "sasl_tls", "ok"};
    int32_t row = xf_family_row(c0, XF_FAMILY_AUTHENTICATIONS, odd);
    CHECK(row == 0);
    xf_family_inc(c0, XF_FAMILY_AUTHENTICATIONS, row, 5);
    /* Bytes outside printable ASCII become '?', so two such values share a row. */
    const char *bin1[] = {"x\x01y\xff", "dialback_tcp", "failure"};
    const char *bin2[] = {"x\x02y\xfe", "dialback_tcp", "failure"};
    int32_t b1 = xf_family_row(c1, XF_FAMILY_AUTHENTICATIONS, bin1);
    CHECK(b1 >= 0);
    CHECK(xf_family_row(c1, XF_FAMILY_AUTHENTICATIONS, bin2) == b1);
    xf_family_inc(c1, XF_FAMILY_AUTHENTICATIONS, b1, 1);
    /* A value of XF_FAMILY_VALUE_MAX bytes or more is refused. */
    char longv[XF_FAMILY_VALUE_MAX + 1];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    const char *toolong[] = {longv, "m", "r"};
    CHECK(xf_family_row(c1, XF_FAMILY_AUTHENTICATIONS, toolong) == XF_FAMILY_ROW_NONE);
    xf_family_inc(c1, XF_FAMILY_AUTHENTICATIONS, XF_FAMILY_ROW_NONE, 1); /* a no-op */

    /* Rows are bounded per core: the streams-closed family holds 256. */
    unsigned kept = 0;
    for (unsigned i = 0; i < 300; i++) {
        char cond[32];
        snprintf(cond, sizeof cond, "condition-%u", i);
        const char *v[] = {cond};
        int32_t r = xf_family_row(c1, XF_FAMILY_STREAMS_CLOSED, v);
        if (r != XF_FAMILY_ROW_NONE) kept++;
        xf_family_inc(c1, XF_FAMILY_STREAMS_CLOSED, r, 1);
    }
    CHECK(kept == 256);
    CHECK(xf_metrics_get(m, XF_METRIC_FAMILY_ROWS_FULL) == 44);

    char *text = xf_metrics_render_alloc(m, NULL);
    CHECK(text != NULL);
    CHECK(strstr(text,
                 "\nxfed_authentications_total{partner=\"a\\\"b\\\\c\\nd\",method=\"sasl_tls\","
                 "result=\"ok\"} 5\n") != NULL);
    CHECK(strstr(text, "{partner=\"x?y?\",method=\"dialback_tcp\",result=\"failure\"} 1\n") !=
          NULL);
    CHECK(strstr(text, "\nxfed_streams_closed_total{condition=\"condition-255\"} 1\n") != NULL);
    CHECK(strstr(text, "condition-256") == NULL);
    CHECK(strstr(text, "\nxfed_metric_rows_refused_total 44\n") != NULL);
    check_unique_lines(text);
    free(text);
    xf_metrics_free(m);
}

/* A core samples its own thread CPU time; it only grows. */
static void test_cpu_sample(void)
{
    xf_metrics *m = xf_metrics_new(1);
    xf_core_metrics *cm = xf_metrics_core(m, 0);
    volatile uint64_t spin = 0;
    for (unsigned i = 0; i < 5000000; i++)
        spin += i;
    xf_metrics_sample_cpu(cm);
    uint64_t first = xf_metrics_get(m, XF_METRIC_CPU_NS);
    CHECK(first > 0);
    for (unsigned i = 0; i < 5000000; i++)
        spin += i;
    xf_metrics_sample_cpu(cm);
    CHECK(xf_metrics_get(m, XF_METRIC_CPU_NS) >= first);
    CHECK(spin > 0);
    xf_metrics_free(m);
}

int main(void)
{
    test_cpu_sample();
    test_threads();
    test_escaping_and_bounds();
    return check_report("test_metrics");
}
