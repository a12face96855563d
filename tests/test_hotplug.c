/*
 * Hotplug scripts of a spawn's disks and nics, on the simulated host: the
 * mock xenstored plays dom0's blkback/netback (a backend of a simulated
 * domain goes to InitWait on its own), and fake scripts written here play
 * /etc/xen/scripts/block and vif-bridge: they record their arguments and
 * exact environment (their own /proc/self/environ), read and write the
 * backend with the real xenstore-read/-write (through XENSTORED_PATH,
 * which the library passes on), and succeed, fail or hang as told.
 *
 * Every test checks that nothing is left afterwards: the whole store, the
 * processes (the scripts, their children, the simulated stubdomain), this
 * process's children and its fds.
 */
#include "core/base.h"
#include "xen/host.h"
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
#include <linux/sched.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

#define GUEST 7
#define VBD_XVDA 51712u

static struct spawnfix fx;
static char logbuf[65536]; /* warnings the library logged */

/* ---- helpers ------------------------------------------------------------- */

static void log_hook(void *user, stubdm_log_level level, int os_errno,
                     const char *context, const char *msg)
{
    (void)user;
    (void)os_errno;
    if (getenv("TEST_HOTPLUG_VERBOSE"))
        fprintf(stderr, "[%s %d] %s\n", context, (int)level, msg);
    if (level >= STUBDM_LOG_WARN) {
        size_t l = strlen(logbuf);
        snprintf(logbuf + l, sizeof(logbuf) - l, "%s\n", msg);
    }
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

/*
 * A fake hotplug script in the mock's directory, named hp-<mode>.  Each
 * run records "<type>-<devid>-<action>" in the directory: its argv, its
 * exact environment (sorted) and, on add/online, the backend state it
 * found.  Then, for add/online:
 *   ok        hotplug-status connected, exit 0 (what block/vif-bridge do);
 *   late      exit 0, "connected" written 300 ms later by a child;
 *   error     hotplug-error + hotplug-status error, exit 1 (their fatal());
 *   errexit0  hotplug-status error, exit 0;
 *   exit1     prints to stdout and stderr, exit 1, writes nothing;
 *   chatty    prints ~17 KiB (line 0 .. line 1999, LAST), exit 3;
 *   noconnect exit 0, writes nothing;
 *   hang      does not end while the test runs (sleeping in a loop that
 *             ends once its parent, the test, is gone: nothing outlives a
 *             test that fails or is killed while a script hangs).
 * remove/offline: record, read the backend's params/bridge, exit 0.
 */
static void make_script(const char *mode, char *out, size_t len)
{
    static const char body[] =
        "#!/bin/sh\n"
        "dir=$(dirname \"$XENSTORED_PATH\")\n"
        "rec=\"$dir/rec-$XENBUS_TYPE-${XENBUS_PATH##*/}-$1\"\n"
        "{ printf 'ARGS'; for a in \"$0\" \"$@\"; do printf ' %%s' \"$a\"; "
        "done;"
        " echo; tr '\\0' '\\n' < /proc/$$/environ | sort | sed 's/^/ENV /'; } "
        "> \"$rec.tmp\"\n"
        "case \"$1\" in\n"
        "add|online) echo \"STATE $(xenstore-read \"$XENBUS_PATH/state\")\" "
        ">> \"$rec.tmp\"; mv \"$rec.tmp\" \"$rec\" ;;\n"
        "*) echo \"READ $(xenstore-read \"$XENBUS_PATH/type\")\" >> "
        "\"$rec.tmp\"; mv \"$rec.tmp\" \"$rec\"; exit 0 ;;\n"
        "esac\n"
        "case %s in\n"
        "ok) xenstore-write \"$XENBUS_PATH/hotplug-status\" connected ;;\n"
        "late) ( sleep 0.3; xenstore-write \"$XENBUS_PATH/hotplug-status\" "
        "connected ) > /dev/null 2>&1 & ;;\n"
        "error) xenstore-write \"$XENBUS_PATH/hotplug-error\" "
        "\"fake failure: $XENBUS_PATH has no such device\" "
        "\"$XENBUS_PATH/hotplug-status\" error; exit 1 ;;\n"
        "errexit0) xenstore-write \"$XENBUS_PATH/hotplug-status\" error ;;\n"
        "exit1) echo 'fake script on stdout'; echo 'fake script on stderr' "
        ">&2; exit 1 ;;\n"
        "noconnect) ;;\n"
        "chatty) i=0; while [ $i -lt 2000 ]; do echo \"line $i\"; "
        "i=$((i + 1)); done; echo LAST; exit 3 ;;\n"
        "hang) while read -r _ _ _ ppid _ < /proc/$$/stat && "
        "[ \"$ppid\" = \"$PPID\" ]; do sleep 0.2; done ;;\n"
        "esac\n"
        "exit 0\n";
    FILE *f;

    snprintf(out, len, "%s/hp-%s", fx.mock.dir, mode);
    f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, body, mode);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(out, 0755), 0);
}

