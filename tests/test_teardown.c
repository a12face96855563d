/*
 * Destroying stubdomains from a foreign loop (stubdm_stubdom_destroy and
 * stubdm_stubdom_destroy_by_domid, asynchronous; their _sync forms), and
 * child processes a host reaps itself (stubdm_ctx_set_child_reaping,
 * stubdm_ctx_child_exited), on the simulated host with fake hotplug
 * scripts (as test_hotplug.c's: they record each run in the mock's
 * directory, and succeed, fail, sleep or hang as told).
 *
 * Every test checks that nothing is left afterwards: the store, the
 * processes, this process's children and fds.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "xen/host.h"
#include "mockxs.h"
#include "proccheck.h"
#include "run.h"
#include "spawnfix.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUEST 7
#define VBD_XVDA 51712u
#define SLOW_S 2 /* the "slow" remove's sleep, times ts_time_scale() */

static struct spawnfix fx;
static char logbuf[65536]; /* warnings and the destroy's steps */

static void log_hook(void *user, stubdm_log_level level, int os_errno,
                     const char *context, const char *msg)
{
    size_t l = strlen(logbuf);

    (void)user;
    (void)os_errno;
    if (getenv("TEST_TEARDOWN_VERBOSE"))
        fprintf(stderr, "[%s %d] %s\n", context, (int)level, msg);
    if (level >= STUBDM_LOG_WARN || !strncmp(msg, "destroy ", 8))
        snprintf(logbuf + l, sizeof(logbuf) - l, "%s\n", msg);
}

static void setup(void)
{
    static const struct spawnfix_opts o = {.log = log_hook,
                                           .log_level = STUBDM_LOG_DEBUG,
                                           .baseline = true};

    logbuf[0] = '\0';
    spawnfix_setup(&fx, &o);
    spawnfix_need_sim_stubdom(&fx);
}

static void teardown(void)
{
    spawnfix_teardown(&fx);
}

/* Valgrind slows every dispatch tenfold: the script sleeps longer (10 s,
 * below the 20 s bound on a remove), so that the bound below, half of it,
 * keeps its meaning. */
static int slow_s(void)
{
    return ts_time_scale() > 1 ? 5 * SLOW_S : SLOW_S;
}

/*
 * A fake script hp-<mode>; each run records "<type>-<devid>-<action>".
 * add/online: "add3" prints and exits 3; any other mode writes
 * hotplug-status connected and exits 0.  remove/offline: "slow" sleeps
 * slow_s() s, "rm3" prints and exits 3, "hang1" hangs the first time (until
 * killed, or its parent, the test, is gone) and exits 0 afterwards; any
 * other exits 0; each remove/offline run adds a line to the record's
 * ".runs" file.
 */
static void make_script(const char *mode, char *out, size_t len)
{
    static const char body[] =
        "#!/bin/sh\n"
        "dir=$(dirname \"$XENSTORED_PATH\")\n"
        "rec=\"$dir/rec-$XENBUS_TYPE-${XENBUS_PATH##*/}-$1\"\n"
        "case \"$1\" in\n"
        "add|online)\n"
        "  : > \"$rec\"\n"
        "  [ %s = add3 ] && { echo 'add failing on purpose'; exit 3; }\n"
        "  xenstore-write \"$XENBUS_PATH/hotplug-status\" connected; "
        "exit 0 ;;\n"
        "esac\n"
        "[ -e \"$rec\" ] && again=1\n"
        ": > \"$rec\"\n"
        "echo run >> \"$rec.runs\"\n"
        "case %s in\n"
        "slow) sleep %d ;;\n"
        "rm3) echo 'remove failing on purpose'; exit 3 ;;\n"
        "hang1) [ -n \"$again\" ] && exit 0\n"
        "  while read -r _ _ _ ppid _ < /proc/$$/stat && "
        "[ \"$ppid\" = \"$PPID\" ]; do sleep 0.2; done ;;\n"
        "esac\n"
        "exit 0\n";
    FILE *f;

    snprintf(out, len, "%s/hp-%s", fx.mock.dir, mode);
    f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, body, mode, mode, slow_s());
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(out, 0755), 0);
}

static bool has_record(const char *what)
{
    char p[400];

    snprintf(p, sizeof(p), "%s/rec-%s", fx.mock.dir, what);
    return access(p, F_OK) == 0;
}

/* A config with one raw disk (xvda) whose script is hp-<mode>, for a
 * simulated stubdomain run with sim_args. */
