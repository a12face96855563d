/*
 * PCI passthrough (lib/pci/, docs/pci.md): the one BDF parser and its
 * refusals, the device options, the spawn's devices and their checks.
 */
#include "mockxs.h"
#include "pcifix.h"
#include "qmp_peer.h"
#include "pci/pci.h"
#include "run.h"
#include "xen/host.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

/* ---- addresses ----------------------------------------------------------- */

START_TEST(test_addr_accepts)
{
    stubdm_pci_addr a;
    char buf[STUBDM_PCI_ADDR_STRLEN];

    ck_assert_int_eq(stubdm_pci_addr_parse("0000:03:00.0", &a), 0);
    ck_assert_uint_eq(a.domain, 0);
    ck_assert_uint_eq(a.bus, 3);
    ck_assert_uint_eq(a.dev, 0);
    ck_assert_uint_eq(a.func, 0);
    ck_assert_int_eq(stubdm_pci_addr_parse("FfFf:fF:1f.7", &a), 0);
    ck_assert_uint_eq(a.domain, 0xffff);
    ck_assert_uint_eq(a.bus, 0xff);
    ck_assert_uint_eq(a.dev, 31);
    ck_assert_uint_eq(a.func, 7);
    ck_assert_int_eq(stubdm_pci_addr_format(&a, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "ffff:ff:1f.7");
    /* The short form is segment 0. */
    ck_assert_int_eq(stubdm_pci_addr_parse("00:01.0", &a), 0);
    ck_assert_uint_eq(a.domain, 0);
    ck_assert_uint_eq(a.dev, 1);
    ck_assert_int_eq(stubdm_pci_addr_format(&a, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "0000:00:01.0");
}
END_TEST

/* Each refused with STUBDM_EINVAL and the address left as it was. */
static const char *const refused[] = {
    "",
    "0",
    "0000:03:00",
    "0000:03:00.",
    "0000:03:00.8",
    "0000:03:00.9",
    "0000:03:00.a",
    "0000:03:20.0", /* device 32 */
    "0000:03:ff.0",
    "000:03:00.0",   /* a field too short */
    "00000:03:00.0", /* too long */
    "0000:3:00.0",
    "0000:03:0.0",
    "0000:003:00.0",
    "0000:03:00.00",
    "0000:03:00.0 ", /* trailing byte */
    " 0000:03:00.0",
    "0000:03:00.0\n",
    "0x00:03:00.0",
    "+000:03:00.0",
    "-000:03:00.0",
    "0000-03:00.0",
    "0000:03-00.0",
    "0000:03:00:0",
    "g000:03:00.0",
    "0000:0g:00.0",
    "03:00",
    "0000:03:00.0.0",
    "0000:03:00.0000000000000000",
};

START_TEST(test_addr_refuses)
{
    stubdm_pci_addr a = {0x1234, 0x56, 7, 1};

    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        ck_assert_msg(stubdm_pci_addr_parse(refused[i], &a) == STUBDM_EINVAL,
                      "accepted '%s'", refused[i]);
        ck_assert_uint_eq(a.domain, 0x1234);
        ck_assert_uint_eq(a.bus, 0x56);
        ck_assert_uint_eq(a.dev, 7);
        ck_assert_uint_eq(a.func, 1);
    }
    ck_assert_int_eq(stubdm_pci_addr_parse(NULL, &a), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_addr_parse("0000:03:00.0", NULL),
                     STUBDM_EINVAL);
    /* An embedded NUL ends the string: "00:01.0" then junk is not read. */
    ck_assert_int_eq(stubdm_pci_addr_parse("0000:03:00.0\0junk", &a), 0);
}
END_TEST

START_TEST(test_addr_counted)
{
    stubdm_pci_addr a;
    const char *line = "0000:00:04.0\n0000:00:05.1";

    ck_assert_int_eq(stubdm__pci_addr_parse_n(line, 12, &a), 0);
    ck_assert_uint_eq(a.dev, 4);
    ck_assert_int_eq(stubdm__pci_addr_parse_n(line + 13, 12, &a), 0);
    ck_assert_uint_eq(a.dev, 5);
    ck_assert_uint_eq(a.func, 1);
    ck_assert_int_eq(stubdm__pci_addr_parse_n(line, 13, &a), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__pci_addr_parse_n(line, 11, &a), STUBDM_EINVAL);
}
END_TEST

/* pciback's vdev-N: "%04x:%02x:%02x.%02x", the function in two digits. */
START_TEST(test_vdev_parse)
{
    static const char *const bad[] = {"0000:00:10.08",  "0000:00:10.10",
                                      "0000:00:10.x0",  "0000:00:20.00",
                                      "0000:00:10.000", "000:00:10.00",
                                      "0000:00:10.0 ",  ""};
    stubdm_pci_addr a;

    ck_assert_int_eq(stubdm__pci_vdev_parse_n("0000:00:10.00", 13, &a), 0);
    ck_assert_uint_eq(a.dev, 0x10);
    ck_assert_uint_eq(a.func, 0);
    ck_assert_int_eq(stubdm__pci_vdev_parse_n("0001:02:1f.07", 13, &a), 0);
    ck_assert_uint_eq(a.domain, 1);
    ck_assert_uint_eq(a.bus, 2);
    ck_assert_uint_eq(a.dev, 0x1f);
    ck_assert_uint_eq(a.func, 7);
    ck_assert_int_eq(stubdm__pci_vdev_parse_n("0000:00:03.1", 12, &a), 0);
    ck_assert_uint_eq(a.func, 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(stubdm__pci_vdev_parse_n(bad[i], strlen(bad[i]), &a) ==
                          STUBDM_EINVAL,
                      "'%s' accepted", bad[i]);
}
END_TEST

START_TEST(test_addr_format_bounds)
{
    stubdm_pci_addr a = {0, 3, 0, 0}, bad = {0, 3, 32, 0};
    char buf[STUBDM_PCI_ADDR_STRLEN] = "x";

    ck_assert_int_eq(stubdm_pci_addr_format(&a, buf, sizeof(buf) - 1),
                     STUBDM_ELIMIT);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(stubdm_pci_addr_format(&bad, buf, sizeof(buf)),
                     STUBDM_EINVAL);
    bad.dev = 0;
    bad.func = 8;
    ck_assert_int_eq(stubdm_pci_addr_format(&bad, buf, sizeof(buf)),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_addr_format(NULL, buf, sizeof(buf)),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_addr_format(&a, NULL, 13), STUBDM_EINVAL);
}
END_TEST

/* ---- device options ------------------------------------------------------ */

START_TEST(test_dev_opts)
{
    stubdm_pci_dev *d = (stubdm_pci_dev *)1;
    stubdm_pci_addr a;

    ck_assert_int_eq(stubdm_pci_dev_new("0000:03:00", &d), STUBDM_EINVAL);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(stubdm_pci_dev_new("0000:03:00.0", NULL), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_dev_new("03:00.1", &d), 0);
    a = stubdm_pci_dev_addr(d);
    ck_assert_uint_eq(a.bus, 3);
    ck_assert_uint_eq(a.func, 1);
    ck_assert_int_eq(stubdm_pci_dev_vslot(d), -1);
    ck_assert_uint_eq(stubdm_pci_dev_flags(d), 0);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(d, 0), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(d, 32), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(d, -2), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(d, 31), 0);
    ck_assert_int_eq(stubdm_pci_dev_vslot(d), 31);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(d, -1), 0);
    ck_assert_int_eq(stubdm_pci_dev_set_flags(d, 1u << 20), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_dev_set_flags(d, STUBDM_PCI_PERMISSIVE |
                                                     STUBDM_PCI_POWER_MGMT),
                     0);
    ck_assert_uint_eq(stubdm_pci_dev_flags(d),
                      STUBDM_PCI_PERMISSIVE | STUBDM_PCI_POWER_MGMT);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(NULL, 3), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_pci_dev_vslot(NULL), -1);
    stubdm_pci_dev_free(d);
    stubdm_pci_dev_free(NULL);
}
END_TEST

