/*
 * QMP round trips: the library against a peer that answers at once, next to
 * a raw byte echo over the same transport (a unix socket, the simulated
 * vchan), and against a real QEMU.  Prints figures; not a test.
 *
 *   bench_qmp [N [MODE]]   N round trips (default 20000; QEMU: 200)
 *
 * MODE "all" (default) runs everything; "raw" or "lib" runs only that
 * sequential loop, for profiling one side alone, e.g.
 *   valgrind --tool=callgrind --toggle-collect=lib_round_trips bench_qmp 2000 lib
 *   strace -c bench_qmp 20000 lib
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "libstubdm.h"
#include "qmp_peer.c"

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

static int64_t last_p50;

static void report(const char *what, int64_t *lat, int n, int64_t total_ns)
{
    qsort(lat, (size_t)n, sizeof(*lat), cmp64);
    last_p50 = lat[n / 2];
    printf("%-34s n=%-6d p50 %7.1f us  p99 %7.1f us  mean %7.1f us  "
           "%8.0f ops/s\n",
           what, n, lat[n / 2] / 1e3, lat[(n * 99) / 100] / 1e3,
           (double)total_ns / n / 1e3, n / (total_ns / 1e9));
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

__attribute__((noinline)) static double lib_round_trips(stubdm_ctx *ctx, stubdm_qmp *q, const char *cmd,
                              int n, const char *label)
{
    int64_t *lat = calloc((size_t)n, sizeof(*lat));
    int64_t t0 = now_ns();

    for (int i = 0; i < n; i++) {
        int64_t s = now_ns();
        done = false;
        if (stubdm_qmp_execute(q, cmd, NULL, 10000, on_reply, NULL, NULL))
            return -1;
        while (!done)
            stubdm_ctx_run_once(ctx, -1);
        lat[i] = now_ns() - s;
    }
    int64_t total = now_ns() - t0;
    report(label, lat, n, total);
    double mean = (double)total / n;
    free(lat);
    return mean;
}

static int pipelined_done;
static void on_pipe(stubdm_qmp *q, stubdm_op *op, int rc,
                    const stubdm_qmp_reply *r, void *user)
{
    (void)q, (void)op, (void)rc, (void)r, (void)user;
    pipelined_done++;
}

/* Raw baseline: the same request bytes out, a reply of the same size back,
 * through poll(2) and non-blocking I/O, as the library does. */
__attribute__((noinline)) static double raw_round_trips(const char *path, int n)
{
    static const char req[] =
        "{\"execute\":\"query-status\",\"id\":123456}\r\n";
    size_t len = sizeof(req) - 1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int64_t *lat = calloc((size_t)n, sizeof(*lat));
    char buf[256];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

    strcpy(sa.sun_path, path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
        return -1;
    int64_t t0 = now_ns();
    for (int i = 0; i < n; i++) {
        int64_t s = now_ns();
        size_t got = 0;
        if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
            return -1;
        while (got < len) {
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, -1);
            ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0)
                got += (size_t)r;
            else if (r == 0)
                return -1;
        }
        lat[i] = now_ns() - s;
    }
    int64_t total = now_ns() - t0;
    report("raw echo, same transport", lat, n, total);
    close(fd);
    free(lat);
    return (double)total / n;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    const char *mode = argc > 2 ? argv[2] : "all";
    bool all = strcmp(mode, "all") == 0;
    double raw = 0;
    int64_t raw_p50 = 0;
    struct qmp_sim sim;
    struct qmp_peer peer;
    stubdm_ctx *ctx;
    stubdm_qmp *q;
    static const struct qmp_peer_step answer[] = {QP_HS(), QP_ANS(), QP_E()};
    static const struct qmp_peer_step echo[] = {QP_ECHOALL(), QP_E()};

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (qmp_sim_start(&sim, 5, 1) || qmp_sim_server_ready(&sim)) {
        fprintf(stderr, "cannot start the simulated host\n");
        return 1;
    }
    printf("QMP round trips over the simulated transport (unix socket)\n");

    /* Raw echo first. */
    if (all || strcmp(mode, "raw") == 0) {
        qmp_peer_start(&peer, sim.sock, echo);
        raw = raw_round_trips(sim.sock, n);
        raw_p50 = last_p50;
        qmp_peer_stop(&peer);
        if (!all) {
            qmp_sim_stop(&sim);
            return 0;
        }
    }

    /* The library against an immediately answering peer. */
    qmp_peer_start(&peer, sim.sock, answer);
    stubdm_ctx_new(&ctx);
    stubdm_qmp_opts *o;
    stubdm_qmp_opts_new(&o);
    stubdm_qmp_opts_set_limits(o, 0, 0, (size_t)n); /* all queued at once */
    int orc = stubdm_qmp_open_sync(ctx, 5, 1, o, &q);
    stubdm_qmp_opts_free(o);
    if (orc) {
        fprintf(stderr, "open: %s\n", stubdm_ctx_errmsg(ctx));
        return 1;
    }
    double lib = lib_round_trips(ctx, q, "query-status", n,
                                 "libstubdm execute, sequential");
    if (!all) {
        stubdm_qmp_close(q);
        stubdm_ctx_free(ctx);
        qmp_peer_stop(&peer);
        qmp_sim_stop(&sim);
        return 0;
    }
    printf("ratio libstubdm / raw echo: mean %.2fx, p50 %.2fx (target <= "
           "1.2x)\n",
           lib / raw, (double)last_p50 / (double)raw_p50);

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
    stubdm_qmp_close(q);
    stubdm_ctx_free(ctx);
    qmp_peer_stop(&peer);

    /* Real QEMU. */
    char qmp[400];
    snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", sim.sock);
    unlink(sim.sock);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "none",
               "-nodefaults", "-display", "none", "-accel", "tcg", "-qmp", qmp,
               (char *)NULL);
        _exit(127);
    }
    stubdm_ctx_new(&ctx);
    if (stubdm_qmp_open_sync(ctx, 5, 1, NULL, &q) == 0) {
        int maj, min, mic;
        stubdm_qmp_qemu_version(q, &maj, &min, &mic);
        char label[64];
        snprintf(label, sizeof(label), "QEMU %d.%d.%d query-status", maj, min,
                 mic);
        lib_round_trips(ctx, q, "query-status", 200, label);
        stubdm_qmp_close(q);
    } else {
        printf("QEMU: not available (%s)\n", stubdm_ctx_errmsg(ctx));
    }
    stubdm_ctx_free(ctx);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    qmp_sim_stop(&sim);
    return 0;
}
