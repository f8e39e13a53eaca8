/* The runtime in process: the timer wheel on a fake clock, the SPSC handoff
 * queue, cross-core messages (exactly once, in order, batched doorbells),
 * verification round trips, and zero allocations on the core threads while
 * the relay forwards traffic in steady state.
 *
 * Allocation counting: the test binary interposes malloc and friends (and
 * mi_heap_malloc, the per-core heaps of core/heap.c, when built with
 * mimalloc); under a sanitizer, which owns malloc, it installs the
 * sanitizer's allocation hooks instead. Only threads that registered (the
 * runtime's threads, in on_shard_start) are counted. */
#include "../check.h"
#include "heap.h"
#include "metrics.h"
#include "relay.h"
#include "rt.h"
#include "verify.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- allocation counter ------------------------------------------------------ */

#define COUNT_SLOTS 8
static _Atomic uint64_t allocs[COUNT_SLOTS]; /* per registered thread */
static _Thread_local int count_slot = -1;

static inline void count_alloc(void)
{
    int s = count_slot;
    if (s >= 0) atomic_fetch_add_explicit(&allocs[s], 1, memory_order_relaxed);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

#ifdef SANITIZED
#include <sanitizer/allocator_interface.h>
static void hook_malloc(const volatile void *p, size_t n)
{
    count_alloc();
}
static void hook_free(const volatile void *p) {}
static void counter_install(void)
{
    __sanitizer_install_malloc_and_free_hooks(hook_malloc, hook_free);
}
#else
static void counter_install(void) {}
#ifdef XFED_HAVE_MIMALLOC
/* mimalloc overrides malloc for the whole process: keep one allocator. */
#include <mimalloc.h>
#define REAL(f) mi_##f
void *mi_heap_malloc(mi_heap_t *h, size_t n)
{
    static void *(*real)(mi_heap_t *, size_t);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "mi_heap_malloc");
    count_alloc();
    return real(h, n);
}
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
#define REAL(f) __libc_##f
#endif
void *malloc(size_t n)
{
    count_alloc();
    return REAL(malloc)(n);
}
void *calloc(size_t k, size_t n)
{
    count_alloc();
    return REAL(calloc)(k, n);
}
void *realloc(void *p, size_t n)
{
    count_alloc();
    return REAL(realloc)(p, n);
}
void free(void *p)
{
    REAL(free)(p);
}
void *memalign(size_t a, size_t n)
{
    count_alloc();
    return REAL(memalign)(a, n);
}
void *aligned_alloc(size_t a, size_t n)
{
    count_alloc();
    return REAL(memalign)(a, n);
}
int posix_memalign(void **out, size_t a, size_t n)
{
    count_alloc();
    void *p = REAL(memalign)(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
#endif

static uint64_t allocs_of(int slot)
{
    return atomic_load(&allocs[slot]);
}

/* The counter counts what it must: malloc and the per-core heap seam. */
static void test_counter(void)
{
    count_slot = COUNT_SLOTS - 1;
    uint64_t a0 = allocs_of(COUNT_SLOTS - 1);
    void *volatile p = malloc(100);
    free(p);
    CHECK(allocs_of(COUNT_SLOTS - 1) == a0 + 1);
    xf_heap *h = xf_heap_new();
    xf_obpool pool;
    xf_obpool_init(&pool, 4, h);
    uint64_t a1 = allocs_of(COUNT_SLOTS - 1);
    CHECK(xf_obpool_reserve(&pool, 10) == 4); /* never past the bound */
    CHECK(allocs_of(COUNT_SLOTS - 1) == a1 + 4);
    xf_obuf o = {0};
    CHECK(xf_obuf_append(&o, &pool, "x", 1)); /* from the reserve */
    CHECK(allocs_of(COUNT_SLOTS - 1) == a1 + 4);
    xf_obuf_clear(&o, &pool);
    xf_obpool_free(&pool);
    xf_heap_delete(h);
    count_slot = -1;
}

/* ---- (a) timer wheel ------------------------------------------------------------- */

typedef struct {
    xf_timer t; /* first: the fire callback casts back */
    int id;
    uint32_t fired;
    uint64_t fired_at;
    uint32_t period; /* re-arm itself when > 0 */
    xf_wheel *w;
} ttimer;

static int order[64];
static int norder;

static void tfire(xf_timer *t)
{
    ttimer *x = (ttimer *)t;
    x->fired++;
    x->fired_at = x->w->now_ms;
    if (norder < 64) order[norder++] = x->id;
    if (x->period) xf_timer_arm(x->w, t, x->period);
}

static void tinit(ttimer *x, xf_wheel *w, int id)
{
    memset(x, 0, sizeof *x);
    x->t.fire = tfire;
    x->w = w;
    x->id = id;
}

static void test_wheel(void)
{
    static xf_wheel w; /* 64 KiB: not on the stack */
    const uint64_t t0 = 1000003;
    xf_wheel_init(&w, t0);
    CHECK(xf_wheel_wait_ms(&w, t0) == UINT64_MAX);

    /* Ordering across ticks, whatever the arming order. */
    ttimer a, b, c;
    tinit(&a, &w, 1);
    tinit(&b, &w, 2);
    tinit(&c, &w, 3);
    norder = 0;
    xf_timer_arm(&w, &a.t, 40);
    xf_timer_arm(&w, &b.t, 8);
    xf_timer_arm(&w, &c.t, 24);
    CHECK(w.armed == 3);
    CHECK(xf_wheel_wait_ms(&w, t0) == 8);
    CHECK(xf_wheel_run(&w, t0 + 7) == 0);
    CHECK(xf_wheel_run(&w, t0 + 100) == 3);
    CHECK(norder == 3 && order[0] == 2 && order[1] == 3 && order[2] == 1);
    CHECK(a.fired_at >= t0 + 40 && b.fired_at >= t0 + 8 && c.fired_at >= t0 + 24);
    CHECK(w.armed == 0 && !xf_timer_armed(&a.t));

    /* Never early, stepping 1 ms at a time. */
    uint64_t now = t0 + 100;
    tinit(&a, &w, 1);
    xf_timer_arm(&w, &a.t, 37);
    for (uint64_t t = now + 1; t < now + 37; t++)
        CHECK(xf_wheel_run(&w, t) == 0);
    CHECK(xf_wheel_run(&w, now + 37) == 1 && a.fired == 1);
    now += 37;

    /* Cancel, cancel twice, re-arm an armed timer (moves it: fires once). */
    tinit(&a, &w, 1);
    tinit(&b, &w, 2);
    xf_timer_arm(&w, &a.t, 10);
    xf_timer_arm(&w, &b.t, 10);
    xf_timer_cancel(&w, &a.t);
    xf_timer_cancel(&w, &a.t);
    CHECK(w.armed == 1 && !xf_timer_armed(&a.t));
    xf_timer_arm(&w, &b.t, 50);
    CHECK(w.armed == 1);
    CHECK(xf_wheel_run(&w, now + 20) == 0 && b.fired == 0);
    CHECK(xf_wheel_run(&w, now + 50) == 1 && b.fired == 1 && a.fired == 0);
    xf_timer_arm(&w, &a.t, 5); /* re-arm after a cancel */
    CHECK(xf_wheel_run(&w, now + 55) == 1 && a.fired == 1);
    now += 55;

    /* A zero delay still waits for the next millisecond. */
    tinit(&a, &w, 1);
    xf_timer_arm(&w, &a.t, 0);
    CHECK(xf_wheel_run(&w, now) == 0);
    CHECK(xf_wheel_run(&w, now + 1) == 1);
    now += 1;

    /* Periodic: re-arming from its own callback, 10 ms, over 1 s of 1 ms steps. */
    tinit(&a, &w, 1);
    a.period = 10;
    xf_timer_arm(&w, &a.t, 10);
    uint32_t total = 0;
    for (uint64_t t = now + 1; t <= now + 1000; t++)
        total += xf_wheel_run(&w, t);
    CHECK(a.fired == 100 && total == 100);
    xf_timer_cancel(&w, &a.t);
    now += 1000;

    /* Past one round (4096 ticks x 4 ms = 16.4 s): 40 s and 100 s delays,
     * stepped in 1 s and 3 ms strides (both visit the slot early, several
     * times), and one long sleep that jumps over everything. */
    ttimer l1, l2, l3;
    tinit(&l1, &w, 1);
    tinit(&l2, &w, 2);
    tinit(&l3, &w, 3);
    xf_timer_arm(&w, &l1.t, 40000);
    xf_timer_arm(&w, &l2.t, 100000);
    xf_timer_arm(&w, &l3.t, 16389); /* one tick past one round */
    /* A lower bound (a cancelled timer may leave it early), never late. */
    CHECK(xf_wheel_wait_ms(&w, now) <= 16389);
    uint64_t t = now;
    for (; t + 1000 < now + 40000; t += 1000)
        xf_wheel_run(&w, t);
    CHECK(l3.fired == 1 && l3.fired_at >= now + 16389 && l1.fired == 0);
    for (; t < now + 40000; t += 3)
        CHECK(xf_wheel_run(&w, t) == 0);
    CHECK(xf_wheel_run(&w, now + 40000) == 1 && l1.fired == 1 && l2.fired == 0);
    CHECK(xf_wheel_wait_ms(&w, now + 40000) == 60000);
    CHECK(xf_wheel_run(&w, now + 99999) == 0 && l2.fired == 0);
    CHECK(xf_wheel_run(&w, now + 100000) == 1 && l2.fired == 1);
    now += 100000;

    tinit(&l1, &w, 1);
    tinit(&l2, &w, 2);
    xf_timer_arm(&w, &l1.t, 20000);
    xf_timer_arm(&w, &l2.t, 70000);
    CHECK(xf_wheel_run(&w, now + 500000) == 2 && l1.fired == 1 && l2.fired == 1);
    CHECK(w.armed == 0 && xf_wheel_wait_ms(&w, now + 500000) == UINT64_MAX);
    now += 500000;

    /* Many timers, random delays: each fires exactly once, never early. */
    enum { MANY = 2000 };
    static ttimer many[MANY];
    uint64_t seed = 12345;
    for (int i = 0; i < MANY; i++) {
        tinit(&many[i], &w, i);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        xf_timer_arm(&w, &many[i].t, (seed >> 33) % 50000);
    }
    uint32_t fired = 0;
    for (uint64_t s = now; s <= now + 50001; s += 7)
        fired += xf_wheel_run(&w, s);
    CHECK(fired == MANY);
    if (fired != MANY) fprintf(stderr, "many timers: %u of %u fired\n", fired, MANY);
    int bad = 0;
    seed = 12345;
    for (int i = 0; i < MANY; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t d = (seed >> 33) % 50000;
        if (many[i].fired != 1 || many[i].fired_at < now + (d ? d : 1)) bad++;
    }
    CHECK(bad == 0);
}

/* ---- (b) SPSC queue ----------------------------------------------------------------- */

static void fill_pattern(uint8_t *p, uint32_t n, uint64_t seed)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 31 + i);
}

