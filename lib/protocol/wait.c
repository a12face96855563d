/*
 * Waiting for the device model: "running" at
 * /local/domain/<stubdom>/device-model/<guest>/state.
 *
 * Chronologically: start (watch the state node, subscribe to the domain-
 * death monitor, arm the deadline) -> state watch fires (initially, and on
 * every change below it) -> read the value, bounded, since the stubdomain
 * wrote it -> "running" completes; anything else is remembered for the
 * timeout message.  Death or the deadline end it early.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/op.h"
#include "core/peer.h"
#include "xen/domain.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "running" is 7 bytes; anything much longer is not a state. */
#define STATE_MAX_LEN 64

struct wait_op {
    stubdm_op op;
    /* parameters */
    uint32_t stubdom, guest;
    int timeout_ms;
    /* private */
    int64_t started_ms;
    char state_path[96];
    char last_state[STATE_MAX_LEN + 1]; /* printable copy, "" if none */
    bool seen_value;
    struct stubdm__xswatch state_watch;
    struct stubdm__domwatch death;
    struct stubdm__timer deadline;
};

static struct wait_op *wait_of(stubdm_op *op)
{
    return (struct wait_op *)op;
}

static double waited_s(const struct wait_op *w)
{
    return (double)(stubdm_now_ms() - w->started_ms) / 1000.0;
}

static const char *last_state_text(const struct wait_op *w)
{
    if (!w->seen_value)
        return "(node absent)";
    return w->last_state[0] ? w->last_state : "(empty value)";
}

static void remember_state(struct wait_op *w, const char *v, size_t len)
{
    stubdm__printable(w->last_state, sizeof(w->last_state), v, len);
    w->seen_value = true;
}

static void on_state(stubdm_ctx *ctx, struct stubdm__xswatch *xw,
                     const char *path)
{
    struct wait_op *w = STUBDM_CONTAINER_OF(xw, struct wait_op, state_watch);
    char *v = NULL;
    size_t len = 0;
    int rc;

    (void)path; /* watches fire for children and spuriously: always re-read */
    rc = stubdm__xs_read(ctx, 0, w->state_path, STATE_MAX_LEN, &v, &len);
    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        return;
    }
    if (rc == STUBDM_ELIMIT) {
        /* Hostile or broken writer: not fatal, but remembered. */
        snprintf(w->last_state, sizeof(w->last_state), "(oversized value)");
        w->seen_value = true;
        LOG_DEBUG(ctx, "wait", "%s: oversized value ignored", w->state_path);
        stubdm__clear_error(ctx);
        return;
    }
    if (rc) {
        stubdm__op_complete(&w->op, rc, "reading %s: %s", w->state_path,
                            ctx->errmsg);
        return;
    }
    if (len == 7 && memcmp(v, "running", 7) == 0) {
        LOG_DEBUG(ctx, "wait",
                  "stubdomain %u: device model running after "
                  "%.3f s",
                  w->stubdom, waited_s(w));
        free(v);
        stubdm__op_complete(&w->op, 0, NULL);
        return;
    }
    remember_state(w, v, len);
    LOG_DEBUG(ctx, "wait", "%s = \"%s\", still waiting", w->state_path,
              w->last_state);
    free(v);
}

static void on_death(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                     enum stubdm__dom_state st, const char *detail)
{
    struct wait_op *w = STUBDM_CONTAINER_OF(dw, struct wait_op, death);

    (void)ctx;
    (void)st;
    stubdm__op_complete(&w->op, STUBDM_EDOMAIN_GONE,
                        "stubdomain %u %s after %.1f s, before its device "
                        "model for guest %u was running (last state: %s)",
                        w->stubdom, detail, waited_s(w), w->guest,
                        last_state_text(w));
}

static void on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct wait_op *w = STUBDM_CONTAINER_OF(t, struct wait_op, deadline);

    (void)ctx;
    stubdm__op_complete(&w->op, STUBDM_ETIMEDOUT,
                        "stubdomain %u: device model for guest %u not running "
                        "after %.1f s (timeout %d ms; last state: %s)",
                        w->stubdom, w->guest, waited_s(w), w->timeout_ms,
                        last_state_text(w));
}

static void wait_stop(stubdm_op *op)
{
    struct wait_op *w = wait_of(op);

    stubdm__xswatch_stop(op->ctx, &w->state_watch);
    stubdm__domwatch_stop(op->ctx, &w->death);
    stubdm__timer_stop(op->ctx, &w->deadline);
}

static const struct stubdm__op_type wait_type = {
    .name = "wait-running",
    .stop = wait_stop,
    .destroy = NULL,
};

static int wait_start(stubdm_ctx *ctx, uint32_t stubdom_domid,
                      uint32_t guest_domid, int timeout_ms,
                      stubdm_done_fn *done, void *user, stubdm_op **op_out)
{
    struct wait_op *w;
    enum stubdm__dom_state st;
    char detail[160];
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if (op_out)
        *op_out = NULL;
    if (!stubdm__domid_ok(stubdom_domid) || !stubdm__domid_ok(guest_domid) ||
        stubdom_domid == 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "wait: invalid domids (stubdomain %u, guest %u)",
                            stubdom_domid, guest_domid);
    if (timeout_ms <= 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "wait: timeout must be positive (got %d ms)",
                            timeout_ms);

    w = (struct wait_op *)stubdm__op_new(ctx, &wait_type, sizeof(*w), done,
                                         user);
    if (!w)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "wait op");
    w->stubdom = stubdom_domid;
    w->guest = guest_domid;
    w->timeout_ms = timeout_ms;
    w->started_ms = stubdm_now_ms();
    snprintf(w->state_path, sizeof(w->state_path),
             "/local/domain/%u/device-model/%u/state", stubdom_domid,
             guest_domid);
    stubdm__xswatch_init(&w->state_watch, on_state);
    stubdm__domwatch_init(&w->death, on_death);
    stubdm__timer_init(&w->deadline, on_deadline);

    rc = stubdm__timer_arm(ctx, &w->deadline, w->started_ms + timeout_ms);
    if (rc)
        goto fail;
    /* The watch's initial fire reads a value written before it was set. */
    rc = stubdm__xswatch_start(ctx, &w->state_watch, w->state_path);
    if (rc)
        goto fail;
    rc = stubdm__domwatch_start(ctx, &w->death, stubdom_domid, &st, detail,
                                sizeof(detail));
    if (rc)
        goto fail;
    stubdm__op_started(&w->op, op_out);
    if (st != STUBDM__DOM_RUNNING)
        on_death(ctx, &w->death, st, detail); /* queued, not called back */
    return 0;

fail:
    stubdm__op_abandon(&w->op);
    return rc;
}

int stubdm_dm_wait_running(stubdm_ctx *ctx, uint32_t stubdom_domid,
                           uint32_t guest_domid, int timeout_ms,
                           stubdm_done_fn *done, void *user,
                           stubdm_op **op_out)
{
    if (ctx && !done)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "wait: no callback");
    return wait_start(ctx, stubdom_domid, guest_domid, timeout_ms, done, user,
                      op_out);
}

int stubdm_dm_wait_running_sync(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                uint32_t guest_domid, int timeout_ms)
{
    stubdm_op *op = NULL;
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    rc = stubdm__sync_check(ctx, "wait_running_sync");
    if (!rc)
        rc = wait_start(ctx, stubdom_domid, guest_domid, timeout_ms, NULL,
                        NULL, &op);
    if (!rc)
        rc = stubdm__op_wait(op);
    stubdm_op_free(op);
    return rc;
}
