/* The admin listener on libmicrohttpd: a route table, bounded connections and
 * bodies, the Control Panel's embedded files. */
#include "admin.h"

#include "admin_api.h"
#include "log.h"
#include "panel/panel_assets.h"

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
    xf_api *api;        /* used on MHD's thread only */
    _Atomic int health; /* xf_health; the control thread writes, MHD's thread reads */
    uint16_t port;
};

/* One route: an exact path, or a prefix whose rest the handler reads. */
typedef struct {
    const char *path;
    bool prefix;
    unsigned methods;
    xf_admin_handler serve;
} route;

static enum MHD_Result serve_metrics(xf_admin *a, struct MHD_Connection *c,
                                     const xf_admin_request *rq);
static enum MHD_Result serve_healthz(xf_admin *a, struct MHD_Connection *c,
                                     const xf_admin_request *rq);

/* THE route table. The Control Panel's files (core/panel/, embedded) are
 * served at their own paths before it is consulted. */
static const route routes[] = {
    {"/metrics", false, XF_ADMIN_GET | XF_ADMIN_HEAD, serve_metrics},
    {"/healthz", false, XF_ADMIN_GET | XF_ADMIN_HEAD, serve_healthz},
    {"/api/partners", false, XF_ADMIN_GET | XF_ADMIN_POST, xf_api_partners},
    {"/api/partners/", true, XF_ADMIN_GET | XF_ADMIN_PUT | XF_ADMIN_DELETE, xf_api_partner},
    {"/api/gateway", false, XF_ADMIN_GET | XF_ADMIN_PUT, xf_api_gateway},
    {"/api/status", false, XF_ADMIN_GET, xf_api_status},
    {"/api/matrix", false, XF_ADMIN_GET, xf_api_matrix},
};

/* A request in progress: its body, read before the handler runs. */
typedef struct {
    char *body; /* NUL-terminated */
    size_t len, cap;
    uint64_t seen; /* body bytes received, kept or not */
    bool answered; /* a response was queued during the upload */
} admin_req;

/* The page is ours alone: no framing, no inline code, no sniffing. */
#define ADMIN_CSP "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

static void add_security_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, ADMIN_CSP);
    MHD_add_response_header(r, MHD_HTTP_HEADER_X_CONTENT_TYPE_OPTIONS, "nosniff");
    MHD_add_response_header(r, MHD_HTTP_HEADER_X_FRAME_OPTIONS, "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

enum MHD_Result xf_admin_reply(struct MHD_Connection *c, unsigned status, const char *type,
                               const char *body, size_t len, const char *extra_name,
                               const char *extra_value)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    add_security_headers(r);
    if (extra_name) MHD_add_response_header(r, extra_name, extra_value);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* Small constant texts. */
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return xf_admin_reply(c, status, "text/plain; charset=utf-8", text, strlen(text), NULL, NULL);
}

static enum MHD_Result serve_metrics(xf_admin *a, struct MHD_Connection *c,
                                     const xf_admin_request *rq)
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
    MHD_add_response_header(r, MHD_HTTP_HEADER_X_CONTENT_TYPE_OPTIONS, "nosniff");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result serve_healthz(xf_admin *a, struct MHD_Connection *c,
                                     const xf_admin_request *rq)
{
    switch ((xf_health)atomic_load_explicit(&a->health, memory_order_relaxed)) {
    case XF_HEALTH_READY: return reply_text(c, MHD_HTTP_OK, "ok\n");
    case XF_HEALTH_STARTING: return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting\n");
    case XF_HEALTH_STOPPING: return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping\n");
    }
    assert(!"unknown health state");
    return MHD_NO;
}

static enum MHD_Result serve_asset(struct MHD_Connection *c, const xf_panel_asset *f)
{
    /* PERSISTENT: the bytes live in the binary. */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, f->type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    add_security_headers(r);
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static unsigned method_bit(const char *method)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{MHD_HTTP_METHOD_GET, XF_ADMIN_GET},
                 {MHD_HTTP_METHOD_HEAD, XF_ADMIN_HEAD},
                 {MHD_HTTP_METHOD_POST, XF_ADMIN_POST},
                 {MHD_HTTP_METHOD_PUT, XF_ADMIN_PUT},
                 {MHD_HTTP_METHOD_DELETE, XF_ADMIN_DELETE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(method, names[i].name) == 0) return names[i].bit;
    return 0;
}

static bool is_api(const char *url)
{
    return strncmp(url, "/api/", 5) == 0;
}

static enum MHD_Result reply_405(struct MHD_Connection *c, const char *url, unsigned methods)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    char allow[64] = "";
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(methods & (1u << i))) continue;
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", names[i]);
    }
    if (is_api(url)) {
        static const char body[] = "{\"error\":\"method_not_allowed\",\"message\":\"this path "
                                   "does not take that method: see the Allow header\"}";
        return xf_admin_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json", body,
                              sizeof body - 1, MHD_HTTP_HEADER_ALLOW, allow);
    }
    return xf_admin_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                          "method not allowed\n", strlen("method not allowed\n"),
                          MHD_HTTP_HEADER_ALLOW, allow);
}