/* ---- the spawn's devices ------------------------------------------------- */

static const char *const qemu_args[] = {"-machine", "xenfv"};

static stubdm_spawn_opts *new_opts(void)
{
    stubdm_spawn_opts *o;

    ck_assert_int_eq(stubdm_spawn_opts_new(&o), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_guest(o, 7, NULL, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_args(o, qemu_args, 2), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(o, 1, 0), 0);
    return o;
}

static stubdm_pci_dev *dev(const char *bdf, int vslot)
{
    stubdm_pci_dev *d;

    ck_assert_int_eq(stubdm_pci_dev_new(bdf, &d), 0);
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(d, vslot), 0);
    return d;
}

START_TEST(test_spawn_opts_pci)
{
    stubdm_ctx *ctx;
    stubdm_spawn_opts *o;
    stubdm_pci_dev *a = dev("0000:03:00.0", 5), *b = dev("0000:04:00.0", 5);
    char bdf[16];

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    ck_assert_int_eq(stubdm_ctx_set_host(ctx, STUBDM_HOST_SIM), 0);
    o = new_opts();
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(NULL, a), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(o, NULL), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(o, a), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(ctx, o), 0);
    /* The copy is the spawn's: changing a afterwards changes nothing. */
    ck_assert_int_eq(stubdm_pci_dev_set_vslot(a, 6), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(o, b), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(ctx, o), STUBDM_EINVAL);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx),
                         "PCI device 0000:04:00.0: virtual slot 5"),
                  "%s", stubdm_ctx_errmsg(ctx));
    stubdm_spawn_opts_free(o);

    o = new_opts();
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(o, a), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(o, a), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(ctx, o), STUBDM_EINVAL);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx),
                         "PCI device 0000:03:00.0 given twice"),
                  "%s", stubdm_ctx_errmsg(ctx));
    stubdm_spawn_opts_free(o);

    /* One pcifront bus: 16 devices. */
    ck_assert_int_eq(stubdm_spawn_opts_new(&o), 0);
    for (int i = 0; i < 16; i++) {
        stubdm_pci_dev *d;
        snprintf(bdf, sizeof(bdf), "0000:%02x:00.0", i);
        d = dev(bdf, -1);
        ck_assert_int_eq(stubdm_spawn_opts_add_pci(o, d), 0);
        stubdm_pci_dev_free(d);
    }
    ck_assert_int_eq(stubdm_spawn_opts_add_pci(o, a), STUBDM_ELIMIT);
    stubdm_spawn_opts_free(o);
    stubdm_pci_dev_free(a);
    stubdm_pci_dev_free(b);
    stubdm_ctx_free(ctx);
}
END_TEST

/* ---- sysfs: the parsers -------------------------------------------------- */

/* QEMU's edu device as Linux shows it: BAR0 1 MiB of MMIO, nothing else
 * (then the ROM line and bridge windows). */
static const char edu_resource[] =
    "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x000000000000c000 0x000000000000c01f 0x0000000000040101\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "garbage after the first seven lines is not read\n";

START_TEST(test_parse_resource)
{
    struct stubdm__pci_res r;
    size_t bad = 99;

    ck_assert_int_eq(stubdm__pci_parse_resource(edu_resource,
                                                strlen(edu_resource), &r,
                                                &bad),
                     0);
    ck_assert_uint_eq(r.nbars, 2);
    ck_assert(r.bar[0].start == 0xfea00000ull);
    ck_assert(r.bar[0].size == 0x100000ull);
    ck_assert(!r.bar[0].io);
    ck_assert(r.bar[1].start == 0xc000);
    ck_assert(r.bar[1].size == 0x20);
    ck_assert(r.bar[1].io);
    /* Short forms Linux does not print are still one number each. */
    ck_assert_int_eq(stubdm__pci_parse_resource("0x1000 0x1fff 0x200\n", 20,
                                                &r, &bad),
                     0);
    ck_assert_uint_eq(r.nbars, 1);
}
END_TEST

/* What the bus records as granted reads back as what was granted. */
START_TEST(test_res_render)
{
    struct stubdm__pci_res r, back;
    char text[512];
    size_t bad;

    ck_assert_int_eq(stubdm__pci_parse_resource(edu_resource,
                                                strlen(edu_resource), &r,
                                                &bad),
                     0);
    ck_assert_int_eq(stubdm__pci_res_render(&r, text, sizeof(text)), 0);
    ck_assert_int_eq(stubdm__pci_parse_resource(text, strlen(text), &back,
                                                &bad),
                     0);
    ck_assert_uint_eq(back.nbars, 2);
    ck_assert(back.bar[0].start == r.bar[0].start &&
              back.bar[0].size == r.bar[0].size && !back.bar[0].io);
    ck_assert(back.bar[1].start == 0xc000 && back.bar[1].io);
    r.nbars = 0;
    ck_assert_int_eq(stubdm__pci_res_render(&r, text, sizeof(text)), 0);
    ck_assert_int_eq(stubdm__pci_parse_resource(text, strlen(text), &back,
                                                &bad),
                     0);
    ck_assert_uint_eq(back.nbars, 0);
    ck_assert_int_eq(stubdm__pci_res_render(&r, text, 5), STUBDM_ELIMIT);
}
END_TEST

static const char *const bad_resource[] = {
    "",
    "\n",
    "0x1000 0x1fff 0x200",    /* no newline */
    "0x1000 0x1fff\n",        /* two fields */
    "0x1000  0x1fff 0x200\n", /* two spaces */
    "0x1000 0x1fff 0x200 \n",
    " 0x1000 0x1fff 0x200\n",
    "1000 0x1fff 0x200\n", /* no 0x */
    "0x 0x1fff 0x200\n",   /* no digits */
    "0X1000 0x1fff 0x200\n",
    "0x1000 0x1FFF 0x200\n", /* Linux prints lower case */
    "0x-100 0x1fff 0x200\n",
    "0x10000000000000000 0x1 0x200\n", /* 17 digits */
    "0x2000 0x1fff 0x200\n",           /* end before start */
    "0x1000 0xffffffffffffffff 0x200\n",
    "0xff00 0x100ff 0x101\n", /* I/O ports beyond 0xffff */
    "0x1000 0x1fff 0x200\n0x1000 0x1fff\n",
    "0x1000 0x1fff 0x200\n\n",
};

