/* The per-core loop and its connections.
 *
 * One iteration: reap the CQE batch (callbacks run), give the provided
 * buffers back, re-arm recvs stopped by ENOBUFS, drain the inboxes, fire
 * timers, flush every connection with output (one send in flight each), ring
 * the doorbells of threads we queued messages for, then one io_uring_enter
 * that submits everything and waits for the next completion or timer.
 */
#include "heap.h"
#include "log.h"
#include "metrics.h"
#include "rt.h"
#include "snapshot.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum {
    CF_FIXED = 1 << 0,      /* fd is a fixed-file index */
    CF_RECV = 1 << 1,       /* multishot recv armed */
    CF_SEND = 1 << 2,       /* a send in flight */
    CF_CONNECTING = 1 << 3, /* outbound connect in flight */
    CF_CLOSING = 1 << 4,    /* closing: no more callbacks once torn down */
    CF_FLUSH = 1 << 5,      /* closing after the output is sent */
    CF_TORN = 1 << 6,       /* cancel + close submitted */
    CF_PAUSED = 1 << 7,     /* reading stopped by the owner */
    CF_LISTED = 1 << 8,     /* on the flush list */
    CF_REARM = 1 << 9,      /* recv to re-arm at the end of the batch */
    CF_WANTDRAIN = 1 << 10, /* a writer saw "full": call on_drain below low-water */
    CF_LIVE = 1 << 11,      /* slot in use */
    CF_SHUTDOWN = 1 << 12,  /* on_shutdown already called */
};

/* Internal message types (application types start at 16). */
enum { MSG_STOP = 1 };

struct xf_conn {
    xf_shard *shard;
    const xf_conn_ops *ops;
    void *ctx;
    int fd;
    uint32_t idx, gen;
    uint32_t flags;
    uint32_t inflight; /* SQEs whose completion we still expect */
    int err;
    xf_obuf out;
    xf_conn *flush_next;
    xf_timer timer; /* the owner's timer */
    xf_timer drain; /* flush-before-close deadline */
    struct msghdr msg;
    struct iovec iov[XF_OBUF_IOV_MAX];
    struct sockaddr_storage addr; /* outbound: must live until connect completes */
    struct __kernel_timespec cto;
};

typedef struct {
    int fd;
    uint32_t idx;
    bool armed;
    int last_err; /* logged once until an accept succeeds again */
    xf_timer retry;
    struct xf_shard *shard;
    const xf_listen_spec *spec;
} listener;

typedef struct {
    int fd; /* -1: free */
    uint32_t events, gen;
    bool armed; /* a multishot poll is in flight for this generation */
    xf_watch_fn fn;
    void *arg;
} watch;

struct xf_shard {
    xf_rt *rt;
    uint32_t loop_wait_us; /* sleep cap (xf_shard_loop_wait) */
    watch watches[XF_WATCH_MAX];
    uint32_t id;
    bool is_verify;
    pthread_t thread;
    struct io_uring ring;
    int ring_fd; /* for MSG_RING from other threads */
    xf_bufring bufs;
    xf_heap *heap; /* this thread's: output blocks and tables */
    xf_obpool pool;
    xf_wheel wheel;
    xf_conn *conns;
    uint32_t nconns;
    uint32_t *free_idx;
    uint32_t nfree;
    uint32_t live;
    xf_conn *flush_head;
    xf_conn **rearm;
    uint32_t nrearm;
    listener listeners[XF_LISTENERS_MAX];
    uint32_t nlisteners;
    uint64_t doorbell_mask; /* destinations we queued messages for */
    bool stopping;
    uint64_t stop_deadline;
    xf_core_metrics *m;
    const xf_snapshot *snap;
    uint64_t snap_version;
    uint64_t cpu_sampled_ms;
    void *user;
    alignas(64) _Atomic int sleeping;
    _Atomic int started; /* 1 ok, -1 failed */
    char err[256];
};

struct xf_rt {
    xf_rt_config cfg;
    uint32_t n;       /* shards; the verification thread is index n */
    xf_shard *shards; /* n + 1 */
    xf_spsc *queues;  /* [src][dst], src in 0..n+1 (n+1 = control), dst in 0..n */
    struct io_uring control_ring;
    bool control_ring_ok;
    pthread_mutex_t control_lock; /* control-thread posts may come from signal code paths */
};

static inline xf_spsc *queue(xf_rt *rt, uint32_t src, uint32_t dst)
{
    return &rt->queues[(size_t)src * (rt->n + 1) + dst];
}

/* ---- small helpers ---------------------------------------------------------- */

static void sqe_fd(struct io_uring_sqe *sqe, const xf_conn *c)
{
    if (c->flags & CF_FIXED) sqe->flags |= IOSQE_FIXED_FILE;
}

static void m_inc(xf_shard *s, xf_metric id, uint64_t n)
{
    if (s->m) xf_metric_inc(s->m, id, n);
}

static void m_add(xf_shard *s, xf_metric id, int64_t d)
{
    if (s->m) xf_metric_add(s->m, id, d);
}

static xf_conn *conn_from(xf_shard *s, uint64_t ud)
{
    uint32_t idx = xf_ud_idx(ud);
    if (idx >= s->nconns) return NULL;
    xf_conn *c = &s->conns[idx];
    return (c->flags & CF_LIVE) && c->gen == xf_ud_gen(ud) ? c : NULL;
}

static void conn_timer_fire(xf_timer *t);
static void conn_drain_fire(xf_timer *t);

