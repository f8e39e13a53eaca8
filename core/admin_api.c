/* The admin API: partners, gateway settings, status (see admin_api.h).
 *
 * Writes go through xf_store_partner_commit / xf_store_gateway_commit with the
 * edit logic xfedctl uses (partner_json.c), so the API refuses exactly what
 * xfedctl refuses, with the same messages. The running daemon notices the
 * commit through PRAGMA data_version like any other writer's.
 */
#include "admin_api.h"

#include "config.h"
#include "log.h"
#include "partner_json.h"
#include "pstatus.h"
#include "snapshot.h"
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_BYTES 32    /* random bytes of a generated token (hex: 64 characters) */
#define TOKEN_MIN   16    /* characters of a usable token */
#define LIST_MAX    10000 /* partners in one listing */
#define ERR_MAX     512
#define JSON_TYPE   "application/json"

struct xf_api {
    bool enabled;
    char token[XF_ADMIN_TOKEN_MAX + 1];
    size_t token_len;
    char token_file[XF_PATH_MAX];
    char config_path[XF_PATH_MAX]; /* "" = no local domains */
    xf_store *store;               /* MHD's thread only */
    struct xf_rcu *rcu;
    unsigned rcu_slot;
    const xf_pstatus *status;
    xf_metrics *metrics;
};

/* ---- the token ------------------------------------------------------------ */

bool xf_admin_token_equal(const char *given, size_t given_len, const char *token, size_t token_len)
{
    assert(token != NULL);
    assert(token_len > 0);
    /* Every byte of the configured token is visited whatever the input, and
     * the differences are OR-ed, so the time says nothing about where the
     * presented token first differs. */
    volatile unsigned char diff = given_len != token_len;
    for (size_t i = 0; i < token_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)token[i]);
    }
    return diff == 0;
}

/* Reads the token: -1 with errno ENOENT when the file is missing, 0 on other
 * failures (err set), 1 when read. */
static int token_read(xf_api *api, char *err, size_t errlen)
{
    int fd = open(api->token_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT) return -1;
        snprintf(err, errlen, "admin token file %s: %s", api->token_file, strerror(errno));
        return 0;
    }
    struct stat st;
    char buf[XF_ADMIN_TOKEN_MAX + 2];
    ssize_t got = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "admin token file %s: not a regular file", api->token_file);
        close(fd);
        return 0;
    }
    for (ssize_t n; got < (ssize_t)sizeof buf - 1; got += n) {
        n = read(fd, buf + got, sizeof buf - 1 - (size_t)got);
        if (n < 0 && errno == EINTR)
            n = 0;
        else if (n <= 0)
            break;
    }
    close(fd);
    if (st.st_mode & 077)
        xf_log(XF_LOG_WARN,
               "admin token file %s can be read or written by others (mode %04o): "
               "chmod 600 it",
               api->token_file, (unsigned)(st.st_mode & 07777));
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r' || buf[got - 1] == ' ' ||
                       buf[got - 1] == '\t'))
        got--;
    if (got > XF_ADMIN_TOKEN_MAX || got < TOKEN_MIN) {
        snprintf(err, errlen, "admin token file %s: the token must be %d to %d characters",
                 api->token_file, TOKEN_MIN, XF_ADMIN_TOKEN_MAX);
        return 0;
    }
    for (ssize_t i = 0; i < got; i++) {
        if (buf[i] <= ' ' || buf[i] > '~') {
            snprintf(err, errlen,
                     "admin token file %s: the token must be printable ASCII without spaces",
                     api->token_file);
            return 0;
        }
    }
    memcpy(api->token, buf, (size_t)got);
    api->token[got] = '\0';
    api->token_len = (size_t)got;
    return 1;
}

/* Writes a new random token. Returns -1 with errno EEXIST when another
 * process created the file first, 0 on failure (err set), 1 when written. */
