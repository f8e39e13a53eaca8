/* xfedctl: XMPP federated partners and gateway settings (spec §2). Mirrors
 * New/Set/Get/Remove-CsXmppAllowedPartner and Set/Get-CsXmppGatewayConfiguration;
 * `internal-config` prints the internal servers' configuration for xfed's
 * XEP-0114 component links.
 *
 * Exit status: 0 committed (or found), 1 refused by validation or not found
 * (nothing saved), 2 usage error, 3 store error.
 */
#include "config.h"
#include "partner.h"
#include "partner_json.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_COMMITTED = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_STORE = 3 };

#define DEFAULT_CONFIG "/etc/xfed/xfed.conf"
#define DEFAULT_STORE  "/var/lib/xfed/xfed.db"

static const char usage_main[] =
    "usage: xfedctl [--store PATH | --config FILE] COMMAND ...\n"
    "\n"
    "XMPP federated partners and gateway settings of xfed.\n"
    "\n"
    "commands:\n"
    "  partner new DOMAIN [options]      add a partner (New-CsXmppAllowedPartner)\n"
    "  partner set DOMAIN [options]      change a partner (Set-CsXmppAllowedPartner)\n"
    "  partner get [DOMAIN] [--json]     show one or all partners (Get-CsXmppAllowedPartner)\n"
    "  partner remove DOMAIN             remove a partner (Remove-CsXmppAllowedPartner)\n"
    "  gateway get [--json]              show gateway settings (Get-CsXmppGatewayConfiguration)\n"
    "  gateway set [options]             change gateway settings\n"
    "  internal-config --prosody|--ejabberd [--internal NAME]\n"
    "                                    the internal server's configuration for xfed's\n"
    "                                    component links (needs the config)\n"
    "\n"
    "  --store PATH    the SQLite store to use\n"
    "  --config FILE   an xfed config: its [xfed] store, and its local domains (which no\n"
    "                  partner may claim)\n"
    "  Without either: $XFED_CONFIG, $XFED_STORE, " DEFAULT_CONFIG " if it exists, else\n"
    "  " DEFAULT_STORE ".\n"
    "\n"
    "exit status: 0 committed, 1 refused by validation or not found (nothing saved),\n"
    "             2 usage error, 3 store error.\n"
    "'xfedctl partner new --help' etc. describe each command.\n";

static const char partner_options[] =
    "  --description TEXT               free notes, at most 1024 characters\n"
    "  --additional-domains D1,D2,...   the partner's other domains (replaces the list)\n"
    "  --partner-type TYPE              federated | public-verified | public-unverified\n"
    "  --tls VALUE                      TLS negotiation: required | optional | not-supported\n"
    "  --sasl VALUE                     SASL EXTERNAL negotiation: required | optional |\n"
    "                                   not-supported\n"
    "  --dialback true|false            server dialback (XEP-0220)\n"
    "  --connection-limit N             streams per direction, 0..65535 (0 = the gateway's\n"
    "                                   partner connection limit)\n"
    "  --keepalive true|false           whitespace keepalives on this partner's streams\n"
    "  --proxy-fqdn HOST[:PORT]         connect there instead of resolving DNS SRV\n"
    "  Values are case-insensitive; the cmdlet spellings (PublicVerified, NotSupported)\n"
    "  are accepted too.\n";

static const char usage_partner_new[] =
    "usage: xfedctl [--store PATH | --config FILE] partner new DOMAIN [options]\n"
    "\n"
    "Adds a partner. Defaults: public-unverified, TLS required, SASL optional, dialback\n"
    "true (matrix row 7), connection limit 0, keepalive true. The (TLS, SASL, dialback)\n"
    "combination is checked against the negotiation matrix: some combinations print a\n"
    "warning or note, and those that leave no way to authenticate are refused (exit 1,\n"
    "nothing saved).\n\noptions:\n";
static const char usage_partner_set[] =
    "usage: xfedctl [--store PATH | --config FILE] partner set DOMAIN [options]\n"
    "           [--add-domain D]... [--remove-domain D]... [--clear-domains]\n"
    "\n"
    "Changes the given settings of an existing partner; the others keep their values.\n"
    "The result is validated as a whole (negotiation matrix, domain uniqueness) and\n"
    "committed atomically, or refused with nothing saved.\n\noptions:\n";
