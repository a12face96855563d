/*
 * Consoles served by the spawn, and save / restore of the device model's
 * state through them, on the simulated host with a real QEMU: the mock
 * xenstored plays xenstored and the hypervisor, stubdm-sim-stubdom is the
 * stubdomain and a console frontend (docs/consoles.md), the library is the
 * console backend.  No QEMU runs outside a simulated stubdomain.
 */
#include "core/base.h"
#include "xen/xs.h"
#include "mockxs.h"
#include "proccheck.h"
#include "run.h"
#include "spawnfix.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/io/console.h>
#include <xenstore.h>

#define GUEST 7

static struct spawnfix fx;

/* ---- helpers (as test_spawn.c) ------------------------------------------- */

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* A process's comm and parent pid from /proc/<pid>/stat. */
static bool proc_stat(long pid, char *comm, size_t commlen, long *ppid,
                      char *state)
{
    char p[64], buf[512], *l, *r;
    FILE *f;

    snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
    f = fopen(p, "r");
    if (!f)
        return false;
    if (!fgets(buf, sizeof(buf), f)) {
        fclose(f);
        return false;
    }
    fclose(f);
    l = strchr(buf, '(');
    r = strrchr(buf, ')');
    if (!l || !r)
        return false;
    snprintf(comm, commlen, "%.*s", (int)(r - l - 1), l + 1);
    if (sscanf(r + 2, "%c %ld", state, ppid) != 2)
        return false;
    return true;
}

/* Every QEMU on this machine runs inside a simulated stubdomain: its
 * parent is a stubdm-sim-stubdom (comm truncated to 15 characters).
 * Returns how many QEMUs were seen. */
static int assert_no_dom0_qemu(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d))) {
        long pid = strtol(e->d_name, NULL, 10), ppid = 0;
        char comm[64], pcomm[64], st;
        char cl[300];
        if (pid <= 0 || !proc_stat(pid, comm, sizeof(comm), &ppid, &st) ||
            strncmp(comm, "qemu", 4))
            continue;
        /* Device models: of this simulated host (its directory in the
         * argv), or any with Xen device-model options.  Other QEMUs on a
         * shared machine (a nested-Xen test VM) are not device models. */
        snprintf(cl, sizeof(cl), "/proc/%ld/cmdline", pid);
        if (!proc_file_mentions(cl, fx.mock.dir) &&
            !proc_file_mentions(cl, "-xen-domid"))
            continue;
        ck_assert(proc_stat(ppid, pcomm, sizeof(pcomm), &ppid, &st));
        if (strcmp(pcomm, "stubdm-sim-stub"))
            ck_abort_msg("QEMU %ld runs outside a stubdomain (parent %s)", pid,
                         pcomm);
        n++;
    }
    closedir(d);
    return n;
}

static struct {
    int warnings;
    char last[512];
} logged;

static void log_count(void *user, stubdm_log_level level, int os_errno,
                      const char *context, const char *msg)
{
    (void)user;
    (void)os_errno;
    (void)context;
    if (level >= STUBDM_LOG_WARN) {
        logged.warnings++;
        snprintf(logged.last, sizeof(logged.last), "%s", msg);
    }
    if (getenv("TEST_DM_STATE_VERBOSE"))
        spawnfix_log_stderr(NULL, level, os_errno, context, msg);
}

static void setup(void)
{
    struct spawnfix_opts o = {.log = log_count,
                              .log_level = getenv("TEST_DM_STATE_VERBOSE")
                                               ? STUBDM_LOG_DEBUG
                                               : STUBDM_LOG_WARN,
                              .baseline = true};

    memset(&logged, 0, sizeof(logged));
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

static stubdm_spawn_opts *config(const char *const *extra, size_t nextra,
                                 const char *const *sim_args, size_t nsim)
{
    stubdm_spawn_opts *c;
    const char *args[32];
    size_t n = 0;

    for (size_t i = 0; i < STUBDM_ARRAY_SIZE(qemu_args); i++)
        args[n++] = qemu_args[i];
    for (size_t i = 0; i < nextra; i++)
        args[n++] = extra[i];
    c = spawnfix_config(&fx, GUEST, args, n, sim_args, nsim, 20000);
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 1, 0), 0);
    return c;
}

/* A --no-qemu spawn whose console 1 (save) is connected (state 4). */
static stubdm_console *spawn_save_console_connected(stubdm_stubdom **s)
{
    static const char *const noqemu[] = {"--no-qemu"};
    stubdm_spawn_opts *c = config(NULL, 0, noqemu, 1);
    stubdm_console *c1;

    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, s), 0);
    stubdm_spawn_opts_free(c);
    c1 = stubdm_stubdom_console(*s, 1);
    ck_assert_ptr_nonnull(c1);
    for (int i = 0; i < 500 && stubdm_console_state(c1) != 4; i++)
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 10), 0);
    ck_assert_int_eq(stubdm_console_state(c1), 4);
    return c1;
}