static int token_generate(xf_api *api, char *err, size_t errlen)
{
    unsigned char raw[TOKEN_BYTES];
    size_t have = 0;
    while (have < sizeof raw) {
        ssize_t n = getrandom(raw + have, sizeof raw - have, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(err, errlen, "admin token: getrandom: %s", strerror(errno));
            return 0;
        }
        have += (size_t)n;
    }
    char hex[2 * TOKEN_BYTES + 2];
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    hex[2 * TOKEN_BYTES] = '\n';
    hex[2 * TOKEN_BYTES + 1] = '\0';
    /* O_EXCL: never replace a token someone else just wrote; 0600: it is a
     * secret from the start, not after a chmod. */
    int fd = open(api->token_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST) return -1;
        snprintf(err, errlen, "admin token file %s: cannot create it: %s", api->token_file,
                 strerror(errno));
        return 0;
    }
    size_t len = 2 * TOKEN_BYTES + 1;
    bool ok = write(fd, hex, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        snprintf(err, errlen, "admin token file %s: cannot write it: %s", api->token_file,
                 strerror(errno));
        unlink(api->token_file);
        return 0;
    }
    memcpy(api->token, hex, 2 * TOKEN_BYTES);
    api->token[2 * TOKEN_BYTES] = '\0';
    api->token_len = 2 * TOKEN_BYTES;
    xf_log(XF_LOG_INFO, "admin API: generated a token into %s (mode 0600)", api->token_file);
    return 1;
}

static bool token_load(xf_api *api, char *err, size_t errlen)
{
    int r = token_read(api, err, errlen);
    if (r < 0) r = token_generate(api, err, errlen);
    if (r < 0) r = token_read(api, err, errlen); /* lost the race to another start */
    if (r < 0) snprintf(err, errlen, "admin token file %s: it keeps vanishing", api->token_file);
    return r > 0;
}

/* ---- state ------------------------------------------------------------------ */

xf_api *xf_api_open(const xf_admin_api *cfg, xf_metrics *m, char *err, size_t errlen)
{
    xf_api *api = calloc(1, sizeof *api);
    if (!api) {
        snprintf(err, errlen, "admin API: out of memory");
        return NULL;
    }
    api->metrics = m;
    if (!cfg || !cfg->token_file || !cfg->token_file[0]) {
        xf_log(XF_LOG_INFO, "admin API: disabled (no [admin] token_file); the Control Panel "
                            "page is served but cannot sign in");
        return api;
    }
    assert(cfg->store_path != NULL);
    if (strlen(cfg->token_file) >= sizeof api->token_file ||
        (cfg->config_path && strlen(cfg->config_path) >= sizeof api->config_path)) {
        snprintf(err, errlen, "admin API: a path is longer than %d bytes", XF_PATH_MAX - 1);
        free(api);
        return NULL;
    }
    snprintf(api->token_file, sizeof api->token_file, "%s", cfg->token_file);
    snprintf(api->config_path, sizeof api->config_path, "%s",
             cfg->config_path ? cfg->config_path : "");
    api->rcu = cfg->rcu;
    api->rcu_slot = cfg->rcu_slot;
    api->status = cfg->status;
    if (!token_load(api, err, errlen)) {
        free(api);
        return NULL;
    }
    char why[ERR_MAX];
    if (xf_store_open(cfg->store_path, &api->store, why, sizeof why) != XF_STORE_OK) {
        snprintf(err, errlen, "admin API: store: %s", why);
        explicit_bzero(api->token, sizeof api->token);
        free(api);
        return NULL;
    }
    api->enabled = true;
    xf_log(XF_LOG_INFO, "admin API: enabled; bearer token in %s", api->token_file);
    return api;
}

void xf_api_close(xf_api *api)
{
    if (!api) return;
    xf_store_close(api->store);
    explicit_bzero(api->token, sizeof api->token);
    free(api);
}

/* ---- replies ---------------------------------------------------------------- */

