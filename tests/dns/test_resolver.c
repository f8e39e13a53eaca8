/* The c-ares resolver against a real dnsmasq (started by test_resolver.sh):
 * SRV merge of _xmpps-server and _xmpp-server, priority order, "." = no
 * service, no SRV → the domain on 5269, NXDOMAIN, TTL caching, addresses,
 * and a dead server failing fast. Driven by poll() as a host loop. */
#include "../check.h"
#include "resolver.h"

#include <arpa/inet.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#define FDS_MAX 16
typedef struct {
    struct pollfd fds[FDS_MAX];
    int n;
} loop;

static void watch(void *arg, int fd, bool rd, bool wr)
{
    loop *l = arg;
    int i = 0;
    while (i < l->n && l->fds[i].fd != fd)
        i++;
    if (!rd && !wr) {
        if (i < l->n) l->fds[i] = l->fds[--l->n];
        return;
    }
    if (i == l->n) {
        if (l->n == FDS_MAX) abort();
        l->n++;
    }
    l->fds[i].fd = fd;
    l->fds[i].events = (short)((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
}

typedef struct {
    bool done;
    xf_dns_status st;
    xf_srv_list list;
    struct sockaddr_storage addrs[XF_ADDRS_MAX];
    uint32_t naddrs;
} result;

static void srv_done(void *arg, xf_dns_status st, const xf_srv_list *l)
{
    result *r = arg;
    r->done = true;
    r->st = st;
    if (l) r->list = *l;
}

static void addr_done(void *arg, xf_dns_status st, const struct sockaddr_storage *a, uint32_t n)
{
    result *r = arg;
    r->done = true;
    r->st = st;
    r->naddrs = n;
    if (n) memcpy(r->addrs, a, n * sizeof *a);
}

static uint64_t ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void run(xf_resolver *r, loop *l, result *res)
{
    uint64_t deadline = ms() + 10000;
    while (!res->done && ms() < deadline) {
        uint64_t t = xf_resolver_timeout_ms(r);
        int n = poll(l->fds, (nfds_t)l->n, t == UINT64_MAX ? 100 : (int)(t > 100 ? 100 : t));
        if (n == 0) {
            xf_resolver_tick(r);
            continue;
        }
        for (int i = 0; i < l->n; i++) {
            struct pollfd p = l->fds[i];
            if (p.revents)
                xf_resolver_process(r, p.fd, p.revents & (POLLIN | POLLERR | POLLHUP),
                                    p.revents & POLLOUT);
        }
    }
}

static result srv(xf_resolver *r, loop *l, const char *domain)
{
    result res = {0};
    xf_resolver_srv(r, domain, ms(), srv_done, &res);
    run(r, l, &res);
    return res;
}

int main(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "usage: test_resolver DNS-PORT\n"), 1;
    char servers[64], err[256];
    snprintf(servers, sizeof servers, "127.0.0.1:%s", argv[1]);
    loop l = {0};
    xf_resolver *r = xf_resolver_new(servers, watch, &l, 7, err, sizeof err);
    CHECK(r != NULL);
    if (!r) return fprintf(stderr, "%s\n", err), 1;

    result a = srv(r, &l, "multi.example");
    CHECK(a.done && a.st == XF_DNS_OK && a.list.count == 4);
    CHECK(a.list.t[0].direct_tls && a.list.t[0].port == 5223); /* _xmpps, priority 5 */
    CHECK(a.list.t[1].priority == 10 && a.list.t[2].priority == 10);
    CHECK(a.list.t[3].priority == 20 && a.list.t[3].port == 5271);
    CHECK(!a.list.t[1].direct_tls && !a.list.t[3].direct_tls);

    result b = srv(r, &l, "fabrikam.example");
    CHECK(b.st == XF_DNS_OK && b.list.count == 1 && b.list.t[0].port == 5269);
    CHECK_STR(b.list.t[0].target, "xmpp.fabrikam.example");
    uint64_t q = xf_resolver_stats_get(r)->queries;
    result b2 = {0};
    xf_resolver_srv(r, "fabrikam.example", ms(), srv_done, &b2); /* cached: answered at once */
    CHECK(b2.done && b2.st == XF_DNS_OK && xf_resolver_stats_get(r)->queries == q);

    result c = srv(r, &l, "closed.example");
    CHECK(c.st == XF_DNS_NO_SERVICE);

    result d = srv(r, &l, "plain.example"); /* no SRV at all: the domain on 5269 */
    CHECK(d.st == XF_DNS_OK && d.list.count == 1 && d.list.t[0].port == 5269);
    CHECK_STR(d.list.t[0].target, "plain.example");

    result e = {0};
    xf_resolver_addr(r, "xmpp.fabrikam.example", 5269, addr_done, &e);
    run(r, &l, &e);
    CHECK(e.st == XF_DNS_OK && e.naddrs >= 1);
    struct sockaddr_in *sin = (struct sockaddr_in *)&e.addrs[0];
    CHECK(sin->sin_family == AF_INET && sin->sin_addr.s_addr == htonl(0x7f000001) &&
          ntohs(sin->sin_port) == 5269);
    result f = {0};
    xf_resolver_addr(r, "nowhere.example", 5269, addr_done, &f);
    run(r, &l, &f);
    CHECK(f.done && f.st == XF_DNS_NOT_FOUND && f.naddrs == 0);
    xf_resolver_free(r);

    /* A dead server: a clean failure within the retry budget, never a hang. */
    l.n = 0;
    xf_resolver *dead = xf_resolver_new("127.0.0.1:9", watch, &l, 7, err, sizeof err);
    CHECK(dead != NULL);
    uint64_t t0 = ms();
    result g = srv(dead, &l, "fabrikam.example");
    CHECK(g.done && g.st == XF_DNS_FAILED);
    CHECK(ms() - t0 < 8000);
    xf_resolver_free(dead);
    CHECK(xf_resolver_new("not a server list", watch, &l, 7, err, sizeof err) == NULL);
    return check_report("test_resolver");
}
