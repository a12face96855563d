/*
 * The cleanup after a served stubdomain that died or was destroyed by
 * anyone: stubdm_stubdom_destroy_by_domid on its own ctx, from the
 * daemon's loop (the domain if it is still there, its console, vbd and
 * vif backends with their hotplug remove/offline scripts, the contract).
 * Also at start, for a stubdomain the adoption rules select that died
 * while no stubdmd ran (adopt.c adopts it already dead).
 *
 * A stubdomain whose domain is gone (destroyed, not just crashed) may be
 * torn down by whoever destroyed it (stubdm_stubdom_destroy in a
 * toolstack, whose scripts and node removals follow its destruction): the
 * cleanup waits STUBDMD_CLEANUP_GRACE_MS first, then takes what is left
 * (nothing: STUBDM_ENOENT).  One that crashed or shut down and is still
 * there is nobody else's: cleaned up at once.
 *
 * Unless its adoption node said serve only (STUBDM_SERVICE_SERVE_ONLY):
 * its builder (libxl) tears it down, crashed or not, and a second teardown
 * beside its own would run the block script's remove twice (a loop device
 * left).  Then the daemon stops serving it and removes only its own: the
 * proxies' sockets and the serials' tty nodes (stubdmd_qmp_stop,
 * stubdmd_console_stop).
 */
#include "stubdmd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_cleaned(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_served *s = user;

    if (rc == STUBDM_ECANCELED && !s->cleanup)
        return; /* freed by us */
    stubdmd_log(rc ? STUBDM_LOG_WARN : STUBDM_LOG_INFO, s,
                "cleaned up %lld ms after its death was seen%s%s",
                (long long)(now_ms() - s->died_ms), rc ? ": " : "",
                rc ? stubdm_op_errmsg(op) : "");
    stubdm_op_free(op);
    s->cleanup = NULL;
    s->cleaned = true;
}

/* The teardown, from the loop (outside any dispatch of s->ctx). */
static void cleanup_run(struct stubdmd_served *s)
{
    int rc = stubdm_stubdom_destroy_by_domid(s->ctx, s->stub, 0, on_cleaned, s,
                                             &s->cleanup);

    if (!rc)
        return;
    if (rc == STUBDM_ENOENT)
        stubdmd_log(STUBDM_LOG_INFO, s,
                    "nothing left to clean up (its destroyer did)");
    else
        stubdmd_log(STUBDM_LOG_WARN, s, "not cleaned up: %s: %s",
                    stubdm_errname(rc), stubdm_ctx_errmsg(s->ctx));
    s->cleaned = true;
}

static void on_grace(struct stubdmd_served *s)
{
    uint64_t n;

    if (read(s->cleanup_fd, &n, sizeof(n)) == (ssize_t)sizeof(n) &&
        !s->cleaned && !s->cleanup)
        cleanup_run(s);
}

/* Cleanup_run after the grace, from a timerfd in the daemon's loop. */
static int cleanup_later(struct stubdmd_served *s)
{
    struct itimerspec its = {
        .it_value = {STUBDMD_CLEANUP_GRACE_MS / 1000,
                     (STUBDMD_CLEANUP_GRACE_MS % 1000) * 1000000L}};
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &s->cleanup_src};

    s->cleanup_src.kind = SRC_TIMER;
    s->cleanup_src.served = s;
    s->cleanup_src.timer = on_grace;
    s->cleanup_fd = timerfd_create(CLOCK_MONOTONIC,
                                   TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->cleanup_fd < 0)
        return -1;
    if (epoll_ctl(s->d->epfd, EPOLL_CTL_ADD, s->cleanup_fd, &e) < 0 ||
        timerfd_settime(s->cleanup_fd, 0, &its, NULL) < 0) {
        close(s->cleanup_fd);
        s->cleanup_fd = -1;
        return -1;
    }
    return 0;
}

/* s died (s->gone): stop serving it, then clean up after it.  Once only;
 * s->cleaned when done. */
void stubdmd_cleanup_begin(struct stubdmd_served *s)
{
    bool there;

    if (s->died_ms)
        return;
    s->died_ms = now_ms();
    stubdmd_qmp_stop(s);
    stubdmd_console_stop(s);
    if (!s->ctx || s->serve_only) {
        if (s->serve_only)
            stubdmd_log(STUBDM_LOG_INFO, s,
                        "gone: no longer served (its toolstack tears it "
                        "down)");
        s->cleaned = true;
        return;
    }
    /* Still introduced: crashed or shut down, not destroyed by anyone. */
    there = xs_is_domain_introduced(s->d->xs, s->stub);
    stubdmd_log(STUBDM_LOG_INFO, s, "gone (%s): cleaning up%s",
                there ? "still there" : "destroyed",
                there ? "" : " after a grace for its destroyer's own");
    if (there)
        cleanup_run(s);
    else if (cleanup_later(s) < 0) {
        stubdmd_log(STUBDM_LOG_WARN, s, "no timer (%s): cleaning up now",
                    strerror(errno));
        cleanup_run(s);
    }
}

void stubdmd_cleanup_stop(struct stubdmd_served *s)
{
    if (s->cleanup_fd >= 0) {
        epoll_ctl(s->d->epfd, EPOLL_CTL_DEL, s->cleanup_fd, NULL);
        close(s->cleanup_fd);
        s->cleanup_fd = -1;
    }
}
