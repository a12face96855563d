/*
 * Spawning a stubdomain, and tearing it down.
 *
 * Chronologically (one step per timer tick of the ctx's loop, so many
 * spawns in one ctx interleave; each step is a handful of blocking
 * xenstore requests or hypercalls):
 *
 *   CREATE    resolve the guest's vm path and name; the host backend
 *             creates and builds the domain paused; write the
 *             /local/domain/<S> and /vm/<stub uuid> basics; introduce
 *             the domain to xenstore; the hypervisor target relation.
 *   CONTRACT  stubdm_contract_write (dm-argv, target, device-model dir,
 *             consoles, xs_set_target).
 *   DEVICES   vbd and vif frontend/backend nodes.
 *   HOTPLUG   the backends' hotplug scripts (hotplug.c), unless the ctx
 *             leaves them to the caller: the domain stays paused until
 *             every one reports "connected", as libxl does.
 *   UNPAUSE   the host backend starts the domain.
 *   WAIT      stubdm_dm_wait_running (watch + death monitor + deadline).
 *   QMP       stubdm_qmp_open, if asked.
 *
 * Failure anywhere, cancellation, or freeing the op or the handle while
 * pending runs teardown() from the op's stop hook, i.e. before the
 * completion callback: the domain is destroyed and every node removed.
 */
#include "console/console.h"
#include "console/dm_state.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/num.h"
#include "core/op.h"
#include "core/peer.h"
#include "protocol/dmargs.h"
#include "spawn/hotplug.h"
#include "spawn/stubdom.h"
#include "xen/domain.h"
#include "xen/host.h"
#include "xen/hv.h"
#include "xen/xs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#define MOD "spawn"
#define VM_PATH_MAX 128
#define NAME_MAX_LEN 64
#define CMDLINE_MAX 1024 /* Xen's MAX_GUEST_CMDLINE */
#define MAX_VCPUS 128
#define MAX_MEMORY_KIB (64ull << 20) /* 64 GiB: far beyond any stubdomain */
#define MAX_NICS 16
#define TOOLSTACK_DOMID 0u
#define PLACEHOLDER_KEY "libstubdm-sim-placeholder"
#define SCRIPT_MAX 1024
#define SCRIPT_DIR "/etc/xen/scripts" /* where libxl finds a bare name */
#define DEFAULT_BLOCK_SCRIPT SCRIPT_DIR "/block"
#define DEFAULT_VIF_SCRIPT SCRIPT_DIR "/vif-bridge"

/* ---- configuration ------------------------------------------------------ */

struct disk {
    char *target;
    char *script; /* NULL: DEFAULT_BLOCK_SCRIPT */
    bool qcow2, readonly;
};

struct nic {
    char *mac, *bridge, *script;
};


struct stubdm_spawn_opts {
    bool guest_set;
    uint32_t guest;
    char *uuid, *guest_name, *name;
    char *kernel, *ramdisk, *cmdline;
    uint64_t memory_kib;
    unsigned vcpus;
    char **args;
    size_t nargs;
    char *console[STUBDM__NCONSOLES];
    stubdm_console_backend backend;
    bool backend_set;       /* else: IOEMU on Xen, LIBSTUBDM simulated */
    uint64_t log_cap;       /* 0: STUBDM_CONSOLE_DEFAULT_FILE_CAP */
    unsigned log_rotations;
    int restore_fd;         /* -1: not restoring */
    struct disk *disks;
    size_t ndisks;
    struct nic *nics;
    size_t nnics;
    char *xsm_label;
    uint32_t stubdom_req;
    int timeout_ms;
    bool qmp;
    int qmp_timeout_ms;
    char *sim_program;
    char **sim_args;
    size_t sim_nargs;
};

static void strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int strv_copy(const char *const *in, size_t n, char ***out)
{
    char **v = stubdm__calloc(n + 1, sizeof(*v));

    *out = NULL;
    if (!v)
        return STUBDM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!in[i]) {
            strv_free(v, i);
            return STUBDM_EINVAL;
        }
        v[i] = stubdm__strdup(in[i]);
        if (!v[i]) {
            strv_free(v, i);
            return STUBDM_ENOMEM;
        }
    }
    *out = v;
    return 0;
}

/* Replace *slot with a copy of s (NULL clears). */
static int set_str(char **slot, const char *s)
{
    char *c = NULL;

    if (s && !(c = stubdm__strdup(s)))
        return STUBDM_ENOMEM;
    free(*slot);
    *slot = c;
    return 0;
}

int stubdm_spawn_opts_new(stubdm_spawn_opts **out)
{
    stubdm_spawn_opts *c;

    if (!out)
        return STUBDM_EINVAL;
    *out = NULL;
    c = stubdm__calloc(1, sizeof(*c));
    if (!c)
        return STUBDM_ENOMEM;
    c->memory_kib = STUBDM_SPAWN_DEFAULT_MEMORY_KIB;
    c->vcpus = 1;
    c->backend = STUBDM_CONSOLE_BACKEND_IOEMU;
    c->log_rotations = 10; /* libxl rotates qemu-dm-<name>.log .1 .. .10 */
    c->restore_fd = -1;
    c->timeout_ms = STUBDM_SPAWN_DEFAULT_TIMEOUT_MS;
    *out = c;
    return 0;
}

void stubdm_spawn_opts_free(stubdm_spawn_opts *c)
{
    if (!c)
        return;
    free(c->uuid);
    free(c->guest_name);
    free(c->name);
    free(c->kernel);
    free(c->ramdisk);
    free(c->cmdline);
    strv_free(c->args, c->nargs);
    for (size_t i = 0; i < STUBDM__NCONSOLES; i++)
        free(c->console[i]);
    for (size_t i = 0; i < c->ndisks; i++) {
        free(c->disks[i].target);
        free(c->disks[i].script);
    }
    free(c->disks);
    for (size_t i = 0; i < c->nnics; i++) {
        free(c->nics[i].mac);
        free(c->nics[i].bridge);
        free(c->nics[i].script);
    }
    free(c->nics);
    free(c->xsm_label);
    free(c->sim_program);
    strv_free(c->sim_args, c->sim_nargs);
    free(c);
}

int stubdm_spawn_opts_set_guest(stubdm_spawn_opts *c, uint32_t guest,
                                  const char *uuid, const char *name)
{
    int rc;

    if (!c)
        return STUBDM_EINVAL;
    if ((rc = set_str(&c->uuid, uuid)) || (rc = set_str(&c->guest_name, name)))
        return rc;
    c->guest = guest;
    c->guest_set = true;
    return 0;
}

int stubdm_spawn_opts_set_name(stubdm_spawn_opts *c, const char *name)
{
    return c ? set_str(&c->name, name) : STUBDM_EINVAL;
}

int stubdm_spawn_opts_set_kernel(stubdm_spawn_opts *c, const char *kernel,
                                   const char *ramdisk, const char *cmdline)
{
    int rc;

    if (!c)
        return STUBDM_EINVAL;
    if ((rc = set_str(&c->kernel, kernel)) ||
        (rc = set_str(&c->ramdisk, ramdisk)) ||
        (rc = set_str(&c->cmdline, cmdline)))
        return rc;
    return 0;
}

int stubdm_spawn_opts_set_memory_kib(stubdm_spawn_opts *c, uint64_t kib)
{
    if (!c)
        return STUBDM_EINVAL;
    c->memory_kib = kib; /* range checked by validate, naming the field */
    return 0;
}

int stubdm_spawn_opts_set_vcpus(stubdm_spawn_opts *c, unsigned vcpus)
{
    if (!c)
        return STUBDM_EINVAL;
    c->vcpus = vcpus;
    return 0;
}

int stubdm_spawn_opts_set_args(stubdm_spawn_opts *c,
                                 const char *const *args, size_t nargs)
{
    char **v = NULL;
    int rc;

    if (!c || (nargs && !args))
        return STUBDM_EINVAL;
    rc = strv_copy(args, nargs, &v);
    if (rc)
        return rc;
    strv_free(c->args, c->nargs);
    c->args = v;
    c->nargs = nargs;
    return 0;
}