struct mention {
    const char *path, *needle;
};

static bool mentions(void *arg)
{
    struct mention *m = arg;
    return proc_file_mentions(m->path, m->needle);
}

/* ---- consoles served by the spawn --------------------------------------- */

START_TEST(test_log_and_serial)
{
    static const char *const extra[] = {"-serial", "/dev/hvc3", "-device",
                                        "sga"};
    char log_path[300], ser_path[300], out[320];
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_console *log, *ser;
    struct mention m;

    spawnfix_need_sim_stubdom(&fx);
    snprintf(log_path, sizeof(log_path), "%s/qemu-dm-test.log", fx.mock.dir);
    snprintf(ser_path, sizeof(ser_path), "%s/serial0.txt", fx.mock.dir);
    c = config(extra, STUBDM_ARRAY_SIZE(extra), NULL, 0);
    snprintf(out, sizeof(out), "file:%s", log_path);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 0, out), 0);
    snprintf(out, sizeof(out), "file:%s", ser_path);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3, out), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    /* The default on the simulated host. */
    ck_assert_int_eq(stubdm_stubdom_console_backend(s),
                     STUBDM_CONSOLE_BACKEND_LIBSTUBDM);
    log = stubdm_stubdom_console(s, 0);
    ser = stubdm_stubdom_console(s, 3);
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_nonnull(ser);
    ck_assert_ptr_nonnull(stubdm_stubdom_console(s, 1)); /* save, held */
    /* Not restoring, but a serial follows: console 2 is the numbering
     * placeholder, served so that a Linux frontend connects (it would
     * wait 25 s at boot otherwise).  The stand-in does not connect a
     * "null" console: it waits in InitWait, never completes. */
    ck_assert_ptr_nonnull(stubdm_stubdom_console(s, 2));
    ck_assert_int_eq(stubdm_console_state(stubdm_stubdom_console(s, 2)), 2);
    ck_assert_int_eq(stubdm_console_result(stubdm_stubdom_console(s, 2)),
                     STUBDM_ESTATE);

    /* Console 0: the stubdomain's log lines came through the ring. */
    m.path = log_path;
    m.needle = "device model running";
    ck_assert(ts_run_until(fx.ctx, mentions, &m, 10000));
    ck_assert(
        proc_file_mentions(log_path, "console 1 given to QEMU as fdset 1"));
    ck_assert_int_eq(stubdm_console_state(log), 4);
    ck_assert_uint_eq(ts_console_stats(log).bytes_out, file_size(log_path));
    ck_assert_uint_eq(ts_console_stats(log).bytes_dropped, 0);

    /* Console 3: the guest's serial (SeaBIOS through sgabios). */
    m.path = ser_path;
    m.needle = "SeaBIOS";
    ck_assert(ts_run_until(fx.ctx, mentions, &m, 15000));
    ck_assert_uint_eq(ts_console_stats(ser).bytes_out, file_size(ser_path));

    ck_assert_int_eq(assert_no_dom0_qemu(), 1);
    ck_assert_int_eq(logged.warnings, 0);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    unlink(log_path);
    unlink(ser_path);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* A serial as a pty: its path is published and output arrives on it. */
START_TEST(test_serial_pty)
{
    static const char *const extra[] = {"-serial", "/dev/hvc3", "-device",
                                        "sga"};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    const char *tty;
    char buf[4096];
    size_t got = 0;
    int fd;
    int64_t end;

    spawnfix_need_sim_stubdom(&fx);
    c = config(extra, STUBDM_ARRAY_SIZE(extra), NULL, 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3, "pty"), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    tty = stubdm_console_tty(stubdm_stubdom_console(s, 3));
    ck_assert_ptr_nonnull(tty);
    fd = open(tty, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    end = stubdm_now_ms() + 15000;
    buf[0] = '\0';
    while (!strstr(buf, "SeaBIOS") && stubdm_now_ms() < end) {
        ssize_t n;
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 20), 0);
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n > 0) {
            got += (size_t)n;
            buf[got] = '\0';
            for (size_t i = 0; i < got; i++)
                if (!buf[i])
                    buf[i] = ' ';
        }
        if (got == sizeof(buf) - 1)
            got = 0;
    }
    ck_assert_ptr_nonnull(strstr(buf, "SeaBIOS"));
    close(fd);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* ---- save and restore ------------------------------------------------------
 */

