/*
 * Attaching a host PCI device to a running guest's stubdomain
 * (stubdm_pci_attach, docs/pci.md).
 *
 * Chronologically: start (the dom0 side granted, the entry added to the
 * stubdomain's PCI bus, its deadline armed) -> the backend's state watch
 * fires until pciback says Connected (the device is then in the
 * stubdomain's sysfs: the signal libxl guesses with ten retries) ->
 * device_add -> QEMU's answer (a refusal for a missing sysfs entry is
 * retried a few times, anything else ends it) -> query-pci -> the slot
 * QEMU chose recorded as the entry's vdevfn-N -> done.  The stubdomain's
 * death or the deadline end it early.  Whatever ends it before done, its
 * stop undoes every step in reverse, so a failed or cancelled attach
 * leaves nothing.
 */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/op.h"
#include "core/peer.h"
#include "pci/pci.h"
#include "qmp/json.h"
#include "xen/domain.h"
#include "xen/xs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define MOD "pci"
#define XB_CONNECTED 4u
/* A device_add refused because the stubdomain's sysfs lacks the device
 * yet: retried this many times, this far apart (a fallback: Connected
 * normally means it is there). */
#define ADD_RETRIES 5
#define ADD_RETRY_MS 200
#define QMP_TIMEOUT_MS 10000

struct attach_op {
    stubdm_op op;
    uint32_t stub, guest;
    struct stubdm_pci_dev dev;
    stubdm_qmp *q;
    int timeout_ms;
    int64_t started_ms;
    char bdf[STUBDM_PCI_ADDR_STRLEN], qid[32], be[64];
    char hostaddr[STUBDM_PCI_ADDR_STRLEN]; /* as the stubdomain sees it */
    unsigned n, last_state;
    struct stubdm__pci_res res; /* what was granted */
    bool granted, on_bus, added, ok;
    int retries;
    struct stubdm__xswatch watch;
    struct stubdm__domwatch death;
    struct stubdm__timer deadline, retry;
    stubdm_op *cmd;
};

void stubdm__pci_qdev_id(const stubdm_pci_addr *a, char *out, size_t len)
{
    snprintf(out, len, "pci-pt-%02x_%02x.%u", a->bus, a->dev, a->func);
}

static double waited_s(const struct attach_op *a)
{
    return (double)(stubdm_now_ms() - a->started_ms) / 1000.0;
}

/* End with the ctx's message (the step that failed set it). */
static void fail(struct attach_op *a, int rc)
{
    stubdm__op_complete(&a->op, rc, "%s", a->op.ctx->errmsg);
}

static void ignore_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                         const stubdm_qmp_reply *r, void *user)
{
    (void)q, (void)op, (void)rc, (void)r, (void)user;
}

/* ---- query-pci: the slot QEMU chose ------------------------------------ */

/* The device with our id in query-pci's answer: its devfn. */
static bool find_devfn(const struct stubdm__json *buses, const char *qid,
                       unsigned *devfn)
{
    for (size_t i = 0; i < stubdm__json_len(buses); i++) {
        const struct stubdm__json *devs =
            stubdm__json_get(stubdm__json_at(buses, i), "devices");
        for (size_t j = 0; j < stubdm__json_len(devs); j++) {
            const struct stubdm__json *d = stubdm__json_at(devs, j);
            uint64_t slot, fn;
            if (!stubdm__json_string_is(stubdm__json_get(d, "qdev_id"), qid))
                continue;
            if (!stubdm__json_as_uint64(stubdm__json_get(d, "slot"), &slot) ||
                !stubdm__json_as_uint64(stubdm__json_get(d, "function"),
                                        &fn) ||
                slot > 31 || fn > 7)
                return false;
            *devfn = (unsigned)(slot << 3 | fn);
            return true;
        }
    }
    return false;
}

static int record_devfn(struct attach_op *a, unsigned devfn)
{
    stubdm_ctx *ctx = a->op.ctx;
    struct xs_handle *xsh;
    char p[96], v[8];
    int rc = stubdm__xs_handle(ctx, &xsh);

    if (rc)
        return rc;
    snprintf(p, sizeof(p), "%s/vdevfn-%u", a->be, a->n);
    snprintf(v, sizeof(v), "%x", devfn);
    stubdm__xs_count(ctx, 1);
    if (!xs_write(xsh, XBT_NULL, p, v, (unsigned)strlen(v)))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "writing %s: %s", p, strerror(errno));
    return 0;
}

