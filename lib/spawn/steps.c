/*
 * The spawn's steps (spawn.c runs them in order): create the domain and
 * its nodes, write the contract, attach devices and serve consoles, run
 * the hotplug scripts.
 */
#include "console/console.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/peer.h"
#include "spawn/spawn.h"
#include "protocol/dmargs.h"
#include "spawn/hotplug.h"
#include "xen/host.h"
#include "xen/xs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

/* Write path = value in t, with perms (owner first) if n > 0. */
static int txn_write(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                     const char *path, const char *value,
                     const struct xs_permissions *perms, unsigned n)
{
    stubdm__xs_count(ctx, 1);
    if (!xs_write(xsh, t, path, value, (unsigned)strlen(value)))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "writing %s: %s", path, strerror(errno));
    if (n) {
        stubdm__xs_count(ctx, 1);
        if (!xs_set_permissions(xsh, t, path, (struct xs_permissions *)perms,
                                n))
            return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                                "setting permissions of %s: %s", path,
                                strerror(errno));
    }
    return 0;
}

static int txn_writef(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      const char *dir, const char *key, const char *fmt, ...)
    STUBDM_PRINTF(6, 7);
static int txn_writef(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      const char *dir, const char *key, const char *fmt, ...)
{
    char path[256], val[1100];
    va_list ap;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    return txn_write(ctx, xsh, t, path, val, NULL, 0);
}

/* A missing node is not an error. */
static int txn_rm(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                  const char *path)
{
    stubdm__xs_count(ctx, 1);
    if (!xs_rm(xsh, t, path) && errno != ENOENT)
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "removing %s: %s", path, strerror(errno));
    return 0;
}