static xf_conn *conn_alloc(xf_shard *s)
{
    if (s->nfree == 0) return NULL;
    uint32_t idx = s->free_idx[--s->nfree];
    xf_conn *c = &s->conns[idx];
    assert(!(c->flags & CF_LIVE) && c->inflight == 0);
    uint32_t gen = c->gen; /* a never-used slot reads as zeros */
    memset(c, 0, offsetof(xf_conn, addr));
    c->gen = gen;
    c->idx = idx;
    c->shard = s;
    c->flags = CF_LIVE;
    c->fd = -1;
    c->timer.fire = conn_timer_fire;
    c->drain.fire = conn_drain_fire;
    s->live++;
    m_add(s, XF_METRIC_CONNS_OPEN, 1);
    return c;
}

static void conn_free(xf_conn *c)
{
    xf_shard *s = c->shard;
    assert(c->inflight == 0 && (c->flags & CF_LIVE));
    xf_timer_cancel(&s->wheel, &c->timer);
    xf_timer_cancel(&s->wheel, &c->drain);
    m_add(s, XF_METRIC_OUTPUT_BYTES_QUEUED, -(int64_t)c->out.queued);
    xf_obuf_clear(&c->out, &s->pool);
    c->flags = 0;
    c->gen++; /* stale completions for the old connection are ignored */
    s->free_idx[s->nfree++] = c->idx;
    s->live--;
    m_add(s, XF_METRIC_CONNS_OPEN, -1);
    m_inc(s, XF_METRIC_CONNS_CLOSED, 1);
}

static void arm_recv(xf_conn *c)
{
    xf_shard *s = c->shard;
    assert(!(c->flags & CF_RECV));
    struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe_fd(sqe, c);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = s->bufs.bgid;
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_RECV, c->idx, c->gen));
    c->flags |= CF_RECV;
    c->inflight++;
}

static void cancel_conn_ops(xf_conn *c)
{
    struct io_uring_sqe *sqe = xf_ring_sqe(&c->shard->ring);
    unsigned flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
    if (c->flags & CF_FIXED) flags |= IORING_ASYNC_CANCEL_FD_FIXED;
    io_uring_prep_cancel_fd(sqe, c->fd, flags);
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_CANCEL, c->idx, c->gen));
}

/* Cancels what is in flight and closes the socket; the slot is freed when the
 * last completion arrives. */
static void teardown(xf_conn *c)
{
    if (c->flags & CF_TORN) return;
    c->flags |= CF_TORN | CF_CLOSING;
    xf_timer_cancel(&c->shard->wheel, &c->timer);
    xf_timer_cancel(&c->shard->wheel, &c->drain);
    const xf_conn_ops *ops = c->ops;
    c->ops = NULL;
    if (ops && ops->on_close) ops->on_close(c, c->err);
    if (c->fd < 0) { /* never had a socket */
        if (c->inflight == 0) conn_free(c);
        return;
    }
    if (c->flags & (CF_RECV | CF_SEND | CF_CONNECTING)) cancel_conn_ops(c);
    struct io_uring_sqe *sqe = xf_ring_sqe(&c->shard->ring);
    if (c->flags & CF_FIXED)
        io_uring_prep_close_direct(sqe, (unsigned)c->fd);
    else
        io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_CLOSE, c->idx, c->gen));
    c->inflight++;
}

static void maybe_free(xf_conn *c)
{
    if ((c->flags & CF_TORN) && c->inflight == 0) conn_free(c);
}

static void list_flush(xf_conn *c)
{
    if (c->flags & CF_LISTED) return;
    c->flags |= CF_LISTED;
    c->flush_next = c->shard->flush_head;
    c->shard->flush_head = c;
}

/* ---- public connection API ------------------------------------------------------ */

void *xf_conn_ctx(const xf_conn *c)
{
    return c->ctx;
}
void xf_conn_set_ctx(xf_conn *c, void *ctx)
{
    c->ctx = ctx;
}
void xf_conn_set_ops(xf_conn *c, const xf_conn_ops *ops)
{
    if (!(c->flags & CF_TORN)) c->ops = ops;
}
xf_shard *xf_conn_shard(const xf_conn *c)
{
    return c->shard;
}
bool xf_conn_closing(const xf_conn *c)
{
    return (c->flags & CF_CLOSING) != 0;
}
size_t xf_conn_queued(const xf_conn *c)
{
    return c->out.queued;
}

bool xf_conn_write(xf_conn *c, const void *data, size_t len)
{
    xf_shard *s = c->shard;
    if (c->flags & CF_TORN) return false;
    if (c->out.queued + len > s->rt->cfg.out_limit ||
        !xf_obuf_append(&c->out, &s->pool, data, len)) {
        c->flags |= CF_WANTDRAIN;
        return false;
    }
    m_add(s, XF_METRIC_OUTPUT_BYTES_QUEUED, (int64_t)len);
    if (c->out.queued > s->rt->cfg.out_high) c->flags |= CF_WANTDRAIN;
    if (!(c->flags & (CF_SEND | CF_CONNECTING))) list_flush(c);
    return true;
}

bool xf_conn_write_full(const xf_conn *c)
{
    return c->out.queued > c->shard->rt->cfg.out_high;
}

void xf_conn_pause(xf_conn *c)
{
    if (c->flags & (CF_PAUSED | CF_TORN)) return;
    c->flags |= CF_PAUSED;
    m_inc(c->shard, XF_METRIC_BACKPRESSURE_PAUSES, 1);
    if (c->flags & CF_RECV) { /* the recv ends with -ECANCELED (or data first) */
        struct io_uring_sqe *sqe = xf_ring_sqe(&c->shard->ring);
        io_uring_prep_cancel64(sqe, xf_ud(XF_OP_RECV, c->idx, c->gen), 0);
        io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_CANCEL, c->idx, c->gen));
    }
}

