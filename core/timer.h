/* A hashed timing wheel, driven by the loop: one wait timeout per iteration
 * (the earliest deadline), no timer syscalls. Timers are intrusive nodes in
 * their owners; arming, re-arming and cancelling are O(1). */
#ifndef XF_TIMER_H
#define XF_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define XF_WHEEL_SLOTS   4096u /* power of two */
#define XF_WHEEL_TICK_MS 4u    /* resolution; one round = 16.4 s */

typedef struct xf_timer {
    struct xf_timer *prev, *next;
    uint64_t expires_ms; /* absolute, monotonic; 0 = not armed */
    void (*fire)(struct xf_timer *t);
} xf_timer;

typedef struct {
    xf_timer slots[XF_WHEEL_SLOTS]; /* list heads */
    uint64_t now_ms;                /* the wheel's clock */
    uint64_t next_tick;             /* first tick not yet processed */
    uint64_t earliest_ms;           /* lower bound of the earliest expiry; UINT64_MAX = none */
    uint32_t armed;
} xf_wheel;

uint64_t xf_now_ms(void);
void xf_wheel_init(xf_wheel *w, uint64_t now_ms);
void xf_timer_arm(xf_wheel *w, xf_timer *t, uint64_t delay_ms);
void xf_timer_cancel(xf_wheel *w, xf_timer *t);
static inline bool xf_timer_armed(const xf_timer *t)
{
    return t->expires_ms != 0;
}
/* Moves the wheel's clock forward (never back) without firing anything. */
static inline void xf_wheel_set_clock(xf_wheel *w, uint64_t now_ms)
{
    if (now_ms > w->now_ms) w->now_ms = now_ms;
}
/* Fires every timer due at `now_ms`; returns how many fired. */
uint32_t xf_wheel_run(xf_wheel *w, uint64_t now_ms);
/* Milliseconds until the earliest timer may be due (UINT64_MAX = none armed). */
uint64_t xf_wheel_wait_ms(const xf_wheel *w, uint64_t now_ms);

#endif
