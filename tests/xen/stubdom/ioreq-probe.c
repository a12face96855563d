/*
 * ioreq-probe GUEST: run inside the stubdomain, asks Xen for an ioreq server
 * for GUEST exactly as qemu-xen does (xendevicemodel_create_ioreq_server,
 * then its info and XENMEM_acquire_resource mapping) and prints every
 * return value with errno, so the reason qemu-xen fails is on the console.
 * Built on the host against Debian's libxendevicemodel/libxenforeignmemory
 * (4.17, the same as in the image).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xendevicemodel.h>
#include <xenforeignmemory.h>
#include <xen/hvm/dm_op.h>
#include <xen/memory.h>

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
        rc = xendevicemodel_get_ioreq_server_info(dm, (domid_t)guest, id,
                                                  NULL, NULL, NULL);
        report("  get_ioreq_server_info", rc, errno);
        if (fm) {
            void *addr = NULL;
            xenforeignmemory_resource_handle *res;

            errno = 0;
            res = xenforeignmemory_map_resource(
                fm, (domid_t)guest, XENMEM_resource_ioreq_server, id,
                buf ? 0 : 1, buf ? 2 : 1, &addr, PROT_READ | PROT_WRITE, 0);
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
        report("map_resource(ioreq_server id 0: legacy default)",
               res ? 0 : -1, errno);
        if (res)
            xenforeignmemory_unmap_resource(fm, res);
    }
    xendevicemodel_close(dm);
    if (fm)
        xenforeignmemory_close(fm);
    return 0;
}
