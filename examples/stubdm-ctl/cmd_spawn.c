/*
 * stubdm-ctl spawn --guest G [options] -- QEMU-ARGS...
 *
 * Start a stubdomain and print its domid.  Everything goes through the
 * public spawn API (stubdm_spawn and friends): the options fill a
 * stubdm_spawn_opts, and what the options leave out is the library's
 * default (on the simulated host, the console backend is libstubdm).
 */
#include "ctl.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct spawn_opts {
    uint32_t guest, stubdom_domid;
    const char *uuid, *guest_name, *name, *kernel, *ramdisk, *cmdline;
    uint64_t memory_mib, vcpus;
    struct ctl_strv disks, nics, serials, sim_args, pcis;
    const char *sysfs;
    const char *log, *save, *restore, *xsm_label, *sim_program;
    int backend; /* CTL_UNSET_CHOICE: the library's default */
    bool serve, service, service_serve_only, qmp, qmp_status,
        restore_by_service;
    int timeout_ms, qmp_timeout_ms; /* 0: the library's default */
};

#define O(field) offsetof(struct spawn_opts, field)
const struct ctl_option ctl_spawn_options[] = {
    {"guest", 0, CTL_ARG_DOMID, O(guest), "DOMID", 0, 0, NULL, NULL},
    {"uuid", 0, CTL_ARG_STRING, O(uuid), "UUID", 0, 0, NULL, NULL},
    {"guest-name", 0, CTL_ARG_STRING, O(guest_name), "NAME", 0, 0, NULL, NULL},
    {"name", 0, CTL_ARG_STRING, O(name), "NAME", 0, 0, NULL, NULL},
    {"kernel", 0, CTL_ARG_STRING, O(kernel), "PATH", 0, 0, NULL, NULL},
    {"ramdisk", 0, CTL_ARG_STRING, O(ramdisk), "PATH", 0, 0, NULL, NULL},
    {"cmdline", 0, CTL_ARG_STRING, O(cmdline), "STRING", 0, 0, NULL, NULL},
    {"memory", 0, CTL_ARG_UINT, O(memory_mib), "MIB", 0, 1u << 26, NULL, NULL},
    {"vcpus", 0, CTL_ARG_UINT, O(vcpus), "N", 0, 4096, NULL, NULL},
    {"disk", 0, CTL_ARG_STRINGS, O(disks), "PATH[,qcow2][,ro][,script=S]", 0,
     0, NULL, NULL},
    {"nic", 0, CTL_ARG_STRINGS, O(nics), "[mac=M][,bridge=B][,script=S]", 0, 0,
     NULL, NULL},
    {"pci", 0, CTL_ARG_STRINGS, O(pcis), "BDF[,vslot=N][,permissive]", 0, 0,
     NULL, NULL},
    {"sysfs", 0, CTL_ARG_STRING, O(sysfs), "DIR", 0, 0, NULL, NULL},
    {"log", 0, CTL_ARG_STRING, O(log), "FILE", 0, 0, NULL, NULL},
    {"save", 0, CTL_ARG_STRING, O(save), "CHARDEV", 0, 0, NULL, NULL},
    {"restore", 0, CTL_ARG_STRING, O(restore), "FILE", 0, 0, NULL, NULL},
    {"serial", 0, CTL_ARG_STRINGS, O(serials), "CHARDEV", 0, 0, NULL, NULL},
    {"console-backend", 0, CTL_ARG_CHOICE, O(backend), "backend", 0, 0,
     ctl_console_backends, NULL},
    {"serve", 0, CTL_ARG_FLAG, O(serve), NULL, 0, 0, NULL, NULL},
    {"service", 0, CTL_ARG_FLAG, O(service), NULL, 0, 0, NULL, NULL},
    {"service-serve-only", 0, CTL_ARG_FLAG, O(service_serve_only), NULL, 0, 0,
     NULL, NULL},
    {"restore-by-service", 0, CTL_ARG_FLAG, O(restore_by_service), NULL, 0, 0,
     NULL, NULL},
    {"xsm-label", 0, CTL_ARG_STRING, O(xsm_label), "LABEL", 0, 0, NULL, NULL},
    {"stubdom-domid", 0, CTL_ARG_DOMID, O(stubdom_domid), "DOMID", 0, 0, NULL,
     NULL},
    {"timeout", 0, CTL_ARG_SECONDS, O(timeout_ms), "SECONDS", 0, 0, NULL,
     NULL},
    {"qmp", 0, CTL_ARG_FLAG, O(qmp), NULL, 0, 0, NULL, NULL},
    {"qmp-status", 0, CTL_ARG_FLAG, O(qmp_status), NULL, 0, 0, NULL, NULL},
    {"qmp-timeout", 0, CTL_ARG_SECONDS, O(qmp_timeout_ms), "SECONDS", 0, 0,
     NULL, NULL},
    {"sim-program", 0, CTL_ARG_STRING, O(sim_program), "PATH", 0, 0, NULL,
     NULL},
    {"sim-arg", 0, CTL_ARG_STRINGS, O(sim_args), "ARG", 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

/* One spawn: what it made, freed by spawn_teardown. */
struct spawn_run {
    const struct ctl_global *g;
    stubdm_ctx *ctx;
    stubdm_spawn_opts *cfg;
    stubdm_stubdom *s;
    stubdm_op *op;
    int restore_fd;
    char *qmp_reply;
    bool done;
    int rc;
    stubdm_spawn_step step;
    int64_t start, step_start;
};

/* ---- config from options ------------------------------------------------ */

/* --disk PATH[,qcow2|,raw][,ro][,script=S] */
static int add_disk(stubdm_spawn_opts *cfg, size_t n, const char *spec)
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
    rc = path ? stubdm_spawn_opts_add_disk(cfg, path, format, ro)
              : STUBDM_EINVAL;
    if (!rc && script)
        rc = stubdm_spawn_opts_set_disk_script(cfg, n, script);
    free(copy);
    return rc;
}

/* --pci BDF[,vslot=N][,permissive][,power_mgmt][,msitranslate] */
static int add_pci(stubdm_spawn_opts *cfg, const char *spec)
{
    char *copy = strdup(spec), *opt, *save = NULL, *bdf;
    stubdm_pci_dev *d = NULL;
    unsigned flags = 0;
    int rc;

    if (!copy)
        return STUBDM_ENOMEM;
    bdf = strtok_r(copy, ",", &save);
    rc = bdf ? stubdm_pci_dev_new(bdf, &d) : STUBDM_EINVAL;
    while (!rc && (opt = strtok_r(NULL, ",", &save))) {
        uint64_t slot;
        if (!strcmp(opt, "permissive"))
            flags |= STUBDM_PCI_PERMISSIVE;
        else if (!strcmp(opt, "power_mgmt"))
            flags |= STUBDM_PCI_POWER_MGMT;
        else if (!strcmp(opt, "msitranslate"))
            flags |= STUBDM_PCI_MSITRANSLATE;
        else if (!strncmp(opt, "vslot=", 6) &&
                 !ctl_parse_uint(opt + 6, 1, 31, &slot))
            rc = stubdm_pci_dev_set_vslot(d, (int)slot);
        else
            rc = STUBDM_EINVAL;
    }
    if (!rc)
        rc = stubdm_pci_dev_set_flags(d, flags);
    if (!rc)
        rc = stubdm_spawn_opts_add_pci(cfg, d);
    stubdm_pci_dev_free(d);
    free(copy);
    return rc;
}

/* --nic [mac=M][,bridge=B][,script=S] */
static int add_nic(stubdm_spawn_opts *cfg, const char *spec)
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
    rc = stubdm_spawn_opts_add_nic(cfg, mac, bridge, script);
    free(copy);
    return rc;
}

