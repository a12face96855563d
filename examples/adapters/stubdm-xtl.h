/*
 * Header-only adapter: send a ctx's log to a xentoollog_logger, as libxl
 * embedders already have one.  stubdm_log_level values equal
 * xentoollog_level values, so no mapping is needed.
 *
 *   stubdm_ctx_set_log(ctx, stubdm_xtl_log, logger, STUBDM_LOG_DETAIL);
 */
#ifndef STUBDM_XTL_H
#define STUBDM_XTL_H

#include <libstubdm.h>
#include <xentoollog.h>

static inline void stubdm_xtl_log(void *user, stubdm_log_level level,
                                  int os_errno, const char *context,
                                  const char *msg)
{
    xtl_log((xentoollog_logger *)user, (xentoollog_level)level,
            os_errno ? os_errno : -1, context, "%s", msg);
}

#endif
