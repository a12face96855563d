/*
 * stubdm-ctl qmp STUBDOM GUEST [COMMAND [JSON-ARGS]] [options]
 *
 * One-shot commands, a small interactive shell and an event follower, over
 * the library's single QMP connection.
 */
#include "qmp_conn.h"

#include <string.h>
#include <unistd.h>

#define O(field) offsetof(struct qmp_args, field)
const struct ctl_option ctl_qmp_options[] = {
    {"interactive", 0, CTL_ARG_FLAG, O(interactive), NULL, 0, 0, NULL, NULL},
    {"events", 0, CTL_ARG_FLAG, O(events), NULL, 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, ctl_qmp_conn_options},
};
#undef O

/* ---- replies ------------------------------------------------------------ */

struct pending {
    bool done;
    const struct ctl_global *g;
    stubdm_ctx *ctx;
    int exit_code;
};

static void print_qmp_error(const struct ctl_global *g,
                            const stubdm_qmp_reply *r)
{
    const char *cls = stubdm_qmp_reply_error_class(r);
    const char *desc = stubdm_qmp_reply_error_desc(r);

    if (!g->json) {
        fprintf(stderr, "QMP error %s: %s\n", cls, desc);
        return;
    }
    printf("{\"ok\":false,\"command\":\"qmp\",\"error\":"
           "\"STUBDM_EQMP\",\"class\":");
    ctl_json_string(stdout, cls);
    printf(",\"desc\":");
    ctl_json_string(stdout, desc);
    printf(",\"exit\":%d}\n", CTL_EXIT_QMP_ERROR);
}

static void on_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    struct pending *p = user;
    (void)q;

    p->done = true;
    if (rc == 0) {
        const char *ret = stubdm_qmp_reply_return_json(r);
        if (p->g->json)
            printf("{\"ok\":true,\"command\":\"qmp\",\"return\":%s}\n",
                   ret ? ret : "null");
        else
            printf("%s\n", ret ? ret : "null");
        p->exit_code = CTL_EXIT_OK;
    } else if (rc == STUBDM_EQMP) {
        print_qmp_error(p->g, r);
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

static int exec_and_wait(stubdm_ctx *ctx, const struct ctl_global *g,
                         stubdm_qmp *q, const char *cmd, const char *args,
                         int timeout_ms)
{
    struct pending p = {.g = g, .ctx = ctx};
    stubdm_op *op = NULL;
    int rc = stubdm_qmp_execute(q, cmd, args, timeout_ms, on_reply, &p, &op);

    /* Not ready: the connection was lost since it opened. */
    if (rc == STUBDM_ESTATE && !stubdm_qmp_is_ready(q))
        return ctl_report_qmp_lost(ctx, g, "qmp");
    if (rc)
        return ctl_report_error(ctx, g, "qmp", rc, NULL);
    rc = ctl_run_until(ctx, g, "qmp", op, &p.done, NULL, NULL);
    stubdm_op_free(op);
    return rc ? rc : p.exit_code;
}

/* A shell line "COMMAND [JSON-ARGS]": split in place; false if empty. */
static bool split_line(char *line, char **cmd, char **args)
{
    line[strcspn(line, "\r\n")] = '\0';
    *cmd = line + strspn(line, " \t");
    if (!**cmd)
        return false;
    *args = *cmd + strcspn(*cmd, " \t");
    if (**args) {
        *(*args)++ = '\0';
        *args += strspn(*args, " \t");
    }
    return true;
}

static int interactive(stubdm_ctx *ctx, const struct ctl_global *g,
                       stubdm_qmp *q, int timeout_ms)
{
    char line[65536], *cmd, *args;
    int last = CTL_EXIT_OK, rc;
    bool ready;

    if (isatty(0))
        fprintf(stderr, "QMP shell: COMMAND [JSON-ARGS], 'quit' or EOF to "
                        "leave\n(qmp) ");
    for (;;) {
        if (ctl_interrupted())
            return CTL_EXIT_INTERRUPTED;
        if ((rc = ctl_qmp_loop_once(ctx, true, &ready, 200)))
            return ctl_report_error(ctx, g, "qmp", rc, NULL);
        if (!ready)
            continue;
        if (!fgets(line, sizeof(line), stdin))
            return last;
        if (split_line(line, &cmd, &args)) {
            if (!strcmp(cmd, "quit") || !strcmp(cmd, "exit"))
                return last;
            last = exec_and_wait(ctx, g, q, cmd, *args ? args : NULL,
                                 timeout_ms);
            if (!stubdm_qmp_is_ready(q))
                return last;
        }
        if (isatty(0))
            fprintf(stderr, "(qmp) ");
    }
}

int ctl_qmp_run(stubdm_ctx *ctx, const struct ctl_global *g,
                const struct ctl_command *cmd, int argc, char **argv)
{
    struct qmp_args a = QMP_ARGS_DEFAULTS;
    struct ctl_args p;
    stubdm_qmp *q = NULL;
    const char *command, *json;
    int code;

    if ((code = ctl_parse(cmd, cmd->options, argc, argv, false, &a, &p)) ||
        (code = ctl_qmp_domids(cmd, &p, &a)))
        return code;
    if (p.nrest)
        return ctl_usage_error(cmd, "unexpected argument '%s'", p.rest[0]);
    command = p.npos > 2 ? p.pos[2] : NULL;
    json = p.npos > 3 ? p.pos[3] : NULL;
    if (!command && !a.interactive && !a.events)
        return ctl_usage_error(cmd, "need a COMMAND, --interactive or "
                                    "--events");
    if ((code = ctl_qmp_open(ctx, g, &a, "qmp", &q)))
        return code;
    if (a.events)
        stubdm_qmp_subscribe(q, NULL, on_event, (void *)g, NULL);
    if (command)
        code = exec_and_wait(ctx, g, q, command, json, a.timeout_ms);
    if (a.interactive) {
        code = interactive(ctx, g, q, a.timeout_ms);
    } else if (a.events) {
        int lost = ctl_qmp_follow(ctx, g, q, "qmp");
        if (lost)
            code = lost;
    }
    stubdm_qmp_free(q);
    return code;
}

const char ctl_qmp_help[] =
    "Runs COMMAND with JSON-ARGS (an object) and prints QEMU's return\n"
    "value as JSON, or the error class and description on stderr\n"
    "(exit 7).\n"
    "  --interactive        read 'COMMAND [JSON-ARGS]' lines from stdin\n"
    "  --events             print events as JSON lines until "
    "SIGINT\n" CTL_QMP_CONN_HELP
    "Exit: 0 ok, 3 timeout, 4 stubdomain gone, 7 QMP error, 8 channel\n"
    "or protocol failure (the QMP connection lost), 9 invalid input,\n"
    "10 QMP busy.\n";