static void on_query_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                           const stubdm_qmp_reply *r, void *user)
{
    (void)op;
    struct attach_op *a = user;
    stubdm_ctx *ctx = a->op.ctx;
    struct stubdm__json_doc *doc = NULL;
    const char *text = r ? stubdm_qmp_reply_return_json(r) : NULL;
    unsigned devfn = 0;

    (void)q;
    a->cmd = NULL;
    if (rc || !text) {
        stubdm__op_complete(&a->op, rc ? rc : STUBDM_EPROTO,
                            "PCI device %s: query-pci: %s", a->bdf,
                            rc ? stubdm_strerror(rc) : "no answer");
        return;
    }
    if (stubdm__json_parse(text, strlen(text), NULL, &doc, NULL) ||
        !find_devfn(stubdm__json_doc_root(doc), a->qid, &devfn)) {
        stubdm__json_doc_free(doc);
        stubdm__op_complete(&a->op, STUBDM_EPROTO,
                            "PCI device %s (%s) not in QEMU's query-pci "
                            "answer",
                            a->bdf, a->qid);
        return;
    }
    stubdm__json_doc_free(doc);
    if ((rc = record_devfn(a, devfn))) {
        fail(a, rc);
        return;
    }
    a->ok = true;
    LOG_DEBUG(ctx, MOD,
              "PCI device %s attached to guest %u at %02x.%u after %.3f s",
              a->bdf, a->guest, devfn >> 3, devfn & 7, waited_s(a));
    stubdm__op_complete(&a->op, 0, NULL);
}

/* The command's op is ours (not floating): freed once its reply, which
 * lives no longer than the call, has been used. */
static void on_query(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    on_query_reply(q, op, rc, r, user);
    stubdm_op_free(op);
}

/* ---- device_add ------------------------------------------------------------
 */

static void send_add(struct attach_op *a);

static void on_add_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                         const stubdm_qmp_reply *r, void *user)
{
    (void)op;
    struct attach_op *a = user;
    const char *desc = r ? stubdm_qmp_reply_error_desc(r) : NULL;
    char text[200];

    a->cmd = NULL;
    if (!rc) {
        a->added = true;
        if ((rc = stubdm_qmp_execute(q, "query-pci", NULL, QMP_TIMEOUT_MS,
                                     on_query, a, &a->cmd)))
            fail(a, rc);
        return;
    }
    /* QEMU opens the device's sysfs in the stubdomain: not there yet is
     * worth a short retry, nothing else is. */
    if (rc == STUBDM_EQMP && desc && strstr(desc, "/sys/bus/pci/devices/") &&
        a->retries < ADD_RETRIES) {
        a->retries++;
        LOG_DEBUG(a->op.ctx, MOD, "PCI device %s: device_add retried (%s)",
                  a->bdf, desc);
        if ((rc = stubdm__timer_arm(a->op.ctx, &a->retry,
                                    stubdm_now_ms() + ADD_RETRY_MS)))
            fail(a, rc);
        return;
    }
    if (rc == STUBDM_EQMP)
        stubdm__op_complete(&a->op, rc,
                            "device_add of PCI device %s refused by QEMU: %s",
                            a->bdf,
                            stubdm__printable_str(text, sizeof(text),
                                                  desc ? desc : "?"));
    else
        stubdm__op_complete(&a->op, rc, "device_add of PCI device %s: %s",
                            a->bdf, stubdm_strerror(rc));
}

/* The command's op is ours (not floating): freed once its reply, which
 * lives no longer than the call, has been used. */
static void on_add(stubdm_qmp *q, stubdm_op *op, int rc,
                   const stubdm_qmp_reply *r, void *user)
{
    on_add_reply(q, op, rc, r, user);
    stubdm_op_free(op);
}

static void on_retry(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)ctx;
    send_add(STUBDM_CONTAINER_OF(t, struct attach_op, retry));
}

