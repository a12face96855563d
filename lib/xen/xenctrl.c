/*
 * Every libxenctrl call of the library lives in this file: libxenctrl has
 * no stable ABI (it is rebuilt per Xen release), so confining it keeps the
 * rest of the library on the stable libraries (xenstore, xenvchan,
 * xenforeignmemory, ...) and makes a port to a new Xen a one-file change.
 */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "xen/host.h"
#include "xen/hv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xentoollog.h>

bool stubdm__xc_present(stubdm_ctx *ctx)
{
    struct stubdm__hv *hv = &ctx->hv;
    xentoollog_logger *logger;

    if (hv->probed)
        return hv->present;
    hv->probed = true;
    /* No privcmd device: no hypervisor, no need to let libxenctrl fail. */
    if (access("/dev/xen/privcmd", F_OK) != 0 &&
        access("/proc/xen/privcmd", F_OK) != 0)
        return false;
    logger = stubdm__xtl_logger_new(ctx, "xc");
    if (!logger)
        return false;
    hv->xch = xc_interface_open(logger, logger, 0);
    if (!hv->xch) {
        stubdm__log(ctx, STUBDM_LOG_DEBUG, errno, "xc",
                    "no usable hypervisor interface: %s", strerror(errno));
        stubdm__xtl_logger_free(logger);
        return false;
    }
    hv->xtl = logger;
    hv->present = true;
    return true;
}

int stubdm__xc_domain_info(stubdm_ctx *ctx, uint32_t domid,
                           struct stubdm__xc_dominfo *info)
{
    xc_domaininfo_t di;
    int n;

    memset(info, 0, sizeof(*info));
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    n = xc_domain_getinfolist(ctx->hv.xch, domid, 1, &di);
    if (n < 0)
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "getting the state of domain %u: %s", domid,
                            strerror(errno));
    if (n == 0 || di.domain != domid)
        return 0; /* does not exist */
    info->exists = true;
    info->dying = (di.flags & XEN_DOMINF_dying) != 0;
    info->shutdown = (di.flags & XEN_DOMINF_shutdown) != 0;
    info->shutdown_reason = (di.flags >> XEN_DOMINF_shutdownshift) &
                            XEN_DOMINF_shutdownmask;
    info->crashed = info->shutdown && info->shutdown_reason == SHUTDOWN_crash;
    return 0;
}

void stubdm__xc_dispose(stubdm_ctx *ctx)
{
    struct stubdm__hv *hv = &ctx->hv;

    if (hv->xch)
        xc_interface_close(hv->xch);
    stubdm__xtl_logger_free(hv->xtl);
    memset(hv, 0, sizeof(*hv));
}

/* ---- the PV domain builder ---------------------------------------------- */
/*
 * The PV domain builder for stubdomains (the Xen host backend of spawn.c).
 *
 * It follows the order of libxl's libxl__domain_make / libxl__build_pre /
 * libxl__build_pv (read, not copied), so that the domain it makes is
 * the one libxl would make.  Only a hypervisor runs it (docs/real-xen.md).
 */

#include <xenguest.h>

/* libxl's LIBXL_MAXMEM_CONSTANT: slack above the target, in KiB. */
#define STUBDM_MAXMEM_SLACK_KIB 1024
/* What libxl gives a domain by default (xl.cfg max_grant_frames, etc.). */
#define STUBDM_MAX_GRANT_FRAMES 64
#define STUBDM_MAX_MAPTRACK_FRAMES 1024
#define STUBDM_MAX_EVTCHN_PORT 1023

static int xc_failf(stubdm_ctx *ctx, int err, const char *what, uint32_t domid)
{
    return stubdm__fail(ctx, STUBDM_EXEN, err, "%s (domain %u): %s", what,
                        domid, strerror(err));
}

/* Destroy quietly: used on the failure paths of the builder itself. */
static void xen_destroy_quiet(stubdm_ctx *ctx, uint32_t domid)
{
    if (xc_domain_destroy(ctx->hv.xch, domid) && errno != ESRCH)
        stubdm__log(ctx, STUBDM_LOG_WARN, errno, "xc",
                    "destroying half-built domain %u: %s", domid,
                    strerror(errno));
}