static char *record(const char *what)
{
    char p[400];

    snprintf(p, sizeof(p), "%s/rec-%s", fx.mock.dir, what);
    return proc_read_file(p);
}

/* Run the loop until the record exists (at most 8 s). */
static void await_record(const char *what)
{
    int64_t t0 = stubdm_now_ms();
    char *r;

    while (!(r = record(what))) {
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 20), 0);
        ck_assert_int_lt(stubdm_now_ms() - t0, 8000);
    }
    free(r);
}

static void assert_no_record(const char *what)
{
    char *r = record(what);
    ck_assert_msg(r == NULL, "unexpected record %s:\n%.2000s", what, r);
}

static stubdm_spawn_opts *config(void)
{
    static const char *const qemu_args[] = {"-machine", "none"};
    static const char *const noqemu[] = {"--no-qemu"};

    return spawnfix_config(&fx, GUEST, qemu_args, 2, noqemu, 1, 10000);
}

/* A config with one disk (xvda) and one nic, both with the script of
 * this mode. */
static stubdm_spawn_opts *config_with(const char *disk_mode,
                                      const char *nic_mode)
{
    stubdm_spawn_opts *c = config();
    char ds[PATH_MAX], ns[PATH_MAX];

    make_script(disk_mode, ds, sizeof(ds));
    make_script(nic_mode, ns, sizeof(ns));
    ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/dev/null", "raw", 1), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 0, ds), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, "00:16:3e:00:00:01",
                                               "xenbr7", ns),
                     0);
    return c;
}

/* Read a dom0 node now (a short-lived connection of its own). */
static char *xs_get(const char *path)
{
    struct xs_handle *h = mockxs_open_as(&fx.mock, 0);
    unsigned len = 0;
    char *v;

    ck_assert_ptr_nonnull(h);
    v = xs_read(h, XBT_NULL, path, &len);
    xs_close(h);
    return v;
}

struct progress {
    unsigned seen;
    uint32_t domid;
    bool checked_at_unpause;
    int status_connected; /* backends "connected" when UNPAUSE began */
};

static void on_progress(stubdm_stubdom *s, stubdm_spawn_step step, void *user)
{
    struct progress *p = user;
    char path[128], *v;

    p->seen |= 1u << step;
    if (step != STUBDM_SPAWN_STEP_UNPAUSE)
        return;
    /* The stubdomain is unpaused only after every hotplug connected. */
    p->domid = stubdm_stubdom_domid(s);
    p->checked_at_unpause = true;
    snprintf(path, sizeof(path),
             "/local/domain/0/backend/vbd/%u/%u/hotplug-status", p->domid,
             VBD_XVDA);
    v = xs_get(path);
    p->status_connected += v && !strcmp(v, "connected");
    free(v);
    snprintf(path, sizeof(path),
             "/local/domain/0/backend/vif/%u/0/hotplug-status", p->domid);
    v = xs_get(path);
    p->status_connected += v && !strcmp(v, "connected");
    free(v);
}

/* ---- success ------------------------------------------------------------- */

