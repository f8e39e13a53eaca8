/* The admin listener: HTTP on its own thread (libmicrohttpd internal polling).
 *
 *   GET /metrics           200, Prometheus text format (xf_metrics_render)
 *   GET /healthz           200 "ok\n" when ready; 503 "starting\n" / "stopping\n" otherwise
 *   GET /, /panel.*        the Control Panel: static files embedded in the binary
 *   /api/...               the admin API (admin_api.c), with a bearer token
 *   other paths            404; a method the path does not take: 405
 *
 * Requests are bounded (connection memory, connection count, idle timeout,
 * body size), so the port cannot be used to exhaust the daemon's memory.
 * Routes are one table in admin.c. Every callback runs on MHD's one internal
 * thread: the API's store handle is used by that thread only.
 */
#ifndef XF_ADMIN_H
#define XF_ADMIN_H

#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

#define XF_ADMIN_CONNECTIONS_MAX 64
#define XF_ADMIN_TIMEOUT_S       10    /* idle connection timeout */
#define XF_ADMIN_MEMORY_MAX      16384 /* per connection: request line, headers, body chunks */
#define XF_ADMIN_BODY_MAX        65536 /* a request body the API reads: beyond it, 413 */
#define XF_ADMIN_DISCARD_MAX     (1024 * 1024) /* a larger body is not even drained: 413, close */

typedef struct xf_admin xf_admin;
struct xf_rcu;
struct xf_pstatus;

/* What the admin API needs from the daemon. The listener copies the strings. */
typedef struct {
    const char *config_path; /* re-read for its local domains on each change, as xfedctl does;
                                NULL: no local domains to protect */
    const char *store_path;  /* the API opens its own handle on it */
    const char *token_file;  /* NULL or "": the API answers 403 (disabled) */
    struct xf_rcu *rcu;      /* the partner snapshots, for /api/status */
    unsigned rcu_slot;       /* a reader slot of rcu no other thread uses */
    const struct xf_pstatus *status; /* per-partner runtime status; NULL: none */
} xf_admin_api;

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
/* The same with the admin API (api may be NULL: the API answers 403). With a
 * token file that does not exist, a token is generated into it (0600) first.
 * Fails when the token file or the store cannot be read. */
xf_admin *xf_admin_start_api(const char *host, uint16_t port, xf_metrics *m,
                             const xf_admin_api *api, char *err, size_t errlen);
/* Stops the thread, closes the socket and frees. NULL is allowed. */
void xf_admin_stop(xf_admin *a);

uint16_t xf_admin_port(const xf_admin *a); /* the bound port (useful with port 0) */
void xf_admin_set_health(xf_admin *a, xf_health h);

#endif
