/*
 * The QMP connection layer against scripted peers on the simulated host:
 * open, execute, id matching, queueing, sharing, events, the lock, the
 * reconnect marker, OOB negotiation, close and reconnect.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#include "core/ctx.h"
#include "libstubdm.h"
#include "proccheck.h"
#include "qmp_peer.h"
#include "run.h"

#define STUBDOM 5
#define GUEST 1

static struct qmp_sim sim;
static struct qmp_peer peer;
static stubdm_ctx *ctx;

static void setup(void)
{
    ck_assert_int_eq(qmp_sim_start(&sim, STUBDOM, GUEST), 0);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    peer.pid = -1;
}

static void teardown(void)
{
    stubdm_ctx_free(ctx);
    ctx = NULL;
    qmp_peer_stop(&peer);
    qmp_sim_stop(&sim);
}

struct result {
    bool done;
    int rc;
    stubdm_qmp *q;
    char json[4096];
    char ret[1024];
    char cls[128];
    char desc[256];
    char msg[512];
};

static void on_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    struct result *res = user;
    res->done = true;
    res->rc = rc;
    res->q = q;
    snprintf(res->msg, sizeof(res->msg), "%s", stubdm_op_errmsg(op));
    if (r) {
        snprintf(res->json, sizeof(res->json), "%s", stubdm_qmp_reply_json(r));
        if (stubdm_qmp_reply_return_json(r))
            snprintf(res->ret, sizeof(res->ret), "%s",
                     stubdm_qmp_reply_return_json(r));
        if (stubdm_qmp_reply_error_class(r)) {
            snprintf(res->cls, sizeof(res->cls), "%s",
                     stubdm_qmp_reply_error_class(r));
            snprintf(res->desc, sizeof(res->desc), "%s",
                     stubdm_qmp_reply_error_desc(r));
        }
    }
}

static stubdm_qmp_opts *sim_opts(void)
{
    stubdm_qmp_opts *o = NULL;
    ck_assert_int_eq(stubdm_qmp_opts_new(&o), 0);
    ck_assert_int_eq(
        stubdm_qmp_opts_set_transport(o, STUBDM_QMP_TRANSPORT_SIMULATED), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_sim_dir(o, sim.simdir), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, 3000), 0);
    return o;
}

static stubdm_qmp *open_ready(stubdm_qmp_opts *o)
{
    stubdm_qmp *q = NULL;
    int rc = stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q);
    ck_assert_msg(rc == 0, "open: %s: %s", stubdm_errname(rc),
                  stubdm_ctx_errmsg(ctx));
    ck_assert_ptr_nonnull(q);
    return q;
}

/* The stats size contract: a caller built against a shorter struct gets
 * its prefix, one built against a longer one gets the rest zeroed, a NULL
 * object gives STUBDM_EINVAL and zeros. */
static void stats_sizes(const stubdm_qmp *q)
{
    struct {
        stubdm_qmp_stats st;
        uint64_t future[2];
    } big;
    uint64_t first[2] = {0, 77};

    memset(&big, 0xff, sizeof(big));
    ck_assert_int_eq(stubdm_qmp_get_stats(q, &big.st, sizeof(big)), 0);
    ck_assert_uint_eq(big.st.commands_sent, 2);
    ck_assert_uint_eq(big.future[0], 0);
    ck_assert_uint_eq(big.future[1], 0);
    ck_assert_int_eq(stubdm_qmp_get_stats(q, (stubdm_qmp_stats *)first,
                                          sizeof(first[0])),
                     0);
    ck_assert_uint_eq(first[0], 2);
    ck_assert_uint_eq(first[1], 77);
    ck_assert_int_eq(stubdm_qmp_get_stats(q, &big.st, 0), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_get_stats(q, NULL, sizeof(big.st)),
                     STUBDM_EINVAL);
    memset(&big, 0xff, sizeof(big));
    ck_assert_int_eq(stubdm_qmp_get_stats(NULL, &big.st, sizeof(big.st)),
                     STUBDM_EINVAL);
    ck_assert_uint_eq(big.st.connects, 0);
}

START_TEST(test_open_execute)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("\"execute\":\"query-status\""),
        QP_REP("{\"return\": {\"status\": \"running\", \"running\": true}, "
               "\"id\": %s}"),
        QP_R("query-nothing"),
        QP_REP("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
               "\"The command query-nothing has not been found\"}, "
               "\"id\": %s}"),
        QP_H(2000),
        QP_E(),
    };
    struct ts_result op = {0};
    struct result r1 = {0}, r2 = {0};
    stubdm_qmp *q = NULL;
    stubdm_qmp_opts *o = sim_opts();
    int maj = 0, min = 0, mic = 0;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, ts_on_done, &op,
                                     &q, NULL),
                     0);
    stubdm_qmp_opts_free(o);
    ck_assert_ptr_nonnull(q);
    ck_assert(!op.done); /* never inside the starting call */
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    /* The server is not there yet: the open waits for ring-ref. */
    for (int i = 0; i < 5; i++)
        stubdm_ctx_run_once(ctx, 10);
    ck_assert(!op.done);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    ts_run_until_flag(ctx, &op.done, 3000);
    ck_assert_msg(op.rc == 0, "%s", op.msg);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
    ck_assert_int_eq(stubdm_qmp_qemu_version(q, &maj, &min, &mic), 0);
    ck_assert_int_eq(maj, 7);
    ck_assert_int_eq(min, 2);
    ck_assert_int_eq(mic, 0);
    ck_assert_int_eq(stubdm_qmp_is_oob_enabled(q), 0); /* not asked for */
    ck_assert_ptr_nonnull(strstr(stubdm_qmp_greeting_json(q), "\"QMP\""));

    ck_assert_int_eq(stubdm_qmp_execute(q, "query-status", NULL, 2000,
                                        on_reply, &r1, NULL),
                     0);
    ck_assert_int_eq(stubdm_qmp_execute(q, "query-nothing", "{}", 2000,
                                        on_reply, &r2, NULL),
                     0);
    ck_assert(!r1.done);
    ts_run_until_flag(ctx, &r2.done, 3000);
    ck_assert(r1.done);
    ck_assert_int_eq(r1.rc, 0);
    ck_assert_ptr_eq(r1.q, q);
    ck_assert_str_eq(r1.ret, "{\"status\":\"running\",\"running\":true}");
    ck_assert_ptr_nonnull(strstr(r1.json, "\"status\": \"running\""));
    ck_assert_int_eq(r2.rc, STUBDM_EQMP);
    ck_assert_str_eq(r2.cls, "CommandNotFound");
    ck_assert_str_eq(r2.desc, "The command query-nothing has not been found");
    ck_assert_ptr_nonnull(strstr(r2.msg, "CommandNotFound"));
    ck_assert_uint_eq(ts_qmp_stats(q).commands_sent, 2);
    ck_assert_uint_eq(ts_qmp_stats(q).replies, 2);
    stats_sizes(q);
    stubdm_qmp_free(q);
}
END_TEST

