/*
 * Tearing a stubdomain down: destroy the domain, remove the contract, run
 * the hotplug remove scripts, remove every node a spawn wrote.  Of a
 * domain the caller built and kept (stubdm_spawn_opts_set_domain without
 * STUBDM_SPAWN_ADOPT_DESTROY), only what the spawn added goes (detach).
 */
#include "console/console.h"
#include "console/dm_state.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/op.h"
#include "core/peer.h"
#include "pci/pci.h"
#include "spawn/spawn.h"
#include "core/num.h"
#include "spawn/hotplug.h"
#include "protocol/dmargs.h"
#include "qmp/transport.h" /* the teardown lock */
#include "xen/hv.h"
#include "xen/host.h"
#include "xen/nodes.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

/* Remove path if it exists with no children and an empty value. */
static int txn_prune(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                     const char *path)
{
    unsigned n = 0, len = 0;
    char **kids, *v;

    stubdm__xs_count(ctx, 2);
    kids = xs_directory(xsh, t, path, &n);
    if (!kids)
        return errno == ENOENT
                   ? 0
                   : stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                                  "listing %s: %s", path, strerror(errno));
    free(kids);
    if (n)
        return 0;
    v = xs_read(xsh, t, path, &len);
    free(v);
    if (!v || len)
        return 0;
    return stubdm__xs_rm_txn(ctx, xsh, t, path);
}

struct rm_args {
    uint32_t stub, guest;
    bool have_guest;
    const char *stub_vm;  /* may be NULL */
    const char *guest_vm; /* placeholder guest's vm to remove, or NULL */
    bool placeholder;
};

static int rm_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                  void *arg)
{
    const struct rm_args *a = arg;
    char p[128];
    int rc = 0;

    snprintf(p, sizeof(p), "/local/domain/%u/backend/vbd/%u", TOOLSTACK_DOMID,
             a->stub);
    rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
    snprintf(p, sizeof(p), "/local/domain/%u/backend/vif/%u", TOOLSTACK_DOMID,
             a->stub);
    if (!rc)
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
    /* The consoles' backends, whole, as the vbd and vif ones: the
     * contract's removal takes them when the guest is known, but when the
     * stubdomain went without us (another toolstack destroyed it, and
     * /local/domain/<stub> with it) only this finds them.  The domain is
     * gone, so nothing else can be in there. */
    snprintf(p, sizeof(p), "/local/domain/%u/backend/console/%u",
             TOOLSTACK_DOMID, a->stub);
    if (!rc)
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
    snprintf(p, sizeof(p), "/local/domain/%u/backend/pci/%u", TOOLSTACK_DOMID,
             a->stub);
    if (!rc)
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
    if (!rc && a->stub_vm)
        rc = stubdm__xs_rm_txn(ctx, xsh, t, a->stub_vm);
    snprintf(p, sizeof(p), "/local/domain/%u", a->stub);
    if (!rc)
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
    if (!rc && a->placeholder) {
        snprintf(p, sizeof(p), "/local/domain/%u", a->guest);
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
        if (!rc && a->guest_vm)
            rc = stubdm__xs_rm_txn(ctx, xsh, t, a->guest_vm);
    }
    /* Containers only spawns fill, when nothing else is left in them (a
     * real host always has content there, so this prunes only what a
     * spawn on an empty store created). */
    if (!rc) {
        static const char *const fixed[] = {
            "/local/domain/0/backend/vbd",
            "/local/domain/0/backend/vif",
            "/local/domain/0/backend/console",
            "/local/domain/0/backend/pci",
            "/local/domain/0/backend",
            "/local/domain/0",
            NULL,
        };
        for (size_t i = 0; !rc && fixed[i]; i++)
            rc = txn_prune(ctx, xsh, t, fixed[i]);
    }
    if (!rc && a->have_guest) {
        snprintf(p, sizeof(p), "/libxl/%u", a->guest);
        rc = txn_prune(ctx, xsh, t, p);
        if (!rc)
            rc = txn_prune(ctx, xsh, t, "/libxl");
    }
    if (!rc)
        rc = txn_prune(ctx, xsh, t, "/vm");
    return rc;
}

/* The teardown's remove/offline scripts; those cfg names (the spawn's own
 * configuration, NULL for a domain known by domid only) are trusted as
 * they are, any other only in the ctx's hotplug directory. */
