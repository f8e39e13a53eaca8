/* INI config loader. Unknown sections and keys are errors: a typo in a
 * security setting must not be silently ignored. */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct {
    xf_config *cfg;
    char dir[XF_PATH_MAX]; /* folder of the config file, for relative paths */
    char err[512];
    int line;
    int threads_set;
} parse_ctx;

bool xf_hostport_parse(const char *s, uint16_t default_port, xf_hostport *out)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof out->host) return false;
    char buf[XF_HOSTPORT_MAX];
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *host = buf, *port = NULL;
    if (buf[0] == '[') { /* [v6]:port */
        char *close = strchr(buf, ']');
        if (!close) return false;
        *close = '\0';
        host = buf + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return false;
    } else {
        char *colon = strrchr(buf, ':');
        if (colon && strchr(buf, ':') == colon) { /* one colon: host:port */
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (*host == '\0') return false;
    long p = default_port;
    if (port) {
        char *end;
        errno = 0;
        p = strtol(port, &end, 10);
        /* Port 0 = any free port (tests use it for the admin listener). */
        if (*port == '\0' || *end != '\0' || errno || p < 0 || p > 65535) return false;
    }
    snprintf(out->host, sizeof out->host, "%s", host);
    out->port = (uint16_t)p;
    return true;
}

static void set_path(parse_ctx *c, char *dst, const char *value)
{
    if (value[0] == '/' || c->dir[0] == '\0')
        snprintf(dst, XF_PATH_MAX, "%s", value);
    else
        snprintf(dst, XF_PATH_MAX, "%s/%s", c->dir, value);
}

static int bad(parse_ctx *c, const char *section, const char *name, const char *fmt,
               const char *value)
{
    char what[256];
    snprintf(what, sizeof what, fmt, value);
    snprintf(c->err, sizeof c->err, "[%s] %s: %s", section, name, what);
    return 0;
}

static bool parse_listen_list(const char *value, uint16_t def, xf_hostport *arr, uint32_t *count)
{
    char buf[XF_LISTEN_MAX * XF_HOSTPORT_MAX];
    snprintf(buf, sizeof buf, "%s", value);
    *count = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*count == XF_LISTEN_MAX || !xf_hostport_parse(tok, def, &arr[*count])) return false;
        (*count)++;
    }
    return true;
}

static int on_xfed(parse_ctx *c, const char *s, const char *name, const char *value)
{
    xf_config *cfg = c->cfg;
    if (strcmp(name, "threads") == 0) {
        char *end;
        long n = strtol(value, &end, 10);
        if (*value == '\0' || *end || n < 0 || n > XF_THREADS_MAX)
            return bad(c, s, name, "'%s' is not a thread count 0..256 (0 = online CPUs)", value);
        cfg->threads = (uint32_t)n;
        return 1;
    }
    if (strcmp(name, "store") == 0) return set_path(c, cfg->store, value), 1;
    if (strcmp(name, "dns") == 0) {
        xf_hostport hp;
        if (!xf_hostport_parse(value, 53, &hp))
            return bad(c, s, name, "'%s' is not HOST[:PORT]", value);
        snprintf(cfg->dns, sizeof cfg->dns, "%s", value);
        return 1;
    }
    return bad(c, s, name, "unknown key%s", "");
}

static int on_admin(parse_ctx *c, const char *s, const char *name, const char *value)
{
    if (strcmp(name, "listen") == 0) {
        if (!xf_hostport_parse(value, 5280, &c->cfg->admin_listen))
            return bad(c, s, name, "'%s' is not HOST:PORT", value);
        return 1;
    }
    if (strcmp(name, "token_file") == 0) return set_path(c, c->cfg->admin_token_file, value), 1;
    return bad(c, s, name, "unknown key%s", "");
}

static int on_s2s(parse_ctx *c, const char *s, const char *name, const char *value)
{
    xf_config *cfg = c->cfg;
    if (strcmp(name, "listen") == 0) {
        if (!parse_listen_list(value, 5269, cfg->s2s_listen, &cfg->s2s_listen_count))
            return bad(c, s, name, "'%s' is not a list of HOST:PORT (at most 8)", value);
        return 1;
    }
    if (strcmp(name, "direct_tls_listen") == 0) {
        if (!parse_listen_list(value, 5270, cfg->direct_tls_listen, &cfg->direct_tls_listen_count))
            return bad(c, s, name, "'%s' is not a list of HOST:PORT (at most 8)", value);
        return 1;
    }
    if (strcmp(name, "ca_file") == 0) return set_path(c, cfg->ca_file, value), 1;
    return bad(c, s, name, "unknown key%s", "");
}

static int on_local(parse_ctx *c, const char *s, const char *domain, const char *name,
                    const char *value)
{
    xf_config *cfg = c->cfg;
    xf_local *l = NULL;
    for (uint32_t i = 0; i < cfg->local_count; i++)
        if (strcmp(cfg->locals[i].domain, domain) == 0) l = &cfg->locals[i];
    if (!l) {
        char norm[XF_DOMAIN_MAX + 1], why[300];
        if (!xf_domain_normalize(domain, norm, why, sizeof why)) return bad(c, s, name, "%s", why);
        if (strcmp(norm, domain) != 0)
            return bad(c, s, name, "local domain '%s' must be lower-case", domain);
        if (cfg->local_count == XF_LOCALS_MAX)
            return bad(c, s, name, "more than %s local domains", "64");
        l = &cfg->locals[cfg->local_count++];
        snprintf(l->domain, sizeof l->domain, "%s", domain);
    }
    if (strcmp(name, "cert") == 0) return set_path(c, l->cert, value), 1;
    if (strcmp(name, "key") == 0) return set_path(c, l->key, value), 1;
    return bad(c, s, name, "unknown key%s", "");
}