int stubdm_spawn_opts_set_console_output(stubdm_spawn_opts *c, unsigned n,
                                           const char *output)
{
    if (!c || n >= STUBDM__NCONSOLES)
        return STUBDM_EINVAL;
    return set_str(&c->console[n], output);
}

int stubdm_spawn_opts_set_console_backend(stubdm_spawn_opts *c,
                                            stubdm_console_backend b)
{
    if (!c || (b != STUBDM_CONSOLE_BACKEND_IOEMU && b != STUBDM_CONSOLE_BACKEND_XENCONSOLED &&
               b != STUBDM_CONSOLE_BACKEND_LIBSTUBDM))
        return STUBDM_EINVAL;
    c->backend = b;
    c->backend_set = true;
    return 0;
}

int stubdm_spawn_opts_set_log_limits(stubdm_spawn_opts *c,
                                       uint64_t max_bytes, unsigned rotations)
{
    if (!c || rotations > STUBDM_CONSOLE_MAX_ROTATIONS)
        return STUBDM_EINVAL;
    c->log_cap = max_bytes;
    c->log_rotations = rotations;
    return 0;
}

int stubdm_spawn_opts_set_restore_fd(stubdm_spawn_opts *c, int fd)
{
    if (!c || fd < -1)
        return STUBDM_EINVAL;
    c->restore_fd = fd;
    return 0;
}

int stubdm_spawn_opts_add_disk(stubdm_spawn_opts *c, const char *target,
                                 const char *format, int readonly)
{
    struct disk *d;

    if (!c || !target)
        return STUBDM_EINVAL;
    if (format && strcmp(format, "raw") && strcmp(format, "qcow2"))
        return STUBDM_EINVAL;
    d = stubdm__reallocarray(c->disks, c->ndisks + 1, sizeof(*d));
    if (!d)
        return STUBDM_ENOMEM;
    c->disks = d;
    d = &c->disks[c->ndisks];
    memset(d, 0, sizeof(*d));
    d->target = stubdm__strdup(target);
    if (!d->target)
        return STUBDM_ENOMEM;
    d->qcow2 = format && !strcmp(format, "qcow2");
    d->readonly = readonly != 0;
    c->ndisks++; /* the count is checked by validate, naming the field */
    return 0;
}

int stubdm_spawn_opts_set_disk_script(stubdm_spawn_opts *c, size_t n,
                                        const char *script)
{
    if (!c || n >= c->ndisks || c->disks[n].qcow2)
        return STUBDM_EINVAL; /* a qdisk has no hotplug script */
    if (script && (!*script || strlen(script) > SCRIPT_MAX))
        return STUBDM_EINVAL;
    return set_str(&c->disks[n].script, script);
}

int stubdm_spawn_opts_add_nic(stubdm_spawn_opts *c, const char *mac,
                                const char *bridge, const char *script)
{
    struct nic *n;

    if (!c)
        return STUBDM_EINVAL;
    n = stubdm__reallocarray(c->nics, c->nnics + 1, sizeof(*n));
    if (!n)
        return STUBDM_ENOMEM;
    c->nics = n;
    n = &c->nics[c->nnics];
    memset(n, 0, sizeof(*n));
    if (set_str(&n->mac, mac) || set_str(&n->bridge, bridge) ||
        set_str(&n->script, script)) {
        free(n->mac);
        free(n->bridge);
        free(n->script);
        return STUBDM_ENOMEM;
    }
    c->nnics++;
    return 0;
}

int stubdm_spawn_opts_set_xsm_label(stubdm_spawn_opts *c,
                                      const char *label)
{
    return c ? set_str(&c->xsm_label, label) : STUBDM_EINVAL;
}

int stubdm_spawn_opts_set_stubdom_domid(stubdm_spawn_opts *c,
                                          uint32_t domid)
{
    if (!c || (domid && (!stubdm__domid_ok(domid))))
        return STUBDM_EINVAL;
    c->stubdom_req = domid;
    return 0;
}

int stubdm_spawn_opts_set_timeout(stubdm_spawn_opts *c, int timeout_ms)
{
    if (!c || timeout_ms <= 0)
        return STUBDM_EINVAL;
    c->timeout_ms = timeout_ms;
    return 0;
}

int stubdm_spawn_opts_set_qmp(stubdm_spawn_opts *c, int open,
                                int open_timeout_ms)
{
    if (!c || open_timeout_ms < 0)
        return STUBDM_EINVAL;
    c->qmp = open != 0;
    c->qmp_timeout_ms = open_timeout_ms;
    return 0;
}

int stubdm_spawn_opts_set_sim_program(stubdm_spawn_opts *c,
                                        const char *program,
                                        const char *const *args, size_t nargs)
{
    char **v = NULL;
    int rc;

    if (!c || (nargs && !args))
        return STUBDM_EINVAL;
    rc = strv_copy(args, nargs, &v);
    if (rc)
        return rc;
    rc = set_str(&c->sim_program, program);
    if (rc) {
        strv_free(v, nargs);
        return rc;
    }
    strv_free(c->sim_args, c->sim_nargs);
    c->sim_args = v;
    c->sim_nargs = nargs;
    return 0;
}

static stubdm_spawn_opts *config_dup(const stubdm_spawn_opts *c)
{
    stubdm_spawn_opts *d;
    bool ok = true;

    if (stubdm_spawn_opts_new(&d))
        return NULL;
    ok = !stubdm_spawn_opts_set_guest(d, c->guest, c->uuid, c->guest_name) &&
         !stubdm_spawn_opts_set_name(d, c->name) &&
         !stubdm_spawn_opts_set_kernel(d, c->kernel, c->ramdisk, c->cmdline) &&
         !stubdm_spawn_opts_set_args(d, (const char *const *)c->args,
                                       c->nargs) &&
         !stubdm_spawn_opts_set_xsm_label(d, c->xsm_label) &&
         !stubdm_spawn_opts_set_sim_program(
             d, c->sim_program, (const char *const *)c->sim_args,
             c->sim_nargs);
    for (size_t i = 0; ok && i < STUBDM__NCONSOLES; i++)
        ok = !set_str(&d->console[i], c->console[i]);
    for (size_t i = 0; ok && i < c->ndisks; i++)
        ok = !stubdm_spawn_opts_add_disk(d, c->disks[i].target,
                                           c->disks[i].qcow2 ? "qcow2" : "raw",
                                           c->disks[i].readonly) &&
             !set_str(&d->disks[i].script, c->disks[i].script);
    for (size_t i = 0; ok && i < c->nnics; i++)
        ok = !stubdm_spawn_opts_add_nic(d, c->nics[i].mac, c->nics[i].bridge,
                                          c->nics[i].script);
    if (!ok) {
        stubdm_spawn_opts_free(d);
        return NULL;
    }
    d->guest_set = c->guest_set;
    d->memory_kib = c->memory_kib;
    d->vcpus = c->vcpus;
    d->backend = c->backend;
    d->backend_set = c->backend_set;
    d->log_cap = c->log_cap;
    d->log_rotations = c->log_rotations;
    d->restore_fd = c->restore_fd;
    d->stubdom_req = c->stubdom_req;
    d->timeout_ms = c->timeout_ms;
    d->qmp = c->qmp;
    d->qmp_timeout_ms = c->qmp_timeout_ms;
    return d;
}

/* ---- consoles served by the library --------------------------------------- */

/* libxl's literal, replaced by the stubdomain with its restore fd
 * (Qubes init: sed to "fd:3"; docs/protocol.md). */
#define RESTORE_INCOMING_ARG "$STUBDOM_RESTORE_INCOMING_ARG"
/* Console 2's frontend "output" when this library serves it. */
#define RESTORE_OUTPUT "libstubdm:restore"

/* The backend a spawn uses: the caller's choice, else LIBSTUBDM on the
 * simulated host and IOEMU (libxl's) on Xen. */
