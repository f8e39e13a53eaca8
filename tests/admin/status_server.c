/* Test helper for test_api.py: the admin listener with the API over a fixed
 * partner snapshot and a per-partner status table filled with known values,
 * so /api/status can be checked with values the s2s layer will write later.
 *
 *   xf_test_status_server --store PATH --token-file PATH
 * Prints "port N", then exits on "quit" or EOF on stdin. */
#include "admin.h"
#include "metrics.h"
#include "partner.h"
#include "pstatus.h"
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *store = NULL, *token = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--store") == 0) store = argv[i + 1];
        if (strcmp(argv[i], "--token-file") == 0) token = argv[i + 1];
    }
    if (!store || !token) {
        fprintf(stderr, "usage: xf_test_status_server --store PATH --token-file PATH\n");
        return 2;
    }
    static xf_partner p[2];
    xf_partner_defaults(&p[0], "fabrikam.example");
    xf_partner_defaults(&p[1], "wingtip.example");
    p[1].sasl = XF_NEG_NOT_SUPPORTED; /* row 13: dialback over TLS only */
    xf_snapshot *snap = xf_snapshot_build(p, 2, 42);
    xf_rcu *rcu = xf_rcu_new(1, NULL, NULL);
    xf_pstatus *ps = xf_pstatus_new(2, 16);
    xf_metrics *m = xf_metrics_new(2);
    if (!snap || !rcu || !ps || !m) return 1;
    xf_rcu_publish(rcu, snap);
    xf_metrics_set(m, XF_METRIC_PARTNERS_SKIPPED, 3);
    /* fabrikam: streams on two cores, SASL in use, one failure. */
    int32_t a = xf_pstatus_row(ps, 0, "fabrikam.example");
    int32_t b = xf_pstatus_row(ps, 1, "fabrikam.example");
    xf_pstatus_stream(ps, 0, a, XF_PSTATUS_OUT, 1);
    xf_pstatus_stream(ps, 1, b, XF_PSTATUS_IN, 2);
    xf_pstatus_auth_ok(ps, 0, a, XF_METHOD_SASL_TLS, 1700000000);
    xf_pstatus_auth_failed(ps, 1, b, "remote-server-timeout: no answer from xmpp.fabrikam.example",
                           1700000100);
    /* wingtip has no row: nothing happened yet. */
    xf_admin_api api = {.store_path = store, .token_file = token, .rcu = rcu, .status = ps};
    char err[1024];
    xf_admin *ad = xf_admin_start_api("127.0.0.1", 0, m, &api, err, sizeof err);
    if (!ad) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    xf_admin_set_health(ad, XF_HEALTH_READY);
    printf("port %u\n", xf_admin_port(ad));
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin) && strncmp(line, "quit", 4) != 0) {
    }
    xf_admin_stop(ad);
    xf_rcu_free(rcu);
    xf_pstatus_free(ps);
    xf_metrics_free(m);
    return 0;
}
