/* xfed: the daemon's control thread.
 *
 * It validates the config and the store, starts the core threads (core/rt.h)
 * and the admin listener, then waits for signals. Once a second it asks the
 * store whether another process committed (PRAGMA data_version); if so it
 * builds a new partner snapshot and publishes it RCU-style, so the cores pick
 * it up without locks (spec §2: within 2 s). SIGHUP re-reads the config too;
 * SIGTERM/SIGINT drain the streams and exit.
 *
 * `xfed --relay LISTEN=TARGET` runs the raw byte relay on the same runtime:
 * the baseline of the router benchmark.
 */
#include "admin.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "partner.h"
#include "pstatus.h"
#include "relay.h"
#include "s2s.h"
#include "rt.h"
#include "snapshot.h"
#include "store.h"
#include "tls_cert.h"
#include "tls_session.h"
#include "verify.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint32_t partners_active;
    uint32_t partners_skipped; /* refused by validation: never used for traffic */
    uint32_t errors;           /* config, certificate or store problems */
} load_stats;

/* Validates the config, certificates and gateway settings, and builds a
 * partner snapshot (which logs each skipped partner). Returns the snapshot,
 * or NULL on errors that must stop a start. */
static xf_snapshot *load_all(const char *config_path, xf_config *cfg, xf_store **store,
                             load_stats *st, uint64_t version)
{
    char err[1024];
    memset(st, 0, sizeof *st);
    if (!xf_config_load(config_path, cfg, err, sizeof err)) {
        xf_log(XF_LOG_ERROR, "config: %s", err);
        st->errors++;
        return NULL;
    }
    for (uint32_t i = 0; i < cfg->local_count; i++) {
        if (!xf_tls_check_keypair(cfg->locals[i].cert, cfg->locals[i].key, err, sizeof err)) {
            xf_log(XF_LOG_ERROR, "config: [local %s]: %s", cfg->locals[i].domain, err);
            st->errors++;
        }
    }
    if (cfg->local_count == 0)
        xf_log(XF_LOG_WARN, "config: no [local DOMAIN] section: xfed federates no domain");

    if (*store == NULL && xf_store_open(cfg->store, store, err, sizeof err) != XF_STORE_OK) {
        xf_log(XF_LOG_ERROR, "store: %s", err);
        st->errors++;
        return NULL;
    }
    xf_gateway g;
    if (xf_store_gateway_get(*store, &g) != XF_STORE_OK) {
        xf_log(XF_LOG_ERROR, "store: %s", xf_store_errmsg(*store));
        st->errors++;
        return NULL;
    }
    xf_verdict v;
    xf_verdict_init(&v);
    xf_gateway_check(&g, &v);
    for (uint32_t i = 0; i < v.count; i++)
        xf_log(v.msg_cls[i] == XF_COMMIT_REFUSED ? XF_LOG_ERROR : XF_LOG_WARN, "gateway: %s",
               v.msg[i]);
    if (v.cls == XF_COMMIT_REFUSED) st->errors++;

    const char *locals[XF_LOCALS_MAX];
    size_t nlocals = xf_config_local_names(cfg, locals);
    xf_snapshot *snap = xf_snapshot_load(*store, locals, nlocals, version, &st->partners_active,
                                         &st->partners_skipped);
    if (!snap) st->errors++;
    if (snap) xf_snapshot_set_gateway(snap, &g);
    if (st->errors && snap) {
        xf_snapshot_free(snap);
        snap = NULL;
    }
    return snap;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: xfed --config FILE [--check] [--debug]\n"
               "       xfed --relay LISTEN=TARGET [--threads N] [--admin HOST:PORT]\n"
               "            [--recv-buffers N]\n"
               "  --config FILE  the INI config (see examples/xfed.conf)\n"
               "  --check        validate the config, certificates and store, then exit\n"
               "                 (0 = valid, 1 = errors, each printed with its cause)\n"
               "  --relay L=T    raw byte relay from L to T (HOST:PORT each): the runtime\n"
               "                 without parsing, the baseline of the benchmark\n"
               "  --debug        log debug lines\n");
}

static void free_snapshot(xf_snapshot *s, void *arg)
{
    xf_snapshot_free(s);
}

/* Per-thread set-up of the runtime's threads: the verification thread gets
 * its request table. */
static void shard_start(xf_shard *s)
{
    if (xf_shard_id(s) == xf_rt_verify_id(xf_shard_rt(s))) xf_verify_start(s);
}

static void shard_stop(xf_shard *s)
{
    if (xf_shard_id(s) == xf_rt_verify_id(xf_shard_rt(s))) xf_verify_stop(s);
}

static void runtime_hooks(xf_rt_config *rc)
{
    rc->on_verify_msg = xf_verify_on_msg;
    rc->on_shard_start = shard_start;
    rc->on_shard_stop = shard_stop;
}

