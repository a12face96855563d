/*
 * stubdm-ctl spawn | destroy | list
 *
 *   spawn --guest G [options] -- QEMU-ARGS...   start a stubdomain, print
 *                                               its domid
 *   destroy STUBDOM | --guest G                 tear one down
 *   list                                        stubdomains in xenstore
 *
 * Everything goes through the public spawn API (stubdm_spawn and friends);
 * on a machine without Xen the simulated host is used (stubdm-ctl sim).
 */
#include "ctl.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ctl_command cmd_spawn, cmd_destroy, cmd_list;

struct spawn_state {
    const struct ctl_global *g;
    bool done;
    int rc;
    stubdm_spawn_step step;
    int64_t start, step_start;
};

static void on_progress(stubdm_stubdom *s, stubdm_spawn_step step, void *user)
{
    struct spawn_state *st = user;

    (void)s;
    st->step = step;
    st->step_start = stubdm_now_ms();
    if (st->g->verbose && !st->g->json) {
        fprintf(stderr, "spawn: %s (%.3f s)\n", stubdm_spawn_step_name(step),
                (stubdm_now_ms() - st->start) / 1000.0);
        ctl_crash_point(st->g, stubdm_spawn_step_name(step));
    }
}

static void on_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_state *st = user;

    (void)op;
    st->done = true;
    st->rc = rc;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (!s || s[0] < '0' || s[0] > '9')
        return false;
    v = strtoul(s, &end, 10);
    if (*end || v > max)
        return false;
    *out = v;
    return true;
}

/* --disk PATH[,qcow2|,raw][,ro][,script=S] */
static int add_disk(stubdm_spawn_config *cfg, size_t n, const char *spec)
{
    char *copy = strdup(spec), *opt, *save = NULL;
    const char *format = "raw", *script = NULL;
    int ro = 0, rc;

    if (!copy)
        return STUBDM_ENOMEM;
    char *path = strtok_r(copy, ",", &save);
    while ((opt = strtok_r(NULL, ",", &save))) {
        if (!strcmp(opt, "ro"))
            ro = 1;
        else if (!strcmp(opt, "rw"))
            ro = 0;
        else if (!strcmp(opt, "qcow2") || !strcmp(opt, "raw"))
            format = opt;
        else if (!strncmp(opt, "script=", 7))
            script = opt + 7;
        else {
            free(copy);
            return STUBDM_EINVAL;
        }
    }
    rc = path ? stubdm_spawn_config_add_disk(cfg, path, format, ro)
              : STUBDM_EINVAL;
    if (!rc && script)
        rc = stubdm_spawn_config_set_disk_script(cfg, n, script);
    free(copy);
    return rc;
}

/* --nic [mac=M][,bridge=B][,script=S] */
static int add_nic(stubdm_spawn_config *cfg, const char *spec)
{
    char *copy = strdup(spec), *opt, *save = NULL;
    const char *mac = NULL, *bridge = NULL, *script = NULL;
    int rc;

    if (!copy)
        return STUBDM_ENOMEM;
    for (opt = strtok_r(copy, ",", &save); opt;
         opt = strtok_r(NULL, ",", &save)) {
        if (!strncmp(opt, "mac=", 4))
            mac = opt + 4;
        else if (!strncmp(opt, "bridge=", 7))
            bridge = opt + 7;
        else if (!strncmp(opt, "script=", 7))
            script = opt + 7;
        else {
            free(copy);
            return STUBDM_EINVAL;
        }
    }
    rc = stubdm_spawn_config_add_nic(cfg, mac, bridge, script);
    free(copy);
    return rc;
}

static void show_progress(const struct spawn_state *st)
{
    int64_t now = stubdm_now_ms();

    /* Only long steps are worth a line: waiting, and anything > 0.3 s. */
    if (now - st->step_start < 300)
        return;
    fprintf(stderr, "\r\033[Kspawn: %s... %.1f s",
            stubdm_spawn_step_name(st->step), (now - st->start) / 1000.0);
}

