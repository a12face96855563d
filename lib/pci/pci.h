/*
 * PCI passthrough (docs/pci.md): the device options, the host's sysfs
 * (pciback, a device's resources), and the attach and detach of a device
 * to a guest served by a stubdomain.
 */
#ifndef STUBDM_PCI_PCI_H
#define STUBDM_PCI_PCI_H

#include "core/base.h"

/* One pcifront bus per stubdomain; Linux's pcifront and pciback take
 * any number, this bounds what a spawn or a peer's num_devs can ask. */
#define STUBDM__PCI_MAX_DEVS 16

struct stubdm_pci_dev {
    stubdm_pci_addr addr;
    int vslot; /* -1: QEMU chooses */
    unsigned flags;
};

#define STUBDM__PCI_FLAGS_ALL                                                 \
    (STUBDM_PCI_PERMISSIVE | STUBDM_PCI_MSITRANSLATE |                        \
     STUBDM_PCI_POWER_MGMT | STUBDM_PCI_RDM_STRICT |                          \
     STUBDM_PCI_NO_INTERRUPT_CONTROL)

/* The same device (host address). */
bool stubdm__pci_addr_eq(const stubdm_pci_addr *a, const stubdm_pci_addr *b);
/* Parse exactly the n bytes at s (a field of a longer text, e.g. a line
 * of pciback's slots); same forms as stubdm_pci_addr_parse. */
int stubdm__pci_addr_parse_n(const char *s, size_t n, stubdm_pci_addr *out);
/* The same, also in the form pciback publishes as vdev-N (a two-digit
 * function, "SSSS:BB:DD.0F"). */
int stubdm__pci_vdev_parse_n(const char *s, size_t n, stubdm_pci_addr *out);

/* ---- the host's sysfs (sysfs.c) ----------------------------------------- */

/* What a device's resource file has: its BARs and ROM (Linux's first 7
 * lines, as libxl reads), the used ones only. */
#define STUBDM__PCI_NUM_BARS 7
struct stubdm__pci_bar {
    uint64_t start, size;
    bool io; /* I/O ports, else MMIO */
};
struct stubdm__pci_res {
    struct stubdm__pci_bar bar[STUBDM__PCI_NUM_BARS];
    size_t nbars;
    uint32_t irq; /* legacy INTx line, 0: none */
};

/* The device exists and is bound to pciback; else the error names the
 * driver it is bound to (STUBDM_EPERM) or says it does not exist
 * (STUBDM_ENOENT). */
int stubdm__pci_sysfs_check(stubdm_ctx *ctx, const stubdm_pci_addr *a);
/* Its BARs and irq (STUBDM_EPROTO: a malformed file, naming the line). */
int stubdm__pci_sysfs_resources(stubdm_ctx *ctx, const stubdm_pci_addr *a,
                                struct stubdm__pci_res *out);
/* The parser behind it, on a resource file's and an irq file's text. */
int stubdm__pci_parse_resource(const char *text, size_t len,
                               struct stubdm__pci_res *out, size_t *bad_line);
int stubdm__pci_parse_irq(const char *text, size_t len, uint32_t *irq);
/* r as the resource file's lines (the used ranges only; one unused line
 * when there is none), for the backend entry that records what was
 * granted; read back with stubdm__pci_parse_resource.  0 or
 * STUBDM_ELIMIT. */
int stubdm__pci_res_render(const struct stubdm__pci_res *r, char *out,
                           size_t len);
/* Reset through pciback's do_flr, else the device's reset; a device with
 * neither is logged and is no error (libxl does the same). */
int stubdm__pci_sysfs_reset(stubdm_ctx *ctx, const stubdm_pci_addr *a);
/* pciback's permissive flag for the device. */
int stubdm__pci_sysfs_permissive(stubdm_ctx *ctx, const stubdm_pci_addr *a);
/* pciback's allow_interrupt_control, else allow_msi_enable (older
 * kernels); a pciback with neither is logged and is no error. */
int stubdm__pci_sysfs_interrupt_control(stubdm_ctx *ctx,
                                        const stubdm_pci_addr *a);

/* ---- the stubdomain's PCI bus in xenstore (backend.c) ------------------- */

void stubdm__pci_backend_path(uint32_t stub, char *out, size_t len);
void stubdm__pci_frontend_path(uint32_t stub, char *out, size_t len);
/* The nodes adding device d as entry n (n 0: the bus too). */
int stubdm__pci_backend_nodes(uint32_t stub, unsigned n,
                              const struct stubdm_pci_dev *d,
                              const struct stubdm__pci_res *r,
                              stubdm_nodes *l);
/* Add d in one transaction; *n_out its entry.  STUBDM_EBUSY: already
 * there; STUBDM_ELIMIT: the bus is full. */
