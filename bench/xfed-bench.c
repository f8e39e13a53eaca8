/* xfed-bench: the bundled load benchmark. xfed against the runtime's raw relay,
 * stock Prosody and stock ejabberd, set up as the same router (partner s2s in,
 * XEP-0114 component out, and back), measured side by side in one run with the
 * same lanes, stanza mix and load generator (peer.h, gen.h).
 *
 * Per target: closed-loop throughput (median of runs), open-loop latency at
 * 25/50/75 % of that maximum, server CPU per stanza (/proc), RSS per idle
 * stream; for xfed also throughput over TLS and full TLS handshakes per second.
 * Targets are configured and started by bench/targets.py; results go to a JSON
 * file and a PNG chart (bench/chart.py); the last line sums it up. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "gen.h"
#include "peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef XFED_SOURCE_DIR
#define XFED_SOURCE_DIR "."
#endif

extern char **environ;

#define NLEVELS   3
#define RUNS_MAX  9
#define WARMUP_MS 300u

static const double levels[NLEVELS] = {0.25, 0.50, 0.75};

typedef struct {
    const char *name, *label, *py;
    bool want;
    bool ok;
    char error[256];
    double sps[RUNS_MAX]; /* each closed-loop run */
    uint32_t runs;
    double stanzas_per_s, bytes_per_s, cpu_us_per_stanza;
    double closed_p50, closed_p99;
    double lat_rate[NLEVELS], lat_got[NLEVELS], p50[NLEVELS], p99[NLEVELS], p999[NLEVELS];
    uint64_t late[NLEVELS], bounced[NLEVELS], closed_bounced;
    double mem_kib, idle_secs;
    uint64_t lost;
    uint32_t idle_up;
    /* xfed only */
    double tls_sps, tls_cpu_us, tls_mem_kib, tls_hs_per_s;
    uint32_t tls_up;
} target_result;

typedef struct {
    bool quick;
    uint32_t lanes, window, runs, idle, tls_idle, threads, bench_threads;
    double secs;
    const char *out_dir, *build, *targets;
    bool keep;
} options;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("xfed-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) < 0)
        die("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- /proc: the server's CPU time and memory ----------------------------------- */

typedef struct {
    pid_t pids[8];
    int n;
} pidset;

static double cpu_seconds(const pidset *p)
{
    double sum = 0;
    long hz = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < p->n; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)p->pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *q = strrchr(buf, ')');
        if (!q) continue;
        unsigned long long ut = 0, st = 0;
        /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
         * stime */
        if (sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            sum += (double)(ut + st) / (double)hz;
    }
    return sum;
}

static double rss_kib(const pidset *p)
{
    double sum = 0;
    for (int i = 0; i < p->n; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", (int)p->pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f)) {
            unsigned long kb;
            if (sscanf(line, "VmRSS: %lu kB", &kb) == 1) sum += (double)kb;
        }
        fclose(f);
    }
    return sum;
}

/* ---- targets.py ------------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    int in_fd;
    FILE *out;
} helper;

static json_t *helper_start(helper *h, char *const argv[], int timeout_s)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    int rc = posix_spawn(&h->pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) die("cannot run %s: %s", argv[0], strerror(rc));
    h->in_fd = in[1];
    h->out = fdopen(out[0], "r");
    struct pollfd pf = {.fd = out[0], .events = POLLIN};
    if (poll(&pf, 1, timeout_s * 1000) <= 0) return NULL;
    char line[4096];
    if (!fgets(line, sizeof line, h->out)) return NULL;
    json_error_t e;
    return json_loads(line, 0, &e);
}

static void helper_stop(helper *h)
{
    if (h->in_fd >= 0) close(h->in_fd);
    h->in_fd = -1;
    for (int i = 0; i < 600; i++) { /* 60 s: ejabberd stops in ~2 s */
        int st;
        if (waitpid(h->pid, &st, WNOHANG) == h->pid) goto done;
        sleep_s(0.1);
    }
    kill(h->pid, SIGTERM);
    waitpid(h->pid, NULL, 0);
