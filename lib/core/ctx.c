/*
 * The context: owner of the loop registry, the xenstore connection and
 * every operation.  Freeing it from inside a callback is deferred to the end
 * of the dispatch that runs the callback.
 */
#include "core/ctx.h"
#include "core/list.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/op.h"
#include "qmp/qmp.h"
#include "xen/hv.h"
#include "xen/xs.h"

#include <stdlib.h>

int stubdm_ctx_new(stubdm_ctx **out)
{
    stubdm_ctx *ctx;

    if (!out)
        return STUBDM_EINVAL;
    *out = NULL;
    ctx = stubdm__calloc(1, sizeof(*ctx));
    if (!ctx)
        return STUBDM_ENOMEM;
    ctx->log_min = STUBDM_LOG_CRITICAL + 1;
    ctx->console_rate = STUBDM_CONSOLE_DEFAULT_RATE;
    ctx->console_rotate_ms = STUBDM_CONSOLE_DEFAULT_ROTATE_INTERVAL_MS;
    stubdm__loop_init(&ctx->loop);
    stubdm__list_init(&ctx->ops_pending);
    stubdm__list_init(&ctx->ops_queued);
    stubdm__xs_init(ctx);
    stubdm__list_init(&ctx->domwatches);
    stubdm__xswatch_init(&ctx->release_watch, NULL);
    stubdm__list_init(&ctx->qmp_conns);
    stubdm__list_init(&ctx->children);
    *out = ctx;
    return 0;
}

/*
 * Teardown order: ops first (their stop hooks may still use QMP handles,
 * xenstore watches and timers), then the QMP connections (which release
 * xenstore watches, fds and timers), then xenstore, the hypervisor handle,
 * and last the loop registry everything above unregisters from.
 */
void stubdm__ctx_destroy(stubdm_ctx *ctx)
{
    stubdm__ops_dispose(ctx);
    stubdm__qmp_dispose(ctx);
    stubdm__op_cache_dispose(ctx);
    stubdm__xs_dispose(ctx);
    stubdm__xc_dispose(ctx);
    stubdm__loop_dispose(ctx);
    free(ctx);
}

void stubdm_ctx_free(stubdm_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->dispatch_depth || ctx->callback_depth) {
        ctx->free_requested = true;
        return;
    }
    stubdm__ctx_destroy(ctx);
}
