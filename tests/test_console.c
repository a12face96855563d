/*
 * The console backend (lib/console/console.c) on the simulated host: the test
 * plays the toolstack (dom0: writes the contract, serves consoles through
 * the library) and the stubdomain (tests/support/simcons.c: the console
 * frontends, writing xenstore as domain 5).
 */
#include "console/ring.h"
#include "core/base.h"
#include "mockxs.h"
#include "simcons.h"
#include "xsfix.h"
#include "run.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xenstore.h>

#define GUEST 4
#define STUB 5
#define VM "/vm/00000000-0000-0000-0000-000000000004"

static struct mockxs mock;
static struct xs_handle *xs0, *xs5;
static stubdm_ctx *ctx;
static char simdir[256];

/* Cheap check for hot loops: Check records every ck_assert, which makes
 * millions of them slow (and huge under CK_FORK); this only calls into
 * Check on failure. */
#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond))                                                          \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #cond);             \
    } while (0)

/* The contract with the library as console backend, restoring, one
 * serial on a pty. */
static void write_contract(void)
{
    static const char *const args[] = {"-xen-domid", "4"};
    stubdm_contract *c;

    ck_assert_int_eq(stubdm_contract_new(&c), 0);
    ck_assert_int_eq(stubdm_contract_set_domains(c, GUEST, STUB), 0);
    ck_assert_int_eq(stubdm_contract_set_vm_path(c, VM), 0);
    ck_assert_int_eq(stubdm_contract_set_args(c, args, 2), 0);
    ck_assert_int_eq(stubdm_contract_set_console_backend(
                         c, STUBDM_CONSOLE_BACKEND_LIBSTUBDM),
                     0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 0, "file:log"), 0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 1, "file:save"), 0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 2, "pipe:rest"), 0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 3, "pty"), 0);
    ck_assert_int_eq(stubdm_contract_write(ctx, c), 0);
    stubdm_contract_free(c);
}

static void setup(void)
{
    static const unsigned doms[] = {GUEST, STUB};
    struct mockxs_opts o = {.domids = doms, .n_domids = 2};

    ck_assert_int_eq(mockxs_start(&mock, &o), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    unsetenv("STUBDM_SIM_DIR");
    snprintf(simdir, sizeof(simdir), "%s", mock.dir);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    xs0 = mockxs_open_as(&mock, 0);
    xs5 = mockxs_open_as(&mock, STUB);
    ck_assert_ptr_nonnull(xs0);
    ck_assert_ptr_nonnull(xs5);
    ck_assert(xs_introduce_domain(xs0, STUB, 1, 1));
    xsfix_guest(xs0, GUEST, STUB, VM);
    write_contract();
}

static void teardown(void)
{
    stubdm_ctx_free(ctx);
    xs_close(xs5);
    xs_close(xs0);
    ck_assert_int_eq(mockxs_stop(&mock), 0);
}

static void run(int ms)
{
    int64_t end = stubdm_now_ms() + ms;
    do
        CHECK(stubdm_ctx_run_once(ctx, 5) == 0);
    while (stubdm_now_ms() < end);
}

static stubdm_console *serve(unsigned n, stubdm_console_opts *o,
                             struct ts_result *r)
{
    stubdm_console *c = NULL;

    ck_assert_int_eq(stubdm_console_serve(ctx, STUB, n, o, ts_on_done, r, &c),
                     0);
    ck_assert_ptr_nonnull(c);
    stubdm_console_opts_free(o);
    return c;
}

static stubdm_console_opts *opts_new(void)
{
    stubdm_console_opts *o;
    ck_assert_int_eq(stubdm_console_opts_new(&o), 0);
    ck_assert_int_eq(stubdm_console_opts_set_transport(
                         o, STUBDM_CONSOLE_TRANSPORT_SIMULATED),
                     0);
    return o;
}

static char *be_state(unsigned n)
{
    char path[96];
    unsigned len;
    snprintf(path, sizeof(path), "/local/domain/0/backend/console/%u/%u/state",
             STUB, n);
    return xs_read(xs0, XBT_NULL, path, &len);
}

static void assert_be_state(unsigned n, const char *want)
{
    char *v = be_state(n);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, want);
    free(v);
}

static struct simcons *frontend(unsigned n)
{
    struct simcons *sc;
    ck_assert_int_eq(simcons_open(&sc, simdir, STUB, n), 0);
    ck_assert_int_eq(simcons_publish(sc, n == 0 ? xs0 : xs5), 0);
    return sc;
}

static void wait_connected(stubdm_console *c)
{
    int64_t end = stubdm_now_ms() + 5000;
    while (stubdm_console_state(c) != 4 && stubdm_now_ms() < end)
        CHECK(stubdm_ctx_run_once(ctx, 10) == 0);
    ck_assert_int_eq(stubdm_console_state(c), 4);
}

/* A reproducible binary stream: every byte value, in a scrambled order. */
static unsigned char stream_byte(uint64_t i, unsigned salt)
{
    uint64_t x = (i + salt) * UINT64_C(0x9E3779B97F4A7C15);
    return (unsigned char)((x >> 56) ^ (i & 0xff));
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return (size_t)-1;
    return (size_t)st.st_size;
}

/* ---- streams ----------------------------------------------------------- */

#define STREAM_BYTES ((size_t)6 << 20)

