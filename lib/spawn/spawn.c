/*
 * The spawn op: start, the step machine, the stubdomain handle.
 *
 * Chronologically (one step per timer tick of the ctx's loop, so many
 * spawns in one ctx interleave; each step is a handful of blocking
 * xenstore requests or hypercalls, in steps.c; every step change goes
 * through step_to, the order is next_step):
 *
 *   CREATE    resolve the guest's vm path and name; the host backend
 *             creates and builds the domain paused; write the
 *             /local/domain/<S> and /vm/<stub uuid> basics; introduce
 *             the domain to xenstore; the hypervisor target relation.
 *   CONTRACT  stubdm_contract_write (dm-argv, target, device-model dir,
 *             consoles, xs_set_target).
 *   DEVICES   vbd and vif frontend/backend nodes; the library's consoles.
 *   HOTPLUG   the backends' hotplug scripts (hotplug.c), unless the ctx
 *             leaves them to the caller: the domain stays paused until
 *             every one reports "connected", as libxl does.
 *   UNPAUSE   the host backend starts the domain.
 *   WAIT      stubdm_dm_wait_running (watch + death monitor + deadline).
 *   QMP       stubdm_qmp_open, if asked.
 *
 * A domain the caller built (stubdm_spawn_opts_set_domain) starts at
 * CONTRACT, which first takes what CREATE would have learnt from the
 * caller's domain (stubdm__spawn_step_adopt); NO_UNPAUSE goes from HOTPLUG
 * to WAIT.
 *
 * Failure anywhere, stubdm_op_cancel, or freeing the handle while pending
 * ends the spawn (spawn_end): its step's resources are released and the
 * rollback starts, the asynchronous teardown (teardown.c): the domain is
 * destroyed in that call, its scripts run and its nodes go from the loop;
 * a domain the caller built and kept is not destroyed: only what the
 * spawn added to it is undone.  The op completes from the rollback's
 * completion, with the spawn's error (and the rollback's, if it failed
 * too), so no dispatch waits for a script and done means nothing is left.
 * Freeing the op while it runs or rolls back leaves the rollback running
 * alone (floating); stubdm_ctx_free finishes it blocking.
 */
#include "console/console.h"
#include "console/dm_state.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "pci/pci.h"
#include "spawn/spawn.h"
#include "core/loop.h"
#include "core/op.h"
#include "spawn/hotplug.h"
#include "spawn/stubdom.h"
#include "xen/domain.h"
#include "xen/host.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *stubdm_spawn_step_name(stubdm_spawn_step step)
{
    switch (step) {
    case STUBDM_SPAWN_STEP_CREATE:
        return "creating the domain";
    case STUBDM_SPAWN_STEP_CONTRACT:
        return "writing the xenstore contract";
    case STUBDM_SPAWN_STEP_DEVICES:
        return "attaching devices";
    case STUBDM_SPAWN_STEP_HOTPLUG:
        return "running hotplug scripts";
    case STUBDM_SPAWN_STEP_UNPAUSE:
        return "unpausing";
    case STUBDM_SPAWN_STEP_WAIT:
        return "waiting for running";
    case STUBDM_SPAWN_STEP_QMP:
        return "opening QMP";
    case STUBDM_SPAWN_STEP_RUNNING:
        return "running";
    case STUBDM_SPAWN_STEP_FAILED:
        return "failed";
    case STUBDM_SPAWN_STEP_DESTROYED:
        return "destroyed";
    }
    return "?";
}

/* ---- the op -------------------------------------------------------------- */

static bool step_to(stubdm_stubdom *s, stubdm_spawn_step step);

static void step_to_failed(stubdm_stubdom *s)
{
    step_to(s, STUBDM_SPAWN_STEP_FAILED);
}

/* The spawn ended (failure or cancel), or is rolling back. */
static bool ended(const struct spawn_op *so)
{
    return so->op.state != STUBDM__OP_PENDING || so->ending;
}

/* Release what the running step holds: its timer, probe, scripts (killed
 * before the rollback runs their removes), wait. */
