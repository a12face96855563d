/*
 * stubdm-ctl: drive libstubdm from the command line.
 *
 *   stubdm-ctl [--json] [-v] [--sim] [--no-hotplug] COMMAND [ARGS...]
 *
 * The command table below lists every subcommand; each is in its own
 * cmd_*.c with its option table.  See stubdm-ctl(1).
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sorted by name: `stubdm-ctl --help` lists them in this order. */
static const struct ctl_command commands[] = {
    {"console", ctl_console_run,
     "attach to a serial console that stubdmd serves as a pty",
     ctl_console_options, "STUBDOM N", ctl_console_help},
    {"destroy", ctl_destroy_run,
     "destroy a stubdomain and remove its xenstore nodes", ctl_destroy_options,
     "[--force] [--script-dir DIR] STUBDOM | --guest DOMID", ctl_destroy_help},
    {"dm-argv", ctl_dmargv_run,
     "encode, write or read back the QEMU command line in xenstore",
     ctl_dmargv_options,
     "encode|write|read --vm /vm/UUID [--stubdom DOMID] "
     "[--encoding directory|minios|esc] [--max-value N] [-- ARGS...]",
     ctl_dmargv_help},
    {"layout", ctl_layout_run,
     "print every node a stubdomain start writes (dry run)",
     ctl_layout_options,
     "--guest DOMID --stubdom DOMID --vm /vm/UUID [options] "
     "[-- QEMU-ARGS...]",
     ctl_layout_help},
    {"list", ctl_list_run,
     "list stubdomains (domains with a target) and their state",
     ctl_list_options, "", ctl_list_help},
    {"pci-attach", ctl_pci_attach_run,
     "attach a host PCI device to a running guest through its stubdomain",
     ctl_pci_attach_options,
     "STUBDOM GUEST BDF [--vslot N] [--permissive] [options]",
     ctl_pci_attach_help},
    {"pci-detach", ctl_pci_detach_run,
     "detach a PCI device from a running guest", ctl_pci_detach_options,
     "STUBDOM GUEST BDF [options]", ctl_pci_detach_help},
    {"pci-list", ctl_pci_list_run,
     "list the PCI devices on a stubdomain's bus", ctl_pci_list_options,
     "STUBDOM", ctl_pci_list_help},
    {"qmp", ctl_qmp_run, "run QMP commands on the QEMU in a stubdomain",
     ctl_qmp_options,
     "STUBDOM GUEST [COMMAND [JSON-ARGS]] [--interactive] [--events] "
     "[options]",
     ctl_qmp_help},
    {"qmp-proxy", ctl_qmp_proxy_run,
     "share one stubdomain QMP connection with local clients",
     ctl_qmp_proxy_options,
     "STUBDOM GUEST --listen PATH [--group GROUP] [options]",
     ctl_qmp_proxy_help},
    {"restore", ctl_restore_run,
     "give stubdmd a saved device state for a stubdomain spawned for "
     "restore",
     ctl_restore_options, "STUBDOM --in FILE [--timeout SECONDS]",
     ctl_restore_help},
    {"save", ctl_save_run, "save the device model's state through console 1",
     ctl_save_options,
     "STUBDOM --out FILE [--guest DOMID] [--timeout SECONDS] "
     "[--limit BYTES]",
     ctl_save_help},
    {"sim", ctl_sim_run, "run the simulated Xen host (no hypervisor needed)",
     ctl_sim_options, "start|stop|status [--dir DIR] [--verbose]",
     ctl_sim_help},
    {"spawn", ctl_spawn_run,
     "start a stubdomain for a guest and wait until it runs",
     ctl_spawn_options, "--guest DOMID [OPTIONS] -- QEMU-ARGS...",
     ctl_spawn_help},
    {"wait", ctl_wait_run, "wait until the device model reports \"running\"",
     ctl_wait_options, "STUBDOM GUEST [--timeout S]", ctl_wait_help},
};

