/*
 * The simulated host's "hypervisor": the mock xenstored's dom0-only
 * control commands (docs/simulated-host.md).  Only libxenstore is used:
 * the library starts no process for it (its only children are hotplug
 * scripts, hotplug.c); the mock starts, reaps and reports the
 * simulated stubdomain's process, so its death reaches the library as a
 * released domain with a recorded cause, exactly like a real one.
 */
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/num.h"
#include "xen/host.h"
#include "xen/xs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

/* The stand-in stubdomain the mock finds next to itself (or in $PATH). */
#define SIM_DEFAULT_PROGRAM "stubdm-sim-stubdom"

/* Send "cmd\0arg\0arg\0..." and return the reply (free() it). */
static int sim_control(stubdm_ctx *ctx, const char *what,
                       const char *const *words, size_t nwords,
                       char **reply_out)
{
    struct xs_handle *xsh = NULL;
    struct stubdm__buf b;
    char *reply, empty[1] = "";
    int rc = stubdm__xs_handle(ctx, &xsh);

    if (reply_out)
        *reply_out = NULL;
    if (rc)
        return rc;
    stubdm__buf_init(&b, 4000); /* below XENSTORE_PAYLOAD_MAX */
    for (size_t i = 1; i < nwords; i++) {
        rc = stubdm__buf_append(&b, words[i], strlen(words[i]) + 1);
        if (rc) {
            stubdm__buf_dispose(&b);
            return stubdm__fail(ctx, rc == STUBDM_ELIMIT ? STUBDM_ELIMIT : rc,
                                0, "%s: the control command is too long",
                                what);
        }
    }
    stubdm__xs_count(ctx, 1);
    reply = xs_control_command(xsh, words[0], b.data ? b.data : empty,
                               (unsigned)b.len);
    stubdm__buf_dispose(&b);
    if (!reply) {
        int err = errno;
        if (err == EACCES || err == EINVAL || err == ENOSYS)
            return stubdm__fail(ctx, STUBDM_ENOTSUP, err,
                                "%s: xenstored refused '%s' (%s): it is not "
                                "the simulated host's stubdm-mock-xenstored, "
                                "or this connection is not dom0",
                                what, words[0], strerror(err));
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "%s: %s: %s", what, words[0], strerror(err));
    }
    if (reply_out)
        *reply_out = reply;
    else
        free(reply);
    return 0;
}

static int sim_create(stubdm_ctx *ctx, struct stubdm__build *b)
{
    char req[16], *reply = NULL;
    const char *words[2] = {"sim-create", req};
    uint32_t v = 0;
    int rc;

    snprintf(req, sizeof(req), "%u", b->domid_req);
    rc = sim_control(ctx, "creating the simulated domain", words,
                     b->domid_req ? 2 : 1, &reply);
    if (rc)
        return rc;
    if (stubdm__num_parse_domid(reply, &v) || v == 0) {
        rc = stubdm__fail(ctx, STUBDM_EPROTO, 0,
                          "sim-create answered '%.40s', not a domid", reply);
        free(reply);
        return rc;
    }
    free(reply);
    b->domid = v;
    /* No rings: the simulated domain talks to xenstore over a socket. */
    b->store_mfn = b->console_mfn = 0;
    b->store_port = b->console_port = 0;
    LOG_DEBUG(ctx, "spawn", "simulated domain %u created", b->domid);
    return 0;
}

static int sim_set_target(stubdm_ctx *ctx, uint32_t domid, uint32_t guest)
{
    (void)ctx;
    (void)domid;
    (void)guest;
    return 0; /* no hypervisor-side privileges to grant */
}

static int sim_unpause(stubdm_ctx *ctx, const struct stubdm__build *b)
{
    const char **words;
    char domid[16];
    size_t n = 0;
    int rc;

    words = stubdm__calloc(b->sim_nargs + 3, sizeof(*words));
    if (!words)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "sim-start");
    snprintf(domid, sizeof(domid), "%u", b->domid);
    words[n++] = "sim-start";
    words[n++] = domid;
    words[n++] = b->sim_program ? b->sim_program : SIM_DEFAULT_PROGRAM;
    for (size_t i = 0; i < b->sim_nargs; i++)
        words[n++] = b->sim_args[i];
    rc = sim_control(ctx, "starting the simulated stubdomain", words, n, NULL);
    free(words);
    return rc;
}