static stubdm_spawn_opts *config_disk_sim(const char *mode, int timeout_ms,
                                          const char *const *sim_args,
                                          size_t nsim)
{
    static const char *const qemu_args[] = {"-machine", "none"};
    stubdm_spawn_opts *c = spawnfix_config(&fx, GUEST, qemu_args, 2, sim_args,
                                           nsim, timeout_ms);
    char ds[PATH_MAX];

    make_script(mode, ds, sizeof(ds));
    ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/dev/null", "raw", 1), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 0, ds), 0);
    return c;
}

/* ... whose stubdomain runs (no QEMU). */
static stubdm_spawn_opts *config_disk(const char *mode, int timeout_ms)
{
    static const char *const noqemu[] = {"--no-qemu"};
    return config_disk_sim(mode, timeout_ms, noqemu, 1);
}

/* ... whose stubdomain never writes running: the spawn fails at WAIT. */
static stubdm_spawn_opts *config_disk_never_running(const char *mode,
                                                    int timeout_ms)
{
    static const char *const norun[] = {"--no-qemu", "--no-running"};
    return config_disk_sim(mode, timeout_ms, norun, 2);
}

static stubdm_stubdom *spawn_disk(const char *mode)
{
    stubdm_spawn_opts *c = config_disk(mode, 10000);
    stubdm_stubdom *s = NULL;

    ck_assert_msg(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s) == 0, "%s",
                  stubdm_ctx_errmsg(fx.ctx));
    stubdm_spawn_opts_free(c);
    return s;
}

static void assert_store_clean(void)
{
    char *after = spawnfix_dump(&fx);

    ck_assert_str_eq(after, fx.dump_before);
    free(after);
}

/* ---- a foreign loop ------------------------------------------------------ */

/*
 * The application's own loop (poll pair): poll(2) is the application's
 * wait; only stubdm_ctx_poll_dispatch is the library's work, and each one
 * is timed.  extra (may be -1) is one more fd of the application's, and
 * on_extra runs when it is readable.
 */
struct app_loop {
    int extra;
    void (*on_extra)(void);
    int64_t max_dispatch_ms;
    unsigned dispatches;
};

static void app_loop_turn(struct app_loop *a, int max_wait_ms)
{
    struct pollfd fds[64];
    size_t n = STUBDM_ARRAY_SIZE(fds) - 1;
    int timeout = -1;
    int64_t t0, dt;

    ck_assert_int_eq(stubdm_ctx_poll_prepare(fx.ctx, fds, &n, &timeout), 0);
    if (timeout < 0 || timeout > max_wait_ms)
        timeout = max_wait_ms;
    if (a->extra >= 0)
        fds[n] = (struct pollfd){a->extra, POLLIN, 0};
    if (poll(fds, n + (a->extra >= 0), timeout) < 0)
        ck_assert_int_eq(errno, EINTR);
    if (a->extra >= 0 && (fds[n].revents & POLLIN))
        a->on_extra();
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_ctx_poll_dispatch(fx.ctx, fds, n), 0);
    dt = stubdm_now_ms() - t0;
    if (dt > a->max_dispatch_ms)
        a->max_dispatch_ms = dt;
    a->dispatches++;
}

static void app_loop_until_done(struct app_loop *a, const struct ts_result *r,
                                int ms)
{
    int64_t t0 = stubdm_now_ms();

    while (!r->done) {
        ck_assert_msg(stubdm_now_ms() - t0 < ms, "not done after %d ms", ms);
        app_loop_turn(a, 100);
    }
    ck_assert_int_eq(r->calls, 1);
}

/* ---- destroy from a foreign loop ----------------------------------------- */

/*
 * The remove script sleeps slow_s() s (2 s; 10 s under valgrind).  The old
 * blocking destroy held its caller (and so the caller's loop) for the whole
 * sleep (3014 ms with a 3 s sleep); now no dispatch waits for it.  The bound,
 * half the sleep, cannot flake: a dispatch here is a few xenstore requests and
 * a posix_spawn (milliseconds; far below 1 s even on a loaded host), while any
 * dispatch that waited for the script would take the whole sleep, which no
 * load shortens.
 */