struct saved {
    char path[300];
    uint64_t bytes;
    double ms;
};

static void save_with_handle(stubdm_stubdom *s, struct saved *sv)
{
    stubdm_console *c1 = stubdm_stubdom_console(s, 1);
    uint64_t before = ts_console_stats(c1).bytes_out;
    int64_t t0;
    int fd;

    fd = open(sv->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_stubdom_save_sync(s, fd, 20000, &sv->bytes), 0);
    sv->ms = (double)(stubdm_now_ms() - t0);
    close(fd);
    /* Complete only once everything is out: the size reported, the
     * console's count and the file agree exactly. */
    ck_assert_uint_gt(sv->bytes, 0);
    ck_assert_uint_eq(sv->bytes, file_size(sv->path));
    ck_assert_uint_eq(ts_console_stats(c1).bytes_out - before, sv->bytes);
    ck_assert(proc_file_mentions(sv->path, "QEVM"));
}

static void restore_from(const struct saved *sv, double *ms_out)
{
    stubdm_spawn_opts *c = config(NULL, 0, NULL, 0);
    stubdm_stubdom *s = NULL;
    stubdm_console *c2;
    char *reply = NULL;
    int64_t t0;
    int fd = open(sv->path, O_RDONLY | O_CLOEXEC);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_restore_fd(c, fd), 0);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    *ms_out = (double)(stubdm_now_ms() - t0);
    stubdm_spawn_opts_free(c);
    c2 = stubdm_stubdom_console(s, 2);
    ck_assert_ptr_nonnull(c2);
    /* Running means QEMU loaded the stream: console 2 delivered it all. */
    ck_assert_int_eq(stubdm_console_result(c2), 0);
    ck_assert_uint_eq(ts_console_stats(c2).bytes_in, sv->bytes);
    ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s),
                                             "query-migrate", NULL, 10000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "completed"));
    free(reply);
    ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s),
                                             "query-status", NULL, 10000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "\"running\": true"));
    free(reply);
    ck_assert_int_eq(assert_no_dom0_qemu(), 1);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    close(fd);
}

START_TEST(test_save_restore_roundtrip)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    struct saved a, b;
    double spawn_ms, restore_ms;
    int64_t t0;
    char *reply = NULL;

    spawnfix_need_sim_stubdom(&fx);
    snprintf(a.path, sizeof(a.path), "%s/dm-state.1", fx.mock.dir);
    snprintf(b.path, sizeof(b.path), "%s/dm-state.2", fx.mock.dir);
    c = config(NULL, 0, NULL, 0);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    spawn_ms = (double)(stubdm_now_ms() - t0);
    stubdm_spawn_opts_free(c);
    save_with_handle(s, &a);
    /* Left stopped, as libxl expects; a second save works too. */
    ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s),
                                             "query-status", NULL, 10000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "\"running\": false"));
    free(reply);
    save_with_handle(s, &b);
    ck_assert_uint_eq(a.bytes, b.bytes);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);

    restore_from(&a, &restore_ms);
    fprintf(stderr,
            "test_dm_state: spawn %.0f ms; save %llu bytes in %.1f ms, "
            "again %llu bytes in %.1f ms; restore (spawn until running) "
            "%.0f ms\n",
            spawn_ms, (unsigned long long)a.bytes, a.ms,
            (unsigned long long)b.bytes, b.ms, restore_ms);
    unlink(a.path);
    unlink(b.path);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* Backend state of console n of a stubdomain ("" if absent); static. */
static const char *be_state(uint32_t domid, unsigned n)
{
    static char v[16];
    struct xs_handle *xsh = NULL;
    char path[96], *r;

    ck_assert_int_eq(stubdm__xs_handle(fx.ctx, &xsh), 0);
    snprintf(path, sizeof(path), "/local/domain/0/backend/console/%u/%u/state",
             domid, n);
    r = xs_read(xsh, XBT_NULL, path, NULL);
    snprintf(v, sizeof(v), "%s", r ? r : "");
    free(r);
    return v;
}

/* Another process (stubdm-ctl save): by domids, with its own QMP and
 * console 1. */
