/*
 * The event-loop and async-operation contract of include/libstubdm.h:
 * completion exactly once and never inside the starting call, idempotent
 * cancel, free from callbacks, recursive dispatch refused, the hook and
 * poll interfaces, the timer heap.
 */
#include "core/base.h"
#include "core/loop.h"
#include "core/op.h"
#include "proccheck.h"
#include "run.h"

#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a test operation type --------------------------------------------- */

struct test_op {
    stubdm_op op;
    struct stubdm__timer timer;
    int *stops;
    int *destroys;
};

static void test_op_stop(stubdm_op *op)
{
    struct test_op *t = (struct test_op *)op;
    stubdm__timer_stop(op->ctx, &t->timer);
    if (t->stops)
        (*t->stops)++;
}

static void test_op_destroy(stubdm_op *op)
{
    struct test_op *t = (struct test_op *)op;
    if (t->destroys)
        (*t->destroys)++;
}

static const struct stubdm__op_type test_type = {.name = "test",
                                                 .stop = test_op_stop,
                                                 .destroy = test_op_destroy};

static void on_timer_complete(stubdm_ctx *ctx, struct stubdm__timer *tm)
{
    struct test_op *t = STUBDM_CONTAINER_OF(tm, struct test_op, timer);
    (void)ctx;
    stubdm__op_complete(&t->op, 0, NULL);
}

/* Start a test op that completes after delay_ms (or at once if < 0). */
static struct test_op *start_op(stubdm_ctx *ctx, int delay_ms,
                                stubdm_done_fn *done, void *user,
                                stubdm_op **out)
{
    struct test_op *t = (struct test_op *)stubdm__op_new(ctx, &test_type,
                                                         sizeof(*t), done,
                                                         user);
    ck_assert_ptr_nonnull(t);
    stubdm__timer_init(&t->timer, on_timer_complete);
    stubdm__op_started(&t->op, out);
    if (delay_ms < 0)
        stubdm__op_complete(&t->op, STUBDM_EINVAL, "failed at %s", "once");
    else
        ck_assert_int_eq(stubdm__timer_arm(ctx, &t->timer,
                                           stubdm_now_ms() + delay_ms),
                         0);
    return t;
}

struct record {
    int calls;
    int last_rc;
    stubdm_ctx *ctx;
    stubdm_op *free_me;
    bool free_ctx;
    int recursive_rc;
};

static void on_done(stubdm_op *op, int rc, void *user)
{
    struct record *r = user;
    (void)op;
    r->calls++;
    r->last_rc = rc;
    if (r->ctx)
        r->recursive_rc = stubdm_ctx_run_once(r->ctx, 0);
    if (r->free_me)
        stubdm_op_free(r->free_me);
    if (r->free_ctx)
        stubdm_ctx_free(r->ctx);
}

/* ---- basics ------------------------------------------------------------ */

