/* The per-partner status table (core/pstatus.c): rows per core, merging
 * across cores, a full table, long reasons, and one writer core racing a
 * reader thread (run under ThreadSanitizer too: label tsan). The reader must
 * never see a torn state: the reason always names the failure's time and the
 * method always belongs to the success's time. (A reader that gives up on a
 * busy row sees no authentication at all: last_failure 0, skipped here.) */
#include "../check.h"
#include "pstatus.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static void test_rows_and_merge(void)
{
    xf_pstatus *ps = xf_pstatus_new(3, 8);
    CHECK(ps != NULL);
    xf_pstatus_view v;
    CHECK(!xf_pstatus_get(ps, "fabrikam.example", &v));
    CHECK(v.streams_in == 0 && v.method == 0 && v.last_failure == 0 && v.reason[0] == '\0');

    int32_t r0 = xf_pstatus_row(ps, 0, "fabrikam.example");
    CHECK(r0 >= 0);
    CHECK(xf_pstatus_row(ps, 0, "fabrikam.example") == r0); /* found, not added twice */
    int32_t r2 = xf_pstatus_row(ps, 2, "fabrikam.example"); /* an inbound stream elsewhere */
    CHECK(r2 >= 0);
    xf_pstatus_stream(ps, 0, r0, XF_PSTATUS_OUT, 2);
    xf_pstatus_stream(ps, 0, r0, XF_PSTATUS_IN, 1);
    xf_pstatus_stream(ps, 2, r2, XF_PSTATUS_IN, 3);
    xf_pstatus_stream(ps, 2, r2, XF_PSTATUS_IN, -1);
    xf_pstatus_auth_ok(ps, 0, r0, XF_METHOD_DB_TLS, 1000);
    xf_pstatus_auth_ok(ps, 2, r2, XF_METHOD_SASL_TLS, 2000); /* the later one is "in use" */
    xf_pstatus_auth_failed(ps, 0, r0, "remote-server-timeout", 3000);
    xf_pstatus_auth_failed(ps, 2, r2, "policy-violation: TLS required", 2500);

    CHECK(xf_pstatus_get(ps, "fabrikam.example", &v));
    CHECK(v.streams_in == 3);
    CHECK(v.streams_out == 2);
    CHECK(v.method == XF_METHOD_SASL_TLS);
    CHECK(v.last_success == 2000);
    CHECK(v.last_failure == 3000);
    CHECK_STR(v.reason, "remote-server-timeout");
    CHECK(!xf_pstatus_get(ps, "wingtip.example", &v));

    /* A reason longer than the field is cut, NUL-terminated. */
    char longr[400];
    memset(longr, 'x', sizeof longr - 1);
    longr[sizeof longr - 1] = '\0';
    xf_pstatus_auth_failed(ps, 0, r0, longr, 4000);
    CHECK(xf_pstatus_get(ps, "fabrikam.example", &v));
    CHECK(strlen(v.reason) == XF_PSTATUS_REASON_MAX - 1);

    /* A full table refuses new rows; updates of a refused row are no-ops. */
    int32_t last = 0;
    for (int i = 0; i < 7; i++) {
        char d[64];
        snprintf(d, sizeof d, "p%d.example", i);
        last = xf_pstatus_row(ps, 1, d);
        CHECK(last >= 0);
    }
    CHECK(xf_pstatus_row(ps, 1, "p7.example") >= 0);  /* the 8th */
    CHECK(xf_pstatus_row(ps, 1, "p8.example") == -1); /* full */
    CHECK(xf_pstatus_row(ps, 1, "p3.example") >= 0);  /* existing rows still found */
    xf_pstatus_stream(ps, 1, -1, XF_PSTATUS_IN, 1);
    xf_pstatus_auth_failed(ps, 1, -1, "ignored", 1);
    CHECK(!xf_pstatus_get(ps, "p8.example", &v));
    CHECK(xf_pstatus_get(ps, "p6.example", &v) && v.streams_in == 0);
    (void)last;
    xf_pstatus_free(ps);
}

/* ---- one writer, one reader ---- */

#define ROUNDS 200000

static xf_pstatus *race_ps;
static atomic_bool race_done;

static void *writer(void *arg)
{
    int32_t row = xf_pstatus_row(race_ps, 0, "race.example");
    for (int64_t i = 1; i <= ROUNDS; i++) {
        char reason[64];
        /* The reason names its own time, so a reader can tell a torn pair. */
        snprintf(reason, sizeof reason, "failure at %" PRId64, i);
        xf_pstatus_auth_failed(race_ps, 0, row, reason, i);
        xf_pstatus_auth_ok(race_ps, 0, row, i % 2 ? XF_METHOD_SASL_TLS : XF_METHOD_DB_TCP, i);
        xf_pstatus_stream(race_ps, 0, row, XF_PSTATUS_OUT, 1);
    }
    atomic_store(&race_done, true);
    return NULL;
}

static void test_writer_reader_race(void)
{
    race_ps = xf_pstatus_new(2, 16);
    CHECK(race_ps != NULL);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer, NULL) == 0);
    long reads = 0, torn = 0, backwards = 0, seen = 0;
    int64_t last = 0;
    while (!atomic_load(&race_done) || reads == 0) {
        xf_pstatus_view v;
        if (!xf_pstatus_get(race_ps, "race.example", &v)) continue;
        reads++;
        if (v.last_failure == 0) continue;
        seen++;
        char want[64];
        snprintf(want, sizeof want, "failure at %" PRId64, v.last_failure);
        if (strcmp(v.reason, want) != 0) torn++;
        if (v.method != 0 &&
            v.method != (v.last_success % 2 ? XF_METHOD_SASL_TLS : XF_METHOD_DB_TCP))
            torn++;
        if (v.last_failure < last) backwards++;
        last = v.last_failure;
    }
    pthread_join(t, NULL);
    xf_pstatus_view v;
    CHECK(xf_pstatus_get(race_ps, "race.example", &v));
    CHECK(v.streams_out == ROUNDS);
    CHECK(v.last_failure == ROUNDS);
    CHECK_STR(v.reason, "failure at 200000");
    CHECK(torn == 0);
    CHECK(backwards == 0);
    printf("race: %ld reads, %ld with a failure, %ld torn\n", reads, seen, torn);
    xf_pstatus_free(race_ps);
}

int main(void)
{
    test_rows_and_merge();
    test_writer_reader_race();
    return check_report("test_pstatus");
}