static enum MHD_Result reply_404(struct MHD_Connection *c, const char *url)
{
    if (!is_api(url)) return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    static const char body[] = "{\"error\":\"not_found\",\"message\":\"no such API path\"}";
    return xf_admin_reply(c, MHD_HTTP_NOT_FOUND, "application/json", body, sizeof body - 1, NULL,
                          NULL);
}

static enum MHD_Result reply_413(struct MHD_Connection *c, const char *url)
{
    char body[160];
    int n = snprintf(body, sizeof body,
                     is_api(url) ? "{\"error\":\"too_large\",\"message\":\"the body is larger "
                                   "than %d bytes\"}"
                                 : "the body is larger than %d bytes\n",
                     XF_ADMIN_BODY_MAX);
    return xf_admin_reply(c, MHD_HTTP_CONTENT_TOO_LARGE,
                          is_api(url) ? "application/json" : "text/plain; charset=utf-8", body,
                          (size_t)n, NULL, NULL);
}

/* Routes a complete request: the panel's files, then the table. */
static enum MHD_Result route_request(xf_admin *a, struct MHD_Connection *c, const char *url,
                                     const char *method, const admin_req *r)
{
    unsigned bit = method_bit(method);
    for (size_t i = 0; i < xf_panel_asset_count; i++) {
        if (strcmp(url, xf_panel_assets[i].path) != 0) continue;
        if (!(bit & (XF_ADMIN_GET | XF_ADMIN_HEAD)))
            return reply_405(c, url, XF_ADMIN_GET | XF_ADMIN_HEAD);
        return serve_asset(c, &xf_panel_assets[i]);
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route *rt = &routes[i];
        size_t n = strlen(rt->path);
        if (rt->prefix ? strncmp(url, rt->path, n) != 0 || url[n] == '\0'
                       : strcmp(url, rt->path) != 0)
            continue;
        if (!(bit & rt->methods)) return reply_405(c, url, rt->methods);
        xf_admin_request rq = {.method = bit,
                               .rest = url + n,
                               .body = r->seen ? r->body : NULL,
                               .body_len = r->len,
                               .body_too_large = r->seen > XF_ADMIN_BODY_MAX};
        if (rq.body_too_large) rq.body = NULL;
        return rt->serve(a, c, &rq);
    }
    return reply_404(c, url);
}

/* Keeps up to XF_ADMIN_BODY_MAX bytes of the body; counts the rest. */
static bool keep_body(admin_req *r, const char *data, size_t n)
{
    r->seen += n;
    if (r->seen > XF_ADMIN_BODY_MAX) {
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return true; /* drained, then answered 413 */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *grown = realloc(r->body, cap);
        if (!grown) return false;
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return true;
}

/* MHD's access handler, on MHD's one internal thread. The first call only
 * sets up the request; body chunks follow; the last call routes. A body is
 * always read (or drained, up to XF_ADMIN_DISCARD_MAX) before the answer, so
 * an error reply never races the client's upload into a reset connection. */
static enum MHD_Result dispatch(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **req_state)
{
    xf_admin *a = cls;
    assert(a != NULL);
    assert(url != NULL);
    admin_req *r = *req_state;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *req_state = r;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > XF_ADMIN_DISCARD_MAX) {
            r->answered = true;
            return reply_413(c, url);
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->answered) return MHD_YES;
        if (r->seen + n > XF_ADMIN_DISCARD_MAX) {
            r->answered = true;
            return reply_413(c, url);
        }
        return keep_body(r, upload_data, n) ? MHD_YES : MHD_NO;
    }
    if (r->answered) return MHD_YES;
    r->answered = true;
    return route_request(a, c, url, method, r);
}

static void request_done(void *cls, struct MHD_Connection *c, void **req_state,
                         enum MHD_RequestTerminationCode why)
{
    admin_req *r = *req_state;
    if (!r) return;
    if (r->body) explicit_bzero(r->body, r->cap); /* it may have held a passphrase */
    free(r->body);
    free(r);
    *req_state = NULL;
}

xf_api *xf_admin_api_of(xf_admin *a)
{
    assert(a != NULL);
    assert(a->api != NULL);
    return a->api;
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
    return xf_admin_start_api(host, port, m, NULL, err, errlen);
}

xf_admin *xf_admin_start_api(const char *host, uint16_t port, xf_metrics *m,
                             const xf_admin_api *api, char *err, size_t errlen)
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
    a->api = xf_api_open(api, m, err, errlen);
    if (!a->api) {
        close(fd);
        free(a);
        return NULL;
    }
    /* The logger comes first so that start-up messages go through xf_log. MHD
     * closes the listen socket in MHD_stop_daemon. */
    a->daemon = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, dispatch, a,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)XF_ADMIN_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)XF_ADMIN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)XF_ADMIN_MEMORY_MAX, MHD_OPTION_END);
    if (!a->daemon) {
        char addr[ADMIN_HOST_MAX + 8];
        format_addr(host, a->port, addr, sizeof addr);
        snprintf(err, errlen, "admin listener on %s: libmicrohttpd failed to start", addr);
        close(fd);
        xf_api_close(a->api);
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
    MHD_stop_daemon(a->daemon); /* joins MHD's thread: the API state is free to go */
    xf_api_close(a->api);
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