static int run_spawn(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                     char **argv)
{
    stubdm_spawn_config *cfg = NULL;
    struct spawn_state st = { g, false, 0, STUBDM_SPAWN_CREATE, 0, 0 };
    const char **sim_args = NULL;
    size_t nsim = 0, nserial = 0, ndisks = 0;
    const char *kernel = NULL, *ramdisk = NULL, *cmdline = NULL;
    const char *uuid = NULL, *gname = NULL, *sim_prog = NULL;
    uint32_t guest = 0;
    bool have_guest = false, qmp_status = false, qmp = false, serve = false;
    bool backend_set = false;
    stubdm_console_backend backend = STUBDM_CONSOLE_IOEMU;
    const char *restore = NULL;
    int restore_fd = -1;
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    unsigned long v;
    int rc, i, code = CTL_EXIT_OK, timeout_ms, qmp_timeout_ms = 0;
    char *qmp_reply = NULL;

    if (stubdm_spawn_config_new(&cfg))
        return CTL_EXIT_FAIL;
    sim_args = calloc((size_t)argc, sizeof(*sim_args));
    if (!sim_args) {
        stubdm_spawn_config_free(cfg);
        return CTL_EXIT_FAIL;
    }
#define NEED_ARG(what)                                                        \
    do {                                                                      \
        if (++i >= argc) {                                                    \
            code = ctl_usage_error(&cmd_spawn, "%s needs %s", argv[i - 1],    \
                                   what);                                     \
            goto out;                                                         \
        }                                                                     \
    } while (0)
#define CHECK(call, fmt)                                                      \
    do {                                                                      \
        if ((call) != 0) {                                                    \
            code = ctl_usage_error(&cmd_spawn, fmt, argv[i]);                 \
            goto out;                                                         \
        }                                                                     \
    } while (0)
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "--guest")) {
            NEED_ARG("a domid");
            CHECK(!ctl_parse_domid(argv[i], &guest), "bad guest domid '%s'");
            have_guest = true;
        } else if (!strcmp(a, "--uuid")) {
            NEED_ARG("a uuid");
            uuid = argv[i];
        } else if (!strcmp(a, "--guest-name")) {
            NEED_ARG("a name");
            gname = argv[i];
        } else if (!strcmp(a, "--name")) {
            NEED_ARG("a name");
            CHECK(stubdm_spawn_config_set_name(cfg, argv[i]), "bad name '%s'");
        } else if (!strcmp(a, "--kernel")) {
            NEED_ARG("a path");
            kernel = argv[i];
        } else if (!strcmp(a, "--ramdisk")) {
            NEED_ARG("a path");
            ramdisk = argv[i];
        } else if (!strcmp(a, "--cmdline")) {
            NEED_ARG("a string");
            cmdline = argv[i];
        } else if (!strcmp(a, "--memory")) {
            NEED_ARG("MiB");
            CHECK(!parse_uint(argv[i], 1u << 26, &v), "bad memory '%s' (MiB)");
            stubdm_spawn_config_set_memory_kib(cfg, (uint64_t)v * 1024);
        } else if (!strcmp(a, "--vcpus")) {
            NEED_ARG("a count");
            CHECK(!parse_uint(argv[i], 4096, &v), "bad vcpus '%s'");
            stubdm_spawn_config_set_vcpus(cfg, (unsigned)v);
        } else if (!strcmp(a, "--disk")) {
            NEED_ARG("PATH[,qcow2][,ro][,script=S]");
            CHECK(add_disk(cfg, ndisks++, argv[i]), "bad disk '%s'");
        } else if (!strcmp(a, "--nic")) {
            NEED_ARG("[mac=M][,bridge=B][,script=S]");
            CHECK(add_nic(cfg, argv[i]), "bad nic '%s'");
        } else if (!strcmp(a, "--log")) {
            NEED_ARG("a file");
            char out[4200];
            snprintf(out, sizeof(out), "file:%s", argv[i]);
            stubdm_spawn_config_set_console_output(cfg, STUBDM_CONSOLE_LOG,
                                                   out);
        } else if (!strcmp(a, "--save")) {
            NEED_ARG("a chardev");
            stubdm_spawn_config_set_console_output(cfg, STUBDM_CONSOLE_SAVE,
                                                   argv[i]);
        } else if (!strcmp(a, "--restore")) {
            NEED_ARG("a file (or, with ioemu, a chardev)");
            restore = argv[i];
        } else if (!strcmp(a, "--serial")) {
            NEED_ARG("a chardev");
            CHECK(stubdm_spawn_config_set_console_output(
                      cfg, STUBDM_CONSOLE_SERIAL0 + (unsigned)nserial++,
                      argv[i]),
                  "too many serials at '%s'");
        } else if (!strcmp(a, "--console-backend")) {
            NEED_ARG("ioemu|xenconsoled|libstubdm");
            stubdm_console_backend b =
                !strcmp(argv[i], "ioemu")         ? STUBDM_CONSOLE_IOEMU
                : !strcmp(argv[i], "xenconsoled") ? STUBDM_CONSOLE_XENCONSOLED
                : !strcmp(argv[i], "libstubdm")   ? STUBDM_CONSOLE_LIBSTUBDM
                                                  : (stubdm_console_backend)-1;
            CHECK(stubdm_spawn_config_set_console_backend(cfg, b),
                  "bad console backend '%s'");
            backend = b;
            backend_set = true;
        } else if (!strcmp(a, "--serve")) {
            serve = true;
        } else if (!strcmp(a, "--xsm-label")) {
            NEED_ARG("a label");
            stubdm_spawn_config_set_xsm_label(cfg, argv[i]);
        } else if (!strcmp(a, "--stubdom-domid")) {
            NEED_ARG("a domid");
            uint32_t d;
            CHECK(!ctl_parse_domid(argv[i], &d) ||
                      stubdm_spawn_config_set_stubdom_domid(cfg, d),
                  "bad domid '%s'");
        } else if (!strcmp(a, "--timeout")) {
            NEED_ARG("seconds");
            CHECK(!ctl_parse_seconds(argv[i], &timeout_ms) ||
                      stubdm_spawn_config_set_timeout(cfg, timeout_ms),
                  "bad timeout '%s'");
        } else if (!strcmp(a, "--qmp")) {
            qmp = true;
        } else if (!strcmp(a, "--qmp-status")) {
            qmp = qmp_status = true;
        } else if (!strcmp(a, "--qmp-timeout")) {
            NEED_ARG("seconds");
            CHECK(!ctl_parse_seconds(argv[i], &qmp_timeout_ms),
                  "bad QMP open timeout '%s'");
        } else if (!strcmp(a, "--sim-program")) {
            NEED_ARG("a program");
            sim_prog = argv[i];
        } else if (!strcmp(a, "--sim-arg")) {
            NEED_ARG("an argument");
            sim_args[nsim++] = argv[i];
        } else {
            code = ctl_usage_error(&cmd_spawn, "unexpected argument '%s' "
                                               "(QEMU arguments go after --)",
                                   a);
            goto out;
        }
    }
    if (!have_guest) {
        code = ctl_usage_error(&cmd_spawn, "--guest is required");
        goto out;
    }
    if (i >= argc) {
        code = ctl_usage_error(&cmd_spawn, "no QEMU arguments after --");
        goto out;
    }
    stubdm_spawn_config_set_guest(cfg, guest, uuid, gname);
    stubdm_spawn_config_set_kernel(cfg, kernel, ramdisk, cmdline);
    stubdm_spawn_config_set_args(cfg, (const char *const *)argv + i,
                                 (size_t)(argc - i));
    stubdm_spawn_config_set_qmp(cfg, qmp, qmp_timeout_ms);
    if (!backend_set)
        backend = stubdm_ctx_host(ctx) == STUBDM_HOST_SIM
                      ? STUBDM_CONSOLE_LIBSTUBDM
                      : STUBDM_CONSOLE_IOEMU;
    if (restore && backend == STUBDM_CONSOLE_LIBSTUBDM) {
        /* The library feeds console 2 from the file itself. */
        restore_fd = open(restore, O_RDONLY | O_CLOEXEC);
        if (restore_fd < 0) {
            code = ctl_usage_error(&cmd_spawn, "--restore: cannot open '%s'",
                                   restore);
            goto out;
        }
        stubdm_spawn_config_set_restore_fd(cfg, restore_fd);
    } else if (restore) {
        stubdm_spawn_config_set_console_output(cfg, STUBDM_CONSOLE_RESTORE,
                                               restore);
    }
    if (sim_prog || nsim)
        stubdm_spawn_config_set_sim_program(cfg, sim_prog, sim_args, nsim);

    st.start = st.step_start = stubdm_now_ms();
    rc = stubdm_spawn(ctx, cfg, on_progress, on_done, &st, &s, &op);
    if (rc) {
        code = ctl_report_error(ctx, g, "spawn", rc, NULL);
        goto out;
    }
    while (!st.done) {
        if (ctl_interrupted())
            stubdm_op_cancel(op);
        rc = stubdm_ctx_run_once(ctx, 100);
        if (rc) {
            code = ctl_report_error(ctx, g, "spawn", rc, NULL);
            goto out;
        }
        if (g->tty && !st.done)
            show_progress(&st);
    }
    if (g->tty)
        fprintf(stderr, "\r\033[K");
    if (st.rc) {
        code = ctl_report_error(ctx, g, "spawn", st.rc, stubdm_op_errmsg(op));
        goto out;
    }
    if (qmp_status) {
        rc = stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s), "query-status",
                                     NULL, 10000, &qmp_reply);
        if (rc) {
            code = ctl_report_error(ctx, g, "spawn: query-status", rc, NULL);
            stubdm_stubdom_destroy(s);
            goto out;
        }
    }
    if (g->json) {
        printf("{\"stubdom\":%u,\"guest\":%u,\"state\":\"running\","
               "\"seconds\":%.3f",
               stubdm_stubdom_domid(s), guest,
               (stubdm_now_ms() - st.start) / 1000.0);
        if (qmp_reply)
            printf(",\"query_status\":%s", qmp_reply);
        printf("}\n");
    } else {
        printf("%u\n", stubdm_stubdom_domid(s));
        fprintf(stderr, "stubdomain %u running for guest %u after %.2f s\n",
                stubdm_stubdom_domid(s), guest,
                (stubdm_now_ms() - st.start) / 1000.0);
        if (qmp_reply)
            fprintf(stderr, "query-status: %s\n", qmp_reply);
        if (restore_fd >= 0)
            fprintf(stderr, "restored: %llu bytes of device state through "
                            "console 2\n",
                    (unsigned long long)stubdm_console_bytes_in(
                        stubdm_stubdom_console(s, STUBDM_CONSOLE_RESTORE)));
    }
    fflush(stdout);
    if (backend == STUBDM_CONSOLE_LIBSTUBDM && !serve && !g->json)
        fprintf(stderr, "note: this process served the consoles; they are "
                        "let go when it exits (another process may serve "
                        "them: --serve, save)\n");
    if (backend == STUBDM_CONSOLE_LIBSTUBDM && serve) {
        /* Serve the consoles until interrupted or the stubdomain is gone
         * (the held save console ends with it). */
        stubdm_console *held = stubdm_stubdom_console(s, STUBDM_CONSOLE_SAVE);
        if (!g->json)
            fprintf(stderr, "serving the consoles of stubdomain %u "
                            "(Ctrl-C to stop; the stubdomain keeps running)\n",
                    stubdm_stubdom_domid(s));
        while (!ctl_interrupted() && held &&
               stubdm_console_result(held) == STUBDM_ESTATE)
            if (stubdm_ctx_run_once(ctx, 200))
                break;
        for (unsigned n = 0; n < STUBDM_CONSOLE_SERIAL0 + STUBDM_MAX_SERIALS;
             n++) {
            stubdm_console *c = stubdm_stubdom_console(s, n);
            if (c && !g->json)
                fprintf(stderr, "console %u: %llu bytes out, %llu in%s%s\n",
                        n,
                        (unsigned long long)stubdm_console_bytes_out(c),
                        (unsigned long long)stubdm_console_bytes_in(c),
                        *stubdm_console_errmsg(c) ? ": " : "",
                        stubdm_console_errmsg(c));
        }
    }
