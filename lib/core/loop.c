/*
 * The event registry: fd watches and timers, multiplexed onto either the
 * application's push hooks (watch_fd / set_timer) or the poll interface.
 *
 * fds are indexed by number, so fd_ready is O(1) whatever the number of
 * watches; timers live in a binary min-heap, so one application timer
 * serves any number of deadlines at O(log n) per change.  Completed
 * operations waiting for their callbacks count as a deadline of "now", which
 * is how "never complete inside the starting call" still gets the
 * application to come back promptly.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/op.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* The watches' events go into the epoll set as they are. */
_Static_assert(EPOLLIN == POLLIN && EPOLLPRI == POLLPRI &&
                   EPOLLOUT == POLLOUT && EPOLLERR == POLLERR &&
                   EPOLLHUP == POLLHUP && EPOLLRDHUP == POLLRDHUP,
               "epoll and poll event bits differ");

int64_t stubdm_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void stubdm__loop_init(struct stubdm__loop *l)
{
    memset(l, 0, sizeof(*l));
    l->reported_deadline = -1;
    l->epfd = -1;
    l->tfd = -1;
    l->tfd_armed = -1;
    atomic_init(&l->wfd, -1);
    atomic_init(&l->wake_pending, false);
    atomic_init(&l->interrupt, false);
}

/* ---- waking run_once from another thread -------------------------------- */

/* epoll data of the wake eventfd. */
#define WAKE_TAG (UINT64_MAX - 1)

/* Async-signal-safe: lock-free atomics and write(2) only. */
void stubdm_ctx_wake(stubdm_ctx *ctx)
{
    int saved = errno, fd;
    uint64_t one = 1;

    if (!ctx)
        return;
    atomic_store(&ctx->loop.wake_pending, true);
    fd = atomic_load(&ctx->loop.wfd);
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is full, so a wake is pending anyway */
    }
    errno = saved;
}

void stubdm_ctx_interrupt(stubdm_ctx *ctx)
{
    if (!ctx)
        return;
    atomic_store(&ctx->loop.interrupt, true);
    stubdm_ctx_wake(ctx);
}

bool stubdm__interrupt_take(stubdm_ctx *ctx)
{
    return atomic_exchange(&ctx->loop.interrupt, false);
}

/* The eventfd, made on run_once's first call.  It is published before
 * wake_pending is read (wake_take), so a wake either finds it or leaves
 * the flag that run_once reads next: none is lost. */
static int wake_ready(stubdm_ctx *ctx)
{
    struct stubdm__loop *l = &ctx->loop;
    int fd;

    if (atomic_load(&l->wfd) >= 0)
        return 0;
    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return stubdm__fail(ctx, STUBDM_EFAIL, errno, "the wake eventfd: %s",
                            strerror(errno));
    atomic_store(&l->wfd, fd);
    return 0;
}

/* Whether a wake came since the last look (then run_once does not sleep). */
static bool wake_take(struct stubdm__loop *l)
{
    return atomic_exchange(&l->wake_pending, false);
}

static void wake_drain(struct stubdm__loop *l)
{
    uint64_t n;

    if (read(atomic_load(&l->wfd), &n, sizeof(n)) < 0) {
        /* EAGAIN: another look drained it */
    }
}

/* ---- run_once's epoll set ----------------------------------------------- */

/* epoll data of the timerfd; watches carry their fd number. */
#define TFD_TAG UINT64_MAX

/* A forked child must not share its parent's epoll set (registrations live
 * in the set, not in the descriptor): it makes its own. */
static unsigned fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    fork_gen++;
}

