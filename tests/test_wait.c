/*
 * Waiting for "running", against the mock xenstored through the real
 * libxenstore, with the test playing the stubdomain (its own connection
 * acting as the stubdomain's domid) and the toolstack (dom0).
 */
#include "core/base.h"
#include "core/ctx.h"
#include "xen/xs.h"
#include "mockxs.h"

#include "../examples/adapters/stubdm-epoll.h"
#include "../examples/adapters/stubdm-glib.h"
#include "run.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define STUB 5
#define GUEST 4
#define STATE "/local/domain/5/device-model/4/state"

static struct mockxs mock;
static struct xs_handle *dom0, *stub;
static stubdm_ctx *ctx;

static void setup(void)
{
    static const unsigned domids[] = {STUB, GUEST};
    struct mockxs_opts opts = {.domids = domids, .n_domids = 2};
    struct xs_permissions perms[2] = {{STUB, XS_PERM_NONE},
                                      {GUEST, XS_PERM_READ}};

    ck_assert_int_eq(mockxs_start(&mock, &opts), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    dom0 = mockxs_open_as(&mock, 0);
    stub = mockxs_open_as(&mock, STUB);
    ck_assert_ptr_nonnull(dom0);
    ck_assert_ptr_nonnull(stub);
    /* What the toolstack does before waiting: the stubdomain exists and
     * owns its device-model directory. */
    ck_assert(xs_introduce_domain(dom0, STUB, 1, 1));
    ck_assert(xs_mkdir(dom0, XBT_NULL, "/local/domain/5/device-model/4"));
    ck_assert(xs_set_permissions(dom0, XBT_NULL,
                                 "/local/domain/5/device-model/4", perms, 2));
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
}

static void teardown(void)
{
    stubdm_ctx_free(ctx);
    xs_close(stub);
    xs_close(dom0);
    mockxs_stop(&mock);
}

/* The stubdomain writes its state (relative path, as QEMU does). */
static void stub_writes(const char *value, size_t len)
{
    ck_assert(xs_write(stub, XBT_NULL, "device-model/4/state", value,
                       (unsigned)len));
}

START_TEST(running_written_late)
{
    struct ts_result r = {0};

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 10000,
                                            ts_on_done, &r, NULL),
                     0);
    ts_spin(ctx, 100);
    ck_assert_int_eq(r.calls, 0);
    stub_writes("running", 7);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, 0);
    ts_spin(ctx, 50);
    ck_assert_int_eq(r.calls, 1);
}
END_TEST

START_TEST(running_written_before_the_wait)
{
    struct ts_result r = {0};

    stub_writes("running", 7);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 10000,
                                            ts_on_done, &r, NULL),
                     0);
    ck_assert_int_eq(r.calls, 0); /* never inside the starting call */
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, 0);
}
END_TEST

START_TEST(running_written_twice_and_other_values)
{
    struct ts_result r = {0};

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 10000,
                                            ts_on_done, &r, NULL),
                     0);
    stub_writes("starting", 8);
    ts_spin(ctx, 50);
    stub_writes("Running", 7); /* case matters */
    stub_writes("running\n", 8);
    ts_spin(ctx, 50);
    ck_assert_int_eq(r.calls, 0);
    stub_writes("running", 7);
    stub_writes("running", 7);
    ts_run_until_done(ctx, &r, 5000);
    ts_spin(ctx, 100);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.rc, 0);
}
END_TEST

START_TEST(never_running_times_out_with_last_state)
{
    struct ts_result r = {0};
    int64_t start = stubdm_now_ms();

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 300, ts_on_done,
                                            &r, NULL),
                     0);
    stub_writes("starting", 8);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_ETIMEDOUT);
    ck_assert(r.at_ms - start >= 300);
    ck_assert_ptr_nonnull(strstr(r.msg, "last state: starting"));
    ck_assert_ptr_nonnull(strstr(r.msg, "timeout 300 ms"));
}
END_TEST