START_TEST(test_destroy_never_blocks_a_dispatch)
{
    stubdm_stubdom *s = spawn_disk("slow");
    struct app_loop a = {.extra = -1};
    struct ts_result r = {0};
    stubdm_op *op = NULL;
    uint32_t S = stubdm_stubdom_domid(s);
    char want[96];
    int64_t t0 = stubdm_now_ms(), took;

    ck_assert_int_eq(stubdm_stubdom_destroy(s, ts_on_done, &r, &op), 0);
    /* The domain is destroyed by now (the point of no return). */
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_DESTROYED);
    ck_assert_int_eq(stubdm_stubdom_destroy(s, NULL, NULL, NULL),
                     STUBDM_EBUSY);
    ck_assert(!r.done);
    app_loop_turn(&a, 100);
    /* The handle may go while its destroy runs: the op goes on. */
    stubdm_stubdom_free(s);
    app_loop_until_done(&a, &r, 20000 + slow_s() * 1000);
    took = stubdm_now_ms() - t0;
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    ck_assert(has_record("vbd-51712-remove"));
    ck_assert_msg(took >= slow_s() * 1000, "done after %lld ms",
                  (long long)took);
    fprintf(stderr,
            "destroy with a %d s remove script: done after %lld ms, %u "
            "dispatches, the longest %lld ms\n",
            slow_s(), (long long)took, a.dispatches,
            (long long)a.max_dispatch_ms);
    ck_assert_int_lt(a.max_dispatch_ms, slow_s() * 1000 / 2);
    /* Its steps are logged. */
    snprintf(want, sizeof(want), "destroy %u: running hotplug scripts", S);
    ck_assert_msg(strstr(logbuf, want), "%s", logbuf);
    snprintf(want, sizeof(want), "destroy %u: done", S);
    ck_assert_msg(strstr(logbuf, want), "%s", logbuf);
    stubdm_op_free(op);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* ---- a failed or cancelled spawn's rollback ----------------------------- */

static bool store_clean(void)
{
    char *now = spawnfix_dump(&fx);
    bool same = !strcmp(now, fx.dump_before);

    free(now);
    return same;
}

struct rb_run {
    struct ts_result r; /* first: ts_on_done's */
    stubdm_spawn_step step;
};

static void rb_on_step(stubdm_stubdom *s, stubdm_spawn_step step, void *user)
{
    (void)s;
    ((struct rb_run *)user)->step = step;
}

/*
 * A spawn with one raw disk whose remove sleeps slow_s() s, on a
 * stubdomain that never reports running: it fails at WAIT (timeout 1 s)
 * after its add ran, or (cancel) is cancelled there.  The rollback runs
 * the slow remove: no dispatch may wait for it (the blocking rollback of
 * the op's stop hook held one dispatch for the whole sleep: 2008 ms), and
 * the op completes only after it, with the spawn's error, nothing left.
 */
static void rollback_case(bool cancel)
{
    stubdm_spawn_opts *c = config_disk_never_running("slow",
                                                     cancel ? 20000 : 1000);
    struct app_loop a = {.extra = -1};
    struct rb_run run = {.step = STUBDM_SPAWN_STEP_CREATE};
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    int64_t t0, took;

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, rb_on_step, ts_on_done, &run, &s,
                                  &op),
                     0);
    stubdm_spawn_opts_free(c);
    while (run.step != STUBDM_SPAWN_STEP_WAIT && !run.r.done)
        app_loop_turn(&a, 100);
    ck_assert_msg(!run.r.done, "%s", run.r.msg);
    ck_assert(has_record("vbd-51712-add"));
    a.max_dispatch_ms = 0; /* the rollback's dispatches from here */
    a.dispatches = 0;
    t0 = stubdm_now_ms();
    if (cancel) {
        /* The cancel itself is no wait either (the blocking rollback ran
         * inside it). */
        stubdm_op_cancel(op);
        a.max_dispatch_ms = stubdm_now_ms() - t0;
        fprintf(stderr, "stubdm_op_cancel took %lld ms\n",
                (long long)a.max_dispatch_ms);
        ck_assert_int_lt(a.max_dispatch_ms, slow_s() * 1000 / 2);
        /* It ends once nothing is left: not yet. */
        ck_assert(!stubdm_op_is_done(op));
        ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_FAILED);
        /* A destroy meanwhile has nothing to add. */
        ck_assert_int_eq(stubdm_stubdom_destroy(s, NULL, NULL, NULL),
                         STUBDM_EBUSY);
    }
    app_loop_until_done(&a, &run.r, 30000 + slow_s() * 1000);
    took = run.r.at_ms - t0;
    fprintf(stderr,
            "%s spawn with a %d s remove script: done after %lld ms, %u "
            "dispatches, the longest %lld ms\n",
            cancel ? "cancelled" : "failed", slow_s(), (long long)took,
            a.dispatches, (long long)a.max_dispatch_ms);
    ck_assert_int_lt(a.max_dispatch_ms, slow_s() * 1000 / 2);
    if (cancel) {
        ck_assert_int_eq(run.r.rc, STUBDM_ECANCELED);
        ck_assert_msg(strstr(run.r.msg, "spawn: waiting for running: "
                                        "cancelled") &&
                          !strstr(run.r.msg, "cleaning up"),
                      "%s", run.r.msg);
    } else {
        ck_assert_int_eq(run.r.rc, STUBDM_ETIMEDOUT);
        ck_assert_msg(strstr(run.r.msg, "spawn: waiting for running: ") &&
                          !strstr(run.r.msg, "cleaning up"),
                      "%s", run.r.msg);
    }
    /* Completed after the rollback: the remove ran, whole. */
    ck_assert(has_record("vbd-51712-remove"));
    ck_assert_msg(run.r.at_ms - t0 >= slow_s() * 1000, "done after %lld ms",
                  (long long)(run.r.at_ms - t0));
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_FAILED);
    stubdm_op_free(op);
    stubdm_stubdom_free(s);
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}