START_TEST(test_save_by_domid)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    uint32_t domid;
    uint64_t bytes = 0;
    char path[300];
    int fd;
    double ms;

    spawnfix_need_sim_stubdom(&fx);
    snprintf(path, sizeof(path), "%s/dm-state.byid", fx.mock.dir);
    c = config(NULL, 0, NULL, 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 0, 0), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s); /* it keeps running; its consoles are let go */
    /* Let go, not closed: back to InitWait, the frontend stays connected
     * (Closing would make a Linux stubdomain remove /dev/hvc1 for good). */
    ck_assert_str_eq(be_state(domid, 1), "2");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_dm_save_sync(fx.ctx, domid, GUEST, fd, 20000,
                                         &bytes),
                     0);
    ms = (double)(stubdm_now_ms() - t0);
    close(fd);
    ck_assert_uint_gt(bytes, 0);
    ck_assert_uint_eq(bytes, file_size(path));
    fprintf(stderr, "test_dm_state: save by domid %llu bytes in %.1f ms\n",
            (unsigned long long)bytes, ms);
    /* The save let console 1 go too, so the next backend (a second save)
     * takes it over again. */
    ck_assert_str_eq(be_state(domid, 1), "2");
    fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    bytes = 0;
    ck_assert_int_eq(stubdm_dm_save_sync(fx.ctx, domid, GUEST, fd, 20000,
                                         &bytes),
                     0);
    close(fd);
    ck_assert_uint_gt(bytes, 0);
    ck_assert_uint_eq(bytes, file_size(path));
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, domid, 0),
                     0);
    unlink(path);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* A long-lived QMP holder (another ctx: to the lock, another client): the
 * save by domids opens its own connection and gets STUBDM_EBUSY; the save
 * through the held handle works, the stream is complete, and the handle
 * stays usable. */
START_TEST(test_save_through_held_qmp)
{
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_ctx *ctx2 = NULL;
    stubdm_qmp_opts *qo = NULL;
    stubdm_qmp *held = NULL;
    uint32_t domid;
    uint64_t bytes = 7;
    char path[300], *reply = NULL;
    int fd;

    spawnfix_need_sim_stubdom(&fx);
    snprintf(path, sizeof(path), "%s/dm-state.held", fx.mock.dir);
    c = config(NULL, 0, NULL, 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 0, 0), 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    stubdm_stubdom_free(s);
    ck_assert_int_eq(stubdm_ctx_new(&ctx2), 0);
    ck_assert_int_eq(stubdm_ctx_set_host(ctx2, STUBDM_HOST_SIM), 0);
    ck_assert_int_eq(stubdm_qmp_opts_new(&qo), 0);
    ck_assert_int_eq(
        stubdm_qmp_opts_set_transport(qo, STUBDM_QMP_TRANSPORT_SIMULATED), 0);
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx2, domid, GUEST, qo, &held), 0);
    stubdm_qmp_opts_free(qo);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);

    ck_assert_int_eq(stubdm_dm_save_sync(fx.ctx, domid, GUEST, fd, 20000,
                                         &bytes),
                     STUBDM_EBUSY);
    ck_assert_uint_eq(bytes, 0);
    ck_assert_uint_eq(file_size(path), 0);
    ck_assert_str_eq(be_state(domid, 1), "2"); /* console 1 let go */

    ck_assert_int_eq(stubdm_dm_save_qmp_sync(NULL, fd, 20000, &bytes),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_dm_save_qmp_sync(held, fd, 20000, &bytes), 0);
    close(fd);
    ck_assert_uint_gt(bytes, 0);
    ck_assert_uint_eq(bytes, file_size(path));
    ck_assert(proc_file_mentions(path, "QEVM"));
    ck_assert_str_eq(be_state(domid, 1), "2");
    /* The handle is still the caller's, and the device model stopped. */
    ck_assert_int_eq(stubdm_qmp_is_ready(held), 1);
    ck_assert_int_eq(stubdm_qmp_execute_sync(held, "query-status", NULL, 10000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "\"running\": false"));
    free(reply);
    stubdm_qmp_free(held);
    stubdm_ctx_free(ctx2);
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(fx.ctx, domid, 0),
                     0);
    unlink(path);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* ---- failures that end one console only --------------------------------- */

static bool console_ended(void *arg)
{
    return stubdm_console_result(arg) != STUBDM_ESTATE;
}