START_TEST(ctx_basics)
{
    stubdm_ctx *ctx = NULL;

    ck_assert_int_eq(stubdm_ctx_new(NULL), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_str_eq(stubdm_ctx_errmsg(ctx), "");
    ck_assert_int_eq(stubdm_ctx_os_errno(ctx), 0);
    stubdm_ctx_free(ctx);
    stubdm_ctx_free(NULL);
    stubdm_op_free(NULL);
    stubdm_op_cancel(NULL);
    ck_assert_str_eq(stubdm_version(), "0.1.0");
    ck_assert_uint_eq(stubdm_version_hex(), STUBDM_VERSION_HEX);
}
END_TEST

START_TEST(error_texts)
{
    for (int rc = 0; rc >= STUBDM_EAGAIN; rc--) {
        ck_assert_str_ne(stubdm_strerror(rc), "unknown error");
        ck_assert_str_ne(stubdm_errname(rc), "STUBDM_E?");
    }
    ck_assert_str_eq(stubdm_errname(STUBDM_ETIMEDOUT), "STUBDM_ETIMEDOUT");
    ck_assert_str_eq(stubdm_strerror(-1000), "unknown error");
    ck_assert_str_eq(stubdm_errname(-1000), "STUBDM_E?");
}
END_TEST

/* ---- the op contract --------------------------------------------------- */

START_TEST(never_inside_starting_call)
{
    stubdm_ctx *ctx;
    struct record r = {0};
    int timeout;
    size_t n = 0;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    start_op(ctx, -1, on_done, &r, NULL);
    ck_assert_int_eq(r.calls, 0);
    /* The queued completion makes the loop come back at once. */
    ck_assert_int_eq(stubdm_ctx_poll_prepare(ctx, NULL, &n, &timeout), 0);
    ck_assert_int_eq(timeout, 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.last_rc, STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    stubdm_ctx_free(ctx);
}
END_TEST

START_TEST(exactly_once_and_errmsg)
{
    stubdm_ctx *ctx;
    struct record r = {0};
    stubdm_op *op = NULL;
    int destroys = 0;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    struct test_op *t = start_op(ctx, 10, on_done, &r, &op);
    t->destroys = &destroys;
    ck_assert_int_eq(stubdm_op_is_done(op), 0);
    ck_assert_int_eq(stubdm_op_result(op), STUBDM_ESTATE);
    ck_assert_str_eq(stubdm_op_errmsg(op), "");
    ts_run_until_count(ctx, &r.calls, 1, 5000);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.last_rc, 0);
    ck_assert_int_eq(stubdm_op_is_done(op), 1);
    ck_assert_int_eq(stubdm_op_result(op), 0);
    /* Completing or cancelling a done op changes nothing. */
    stubdm_op_cancel(op);
    stubdm__op_complete(op, STUBDM_EFAIL, "late");
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(stubdm_op_result(op), 0);
    stubdm_op_free(op);
    ck_assert_int_eq(destroys, 1);
    stubdm_ctx_free(ctx);
}
END_TEST

/* A released op's block serves the next op of its size: it comes back
 * zeroed, with an empty message, whatever the previous op left in it. */
START_TEST(reused_op_block_is_clean)
{
    stubdm_ctx *ctx;
    struct record r = {0};
    stubdm_op *op = NULL;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    for (int round = 0; round < 20; round++) {
        int stops = 0;
        /* A failed op (message set), then one that succeeds. */
        struct test_op *t = start_op(ctx, round % 2 ? 0 : -1, on_done, &r,
                                     &op);
        ck_assert_ptr_null(t->stops);
        ck_assert_ptr_null(t->destroys);
        ck_assert(!op->floating && !op->in_callback && !op->handle_freed);
        if (round % 2)
            ck_assert_str_eq(stubdm_op_errmsg(op), ""); /* pending */
        t->stops = &stops;
        ts_run_until_count(ctx, &r.calls, round + 1, 5000);
        ck_assert_int_eq(stubdm_op_result(op), round % 2 ? 0 : STUBDM_EINVAL);
        ck_assert_str_eq(stubdm_op_errmsg(op),
                         round % 2 ? "" : "failed at once");
        ck_assert_int_eq(stops, round % 2 ? 1 : 0); /* stopped before */
        stubdm_op_free(op);
        /* Floating ones too (released after their callback). */
        start_op(ctx, -1, NULL, NULL, NULL);
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    }
    stubdm_ctx_free(ctx);
}
END_TEST

START_TEST(cancel_is_idempotent)
{
    stubdm_ctx *ctx;
    struct record r = {0};
    stubdm_op *op = NULL;
    int stops = 0;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    struct test_op *t = start_op(ctx, 60000, on_done, &r, &op);
    t->stops = &stops;
    stubdm_op_cancel(op);
    stubdm_op_cancel(op);
    ck_assert_int_eq(stops, 1); /* resources released at once */
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.last_rc, STUBDM_ECANCELED);
    ck_assert_str_eq(stubdm_op_errmsg(op), "test cancelled");
    stubdm_op_cancel(op);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    ck_assert_int_eq(r.calls, 1);
    stubdm_op_free(op);
    stubdm_ctx_free(ctx);
}
END_TEST

