/* peer.h: the load generator's side of every connection, on the project's
 * io_uring runtime (core/rt.h). One process plays both ends of the router:
 *
 *   partners   lane i's server pI.bench (plaintext + dialback) or tI.bench
 *              (STARTTLS + SASL EXTERNAL): an s2s stream to the target, and a
 *              listener where the target verifies dialback keys (db:verify,
 *              always valid) and opens its own streams to the partner for the
 *              way back (db:result accepted, or STARTTLS + SASL EXTERNAL)
 *   internal   the internal server: accepts the target's XEP-0114 links (xfed,
 *              or the raw relay's forwarded partner stream) or connects to the
 *              target's component port as cI.bench (Prosody, ejabberd)
 *
 * Each lane carries two directions: partner -> internal (0) and internal ->
 * partner (1). A sender writes stanzas from its deck (gen.h) in each loop
 * iteration: closed loop keeps `window` stanzas in flight per direction, open
 * loop sends at a fixed rate; receivers count markers, add latencies to their
 * core's histogram and wake the sender's core. The main thread drives phases
 * and reads counters; everything else happens on the core threads.
 */
#ifndef XF_BENCH_PEER_H
#define XF_BENCH_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define BENCH_LANES_MAX 64

typedef enum { BENCH_RAW, BENCH_PLAIN, BENCH_TLS } bench_mode;

typedef struct bench bench;

typedef struct {
    uint32_t threads;   /* core threads of the load generator */
    uint16_t s2s_port;  /* the partners' listener (dialback checks, streams back) */
    uint16_t int_port;  /* the internal server's component listener */
    const char *secret; /* component secret */
    const char *ca;     /* test CA; certificates of the partners and of the local domains */
    const char *cert, *key;
    uint32_t lanes; /* lanes of each kind (plaintext and TLS), <= BENCH_LANES_MAX */
} bench_opts;

typedef struct {
    uint16_t s2s_port;  /* the target's s2s listener (partners connect) */
    uint16_t comp_port; /* 0: the target connects to us (xfed, relay); else we connect */
    bool raw;           /* the raw relay: no negotiation, one stream both ways */
    bool parse_back;    /* keep parsing streams back to partners: the target sends
                           db:verify on them (Prosody, ejabberd), not on their own */
} bench_target;

typedef struct {
    uint64_t stanzas, bytes; /* received by the bench: routed through the target */
    uint64_t late;           /* open loop: sends the generator could not keep up with */
    uint64_t bounced;        /* stanzas the target sent back as errors */
} bench_counts;

bench *bench_start(const bench_opts *o, char *err, size_t errlen);
void bench_stop(bench *b);

/* Connects every lane of `mode` to the target and negotiates; then sends one
 * stanza each way per lane and waits for them (this also makes the target open
 * its streams back to the partners). Returns 0, or -1 with a message. */
int bench_lanes_up(bench *b, const bench_target *t, bench_mode mode, uint32_t timeout_ms, char *err,
                   size_t errlen);
/* Load on the lanes of `mode`: closed loop (window > 0) or open loop
 * (rate > 0: stanzas per second, all directions together). */
void bench_load(bench *b, bench_mode mode, uint32_t window, double rate);
void bench_load_stop(bench *b);
/* Zeroes the latency histograms (waits until every core did). */
void bench_hist_reset(bench *b);
/* Merges the cores' histograms into h (BENCH_HIST_BUCKETS entries, zeroed first). */
void bench_hist_read(bench *b, uint64_t *h);
void bench_counts_read(bench *b, bench_counts *c);
/* Opens `n` more streams of `mode` (negotiated, then idle), at most
 * `concurrent` negotiating at a time; returns how many came up before the
 * timeout and the seconds it took in *secs. */
uint32_t bench_idle_open(bench *b, const bench_target *t, bench_mode mode, uint32_t n,
                         uint32_t concurrent, uint32_t timeout_ms, double *secs);
/* Closes the idle streams. */
void bench_close_idle(bench *b);
/* Closes every connection and forgets the lanes (before the next target). */
void bench_close_all(bench *b);
/* Stanzas sent but never received since the last call (checked after each phase). */
uint64_t bench_lost(bench *b);
/* Failures seen (streams that closed while negotiating, stream errors). */
uint64_t bench_failures(bench *b);

#endif
