/*
 * dm-argv writing cost: xenstore requests and wall time (median of 15
 * runs) for 10, 100 and 999 arguments, against the mock xenstored through
 * the real libxenstore.  Prints figures; no pass/fail.
 */
#include "core/mem.h"
#include "xen/xs.h"
#include "mockxs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 15
#define VM "/vm/00000000-0000-0000-0000-000000000001"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    static const size_t sizes[] = {10, 100, 999};
    static const unsigned doms[] = {5};
    struct mockxs_opts o = {.domids = doms, .n_domids = 1};
    struct mockxs m;
    stubdm_ctx *ctx;
    char **args = calloc(STUBDM_DM_ARGV_MAX_ARGS, sizeof(*args));
    int status = 0;

    if (!args || mockxs_start(&m, &o)) {
        perror("mock xenstored");
        return 1;
    }
    setenv("XENSTORED_PATH", mockxs_socket(&m), 1);
    if (stubdm_ctx_new(&ctx))
        return 1;
    for (size_t i = 0; i < STUBDM_DM_ARGV_MAX_ARGS; i++)
        args[i] = stubdm__sprintf("-device-option-%zu=some,value", i);
    printf("%6s %10s %8s %12s\n", "args", "requests", "N+k", "median ms");
    for (size_t s = 0; s < 3; s++) {
        double t[RUNS];
        uint64_t req = 0;
        for (int r = 0; r < RUNS; r++) {
            uint64_t before = stubdm__xs_requests(ctx);
            double t0 = now_ms();
            int rc = stubdm_dm_argv_write(ctx, VM, 5, STUBDM_DM_ARGV_DIRECTORY,
                                          0, (const char *const *)args,
                                          sizes[s]);
            t[r] = now_ms() - t0;
            if (rc) {
                fprintf(stderr, "write failed: %s\n", stubdm_ctx_errmsg(ctx));
                status = 1;
                break;
            }
            req = stubdm__xs_requests(ctx) - before;
        }
        qsort(t, RUNS, sizeof(t[0]), cmp_double);
        printf("%6zu %10llu %5zu+%-2llu %12.3f\n", sizes[s],
               (unsigned long long)req, sizes[s],
               (unsigned long long)(req - sizes[s]), t[RUNS / 2]);
    }
    for (size_t i = 0; i < STUBDM_DM_ARGV_MAX_ARGS; i++)
        free(args[i]);
    free(args);
    stubdm_ctx_free(ctx);
    mockxs_stop(&m);
    return status;
}