START_TEST(test_args_env_and_order)
{
    stubdm_spawn_opts *c = config_with("ok", "late");
    struct progress p = {0, 0, false, 0};
    stubdm_stubdom *s = NULL;
    char want[4 * PATH_MAX], ds[PATH_MAX], ns[PATH_MAX], key[64], *r, *v;
    char path[160];
    const char *path_env = getenv("PATH");
    uint32_t S;

    snprintf(ds, sizeof(ds), "%s/hp-ok", fx.mock.dir);
    snprintf(ns, sizeof(ns), "%s/hp-late", fx.mock.dir);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, on_progress, &p, &s), 0);
    stubdm_spawn_opts_free(c);
    S = stubdm_stubdom_domid(s);
    ck_assert_uint_eq(p.seen, 0x3fu); /* CREATE..WAIT, HOTPLUG included */
    ck_assert(p.checked_at_unpause);
    ck_assert_int_eq(p.status_connected, 2);

    /* vbd: "<script> add", libxl's environment, no more. */
    snprintf(key, sizeof(key), "vbd-%u-add", VBD_XVDA);
    r = record(key);
    ck_assert_ptr_nonnull(r);
    snprintf(want, sizeof(want),
             "ARGS %s add\n"
             "ENV PATH=%s\n"
             "ENV XENBUS_BASE_PATH=backend\n"
             "ENV XENBUS_PATH=backend/vbd/%u/%u\n"
             "ENV XENBUS_TYPE=vbd\n"
             "ENV XENSTORED_PATH=%s\n"
             "ENV script=%s\n"
             "STATE 2\n",
             ds, path_env, S, VBD_XVDA, mockxs_socket(&fx.mock), ds);
    ck_assert_str_eq(r, want);
    free(r);
    /* vif: "<script> online type_if=vif", with vif= and netdev=. */
    r = record("vif-0-online");
    ck_assert_ptr_nonnull(r);
    snprintf(want, sizeof(want),
             "ARGS %s online type_if=vif\n"
             "ENV PATH=%s\n"
             "ENV XENBUS_BASE_PATH=backend\n"
             "ENV XENBUS_PATH=backend/vif/%u/0\n"
             "ENV XENBUS_TYPE=vif\n"
             "ENV XENSTORED_PATH=%s\n"
             "ENV netdev=\n"
             "ENV script=%s\n"
             "ENV vif=vif%u.0\n"
             "STATE 2\n",
             ns, path_env, S, mockxs_socket(&fx.mock), ns, S);
    ck_assert_str_eq(r, want);
    free(r);
    /* The backends name the scripts that ran. */
    snprintf(path, sizeof(path), "/local/domain/0/backend/vbd/%u/%u/script", S,
             VBD_XVDA);
    v = xs_get(path);
    ck_assert_str_eq(v, ds);
    free(v);
    assert_no_record("vbd-51712-remove");

    /* Destroy: remove / offline, while the backends are still there (the
     * scripts read them), then nothing left. */
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    snprintf(key, sizeof(key), "vbd-%u-remove", VBD_XVDA);
    r = record(key);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(strstr(r, "ARGS "));
    ck_assert_ptr_nonnull(strstr(r, " remove\n"));
    ck_assert_ptr_nonnull(strstr(r, "READ phy\n"));
    free(r);
    r = record("vif-0-offline");
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(strstr(r, " offline type_if=vif\n"));
    ck_assert_ptr_nonnull(strstr(r, "READ vif\n"));
    free(r);
    ck_assert_str_eq(logbuf, "");
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* Another ctx (process) destroys it by domid: the removes still run. */
START_TEST(test_remove_by_domid)
{
    stubdm_spawn_opts *c = config_with("ok", "ok");
    stubdm_stubdom *s = NULL;
    stubdm_ctx *other = NULL;
    char *r;

    uint32_t domid;

    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s); /* the stubdomain runs on */
    stubdm_ctx_free(fx.ctx);
    fx.ctx = NULL;
    assert_no_record("vif-0-offline");
    ck_assert_int_eq(stubdm_ctx_new(&other), 0);
    stubdm_ctx_set_host(other, STUBDM_HOST_SIM);
    /* The fake scripts are in the mock's directory, not /etc/xen/scripts:
     * another process runs them only when configured to. */
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(other, fx.mock.dir), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(other, domid, 0), 0);
    stubdm_ctx_free(other);
    r = record("vif-0-offline");
    ck_assert_ptr_nonnull(r);
    free(r);
    r = record("vbd-51712-remove");
    ck_assert_ptr_nonnull(r);
    free(r);
    {
        char *after = spawnfix_dump(&fx);
        ck_assert_str_eq(after, fx.dump_before);
        free(after);
    }
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
    ck_assert_int_eq(proc_children_settled(fx.mock.pid), 0);
}
END_TEST