START_TEST(empty_value_is_named_in_the_timeout)
{
    struct ts_result r = {0};

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 200, ts_on_done,
                                            &r, NULL),
                     0);
    stub_writes("", 0);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(r.msg, "last state: (empty value)"));
}
END_TEST

START_TEST(garbage_and_oversized_values_are_ignored)
{
    struct ts_result r = {0};
    char big[2000];

    memset(big, 'A', sizeof(big));
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 400, ts_on_done,
                                            &r, NULL),
                     0);
    stub_writes("\x01\xff\x00junk", 7);
    ts_spin(ctx, 50);
    stub_writes(big, sizeof(big));
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(r.msg, "last state: (oversized value)"));
}
END_TEST

START_TEST(node_created_and_removed)
{
    struct ts_result r = {0};

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 400, ts_on_done,
                                            &r, NULL),
                     0);
    stub_writes("starting", 8);
    ts_spin(ctx, 30);
    ck_assert(xs_rm(stub, XBT_NULL, "device-model/4/state"));
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(r.msg, "last state: starting"));
}
END_TEST

START_TEST(domain_released_before)
{
    struct ts_result r = {0};

    ck_assert(xs_release_domain(dom0, STUB));
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                            ts_on_done, &r, NULL),
                     0);
    ck_assert_int_eq(r.calls, 0);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EDOMAIN_GONE);
    ck_assert_ptr_nonnull(strstr(r.msg, "stubdomain 5 destroyed"));
}
END_TEST

START_TEST(domain_dies_during_wait_fails_fast)
{
    struct ts_result r = {0};
    static const char args[] = "5\0crashed (signal 11)";
    int64_t died;
    char *reply;

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                            ts_on_done, &r, NULL),
                     0);
    stub_writes("starting", 8);
    ts_spin(ctx, 100);
    died = stubdm_now_ms();
    reply = xs_control_command(dom0, "sim-release", (void *)args,
                               sizeof(args));
    ck_assert_ptr_nonnull(reply);
    free(reply);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EDOMAIN_GONE);
    /* Seen long before the 30 s timeout (the exact latency is measured by
     * bench/bench_wait, not asserted here). */
    ck_assert(r.at_ms - died < 5000);
    ck_assert_ptr_nonnull(strstr(r.msg, "crashed (signal 11)"));
    ck_assert_ptr_nonnull(strstr(r.msg, "last state: starting"));
}
END_TEST

START_TEST(domain_released_after_running)
{
    struct ts_result r = {0};

    stub_writes("running", 7);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                            ts_on_done, &r, NULL),
                     0);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert(xs_release_domain(dom0, STUB));
    ts_spin(ctx, 100);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.rc, 0);
}
END_TEST

START_TEST(other_domain_released_is_ignored)
{
    struct ts_result r = {0};

    ck_assert(xs_introduce_domain(dom0, 7, 1, 1));
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                            ts_on_done, &r, NULL),
                     0);
    ts_spin(ctx, 50);
    ck_assert(xs_release_domain(dom0, 7));
    ts_spin(ctx, 100);
    ck_assert_int_eq(r.calls, 0);
    stub_writes("running", 7);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, 0);
}
END_TEST

/* Callbacks that free or cancel things, including the ctx itself. */
struct chain {
    stubdm_op *other;
    int calls;
    bool free_ctx;
};

static void on_done_cancel_other(stubdm_op *op, int rc, void *user)
{
    struct chain *c = user;
    (void)rc;
    c->calls++;
    stubdm_op_cancel(c->other);
    stubdm_op_free(op); /* our own handle, from inside our callback */
    if (c->free_ctx) {
        stubdm_ctx_free(ctx);
        ctx = NULL;
    }
}

