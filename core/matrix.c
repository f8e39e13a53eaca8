/* The negotiation matrix of spec §4: ONE table. Every writer and the stream
 * negotiation read it; nothing else encodes which methods a row allows. */
#include "partner.h"

#include <assert.h>

#define R     XF_NEG_REQUIRED
#define O     XF_NEG_OPTIONAL
#define N     XF_NEG_NOT_SUPPORTED
#define SASL  XF_METHOD_SASL_TLS
#define DBTLS XF_METHOD_DB_TLS
#define DBTCP XF_METHOD_DB_TCP

#define MSG_TLS_OPTIONAL                                                                           \
    "SASL requires TLS. Allowing TLS to be optional may result in failed session negotiations."
#define MSG_SASL_NEEDS_TLS                                                                         \
    "SASL requires TLS: SASL negotiation is required or optional but TLS is not-supported. "       \
    "Set TLS to required or optional, or SASL to not-supported."
#define MSG_NO_METHOD                                                                              \
    "SASL or Dialback must be enabled. No authentication method remains: set SASL to required "    \
    "or optional (with TLS), or dialback to true."

static const xf_matrix_row_t rows[18] = {
    {1, R, R, true, SASL, XF_COMMIT_WARN,
     "Dialback will not operate if both SASL and TLS are required."},
    {2, R, R, false, SASL, XF_COMMIT_OK, NULL},
    {3, O, R, true, SASL | DBTLS | DBTCP, XF_COMMIT_WARN, MSG_TLS_OPTIONAL},
    {4, O, R, false, SASL, XF_COMMIT_WARN, MSG_TLS_OPTIONAL},
    {5, N, R, true, 0, XF_COMMIT_REFUSED, MSG_SASL_NEEDS_TLS},
    {6, N, R, false, 0, XF_COMMIT_REFUSED, MSG_SASL_NEEDS_TLS},
    {7, R, O, true, SASL | DBTLS, XF_COMMIT_OK, NULL},
    {8, R, O, false, SASL, XF_COMMIT_OK, NULL},
    {9, O, O, true, SASL | DBTLS | DBTCP, XF_COMMIT_WARN, MSG_TLS_OPTIONAL},
    {10, O, O, false, SASL, XF_COMMIT_WARN, MSG_TLS_OPTIONAL},
    {11, N, O, true, 0, XF_COMMIT_REFUSED, MSG_SASL_NEEDS_TLS},
    {12, N, O, false, 0, XF_COMMIT_REFUSED, MSG_SASL_NEEDS_TLS},
    {13, R, N, true, DBTLS, XF_COMMIT_INFO, "Configuration allows for TLS Dialback."},
    {14, R, N, false, 0, XF_COMMIT_REFUSED, MSG_NO_METHOD},
    {15, O, N, true, DBTLS | DBTCP, XF_COMMIT_INFO,
     "TCP or TLS Dialback will be accepted, based on the other end's negotiation choices."},
    {16, O, N, false, 0, XF_COMMIT_REFUSED, MSG_NO_METHOD},
    {17, N, N, true, DBTCP, XF_COMMIT_INFO,
     "TCP Dialback is the only negotiation method available."},
    {18, N, N, false, 0, XF_COMMIT_REFUSED, MSG_NO_METHOD},
};

const xf_matrix_row_t *xf_matrix_row(xf_neg tls, xf_neg sasl, bool dialback)
{
    assert(tls <= N && sasl <= N);
    /* Rows run SASL-major, then TLS, then dialback true before false. */
    const xf_matrix_row_t *row = &rows[sasl * 6 + tls * 2 + (dialback ? 0 : 1)];
    assert(row->tls == tls && row->sasl == sasl && row->dialback == dialback);
    assert((row->methods == 0) == (row->commit == XF_COMMIT_REFUSED));
    return row;
}

const xf_matrix_row_t *xf_matrix_rows(void)
{
    return rows;
}