START_TEST(test_bad_arguments)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(3000), QP_E()};
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q;
    struct result r = {0};

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_execute(q, "bad name", NULL, 100, on_reply, &r,
                                        NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_execute(q, "x", "[1]", 100, on_reply, &r,
                                        NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_execute(q, "x", "{\"a\":", 100, on_reply, &r,
                                        NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_execute(q, "x", NULL, 0, on_reply, &r, NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_execute(q, "x", NULL, 100, NULL, NULL, NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_open(ctx, 0, 1, NULL, ts_on_done, NULL, &q,
                                     NULL),
                     STUBDM_EINVAL);
    ck_assert_ptr_null(q);
}
END_TEST

/* 20 commands at once: 8 on the wire, 12 queued, all matched. */
static struct {
    int done, bad;
} many;

static void on_many(stubdm_qmp *q, stubdm_op *op, int rc,
                    const stubdm_qmp_reply *r, void *user)
{
    (void)q;
    (void)op;
    char want[64];
    snprintf(want, sizeof(want), "{\"n\":%d}", (int)(intptr_t)user);
    if (rc || strcmp(stubdm_qmp_reply_return_json(r), want))
        many.bad++;
    many.done++;
}

START_TEST(test_twenty_in_flight)
{
    /* The peer checks it never sees more than 8 unanswered: it reads 8,
     * answers them in reverse order, and so on. */
    static struct qmp_peer_step script[64];
    int k = 0;
    script[k++] = (struct qmp_peer_step)QP_HS();
    for (int i = 0; i < 20; i++) {
        script[k++] = (struct qmp_peer_step)QP_R("echo-n");
        script[k++] = (struct qmp_peer_step)QP_REP(
            "{\"return\": {\"n\": %s}, \"id\": %s}");
    }
    script[k++] = (struct qmp_peer_step)QP_H(3000);
    script[k] = (struct qmp_peer_step)QP_E();
    /* QP_REP with two %s: the id is used for both the value and the id,
     * so the value tells which command the reply belongs to. */
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q;
    bool never = false;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    (void)never;
    for (int i = 0; i < 20; i++) {
        /* ids are 2.. (1 was qmp_capabilities) */
        ck_assert_int_eq(stubdm_qmp_execute(q, "echo-n", NULL, 3000, on_many,
                                            (void *)(intptr_t)(i + 2), NULL),
                         0);
    }
    ck_assert_uint_eq(ts_qmp_stats(q).commands_sent, STUBDM_QMP_MAX_IN_FLIGHT);
    ts_run_until_count(ctx, &many.done, 20, 3000);
    ck_assert_int_eq(many.done, 20);
    ck_assert_int_eq(many.bad, 0);
}
END_TEST

START_TEST(test_queue_limit)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(3000), QP_E()};
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q;
    struct result r[16];

    memset(r, 0, sizeof(r));
    ck_assert_int_eq(stubdm_qmp_opts_set_limits(o, 0, 0, 2), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_limits(o, 100, 0, 2), STUBDM_EINVAL);
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(stubdm_qmp_execute(q, "x", NULL, 5000, on_reply,
                                            &r[i], NULL),
                         0);
    ck_assert_int_eq(stubdm_qmp_execute(q, "x", NULL, 5000, on_reply, &r[10],
                                        NULL),
                     STUBDM_ELIMIT);
    /* Closing the handle cancels all ten, once each, with q == NULL. */
    stubdm_qmp_free(q);
    ts_run_until_flag(ctx, &r[9].done, 1000);
    for (int i = 0; i < 10; i++) {
        ck_assert(r[i].done);
        ck_assert_int_eq(r[i].rc, STUBDM_ECANCELED);
        ck_assert_ptr_null(r[i].q);
    }
    ck_assert(!r[10].done);
}
END_TEST

/* Two handles, one connection: each gets its own replies and events; closing
 * one cancels only its commands. */
struct evlog {
    int n;
    char last[64];
};

static void on_event(stubdm_qmp *q, const stubdm_qmp_event *ev, void *user)
{
    struct evlog *l = user;
    (void)q;
    l->n++;
    snprintf(l->last, sizeof(l->last), "%s", stubdm_qmp_event_name(ev));
}

START_TEST(test_shared_handles)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("cmd-a"),
        QP_R("cmd-b"),
        QP_REP("{\"return\": \"b\", \"id\": %s}"),
        QP_S("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 10, "
             "\"microseconds\": 20}}\r\n"
             "{\"event\": \"RESUME\", \"data\": {\"x\": 1}, \"timestamp\": "
             "{\"seconds\": 11, \"microseconds\": 21}}\r\n"),
        QP_H(2000),
        QP_E(),
    };
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q1, *q2 = NULL;
    struct ts_result op2 = {0};
    struct result ra = {0}, rb = {0};
    struct evlog all1 = {0}, stop2 = {0};

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q1 = open_ready(o);
    /* The second open shares the connection: ready without a handshake
     * (the peer would fail a second qmp_capabilities). */
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, ts_on_done, &op2,
                                     &q2, NULL),
                     0);
    stubdm_qmp_opts_free(o);
    ck_assert(!op2.done);
    ts_run_until_flag(ctx, &op2.done, 1000);
    ck_assert_int_eq(op2.rc, 0);
    ck_assert_int_eq(stubdm_qmp_subscribe(q1, NULL, on_event, &all1, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_subscribe(q2, "STOP", on_event, &stop2, NULL),
                     0);
    ck_assert_int_eq(stubdm_qmp_execute(q1, "cmd-a", NULL, 3000, on_reply, &ra,
                                        NULL),
                     0);
    ck_assert_int_eq(stubdm_qmp_execute(q2, "cmd-b", NULL, 3000, on_reply, &rb,
                                        NULL),
                     0);
    ts_run_until_flag(ctx, &rb.done, 3000);
    ck_assert_int_eq(rb.rc, 0);
    ck_assert_ptr_eq(rb.q, q2);
    ck_assert_str_eq(rb.ret, "\"b\"");
    ts_run_until_count(ctx, &all1.n, 2, 2000);
    ck_assert_int_eq(all1.n, 2);
    ck_assert_str_eq(all1.last, "RESUME");
    ck_assert_int_eq(stop2.n, 1);
    ck_assert_str_eq(stop2.last, "STOP");
    ck_assert(!ra.done);
    stubdm_qmp_free(q1); /* cancels cmd-a only */
    ts_run_until_flag(ctx, &ra.done, 1000);
    ck_assert_int_eq(ra.rc, STUBDM_ECANCELED);
    ck_assert_int_eq(stubdm_qmp_is_ready(q2), 1);
    stubdm_qmp_free(q2);
}
END_TEST

/* Event accessors, and freeing/unsubscribing from inside callbacks. */
static stubdm_qmp_sub *self_sub;
static int self_calls;
static int64_t ts_s, ts_us;
static char data_json[128];

static void on_event_unsub(stubdm_qmp *q, const stubdm_qmp_event *ev,
                           void *user)
{
    (void)user;
    self_calls++;
    stubdm_qmp_event_timestamp(ev, &ts_s, &ts_us);
    snprintf(data_json, sizeof(data_json), "%s",
             stubdm_qmp_event_data_json(ev) ? stubdm_qmp_event_data_json(ev)
                                            : "(none)");
    stubdm_qmp_sub_free(self_sub);
    stubdm_qmp_free(q); /* the last handle: the connection goes too */
}