static stubdm_console_backend eff_backend(const stubdm_spawn_opts *c,
                                          bool simulated)
{
    if (c->backend_set)
        return c->backend;
    return simulated ? STUBDM_CONSOLE_BACKEND_LIBSTUBDM : STUBDM_CONSOLE_BACKEND_IOEMU;
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
static int spawn_args(const stubdm_spawn_opts *c, const char ***out,
                      size_t *n)
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

static int validate_consoles(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                             stubdm_console_backend backend)
{
    if (backend == STUBDM_CONSOLE_BACKEND_XENCONSOLED) {
        /* xenconsoled serves console 0 only, so the contract makes no
         * other console (a Linux stubdomain would wait 25 s at boot for
         * each): anything asked of consoles >= 1 cannot be honoured. */
        for (unsigned n = STUBDM_CONSOLE_SAVE; n < STUBDM__NCONSOLES; n++)
            if (c->console[n])
                return stubdm__fail(
                    ctx, STUBDM_EINVAL, 0,
                    "spawn: console %u (%s): the xenconsoled backend serves "
                    "console 0 only; use the libstubdm (or ioemu) console "
                    "backend for save, restore and serials",
                    n,
                    stubdm__console_role(n));
    }
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
    for (unsigned n = STUBDM_CONSOLE_SERIAL0; n < STUBDM__NCONSOLES; n++)
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
static bool printable(const char *s, size_t max)
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
    return printable(s, SCRIPT_MAX - sizeof(SCRIPT_DIR)) &&
           (s[0] == '/' || !strchr(s, '/'));
}

/* The script as written to the backend (and run): always absolute. */
static void script_path(const char *s, const char *def, char *out, size_t len)
{
    if (!s)
        s = def;
    if (s[0] == '/')
        snprintf(out, len, "%s", s);
    else
        snprintf(out, len, SCRIPT_DIR "/%s", s);
}

static int check_readable(stubdm_ctx *ctx, const char *field,
                          const char *path)
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

static int validate(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                    bool simulated)
{
    stubdm_contract *k = NULL;
    stubdm_nodes *nodes = NULL;
    char vm[VM_PATH_MAX];
    int rc;

    if (!c->guest_set)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: guest: not set");
    if (c->guest == 0 || !stubdm__domid_ok(c->guest))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: guest: %u is not a guest domid", c->guest);
    if (c->stubdom_req && c->stubdom_req == c->guest)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: stubdomain domid: %u is the guest's",
                            c->stubdom_req);
    if (c->uuid && !uuid_ok(c->uuid))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: uuid: '%.40s' is not a uuid "
                            "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                            c->uuid);
    if (c->guest_name && !printable(c->guest_name, NAME_MAX_LEN))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: guest name: empty, longer than %d or not "
                            "printable ASCII", NAME_MAX_LEN);
    if (c->name && !printable(c->name, NAME_MAX_LEN))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: name: empty, longer than %d or not "
                            "printable ASCII", NAME_MAX_LEN);
    if (!c->kernel && !simulated)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: kernel: not set (required on a Xen host)");
    if (c->kernel && (rc = check_readable(ctx, "kernel", c->kernel)))
        return rc;
    if (c->ramdisk && (rc = check_readable(ctx, "ramdisk", c->ramdisk)))
        return rc;
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
    if (c->ndisks > STUBDM_SPAWN_MAX_DISKS)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "spawn: disks: %zu emulated disks, at most %d "
                            "(xvda..xvdz)",
                            c->ndisks, STUBDM_SPAWN_MAX_DISKS);
    for (size_t i = 0; i < c->ndisks; i++) {
        if (!printable(c->disks[i].target, 1024))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: disk %zu (xvd%c): target empty or "
                                "not printable ASCII",
                                i, (char)('a' + i));
        if (c->disks[i].script && !script_ok(c->disks[i].script))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: disk %zu (xvd%c): script '%.60s': "
                                "not an absolute path or a bare name in "
                                SCRIPT_DIR ", or not printable ASCII",
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
        if ((c->nics[i].bridge && !printable(c->nics[i].bridge, 64)) ||
            (c->nics[i].script && !script_ok(c->nics[i].script)))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: nic %zu: bridge or script empty or "
                                "not printable ASCII",
                                i);
    }
    if (c->xsm_label && !printable(c->xsm_label, 256))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: xsm label: empty or not printable ASCII");
    if (!c->nargs)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: args: no QEMU arguments");
    for (unsigned n = STUBDM_CONSOLE_SERIAL0 + 1; n < STUBDM__NCONSOLES; n++)
        if (c->console[n] && !c->console[n - 1])
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "spawn: console %u: serials must be set in "
                                "order, console %u is not set",
                                n, n - 1);

    if ((rc = validate_consoles(ctx, c, eff_backend(c, simulated))))
        return rc;

    /* The argv and consoles, exactly as the contract will refuse them. */
    snprintf(vm, sizeof(vm), "/vm/%s",
             c->uuid ? c->uuid : "00000000-0000-0000-0000-000000000000");
    rc = stubdm_contract_new(&k);
    if (rc)
        return stubdm__fail(ctx, rc, 0, "spawn: contract");
    rc = stubdm_contract_set_domains(k, c->guest,
                                     c->guest == 1 ? 2 : 1 /* placeholder */);
    if (!rc)
        rc = stubdm_contract_set_vm_path(k, vm);
    if (!rc) {
        const char **av = NULL;
        size_t an = 0;
        rc = spawn_args(c, &av, &an);
        if (!rc)
            rc = stubdm_contract_set_args(k, av, an);
        free(av);
    }
    if (!rc)
        rc = stubdm_contract_set_console_backend(k, eff_backend(c, simulated));
    for (unsigned n = 0; !rc && n < STUBDM__NCONSOLES; n++)
        if (c->console[n])
            rc = stubdm_contract_set_console_output(k, n, c->console[n]);
    if (!rc && c->restore_fd >= 0 && !c->console[STUBDM_CONSOLE_RESTORE])
        rc = stubdm_contract_set_console_output(k, STUBDM_CONSOLE_RESTORE,
                                                RESTORE_OUTPUT);
    if (rc) {
        stubdm_contract_free(k);
        return stubdm__fail(ctx, rc, 0, "spawn: consoles: refused (%s)",
                            stubdm_strerror(rc));
    }
    rc = stubdm_contract_layout(ctx, k, &nodes);
    stubdm_contract_free(k);
    stubdm_nodes_free(nodes);
    if (rc) {
        char msg[STUBDM_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
        return stubdm__fail(ctx, rc, ctx->os_errno, "spawn: args: %s", msg);
    }
    return 0;
}

/* ---- hosts --------------------------------------------------------------- */

int stubdm_ctx_set_host(stubdm_ctx *ctx, stubdm_host host)
{
    if (!ctx)
        return STUBDM_EINVAL;
    if (host != STUBDM_HOST_AUTO && host != STUBDM_HOST_XEN &&
        host != STUBDM_HOST_SIM)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "unknown host kind %d",
                            (int)host);
    ctx->host_kind = (int)host;
    return 0;
}

stubdm_host stubdm_ctx_host(stubdm_ctx *ctx)
{
    if (!ctx)
        return STUBDM_HOST_SIM;
    if (ctx->host_kind == STUBDM_HOST_AUTO)
        return stubdm__xc_present(ctx) ? STUBDM_HOST_XEN : STUBDM_HOST_SIM;
    return (stubdm_host)ctx->host_kind;
}

const struct stubdm__host_ops *stubdm__host(stubdm_ctx *ctx)
{
    return stubdm_ctx_host(ctx) == STUBDM_HOST_XEN ? &stubdm__host_xen
                                                   : &stubdm__host_sim;
}

int stubdm_spawn_opts_validate(stubdm_ctx *ctx, const stubdm_spawn_opts *c)
{
    if (!ctx)
        return STUBDM_EINVAL;
    if (!c)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "spawn: no configuration");
    return validate(ctx, c, stubdm__host(ctx)->simulated);
}

/* ---- small xenstore helpers ----------------------------------------------- */

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