static void spawn_release(struct spawn_op *so)
{
    stubdm__timer_stop(so->op.ctx, &so->tick);
    stubdm__xsprobe_stop(so->op.ctx, &so->probe);
    if (so->hotplug) {
        stubdm_op_free(so->hotplug);
        so->hotplug = NULL;
    }
    if (so->wait) {
        stubdm_op_free(so->wait);
        so->wait = NULL;
    }
    if (so->pci) {
        stubdm_op_free(so->pci);
        so->pci = NULL;
    }
}

/* Complete with the spawn's error, and the rollback's (NULL: none). */
static void end_complete(struct spawn_op *so, const char *cleanup)
{
    if (cleanup)
        stubdm__op_complete(&so->op, so->end_rc,
                            "%s; cleaning up failed too: %s", so->end_msg,
                            cleanup);
    else
        stubdm__op_complete(&so->op, so->end_rc, "%s", so->end_msg);
}

static void on_rollback_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;
    char why[STUBDM_ERRMSG_MAX];

    if (so->rollback != op)
        return;
    so->rollback = NULL;
    snprintf(why, sizeof(why), "%s", stubdm_op_errmsg(op));
    stubdm_op_free(op);
    LOG_DEBUG(so->op.ctx, MOD, "guest %u: rolled back (%.3f s)%s",
              so->s ? so->s->guest : 0,
              (double)(stubdm_now_ms() - so->started_ms) / 1000.0,
              rc ? " with errors" : "");
    end_complete(so, rc ? why : NULL);
}

/*
 * Start the rollback of s with done/user (NULL: floating), into *op_out.
 * The asynchronous teardown, or, where its start failed for memory, the
 * blocking one (nothing may leak).  0, or the failure (message on the
 * ctx).
 */
static int rollback_start(stubdm_stubdom *s, stubdm_done_fn *done, void *user,
                          stubdm_op **op_out)
{
    stubdm_op *op = NULL;
    int rc;

    *op_out = NULL;
    if (!s->domain_made && !(s->adopted && s->attached)) {
        stubdm__spawn_close_consoles(s, false);
        if (s->qmp) {
            stubdm_qmp_free(s->qmp);
            s->qmp = NULL;
        }
        return 0;
    }
    rc = stubdm__spawn_teardown_start(s, done, user, &op);
    if (rc == STUBDM_ENOMEM)
        return stubdm__spawn_teardown(s);
    if (rc)
        return rc;
    if (done)
        *op_out = op;
    else
        op->floating = true;
    return 0;
}

/*
 * End the spawn with rc (end_msg set): release its step, start the
 * rollback; the op completes from its completion, or now when there is
 * nothing to undo or its start failed.
 */
static void spawn_end(struct spawn_op *so, int rc)
{
    stubdm_stubdom *s = so->s;
    int trc;

    if (ended(so))
        return;
    so->ending = true;
    so->end_rc = rc;
    spawn_release(so);
    if (!s || so->op.ctx->postfork) {
        end_complete(so, NULL);
        return;
    }
    step_to_failed(s);
    trc = rollback_start(s, on_rollback_done, so, &so->rollback);
    if (trc) {
        char why[STUBDM_ERRMSG_MAX];
        snprintf(why, sizeof(why), "%s", so->op.ctx->errmsg);
        end_complete(so, why);
    } else if (!so->rollback) {
        end_complete(so, NULL);
    }
}

static void spawn_fail(struct spawn_op *so, int rc, stubdm_spawn_step step,
                       const char *msg)
{
    stubdm_ctx *ctx = so->op.ctx;

    if (ended(so))
        return;
    /* Say so when the cause is the lost connection itself: "Bad file
     * descriptor" alone names no culprit, and the teardown on the same
     * connection fails too (a destroy on a new one cleans up). */
    if (rc == STUBDM_EXENSTORE && stubdm__xs_conn_lost(ctx))
        snprintf(so->end_msg, sizeof(so->end_msg),
                 "spawn: %s: the connection to xenstored was lost (%.400s)",
                 stubdm_spawn_step_name(step), msg);
    else
        snprintf(so->end_msg, sizeof(so->end_msg), "spawn: %s: %.440s",
                 stubdm_spawn_step_name(step), msg);
    spawn_end(so, rc);
}

/* The connection to xenstored went while the spawn waits (xs.c's probe:
 * no request is in flight then, and the watch would never fire). */
