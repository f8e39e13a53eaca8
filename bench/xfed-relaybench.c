/* xfed-relaybench: a loopback load generator for the raw relay.
 *
 * Throughput: a sink (one epoll thread) listens on -l PORT and counts what it
 * reads; client threads open -n connections to -c PORT (the sink itself for
 * the direct baseline, or `xfed --relay` in front of it) and write -w bytes
 * per write, full speed, for -d seconds after a 1 s warm-up. Prints the bytes
 * and messages (-s bytes each) per second the sink received.
 *
 * Idle connections: -I N holds N connections to -c PORT open for -H seconds;
 * -S holds every connection the listener on -l PORT accepts (the sink for the
 * idle case, in its own process: 10 000 connections through the relay are 20 000
 * sockets there, and RLIMIT_NOFILE is per process). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16
#define MAX_CONNS   20000

static int listen_port, connect_port, nconns = 64, nthreads = 1, msg_size = 256;
static int write_size = 16384, seconds = 5, idle_conns, hold_s = 30;
static bool idle_sink;
static _Atomic uint64_t sink_bytes;
static _Atomic bool stop_all;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "xfed-relaybench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int open_listener(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); /* accepts drain to EAGAIN */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = loopback(port);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0)
        die("listen");
    return fd;
}

/* One epoll thread: accepts, and reads (and discards) every connection. */
static void *sink_main(void *arg)
{
    int lfd = *(int *)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static uint8_t buf[1 << 18];
    struct epoll_event evs[256];
    while (!atomic_load(&stop_all)) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (int k = 0; k < 256; k++) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0) break;
                    struct epoll_event cev = {.events = idle_sink ? 0u : EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            for (int k = 0; k < 16; k++) { /* bounded per event: fairness */
                ssize_t r = read(fd, buf, sizeof buf);
                if (r > 0) {
                    atomic_fetch_add_explicit(&sink_bytes, (uint64_t)r, memory_order_relaxed);
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) close(fd);
                break;
            }
        }
    }
    close(ep);
    return NULL;
}

static int connect_to(int port, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = loopback(port);
    for (int tries = 0; connect(fd, (struct sockaddr *)&a, sizeof a) < 0; tries++) {
        if (tries == 50) die("connect");
        usleep(20000);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblock && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
    return fd;
}

typedef struct {
    int first, count;
} client_arg;

/* Writes full buffers of messages as fast as the connections take them. */
static void *client_main(void *arg)
{
    client_arg *ca = arg;
    int ep = epoll_create1(0);
    int *fds = calloc((size_t)ca->count, sizeof *fds);
    uint8_t *buf = malloc((size_t)write_size);
    if (!fds || !buf) die("malloc");
    for (int i = 0; i < write_size; i++) /* messages of msg_size bytes, newline-ended */
        buf[i] = (i % msg_size) == msg_size - 1 ? '\n' : (uint8_t)('a' + i % 26);
    for (int i = 0; i < ca->count; i++) {
        fds[i] = connect_to(connect_port, true);
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fds[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    struct epoll_event evs[256];
    while (!atomic_load(&stop_all)) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            /* Whole messages only: a short write is finished before the next. */
            ssize_t w = write(evs[i].data.fd, buf, (size_t)write_size);
            if (w < 0 && errno != EAGAIN) die("write");
            if (w > 0 && w < write_size) {
                size_t left = (size_t)(write_size - w);
                const uint8_t *p = buf + w;
                uint64_t until = now_ns() + 5000000000ull;
                while (left && now_ns() < until && !atomic_load(&stop_all)) {
                    ssize_t k = write(evs[i].data.fd, p, left);
                    if (k > 0) {
                        p += k;
                        left -= (size_t)k;
                    } else if (errno != EAGAIN) {
                        die("write");
                    }
                }
            }
        }
    }
    for (int i = 0; i < ca->count; i++)
        close(fds[i]);
    free(fds);
    free(buf);
    close(ep);
    return NULL;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: xfed-relaybench -l SINKPORT -c PORT [-n CONNS] [-t THREADS] [-s MSGSIZE]\n"
            "                       [-w WRITESIZE] [-d SECONDS]\n"
            "       xfed-relaybench -c PORT -I CONNS [-H SECONDS]   (hold idle connections)\n"
            "       xfed-relaybench -l PORT -S [-H SECONDS]         (accept and hold)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int c; (c = getopt(argc, argv, "l:c:n:t:s:w:d:I:H:S")) != -1;) {
        switch (c) {
        case 'l': listen_port = atoi(optarg); break;
        case 'c': connect_port = atoi(optarg); break;
        case 'n': nconns = atoi(optarg); break;
        case 't': nthreads = atoi(optarg); break;
        case 's': msg_size = atoi(optarg); break;
        case 'w': write_size = atoi(optarg); break;
        case 'd': seconds = atoi(optarg); break;
        case 'I': idle_conns = atoi(optarg); break;
        case 'H': hold_s = atoi(optarg); break;
        case 'S': idle_sink = true; break;
        default: usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if (nconns < 1 || nconns > MAX_CONNS || nthreads < 1 || nthreads > MAX_THREADS ||
        msg_size < 1 || write_size < msg_size || seconds < 1 || seconds > 600 || idle_conns < 0 ||
        idle_conns > MAX_CONNS || hold_s < 1 || hold_s > 3600)
        usage();

    if (idle_sink) { /* accept and hold, reading nothing */
        if (!listen_port) usage();
        int lfd = open_listener(listen_port);
        pthread_t th;
        pthread_create(&th, NULL, sink_main, &lfd);
        printf("ready\n");
        fflush(stdout);
        sleep((unsigned)hold_s);
        atomic_store(&stop_all, true);
        pthread_join(th, NULL);
        return 0;
    }
    if (idle_conns) { /* open and hold */
        if (!connect_port) usage();
        static int fds[MAX_CONNS];
        for (int i = 0; i < idle_conns; i++)
            fds[i] = connect_to(connect_port, false);
        printf("connected %d\n", idle_conns);
        fflush(stdout);
        sleep((unsigned)hold_s);
        for (int i = 0; i < idle_conns; i++)
            close(fds[i]);
        return 0;
    }

    if (!listen_port || !connect_port) usage();
    int lfd = open_listener(listen_port);
    pthread_t sink, th[MAX_THREADS];
    pthread_create(&sink, NULL, sink_main, &lfd);
    client_arg ca[MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        ca[i].first = i * nconns / nthreads;
        ca[i].count = (i + 1) * nconns / nthreads - ca[i].first;
        pthread_create(&th[i], NULL, client_main, &ca[i]);
    }
    usleep(1000000); /* warm-up: connections up, queues and windows at their size */
    uint64_t b0 = atomic_load(&sink_bytes), t0 = now_ns();
    usleep((useconds_t)seconds * 1000000u);
    uint64_t b1 = atomic_load(&sink_bytes), t1 = now_ns();
    atomic_store(&stop_all, true);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    pthread_join(sink, NULL);
    double secs = (double)(t1 - t0) / 1e9;
    double bps = (double)(b1 - b0) / secs;
    printf("bytes=%llu seconds=%.3f bytes_per_s=%.0f msgs_per_s=%.0f msg_size=%d write_size=%d "
           "conns=%d\n",
           (unsigned long long)(b1 - b0), secs, bps, bps / msg_size, msg_size, write_size, nconns);
    return 0;
}
