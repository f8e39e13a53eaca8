/* Test helper for test_admin.py: starts the admin listener over metrics filled
 * with sample values (every metric, family rows with odd label values), prints
 * "port N", then obeys lines on stdin: ready | starting | stopping | quit.
 *
 *   xf_test_admin_server [--host ADDR] [--port N]
 * Exit status: 0 after quit or EOF, 1 when the listener cannot start (the
 * reason on stderr), 2 on a usage error. */
#include "admin.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(xf_metrics *m)
{
    for (unsigned c = 0; c < xf_metrics_ncores(m); c++) {
        xf_core_metrics *cm = xf_metrics_core(m, c);
        for (unsigned id = 0; id < XF_METRIC_CORE_COUNT; id++)
            xf_metric_inc(cm, (xf_metric)id, 10 * (id + 1) + c);
        xf_metric_set(cm, XF_METRIC_CPU_NS, 2500000000ull + c);
        const char *routed[] = {"fabrikam.example", c ? "out" : "in"};
        xf_family_inc(cm, XF_FAMILY_STANZAS_ROUTED,
                      xf_family_row(cm, XF_FAMILY_STANZAS_ROUTED, routed), 7);
        const char *odd[] = {"quote\"back\\slash\nnewline", "sasl_tls", "ok"};
        xf_family_inc(cm, XF_FAMILY_AUTHENTICATIONS,
                      xf_family_row(cm, XF_FAMILY_AUTHENTICATIONS, odd), 1);
        const char *closed[] = {"policy-violation"};
        xf_family_inc(cm, XF_FAMILY_STREAMS_CLOSED,
                      xf_family_row(cm, XF_FAMILY_STREAMS_CLOSED, closed), 2);
    }
    xf_metrics_set(m, XF_METRIC_PARTNERS_ACTIVE, 3);
    xf_metrics_set(m, XF_METRIC_PARTNERS_SKIPPED, 1);
    xf_metrics_add(m, XF_METRIC_CONFIG_RELOADS, 4);
    xf_metrics_add(m, XF_METRIC_CONFIG_ERRORS, 1);
    xf_metrics_set(m, XF_METRIC_SNAPSHOT_VERSION, 9);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    unsigned long port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: xf_test_admin_server [--host ADDR] [--port N]\n");
            return 2;
        }
    }
    xf_metrics *m = xf_metrics_new(2);
    if (!m) return 1;
    fill(m);
    char err[512];
    xf_admin *a = xf_admin_start(host, (uint16_t)port, m, err, sizeof err);
    if (!a) {
        fprintf(stderr, "%s\n", err);
        xf_metrics_free(m);
        return 1;
    }
    printf("port %u\n", xf_admin_port(a));
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "ready", 5) == 0)
            xf_admin_set_health(a, XF_HEALTH_READY);
        else if (strncmp(line, "starting", 8) == 0)
            xf_admin_set_health(a, XF_HEALTH_STARTING);
        else if (strncmp(line, "stopping", 8) == 0)
            xf_admin_set_health(a, XF_HEALTH_STOPPING);
        else if (strncmp(line, "quit", 4) == 0)
            break;
        printf("ok\n");
        fflush(stdout);
    }
    xf_admin_stop(a);
    xf_metrics_free(m);
    return 0;
}