void xf_conn_resume(xf_conn *c)
{
    if (!(c->flags & CF_PAUSED) || (c->flags & CF_CLOSING)) return;
    c->flags &= ~CF_PAUSED;
    if (!(c->flags & (CF_RECV | CF_CONNECTING)) && c->fd >= 0) arm_recv(c);
}

void xf_conn_close(xf_conn *c, bool flush)
{
    if (c->flags & CF_TORN) return;
    if (flush && c->out.queued > 0 && !(c->flags & CF_CONNECTING)) {
        if (!(c->flags & CF_FLUSH)) {
            c->flags |= CF_CLOSING | CF_FLUSH;
            xf_timer_arm(&c->shard->wheel, &c->drain, c->shard->rt->cfg.shutdown_ms);
        }
        return; /* teardown when the output is sent, or at the deadline */
    }
    teardown(c);
}

void xf_conn_timer(xf_conn *c, uint32_t ms)
{
    if (ms == 0 || (c->flags & CF_TORN))
        xf_timer_cancel(&c->shard->wheel, &c->timer);
    else
        xf_timer_arm(&c->shard->wheel, &c->timer, ms);
}

static void conn_timer_fire(xf_timer *t)
{
    xf_conn *c = (xf_conn *)((char *)t - offsetof(xf_conn, timer));
    if (c->ops && c->ops->on_timer) c->ops->on_timer(c);
}

static void conn_drain_fire(xf_timer *t)
{
    xf_conn *c = (xf_conn *)((char *)t - offsetof(xf_conn, drain));
    c->err = -ETIMEDOUT; /* could not flush in time */
    teardown(c);
}

xf_conn *xf_conn_connect(xf_shard *s, const struct sockaddr *addr, socklen_t addrlen,
                         uint32_t timeout_ms, const xf_conn_ops *ops, void *ctx)
{
    if (addrlen > sizeof(struct sockaddr_storage)) return NULL;
    xf_conn *c = conn_alloc(s);
    if (!c) return NULL;
    /* Outbound sockets are few: a plain fd lets us set TCP_NODELAY first. */
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->flags |= CF_TORN;
        conn_free(c);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->ops = ops;
    c->ctx = ctx;
    memcpy(&c->addr, addr, addrlen);
    c->cto.tv_sec = timeout_ms / 1000;
    c->cto.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->addr, addrlen);
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_CONNECT, c->idx, c->gen));
    sqe->flags |= IOSQE_IO_LINK;
    sqe = xf_ring_sqe(&s->ring);
    io_uring_prep_link_timeout(sqe, &c->cto, 0);
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_LTIMEOUT, c->idx, c->gen));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    c->flags |= CF_CONNECTING;
    c->inflight++;
    m_inc(s, XF_METRIC_CONNS_OUTBOUND, 1);
    return c;
}

/* ---- completions ------------------------------------------------------------------ */

static void on_recv(xf_shard *s, struct io_uring_cqe *cqe)
{
    xf_conn *c = conn_from(s, cqe->user_data);
    int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        s->bufs.in_use++;
        if (c && res > 0 && !(c->flags & CF_TORN) && c->ops && c->ops->on_data) {
            m_inc(s, XF_METRIC_BYTES_RECEIVED, (uint64_t)res);
            c->ops->on_data(c, xf_bufring_buf(&s->bufs, bid), (size_t)res);
        }
        xf_bufring_return(&s->bufs, bid); /* promptly: the data was consumed or copied */
    }
    if (!c || (cqe->flags & IORING_CQE_F_MORE)) return;
    /* The multishot ended. */
    c->flags &= ~CF_RECV;
    c->inflight--;
    if (c->flags & CF_TORN) {
        maybe_free(c);
        return;
    }
    if (res == 0) { /* EOF */
        if (c->ops && c->ops->on_eof)
            c->ops->on_eof(c);
        else
            xf_conn_close(c, true);
        return;
    }
    if (res == -ENOBUFS) { /* ring empty: not EOF; re-arm once buffers are back */
        m_inc(s, XF_METRIC_RECV_ENOBUFS, 1);
        c->flags |= CF_REARM;
        s->rearm[s->nrearm++] = c;
        return;
    }
    if (res < 0 && res != -ECANCELED) {
        c->err = res;
        teardown(c);
        return;
    }
    if (!(c->flags & (CF_PAUSED | CF_CLOSING))) {
        c->flags |= CF_REARM;
        s->rearm[s->nrearm++] = c;
    }
}

static void on_send(xf_shard *s, struct io_uring_cqe *cqe)
{
    xf_conn *c = conn_from(s, cqe->user_data);
    if (!c) return;
    c->flags &= ~CF_SEND;
    c->inflight--;
    int res = cqe->res;
    if (c->flags & CF_TORN) {
        maybe_free(c);
        return;
    }
    if (res < 0) {
        c->err = res;
        teardown(c);
        return;
    }
    m_inc(s, XF_METRIC_BYTES_SENT, (uint64_t)res);
    m_add(s, XF_METRIC_OUTPUT_BYTES_QUEUED, -(int64_t)res);
    xf_obuf_consume(&c->out, &s->pool, (size_t)res);
    c->out.inflight = 0;
    if (c->out.queued)
        list_flush(c);
    else if (c->flags & CF_FLUSH) {
        teardown(c);
        return;
    }
    if ((c->flags & CF_WANTDRAIN) && c->out.queued <= s->rt->cfg.out_low) {
        c->flags &= ~CF_WANTDRAIN;
        if (c->ops && c->ops->on_drain) c->ops->on_drain(c);
    }
}