#define G(field) offsetof(struct ctl_global, field)
/* The options before COMMAND: output, host selection, verbosity. */
static const struct ctl_option global_options[] = {
    {"json", 0, CTL_ARG_FLAG, G(json), NULL, 0, 0, NULL, NULL},
    {"verbose", 'v', CTL_ARG_FLAG, G(verbose), NULL, 0, 0, NULL, NULL},
    {"sim", 0, CTL_ARG_FLAG, G(sim), NULL, 0, 0, NULL, NULL},
    {"no-hotplug", 0, CTL_ARG_FLAG, G(no_hotplug), NULL, 0, 0, NULL, NULL},
    {"version", 0, CTL_ARG_FLAG, G(version), NULL, 0, 0, NULL, NULL},
    {"help", 'h', CTL_ARG_FLAG, G(help), NULL, 0, 0, NULL, NULL},
    {"control", 0, CTL_ARG_STRING, G(control), "SOCKET", 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: stubdm-ctl [--json] [-v] [--sim] [--no-hotplug] "
            "[--control SOCKET]\n"
            "                  COMMAND [ARGS...]\n"
            "       stubdm-ctl COMMAND --help\n\n"
            "Drive Xen device-model stubdomains with libstubdm %s.\n\n"
            "Commands:\n",
            stubdm_version());
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nOptions:\n"
               "  --json     machine-readable output on stdout\n"
               "  -v         library debug log on stderr\n"
               "  --sim      use the simulated host (stubdm-ctl sim start)\n"
               "  --no-hotplug  run no disk/nic hotplug scripts (spawn,\n"
               "             destroy): another toolstack or udev runs them\n"
               "  --control SOCKET  stubdmd's control socket (list, save,\n"
               "             restore, console ask it when it runs; "
               "default\n             " CTL_CONTROL_DEFAULT ")\n"
               "  --version  print the library version\n"
               "\nExit codes: 0 ok, 1 other failure (out of memory, wrong "
               "state, a file\nof ours), 2 usage, 3 timeout, 4 stubdomain "
               "gone, 5 xenstore, 6 interrupted,\n7 QMP error, 8 protocol "
               "or channel (QMP connection lost), 9 invalid input,\n10 busy, "
               "11 not supported. See stubdm-ctl(1).\n");
}

static const struct ctl_command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

/* `stubdm-ctl COMMAND ... --help` before "--": the command's help, with
 * no ctx made and nothing else parsed. */
static bool wants_help(int argc, char **argv)
{
    for (int j = 1; j < argc && strcmp(argv[j], "--"); j++)
        if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h"))
            return true;
    return false;
}

static void log_to_stderr(void *user, stubdm_log_level level, int os_errno,
                          const char *context, const char *msg)
{
    fprintf(stderr, "libstubdm[%s] %d: %s%s%s\n", context, (int)level, msg,
            os_errno ? ": " : "", os_errno ? strerror(os_errno) : "");
    ctl_crash_point(user, msg);
}

static int run_command(struct ctl_global *g, const struct ctl_command *cmd,
                       int argc, char **argv)
{
    stubdm_ctx *ctx = NULL;
    int rc;

    g->tty = isatty(STDERR_FILENO) && !g->json;
    g->crash_at = getenv("STUBDM_CTL_CRASH_AT");
    rc = stubdm_ctx_new(&ctx);
    if (rc)
        return ctl_report_error(NULL, g, "init", rc, NULL);
    /* Warnings always: e.g. a failed hotplug script's output, logged
     * next to the error that ends the command. */
    stubdm_ctx_set_log(ctx, log_to_stderr, g,
                       g->verbose ? STUBDM_LOG_DEBUG : STUBDM_LOG_WARN);
    stubdm_ctx_set_hotplug(ctx, !g->no_hotplug);
    if (g->sim)
        stubdm_ctx_set_host(ctx, STUBDM_HOST_SIM);
    ctl_sim_prepare(ctx);
    ctl_signals_install();
    rc = cmd->run(ctx, g, cmd, argc, argv);
    stubdm_ctx_free(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    struct ctl_global g = {0};
    const struct ctl_command *cmd;
    struct ctl_args a;

    if (ctl_parse(NULL, global_options, argc, argv, true, &g, &a)) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (g.version) {
        printf("stubdm-ctl (libstubdm) %s\n", stubdm_version());
        return CTL_EXIT_OK;
    }
    if (g.help) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    if (a.npos == 0) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    cmd = find_command(a.pos[0]);
    if (!cmd) {
        fprintf(stderr, "stubdm-ctl: unknown command '%s'\n", a.pos[0]);
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    /* The command's argv: its name, then what followed it. */
    argc = (int)a.nrest + 1;
    argv = (char **)a.rest - 1;
    if (wants_help(argc, argv)) {
        printf("usage: stubdm-ctl %s %s\n\n%s\n\n%s", cmd->name, cmd->usage,
               cmd->summary, cmd->help);
        return CTL_EXIT_OK;
    }
    return run_command(&g, cmd, argc, argv);
}
