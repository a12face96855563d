/*
 * Spawning on the simulated host, end to end: the mock xenstored plays
 * xenstored and the hypervisor, stubdm-sim-stubdom plays the stubdomain
 * (with a real QEMU, or --no-qemu where many run at once).  Every test
 * checks that what a spawn made is gone afterwards: the whole store
 * (mockxs_dump before and after), the processes, and this process's fds.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "xen/xs.h"
#include "mockxs.h"
#include "proccheck.h"
#include "run.h"
#include "spawnfix.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#define GUEST 7

static struct spawnfix fx;

/* ---- helpers ------------------------------------------------------------- */

static void setup(void)
{
    static const struct spawnfix_opts o = {.verbose_env = "TEST_SPAWN_VERBOSE",
                                           .baseline = true};
    spawnfix_setup(&fx, &o);
}

static void teardown(void)
{
    spawnfix_teardown(&fx);
}

static const char *const qemu_args[] = {
    "-xen-domid", "7",           "-machine", "xenfv", "-m",
    "16",         "-nodefaults", "-display", "none",  "-no-shutdown",
};

static stubdm_spawn_opts *config(const char *const *sim_args, size_t nsim,
                                 bool qmp)
{
    stubdm_spawn_opts *c = spawnfix_config(&fx, GUEST, qemu_args,
                                           STUBDM_ARRAY_SIZE(qemu_args),
                                           sim_args, nsim, 20000);

    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, qmp, 0), 0);
    return c;
}

/* ---- validation ---------------------------------------------------------- */

static void expect_refused(stubdm_spawn_opts *c, int rc, const char *field)
{
    stubdm_stubdom *s = (stubdm_stubdom *)&s;
    stubdm_op *op = (stubdm_op *)&op;

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, &op), rc);
    ck_assert_ptr_null(s);
    ck_assert_ptr_null(op);
    if (!strstr(stubdm_ctx_errmsg(fx.ctx), field))
        ck_abort_msg("message '%s' does not name '%s'",
                     stubdm_ctx_errmsg(fx.ctx), field);
}

START_TEST(test_validate)
{
    stubdm_spawn_opts *c = NULL;
    static const char *const nl[] = {"-name", "a\nb"};

    ck_assert_int_eq(stubdm_spawn_opts_new(&c), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_args(c, qemu_args, 2), 0);
    expect_refused(c, STUBDM_EINVAL, "guest");
    stubdm_spawn_opts_set_guest(c, GUEST, "not-a-uuid", NULL);
    expect_refused(c, STUBDM_EINVAL, "uuid");
    stubdm_spawn_opts_set_guest(c, GUEST, NULL, NULL);
    stubdm_spawn_opts_set_memory_kib(c, 8192);
    expect_refused(c, STUBDM_EINVAL, "memory");
    stubdm_spawn_opts_set_memory_kib(c, STUBDM_SPAWN_DEFAULT_MEMORY_KIB);
    stubdm_spawn_opts_set_kernel(c, "/nonexistent/bzImage", NULL, NULL);
    expect_refused(c, STUBDM_ENOENT, "kernel");
    stubdm_spawn_opts_set_kernel(c, NULL, NULL, NULL);
    stubdm_spawn_opts_set_vcpus(c, 0);
    expect_refused(c, STUBDM_EINVAL, "vcpus");
    stubdm_spawn_opts_set_vcpus(c, 1);
    for (int i = 0; i < 27; i++)
        stubdm_spawn_opts_add_disk(c, "/dev/null", NULL, 0);
    expect_refused(c, STUBDM_ELIMIT, "26");
    stubdm_spawn_opts_free(c);

    c = config(NULL, 0, false);
    stubdm_spawn_opts_add_nic(c, "zz:00", NULL, NULL);
    expect_refused(c, STUBDM_EINVAL, "mac");
    stubdm_spawn_opts_free(c);

    c = config(NULL, 0, false);
    stubdm_spawn_opts_set_args(c, nl, 2);
    expect_refused(c, STUBDM_EINVAL, "args");
    stubdm_spawn_opts_set_args(c, NULL, 0);
    expect_refused(c, STUBDM_EINVAL, "args");
    stubdm_spawn_opts_set_console_output(c, 4, "pty");
    stubdm_spawn_opts_set_args(c, qemu_args, 2);
    expect_refused(c, STUBDM_EINVAL, "console 4");
    /* The same through validate(). */
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), STUBDM_EINVAL);
    stubdm_spawn_opts_free(c);

    /* xenconsoled serves console 0 only: a serial or a save output with
     * it is refused before anything is made, naming the console (a
     * stubdomain would wait 25 s at boot for a console nobody serves);
     * console 0 alone is fine. */
    c = config(NULL, 0, false);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_backend(
                         c, STUBDM_CONSOLE_BACKEND_XENCONSOLED),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3, "pty"), 0);
    expect_refused(c, STUBDM_EINVAL, "console 3 (serial): the xenconsoled");
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 1,
                                                          "file:/tmp/save"),
                     0);
    expect_refused(c, STUBDM_EINVAL, "console 1 (save)");
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 1, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_restore_fd(c, 0), 0);
    expect_refused(c, STUBDM_EINVAL, "restoring needs the libstubdm");
    ck_assert_int_eq(stubdm_spawn_opts_set_restore_fd(c, -1), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 0,
                                                          "file:/tmp/log"),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), 0);
    stubdm_spawn_opts_free(c);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* ---- end to end ---------------------------------------------------------- */

