/*
 * Example: wait for a stubdomain's device model from a host loop shaped
 * like libxl's (fd registrations only, the ctx's timer a timerfd the
 * adapter registers as one more fd: examples/adapters/stubdm-osevent.h),
 * with a per-dispatch context handed to the library's callbacks, as libxl
 * hands its egc.
 *   loop-osevent-example STUBDOM GUEST TIMEOUT_MS
 * Exit status: 0 running; 3 timed out; 4 the callback did not see the
 * dispatch's context; 1 any other failure.
 */
#include "adapters/stubdm-osevent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the host: a poll(2) loop over fd registrations ---------------------- */

#define MAX_REGS 64

struct reg {
    int fd;
    short events;
    void *for_lib;
    bool live;
};

struct host {
    struct reg regs[MAX_REGS];
};

static int host_register(void *user, int fd, void **reg_out, short events,
                         void *for_lib)
{
    struct host *h = user;

    for (size_t i = 0; i < MAX_REGS; i++) {
        struct reg *r = &h->regs[i];
        if (r->live)
            continue;
        *r = (struct reg){fd, events, for_lib, true};
        *reg_out = r;
        return 0;
    }
    return -1; /* full: the library reports the refusal */
}

static int host_modify(void *user, int fd, void **reg_update, short events)
{
    struct reg *r = *reg_update;

    (void)user;
    (void)fd;
    r->events = events;
    return 0;
}

static void host_deregister(void *user, int fd, void *reg)
{
    struct reg *r = reg;

    (void)user;
    (void)fd;
    r->live = false;
}

static const stubdm_osevent_host host_ops = {host_register, host_modify,
                                             host_deregister};

/* What the host hands every dispatch (libxl's egc). */
struct egc {
    unsigned serial;
};

/* One iteration: poll the registrations, report what is ready. */
static int host_iterate(struct host *h, struct egc *egc)
{
    struct pollfd fds[MAX_REGS];
    struct reg *which[MAX_REGS];
    nfds_t n = 0;

    for (size_t i = 0; i < MAX_REGS; i++) {
        if (!h->regs[i].live)
            continue;
        fds[n] = (struct pollfd){h->regs[i].fd, h->regs[i].events, 0};
        which[n++] = &h->regs[i];
    }
    if (poll(fds, n, -1) < 0)
        return errno == EINTR ? 0 : -1;
    for (nfds_t i = 0; i < n; i++) {
        struct reg *r = which[i];
        /* A callback may have deregistered it (or reused the slot). */
        if (!fds[i].revents || !r->live || r->fd != fds[i].fd)
            continue;
        egc->serial++;
        stubdm_osevent_occurred_fd(r->for_lib, r->fd, fds[i].revents, egc);
    }
    return 0;
}

/* ---- the toolstack's side ------------------------------------------------ */

struct wait_result {
    stubdm_ctx *ctx;
    struct egc *egc;
    int rc; /* 1 while pending */
    bool saw_egc;
};

static void on_running(stubdm_op *op, int rc, void *user)
{
    struct wait_result *w = user;

    w->saw_egc = stubdm_ctx_dispatch_data(w->ctx) == w->egc;
    w->rc = rc;
    if (rc)
        fprintf(stderr, "wait failed: %s\n", stubdm_op_errmsg(op));
}

int main(int argc, char **argv)
{
    static struct host host;
    struct egc egc = {0};
    struct stubdm_osevent a;
    struct wait_result w = {NULL, &egc, 1, false};
    stubdm_ctx *ctx;

    if (argc != 4) {
        fprintf(stderr, "usage: %s STUBDOM GUEST TIMEOUT_MS\n", argv[0]);
        return 2;
    }
    if (stubdm_ctx_new(&ctx))
        return 1;
    w.ctx = ctx;
    if (stubdm_osevent_attach(&a, ctx, &host_ops, &host)) {
        fprintf(stderr, "attach: %s\n", stubdm_ctx_errmsg(ctx));
        return 1;
    }
    if (stubdm_dm_wait_running(ctx, (uint32_t)atoi(argv[1]),
                               (uint32_t)atoi(argv[2]), atoi(argv[3]),
                               on_running, &w, NULL)) {
        fprintf(stderr, "%s\n", stubdm_ctx_errmsg(ctx));
        return 1;
    }
    while (w.rc == 1)
        if (host_iterate(&host, &egc))
            break;
    printf("%s after %u dispatches, %u deadline moves\n",
           w.rc ? stubdm_strerror(w.rc) : "running", egc.serial, a.timers);
    stubdm_osevent_detach(&a);
    stubdm_ctx_free(ctx);
    for (size_t i = 0; i < MAX_REGS; i++)
        if (host.regs[i].live) {
            fprintf(stderr, "registration of fd %d left\n", host.regs[i].fd);
            return 1;
        }
    if (w.rc == 0 && !w.saw_egc)
        return 4;
    return w.rc == 0 ? 0 : w.rc == STUBDM_ETIMEDOUT ? 3 : 1;
}