/* Sends j (whose reference it takes) as the body. */
static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j,
                                  const char *extra_name, const char *extra_value)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        return xf_admin_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, JSON_TYPE, oom, sizeof oom - 1,
                              NULL, NULL);
    }
    enum MHD_Result ok =
        xf_admin_reply(c, status, JSON_TYPE, text, strlen(text), extra_name, extra_value);
    free(text);
    return ok;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *code,
                                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *code,
                                   const char *fmt, ...)
{
    char msg[ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *hname = NULL, *hval = NULL;
    if (status == MHD_HTTP_UNAUTHORIZED)
        hname = MHD_HTTP_HEADER_WWW_AUTHENTICATE, hval = "Bearer realm=\"xfed admin\"";
    return reply_json(c, status, json_pack("{s:s, s:s}", "error", code, "message", msg), hname,
                      hval);
}

static enum MHD_Result reply_store_error(xf_api *api, struct MHD_Connection *c)
{
    return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "store", "store: %s",
                       xf_store_errmsg(api->store));
}

/* {"warnings": [...], "info": [...]} added to obj; refusals into "messages". */
static void add_verdict(json_t *obj, const xf_verdict *v)
{
    json_t *warn = json_array(), *info = json_array(), *refused = json_array();
    for (uint32_t i = 0; i < v->count; i++) {
        json_t *to = v->msg_cls[i] == XF_COMMIT_WARN      ? warn
                     : v->msg_cls[i] == XF_COMMIT_INFO    ? info
                     : v->msg_cls[i] == XF_COMMIT_REFUSED ? refused
                                                          : NULL;
        if (to) json_array_append_new(to, json_string(v->msg[i]));
    }
    if (json_array_size(refused)) json_object_set(obj, "messages", refused);
    json_object_set_new(obj, "warnings", warn);
    json_object_set_new(obj, "info", info);
    json_decref(refused);
}

static enum MHD_Result reply_refused(struct MHD_Connection *c, const xf_verdict *v, bool partner)
{
    json_t *j = json_pack("{s:s}", "error", "refused");
    if (!j) return reply_json(c, MHD_HTTP_UNPROCESSABLE_CONTENT, NULL, NULL, NULL);
    add_verdict(j, v);
    if (!json_object_get(j, "messages")) json_object_set_new(j, "messages", json_array());
    if (partner) json_object_set_new(j, "matrix_row", v->row ? json_integer(v->row) : json_null());
    return reply_json(c, MHD_HTTP_UNPROCESSABLE_CONTENT, j, NULL, NULL);
}

/* ---- request checks ----------------------------------------------------------- */

/* The bearer token, compared in constant time. */
static bool authorized(const xf_api *api, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strnlen(h, XF_ADMIN_TOKEN_MAX + 1);
    while (n > 0 && h[n - 1] == ' ')
        n--;
    return xf_admin_token_equal(h, n, api->token, api->token_len);
}

/* "application/json", any parameters (charset) after ';'. */
static bool is_json_type(struct MHD_Connection *c)
{
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!t) return false;
    while (*t == ' ')
        t++;
    size_t n = strlen(JSON_TYPE);
    if (strncasecmp(t, JSON_TYPE, n) != 0) return false;
    t += n;
    while (*t == ' ')
        t++;
    return *t == '\0' || *t == ';';
}

/* The checks every /api request passes in this order: enabled (403), token
 * (401), and for a body: its type (415), size (413) and syntax (400). Returns
 * false when it has answered; *res then holds the result for MHD. */