static void on_conn_lost(stubdm_ctx *ctx, struct stubdm__xsprobe *p, int rc)
{
    struct spawn_op *so = STUBDM_CONTAINER_OF(p, struct spawn_op, probe);

    spawn_fail(so, rc, STUBDM_SPAWN_STEP_WAIT, ctx->errmsg);
}

/* The step after each that succeeded: the order of a spawn. */
static const stubdm_spawn_step next_step[] = {
    [STUBDM_SPAWN_STEP_CREATE] = STUBDM_SPAWN_STEP_CONTRACT,
    [STUBDM_SPAWN_STEP_CONTRACT] = STUBDM_SPAWN_STEP_DEVICES,
    [STUBDM_SPAWN_STEP_DEVICES] = STUBDM_SPAWN_STEP_HOTPLUG,
    [STUBDM_SPAWN_STEP_HOTPLUG] = STUBDM_SPAWN_STEP_UNPAUSE,
    [STUBDM_SPAWN_STEP_UNPAUSE] = STUBDM_SPAWN_STEP_WAIT,
    [STUBDM_SPAWN_STEP_WAIT] = STUBDM_SPAWN_STEP_QMP,
    [STUBDM_SPAWN_STEP_QMP] = STUBDM_SPAWN_STEP_RUNNING,
};

static stubdm_spawn_step after(const stubdm_stubdom *s, stubdm_spawn_step step)
{
    if (step == STUBDM_SPAWN_STEP_WAIT && !s->cfg->qmp)
        return STUBDM_SPAWN_STEP_RUNNING;
    /* The caller unpauses its own domain once WAIT is reported. */
    if (step == STUBDM_SPAWN_STEP_HOTPLUG &&
        (s->cfg->adopt_flags & STUBDM_SPAWN_ADOPT_NO_UNPAUSE))
        return STUBDM_SPAWN_STEP_WAIT;
    return next_step[step];
}

static void call_progress(stubdm_op *op, void *arg)
{
    stubdm_stubdom *s = arg;

    (void)op;
    s->progress(s, s->step, s->progress_user);
}

/* Report the step to the caller; false if the spawn must not continue
 * (cancelled, freed, or the ctx is being freed). */
static bool report(struct spawn_op *so)
{
    stubdm_stubdom *s = so->s;
    enum stubdm__op_notified r;

    if (!s->progress)
        return true;
    /* The handle's own deferred free; the op's is op.c's. */
    s->in_progress = true;
    r = stubdm__op_notify(&so->op, call_progress, s);
    if (r == STUBDM__OP_NOTIFY_CTX_FREED)
        return false;
    s->in_progress = false;
    if (s->free_pending) {
        stubdm_stubdom_free(s); /* cancels the op, rolls back */
        return false;
    }
    return r == STUBDM__OP_NOTIFY_PENDING && !so->ending;
}

/*
 * Every change of a spawn's step goes through here (curl's mstate()): it
 * is logged; RUNNING completes the op; a step of the spawn's course is
 * reported to the caller.  Whether that step is to run now (the spawn
 * goes on).
 */
static bool step_to(stubdm_stubdom *s, stubdm_spawn_step step)
{
    struct spawn_op *so = s->op;

    s->step = step;
    if (!so) {
        LOG_DEBUG(s->ctx, MOD, "guest %u: %s", s->guest,
                  stubdm_spawn_step_name(step));
        return false;
    }
    LOG_DEBUG(s->ctx, MOD, "guest %u: %s (%.3f s)", s->guest,
              stubdm_spawn_step_name(step),
              (double)(stubdm_now_ms() - so->started_ms) / 1000.0);
    if (step == STUBDM_SPAWN_STEP_FAILED ||
        step == STUBDM_SPAWN_STEP_DESTROYED)
        return false;
    if (step == STUBDM_SPAWN_STEP_RUNNING) {
        stubdm__op_complete(&so->op, 0, NULL);
        return false;
    }
    return report(so);
}

/* Into the step after 'step', run from the next tick. */
static void step_next(struct spawn_op *so, stubdm_spawn_step step)
{
    stubdm_spawn_step next = after(so->s, step);
    int rc;

    if (!step_to(so->s, next))
        return;
    rc = stubdm__timer_arm(so->op.ctx, &so->tick, stubdm_now_ms());
    if (rc)
        spawn_fail(so, rc, next, so->op.ctx->errmsg);
}

