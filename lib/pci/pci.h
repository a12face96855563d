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

#endif /* STUBDM_PCI_PCI_H */
