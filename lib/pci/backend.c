/*
 * The stubdomain's PCI bus in xenstore (docs/pci.md, step 8): pciback's
 * backend /local/domain/0/backend/pci/<stub>/0 and pcifront's frontend
 * /local/domain/<stub>/device/pci/0, one entry N per device (dev-N,
 * opts-N, state-N; pciback adds vdev-N), as libxl 4.17 lays them out.  The
 * layout is a pure node list; the writers read num_devs and write inside one
 * transaction.  Everything under the backend is dom0's (the stubdomain
 * only reads it); the backend's state and state-N are pciback's to move.
 */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/num.h"
#include "pci/pci.h"
#include "xen/nodes.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define XB_INITIALISING "1"
#define XB_RECONFIGURING "7"
#define XB_CLOSING "5"

void stubdm__pci_backend_path(uint32_t stub, char *out, size_t len)
{
    snprintf(out, len, "/local/domain/0/backend/pci/%u/0", stub);
}

void stubdm__pci_frontend_path(uint32_t stub, char *out, size_t len)
{
    snprintf(out, len, "/local/domain/%u/device/pci/0", stub);
}

static const char *rdm_policy(unsigned flags)
{
    return flags & STUBDM_PCI_RDM_STRICT ? "strict" : "relaxed";
}

int stubdm__pci_backend_nodes(uint32_t stub, unsigned n,
                              const struct stubdm_pci_dev *d,
                              const struct stubdm__pci_res *r, stubdm_nodes *l)
{
    char be[64], fe[64], bdf[STUBDM_PCI_ADDR_STRLEN], perm[32], opts[96];
    char v[16], res[STUBDM__PCI_NUM_BARS * 64];
    int rc = 0;

    stubdm__pci_backend_path(stub, be, sizeof(be));
    stubdm__pci_frontend_path(stub, fe, sizeof(fe));
    stubdm_pci_addr_format(&d->addr, bdf, sizeof(bdf));
    if (n == 0) {
        /* The first device makes the bus: dom0's backend the stubdomain
         * reads, the stubdomain's frontend dom0 reads. */
        snprintf(perm, sizeof(perm), "n0 r%u", stub);
        snprintf(v, sizeof(v), "%u", stub);
        rc = stubdm__nodes_add_rm(l, "%s", be) ||
             stubdm__nodes_add_rm(l, "%s", fe) ||
             stubdm__nodes_add_str(l, perm, "", "%s", be) ||
             stubdm__nodes_add_str(l, NULL, fe, "%s/frontend", be) ||
             stubdm__nodes_add_str(l, NULL, v, "%s/frontend-id", be) ||
             stubdm__nodes_add_str(l, NULL, "1", "%s/online", be) ||
             stubdm__nodes_add_str(l, NULL, XB_INITIALISING, "%s/state", be);
        snprintf(perm, sizeof(perm), "n%u r0", stub);
        rc = rc || stubdm__nodes_add_str(l, perm, "", "%s", fe) ||
             stubdm__nodes_add_str(l, NULL, be, "%s/backend", fe) ||
             stubdm__nodes_add_str(l, NULL, "0", "%s/backend-id", fe) ||
             stubdm__nodes_add_str(l, NULL, XB_INITIALISING, "%s/state", fe);
    }
    snprintf(opts, sizeof(opts),
             "msitranslate=%d,power_mgmt=%d,permissive=%d,rdm_policy=%s",
             !!(d->flags & STUBDM_PCI_MSITRANSLATE),
             !!(d->flags & STUBDM_PCI_POWER_MGMT),
             !!(d->flags & STUBDM_PCI_PERMISSIVE), rdm_policy(d->flags));
    rc = rc || stubdm__nodes_add_str(l, NULL, bdf, "%s/key-%u", be, n) ||
         stubdm__nodes_add_str(l, NULL, bdf, "%s/dev-%u", be, n) ||
         stubdm__nodes_add_str(l, NULL, opts, "%s/opts-%u", be, n) ||
         stubdm__nodes_add_str(l, NULL, XB_INITIALISING, "%s/state-%u", be, n);
    /* What was granted, for the revocation (sysfs may say otherwise by
     * then, or nothing). */
    if (!rc && stubdm__pci_res_render(r, res, sizeof(res)))
        return STUBDM_ELIMIT;
    snprintf(v, sizeof(v), "%u\n", r->irq);
    rc = rc || stubdm__nodes_add_str(l, NULL, res, "%s/res-%u", be, n) ||
         stubdm__nodes_add_str(l, NULL, v, "%s/irq-%u", be, n);
    snprintf(v, sizeof(v), "%u", n + 1);
    rc = rc || stubdm__nodes_add_str(l, NULL, v, "%s/num_devs", be);
    /* A bus pciback has connected is told of a new device by
     * Reconfiguring (libxl: hot-plug to a running stubdomain). */
    if (!rc && n > 0)
        rc = stubdm__nodes_add_str(l, NULL, XB_RECONFIGURING, "%s/state", be);
    return rc ? STUBDM_ENOMEM : 0;
}