/* A step's op (hotplug, wait, QMP) completed with rc: the spawn fails,
 * or goes on with the next step, unless it ended meanwhile. */
static void step_done(struct spawn_op *so, stubdm_spawn_step step, int rc,
                      stubdm_op *op)
{
    if (ended(so))
        return;
    if (rc)
        spawn_fail(so, rc, step, stubdm_op_errmsg(op));
    else
        step_next(so, step);
}

/* The QMP step ends with the PCI devices' QMP part, one at a time, so
 * the spawn completes (and the guest may be unpaused) with them in. */
static void pci_next(struct spawn_op *so);

static void on_pci_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;

    if (so->pci == op)
        so->pci = NULL;
    if (rc || ended(so)) {
        step_done(so, STUBDM_SPAWN_STEP_QMP, rc, op);
        stubdm_op_free(op);
        return;
    }
    stubdm_op_free(op);
    pci_next(so);
}

static void pci_next(struct spawn_op *so)
{
    stubdm_stubdom *s = so->s;
    int rc;

    if (so->pci_next == s->cfg->npcis) {
        step_next(so, STUBDM_SPAWN_STEP_QMP);
        return;
    }
    rc = stubdm__pci_attach_prepared(s->ctx, s->domid, s->guest,
                                     &s->cfg->pcis[so->pci_next++], s->qmp,
                                     s->cfg->timeout_ms, on_pci_done, so,
                                     &so->pci);
    if (rc)
        spawn_fail(so, rc, STUBDM_SPAWN_STEP_QMP, s->ctx->errmsg);
}

static void on_qmp_open(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;

    if (rc || ended(so) || !so->s->cfg->npcis) {
        step_done(so, STUBDM_SPAWN_STEP_QMP, rc, op);
        return;
    }
    pci_next(so);
}

static int start_qmp(struct spawn_op *so)
{
    stubdm_stubdom *s = so->s;
    stubdm_qmp_opts *o = NULL;
    int rc = stubdm_qmp_opts_new(&o);

    if (!rc)
        rc = stubdm_qmp_opts_set_transport(o,
                                           s->host->simulated
                                               ? STUBDM_QMP_TRANSPORT_SIMULATED
                                               : STUBDM_QMP_TRANSPORT_VCHAN);
    if (!rc && s->cfg->qmp_timeout_ms)
        rc = stubdm_qmp_opts_set_open_timeout(o, s->cfg->qmp_timeout_ms);
    if (!rc)
        rc = stubdm_qmp_open(so->op.ctx, s->domid, s->guest, o, on_qmp_open,
                             so, &s->qmp, NULL);
    stubdm_qmp_opts_free(o);
    return rc;
}

static void on_wait_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;

    stubdm__xsprobe_stop(so->op.ctx, &so->probe);
    if (so->wait == op) {
        so->wait = NULL;
        stubdm_op_free(op);
    }
    step_done(so, STUBDM_SPAWN_STEP_WAIT, rc, op);
}

static void on_hotplug_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;

    if (so->hotplug == op) {
        so->hotplug = NULL;
        if (!ended(so) && rc)
            spawn_fail(so, rc, STUBDM_SPAWN_STEP_HOTPLUG,
                       stubdm_op_errmsg(op));
        stubdm_op_free(op);
    }
    if (ended(so) || rc)
        return;
    step_next(so, STUBDM_SPAWN_STEP_HOTPLUG);
}

/* Start the WAIT step: the wait op, and the connection probe beside it. */
static int start_wait(struct spawn_op *so)
{
    stubdm_stubdom *s = so->s;
    int rc = stubdm_dm_wait_running(s->ctx, s->domid, s->guest,
                                    s->cfg->timeout_ms, on_wait_done, so,
                                    &so->wait);

    /* on_wait_done continues (maybe already from inside the call) */
    if (!rc && !ended(so) && so->wait)
        rc = stubdm__xsprobe_start(s->ctx, &so->probe);
    return rc;
}

/*
 * Run step; *more: a callback (hotplug, wait, QMP) continues the spawn,
 * else the next step follows now.
 */
