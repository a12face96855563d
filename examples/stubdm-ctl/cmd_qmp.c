/*
 * stubdm-ctl qmp STUBDOM GUEST [COMMAND [JSON-ARGS]] [options]
 * stubdm-ctl qmp-proxy STUBDOM GUEST --listen PATH [options]
 *
 * One-shot commands, a small interactive shell, an event follower, and the
 * multiplexing proxy, all over the library's single QMP connection.
 */
#include "ctl.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct qmp_args {
    uint32_t stubdom, guest;
    const char *command, *args, *listen;
    int timeout_ms, open_timeout_ms;
    bool interactive, events, lock_wait, marker, oob;
    stubdm_qmp_transport transport;
    const char *sim_dir;
    const char *group; /* qmp-proxy --group */
};

static int parse_common(const struct ctl_command *cmd, int argc, char **argv,
                        struct qmp_args *a, bool proxy)
{
    const char *pos[4];
    int npos = 0;

    memset(a, 0, sizeof(*a));
    a->timeout_ms = 10000;
    a->open_timeout_ms = STUBDM_QMP_DEFAULT_OPEN_TIMEOUT_MS;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--timeout") || !strcmp(o, "--open-timeout")) {
            int *dst = o[2] == 't' ? &a->timeout_ms : &a->open_timeout_ms;
            if (++i >= argc || !ctl_parse_seconds(argv[i], dst))
                return ctl_usage_error(cmd, "%s needs seconds", o);
        } else if (!strcmp(o, "--transport")) {
            if (++i >= argc)
                return ctl_usage_error(cmd, "--transport needs a value");
            if (!strcmp(argv[i], "auto"))
                a->transport = STUBDM_QMP_TRANSPORT_AUTO;
            else if (!strcmp(argv[i], "vchan"))
                a->transport = STUBDM_QMP_TRANSPORT_VCHAN;
            else if (!strcmp(argv[i], "sim") || !strcmp(argv[i], "simulated"))
                a->transport = STUBDM_QMP_TRANSPORT_SIMULATED;
            else
                return ctl_usage_error(cmd, "--transport auto|vchan|sim");
        } else if (!strcmp(o, "--sim-dir")) {
            if (++i >= argc)
                return ctl_usage_error(cmd, "--sim-dir needs a directory");
            a->sim_dir = argv[i];
        } else if (!strcmp(o, "--lock-wait")) {
            a->lock_wait = true;
        } else if (!strcmp(o, "--reconnect-marker")) {
            a->marker = true;
        } else if (!strcmp(o, "--oob")) {
            a->oob = true;
        } else if (!proxy && !strcmp(o, "--interactive")) {
            a->interactive = true;
        } else if (!proxy && !strcmp(o, "--events")) {
            a->events = true;
        } else if (proxy && !strcmp(o, "--group")) {
            if (++i >= argc)
                return ctl_usage_error(cmd, "--group needs a group name or "
                                            "gid");
            a->group = argv[i];
        } else if (proxy && !strcmp(o, "--listen")) {
            if (++i >= argc)
                return ctl_usage_error(cmd, "--listen needs a socket path");
            a->listen = argv[i];
        } else if (o[0] != '-' || (npos >= 3 && o[0] == '{')) {
            if (npos >= 4)
                return ctl_usage_error(cmd, "too many arguments");
            pos[npos++] = o;
        } else {
            return ctl_usage_error(cmd, "unknown option '%s'", o);
        }
    }
    if (npos < 2 || !ctl_parse_domid(pos[0], &a->stubdom) ||
        !ctl_parse_domid(pos[1], &a->guest))
        return ctl_usage_error(cmd, "need STUBDOM and GUEST domids");
    if (proxy) {
        if (npos != 2 || !a->listen)
            return ctl_usage_error(cmd, "need --listen PATH");
        return 0;
    }
    a->command = npos > 2 ? pos[2] : NULL;
    a->args = npos > 3 ? pos[3] : NULL;
    if (!a->command && !a->interactive && !a->events)
        return ctl_usage_error(cmd, "need a COMMAND, --interactive or "
                                    "--events");
    return 0;
}