START_TEST(test_hostile_ring_ends_one_console)
{
    stubdm_stubdom *s = NULL;
    stubdm_console *c1;
    char ring[300];
    struct xencons_interface *page;
    char *reply = NULL;
    int fd, out;

    spawnfix_need_sim_stubdom(&fx);
    /* Wait for console 1 to connect, then forge its out_prod. */
    c1 = spawn_save_console_connected(&s);
    snprintf(ring, sizeof(ring), "%s/console/%u.1.ring", fx.mock.dir,
             stubdm_stubdom_domid(s));
    fd = open(ring, O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(page != MAP_FAILED);
    close(fd);
    page->out_prod = page->out_cons + 0x40000000u;
    munmap(page, 4096);
    /* A save looks at the ring at once: the forged index ends console 1
     * with EPROTO, and the save with it. */
    out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ck_assert_int_eq(stubdm_stubdom_save_sync(s, out, 5000, NULL),
                     STUBDM_EPROTO);
    close(out);
    ck_assert(ts_run_until(fx.ctx, console_ended, c1, 5000));
    ck_assert_int_eq(stubdm_console_result(c1), STUBDM_EPROTO);
    /* Logged, and only that console ended: the stubdomain runs on. */
    ck_assert_int_eq(logged.warnings, 1);
    ck_assert_ptr_nonnull(strstr(logged.last, "console 1 ended"));
    ck_assert_int_eq(stubdm_stubdom_step(s), STUBDM_SPAWN_STEP_RUNNING);
    ck_assert_int_eq(stubdm_qmp_execute_sync(stubdm_stubdom_qmp(s),
                                             "query-status", NULL, 5000,
                                             &reply),
                     0);
    free(reply);
    /* A save needs console 1: now refused, nothing started. */
    ck_assert_int_eq(stubdm_stubdom_save(s, 1, 1000, NULL, NULL, NULL),
                     STUBDM_ESTATE);
    /* Each blocking form takes its own subject: no NULL picks a mode. */
    ck_assert_int_eq(stubdm_stubdom_save_sync(NULL, 1, 1000, NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_dm_save_sync(NULL, stubdm_stubdom_domid(s), GUEST,
                                         1, 1000, NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

static char proc_state_of_domain(uint32_t domid)
{
    struct xs_handle *xsh = NULL;
    char *list, *line, want[32], comm[64], st = '?';
    long pid = 0, ppid;

    ck_assert_int_eq(stubdm__xs_handle(fx.ctx, &xsh), 0);
    list = xs_control_command(xsh, "sim-list", (char *)"", 0);
    ck_assert_ptr_nonnull(list);
    snprintf(want, sizeof(want), "%u ", domid);
    for (line = list; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (!strncmp(line, want, strlen(want))) {
            pid = strtol(strrchr(strtok(line, "\n"), ' ') + 1, NULL, 10);
            break;
        }
    }
    free(list);
    ck_assert_int_gt(pid, 0);
    ck_assert(proc_stat(pid, comm, sizeof(comm), &ppid, &st));
    return st;
}

START_TEST(test_pause_unpause)
{
    static const char *const noqemu[] = {"--no-qemu"};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    char st = '?';

    spawnfix_need_sim_stubdom(&fx);
    c = config(NULL, 0, noqemu, 1);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    ck_assert_int_eq(stubdm_stubdom_pause(s), 0);
    ck_assert_int_eq(stubdm_stubdom_pause(s), 0); /* idempotent */
    for (int i = 0;
         i < 100 &&
         (st = proc_state_of_domain(stubdm_stubdom_domid(s))) != 'T';
         i++)
        usleep(10000);
    ck_assert_int_eq(st, 'T');
    ck_assert_int_eq(stubdm_stubdom_save(s, 1, 1000, NULL, NULL, NULL),
                     STUBDM_ESTATE);
    ck_assert_int_eq(stubdm_stubdom_unpause(s), 0);
    for (int i = 0;
         i < 100 &&
         (st = proc_state_of_domain(stubdm_stubdom_domid(s))) == 'T';
         i++)
        usleep(10000);
    ck_assert_int_ne(st, 'T');
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    ck_assert_int_eq(stubdm_stubdom_pause(s), STUBDM_ESTATE);
    stubdm_stubdom_free(s);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* Validation of the new configuration. */
START_TEST(test_validate_consoles)
{
    stubdm_spawn_opts *c = config(NULL, 0, NULL, 0);
    stubdm_stubdom *s = NULL;

    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 0, "pty"), 0);
    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, NULL),
                     STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(fx.ctx), "console 0"));
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 0, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3,
                                                          "udp:1.2.3.4:5"),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(fx.ctx), "console 3"));
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3, NULL), 0);
    ck_assert_int_eq(
        stubdm_spawn_opts_set_console_backend(c, STUBDM_CONSOLE_BACKEND_IOEMU),
        0);
    ck_assert_int_eq(stubdm_spawn_opts_set_restore_fd(c, 0), 0);
    ck_assert_int_eq(stubdm_spawn_opts_validate(fx.ctx, c), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(fx.ctx), "restore"));
    ck_assert_int_eq(stubdm_spawn_opts_set_log_limits(c, 0, 100),
                     STUBDM_EINVAL);
    stubdm_spawn_opts_free(c);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* The fd in process pid of the unix socket bound at path, duplicated into
 * this process (pidfd_getfd: root), or -1. */
