#include "timer.h"

#include <assert.h>
#include <string.h>
#include <time.h>

uint64_t xf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void xf_wheel_init(xf_wheel *w, uint64_t now_ms)
{
    memset(w, 0, sizeof *w);
    for (uint32_t i = 0; i < XF_WHEEL_SLOTS; i++)
        w->slots[i].prev = w->slots[i].next = &w->slots[i];
    w->now_ms = now_ms;
    w->next_tick = now_ms / XF_WHEEL_TICK_MS;
    w->earliest_ms = UINT64_MAX;
}

static void unlink_timer(xf_timer *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

void xf_timer_cancel(xf_wheel *w, xf_timer *t)
{
    if (!t->expires_ms) return;
    unlink_timer(t);
    t->expires_ms = 0;
    assert(w->armed > 0);
    w->armed--;
}

void xf_timer_arm(xf_wheel *w, xf_timer *t, uint64_t delay_ms)
{
    xf_timer_cancel(w, t);
    uint64_t at = w->now_ms + (delay_ms ? delay_ms : 1);
    uint64_t tick = at / XF_WHEEL_TICK_MS;
    if (tick < w->next_tick) tick = w->next_tick;
    xf_timer *head = &w->slots[tick & (XF_WHEEL_SLOTS - 1)];
    t->expires_ms = at;
    t->next = head->next;
    t->prev = head;
    head->next->prev = t;
    head->next = t;
    w->armed++;
    if (at < w->earliest_ms) w->earliest_ms = at;
}

uint32_t xf_wheel_run(xf_wheel *w, uint64_t now_ms)
{
    if (now_ms > w->now_ms) w->now_ms = now_ms;
    uint64_t last = w->now_ms / XF_WHEEL_TICK_MS;
    uint32_t fired = 0;
    if (!w->armed) {
        w->next_tick = last;
        w->earliest_ms = UINT64_MAX;
        return 0;
    }
    if (w->now_ms < w->earliest_ms) return 0;
    /* Visit each slot at most once per call, even after a long sleep. The
     * current tick is visited again next call: its slot may hold timers due
     * later in the same tick (expiry is in ms, slots in ticks). */
    uint64_t end = last + 1, start = w->next_tick;
    if (end - start > XF_WHEEL_SLOTS) start = end - XF_WHEEL_SLOTS;
    /* Before any callback: a timer armed from one lands in the current tick
     * or later, never in a slot this call has already passed (it would wait
     * a whole round). */
    w->next_tick = last;
    xf_timer pending;
    for (uint64_t tick = start; tick < end; tick++) {
        xf_timer *head = &w->slots[tick & (XF_WHEEL_SLOTS - 1)];
        if (head->next == head) continue;
        /* Take the slot's list: callbacks may then cancel or re-arm any timer,
         * their own or others, without breaking this walk. */
        pending.next = head->next;
        pending.prev = head->prev;
        pending.next->prev = &pending;
        pending.prev->next = &pending;
        head->next = head->prev = head;
        while (pending.next != &pending) {
            xf_timer *t = pending.next;
            unlink_timer(t);
            if (t->expires_ms <= w->now_ms) {
                t->expires_ms = 0;
                w->armed--;
                fired++;
                t->fire(t);
            } else { /* a later round: back into its slot */
                t->next = head->next;
                t->prev = head;
                head->next->prev = t;
                head->next = t;
            }
        }
    }
    /* Recompute the earliest expiry (rare: only when a deadline passed). */
    uint64_t earliest = UINT64_MAX;
    for (uint32_t i = 0; i < XF_WHEEL_SLOTS && w->armed; i++)
        for (xf_timer *t = w->slots[i].next; t != &w->slots[i]; t = t->next)
            if (t->expires_ms < earliest) earliest = t->expires_ms;
    w->earliest_ms = earliest;
    return fired;
}

uint64_t xf_wheel_wait_ms(const xf_wheel *w, uint64_t now_ms)
{
    if (!w->armed) return UINT64_MAX;
    return w->earliest_ms <= now_ms ? 0 : w->earliest_ms - now_ms;
}
