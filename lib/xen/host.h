/*
 * Host backends: who creates, starts and destroys a stubdomain.  The real
 * one is in xenctrl.c (libxenctrl/libxenguest); the simulated one in
 * host_sim.c (control commands to the mock xenstored, which plays the
 * hypervisor).  Everything else a spawn does is plain xenstore, shared.
 */
#ifndef STUBDM_XEN_HOST_H
#define STUBDM_XEN_HOST_H

#include "core/base.h"

/* What to build, and what the builder returns. */
struct stubdm__build {
    /* in */
    uint32_t domid_req; /* 0: let the hypervisor choose */
    uint32_t guest;
    const char *name;
    const char *kernel, *ramdisk, *cmdline;
    uint64_t memory_kib;
    unsigned vcpus;
    const char *xsm_label; /* NULL: default label */
    uint8_t uuid[16];
    /* the simulated host's stand-in program and its arguments */
    const char *sim_program;
    const char *const *sim_args;
    size_t sim_nargs;
    /* out */
    uint32_t domid;
    uint64_t store_mfn, console_mfn;
    uint32_t store_port, console_port;
};

struct stubdm__host_ops {
    const char *name; /* "xen", "simulated" */
    bool simulated;
    /* Create the domain paused and load its kernel; fills the out fields.
     * On failure nothing is left (the builder destroys what it made). */
    int (*create)(stubdm_ctx *ctx, struct stubdm__build *b);
    /* The hypervisor side of the target relation (xenstore's is the
     * contract's xs_set_target). */
    int (*set_target)(stubdm_ctx *ctx, uint32_t domid, uint32_t guest);
    int (*unpause)(stubdm_ctx *ctx, const struct stubdm__build *b);
    /* Destroy; a domain that no longer exists is not an error. */
    int (*destroy)(stubdm_ctx *ctx, uint32_t domid);
    /* Pause (true) or unpause (false) a domain that has been started. */
    int (*pause)(stubdm_ctx *ctx, uint32_t domid, bool pause);

    /* PCI passthrough (pci/, docs/pci.md).  Each names the device and
     * the domain in its message; grant false revokes. */
    /* Assign the device to the domain in the IOMMU (strict: reserved
     * device memory conflicts fail).  No IOMMU: STUBDM_ENOTSUP. */
    int (*pci_assign)(stubdm_ctx *ctx, uint32_t domid,
                      const stubdm_pci_addr *a, bool strict);
    /* Give it back (a device not assigned to domid is not an error). */
    int (*pci_deassign)(stubdm_ctx *ctx, uint32_t domid,
                        const stubdm_pci_addr *a);
    int (*ioport_permission)(stubdm_ctx *ctx, uint32_t domid, uint32_t first,
                             uint32_t n, bool grant);
    /* In machine frames. */
    int (*iomem_permission)(stubdm_ctx *ctx, uint32_t domid, uint64_t first,
                            uint64_t n, bool grant);
    /* The pirq of the host irq, mapped into domid (*pirq in: the irq). */
    int (*map_pirq)(stubdm_ctx *ctx, uint32_t domid, uint32_t irq,
                    uint32_t *pirq);
    /* STUBDM_ENOENT: the pirq is not mapped (Xen says EINVAL). */
    int (*unmap_pirq)(stubdm_ctx *ctx, uint32_t domid, uint32_t pirq);
    int (*irq_permission)(stubdm_ctx *ctx, uint32_t domid, uint32_t pirq,
                          bool grant);
};

extern const struct stubdm__host_ops stubdm__host_xen; /* xenctrl.c */
extern const struct stubdm__host_ops stubdm__host_sim; /* host_sim.c */

/* The backend chosen for the ctx (stubdm_ctx_set_host; AUTO: Xen if a
 * hypervisor is present, else simulated). */
const struct stubdm__host_ops *stubdm__host(stubdm_ctx *ctx);

#endif /* STUBDM_XEN_HOST_H */
