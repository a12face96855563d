/*
 * xt-unpause DOMID: xc_domain_unpause, nothing else.  `xl unpause` of an HVM
 * guest first resumes libxl's own device model over its QMP socket and does
 * not unpause when that fails, so a guest whose device model runs in a
 * stubdomain spawned by libstubdm is unpaused with this (payload.sh,
 * section spawnqemu).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <xenctrl.h>

int main(int argc, char **argv)
{
    xc_interface *xch;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s DOMID\n", argv[0]);
        return 2;
    }
    xch = xc_interface_open(NULL, NULL, 0);
    if (!xch) {
        perror("xc_interface_open");
        return 1;
    }
    rc = xc_domain_unpause(xch, (uint32_t)strtoul(argv[1], NULL, 10));
    if (rc)
        fprintf(stderr, "xc_domain_unpause: %s\n", strerror(errno));
    xc_interface_close(xch);
    return rc ? 1 : 0;
}