static int run_step(struct spawn_op *so, stubdm_spawn_step step, bool *more)
{
    stubdm_stubdom *s = so->s;
    int rc;

    *more = false;
    switch (step) {
    case STUBDM_SPAWN_STEP_CREATE:
        return stubdm__spawn_step_create(s);
    case STUBDM_SPAWN_STEP_CONTRACT:
        return stubdm__spawn_step_contract(s);
    case STUBDM_SPAWN_STEP_DEVICES:
        return stubdm__spawn_step_devices(s);
    case STUBDM_SPAWN_STEP_HOTPLUG:
        rc = stubdm__spawn_step_hotplug(s, on_hotplug_done, so, &so->hotplug);
        *more = !rc && so->hotplug;
        return rc;
    case STUBDM_SPAWN_STEP_UNPAUSE:
        rc = s->host->unpause(s->ctx, &s->build);
        s->started = rc == 0;
        return rc;
    case STUBDM_SPAWN_STEP_WAIT:
        *more = true;
        return start_wait(so);
    case STUBDM_SPAWN_STEP_QMP:
        *more = true;
        return start_qmp(so);
    default:
        return stubdm__fail(s->ctx, STUBDM_ESTATE, 0,
                            "internal: unexpected step");
    }
}

static void on_tick(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct spawn_op *so = STUBDM_CONTAINER_OF(t, struct spawn_op, tick);
    stubdm_spawn_step step = so->s->step;
    bool more = false;
    int rc;

    if (!so->begun) {
        /* The first step is reported here, never inside stubdm_spawn. */
        so->begun = true;
        if (!step_to(so->s, step))
            return;
    }
    rc = run_step(so, step, &more);
    if (rc)
        spawn_fail(so, rc, step, ctx->errmsg);
    else if (!more)
        step_next(so, step);
}

/* The op ends with its rollback running (freed, or the ctx freed): the
 * rollback goes on alone; one the ctx stopped already is released. */
static void rollback_orphan(struct spawn_op *so)
{
    stubdm_op *r = so->rollback;

    so->rollback = NULL;
    if (!r)
        return;
    if (!r->ctx) {
        stubdm_op_free(r);
        return;
    }
    r->done = NULL;
    r->user = NULL;
    r->floating = true;
}

static void spawn_stop(stubdm_op *op)
{
    struct spawn_op *so = (struct spawn_op *)op;
    stubdm_stubdom *s = so->s;
    stubdm_op *r = NULL;

    spawn_release(so);
    rollback_orphan(so);
    if (!s)
        return;
    /* Stopped without spawn_end: the op freed while pending (a
     * cancellation), or the ctx freed.  A forked child leaves the domain
     * to the parent that is making it; a destroy tears down itself. */
    if (!so->ending && !so->no_rollback && !op->ctx->postfork &&
        (op->state == STUBDM__OP_PENDING || op->rc)) {
        step_to_failed(s);
        if (op->ctx->disposing)
            stubdm__spawn_teardown(s); /* no loop turns any more */
        else if (rollback_start(s, NULL, NULL, &r))
            LOG_WARN(op->ctx, MOD, "guest %u: rolling back: %s", s->guest,
                     op->ctx->errmsg);
    }
    s->op = NULL;
    so->s = NULL;
}

static void spawn_cancel(stubdm_op *op)
{
    struct spawn_op *so = (struct spawn_op *)op;

    if (ended(so))
        return;
    snprintf(so->end_msg, sizeof(so->end_msg), "spawn: %s: cancelled",
             stubdm_spawn_step_name(so->s ? so->s->step
                                          : STUBDM_SPAWN_STEP_FAILED));
    spawn_end(so, STUBDM_ECANCELED);
}

static const struct stubdm__op_type spawn_type = {
    .name = "spawn",
    .stop = spawn_stop,
    .destroy = NULL,
    .cancel = spawn_cancel,
};

/* The handle's memory (the caller's stubdm_stubdom_free, or a start that
 * failed). */
static void stubdom_release(stubdm_stubdom *s)
{
    stubdm_contract_free(s->contract);
    stubdm_spawn_opts_free(s->cfg);
    free(s);
}