struct progress {
    unsigned seen; /* bit per step */
    int cancel_at, free_at;
    stubdm_op *op;
    stubdm_stubdom **sp;
};

static void on_progress(stubdm_stubdom *s, stubdm_spawn_step step, void *user)
{
    struct progress *p = user;

    p->seen |= 1u << step;
    if ((int)step == p->cancel_at)
        stubdm_op_cancel(p->op);
    if ((int)step == p->free_at) {
        stubdm_stubdom_free(s);
        *p->sp = NULL;
    }
}

START_TEST(test_end_to_end)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct progress p = {0, -1, -1, NULL, NULL};
    char *reply = NULL, *log_path, out[300];
    stubdm_stubdom_list *l = NULL;
    uint32_t found = 0;

    spawnfix_need_sim_stubdom(&fx);
    c = config(NULL, 0, true);
    ck_assert_int_ge(asprintf(&log_path, "%s/console0.log", fx.mock.dir), 0);
    snprintf(out, sizeof(out), "file:%s", log_path);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 0, out), 0);
    stubdm_spawn_opts_add_disk(c, "/dev/null", "raw", 1);
    stubdm_spawn_opts_add_nic(c, NULL, NULL, NULL);
    /* Their hotplug scripts (here the host's real ones) are test_hotplug's:
     * left to the caller here, as a toolstack with its own would. */
    ck_assert_int_eq(stubdm_ctx_set_hotplug(fx.ctx, 0), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, on_progress, &p, &s), 0);
    stubdm_spawn_opts_free(c);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(p.seen, 0x7fu); /* CREATE..QMP */
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_RUNNING);
    ck_assert_uint_ne(stubdm_stubdom_domid(s), 0);
    ck_assert_uint_ne(stubdm_stubdom_domid(s), GUEST);

    ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s),
                                             "query-status", NULL, 10000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "\"running\": true"));
    free(reply);

    ck_assert_int_eq(stubdm_stubdom_list_new(fx.ctx, &l), 0);
    ck_assert_uint_eq(stubdm_stubdom_list_count(l), 1);
    ck_assert_uint_eq(stubdm_stubdom_list_domid(l, 0),
                      stubdm_stubdom_domid(s));
    ck_assert_uint_eq(stubdm_stubdom_list_guest(l, 0), GUEST);
    ck_assert_str_eq(stubdm_stubdom_list_state(l, 0), "running");
    ck_assert_str_eq(stubdm_stubdom_list_name(l, 0), "test-dm");
    stubdm_stubdom_list_free(l);
    ck_assert_int_eq(stubdm_stubdom_find_by_guest(fx.ctx, GUEST, &found), 0);
    ck_assert_uint_eq(found, stubdm_stubdom_domid(s));
    /* The simulated consoles: the stubdomain logs to console 0's file. */
    ck_assert(proc_file_mentions(log_path, "device model running"));
    ck_assert_int_eq(proc_count_sim(fx.mock.dir, fx.mock.pid),
                     2); /* sim-stubdom and its QEMU */

    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_DESTROYED);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0); /* idempotent */
    stubdm_stubdom_free(s);
    unlink(log_path);
    free(log_path);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* Another process destroys it by domid, as stubdm-ctl destroy does. */