/*
 * Another toolstack destroyed the stubdomain (`xl destroy <stub>`): the
 * domain is gone and so are /local/domain/<stub> and its /vm entry,
 * removed as libxl removes them, but dom0 still holds the library's
 * backends (consoles, vbd, vif) and what the scripts made, and the guest
 * lives on with the contract.  stubdm_stubdom_destroy_by_domid by domid
 * removes them all, running remove/offline; a second call finds nothing.
 */
START_TEST(test_destroyed_elsewhere)
{
    stubdm_spawn_opts *c = config_with("ok", "ok");
    stubdm_stubdom *s = NULL;
    struct xs_handle *h;
    char p[128], d[16], *svm, *r;
    uint32_t domid;
    unsigned len = 0;

    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s); /* the stubdomain runs on */

    h = mockxs_open_as(&fx.mock, 0);
    ck_assert_ptr_nonnull(h);
    snprintf(p, sizeof(p), "/local/domain/%u/vm", domid);
    svm = xs_read(h, XBT_NULL, p, &len);
    ck_assert_ptr_nonnull(svm);
    snprintf(d, sizeof(d), "%u", domid);
    r = xs_control_command(h, "sim-destroy", d, (unsigned)strlen(d) + 1);
    ck_assert_ptr_nonnull(r);
    free(r);
    ck_assert(xs_rm(h, XBT_NULL, svm));
    snprintf(p, sizeof(p), "/local/domain/%u", domid);
    ck_assert(xs_rm(h, XBT_NULL, p));
    free(svm);
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
    snprintf(p, sizeof(p), "/local/domain/0/backend/console/%u/0/state",
             domid);
    r = xs_read(h, XBT_NULL, p, &len);
    ck_assert_msg(r != NULL, "%s is gone before the destroy", p);
    free(r);
    assert_no_record("vbd-51712-remove");
    /* A domain claiming the dead stubdomain in a node of its own is not
     * taken for its guest (the contract's node is dom0's). */
    {
        struct xs_permissions own[1] = {{77, XS_PERM_NONE}};
        ck_assert(xs_write(h, XBT_NULL,
                           "/local/domain/77/image/device-model-domid", d,
                           (unsigned)strlen(d)));
        ck_assert(xs_set_permissions(
            h, XBT_NULL, "/local/domain/77/image/device-model-domid", own, 1));
    }

    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(fx.ctx, fx.mock.dir), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, domid, 0),
                     0);
    r = xs_read(h, XBT_NULL, "/local/domain/77/image/device-model-domid",
                &len);
    ck_assert_msg(r != NULL, "the claimant's node was removed");
    free(r);
    ck_assert(xs_rm(h, XBT_NULL, "/local/domain/77"));
    r = record("vbd-51712-remove");
    ck_assert_ptr_nonnull(r);
    free(r);
    r = record("vif-0-offline");
    ck_assert_ptr_nonnull(r);
    free(r);
    static const char *const kinds[] = {"console", "vbd", "vif"};
    for (size_t i = 0; i < 3; i++) {
        char *v;
        snprintf(p, sizeof(p), "/local/domain/0/backend/%s/%u", kinds[i],
                 domid);
        v = xs_read(h, XBT_NULL, p, &len);
        ck_assert_msg(v == NULL && errno == ENOENT, "%s is left", p);
    }
    /* The guest lives on: its contract (dm-argv, device-model-domid, the
     * simulated host's placeholder) went too, found through the guest's
     * image/device-model-domid. */
    {
        char *after = spawnfix_dump(&fx);
        ck_assert_str_eq(after, fx.dump_before);
        free(after);
    }
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, domid, 0),
                     STUBDM_ENOENT);
    ck_assert_int_eq(proc_children_settled(fx.mock.pid), 0);
    xs_close(h);
}
END_TEST