START_TEST(save_stream_byte_exact)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    unsigned char chunk[4096], got[65536];
    uint64_t h_sent = 0xcbf29ce484222325u, h_got = 0xcbf29ce484222325u;
    size_t sent = 0, recvd = 0;
    unsigned seen[256] = {0};
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    sc = frontend(1);
    wait_connected(c);
    while (recvd < STREAM_BYTES) {
        if (sent < STREAM_BYTES) {
            size_t k = STREAM_BYTES - sent < sizeof(chunk)
                           ? STREAM_BYTES - sent
                           : sizeof(chunk);
            for (size_t i = 0; i < k; i++)
                chunk[i] = stream_byte(sent + i, 1);
            long n = simcons_write(sc, chunk, k);
            CHECK(n >= 0);
            h_sent = fnv(h_sent, chunk, (size_t)n);
            sent += (size_t)n;
        }
        CHECK(stubdm_ctx_run_once(ctx, sent < STREAM_BYTES ? 0 : 5) == 0);
        ssize_t g = read(p[0], got, sizeof(got));
        if (g > 0) {
            for (ssize_t i = 0; i < g; i++) {
                CHECK(got[i] == stream_byte(recvd + (size_t)i, 1));
                seen[got[i]]++;
            }
            h_got = fnv(h_got, got, (size_t)g);
            recvd += (size_t)g;
        }
        CHECK(r.calls == 0);
    }
    ck_assert_uint_eq(h_sent, h_got);
    for (int i = 0; i < 256; i++)
        ck_assert_uint_gt(seen[i], 0);
    ck_assert_uint_eq(ts_console_stats(c).bytes_out, STREAM_BYTES);
    ck_assert_uint_eq(ts_console_stats(c).bytes_dropped, 0);
    stubdm_console_free(c);
    assert_be_state(1, "6");
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(restore_stream_byte_exact_and_eof)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    unsigned char chunk[8192], got[2048];
    uint64_t h_sent = 0xcbf29ce484222325u, h_got = 0xcbf29ce484222325u;
    size_t sent = 0, recvd = 0;
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_restore_fd(o, p[0]), 0);
    c = serve(2, o, &r);
    sc = frontend(2);
    wait_connected(c);
    while (recvd < STREAM_BYTES) {
        if (sent < STREAM_BYTES) {
            size_t k = STREAM_BYTES - sent < sizeof(chunk)
                           ? STREAM_BYTES - sent
                           : sizeof(chunk);
            for (size_t i = 0; i < k; i++)
                chunk[i] = stream_byte(sent + i, 2);
            ssize_t n = write(p[1], chunk, k);
            if (n > 0) {
                h_sent = fnv(h_sent, chunk, (size_t)n);
                sent += (size_t)n;
                if (sent == STREAM_BYTES) {
                    close(p[1]); /* EOF */
                    p[1] = -1;
                }
            }
        }
        CHECK(stubdm_ctx_run_once(ctx, 0) == 0);
        long g = simcons_read(sc, got, sizeof(got));
        CHECK(g >= 0);
        for (long i = 0; i < g; i++)
            CHECK(got[i] == stream_byte(recvd + (size_t)i, 2));
        h_got = fnv(h_got, got, (size_t)g);
        recvd += (size_t)g;
    }
    ck_assert_uint_eq(h_sent, h_got);
    /* EOF and everything read by the frontend: the restore is complete. */
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_uint_eq(ts_console_stats(c).bytes_in, STREAM_BYTES);
    assert_be_state(2, "6");
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
}
END_TEST

/* A Linux frontend's /dev/hvc2 is a cooked tty until its reader made it
 * raw: the restore stream waits in the caller's fd until the frontend
 * writes input-ready = 1. */
START_TEST(restore_waits_for_input_ready)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    const char *fe = "/local/domain/5/device/console/2";
    char path[96], got[16];
    int p[2];
    struct simcons *sc;
    stubdm_console *c;
    long n = 0;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_restore_fd(o, p[0]), 0);
    ck_assert_int_eq(write(p[1], "\x03stream\r", 8), 8);
    c = serve(2, o, &r);
    ck_assert_int_eq(simcons_open(&sc, simdir, STUB, 2), 0);
    snprintf(path, sizeof(path), "%s/ring-ref", fe);
    ck_assert(xs_write(xs5, XBT_NULL, path, "8", 1));
    snprintf(path, sizeof(path), "%s/port", fe);
    ck_assert(xs_write(xs5, XBT_NULL, path, "3", 1));
    ck_assert_int_eq(simcons_set_state(sc, xs5, 3), 0);
    wait_connected(c);
    run(100);
    ck_assert_int_eq(simcons_read(sc, got, sizeof(got)), 0);
    ck_assert_uint_eq(ts_console_stats(c).bytes_in, 0);
    /* Not "1": still nothing. */
    snprintf(path, sizeof(path), "%s/input-ready", fe);
    ck_assert(xs_write(xs5, XBT_NULL, path, "yes", 3));
    run(100);
    ck_assert_uint_eq(ts_console_stats(c).bytes_in, 0);
    ck_assert(xs_write(xs5, XBT_NULL, path, "1", 1));
    for (int i = 0; i < 100 && n < 8; i++) {
        run(10);
        long g = simcons_read(sc, got + n, sizeof(got) - (size_t)n);
        ck_assert_int_ge(g, 0);
        n += g;
    }
    ck_assert_int_eq(n, 8);
    ck_assert(!memcmp(got, "\x03stream\r", 8));
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ---- bounds ------------------------------------------------------------ */