static void on_connect(xf_shard *s, struct io_uring_cqe *cqe)
{
    xf_conn *c = conn_from(s, cqe->user_data);
    if (!c) return;
    c->flags &= ~CF_CONNECTING;
    c->inflight--;
    if (c->flags & CF_TORN) {
        maybe_free(c);
        return;
    }
    int res = cqe->res == -ECANCELED ? -ETIMEDOUT : cqe->res; /* the linked timeout fired */
    if (res < 0) {
        c->err = res;
        if (c->ops && c->ops->on_connect) c->ops->on_connect(c, res);
        teardown(c);
        return;
    }
    if (!(c->flags & CF_PAUSED)) arm_recv(c);
    if (c->out.queued) list_flush(c);
    if (c->ops && c->ops->on_connect) c->ops->on_connect(c, 0);
}

static void on_close_done(xf_shard *s, struct io_uring_cqe *cqe)
{
    xf_conn *c = conn_from(s, cqe->user_data);
    if (!c) return;
    c->inflight--;
    maybe_free(c);
}

static void arm_accept(xf_shard *s, listener *l)
{
    struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
    io_uring_prep_multishot_accept_direct(sqe, l->fd, NULL, NULL, 0); /* no CLOEXEC: EINVAL */
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_ACCEPT, l->idx, 0));
    l->armed = true;
}

static void accept_retry_fire(xf_timer *t)
{
    listener *l = (listener *)((char *)t - offsetof(listener, retry));
    if (!l->armed && !l->shard->stopping && l->fd >= 0) arm_accept(l->shard, l);
}

static void on_accept(xf_shard *s, struct io_uring_cqe *cqe)
{
    uint32_t li = xf_ud_idx(cqe->user_data);
    if (li >= s->nlisteners) return;
    listener *l = &s->listeners[li];
    if (!(cqe->flags & IORING_CQE_F_MORE)) l->armed = false;
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED && !s->stopping && cqe->res != l->last_err)
            xf_log(XF_LOG_WARN, "shard %u: accept failed: %s (retrying every 100 ms)", s->id,
                   strerror(-cqe->res));
        l->last_err = cqe->res;
        /* Never spin on a failing accept (ENFILE, EMFILE, ENOMEM): back off. */
        if (!l->armed && !s->stopping && l->fd >= 0) xf_timer_arm(&s->wheel, &l->retry, 100);
        return;
    } else {
        l->last_err = 0;
        xf_conn *c = conn_alloc(s);
        if (!c) { /* table full: refuse by closing the new socket */
            struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
            io_uring_prep_close_direct(sqe, (unsigned)cqe->res);
            io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_NONE, 0, 0));
            xf_log(XF_LOG_WARN, "shard %u: connection table full (%u): refusing a connection",
                   s->id, s->nconns);
        } else {
            c->fd = cqe->res;
            c->flags |= CF_FIXED;
            c->ops = l->spec->ops;
            m_inc(s, XF_METRIC_CONNS_ACCEPTED, 1);
            if (l->spec->on_accept) l->spec->on_accept(c, l->spec->arg);
            if (!(c->flags & (CF_TORN | CF_PAUSED))) arm_recv(c);
        }
    }
    if (!l->armed && !s->stopping && l->fd >= 0) arm_accept(s, l);
}

static void arm_watch(xf_shard *s, watch *w, uint32_t slot)
{
    struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
    io_uring_prep_poll_multishot(sqe, w->fd, w->events);
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_POLL, slot, w->gen));
    w->armed = true;
}

static void stop_watch(xf_shard *s, watch *w, uint32_t slot)
{
    if (!w->armed) return;
    struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
    io_uring_prep_poll_remove(sqe, xf_ud(XF_OP_POLL, slot, w->gen));
    io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_NONE, 0, 0));
    w->armed = false;
    w->gen++; /* completions of the old poll are ignored from now on */
}

bool xf_shard_watch(xf_shard *s, int fd, uint32_t events, xf_watch_fn fn, void *arg)
{
    uint32_t slot = XF_WATCH_MAX, free_slot = XF_WATCH_MAX;
    for (uint32_t i = 0; i < XF_WATCH_MAX; i++) {
        if (s->watches[i].fd == fd) slot = i;
        if (s->watches[i].fd < 0 && free_slot == XF_WATCH_MAX) free_slot = i;
    }
    if (slot == XF_WATCH_MAX) {
        if (events == 0) return true;
        if (free_slot == XF_WATCH_MAX) return false;
        slot = free_slot;
    }
    watch *w = &s->watches[slot];
    stop_watch(s, w, slot);
    if (events == 0) {
        w->fd = -1;
        return true;
    }
    w->fd = fd;
    w->events = events;
    w->fn = fn;
    w->arg = arg;
    arm_watch(s, w, slot);
    return true;
}

static void on_poll(xf_shard *s, struct io_uring_cqe *cqe)
{
    uint32_t slot = xf_ud_idx(cqe->user_data);
    if (slot >= XF_WATCH_MAX) return;
    watch *w = &s->watches[slot];
    if (w->fd < 0 || w->gen != xf_ud_gen(cqe->user_data)) return; /* stale */
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more) w->armed = false;
    if (cqe->res > 0) w->fn(s, w->fd, (uint32_t)cqe->res, w->arg);
    /* The callback may have changed or stopped the watch; otherwise keep it armed. */
    if (!more && w->fd >= 0 && !w->armed && w->gen == xf_ud_gen(cqe->user_data))
        arm_watch(s, w, slot);
}

static void handle_cqe(xf_shard *s, struct io_uring_cqe *cqe)
{
    switch (xf_ud_op(cqe->user_data)) {
    case XF_OP_POLL: on_poll(s, cqe); break;
    case XF_OP_RECV: on_recv(s, cqe); break;
    case XF_OP_SEND: on_send(s, cqe); break;
    case XF_OP_ACCEPT: on_accept(s, cqe); break;
    case XF_OP_CONNECT: on_connect(s, cqe); break;
    case XF_OP_CLOSE: on_close_done(s, cqe); break;
    default: break; /* doorbells, cancels, linked timeouts: nothing to do */
    }
}

