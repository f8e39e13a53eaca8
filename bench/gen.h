/* gen.h: what xfed-bench sends and how it reads it back.
 *
 *   stanza mix    per (lane, direction) a fixed deck of BENCH_DECK stanzas, in a
 *                 shuffled order: 49 % presence (~150 B), 49 % <message> (250-400 B),
 *                 2 % <iq> results with 2-8 KB roster payloads (seeded PRNG, so
 *                 every target gets the same bytes)
 *   marker        every stanza's id is "xbT" + 16 hex digits (send time, ns) +
 *                 4 hex digits (tag = lane * 2 + direction); the sender stamps
 *                 it into a copy just before writing
 *   scanner       the receiver finds markers with memmem instead of parsing: the
 *                 load generator shares the cores with the server under test, so
 *                 it must spend far less per stanza than the server (the tokenizer
 *                 still parses every negotiation byte); markers split across
 *                 chunks are carried over
 *   histogram     log-linear latency buckets (16 per power of two, ~4 % wide),
 *                 one writer per histogram, read by the main thread after a phase
 */
#ifndef XF_BENCH_GEN_H
#define XF_BENCH_GEN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_DECK     100
#define BENCH_MARK     "xbT"
#define BENCH_MARK_LEN 23u /* "xbT" + 16 + 4 hex digits */

typedef struct {
    char *bytes;      /* the stanza; the marker's 20 hex digits are patched per send */
    uint32_t len;     /* bytes */
    uint32_t mark_at; /* offset of the first hex digit after "xbT" */
} bench_stanza;

typedef struct {
    bench_stanza s[BENCH_DECK];
    uint32_t total_bytes;
} bench_deck;

/* Fills `d` for one direction: stanzas from `from` to `to`, tagged `tag`.
 * Returns 0, or -1 when memory runs out. */
int bench_deck_make(bench_deck *d, const char *from, const char *to, uint32_t tag, uint64_t seed);
void bench_deck_free(bench_deck *d);
/* Writes the send time into stanza i of the deck (in place). */
void bench_stamp(bench_stanza *s, uint64_t now_ns);

/* The receiver's marker scanner: one per receiving connection. */
typedef struct {
    char carry[BENCH_MARK_LEN];
    uint32_t carry_len;
} bench_scan;

/* Called for each marker found: its tag and send time. */
typedef void (*bench_mark_fn)(void *arg, uint32_t tag, uint64_t sent_ns);
/* Scans a chunk; returns the number of markers found. */
uint32_t bench_scan_chunk(bench_scan *sc, const uint8_t *p, size_t len, bench_mark_fn fn,
                          void *arg);

#define BENCH_HIST_SUB     16u
#define BENCH_HIST_BUCKETS (48u * BENCH_HIST_SUB)

typedef struct {
    _Atomic uint64_t n[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_add(bench_hist *h, uint64_t ns); /* single writer */
void bench_hist_clear(bench_hist *h);
/* Sums `src` into a plain array. */
void bench_hist_merge(uint64_t *into, const bench_hist *src);
/* The q-quantile (0..1) of a merged histogram in ns (bucket midpoint); 0 when empty. */
uint64_t bench_hist_quantile(const uint64_t *h, double q);

uint64_t bench_now_ns(void);

#endif