START_TEST(stalled_save_reader_bounded)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    unsigned char chunk[4096];
    struct simcons *sc;
    stubdm_console *c;
    size_t base, peak = 0, sent = 0;

    memset(chunk, 0xa5, sizeof(chunk));
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0); /* nobody reads p[0] */
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    sc = frontend(1);
    wait_connected(c);
    run(20);
    base = heap_used();
    int64_t end = stubdm_now_ms() + 1500;
    while (stubdm_now_ms() < end) {
        long n = simcons_write(sc, chunk, sizeof(chunk));
        CHECK(n >= 0);
        sent += (size_t)n;
        CHECK(stubdm_ctx_run_once(ctx, 1) == 0);
        size_t h = heap_used();
        if (h > peak)
            peak = h;
    }
    /* The pipe (64 KiB) and the ring (2 KiB) are full; the frontend is
     * blocked; nothing piled up in dom0. */
    ck_assert_uint_le(sent, (size_t)fcntl(p[1], F_GETPIPE_SZ) + 2048);
    ck_assert_int_eq(simcons_write(sc, chunk, 1), 0);
    ck_assert_int_eq(r.calls, 0);
    fprintf(stderr, "stalled reader: %zu bytes accepted, heap growth %zd\n",
            sent, (ssize_t)(peak - base));
    ck_assert_int_lt((ssize_t)(peak - base), 256 * 1024);
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(log_flood_capped_with_drops)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    char path[300];
    unsigned char chunk[4096];
    struct simcons *sc;
    stubdm_console *c;
    size_t base, peak = 0, sent = 0, total = (size_t)4 << 20;

    snprintf(path, sizeof(path), "%s/qemu-dm.log", simdir);
    memset(chunk, 'L', sizeof(chunk));
    ck_assert_int_eq(stubdm_console_opts_set_log(o, path, 65536, 0), 0);
    c = serve(0, o, &r);
    sc = frontend(0);
    wait_connected(c);
    base = heap_used();
    while (ts_console_stats(c).bytes_out < total) {
        if (sent < total) {
            long n = simcons_write(sc, chunk,
                                   sizeof(chunk) < total - sent
                                       ? sizeof(chunk)
                                       : total - sent);
            CHECK(n >= 0);
            sent += (size_t)n;
        }
        CHECK(stubdm_ctx_run_once(ctx, 0) == 0);
        size_t h = heap_used();
        if (h > peak)
            peak = h;
    }
    ck_assert_uint_eq(file_size(path), 65536);
    ck_assert_uint_eq(ts_console_stats(c).bytes_dropped, total - 65536);
    ck_assert_uint_eq(ts_console_stats(c).rotations, 0);
    fprintf(stderr, "log flood: %zu bytes, heap growth %zd\n", total,
            (ssize_t)(peak - base));
    ck_assert_int_lt((ssize_t)(peak - base), 256 * 1024);
    ck_assert_int_eq(r.calls, 0);
    stubdm_console_free(c);
    simcons_close(sc);
}
END_TEST

START_TEST(log_rotation_files_and_sizes)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    char path[300], p1[310], p2[310], p3[310];
    unsigned char chunk[1000];
    struct simcons *sc;
    stubdm_console *c;
    size_t sent = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/qemu-dm.log", simdir);
    snprintf(p1, sizeof(p1), "%s.1", path);
    snprintf(p2, sizeof(p2), "%s.2", path);
    snprintf(p3, sizeof(p3), "%s.3", path);
    /* An existing log is appended to and counts towards the cap. */
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("0123456789", f);
    fclose(f);
    ck_assert_int_eq(stubdm_console_opts_set_log(o, path, 10000, 2), 0);
    /* Back-to-back rotations: no minimum interval here (see
     * hostile_out_prod_rate_limited for the limits). */
    ck_assert_int_eq(stubdm_ctx_set_console_limits(ctx, 0, 0), 0);
    c = serve(0, o, &r);
    sc = frontend(0);
    wait_connected(c);
    while (sent < 45000) {
        for (size_t i = 0; i < sizeof(chunk); i++)
            chunk[i] = (unsigned char)('a' + (sent + i) / 10000);
        long n = simcons_write(sc, chunk,
                               sizeof(chunk) < 45000 - sent ? sizeof(chunk)
                                                            : 45000 - sent);
        CHECK(n >= 0);
        sent += (size_t)n;
        CHECK(stubdm_ctx_run_once(ctx, 0) == 0);
    }
    while (ts_console_stats(c).bytes_out < 45000)
        CHECK(stubdm_ctx_run_once(ctx, 10) == 0);
    /* 10 + 45000 bytes: four rotations at 10000, 5010 in the live file. */
    ck_assert_uint_eq(file_size(path), 5010);
    ck_assert_uint_eq(file_size(p1), 10000);
    ck_assert_uint_eq(file_size(p2), 10000);
    ck_assert_uint_eq(file_size(p3), (size_t)-1);
    ck_assert_uint_eq(ts_console_stats(c).rotations, 4);
    ck_assert_uint_eq(ts_console_stats(c).bytes_dropped, 0);
    stubdm_console_free(c);
    simcons_close(sc);
}
END_TEST