START_TEST(test_failed_spawn_rollback_never_blocks)
{
    rollback_case(false);
}
END_TEST

START_TEST(test_cancelled_spawn_rollback_never_blocks)
{
    rollback_case(true);
}
END_TEST

/* The op freed while its rollback runs: the rollback finishes alone. */
START_TEST(test_rollback_outlives_freed_op)
{
    stubdm_spawn_opts *c = config_disk_never_running("slow", 20000);
    struct app_loop a = {.extra = -1};
    struct rb_run run = {.step = STUBDM_SPAWN_STEP_CREATE};
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    int64_t t0 = 0;

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, rb_on_step, ts_on_done, &run, &s,
                                  &op),
                     0);
    stubdm_spawn_opts_free(c);
    while (run.step != STUBDM_SPAWN_STEP_WAIT)
        app_loop_turn(&a, 100);
    stubdm_op_cancel(op);
    app_loop_turn(&a, 100);
    /* The op and the handle go while the remove script runs. */
    t0 = stubdm_now_ms();
    stubdm_op_free(op);
    stubdm_stubdom_free(s);
    a.max_dispatch_ms = stubdm_now_ms() - t0;
    ck_assert(!run.r.done);
    while (!has_record("vbd-51712-remove") || !store_clean()) {
        ck_assert(stubdm_now_ms() - t0 < 30000 + slow_s() * 1000);
        app_loop_turn(&a, 100);
    }
    ck_assert_int_lt(a.max_dispatch_ms, slow_s() * 1000 / 2);
    ck_assert(!run.r.done); /* nothing called back */
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* A rollback that fails too: the spawn's error, then the rollback's; the
 * rest of the rollback still went. */
START_TEST(test_rollback_failure_reported)
{
    stubdm_spawn_opts *c = config_disk_never_running("rm3", 1000);
    stubdm_stubdom *s = NULL;
    const char *msg;

    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s),
                     STUBDM_ETIMEDOUT);
    stubdm_spawn_opts_free(c);
    msg = stubdm_ctx_errmsg(fx.ctx);
    ck_assert_msg(!strncmp(msg, "spawn: waiting for running: ", 28) &&
                      strstr(msg, "; cleaning up failed too: destroy ") &&
                      strstr(msg, "hotplug scripts: vbd 51712 (") &&
                      strstr(msg, "exited with status 3"),
                  "%s", msg);
    ck_assert(has_record("vbd-51712-remove"));
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* The ctx freed while the rollback's remove script runs: stubdm_ctx_free
 * finishes the rollback there (no loop turns any more), so neither the
 * domain nor a node is left; the killed remove runs again, whole. */
START_TEST(test_ctx_free_finishes_rollback)
{
    stubdm_spawn_opts *c = config_disk_never_running("slow", 1000);
    struct app_loop a = {.extra = -1};
    struct rb_run run = {.step = STUBDM_SPAWN_STEP_CREATE};
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    int64_t t0 = stubdm_now_ms();

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, rb_on_step, ts_on_done, &run, &s,
                                  &op),
                     0);
    stubdm_spawn_opts_free(c);
    while (!has_record("vbd-51712-remove")) {
        ck_assert(stubdm_now_ms() - t0 < 20000);
        app_loop_turn(&a, 100);
    }
    ck_assert(!run.r.done);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_FAILED);
    stubdm_ctx_free(fx.ctx);
    fx.ctx = NULL;
    ck_assert(!run.r.done); /* dropped without its callback */
    ck_assert_msg(strstr(logbuf, "the ctx is freed while running hotplug "
                                 "scripts: finishing it blocking"),
                  "%s", logbuf);
    stubdm_op_free(op);
    stubdm_stubdom_free(s); /* after the ctx: a failed handle may be */
    assert_store_clean();
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
}
END_TEST