/* Remove path if it exists with no children and an empty value. */
static int txn_prune(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                     const char *path)
{
    unsigned n = 0, len = 0;
    char **kids, *v;

    stubdm__xs_count(ctx, 2);
    kids = xs_directory(xsh, t, path, &n);
    if (!kids)
        return errno == ENOENT ? 0
                               : stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno),
                                              errno, "listing %s: %s", path,
                                              strerror(errno));
    free(kids);
    if (n)
        return 0;
    v = xs_read(xsh, t, path, &len);
    free(v);
    if (!v || len)
        return 0;
    return txn_rm(ctx, xsh, t, path);
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

/* xvda = 51712 (major 202, 16 minors per disk); beyond xvdp, Linux's
 * extended scheme. */
static unsigned vbd_devid(size_t idx)
{
    return idx < 16 ? (202u << 8) | ((unsigned)idx << 4)
                    : (1u << 28) | ((unsigned)idx << 8);
}

/* ---- the stubdomain handle and the spawn op ------------------------------ */

struct spawn_op;

struct spawn_con {
    stubdm_stubdom *s;
    unsigned n;
};

struct stubdm_stubdom {
    stubdm_ctx *ctx;
    stubdm_spawn_opts *cfg;
    const struct stubdm__host_ops *host;
    stubdm_spawn_step step;
    uint32_t domid, guest;
    char vm_path[VM_PATH_MAX];  /* the guest's */
    char stub_vm[VM_PATH_MAX];  /* the stubdomain's /vm/<uuid> */
    char guest_name[NAME_MAX_LEN + 1];
    char stub_name[NAME_MAX_LEN + 8];
    struct stubdm__build build;
    bool domain_made;
    stubdm_qmp *qmp;
    struct spawn_op *op;
    stubdm_spawn_progress_fn *progress;
    void *progress_user;
    bool in_progress;   /* the progress callback runs */
    bool free_pending;  /* stubdm_stubdom_free called from progress */
    /* consoles served by the library (backend LIBSTUBDM) */
    stubdm_console_backend backend;
    stubdm_console *cons[STUBDM__NCONSOLES];
    struct spawn_con con_user[STUBDM__NCONSOLES];
    /* a save or restore of the device model's state (dm_state.c) */
    stubdm_op *dm_op;
    bool paused;
};

struct spawn_op {
    stubdm_op op;
    stubdm_stubdom *s;
    struct stubdm__timer tick;
    stubdm_op *hotplug;
    stubdm_op *wait;
    int64_t started_ms;
    bool probing;       /* tick: the WAIT step's connection probe */
};

const char *stubdm_spawn_step_name(stubdm_spawn_step step)
{
    switch (step) {
    case STUBDM_SPAWN_STEP_CREATE:
        return "creating the domain";
    case STUBDM_SPAWN_STEP_CONTRACT:
        return "writing the xenstore contract";
    case STUBDM_SPAWN_STEP_DEVICES:
        return "attaching devices";
    case STUBDM_SPAWN_STEP_HOTPLUG:
        return "running hotplug scripts";
    case STUBDM_SPAWN_STEP_UNPAUSE:
        return "unpausing";
    case STUBDM_SPAWN_STEP_WAIT:
        return "waiting for running";
    case STUBDM_SPAWN_STEP_QMP:
        return "opening QMP";
    case STUBDM_SPAWN_STEP_RUNNING:
        return "running";
    case STUBDM_SPAWN_STEP_FAILED:
        return "failed";
    case STUBDM_SPAWN_STEP_DESTROYED:
        return "destroyed";
    }
    return "?";
}

/* ---- teardown ------------------------------------------------------------ */

struct rm_args {
    uint32_t stub, guest;
    bool have_guest;
    const char *stub_vm;      /* may be NULL */
    const char *guest_vm;     /* placeholder guest's vm to remove, or NULL */
    bool placeholder;
};

static int rm_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                  void *arg)
{
    const struct rm_args *a = arg;
    char p[128];
    int rc = 0;

    snprintf(p, sizeof(p), "/local/domain/%u/backend/vbd/%u", TOOLSTACK_DOMID,
             a->stub);
    rc = txn_rm(ctx, xsh, t, p);
    snprintf(p, sizeof(p), "/local/domain/%u/backend/vif/%u", TOOLSTACK_DOMID,
             a->stub);
    if (!rc)
        rc = txn_rm(ctx, xsh, t, p);
    /* The consoles' backends, whole, as the vbd and vif ones: the
     * contract's removal takes them when the guest is known, but when the
     * stubdomain went without us (another toolstack destroyed it, and
     * /local/domain/<stub> with it) only this finds them.  The domain is
     * gone, so nothing else can be in there. */
    snprintf(p, sizeof(p), "/local/domain/%u/backend/console/%u",
             TOOLSTACK_DOMID, a->stub);
    if (!rc)
        rc = txn_rm(ctx, xsh, t, p);
    if (!rc && a->stub_vm)
        rc = txn_rm(ctx, xsh, t, a->stub_vm);
    snprintf(p, sizeof(p), "/local/domain/%u", a->stub);
    if (!rc)
        rc = txn_rm(ctx, xsh, t, p);
    if (!rc && a->placeholder) {
        snprintf(p, sizeof(p), "/local/domain/%u", a->guest);
        rc = txn_rm(ctx, xsh, t, p);
        if (!rc && a->guest_vm)
            rc = txn_rm(ctx, xsh, t, a->guest_vm);
    }
    /* Containers only spawns fill, when nothing else is left in them (a
     * real host always has content there, so this prunes only what a
     * spawn on an empty store created). */
    if (!rc) {
        static const char *const fixed[] = {
            "/local/domain/0/backend/vbd", "/local/domain/0/backend/vif",
            "/local/domain/0/backend/console", "/local/domain/0/backend",
            "/local/domain/0", NULL,
        };
        for (size_t i = 0; !rc && fixed[i]; i++)
            rc = txn_prune(ctx, xsh, t, fixed[i]);
    }
    if (!rc && a->have_guest) {
        snprintf(p, sizeof(p), "/libxl/%u", a->guest);
        rc = txn_prune(ctx, xsh, t, p);
        if (!rc)
            rc = txn_prune(ctx, xsh, t, "/libxl");
    }
    if (!rc)
        rc = txn_prune(ctx, xsh, t, "/vm");
    return rc;
}

/* The teardown's remove/offline scripts; those cfg names (the spawn's own
 * configuration, NULL for a domain known by domid only) are trusted as
 * they are, any other only in the ctx's hotplug directory. */
static int remove_scripts(stubdm_ctx *ctx, uint32_t S,
                          const stubdm_spawn_opts *cfg)
{
    size_t max = cfg ? cfg->ndisks + cfg->nnics : 0, n = 0;
    char (*paths)[SCRIPT_MAX] = NULL;
    const char **own = NULL;
    int rc;

    if (max) {
        paths = stubdm__calloc(max, sizeof(*paths));
        own = stubdm__calloc(max, sizeof(*own));
        if (!paths || !own) {
            free(paths);
            free(own);
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug");
        }
        for (size_t i = 0; i < cfg->ndisks; i++) {
            if (cfg->disks[i].qcow2)
                continue;
            script_path(cfg->disks[i].script, DEFAULT_BLOCK_SCRIPT, paths[n],
                        sizeof(paths[n]));
            own[n] = paths[n];
            n++;
        }
        for (size_t i = 0; i < cfg->nnics; i++) {
            script_path(cfg->nics[i].script, DEFAULT_VIF_SCRIPT, paths[n],
                        sizeof(paths[n]));
            own[n] = paths[n];
            n++;
        }
    }
    rc = stubdm__hotplug_remove_all(ctx, S, own, n);
    free(paths);
    free(own);
    return rc;
}

/* Record the first failure of a teardown, keep going. */
static void keep_first(stubdm_ctx *ctx, int rc, const char *what, int *first,
                       char *msg, size_t len)
{
    if (!rc)
        return;
    LOG_WARN(ctx, MOD, "teardown: %s: %s", what, ctx->errmsg);
    if (*first)
        return;
    *first = rc;
    snprintf(msg, len, "%s: %.440s", what, ctx->errmsg);
}