done:
    if (h->out) fclose(h->out);
    h->out = NULL;
}

/* ---- measurement ------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, uint32_t n)
{
    double tmp[RUNS_MAX];
    memcpy(tmp, v, n * sizeof *v);
    qsort(tmp, n, sizeof *tmp, cmp_double);
    return n ? (n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2) : 0;
}

typedef struct {
    double sps, bps, cpu_us, secs;
    uint64_t late, bounced;
} window_result;

/* Measures `secs` of the load that is running: counts, server CPU, latencies into h. */
static window_result measure(bench *b, const pidset *ps, double secs, uint64_t *h)
{
    sleep_s(WARMUP_MS / 1000.0);
    bench_hist_reset(b);
    bench_counts c0, c1;
    bench_counts_read(b, &c0);
    double cpu0 = cpu_seconds(ps);
    uint64_t t0 = bench_now_ns();
    sleep_s(secs);
    bench_counts_read(b, &c1);
    double cpu1 = cpu_seconds(ps);
    uint64_t t1 = bench_now_ns();
    bench_hist_read(b, h);
    window_result r;
    r.secs = (double)(t1 - t0) / 1e9;
    uint64_t n = c1.stanzas - c0.stanzas;
    r.sps = (double)n / r.secs;
    r.bps = (double)(c1.bytes - c0.bytes) / r.secs;
    r.cpu_us = n ? (cpu1 - cpu0) * 1e6 / (double)n : 0;
    r.late = c1.late - c0.late;
    r.bounced = c1.bounced - c0.bounced;
    return r;
}

static void closed_runs(bench *b, const options *o, const pidset *ps, bench_mode mode,
                        target_result *t, double *sps_out, double *cpu_out)
{
    static uint64_t h[BENCH_HIST_BUCKETS];
    double sps[RUNS_MAX], bps[RUNS_MAX], cpu[RUNS_MAX];
    for (uint32_t r = 0; r < o->runs; r++) {
        bench_load(b, mode, o->window, 0);
        window_result w = measure(b, ps, o->secs, h);
        bench_load_stop(b);
        sps[r] = w.sps;
        bps[r] = w.bps;
        t->closed_bounced += w.bounced;
        cpu[r] = w.cpu_us;
        fprintf(stderr,
                "  %s closed loop%s run %u: %.0f stanzas/s, %.1f MB/s, %.2f CPU-us/stanza\n",
                t->name, mode == BENCH_TLS ? " (TLS)" : "", r + 1, w.sps, w.bps / 1e6, w.cpu_us);
        if (mode != BENCH_TLS) {
            t->sps[r] = w.sps;
            if (r == 0) {
                t->closed_p50 = (double)bench_hist_quantile(h, 0.5) / 1e3;
                t->closed_p99 = (double)bench_hist_quantile(h, 0.99) / 1e3;
            }
        }
    }
    *sps_out = median(sps, o->runs);
    *cpu_out = median(cpu, o->runs);
    if (mode != BENCH_TLS) {
        t->runs = o->runs;
        t->bytes_per_s = median(bps, o->runs);
    }
}