static bool pattern_ok(const uint8_t *p, uint32_t n, uint64_t seed)
{
    for (uint32_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seed * 31 + i)) return false;
    return true;
}

typedef struct {
    xf_spsc *q;
    uint64_t n;
    uint64_t errors;
} spsc_arg;

static void *spsc_consumer(void *arg)
{
    spsc_arg *a = arg;
    uint8_t buf[600];
    uint64_t next = 0;
    uint64_t deadline = xf_now_ms() + 60000;
    while (next < a->n && xf_now_ms() < deadline) {
        xf_spsc_rec r;
        if (!xf_spsc_peek(a->q, &r)) { /* both threads may share one CPU: let the other run */
            sched_yield();
            continue;
        }
        uint64_t seq;
        memcpy(&seq, r.data, 8);
        uint32_t plen = (uint32_t)(seq % 500);
        if (seq != next || r.type != (uint32_t)(seq & 0xffff) || r.len != 8 + plen ||
            !pattern_ok(r.data + 8, plen, seq)) {
            if (a->errors++ < 3)
                fprintf(stderr, "spsc: seq %" PRIu64 " (want %" PRIu64 ") type %u len %u\n", seq,
                        next, r.type, r.len);
        }
        memcpy(buf, r.data, r.len < sizeof buf ? r.len : sizeof buf);
        xf_spsc_pop(a->q);
        next = seq + 1;
    }
    if (next != a->n) {
        a->errors++;
        uint64_t h = atomic_load(&a->q->head), t = atomic_load(&a->q->tail);
        uint32_t w[4];
        memcpy(w, a->q->buf + (h & (a->q->cap - 1)), 8);
        memcpy(w + 2, a->q->buf, 8);
        fprintf(stderr,
                "spsc: consumer stopped at %" PRIu64 " of %" PRIu64 ": head %" PRIu64
                " tail %" PRIu64 " cached_tail %" PRIu64 " cached_head %" PRIu64
                " hdr %x/%u at0 %x/%u\n",
                next, a->n, h, t, a->q->cached_tail, a->q->cached_head, w[0], w[1], w[2], w[3]);
    }
    return NULL;
}