static void send_add(struct attach_op *a)
{
    char args[320], addr[24] = "", perm[24] = "", pm[24] = "";
    int rc;

    if (a->dev.vslot >= 0)
        snprintf(addr, sizeof(addr), ",\"addr\":\"%02x.0\"",
                 (unsigned)a->dev.vslot);
    if (a->dev.flags & STUBDM_PCI_PERMISSIVE)
        snprintf(perm, sizeof(perm), ",\"permissive\":true");
    if (a->dev.flags & STUBDM_PCI_POWER_MGMT)
        snprintf(pm, sizeof(pm), ",\"power_mgmt\":true");
    snprintf(args, sizeof(args),
             "{\"driver\":\"xen-pci-passthrough\",\"id\":\"%s\","
             "\"hostaddr\":\"%s\"%s%s%s}",
             a->qid, a->hostaddr, addr, perm, pm);
    if ((rc = stubdm_qmp_execute(a->q, "device_add", args, QMP_TIMEOUT_MS,
                                 on_add, a, &a->cmd)))
        fail(a, rc);
}

/* ---- waiting for pciback -------------------------------------------------- */

/* QEMU opens the device under the address the stubdomain's pcifront
 * gives it: pciback's virtual bus by default, so not the host's BDF
 * (which libxl passes, and which then works only with pciback's
 * passthrough mode).  A backend without vdev-N (not Linux pciback) gets
 * the host's. */
static int find_hostaddr(struct attach_op *a)
{
    stubdm_ctx *ctx = a->op.ctx;
    stubdm_pci_addr v;
    int rc = stubdm__pci_backend_vdev(ctx, a->stub, a->n, &v);

    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        memcpy(a->hostaddr, a->bdf, sizeof(a->hostaddr));
        return 0;
    }
    if (rc)
        return rc;
    stubdm_pci_addr_format(&v, a->hostaddr, sizeof(a->hostaddr));
    return 0;
}

static void on_state(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                     const char *path)
{
    struct attach_op *a = STUBDM_CONTAINER_OF(w, struct attach_op, watch);
    unsigned st = 0;
    int rc;

    (void)path;
    if (a->cmd || a->added || stubdm__timer_armed(&a->retry))
        return;
    rc = stubdm__pci_backend_state(ctx, a->stub, &st);
    if (rc == STUBDM_ENOENT) {
        stubdm__op_complete(&a->op, STUBDM_EFAIL,
                            "PCI device %s: stubdomain %u's PCI backend was "
                            "removed while attaching",
                            a->bdf, a->stub);
        return;
    }
    if (rc) {
        fail(a, rc);
        return;
    }
    a->last_state = st;
    if (st != XB_CONNECTED)
        return;
    stubdm__xswatch_stop(ctx, &a->watch);
    if ((rc = find_hostaddr(a))) {
        fail(a, rc);
        return;
    }
    LOG_DEBUG(ctx, MOD,
              "PCI device %s: backend connected after %.3f s, the "
              "stubdomain sees it at %s",
              a->bdf, waited_s(a), a->hostaddr);
    send_add(a);
}

static void on_death(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                     enum stubdm__dom_state st, const char *detail)
{
    struct attach_op *a = STUBDM_CONTAINER_OF(dw, struct attach_op, death);

    (void)ctx;
    (void)st;
    stubdm__op_complete(&a->op, STUBDM_EDOMAIN_GONE,
                        "stubdomain %u %s while PCI device %s was being "
                        "attached to guest %u",
                        a->stub, detail, a->bdf, a->guest);
}

static void on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct attach_op *a = STUBDM_CONTAINER_OF(t, struct attach_op, deadline);

    (void)ctx;
    if (!a->added && !a->cmd)
        stubdm__op_complete(&a->op, STUBDM_ETIMEDOUT,
                            "PCI backend of stubdomain %u not connected "
                            "after %d ms (state %u): PCI device %s not "
                            "attached",
                            a->stub, a->timeout_ms, a->last_state, a->bdf);
    else
        stubdm__op_complete(&a->op, STUBDM_ETIMEDOUT,
                            "PCI device %s: QEMU did not add it within %d ms",
                            a->bdf, a->timeout_ms);
}

/* ---- the op ----------------------------------------------------------- */