START_TEST(free_pending_op_is_silent)
{
    stubdm_ctx *ctx;
    struct record r = {0};
    stubdm_op *op = NULL, *op2 = NULL;
    int stops = 0, destroys = 0;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    struct test_op *t = start_op(ctx, 10, on_done, &r, &op);
    t->stops = &stops;
    t->destroys = &destroys;
    stubdm_op_free(op);
    ck_assert_int_eq(stops, 1);
    ck_assert_int_eq(destroys, 1);
    /* Freeing a completed-but-not-yet-called-back op is silent too. */
    start_op(ctx, -1, on_done, &r, &op2);
    stubdm_op_free(op2);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 30), 0);
    ck_assert_int_eq(r.calls, 0);
    stubdm_ctx_free(ctx);
}
END_TEST

START_TEST(free_op_inside_its_callback)
{
    stubdm_ctx *ctx;
    struct record r = {0};
    stubdm_op *op = NULL;
    int destroys = 0;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    struct test_op *t = start_op(ctx, 5, on_done, &r, &op);
    t->destroys = &destroys;
    r.free_me = op;
    ts_run_until_count(ctx, &r.calls, 1, 5000);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(destroys, 1);
    stubdm_ctx_free(ctx);
}
END_TEST

START_TEST(free_ctx_inside_callback)
{
    stubdm_ctx *ctx;
    struct record r1 = {0}, r2 = {0};
    stubdm_op *held = NULL;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    r1.ctx = ctx;
    r1.free_ctx = true;
    start_op(ctx, -1, on_done, &r1, NULL);
    start_op(ctx, -1, on_done, &r2, NULL);
    start_op(ctx, 60000, on_done, &r2, &held);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(r1.calls, 1);
    /* Recursive dispatch from a callback is refused. */
    ck_assert_int_eq(r1.recursive_rc, STUBDM_ERECURSIVE);
    /* The ctx is gone: the second queued op was dropped silently. */
    ck_assert_int_eq(r2.calls, 0);
    /* A handle the caller still holds survives its ctx. */
    ck_assert_int_eq(stubdm_op_is_done(held), 1);
    stubdm_op_free(held);
}
END_TEST

/* ---- timers ------------------------------------------------------------ */

static int order_calls;
static int64_t order_last;

static void on_order(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)ctx;
    ck_assert(t->deadline_ms >= order_last);
    order_last = t->deadline_ms;
    order_calls++;
}

START_TEST(timer_heap_order)
{
    enum { N = 2000 };
    stubdm_ctx *ctx;
    struct stubdm__timer *t = calloc(N, sizeof(*t));
    int64_t base = stubdm_now_ms() - 100000;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    srand(42);
    for (int i = 0; i < N; i++) {
        stubdm__timer_init(&t[i], on_order);
        ck_assert_int_eq(stubdm__timer_arm(ctx, &t[i], base + rand() % 50000),
                         0);
    }
    /* Re-arm and stop a third of them to exercise removal from the middle. */
    for (int i = 0; i < N; i += 3)
        stubdm__timer_stop(ctx, &t[i]);
    for (int i = 1; i < N; i += 3)
        ck_assert_int_eq(stubdm__timer_arm(ctx, &t[i], base + rand() % 50000),
                         0);
    order_calls = 0;
    order_last = INT64_MIN;
    ck_assert_int_eq(stubdm_ctx_timer_fired(ctx), 0);
    ck_assert_int_eq(order_calls, N - (N + 2) / 3);
    for (int i = 0; i < N; i++)
        ck_assert(!stubdm__timer_armed(&t[i]));
    stubdm_ctx_free(ctx);
    free(t);
}
END_TEST

/* ---- hooks and poll ---------------------------------------------------- */

struct hook_log {
    int watch_calls, timer_calls;
    int last_fd;
    short last_events;
    int64_t last_deadline;
};

