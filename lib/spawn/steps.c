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
#include "pci/pci.h"
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

unsigned stubdm__spawn_vbd_devid(size_t idx)
{
    return idx < 16 ? (202u << 8) | ((unsigned)idx << 4)
                    : (1u << 28) | ((unsigned)idx << 8);
}
static void facts_of(const stubdm_stubdom *s, struct stubdm__spawn_facts *f)
{
    *f = (struct stubdm__spawn_facts){
        .domid = s->domid,
        .guest = s->guest,
        .stub_name = s->stub_name,
        .stub_vm = s->stub_vm,
        .guest_name = s->guest_name,
        .vm_path = s->vm_path,
        .simulated = s->host->simulated,
        .store_mfn = s->build.store_mfn,
        .store_port = s->build.store_port,
        .console_mfn = s->build.console_mfn,
        .console_port = s->build.console_port,
        .start_time = s->start_time,
        .placeholder = s->placeholder,
        .placeholder_vm = s->placeholder_vm,
        .macs = (const char(*)[MAC_LEN])s->macs,
    };
}

static int write_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                     void *arg)
{
    return stubdm__nodes_write_txn(ctx, xsh, t, arg);
}

/* Replay one of the spawn's layouts (layout.c) in one transaction. */
static int write_layout(stubdm_stubdom *s, const char *what,
                        int (*layout)(const stubdm_spawn_opts *c,
                                      const struct stubdm__spawn_facts *f,
                                      stubdm_nodes *l))
{
    struct stubdm__spawn_facts f;
    stubdm_nodes *l = stubdm__nodes_new();
    int rc;

    if (!l)
        return stubdm__fail(s->ctx, STUBDM_ENOMEM, ENOMEM, "%s", what);
    facts_of(s, &f);
    rc = layout(s->cfg, &f, l);
    if (rc)
        rc = stubdm__fail(s->ctx, rc, ENOMEM, "%s", what);
    else
        rc = stubdm__xs_transaction(s->ctx, what, write_txn, l, NULL);
    stubdm_nodes_free(l);
    return rc;
}

/* The guest's vm path and name, and the stubdomain's name. */
static int resolve_names(stubdm_stubdom *s)
{
    stubdm_ctx *ctx = s->ctx;
    const stubdm_spawn_opts *c = s->cfg;
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
        } else if (rc != STUBDM_ENOENT || !s->host->simulated ||
                   s->adopted) { /* a stand-in only for a domain we make */
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
static int need_placeholder(stubdm_stubdom *s)
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
        s->placeholder = true;
        if (!s->vm_path[0]) {
            stubdm__spawn_random_uuid(raw, uuid, sizeof(uuid));
            snprintf(s->vm_path, sizeof(s->vm_path), "/vm/%s", uuid);
        }
        rc = stubdm__xs_read(ctx, 0, s->vm_path, 4096, &v, NULL);
        free(v);
        s->placeholder_vm = rc == STUBDM_ENOENT;
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
    const stubdm_spawn_opts *c = s->cfg;
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
    stubdm__spawn_random_uuid(b->uuid, uuid, sizeof(uuid));
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
    struct stubdm__spawn_facts f;

    facts_of(s, &f);
    s->contract_rc = stubdm__spawn_place_contract(s->contract, &f);
}

int stubdm__spawn_step_create(stubdm_stubdom *s)
{
    stubdm_ctx *ctx = s->ctx;
    const struct stubdm__build *b = &s->build;
    struct xs_handle *xsh = NULL;
    int rc;

    if ((rc = resolve_names(s)) || (rc = need_placeholder(s)) ||
        (rc = create_domain(s)))
        return rc;
    place_contract(s);
    s->start_time = (long long)time(NULL);
    rc = write_layout(s, "writing the domain's nodes",
                      stubdm__spawn_domain_nodes);
    if (rc)
        return rc;
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    if (!xs_introduce_domain(xsh, s->domid, (unsigned long)b->store_mfn,
                             b->store_port))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "introducing domain %u to xenstore: %s", s->domid,
                            strerror(errno));
    return s->host->set_target(ctx, s->domid, s->guest);
}

/* The stubdomain's own /vm/<uuid> as its builder wrote it (dom0's node
 * only), for a teardown that destroys the domain. */
void stubdm__spawn_read_stub_vm(stubdm_stubdom *s)
{
    char p[64], *v = NULL;

    snprintf(p, sizeof(p), "/local/domain/%u/vm", s->domid);
    if (stubdm__xs_read_owned(s->ctx, p, VM_PATH_MAX - 1, TOOLSTACK_DOMID, &v,
                              NULL) == 0 &&
        stubdm__vm_path_check(NULL, v) == 0)
        snprintf(s->stub_vm, sizeof(s->stub_vm), "%s", v);
    free(v);
    stubdm__clear_error(s->ctx);
}

