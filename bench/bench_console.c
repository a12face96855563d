/*
 * bench_console: the console backend over the simulated transport, with
 * the frontend (tests/support/simcons.c) in a child process, as a
 * stubdomain would be.
 *
 *  - save stream: the frontend writes N MiB as fast as the ring allows;
 *    the library writes them to /dev/null (and to a pipe drained by the
 *    parent).  MB/s from the first byte to the last.
 *  - restore stream: the library reads N MiB from a file into the ring;
 *    the frontend reads them.  MB/s until the console completes (EOF
 *    delivered).
 *  - memory: heap bytes per served console (16 consoles), besides the one
 *    mapped 4 KiB page each.
 *
 * Figures, not a test: nothing here passes or fails.
 */
#include "core/base.h"
#include "mockxs.h"
#include "proccheck.h"
#include "simcons.h"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

#define STUB 5
#define MIB ((size_t)1 << 20)

static struct mockxs mock;
static struct xs_handle *xs0;
static stubdm_ctx *ctx;

static void die(const char *what)
{
    fprintf(stderr, "bench_console: %s failed: %s\n", what,
            ctx ? stubdm_ctx_errmsg(ctx) : "");
    exit(1);
}

static void mkdir_owned(const char *path, unsigned owner)
{
    struct xs_permissions p[1] = {{owner, XS_PERM_NONE}};
    if (!xs_mkdir(xs0, XBT_NULL, path) ||
        !xs_set_permissions(xs0, XBT_NULL, path, p, 1))
        die(path);
}

/* The frontend, in a child: write (dir 0) or read (dir 1) total bytes. */
static pid_t frontend(unsigned n, int dir, size_t total)
{
    pid_t pid = proc_child_fork();
    struct simcons *sc;
    struct xs_handle *xs;
    unsigned char buf[4096];
    size_t done = 0;

    if (pid)
        return pid;
    xs = mockxs_open_as(&mock, STUB);
    if (!xs || simcons_open(&sc, mock.dir, STUB, n) || simcons_publish(sc, xs))
        _exit(2);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 7);
    while (done < total) {
        long r = dir == 0
                     ? simcons_write(sc, buf,
                                     total - done < sizeof(buf) ? total - done
                                                                : sizeof(buf))
                     : simcons_read(sc, buf, sizeof(buf));
        if (r < 0)
            _exit(3);
        if (r == 0)
            simcons_wait(sc, 100);
        done += (size_t)r;
    }
    /* Stay until the parent is done with the files. */
    simcons_wait(sc, 2000);
    simcons_close(sc);
    xs_close(xs);
    _exit(0);
}

static uint64_t console_bytes_out(const stubdm_console *c)
{
    stubdm_console_stats st;

    stubdm_console_get_stats(c, &st, sizeof(st));
    return st.bytes_out;
}

static void serve_or_die(unsigned n, stubdm_console_opts *o,
                         stubdm_console **c)
{
    if (stubdm_console_opts_set_transport(
            o, STUBDM_CONSOLE_TRANSPORT_SIMULATED) ||
        stubdm_console_opts_set_sim_dir(o, mock.dir) ||
        stubdm_console_serve(ctx, STUB, n, o, NULL, NULL, c))
        die("serve");
    stubdm_console_opts_free(o);
}

static void bench_save(size_t total, int use_pipe)
{
    stubdm_console_opts *o;
    stubdm_console *c;
    int p[2] = {-1, -1}, fd;
    pid_t pid;
    int64_t t0 = 0, t1;
    char buf[65536];

    if (use_pipe) {
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK))
            die("pipe");
        fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        fd = p[1];
    } else {
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    }
    stubdm_console_opts_new(&o);
    stubdm_console_opts_set_save_fd(o, fd);
    serve_or_die(1, o, &c);
    pid = frontend(1, 0, total);
    while (console_bytes_out(c) < total) {
        if (!t0 && console_bytes_out(c))
            t0 = stubdm_now_ms();
        if (stubdm_ctx_run_once(ctx, use_pipe ? 0 : 100))
            die("run");
        if (use_pipe)
            while (read(p[0], buf, sizeof(buf)) > 0)
                ;
        if (stubdm_console_result(c) != STUBDM_ESTATE)
            die(stubdm_console_errmsg(c));
    }
    t1 = stubdm_now_ms();
    printf("save stream -> %-9s %4zu MiB  %8.1f MB/s\n",
           use_pipe ? "pipe" : "/dev/null", total / MIB,
           (double)total / 1e6 / ((double)(t1 - t0 ? t1 - t0 : 1) / 1000.0));
    stubdm_console_free(c);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    if (use_pipe) {
        close(p[0]);
        close(p[1]);
    } else {
        close(fd);
    }
}