START_TEST(test_close_from_event)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_D(100),
        QP_S("{\"event\": \"A\", \"data\": {\"k\": [1, 2]}, \"timestamp\": "
             "{\"seconds\": 7, \"microseconds\": 8}}\r\n"
             "{\"event\": \"A\", \"timestamp\": {\"seconds\": 9, "
             "\"microseconds\": 9}}\r\n"),
        QP_H(2000),
        QP_E(),
    };
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_subscribe(q, "A", on_event_unsub, NULL,
                                          &self_sub),
                     0);
    for (int i = 0; i < 40 && !self_calls; i++)
        stubdm_ctx_run_once(ctx, 50);
    for (int i = 0; i < 4; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_int_eq(self_calls, 1);
    ck_assert_int_eq(ts_s, 7);
    ck_assert_int_eq(ts_us, 8);
    ck_assert_str_eq(data_json, "{\"k\":[1,2]}");
    /* The peer sees the connection close. */
    ck_assert_int_eq(qmp_peer_wait(&peer, 3000), 0);
}
END_TEST

/* Connection loss fails every pending command once; reconnect is explicit. */
START_TEST(test_loss_and_reconnect)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_R("will-die"),
        QP_ACC(), /* close, then accept the reconnection */
        QP_HS(),
        QP_R("again"),
        QP_REP("{\"return\": 42, \"id\": %s}"),
        QP_H(2000),
        QP_E(),
    };
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q;
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    struct ts_result op = {0};

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_execute(q, "will-die", NULL, 3000, on_reply,
                                        &r1, NULL),
                     0);
    ck_assert_int_eq(stubdm_qmp_execute(q, "queued", NULL, 3000, on_reply, &r2,
                                        NULL),
                     0);
    ts_run_until_flag(ctx, &r2.done, 3000);
    ck_assert(r1.done);
    ck_assert_int_eq(r1.rc, STUBDM_EVCHAN);
    ck_assert_int_eq(r2.rc, STUBDM_EVCHAN);
    ck_assert_msg(strstr(r1.msg, "QMP connection to stubdomain 5 lost") !=
                      NULL,
                  "%s", r1.msg);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    ck_assert_int_eq(stubdm_qmp_execute(q, "again", NULL, 3000, on_reply, &r3,
                                        NULL),
                     STUBDM_ESTATE);
    ck_assert_int_eq(stubdm_qmp_reconnect(q, ts_on_done, &op, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_reconnect(q, ts_on_done, &op, NULL),
                     STUBDM_ESTATE);
    ts_run_until_flag(ctx, &op.done, 3000);
    ck_assert_msg(op.rc == 0, "%s", op.msg);
    ck_assert_int_eq(stubdm_qmp_execute(q, "again", NULL, 3000, on_reply, &r3,
                                        NULL),
                     0);
    ts_run_until_flag(ctx, &r3.done, 3000);
    ck_assert_int_eq(r3.rc, 0);
    ck_assert_str_eq(r3.ret, "42");
    ck_assert_uint_eq(ts_qmp_stats(q).connects, 2);
}
END_TEST

/* stubdm_qmp_watch_lost: an idle connection's loss is told once, with
 * its cause, to each handle's watch (no command in flight); a watch made
 * after, on the reconnected connection, sees the next; one freed pending
 * is never called; freeing the handle completes its watch ECANCELED. */
START_TEST(test_watch_lost)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(), QP_H(300), QP_ACC(), QP_HS(), QP_H(3000), QP_E(),
    };
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q, *q2;
    struct ts_result w1 = {0}, w2 = {0}, gone = {0}, re = {0}, fin = {0};
    stubdm_op *freed = NULL;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    q2 = open_ready(o); /* shares the connection */
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_watch_lost(NULL, ts_on_done, &w1, NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_watch_lost(q, ts_on_done, &w1, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_watch_lost(q2, ts_on_done, &w2, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_watch_lost(q2, ts_on_done, &gone, &freed), 0);
    stubdm_op_free(freed);
    ts_run_until_flag(ctx, &w2.done, 3000);
    ck_assert(w1.done);
    ck_assert_int_eq(w1.rc, STUBDM_EVCHAN);
    ck_assert_int_eq(w2.rc, STUBDM_EVCHAN);
    ck_assert_msg(strstr(w1.msg, "QMP connection to stubdomain 5 lost") !=
                      NULL,
                  "%s", w1.msg);
    ck_assert(!gone.done);
    memset(&w1, 0, sizeof(w1));
    ck_assert_int_eq(stubdm_qmp_watch_lost(q, ts_on_done, &w1, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_reconnect(q, ts_on_done, &re, NULL), 0);
    ts_run_until_flag(ctx, &re.done, 3000);
    ck_assert_msg(re.rc == 0, "%s", re.msg);
    ck_assert_int_eq(stubdm_qmp_watch_lost(q2, ts_on_done, &fin, NULL), 0);
    stubdm_qmp_free(q2);
    ts_run_until_flag(ctx, &fin.done, 3000);
    ck_assert_int_eq(fin.rc, STUBDM_ECANCELED);
    ck_assert(!w1.done && !gone.done);
    stubdm_qmp_free(q);
    ts_run_until_flag(ctx, &w1.done, 3000);
    ck_assert_int_eq(w1.rc, STUBDM_ECANCELED);
    ck_assert(!gone.done);
}
END_TEST

/* The open's op, when the caller takes it: cancelling it ends the open
 * with STUBDM_ECANCELED and leaves the handle to reconnect; freeing it
 * pending cancels silently. */
START_TEST(test_open_op_owned)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_H(2000),
        QP_E(),
    };
    stubdm_qmp_opts *o = sim_opts();
    struct ts_result op1 = {0}, op2 = {0}, op3 = {0};
    stubdm_qmp *q = NULL, *q2 = NULL;
    stubdm_op *open_op = NULL;

    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, ts_on_done, &op1,
                                     &q, &open_op),
                     0);
    ck_assert_ptr_nonnull(open_op);
    ck_assert(!stubdm_op_is_done(open_op));
    stubdm_op_cancel(open_op);
    ts_run_until_flag(ctx, &op1.done, 3000);
    ck_assert_int_eq(op1.rc, STUBDM_ECANCELED);
    ck_assert_int_eq(stubdm_op_result(open_op), STUBDM_ECANCELED);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    stubdm_op_free(open_op);

    /* Freed while pending: no callback, the handle stays usable. */
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, ts_on_done, &op2,
                                     &q2, &open_op),
                     0);
    stubdm_op_free(open_op);
    for (int i = 0; i < 5; i++)
        stubdm_ctx_run_once(ctx, 10);
    ck_assert(!op2.done);
    stubdm_qmp_free(q2);

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    for (int i = 0; i < 100 && stubdm_qmp_reconnect(q, ts_on_done, &op3,
                                                    &open_op) == STUBDM_ESTATE;
         i++)
        stubdm_ctx_run_once(ctx, 10);
    ck_assert_ptr_nonnull(open_op);
    ts_run_until_flag(ctx, &op3.done, 3000);
    ck_assert_msg(op3.rc == 0, "%s", op3.msg);
    ck_assert_int_eq(stubdm_op_result(open_op), 0);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
    stubdm_op_free(open_op);
    stubdm_qmp_opts_free(o);
    stubdm_qmp_free(q);
}
END_TEST

/* The marker byte comes first; oob is enabled when offered and asked. */
START_TEST(test_marker_and_oob)
{
    static const struct qmp_peer_step script[] = {
        QP_R("\x01"), /* the marker, then the peer greets */
        QP_E(),
    };
    (void)script;
    /* The marker arrives before the greeting is sent: read it raw. */
    static const struct qmp_peer_step script2[] = {
        QP_G(),
        QP_R("\x01{\"execute\":\"qmp_capabilities\",\"arguments\":"
             "{\"enable\":[\"oob\"]}"),
        QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_H(1500),
        QP_E(),
    };
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q;

    ck_assert_int_eq(stubdm_qmp_opts_set_reconnect_marker(o, 1), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_oob(o, 1), 0);
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script2), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_is_oob_enabled(q), 1);
    stubdm_qmp_free(q);
    ck_assert_int_eq(qmp_peer_wait(&peer, 3000), 0);
}
END_TEST