/* The caller's domain to adopt exists (xenstore knows it) and runs. */
static int check_adopted(stubdm_ctx *ctx, uint32_t domid)
{
    enum stubdm__dom_state st;
    char detail[160];
    int rc = stubdm__domain_state(ctx, domid, &st, detail, sizeof(detail));

    if (rc)
        return rc;
    if (st == STUBDM__DOM_GONE)
        return stubdm__fail(ctx, STUBDM_ENOENT, 0,
                            "spawn: domain %u does not exist (xenstore does "
                            "not know it): build and introduce it first, "
                            "or let the spawn create one",
                            domid);
    if (st != STUBDM__DOM_RUNNING)
        return stubdm__fail(ctx, STUBDM_ESTATE, 0, "spawn: domain %u is %s",
                            domid, detail);
    return 0;
}

/* A handle for a spawn of cfg: validated, its own copy, its contract. */
static int stubdom_new(stubdm_ctx *ctx, const stubdm_spawn_opts *cfg,
                       stubdm_stubdom **out)
{
    const struct stubdm__host_ops *host = stubdm__host(ctx);
    stubdm_contract *k = NULL;
    stubdm_stubdom *s;
    int rc;

    rc = stubdm__spawn_validate(ctx, cfg, host->simulated, &k);
    if (rc)
        return rc;
    s = stubdm__calloc(1, sizeof(*s));
    if (!s) {
        stubdm_contract_free(k);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "spawn");
    }
    s->contract = k;
    s->contract_rc = STUBDM_ESTATE; /* not placed yet */
    s->cfg = stubdm__spawn_config_dup(cfg);
    if (!s->cfg) {
        stubdom_release(s);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "spawn: config");
    }
    s->ctx = ctx;
    s->host = host;
    s->guest = cfg->guest;
    s->backend = stubdm__spawn_backend(cfg, host->simulated);
    s->step = STUBDM_SPAWN_STEP_CREATE;
    if (cfg->adopt) {
        if ((rc = check_adopted(ctx, cfg->adopt))) {
            stubdom_release(s);
            return rc;
        }
        /* CREATE is the caller's: the spawn starts at CONTRACT. */
        s->adopted = true;
        s->domid = cfg->adopt;
        s->domain_made = (cfg->adopt_flags & STUBDM_SPAWN_ADOPT_DESTROY) != 0;
        if (s->domain_made) /* a cancel before CONTRACT destroys it too */
            stubdm__spawn_read_stub_vm(s);
        s->step = STUBDM_SPAWN_STEP_CONTRACT;
    }
    *out = s;
    return 0;
}

int stubdm_spawn(stubdm_ctx *ctx, const stubdm_spawn_opts *cfg,
                 stubdm_spawn_progress_fn *progress, stubdm_done_fn *done,
                 void *user, stubdm_stubdom **s_out, stubdm_op **op_out)
{
    stubdm_stubdom *s = NULL;
    struct spawn_op *so;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (s_out)
        *s_out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!cfg || !s_out)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: configuration and handle are required");
    if ((rc = stubdom_new(ctx, cfg, &s)))
        return rc;
    s->progress = progress;
    s->progress_user = user;
    so = (struct spawn_op *)stubdm__op_new(ctx, &spawn_type, sizeof(*so), done,
                                           user);
    if (!so) {
        stubdom_release(s);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "spawn op");
    }
    so->s = s;
    so->started_ms = stubdm_now_ms();
    s->op = so;
    stubdm__timer_init(&so->tick, on_tick);
    stubdm__xsprobe_init(&so->probe, on_conn_lost);
    /* Nothing is done inside this call: the first step runs from the next
     * dispatch, like every callback. */
    rc = stubdm__timer_arm(ctx, &so->tick, so->started_ms);
    if (rc) {
        so->s = NULL;
        stubdm__op_abandon(&so->op);
        stubdom_release(s);
        return rc;
    }
    LOG_DEBUG(ctx, MOD, "guest %u: spawning on the %s host", s->guest,
              s->host->name);
    stubdm__op_started(&so->op, op_out);
    *s_out = s;
    return 0;
}