static void fork_hook_install(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

static void ep_teardown(struct stubdm__loop *l);

/* In a forked child the set is still the parent's: drop it (closing only
 * the child's descriptors) before touching any registration. */
static inline void ep_check_fork(struct stubdm__loop *l)
{
    if (l->epfd >= 0 && l->ep_forkgen != fork_gen)
        ep_teardown(l);
}

/* Bring w's registration in the epoll set in line with w->events (w->fd
 * is valid).  A watch epoll refuses (EPERM: a regular file, which poll
 * reports always ready) is counted, and run_once polls while one exists. */
static void ep_update(struct stubdm__loop *l, struct stubdm__fd *w)
{
    struct epoll_event ev = {.events = (uint32_t)(unsigned short)w->events,
                             .data.u64 = (uint64_t)w->fd};

    ep_check_fork(l);
    if (l->epfd < 0)
        return;
    if (!w->events) {
        if (w->in_ep)
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, &ev);
        if (w->ep_refused)
            l->ep_refused--;
        w->in_ep = w->ep_refused = false;
        return;
    }
    if (w->ep_refused)
        return;
    if (w->in_ep && epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) == 0)
        return;
    /* Not registered, or the registration went with a closed file. */
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev) == 0 ||
        (errno == EEXIST &&
         epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) == 0)) {
        w->in_ep = true;
        return;
    }
    w->in_ep = false;
    w->ep_refused = true;
    l->ep_refused++;
}

static void ep_forget(struct stubdm__loop *l, struct stubdm__fd *w)
{
    ep_check_fork(l);
    if (w->in_ep && l->epfd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    if (w->ep_refused)
        l->ep_refused--;
    w->in_ep = w->ep_refused = false;
}

static void ep_teardown(struct stubdm__loop *l)
{
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->tfd >= 0)
        close(l->tfd);
    l->epfd = l->tfd = -1;
    l->tfd_armed = -1;
    l->ep_refused = 0;
    for (size_t fd = 0; fd < l->by_fd_cap; fd++)
        if (l->by_fd[fd])
            l->by_fd[fd]->in_ep = l->by_fd[fd]->ep_refused = false;
}

/* The epoll set, made on first use (and again in a forked child).  False:
 * epoll is unusable here, run_once polls. */
static bool ep_ready(struct stubdm__loop *l)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TFD_TAG};

    if (l->epfd >= 0 && l->ep_forkgen == fork_gen)
        return true;
    if (l->ep_off)
        return false;
    pthread_once(&fork_once, fork_hook_install);
    ep_teardown(l);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->epfd < 0 || l->tfd < 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->tfd, &ev)) {
        ep_teardown(l);
        l->ep_off = true;
        return false;
    }
    struct epoll_event wev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
    int wfd = atomic_load(&l->wfd);
    if (wfd >= 0 && epoll_ctl(l->epfd, EPOLL_CTL_ADD, wfd, &wev)) {
        ep_teardown(l);
        l->ep_off = true;
        return false;
    }
    l->ep_forkgen = fork_gen;
    for (size_t fd = 0; fd < l->by_fd_cap; fd++)
        if (l->by_fd[fd])
            ep_update(l, l->by_fd[fd]);
    return true;
}

/* Arm the timerfd for deadline_ms (absolute, CLOCK_MONOTONIC). */
static int tfd_arm(struct stubdm__loop *l, int64_t deadline_ms)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = deadline_ms / 1000,
                     .tv_nsec = (long)(deadline_ms % 1000) * 1000000L},
    };

    if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL))
        return -1;
    l->tfd_armed = deadline_ms;
    return 0;
}

/* ---- fd watches --------------------------------------------------------- */

void stubdm__fd_init(struct stubdm__fd *w, stubdm__fd_cb *cb)
{
    w->cb = cb;
    w->fd = -1;
    w->events = 0;
    w->in_ep = w->ep_refused = false;
}

/* A hook refused with nobody to hand the failure to: the ctx's error
 * (which the next public call may replace) and a warning in the log. */
static void hook_refused(stubdm_ctx *ctx, const char *hook, const char *fmt,
                         ...) STUBDM_PRINTF(3, 4);
