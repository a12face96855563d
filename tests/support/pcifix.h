/*
 * What the PCI suites share (test_pci, test_pci_spawn): a fake sysfs tree
 * under a temporary root (stubdm_ctx_set_sysfs_root), and reading a
 * xenstore number the way the pciback stand-ins do.
 */
#ifndef STUBDM_TEST_PCIFIX_H
#define STUBDM_TEST_PCIFIX_H

#include <xenstore.h>

/* A fresh fake sysfs: mkdtemp(root) (root holds the template, e.g.
 * "/tmp/stubdm-pci-XXXXXX") with pciback's driver and the devices
 * directory (bus/pci/drivers/pciback, bus/pci/devices). */
void pcifix_tree(char *root);
/* root/rel as a file holding text, or as a directory (existing is fine);
 * a failure fails the test. */
void pcifix_file(const char *root, const char *rel, const char *text);
void pcifix_dir(const char *root, const char *rel);
/* The decimal number at path, 99 when it is absent. */
unsigned pcifix_read_u(struct xs_handle *xs, const char *path);

#endif