/* The cross-process lock: a child holds it -> EBUSY; wait mode gets it
 * once the child lets go. */
START_TEST(test_lock_across_processes)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(3000), QP_E()};
    int to_child[2], from_child[2];
    char c;
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q = NULL;
    struct ts_result op = {0};

    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(from_child), 0);
    pid_t pid = proc_child_fork();
    if (pid == 0) {
        int fd = open(sim.lock, O_RDWR | O_CREAT, 0600);
        if (fd < 0 || flock(fd, LOCK_EX))
            _exit(1);
        if (write(from_child[1], "L", 1) != 1)
            _exit(1);
        if (read(to_child[0], &c, 1) != 1)
            _exit(1);
        _exit(0); /* exiting releases the lock */
    }
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(read(from_child[0], &c, 1), 1);
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);

    /* Fail mode: EBUSY, naming the lock. */
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q),
                     STUBDM_EBUSY);
    ck_assert_ptr_null(q);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), sim.lock));

    /* Wait mode with a short timeout: ETIMEDOUT, naming the lock. */
    ck_assert_int_eq(stubdm_qmp_opts_set_lock(o, NULL, STUBDM_QMP_LOCK_WAIT),
                     0);
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, 300), 0);
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q),
                     STUBDM_ETIMEDOUT);
    ck_assert_int_lt(stubdm_now_ms() - t0, 1500 * ts_time_scale());
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx), "lock") != NULL, "%s",
                  stubdm_ctx_errmsg(ctx));

    /* Wait mode: acquires after the child lets go. */
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o,
                                                      3000 * ts_time_scale()),
                     0);
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, ts_on_done, &op,
                                     &q, NULL),
                     0);
    for (int i = 0; i < 5; i++)
        stubdm_ctx_run_once(ctx, 30);
    ck_assert(!op.done);
    ck_assert_int_eq(write(to_child[1], "x", 1), 1);
    waitpid(pid, NULL, 0);
    ts_run_until_flag(ctx, &op.done, 3000 * ts_time_scale());
    ck_assert_msg(op.rc == 0, "%s", op.msg);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
    stubdm_qmp_opts_free(o);
    stubdm_qmp_free(q);
    for (int i = 0; i < 2; i++) {
        close(to_child[i]);
        close(from_child[i]);
    }
}
END_TEST

/* The lock is released with LOCK_UN, not only closed: a child forked
 * without exec shares the lock's open file description (O_CLOEXEC only
 * acts on exec), and would otherwise keep the lock after the handle is
 * freed. */
START_TEST(test_lock_released_despite_forked_child)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp_opts *o = sim_opts();
    int go[2], fd;
    char c;
    stubdm_qmp *q;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = proc_child_fork();
    if (pid == 0) {
        close(go[1]);
        (void)!read(go[0], &c, 1); /* holds the inherited fds until killed */
        _exit(0);
    }
    ck_assert_int_gt(pid, 0);
    close(go[0]);
    stubdm_qmp_free(q);
    fd = open(sim.lock, O_RDWR | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(flock(fd, LOCK_EX | LOCK_NB) == 0,
                  "the lock outlived its handle in a forked child: %s",
                  strerror(errno));
    close(fd);
    /* Killed, not told to exit: under valgrind an exiting child would
     * report the memory of the parent's threads it does not have. */
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    close(go[1]);
}
END_TEST

/* ---- libxl's qmp-socket-lock ------------------------------------------- */

/* libxl's side, written from libxl 4.17's algorithm (libxl__lock_file,
 * ev_lock_child_callback, libxl__ev_slowlock_unlock): open O_CREAT, a
 * blocking flock(LOCK_EX), then the inode locked must still be the one at
 * the path, else unlock, close and start again.  *retries counts the
 * stale inodes. */
static int libxl_lock(const char *path, int *retries)
{
    struct stat stab, fstab;

    for (;;) {
        int fd = open(path, O_RDWR | O_CREAT, 0666);
        if (fd < 0)
            return -1;
        while (flock(fd, LOCK_EX))
            if (errno != EINTR) {
                close(fd);
                return -1;
            }
        if (fstat(fd, &fstab)) {
            close(fd);
            return -1;
        }
        if (stat(path, &stab)) {
            if (errno != ENOENT) {
                close(fd);
                return -1;
            }
        } else if (stab.st_dev == fstab.st_dev &&
                   stab.st_ino == fstab.st_ino) {
            return fd;
        }
        (*retries)++;
        flock(fd, LOCK_UN);
        close(fd);
    }
}

/* libxl's unlock: unlink before unlocking. */
static void libxl_unlock(int fd, const char *path)
{
    unlink(path);
    flock(fd, LOCK_UN);
    close(fd);
}

/* A libxl client in a child process, driven over pipes: 'L' locks
 * (answers 'l', the stale inodes it met and the inode it holds), 'U'
 * unlocks (answers 'u'), EOF ends it. */
struct libxl_client {
    pid_t pid;
    int cmd, ans;
};

struct libxl_locked {
    char tag;
    int retries;
    ino_t ino;
};

static void libxl_client_start(struct libxl_client *lc, const char *path)
{
    int to[2], from[2];

    ck_assert_int_eq(pipe(to), 0);
    ck_assert_int_eq(pipe(from), 0);
    lc->pid = proc_child_fork();
    if (lc->pid == 0) {
        int fd = -1;
        char c;
        close(to[1]);
        close(from[0]);
        while (read(to[0], &c, 1) == 1) {
            struct libxl_locked r = {0};
            struct stat st;
            if (c == 'L') {
                fd = libxl_lock(path, &r.retries);
                if (fd < 0 || fstat(fd, &st))
                    _exit(1);
                r.tag = 'l';
                r.ino = st.st_ino;
            } else {
                libxl_unlock(fd, path);
                fd = -1;
                r.tag = 'u';
            }
            if (write(from[1], &r, sizeof(r)) != sizeof(r))
                _exit(1);
        }
        _exit(0);
    }
    ck_assert_int_gt(lc->pid, 0);
    close(to[0]);
    close(from[1]);
    lc->cmd = to[1];
    lc->ans = from[0];
}

static void libxl_client_send(struct libxl_client *lc, char c)
{
    ck_assert_int_eq(write(lc->cmd, &c, 1), 1);
}

/* The client's answer, running the ctx meanwhile; false if none came
 * within ms. */
static bool libxl_client_answer(struct libxl_client *lc, int ms,
                                struct libxl_locked *r)
{
    int64_t end = stubdm_now_ms() + ms;

    while (stubdm_now_ms() < end) {
        struct pollfd p = {lc->ans, POLLIN, 0};
        if (poll(&p, 1, 0) == 1) {
            ck_assert_int_eq(read(lc->ans, r, sizeof(*r)), sizeof(*r));
            return true;
        }
        stubdm_ctx_run_once(ctx, 10);
    }
    return false;
}

static void libxl_client_stop(struct libxl_client *lc)
{
    int status = -1;

    close(lc->cmd);
    ck_assert_int_eq(waitpid(lc->pid, &status, 0), lc->pid);
    ck_assert_int_eq(status, 0);
    close(lc->ans);
}

