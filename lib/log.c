/*
 * The per-ctx log hook.  Silent by default; messages under the minimum
 * level are never formatted, so debug logging costs nothing when off.
 */
#include "internal.h"

#include <stdio.h>

void stubdm_ctx_set_log(stubdm_ctx *ctx, stubdm_log_fn *fn, void *user,
                        stubdm_log_level min_level)
{
    if (!ctx)
        return;
    ctx->log_fn = fn;
    ctx->log_user = user;
    ctx->log_min = min_level;
}

bool stubdm__log_enabled(const stubdm_ctx *ctx, stubdm_log_level level)
{
    return ctx && ctx->log_fn && level >= ctx->log_min;
}

void stubdm__log(stubdm_ctx *ctx, stubdm_log_level level, int os_errno,
                 const char *module, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!stubdm__log_enabled(ctx, level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->log_fn(ctx->log_user, level, os_errno, module, msg);
}
