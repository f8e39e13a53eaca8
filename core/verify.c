#include "verify.h"

#include "log.h"
#include "metrics.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct pending {
    xf_timer timer;
    xf_shard *v;
    uint32_t src;
    xf_verify_req req;
    struct pending *next_free;
} pending;

/* The verification thread's state: a bounded table of waiting requests. */
typedef struct {
    pending slots[XF_VERIFY_PENDING_MAX];
    pending *free;
    uint32_t used;
} verify_state;

bool xf_verify_ask(xf_shard *s, const xf_verify_req *req)
{
    xf_rt *rt = xf_shard_rt(s);
    bool ok = xf_shard_send(s, xf_rt_verify_id(rt), XF_VERIFY_REQUEST, req, sizeof *req);
    if (ok && xf_shard_metrics(s)) xf_metric_inc(xf_shard_metrics(s), XF_METRIC_VERIFY_REQUESTS, 1);
    return ok;
}

static void reply(xf_shard *v, uint32_t dst, const xf_verify_req *req, xf_verify_status st,
                  uint64_t result)
{
    xf_verify_reply r = {.id = req->id, .kind = req->kind, .status = st, .result = result};
    if (!xf_shard_send(v, dst, XF_VERIFY_REPLY, &r, sizeof r))
        xf_log(XF_LOG_ERROR, "verify: reply queue to shard %u full: answer %llu lost", dst,
               (unsigned long long)req->id); /* the asker's own timeout covers it */
    else if (xf_shard_metrics(v))
        xf_metric_inc(xf_shard_metrics(v), XF_METRIC_VERIFY_RESPONSES, 1);
}

static void delay_done(xf_timer *t)
{
    pending *p = (pending *)t;
    verify_state *vs = xf_shard_user(p->v);
    reply(p->v, p->src, &p->req, XF_VERIFY_OK, p->req.arg);
    p->next_free = vs->free;
    vs->free = p;
    vs->used--;
}

void xf_verify_on_msg(xf_shard *v, uint32_t src, const xf_spsc_rec *r)
{
    verify_state *vs = xf_shard_user(v);
    if (r->type != XF_VERIFY_REQUEST || r->len != sizeof(xf_verify_req)) {
        xf_log(XF_LOG_ERROR, "verify: unexpected message type %u from %u", r->type, src);
        return;
    }
    xf_verify_req req;
    memcpy(&req, r->data, sizeof req);
    switch (req.kind) {
    case XF_VERIFY_TEST_DELAY: {
        if (!vs->free) {
            reply(v, src, &req, XF_VERIFY_BUSY, 0);
            return;
        }
        pending *p = vs->free;
        vs->free = p->next_free;
        vs->used++;
        p->v = v;
        p->src = src;
        p->req = req;
        p->timer.fire = delay_done;
        /* The wheel's clock is the loop's last reading, which may predate the
         * request: measure the delay from now, so it is never short. */
        xf_wheel_set_clock(xf_shard_wheel(v), xf_now_ms());
        xf_timer_arm(xf_shard_wheel(v), &p->timer, req.arg);
        return;
    }
    default: reply(v, src, &req, XF_VERIFY_FAILED, 0); return;
    }
}

void xf_verify_start(xf_shard *v)
{
    verify_state *vs = calloc(1, sizeof *vs);
    assert(vs);
    for (uint32_t i = 0; i < XF_VERIFY_PENDING_MAX; i++) {
        vs->slots[i].next_free = vs->free;
        vs->free = &vs->slots[i];
    }
    xf_shard_set_user(v, vs);
}

void xf_verify_stop(xf_shard *v)
{
    free(xf_shard_user(v));
    xf_shard_set_user(v, NULL);
}
