/*
 * privcmd-shim.so: LD_PRELOAD for qemu-xen (and ioreq-probe) in the test
 * stubdomain.  Works around an interaction between Linux's restricted
 * privcmd and Xen 4.17's libxendevicemodel (docs/real-xen.md, "The ioreq
 * blocker"):
 *
 *   - Linux (6.1.0-56 here, "xen/privcmd: restrict usage in unprivileged
 *     domU") restricts every /dev/xen/privcmd file of a domU to the domid
 *     in xenstore "target", read when the module loads.  A restricted file
 *     refuses IOCTL_PRIVCMD_HYPERCALL and any IOCTL_PRIVCMD_DM_OP whose dom
 *     is not the target, with EPERM.
 *   - libxendevicemodel's open probes for IOCTL_PRIVCMD_DM_OP with
 *     dom = DOMID_INVALID, num = 0.  On a restricted file that is EPERM,
 *     so the library concludes "no DM_OP ioctl" and sends every dm_op
 *     through libxencall, i.e. IOCTL_PRIVCMD_HYPERCALL: EPERM again.
 *
 * The shim answers that one probe (DM_OP, dom DOMID_INVALID, num 0) with
 * success, so libxendevicemodel keeps the DM_OP ioctl, which the kernel
 * allows for the target.  Everything else goes to the real ioctl.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/ioctl.h>

/* From Linux include/uapi/xen/privcmd.h (not installed on every host). */
struct xt_privcmd_dm_op {
    uint16_t dom;
    uint16_t num;
    const void *ubufs;
};
#define XT_IOCTL_PRIVCMD_DM_OP _IOC(_IOC_NONE, 'P', 5, sizeof(struct xt_privcmd_dm_op))
#define XT_DOMID_INVALID 0x7FF4U

int ioctl(int fd, unsigned long req, ...)
{
    static int (*real)(int, unsigned long, ...);
    va_list ap;
    void *arg;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (req == XT_IOCTL_PRIVCMD_DM_OP && arg) {
        const struct xt_privcmd_dm_op *op = arg;
        if (op->dom == XT_DOMID_INVALID && op->num == 0)
            return 0;
    }
    if (!real)
        real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    return real(fd, req, arg);
}
