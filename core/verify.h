/* The async verification ring: the slow checks (DNS, dialback db:verify round
 * trips, certificate identity) run on a dedicated thread with its own
 * io_uring, asked and answered through the runtime's handoff queues and
 * doorbells, so a core thread never waits on one.
 *
 * A request carries the asking shard's correlation id; the answer comes back
 * to that shard as a message of type XF_VERIFY_REPLY with the same id. The
 * s2s issue adds the real request kinds; XF_VERIFY_TEST_DELAY answers after a
 * delay measured on the verification thread's own timer wheel. */
#ifndef XF_VERIFY_H
#define XF_VERIFY_H

#include "rt.h"

#include <stdint.h>

#define XF_VERIFY_PENDING_MAX 4096 /* requests waiting on the verification thread */

/* Message types (applications keep theirs at 16 and above, below 64). */
enum {
    XF_VERIFY_REQUEST = 64,
    XF_VERIFY_REPLY = 65,
};

typedef enum {
    XF_VERIFY_TEST_DELAY = 1, /* arg = delay in ms; result = arg */
} xf_verify_kind;

typedef enum {
    XF_VERIFY_OK = 0,
    XF_VERIFY_FAILED = 1,
    XF_VERIFY_BUSY = 2, /* the pending table was full: retry or refuse */
} xf_verify_status;

typedef struct {
    uint64_t id; /* the asking shard's correlation id */
    uint32_t kind;
    uint32_t arg;
} xf_verify_req;

typedef struct {
    uint64_t id;
    uint32_t kind;
    uint32_t status;
    uint64_t result;
} xf_verify_reply;

/* From a core shard: queue a request (false when the queue is full). */
bool xf_verify_ask(xf_shard *s, const xf_verify_req *req);

/* The verification thread's message handler and per-thread setup: install
 * as xf_rt_config.on_verify_msg, and call xf_verify_start from
 * on_shard_start for the verification shard (xf_shard_id == shards). */
void xf_verify_on_msg(xf_shard *v, uint32_t src, const xf_spsc_rec *r);
void xf_verify_start(xf_shard *v);
void xf_verify_stop(xf_shard *v);

#endif
