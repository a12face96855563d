/*
 * The context: the state each module keeps per ctx.  No global state: all
 * of the library's state hangs off a stubdm_ctx.
 */
#ifndef STUBDM_CORE_CTX_H
#define STUBDM_CORE_CTX_H

#include <sys/types.h>

#include "core/base.h"
#include "core/list.h"
#include "core/loop.h"
#include "xen/hv.h"
#include "xen/xs.h"

struct stubdm_ctx {
    /* error state */
    char errmsg[STUBDM_ERRMSG_MAX];
    int os_errno;
    /* logging */
    stubdm_log_fn *log_fn;
    void *log_user;
    stubdm_log_level log_min;
    /* loop and dispatch */
    struct stubdm__loop loop;
    unsigned dispatch_depth; /* >0 while a dispatch entry point runs */
    unsigned callback_depth; /* >0 while a user callback runs */
    bool free_requested;
    /* stubdm_ctx_free is stopping the ops: no loop turns any more, so
     * what a teardown still has to do is done blocking (teardown.c). */
    bool disposing;
    /* what the application handed the running dispatch (the _ext entry
     * points), NULL outside one */
    void *dispatch_data;
    /* stubdm_ctx_postfork_child: this process is a fork of the one that
     * made the ctx.  Everything it holds is shared with the parent, so
     * nothing may talk through it (no unwatch, no unlock, no kill, no
     * write, no hook); torn_down: released already, only the ctx's own
     * block is left for stubdm_ctx_free. */
    bool postfork, torn_down;
    /* operations */
    struct stubdm__list ops_pending;
    struct stubdm__list ops_queued;
    /* Blocks of released ops, reused by the next op of the same size (a
     * command per round trip would otherwise be a calloc and a free). */
    struct {
        void *block;
        size_t size;
    } op_cache[8];
    unsigned n_op_cache;
    /* xenstore */
    struct stubdm__xs_state xs;
    /* hypervisor */
    struct stubdm__hv hv;
    /* domain-death monitor: the subscribers (while a release is handled,
     * those not yet checked sit in the handler's batch, so the list alone
     * does not say whether any is left: the count does) */
    struct stubdm__list domwatches;
    size_t n_domwatches;
    struct stubdm__xswatch release_watch;
    /* spawning: stubdm_host as set by stubdm_ctx_set_host (0: AUTO) */
    int host_kind;
    /* hotplug scripts (hotplug.c): not run (stubdm_ctx_set_hotplug 0);
     * pidfd_open found missing (ENOSYS: Linux < 5.3, or valgrind 3.19),
     * so children are reaped by polling from then on */
    bool no_hotplug, no_pidfd;
    /* child processes (spawn/child.c): every one started and not yet
     * reaped or handed over; the host reaps them
     * (STUBDM_CHILD_REAPING_HOST); pids given up on in that mode whose
     * status the host still owes; PIDFD_SIGNAL_PROCESS_GROUP refused
     * (Linux < 6.9: groups are signalled member by member) */
    struct stubdm__list children;
    bool child_host, no_pidfd_group;
    pid_t child_owed[32];
    size_t n_child_owed;
    /* a device-model save's stream bound (dm_state.c; 0: the default) */
    uint64_t save_limit;
    /* stubdm_ctx_set_hotplug_dir ("": /etc/xen/scripts) */
    char hotplug_dir[256];
    /* stubdm_ctx_set_sysfs_root ("": /sys), where pci/ finds pciback */
    char sysfs_root[256];
    /* QMP connections (qmp.c), each shared by the handles opened on it */
    struct stubdm__list qmp_conns;
    /* stubdm_ctx_set_console_limits (console.c; the defaults from ctx_new) */
    uint64_t console_rate;
    unsigned console_rotate_ms;
};

/* Free the ctx now (stubdm_ctx_free defers this while dispatching). */
void stubdm__ctx_destroy(stubdm_ctx *ctx);

#endif /* STUBDM_CORE_CTX_H */