/*
 * A teardown runs a backend's script only when dom0 owns the "script"
 * node and the path is in the ctx's hotplug directory (or is one of the
 * spawn's own): a xenstored or domain that could write it must not choose
 * what dom0 executes.  Here the vbd's script is a dom0 node naming a path
 * outside the directory, and the vif's names the right script but the
 * stubdomain owns the node: neither runs, the rest of the teardown does.
 */
START_TEST(test_untrusted_scripts_not_run)
{
    stubdm_spawn_opts *c = config_with("ok", "ok");
    stubdm_stubdom *s = NULL;
    stubdm_ctx *other = NULL;
    struct xs_handle *h = mockxs_open_as(&fx.mock, 0);
    char p[160], outside[PATH_MAX];
    uint32_t domid;

    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s); /* the stubdomain runs on */

    /* Outside the directory through "..": the same fake script. */
    snprintf(outside, sizeof(outside), "%s/../%s/hp-ok", fx.mock.dir,
             strrchr(fx.mock.dir, '/') + 1);
    snprintf(p, sizeof(p), "/local/domain/0/backend/vbd/%u/%u/script", domid,
             VBD_XVDA);
    ck_assert(xs_write(h, XBT_NULL, p, outside, (unsigned)strlen(outside)));
    snprintf(p, sizeof(p), "/local/domain/0/backend/vif/%u/0/script", domid);
    {
        struct xs_permissions stub_own[2] = {{domid, XS_PERM_NONE},
                                             {0, XS_PERM_READ}};
        ck_assert(xs_set_permissions(h, XBT_NULL, p, stub_own, 2));
    }

    ck_assert_int_eq(stubdm_ctx_new(&other), 0);
    stubdm_ctx_set_host(other, STUBDM_HOST_SIM);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(other, fx.mock.dir), 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(other, domid, 0),
                     STUBDM_EPERM);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(other), "not run"), "%s",
                  stubdm_ctx_errmsg(other));
    stubdm_ctx_free(other);
    assert_no_record("vbd-51712-remove");
    assert_no_record("vif-0-offline");
    {
        char *after = spawnfix_dump(&fx);
        ck_assert_str_eq(after, fx.dump_before);
        free(after);
    }
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
    ck_assert_int_eq(proc_children_settled(fx.mock.pid), 0);
    xs_close(h);
}
END_TEST

START_TEST(test_hotplug_dir_refusals)
{
    static const char *const bad[] = {"",         "etc",       "/",
                                      "/etc/",    "/etc//xen", "/etc/../tmp",
                                      "/etc/./x", "/etc/..",   "/etc/\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(stubdm_ctx_set_hotplug_dir(fx.ctx, bad[i]) ==
                          STUBDM_EINVAL,
                      "accepted \"%s\"", bad[i]);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(fx.ctx, "/etc/xen/scripts"),
                     0);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(fx.ctx, NULL), 0);
    ck_assert_int_eq(stubdm_ctx_set_hotplug_dir(NULL, "/x"), STUBDM_EINVAL);
}
END_TEST