static void hook_refused(stubdm_ctx *ctx, const char *hook, const char *fmt,
                         ...)
{
    char what[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    stubdm__fail(ctx, STUBDM_EFAIL, 0, "the application's %s hook refused %s",
                 hook, what);
    stubdm__log(ctx, STUBDM_LOG_WARN, 0, "loop", "%s", ctx->errmsg);
}

static int hook_watch(stubdm_ctx *ctx, int fd, short events)
{
    struct stubdm__loop *l = &ctx->loop;

    if (!l->have_hooks)
        return 0;
    if (l->hooks.watch_fd(l->hooks_user, fd, events) < 0)
        return stubdm__fail(ctx, STUBDM_EFAIL, 0,
                            "the application's watch_fd hook refused fd %d",
                            fd);
    return 0;
}

int stubdm__fd_watch(stubdm_ctx *ctx, struct stubdm__fd *w, int fd,
                     short events)
{
    struct stubdm__loop *l = &ctx->loop;
    int rc;

    if (fd < 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "watch of fd %d", fd);
    if (w->fd >= 0 && w->fd != fd)
        stubdm__fd_stop(ctx, w);
    if (w->fd == fd) {
        if (w->events == events)
            return 0;
        rc = hook_watch(ctx, fd, events);
        if (rc)
            return rc;
        w->events = events;
        ep_update(l, w);
        return 0;
    }
    if ((size_t)fd >= l->by_fd_cap) {
        size_t cap = l->by_fd_cap ? l->by_fd_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        struct stubdm__fd **n = stubdm__reallocarray(l->by_fd, cap,
                                                     sizeof(*n));
        if (!n)
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "fd table");
        memset(n + l->by_fd_cap, 0, (cap - l->by_fd_cap) * sizeof(*n));
        l->by_fd = n;
        l->by_fd_cap = cap;
    }
    if (l->by_fd[fd])
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "fd %d is already watched by the library", fd);
    rc = hook_watch(ctx, fd, events);
    if (rc)
        return rc;
    l->by_fd[fd] = w;
    l->nwatched++;
    w->fd = fd;
    w->events = events;
    w->in_ep = w->ep_refused = false;
    ep_update(l, w);
    return 0;
}

void stubdm__fd_stop(stubdm_ctx *ctx, struct stubdm__fd *w)
{
    struct stubdm__loop *l = &ctx->loop;

    if (w->fd < 0)
        return;
    /* No operation is left to fail (the watch's owner is letting go of
     * the fd, often to close it): the refusal goes to the ctx and the log,
     * since the application may go on watching a closed descriptor. */
    if (l->have_hooks && w->events &&
        l->hooks.watch_fd(l->hooks_user, w->fd, 0) < 0)
        hook_refused(ctx, "watch_fd", "unwatching fd %d", w->fd);
    ep_forget(l, w);
    l->by_fd[w->fd] = NULL;
    l->nwatched--;
    w->fd = -1;
    w->events = 0;
}

/* ---- timers ------------------------------------------------------------- */

#define NOT_ARMED ((size_t)-1)

static void heap_set(struct stubdm__loop *l, size_t i, struct stubdm__timer *t)
{
    l->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct stubdm__loop *l, size_t i)
{
    struct stubdm__timer *t = l->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->deadline_ms <= t->deadline_ms)
            break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void heap_down(struct stubdm__loop *l, size_t i)
{
    struct stubdm__timer *t = l->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len)
            break;
        if (c + 1 < l->heap_len &&
            l->heap[c + 1]->deadline_ms < l->heap[c]->deadline_ms)
            c++;
        if (t->deadline_ms <= l->heap[c]->deadline_ms)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

static void heap_remove(struct stubdm__loop *l, struct stubdm__timer *t)
{
    size_t i = t->heap_index;
    struct stubdm__timer *last = l->heap[--l->heap_len];

    t->heap_index = NOT_ARMED;
    if (last == t)
        return;
    heap_set(l, i, last);
    heap_up(l, i);
    heap_down(l, last->heap_index);
}

static void fresh_remove(struct stubdm__loop *l, struct stubdm__timer *t)
{
    struct stubdm__timer *last = l->fresh[--l->fresh_len];

    l->fresh[t->heap_index] = last;
    last->heap_index = t->heap_index;
    t->heap_index = NOT_ARMED;
    t->fresh = false;
}

static void timer_unlink(struct stubdm__loop *l, struct stubdm__timer *t)
{
    if (t->fresh)
        fresh_remove(l, t);
    else
        heap_remove(l, t);
}

/* Room for n more timers in the array *a of capacity *cap. */
static int reserve(stubdm_ctx *ctx, struct stubdm__timer ***a, size_t *cap,
                   size_t need)
{
    size_t c = *cap ? *cap : 16;
    struct stubdm__timer **n;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    n = stubdm__reallocarray(*a, c, sizeof(*n));
    if (!n)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "timers");
    *a = n;
    *cap = c;
    return 0;
}

