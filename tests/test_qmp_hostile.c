/*
 * Hostile QMP peers: every misbehaviour ends in a clear, exact error within
 * its timeout, with bounded memory and no crash (run under ASan/UBSan and
 * valgrind too).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <xenstore.h>

#include "core/base.h"
#include "libstubdm.h"
#include "proccheck.h"
#include "qmp_peer.h"
#include "run.h"

#define STUBDOM 7
#define GUEST 3

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

static stubdm_qmp_opts *opts(int open_timeout_ms)
{
    stubdm_qmp_opts *o = NULL;
    ck_assert_int_eq(stubdm_qmp_opts_new(&o), 0);
    ck_assert_int_eq(
        stubdm_qmp_opts_set_transport(o, STUBDM_QMP_TRANSPORT_SIMULATED), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, open_timeout_ms), 0);
    return o;
}

/* Open against the script; returns the open's code, *q_out the handle
 * (NULL on failure), *ms how long it took. */
static int open_against(const struct qmp_peer_step *script, stubdm_qmp_opts *o,
                        stubdm_qmp **q_out, int64_t *ms)
{
    int64_t t0;
    int rc;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    t0 = stubdm_now_ms();
    rc = stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, q_out);
    if (ms)
        *ms = stubdm_now_ms() - t0;
    stubdm_qmp_opts_free(o);
    return rc;
}

struct result {
    bool done;
    int rc;
    char msg[512];
    char ret[256];
};

static void on_reply(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *r, void *user)
{
    struct result *res = user;
    (void)q;
    res->done = true;
    res->rc = rc;
    snprintf(res->msg, sizeof(res->msg), "%s", stubdm_op_errmsg(op));
    if (r && stubdm_qmp_reply_return_json(r))
        snprintf(res->ret, sizeof(res->ret), "%s",
                 stubdm_qmp_reply_return_json(r));
}

/* Execute one command against an open handle; returns its code. */
static int exec_one(stubdm_qmp *q, const char *cmd, int timeout_ms,
                    struct result *r)
{
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(stubdm_qmp_execute(q, cmd, NULL, timeout_ms, on_reply, r,
                                        NULL),
                     0);
    ts_run_until_flag(ctx, &r->done, timeout_ms + 2000);
    ck_assert(r->done);
    return r->rc;
}

/* "Fails fast" bounds are checked at native speed (and under ASan); under
 * valgrind, ~50x slower, they only need to stay finite. */
static int64_t fast_bound(int64_t ms)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload") ? ms * 10 : ms;
}

START_TEST(test_no_greeting)
{
    static const struct qmp_peer_step s[] = {QP_H(3000), QP_E()};
    stubdm_qmp *q;
    int64_t ms;

    ck_assert_int_eq(open_against(s, opts(300), &q, &ms), STUBDM_ETIMEDOUT);
    ck_assert_ptr_null(q);
    ck_assert_int_ge(ms, 290);
    ck_assert_int_lt(ms, fast_bound(1500));
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "no greeting"));
}
END_TEST

START_TEST(test_slowloris_greeting)
{
    static const struct qmp_peer_step s[] = {
        QP_SLOWLY("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "
                  "\"minor\": 2, \"major\": 7}, \"package\": \"\"}, "
                  "\"capabilities\": []}}\r\n",
                  100),
        QP_E()};
    stubdm_qmp *q;
    int64_t ms;

    ck_assert_int_eq(open_against(s, opts(500), &q, &ms), STUBDM_ETIMEDOUT);
    ck_assert_int_lt(ms, fast_bound(1500));
}
END_TEST

START_TEST(test_slowloris_reply)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(), QP_R("slow"),
        QP_SLOWLY(
            "{\"return\": {\"aaaaaaaaaaaaaaaaaaaaaaa\": 1}, \"id\": 2}\r\n",
            100),
        QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(exec_one(q, "slow", 400, &r), STUBDM_ETIMEDOUT);
    ck_assert_int_lt(stubdm_now_ms() - t0, fast_bound(1500));
    ck_assert_ptr_nonnull(strstr(r.msg, "no reply after 400 ms"));
}
END_TEST