/* Turned off: nothing runs, nothing is waited for, nothing removed. */
START_TEST(test_disabled)
{
    stubdm_spawn_opts *c = config_with("hang", "hang");
    struct progress p = {0, 0, false, 0};
    stubdm_stubdom *s = NULL;
    char path[160], *v;

    ck_assert_int_eq(stubdm_ctx_set_hotplug(fx.ctx, 0), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, on_progress, &p, &s), 0);
    stubdm_spawn_opts_free(c);
    ck_assert_uint_eq(p.seen, 0x3fu); /* HOTPLUG reported too */
    ck_assert_int_eq(p.status_connected, 0);
    /* The scripts are still named for the caller's toolstack. */
    snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%u/0/script",
             stubdm_stubdom_domid(s));
    v = xs_get(path);
    ck_assert_ptr_nonnull(v);
    ck_assert_ptr_nonnull(strstr(v, "/hp-hang"));
    free(v);
    snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%u/0/state",
             stubdm_stubdom_domid(s));
    v = xs_get(path);
    ck_assert_str_eq(v, "2"); /* the simulated netback's InitWait */
    free(v);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    assert_no_record("vbd-51712-add");
    assert_no_record("vif-0-online");
    assert_no_record("vbd-51712-remove");
    assert_no_record("vif-0-offline");
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* A bare name is taken in /etc/xen/scripts, as libxl does. */
START_TEST(test_script_names)
{
    stubdm_spawn_opts *c = config();
    stubdm_stubdom *s = NULL;
    char path[160], *v;

    ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/dev/null", NULL, 0), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/x.qcow2", "qcow2", 0), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 0, "block-x"), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 1, "block"),
                     STUBDM_EINVAL); /* qdisk: no script */
    ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 2, "block"),
                     STUBDM_EINVAL); /* no such disk */
    ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, NULL, NULL, "vif-route"), 0);
    ck_assert_int_eq(stubdm_ctx_set_hotplug(fx.ctx, 0), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    snprintf(path, sizeof(path), "/local/domain/0/backend/vbd/%u/%u/script",
             stubdm_stubdom_domid(s), VBD_XVDA);
    v = xs_get(path);
    ck_assert_str_eq(v, "/etc/xen/scripts/block-x");
    free(v);
    snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%u/0/script",
             stubdm_stubdom_domid(s));
    v = xs_get(path);
    ck_assert_str_eq(v, "/etc/xen/scripts/vif-route");
    free(v);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);

    /* A relative path with a '/' depends on a cwd: refused. */
    c = config();
    ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, NULL, NULL, "x/vif"), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), STUBDM_EINVAL);
    stubdm_spawn_opts_free(c);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* ---- failures ------------------------------------------------------------ */

static const struct fail_case {
    const char *disk, *nic;
    int timeout_ms;
    int rc;
    const char *in_msg[3];  /* each must be in the message */
    const char *in_log;     /* and this in a warning, if set */
    const char *not_in_log; /* but not this */
} fail_cases[] = {
    {"error",
     "ok",
     10000,
     STUBDM_EFAIL,
     {"spawn: running hotplug scripts: vbd 51712 (", "/hp-error add)",
      "fake failure: backend/vbd/"},
     NULL,
     NULL},
    {"ok",
     "error",
     10000,
     STUBDM_EFAIL,
     {"vif 0 (", "/hp-error online)", "has no such device"},
     NULL,
     NULL},
    {"errexit0",
     "ok",
     10000,
     STUBDM_EFAIL,
     {"vbd 51712 (", "/hp-errexit0 add)", "hotplug-status \"error\""},
     NULL,
     NULL},
    {"ok",
     "exit1",
     10000,
     STUBDM_EFAIL,
     {"vif 0 (", "/hp-exit1 online)", "exited with status 1"},
     "fake script on stdout | fake script on stderr",
     NULL},
    {"hang",
     "ok",
     1500,
     STUBDM_ETIMEDOUT,
     {"vbd 51712 (", "/hp-hang add)", "still running after"},
     NULL,
     NULL},
    {"ok",
     "noconnect",
     1500,
     STUBDM_ETIMEDOUT,
     {"vif 0 (", "/hp-noconnect online)",
      "exited 0, but no hotplug-status \"connected\""},
     NULL,
     NULL},
    /* The output kept is bounded: its end, not its start. */
    {"chatty",
     "ok",
     10000,
     STUBDM_EFAIL,
     {"vbd 51712 (", "/hp-chatty add)", "exited with status 3"},
     "(its last 4 KiB), part 1: ",
     "line 1 | line 2 |"},
};

