/*
 * QMP round trips: the library against a peer that answers at once, next to
 * a raw client over the same transport (a unix socket, the simulated vchan),
 * and against a real QEMU.  Prints figures; not a test.
 *
 *   bench_qmp [N [MODE]]   N round trips per side (default 20000; QEMU: 200)
 *
 * Three sequential loops, interleaved in blocks of BLOCK round trips so that
 * the load of a shared machine falls on all of them alike:
 *
 *   raw   a hand-written client: the command bytes the library sends, out
 *         with send(2); poll(2) + recv(2) until the reply's newline.  Its
 *         peer is the same answering peer as the library's (one per client,
 *         same code), so both sides pay the same peer work and framing.
 *         This is the floor the library is compared with.
 *   echo  the same loop against a peer that only echoes the bytes back (no
 *         line scan, no reply to format): shows what the peer's own work
 *         costs.  For reference; not the target's denominator.
 *   lib   stubdm_qmp_execute + stubdm_ctx_run_once until the callback.
 *
 * MODE "all" (default) runs everything; "raw", "echo" or "lib" runs only
 * that loop, for profiling one side alone, e.g.
 *   valgrind --tool=callgrind --toggle-collect='lib_round_trips*' \
 *       bench_qmp 2000 lib
 *   strace -c bench_qmp 20000 lib
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#include "core/base.h"
#include "libstubdm.h"
#include "proccheck.h"
#include "qmp_peer.h"

#define BLOCK 500

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Latencies of one side, over all its blocks. */
struct side {
    const char *label;
    int64_t *lat;
    int n;
    int64_t total_ns;
    double p50_us, mean_us;
    double *block_mean; /* mean of each block of BLOCK, in order */
    int nblocks;
};

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(struct side *s)
{
    qsort(s->lat, (size_t)s->n, sizeof(*s->lat), cmp64);
    s->p50_us = s->lat[s->n / 2] / 1e3;
    s->mean_us = (double)s->total_ns / s->n / 1e3;
    printf("%-34s n=%-6d p50 %7.2f us  p99 %7.1f us  mean %7.2f us  "
           "%8.0f ops/s\n",
           s->label, s->n, s->p50_us, s->lat[(s->n * 99) / 100] / 1e3,
           s->mean_us, s->n / (s->total_ns / 1e9));
    /* The quartiles show when the distribution has two modes (a wake-up
     * on a warm or a cold vCPU): a p50 near the valley between them jumps
     * from one mode to the other between runs of the same binary. */
    printf("%-34s p10 %.2f  p25 %.2f  p50 %.2f  p75 %.2f  p90 %.2f us\n", "",
           s->lat[s->n / 10] / 1e3, s->lat[s->n / 4] / 1e3,
           s->lat[s->n / 2] / 1e3, s->lat[(s->n * 3) / 4] / 1e3,
           s->lat[(s->n * 9) / 10] / 1e3);
}

/* a's quantile num/den over b's (both sorted by report()). */
static double quantile_ratio(const struct side *a, const struct side *b,
                             int num, int den)
{
    return (double)a->lat[(a->n * num) / den] / b->lat[(b->n * num) / den];
}

/*
 * The paired comparison: block k of the library against block k of the raw
 * client, run back to back, so both met the same load.  The median of the
 * per-block ratios is robust to the blocks a neighbour's burst spoilt, and
 * unlike the p50 of all samples it does not depend on which side of a
 * bimodal distribution's valley the middle sample falls.
 */
static void paired(const char *label, const struct side *a,
                   const struct side *b)
{
    int nb = a->nblocks < b->nblocks ? a->nblocks : b->nblocks;
    double *r = calloc((size_t)nb, sizeof(*r));

    if (!r || nb == 0) {
        free(r);
        return;
    }
    for (int k = 0; k < nb; k++)
        r[k] = a->block_mean[k] / b->block_mean[k];
    qsort(r, (size_t)nb, sizeof(*r), cmpd);
    printf("%s: median %.2fx over %d blocks (p10 %.2fx, p90 %.2fx)\n", label,
           r[nb / 2], nb, r[nb / 10], r[(nb * 9) / 10]);
    free(r);
}