static int open_qmp(stubdm_ctx *ctx, const struct ctl_global *g,
                    const struct qmp_args *a, const char *what,
                    stubdm_qmp **q)
{
    stubdm_qmp_opts *o = NULL;
    int rc = stubdm_qmp_opts_new(&o);

    if (!rc)
        rc = stubdm_qmp_opts_set_transport(o, a->transport);
    if (!rc && a->sim_dir)
        rc = stubdm_qmp_opts_set_sim_dir(o, a->sim_dir);
    if (!rc)
        rc = stubdm_qmp_opts_set_open_timeout(o, a->open_timeout_ms);
    if (!rc)
        rc = stubdm_qmp_opts_set_reconnect_marker(o, a->marker);
    if (!rc)
        rc = stubdm_qmp_opts_set_oob(o, a->oob);
    if (!rc && a->lock_wait)
        rc = stubdm_qmp_opts_set_lock(o, NULL, STUBDM_QMP_LOCK_WAIT);
    if (!rc)
        rc = stubdm_qmp_open_sync(ctx, a->stubdom, a->guest, o, q);
    stubdm_qmp_opts_free(o);
    return rc ? ctl_report_error(ctx, g, what, rc, NULL) : 0;
}

/* ---- replies ------------------------------------------------------------- */

struct pending {
    bool done;
    int rc;
    const struct ctl_global *g;
    stubdm_ctx *ctx;
    int exit_code;
};

static void on_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    struct pending *p = user;
    (void)q;

    p->done = true;
    p->rc = rc;
    if (rc == 0) {
        const char *ret = stubdm_qmp_reply_return_json(r);
        if (p->g->json) {
            printf("{\"ok\":true,\"command\":\"qmp\",\"return\":%s}\n",
                   ret ? ret : "null");
        } else {
            printf("%s\n", ret ? ret : "null");
        }
        p->exit_code = CTL_EXIT_OK;
    } else if (rc == STUBDM_EQMP) {
        const char *cls = stubdm_qmp_reply_error_class(r);
        const char *desc = stubdm_qmp_reply_error_desc(r);
        if (p->g->json) {
            printf("{\"ok\":false,\"command\":\"qmp\",\"error\":"
                   "\"STUBDM_EQMP\",\"class\":");
            ctl_json_string(stdout, cls);
            printf(",\"desc\":");
            ctl_json_string(stdout, desc);
            printf(",\"exit\":%d}\n", CTL_EXIT_QMP_ERROR);
        } else {
            fprintf(stderr, "QMP error %s: %s\n", cls, desc);
        }
        p->exit_code = CTL_EXIT_QMP_ERROR;
    } else {
        p->exit_code = ctl_report_error(p->ctx, p->g, "qmp", rc,
                                        stubdm_op_errmsg(op));
    }
    fflush(stdout);
}

static void on_event(stubdm_qmp *q, const stubdm_qmp_event *ev, void *user)
{
    const struct ctl_global *g = user;
    (void)q;
    if (g->json)
        printf("{\"event\":%s}\n", stubdm_qmp_event_json(ev));
    else
        printf("%s\n", stubdm_qmp_event_json(ev));
    fflush(stdout);
}