static int steal_socket(pid_t pid, const char *path)
{
    char line[512], want[64], link[64], fdpath[96];
    unsigned long inode = 0;
    FILE *f = fopen("/proc/net/unix", "r");
    DIR *d;
    struct dirent *e;
    int pfd, got = -1;

    if (!f)
        return -1;
    while (!inode && fgets(line, sizeof(line), f)) {
        char *p = strstr(line, path);
        unsigned long ino;
        if (p && p[strlen(path)] == '\n' &&
            sscanf(line, "%*s %*s %*s %*s %*s %*s %lu", &ino) == 1)
            inode = ino;
    }
    fclose(f);
    if (!inode)
        return -1;
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    snprintf(fdpath, sizeof(fdpath), "/proc/%ld/fd", (long)pid);
    pfd = pidfd_open(pid, 0);
    d = opendir(fdpath);
    while (pfd >= 0 && d && got < 0 && (e = readdir(d))) {
        char full[400];
        ssize_t n;
        snprintf(full, sizeof(full), "%s/%s", fdpath, e->d_name);
        n = readlink(full, link, sizeof(link) - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (!strcmp(link, want))
            got = pidfd_getfd(pfd, atoi(e->d_name), 0);
    }
    if (d)
        closedir(d);
    if (pfd >= 0)
        close(pfd);
    return got;
}

/* The mock's only child: the simulated stubdomain (--no-qemu). */
static pid_t sim_domain_pid(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0;
    char comm[64], state;
    long ppid;

    while (d && !found && (e = readdir(d))) {
        long pid = strtol(e->d_name, NULL, 10);
        if (pid > 0 && proc_stat(pid, comm, sizeof(comm), &ppid, &state) &&
            ppid == (long)fx.mock.pid)
            found = (pid_t)pid;
    }
    if (d)
        closedir(d);
    return found;
}

/* A stubdomain that streams on and on into console 1 during a save: the
 * save ends at its size bound with ELIMIT, not at its timeout, and the
 * partial output is truncated away.  The stand-in is paused once the save
 * has started (its QMP answers nothing more, its console 1 frontend stops),
 * and this test produces on console 1's page in its place. */
START_TEST(test_save_stream_bounded)
{
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    struct xencons_interface *page;
    struct sockaddr_un be = {.sun_family = AF_UNIX};
    char ring[300], fe[300], out[300], chunk[2048];
    struct stat st;
    int fd, outfd, nfd;
    int64_t t0;

    spawnfix_need_sim_stubdom(&fx);
    /* pidfd_getfd below: root and pidfds (tag needs-pidfd) */
    nfd = pidfd_open(getpid(), 0);
    ck_assert_msg(nfd >= 0 && geteuid() == 0,
                  "needs root and pidfd_open (CK_EXCLUDE_TAGS=needs-pidfd "
                  "where the process has none, as under valgrind 3.19)");
    close(nfd);
    spawn_save_console_connected(&s);
    ck_assert_int_lt(snprintf(ring, sizeof(ring), "%s/console/%u.1.evtchn-be",
                              fx.mock.dir, stubdm_stubdom_domid(s)),
                     (int)sizeof(be.sun_path));
    memcpy(be.sun_path, ring, strlen(ring) + 1);
    snprintf(ring, sizeof(ring), "%s/console/%u.1.ring", fx.mock.dir,
             stubdm_stubdom_domid(s));
    fd = open(ring, O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(page != MAP_FAILED);
    close(fd);
    snprintf(fe, sizeof(fe), "%s/console/%u.1.evtchn", fx.mock.dir,
             stubdm_stubdom_domid(s));
    memset(chunk, 'x', sizeof(chunk));

    ck_assert_int_eq(stubdm_ctx_set_save_limit(fx.ctx, 1u << 20), 0);
    snprintf(out, sizeof(out), "%s/endless.state", fx.mock.dir);
    outfd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(outfd, 0);
    ck_assert_int_eq(stubdm_stubdom_save(s, outfd, 20000, NULL, NULL, &op), 0);
    ck_assert_int_eq(stubdm_stubdom_pause(s), 0);
    /* Notifications must come from the frontend's own socket (the
     * backend's is connected to it): borrowed from the paused stand-in. */
    nfd = steal_socket(sim_domain_pid(), fe);
    ck_assert_msg(nfd >= 0, "no frontend socket %s in pid %ld: %s", fe,
                  (long)sim_domain_pid(), strerror(errno));
    t0 = stubdm_now_ms();
    while (!stubdm_op_is_done(op) && stubdm_now_ms() - t0 < 15000) {
        uint32_t prod = page->out_prod, cons = page->out_cons;
        uint32_t room = 2048 - (prod - cons), off = prod & 2047;
        uint32_t first = room < 2048 - off ? room : 2048 - off;
        memcpy(page->out + off, chunk, first);
        memcpy(page->out, chunk, room - first);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        page->out_prod = prod + room;
        sendto(nfd, "!", 1, MSG_DONTWAIT, (struct sockaddr *)&be, sizeof(be));
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 2), 0);
    }
    ck_assert(stubdm_op_is_done(op));
    ck_assert_msg(stubdm_op_result(op) == STUBDM_ELIMIT, "%s: %s",
                  stubdm_errname(stubdm_op_result(op)), stubdm_op_errmsg(op));
    ck_assert_ptr_nonnull(
        strstr(stubdm_op_errmsg(op), "exceeds the limit of 1048576 bytes"));
    ck_assert_int_lt(stubdm_now_ms() - t0, 10000); /* not the timeout */
    stubdm_op_free(op);
    ck_assert_int_eq(fstat(outfd, &st), 0);
    ck_assert_int_eq(st.st_size, 0); /* truncated back */
    close(outfd);
    unlink(out);
    close(nfd);
    munmap(page, 4096);
    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

/* device/console/1 is the stubdomain's: it can remove "type" and write
 * its own.  The save takes the backend's type only from a dom0-owned
 * node: here one the stubdomain re-created (owner 9) saying "libstubdm". */
START_TEST(test_save_console_type_owner)
{
    static const struct xs_permissions stub_own[] = {{9, XS_PERM_NONE},
                                                     {0, XS_PERM_READ}};
    struct xs_handle *xsh = mockxs_open_as(&fx.mock, 0);
    const char *type = "/local/domain/9/device/console/1/type";
    uint64_t bytes = 0;
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

    ck_assert_ptr_nonnull(xsh);
    ck_assert_int_ge(fd, 0);
    ck_assert(xs_write(xsh, XBT_NULL, type, "libstubdm", 9));
    ck_assert(xs_set_permissions(xsh, XBT_NULL, type,
                                 (struct xs_permissions *)stub_own, 2));
    ck_assert_int_eq(stubdm_dm_save_sync(fx.ctx, 9, GUEST, fd, 2000, &bytes),
                     STUBDM_EPROTO);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(fx.ctx), "owned by domain 9"), "%s",
                  stubdm_ctx_errmsg(fx.ctx));
    close(fd);
    ck_assert(xs_rm(xsh, XBT_NULL, "/local/domain/9"));
    xs_close(xsh);
}
END_TEST