START_TEST(cancel_and_free_from_callbacks)
{
    struct chain c = {0};
    struct ts_result r2 = {0};
    stubdm_op *first = NULL;

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                            ts_on_done, &r2, &c.other),
                     0);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                            on_done_cancel_other, &c, &first),
                     0);
    stub_writes("running", 7);
    /* Both see "running" in the same dispatch; whichever runs first, each
     * completes exactly once. */
    ts_run_until_done(ctx, &r2, 5000);
    ts_spin(ctx, 50);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(r2.calls, 1);
    stubdm_op_free(c.other);
}
END_TEST

START_TEST(free_ctx_from_callback)
{
    struct chain c = {0};
    struct ts_result r2 = {0};

    c.free_ctx = true;
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 100,
                                            on_done_cancel_other, &c, NULL),
                     0);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 100, ts_on_done,
                                            &r2, &c.other),
                     0);
    /* The first to time out frees the ctx: no further callback. */
    while (ctx && c.calls == 0)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 50), 0);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(r2.calls, 0);
    /* A handle held by the caller outlives its ctx and is freed normally. */
    ck_assert_int_eq(stubdm_op_is_done(c.other), 1);
    stubdm_op_free(c.other);
}
END_TEST

START_TEST(cancel_pending_wait)
{
    struct ts_result r = {0};
    stubdm_op *op = NULL;

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                            ts_on_done, &r, &op),
                     0);
    ts_spin(ctx, 20);
    stubdm_op_cancel(op);
    stubdm_op_cancel(op);
    ts_run_until_done(ctx, &r, 1000);
    ck_assert_int_eq(r.rc, STUBDM_ECANCELED);
    /* The cancelled wait left no watch behind: running now changes
     * nothing and nothing fires. */
    stub_writes("running", 7);
    ts_spin(ctx, 50);
    ck_assert_int_eq(r.calls, 1);
    stubdm_op_free(op);
}
END_TEST

START_TEST(invalid_arguments)
{
    struct ts_result r = {0};

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 0, ts_on_done,
                                            &r, NULL),
                     STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "timeout"));
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 0x8000, GUEST, 10, ts_on_done,
                                            &r, NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 10, NULL, &r,
                                            NULL),
                     STUBDM_EINVAL);
    ts_spin(ctx, 50);
    ck_assert_int_eq(r.calls, 0);
}
END_TEST

START_TEST(blocking_form)
{
    ck_assert_int_eq(stubdm_dm_wait_running_sync(ctx, STUB, GUEST, 200),
                     STUBDM_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "not running"));
    stub_writes("running", 7);
    ck_assert_int_eq(stubdm_dm_wait_running_sync(ctx, STUB, GUEST, 5000), 0);
}
END_TEST

START_TEST(driven_by_epoll_hooks)
{
    struct stubdm_epoll ep;
    struct ts_result r = {0};
    int64_t end;

    ck_assert_int_eq(stubdm_epoll_attach(&ep, ctx), 0);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 10000,
                                            ts_on_done, &r, NULL),
                     0);
    ck_assert_int_eq(stubdm_epoll_run_once(&ep, 50), 0);
    stub_writes("running", 7);
    end = stubdm_now_ms() + 5000;
    while (!r.calls && stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_epoll_run_once(&ep, 100), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.rc, 0);
    ck_assert(ep.hook_calls >= 2); /* the xenstore fd and the timer */
    /* A timeout through the timerfd path. */
    r.calls = 0;
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 6, GUEST, 100, ts_on_done, &r,
                                            NULL),
                     0);
    end = stubdm_now_ms() + 5000;
    while (!r.calls && stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_epoll_run_once(&ep, 100), 0);
    ck_assert_int_eq(r.calls, 1);
    /* domain 6 was never introduced: gone, not timed out */
    ck_assert_int_eq(r.rc, STUBDM_EDOMAIN_GONE);
    stubdm_epoll_detach(&ep);
}
END_TEST

static GMainLoop *gloop;

static void on_done_quit(stubdm_op *op, int rc, void *user)
{
    ts_on_done(op, rc, user);
    g_main_loop_quit(gloop);
}

