/* DNS on a runtime shard: c-ares sockets on multishot polls, timeouts on the
 * shard's wheel. Asked from the control thread by message, answered on the
 * shard, checked here. Run by test_resolver.sh (a real dnsmasq). */
#include "../check.h"
#include "rt.h"
#include "shard_dns.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static const char *servers;
static xf_shard_dns *dns;
static _Atomic int done;
static xf_dns_status got_st;
static xf_srv_list got;
static pthread_t answered_on;

enum { MSG_ASK = 16 };

static void answered(void *arg, xf_dns_status st, const xf_srv_list *l)
{
    got_st = st;
    if (l) got = *l;
    answered_on = pthread_self();
    atomic_fetch_add(&done, 1);
}

static void on_msg(xf_shard *s, uint32_t src, const xf_spsc_rec *r)
{
    char domain[254];
    snprintf(domain, sizeof domain, "%.*s", (int)r->len, (const char *)r->data);
    xf_shard_dns_srv(dns, domain, answered, NULL);
}

static void on_start(xf_shard *s)
{
    char err[256];
    if (xf_shard_id(s) == 0 && !(dns = xf_shard_dns_new(s, servers, err, sizeof err)))
        fprintf(stderr, "dns: %s\n", err);
}

static void on_stop(xf_shard *s)
{
    if (xf_shard_id(s) == 0) xf_shard_dns_free(dns);
}

static int ask(xf_rt *rt, const char *domain)
{
    int before = atomic_load(&done);
    xf_rt_post(rt, 0, MSG_ASK, domain, (uint32_t)strlen(domain));
    for (int i = 0; i < 1000 && atomic_load(&done) == before; i++)
        usleep(10000);
    return atomic_load(&done) - before;
}

int main(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "usage: test_shard_dns DNS-PORT\n"), 1;
    static char buf[64];
    snprintf(buf, sizeof buf, "127.0.0.1:%s", argv[1]);
    servers = buf;
    xf_rt_config cfg;
    xf_rt_config_defaults(&cfg);
    cfg.shards = 1;
    cfg.conns_per_shard = 64;
    cfg.recv_buffers = 64;
    cfg.on_msg = on_msg;
    cfg.on_shard_start = on_start;
    cfg.on_shard_stop = on_stop;
    char err[256];
    xf_rt *rt = xf_rt_start(&cfg, err, sizeof err);
    CHECK(rt != NULL && dns != NULL);
    if (!rt || !dns) return fprintf(stderr, "%s\n", err), 1;

    CHECK(ask(rt, "multi.example") == 1);
    CHECK(got_st == XF_DNS_OK && got.count == 4 && got.t[0].direct_tls);
    CHECK(pthread_equal(answered_on, pthread_self()) == 0); /* on the shard, not here */
    CHECK(ask(rt, "closed.example") == 1 && got_st == XF_DNS_NO_SERVICE);
    CHECK(ask(rt, "fabrikam.example") == 1 && got_st == XF_DNS_OK && got.count == 1);
    /* Many lookups at once, all answered. */
    for (int i = 0; i < 50; i++) {
        char d[64];
        snprintf(d, sizeof d, "n%d.plain.example", i);
        xf_rt_post(rt, 0, MSG_ASK, d, (uint32_t)strlen(d));
    }
    for (int i = 0; i < 1000 && atomic_load(&done) < 53; i++)
        usleep(10000);
    CHECK(atomic_load(&done) == 53);
    xf_rt_stop(rt);
    return check_report("test_shard_dns");
}
