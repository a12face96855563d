/*
 * ioreq-probe GUEST: run inside the stubdomain, asks Xen for an ioreq server
 * for GUEST exactly as qemu-xen does (xendevicemodel_create_ioreq_server,
 * then its info and XENMEM_acquire_resource mapping) and prints every
 * return value with errno, so the reason qemu-xen fails is on the console.
 * Built on the host against Debian's libxendevicemodel/libxenforeignmemory
 * (4.17, the same as in the image).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xendevicemodel.h>
#include <xenforeignmemory.h>
#include <xen/hvm/dm_op.h>
#include <xen/memory.h>
#include <xen/sys/privcmd.h>

/* The privcmd restriction, seen through IOCTL_PRIVCMD_DM_OP with no
 * buffers (the kernel checks the domid before it looks at num): 0 means
 * this file may issue dm_ops for dom, EPERM that it is restricted to
 * another domain.  libxendevicemodel's own probe is the DOMID_INVALID one. */
static void privcmd_restriction(unsigned guest)
{
    unsigned doms[] = {DOMID_INVALID, guest, 0};
    int fd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        printf("open /dev/xen/privcmd: %s\n", strerror(errno));
        return;
    }
    for (unsigned i = 0; i < sizeof(doms) / sizeof(doms[0]); i++) {
        privcmd_dm_op_t uop = {.dom = (domid_t)doms[i], .num = 0};
        int rc = ioctl(fd, IOCTL_PRIVCMD_DM_OP, &uop);
        printf("privcmd DM_OP probe dom=%u%s num=0: rc=%d errno=%d (%s)\n",
               doms[i],
               doms[i] == DOMID_INVALID ? " (DOMID_INVALID, "
                                          "libxendevicemodel's probe)"
                                        : "",
               rc, rc ? errno : 0, rc ? strerror(errno) : "ok");
    }
    close(fd);
    fflush(stdout);
}

static void report(const char *what, int rc, int err)
{
    printf("%s: rc=%d errno=%d (%s)\n", what, rc, rc ? err : 0,
           rc ? strerror(err) : "ok");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    unsigned guest;
    xendevicemodel_handle *dm;
    xenforeignmemory_handle *fm;
    int rc;

    if (argc < 2) {
        fprintf(stderr, "usage: %s GUEST_DOMID\n", argv[0]);
        return 2;
    }
    guest = (unsigned)strtoul(argv[1], NULL, 10);
    privcmd_restriction(guest);
    dm = xendevicemodel_open(NULL, 0);
    if (!dm) {
        report("xendevicemodel_open", -1, errno);
        return 1;
    }
    fm = xenforeignmemory_open(NULL, 0);
    if (!fm)
        report("xenforeignmemory_open", -1, errno);

    for (int buf = 2; buf >= 0; buf--) {
        ioservid_t id = 0;
        char what[96];

        errno = 0;
        rc = xendevicemodel_create_ioreq_server(dm, (domid_t)guest, buf, &id);
        snprintf(what, sizeof(what),
                 "create_ioreq_server(guest %u, handle_bufioreq %d)", guest,
                 buf);
        report(what, rc, errno);
        if (rc)
            continue;
        printf("  ioreq server id %u\n", id);
        errno = 0;
        rc = xendevicemodel_get_ioreq_server_info(dm, (domid_t)guest, id, NULL,
                                                  NULL, NULL);
        report("  get_ioreq_server_info", rc, errno);
        if (fm) {
            void *addr = NULL;
            xenforeignmemory_resource_handle *res;

            errno = 0;
            res = xenforeignmemory_map_resource(fm, (domid_t)guest,
                                                XENMEM_resource_ioreq_server,
                                                id, buf ? 0 : 1, buf ? 2 : 1,
                                                &addr, PROT_READ | PROT_WRITE,
                                                0);
            report("  map_resource(ioreq_server)", res ? 0 : -1, errno);
            if (res)
                xenforeignmemory_unmap_resource(fm, res);
        }
        errno = 0;
        rc = xendevicemodel_set_ioreq_server_state(dm, (domid_t)guest, id, 1);
        report("  set_ioreq_server_state(1)", rc, errno);
        errno = 0;
        rc = xendevicemodel_destroy_ioreq_server(dm, (domid_t)guest, id);
        report("  destroy_ioreq_server", rc, errno);
    }
    /* QEMU's fallback: the legacy default server (id 0). */
    if (fm) {
        void *addr = NULL;
        xenforeignmemory_resource_handle *res;

        errno = 0;
        res = xenforeignmemory_map_resource(fm, (domid_t)guest,
                                            XENMEM_resource_ioreq_server, 0, 1,
                                            1, &addr, PROT_READ | PROT_WRITE,
                                            0);
        report("map_resource(ioreq_server id 0: legacy default)", res ? 0 : -1,
               errno);
        if (res)
            xenforeignmemory_unmap_resource(fm, res);
    }
    xendevicemodel_close(dm);
    if (fm)
        xenforeignmemory_close(fm);
    return 0;
}
