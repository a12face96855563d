/*
 * The QMP connection layer against a real QEMU (qemu-system-x86_64
 * -machine none, TCG), reached through the simulated transport: the test
 * plays the stubdomain (introduced in the mock xenstored, writes
 * qmp-vchan/ring-ref and event-channel) and QEMU listens on the simulated
 * vchan socket.  A missing QEMU is a failure (make deps installs it).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

#include "core/base.h"
#include "libstubdm.h"
#include "proccheck.h"
#include "qmp_peer.h"
#include "run.h"

#define STUBDOM 9
#define GUEST 4
#define QEMU "qemu-system-x86_64"

static struct qmp_sim sim;

static stubdm_ctx *ctx;
static pid_t qemu_pid = -1;
static bool have_qemu;

/* What setup started and teardown stops.  With CK_FORK=no a failing setup
 * is not followed by its teardown: the next setup (or main) stops what it
 * left, and its children die with the runner in any case
 * (proc_child_fork). */
static void stop_all(void)
{
    stubdm_ctx_free(ctx);
    ctx = NULL;
    if (qemu_pid > 0) {
        kill(qemu_pid, SIGKILL);
        waitpid(qemu_pid, NULL, 0);
    }
    qemu_pid = -1;
    qmp_sim_stop(&sim);
}

static void setup(void)
{
    stop_all();
    have_qemu = system("command -v " QEMU " >/dev/null 2>&1") == 0;
    ck_assert_int_eq(qmp_sim_start(&sim, STUBDOM, GUEST), 0);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    if (!have_qemu)
        return;
    qemu_pid = qmp_qemu_start(sim.sock);
    ck_assert_int_gt(qemu_pid, 0);
    /* The stubdomain's vchan server is "up" (QEMU already answers). */
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
}

static void teardown(void)
{
    stop_all();
}

static stubdm_qmp_opts *opts(void)
{
    stubdm_qmp_opts *o = NULL;
    ck_assert_int_eq(stubdm_qmp_opts_new(&o), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, 10000), 0);
    return o;
}

static stubdm_qmp *open_ready(void)
{
    stubdm_qmp_opts *o = opts();
    stubdm_qmp *q = NULL;
    int rc = stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q);
    stubdm_qmp_opts_free(o);
    ck_assert_msg(rc == 0, "open: %s: %s", stubdm_errname(rc),
                  stubdm_ctx_errmsg(ctx));
    return q;
}

#define NEED_QEMU()                                                           \
    do {                                                                      \
        ck_assert_msg(have_qemu, QEMU " is not installed (make deps "         \
                                      "installs qemu-system-x86)");           \
    } while (0)

START_TEST(test_query_version_status)
{
    NEED_QEMU();
    stubdm_qmp *q = open_ready();
    char *reply = NULL;
    int maj = 0, min = 0, mic = 0;

    ck_assert_int_eq(stubdm_qmp_qemu_version(q, &maj, &min, &mic), 0);
    ck_assert_int_ge(maj, 2);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-version", NULL, 5000,
                                             &reply),
                     0);
    char want[64];
    snprintf(want, sizeof(want), "\"major\": %d", maj);
    ck_assert_msg(strstr(reply, want) != NULL, "%s", reply);
    free(reply);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status", NULL, 5000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "\"running\": true"));
    free(reply);
    stubdm_qmp_free(q);
}
END_TEST

START_TEST(test_unknown_command)
{
    NEED_QEMU();
    stubdm_qmp *q = open_ready();
    char *reply = NULL;

    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "no-such-command", "{}", 5000,
                                             &reply),
                     STUBDM_EQMP);
    ck_assert_ptr_nonnull(strstr(reply, "CommandNotFound"));
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "CommandNotFound"));
    free(reply);
    /* Bad arguments: QEMU's GenericError, connection still fine. */
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status",
                                             "{\"bogus\": 1}", 5000, NULL),
                     STUBDM_EQMP);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status", NULL, 5000,
                                             NULL),
                     0);
    stubdm_qmp_free(q);
}
END_TEST

