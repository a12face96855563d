/*
 * Stubdomains known by domid only: destroy, find a guest's, list.
 */
#include "core/num.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/op.h"
#include "spawn/spawn.h"
#include "core/peer.h"
#include "protocol/dmargs.h"
#include "xen/domain.h"
#include "xen/host.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

static bool parse_domid_value(const char *v, uint32_t *out)
{
    return stubdm__num_parse_domid(v, out) == 0;
}

/* Domain d's /vm path, or NULL (absent, not dom0's, too long, or not one
 * /vm/<name> entry: the teardown then removes no /vm entry for it).  The
 * teardown removes that subtree: a path a domain could write would let it
 * choose what dom0 removes. */
static char *read_vm_path(stubdm_ctx *ctx, uint32_t d)
{
    char p[96], *v = NULL;

    snprintf(p, sizeof(p), "/local/domain/%u/vm", d);
    if (stubdm__xs_read_owned(ctx, p, VM_PATH_MAX - 1, TOOLSTACK_DOMID, &v,
                              NULL) == 0 &&
        (stubdm__vm_path_check(NULL, v) || strchr(v + 4, '/'))) {
        free(v);
        v = NULL;
    }
    stubdm__clear_error(ctx);
    return v;
}

/* Whether dom0 still holds backends of a domain that is gone: what a
 * stubdomain destroyed by another toolstack (xl destroying its guest,
 * say) leaves when that toolstack knew nothing of the library's devices. */
static bool dom0_leftovers(stubdm_ctx *ctx, uint32_t stubdom)
{
    static const char *const kinds[] = {"console", "vbd", "vif"};
    char p[96], *v = NULL;

    for (size_t i = 0; i < STUBDM_ARRAY_SIZE(kinds); i++) {
        snprintf(p, sizeof(p), "/local/domain/%u/backend/%s/%u",
                 TOOLSTACK_DOMID, kinds[i], stubdom);
        int rc = stubdm__xs_read(ctx, 0, p, 4096, &v, NULL);
        free(v);
        v = NULL;
        if (rc == 0) {
            stubdm__clear_error(ctx);
            return true;
        }
    }
    stubdm__clear_error(ctx);
    return false;
}

/*
 * The guest whose device model stubdom is or was, from the guest's side of
 * the contract (when /local/domain/<stubdom> and its "target" went with
 * the domain, or that target is not dom0's): the one domain whose
 * image/device-model-domid names it.  That node must be dom0's (the
 * contract writes it so): a domain that could write its own would
 * otherwise claim a stubdomain and have its nodes removed.
 */
static bool guest_naming(stubdm_ctx *ctx, struct xs_handle *xsh,
                         uint32_t stubdom, uint32_t *guest)
{
    unsigned n = 0, found = 0;
    uint32_t g = 0;
    char **doms, p[96], *v = NULL;

    stubdm__xs_count(ctx, 1);
    doms = xs_directory(xsh, XBT_NULL, "/local/domain", &n);
    for (unsigned i = 0; doms && i < n; i++) {
        uint32_t d, dm;
        unsigned np = 0;
        struct xs_permissions *perm;

        if (!parse_domid_value(doms[i], &d) || d == 0 || d == stubdom)
            continue;
        snprintf(p, sizeof(p), "/local/domain/%u/image/device-model-domid", d);
        if (stubdm__xs_read(ctx, 0, p, 16, &v, NULL) == 0 &&
            parse_domid_value(v, &dm) && dm == stubdom) {
            stubdm__xs_count(ctx, 1);
            perm = xs_get_permissions(xsh, XBT_NULL, p, &np);
            if (perm && np > 0 && perm[0].id == TOOLSTACK_DOMID) {
                g = d;
                found++;
            }
            free(perm);
        }
        free(v);
        v = NULL;
    }
    free(doms);
    stubdm__clear_error(ctx);
    if (found != 1)
        return false;
    *guest = g;
    return true;
}

/*
 * The guest of stubdomain S from S's own "target", taken only when dom0
 * owns it (the contract writes it under /local/domain/<S>, which is
 * dom0's; libxl's likewise) and it names another domain.  0 with *guest,
 * STUBDM_ENOENT (none, or not to be trusted: logged), or a xenstore
 * failure.
 */
static int trusted_target(stubdm_ctx *ctx, uint32_t S, uint32_t *guest)
{
    char p[96], *v = NULL;
    uint32_t g = 0;
    int rc;

    snprintf(p, sizeof(p), "/local/domain/%u/target", S);
    rc = stubdm__xs_read_owned(ctx, p, 16, TOOLSTACK_DOMID, &v, NULL);
    if (rc == 0 && (stubdm__num_parse_domid(v, &g) || g == 0 || g == S)) {
        char shown[24];
        rc = stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s is \"%s\", not a guest",
                          p, stubdm__printable_str(shown, sizeof(shown), v));
    }
    free(v);
    if (rc == STUBDM_EPERM || rc == STUBDM_EPROTO) {
        LOG_WARN(ctx, MOD, "destroy: %s", ctx->errmsg);
        rc = STUBDM_ENOENT;
    }
    if (rc == STUBDM_ENOENT)
        stubdm__clear_error(ctx);
    else if (rc == 0)
        *guest = g;
    return rc;
}