static const char usage_partner_set_extra[] =
    "  --add-domain D                   add one additional domain\n"
    "  --remove-domain D                remove one additional domain\n"
    "  --clear-domains                  remove every additional domain\n";
static const char usage_partner_get[] =
    "usage: xfedctl [--store PATH | --config FILE] partner get [DOMAIN] [--json]\n"
    "\n"
    "Shows one partner (exit 1 if there is none), or every partner without DOMAIN.\n"
    "  --json    JSON: an object for one partner, an array for all\n";
static const char usage_partner_remove[] =
    "usage: xfedctl [--store PATH | --config FILE] partner remove DOMAIN\n"
    "\n"
    "Removes a partner and its additional domains (exit 1 if there is none). A running\n"
    "xfed closes the partner's streams within 2 s.\n";
static const char usage_gateway_get[] =
    "usage: xfedctl [--store PATH | --config FILE] gateway get [--json]\n"
    "\n"
    "Shows the gateway settings. The dialback passphrase itself is never printed.\n";
static const char usage_gateway_set[] =
    "usage: xfedctl [--store PATH | --config FILE] gateway set [options]\n"
    "\n"
    "options (ranges inclusive; defaults in brackets):\n"
    "  --connection-limit N               all partner streams together, 1..1000000 [1000]\n"
    "  --partner-connection-limit N       streams per partner per direction, 1..65535 [20]\n"
    "  --dialback-passphrase S            dialback secret shared by a pool of edge hosts;\n"
    "                                     empty = a random secret per start [empty]\n"
    "  --keepalive-interval SEC           10..86400 [300]\n"
    "  --stream-establishment-timeout SEC 5..3600 [60]\n"
    "  --stream-inactivity-timeout SEC    10..604800 [600]\n"
    "  --log-message-bodies true|false    [false]\n";
static const char usage_internal_config[] =
    "usage: xfedctl [--config FILE] internal-config --prosody|--ejabberd [--internal NAME]\n"
    "\n"
    "Prints the snippet to paste into an internal XMPP server's configuration so that it\n"
    "accepts xfed's XEP-0114 component links: one component per domain of every partner\n"
    "in the store now (primary and additional, sorted), with the host, port and secret of\n"
    "the config's [internal NAME] section. Run it again after partners or their domains\n"
    "change.\n"
    "  --prosody         Prosody 0.12: component_ports and component_interface (global\n"
    "                    section) and one Component block per partner domain\n"
    "  --ejabberd        ejabberd 23.x: one ejabberd_service item for the listen: list,\n"
    "                    serving every partner domain\n"
    "  --internal NAME   which [internal NAME] section (default: the first one)\n"
    "It needs the config (--config, else $XFED_CONFIG, else " DEFAULT_CONFIG " if it\n"
    "exists); the store is the config's unless --store is given.\n";

/* ---- store selection ---------------------------------------------------- */

typedef struct {
    const char *store_path;
    xf_config *cfg; /* NULL without a config */
    const char *locals[XF_LOCALS_MAX];
    size_t nlocals;
    xf_store *store;
} ctl;

static int open_store(ctl *c, const char *store_opt, const char *config_opt)
{
    static xf_config cfg;
    char err[1024];
    if (!store_opt && !config_opt) {
        config_opt = getenv("XFED_CONFIG");
        if (!config_opt) store_opt = getenv("XFED_STORE");
        if (!config_opt && !store_opt) {
            if (access(DEFAULT_CONFIG, R_OK) == 0) {
                config_opt = DEFAULT_CONFIG;
            } else {
                store_opt = DEFAULT_STORE;
                mkdir("/var/lib/xfed", 0750); /* the default store's folder */
            }
        }
    }
    if (config_opt) {
        if (!xf_config_load(config_opt, &cfg, err, sizeof err)) {
            fprintf(stderr, "xfedctl: config: %s\n", err);
            return EXIT_STORE;
        }
        c->cfg = &cfg;
        c->nlocals = xf_config_local_names(&cfg, c->locals);
        if (!store_opt) store_opt = cfg.store;
    }
    c->store_path = store_opt;
    if (xf_store_open(store_opt, &c->store, err, sizeof err) != XF_STORE_OK) {
        fprintf(stderr, "xfedctl: store: %s\n", err);
        return EXIT_STORE;
    }
    return EXIT_COMMITTED;
}

