/* Per-partner runtime status for the admin API's /api/status: streams open in
 * each direction, the authentication method in use, the last success and the
 * last failure with its reason.
 *
 *   xf_pstatus_new(ncores, rows)      one table per core, `rows` partners each
 *   xf_pstatus_row(ps, core, domain)  the owning core finds or registers a row
 *   xf_pstatus_stream/auth_*(...)     the owning core updates it (no locks, no allocation)
 *   xf_pstatus_get(ps, domain, &view) any thread (the admin thread): the rows of
 *                                     every core for that domain, merged
 *
 * A partner's streams live on one core (core/README.md), so each core writes
 * only its own table: one writer per row, relaxed atomics for the numbers and
 * a sequence count around the failure reason, which readers retry a bounded
 * number of times. Rows are never removed; a full table refuses new rows
 * (xf_pstatus_row returns -1) and the partner's status stays empty.
 *
 * The s2s layer fills these; until it does every view is zero and "never".
 */
#ifndef XF_PSTATUS_H
#define XF_PSTATUS_H

#include "partner.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XF_PSTATUS_REASON_MAX   128  /* bytes of a failure reason, NUL included */
#define XF_PSTATUS_ROWS_DEFAULT 2048 /* partners per core */
#define XF_PSTATUS_ROWS_MAX     65536

typedef struct xf_pstatus xf_pstatus;

typedef enum { XF_PSTATUS_IN = 0, XF_PSTATUS_OUT = 1 } xf_pstatus_dir;

/* The merged state of one partner. Times are Unix seconds, 0 = never. */
typedef struct {
    uint32_t streams_in, streams_out;
    unsigned method;                    /* XF_METHOD_* of the last success, 0 = none yet */
    int64_t last_success;               /* when the last stream authenticated */
    int64_t last_failure;               /* when the last attempt failed */
    char reason[XF_PSTATUS_REASON_MAX]; /* why it failed; "" when never */
} xf_pstatus_view;

xf_pstatus *xf_pstatus_new(unsigned ncores, uint32_t rows_per_core);
void xf_pstatus_free(xf_pstatus *ps);

/* Writer side: `core`'s own thread only. */
int32_t xf_pstatus_row(xf_pstatus *ps, unsigned core, const char *domain);
void xf_pstatus_stream(xf_pstatus *ps, unsigned core, int32_t row, xf_pstatus_dir dir,
                       int32_t delta);
void xf_pstatus_auth_ok(xf_pstatus *ps, unsigned core, int32_t row, unsigned method,
                        int64_t unix_s);
void xf_pstatus_auth_failed(xf_pstatus *ps, unsigned core, int32_t row, const char *reason,
                            int64_t unix_s);

/* Reader side, any thread. Returns false (and a zeroed view) when no core has
 * a row for `domain` (lower-case, as in the snapshot). */
bool xf_pstatus_get(const xf_pstatus *ps, const char *domain, xf_pstatus_view *out);

#endif
