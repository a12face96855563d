/*
 * Pure ring arithmetic of the PV console page (lib/console/ring.c):
 * wraparound of the free-running indexes, full and empty rings, both sides
 * of one page, and hostile indexes from the peer.
 */
#include "console/ring.h"
#include "run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static struct xencons_interface page;

static void reset(void)
{
    memset(&page, 0, sizeof(page));
}

START_TEST(used_basic)
{
    uint32_t u = 99;

    ck_assert(stubdm__cring_used(0, 0, 2048, &u));
    ck_assert_uint_eq(u, 0);
    ck_assert(stubdm__cring_used(10, 2058, 2048, &u));
    ck_assert_uint_eq(u, 2048);
    ck_assert(!stubdm__cring_used(10, 2059, 2048, &u));
    /* cons beyond prod is a huge distance, refused */
    ck_assert(!stubdm__cring_used(11, 10, 2048, &u));
    /* wraparound of the 32-bit counters */
    ck_assert(stubdm__cring_used(UINT32_MAX - 5, 10, 2048, &u));
    ck_assert_uint_eq(u, 16);
    ck_assert(!stubdm__cring_used(0, 0x80000000u, 2048, &u));
}
END_TEST

START_TEST(segs_split)
{
    struct stubdm__cring_seg s[2];

    ck_assert_uint_eq(stubdm__cring_segs(5, 0, 1024, s), 0);
    ck_assert_uint_eq(stubdm__cring_segs(5, 100, 1024, s), 1);
    ck_assert_uint_eq(s[0].off, 5);
    ck_assert_uint_eq(s[0].len, 100);
    ck_assert_uint_eq(stubdm__cring_segs(1000, 100, 1024, s), 2);
    ck_assert_uint_eq(s[0].off, 1000);
    ck_assert_uint_eq(s[0].len, 24);
    ck_assert_uint_eq(s[1].off, 0);
    ck_assert_uint_eq(s[1].len, 76);
    /* exactly to the end: one segment */
    ck_assert_uint_eq(stubdm__cring_segs(1024 + 924, 100, 1024, s), 1);
    ck_assert_uint_eq(s[0].off, 924);
    /* whole ring from a wrapped index */
    ck_assert_uint_eq(stubdm__cring_segs(UINT32_MAX, 1024, 1024, s), 2);
    ck_assert_uint_eq(s[0].off, 1023);
    ck_assert_uint_eq(s[0].len, 1);
    ck_assert_uint_eq(s[1].len, 1023);
}
END_TEST

