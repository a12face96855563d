/*
 * The xenstore contract of a stubdomain start: everything a Linux
 * stubdomain needs besides its domain-builder nodes.  layout() is a pure
 * function into a node list; write() replays it in one transaction, then
 * sets the xenstore target relation; remove() undoes it in one
 * transaction.  docs/protocol.md is the specification.
 */
#include "console/console.h"
#include "core/base.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/peer.h"
#include "protocol/dmargs.h"
#include "xen/xs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define CONSOLE_LIMIT "1048576" /* bytes xenconsoled may buffer, as libxl */

struct stubdm_contract {
    uint32_t guest, stubdom, toolstack;
    bool have_domains;
    char *vm_path;
    char **args;
    size_t nargs;
    stubdm_dm_argv_encoding encoding;
    size_t max_value_len;
    stubdm_console_backend backend;
    char *output[STUBDM__NCONSOLES];
    unsigned nserials;
    bool have_ring;
    uint64_t ring_mfn;
    uint32_t port;
    char *bios;
    int allow_memory_relocate;
    unsigned consoles;  /* STUBDM_CONTRACT_CONSOLE(n) bits written */
    bool no_dm_version; /* the toolstack keeps /libxl/G/dm-version */
    int service; /* enum stubdm_service_mode: what a service (stubdmd) does */
};

int stubdm_contract_new(stubdm_contract **out)
{
    stubdm_contract *c;

    if (!out)
        return STUBDM_EINVAL;
    *out = NULL;
    c = stubdm__calloc(1, sizeof(*c));
    if (!c)
        return STUBDM_ENOMEM;
    c->encoding = STUBDM_DM_ARGV_DIRECTORY;
    c->max_value_len = STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN;
    c->backend = STUBDM_CONSOLE_BACKEND_IOEMU;
    c->consoles = STUBDM_CONTRACT_CONSOLES_ALL;
    *out = c;
    return 0;
}

static void free_args(stubdm_contract *c)
{
    for (size_t i = 0; i < c->nargs; i++)
        free(c->args[i]);
    free(c->args);
    c->args = NULL;
    c->nargs = 0;
}

void stubdm_contract_free(stubdm_contract *c)
{
    if (!c)
        return;
    free(c->vm_path);
    free_args(c);
    for (unsigned i = 0; i < STUBDM__NCONSOLES; i++)
        free(c->output[i]);
    free(c->bios);
    free(c);
}

int stubdm_contract_set_domains(stubdm_contract *c, uint32_t guest_domid,
                                uint32_t stubdom_domid)
{
    if (!c || !stubdm__domid_ok(guest_domid) ||
        !stubdm__domid_ok(stubdom_domid) || guest_domid == 0 ||
        stubdom_domid == 0 || guest_domid == stubdom_domid)
        return STUBDM_EINVAL;
    c->guest = guest_domid;
    c->stubdom = stubdom_domid;
    c->have_domains = true;
    return 0;
}

int stubdm_contract_set_vm_path(stubdm_contract *c, const char *vm_path)
{
    char *p = NULL;

    if (!c)
        return STUBDM_EINVAL;
    if (vm_path) {
        if (stubdm__vm_path_check(NULL, vm_path))
            return STUBDM_EINVAL;
        if (!(p = stubdm__strdup(vm_path)))
            return STUBDM_ENOMEM;
    }
    free(c->vm_path);
    c->vm_path = p;
    return 0;
}

