/*
 * What lib/spawn/'s files share: the configuration and the stubdomain
 * handle, the spawn op, and each file's offer to the others (config.c,
 * validate.c, layout.c, steps.c, teardown.c, query.c, spawn.c).
 */
#ifndef STUBDM_SPAWN_SPAWN_H
#define STUBDM_SPAWN_SPAWN_H

#include "console/console.h"
#include "core/base.h"
#include "core/loop.h"
#include "core/op.h"
#include "xen/host.h"
#include "xen/xs.h"

#define MOD "spawn"
#define VM_PATH_MAX 128
#define NAME_MAX_LEN 64
#define CMDLINE_MAX 1024 /* Xen's MAX_GUEST_CMDLINE */
#define MAX_VCPUS 128
#define MAX_MEMORY_KIB (64ull << 20) /* 64 GiB: far beyond any stubdomain */
#define MAX_NICS 16
#define TOOLSTACK_DOMID 0u
#define MAC_LEN 18 /* "xx:xx:xx:xx:xx:xx" */
#define PLACEHOLDER_KEY "libstubdm-sim-placeholder"
#define SCRIPT_MAX 1024
#define SCRIPT_DIR "/etc/xen/scripts" /* where libxl finds a bare name */
#define DEFAULT_BLOCK_SCRIPT SCRIPT_DIR "/block"
#define DEFAULT_VIF_SCRIPT SCRIPT_DIR "/vif-bridge"

/* libxl's literal, replaced by the stubdomain with its restore fd
 * (Qubes init: sed to "fd:3"; docs/protocol.md). */
#define RESTORE_INCOMING_ARG "$STUBDOM_RESTORE_INCOMING_ARG"
/* Console 2's frontend "output" when this library serves it. */
#define RESTORE_OUTPUT "libstubdm:restore"

/* ---- the configuration (config.c) ---------------------------------------- */

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
    bool backend_set; /* else: IOEMU on Xen, LIBSTUBDM simulated */
    uint64_t log_cap; /* 0: STUBDM_CONSOLE_DEFAULT_FILE_CAP */
    unsigned log_rotations;
    int restore_fd; /* -1: not restoring */
    struct disk *disks;
    size_t ndisks;
    struct nic *nics;
    size_t nnics;
    struct stubdm_pci_dev *pcis; /* attached before the unpause */
    size_t npcis;
    char *xsm_label;
    uint32_t stubdom_req;
    int timeout_ms;
    bool qmp;
    int qmp_timeout_ms;
    char *sim_program;
    char **sim_args;
    size_t sim_nargs;
    /* Bring your own domain (set_domain): 0, or the caller's domain. */
    uint32_t adopt;
    unsigned adopt_flags; /* STUBDM_SPAWN_ADOPT_* */
    unsigned consoles;    /* STUBDM_CONTRACT_CONSOLE(n) bits */
    bool no_dm_version;
    int service;    /* enum stubdm_service_mode: the adoption node */
    bool ring0_set; /* an adopted domain's console 0 ring (Xen) */
    uint64_t ring0_mfn;
    uint32_t ring0_port;
};

/* A deep copy, or NULL (out of memory). */
stubdm_spawn_opts *stubdm__spawn_config_dup(const stubdm_spawn_opts *c);

/* ---- validation (validate.c) --------------------------------------------- */

/*
 * The whole configuration for this host; 0 or the error, naming the
 * field, on the ctx.  The contract is built on the way (the check of the
 * argv and consoles is its layout): *contract gets it (may be NULL: not
 * kept), its domains and vm path placeholders until the domain exists.
 */
int stubdm__spawn_validate(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                           bool simulated, stubdm_contract **contract);
/* The backend a spawn uses: the caller's choice, else LIBSTUBDM on the
 * simulated host and IOEMU (libxl's) on Xen. */
stubdm_console_backend stubdm__spawn_backend(const stubdm_spawn_opts *c,
                                             bool simulated);
/* Printable ASCII, 1..max bytes: names and labels end up in xenstore
 * values and log lines. */
bool stubdm__spawn_printable(const char *s, size_t max);
/* The script as written to the backend (and run): always absolute. */
void stubdm__spawn_script_path(const char *s, const char *def, char *out,
                               size_t len);

/* ---- the spawn's own nodes (layout.c) ----------------------------------- */

/*
 * What a spawn's own nodes are made of besides its configuration: what
 * the host and xenstore told, the clock and the random choices (fixed
 * values in the golden tests).
 */