START_TEST(test_parse_resource_refuses)
{
    struct stubdm__pci_res r;
    size_t bad;

    for (size_t i = 0; i < sizeof(bad_resource) / sizeof(*bad_resource); i++) {
        const char *t = bad_resource[i];
        ck_assert_msg(stubdm__pci_parse_resource(t, strlen(t), &r, &bad) ==
                          STUBDM_EPROTO,
                      "accepted '%s'", t);
        ck_assert_uint_eq(r.nbars, 0);
        ck_assert_uint_ge(bad, 1);
    }
    ck_assert_int_eq(stubdm__pci_parse_resource(bad_resource[16],
                                                strlen(bad_resource[16]), &r,
                                                &bad),
                     STUBDM_EPROTO);
    ck_assert_uint_eq(bad, 2);
}
END_TEST

START_TEST(test_parse_irq)
{
    uint32_t irq = 7;

    ck_assert_int_eq(stubdm__pci_parse_irq("0\n", 2, &irq), 0);
    ck_assert_uint_eq(irq, 0);
    ck_assert_int_eq(stubdm__pci_parse_irq("21\n", 3, &irq), 0);
    ck_assert_uint_eq(irq, 21);
    irq = 7;
    ck_assert_int_eq(stubdm__pci_parse_irq("21", 2, &irq), STUBDM_EPROTO);
    ck_assert_int_eq(stubdm__pci_parse_irq("021\n", 4, &irq), STUBDM_EPROTO);
    ck_assert_int_eq(stubdm__pci_parse_irq("-1\n", 3, &irq), STUBDM_EPROTO);
    ck_assert_int_eq(stubdm__pci_parse_irq(" 1\n", 3, &irq), STUBDM_EPROTO);
    ck_assert_int_eq(stubdm__pci_parse_irq("65536\n", 6, &irq), STUBDM_EPROTO);
    ck_assert_int_eq(stubdm__pci_parse_irq("\n", 1, &irq), STUBDM_EPROTO);
    ck_assert_int_eq(stubdm__pci_parse_irq("", 0, &irq), STUBDM_EPROTO);
    ck_assert_uint_eq(irq, 7);
}
END_TEST

/* ---- sysfs: a fake tree -------------------------------------------------- */

static char tree[64];

static char *tree_read(const char *rel)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", tree, rel);
    return ts_slurp(path);
}

static void tree_expect(const char *rel, const char *want)
{
    char *got = tree_read(rel);

    ck_assert_msg(got && !strcmp(got, want), "%s: '%s', not '%s'", rel,
                  got ? got : "(none)", want);
    free(got);
}

/* pciback with 0000:00:04.0 bound (edu's resources, irq 11, no reset
 * file), 0000:00:05.0 bound to e1000e, 0000:00:06.0 to no driver. */
static void tree_setup(void)
{
    snprintf(tree, sizeof(tree), "/tmp/stubdm-pci-XXXXXX");
    pcifix_tree(tree);
    pcifix_dir(tree, "bus/pci/drivers/e1000e");
    pcifix_file(tree, "bus/pci/drivers/pciback/slots", "0000:00:04.0\n");
    pcifix_file(tree, "bus/pci/drivers/pciback/do_flr", "");
    pcifix_file(tree, "bus/pci/drivers/pciback/permissive", "");
    pcifix_file(tree, "bus/pci/drivers/pciback/allow_interrupt_control", "");
    pcifix_dir(tree, "bus/pci/drivers/pciback/0000:00:04.0");
    pcifix_dir(tree, "bus/pci/devices/0000:00:04.0");
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/resource", edu_resource);
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/irq", "11\n");
    pcifix_dir(tree, "bus/pci/devices/0000:00:05.0");
    pcifix_dir(tree, "bus/pci/devices/0000:00:06.0");
    /* A second assignable device: one MMIO BAR, no INTx. */
    pcifix_dir(tree, "bus/pci/drivers/pciback/0000:00:08.0");
    pcifix_dir(tree, "bus/pci/devices/0000:00:08.0");
    pcifix_file(tree, "bus/pci/devices/0000:00:08.0/resource",
                "0x00000000fe000000 0x00000000fe000fff 0x0000000000040200\n");
    pcifix_file(tree, "bus/pci/devices/0000:00:08.0/irq", "0\n");
    {
        char link[256];
        snprintf(link, sizeof(link), "%s/bus/pci/devices/0000:00:05.0/driver",
                 tree);
        ck_assert_int_eq(symlink("../../drivers/e1000e", link), 0);
    }
}

static void tree_teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tree);
    ck_assert_int_eq(system(cmd), 0);
}

static stubdm_pci_addr addr(const char *bdf)
{
    stubdm_pci_addr a;

    ck_assert_int_eq(stubdm_pci_addr_parse(bdf, &a), 0);
    return a;
}

static stubdm_ctx *tree_ctx(void)
{
    stubdm_ctx *c;

    ck_assert_int_eq(stubdm_ctx_new(&c), 0);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(c, tree), 0);
    return c;
}

START_TEST(test_sysfs_root)
{
    stubdm_ctx *c;

    ck_assert_int_eq(stubdm_ctx_new(&c), 0);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(NULL, "/x"), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(c, "relative"), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(c, "/x/"), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(c, "/x\ny"), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(c, "/sys"), 0);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(c, NULL), 0);
    stubdm_ctx_free(c);
}
END_TEST

START_TEST(test_sysfs_check)
{
    stubdm_ctx *c = tree_ctx();
    stubdm_pci_addr a;

    a = addr("0000:00:04.0");
    ck_assert_int_eq(stubdm__pci_sysfs_check(c, &a), 0);
    a = addr("0000:00:05.0");
    ck_assert_int_eq(stubdm__pci_sysfs_check(c, &a), STUBDM_EPERM);
    ck_assert_str_eq(stubdm_ctx_errmsg(c),
                     "PCI device 0000:00:05.0 is bound to 'e1000e', not "
                     "pciback: not assignable (xl pci-assignable-add "
                     "0000:00:05.0)");
    a = addr("0000:00:06.0");
    ck_assert_int_eq(stubdm__pci_sysfs_check(c, &a), STUBDM_EPERM);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(c), "bound to no driver"), "%s",
                  stubdm_ctx_errmsg(c));
    a = addr("0000:00:07.0");
    ck_assert_int_eq(stubdm__pci_sysfs_check(c, &a), STUBDM_ENOENT);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(c),
                         "PCI device 0000:00:07.0 does not exist"),
                  "%s", stubdm_ctx_errmsg(c));
    stubdm_ctx_free(c);
}
END_TEST