static int remove_scripts(stubdm_ctx *ctx, uint32_t S,
                          const stubdm_spawn_opts *cfg)
{
    size_t max = cfg ? cfg->ndisks + cfg->nnics : 0, n = 0;
    char(*paths)[SCRIPT_MAX] = NULL;
    const char **own = NULL;
    int rc;

    if (max) {
        paths = stubdm__calloc(max, sizeof(*paths));
        own = stubdm__calloc(max, sizeof(*own));
        if (!paths || !own) {
            free(paths);
            free(own);
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug");
        }
        for (size_t i = 0; i < cfg->ndisks; i++) {
            if (cfg->disks[i].qcow2)
                continue;
            stubdm__spawn_script_path(cfg->disks[i].script,
                                      DEFAULT_BLOCK_SCRIPT, paths[n],
                                      sizeof(paths[n]));
            own[n] = paths[n];
            n++;
        }
        for (size_t i = 0; i < cfg->nnics; i++) {
            stubdm__spawn_script_path(cfg->nics[i].script, DEFAULT_VIF_SCRIPT,
                                      paths[n], sizeof(paths[n]));
            own[n] = paths[n];
            n++;
        }
    }
    rc = stubdm__hotplug_remove_all(ctx, S, own, n);
    free(paths);
    free(own);
    return rc;
}

/* Record the first failure of a teardown, keep going. */
static void keep_first(stubdm_ctx *ctx, int rc, const char *what, int *first,
                       char *msg, size_t len)
{
    if (!rc)
        return;
    LOG_WARN(ctx, MOD, "teardown: %s: %s", what, ctx->errmsg);
    if (*first)
        return;
    *first = rc;
    snprintf(msg, len, "%s: %.440s", what, ctx->errmsg);
}

/*
 * Whether guest G is the simulated host's placeholder that stubdomain S's
 * spawn made, so the teardown removes /local/domain/<G> (and, with
 * *made_vm, its vm dir) whole.  The mark, "<stub domid> <0|1>", counts
 * only when dom0 owns it: a guest writing its own would otherwise have
 * dom0 remove its whole tree and a vm path of its choosing.
 */
static bool placeholder_of(stubdm_ctx *ctx, uint32_t G, uint32_t S,
                           bool *made_vm)
{
    char p[96], *mark = NULL, *sp;
    uint32_t owner = 0, vm = 0;
    bool ok;

    snprintf(p, sizeof(p), "/local/domain/%u/" PLACEHOLDER_KEY, G);
    if (stubdm__xs_read_owned(ctx, p, 32, TOOLSTACK_DOMID, &mark, NULL)) {
        stubdm__clear_error(ctx);
        return false;
    }
    sp = strchr(mark, ' ');
    ok = sp != NULL;
    if (ok) {
        *sp = '\0';
        ok = stubdm__num_parse_domid(mark, &owner) == 0 &&
             stubdm__num_parse_u32(sp + 1, 1, &vm) == 0 && owner == S;
    }
    free(mark);
    *made_vm = vm == 1;
    return ok;
}

/* The kept contract, or one made from what a domid tells. */
static int remove_contract(stubdm_ctx *ctx, const stubdm_contract *kept,
                           uint32_t G, uint32_t S, const char *guest_vm)
{
    stubdm_contract *k = NULL;
    int rc;

    if (kept)
        return stubdm_contract_remove(ctx, kept);
    rc = stubdm_contract_new(&k);
    if (!rc)
        rc = stubdm_contract_set_domains(k, G, S);
    if (!rc && guest_vm)
        rc = stubdm_contract_set_vm_path(k, guest_vm);
    if (!rc)
        rc = stubdm_contract_remove(ctx, k);
    else
        stubdm__fail(ctx, rc, 0, "contract");
    stubdm_contract_free(k);
    return rc;
}

int stubdm__spawn_teardown_domain(stubdm_ctx *ctx,
                                  const struct stubdm__host_ops *host,
                                  uint32_t S, bool have_guest, uint32_t G,
                                  const char *guest_vm, const char *stub_vm,
                                  const stubdm_spawn_opts *cfg,
                                  const stubdm_contract *contract)
{
    char msg[STUBDM_ERRMSG_MAX] = "";
    int first = 0, rc;
    struct rm_args a = {S, G, have_guest, stub_vm, NULL, false};
    bool made_vm = false;

    if (have_guest && placeholder_of(ctx, G, S, &made_vm)) {
        a.placeholder = true;
        a.guest_vm = made_vm ? guest_vm : NULL;
    }

    /* A domain that could not be destroyed keeps its nodes: they are what
     * makes it a stubdomain to a later destroy by domid (its target, the
     * guest's device-model-domid), which can then finish the job. */
    rc = host->destroy(ctx, S);
    keep_first(ctx, rc, "destroying the domain", &first, msg, sizeof(msg));
    if (first)
        return stubdm__fail(ctx, first, 0, "%s", msg);
    /* Its PCI bus says what the guest was given: the bus and the contract
     * (which make it a stubdomain to a later destroy by domid) stay until
     * that is revoked. */
    rc = stubdm__pci_teardown(ctx, S, have_guest, G);
    keep_first(ctx, rc, "revoking its PCI devices", &first, msg, sizeof(msg));
    if (rc)
        return stubdm__fail(ctx, first, 0, "%s", msg);

    if (have_guest) {
        rc = remove_contract(ctx, contract, G, S, guest_vm);
        keep_first(ctx, rc, "removing the contract", &first, msg, sizeof(msg));
        /* The stubdomain's nodes lead a later destroy by domid to the
         * guest's contract: they stay while it does. */
        if (rc)
            return stubdm__fail(ctx, first, 0, "%s", msg);
    }
    /* The scripts read the backend nodes: before those go.  After the
     * domain is gone, as libxl runs them (nothing uses the device then). */
    if (!ctx->no_hotplug) {
        rc = remove_scripts(ctx, S, cfg);
        keep_first(ctx, rc, "hotplug scripts", &first, msg, sizeof(msg));
    }
    rc = stubdm__xs_transaction(ctx, "removing the stubdomain's nodes", rm_txn,
                                &a, NULL);
    keep_first(ctx, rc, "removing the stubdomain's nodes", &first, msg,
               sizeof(msg));
    if (first)
        return stubdm__fail(ctx, first, 0, "%s", msg);
    stubdm__clear_error(ctx);
    return 0;
}

