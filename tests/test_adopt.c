/*
 * Bring your own domain (stubdm_spawn_opts_set_domain), on the simulated
 * host: a "toolstack" here builds the stubdomain as libxl's
 * libxl__domain_make/_build would (the host layer's create, its
 * /local/domain/<S>, /vm/<uuid> and /libxl nodes, the introduction to
 * xenstore) and writes the guest's nodes, its own dm-version among them;
 * the library runs the rest of the spawn on that domain.  Every test
 * compares the whole store with the one the toolstack left, and checks
 * that the domain the library did not create is still there, unless the
 * caller handed it over (STUBDM_SPAWN_ADOPT_DESTROY).
 */
#include "core/base.h"
#include "xen/host.h"
#include "xen/xs.h"
#include "mockxs.h"
#include "proccheck.h"
#include "run.h"
#include "spawnfix.h"

#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xenstore.h>

#define GUEST 7
#define GUEST_VM "/vm/00000000-0000-0000-0000-000000000007"
#define STUB_VM "/vm/00000000-0000-0000-0000-0000000000a5"
#define VBD_XVDA 51712u

static struct spawnfix fx;
static struct xs_handle *ts; /* the toolstack's own connection (dom0) */
static uint32_t S;           /* the domain it built */
static char *built;          /* the store once it built it */

static void setup(void)
{
    static const struct spawnfix_opts o = {.verbose_env = "TEST_ADOPT_VERBOSE",
                                           .baseline = true};

    spawnfix_setup(&fx, &o);
    spawnfix_need_sim_stubdom(&fx);
    ts = mockxs_open_as(&fx.mock, 0);
    ck_assert_ptr_nonnull(ts);
    S = 0;
    built = NULL;
}

static void teardown(void)
{
    free(built);
    if (ts)
        xs_close(ts);
    spawnfix_teardown(&fx);
}

/* ---- the toolstack ------------------------------------------------------- */

static void ts_dir(const char *path, unsigned owner, unsigned reader)
{
    struct xs_permissions p[2] = {{owner, XS_PERM_NONE},
                                  {reader, XS_PERM_READ}};

    ck_assert(xs_write(ts, XBT_NULL, path, "", 0));
    ck_assert(xs_set_permissions(ts, XBT_NULL, path, p, 2));
}

static void ts_write(const char *path, const char *v)
{
    ck_assert(xs_write(ts, XBT_NULL, path, v, (unsigned)strlen(v)));
}

/* The guest's nodes as libxl's domain_make leaves them (no
 * /local/domain/<G>/image: device-model-domid creates it), and its
 * libxl-private dm-version, which libxl writes before the stubdomain
 * starts and reads after it is gone. */
static void ts_guest(void)
{
    ts_dir("/local/domain/7", 0, GUEST);
    ts_write("/local/domain/7/vm", GUEST_VM);
    ts_write("/local/domain/7/name", "test");
    ts_dir(GUEST_VM, 0, GUEST);
    ts_write(GUEST_VM "/image/ostype", "hvm");
    ts_dir("/libxl/7", 0, 0);
    ts_write("/libxl/7/type", "hvm");
    ts_write("/libxl/7/dm-version", "qemu_xen");
    ts_dir("/local/domain/0/backend", 0, 0);
}

/* Build the stubdomain: the host layer's create (paused; on the simulated
 * host its program starts only when it is unpaused), its nodes, its
 * introduction to xenstore.  Then snapshot the store. */
static void ts_build(void)
{
    struct stubdm__build b;
    char dom[48], p[96], num[16];

    ts_guest();
    memset(&b, 0, sizeof(b));
    ck_assert_int_eq(stubdm__host_sim.create(fx.ctx, &b), 0);
    S = b.domid;
    ck_assert_uint_ne(S, 0);
    snprintf(dom, sizeof(dom), "/local/domain/%u", S);
    snprintf(num, sizeof(num), "%u", S);
    ts_dir(dom, 0, S);
    snprintf(p, sizeof(p), "%s/name", dom);
    ts_write(p, "test-dm");
    snprintf(p, sizeof(p), "%s/domid", dom);
    ts_write(p, num);
    snprintf(p, sizeof(p), "%s/vm", dom);
    ts_write(p, STUB_VM);
    snprintf(p, sizeof(p), "%s/device", dom);
    ts_dir(p, S, 0);
    snprintf(p, sizeof(p), "%s/data", dom);
    ts_dir(p, S, 0);
    ts_dir(STUB_VM, 0, S);
    ts_write(STUB_VM "/name", "test-dm");
    snprintf(p, sizeof(p), "/libxl/%u", S);
    ts_dir(p, 0, 0);
    ck_assert(xs_introduce_domain(ts, S, 0, 0));
    built = spawnfix_dump(&fx);
}