static void random_uuid(uint8_t u[16], char *out, size_t outlen)
{
    size_t got = 0;

    while (got < 16) {
        ssize_t n = getrandom(u + got, 16 - got, 0);
        if (n <= 0) { /* no entropy source: time and pid, still unique-ish */
            uint64_t x = (uint64_t)stubdm_now_ms() ^ ((uint64_t)getpid() << 32);
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
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
             u[10], u[11], u[12], u[13], u[14], u[15]);
}

unsigned stubdm__spawn_vbd_devid(size_t idx)
{
    return idx < 16 ? (202u << 8) | ((unsigned)idx << 4)
                    : (1u << 28) | ((unsigned)idx << 8);
}
struct basics_args {
    stubdm_stubdom *s;
    bool placeholder, placeholder_vm;
};

static int basics_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      void *arg)
{
    struct basics_args *a = arg;
    stubdm_stubdom *s = a->s;
    const struct stubdm__build *b = &s->build;
    struct xs_permissions ro[2] = { { TOOLSTACK_DOMID, XS_PERM_NONE },
                                    { s->domid, XS_PERM_READ } };
    struct xs_permissions rw[1] = { { s->domid, XS_PERM_NONE } };
    char dom[48], p[128];
    int rc;

    snprintf(dom, sizeof(dom), "/local/domain/%u", s->domid);
    /* Whatever a dead domain of the same id left is not ours to keep. */
    if ((rc = txn_rm(ctx, xsh, t, dom)) ||
        (rc = txn_write(ctx, xsh, t, dom, "", ro, 2)) ||
        (rc = txn_writef(ctx, xsh, t, dom, "name", "%s", s->stub_name)) ||
        (rc = txn_writef(ctx, xsh, t, dom, "domid", "%u", s->domid)) ||
        (rc = txn_writef(ctx, xsh, t, dom, "vm", "%s", s->stub_vm)) ||
        /* Written again by the contract; here already so that a spawn
         * killed before the contract leaves a domain stubdm_destroy knows
         * (dom0's node) for a stubdomain. */
        (rc = txn_writef(ctx, xsh, t, dom, "target", "%u", s->guest)) ||
        (rc = txn_writef(ctx, xsh, t, dom, "memory/static-max", "%" PRIu64,
                         s->cfg->memory_kib)) ||
        (rc = txn_writef(ctx, xsh, t, dom, "memory/target", "%" PRIu64,
                         s->cfg->memory_kib)))
        return rc;
    for (unsigned i = 0; i < s->cfg->vcpus; i++) {
        char key[32];
        snprintf(key, sizeof(key), "cpu/%u/availability", i);
        if ((rc = txn_writef(ctx, xsh, t, dom, key, "online")))
            return rc;
    }
    if (!s->host->simulated &&
        ((rc = txn_writef(ctx, xsh, t, dom, "store/ring-ref", "%" PRIu64,
                          b->store_mfn)) ||
         (rc = txn_writef(ctx, xsh, t, dom, "store/port", "%u",
                          b->store_port))))
        return rc;
    /* The directories the domain itself writes into (libxl's rw paths). */
    static const char *const own[] = { "device", "control", "data", "error",
                                       "drivers", "attr", "feature", NULL };
    for (size_t i = 0; own[i]; i++) {
        snprintf(p, sizeof(p), "%s/%s", dom, own[i]);
        if ((rc = txn_write(ctx, xsh, t, p, "", rw, 1)))
            return rc;
    }
    /* /vm/<stub uuid>, readable by the stubdomain. */
    if ((rc = txn_rm(ctx, xsh, t, s->stub_vm)) ||
        (rc = txn_write(ctx, xsh, t, s->stub_vm, "", ro, 2)) ||
        (rc = txn_writef(ctx, xsh, t, s->stub_vm, "uuid", "%s",
                         s->stub_vm + 4)) ||
        (rc = txn_writef(ctx, xsh, t, s->stub_vm, "name", "%s",
                         s->stub_name)) ||
        (rc = txn_writef(ctx, xsh, t, s->stub_vm, "start_time", "%lld",
                         (long long)time(NULL))) ||
        (rc = txn_writef(ctx, xsh, t, s->stub_vm, "image/ostype", "linux")))
        return rc;
    if (s->cfg->kernel &&
        (rc = txn_writef(ctx, xsh, t, s->stub_vm, "image/kernel", "%s",
                         s->cfg->kernel)))
        return rc;
    if (s->cfg->cmdline &&
        (rc = txn_writef(ctx, xsh, t, s->stub_vm, "image/cmdline", "%s",
                         s->cfg->cmdline)))
        return rc;

    if (a->placeholder) {
        /* The simulated host has no guest: stand one in, readable by the
         * guest (and so by its stubdomain through the target relation). */
        struct xs_permissions gro[2] = { { TOOLSTACK_DOMID, XS_PERM_NONE },
                                         { s->guest, XS_PERM_READ } };
        char gdom[48];
        snprintf(gdom, sizeof(gdom), "/local/domain/%u", s->guest);
        if ((rc = txn_write(ctx, xsh, t, gdom, "", gro, 2)) ||
            (rc = txn_writef(ctx, xsh, t, gdom, "domid", "%u", s->guest)) ||
            (rc = txn_writef(ctx, xsh, t, gdom, "name", "%s",
                             s->guest_name)) ||
            (rc = txn_writef(ctx, xsh, t, gdom, "vm", "%s", s->vm_path)) ||
            (rc = txn_writef(ctx, xsh, t, gdom, PLACEHOLDER_KEY, "%u %d",
                             s->domid, a->placeholder_vm ? 1 : 0)))
            return rc;
        if (a->placeholder_vm &&
            ((rc = txn_write(ctx, xsh, t, s->vm_path, "", gro, 2)) ||
             (rc = txn_writef(ctx, xsh, t, s->vm_path, "uuid", "%s",
                              s->vm_path + 4)) ||
             (rc = txn_writef(ctx, xsh, t, s->vm_path, "name", "%s",
                              s->guest_name))))
            return rc;
    }
    return 0;
}