START_TEST(test_sysfs_resources)
{
    stubdm_ctx *c = tree_ctx();
    stubdm_pci_addr a = addr("0000:00:04.0");
    struct stubdm__pci_res r;
    char big[5000];

    ck_assert_int_eq(stubdm__pci_sysfs_resources(c, &a, &r), 0);
    ck_assert_uint_eq(r.nbars, 2);
    ck_assert_uint_eq(r.irq, 11);
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/irq", "eleven\n");
    ck_assert_int_eq(stubdm__pci_sysfs_resources(c, &a, &r), STUBDM_EPROTO);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(c), "/irq: malformed"), "%s",
                  stubdm_ctx_errmsg(c));
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/resource",
                "0x1000 0x1fff 0x200\n0x1000\n");
    ck_assert_int_eq(stubdm__pci_sysfs_resources(c, &a, &r), STUBDM_EPROTO);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(c), "resource line 2: malformed"),
                  "%s", stubdm_ctx_errmsg(c));
    /* A file that never ends is read no further than the bound. */
    memset(big, '0', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/resource", big);
    ck_assert_int_eq(stubdm__pci_sysfs_resources(c, &a, &r), STUBDM_ELIMIT);
    a = addr("0000:00:05.0");
    ck_assert_int_eq(stubdm__pci_sysfs_resources(c, &a, &r), STUBDM_ENOENT);
    stubdm_ctx_free(c);
}
END_TEST

START_TEST(test_sysfs_knobs)
{
    stubdm_ctx *c = tree_ctx();
    stubdm_pci_addr a = addr("0000:00:04.0");

    ck_assert_int_eq(stubdm__pci_sysfs_reset(c, &a), 0);
    tree_expect("bus/pci/drivers/pciback/do_flr", "0000:00:04.0");
    ck_assert_int_eq(stubdm__pci_sysfs_permissive(c, &a), 0);
    tree_expect("bus/pci/drivers/pciback/permissive", "0000:00:04.0");
    ck_assert_int_eq(stubdm__pci_sysfs_interrupt_control(c, &a), 0);
    tree_expect("bus/pci/drivers/pciback/allow_interrupt_control",
                "0000:00:04.0");
    /* An older pciback: allow_msi_enable; then neither (logged). */
    unlink(strcat(strcpy((char[256]){0}, tree),
                  "/bus/pci/drivers/pciback/allow_interrupt_control"));
    pcifix_file(tree, "bus/pci/drivers/pciback/allow_msi_enable", "");
    ck_assert_int_eq(stubdm__pci_sysfs_interrupt_control(c, &a), 0);
    tree_expect("bus/pci/drivers/pciback/allow_msi_enable", "0000:00:04.0");
    unlink(strcat(strcpy((char[256]){0}, tree),
                  "/bus/pci/drivers/pciback/allow_msi_enable"));
    ck_assert_int_eq(stubdm__pci_sysfs_interrupt_control(c, &a), 0);
    /* No do_flr: the device's reset; neither: no error (edu has none). */
    unlink(strcat(strcpy((char[256]){0}, tree),
                  "/bus/pci/drivers/pciback/do_flr"));
    pcifix_file(tree, "bus/pci/devices/0000:00:04.0/reset", "");
    ck_assert_int_eq(stubdm__pci_sysfs_reset(c, &a), 0);
    tree_expect("bus/pci/devices/0000:00:04.0/reset", "1");
    unlink(strcat(strcpy((char[256]){0}, tree),
                  "/bus/pci/devices/0000:00:04.0/reset"));
    ck_assert_int_eq(stubdm__pci_sysfs_reset(c, &a), 0);
    /* No permissive knob: an error naming it. */
    unlink(strcat(strcpy((char[256]){0}, tree),
                  "/bus/pci/drivers/pciback/permissive"));
    ck_assert_int_eq(stubdm__pci_sysfs_permissive(c, &a), STUBDM_ENOENT);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(c), "pciback/permissive"), "%s",
                  stubdm_ctx_errmsg(c));
    stubdm_ctx_free(c);
}
END_TEST

/* ---- the simulated hypervisor's IOMMU and permissions ------------------- */

#define GUEST 4
#define STUB 5

static struct mockxs mock;
static stubdm_ctx *ctx;
static struct xs_handle *xs0;

static void sim_setup(void)
{
    static const unsigned doms[] = {GUEST, STUB};
    struct mockxs_opts o = {.domids = doms, .n_domids = 2};

    ck_assert_int_eq(mockxs_start(&mock, &o), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    ck_assert_int_eq(stubdm_ctx_set_host(ctx, STUBDM_HOST_SIM), 0);
    xs0 = mockxs_open_as(&mock, 0);
    ck_assert_ptr_nonnull(xs0);
}

static void sim_teardown(void)
{
    xs_close(xs0);
    stubdm_ctx_free(ctx);
    ck_assert_int_eq(mockxs_stop(&mock), 0);
}

static bool node_exists(const char *path)
{
    unsigned len;
    char *v = xs_read(xs0, XBT_NULL, path, &len);

    free(v);
    return v != NULL;
}

static void put(const char *path, const char *v)
{
    ck_assert(xs_write(xs0, XBT_NULL, path, v, (unsigned)strlen(v)));
}

#define SIM "/tool/stubdm-sim-pci"

START_TEST(test_sim_assign)
{
    const struct stubdm__host_ops *h = &stubdm__host_sim;
    stubdm_pci_addr a = addr("0000:00:04.0");
    char *v;
    unsigned len;

    ck_assert_int_eq(h->pci_assign(ctx, GUEST, &a, false), 0);
    v = xs_read(xs0, XBT_NULL, SIM "/assigned/0000-00-04-0", &len);
    ck_assert_str_eq(v, "4");
    free(v);
    /* Twice to the same domain: fine; to another: EBUSY. */
    ck_assert_int_eq(h->pci_assign(ctx, GUEST, &a, false), 0);
    ck_assert_int_eq(h->pci_assign(ctx, STUB, &a, false), STUBDM_EXEN);
    ck_assert_int_eq(stubdm_ctx_os_errno(ctx), EBUSY);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx), "assigned to another"), "%s",
                  stubdm_ctx_errmsg(ctx));
    /* Deassigning from the wrong domain leaves it. */
    ck_assert_int_eq(h->pci_deassign(ctx, STUB, &a), 0);
    ck_assert(node_exists(SIM "/assigned/0000-00-04-0"));
    ck_assert_int_eq(h->pci_deassign(ctx, GUEST, &a), 0);
    ck_assert(!node_exists(SIM));
    /* No IOMMU. */
    put(SIM "/no-iommu", "");
    ck_assert_int_eq(h->pci_assign(ctx, GUEST, &a, true), STUBDM_ENOTSUP);
    ck_assert_str_eq(stubdm_ctx_errmsg(ctx),
                     "assigning PCI device 0000:00:04.0 to domain 4: the "
                     "hypervisor has no IOMMU (enable VT-d or AMD-Vi, and "
                     "Xen's iommu=): Function not implemented");
    ck_assert(!node_exists(SIM "/assigned"));
}
END_TEST

