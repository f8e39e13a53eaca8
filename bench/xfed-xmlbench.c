/* xfed-xmlbench: throughput of xfed's XML tokenizer against expat and libxml2 (SAX2 push) on
 * one deterministic, realistic XMPP server-to-server stream, in the same run.
 *
 *   xfed-xmlbench [-n STANZAS] [-r ROUNDS] [-c CHUNK] [-q] [-p] [-m] [-o FILE]
 *   -p: xfed alone, for profiling; -m: messages only; -o FILE: also write the stream to FILE
 *
 * The stream mixes presence (~150 B), messages (250-400 B, bodies with some non-ASCII text and
 * entities) and iq stanzas with nested payloads of 2-8 KB (roster, disco, pubsub). Each parser
 * reads it whole and in CHUNK-byte pieces (default 512). Each round runs every case once, side
 * by side; the best of ROUNDS rounds (default 9) counts. Each
 * parser's callbacks count stanzas (elements closing at depth 1), and the counts must match the
 * generator, so no parser can skip work. xfed runs with its full validation (UTF-8, names,
 * end-tag matching, attribute uniqueness, namespaces) and post-authentication limits.
 * Times are thread CPU time (throughput per core; a shared machine's descheduling is excluded).
 * The last line is machine-readable:
 *   xmlbench xfed_mbps=... expat_mbps=... libxml2_mbps=... ratio_expat=... ratio_libxml2=...
 *            chunked_penalty=...
 */
#include <expat.h>
#include <libxml/parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xml_tok.h"

typedef struct gen {
    char *buf;
    size_t len, cap;
    uint64_t rng;
    long stanzas;
} gen;

static uint32_t rnd(gen *g, uint32_t n)
{
    g->rng = g->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g->rng >> 33) % n;
}

static void put(gen *g, const char *s)
{
    size_t n = strlen(s);
    if (g->len + n > g->cap) {
        g->cap = (g->len + n) * 2;
        g->buf = realloc(g->buf, g->cap);
        if (g->buf == NULL) abort();
    }
    memcpy(g->buf + g->len, s, n);
    g->len += n;
}