static int print_verdict(const xf_verdict *v, xf_store_rc rc, const char *what)
{
    for (uint32_t i = 0; i < v->count; i++)
        fprintf(stderr, "xfedctl: %s: %s\n", xf_commit_class_name(v->msg_cls[i]), v->msg[i]);
    if (rc == XF_STORE_OK) return EXIT_COMMITTED;
    if (rc == XF_STORE_ERROR) return EXIT_STORE;
    fprintf(stderr, "xfedctl: %s refused; nothing was saved\n", what);
    return EXIT_REFUSED;
}

/* ---- partner commands ----------------------------------------------------- */

static int bad_value(const char *opt, const char *val, const char *expected)
{
    fprintf(stderr, "xfedctl: %s: '%s' is not %s\n", opt, val, expected);
    return EXIT_USAGE;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end || errno || v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

/* Parses partner options from argv[optind..]; returns EXIT_COMMITTED or EXIT_USAGE. */
static int parse_partner_opts(int argc, char **argv, bool is_set, xf_partner_edits *e,
                              const char **domain, bool *help)
{
    static const struct option opts[] = {
        {"description", required_argument, NULL, 'D'},
        {"additional-domains", required_argument, NULL, 'A'},
        {"partner-type", required_argument, NULL, 'T'},
        {"tls", required_argument, NULL, 't'},
        {"sasl", required_argument, NULL, 's'},
        {"dialback", required_argument, NULL, 'b'},
        {"connection-limit", required_argument, NULL, 'l'},
        {"keepalive", required_argument, NULL, 'k'},
        {"proxy-fqdn", required_argument, NULL, 'p'},
        {"add-domain", required_argument, NULL, 'a'},
        {"remove-domain", required_argument, NULL, 'r'},
        {"clear-domains", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        const char *name = argv[optind - 1];
        if (!is_set && (c == 'a' || c == 'r' || c == 'C')) {
            fprintf(stderr, "xfedctl: %s is only for 'partner set'\n", name);
            return EXIT_USAGE;
        }
        switch (c) {
        case 'D': e->set |= XF_EDIT_DESCRIPTION, e->description = optarg; break;
        case 'A': e->set |= XF_EDIT_DOMAINS, e->domains_csv = optarg; break;
        case 'T':
            if (!xf_partner_type_parse(optarg, &e->type))
                return bad_value("--partner-type", optarg,
                                 "federated, public-verified or public-unverified");
            e->set |= XF_EDIT_TYPE;
            break;
        case 't':
            if (!xf_neg_parse(optarg, &e->tls))
                return bad_value("--tls", optarg, "required, optional or not-supported");
            e->set |= XF_EDIT_TLS;
            break;
        case 's':
            if (!xf_neg_parse(optarg, &e->sasl))
                return bad_value("--sasl", optarg, "required, optional or not-supported");
            e->set |= XF_EDIT_SASL;
            break;
        case 'b':
            if (!xf_bool_parse(optarg, &e->dialback))
                return bad_value("--dialback", optarg, "true or false");
            e->set |= XF_EDIT_DIALBACK;
            break;
        case 'k':
            if (!xf_bool_parse(optarg, &e->keepalive))
                return bad_value("--keepalive", optarg, "true or false");
            e->set |= XF_EDIT_KEEPALIVE;
            break;
        case 'l':
            if (!parse_u32(optarg, &e->limit))
                return bad_value("--connection-limit", optarg, "a number 0..65535");
            e->set |= XF_EDIT_LIMIT;
            break;
        case 'p': e->set |= XF_EDIT_PROXY, e->proxy = optarg; break;
        case 'a':
            if (e->nadd == XF_EDIT_DOMAIN_OPS_MAX)
                return bad_value("--add-domain", optarg, "allowed");
            e->add[e->nadd++] = optarg;
            break;
        case 'r':
            if (e->ndel == XF_EDIT_DOMAIN_OPS_MAX)
                return bad_value("--remove-domain", optarg, "allowed");
            e->del[e->ndel++] = optarg;
            break;
        case 'C': e->set |= XF_EDIT_CLEAR; break;
        case 'h': *help = true; return EXIT_COMMITTED;
        default:
            if (optopt > ' ' && optopt < 127)
                fprintf(stderr, "xfedctl: unknown option '-%c' or missing value\n", optopt);
            else
                fprintf(stderr, "xfedctl: unknown option '%s' or missing value\n",
                        argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    /* GNU getopt moved the positional DOMAIN behind the options. */
    for (; optind < argc; optind++) {
        if (*domain) {
            fprintf(stderr, "xfedctl: unexpected argument '%s'\n", argv[optind]);
            return EXIT_USAGE;
        }
        *domain = argv[optind];
    }
    return EXIT_COMMITTED;
}

static void partner_print(const xf_partner *p)
{
    const xf_matrix_row_t *row = xf_matrix_row(p->tls, p->sasl, p->dialback);
    printf("Identity          : %s\n", p->domain);
    printf("Description       : %s\n", p->description);
    printf("AdditionalDomains : ");
    for (uint32_t i = 0; i < p->domain_count; i++)
        printf("%s%s", i ? ", " : "", p->domains[i]);
    printf("\nPartnerType       : %s\n", xf_partner_type_name(p->type));
    printf("TlsNegotiation    : %s\n", xf_neg_name(p->tls));
    printf("SaslNegotiation   : %s\n", xf_neg_name(p->sasl));
    printf("EnableDialback    : %s\n", p->dialback ? "true" : "false");
    printf("ConnectionLimit   : %u\n", p->connection_limit);
    printf("EnableKeepalive   : %s\n", p->keepalive ? "true" : "false");
    printf("ProxyFqdn         : %s\n", p->proxy_fqdn);
    printf("MatrixRow         : %d (methods:%s%s%s%s)\n", row->number,
           row->methods & XF_METHOD_SASL_TLS ? " SASL/TLS" : "",
           row->methods & XF_METHOD_DB_TLS ? " DB/TLS" : "",
           row->methods & XF_METHOD_DB_TCP ? " DB/TCP" : "", row->methods ? "" : " none, refused");
}

typedef struct {
    json_t *arr;
    int n;
    bool damaged;
} list_ctx;

static int list_one(const xf_partner *p, const char *load_error, void *arg)
{
    list_ctx *l = arg;
    if (load_error) {
        fprintf(stderr, "xfedctl: partner %s: damaged record: %s\n", p->domain, load_error);
        l->damaged = true;
        return 0;
    }
    if (l->arr) {
        json_array_append_new(l->arr, xf_partner_json(p));
    } else {
        if (l->n) printf("\n");
        partner_print(p);
    }
    l->n++;
    return 0;
}

static int emit_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s) return EXIT_STORE;
    puts(s);
    free(s);
    return EXIT_COMMITTED;
}

static int cmd_partner_get(ctl *c, const char *domain, bool json)
{
    if (!domain) {
        list_ctx l = {json ? json_array() : NULL, 0, false};
        if (xf_store_partner_each(c->store, list_one, &l) != XF_STORE_OK) {
            fprintf(stderr, "xfedctl: store: %s\n", xf_store_errmsg(c->store));
            json_decref(l.arr);
            return EXIT_STORE;
        }
        if (json)
            emit_json(l.arr);
        else if (l.n == 0)
            printf("no partners\n");
        return l.damaged ? EXIT_STORE : EXIT_COMMITTED;
    }
    char norm[XF_DOMAIN_MAX + 1], why[300];
    if (!xf_domain_normalize(domain, norm, why, sizeof why)) {
        fprintf(stderr, "xfedctl: %s\n", why);
        return EXIT_REFUSED;
    }
    xf_partner *p = malloc(sizeof *p);
    xf_store_rc rc = p ? xf_store_partner_get(c->store, norm, p) : XF_STORE_ERROR;
    int ret = EXIT_COMMITTED;
    if (rc == XF_STORE_NOTFOUND) {
        char owner[XF_DOMAIN_MAX + 1];
        if (xf_store_partner_owner(c->store, norm, owner) == XF_STORE_OK)
            fprintf(stderr, "xfedctl: no partner '%s': it is an additional domain of '%s'\n", norm,
                    owner);
        else
            fprintf(stderr, "xfedctl: no partner '%s'\n", norm);
        ret = EXIT_REFUSED;
    } else if (rc != XF_STORE_OK) {
        fprintf(stderr, "xfedctl: store: %s\n", p ? xf_store_errmsg(c->store) : "out of memory");
        ret = EXIT_STORE;
    } else if (json) {
        ret = emit_json(xf_partner_json(p));
    } else {
        partner_print(p);
    }
    free(p);
    return ret;
}

static int cmd_partner(ctl *c, int argc, char **argv, const char *store_opt, const char *config_opt)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(usage_main, argc < 1 ? stderr : stdout);
        return argc < 1 ? EXIT_USAGE : EXIT_COMMITTED;
    }
    const char *verb = argv[0];
    bool is_new = strcmp(verb, "new") == 0, is_set = strcmp(verb, "set") == 0;
    bool is_get = strcmp(verb, "get") == 0, is_remove = strcmp(verb, "remove") == 0;
    if (!is_new && !is_set && !is_get && !is_remove) {
        fprintf(stderr, "xfedctl: unknown command 'partner %s' (new, set, get, remove)\n", verb);
        return EXIT_USAGE;
    }
    const char *domain = NULL;
    bool help = false, json = false;
    xf_partner_edits e = {0};
    if (is_get || is_remove) {
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
                help = true;
            else if (is_get && strcmp(argv[i], "--json") == 0)
                json = true;
            else if (argv[i][0] == '-' || domain) {
                fprintf(stderr, "xfedctl: unexpected argument '%s'\n", argv[i]);
                return EXIT_USAGE;
            } else
                domain = argv[i];
        }
    } else {
        int rc = parse_partner_opts(argc, argv, is_set, &e, &domain, &help);
        if (rc != EXIT_COMMITTED) return rc;
    }
    if (help) {
        if (is_new) printf("%s%s", usage_partner_new, partner_options);
        if (is_set) printf("%s%s%s", usage_partner_set, partner_options, usage_partner_set_extra);
        if (is_get) fputs(usage_partner_get, stdout);
        if (is_remove) fputs(usage_partner_remove, stdout);
        return EXIT_COMMITTED;
    }
    if (!domain && !is_get) {
        fprintf(stderr, "xfedctl: partner %s needs a DOMAIN (see 'xfedctl partner %s --help')\n",
                verb, verb);
        return EXIT_USAGE;
    }
    if (is_set && e.set == 0 && e.nadd == 0 && e.ndel == 0) {
        fprintf(stderr, "xfedctl: partner set: nothing to change (see --help)\n");
        return EXIT_USAGE;
    }
    int rc = open_store(c, store_opt, config_opt);
    if (rc != EXIT_COMMITTED) return rc;
    if (is_get) return cmd_partner_get(c, domain, json);

    xf_verdict v;
    xf_verdict_init(&v);
    char norm[XF_DOMAIN_MAX + 1];
    if (!xf_domain_arg(domain, norm, "primary domain", &v))
        return print_verdict(&v, XF_STORE_REFUSED, "the change was");

    if (is_remove) {
        xf_store_rc r = xf_store_partner_remove(c->store, norm);
        if (r == XF_STORE_OK) {
            printf("partner %s removed\n", norm);
            return EXIT_COMMITTED;
        }
        if (r == XF_STORE_NOTFOUND) {
            char owner[XF_DOMAIN_MAX + 1];
            if (xf_store_partner_owner(c->store, norm, owner) == XF_STORE_OK)
                fprintf(stderr,
                        "xfedctl: no partner '%s': it is an additional domain of '%s' (use "
                        "'partner set %s --remove-domain %s'); nothing was removed\n",
                        norm, owner, owner, norm);
            else
                fprintf(stderr, "xfedctl: no partner '%s'; nothing was removed\n", norm);
            return EXIT_REFUSED;
        }
        fprintf(stderr, "xfedctl: store: %s\n", xf_store_errmsg(c->store));
        return EXIT_STORE;
    }
    xf_store_rc r = xf_store_partner_commit(c->store, norm, is_new, xf_partner_apply, &e, c->locals,
                                            c->nlocals, &v);
    if (r == XF_STORE_ERROR) fprintf(stderr, "xfedctl: store: %s\n", xf_store_errmsg(c->store));
    if (r == XF_STORE_NOTFOUND) r = XF_STORE_REFUSED;
    rc = print_verdict(&v, r, is_new ? "the new partner was" : "the change was");
    if (rc == EXIT_COMMITTED) printf("partner %s committed (matrix row %d)\n", norm, v.row);
    return rc;
}