START_TEST(test_sim_permissions)
{
    const struct stubdm__host_ops *h = &stubdm__host_sim;
    uint32_t pirq = 0;

    ck_assert_int_eq(h->ioport_permission(ctx, STUB, 0xc000, 0x20, true), 0);
    ck_assert_int_eq(h->iomem_permission(ctx, STUB, 0xfea00, 0x100, true), 0);
    ck_assert_int_eq(h->map_pirq(ctx, STUB, 11, &pirq), 0);
    ck_assert_uint_eq(pirq, 11);
    ck_assert_int_eq(h->irq_permission(ctx, STUB, pirq, true), 0);
    ck_assert_int_eq(h->iomem_permission(ctx, GUEST, 0xfea00, 0x100, true), 0);
    ck_assert(node_exists(SIM "/perm/5/ioport-c000-20"));
    ck_assert(node_exists(SIM "/perm/5/iomem-fea00-100"));
    ck_assert(node_exists(SIM "/perm/5/pirq-11"));
    ck_assert(node_exists(SIM "/perm/5/irq-11"));
    ck_assert(node_exists(SIM "/perm/4/iomem-fea00-100"));
    ck_assert_int_eq(h->irq_permission(ctx, STUB, pirq, false), 0);
    ck_assert_int_eq(h->unmap_pirq(ctx, STUB, pirq), 0);
    ck_assert_int_eq(h->iomem_permission(ctx, STUB, 0xfea00, 0x100, false), 0);
    ck_assert_int_eq(h->ioport_permission(ctx, STUB, 0xc000, 0x20, false), 0);
    ck_assert(!node_exists(SIM "/perm/5"));
    /* Revoking what was never granted is no error (as Xen's). */
    ck_assert_int_eq(h->irq_permission(ctx, STUB, 3, false), 0);
    /* A call told to fail. */
    put(SIM "/fail/xc_domain_iomem_permission", "");
    ck_assert_int_eq(h->iomem_permission(ctx, STUB, 1, 1, true), STUBDM_EXEN);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx),
                         "xc_domain_iomem_permission for domain 5"),
                  "%s", stubdm_ctx_errmsg(ctx));
    ck_assert(!node_exists(SIM "/perm/5"));
    ck_assert(xs_rm(xs0, XBT_NULL, SIM "/fail"));
    /* A destroyed domain's permissions and devices go with it. */
    {
        stubdm_pci_addr a = addr("0000:00:04.0");
        ck_assert_int_eq(h->pci_assign(ctx, GUEST, &a, false), 0);
    }
    ck_assert_int_eq(h->destroy(ctx, GUEST), 0);
    ck_assert(!node_exists(SIM "/perm/4"));
    ck_assert(!node_exists(SIM "/assigned/0000-00-04-0"));
    ck_assert(!node_exists(SIM));
}
END_TEST

/* ---- attach on the simulated host ------------------------------------- */

#define A_STUB 9
#define A_GUEST 8
#define BE "/local/domain/0/backend/pci/9/0"
#define FE "/local/domain/9/device/pci/0"

static struct qmp_sim asim;
static struct qmp_peer apeer;
static pid_t pciback_pid = -1;
static stubdm_ctx *actx;
static stubdm_qmp *aq;

static void write_u(struct xs_handle *xs, const char *path, unsigned v)
{
    char s[16];

    snprintf(s, sizeof(s), "%u", v);
    xs_write(xs, XBT_NULL, path, s, (unsigned)strlen(s));
}

/* What the stand-in publishes as vdev-N instead (a hostile backend). */
static const char *pciback_vdev;

/* pciback and pcifront as the mock's stand-ins: a new device
 * (state-N Initialising) is exported (Initialised) and published as
 * vdev-N at slot 0x10 + N of the stubdomain's virtual bus (pciback's
 * default mode: not the host's address), a closing one is closed, then
 * the bus is Connected. */
static void pciback_loop(void)
{
    struct xs_handle *xs = xs_open(0);
    unsigned n;

    if (!xs || !xs_watch(xs, "/local/domain/0/backend/pci", "pb"))
        _exit(1);
    for (;;) {
        char **ev = xs_read_watch(xs, &n);
        unsigned st, num;
        free(ev);
        st = pcifix_read_u(xs, BE "/state");
        if (st != 1 && st != 7)
            continue;
        num = pcifix_read_u(xs, BE "/num_devs");
        for (unsigned i = 0; i < num && i < 16; i++) {
            char p[96];
            snprintf(p, sizeof(p), BE "/state-%u", i);
            if (pcifix_read_u(xs, p) == 1) {
                char vp[96], v[32];
                snprintf(vp, sizeof(vp), BE "/vdev-%u", i);
                snprintf(v, sizeof(v), "0000:00:%02x.00", 0x10 + i);
                if (pciback_vdev)
                    snprintf(v, sizeof(v), "%s", pciback_vdev);
                xs_write(xs, XBT_NULL, vp, v, (unsigned)strlen(v));
                write_u(xs, p, 3);
            } else if (pcifix_read_u(xs, p) == 5)
                write_u(xs, p, 6);
        }
        write_u(xs, FE "/state", 4);
        write_u(xs, BE "/state", 4);
    }
}

static void pciback_start(void)
{
    pciback_pid = fork();
    ck_assert_int_ge(pciback_pid, 0);
    if (pciback_pid == 0)
        pciback_loop();
}

static void attach_setup(void)
{
    tree_setup();
    ck_assert_int_eq(qmp_sim_start(&asim, A_STUB, A_GUEST), 0);
    ck_assert(xs_introduce_domain(asim.xs, A_GUEST, 1, 1));
    ck_assert_int_eq(stubdm_ctx_new(&actx), 0);
    ck_assert_int_eq(stubdm_ctx_set_host(actx, STUBDM_HOST_SIM), 0);
    ck_assert_int_eq(stubdm_ctx_set_sysfs_root(actx, tree), 0);
    apeer.pid = -1;
    aq = NULL;
    pciback_pid = -1;
}

static void attach_teardown(void)
{
    stubdm_qmp_free(aq);
    stubdm_ctx_free(actx);
    if (pciback_pid > 0) {
        kill(pciback_pid, SIGKILL);
        waitpid(pciback_pid, NULL, 0);
    }
    qmp_peer_stop(&apeer);
    qmp_sim_stop(&asim);
    tree_teardown();
}

static void open_qmp(const struct qmp_peer_step *script)
{
    stubdm_qmp_opts *o = NULL;
    int rc;

    ck_assert_int_eq(qmp_peer_start(&apeer, asim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&asim), 0);
    ck_assert_int_eq(stubdm_qmp_opts_new(&o), 0);
    ck_assert_int_eq(
        stubdm_qmp_opts_set_transport(o, STUBDM_QMP_TRANSPORT_SIMULATED), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_sim_dir(o, asim.simdir), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, 3000), 0);
    rc = stubdm_qmp_open_sync(actx, A_STUB, A_GUEST, o, &aq);
    stubdm_qmp_opts_free(o);
    ck_assert_msg(rc == 0, "open: %s", stubdm_ctx_errmsg(actx));
}

static struct ts_result attach(const char *bdf, int vslot, unsigned flags,
                               int timeout_ms)
{
    struct ts_result r = {0};
    stubdm_pci_dev *d = dev(bdf, vslot);
    stubdm_op *op = NULL;

    ck_assert_int_eq(stubdm_pci_dev_set_flags(d, flags), 0);
    ck_assert_int_eq(stubdm_pci_attach(actx, A_STUB, A_GUEST, d, aq,
                                       timeout_ms, ts_on_done, &r, &op),
                     0);
    stubdm_pci_dev_free(d);
    ck_assert(!r.done); /* never from inside the call */
    ts_run_until_done(actx, &r, 10000 * ts_time_scale());
    stubdm_op_free(op);
    return r;
}

