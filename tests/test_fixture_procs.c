/*
 * The processes the fixtures start die with the test, whatever ends it,
 * and never write into the runner's results.
 *
 *  - A child of proc_child_fork() that runs a Check macro (as a QEMU
 *    starter once did between fork and exec) does not write into Check's
 *    message file: with CK_FORK=no that file's offset is shared with the
 *    runner, and such a write once landed where the runner had just
 *    rewound it to read the results ("Bad message type arg 1836396131").
 *  - A test process that is SIGKILLed (a ctest timeout, an abort) takes
 *    its fixtures with it: the mock xenstored, a simulated stubdomain the
 *    mock started, a real QEMU, a scripted QMP peer; and so does a test
 *    process whose runner is SIGKILLed (CK_FORK=yes).
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base.h"
#include "proccheck.h"
#include "qmp_peer.h"
#include "run.h"

#include <xenstore.h>

/* ---- the runner's message file ------------------------------------------ */

/* This process's fd on Check's message file, or -1. */
static int check_message_fd(void)
{
    for (int fd = 3; fd < 1024; fd++) {
        char link[64], target[512];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strstr(target, "/check_") && strstr(target, " (deleted)"))
            return fd;
    }
    return -1;
}

START_TEST(test_child_does_not_write_results)
{
    int fd = check_message_fd(), status;
    off_t before, after;
    pid_t pid;

    ck_assert_int_ge(fd, 0);
    /* No Check macro from here to the second lseek: they would move it. */
    before = lseek(fd, 0, SEEK_CUR);
    pid = proc_child_fork();
    if (pid == 0) {
        mark_point(); /* what a passing ck_assert does */
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, &status, 0);
    after = lseek(fd, 0, SEEK_CUR);
    ck_assert_int_gt(pid, 0);
    ck_assert_int_ge(before, 0);
    ck_assert_msg(after == before,
                  "the child wrote %lld bytes into Check's message file",
                  (long long)(after - before));
}
END_TEST

/* ---- fixtures of a killed test ------------------------------------------ */

enum { TEST, MOCK, SIMDOM, QEMU, PEER, NPIDS };
static const char *const names[NPIDS] = {"the test process",
                                         "the mock xenstored",
                                         "the simulated stubdomain", "QEMU",
                                         "the scripted QMP peer"};

struct report {
    pid_t pid[NPIDS];
    char simdir[256], mockdir[200];
};

/* Whether QEMU (exec'd, not just forked) accepts on path within 20 s. */
static bool qemu_listens(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(path) >= sizeof(sa.sun_path))
        return false;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (int i = 0; i < 2000; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 &&
                  connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return true;
        usleep(10000);
    }
    return false;
}

/* The test process: starts every fixture, reports, waits to be killed.
 * Exits non-zero (no Check macro in a child) if a fixture cannot start. */
static void test_process(int out)
{
    static const struct qmp_peer_step hold[] = {QP_H(600000), QP_E()};
    static struct qmp_sim sim;
    struct qmp_peer peer;
    struct report r;
    char peer_sock[400], *dom, *pid, start[64];
    int n;

    memset(&r, 0, sizeof(r));
    r.pid[TEST] = getpid();
    if (qmp_sim_start(&sim, 9, 4))
        _exit(2);
    snprintf(r.simdir, sizeof(r.simdir), "%s", sim.simdir);
    snprintf(r.mockdir, sizeof(r.mockdir), "%s", sim.mock.dir);
    r.pid[MOCK] = sim.mock.pid;
    /* A simulated stubdomain: the mock (the simulated host) runs it. */
    dom = xs_control_command(sim.xs, "sim-create", (char *)"", 0);
    if (!dom)
        _exit(3);
    n = snprintf(start, sizeof(start), "%s%csleep%c600", dom, 0, 0);
    free(dom);
    pid = xs_control_command(sim.xs, "sim-start", start, (unsigned)n + 1);
    if (!pid)
        _exit(4);
    r.pid[SIMDOM] = (pid_t)atol(pid);
    free(pid);
    r.pid[QEMU] = qmp_qemu_start(sim.sock);
    if (r.pid[QEMU] > 0 && !qemu_listens(sim.sock))
        _exit(5);
    snprintf(peer_sock, sizeof(peer_sock), "%s/peer.sock", sim.simdir);
    if (qmp_peer_start(&peer, peer_sock, hold))
        _exit(6);
    r.pid[PEER] = peer.pid;
    if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
        _exit(7);
    for (;;)
        pause();
}

/* rm -rf of a fixture's directory the killed test could not remove. */
static void remove_dir(const char *dir, const char *name)
{
    char cmd[400];

    if (dir[0] != '/' || !strstr(dir, name) || strchr(dir, '\''))
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/*
 * Starts a test process with its fixtures, SIGKILLs it (or, with
 * kill_runner, the runner above it: Check's fork() gives the test process
 * no death signal of its own), then checks that every process is gone
 * within 5 s.
 */
static void kill_and_check(bool kill_runner)
{
    struct report r;
    int p[2], status;
    struct pollfd pfd;
    pid_t x;
    int64_t deadline;
    char left[256] = "";
    int n_left = 0;

    ck_assert_int_eq(pipe(p), 0);
    x = proc_child_fork();
    if (x == 0) {
        close(p[0]);
        if (kill_runner && fork() != 0)
            for (;;)
                pause(); /* the runner, waiting for its test process */
        test_process(p[1]);
    }
    ck_assert_int_gt(x, 0);
    close(p[1]);
    pfd = (struct pollfd){p[0], POLLIN, 0};
    ck_assert_int_eq(poll(&pfd, 1, 20000 * ts_time_scale()), 1);
    if (read(p[0], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
        kill(x, SIGKILL);
        waitpid(x, &status, 0);
        ck_abort_msg("the test process could not start its fixtures");
    }
    close(p[0]);
    for (int i = 0; i < NPIDS; i++)
        ck_assert_msg(r.pid[i] > 0 && !proc_gone(r.pid[i]),
                      "%s is not running", names[i]);

    kill(x, SIGKILL);
    ck_assert_int_eq(waitpid(x, &status, 0), x);
    deadline = stubdm_now_ms() + 5000 * ts_time_scale();
    for (int i = 0; i < NPIDS; i++)
        while (!proc_gone(r.pid[i]) && stubdm_now_ms() < deadline)
            usleep(10000);
    for (int i = 0; i < NPIDS; i++) {
        if (proc_gone(r.pid[i]))
            continue;
        n_left++;
        snprintf(left + strlen(left), sizeof(left) - strlen(left), " %s (%ld)",
                 names[i], (long)r.pid[i]);
        kill(r.pid[i], SIGKILL); /* the next test does not get it */
    }
    remove_dir(r.simdir, "/qmpsim-");
    remove_dir(r.mockdir, "/mockxs-");
    ck_assert_msg(n_left == 0, "outlived the killed %s:%s",
                  kill_runner ? "runner" : "test", left);
}

START_TEST(test_fixtures_die_with_killed_test)
{
    kill_and_check(false);
}
END_TEST

START_TEST(test_fixtures_die_with_killed_runner)
{
    kill_and_check(true);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fixture-procs");
    TCase *tc = tcase_create("procs");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_child_does_not_write_results);
    tcase_add_test(tc, test_fixtures_die_with_killed_test);
    tcase_add_test(tc, test_fixtures_die_with_killed_runner);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