static int xen_load_kernel(stubdm_ctx *ctx, struct stubdm__build *b,
                           uint32_t domid, uint32_t store_port,
                           uint32_t console_port)
{
    xc_interface *xch = ctx->hv.xch;
    struct xc_dom_image *dom;
    const char *what;
    int err = 0;

    dom = xc_dom_allocate(xch, b->cmdline ? b->cmdline : "", NULL);
    if (!dom)
        return xc_failf(ctx, errno ? errno : ENOMEM, "xc_dom_allocate", domid);
    dom->container_type = XC_DOM_PV_CONTAINER;
    what = "loading the kernel (xc_dom_kernel_file)";
    if (xc_dom_kernel_file(dom, b->kernel))
        goto fail;
    what = "loading the ramdisk (xc_dom_module_file)";
    if (b->ramdisk && xc_dom_module_file(dom, b->ramdisk, NULL))
        goto fail;
    dom->flags = 0;
    dom->console_evtchn = console_port;
    dom->console_domid = 0;
    dom->xenstore_evtchn = store_port;
    dom->xenstore_domid = 0;
    what = "xc_dom_boot_xen_init";
    if (xc_dom_boot_xen_init(dom, xch, domid))
        goto fail;
    what = "parsing the kernel image (xc_dom_parse_image)";
    if (xc_dom_parse_image(dom))
        goto fail;
    what = "xc_dom_mem_init";
    if (xc_dom_mem_init(dom, (unsigned)(b->memory_kib / 1024)))
        goto fail;
    what = "xc_dom_boot_mem_init";
    if (xc_dom_boot_mem_init(dom))
        goto fail;
    what = "xc_dom_build_image";
    if (xc_dom_build_image(dom))
        goto fail;
    what = "xc_dom_boot_image";
    if (xc_dom_boot_image(dom))
        goto fail;
    what = "xc_dom_gnttab_init";
    if (xc_dom_gnttab_init(dom))
        goto fail;
    /* A PV guest's rings are named by machine frame; xc_dom_p2m does the
     * translation (identity for translated guests). */
    b->console_mfn = xc_dom_p2m(dom, dom->console_pfn);
    b->store_mfn = xc_dom_p2m(dom, dom->xenstore_pfn);
    xc_dom_release(dom);
    return 0;

fail:
    err = errno ? errno : EINVAL;
    xc_dom_release(dom);
    return xc_failf(ctx, err, what, domid);
}

static int xen_create(stubdm_ctx *ctx, struct stubdm__build *b)
{
    struct xen_domctl_createdomain config;
    xc_interface *xch;
    uint32_t domid = b->domid_req;
    int port, rc;

    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0,
                            "no Xen hypervisor here (use the simulated host)");
    xch = ctx->hv.xch;
    memset(&config, 0, sizeof(config));
    config.flags = 0; /* PV: not hvm, no hap */
    config.max_vcpus = b->vcpus;
    config.max_evtchn_port = STUBDM_MAX_EVTCHN_PORT;
    config.max_grant_frames = STUBDM_MAX_GRANT_FRAMES;
    config.max_maptrack_frames = STUBDM_MAX_MAPTRACK_FRAMES;
    config.grant_opts = XEN_DOMCTL_GRANT_version(1);
    config.arch.emulation_flags = 0; /* PV: nothing emulated */
    memcpy(config.handle, b->uuid, sizeof(config.handle));
    if (b->xsm_label) {
        uint32_t ssid = 0;
        char label[257];
        snprintf(label, sizeof(label), "%s", b->xsm_label);
        if (xc_flask_context_to_sid(xch, label, (uint32_t)strlen(label),
                                    &ssid))
            return stubdm__fail(ctx, STUBDM_EXEN, errno, "XSM label '%s': %s",
                                b->xsm_label, strerror(errno));
        config.ssidref = ssid;
    }
    if (xc_domain_create(xch, &domid, &config))
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "creating the PV domain (xc_domain_create): %s",
                            strerror(errno));
    /* Created paused; from here on, failures destroy it. */
    b->domid = domid;
    /* Xen 4.17 still allocates the vCPUs themselves in XEN_DOMCTL_max_vcpus
     * (public/domctl.h; libxl__build_pre calls it too).  Without it vCPU 0
     * does not exist and xc_dom_boot_image fails in vcpu_x86_64:
     * "SETVCPUCONTEXT failed (rc=-1)", EINVAL (docs/real-xen.md). */
    if (xc_domain_max_vcpus(xch, domid, b->vcpus)) {
        rc = xc_failf(ctx, errno, "allocating the vCPUs (xc_domain_max_vcpus)",
                      domid);
        goto fail;
    }
    if (xc_domain_setmaxmem(xch, domid,
                            b->memory_kib + STUBDM_MAXMEM_SLACK_KIB)) {
        rc = xc_failf(ctx, errno, "setting max memory", domid);
        goto fail;
    }
    if (xc_domain_set_memmap_limit(xch, domid, (unsigned long)b->memory_kib)) {
        rc = xc_failf(ctx, errno, "setting the memory map limit", domid);
        goto fail;
    }
    port = xc_evtchn_alloc_unbound(xch, domid, 0);
    if (port < 0) {
        rc = xc_failf(ctx, errno, "allocating the xenstore event channel",
                      domid);
        goto fail;
    }
    b->store_port = (uint32_t)port;
    port = xc_evtchn_alloc_unbound(xch, domid, 0);
    if (port < 0) {
        rc = xc_failf(ctx, errno, "allocating the console event channel",
                      domid);
        goto fail;
    }
    b->console_port = (uint32_t)port;
    rc = xen_load_kernel(ctx, b, domid, b->store_port, b->console_port);
    if (rc)
        goto fail;
    LOG_DEBUG(ctx, "xc",
              "built PV domain %u (%" PRIu64 " KiB, %u vCPUs, "
              "store mfn %" PRIu64 " port %u, console mfn %" PRIu64
              " port %u)",
              domid, b->memory_kib, b->vcpus, b->store_mfn, b->store_port,
              b->console_mfn, b->console_port);
    return 0;