int stubdm_contract_set_args(stubdm_contract *c, const char *const *args,
                             size_t nargs)
{
    char **v;

    if (!c || (nargs && !args))
        return STUBDM_EINVAL;
    for (size_t i = 0; i < nargs; i++)
        if (!args[i])
            return STUBDM_EINVAL;
    v = stubdm__calloc(nargs + 1, sizeof(*v));
    if (!v)
        return STUBDM_ENOMEM;
    for (size_t i = 0; i < nargs; i++) {
        if (!(v[i] = stubdm__strdup(args[i]))) {
            for (size_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return STUBDM_ENOMEM;
        }
    }
    free_args(c);
    c->args = v;
    c->nargs = nargs;
    return 0;
}

int stubdm_contract_set_argv_encoding(stubdm_contract *c,
                                      stubdm_dm_argv_encoding encoding,
                                      size_t max_value_len)
{
    if (!c || (encoding != STUBDM_DM_ARGV_DIRECTORY &&
               encoding != STUBDM_DM_ARGV_MINIOS_DMARGS &&
               encoding != STUBDM_DM_ARGV_ESC_STRING))
        return STUBDM_EINVAL;
    c->encoding = encoding;
    c->max_value_len = max_value_len ? max_value_len
                                     : STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN;
    return 0;
}

int stubdm_contract_set_console_backend(stubdm_contract *c,
                                        stubdm_console_backend backend)
{
    if (!c || (backend != STUBDM_CONSOLE_BACKEND_IOEMU &&
               backend != STUBDM_CONSOLE_BACKEND_XENCONSOLED &&
               backend != STUBDM_CONSOLE_BACKEND_LIBSTUBDM))
        return STUBDM_EINVAL;
    c->backend = backend;
    return 0;
}

int stubdm_contract_set_console_output(stubdm_contract *c, unsigned n,
                                       const char *output)
{
    char *dup = NULL;

    if (!c || (output && !*output))
        return STUBDM_EINVAL;
    if (n >= STUBDM_CONSOLE_SERIAL0) {
        unsigned idx = n - STUBDM_CONSOLE_SERIAL0;
        if (!output) {
            if (idx >= c->nserials)
                return 0; /* no such console: nothing to remove */
            if (idx + 1 != c->nserials)
                return STUBDM_EINVAL; /* would leave a gap */
            free(c->output[n]);
            c->output[n] = NULL;
            c->nserials--;
            return 0;
        }
        if (idx >= STUBDM_CONSOLE_MAX_SERIALS)
            return STUBDM_ELIMIT;
        if (idx > c->nserials)
            return STUBDM_EINVAL; /* serials in order, without gaps */
    }
    if (output && !(dup = stubdm__strdup(output)))
        return STUBDM_ENOMEM;
    free(c->output[n]);
    c->output[n] = dup;
    if (n >= STUBDM_CONSOLE_SERIAL0 &&
        n - STUBDM_CONSOLE_SERIAL0 == c->nserials)
        c->nserials++;
    return 0;
}

int stubdm_contract_set_console0_ring(stubdm_contract *c, uint64_t ring_mfn,
                                      uint32_t port)
{
    if (!c)
        return STUBDM_EINVAL;
    c->have_ring = true;
    c->ring_mfn = ring_mfn;
    c->port = port;
    return 0;
}

int stubdm_contract_set_hvmloader(stubdm_contract *c, const char *bios,
                                  int allow_memory_relocate)
{
    char *dup = NULL;

    if (!c)
        return STUBDM_EINVAL;
    if (bios) {
        if (strcmp(bios, "seabios") != 0 && strcmp(bios, "ovmf") != 0)
            return STUBDM_EINVAL;
        if (!(dup = stubdm__strdup(bios)))
            return STUBDM_ENOMEM;
    }
    free(c->bios);
    c->bios = dup;
    c->allow_memory_relocate = allow_memory_relocate ? 1 : 0;
    return 0;
}

int stubdm_contract_set_consoles(stubdm_contract *c, unsigned mask)
{
    if (!c || (mask & ~STUBDM_CONTRACT_CONSOLES_ALL))
        return STUBDM_EINVAL;
    c->consoles = mask;
    return 0;
}

int stubdm_contract_set_dm_version(stubdm_contract *c, int write)
{
    if (!c)
        return STUBDM_EINVAL;
    c->no_dm_version = !write;
    return 0;
}

int stubdm_contract_set_service(stubdm_contract *c, int mode)
{
    if (!c || !stubdm__service_mode_ok(mode))
        return STUBDM_EINVAL;
    c->service = mode;
    return 0;
}

int stubdm_contract_set_toolstack_domid(stubdm_contract *c, uint32_t domid)
{
    if (!c || !stubdm__domid_ok(domid))
        return STUBDM_EINVAL;
    c->toolstack = domid;
    return 0;
}

/* ---- layout ------------------------------------------------------------- */

static const char *backend_type(stubdm_console_backend b)
{
    switch (b) {
    case STUBDM_CONSOLE_BACKEND_XENCONSOLED:
        return "xenconsoled";
    case STUBDM_CONSOLE_BACKEND_LIBSTUBDM:
        return "libstubdm";
    case STUBDM_CONSOLE_BACKEND_IOEMU:
        break;
    }
    return "ioemu";
}

/*
 * Whether console n exists.  With the xenconsoled backend only console 0
 * does: xenconsoled serves the builder's console page and nothing under
 * device/console, and a Linux stubdomain waits 25 s at boot for every
 * frontend there to connect (xenbus_probe_frontend "Waiting for devices
 * to initialise"), so a console nobody serves costs every spawn 25 s and
 * gives nothing (check_contract refuses outputs for consoles >= 1).
 * Otherwise console 1 (save) always exists.  Console 2 exists when
 * restoring, and also,
 * as a placeholder with output "null", when serials follow it: Linux
 * numbers /dev/hvcN by probe order, so without console 2 the first
 * serial (console 3) would become /dev/hvc2 and QEMU's -serial /dev/hvc3
 * would not exist.
 */
static bool console_exists(const stubdm_contract *c, unsigned n,
                           const char **output)
{
    *output = n < STUBDM__NCONSOLES ? c->output[n] : NULL;
    if (n >= STUBDM__NCONSOLES || !(c->consoles & STUBDM_CONTRACT_CONSOLE(n)))
        return false; /* the toolstack's own, if anyone's */
    if (c->backend == STUBDM_CONSOLE_BACKEND_XENCONSOLED)
        return n == STUBDM_CONSOLE_LOG;
    if (n <= STUBDM_CONSOLE_SAVE)
        return true;
    if (n == STUBDM_CONSOLE_RESTORE) {
        if (!c->output[n] && c->nserials) {
            *output = "null";
            return true;
        }
        return c->output[n] != NULL;
    }
    return n - STUBDM_CONSOLE_SERIAL0 < c->nserials;
}

static void console_paths(const stubdm_contract *c, unsigned n, char *fe,
                          size_t fesz, char *be, size_t besz)
{
    if (n == 0)
        snprintf(fe, fesz, "/local/domain/%u/console", c->stubdom);
    else
        snprintf(fe, fesz, "/local/domain/%u/device/console/%u", c->stubdom,
                 n);
    snprintf(be, besz, "/local/domain/%u/backend/console/%u/%u", c->toolstack,
             c->stubdom, n);
}

static int check_contract(stubdm_ctx *ctx, const stubdm_contract *c)
{
    if (!c)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "the contract is NULL");
    if (!c->have_domains)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "contract: the guest and stubdomain domids are "
                            "not set");
    if (c->toolstack == c->guest || c->toolstack == c->stubdom)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "contract: toolstack domid %u is the guest or the "
                            "stubdomain",
                            c->toolstack);
    if (c->service && c->backend != STUBDM_CONSOLE_BACKEND_LIBSTUBDM)
        /* The service serves the consoles with this library's backend: a
         * frontend of another type would wait for a backend nobody runs. */
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "contract: a service adopts only a stubdomain "
                            "whose consoles have the libstubdm backend");
    if (c->backend == STUBDM_CONSOLE_BACKEND_XENCONSOLED) {
        /* Refused rather than dropped: the stubdomain would wait for a
         * save, restore or serial console nobody serves. */
        for (unsigned n = STUBDM_CONSOLE_SAVE; n < STUBDM__NCONSOLES; n++)
            if (c->output[n])
                return stubdm__fail(
                    ctx, STUBDM_EINVAL, 0,
                    "contract: console %u (%s) has output '%.40s', but the "
                    "xenconsoled backend serves console 0 only; use the "
                    "libstubdm or ioemu backend for save, restore and "
                    "serials",
                    n, stubdm__console_role(n), c->output[n]);
    }
    for (unsigned n = 0; n < STUBDM__NCONSOLES; n++) {
        const char *o = c->output[n];
        if (!o)
            continue;
        /* Refused rather than dropped: the caller would expect an output
         * nothing writes. */
        if (!(c->consoles & STUBDM_CONTRACT_CONSOLE(n)))
            return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                "contract: console %u (%s) has output "
                                "'%.40s', but it is not among the consoles "
                                "the contract writes "
                                "(stubdm_contract_set_consoles)",
                                n, stubdm__console_role(n), o);
        if (strlen(o) > c->max_value_len)
            return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                                "contract: console %u output is %zu bytes, "
                                "more than %zu",
                                n, strlen(o), c->max_value_len);
        for (const char *p = o; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                                    "contract: console %u output contains "
                                    "control byte 0x%02x",
                                    n, (unsigned char)*p);
    }
    return 0;
}