/* The guest's vm path and name, and the stubdomain's name. */
static int resolve_names(stubdm_stubdom *s)
{
    stubdm_ctx *ctx = s->ctx;
    const stubdm_spawn_config *c = s->cfg;
    char p[96], *v = NULL;
    int rc;

    if (c->uuid) {
        snprintf(s->vm_path, sizeof(s->vm_path), "/vm/%s", c->uuid);
    } else {
        snprintf(p, sizeof(p), "/local/domain/%u/vm", s->guest);
        /* The contract writes the argv under it and the teardown removes
         * it: dom0's node only (libxl's is), never the guest's choice. */
        rc = stubdm__xs_read_owned(ctx, p, VM_PATH_MAX - 1, TOOLSTACK_DOMID,
                                   &v, NULL);
        if (rc == 0) {
            snprintf(s->vm_path, sizeof(s->vm_path), "%s", v);
            free(v);
        } else if (rc != STUBDM_ENOENT || !s->host->simulated) {
            return rc == STUBDM_ENOENT
                       ? stubdm__fail(ctx, rc, 0,
                                      "guest %u has no vm path (%s): does "
                                      "it exist?",
                                      s->guest, p)
                       : rc;
        }
    }
    if (c->guest_name) {
        snprintf(s->guest_name, sizeof(s->guest_name), "%s", c->guest_name);
    } else {
        snprintf(p, sizeof(p), "/local/domain/%u/name", s->guest);
        if (stubdm__xs_read(ctx, 0, p, NAME_MAX_LEN, &v, NULL) == 0 &&
            stubdm__spawn_printable(v, NAME_MAX_LEN))
            snprintf(s->guest_name, sizeof(s->guest_name), "%s", v);
        else
            snprintf(s->guest_name, sizeof(s->guest_name), "guest%u",
                     s->guest);
        free(v);
        stubdm__clear_error(ctx);
    }
    if (c->name)
        snprintf(s->stub_name, sizeof(s->stub_name), "%s", c->name);
    else
        snprintf(s->stub_name, sizeof(s->stub_name), "%s-dm", s->guest_name);
    return 0;
}

/* On the simulated host, stand in a guest if there is none. */
static int need_placeholder(stubdm_stubdom *s, struct basics_args *ba)
{
    stubdm_ctx *ctx = s->ctx;
    char p[96], *v = NULL, uuid[40];
    uint8_t raw[16];
    int rc;

    if (!s->host->simulated)
        return 0;
    snprintf(p, sizeof(p), "/local/domain/%u/vm", s->guest);
    rc = stubdm__xs_read(ctx, 0, p, VM_PATH_MAX - 1, &v, NULL);
    free(v);
    v = NULL;
    if (rc == STUBDM_ENOENT) {
        ba->placeholder = true;
        if (!s->vm_path[0]) {
            random_uuid(raw, uuid, sizeof(uuid));
            snprintf(s->vm_path, sizeof(s->vm_path), "/vm/%s", uuid);
        }
        rc = stubdm__xs_read(ctx, 0, s->vm_path, 4096, &v, NULL);
        free(v);
        ba->placeholder_vm = rc == STUBDM_ENOENT;
        if (rc && rc != STUBDM_ENOENT)
            return rc;
    } else if (rc) {
        return rc;
    }
    stubdm__clear_error(ctx);
    return 0;
}

/* The host backend creates and builds the domain, paused. */
static int create_domain(stubdm_stubdom *s)
{
    const stubdm_spawn_config *c = s->cfg;
    struct stubdm__build *b = &s->build;
    char uuid[40];
    int rc;

    memset(b, 0, sizeof(*b));
    b->domid_req = c->stubdom_req;
    b->guest = s->guest;
    b->name = s->stub_name;
    b->kernel = c->kernel;
    b->ramdisk = c->ramdisk;
    b->cmdline = c->cmdline;
    b->memory_kib = c->memory_kib;
    b->vcpus = c->vcpus;
    b->xsm_label = c->xsm_label;
    random_uuid(b->uuid, uuid, sizeof(uuid));
    snprintf(s->stub_vm, sizeof(s->stub_vm), "/vm/%s", uuid);
    b->sim_program = c->sim_program;
    b->sim_args = (const char *const *)c->sim_args;
    b->sim_nargs = c->sim_nargs;
    rc = s->host->create(s->ctx, b);
    if (rc)
        return rc;
    s->domid = b->domid;
    s->domain_made = true; /* from here on, teardown destroys it */
    if (s->domid == s->guest)
        return stubdm__fail(s->ctx, STUBDM_EINVAL, 0,
                            "the host gave the stubdomain the guest's "
                            "domid %u",
                            s->domid);
    return 0;
}