static gboolean write_running_later(gpointer user)
{
    (void)user;
    stub_writes("running", 7);
    return G_SOURCE_REMOVE;
}

START_TEST(driven_by_glib)
{
    struct ts_result r = {0};
    struct stubdm_glib *a;

    gloop = g_main_loop_new(NULL, FALSE);
    a = stubdm_glib_attach(ctx, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 10000,
                                            on_done_quit, &r, NULL),
                     0);
    g_timeout_add(50, write_running_later, NULL);
    g_main_loop_run(gloop);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.rc, 0);
    /* And a timeout through the glib timer source. */
    r.calls = 0;
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, 9, 100, on_done_quit,
                                            &r, NULL),
                     0);
    g_main_loop_run(gloop);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.rc, STUBDM_ETIMEDOUT);
    stubdm_glib_detach(a);
    g_main_loop_unref(gloop);
}
END_TEST

START_TEST(many_waits_share_one_release_watch)
{
    enum { N = 200 };
    static struct ts_result r[N];
    int done = 0;

    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 30000,
                                                ts_on_done, &r[i], NULL),
                         0);
    /* N state watches plus one shared @releaseDomain watch. */
    ck_assert_uint_eq(ctx->xs.nwatches, N + 1);
    stub_writes("running", 7);
    int64_t end = stubdm_now_ms() + 10000;
    while (done < N && stubdm_now_ms() < end) {
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 50), 0);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].calls;
    }
    ck_assert_int_eq(done, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(r[i].rc, 0);
    /* Everything released: an idle ctx holds no watch. */
    ck_assert_uint_eq(ctx->xs.nwatches, 0);
}
END_TEST

/* ---- several stubdomains, one shared @releaseDomain watch ---------------- */

/* The shared watch is gone from the mock too, not just from the library's
 * table: unwatching its token again is refused. */
static void assert_release_watch_gone(void)
{
    char token[48];

    ck_assert_uint_eq(ctx->xs.nwatches, 0);
    ck_assert_ptr_null(ctx->release_watch.path);
    ck_assert_uint_eq(ctx->n_domwatches, 0);
    snprintf(token, sizeof(token), "stubdm/%llu",
             (unsigned long long)ctx->release_watch.id);
    ck_assert_uint_ne(ctx->release_watch.id, 0);
    errno = 0;
    ck_assert(!xs_unwatch(ctx->xs.xsh, "@releaseDomain", token));
    ck_assert_int_eq(errno, ENOENT);
}

/* Waits subscribed in the order of subs[], stubdomains released in the
 * order of deaths[]: each wait ends with EDOMAIN_GONE after its own
 * stubdomain's release, not at its timeout, whatever the order.  The
 * code, not the time, tells a death seen from a missed one (which would
 * end at the 20 s timeout with ETIMEDOUT); the time bound is only the
 * test's patience, half that timeout, so a loaded machine cannot fail it
 * (bench_wait measures how soon). */
static void deaths_in_order(const unsigned *subs, const unsigned *deaths,
                            size_t n)
{
    struct ts_result r[4];
    const int bound = 10000;

    memset(r, 0, sizeof(r));
    for (size_t i = 0; i < n; i++) {
        if (subs[i] != STUB)
            ck_assert(xs_introduce_domain(dom0, subs[i], 1, 1));
        ck_assert_int_eq(stubdm_dm_wait_running(ctx, subs[i], GUEST, 20000,
                                                ts_on_done, &r[i], NULL),
                         0);
    }
    ts_spin(ctx, 20);
    for (size_t d = 0; d < n; d++) {
        size_t k = 0;
        while (subs[k] != deaths[d])
            k++;
        int64_t released = stubdm_now_ms();
        ck_assert(xs_release_domain(dom0, deaths[d]));
        while (!r[k].calls && stubdm_now_ms() - released < bound)
            ck_assert_int_eq(stubdm_ctx_run_once(ctx, 10), 0);
        ck_assert_msg(r[k].calls == 1,
                      "death %zu (domain %u): the wait did not end within "
                      "%d ms of the release",
                      d + 1, deaths[d], bound);
        ck_assert_int_eq(r[k].rc, STUBDM_EDOMAIN_GONE);
        ck_assert_int_lt(r[k].at_ms - released, bound);
        /* The others still wait, and the shared watch is still there. */
        for (size_t j = d + 1; j < n; j++) {
            size_t o = 0;
            while (subs[o] != deaths[j])
                o++;
            ck_assert_int_eq(r[o].calls, 0);
        }
    }
    ts_spin(ctx, 20);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(r[i].calls, 1);
    assert_release_watch_gone();
}

