/*
 * A spawn's own xenstore nodes as pure node lists (like the contract's):
 * the domain's /local/domain/<S> and /vm/<stub uuid> basics, the simulated
 * host's stand-in guest, and the vbd and vif frontends and backends.  The
 * steps replay each list in one transaction; stubdm_spawn_layout() gives
 * the whole spawn (basics, contract, devices) without writing anything.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "spawn/spawn.h"
#include "xen/host.h"
#include "xen/nodes.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Owner first, xenstore-chmod syntax. */
static void perms(char *out, size_t len, uint32_t owner, uint32_t reader)
{
    snprintf(out, len, "n%u r%u", owner, reader);
}

/* Add dir/key = value (inheriting the permissions). */
#define KEY(l, dir, key, ...)                                                 \
    (rc = stubdm__nodes_add_str((l), NULL, (__VA_ARGS__), "%s/" key, (dir)))

/* /local/domain/<S>: dom0's, readable by the stubdomain; the directories
 * the domain itself writes into (libxl's rw paths) are its own. */
static int domain_dir(stubdm_nodes *l, const stubdm_spawn_opts *c,
                      const struct stubdm__spawn_facts *f)
{
    static const char *const own[] = {"device",  "control", "data",    "error",
                                      "drivers", "attr",    "feature", NULL};
    char dom[48], ro[32], rw[16], num[24], mem[24];
    int rc;

    snprintf(dom, sizeof(dom), "/local/domain/%u", f->domid);
    perms(ro, sizeof(ro), TOOLSTACK_DOMID, f->domid);
    snprintf(rw, sizeof(rw), "n%u", f->domid);
    snprintf(num, sizeof(num), "%u", f->domid);
    snprintf(mem, sizeof(mem), "%" PRIu64, c->memory_kib);
    /* Whatever a dead domain of the same id left is not ours to keep. */
    if ((rc = stubdm__nodes_add_rm(l, "%s", dom)) ||
        (rc = stubdm__nodes_add_str(l, ro, "", "%s", dom)) ||
        KEY(l, dom, "name", f->stub_name) || KEY(l, dom, "domid", num) ||
        KEY(l, dom, "vm", f->stub_vm))
        return rc;
    snprintf(num, sizeof(num), "%u", f->guest);
    /* Written again by the contract; here already so that a spawn killed
     * before the contract leaves a domain stubdm_stubdom_destroy_by_domid
     * knows (dom0's node) for a stubdomain. */
    if (KEY(l, dom, "target", num) || KEY(l, dom, "memory/static-max", mem) ||
        KEY(l, dom, "memory/target", mem))
        return rc;
    for (unsigned i = 0; i < c->vcpus; i++)
        if ((rc = stubdm__nodes_add_str(l, NULL, "online",
                                        "%s/cpu/%u/availability", dom, i)))
            return rc;
    if (!f->simulated) {
        snprintf(mem, sizeof(mem), "%" PRIu64, f->store_mfn);
        snprintf(num, sizeof(num), "%u", f->store_port);
        if (KEY(l, dom, "store/ring-ref", mem) ||
            KEY(l, dom, "store/port", num))
            return rc;
    }
    for (size_t i = 0; own[i]; i++)
        if ((rc = stubdm__nodes_add_str(l, rw, "", "%s/%s", dom, own[i])))
            return rc;
    return 0;
}

/* /vm/<stub uuid>, readable by the stubdomain. */
static int stub_vm_dir(stubdm_nodes *l, const stubdm_spawn_opts *c,
                       const struct stubdm__spawn_facts *f)
{
    const char *vm = f->stub_vm;
    char ro[32], when[24];
    int rc;

    perms(ro, sizeof(ro), TOOLSTACK_DOMID, f->domid);
    snprintf(when, sizeof(when), "%lld", f->start_time);
    if ((rc = stubdm__nodes_add_rm(l, "%s", vm)) ||
        (rc = stubdm__nodes_add_str(l, ro, "", "%s", vm)) ||
        KEY(l, vm, "uuid", vm + 4) || KEY(l, vm, "name", f->stub_name) ||
        KEY(l, vm, "start_time", when) || KEY(l, vm, "image/ostype", "linux"))
        return rc;
    if (c->kernel && KEY(l, vm, "image/kernel", c->kernel))
        return rc;
    if (c->cmdline && KEY(l, vm, "image/cmdline", c->cmdline))
        return rc;
    return 0;
}

