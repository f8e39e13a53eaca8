#include "srv.h"

#include <stdio.h>
#include <string.h>

uint64_t xf_rng_next(xf_rng *r)
{
    /* splitmix64: good enough to spread connections, not for secrets. */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

bool xf_srv_add(xf_srv_list *l, const char *target, uint16_t port, uint16_t priority,
                uint16_t weight, bool direct_tls)
{
    if (strcmp(target, ".") == 0 || target[0] == '\0') {
        l->no_service = true; /* RFC 2782: "decidedly not available" */
        return true;
    }
    if (l->count == XF_SRV_MAX) return false;
    xf_srv_target *t = &l->t[l->count++];
    snprintf(t->target, sizeof t->target, "%s", target);
    size_t n = strlen(t->target);
    if (n && t->target[n - 1] == '.') t->target[n - 1] = '\0';
    t->port = port;
    t->priority = priority;
    t->weight = weight;
    t->direct_tls = direct_tls;
    return true;
}

void xf_srv_order(xf_srv_list *l, xf_rng *rng)
{
    /* "." only counts when it is the whole answer. */
    if (l->count) l->no_service = false;
    /* Insertion sort by priority: at most 32 records. Zero weights first
     * within a priority, as RFC 2782 asks, so they get a small chance. */
    for (uint32_t i = 1; i < l->count; i++) {
        xf_srv_target x = l->t[i];
        uint32_t j = i;
        while (j > 0 &&
               (l->t[j - 1].priority > x.priority ||
                (l->t[j - 1].priority == x.priority && l->t[j - 1].weight > 0 && x.weight == 0))) {
            l->t[j] = l->t[j - 1];
            j--;
        }
        l->t[j] = x;
    }
    /* Within each priority, draw by weight without replacement. */
    for (uint32_t start = 0; start < l->count;) {
        uint32_t end = start;
        while (end < l->count && l->t[end].priority == l->t[start].priority)
            end++;
        for (uint32_t pos = start; pos + 1 < end; pos++) {
            uint64_t total = 0;
            for (uint32_t k = pos; k < end; k++)
                total += l->t[k].weight;
            uint32_t pick = pos;
            if (total > 0) {
                uint64_t r = xf_rng_next(rng) % (total + 1);
                uint64_t run = 0;
                for (uint32_t k = pos; k < end; k++) {
                    run += l->t[k].weight;
                    if (run >= r) {
                        pick = k;
                        break;
                    }
                }
            }
            xf_srv_target tmp = l->t[pos];
            l->t[pos] = l->t[pick];
            l->t[pick] = tmp;
        }
        start = end;
    }
}
