/*
 * Header-only adapter: drive a stubdm_ctx from a host event loop that, like
 * libxl's, offers only fd registrations and per-operation timeouts: the
 * shape of libxl_osevent_hooks (tools/include/libxl_event.h), whose
 * fd_register / fd_modify / fd_deregister a libxl application implements
 * and whose libxl_osevent_occurred_fd it calls back.
 *
 * The library wants one deadline per ctx that moves all the time (every
 * QMP command moves it); a host that offers only one-shot timeouts per
 * operation would need a register/deregister pair for each move.  So the
 * adapter keeps the ctx's one timer in a timerfd of its own and registers
 * it with the host as one more fd: set_timer is a timerfd_settime, and the
 * host's loop sees the deadline as that fd becoming readable.  The host's
 * timeout half (timeout_register / timeout_modify) is not used at all.
 *
 *   static const stubdm_osevent_host host = {my_fd_register, my_fd_modify,
 *                                            my_fd_deregister};
 *   struct stubdm_osevent a;
 *   stubdm_osevent_attach(&a, ctx, &host, my_loop);
 *   ... the host loop, when a registered fd is ready:
 *       stubdm_osevent_occurred_fd(for_lib, fd, revents, egc);
 *   stubdm_osevent_detach(&a);
 *
 * for_lib is what the adapter gave fd_register (libxl's "for_libxl");
 * dispatch_data (libxl's egc, or NULL) is what the library's callbacks
 * then read with stubdm_ctx_dispatch_data().  Callbacks run inside
 * stubdm_osevent_occurred_fd, in the host loop's thread, as they would
 * inside libxl_osevent_occurred_fd.
 */
#ifndef STUBDM_OSEVENT_H
#define STUBDM_OSEVENT_H

#include <libstubdm.h>

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* The host's fd registrations, as libxl_osevent_hooks' fd half: reg is the
 * host's own token for a registration (libxl's for_app_registration);
 * for_lib is handed back with every readiness (libxl's for_libxl).  A
 * negative return refuses, which the library reports to what needed the
 * fd. */
typedef struct stubdm_osevent_host {
    int (*fd_register)(void *user, int fd, void **reg_out, short events,
                       void *for_lib);
    int (*fd_modify)(void *user, int fd, void **reg_update, short events);
    void (*fd_deregister)(void *user, int fd, void *reg);
} stubdm_osevent_host;

struct stubdm_osevent {
    stubdm_ctx *ctx;
    const stubdm_osevent_host *host;
    void *user;
    int tfd;       /* the ctx's one timer */
    void *tfd_reg; /* its registration with the host */
    void **regs;   /* indexed by fd: the host's token */
    bool *have;    /* indexed by fd: registered with the host */
    size_t cap;
    unsigned timers; /* for tests: how often the deadline moved */
};

static inline int stubdm_osevent__grow(struct stubdm_osevent *a, int fd)
{
    size_t cap = a->cap ? a->cap : 64;
    void **regs;
    bool *have;

    while (cap <= (size_t)fd)
        cap *= 2;
    regs = (void **)realloc(a->regs, cap * sizeof(*regs));
    if (!regs)
        return -1;
    a->regs = regs;
    have = (bool *)realloc(a->have, cap * sizeof(*have));
    if (!have)
        return -1;
    a->have = have;
    memset(a->regs + a->cap, 0, (cap - a->cap) * sizeof(*regs));
    memset(a->have + a->cap, 0, (cap - a->cap) * sizeof(*have));
    a->cap = cap;
    return 0;
}

static inline int stubdm_osevent__watch_fd(void *user, int fd, short events)
{
    struct stubdm_osevent *a = (struct stubdm_osevent *)user;

    if ((size_t)fd >= a->cap && (events == 0 || stubdm_osevent__grow(a, fd)))
        return events == 0 ? 0 : -1;
    if (events == 0) {
        if (a->have[fd])
            a->host->fd_deregister(a->user, fd, a->regs[fd]);
        a->have[fd] = false;
        a->regs[fd] = NULL;
        return 0;
    }
    if (a->have[fd])
        return a->host->fd_modify(a->user, fd, &a->regs[fd], events);
    if (a->host->fd_register(a->user, fd, &a->regs[fd], events, a) < 0)
        return -1;
    a->have[fd] = true;
    return 0;
}

/* Absolute CLOCK_MONOTONIC milliseconds into the timerfd; -1 disarms.  A
 * zero it_value would disarm too, so "now or earlier" is 1 ns. */
static inline int stubdm_osevent__set_timer(void *user, int64_t deadline_ms)
{
    struct stubdm_osevent *a = (struct stubdm_osevent *)user;
    struct itimerspec its;

    memset(&its, 0, sizeof(its));
    a->timers++;
    if (deadline_ms >= 0) {
        its.it_value.tv_sec = deadline_ms / 1000;
        its.it_value.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    return timerfd_settime(a->tfd, TFD_TIMER_ABSTIME, &its, NULL) ? -1 : 0;
}

/* The host reports a registered fd ready (libxl_osevent_occurred_fd). */
static inline void stubdm_osevent_occurred_fd(void *for_lib, int fd,
                                              short revents,
                                              void *dispatch_data)
{
    struct stubdm_osevent *a = (struct stubdm_osevent *)for_lib;

    if (fd == a->tfd) {
        uint64_t n;
        if (read(a->tfd, &n, sizeof(n)) < 0) {
            /* EAGAIN: the deadline moved after the host polled */
        }
        stubdm_ctx_timer_fired_ext(a->ctx, dispatch_data);
        return;
    }
    stubdm_ctx_fd_ready_ext(a->ctx, fd, revents, dispatch_data);
}

/* Make the timerfd, register it, install the hooks (which registers every
 * fd the ctx already watches).  0 or -1. */
static inline int stubdm_osevent_attach(struct stubdm_osevent *a,
                                        stubdm_ctx *ctx,
                                        const stubdm_osevent_host *host,
                                        void *user)
{
    static const stubdm_loop_hooks hooks = {STUBDM_LOOP_HOOKS_VERSION,
                                            stubdm_osevent__watch_fd,
                                            stubdm_osevent__set_timer};

    memset(a, 0, sizeof(*a));
    a->ctx = ctx;
    a->host = host;
    a->user = user;
    a->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (a->tfd < 0)
        return -1;
    if (host->fd_register(user, a->tfd, &a->tfd_reg, POLLIN, a) < 0) {
        close(a->tfd);
        return -1;
    }
    if (stubdm_ctx_set_loop(ctx, &hooks, a)) {
        host->fd_deregister(user, a->tfd, a->tfd_reg);
        close(a->tfd);
        return -1;
    }
    return 0;
}

/* Remove the hooks and every registration the adapter made. */
static inline void stubdm_osevent_detach(struct stubdm_osevent *a)
{
    stubdm_ctx_set_loop(a->ctx, NULL, NULL);
    for (size_t fd = 0; fd < a->cap; fd++)
        if (a->have[fd])
            a->host->fd_deregister(a->user, (int)fd, a->regs[fd]);
    a->host->fd_deregister(a->user, a->tfd, a->tfd_reg);
    close(a->tfd);
    free(a->regs);
    free(a->have);
    memset(a, 0, sizeof(*a));
    a->tfd = -1;
}

#endif /* STUBDM_OSEVENT_H */