START_TEST(test_destroy_by_domid)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_ctx *other = NULL;
    uint32_t domid;
    static const char *const noqemu[] = {"--no-qemu"};

    spawnfix_need_sim_stubdom(&fx);
    c = config(noqemu, 1, false);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s); /* keeps running */
    ck_assert_int_eq(proc_count_sim(fx.mock.dir, fx.mock.pid), 1);

    ck_assert_int_eq(stubdm_ctx_new(&other), 0);
    stubdm_ctx_set_host(other, STUBDM_HOST_SIM);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(other, domid, 0), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(other, domid, 0),
                     STUBDM_ENOENT);
    stubdm_ctx_free(other);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/*
 * stubdm_stubdom_destroy_by_domid destroys only a stubdomain, judged on
 * dom0-owned nodes: a guest (here the simulated host's placeholder, dom0's
 * nodes but no target) and a domain whose "target" is its own claim are
 * refused with STUBDM_ENOTSTUBDOM and left untouched;
 * STUBDM_STUBDOM_DESTROY_FORCE destroys the latter anyway.
 */
START_TEST(test_destroy_refuses_non_stubdomain)
{
    static const char *const noqemu[] = {"--no-qemu"};
    struct xs_permissions own30[1] = {{30, XS_PERM_NONE}};
    stubdm_spawn_opts *c = config(noqemu, 1, false);
    stubdm_stubdom *s = NULL;
    struct xs_handle *h = mockxs_open_as(&fx.mock, 0);
    char *before, *after, *v;
    uint32_t domid;

    spawnfix_need_sim_stubdom(&fx);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    /* Domain 30 claims to be guest 7's stubdomain in a node of its own. */
    ck_assert(xs_write(h, XBT_NULL, "/local/domain/30/name", "other", 5));
    ck_assert(xs_write(h, XBT_NULL, "/local/domain/30/target", "7", 1));
    ck_assert(
        xs_set_permissions(h, XBT_NULL, "/local/domain/30/target", own30, 1));
    before = spawnfix_dump(&fx);

    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, GUEST, 0),
                     STUBDM_ENOTSTUBDOM);
    ck_assert_ptr_nonnull(
        strstr(stubdm_ctx_errmsg(fx.ctx), "not a stubdomain"));
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, 30, 0),
                     STUBDM_ENOTSTUBDOM);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, domid, 0x80),
                     STUBDM_EINVAL);
    after = spawnfix_dump(&fx);
    ck_assert_str_eq(after, before);
    free(after);
    free(before);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_RUNNING);

    /* Forced: domain 30 goes (its nodes), guest 7's contract stays. */
    stubdm_stubdom_destroy_by_domid_sync(fx.ctx, 30,
                                         STUBDM_STUBDOM_DESTROY_FORCE);
    v = xs_read(h, XBT_NULL, "/local/domain/30", NULL);
    ck_assert_msg(v == NULL, "/local/domain/30 is left");
    v = xs_read(h, XBT_NULL, "/local/domain/7/image/device-model-domid", NULL);
    ck_assert_ptr_nonnull(v);
    free(v);

    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    xs_close(h);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/*
 * The teardown removes the simulated host's placeholder guest (all of
 * /local/domain/<guest> and its vm dir) only when the mark saying so is
 * dom0's: a real guest writing "<stub> 1" there must not have dom0 remove
 * its tree.
 */