START_TEST(test_oversized_message)
{
    static char big[20000];
    static struct qmp_peer_step s[] = {QP_HS(), QP_R("big"), QP_S(big),
                                       QP_H(2000), QP_E()};
    stubdm_qmp_opts *o = opts(2000);
    stubdm_qmp *q;
    struct result r;

    strcpy(big, "{\"return\": \"");
    memset(big + strlen(big), 'x', 15000);
    strcat(big, "\", \"id\": 2}\r\n");
    ck_assert_int_eq(stubdm_qmp_opts_set_limits(o, 8192, 0, 0), 0);
    ck_assert_int_eq(open_against(s, o, &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "big", 2000, &r), STUBDM_EPROTO);
    ck_assert_msg(strstr(r.msg, "8192") != NULL, "%s", r.msg);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
}
END_TEST

START_TEST(test_nesting_bomb)
{
    static char bomb[300000];
    static struct qmp_peer_step s[] = {QP_HS(), QP_R("deep"), QP_S(bomb),
                                       QP_H(2000), QP_E()};
    stubdm_qmp *q;
    struct result r;

    strcpy(bomb, "{\"return\": ");
    memset(bomb + strlen(bomb), '[', 100000);
    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "deep", 2000, &r), STUBDM_EPROTO);
    ck_assert_msg(strstr(r.msg, "deeper") || strstr(r.msg, "nest"), "%s",
                  r.msg);
}
END_TEST

START_TEST(test_invalid_json)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_R("x"),
                                             QP_S("{\"return\": tru }\r\n"),
                                             QP_H(2000), QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "x", 2000, &r), STUBDM_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.msg, "malformed data from QEMU"));
}
END_TEST

START_TEST(test_invalid_utf8)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(), QP_R("x"), QP_S("{\"return\": \"\xc0\xaf\", \"id\": 2}\r\n"),
        QP_H(2000), QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "x", 2000, &r), STUBDM_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.msg, "UTF-8"));
}
END_TEST

/* Wrong, missing, foreign ids and unsolicited replies are dropped; the
 * command then gets its real reply (or times out), the connection stays. */
START_TEST(test_wrong_and_missing_ids)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(),
        QP_R("x"),
        QP_S("{\"return\": 1, \"id\": 999}\r\n"
             "{\"return\": 2}\r\n"
             "{\"return\": 3, \"id\": \"2\"}\r\n"
             "{\"return\": 4, \"id\": -2}\r\n"
             "{\"return\": 5, \"id\": 2.0}\r\n"
             "{\"error\": {\"class\": \"X\", \"desc\": \"y\"}, \"id\": "
             "77}\r\n"),
        QP_REP("{\"return\": 6, \"id\": %s}"),
        QP_R("y"),
        QP_REP("{\"return\": 7, \"id\": 12345}"),
        QP_H(2000),
        QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "x", 2000, &r), 0);
    ck_assert_str_eq(r.ret, "6");
    ck_assert_uint_eq(ts_qmp_stats(q).replies_dropped, 6);
    ck_assert_int_eq(exec_one(q, "y", 300, &r), STUBDM_ETIMEDOUT);
    ck_assert_uint_eq(ts_qmp_stats(q).replies_dropped, 7);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
}
END_TEST

START_TEST(test_unsolicited_before_commands)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(),
        QP_S("{\"return\": {}, \"id\": 2}\r\n{\"return\": {}, \"id\": 3}\r\n"),
        QP_R("x"),
        QP_REP("{\"return\": \"ok\", \"id\": %s}"),
        QP_H(2000),
        QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    /* Let the unsolicited replies arrive first. */
    for (int i = 0; i < 5; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_uint_eq(ts_qmp_stats(q).replies_dropped, 2);
    /* Ids already seen as garbage are never reused by the library. */
    ck_assert_int_eq(exec_one(q, "x", 2000, &r), 0);
    ck_assert_str_eq(r.ret, "\"ok\"");
}
END_TEST