static void open_levels(bench *b, const options *o, const pidset *ps, target_result *t)
{
    static uint64_t h[BENCH_HIST_BUCKETS];
    for (int i = 0; i < NLEVELS; i++) {
        double rate = levels[i] * t->stanzas_per_s;
        bench_load(b, BENCH_PLAIN, 0, rate);
        window_result w = measure(b, ps, o->secs, h);
        bench_load_stop(b);
        t->lat_rate[i] = rate;
        t->lat_got[i] = w.sps;
        t->p50[i] = (double)bench_hist_quantile(h, 0.50) / 1e3;
        t->p99[i] = (double)bench_hist_quantile(h, 0.99) / 1e3;
        t->p999[i] = (double)bench_hist_quantile(h, 0.999) / 1e3;
        t->late[i] = w.late;
        t->bounced[i] = w.bounced;
        fprintf(stderr,
                "  %s open loop %.0f%% (%.0f/s asked, %.0f/s routed): p50 %.1f us, p99 %.1f us, "
                "p99.9 %.1f us%s",
                t->name, levels[i] * 100, rate, w.sps, t->p50[i], t->p99[i], t->p999[i],
                w.late ? " (generator fell behind)" : "");
        if (w.bounced) fprintf(stderr, ", %llu bounced", (unsigned long long)w.bounced);
        fputc('\n', stderr);
    }
}

static double idle_memory(bench *b, const bench_target *bt, const pidset *ps, bench_mode mode,
                          uint32_t n, uint32_t *up_out, double *secs_out)
{
    sleep_s(0.3);
    double before = rss_kib(ps);
    double secs;
    uint32_t up = bench_idle_open(b, bt, mode, n, mode == BENCH_TLS ? 64 : 256, 60000, &secs);
    sleep_s(0.5);
    double after = rss_kib(ps);
    bench_close_idle(b);
    *up_out = up;
    *secs_out = secs;
    return up ? (after - before) / up : 0;
}