START_TEST(test_placeholder_mark_owner)
{
    static const char *const noqemu[] = {"--no-qemu"};
    static const char vm[] = "/vm/00000000-0000-0000-0000-0000000000aa";
    /* Owned by the guest, readable by all (its stubdomain reads it). */
    struct xs_permissions guest_own[1] = {{GUEST, XS_PERM_READ}};
    struct xs_permissions vm_perms[2] = {{0, XS_PERM_NONE},
                                         {GUEST, XS_PERM_READ}};
    stubdm_spawn_opts *c = config(noqemu, 1, false);
    stubdm_stubdom *s = NULL;
    struct xs_handle *h = mockxs_open_as(&fx.mock, 0);
    char mark[32], *v, *after;
    bool had_vm = strstr(fx.dump_before, "\n/vm ") != NULL ||
                  strncmp(fx.dump_before, "/vm ", 4) == 0;

    spawnfix_need_sim_stubdom(&fx);
    ck_assert_ptr_nonnull(h);
    /* A guest of its own (not a placeholder): its tree is its. */
    ck_assert(xs_write(h, XBT_NULL, "/local/domain/7", "", 0));
    ck_assert(
        xs_set_permissions(h, XBT_NULL, "/local/domain/7", guest_own, 1));
    ck_assert(xs_write(h, XBT_NULL, "/local/domain/7/vm", vm, sizeof(vm) - 1));
    ck_assert(xs_set_permissions(h, XBT_NULL, "/local/domain/7/vm", vm_perms,
                                 2)); /* dom0's, as libxl writes it */
    ck_assert(xs_write(h, XBT_NULL, "/local/domain/7/name", "g", 1));
    ck_assert(xs_write(h, XBT_NULL, vm, "", 0));
    ck_assert(xs_set_permissions(h, XBT_NULL, vm, vm_perms, 2));
    ck_assert_msg(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s) == 0, "%s",
                  stubdm_ctx_errmsg(fx.ctx));
    stubdm_spawn_opts_free(c);
    snprintf(mark, sizeof(mark), "%u 1", stubdm_stubdom_domid(s));
    ck_assert(xs_write(h, XBT_NULL,
                       "/local/domain/7/libstubdm-sim-placeholder", mark,
                       (unsigned)strlen(mark)));
    ck_assert(xs_set_permissions(h, XBT_NULL,
                                 "/local/domain/7/libstubdm-sim-placeholder",
                                 guest_own, 1));

    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    v = xs_read(h, XBT_NULL, "/local/domain/7/name", NULL);
    ck_assert_msg(v != NULL, "the guest's tree was removed");
    free(v);
    v = xs_read(h, XBT_NULL, vm, NULL);
    ck_assert_msg(v != NULL, "the guest's vm dir was removed");
    free(v);
    ck_assert(xs_rm(h, XBT_NULL, "/local/domain/7"));
    ck_assert(xs_rm(h, XBT_NULL, vm));
    if (!had_vm)
        ck_assert(xs_rm(h, XBT_NULL, "/vm"));
    xs_close(h);
    after = spawnfix_dump(&fx);
    ck_assert_str_eq(after, fx.dump_before);
    free(after);
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
}
END_TEST

/* The guest's vm path decides where dom0 writes (and a teardown removes)
 * the argv: a vm node the guest owns is refused, nothing is made. */
