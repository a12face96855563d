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
#include "core/peer.h"
#include "spawn/spawn.h"
#include "core/num.h"
#include "spawn/hotplug.h"
#include "protocol/dmargs.h"
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
static int detach_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      void *arg)
{
    const stubdm_stubdom *s = arg;
    const stubdm_spawn_opts *c = s->cfg;
    const uint32_t S = s->domid, T = TOOLSTACK_DOMID;
    char p[128];
    int rc = 0;

    for (size_t i = 0; !rc && i < c->ndisks + c->nnics; i++) {
        const char *kind = i < c->ndisks ? "vbd" : "vif";
        unsigned id = i < c->ndisks ? stubdm__spawn_vbd_devid(i)
                                    : (unsigned)(i - c->ndisks);
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
        rc = stubdm__xs_transaction(ctx, "removing the spawn's devices",
                                    detach_txn, s, NULL);
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