/* ---- output ------------------------------------------------------------------------- */

static void flush_all(xf_shard *s)
{
    xf_conn *c = s->flush_head;
    s->flush_head = NULL;
    while (c) {
        xf_conn *next = c->flush_next;
        c->flags &= ~CF_LISTED;
        if (!(c->flags & (CF_SEND | CF_TORN | CF_CONNECTING)) && c->out.queued) {
            int n = xf_obuf_iov(&c->out, c->iov);
            memset(&c->msg, 0, sizeof c->msg);
            c->msg.msg_iov = c->iov;
            c->msg.msg_iovlen = (size_t)n;
            struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
            io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
            sqe_fd(sqe, c);
            io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_SEND, c->idx, c->gen));
            c->flags |= CF_SEND;
            c->inflight++;
            m_inc(s, XF_METRIC_SENDS, 1);
        }
        c = next;
    }
}

/* ---- messages and doorbells ---------------------------------------------------------- */

bool xf_shard_send(xf_shard *s, uint32_t dst, uint32_t type, const void *data, uint32_t len)
{
    return xf_shard_send2(s, dst, type, NULL, 0, data, len);
}

bool xf_shard_send2(xf_shard *s, uint32_t dst, uint32_t type, const void *hdr, uint32_t hlen,
                    const void *data, uint32_t len)
{
    xf_rt *rt = s->rt;
    assert(dst <= rt->n);
    if (!xf_spsc_push2(queue(rt, s->id, dst), type, hdr, hlen, data, len)) {
        m_inc(s, XF_METRIC_HANDOFF_QUEUE_FULL, 1);
        return false;
    }
    m_inc(s, XF_METRIC_HANDOFF_MESSAGES, 1);
    s->doorbell_mask |= 1ull << dst;
    return true;
}

/* One MSG_RING per destination per iteration, and only to a thread that may
 * be asleep: a wake costs 15-25 us in this VM, a queue push a few ns. */
static void ring_doorbells(xf_shard *s)
{
    if (!s->doorbell_mask) return;
    atomic_thread_fence(memory_order_seq_cst); /* pairs with the sleeper's fence */
    for (uint64_t m = s->doorbell_mask; m; m &= m - 1) {
        uint32_t dst = (uint32_t)__builtin_ctzll(m);
        xf_shard *d = &s->rt->shards[dst];
        if (!atomic_load_explicit(&d->sleeping, memory_order_relaxed)) continue;
        struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
        io_uring_prep_msg_ring(sqe, d->ring_fd, 0, xf_ud(XF_OP_DOORBELL, 0, 0), 0);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_NONE, 0, 0));
        m_inc(s, XF_METRIC_HANDOFF_DOORBELLS, 1);
    }
    s->doorbell_mask = 0;
}

static bool inboxes_empty(xf_shard *s)
{
    xf_rt *rt = s->rt;
    for (uint32_t src = 0; src <= rt->n + 1; src++)
        if (!xf_spsc_empty(queue(rt, src, s->id))) return false;
    return true;
}

static void begin_stop(xf_shard *s);

/* Bounded: at most `budget` records per iteration, so a flood from one core
 * cannot starve this core's own connections. */
static void drain_inboxes(xf_shard *s, uint32_t budget)
{
    xf_rt *rt = s->rt;
    for (uint32_t src = 0; src <= rt->n + 1; src++) {
        xf_spsc *q = queue(rt, src, s->id);
        xf_spsc_rec r;
        while (budget && xf_spsc_peek(q, &r)) {
            if (r.type == MSG_STOP)
                begin_stop(s);
            else if (s->is_verify ? rt->cfg.on_verify_msg : rt->cfg.on_msg)
                (s->is_verify ? rt->cfg.on_verify_msg : rt->cfg.on_msg)(s, src, &r);
            xf_spsc_pop(q);
            budget--;
        }
    }
}

/* ---- listeners ------------------------------------------------------------------------ */