static bool domain_known(uint32_t d)
{
    return xs_is_domain_introduced(ts, d);
}

/* The simulated hypervisor's state of d: "created", "running", "exited",
 * or "none". */
static void sim_state(uint32_t d, char *out, size_t len)
{
    char *r = xs_control_command(ts, "sim-list", "", 1), want[16];
    const char *line;

    ck_assert_ptr_nonnull(r);
    snprintf(out, len, "none");
    snprintf(want, sizeof(want), "%u ", d);
    for (line = r; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (!strncmp(line, want, strlen(want))) {
            sscanf(line + strlen(want), "%15s", out);
            break;
        }
    }
    free(r);
}

static void assert_alive(uint32_t d)
{
    char st[16];

    ck_assert_msg(domain_known(d), "domain %u was released", d);
    sim_state(d, st, sizeof(st));
    ck_assert_msg(strcmp(st, "none") && strcmp(st, "exited"),
                  "domain %u is %s", d, st);
}

static void assert_store_as_built(void)
{
    char *now = spawnfix_dump(&fx);

    ck_assert_str_eq(now, built);
    free(now);
}

/* Remove path unless the setup's store had it. */
static void rm_new(const char *path)
{
    char probe[128];
    size_t n = strlen(path);

    snprintf(probe, sizeof(probe), "%s ", path);
    if (!strncmp(fx.dump_before, probe, n + 1) ||
        (snprintf(probe, sizeof(probe), "\n%s ", path),
         strstr(fx.dump_before, probe)))
        return;
    xs_rm(ts, XBT_NULL, path);
}

/* The toolstack destroys its domain and removes what it wrote. */
static void ts_destroy(void)
{
    char p[64];

    if (S)
        ck_assert_int_eq(stubdm__host_sim.destroy(fx.ctx, S), 0);
    snprintf(p, sizeof(p), "/local/domain/%u", S);
    xs_rm(ts, XBT_NULL, p);
    snprintf(p, sizeof(p), "/libxl/%u", S);
    xs_rm(ts, XBT_NULL, p);
    xs_rm(ts, XBT_NULL, STUB_VM);
    xs_rm(ts, XBT_NULL, GUEST_VM);
    xs_rm(ts, XBT_NULL, "/local/domain/7");
    xs_rm(ts, XBT_NULL, "/libxl/7");
    rm_new("/local/domain/0/backend");
    rm_new("/local/domain/0");
    rm_new("/libxl");
    rm_new("/vm");
    xs_close(ts); /* not one of the baseline's fds */
    ts = NULL;
    spawnfix_assert_clean(&fx, false);
}

/* The "slow" mode's remove/offline sleep: 2 s (10 s under valgrind, whose
 * dispatches are slower, so that half of it stays a meaningful bound). */
static int slow_s(void)
{
    return ts_time_scale() > 1 ? 10 : 2;
}

/* A fake hotplug script: records each run, then as block/vif-bridge
 * ("ok"; "slow": its remove/offline sleeps slow_s()) or failing
 * ("error"). */
static void make_script(const char *mode, char *out, size_t len)
{
    FILE *f;

    snprintf(out, len, "%s/hp-%s", fx.mock.dir, mode);
    f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "#!/bin/sh\n"
            "echo \"$XENBUS_TYPE $1\" >> \"$(dirname \"$XENSTORED_PATH\")"
            "/hp.log\"\n"
            "case \"$1\" in add|online) ;; *) [ %s = slow ] && sleep %d; "
            "exit 0 ;; esac\n"
            "case %s in\n"
            "ok|slow) xenstore-write \"$XENBUS_PATH/hotplug-status\" "
            "connected ;;\n"
            "*) xenstore-write \"$XENBUS_PATH/hotplug-status\" error; exit 1 "
            ";;\n"
            "esac\n",
            mode, slow_s(), mode);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(out, 0755), 0);
}

static char *hp_log(void)
{
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s/hp.log", fx.mock.dir);
    return proc_read_file(p);
}

static const char *const qemu_args[] = {
    "-xen-domid", "7",           "-machine", "xenfv", "-m",
    "16",         "-nodefaults", "-display", "none",  "-no-shutdown",
};