START_TEST(test_failures)
{
    const struct fail_case *fc = &fail_cases[_i];
    stubdm_spawn_opts *c = config_with(fc->disk, fc->nic);
    stubdm_stubdom *s = (stubdm_stubdom *)&s;
    const char *msg;
    char *r;
    int rc;

    stubdm_spawn_opts_set_timeout(c, fc->timeout_ms);
    rc = stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s);
    stubdm_spawn_opts_free(c);
    msg = stubdm_ctx_errmsg(fx.ctx);
    ck_assert_ptr_null(s);
    ck_assert_msg(rc == fc->rc, "rc %s, not %s: %s", stubdm_errname(rc),
                  stubdm_errname(fc->rc), msg);
    for (size_t i = 0; i < 3; i++)
        ck_assert_msg(strstr(msg, fc->in_msg[i]), "'%s' lacks '%s'", msg,
                      fc->in_msg[i]);
    if (fc->in_log)
        ck_assert_msg(strstr(logbuf, fc->in_log), "log lacks '%s':\n%.2000s",
                      fc->in_log, logbuf);
    if (fc->not_in_log)
        ck_assert_msg(!strstr(logbuf, fc->not_in_log), "log has '%s'",
                      fc->not_in_log);
    if (!strcmp(fc->disk, "chatty"))
        ck_assert(strstr(logbuf, "(end): ") &&
                  strstr(logbuf, "line 1999 | LAST\n"));
    /* The failed device's add ran, so its remove ran at the teardown. */
    r = record(strcmp(fc->disk, "ok") ? "vbd-51712-remove" : "vif-0-offline");
    ck_assert_ptr_nonnull(r);
    free(r);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* The stubdomain dies while a script runs: fail at once, kill it. */
START_TEST(test_death_during_hotplug)
{
    stubdm_spawn_opts *c = config_with("hang", "ok");
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    stubdm_ctx *other = NULL;
    int64_t t1;

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, &op), 0);
    stubdm_spawn_opts_free(c);
    await_record("vbd-51712-add");
    ck_assert(!stubdm_op_is_done(op));
    ck_assert_int_eq(stubdm_ctx_new(&other), 0);
    stubdm_ctx_set_host(other, STUBDM_HOST_SIM);
    ck_assert_int_eq(stubdm__host_sim.destroy(other, stubdm_stubdom_domid(s)),
                     0);
    stubdm_ctx_free(other);
    t1 = stubdm_now_ms();
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 1000), 0);
    ck_assert_int_lt(stubdm_now_ms() - t1, 3000);
    ck_assert_int_eq(stubdm_op_result(op), STUBDM_EDOMAIN_GONE);
    ck_assert_ptr_nonnull(
        strstr(stubdm_op_errmsg(op),
               "spawn: running hotplug scripts: stubdomain"));
    stubdm_op_free(op);
    stubdm_stubdom_free(s);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* Cancelled while scripts run: they are killed, removes run. */
START_TEST(test_cancel_during_hotplug)
{
    stubdm_spawn_opts *c = config_with("ok", "hang");
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    char *r = NULL;

    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, &op), 0);
    stubdm_spawn_opts_free(c);
    await_record("vif-0-online");
    stubdm_op_cancel(op);
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 1000), 0);
    ck_assert_int_eq(stubdm_op_result(op), STUBDM_ECANCELED);
    stubdm_op_free(op);
    stubdm_stubdom_free(s);
    r = record("vif-0-offline");
    ck_assert_ptr_nonnull(r);
    free(r);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