static int open_listener(const xf_listen_spec *spec, char *err, size_t errlen)
{
    int fd = socket(spec->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* inherited by accepted */
    if (bind(fd, (const struct sockaddr *)&spec->addr, spec->addrlen) < 0) goto fail;
    if (listen(fd, 4096) < 0) goto fail;
    return fd;
fail:
    snprintf(err, errlen, "listen: %s", strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
}

static void begin_stop(xf_shard *s)
{
    if (s->stopping) return;
    s->stopping = true;
    s->stop_deadline = xf_now_ms() + s->rt->cfg.shutdown_ms;
    for (uint32_t i = 0; i < s->nlisteners; i++) {
        listener *l = &s->listeners[i];
        if (l->fd < 0) continue;
        if (l->armed) {
            struct io_uring_sqe *sqe = xf_ring_sqe(&s->ring);
            io_uring_prep_cancel64(sqe, xf_ud(XF_OP_ACCEPT, l->idx, 0), 0);
            io_uring_sqe_set_data64(sqe, xf_ud(XF_OP_NONE, 0, 0));
        }
        xf_timer_cancel(&s->wheel, &l->retry);
        close(l->fd); /* new connections go to no one: the kernel refuses them */
        l->fd = -1;
    }
    for (uint32_t i = 0; i < s->nconns; i++) {
        xf_conn *c = &s->conns[i];
        if (!(c->flags & CF_LIVE) || (c->flags & (CF_TORN | CF_SHUTDOWN))) continue;
        c->flags |= CF_SHUTDOWN;
        if (c->ops && c->ops->on_shutdown)
            c->ops->on_shutdown(c);
        else
            xf_conn_close(c, true);
    }
}

/* ---- the loop ----------------------------------------------------------------------- */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int shard_setup(xf_shard *s)
{
    xf_rt *rt = s->rt;
    const xf_rt_config *cfg = &rt->cfg;
    uint32_t files = s->is_verify ? 256 : cfg->conns_per_shard;
    s->heap = xf_heap_new(); /* on this thread: mimalloc heaps belong to their maker */
    int rc = xf_ring_init(&s->ring, 4096, files);
    if (rc < 0) {
        snprintf(s->err, sizeof s->err, "io_uring setup: %s", strerror(-rc));
        return -1;
    }
    s->ring_fd = s->ring.ring_fd;
    uint32_t nbufs = s->is_verify ? 64 : cfg->recv_buffers;
    rc = xf_bufring_init(&s->ring, &s->bufs, 0, nbufs, cfg->recv_buffer_size);
    if (rc < 0) {
        snprintf(s->err, sizeof s->err, "provided buffer ring: %s", strerror(-rc));
        return -1;
    }
    s->nconns = s->is_verify ? 256 : cfg->conns_per_shard;
    size_t bytes = (size_t)s->nconns * sizeof(xf_conn);
    s->conns = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    s->free_idx = xf_heap_malloc(s->heap, s->nconns * sizeof *s->free_idx);
    s->rearm = xf_heap_malloc(s->heap, s->nconns * sizeof *s->rearm);
    if (s->conns == MAP_FAILED || !s->free_idx || !s->rearm) {
        snprintf(s->err, sizeof s->err, "out of memory for %u connections", s->nconns);
        return -1;
    }
    /* The table stays untouched until used (slots get their index when
     * allocated): idle capacity costs no memory. Low slots first. */
    for (uint32_t i = 0; i < s->nconns; i++)
        s->free_idx[i] = s->nconns - 1 - i;
    s->nfree = s->nconns;
    for (uint32_t i = 0; i < XF_WATCH_MAX; i++)
        s->watches[i].fd = -1;
    xf_obpool_init(&s->pool, cfg->out_blocks, s->heap);
    xf_obpool_reserve(&s->pool, cfg->out_blocks_reserve);
    xf_wheel_init(&s->wheel, xf_now_ms());
    if (!s->is_verify) {
        for (uint32_t i = 0; i < cfg->listen_count; i++) {
            listener *l = &s->listeners[s->nlisteners];
            l->spec = &cfg->listen[i];
            l->idx = s->nlisteners;
            l->shard = s;
            l->retry.fire = accept_retry_fire;
            l->fd = open_listener(l->spec, s->err, sizeof s->err);
            if (l->fd < 0) return -1;
            s->nlisteners++;
            arm_accept(s, l);
        }
    }
    return 0;
}

/* After a sleep the core comes back online; otherwise it just passes a
 * quiescent point. Either way it holds no pointer into an older snapshot. */
static void refresh_snapshot(xf_shard *s, bool was_offline)
{
    xf_rcu *rcu = s->rt->cfg.rcu;
    s->snap = was_offline ? xf_rcu_online(rcu, s->id) : xf_rcu_quiescent(rcu, s->id);
    uint64_t v = s->snap ? xf_snapshot_version(s->snap) : 0;
    if (v != s->snap_version) {
        s->snap_version = v;
        m_inc(s, XF_METRIC_SNAPSHOT_SWAPS, 1);
    }
}

static void *shard_main(void *arg)
{
    xf_shard *s = arg;
    xf_rt *rt = s->rt;
    if (rt->cfg.pin) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)(s->id % (uint32_t)(ncpu > 0 ? ncpu : 1)), &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    if (shard_setup(s) < 0) {
        atomic_store(&s->started, -1);
        return NULL;
    }
    if (rt->cfg.rcu) refresh_snapshot(s, true);
    if (rt->cfg.on_shard_start) rt->cfg.on_shard_start(s);
    atomic_store(&s->started, 1);

    for (;;) {
        uint64_t now = xf_now_ms();
        drain_inboxes(s, 4096);
        uint32_t fired = xf_wheel_run(&s->wheel, now);
        if (fired) m_inc(s, XF_METRIC_TIMERS_FIRED, fired);
        if (rt->cfg.on_loop && !s->is_verify) rt->cfg.on_loop(s);
        flush_all(s);
        ring_doorbells(s);
        if (s->stopping && (s->live == 0 || now >= s->stop_deadline)) break;

        /* Sleep unless an inbox has work; the seq_cst fence pairs with the
         * producers' fence in ring_doorbells (Dekker): either they see us
         * asleep and ring, or we see their records here. */
        uint64_t wait_ms = xf_wheel_wait_ms(&s->wheel, now);
        if (s->stopping && wait_ms > 50) wait_ms = 50;
        atomic_store_explicit(&s->sleeping, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        if (!inboxes_empty(s)) wait_ms = 0;
        if (rt->cfg.rcu && wait_ms) xf_rcu_offline(rt->cfg.rcu, s->id); /* no reads while asleep */
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ms / 1000),
                                       .tv_nsec = (long long)(wait_ms % 1000) * 1000000};
        uint64_t cap_us = s->loop_wait_us;
        if (cap_us && wait_ms && (wait_ms == UINT64_MAX || wait_ms * 1000 > cap_us)) {
            ts.tv_sec = (long long)(cap_us / 1000000);
            ts.tv_nsec = (long long)(cap_us % 1000000) * 1000;
            wait_ms = 1; /* not "forever": the timespec below applies */
        }
        struct io_uring_cqe *cqe;
        if (wait_ms == 0)
            io_uring_submit_and_get_events(&s->ring);
        else
            io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, wait_ms == UINT64_MAX ? NULL : &ts,
                                             NULL);
        atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
        m_inc(s, XF_METRIC_URING_ENTERS, 1);
        /* Callbacks arm timers relative to the wheel's clock: bring it to now. */
        xf_wheel_set_clock(&s->wheel, xf_now_ms());
        if (rt->cfg.rcu) refresh_snapshot(s, wait_ms != 0);

        unsigned head, n = 0;
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            handle_cqe(s, cqe);
            n++;
        }
        io_uring_cq_advance(&s->ring, n);
        m_inc(s, XF_METRIC_CQES, n);
        xf_bufring_publish(&s->bufs);
        for (uint32_t i = 0; i < s->nrearm; i++) { /* buffers are back: re-arm */
            xf_conn *c = s->rearm[i];
            c->flags &= ~CF_REARM;
            if (!(c->flags & (CF_RECV | CF_PAUSED | CF_CLOSING))) arm_recv(c);
        }
        s->nrearm = 0;
        if (s->m) {
            xf_metric_inc(s->m, XF_METRIC_LOOP_ITERATIONS, 1);
            xf_metric_set(s->m, XF_METRIC_PBUFS_IN_USE, s->bufs.in_use);
            /* Thread CPU time is a real syscall (no vDSO): sample it ten times a second. */
            if (s->wheel.now_ms - s->cpu_sampled_ms >= 100) {
                s->cpu_sampled_ms = s->wheel.now_ms;
                xf_metric_set(s->m, XF_METRIC_CPU_NS, thread_cpu_ns());
            }
        }
    }
    /* Past the deadline: close what is left without flushing. */
    for (uint32_t i = 0; i < s->nconns; i++)
        if ((s->conns[i].flags & CF_LIVE) && !(s->conns[i].flags & CF_TORN)) {
            s->conns[i].err = -ECANCELED;
            teardown(&s->conns[i]);
        }
    /* Wait briefly for the closes, then release the ring on this thread
     * (SINGLE_ISSUER: the ring belongs to the thread that made it). */
    uint64_t until = xf_now_ms() + 200;
    while (s->live && xf_now_ms() < until) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_nsec = 10 * 1000000};
        io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
        unsigned head, n = 0;
        io_uring_for_each_cqe(&s->ring, head, cqe)
        {
            handle_cqe(s, cqe);
            n++;
        }
        io_uring_cq_advance(&s->ring, n);
        xf_bufring_publish(&s->bufs);
    }
    if (rt->cfg.rcu) xf_rcu_offline(rt->cfg.rcu, s->id);
    if (rt->cfg.on_shard_stop) rt->cfg.on_shard_stop(s);
    /* Output of connections the closes did not finish: back to the pool, and
     * the pool back to this thread's heap before it goes. */
    for (uint32_t i = 0; i < s->nconns; i++)
        if (s->conns[i].flags & CF_LIVE) xf_obuf_clear(&s->conns[i].out, &s->pool);
    xf_obpool_free(&s->pool);
    xf_bufring_free(&s->ring, &s->bufs);
    io_uring_queue_exit(&s->ring);
    s->ring.ring_fd = -1;
    xf_heap_delete(s->heap); /* the tables left in it move to the default heap */
    s->heap = NULL;
    return NULL;
}

