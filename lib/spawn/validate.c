/*
 * Validation of a spawn configuration, the consoles' included: every
 * refusal names the field, before anything is created.
 */
#include "console/console.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "pci/pci.h"
#include "spawn/spawn.h"
#include "protocol/dmargs.h"
#include "xen/host.h"
#include "xen/xs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- consoles served by the library -------------------------------------- */

/* libxl's literal, replaced by the stubdomain with its restore fd
 * (Qubes init: sed to "fd:3"; docs/protocol.md). */
#define RESTORE_INCOMING_ARG "$STUBDOM_RESTORE_INCOMING_ARG"
/* Console 2's frontend "output" when this library serves it. */
#define RESTORE_OUTPUT "libstubdm:restore"

/* The backend a spawn uses: the caller's choice, else LIBSTUBDM on the
 * simulated host and IOEMU (libxl's) on Xen. */
stubdm_console_backend stubdm__spawn_backend(const stubdm_spawn_opts *c,
                                             bool simulated)
{
    if (c->backend_set)
        return c->backend;
    return simulated ? STUBDM_CONSOLE_BACKEND_LIBSTUBDM
                     : STUBDM_CONSOLE_BACKEND_IOEMU;
}

static bool has_arg(const stubdm_spawn_opts *c, const char *a)
{
    for (size_t i = 0; i < c->nargs; i++)
        if (!strcmp(c->args[i], a))
            return true;
    return false;
}

/* The QEMU args as written to dm-argv: a restoring spawn gets libxl's
 * "-incoming $STUBDOM_RESTORE_INCOMING_ARG" unless the caller gave an
 * -incoming.  *out is an array of borrowed pointers: free() it only. */
static int spawn_args(const stubdm_spawn_opts *c, const char ***out, size_t *n)
{
    bool add = c->restore_fd >= 0 && !has_arg(c, "-incoming");
    const char **v = stubdm__calloc(c->nargs + 3, sizeof(*v));

    if (!v)
        return STUBDM_ENOMEM;
    for (size_t i = 0; i < c->nargs; i++)
        v[i] = c->args[i];
    *n = c->nargs;
    if (add) {
        v[(*n)++] = "-incoming";
        v[(*n)++] = RESTORE_INCOMING_ARG;
    }
    *out = v;
    return 0;
}

/* A console output the library can serve: "file:PATH" (and "pty" for a
 * serial). */
static bool served_output_ok(const char *o, bool serial)
{
    return (!strncmp(o, "file:", 5) && o[5] == '/') ||
           (serial && !strcmp(o, "pty"));
}

/* The first console from n on with an output set, or STUBDM__NCONSOLES. */
static unsigned first_set(const stubdm_spawn_opts *c, unsigned n)
{
    while (n < STUBDM__NCONSOLES && !c->console[n])
        n++;
    return n;
}

/* What is asked of the consoles the contract leaves to the toolstack
 * (stubdm_spawn_opts_set_consoles) cannot be honoured. */
static int validate_selection(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                              bool simulated)
{
    for (unsigned n = 0; n < STUBDM__NCONSOLES; n++)
        if (c->console[n] && !(c->consoles & STUBDM_CONTRACT_CONSOLE(n)))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: console %u (%s): an output is set, "
                                "but the contract leaves this console to "
                                "the toolstack (stubdm_spawn_opts_set_"
                                "consoles)",
                                n, stubdm__console_role(n));
    if (c->restore_fd >= 0 &&
        !(c->consoles & STUBDM_CONTRACT_CONSOLE(STUBDM_CONSOLE_RESTORE)))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: restore fd: console 2 (restore) is left "
                            "to the toolstack (stubdm_spawn_opts_set_"
                            "consoles)");
    /* Console 0's frontend names the builder's ring: a domain the caller
     * built has one the library cannot learn. */
    if (c->adopt && !simulated && !c->ring0_set &&
        (c->consoles & STUBDM_CONTRACT_CONSOLE(STUBDM_CONSOLE_LOG)))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: console 0: domain %u was built by the "
                            "caller: give its ring "
                            "(stubdm_spawn_opts_set_console0_ring) or leave "
                            "console 0 to the toolstack",
                            c->adopt);
    return 0;
}