static bool exists(const char *path)
{
    unsigned len;
    char *v = xs_read(asim.xs, XBT_NULL, path, &len);

    free(v);
    return v != NULL;
}

static void expect_node(const char *path, const char *want)
{
    unsigned len;
    char *v = xs_read(asim.xs, XBT_NULL, path, &len);

    ck_assert_msg(v && !strcmp(v, want), "%s: '%s', not '%s'", path,
                  v ? v : "(none)", want);
    free(v);
}

/* Nothing of an attach: no bus, no permission, no assignment. */
static void expect_nothing_left(void)
{
    ck_assert_msg(!exists("/local/domain/0/backend/pci/9"),
                  "a PCI backend is left");
    ck_assert_msg(!exists(FE), "a PCI frontend is left");
    ck_assert_msg(!exists(SIM "/perm") && !exists(SIM "/assigned"),
                  "permissions or assignments are left");
}

static const struct qmp_peer_step add_ok[] = {
    QP_HS(),
    QP_R("\"device_add\""),
    QP_REP("{\"return\": {}, \"id\": %s}"),
    QP_R("\"query-pci\""),
    QP_REP("{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, "
           "\"slot\": 2, \"function\": 0, \"qdev_id\": \"\"}, {\"bus\": 0, "
           "\"slot\": 5, \"function\": 0, \"qdev_id\": \"pci-pt-00_04.0\"}"
           "]}], \"id\": %s}"),
    QP_H(3000),
    QP_E(),
};

START_TEST(test_attach_ok)
{
    struct ts_result r;

    pciback_start();
    open_qmp(add_ok);
    r = attach("0000:00:04.0", -1, STUBDM_PCI_PERMISSIVE, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_node(BE "/dev-0", "0000:00:04.0");
    expect_node(BE "/num_devs", "1");
    expect_node(BE "/vdevfn-0", "28");
    expect_node(BE "/opts-0", "msitranslate=0,power_mgmt=0,permissive=1,"
                              "rdm_policy=relaxed");
    expect_node(BE "/frontend", FE);
    expect_node(FE "/backend", BE);
    expect_node(BE "/state", "4");
    /* Both domains have the BARs and the irq; the guest the device. */
    expect_node(SIM "/assigned/0000-00-04-0", "8");
    ck_assert(exists(SIM "/perm/8/iomem-fea00-100"));
    ck_assert(exists(SIM "/perm/9/iomem-fea00-100"));
    ck_assert(exists(SIM "/perm/8/ioport-c000-20"));
    ck_assert(exists(SIM "/perm/9/ioport-c000-20"));
    ck_assert(exists(SIM "/perm/8/irq-11"));
    ck_assert(exists(SIM "/perm/9/irq-11"));
    tree_expect("bus/pci/drivers/pciback/do_flr", "0000:00:04.0");
    tree_expect("bus/pci/drivers/pciback/permissive", "0000:00:04.0");
    tree_expect("bus/pci/drivers/pciback/allow_interrupt_control",
                "0000:00:04.0");
    /* The same device again: refused, and the first stays. */
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EBUSY);
    ck_assert_msg(strstr(r.msg, "already on stubdomain 9's bus"), "%s", r.msg);
    expect_node(BE "/dev-0", "0000:00:04.0");
}
END_TEST

START_TEST(test_attach_not_pciback)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(3000), QP_E()};
    struct ts_result r;

    open_qmp(script);
    r = attach("0000:00:05.0", -1, 0, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPERM);
    ck_assert_str_eq(r.msg, "PCI device 0000:00:05.0 is bound to 'e1000e', "
                            "not pciback: not assignable (xl "
                            "pci-assignable-add 0000:00:05.0)");
    expect_nothing_left();
    r = attach("0000:00:07.0", -1, 0, 5000);
    ck_assert_int_eq(r.rc, STUBDM_ENOENT);
    expect_nothing_left();
}
END_TEST

START_TEST(test_attach_no_iommu)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(3000), QP_E()};
    struct ts_result r;

    open_qmp(script);
    ck_assert(xs_write(asim.xs, XBT_NULL, SIM "/no-iommu", "", 0));
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_int_eq(r.rc, STUBDM_ENOTSUP);
    ck_assert_msg(strstr(r.msg, "PCI device 0000:00:04.0 to domain 8: the "
                                "hypervisor has no IOMMU"),
                  "%s", r.msg);
    ck_assert(xs_rm(asim.xs, XBT_NULL, SIM "/no-iommu"));
    expect_nothing_left();
}
END_TEST

/* Each hypervisor call failing in turn: the steps before it undone. */
START_TEST(test_attach_every_host_failure)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(8000), QP_E()};
    static const char *const calls[] = {
        "xc_domain_iomem_permission", "xc_domain_ioport_permission",
        "xc_physdev_map_pirq",        "xc_domain_irq_permission",
        "xc_assign_device",
    };
    char p[128];

    open_qmp(script);
    for (size_t i = 0; i < sizeof(calls) / sizeof(*calls); i++) {
        struct ts_result r;
        snprintf(p, sizeof(p), SIM "/fail/%s", calls[i]);
        ck_assert(xs_write(asim.xs, XBT_NULL, p, "", 0));
        r = attach("0000:00:04.0", -1, 0, 5000);
        ck_assert_msg(r.rc == STUBDM_EXEN, "%s: %d %s", calls[i], r.rc, r.msg);
        ck_assert_msg(strstr(r.msg, calls[i]), "%s", r.msg);
        ck_assert_msg(!strncmp(r.msg, "PCI device 0000:00:04.0: ", 25), "%s",
                      r.msg);
        ck_assert(xs_rm(asim.xs, XBT_NULL, SIM));
        expect_nothing_left();
    }
}
END_TEST

START_TEST(test_attach_refused)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("\"device_add\""),
        QP_REP("{\"error\": {\"class\": \"GenericError\", \"desc\": "
               "\"xen_pt_realize: no such host device\"}, \"id\": %s}"),
        QP_H(3000),
        QP_E(),
    };
    struct ts_result r;

    pciback_start();
    open_qmp(script);
    r = attach("0000:00:04.0", 6, 0, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EQMP);
    ck_assert_str_eq(r.msg, "device_add of PCI device 0000:00:04.0 refused "
                            "by QEMU: xen_pt_realize: no such host device");
    expect_nothing_left();
}
END_TEST

/* QEMU not yet seeing the device in its sysfs: retried, then added. */
START_TEST(test_attach_retry)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("\"addr\":\"06.0\""),
        QP_REP("{\"error\": {\"class\": \"GenericError\", \"desc\": "
               "\"Could not open '/sys/bus/pci/devices/0000:00:04.0/"
               "config'\"}, \"id\": %s}"),
        QP_R("\"device_add\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_R("\"query-pci\""),
        QP_REP("{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, "
               "\"slot\": 6, \"function\": 0, \"qdev_id\": "
               "\"pci-pt-00_04.0\"}]}], \"id\": %s}"),
        QP_H(3000),
        QP_E(),
    };
    struct ts_result r;

    pciback_start();
    open_qmp(script);
    r = attach("0000:00:04.0", 6, 0, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_node(BE "/vdev-0", "0000:00:10.00");
    expect_node(BE "/vdevfn-0", "30");
}
END_TEST