/* The library's flock, with a hook run once before it: the race tests
 * release libxl's lock between the library's open and its flock. */
static void (*flock_hook)(int fd);

int flock(int fd, int op)
{
    if (flock_hook && (op & LOCK_NB)) {
        void (*h)(int) = flock_hook;
        flock_hook = NULL;
        h(fd);
    }
    return (int)syscall(SYS_flock, fd, op);
}

#define LIBXL_UUID "0123abcd-4567-89ef-0123-456789abcdef"

static struct libxl_client *race_client;

static void release_libxl_lock_now(int fd)
{
    struct libxl_locked r;

    (void)fd;
    libxl_client_send(race_client, 'U');
    ck_assert_int_eq(read(race_client->ans, &r, sizeof(r)), sizeof(r));
    ck_assert_int_eq(r.tag, 'u');
}

static stubdm_qmp_opts *libxl_opts(int timeout_ms)
{
    stubdm_qmp_opts *o = sim_opts();

    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(o, LIBXL_UUID, sim.simdir),
                     0);
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, timeout_ms), 0);
    return o;
}

/* While the library holds the lock, a libxl client blocks; once the handle
 * is freed it gets the lock after one stale inode (the library unlinked
 * before unlocking), and holds the file at the path. */
static void libxl_waits_for_library(struct libxl_client *lc, stubdm_qmp *q,
                                    const char *path)
{
    struct libxl_locked r;
    struct stat st;

    libxl_client_send(lc, 'L');
    ck_assert_msg(!libxl_client_answer(lc, 300, &r),
                  "libxl took the lock the library holds");
    stubdm_qmp_free(q);
    ck_assert(libxl_client_answer(lc, 3000 * ts_time_scale(), &r));
    ck_assert_int_eq(r.tag, 'l');
    ck_assert_int_eq(r.retries, 1);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_ino, r.ino);
}

START_TEST(test_libxl_lock_options)
{
    stubdm_qmp_opts *o = sim_opts();

    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(NULL, LIBXL_UUID, NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(o, NULL, NULL),
                     STUBDM_EINVAL);
    /* Only libxl's spelling names the file libxl locks. */
    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(
                         o, "0123ABCD-4567-89ef-0123-456789abcdef", NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(
                         o, "0123abcd-4567-89ef-0123-456789abcde", NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(
                         o, "0123abcd-4567-89ef-0123-456789abcdef0", NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(
                         o, "0123abcd/4567-89ef-0123-456789abcdef", NULL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(o, LIBXL_UUID, "var/lib"),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_libxl_lock(o, LIBXL_UUID, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_lock(o, NULL, STUBDM_QMP_LOCK_LIBXL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_lock(o, "rel/x.lock",
                                              STUBDM_QMP_LOCK_LIBXL),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_opts_set_lock(o, "/x.lock", 4), STUBDM_EINVAL);
    stubdm_qmp_opts_free(o);
}
END_TEST

/* A scripted QEMU, and libxl's client on libxl's lock path (into path). */
static void start_next_to_libxl(const struct qmp_peer_step *script,
                                struct libxl_client *lc, char *path,
                                size_t cap)
{
    snprintf(path, cap, "%s/userdata-l.%u." LIBXL_UUID ".qmp-socket-lock",
             sim.simdir, GUEST);
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    libxl_client_start(lc, path);
}

/* Mutual exclusion with libxl's ev_qmp both ways, on libxl's path. */
START_TEST(test_libxl_lock_both_ways)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp_opts *o = libxl_opts(3000 * ts_time_scale());
    struct libxl_client lc;
    struct libxl_locked r;
    struct ts_result op = {0};
    stubdm_qmp *q = NULL;
    char path[512];

    start_next_to_libxl(script, &lc, path, sizeof(path));

    /* libxl holds it: the library waits, then gets it. */
    libxl_client_send(&lc, 'L');
    ck_assert(libxl_client_answer(&lc, 3000, &r));
    ck_assert_int_eq(r.retries, 0);
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, ts_on_done, &op,
                                     &q, NULL),
                     0);
    ts_spin(ctx, 300);
    ck_assert(!op.done);
    libxl_client_send(&lc, 'U');
    ck_assert(libxl_client_answer(&lc, 3000, &r));
    ck_assert_int_eq(r.tag, 'u');
    ts_run_until_flag(ctx, &op.done, 3000 * ts_time_scale());
    ck_assert_msg(op.rc == 0, "%s", op.msg);
    ck_assert_int_eq(access(path, F_OK), 0);
    ck_assert_int_eq(access(sim.lock, F_OK), -1); /* not the library's own */

    /* The library holds it: libxl waits, then gets it. */
    libxl_waits_for_library(&lc, q, path);

    /* libxl holds it again: the library's open times out at the lock. */
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, 300), 0);
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q),
                     STUBDM_ETIMEDOUT);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx), path) != NULL, "%s",
                  stubdm_ctx_errmsg(ctx));
    libxl_client_send(&lc, 'U');
    ck_assert(libxl_client_answer(&lc, 3000, &r));
    ck_assert_int_eq(access(path, F_OK), -1); /* libxl unlinked it */
    libxl_client_stop(&lc);
    stubdm_qmp_opts_free(o);
}
END_TEST

/* The unlink race on the library's side: libxl releases (unlink, unlock)
 * between the library's open and its flock, so the library's flock
 * succeeds on an inode no longer at the path.  It must see that and start
 * again; holding the stale inode, it would let the next libxl client
 * (which creates a new file) in beside it. */
START_TEST(test_libxl_lock_stale_inode)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp_opts *o = libxl_opts(3000 * ts_time_scale());
    struct libxl_client lc;
    struct libxl_locked r;
    struct stat st;
    stubdm_qmp *q = NULL;
    char path[512];

    start_next_to_libxl(script, &lc, path, sizeof(path));
    libxl_client_send(&lc, 'L');
    ck_assert(libxl_client_answer(&lc, 3000, &r));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_ino, r.ino);

    race_client = &lc;
    flock_hook = release_libxl_lock_now;
    q = open_ready(o);
    ck_assert_ptr_null(flock_hook); /* the race did happen */
    ck_assert_int_eq(access(path, F_OK), 0);
    libxl_waits_for_library(&lc, q, path);
    libxl_client_send(&lc, 'U');
    ck_assert(libxl_client_answer(&lc, 3000, &r));
    libxl_client_stop(&lc);
    stubdm_qmp_opts_free(o);
}
END_TEST

/* Freeing the ctx with open handles and pending commands: no leak (valgrind
 * / ASan check this), no callback. */
static int never_called;
static void on_never(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    (void)q, (void)op, (void)rc, (void)r, (void)user;
    never_called++;
}

START_TEST(test_ctx_free_with_pending)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_H(2000), QP_E()};
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q, *q2 = NULL;
    stubdm_op *held = NULL;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, ts_on_done, NULL,
                                     &q2, NULL),
                     0);
    stubdm_qmp_opts_free(o);
    for (int i = 0; i < 12; i++)
        ck_assert_int_eq(stubdm_qmp_execute(q, "x", NULL, 5000, on_never, NULL,
                                            i == 0 ? &held : NULL),
                         0);
    ck_assert_int_eq(stubdm_qmp_subscribe(q, NULL, on_event, NULL, NULL), 0);
    stubdm_ctx_free(ctx);
    ctx = NULL;
    ck_assert_int_eq(never_called, 0);
    stubdm_op_free(held); /* a held op outlives its ctx */
}
END_TEST