static void sim_pci_forget(stubdm_ctx *ctx, uint32_t domid);

static int sim_destroy(stubdm_ctx *ctx, uint32_t domid)
{
    char d[16];
    const char *words[2] = {"sim-destroy", d};
    int rc;

    snprintf(d, sizeof(d), "%u", domid);
    rc = sim_control(ctx, "destroying the simulated domain", words, 2, NULL);
    if (!rc || rc == STUBDM_ENOENT)
        sim_pci_forget(ctx, domid);
    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        return 0;
    }
    return rc;
}

/* SIGSTOP / SIGCONT of the simulated domain's process group. */
static int sim_pause(stubdm_ctx *ctx, uint32_t domid, bool pause)
{
    char d[16];
    const char *words[2] = {pause ? "sim-pause" : "sim-unpause", d};

    snprintf(d, sizeof(d), "%u", domid);
    return sim_control(ctx,
                       pause ? "pausing the simulated domain"
                             : "unpausing the simulated domain",
                       words, 2, NULL);
}

/* ---- PCI passthrough ------------------------------------------------------
 * The simulated hypervisor's IOMMU and permission tables are nodes under
 * SIM_PCI (docs/simulated-host.md, "PCI"), so tests and stubdm-ctl can
 * see what is granted and that a detach or a destroy revokes it:
 *   assigned/<SSSS-BB-DD-F> = <domid>   xc_assign_device (xenstore
 *                                       paths have no ':' or '.')
 *   perm/<domid>/ioport-<first>-<n>     xc_domain_ioport_permission (hex)
 *   perm/<domid>/iomem-<mfn>-<n>        xc_domain_iomem_permission (hex)
 *   perm/<domid>/pirq-<pirq> = <irq>    xc_physdev_map_pirq (pirq = irq)
 *   perm/<domid>/irq-<pirq>             xc_domain_irq_permission
 * and two knobs a test writes: no-iommu (assignments fail as on a host
 * without one) and fail/<call> (that call fails with EPERM).
 */
#define SIM_PCI "/tool/stubdm-sim-pci"
#define SIM_PATH_MAX 128

/* The device's key under assigned/. */
static void sim_key(const stubdm_pci_addr *a, char out[24])
{
    snprintf(out, 24, "%04x-%02x-%02x-%u", a->domain, a->bus, a->dev, a->func);
}

static int sim_xs(stubdm_ctx *ctx, struct xs_handle **xsh)
{
    int rc = stubdm__xs_handle(ctx, xsh);

    if (!rc)
        stubdm__xs_count(ctx, 1);
    return rc;
}

static bool sim_exists(stubdm_ctx *ctx, const char *path)
{
    struct xs_handle *xsh;
    unsigned len;
    char *v;

    if (sim_xs(ctx, &xsh))
        return false;
    v = xs_read(xsh, XBT_NULL, path, &len);
    free(v);
    return v != NULL;
}

/* The call the test asked to fail (fail/<call> exists). */
static int sim_injected(stubdm_ctx *ctx, const char *call, uint32_t domid)
{
    char path[SIM_PATH_MAX];

    snprintf(path, sizeof(path), SIM_PCI "/fail/%s", call);
    if (!sim_exists(ctx, path))
        return 0;
    return stubdm__fail(ctx, STUBDM_EXEN, EPERM,
                        "%s for domain %u: %s (the simulated hypervisor, "
                        "told to fail)",
                        call, domid, strerror(EPERM));
}

/* Write value at path (grant), or remove it and the parents it leaves
 * empty up to SIM_PCI (revoke). */