/* A vdev-N that is not an address (pciback is dom0's, but the value is
 * read and parsed like any other): the attach fails before device_add,
 * leaving nothing. */
START_TEST(test_attach_bad_vdev)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(3000), QP_E()};
    struct ts_result r;

    pciback_vdev = "0000:00:10.0/";
    pciback_start();
    pciback_vdev = NULL;
    open_qmp(script);
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPROTO);
    ck_assert_str_eq(r.msg, "/local/domain/0/backend/pci/9/0/vdev-0: not a "
                            "PCI address");
    expect_nothing_left();
}
END_TEST

START_TEST(test_attach_never_connected)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(5000), QP_E()};
    struct ts_result r;

    open_qmp(script);
    r = attach("0000:00:04.0", -1, 0, 400);
    ck_assert_int_eq(r.rc, STUBDM_ETIMEDOUT);
    ck_assert_str_eq(r.msg, "PCI backend of stubdomain 9 not connected "
                            "after 400 ms (state 1): PCI device "
                            "0000:00:04.0 not attached");
    expect_nothing_left();
}
END_TEST

static void kill_stub(stubdm_op *op, void *arg)
{
    (void)op;
    (void)arg;
}

START_TEST(test_attach_stubdom_dies)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(5000), QP_E()};
    struct ts_result r = {0};
    stubdm_pci_dev *d = dev("0000:00:04.0", -1);
    stubdm_op *op = NULL;

    (void)kill_stub;
    open_qmp(script);
    ck_assert_int_eq(stubdm_pci_attach(actx, A_STUB, A_GUEST, d, aq, 5000,
                                       ts_on_done, &r, &op),
                     0);
    stubdm_pci_dev_free(d);
    ts_spin(actx, 100);
    ck_assert(!r.done);
    ck_assert(exists(BE "/dev-0"));
    ck_assert_int_eq(qmp_sim_kill_stubdom(&asim), 0);
    ts_run_until_done(actx, &r, 5000);
    stubdm_op_free(op);
    ck_assert_int_eq(r.rc, STUBDM_EDOMAIN_GONE);
    ck_assert_msg(strstr(r.msg, "while PCI device 0000:00:04.0 was being "
                                "attached to guest 8"),
                  "%s", r.msg);
    expect_nothing_left();
}
END_TEST

/* Cancelled while waiting: undone too. */
START_TEST(test_attach_cancel)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(5000), QP_E()};
    struct ts_result r = {0};
    stubdm_pci_dev *d = dev("0000:00:04.0", -1);
    stubdm_op *op = NULL;

    open_qmp(script);
    ck_assert_int_eq(stubdm_pci_attach(actx, A_STUB, A_GUEST, d, aq, 5000,
                                       ts_on_done, &r, &op),
                     0);
    stubdm_pci_dev_free(d);
    ts_spin(actx, 100);
    ck_assert(exists(BE "/dev-0"));
    stubdm_op_free(op);
    expect_nothing_left();
}
END_TEST

/* QEMU added it but query-pci does not show it: device_del, undone. */
START_TEST(test_attach_not_in_query)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("\"device_add\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_R("\"query-pci\""),
        QP_REP("{\"return\": [{\"bus\": 0, \"devices\": []}], \"id\": %s}"),
        QP_R("\"device_del\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_H(1000),
        QP_E(),
    };
    struct ts_result r;

    pciback_start();
    open_qmp(script);
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPROTO);
    ck_assert_str_eq(r.msg, "PCI device 0000:00:04.0 (pci-pt-00_04.0) not "
                            "in QEMU's query-pci answer");
    expect_nothing_left();
    ts_spin(actx, 200);
    ck_assert_int_eq(qmp_peer_wait(&apeer, 5000), 0);
}
END_TEST

/* ---- detach ------------------------------------------------------------- */

#define DEL_EVENT(id)                                                         \
    QP_S("{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"" id       \
         "\", \"path\": \"/machine/peripheral/" id "\"}, \"timestamp\": "     \
         "{\"seconds\": 1, \"microseconds\": 2}}\r\n")

static struct ts_result detach(const char *bdf, int timeout_ms)
{
    struct ts_result r = {0};
    stubdm_pci_addr a = addr(bdf);
    stubdm_op *op = NULL;

    ck_assert_int_eq(stubdm_pci_detach(actx, A_STUB, A_GUEST, &a, aq,
                                       timeout_ms, ts_on_done, &r, &op),
                     0);
    ck_assert(!r.done);
    ts_run_until_done(actx, &r, 10000 * ts_time_scale());
    stubdm_op_free(op);
    return r;
}