/* ---- the proxy's socket: mode and client credentials ---------------------- */

static char proxy_log[8192];

static void capture_log(void *user, stubdm_log_level level, int os_errno,
                        const char *context, const char *msg)
{
    size_t n = strlen(proxy_log);
    (void)user;
    (void)level;
    (void)os_errno;
    snprintf(proxy_log + n, sizeof(proxy_log) - n, "%s: %s\n", context, msg);
}

/* Connect to path and read: 0 when the greeting came, 3 when the proxy
 * closed at once, 2 on a connect failure, 4 on anything else. */
static int connect_and_read(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[256];
    ssize_t n;
    int fd;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
        return 2;
    n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return 3;
    buf[n] = '\0';
    return strstr(buf, "\"QMP\"") ? 0 : 4;
}

/* A child that becomes uid/gid 65534 (nobody) and runs connect_and_read
 * in this binary afresh (main's --connect): not in the forked copy, whose
 * exit valgrind would check for the leaks of threads it does not have.
 * Exits 1x on a setup failure. */
static pid_t connect_as_nobody(const char *path)
{
    char self[4096];
    /* readlink, not exec of /proc/self/exe: under valgrind that is
     * valgrind's own binary, while readlink gives this test's. */
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    pid_t pid;

    ck_assert_int_gt(n, 0);
    self[n] = '\0';
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        gid_t none[1] = {65534};
        if (setgroups(0, none))
            _exit(11);
        if (setgid(65534))
            _exit(12);
        if (setuid(65534))
            _exit(13);
        execl(self, "test_qmp", "--connect", path, (char *)NULL);
        _exit(14);
    }
    return pid;
}

static int wait_child(pid_t pid)
{
    int status = 0;
    for (int i = 0; i < 400; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
        stubdm_ctx_run_once(ctx, 10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 101;
}

START_TEST(test_proxy_mode_and_credentials)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(),
        QP_H(5000),
        QP_E(),
    };
    char dir[] = "/tmp/stubdm-proxy.XXXXXX", path[128];
    stubdm_qmp_proxy *p = NULL;
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q;
    struct stat st;
    mode_t old;

    ck_assert_msg(geteuid() == 0, "needs root (setuid in the child)");
    proxy_log[0] = '\0';
    stubdm_ctx_set_log(ctx, capture_log, NULL, STUBDM_LOG_INFO);
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chmod(dir, 0755), 0); /* nobody may reach the socket */
    snprintf(path, sizeof(path), "%s/proxy.sock", dir);

    /* The mode does not come from the umask, and the umask is untouched. */
    old = umask(0);
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path, 5000, &p), 0);
    ck_assert_uint_eq(umask(old), 0);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_msg((st.st_mode & 0777) == 0600, "socket mode %o",
                  (unsigned)(st.st_mode & 0777));

    /* A permissive mode set behind the proxy's back: the credentials still
     * keep uid nobody out, and the refusal names it. */
    ck_assert_int_eq(chmod(path, 0666), 0);
    ck_assert_int_eq(wait_child(connect_as_nobody(path)), 3);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_refused, 1);
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 0);
    ck_assert_msg(strstr(proxy_log, "refusing a client") &&
                      strstr(proxy_log, "uid 65534 gid 65534"),
                  "log: %s", proxy_log);

    /* Its group allowed: 0660, group 65534, and nobody is served. */
    ck_assert_int_eq(stubdm_qmp_proxy_allow_group(p, 65534), 0);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0660);
    ck_assert_uint_eq(st.st_gid, 65534);
    ck_assert_int_eq(wait_child(connect_as_nobody(path)), 0);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_refused, 1);
    ck_assert_msg(strstr(proxy_log, "client connected") &&
                      strstr(proxy_log, "uid 65534"),
                  "log: %s", proxy_log);
    ck_assert_int_eq(stubdm_qmp_proxy_allow_group(p, (uint32_t)-1),
                     STUBDM_EINVAL);

    stubdm_qmp_proxy_free(p);
    stubdm_qmp_free(q);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ---- the proxy: one client's flood does not hold the loop ---------------- */

struct flooder {
    int fd;
    atomic_bool stop;
    atomic_ulong sent, got;
};

/* Commands the proxy answers itself (negotiation is complete: each gets a
 * CommandNotFound error), as fast as the socket takes them. */
static void *flood_writer(void *arg)
{
    struct flooder *f = arg;
    static const char cmd[] = "{\"execute\":\"qmp_capabilities\"}";
    char buf[16384];
    size_t n = 0;

    while (n + sizeof(cmd) - 1 <= sizeof(buf)) {
        memcpy(buf + n, cmd, sizeof(cmd) - 1);
        n += sizeof(cmd) - 1;
    }
    while (!atomic_load(&f->stop)) {
        ssize_t w = send(f->fd, buf, n, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        atomic_fetch_add(&f->sent, (unsigned long)w);
    }
    return NULL;
}

static void *flood_reader(void *arg)
{
    struct flooder *f = arg;
    static char buf[1 << 20];

    while (!atomic_load(&f->stop)) {
        struct pollfd pfd = {f->fd, POLLIN, 0};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        ssize_t r = recv(f->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0)
            break;
        if (r > 0)
            atomic_fetch_add(&f->got, (unsigned long)r);
    }
    return NULL;
}

/* CPU time of the calling thread, in ms. */
static int64_t thread_cpu_ms(void)
{
    struct timespec ts;

    ck_assert_int_eq(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), 0);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(test_proxy_client_flood_yields)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    static const char nego[] = "{\"execute\":\"qmp_capabilities\"}";
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp_proxy *p = NULL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct flooder f = {.fd = -1};
    pthread_t wt, rt;
    int64_t worst = 0, end;
    const int64_t limit = 300 * ts_time_scale();
    stubdm_qmp *q;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready(o);
    stubdm_qmp_opts_free(o);
    ck_assert_uint_lt(strlen(sim.simdir) + 12, sizeof(sa.sun_path));
    memcpy(sa.sun_path, sim.simdir, strlen(sim.simdir));
    memcpy(sa.sun_path + strlen(sim.simdir), "/proxy.sock", 12);
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, sa.sun_path, 5000, &p), 0);
    /* Room for everything the flood gets answered: only time may stop it. */
    ck_assert_int_eq(stubdm_qmp_proxy_set_limits(p, 4, (size_t)1 << 30), 0);
    f.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f.fd, 0);
    ck_assert_int_eq(connect(f.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(send(f.fd, nego, sizeof(nego) - 1, 0),
                     (ssize_t)sizeof(nego) - 1);
    ck_assert_int_eq(pthread_create(&rt, NULL, flood_reader, &f), 0);
    ck_assert_int_eq(pthread_create(&wt, NULL, flood_writer, &f), 0);
    /* Every dispatch returns soon, whatever the client keeps sending: the
     * loop serves the other stubdomains and timers meanwhile.  Measured in
     * this thread's CPU time, the work a dispatch does: the flooding
     * threads, the peer and a loaded machine do not count in it, an
     * unbounded read loop does. */
    end = stubdm_now_ms() + 1500;
    while (stubdm_now_ms() < end) {
        int64_t t0 = thread_cpu_ms();
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 50), 0);
        if (thread_cpu_ms() - t0 > worst)
            worst = thread_cpu_ms() - t0;
        if (worst >= limit)
            break;
    }
    atomic_store(&f.stop, true);
    shutdown(f.fd, SHUT_RDWR);
    pthread_join(wt, NULL);
    pthread_join(rt, NULL);
    close(f.fd);
    ck_assert_msg(atomic_load(&f.got) > 0, "the proxy answered nothing");
    ck_assert_msg(worst < limit,
                  "one dispatch took %" PRId64 " ms of CPU serving one client "
                  "(%lu bytes sent)",
                  worst, atomic_load(&f.sent));
    stubdm_qmp_proxy_free(p);
    stubdm_qmp_free(q);
}
END_TEST

