/*
 * The dom0 side of a device (docs/pci.md, steps 1-6): pciback's check and
 * reset, its resources permitted to the guest and to its stubdomain, the
 * pciback flags, the assignment to the guest.  Revoking undoes all of it
 * from sysfs again, so a detach in another process (stubdm-ctl) revokes
 * exactly what an attach granted; revoking what was never granted is no
 * error, so a failed grant is undone the same way.
 */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "pci/pci.h"
#include "xen/host.h"

#include <stdio.h>
#include <string.h>

#define MOD "pci"
#define PAGE_SHIFT 12
#define PAGE_SIZE (1ull << PAGE_SHIFT)

/* Grant (or revoke) one domain the device's ranges and interrupt. */
static int permit(stubdm_ctx *ctx, const struct stubdm__host_ops *h,
                  uint32_t domid, const struct stubdm__pci_res *r, bool grant)
{
    int rc = 0, first = 0;

    for (size_t i = 0; i < r->nbars; i++) {
        const struct stubdm__pci_bar *b = &r->bar[i];
        if (b->io)
            rc = h->ioport_permission(ctx, domid, (uint32_t)b->start,
                                      (uint32_t)b->size, grant);
        else
            rc = h->iomem_permission(ctx, domid, b->start >> PAGE_SHIFT,
                                     (b->size + (b->start & (PAGE_SIZE - 1)) +
                                      PAGE_SIZE - 1) >>
                                         PAGE_SHIFT,
                                     grant);
        if (rc && grant)
            return rc;
        first = first ? first : rc;
    }
    if (!r->irq)
        return first;
    if (grant) {
        uint32_t pirq = r->irq;
        if ((rc = h->map_pirq(ctx, domid, r->irq, &pirq)))
            return rc;
        return h->irq_permission(ctx, domid, pirq, true);
    }
    /* The pirq was asked equal to the irq (as libxl does).  QEMU's
     * xen-pci-passthrough unmaps the guest's pirq itself when it lets the
     * device go, so one already unmapped is what a detach expects. */
    rc = h->irq_permission(ctx, domid, r->irq, false);
    first = first ? first : rc;
    rc = h->unmap_pirq(ctx, domid, r->irq);
    if (rc == STUBDM_ENOENT) {
        LOG_DEBUG(ctx, MOD, "%s", ctx->errmsg);
        stubdm__clear_error(ctx);
        rc = 0;
    }
    return first ? first : rc;
}

/* Prefix the ctx's message with the device. */
static int named(stubdm_ctx *ctx, int rc, const char *bdf)
{
    char msg[STUBDM_ERRMSG_MAX];

    if (!strncmp(ctx->errmsg, "PCI device ", 11))
        return rc;
    snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
    return stubdm__fail(ctx, rc, ctx->os_errno, "PCI device %s: %s", bdf, msg);
}

int stubdm__pci_revoke(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                       const struct stubdm_pci_dev *d,
                       const struct stubdm__pci_res *granted)
{
    const struct stubdm__host_ops *h = stubdm__host(ctx);
    struct stubdm__pci_res r = {0};
    int rc = 0, first;

    first = h->pci_deassign(ctx, guest, &d->addr);
    if (granted)
        r = *granted;
    else
        rc = stubdm__pci_sysfs_resources(ctx, &d->addr, &r);
    /* What was permitted is read again: a device gone from sysfs cannot
     * say, and that is a failure to report, not an absence to ignore. */
    if (rc == STUBDM_ENOENT) {
        char msg[STUBDM_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
        rc = stubdm__fail(ctx, STUBDM_EFAIL, ctx->os_errno,
                          "revoking a PCI device's ranges: %s", msg);
    }
    if (!rc) {
        int a = permit(ctx, h, stub, &r, false);
        int b = permit(ctx, h, guest, &r, false);
        rc = a ? a : b;
    }
    return first ? first : rc;
}

int stubdm__pci_revoke_entry(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                             const struct stubdm_pci_dev *d, unsigned idx)
{
    struct stubdm__pci_res r = {0};
    int rc = stubdm__pci_backend_res(ctx, stub, idx, &r);

    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        return stubdm__pci_revoke(ctx, guest, stub, d, NULL);
    }
    return rc ? rc : stubdm__pci_revoke(ctx, guest, stub, d, &r);
}

int stubdm__pci_grant(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                      const struct stubdm_pci_dev *d,
                      struct stubdm__pci_res *granted)
{
    const struct stubdm__host_ops *h = stubdm__host(ctx);
    struct stubdm__pci_res r = {0};
    char bdf[STUBDM_PCI_ADDR_STRLEN], msg[STUBDM_ERRMSG_MAX];
    int rc, os;

    stubdm_pci_addr_format(&d->addr, bdf, sizeof(bdf));
    if ((rc = stubdm__pci_sysfs_check(ctx, &d->addr)) ||
        (rc = stubdm__pci_sysfs_resources(ctx, &d->addr, &r)) ||
        (rc = stubdm__pci_sysfs_reset(ctx, &d->addr)))
        return named(ctx, rc, bdf);
    /* The guest's first: QEMU in the stubdomain maps what the guest may
     * map, for the guest. */
    if ((rc = permit(ctx, h, guest, &r, true)) ||
        (rc = permit(ctx, h, stub, &r, true)))
        goto undo;
    if ((d->flags & STUBDM_PCI_PERMISSIVE) &&
        (rc = stubdm__pci_sysfs_permissive(ctx, &d->addr)))
        goto undo;
    if (!(d->flags & STUBDM_PCI_NO_INTERRUPT_CONTROL) &&
        (rc = stubdm__pci_sysfs_interrupt_control(ctx, &d->addr)))
        goto undo;
    if ((rc = h->pci_assign(ctx, guest, &d->addr,
                            (d->flags & STUBDM_PCI_RDM_STRICT) != 0)))
        goto undo;
    LOG_DEBUG(ctx, MOD,
              "PCI device %s: %zu ranges and irq %u permitted to domains "
              "%u and %u, assigned to %u",
              bdf, r.nbars, r.irq, guest, stub, guest);
    *granted = r;
    return 0;

undo:
    snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
    os = ctx->os_errno;
    stubdm__pci_revoke(ctx, guest, stub, d, &r);
    stubdm__fail(ctx, rc, os, "%s", msg);
    return named(ctx, rc, bdf);
}