START_TEST(test_guest_vm_node_owner)
{
    static const char *const noqemu[] = {"--no-qemu"};
    struct xs_permissions guest_own[1] = {{GUEST, XS_PERM_READ}};
    stubdm_spawn_opts *c = config(noqemu, 1, false);
    stubdm_stubdom *s = NULL;
    struct xs_handle *h = mockxs_open_as(&fx.mock, 0);
    char *before, *after;

    ck_assert_ptr_nonnull(h);
    ck_assert(xs_write(h, XBT_NULL, "/local/domain/7", "", 0));
    ck_assert(
        xs_set_permissions(h, XBT_NULL, "/local/domain/7", guest_own, 1));
    ck_assert(xs_write(h, XBT_NULL, "/local/domain/7/vm", "/vm/other", 9));
    before = spawnfix_dump(&fx);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s),
                     STUBDM_EPERM);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx), "owned by domain 7"), "%s",
                  stubdm_ctx_errmsg(fx.ctx));
    stubdm_spawn_opts_free(c);
    after = spawnfix_dump(&fx);
    ck_assert_str_eq(after, before);
    free(after);
    free(before);
    ck_assert(xs_rm(h, XBT_NULL, "/local/domain/7"));
    xs_close(h);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/*
 * image/device-model-domid is dom0's ([n0, rG]); a guest that owns it (a
 * toolstack let it, or it re-created it) must not choose what
 * stubdm_stubdom_find_by_guest (stubdm-ctl destroy --guest) takes for its
 * stubdomain: STUBDM_EPERM, *out untouched, nothing changed or destroyed.
 * The same value owned by dom0 is taken.
 */
START_TEST(test_find_stubdom_guest_owned)
{
    static const char *const noqemu[] = {"--no-qemu"};
    static const char *const node = "/local/domain/7/image/device-model-domid";
    struct xs_permissions guest_own[1] = {{GUEST, XS_PERM_READ}};
    struct xs_permissions dom0_own[2] = {{0, XS_PERM_NONE},
                                         {GUEST, XS_PERM_READ}};
    stubdm_spawn_opts *c = config(noqemu, 1, false);
    stubdm_stubdom *s = NULL;
    struct xs_handle *h = mockxs_open_as(&fx.mock, 0);
    char *before, *after, val[16];
    uint32_t domid, found = 12345;

    spawnfix_need_sim_stubdom(&fx);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    snprintf(val, sizeof(val), "%u", domid);
    ck_assert(xs_write(h, XBT_NULL, node, val, (unsigned)strlen(val)));
    ck_assert(xs_set_permissions(h, XBT_NULL, node, guest_own, 1));
    before = spawnfix_dump(&fx);

    ck_assert_int_eq(stubdm_stubdom_find_by_guest(fx.ctx, GUEST, &found),
                     STUBDM_EPERM);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx), "owned by domain 7"), "%s",
                  stubdm_ctx_errmsg(fx.ctx));
    ck_assert_uint_eq(found, 12345);
    after = spawnfix_dump(&fx);
    ck_assert_str_eq(after, before);
    free(after);
    free(before);
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_RUNNING);
    ck_assert_int_eq(proc_count_sim(fx.mock.dir, fx.mock.pid), 1);

    ck_assert(xs_set_permissions(h, XBT_NULL, node, dom0_own, 2));
    ck_assert_int_eq(stubdm_stubdom_find_by_guest(fx.ctx, GUEST, &found), 0);
    ck_assert_uint_eq(found, domid);

    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    xs_close(h);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* ---- failures at each step ------------------------------------------------ */

static const struct die_case {
    const char *args[3];
    int rc;
    const char *step, *cause; /* both must be in the message */
    const char *alt_step;     /* or this step (races) */
} die_cases[] = {
    {{"--die-at=before-argv"},
     STUBDM_EDOMAIN_GONE,
     "spawn: waiting for running: ",
     "crashed (signal 11)",
     NULL},
    {{"--die-at=after-argv"},
     STUBDM_EDOMAIN_GONE,
     "spawn: waiting for running: ",
     "crashed (signal 11)",
     NULL},
    {{"--die-at=before-running", "--die-exit=3"},
     STUBDM_EDOMAIN_GONE,
     "spawn: waiting for running: ",
     "exited with status 3",
     NULL},
    {{"--die-at=after-running", "--die-signal=6"},
     0 /* see below */,
     "spawn: opening QMP: ",
     "",
     "spawn: waiting for running: "},
    {{"--no-running"},
     STUBDM_ETIMEDOUT,
     "spawn: waiting for running: ",
     "not running after",
     NULL},
    {{"--die-at=before-argv", "--die-exit=0"},
     STUBDM_EDOMAIN_GONE,
     "spawn: waiting for running: ",
     "shut down (exit 0)",
     NULL},
};