/* ---- runtime -------------------------------------------------------------------------- */

void xf_rt_config_defaults(xf_rt_config *c)
{
    memset(c, 0, sizeof *c);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->shards = n < 1 ? 1 : n > XF_SHARDS_MAX ? XF_SHARDS_MAX : (uint32_t)n;
    c->pin = true;
    c->conns_per_shard = 20000;
    c->recv_buffers = 4096;
    c->recv_buffer_size = 16384;
    c->out_blocks = 8192;    /* 128 MiB of output per shard at most */
    c->out_limit = 4u << 20; /* high-water plus what recvs already in flight may add */
    c->out_high = 512u << 10;
    c->out_low = 128u << 10;
    c->queue_bytes = 4u << 20;
    c->shutdown_ms = 5000;
}

/* Raises the soft RLIMIT_NOFILE to the hard one; the fixed-file table of
 * each ring is bounded by it. */
static uint32_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > 0xffffff ? 0xffffff : (uint32_t)rl.rlim_cur;
}

static void rt_free(xf_rt *rt)
{
    if (rt->queues) {
        for (uint32_t i = 0; i < (rt->n + 2) * (rt->n + 1); i++)
            xf_spsc_free(&rt->queues[i]);
        free(rt->queues);
    }
    if (rt->shards) {
        for (uint32_t i = 0; i <= rt->n; i++) {
            xf_shard *s = &rt->shards[i];
            if (s->ring.ring_fd >= 0) { /* setup failed midway */
                xf_bufring_free(&s->ring, &s->bufs);
                io_uring_queue_exit(&s->ring);
            }
            if (s->conns && s->conns != MAP_FAILED)
                munmap(s->conns, (size_t)s->nconns * sizeof(xf_conn));
            xf_heap_free(s->free_idx);
            xf_heap_free(s->rearm);
            xf_obpool_free(&s->pool);
        }
        free(rt->shards);
    }
    if (rt->control_ring_ok) io_uring_queue_exit(&rt->control_ring);
    pthread_mutex_destroy(&rt->control_lock);
    free(rt);
}