struct evlog {
    int stop, resume;
};

static void on_ev(stubdm_qmp *q, const stubdm_qmp_event *ev, void *user)
{
    struct evlog *l = user;
    (void)q;
    if (!strcmp(stubdm_qmp_event_name(ev), "STOP"))
        l->stop++;
    if (!strcmp(stubdm_qmp_event_name(ev), "RESUME"))
        l->resume++;
}

START_TEST(test_stop_cont_events_two_handles)
{
    NEED_QEMU();
    stubdm_qmp *q1 = open_ready(), *q2 = open_ready();
    struct evlog l1 = {0}, l2 = {0};
    char *reply = NULL;

    /* One connection: the second handle did not renegotiate. */
    ck_assert_uint_eq(ts_qmp_stats(q2).connects, 1);
    ck_assert_int_eq(stubdm_qmp_subscribe(q1, NULL, on_ev, &l1, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_subscribe(q2, "RESUME", on_ev, &l2, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q1, "stop", NULL, 5000, NULL), 0);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q2, "query-status", NULL, 5000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(strstr(reply, "\"status\": \"paused\""));
    free(reply);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q2, "cont", NULL, 5000, NULL), 0);
    for (int i = 0; i < 50 && l1.resume < 1; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_int_eq(l1.stop, 1);
    ck_assert_int_eq(l1.resume, 1);
    ck_assert_int_eq(l2.stop, 0);
    ck_assert_int_eq(l2.resume, 1);
    stubdm_qmp_free(q1);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q2, "query-status", NULL, 5000,
                                             NULL),
                     0);
    stubdm_qmp_free(q2);
}
END_TEST

static bool fd_readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Events without callbacks: the queue, drained after run_once, gives the
 * STOP/RESUME of three stop/cont rounds in QEMU's order, owned by the
 * caller (they outlive the handle); its fd is readable exactly while
 * events wait.  A callback on the same handle sees them too. */
START_TEST(test_event_queue)
{
    NEED_QEMU();
    stubdm_qmp *q = open_ready();
    stubdm_qmp_event *got[8] = {0};
    struct evlog l = {0};
    int n = 0, fd;
    int64_t s0 = 0, us0 = 0;

    ck_assert_int_eq(stubdm_qmp_event_next(q, &got[0]), STUBDM_ESTATE);
    ck_assert_int_eq(stubdm_qmp_events_fd(q), -1);
    ck_assert_int_eq(stubdm_qmp_events_enable(q, 0,
                                              STUBDM_QMP_EVENTS_DROP_OLDEST),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_events_enable(q, 16,
                                              STUBDM_QMP_EVENTS_DROP_OLDEST),
                     0);
    ck_assert_int_eq(stubdm_qmp_events_enable(q, 16,
                                              STUBDM_QMP_EVENTS_DROP_OLDEST),
                     STUBDM_ESTATE);
    ck_assert_int_eq(stubdm_qmp_subscribe(q, NULL, on_ev, &l, NULL), 0);
    fd = stubdm_qmp_events_fd(q);
    ck_assert_int_ge(fd, 0);
    ck_assert(!fd_readable(fd));
    ck_assert_int_eq(stubdm_qmp_event_next(q, &got[0]), STUBDM_EAGAIN);
    ck_assert_ptr_null(got[0]);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(stubdm_qmp_execute_sync(q, "stop", NULL, 5000, NULL),
                         0);
        ck_assert_int_eq(stubdm_qmp_execute_sync(q, "cont", NULL, 5000, NULL),
                         0);
    }
    for (int i = 0; i < 100 && l.resume < 3; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_int_eq(l.resume, 3);
    ck_assert(fd_readable(fd));
    while (n < 8 && stubdm_qmp_event_next(q, &got[n]) == 0)
        n++;
    ck_assert_int_eq(n, 6);
    ck_assert(!fd_readable(fd));
    ck_assert_int_eq(stubdm_qmp_event_next(q, &got[n]), STUBDM_EAGAIN);
    ck_assert_uint_eq(ts_qmp_stats(q).events_queued, 6);
    ck_assert_uint_eq(ts_qmp_stats(q).events_dropped, 0);
    stubdm_qmp_free(q);
    for (int i = 0; i < n; i++) {
        int64_t s, us;
        ck_assert_str_eq(stubdm_qmp_event_name(got[i]),
                         i % 2 ? "RESUME" : "STOP");
        ck_assert_ptr_nonnull(strstr(stubdm_qmp_event_json(got[i]),
                                     i % 2 ? "\"RESUME\"" : "\"STOP\""));
        stubdm_qmp_event_timestamp(got[i], &s, &us);
        ck_assert(s > s0 || (s == s0 && us >= us0));
        s0 = s;
        us0 = us;
        stubdm_qmp_event_free(got[i]);
    }
}
END_TEST

