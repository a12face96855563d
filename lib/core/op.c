/*
 * Operation lifecycle: pending -> queued (completed, callback due) -> done.
 *
 * Completion never calls back directly: it queues, and the queue is run at
 * the end of a dispatch.  That one rule gives "exactly once" and "never
 * inside the starting call", and makes freeing anything from a callback
 * safe, since no library frame below the callback touches the op again
 * except through the flags checked here.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/op.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A zeroed block of size bytes for an op: a cached one, else calloc.  The
 * message buffer is only emptied (it is written before it is read). */
static stubdm_op *op_block(stubdm_ctx *ctx, size_t size)
{
    for (unsigned i = ctx->n_op_cache; i-- > 0;) {
        if (ctx->op_cache[i].size != size)
            continue;
        stubdm_op *op = ctx->op_cache[i].block;
        ctx->op_cache[i] = ctx->op_cache[--ctx->n_op_cache];
        STUBDM__MEM_SHOW(op, size);
        size_t msg = offsetof(stubdm_op, errmsg);
        size_t rest = msg + sizeof(op->errmsg);
        memset(op, 0, msg);
        op->errmsg[0] = '\0';
        memset((char *)op + rest, 0, size - rest);
        return op;
    }
    return stubdm__calloc(1, size);
}

/* Keep a released op's block for the next op of its size, or free it. */
static void op_block_release(stubdm_op *op, size_t size)
{
    stubdm_ctx *ctx = op->ctx;

    if (ctx && ctx->n_op_cache < STUBDM_ARRAY_SIZE(ctx->op_cache)) {
        ctx->op_cache[ctx->n_op_cache].block = op;
        ctx->op_cache[ctx->n_op_cache].size = size;
        ctx->n_op_cache++;
        STUBDM__MEM_HIDE(op, size);
        return;
    }
    free(op);
}

void stubdm__op_cache_dispose(stubdm_ctx *ctx)
{
    while (ctx->n_op_cache) {
        ctx->n_op_cache--;
        STUBDM__MEM_SHOW(ctx->op_cache[ctx->n_op_cache].block,
                         ctx->op_cache[ctx->n_op_cache].size);
        free(ctx->op_cache[ctx->n_op_cache].block);
    }
}

stubdm_op *stubdm__op_new(stubdm_ctx *ctx, const struct stubdm__op_type *type,
                          size_t size, stubdm_done_fn *done, void *user)
{
    stubdm_op *op;

    if (size < sizeof(*op))
        size = sizeof(*op);
    op = op_block(ctx, size);
    if (!op)
        return NULL;
    op->size = size;
    op->ctx = ctx;
    op->type = type;
    op->state = STUBDM__OP_PENDING;
    op->done = done;
    op->user = user;
    op->floating = true;
    stubdm__list_add_tail(&ctx->ops_pending, &op->link);
    return op;
}

static void op_release(stubdm_op *op)
{
    stubdm__list_del(&op->link);
    if (op->type->destroy)
        op->type->destroy(op);
    op_block_release(op, op->size);
}

static void op_stop(stubdm_op *op)
{
    if (op->type->stop)
        op->type->stop(op);
}

void stubdm__op_abandon(stubdm_op *op)
{
    if (!op)
        return;
    if (op->state == STUBDM__OP_PENDING)
        op_stop(op);
    op_release(op);
}

void stubdm__op_complete(stubdm_op *op, int rc, const char *fmt, ...)
{
    stubdm_ctx *ctx = op->ctx;

    if (op->state != STUBDM__OP_PENDING)
        return;
    op->state = STUBDM__OP_QUEUED;
    op->rc = rc;
    if (rc && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(op->errmsg, sizeof(op->errmsg), fmt, ap);
        va_end(ap);
    } else if (rc) {
        snprintf(op->errmsg, sizeof(op->errmsg), "%s", stubdm_strerror(rc));
    }
    op_stop(op);
    stubdm__list_del(&op->link);
    stubdm__list_add_tail(&ctx->ops_queued, &op->link);
    LOG_DEBUG(ctx, "op", "%s %p completed: %s%s%s", op->type->name, (void *)op,
              stubdm_errname(rc), rc ? ": " : "", op->errmsg);
    if (!ctx->dispatch_depth)
        stubdm__loop_sync_timer(ctx, "a completion");
}