/* Stop serving every console (and end a save or restore using them).
 * release: the stubdomain runs on (the handle is freed, not destroyed):
 * hand the consoles over instead of closing them, so the stubdomain's
 * ttys survive and another process can serve them
 * (stubdm__console_release). */
void stubdm__spawn_close_consoles(stubdm_stubdom *s, bool release)
{
    if (s->dm_op) {
        stubdm_op *op = s->dm_op;
        s->dm_op = NULL;
        stubdm__dm_state_cancel(op, "the stubdomain was torn down");
    }
    for (unsigned n = 0; n < STUBDM__NCONSOLES; n++) {
        if (s->cons[n]) {
            if (release)
                stubdm__console_release(s->cons[n]);
            else
                stubdm_console_free(s->cons[n]);
            s->cons[n] = NULL;
        }
    }
}

/* Remove the vbd and vif nodes a spawn wrote for the domain it adopted,
 * by devid (the caller's own devices stay), and the containers that were
 * left empty.  dom0's backend directory itself is never pruned: a host
 * has one before any domain. */
struct detach_args {
    uint32_t S;
    size_t ndisks, nnics; /* the spawn's devices, by index */
};

static int detach_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      void *arg)
{
    const struct detach_args *a = arg;
    const uint32_t S = a->S, T = TOOLSTACK_DOMID;
    char p[128];
    int rc = 0;

    for (size_t i = 0; !rc && i < a->ndisks + a->nnics; i++) {
        const char *kind = i < a->ndisks ? "vbd" : "vif";
        unsigned id = i < a->ndisks ? stubdm__spawn_vbd_devid(i)
                                    : (unsigned)(i - a->ndisks);
        snprintf(p, sizeof(p), "/local/domain/%u/backend/%s/%u/%u", T, kind, S,
                 id);
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
        snprintf(p, sizeof(p), "/local/domain/%u/device/%s/%u", S, kind, id);
        if (!rc)
            rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
    }
    for (int k = 0; !rc && k < 2; k++) {
        const char *kind = k ? "vif" : "vbd";
        snprintf(p, sizeof(p), "/local/domain/%u/backend/%s/%u", T, kind, S);
        rc = txn_prune(ctx, xsh, t, p);
        snprintf(p, sizeof(p), "/local/domain/%u/backend/%s", T, kind);
        if (!rc)
            rc = txn_prune(ctx, xsh, t, p);
        snprintf(p, sizeof(p), "/local/domain/%u/device/%s", S, kind);
        if (!rc)
            rc = txn_prune(ctx, xsh, t, p);
    }
    return rc;
}

/*
 * Undo what a spawn added to a domain it adopted and does not own, in the
 * order of a teardown (docs/embedding.md): the domain is paused again if
 * the spawn unpaused it (it stops using what goes next; a dead one cannot
 * be, which is no failure), the devices' remove/offline scripts run, their
 * nodes go, then the contract.  The domain and everything its builder
 * wrote stay.
 */
static int detach_domain(stubdm_stubdom *s)
{
    stubdm_ctx *ctx = s->ctx;
    const stubdm_spawn_opts *c = s->cfg;
    char msg[STUBDM_ERRMSG_MAX] = "";
    int first = 0, rc;

    if (s->started && s->host->pause(ctx, s->domid, true)) {
        LOG_INFO(ctx, MOD, "domain %u: not paused again: %s", s->domid,
                 ctx->errmsg);
        stubdm__clear_error(ctx);
    }
    if (!ctx->no_hotplug && (c->ndisks || c->nnics)) {
        rc = remove_scripts(ctx, s->domid, c);
        keep_first(ctx, rc, "hotplug scripts", &first, msg, sizeof(msg));
    }
    if (c->ndisks || c->nnics) {
        struct detach_args da = {s->domid, c->ndisks, c->nnics};
        rc = stubdm__xs_transaction(ctx, "removing the spawn's devices",
                                    detach_txn, &da, NULL);
        keep_first(ctx, rc, "removing the spawn's devices", &first, msg,
                   sizeof(msg));
    }
    if (!s->contract_rc) {
        rc = stubdm_contract_remove(ctx, s->contract);
        keep_first(ctx, rc, "removing the contract", &first, msg, sizeof(msg));
    }
    if (first)
        return stubdm__fail(ctx, first, 0, "%s", msg);
    stubdm__clear_error(ctx);
    return 0;
}