/* ---- opens sharing the death monitor ------------------------------------ */

static const unsigned perm3[6][3] = {{5, 6, 7}, {5, 7, 6}, {6, 5, 7},
                                     {6, 7, 5}, {7, 5, 6}, {7, 6, 5}};

/* Opens to stubdomains 5 and 6 (waiting for their QMP servers) and a wait
 * for 7's "running", all subscribed to the one @releaseDomain watch: each
 * fails with EDOMAIN_GONE after its own stubdomain's release, in every
 * order of the deaths.  The code tells a death seen from a missed one
 * (that would end at the 20 s timeout); the bound is only the test's
 * patience, so a loaded machine cannot fail it. */
START_TEST(test_opens_and_wait_deaths_in_every_order)
{
    const unsigned *deaths = perm3[_i];
    const int bound = 10000;
    struct ts_result w[3];
    stubdm_qmp *q[2] = {NULL, NULL};
    stubdm_qmp_opts *o = sim_opts();

    memset(w, 0, sizeof(w));
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, 20000), 0);
    for (unsigned d = 6; d <= 7; d++) {
        char path[64];
        ck_assert(xs_introduce_domain(sim.xs, d, 1, 1));
        snprintf(path, sizeof(path), "/local/domain/%u/device-model/%u", d,
                 GUEST);
        ck_assert(xs_mkdir(sim.xs, XBT_NULL, path));
    }
    for (unsigned i = 0; i < 2; i++)
        ck_assert_int_eq(stubdm_qmp_open(ctx, 5 + i, GUEST, o, ts_on_done,
                                         &w[i], &q[i], NULL),
                         0);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 7, GUEST, 20000, ts_on_done,
                                            &w[2], NULL),
                     0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 10), 0);
    for (int d = 0; d < 3; d++) {
        struct ts_result *mine = &w[deaths[d] - 5];
        int64_t released = stubdm_now_ms();
        ck_assert(xs_release_domain(sim.xs, deaths[d]));
        while (!mine->calls && stubdm_now_ms() - released < bound)
            ck_assert_int_eq(stubdm_ctx_run_once(ctx, 10), 0);
        ck_assert_msg(mine->calls == 1,
                      "death %d (domain %u): not seen within %d ms", d + 1,
                      deaths[d], bound);
        ck_assert_int_eq(mine->rc, STUBDM_EDOMAIN_GONE);
        ck_assert_int_lt(mine->at_ms - released, bound);
        for (int j = d + 1; j < 3; j++)
            ck_assert_int_eq(w[deaths[j] - 5].calls, 0);
    }
    for (unsigned i = 0; i < 2; i++) {
        ck_assert_int_eq(stubdm_qmp_is_ready(q[i]), 0);
        stubdm_qmp_free(q[i]);
    }
    ck_assert_uint_eq(ctx->n_domwatches, 0);
    ck_assert_ptr_null(ctx->release_watch.path);
}
END_TEST

/* ---- reconnect, close and free from every callback, anywhere in a read ---- */

/* The peer sends several messages in one write (one read for us), then
 * stops reading, so the first write after that fails and takes the
 * connection down inside the callback that made it: the "event
 * callback sees the connection go down and reconnects".  From the event,
 * reply and open callbacks, at each position, the callback reconnects,
 * closes its handle or frees the ctx.  ASan and valgrind check that no
 * frame touches what went. */
enum re_kind { K_EVENT, K_REPLY, K_OPEN };
enum re_action { A_RECONNECT, A_CLOSE, A_FREE };

struct re_count {
    int calls, rc;
};

static struct {
    enum re_kind kind;
    enum re_action action;
    int pos;
    bool acted;
    int act_rc;
    stubdm_qmp *q[3];
    int events[3];
    struct re_count reply[3], open[3], breaker, reopen, after;
} re;

static void on_re_breaker(stubdm_qmp *q, stubdm_op *op, int rc,
                          const stubdm_qmp_reply *r, void *user)
{
    (void)q, (void)op, (void)r, (void)user;
    re.breaker.calls++;
    re.breaker.rc = rc;
}

static void on_re_reopen(stubdm_op *op, int rc, void *user)
{
    (void)op, (void)user;
    re.reopen.calls++;
    re.reopen.rc = rc;
}

static void on_re_after(stubdm_qmp *q, stubdm_op *op, int rc,
                        const stubdm_qmp_reply *r, void *user)
{
    (void)q, (void)op, (void)r, (void)user;
    re.after.calls++;
    re.after.rc = rc;
}

static void re_act(int h)
{
    stubdm_qmp *q = re.q[h];

    re.acted = true;
    switch (re.action) {
    case A_RECONNECT:
        /* The peer reads no more: this write fails, the connection goes
         * down, and the natural reaction is an explicit reconnect. */
        if (stubdm_qmp_is_ready(q))
            stubdm_qmp_execute(q, "breaker", NULL, 5000, on_re_breaker, NULL,
                               NULL);
        re.act_rc = stubdm_qmp_reconnect(q, on_re_reopen, NULL, NULL);
        break;
    case A_CLOSE:
        stubdm_qmp_free(q);
        re.q[h] = NULL;
        break;
    case A_FREE:
        stubdm_ctx_free(ctx);
        ctx = NULL;
        break;
    }
}

static void on_re_event(stubdm_qmp *q, const stubdm_qmp_event *ev, void *user)
{
    const char *d = stubdm_qmp_event_data_json(ev); /* {"i":N} */
    int i = d && strlen(d) == 7 ? d[5] - '0' : -1;

    (void)q, (void)user;
    if (i < 0 || i > 2)
        return;
    re.events[i]++;
    if (re.kind == K_EVENT && i == re.pos && !re.acted)
        re_act(0);
}

static void on_re_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                        const stubdm_qmp_reply *r, void *user)
{
    int i = (int)(intptr_t)user;

    (void)q, (void)op, (void)r;
    re.reply[i].calls++;
    re.reply[i].rc = rc;
    if (re.kind == K_REPLY && i == re.pos && !re.acted)
        re_act(0);
}

static void on_re_open(stubdm_op *op, int rc, void *user)
{
    int i = (int)(intptr_t)user;

    (void)op;
    re.open[i].calls++;
    re.open[i].rc = rc;
    if (re.kind == K_OPEN && i == re.pos && !re.acted)
        re_act(i);
}

#define RE_EV(i)                                                              \
    "{\"event\": \"E\", \"data\": {\"i\": " #i "}, \"timestamp\": "           \
    "{\"seconds\": 1, \"microseconds\": 2}}\r\n"
#define RE_RET(v, id) "{\"return\": " #v ", \"id\": " #id "}\r\n"
/* The smallest event QEMU could send: 58 bytes. */
#define RE_FILLER                                                             \
    "{\"event\":\"F\",\"timestamp\":{\"seconds\":0,\"microseconds\":0}}\r\n"
/* More messages than the wire queues at once (1024), in less than one
 * read (64 KiB): the read feeds the wire, takes 1024 messages, then feeds
 * it the rest of the same chunk. */
