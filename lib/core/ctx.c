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
static void ctx_teardown(stubdm_ctx *ctx)
{
    ctx->disposing = true;
    stubdm__ops_dispose(ctx);
    stubdm__qmp_dispose(ctx);
    stubdm__op_cache_dispose(ctx);
    stubdm__xs_dispose(ctx);
    stubdm__xc_dispose(ctx);
    stubdm__loop_dispose(ctx);
}

void stubdm__ctx_destroy(stubdm_ctx *ctx)
{
    if (!ctx->torn_down)
        ctx_teardown(ctx);
    free(ctx);
}

/*
 * The ordinary teardown, with the ctx marked first so that none of it
 * reaches anything the parent shares: the loop hooks are the parent's
 * loop's, the xenstore socket is dropped unspoken (stubdm__xs_postfork;
 * xenstore writes are refused from then on), and the QMP lock, vchans,
 * console transports, hotplug scripts and spawns check ctx->postfork.
 * What remains is closing this process's descriptors and freeing memory.
 */
int stubdm_ctx_postfork_child(stubdm_ctx *ctx)
{
    if (!ctx)
        return STUBDM_EINVAL;
    if (ctx->postfork)
        return 0;
    ctx->postfork = true;
    ctx->loop.have_hooks = false;
    stubdm__xs_postfork(ctx);
    /* Forked inside a callback: the dispatch below must unwind first;
     * stubdm_ctx_free, deferred to its end, tears down (as marked). */
    if (ctx->dispatch_depth || ctx->callback_depth)
        return 0;
    ctx_teardown(ctx);
    ctx->torn_down = true;
    return 0;
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