struct stubdm__spawn_facts {
    uint32_t domid, guest;
    const char *stub_name, *stub_vm;  /* the stubdomain's /vm/<uuid> */
    const char *guest_name, *vm_path; /* the guest's */
    bool simulated;                   /* no store ring to publish */
    uint64_t store_mfn, console_mfn;  /* the builder's (Xen only) */
    uint32_t store_port, console_port;
    long long start_time;
    bool placeholder, placeholder_vm; /* the simulated host's stand-in */
    const char (*macs)[MAC_LEN];      /* one per nic */
};

/* Append the domain's basics (/local/domain/<S>, /vm/<stub uuid>, the
 * stand-in guest) to l.  0 or STUBDM_ENOMEM. */
int stubdm__spawn_domain_nodes(const stubdm_spawn_opts *c,
                               const struct stubdm__spawn_facts *f,
                               stubdm_nodes *l);
/* Append the vbd and vif frontends and backends to l. */
int stubdm__spawn_device_nodes(const stubdm_spawn_opts *c,
                               const struct stubdm__spawn_facts *f,
                               stubdm_nodes *l);
/* A random version-4 uuid: its bytes and its text. */
void stubdm__spawn_random_uuid(uint8_t u[16], char *out, size_t outlen);
/* Each nic's mac: the configured one, else a random one in Xen's range. */
void stubdm__spawn_pick_macs(const stubdm_spawn_opts *c, uint32_t domid,
                             char (*macs)[MAC_LEN]);
/* Set what only the domain's creation tells in the kept contract k: the
 * domains, the guest's vm path, console 0's ring (Xen). */
int stubdm__spawn_place_contract(stubdm_contract *k,
                                 const struct stubdm__spawn_facts *f);
/* The whole spawn's nodes in write order (basics, the placed contract
 * k's, devices) into *out. */
int stubdm__spawn_nodes(stubdm_ctx *ctx, const stubdm_spawn_opts *c,
                        const stubdm_contract *k,
                        const struct stubdm__spawn_facts *f,
                        stubdm_nodes **out);

/* ---- the handle and the op ----------------------------------------------- */

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
    char vm_path[VM_PATH_MAX]; /* the guest's */
    char stub_vm[VM_PATH_MAX]; /* the stubdomain's /vm/<uuid> */
    char guest_name[NAME_MAX_LEN + 1];
    char stub_name[NAME_MAX_LEN + 8];
    struct stubdm__build build;
    bool placeholder, placeholder_vm; /* the simulated host's stand-in */
    long long start_time;
    char macs[MAX_NICS][MAC_LEN];
    /* The domain exists and the teardown destroys it: the spawn created
     * it, or adopted it with STUBDM_SPAWN_ADOPT_DESTROY. */
    bool domain_made;
    /* The caller's domain (set_domain); attached: the spawn has begun
     * adding to it, so a teardown that does not destroy it undoes that. */
    bool adopted, attached;
    bool started; /* the spawn's UNPAUSE ran (a rollback pauses it again) */
    /* Built once, by the validation; placed (its domains and vm path
     * set: contract_rc 0) when the domain exists. */
    stubdm_contract *contract;
    int contract_rc;
    stubdm_qmp *qmp;
    struct spawn_op *op;
    stubdm_spawn_progress_fn *progress;
    void *progress_user;
    /* The handle's own deferred free (the op's is op.c's): the progress
     * callback runs; stubdm_stubdom_free was called from it. */
    bool in_progress;
    bool free_pending;
    /* consoles served by the library (backend LIBSTUBDM) */
    stubdm_console_backend backend;
    stubdm_console *cons[STUBDM__NCONSOLES];
    struct spawn_con con_user[STUBDM__NCONSOLES];
    /* a save or restore of the device model's state (dm_state.c) */
    stubdm_op *dm_op;
    bool paused;
    /* a stubdm_stubdom_destroy running (teardown.c) */
    stubdm_op *destroy_op;
};

struct spawn_op {
    stubdm_op op;
    stubdm_stubdom *s;
    /* The spawn ended (failed, cancelled): its rollback runs, then the op
     * completes with end_rc and end_msg. */
    bool ending;
    bool no_rollback; /* ended by a destroy, which tears down itself */
    int end_rc;
    stubdm_op *rollback; /* the teardown op, while it runs */
    char end_msg[STUBDM_ERRMSG_MAX];
    struct stubdm__timer tick;
    stubdm_op *hotplug;
    stubdm_op *wait;
    stubdm_op *pci; /* the QMP part of device pci_next - 1's attach */
    size_t pci_next;
    int64_t started_ms;
    struct stubdm__xsprobe probe; /* WAIT: the lost connection */
    bool begun; /* the first step was entered (and reported) */
};

