/* SRV ordering (priority, RFC 2782 weighted draw, XEP-0368 merge, ".") and the
 * DNS cache (TTL, negative entries, eviction). */
#include "../check.h"
#include "cache.h"
#include "srv.h"

int main(void)
{
    xf_rng rng = {42};
    /* Priority order, merged across direct TLS and STARTTLS records. */
    xf_srv_list l = {0};
    CHECK(xf_srv_add(&l, "c.example.", 5271, 20, 0, false));
    CHECK(xf_srv_add(&l, "a.example", 5269, 10, 60, false));
    CHECK(xf_srv_add(&l, "d.example", 5270, 5, 0, true));
    CHECK(xf_srv_add(&l, "b.example", 5270, 10, 40, false));
    xf_srv_order(&l, &rng);
    CHECK(l.count == 4 && !l.no_service);
    CHECK_STR(l.t[0].target, "d.example");
    CHECK(l.t[0].direct_tls && l.t[0].port == 5270);
    CHECK(l.t[1].priority == 10 && l.t[2].priority == 10);
    CHECK_STR(l.t[3].target, "c.example"); /* trailing dot removed */

    /* The weighted draw follows the weights: 60/40 within priority 10. */
    int first_a = 0;
    for (int i = 0; i < 10000; i++) {
        xf_srv_list m = {0};
        xf_srv_add(&m, "a.example", 5269, 10, 60, false);
        xf_srv_add(&m, "b.example", 5269, 10, 40, false);
        xf_srv_order(&m, &rng);
        first_a += m.t[0].target[0] == 'a';
    }
    CHECK(first_a > 5600 && first_a < 6400);
    /* Zero weights still get a (small) chance, and are never lost. */
    int zero_first = 0;
    for (int i = 0; i < 10000; i++) {
        xf_srv_list m = {0};
        xf_srv_add(&m, "z.example", 5269, 1, 0, false);
        xf_srv_add(&m, "w.example", 5269, 1, 100, false);
        xf_srv_order(&m, &rng);
        CHECK(m.count == 2);
        zero_first += m.t[0].target[0] == 'z';
    }
    CHECK(zero_first > 0 && zero_first < 300);

    /* "." alone: no service. */
    xf_srv_list dot = {0};
    CHECK(xf_srv_add(&dot, ".", 0, 0, 0, false));
    xf_srv_order(&dot, &rng);
    CHECK(dot.no_service && dot.count == 0);
    /* The list is bounded. */
    xf_srv_list full = {0};
    for (int i = 0; i < XF_SRV_MAX; i++)
        CHECK(xf_srv_add(&full, "x.example", 1, 1, 1, false));
    CHECK(!xf_srv_add(&full, "y.example", 1, 1, 1, false));

    /* Cache: TTL, case-insensitive names, negative entries, TTL 0, eviction. */
    static xf_dns_cache c;
    xf_dns_cache_init(&c);
    xf_dns_cache_put(&c, "fabrikam.example", &l, 30, 1000);
    CHECK(xf_dns_cache_get(&c, "Fabrikam.Example", 1000 + 29999) != NULL);
    CHECK(xf_dns_cache_get(&c, "fabrikam.example", 1000 + 30000) == NULL);
    CHECK(xf_dns_cache_get(&c, "fabrikam.example", 1000) == NULL); /* dropped when expired */
    xf_dns_cache_put_negative(&c, "nowhere.example", 4, 0, 0);
    const xf_dns_entry *e = xf_dns_cache_get(&c, "nowhere.example", 59999);
    CHECK(e && e->negative && e->status == 4);
    CHECK(xf_dns_cache_get(&c, "nowhere.example", 60000) == NULL);
    xf_dns_cache_put(&c, "zero.example", &l, 0, 0);
    CHECK(xf_dns_cache_get(&c, "zero.example", 0) == NULL);
    xf_dns_cache_put(&c, "long.example", &l, 10u * 86400, 0);
    CHECK(xf_dns_cache_get(&c, "long.example", 86400000ull - 1) != NULL);
    CHECK(xf_dns_cache_get(&c, "long.example", 86400000ull) == NULL); /* TTL capped */
    xf_dns_cache_init(&c);
    char name[64];
    for (int i = 0; i < XF_DNS_CACHE_MAX + 10; i++) {
        snprintf(name, sizeof name, "d%d.example", i);
        xf_dns_cache_put(&c, name, &l, 100 + (uint32_t)i, 0);
    }
    CHECK(c.used == XF_DNS_CACHE_MAX && c.evictions == 10);
    CHECK(xf_dns_cache_get(&c, "d0.example", 0) == NULL); /* the earliest expiry went */
    CHECK(xf_dns_cache_get(&c, "d1033.example", 0) != NULL);
    return check_report("test_srv");
}
