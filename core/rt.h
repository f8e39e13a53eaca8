/* The thread-per-core runtime: what protocol layers (the raw relay, s2s
 * streams, component links) program against.
 *
 *   xf_rt        the runtime: N core threads ("shards") + the verification
 *                thread, each with its own io_uring; started and stopped by
 *                the control thread (main)
 *   xf_shard     one core thread's loop: reap a CQE batch, run callbacks,
 *                drain inboxes, fire timers, flush outputs, ring doorbells
 *   xf_conn      one TCP connection, owned by one shard for its whole life;
 *                one multishot recv and at most one send in flight
 *
 * Ownership (see core/README.md): everything a connection touches lives on
 * its shard; other threads reach it only through xf_shard_send() messages.
 * No call here blocks, and callbacks run on the owning shard's thread only.
 */
#ifndef XF_RT_H
#define XF_RT_H

#include "handoff.h"
#include "obuf.h"
#include "ring.h"
#include "timer.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define XF_SHARDS_MAX    64
#define XF_LISTENERS_MAX 8

typedef struct xf_rt xf_rt;
typedef struct xf_shard xf_shard;
typedef struct xf_conn xf_conn;
struct xf_core_metrics;

typedef struct {
    /* Bytes arrived; `data` is valid during the call only (a provided buffer
     * that goes back to the kernel right after): copy what must outlive it. */
    void (*on_data)(xf_conn *c, const uint8_t *data, size_t len);
    /* The peer closed its side (EOF). Default: close after flushing output. */
    void (*on_eof)(xf_conn *c);
    /* Output fell below the low-water mark after xf_conn_write reported it
     * full: the producer may resume. */
    void (*on_drain)(xf_conn *c);
    /* Outbound only: connected (err 0) or failed (-errno; the conn then closes). */
    void (*on_connect)(xf_conn *c, int err);
    /* The connection is closing; no callback follows. `err` is 0 for a local
     * close, -errno otherwise. Drop every reference to c here. */
    void (*on_close)(xf_conn *c, int err);
    /* The connection's timer (xf_conn_timer) fired. */
    void (*on_timer)(xf_conn *c);
    /* Graceful shutdown started: say goodbye (e.g. </stream:stream>) and
     * close. Default: close after flushing output. */
    void (*on_shutdown)(xf_conn *c);
} xf_conn_ops;

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const xf_conn_ops *ops; /* for accepted connections */
    /* Called for each accepted connection before its first byte; may set
     * the ops and context, or close it. */
    void (*on_accept)(xf_conn *c, void *arg);
    void *arg;
} xf_listen_spec;

/* Handler for application messages between threads (xf_shard_send). */
typedef void (*xf_msg_fn)(xf_shard *s, uint32_t src, const xf_spsc_rec *r);

typedef struct {
    uint32_t shards;             /* core threads */
    bool pin;                    /* pin shard i to CPU i mod online CPUs */
    uint32_t conns_per_shard;    /* connection table size */
    uint32_t recv_buffers;       /* provided buffers per shard (power of two) */
    uint32_t recv_buffer_size;   /* bytes each */
    uint32_t out_blocks;         /* output blocks (16 KiB) per shard: the memory bound */
    uint32_t out_blocks_reserve; /* of those, allocated at start (default 0: on demand) */
    size_t out_limit;            /* per-connection output bound (bytes) */
    size_t out_high, out_low;    /* backpressure marks */
    uint64_t queue_bytes;        /* each SPSC handoff queue (power of two) */
    uint32_t shutdown_ms;        /* graceful drain deadline */
    xf_listen_spec listen[XF_LISTENERS_MAX];
    uint32_t listen_count;
    xf_msg_fn on_msg;                    /* messages to core shards */
    xf_msg_fn on_verify_msg;             /* messages to the verification thread */
    void (*on_shard_start)(xf_shard *s); /* on the shard's thread, before its loop */
    void (*on_shard_stop)(xf_shard *s);  /* on the shard's thread, after its loop */
    /* Every loop iteration, after callbacks and timers, before output is
     * flushed (the load generator paces its sends here). */
    void (*on_loop)(xf_shard *s);
    uint32_t loop_wait_us;      /* cap on the loop's sleep, 0 = none: pacing finer than the wheel */
    void *app;                  /* the application's context, xf_rt_app() */
    struct xf_metrics *metrics; /* shards + 1 core blocks (the last: verification) */
    struct xf_rcu *rcu;         /* partner snapshots, shards + 1 reader slots */
} xf_rt_config;

/* Defaults for a config: one shard per online CPU, 20000 connections per
 * shard (RLIMIT_NOFILE permitting), 4096 x 16 KiB recv buffers, 4 MiB output
 * per connection (high 512 KiB, low 128 KiB), 4 MiB handoff queues, 5 s drain. */