/* Adopt S with flags; devices: one disk and one nic with this script
 * mode (NULL: none). */
static stubdm_spawn_opts *config(unsigned flags, const char *hp_mode,
                                 bool real_qemu, bool qmp)
{
    static const char *const noqemu[] = {"--no-qemu"};
    stubdm_spawn_opts *c = spawnfix_config(&fx, GUEST, qemu_args,
                                           STUBDM_ARRAY_SIZE(qemu_args),
                                           real_qemu ? NULL : noqemu,
                                           real_qemu ? 0 : 1, 20000);

    ck_assert_int_eq(stubdm_spawn_opts_set_domain(c, S, flags), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_dm_version(c, 0), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, qmp, 0), 0);
    if (hp_mode) {
        char sp[PATH_MAX];
        make_script(hp_mode, sp, sizeof(sp));
        ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/dev/null", "raw", 1),
                         0);
        ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 0, sp), 0);
        ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, "00:16:3e:00:00:01",
                                                   "xenbr7", sp),
                         0);
    }
    return c;
}

struct progress {
    unsigned seen;
    int cancel_at;
    stubdm_op *op;
    char state_at_wait[16]; /* the simulated domain's, as WAIT began */
};

static void on_progress(stubdm_stubdom *s, stubdm_spawn_step step, void *user)
{
    struct progress *p = user;

    p->seen |= 1u << step;
    if (step == STUBDM_SPAWN_STEP_WAIT)
        sim_state(stubdm_stubdom_domid(s), p->state_at_wait,
                  sizeof(p->state_at_wait));
    if ((int)step == p->cancel_at)
        stubdm_op_cancel(p->op);
}

static int run_op(stubdm_spawn_opts *c, struct progress *p, stubdm_stubdom **s,
                  char *msg, size_t len)
{
    stubdm_op *op = NULL;
    int rc;

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, on_progress, NULL, p, s, &op), 0);
    p->op = op;
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5000), 0);
    rc = stubdm_op_result(op);
    snprintf(msg, len, "%s", stubdm_op_errmsg(op));
    stubdm_op_free(op);
    return rc;
}

/* ---- through to running -------------------------------------------------- */

/* The toolstack's domain, adopted: its contract, a disk and a nic with
 * their scripts, unpaused (the simulated host boots its program, a real
 * QEMU), running, QMP answering.  stubdm_stubdom_destroy then undoes the
 * library's part only: the domain lives on, the store is the toolstack's
 * again (its own dm-version included). */
START_TEST(test_adopt_running)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct progress p = {0, -1, NULL, ""};
    char msg[STUBDM_ERRMSG_MAX], *reply = NULL, *log;
    uint32_t found = 0;

    ts_build();
    c = config(0, "ok", true, true);
    ck_assert_msg(run_op(c, &p, &s, msg, sizeof(msg)) == 0, "%s", msg);
    stubdm_spawn_opts_free(c);
    /* CONTRACT..QMP: CREATE was the toolstack's. */
    ck_assert_uint_eq(p.seen, 0x7eu);
    ck_assert_uint_eq(stubdm_stubdom_domid(s), S);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_RUNNING);
    ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s),
                                             "query-status", NULL, 10000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "\"running\": true"));
    free(reply);
    ck_assert_int_eq(stubdm_stubdom_find_by_guest(fx.ctx, GUEST, &found), 0);
    ck_assert_uint_eq(found, S);
    ck_assert_int_eq(stubdm_stubdom_pause(s), 0);
    ck_assert_int_eq(stubdm_stubdom_unpause(s), 0);

    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_DESTROYED);
    ck_assert_int_eq(stubdm_stubdom_pause(s), STUBDM_ESTATE);
    stubdm_stubdom_free(s);
    assert_alive(S);
    assert_store_as_built();
    log = hp_log();
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_nonnull(strstr(log, "vbd add\n"));
    ck_assert_ptr_nonnull(strstr(log, "vif online\n"));
    ck_assert_ptr_nonnull(strstr(log, "vbd remove\n"));
    ck_assert_ptr_nonnull(strstr(log, "vif offline\n"));
    free(log);
    ts_destroy();
}
END_TEST

/* ---- destroy from the loop ----------------------------------------------- */

/*
 * Destroying a stubdomain on a domain the toolstack built, whose disk's
 * and nic's remove/offline sleep slow_s() s each: neither the starting
 * call nor any dispatch waits for a script (before, the call ran both
 * removes blocking: 4012 ms), the domain stays (paused again), the store
 * is as built.
 */