/* num_devs in transaction t: 0 when there is no bus yet. */
static int read_num_devs(stubdm_ctx *ctx, uint32_t t, const char *be,
                         unsigned *n)
{
    char p[96], *v = NULL;
    uint32_t u = 0;
    int rc;

    snprintf(p, sizeof(p), "%s/num_devs", be);
    rc = stubdm__xs_read(ctx, t, p, 8, &v, NULL);
    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        *n = 0;
        return 0;
    }
    if (rc)
        return rc;
    rc = stubdm__num_parse_u32(v, STUBDM__PCI_MAX_DEVS, &u);
    free(v);
    if (rc)
        return stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s: not a device count",
                            p);
    *n = u;
    return 0;
}

/* dev-i of the bus in t, parsed; STUBDM_ENOENT when absent. */
static int read_dev(stubdm_ctx *ctx, uint32_t t, const char *be, unsigned i,
                    stubdm_pci_addr *a)
{
    char p[96], *v = NULL;
    int rc;

    snprintf(p, sizeof(p), "%s/dev-%u", be, i);
    rc = stubdm__xs_read(ctx, t, p, STUBDM_PCI_ADDR_STRLEN, &v, NULL);
    if (rc)
        return rc;
    rc = stubdm_pci_addr_parse(v, a);
    free(v);
    if (rc)
        return stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s: not a PCI address", p);
    return 0;
}

/* The index of a on the bus in t, or STUBDM_ENOENT. */
static int find_dev(stubdm_ctx *ctx, uint32_t t, const char *be, unsigned n,
                    const stubdm_pci_addr *a, unsigned *idx)
{
    for (unsigned i = 0; i < n; i++) {
        stubdm_pci_addr b;
        int rc = read_dev(ctx, t, be, i, &b);
        if (rc == STUBDM_ENOENT) {
            stubdm__clear_error(ctx);
            continue;
        }
        if (rc)
            return rc;
        if (stubdm__pci_addr_eq(a, &b)) {
            *idx = i;
            return 0;
        }
    }
    return STUBDM_ENOENT;
}

struct add_args {
    uint32_t stub;
    const struct stubdm_pci_dev *d;
    const struct stubdm__pci_res *r;
    unsigned n; /* out */
};

static int add_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                   void *arg)
{
    struct add_args *a = arg;
    char be[64], bdf[STUBDM_PCI_ADDR_STRLEN];
    stubdm_nodes *l;
    unsigned idx = 0;
    int rc;

    stubdm__pci_backend_path(a->stub, be, sizeof(be));
    if ((rc = read_num_devs(ctx, t, be, &a->n)))
        return rc;
    stubdm_pci_addr_format(&a->d->addr, bdf, sizeof(bdf));
    rc = find_dev(ctx, t, be, a->n, &a->d->addr, &idx);
    if (!rc)
        return stubdm__fail(ctx, STUBDM_EBUSY, 0,
                            "PCI device %s is already on stubdomain %u's "
                            "bus (dev-%u)",
                            bdf, a->stub, idx);
    if (rc != STUBDM_ENOENT)
        return rc;
    if (a->n >= STUBDM__PCI_MAX_DEVS)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "stubdomain %u's PCI bus has %u devices, at most "
                            "%d",
                            a->stub, a->n, STUBDM__PCI_MAX_DEVS);
    if (!(l = stubdm__nodes_new()))
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "PCI backend nodes");
    rc = stubdm__pci_backend_nodes(a->stub, a->n, a->d, a->r, l);
    if (rc)
        rc = stubdm__fail(ctx, rc, ENOMEM, "PCI backend nodes");
    else
        rc = stubdm__nodes_write_txn(ctx, xsh, t, l);
    stubdm_nodes_free(l);
    return rc;
}