/* The simulated host has no guest: stand one in, readable by the guest
 * (and so by its stubdomain through the target relation). */
static int placeholder(stubdm_nodes *l, const struct stubdm__spawn_facts *f)
{
    char gdom[48], gro[32], num[24], mark[32];
    int rc;

    snprintf(gdom, sizeof(gdom), "/local/domain/%u", f->guest);
    perms(gro, sizeof(gro), TOOLSTACK_DOMID, f->guest);
    snprintf(num, sizeof(num), "%u", f->guest);
    snprintf(mark, sizeof(mark), "%u %d", f->domid, f->placeholder_vm ? 1 : 0);
    if ((rc = stubdm__nodes_add_str(l, gro, "", "%s", gdom)) ||
        KEY(l, gdom, "domid", num) || KEY(l, gdom, "name", f->guest_name) ||
        KEY(l, gdom, "vm", f->vm_path) || KEY(l, gdom, PLACEHOLDER_KEY, mark))
        return rc;
    if (f->placeholder_vm &&
        ((rc = stubdm__nodes_add_str(l, gro, "", "%s", f->vm_path)) ||
         KEY(l, f->vm_path, "uuid", f->vm_path + 4) ||
         KEY(l, f->vm_path, "name", f->guest_name)))
        return rc;
    return 0;
}

int stubdm__spawn_domain_nodes(const stubdm_spawn_opts *c,
                               const struct stubdm__spawn_facts *f,
                               stubdm_nodes *l)
{
    int rc;

    if ((rc = domain_dir(l, c, f)) || (rc = stub_vm_dir(l, c, f)))
        return rc;
    return f->placeholder ? placeholder(l, f) : 0;
}

/* A device's backend directory (dom0's, the stubdomain may read it) and
 * frontend directory (the stubdomain's, dom0 may read it). */
static int device_dir(stubdm_nodes *l, const struct stubdm__spawn_facts *f,
                      const char *path, bool backend)
{
    char p[32];

    if (backend)
        perms(p, sizeof(p), TOOLSTACK_DOMID, f->domid);
    else
        perms(p, sizeof(p), f->domid, TOOLSTACK_DOMID);
    return stubdm__nodes_add_str(l, p, "", "%s", path);
}

static int vbd(stubdm_nodes *l, const struct stubdm__spawn_facts *f,
               const struct disk *d, size_t i)
{
    unsigned id = stubdm__spawn_vbd_devid(i);
    char fe[128], be[128], dev[8], num[24], dom0[24], sp[SCRIPT_MAX];
    char params[8 + 1024 + 1]; /* validate bounds the target */
    int rc;

    snprintf(fe, sizeof(fe), "/local/domain/%u/device/vbd/%u", f->domid, id);
    snprintf(be, sizeof(be), "/local/domain/%u/backend/vbd/%u/%u",
             TOOLSTACK_DOMID, f->domid, id);
    snprintf(dev, sizeof(dev), "xvd%c", (char)('a' + i));
    snprintf(params, sizeof(params), "%s%s", d->qcow2 ? "qcow2:" : "",
             d->target);
    snprintf(num, sizeof(num), "%u", f->domid);
    snprintf(dom0, sizeof(dom0), "%u", TOOLSTACK_DOMID);
    if ((rc = device_dir(l, f, be, true)) || KEY(l, be, "frontend", fe) ||
        KEY(l, be, "frontend-id", num) || KEY(l, be, "online", "1") ||
        KEY(l, be, "removable", "0") || KEY(l, be, "bootable", "1") ||
        KEY(l, be, "state", "1") || KEY(l, be, "dev", dev) ||
        KEY(l, be, "type", d->qcow2 ? "qdisk" : "phy") ||
        KEY(l, be, "mode", d->readonly ? "r" : "w") ||
        KEY(l, be, "device-type", "disk") || KEY(l, be, "params", params))
        return rc;
    if (!d->qcow2) { /* qdisk: the dom0 QEMU is the backend, no script */
        stubdm__spawn_script_path(d->script, DEFAULT_BLOCK_SCRIPT, sp,
                                  sizeof(sp));
        if (KEY(l, be, "script", sp))
            return rc;
    }
    snprintf(num, sizeof(num), "%u", id);
    if ((rc = device_dir(l, f, fe, false)) || KEY(l, fe, "backend", be) ||
        KEY(l, fe, "backend-id", dom0) || KEY(l, fe, "state", "1") ||
        KEY(l, fe, "virtual-device", num) || KEY(l, fe, "device-type", "disk"))
        return rc;
    return 0;
}

