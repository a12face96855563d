/*
 * Event loop (loop.c): fd watches and timers multiplexed onto the
 * application's hooks (stubdm_ctx_set_loop), its poll loop
 * (stubdm_ctx_poll_prepare/dispatch) or stubdm_ctx_run_once; and the
 * dispatch bracket every public entry point that runs callbacks uses.
 */
#ifndef STUBDM_CORE_LOOP_H
#define STUBDM_CORE_LOOP_H

#include "core/base.h"

#include <stdatomic.h>

struct stubdm__fd;
typedef void stubdm__fd_cb(stubdm_ctx *ctx, struct stubdm__fd *w,
                           short revents);

struct stubdm__fd {
    stubdm__fd_cb *cb;
    int fd;       /* -1 while not watching */
    short events; /* what we want; 0 is a valid "registered, idle" state */
    /* run_once's epoll set (loop.c): registered there with 'events'; or
     * refused by epoll (a regular file), which makes run_once poll. */
    bool in_ep, ep_refused;
};

void stubdm__fd_init(struct stubdm__fd *w, stubdm__fd_cb *cb);
/* Start watching fd, or change the events of an active watch. */
int stubdm__fd_watch(stubdm_ctx *ctx, struct stubdm__fd *w, int fd,
                     short events);
/* Stop watching.  Idempotent; the fd itself is not closed.  Stop a watch
 * BEFORE closing its fd: stubdm_ctx_run_once keeps the watches in an epoll
 * set, which must drop the fd while it still names the watched file. */
void stubdm__fd_stop(stubdm_ctx *ctx, struct stubdm__fd *w);
static inline bool stubdm__fd_active(const struct stubdm__fd *w)
{
    return w->fd >= 0;
}

struct stubdm__timer;
typedef void stubdm__timer_cb(stubdm_ctx *ctx, struct stubdm__timer *t);

struct stubdm__timer {
    stubdm__timer_cb *cb;
    int64_t deadline_ms;
    size_t heap_index; /* SIZE_MAX while not armed; with fresh, the index
                        * in the loop's fresh array instead of the heap */
    bool fresh;
};

static inline void stubdm__timer_init(struct stubdm__timer *t,
                                      stubdm__timer_cb *cb)
{
    t->cb = cb;
    t->deadline_ms = 0;
    t->heap_index = (size_t)-1; /* not armed */
    t->fresh = false;
}
/* Arm (or re-arm) for an absolute deadline.  Armed during a dispatch, the
 * timer runs on a later dispatch at the earliest, whatever its deadline:
 * a callback that re-arms itself for "now" yields to the fds and other
 * timers instead of running again in the same pass. */
int stubdm__timer_arm(stubdm_ctx *ctx, struct stubdm__timer *t,
                      int64_t deadline_ms);
void stubdm__timer_stop(stubdm_ctx *ctx, struct stubdm__timer *t);
static inline bool stubdm__timer_armed(const struct stubdm__timer *t)
{
    return t->heap_index != (size_t)-1;
}

/* Loop state embedded in the ctx. */
struct stubdm__loop {
    stubdm_loop_hooks hooks;
    void *hooks_user;
    bool have_hooks;
    struct stubdm__fd **by_fd; /* indexed by fd number */
    size_t by_fd_cap;
    size_t nwatched;
    struct stubdm__timer **heap;
    size_t heap_len, heap_cap;
    /* Timers armed during the current dispatch, kept out of the heap until
     * it ends (the heap has room reserved for them). */
    struct stubdm__timer **fresh;
    size_t fresh_len, fresh_cap;
    int64_t reported_deadline; /* last value given to set_timer */
    /* stubdm_ctx_run_once's kernel side, created on its first call: an
     * epoll set holding every watch with events (kept in step by
     * fd_watch/fd_stop), and a timerfd in it for the timers.  The timerfd
     * is armed lazily: only when the earliest deadline moves before the
     * expiry it already has, so a stream of commands whose deadlines only
     * move later re-arms nothing (a spurious expiry re-arms it once).
     * epfd -1: none yet; ep_off: epoll unusable, run_once polls. */
    int epfd, tfd;
    int64_t tfd_armed;   /* ms (CLOCK_MONOTONIC), -1: not armed */
    unsigned ep_forkgen; /* fork generation the set was made in */
    size_t ep_refused;   /* watches epoll refused: run_once polls */
    bool ep_off;
    /* The only fields another thread touches (stubdm_ctx_wake and
     * stubdm_ctx_interrupt): an eventfd run_once waits on besides the
     * watches, made by run_once's first call (-1 before: a wake then only
     * leaves wake_pending, which run_once reads after making it); and the
     * interrupt a *_sync call consumes. */
    _Atomic int wfd;
    atomic_bool wake_pending, interrupt;
};

void stubdm__loop_init(struct stubdm__loop *l);
void stubdm__loop_dispose(stubdm_ctx *ctx);
/* The deadline the application must honour (-1 none, 0 right away). */
int64_t stubdm__loop_deadline(stubdm_ctx *ctx);
/* Push the current deadline to the hooks if it changed.  A refusal is
 * STUBDM_EFAIL with the ctx's error set and a warning logged, and the
 * deadline is offered again on the next sync.  why: what changed the
 * deadline, for the message (a dispatch's end, a stop, a completion). */
int stubdm__loop_sync_timer(stubdm_ctx *ctx, const char *why);

/* Consume a pending stubdm_ctx_interrupt (true: the *_sync call asking
 * cancels its op and returns STUBDM_ECANCELED). */
bool stubdm__interrupt_take(stubdm_ctx *ctx);

/* Dispatch bracket, used by every public entry point that runs callbacks. */
int stubdm__dispatch_enter(stubdm_ctx *ctx);
void stubdm__dispatch_leave(stubdm_ctx *ctx);
/* Bracket for calling one user callback; false: stop, the ctx is dying. */
void stubdm__callback_enter(stubdm_ctx *ctx);
bool stubdm__callback_leave(stubdm_ctx *ctx);

#endif /* STUBDM_CORE_LOOP_H */
