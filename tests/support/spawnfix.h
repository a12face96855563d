/*
 * The spawn fixture: a mock xenstored, a ctx on the simulated host talking
 * to it, the simulated stubdomain's path, and the baseline a test compares
 * with at its end (the whole store, this process's fds): what
 * test_spawn, test_dm_state, test_hotplug, test_xs_lost and the alloc
 * sweep start from.  Failures are Check failures of the running test.
 */
#ifndef STUBDM_TESTS_SPAWNFIX_H
#define STUBDM_TESTS_SPAWNFIX_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "libstubdm.h"
#include "mockxs.h"

struct spawnfix {
    struct mockxs mock;
    stubdm_ctx *ctx;
    char sim_program[PATH_MAX]; /* stubdm-sim-stubdom of this build */
    char *dump_before;          /* mockxs_dump() at the end of setup */
    int fds_before;             /* this process's fds then (baseline) */
};

struct spawnfix_opts {
    /* The ctx's log (NULL: stderr at DEBUG if getenv(verbose_env)). */
    stubdm_log_fn *log;
    void *log_user;
    stubdm_log_level log_level;
    const char *verbose_env;
    /* Open now what the ctx keeps open once used (the xenstore connection,
     * its watch pipe, the loop's epoll set and timerfd), so that the fd
     * count taken at the end of setup is the baseline a test returns to. */
    bool baseline;
};

/* Start the mock (XENSTORED_PATH names it, STUBDM_SIM_DIR is unset), make
 * the ctx (simulated host, no stubdomain yet), take the baseline.
 * opts may be NULL (no log, no fd baseline). */
void spawnfix_setup(struct spawnfix *f, const struct spawnfix_opts *opts);
/* Free the ctx and the baseline, stop the mock (asserting it exited
 * cleanly). */
void spawnfix_teardown(struct spawnfix *f);

/* The whole store, as mockxs_dump(); free() it. */
char *spawnfix_dump(struct spawnfix *f);
/* Nothing left of what the test made: the store as at setup, no process
 * of the simulated host, this process's fds as at setup, and (children)
 * no child of this process besides the mock. */
void spawnfix_assert_clean(struct spawnfix *f, bool children);
/* Fails the test if the simulated stubdomain is not built (the spawn
 * tests need it: missing, it is a failure of the build, never a skip). */
void spawnfix_need_sim_stubdom(const struct spawnfix *f);

/* A spawn config for guest with these device-model args, run by the
 * simulated stubdomain with sim_args, timing out after timeout_ms. */
stubdm_spawn_opts *spawnfix_config(const struct spawnfix *f, unsigned guest,
                                   const char *const *args, size_t nargs,
                                   const char *const *sim_args, size_t nsim,
                                   int timeout_ms);

/* A stubdm_log_fn writing "[context level] msg" to stderr. */
void spawnfix_log_stderr(void *user, stubdm_log_level level, int os_errno,
                         const char *context, const char *msg);

#endif