static int vif(stubdm_nodes *l, const stubdm_spawn_opts *c,
               const struct stubdm__spawn_facts *f, size_t i)
{
    const struct nic *n = &c->nics[i];
    const char *mac = f->macs[i];
    char fe[128], be[128], num[24], dom0[24], handle[24], sp[SCRIPT_MAX];
    int rc;

    stubdm__spawn_script_path(n->script, DEFAULT_VIF_SCRIPT, sp, sizeof(sp));
    snprintf(fe, sizeof(fe), "/local/domain/%u/device/vif/%zu", f->domid, i);
    snprintf(be, sizeof(be), "/local/domain/%u/backend/vif/%u/%zu",
             TOOLSTACK_DOMID, f->domid, i);
    snprintf(num, sizeof(num), "%u", f->domid);
    snprintf(dom0, sizeof(dom0), "%u", TOOLSTACK_DOMID);
    snprintf(handle, sizeof(handle), "%zu", i);
    if ((rc = device_dir(l, f, be, true)) || KEY(l, be, "frontend", fe) ||
        KEY(l, be, "frontend-id", num) || KEY(l, be, "online", "1") ||
        KEY(l, be, "state", "1") || KEY(l, be, "handle", handle) ||
        KEY(l, be, "mac", mac) ||
        KEY(l, be, "bridge", n->bridge ? n->bridge : "xenbr0") ||
        KEY(l, be, "script", sp) || KEY(l, be, "type", "vif") ||
        (rc = device_dir(l, f, fe, false)) || KEY(l, fe, "backend", be) ||
        KEY(l, fe, "backend-id", dom0) || KEY(l, fe, "state", "1") ||
        KEY(l, fe, "handle", handle) || KEY(l, fe, "mac", mac))
        return rc;
    return 0;
}

int stubdm__spawn_device_nodes(const stubdm_spawn_opts *c,
                               const struct stubdm__spawn_facts *f,
                               stubdm_nodes *l)
{
    int rc = 0;

    for (size_t i = 0; i < c->ndisks && !rc; i++)
        rc = vbd(l, f, &c->disks[i], i);
    for (size_t i = 0; i < c->nnics && !rc; i++)
        rc = vif(l, c, f, i);
    return rc;
}

int stubdm__spawn_place_contract(stubdm_contract *k,
                                 const struct stubdm__spawn_facts *f)
{
    int rc = stubdm_contract_set_domains(k, f->guest, f->domid);

    if (!rc)
        rc = stubdm_contract_set_vm_path(k, f->vm_path);
    if (!rc && !f->simulated)
        rc = stubdm_contract_set_console0_ring(k, f->console_mfn,
                                               f->console_port);
    return rc;
}

int stubdm__spawn_nodes(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                        const stubdm_contract *k,
                        const struct stubdm__spawn_facts *f,
                        stubdm_nodes **out)
{
    stubdm_nodes *l = stubdm__nodes_new(), *kn = NULL;
    int rc;

    *out = NULL;
    if (!l)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "spawn layout");
    if ((rc = stubdm_contract_layout(ctx, k, &kn))) {
        stubdm_nodes_free(l);
        return rc;
    }
    if ((rc = stubdm__spawn_domain_nodes(c, f, l)) ||
        (rc = stubdm__nodes_splice(l, kn)) ||
        (rc = stubdm__spawn_device_nodes(c, f, l))) {
        stubdm_nodes_free(kn);
        stubdm_nodes_free(l);
        return stubdm__fail(ctx, rc, ENOMEM, "spawn layout");
    }
    stubdm_nodes_free(kn);
    *out = l;
    return 0;
}