static int validate_consoles(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                             stubdm_console_backend backend)
{
    unsigned n = first_set(c, STUBDM_CONSOLE_SAVE);

    /* xenconsoled serves console 0 only, so the contract makes no other
     * console (a Linux stubdomain would wait 25 s at boot for each):
     * anything asked of consoles >= 1 cannot be honoured. */
    if (backend == STUBDM_CONSOLE_BACKEND_XENCONSOLED && n < STUBDM__NCONSOLES)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: console %u (%s): the xenconsoled backend "
                            "serves console 0 only; use the libstubdm (or "
                            "ioemu) console backend for save, restore and "
                            "serials",
                            n, stubdm__console_role(n));
    if (backend != STUBDM_CONSOLE_BACKEND_LIBSTUBDM) {
        if (c->restore_fd >= 0)
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: restore fd: restoring needs the "
                                "libstubdm console backend");
        return 0;
    }
    if (c->console[0] && !served_output_ok(c->console[0], false))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: console 0: the libstubdm backend writes "
                            "the log to \"file:/absolute/path\", not "
                            "'%.60s'",
                            c->console[0]);
    for (n = STUBDM_CONSOLE_SERIAL0; n < STUBDM__NCONSOLES; n++)
        if (c->console[n] && !served_output_ok(c->console[n], true))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: console %u: the libstubdm backend "
                                "serves a serial as \"pty\" or "
                                "\"file:/absolute/path\", not '%.60s'",
                                n, c->console[n]);
    return 0;
}

/* ---- validation ---------------------------------------------------------- */

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
           (ch >= 'A' && ch <= 'F');
}

static bool uuid_ok(const char *u)
{
    static const char pat[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

    if (strlen(u) != sizeof(pat) - 1)
        return false;
    for (size_t i = 0; pat[i]; i++)
        if (pat[i] == '-' ? u[i] != '-' : !is_hex(u[i]))
            return false;
    return true;
}

static bool mac_ok(const char *m)
{
    if (strlen(m) != 17)
        return false;
    for (int i = 0; i < 17; i++)
        if (i % 3 == 2 ? m[i] != ':' : !is_hex(m[i]))
            return false;
    return true;
}

/* Names and labels end up in xenstore values and log lines. */
bool stubdm__spawn_printable(const char *s, size_t max)
{
    size_t n = 0;

    for (; *s; s++, n++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return n > 0 && n <= max;
}

/* A hotplug script: an absolute path, or a bare name (in SCRIPT_DIR, as
 * libxl resolves it); a relative path with a '/' would depend on the
 * directory the script is started from. */
static bool script_ok(const char *s)
{
    return stubdm__spawn_printable(s, SCRIPT_MAX - sizeof(SCRIPT_DIR)) &&
           (s[0] == '/' || !strchr(s, '/'));
}

/* The script as written to the backend (and run): always absolute. */
void stubdm__spawn_script_path(const char *s, const char *def, char *out,
                               size_t len)
{
    if (!s)
        s = def;
    if (s[0] == '/')
        snprintf(out, len, "%s", s);
    else
        snprintf(out, len, SCRIPT_DIR "/%s", s);
}

static int check_readable(stubdm_ctx *ctx, const char *field, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        int err = errno;
        return stubdm__fail(ctx, err == ENOENT ? STUBDM_ENOENT : STUBDM_EINVAL,
                            err, "spawn: %s: %s is not readable: %s", field,
                            path, strerror(err));
    }
    close(fd);
    return 0;
}

/* The domains, names and the kernel. */
static int validate_identity(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                             bool simulated)
{
    int rc;

    if (!c->guest_set)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "spawn: guest: not set");
    if (c->guest == 0 || !stubdm__domid_ok(c->guest))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: guest: %u is not a guest domid", c->guest);
    if (c->stubdom_req && c->stubdom_req == c->guest)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: stubdomain domid: %u is the guest's",
                            c->stubdom_req);
    if (c->adopt == c->guest)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: domain: %u is the guest's", c->adopt);
    if (c->adopt && c->stubdom_req)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: stubdomain domid: the spawn takes domain "
                            "%u, it creates none",
                            c->adopt);
    if (c->uuid && !uuid_ok(c->uuid))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: uuid: '%.40s' is not a uuid "
                            "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                            c->uuid);
    if (c->guest_name && !stubdm__spawn_printable(c->guest_name, NAME_MAX_LEN))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: guest name: empty, longer than %d or not "
                            "printable ASCII",
                            NAME_MAX_LEN);
    if (c->name && !stubdm__spawn_printable(c->name, NAME_MAX_LEN))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: name: empty, longer than %d or not "
                            "printable ASCII",
                            NAME_MAX_LEN);
    if (!c->kernel && !simulated && !c->adopt)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: kernel: not set (required on a Xen host)");
    if (c->kernel && (rc = check_readable(ctx, "kernel", c->kernel)))
        return rc;
    if (c->ramdisk && (rc = check_readable(ctx, "ramdisk", c->ramdisk)))
        return rc;
    return 0;
}

