/*
 * Hotplug scripts of a stubdomain's backends (hotplug.c).
 */
#ifndef STUBDM_SPAWN_HOTPLUG_H
#define STUBDM_SPAWN_HOTPLUG_H

#include "core/base.h"

/* The backend key marking that the library ran the add script (so the
 * teardown, maybe by another process, runs remove). */
#define STUBDM__HOTPLUG_MARK "libstubdm-hotplug"
/* Bound on each remove/offline script at teardown. */
#define STUBDM__HOTPLUG_REMOVE_TIMEOUT_MS 20000

struct stubdm__hotplug_dev {
    const char *kind; /* "vbd" or "vif" */
    unsigned devid;
    const char *script; /* absolute path */
};

/*
 * Run the add (vbd) / online (vif) script of each device of stubdomain
 * domid once its backend (dom0's) reaches InitWait, and complete when
 * every script exited 0 and its hotplug-status is "connected"; a failure,
 * the stubdomain's death or timeout_ms complete it with the cause (the
 * scripts still running are killed).  The devices are copied.
 */
int stubdm__hotplug_add(stubdm_ctx *ctx, uint32_t domid,
                        const struct stubdm__hotplug_dev *devs, size_t n,
                        int timeout_ms, stubdm_done_fn *done, void *user,
                        stubdm_op **op_out);
/*
 * Teardown, blocking: run remove (vbd) / offline (vif) for every backend
 * of domid marked STUBDM__HOTPLUG_MARK, each bounded.  A backend's script
 * runs only when dom0 owns its "script" node and the path is in the ctx's
 * hotplug directory or one of own_scripts (the n paths the spawn itself
 * wrote; may be NULL).  Every one is attempted; 0 or the first failure
 * (message on the ctx), the others logged.
 */
int stubdm__hotplug_remove_all(stubdm_ctx *ctx, uint32_t domid,
                               const char *const *own_scripts, size_t n);
/*
 * The same, asynchronous: the scripts run one after another from the
 * ctx's loop (a dispatch never waits for one).  The backends and their
 * scripts are read now; *op_out stays NULL when none is marked (nothing
 * to run, nothing called back).  The op completes with 0 or the first
 * failure; freeing it while pending kills the running script, and the
 * backends not done yet keep their mark (a later teardown runs them).
 */
int stubdm__hotplug_remove(stubdm_ctx *ctx, uint32_t domid,
                           const char *const *own_scripts, size_t n,
                           stubdm_done_fn *done, void *user,
                           stubdm_op **op_out);

#endif /* STUBDM_SPAWN_HOTPLUG_H */
