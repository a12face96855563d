/*
 * Example: wait for a stubdomain's device model from an epoll loop.
 *   loop-epoll-example STUBDOM GUEST TIMEOUT_MS
 */
#include "adapters/stubdm-epoll.h"

#include <stdio.h>
#include <stdlib.h>

static void on_running(stubdm_op *op, int rc, void *user)
{
    int *result = user;
    *result = rc;
    if (rc)
        fprintf(stderr, "wait failed: %s\n", stubdm_op_errmsg(op));
}

int main(int argc, char **argv)
{
    stubdm_ctx *ctx;
    struct stubdm_epoll ep;
    int result = 1;

    if (argc != 4) {
        fprintf(stderr, "usage: %s STUBDOM GUEST TIMEOUT_MS\n", argv[0]);
        return 2;
    }
    if (stubdm_ctx_new(&ctx) || stubdm_epoll_attach(&ep, ctx))
        return 1;
    if (stubdm_dm_wait_running(ctx, (uint32_t)atoi(argv[1]),
                               (uint32_t)atoi(argv[2]), atoi(argv[3]),
                               on_running, &result, NULL)) {
        fprintf(stderr, "%s\n", stubdm_ctx_errmsg(ctx));
        return 1;
    }
    while (result == 1)
        if (stubdm_epoll_run_once(&ep, -1))
            break;
    stubdm_epoll_detach(&ep);
    stubdm_ctx_free(ctx);
    printf("%s\n", stubdm_errname(result));
    return result ? 1 : 0;
}