/* ---- gateway commands ------------------------------------------------------ */

static int cmd_gateway(ctl *c, int argc, char **argv, const char *store_opt, const char *config_opt)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(usage_main, argc < 1 ? stderr : stdout);
        return argc < 1 ? EXIT_USAGE : EXIT_COMMITTED;
    }
    bool is_get = strcmp(argv[0], "get") == 0, is_set = strcmp(argv[0], "set") == 0;
    if (!is_get && !is_set) {
        fprintf(stderr, "xfedctl: unknown command 'gateway %s' (get, set)\n", argv[0]);
        return EXIT_USAGE;
    }
    bool json = false;
    xf_gateway_edits e;
    xf_gateway_edits_init(&e);
    int changes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(is_get ? usage_gateway_get : usage_gateway_set, stdout);
            return EXIT_COMMITTED;
        }
        if (is_get && strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (!is_set || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "xfedctl: unexpected argument '%s'\n", a);
            return EXIT_USAGE;
        }
        const char *name = a + 2, *val = strchr(name, '=');
        size_t nlen = val ? (size_t)(val - name) : strlen(name);
        if (val)
            val++;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(stderr, "xfedctl: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        bool known = false;
        for (size_t f = 0; f < xf_gateway_field_count; f++) {
            if (strlen(xf_gateway_fields[f].name) != nlen ||
                strncmp(xf_gateway_fields[f].name, name, nlen) != 0)
                continue;
            if (!parse_u32(val, &e.val[f])) return bad_value(a, val, "a whole number");
            e.has[f] = known = true;
        }
        if (!known && nlen == 19 && strncmp(name, "dialback-passphrase", nlen) == 0) {
            e.passphrase = val;
            known = true;
        }
        if (!known && nlen == 18 && strncmp(name, "log-message-bodies", nlen) == 0) {
            bool b;
            if (!xf_bool_parse(val, &b)) return bad_value(a, val, "true or false");
            e.log_bodies = b;
            known = true;
        }
        if (!known) {
            fprintf(stderr, "xfedctl: unknown option '--%.*s' (see 'xfedctl gateway set --help')\n",
                    (int)nlen, name);
            return EXIT_USAGE;
        }
        changes++;
    }
    if (is_set && changes == 0) {
        fprintf(stderr, "xfedctl: gateway set: nothing to change (see --help)\n");
        return EXIT_USAGE;
    }
    int rc = open_store(c, store_opt, config_opt);
    if (rc != EXIT_COMMITTED) return rc;
    if (is_set) {
        xf_verdict v;
        xf_verdict_init(&v);
        xf_store_rc r = xf_store_gateway_commit(c->store, xf_gateway_apply, &e, &v);
        if (r == XF_STORE_ERROR) fprintf(stderr, "xfedctl: store: %s\n", xf_store_errmsg(c->store));
        rc = print_verdict(&v, r, "the change was");
        if (rc == EXIT_COMMITTED) printf("gateway settings committed\n");
        return rc;
    }
    xf_gateway g;
    if (xf_store_gateway_get(c->store, &g) != XF_STORE_OK) {
        fprintf(stderr, "xfedctl: store: %s\n", xf_store_errmsg(c->store));
        return EXIT_STORE;
    }
    if (json) {
        return emit_json(xf_gateway_json(&g));
    }
    printf("ConnectionLimit            : %u\n", g.connection_limit);
    printf("PartnerConnectionLimit     : %u\n", g.partner_connection_limit);
    printf("DialbackPassphrase         : %s\n",
           g.dialback_passphrase[0] ? "(set)" : "(empty: random per start)");
    printf("KeepAliveInterval          : %u\n", g.keepalive_interval);
    printf("StreamEstablishmentTimeout : %u\n", g.stream_establishment_timeout);
    printf("StreamInactivityTimeout    : %u\n", g.stream_inactivity_timeout);
    printf("LogMessageBodies           : %s\n", g.log_message_bodies ? "true" : "false");
    return EXIT_COMMITTED;
}