/* Whether domain d exists: its /local/domain node, or xenstore knows it. */
static int domain_exists(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t d,
                         bool *exists)
{
    char p[96], *v = NULL;
    int rc;

    snprintf(p, sizeof(p), "/local/domain/%u", d);
    rc = stubdm__xs_read(ctx, 0, p, 4096, &v, NULL);
    free(v);
    if (rc && rc != STUBDM_ENOENT && rc != STUBDM_ELIMIT)
        return rc;
    stubdm__clear_error(ctx);
    stubdm__xs_count(ctx, 1);
    *exists = rc != STUBDM_ENOENT || xs_is_domain_introduced(xsh, d);
    return 0;
}

/*
 * Whether stubdom is a stubdomain to destroy, and its guest: 0 with
 * *have_guest and *guest, or the refusal (message on the ctx).
 */
static int judge(stubdm_ctx *ctx, uint32_t stubdom, unsigned flags,
                 bool *have_guest, uint32_t *guest)
{
    struct xs_handle *xsh = NULL;
    bool exists = false;
    int rc;

    if (stubdom == 0 || !stubdm__domid_ok(stubdom))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "destroy: %u is not a stubdomain domid", stubdom);
    if (flags & ~(unsigned)STUBDM_STUBDOM_DESTROY_FORCE)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "destroy: unknown flags 0x%x", flags);
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    rc = trusted_target(ctx, stubdom, guest);
    if (rc && rc != STUBDM_ENOENT)
        return rc;
    *have_guest = rc == 0;
    if ((rc = domain_exists(ctx, xsh, stubdom, &exists)))
        return rc;
    if (!*have_guest)
        *have_guest = guest_naming(ctx, xsh, stubdom, guest);
    if (!*have_guest && exists && !(flags & STUBDM_STUBDOM_DESTROY_FORCE))
        return stubdm__fail(ctx, STUBDM_ENOTSTUBDOM, 0,
                            "destroy: domain %u is not a stubdomain (no "
                            "dom0-owned target naming its guest, no guest's "
                            "dom0-owned image/device-model-domid naming it); "
                            "left untouched (force destroys it anyway)",
                            stubdom);
    if (!exists) {
        if (!*have_guest && !dom0_leftovers(ctx, stubdom))
            return stubdm__fail(ctx, STUBDM_ENOENT, 0,
                                "destroy: no stubdomain %u", stubdom);
        LOG_INFO(ctx, MOD,
                 "destroy: stubdomain %u is gone already (destroyed by "
                 "another toolstack?); removing what it left in dom0 "
                 "(backends, hotplug scripts' devices)",
                 stubdom);
    } else if (!*have_guest) {
        LOG_WARN(ctx, MOD,
                 "destroy: domain %u is not a stubdomain: "
                 "destroyed as forced",
                 stubdom);
    }
    return 0;
}

int stubdm_stubdom_destroy_by_domid(stubdm_ctx *ctx, uint32_t stubdom,
                                    unsigned flags, stubdm_done_fn *done,
                                    void *user, stubdm_op **op_out)
{
    struct stubdm__teardown t;
    char *gvm = NULL, *svm = NULL;
    uint32_t guest = 0;
    bool have_guest = false;
    stubdm_op *op = NULL;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    rc = judge(ctx, stubdom, flags, &have_guest, &guest);
    if (rc)
        return rc;
    svm = read_vm_path(ctx, stubdom);
    if (have_guest)
        gvm = read_vm_path(ctx, guest);
    t = (struct stubdm__teardown){
        .ctx = ctx,
        .host = stubdm__host(ctx),
        .S = stubdom,
        .G = guest,
        .have_guest = have_guest,
        .made = true,
        .guest_vm = gvm,
        .stub_vm = svm,
    };
    rc = stubdm__teardown_start(&t, done, user, &op);
    free(gvm);
    free(svm);
    if (rc)
        return rc;
    if (op_out)
        *op_out = op;
    else
        op->floating = true;
    return 0;
}

int stubdm_stubdom_destroy_by_domid_sync(stubdm_ctx *ctx, uint32_t stubdom,
                                         unsigned flags)
{
    stubdm_op *op = NULL;
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if ((rc = stubdm__sync_check(ctx, "stubdom_destroy_by_domid_sync")) ||
        (rc = stubdm_stubdom_destroy_by_domid(ctx, stubdom, flags, NULL, NULL,
                                              &op)))
        return rc;
    rc = stubdm__op_wait(op);
    stubdm_op_free(op);
    return rc;
}

