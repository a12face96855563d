/*
 * PCI devices given to a spawn (docs/pci.md, "At spawn"), on the
 * simulated host with its stand-in stubdomain and real QEMU: the devices
 * are on the stubdomain's bus and their permissions granted before it is
 * unpaused; a device pciback does not hold fails the spawn before its
 * stubdomain runs; QEMU refusing device_add (a QEMU without Xen has no
 * xen-pci-passthrough) fails it after; every failure leaves the store,
 * the simulated hypervisor's tables and the processes as they were.
 */
#include "pci/pci.h"
#include "run.h"
#include "pcifix.h"
#include "spawnfix.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

#define GUEST 7
#define STUB 9
#define BE "/local/domain/0/backend/pci/9/0"
#define FE "/local/domain/9/device/pci/0"
#define SIM "/tool/stubdm-sim-pci"

static struct spawnfix fx;
static char tree[64];
static pid_t pciback_pid = -1;

/* pciback and pcifront: the bus Connected whenever it is (re)configured. */
static void pciback_loop(void)
{
    struct xs_handle *xs = xs_open(0);
    unsigned n;

    if (!xs || !xs_watch(xs, "/local/domain/0/backend/pci", "pb"))
        _exit(1);
    for (;;) {
        char **ev = xs_read_watch(xs, &n);
        unsigned st;
        free(ev);
        st = pcifix_read_u(xs, BE "/state");
        if (st != 1 && st != 7)
            continue;
        xs_write(xs, XBT_NULL, FE "/state", "4", 1);
        xs_write(xs, XBT_NULL, BE "/state", "4", 1);
    }
}

static void setup(void)
{
    static const struct spawnfix_opts o = {
        .verbose_env = "TEST_PCI_SPAWN_VERBOSE", .baseline = true};

    snprintf(tree, sizeof(tree), "/tmp/stubdm-pcis-XXXXXX");
    pcifix_tree(tree);
    pcifix_file(tree, "bus/pci/drivers/pciback/do_flr", "");
    pcifix_file(tree, "bus/pci/drivers/pciback/allow_interrupt_control", "");
    pcifix_dir(tree, "bus/pci/drivers/pciback/0000:00:04.0");
    pcifix_dir(tree, "bus/pci/devices/0000:00:04.0");
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/resource",
                "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n");
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/irq", "11\n");
    pcifix_dir(tree, "bus/pci/devices/0000:00:05.0");
    /* Its second function: MMIO only, no INTx. */
    pcifix_dir(tree, "bus/pci/drivers/pciback/0000:00:04.1");
    pcifix_dir(tree, "bus/pci/devices/0000:00:04.1");
    pcifix_file(tree, "bus/pci/devices/0000:00:04.1/resource",
                "0x00000000feb00000 0x00000000feb00fff 0x0000000000040200\n");
    pcifix_file(tree, "bus/pci/devices/0000:00:04.1/irq", "0\n");
    spawnfix_setup(&fx, &o);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(fx.ctx, tree), 0);
    pciback_pid = -1;
}

static void teardown(void)
{
    char cmd[128];

    if (pciback_pid > 0) {
        kill(pciback_pid, SIGKILL);
        waitpid(pciback_pid, NULL, 0);
    }
    spawnfix_teardown(&fx);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tree);
    ck_assert_int_eq(system(cmd), 0);
}

static void pciback_start(void)
{
    pciback_pid = fork();
    ck_assert_int_ge(pciback_pid, 0);
    if (pciback_pid == 0)
        pciback_loop();
}

static const char *const qemu_args[] = {
    "-xen-domid", "7",           "-machine", "xenfv", "-m",
    "16",         "-nodefaults", "-display", "none",  "-no-shutdown",
};

static stubdm_spawn_opts *config_sim(const char *bdf,
                                     const char *const *sim_args, size_t nsim)
{
    stubdm_spawn_opts *c = spawnfix_config(&fx, GUEST, qemu_args,
                                           STUBDM_ARRAY_SIZE(qemu_args),
                                           sim_args, nsim, 20000);
    stubdm_pci_dev *d;

    ck_assert_int_eq(stubdm_spawn_opts_set_stubdom_domid(c, STUB), 0);
    ck_assert_int_eq(stubdm_pci_dev_new(bdf, &d), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(c, d), 0);
    stubdm_pci_dev_free(d);
    return c;
}

static stubdm_spawn_opts *config(const char *bdf)
{
    return config_sim(bdf, NULL, 0);
}

/* What the progress callback saw when UNPAUSE was reported (the
 * stubdomain still paused). */
struct seen {
    struct xs_handle *xs;
    bool at_unpause, on_bus, granted, assigned, no_relocate;
};

static bool has(struct xs_handle *xs, const char *path)
{
    unsigned len;
    char *v = xs_read(xs, XBT_NULL, path, &len);

    free(v);
    return v != NULL;
}

static bool value_is(struct xs_handle *xs, const char *path, const char *want)
{
    unsigned len;
    char *v = xs_read(xs, XBT_NULL, path, &len);
    bool eq = v && !strcmp(v, want);

    free(v);
    return eq;
}