/* ---- internal-config ----------------------------------------------------- */

typedef struct {
    char (*names)[XF_DOMAIN_MAX + 1];
    size_t n, cap;
    bool oom;
} domain_list;

static int collect_domains(const xf_partner *p, const char *load_error, void *arg)
{
    domain_list *l = arg;
    if (load_error)
        fprintf(stderr,
                "xfedctl: warning: partner %s: damaged record (%s); its domains are listed as "
                "stored\n",
                p->domain, load_error);
    for (uint32_t i = 0; i <= p->domain_count; i++) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 64;
            void *grown = realloc(l->names, cap * sizeof *l->names);
            if (!grown) {
                l->oom = true;
                return 1;
            }
            l->names = grown, l->cap = cap;
        }
        snprintf(l->names[l->n++], XF_DOMAIN_MAX + 1, "%s", i == 0 ? p->domain : p->domains[i - 1]);
    }
    return 0;
}

static int domain_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* A Lua string literal: backslash and double quote escaped, control bytes as \ddd. */
static void put_lua_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\' || *p == '"')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\%03u", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* A YAML double-quoted scalar: backslash and double quote escaped, control bytes as \xNN. */
static void put_yaml_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\' || *p == '"')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static bool is_ip_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void print_prosody(const xf_internal *in, const domain_list *l)
{
    printf("-- xfed: XEP-0114 component links for [internal %s] (xfedctl internal-config "
           "--prosody)\n",
           in->name);
    if (l->n == 0) {
        printf("-- no partners yet: add one with 'xfedctl partner new DOMAIN', then run this "
               "again\n");
        return;
    }
    printf("-- The two global settings go before the first VirtualHost or Component line of\n"
           "-- prosody.cfg.lua, the Component blocks at its end; then reload Prosody.\n");
    printf("component_ports = { %u }\n", (unsigned)in->addr.port);
    printf("component_interface = ");
    put_lua_string(in->addr.host);
    printf("\n");
    for (size_t i = 0; i < l->n; i++) {
        printf("\nComponent ");
        put_lua_string(l->names[i]);
        printf("\n    component_secret = ");
        put_lua_string(in->secret);
        printf("\n");
    }
}