START_TEST(test_adopt_destroy_never_blocks)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct ts_result r = {0};
    int64_t t0, t, longest, start = stubdm_now_ms();
    unsigned turns = 0;
    char *log;

    ts_build();
    c = config(0, "slow", false, false);
    ck_assert_msg(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s) == 0, "%s",
                  stubdm_ctx_errmsg(fx.ctx));
    stubdm_spawn_opts_free(c);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_stubdom_destroy(s, ts_on_done, &r, NULL), 0);
    longest = stubdm_now_ms() - t0;
    start = t0;
    while (!r.done) {
        ck_assert_msg(stubdm_now_ms() - start < 60000, "not done");
        t = stubdm_now_ms();
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 100), 0);
        t = stubdm_now_ms() - t;
        if (t > longest)
            longest = t;
        turns++;
    }
    fprintf(stderr,
            "destroy of an adopted domain with two %d s removes: done after "
            "%lld ms, %u turns, the longest call %lld ms\n",
            slow_s(), (long long)(r.at_ms - start), turns, (long long)longest);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    ck_assert_int_lt(longest, slow_s() * 1000 / 2);
    ck_assert_int_ge(r.at_ms - start, 2 * slow_s() * 1000);
    log = hp_log();
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_nonnull(strstr(log, "vbd remove\n"));
    ck_assert_ptr_nonnull(strstr(log, "vif offline\n"));
    free(log);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_DESTROYED);
    stubdm_stubdom_free(s);
    assert_alive(S);
    assert_store_as_built();
    ts_destroy();
}
END_TEST

/* ---- failures after CONTRACT: the domain stays, the store is as built ---- */

static const struct fail_case {
    const char *what;
    int cancel_at; /* -1: a failure of its own */
    const char *hp_mode;
    int rc;
    const char *in_msg;
} fail_cases[] = {
    {"cancel at CONTRACT", STUBDM_SPAWN_STEP_CONTRACT, "ok", STUBDM_ECANCELED,
     "cancelled"},
    {"cancel at DEVICES", STUBDM_SPAWN_STEP_DEVICES, "ok", STUBDM_ECANCELED,
     "cancelled"},
    {"cancel at HOTPLUG", STUBDM_SPAWN_STEP_HOTPLUG, "ok", STUBDM_ECANCELED,
     "cancelled"},
    {"cancel at UNPAUSE", STUBDM_SPAWN_STEP_UNPAUSE, "ok", STUBDM_ECANCELED,
     "cancelled"},
    {"cancel at WAIT", STUBDM_SPAWN_STEP_WAIT, "ok", STUBDM_ECANCELED,
     "cancelled"},
    {"cancel at QMP", STUBDM_SPAWN_STEP_QMP, "ok", STUBDM_ECANCELED,
     "cancelled"},
    {"hotplug script fails", -1, "error", STUBDM_EFAIL,
     "spawn: running hotplug scripts: "},
    {"program cannot start", -1, "ok", 0 /* any */, "spawn: unpausing: "},
    /* No devices: their scripts would share the short timeout. */
    {"never running", -1, NULL, STUBDM_ETIMEDOUT,
     "spawn: waiting for running: "},
    {"contract refused", -1, NULL, STUBDM_EPERM,
     "spawn: writing the xenstore contract: "},
};