/* ---- a forged stream-end -------------------------------------------------- */

/* Run until the save's stream-end-request differs from prev; returns it. */
static char *await_request(struct xs_handle *h, const char *path,
                           const char *prev, stubdm_op *op, int ms)
{
    int64_t end = stubdm_now_ms() + ms;
    char *v = NULL;

    while (stubdm_now_ms() < end && !stubdm_op_is_done(op)) {
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5), 0);
        free(v);
        v = xs_read(h, XBT_NULL, path, NULL);
        if (v && (!prev || strcmp(v, prev)))
            return v;
    }
    ck_assert_msg(0, "no stream-end-request (save: %s)",
                  stubdm_op_is_done(op) ? stubdm_op_errmsg(op) : "pending");
    return NULL;
}

/*
 * stream-end is the stubdomain's (here made dom0's, read-only for it, so
 * the stand-in's honest answer fails and the test writes in its place).
 * A malformed value (a sign, two spaces, another save's SEQ, SEQ in 40
 * digits, TOTAL in 40 digits), each with a TOTAL already reached, is
 * ignored: the save keeps waiting and ends at its timeout with
 * STUBDM_ETIMEDOUT, the output file holding the bytes the message counts.
 * A well-formed "SEQ TOTAL" with a TOTAL below what was sent is taken: the
 * save completes at once, reporting what the file holds.
 */