START_TEST(test_die_at_each_step)
{
    const struct die_case *dc = &die_cases[_i];
    size_t nargs = dc->args[1] ? 2 : 1;
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = (stubdm_stubdom *)&s;
    const char *msg;
    int rc;

    spawnfix_need_sim_stubdom(&fx);
    c = config(dc->args, nargs, true);
    if (dc->rc == STUBDM_ETIMEDOUT)
        stubdm_spawn_opts_set_timeout(c, 1000);
    rc = stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s);
    stubdm_spawn_opts_free(c);
    msg = stubdm_ctx_errmsg(fx.ctx);
    if (rc == 0 && !dc->rc) {
        /* Dying right after "running" races with the QMP handshake: QEMU
         * may answer before the simulated hypervisor kills it.  Then the
         * spawn succeeded and the death is the caller's to see. */
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
        stubdm_stubdom_free(s);
        spawnfix_assert_clean(&fx, false);
        return;
    }
    ck_assert_ptr_null(s);
    if (dc->rc)
        ck_assert_int_eq(rc, dc->rc);
    else
        ck_assert_int_ne(rc, 0);
    if (!strstr(msg, dc->step) && !(dc->alt_step && strstr(msg, dc->alt_step)))
        ck_abort_msg("'%s' does not name the step '%s'", msg, dc->step);
    if (!strstr(msg, dc->cause))
        ck_abort_msg("'%s' does not give the cause '%s'", msg, dc->cause);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* The stand-in cannot even be started: the unpause step fails. */
START_TEST(test_unpause_fails)
{
    stubdm_spawn_opts *c = config(NULL, 0, false);
    stubdm_stubdom *s = NULL;
    int rc;

    stubdm_spawn_opts_set_sim_program(c, "/nonexistent/stubdom", NULL, 0);
    rc = stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s);
    stubdm_spawn_opts_free(c);
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_nonnull(
        strstr(stubdm_ctx_errmsg(fx.ctx), "spawn: unpausing: "));
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* Cancelling (or freeing the handle) at each step leaves nothing. */
START_TEST(test_cancel_at_each_step)
{
    static const char *const noqemu[] = {"--no-qemu"};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct progress p = {0, -1, -1, NULL, &s};
    stubdm_op *op = NULL;
    int step = _i / 2;

    spawnfix_need_sim_stubdom(&fx);
    if (_i % 2)
        p.free_at = step;
    else
        p.cancel_at = step;
    c = config(noqemu, 1, true);
    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, on_progress, NULL, &p, &s, &op),
                     0);
    stubdm_spawn_opts_free(c);
    p.op = op;
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5000), 0);
    ck_assert_int_eq(stubdm_op_result(op), STUBDM_ECANCELED);
    ck_assert_ptr_nonnull(strstr(stubdm_op_errmsg(op), "cancelled"));
    stubdm_op_free(op);
    if (s) {
        ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_FAILED);
        stubdm_stubdom_free(s);
    }
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* Freeing the ctx with a spawn half done tears the spawn down too. */
START_TEST(test_ctx_free_while_pending)
{
    static const char *const noqemu[] = {"--no-qemu", "--no-running"};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    char *after;

    spawnfix_need_sim_stubdom(&fx);
    c = config(noqemu, 2, true);
    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, NULL), 0);
    stubdm_spawn_opts_free(c);
    while (stubdm_stubdom_step(s) != STUBDM_SPAWN_STEP_WAIT)
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 1000), 0);
    ck_assert_uint_ne(stubdm_stubdom_domid(s), 0);
    stubdm_ctx_free(fx.ctx);
    fx.ctx = NULL;
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_FAILED);
    stubdm_stubdom_free(s); /* after the ctx: documented as allowed here */
    after = spawnfix_dump(&fx);
    ck_assert_str_eq(after, fx.dump_before);
    free(after);
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
}
END_TEST

/* ---- many at once ----------------------------------------------------------
 */

#define MANY 50

struct many {
    int done, failed;
};