out:
#undef NEED_ARG
#undef CHECK
    free(qmp_reply);
    stubdm_op_free(op);
    stubdm_stubdom_free(s); /* the stubdomain keeps running */
    stubdm_spawn_config_free(cfg);
    if (restore_fd >= 0)
        close(restore_fd);
    free(sim_args);
    return code;
}

CTL_COMMAND(cmd_spawn) = {
    .name = "spawn",
    .usage = "--guest DOMID [OPTIONS] -- QEMU-ARGS...",
    .summary = "start a stubdomain for a guest and wait until it runs",
    .help =
        "Creates the stubdomain (PV, paused), writes the xenstore contract,\n"
        "attaches disks, nics and consoles, unpauses it and waits for the\n"
        "device model to report running.  Prints the stubdomain's domid.\n"
        "Any failure destroys everything made; the message names the step.\n\n"
        "  --guest DOMID          the HVM guest (required)\n"
        "  --uuid UUID            guest uuid (vm path /vm/UUID); default:\n"
        "                         read /local/domain/GUEST/vm\n"
        "  --guest-name NAME      default: read it, else guestDOMID\n"
        "  --name NAME            stubdomain name (default GUESTNAME-dm)\n"
        "  --kernel PATH          stubdomain kernel (required on Xen)\n"
        "  --ramdisk PATH         stubdomain initramfs\n"
        "  --cmdline STRING       kernel command line\n"
        "  --memory MIB           default 128\n"
        "  --vcpus N              default 1\n"
        "  --disk PATH[,qcow2][,ro][,script=S]  next emulated disk (xvda,\n"
        "                         xvdb, ...); script: its hotplug script\n"
        "                         (default /etc/xen/scripts/block)\n"
        "  --nic [mac=M][,bridge=B][,script=S]  next nic (script default\n"
        "                         /etc/xen/scripts/vif-bridge); the library\n"
        "                         runs both scripts unless --no-hotplug\n"
        "  --log FILE             console 0 (QEMU log) to FILE\n"
        "  --save CHARDEV         console 1 (device state out; ioemu only;\n"
        "                         xenconsoled has no console 1)\n"
        "  --restore FILE         restore the device model from FILE (a\n"
        "                         'stubdm-ctl save' stream) through console\n"
        "                         2; with ioemu: console 2's chardev\n"
        "  --serial pty|file:PATH next guest serial console (repeatable;\n"
        "                         QEMU gets -serial /dev/hvcN from the args)\n"
        "  --console-backend ioemu|xenconsoled|libstubdm\n"
        "                         default: libstubdm on the simulated host,\n"
        "                         ioemu on Xen\n"
        "  --serve                stay in the foreground serving the\n"
        "                         library's consoles until Ctrl-C or the\n"
        "                         stubdomain is gone\n"
        "  --xsm-label LABEL      FLASK label of the stubdomain\n"
        "  --stubdom-domid DOMID  ask for this domid\n"
        "  --timeout SECONDS      wait for running at most this long (30)\n"
        "  --qmp                  open QMP once running\n"
        "  --qmp-status           open QMP and print query-status's reply\n"
        "  --qmp-timeout SECONDS  bound on opening QMP (default 10; the\n"
        "                         vchan server may start after running)\n"
        "  --sim-program PATH     simulated host: the stubdomain stand-in\n"
        "  --sim-arg ARG          simulated host: an argument for it\n"
        "                         (e.g. --die-at=after-argv, --no-qemu)\n",
    .run = run_spawn,
};