START_TEST(test_adopt_failure_leaves_domain)
{
    const struct fail_case *fc = &fail_cases[_i];
    static const char *const norun[] = {"--no-qemu", "--no-running"};
    struct xs_permissions guest_own[1] = {{GUEST, XS_PERM_READ}};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct progress p = {0, fc->cancel_at, NULL, ""};
    char msg[STUBDM_ERRMSG_MAX];
    int rc;

    ts_build();
    if (!strcmp(fc->what, "contract refused")) {
        /* The guest's vm node is its own: dom0 must not write the argv
         * where the guest points. */
        ck_assert(xs_set_permissions(ts, XBT_NULL, "/local/domain/7/vm",
                                     guest_own, 1));
        free(built);
        built = spawnfix_dump(&fx);
    }
    c = config(0, fc->hp_mode, false, true);
    if (!strcmp(fc->what, "program cannot start"))
        ck_assert_int_eq(stubdm_spawn_opts_set_sim_program(
                             c, "/nonexistent/stubdom", NULL, 0),
                         0);
    if (!strcmp(fc->what, "never running")) {
        ck_assert_int_eq(stubdm_spawn_opts_set_sim_program(c, fx.sim_program,
                                                           norun, 2),
                         0);
        ck_assert_int_eq(stubdm_spawn_opts_set_timeout(c, 1000), 0);
    }
    rc = run_op(c, &p, &s, msg, sizeof(msg));
    stubdm_spawn_opts_free(c);
    ck_assert_msg(fc->rc ? rc == fc->rc : rc != 0, "%s: %s: %s", fc->what,
                  stubdm_errname(rc), msg);
    ck_assert_msg(strstr(msg, fc->in_msg), "%s: '%s' lacks '%s'", fc->what,
                  msg, fc->in_msg);
    if (fc->cancel_at >= 0) /* cancelled there, not later */
        ck_assert_uint_eq(p.seen >> fc->cancel_at, 1u);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_FAILED);
    stubdm_stubdom_free(s);
    assert_alive(S);
    assert_store_as_built();
    if (fc->hp_mode && p.seen & (1u << STUBDM_SPAWN_STEP_UNPAUSE)) {
        /* The scripts that ran were undone. */
        char *log = hp_log();
        ck_assert_ptr_nonnull(log);
        ck_assert_ptr_nonnull(strstr(log, "vbd remove\n"));
        ck_assert_ptr_nonnull(strstr(log, "vif offline\n"));
        free(log);
    }
    ts_destroy();
}
END_TEST

/* Handed over (STUBDM_SPAWN_ADOPT_DESTROY): a failure (0: no "running")
 * or a cancellation before anything was written (1: as CONTRACT is
 * reported) destroys the domain and removes its nodes, as for a domain
 * the library created. */
START_TEST(test_adopt_destroy_flag)
{
    static const char *const norun[] = {"--no-qemu", "--no-running"};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct progress p = {0, _i ? STUBDM_SPAWN_STEP_CONTRACT : -1, NULL, ""};
    char msg[STUBDM_ERRMSG_MAX], path[64], st[16], *v;

    ts_build();
    c = config(STUBDM_SPAWN_ADOPT_DESTROY, NULL, false, false);
    ck_assert_int_eq(stubdm_spawn_opts_set_sim_program(c, fx.sim_program,
                                                       norun, 2),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_set_timeout(c, 1000), 0);
    ck_assert_int_eq(run_op(c, &p, &s, msg, sizeof(msg)),
                     _i ? STUBDM_ECANCELED : STUBDM_ETIMEDOUT);
    stubdm_spawn_opts_free(c);
    stubdm_stubdom_free(s);
    ck_assert(!domain_known(S));
    sim_state(S, st, sizeof(st));
    ck_assert_str_eq(st, "none");
    snprintf(path, sizeof(path), "/local/domain/%u", S);
    v = xs_read(ts, XBT_NULL, path, NULL);
    ck_assert_msg(v == NULL, "%s is left", path);
    v = xs_read(ts, XBT_NULL, STUB_VM, NULL);
    ck_assert_msg(v == NULL, STUB_VM " is left");
    /* The guest's nodes are the toolstack's still. */
    v = xs_read(ts, XBT_NULL, "/libxl/7/dm-version", NULL);
    ck_assert_str_eq(v, "qemu_xen");
    free(v);
    S = 0; /* destroyed */
    ts_destroy();
}
END_TEST

/* STUBDM_SPAWN_ADOPT_NO_UNPAUSE: the spawn reports WAIT with the domain
 * still paused (the simulated one never started) and waits for "running"
 * there; the toolstack unpauses it (boots it) and the spawn completes.
 * Also without any console in the contract: the toolstack keeps them. */
