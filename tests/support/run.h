/*
 * What every suite does with a ctx's loop: run it until a condition holds
 * or a deadline passes, record what an op's done callback was given, and
 * run a Check suite.  The loop helpers fail the running test (through
 * Check, only on failure: a hot loop stays cheap) when
 * stubdm_ctx_run_once() returns an error.
 */
#ifndef STUBDM_TESTS_RUN_H
#define STUBDM_TESTS_RUN_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

#include "libstubdm.h"

/* What a done callback recorded (ts_on_done). */
struct ts_result {
    int calls;     /* how many times it ran */
    bool done;     /* it ran */
    int rc;        /* its rc, the last time */
    int64_t at_ms; /* stubdm_now_ms() when it ran, the last time */
    char msg[512]; /* stubdm_op_errmsg() then (STUBDM_ERRMSG_MAX) */
};

/* A stubdm_done_fn recording into user, a struct ts_result. */
void ts_on_done(stubdm_op *op, int rc, void *user);
/* Record rc and op's message into r (for callbacks of other shapes). */
void ts_record(struct ts_result *r, stubdm_op *op, int rc);

/* Run ctx's loop until pred(arg) holds or ms pass; returns pred(arg). */
bool ts_run_until(stubdm_ctx *ctx, bool (*pred)(void *), void *arg, int ms);
/* ... until *flag. */
bool ts_run_until_flag(stubdm_ctx *ctx, const bool *flag, int ms);
/* ... until *count >= want. */
bool ts_run_until_count(stubdm_ctx *ctx, const int *count, int want, int ms);
/* ... until r's callback ran, then asserts it ran exactly once. */
void ts_run_until_done(stubdm_ctx *ctx, struct ts_result *r, int ms);
/* Run the loop for ms, whatever happens. */
void ts_spin(stubdm_ctx *ctx, int ms);

/* Run every test of s (CK_NORMAL output); EXIT_SUCCESS if none failed. */
int ts_run_suite(Suite *s);
/* An object's counters, read the one public way (*_get_stats); the
 * running test fails if the library refuses. */
stubdm_qmp_stats ts_qmp_stats(const stubdm_qmp *q);
stubdm_qmp_proxy_stats ts_proxy_stats(const stubdm_qmp_proxy *p);
stubdm_console_stats ts_console_stats(const stubdm_console *c);

/* How much slower this run is than a native one: 10 under valgrind
 * (LD_PRELOAD names its preload), 1 otherwise.  "Fails fast" bounds are
 * multiplied by it. */
int ts_time_scale(void);

/* The whole file, NUL-terminated, or NULL if it cannot be opened; free()
 * it. */
char *ts_slurp(const char *path);

/* Into out: this executable's directory, '/', rel.  0, or -1 if it does
 * not fit or /proc/self/exe cannot be read. */
int ts_exe_relative(char *out, size_t len, const char *rel);

#endif
