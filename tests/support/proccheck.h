/*
 * The processes of a test or benchmark: starting children that die with
 * it, and what the suites check a test left behind, read from /proc (open
 * fds, processes of a simulated host, children not reaped).
 */
#ifndef STUBDM_TESTS_PROCCHECK_H
#define STUBDM_TESTS_PROCCHECK_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * fork() for a child of a test or benchmark (a QEMU, the mock xenstored, a
 * scripted peer, a helper holding a lock).  Returns as fork().  In the
 * child:
 *  - it dies with SIGKILL when the calling THREAD ends, whatever ended it
 *    (a failed assertion, abort, a timeout, SIGKILL of the runner):
 *    PR_SET_PDEATHSIG, set before anything else and checked against a
 *    parent that had already gone by then.  Call it from the thread that
 *    outlives the child (the test's own);
 *  - Check's message file (CK_FORK=no runs the test in the runner, whose
 *    results go through that file) becomes /dev/null: a ck_* macro in the
 *    child, passing or failing, writes a message into it at the offset the
 *    file shares with the runner, which may just have rewound it to read
 *    the results: the runner then reads garbage ("Bad message type") and
 *    exits with the test's fixtures still running.  Never use ck_* in a
 *    child all the same: its verdict would be lost.
 * stdio is flushed first so the child cannot repeat buffered output.
 */
pid_t proc_child_fork(void);

/* The calling process dies with SIGKILL when its parent does (exits at
 * once if it is already an orphan of init).  mockxs_start() calls it:
 * under CK_FORK=yes a test process is a plain fork() of the runner, and a
 * SIGKILLed runner would leave it, and so its fixtures, running. */
void proc_die_with_parent(void);

/* In a child about to exec: every fd from 3 on is made close-on-exec, so
 * the program inherits neither Check's message file nor the test's
 * sockets and pipes (dup2() to a number afterwards to pass one on). */
void proc_child_cloexec(void);

/* Whether pid has ended: gone from /proc, or a zombie (reparented to an
 * init that does not reap, as in some containers). */
bool proc_gone(pid_t pid);

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