static bool admit(xf_api *api, struct MHD_Connection *c, const xf_admin_request *rq, json_t **body,
                  enum MHD_Result *res)
{
    if (!api->enabled) {
        *res = reply_error(c, MHD_HTTP_FORBIDDEN, "disabled",
                           "the admin API is disabled: set [admin] token_file in the config and "
                           "restart xfed");
        return false;
    }
    if (!authorized(api, c)) {
        *res = reply_error(c, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                           "send 'Authorization: Bearer TOKEN' with the token from %s",
                           "[admin] token_file");
        return false;
    }
    if (!body) return true;
    *body = NULL;
    if (!is_json_type(c)) {
        *res = reply_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                           "the body must be sent as Content-Type: application/json");
        return false;
    }
    if (rq->body_too_large) {
        *res = reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                           "the body is larger than %d bytes", XF_ADMIN_BODY_MAX);
        return false;
    }
    if (!rq->body || rq->body_len == 0) {
        *res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request", "a JSON object is required");
        return false;
    }
    json_error_t je;
    *body = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!*body) {
        *res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_json",
                           "malformed JSON at line %d, "
                           "column %d: %s",
                           je.line, je.column, je.text);
        return false;
    }
    if (!json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        *res =
            reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request", "the body must be a JSON object");
        return false;
    }
    return true;
}

/* ---- local domains (re-read per change, as xfedctl reads its config) ------------ */

typedef struct {
    xf_config cfg;
    const char *names[XF_LOCALS_MAX];
    size_t count;
} locals;

static locals *locals_load(const xf_api *api, char *err, size_t errlen)
{
    locals *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!api->config_path[0]) return l;
    if (!xf_config_load(api->config_path, &l->cfg, err, errlen)) {
        free(l);
        return NULL;
    }
    l->count = xf_config_local_names(&l->cfg, l->names);
    return l;
}

/* ---- partners ----------------------------------------------------------------- */

typedef struct {
    json_t *arr;
    uint32_t n;
    char damaged[ERR_MAX];
} list_ctx;

static int list_one(const xf_partner *p, const char *load_error, void *arg)
{
    list_ctx *l = arg;
    if (load_error) {
        snprintf(l->damaged, sizeof l->damaged, "partner %s: damaged record: %s", p->domain,
                 load_error);
        return 1;
    }
    json_array_append_new(l->arr, xf_partner_json(p));
    return ++l->n == LIST_MAX;
}

static enum MHD_Result partners_list(xf_api *api, struct MHD_Connection *c)
{
    list_ctx l = {.arr = json_array()};
    if (!l.arr) return reply_json(c, MHD_HTTP_OK, NULL, NULL, NULL);
    if (xf_store_partner_each(api->store, list_one, &l) != XF_STORE_OK) {
        json_decref(l.arr);
        return reply_store_error(api, c);
    }
    if (l.damaged[0]) {
        json_decref(l.arr);
        return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "store", "%s", l.damaged);
    }
    /* The header tells a client that more partners exist than one listing holds. */
    return reply_json(c, MHD_HTTP_OK, l.arr, l.n == LIST_MAX ? "X-Xfed-Truncated" : NULL, "1");
}

typedef struct {
    const xf_partner_edits *edits;
    bool edited;        /* the store found (or could create) the partner */
    xf_partner *result; /* the partner as committed */
} commit_ctx;

static void commit_edit(xf_partner *p, void *arg, xf_verdict *v)
{
    commit_ctx *cc = arg;
    cc->edited = true;
    xf_partner_apply(p, (void *)cc->edits, v);
    memcpy(cc->result, p, sizeof *p);
}

/* The committed partner and the verdict's notes: the 200/201 body. */
static json_t *committed_body(const xf_partner *p, const xf_verdict *v)
{
    json_t *j = json_pack("{s:o, s:i}", "partner", xf_partner_json(p), "matrix_row", v->row);
    if (j) add_verdict(j, v);
    return j;
}