int stubdm__pci_backend_add(stubdm_ctx *ctx, uint32_t stub,
                            const struct stubdm_pci_dev *d,
                            const struct stubdm__pci_res *r, unsigned *n_out);
/* What entry idx records as granted (res-N, irq-N: dom0's nodes, the
 * stubdomain only reads them), strictly parsed.  STUBDM_ENOENT: none. */
int stubdm__pci_backend_res(stubdm_ctx *ctx, uint32_t stub, unsigned idx,
                            struct stubdm__pci_res *r);
/* Remove a's entry (the later ones renumbered; the last device takes the
 * bus and its frontend); absent is no error (*found false). */
int stubdm__pci_backend_remove(stubdm_ctx *ctx, uint32_t stub,
                               const stubdm_pci_addr *a, bool *found);
/* Tell pciback the device goes: state-N Closing, the bus
 * Reconfiguring.  STUBDM_ENOENT: not on the bus. */
int stubdm__pci_backend_close(stubdm_ctx *ctx, uint32_t stub,
                              const stubdm_pci_addr *a);
/* a's entry on the bus, or STUBDM_ENOENT (no ctx message). */
int stubdm__pci_backend_find(stubdm_ctx *ctx, uint32_t stub,
                             const stubdm_pci_addr *a, unsigned *idx);
/* The bus as stubdm_pci_list shows it, read into l (no allocation). */
struct stubdm_pci_list {
    size_t n;
    stubdm_pci_addr addr[STUBDM__PCI_MAX_DEVS];
    int vslot[STUBDM__PCI_MAX_DEVS];
    unsigned idx[STUBDM__PCI_MAX_DEVS]; /* its entry N */
};
int stubdm__pci_list_read(stubdm_ctx *ctx, uint32_t stub,
                          struct stubdm_pci_list *l);
/* The backend's state (a xenbus state, strictly parsed). */
int stubdm__pci_backend_state(stubdm_ctx *ctx, uint32_t stub, unsigned *state);
/* Entry idx's address as the stubdomain sees it, published by pciback as
 * vdev-N once it exported the device (its virtual bus in pciback's
 * default mode, the host address in its passthrough mode).  ENOENT when
 * pciback has not published one. */
int stubdm__pci_backend_vdev(stubdm_ctx *ctx, uint32_t stub, unsigned idx,
                             stubdm_pci_addr *out);

/* ---- the dom0 side (grant.c) --------------------------------------------- */

/* Steps 1-6 of docs/pci.md for d: pciback's, resources permitted to guest
 * and stub, the flags, assigned to guest.  A failure leaves nothing
 * granted; its message names the device. */
int stubdm__pci_grant(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                      const struct stubdm_pci_dev *d,
                      struct stubdm__pci_res *granted);
/* Undo it all (what was not granted is no error); the first error.  r:
 * what was granted (recorded in the bus), NULL: sysfs's ranges now. */
int stubdm__pci_revoke(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                       const struct stubdm_pci_dev *d,
                       const struct stubdm__pci_res *r);
/* Revoke what entry idx of stub's bus records (sysfs when it records
 * nothing). */
int stubdm__pci_revoke_entry(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                             const struct stubdm_pci_dev *d, unsigned idx);

/* ---- at spawn and teardown (attach.c) ------------------------------------ */

/* A guest given devices at spawn must not have hvmloader relocate RAM
 * above the MMIO hole (Qubes #4321; Xen 4.19 writes it for stubdomains
 * too): hvmloader/allow-memory-relocate = 0 unless it already is.  The
 * node is the guest's boot configuration, read once by its hvmloader: it
 * stays for the guest's life (its directory goes with the domain). */
int stubdm__pci_guest_no_relocate(stubdm_ctx *ctx, uint32_t guest);
/* The dom0 and xenstore parts of an attach, for a stubdomain still paused
 * (the spawn's DEVICES step); nothing left on failure. */
int stubdm__pci_prepare(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                        const struct stubdm_pci_dev *d);
/* The rest of it once QMP is open: the wait for Connected, device_add,
 * query-pci (a failure undoes the prepared part too). */
int stubdm__pci_attach_prepared(stubdm_ctx *ctx, uint32_t stub, uint32_t guest,
                                const struct stubdm_pci_dev *d, stubdm_qmp *q,
                                int timeout_ms, stubdm_done_fn *done,
                                void *user, stubdm_op **op_out);
/* A destroyed stubdomain's devices (read from its bus): the guest's
 * permissions revoked, its devices deassigned. */
int stubdm__pci_teardown(stubdm_ctx *ctx, uint32_t stub, bool have_guest,
                         uint32_t guest);

/* QEMU's id of the device (libxl's, so either finds the other's). */
void stubdm__pci_qdev_id(const stubdm_pci_addr *a, char *out, size_t len);

#endif /* STUBDM_PCI_PCI_H */