static void test_spsc(void)
{
    xf_spsc q;
    CHECK(xf_spsc_init(&q, 4096) == 0);
    CHECK(xf_spsc_empty(&q));
    xf_spsc_rec r;
    CHECK(!xf_spsc_peek(&q, &r));

    /* Header + payload in one record. */
    CHECK(xf_spsc_push2(&q, 17, "head", 4, "payload", 7));
    CHECK(xf_spsc_push(&q, 18, NULL, 0));
    CHECK(xf_spsc_peek(&q, &r) && r.type == 17 && r.len == 11 &&
          !memcmp(r.data, "headpayload", 11));
    xf_spsc_pop(&q);
    CHECK(xf_spsc_peek(&q, &r) && r.type == 18 && r.len == 0);
    xf_spsc_pop(&q);
    CHECK(xf_spsc_empty(&q));

    /* Too big, and the biggest that fits at any ring offset. */
    uint64_t maxp = xf_spsc_max_payload(&q);
    static uint8_t big[4096];
    CHECK(!xf_spsc_push(&q, 16, big, (uint32_t)maxp + 1));
    for (uint32_t off = 0; off < 4096; off += 8 * 37) {
        xf_spsc_free(&q);
        CHECK(xf_spsc_init(&q, 4096) == 0);
        for (uint32_t at = 0; at < off; at += 64) { /* move head and tail to `off` */
            uint32_t n = off - at < 64 ? off - at : 64;
            CHECK(xf_spsc_push(&q, 16, big, n - 8));
            CHECK(xf_spsc_peek(&q, &r) && r.len == n - 8);
            xf_spsc_pop(&q);
        }
        fill_pattern(big, (uint32_t)maxp, off);
        CHECK(xf_spsc_push(&q, 19, big, (uint32_t)maxp));
        CHECK(xf_spsc_peek(&q, &r) && r.type == 19 && r.len == maxp &&
              pattern_ok(r.data, (uint32_t)maxp, off));
        xf_spsc_pop(&q);
        CHECK(xf_spsc_empty(&q));
    }

    /* Full: pushes fail without writing; one pop makes room again. */
    xf_spsc_free(&q);
    CHECK(xf_spsc_init(&q, 4096) == 0);
    uint32_t pushed = 0;
    uint8_t rec[56];
    for (uint32_t i = 0; i < 1000; i++) {
        memcpy(rec, &i, 4);
        if (!xf_spsc_push(&q, 16, rec, sizeof rec)) break;
        pushed++;
    }
    CHECK(pushed == 4096 / 64); /* 8-byte header + 56 bytes each, nothing wasted */
    CHECK(!xf_spsc_push(&q, 16, rec, 1));
    CHECK(xf_spsc_peek(&q, &r));
    uint32_t first;
    memcpy(&first, r.data, 4);
    CHECK(first == 0);
    xf_spsc_pop(&q);
    CHECK(xf_spsc_push(&q, 16, rec, sizeof rec));
    CHECK(!xf_spsc_push(&q, 16, rec, sizeof rec));
    for (uint32_t i = 1; i <= pushed; i++) { /* the one pushed last carries `pushed - 1` */
        CHECK(xf_spsc_peek(&q, &r));
        uint32_t v;
        memcpy(&v, r.data, 4);
        if (i < pushed) CHECK(v == i);
        xf_spsc_pop(&q);
    }
    CHECK(xf_spsc_empty(&q));

    /* Wrap-around, one thread: odd sizes so records straddle the end and
     * the producer skips; the ring wraps hundreds of times. */
    uint64_t in = 0, out = 0, bad = 0;
    uint8_t buf[600];
    for (int round = 0; round < 20000; round++) {
        uint32_t k = (uint32_t)(round % 7) + 1;
        for (uint32_t j = 0; j < k; j++) {
            uint32_t plen = (uint32_t)(in % 500);
            memcpy(buf, &in, 8);
            fill_pattern(buf + 8, plen, in);
            if (!xf_spsc_push(&q, (uint32_t)(in & 0xffff), buf, 8 + plen)) break;
            in++;
        }
        uint32_t pops = (uint32_t)(round % 5) + 1;
        for (uint32_t j = 0; j < pops && xf_spsc_peek(&q, &r); j++) {
            uint64_t seq;
            memcpy(&seq, r.data, 8);
            uint32_t plen = (uint32_t)(seq % 500);
            if (seq != out || r.len != 8 + plen || !pattern_ok(r.data + 8, plen, seq)) bad++;
            xf_spsc_pop(&q);
            out++;
        }
    }
    while (xf_spsc_peek(&q, &r)) {
        xf_spsc_pop(&q);
        out++;
    }
    CHECK(bad == 0 && in == out && in > 20000);
    CHECK(in * 200 > 100 * 4096); /* wrapped many times */

    /* Two threads: 500k records through a 4 KiB ring, in order, intact. */
    xf_spsc_free(&q);
    CHECK(xf_spsc_init(&q, 4096) == 0);
    spsc_arg a = {.q = &q, .n = 500000};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, spsc_consumer, &a) == 0);
    uint64_t deadline = xf_now_ms() + 60000;
    for (uint64_t seq = 0; seq < a.n && xf_now_ms() < deadline;) {
        uint32_t plen = (uint32_t)(seq % 500);
        memcpy(buf, &seq, 8);
        fill_pattern(buf + 8, plen, seq);
        if (xf_spsc_push(&q, (uint32_t)(seq & 0xffff), buf, 8 + plen))
            seq++;
        else
            sched_yield();
    }
    pthread_join(th, NULL);
    CHECK(a.errors == 0);
    xf_spsc_free(&q);
}