/* A setter of the config refused an option's value: a usage error. */
#define REFUSED(call, ...)                                                    \
    do {                                                                      \
        if ((call) != 0)                                                      \
            return ctl_usage_error(cmd, __VA_ARGS__);                         \
    } while (0)

static int set_devices(const struct ctl_command *cmd,
                       const struct spawn_opts *o, stubdm_spawn_opts *cfg)
{
    for (size_t i = 0; i < o->disks.n; i++)
        REFUSED(add_disk(cfg, i, o->disks.v[i]), "bad disk '%s'",
                o->disks.v[i]);
    for (size_t i = 0; i < o->nics.n; i++)
        REFUSED(add_nic(cfg, o->nics.v[i]), "bad nic '%s'", o->nics.v[i]);
    for (size_t i = 0; i < o->pcis.n; i++)
        REFUSED(add_pci(cfg, o->pcis.v[i]), "bad pci '%s'", o->pcis.v[i]);
    for (size_t i = 0; i < o->serials.n; i++)
        REFUSED(stubdm_spawn_opts_set_console_output(cfg,
                                                     STUBDM_CONSOLE_SERIAL0 +
                                                         (unsigned)i,
                                                     o->serials.v[i]),
                "too many serials at '%s'", o->serials.v[i]);
    if (o->log) {
        char *out = malloc(strlen(o->log) + sizeof("file:"));
        int rc = out ? 0 : STUBDM_ENOMEM;
        if (out) {
            sprintf(out, "file:%s", o->log);
            rc = stubdm_spawn_opts_set_console_output(cfg, STUBDM_CONSOLE_LOG,
                                                      out);
        }
        free(out);
        REFUSED(rc, "bad log '%s'", o->log);
    }
    if (o->save)
        REFUSED(stubdm_spawn_opts_set_console_output(cfg, STUBDM_CONSOLE_SAVE,
                                                     o->save),
                "bad save chardev '%s'", o->save);
    return 0;
}

