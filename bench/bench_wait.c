/*
 * bench_wait: N concurrent waits for "running" in one ctx, each stubdomain
 * introduced in the mock xenstored and writing its state through its own
 * connection (acting as its domid), in random order.
 *
 * Prints, for N = 1, 100, 1000: latency from the stubdomain's write to the
 * callback (p50, p99, max), the library process's CPU time per wait, and
 * heap bytes per pending wait.  Writes are paced (one every GAP_US) as
 * stubdomains become ready independently; a burst run (all N writes at
 * once) is printed too, where latency includes draining the backlog.
 *
 * Figures, not a test: nothing here passes or fails.
 */
#include "core/base.h"
#include "mockxs.h"
#include "proccheck.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#define STUB_BASE 100
#define GUEST 4
#define GAP_US 500

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct slot {
    int64_t cb_ns;
    int rc;
    int calls;
};

static void on_done(stubdm_op *op, int rc, void *user)
{
    struct slot *s = user;
    (void)op;
    s->cb_ns = now_ns();
    s->rc = rc;
    s->calls++;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The stubdomains: one connection per domid, writes in random order. */
static void writer(const struct mockxs *m, int n, int gap_us,
                   int64_t *write_ns, int go_fd)
{
    struct xs_handle **h = calloc((size_t)n, sizeof(*h));
    int *order = malloc((size_t)n * sizeof(*order));
    char path[300], go;

    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/domain-%d.sock", m->dir,
                 STUB_BASE + i);
        setenv("XENSTORED_PATH", path, 1);
        h[i] = xs_open(0);
        if (!h[i]) {
            perror("writer: xs_open");
            _exit(1);
        }
        order[i] = i;
    }
    srand(1234);
    for (int i = n - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    if (read(go_fd, &go, 1) != 1)
        _exit(1);
    for (int k = 0; k < n; k++) {
        int i = order[k];
        write_ns[i] = now_ns();
        if (!xs_write(h[i], XBT_NULL, "device-model/4/state", "running", 7))
            _exit(2);
        if (gap_us)
            usleep((useconds_t)gap_us);
    }
    for (int i = 0; i < n; i++)
        xs_close(h[i]);
    _exit(0);
}

static void run(int n, int gap_us)
{
    struct mockxs m;
    struct xs_handle *dom0;
    stubdm_ctx *ctx;
    struct slot *slots = calloc((size_t)n, sizeof(*slots));
    int64_t *write_ns = mmap(NULL, (size_t)n * sizeof(int64_t),
                             PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int64_t *lat = malloc((size_t)n * sizeof(*lat));
    int go[2], done = 0;
    pid_t pid;
    char path[64];
    struct mallinfo2 before, after;
    double cpu0, cpu1;

    if (mockxs_start(&m, NULL)) {
        perror("mockxs_start");
        exit(1);
    }
    setenv("XENSTORED_PATH", mockxs_socket(&m), 1);
    dom0 = mockxs_open_as(&m, 0);
    for (int i = 0; i < n; i++) {
        unsigned d = (unsigned)(STUB_BASE + i);
        struct xs_permissions p[2] = {{d, XS_PERM_NONE},
                                      {GUEST, XS_PERM_READ}};
        xs_introduce_domain(dom0, d, 1, 1);
        snprintf(path, sizeof(path), "/local/domain/%u/device-model/4", d);
        xs_mkdir(dom0, XBT_NULL, path);
        xs_set_permissions(dom0, XBT_NULL, path, p, 2);
    }
    if (pipe(go))
        exit(1);
    pid = proc_child_fork();
    if (pid == 0) {
        close(go[1]);
        writer(&m, n, gap_us, write_ns, go[0]);
    }
    close(go[0]);
    setenv("XENSTORED_PATH", mockxs_socket(&m), 1);
    stubdm_ctx_new(&ctx);

    before = mallinfo2();
    cpu0 = cpu_s();
    for (int i = 0; i < n; i++)
        if (stubdm_dm_wait_running(ctx, (uint32_t)(STUB_BASE + i), GUEST,
                                   120000, on_done, &slots[i], NULL)) {
            fprintf(stderr, "start: %s\n", stubdm_ctx_errmsg(ctx));
            exit(1);
        }
    /* Let the initial watch fires drain before the stubdomains write. */
    for (int k = 0; k < 20; k++)
        stubdm_ctx_run_once(ctx, 10);
    after = mallinfo2();
    if (write(go[1], "g", 1) != 1)
        exit(1);
    while (done < n) {
        stubdm_ctx_run_once(ctx, 100);
        done = 0;
        for (int i = 0; i < n; i++)
            done += slots[i].calls;
    }
    cpu1 = cpu_s();
    waitpid(pid, NULL, 0);

    int failed = 0;
    for (int i = 0; i < n; i++) {
        lat[i] = slots[i].cb_ns - write_ns[i];
        failed += slots[i].rc != 0;
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
    printf("N=%-5d %-6s p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms  "
           "cpu/wait %6.1f us  heap/pending wait %5zu B  failed %d\n",
           n, gap_us ? "paced" : "burst", lat[n / 2] / 1e6,
           lat[n * 99 / 100 < n - 1 ? n * 99 / 100 : n - 1] / 1e6,
           lat[n - 1] / 1e6, (cpu1 - cpu0) * 1e6 / n,
           (size_t)(after.uordblks - before.uordblks) / (size_t)n, failed);
    stubdm_ctx_free(ctx);
    xs_close(dom0);
    mockxs_stop(&m);
    munmap(write_ns, (size_t)n * sizeof(int64_t));
    free(slots);
    free(lat);
    close(go[1]);
}

int main(void)
{
    struct rlimit rl = {8192, 8192};
    setrlimit(RLIMIT_NOFILE, &rl);
    printf("bench_wait: write -> callback latency, %d us between writes "
           "(paced) or none (burst)\n",
           GAP_US);
    printf("targets: p99 < 5 ms at N=1000 (paced); heap per pending wait "
           "< 4096 B; CPU linear in N\n");
    static const int ns[] = {1, 100, 1000};
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
        run(ns[i], GAP_US);
    for (size_t i = 1; i < sizeof(ns) / sizeof(ns[0]); i++)
        run(ns[i], 0);
    return 0;
}
