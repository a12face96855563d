/*
 * Failures (error.c): the message and OS errno recorded on the ctx, which
 * the public stubdm_ctx_errmsg and stubdm_ctx_os_errno report.
 */
#ifndef STUBDM_CORE_ERROR_H
#define STUBDM_CORE_ERROR_H

#include "core/base.h"

/*
 * Record a failure on the ctx (message and OS errno), log it at debug
 * level, and return rc, so call sites read "return stubdm__fail(...)".
 */
int stubdm__fail(stubdm_ctx *ctx, int rc, int os_errno, const char *fmt, ...)
    STUBDM_PRINTF(4, 5) STUBDM_COLD;
int stubdm__vfail(stubdm_ctx *ctx, int rc, int os_errno, const char *fmt,
                  va_list ap) STUBDM_PRINTF(4, 0) STUBDM_COLD;

/* Forget the previous failure (successful public calls may leave it). */
void stubdm__clear_error(stubdm_ctx *ctx);

/* Map an errno from libxenstore onto a STUBDM_E* code. */
int stubdm__xs_errno_to_rc(int err);

#endif /* STUBDM_CORE_ERROR_H */