START_TEST(test_schema_large_reply)
{
    NEED_QEMU();
    stubdm_qmp *q = open_ready();
    char *reply = NULL;

    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-qmp-schema", NULL,
                                             10000, &reply),
                     0);
    ck_assert_uint_gt(strlen(reply), 100000);
    ck_assert_ptr_nonnull(strstr(reply, "\"query-status\""));
    free(reply);
    stubdm_qmp_free(q);
}
END_TEST

static int twenty_ok, twenty_done;
static void on_twenty(stubdm_qmp *q, stubdm_op *op, int rc,
                      const stubdm_qmp_reply *r, void *user)
{
    (void)q;
    (void)op;
    const char *want = user;
    twenty_done++;
    if (rc == 0 && strstr(stubdm_qmp_reply_return_json(r), want))
        twenty_ok++;
}

START_TEST(test_twenty_at_once)
{
    NEED_QEMU();
    stubdm_qmp *q = open_ready();
    static const char *cmds[] = {"query-status", "query-version", "query-name",
                                 "query-kvm"};
    static const char *want[] = {"\"status\"", "\"qemu\"", "{", "\"enabled\""};

    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(stubdm_qmp_execute(q, cmds[i % 4], NULL, 5000,
                                            on_twenty, (void *)want[i % 4],
                                            NULL),
                         0);
    for (int i = 0; i < 200 && twenty_done < 20; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_int_eq(twenty_done, 20);
    ck_assert_int_eq(twenty_ok, 20);
    ck_assert_uint_eq(ts_qmp_stats(q).replies_dropped, 0);
    stubdm_qmp_free(q);
}
END_TEST

START_TEST(test_lock_other_process)
{
    NEED_QEMU();
    int go[2], ready[2];
    char c;
    stubdm_qmp *q = NULL;
    stubdm_qmp_opts *o;

    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = proc_child_fork();
    if (pid == 0) {
        /* Another toolstack process holding the connection. */
        stubdm_ctx *c2;
        stubdm_qmp *q2;
        if (stubdm_ctx_new(&c2) ||
            stubdm_qmp_open_sync(c2, STUBDOM, GUEST, NULL, &q2))
            _exit(1);
        if (write(ready[1], "R", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(1);
        stubdm_qmp_free(q2);
        stubdm_ctx_free(c2);
        _exit(0);
    }
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    o = opts();
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q),
                     STUBDM_EBUSY);
    ck_assert_int_eq(stubdm_qmp_opts_set_lock(o, NULL, STUBDM_QMP_LOCK_WAIT),
                     0);
    stubdm_qmp_opts_set_open_timeout(o, 10000);
    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, NULL, NULL, &q,
                                     NULL),
                     0);
    stubdm_qmp_opts_free(o);
    for (int i = 0; i < 5; i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    ck_assert_int_eq(write(go[1], "G", 1), 1);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    for (int i = 0; i < 250 && !stubdm_qmp_is_ready(q); i++)
        stubdm_ctx_run_once(ctx, 20);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
    /* QEMU greeted us afresh on the new connection. */
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status", NULL, 5000,
                                             NULL),
                     0);
    stubdm_qmp_free(q);
    close(go[0]), close(go[1]), close(ready[0]), close(ready[1]);
}
END_TEST