/* --restore FILE: the library feeds console 2 from the file, unless the
 * caller chose a backend that does not serve consoles (ioemu,
 * xenconsoled): then FILE is console 2's chardev, as libxl's. */
static int set_restore(const struct ctl_command *cmd,
                       const struct spawn_opts *o, struct spawn_run *r)
{
    if (!o->restore)
        return 0;
    if (o->backend != CTL_UNSET_CHOICE &&
        o->backend != STUBDM_CONSOLE_BACKEND_LIBSTUBDM) {
        REFUSED(stubdm_spawn_opts_set_console_output(r->cfg,
                                                     STUBDM_CONSOLE_RESTORE,
                                                     o->restore),
                "bad restore chardev '%s'", o->restore);
        return 0;
    }
    r->restore_fd = open(o->restore, O_RDONLY | O_CLOEXEC);
    if (r->restore_fd < 0)
        return ctl_usage_error(cmd, "--restore: cannot open '%s'", o->restore);
    return stubdm_spawn_opts_set_restore_fd(r->cfg, r->restore_fd)
               ? ctl_usage_error(cmd, "--restore: refused")
               : 0;
}

/* --restore-by-service: console 2 made for a restore (QEMU gets
 * libxl's -incoming), left to stubdmd, which feeds it when asked
 * (stubdm-ctl restore); this spawn waits for running meanwhile. */
