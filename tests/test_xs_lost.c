/*
 * A xenstored that drops the toolstack's connection in the middle of a
 * spawn (the mock's "drop-on PREFIX" and "drop-now" controls,
 * docs/mock-xenstored.md): the spawn ends, soon, with STUBDM_EXENSTORE
 * and a message that says the connection was lost (no hang, no crash),
 * and a destroy from a new ctx (a new connection) then removes
 * everything: the whole store as before, no simulated domain or process.
 */
#include "core/base.h"
#include "mockxs.h"
#include "proccheck.h"

#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#define GUEST 7

static struct mockxs mock;
static stubdm_ctx *ctx;
static char sim_program[PATH_MAX];
static char *dump_before;

static char *dump(void)
{
    char *s = NULL;
    ck_assert_int_eq(mockxs_dump(&mock, &s), 0);
    return s;
}

static void log_stderr(void *user, stubdm_log_level level, int os_errno,
                       const char *context, const char *msg)
{
    (void)user;
    (void)os_errno;
    fprintf(stderr, "[%s %d] %s\n", context, (int)level, msg);
}

static void setup(void)
{
    char self[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    ck_assert_int_gt(n, 0);
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    snprintf(sim_program, sizeof(sim_program),
             "%s/mock-xenstored/stubdm-sim-stubdom", self);
    ck_assert_int_eq(mockxs_start(&mock, NULL), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    unsetenv("STUBDM_SIM_DIR");
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    ck_assert_int_eq(stubdm_ctx_set_host(ctx, STUBDM_HOST_SIM), 0);
    if (getenv("TEST_SPAWN_VERBOSE"))
        stubdm_ctx_set_log(ctx, log_stderr, NULL, STUBDM_LOG_DEBUG);
    dump_before = dump();
}

static void teardown(void)
{
    stubdm_ctx_free(ctx);
    free(dump_before);
    ck_assert_int_eq(mockxs_stop(&mock), 0);
}

/* An XS_CONTROL command to the mock, on a connection of its own. */
static void control(const char *cmd, const char *arg)
{
    struct xs_handle *xsh = mockxs_open_as(&mock, 0);
    char *r;

    ck_assert_ptr_nonnull(xsh);
    r = xs_control_command(xsh, cmd, (char *)(arg ? arg : ""),
                           arg ? (unsigned)strlen(arg) + 1 : 0);
    ck_assert_msg(r != NULL, "control %s: %s", cmd, strerror(errno));
    free(r);
    xs_close(xsh);
}

/*
 * Where the connection goes:
 *   0  the contract's first write under the guest (CONTRACT, in a
 *      transaction);
 *   1  the nic's backend (DEVICES, in a transaction);
 *   2  while the spawn waits for running (WAIT, no request in flight: the
 *      library finds out from its watch connection).
 */
static const struct lost_case {
    const char *drop_on;  /* NULL: drop-now once in WAIT */
    const char *step;     /* the step named in the message */
} lost_cases[] = {
    { "/local/domain/7/image", "writing the xenstore contract" },
    { "/local/domain/0/backend/vif", "attaching devices" },
    { NULL, "waiting for running" },
};

START_TEST(test_xenstored_lost_mid_spawn)
{
    static const char *const args[] = { "-machine", "none" };
    static const char *const sim_args[] = { "--no-qemu", "--no-running" };
    const struct lost_case *lc = &lost_cases[_i];
    stubdm_spawn_config *c = NULL;
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    stubdm_ctx *other = NULL;
    int64_t t0, deadline;
    uint32_t domid;
    char *after;
    const char *msg;

    if (access(sim_program, X_OK) != 0)
        ck_abort_msg("%s is not built", sim_program);
    ck_assert_int_eq(stubdm_spawn_config_new(&c), 0);
    ck_assert_int_eq(stubdm_spawn_config_set_guest(c, GUEST, NULL, "test"), 0);
    ck_assert_int_eq(stubdm_spawn_config_set_args(c, args, 2), 0);
    ck_assert_int_eq(
        stubdm_spawn_config_set_sim_program(c, sim_program, sim_args, 2), 0);
    ck_assert_int_eq(stubdm_spawn_config_add_nic(c, NULL, NULL, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_config_set_timeout(c, 20000), 0);
    stubdm_ctx_set_hotplug(ctx, 0); /* no vif-bridge here */

    if (lc->drop_on)
        control("drop-on", lc->drop_on);
    ck_assert_int_eq(stubdm_spawn(ctx, c, NULL, NULL, NULL, &s, &op), 0);
    stubdm_spawn_config_free(c);
    t0 = stubdm_now_ms();
    if (!lc->drop_on) {
        while (stubdm_stubdom_step(s) != STUBDM_SPAWN_WAIT &&
               !stubdm_op_done(op))
            ck_assert_int_eq(stubdm_ctx_run_once(ctx, 1000), 0);
        ck_assert(!stubdm_op_done(op));
        /* Let the wait's watch be registered. */
        for (int i = 0; i < 5; i++)
            stubdm_ctx_run_once(ctx, 10);
        control("drop-now", NULL);
    }
    /* Well before the spawn's own 20 s timeout. */
    deadline = t0 + 5000;
    while (!stubdm_op_done(op) && stubdm_now_ms() < deadline)
        stubdm_ctx_run_once(ctx, 100);
    ck_assert_msg(stubdm_op_done(op),
                  "the spawn still runs %lld ms after the connection went",
                  (long long)(stubdm_now_ms() - t0));
    msg = stubdm_op_errmsg(op);
    ck_assert_int_eq(stubdm_op_result(op), STUBDM_EXENSTORE);
    ck_assert_msg(strstr(msg, lc->step), "'%s' does not name step '%s'", msg,
                  lc->step);
    ck_assert_msg(strstr(msg, "connection to xenstored was lost"),
                  "'%s' does not say the connection was lost", msg);
    domid = stubdm_stubdom_domid(s);
    ck_assert_uint_ne(domid, 0);
    stubdm_op_free(op);
    stubdm_stubdom_free(s);

    /* The lost connection could not clean up: a new one does. */
    ck_assert_int_eq(stubdm_ctx_new(&other), 0);
    ck_assert_int_eq(stubdm_ctx_set_host(other, STUBDM_HOST_SIM), 0);
    ck_assert_int_eq(stubdm_destroy(other, domid), 0);
    stubdm_ctx_free(other);
    after = dump();
    ck_assert_str_eq(after, dump_before);
    free(after);
    ck_assert_int_eq(proc_sim_settled(mock.dir, mock.pid), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("xs-lost");
    TCase *tc = tcase_create("spawn");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_xenstored_lost_mid_spawn, 0,
                        (int)STUBDM_ARRAY_SIZE(lost_cases));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