int stubdm__timer_arm(stubdm_ctx *ctx, struct stubdm__timer *t,
                      int64_t deadline_ms)
{
    struct stubdm__loop *l = &ctx->loop;

    if (t->heap_index != NOT_ARMED)
        timer_unlink(l, t);
    /* The heap keeps room for the fresh timers too, so that moving them in
     * at the end of the dispatch cannot fail. */
    if (reserve(ctx, &l->heap, &l->heap_cap, l->heap_len + l->fresh_len + 1))
        return STUBDM_ENOMEM;
    t->deadline_ms = deadline_ms;
    if (ctx->dispatch_depth) {
        if (reserve(ctx, &l->fresh, &l->fresh_cap, l->fresh_len + 1))
            return STUBDM_ENOMEM;
        t->fresh = true;
        t->heap_index = l->fresh_len;
        l->fresh[l->fresh_len++] = t;
        return 0;
    }
    heap_set(l, l->heap_len++, t);
    heap_up(l, t->heap_index);
    /* Refused: the timer would never fire, so the caller that armed it
     * fails instead (and the application keeps the deadline it had). */
    if (stubdm__loop_sync_timer(ctx, "arming a timer")) {
        heap_remove(l, t);
        return STUBDM_EFAIL;
    }
    return 0;
}

void stubdm__timer_stop(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    if (t->heap_index == NOT_ARMED)
        return;
    timer_unlink(&ctx->loop, t);
    if (!ctx->dispatch_depth)
        stubdm__loop_sync_timer(ctx, "a timer's stop");
}

/* The dispatch ends: the timers it armed join the heap (room reserved). */
static void merge_fresh(struct stubdm__loop *l)
{
    while (l->fresh_len) {
        struct stubdm__timer *t = l->fresh[--l->fresh_len];
        t->fresh = false;
        heap_set(l, l->heap_len++, t);
        heap_up(l, t->heap_index);
    }
}

int64_t stubdm__loop_deadline(stubdm_ctx *ctx)
{
    if (!stubdm__list_empty(&ctx->ops_queued))
        return 0;
    if (ctx->loop.heap_len)
        return ctx->loop.heap[0]->deadline_ms;
    return -1;
}

int stubdm__loop_sync_timer(stubdm_ctx *ctx, const char *why)
{
    struct stubdm__loop *l = &ctx->loop;
    int64_t d;

    if (!l->have_hooks)
        return 0;
    d = stubdm__loop_deadline(ctx);
    if (d == l->reported_deadline)
        return 0;
    if (l->hooks.set_timer(l->hooks_user, d) == 0) {
        l->reported_deadline = d;
        return 0;
    }
    /* The deadline stays unreported, so the next sync (the end of every
     * dispatch) asks again.  Logged even when a caller gets the failure:
     * one that cannot hand it on (a re-arm in a stop) would lose it. */
    hook_refused(ctx, "set_timer", "deadline %" PRId64 " (after %s)", d, why);
    return STUBDM_EFAIL;
}

/* Timers armed during this dispatch are not in the heap yet (see
 * stubdm__timer_arm), so this pass ends: a continuation that re-arms
 * itself for "now" runs once per dispatch. */
static void run_expired_timers(stubdm_ctx *ctx)
{
    struct stubdm__loop *l = &ctx->loop;

    if (!l->heap_len)
        return;
    int64_t now = stubdm_now_ms();

    while (l->heap_len && l->heap[0]->deadline_ms <= now &&
           !ctx->free_requested) {
        struct stubdm__timer *t = l->heap[0];
        heap_remove(l, t);
        t->cb(ctx, t);
    }
}

/* ---- dispatch ----------------------------------------------------------- */

int stubdm__dispatch_enter(stubdm_ctx *ctx)
{
    if (ctx->dispatch_depth || ctx->callback_depth)
        return STUBDM_ERECURSIVE;
    ctx->dispatch_depth = 1;
    return 0;
}

void stubdm__dispatch_leave(stubdm_ctx *ctx)
{
    if (!ctx->free_requested)
        stubdm__ops_run_queued(ctx);
    ctx->dispatch_depth = 0;
    ctx->dispatch_data = NULL;
    if (ctx->free_requested) {
        stubdm__ctx_destroy(ctx);
        return;
    }
    merge_fresh(&ctx->loop);
    stubdm__loop_sync_timer(ctx, "a dispatch");
}