static void on_progress(stubdm_stubdom *s, stubdm_spawn_step step, void *user)
{
    struct seen *w = user;

    (void)s;
    if (step != STUBDM_SPAWN_STEP_UNPAUSE)
        return;
    w->at_unpause = true;
    w->on_bus = has(w->xs, BE "/dev-0") && has(w->xs, FE "/backend");
    w->granted = has(w->xs, SIM "/perm/9/iomem-fea00-100") &&
                 has(w->xs, SIM "/perm/7/iomem-fea00-100") &&
                 has(w->xs, SIM "/perm/9/irq-11");
    w->assigned = has(w->xs, SIM "/assigned/0000-00-04-0");
    w->no_relocate = value_is(w->xs,
                              "/local/domain/7/hvmloader/"
                              "allow-memory-relocate",
                              "0");
}

START_TEST(test_spawn_pci_before_unpause)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct seen w = {0};
    int rc;

    spawnfix_need_sim_stubdom(&fx);
    pciback_start();
    w.xs = mockxs_open_as(&fx.mock, 0);
    ck_assert_ptr_nonnull(w.xs);
    c = config("0000:00:04.0");
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 0, 0), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s),
                     STUBDM_EINVAL);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx), "PCI devices need QMP"),
                  "%s", stubdm_ctx_errmsg(fx.ctx));
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 1, 0), 0);
    rc = stubdm_spawn_sync(fx.ctx, c, on_progress, &w, &s);
    stubdm_spawn_opts_free(c);
    ck_assert(w.at_unpause);
    ck_assert_msg(w.on_bus, "the device was not on the bus before unpause");
    ck_assert_msg(w.granted, "permissions were not granted before unpause");
    ck_assert_msg(w.assigned, "not assigned to the guest before unpause");
    ck_assert_msg(w.no_relocate, "the guest's hvmloader may relocate memory "
                                 "(allow-memory-relocate not 0)");
    /* QEMU without Xen has no xen-pci-passthrough: the spawn fails at the
     * device_add, after QMP, and rolls back. */
    ck_assert_int_eq(rc, STUBDM_EQMP);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx),
                         "device_add of PCI device 0000:00:04.0 refused by "
                         "QEMU"),
                  "%s", stubdm_ctx_errmsg(fx.ctx));
    ck_assert_ptr_null(s);
    xs_close(w.xs);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

START_TEST(test_spawn_pci_not_pciback)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct seen w = {0};
    int rc;

    spawnfix_need_sim_stubdom(&fx);
    w.xs = mockxs_open_as(&fx.mock, 0);
    c = config("0000:00:05.0");
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 1, 0), 0);
    rc = stubdm_spawn_sync(fx.ctx, c, on_progress, &w, &s);
    stubdm_spawn_opts_free(c);
    ck_assert_int_eq(rc, STUBDM_EPERM);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx),
                         "PCI device 0000:00:05.0 is bound to no driver, "
                         "not pciback"),
                  "%s", stubdm_ctx_errmsg(fx.ctx));
    /* Refused before the stubdomain ever ran. */
    ck_assert(!w.at_unpause);
    xs_close(w.xs);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* The stand-in's simulated xen-pci-passthrough: the spawn completes with
 * the device in, at the slot asked; a destroy revokes and deassigns it
 * and leaves nothing. */
START_TEST(test_spawn_pci_running_then_destroy)
{
    static const char *const sim_args[] = {"--no-qemu"};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_pci_list *l = NULL;
    stubdm_pci_dev *d;
    struct xs_handle *xs;
    int rc;

    spawnfix_need_sim_stubdom(&fx);
    pciback_start();
    xs = mockxs_open_as(&fx.mock, 0);
    c = config_sim("0000:00:04.0", sim_args, 1);
    /* A second device, at slot 9: both on the bus, in order. */
    ck_assert_int_eq(stubdm_pci_dev_new("0000:00:04.1", &d), 0);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(d, 9), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(c, d), 0);
    stubdm_pci_dev_free(d);
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 1, 0), 0);
    rc = stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s);
    stubdm_spawn_opts_free(c);
    ck_assert_msg(rc == 0, "%s", stubdm_ctx_errmsg(fx.ctx));
    ck_assert_int_eq(stubdm_pci_list_new(fx.ctx, STUB, &l), 0);
    ck_assert_uint_eq(stubdm_pci_list_count(l), 2);
    ck_assert_int_eq(stubdm_pci_list_vslot(l, 0), 3);
    ck_assert_int_eq(stubdm_pci_list_vslot(l, 1), 9);
    stubdm_pci_list_free(l);
    ck_assert(has(xs, SIM "/assigned/0000-00-04-0"));
    ck_assert(has(xs, SIM "/assigned/0000-00-04-1"));
    ck_assert(has(xs, SIM "/perm/7/irq-11"));
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    ck_assert(!has(xs, SIM "/perm"));
    ck_assert(!has(xs, SIM "/assigned"));
    xs_close(xs);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pci_spawn");
    TCase *t = tcase_create("spawn");

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_spawn_pci_before_unpause);
    tcase_add_test(t, test_spawn_pci_not_pciback);
    tcase_add_test(t, test_spawn_pci_running_then_destroy);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