int stubdm__pci_backend_add(stubdm_ctx *ctx, uint32_t stub,
                            const struct stubdm_pci_dev *d,
                            const struct stubdm__pci_res *r, unsigned *n_out)
{
    struct add_args a = {stub, d, r, 0};
    int rc = stubdm__xs_transaction(ctx, "adding a PCI device to the backend",
                                    add_txn, &a, NULL);

    if (!rc)
        *n_out = a.n;
    return rc;
}

/* An entry's keys (vdevfn-N: the slot QEMU chose, recorded by attach). */
static const char *const entry_keys[] = {"key",   "dev",    "vdev", "opts",
                                         "state", "vdevfn", "res",  "irq"};

/* Move entry from to to (each key that exists). */
static int move_entry(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      const char *be, unsigned from, unsigned to)
{
    const char *const *keys = entry_keys;
    char p[96], *v = NULL;
    size_t len;

    for (size_t k = 0; k < STUBDM_ARRAY_SIZE(entry_keys); k++) {
        int rc;
        snprintf(p, sizeof(p), "%s/%s-%u", be, keys[k], from);
        rc = stubdm__xs_read(ctx, t, p, 128, &v, &len);
        if (rc == STUBDM_ENOENT) {
            stubdm__clear_error(ctx);
            continue;
        }
        if (rc)
            return rc;
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
        snprintf(p, sizeof(p), "%s/%s-%u", be, keys[k], to);
        stubdm__xs_count(ctx, 1);
        if (!rc && !xs_write(xsh, t, p, v, (unsigned)len))
            rc = stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                              "writing %s: %s", p, strerror(errno));
        free(v);
        if (rc)
            return rc;
    }
    return 0;
}

struct rm_args {
    uint32_t stub;
    const stubdm_pci_addr *a;
    bool found;    /* out */
    unsigned left; /* out: devices left on the bus */
};

static int remove_entry(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                        const char *be, unsigned idx, unsigned n)
{
    const char *const *keys = entry_keys;
    char p[96], v[16];
    int rc = 0;

    for (size_t k = 0; !rc && k < STUBDM_ARRAY_SIZE(entry_keys); k++) {
        snprintf(p, sizeof(p), "%s/%s-%u", be, keys[k], idx);
        rc = stubdm__xs_rm_txn(ctx, xsh, t, p);
    }
    for (unsigned j = idx + 1; !rc && j < n; j++)
        rc = move_entry(ctx, xsh, t, be, j, j - 1);
    snprintf(p, sizeof(p), "%s/num_devs", be);
    snprintf(v, sizeof(v), "%u", n - 1);
    stubdm__xs_count(ctx, 1);
    if (!rc && !xs_write(xsh, t, p, v, (unsigned)strlen(v)))
        rc = stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                          "writing %s: %s", p, strerror(errno));
    return rc;
}

static int rm_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                  void *arg)
{
    struct rm_args *a = arg;
    char be[64], fe[64];
    unsigned n = 0, idx = 0;
    int rc;

    a->found = false;
    stubdm__pci_backend_path(a->stub, be, sizeof(be));
    stubdm__pci_frontend_path(a->stub, fe, sizeof(fe));
    if ((rc = read_num_devs(ctx, t, be, &n)))
        return rc;
    a->left = n;
    rc = find_dev(ctx, t, be, n, a->a, &idx);
    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        return 0;
    }
    if (rc)
        return rc;
    a->found = true;
    a->left = n - 1;
    /* The last device takes the bus with it (the stubdomain's one pci
     * backend directory: devid 0 is its only entry). */
    if (n == 1) {
        char dir[64];
        snprintf(dir, sizeof(dir), "/local/domain/0/backend/pci/%u", a->stub);
        rc = stubdm__xs_rm_txn(ctx, xsh, t, dir);
        return rc ? rc : stubdm__xs_rm_txn(ctx, xsh, t, fe);
    }
    return remove_entry(ctx, xsh, t, be, idx, n);
}

