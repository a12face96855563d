/*
 * stubdm-ctl destroy STUBDOM | --guest G
 *
 * Tear a stubdomain down by domid, from any process
 * (stubdm_stubdom_destroy_by_domid_sync).
 */
#include "ctl.h"

#include <string.h>

struct destroy_opts {
    uint32_t guest;
    bool force;
    const char *script_dir, *sysfs;
};

#define O(field) offsetof(struct destroy_opts, field)
const struct ctl_option ctl_destroy_options[] = {
    {"guest", 0, CTL_ARG_DOMID, O(guest), "DOMID", 0, 0, NULL, NULL},
    {"force", 0, CTL_ARG_FLAG, O(force), NULL, 0, 0, NULL, NULL},
    {"script-dir", 0, CTL_ARG_STRING, O(script_dir), "DIR", 0, 0, NULL, NULL},
    {"sysfs", 0, CTL_ARG_STRING, O(sysfs), "DIR", 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

int ctl_destroy_run(stubdm_ctx *ctx, const struct ctl_global *g,
                    const struct ctl_command *cmd, int argc, char **argv)
{
    struct destroy_opts o = {.guest = CTL_UNSET_DOMID};
    struct ctl_args a;
    uint32_t stubdom = 0;
    int rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a)))
        return rc;
    if (a.npos > 1 || a.nrest)
        return ctl_usage_error(cmd, "unexpected argument '%s'",
                               a.npos > 1 ? a.pos[1] : a.rest[0]);
    if (a.npos && !ctl_parse_domid(a.pos[0], &stubdom))
        return ctl_usage_error(cmd, "bad STUBDOM domid '%s'", a.pos[0]);
    if ((a.npos == 1) == (o.guest != CTL_UNSET_DOMID))
        return ctl_usage_error(cmd, "need a STUBDOM domid or --guest DOMID");
    if (o.script_dir && stubdm_ctx_set_hotplug_dir(ctx, o.script_dir))
        return ctl_usage_error(cmd, "--script-dir needs an absolute "
                                    "directory");
    if (o.sysfs && stubdm_ctx_set_sysfs_root(ctx, o.sysfs))
        return ctl_usage_error(cmd, "--sysfs: %s", stubdm_ctx_errmsg(ctx));
    if (o.guest != CTL_UNSET_DOMID) {
        rc = stubdm_stubdom_find_by_guest(ctx, o.guest, &stubdom);
        if (rc)
            return ctl_report_error(ctx, g, "destroy", rc, NULL);
    }
    rc = stubdm_stubdom_destroy_by_domid_sync(
        ctx, stubdom, o.force ? STUBDM_STUBDOM_DESTROY_FORCE : 0);
    if (rc)
        return ctl_report_error(ctx, g, "destroy", rc, NULL);
    if (g->json)
        printf("{\"stubdom\":%u,\"state\":\"destroyed\"}\n", stubdom);
    else
        fprintf(stderr, "stubdomain %u destroyed\n", stubdom);
    return CTL_EXIT_OK;
}

const char ctl_destroy_help[] =
    "Destroys the domain, then removes the contract, its devices,\n"
    "/local/domain/STUBDOM and its /vm entry.  With --guest, the\n"
    "stubdomain is found through the guest's device-model-domid.\n"
    "A domain that is not a stubdomain (no dom0-owned target, no\n"
    "guest's dom0-owned device-model-domid naming it) is refused\n"
    "(exit 9) unless --force.  The backends' remove/offline\n"
    "scripts run only from /etc/xen/scripts, or from DIR with\n"
    "--script-dir.  The guest's PCI devices (docs/pci.md) are\n"
    "deassigned and the ranges their bus entries recorded revoked\n"
    "(an entry without a record: as sysfs, --sysfs DIR, says).\n";
