/*
 * Error codes, their names and texts, and the per-ctx failure record.
 */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define STUBDM_ERRORS(X)                                                      \
    X(STUBDM_OK, "success")                                                   \
    X(STUBDM_EFAIL, "operation failed")                                       \
    X(STUBDM_EINVAL, "invalid argument")                                      \
    X(STUBDM_ENOMEM, "out of memory")                                         \
    X(STUBDM_ESTATE, "not valid in the current state")                        \
    X(STUBDM_EXENSTORE, "xenstore request failed")                            \
    X(STUBDM_ETIMEDOUT, "timed out")                                          \
    X(STUBDM_ECANCELED, "operation cancelled")                                \
    X(STUBDM_EDOMAIN_GONE, "stubdomain died or was destroyed")                \
    X(STUBDM_EPROTO, "protocol error: malformed or oversized data from peer") \
    X(STUBDM_EQMP, "QEMU returned an error")                                  \
    X(STUBDM_EVCHAN, "QMP channel failed")                                    \
    X(STUBDM_EBUFFERFULL, "buffer too small")                                 \
    X(STUBDM_ERECURSIVE, "recursive dispatch from inside a callback")         \
    X(STUBDM_ENOENT, "no such node, domain or file")                          \
    X(STUBDM_EPERM, "permission denied")                                      \
    X(STUBDM_EBUSY, "QMP connection held by another client")                  \
    X(STUBDM_ELIMIT, "limit exceeded")                                        \
    X(STUBDM_ENOTSUP, "not supported here")                                   \
    X(STUBDM_EXEN, "hypervisor call failed")                                  \
    X(STUBDM_ENOTSTUBDOM, "not a stubdomain")                                 \
    X(STUBDM_EAGAIN, "nothing to take yet")

const char *stubdm_strerror(int rc)
{
    switch (rc) {
#define TEXT(code, text)                                                      \
    case code:                                                                \
        return text;
        STUBDM_ERRORS(TEXT)
#undef TEXT
    }
    return "unknown error";
}

const char *stubdm_errname(int rc)
{
    switch (rc) {
#define NAME(code, text)                                                      \
    case code:                                                                \
        return #code;
        STUBDM_ERRORS(NAME)
#undef NAME
    }
    return "STUBDM_E?";
}

int stubdm__vfail(stubdm_ctx *ctx, int rc, int os_errno, const char *fmt,
                  va_list ap)
{
    if (!ctx)
        return rc;
    vsnprintf(ctx->errmsg, sizeof(ctx->errmsg), fmt, ap);
    ctx->os_errno = os_errno;
    if (stubdm__log_enabled(ctx, STUBDM_LOG_DEBUG))
        stubdm__log(ctx, STUBDM_LOG_DEBUG, os_errno, "error", "%s: %s",
                    stubdm_errname(rc), ctx->errmsg);
    return rc;
}

int stubdm__fail(stubdm_ctx *ctx, int rc, int os_errno, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rc = stubdm__vfail(ctx, rc, os_errno, fmt, ap);
    va_end(ap);
    return rc;
}

void stubdm__clear_error(stubdm_ctx *ctx)
{
    ctx->errmsg[0] = '\0';
    ctx->os_errno = 0;
}

int stubdm__xs_errno_to_rc(int err)
{
    switch (err) {
    case ENOENT:
        return STUBDM_ENOENT;
    case EACCES:
    case EPERM:
        return STUBDM_EPERM;
    case ENOMEM:
        return STUBDM_ENOMEM;
    case E2BIG:
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return STUBDM_ELIMIT;
    case EINVAL:
        return STUBDM_EINVAL;
    default:
        return STUBDM_EXENSTORE;
    }
}

const char *stubdm_ctx_errmsg(const stubdm_ctx *ctx)
{
    return ctx ? ctx->errmsg : "";
}

int stubdm_ctx_os_errno(const stubdm_ctx *ctx)
{
    return ctx ? ctx->os_errno : 0;
}