START_TEST(test_adopt_no_unpause)
{
    static const char *const noqemu[] = {"--no-qemu"};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    struct progress p = {0, -1, NULL, ""};
    char st[16], words[PATH_MAX + 64], *reply = NULL, *r, *v, path[96];
    int64_t t0;
    size_t len;

    ts_build();
    c = config(STUBDM_SPAWN_ADOPT_NO_UNPAUSE, NULL, false, true);
    ck_assert_int_eq(
        stubdm_spawn_opts_set_consoles(c, STUBDM_CONTRACT_CONSOLES_NONE), 0);
    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, on_progress, NULL, &p, &s, &op),
                     0);
    stubdm_spawn_opts_free(c);
    t0 = stubdm_now_ms();
    while (stubdm_now_ms() - t0 < 500 * ts_time_scale())
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 50), 0);
    ck_assert(!stubdm_op_is_done(op));
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_WAIT);
    ck_assert_str_eq(p.state_at_wait, "created");
    ck_assert(!(p.seen & (1u << STUBDM_SPAWN_STEP_UNPAUSE)));
    sim_state(S, st, sizeof(st));
    ck_assert_str_eq(st, "created");
    /* No console of the contract's. */
    snprintf(path, sizeof(path), "/local/domain/%u/console", S);
    v = xs_read(ts, XBT_NULL, path, NULL);
    ck_assert_msg(v == NULL, "%s was written", path);
    snprintf(path, sizeof(path), "/local/domain/0/backend/console/%u", S);
    v = xs_read(ts, XBT_NULL, path, NULL);
    ck_assert_msg(v == NULL, "%s was written", path);

    /* The toolstack unpauses its domain: the simulated host boots it. */
    len = (size_t)snprintf(words, sizeof(words), "%u%c%s%c%s", S, '\0',
                           fx.sim_program, '\0', noqemu[0]);
    r = xs_control_command(ts, "sim-start", words, (unsigned)len + 1);
    ck_assert_ptr_nonnull(r);
    free(r);
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5000), 0);
    ck_assert_msg(stubdm_op_result(op) == 0, "%s", stubdm_op_errmsg(op));
    stubdm_op_free(op);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_RUNNING);
    ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s),
                                             "query-status", NULL, 10000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "running"));
    free(reply);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    assert_alive(S);
    assert_store_as_built();
    ts_destroy();
}
END_TEST

/* A domain that does not exist (or xenstore does not know) is refused at
 * once, naming it; nothing is made. */
START_TEST(test_adopt_refusals)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = (stubdm_stubdom *)&s;
    stubdm_op *op = (stubdm_op *)&op;
    struct stubdm__build b;

    ts_build();
    c = config(0, NULL, false, false);
    ck_assert_int_eq(stubdm_spawn_opts_set_domain(c, 555, 0), 0);
    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, &op),
                     STUBDM_ENOENT);
    ck_assert_ptr_null(s);
    ck_assert_ptr_null(op);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx),
                         "spawn: domain 555 does not exist"),
                  "%s", stubdm_ctx_errmsg(fx.ctx));
    /* Created but not introduced: not a domain xenstore serves. */
    memset(&b, 0, sizeof(b));
    ck_assert_int_eq(stubdm__host_sim.create(fx.ctx, &b), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_domain(c, b.domid, 0), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s),
                     STUBDM_ENOENT);
    ck_assert_int_eq(stubdm__host_sim.destroy(fx.ctx, b.domid), 0);
    /* The guest, or nonsense. */
    ck_assert_int_eq(stubdm_spawn_opts_set_domain(c, GUEST, 0), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(fx.ctx), "guest's"));
    ck_assert_int_eq(stubdm_spawn_opts_set_domain(c, 0x7ff0, 0),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_spawn_opts_set_domain(c, S, 1u << 9),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_spawn_opts_set_domain(c, S, 0), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_stubdom_domid(c, 40), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_spawn_opts_set_stubdom_domid(c, 0), 0);
    /* An output for a console the contract leaves to the toolstack. */
    ck_assert_int_eq(
        stubdm_spawn_opts_set_consoles(c, STUBDM_CONTRACT_CONSOLE(1)), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3, "pty"), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), STUBDM_EINVAL);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx), "console 3 (serial)"),
                  "%s", stubdm_ctx_errmsg(fx.ctx));
    ck_assert_int_eq(stubdm_spawn_opts_set_consoles(c, 1u << 19),
                     STUBDM_EINVAL);
    stubdm_spawn_opts_free(c);
    assert_alive(S);
    assert_store_as_built();
    ts_destroy();
}
END_TEST

static Suite *adopt_suite(void)
{
    Suite *s = suite_create("adopt");
    TCase *tc = tcase_create("sim");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_adopt_running);
    tcase_add_test(tc, test_adopt_destroy_never_blocks);
    tcase_add_loop_test(tc, test_adopt_failure_leaves_domain, 0,
                        (int)STUBDM_ARRAY_SIZE(fail_cases));
    tcase_add_loop_test(tc, test_adopt_destroy_flag, 0, 2);
    tcase_add_test(tc, test_adopt_no_unpause);
    tcase_add_test(tc, test_adopt_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(adopt_suite());
}