/* The kept contract gets what only the domain's creation tells; a
 * failure is the contract step's (contract_rc). */
static void place_contract(stubdm_stubdom *s)
{
    int rc = stubdm_contract_set_domains(s->contract, s->guest, s->domid);

    if (!rc)
        rc = stubdm_contract_set_vm_path(s->contract, s->vm_path);
    if (!rc && !s->host->simulated)
        rc = stubdm_contract_set_console0_ring(
            s->contract, s->build.console_mfn, s->build.console_port);
    s->contract_rc = rc;
}

int stubdm__spawn_step_create(stubdm_stubdom *s)
{
    stubdm_ctx *ctx = s->ctx;
    const struct stubdm__build *b = &s->build;
    struct basics_args ba = { s, false, false };
    struct xs_handle *xsh = NULL;
    int rc;

    if ((rc = resolve_names(s)) || (rc = need_placeholder(s, &ba)) ||
        (rc = create_domain(s)))
        return rc;
    place_contract(s);
    rc = stubdm__xs_transaction(ctx, "writing the domain's nodes", basics_txn,
                                &ba, NULL);
    if (rc)
        return rc;
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    if (!xs_introduce_domain(xsh, s->domid, (unsigned long)b->store_mfn,
                             b->store_port))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "introducing domain %u to xenstore: %s",
                            s->domid, strerror(errno));
    return s->host->set_target(ctx, s->domid, s->guest);
}

int stubdm__spawn_step_contract(stubdm_stubdom *s)
{
    if (s->contract_rc)
        return stubdm__fail(s->ctx, s->contract_rc, 0,
                            "configuring the contract: %s",
                            stubdm_strerror(s->contract_rc));
    return stubdm_contract_write(s->ctx, s->contract);
}

static int devices_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                       void *arg)
{
    stubdm_stubdom *s = arg;
    const stubdm_spawn_config *c = s->cfg;
    struct xs_permissions fe[2] = { { s->domid, XS_PERM_NONE },
                                    { TOOLSTACK_DOMID, XS_PERM_READ } };
    struct xs_permissions be[2] = { { TOOLSTACK_DOMID, XS_PERM_NONE },
                                    { s->domid, XS_PERM_READ } };
    char f[128], bk[128];
    int rc = 0;

    for (size_t i = 0; i < c->ndisks && !rc; i++) {
        const struct disk *d = &c->disks[i];
        unsigned id = stubdm__spawn_vbd_devid(i);
        snprintf(f, sizeof(f), "/local/domain/%u/device/vbd/%u", s->domid, id);
        snprintf(bk, sizeof(bk), "/local/domain/%u/backend/vbd/%u/%u",
                 TOOLSTACK_DOMID, s->domid, id);
        if ((rc = txn_write(ctx, xsh, t, bk, "", be, 2)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "frontend", "%s", f)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "frontend-id", "%u",
                             s->domid)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "online", "1")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "removable", "0")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "bootable", "1")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "state", "1")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "dev", "xvd%c",
                             (char)('a' + i))) ||
            (rc = txn_writef(ctx, xsh, t, bk, "type", "%s",
                             d->qcow2 ? "qdisk" : "phy")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "mode", "%s",
                             d->readonly ? "r" : "w")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "device-type", "disk")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "params", "%s%s",
                             d->qcow2 ? "qcow2:" : "", d->target)))
            break;
        if (!d->qcow2) {
            char sp[SCRIPT_MAX];
            stubdm__spawn_script_path(d->script, DEFAULT_BLOCK_SCRIPT, sp,
                                      sizeof(sp));
            if ((rc = txn_writef(ctx, xsh, t, bk, "script", "%s", sp)))
                break;
        }
        if ((rc = txn_write(ctx, xsh, t, f, "", fe, 2)) ||
            (rc = txn_writef(ctx, xsh, t, f, "backend", "%s", bk)) ||
            (rc = txn_writef(ctx, xsh, t, f, "backend-id", "%u",
                             TOOLSTACK_DOMID)) ||
            (rc = txn_writef(ctx, xsh, t, f, "state", "1")) ||
            (rc = txn_writef(ctx, xsh, t, f, "virtual-device", "%u", id)) ||
            (rc = txn_writef(ctx, xsh, t, f, "device-type", "disk")))
            break;
    }
    for (size_t i = 0; i < c->nnics && !rc; i++) {
        const struct nic *n = &c->nics[i];
        char mac[18], sp[SCRIPT_MAX];
        if (n->mac) {
            snprintf(mac, sizeof(mac), "%s", n->mac);
        } else {
            uint8_t r[3] = { 0, 0, 0 };
            if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
                r[2] = (uint8_t)(s->domid + i);
            snprintf(mac, sizeof(mac), "00:16:3e:%02x:%02x:%02x", r[0] & 0x7f,
                     r[1], r[2]);
        }
        stubdm__spawn_script_path(n->script, DEFAULT_VIF_SCRIPT, sp,
                                  sizeof(sp));
        snprintf(f, sizeof(f), "/local/domain/%u/device/vif/%zu", s->domid, i);
        snprintf(bk, sizeof(bk), "/local/domain/%u/backend/vif/%u/%zu",
                 TOOLSTACK_DOMID, s->domid, i);
        if ((rc = txn_write(ctx, xsh, t, bk, "", be, 2)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "frontend", "%s", f)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "frontend-id", "%u",
                             s->domid)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "online", "1")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "state", "1")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "handle", "%zu", i)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "mac", "%s", mac)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "bridge", "%s",
                             n->bridge ? n->bridge : "xenbr0")) ||
            (rc = txn_writef(ctx, xsh, t, bk, "script", "%s", sp)) ||
            (rc = txn_writef(ctx, xsh, t, bk, "type", "vif")) ||
            (rc = txn_write(ctx, xsh, t, f, "", fe, 2)) ||
            (rc = txn_writef(ctx, xsh, t, f, "backend", "%s", bk)) ||
            (rc = txn_writef(ctx, xsh, t, f, "backend-id", "%u",
                             TOOLSTACK_DOMID)) ||
            (rc = txn_writef(ctx, xsh, t, f, "state", "1")) ||
            (rc = txn_writef(ctx, xsh, t, f, "handle", "%zu", i)) ||
            (rc = txn_writef(ctx, xsh, t, f, "mac", "%s", mac)))
            break;
    }
    return rc;
}