static int add_console(stubdm_nodes *l, const stubdm_contract *c, unsigned n,
                       const char *output)
{
    char fe[96], be[96], ro[32], rw[32], num[24];
    uint32_t S = c->stubdom, T = c->toolstack;
    int rc;

    console_paths(c, n, fe, sizeof(fe), be, sizeof(be));
    snprintf(ro, sizeof(ro), "n%u r%u", T, S); /* toolstack's, S reads */
    snprintf(rw, sizeof(rw), "n%u r%u", S, T); /* stubdomain's */
    if ((rc = stubdm__nodes_add_rm(l, "%s", fe)) ||
        (rc = stubdm__nodes_add_rm(l, "%s", be)))
        return rc;
    /* Frontend.  Console 0's directory stays the toolstack's (as libxl:
     * it holds more than the PV console protocol); the others belong to
     * the stubdomain. */
    if ((rc = stubdm__nodes_add_str(l, n == 0 ? ro : rw, "", "%s", fe)) ||
        (rc = stubdm__nodes_add_str(l, NULL, be, "%s/backend", fe)))
        return rc;
    snprintf(num, sizeof(num), "%u", T);
    if ((rc = stubdm__nodes_add_str(l, rw, num, "%s/backend-id", fe)))
        return rc;
    if (n > 0 &&
        ((rc = stubdm__nodes_add_str(l, rw, "1", "%s/state", fe)) ||
         (rc = stubdm__nodes_add_str(l, rw, "vt100", "%s/protocol", fe))))
        return rc;
    if ((rc = stubdm__nodes_add_str(l, ro, CONSOLE_LIMIT, "%s/limit", fe)) ||
        (rc = stubdm__nodes_add_str(l, ro, backend_type(c->backend), "%s/type",
                                    fe)))
        return rc;
    if (output && (rc = stubdm__nodes_add_str(l, ro, output, "%s/output", fe)))
        return rc;
    if ((rc = stubdm__nodes_add_str(l, ro, "", "%s/tty", fe)))
        return rc;
    if (n == 0 && c->have_ring) {
        snprintf(num, sizeof(num), "%u", c->port);
        if ((rc = stubdm__nodes_add_str(l, ro, num, "%s/port", fe)))
            return rc;
        snprintf(num, sizeof(num), "%" PRIu64, c->ring_mfn);
        if ((rc = stubdm__nodes_add_str(l, ro, num, "%s/ring-ref", fe)))
            return rc;
    }
    /* Backend: the toolstack's, the stubdomain may read it. */
    snprintf(num, sizeof(num), "%u", S);
    if ((rc = stubdm__nodes_add_str(l, ro, "", "%s", be)) ||
        (rc = stubdm__nodes_add_str(l, NULL, fe, "%s/frontend", be)) ||
        (rc = stubdm__nodes_add_str(l, NULL, num, "%s/frontend-id", be)) ||
        (rc = stubdm__nodes_add_str(l, NULL, "1", "%s/online", be)) ||
        (rc = stubdm__nodes_add_str(l, NULL, "1", "%s/state", be)) ||
        (rc = stubdm__nodes_add_str(l, NULL, "vt100", "%s/protocol", be)))
        return rc;
    return 0;
}

