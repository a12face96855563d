/*
 * The spawn configuration: the object, its setters and its copy.  The
 * setters check only what they can alone; validate.c checks the whole.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "pci/pci.h"
#include "spawn/spawn.h"
#include "console/console.h"

#include <stdlib.h>
#include <string.h>

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
    c->consoles = STUBDM_CONTRACT_CONSOLES_ALL;
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
    free(c->pcis);
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

/* Replace the vector at *slot (n entries) with a copy of args. */
static int set_strv(char ***slot, size_t *n, const char *const *args,
                    size_t nargs)
{
    char **v = NULL;
    int rc;

    if (nargs && !args)
        return STUBDM_EINVAL;
    if ((rc = strv_copy(args, nargs, &v)))
        return rc;
    strv_free(*slot, *n);
    *slot = v;
    *n = nargs;
    return 0;
}

int stubdm_spawn_opts_set_args(stubdm_spawn_opts *c, const char *const *args,
                               size_t nargs)
{
    return c ? set_strv(&c->args, &c->nargs, args, nargs) : STUBDM_EINVAL;
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
    if (!c || (b != STUBDM_CONSOLE_BACKEND_IOEMU &&
               b != STUBDM_CONSOLE_BACKEND_XENCONSOLED &&
               b != STUBDM_CONSOLE_BACKEND_LIBSTUBDM))
        return STUBDM_EINVAL;
    c->backend = b;
    c->backend_set = true;
    return 0;
}

int stubdm_spawn_opts_set_log_limits(stubdm_spawn_opts *c, uint64_t max_bytes,
                                     unsigned rotations)
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
    if (!(d = stubdm__reallocarray(c->disks, c->ndisks + 1, sizeof(*d))))
        return STUBDM_ENOMEM;
    c->disks = d;
    d = memset(&c->disks[c->ndisks], 0, sizeof(*d));
    if (!(d->target = stubdm__strdup(target)))
        return STUBDM_ENOMEM;
    d->qcow2 = format && !strcmp(format, "qcow2");
    d->readonly = readonly != 0;
    c->ndisks++; /* the count is checked by validate, naming the field */
    return 0;
}

int stubdm_spawn_opts_add_pci(stubdm_spawn_opts *c, const stubdm_pci_dev *d)
{
    struct stubdm_pci_dev *v;

    if (!c || !d)
        return STUBDM_EINVAL;
    if (c->npcis >= STUBDM__PCI_MAX_DEVS)
        return STUBDM_ELIMIT;
    if (!(v = stubdm__reallocarray(c->pcis, c->npcis + 1, sizeof(*v))))
        return STUBDM_ENOMEM;
    c->pcis = v;
    v[c->npcis++] = *d;
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

int stubdm_spawn_opts_set_xsm_label(stubdm_spawn_opts *c, const char *label)
{
    return c ? set_str(&c->xsm_label, label) : STUBDM_EINVAL;
}

int stubdm_spawn_opts_set_stubdom_domid(stubdm_spawn_opts *c, uint32_t domid)
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
    char *prog = NULL;
    int rc;

    if (!c)
        return STUBDM_EINVAL;
    /* Both or neither: the program first, kept only if the args copy. */
    if ((rc = set_str(&prog, program)))
        return rc;
    if ((rc = set_strv(&c->sim_args, &c->sim_nargs, args, nargs))) {
        free(prog);
        return rc;
    }
    free(c->sim_program);
    c->sim_program = prog;
    return 0;
}

int stubdm_spawn_opts_set_domain(stubdm_spawn_opts *c, uint32_t domid,
                                 unsigned flags)
{
    const unsigned known = STUBDM_SPAWN_ADOPT_NO_UNPAUSE |
                           STUBDM_SPAWN_ADOPT_NO_HOTPLUG |
                           STUBDM_SPAWN_ADOPT_DESTROY;

    if (!c || (domid && !stubdm__domid_ok(domid)) || (flags & ~known))
        return STUBDM_EINVAL;
    c->adopt = domid;
    c->adopt_flags = domid ? flags : 0;
    return 0;
}

int stubdm_spawn_opts_set_consoles(stubdm_spawn_opts *c, unsigned mask)
{
    if (!c || (mask & ~STUBDM_CONTRACT_CONSOLES_ALL))
        return STUBDM_EINVAL;
    c->consoles = mask;
    return 0;
}

int stubdm_spawn_opts_set_dm_version(stubdm_spawn_opts *c, int write)
{
    if (!c)
        return STUBDM_EINVAL;
    c->no_dm_version = !write;
    return 0;
}

int stubdm_spawn_opts_set_service(stubdm_spawn_opts *c, int mode)
{
    if (!c || !stubdm__service_mode_ok(mode))
        return STUBDM_EINVAL;
    c->service = mode;
    return 0;
}

int stubdm_spawn_opts_set_console0_ring(stubdm_spawn_opts *c,
                                        uint64_t ring_mfn, uint32_t port)
{
    if (!c)
        return STUBDM_EINVAL;
    c->ring0_set = true;
    c->ring0_mfn = ring_mfn;
    c->ring0_port = port;
    return 0;
}

stubdm_spawn_opts *stubdm__spawn_config_dup(const stubdm_spawn_opts *c)
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
         !stubdm_spawn_opts_set_sim_program(d, c->sim_program,
                                            (const char *const *)c->sim_args,
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
    for (size_t i = 0; ok && i < c->npcis; i++)
        ok = !stubdm_spawn_opts_add_pci(d, &c->pcis[i]);
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
    d->adopt = c->adopt;
    d->adopt_flags = c->adopt_flags;
    d->consoles = c->consoles;
    d->no_dm_version = c->no_dm_version;
    d->service = c->service;
    d->ring0_set = c->ring0_set;
    d->ring0_mfn = c->ring0_mfn;
    d->ring0_port = c->ring0_port;
    return d;
}
