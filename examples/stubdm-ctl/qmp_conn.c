/*
 * The QMP connection options and open, shared by `qmp` and `qmp-proxy`.
 */
#include "qmp_conn.h"

#include <errno.h>
#include <poll.h>

static const struct ctl_choice transports[] = {
    {"auto", STUBDM_QMP_TRANSPORT_AUTO},
    {"vchan", STUBDM_QMP_TRANSPORT_VCHAN},
    {"sim", STUBDM_QMP_TRANSPORT_SIMULATED},
    {"simulated", STUBDM_QMP_TRANSPORT_SIMULATED},
    {NULL, 0},
};

#define O(field) offsetof(struct qmp_args, field)
const struct ctl_option ctl_qmp_conn_options[] = {
    {"timeout", 0, CTL_ARG_SECONDS, O(timeout_ms), "SECONDS", 0, 0, NULL,
     NULL},
    {"open-timeout", 0, CTL_ARG_SECONDS, O(open_timeout_ms), "SECONDS", 0, 0,
     NULL, NULL},
    {"transport", 0, CTL_ARG_CHOICE, O(transport), "transport", 0, 0,
     transports, NULL},
    {"sim-dir", 0, CTL_ARG_STRING, O(sim_dir), "DIR", 0, 0, NULL, NULL},
    {"lock-wait", 0, CTL_ARG_FLAG, O(lock_wait), NULL, 0, 0, NULL, NULL},
    {"reconnect-marker", 0, CTL_ARG_FLAG, O(marker), NULL, 0, 0, NULL, NULL},
    {"oob", 0, CTL_ARG_FLAG, O(oob), NULL, 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

int ctl_qmp_domids(const struct ctl_command *cmd, const struct ctl_args *p,
                   struct qmp_args *a)
{
    if (p->npos < 2 || !ctl_parse_domid(p->pos[0], &a->stubdom) ||
        !ctl_parse_domid(p->pos[1], &a->guest))
        return ctl_usage_error(cmd, "need STUBDOM and GUEST domids");
    return 0;
}

int ctl_qmp_open(stubdm_ctx *ctx, const struct ctl_global *g,
                 const struct qmp_args *a, const char *what, stubdm_qmp **q)
{
    stubdm_qmp_opts *o = NULL;
    int rc = stubdm_qmp_opts_new(&o);

    /* Only what was asked for: the rest is the library's default. */
    if (!rc && a->transport != CTL_UNSET_CHOICE)
        rc = stubdm_qmp_opts_set_transport(o,
                                           (stubdm_qmp_transport)a->transport);
    if (!rc && a->sim_dir)
        rc = stubdm_qmp_opts_set_sim_dir(o, a->sim_dir);
    if (!rc && a->open_timeout_ms)
        rc = stubdm_qmp_opts_set_open_timeout(o, a->open_timeout_ms);
    if (!rc && a->marker)
        rc = stubdm_qmp_opts_set_reconnect_marker(o, 1);
    if (!rc && a->oob)
        rc = stubdm_qmp_opts_set_oob(o, 1);
    if (!rc && a->lock_wait)
        rc = stubdm_qmp_opts_set_lock(o, NULL, STUBDM_QMP_LOCK_WAIT);
    if (!rc)
        rc = stubdm_qmp_open_sync(ctx, a->stubdom, a->guest, o, q);
    stubdm_qmp_opts_free(o);
    return rc ? ctl_report_error(ctx, g, what, rc, NULL) : 0;
}

int ctl_qmp_loop_once(stubdm_ctx *ctx, bool with_stdin, bool *stdin_ready,
                      int max_ms)
{
    struct pollfd fds[64];
    size_t n = sizeof(fds) / sizeof(fds[0]) - 1;
    int timeout, rc;

    *stdin_ready = false;
    rc = stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout);
    if (rc)
        return rc;
    if (timeout < 0 || timeout > max_ms)
        timeout = max_ms;
    if (with_stdin) {
        fds[n].fd = 0;
        fds[n].events = POLLIN;
        fds[n].revents = 0;
    }
    if (poll(fds, n + (with_stdin ? 1 : 0), timeout) < 0 && errno != EINTR)
        return STUBDM_EFAIL;
    if (with_stdin && fds[n].revents)
        *stdin_ready = true;
    return stubdm_ctx_poll_dispatch(ctx, fds, n);
}

int ctl_qmp_follow(stubdm_ctx *ctx, const struct ctl_global *g, stubdm_qmp *q,
                   const char *what)
{
    while (!ctl_interrupted() && stubdm_qmp_is_ready(q)) {
        int rc = stubdm_ctx_run_once(ctx, 200);
        if (rc)
            return ctl_report_error(ctx, g, what, rc, NULL);
    }
    return ctl_interrupted() ? CTL_EXIT_OK : ctl_report_qmp_lost(ctx, g, what);
}
