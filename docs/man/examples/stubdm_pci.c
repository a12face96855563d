/* stubdm_pci(3): pass a host device through at spawn time. */
#include <libstubdm.h>
#include <stdio.h>

int add_device(stubdm_spawn_opts *opts, const char *bdf)
{
    stubdm_pci_addr addr;
    stubdm_pci_dev *d;
    char text[STUBDM_PCI_ADDR_STRLEN];
    int rc;

    rc = stubdm_pci_addr_parse(bdf, &addr);
    if (rc != STUBDM_OK)
        return rc; /* STUBDM_EINVAL: not "SSSS:BB:DD.F" */
    stubdm_pci_addr_format(&addr, text, sizeof(text));
    rc = stubdm_pci_dev_new(text, &d);
    if (rc != STUBDM_OK)
        return rc;
    rc = stubdm_spawn_opts_add_pci(opts, d); /* copies d */
    stubdm_pci_dev_free(d);
    if (rc == STUBDM_OK)
        printf("passing %s through\n", text);
    return rc;
}
