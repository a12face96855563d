/*
 * bench_dm_state: save and restore of the device model's state on the
 * simulated host with a real QEMU, through the library's console backend:
 * save = QMP stop + xen-save-devices-state -> console 1 -> file, complete
 * when the whole stream is in the file; restore = spawn with the file as
 * console 2's source until the restored QEMU reports running.
 *
 * Prints the stream size and wall times (p50 and max over rounds) for
 * guests of a few memory sizes (the device state does not contain RAM, so
 * its size hardly depends on it).
 *
 *   bench_dm_state [ROUNDS]     (default 5)
 */
#include "core/base.h"
#include "mockxs.h"
#include "run.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char sim_program[PATH_MAX];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static stubdm_spawn_opts *config(const char *mem, int restore_fd)
{
    const char *args[] = {"-xen-domid",  "1000",     "-machine",
                          "xenfv",       "-m",       mem,
                          "-nodefaults", "-display", "none",
                          "-no-shutdown"};
    stubdm_spawn_opts *c = NULL;

    if (stubdm_spawn_opts_new(&c))
        return NULL;
    stubdm_spawn_opts_set_guest(c, 1000, NULL, "bench");
    stubdm_spawn_opts_set_args(c, args, sizeof(args) / sizeof(args[0]));
    stubdm_spawn_opts_set_sim_program(c, sim_program, NULL, 0);
    stubdm_spawn_opts_set_qmp(c, 1, 0);
    stubdm_spawn_opts_set_timeout(c, 30000);
    if (restore_fd >= 0)
        stubdm_spawn_opts_set_restore_fd(c, restore_fd);
    return c;
}

static int one_case(stubdm_ctx *ctx, const char *mem, int rounds,
                    const char *dir)
{
    double save_ms[64], restore_ms[64];
    uint64_t bytes = 0;
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/bench.dm-state", dir);
    for (int r = 0; r < rounds; r++) {
        stubdm_spawn_opts *c = config(mem, -1);
        stubdm_stubdom *s = NULL;
        int64_t t0;
        int fd, rc;

        if (!c || stubdm_spawn_sync(ctx, c, NULL, NULL, &s)) {
            fprintf(stderr, "bench_dm_state: spawn: %s\n",
                    stubdm_ctx_errmsg(ctx));
            return 1;
        }
        stubdm_spawn_opts_free(c);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        t0 = stubdm_now_ms();
        rc = stubdm_stubdom_save_sync(s, fd, 30000, &bytes);
        save_ms[r] = (double)(stubdm_now_ms() - t0);
        close(fd);
        stubdm_stubdom_destroy_sync(s);
        stubdm_stubdom_free(s);
        if (rc) {
            fprintf(stderr, "bench_dm_state: save: %s\n",
                    stubdm_ctx_errmsg(ctx));
            return 1;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC);
        c = config(mem, fd);
        t0 = stubdm_now_ms();
        rc = stubdm_spawn_sync(ctx, c, NULL, NULL, &s);
        restore_ms[r] = (double)(stubdm_now_ms() - t0);
        stubdm_spawn_opts_free(c);
        close(fd);
        if (rc) {
            fprintf(stderr, "bench_dm_state: restore: %s\n",
                    stubdm_ctx_errmsg(ctx));
            return 1;
        }
        stubdm_stubdom_destroy_sync(s);
        stubdm_stubdom_free(s);
    }
    qsort(save_ms, (size_t)rounds, sizeof(double), cmp_double);
    qsort(restore_ms, (size_t)rounds, sizeof(double), cmp_double);
    printf("%-10s %12llu %12.1f %12.1f %14.1f %14.1f\n", mem,
           (unsigned long long)bytes, save_ms[rounds / 2], save_ms[rounds - 1],
           restore_ms[rounds / 2], restore_ms[rounds - 1]);
    unlink(path);
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5, rc = 0;
    static const char *const mems[] = {"16", "64", "256"};
    struct mockxs m;
    stubdm_ctx *ctx;

    if (rounds < 1)
        rounds = 1;
    if (rounds > 64)
        rounds = 64;
    if (ts_exe_relative(sim_program, sizeof(sim_program),
                        "../tests/mock-xenstored/stubdm-sim-stubdom") ||
        access(sim_program, X_OK)) {
        fprintf(stderr, "bench_dm_state: %s not built\n", sim_program);
        return 1;
    }
    if (mockxs_start(&m, NULL))
        return 1;
    setenv("XENSTORED_PATH", mockxs_socket(&m), 1);
    if (stubdm_ctx_new(&ctx))
        return 1;
    stubdm_ctx_set_host(ctx, STUBDM_HOST_SIM);
    printf("bench_dm_state: device state through consoles 1 and 2, simulated "
           "host, real QEMU, %d rounds\n",
           rounds);
    printf("%-10s %12s %12s %12s %14s %14s\n", "guest MiB", "bytes",
           "save p50 ms", "save max ms", "restore p50 ms", "restore max ms");
    for (size_t i = 0; !rc && i < sizeof(mems) / sizeof(mems[0]); i++)
        rc = one_case(ctx, mems[i], rounds, m.dir);
    stubdm_ctx_free(ctx);
    mockxs_stop(&m);
    return rc;
}