/*
 * Destroy stubdomain S and remove everything a spawn made.  guest_vm is
 * the guest's vm path when known (else the contract reads it).
 */
/*
 * Whether guest G is the simulated host's placeholder that stubdomain S's
 * spawn made, so the teardown removes /local/domain/<G> (and, with
 * *made_vm, its vm dir) whole.  The mark, "<stub domid> <0|1>", counts
 * only when dom0 owns it: a guest writing its own would otherwise have
 * dom0 remove its whole tree and a vm path of its choosing.
 */
static bool placeholder_of(stubdm_ctx *ctx, uint32_t G, uint32_t S,
                           bool *made_vm)
{
    char p[96], *mark = NULL, *sp;
    uint32_t owner = 0, vm = 0;
    bool ok;

    snprintf(p, sizeof(p), "/local/domain/%u/" PLACEHOLDER_KEY, G);
    if (stubdm__xs_read_owned(ctx, p, 32, TOOLSTACK_DOMID, &mark, NULL)) {
        stubdm__clear_error(ctx);
        return false;
    }
    sp = strchr(mark, ' ');
    ok = sp != NULL;
    if (ok) {
        *sp = '\0';
        ok = stubdm__num_parse_domid(mark, &owner) == 0 &&
             stubdm__num_parse_u32(sp + 1, 1, &vm) == 0 && owner == S;
    }
    free(mark);
    *made_vm = vm == 1;
    return ok;
}

static int teardown_domain(stubdm_ctx *ctx,
                           const struct stubdm__host_ops *host, uint32_t S,
                           bool have_guest, uint32_t G, const char *guest_vm,
                           const char *stub_vm, const stubdm_spawn_opts *cfg)
{
    char msg[STUBDM_ERRMSG_MAX] = "";
    int first = 0, rc;
    struct rm_args a = { S, G, have_guest, stub_vm, NULL, false };
    bool made_vm = false;

    if (have_guest && placeholder_of(ctx, G, S, &made_vm)) {
        a.placeholder = true;
        a.guest_vm = made_vm ? guest_vm : NULL;
    }

    /* A domain that could not be destroyed keeps its nodes: they are what
     * makes it a stubdomain to a later destroy by domid (its target, the
     * guest's device-model-domid), which can then finish the job. */
    rc = host->destroy(ctx, S);
    keep_first(ctx, rc, "destroying the domain", &first, msg, sizeof(msg));
    if (first)
        return stubdm__fail(ctx, first, 0, "%s", msg);

    if (have_guest) {
        stubdm_contract *k = NULL;
        rc = stubdm_contract_new(&k);
        if (!rc)
            rc = stubdm_contract_set_domains(k, G, S);
        if (!rc && guest_vm)
            rc = stubdm_contract_set_vm_path(k, guest_vm);
        if (!rc)
            rc = stubdm_contract_remove(ctx, k);
        else
            stubdm__fail(ctx, rc, 0, "contract");
        stubdm_contract_free(k);
        keep_first(ctx, rc, "removing the contract", &first, msg, sizeof(msg));
        /* The stubdomain's nodes lead a later destroy by domid to the
         * guest's contract: they stay while it does. */
        if (rc)
            return stubdm__fail(ctx, first, 0, "%s", msg);
    }
    /* The scripts read the backend nodes: before those go.  After the
     * domain is gone, as libxl runs them (nothing uses the device then). */
    if (!ctx->no_hotplug) {
        rc = remove_scripts(ctx, S, cfg);
        keep_first(ctx, rc, "hotplug scripts", &first, msg, sizeof(msg));
    }
    rc = stubdm__xs_transaction(ctx, "removing the stubdomain's nodes", rm_txn,
                                &a, NULL);
    keep_first(ctx, rc, "removing the stubdomain's nodes", &first, msg,
               sizeof(msg));
    if (first)
        return stubdm__fail(ctx, first, 0, "%s", msg);
    stubdm__clear_error(ctx);
    return 0;
}

/* Stop serving every console (and end a save or restore using them).
 * release: the stubdomain runs on (the handle is freed, not destroyed):
 * hand the consoles over instead of closing them, so the stubdomain's
 * ttys survive and another process can serve them
 * (stubdm__console_release). */
static void close_consoles(stubdm_stubdom *s, bool release)
{
    if (s->dm_op) {
        stubdm_op *op = s->dm_op;
        s->dm_op = NULL;
        stubdm__dm_state_cancel(op, "the stubdomain was torn down");
    }
    for (unsigned n = 0; n < STUBDM__NCONSOLES; n++) {
        if (s->cons[n]) {
            if (release)
                stubdm__console_release(s->cons[n]);
            else
                stubdm_console_free(s->cons[n]);
            s->cons[n] = NULL;
        }
    }
}

static int teardown(stubdm_stubdom *s)
{
    int rc = 0;

    close_consoles(s, false);
    if (s->qmp) {
        stubdm_qmp_free(s->qmp);
        s->qmp = NULL;
    }
    if (s->domain_made) {
        rc = teardown_domain(s->ctx, s->host, s->domid, true, s->guest,
                             s->vm_path[0] ? s->vm_path : NULL,
                             s->stub_vm[0] ? s->stub_vm : NULL, s->cfg);
        s->domain_made = false;
        LOG_DEBUG(s->ctx, MOD, "stubdomain %u torn down%s", s->domid,
                  rc ? " (with errors)" : "");
    }
    return rc;
}

/* ---- steps --------------------------------------------------------------- */

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
         * killed before the contract leaves a domain stubdm_stubdom_destroy_by_domid knows
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

static int step_create(stubdm_stubdom *s)
{
    stubdm_ctx *ctx = s->ctx;
    const stubdm_spawn_opts *c = s->cfg;
    struct stubdm__build *b = &s->build;
    struct basics_args ba = { s, false, false };
    struct xs_handle *xsh = NULL;
    char p[96], *v = NULL, uuid[40];
    uint8_t raw[16];
    int rc;

    /* The guest's vm path and name. */
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
            printable(v, NAME_MAX_LEN))
            snprintf(s->guest_name, sizeof(s->guest_name), "%s", v);
        else
            snprintf(s->guest_name, sizeof(s->guest_name), "guest%u",
                     s->guest);
        free(v);
        v = NULL;
        stubdm__clear_error(ctx);
    }
    if (c->name)
        snprintf(s->stub_name, sizeof(s->stub_name), "%s", c->name);
    else
        snprintf(s->stub_name, sizeof(s->stub_name), "%s-dm", s->guest_name);

    /* On the simulated host, stand in a guest if there is none. */
    if (s->host->simulated) {
        snprintf(p, sizeof(p), "/local/domain/%u/vm", s->guest);
        rc = stubdm__xs_read(ctx, 0, p, VM_PATH_MAX - 1, &v, NULL);
        free(v);
        v = NULL;
        if (rc == STUBDM_ENOENT) {
            ba.placeholder = true;
            if (!s->vm_path[0]) {
                random_uuid(raw, uuid, sizeof(uuid));
                snprintf(s->vm_path, sizeof(s->vm_path), "/vm/%s", uuid);
            }
            rc = stubdm__xs_read(ctx, 0, s->vm_path, 4096, &v, NULL);
            free(v);
            v = NULL;
            ba.placeholder_vm = rc == STUBDM_ENOENT;
            if (rc && rc != STUBDM_ENOENT)
                return rc;
        } else if (rc) {
            return rc;
        }
        stubdm__clear_error(ctx);
    }

    /* The domain. */
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
    rc = s->host->create(ctx, b);
    if (rc)
        return rc;
    s->domid = b->domid;
    s->domain_made = true; /* from here on, teardown destroys it */
    if (s->domid == s->guest)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "the host gave the stubdomain the guest's "
                            "domid %u",
                            s->domid);

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