static int build_layout(stubdm_ctx *ctx, const stubdm_contract *c,
                        const char *vm_path, stubdm_nodes **out)
{
    uint32_t G = c->guest, S = c->stubdom;
    stubdm_nodes *l;
    char num[24], perms[32];
    int rc;

    *out = NULL;
    if ((rc = check_contract(ctx, c)))
        return rc;
    if (!(l = stubdm__nodes_new()))
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "contract layout");
    rc = stubdm__dm_argv_nodes(ctx, vm_path, c->toolstack, S, c->encoding,
                               c->max_value_len, (const char *const *)c->args,
                               c->nargs, l);
    if (rc) {
        stubdm_nodes_free(l);
        return rc;
    }
    snprintf(num, sizeof(num), "%u", S);
    if (!c->no_dm_version)
        rc = stubdm__nodes_add_str(l, NULL, "qemu_xen", "/libxl/%u/dm-version",
                                   G);
    if (!rc)
        rc = stubdm__nodes_add_str(l, NULL, num,
                                   "/local/domain/%u/image/device-model-domid",
                                   G);
    if (!rc && c->service != STUBDM_SERVICE_NONE)
        rc = stubdm__nodes_add_str(
            l, NULL,
            c->service == STUBDM_SERVICE_SERVE_ONLY
                ? STUBDM_SERVICE_VALUE_SERVE_ONLY
                : STUBDM_SERVICE_VALUE,
            "/local/domain/%u/image/" STUBDM_SERVICE_KEY, G);
    snprintf(num, sizeof(num), "%u", G);
    if (!rc)
        rc = stubdm__nodes_add_str(l, NULL, num, "/local/domain/%u/target", S);
    if (!rc && c->bios) {
        rc = stubdm__nodes_add_str(l, NULL, c->bios,
                                   "/local/domain/%u/hvmloader/bios", G);
        if (!rc)
            rc = stubdm__nodes_add_str(
                l, NULL, c->allow_memory_relocate ? "1" : "0",
                "/local/domain/%u/hvmloader/allow-memory-relocate", G);
    }
    snprintf(perms, sizeof(perms), "n%u r%u", S, G);
    if (!rc)
        rc = stubdm__nodes_add_rm(l, "/local/domain/%u/device-model/%u", S, G);
    if (!rc)
        rc = stubdm__nodes_add_str(l, perms, "",
                                   "/local/domain/%u/device-model/%u", S, G);
    for (unsigned n = 0; n < STUBDM__NCONSOLES && !rc; n++) {
        const char *output;
        if (console_exists(c, n, &output))
            rc = add_console(l, c, n, output);
    }
    if (rc) {
        stubdm_nodes_free(l);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "contract layout");
    }
    *out = l;
    return 0;
}