/* Undo in reverse whatever was done (the op did not succeed). */
static void undo(struct attach_op *a)
{
    stubdm_ctx *ctx = a->op.ctx;
    int rc = 0;

    if (a->added) {
        char args[64];
        snprintf(args, sizeof(args), "{\"id\":\"%s\"}", a->qid);
        stubdm_qmp_execute(a->q, "device_del", args, QMP_TIMEOUT_MS,
                           ignore_reply, NULL, NULL);
    }
    if (a->on_bus)
        rc = stubdm__pci_backend_remove(ctx, a->stub, &a->dev.addr, NULL);
    if (a->granted && !rc)
        rc = stubdm__pci_revoke(ctx, a->guest, a->stub, &a->dev, &a->res);
    else if (a->granted)
        stubdm__pci_revoke(ctx, a->guest, a->stub, &a->dev, &a->res);
    if (rc)
        LOG_WARN(ctx, MOD, "PCI device %s: undoing a failed attach: %s",
                 a->bdf, ctx->errmsg);
    stubdm__clear_error(ctx);
}

static void attach_stop(stubdm_op *op)
{
    struct attach_op *a = (struct attach_op *)op;

    stubdm__xswatch_stop(op->ctx, &a->watch);
    stubdm__domwatch_stop(op->ctx, &a->death);
    stubdm__timer_stop(op->ctx, &a->deadline);
    stubdm__timer_stop(op->ctx, &a->retry);
    stubdm_op_free(a->cmd);
    a->cmd = NULL;
    if (!a->ok)
        undo(a);
}

static const struct stubdm__op_type attach_type = {
    .name = "pci-attach",
    .stop = attach_stop,
    .destroy = NULL,
};

static int attach_begin(struct attach_op *a, bool prepared)
{
    stubdm_ctx *ctx = a->op.ctx;
    enum stubdm__dom_state st;
    char detail[160], path[96];
    int rc;

    if (prepared) {
        /* stubdm__pci_prepare ran: find the entry it made. */
        a->granted = a->on_bus = true;
        rc = stubdm__pci_backend_find(ctx, a->stub, &a->dev.addr, &a->n);
        if (!rc)
            rc = stubdm__pci_backend_res(ctx, a->stub, a->n, &a->res);
        if (rc)
            return rc == STUBDM_ENOENT
                       ? stubdm__fail(ctx, rc, 0,
                                      "PCI device %s: its entry on "
                                      "stubdomain %u's bus is gone",
                                      a->bdf, a->stub)
                       : rc;
    } else {
        if ((rc = stubdm__pci_grant(ctx, a->guest, a->stub, &a->dev, &a->res)))
            return rc;
        a->granted = true;
        if ((rc = stubdm__pci_backend_add(ctx, a->stub, &a->dev, &a->res,
                                          &a->n)))
            return rc;
        a->on_bus = true;
    }
    if ((rc = stubdm__timer_arm(ctx, &a->deadline,
                                a->started_ms + a->timeout_ms)))
        return rc;
    snprintf(path, sizeof(path), "%s/state", a->be);
    if ((rc = stubdm__xswatch_start(ctx, &a->watch, path)))
        return rc;
    if ((rc = stubdm__domwatch_start(ctx, &a->death, a->stub, &st, detail,
                                     sizeof(detail))))
        return rc;
    if (st != STUBDM__DOM_RUNNING)
        on_death(ctx, &a->death, st, detail);
    return 0;
}