START_TEST(test_idless_error)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(),
        QP_R("one"),
        QP_S(
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse "
            "error\"}}\r\n"),
        QP_R("two"),
        QP_R("three"),
        QP_S(
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse "
            "error\"}}\r\n"),
        QP_H(2000),
        QP_E()};
    stubdm_qmp *q;
    struct result r, r2, r3;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    /* One command in flight: the id-less error is its answer. */
    ck_assert_int_eq(exec_one(q, "one", 2000, &r), STUBDM_EQMP);
    /* Two in flight: ambiguous, the connection ends. */
    memset(&r2, 0, sizeof(r2));
    memset(&r3, 0, sizeof(r3));
    ck_assert_int_eq(stubdm_qmp_execute(q, "two", NULL, 2000, on_reply, &r2,
                                        NULL),
                     0);
    ck_assert_int_eq(stubdm_qmp_execute(q, "three", NULL, 2000, on_reply, &r3,
                                        NULL),
                     0);
    ts_run_until_flag(ctx, &r3.done, 3000);
    ck_assert_int_eq(r2.rc, STUBDM_EPROTO);
    ck_assert_int_eq(r3.rc, STUBDM_EPROTO);
    ck_assert_ptr_nonnull(strstr(r2.msg, "without id"));
}
END_TEST

START_TEST(test_two_greetings)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_R("x"), QP_G(),
                                             QP_H(2000), QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "x", 2000, &r), STUBDM_EPROTO);
    ck_assert_ptr_nonnull(strstr(r.msg, "second greeting"));
}
END_TEST

START_TEST(test_greeting_twice_before_negotiation)
{
    static const struct qmp_peer_step s[] = {QP_G(), QP_G(), QP_H(2000),
                                             QP_E()};
    stubdm_qmp *q;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), STUBDM_EPROTO);
}
END_TEST

START_TEST(test_close_mid_message)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(),  QP_R("x"), QP_S("{\"return\": {\"half"),
        QP_D(50), QP_C(),    QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "x", 2000, &r), STUBDM_EVCHAN);
    ck_assert_msg(strstr(r.msg, "lost") && strstr(r.msg, "middle"), "%s",
                  r.msg);
}
END_TEST

START_TEST(test_close_before_greeting)
{
    static const struct qmp_peer_step s[] = {QP_S("{\"QMP\": {"), QP_C(),
                                             QP_E()};
    stubdm_qmp *q;
    int64_t ms;

    ck_assert_int_eq(open_against(s, opts(2000), &q, &ms), STUBDM_EVCHAN);
    ck_assert_int_lt(ms, fast_bound(1000));
}
END_TEST

static long flood_seen;
static void on_flood(stubdm_qmp *q, const stubdm_qmp_event *ev, void *user)
{
    (void)q;
    (void)user;
    if (!strcmp(stubdm_qmp_event_name(ev), "FLOOD"))
        flood_seen++;
}

static bool under_instrumentation(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
#endif
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

START_TEST(test_event_flood)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(),       QP_R("go"),
        QP_FL(100000), QP_REP("{\"return\": \"alive\", \"id\": %s}"),
        QP_H(2000),    QP_E()};
    stubdm_qmp *q;
    struct result r = {0};
    /* valgrind runs this ~50x slower; on a loaded CI machine 100k events
     * took over 20 s there.  Same assertions, more time. */
    int allow_ms = under_instrumentation() ? 180000 : 20000;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_subscribe(q, "FLOOD", on_flood, NULL, NULL),
                     0);
    long rss0 = maxrss_kb();
    /* The flood starts once we ask for it; the reply comes after it. */
    ck_assert_int_eq(stubdm_qmp_execute(q, "go", NULL, allow_ms, on_reply, &r,
                                        NULL),
                     0);
    int64_t end = stubdm_now_ms() + allow_ms;
    while (flood_seen < 100000 && stubdm_now_ms() < end)
        stubdm_ctx_run_once(ctx, 50);
    ck_assert_int_eq(flood_seen, 100000);
    ck_assert_uint_eq(ts_qmp_stats(q).events, 100000);
    /* ~10 MB of events went through; nothing of it is kept.  (Not
     * measurable under ASan or valgrind, which hold freed memory back.) */
    if (!under_instrumentation())
        ck_assert_int_lt(maxrss_kb() - rss0, 8 * 1024);
    ts_run_until_flag(ctx, &r.done, 2000);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_str_eq(r.ret, "\"alive\"");
}
END_TEST

/* The "i" of a FLOOD event's data ({"i": N}). */
static long flood_index(const stubdm_qmp_event *ev)
{
    const char *d = stubdm_qmp_event_data_json(ev);
    const char *colon = d ? strchr(d, ':') : NULL;

    ck_assert_ptr_nonnull(colon);
    return strtol(colon + 1, NULL, 10);
}