/* ---- (c) cross-core ordering and (d) verification ------------------------------------- */

#define XMSG       20
#define XMSG_TOTAL 300000u /* each direction */
#define XBURST     4000u   /* more than the 64 KiB queue holds */
#define VERIFY_N   512u

typedef struct {
    xf_timer tick; /* first: the callback casts back */
    xf_shard *s;
    uint64_t next_seq, expect_seq;
    uint64_t order_errors, payload_errors, full_events;
    uint32_t asked, verify_errors;
    uint64_t asked_at[VERIFY_N];
    uint8_t seen[VERIFY_N];
    _Atomic uint64_t received;
    _Atomic uint32_t replied;
} xstate;

static xstate xs[2];

static uint32_t verify_arg(uint32_t i)
{
    return (i * 7) % 45;
}

static void xtick(xf_timer *t)
{
    xstate *st = (xstate *)t;
    xf_shard *s = st->s;
    uint32_t me = xf_shard_id(s);
    for (; st->asked < VERIFY_N; st->asked++) {
        xf_verify_req req = {.id = (uint64_t)me << 32 | st->asked,
                             .kind = XF_VERIFY_TEST_DELAY,
                             .arg = verify_arg(st->asked)};
        st->asked_at[st->asked] = xf_now_ms();
        if (!xf_verify_ask(s, &req)) break;
    }
    uint8_t buf[16 + 64];
    for (uint32_t i = 0; i < XBURST && st->next_seq < XMSG_TOTAL; i++) {
        uint64_t seq = st->next_seq;
        uint32_t len = 16 + (uint32_t)(seq % 64);
        memcpy(buf, &seq, 8);
        uint64_t from = me;
        memcpy(buf + 8, &from, 8);
        fill_pattern(buf + 16, len - 16, seq);
        if (!xf_shard_send(s, 1 - me, XMSG, buf, len)) {
            st->full_events++; /* queue full: the rest goes from a later tick */
            break;
        }
        st->next_seq++;
    }
    if (st->next_seq < XMSG_TOTAL || st->asked < VERIFY_N)
        xf_timer_arm(xf_shard_wheel(s), &st->tick, 1);
}