static void on_many_done(stubdm_op *op, int rc, void *user)
{
    struct many *m = user;
    m->done++;
    if (rc) {
        m->failed++;
        fprintf(stderr, "spawn failed: %s\n", stubdm_op_errmsg(op));
    }
}

START_TEST(test_fifty_concurrent)
{
    static const char *const noqemu[] = {"--no-qemu"};
    stubdm_stubdom *s[MANY] = {0};
    struct many m = {0, 0};
    stubdm_stubdom_list *l = NULL;
    int64_t t0 = stubdm_now_ms();

    spawnfix_need_sim_stubdom(&fx);
    for (int i = 0; i < MANY; i++) {
        stubdm_spawn_opts *c = config(noqemu, 1, true);
        stubdm_spawn_opts_set_guest(c, 1000 + (uint32_t)i, NULL, NULL);
        ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, on_many_done, &m, &s[i],
                                      NULL),
                         0);
        stubdm_spawn_opts_free(c);
    }
    while (m.done < MANY)
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5000), 0);
    ck_assert_int_eq(m.failed, 0);
    fprintf(stderr, "test_spawn: %d stubdomains running with QMP in %lld ms\n",
            MANY, (long long)(stubdm_now_ms() - t0));
    ck_assert_int_eq(stubdm_stubdom_list_new(fx.ctx, &l), 0);
    ck_assert_uint_eq(stubdm_stubdom_list_count(l), MANY);
    for (size_t i = 0; i < MANY; i++)
        ck_assert_str_eq(stubdm_stubdom_list_state(l, i), "running");
    stubdm_stubdom_list_free(l);
    for (int i = 0; i < MANY; i++) {
        char *reply = NULL;
        ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s[i]),
                                                 "query-status", NULL, 5000,
                                                 &reply),
                         0);
        free(reply);
    }
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(stubdm_stubdom_destroy_sync(s[i]), 0);
        stubdm_stubdom_free(s[i]);
    }
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* The same 50 with a real QEMU each (-machine none), when asked: heavy. */
START_TEST(test_fifty_real_qemu)
{
    static const char *const none_args[] = {"-machine",    "none",
                                            "-m",          "16",
                                            "-nodefaults", "-display",
                                            "none"};
    stubdm_stubdom *s[MANY] = {0};
    struct many m = {0, 0};
    int64_t t0 = stubdm_now_ms();

    spawnfix_need_sim_stubdom(&fx);
    for (int i = 0; i < MANY; i++) {
        stubdm_spawn_opts *c = config(NULL, 0, true);
        stubdm_spawn_opts_set_guest(c, 1000 + (uint32_t)i, NULL, NULL);
        stubdm_spawn_opts_set_args(c, none_args, 7);
        stubdm_spawn_opts_set_timeout(c, 120000);
        ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, on_many_done, &m, &s[i],
                                      NULL),
                         0);
        stubdm_spawn_opts_free(c);
    }
    while (m.done < MANY)
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5000), 0);
    ck_assert_int_eq(m.failed, 0);
    fprintf(stderr, "test_spawn: %d real QEMUs running with QMP in %lld ms\n",
            MANY, (long long)(stubdm_now_ms() - t0));
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(stubdm_stubdom_destroy_sync(s[i]), 0);
        stubdm_stubdom_free(s[i]);
    }
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* ---- deaths of several spawns sharing the death monitor --------------------
 */

struct ended {
    int calls, rc;
    int64_t at_ms;
    char msg[STUBDM_ERRMSG_MAX];
};

static void on_ended(stubdm_op *op, int rc, void *user)
{
    struct ended *e = user;
    e->calls++;
    e->rc = rc;
    e->at_ms = stubdm_now_ms();
    snprintf(e->msg, sizeof(e->msg), "%s", stubdm_op_errmsg(op));
}

static const int perm3[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};

/* Three spawns waiting for "running" in one ctx (their waits and consoles
 * all on the one @releaseDomain watch); their stubdomains die one by one,
 * in every order: each spawn fails with EDOMAIN_GONE soon after its own
 * death, and nothing is left. */