int stubdm_contract_layout(stubdm_ctx *ctx, const stubdm_contract *c,
                           stubdm_nodes **out)
{
    int rc;

    if (out)
        *out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!out)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "out is NULL");
    if (c && c->have_domains && !c->vm_path)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "contract: the vm path is not set (only write() "
                            "and remove() read it from /local/domain/%u/vm)",
                            c->guest);
    rc = build_layout(ctx, c, c ? c->vm_path : NULL, out);
    if (!rc)
        stubdm__clear_error(ctx);
    return rc;
}

/* ---- I/O ---------------------------------------------------------------- */

/* The vm path: the contract's, or /local/domain/<guest>/vm as libxl. */
static int get_vm_path(stubdm_ctx *ctx, const stubdm_contract *c, char **out)
{
    char path[64];
    size_t len;
    int rc;

    *out = NULL;
    if (c->vm_path) {
        *out = stubdm__strdup(c->vm_path);
        return *out ? 0 : stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "vm path");
    }
    snprintf(path, sizeof(path), "/local/domain/%u/vm", c->guest);
    /* The argv is written and removed under it: the toolstack's node only
     * (a guest's own would choose which /vm entry dom0 rewrites). */
    rc = stubdm__xs_read_owned(ctx, path, 256, c->toolstack, out, &len);
    if (rc)
        return rc;
    if (strlen(*out) != len || stubdm__vm_path_check(ctx, *out)) {
        rc = stubdm__fail(ctx, STUBDM_EPROTO, 0, "%s holds an invalid vm path",
                          path);
        free(*out);
        *out = NULL;
    }
    return rc;
}

