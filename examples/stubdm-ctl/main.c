/*
 * stubdm-ctl: drive libstubdm from the command line.
 *
 *   stubdm-ctl [--json] [-v] COMMAND [ARGS...]
 *
 * Every subcommand is in its own cmd_*.c file; see stubdm-ctl(1).
 */
#include "ctl.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ctl_command *commands;

/* cmd_sim.c: use a running simulated host when there is no Xen. */
int ctl_sim_prepare(stubdm_ctx *ctx, bool force_sim);

void ctl_register(struct ctl_command *cmd)
{
    /* Keep the list sorted by name so --help is stable. */
    struct ctl_command **p = &commands;
    while (*p && strcmp((*p)->name, cmd->name) < 0)
        p = &(*p)->next;
    cmd->next = *p;
    *p = cmd;
}

int ctl_exit_code(int rc)
{
    switch (rc) {
    case STUBDM_OK:
        return CTL_EXIT_OK;
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
    default:
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
    const char *msg = detail && *detail ? detail
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

int ctl_usage_error(const struct ctl_command *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "stubdm-ctl %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: stubdm-ctl %s %s\n", cmd->name, cmd->usage);
    return CTL_EXIT_USAGE;
}

bool ctl_parse_domid(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v;

    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > 0x7FEF)
        return false;
    *out = (uint32_t)v;
    return true;
}

bool ctl_parse_seconds(const char *s, int *ms_out)
{
    char *end;
    double v;

    if (!s || !*s)
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v > 0) || v > 86400.0 * 24)
        return false;
    *ms_out = (int)(v * 1000.0 + 0.5);
    return *ms_out > 0;
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

static void log_to_stderr(void *user, stubdm_log_level level, int os_errno,
                          const char *context, const char *msg)
{
    fprintf(stderr, "libstubdm[%s] %d: %s%s%s\n", context, (int)level, msg,
            os_errno ? ": " : "", os_errno ? strerror(os_errno) : "");
    ctl_crash_point(user, msg);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: stubdm-ctl [--json] [-v] [--sim] [--no-hotplug] COMMAND "
            "[ARGS...]\n"
            "       stubdm-ctl COMMAND --help\n\n"
            "Drive Xen device-model stubdomains with libstubdm %s.\n\n"
            "Commands:\n",
            stubdm_version());
    for (struct ctl_command *c = commands; c; c = c->next)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nOptions:\n"
               "  --json     machine-readable output on stdout\n"
               "  -v         library debug log on stderr\n"
               "  --sim      use the simulated host (stubdm-ctl sim start)\n"
               "  --no-hotplug  run no disk/nic hotplug scripts (spawn,\n"
               "             destroy): another toolstack or udev runs them\n"
               "  --version  print the library version\n"
               "\nExit codes: 0 ok, 1 failure, 2 usage, 3 timeout, 4 "
               "stubdomain gone,\n5 xenstore, 6 interrupted, 7 QMP error, 8 "
               "protocol, 9 invalid input,\n10 busy, 11 not supported. See "
               "stubdm-ctl(1).\n");
}

int main(int argc, char **argv)
{
    struct ctl_global g = {0};
    struct ctl_command *cmd;
    stubdm_ctx *ctx = NULL;
    bool sim = false, no_hotplug = false;
    int i, rc;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json")) {
            g.json = true;
        } else if (!strcmp(argv[i], "--sim")) {
            sim = true;
        } else if (!strcmp(argv[i], "--no-hotplug")) {
            no_hotplug = true;
        } else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
            g.verbose = true;
        } else if (!strcmp(argv[i], "--version")) {
            printf("stubdm-ctl (libstubdm) %s\n", stubdm_version());
            return 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "stubdm-ctl: unknown option %s\n", argv[i]);
            usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    for (cmd = commands; cmd; cmd = cmd->next)
        if (!strcmp(cmd->name, argv[i]))
            break;
    if (!cmd) {
        fprintf(stderr, "stubdm-ctl: unknown command '%s'\n", argv[i]);
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    for (int j = i + 1; j < argc; j++) {
        if (!strcmp(argv[j], "--"))
            break;
        if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
            printf("usage: stubdm-ctl %s %s\n\n%s\n\n%s", cmd->name,
                   cmd->usage, cmd->summary, cmd->help ? cmd->help : "");
            return 0;
        }
    }
    g.tty = isatty(STDERR_FILENO) && !g.json;
    g.crash_at = getenv("STUBDM_CTL_CRASH_AT");
    rc = stubdm_ctx_new(&ctx);
    if (rc) {
        fprintf(stderr, "stubdm-ctl: %s\n", stubdm_strerror(rc));
        return CTL_EXIT_FAIL;
    }
    /* Warnings always: e.g. a failed hotplug script's output, logged
     * next to the error that ends the command. */
    stubdm_ctx_set_log(ctx, log_to_stderr, &g,
                       g.verbose ? STUBDM_LOG_DEBUG : STUBDM_LOG_WARN);
    stubdm_ctx_set_hotplug(ctx, !no_hotplug);
    ctl_sim_prepare(ctx, sim);
    ctl_signals_install();
    rc = cmd->run(ctx, &g, argc - i, argv + i);
    stubdm_ctx_free(ctx);
    return rc;
}