/* ---- destroy ------------------------------------------------------------ */

static int run_destroy(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                       char **argv)
{
    uint32_t stubdom = 0, guest = 0;
    bool by_guest = false, have = false;
    unsigned flags = 0;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--guest")) {
            if (++i >= argc || !ctl_parse_domid(argv[i], &guest))
                return ctl_usage_error(&cmd_destroy, "--guest needs a domid");
            by_guest = true;
        } else if (!strcmp(argv[i], "--force")) {
            flags |= STUBDM_DESTROY_FORCE;
        } else if (!strcmp(argv[i], "--script-dir")) {
            if (++i >= argc || stubdm_ctx_set_hotplug_dir(ctx, argv[i]))
                return ctl_usage_error(&cmd_destroy,
                                       "--script-dir needs an absolute "
                                       "directory");
        } else if (!have && ctl_parse_domid(argv[i], &stubdom)) {
            have = true;
        } else {
            return ctl_usage_error(&cmd_destroy, "unexpected argument '%s'",
                                   argv[i]);
        }
    }
    if (have == by_guest)
        return ctl_usage_error(&cmd_destroy,
                               "need a STUBDOM domid or --guest DOMID");
    if (by_guest) {
        rc = stubdm_find_stubdom(ctx, guest, &stubdom);
        if (rc)
            return ctl_report_error(ctx, g, "destroy", rc, NULL);
    }
    rc = stubdm_destroy_ext(ctx, stubdom, flags);
    if (rc)
        return ctl_report_error(ctx, g, "destroy", rc, NULL);
    if (g->json)
        printf("{\"stubdom\":%u,\"state\":\"destroyed\"}\n", stubdom);
    else
        fprintf(stderr, "stubdomain %u destroyed\n", stubdom);
    return CTL_EXIT_OK;
}