static const unsigned perm3[6][3] = {{5, 6, 7}, {5, 7, 6}, {6, 5, 7},
                                     {6, 7, 5}, {7, 5, 6}, {7, 6, 5}};

START_TEST(three_waits_deaths_in_every_order)
{
    static const unsigned subs[3] = {5, 6, 7};
    deaths_in_order(subs, perm3[_i], 3);
}
END_TEST

/* The case: waits for 7 then 5, deaths 7 then 5, and the reverse. */
START_TEST(two_waits_deaths_in_both_orders)
{
    static const unsigned subs[2] = {7, 5};
    static const unsigned deaths[2][2] = {{7, 5}, {5, 7}};
    deaths_in_order(subs, deaths[_i], 2);
}
END_TEST

/* A wait that ends otherwise (running, cancel) while others are subscribed
 * leaves the shared watch to them; the last one removes it. */
START_TEST(release_watch_outlives_finished_waits)
{
    struct ts_result r[3];
    stubdm_op *cancelled = NULL;

    memset(r, 0, sizeof(r));
    ck_assert(xs_introduce_domain(dom0, 7, 1, 1));
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 20000,
                                            ts_on_done, &r[0], NULL),
                     0);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 7, GUEST, 20000, ts_on_done,
                                            &r[1], &cancelled),
                     0);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 7, 9, 20000, ts_on_done,
                                            &r[2], NULL),
                     0);
    stub_writes("running", 7);
    ts_run_until_done(ctx, &r[0], 5000);
    ck_assert_int_eq(r[0].rc, 0);
    stubdm_op_cancel(cancelled);
    ts_run_until_done(ctx, &r[1], 5000);
    ck_assert_int_eq(r[1].rc, STUBDM_ECANCELED);
    ck_assert_ptr_nonnull(ctx->release_watch.path);
    int64_t released = stubdm_now_ms();
    ck_assert(xs_release_domain(dom0, 7));
    /* EDOMAIN_GONE, not the 20 s timeout: see deaths_in_order. */
    ts_run_until_done(ctx, &r[2], 10000);
    ck_assert_int_eq(r[2].rc, STUBDM_EDOMAIN_GONE);
    ck_assert_int_lt(r[2].at_ms - released, 10000);
    stubdm_op_free(cancelled);
    assert_release_watch_gone();
}
END_TEST

/* ---- a hostile stubdomain cannot hold the loop ---------------------------- */

/* 3000 rewrites of a watched node queued before the loop runs (a hostile
 * stubdomain's burst): the first dispatch takes at most 1024 events, runs
 * the wait's callback once (one read, not one per event), and returns; the
 * rest comes on the next dispatches, each as bounded; an unrelated 200 ms
 * timeout meanwhile fires on time, and the wait then sees "running". */
/* Between a dispatch's timer check and its return (scheduling noise). */
#define TIMER_SLACK_MS 20