static int attach_start(stubdm_ctx *ctx, uint32_t stubdom_domid,
                        uint32_t guest_domid, const stubdm_pci_dev *d,
                        stubdm_qmp *q, int timeout_ms, bool prepared,
                        stubdm_done_fn *done, void *user, stubdm_op **op_out)
{
    struct attach_op *a;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!d || !q || !done || timeout_ms <= 0 || stubdom_domid == 0 ||
        !stubdm__domid_ok(stubdom_domid) || !stubdm__domid_ok(guest_domid) ||
        guest_domid == stubdom_domid)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "pci attach: invalid arguments (stubdomain %u, "
                            "guest %u, timeout %d ms)",
                            stubdom_domid, guest_domid, timeout_ms);
    a = (struct attach_op *)stubdm__op_new(ctx, &attach_type, sizeof(*a), done,
                                           user);
    if (!a)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "pci attach op");
    a->stub = stubdom_domid;
    a->guest = guest_domid;
    a->dev = *d;
    a->q = q;
    a->timeout_ms = timeout_ms;
    a->started_ms = stubdm_now_ms();
    stubdm_pci_addr_format(&d->addr, a->bdf, sizeof(a->bdf));
    stubdm__pci_qdev_id(&d->addr, a->qid, sizeof(a->qid));
    stubdm__pci_backend_path(a->stub, a->be, sizeof(a->be));
    stubdm__xswatch_init(&a->watch, on_state);
    stubdm__domwatch_init(&a->death, on_death);
    stubdm__timer_init(&a->deadline, on_deadline);
    stubdm__timer_init(&a->retry, on_retry);
    stubdm__op_started(&a->op, op_out);
    /* From here a failure completes the op (its callback from the loop)
     * and its stop undoes what was done. */
    if ((rc = attach_begin(a, prepared)))
        fail(a, rc);
    return 0;
}

int stubdm_pci_attach(stubdm_ctx *ctx, uint32_t stubdom_domid,
                      uint32_t guest_domid, const stubdm_pci_dev *d,
                      stubdm_qmp *q, int timeout_ms, stubdm_done_fn *done,
                      void *user, stubdm_op **op_out)
{
    return attach_start(ctx, stubdom_domid, guest_domid, d, q, timeout_ms,
                        false, done, user, op_out);
}

int stubdm__pci_attach_prepared(stubdm_ctx *ctx, uint32_t stub, uint32_t guest,
                                const struct stubdm_pci_dev *d, stubdm_qmp *q,
                                int timeout_ms, stubdm_done_fn *done,
                                void *user, stubdm_op **op_out)
{
    return attach_start(ctx, stub, guest, d, q, timeout_ms, true, done, user,
                        op_out);
}

int stubdm__pci_guest_no_relocate(stubdm_ctx *ctx, uint32_t guest)
{
    struct xs_handle *xsh;
    char p[96], *v = NULL;
    int rc;

    snprintf(p, sizeof(p), "/local/domain/%u/hvmloader/allow-memory-relocate",
             guest);
    rc = stubdm__xs_read(ctx, 0, p, 8, &v, NULL);
    if (rc == 0 && !strcmp(v, "0")) {
        free(v);
        return 0;
    }
    free(v);
    if (rc && rc != STUBDM_ENOENT)
        return rc;
    stubdm__clear_error(ctx);
    if ((rc = stubdm__xs_handle(ctx, &xsh)))
        return rc;
    stubdm__xs_count(ctx, 1);
    if (!xs_write(xsh, XBT_NULL, p, "0", 1))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "writing %s: %s", p, strerror(errno));
    LOG_INFO(ctx, MOD, "guest %u: %s = 0 (PCI devices at spawn)", guest, p);
    return 0;
}

int stubdm__pci_prepare(stubdm_ctx *ctx, uint32_t guest, uint32_t stub,
                        const struct stubdm_pci_dev *d)
{
    struct stubdm__pci_res r = {0};
    unsigned n = 0;
    int rc = stubdm__pci_grant(ctx, guest, stub, d, &r);

    if (rc)
        return rc;
    if ((rc = stubdm__pci_backend_add(ctx, stub, d, &r, &n))) {
        char msg[STUBDM_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
        stubdm__pci_revoke(ctx, guest, stub, d, &r);
        return stubdm__fail(ctx, rc, 0, "%s", msg);
    }
    return 0;
}

int stubdm__pci_teardown(stubdm_ctx *ctx, uint32_t stub, bool have_guest,
                         uint32_t guest)
{
    struct stubdm_pci_list l;
    int rc = stubdm__pci_list_read(ctx, stub, &l), first = 0;

    if (rc)
        return rc;
    for (size_t i = 0; i < l.n; i++) {
        struct stubdm_pci_dev d = {l.addr[i], -1, 0};
        /* The stubdomain is gone and its permissions with it; the
         * guest's and its assignment are what is left. */
        rc = have_guest
                 ? stubdm__pci_revoke_entry(ctx, guest, stub, &d, l.idx[i])
                 : 0;
        first = first ? first : rc;
    }
    return first;
}
