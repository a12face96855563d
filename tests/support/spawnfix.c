/* See spawnfix.h. */
#include "spawnfix.h"

#include "xen/xs.h"
#include "proccheck.h"
#include "run.h"
#include "xsfix.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xenstore.h>

void spawnfix_log_stderr(void *user, stubdm_log_level level, int os_errno,
                         const char *context, const char *msg)
{
    (void)user;
    (void)os_errno;
    fprintf(stderr, "[%s %d] %s\n", context, (int)level, msg);
}

char *spawnfix_dump(struct spawnfix *f)
{
    return xsfix_dump(&f->mock);
}

/* The fds the ctx keeps once used: the xenstore connection, libxenstore's
 * watch pipe (opened with the first watch, or xs_fileno), the loop's epoll
 * set and timerfd (made by the first stubdm_ctx_run_once). */
static void open_kept_fds(stubdm_ctx *ctx)
{
    stubdm_stubdom_list *l = NULL;
    struct xs_handle *xsh = NULL;

    ck_assert_int_eq(stubdm_stubdom_list_new(ctx, &l), 0);
    ck_assert_uint_eq(stubdm_stubdom_list_count(l), 0);
    stubdm_stubdom_list_free(l);
    ck_assert_int_eq(stubdm__xs_handle(ctx, &xsh), 0);
    ck_assert_int_ge(xs_fileno(xsh), 0);
    ck_assert_int_eq(stubdm_ctx_run_once(ctx, 0), 0);
}

void spawnfix_setup(struct spawnfix *f, const struct spawnfix_opts *opts)
{
    static const struct spawnfix_opts none;

    if (!opts)
        opts = &none;
    ck_assert_int_eq(ts_exe_relative(f->sim_program, sizeof(f->sim_program),
                                     "mock-xenstored/stubdm-sim-stubdom"),
                     0);
    ck_assert_int_eq(mockxs_start(&f->mock, NULL), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&f->mock), 1);
    unsetenv("STUBDM_SIM_DIR");
    ck_assert_int_eq(stubdm_ctx_new(&f->ctx), 0);
    ck_assert_int_eq(stubdm_ctx_set_host(f->ctx, STUBDM_HOST_SIM), 0);
    if (opts->log)
        stubdm_ctx_set_log(f->ctx, opts->log, opts->log_user, opts->log_level);
    else if (opts->verbose_env && getenv(opts->verbose_env))
        stubdm_ctx_set_log(f->ctx, spawnfix_log_stderr, NULL,
                           STUBDM_LOG_DEBUG);
    if (opts->baseline)
        open_kept_fds(f->ctx);
    f->dump_before = spawnfix_dump(f);
    f->fds_before = proc_count_fds();
}

void spawnfix_teardown(struct spawnfix *f)
{
    stubdm_ctx_free(f->ctx);
    f->ctx = NULL;
    free(f->dump_before);
    f->dump_before = NULL;
    ck_assert_int_eq(mockxs_stop(&f->mock), 0);
}

void spawnfix_assert_clean(struct spawnfix *f, bool children)
{
    char *after = spawnfix_dump(f);
    ck_assert_str_eq(after, f->dump_before);
    free(after);
    ck_assert_int_eq(proc_sim_settled(f->mock.dir, f->mock.pid), 0);
    if (children)
        ck_assert_int_eq(proc_children_settled(f->mock.pid), 0);
    ck_assert_int_eq(proc_count_fds(), f->fds_before);
}

void spawnfix_need_sim_stubdom(const struct spawnfix *f)
{
    ck_assert_msg(access(f->sim_program, X_OK) == 0,
                  "%s is not built: the spawn tests need it", f->sim_program);
}

stubdm_spawn_opts *spawnfix_config(const struct spawnfix *f, unsigned guest,
                                   const char *const *args, size_t nargs,
                                   const char *const *sim_args, size_t nsim,
                                   int timeout_ms)
{
    stubdm_spawn_opts *c = NULL;

    ck_assert_int_eq(stubdm_spawn_opts_new(&c), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_guest(c, guest, NULL, "test"), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_args(c, args, nargs), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_sim_program(c, f->sim_program,
                                                       sim_args, nsim),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_set_timeout(c, timeout_ms), 0);
    return c;
}
