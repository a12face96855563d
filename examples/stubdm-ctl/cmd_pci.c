/*
 * stubdm-ctl pci-attach STUBDOM GUEST BDF [options]
 * stubdm-ctl pci-detach STUBDOM GUEST BDF [options]
 * stubdm-ctl pci-list STUBDOM
 *
 * PCI passthrough to a running guest through its stubdomain
 * (docs/pci.md): the library's attach and detach over one QMP
 * connection, and the stubdomain's PCI bus read back.
 */
#include "qmp_conn.h"

#include <string.h>

struct pci_args {
    struct qmp_args q; /* first: the shared QMP options' offsets */
    uint64_t vslot;
    bool permissive, power_mgmt, msitranslate, rdm_strict, no_intr;
    const char *sysfs;
    int pci_timeout_ms;
};

#define O(field) offsetof(struct pci_args, field)
const struct ctl_option ctl_pci_attach_options[] = {
    {"vslot", 0, CTL_ARG_UINT, O(vslot), "N", 1, 31, NULL, NULL},
    {"permissive", 0, CTL_ARG_FLAG, O(permissive), NULL, 0, 0, NULL, NULL},
    {"power-mgmt", 0, CTL_ARG_FLAG, O(power_mgmt), NULL, 0, 0, NULL, NULL},
    {"msitranslate", 0, CTL_ARG_FLAG, O(msitranslate), NULL, 0, 0, NULL, NULL},
    {"rdm-strict", 0, CTL_ARG_FLAG, O(rdm_strict), NULL, 0, 0, NULL, NULL},
    {"no-interrupt-control", 0, CTL_ARG_FLAG, O(no_intr), NULL, 0, 0, NULL,
     NULL},
    {"sysfs", 0, CTL_ARG_STRING, O(sysfs), "DIR", 0, 0, NULL, NULL},
    {"pci-timeout", 0, CTL_ARG_SECONDS, O(pci_timeout_ms), "S", 0, 0, NULL,
     NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, ctl_qmp_conn_options},
};
const struct ctl_option ctl_pci_detach_options[] = {
    {"sysfs", 0, CTL_ARG_STRING, O(sysfs), "DIR", 0, 0, NULL, NULL},
    {"pci-timeout", 0, CTL_ARG_SECONDS, O(pci_timeout_ms), "S", 0, 0, NULL,
     NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, ctl_qmp_conn_options},
};
const struct ctl_option ctl_pci_list_options[] = {
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

#define PCI_ARGS_DEFAULTS                                                     \
    {                                                                         \
        .q = QMP_ARGS_DEFAULTS, .vslot = CTL_UNSET_UINT,                      \
        .pci_timeout_ms = 60000                                               \
    }

struct done {
    bool done;
    int rc;
};

static void on_done(stubdm_op *op, int rc, void *user)
{
    struct done *d = user;

    (void)op;
    d->done = true;
    d->rc = rc;
}

/* STUBDOM GUEST BDF, the sysfs root; 0 or the exit code. */
static int common(stubdm_ctx *ctx, const struct ctl_command *cmd,
                  const struct ctl_args *p, struct pci_args *a,
                  stubdm_pci_addr *addr)
{
    int code;

    if ((code = ctl_qmp_domids(cmd, p, &a->q)))
        return code;
    if (p->npos != 3 || stubdm_pci_addr_parse(p->pos[2], addr))
        return ctl_usage_error(cmd, "need a PCI address SSSS:BB:DD.F after "
                                    "STUBDOM and GUEST");
    if (a->sysfs && stubdm_ctx_set_sysfs_root(ctx, a->sysfs))
        return ctl_usage_error(cmd, "--sysfs: %s", stubdm_ctx_errmsg(ctx));
    return 0;
}

static int finish(stubdm_ctx *ctx, const struct ctl_global *g,
                  const char *what, stubdm_op *op, struct done *d,
                  const stubdm_pci_addr *addr)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN];
    int code = ctl_run_until(ctx, g, what, op, &d->done, NULL, NULL);

    if (!code && d->rc)
        code = ctl_report_error(ctx, g, what, d->rc, stubdm_op_errmsg(op));
    stubdm_op_free(op);
    if (code)
        return code;
    stubdm_pci_addr_format(addr, bdf, sizeof(bdf));
    if (g->json)
        printf("{\"ok\":true,\"command\":\"%s\",\"device\":\"%s\"}\n", what,
               bdf);
    else
        printf("%s: %s\n", what, bdf);
    return CTL_EXIT_OK;
}