int stubdm__spawn_step_adopt(stubdm_stubdom *s)
{
    const stubdm_spawn_opts *c = s->cfg;
    struct stubdm__build *b = &s->build;
    int rc;

    if ((rc = resolve_names(s)))
        return rc;
    /* What UNPAUSE needs: the domain, and on the simulated host the
     * program its "boot" runs. */
    memset(b, 0, sizeof(*b));
    b->domid = s->domid;
    b->guest = s->guest;
    b->console_mfn = c->ring0_mfn;
    b->console_port = c->ring0_port;
    b->sim_program = c->sim_program;
    b->sim_args = (const char *const *)c->sim_args;
    b->sim_nargs = c->sim_nargs;
    place_contract(s);
    s->attached = true; /* from here on, a teardown has something to undo */
    return s->host->set_target(s->ctx, s->domid, s->guest);
}

int stubdm__spawn_step_contract(stubdm_stubdom *s)
{
    int rc;

    if (s->adopted && !s->attached && (rc = stubdm__spawn_step_adopt(s)))
        return rc;
    if (s->contract_rc)
        return stubdm__fail(s->ctx, s->contract_rc, 0,
                            "configuring the contract: %s",
                            stubdm_strerror(s->contract_rc));
    return stubdm_contract_write(s->ctx, s->contract);
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
                    s->domid, sc->n, stubdm_errname(rc), stubdm_op_errmsg(op));
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
    const stubdm_spawn_opts *c = s->cfg;
    stubdm_console_opts *o = NULL;
    int rc = 0;

    for (unsigned n = 0; !rc && n < STUBDM__NCONSOLES; n++) {
        const char *out = c->console[n];
        bool serve = true;

        if (!(c->consoles & STUBDM_CONTRACT_CONSOLE(n)))
            continue; /* the toolstack's: not in the contract */

        stubdm_console_opts_free(o);
        o = NULL;
        if ((rc = stubdm_console_opts_new(&o)))
            break;
        if (n == STUBDM_CONSOLE_LOG) {
            if (!out || c->service)
                /* no log configured: the frontend's ring fills; with a
                 * service, the service serves the log, once adopted */
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
        } else if (c->service) {
            /* the service serves the serials (ptys), once adopted: two
             * backends of one console would race for its ring */
            serve = false;
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

    stubdm__spawn_pick_macs(s->cfg, s->domid, s->macs);
    if (s->cfg->ndisks || s->cfg->nnics)
        rc = write_layout(s, "attaching disks and nics",
                          stubdm__spawn_device_nodes);
    /* PCI devices while the stubdomain is paused: pcifront finds its
     * bus when Linux boots, QEMU the devices when it starts (docs/pci.md,
     * "At spawn"). */
    if (!rc && s->cfg->npcis)
        rc = stubdm__pci_guest_no_relocate(s->ctx, s->guest);
    for (size_t i = 0; !rc && i < s->cfg->npcis; i++)
        rc = stubdm__pci_prepare(s->ctx, s->guest, s->domid, &s->cfg->pcis[i]);
    if (!rc && s->backend == STUBDM_CONSOLE_BACKEND_LIBSTUBDM)
        rc = serve_consoles(s);
    return rc;
}

int stubdm__spawn_step_hotplug(stubdm_stubdom *s, stubdm_done_fn *done,
                               void *user, stubdm_op **op_out)
{
    const stubdm_spawn_opts *c = s->cfg;
    struct stubdm__hotplug_dev *devs;
    char(*paths)[SCRIPT_MAX];
    size_t n = 0;
    int rc;

    *op_out = NULL;
    if (s->ctx->no_hotplug ||
        (c->adopt_flags & STUBDM_SPAWN_ADOPT_NO_HOTPLUG) ||
        (!c->ndisks && !c->nnics))
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
        devs[n] = (struct stubdm__hotplug_dev){"vbd",
                                               stubdm__spawn_vbd_devid(i),
                                               paths[n]};
        n++;
    }
    for (size_t i = 0; i < c->nnics; i++) {
        stubdm__spawn_script_path(c->nics[i].script, DEFAULT_VIF_SCRIPT,
                                  paths[n], sizeof(paths[n]));
        devs[n] = (struct stubdm__hotplug_dev){"vif", (unsigned)i, paths[n]};
        n++;
    }
    rc = n ? stubdm__hotplug_add(s->ctx, s->domid, devs, n, c->timeout_ms,
                                 done, user, op_out)
           : 0;
    free(devs);
    free(paths);
    return rc;
}