/* The domain's size. */
static int validate_resources(stubdm_ctx *ctx, const stubdm_spawn_opts *c)
{
    if (c->cmdline && strlen(c->cmdline) >= CMDLINE_MAX)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "spawn: cmdline: %zu bytes, Xen takes at most %d",
                            strlen(c->cmdline), CMDLINE_MAX - 1);
    if (c->memory_kib < STUBDM_SPAWN_MIN_MEMORY_KIB)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: memory: %" PRIu64 " KiB is too small "
                            "(at least %u KiB)",
                            c->memory_kib, STUBDM_SPAWN_MIN_MEMORY_KIB);
    if (c->memory_kib > MAX_MEMORY_KIB)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "spawn: memory: %" PRIu64 " KiB is too large "
                            "(at most %llu KiB)",
                            c->memory_kib, MAX_MEMORY_KIB);
    if (c->vcpus < 1 || c->vcpus > MAX_VCPUS)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: vcpus: %u is not in 1..%d", c->vcpus,
                            MAX_VCPUS);
    if (c->xsm_label && !stubdm__spawn_printable(c->xsm_label, 256))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: xsm label: empty or not printable ASCII");
    return 0;
}

static int validate_devices(stubdm_ctx *ctx, const stubdm_spawn_opts *c)
{
    if (c->ndisks > STUBDM_SPAWN_MAX_DISKS)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "spawn: disks: %zu emulated disks, at most %d "
                            "(xvda..xvdz)",
                            c->ndisks, STUBDM_SPAWN_MAX_DISKS);
    for (size_t i = 0; i < c->ndisks; i++) {
        if (!stubdm__spawn_printable(c->disks[i].target, 1024))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: disk %zu (xvd%c): target empty or "
                                "not printable ASCII",
                                i, (char)('a' + i));
        if (c->disks[i].script && !script_ok(c->disks[i].script))
            return stubdm__fail(
                ctx, STUBDM_EINVAL, 0,
                "spawn: disk %zu (xvd%c): script '%.60s': "
                "not an absolute path or a bare name in " SCRIPT_DIR
                ", or not printable ASCII",
                i, (char)('a' + i), c->disks[i].script);
    }
    if (c->nnics > MAX_NICS)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "spawn: nics: %zu, at most %d", c->nnics,
                            MAX_NICS);
    for (size_t i = 0; i < c->nnics; i++) {
        if (c->nics[i].mac && !mac_ok(c->nics[i].mac))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: nic %zu: mac '%.40s' is not "
                                "xx:xx:xx:xx:xx:xx",
                                i, c->nics[i].mac);
        if ((c->nics[i].bridge &&
             !stubdm__spawn_printable(c->nics[i].bridge, 64)) ||
            (c->nics[i].script && !script_ok(c->nics[i].script)))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: nic %zu: bridge or script empty or "
                                "not printable ASCII",
                                i);
    }
    return 0;
}

/*
 * The contract of a spawn of c, built once: the domains and the vm path
 * are placeholders until the domain exists (steps.c sets them).
 */
/* One device once, one virtual slot once: pciback and QEMU would refuse
 * the second only after the first was attached. */
static int validate_pcis(stubdm_ctx *ctx, const stubdm_spawn_opts *c)
{
    if (c->npcis && !c->qmp)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: PCI devices need QMP (device_add): "
                            "stubdm_spawn_opts_set_qmp");
    for (size_t i = 0; i < c->npcis; i++) {
        const struct stubdm_pci_dev *d = &c->pcis[i];
        for (size_t j = 0; j < i; j++) {
            const struct stubdm_pci_dev *e = &c->pcis[j];
            char bdf[STUBDM_PCI_ADDR_STRLEN];
            stubdm_pci_addr_format(&d->addr, bdf, sizeof(bdf));
            if (stubdm__pci_addr_eq(&d->addr, &e->addr))
                return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                    "spawn: PCI device %s given twice", bdf);
            if (d->vslot != -1 && d->vslot == e->vslot)
                return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                    "spawn: PCI device %s: virtual slot %d "
                                    "already given to device %zu",
                                    bdf, d->vslot, j);
        }
    }
    return 0;
}