static int step_contract(stubdm_stubdom *s)
{
    stubdm_contract *k = NULL;
    const stubdm_spawn_opts *c = s->cfg;
    int rc = stubdm_contract_new(&k);

    if (!rc)
        rc = stubdm_contract_set_domains(k, s->guest, s->domid);
    if (!rc)
        rc = stubdm_contract_set_vm_path(k, s->vm_path);
    if (!rc) {
        const char **av = NULL;
        size_t an = 0;
        rc = spawn_args(c, &av, &an);
        if (!rc)
            rc = stubdm_contract_set_args(k, av, an);
        free(av);
    }
    if (!rc)
        rc = stubdm_contract_set_console_backend(k, s->backend);
    if (!rc)
        rc = stubdm_contract_set_toolstack_domid(k, TOOLSTACK_DOMID);
    for (unsigned n = 0; !rc && n < STUBDM__NCONSOLES; n++)
        if (c->console[n])
            rc = stubdm_contract_set_console_output(k, n, c->console[n]);
    if (!rc && c->restore_fd >= 0 && !c->console[STUBDM_CONSOLE_RESTORE])
        rc = stubdm_contract_set_console_output(k, STUBDM_CONSOLE_RESTORE,
                                                RESTORE_OUTPUT);
    if (!rc && !s->host->simulated)
        rc = stubdm_contract_set_console0_ring(k, s->build.console_mfn,
                                               s->build.console_port);
    else if (!rc && s->backend == STUBDM_CONSOLE_BACKEND_LIBSTUBDM)
        /* The simulated builder makes no ring: these placeholders are
         * console 0's "published" signal (docs/consoles.md); the page and
         * socket are the stubdomain's files. */
        rc = stubdm_contract_set_console0_ring(k, 1, 1);
    if (rc) {
        stubdm_contract_free(k);
        return stubdm__fail(s->ctx, rc, 0, "configuring the contract: %s",
                            stubdm_strerror(rc));
    }
    rc = stubdm_contract_write(s->ctx, k);
    stubdm_contract_free(k);
    return rc;
}

static int devices_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                       void *arg)
{
    stubdm_stubdom *s = arg;
    const stubdm_spawn_opts *c = s->cfg;
    struct xs_permissions fe[2] = { { s->domid, XS_PERM_NONE },
                                    { TOOLSTACK_DOMID, XS_PERM_READ } };
    struct xs_permissions be[2] = { { TOOLSTACK_DOMID, XS_PERM_NONE },
                                    { s->domid, XS_PERM_READ } };
    char f[128], bk[128];
    int rc = 0;

    for (size_t i = 0; i < c->ndisks && !rc; i++) {
        const struct disk *d = &c->disks[i];
        unsigned id = vbd_devid(i);
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
            script_path(d->script, DEFAULT_BLOCK_SCRIPT, sp, sizeof(sp));
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
        script_path(n->script, DEFAULT_VIF_SCRIPT, sp, sizeof(sp));
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
    const stubdm_spawn_opts *c = s->cfg;
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

static int step_devices(stubdm_stubdom *s)
{
    int rc = 0;

    if (s->cfg->ndisks || s->cfg->nnics)
        rc = stubdm__xs_transaction(s->ctx, "attaching disks and nics",
                                    devices_txn, s, NULL);
    if (!rc && s->backend == STUBDM_CONSOLE_BACKEND_LIBSTUBDM)
        rc = serve_consoles(s);
    return rc;
}

/* ---- the op -------------------------------------------------------------- */

/* What libxenstore's requests fail with once xenstored closed the
 * connection (its reader thread then closes the socket: EBADF). */
static bool xs_conn_errno(int e)
{
    return e == EBADF || e == ECONNRESET || e == EPIPE || e == ENOTCONN ||
           e == ESHUTDOWN;
}

static void spawn_fail(struct spawn_op *so, int rc, stubdm_spawn_step step,
                       const char *msg)
{
    stubdm_ctx *ctx = so->op.ctx;

    /* Say so when the cause is the lost connection itself: "Bad file
     * descriptor" alone names no culprit, and the teardown on the same
     * connection fails too (a destroy on a new one cleans up). */
    if (rc == STUBDM_EXENSTORE && xs_conn_errno(ctx->os_errno))
        stubdm__op_complete(&so->op, rc,
                            "spawn: %s: the connection to xenstored was "
                            "lost (%s)",
                            stubdm_spawn_step_name(step), msg);
    else
        stubdm__op_complete(&so->op, rc, "spawn: %s: %s",
                            stubdm_spawn_step_name(step), msg);
}

/*
 * While the spawn waits for running no request is in flight, and
 * libxenstore's reader thread ends without a word when xenstored closes
 * the connection: the watch would then never fire and the spawn would
 * end only at its deadline, as "not running".  A cheap read every
 * WAIT_PROBE_MS (from the first one on, so a quick spawn sends none)
 * finds the lost connection.
 */
#define WAIT_PROBE_MS 1000
static void wait_probe(struct spawn_op *so)
{
    stubdm_ctx *ctx = so->op.ctx;
    char p[48], *v = NULL;
    int rc;

    snprintf(p, sizeof(p), "/local/domain/%u/domid", so->s->domid);
    rc = stubdm__xs_read(ctx, 0, p, 16, &v, NULL);
    free(v);
    if (rc == STUBDM_EXENSTORE && xs_conn_errno(ctx->os_errno)) {
        spawn_fail(so, rc, STUBDM_SPAWN_STEP_WAIT, ctx->errmsg);
        return;
    }
    stubdm__clear_error(ctx);
    rc = stubdm__timer_arm(ctx, &so->tick, stubdm_now_ms() + WAIT_PROBE_MS);
    if (rc)
        spawn_fail(so, rc, STUBDM_SPAWN_STEP_WAIT, ctx->errmsg);
}

/* Report progress; false if the spawn must not continue (cancelled,
 * freed, or the ctx is being freed). */
static bool report(struct spawn_op *so, stubdm_spawn_step step)
{
    stubdm_stubdom *s = so->s;
    stubdm_ctx *ctx = so->op.ctx;
    stubdm_op *op = &so->op;
    bool alive;

    s->step = step;
    LOG_DEBUG(ctx, MOD, "guest %u: %s (%.3f s)", s->guest,
              stubdm_spawn_step_name(step),
              (double)(stubdm_now_ms() - so->started_ms) / 1000.0);
    if (!s->progress)
        return true;
    s->in_progress = true;
    op->in_callback = true; /* so stubdm_op_free only marks the handle */
    stubdm__callback_enter(ctx);
    s->progress(s, step, s->progress_user);
    alive = stubdm__callback_leave(ctx);
    op->in_callback = false;
    s->in_progress = false;
    if (!alive)
        return false;
    if (op->handle_freed) {
        op->handle_freed = false;
        stubdm_op_free(op); /* pending: stop (teardown) and release */
        if (s->free_pending)
            stubdm_stubdom_free(s);
        return false;
    }
    if (s->free_pending) {
        stubdm_stubdom_free(s); /* cancels the op, tears down */
        return false;
    }
    return op->state == STUBDM__OP_PENDING;
}

static void on_qmp_open(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;

    (void)op;
    if (so->op.state != STUBDM__OP_PENDING)
        return;
    if (rc) {
        spawn_fail(so, rc, STUBDM_SPAWN_STEP_QMP, stubdm_op_errmsg(op));
        return;
    }
    so->s->step = STUBDM_SPAWN_STEP_RUNNING;
    stubdm__op_complete(&so->op, 0, NULL);
}

static void start_qmp(struct spawn_op *so)
{
    stubdm_stubdom *s = so->s;
    stubdm_qmp_opts *o = NULL;
    int rc = stubdm_qmp_opts_new(&o);

    if (!rc)
        rc = stubdm_qmp_opts_set_transport(
            o, s->host->simulated ? STUBDM_QMP_TRANSPORT_SIMULATED
                                  : STUBDM_QMP_TRANSPORT_VCHAN);
    if (!rc && s->cfg->qmp_timeout_ms)
        rc = stubdm_qmp_opts_set_open_timeout(o, s->cfg->qmp_timeout_ms);
    if (!rc)
        rc = stubdm_qmp_open(so->op.ctx, s->domid, s->guest, o, on_qmp_open,
                             so, &s->qmp, NULL);
    stubdm_qmp_opts_free(o);
    if (rc)
        spawn_fail(so, rc, STUBDM_SPAWN_STEP_QMP, so->op.ctx->errmsg);
}

static void on_wait_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;

    if (so->probing) {
        so->probing = false;
        stubdm__timer_stop(so->op.ctx, &so->tick);
    }
    if (so->wait == op) {
        so->wait = NULL;
        stubdm_op_free(op);
    }
    if (so->op.state != STUBDM__OP_PENDING)
        return;
    if (rc) {
        spawn_fail(so, rc, STUBDM_SPAWN_STEP_WAIT, stubdm_op_errmsg(op));
        return;
    }
    if (!so->s->cfg->qmp) {
        so->s->step = STUBDM_SPAWN_STEP_RUNNING;
        stubdm__op_complete(&so->op, 0, NULL);
        return;
    }
    if (!report(so, STUBDM_SPAWN_STEP_QMP))
        return;
    start_qmp(so);
}

static void on_hotplug_done(stubdm_op *op, int rc, void *user)
{
    struct spawn_op *so = user;

    if (so->hotplug == op) {
        so->hotplug = NULL;
        if (so->op.state == STUBDM__OP_PENDING && rc)
            spawn_fail(so, rc, STUBDM_SPAWN_STEP_HOTPLUG, stubdm_op_errmsg(op));
        stubdm_op_free(op);
    }
    if (so->op.state != STUBDM__OP_PENDING || rc)
        return;
    so->s->step = STUBDM_SPAWN_STEP_UNPAUSE;
    rc = stubdm__timer_arm(so->op.ctx, &so->tick, stubdm_now_ms());
    if (rc)
        spawn_fail(so, rc, so->s->step, so->op.ctx->errmsg);
}

/* Start the hotplug scripts of every raw disk and nic, unless the ctx
 * leaves them to the caller; so->hotplug stays NULL when there are none. */
static int step_hotplug(struct spawn_op *so)
{
    stubdm_stubdom *s = so->s;
    const stubdm_spawn_opts *c = s->cfg;
    struct stubdm__hotplug_dev *devs;
    char (*paths)[SCRIPT_MAX];
    size_t n = 0;
    int rc;

    if (so->op.ctx->no_hotplug || (!c->ndisks && !c->nnics))
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
        script_path(c->disks[i].script, DEFAULT_BLOCK_SCRIPT, paths[n],
                    sizeof(paths[n]));
        devs[n] = (struct stubdm__hotplug_dev){ "vbd", vbd_devid(i),
                                                paths[n] };
        n++;
    }
    for (size_t i = 0; i < c->nnics; i++) {
        script_path(c->nics[i].script, DEFAULT_VIF_SCRIPT, paths[n],
                    sizeof(paths[n]));
        devs[n] = (struct stubdm__hotplug_dev){ "vif", (unsigned)i,
                                                paths[n] };
        n++;
    }
    rc = n ? stubdm__hotplug_add(s->ctx, s->domid, devs, n, c->timeout_ms,
                                 on_hotplug_done, so, &so->hotplug)
           : 0;
    free(devs);
    free(paths);
    return rc;
}