int stubdm__pci_backend_remove(stubdm_ctx *ctx, uint32_t stub,
                               const stubdm_pci_addr *a, bool *found)
{
    struct rm_args r = {stub, a, false, 0};
    int rc = stubdm__xs_transaction(ctx,
                                    "removing a PCI device from the backend",
                                    rm_txn, &r, NULL);

    if (found)
        *found = r.found;
    return rc;
}

int stubdm__pci_backend_state(stubdm_ctx *ctx, uint32_t stub, unsigned *state)
{
    char be[64], p[96], *v = NULL;
    uint32_t u = 0;
    int rc;

    stubdm__pci_backend_path(stub, be, sizeof(be));
    snprintf(p, sizeof(p), "%s/state", be);
    if ((rc = stubdm__xs_read(ctx, 0, p, 8, &v, NULL)))
        return rc;
    rc = stubdm__num_parse_u32(v, 8, &u);
    free(v);
    if (rc)
        return stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s: not a xenbus state",
                            p);
    *state = u;
    return 0;
}

int stubdm__pci_backend_vdev(stubdm_ctx *ctx, uint32_t stub, unsigned idx,
                             stubdm_pci_addr *out)
{
    char be[64], p[96], *v = NULL;
    size_t len = 0;
    int rc;

    stubdm__pci_backend_path(stub, be, sizeof(be));
    snprintf(p, sizeof(p), "%s/vdev-%u", be, idx);
    if ((rc = stubdm__xs_read(ctx, 0, p, 13, &v, &len)))
        return rc;
    rc = stubdm__pci_vdev_parse_n(v, len, out);
    free(v);
    if (rc)
        return stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s: not a PCI address", p);
    return 0;
}

struct close_args {
    uint32_t stub;
    const stubdm_pci_addr *a;
};

static int close_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                     void *arg)
{
    struct close_args *c = arg;
    char be[64], p[96], bdf[STUBDM_PCI_ADDR_STRLEN];
    unsigned n = 0, idx = 0;
    int rc;

    stubdm__pci_backend_path(c->stub, be, sizeof(be));
    if ((rc = read_num_devs(ctx, t, be, &n)))
        return rc;
    rc = find_dev(ctx, t, be, n, c->a, &idx);
    if (rc == STUBDM_ENOENT) {
        stubdm_pci_addr_format(c->a, bdf, sizeof(bdf));
        return stubdm__fail(ctx, STUBDM_ENOENT, 0,
                            "PCI device %s is not on stubdomain %u's bus", bdf,
                            c->stub);
    }
    if (rc)
        return rc;
    snprintf(p, sizeof(p), "%s/state-%u", be, idx);
    stubdm__xs_count(ctx, 2);
    if (!xs_write(xsh, t, p, XB_CLOSING, 1))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "writing %s: %s", p, strerror(errno));
    snprintf(p, sizeof(p), "%s/state", be);
    if (!xs_write(xsh, t, p, XB_RECONFIGURING, 1))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "writing %s: %s", p, strerror(errno));
    return 0;
}

int stubdm__pci_backend_close(stubdm_ctx *ctx, uint32_t stub,
                              const stubdm_pci_addr *a)
{
    struct close_args c = {stub, a};

    return stubdm__xs_transaction(ctx, "closing a PCI device's entry",
                                  close_txn, &c, NULL);
}

int stubdm__pci_backend_find(stubdm_ctx *ctx, uint32_t stub,
                             const stubdm_pci_addr *a, unsigned *idx)
{
    char be[64];
    unsigned n = 0;
    int rc;

    stubdm__pci_backend_path(stub, be, sizeof(be));
    if ((rc = read_num_devs(ctx, 0, be, &n)))
        return rc;
    return find_dev(ctx, 0, be, n, a, idx);
}