static void print_ejabberd(const xf_internal *in, const domain_list *l)
{
    printf("# xfed: XEP-0114 component links for [internal %s] (xfedctl internal-config "
           "--ejabberd)\n",
           in->name);
    if (l->n == 0) {
        printf("# no partners yet: add one with 'xfedctl partner new DOMAIN', then run this "
               "again\n");
        return;
    }
    printf("# Add this item to the top-level listen: list of ejabberd.yml (merge it into an\n"
           "# existing listen:), then reload ejabberd.\n");
    printf("listen:\n  -\n    port: %u\n    ip: ", (unsigned)in->addr.port);
    put_yaml_string(in->addr.host);
    printf("\n    module: ejabberd_service\n    hosts:\n");
    for (size_t i = 0; i < l->n; i++) {
        printf("      ");
        put_yaml_string(l->names[i]);
        printf(":\n        password: ");
        put_yaml_string(in->secret);
        printf("\n");
    }
}

static int cmd_internal_config(ctl *c, int argc, char **argv, const char *store_opt,
                               const char *config_opt)
{
    bool prosody = false, ejabberd = false;
    const char *name = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_internal_config, stdout);
            return EXIT_COMMITTED;
        } else if (strcmp(a, "--prosody") == 0) {
            prosody = true;
        } else if (strcmp(a, "--ejabberd") == 0) {
            ejabberd = true;
        } else if (strcmp(a, "--internal") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "xfedctl: --internal needs a value\n");
                return EXIT_USAGE;
            }
            name = argv[++i];
        } else if (strncmp(a, "--internal=", 11) == 0) {
            name = a + 11;
        } else {
            fprintf(stderr,
                    "xfedctl: unexpected argument '%s' (see 'xfedctl internal-config "
                    "--help')\n",
                    a);
            return EXIT_USAGE;
        }
    }
    if (prosody == ejabberd) {
        fprintf(stderr, "xfedctl: internal-config needs one of --prosody or --ejabberd\n");
        return EXIT_USAGE;
    }
    if (!config_opt) config_opt = getenv("XFED_CONFIG");
    if (!config_opt && access(DEFAULT_CONFIG, R_OK) == 0) config_opt = DEFAULT_CONFIG;
    if (!config_opt) {
        fprintf(stderr, "xfedctl: internal-config needs the xfed config for its [internal] "
                        "sections: give --config FILE\n");
        return EXIT_USAGE;
    }

    /* The [internal] section is checked before the store is opened (or created). */
    xf_config *cfg = malloc(sizeof *cfg);
    char err[1024];
    if (!cfg) {
        fprintf(stderr, "xfedctl: out of memory\n");
        return EXIT_STORE;
    }
    if (!xf_config_load(config_opt, cfg, err, sizeof err)) {
        fprintf(stderr, "xfedctl: config: %s\n", err);
        free(cfg);
        return EXIT_STORE;
    }
    const xf_internal *in = NULL;
    if (cfg->internal_count == 0) {
        fprintf(stderr,
                "xfedctl: %s has no [internal NAME] section: add one with the internal "
                "server's host, port and secret (spec §2), then run this again\n",
                config_opt);
        free(cfg);
        return EXIT_USAGE;
    }
    for (uint32_t i = 0; i < cfg->internal_count && name; i++)
        if (strcmp(cfg->internals[i].name, name) == 0) in = &cfg->internals[i];
    if (!name) in = &cfg->internals[0];
    if (!in) {
        fprintf(stderr, "xfedctl: %s has no [internal %s] section; it has:", config_opt, name);
        for (uint32_t i = 0; i < cfg->internal_count; i++)
            fprintf(stderr, "%s %s", i ? "," : "", cfg->internals[i].name);
        fprintf(stderr, "\n");
        free(cfg);
        return EXIT_USAGE;
    }
    if (!is_ip_address(in->addr.host))
        fprintf(stderr,
                "xfedctl: warning: [internal %s] host '%s' is not an IP address; %s needs the "
                "address the internal server listens on\n",
                in->name, in->addr.host,
                prosody ? "Prosody's component_interface" : "ejabberd's ip");

    int rc = open_store(c, store_opt, config_opt);
    if (rc != EXIT_COMMITTED) {
        free(cfg);
        return rc;
    }
    domain_list l = {0};
    if (xf_store_partner_each(c->store, collect_domains, &l) != XF_STORE_OK || l.oom) {
        fprintf(stderr, "xfedctl: store: %s\n",
                l.oom ? "out of memory" : xf_store_errmsg(c->store));
        free(l.names);
        free(cfg);
        return EXIT_STORE;
    }
    if (l.n) qsort(l.names, l.n, sizeof *l.names, domain_cmp); /* names is NULL when empty */
    if (prosody)
        print_prosody(in, &l);
    else
        print_ejabberd(in, &l);
    free(l.names);
    free(cfg);
    return fflush(stdout) == 0 ? EXIT_COMMITTED : EXIT_STORE;
}

