/* The raw relay: forwards bytes between each accepted connection and a new
 * connection to a fixed target, both ways, with no parsing. It runs on the
 * same runtime as the router and is the baseline the benchmark compares the
 * router against. */
#ifndef XF_RELAY_H
#define XF_RELAY_H

#include "rt.h"

typedef struct {
    struct sockaddr_storage target;
    socklen_t target_len;
    uint32_t connect_timeout_ms;
} xf_relay;

/* Adds the relay's listener to a runtime config; `r` must outlive the runtime. */
void xf_relay_listen(xf_rt_config *cfg, xf_relay *r, const struct sockaddr *addr, socklen_t len);

/* Parses "HOST:PORT" (numeric IPv4, or [IPv6]:PORT) into a socket address. */
bool xf_sockaddr_parse(const char *s, struct sockaddr_storage *out, socklen_t *len);

#endif