static void bench_restore(size_t total)
{
    stubdm_console_opts *o;
    stubdm_console *c;
    char path[300];
    int fd;
    pid_t pid;
    int64_t t0, t1;
    static char block[MIB];

    snprintf(path, sizeof(path), "%s/restore.bin", mock.dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (char)(i * 13 + 1);
    for (size_t k = 0; k < total / MIB; k++)
        if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
            die("write");
    lseek(fd, 0, SEEK_SET);
    stubdm_console_opts_new(&o);
    stubdm_console_opts_set_restore_fd(o, fd);
    serve_or_die(2, o, &c);
    pid = frontend(2, 1, total);
    while (stubdm_console_state(c) != 4)
        if (stubdm_ctx_run_once(ctx, 100))
            die("run");
    t0 = stubdm_now_ms();
    while (stubdm_console_result(c) == STUBDM_ESTATE)
        if (stubdm_ctx_run_once(ctx, 100))
            die("run");
    t1 = stubdm_now_ms();
    if (stubdm_console_result(c) != 0)
        die(stubdm_console_errmsg(c));
    printf("restore stream <- file     %4zu MiB  %8.1f MB/s\n", total / MIB,
           (double)total / 1e6 / ((double)(t1 - t0 ? t1 - t0 : 1) / 1000.0));
    stubdm_console_free(c);
    waitpid(pid, NULL, 0);
    close(fd);
    unlink(path);
}

static void bench_memory(void)
{
    enum { N = 16 };
    stubdm_console *c[N];
    int nullfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct mallinfo2 a, b;
    char path[300];

    /* Warm up the ctx's tables (watch table, fd table, timer heap). */
    a = mallinfo2();
    for (int i = 0; i < N; i++) {
        stubdm_console_opts *o;
        stubdm_console_opts_new(&o);
        snprintf(path, sizeof(path), "%s/serial%d.log", mock.dir, i);
        stubdm_console_opts_set_serial_file(o, path, 0, 0);
        serve_or_die(3 + (unsigned)i % 16, o, &c[i]);
    }
    b = mallinfo2();
    printf("memory: %zu heap bytes per served console (%d consoles; plus "
           "one mapped 4 KiB page each once connected; no data buffers)\n",
           (size_t)(b.uordblks - a.uordblks) / N, N);
    for (int i = 0; i < N; i++)
        stubdm_console_free(c[i]);
    close(nullfd);
}

int main(int argc, char **argv)
{
    static const unsigned doms[] = {STUB};
    struct mockxs_opts mo = {.domids = doms, .n_domids = 1};
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 64;

    if (mockxs_start(&mock, &mo))
        die("mockxs_start");
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    xs0 = mockxs_open_as(&mock, 0);
    if (!xs0 || !xs_introduce_domain(xs0, STUB, 1, 1))
        die("introduce");
    mkdir_owned("/local/domain/5/device", STUB);
    for (unsigned n = 1; n < 19; n++) {
        char p[64];
        snprintf(p, sizeof(p), "/local/domain/5/device/console/%u", n);
        mkdir_owned(p, STUB);
    }
    if (stubdm_ctx_new(&ctx))
        die("ctx");
    bench_save(mib * MIB, 0);
    bench_save(mib * MIB, 1);
    bench_restore(mib * MIB);
    bench_memory();
    stubdm_ctx_free(ctx);
    xs_close(xs0);
    mockxs_stop(&mock);
    return 0;
}
