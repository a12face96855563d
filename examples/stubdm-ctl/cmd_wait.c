/*
 * stubdm-ctl wait STUBDOM GUEST [--timeout S]
 *
 * Waits for the device model to report "running", showing the elapsed time
 * on a terminal, and exits with a code per cause.
 */
#include "ctl.h"

struct wait_opts {
    int timeout_ms;
};

const struct ctl_option ctl_wait_options[] = {
    {"timeout", 0, CTL_ARG_SECONDS, offsetof(struct wait_opts, timeout_ms),
     "SECONDS", 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};

struct wait_state {
    const struct ctl_global *g;
    uint32_t stubdom, guest;
    int timeout_ms;
    int64_t start;
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

static void show_elapsed(void *user)
{
    const struct wait_state *s = user;

    if (s->g->tty)
        fprintf(stderr,
                "\rwaiting for stubdomain %u (guest %u): %.1f s / %.1f s ",
                s->stubdom, s->guest, (stubdm_now_ms() - s->start) / 1000.0,
                s->timeout_ms / 1000.0);
}

static int wait_running(stubdm_ctx *ctx, struct wait_state *st)
{
    stubdm_op *op = NULL;
    int code;
    int rc = stubdm_dm_wait_running(ctx, st->stubdom, st->guest,
                                    st->timeout_ms, on_done, st, &op);

    if (rc)
        return ctl_report_error(ctx, st->g, "wait", rc, NULL);
    code = ctl_run_until(ctx, st->g, "wait", op, &st->done, show_elapsed, st);
    if (st->g->tty)
        fprintf(stderr, "\r\033[K");
    if (!code && st->rc)
        code = ctl_report_error(ctx, st->g, "wait", st->rc,
                                stubdm_op_errmsg(op));
    stubdm_op_free(op);
    return code;
}

int ctl_wait_run(stubdm_ctx *ctx, const struct ctl_global *g,
                 const struct ctl_command *cmd, int argc, char **argv)
{
    struct wait_opts o = {.timeout_ms = 30000};
    struct wait_state st = {.g = g};
    struct ctl_args a;
    double elapsed;
    int rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a)))
        return rc;
    if (a.npos != 2 || a.nrest || !ctl_parse_domid(a.pos[0], &st.stubdom) ||
        !ctl_parse_domid(a.pos[1], &st.guest))
        return ctl_usage_error(cmd, "need STUBDOM and GUEST domids");
    st.timeout_ms = o.timeout_ms;
    st.start = stubdm_now_ms();
    if ((rc = wait_running(ctx, &st)))
        return rc;
    elapsed = (stubdm_now_ms() - st.start) / 1000.0;
    if (g->json)
        printf("{\"ok\":true,\"command\":\"wait\",\"stubdom\":%u,\"guest\":%u,"
               "\"state\":\"running\",\"elapsed_s\":%.3f}\n",
               st.stubdom, st.guest, elapsed);
    else
        printf("stubdomain %u: device model for guest %u running after "
               "%.3f s\n",
               st.stubdom, st.guest, elapsed);
    return CTL_EXIT_OK;
}

const char ctl_wait_help[] =
    "Watches /local/domain/STUBDOM/device-model/GUEST/state until it\n"
    "reads \"running\", failing at once if the stubdomain dies.\n"
    "  --timeout S  give up after S seconds (default 30)\n"
    "Exit: 0 running, 3 timeout, 4 stubdomain gone, 5 xenstore,\n"
    "6 interrupted.\n";