static unsigned flags_of(const struct pci_args *a)
{
    return (a->permissive ? STUBDM_PCI_PERMISSIVE : 0) |
           (a->power_mgmt ? STUBDM_PCI_POWER_MGMT : 0) |
           (a->msitranslate ? STUBDM_PCI_MSITRANSLATE : 0) |
           (a->rdm_strict ? STUBDM_PCI_RDM_STRICT : 0) |
           (a->no_intr ? STUBDM_PCI_NO_INTERRUPT_CONTROL : 0);
}

int ctl_pci_attach_run(stubdm_ctx *ctx, const struct ctl_global *g,
                       const struct ctl_command *cmd, int argc, char **argv)
{
    struct pci_args a = PCI_ARGS_DEFAULTS;
    struct ctl_args p;
    stubdm_pci_addr addr;
    char bdf[STUBDM_PCI_ADDR_STRLEN];
    stubdm_pci_dev *d = NULL;
    stubdm_qmp *q = NULL;
    stubdm_op *op = NULL;
    struct done dn = {0};
    int code, rc;

    if ((code = ctl_parse(cmd, cmd->options, argc, argv, false, &a, &p)) ||
        (code = common(ctx, cmd, &p, &a, &addr)))
        return code;
    stubdm_pci_addr_format(&addr, bdf, sizeof(bdf));
    rc = stubdm_pci_dev_new(bdf, &d);
    if (!rc && a.vslot != CTL_UNSET_UINT)
        rc = stubdm_pci_dev_set_vslot(d, (int)a.vslot);
    if (!rc)
        rc = stubdm_pci_dev_set_flags(d, flags_of(&a));
    if (rc) {
        stubdm_pci_dev_free(d);
        return ctl_report_error(ctx, g, "pci-attach", rc, NULL);
    }
    if ((code = ctl_qmp_open(ctx, g, &a.q, "pci-attach", &q))) {
        stubdm_pci_dev_free(d);
        return code;
    }
    rc = stubdm_pci_attach(ctx, a.q.stubdom, a.q.guest, d, q, a.pci_timeout_ms,
                           on_done, &dn, &op);
    stubdm_pci_dev_free(d);
    code = rc ? ctl_report_error(ctx, g, "pci-attach", rc, NULL)
              : finish(ctx, g, "pci-attach", op, &dn, &addr);
    stubdm_qmp_free(q);
    return code;
}

int ctl_pci_detach_run(stubdm_ctx *ctx, const struct ctl_global *g,
                       const struct ctl_command *cmd, int argc, char **argv)
{
    struct pci_args a = PCI_ARGS_DEFAULTS;
    struct ctl_args p;
    stubdm_pci_addr addr;
    stubdm_qmp *q = NULL;
    stubdm_op *op = NULL;
    struct done dn = {0};
    int code, rc;

    if ((code = ctl_parse(cmd, cmd->options, argc, argv, false, &a, &p)) ||
        (code = common(ctx, cmd, &p, &a, &addr)))
        return code;
    if ((code = ctl_qmp_open(ctx, g, &a.q, "pci-detach", &q)))
        return code;
    rc = stubdm_pci_detach(ctx, a.q.stubdom, a.q.guest, &addr, q,
                           a.pci_timeout_ms, on_done, &dn, &op);
    code = rc ? ctl_report_error(ctx, g, "pci-detach", rc, NULL)
              : finish(ctx, g, "pci-detach", op, &dn, &addr);
    stubdm_qmp_free(q);
    return code;
}

