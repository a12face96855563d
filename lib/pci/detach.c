/*
 * Detaching a PCI device from a running guest (stubdm_pci_detach,
 * docs/pci.md "Hot-unplug").
 *
 * Chronologically: start (the device must be on the stubdomain's bus;
 * DEVICE_DELETED subscribed before asking) -> device_del -> QEMU's
 * DEVICE_DELETED for the device's id (the event, not libxl's query-pci
 * poll; a QEMU that no longer has the device answers "not found", which
 * counts as removed) -> the entry Closing, the bus Reconfiguring, and
 * pciback's Connected again -> the entry removed, the dom0 side revoked
 * -> done.  Until DEVICE_DELETED nothing is undone: QEMU may still use
 * the device, so a deadline there leaves it attached and says so.  Once
 * QEMU let go, the stubdomain's death or the deadline only skip
 * pciback's answer: the entry and the permissions go anyway.
 */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/op.h"
#include "pci/pci.h"
#include "qmp/json.h"
#include "xen/domain.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "pci"
#define XB_CONNECTED 4u
#define QMP_TIMEOUT_MS 10000

struct detach_op {
    stubdm_op op;
    uint32_t stub, guest;
    struct stubdm_pci_dev dev;
    stubdm_qmp *q;
    int timeout_ms;
    int64_t started_ms;
    char bdf[STUBDM_PCI_ADDR_STRLEN], qid[32], state_path[96];
    bool deleted, closing;
    stubdm_qmp_sub *sub;
    stubdm_op *cmd;
    struct stubdm__xswatch watch;
    struct stubdm__domwatch death;
    struct stubdm__timer deadline;
};

static double waited_s(const struct detach_op *d)
{
    return (double)(stubdm_now_ms() - d->started_ms) / 1000.0;
}

/* QEMU let go: the entry and the dom0 side go. */
static void finish(struct detach_op *d)
{
    stubdm_ctx *ctx = d->op.ctx;
    unsigned idx = 0;
    int rc = stubdm__pci_backend_find(ctx, d->stub, &d->dev.addr, &idx);

    /* What the entry recorded as granted, before the entry goes. */
    if (!rc)
        rc = stubdm__pci_revoke_entry(ctx, d->guest, d->stub, &d->dev, idx);
    else if (rc == STUBDM_ENOENT)
        rc = stubdm__pci_revoke(ctx, d->guest, d->stub, &d->dev, NULL);
    if (!rc)
        rc = stubdm__pci_backend_remove(ctx, d->stub, &d->dev.addr, NULL);
    if (rc) {
        stubdm__op_complete(&d->op, rc, "%s", ctx->errmsg);
        return;
    }
    LOG_DEBUG(ctx, MOD, "PCI device %s detached from guest %u after %.3f s",
              d->bdf, d->guest, waited_s(d));
    stubdm__op_complete(&d->op, 0, NULL);
}

static void on_state(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                     const char *path)
{
    struct detach_op *d = STUBDM_CONTAINER_OF(w, struct detach_op, watch);
    unsigned st = 0;
    int rc;

    (void)path;
    rc = stubdm__pci_backend_state(ctx, d->stub, &st);
    if (rc && rc != STUBDM_ENOENT) {
        stubdm__op_complete(&d->op, rc, "%s", ctx->errmsg);
        return;
    }
    stubdm__clear_error(ctx);
    if (!rc && st != XB_CONNECTED)
        return;
    stubdm__xswatch_stop(ctx, &d->watch);
    finish(d);
}

static void unplugged(struct detach_op *d)
{
    stubdm_ctx *ctx = d->op.ctx;
    int rc;

    d->deleted = true;
    stubdm_qmp_sub_free(d->sub);
    d->sub = NULL;
    if ((rc = stubdm__pci_backend_close(ctx, d->stub, &d->dev.addr)) ||
        (rc = stubdm__xswatch_start(ctx, &d->watch, d->state_path))) {
        stubdm__op_complete(&d->op, rc, "%s", ctx->errmsg);
        return;
    }
    d->closing = true;
}

static void on_event(stubdm_qmp *q, const stubdm_qmp_event *ev, void *user)
{
    struct detach_op *d = user;
    const char *data = stubdm_qmp_event_data_json(ev);
    struct stubdm__json_doc *doc = NULL;
    bool ours;

    (void)q;
    if (d->deleted || !data ||
        stubdm__json_parse(data, strlen(data), NULL, &doc, NULL))
        return;
    ours = stubdm__json_string_is(stubdm__json_get(stubdm__json_doc_root(doc),
                                                   "device"),
                                  d->qid);
    stubdm__json_doc_free(doc);
    if (ours)
        unplugged(d);
}

static void on_del_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                         const stubdm_qmp_reply *r, void *user)
{
    (void)op;
    struct detach_op *d = user;
    const char *cls = r ? stubdm_qmp_reply_error_class(r) : NULL;
    const char *desc = r ? stubdm_qmp_reply_error_desc(r) : NULL;

    (void)q;
    d->cmd = NULL;
    if (!rc || d->deleted)
        return; /* DEVICE_DELETED follows (or came first) */
    /* QEMU does not have it (any more): nothing for it to let go.  QEMU
     * says so with DeviceNotFound, or (since 6.0) a GenericError
     * "Device '<id>' not found". */
    if (rc == STUBDM_EQMP && ((cls && !strcmp(cls, "DeviceNotFound")) ||
                              (desc && strstr(desc, "not found")))) {
        unplugged(d);
        return;
    }
    stubdm__op_complete(&d->op, rc, "device_del of PCI device %s: %s", d->bdf,
                        r && stubdm_qmp_reply_error_desc(r)
                            ? stubdm_qmp_reply_error_desc(r)
                            : stubdm_strerror(rc));
}

