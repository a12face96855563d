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
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
}

/* ---- fd watches -------------------------------------------------------- */

void stubdm__fd_init(struct stubdm__fd *w, stubdm__fd_cb *cb)
{
    w->cb = cb;
    w->fd = -1;
    w->events = 0;
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
        return 0;
    }
    if ((size_t)fd >= l->by_fd_cap) {
        size_t cap = l->by_fd_cap ? l->by_fd_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        struct stubdm__fd **n = stubdm__reallocarray(l->by_fd, cap, sizeof(*n));
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
    return 0;
}

void stubdm__fd_stop(stubdm_ctx *ctx, struct stubdm__fd *w)
{
    struct stubdm__loop *l = &ctx->loop;

    if (w->fd < 0)
        return;
    if (l->have_hooks && w->events)
        l->hooks.watch_fd(l->hooks_user, w->fd, 0);
    l->by_fd[w->fd] = NULL;
    l->nwatched--;
    w->fd = -1;
    w->events = 0;
}

/* ---- timers ------------------------------------------------------------ */

#define NOT_ARMED ((size_t)-1)

void stubdm__timer_init(struct stubdm__timer *t, stubdm__timer_cb *cb)
{
    t->cb = cb;
    t->deadline_ms = 0;
    t->heap_index = NOT_ARMED;
}

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

int stubdm__timer_arm(stubdm_ctx *ctx, struct stubdm__timer *t,
                      int64_t deadline_ms)
{
    struct stubdm__loop *l = &ctx->loop;

    if (t->heap_index != NOT_ARMED)
        heap_remove(l, t);
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 16;
        struct stubdm__timer **h = stubdm__reallocarray(l->heap, cap, sizeof(*h));
        if (!h)
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "timer heap");
        l->heap = h;
        l->heap_cap = cap;
    }
    t->deadline_ms = deadline_ms;
    heap_set(l, l->heap_len++, t);
    heap_up(l, t->heap_index);
    if (!ctx->dispatch_depth)
        stubdm__loop_sync_timer(ctx);
    return 0;
}

void stubdm__timer_stop(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    if (t->heap_index == NOT_ARMED)
        return;
    heap_remove(&ctx->loop, t);
    if (!ctx->dispatch_depth)
        stubdm__loop_sync_timer(ctx);
}

int64_t stubdm__loop_deadline(stubdm_ctx *ctx)
{
    if (!stubdm__list_empty(&ctx->ops_queued))
        return 0;
    if (ctx->loop.heap_len)
        return ctx->loop.heap[0]->deadline_ms;
    return -1;
}

void stubdm__loop_sync_timer(stubdm_ctx *ctx)
{
    struct stubdm__loop *l = &ctx->loop;
    int64_t d;

    if (!l->have_hooks)
        return;
    d = stubdm__loop_deadline(ctx);
    if (d == l->reported_deadline)
        return;
    /* A refusal cannot be reported to anyone here; the poll interface still
     * works, and the next change retries. */
    if (l->hooks.set_timer(l->hooks_user, d) == 0)
        l->reported_deadline = d;
}

static void run_expired_timers(stubdm_ctx *ctx)
{
    struct stubdm__loop *l = &ctx->loop;
    int64_t now = stubdm_now_ms();

    while (l->heap_len && l->heap[0]->deadline_ms <= now &&
           !ctx->free_requested) {
        struct stubdm__timer *t = l->heap[0];
        heap_remove(l, t);
        t->cb(ctx, t);
    }
}

/* ---- dispatch ---------------------------------------------------------- */

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
    if (ctx->free_requested) {
        stubdm__ctx_destroy(ctx);
        return;
    }
    stubdm__loop_sync_timer(ctx);
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
    stubdm__loop_sync_timer(ctx);
    return 0;
}

int stubdm_ctx_fd_ready(stubdm_ctx *ctx, int fd, short revents)
{
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    rc = stubdm__dispatch_enter(ctx);
    if (rc)
        return rc;
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
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    rc = stubdm__dispatch_enter(ctx);
    if (rc)
        return rc;
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

int stubdm_ctx_poll_dispatch(stubdm_ctx *ctx, const struct pollfd *fds,
                             size_t nfds)
{
    int rc;

    if (!ctx || (nfds && !fds))
        return STUBDM_EINVAL;
    rc = stubdm__dispatch_enter(ctx);
    if (rc)
        return rc;
    for (size_t i = 0; i < nfds && !ctx->free_requested; i++) {
        int fd = fds[i].fd;
        if (!fds[i].revents || fd < 0 || (size_t)fd >= ctx->loop.by_fd_cap)
            continue;
        /* Looked up afresh: an earlier callback may have stopped it. */
        struct stubdm__fd *w = ctx->loop.by_fd[fd];
        if (w)
            w->cb(ctx, w, fds[i].revents);
    }
    if (!ctx->free_requested)
        run_expired_timers(ctx);
    stubdm__dispatch_leave(ctx);
    return 0;
}

int stubdm_ctx_run_once(stubdm_ctx *ctx, int max_wait_ms)
{
    struct pollfd stackfds[32], *fds = stackfds;
    size_t n = STUBDM_ARRAY_SIZE(stackfds);
    int timeout, rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if (ctx->dispatch_depth || ctx->callback_depth)
        return STUBDM_ERECURSIVE;
    rc = stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout);
    if (rc == STUBDM_EBUFFERFULL) {
        fds = stubdm__reallocarray(NULL, n, sizeof(*fds));
        if (!fds)
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "poll array");
        rc = stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout);
    }
    if (rc)
        goto out;
    if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms))
        timeout = max_wait_ms;
    if (poll(fds, n, timeout) < 0) {
        if (errno == EINTR) {
            rc = 0;
            goto out;
        }
        rc = stubdm__fail(ctx, STUBDM_EFAIL, errno, "poll: %s",
                          strerror(errno));
        goto out;
    }
    rc = stubdm_ctx_poll_dispatch(ctx, fds, n);
out:
    if (fds != stackfds)
        free(fds);
    return rc;
}

void stubdm__loop_dispose(stubdm_ctx *ctx)
{
    struct stubdm__loop *l = &ctx->loop;

    for (size_t fd = 0; fd < l->by_fd_cap; fd++)
        if (l->by_fd[fd])
            stubdm__fd_stop(ctx, l->by_fd[fd]);
    while (l->heap_len)
        heap_remove(l, l->heap[0]);
    if (l->have_hooks && l->reported_deadline != -1)
        l->hooks.set_timer(l->hooks_user, -1);
    free(l->by_fd);
    free(l->heap);
    memset(l, 0, sizeof(*l));
}