static sigset_t control_signals(void)
{
    /* Signals are taken synchronously by the control thread; every thread
     * started later inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    return sigs;
}

/* api may be NULL (the relay): the admin API then answers 403. */
static xf_admin *start_admin(const xf_hostport *hp, xf_metrics *m, const xf_admin_api *api)
{
    char err[1024];
    xf_admin *a = xf_admin_start_api(hp->host, hp->port, m, api, err, sizeof err);
    if (!a) xf_log(XF_LOG_ERROR, "admin listener: %s", err);
    return a;
}

static int run_relay(const char *spec, uint32_t threads, const char *admin, uint32_t bufs)
{
    static xf_relay relay;
    char listen[300];
    const char *eq = strchr(spec, '=');
    struct sockaddr_storage la;
    socklen_t llen;
    if (!eq || (size_t)(eq - spec) >= sizeof listen) {
        fprintf(stderr, "xfed: --relay wants LISTEN=TARGET, e.g. 127.0.0.1:6000=127.0.0.1:7000\n");
        return 2;
    }
    snprintf(listen, sizeof listen, "%.*s", (int)(eq - spec), spec);
    if (!xf_sockaddr_parse(listen, &la, &llen) ||
        !xf_sockaddr_parse(eq + 1, &relay.target, &relay.target_len)) {
        fprintf(stderr, "xfed: --relay: addresses must be numeric HOST:PORT\n");
        return 2;
    }
    relay.connect_timeout_ms = 10000;
    sigset_t sigs = control_signals();
    xf_rt_config rc;
    xf_rt_config_defaults(&rc);
    if (threads) rc.shards = threads;
    if (bufs) rc.recv_buffers = bufs;
    runtime_hooks(&rc);
    xf_relay_listen(&rc, &relay, (struct sockaddr *)&la, llen);
    xf_metrics *m = xf_metrics_new(rc.shards + 1);
    rc.metrics = m;
    xf_admin *a = NULL;
    if (admin) {
        xf_hostport hp;
        if (!xf_hostport_parse(admin, 5280, &hp)) {
            fprintf(stderr, "xfed: --admin wants HOST:PORT\n");
            return 2;
        }
        if (!(a = start_admin(&hp, m, NULL))) return 1;
    }
    char err[512];
    xf_rt *rt = xf_rt_start(&rc, err, sizeof err);
    if (!rt) {
        xf_log(XF_LOG_ERROR, "relay: %s", err);
        xf_admin_stop(a);
        return 1;
    }
    if (a) xf_admin_set_health(a, XF_HEALTH_READY);
    xf_log(XF_LOG_INFO, "relay started: %s -> %s, %u threads", listen, eq + 1, rc.shards);
    int sig;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
    }
    xf_log(XF_LOG_INFO, "signal %d: draining", sig);
    if (a) xf_admin_set_health(a, XF_HEALTH_STOPPING);
    xf_rt_stop(rt);
    xf_admin_stop(a);
    xf_metrics_free(m);
    xf_log(XF_LOG_INFO, "relay stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"relay", required_argument, NULL, 'r'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"admin", required_argument, NULL, 'a'},
                                         {"recv-buffers", required_argument, NULL, 'b'},
                                         {"debug", no_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *relay = NULL, *admin = NULL;
    uint32_t threads = 0, bufs = 0;
    bool check_only = false;
    for (int c; (c = getopt_long(argc, argv, "c:kr:t:a:b:dh", opts, NULL)) != -1;) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'k': check_only = true; break;
        case 'r': relay = optarg; break;
        case 't': threads = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'a': admin = optarg; break;
        case 'b': bufs = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'd': xf_log_set_level(XF_LOG_DEBUG); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || (!config_path && !relay) || (config_path && relay) ||
        threads >= XF_SHARDS_MAX || (bufs && (bufs & (bufs - 1)))) {
        usage(stderr);
        return 2;
    }
    if (relay) return run_relay(relay, threads, admin, bufs);
    xf_tls_global_init();
    sigset_t sigs = control_signals();

    static xf_config cfg;
    xf_store *store = NULL;
    load_stats st;
    uint64_t version = 1;
    xf_snapshot *snap = load_all(config_path, &cfg, &store, &st, version);
    if (check_only) {
        bool ok = snap && st.partners_skipped == 0;
        if (ok)
            printf("%s: OK: %u local domains, %u partners, store %s\n", config_path,
                   cfg.local_count, st.partners_active, cfg.store);
        else
            printf("%s: FAILED: %u errors, %u partners refused by validation\n", config_path,
                   st.errors, st.partners_skipped);
        xf_snapshot_free(snap);
        xf_store_close(store);
        return ok ? 0 : 1;
    }
    if (!snap) {
        xf_log(XF_LOG_ERROR, "not starting: fix the errors above (xfed --config %s --check)",
               config_path);
        xf_store_close(store);
        return 1;
    }

    xf_rt_config rc;
    xf_rt_config_defaults(&rc);
    rc.shards = cfg.threads;
    runtime_hooks(&rc);
    xf_metrics *m = xf_metrics_new(rc.shards + 1);
    /* Reader slots: the shards, the verification thread, and the admin
     * thread's /api/status (the last). */
    xf_rcu *rcu = xf_rcu_new(rc.shards + 2, free_snapshot, NULL);
    /* Per-partner runtime status for /api/status; the s2s layer writes it. */
    xf_pstatus *pstatus = xf_pstatus_new(rc.shards + 1, XF_PSTATUS_ROWS_DEFAULT);
    rc.metrics = m;
    rc.rcu = rcu;
    xf_rcu_publish(rcu, snap);
    xf_metrics_set(m, XF_METRIC_PARTNERS_ACTIVE, st.partners_active);
    xf_metrics_set(m, XF_METRIC_PARTNERS_SKIPPED, st.partners_skipped);
    xf_metrics_set(m, XF_METRIC_SNAPSHOT_VERSION, version);
    xf_admin_api api = {.config_path = config_path,
                        .store_path = cfg.store,
                        .token_file = cfg.admin_token_file,
                        .rcu = rcu,
                        .rcu_slot = rc.shards + 1,
                        .status = pstatus};
    char err[512];
    /* The s2s layer: listeners and stream handling for the local domains. */
    xf_s2s *s2s = NULL;
    if (cfg.local_count > 0) {
        s2s = xf_s2s_new(&cfg, pstatus, err, sizeof err);
        if (!s2s || !xf_s2s_install(s2s, &rc, err, sizeof err)) {
            xf_log(XF_LOG_ERROR, "s2s: %s", err);
            xf_s2s_free(s2s);
            xf_pstatus_free(pstatus);
            xf_rcu_free(rcu);
            xf_metrics_free(m);
            xf_store_close(store);
            return 1;
        }
    }
    xf_admin *admin_srv = start_admin(&cfg.admin_listen, m, &api);
    xf_rt *rt = admin_srv ? xf_rt_start(&rc, err, sizeof err) : NULL;
    if (!rt) {
        if (admin_srv) xf_log(XF_LOG_ERROR, "runtime: %s", err);
        xf_s2s_free(s2s);
        xf_admin_stop(admin_srv);
        xf_pstatus_free(pstatus);
        xf_rcu_free(rcu);
        xf_metrics_free(m);
        xf_store_close(store);
        return 1;
    }
    xf_admin_set_health(admin_srv, XF_HEALTH_READY);
    xf_log(XF_LOG_INFO,
           "xfed started: %u threads, %u local domains, %u partners (%u skipped), store %s",
           cfg.threads, cfg.local_count, st.partners_active, st.partners_skipped, cfg.store);

    uint64_t seen = xf_store_data_version(store);
    int sig = 0;
    for (;;) {
        struct timespec tick = {.tv_sec = 1};
        sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) break;
        xf_rcu_reclaim(rcu);
        uint64_t now = xf_store_data_version(store);
        if (sig != SIGHUP && now == seen) continue;
        seen = now;
        xf_metrics_add(m, XF_METRIC_CONFIG_RELOADS, 1);
        if (sig == SIGHUP) xf_log(XF_LOG_INFO, "SIGHUP: reloading config and store");
        static xf_config next;
        load_stats nst;
        xf_snapshot *ns = load_all(config_path, &next, &store, &nst, version + 1);
        if (ns && xf_rcu_publish(rcu, ns)) {
            cfg = next;
            version++;
            xf_metrics_set(m, XF_METRIC_PARTNERS_ACTIVE, nst.partners_active);
            xf_metrics_set(m, XF_METRIC_PARTNERS_SKIPPED, nst.partners_skipped);
            xf_metrics_set(m, XF_METRIC_SNAPSHOT_VERSION, version);
        } else {
            if (ns) xf_snapshot_free(ns); /* retire list full: try again next tick */
            xf_metrics_add(m, XF_METRIC_CONFIG_ERRORS, 1);
            xf_log(XF_LOG_ERROR, "reload: errors above; keeping the previous valid settings");
        }
        xf_log(XF_LOG_INFO, "partners: %u active, %u skipped", nst.partners_active,
               nst.partners_skipped);
    }
    xf_log(XF_LOG_INFO, "signal %d: shutting down", sig);
    xf_admin_set_health(admin_srv, XF_HEALTH_STOPPING);
    xf_rt_stop(rt);
    xf_admin_stop(admin_srv);
    xf_s2s_free(s2s);
    xf_pstatus_free(pstatus);
    xf_rcu_free(rcu);
    xf_metrics_free(m);
    xf_store_close(store);
    xf_tls_thread_done();
    xf_log(XF_LOG_INFO, "stopped");
    return 0;
}