/* The same by domid, floating (no op handle), and its failure: the remove
 * exits 3, which done gets. */
START_TEST(test_destroy_by_domid_async)
{
    stubdm_stubdom *s = spawn_disk("rm3");
    struct app_loop a = {.extra = -1};
    struct ts_result r = {0};
    uint32_t S = stubdm_stubdom_domid(s);

    stubdm_stubdom_free(s); /* the stubdomain runs on */
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(fx.ctx, fx.mock.dir), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid(fx.ctx, S, 0, ts_on_done,
                                                     &r, NULL),
                     0);
    ck_assert(!r.done);
    app_loop_until_done(&a, &r, 20000);
    ck_assert_int_eq(r.rc, STUBDM_EFAIL);
    ck_assert_msg(strstr(r.msg, "hotplug scripts: vbd 51712 (") &&
                      strstr(r.msg, "/hp-rm3 remove) of stubdomain") &&
                      strstr(r.msg, "exited with status 3"),
                  "%s", r.msg);
    ck_assert_msg(strstr(logbuf, "remove failing on purpose"), "%s", logbuf);
    /* Everything else still went. */
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* The blocking forms, built on the asynchronous ones. */
START_TEST(test_blocking_forms)
{
    stubdm_stubdom *s = spawn_disk("ok");
    uint32_t S;

    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    ck_assert(has_record("vbd-51712-remove"));
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_DESTROYED);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0); /* idempotent */
    stubdm_stubdom_free(s);
    assert_store_clean();

    s = spawn_disk("ok");
    S = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(fx.ctx, fx.mock.dir), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, S, 0), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, S, 0),
                     STUBDM_ENOENT);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, S, 8),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(NULL), STUBDM_EINVAL);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/*
 * A domain already gone: nothing at all is refused at once (nothing
 * called back); a stubdomain another toolstack destroyed, whose backends
 * dom0 still holds, is finished asynchronously (its removes run).
 */