static void on_console_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_con *sc = user;
    stubdm_stubdom *s = sc->s;

    /* The handle stays in s->cons (stats readable) until teardown. */
    if (rc == 0) {
        LOG_DEBUG(s->ctx, MOD, "stubdomain %u: console %u completed", s->domid,
                  sc->n);
    } else if (rc == STUBDM_EDOMAIN_GONE) {
        /* Part of the death the spawn's or the caller's wait reports. */
        LOG_DEBUG(s->ctx, MOD, "%s", stubdm_op_errmsg(op));
    } else {
        /* A hostile or broken frontend (EPROTO) or a failing fd loses that
         * console only; the stubdomain and its other consoles go on. */
        stubdm__log(s->ctx, STUBDM_LOG_WARN, 0, MOD,
                    "stubdomain %u: console %u ended (%s): %s; the "
                    "stubdomain keeps running",
                    s->domid, sc->n, stubdm_errname(rc),
                    stubdm_op_errmsg(op));
    }
}

/* Serve console n with opts; the handle goes to s->cons[n]. */
static int serve_one(stubdm_stubdom *s, unsigned n, stubdm_console_opts *o)
{
    int rc = stubdm_console_opts_set_transport(
        o, s->host->simulated ? STUBDM_CONSOLE_TRANSPORT_SIMULATED
                              : STUBDM_CONSOLE_TRANSPORT_XEN);

    if (!rc)
        rc = stubdm_console_opts_set_toolstack_domid(o, TOOLSTACK_DOMID);
    if (rc)
        return stubdm__fail(s->ctx, rc, 0, "console %u: options", n);
    s->con_user[n].s = s;
    s->con_user[n].n = n;
    return stubdm_console_serve(s->ctx, s->domid, n, o, on_console_done,
                                &s->con_user[n], &s->cons[n]);
}