static void putf(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void putf(gen *g, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(g, tmp);
}

static const char *const users[] = {"alice", "bob", "carol", "dave", "erin", "frank", "grace"};
static const char *const words[] = {
    "the",   "meeting",          "moved",        "to",
    "three", "o'clock",          "please",       "review",
    "draft", "before",           "lunch",        "thanks",
    "&amp;", "caf\xc3\xa9",      "na\xc3\xafve", "\xe4\xbd\xa0\xe5\xa5\xbd",
    "ok",    "\xf0\x9f\x91\x8d", "&lt;3",        "see",
    "you",   "tomorrow",         "build",        "green"};

static void jid(gen *g, const char *attr, int domain_a)
{
    putf(g, " %s='%s@%s.example.com/%s'", attr, users[rnd(g, 7)], domain_a ? "a" : "b",
         rnd(g, 2) ? "laptop" : "phone-7f3a");
}

static void text(gen *g, uint32_t bytes)
{
    size_t start = g->len;
    while (g->len - start < bytes) {
        put(g, words[rnd(g, sizeof words / sizeof *words)]);
        put(g, " ");
    }
}

static void presence(gen *g)
{
    put(g, "<presence");
    jid(g, "from", 1);
    jid(g, "to", 0);
    putf(g, " id='p%u'>", rnd(g, 100000));
    put(g, rnd(g, 2) ? "<show>away</show>" : "<priority>5</priority>");
    put(g, "</presence>");
}

static void message(gen *g)
{
    put(g, "<message");
    jid(g, "from", 1);
    jid(g, "to", 0);
    putf(g, " type='chat' id='m%u' xml:lang='en'><body>", rnd(g, 1000000));
    text(g, 60 + rnd(g, 150));
    put(g, "</body><active xmlns='http://jabber.org/protocol/chatstates'/>");
    if (rnd(g, 2)) put(g, "<request xmlns='urn:xmpp:receipts'/>");
    put(g, "</message>");
}

static void iq(gen *g)
{
    uint32_t target = 2000 + rnd(g, 6000);
    size_t start = g->len;
    uint32_t kind = rnd(g, 3);
    put(g, "<iq");
    jid(g, "from", 1);
    jid(g, "to", 0);
    putf(g, " type='result' id='q%u'>", rnd(g, 1000000));
    if (kind == 0) {
        put(g, "<query xmlns='jabber:iq:roster' ver='ver14'>");
        while (g->len - start < target) {
            putf(g, "<item jid='%s%u@b.example.com' name='%s %u' subscription='both'>",
                 users[rnd(g, 7)], rnd(g, 1000), users[rnd(g, 7)], rnd(g, 100));
            putf(g, "<group>%s</group></item>", rnd(g, 2) ? "Friends" : "Caf\xc3\xa9 &amp; Co");
        }
        put(g, "</query>");
    } else if (kind == 1) {
        put(g, "<query xmlns='http://jabber.org/protocol/disco#info'>"
               "<identity category='server' type='im' name='Example'/>");
        while (g->len - start < target) {
            putf(g, "<feature var='urn:xmpp:feature:%u'/>", rnd(g, 100000));
        }
        put(g, "</query>");
    } else {
        put(g, "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items "
               "node='urn:xmpp:microblog:0'>");
        while (g->len - start < target) {
            putf(g,
                 "<item id='%u'><entry xmlns='http://www.w3.org/2005/Atom'><title "
                 "type='text'>",
                 rnd(g, 100000));
            text(g, 40 + rnd(g, 80));
            put(g, "</title><content type='text'>");
            text(g, 200 + rnd(g, 400));
            putf(g, "</content><published>2024-05-%02uT10:00:00Z</published></entry></item>",
                 1 + rnd(g, 28));
        }
        put(g, "</items></pubsub>");
    }
    put(g, "</iq>");
}

/* mix 0: the realistic mix; 1: messages only (like the 234-byte message anchor). */
static void generate(gen *g, long stanzas, int mix)
{
    put(g, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
           "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
           "from='a.example.com' to='b.example.com' version='1.0' id='b3f1c2'>");
    for (long i = 0; i < stanzas; i++) {
        uint32_t r = mix == 1 ? 50 : rnd(g, 100);
        if (r < 45) {
            presence(g);
        } else if (r < 90) {
            message(g);
        } else {
            iq(g);
        }
        g->stanzas++;
        if (rnd(g, 16) == 0) put(g, " "); /* keepalive */
    }
    put(g, "</stream:stream>");
}

/* Thread CPU time: the goal is throughput per core, and the machine is shared, so time spent
 * descheduled must not count. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- xfed --- */
static void *xfed_mem;

static long run_xfed(const char *buf, size_t len, size_t chunk)
{
    static xf_xml_limits lim;
    static xf_xml_tok tok;
    xf_xml_limits_default(&lim);
    lim.stanza_bytes_max = XF_XML_STANZA_POSTAUTH_MAX;
    if (xfed_mem == NULL) xfed_mem = aligned_alloc(64, (xf_xml_mem_size(&lim) + 63) & ~63ul);
    xf_xml_init(&tok, &lim, XF_XML_STREAM, xfed_mem, xf_xml_mem_size(&lim));
    long stanzas = 0;
    xf_xml_event ev;
    for (size_t pos = 0; pos < len; pos += chunk) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        xf_xml_feed(&tok, buf + pos, n);
        xf_xml_event_type ty;
        while ((ty = xf_xml_next(&tok, &ev)) != XF_XML_EV_NONE) {
            if (ty == XF_XML_EV_STANZA) stanzas++;
            if (ty == XF_XML_EV_ERROR) {
                fprintf(stderr, "xfed: %s at %llu: %s\n", xf_xml_cond_name(ev.error.cond),
                        (unsigned long long)ev.offset, ev.error.text);
                return -1;
            }
        }
    }
    return stanzas;
}