static int run_target(bench *b, const options *o, target_result *t, const char *tmp,
                      const char *pki, uint16_t bench_s2s, uint16_t bench_int, const char *secret)
{
    char dir[PATH_MAX], lanes[16], bs2s[16], bint[16], threads[16], py[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", tmp, t->name);
    snprintf(lanes, sizeof lanes, "%u", o->lanes);
    snprintf(bs2s, sizeof bs2s, "%u", bench_s2s);
    snprintf(bint, sizeof bint, "%u", bench_int);
    snprintf(threads, sizeof threads, "%u", o->threads);
    snprintf(py, sizeof py, "%s/bench/targets.py", XFED_SOURCE_DIR);
    char *argv[] = {"/usr/bin/python3",
                    py,
                    "start",
                    (char *)t->name,
                    "--build",
                    (char *)o->build,
                    "--dir",
                    dir,
                    "--pki",
                    (char *)pki,
                    "--lanes",
                    lanes,
                    "--bench-s2s",
                    bs2s,
                    "--bench-internal",
                    bint,
                    "--secret",
                    (char *)secret,
                    "--threads",
                    threads,
                    NULL};
    fprintf(stderr, "xfed-bench: %s: starting\n", t->label);
    helper h = {.in_fd = -1};
    json_t *j = helper_start(&h, argv, 120);
    if (!j || json_object_get(j, "error")) {
        snprintf(t->error, sizeof t->error, "%s could not be started: %s", t->name,
                 j ? json_string_value(json_object_get(j, "error")) : "no answer from targets.py");
        json_decref(j);
        helper_stop(&h);
        return -1;
    }
    pidset ps = {0};
    size_t k;
    json_t *v;
    json_array_foreach(json_object_get(j, "pids"), k, v) if (ps.n < 8) ps.pids[ps.n++] =
        (pid_t)json_integer_value(v);
    bench_target bt = {
        .s2s_port = (uint16_t)json_integer_value(json_object_get(j, "s2s_port")),
        .comp_port = (uint16_t)json_integer_value(json_object_get(j, "component_port")),
        .raw = strcmp(t->name, "relay") == 0,
        .parse_back = strcmp(t->name, "prosody") == 0 || strcmp(t->name, "ejabberd") == 0,
    };
    json_decref(j);

    char err[256];
    int rc = -1;
    bench_mode mode = bt.raw ? BENCH_RAW : BENCH_PLAIN;
    if (bench_lanes_up(b, &bt, mode, 30000, err, sizeof err) < 0) {
        snprintf(t->error, sizeof t->error, "%s", err);
        goto out;
    }
    closed_runs(b, o, &ps, mode, t, &t->stanzas_per_s, &t->cpu_us_per_stanza);
    open_levels(b, o, &ps, t);
    t->mem_kib = idle_memory(b, &bt, &ps, BENCH_PLAIN, o->idle, &t->idle_up, &t->idle_secs);
    fprintf(stderr, "  %s: %u/%u idle streams in %.1f s, %.2f KiB each\n", t->name, t->idle_up,
            o->idle, t->idle_secs, t->mem_kib);
    if (strcmp(t->name, "xfed") == 0) {
        if (bench_lanes_up(b, &bt, BENCH_TLS, 30000, err, sizeof err) < 0) {
            snprintf(t->error, sizeof t->error, "TLS: %s", err);
            goto out;
        }
        closed_runs(b, o, &ps, BENCH_TLS, t, &t->tls_sps, &t->tls_cpu_us);
        double secs;
        t->tls_mem_kib = idle_memory(b, &bt, &ps, BENCH_TLS, o->tls_idle, &t->tls_up, &secs);
        t->tls_hs_per_s = secs > 0 ? t->tls_up / secs : 0;
        fprintf(stderr,
                "  %s: %u/%u TLS streams (STARTTLS + SASL EXTERNAL, full handshakes) in %.2f s: "
                "%.0f/s, %.2f KiB each\n",
                t->name, t->tls_up, o->tls_idle, secs, t->tls_hs_per_s, t->tls_mem_kib);
    }
    t->ok = true;
    rc = 0;
out:
    t->lost = bench_lost(b);
    if (t->lost)
        fprintf(stderr, "  %s: %llu stanza(s) sent but never routed back to the bench\n", t->name,
                (unsigned long long)t->lost);
    helper_stop(&h);
    bench_close_all(b);
    if (bench_failures(b))
        fprintf(stderr, "  %s: %llu stream(s) failed while negotiating (see above)\n", t->name,
                (unsigned long long)bench_failures(b));
    return rc;
}

/* ---- results ------------------------------------------------------------------------ */

static json_t *num_or_null(double v, bool ok)
{
    return ok ? json_real(v) : json_null();
}

static json_t *results_json(const options *o, const target_result *ts, int n, const char *summary)
{
    json_t *root = json_object();
    char host[128];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(host, sizeof host, "%ld CPUs, %u lanes, %s run", ncpu, o->lanes,
             o->quick ? "quick" : "full");
    json_object_set_new(root, "host", json_string(host));
    json_object_set_new(root, "quick", json_boolean(o->quick));
    json_t *cfg = json_object();
    json_object_set_new(cfg, "lanes", json_integer(o->lanes));
    json_object_set_new(cfg, "window", json_integer(o->window));
    json_object_set_new(cfg, "runs", json_integer(o->runs));
    json_object_set_new(cfg, "seconds", json_real(o->secs));
    json_object_set_new(cfg, "idle_streams", json_integer(o->idle));
    json_object_set_new(cfg, "tls_streams", json_integer(o->tls_idle));
    json_object_set_new(cfg, "server_threads", json_integer(o->threads));
    json_object_set_new(cfg, "bench_threads", json_integer(o->bench_threads));
    json_object_set_new(cfg, "mix",
                        json_string("49% presence ~150 B, 49% message 250-400 B, 2% iq 2-8 KB"));
    json_object_set_new(root, "config", cfg);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const target_result *t = &ts[i];
        if (!t->want) continue;
        json_t *x = json_object();
        json_object_set_new(x, "name", json_string(t->name));
        json_object_set_new(x, "label", json_string(t->label));
        json_object_set_new(x, "ok", json_boolean(t->ok));
        if (!t->ok) json_object_set_new(x, "error", json_string(t->error));
        json_object_set_new(x, "stanzas_per_s", num_or_null(t->stanzas_per_s, t->ok));
        json_object_set_new(x, "bytes_per_s", num_or_null(t->bytes_per_s, t->ok));
        json_object_set_new(x, "cpu_us_per_stanza", num_or_null(t->cpu_us_per_stanza, t->ok));
        json_t *runs = json_array();
        for (uint32_t r = 0; r < t->runs; r++)
            json_array_append_new(runs, json_real(t->sps[r]));
        json_object_set_new(x, "runs_stanzas_per_s", runs);
        json_t *lat = json_object();
        for (int l = 0; l < NLEVELS && t->ok; l++) {
            json_t *y = json_object();
            json_object_set_new(y, "rate", json_real(t->lat_rate[l]));
            json_object_set_new(y, "routed_per_s", json_real(t->lat_got[l]));
            json_object_set_new(y, "p50_us", json_real(t->p50[l]));
            json_object_set_new(y, "p99_us", json_real(t->p99[l]));
            json_object_set_new(y, "p999_us", json_real(t->p999[l]));
            json_object_set_new(y, "late", json_integer((json_int_t)t->late[l]));
            json_object_set_new(y, "bounced", json_integer((json_int_t)t->bounced[l]));
            char key[8];
            snprintf(key, sizeof key, "%d", (int)(levels[l] * 100));
            json_object_set_new(lat, key, y);
        }
        json_object_set_new(x, "latency", lat);
        json_object_set_new(x, "closed_loop_p50_us", num_or_null(t->closed_p50, t->ok));
        json_object_set_new(x, "closed_loop_p99_us", num_or_null(t->closed_p99, t->ok));
        json_object_set_new(x, "mem_per_stream_kib", num_or_null(t->mem_kib, t->ok && t->idle_up));
        json_object_set_new(x, "idle_streams_up", json_integer(t->idle_up));
        json_object_set_new(x, "lost", json_integer((json_int_t)t->lost));
        json_object_set_new(x, "closed_loop_bounced", json_integer((json_int_t)t->closed_bounced));
        bool x_tls = t->ok && strcmp(t->name, "xfed") == 0;
        json_object_set_new(x, "tls_stanzas_per_s", num_or_null(t->tls_sps, x_tls));
        json_object_set_new(x, "tls_cpu_us_per_stanza", num_or_null(t->tls_cpu_us, x_tls));
        json_object_set_new(x, "tls_handshakes_per_s", num_or_null(t->tls_hs_per_s, x_tls));
        json_object_set_new(x, "tls_mem_per_stream_kib",
                            num_or_null(t->tls_mem_kib, x_tls && t->tls_up));
        json_object_set_new(x, "tls_streams_up", json_integer(t->tls_up));
        json_array_append_new(arr, x);
    }
    json_object_set_new(root, "targets", arr);
    json_object_set_new(root, "summary", json_string(summary));
    return root;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: xfed-bench [--quick] [--targets relay,xfed,prosody,ejabberd] [--out DIR]\n"
        "                  [--lanes N] [--window W] [--seconds S] [--runs R]\n"
        "                  [--idle N] [--tls-streams N] [--threads T] [--bench-threads T]\n"
        "                  [--build DIR] [--keep]\n"
        "  --quick          short run (< 1 minute): 8 lanes, 1 s windows, 1 run, 1000 idle "
        "streams\n"
        "  --targets LIST   which targets (default all four; the ratios need relay, prosody, "
        "ejabberd)\n"
        "  --out DIR        where bench-results.json and bench-chart.png go (default .)\n"
        "  --lanes N        partner domains, each with one stream in and one back (default 16)\n"
        "  --window W       closed loop: stanzas in flight per lane and direction (default 32)\n"
        "  --seconds S      length of each measured window (default 3)\n"
        "  --runs R         closed-loop runs per target, the median counts (default 5)\n"
        "  --idle N         idle streams for memory per stream (default 10000)\n"
        "  --tls-streams N  TLS streams for handshakes/s and memory (default 10000)\n"
        "  --threads T      server threads for xfed and the relay (default 2)\n"
        "  --bench-threads T load generator threads (default 2)\n"
        "  --build DIR      the build directory with core/xfed (default: the one holding this "
        "program)\n"
        "  --keep           keep the temporary directory (configs and logs of every target)\n");
}

