/* The admin listener on libmicrohttpd: a route table, bounded connections. */
#include "admin.h"

#include "log.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_BACKLOG  64
#define ADMIN_HOST_MAX 64 /* longest numeric address, brackets included */

struct xf_admin {
    struct MHD_Daemon *daemon;
    xf_metrics *metrics;
    _Atomic int health; /* xf_health; the control thread writes, MHD's thread reads */
    uint16_t port;
};

/* Method bits a route accepts. */
enum { METHOD_GET = 1u << 0, METHOD_HEAD = 1u << 1 };

typedef enum MHD_Result (*route_fn)(xf_admin *a, struct MHD_Connection *c);

/* THE route table. The admin API (a later issue) adds rows here: its paths,
 * the methods they take, and a handler that checks the token first. */
typedef struct {
    const char *path;
    unsigned methods;
    route_fn serve;
} route;

static enum MHD_Result serve_metrics(xf_admin *a, struct MHD_Connection *c);
static enum MHD_Result serve_healthz(xf_admin *a, struct MHD_Connection *c);

static const route routes[] = {
    {"/metrics", METHOD_GET | METHOD_HEAD, serve_metrics},
    {"/healthz", METHOD_GET | METHOD_HEAD, serve_healthz},
};

/* Queues a response whose body MHD copies (small constant texts). */
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result serve_metrics(xf_admin *a, struct MHD_Connection *c)
{
    size_t len = 0;
    char *body = xf_metrics_render_alloc(a->metrics, &len);
    if (!body) return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    /* MUST_FREE: MHD frees the rendered text with free() once it is sent. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result serve_healthz(xf_admin *a, struct MHD_Connection *c)
{
    switch ((xf_health)atomic_load_explicit(&a->health, memory_order_relaxed)) {
    case XF_HEALTH_READY: return reply_text(c, MHD_HTTP_OK, "ok\n");
    case XF_HEALTH_STARTING: return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting\n");
    case XF_HEALTH_STOPPING: return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping\n");
    }
    assert(!"unknown health state");
    return MHD_NO;
}

static unsigned method_bit(const char *method)
{
    if (strcmp(method, MHD_HTTP_METHOD_GET) == 0) return METHOD_GET;
    if (strcmp(method, MHD_HTTP_METHOD_HEAD) == 0) return METHOD_HEAD;
    return 0;
}

static enum MHD_Result reply_405(struct MHD_Connection *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen("method not allowed\n"), (void *)"method not allowed\n", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
    MHD_destroy_response(r);
    return ok;
}

/* MHD's access handler: runs on MHD's one internal thread. It answers on the
 * first call, so a request body (never wanted here) is not read; MHD then
 * closes the connection rather than parse what follows. */
static enum MHD_Result dispatch(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **req_state)
{
    xf_admin *a = cls;
    assert(a != NULL);
    assert(url != NULL);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        if ((method_bit(method) & routes[i].methods) == 0) return reply_405(c);
        return routes[i].serve(a, c);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    xf_log(XF_LOG_WARN, "admin listener: %s", msg);
}

/* Parses a numeric IPv4 or IPv6 address ("::1" or "[::1]") into ss. */
static bool parse_host(const char *host, uint16_t port, struct sockaddr_storage *ss,
                       socklen_t *sslen)
{
    char buf[ADMIN_HOST_MAX];
    size_t n = strnlen(host, sizeof buf);
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, host, n + 1);
    if (buf[0] == '[' && buf[n - 1] == ']') {
        buf[n - 1] = '\0';
        memmove(buf, buf + 1, n - 1);
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, buf, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *sslen = sizeof *v4;
        return true;
    }
    if (inet_pton(AF_INET6, buf, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *sslen = sizeof *v6;
        return true;
    }
    return false;
}

/* "host:port", an IPv6 host in brackets, for messages and the logged URL. */
static void format_addr(const char *host, uint16_t port, char *out, size_t n)
{
    bool bare_v6 = strchr(host, ':') != NULL && host[0] != '[';
    snprintf(out, n, "%s%s%s:%u", bare_v6 ? "[" : "", host, bare_v6 ? "]" : "", port);
}

/* Creates the listening socket ourselves, so a bind failure reports errno and
 * port 0 can be read back with getsockname. Returns -1 with err set. */
static int listen_on(const char *host, uint16_t port, uint16_t *bound, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (!parse_host(host, port, &ss, &sslen)) {
        snprintf(err, errlen, "admin listener: '%s' is not a numeric IPv4 or IPv6 address", host);
        return -1;
    }
    char addr[ADMIN_HOST_MAX + 8];
    format_addr(host, port, addr, sizeof addr);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "admin listener %s: socket: %s", addr, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* An IPv6 address means that address only, not the IPv4 space too. */
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, ADMIN_BACKLOG) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(err, errlen, "admin listener: cannot listen on %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    assert(port == 0 || *bound == port);
    return fd;
}

xf_admin *xf_admin_start(const char *host, uint16_t port, xf_metrics *m, char *err, size_t errlen)
{
    assert(host != NULL);
    assert(m != NULL);
    xf_admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "admin listener: out of memory");
        return NULL;
    }
    a->metrics = m;
    atomic_init(&a->health, XF_HEALTH_STARTING);
    int fd = listen_on(host, port, &a->port, err, errlen);
    if (fd < 0) {
        free(a);
        return NULL;
    }
    /* The logger comes first so that start-up messages go through xf_log. MHD
     * closes the listen socket in MHD_stop_daemon. */
    a->daemon = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, dispatch, a,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)XF_ADMIN_CONNECTIONS_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)XF_ADMIN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)XF_ADMIN_MEMORY_MAX, MHD_OPTION_END);
    if (!a->daemon) {
        char addr[ADMIN_HOST_MAX + 8];
        format_addr(host, a->port, addr, sizeof addr);
        snprintf(err, errlen, "admin listener on %s: libmicrohttpd failed to start", addr);
        close(fd);
        free(a);
        return NULL;
    }
    char addr[ADMIN_HOST_MAX + 8];
    format_addr(host, a->port, addr, sizeof addr);
    xf_log(XF_LOG_INFO, "admin listener: http://%s/ (metrics at /metrics)", addr);
    return a;
}

void xf_admin_stop(xf_admin *a)
{
    if (!a) return;
    assert(a->daemon != NULL);
    MHD_stop_daemon(a->daemon);
    free(a);
}

uint16_t xf_admin_port(const xf_admin *a)
{
    assert(a != NULL);
    assert(a->port != 0);
    return a->port;
}

void xf_admin_set_health(xf_admin *a, xf_health h)
{
    assert(a != NULL);
    assert(h == XF_HEALTH_STARTING || h == XF_HEALTH_READY || h == XF_HEALTH_STOPPING);
    atomic_store_explicit(&a->health, (int)h, memory_order_relaxed);
}