/* ---- the proxy, with raw QMP clients ------------------------------------ */

struct rawc {
    int fd;
    char buf[1 << 20];
    size_t len;
};

static void rawc_connect(struct rawc *c, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    c->len = 0;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c->fd, 0);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void rawc_send(struct rawc *c, const char *s)
{
    ck_assert_int_eq(write(c->fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Next line from the client, running the library meanwhile. */
static char *rawc_line(struct rawc *c, char *out, size_t outlen)
{
    int64_t end = stubdm_now_ms() + 5000;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf) + 1;
            snprintf(out, outlen, "%.*s", (int)(n < outlen ? n : outlen - 1),
                     c->buf);
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return out;
        }
        ck_assert_int_lt(stubdm_now_ms(), end);
        stubdm_ctx_run_once(ctx, 5);
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len,
                         MSG_DONTWAIT);
        if (r > 0)
            c->len += (size_t)r;
        ck_assert(r != 0);
    }
}

static struct rawc cl[3];

START_TEST(test_proxy_three_clients)
{
    NEED_QEMU();
    stubdm_qmp *q = open_ready();
    stubdm_qmp_proxy *p = NULL;
    char path[400], line[1 << 16];
    static const char *ids[3] = {"\"a-1\"", "17", "{\"x\": [1, \"two\"]}"};

    snprintf(path, sizeof(path), "%s/proxy.sock", sim.simdir);
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path, 5000, &p), 0);
    for (int i = 0; i < 3; i++) {
        rawc_connect(&cl[i], path);
        rawc_line(&cl[i], line, sizeof(line));
        ck_assert_msg(strstr(line, "{\"QMP\":{\"version\":{\"qemu\":") &&
                          strstr(line, "\"capabilities\":[]"),
                      "%s", line);
    }
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 3);
    /* Before negotiation: refused, like QEMU does. */
    rawc_send(&cl[0], "{\"execute\": \"query-status\", \"id\": 5}\r\n");
    rawc_line(&cl[0], line, sizeof(line));
    ck_assert_msg(strstr(line, "CommandNotFound") && strstr(line, "\"id\": 5"),
                  "%s", line);
    for (int i = 0; i < 3; i++) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd),
                 "{\"execute\": \"qmp_capabilities\", \"id\": %s}\r\n",
                 ids[i]);
        rawc_send(&cl[i], cmd);
    }
    for (int i = 0; i < 3; i++) {
        char want[128];
        rawc_line(&cl[i], line, sizeof(line));
        snprintf(want, sizeof(want), "{\"return\": {}, \"id\": %s}", ids[i]);
        /* ids are re-emitted compact */
        ck_assert_msg(strstr(line, "{\"return\": {}, \"id\": ") != NULL, "%s",
                      line);
        (void)want;
    }
    /* All three at once, each with its own (colliding) id space. */
    for (int i = 0; i < 3; i++) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd),
                 "{\"execute\": \"query-status\", \"id\": %s}\r\n", ids[i]);
        rawc_send(&cl[i], cmd);
        rawc_send(&cl[i], "{\"execute\": \"query-version\", \"id\": 1}\r\n");
    }
    static const char *compact[3] = {"\"a-1\"", "17", "{\"x\":[1,\"two\"]}"};
    for (int i = 0; i < 3; i++) {
        char want[128];
        rawc_line(&cl[i], line, sizeof(line));
        snprintf(want, sizeof(want), "\"id\": %s}", compact[i]);
        ck_assert_msg(strstr(line, "\"status\":\"running\"") &&
                          strstr(line, want),
                      "%s", line);
        rawc_line(&cl[i], line, sizeof(line));
        ck_assert_msg(strstr(line, "\"qemu\":") && strstr(line, "\"id\": 1}"),
                      "%s", line);
    }
    /* An error with the client's id; events to everyone negotiated. */
    rawc_send(&cl[1], "{\"execute\": \"nope\", \"id\": \"e\"}\r\n");
    rawc_line(&cl[1], line, sizeof(line));
    ck_assert_msg(strstr(line, "\"class\": \"CommandNotFound\"") &&
                      strstr(line, "\"id\": \"e\""),
                  "%s", line);
    rawc_send(&cl[2], "{\"execute\": \"stop\"}\r\n");
    int got_stop = 0, got_return = 0;
    for (int k = 0; k < 2; k++) {
        rawc_line(&cl[2], line, sizeof(line));
        got_stop += strstr(line, "\"event\": \"STOP\"") != NULL;
        got_return += strcmp(line, "{\"return\": {}}\r\n") == 0;
    }
    ck_assert_int_eq(got_stop, 1);
    ck_assert_int_eq(got_return, 1);
    for (int i = 0; i < 2; i++) {
        rawc_line(&cl[i], line, sizeof(line));
        ck_assert_msg(strstr(line, "\"event\": \"STOP\""), "%s", line);
    }
    /* Renegotiating is refused; a client leaving does not disturb others. */
    rawc_send(&cl[0], "{\"execute\": \"qmp_capabilities\", \"id\": 9}\r\n");
    rawc_line(&cl[0], line, sizeof(line));
    ck_assert_ptr_nonnull(strstr(line, "already complete"));
    close(cl[0].fd);
    rawc_send(&cl[1], "{\"execute\": \"cont\", \"id\": 2}\r\n");
    for (int k = 0; k < 2; k++)
        rawc_line(&cl[1], line, sizeof(line));
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 2);
    /* Malformed input: that client is dropped. */
    rawc_send(&cl[2], "{\"execute\": ]\r\n");
    for (int i = 0; i < 20 && ts_proxy_stats(p).clients != 1; i++)
        stubdm_ctx_run_once(ctx, 10);
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 1);
    stubdm_qmp_proxy_free(p);
    ck_assert_int_ne(access(path, F_OK), 0);
    close(cl[1].fd);
    close(cl[2].fd);
    stubdm_qmp_free(q);
}
END_TEST