START_TEST(test_destroy_gone)
{
    struct app_loop a = {.extra = -1};
    struct ts_result r = {0};
    stubdm_op *op = (stubdm_op *)&op;
    stubdm_stubdom *s;
    stubdm_ctx *other = NULL;
    uint32_t S;

    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid(fx.ctx, 99, 0, ts_on_done,
                                                     &r, &op),
                     STUBDM_ENOENT);
    ck_assert_ptr_null(op);
    ts_spin(fx.ctx, 50);
    ck_assert(!r.done);

    s = spawn_disk("ok");
    S = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s);
    ck_assert_int_eq(stubdm_ctx_new(&other), 0);
    stubdm_ctx_set_host(other, STUBDM_HOST_SIM);
    ck_assert_int_eq(stubdm__host_sim.destroy(other, S), 0);
    stubdm_ctx_free(other);
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(fx.ctx, fx.mock.dir), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid(fx.ctx, S, 0, ts_on_done,
                                                     &r, &op),
                     0);
    app_loop_until_done(&a, &r, 20000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    ck_assert(has_record("vbd-51712-remove"));
    stubdm_op_free(op);
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* How many times the remove/offline of what ran (its ".runs" lines). */
static int record_runs(const char *what)
{
    char p[400], line[16];
    int n = 0;
    FILE *f;

    snprintf(p, sizeof(p), "%s/rec-%s.runs", fx.mock.dir, what);
    f = fopen(p, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        n++;
    fclose(f);
    return n;
}

/*
 * Two teardowns of one stubdomain at once, as a toolstack's destroy and
 * stubdmd's cleanup after it (another ctx: its own open file of the lock,
 * as another process): the second waits for the first's teardown lock,
 * then finds what the first left, nothing.  The remove script runs once,
 * and nothing the first removed comes back (a second run of a real block
 * script, after the first removed the backend, wrote its hotplug-error
 * into a backend directory it re-created).
 */
START_TEST(test_concurrent_teardowns_run_scripts_once)
{
    stubdm_stubdom *s = spawn_disk("slow");
    struct app_loop a = {.extra = -1};
    struct ts_result r1 = {0}, r2 = {0};
    stubdm_op *op1 = NULL, *op2 = NULL;
    stubdm_ctx *other = NULL;
    uint32_t S = stubdm_stubdom_domid(s);
    int64_t t0 = stubdm_now_ms(), bound = 30000 + 2 * slow_s() * 1000;

    ck_assert_int_eq(stubdm_stubdom_destroy(s, ts_on_done, &r1, &op1), 0);
    while (!has_record("vbd-51712-remove")) {
        ck_assert_int_lt(stubdm_now_ms() - t0, 10000);
        app_loop_turn(&a, 20);
    }
    ck_assert_int_eq(stubdm_ctx_new(&other), 0);
    stubdm_ctx_set_host(other, STUBDM_HOST_SIM);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(other, fx.mock.dir), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid(other, S, 0, ts_on_done,
                                                     &r2, &op2),
                     0);
    while (!r1.done || !r2.done) {
        ck_assert_msg(stubdm_now_ms() - t0 < bound,
                      "first %s (%d), second %s (%d)",
                      r1.done ? "done" : "pending", r1.rc,
                      r2.done ? "done" : "pending", r2.rc);
        app_loop_turn(&a, 10);
        ts_spin(other, 10);
    }
    ck_assert_msg(r1.rc == 0, "%s", r1.msg);
    ck_assert_msg(r2.rc == 0, "%s", r2.msg);
    ck_assert_int_eq(record_runs("vbd-51712-remove"), 1);
    stubdm_op_free(op2);
    stubdm_ctx_free(other);
    stubdm_op_free(op1);
    stubdm_stubdom_free(s);
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/*
 * Cancelled while the remove script runs: the script is killed, nothing
 * more is removed, done says what is left, and a destroy by domid
 * finishes the job (the stubdomain is recognised without force).
 */
START_TEST(test_cancel_mid_destroy)
{
    stubdm_stubdom *s = spawn_disk("hang1");
    struct app_loop a = {.extra = -1};
    struct ts_result r = {0};
    stubdm_op *op = NULL;
    uint32_t S = stubdm_stubdom_domid(s);
    int64_t t0;

    ck_assert_int_eq(stubdm_stubdom_destroy(s, ts_on_done, &r, &op), 0);
    t0 = stubdm_now_ms();
    while (!has_record("vbd-51712-remove")) {
        ck_assert_int_lt(stubdm_now_ms() - t0, 10000);
        app_loop_turn(&a, 20);
    }
    stubdm_op_cancel(op);
    app_loop_until_done(&a, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_ECANCELED);
    ck_assert_msg(strstr(r.msg, "cancelled while running hotplug scripts: "
                                "the domain is destroyed") &&
                      strstr(r.msg, "stubdm_stubdom_destroy_by_domid"),
                  "%s", r.msg);
    ck_assert_msg(strstr(logbuf, "cancelled while running hotplug"), "%s",
                  logbuf);
    stubdm_op_free(op);
    stubdm_stubdom_free(s);
    /* Killed, and reaped: no child of ours is left. */
    ck_assert_int_eq(proc_children_settled(fx.mock.pid), 0);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(fx.ctx, fx.mock.dir), 0);
    ck_assert_msg(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, S, 0) == 0,
                  "%s", stubdm_ctx_errmsg(fx.ctx));
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* ---- a host that reaps every child --------------------------------------- */

/*
 * As xl (libxl_sigchld_owner_libxl) or any program with a SIGCHLD
 * handler calling waitpid(-1): the handler reaps, records, and wakes the
 * loop through a pipe; the loop then offers each status to the library
 * (or, with hand_over false, drops it).
 */
#define REAPED_MAX 64
static struct {
    volatile sig_atomic_t n;
    pid_t pid[REAPED_MAX];
    int st[REAPED_MAX];
} reaped;
static int wake[2] = {-1, -1};
static bool hand_over;
static int handed_ours, handed_not_ours;

static void on_sigchld(int sig)
{
    int e = errno, st;
    pid_t p;

    (void)sig;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        if (reaped.n < REAPED_MAX) {
            reaped.pid[reaped.n] = p;
            reaped.st[reaped.n] = st;
            reaped.n = reaped.n + 1;
        }
    }
    if (write(wake[1], "x", 1) < 0) {
        /* full: the loop wakes anyway */
    }
    errno = e;
}

