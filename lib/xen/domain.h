/*
 * Domains (domain.c): is a domain alive, and if not, why; and the
 * domain-death monitor.
 */
#ifndef STUBDM_XEN_DOMAIN_H
#define STUBDM_XEN_DOMAIN_H

#include "core/list.h"

enum stubdm__dom_state {
    STUBDM__DOM_RUNNING,  /* exists and is not shutting down */
    STUBDM__DOM_SHUTDOWN, /* shut down cleanly (poweroff, reboot, ...) */
    STUBDM__DOM_CRASHED,
    STUBDM__DOM_DYING,
    STUBDM__DOM_GONE, /* no longer exists (destroyed / released) */
};

/* Describe the state; detail receives a human-readable cause. */
int stubdm__domain_state(stubdm_ctx *ctx, uint32_t domid,
                         enum stubdm__dom_state *state, char *detail,
                         size_t detail_len);
const char *stubdm__dom_state_name(enum stubdm__dom_state s);

/*
 * Domain-death monitor: one @releaseDomain watch per ctx, shared by every
 * subscriber, so N waits cost one xenstore watch, not N (xenstored limits
 * watches per connection).  The callback runs from dispatch when the
 * domain is found not running.
 */
struct stubdm__domwatch;
typedef void stubdm__domwatch_cb(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                                 enum stubdm__dom_state state,
                                 const char *detail);
struct stubdm__domwatch {
    stubdm__domwatch_cb *cb;
    uint32_t domid;
    bool active;
    struct stubdm__list link;
};
void stubdm__domwatch_init(struct stubdm__domwatch *dw,
                           stubdm__domwatch_cb *cb);
/*
 * Subscribe.  Checks the domain once now: if it is already not running,
 * *state_out/detail say so and the watch is NOT started.
 */
int stubdm__domwatch_start(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                           uint32_t domid, enum stubdm__dom_state *state_out,
                           char *detail, size_t detail_len);
void stubdm__domwatch_stop(stubdm_ctx *ctx, struct stubdm__domwatch *dw);

#endif /* STUBDM_XEN_DOMAIN_H */