xf_rt *xf_rt_start(const xf_rt_config *cfg, char *err, size_t errlen)
{
    assert(cfg->shards >= 1 && cfg->shards < XF_SHARDS_MAX);
    xf_rt *rt = calloc(1, sizeof *rt);
    if (!rt) return snprintf(err, errlen, "out of memory"), NULL;
    rt->cfg = *cfg;
    rt->n = cfg->shards;
    pthread_mutex_init(&rt->control_lock, NULL);
    uint32_t nofile = raise_nofile();
    if (rt->cfg.conns_per_shard > nofile - 64) rt->cfg.conns_per_shard = nofile - 64;
    if (rt->cfg.out_high > rt->cfg.out_limit) rt->cfg.out_high = rt->cfg.out_limit;
    if (rt->cfg.out_low > rt->cfg.out_high) rt->cfg.out_low = rt->cfg.out_high / 4;

    rt->shards = calloc(rt->n + 1, sizeof *rt->shards);
    rt->queues = calloc((size_t)(rt->n + 2) * (rt->n + 1), sizeof *rt->queues);
    if (!rt->shards || !rt->queues) {
        snprintf(err, errlen, "out of memory");
        rt_free(rt);
        return NULL;
    }
    for (uint32_t i = 0; i < (rt->n + 2) * (rt->n + 1); i++) {
        if (xf_spsc_init(&rt->queues[i], cfg->queue_bytes) < 0) {
            snprintf(err, errlen, "cannot map handoff queues");
            rt_free(rt);
            return NULL;
        }
    }
    if (io_uring_queue_init(64, &rt->control_ring, 0) == 0) rt->control_ring_ok = true;
    for (uint32_t i = 0; i <= rt->n; i++) {
        xf_shard *s = &rt->shards[i];
        s->rt = rt;
        s->id = i;
        s->is_verify = i == rt->n;
        s->ring.ring_fd = -1;
        s->m = cfg->metrics ? xf_metrics_core(cfg->metrics, i) : NULL;
        s->loop_wait_us = cfg->loop_wait_us;
    }
    /* Start one at a time so a failure is reported before anything runs. */
    for (uint32_t i = 0; i <= rt->n; i++) {
        xf_shard *s = &rt->shards[i];
        if (pthread_create(&s->thread, NULL, shard_main, s) != 0) {
            snprintf(err, errlen, "cannot start thread %u", i);
            atomic_store(&s->started, -1);
        }
        while (atomic_load(&s->started) == 0)
            usleep(200);
        if (atomic_load(&s->started) < 0) {
            snprintf(err, errlen, "%s %u: %s", s->is_verify ? "verification thread" : "shard", i,
                     s->err);
            pthread_join(s->thread, NULL);
            for (uint32_t j = 0; j < i; j++)
                xf_rt_post(rt, j, MSG_STOP, NULL, 0);
            for (uint32_t j = 0; j < i; j++)
                pthread_join(rt->shards[j].thread, NULL);
            rt_free(rt);
            return NULL;
        }
    }
    return rt;
}

bool xf_rt_post(xf_rt *rt, uint32_t dst, uint32_t type, const void *data, uint32_t len)
{
    assert(dst <= rt->n);
    pthread_mutex_lock(&rt->control_lock);
    bool ok = xf_spsc_push(queue(rt, rt->n + 1, dst), type, data, len);
    if (ok) {
        atomic_thread_fence(memory_order_seq_cst);
        xf_shard *d = &rt->shards[dst];
        if (atomic_load_explicit(&d->sleeping, memory_order_relaxed) && rt->control_ring_ok) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&rt->control_ring);
            if (sqe) {
                io_uring_prep_msg_ring(sqe, d->ring_fd, 0, xf_ud(XF_OP_DOORBELL, 0, 0), 0);
                io_uring_sqe_set_data64(sqe, 0);
                io_uring_submit_and_wait(&rt->control_ring, 1);
                struct io_uring_cqe *cqe;
                while (io_uring_peek_cqe(&rt->control_ring, &cqe) == 0)
                    io_uring_cqe_seen(&rt->control_ring, cqe);
            }
        }
    }
    pthread_mutex_unlock(&rt->control_lock);
    return ok;
}

void xf_rt_stop(xf_rt *rt)
{
    for (uint32_t i = 0; i < rt->n; i++)
        xf_rt_post(rt, i, MSG_STOP, NULL, 0);
    for (uint32_t i = 0; i < rt->n; i++)
        pthread_join(rt->shards[i].thread, NULL);
    /* The verification thread last: shards may have asked it something. */
    xf_rt_post(rt, rt->n, MSG_STOP, NULL, 0);
    pthread_join(rt->shards[rt->n].thread, NULL);
    rt_free(rt);
}

void *xf_rt_app(const xf_rt *rt)
{
    return rt->cfg.app;
}
uint32_t xf_rt_shards(const xf_rt *rt)
{
    return rt->n;
}
xf_shard *xf_rt_shard(xf_rt *rt, uint32_t i)
{
    assert(i <= rt->n);
    return &rt->shards[i];
}
uint32_t xf_rt_verify_id(const xf_rt *rt)
{
    return rt->n;
}
uint32_t xf_shard_id(const xf_shard *s)
{
    return s->id;
}
xf_rt *xf_shard_rt(xf_shard *s)
{
    return s->rt;
}
struct xf_core_metrics *xf_shard_metrics(xf_shard *s)
{
    return s->m;
}
xf_wheel *xf_shard_wheel(xf_shard *s)
{
    return &s->wheel;
}
const xf_snapshot *xf_shard_snapshot(const xf_shard *s)
{
    return s->snap;
}
void *xf_shard_user(xf_shard *s)
{
    return s->user;
}
void xf_shard_set_user(xf_shard *s, void *user)
{
    s->user = user;
}

void xf_shard_loop_wait(xf_shard *s, uint32_t us)
{
    s->loop_wait_us = us;
}

struct xf_heap *xf_shard_heap(xf_shard *s)
{
    return s->heap;
}