START_TEST(frontend_to_backend_wraps)
{
    struct stubdm__cring fe, be;
    unsigned char in[700], out[700];
    uint64_t total = 0;

    reset();
    ck_assert(stubdm__cring_attach(&fe, &page, STUBDM__CRING_FRONTEND));
    ck_assert(stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    ck_assert_uint_eq(stubdm__cring_rx_size(&be), 2048);
    ck_assert_uint_eq(stubdm__cring_tx_size(&be), 1024);
    for (int round = 0; round < 100; round++) {
        for (size_t i = 0; i < sizeof(in); i++)
            in[i] = (unsigned char)(round * 7 + i);
        ck_assert_int_eq(stubdm__cring_write(&fe, in, sizeof(in)), 700);
        ck_assert_int_eq(stubdm__cring_read(&be, out, sizeof(out)), 700);
        ck_assert_mem_eq(in, out, sizeof(in));
        total += 700;
    }
    ck_assert_uint_eq(page.out_prod, (uint32_t)total);
    ck_assert_uint_eq(page.out_cons, (uint32_t)total);
    ck_assert_int_eq(stubdm__cring_rx_empty(&be), 1);
    ck_assert_int_eq(stubdm__cring_tx_drained(&fe), 1);
}
END_TEST

START_TEST(full_and_empty)
{
    struct stubdm__cring fe, be;
    char buf[4096];
    char *p[2];
    uint32_t l[2];
    unsigned n;

    reset();
    memset(buf, 'x', sizeof(buf));
    ck_assert(stubdm__cring_attach(&fe, &page, STUBDM__CRING_FRONTEND));
    ck_assert(stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    /* backend -> frontend: in ring of 1024 */
    ck_assert_int_eq(stubdm__cring_write(&be, buf, sizeof(buf)), 1024);
    ck_assert_int_eq(stubdm__cring_write(&be, buf, 1), 0);
    ck_assert_int_eq(stubdm__cring_tx_room(&be, 100, p, l, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(stubdm__cring_tx_drained(&be), 0);
    ck_assert_int_eq(stubdm__cring_read(&fe, buf, 10), 10);
    ck_assert_int_eq(stubdm__cring_write(&be, buf, 100), 10);
    ck_assert_int_eq(stubdm__cring_read(&fe, buf, sizeof(buf)), 1024);
    ck_assert_int_eq(stubdm__cring_read(&fe, buf, sizeof(buf)), 0);
    ck_assert_int_eq(stubdm__cring_tx_drained(&be), 1);
    /* frontend -> backend: out ring of 2048 */
    ck_assert_int_eq(stubdm__cring_write(&fe, buf, sizeof(buf)), 2048);
    ck_assert_int_eq(stubdm__cring_rx_empty(&be), 0);
    ck_assert_int_eq(stubdm__cring_read(&be, buf, sizeof(buf)), 2048);
    ck_assert_int_eq(stubdm__cring_rx_empty(&be), 1);
}
END_TEST

START_TEST(peek_max_and_partial_consume)
{
    struct stubdm__cring fe, be;
    const char *p[2];
    uint32_t l[2];
    unsigned n;
    char b[64];

    reset();
    page.out_prod = page.out_cons = 2040; /* about to wrap */
    ck_assert(stubdm__cring_attach(&fe, &page, STUBDM__CRING_FRONTEND));
    ck_assert(stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    ck_assert_int_eq(stubdm__cring_write(&fe, "0123456789abcdef", 16), 16);
    ck_assert_int_eq(stubdm__cring_rx_peek(&be, 100, p, l, &n), 16);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(l[0], 8);
    ck_assert_uint_eq(l[1], 8);
    ck_assert(memcmp(p[0], "01234567", 8) == 0);
    ck_assert(memcmp(p[1], "89abcdef", 8) == 0);
    ck_assert_int_eq(stubdm__cring_rx_peek(&be, 3, p, l, &n), 3);
    ck_assert_uint_eq(n, 1);
    stubdm__cring_rx_consume(&be, 3);
    ck_assert_int_eq(stubdm__cring_read(&be, b, sizeof(b)), 13);
    ck_assert(memcmp(b, "3456789abcdef", 13) == 0);
}
END_TEST

START_TEST(hostile_indexes)
{
    struct stubdm__cring be;
    const char *p[2];
    char *w[2];
    uint32_t l[2];
    unsigned n;
    char b[16];

    reset();
    ck_assert(stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    /* producer far beyond the consumer */
    page.out_prod = 5000;
    ck_assert_int_eq(stubdm__cring_rx_peek(&be, 100, p, l, &n), -1);
    ck_assert_int_eq(stubdm__cring_read(&be, b, sizeof(b)), -1);
    ck_assert_int_eq(stubdm__cring_rx_empty(&be), -1);
    /* producer behind the consumer ("cons beyond prod") */
    page.out_prod = (uint32_t)-1;
    ck_assert_int_eq(stubdm__cring_rx_peek(&be, 100, p, l, &n), -1);
    page.out_prod = 0;
    /* peer's consumer beyond our producer on the in ring */
    page.in_cons = 7;
    ck_assert_int_eq(stubdm__cring_tx_room(&be, 100, w, l, &n), -1);
    ck_assert_int_eq(stubdm__cring_write(&be, "x", 1), -1);
    ck_assert_int_eq(stubdm__cring_tx_drained(&be), -1);
    page.in_cons = 0;
    /* the peer scribbling on OUR indexes changes nothing we compute */
    page.out_cons = 123456;
    page.in_prod = 999999;
    ck_assert_int_eq(stubdm__cring_rx_peek(&be, 100, p, l, &n), 0);
    ck_assert_int_eq(stubdm__cring_write(&be, "abc", 3), 3);
    ck_assert_uint_eq(page.in_prod, 3); /* rewritten from our copy */
    /* attach refuses an already inconsistent page */
    reset();
    page.out_prod = 4096;
    ck_assert(!stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    reset();
    page.in_cons = 1;
    ck_assert(!stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
}
END_TEST

/* A violation is reported with the index values that were checked: the
 * peer may rewrite the page right after (to a valid value even), and a
 * message reading it again would show what was never refused. */
START_TEST(violation_snapshot_is_what_was_checked)
{
    struct stubdm__cring be;
    const char *rp[2];
    char *wp[2];
    uint32_t l[2];
    unsigned nseg;

    reset();
    ck_assert(stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    page.out_prod = 0x80000000u;
    ck_assert_int_eq(stubdm__cring_rx_peek(&be, 4096, rp, l, &nseg), -1);
    page.out_prod = 5; /* the peer covers its tracks */
    ck_assert_uint_eq(be.seen_rx_prod, 0x80000000u);
    ck_assert_int_eq(stubdm__cring_rx_empty(&be), 0);
    ck_assert_uint_eq(be.seen_rx_prod, 5);
    page.out_prod = 0;

    page.in_cons = 4000;
    ck_assert_int_eq(stubdm__cring_tx_room(&be, 4096, wp, l, &nseg), -1);
    page.in_cons = 0;
    ck_assert_uint_eq(be.seen_tx_cons, 4000);
    page.in_cons = 7777;
    ck_assert_int_eq(stubdm__cring_tx_drained(&be), -1);
    page.in_cons = 0;
    ck_assert_uint_eq(be.seen_tx_cons, 7777);

    /* At attach: all four as read then. */
    reset();
    page.in_cons = 1;
    page.in_prod = 2;
    page.out_cons = 3;
    page.out_prod = 9000;
    ck_assert(!stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    memset(&page, 0, sizeof(page));
    ck_assert_uint_eq(be.seen_tx_cons, 1);
    ck_assert_uint_eq(be.tx_prod, 2);
    ck_assert_uint_eq(be.rx_cons, 3);
    ck_assert_uint_eq(be.seen_rx_prod, 9000);
}
END_TEST

START_TEST(attach_picks_up_existing_data)
{
    struct stubdm__cring fe, be;
    char b[32];

    reset();
    ck_assert(stubdm__cring_attach(&fe, &page, STUBDM__CRING_FRONTEND));
    /* boot messages written before any backend is there */
    ck_assert_int_eq(stubdm__cring_write(&fe, "early boot\n", 11), 11);
    ck_assert(stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    ck_assert_int_eq(stubdm__cring_read(&be, b, sizeof(b)), 11);
    ck_assert(memcmp(b, "early boot\n", 11) == 0);
}
END_TEST

START_TEST(random_both_ways)
{
    struct stubdm__cring fe, be;
    unsigned char src[5000], dst[5000];
    size_t sent = 0, got = 0, bsent = 0, bgot = 0;
    unsigned seed = 12345;

    reset();
    page.in_prod = page.in_cons = UINT32_MAX - 300; /* wrap mid-test */
    page.out_prod = page.out_cons = UINT32_MAX - 5000;
    ck_assert(stubdm__cring_attach(&fe, &page, STUBDM__CRING_FRONTEND));
    ck_assert(stubdm__cring_attach(&be, &page, STUBDM__CRING_BACKEND));
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (unsigned char)(i * 31 + 7);
    while (got < sizeof(src) || bgot < sizeof(src)) {
        size_t k = (size_t)(rand_r(&seed) % 900);
        long n;
        if (sent < sizeof(src)) {
            n = stubdm__cring_write(&fe, src + sent,
                                    k < sizeof(src) - sent
                                        ? k
                                        : sizeof(src) - sent);
            ck_assert_int_ge(n, 0);
            sent += (size_t)n;
        }
        if (bsent < sizeof(src)) {
            n = stubdm__cring_write(&be, src + bsent,
                                    k < sizeof(src) - bsent
                                        ? k
                                        : sizeof(src) - bsent);
            ck_assert_int_ge(n, 0);
            bsent += (size_t)n;
        }
        k = (size_t)(rand_r(&seed) % 900);
        n = stubdm__cring_read(&be, dst + got,
                               k < sizeof(dst) - got ? k : sizeof(dst) - got);
        ck_assert_int_ge(n, 0);
        got += (size_t)n;
        if (bgot < sizeof(src)) {
            unsigned char tmp[900];
            n = stubdm__cring_read(&fe, tmp, k);
            ck_assert_int_ge(n, 0);
            ck_assert_mem_eq(tmp, src + bgot, (size_t)n);
            bgot += (size_t)n;
        }
    }
    ck_assert_mem_eq(src, dst, sizeof(src));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("console_ring");
    TCase *tc = tcase_create("ring");

    tcase_add_test(tc, used_basic);
    tcase_add_test(tc, segs_split);
    tcase_add_test(tc, frontend_to_backend_wraps);
    tcase_add_test(tc, full_and_empty);
    tcase_add_test(tc, peek_max_and_partial_consume);
    tcase_add_test(tc, hostile_indexes);
    tcase_add_test(tc, attach_picks_up_existing_data);
    tcase_add_test(tc, violation_snapshot_is_what_was_checked);
    tcase_add_test(tc, random_both_ways);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