CTL_COMMAND(cmd_destroy) = {
    .name = "destroy",
    .usage = "[--force] [--script-dir DIR] STUBDOM | --guest DOMID",
    .summary = "destroy a stubdomain and remove its xenstore nodes",
    .help = "Destroys the domain, then removes the contract, its devices,\n"
            "/local/domain/STUBDOM and its /vm entry.  With --guest, the\n"
            "stubdomain is found through the guest's device-model-domid.\n"
            "A domain that is not a stubdomain (no dom0-owned target, no\n"
            "guest's dom0-owned device-model-domid naming it) is refused\n"
            "(exit 9) unless --force.  The backends' remove/offline\n"
            "scripts run only from /etc/xen/scripts, or from DIR with\n"
            "--script-dir.\n",
    .run = run_destroy,
};

/* ---- list --------------------------------------------------------------- */

static int run_list(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                    char **argv)
{
    stubdm_stubdom_list *l = NULL;
    size_t n;
    int rc;

    if (argc > 1)
        return ctl_usage_error(&cmd_list, "unexpected argument '%s'", argv[1]);
    rc = stubdm_list(ctx, &l);
    if (rc)
        return ctl_report_error(ctx, g, "list", rc, NULL);
    n = stubdm_stubdom_list_count(l);
    if (g->json) {
        printf("[");
        for (size_t i = 0; i < n; i++) {
            printf("%s{\"stubdom\":%u,\"guest\":%u,\"name\":", i ? "," : "",
                   stubdm_stubdom_list_domid(l, i),
                   stubdm_stubdom_list_guest(l, i));
            ctl_json_string(stdout, stubdm_stubdom_list_name(l, i));
            printf(",\"state\":");
            ctl_json_string(stdout, stubdm_stubdom_list_state(l, i));
            printf("}");
        }
        printf("]\n");
    } else {
        printf("%-8s %-6s %-24s %s\n", "STUBDOM", "GUEST", "NAME", "STATE");
        for (size_t i = 0; i < n; i++)
            printf("%-8u %-6u %-24s %s\n", stubdm_stubdom_list_domid(l, i),
                   stubdm_stubdom_list_guest(l, i),
                   stubdm_stubdom_list_name(l, i),
                   stubdm_stubdom_list_state(l, i));
    }
    stubdm_stubdom_list_free(l);
    return CTL_EXIT_OK;
}

CTL_COMMAND(cmd_list) = {
    .name = "list",
    .usage = "",
    .summary = "list stubdomains (domains with a target) and their state",
    .help = "STATE is running (device model running), starting, or why the\n"
            "domain is gone (e.g. \"crashed (signal 11)\").\n",
    .run = run_list,
};