void stubdm__callback_enter(stubdm_ctx *ctx)
{
    ctx->callback_depth++;
}

bool stubdm__callback_leave(stubdm_ctx *ctx)
{
    ctx->callback_depth--;
    return !ctx->free_requested;
}

int stubdm_ctx_set_loop(stubdm_ctx *ctx, const stubdm_loop_hooks *hooks,
                        void *user)
{
    struct stubdm__loop *l;

    if (!ctx)
        return STUBDM_EINVAL;
    l = &ctx->loop;
    if (!hooks) {
        l->have_hooks = false;
        l->reported_deadline = -1;
        return 0;
    }
    if (hooks->version != STUBDM_LOOP_HOOKS_VERSION || !hooks->watch_fd ||
        !hooks->set_timer)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "loop hooks: version %u (expected %u) or a NULL "
                            "hook",
                            hooks->version, STUBDM_LOOP_HOOKS_VERSION);
    l->hooks = *hooks;
    l->hooks_user = user;
    l->have_hooks = true;
    l->reported_deadline = -2; /* force the first report */
    for (size_t fd = 0; fd < l->by_fd_cap; fd++) {
        struct stubdm__fd *w = l->by_fd[fd];
        if (w && w->events && hook_watch(ctx, (int)fd, w->events)) {
            l->have_hooks = false;
            return STUBDM_EFAIL;
        }
    }
    if (stubdm__loop_sync_timer(ctx, "installing the hooks")) {
        l->have_hooks = false;
        return STUBDM_EFAIL;
    }
    return 0;
}

void *stubdm_ctx_dispatch_data(const stubdm_ctx *ctx)
{
    return ctx ? ctx->dispatch_data : NULL;
}

int stubdm_ctx_fd_ready(stubdm_ctx *ctx, int fd, short revents)
{
    return stubdm_ctx_fd_ready_ext(ctx, fd, revents, NULL);
}

int stubdm_ctx_fd_ready_ext(stubdm_ctx *ctx, int fd, short revents,
                            void *dispatch_data)
{
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    rc = stubdm__dispatch_enter(ctx);
    if (rc)
        return rc;
    ctx->dispatch_data = dispatch_data;
    if (fd >= 0 && (size_t)fd < ctx->loop.by_fd_cap && ctx->loop.by_fd[fd]) {
        struct stubdm__fd *w = ctx->loop.by_fd[fd];
        w->cb(ctx, w, revents);
    }
    /* Deadlines may have passed while the application was busy. */
    if (!ctx->free_requested)
        run_expired_timers(ctx);
    stubdm__dispatch_leave(ctx);
    return 0;
}

int stubdm_ctx_timer_fired(stubdm_ctx *ctx)
{
    return stubdm_ctx_timer_fired_ext(ctx, NULL);
}

int stubdm_ctx_timer_fired_ext(stubdm_ctx *ctx, void *dispatch_data)
{
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    rc = stubdm__dispatch_enter(ctx);
    if (rc)
        return rc;
    ctx->dispatch_data = dispatch_data;
    /* The application's timer is spent: make the next sync report again. */
    ctx->loop.reported_deadline = -2;
    run_expired_timers(ctx);
    stubdm__dispatch_leave(ctx);
    return 0;
}

int stubdm_ctx_poll_prepare(stubdm_ctx *ctx, struct pollfd *fds,
                            size_t *nfds_io, int *timeout_ms)
{
    struct stubdm__loop *l;
    size_t n = 0;
    int64_t d;

    if (!ctx || !nfds_io || !timeout_ms || (*nfds_io && !fds))
        return STUBDM_EINVAL;
    l = &ctx->loop;
    for (size_t fd = 0; fd < l->by_fd_cap; fd++) {
        struct stubdm__fd *w = l->by_fd[fd];
        if (!w || !w->events)
            continue;
        if (n < *nfds_io) {
            fds[n].fd = (int)fd;
            fds[n].events = w->events;
            fds[n].revents = 0;
        }
        n++;
    }
    if (n > *nfds_io) {
        *nfds_io = n;
        return STUBDM_EBUFFERFULL;
    }
    *nfds_io = n;
    d = stubdm__loop_deadline(ctx);
    if (d < 0) {
        *timeout_ms = -1;
    } else {
        int64_t wait = d - stubdm_now_ms();
        *timeout_ms = wait <= 0 ? 0 : wait > INT32_MAX ? INT32_MAX : (int)wait;
    }
    return 0;
}