fail:
    xen_destroy_quiet(ctx, domid);
    b->domid = 0;
    return rc;
}

static int xen_set_target(stubdm_ctx *ctx, uint32_t domid, uint32_t guest)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_domain_set_target(ctx->hv.xch, domid, guest))
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "making domain %u the device model of %u "
                            "(xc_domain_set_target): %s",
                            domid, guest, strerror(errno));
    return 0;
}

static int xen_unpause(stubdm_ctx *ctx, const struct stubdm__build *b)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_domain_unpause(ctx->hv.xch, b->domid))
        return xc_failf(ctx, errno, "unpausing", b->domid);
    return 0;
}

static int xen_destroy(stubdm_ctx *ctx, uint32_t domid)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_domain_destroy(ctx->hv.xch, domid) && errno != ESRCH)
        return xc_failf(ctx, errno, "destroying", domid);
    return 0;
}

/* ---- pausing a running domain (stubdm_stubdom_pause/unpause) ------------ */
/* Separate from the start-up unpause above: this is for a stubdomain that
 * already runs, paused and resumed together with its guest. */
static int xen_pause(stubdm_ctx *ctx, uint32_t domid, bool pause)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (pause ? xc_domain_pause(ctx->hv.xch, domid)
              : xc_domain_unpause(ctx->hv.xch, domid))
        return xc_failf(ctx, errno, pause ? "pausing" : "unpausing", domid);
    return 0;
}

/* ---- PCI passthrough (pci/, docs/pci.md) -------------------------------- */

/* The machine SBDF of the assign domctls: segment, bus, devfn. */
static uint32_t sbdf_of(const stubdm_pci_addr *a)
{
    return ((uint32_t)a->domain << 16) | ((uint32_t)a->bus << 8) |
           ((uint32_t)a->dev << 3) | a->func;
}

static int pci_failf(stubdm_ctx *ctx, int err, const char *what,
                     const stubdm_pci_addr *a, uint32_t domid)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN];

    stubdm_pci_addr_format(a, bdf, sizeof(bdf));
    return stubdm__fail(ctx, STUBDM_EXEN, err,
                        "%s PCI device %s (domain %u): %s", what, bdf, domid,
                        strerror(err));
}

/* ENOSYS / EOPNOTSUPP: Xen was built or booted without an IOMMU (its
 * iommu= option), which is what assigning needs first. */
static bool no_iommu(int err)
{
    return err == ENOSYS || err == EOPNOTSUPP;
}