void stubdm__spawn_random_uuid(uint8_t u[16], char *out, size_t outlen)
{
    size_t got = 0;

    while (got < 16) {
        ssize_t n = getrandom(u + got, 16 - got, 0);
        if (n <= 0) { /* no entropy source: time and pid, still unique-ish */
            uint64_t x = (uint64_t)stubdm_now_ms() ^
                         ((uint64_t)getpid() << 32);
            for (; got < 16; got++, x = x * 6364136223846793005ull + 1)
                u[got] = (uint8_t)(x >> 56);
            break;
        }
        got += (size_t)n;
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(out, outlen,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
             u[11], u[12], u[13], u[14], u[15]);
}

void stubdm__spawn_pick_macs(const stubdm_spawn_opts *c, uint32_t domid,
                             char (*macs)[MAC_LEN])
{
    for (size_t i = 0; i < c->nnics; i++) {
        uint8_t r[3] = {0, 0, 0};

        if (c->nics[i].mac) {
            snprintf(macs[i], MAC_LEN, "%s", c->nics[i].mac);
            continue;
        }
        if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
            r[2] = (uint8_t)(domid + i);
        snprintf(macs[i], MAC_LEN, "00:16:3e:%02x:%02x:%02x", r[0] & 0x7f,
                 r[1], r[2]);
    }
}

/* The dry run's facts: the configuration's, the rest as a spawn would
 * choose them (no xenstore, no hypervisor). */
static void dry_facts(const stubdm_spawn_opts *c, uint32_t stubdom,
                      bool simulated, char *vm, char *stub_vm, char *gname,
                      char *sname, char (*macs)[MAC_LEN],
                      struct stubdm__spawn_facts *f)
{
    char uuid[40];
    uint8_t raw[16];

    snprintf(vm, VM_PATH_MAX, "/vm/%s", c->uuid);
    stubdm__spawn_random_uuid(raw, uuid, sizeof(uuid));
    snprintf(stub_vm, VM_PATH_MAX, "/vm/%s", uuid);
    if (c->guest_name)
        snprintf(gname, NAME_MAX_LEN + 1, "%s", c->guest_name);
    else
        snprintf(gname, NAME_MAX_LEN + 1, "guest%u", c->guest);
    if (c->name)
        snprintf(sname, NAME_MAX_LEN + 8, "%s", c->name);
    else
        snprintf(sname, NAME_MAX_LEN + 8, "%s-dm", gname);
    stubdm__spawn_pick_macs(c, stubdom, macs);
    *f = (struct stubdm__spawn_facts){
        .domid = stubdom,
        .guest = c->guest,
        .stub_name = sname,
        .stub_vm = stub_vm,
        .guest_name = gname,
        .vm_path = vm,
        .simulated = simulated,
        .start_time = (long long)time(NULL),
        .macs = (const char(*)[MAC_LEN])macs,
    };
}

int stubdm_spawn_layout(stubdm_ctx *ctx, const stubdm_spawn_opts *cfg,
                        uint32_t stubdom, stubdm_nodes **out)
{
    char vm[VM_PATH_MAX], stub_vm[VM_PATH_MAX], gname[NAME_MAX_LEN + 1];
    char sname[NAME_MAX_LEN + 8], macs[MAX_NICS][MAC_LEN];
    struct stubdm__spawn_facts f;
    stubdm_contract *k = NULL;
    bool simulated = ctx && stubdm__host(ctx)->simulated;
    int rc = ctx ? 0 : STUBDM_EINVAL;

    if (out)
        *out = NULL;
    if (!rc && (!cfg || !out))
        rc = stubdm__fail(ctx, STUBDM_EINVAL, 0,
                          "spawn layout: configuration and out required");
    if (!rc)
        rc = stubdm__spawn_validate(ctx, cfg, simulated, &k);
    if (!rc && (!cfg->uuid || !stubdom || stubdom == cfg->guest ||
                !stubdm__domid_ok(stubdom)))
        rc = stubdm__fail(ctx, STUBDM_EINVAL, 0,
                          "spawn layout: needs the guest's uuid and a "
                          "stubdomain domid other than the guest's");
    if (!rc) {
        dry_facts(cfg, stubdom, simulated, vm, stub_vm, gname, sname, macs,
                  &f);
        if ((rc = stubdm__spawn_place_contract(k, &f)))
            stubdm__fail(ctx, rc, 0, "spawn layout: the contract");
    }
    if (!rc && !(rc = stubdm__spawn_nodes(ctx, cfg, k, &f, out)))
        stubdm__clear_error(ctx);
    stubdm_contract_free(k);
    return rc;
}
