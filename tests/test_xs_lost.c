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
#include "run.h"
#include "spawnfix.h"

#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#define GUEST 7

static struct spawnfix fx;

static void setup(void)
{
    static const struct spawnfix_opts o = {
        .verbose_env = "TEST_SPAWN_VERBOSE"};
    spawnfix_setup(&fx, &o);
}

static void teardown(void)
{
    spawnfix_teardown(&fx);
}

/* An XS_CONTROL command to the mock, on a connection of its own. */
static void control(const char *cmd, const char *arg)
{
    struct xs_handle *xsh = mockxs_open_as(&fx.mock, 0);
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
    const char *drop_on; /* NULL: drop-now once in WAIT */
    const char *step;    /* the step named in the message */
} lost_cases[] = {
    {"/local/domain/7/image", "writing the xenstore contract"},
    {"/local/domain/0/backend/vif", "attaching devices"},
    {NULL, "waiting for running"},
};

START_TEST(test_xenstored_lost_mid_spawn)
{
    static const char *const args[] = {"-machine", "none"};
    static const char *const sim_args[] = {"--no-qemu", "--no-running"};
    const struct lost_case *lc = &lost_cases[_i];
    stubdm_spawn_opts *c;
    stubdm_stubdom *s = NULL;
    stubdm_op *op = NULL;
    stubdm_ctx *other = NULL;
    int64_t t0, deadline;
    uint32_t domid;
    char *after;
    const char *msg;

    spawnfix_need_sim_stubdom(&fx);
    c = spawnfix_config(&fx, GUEST, args, 2, sim_args, 2, 20000);
    ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, NULL, NULL, NULL), 0);
    stubdm_ctx_set_hotplug(fx.ctx, 0); /* no vif-bridge here */

    if (lc->drop_on)
        control("drop-on", lc->drop_on);
    ck_assert_int_eq(stubdm_spawn(fx.ctx, c, NULL, NULL, NULL, &s, &op), 0);
    stubdm_spawn_opts_free(c);
    t0 = stubdm_now_ms();
    if (!lc->drop_on) {
        while (stubdm_stubdom_step(s) != STUBDM_SPAWN_STEP_WAIT &&
               !stubdm_op_is_done(op))
            ck_assert_int_eq(stubdm_ctx_run_once(fx.ctx, 1000), 0);
        ck_assert(!stubdm_op_is_done(op));
        /* Let the wait's watch be registered. */
        for (int i = 0; i < 5; i++)
            stubdm_ctx_run_once(fx.ctx, 10);
        control("drop-now", NULL);
    }
    /* Well before the spawn's own 20 s timeout. */
    deadline = t0 + 5000;
    while (!stubdm_op_is_done(op) && stubdm_now_ms() < deadline)
        stubdm_ctx_run_once(fx.ctx, 100);
    ck_assert_msg(stubdm_op_is_done(op),
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
    ck_assert_int_eq(stubdm_stubdom_destroy_by_domid_sync(other, domid, 0), 0);
    stubdm_ctx_free(other);
    after = spawnfix_dump(&fx);
    ck_assert_str_eq(after, fx.dump_before);
    free(after);
    ck_assert_int_eq(proc_sim_settled(fx.mock.dir, fx.mock.pid), 0);
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
    return ts_run_suite(suite());
}