/* --- expat --- */
typedef struct count {
    int depth;
    long stanzas;
} count;

static void XMLCALL ex_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)name;
    (void)atts;
    ((count *)ud)->depth++;
}

static void XMLCALL ex_end(void *ud, const XML_Char *name)
{
    (void)name;
    count *c = ud;
    if (--c->depth == 1) c->stanzas++;
}

static void XMLCALL ex_text(void *ud, const XML_Char *s, int len)
{
    (void)ud;
    (void)s;
    (void)len;
}

static int expat_ns;

static long run_expat(const char *buf, size_t len, size_t chunk)
{
    XML_Parser p = expat_ns ? XML_ParserCreateNS("UTF-8", ' ') : XML_ParserCreate("UTF-8");
    count c = {0, 0};
    XML_SetUserData(p, &c);
    XML_SetElementHandler(p, ex_start, ex_end);
    XML_SetCharacterDataHandler(p, ex_text);
    for (size_t pos = 0; pos < len; pos += chunk) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        if (XML_Parse(p, buf + pos, (int)n, pos + n == len) != XML_STATUS_OK) {
            fprintf(stderr, "expat: %s\n", XML_ErrorString(XML_GetErrorCode(p)));
            c.stanzas = -1;
            break;
        }
    }
    XML_ParserFree(p);
    return c.stanzas;
}

/* --- libxml2 SAX2 --- */
static void lx_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                     int nb_ns, const xmlChar **ns, int nb_attrs, int nb_defaulted,
                     const xmlChar **attrs)
{
    (void)localname, (void)prefix, (void)uri, (void)nb_ns, (void)ns, (void)nb_attrs;
    (void)nb_defaulted, (void)attrs;
    xmlParserCtxtPtr c = ctx;
    ((count *)c->_private)->depth++;
}

static void lx_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    (void)localname, (void)prefix, (void)uri;
    xmlParserCtxtPtr c = ctx;
    count *n = c->_private;
    if (--n->depth == 1) n->stanzas++;
}

static void lx_text(void *ctx, const xmlChar *s, int len)
{
    (void)ctx, (void)s, (void)len;
}

static long run_libxml2(const char *buf, size_t len, size_t chunk)
{
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = lx_start;
    sax.endElementNs = lx_end;
    sax.characters = lx_text;
    count c = {0, 0};
    xmlParserCtxtPtr ctx = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, NULL);
    ctx->_private = &c;
    xmlCtxtUseOptions(ctx, XML_PARSE_NONET | XML_PARSE_HUGE);
    for (size_t pos = 0; pos < len; pos += chunk) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        if (xmlParseChunk(ctx, buf + pos, (int)n, pos + n == len) != 0) {
            c.stanzas = -1;
            break;
        }
    }
    if (!ctx->wellFormed) c.stanzas = -1;
    xmlFreeParserCtxt(ctx);
    return c.stanzas;
}

typedef long (*parse_fn)(const char *, size_t, size_t);

typedef struct bench_case {
    const char *name;
    parse_fn fn;
    int whole; /* 1: the whole stream in one call; 0: CHUNK-byte pieces */
    int ns;    /* expat: namespace processing */
    double best_s;
} bench_case;

/* Runs every case once per round, `rounds` rounds, so all parsers see the same machine state
 * side by side; keeps each case's best time. Returns MB/s (10^6 bytes per second) in place. */
static void measure(bench_case *cases, int n, const char *buf, size_t len, size_t chunk, int rounds,
                    long want)
{
    for (int c = 0; c < n; c++)
        cases[c].best_s = 1e30;
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < n; c++) {
            expat_ns = cases[c].ns;
            double t0 = now();
            long got = cases[c].fn(buf, len, cases[c].whole ? len : chunk);
            double dt = now() - t0;
            if (got != want) {
                fprintf(stderr, "%s: stanza count %ld, expected %ld\n", cases[c].name, got, want);
                exit(1);
            }
            if (dt < cases[c].best_s) cases[c].best_s = dt;
        }
    }
    expat_ns = 0;
}

