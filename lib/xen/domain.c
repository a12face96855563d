/*
 * Is a domain alive, and if not, why.  Used to end waits the moment a
 * stubdomain dies instead of at a timeout.
 *
 * xenstore says whether the domain is still known (IS_DOMAIN_INTRODUCED),
 * which works the same on a real Xen and on the simulated host; the
 * hypervisor, when present, says whether a known domain is dying, crashed
 * or shut down.  On the simulated host the mock xenstored records why a
 * simulated domain went away under /tool/stubdm-sim/domain/<id>/exit.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/peer.h"
#include "xen/domain.h"
#include "xen/hv.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define SIM_EXIT_FMT "/tool/stubdm-sim/domain/%u/exit"
#define SIM_EXIT_MAX 128

const char *stubdm__dom_state_name(enum stubdm__dom_state s)
{
    switch (s) {
    case STUBDM__DOM_RUNNING:
        return "running";
    case STUBDM__DOM_SHUTDOWN:
        return "shut down";
    case STUBDM__DOM_CRASHED:
        return "crashed";
    case STUBDM__DOM_DYING:
        return "dying";
    case STUBDM__DOM_GONE:
        return "destroyed";
    }
    return "?";
}

static const char *shutdown_reason_name(unsigned r)
{
    switch (r) {
    case 0:
        return "poweroff";
    case 1:
        return "reboot";
    case 2:
        return "suspend";
    case 3:
        return "crash";
    case 4:
        return "watchdog";
    case 5:
        return "soft reset";
    }
    return "unknown reason";
}

int stubdm__domain_state(stubdm_ctx *ctx, uint32_t domid,
                         enum stubdm__dom_state *state, char *detail,
                         size_t detail_len)
{
    struct xs_handle *xsh = NULL;
    struct stubdm__xc_dominfo info;
    int rc = stubdm__xs_handle(ctx, &xsh);

    detail[0] = '\0';
    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    errno = 0;
    if (!xs_is_domain_introduced(xsh, domid)) {
        char path[64], *why = NULL;

        /* false with an errno is a failed request, not an answer. */
        if (errno && errno != ENOENT && errno != EINVAL)
            return stubdm__fail(ctx, STUBDM_EXENSTORE, errno,
                                "asking xenstore about domain %u: %s", domid,
                                strerror(errno));
        *state = STUBDM__DOM_GONE;
        snprintf(path, sizeof(path), SIM_EXIT_FMT, domid);
        if (stubdm__xs_read(ctx, 0, path, SIM_EXIT_MAX, &why, NULL) == 0) {
            stubdm__printable_str(detail, detail_len, why);
            free(why);
        } else {
            snprintf(detail, detail_len, "destroyed");
        }
        stubdm__clear_error(ctx);
        return 0;
    }
    *state = STUBDM__DOM_RUNNING;
    if (!stubdm__xc_present(ctx))
        return 0;
    rc = stubdm__xc_domain_info(ctx, domid, &info);
    if (rc)
        return rc;
    if (!info.exists) {
        *state = STUBDM__DOM_GONE;
        snprintf(detail, detail_len, "destroyed");
    } else if (info.dying) {
        *state = STUBDM__DOM_DYING;
        snprintf(detail, detail_len, "dying (being destroyed)");
    } else if (info.crashed) {
        *state = STUBDM__DOM_CRASHED;
        snprintf(detail, detail_len, "crashed");
    } else if (info.shutdown) {
        *state = STUBDM__DOM_SHUTDOWN;
        snprintf(detail, detail_len, "shut down (%s)",
                 shutdown_reason_name(info.shutdown_reason));
    }
    return 0;
}

/* ---- the shared @releaseDomain monitor ---------------------------------- */

/* Move every subscriber of from to the tail of to. */
static void move_all(struct stubdm__list *from, struct stubdm__list *to)
{
    while (!stubdm__list_empty(from)) {
        struct stubdm__list *n = from->next;
        stubdm__list_del(n);
        stubdm__list_add_tail(to, n);
    }
}

static void on_release_domain(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                              const char *path)
{
    struct stubdm__list batch;
    (void)w;
    (void)path;

    /* @releaseDomain does not say which domain went away (Xen 4.17), so
     * every subscribed domain is checked.  Subscribers are moved to a local
     * list and back one at a time, so a callback may stop any watch,
     * including this one, without breaking the iteration.  The shared
     * watch stays while any subscriber does, checked or not: the count,
     * not the list, says when the last one went. */
    stubdm__list_init(&batch);
    move_all(&ctx->domwatches, &batch);
    while (!stubdm__list_empty(&batch) && !ctx->free_requested) {
        struct stubdm__domwatch *dw =
            STUBDM_CONTAINER_OF(batch.next, struct stubdm__domwatch, link);
        enum stubdm__dom_state st;
        char detail[160];

        stubdm__list_del(&dw->link);
        stubdm__list_add_tail(&ctx->domwatches, &dw->link);
        if (stubdm__domain_state(ctx, dw->domid, &st, detail,
                                 sizeof(detail)) != 0) {
            stubdm__log(ctx, STUBDM_LOG_WARN, ctx->os_errno, "domain",
                        "checking domain %u: %s", dw->domid, ctx->errmsg);
            continue;
        }
        if (st == STUBDM__DOM_RUNNING)
            continue;
        stubdm__domwatch_stop(ctx, dw);
        dw->cb(ctx, dw, st, detail);
    }
    /* Left unchecked only when the ctx is being freed: back on the ctx's
     * list, so that no subscriber links into this frame. */
    move_all(&batch, &ctx->domwatches);
}

void stubdm__domwatch_init(struct stubdm__domwatch *dw,
                           stubdm__domwatch_cb *cb)
{
    dw->cb = cb;
    dw->domid = 0;
    dw->active = false;
    stubdm__list_init(&dw->link);
}

int stubdm__domwatch_start(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                           uint32_t domid, enum stubdm__dom_state *state_out,
                           char *detail, size_t detail_len)
{
    int rc;

    stubdm__domwatch_stop(ctx, dw);
    if (!ctx->release_watch.path) {
        ctx->release_watch.cb = on_release_domain;
        rc = stubdm__xswatch_start(ctx, &ctx->release_watch, "@releaseDomain");
        if (rc)
            return rc;
    }
    /* Subscribed before the check: a death between the two is then seen by
     * the watch, so none is missed. */
    dw->domid = domid;
    dw->active = true;
    stubdm__list_add_tail(&ctx->domwatches, &dw->link);
    ctx->n_domwatches++;
    rc = stubdm__domain_state(ctx, domid, state_out, detail, detail_len);
    if (rc || *state_out != STUBDM__DOM_RUNNING)
        stubdm__domwatch_stop(ctx, dw);
    return rc;
}

void stubdm__domwatch_stop(stubdm_ctx *ctx, struct stubdm__domwatch *dw)
{
    if (!dw->active)
        return;
    dw->active = false;
    stubdm__list_del(&dw->link);
    /* The shared watch goes when its last subscriber does, so an idle ctx
     * holds no watch in xenstored. */
    if (--ctx->n_domwatches == 0)
        stubdm__xswatch_stop(ctx, &ctx->release_watch);
}
