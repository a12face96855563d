/*
 * The ctx's host backend: the caller's choice, or Xen when a hypervisor
 * is present and the simulated host otherwise.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "xen/host.h"
#include "xen/hv.h"

int stubdm_ctx_set_host(stubdm_ctx *ctx, stubdm_host host)
{
    if (!ctx)
        return STUBDM_EINVAL;
    if (host != STUBDM_HOST_AUTO && host != STUBDM_HOST_XEN &&
        host != STUBDM_HOST_SIM)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "unknown host kind %d",
                            (int)host);
    ctx->host_kind = (int)host;
    return 0;
}

stubdm_host stubdm_ctx_host(stubdm_ctx *ctx)
{
    if (!ctx)
        return STUBDM_HOST_SIM;
    if (ctx->host_kind == STUBDM_HOST_AUTO)
        return stubdm__xc_present(ctx) ? STUBDM_HOST_XEN : STUBDM_HOST_SIM;
    return (stubdm_host)ctx->host_kind;
}

const struct stubdm__host_ops *stubdm__host(stubdm_ctx *ctx)
{
    return stubdm_ctx_host(ctx) == STUBDM_HOST_XEN ? &stubdm__host_xen
                                                   : &stubdm__host_sim;
}