/* Commits a create (POST) or a change (PUT) of `domain`, already normalized. */
static enum MHD_Result partner_commit(xf_api *api, struct MHD_Connection *c, const char *domain,
                                      bool create, const xf_partner_edits *e)
{
    char err[ERR_MAX];
    locals *l = locals_load(api, err, sizeof err);
    if (!l) return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "config", "config: %s", err);
    commit_ctx cc = {.edits = e, .result = malloc(sizeof(xf_partner))};
    if (!cc.result) {
        free(l);
        return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    }
    xf_verdict v;
    xf_verdict_init(&v);
    xf_store_rc rc = xf_store_partner_commit(api->store, domain, create, commit_edit, &cc, l->names,
                                             l->count, &v);
    free(l);
    enum MHD_Result res;
    if (rc == XF_STORE_OK) {
        xf_log(XF_LOG_INFO, "admin API: partner %s %s (matrix row %d)", domain,
               create ? "created" : "changed", v.row);
        char where[XF_DOMAIN_MAX + 32];
        snprintf(where, sizeof where, "/api/partners/%s", domain);
        res = reply_json(c, create ? MHD_HTTP_CREATED : MHD_HTTP_OK, committed_body(cc.result, &v),
                         create ? MHD_HTTP_HEADER_LOCATION : NULL, where);
    } else if (rc == XF_STORE_NOTFOUND) {
        res = reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "%s",
                          v.count ? v.msg[0] : "no such partner");
    } else if (rc == XF_STORE_REFUSED && create && !cc.edited) {
        /* The store refused before editing: the partner exists already. */
        res = reply_error(c, MHD_HTTP_CONFLICT, "exists",
                          "partner '%s' already exists: change it with PUT /api/partners/%s",
                          domain, domain);
    } else if (rc == XF_STORE_REFUSED) {
        res = reply_refused(c, &v, true);
    } else {
        res = reply_store_error(api, c);
    }
    free(cc.result);
    return res;
}

enum MHD_Result xf_api_partners(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq)
{
    xf_api *api = xf_admin_api_of(a);
    enum MHD_Result res;
    json_t *body = NULL;
    bool post = rq->method == XF_ADMIN_POST;
    if (!admit(api, c, rq, post ? &body : NULL, &res)) return res;
    if (!post) return partners_list(api, c);
    xf_partner_edits *e = calloc(1, sizeof *e);
    const char *domain = NULL;
    char err[ERR_MAX];
    if (!e) {
        res = reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    } else if (!xf_partner_edits_json(body, e, &domain, err, sizeof err)) {
        res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request", "%s", err);
    } else if (!domain) {
        res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "'domain' is required: the partner's primary domain");
    } else {
        char norm[XF_DOMAIN_MAX + 1];
        xf_verdict v;
        xf_verdict_init(&v);
        if (!xf_domain_arg(domain, norm, "primary domain", &v))
            res = reply_refused(c, &v, true);
        else
            res = partner_commit(api, c, norm, true, e);
    }
    free(e);
    json_decref(body);
    return res;
}

/* The {domain} of /api/partners/{domain}, lower-cased; false when it cannot
 * name a partner (answered 404 by the caller). */
static bool path_domain(const char *rest, char norm[XF_DOMAIN_MAX + 1], char *why, size_t n)
{
    if (strchr(rest, '/') || strlen(rest) > XF_DOMAIN_MAX) {
        snprintf(why, n, "no partner '%.64s'", rest);
        return false;
    }
    char reason[ERR_MAX / 2];
    if (!xf_domain_normalize(rest, norm, reason, sizeof reason)) {
        snprintf(why, n, "no partner '%.64s': %s", rest, reason);
        return false;
    }
    return true;
}

static enum MHD_Result partner_not_found(xf_api *api, struct MHD_Connection *c, const char *d)
{
    char owner[XF_DOMAIN_MAX + 1];
    if (xf_store_partner_owner(api->store, d, owner) == XF_STORE_OK)
        return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found",
                           "no partner '%s': it is an additional domain of '%s'", d, owner);
    return reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no partner '%s'", d);
}