int ctl_pci_list_run(stubdm_ctx *ctx, const struct ctl_global *g,
                     const struct ctl_command *cmd, int argc, char **argv)
{
    struct pci_args a = PCI_ARGS_DEFAULTS;
    struct ctl_args p;
    stubdm_pci_list *l = NULL;
    uint32_t stub;
    int code, rc;

    if ((code = ctl_parse(cmd, cmd->options, argc, argv, false, &a, &p)))
        return code;
    if (p.npos != 1 || !ctl_parse_domid(p.pos[0], &stub))
        return ctl_usage_error(cmd, "need one STUBDOM domid");
    if ((rc = stubdm_pci_list_new(ctx, stub, &l)))
        return ctl_report_error(ctx, g, "pci-list", rc, NULL);
    if (g->json)
        printf("{\"ok\":true,\"command\":\"pci-list\",\"devices\":[");
    for (size_t i = 0; i < stubdm_pci_list_count(l); i++) {
        stubdm_pci_addr ad = stubdm_pci_list_addr(l, i);
        char bdf[STUBDM_PCI_ADDR_STRLEN];
        int vs = stubdm_pci_list_vslot(l, i);
        stubdm_pci_addr_format(&ad, bdf, sizeof(bdf));
        if (g->json)
            printf("%s{\"device\":\"%s\",\"vslot\":%d}", i ? "," : "", bdf,
                   vs);
        else if (vs >= 0)
            printf("%s %02x.0\n", bdf, (unsigned)vs);
        else
            printf("%s -\n", bdf);
    }
    if (g->json)
        printf("]}\n");
    stubdm_pci_list_free(l);
    return CTL_EXIT_OK;
}

const char ctl_pci_attach_help[] =
    "Attaches the host PCI device BDF (bound to pciback) to the running\n"
    "guest GUEST through its stubdomain STUBDOM (docs/pci.md): reset,\n"
    "permissions to both domains, assignment to the guest, pcifront, QMP\n"
    "device_add.  A failure undoes every step.\n"
    "  --vslot N              the guest's slot (1-31; default: QEMU's)\n"
    "  --permissive           pciback's and QEMU's permissive mode\n"
    "  --power-mgmt           power_mgmt (a Qubes QEMU property)\n"
    "  --msitranslate         opts msitranslate=1\n"
    "  --rdm-strict           rdm_policy=strict (default relaxed)\n"
    "  --no-interrupt-control no pciback allow_interrupt_control\n"
    "  --sysfs DIR            sysfs root (default /sys; tests)\n"
    "  --pci-timeout S        bound on the attach (default "
    "60)\n" CTL_QMP_CONN_HELP
    "Exit: 0 ok, 3 timeout, 4 stubdomain gone, 5 not pciback's or no\n"
    "such device, 7 device_add refused, 9 invalid, 10 already attached,\n"
    "11 no IOMMU or a hypervisor call failed.\n";
const char ctl_pci_detach_help[] =
    "Detaches BDF from GUEST: device_del, QEMU's DEVICE_DELETED, the\n"
    "device off the stubdomain's PCI bus, permissions revoked, the device\n"
    "deassigned.\n"
    "  --sysfs DIR            sysfs root (default /sys; tests)\n"
    "  --pci-timeout S        bound on QEMU letting go (default "
    "60)\n" CTL_QMP_CONN_HELP
    "Exit: 0 ok, 3 QEMU did not let go (still attached), 5 not attached.\n";
const char ctl_pci_list_help[] =
    "Lists the PCI devices on STUBDOM's bus: 'BDF SLOT' per line (SLOT\n"
    "the guest's, '-' when not known yet).\n";