int stubdm__spawn_teardown(stubdm_stubdom *s)
{
    int rc = 0;

    stubdm__spawn_close_consoles(s, false);
    if (s->qmp) {
        stubdm_qmp_free(s->qmp);
        s->qmp = NULL;
    }
    if (s->adopted && !s->domain_made && s->attached) {
        rc = detach_domain(s);
        s->attached = false;
        LOG_DEBUG(s->ctx, MOD, "domain %u: the spawn's part undone%s",
                  s->domid, rc ? " (with errors)" : "");
    } else if (s->domain_made) {
        /* An adopted domain's contract exists once it was attached. */
        rc = stubdm__spawn_teardown_domain(
            s->ctx, s->host, s->domid, !s->adopted || s->attached, s->guest,
            s->vm_path[0] ? s->vm_path : NULL,
            s->stub_vm[0] ? s->stub_vm : NULL, s->cfg,
            s->contract_rc ? NULL : s->contract);
        s->domain_made = false;
        s->attached = false;
        LOG_DEBUG(s->ctx, MOD, "stubdomain %u torn down%s", s->domid,
                  rc ? " (with errors)" : "");
    }
    return rc;
}

/* ---- the destroy op ------------------------------------------------------ */

/*
 * An asynchronous teardown (stubdm_stubdom_destroy and
 * stubdm_stubdom_destroy_by_domid), chronologically:
 *
 *   start    (in the starting call) destroy the domain: the point of no
 *            return, so a cancel never leaves a half-destroyed domain;
 *   SCRIPTS  the backends' remove/offline scripts, one after another from
 *            the loop (hotplug.c's remove op): no dispatch waits for one;
 *   NODES    the contract and every node the spawn wrote, from one tick.
 *
 * Of a domain the caller built and kept (detach: a byod spawn's rollback
 * or destroy), start pauses it again instead (if the spawn unpaused it),
 * SCRIPTS runs the spawn's devices' scripts, NODES removes those devices'
 * nodes and the contract: the domain and its builder's nodes stay.
 *
 * The contract goes after the scripts, with the nodes: until then the
 * stubdomain's dom0-owned "target" names its guest, so a destroy cancelled
 * in between leaves a gone stubdomain a destroy by domid recognises and
 * finishes.
 */
enum td_step {
    TD_LOCK, /* another process tears the stubdomain down: wait */
    TD_SCRIPTS,
    TD_NODES,
    TD_NODES_DETACH, /* TD_NODES of a detach */
    TD_END,
};

static const char *const td_step_name[] = {
    [TD_LOCK] = "waiting for another teardown of it",
    [TD_SCRIPTS] = "running hotplug scripts",
    [TD_NODES] = "removing the contract and the stubdomain's nodes",
    [TD_NODES_DETACH] = "removing the spawn's devices and the contract",
    [TD_END] = "done",
};

struct td_op {
    stubdm_op op;
    stubdm_stubdom *s; /* the handle destroyed, until it is freed */
    uint32_t S, G;
    bool have_guest;
    char gvm[VM_PATH_MAX], svm[VM_PATH_MAX]; /* "": none */
    stubdm_contract *contract;               /* the spawn's (owned), or NULL */
    char (*own)[SCRIPT_MAX];                 /* the spawn's scripts */
    const char **own_ptrs;                   /* ... as hotplug.c takes them */
    size_t n_own;
    struct rm_args rm;
    bool detach;
    struct detach_args da;
    enum td_step step;
    struct stubdm__timer tick;
    stubdm_op *scripts;
    int first;
    char msg[STUBDM_ERRMSG_MAX];
    int64_t started_ms;
    /* Held from the start to the end, so that two processes tearing the
     * same stubdomain down (a toolstack and stubdmd's cleanup) do not run
     * its remove scripts twice: the second waits (TD_LOCK), then finds
     * what the first left, nothing. */
    struct stubdm__qmplock lock;
    char *lock_path; /* NULL: none could be made (logged) */
    const struct stubdm__host_ops *host;
    enum td_step after_lock;  /* TD_LOCK: the step the wait leads to */
    bool destroy_after_lock;  /* TD_LOCK: the domain is still to destroy */
    int64_t lock_deadline_ms; /* TD_LOCK: then EBUSY */
};