static void xon_msg(xf_shard *s, uint32_t src, const xf_spsc_rec *r)
{
    uint32_t me = xf_shard_id(s);
    xstate *st = &xs[me];
    if (r->type == XMSG) {
        uint64_t seq, from;
        if (r->len < 16 || src != 1 - me) {
            st->payload_errors++;
            return;
        }
        memcpy(&seq, r->data, 8);
        memcpy(&from, r->data + 8, 8);
        if (from != src || r->len != 16 + seq % 64 || !pattern_ok(r->data + 16, r->len - 16, seq))
            st->payload_errors++;
        if (seq != st->expect_seq) st->order_errors++;
        st->expect_seq = seq + 1;
        atomic_store_explicit(&st->received, atomic_load(&st->received) + 1, memory_order_release);
    } else if (r->type == XF_VERIFY_REPLY && r->len == sizeof(xf_verify_reply)) {
        xf_verify_reply rep;
        memcpy(&rep, r->data, sizeof rep);
        uint32_t i = (uint32_t)rep.id;
        if ((rep.id >> 32) != me || i >= VERIFY_N || st->seen[i] || rep.status != XF_VERIFY_OK ||
            rep.kind != XF_VERIFY_TEST_DELAY || rep.result != verify_arg(i) ||
            xf_now_ms() - st->asked_at[i] < verify_arg(i)) {
            st->verify_errors++;
            fprintf(stderr, "verify reply %" PRIx64 " wrong (status %u result %" PRIu64 ")\n",
                    rep.id, rep.status, rep.result);
        }
        if (i < VERIFY_N) st->seen[i] = 1;
        atomic_fetch_add(&st->replied, 1);
    } else {
        st->payload_errors++;
    }
}