static void on_tick(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct spawn_op *so = STUBDM_CONTAINER_OF(t, struct spawn_op, tick);
    stubdm_stubdom *s = so->s;
    stubdm_spawn_step step = s->step;
    int rc;

    if (so->probing) {
        wait_probe(so);
        return;
    }
    if (!report(so, step))
        return;
    switch (step) {
    case STUBDM_SPAWN_STEP_CREATE:
        rc = step_create(s);
        break;
    case STUBDM_SPAWN_STEP_CONTRACT:
        rc = step_contract(s);
        break;
    case STUBDM_SPAWN_STEP_DEVICES:
        rc = step_devices(s);
        break;
    case STUBDM_SPAWN_STEP_HOTPLUG:
        rc = step_hotplug(so);
        if (!rc && so->hotplug)
            return; /* on_hotplug_done continues */
        break;
    case STUBDM_SPAWN_STEP_UNPAUSE:
        rc = s->host->unpause(ctx, &s->build);
        break;
    case STUBDM_SPAWN_STEP_WAIT:
        rc = stubdm_dm_wait_running(ctx, s->domid, s->guest, s->cfg->timeout_ms,
                                 on_wait_done, so, &so->wait);
        break;
    default:
        rc = STUBDM_ESTATE;
        stubdm__fail(ctx, rc, 0, "internal: unexpected step");
        break;
    }
    if (rc) {
        spawn_fail(so, rc, step, ctx->errmsg);
        return;
    }
    if (step == STUBDM_SPAWN_STEP_WAIT) {
        /* on_wait_done continues (maybe already from inside the call) */
        if (so->op.state == STUBDM__OP_PENDING && so->wait) {
            so->probing = true;
            rc = stubdm__timer_arm(ctx, &so->tick,
                                   stubdm_now_ms() + WAIT_PROBE_MS);
            if (rc)
                spawn_fail(so, rc, step, ctx->errmsg);
        }
        return;
    }
    s->step = (stubdm_spawn_step)(step + 1);
    rc = stubdm__timer_arm(ctx, &so->tick, stubdm_now_ms());
    if (rc)
        spawn_fail(so, rc, s->step, ctx->errmsg);
}

static void spawn_stop(stubdm_op *op)
{
    struct spawn_op *so = (struct spawn_op *)op;
    stubdm_stubdom *s = so->s;

    stubdm__timer_stop(op->ctx, &so->tick);
    /* Its scripts are killed before the teardown runs their removes. */
    if (so->hotplug) {
        stubdm_op_free(so->hotplug);
        so->hotplug = NULL;
    }
    if (so->wait) {
        stubdm_op_free(so->wait);
        so->wait = NULL;
    }
    if (!s)
        return;
    /* Pending here means freed while pending: that is a cancellation. */
    if (op->state == STUBDM__OP_PENDING || op->rc) {
        int rc = teardown(s);
        s->step = STUBDM_SPAWN_STEP_FAILED;
        if (rc && op->state != STUBDM__OP_PENDING) {
            size_t len = strlen(op->errmsg);
            snprintf(op->errmsg + len, sizeof(op->errmsg) - len,
                     "; cleaning up failed too: %s", op->ctx->errmsg);
        }
    }
    s->op = NULL;
    so->s = NULL;
}

static const struct stubdm__op_type spawn_type = {
    .name = "spawn",
    .stop = spawn_stop,
    .destroy = NULL,
};

int stubdm_spawn(stubdm_ctx *ctx, const stubdm_spawn_opts *cfg,
                 stubdm_spawn_progress_fn *progress, stubdm_done_fn *done,
                 void *user, stubdm_stubdom **s_out, stubdm_op **op_out)
{
    const struct stubdm__host_ops *host;
    stubdm_stubdom *s;
    struct spawn_op *so;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (s_out)
        *s_out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!cfg || !s_out)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "spawn: configuration and handle are required");
    host = stubdm__host(ctx);
    rc = validate(ctx, cfg, host->simulated);
    if (rc)
        return rc;
    s = stubdm__calloc(1, sizeof(*s));
    if (!s)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "spawn");
    s->cfg = config_dup(cfg);
    if (!s->cfg) {
        free(s);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "spawn: config");
    }
    s->ctx = ctx;
    s->host = host;
    s->guest = cfg->guest;
    s->backend = eff_backend(cfg, host->simulated);
    s->step = STUBDM_SPAWN_STEP_CREATE;
    s->progress = progress;
    s->progress_user = user;
    so = (struct spawn_op *)stubdm__op_new(ctx, &spawn_type, sizeof(*so), done,
                                           user);
    if (!so) {
        stubdm_spawn_opts_free(s->cfg);
        free(s);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "spawn op");
    }
    so->s = s;
    so->started_ms = stubdm_now_ms();
    s->op = so;
    stubdm__timer_init(&so->tick, on_tick);
    /* Nothing is done inside this call: the first step runs from the next
     * dispatch, like every callback. */
    rc = stubdm__timer_arm(ctx, &so->tick, so->started_ms);
    if (rc) {
        so->s = NULL;
        stubdm__op_abandon(&so->op);
        stubdm_spawn_opts_free(s->cfg);
        free(s);
        return rc;
    }
    LOG_DEBUG(ctx, MOD, "guest %u: spawning on the %s host", s->guest,
              host->name);
    stubdm__op_started(&so->op, op_out);
    *s_out = s;
    return 0;
}