/* ---- steps (steps.c) ----------------------------------------------------- */

int stubdm__spawn_step_create(stubdm_stubdom *s);
/* The first part of an adopted domain's CONTRACT step: what CREATE learns
 * of a domain it makes (names, vm paths, the placed contract), taken from
 * the caller's domain, and the hypervisor's target relation. */
int stubdm__spawn_step_adopt(stubdm_stubdom *s);
/* An adopted domain's own /vm/<uuid>, from its dom0-owned "vm" node, for
 * a teardown that destroys it (STUBDM_SPAWN_ADOPT_DESTROY). */
void stubdm__spawn_read_stub_vm(stubdm_stubdom *s);
int stubdm__spawn_step_contract(stubdm_stubdom *s);
int stubdm__spawn_step_devices(stubdm_stubdom *s);
/* Start the hotplug scripts of every raw disk and nic, unless the ctx
 * leaves them to the caller; *op_out stays NULL when there are none. */
int stubdm__spawn_step_hotplug(stubdm_stubdom *s, stubdm_done_fn *done,
                               void *user, stubdm_op **op_out);
/* xvda = 51712 (major 202, 16 minors per disk); beyond xvdp, Linux's
 * extended scheme. */
unsigned stubdm__spawn_vbd_devid(size_t idx);

/* ---- teardown (teardown.c) ----------------------------------------------- */

/*
 * Destroy stubdomain S and remove everything a spawn made.  guest_vm is
 * the guest's vm path when known (else the contract reads it); cfg and
 * contract the spawn's (its kept contract, placed), NULL for a domain
 * known by domid only (the contract is then made from G, S, guest_vm).
 */
int stubdm__spawn_teardown_domain(stubdm_ctx *ctx,
                                  const struct stubdm__host_ops *host,
                                  uint32_t S, bool have_guest, uint32_t G,
                                  const char *guest_vm, const char *stub_vm,
                                  const stubdm_spawn_opts *cfg,
                                  const stubdm_contract *contract);
/* What an asynchronous teardown is given (the strings and cfg are copied,
 * *contract is taken when it starts). */
struct stubdm__teardown {
    stubdm_ctx *ctx;
    const struct stubdm__host_ops *host;
    uint32_t S, G;
    bool have_guest;
    bool made; /* false: nothing to destroy, the op just completes */
    /* A domain the caller built and kept: undo the spawn's devices (cfg's)
     * and contract only, never destroy it; repause: pause it again first
     * (the spawn unpaused it). */
    bool detach, repause;
    const char *guest_vm, *stub_vm;
    const stubdm_spawn_opts *cfg;
    stubdm_contract **contract;
};
/*
 * Start the asynchronous teardown: the domain is destroyed in this call
 * (a failure returns, the op never starts, nothing is taken); scripts and
 * nodes follow from the loop.  *op_out is held (not floating).
 */
int stubdm__teardown_start(const struct stubdm__teardown *t,
                           stubdm_done_fn *done, void *user,
                           stubdm_op **op_out);
/* The handle is freed while its destroy runs: the op goes on alone. */
void stubdm__spawn_destroy_detach(stubdm_stubdom *s);
/* Complete a pending spawn with STUBDM_ECANCELED at once, without a
 * rollback: the caller tears the stubdomain down. */
void stubdm__spawn_cancel(stubdm_stubdom *s, const char *why);
/* The spawn failed and its rollback runs (its op completes after it). */
bool stubdm__spawn_rolling_back(const stubdm_stubdom *s);
/*
 * Start the asynchronous teardown of what s holds: consoles and QMP
 * closed now; the domain destroyed now when the spawn made it (or adopted
 * it with ADOPT_DESTROY), else, of an adopted domain it attached to, only
 * the spawn's part undone (detach); scripts and nodes from the loop.
 * *op_out: the op (also when there is nothing to undo: it just
 * completes).  A failure leaves s's state as it was.
 */
int stubdm__spawn_teardown_start(stubdm_stubdom *s, stubdm_done_fn *done,
                                 void *user, stubdm_op **op_out);
/* Stop serving every console; release: hand them over instead (the
 * stubdomain runs on). */
void stubdm__spawn_close_consoles(stubdm_stubdom *s, bool release);
/* The same, blocking (the hotplug scripts run inside the call): only
 * where no loop turns any more (stubdm_ctx_free) or the asynchronous
 * start failed for memory. */
int stubdm__spawn_teardown(stubdm_stubdom *s);

#endif /* STUBDM_SPAWN_SPAWN_H */