static void xstart(xf_shard *s)
{
    uint32_t id = xf_shard_id(s);
    count_slot = (int)id;
    if (id == xf_rt_verify_id(xf_shard_rt(s))) {
        xf_verify_start(s);
        return;
    }
    if (id > 1) return;
    xstate *st = &xs[id];
    st->s = s;
    st->tick.fire = xtick;
    xf_timer_arm(xf_shard_wheel(s), &st->tick, 1);
}

static void xstop(xf_shard *s)
{
    if (xf_shard_id(s) == xf_rt_verify_id(xf_shard_rt(s))) xf_verify_stop(s);
}

static void test_cross_core(void)
{
    memset(xs, 0, sizeof xs);
    xf_rt_config cfg;
    xf_rt_config_defaults(&cfg);
    cfg.shards = 2;
    cfg.pin = false;
    cfg.conns_per_shard = 64;
    cfg.recv_buffers = 64;
    cfg.queue_bytes = 65536;
    cfg.on_msg = xon_msg;
    cfg.on_verify_msg = xf_verify_on_msg;
    cfg.on_shard_start = xstart;
    cfg.on_shard_stop = xstop;
    xf_metrics *m = xf_metrics_new(3);
    cfg.metrics = m;
    char err[256];
    xf_rt *rt = xf_rt_start(&cfg, err, sizeof err);
    CHECK(rt != NULL);
    if (!rt) {
        fprintf(stderr, "xf_rt_start: %s\n", err);
        xf_metrics_free(m);
        return;
    }
    uint64_t t0 = xf_now_ms(), deadline = t0 + 60000;
    while (xf_now_ms() < deadline) {
        if (atomic_load(&xs[0].received) == XMSG_TOTAL &&
            atomic_load(&xs[1].received) == XMSG_TOTAL && atomic_load(&xs[0].replied) == VERIFY_N &&
            atomic_load(&xs[1].replied) == VERIFY_N)
            break;
        usleep(5000);
    }
    uint64_t ms = xf_now_ms() - t0;
    usleep(50000); /* nothing more may arrive */
    xf_rt_stop(rt);
    uint64_t msgs = xf_metrics_get(m, XF_METRIC_HANDOFF_MESSAGES);
    uint64_t bells = xf_metrics_get(m, XF_METRIC_HANDOFF_DOORBELLS);
    uint64_t full = xf_metrics_get(m, XF_METRIC_HANDOFF_QUEUE_FULL);
    printf("cross-core: %u messages each way + %u verifications per shard in %" PRIu64
           " ms; handoff messages %" PRIu64 ", doorbells %" PRIu64 ", queue full %" PRIu64
           " (sender saw %" PRIu64 "+%" PRIu64 ")\n",
           XMSG_TOTAL, VERIFY_N, ms, msgs, bells, full, xs[0].full_events, xs[1].full_events);
    for (int i = 0; i < 2; i++) {
        CHECK(atomic_load(&xs[i].received) == XMSG_TOTAL);
        CHECK(xs[i].expect_seq == XMSG_TOTAL);
        CHECK(xs[i].order_errors == 0);
        CHECK(xs[i].payload_errors == 0);
        CHECK(xs[i].full_events > 0); /* the bursts did fill the queue */
        CHECK(atomic_load(&xs[i].replied) == VERIFY_N);
        CHECK(xs[i].verify_errors == 0);
        uint32_t seen = 0;
        for (uint32_t j = 0; j < VERIFY_N; j++)
            seen += xs[i].seen[j];
        CHECK(seen == VERIFY_N);
    }
    /* 2 x 300k messages + requests + replies, counted once each. */
    CHECK(msgs == 2ull * XMSG_TOTAL + 4ull * VERIFY_N);
    CHECK(full == xs[0].full_events + xs[1].full_events);
    CHECK(bells > 0 && bells * 20 < msgs); /* one per batch, not per message */
    CHECK(xf_metrics_get(m, XF_METRIC_VERIFY_REQUESTS) == 2 * VERIFY_N);
    CHECK(xf_metrics_get(m, XF_METRIC_VERIFY_RESPONSES) == 2 * VERIFY_N);
    xf_metrics_free(m);
}