static int sim_record(stubdm_ctx *ctx, const char *path, const char *value,
                      bool grant)
{
    struct xs_handle *xsh;
    char dir[SIM_PATH_MAX];
    int rc = sim_xs(ctx, &xsh);

    if (rc)
        return rc;
    if (grant) {
        if (!xs_write(xsh, XBT_NULL, path, value, (unsigned)strlen(value)))
            return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                                "recording %s: %s", path, strerror(errno));
        return 0;
    }
    if (!xs_rm(xsh, XBT_NULL, path) && errno != ENOENT)
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "removing %s: %s", path, strerror(errno));
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *slash; (slash = strrchr(dir, '/')) && slash != dir;) {
        unsigned n = 0;
        char **kids;
        *slash = '\0';
        if (strlen(dir) < strlen(SIM_PCI))
            break;
        kids = xs_directory(xsh, XBT_NULL, dir, &n);
        free(kids);
        if (!kids || n)
            break;
        xs_rm(xsh, XBT_NULL, dir);
    }
    return 0;
}

static int sim_pci_assign(stubdm_ctx *ctx, uint32_t domid,
                          const stubdm_pci_addr *a, bool strict)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN], key[24];
    char path[SIM_PATH_MAX], d[16], *owner = NULL;
    int rc;

    (void)strict;
    stubdm_pci_addr_format(a, bdf, sizeof(bdf));
    if (sim_exists(ctx, SIM_PCI "/no-iommu"))
        return stubdm__fail(ctx, STUBDM_ENOTSUP, ENOSYS,
                            "assigning PCI device %s to domain %u: the "
                            "hypervisor has no IOMMU (enable VT-d or "
                            "AMD-Vi, and Xen's iommu=): %s",
                            bdf, domid, strerror(ENOSYS));
    if ((rc = sim_injected(ctx, "xc_assign_device", domid)))
        return rc;
    sim_key(a, key);
    snprintf(path, sizeof(path), SIM_PCI "/assigned/%s", key);
    snprintf(d, sizeof(d), "%u", domid);
    if (!stubdm__xs_read(ctx, 0, path, 16, &owner, NULL) && strcmp(owner, d)) {
        rc = stubdm__fail(ctx, STUBDM_EXEN, EBUSY,
                          "assigning PCI device %s to domain %u "
                          "(xc_assign_device): %s (assigned to another "
                          "domain)",
                          bdf, domid, strerror(EBUSY));
        free(owner);
        return rc;
    }
    free(owner);
    stubdm__clear_error(ctx);
    return sim_record(ctx, path, d, true);
}

static int sim_pci_deassign(stubdm_ctx *ctx, uint32_t domid,
                            const stubdm_pci_addr *a)
{
    char key[24], path[SIM_PATH_MAX], d[16];
    char *owner = NULL;
    int rc;

    if ((rc = sim_injected(ctx, "xc_deassign_device", domid)))
        return rc;
    sim_key(a, key);
    snprintf(path, sizeof(path), SIM_PCI "/assigned/%s", key);
    snprintf(d, sizeof(d), "%u", domid);
    if (stubdm__xs_read(ctx, 0, path, 16, &owner, NULL)) {
        stubdm__clear_error(ctx);
        return 0;
    }
    rc = strcmp(owner, d) ? 0 : sim_record(ctx, path, NULL, false);
    free(owner);
    return rc;
}

static int sim_perm(stubdm_ctx *ctx, const char *call, uint32_t domid,
                    const char *key, const char *value, bool grant)
{
    char path[SIM_PATH_MAX];
    int rc;

    if ((rc = sim_injected(ctx, call, domid)))
        return rc;
    snprintf(path, sizeof(path), SIM_PCI "/perm/%u/%s", domid, key);
    return sim_record(ctx, path, value, grant);
}

static int sim_ioport_permission(stubdm_ctx *ctx, uint32_t domid,
                                 uint32_t first, uint32_t n, bool grant)
{
    char key[48];

    snprintf(key, sizeof(key), "ioport-%x-%x", first, n);
    return sim_perm(ctx, "xc_domain_ioport_permission", domid, key, "1",
                    grant);
}