int main(int argc, char **argv)
{
    /* Global options may stand anywhere; take them out first. */
    const char *store_opt = NULL, *config_opt = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        const char *val = NULL;
        if (strcmp(argv[i], "--store") == 0 || strcmp(argv[i], "--config") == 0) {
            slot = argv[i][2] == 's' ? &store_opt : &config_opt;
            if (i + 1 == argc) {
                fprintf(stderr, "xfedctl: %s needs a value\n", argv[i]);
                return EXIT_USAGE;
            }
            val = argv[++i];
        } else if (strncmp(argv[i], "--store=", 8) == 0) {
            slot = &store_opt, val = argv[i] + 8;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            slot = &config_opt, val = argv[i] + 9;
        }
        if (slot)
            *slot = val;
        else
            argv[++n] = argv[i];
    }
    argc = n + 1;
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_main, stdout);
        return EXIT_COMMITTED;
    }
    ctl c = {0};
    int rc;
    if (strcmp(argv[1], "partner") == 0)
        rc = cmd_partner(&c, argc - 2, argv + 2, store_opt, config_opt);
    else if (strcmp(argv[1], "gateway") == 0)
        rc = cmd_gateway(&c, argc - 2, argv + 2, store_opt, config_opt);
    else if (strcmp(argv[1], "internal-config") == 0)
        rc = cmd_internal_config(&c, argc - 2, argv + 2, store_opt, config_opt);
    else {
        fprintf(stderr,
                "xfedctl: unknown command '%s' (partner, gateway, internal-config; see --help)\n",
                argv[1]);
        rc = EXIT_USAGE;
    }
    xf_store_close(c.store);
    return rc;
}