static bool done;
static void on_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    (void)q, (void)op, (void)r, (void)user;
    if (rc)
        fprintf(stderr, "command failed: %s\n", stubdm_op_errmsg(op));
    done = true;
}

/* A block of n round trips that took ns in all: into s's totals. */
static int block_done(struct side *s, int n, int64_t ns)
{
    s->total_ns += ns;
    s->n += n;
    if (s->block_mean)
        s->block_mean[s->nblocks++] = (double)ns / n;
    return 0;
}

/* n round trips through the library; latencies appended to s. */
__attribute__((noinline)) static int lib_round_trips(stubdm_ctx *ctx,
                                                     stubdm_qmp *q,
                                                     const char *cmd, int n,
                                                     struct side *s)
{
    int64_t *lat = s->lat + s->n;
    int64_t t0 = now_ns();

    for (int i = 0; i < n; i++) {
        int64_t t = now_ns();
        done = false;
        if (stubdm_qmp_execute(q, cmd, NULL, 10000, on_reply, NULL, NULL))
            return -1;
        while (!done)
            stubdm_ctx_run_once(ctx, -1);
        lat[i] = now_ns() - t;
    }
    return block_done(s, n, now_ns() - t0);
}

/* What the library sends for query-status (its ids have 1 to 5 digits here;
 * the raw client's fixed id has 6), and what the peers answer. */
static const char raw_req[] =
    "{\"execute\":\"query-status\",\"id\":123456}\r\n";

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

    if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Setup only (not timed): one line, by poll + recv. */
static int raw_read_line(int fd)
{
    char buf[4096];
    size_t got = 0;

    while (!memchr(buf, '\n', got)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (got == sizeof(buf) || poll(&p, 1, 10000) <= 0)
            return -1;
        ssize_t r = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN))
            return -1;
        if (r > 0)
            got += (size_t)r;
    }
    return 0;
}

/* The raw client's QMP handshake with the answering peer (not timed). */
static int raw_handshake(int fd)
{
    static const char caps[] =
        "{\"execute\":\"qmp_capabilities\",\"id\":1}\r\n";

    if (raw_read_line(fd) ||
        send(fd, caps, sizeof(caps) - 1, MSG_NOSIGNAL) != sizeof(caps) - 1)
        return -1;
    return raw_read_line(fd);
}

/*
 * n raw round trips on fd: the request out, then poll + non-blocking recv
 * until the reply is complete -- a newline for the QMP peer (line framing,
 * as QMP is), the request's length for the echo peer.
 */
__attribute__((noinline)) static int raw_round_trips(int fd, bool line, int n,
                                                     struct side *s)
{
    size_t len = sizeof(raw_req) - 1;
    int64_t *lat = s->lat + s->n;
    char buf[256];
    int64_t t0 = now_ns();

    for (int i = 0; i < n; i++) {
        int64_t t = now_ns();
        size_t got = 0;
        if (send(fd, raw_req, len, MSG_NOSIGNAL) != (ssize_t)len)
            return -1;
        for (;;) {
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, -1);
            ssize_t r = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                return -1;
            if (r > 0) {
                got += (size_t)r;
                if (line ? memchr(buf, '\n', got) != NULL : got >= len)
                    break;
                if (got == sizeof(buf))
                    return -1;
            }
        }
        lat[i] = now_ns() - t;
    }
    return block_done(s, n, now_ns() - t0);
}