struct remove_arg {
    const stubdm_contract *c;
    const char *vm_path; /* NULL: unknown, the argv is left alone */
};

static int prune_if_empty(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                          const char *path)
{
    unsigned n = 0;
    char **kids;

    stubdm__xs_count(ctx, 1);
    kids = xs_directory(xsh, t, path, &n);
    if (!kids) {
        int err = errno;
        if (err == ENOENT)
            return 0;
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "listing %s: %s", path, strerror(err));
    }
    free(kids);
    return n ? 0 : stubdm__xs_rm_txn(ctx, xsh, t, path);
}

static int remove_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      void *varg)
{
    const struct remove_arg *a = varg;
    const stubdm_contract *c = a->c;
    uint32_t G = c->guest, S = c->stubdom, T = c->toolstack;
    char p[STUBDM__XS_ABS_PATH_MAX];
    int rc;

#define RM(...)                                                               \
    do {                                                                      \
        snprintf(p, sizeof(p), __VA_ARGS__);                                  \
        if ((rc = stubdm__xs_rm_txn(ctx, xsh, t, p)))                         \
            return rc;                                                        \
    } while (0)
    if (a->vm_path) {
        RM("%s/" STUBDM__DM_ARGV_DIR, a->vm_path);
        RM("%s/" STUBDM__DMARGS_KEY, a->vm_path);
    }
    if (!c->no_dm_version)
        RM("/libxl/%u/dm-version", G);
    RM("/local/domain/%u/image/device-model-domid", G);
    /* Whatever this contract says: a service must not adopt a stubdomain
     * whose contract is gone, and a destroy by domid knows no options. */
    RM("/local/domain/%u/image/" STUBDM_SERVICE_KEY, G);
    RM("/local/domain/%u/target", S);
    if (c->bios) {
        RM("/local/domain/%u/hvmloader/bios", G);
        RM("/local/domain/%u/hvmloader/allow-memory-relocate", G);
    }
    RM("/local/domain/%u/device-model/%u", S, G);
    /* Every selected console a layout may contain, whatever outputs this
     * contract holds now: those console directories are the contract's
     * alone; the others are the toolstack's (stubdm_contract_set_consoles). */
    for (unsigned n = 0; n < STUBDM__NCONSOLES; n++) {
        char fe[96], be[96];
        if (!(c->consoles & STUBDM_CONTRACT_CONSOLE(n)))
            continue;
        console_paths(c, n, fe, sizeof(fe), be, sizeof(be));
        RM("%s", fe);
        RM("%s", be);
    }
#undef RM
    /* Containers only the contract fills: drop them once empty. */
    snprintf(p, sizeof(p), "/local/domain/%u/backend/console/%u", T, S);
    if ((rc = prune_if_empty(ctx, xsh, t, p)))
        return rc;
    snprintf(p, sizeof(p), "/local/domain/%u/backend/console", T);
    if ((rc = prune_if_empty(ctx, xsh, t, p)))
        return rc;
    snprintf(p, sizeof(p), "/local/domain/%u/device/console", S);
    if ((rc = prune_if_empty(ctx, xsh, t, p)))
        return rc;
    snprintf(p, sizeof(p), "/local/domain/%u/device-model", S);
    if ((rc = prune_if_empty(ctx, xsh, t, p)))
        return rc;
    /* device-model-domid's container: no domain builder makes it (libxl's
     * domain_make does not; its dom0 QEMUs' pid goes there, never with a
     * stubdomain), so empty it is what the write above created. */
    snprintf(p, sizeof(p), "/local/domain/%u/image", G);
    if ((rc = prune_if_empty(ctx, xsh, t, p)))
        return rc;
    if (c->bios) {
        snprintf(p, sizeof(p), "/local/domain/%u/hvmloader", G);
        if ((rc = prune_if_empty(ctx, xsh, t, p)))
            return rc;
    }
    return 0;
}