static int build_contract(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                          bool simulated, stubdm_contract **out)
{
    stubdm_console_backend backend = stubdm__spawn_backend(c, simulated);
    stubdm_contract *k = NULL;
    char vm[VM_PATH_MAX];
    const char **av = NULL;
    size_t an = 0;
    int rc;

    snprintf(vm, sizeof(vm), "/vm/%s",
             c->uuid ? c->uuid : "00000000-0000-0000-0000-000000000000");
    rc = stubdm_contract_new(&k);
    if (rc)
        return stubdm__fail(ctx, rc, 0, "spawn: contract");
    rc = stubdm_contract_set_domains(k, c->guest,
                                     c->guest == 1 ? 2 : 1 /* placeholder */);
    if (!rc)
        rc = stubdm_contract_set_vm_path(k, vm);
    if (!rc && !(rc = spawn_args(c, &av, &an)))
        rc = stubdm_contract_set_args(k, av, an);
    free(av);
    if (!rc)
        rc = stubdm_contract_set_console_backend(k, backend);
    if (!rc)
        rc = stubdm_contract_set_toolstack_domid(k, TOOLSTACK_DOMID);
    if (!rc)
        rc = stubdm_contract_set_consoles(k, c->consoles);
    if (!rc)
        rc = stubdm_contract_set_dm_version(k, !c->no_dm_version);
    if (!rc)
        rc = stubdm_contract_set_service(k, c->service);
    for (unsigned n = 0; !rc && n < STUBDM__NCONSOLES; n++)
        if (c->console[n])
            rc = stubdm_contract_set_console_output(k, n, c->console[n]);
    if (!rc && c->restore_fd >= 0 && !c->console[STUBDM_CONSOLE_RESTORE])
        rc = stubdm_contract_set_console_output(k, STUBDM_CONSOLE_RESTORE,
                                                RESTORE_OUTPUT);
    if (!rc && simulated && backend == STUBDM_CONSOLE_BACKEND_LIBSTUBDM)
        /* The simulated builder makes no ring: these placeholders are
         * console 0's "published" signal (docs/consoles.md); the page and
         * socket are the stubdomain's files. */
        rc = stubdm_contract_set_console0_ring(k, 1, 1);
    if (rc) {
        stubdm_contract_free(k);
        return stubdm__fail(ctx, rc, 0, "spawn: consoles: refused (%s)",
                            stubdm_strerror(rc));
    }
    *out = k;
    return 0;
}

/* The argv and consoles, exactly as the contract will refuse them. */
static int validate_contract(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                             bool simulated, stubdm_contract **out)
{
    stubdm_contract *k = NULL;
    stubdm_nodes *nodes = NULL;
    int rc;

    if (!c->nargs)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: args: no QEMU arguments");
    if (c->service && stubdm__spawn_backend(c, simulated) !=
                          STUBDM_CONSOLE_BACKEND_LIBSTUBDM)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: service: a service serves only the "
                            "libstubdm console backend");
    if (c->service && c->qmp)
        /* The service adopts the stubdomain when the contract is written
         * and takes the QMP lock then: the spawn's own open would fail. */
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: service: the service holds the QMP "
                            "connection (reach QEMU through its proxy); "
                            "the spawn cannot open QMP too");
    for (unsigned n = STUBDM_CONSOLE_SERIAL0;
         c->service && n < STUBDM__NCONSOLES; n++)
        /* The service serves every serial as a pty: it takes no path from
         * the frontend directory, which the stubdomain can rewrite. */
        if (c->console[n] && strcmp(c->console[n], "pty"))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: service: console %u: the service "
                                "serves serials as \"pty\" only, not "
                                "'%.60s'",
                                n, c->console[n]);
    for (unsigned n = STUBDM_CONSOLE_SERIAL0 + 1; n < STUBDM__NCONSOLES; n++)
        if (c->console[n] && !c->console[n - 1])
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: console %u: serials must be set in "
                                "order, console %u is not set",
                                n, n - 1);
    if ((rc = validate_selection(ctx, c, simulated)) ||
        (rc = validate_consoles(ctx, c,
                                stubdm__spawn_backend(c, simulated))) ||
        (rc = build_contract(ctx, c, simulated, &k)))
        return rc;
    rc = stubdm_contract_layout(ctx, k, &nodes);
    stubdm_nodes_free(nodes);
    if (rc) {
        char msg[STUBDM_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
        stubdm_contract_free(k);
        return stubdm__fail(ctx, rc, ctx->os_errno, "spawn: args: %s", msg);
    }
    if (out)
        *out = k;
    else
        stubdm_contract_free(k);
    return 0;
}

int stubdm__spawn_validate(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                           bool simulated, stubdm_contract **contract)
{
    int rc;

    if (contract)
        *contract = NULL;
    if ((rc = validate_identity(ctx, c, simulated)) ||
        (rc = validate_resources(ctx, c)) || (rc = validate_devices(ctx, c)) ||
        (rc = validate_pcis(ctx, c)))
        return rc;
    return validate_contract(ctx, c, simulated, contract);
}

int stubdm_spawn_opts_validate(stubdm_ctx *ctx, const stubdm_spawn_opts *c)
{
    if (!ctx)
        return STUBDM_EINVAL;
    if (!c)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "spawn: no configuration");
    return stubdm__spawn_validate(ctx, c, stubdm__host(ctx)->simulated, NULL);
}