static void expect_list(size_t n, const char *bdf0, int vslot0)
{
    stubdm_pci_list *l = NULL;
    char buf[STUBDM_PCI_ADDR_STRLEN];
    stubdm_pci_addr a;

    ck_assert_int_eq(stubdm_pci_list_new(actx, A_STUB, &l), 0);
    ck_assert_uint_eq(stubdm_pci_list_count(l), n);
    if (n) {
        a = stubdm_pci_list_addr(l, 0);
        ck_assert_int_eq(stubdm_pci_addr_format(&a, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, bdf0);
        ck_assert_int_eq(stubdm_pci_list_vslot(l, 0), vslot0);
    }
    ck_assert_int_eq(stubdm_pci_list_vslot(l, n), -1);
    stubdm_pci_list_free(l);
}

/* QEMU adds 0000:00:04.0 at slot 5, then deletes it when asked. */
static const struct qmp_peer_step add_del_ok[] = {
    QP_HS(),
    QP_R("\"device_add\""),
    QP_REP("{\"return\": {}, \"id\": %s}"),
    QP_R("\"query-pci\""),
    QP_REP("{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, "
           "\"slot\": 5, \"function\": 0, \"qdev_id\": "
           "\"pci-pt-00_04.0\"}]}], \"id\": %s}"),
    QP_R("\"device_del\""),
    QP_REP("{\"return\": {}, \"id\": %s}"),
    QP_D(50),
    DEL_EVENT("pci-pt-00_04.0"),
    QP_H(3000),
    QP_E(),
};

START_TEST(test_detach_ok)
{
    struct ts_result r;

    pciback_start();
    open_qmp(add_del_ok);
    expect_list(0, NULL, -1);
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_list(1, "0000:00:04.0", 5);
    r = detach("0000:00:04.0", 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_list(0, NULL, -1);
    expect_nothing_left();
    r = detach("0000:00:04.0", 5000);
    ck_assert_int_eq(r.rc, STUBDM_ENOENT);
    ck_assert_str_eq(r.msg, "PCI device 0000:00:04.0 is not attached to "
                            "stubdomain 9");
}
END_TEST

/* QEMU's xen-pci-passthrough unmaps the guest's pirq when it releases
 * the device (measured on the nested Xen: the detach's own unmap then
 * failed with EINVAL and left the bus): the detach revokes the rest and
 * succeeds. */
START_TEST(test_detach_pirq_unmapped_by_qemu)
{
    struct ts_result r;

    pciback_start();
    open_qmp(add_del_ok);
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    ck_assert(exists(SIM "/perm/8/pirq-11"));
    ck_assert(xs_rm(asim.xs, XBT_NULL, SIM "/perm/8/pirq-11"));
    r = detach("0000:00:04.0", 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_list(0, NULL, -1);
    expect_nothing_left();
}
END_TEST

/* Two devices, the first detached: the second renumbered to entry 0,
 * its permissions kept. */
START_TEST(test_detach_renumbers)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("\"hostaddr\":\"0000:00:10.0\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_R("\"query-pci\""),
        QP_REP("{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, "
               "\"slot\": 5, \"function\": 0, \"qdev_id\": "
               "\"pci-pt-00_04.0\"}]}], \"id\": %s}"),
        QP_R("\"hostaddr\":\"0000:00:11.0\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_R("\"query-pci\""),
        QP_REP("{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, "
               "\"slot\": 5, \"function\": 0, \"qdev_id\": "
               "\"pci-pt-00_04.0\"}, {\"bus\": 0, \"slot\": 7, "
               "\"function\": 0, \"qdev_id\": \"pci-pt-00_08.0\"}]}], "
               "\"id\": %s}"),
        QP_R("\"device_del\""),
        DEL_EVENT("pci-pt-00_04.0"),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_H(3000),
        QP_E(),
    };
    struct ts_result r;

    pciback_start();
    open_qmp(script);
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    r = attach("0000:00:08.0", -1, 0, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_node(BE "/num_devs", "2");
    expect_node(BE "/vdevfn-1", "38");
    r = detach("0000:00:04.0", 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_node(BE "/num_devs", "1");
    expect_node(BE "/dev-0", "0000:00:08.0");
    expect_node(BE "/vdevfn-0", "38");
    ck_assert(!exists(BE "/dev-1"));
    expect_list(1, "0000:00:08.0", 7);
    ck_assert(!exists(SIM "/assigned/0000-00-04-0"));
    ck_assert(!exists(SIM "/perm/8/irq-11"));
    expect_node(SIM "/assigned/0000-00-08-0", "8");
    ck_assert(exists(SIM "/perm/8/iomem-fe000-1"));
    ck_assert(exists(SIM "/perm/9/iomem-fe000-1"));
}
END_TEST

/* QEMU never lets go: the device stays attached, nothing revoked. */
START_TEST(test_detach_no_event)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("\"device_add\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_R("\"query-pci\""),
        QP_REP("{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, "
               "\"slot\": 5, \"function\": 0, \"qdev_id\": "
               "\"pci-pt-00_04.0\"}]}], \"id\": %s}"),
        QP_R("\"device_del\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        DEL_EVENT("pci-pt-00_09.0"), /* another device's */
        QP_H(3000),
        QP_E(),
    };
    struct ts_result r;

    pciback_start();
    open_qmp(script);
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    r = detach("0000:00:04.0", 400);
    ck_assert_int_eq(r.rc, STUBDM_ETIMEDOUT);
    ck_assert_str_eq(r.msg, "PCI device 0000:00:04.0 was not removed by "
                            "QEMU (no DEVICE_DELETED in 400 ms): still "
                            "attached");
    expect_node(BE "/dev-0", "0000:00:04.0");
    expect_node(SIM "/assigned/0000-00-04-0", "8");
    ck_assert(exists(SIM "/perm/9/irq-11"));
}
END_TEST

/* A QEMU that lost the device (restarted, or another client removed it):
 * detach still frees it. */
START_TEST(test_detach_not_in_qemu)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("\"device_add\""),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_R("\"query-pci\""),
        QP_REP("{\"return\": [{\"bus\": 0, \"devices\": [{\"bus\": 0, "
               "\"slot\": 5, \"function\": 0, \"qdev_id\": "
               "\"pci-pt-00_04.0\"}]}], \"id\": %s}"),
        QP_R("\"device_del\""),
        QP_REP("{\"error\": {\"class\": \"GenericError\", \"desc\": "
               "\"Device 'pci-pt-00_04.0' not found\"}, \"id\": %s}"),
        QP_H(3000),
        QP_E(),
    };
    struct ts_result r;

    pciback_start();
    open_qmp(script);
    r = attach("0000:00:04.0", -1, 0, 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    r = detach("0000:00:04.0", 5000);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    expect_nothing_left();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pci");
    TCase *t = tcase_create("addr");
    TCase *o = tcase_create("opts");

    tcase_add_test(t, test_addr_accepts);
    tcase_add_test(t, test_addr_refuses);
    tcase_add_test(t, test_addr_counted);
    tcase_add_test(t, test_vdev_parse);
    tcase_add_test(t, test_addr_format_bounds);
    suite_add_tcase(s, t);
    tcase_add_test(o, test_dev_opts);
    tcase_add_test(o, test_spawn_opts_pci);
    suite_add_tcase(s, o);
    {
        TCase *p = tcase_create("sysfs");
        TCase *h = tcase_create("simhost");
        tcase_add_test(p, test_parse_resource);
        tcase_add_test(p, test_parse_resource_refuses);
        tcase_add_test(p, test_parse_irq);
        tcase_add_test(p, test_res_render);
        tcase_add_test(p, test_sysfs_root);
        tcase_add_checked_fixture(p, tree_setup, tree_teardown);
        tcase_add_test(p, test_sysfs_check);
        tcase_add_test(p, test_sysfs_resources);
        tcase_add_test(p, test_sysfs_knobs);
        suite_add_tcase(s, p);
        tcase_add_checked_fixture(h, sim_setup, sim_teardown);
        tcase_set_timeout(h, 60);
        tcase_add_test(h, test_sim_assign);
        tcase_add_test(h, test_sim_permissions);
        suite_add_tcase(s, h);
    }
    {
        TCase *a = tcase_create("attach");
        tcase_add_checked_fixture(a, attach_setup, attach_teardown);
        tcase_set_timeout(a, 60);
        tcase_add_test(a, test_attach_ok);
        tcase_add_test(a, test_attach_not_pciback);
        tcase_add_test(a, test_attach_no_iommu);
        tcase_add_test(a, test_attach_every_host_failure);
        tcase_add_test(a, test_attach_refused);
        tcase_add_test(a, test_attach_retry);
        tcase_add_test(a, test_attach_never_connected);
        tcase_add_test(a, test_attach_bad_vdev);
        tcase_add_test(a, test_attach_stubdom_dies);
        tcase_add_test(a, test_attach_cancel);
        tcase_add_test(a, test_attach_not_in_query);
        tcase_add_test(a, test_detach_ok);
        tcase_add_test(a, test_detach_renumbers);
        tcase_add_test(a, test_detach_pirq_unmapped_by_qemu);
        tcase_add_test(a, test_detach_no_event);
        tcase_add_test(a, test_detach_not_in_qemu);
        suite_add_tcase(s, a);
    }
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