static int do_remove(stubdm_ctx *ctx, const stubdm_contract *c,
                     const char *vm_path)
{
    struct remove_arg a = {c, vm_path};

    return stubdm__xs_transaction(ctx, "removing the stubdomain contract",
                                  remove_txn, &a, NULL);
}

static int write_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                     void *arg)
{
    return stubdm__nodes_write_txn(ctx, xsh, t, arg);
}

int stubdm_contract_write(stubdm_ctx *ctx, const stubdm_contract *c)
{
    struct xs_handle *xsh = NULL;
    stubdm_nodes *nodes = NULL;
    char *vm_path = NULL;
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if ((rc = check_contract(ctx, c)))
        return rc;
    /* Refusable input is refused before any request. */
    if (c->vm_path && (rc = build_layout(ctx, c, c->vm_path, &nodes)))
        return rc;
    if ((rc = stubdm__xs_handle(ctx, &xsh)))
        goto out;
    if ((rc = get_vm_path(ctx, c, &vm_path)))
        goto out;
    if (!nodes && (rc = build_layout(ctx, c, vm_path, &nodes)))
        goto out;
    rc = stubdm__xs_transaction(ctx, "writing the stubdomain contract",
                                write_txn, nodes, NULL);
    if (rc)
        goto out;
    stubdm__xs_count(ctx, 1);
    if (!xs_set_target(xsh, c->stubdom, c->guest)) {
        int err = errno;
        int rrc = do_remove(ctx, c, vm_path);
        rc = stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                          "xs_set_target(%u, %u): %s; %s", c->stubdom,
                          c->guest, strerror(err),
                          rrc ? "removing the contract again failed too"
                              : "the contract was removed again");
        goto out;
    }
    stubdm__clear_error(ctx);
out:
    stubdm_nodes_free(nodes);
    free(vm_path);
    return rc;
}

int stubdm_contract_remove(stubdm_ctx *ctx, const stubdm_contract *c)
{
    char *vm_path = NULL;
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if (!c || !c->have_domains)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "contract: the guest and stubdomain domids are "
                            "not set");
    rc = get_vm_path(ctx, c, &vm_path);
    if (rc == STUBDM_ENOENT) {
        /* The guest's nodes are gone (and with them, under libxl, its
         * /vm/<uuid>): nothing tells where an argv would be. */
        LOG_WARN(ctx, "contract",
                 "/local/domain/%u/vm is gone: leaving any argv in place",
                 c->guest);
        rc = 0;
    }
    if (rc)
        return rc;
    rc = do_remove(ctx, c, vm_path);
    free(vm_path);
    if (!rc)
        stubdm__clear_error(ctx);
    return rc;
}
