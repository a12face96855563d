/*
 * The per-ctx log hook.  Silent by default; messages under the minimum
 * level are never formatted, so debug logging costs nothing when off.
 */
#include "core/ctx.h"
#include "core/log.h"
#include "core/mem.h"

#include <stdio.h>
#include <stdlib.h>

#include <xentoollog.h>

void stubdm_ctx_set_log(stubdm_ctx *ctx, stubdm_log_fn *fn, void *user,
                        stubdm_log_level min_level)
{
    if (!ctx)
        return;
    ctx->log_fn = fn;
    ctx->log_user = user;
    ctx->log_min = min_level;
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

/* ---- the xentoollog bridge ---------------------------------------------- */
/* libxenctrl and libxenvchan log through a xentoollog logger.  Ours
 * forwards to the ctx's hook at debug level (their "errors" include
 * expected outcomes, such as a domain that is gone, which the library
 * reports itself) instead of letting them print on stderr. */

struct xtl_bridge {
    xentoollog_logger vtable;
    stubdm_ctx *ctx;
    const char *context; /* module name when the caller gives none */
};

static void bridge_vmessage(xentoollog_logger *logger, xentoollog_level level,
                            int errnoval, const char *context,
                            const char *format, va_list al)
{
    struct xtl_bridge *b = (struct xtl_bridge *)logger;
    char msg[512];

    (void)level;
    if (!stubdm__log_enabled(b->ctx, STUBDM_LOG_DEBUG))
        return;
    vsnprintf(msg, sizeof(msg), format, al);
    stubdm__log(b->ctx, STUBDM_LOG_DEBUG, errnoval < 0 ? 0 : errnoval,
                context ? context : b->context, "%s", msg);
}

static void bridge_progress(xentoollog_logger *logger, const char *context,
                            const char *doing_what, int percent,
                            unsigned long done, unsigned long total)
{
    (void)logger, (void)context, (void)doing_what, (void)percent;
    (void)done, (void)total;
}

static void bridge_destroy(xentoollog_logger *logger)
{
    free(logger);
}

struct xentoollog_logger *stubdm__xtl_logger_new(stubdm_ctx *ctx,
                                                 const char *context)
{
    struct xtl_bridge *b = stubdm__calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    b->vtable.vmessage = bridge_vmessage;
    b->vtable.progress = bridge_progress;
    b->vtable.destroy = bridge_destroy;
    b->ctx = ctx;
    b->context = context;
    return &b->vtable;
}

void stubdm__xtl_logger_free(struct xentoollog_logger *logger)
{
    free(logger); /* the vtable is the first member */
}
