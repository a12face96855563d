/*
 * What the suites check a test left behind, read from /proc: open fds,
 * processes of a simulated host, children not reaped.  Shared by the
 * suites that spawn (test_spawn, test_dm_state, test_hotplug).
 */
#ifndef STUBDM_TESTS_PROCCHECK_H
#define STUBDM_TESTS_PROCCHECK_H

#include <stdbool.h>
#include <sys/types.h>

/* Open fds of this process; -1 if /proc/self/fd cannot be read. */
int proc_count_fds(void);

/* Up to 64 KiB of a file with its NULs as spaces (cmdline, environ), or
 * NULL; free() it. */
char *proc_read_file(const char *path);

/* Whether that text of path contains needle. */
bool proc_file_mentions(const char *path, const char *needle);

/*
 * Processes of the simulated host rooted at dir, besides the mock
 * (mock_pid) and this process: anything whose command line names dir
 * (simulated stubdomains, their QEMUs, a test's fake scripts) or whose
 * environment does (their children, e.g. a hung script's sleep).
 */
int proc_count_sim(const char *dir, pid_t mock_pid);

/* Children of this process besides mock_pid, zombies included. */
int proc_count_children(pid_t mock_pid);

/* The same counts after waiting up to 2 s for them to reach 0 (killed
 * processes take a moment to leave /proc). */
int proc_sim_settled(const char *dir, pid_t mock_pid);
int proc_children_settled(pid_t mock_pid);

#endif