static int pipelined_done;
static void on_pipe(stubdm_qmp *q, stubdm_op *op, int rc,
                    const stubdm_qmp_reply *r, void *user)
{
    (void)q, (void)op, (void)rc, (void)r, (void)user;
    pipelined_done++;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    const char *mode = argc > 2 ? argv[2] : "all";
    bool all = strcmp(mode, "all") == 0;
    bool do_raw = all || strcmp(mode, "raw") == 0;
    bool do_echo = all || strcmp(mode, "echo") == 0;
    bool do_lib = all || strcmp(mode, "lib") == 0;
    struct qmp_sim sim;
    struct qmp_peer peer, raw_peer, echo_peer;
    char raw_path[400], echo_path[400];
    int raw_fd = -1, echo_fd = -1;
    stubdm_ctx *ctx = NULL;
    stubdm_qmp *q = NULL;
    struct side raw = {.label = "raw client, same QMP peer"},
                echo = {.label = "raw echo (peer does no work)"},
                lib = {.label = "libstubdm execute, sequential"};
    static const struct qmp_peer_step answer[] = {QP_HS(), QP_ANS(), QP_E()};
    static const struct qmp_peer_step echo_steps[] = {QP_ECHOALL(), QP_E()};

    if (n < 1 || (!do_raw && !do_echo && !do_lib)) {
        fprintf(stderr, "usage: bench_qmp [N [all|raw|echo|lib]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (qmp_sim_start(&sim, 5, 1) || qmp_sim_server_ready(&sim)) {
        fprintf(stderr, "cannot start the simulated host\n");
        return 1;
    }
    printf("QMP round trips over the simulated transport (unix socket), "
           "interleaved in blocks of %d\n",
           BLOCK);
    raw.lat = calloc((size_t)n, sizeof(int64_t));
    echo.lat = calloc((size_t)n, sizeof(int64_t));
    lib.lat = calloc((size_t)n, sizeof(int64_t));
    size_t nblocks = (size_t)(n + BLOCK - 1) / BLOCK;
    raw.block_mean = calloc(nblocks, sizeof(double));
    echo.block_mean = calloc(nblocks, sizeof(double));
    lib.block_mean = calloc(nblocks, sizeof(double));

    /* One peer per client, each its own process and socket. */
    snprintf(raw_path, sizeof(raw_path), "%s/raw.sock", sim.simdir);
    snprintf(echo_path, sizeof(echo_path), "%s/echo.sock", sim.simdir);
    if (do_raw &&
        (qmp_peer_start(&raw_peer, raw_path, answer) ||
         (raw_fd = connect_unix(raw_path)) < 0 || raw_handshake(raw_fd))) {
        fprintf(stderr, "raw client: cannot connect\n");
        return 1;
    }
    if (do_echo && (qmp_peer_start(&echo_peer, echo_path, echo_steps) ||
                    (echo_fd = connect_unix(echo_path)) < 0)) {
        fprintf(stderr, "echo client: cannot connect\n");
        return 1;
    }
    if (do_lib || all) {
        qmp_peer_start(&peer, sim.sock, answer);
        stubdm_ctx_new(&ctx);
        stubdm_qmp_opts *o;
        stubdm_qmp_opts_new(&o);
        stubdm_qmp_opts_set_limits(o, 0, 0,
                                   (size_t)n); /* all queued at once */
        int orc = stubdm_qmp_open_sync(ctx, 5, 1, o, &q);
        stubdm_qmp_opts_free(o);
        if (orc) {
            fprintf(stderr, "open: %s\n", stubdm_ctx_errmsg(ctx));
            return 1;
        }
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    for (int done_n = 0; done_n < n;) {
        int k = n - done_n < BLOCK ? n - done_n : BLOCK;
        if ((do_raw && raw_round_trips(raw_fd, true, k, &raw)) ||
            (do_echo && raw_round_trips(echo_fd, false, k, &echo)) ||
            (do_lib && lib_round_trips(ctx, q, "query-status", k, &lib))) {
            fprintf(stderr, "round trip failed\n");
            return 1;
        }
        done_n += k;
    }
    getrusage(RUSAGE_SELF, &ru1);
    if (do_raw)
        report(&raw);
    if (do_echo)
        report(&echo);
    if (do_lib)
        report(&lib);
    if (raw_fd >= 0) {
        close(raw_fd);
        qmp_peer_stop(&raw_peer);
    }
    if (echo_fd >= 0) {
        close(echo_fd);
        qmp_peer_stop(&echo_peer);
    }
    if (!all) {
        /* This process's CPU time (the clients'; peers are other processes),
         * per round trip: meaningful when one loop runs alone. */
        printf("client per round trip: cpu user %.2f us, sys %.2f us; "
               "context switches voluntary %.2f, involuntary %.2f\n",
               (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e6 / n +
                   (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / (double)n,
               (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6 / n +
                   (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / (double)n,
               (double)(ru1.ru_nvcsw - ru0.ru_nvcsw) / n,
               (double)(ru1.ru_nivcsw - ru0.ru_nivcsw) / n);
        if (q)
            stubdm_qmp_free(q);
        stubdm_ctx_free(ctx);
        if (do_lib)
            qmp_peer_stop(&peer);
        qmp_sim_stop(&sim);
        return 0;
    }
    printf("ratio libstubdm / raw client: p50 %.2fx, mean %.2fx "
           "(target <= 1.2x)\n",
           lib.p50_us / raw.p50_us, lib.mean_us / raw.mean_us);
    printf("ratio libstubdm / raw echo:   p50 %.2fx, mean %.2fx "
           "(reference)\n",
           lib.p50_us / echo.p50_us, lib.mean_us / echo.mean_us);
    printf("ratio libstubdm / raw client by quantile: p10 %.2fx, p25 %.2fx, "
           "p50 %.2fx, p75 %.2fx, p90 %.2fx\n",
           quantile_ratio(&lib, &raw, 1, 10), quantile_ratio(&lib, &raw, 1, 4),
           quantile_ratio(&lib, &raw, 1, 2), quantile_ratio(&lib, &raw, 3, 4),
           quantile_ratio(&lib, &raw, 9, 10));
    paired("paired blocks libstubdm / raw client", &lib, &raw);

    /* Pipelined: 8 in flight, the rest queued in the library. */
    int64_t t0 = now_ns();
    pipelined_done = 0;
    int started = 0;
    for (int i = 0; i < n; i++)
        started += stubdm_qmp_execute(q, "query-status", NULL, 60000, on_pipe,
                                      NULL, NULL) == 0;
    while (pipelined_done < started)
        stubdm_ctx_run_once(ctx, -1);
    double secs = (now_ns() - t0) / 1e9;
    printf("%-34s n=%-6d %8.0f ops/s\n", "libstubdm, all queued at once", n,
           n / secs);
    stubdm_qmp_free(q);
    stubdm_ctx_free(ctx);
    qmp_peer_stop(&peer);

    /* Real QEMU. */
    unlink(sim.sock);
    pid_t pid = qmp_qemu_start(sim.sock);
    stubdm_ctx_new(&ctx);
    if (stubdm_qmp_open_sync(ctx, 5, 1, NULL, &q) == 0) {
        int maj, min, mic;
        stubdm_qmp_qemu_version(q, &maj, &min, &mic);
        char label[64];
        snprintf(label, sizeof(label), "QEMU %d.%d.%d query-status", maj, min,
                 mic);
        struct side qs = {.label = label, .lat = calloc(200, sizeof(int64_t))};
        if (lib_round_trips(ctx, q, "query-status", 200, &qs) == 0)
            report(&qs);
        free(qs.lat);
        stubdm_qmp_free(q);
    } else {
        printf("QEMU: not available (%s)\n", stubdm_ctx_errmsg(ctx));
    }
    stubdm_ctx_free(ctx);
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    qmp_sim_stop(&sim);
    return 0;
}