/* The command's op is ours (not floating): freed once its reply, which
 * lives no longer than the call, has been used. */
static void on_del(stubdm_qmp *q, stubdm_op *op, int rc,
                   const stubdm_qmp_reply *r, void *user)
{
    on_del_reply(q, op, rc, r, user);
    stubdm_op_free(op);
}

static void on_death(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                     enum stubdm__dom_state st, const char *detail)
{
    struct detach_op *d = STUBDM_CONTAINER_OF(dw, struct detach_op, death);

    (void)ctx;
    (void)st;
    (void)detail;
    /* No QEMU any more: nothing uses the device. */
    stubdm__xswatch_stop(ctx, &d->watch);
    finish(d);
}

static void on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct detach_op *d = STUBDM_CONTAINER_OF(t, struct detach_op, deadline);

    if (d->closing) {
        LOG_WARN(ctx, MOD,
                 "PCI device %s: pciback did not answer its "
                 "closing within %d ms: removed anyway",
                 d->bdf, d->timeout_ms);
        stubdm__xswatch_stop(ctx, &d->watch);
        finish(d);
        return;
    }
    stubdm__op_complete(&d->op, STUBDM_ETIMEDOUT,
                        "PCI device %s was not removed by QEMU (no "
                        "DEVICE_DELETED in %d ms): still attached",
                        d->bdf, d->timeout_ms);
}

static void detach_stop(stubdm_op *op)
{
    struct detach_op *d = (struct detach_op *)op;

    stubdm__xswatch_stop(op->ctx, &d->watch);
    stubdm__domwatch_stop(op->ctx, &d->death);
    stubdm__timer_stop(op->ctx, &d->deadline);
    stubdm_qmp_sub_free(d->sub);
    d->sub = NULL;
    stubdm_op_free(d->cmd);
    d->cmd = NULL;
}

static const struct stubdm__op_type detach_type = {
    .name = "pci-detach",
    .stop = detach_stop,
    .destroy = NULL,
};

static int detach_begin(struct detach_op *d)
{
    stubdm_ctx *ctx = d->op.ctx;
    enum stubdm__dom_state st;
    char detail[160], args[64];
    unsigned idx = 0;
    int rc;

    rc = stubdm__pci_backend_find(ctx, d->stub, &d->dev.addr, &idx);
    if (rc == STUBDM_ENOENT)
        return stubdm__fail(ctx, STUBDM_ENOENT, 0,
                            "PCI device %s is not attached to stubdomain %u",
                            d->bdf, d->stub);
    if (rc)
        return rc;
    if ((rc = stubdm__timer_arm(ctx, &d->deadline,
                                d->started_ms + d->timeout_ms)) ||
        (rc = stubdm_qmp_subscribe(d->q, "DEVICE_DELETED", on_event, d,
                                   &d->sub)))
        return rc;
    snprintf(args, sizeof(args), "{\"id\":\"%s\"}", d->qid);
    if ((rc = stubdm_qmp_execute(d->q, "device_del", args, QMP_TIMEOUT_MS,
                                 on_del, d, &d->cmd)))
        return rc;
    if ((rc = stubdm__domwatch_start(ctx, &d->death, d->stub, &st, detail,
                                     sizeof(detail))))
        return rc;
    if (st != STUBDM__DOM_RUNNING)
        on_death(ctx, &d->death, st, detail);
    return 0;
}

int stubdm_pci_detach(stubdm_ctx *ctx, uint32_t stubdom_domid,
                      uint32_t guest_domid, const stubdm_pci_addr *addr,
                      stubdm_qmp *q, int timeout_ms, stubdm_done_fn *done,
                      void *user, stubdm_op **op_out)
{
    struct detach_op *d;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!addr || !q || !done || timeout_ms <= 0 || stubdom_domid == 0 ||
        !stubdm__domid_ok(stubdom_domid) || !stubdm__domid_ok(guest_domid) ||
        addr->dev > 31 || addr->func > 7)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "pci detach: invalid arguments (stubdomain %u, "
                            "guest %u, timeout %d ms)",
                            stubdom_domid, guest_domid, timeout_ms);
    d = (struct detach_op *)stubdm__op_new(ctx, &detach_type, sizeof(*d), done,
                                           user);
    if (!d)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "pci detach op");
    d->stub = stubdom_domid;
    d->guest = guest_domid;
    d->dev.addr = *addr;
    d->dev.vslot = -1;
    d->q = q;
    d->timeout_ms = timeout_ms;
    d->started_ms = stubdm_now_ms();
    stubdm_pci_addr_format(addr, d->bdf, sizeof(d->bdf));
    stubdm__pci_qdev_id(addr, d->qid, sizeof(d->qid));
    stubdm__pci_backend_path(d->stub, d->state_path, sizeof(d->state_path));
    strncat(d->state_path, "/state",
            sizeof(d->state_path) - strlen(d->state_path) - 1);
    stubdm__xswatch_init(&d->watch, on_state);
    stubdm__domwatch_init(&d->death, on_death);
    stubdm__timer_init(&d->deadline, on_deadline);
    stubdm__op_started(&d->op, op_out);
    if ((rc = detach_begin(d)))
        stubdm__op_complete(&d->op, rc, "%s", ctx->errmsg);
    return 0;
}