/* ---- stubdm_pci_list ------------------------------------------------------ */

/* vdevfn-i's slot (hex, as libxl writes it), or -1. */
static int read_vslot(stubdm_ctx *ctx, const char *be, unsigned i)
{
    char p[96], *v = NULL;
    unsigned devfn = 0;
    size_t len;
    int slot = -1;

    snprintf(p, sizeof(p), "%s/vdevfn-%u", be, i);
    if (stubdm__xs_read(ctx, 0, p, 4, &v, &len)) {
        stubdm__clear_error(ctx);
        return -1;
    }
    for (size_t k = 0; k < len; k++) {
        char c = v[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0 || len > 2) {
            free(v);
            return -1;
        }
        devfn = devfn * 16 + (unsigned)d;
    }
    if (len)
        slot = (int)(devfn >> 3);
    free(v);
    return slot;
}

int stubdm__pci_list_read(stubdm_ctx *ctx, uint32_t stub,
                          struct stubdm_pci_list *l)
{
    char be[64];
    unsigned n = 0;
    int rc;

    l->n = 0;
    stubdm__pci_backend_path(stub, be, sizeof(be));
    if ((rc = read_num_devs(ctx, 0, be, &n)))
        return rc;
    for (unsigned i = 0; i < n; i++) {
        rc = read_dev(ctx, 0, be, i, &l->addr[l->n]);
        if (rc == STUBDM_ENOENT) {
            stubdm__clear_error(ctx);
            continue;
        }
        if (rc)
            return rc;
        l->idx[l->n] = i;
        l->vslot[l->n++] = read_vslot(ctx, be, i);
    }
    return 0;
}

int stubdm_pci_list_new(stubdm_ctx *ctx, uint32_t stubdom_domid,
                        stubdm_pci_list **out)
{
    stubdm_pci_list *l;
    int rc;

    if (!ctx || !out)
        return STUBDM_EINVAL;
    *out = NULL;
    if (!stubdm__domid_ok(stubdom_domid))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "pci list: domid %u",
                            stubdom_domid);
    if (!(l = stubdm__calloc(1, sizeof(*l))))
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "pci list");
    if ((rc = stubdm__pci_list_read(ctx, stubdom_domid, l))) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

size_t stubdm_pci_list_count(const stubdm_pci_list *l)
{
    return l ? l->n : 0;
}

stubdm_pci_addr stubdm_pci_list_addr(const stubdm_pci_list *l, size_t i)
{
    stubdm_pci_addr zero = {0, 0, 0, 0};

    return l && i < l->n ? l->addr[i] : zero;
}

int stubdm_pci_list_vslot(const stubdm_pci_list *l, size_t i)
{
    return l && i < l->n ? l->vslot[i] : -1;
}

void stubdm_pci_list_free(stubdm_pci_list *l)
{
    free(l);
}

int stubdm__pci_backend_res(stubdm_ctx *ctx, uint32_t stub, unsigned idx,
                            struct stubdm__pci_res *r)
{
    char be[64], p[96], *v = NULL;
    size_t len, bad;
    int rc;

    stubdm__pci_backend_path(stub, be, sizeof(be));
    snprintf(p, sizeof(p), "%s/res-%u", be, idx);
    if ((rc = stubdm__xs_read(ctx, 0, p, STUBDM__PCI_NUM_BARS * 64, &v, &len)))
        return rc;
    rc = stubdm__pci_parse_resource(v, len, r, &bad);
    free(v);
    if (rc)
        return stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s line %zu: malformed", p,
                            bad);
    snprintf(p, sizeof(p), "%s/irq-%u", be, idx);
    if ((rc = stubdm__xs_read(ctx, 0, p, 16, &v, &len)))
        return rc;
    rc = stubdm__pci_parse_irq(v, len, &r->irq);
    free(v);
    if (rc)
        return stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s: malformed", p);
    return 0;
}