/* A flood into bounded event queues: each keeps its capacity (one the
 * newest events, one the oldest), in order, every drop counted; what is
 * left queued is freed with the handle (stubdm_qmp_free) or with the ctx
 * (valgrind and ASan check both). */
START_TEST(test_event_queue_flood)
{
    enum { N = 20000, CAP = 1000 };
    static const struct qmp_peer_step s[] = {
        QP_HS(),    QP_R("go"),
        QP_FL(N),   QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_H(2000), QP_E()};
    stubdm_qmp_opts *o2 = opts(2000);
    stubdm_qmp *q, *q2 = NULL;
    stubdm_qmp_event *ev = NULL;
    struct result r = {0};
    int allow_ms = under_instrumentation() ? 120000 : 20000;
    long rss0;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o2, &q2), 0);
    stubdm_qmp_opts_free(o2);
    ck_assert_int_eq(stubdm_qmp_events_enable(q, CAP,
                                              STUBDM_QMP_EVENTS_DROP_OLDEST),
                     0);
    ck_assert_int_eq(stubdm_qmp_events_enable(q2, CAP,
                                              STUBDM_QMP_EVENTS_DROP_NEWEST),
                     0);
    ck_assert_int_eq(stubdm_qmp_events_enable(q2, CAP, 2), STUBDM_EINVAL);
    rss0 = maxrss_kb();
    ck_assert_int_eq(stubdm_qmp_execute(q, "go", NULL, allow_ms, on_reply, &r,
                                        NULL),
                     0);
    ts_run_until_flag(ctx, &r.done, allow_ms);
    ck_assert_msg(r.rc == 0, "%s", r.msg);
    ck_assert_uint_eq(ts_qmp_stats(q).events, N);
    ck_assert_uint_eq(ts_qmp_stats(q).events_queued, N + CAP);
    ck_assert_uint_eq(ts_qmp_stats(q).events_dropped, 2 * (N - CAP));
    /* Bounded: ~2 MB of events went through, CAP of ~100 bytes are kept. */
    if (!under_instrumentation())
        ck_assert_int_lt(maxrss_kb() - rss0, 8 * 1024);
    /* Drop-oldest kept the last CAP, in order. */
    for (long i = N - CAP; i < N - 1; i++) {
        ck_assert_int_eq(stubdm_qmp_event_next(q, &ev), 0);
        ck_assert_str_eq(stubdm_qmp_event_name(ev), "FLOOD");
        ck_assert_int_eq(flood_index(ev), i);
        stubdm_qmp_event_free(ev);
    }
    /* Drop-newest kept the first CAP, in order. */
    for (long i = 0; i < 10; i++) {
        ck_assert_int_eq(stubdm_qmp_event_next(q2, &ev), 0);
        ck_assert_int_eq(flood_index(ev), i);
        stubdm_qmp_event_free(ev);
    }
    stubdm_qmp_free(q2); /* CAP - 10 still queued */
    /* One left in q: teardown frees it with the ctx. */
    ck_assert_int_ge(stubdm_qmp_events_fd(q), 0);
}
END_TEST

START_TEST(test_reply_never_comes)
{
    static const struct qmp_peer_step s[] = {
        QP_HS(),      QP_R("lost"),
        QP_D(500),    QP_REP("{\"return\": \"late\", \"id\": %s}"),
        QP_R("next"), QP_REP("{\"return\": \"next\", \"id\": %s}"),
        QP_H(2000),   QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_int_eq(exec_one(q, "lost", 200, &r), STUBDM_ETIMEDOUT);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
    /* The late reply is dropped quietly; the connection stays in sync. */
    ck_assert_int_eq(exec_one(q, "next", 2000, &r), 0);
    ck_assert_str_eq(r.ret, "\"next\"");
    ck_assert_uint_eq(ts_qmp_stats(q).replies_dropped, 1);
}
END_TEST

START_TEST(test_wedged_after_eight_timeouts)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_H(4000), QP_E()};
    stubdm_qmp *q;
    struct result r[9];

    memset(r, 0, sizeof(r));
    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(stubdm_qmp_execute(q, "x", NULL, 200, on_reply, &r[i],
                                            NULL),
                         0);
    ts_run_until_flag(ctx, &r[8].done, 3000);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(r[i].rc, STUBDM_ETIMEDOUT);
    /* The ninth never reached the wire; QEMU is declared wedged. */
    ck_assert(r[8].rc == STUBDM_ETIMEDOUT || r[8].rc == STUBDM_EVCHAN);
    for (int i = 0; i < 10; i++)
        stubdm_ctx_run_once(ctx, 10);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
}
END_TEST