/* ---- (e) zero allocations per relayed message in steady state ------------------------- */

#define RCONNS    8
#define RMSG      256u
#define RPERWRITE 32u /* messages per write: pipelined */
/* Output blocks each shard allocates at start: 16 MiB, more than 8 queues
 * at their backpressure mark plus what 64 receive buffers add past it. */
#define RESERVE 1024u

typedef struct {
    int fd;
    uint32_t k;
    _Atomic uint64_t goal;  /* bytes to send / to expect, raised per phase */
    _Atomic uint64_t moved; /* bytes sent / received so far */
    _Atomic bool bad;
} rstream;

static rstream src_streams[RCONNS], sink_streams[RCONNS];
static _Atomic bool r_quit, sink_hold;

static uint8_t stream_byte(uint32_t k, uint64_t i)
{
    return (uint8_t)(i * 7 + k * 13 + (i >> 8));
}

static void *source_main(void *arg)
{
    rstream *st = arg;
    uint8_t buf[RMSG * RPERWRITE];
    while (!atomic_load(&r_quit)) {
        uint64_t done = atomic_load(&st->moved), goal = atomic_load(&st->goal);
        if (done >= goal) {
            usleep(1000);
            continue;
        }
        size_t n = goal - done < sizeof buf ? (size_t)(goal - done) : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = stream_byte(st->k, done + i);
        ssize_t w = write(st->fd, buf, n);
        if (w <= 0) {
            atomic_store(&st->bad, true);
            break;
        }
        atomic_store(&st->moved, done + (uint64_t)w);
    }
    return NULL;
}

static void *sink_main(void *arg)
{
    rstream *st = arg;
    uint8_t buf[65536];
    for (;;) {
        for (int i = 0; i < 5000 && atomic_load(&sink_hold); i++) /* at most 5 s */
            usleep(1000);
        ssize_t n = read(st->fd, buf, sizeof buf); /* SO_RCVTIMEO bounds it */
        if (n <= 0) break;
        uint64_t done = atomic_load(&st->moved);
        uint32_t k = st->k;
        if (k == UINT32_MAX) { /* the first byte names the stream */
            for (uint32_t j = 0; j < RCONNS; j++)
                if (stream_byte(j, 0) == buf[0]) k = j;
            st->k = k;
        }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != stream_byte(k, done + (uint64_t)i)) atomic_store(&st->bad, true);
        atomic_store(&st->moved, done + (uint64_t)n);
    }
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void rstart(xf_shard *s)
{
    count_slot = (int)xf_shard_id(s);
}

static bool wait_phase(uint64_t per_stream, uint32_t timeout_ms)
{
    for (int k = 0; k < RCONNS; k++)
        atomic_store(&src_streams[k].goal, per_stream);
    uint64_t deadline = xf_now_ms() + timeout_ms;
    while (xf_now_ms() < deadline) {
        bool all = true;
        for (int k = 0; k < RCONNS; k++)
            if (atomic_load(&sink_streams[k].moved) < per_stream ||
                atomic_load(&sink_streams[k].bad))
                all = false;
        if (all) return true;
        usleep(2000);
    }
    return false;
}