void stubdm__ops_run_queued(stubdm_ctx *ctx)
{
    while (!stubdm__list_empty(&ctx->ops_queued) && !ctx->free_requested) {
        stubdm_op *op = STUBDM_CONTAINER_OF(ctx->ops_queued.next, stubdm_op,
                                            link);
        bool alive;

        op->state = STUBDM__OP_DONE;
        stubdm__list_del(&op->link);
        /* Done ops sit in no list; their handle is the caller's. */
        op->in_callback = true;
        stubdm__callback_enter(ctx);
        if (op->rc) {
            /* Expose the op's message through the ctx too, so blocking
             * wrappers and callers that only look at the ctx see it. */
            snprintf(ctx->errmsg, sizeof(ctx->errmsg), "%s", op->errmsg);
        }
        if (op->done)
            op->done(op, op->rc, op->user);
        alive = stubdm__callback_leave(ctx);
        op->in_callback = false;
        if (op->floating || op->handle_freed)
            op_release(op);
        if (!alive)
            return;
    }
}

enum stubdm__op_notified stubdm__op_notify(
    stubdm_op *op, void (*fn)(stubdm_op *op, void *arg), void *arg)
{
    stubdm_ctx *ctx = op->ctx;
    bool alive;

    op->in_callback = true;
    stubdm__callback_enter(ctx);
    fn(op, arg);
    alive = stubdm__callback_leave(ctx);
    op->in_callback = false;
    if (!alive)
        return STUBDM__OP_NOTIFY_CTX_FREED;
    if (op->handle_freed) {
        op->handle_freed = false;
        stubdm_op_free(op);
        return STUBDM__OP_NOTIFY_FREED;
    }
    return op->state == STUBDM__OP_PENDING ? STUBDM__OP_NOTIFY_PENDING
                                           : STUBDM__OP_NOTIFY_DONE;
}

void stubdm__ops_dispose(stubdm_ctx *ctx)
{
    while (!stubdm__list_empty(&ctx->ops_pending)) {
        stubdm_op *op = STUBDM_CONTAINER_OF(ctx->ops_pending.next, stubdm_op,
                                            link);
        op_stop(op);
        op->state = STUBDM__OP_DONE;
        stubdm__list_del(&op->link);
        if (op->floating) {
            op_release(op);
        } else {
            /* The caller still holds a handle and will free it: detach it
             * from the ctx so that free touches no ctx state. */
            op->ctx = NULL;
        }
    }
    while (!stubdm__list_empty(&ctx->ops_queued)) {
        stubdm_op *op = STUBDM_CONTAINER_OF(ctx->ops_queued.next, stubdm_op,
                                            link);
        op->state = STUBDM__OP_DONE;
        stubdm__list_del(&op->link);
        if (op->floating)
            op_release(op);
        else
            op->ctx = NULL;
    }
}

void stubdm_op_cancel(stubdm_op *op)
{
    if (!op || op->state != STUBDM__OP_PENDING || !op->ctx)
        return;
    if (op->type->cancel) {
        op->type->cancel(op);
        return;
    }
    stubdm__op_complete(op, STUBDM_ECANCELED, "%s cancelled", op->type->name);
}

void stubdm_op_free(stubdm_op *op)
{
    if (!op)
        return;
    if (op->in_callback) {
        op->handle_freed = true;
        return;
    }
    if (op->state == STUBDM__OP_PENDING && op->ctx)
        op_stop(op);
    op_release(op);
}

int stubdm_op_is_done(const stubdm_op *op)
{
    return op && op->state != STUBDM__OP_PENDING;
}

int stubdm_op_result(const stubdm_op *op)
{
    if (!op)
        return STUBDM_EINVAL;
    return op->state == STUBDM__OP_PENDING ? STUBDM_ESTATE : op->rc;
}

const char *stubdm_op_errmsg(const stubdm_op *op)
{
    return op && op->state != STUBDM__OP_PENDING ? op->errmsg : "";
}

int stubdm__sync_check(stubdm_ctx *ctx, const char *what)
{
    if (ctx->dispatch_depth || ctx->callback_depth)
        return stubdm__fail(ctx, STUBDM_ERECURSIVE, 0,
                            "%s called from a callback", what);
    return 0;
}

int stubdm__op_wait(stubdm_op *op)
{
    stubdm_ctx *ctx = op->ctx;

    while (!stubdm_op_is_done(op)) {
        int rc;
        /* Cancelled as stubdm_op_cancel does: its resources released now,
         * its result ECANCELED. */
        if (stubdm__interrupt_take(ctx)) {
            stubdm_op_cancel(op);
            continue;
        }
        rc = stubdm_ctx_run_once(ctx, -1);
        if (rc)
            return rc;
    }
    if (op->rc)
        stubdm__fail(ctx, op->rc, 0, "%s", op->errmsg);
    return op->rc;
}