static double mbps(const bench_case *c, size_t len)
{
    return (double)len / c->best_s / 1e6;
}

int main(int argc, char **argv)
{
    long stanzas = 6000;
    int repeats = 9, quiet = 0, profile = 0;
    const char *dump = NULL;
    int mix = 0;
    size_t chunk = 512;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            stanzas = atol(argv[++i]);
        } else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            repeats = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            chunk = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) { /* write the stream */
            dump = argv[++i];
        } else if (strcmp(argv[i], "-m") == 0) { /* messages only */
            mix = 1;
        } else if (strcmp(argv[i], "-p") == 0) { /* profile xfed alone, whole then chunked */
            profile = 1;
        } else if (strcmp(argv[i], "-q") == 0) {
            quiet = 1;
        } else {
            fprintf(stderr,
                    "usage: xfed-xmlbench [-n STANZAS] [-r ROUNDS] [-c CHUNK] [-q] [-p] [-m] "
                    "[-o FILE]\n");
            return 2;
        }
    }
    if (stanzas < 1 || repeats < 1 || chunk < 1) return 2;
    xmlInitParser();
    gen g = {NULL, 0, 0, 0x5eed, 0};
    generate(&g, stanzas, mix);
    size_t len = g.len;
    if (dump != NULL) {
        FILE *f = fopen(dump, "wb");
        if (f == NULL || fwrite(g.buf, 1, len, f) != len || fclose(f) != 0) return 1;
    }
    if (!quiet) {
        printf("stream: %zu bytes, %ld stanzas (%.0f B/stanza), chunk %zu B, best of %d rounds\n",
               len, g.stanzas, (double)len / (double)g.stanzas, chunk, repeats);
    }
    bench_case cases[] = {
        {"xfed", run_xfed, 1, 0, 0},
        {"xfed chunked", run_xfed, 0, 0, 0},
        {"expat", run_expat, 1, 0, 0},
        {"expat chunked", run_expat, 0, 0, 0},
        {"expat ns", run_expat, 1, 1, 0},
        {"libxml2", run_libxml2, 1, 0, 0},
        {"libxml2 chunked", run_libxml2, 0, 0, 0},
    };
    int ncases = profile ? 2 : (int)(sizeof cases / sizeof *cases);
    measure(cases, ncases, g.buf, len, chunk, repeats, g.stanzas);
    double xw = mbps(&cases[0], len), xc = mbps(&cases[1], len);
    if (profile) {
        printf("xfed whole %.0f MB/s, chunked %.0f MB/s\n", xw, xc);
        free(g.buf);
        return 0;
    }
    double ew = mbps(&cases[2], len), ec = mbps(&cases[3], len), enw = mbps(&cases[4], len);
    double lw = mbps(&cases[5], len), lc = mbps(&cases[6], len);
    if (!quiet) {
        printf("%-22s %9s %9s\n", "parser (MB/s)", "whole", "chunked");
        printf("%-22s %9.0f %9.0f\n", "xfed", xw, xc);
        printf("%-22s %9.0f %9.0f\n", "expat", ew, ec);
        printf("%-22s %9.0f %9s\n", "expat (namespaces)", enw, "-");
        printf("%-22s %9.0f %9.0f\n", "libxml2 SAX2", lw, lc);
    }
    printf("xmlbench xfed_mbps=%.0f expat_mbps=%.0f libxml2_mbps=%.0f ratio_expat=%.2f "
           "ratio_libxml2=%.2f chunked_penalty=%.1f%%\n",
           xw, ew, lw, xw / ew, xw / lw, 100.0 * (1.0 - xc / xw));
    free(g.buf);
    free(xfed_mem);
    xmlCleanupParser();
    return 0;
}