/* Another teardown's lock is tried this often, for at most this long
 * (its remove scripts are bounded each by the hotplug timeout). */
#define TD_LOCK_RETRY_MS 100
#define TD_LOCK_WAIT_MS 120000

static char *td_lock_path(stubdm_ctx *ctx, uint32_t S)
{
    bool simulated = !stubdm__xc_present(ctx);
    char *simdir = simulated ? stubdm__qmpt_default_simdir() : NULL;
    char *path = stubdm__teardown_lock_path(simulated, simdir, S);

    free(simdir);
    return path;
}

/* 0: held (or it cannot be made: the teardown goes on without it, a
 * warning logged); STUBDM_EBUSY: another open file holds it. */
static int td_lock_try(struct td_op *td)
{
    stubdm_ctx *ctx = td->op.ctx;
    int rc;

    if (!td->lock_path)
        return 0;
    rc = stubdm__qmplock_try(ctx, &td->lock, td->lock_path, false);
    if (rc && rc != STUBDM_EBUSY) {
        LOG_WARN(ctx, MOD, "destroy %u: without its teardown lock: %s", td->S,
                 ctx->errmsg);
        free(td->lock_path);
        td->lock_path = NULL;
        rc = 0;
    }
    stubdm__clear_error(ctx);
    return rc;
}

static void td_unlock(struct td_op *td)
{
    stubdm__qmplock_release(&td->lock, td->op.ctx->postfork);
}

/* The domain, destroyed (a gone one is no failure: host->destroy). */
static int td_destroy_domain(struct td_op *td)
{
    stubdm_ctx *ctx = td->op.ctx;

    LOG_DEBUG(ctx, MOD, "destroy %u: destroying the domain", td->S);
    return td->host->destroy(ctx, td->S);
}

static void td_finish(struct td_op *td)
{
    td_unlock(td);
    LOG_DEBUG(td->op.ctx, MOD, "destroy %u: %s (%.3f s)%s", td->S,
              td_step_name[TD_END],
              (double)(stubdm_now_ms() - td->started_ms) / 1000.0,
              td->first ? " with errors" : "");
    td->step = TD_END;
    if (td->first)
        stubdm__op_complete(&td->op, td->first, "destroy %u: %s", td->S,
                            td->msg);
    else
        stubdm__op_complete(&td->op, 0, NULL);
}

/* Into step, run from the next dispatch. */
static void td_go(struct td_op *td, enum td_step step)
{
    stubdm_ctx *ctx = td->op.ctx;

    td->step = step;
    LOG_DEBUG(ctx, MOD, "destroy %u: %s (%.3f s)", td->S, td_step_name[step],
              (double)(stubdm_now_ms() - td->started_ms) / 1000.0);
    if (stubdm__timer_arm(ctx, &td->tick, stubdm_now_ms())) {
        keep_first(ctx, STUBDM_ENOMEM, td_step_name[step], &td->first, td->msg,
                   sizeof(td->msg));
        td_finish(td);
    }
}

static enum td_step td_nodes_step(const struct td_op *td)
{
    return td->detach ? TD_NODES_DETACH : TD_NODES;
}

static void td_on_scripts(stubdm_op *op, int rc, void *user)
{
    struct td_op *td = user;
    stubdm_ctx *ctx = td->op.ctx;

    if (td->scripts != op)
        return;
    td->scripts = NULL;
    if (rc && !td->first) {
        td->first = rc;
        snprintf(td->msg, sizeof(td->msg), "hotplug scripts: %.440s",
                 stubdm_op_errmsg(op));
    }
    stubdm_op_free(op);
    (void)ctx;
    td_go(td, td_nodes_step(td));
}

/* A detach's nodes: the spawn's devices', then the contract it wrote. */
static void td_detach_nodes(struct td_op *td)
{
    stubdm_ctx *ctx = td->op.ctx;
    int rc;

    if (td->da.ndisks || td->da.nnics) {
        rc = stubdm__xs_transaction(ctx, "removing the spawn's devices",
                                    detach_txn, &td->da, NULL);
        keep_first(ctx, rc, "removing the spawn's devices", &td->first,
                   td->msg, sizeof(td->msg));
    }
    if (td->contract) {
        rc = stubdm_contract_remove(ctx, td->contract);
        keep_first(ctx, rc, "removing the contract", &td->first, td->msg,
                   sizeof(td->msg));
    }
}