int stubdm_stubdom_find_by_guest(stubdm_ctx *ctx, uint32_t guest,
                                 uint32_t *out)
{
    char p[96], *v = NULL;
    int rc;

    if (!ctx || !out)
        return STUBDM_EINVAL;
    snprintf(p, sizeof(p), "/local/domain/%u/image/device-model-domid", guest);
    /* Only dom0's: a guest must not choose what a caller (stubdm-ctl
     * destroy --guest) takes for its stubdomain. */
    rc = stubdm__xs_read_owned(ctx, p, 16, TOOLSTACK_DOMID, &v, NULL);
    if (rc == STUBDM_ENOENT)
        return stubdm__fail(ctx, rc, 0, "guest %u has no stubdomain", guest);
    if (rc)
        return rc;
    if (!parse_domid_value(v, out)) {
        free(v);
        return stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s is not a domid", p);
    }
    free(v);
    return 0;
}

struct list_entry {
    uint32_t domid, guest;
    char name[NAME_MAX_LEN + 1];
    char state[128];
};

struct stubdm_stubdom_list {
    struct list_entry *e;
    size_t n;
};

static void list_entry_state(stubdm_ctx *ctx, struct list_entry *e)
{
    char p[96], *v = NULL, detail[128];
    enum stubdm__dom_state st;

    if (stubdm__domain_state(ctx, e->domid, &st, detail, sizeof(detail)) ==
            0 &&
        st != STUBDM__DOM_RUNNING) {
        snprintf(e->state, sizeof(e->state), "%s", detail);
        stubdm__clear_error(ctx);
        return;
    }
    snprintf(p, sizeof(p), "/local/domain/%u/device-model/%u/state", e->domid,
             e->guest);
    if (stubdm__xs_read(ctx, 0, p, 64, &v, NULL) == 0 && !strcmp(v, "running"))
        snprintf(e->state, sizeof(e->state), "running");
    else
        snprintf(e->state, sizeof(e->state), "starting");
    free(v);
    stubdm__clear_error(ctx);
}

int stubdm_stubdom_list_new(stubdm_ctx *ctx, stubdm_stubdom_list **out)
{
    struct xs_handle *xsh = NULL;
    stubdm_stubdom_list *l;
    unsigned n = 0;
    char **doms;
    int rc;

    if (!ctx || !out)
        return STUBDM_EINVAL;
    *out = NULL;
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    doms = xs_directory(xsh, XBT_NULL, "/local/domain", &n);
    if (!doms)
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "listing /local/domain: %s", strerror(errno));
    l = stubdm__calloc(1, sizeof(*l));
    if (l && n)
        l->e = stubdm__calloc(n, sizeof(*l->e));
    if (!l || (n && !l->e)) {
        free(doms);
        if (l)
            free(l);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "list");
    }
    for (unsigned i = 0; i < n; i++) {
        struct list_entry *e = &l->e[l->n];
        char p[96], *v = NULL;
        if (!parse_domid_value(doms[i], &e->domid) || e->domid == 0)
            continue;
        snprintf(p, sizeof(p), "/local/domain/%u/target", e->domid);
        if (stubdm__xs_read(ctx, 0, p, 16, &v, NULL) ||
            !parse_domid_value(v, &e->guest)) {
            free(v);
            continue;
        }
        free(v);
        v = NULL;
        snprintf(p, sizeof(p), "/local/domain/%u/name", e->domid);
        if (stubdm__xs_read(ctx, 0, p, NAME_MAX_LEN, &v, NULL) == 0 &&
            stubdm__spawn_printable(v, NAME_MAX_LEN))
            snprintf(e->name, sizeof(e->name), "%s", v);
        free(v);
        list_entry_state(ctx, e);
        l->n++;
    }
    free(doms);
    stubdm__clear_error(ctx);
    *out = l;
    return 0;
}

size_t stubdm_stubdom_list_count(const stubdm_stubdom_list *l)
{
    return l ? l->n : 0;
}

uint32_t stubdm_stubdom_list_domid(const stubdm_stubdom_list *l, size_t i)
{
    return l && i < l->n ? l->e[i].domid : 0;
}

uint32_t stubdm_stubdom_list_guest(const stubdm_stubdom_list *l, size_t i)
{
    return l && i < l->n ? l->e[i].guest : 0;
}

const char *stubdm_stubdom_list_name(const stubdm_stubdom_list *l, size_t i)
{
    return l && i < l->n ? l->e[i].name : "";
}

const char *stubdm_stubdom_list_state(const stubdm_stubdom_list *l, size_t i)
{
    return l && i < l->n ? l->e[i].state : "";
}

void stubdm_stubdom_list_free(stubdm_stubdom_list *l)
{
    if (!l)
        return;
    free(l->e);
    free(l);
}