int stubdm_spawn_sync(stubdm_ctx *ctx, const stubdm_spawn_opts *cfg,
                      stubdm_spawn_progress_fn *progress, void *user,
                      stubdm_stubdom **s_out)
{
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    int rc;

    if (s_out)
        *s_out = NULL;
    if (!ctx || !s_out)
        return STUBDM_EINVAL;
    if ((rc = stubdm__sync_check(ctx, "spawn_sync")) ||
        (rc = stubdm_spawn(ctx, cfg, progress, NULL, user, &s, &op)))
        return rc;
    rc = stubdm__op_wait(op);
    /* Freeing a pending op (the wait failed) cancels it and cleans up. */
    stubdm_op_free(op);
    if (rc)
        stubdm_stubdom_free(s);
    else
        *s_out = s;
    return rc;
}

uint32_t stubdm_stubdom_domid(const stubdm_stubdom *s)
{
    return s ? s->domid : 0;
}

uint32_t stubdm_stubdom_guest(const stubdm_stubdom *s)
{
    return s ? s->guest : 0;
}

stubdm_spawn_step stubdm_stubdom_step(const stubdm_stubdom *s)
{
    return s ? s->step : STUBDM_SPAWN_STEP_FAILED;
}

stubdm_qmp *stubdm_stubdom_qmp(const stubdm_stubdom *s)
{
    return s ? s->qmp : NULL;
}

bool stubdm__spawn_rolling_back(const stubdm_stubdom *s)
{
    return s->op && s->op->ending;
}

void stubdm__spawn_cancel(stubdm_stubdom *s, const char *why)
{
    if (s->op)
        s->op->no_rollback = true;
    if (s->op)
        stubdm__op_complete(&s->op->op, STUBDM_ECANCELED,
                            "spawn: %s: cancelled: %s",
                            stubdm_spawn_step_name(s->step), why);
}

void stubdm_stubdom_free(stubdm_stubdom *s)
{
    if (!s)
        return;
    if (s->in_progress) {
        s->free_pending = true;
        return;
    }
    stubdm__spawn_destroy_detach(s);
    if (s->op && !ended(s->op)) {
        snprintf(s->op->end_msg, sizeof(s->op->end_msg),
                 "spawn: %s: cancelled: the handle was freed",
                 stubdm_spawn_step_name(s->step));
        spawn_end(s->op, STUBDM_ECANCELED);
    }
    if (s->op) { /* rolling back, or completed: the op goes on alone */
        s->op->s = NULL;
        s->op = NULL;
    }
    stubdm__spawn_close_consoles(s, s->domain_made || s->attached);
    if (s->qmp)
        stubdm_qmp_free(s->qmp);
    stubdom_release(s);
}

stubdm_console *stubdm_stubdom_console(const stubdm_stubdom *s, unsigned n)
{
    return s && n < STUBDM__NCONSOLES ? s->cons[n] : NULL;
}

stubdm_console_backend stubdm_stubdom_console_backend(const stubdm_stubdom *s)
{
    return s ? s->backend : STUBDM_CONSOLE_BACKEND_IOEMU;
}

static int pause_common(stubdm_stubdom *s, bool pause)
{
    int rc;

    if (!s)
        return STUBDM_EINVAL;
    if (s->op || (!s->domain_made && !s->attached))
        return stubdm__fail(s->ctx, STUBDM_ESTATE, 0,
                            "stubdomain %u is %s, not running", s->domid,
                            stubdm_spawn_step_name(s->step));
    if (s->paused == pause)
        return 0;
    rc = s->host->pause(s->ctx, s->domid, pause);
    if (rc)
        return rc;
    s->paused = pause;
    LOG_DEBUG(s->ctx, MOD, "stubdomain %u %s", s->domid,
              pause ? "paused" : "unpaused");
    return 0;
}

int stubdm_stubdom_pause(stubdm_stubdom *s)
{
    return pause_common(s, true);
}

int stubdm_stubdom_unpause(stubdm_stubdom *s)
{
    return pause_common(s, false);
}

stubdm_op **stubdm__stubdom_dm_op(stubdm_stubdom *s)
{
    return &s->dm_op;
}

stubdm_ctx *stubdm__stubdom_ctx(const stubdm_stubdom *s)
{
    return s->ctx;
}

bool stubdm__stubdom_paused(const stubdm_stubdom *s)
{
    return s->paused;
}