int stubdm_spawn_sync(stubdm_ctx *ctx, const stubdm_spawn_opts *cfg,
                      stubdm_spawn_progress_fn *progress, void *user,
                      stubdm_stubdom **s_out)
{
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    int rc;

    if (s_out)
        *s_out = NULL;
    if (!ctx || !s_out)
        return STUBDM_EINVAL;
    rc = stubdm__sync_check(ctx, "spawn_sync");
    if (rc)
        return rc;
    rc = stubdm_spawn(ctx, cfg, progress, NULL, user, &s, &op);
    if (rc)
        return rc;
    rc = stubdm__op_wait(op);
    if (rc) {
        /* Freeing a pending op cancels it and cleans up. */
        stubdm_op_free(op);
        stubdm_stubdom_free(s);
        return rc;
    }
    stubdm_op_free(op);
    *s_out = s;
    return 0;
}

uint32_t stubdm_stubdom_domid(const stubdm_stubdom *s)
{
    return s ? s->domid : 0;
}

uint32_t stubdm_stubdom_guest(const stubdm_stubdom *s)
{
    return s ? s->guest : 0;
}

stubdm_spawn_step stubdm_stubdom_step(const stubdm_stubdom *s)
{
    return s ? s->step : STUBDM_SPAWN_STEP_FAILED;
}

stubdm_qmp *stubdm_stubdom_qmp(const stubdm_stubdom *s)
{
    return s ? s->qmp : NULL;
}

int stubdm_stubdom_destroy(stubdm_stubdom *s)
{
    int rc;

    if (!s)
        return STUBDM_EINVAL;
    if (s->op) {
        /* Completing runs the stop hook: teardown, detach. */
        stubdm__op_complete(&s->op->op, STUBDM_ECANCELED,
                            "spawn: %s: cancelled: the stubdomain was "
                            "destroyed",
                            stubdm_spawn_step_name(s->step));
        s->step = STUBDM_SPAWN_STEP_DESTROYED;
        return 0;
    }
    rc = teardown(s);
    s->step = STUBDM_SPAWN_STEP_DESTROYED;
    return rc;
}

void stubdm_stubdom_free(stubdm_stubdom *s)
{
    if (!s)
        return;
    if (s->in_progress) {
        s->free_pending = true;
        return;
    }
    if (s->op)
        stubdm__op_complete(&s->op->op, STUBDM_ECANCELED,
                            "spawn: %s: cancelled: the handle was freed",
                            stubdm_spawn_step_name(s->step));
    if (s->op) { /* complete did not run stop (not pending): detach */
        s->op->s = NULL;
        s->op = NULL;
    }
    close_consoles(s, s->domain_made);
    if (s->qmp)
        stubdm_qmp_free(s->qmp);
    stubdm_spawn_opts_free(s->cfg);
    free(s);
}

stubdm_console *stubdm_stubdom_console(const stubdm_stubdom *s, unsigned n)
{
    return s && n < STUBDM__NCONSOLES ? s->cons[n] : NULL;
}

stubdm_console_backend stubdm_stubdom_console_backend(const stubdm_stubdom *s)
{
    return s ? s->backend : STUBDM_CONSOLE_BACKEND_IOEMU;
}

static int pause_common(stubdm_stubdom *s, bool pause)
{
    int rc;

    if (!s)
        return STUBDM_EINVAL;
    if (s->op || !s->domain_made)
        return stubdm__fail(s->ctx, STUBDM_ESTATE, 0,
                            "stubdomain %u is %s, not running", s->domid,
                            stubdm_spawn_step_name(s->step));
    if (s->paused == pause)
        return 0;
    rc = s->host->pause(s->ctx, s->domid, pause);
    if (rc)
        return rc;
    s->paused = pause;
    LOG_DEBUG(s->ctx, MOD, "stubdomain %u %s", s->domid,
              pause ? "paused" : "unpaused");
    return 0;
}

int stubdm_stubdom_pause(stubdm_stubdom *s)
{
    return pause_common(s, true);
}

int stubdm_stubdom_unpause(stubdm_stubdom *s)
{
    return pause_common(s, false);
}

stubdm_op **stubdm__stubdom_dm_op(stubdm_stubdom *s)
{
    return &s->dm_op;
}

stubdm_ctx *stubdm__stubdom_ctx(const stubdm_stubdom *s)
{
    return s->ctx;
}

bool stubdm__stubdom_paused(const stubdm_stubdom *s)
{
    return s->paused;
}

/* ---- by domid: destroy, find, list ---------------------------------------- */

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
    static const char *const kinds[] = { "console", "vbd", "vif" };
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
        snprintf(p, sizeof(p), "/local/domain/%u/image/device-model-domid",
                 d);
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

int stubdm_stubdom_destroy_by_domid(stubdm_ctx *ctx, uint32_t stubdom)
{
    return stubdm_stubdom_destroy_by_domid_ext(ctx, stubdom, 0);
}

int stubdm_stubdom_destroy_by_domid_ext(stubdm_ctx *ctx, uint32_t stubdom, unsigned flags)
{
    char *gvm = NULL, *svm = NULL;
    uint32_t guest = 0;
    bool have_guest = false, exists = false;
    struct xs_handle *xsh = NULL;
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if (stubdom == 0 || !stubdm__domid_ok(stubdom))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "destroy: %u is not a stubdomain domid", stubdom);
    if (flags & ~(unsigned)STUBDM_STUBDOM_DESTROY_FORCE)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "destroy: unknown flags 0x%x", flags);
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    rc = trusted_target(ctx, stubdom, &guest);
    if (rc && rc != STUBDM_ENOENT)
        return rc;
    have_guest = rc == 0;
    if ((rc = domain_exists(ctx, xsh, stubdom, &exists)))
        return rc;
    if (!have_guest)
        have_guest = guest_naming(ctx, xsh, stubdom, &guest);
    if (!have_guest && exists && !(flags & STUBDM_STUBDOM_DESTROY_FORCE))
        return stubdm__fail(ctx, STUBDM_ENOTSTUBDOM, 0,
                            "destroy: domain %u is not a stubdomain (no "
                            "dom0-owned target naming its guest, no guest's "
                            "dom0-owned image/device-model-domid naming it); "
                            "left untouched (force destroys it anyway)",
                            stubdom);
    if (!exists) {
        if (!have_guest && !dom0_leftovers(ctx, stubdom))
            return stubdm__fail(ctx, STUBDM_ENOENT, 0,
                                "destroy: no stubdomain %u", stubdom);
        LOG_INFO(ctx, MOD,
                 "destroy: stubdomain %u is gone already (destroyed by "
                 "another toolstack?); removing what it left in dom0 "
                 "(backends, hotplug scripts' devices)",
                 stubdom);
    } else if (!have_guest) {
        LOG_WARN(ctx, MOD, "destroy: domain %u is not a stubdomain: "
                 "destroyed as forced", stubdom);
    }
    svm = read_vm_path(ctx, stubdom);
    if (have_guest)
        gvm = read_vm_path(ctx, guest);
    rc = teardown_domain(ctx, stubdm__host(ctx), stubdom, have_guest, guest,
                         gvm, svm, NULL);
    free(gvm);
    free(svm);
    if (rc) {
        char msg[STUBDM_ERRMSG_MAX];
        snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
        return stubdm__fail(ctx, rc, ctx->os_errno, "destroy %u: %s", stubdom,
                            msg);
    }
    return 0;
}

int stubdm_stubdom_find_by_guest(stubdm_ctx *ctx, uint32_t guest, uint32_t *out)
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

    if (stubdm__domain_state(ctx, e->domid, &st, detail, sizeof(detail)) == 0 &&
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
            printable(v, NAME_MAX_LEN))
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
