/*
 * stubdm-ctl wait STUBDOM GUEST [--timeout S]
 *
 * Waits for the device model to report "running", showing the elapsed time
 * on a terminal, and exits with a code per cause.
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

struct wait_state {
    bool done;
    int rc;
};

static void on_done(stubdm_op *op, int rc, void *user)
{
    struct wait_state *s = user;
    (void)op;
    s->done = true;
    s->rc = rc;
}

static struct ctl_command cmd_wait;

static int run_wait(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                    char **argv)
{
    uint32_t stubdom, guest;
    int timeout_ms = 30000;
    struct wait_state st = {0};
    stubdm_op *op = NULL;
    const char *pos[2];
    int npos = 0, rc;
    int64_t start;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout")) {
            if (++i >= argc || !ctl_parse_seconds(argv[i], &timeout_ms))
                return ctl_usage_error(&cmd_wait, "--timeout needs seconds");
        } else if (npos < 2 && argv[i][0] != '-') {
            pos[npos++] = argv[i];
        } else {
            return ctl_usage_error(&cmd_wait, "unexpected argument '%s'",
                                   argv[i]);
        }
    }
    if (npos != 2 || !ctl_parse_domid(pos[0], &stubdom) ||
        !ctl_parse_domid(pos[1], &guest))
        return ctl_usage_error(&cmd_wait, "need STUBDOM and GUEST domids");

    start = stubdm_now_ms();
    rc = stubdm_wait_running(ctx, stubdom, guest, timeout_ms, on_done, &st,
                             &op);
    if (rc)
        return ctl_report_error(ctx, g, "wait", rc, NULL);
    while (!st.done) {
        if (ctl_interrupted())
            stubdm_op_cancel(op);
        /* Wake every 100 ms to refresh the elapsed time and notice signals;
         * the library itself is driven by its watches, not by this. */
        rc = stubdm_ctx_run_once(ctx, 100);
        if (rc) {
            stubdm_op_free(op);
            return ctl_report_error(ctx, g, "wait", rc, NULL);
        }
        if (g->tty && !st.done)
            fprintf(stderr,
                    "\rwaiting for stubdomain %u (guest %u): %.1f s / %.1f s ",
                    stubdom, guest, (stubdm_now_ms() - start) / 1000.0,
                    timeout_ms / 1000.0);
    }
    if (g->tty)
        fprintf(stderr, "\r\033[K");
    double elapsed = (stubdm_now_ms() - start) / 1000.0;
    if (st.rc) {
        int code = ctl_report_error(ctx, g, "wait", st.rc,
                                    stubdm_op_errmsg(op));
        stubdm_op_free(op);
        return code;
    }
    stubdm_op_free(op);
    if (g->json)
        printf("{\"ok\":true,\"command\":\"wait\",\"stubdom\":%u,\"guest\":%u,"
               "\"state\":\"running\",\"elapsed_s\":%.3f}\n",
               stubdom, guest, elapsed);
    else
        printf("stubdomain %u: device model for guest %u running after "
               "%.3f s\n",
               stubdom, guest, elapsed);
    return CTL_EXIT_OK;
}

CTL_COMMAND(cmd_wait) = {
    .name = "wait",
    .usage = "STUBDOM GUEST [--timeout S]",
    .summary = "wait until the device model reports \"running\"",
    .help = "Watches /local/domain/STUBDOM/device-model/GUEST/state until it\n"
            "reads \"running\", failing at once if the stubdomain dies.\n"
            "  --timeout S  give up after S seconds (default 30)\n"
            "Exit: 0 running, 3 timeout, 4 stubdomain gone, 5 xenstore,\n"
            "6 interrupted.\n",
    .run = run_wait,
};