static void host_drain(void)
{
    char b[64];
    sigset_t chld, old;

    while (read(wake[0], b, sizeof(b)) > 0)
        ;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    for (int i = 0; i < reaped.n; i++) {
        if (!hand_over)
            continue;
        int r = stubdm_ctx_child_exited(fx.ctx, reaped.pid[i], reaped.st[i]);
        ck_assert_int_ge(r, 0);
        if (r)
            handed_ours++;
        else
            handed_not_ours++;
    }
    reaped.n = 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
}

static void host_setup(void)
{
    struct sigaction sa;

    setup();
    reaped.n = 0;
    handed_ours = handed_not_ours = 0;
    ck_assert_int_eq(pipe2(wake, O_CLOEXEC | O_NONBLOCK), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGCHLD, &sa, NULL), 0);
    fx.fds_before += 2; /* the host's pipe */
}

static void host_teardown(void)
{
    signal(SIGCHLD, SIG_DFL);
    close(wake[0]);
    close(wake[1]);
    fx.fds_before -= 2;
    teardown();
}

/* Spawn cfg asynchronously in the host's loop; its result into r. */
static stubdm_stubdom *host_spawn(stubdm_spawn_opts *c, struct ts_result *r,
                                  struct app_loop *a)
{
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, ts_on_done, r, &s, &op), 0);
    stubdm_spawn_opts_free(c);
    app_loop_until_done(a, r, 30000);
    stubdm_op_free(op);
    return s;
}

/*
 * Host mode, statuses handed over: the add's real status (exit 3) is
 * what the spawn reports; a spawn whose scripts succeed succeeds, and
 * its destroy reports the remove's exit 3.  Before
 * stubdm_ctx_child_exited existed, no host that reaps could get either:
 * both were "ended with an unknown status".
 */