/* The NODES step's removals (no completion). */
static void td_remove_nodes(struct td_op *td)
{
    stubdm_ctx *ctx = td->op.ctx;
    int rc;

    if (td->detach) {
        td_detach_nodes(td);
        return;
    }
    /* As in stubdm__spawn_teardown_domain: the bus and the contract stay
     * until the guest's PCI devices are revoked. */
    rc = stubdm__pci_teardown(ctx, td->S, td->have_guest, td->G);
    keep_first(ctx, rc, "revoking its PCI devices", &td->first, td->msg,
               sizeof(td->msg));
    if (rc)
        return;
    if (td->have_guest) {
        rc = remove_contract(ctx, td->contract, td->G, td->S,
                             td->gvm[0] ? td->gvm : NULL);
        keep_first(ctx, rc, "removing the contract", &td->first, td->msg,
                   sizeof(td->msg));
        /* The stubdomain's nodes lead a later destroy by domid to the
         * guest's contract: they stay while it does. */
        if (rc)
            return;
    }
    rc = stubdm__xs_transaction(ctx, "removing the stubdomain's nodes", rm_txn,
                                &td->rm, NULL);
    keep_first(ctx, rc, "removing the stubdomain's nodes", &td->first, td->msg,
               sizeof(td->msg));
}

/* Waiting for another process's teardown of S to end: then this one
 * goes on (destroying the domain if that was left to it). */
static void td_on_lock_tick(struct td_op *td)
{
    stubdm_ctx *ctx = td->op.ctx;
    int rc = td_lock_try(td);

    if (rc == STUBDM_EBUSY && stubdm_now_ms() < td->lock_deadline_ms) {
        if (!stubdm__timer_arm(ctx, &td->tick,
                               stubdm_now_ms() + TD_LOCK_RETRY_MS))
            return;
        rc = STUBDM_ENOMEM;
    }
    if (rc) {
        keep_first(ctx, rc, "waiting for another teardown of it", &td->first,
                   td->msg, sizeof(td->msg));
        td_finish(td);
        return;
    }
    if (td->destroy_after_lock && (rc = td_destroy_domain(td))) {
        keep_first(ctx, rc, "destroying the domain", &td->first, td->msg,
                   sizeof(td->msg));
        td_finish(td);
        return;
    }
    td_go(td, td->after_lock);
}

static void td_on_tick(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct td_op *td = STUBDM_CONTAINER_OF(t, struct td_op, tick);
    int rc;

    switch (td->step) {
    case TD_LOCK:
        td_on_lock_tick(td);
        return;
    case TD_SCRIPTS:
        if (ctx->no_hotplug) {
            td_go(td, td_nodes_step(td));
            return;
        }
        rc = stubdm__hotplug_remove(ctx, td->S, td->own_ptrs, td->n_own,
                                    td_on_scripts, td, &td->scripts);
        keep_first(ctx, rc, "hotplug scripts", &td->first, td->msg,
                   sizeof(td->msg));
        if (!rc && td->scripts)
            return; /* td_on_scripts goes on */
        td_go(td, td_nodes_step(td));
        return;
    case TD_NODES:
    case TD_NODES_DETACH:
        td_remove_nodes(td);
        td_finish(td);
        return;
    case TD_END:
        td_finish(td);
        return;
    }
}

/*
 * The ctx is being freed while the teardown runs: no loop turns any more,
 * so what is left of it runs here, blocking (stubdm_ctx_free is no
 * dispatch), and nothing is left behind: the scripts not run yet (the one
 * killed, again), then the nodes.
 */
static void td_finish_blocking(struct td_op *td)
{
    stubdm_ctx *ctx = td->op.ctx;
    int rc;

    LOG_WARN(ctx, MOD,
             "destroy %u: the ctx is freed while %s: finishing it blocking",
             td->S, td_step_name[td->step]);
    if (td->step == TD_SCRIPTS && !ctx->no_hotplug) {
        rc = stubdm__hotplug_remove_all(ctx, td->S, td->own_ptrs, td->n_own);
        keep_first(ctx, rc, "hotplug scripts", &td->first, td->msg,
                   sizeof(td->msg));
    }
    td_remove_nodes(td);
    td->step = TD_END;
}

static void td_stop(stubdm_op *op)
{
    struct td_op *td = (struct td_op *)op;
    stubdm_ctx *ctx = op->ctx;

    stubdm__timer_stop(ctx, &td->tick);
    if (td->step == TD_LOCK) /* nothing done yet: nothing to finish */
        td->step = TD_END;
    if (td->scripts) { /* kills the script that runs */
        stubdm_op_free(td->scripts);
        td->scripts = NULL;
    }
    if (td->s) {
        td->s->destroy_op = NULL;
        td->s = NULL;
    }
    if (td->step == TD_END) {
        td_unlock(td);
        return;
    }
    if (ctx->disposing && !ctx->postfork) {
        td_finish_blocking(td);
        td_unlock(td);
        return;
    }
    td_unlock(td);
    /* Cancelled, or freed pending: never silently. */
    char what[STUBDM_ERRMSG_MAX];
    if (td->detach)
        snprintf(what, sizeof(what),
                 "destroy %u: cancelled while %s: the domain is not "
                 "destroyed (it is its builder's); the spawn's devices "
                 "whose remove/offline did not run, their nodes and the "
                 "contract are left",
                 td->S, td_step_name[td->step]);
    else
        snprintf(
            what, sizeof(what),
            "destroy %u: cancelled while %s: the domain is destroyed; its "
            "contract, the backends whose remove/offline did not run and "
            "its nodes are left, which "
            "stubdm_stubdom_destroy_by_domid(%u) removes",
            td->S, td_step_name[td->step], td->S);
    LOG_WARN(ctx, MOD, "%s", what);
    if (op->state != STUBDM__OP_PENDING && op->rc == STUBDM_ECANCELED)
        snprintf(op->errmsg, sizeof(op->errmsg), "%s", what);
}