START_TEST(test_proxy_slow_reader_dropped)
{
    NEED_QEMU();
    stubdm_qmp *q = open_ready();
    stubdm_qmp_proxy *p = NULL;
    char path[400], line[4096];

    snprintf(path, sizeof(path), "%s/proxy.sock", sim.simdir);
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path, 5000, &p), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_set_limits(p, 4, 64 << 10), 0);
    rawc_connect(&cl[0], path);
    rawc_line(&cl[0], line, sizeof(line));
    rawc_send(&cl[0], "{\"execute\": \"qmp_capabilities\"}\r\n");
    rawc_line(&cl[0], line, sizeof(line));
    /* Ask for the schema many times and never read: the client's output
     * bound is hit and it is disconnected; memory does not grow. */
    for (int i = 0; i < 40; i++)
        rawc_send(&cl[0], "{\"execute\": \"query-qmp-schema\"}\r\n");
    for (int i = 0; i < 300 && ts_proxy_stats(p).clients > 0; i++)
        stubdm_ctx_run_once(ctx, 10);
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 0);
    ck_assert_uint_ge(ts_proxy_stats(p).clients_dropped, 1);
    /* The connection itself is fine, once the schemas asked for are in:
     * ~7 MB of replies to parse, seconds under valgrind on a busy host. */
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status", NULL,
                                             5000 * ts_time_scale(), NULL),
                     0);
    stubdm_qmp_proxy_free(p);
    close(cl[0].fd);
    stubdm_qmp_free(q);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("qmp-qemu");
    TCase *tc = tcase_create("qemu");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_query_version_status);
    tcase_add_test(tc, test_unknown_command);
    tcase_add_test(tc, test_stop_cont_events_two_handles);
    tcase_add_test(tc, test_event_queue);
    tcase_add_test(tc, test_schema_large_reply);
    tcase_add_test(tc, test_twenty_at_once);
    tcase_add_test(tc, test_lock_other_process);
    tcase_add_test(tc, test_proxy_three_clients);
    tcase_add_test(tc, test_proxy_slow_reader_dropped);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc = ts_run_suite(suite());

    stop_all();
    return rc;
}