static enum MHD_Result partner_get(xf_api *api, struct MHD_Connection *c, const char *d)
{
    xf_partner *p = malloc(sizeof *p);
    if (!p) return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    xf_store_rc rc = xf_store_partner_get(api->store, d, p);
    enum MHD_Result res = rc == XF_STORE_OK
                              ? reply_json(c, MHD_HTTP_OK, xf_partner_json(p), NULL, NULL)
                          : rc == XF_STORE_NOTFOUND ? partner_not_found(api, c, d)
                                                    : reply_store_error(api, c);
    free(p);
    return res;
}

static enum MHD_Result partner_remove(xf_api *api, struct MHD_Connection *c, const char *d)
{
    xf_store_rc rc = xf_store_partner_remove(api->store, d);
    if (rc == XF_STORE_NOTFOUND) return partner_not_found(api, c, d);
    if (rc != XF_STORE_OK) return reply_store_error(api, c);
    xf_log(XF_LOG_INFO, "admin API: partner %s removed", d);
    return reply_json(c, MHD_HTTP_OK, json_pack("{s:s, s:b}", "domain", d, "removed", 1), NULL,
                      NULL);
}

static enum MHD_Result partner_change(xf_api *api, struct MHD_Connection *c, const char *d,
                                      const json_t *body)
{
    xf_partner_edits *e = calloc(1, sizeof *e);
    if (!e) return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    const char *named = NULL;
    char err[ERR_MAX], norm[XF_DOMAIN_MAX + 1], why[ERR_MAX / 2];
    enum MHD_Result res;
    if (!xf_partner_edits_json(body, e, &named, err, sizeof err))
        res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request", "%s", err);
    else if (named && (!xf_domain_normalize(named, norm, why, sizeof why) || strcmp(norm, d) != 0))
        res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "'domain' in the body must be the domain in the path ('%s'); a primary "
                          "domain cannot be renamed",
                          d);
    else if (e->set == 0 && e->nadd == 0 && e->ndel == 0)
        res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request", "nothing to change");
    else
        res = partner_commit(api, c, d, false, e);
    free(e);
    return res;
}

enum MHD_Result xf_api_partner(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq)
{
    xf_api *api = xf_admin_api_of(a);
    enum MHD_Result res;
    json_t *body = NULL;
    bool put = rq->method == XF_ADMIN_PUT;
    if (!admit(api, c, rq, put ? &body : NULL, &res)) return res;
    char d[XF_DOMAIN_MAX + 1], why[ERR_MAX];
    if (!path_domain(rq->rest, d, why, sizeof why))
        res = reply_error(c, MHD_HTTP_NOT_FOUND, "not_found", "%s", why);
    else if (put)
        res = partner_change(api, c, d, body);
    else if (rq->method == XF_ADMIN_DELETE)
        res = partner_remove(api, c, d);
    else
        res = partner_get(api, c, d);
    json_decref(body);
    return res;
}

/* ---- gateway ------------------------------------------------------------------ */

enum MHD_Result xf_api_gateway(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq)
{
    xf_api *api = xf_admin_api_of(a);
    enum MHD_Result res;
    json_t *body = NULL;
    bool put = rq->method == XF_ADMIN_PUT;
    if (!admit(api, c, rq, put ? &body : NULL, &res)) return res;
    xf_gateway g;
    if (!put) {
        if (xf_store_gateway_get(api->store, &g) != XF_STORE_OK) return reply_store_error(api, c);
        res = reply_json(c, MHD_HTTP_OK, xf_gateway_json(&g), NULL, NULL);
        explicit_bzero(&g, sizeof g);
        return res;
    }
    xf_gateway_edits e;
    xf_gateway_edits_init(&e);
    int changes = 0;
    char err[ERR_MAX];
    xf_verdict v;
    xf_verdict_init(&v);
    if (!xf_gateway_edits_json(body, &e, &changes, err, sizeof err)) {
        res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request", "%s", err);
    } else if (changes == 0) {
        res = reply_error(c, MHD_HTTP_BAD_REQUEST, "bad_request", "nothing to change");
    } else {
        xf_store_rc rc = xf_store_gateway_commit(api->store, xf_gateway_apply, &e, &v);
        if (rc == XF_STORE_REFUSED) {
            res = reply_refused(c, &v, false);
        } else if (rc != XF_STORE_OK || xf_store_gateway_get(api->store, &g) != XF_STORE_OK) {
            res = reply_store_error(api, c);
        } else {
            xf_log(XF_LOG_INFO, "admin API: gateway settings changed");
            json_t *j = json_pack("{s:o}", "gateway", xf_gateway_json(&g));
            if (j) add_verdict(j, &v);
            explicit_bzero(&g, sizeof g);
            res = reply_json(c, MHD_HTTP_OK, j, NULL, NULL);
        }
    }
    json_decref(body); /* the passphrase, if any, went with it */
    return res;
}