static int set_restore_by_service(const struct ctl_command *cmd,
                                  const struct spawn_opts *o,
                                  const struct ctl_args *a,
                                  stubdm_spawn_opts *cfg)
{
    const char **v;
    bool has = false;
    int rc;

    if (!o->restore_by_service)
        return 0;
    if (!(o->service || o->service_serve_only) || o->restore || o->serials.n)
        return ctl_usage_error(cmd, "--restore-by-service needs --service, "
                                    "and excludes --restore and --serial");
    for (size_t i = 0; i < a->nrest; i++)
        has = has || !strcmp(a->rest[i], "-incoming");
    if (!(v = calloc(a->nrest + 2, sizeof(*v)))) {
        fprintf(stderr, "stubdm-ctl spawn: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    memcpy(v, a->rest, a->nrest * sizeof(*v));
    v[a->nrest] = "-incoming";
    v[a->nrest + 1] = "$STUBDOM_RESTORE_INCOMING_ARG";
    rc = stubdm_spawn_opts_set_args(cfg, v, a->nrest + (has ? 0 : 2));
    free(v);
    REFUSED(rc, "bad QEMU args");
    REFUSED(stubdm_spawn_opts_set_console_output(cfg, STUBDM_CONSOLE_RESTORE,
                                                 "libstubdm:restore"),
            "--restore-by-service: refused");
    return 0;
}

static int set_domain(const struct ctl_command *cmd,
                      const struct spawn_opts *o, const struct ctl_args *a,
                      stubdm_spawn_opts *cfg)
{
    REFUSED(stubdm_spawn_opts_set_guest(cfg, o->guest, o->uuid, o->guest_name),
            "bad guest uuid or name");
    REFUSED(stubdm_spawn_opts_set_kernel(cfg, o->kernel, o->ramdisk,
                                         o->cmdline),
            "bad kernel, ramdisk or cmdline");
    REFUSED(stubdm_spawn_opts_set_args(cfg, a->rest, a->nrest),
            "bad QEMU args");
    if (o->name)
        REFUSED(stubdm_spawn_opts_set_name(cfg, o->name), "bad name '%s'",
                o->name);
    if (o->memory_mib != CTL_UNSET_UINT)
        stubdm_spawn_opts_set_memory_kib(cfg, o->memory_mib * 1024);
    if (o->vcpus != CTL_UNSET_UINT)
        stubdm_spawn_opts_set_vcpus(cfg, (unsigned)o->vcpus);
    if (o->xsm_label)
        REFUSED(stubdm_spawn_opts_set_xsm_label(cfg, o->xsm_label),
                "bad xsm label '%s'", o->xsm_label);
    if (o->stubdom_domid != CTL_UNSET_DOMID)
        REFUSED(stubdm_spawn_opts_set_stubdom_domid(cfg, o->stubdom_domid),
                "bad domid %u", o->stubdom_domid);
    return 0;
}

static int set_runtime(const struct ctl_command *cmd,
                       const struct spawn_opts *o, stubdm_spawn_opts *cfg)
{
    if (o->backend != CTL_UNSET_CHOICE)
        REFUSED(stubdm_spawn_opts_set_console_backend(
                    cfg, (stubdm_console_backend)o->backend),
                "bad console backend");
    if (o->service || o->service_serve_only)
        REFUSED(stubdm_spawn_opts_set_service(cfg,
                                              o->service_serve_only
                                                  ? STUBDM_SERVICE_SERVE_ONLY
                                                  : STUBDM_SERVICE_ADOPT),
                "bad --service");
    if (o->timeout_ms)
        REFUSED(stubdm_spawn_opts_set_timeout(cfg, o->timeout_ms),
                "bad timeout");
    REFUSED(stubdm_spawn_opts_set_qmp(cfg, o->qmp || o->qmp_status,
                                      o->qmp_timeout_ms),
            "bad QMP open timeout");
    if (o->sim_program || o->sim_args.n)
        REFUSED(stubdm_spawn_opts_set_sim_program(cfg, o->sim_program,
                                                  o->sim_args.v,
                                                  o->sim_args.n),
                "bad sim program or arguments");
    return 0;
}
#undef REFUSED

static int config_from_opts(const struct ctl_command *cmd,
                            const struct spawn_opts *o,
                            const struct ctl_args *a, struct spawn_run *r)
{
    int code;

    if (o->guest == CTL_UNSET_DOMID)
        return ctl_usage_error(cmd, "--guest is required");
    if (a->npos)
        return ctl_usage_error(cmd,
                               "unexpected argument '%s' (QEMU "
                               "arguments go after --)",
                               a->pos[0]);
    if (!a->nrest)
        return ctl_usage_error(cmd, "no QEMU arguments after --");
    if ((code = stubdm_spawn_opts_new(&r->cfg)))
        return ctl_report_error(r->ctx, r->g, "spawn", code, NULL);
    if ((code = set_domain(cmd, o, a, r->cfg)) ||
        (code = set_devices(cmd, o, r->cfg)) ||
        (code = set_runtime(cmd, o, r->cfg)) ||
        (code = set_restore_by_service(cmd, o, a, r->cfg)))
        return code;
    return set_restore(cmd, o, r);
}

/* ---- progress ----------------------------------------------------------- */

static void on_progress(stubdm_stubdom *s, stubdm_spawn_step step, void *user)
{
    struct spawn_run *r = user;

    (void)s;
    r->step = step;
    r->step_start = stubdm_now_ms();
    if (r->g->verbose && !r->g->json) {
        fprintf(stderr, "spawn: %s (%.3f s)\n", stubdm_spawn_step_name(step),
                (stubdm_now_ms() - r->start) / 1000.0);
        ctl_crash_point(r->g, stubdm_spawn_step_name(step));
    }
}

static void on_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_run *r = user;

    (void)op;
    r->done = true;
    r->rc = rc;
}

/* On a terminal: the step in progress, once it takes more than 0.3 s. */
static void show_progress(void *user)
{
    const struct spawn_run *r = user;
    int64_t now = stubdm_now_ms();

    if (!r->g->tty || now - r->step_start < 300)
        return;
    fprintf(stderr, "\r\033[Kspawn: %s... %.1f s",
            stubdm_spawn_step_name(r->step), (now - r->start) / 1000.0);
}

static int spawn_and_wait(struct spawn_run *r, bool qmp_status)
{
    stubdm_qmp *q;
    int rc;

    r->start = r->step_start = stubdm_now_ms();
    rc = stubdm_spawn(r->ctx, r->cfg, on_progress, on_done, r, &r->s, &r->op);
    if (rc)
        return ctl_report_error(r->ctx, r->g, "spawn", rc, NULL);
    rc = ctl_run_until(r->ctx, r->g, "spawn", r->op, &r->done, show_progress,
                       r);
    if (r->g->tty)
        fprintf(stderr, "\r\033[K");
    if (rc)
        return rc;
    if (r->rc)
        return ctl_report_error(r->ctx, r->g, "spawn", r->rc,
                                stubdm_op_errmsg(r->op));
    if (!qmp_status)
        return 0;
    q = stubdm_stubdom_qmp(r->s);
    rc = stubdm_qmp_execute_sync(q, "query-status", NULL, 10000,
                                 &r->qmp_reply);
    if (!rc)
        return 0;
    rc = rc == STUBDM_ESTATE && !stubdm_qmp_is_ready(q)
             ? ctl_report_qmp_lost(r->ctx, r->g, "spawn: query-status")
             : ctl_report_error(r->ctx, r->g, "spawn: query-status", rc, NULL);
    stubdm_stubdom_destroy_sync(r->s);
    return rc;
}

static void report_running(const struct spawn_run *r)
{
    uint32_t domid = stubdm_stubdom_domid(r->s);
    uint32_t guest = stubdm_stubdom_guest(r->s);
    double secs = (stubdm_now_ms() - r->start) / 1000.0;

    if (r->g->json) {
        printf("{\"stubdom\":%u,\"guest\":%u,\"state\":\"running\","
               "\"seconds\":%.3f",
               domid, guest, secs);
        if (r->qmp_reply)
            printf(",\"query_status\":%s", r->qmp_reply);
        printf("}\n");
        fflush(stdout);
        return;
    }
    printf("%u\n", domid);
    fflush(stdout);
    fprintf(stderr, "stubdomain %u running for guest %u after %.2f s\n", domid,
            guest, secs);
    if (r->qmp_reply)
        fprintf(stderr, "query-status: %s\n", r->qmp_reply);
    if (r->restore_fd >= 0) {
        stubdm_console_stats cs;

        stubdm_console_get_stats(
            stubdm_stubdom_console(r->s, STUBDM_CONSOLE_RESTORE), &cs,
            sizeof(cs));
        fprintf(stderr,
                "restored: %llu bytes of device state through "
                "console 2\n",
                (unsigned long long)cs.bytes_in);
    }
}

/* ---- serving ------------------------------------------------------------ */

/* Serve the library's consoles until interrupted or the stubdomain is
 * gone (the held save console ends with it). */
static void serve_consoles(const struct spawn_run *r)
{
    const struct ctl_global *g = r->g;
    stubdm_console *held = stubdm_stubdom_console(r->s, STUBDM_CONSOLE_SAVE);

    if (!g->json)
        fprintf(stderr,
                "serving the consoles of stubdomain %u "
                "(Ctrl-C to stop; the stubdomain keeps running)\n",
                stubdm_stubdom_domid(r->s));
    while (!ctl_interrupted() && held &&
           stubdm_console_result(held) == STUBDM_ESTATE)
        if (stubdm_ctx_run_once(r->ctx, 200))
            break;
    for (unsigned n = 0;
         n < STUBDM_CONSOLE_SERIAL0 + STUBDM_CONSOLE_MAX_SERIALS; n++) {
        stubdm_console *c = stubdm_stubdom_console(r->s, n);
        stubdm_console_stats cs;

        stubdm_console_get_stats(c, &cs, sizeof(cs));
        if (c && !g->json)
            fprintf(stderr, "console %u: %llu bytes out, %llu in%s%s\n", n,
                    (unsigned long long)cs.bytes_out,
                    (unsigned long long)cs.bytes_in,
                    *stubdm_console_errmsg(c) ? ": " : "",
                    stubdm_console_errmsg(c));
    }
}

static void after_running(const struct spawn_run *r, bool serve)
{
    /* The backend the spawn used: the caller's, or the library's default. */
    if (stubdm_stubdom_console_backend(r->s) !=
        STUBDM_CONSOLE_BACKEND_LIBSTUBDM)
        return;
    if (serve)
        serve_consoles(r);
    else if (!r->g->json)
        fprintf(stderr, "note: this process served the consoles; they are "
                        "let go when it exits (another process may serve "
                        "them: --serve, save)\n");
}

/* ---- teardown ----------------------------------------------------------- */

static void spawn_teardown(struct spawn_run *r, struct spawn_opts *o)
{
    free(r->qmp_reply);
    stubdm_op_free(r->op);
    stubdm_stubdom_free(r->s); /* the stubdomain keeps running */
    stubdm_spawn_opts_free(r->cfg);
    if (r->restore_fd >= 0)
        close(r->restore_fd);
    ctl_opts_free(ctl_spawn_options, o);
}

int ctl_spawn_run(stubdm_ctx *ctx, const struct ctl_global *g,
                  const struct ctl_command *cmd, int argc, char **argv)
{
    struct spawn_opts o = {
        .guest = CTL_UNSET_DOMID,
        .stubdom_domid = CTL_UNSET_DOMID,
        .memory_mib = CTL_UNSET_UINT,
        .vcpus = CTL_UNSET_UINT,
        .backend = CTL_UNSET_CHOICE,
    };
    struct spawn_run r = {.g = g, .ctx = ctx, .restore_fd = -1};
    struct ctl_args a;
    int code;

    code = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a);
    if (!code && o.sysfs && stubdm_ctx_set_sysfs_root(ctx, o.sysfs))
        code = ctl_usage_error(cmd, "--sysfs: %s", stubdm_ctx_errmsg(ctx));
    if (!code)
        code = config_from_opts(cmd, &o, &a, &r);
    if (!code)
        code = spawn_and_wait(&r, o.qmp_status);
    if (!code) {
        report_running(&r);
        after_running(&r, o.serve);
    }
    spawn_teardown(&r, &o);
    return code;
}