START_TEST(test_death_while_waiting_for_ring_ref)
{
    stubdm_qmp_opts *o = opts(5000);
    stubdm_qmp *q = NULL;
    struct {
        bool done;
        int rc;
    } st = {0};
    void on_open(stubdm_op * op, int rc, void *user);

    (void)st;
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, NULL, NULL, &q,
                                     NULL),
                     0);
    stubdm_qmp_opts_free(o);
    for (int i = 0; i < 3; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(qmp_sim_kill_stubdom(&sim), 0);
    stubdm_qmp_free(q);
    /* Same through the sync form: fails at once, not at the timeout. */
    o = opts(5000);
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q),
                     STUBDM_EDOMAIN_GONE);
    stubdm_qmp_opts_free(o);
    ck_assert_int_lt(stubdm_now_ms() - t0, fast_bound(1000));
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "stubdomain 7"));
}
END_TEST

static int death_rc = 1;
static void on_death_open(stubdm_op *op, int rc, void *user)
{
    (void)op;
    (void)user;
    death_rc = rc;
}

START_TEST(test_death_async)
{
    stubdm_qmp_opts *o = opts(5000);
    stubdm_qmp *q = NULL;

    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, on_death_open,
                                     NULL, &q, NULL),
                     0);
    stubdm_qmp_opts_free(o);
    for (int i = 0; i < 3; i++)
        stubdm_ctx_run_once(ctx, 20);
    int64_t t0 = stubdm_now_ms();
    ck_assert_int_eq(qmp_sim_kill_stubdom(&sim), 0);
    while (death_rc == 1 && stubdm_now_ms() - t0 < 3000)
        stubdm_ctx_run_once(ctx, 50);
    ck_assert_int_eq(death_rc, STUBDM_EDOMAIN_GONE);
    ck_assert_int_lt(stubdm_now_ms() - t0, fast_bound(1000));
    stubdm_qmp_free(q);
}
END_TEST

START_TEST(test_stale_bytes_before_greeting)
{
    static const struct qmp_peer_step s[] = {
        QP_S("\"}]}, \"id\": 12}\r\n{\"return\": {}, \"id\": 13}\r\n"
             "{\"event\": \"OLD\", \"timestamp\": {\"seconds\": 1, "
             "\"microseconds\": 1}}\r\ngarbage{{{\r\n{\"QMP\": {\"vers"),
        QP_HS(),
        QP_R("x"),
        QP_REP("{\"return\": 1, \"id\": %s}"),
        QP_H(2000),
        QP_E()};
    stubdm_qmp *q;
    struct result r;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), 0);
    ck_assert_uint_gt(ts_qmp_stats(q).bytes_discarded, 100);
    ck_assert_int_eq(exec_one(q, "x", 2000, &r), 0);
    ck_assert_str_eq(r.ret, "1");
}
END_TEST

START_TEST(test_capabilities_refused)
{
    static const struct qmp_peer_step s[] = {
        QP_G(), QP_R("qmp_capabilities"),
        QP_REP("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, "
               "\"id\": %s}"),
        QP_H(2000), QP_E()};
    stubdm_qmp *q;

    ck_assert_int_eq(open_against(s, opts(2000), &q, NULL), STUBDM_EQMP);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "refused"));
}
END_TEST

/* ---- peer text in messages and logs --------------------------------------- */

struct log_check {
    unsigned lines, bad;
    size_t longest;
    char first_bad[200];
};

static bool printable_text(const char *m)
{
    for (; *m; m++)
        if ((unsigned char)*m < 0x20 || (unsigned char)*m > 0x7e)
            return false;
    return true;
}

static void check_log(void *user, stubdm_log_level level, int os_errno,
                      const char *context, const char *msg)
{
    struct log_check *lc = user;
    size_t n = strlen(msg);

    (void)level;
    (void)os_errno;
    (void)context;
    lc->lines++;
    if (n > lc->longest)
        lc->longest = n;
    if (!printable_text(msg) && lc->bad++ == 0)
        snprintf(lc->first_bad, sizeof(lc->first_bad), "%s", msg);
}

