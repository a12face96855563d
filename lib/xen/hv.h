/*
 * The hypervisor interface (xenctrl.c, the only file that includes
 * <xenctrl.h>: libxenctrl has no stable ABI).  Opened lazily; on a machine
 * without Xen "present" stays false and the simulated host is used.
 */
#ifndef STUBDM_XEN_HV_H
#define STUBDM_XEN_HV_H

#include "core/base.h"

struct stubdm__hv {
    void *xch; /* xc_interface * */
    void *xtl; /* the logger handed to libxenctrl */
    bool probed, present;
};

struct stubdm__xc_dominfo {
    bool exists, dying, shutdown, crashed;
    unsigned shutdown_reason; /* SHUTDOWN_* of <xen/sched.h> */
};

/* true if a hypervisor is reachable (probes once). */
bool stubdm__xc_present(stubdm_ctx *ctx);
int stubdm__xc_domain_info(stubdm_ctx *ctx, uint32_t domid,
                           struct stubdm__xc_dominfo *info);
void stubdm__xc_dispose(stubdm_ctx *ctx);

#endif /* STUBDM_XEN_HV_H */