/* ---- status and matrix ---------------------------------------------------------- */

/* "2024-05-01T12:00:00Z", or JSON null for 0 (never). */
static json_t *time_json(int64_t unix_s)
{
    if (unix_s <= 0) return json_null();
    time_t t = (time_t)unix_s;
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&t, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(buf);
}

static json_t *method_json(unsigned method)
{
    if (method & XF_METHOD_SASL_TLS) return json_string("sasl_tls");
    if (method & XF_METHOD_DB_TLS) return json_string("dialback_tls");
    if (method & XF_METHOD_DB_TCP) return json_string("dialback_tcp");
    return json_null();
}

static json_t *partner_status_json(const xf_api *api, const xf_partner *p)
{
    xf_pstatus_view st;
    if (!api->status || !xf_pstatus_get(api->status, p->domain, &st)) memset(&st, 0, sizeof st);
    json_t *failure =
        st.last_failure > 0
            ? json_pack("{s:o, s:s}", "time", time_json(st.last_failure), "reason", st.reason)
            : json_null();
    const xf_matrix_row_t *row = xf_matrix_row(p->tls, p->sasl, p->dialback);
    return json_pack("{s:s, s:i, s:o, s:I, s:I, s:o, s:o, s:o}", "domain", p->domain, "matrix_row",
                     row->number, "methods_allowed", xf_methods_json(row->methods), "streams_in",
                     (json_int_t)st.streams_in, "streams_out", (json_int_t)st.streams_out, "method",
                     method_json(st.method), "last_success", time_json(st.last_success),
                     "last_failure", failure);
}

enum MHD_Result xf_api_status(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq)
{
    xf_api *api = xf_admin_api_of(a);
    enum MHD_Result res;
    if (!admit(api, c, rq, NULL, &res)) return res;
    json_t *list = json_array();
    uint64_t version = 0;
    uint32_t count = 0;
    if (api->rcu && list) {
        /* A reader slot of our own: the snapshot stays valid until offline. */
        const xf_snapshot *s = xf_rcu_online(api->rcu, api->rcu_slot);
        if (s) {
            version = xf_snapshot_version(s);
            count = xf_snapshot_count(s);
            for (uint32_t i = 0; i < count && i < LIST_MAX; i++)
                json_array_append_new(list, partner_status_json(api, xf_snapshot_partner(s, i)));
        }
        xf_rcu_offline(api->rcu, api->rcu_slot);
    }
    json_t *j = json_pack("{s:I, s:I, s:I, s:o}", "snapshot_version", (json_int_t)version,
                          "partners_active", (json_int_t)count, "partners_skipped",
                          (json_int_t)xf_metrics_get(api->metrics, XF_METRIC_PARTNERS_SKIPPED),
                          "partners", list);
    return reply_json(c, MHD_HTTP_OK, j, NULL, NULL);
}

enum MHD_Result xf_api_matrix(xf_admin *a, struct MHD_Connection *c, const xf_admin_request *rq)
{
    xf_api *api = xf_admin_api_of(a);
    enum MHD_Result res;
    if (!admit(api, c, rq, NULL, &res)) return res;
    return reply_json(c, MHD_HTTP_OK, xf_matrix_json(), NULL, NULL);
}