static int sim_iomem_permission(stubdm_ctx *ctx, uint32_t domid,
                                uint64_t first, uint64_t n, bool grant)
{
    char key[48];

    snprintf(key, sizeof(key), "iomem-%" PRIx64 "-%" PRIx64, first, n);
    return sim_perm(ctx, "xc_domain_iomem_permission", domid, key, "1", grant);
}

static int sim_map_pirq(stubdm_ctx *ctx, uint32_t domid, uint32_t irq,
                        uint32_t *pirq)
{
    char key[32], v[16];
    int rc;

    snprintf(key, sizeof(key), "pirq-%u", irq);
    snprintf(v, sizeof(v), "%u", irq);
    rc = sim_perm(ctx, "xc_physdev_map_pirq", domid, key, v, true);
    if (!rc)
        *pirq = irq;
    return rc;
}

/* As Xen: a pirq not mapped (e.g. QEMU's xen-pci-passthrough unmapped
 * the guest's when it released the device) cannot be unmapped. */
static int sim_unmap_pirq(stubdm_ctx *ctx, uint32_t domid, uint32_t pirq)
{
    char key[32], path[SIM_PATH_MAX], *v = NULL;
    int rc;

    snprintf(key, sizeof(key), "pirq-%u", pirq);
    snprintf(path, sizeof(path), SIM_PCI "/perm/%u/%s", domid, key);
    rc = stubdm__xs_read(ctx, 0, path, 16, &v, NULL);
    free(v);
    if (rc == STUBDM_ENOENT)
        return stubdm__fail(ctx, rc, EINVAL,
                            "unmapping pirq %u of domain %u "
                            "(xc_physdev_unmap_pirq): not mapped",
                            pirq, domid);
    if (rc)
        return rc;
    return sim_perm(ctx, "xc_physdev_unmap_pirq", domid, key, NULL, false);
}

static int sim_irq_permission(stubdm_ctx *ctx, uint32_t domid, uint32_t pirq,
                              bool grant)
{
    char key[32];

    snprintf(key, sizeof(key), "irq-%u", pirq);
    return sim_perm(ctx, "xc_domain_irq_permission", domid, key, "1", grant);
}

/* What Xen forgets with a destroyed domain: its permissions and its
 * devices' assignments. */
static void sim_pci_forget(stubdm_ctx *ctx, uint32_t domid)
{
    struct xs_handle *xsh;
    char path[SIM_PATH_MAX], d[16];
    unsigned n = 0;
    char **kids;

    if (sim_xs(ctx, &xsh))
        return;
    /* xs_rm removes the whole directory, then its empty parents go. */
    snprintf(path, sizeof(path), SIM_PCI "/perm/%u", domid);
    sim_record(ctx, path, NULL, false);
    snprintf(d, sizeof(d), "%u", domid);
    kids = xs_directory(xsh, XBT_NULL, SIM_PCI "/assigned", &n);
    for (unsigned i = 0; kids && i < n; i++) {
        char *owner = NULL;
        snprintf(path, sizeof(path), SIM_PCI "/assigned/%.16s", kids[i]);
        if (!stubdm__xs_read(ctx, 0, path, 16, &owner, NULL) &&
            !strcmp(owner, d))
            sim_record(ctx, path, NULL, false);
        free(owner);
    }
    free(kids);
    stubdm__clear_error(ctx);
}

const struct stubdm__host_ops stubdm__host_sim = {
    .name = "simulated",
    .simulated = true,
    .create = sim_create,
    .set_target = sim_set_target,
    .unpause = sim_unpause,
    .destroy = sim_destroy,
    .pause = sim_pause,
    .pci_assign = sim_pci_assign,
    .pci_deassign = sim_pci_deassign,
    .ioport_permission = sim_ioport_permission,
    .iomem_permission = sim_iomem_permission,
    .map_pirq = sim_map_pirq,
    .unmap_pirq = sim_unmap_pirq,
    .irq_permission = sim_irq_permission,
};