#define RE_FILLERS 1100

static char re_chunk[RE_FILLERS * 64];

/* head, RE_FILLERS filler events, tail: one write of the peer. */
static const char *re_build(const char *head, const char *tail)
{
    size_t n = strlen(head), f = strlen(RE_FILLER);

    ck_assert_uint_lt(n + RE_FILLERS * f + strlen(tail), sizeof(re_chunk));
    memcpy(re_chunk, head, n);
    for (int i = 0; i < RE_FILLERS; i++, n += f)
        memcpy(re_chunk + n, RE_FILLER, f);
    strcpy(re_chunk + n, tail);
    ck_assert_uint_lt(strlen(re_chunk), 65536);
    return re_chunk;
}

static bool re_finished(void)
{
    struct re_count *c = re.kind == K_OPEN ? re.open : re.reply;

    if (!ctx)
        return true;
    for (int i = 0; i < 3; i++)
        if (!c[i].calls)
            return false;
    return re.action != A_RECONNECT || (re.reopen.calls && re.breaker.calls);
}

START_TEST(test_reentry_from_callbacks)
{
    /* Events and replies interleaved (reply j precedes event j), the
     * third pair after the fillers, so past the first 1024 messages. */
    struct qmp_peer_step after_cmds[] = {
        QP_HS(),    QP_R("cmd"), QP_R("cmd"), QP_R("cmd"), QP_SHR(),
        QP_S(NULL), QP_ACC(),    QP_HS(),     QP_ANS(),    QP_E(),
    };
    /* The answer to qmp_capabilities and the events in one write. */
    struct qmp_peer_step at_open[] = {
        QP_G(),   QP_R("qmp_capabilities"),
        QP_SHR(), QP_S(NULL),
        QP_ACC(), QP_HS(),
        QP_ANS(), QP_E(),
    };
    stubdm_qmp_opts *o = sim_opts();
    int k, nq;

    memset(&re, 0, sizeof(re));
    re.kind = (enum re_kind)(_i / 9);
    re.action = (enum re_action)(_i / 3 % 3);
    re.pos = k = _i % 3;
    nq = re.kind == K_OPEN ? 3 : 1;
    if (re.kind == K_OPEN)
        at_open[3].text = re_build(RE_RET({}, 1) RE_EV(0) RE_EV(1), RE_EV(2));
    else
        after_cmds[5].text = re_build(RE_RET(0, 2) RE_EV(0) RE_RET(1, 3)
                                          RE_EV(1),
                                      RE_RET(2, 4) RE_EV(2));
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock,
                                    re.kind == K_OPEN ? at_open : after_cmds),
                     0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    if (re.kind == K_OPEN) {
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o,
                                             on_re_open, (void *)(intptr_t)i,
                                             &re.q[i], NULL),
                             0);
    } else {
        re.q[0] = open_ready(o);
    }
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_subscribe(re.q[0], "E", on_re_event, NULL,
                                          NULL),
                     0);
    if (re.kind != K_OPEN)
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(stubdm_qmp_execute(re.q[0], "cmd", NULL, 5000,
                                                on_re_reply,
                                                (void *)(intptr_t)i, NULL),
                             0);
    int64_t end = stubdm_now_ms() + 5000 * ts_time_scale();
    while (!re_finished() && stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 20), 0);
    ck_assert_msg(re_finished(),
                  "kind %d action %d position %d: callbacks "
                  "missing",
                  re.kind, re.action, k);
    ck_assert(re.acted);

    /* Events: those before the action's point, each exactly once. */
    for (int i = 0; i < 3; i++) {
        int want = re.kind != K_EVENT || i <= k ? 1 : 0;
        ck_assert_msg(re.events[i] == want, "event %d delivered %d times", i,
                      re.events[i]);
    }
    /* Replies (or opens): each completed at most once, with the result of
     * what the peer sent before the action. */
    struct re_count *c = re.kind == K_OPEN ? re.open : re.reply;
    for (int i = 0; i < 3; i++) {
        if (re.action == A_FREE) {
            /* Freed from a callback: no callback after it. */
            int want = re.kind == K_EVENT ? 0 : i <= k ? 1 : 0;
            ck_assert_int_eq(c[i].calls, want);
            if (want)
                ck_assert_int_eq(c[i].rc, 0);
            continue;
        }
        ck_assert_int_eq(c[i].calls, 1);
        int want = 0;
        if (re.kind == K_EVENT && i > k)
            want = re.action == A_RECONNECT ? STUBDM_EVCHAN : STUBDM_ECANCELED;
        ck_assert_msg(c[i].rc == want, "callback %d: %s, expected %s", i,
                      stubdm_errname(c[i].rc), stubdm_errname(want));
    }
    if (re.action == A_FREE) {
        ck_assert_ptr_null(ctx);
        return;
    }
    /* The handles left share one connection, ready (again). */
    for (int i = 0; i < nq; i++)
        if (re.q[i])
            ck_assert_int_eq(stubdm_qmp_is_ready(re.q[i]), 1);
    if (re.action == A_CLOSE) {
        for (int i = 0; i < nq; i++)
            stubdm_qmp_free(re.q[i]);
        return;
    }
    /* Reconnected: the peer's second connection serves a command. */
    int h = nq > 1 ? k : 0;
    ck_assert_int_eq(re.act_rc, 0);
    ck_assert_int_eq(re.breaker.rc, STUBDM_EVCHAN);
    ck_assert_int_eq(re.reopen.rc, 0);
    ck_assert_int_eq(stubdm_qmp_is_ready(re.q[h]), 1);
    ck_assert_int_eq(stubdm_qmp_execute(re.q[h], "after", NULL, 5000,
                                        on_re_after, NULL, NULL),
                     0);
    end = stubdm_now_ms() + 5000 * ts_time_scale();
    while (!re.after.calls && stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 20), 0);
    ck_assert_int_eq(re.after.calls, 1);
    ck_assert_int_eq(re.after.rc, 0);
    ck_assert_uint_eq(ts_qmp_stats(re.q[h]).connects, 2);
    for (int i = 0; i < nq; i++)
        stubdm_qmp_free(re.q[i]);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("qmp");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_open_execute);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_twenty_in_flight);
    tcase_add_test(tc, test_queue_limit);
    tcase_add_test(tc, test_shared_handles);
    tcase_add_test(tc, test_close_from_event);
    tcase_add_test(tc, test_loss_and_reconnect);
    tcase_add_test(tc, test_watch_lost);
    tcase_add_test(tc, test_open_op_owned);
    tcase_add_test(tc, test_marker_and_oob);
    tcase_add_test(tc, test_lock_across_processes);
    tcase_add_test(tc, test_lock_released_despite_forked_child);
    tcase_add_test(tc, test_libxl_lock_options);
    tcase_add_test(tc, test_libxl_lock_both_ways);
    tcase_add_test(tc, test_libxl_lock_stale_inode);
    tcase_add_test(tc, test_ctx_free_with_pending);
    tcase_add_test(tc, test_proxy_mode_and_credentials);
    tcase_add_test(tc, test_proxy_client_flood_yields);
    tcase_add_loop_test(tc, test_opens_and_wait_deaths_in_every_order, 0, 6);
    /* 3 callback kinds x 3 actions x 3 positions */
    tcase_add_loop_test(tc, test_reentry_from_callbacks, 0, 27);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--connect"))
        return connect_and_read(argv[2]);
    return ts_run_suite(suite());
}