START_TEST(test_three_spawns_deaths_in_every_order)
{
    static const char *const args[] = {"--no-qemu", "--no-running"};
    const int *order = perm3[_i];
    const int bound = 2000 * ts_time_scale();
    stubdm_stubdom *s[3] = {0};
    struct ended e[3];

    spawnfix_need_sim_stubdom(&fx);
    memset(e, 0, sizeof(e));
    for (int i = 0; i < 3; i++) {
        stubdm_spawn_opts *c = config(args, 2, false);
        stubdm_spawn_opts_set_guest(c, 100 + (uint32_t)i, NULL, NULL);
        ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, on_ended, &e[i], &s[i],
                                      NULL),
                         0);
        stubdm_spawn_opts_free(c);
    }
    for (int i = 0; i < 3; i++) {
        while (stubdm_stubdom_step(s[i]) != STUBDM_SPAWN_STEP_WAIT &&
               !e[i].calls)
            ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 1000), 0);
        ck_assert_msg(!e[i].calls, "spawn %d: %s", i, e[i].msg);
    }
    for (int d = 0; d < 3; d++) {
        int k = order[d];
        char args2[32];
        int len = snprintf(args2, sizeof(args2), "%u%ccrashed",
                           stubdm_stubdom_domid(s[k]), '\0');
        struct xs_handle *xs = mockxs_open_as(&fx.mock, 0);
        ck_assert_ptr_nonnull(xs);
        int64_t killed = stubdm_now_ms();
        char *reply = xs_control_command(xs, "sim-release", args2,
                                         (unsigned)len + 1);
        ck_assert_ptr_nonnull(reply);
        free(reply);
        xs_close(xs);
        while (!e[k].calls && stubdm_now_ms() - killed < bound)
            ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 10), 0);
        ck_assert_msg(e[k].calls == 1,
                      "death %d (spawn %d): not seen within %d ms", d + 1, k,
                      bound);
        ck_assert_int_eq(e[k].rc, STUBDM_EDOMAIN_GONE);
        /* The cause is the mock's record: "crashed", or the exit of the
         * stand-in that lost its xenstore connection, whichever it wrote
         * last. */
        char who[32];
        snprintf(who, sizeof(who), "stubdomain %u ",
                 stubdm_stubdom_domid(s[k]));
        ck_assert_msg(strstr(e[k].msg, who) != NULL, "%s", e[k].msg);
        for (int j = d + 1; j < 3; j++)
            ck_assert_int_eq(e[order[j]].calls, 0);
    }
    for (int i = 0; i < 3; i++)
        stubdm_stubdom_free(s[i]);
    ck_assert_uint_eq(fx.ctx->n_domwatches, 0);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

static Suite *spawn_suite(void)
{
    Suite *s = suite_create("spawn");
    TCase *tc = tcase_create("sim");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_validate);
    tcase_add_test(tc, test_end_to_end);
    tcase_add_test(tc, test_destroy_by_domid);
    tcase_add_test(tc, test_destroy_refuses_non_stubdomain);
    tcase_add_test(tc, test_placeholder_mark_owner);
    tcase_add_test(tc, test_guest_vm_node_owner);
    tcase_add_test(tc, test_find_stubdom_guest_owned);
    tcase_add_loop_test(tc, test_die_at_each_step, 0,
                        (int)STUBDM_ARRAY_SIZE(die_cases));
    tcase_add_test(tc, test_unpause_fails);
    /* steps CREATE..QMP, cancelled or freed: 14 runs */
    tcase_add_loop_test(tc, test_cancel_at_each_step, 0, 14);
    tcase_add_test(tc, test_ctx_free_while_pending);
    tcase_add_test(tc, test_fifty_concurrent);
    tcase_add_loop_test(tc, test_three_spawns_deaths_in_every_order, 0, 6);
    /* Heavy (50 real QEMUs): registered only when asked for, so that it is
     * never counted as passed without running. */
    if (getenv("TEST_SPAWN_REAL_QEMU_50"))
        tcase_add_test(tc, test_fifty_real_qemu);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(spawn_suite());
}
