/*
 * Every libxenctrl call of the library lives in this file: libxenctrl has
 * no stable ABI (it is rebuilt per Xen release), so confining it keeps the
 * rest of the library on the stable libraries (xenstore, xenvchan,
 * xenforeignmemory, ...) and makes a port to a new Xen a one-file change.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xentoollog.h>

/* libxenctrl logs through a xentoollog logger; forward it to the ctx's
 * hook at debug level instead of letting it print on stderr. */
struct ctx_logger {
    xentoollog_logger vtable;
    stubdm_ctx *ctx;
};

static void ctx_logger_vmessage(xentoollog_logger *logger,
                                xentoollog_level level, int errnoval,
                                const char *context, const char *format,
                                va_list al)
{
    struct ctx_logger *l = (struct ctx_logger *)logger;
    char msg[512];

    (void)level;
    if (!stubdm__log_enabled(l->ctx, STUBDM_LOG_DEBUG))
        return;
    vsnprintf(msg, sizeof(msg), format, al);
    stubdm__log(l->ctx, STUBDM_LOG_DEBUG, errnoval < 0 ? 0 : errnoval,
                context ? context : "xc", "%s", msg);
}

static void ctx_logger_destroy(xentoollog_logger *logger)
{
    free(logger);
}

bool stubdm__xc_present(stubdm_ctx *ctx)
{
    struct stubdm__hv *hv = &ctx->hv;
    struct ctx_logger *logger;

    if (hv->probed)
        return hv->present;
    hv->probed = true;
    /* No privcmd device: no hypervisor, no need to let libxenctrl fail. */
    if (access("/dev/xen/privcmd", F_OK) != 0 &&
        access("/proc/xen/privcmd", F_OK) != 0)
        return false;
    logger = stubdm__calloc(1, sizeof(*logger));
    if (!logger)
        return false;
    logger->vtable.vmessage = ctx_logger_vmessage;
    logger->vtable.destroy = ctx_logger_destroy;
    logger->ctx = ctx;
    hv->xch = xc_interface_open(&logger->vtable, &logger->vtable, 0);
    if (!hv->xch) {
        stubdm__log(ctx, STUBDM_LOG_DEBUG, errno, "xc",
                    "no usable hypervisor interface: %s", strerror(errno));
        free(logger);
        return false;
    }
    hv->xtl = logger;
    hv->present = true;
    return true;
}

int stubdm__xc_domain_info(stubdm_ctx *ctx, uint32_t domid,
                           struct stubdm__xc_dominfo *info)
{
    xc_domaininfo_t di;
    int n;

    memset(info, 0, sizeof(*info));
    if (!stubdm__xc_present(ctx))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, 0, "no Xen hypervisor here");
    n = xc_domain_getinfolist(ctx->hv.xch, domid, 1, &di);
    if (n < 0)
        return stubdm__fail(ctx, STUBDM_EXEN, errno,
                            "getting the state of domain %u: %s", domid,
                            strerror(errno));
    if (n == 0 || di.domain != domid)
        return 0; /* does not exist */
    info->exists = true;
    info->dying = (di.flags & XEN_DOMINF_dying) != 0;
    info->shutdown = (di.flags & XEN_DOMINF_shutdown) != 0;
    info->shutdown_reason =
        (di.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
    info->crashed = info->shutdown && info->shutdown_reason == SHUTDOWN_crash;
    return 0;
}

void stubdm__xc_dispose(stubdm_ctx *ctx)
{
    struct stubdm__hv *hv = &ctx->hv;

    if (hv->xch)
        xc_interface_close(hv->xch);
    if (hv->xtl)
        free(hv->xtl);
    memset(hv, 0, sizeof(*hv));
}