/* Dispatch revents, then the expired timers.  timers_not_before >= 0: the
 * caller knows that no deadline at or after it can have passed (run_once
 * over epoll: the timerfd, armed for it, at or before the earliest
 * deadline, was not seen expired), so unless a callback armed an earlier
 * timer the clock need not be read.  -1: no such knowledge. */
static void dispatch_fds(stubdm_ctx *ctx, const struct pollfd *fds,
                         size_t nfds, int64_t timers_not_before)
{
    for (size_t i = 0; i < nfds && !ctx->free_requested; i++) {
        int fd = fds[i].fd;
        if (!fds[i].revents || fd < 0 || (size_t)fd >= ctx->loop.by_fd_cap)
            continue;
        /* Looked up afresh: an earlier callback may have stopped it. */
        struct stubdm__fd *w = ctx->loop.by_fd[fd];
        if (w)
            w->cb(ctx, w, fds[i].revents);
    }
    if (!ctx->free_requested &&
        (timers_not_before < 0 || !ctx->loop.heap_len ||
         ctx->loop.heap[0]->deadline_ms < timers_not_before))
        run_expired_timers(ctx);
}

int stubdm_ctx_poll_dispatch(stubdm_ctx *ctx, const struct pollfd *fds,
                             size_t nfds)
{
    return stubdm_ctx_poll_dispatch_ext(ctx, fds, nfds, NULL);
}

int stubdm_ctx_poll_dispatch_ext(stubdm_ctx *ctx, const struct pollfd *fds,
                                 size_t nfds, void *dispatch_data)
{
    int rc;

    if (!ctx || (nfds && !fds))
        return STUBDM_EINVAL;
    rc = stubdm__dispatch_enter(ctx);
    if (rc)
        return rc;
    ctx->dispatch_data = dispatch_data;
    dispatch_fds(ctx, fds, nfds, -1);
    stubdm__dispatch_leave(ctx);
    return 0;
}

/* run_once over poll(2): the fallback when epoll cannot serve (a watched
 * regular file, or no epoll at all). */
static int run_once_poll(stubdm_ctx *ctx, int max_wait_ms, void *dispatch_data)
{
    struct pollfd stackfds[32], *fds = stackfds;
    /* The last entry is the wake eventfd's. */
    size_t n = STUBDM_ARRAY_SIZE(stackfds) - 1;
    int timeout, rc;

    rc = stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout);
    if (rc == STUBDM_EBUFFERFULL) {
        fds = stubdm__reallocarray(NULL, n + 1, sizeof(*fds));
        if (!fds)
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "poll array");
        rc = stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout);
    }
    if (rc)
        goto out;
    fds[n] = (struct pollfd){atomic_load(&ctx->loop.wfd), POLLIN, 0};
    if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms))
        timeout = max_wait_ms;
    if (wake_take(&ctx->loop))
        timeout = 0;
    if (poll(fds, n + 1, timeout) < 0) {
        if (errno == EINTR) {
            rc = 0;
            goto out;
        }
        rc = stubdm__fail(ctx, STUBDM_EFAIL, errno, "poll: %s",
                          strerror(errno));
        goto out;
    }
    if (fds[n].revents)
        wake_drain(&ctx->loop);
    rc = stubdm_ctx_poll_dispatch_ext(ctx, fds, n, dispatch_data);
out:
    if (fds != stackfds)
        free(fds);
    return rc;
}

/*
 * run_once over the epoll set.  Per call in the steady state this is one
 * epoll_wait without a timeout: the watches are registered once (not
 * handed to the kernel on every call as poll does), and the timers wait in
 * the timerfd, which is only re-armed when the earliest deadline moves
 * before its expiry (a command's deadline, now + its timeout, moves later
 * with every command).  An expiry with nothing due is a spurious wake-up
 * that re-arms it for the real deadline.
 */
