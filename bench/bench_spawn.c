/*
 * bench_spawn: spawn -> running -> first QMP reply on the simulated host,
 * N = 1 and N = 50 concurrent in one ctx, with a real QEMU per stubdomain
 * (-machine none) and with the sim stubdomain's --no-qemu mode.
 *
 * Reports wall time (p50 over rounds for N = 1) and the library's own CPU
 * time: getrusage(RUSAGE_SELF) of this process, which runs only the
 * library (the mock xenstored, the sim stubdomains and the QEMUs are other
 * processes, not counted).
 *
 *   bench_spawn [ROUNDS]     (default 5)
 */
#include "xen/xs.h"
#include "mockxs.h"
#include "run.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MANY 50

static char sim_program[PATH_MAX];

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}

struct one {
    stubdm_stubdom *s;
    stubdm_op *cmd;
    bool spawned, replied;
    int rc;
};

static int *pending_ptr;

static void on_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    struct one *o = user;
    (void)q;
    (void)op;
    (void)r;
    o->replied = true;
    o->rc = rc;
    (*pending_ptr)--;
}

static void on_spawned(stubdm_op *op, int rc, void *user)
{
    struct one *o = user;
    o->spawned = true;
    if (rc) {
        fprintf(stderr, "bench_spawn: %s\n", stubdm_op_errmsg(op));
        o->rc = rc;
        (*pending_ptr)--;
        return;
    }
    rc = stubdm_qmp_execute(stubdm_stubdom_qmp(o->s), "query-status", NULL,
                            10000, on_reply, o, NULL);
    if (rc) {
        o->rc = rc;
        (*pending_ptr)--;
    }
}

/* Returns wall ms; adds the library's CPU ms to *cpu. */
static double round_once(stubdm_ctx *ctx, int n, bool qemu, double *cpu)
{
    static const char *const args_none[] = {"-machine",    "none",
                                            "-m",          "16",
                                            "-nodefaults", "-display",
                                            "none"};
    static const char *const noqemu[] = {"--no-qemu"};
    struct one *o = calloc((size_t)n, sizeof(*o));
    int pending = n;
    double c0 = cpu_ms(), wall;
    int64_t t0 = stubdm_now_ms();

    pending_ptr = &pending;
    for (int i = 0; i < n; i++) {
        stubdm_spawn_opts *c = NULL;
        stubdm_spawn_opts_new(&c);
        stubdm_spawn_opts_set_guest(c, 1000 + (uint32_t)i, NULL, NULL);
        stubdm_spawn_opts_set_args(c, args_none, 7);
        stubdm_spawn_opts_set_sim_program(c, sim_program, qemu ? NULL : noqemu,
                                          qemu ? 0 : 1);
        stubdm_spawn_opts_set_qmp(c, 1, 0);
        stubdm_spawn_opts_set_timeout(c, 120000);
        if (stubdm_spawn(ctx, c, NULL, on_spawned, &o[i], &o[i].s, NULL)) {
            fprintf(stderr, "bench_spawn: %s\n", stubdm_ctx_errmsg(ctx));
            exit(1);
        }
        stubdm_spawn_opts_free(c);
    }
    while (pending > 0)
        if (stubdm_ctx_run_once(ctx, 1000))
            exit(1);
    wall = (double)(stubdm_now_ms() - t0);
    *cpu += cpu_ms() - c0;
    for (int i = 0; i < n; i++) {
        if (o[i].rc) {
            fprintf(stderr, "bench_spawn: stubdomain %d failed: %s\n", i,
                    stubdm_errname(o[i].rc));
            exit(1);
        }
        stubdm_stubdom_destroy_sync(o[i].s);
        stubdm_stubdom_free(o[i].s);
    }
    free(o);
    return wall;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    struct mockxs m;
    stubdm_ctx *ctx;

    if (rounds < 1)
        rounds = 1;
    if (ts_exe_relative(sim_program, sizeof(sim_program),
                        "../tests/mock-xenstored/stubdm-sim-stubdom") ||
        access(sim_program, X_OK)) {
        fprintf(stderr, "bench_spawn: %s not built (STUBDM_BUILD_EXAMPLES)\n",
                sim_program);
        return 1;
    }
    if (mockxs_start(&m, NULL))
        return 1;
    setenv("XENSTORED_PATH", mockxs_socket(&m), 1);
    if (stubdm_ctx_new(&ctx))
        return 1;
    stubdm_ctx_set_host(ctx, STUBDM_HOST_SIM);

    printf("bench_spawn: spawn -> running -> first QMP reply, simulated host, "
           "%d rounds\n",
           rounds);
    printf("%-28s %12s %12s %16s\n", "case", "wall p50 ms", "wall max ms",
           "lib CPU ms/stub");
    for (int q = 1; q >= 0; q--) {
        for (int many = 0; many <= 1; many++) {
            int n = many ? MANY : 1;
            int r = many ? (rounds + 1) / 2 : rounds;
            double *w = calloc((size_t)r, sizeof(double)), cpu = 0;
            for (int i = 0; i < r; i++)
                w[i] = round_once(ctx, n, q, &cpu);
            qsort(w, (size_t)r, sizeof(double), cmp_double);
            char name[64];
            snprintf(name, sizeof(name), "N=%d %s", n,
                     q ? "real QEMU (-M none)" : "--no-qemu");
            printf("%-28s %12.1f %12.1f %16.3f\n", name, w[r / 2], w[r - 1],
                   cpu / (double)(r * n));
            free(w);
        }
    }
    printf("xenstore requests by the library: %" PRIu64 "\n",
           stubdm__xs_requests(ctx));
    stubdm_ctx_free(ctx);
    return mockxs_stop(&m) ? 1 : 0;
}
