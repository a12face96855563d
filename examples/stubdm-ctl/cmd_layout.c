/*
 * stubdm-ctl layout: print every xenstore node a stubdomain start writes,
 * with its permissions, without writing anything — a dry run for toolstack
 * developers.
 */
#include "ctl.h"

#include <string.h>

struct layout_opts {
    uint32_t guest, stubdom, toolstack;
    const char *vm, *hvmloader, *kernel;
    bool spawn;            /* the whole spawn, not the contract alone */
    int encoding, backend; /* CTL_UNSET_CHOICE: the contract's default */
    const char *log, *save, *restore;
    struct ctl_strv serials;
};

#define O(field) offsetof(struct layout_opts, field)
const struct ctl_option ctl_layout_options[] = {
    {"guest", 0, CTL_ARG_DOMID, O(guest), "DOMID", 0, 0, NULL, NULL},
    {"stubdom", 0, CTL_ARG_DOMID, O(stubdom), "DOMID", 0, 0, NULL, NULL},
    {"toolstack", 0, CTL_ARG_DOMID, O(toolstack), "DOMID", 0, 0, NULL, NULL},
    {"vm", 0, CTL_ARG_STRING, O(vm), "/vm/UUID", 0, 0, NULL, NULL},
    {"encoding", 0, CTL_ARG_CHOICE, O(encoding), "encoding", 0, 0,
     ctl_encodings, NULL},
    {"console-backend", 0, CTL_ARG_CHOICE, O(backend), "backend", 0, 0,
     ctl_console_backends, NULL},
    {"log", 0, CTL_ARG_STRING, O(log), "OUT", 0, 0, NULL, NULL},
    {"save", 0, CTL_ARG_STRING, O(save), "OUT", 0, 0, NULL, NULL},
    {"restore", 0, CTL_ARG_STRING, O(restore), "IN", 0, 0, NULL, NULL},
    {"serial", 0, CTL_ARG_STRINGS, O(serials), "OUT", 0, 0, NULL, NULL},
    {"hvmloader", 0, CTL_ARG_STRING, O(hvmloader), "seabios|ovmf", 0, 0, NULL,
     NULL},
    {"spawn", 0, CTL_ARG_FLAG, O(spawn), NULL, 0, 0, NULL, NULL},
    {"kernel", 0, CTL_ARG_STRING, O(kernel), "PATH", 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

/* The contract the options describe; what they leave out is the
 * contract's default. */
static int contract_from_opts(const struct layout_opts *o,
                              const struct ctl_args *a, stubdm_contract *c)
{
    const char *outputs[3] = {o->log, o->save, o->restore};
    int rc;

    if ((rc = stubdm_contract_set_domains(c, o->guest, o->stubdom)) ||
        (rc = stubdm_contract_set_vm_path(c, o->vm)))
        return rc;
    if (o->toolstack != CTL_UNSET_DOMID &&
        (rc = stubdm_contract_set_toolstack_domid(c, o->toolstack)))
        return rc;
    if (o->encoding != CTL_UNSET_CHOICE &&
        (rc = stubdm_contract_set_argv_encoding(
             c, (stubdm_dm_argv_encoding)o->encoding, 0)))
        return rc;
    if (o->backend != CTL_UNSET_CHOICE &&
        (rc = stubdm_contract_set_console_backend(c, (stubdm_console_backend)
                                                         o->backend)))
        return rc;
    if ((a->nrest && (rc = stubdm_contract_set_args(c, a->rest, a->nrest))) ||
        (o->hvmloader &&
         (rc = stubdm_contract_set_hvmloader(c, o->hvmloader, 0))))
        return rc;
    for (unsigned n = 0; n < 3; n++)
        if (outputs[n] &&
            (rc = stubdm_contract_set_console_output(c, n, outputs[n])))
            return rc;
    for (size_t i = 0; i < o->serials.n; i++)
        if ((rc = stubdm_contract_set_console_output(
                 c, STUBDM_CONSOLE_SERIAL0 + (unsigned)i, o->serials.v[i])))
            return rc;
    return 0;
}

/* The spawn the options describe (--spawn): the guest's uuid is the vm
 * path's; what they leave out is the library's default. */
static int spawn_from_opts(const struct layout_opts *o,
                           const struct ctl_args *a, stubdm_spawn_opts *cfg)
{
    const char *outputs[3] = {o->log, o->save, o->restore};
    int rc;

    if ((rc = stubdm_spawn_opts_set_guest(cfg, o->guest, o->vm + 4, NULL)) ||
        (rc = stubdm_spawn_opts_set_kernel(cfg, o->kernel, NULL, NULL)) ||
        (rc = stubdm_spawn_opts_set_args(cfg, a->rest, a->nrest)))
        return rc;
    if (o->backend != CTL_UNSET_CHOICE &&
        (rc = stubdm_spawn_opts_set_console_backend(
             cfg, (stubdm_console_backend)o->backend)))
        return rc;
    for (unsigned n = 0; n < 3; n++)
        if (outputs[n] &&
            (rc = stubdm_spawn_opts_set_console_output(cfg, n, outputs[n])))
            return rc;
    for (size_t i = 0; i < o->serials.n; i++)
        if ((rc = stubdm_spawn_opts_set_console_output(
                 cfg, STUBDM_CONSOLE_SERIAL0 + (unsigned)i, o->serials.v[i])))
            return rc;
    return 0;
}

/* The nodes --spawn prints. */
static int spawn_layout(stubdm_ctx *ctx, const struct layout_opts *o,
                        const struct ctl_args *a, stubdm_nodes **nodes)
{
    stubdm_spawn_opts *cfg = NULL;
    int rc = stubdm_spawn_opts_new(&cfg);

    if (!rc)
        rc = spawn_from_opts(o, a, cfg);
    if (!rc)
        rc = stubdm_spawn_layout(ctx, cfg, o->stubdom, nodes);
    stubdm_spawn_opts_free(cfg);
    return rc;
}

static int check_args(const struct ctl_command *cmd,
                      const struct layout_opts *o, const struct ctl_args *a)
{
    if (a->npos)
        return ctl_usage_error(cmd, "unexpected argument '%s'", a->pos[0]);
    if (o->serials.n > STUBDM_CONSOLE_MAX_SERIALS)
        return ctl_usage_error(cmd, "at most %d serials",
                               STUBDM_CONSOLE_MAX_SERIALS);
    if (o->guest == CTL_UNSET_DOMID || o->stubdom == CTL_UNSET_DOMID || !o->vm)
        return ctl_usage_error(cmd,
                               "--guest, --stubdom and --vm are required");
    if (o->kernel && !o->spawn)
        return ctl_usage_error(cmd, "--kernel needs --spawn");
    if (o->spawn && (o->toolstack != CTL_UNSET_DOMID ||
                     o->encoding != CTL_UNSET_CHOICE || o->hvmloader))
        return ctl_usage_error(cmd, "--toolstack, --encoding and "
                                    "--hvmloader describe a contract, not "
                                    "a spawn");
    if (o->spawn && strncmp(o->vm, "/vm/", 4))
        return ctl_usage_error(cmd, "--spawn needs --vm /vm/UUID");
    return 0;
}

int ctl_layout_run(stubdm_ctx *ctx, const struct ctl_global *g,
                   const struct ctl_command *cmd, int argc, char **argv)
{
    struct layout_opts o = {.guest = CTL_UNSET_DOMID,
                            .stubdom = CTL_UNSET_DOMID,
                            .toolstack = CTL_UNSET_DOMID,
                            .encoding = CTL_UNSET_CHOICE,
                            .backend = CTL_UNSET_CHOICE};
    stubdm_contract *c = NULL;
    stubdm_nodes *nodes = NULL;
    struct ctl_args a;
    int rc, code;

    code = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a);
    if (!code)
        code = check_args(cmd, &o, &a);
    if (!code && o.spawn) {
        rc = spawn_layout(ctx, &o, &a, &nodes);
        if (!rc)
            ctl_print_nodes(g, "layout", nodes);
        code = rc ? ctl_report_error(ctx, g, "layout", rc, NULL) : 0;
    } else if (!code) {
        rc = stubdm_contract_new(&c);
        if (!rc)
            rc = contract_from_opts(&o, &a, c);
        if (!rc)
            rc = stubdm_contract_layout(ctx, c, &nodes);
        if (!rc)
            ctl_print_nodes(g, "layout", nodes);
        code = rc ? ctl_report_error(ctx, g, "layout", rc, NULL) : 0;
    }
    stubdm_nodes_free(nodes);
    stubdm_contract_free(c);
    ctl_opts_free(cmd->options, &o);
    return code;
}

const char ctl_layout_help[] =
    "Computes the xenstore contract (--spawn: every node a spawn writes,\n"
    "the domain's own, the contract and the devices') and prints each\n"
    "node with its value and permissions (owner first, xenstore-chmod\n"
    "syntax), in write order.  Nothing is written; no xenstore is needed.\n"
    "  --spawn                  the whole spawn (the stubdomain's uuid,\n"
    "                           start time and rings as chosen now)\n"
    "  --kernel PATH            with --spawn: the stubdomain kernel (Xen)\n"
    "  --toolstack DOMID        console backend / vchan peer (0); not\n"
    "                           with --spawn, nor --encoding, --hvmloader\n"
    "  --encoding E             directory (default), minios, esc\n"
    "  --console-backend B      ioemu (default), xenconsoled, libstubdm\n"
    "  --log OUT, --save OUT    outputs of consoles 0 and 1\n"
    "  --restore IN             console 2 (means: restoring)\n"
    "  --serial OUT             a guest serial (repeat: consoles 3..)\n"
    "  --hvmloader seabios|ovmf the guest's hvmloader keys\n";
