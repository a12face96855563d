/*
 * PCI passthrough (lib/pci/, docs/pci.md): the one BDF parser and its
 * refusals, the device options, the spawn's devices and their checks.
 */
#include "pci/pci.h"
#include "run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "0000:03:20.0",    /* device 32 */
    "0000:03:ff.0",
    "000:03:00.0",     /* a field too short */
    "00000:03:00.0",   /* too long */
    "0000:3:00.0",
    "0000:03:0.0",
    "0000:003:00.0",
    "0000:03:00.00",
    "0000:03:00.0 ",   /* trailing byte */
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

static Suite *suite(void)
{
    Suite *s = suite_create("pci");
    TCase *t = tcase_create("addr");
    TCase *o = tcase_create("opts");

    tcase_add_test(t, test_addr_accepts);
    tcase_add_test(t, test_addr_refuses);
    tcase_add_test(t, test_addr_counted);
    tcase_add_test(t, test_addr_format_bounds);
    suite_add_tcase(s, t);
    tcase_add_test(o, test_dev_opts);
    tcase_add_test(o, test_spawn_opts_pci);
    suite_add_tcase(s, o);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