const char ctl_spawn_help[] =
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
    "  --pci BDF[,vslot=N][,permissive][,power_mgmt][,msitranslate]\n"
    "                         a host PCI device (pciback's) for the guest,\n"
    "                         attached before the stubdomain runs (needs\n"
    "                         --qmp; a Linux stubdomain needs\n"
    "                         xen_privcmd.unrestricted=1 in --cmdline;\n"
    "                         docs/pci.md)\n"
    "  --sysfs DIR            sysfs root for --pci (default /sys; tests)\n"
    "  --log FILE             console 0 (QEMU log) to FILE\n"
    "  --save CHARDEV         console 1 (device state out; ioemu only;\n"
    "                         xenconsoled has no console 1)\n"
    "  --restore FILE         restore the device model from FILE (a\n"
    "                         'stubdm-ctl save' stream) through console\n"
    "                         2; with --console-backend ioemu: console\n"
    "                         2's chardev\n"
    "  --serial pty|file:PATH next guest serial console (repeatable;\n"
    "                         QEMU gets -serial /dev/hvcN from the args)\n"
    "  --console-backend ioemu|xenconsoled|libstubdm\n"
    "                         default: the library's (libstubdm on the\n"
    "                         simulated host, ioemu on Xen)\n"
    "  --serve                stay in the foreground serving the\n"
    "                         library's consoles until Ctrl-C or the\n"
    "                         stubdomain is gone\n"
    "  --service              ask stubdmd to serve console 0 and QMP\n"
    "                         (the contract's adoption node); it also\n"
    "                         tears the stubdomain down once it dies\n"
    "  --service-serve-only   as --service, but stubdmd only serves: the\n"
    "                         caller tears it down (stubdm-ctl destroy),\n"
    "                         as libxl does\n"
    "  --restore-by-service   with --service: make console 2 for a\n"
    "                         restore (QEMU gets -incoming) and leave it\n"
    "                         to stubdmd: 'stubdm-ctl restore STUBDOM\n"
    "                         --in FILE' gives it the state while this\n"
    "                         spawn waits for running\n"
    "  --xsm-label LABEL      FLASK label of the stubdomain\n"
    "  --stubdom-domid DOMID  ask for this domid\n"
    "  --timeout SECONDS      wait for running at most this long (30)\n"
    "  --qmp                  open QMP once running\n"
    "  --qmp-status           open QMP and print query-status's reply\n"
    "  --qmp-timeout SECONDS  bound on opening QMP (default 10; the\n"
    "                         vchan server may start after running)\n"
    "  --sim-program PATH     simulated host: the stubdomain stand-in\n"
    "  --sim-arg ARG          simulated host: an argument for it\n"
    "                         (e.g. --die-at=after-argv, --no-qemu)\n";