static void td_destroy(stubdm_op *op)
{
    struct td_op *td = (struct td_op *)op;

    stubdm_contract_free(td->contract);
    td->contract = NULL;
    td_unlock(td);
    free(td->lock_path);
    td->lock_path = NULL;
    free(td->own);
    td->own = NULL;
    free(td->own_ptrs);
    td->own_ptrs = NULL;
}

static const struct stubdm__op_type td_type = {
    .name = "destroy",
    .stop = td_stop,
    .destroy = td_destroy,
};

/* The spawn's own scripts (cfg's), the paths it wrote, into the op. */
static int td_own_scripts(struct td_op *td, const stubdm_spawn_opts *cfg)
{
    size_t max = cfg ? cfg->ndisks + cfg->nnics : 0, n = 0;

    if (!max)
        return 0;
    td->own = stubdm__calloc(max, sizeof(*td->own));
    td->own_ptrs = stubdm__calloc(max, sizeof(*td->own_ptrs));
    if (!td->own || !td->own_ptrs)
        return STUBDM_ENOMEM;
    for (size_t i = 0; i < cfg->ndisks; i++) {
        if (cfg->disks[i].qcow2)
            continue;
        stubdm__spawn_script_path(cfg->disks[i].script, DEFAULT_BLOCK_SCRIPT,
                                  td->own[n], sizeof(td->own[n]));
        td->own_ptrs[n] = td->own[n];
        n++;
    }
    for (size_t i = 0; i < cfg->nnics; i++) {
        stubdm__spawn_script_path(cfg->nics[i].script, DEFAULT_VIF_SCRIPT,
                                  td->own[n], sizeof(td->own[n]));
        td->own_ptrs[n] = td->own[n];
        n++;
    }
    td->n_own = n;
    return 0;
}

int stubdm__teardown_start(const struct stubdm__teardown *t,
                           stubdm_done_fn *done, void *user,
                           stubdm_op **op_out)
{
    stubdm_ctx *ctx = t->ctx;
    struct td_op *td;
    bool made_vm = false, busy;
    int rc;

    *op_out = NULL;
    td = (struct td_op *)stubdm__op_new(ctx, &td_type, sizeof(*td), done,
                                        user);
    if (!td)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "destroy op");
    td->S = t->S;
    td->G = t->G;
    td->have_guest = t->have_guest;
    td->started_ms = stubdm_now_ms();
    td->host = t->host;
    stubdm__qmplock_init(&td->lock);
    snprintf(td->gvm, sizeof(td->gvm), "%s", t->guest_vm ? t->guest_vm : "");
    snprintf(td->svm, sizeof(td->svm), "%s", t->stub_vm ? t->stub_vm : "");
    stubdm__timer_init(&td->tick, td_on_tick);
    td->detach = t->detach;
    td->da = (struct detach_args){td->S, t->cfg ? t->cfg->ndisks : 0,
                                  t->cfg ? t->cfg->nnics : 0};
    td->step = t->made || t->detach ? TD_SCRIPTS : TD_END;
    if (td_own_scripts(td, t->cfg)) {
        stubdm__op_abandon(&td->op);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "destroy op");
    }
    td->lock_path = td_lock_path(ctx, td->S);
    busy = td_lock_try(td) == STUBDM_EBUSY;
    if (busy) {
        LOG_INFO(ctx, MOD,
                 "destroy %u: another process tears it down (it holds %s): "
                 "waiting for it to end",
                 td->S, td->lock_path);
        td->after_lock = td->step;
        td->step = TD_LOCK;
        td->lock_deadline_ms = td->started_ms + TD_LOCK_WAIT_MS;
    }
    rc = stubdm__timer_arm(ctx, &td->tick,
                           td->started_ms + (busy ? TD_LOCK_RETRY_MS : 0));
    if (rc) {
        stubdm__op_abandon(&td->op);
        return rc;
    }
    td->rm = (struct rm_args){td->S,          td->G,
                              td->have_guest, td->svm[0] ? td->svm : NULL,
                              NULL,           false};
    if (t->detach) {
        /* The domain stops using what goes next; a dead one cannot be
         * paused, which is no failure. */
        if (t->repause && t->host->pause(ctx, td->S, true)) {
            LOG_INFO(ctx, MOD, "domain %u: not paused again: %s", td->S,
                     ctx->errmsg);
            stubdm__clear_error(ctx);
        }
        LOG_DEBUG(ctx, MOD,
                  "destroy %u: the spawn's part of a domain it "
                  "does not own: %s",
                  td->S, td_step_name[TD_SCRIPTS]);
    } else if (t->made && td->have_guest &&
               placeholder_of(ctx, td->G, td->S, &made_vm)) {
        td->rm.placeholder = true;
        td->rm.guest_vm = made_vm && td->gvm[0] ? td->gvm : NULL;
    }
    if (t->made && !t->detach && busy) {
        td->destroy_after_lock = true;
    } else if (t->made && !t->detach) {
        /* A domain that could not be destroyed keeps its nodes: they are
         * what makes it a stubdomain to a later destroy by domid. */
        rc = td_destroy_domain(td);
        if (rc) {
            char msg[STUBDM_ERRMSG_MAX];
            snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
            stubdm__op_abandon(&td->op);
            return stubdm__fail(ctx, rc, ctx->os_errno,
                                "destroy %u: destroying the domain: %s", t->S,
                                msg);
        }
        LOG_DEBUG(ctx, MOD, "destroy %u: %s (%.3f s)", td->S,
                  td_step_name[TD_SCRIPTS],
                  (double)(stubdm_now_ms() - td->started_ms) / 1000.0);
    }
    if (t->contract) { /* taken: the op removes exactly what it holds */
        td->contract = *t->contract;
        *t->contract = NULL;
    }
    stubdm__op_started(&td->op, op_out);
    return 0;
}