START_TEST(test_host_reaps_and_hands_over)
{
    struct app_loop a = {.extra = wake[0], .on_extra = host_drain};
    struct ts_result r = {0};
    stubdm_stubdom *s;

    hand_over = true;
    ck_assert_int_eq(stubdm_ctx_set_child_reaping(fx.ctx, 7), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_set_child_reaping(fx.ctx,
                                                  STUBDM_CHILD_REAPING_HOST),
                     0);
    ck_assert_int_eq(stubdm_ctx_child_exited(fx.ctx, 0, 0), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_child_exited(NULL, 1, 0), STUBDM_EINVAL);

    s = host_spawn(config_disk("add3", 10000), &r, &a);
    ck_assert_int_eq(r.rc, STUBDM_EFAIL);
    ck_assert_msg(strstr(r.msg, "/hp-add3 add) of stubdomain") &&
                      strstr(r.msg, "exited with status 3"),
                  "%s", r.msg);
    ck_assert_msg(strstr(logbuf, "add failing on purpose"), "%s", logbuf);
    stubdm_stubdom_free(s);
    ck_assert_int_ge(handed_ours, 1);

    memset(&r, 0, sizeof(r));
    s = host_spawn(config_disk("rm3", 10000), &r, &a);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(stubdm_stubdom_destroy(s, ts_on_done, &r, NULL), 0);
    app_loop_until_done(&a, &r, 20000);
    ck_assert_int_eq(r.rc, STUBDM_EFAIL);
    ck_assert_msg(strstr(r.msg, "/hp-rm3 remove) of stubdomain") &&
                      strstr(r.msg, "exited with status 3"),
                  "%s", r.msg);
    stubdm_stubdom_free(s);
    /* Every status of the library's children was taken as its own (the
     * failed spawn's blocking teardown's remove too, as owed). */
    app_loop_turn(&a, 50);
    ck_assert_int_eq(handed_not_ours, 0);
    ck_assert_int_eq(fx.ctx->n_child_owed, 0);
    ck_assert(stubdm__list_empty(&fx.ctx->children));
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* Host mode, statuses never handed over: the script counts as failed
 * after the grace, with a message naming the cause, never a hang. */
START_TEST(test_host_reaps_silently)
{
    struct app_loop a = {.extra = wake[0], .on_extra = host_drain};
    struct ts_result r = {0};
    stubdm_stubdom *s;
    int64_t t0 = stubdm_now_ms();

    hand_over = false;
    ck_assert_int_eq(stubdm_ctx_set_child_reaping(fx.ctx,
                                                  STUBDM_CHILD_REAPING_HOST),
                     0);
    s = host_spawn(config_disk("ok", 20000), &r, &a);
    ck_assert_int_eq(r.rc, STUBDM_EFAIL);
    ck_assert_msg(strstr(r.msg, "did not hand its status over with "
                                "stubdm_ctx_child_exited"),
                  "%s", r.msg);
    ck_assert_int_lt(stubdm_now_ms() - t0, 15000);
    stubdm_stubdom_free(s);
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* Library mode under a host that reaps everything (the behaviour before
 * the host mode existed): at once "unknown status", naming the fix. */
START_TEST(test_library_mode_status_stolen)
{
    struct app_loop a = {.extra = wake[0], .on_extra = host_drain};
    struct ts_result r = {0};
    stubdm_stubdom *s;

    hand_over = false;
    s = host_spawn(config_disk("ok", 20000), &r, &a);
    ck_assert_int_eq(r.rc, STUBDM_EFAIL);
    ck_assert_msg(strstr(r.msg, "reaped by someone else") &&
                      strstr(r.msg, "STUBDM_CHILD_REAPING_HOST"),
                  "%s", r.msg);
    stubdm_stubdom_free(s);
    assert_store_clean();
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* ---- signals through pidfds only ----------------------------------------- */

/*
 * Before Linux 6.9 (no PIDFD_SIGNAL_PROCESS_GROUP) a script's process
 * group is killed member by member, each through a pidfd: forced here.
 * The add hangs in a loop of sleeps (children of the script, in its
 * group); the spawn's timeout kills the lot.
 */
START_TEST(test_group_killed_by_pidfds)
{
    static const char *const qemu_args[] = {"-machine", "none"};
    static const char *const noqemu[] = {"--no-qemu"};
    stubdm_spawn_opts *c = spawnfix_config(&fx, GUEST, qemu_args, 2, noqemu, 1,
                                           1500);
    char ds[PATH_MAX], sleeper[PATH_MAX + 16], *v;
    stubdm_stubdom *s = NULL;
    FILE *f;
    long bg = 0;

    fx.ctx->no_pidfd_group = true;
    snprintf(ds, sizeof(ds), "%s/hp-bg", fx.mock.dir);
    snprintf(sleeper, sizeof(sleeper), "%s/bg.pid", fx.mock.dir);
    f = fopen(ds, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "#!/bin/sh\n"
            "[ \"$1\" = add ] || exit 0\n"
            "sleep 60 &\n"
            "echo $! > %s.tmp; mv %s.tmp %s\n"
            "wait\n",
            sleeper, sleeper, sleeper);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(ds, 0755), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/dev/null", "raw", 1), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 0, ds), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s),
                     STUBDM_ETIMEDOUT);
    stubdm_spawn_opts_free(c);
    v = ts_slurp(sleeper);
    ck_assert_ptr_nonnull(v);
    bg = strtol(v, NULL, 10);
    free(v);
    ck_assert_int_gt(bg, 1);
    /* The script's child, reparented when the script died, is gone too
     * (a zombie at most, until its new parent reaps it). */
    for (int i = 0; i < 100; i++) {
        char p[64], *st;
        snprintf(p, sizeof(p), "/proc/%ld/stat", bg);
        st = ts_slurp(p);
        if (!st || strstr(st, ") Z ") || !strstr(st, "(sleep)")) {
            free(st);
            bg = 0;
            break;
        }
        free(st);
        usleep(20000);
    }
    ck_assert_msg(bg == 0, "the script's child %ld still runs", bg);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

static Suite *teardown_suite(void)
{
    Suite *s = suite_create("teardown");
    TCase *tc = tcase_create("destroy");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_destroy_never_blocks_a_dispatch);
    tcase_add_test(tc, test_failed_spawn_rollback_never_blocks);
    tcase_add_test(tc, test_cancelled_spawn_rollback_never_blocks);
    tcase_add_test(tc, test_rollback_outlives_freed_op);
    tcase_add_test(tc, test_ctx_free_finishes_rollback);
    tcase_add_test(tc, test_rollback_failure_reported);
    tcase_add_test(tc, test_destroy_by_domid_async);
    tcase_add_test(tc, test_blocking_forms);
    tcase_add_test(tc, test_destroy_gone);
    tcase_add_test(tc, test_cancel_mid_destroy);
    tcase_add_test(tc, test_concurrent_teardowns_run_scripts_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("host-reaps");
    tcase_add_checked_fixture(tc, host_setup, host_teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_host_reaps_and_hands_over);
    tcase_add_test(tc, test_host_reaps_silently);
    tcase_add_test(tc, test_library_mode_status_stolen);
    suite_add_tcase(s, tc);

    tc = tcase_create("pidfd-group");
    tcase_set_tags(tc, "needs-pidfd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_group_killed_by_pidfds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(teardown_suite());
}
