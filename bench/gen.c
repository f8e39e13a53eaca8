#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "gen.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the stanza deck ------------------------------------------------------ */

static uint64_t rnd(uint64_t *s) /* xorshift64* */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Lower-case only, so no text can contain the marker "xbT". */
static const char *const words[] = {
    "federation", "partner",  "meeting", "tomorrow", "report",  "budget",   "edge",
    "server",     "presence", "status",  "lunch",    "review",  "draft",    "contract",
    "deadline",   "schedule", "call",    "notes",    "project", "release",  "update",
    "agenda",     "quarter",  "team",    "office",   "travel",  "customer", "invoice",
};
#define NWORDS (sizeof words / sizeof words[0])

typedef struct {
    char b[9216];
    size_t n;
} sbuf;

static void put(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s->b + s->n, sizeof s->b - s->n, fmt, ap);
    va_end(ap);
    if (k > 0) s->n += (size_t)k < sizeof s->b - s->n ? (size_t)k : sizeof s->b - s->n - 1;
}

static void fill_words(sbuf *s, uint64_t *seed, size_t until)
{
    while (s->n < until)
        put(s, "%s%s", s->n && s->b[s->n - 1] != '>' ? " " : "", words[rnd(seed) % NWORDS]);
}

/* The id attribute: the marker, 16 zero digits for the time, the tag. */
static void put_id(sbuf *s, uint32_t tag, uint32_t *mark_at)
{
    put(s, " id='" BENCH_MARK);
    *mark_at = (uint32_t)s->n;
    put(s, "0000000000000000%04x'", tag & 0xffffu);
}