static int hook_watch(void *user, int fd, short events)
{
    struct hook_log *h = user;
    h->watch_calls++;
    h->last_fd = fd;
    h->last_events = events;
    return 0;
}

static int hook_timer(void *user, int64_t deadline)
{
    struct hook_log *h = user;
    h->timer_calls++;
    h->last_deadline = deadline;
    return 0;
}

static int fd_hits;
static void on_fd(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    char c;
    (void)ctx;
    ck_assert(revents & POLLIN);
    ck_assert_int_eq(read(w->fd, &c, 1), 1);
    fd_hits++;
}

START_TEST(hooks_and_poll)
{
    stubdm_ctx *ctx;
    struct hook_log h = {0};
    stubdm_loop_hooks hooks = {STUBDM_LOOP_HOOKS_VERSION, hook_watch,
                               hook_timer};
    stubdm_loop_hooks bad = {99, hook_watch, hook_timer};
    struct stubdm__fd w;
    struct stubdm__timer t;
    int p[2];
    struct pollfd fds[1];
    size_t n;
    int timeout;

    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm__fd_init(&w, on_fd);
    ck_assert_int_eq(stubdm__fd_watch(ctx, &w, p[0], POLLIN), 0);

    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &bad, &h), STUBDM_EINVAL);
    /* Installing hooks replays the fds already watched. */
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &hooks, &h), 0);
    ck_assert_int_eq(h.watch_calls, 1);
    ck_assert_int_eq(h.last_fd, p[0]);
    ck_assert_int_eq(h.last_events, POLLIN);
    ck_assert_int_eq(h.timer_calls, 1);
    ck_assert_int_eq(h.last_deadline, -1);

    stubdm__timer_init(&t, on_order);
    int64_t dl = stubdm_now_ms() + 100000;
    ck_assert_int_eq(stubdm__timer_arm(ctx, &t, dl), 0);
    ck_assert_int_eq(h.last_deadline, dl);

    /* Poll interface on the same registry: too small an array. */
    n = 0;
    ck_assert_int_eq(stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout),
                     STUBDM_EBUFFERFULL);
    ck_assert_uint_eq(n, 1);
    n = 1;
    ck_assert_int_eq(stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout), 0);
    ck_assert_int_eq(fds[0].fd, p[0]);
    ck_assert(timeout > 99000);

    /* Push path: the application says the fd is ready. */
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    fd_hits = 0;
    ck_assert_int_eq(stubdm_ctx_fd_ready(ctx, p[0], POLLIN), 0);
    ck_assert_int_eq(fd_hits, 1);
    /* Unknown fds are ignored. */
    ck_assert_int_eq(stubdm_ctx_fd_ready(ctx, 1000, POLLIN), 0);
    /* Poll path. */
    ck_assert_int_eq(write(p[1], "y", 1), 1);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(fd_hits, 2);

    stubdm__timer_stop(ctx, &t);
    ck_assert_int_eq(h.last_deadline, -1);
    stubdm__fd_stop(ctx, &w);
    stubdm__fd_stop(ctx, &w); /* idempotent */
    ck_assert_int_eq(h.last_events, 0);
    stubdm_ctx_free(ctx);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ---- run_once's epoll set and timerfd ------------------------------------ */

static int fired;
static int64_t fired_at;
static void on_fire(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)ctx;
    (void)t;
    fired++;
    fired_at = stubdm_now_ms();
}

/* run_once(-1) until the timer fires; returns how many calls it took. */
static int run_until_fired(stubdm_ctx *ctx, int want)
{
    int calls = 0;
    int64_t end = stubdm_now_ms() + 5000;
    while (fired < want && stubdm_now_ms() < end) {
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, -1), 0);
        calls++;
    }
    ck_assert_int_eq(fired, want);
    return calls;
}