/* One loop iteration over the library's fds plus, optionally, stdin. */
static int loop_once(stubdm_ctx *ctx, bool with_stdin, bool *stdin_ready,
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

static int exec_and_wait(stubdm_ctx *ctx, const struct ctl_global *g,
                         stubdm_qmp *q, const char *cmd, const char *args,
                         int timeout_ms)
{
    struct pending p = {.g = g, .ctx = ctx};
    stubdm_op *op = NULL;
    bool dummy;
    int rc = stubdm_qmp_execute(q, cmd, args, timeout_ms, on_reply, &p, &op);

    if (rc)
        return ctl_report_error(ctx, g, "qmp", rc, NULL);
    while (!p.done) {
        if (ctl_interrupted())
            stubdm_op_cancel(op);
        rc = loop_once(ctx, false, &dummy, 100);
        if (rc) {
            stubdm_op_free(op);
            return ctl_report_error(ctx, g, "qmp", rc, NULL);
        }
    }
    stubdm_op_free(op);
    return p.exit_code;
}

static int interactive(stubdm_ctx *ctx, const struct ctl_global *g,
                       stubdm_qmp *q, int timeout_ms)
{
    char line[65536];
    int last = CTL_EXIT_OK;
    bool ready;

    if (isatty(0))
        fprintf(stderr, "QMP shell: COMMAND [JSON-ARGS], 'quit' or EOF to "
                        "leave\n(qmp) ");
    for (;;) {
        if (ctl_interrupted())
            return CTL_EXIT_INTERRUPTED;
        if (loop_once(ctx, true, &ready, 200))
            return CTL_EXIT_FAIL;
        if (!ready)
            continue;
        if (!fgets(line, sizeof(line), stdin))
            return last;
        line[strcspn(line, "\r\n")] = '\0';
        char *cmd = line + strspn(line, " \t");
        if (!*cmd)
            goto prompt;
        if (!strcmp(cmd, "quit") || !strcmp(cmd, "exit"))
            return last;
        char *args = cmd + strcspn(cmd, " \t");
        if (*args) {
            *args++ = '\0';
            args += strspn(args, " \t");
        }
        last = exec_and_wait(ctx, g, q, cmd, *args ? args : NULL, timeout_ms);
        if (!stubdm_qmp_is_ready(q))
            return last;
    prompt:
        if (isatty(0))
            fprintf(stderr, "(qmp) ");
    }
}

static struct ctl_command cmd_qmp, cmd_qmp_proxy;

static int run_qmp(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                   char **argv)
{
    struct qmp_args a;
    stubdm_qmp *q = NULL;
    int code;
    bool dummy;

    if ((code = parse_common(&cmd_qmp, argc, argv, &a, false)))
        return code;
    ctl_signals_install();
    if ((code = open_qmp(ctx, g, &a, "qmp", &q)))
        return code;
    if (a.events)
        stubdm_qmp_subscribe(q, NULL, on_event, (void *)g, NULL);
    if (a.command)
        code = exec_and_wait(ctx, g, q, a.command, a.args, a.timeout_ms);
    if (a.interactive)
        code = interactive(ctx, g, q, a.timeout_ms);
    else if (a.events) {
        /* Follow until interrupted or the connection is lost. */
        while (!ctl_interrupted() && stubdm_qmp_is_ready(q))
            if (loop_once(ctx, false, &dummy, 200))
                break;
        if (!stubdm_qmp_is_ready(q) && !ctl_interrupted())
            code = ctl_report_error(ctx, g, "qmp", STUBDM_EVCHAN,
                                    "QMP connection lost");
    }
    stubdm_qmp_close(q);
    return code;
}

static int run_qmp_proxy(stubdm_ctx *ctx, const struct ctl_global *g,
                         int argc, char **argv)
{
    struct qmp_args a;
    stubdm_qmp *q = NULL;
    stubdm_qmp_proxy *p = NULL;
    int code, rc;
    bool dummy;

    if ((code = parse_common(&cmd_qmp_proxy, argc, argv, &a, true)))
        return code;
    ctl_signals_install();
    if ((code = open_qmp(ctx, g, &a, "qmp-proxy", &q)))
        return code;
    rc = stubdm_qmp_proxy_new(q, a.listen, a.timeout_ms, &p);
    if (!rc && a.group) {
        struct group *gr = getgrnam(a.group);
        char *end;
        unsigned long gid = gr ? (unsigned long)gr->gr_gid
                               : strtoul(a.group, &end, 10);
        if (!gr && (!*a.group || *end || gid >= UINT32_MAX)) {
            stubdm_qmp_proxy_free(p);
            stubdm_qmp_close(q);
            return ctl_usage_error(&cmd_qmp_proxy, "--group: no group '%s'",
                                   a.group);
        }
        rc = stubdm_qmp_proxy_allow_group(p, (uint32_t)gid);
        if (rc) {
            stubdm_qmp_proxy_free(p);
            p = NULL;
        }
    }
    if (rc) {
        code = ctl_report_error(ctx, g, "qmp-proxy", rc, NULL);
        stubdm_qmp_close(q);
        return code;
    }
    if (g->json)
        printf("{\"ok\":true,\"command\":\"qmp-proxy\",\"listen\":");
    if (g->json) {
        ctl_json_string(stdout, a.listen);
        printf("}\n");
    } else {
        fprintf(stderr, "qmp-proxy: stubdomain %u guest %u, listening on %s\n",
                a.stubdom, a.guest, a.listen);
    }
    fflush(stdout);
    while (!ctl_interrupted() && stubdm_qmp_is_ready(q))
        if (loop_once(ctx, false, &dummy, 200))
            break;
    code = ctl_interrupted() ? CTL_EXIT_OK
                             : ctl_report_error(ctx, g, "qmp-proxy",
                                                STUBDM_EVCHAN,
                                                "QMP connection lost");
    stubdm_qmp_proxy_free(p);
    stubdm_qmp_close(q);
    return code;
}

#define COMMON_HELP                                                           \
    "  --timeout S          per-command timeout (default 10)\n"              \
    "  --open-timeout S     connect + greeting + negotiation (default 10)\n" \
    "  --transport T        auto (default), vchan or sim\n"                  \
    "  --sim-dir DIR        simulated host runtime directory\n"              \
    "  --lock-wait          wait for another client's lock instead of\n"     \
    "                       failing with exit 10\n"                          \
    "  --reconnect-marker   send Qubes' 0x01 marker first\n"                 \
    "  --oob                enable out-of-band execution if offered\n"

CTL_COMMAND(cmd_qmp) = {
    .name = "qmp",
    .usage = "STUBDOM GUEST [COMMAND [JSON-ARGS]] [--interactive] [--events] "
             "[options]",
    .summary = "run QMP commands on the QEMU in a stubdomain",
    .help = "Runs COMMAND with JSON-ARGS (an object) and prints QEMU's return\n"
            "value as JSON, or the error class and description on stderr\n"
            "(exit 7).\n"
            "  --interactive        read 'COMMAND [JSON-ARGS]' lines from stdin\n"
            "  --events             print events as JSON lines until SIGINT\n"
            COMMON_HELP
            "Exit: 0 ok, 3 timeout, 4 stubdomain gone, 7 QMP error, 8 channel\n"
            "or protocol failure, 9 invalid input, 10 QMP busy.\n",
    .run = run_qmp,
};

CTL_COMMAND(cmd_qmp_proxy) = {
    .name = "qmp-proxy",
    .usage = "STUBDOM GUEST --listen PATH [--group GROUP] [options]",
    .summary = "share one stubdomain QMP connection with local clients",
    .help = "Holds the stubdomain's single QMP connection and serves any\n"
            "number of QMP clients on the unix socket PATH, each with its own\n"
            "greeting, negotiation and id space; events go to all.  Runs until\n"
            "SIGINT or SIGTERM.  The socket is mode 0600; clients are\n"
            "identified by their credentials, and only root and this user\n"
            "are served (others are refused and logged).\n"
            "  --group GROUP        also serve GROUP's members (name or gid;\n"
            "                       the socket becomes 0660, group GROUP)\n"
            COMMON_HELP,
    .run = run_qmp_proxy,
};
