/* INI config loading: the shipped example, defaults, and clear errors. */
#include "../check.h"
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/xfed-test-config-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static bool load_err(const char *text, const char *want)
{
    xf_config *cfg = malloc(sizeof *cfg);
    char err[1024] = "";
    bool loaded = xf_config_load(write_tmp(text), cfg, err, sizeof err);
    free(cfg);
    if (loaded) return false;
    if (!strstr(err, want)) fprintf(stderr, "  got error: %s\n", err);
    return strstr(err, want) != NULL;
}

int main(int argc, char **argv)
{
    static xf_config cfg;
    char err[1024], path[1024];
    snprintf(path, sizeof path, "%s/../../examples/xfed.conf", argc > 1 ? argv[1] : ".");
    CHECK(xf_config_load(path, &cfg, err, sizeof err));
    CHECK(cfg.threads == 2);
    CHECK_STR(cfg.store, "/var/lib/xfed/xfed.db");
    CHECK_STR(cfg.admin_listen.host, "127.0.0.1");
    CHECK(cfg.admin_listen.port == 5280);
    CHECK(cfg.s2s_listen_count == 1 && cfg.s2s_listen[0].port == 5269);
    CHECK(cfg.local_count == 1);
    CHECK_STR(cfg.locals[0].domain, "contoso.example");
    CHECK_STR(cfg.locals[0].cert, "/etc/xfed/contoso.example.crt");
    CHECK(cfg.internal_count == 1 && cfg.internals[0].addr.port == 5347);
    CHECK_STR(cfg.internals[0].secret, "change-me");

    /* Relative paths resolve against the config's folder; threads default to CPUs. */
    CHECK(xf_config_load(write_tmp("[xfed]\nstore = x.db\n[s2s]\nlisten = 127.0.0.1:1, "
                                   "[::1]:2\n"),
                         &cfg, err, sizeof err));
    CHECK_STR(cfg.store, "/tmp/x.db");
    CHECK(cfg.threads == (uint32_t)sysconf(_SC_NPROCESSORS_ONLN));
    CHECK(cfg.s2s_listen_count == 2 && cfg.s2s_listen[1].port == 2);
    CHECK_STR(cfg.s2s_listen[1].host, "::1");

    CHECK(load_err("[xfed]\nstore = x.db\nthreds = 2\n", ":3: [xfed] threds: unknown key"));
    CHECK(load_err("[xfed]\nstore = x.db\n[bogus]\na = b\n", "unknown section"));
    CHECK(load_err("[xfed]\nthreads = many\nstore = x\n", "not a thread count"));
    CHECK(load_err("[admin]\nlisten = 127.0.0.1\n", "store is required"));
    CHECK(load_err("[xfed]\nstore = x\n[admin]\nlisten = 127.0.0.1:99999\n", "HOST:PORT"));
    CHECK(
        load_err("[xfed]\nstore = x\n[local Contoso.example]\ncert = a\nkey = b\n", "lower-case"));
    CHECK(load_err("[xfed]\nstore = x\n[local contoso.example]\ncert = a\n", "cert and key"));
    CHECK(load_err("[xfed]\nstore = x\n[internal p]\nport = 5347\n", "host and secret"));
    CHECK(load_err("[xfed]\nstore = x\nnot an ini line\n", "syntax error"));
    unlink(write_tmp(""));
    CHECK(!xf_config_load("/nonexistent/xfed.conf", &cfg, err, sizeof err));
    CHECK(strstr(err, "No such file") != NULL);
    return check_report("test_config");
}