/* ---- output budget and rotation interval ------------------------------ */

/* A frontend that only advances out_prod (writes no data) by the ring's
 * size whenever the backend caught up, for ms, while the loop runs. */
static void spin_out_prod(struct simcons *sc, int ms)
{
    struct xencons_interface *intf = simcons_page(sc);
    int64_t end = stubdm_now_ms() + ms;

    while (stubdm_now_ms() < end) {
        if (intf->out_cons == intf->out_prod) {
            intf->out_prod += (XENCONS_RING_IDX)sizeof(intf->out);
            simcons_notify(sc);
        }
        CHECK(stubdm_ctx_run_once(ctx, 0) == 0);
    }
}

/* The frontend made dom0 write 502 MB and rotate 479 times in 2 s.
 * With a budget of 64 KiB/s and a 1 s rotation interval: at most the
 * budget (plus its first second) is written, at most one rotation per
 * interval, the rest dropped and counted. */
START_TEST(hostile_out_prod_rate_limited)
{
    const uint64_t rate = 64 * 1024;
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    char path[300];
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(stubdm_ctx_set_console_limits(NULL, 1, 1), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_ctx_set_console_limits(ctx, rate, 1000), 0);
    snprintf(path, sizeof(path), "%s/qemu-dm.log", simdir);
    ck_assert_int_eq(stubdm_console_opts_set_log(o, path, 16384, 10), 0);
    c = serve(0, o, &r);
    sc = frontend(0);
    wait_connected(c);
    int64_t t0 = stubdm_now_ms();
    spin_out_prod(sc, 2200);
    double secs = (double)(stubdm_now_ms() - t0) / 1000.0;
    uint64_t out = ts_console_stats(c).bytes_out;
    uint64_t dropped = ts_console_stats(c).bytes_dropped;
    uint64_t written = out - dropped;
    fprintf(stderr,
            "out_prod spin: %.1f s, %" PRIu64 " bytes taken, %" PRIu64
            " written, %" PRIu64 " rotations\n",
            secs, out, written, ts_console_stats(c).rotations);
    ck_assert_uint_gt(out, 4 * rate); /* the ring was kept moving */
    ck_assert_uint_le(written, (uint64_t)((secs + 1.0) * (double)rate));
    ck_assert_uint_le(ts_console_stats(c).rotations, (uint64_t)secs + 1);
    ck_assert_uint_ge(ts_console_stats(c).rotations, 1);
    ck_assert_int_eq(r.calls, 0);
    stubdm_console_free(c);
    simcons_close(sc);
}
END_TEST

/* Stubdomain 5 rewrites a node of its own that the library watches (its
 * console 3's frontend directory) n times. */
static void spin_watched_node(int n)
{
    static unsigned long i;
    char v[32];

    for (int k = 0; k < n; k++) {
        int len = snprintf(v, sizeof(v), "%lu", i++);
        CHECK(xs_write(xs5, XBT_NULL, "device/console/3/junk", v,
                       (unsigned)len));
    }
}

/* Two stubdomains on one ctx: 5 floods its log console (out_prod spun) and
 * keeps rewriting a node the library watches (4000 events queued, 20 more
 * per dispatch); 7's log line still reaches its file, and 7's wait for
 * "running" still ends, each within 250 ms. */
START_TEST(hostile_stubdomain_does_not_starve_another)
{
    struct ts_result r5 = {0}, r7 = {0}, rw = {0}, rs = {0};
    stubdm_console_opts *o5 = opts_new(), *o7 = opts_new(), *o3 = opts_new();
    char p5[300], p7[300];
    struct simcons *sc5, *sc7;
    stubdm_console *c5, *c7 = NULL, *c3;
    static const char line[] = "stubdomain 7: device model starting\n";

    snprintf(p5, sizeof(p5), "%s/qemu-dm-5.log", simdir);
    snprintf(p7, sizeof(p7), "%s/qemu-dm-7.log", simdir);
    ck_assert(xs_introduce_domain(xs0, 7, 1, 1));
    ck_assert(xs_mkdir(xs0, XBT_NULL, "/local/domain/7/device-model/4"));
    ck_assert_int_eq(stubdm_console_opts_set_log(o5, p5, 65536, 3), 0);
    ck_assert_int_eq(stubdm_console_opts_set_log(o7, p7, 65536, 3), 0);
    ck_assert_int_eq(stubdm_console_opts_set_serial_pty(o3), 0);
    c5 = serve(0, o5, &r5);
    c3 = serve(3, o3, &rs); /* its frontend directory is watched */
    ck_assert_int_eq(stubdm_console_serve(ctx, 7, 0, o7, ts_on_done, &r7, &c7),
                     0);
    stubdm_console_opts_free(o7);
    sc5 = frontend(0);
    ck_assert_int_eq(simcons_open(&sc7, simdir, 7, 0), 0);
    ck_assert_int_eq(simcons_publish(sc7, xs0), 0);
    wait_connected(c5);
    wait_connected(c7);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 7, GUEST, 20000, ts_on_done,
                                            &rw, NULL),
                     0);

    spin_watched_node(2000); /* a backlog of watch events */
    spin_out_prod(sc5, 300);
    spin_watched_node(2000);
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(simcons_write(sc7, line, sizeof(line) - 1),
                     (long)sizeof(line) - 1);
    ck_assert(xs_write(xs0, XBT_NULL, "/local/domain/7/device-model/4/state",
                       "running", 7));
    int64_t logged = -1;
    struct xencons_interface *intf = simcons_page(sc5);
    while ((logged < 0 || !rw.calls) && stubdm_now_ms() - t0 < 2000) {
        spin_watched_node(20);
        if (intf->out_cons == intf->out_prod) {
            intf->out_prod += (XENCONS_RING_IDX)sizeof(intf->out);
            simcons_notify(sc5);
        }
        CHECK(stubdm_ctx_run_once(ctx, 0) == 0);
        if (logged < 0 && file_size(p7) == sizeof(line) - 1)
            logged = stubdm_now_ms();
    }
    fprintf(stderr,
            "hostile neighbour: 7's log line after %lld ms, its "
            "running after %lld ms\n",
            (long long)(logged - t0), (long long)(rw.at_ms - t0));
    ck_assert_int_ge(logged, 0);
    ck_assert_int_lt(logged - t0, 250 * ts_time_scale());
    ck_assert_int_eq(rw.calls, 1);
    ck_assert_int_eq(rw.rc, 0);
    ck_assert_int_lt(rw.at_ms - t0, 250 * ts_time_scale());
    ck_assert_uint_gt(ts_console_stats(c5).bytes_dropped, 0);
    ck_assert_int_eq(r5.calls + r7.calls + rs.calls, 0);
    stubdm_console_free(c3);
    stubdm_console_free(c5);
    stubdm_console_free(c7);
    simcons_close(sc5);
    simcons_close(sc7);
}
END_TEST

