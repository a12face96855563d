/*
 * Logging (log.c): messages to the ctx's log hook, and a xentoollog
 * logger that forwards the Xen libraries' messages there.
 */
#ifndef STUBDM_CORE_LOG_H
#define STUBDM_CORE_LOG_H

#include "core/base.h"
#include "core/ctx.h"

void stubdm__log(stubdm_ctx *ctx, stubdm_log_level level, int os_errno,
                 const char *module, const char *fmt, ...)
    STUBDM_PRINTF(5, 6) STUBDM_COLD;
/* Whether a message at level would reach the ctx's log hook. */
static inline bool stubdm__log_enabled(const stubdm_ctx *ctx,
                                       stubdm_log_level level)
{
    return ctx && ctx->log_fn && level >= ctx->log_min;
}

#define STUBDM_LOG(ctx, lvl, mod, ...)                                        \
    do {                                                                      \
        if (__builtin_expect(stubdm__log_enabled((ctx), (lvl)), 0))           \
            stubdm__log((ctx), (lvl), 0, (mod), __VA_ARGS__);                 \
    } while (0)
#define LOG_DEBUG(ctx, mod, ...)                                              \
    STUBDM_LOG(ctx, STUBDM_LOG_DEBUG, mod, __VA_ARGS__)
#define LOG_INFO(ctx, mod, ...)                                               \
    STUBDM_LOG(ctx, STUBDM_LOG_INFO, mod, __VA_ARGS__)
#define LOG_WARN(ctx, mod, ...)                                               \
    STUBDM_LOG(ctx, STUBDM_LOG_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(ctx, mod, ...)                                              \
    STUBDM_LOG(ctx, STUBDM_LOG_ERROR, mod, __VA_ARGS__)

/*
 * A xentoollog logger (for libxenctrl, libxenvchan) forwarding to the ctx's
 * log hook at debug level; context names the module of messages that carry
 * none (a string that must outlive the logger).  NULL: out of memory.
 */
struct xentoollog_logger;
struct xentoollog_logger *stubdm__xtl_logger_new(stubdm_ctx *ctx,
                                                 const char *context);
/* Accepts NULL. */
void stubdm__xtl_logger_free(struct xentoollog_logger *logger);

#endif /* STUBDM_CORE_LOG_H */