#define BIG_DESC (100 * 1024)

/*
 * QEMU's error class and description, event names and raw messages are
 * the peer's text: a newline in them would forge a log line, an escape
 * sequence reach the terminal showing the log.  Every op message and log
 * line stays printable ASCII and bounded, whatever the peer sends (a
 * control byte, ESC [2J, a 100 KiB description).
 */
START_TEST(test_peer_text_sanitized)
{
    static const char *const pre =
        "{\"error\": {\"class\": \"Generic\\nError\", \"desc\": \"";
    static const char *const post = "\"}, \"id\": 3}\r\n";
    char *big = malloc(BIG_DESC + 128);
    struct log_check lc = {0};
    stubdm_qmp_opts *o = opts(2000);
    stubdm_qmp *q;
    struct result r;
    size_t n;

    ck_assert_ptr_nonnull(big);
    n = (size_t)sprintf(big, "%s", pre);
    for (size_t i = 0; i < BIG_DESC; i += 6)
        n += (size_t)sprintf(big + n, "\\u001b");
    n += (size_t)sprintf(big + n, "%s", post);
    struct qmp_peer_step s[] = {
        QP_G(),
        /* An event before negotiation: logged (with its name), ignored. */
        QP_S("{\"event\": \"EV\\u001b[2J\\nlibstubdm: forged\", "
             "\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n"),
        QP_R("qmp_capabilities"), QP_REP("{\"return\": {}, \"id\": %s}"),
        QP_R("one"),
        QP_S("{\"error\": {\"class\": \"X\\u001b[2J\", \"desc\": \"line one"
             "\\nqmp: forged line\\u001b[2J\\u0007\\u00e9\"}, \"id\": 2}\r\n"),
        QP_R("two"), QP_S(big),
        /* A reply with a foreign id, raw newline between its tokens:
         * dropped, logged with its raw text. */
        QP_S("{\"return\": 1,\n\"id\": \"forged\"}\r\n"), QP_H(2000), QP_E()};

    stubdm_ctx_set_log(ctx, check_log, &lc, STUBDM_LOG_DEBUG);
    ck_assert_int_eq(stubdm_qmp_opts_set_limits(o, 4 * BIG_DESC, 0, 0), 0);
    ck_assert_int_eq(open_against(s, o, &q, NULL), 0);

    ck_assert_int_eq(exec_one(q, "one", 2000, &r), STUBDM_EQMP);
    ck_assert_msg(printable_text(r.msg), "errmsg: %s", r.msg);
    ck_assert_ptr_nonnull(strstr(r.msg, "forged line"));
    ck_assert_int_eq(exec_one(q, "two", 2000, &r), STUBDM_EQMP);
    ck_assert_msg(printable_text(r.msg), "errmsg not printable");
    ck_assert_uint_lt(strlen(r.msg), 512);
    ck_assert_ptr_nonnull(strstr(r.msg, "..."));
    /* The raw reply after it is dropped and logged. */
    for (int i = 0; i < 20 && ts_qmp_stats(q).replies_dropped < 1; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_uint_eq(ts_qmp_stats(q).replies_dropped, 1);
    ck_assert_uint_gt(lc.lines, 3);
    ck_assert_msg(lc.bad == 0, "%u log lines not printable, first: %s", lc.bad,
                  lc.first_bad);
    ck_assert_uint_lt(lc.longest, 1024);
    stubdm_ctx_set_log(ctx, NULL, NULL, STUBDM_LOG_DEBUG);
    free(big);
}
END_TEST

/*
 * qmp-vchan/ring-ref and event-channel are the stubdomain's: a malformed
 * value (a leading zero, past 2^32, zero, a sign, a space, trailing junk,
 * 40 digits, empty) in either node is ignored, the open keeps waiting
 * (no connection: the scripted peer would complete it at once) and ends at
 * its timeout naming what it waited for.  Honest values then connect.
 */
static bool vchan_open_done;
static int vchan_open_rc;
static char vchan_open_msg[512];
static void on_vchan_open(stubdm_op *op, int rc, void *user)
{
    (void)user;
    vchan_open_done = true;
    vchan_open_rc = rc;
    snprintf(vchan_open_msg, sizeof(vchan_open_msg), "%s",
             stubdm_op_errmsg(op));
}

static void write_vchan_node(unsigned stubdom, unsigned guest,
                             const char *node, const char *val)
{
    char p[160];

    snprintf(p, sizeof(p), "/local/domain/%u/device-model/%u/qmp-vchan/%s",
             stubdom, guest, node);
    ck_assert(xs_write(sim.xs, XBT_NULL, p, val, (unsigned)strlen(val)));
}

static void run_for(int ms)
{
    int64_t end = stubdm_now_ms() + ms;
    while (stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 10), 0);
}

