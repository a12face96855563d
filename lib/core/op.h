/*
 * Operations (op.c): the stubdm_op every asynchronous call returns, its
 * completion queued to the end of the dispatch, its block reused, and the
 * blocking wrappers' wait.
 */
#ifndef STUBDM_CORE_OP_H
#define STUBDM_CORE_OP_H

#include "core/base.h"
#include "core/list.h"

struct stubdm__op_type {
    const char *name;
    /* Release the op's I/O resources (watches, timers, fds).  Called once,
     * when the op completes or is freed while pending.  May be NULL. */
    void (*stop)(stubdm_op *op);
    /* Free what the op type allocated, besides the op itself.  May be NULL. */
    void (*destroy)(stubdm_op *op);
    /* stubdm_op_cancel of a pending op whose end takes dispatches (a
     * spawn's rollback): start that end; the op completes later.  NULL:
     * cancel completes the op at once with STUBDM_ECANCELED. */
    void (*cancel)(stubdm_op *op);
};

enum stubdm__op_state {
    STUBDM__OP_PENDING,
    STUBDM__OP_QUEUED, /* completed, callback not yet run */
    STUBDM__OP_DONE,
};

struct stubdm_op {
    stubdm_ctx *ctx;
    const struct stubdm__op_type *type;
    enum stubdm__op_state state;
    int rc;
    bool floating;     /* no caller handle: free after the callback */
    bool handle_freed; /* the caller freed its handle during the callback */
    bool in_callback;
    stubdm_done_fn *done;
    void *user;
    struct stubdm__list link; /* ctx->ops_pending or ctx->ops_queued */
    size_t size;              /* of the block (for its reuse) */
    char errmsg[STUBDM_ERRMSG_MAX];
};

/*
 * Allocate an op of 'size' bytes (a type-specific struct whose first member
 * is the struct stubdm_op), zeroed, pending, linked into the ctx.
 */
stubdm_op *stubdm__op_new(stubdm_ctx *ctx, const struct stubdm__op_type *type,
                          size_t size, stubdm_done_fn *done, void *user);
/* Free the blocks kept for reuse (ctx teardown, after the ops). */
void stubdm__op_cache_dispose(stubdm_ctx *ctx);
/* Hand the op to the caller (op_out) or make it floating (op_out NULL). */
static inline void stubdm__op_started(stubdm_op *op, stubdm_op **op_out)
{
    op->floating = op_out == NULL;
    if (op_out)
        *op_out = op;
}
/* Free an op that was never started (the starter failed). */
void stubdm__op_abandon(stubdm_op *op);
/*
 * Complete a pending op: stop its resources, record rc and the message,
 * and queue its callback for the end of the current (or next) dispatch.
 * No effect on an op that is not pending.
 */
void stubdm__op_complete(stubdm_op *op, int rc, const char *fmt, ...)
    STUBDM_PRINTF(3, 4);
/*
 * Run a callback of a pending op that does not complete it (a progress
 * report): fn(op, arg) inside the callback bracket, with the op marked
 * in_callback as for its completion, so that stubdm_op_free from inside
 * only marks the handle; a handle so freed is freed once fn returns (a
 * pending op is stopped: cancelled).  What the caller may touch next:
 */
enum stubdm__op_notified {
    STUBDM__OP_NOTIFY_PENDING,   /* the op goes on */
    STUBDM__OP_NOTIFY_DONE,      /* completed from inside fn, not freed */
    STUBDM__OP_NOTIFY_FREED,     /* the op is gone */
    STUBDM__OP_NOTIFY_CTX_FREED, /* the ctx is being freed: touch nothing */
};
enum stubdm__op_notified stubdm__op_notify(
    stubdm_op *op, void (*fn)(stubdm_op *op, void *arg), void *arg);
/*
 * For blocking wrappers.  sync_check refuses (STUBDM_ERECURSIVE, with a
 * message naming 'what') when called from a callback, since running the
 * loop there would dispatch recursively.  op_wait runs the ctx's poll loop
 * until op completes and returns the loop's error (op still pending; the
 * caller frees it) or op's result, its message copied to the ctx; a
 * stubdm_ctx_interrupt cancels op (STUBDM_ECANCELED, once the op's cancel
 * ended: a spawn's rollback runs to its end).  The op is not
 * freed.
 */
int stubdm__sync_check(stubdm_ctx *ctx, const char *what);
int stubdm__op_wait(stubdm_op *op);
/* Run queued completions; called by dispatch_leave. */
void stubdm__ops_run_queued(stubdm_ctx *ctx);
/* Drop every op without callbacks (ctx teardown). */
void stubdm__ops_dispose(stubdm_ctx *ctx);

#endif /* STUBDM_CORE_OP_H */