static void make_one(sbuf *s, uint64_t *seed, int kind, const char *from, const char *to,
                     uint32_t tag, uint32_t *mark_at)
{
    s->n = 0;
    uint64_t who = rnd(seed) % 1000;
    if (kind == 0) { /* presence, ~150 B */
        put(s, "<presence from='x%03u@%s/desk' to='u%03u@%s'", (unsigned)who, from,
            (unsigned)(who % 97), to);
        put_id(s, tag, mark_at);
        put(s, "><show>away</show><status>");
        fill_words(s, seed, 130);
        put(s, "</status></presence>");
    } else if (kind == 1) { /* message, 250-400 B */
        size_t target = 250 + rnd(seed) % 151;
        put(s, "<message type='chat' from='x%03u@%s/desk' to='u%03u@%s'", (unsigned)who, from,
            (unsigned)(who % 97), to);
        put_id(s, tag, mark_at);
        put(s, "><body>");
        fill_words(s, seed, target - 72);
        put(s, "</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
    } else { /* iq result with a roster, 2-8 KB */
        size_t target = 2048 + rnd(seed) % 6145;
        put(s, "<iq type='result' from='x%03u@%s/desk' to='u%03u@%s'", (unsigned)who, from,
            (unsigned)(who % 97), to);
        put_id(s, tag, mark_at);
        put(s, "><query xmlns='jabber:iq:roster' ver='v%u'>", (unsigned)(rnd(seed) % 100000));
        while (s->n + 140 < target)
            put(s,
                "<item jid='contact%u@example.org' name='%s %s' "
                "subscription='both'><group>%s</group></item>",
                (unsigned)(rnd(seed) % 100000), words[rnd(seed) % NWORDS],
                words[rnd(seed) % NWORDS], words[rnd(seed) % NWORDS]);
        put(s, "</query></iq>");
    }
}

int bench_deck_make(bench_deck *d, const char *from, const char *to, uint32_t tag, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    int kinds[BENCH_DECK];
    for (int i = 0; i < BENCH_DECK; i++)
        kinds[i] = i < 49 ? 0 : i < 98 ? 1 : 2;
    uint64_t st = seed | 1;
    for (int i = BENCH_DECK - 1; i > 0; i--) { /* shuffle */
        int j = (int)(rnd(&st) % (uint64_t)(i + 1));
        int t = kinds[i];
        kinds[i] = kinds[j];
        kinds[j] = t;
    }
    static _Thread_local sbuf sb;
    for (int i = 0; i < BENCH_DECK; i++) {
        make_one(&sb, &st, kinds[i], from, to, tag, &d->s[i].mark_at);
        d->s[i].bytes = malloc(sb.n);
        if (!d->s[i].bytes) {
            bench_deck_free(d);
            return -1;
        }
        memcpy(d->s[i].bytes, sb.b, sb.n);
        d->s[i].len = (uint32_t)sb.n;
        d->total_bytes += (uint32_t)sb.n;
    }
    return 0;
}

void bench_deck_free(bench_deck *d)
{
    for (int i = 0; i < BENCH_DECK; i++)
        free(d->s[i].bytes);
    memset(d, 0, sizeof *d);
}

void bench_stamp(bench_stanza *s, uint64_t now_ns)
{
    static const char hex[] = "0123456789abcdef";
    char *p = s->bytes + s->mark_at;
    for (int i = 15; i >= 0; i--, now_ns >>= 4)
        p[i] = hex[now_ns & 15];
}

/* ---- the scanner ---------------------------------------------------------- */

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* p points at a complete marker (BENCH_MARK_LEN bytes). */
static uint32_t take(const uint8_t *p, bench_mark_fn fn, void *arg)
{
    uint64_t t = 0;
    uint32_t tag = 0;
    for (int i = 3; i < 19; i++) {
        int v = hexval(p[i]);
        if (v < 0) return 0;
        t = t << 4 | (uint64_t)v;
    }
    for (int i = 19; i < 23; i++) {
        int v = hexval(p[i]);
        if (v < 0) return 0;
        tag = tag << 4 | (uint32_t)v;
    }
    fn(arg, tag, t);
    return 1;
}

uint32_t bench_scan_chunk(bench_scan *sc, const uint8_t *p, size_t len, bench_mark_fn fn, void *arg)
{
    enum { K = BENCH_MARK_LEN - 1 }; /* an incomplete marker starts in the last K bytes */
    uint32_t found = 0;
    uint8_t tmp[2 * K];
    size_t head = len < K ? len : K, tn = sc->carry_len + head;
    /* Markers that start in the carried tail: complete once the chunk's head is added. */
    if (sc->carry_len) {
        memcpy(tmp, sc->carry, sc->carry_len);
        memcpy(tmp + sc->carry_len, p, head);
        for (size_t i = 0; i < sc->carry_len; i++)
            if (i + BENCH_MARK_LEN <= tn && memcmp(tmp + i, BENCH_MARK, 3) == 0)
                found += take(tmp + i, fn, arg);
    }
    /* Markers that start in the chunk and end in it. */
    const uint8_t *q = p, *end = p + len;
    while (q < end) {
        const uint8_t *m = memmem(q, (size_t)(end - q), BENCH_MARK, 3);
        if (!m || (size_t)(end - m) < BENCH_MARK_LEN) break; /* none, or carried */
        found += take(m, fn, arg);
        q = m + BENCH_MARK_LEN;
    }
    /* The new tail: the last K bytes of (carry + chunk). Complete markers never start
     * there, so nothing is counted twice. */
    if (len >= K) {
        memcpy(sc->carry, end - K, K);
        sc->carry_len = K;
    } else {
        if (!sc->carry_len) memcpy(tmp, p, len); /* tmp = carry + chunk */
        size_t keep = tn < K ? tn : K;
        memcpy(sc->carry, tmp + tn - keep, keep);
        sc->carry_len = (uint32_t)keep;
    }
    return found;
}

/* ---- histogram ------------------------------------------------------------ */

static uint32_t bucket(uint64_t v)
{
    if (v < BENCH_HIST_SUB) return (uint32_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v);
    if (e > 46) return BENCH_HIST_BUCKETS - 1;
    uint32_t sub = (uint32_t)(v >> (e - 4)) & 15u;
    return (e - 3) * BENCH_HIST_SUB + sub;
}

static uint64_t bucket_mid(uint32_t b)
{
    if (b < BENCH_HIST_SUB) return b;
    uint32_t e = b / BENCH_HIST_SUB + 3, sub = b % BENCH_HIST_SUB;
    uint64_t lower = (uint64_t)(16 + sub) << (e - 4);
    return lower + ((1ull << (e - 4)) >> 1);
}

void bench_hist_add(bench_hist *h, uint64_t ns)
{
    _Atomic uint64_t *c = &h->n[bucket(ns)];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void bench_hist_clear(bench_hist *h)
{
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        atomic_store_explicit(&h->n[i], 0, memory_order_relaxed);
}

void bench_hist_merge(uint64_t *into, const bench_hist *src)
{
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        into[i] += atomic_load_explicit(&src->n[i], memory_order_relaxed);
}

uint64_t bench_hist_quantile(const uint64_t *h, double q)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        total += h[i];
    if (!total) return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total) want = total - 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen > want) return bucket_mid(i);
    }
    return bucket_mid(BENCH_HIST_BUCKETS - 1);
}
