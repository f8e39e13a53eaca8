/* xfed: the daemon. Loads and validates the config and the store, then runs
 * until SIGTERM/SIGINT. While running it notices committed store changes
 * within a second (PRAGMA data_version) and re-validates; SIGHUP re-reads
 * the config too. The io_uring runtime plugs in here (issue 4). */
#include "config.h"
#include "log.h"
#include "partner.h"
#include "store.h"
#include "tls_cert.h"

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
    uint64_t config_reloads;
    uint64_t config_errors;
} load_stats;

typedef struct {
    const char *const *locals;
    size_t nlocals;
    load_stats *st;
    bool quiet;
} walk_ctx;

static int check_partner(const xf_partner *p, const char *load_error, void *arg)
{
    walk_ctx *w = arg;
    if (load_error) {
        xf_log(XF_LOG_ERROR, "partner %s skipped: the stored record is damaged (%s)", p->domain,
               load_error);
        w->st->partners_skipped++;
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
        w->st->partners_skipped++;
        return 0;
    }
    if (!w->quiet)
        for (uint32_t i = 0; i < v.count; i++)
            xf_log(v.msg_cls[i] == XF_COMMIT_WARN ? XF_LOG_WARN : XF_LOG_INFO,
                   "partner %s (matrix row %d): %s", p->domain, v.row, v.msg[i]);
    w->st->partners_active++;
    return 0;
}

/* Validates everything the daemon depends on. Returns false on any error. */
static bool load_all(const char *config_path, xf_config *cfg, xf_store **store, load_stats *st,
                     bool quiet)
{
    char err[1024];
    st->partners_active = st->partners_skipped = st->errors = 0;
    if (!xf_config_load(config_path, cfg, err, sizeof err)) {
        xf_log(XF_LOG_ERROR, "config: %s", err);
        st->errors++;
        return false;
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
        return false;
    }
    xf_gateway g;
    if (xf_store_gateway_get(*store, &g) != XF_STORE_OK) {
        xf_log(XF_LOG_ERROR, "store: %s", xf_store_errmsg(*store));
        st->errors++;
        return false;
    }
    xf_verdict v;
    xf_verdict_init(&v);
    xf_gateway_check(&g, &v);
    for (uint32_t i = 0; i < v.count; i++)
        xf_log(v.msg_cls[i] == XF_COMMIT_REFUSED ? XF_LOG_ERROR : XF_LOG_WARN, "gateway: %s",
               v.msg[i]);
    if (v.cls == XF_COMMIT_REFUSED) st->errors++;

    const char *locals[XF_LOCALS_MAX];
    walk_ctx w = {locals, xf_config_local_names(cfg, locals), st, quiet};
    if (xf_store_partner_each(*store, check_partner, &w) != XF_STORE_OK) {
        xf_log(XF_LOG_ERROR, "store: %s", xf_store_errmsg(*store));
        st->errors++;
        return false;
    }
    return st->errors == 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: xfed --config FILE [--check] [--debug]\n"
               "  --config FILE  the INI config (see examples/xfed.conf)\n"
               "  --check        validate the config, certificates and store, then exit\n"
               "                 (0 = valid, 1 = errors, each printed with its cause)\n"
               "  --debug        log debug lines\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"debug", no_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    bool check_only = false;
    for (int c; (c = getopt_long(argc, argv, "c:kdh", opts, NULL)) != -1;) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'k': check_only = true; break;
        case 'd': xf_log_set_level(XF_LOG_DEBUG); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config_path || optind != argc) {
        usage(stderr);
        return 2;
    }
    xf_tls_global_init();

    /* Signals are taken synchronously by this control thread. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    static xf_config cfg;
    xf_store *store = NULL;
    load_stats st = {0};
    bool ok = load_all(config_path, &cfg, &store, &st, false);
    if (check_only) {
        if (ok && st.partners_skipped == 0) {
            printf("%s: OK: %u local domains, %u partners, store %s\n", config_path,
                   cfg.local_count, st.partners_active, cfg.store);
        } else {
            printf("%s: FAILED: %u errors, %u partners refused by validation\n", config_path,
                   st.errors, st.partners_skipped);
            ok = false;
        }
        xf_store_close(store);
        return ok ? 0 : 1;
    }
    if (!ok) {
        xf_log(XF_LOG_ERROR, "not starting: fix the errors above (xfed --config %s --check)",
               config_path);
        xf_store_close(store);
        return 1;
    }
    xf_log(XF_LOG_INFO,
           "xfed started: %u threads, %u local domains, %u partners (%u skipped), "
           "store %s",
           cfg.threads, cfg.local_count, st.partners_active, st.partners_skipped, cfg.store);

    uint64_t seen = xf_store_data_version(store);
    for (;;) {
        struct timespec tick = {.tv_sec = 1};
        int sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
            xf_log(XF_LOG_INFO, "signal %d: shutting down", sig);
            break;
        }
        uint64_t now = xf_store_data_version(store);
        if (sig != SIGHUP && now == seen) continue;
        seen = now;
        st.config_reloads++;
        if (sig == SIGHUP) xf_log(XF_LOG_INFO, "SIGHUP: reloading config and store");
        static xf_config next;
        load_stats nst = {0};
        if (sig == SIGHUP ? load_all(config_path, &next, &store, &nst, false)
                          : load_all(config_path, &next, &store, &nst, true)) {
            cfg = next;
        } else {
            st.config_errors++;
            xf_log(XF_LOG_ERROR, "reload: errors above; keeping the previous valid settings");
        }
        xf_log(XF_LOG_INFO, "partners: %u active, %u skipped", nst.partners_active,
               nst.partners_skipped);
    }
    xf_store_close(store);
    return 0;
}