/* ---- hostile frontends ------------------------------------------------- */

START_TEST(hostile_prod_far_beyond_cons)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    sc = frontend(1);
    wait_connected(c);
    ck_assert_int_eq(simcons_write(sc, "ok", 2), 2);
    run(20);
    simcons_page(sc)->out_prod += 1u << 30;
    simcons_notify(sc);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.msg, "out_prod"));
    ck_assert_int_eq(stubdm_console_result(c), STUBDM_EPROTO);
    ck_assert_uint_eq(ts_console_stats(c).bytes_out, 2);
    assert_be_state(1, "6");
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(hostile_cons_beyond_prod)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_restore_fd(o, p[0]), 0);
    c = serve(2, o, &r);
    sc = frontend(2);
    wait_connected(c);
    simcons_page(sc)->in_cons = simcons_page(sc)->in_prod + 1;
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    simcons_notify(sc);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.msg, "in_cons"));
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* A frontend that truncates its page after the backend mapped it: with a
 * ring file it could, and the backend's next look at the page was a SIGBUS
 * that killed dom0.  Such a file is refused at connection now, and the
 * page the protocol asks for (a sealed memfd) cannot shrink. */
START_TEST(frontend_truncating_its_page)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    char ring[300], buf[16] = "";
    struct simcons *sc;
    stubdm_console *c;
    int p[2], fd;
    int64_t end;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    /* The frontend offers a plain file it can truncate (as before). */
    ck_assert_int_eq(simcons_open(&sc, simdir, STUB, 1), 0);
    snprintf(ring, sizeof(ring), "%s/console/%u.1.ring", simdir, STUB);
    ck_assert_int_eq(unlink(ring), 0);
    fd = open(ring, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 4096), 0);
    ck_assert_int_eq(simcons_publish(sc, xs5), 0);
    end = stubdm_now_ms() + 5000;
    while (!r.calls && stubdm_console_state(c) != 4 && stubdm_now_ms() < end)
        CHECK(stubdm_ctx_run_once(ctx, 10) == 0);
    /* Mapped or not, the frontend shrinks it and says so. */
    ck_assert_int_eq(ftruncate(fd, 0), 0);
    close(fd);
    simcons_notify(sc);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPROTO);
    ck_assert_msg(strstr(r.msg, "sealed against shrinking"), "%s", r.msg);
    stubdm_console_free(c);
    simcons_close(sc);

    /* The protocol's page: the frontend cannot shrink it, the console
     * goes on. */
    memset(&r, 0, sizeof(r));
    o = opts_new();
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    sc = frontend(1);
    wait_connected(c);
    fd = open(ring, O_RDWR | O_CLOEXEC); /* through the /proc link */
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 0), -1);
    ck_assert_int_eq(errno, EPERM);
    close(fd);
    ck_assert_int_eq(simcons_write(sc, "alive", 5), 5);
    end = stubdm_now_ms() + 5000;
    while (read(p[0], buf, sizeof(buf) - 1) <= 0 && stubdm_now_ms() < end)
        CHECK(stubdm_ctx_run_once(ctx, 10) == 0);
    ck_assert_str_eq(buf, "alive");
    ck_assert_int_eq(r.calls, 0);
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(hostile_indexes_at_connection)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    ck_assert_int_eq(simcons_open(&sc, simdir, STUB, 1), 0);
    simcons_page(sc)->out_prod = 0xdeadbeef;
    ck_assert_int_eq(simcons_publish(sc, xs5), 0);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPROTO);
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(hostile_xenstore_values)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    stubdm_console *c;
    const char *fe = "/local/domain/5/device/console/1";
    char path[96];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    snprintf(path, sizeof(path), "%s/ring-ref", fe);
    ck_assert(xs_write(xs5, XBT_NULL, path, "12abc", 5));
    snprintf(path, sizeof(path), "%s/port", fe);
    ck_assert(xs_write(xs5, XBT_NULL, path, "3", 1));
    snprintf(path, sizeof(path), "%s/state", fe);
    ck_assert(xs_write(xs5, XBT_NULL, path, "3", 1));
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EPROTO);
    stubdm_console_free(c);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(domain_released_gone)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    sc = frontend(1);
    wait_connected(c);
    ck_assert(xs_release_domain(xs0, STUB));
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, STUBDM_EDOMAIN_GONE);
    ck_assert_ptr_nonnull(strstr(r.msg, "stubdomain 5"));
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ---- the xenbus state machine ------------------------------------------ */