static void test_zero_alloc(void)
{
    /* The sink: a plain listening socket the relay connects to. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof sa;
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 64) == 0 &&
          getsockname(lfd, (struct sockaddr *)&sa, &slen) == 0);

    static xf_relay relay;
    memcpy(&relay.target, &sa, sizeof sa);
    relay.target_len = sizeof sa;
    relay.connect_timeout_ms = 5000;
    xf_rt_config cfg;
    xf_rt_config_defaults(&cfg);
    cfg.shards = 2;
    cfg.pin = false;
    cfg.conns_per_shard = 256;
    cfg.recv_buffers = 64;
    cfg.out_blocks_reserve = RESERVE;
    cfg.on_shard_start = rstart;
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int port = free_port();
    CHECK(port > 0);
    la.sin_port = htons((uint16_t)port);
    xf_relay_listen(&cfg, &relay, (struct sockaddr *)&la, sizeof la);
    xf_metrics *m = xf_metrics_new(3);
    cfg.metrics = m;
    char err[256];
    memset(allocs, 0, sizeof allocs);
    xf_rt *rt = xf_rt_start(&cfg, err, sizeof err);
    CHECK(rt != NULL);
    if (!rt) {
        fprintf(stderr, "xf_rt_start: %s\n", err);
        close(lfd);
        xf_metrics_free(m);
        return;
    }

    pthread_t src_th[RCONNS], sink_th[RCONNS];
    struct timeval tv = {.tv_sec = 30};
    int started = 0;
    for (int k = 0; k < RCONNS; k++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&la, sizeof la) < 0) {
            CHECK(!"connect to the relay");
            close(fd);
            break;
        }
        /* The first byte tells the sink which stream this is. */
        uint8_t b0 = stream_byte((uint32_t)k, 0);
        CHECK(write(fd, &b0, 1) == 1);
        int afd = accept(lfd, NULL, NULL);
        CHECK(afd >= 0);
        setsockopt(afd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        src_streams[k] = (rstream){.fd = fd, .k = (uint32_t)k, .moved = 1};
        sink_streams[k] = (rstream){.fd = afd, .k = UINT32_MAX};
        pthread_create(&src_th[k], NULL, source_main, &src_streams[k]);
        pthread_create(&sink_th[k], NULL, sink_main, &sink_streams[k]);
        started++;
    }
    CHECK(started == RCONNS);
    if (started == RCONNS) {
        /* Warm-up: connections set up, queues at their deepest. The sinks
         * stop reading for a while, so every output queue fills up to its
         * backpressure mark. The block pools were reserved at start: what
         * follows may use blocks but must never allocate. */
        const uint64_t warm = 40000ull * RMSG / RCONNS, steady = 200000ull * RMSG / RCONNS;
        atomic_store(&sink_hold, true);
        for (int k = 0; k < RCONNS; k++)
            atomic_store(&src_streams[k].goal, warm);
        usleep(500000);
        atomic_store(&sink_hold, false);
        CHECK(wait_phase(warm, 60000));
        uint64_t a0[3];
        for (int i = 0; i < 3; i++)
            a0[i] = allocs_of(i);
        uint64_t rx0 = xf_metrics_get(m, XF_METRIC_BYTES_RECEIVED);
        CHECK(wait_phase(warm + steady, 120000));
        uint64_t rx = xf_metrics_get(m, XF_METRIC_BYTES_RECEIVED) - rx0;
        uint64_t d[3];
        for (int i = 0; i < 3; i++)
            d[i] = allocs_of(i) - a0[i];
        printf("zero-alloc: warm-up %" PRIu64 " messages: %" PRIu64 "+%" PRIu64
               " allocations on the shards; steady %" PRIu64 " messages (%" PRIu64
               " bytes relayed): %" PRIu64 "+%" PRIu64 " on the shards, %" PRIu64
               " on the verification thread\n",
               warm * RCONNS / RMSG, a0[0], a0[1], steady * RCONNS / RMSG, rx, d[0], d[1], d[2]);
        CHECK(rx >= steady * RCONNS);
        CHECK(steady * RCONNS / RMSG >= 100000);
        CHECK(d[0] == 0 && d[1] == 0 && d[2] == 0);
    }
    atomic_store(&r_quit, true);
    for (int k = 0; k < started; k++) {
        shutdown(src_streams[k].fd, SHUT_WR);
        pthread_join(src_th[k], NULL);
        pthread_join(sink_th[k], NULL);
        CHECK(!atomic_load(&src_streams[k].bad) && !atomic_load(&sink_streams[k].bad));
        close(src_streams[k].fd);
        close(sink_streams[k].fd);
    }
    xf_rt_stop(rt);
    close(lfd);
    xf_metrics_free(m);
}

int main(void)
{
    counter_install();
    test_counter();
    test_wheel();
    test_spsc();
    test_cross_core();
    test_zero_alloc();
    return check_report("test_runtime");
}