/* Consoles 0..N served by the library, before the domain runs. */
static int serve_consoles(stubdm_stubdom *s)
{
    const stubdm_spawn_config *c = s->cfg;
    stubdm_console_opts *o = NULL;
    int rc = 0;

    for (unsigned n = 0; !rc && n < STUBDM__NCONSOLES; n++) {
        const char *out = c->console[n];
        bool serve = true;

        stubdm_console_opts_free(o);
        o = NULL;
        if ((rc = stubdm_console_opts_new(&o)))
            break;
        if (n == STUBDM_CONSOLE_LOG) {
            if (!out) /* no log configured: the frontend's ring fills */
                serve = false;
            else
                rc = stubdm_console_opts_set_log(o, out + 5, c->log_cap,
                                                 c->log_rotations);
        } else if (n == STUBDM_CONSOLE_SAVE) {
            stubdm__console_opts_set_save_held(o);
        } else if (n == STUBDM_CONSOLE_RESTORE) {
            if (c->restore_fd >= 0)
                rc = stubdm_console_opts_set_restore_fd(o, c->restore_fd);
            else if (c->console[STUBDM_CONSOLE_SERIAL0])
                /* The serials' placeholder (contract.c): served, or a
                 * Linux stubdomain waits 25 s at boot for it to connect. */
                stubdm__console_opts_set_placeholder(o);
            else
                serve = false; /* absent */
        } else if (!out) {
            break; /* serials are contiguous */
        } else if (!strcmp(out, "pty")) {
            rc = stubdm_console_opts_set_serial_pty(o);
        } else {
            rc = stubdm_console_opts_set_serial_file(o, out + 5, c->log_cap,
                                                     c->log_rotations);
        }
        if (rc) {
            rc = stubdm__fail(s->ctx, rc, 0, "console %u: options", n);
            break;
        }
        if (serve)
            rc = serve_one(s, n, o);
    }
    stubdm_console_opts_free(o);
    return rc;
}

int stubdm__spawn_step_devices(stubdm_stubdom *s)
{
    int rc = 0;

    if (s->cfg->ndisks || s->cfg->nnics)
        rc = stubdm__xs_transaction(s->ctx, "attaching disks and nics",
                                    devices_txn, s, NULL);
    if (!rc && s->backend == STUBDM_CONSOLE_LIBSTUBDM)
        rc = serve_consoles(s);
    return rc;
}

int stubdm__spawn_step_hotplug(stubdm_stubdom *s, stubdm_done_fn *done,
                               void *user, stubdm_op **op_out)
{
    const stubdm_spawn_config *c = s->cfg;
    struct stubdm__hotplug_dev *devs;
    char (*paths)[SCRIPT_MAX];
    size_t n = 0;
    int rc;

    *op_out = NULL;
    if (s->ctx->no_hotplug || (!c->ndisks && !c->nnics))
        return 0;
    devs = stubdm__calloc(c->ndisks + c->nnics, sizeof(*devs));
    paths = stubdm__calloc(c->ndisks + c->nnics, sizeof(*paths));
    if (!devs || !paths) {
        free(devs);
        free(paths);
        return stubdm__fail(s->ctx, STUBDM_ENOMEM, ENOMEM, "hotplug");
    }
    for (size_t i = 0; i < c->ndisks; i++) {
        if (c->disks[i].qcow2)
            continue; /* qdisk: the dom0 QEMU is the backend, no script */
        stubdm__spawn_script_path(c->disks[i].script, DEFAULT_BLOCK_SCRIPT,
                                  paths[n], sizeof(paths[n]));
        devs[n] = (struct stubdm__hotplug_dev){
            "vbd", stubdm__spawn_vbd_devid(i), paths[n]};
        n++;
    }
    for (size_t i = 0; i < c->nnics; i++) {
        stubdm__spawn_script_path(c->nics[i].script, DEFAULT_VIF_SCRIPT,
                                  paths[n], sizeof(paths[n]));
        devs[n] = (struct stubdm__hotplug_dev){ "vif", (unsigned)i,
                                                paths[n] };
        n++;
    }
    rc = n ? stubdm__hotplug_add(s->ctx, s->domid, devs, n, c->timeout_ms,
                                 done, user, op_out)
           : 0;
    free(devs);
    free(paths);
    return rc;
}