START_TEST(burst_of_events_is_bounded_and_coalesced)
{
    enum { BURST = 3000 };
    struct ts_result r5 = {0}, r6 = {0};
    char v[32];

    ck_assert(xs_introduce_domain(dom0, 6, 1, 1));
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUB, GUEST, 20000,
                                            ts_on_done, &r5, NULL),
                     0);
    ts_spin(ctx, 50);
    for (int i = 0; i < BURST; i++) {
        int n = snprintf(v, sizeof(v), "starting %d", i);
        ck_assert(
            xs_write(stub, XBT_NULL, "device-model/4/state", v, (unsigned)n));
    }
    /* A sync request on the ctx's connection: every event was sent before
     * its reply, so all of them are in libxenstore's queue now. */
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 6, GUEST, 200, ts_on_done,
                                            &r6, NULL),
                     0);
    int dispatches = 0, late_returns = 0;
    uint64_t most = 0;
    while (!r6.calls && stubdm_now_ms() - t0 < 2000 * ts_time_scale()) {
        uint64_t before = stubdm__xs_requests(ctx);
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 50), 0);
        uint64_t used = stubdm__xs_requests(ctx) - before;
        most = used > most ? used : most;
        dispatches++;
        /* A dispatch that returns well past the deadline without having
         * fired it would be a timer starved by the flood. */
        if (!r6.calls && stubdm_now_ms() - t0 >= 200 + TIMER_SLACK_MS)
            late_returns++;
    }
    /* One read per dispatch for the flooded watch (plus 6's wait: its
     * watch firing once, a read), never one per event. */
    ck_assert_msg(most <= 4, "a dispatch made %llu xenstore requests",
                  (unsigned long long)most);
    ck_assert_int_ge(dispatches, 3);
    ck_assert_int_eq(r6.rc, STUBDM_ETIMEDOUT);
    /* Counted in dispatches, not milliseconds: a loaded machine delays
     * every dispatch alike, but the timer must still fire in the first
     * one that returns after its deadline. */
    ck_assert_msg(late_returns == 0,
                  "%d dispatches returned past the 200 ms deadline without "
                  "firing it (fired at %lld ms)",
                  late_returns, (long long)(r6.at_ms - t0));
    ck_assert_int_eq(r5.calls, 0);
    stub_writes("running", 7);
    ts_run_until_done(ctx, &r5, 5000);
    ck_assert_int_eq(r5.rc, 0);
}
END_TEST

static Suite *wait_suite(void)
{
    Suite *s = suite_create("wait");
    TCase *tc = tcase_create("mock");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, running_written_late);
    tcase_add_test(tc, running_written_before_the_wait);
    tcase_add_test(tc, running_written_twice_and_other_values);
    tcase_add_test(tc, never_running_times_out_with_last_state);
    tcase_add_test(tc, empty_value_is_named_in_the_timeout);
    tcase_add_test(tc, garbage_and_oversized_values_are_ignored);
    tcase_add_test(tc, node_created_and_removed);
    tcase_add_test(tc, domain_released_before);
    tcase_add_test(tc, domain_dies_during_wait_fails_fast);
    tcase_add_test(tc, domain_released_after_running);
    tcase_add_test(tc, other_domain_released_is_ignored);
    tcase_add_test(tc, cancel_and_free_from_callbacks);
    tcase_add_test(tc, free_ctx_from_callback);
    tcase_add_test(tc, cancel_pending_wait);
    tcase_add_test(tc, invalid_arguments);
    tcase_add_test(tc, blocking_form);
    tcase_add_test(tc, driven_by_epoll_hooks);
    tcase_add_test(tc, driven_by_glib);
    tcase_add_test(tc, many_waits_share_one_release_watch);
    tcase_add_loop_test(tc, three_waits_deaths_in_every_order, 0, 6);
    tcase_add_loop_test(tc, two_waits_deaths_in_both_orders, 0, 2);
    tcase_add_test(tc, release_watch_outlives_finished_waits);
    suite_add_tcase(s, tc);
    tcase_add_test(tc, burst_of_events_is_bounded_and_coalesced);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(wait_suite());
}
