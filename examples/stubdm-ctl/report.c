/*
 * Exit codes, error reports, JSON strings, signals and the op loop every
 * subcommand shares.
 */
#include "ctl.h"

#include <signal.h>
#include <stdarg.h>
#include <string.h>

int ctl_exit_code(int rc)
{
    switch (rc) {
    case STUBDM_OK:
        return CTL_EXIT_OK;
    case STUBDM_EFAIL:
    case STUBDM_ENOMEM:
    case STUBDM_ESTATE:
    case STUBDM_EBUFFERFULL:
    case STUBDM_ERECURSIVE:
        return CTL_EXIT_FAIL;
    case STUBDM_ETIMEDOUT:
        return CTL_EXIT_TIMEOUT;
    case STUBDM_EDOMAIN_GONE:
        return CTL_EXIT_DOMAIN_GONE;
    case STUBDM_EXENSTORE:
    case STUBDM_EPERM:
    case STUBDM_ENOENT:
        return CTL_EXIT_XENSTORE;
    case STUBDM_ECANCELED:
        return CTL_EXIT_INTERRUPTED;
    case STUBDM_EQMP:
        return CTL_EXIT_QMP_ERROR;
    case STUBDM_EPROTO:
    case STUBDM_EVCHAN:
        return CTL_EXIT_PROTOCOL;
    case STUBDM_EINVAL:
    case STUBDM_ELIMIT:
    case STUBDM_ENOTSTUBDOM:
        return CTL_EXIT_INVALID;
    case STUBDM_EBUSY:
        return CTL_EXIT_BUSY;
    case STUBDM_ENOTSUP:
    case STUBDM_EXEN:
        return CTL_EXIT_NOTSUP;
    default: /* a code newer than this program */
        return CTL_EXIT_FAIL;
    }
}

void ctl_json_string_n(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

void ctl_json_string(FILE *f, const char *s)
{
    ctl_json_string_n(f, s, strlen(s));
}

int ctl_report_error(stubdm_ctx *ctx, const struct ctl_global *g,
                     const char *what, int rc, const char *detail)
{
    const char *msg = detail && *detail                ? detail
                      : ctx && *stubdm_ctx_errmsg(ctx) ? stubdm_ctx_errmsg(ctx)
                                                       : stubdm_strerror(rc);
    int os = ctx ? stubdm_ctx_os_errno(ctx) : 0;

    if (g->json) {
        printf("{\"ok\":false,\"command\":");
        ctl_json_string(stdout, what);
        printf(",\"error\":");
        ctl_json_string(stdout, stubdm_errname(rc));
        printf(",\"message\":");
        ctl_json_string(stdout, msg);
        printf(",\"os_errno\":%d,\"exit\":%d}\n", os, ctl_exit_code(rc));
    } else {
        fprintf(stderr, "stubdm-ctl %s: %s (%s)\n", what, msg,
                stubdm_errname(rc));
    }
    return ctl_exit_code(rc);
}

int ctl_report_qmp_lost(stubdm_ctx *ctx, const struct ctl_global *g,
                        const char *what)
{
    return ctl_report_error(ctx, g, what, STUBDM_EVCHAN,
                            "QMP connection lost");
}

int ctl_usage_error(const struct ctl_command *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "stubdm-ctl%s%s: ", cmd ? " " : "", cmd ? cmd->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cmd)
        fprintf(stderr, "usage: stubdm-ctl %s %s\n", cmd->name, cmd->usage);
    return CTL_EXIT_USAGE;
}

int ctl_run_until(stubdm_ctx *ctx, const struct ctl_global *g,
                  const char *what, stubdm_op *op, const bool *done,
                  void (*tick)(void *), void *user)
{
    while (!*done) {
        if (ctl_interrupted())
            stubdm_op_cancel(op);
        /* Wake every 100 ms to notice signals and refresh progress; the
         * library itself is driven by its fds and timers, not by this. */
        int rc = stubdm_ctx_run_once(ctx, 100);
        if (rc)
            return ctl_report_error(ctx, g, what, rc, NULL);
        if (tick && !*done)
            tick(user);
    }
    return 0;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

void ctl_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool ctl_interrupted(void)
{
    return interrupted != 0;
}

void ctl_crash_point(const struct ctl_global *g, const char *line)
{
    if (g->crash_at && *g->crash_at && strstr(line, g->crash_at))
        raise(SIGKILL);
}