START_TEST(xenbus_states)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc;
    stubdm_console *c;
    char buf[16];

    assert_be_state(1, "1"); /* the contract's Initialising */
    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    assert_be_state(1, "2"); /* InitWait at once */
    ck_assert_int_eq(stubdm_console_state(c), 2);
    /* Files first, nodes later; then nodes but state still 1: waits. */
    ck_assert_int_eq(simcons_open(&sc, simdir, STUB, 1), 0);
    run(50);
    assert_be_state(1, "2");
    ck_assert(xs_write(xs5, XBT_NULL,
                       "/local/domain/5/device/console/1/ring-ref", "8", 1));
    ck_assert(xs_write(xs5, XBT_NULL, "/local/domain/5/device/console/1/port",
                       "3", 1));
    run(50);
    assert_be_state(1, "2");
    ck_assert_int_eq(simcons_set_state(sc, xs5, 3), 0); /* Initialised */
    wait_connected(c);
    assert_be_state(1, "4");
    ck_assert_int_eq(simcons_set_state(sc, xs5, 4), 0);
    ck_assert_int_eq(simcons_write(sc, "bye", 3), 3);
    run(30);
    ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 3);
    /* The frontend closes: the backend answers Closing and stays there
     * (what Linux, shutting down, waits to read), served, until the
     * frontend is Closed; then Closed, completion with 0. */
    ck_assert_int_eq(simcons_set_state(sc, xs5, 5), 0);
    run(100);
    assert_be_state(1, "5");
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(simcons_write(sc, "!", 1), 1);
    run(30);
    ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 1);
    ck_assert_int_eq(simcons_set_state(sc, xs5, 6), 0);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, 0);
    assert_be_state(1, "6");
    ck_assert_int_eq(stubdm_console_state(c), 6);
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* With handover, freeing a connected console lets it go: InitWait, not
 * Closing/Closed (the frontend stays connected), and a second backend
 * serves it again; without it, free closes. */
START_TEST(free_with_handover_lets_go)
{
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc = frontend(1);
    stubdm_console *c;
    char buf[16];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    ck_assert_int_eq(stubdm_console_opts_set_handover(o, 1), 0);
    ck_assert_int_eq(stubdm_console_opts_set_handover(NULL, 1), STUBDM_EINVAL);
    c = serve(1, o, NULL);
    wait_connected(c);
    stubdm_console_free(c);
    assert_be_state(1, "2");
    o = opts_new();
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, NULL);
    wait_connected(c);
    ck_assert_int_eq(simcons_write(sc, "again", 5), 5);
    run(30);
    ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 5);
    stubdm_console_free(c);
    assert_be_state(1, "6");
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(published_before_files_retries)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    ck_assert(xs_write(xs5, XBT_NULL,
                       "/local/domain/5/device/console/1/ring-ref", "8", 1));
    ck_assert(xs_write(xs5, XBT_NULL, "/local/domain/5/device/console/1/port",
                       "3", 1));
    ck_assert(xs_write(xs5, XBT_NULL, "/local/domain/5/device/console/1/state",
                       "3", 1));
    run(60);
    assert_be_state(1, "2");
    ck_assert_int_eq(simcons_open(&sc, simdir, STUB, 1), 0);
    wait_connected(c);
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ---- serial on a pty --------------------------------------------------- */

START_TEST(pty_serial_both_ways)
{
    struct ts_result r = {0};
    stubdm_console_opts *o = opts_new();
    struct simcons *sc;
    stubdm_console *c;
    const char *tty;
    char *fe_tty;
    unsigned len;
    unsigned char out[256], buf[512];
    size_t got = 0;
    int t;

    ck_assert_int_eq(stubdm_console_opts_set_serial_pty(o), 0);
    c = serve(3, o, &r);
    tty = stubdm_console_tty(c);
    ck_assert_ptr_nonnull(tty);
    fe_tty = xs_read(xs0, XBT_NULL, "/local/domain/5/device/console/3/tty",
                     &len);
    ck_assert_ptr_nonnull(fe_tty);
    ck_assert_str_eq(fe_tty, tty);
    free(fe_tty);
    t = open(tty, O_RDWR | O_NOCTTY | O_NONBLOCK);
    ck_assert_int_ge(t, 0);
    sc = frontend(3);
    wait_connected(c);
    /* frontend -> pty: every byte value (raw mode: no mangling) */
    for (int i = 0; i < 256; i++)
        out[i] = (unsigned char)i;
    ck_assert_int_eq(simcons_write(sc, out, 256), 256);
    for (int k = 0; k < 200 && got < 256; k++) {
        CHECK(stubdm_ctx_run_once(ctx, 5) == 0);
        ssize_t n = read(t, buf + got, sizeof(buf) - got);
        if (n > 0)
            got += (size_t)n;
    }
    ck_assert_uint_eq(got, 256);
    ck_assert_mem_eq(buf, out, 256);
    /* pty -> frontend */
    ck_assert_int_eq(write(t, "\r\n\x03\x00\xffhi", 7), 7);
    got = 0;
    for (int k = 0; k < 200 && got < 7; k++) {
        CHECK(stubdm_ctx_run_once(ctx, 5) == 0);
        long n = simcons_read(sc, buf + got, sizeof(buf) - got);
        ck_assert_int_ge(n, 0);
        got += (size_t)n;
    }
    ck_assert_uint_eq(got, 7);
    ck_assert_mem_eq(buf, "\r\n\x03\x00\xffhi", 7);
    ck_assert_uint_eq(ts_console_stats(c).bytes_in, 7);
    close(t);
    stubdm_console_free(c);
    simcons_close(sc);
}
END_TEST

