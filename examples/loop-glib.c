/*
 * Example: wait for a stubdomain's device model from a GLib main loop.
 *   loop-glib-example STUBDOM GUEST TIMEOUT_MS
 */
#include "adapters/stubdm-glib.h"

#include <stdio.h>
#include <stdlib.h>

struct state {
    GMainLoop *loop;
    int rc;
};

static void on_running(stubdm_op *op, int rc, void *user)
{
    struct state *s = user;
    s->rc = rc;
    if (rc)
        fprintf(stderr, "wait failed: %s\n", stubdm_op_errmsg(op));
    g_main_loop_quit(s->loop);
}

int main(int argc, char **argv)
{
    stubdm_ctx *ctx;
    struct stubdm_glib *a;
    struct state s = {NULL, 1};

    if (argc != 4) {
        fprintf(stderr, "usage: %s STUBDOM GUEST TIMEOUT_MS\n", argv[0]);
        return 2;
    }
    if (stubdm_ctx_new(&ctx))
        return 1;
    s.loop = g_main_loop_new(NULL, FALSE);
    a = stubdm_glib_attach(ctx, NULL);
    if (!a || stubdm_dm_wait_running(ctx, (uint32_t)atoi(argv[1]),
                                     (uint32_t)atoi(argv[2]), atoi(argv[3]),
                                     on_running, &s, NULL)) {
        fprintf(stderr, "%s\n", stubdm_ctx_errmsg(ctx));
        return 1;
    }
    g_main_loop_run(s.loop);
    stubdm_glib_detach(a);
    stubdm_ctx_free(ctx);
    g_main_loop_unref(s.loop);
    printf("%s\n", stubdm_errname(s.rc));
    return s.rc ? 1 : 0;
}