START_TEST(test_malformed_ring_ref_and_event_channel)
{
    static const char *const bad[] = {
        "05",
        "4294967297",
        "0",
        "-1",
        " 5",
        "5x",
        "1234567890123456789012345678901234567890",
        ""};
    static const struct qmp_peer_step s[] = {QP_HS(), QP_H(30000), QP_E()};
    int timeout = under_instrumentation() ? 8000 : 2000;
    stubdm_qmp_opts *o = opts(timeout);
    stubdm_qmp *q = NULL;
    int64_t t0;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, s), 0);
    vchan_open_done = false;
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, on_vchan_open,
                                     NULL, &q, NULL),
                     0);
    stubdm_qmp_opts_free(o);
    for (size_t i = 0; i < STUBDM_ARRAY_SIZE(bad); i++) {
        /* Written in an order that never shows two good values at once. */
        write_vchan_node(STUBDOM, GUEST, "ring-ref", bad[i]);
        write_vchan_node(STUBDOM, GUEST, "event-channel", "3");
        run_for(40);
        ck_assert_msg(!vchan_open_done, "ring-ref \"%s\": open ended (%s)",
                      bad[i], stubdm_errname(vchan_open_rc));
        write_vchan_node(STUBDOM, GUEST, "event-channel", bad[i]);
        write_vchan_node(STUBDOM, GUEST, "ring-ref", "8");
        run_for(40);
        ck_assert_msg(!vchan_open_done,
                      "event-channel \"%s\": open ended (%s)", bad[i],
                      stubdm_errname(vchan_open_rc));
        ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    }
    while (!vchan_open_done && stubdm_now_ms() - t0 < timeout + 3000)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 50), 0);
    ck_assert(vchan_open_done);
    ck_assert_msg(vchan_open_rc == STUBDM_ETIMEDOUT, "%s: %s",
                  stubdm_errname(vchan_open_rc), vchan_open_msg);
    ck_assert_msg(strstr(vchan_open_msg, "waiting for the stubdomain's "
                                         "qmp-vchan/ring-ref after"),
                  "%s", vchan_open_msg);
    ck_assert_int_ge(stubdm_now_ms() - t0, timeout - 10);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    stubdm_qmp_free(q);

    /* The peer was there all along: honest values connect at once. */
    o = opts(timeout);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q), 0);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
}
END_TEST

/*
 * Two stubdomains on one ctx: 7's QEMU floods events (200000, ~20 MB) while
 * 9's query-status round trips are timed.  The flood is bounded per
 * dispatch (READ_BUDGET), so each round trip of 9 made while 7's flood goes
 * on costs this thread under 250 ms of CPU (x10 under valgrind or ASan).
 * CPU time, not wall time: the work the library does for 7 while 9 waits
 * is what starvation is made of; the time the peers and a loaded machine
 * take is not the library's.
 */
static int64_t thread_cpu_ms(void)
{
    struct timespec ts;

    ck_assert_int_eq(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), 0);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define OTHER_STUBDOM 9
#define OTHER_GUEST 4
#define FLOOD_N 200000