/* ---- the handle's destroy ------------------------------------------------ */

int stubdm__spawn_teardown_start(stubdm_stubdom *s, stubdm_done_fn *done,
                                 void *user, stubdm_op **op_out)
{
    bool detach = s->adopted && !s->domain_made && s->attached;
    struct stubdm__teardown t = {
        .ctx = s->ctx,
        .host = s->host,
        .S = s->domid,
        .G = s->guest,
        .have_guest = !s->adopted || s->attached,
        .made = s->domain_made,
        .detach = detach,
        .repause = detach && s->started,
        .guest_vm = s->vm_path[0] ? s->vm_path : NULL,
        .stub_vm = s->stub_vm[0] ? s->stub_vm : NULL,
        .cfg = s->cfg,
        .contract = s->contract_rc ? NULL : &s->contract,
    };
    int rc;

    stubdm__spawn_close_consoles(s, false);
    if (s->qmp) {
        stubdm_qmp_free(s->qmp);
        s->qmp = NULL;
    }
    rc = stubdm__teardown_start(&t, done, user, op_out);
    if (rc)
        return rc;
    if (!s->contract)
        s->contract_rc = STUBDM_ESTATE;
    s->domain_made = false;
    s->attached = false;
    return 0;
}

int stubdm_stubdom_destroy(stubdm_stubdom *s, stubdm_done_fn *done, void *user,
                           stubdm_op **op_out)
{
    stubdm_op *op = NULL;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!s)
        return STUBDM_EINVAL;
    if (s->destroy_op)
        return stubdm__fail(s->ctx, STUBDM_EBUSY, 0,
                            "destroy %u: a destroy of it is running",
                            s->domid);
    if (stubdm__spawn_rolling_back(s))
        return stubdm__fail(s->ctx, STUBDM_EBUSY, 0,
                            "destroy %u: the rollback of its failed spawn "
                            "is running (the spawn op completes when it "
                            "ended)",
                            s->domid);
    /* A pending spawn ends first (cancelled: its scripts killed), without
     * a rollback of its own: this op tears the domain down. */
    stubdm__spawn_cancel(s, "the stubdomain was destroyed");
    rc = stubdm__spawn_teardown_start(s, done, user, &op);
    if (rc)
        return rc;
    s->step = STUBDM_SPAWN_STEP_DESTROYED;
    s->destroy_op = op;
    ((struct td_op *)op)->s = s;
    if (op_out)
        *op_out = op;
    else
        op->floating = true;
    return 0;
}

int stubdm_stubdom_destroy_sync(stubdm_stubdom *s)
{
    stubdm_op *op = NULL;
    int rc;

    if (!s)
        return STUBDM_EINVAL;
    if ((rc = stubdm__sync_check(s->ctx, "stubdom_destroy_sync")) ||
        (rc = stubdm_stubdom_destroy(s, NULL, NULL, &op)))
        return rc;
    rc = stubdm__op_wait(op);
    stubdm_op_free(op);
    return rc;
}

void stubdm__spawn_destroy_detach(stubdm_stubdom *s)
{
    if (s->destroy_op) {
        ((struct td_op *)s->destroy_op)->s = NULL;
        s->destroy_op = NULL;
    }
}
