/*
 * xt-qmp STUBDOM GUEST [-n N] COMMAND...: talk QMP to the QEMU in a
 * stubdomain through libstubdm's public API on a real Xen (libxenvchan
 * transport, no helper process).  Prints the open time, each reply, and the
 * median round trip of N repetitions of each command:
 *   open <ms> qemu <major>.<minor>.<micro>
 *   reply <command> <ms> <json>
 *   rtt <command> n=<N> median_ms=<x> min_ms=<y> max_ms=<z>
 * Exit: 0, or 1 with the library's message on stderr.
 */
#include <libstubdm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    stubdm_ctx *ctx;
    stubdm_qmp_opts *opts;
    stubdm_qmp *q = NULL;
    int n = 1, first = 3, rc, maj = 0, min = 0, mic = 0;
    int64_t t0;

    if (argc < 4) {
        fprintf(stderr, "usage: xt-qmp STUBDOM GUEST [-n N] COMMAND...\n");
        return 2;
    }
    if (!strcmp(argv[3], "-n") && argc > 5) {
        n = atoi(argv[4]);
        first = 5;
    }
    if (stubdm_ctx_new(&ctx) || stubdm_qmp_opts_new(&opts))
        return 1;
    stubdm_qmp_opts_set_transport(opts, STUBDM_QMP_TRANSPORT_VCHAN);
    stubdm_qmp_opts_set_open_timeout(opts, 30000);
    t0 = stubdm_now_ms();
    rc = stubdm_qmp_open_sync(ctx, (uint32_t)atoi(argv[1]),
                              (uint32_t)atoi(argv[2]), opts, &q);
    if (rc) {
        fprintf(stderr, "xt-qmp: open: %s (%s)\n", stubdm_ctx_errmsg(ctx),
                stubdm_errname(rc));
        return 1;
    }
    stubdm_qmp_qemu_version(q, &maj, &min, &mic);
    printf("open %lld qemu %d.%d.%d\n", (long long)(stubdm_now_ms() - t0), maj,
           min, mic);
    for (int i = first; i < argc; i++) {
        int64_t *t = calloc((size_t)n, sizeof(*t));
        for (int k = 0; k < n; k++) {
            char *reply = NULL;
            int64_t s = stubdm_now_ms();
            rc = stubdm_qmp_execute_sync(q, argv[i], NULL, 10000, &reply);
            t[k] = stubdm_now_ms() - s;
            if (rc) {
                fprintf(stderr, "xt-qmp: %s: %s (%s)\n", argv[i],
                        stubdm_ctx_errmsg(ctx), stubdm_errname(rc));
                free(reply);
                return 1;
            }
            if (k == 0)
                printf("reply %s %lld %s\n", argv[i], (long long)t[0], reply);
            free(reply);
        }
        qsort(t, (size_t)n, sizeof(*t), cmp);
        printf("rtt %s n=%d median_ms=%lld min_ms=%lld max_ms=%lld\n", argv[i],
               n, (long long)t[n / 2], (long long)t[0], (long long)t[n - 1]);
        free(t);
    }
    stubdm_qmp_free(q);
    stubdm_qmp_opts_free(opts);
    stubdm_ctx_free(ctx);
    return 0;
}