int main(int argc, char **argv)
{
    options o = {.lanes = 16,
                 .window = 32,
                 .runs = 5,
                 .idle = 10000,
                 .tls_idle = 10000,
                 .threads = 2,
                 .bench_threads = 2,
                 .secs = 3.0,
                 .out_dir = ".",
                 .targets = "relay,xfed,prosody,ejabberd"};
    bool set_lanes = false, set_secs = false, set_runs = false, set_idle = false, set_tls = false;
    static const struct option lo[] = {{"quick", no_argument, NULL, 'q'},
                                       {"targets", required_argument, NULL, 'T'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"lanes", required_argument, NULL, 'l'},
                                       {"window", required_argument, NULL, 'w'},
                                       {"seconds", required_argument, NULL, 's'},
                                       {"runs", required_argument, NULL, 'r'},
                                       {"idle", required_argument, NULL, 'i'},
                                       {"tls-streams", required_argument, NULL, 'S'},
                                       {"threads", required_argument, NULL, 't'},
                                       {"bench-threads", required_argument, NULL, 'B'},
                                       {"build", required_argument, NULL, 'b'},
                                       {"keep", no_argument, NULL, 'k'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "qT:o:l:w:s:r:i:S:t:B:b:kh", lo, NULL)) != -1) {
        switch (ch) {
        case 'q': o.quick = true; break;
        case 'T': o.targets = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case 'l': o.lanes = (uint32_t)atoi(optarg), set_lanes = true; break;
        case 'w': o.window = (uint32_t)atoi(optarg); break;
        case 's': o.secs = atof(optarg), set_secs = true; break;
        case 'r': o.runs = (uint32_t)atoi(optarg), set_runs = true; break;
        case 'i': o.idle = (uint32_t)atoi(optarg), set_idle = true; break;
        case 'S': o.tls_idle = (uint32_t)atoi(optarg), set_tls = true; break;
        case 't': o.threads = (uint32_t)atoi(optarg); break;
        case 'B': o.bench_threads = (uint32_t)atoi(optarg); break;
        case 'b': o.build = optarg; break;
        case 'k': o.keep = true; break;
        default: usage(); return ch == 'h' ? 0 : 2;
        }
    }
    if (optind != argc) {
        usage();
        return 2;
    }
    if (o.quick) {
        if (!set_lanes) o.lanes = 8;
        if (!set_secs) o.secs = 1.0;
        if (!set_runs) o.runs = 1;
        if (!set_idle) o.idle = 1000;
        if (!set_tls) o.tls_idle = 500;
    }
    if (o.runs < 1 || o.runs > RUNS_MAX) die("--runs must be 1..%d", RUNS_MAX);
    if (o.lanes < 1 || o.lanes > BENCH_LANES_MAX) die("--lanes must be 1..%d", BENCH_LANES_MAX);
    if (o.window < 1 || o.secs <= 0 || o.threads < 1 || o.bench_threads < 1)
        die("bad option value");

    char build[PATH_MAX];
    if (!o.build) { /* this program is BUILD/bench/xfed-bench */
        ssize_t n = readlink("/proc/self/exe", build, sizeof build - 1);
        if (n <= 0) die("cannot find the build directory: use --build");
        build[n] = 0;
        for (int k = 0; k < 2; k++)
            *strrchr(build, '/') = 0;
        o.build = build;
    }
    char xfed_bin[PATH_MAX + 16];
    snprintf(xfed_bin, sizeof xfed_bin, "%s/core/xfed", o.build);
    if (access(xfed_bin, X_OK) != 0)
        die("%s is missing: build xfed first (or use --build)", xfed_bin);
    signal(SIGPIPE, SIG_IGN);

    target_result ts[] = {
        {.name = "relay", .label = "B raw relay"},
        {.name = "xfed", .label = "C xfed"},
        {.name = "prosody", .label = "P Prosody"},
        {.name = "ejabberd", .label = "E ejabberd"},
    };
    int nt = (int)(sizeof ts / sizeof ts[0]);
    for (int i = 0; i < nt; i++) {
        char list[256];
        snprintf(list, sizeof list, ",%s,", o.targets);
        char want[32];
        snprintf(want, sizeof want, ",%s,", ts[i].name);
        ts[i].want = strstr(list, want) != NULL;
    }

    /* The peers it compares with and the chart need Debian packages: install what is missing. */
    char deps[PATH_MAX + 64];
    snprintf(deps, sizeof deps, ". '%s/tools/deps.sh' && xfed_install $XFED_BENCH_PKGS >&2",
             XFED_SOURCE_DIR);
    char *dargv[] = {"/bin/bash", "-c", deps, NULL};
    pid_t dp;
    int dst = 1;
    if (posix_spawn(&dp, dargv[0], NULL, NULL, dargv, environ) == 0) waitpid(dp, &dst, 0);
    if (dst != 0)
        fprintf(stderr, "xfed-bench: could not install the packages it needs (tools/deps.sh): "
                        "targets that lack them will fail\n");

    char tmp[] = "/tmp/xfed-bench-XXXXXX";
    if (!mkdtemp(tmp)) die("mkdtemp: %s", strerror(errno));
    chmod(tmp, 0755); /* the peers run as other uids and read their configs below it */
    char pki[PATH_MAX], py[PATH_MAX];
    snprintf(pki, sizeof pki, "%s/pki", tmp);
    snprintf(py, sizeof py, "%s/bench/targets.py", XFED_SOURCE_DIR);
    char lanes[16];
    snprintf(lanes, sizeof lanes, "%u", o.lanes);
    char *pargv[] = {"/usr/bin/python3", py, "pki", "--dir", pki, "--lanes", lanes, NULL};
    helper ph = {.in_fd = -1};
    json_t *pj = helper_start(&ph, pargv, 60);
    helper_stop(&ph);
    if (!pj || json_object_get(pj, "error"))
        die("test CA: %s",
            pj ? json_string_value(json_object_get(pj, "error")) : "targets.py pki failed");
    char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
    snprintf(ca, sizeof ca, "%s", json_string_value(json_object_get(pj, "ca")));
    snprintf(cert, sizeof cert, "%s", json_string_value(json_object_get(pj, "bench_cert")));
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(pj, "bench_key")));
    json_decref(pj);

    char secret[33];
    snprintf(secret, sizeof secret, "%08lx%08lx", (unsigned long)random() ^ (unsigned long)getpid(),
             (unsigned long)time(NULL));
    bench_opts bo = {.threads = o.bench_threads,
                     .s2s_port = free_port(),
                     .int_port = free_port(),
                     .secret = secret,
                     .ca = ca,
                     .cert = cert,
                     .key = key,
                     .lanes = o.lanes};
    char err[256];
    bench *b = bench_start(&bo, err, sizeof err);
    if (!b) die("load generator: %s", err);
    fprintf(stderr, "xfed-bench: %u lanes, window %u, %u x %.1f s closed loop, %s\n", o.lanes,
            o.window, o.runs, o.secs, tmp);

    for (int i = 0; i < nt; i++)
        if (ts[i].want && run_target(b, &o, &ts[i], tmp, pki, bo.s2s_port, bo.int_port, secret) < 0)
            fprintf(stderr, "xfed-bench: %s: %s\n", ts[i].name, ts[i].error);
    bench_stop(b);

    /* Table and ratios. */
    const target_result *B = &ts[0], *C = &ts[1], *P = &ts[2], *E = &ts[3];
    printf("\n%-12s %12s %10s %9s %9s %9s %9s %10s %10s\n", "target", "stanzas/s", "MB/s",
           "CPU-us/st", "p50 us", "p99 us", "p99.9 us", "KiB/stream", "TLS st/s");
    for (int i = 0; i < nt; i++) {
        const target_result *t = &ts[i];
        if (!t->want) continue;
        if (!t->ok) {
            printf("%-12s failed: %s\n", t->label, t->error);
            continue;
        }
        printf("%-12s %12.0f %10.1f %9.2f %9.1f %9.1f %9.1f %10.2f", t->label, t->stanzas_per_s,
               t->bytes_per_s / 1e6, t->cpu_us_per_stanza, t->p50[1], t->p99[1], t->p999[1],
               t->mem_kib);
        if (t == C) printf(" %10.0f", t->tls_sps);
        printf("\n");
    }
    if (C->ok)
        printf("xfed TLS: %.0f stanzas/s, %.2f CPU-us/stanza, %.0f full handshakes/s, %.2f KiB per "
               "TLS stream (%u streams)\n",
               C->tls_sps, C->tls_cpu_us, C->tls_hs_per_s, C->tls_mem_kib, C->tls_up);
    double rb = C->ok && B->ok && B->stanzas_per_s > 0 ? C->stanzas_per_s / B->stanzas_per_s : 0;
    double rp = C->ok && P->ok && P->stanzas_per_s > 0 ? C->stanzas_per_s / P->stanzas_per_s : 0;
    double re = C->ok && E->ok && E->stanzas_per_s > 0 ? C->stanzas_per_s / E->stanzas_per_s : 0;
    char summary[512];
    snprintf(summary, sizeof summary,
             "bench stanzas_per_s=%.0f ratio_relay=%.2f ratio_prosody=%.1f ratio_ejabberd=%.1f "
             "p99_us=%.1f tls_stanzas_per_s=%.0f mem_per_stream_kib=%.2f",
             C->ok ? C->stanzas_per_s : 0, rb, rp, re, C->ok ? C->p99[1] : 0,
             C->ok ? C->tls_sps : 0, C->ok ? C->mem_kib : 0);

    char path[PATH_MAX], png[PATH_MAX];
    mkdir(o.out_dir, 0755);
    snprintf(path, sizeof path, "%s/bench-results.json", o.out_dir);
    snprintf(png, sizeof png, "%s/bench-chart.png", o.out_dir);
    json_t *res = results_json(&o, ts, nt, summary);
    if (json_dump_file(res, path, JSON_INDENT(2)) != 0)
        fprintf(stderr, "xfed-bench: cannot write %s\n", path);
    json_decref(res);
    char chart[PATH_MAX];
    snprintf(chart, sizeof chart, "%s/bench/chart.py", XFED_SOURCE_DIR);
    char *cargv[] = {"/usr/bin/python3", chart, path, png, NULL};
    pid_t cp;
    int st = 1;
    if (posix_spawn(&cp, cargv[0], NULL, NULL, cargv, environ) == 0) waitpid(cp, &st, 0);
    printf("results: %s%s%s\n", path, st == 0 ? ", chart: " : " (no chart: bench/chart.py failed)",
           st == 0 ? png : "");
    if (!o.keep) {
        char *rargv[] = {"/bin/rm", "-rf", tmp, NULL};
        pid_t rp2;
        if (posix_spawn(&rp2, rargv[0], NULL, NULL, rargv, environ) == 0) waitpid(rp2, NULL, 0);
    }
    printf("%s\n", summary);
    int failed = 0;
    for (int i = 0; i < nt; i++)
        failed |= ts[i].want && !ts[i].ok;
    return failed ? 1 : 0;
}
