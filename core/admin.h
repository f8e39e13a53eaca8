/* The admin listener: HTTP on its own thread (libmicrohttpd internal polling).
 *
 *   GET /metrics   200, Prometheus text format (xf_metrics_render)
 *   GET /healthz   200 "ok\n" when ready; 503 "starting\n" / "stopping\n" otherwise
 *   other paths    404; methods other than GET/HEAD on a known path: 405
 *
 * Requests are bounded (connection memory, connection count, idle timeout), so
 * the port cannot be used to exhaust the daemon's memory. Routes are one table
 * in admin.c: the admin API adds its rows there.
 */
#ifndef XF_ADMIN_H
#define XF_ADMIN_H

#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

#define XF_ADMIN_CONNECTIONS_MAX 64
#define XF_ADMIN_TIMEOUT_S       10    /* idle connection timeout */
#define XF_ADMIN_MEMORY_MAX      16384 /* per connection: request line, headers, body */

typedef struct xf_admin xf_admin;

/* Readiness, reported by /healthz. Set by the control thread. */
typedef enum {
    XF_HEALTH_STARTING = 0, /* the initial state: 503 until the daemon says ready */
    XF_HEALTH_READY = 1,
    XF_HEALTH_STOPPING = 2,
} xf_health;

/* Binds host:port (numeric IPv4 or IPv6, brackets optional; port 0 picks a
 * free port) and starts serving `m` (which must outlive the listener). Logs
 * the URL. On failure returns NULL with the reason, naming the address, in err. */
xf_admin *xf_admin_start(const char *host, uint16_t port, xf_metrics *m, char *err, size_t errlen);
/* Stops the thread, closes the socket and frees. NULL is allowed. */
void xf_admin_stop(xf_admin *a);

uint16_t xf_admin_port(const xf_admin *a); /* the bound port (useful with port 0) */
void xf_admin_set_health(xf_admin *a, xf_health h);

#endif