static int run_once_epoll(stubdm_ctx *ctx, int max_wait_ms,
                          void *dispatch_data)
{
    struct stubdm__loop *l = &ctx->loop;
    struct epoll_event evs[32];
    struct pollfd fds[32];
    int timeout = max_wait_ms < 0 ? -1 : max_wait_ms;
    size_t k = 0;
    int n;

    /* The timerfd's expiry, when it is at or before every deadline. */
    int64_t not_before = -1;

    if (!stubdm__list_empty(&ctx->ops_queued)) {
        timeout = 0;
    } else if (l->heap_len &&
               (l->tfd_armed < 0 || l->heap[0]->deadline_ms < l->tfd_armed)) {
        int64_t d = l->heap[0]->deadline_ms, now = stubdm_now_ms();
        if (d <= now) {
            timeout = 0;
        } else if (tfd_arm(l, d) == 0) {
            not_before = d;
        } else {
            /* Cannot happen with a valid timerfd; wait as poll would. */
            int64_t wait = d - now;
            if (timeout < 0 || wait < timeout)
                timeout = wait > INT32_MAX ? INT32_MAX : (int)wait;
        }
    } else {
        not_before = l->tfd_armed; /* -1 when there are no timers */
    }
    if (wake_take(l))
        timeout = 0;
    n = epoll_wait(l->epfd, evs, (int)STUBDM_ARRAY_SIZE(evs), timeout);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        return stubdm__fail(ctx, STUBDM_EFAIL, errno, "epoll_wait: %s",
                            strerror(errno));
    }
    /* Until the timerfd is seen expired, no deadline at or after its
     * expiry can have passed (it may have meanwhile: then its event is
     * pending and those timers run on the next call, never early). */
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == TFD_TAG) {
            uint64_t expirations;
            if (read(l->tfd, &expirations, sizeof(expirations)) < 0) {
                /* EAGAIN: nothing to consume */
            }
            l->tfd_armed = -1;
            not_before = -1;
            continue;
        }
        if (evs[i].data.u64 == WAKE_TAG) {
            wake_drain(l);
            continue;
        }
        fds[k].fd = (int)evs[i].data.u64;
        fds[k].events = 0;
        fds[k].revents = (short)evs[i].events;
        k++;
    }
    int rc = stubdm__dispatch_enter(ctx);
    if (rc)
        return rc;
    ctx->dispatch_data = dispatch_data;
    dispatch_fds(ctx, fds, k, not_before);
    stubdm__dispatch_leave(ctx);
    return 0;
}

int stubdm_ctx_run_once(stubdm_ctx *ctx, int max_wait_ms)
{
    return stubdm_ctx_run_once_ext(ctx, max_wait_ms, NULL);
}

int stubdm_ctx_run_once_ext(stubdm_ctx *ctx, int max_wait_ms,
                            void *dispatch_data)
{
    struct stubdm__loop *l;
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if (ctx->dispatch_depth || ctx->callback_depth)
        return STUBDM_ERECURSIVE;
    if (ctx->postfork)
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "the ctx was inherited across fork");
    l = &ctx->loop;
    if ((rc = wake_ready(ctx)))
        return rc;
    if (!ep_ready(l) || l->ep_refused)
        return run_once_poll(ctx, max_wait_ms, dispatch_data);
    return run_once_epoll(ctx, max_wait_ms, dispatch_data);
}

void stubdm__loop_dispose(stubdm_ctx *ctx)
{
    struct stubdm__loop *l = &ctx->loop;

    for (size_t fd = 0; fd < l->by_fd_cap; fd++)
        if (l->by_fd[fd])
            stubdm__fd_stop(ctx, l->by_fd[fd]);
    while (l->heap_len)
        heap_remove(l, l->heap[0]);
    while (l->fresh_len)
        fresh_remove(l, l->fresh[l->fresh_len - 1]);
    free(l->fresh);
    if (l->have_hooks && l->reported_deadline != -1 &&
        l->hooks.set_timer(l->hooks_user, -1) < 0)
        hook_refused(ctx, "set_timer", "disarming the freed ctx's timer");
    ep_teardown(l);
    if (atomic_load(&l->wfd) >= 0)
        close(atomic_load(&l->wfd));
    free(l->by_fd);
    free(l->heap);
    stubdm__loop_init(l);
}