/* Nobody has the pty open: the output waits (pty, then ring) for the
 * first reader, none of it dropped; beyond the pty's buffer the ring is
 * not consumed (backpressure). */
START_TEST(pty_output_kept_for_the_first_reader)
{
    stubdm_console_opts *o = opts_new();
    struct simcons *sc = frontend(3);
    stubdm_console *c;
    char out[1000], buf[2048];
    size_t got = 0;
    long put = 0;
    int t;

    ck_assert_int_eq(stubdm_console_opts_set_serial_pty(o), 0);
    c = serve(3, o, NULL);
    wait_connected(c);
    memset(out, 'x', sizeof(out));
    /* fill the pty and the ring: 256 KiB offered, far beyond both */
    for (int k = 0; k < 262 && put < 262144; k++) {
        long n = simcons_write(sc, out, sizeof(out));
        ck_assert_int_ge(n, 0);
        put += n;
        run(2);
    }
    run(50);
    ck_assert_int_lt(put, 262144); /* the ring stopped taking */
    ck_assert_uint_eq(ts_console_stats(c).bytes_dropped, 0);
    ck_assert_uint_lt(ts_console_stats(c).bytes_out, (uint64_t)put);
    t = open(stubdm_console_tty(c), O_RDWR | O_NOCTTY | O_NONBLOCK);
    ck_assert_int_ge(t, 0);
    for (int k = 0; k < 2000 && got < (size_t)put; k++) {
        CHECK(stubdm_ctx_run_once(ctx, 2) == 0);
        ssize_t n = read(t, buf, sizeof(buf));
        if (n > 0)
            got += (size_t)n;
    }
    fprintf(stderr,
            "pty without reader: %" PRIu64 " bytes consumed before "
            "backpressure, %zu of %ld read by the first reader\n",
            ts_console_stats(c).bytes_out, got, put);
    ck_assert_uint_eq(got, (size_t)put);
    close(t);
    stubdm_console_free(c);
    simcons_close(sc);
}
END_TEST

static char *fe_tty_value(void)
{
    unsigned len;
    return xs_read(xs0, XBT_NULL, "/local/domain/5/device/console/3/tty",
                   &len);
}

/* A freed pty console (handed over or closed) or one that ended leaves no
 * path in its frontend's tty: the pts number may go to another pty. */
START_TEST(pty_tty_emptied_when_the_pty_goes)
{
    struct ts_result r = {0};
    stubdm_console_opts *o;
    struct simcons *sc = frontend(3);
    stubdm_console *c;
    char *v;

    for (int handover = 0; handover < 2; handover++) {
        o = opts_new();
        ck_assert_int_eq(stubdm_console_opts_set_serial_pty(o), 0);
        ck_assert_int_eq(stubdm_console_opts_set_handover(o, handover), 0);
        c = serve(3, o, NULL);
        wait_connected(c);
        v = fe_tty_value();
        ck_assert_str_eq(v, stubdm_console_tty(c));
        free(v);
        stubdm_console_free(c);
        v = fe_tty_value();
        ck_assert_str_eq(v, "");
        free(v);
    }
    /* ended by the frontend closing */
    o = opts_new();
    ck_assert_int_eq(stubdm_console_opts_set_serial_pty(o), 0);
    c = serve(3, o, &r);
    wait_connected(c);
    ck_assert_int_eq(simcons_set_state(sc, xs5, 6), 0);
    ts_run_until_done(ctx, &r, 5000);
    ck_assert_int_eq(r.rc, 0);
    v = fe_tty_value();
    ck_assert_str_eq(v, "");
    free(v);
    stubdm_console_free(c);
    simcons_close(sc);
}
END_TEST

/* ---- flush, API misuse, lifetimes -------------------------------------- */