START_TEST(run_once_timers)
{
    stubdm_ctx *ctx;
    struct stubdm__timer a, b, c;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm__timer_init(&a, on_fire);
    stubdm__timer_init(&b, on_fire);
    stubdm__timer_init(&c, on_fire);
    fired = 0;

    /* A far deadline arms the timer; an earlier one re-arms it. */
    ck_assert_int_eq(stubdm__timer_arm(ctx, &a, stubdm_now_ms() + 10000), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 5), 0);
    ck_assert_int_eq(fired, 0);
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm__timer_arm(ctx, &b, t0 + 40), 0);
    run_until_fired(ctx, 1);
    ck_assert(!stubdm__timer_armed(&b));
    ck_assert(stubdm__timer_armed(&a));
    ck_assert_int_ge(fired_at, t0 + 40);
    ck_assert_int_lt(fired_at, t0 + 2000);

    /* The armed expiry passes with nothing due (the timer it was armed for
     * was stopped): a spurious wake-up, then the real deadline, never
     * before it. */
    ck_assert_int_eq(stubdm__timer_arm(ctx, &b, stubdm_now_ms() + 30), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0); /* armed for b */
    stubdm__timer_stop(ctx, &b);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm__timer_arm(ctx, &c, t0 + 80), 0);
    run_until_fired(ctx, 2);
    ck_assert(!stubdm__timer_armed(&c));
    ck_assert_int_ge(fired_at, t0 + 80);
    ck_assert_int_lt(fired_at, t0 + 2000);

    /* A deadline already passed: no waiting. */
    ck_assert_int_eq(stubdm__timer_arm(ctx, &c, stubdm_now_ms() - 5), 0);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, -1), 0);
    ck_assert_int_eq(fired, 3);
    ck_assert_int_lt(stubdm_now_ms() - t0, 1000);

    /* The caller's cap still bounds the wait. */
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 20), 0);
    ck_assert_int_eq(fired, 3);
    ck_assert_int_lt(stubdm_now_ms() - t0, 1000);
    stubdm__timer_stop(ctx, &a);
    stubdm_ctx_free(ctx);
}
END_TEST

static int out_hits, in_hits;
static void on_out(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    (void)ctx;
    (void)w;
    ck_assert(revents & POLLOUT);
    out_hits++;
}

static void on_in(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    char c;
    (void)ctx;
    ck_assert(revents & POLLIN);
    if (read(w->fd, &c, 1) == 1)
        in_hits++;
}

