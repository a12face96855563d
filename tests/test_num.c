/*
 * The strict decimal parser (lib/core/num.c): every width's overflow, the
 * forms it refuses (empty, signs, spaces, hex, leading zeros, trailing
 * bytes, over-long), *out untouched on error; then its former callers
 * given hostile values through the library, on the mock xenstored.
 */
#include "spawn/hotplug.h"
#include "mockxs.h"
#include "core/num.h"
#include "xen/nodes.h"
#include "run.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define SENTINEL 0xA5A5A5A5A5A5A5A5ull

static int p64(const char *s, uint64_t max, uint64_t *v)
{
    *v = SENTINEL;
    return stubdm__num_parse_u64(s, max, v);
}

START_TEST(test_u64_accepts)
{
    uint64_t v;

    ck_assert_int_eq(p64("0", UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(p64("7", UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(p64("51712", UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, 51712);
    ck_assert_int_eq(p64("18446744073709551615", UINT64_MAX, &v), 0);
    ck_assert(v == UINT64_MAX);
    ck_assert_int_eq(p64("10", 10, &v), 0);
    ck_assert_uint_eq(v, 10);
}
END_TEST

/* Each refused with STUBDM_EINVAL and *out left as it was. */
static const char *const refused[] = {
    "",
    "-",
    "+",
    "-0",
    "-1",
    "+1",
    " 1",
    "1 ",
    "\t1",
    "1\n",
    "\n",
    "0x10",
    "0X10",
    "x10",
    "1e3",
    "1.0",
    "1,0",
    "١", /* Arabic-Indic 1 */
    "00",
    "01",
    "007",
    "0000000000000000000001",
    "1a",
    "a1",
    "12 34",
    "1-2",
    "18446744073709551616",
    "18446744073709551617",
    "99999999999999999999",
    "184467440737095516150",
    "100000000000000000000",
    "123456789012345678901234567890",
};

START_TEST(test_u64_refuses)
{
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        uint64_t v;
        ck_assert_msg(p64(refused[i], UINT64_MAX, &v) == STUBDM_EINVAL,
                      "accepted \"%s\"", refused[i]);
        ck_assert_msg(v == SENTINEL, "\"%s\" wrote *out", refused[i]);
    }
    ck_assert_int_eq(stubdm__num_parse_u64(NULL, UINT64_MAX, NULL),
                     STUBDM_EINVAL);
}
END_TEST

/* Above max: refused at every width, one past each limit. */
START_TEST(test_max_every_width)
{
    static const struct {
        const char *ok, *over;
        uint64_t max;
    } w[] = {
        {"255", "256", UINT8_MAX},
        {"65535", "65536", UINT16_MAX},
        {"32751", "32752", 0x7FEF},
        {"4294967295", "4294967296", UINT32_MAX},
        {"9223372036854775807", "9223372036854775808", INT64_MAX},
        {"18446744073709551615", "18446744073709551616", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        uint64_t v;
        uint32_t v32 = 0xdeadbeef;
        ck_assert_int_eq(p64(w[i].ok, w[i].max, &v), 0);
        ck_assert(v == w[i].max);
        ck_assert_int_eq(p64(w[i].over, w[i].max, &v), STUBDM_EINVAL);
        ck_assert(v == SENTINEL);
        if (w[i].max <= UINT32_MAX) {
            ck_assert_int_eq(stubdm__num_parse_u32(w[i].ok, (uint32_t)w[i].max,
                                                   &v32),
                             0);
            ck_assert_uint_eq(v32, (uint32_t)w[i].max);
            v32 = 0xdeadbeef;
            ck_assert_int_eq(stubdm__num_parse_u32(w[i].over,
                                                   (uint32_t)w[i].max, &v32),
                             STUBDM_EINVAL);
            ck_assert_uint_eq(v32, 0xdeadbeef);
        }
    }
}
END_TEST

/* The bug this parser replaces: 2^32 + 5 read as 5 by a 32-bit cast. */
START_TEST(test_u32_no_wrap)
{
    uint32_t v = 77;

    ck_assert_int_eq(stubdm__num_parse_u32("4294967301", UINT32_MAX, &v),
                     STUBDM_EINVAL);
    ck_assert_uint_eq(v, 77);
    ck_assert_int_eq(stubdm__num_parse_u32("18446744073709551621", UINT32_MAX,
                                           &v),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_u32("4294967295", UINT32_MAX, &v), 0);
    ck_assert_uint_eq(v, UINT32_MAX);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        v = 77;
        ck_assert_int_eq(stubdm__num_parse_u32(refused[i], UINT32_MAX, &v),
                         STUBDM_EINVAL);
        ck_assert_uint_eq(v, 77);
    }
}
END_TEST

START_TEST(test_domid)
{
    uint32_t d = 99;

    ck_assert_int_eq(stubdm__num_parse_domid("0", &d), 0);
    ck_assert_uint_eq(d, 0);
    ck_assert_int_eq(stubdm__num_parse_domid("32751", &d), 0);
    ck_assert_uint_eq(d, 0x7FEF);
    d = 99;
    /* DOMID_FIRST_RESERVED and the reserved ids (DOMID_SELF, ...). */
    ck_assert_int_eq(stubdm__num_parse_domid("32752", &d), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_domid("32753", &d), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_domid("65535", &d), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_domid("4294967301", &d), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_domid("05", &d), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_domid("-5", &d), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_domid(NULL, &d), STUBDM_EINVAL);
    ck_assert_uint_eq(d, 99);
}
END_TEST

/* The counted form: the field is exactly the number; bytes after it (an
 * embedded NUL, a longer string) are not read. */
START_TEST(test_counted)
{
    uint64_t v = SENTINEL;
    static const char buf[] = {'4', '2', '\0', '7'};

    ck_assert_int_eq(stubdm__num_parse_u64_n("42 99", 2, UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, 42);
    v = SENTINEL;
    ck_assert_int_eq(stubdm__num_parse_u64_n(buf, 4, UINT64_MAX, &v),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__num_parse_u64_n("42", 0, UINT64_MAX, &v),
                     STUBDM_EINVAL);
    ck_assert(v == SENTINEL);
}
END_TEST

/* A string far longer than any number: refused after reading at most
 * STUBDM__NUM_DIGITS_MAX + 1 bytes (the rest is unmapped: ASan or a
 * fault would catch a longer read). */
START_TEST(test_length_cap)
{
    char *s = malloc(STUBDM__NUM_DIGITS_MAX + 1);
    uint64_t v = SENTINEL;

    ck_assert_ptr_nonnull(s);
    memset(s, '1', STUBDM__NUM_DIGITS_MAX + 1); /* no NUL in the buffer */
    ck_assert_int_eq(stubdm__num_parse_u64(s, UINT64_MAX, &v), STUBDM_EINVAL);
    ck_assert(v == SENTINEL);
    free(s);
}
END_TEST

/* The permission strings' ids go through the same parser. */
START_TEST(test_perms_ids)
{
    static const char *const bad[] = {"n0 r05", "n0 r65536", "n0 r-1",
                                      "n0 r+1", "n0 r0x1",   "n4294967296",
                                      "n0 r",   "n 0"};
    struct xs_permissions *p = NULL;
    unsigned n = 0;

    ck_assert_int_eq(stubdm__perms_parse("n0 r5 b65535", &p, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(p[2].id, 65535);
    free(p);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p = NULL;
        ck_assert_msg(stubdm__perms_parse(bad[i], &p, &n) == STUBDM_EINVAL,
                      "accepted \"%s\"", bad[i]);
        ck_assert_ptr_null(p);
    }
}
END_TEST

/* ---- through the library: hostile values on the mock xenstored ---------- */

#define GUEST 4
#define STUB 5

static struct mockxs mock;
static stubdm_ctx *ctx;
static struct xs_handle *xs0;

static void lib_setup(void)
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

static void lib_teardown(void)
{
    xs_close(xs0);
    stubdm_ctx_free(ctx);
    ck_assert_int_eq(mockxs_stop(&mock), 0);
}

static void put(const char *path, const char *v)
{
    ck_assert(xs_write(xs0, XBT_NULL, path, v, (unsigned)strlen(v)));
}

/* image/device-model-domid "4294967301" named stubdomain 5. */
START_TEST(test_find_stubdom_wrap)
{
    static const char *const bad[] = {"4294967301", "05",  "+5",
                                      "5 ",         "0x5", "-4294967291"};
    uint32_t out = 1234;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put("/local/domain/4/image/device-model-domid", bad[i]);
        ck_assert_msg(stubdm_stubdom_find_by_guest(ctx, GUEST, &out) ==
                          STUBDM_EPROTO,
                      "\"%s\" taken (stubdomain %u)", bad[i], out);
    }
    put("/local/domain/4/image/device-model-domid", "5");
    ck_assert_int_eq(stubdm_stubdom_find_by_guest(ctx, GUEST, &out), 0);
    ck_assert_uint_eq(out, STUB);
}
END_TEST

/* A target "4294967301" is not guest 5: such a domain is not listed. */
START_TEST(test_list_wrap)
{
    stubdm_stubdom_list *l = NULL;

    put("/local/domain/5/target", "4294967301");
    put("/local/domain/6/target", "4");
    ck_assert_int_eq(stubdm_stubdom_list_new(ctx, &l), 0);
    ck_assert_uint_eq(stubdm_stubdom_list_count(l), 1);
    ck_assert_uint_eq(stubdm_stubdom_list_domid(l, 0), 6);
    ck_assert_uint_eq(stubdm_stubdom_list_guest(l, 0), 4);
    stubdm_stubdom_list_free(l);
}
END_TEST

struct hp_result {
    bool done;
    int rc;
    char msg[512];
};

static void on_hp_done(stubdm_op *op, int rc, void *user)
{
    struct hp_result *r = user;
    r->done = true;
    r->rc = rc;
    snprintf(r->msg, sizeof(r->msg), "%s", stubdm_op_errmsg(op));
}

/* A backend state "2junk" was InitWait to atoi, and the script ran. */
START_TEST(test_hotplug_state_junk)
{
    static const struct stubdm__hotplug_dev dev = {"vbd", 51712, "/bin/true"};
    struct hp_result r = {0};
    stubdm_op *op = NULL;
    int64_t t0;

    ck_assert(xs_introduce_domain(xs0, STUB, 1, 1));
    put("/local/domain/0/backend/vbd/5/51712/state", "2junk");
    ck_assert_int_eq(stubdm__hotplug_add(ctx, STUB, &dev, 1, 3000, on_hp_done,
                                         &r, &op),
                     0);
    t0 = stubdm_now_ms();
    while (!r.done && stubdm_now_ms() - t0 < 5000)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 50), 0);
    ck_assert(r.done);
    ck_assert_msg(r.rc == STUBDM_EPROTO, "%d %s", r.rc, r.msg);
    ck_assert_msg(strstr(r.msg, "not a state"), "%s", r.msg);
    stubdm_op_free(op);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("num");
    TCase *t = tcase_create("parse");
    TCase *lib = tcase_create("library");

    tcase_add_test(t, test_u64_accepts);
    tcase_add_test(t, test_u64_refuses);
    tcase_add_test(t, test_max_every_width);
    tcase_add_test(t, test_u32_no_wrap);
    tcase_add_test(t, test_domid);
    tcase_add_test(t, test_counted);
    tcase_add_test(t, test_length_cap);
    tcase_add_test(t, test_perms_ids);
    suite_add_tcase(s, t);
    tcase_add_checked_fixture(lib, lib_setup, lib_teardown);
    tcase_set_timeout(lib, 60);
    tcase_add_test(lib, test_find_stubdom_wrap);
    tcase_add_test(lib, test_list_wrap);
    tcase_add_test(lib, test_hotplug_state_junk);
    suite_add_tcase(s, lib);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