/* Our child whose command name is comm, or 0. */
static pid_t find_child(const char *comm)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0;

    ck_assert_ptr_nonnull(d);
    while (!found && (e = readdir(d))) {
        char path[300], buf[512], name[64];
        long pid = strtol(e->d_name, NULL, 10), ppid = 0;
        FILE *f;
        if (pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof(buf), f) &&
            sscanf(buf, "%*d (%63[^)]) %*c %ld", name, &ppid) == 2 &&
            ppid == (long)getpid() && !strcmp(name, comm))
            found = (pid_t)pid;
        fclose(f);
    }
    closedir(d);
    return found;
}

/* A child of ours with exactly this pid, leading its own process group
 * (clone3 with set_tid: root).  Returns its pid, or -1. */
static pid_t impostor_at(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        struct clone_args ca;
        pid_t tid = pid;
        long r;

        memset(&ca, 0, sizeof(ca));
        ca.exit_signal = SIGCHLD;
        ca.set_tid = (uint64_t)(uintptr_t)&tid;
        ca.set_tid_size = 1;
        r = syscall(SYS_clone3, &ca, sizeof(ca));
        if (r == 0) {
            setpgid(0, 0);
            for (;;)
                pause();
        }
        if (r > 0)
            return (pid_t)r;
        if (errno != EEXIST)
            return -1;
        usleep(10000); /* the killed script's own child not reaped yet */
    }
    return -1;
}

/* The host reaps the script itself and its pid goes to another process of
 * the host before the library kills the script (cancel): the library must
 * not signal that process, nor wait for it. */
START_TEST(test_kill_after_host_reaped)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    pid_t script, impostor;
    int pfd = pidfd_open(getpid(), 0), st;

    /* The pidfd path is what is tested (tag needs-pidfd): without pidfds
     * (valgrind 3.19) the pid fallback is bounded only, not exact. */
    ck_assert_msg(pfd >= 0 && geteuid() == 0,
                  "needs root and pidfd_open (CK_EXCLUDE_TAGS=needs-pidfd "
                  "where the process has none, as under valgrind 3.19)");
    close(pfd);
    c = config_with("ok", "hang");
    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, &op), 0);
    stubdm_spawn_opts_free(c);
    await_record("vif-0-online");
    script = find_child("hp-hang");
    ck_assert_int_gt(script, 0);
    /* The host's SIGCHLD handler, as it were: kill and reap. */
    ck_assert_int_eq(kill(-script, SIGKILL), 0);
    ck_assert_int_eq(waitpid(script, &st, 0), script);
    impostor = impostor_at(script);
    ck_assert_msg(impostor == script, "cannot reuse pid %ld: %s", (long)script,
                  strerror(errno));

    stubdm_op_cancel(op);
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 1000), 0);
    ck_assert_int_eq(stubdm_op_result(op), STUBDM_ECANCELED);
    ck_assert_msg(waitpid(impostor, &st, WNOHANG) == 0,
                  "the library signalled or reaped pid %ld, no longer its "
                  "script",
                  (long)impostor);
    ck_assert_int_eq(kill(impostor, SIGKILL), 0);
    ck_assert_int_eq(waitpid(impostor, &st, 0), impostor);
    stubdm_op_free(op);
    stubdm_stubdom_free(s);
    spawnfix_assert_clean(&fx, true);
}
END_TEST

static Suite *hotplug_suite(void)
{
    Suite *s = suite_create("hotplug");
    TCase *tc = tcase_create("sim");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_args_env_and_order);
    tcase_add_test(tc, test_remove_by_domid);
    tcase_add_test(tc, test_destroyed_elsewhere);
    tcase_add_test(tc, test_untrusted_scripts_not_run);
    tcase_add_test(tc, test_hotplug_dir_refusals);
    tcase_add_test(tc, test_disabled);
    tcase_add_test(tc, test_script_names);
    tcase_add_loop_test(tc, test_failures, 0,
                        (int)STUBDM_ARRAY_SIZE(fail_cases));
    tcase_add_test(tc, test_death_during_hotplug);
    tcase_add_test(tc, test_cancel_during_hotplug);
    suite_add_tcase(s, tc);

    tc = tcase_create("sim-pidfd");
    tcase_set_tags(tc, "needs-pidfd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_kill_after_host_reaped);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(hotplug_suite());
}