void xf_rt_config_defaults(xf_rt_config *c);

/* Starts the shards and the verification thread; listeners bind in each
 * shard with SO_REUSEPORT. Returns NULL with a message on failure. */
xf_rt *xf_rt_start(const xf_rt_config *cfg, char *err, size_t errlen);
/* Graceful stop: listeners close, every connection gets on_shutdown, output
 * is flushed until the drain deadline, then everything closes. Joins. */
void xf_rt_stop(xf_rt *rt);
void *xf_rt_app(const xf_rt *rt);
uint32_t xf_rt_shards(const xf_rt *rt);
xf_shard *xf_rt_shard(xf_rt *rt, uint32_t i);
/* The verification thread's id as a message destination. */
uint32_t xf_rt_verify_id(const xf_rt *rt);
/* From the control thread: a message to shard or verify thread `dst`. */
bool xf_rt_post(xf_rt *rt, uint32_t dst, uint32_t type, const void *data, uint32_t len);

/* ---- shard (called on its own thread) ------------------------------------- */
uint32_t xf_shard_id(const xf_shard *s);
xf_rt *xf_shard_rt(xf_shard *s);
struct xf_core_metrics *xf_shard_metrics(xf_shard *s);
xf_wheel *xf_shard_wheel(xf_shard *s);
/* The partner snapshot this shard reads (refreshed every loop iteration). */
const struct xf_snapshot *xf_shard_snapshot(const xf_shard *s);
/* Queues a message for thread `dst` (a shard id or xf_rt_verify_id()); the
 * doorbell goes once per loop iteration. False when the queue is full. */
bool xf_shard_send(xf_shard *s, uint32_t dst, uint32_t type, const void *data, uint32_t len);
/* The same with the payload in two parts (a header and a body), copied once into the queue. */
bool xf_shard_send2(xf_shard *s, uint32_t dst, uint32_t type, const void *hdr, uint32_t hlen,
                    const void *data, uint32_t len);
/* Watches a plain fd that is not a connection (c-ares sockets) with a
 * multishot poll: fn runs on this shard with the ready events. Calling again
 * for the same fd changes the events; events 0 stops watching. At most
 * XF_WATCH_MAX fds per shard; returns false when full. */
#define XF_WATCH_MAX 32
typedef void (*xf_watch_fn)(xf_shard *s, int fd, uint32_t revents, void *arg);
bool xf_shard_watch(xf_shard *s, int fd, uint32_t events, xf_watch_fn fn, void *arg);
void *xf_shard_user(xf_shard *s); /* per-shard application state */
/* Caps this shard's loop sleep at `us` microseconds (0: no cap); starts as
 * the config's loop_wait_us. */
void xf_shard_loop_wait(xf_shard *s, uint32_t us);
/* This thread's allocation heap (core/heap.h). */
struct xf_heap *xf_shard_heap(xf_shard *s);
void xf_shard_set_user(xf_shard *s, void *user);

/* ---- connections (on the owning shard's thread) ----------------------------- */
/* Connects out to addr with a timeout; callbacks follow on `ops`. NULL when
 * the connection table is full or the socket cannot be made. */
xf_conn *xf_conn_connect(xf_shard *s, const struct sockaddr *addr, socklen_t addrlen,
                         uint32_t timeout_ms, const xf_conn_ops *ops, void *ctx);
/* Appends to the output; sent once per loop iteration. Returns false (and
 * appends nothing) when the connection's output bound would be exceeded or
 * the shard's block pool is exhausted: the producer must hold or refuse. */
bool xf_conn_write(xf_conn *c, const void *data, size_t len);
/* True above the high-water mark: stop producing until on_drain. */
bool xf_conn_write_full(const xf_conn *c);
size_t xf_conn_queued(const xf_conn *c);
/* Stops / restarts reading (backpressure towards the sender). */
void xf_conn_pause(xf_conn *c);
void xf_conn_resume(xf_conn *c);
/* Closes: with flush, after queued output is sent (bounded by the drain time). */
void xf_conn_close(xf_conn *c, bool flush);
/* One timer per connection: arm (ms > 0) or cancel (0). */
void xf_conn_timer(xf_conn *c, uint32_t ms);
void *xf_conn_ctx(const xf_conn *c);
void xf_conn_set_ctx(xf_conn *c, void *ctx);
void xf_conn_set_ops(xf_conn *c, const xf_conn_ops *ops);
xf_shard *xf_conn_shard(const xf_conn *c);
bool xf_conn_closing(const xf_conn *c);

#endif