START_TEST(test_flood_does_not_starve_other_stubdomain)
{
    static const struct qmp_peer_step flood[] = {
        QP_HS(),        QP_R("go"),
        QP_FL(FLOOD_N), QP_REP("{\"return\": \"alive\", \"id\": %s}"),
        QP_H(30000),    QP_E()};
    static const struct qmp_peer_step calm[] = {QP_HS(), QP_ANS(), QP_E()};
    struct qmp_peer other = {.pid = -1};
    char path[160], sock[320];
    stubdm_qmp *qa = NULL, *qb = NULL;
    stubdm_qmp_opts *o;
    struct result go = {0}, r;
    /* x10 under valgrind, and under ASan (an unoptimised build: 320 ms
     * seen on a loaded machine). */
    int64_t bound = under_instrumentation() ? 2500 : 250, worst = 0;
    long seen_before;
    int inside = 0;

    /* The second stubdomain on the same simulated host. */
    ck_assert(xs_introduce_domain(sim.xs, OTHER_STUBDOM, 1, 1));
    snprintf(path, sizeof(path), "/local/domain/%u/device-model/%u",
             OTHER_STUBDOM, OTHER_GUEST);
    ck_assert(xs_mkdir(sim.xs, XBT_NULL, path));
    write_vchan_node(OTHER_STUBDOM, OTHER_GUEST, "ring-ref", "8");
    write_vchan_node(OTHER_STUBDOM, OTHER_GUEST, "event-channel", "3");
    snprintf(sock, sizeof(sock), "%s/qmp-vchan/%u.%u.sock", sim.simdir,
             OTHER_STUBDOM, OTHER_GUEST);
    ck_assert_int_eq(qmp_peer_start(&other, sock, calm), 0);
    o = opts(5000);
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, OTHER_STUBDOM, OTHER_GUEST, o,
                                          &qb),
                     0);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(open_against(flood, opts(5000), &qa, NULL), 0);
    ck_assert_int_eq(exec_one(qb, "query-status", 5000, &r), 0);

    flood_seen = 0;
    ck_assert_int_eq(stubdm_qmp_subscribe(qa, "FLOOD", on_flood, NULL, NULL),
                     0);
    ck_assert_int_eq(stubdm_qmp_execute(qa, "go", NULL, 600000, on_reply, &go,
                                        NULL),
                     0);
    while (flood_seen < 1000)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 50), 0);
    /* Round trips of 9 begun during 7's flood, all timed; at least two
     * must also end before the flood does. */
    while (inside < 5 && flood_seen < FLOOD_N) {
        int64_t t0 = thread_cpu_ms(), ms;
        seen_before = flood_seen;
        ck_assert_int_eq(exec_one(qb, "query-status", 5000, &r), 0);
        ms = thread_cpu_ms() - t0;
        worst = ms > worst ? ms : worst;
        if (flood_seen > seen_before && flood_seen < FLOOD_N)
            inside++;
    }
    ck_assert_msg(inside >= 2, "only %d round trips inside the flood", inside);
    ck_assert_msg(worst < bound,
                  "query-status of stubdomain %u took %lld ms "
                  "of CPU during the flood (bound %lld ms)",
                  OTHER_STUBDOM, (long long)worst, (long long)bound);
    stubdm_qmp_free(qa);
    stubdm_qmp_free(qb);
    qmp_peer_stop(&other);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("qmp-hostile");
    TCase *tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_no_greeting);
    tcase_add_test(tc, test_slowloris_greeting);
    tcase_add_test(tc, test_slowloris_reply);
    tcase_add_test(tc, test_oversized_message);
    tcase_add_test(tc, test_nesting_bomb);
    tcase_add_test(tc, test_invalid_json);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_wrong_and_missing_ids);
    tcase_add_test(tc, test_unsolicited_before_commands);
    tcase_add_test(tc, test_idless_error);
    tcase_add_test(tc, test_two_greetings);
    tcase_add_test(tc, test_greeting_twice_before_negotiation);
    tcase_add_test(tc, test_close_mid_message);
    tcase_add_test(tc, test_close_before_greeting);
    tcase_add_test(tc, test_event_flood);
    tcase_add_test(tc, test_event_queue_flood);
    tcase_add_test(tc, test_reply_never_comes);
    tcase_add_test(tc, test_wedged_after_eight_timeouts);
    tcase_add_test(tc, test_death_while_waiting_for_ring_ref);
    tcase_add_test(tc, test_death_async);
    tcase_add_test(tc, test_stale_bytes_before_greeting);
    tcase_add_test(tc, test_capabilities_refused);
    tcase_add_test(tc, test_peer_text_sanitized);
    tcase_add_test(tc, test_malformed_ring_ref_and_event_channel);
    tcase_add_test(tc, test_flood_does_not_starve_other_stubdomain);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