static int on_internal(parse_ctx *c, const char *s, const char *iname, const char *name,
                       const char *value)
{
    xf_config *cfg = c->cfg;
    xf_internal *in = NULL;
    for (uint32_t i = 0; i < cfg->internal_count; i++)
        if (strcmp(cfg->internals[i].name, iname) == 0) in = &cfg->internals[i];
    if (!in) {
        if (strlen(iname) == 0 || strlen(iname) >= sizeof in->name)
            return bad(c, s, name, "the internal server needs a name of 1..63 characters%s", "");
        if (cfg->internal_count == XF_INTERNALS_MAX)
            return bad(c, s, name, "more than %s internal servers", "16");
        in = &cfg->internals[cfg->internal_count++];
        snprintf(in->name, sizeof in->name, "%s", iname);
        in->addr.port = 5347;
    }
    if (strcmp(name, "host") == 0) {
        if (strlen(value) == 0 || strlen(value) >= sizeof in->addr.host)
            return bad(c, s, name, "'%s' is not a host", value);
        snprintf(in->addr.host, sizeof in->addr.host, "%s", value);
        return 1;
    }
    if (strcmp(name, "port") == 0) {
        char *end;
        long p = strtol(value, &end, 10);
        if (*value == '\0' || *end || p < 1 || p > 65535)
            return bad(c, s, name, "'%s' is not a port 1..65535", value);
        in->addr.port = (uint16_t)p;
        return 1;
    }
    if (strcmp(name, "secret") == 0) {
        if (strlen(value) == 0 || strlen(value) >= sizeof in->secret)
            return bad(c, s, name, "the secret must be 1..255 characters%s", "");
        snprintf(in->secret, sizeof in->secret, "%s", value);
        return 1;
    }
    return bad(c, s, name, "unknown key%s", "");
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *c = user;
    if (c->err[0]) return 0;
    if (strcmp(section, "xfed") == 0) return on_xfed(c, section, name, value);
    if (strcmp(section, "admin") == 0) return on_admin(c, section, name, value);
    if (strcmp(section, "s2s") == 0) return on_s2s(c, section, name, value);
    if (strncmp(section, "local ", 6) == 0) return on_local(c, section, section + 6, name, value);
    if (strncmp(section, "internal ", 9) == 0)
        return on_internal(c, section, section + 9, name, value);
    return bad(c, section, name,
               "unknown section (expected xfed, admin, s2s, local DOMAIN, internal NAME)%s", "");
}

static bool check(xf_config *cfg, char *err, size_t errlen)
{
    if (cfg->store[0] == '\0') {
        snprintf(err, errlen, "%s: [xfed] store is required", cfg->path);
        return false;
    }
    for (uint32_t i = 0; i < cfg->local_count; i++) {
        const xf_local *l = &cfg->locals[i];
        if (!l->cert[0] || !l->key[0]) {
            snprintf(err, errlen, "%s: [local %s] needs both cert and key", cfg->path, l->domain);
            return false;
        }
    }
    for (uint32_t i = 0; i < cfg->internal_count; i++) {
        const xf_internal *in = &cfg->internals[i];
        if (!in->addr.host[0] || !in->secret[0]) {
            snprintf(err, errlen, "%s: [internal %s] needs host and secret", cfg->path, in->name);
            return false;
        }
    }
    return true;
}

bool xf_config_load(const char *path, xf_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->path, sizeof cfg->path, "%s", path);
    xf_hostport_parse("127.0.0.1:5280", 5280, &cfg->admin_listen);
    xf_hostport_parse("0.0.0.0:5269", 5269, &cfg->s2s_listen[0]);
    cfg->s2s_listen_count = 1;
    snprintf(cfg->ca_file, sizeof cfg->ca_file, "/etc/ssl/certs/ca-certificates.crt");

    parse_ctx c = {.cfg = cfg};
    /* Relative paths in the file are relative to the file's folder, made
     * absolute so they do not depend on the daemon's working directory. */
    char abs[PATH_MAX];
    if (realpath(path, abs)) {
        char *slash = strrchr(abs, '/');
        snprintf(c.dir, sizeof c.dir, "%.*s", slash == abs ? 1 : (int)(slash - abs), abs);
    }

    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    int line = ini_parse_file(f, on_entry, &c);
    fclose(f);
    if (line != 0) {
        if (c.err[0])
            snprintf(err, errlen, "%s:%d: %s", path, line, c.err);
        else
            snprintf(err, errlen, "%s:%d: syntax error", path, line);
        return false;
    }
    if (cfg->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n < 1 ? 1 : n > XF_THREADS_MAX ? XF_THREADS_MAX : (uint32_t)n;
    }
    return check(cfg, err, errlen);
}

size_t xf_config_local_names(const xf_config *cfg, const char *names[XF_LOCALS_MAX])
{
    for (uint32_t i = 0; i < cfg->local_count; i++)
        names[i] = cfg->locals[i].domain;
    return cfg->local_count;
}