static int xen_pci_assign(stubdm_ctx *ctx, uint32_t domid,
                          const stubdm_pci_addr *a, bool strict)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN];
    uint32_t flag = strict ? 0 : XEN_DOMCTL_DEV_RDM_RELAXED;
    int err;

    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (!xc_test_assign_device(ctx->hv.xch, domid, sbdf_of(a)) &&
        !xc_assign_device(ctx->hv.xch, domid, sbdf_of(a), flag))
        return 0;
    err = errno;
    stubdm_pci_addr_format(a, bdf, sizeof(bdf));
    if (no_iommu(err))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, err,
                            "assigning PCI device %s to domain %u: the "
                            "hypervisor has no IOMMU (enable VT-d or "
                            "AMD-Vi, and Xen's iommu=): %s",
                            bdf, domid, strerror(err));
    return stubdm__fail(ctx, STUBDM_EXEN, err,
                        "assigning PCI device %s to domain %u "
                        "(xc_assign_device): %s%s",
                        bdf, domid, strerror(err),
                        err == EBUSY ? " (assigned to another domain)" : "");
}

static int xen_pci_deassign(stubdm_ctx *ctx, uint32_t domid,
                            const stubdm_pci_addr *a)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    /* EINVAL/ENODEV: not this domain's (any more). */
    if (xc_deassign_device(ctx->hv.xch, domid, sbdf_of(a)) &&
        errno != EINVAL && errno != ENODEV)
        return pci_failf(ctx, errno, "deassigning (xc_deassign_device)", a,
                         domid);
    return 0;
}

static int xen_ioport_permission(stubdm_ctx *ctx, uint32_t domid,
                                 uint32_t first, uint32_t n, bool grant)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_domain_ioport_permission(ctx->hv.xch, domid, first, n, grant))
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "%s domain %u the I/O ports 0x%x+0x%x "
                            "(xc_domain_ioport_permission): %s",
                            grant ? "granting" : "revoking", domid, first, n,
                            strerror(errno));
    return 0;
}

static int xen_iomem_permission(stubdm_ctx *ctx, uint32_t domid,
                                uint64_t first, uint64_t n, bool grant)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_domain_iomem_permission(ctx->hv.xch, domid, (unsigned long)first,
                                   (unsigned long)n, grant))
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "%s domain %u the MMIO frames 0x%" PRIx64
                            "+0x%" PRIx64 " (xc_domain_iomem_permission): %s",
                            grant ? "granting" : "revoking", domid, first, n,
                            strerror(errno));
    return 0;
}

static int xen_map_pirq(stubdm_ctx *ctx, uint32_t domid, uint32_t irq,
                        uint32_t *pirq)
{
    int p = (int)irq;

    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_physdev_map_pirq(ctx->hv.xch, domid, (int)irq, &p) || p < 0)
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "mapping irq %u into domain %u "
                            "(xc_physdev_map_pirq): %s",
                            irq, domid, strerror(errno));
    *pirq = (uint32_t)p;
    return 0;
}

static int xen_unmap_pirq(stubdm_ctx *ctx, uint32_t domid, uint32_t pirq)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_physdev_unmap_pirq(ctx->hv.xch, domid, (int)pirq) && errno != ESRCH)
        return stubdm__fail(ctx, errno == EINVAL ? STUBDM_ENOENT : STUBDM_EXEN,
                            errno,
                            "unmapping pirq %u of domain %u "
                            "(xc_physdev_unmap_pirq): %s",
                            pirq, domid, strerror(errno));
    return 0;
}

static int xen_irq_permission(stubdm_ctx *ctx, uint32_t domid, uint32_t pirq,
                              bool grant)
{
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    if (xc_domain_irq_permission(ctx->hv.xch, domid, pirq, grant))
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "%s domain %u the pirq %u "
                            "(xc_domain_irq_permission): %s",
                            grant ? "granting" : "revoking", domid, pirq,
                            strerror(errno));
    return 0;
}

const struct stubdm__host_ops stubdm__host_xen = {
    .name = "xen",
    .simulated = false,
    .create = xen_create,
    .set_target = xen_set_target,
    .unpause = xen_unpause,
    .destroy = xen_destroy,
    .pause = xen_pause,
    .pci_assign = xen_pci_assign,
    .pci_deassign = xen_pci_deassign,
    .ioport_permission = xen_ioport_permission,
    .iomem_permission = xen_iomem_permission,
    .map_pirq = xen_map_pirq,
    .unmap_pirq = xen_unmap_pirq,
    .irq_permission = xen_irq_permission,
};
