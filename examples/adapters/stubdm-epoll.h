/*
 * Header-only adapter: drive a stubdm_ctx from a hand-written epoll loop
 * through the push hooks (watch_fd / set_timer).  The ctx's single timer
 * is a timerfd in the same epoll set, so the loop needs one epoll_wait.
 *
 *   struct stubdm_epoll ep;
 *   stubdm_epoll_attach(&ep, ctx);            // creates the epoll fd
 *   while (!done) stubdm_epoll_run_once(&ep, -1);
 *   stubdm_epoll_detach(&ep);
 *
 * An application with its own epoll set can instead add ep.epfd to it (an
 * epoll fd is pollable) and call stubdm_epoll_run_once(&ep, 0) when it is
 * readable.
 */
#ifndef STUBDM_EPOLL_H
#define STUBDM_EPOLL_H

#include <libstubdm.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct stubdm_epoll {
    stubdm_ctx *ctx;
    int epfd, tfd;
    unsigned hook_calls; /* for tests: how often the library called us */
};

static inline uint32_t stubdm_epoll__events(short ev)
{
    return (ev & POLLIN ? EPOLLIN : 0u) | (ev & POLLOUT ? EPOLLOUT : 0u);
}

static inline int stubdm_epoll__watch_fd(void *user, int fd, short events)
{
    struct stubdm_epoll *ep = (struct stubdm_epoll *)user;
    struct epoll_event e;

    ep->hook_calls++;
    memset(&e, 0, sizeof(e));
    e.events = stubdm_epoll__events(events);
    e.data.fd = fd;
    if (events == 0) {
        epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    if (epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &e) == 0)
        return 0;
    return errno == ENOENT ? epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &e) : -1;
}

static inline int stubdm_epoll__set_timer(void *user, int64_t deadline_ms)
{
    struct stubdm_epoll *ep = (struct stubdm_epoll *)user;
    struct itimerspec its;

    ep->hook_calls++;
    memset(&its, 0, sizeof(its));
    if (deadline_ms >= 0) {
        /* Deadlines are CLOCK_MONOTONIC, as is this timerfd; 0 would
         * disarm, so a deadline in the past becomes 1 ns. */
        its.it_value.tv_sec = deadline_ms / 1000;
        its.it_value.tv_nsec = (deadline_ms % 1000) * 1000000L;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    return timerfd_settime(ep->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static inline int stubdm_epoll_attach(struct stubdm_epoll *ep, stubdm_ctx *ctx)
{
    static const stubdm_loop_hooks hooks = {STUBDM_LOOP_HOOKS_VERSION,
                                            stubdm_epoll__watch_fd,
                                            stubdm_epoll__set_timer};
    struct epoll_event e;
    int rc;

    memset(ep, 0, sizeof(*ep));
    ep->ctx = ctx;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    ep->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (ep->epfd < 0 || ep->tfd < 0)
        return STUBDM_EFAIL;
    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN;
    e.data.fd = ep->tfd;
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->tfd, &e) < 0)
        return STUBDM_EFAIL;
    rc = stubdm_ctx_set_loop(ctx, &hooks, ep);
    return rc;
}

/* Wait up to timeout_ms (-1: forever) and dispatch what is ready. */
static inline int stubdm_epoll_run_once(struct stubdm_epoll *ep,
                                        int timeout_ms)
{
    struct epoll_event evs[16];
    int n = epoll_wait(ep->epfd, evs, 16, timeout_ms);

    if (n < 0)
        return errno == EINTR ? 0 : STUBDM_EFAIL;
    for (int i = 0; i < n; i++) {
        int rc;
        if (evs[i].data.fd == ep->tfd) {
            uint64_t expirations;
            if (read(ep->tfd, &expirations, sizeof(expirations)) < 0) {
                /* EAGAIN: already consumed; nothing to do */
            }
            rc = stubdm_ctx_timer_fired(ep->ctx);
        } else {
            short rev = (short)((evs[i].events & EPOLLIN ? POLLIN : 0) |
                                (evs[i].events & EPOLLOUT ? POLLOUT : 0) |
                                (evs[i].events & EPOLLERR ? POLLERR : 0) |
                                (evs[i].events & EPOLLHUP ? POLLHUP : 0));
            rc = stubdm_ctx_fd_ready(ep->ctx, evs[i].data.fd, rev);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static inline void stubdm_epoll_detach(struct stubdm_epoll *ep)
{
    if (ep->ctx)
        stubdm_ctx_set_loop(ep->ctx, NULL, NULL);
    if (ep->epfd >= 0)
        close(ep->epfd);
    if (ep->tfd >= 0)
        close(ep->tfd);
    ep->epfd = ep->tfd = -1;
    ep->ctx = NULL;
}

#endif
