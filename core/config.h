/* The daemon's INI config (spec §2), parsed with inih. Fixed-size, bounded
 * tables; relative paths are resolved against the config file's folder. */
#ifndef XF_CONFIG_H
#define XF_CONFIG_H

#include "partner.h"

#include <stdint.h>

#define XF_PATH_MAX      1024
#define XF_LISTEN_MAX    8
#define XF_LOCALS_MAX    64
#define XF_INTERNALS_MAX 16
#define XF_THREADS_MAX   256
#define XF_HOSTPORT_MAX  300
#define XF_SECRET_MAX    256

typedef struct {
    char host[XF_HOSTPORT_MAX]; /* numeric address or name */
    uint16_t port;
} xf_hostport;

typedef struct {
    char domain[XF_DOMAIN_MAX + 1];
    char cert[XF_PATH_MAX];
    char key[XF_PATH_MAX];
} xf_local;

typedef struct {
    char name[64];
    xf_hostport addr;
    char secret[XF_SECRET_MAX];
} xf_internal;

typedef struct {
    char path[XF_PATH_MAX]; /* the file this came from */
    uint32_t threads;       /* 0 in the file = online CPUs, resolved at load */
    char store[XF_PATH_MAX];
    char dns[XF_HOSTPORT_MAX]; /* empty: /etc/resolv.conf */

    xf_hostport admin_listen;
    char admin_token_file[XF_PATH_MAX];

    xf_hostport s2s_listen[XF_LISTEN_MAX];
    uint32_t s2s_listen_count;
    xf_hostport direct_tls_listen[XF_LISTEN_MAX];
    uint32_t direct_tls_listen_count;
    char ca_file[XF_PATH_MAX];

    xf_local locals[XF_LOCALS_MAX];
    uint32_t local_count;
    xf_internal internals[XF_INTERNALS_MAX];
    uint32_t internal_count;
} xf_config;

/* Loads and validates `path`. On failure returns false with a message naming
 * the file, line and key in `err`. */
bool xf_config_load(const char *path, xf_config *cfg, char *err, size_t errlen);

/* Pointers to the local domain names, for xf_partner_check. */
size_t xf_config_local_names(const xf_config *cfg, const char *names[XF_LOCALS_MAX]);

bool xf_hostport_parse(const char *s, uint16_t default_port, xf_hostport *out);

#endif