START_TEST(run_once_watches)
{
    stubdm_ctx *ctx;
    struct stubdm__fd wo, wi, wf;
    int p[2], q[2];
    char path[] = "/tmp/stubdm-loop-XXXXXX";

    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm__fd_init(&wo, on_out);
    stubdm__fd_init(&wi, on_in);
    stubdm__fd_init(&wf, on_in);
    out_hits = in_hits = 0;

    /* Watches made before the set exists are registered when it is. */
    ck_assert_int_eq(stubdm__fd_watch(ctx, &wo, p[1], POLLOUT), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(out_hits, 1);
    /* Events changed to none: not reported (poll skips such watches). */
    ck_assert_int_eq(stubdm__fd_watch(ctx, &wo, p[1], 0), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 20), 0);
    ck_assert_int_eq(out_hits, 1);
    ck_assert_int_eq(stubdm__fd_watch(ctx, &wo, p[1], POLLOUT), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(out_hits, 2);
    stubdm__fd_stop(ctx, &wo);

    /* A watch made after: readable when written. */
    ck_assert_int_eq(stubdm__fd_watch(ctx, &wi, p[0], POLLIN), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 20), 0);
    ck_assert_int_eq(in_hits, 0);
    ck_assert_int_eq(write(p[1], "a", 1), 1);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(in_hits, 1);

    /* Stop, close, and a new file under the same number. */
    int old = p[0];
    stubdm__fd_stop(ctx, &wi);
    close(p[0]);
    close(p[1]);
    ck_assert_int_eq(pipe2(q, O_NONBLOCK | O_CLOEXEC), 0);
    ck_assert_int_eq(q[0], old);
    ck_assert_int_eq(stubdm__fd_watch(ctx, &wi, q[0], POLLIN), 0);
    ck_assert_int_eq(write(q[1], "b", 1), 1);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(in_hits, 2);

    /* A regular file, which epoll refuses: run_once polls it (always
     * readable, as poll reports it), and the pipe is still served. */
    int f = mkstemp(path);
    ck_assert_int_ge(f, 0);
    unlink(path);
    ck_assert_int_eq(write(f, "xy", 2), 2);
    ck_assert_int_eq(lseek(f, 0, SEEK_SET), 0);
    ck_assert_int_eq(stubdm__fd_watch(ctx, &wf, f, POLLIN), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(in_hits, 3);
    ck_assert_int_eq(write(q[1], "c", 1), 1);
    ts_run_until_count(ctx, &in_hits, 5, 2000);
    ck_assert_int_ge(in_hits, 5);
    stubdm__fd_stop(ctx, &wf);
    close(f);
    /* Back to the epoll set. */
    ck_assert_int_eq(write(q[1], "d", 1), 1);
    int before = in_hits;
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(in_hits, before + 1);

    /* A forked child gets its own set: stopping the watch there must not
     * take it out of the parent's. */
    pid_t pid = proc_child_fork();
    if (pid == 0) {
        stubdm__fd_stop(ctx, &wi);
        _exit(write(q[1], "e", 1) == 1 ? 0 : 1);
    }
    ck_assert_int_gt(pid, 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(in_hits, before + 2);

    stubdm__fd_stop(ctx, &wi);
    stubdm_ctx_free(ctx);
    close(q[0]);
    close(q[1]);
}
END_TEST

/* ---- timers armed during a dispatch wait for the next one ---------------- */

/* A continuation: re-arms itself for "now" up to yield_left times. */
static int yield_runs, yield_left;
static void on_yield(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    yield_runs++;
    if (yield_left-- > 0)
        stubdm__timer_arm(ctx, t, stubdm_now_ms());
}

/* An fd callback arms a timer due now. */
static struct stubdm__timer *armed_by_fd;
static void on_fd_arm(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    char c;
    (void)revents;
    if (read(w->fd, &c, 1) == 1)
        stubdm__timer_arm(ctx, armed_by_fd, 0);
}

/* One pass of each entry point runs a self-re-arming timer once: the round
 * bound of a continuation (the console pump, a QMP read) bounds the work
 * per dispatch, and the fds and other timers are served in between. */
START_TEST(rearmed_timer_runs_on_the_next_dispatch)
{
    stubdm_ctx *ctx;
    struct stubdm__timer t, other;
    struct stubdm__fd w;
    struct hook_log h = {0};
    stubdm_loop_hooks hooks = {STUBDM_LOOP_HOOKS_VERSION, hook_watch,
                               hook_timer};
    struct pollfd fds[4];
    size_t n;
    int timeout, p[2];

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm__timer_init(&t, on_yield);
    yield_runs = 0;
    yield_left = 1000;
    ck_assert_int_eq(stubdm__timer_arm(ctx, &t, 0), 0);
    /* run_once */
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    ck_assert_int_eq(yield_runs, 1);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
    ck_assert_int_eq(yield_runs, 2);
    /* The poll pair: due at once, run once per dispatch. */
    n = STUBDM_ARRAY_SIZE(fds);
    ck_assert_int_eq(stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout), 0);
    ck_assert_int_eq(timeout, 0);
    ck_assert_int_eq(stubdm_ctx_poll_dispatch(ctx, fds, n), 0);
    ck_assert_int_eq(yield_runs, 3);
    /* The hooks: told "now" again after each run. */
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &hooks, &h), 0);
    ck_assert_int_le(h.last_deadline, stubdm_now_ms());
    ck_assert_int_eq(stubdm_ctx_timer_fired(ctx), 0);
    ck_assert_int_eq(yield_runs, 4);
    ck_assert(stubdm__timer_armed(&t));
    ck_assert_int_le(h.last_deadline, stubdm_now_ms());
    ck_assert_int_ge(h.last_deadline, 0);
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, NULL, NULL), 0);

    /* A timer an fd callback arms for now runs on the next dispatch, while
     * one that was already due runs in this one. */
    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    stubdm__timer_stop(ctx, &t);
    stubdm__timer_init(&other, on_fire);
    armed_by_fd = &t;
    fired = 0;
    stubdm__fd_init(&w, on_fd_arm);
    ck_assert_int_eq(stubdm__fd_watch(ctx, &w, p[0], POLLIN), 0);
    ck_assert_int_eq(stubdm__timer_arm(ctx, &other, stubdm_now_ms() - 1), 0);
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    yield_runs = 0;
    yield_left = 0;
    struct pollfd pf = {p[0], POLLIN, POLLIN};
    ck_assert_int_eq(stubdm_ctx_poll_dispatch(ctx, &pf, 1), 0);
    ck_assert_int_eq(fired, 1);
    ck_assert_int_eq(yield_runs, 0);
    ck_assert(stubdm__timer_armed(&t));
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    ck_assert_int_eq(yield_runs, 1);
    ck_assert(!stubdm__timer_armed(&t));

    stubdm__fd_stop(ctx, &w);
    stubdm_ctx_free(ctx);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* Timers armed in a dispatch and stopped or re-armed before it ends. */