START_TEST(test_save_forged_stream_end)
{
    struct xs_handle *h = mockxs_open_as(&fx.mock, 0);
    const char *pre = getenv("LD_PRELOAD");
    int timeout = pre && strstr(pre, "vgpreload") ? 20000 : 3000;
    struct xs_permissions dom0_own[2] = {{0, XS_PERM_NONE}, {0, XS_PERM_READ}};
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    char path[300], req[96], node[96], val[128], *seq, *seq2;
    unsigned long long written = 0;
    const char *m;
    uint32_t domid;
    int fd;

    spawnfix_need_sim_stubdom(&fx);
    ck_assert_ptr_nonnull(h);
    snprintf(path, sizeof(path), "%s/dm-state.forged", fx.mock.dir);
    c = config(NULL, 0, NULL, 0);
    ck_assert_int_eq(stubdm_spawn_sync(fx.ctx, c, NULL, NULL, &s), 0);
    stubdm_spawn_opts_free(c);
    domid = stubdm_stubdom_domid(s);
    snprintf(req, sizeof(req),
             "/local/domain/%u/device/console/1/stream-end-request", domid);
    snprintf(node, sizeof(node),
             "/local/domain/%u/device/console/1/stream-end", domid);
    ck_assert(xs_write(h, XBT_NULL, node, "", 0));
    dom0_own[1].id = domid;
    ck_assert(xs_set_permissions(h, XBT_NULL, node, dom0_own, 2));

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(stubdm_stubdom_save(s, fd, timeout, NULL, NULL, &op), 0);
    seq = await_request(h, req, NULL, op, timeout);
    {
        unsigned long long n = strtoull(seq, NULL, 10);
        char forged[6][96];
        snprintf(forged[0], sizeof(forged[0]), "-%s 1", seq);
        snprintf(forged[1], sizeof(forged[1]), "%s +1", seq);
        snprintf(forged[2], sizeof(forged[2]), "%s  1", seq);
        snprintf(forged[3], sizeof(forged[3]), "%llu 1", n + 1);
        snprintf(forged[4], sizeof(forged[4]), "%040llu 1", n);
        snprintf(forged[5], sizeof(forged[5]), "%s 1%039d", seq, 0);
        for (size_t i = 0; i < 6; i++) {
            int64_t end = stubdm_now_ms() + 50;
            ck_assert(xs_write(h, XBT_NULL, node, forged[i],
                               (unsigned)strlen(forged[i])));
            while (stubdm_now_ms() < end)
                ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5), 0);
            ck_assert_msg(!stubdm_op_is_done(op), "\"%s\" ended the save: %s",
                          forged[i], stubdm_op_errmsg(op));
        }
    }
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 50), 0);
    ck_assert_msg(stubdm_op_result(op) == STUBDM_ETIMEDOUT, "%s: %s",
                  stubdm_errname(stubdm_op_result(op)), stubdm_op_errmsg(op));
    m = strstr(stubdm_op_errmsg(op),
               "waiting for the end of the stream: timed out (");
    ck_assert_msg(m != NULL, "%s", stubdm_op_errmsg(op));
    ck_assert_int_eq(sscanf(strchr(m, '(') + 1, "%llu bytes", &written), 1);
    ck_assert_uint_gt(written, 0);
    ck_assert_uint_eq(file_size(path), written); /* kept, not truncated */
    ck_assert(proc_file_mentions(path, "QEVM"));
    stubdm_op_free(op);
    close(fd);

    /* Right SEQ, TOTAL 1 (below what console 1 has carried): taken. */
    fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(stubdm_stubdom_save(s, fd, timeout, NULL, NULL, &op), 0);
    seq2 = await_request(h, req, seq, op, timeout);
    snprintf(val, sizeof(val), "%s 1", seq2);
    ck_assert(xs_write(h, XBT_NULL, node, val, (unsigned)strlen(val)));
    while (!stubdm_op_is_done(op))
        ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 5), 0);
    ck_assert_msg(stubdm_op_result(op) == 0, "%s: %s",
                  stubdm_errname(stubdm_op_result(op)), stubdm_op_errmsg(op));
    ck_assert_uint_eq(stubdm_dm_save_bytes(op), file_size(path));
    stubdm_op_free(op);
    close(fd);
    free(seq);
    free(seq2);

    ck_assert_int_eq(stubdm_stubdom_destroy_sync(s), 0);
    stubdm_stubdom_free(s);
    xs_close(h);
    unlink(path);
    spawnfix_assert_clean(&fx, false);
}
END_TEST

static Suite *dm_state_suite(void)
{
    Suite *s = suite_create("dm_state");
    TCase *tc = tcase_create("sim");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_validate_consoles);
    tcase_add_test(tc, test_log_and_serial);
    tcase_add_test(tc, test_serial_pty);
    tcase_add_test(tc, test_save_restore_roundtrip);
    tcase_add_test(tc, test_save_by_domid);
    tcase_add_test(tc, test_save_through_held_qmp);
    tcase_add_test(tc, test_hostile_ring_ends_one_console);
    tcase_add_test(tc, test_pause_unpause);
    tcase_add_test(tc, test_save_console_type_owner);
    tcase_add_test(tc, test_save_forged_stream_end);
    suite_add_tcase(s, tc);

    tc = tcase_create("sim-pidfd");
    tcase_set_tags(tc, "needs-pidfd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_save_stream_bounded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(dm_state_suite());
}