START_TEST(flush_waits_for_the_ring)
{
    struct ts_result r = {0}, fr = {0};
    stubdm_console_opts *o = opts_new();
    int p[2];
    struct simcons *sc;
    stubdm_console *c;
    char buf[4096];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    sc = frontend(1);
    wait_connected(c);
    memset(buf, 7, sizeof(buf));
    ck_assert_int_eq(simcons_write(sc, buf, 1500), 1500);
    ck_assert_int_eq(stubdm_console_flush(c, 5000, ts_on_done, &fr, NULL), 0);
    ck_assert_int_eq(fr.calls, 0);
    ts_run_until_done(ctx, &fr, 5000);
    ck_assert_int_eq(fr.rc, 0);
    ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 1500);
    /* A flush pending when the console is closed: cancelled. */
    fr.calls = 0;
    stubdm_console_free(c);
    stubdm_console_free(NULL);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(invalid_arguments)
{
    stubdm_console_opts *o = opts_new();
    stubdm_console *c = NULL;
    struct ts_result r = {0};

    /* no role */
    ck_assert_int_eq(stubdm_console_serve(ctx, STUB, 1, o, ts_on_done, &r, &c),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, 1), 0);
    /* role does not fit the console number */
    ck_assert_int_eq(stubdm_console_serve(ctx, STUB, 0, o, ts_on_done, &r, &c),
                     STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "role"));
    ck_assert_int_eq(stubdm_console_serve(ctx, 0, 1, o, ts_on_done, &r, &c),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_console_serve(ctx, STUB, 19, o, ts_on_done, &r,
                                          &c),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_console_serve(ctx, STUB, 1, o, ts_on_done, &r,
                                          NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, -1), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_console_opts_set_log(o, "/x", 0, 100),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_console_opts_set_transport(o, 9), STUBDM_EINVAL);
    /* log file in a missing directory: refused at once */
    ck_assert_int_eq(stubdm_console_opts_set_log(o, "/nonexistent/dir/log", 0,
                                                 0),
                     0);
    ck_assert_int_eq(stubdm_console_serve(ctx, STUB, 0, o, ts_on_done, &r, &c),
                     STUBDM_ENOENT);
    ck_assert_ptr_null(c);
    stubdm_console_opts_free(o);
    run(10);
    ck_assert_int_eq(r.calls, 0);
}
END_TEST

static void close_in_callback(stubdm_op *op, int rc, void *user)
{
    stubdm_console **cp = user;
    (void)op;
    (void)rc;
    stubdm_console_free(*cp);
    *cp = NULL;
}

START_TEST(close_from_callback_and_ctx_free_with_open_console)
{
    stubdm_console_opts *o = opts_new();
    stubdm_console *c = NULL, *c2 = NULL;
    struct ts_result r2 = {0};
    int p[2];
    struct simcons *sc;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    ck_assert_int_eq(stubdm_console_serve(ctx, STUB, 1, o, close_in_callback,
                                          &c, &c),
                     0);
    stubdm_console_opts_free(o);
    sc = frontend(1);
    run(50);
    simcons_page(sc)->out_prod = 99999;
    simcons_notify(sc);
    for (int k = 0; k < 100 && c; k++)
        CHECK(stubdm_ctx_run_once(ctx, 10) == 0);
    ck_assert_ptr_null(c);
    simcons_close(sc);
    /* A console still served when the ctx goes: no callback, close after. */
    o = opts_new();
    ck_assert_int_eq(stubdm_console_opts_set_serial_pty(o), 0);
    c2 = serve(3, o, &r2);
    sc = frontend(3);
    wait_connected(c2);
    stubdm_ctx_free(ctx);
    ctx = NULL;
    ck_assert_int_eq(r2.calls, 0);
    stubdm_console_free(c2);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
}
END_TEST

START_TEST(default_sim_dir_from_xenstored_path)
{
    struct ts_result r = {0};
    stubdm_console_opts *o;
    int p[2];
    struct simcons *sc;
    stubdm_console *c;

    ck_assert_int_eq(stubdm_console_opts_new(&o), 0); /* AUTO, no sim dir */
    ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    ck_assert_int_eq(stubdm_console_opts_set_save_fd(o, p[1]), 0);
    c = serve(1, o, &r);
    sc = frontend(1);
    wait_connected(c);
    stubdm_console_free(c);
    simcons_close(sc);
    close(p[0]);
    close(p[1]);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("console");
    TCase *tc = tcase_create("console");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, save_stream_byte_exact);
    tcase_add_test(tc, hostile_out_prod_rate_limited);
    tcase_add_test(tc, hostile_stubdomain_does_not_starve_another);
    tcase_add_test(tc, restore_stream_byte_exact_and_eof);
    tcase_add_test(tc, restore_waits_for_input_ready);
    tcase_add_test(tc, stalled_save_reader_bounded);
    tcase_add_test(tc, log_flood_capped_with_drops);
    tcase_add_test(tc, log_rotation_files_and_sizes);
    tcase_add_test(tc, hostile_prod_far_beyond_cons);
    tcase_add_test(tc, hostile_cons_beyond_prod);
    tcase_add_test(tc, hostile_indexes_at_connection);
    tcase_add_test(tc, frontend_truncating_its_page);
    tcase_add_test(tc, hostile_xenstore_values);
    tcase_add_test(tc, domain_released_gone);
    tcase_add_test(tc, xenbus_states);
    tcase_add_test(tc, free_with_handover_lets_go);
    tcase_add_test(tc, published_before_files_retries);
    tcase_add_test(tc, pty_serial_both_ways);
    tcase_add_test(tc, pty_tty_emptied_when_the_pty_goes);
    tcase_add_test(tc, pty_output_kept_for_the_first_reader);
    tcase_add_test(tc, flush_waits_for_the_ring);
    tcase_add_test(tc, invalid_arguments);
    tcase_add_test(tc, close_from_callback_and_ctx_free_with_open_console);
    tcase_add_test(tc, default_sim_dir_from_xenstored_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