static struct stubdm__timer *churn[3];
static bool churn_free;
static void on_churn(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)t;
    stubdm__timer_arm(ctx, churn[0], 0);
    stubdm__timer_arm(ctx, churn[1], 0);
    stubdm__timer_arm(ctx, churn[2], 0);
    stubdm__timer_stop(ctx, churn[0]);
    stubdm__timer_arm(ctx, churn[1], stubdm_now_ms() + 100000);
    if (churn_free)
        stubdm_ctx_free(ctx);
}

START_TEST(fresh_timers_stopped_or_rearmed_in_their_dispatch)
{
    stubdm_ctx *ctx;
    struct stubdm__timer a, b, c, d;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm__timer_init(&a, on_fire);
    stubdm__timer_init(&b, on_fire);
    stubdm__timer_init(&c, on_fire);
    stubdm__timer_init(&d, on_churn);
    churn[0] = &a;
    churn[1] = &b;
    churn[2] = &c;
    fired = 0;
    ck_assert_int_eq(stubdm__timer_arm(ctx, &d, 0), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    ck_assert_int_eq(fired, 0);
    ck_assert(!stubdm__timer_armed(&a));
    ck_assert(stubdm__timer_armed(&b));
    ck_assert(stubdm__timer_armed(&c));
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    ck_assert_int_eq(fired, 1); /* c only; b is far off */
    ck_assert(!stubdm__timer_armed(&c));
    /* The ctx freed by the callback of the dispatch that armed them. */
    stubdm__timer_stop(ctx, &b);
    churn_free = true;
    ck_assert_int_eq(stubdm__timer_arm(ctx, &d, 0), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
    churn_free = false;
}
END_TEST

static Suite *loop_suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("contract");

    tcase_add_test(tc, ctx_basics);
    tcase_add_test(tc, error_texts);
    tcase_add_test(tc, never_inside_starting_call);
    tcase_add_test(tc, exactly_once_and_errmsg);
    tcase_add_test(tc, reused_op_block_is_clean);
    tcase_add_test(tc, cancel_is_idempotent);
    tcase_add_test(tc, free_pending_op_is_silent);
    tcase_add_test(tc, free_op_inside_its_callback);
    tcase_add_test(tc, free_ctx_inside_callback);
    tcase_add_test(tc, timer_heap_order);
    tcase_add_test(tc, hooks_and_poll);
    tcase_add_test(tc, run_once_timers);
    tcase_add_test(tc, run_once_watches);
    tcase_add_test(tc, rearmed_timer_runs_on_the_next_dispatch);
    tcase_add_test(tc, fresh_timers_stopped_or_rearmed_in_their_dispatch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(loop_suite());
}
