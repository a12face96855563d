/*
 * What a toolstack embedding the library needs from its core (issue 14):
 * loop hooks that refuse are reported, the dispatch data reaches
 * callbacks, a forked child drops its ctx without disturbing the parent,
 * every descriptor is close-on-exec, another thread wakes or interrupts a
 * blocked call, and the xenstore probe leaves the caller's error alone.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/loop.h"
#include "core/op.h"
#include "xen/xs.h"
#include "mockxs.h"
#include "qmp_peer.h"
#include "run.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xenstore.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define VALGRIND_COUNT_ERRORS 0
#endif

#define STUBDOM 7
#define GUEST 3
#define STATE "/local/domain/7/device-model/3/state"

static char self_exe[4096];

/* ---- hooks that refuse on their Nth call -------------------------------- */

struct hooks {
    int watch_calls, timer_calls;
    int refuse_watch_at, refuse_timer_at; /* 1-based call number, 0: never */
    bool refuse_pollout;                  /* every watch asking POLLOUT */
    int64_t last_deadline;
};

static int h_watch(void *user, int fd, short events)
{
    struct hooks *h = user;

    (void)fd;
    h->watch_calls++;
    if (h->watch_calls == h->refuse_watch_at)
        return -1;
    if (h->refuse_pollout && (events & POLLOUT))
        return -1;
    return 0;
}

static int h_timer(void *user, int64_t deadline_ms)
{
    struct hooks *h = user;

    h->timer_calls++;
    if (h->timer_calls == h->refuse_timer_at)
        return -1;
    h->last_deadline = deadline_ms;
    return 0;
}

static const stubdm_loop_hooks hook_table = {STUBDM_LOOP_HOOKS_VERSION,
                                             h_watch, h_timer};

struct logged {
    int warnings;
    char last[512];
};

static void on_log(void *user, stubdm_log_level level, int os_errno,
                   const char *context, const char *msg)
{
    struct logged *l = user;

    (void)os_errno;
    if (level >= STUBDM_LOG_WARN && !strcmp(context, "loop")) {
        l->warnings++;
        snprintf(l->last, sizeof(l->last), "%s", msg);
    }
}

static void on_nothing(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)ctx;
    (void)t;
}

/* Armed outside a dispatch, a refused set_timer fails the arming. */
START_TEST(set_timer_refused_fails_the_arm)
{
    stubdm_ctx *ctx;
    struct hooks h = {0};
    struct logged lg = {0};
    struct stubdm__timer t;

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm_ctx_set_log(ctx, on_log, &lg, STUBDM_LOG_WARN);
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &hook_table, &h), 0);
    ck_assert_int_eq(h.timer_calls, 1); /* the first report: -1 */
    h.refuse_timer_at = 2;
    stubdm__timer_init(&t, on_nothing);
    ck_assert_int_eq(stubdm__timer_arm(ctx, &t, stubdm_now_ms() + 1000),
                     STUBDM_EFAIL);
    ck_assert(!stubdm__timer_armed(&t));
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "set_timer"));
    ck_assert_int_eq(lg.warnings, 1); /* also for a caller that drops it */
    /* Accepted the next time. */
    ck_assert_int_eq(stubdm__timer_arm(ctx, &t, stubdm_now_ms() + 1000), 0);
    ck_assert(stubdm__timer_armed(&t));
    stubdm__timer_stop(ctx, &t);
    ck_assert_int_eq(h.last_deadline, -1);
    stubdm_ctx_free(ctx);
}
END_TEST

/* Installing hooks whose set_timer refuses fails the installation. */
START_TEST(set_timer_refused_fails_set_loop)
{
    stubdm_ctx *ctx;
    struct hooks h = {.refuse_timer_at = 1};

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &hook_table, &h), STUBDM_EFAIL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "set_timer"));
    stubdm_ctx_free(ctx);
}
END_TEST

struct rearm {
    struct stubdm__timer t;
    int runs;
};

static void on_rearm(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct rearm *r = STUBDM_CONTAINER_OF(t, struct rearm, t);

    if (++r->runs == 1)
        stubdm__timer_arm(ctx, t, stubdm_now_ms() + 60000);
}

/* Re-armed in a dispatch, refused at its end: nobody to fail, so the ctx's
 * error and a warning; the next dispatch offers the deadline again. */
START_TEST(set_timer_refused_at_dispatch_end)
{
    stubdm_ctx *ctx;
    struct hooks h = {0};
    struct logged lg = {0};
    struct rearm r = {.runs = 0};

    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm_ctx_set_log(ctx, on_log, &lg, STUBDM_LOG_WARN);
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &hook_table, &h), 0);
    stubdm__timer_init(&r.t, on_rearm);
    ck_assert_int_eq(stubdm__timer_arm(ctx, &r.t, stubdm_now_ms()), 0);
    h.refuse_timer_at = h.timer_calls + 1;
    ck_assert_int_eq(stubdm_ctx_timer_fired(ctx), 0);
    ck_assert_int_eq(r.runs, 1);
    ck_assert_int_eq(h.timer_calls, h.refuse_timer_at);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "set_timer"));
    ck_assert_int_eq(lg.warnings, 1);
    ck_assert_ptr_nonnull(strstr(lg.last, "after a dispatch"));
    /* Retried at the end of the next dispatch (a spurious one here). */
    ck_assert_int_eq(stubdm_ctx_fd_ready(ctx, 1000, POLLIN), 0);
    ck_assert_int_eq(h.timer_calls, h.refuse_timer_at + 1);
    ck_assert_int_eq(h.last_deadline, r.t.deadline_ms);
    stubdm__timer_stop(ctx, &r.t);
    stubdm_ctx_free(ctx);
}
END_TEST

static void on_fd_nothing(stubdm_ctx *ctx, struct stubdm__fd *w, short rev)
{
    (void)ctx;
    (void)w;
    (void)rev;
}

/* A refused stop: the ctx's error and a warning. */
START_TEST(unwatch_refused_is_reported)
{
    stubdm_ctx *ctx;
    struct hooks h = {0};
    struct logged lg = {0};
    struct stubdm__fd w;
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    stubdm_ctx_set_log(ctx, on_log, &lg, STUBDM_LOG_WARN);
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &hook_table, &h), 0);
    stubdm__fd_init(&w, on_fd_nothing);
    ck_assert_int_eq(stubdm__fd_watch(ctx, &w, p[0], POLLIN), 0);
    /* A refused change of events fails the call asking for it. */
    h.refuse_watch_at = h.watch_calls + 1;
    ck_assert_int_eq(stubdm__fd_watch(ctx, &w, p[0], POLLIN | POLLOUT),
                     STUBDM_EFAIL);
    ck_assert_int_eq(w.events, POLLIN);
    h.refuse_watch_at = h.watch_calls + 1;
    stubdm__fd_stop(ctx, &w);
    ck_assert(!stubdm__fd_active(&w));
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "watch_fd"));
    ck_assert_int_eq(lg.warnings, 1);
    ck_assert_ptr_nonnull(strstr(lg.last, "unwatching fd"));
    stubdm_ctx_free(ctx);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ---- the simulated host: a mock xenstored and a scripted QMP peer ------- */

static struct qmp_sim sim;
static struct qmp_peer peer;
static stubdm_ctx *ctx;

static void sim_setup(void)
{
    ck_assert_int_eq(qmp_sim_start(&sim, STUBDOM, GUEST), 0);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    peer.pid = -1;
}

static void sim_teardown(void)
{
    stubdm_ctx_free(ctx);
    ctx = NULL;
    qmp_peer_stop(&peer);
    qmp_sim_stop(&sim);
}

static stubdm_qmp *open_qmp(const struct qmp_peer_step *script)
{
    stubdm_qmp_opts *o = NULL;
    stubdm_qmp *q = NULL;

    ck_assert_int_eq(stubdm_qmp_opts_new(&o), 0);
    ck_assert_int_eq(
        stubdm_qmp_opts_set_transport(o, STUBDM_QMP_TRANSPORT_SIMULATED), 0);
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    ck_assert_int_eq(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q), 0);
    stubdm_qmp_opts_free(o);
    return q;
}

static void write_state(const char *v)
{
    ck_assert(xs_write(sim.xs, XBT_NULL, STATE, v, (unsigned)strlen(v)));
}

static void on_reply_rc(stubdm_qmp *q, stubdm_op *op, int rc,
                        const stubdm_qmp_reply *reply, void *user)
{
    (void)q;
    (void)reply;
    ts_record(user, op, rc);
}

/* A command whose bytes cannot all be written at once needs POLLOUT: the
 * loop refusing that watch fails the connection and so the command, at
 * once, not at its timeout. */
START_TEST(rewatch_refused_fails_the_command)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_D(60000), QP_E()};
    struct hooks h = {0};
    struct ts_result r = {0};
    stubdm_qmp *q = open_qmp(s);
    size_t big = 1u << 20;
    char *args = malloc(big + 16);
    int64_t t0;

    ck_assert_ptr_nonnull(args);
    memcpy(args, "{\"x\":\"", 6);
    memset(args + 6, 'a', big);
    memcpy(args + 6 + big, "\"}", 3);
    h.refuse_pollout = true;
    ck_assert_int_eq(stubdm_ctx_set_loop(ctx, &hook_table, &h), 0);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_qmp_execute(q, "big", args, 30000, on_reply_rc, &r,
                                        NULL),
                     0);
    free(args);
    ts_run_until_done(ctx, &r, 5000);
    /* A connection that failed fails its commands with EVCHAN; the
     * message says why. */
    ck_assert_int_eq(r.rc, STUBDM_EVCHAN);
    ck_assert_msg(strstr(r.msg, "watch_fd"), "%s", r.msg);
    ck_assert_int_lt(stubdm_now_ms() - t0, 20000);
    stubdm_qmp_free(q);
    stubdm_ctx_set_loop(ctx, NULL, NULL); /* h is on this stack */
}
END_TEST

/* ---- dispatch data ------------------------------------------------------ */

struct dd_seen {
    int calls;
    void *data;
};

static void on_wait_dd(stubdm_op *op, int rc, void *user)
{
    struct dd_seen *s = user;

    (void)op;
    ck_assert_int_eq(rc, 0);
    s->calls++;
    s->data = stubdm_ctx_dispatch_data(ctx);
}

START_TEST(dispatch_data_reaches_callbacks)
{
    int egc = 42;
    struct dd_seen s = {0, NULL};
    int64_t end;

    ck_assert_ptr_null(stubdm_ctx_dispatch_data(ctx));
    ck_assert_ptr_null(stubdm_ctx_dispatch_data(NULL));
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUBDOM, GUEST, 10000,
                                            on_wait_dd, &s, NULL),
                     0);
    write_state("running");
    end = stubdm_now_ms() + 5000;
    while (!s.calls && stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_ctx_run_once_ext(ctx, 100, &egc), 0);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_ptr_eq(s.data, &egc);
    ck_assert_ptr_null(stubdm_ctx_dispatch_data(ctx));

    /* The plain forms give NULL; poll_dispatch_ext and timer_fired_ext
     * carry theirs. */
    s.calls = 0;
    s.data = &s;
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUBDOM, GUEST, 10000,
                                            on_wait_dd, &s, NULL),
                     0);
    end = stubdm_now_ms() + 5000;
    while (!s.calls && stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 100), 0);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_ptr_null(s.data);

    s.calls = 0;
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUBDOM, GUEST, 10000,
                                            on_wait_dd, &s, NULL),
                     0);
    end = stubdm_now_ms() + 5000;
    while (!s.calls && stubdm_now_ms() < end) {
        struct pollfd fds[16];
        size_t n = 16;
        int timeout;
        ck_assert_int_eq(stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout), 0);
        poll(fds, n, timeout > 100 || timeout < 0 ? 100 : timeout);
        ck_assert_int_eq(stubdm_ctx_poll_dispatch_ext(ctx, fds, n, &egc), 0);
    }
    ck_assert_int_eq(s.calls, 1);
    ck_assert_ptr_eq(s.data, &egc);

    s.calls = 0;
    s.data = NULL;
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUBDOM, GUEST, 10000,
                                            on_wait_dd, &s, NULL),
                     0);
    /* Completed at once (running is there): the callback is due on the
     * next dispatch, whichever. */
    end = stubdm_now_ms() + 5000;
    while (!s.calls && stubdm_now_ms() < end) {
        ck_assert_int_eq(stubdm_ctx_timer_fired_ext(ctx, &egc), 0);
        if (!s.calls)
            ck_assert_int_eq(stubdm_ctx_run_once_ext(ctx, 50, &egc), 0);
    }
    ck_assert_int_eq(s.calls, 1);
    ck_assert_ptr_eq(s.data, &egc);
}
END_TEST

static void on_reply_dd(stubdm_qmp *q, stubdm_op *op, int rc,
                        const stubdm_qmp_reply *reply, void *user)
{
    struct dd_seen *s = user;

    (void)q;
    (void)op;
    (void)reply;
    ck_assert_int_eq(rc, 0);
    s->calls++;
    s->data = stubdm_ctx_dispatch_data(ctx);
}

START_TEST(dispatch_data_reaches_qmp_replies)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp *q = open_qmp(s);
    struct dd_seen seen = {0, NULL};
    int egc = 7;
    int64_t end = stubdm_now_ms() + 5000;

    ck_assert_int_eq(stubdm_qmp_execute(q, "query-status", NULL, 5000,
                                        on_reply_dd, &seen, NULL),
                     0);
    while (!seen.calls && stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_ctx_run_once_ext(ctx, 100, &egc), 0);
    ck_assert_int_eq(seen.calls, 1);
    ck_assert_ptr_eq(seen.data, &egc);
    stubdm_qmp_free(q);
}
END_TEST

/* ---- the xenstore probe keeps the caller's error ------------------------ */

static void on_probe_lost(stubdm_ctx *c, struct stubdm__xsprobe *p, int rc)
{
    (void)c;
    (void)p;
    ck_abort_msg("probe reported a loss: %d", rc);
}

START_TEST(probe_keeps_the_ctx_error)
{
    struct stubdm__xsprobe p;
    char before[STUBDM_ERRMSG_MAX];
    int64_t end;

    stubdm__xsprobe_init(&p, on_probe_lost);
    ck_assert_int_eq(stubdm__xsprobe_start(ctx, &p), 0);
    /* A failing call: the caller's last error. */
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, 0x7FF0, GUEST, 1000,
                                            ts_on_done, NULL, NULL),
                     STUBDM_EINVAL);
    snprintf(before, sizeof(before), "%s", stubdm_ctx_errmsg(ctx));
    ck_assert_str_ne(before, "");
    /* Past at least one healthy probe. */
    end = stubdm_now_ms() + STUBDM__XS_PROBE_MS * 2 + 200;
    while (stubdm_now_ms() < end)
        ck_assert_int_eq(stubdm_ctx_run_once(ctx, 100), 0);
    ck_assert_uint_ge(stubdm__xs_requests(ctx), 2);
    ck_assert_str_eq(stubdm_ctx_errmsg(ctx), before);
    stubdm__xsprobe_stop(ctx, &p);
}
END_TEST

/* ---- fork --------------------------------------------------------------- */

/* The child's exit status, or a failure (after SIGKILL) if it hangs: a
 * child that joins libxenstore's reader thread, which fork did not copy,
 * waits forever. */
static int wait_child(pid_t pid, int ms)
{
    int64_t end = stubdm_now_ms() + ms;
    int st = -1;

    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (stubdm_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            ck_abort_msg("the forked child hangs");
        }
        usleep(10000);
    }
    return st;
}

static unsigned long unwatch_count(void)
{
    char *r;
    unsigned long n;

    r = xs_control_command(sim.xs, "unwatch-count", "", 0);
    ck_assert_ptr_nonnull(r);
    n = strtoul(r, NULL, 10);
    free(r);
    return n;
}

/* Whether the QMP lock file is free for another process's open file. */
static bool lock_is_free(void)
{
    int fd = open(sim.lock, O_RDWR | O_CLOEXEC);
    bool free_ = false;

    ck_assert_int_ge(fd, 0);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        free_ = true;
        flock(fd, LOCK_UN);
    }
    close(fd);
    return free_;
}

/*
 * A child forked while a QMP connection and a wait are live drops its ctx
 * (postfork_child + free) and exits: the parent's connection still
 * answers, its lock is still held, its wait completes, and xenstored saw
 * no UNWATCH from the child.
 */
START_TEST(postfork_child_leaves_the_parent_alone)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp *q = open_qmp(s);
    struct ts_result w = {0};
    unsigned long unwatches;
    char *reply = NULL;
    int st = -1, p[2], res[2];
    pid_t pid;

    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUBDOM, GUEST, 20000,
                                            ts_on_done, &w, NULL),
                     0);
    ts_spin(ctx, 50); /* the wait's watches are registered */
    ck_assert(!w.done);
    ck_assert(!lock_is_free());
    unwatches = unwatch_count();

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* res: the parent's array, this copy the child's */
        res[0] = stubdm_ctx_postfork_child(ctx);
        res[0] |= stubdm_ctx_postfork_child(ctx); /* harmless twice */
        stubdm_ctx_free(ctx);
        /* Under valgrind: the child's memory errors.  Its leak check is
         * skipped (SIGKILL): libxenstore's reader thread, which fork did
         * not copy, had a message buffer in flight that nothing in the
         * child can reach or free (libxl's postfork has the same caveat). */
        res[1] = (int)VALGRIND_COUNT_ERRORS;
        if (write(p[1], res, sizeof(res)) != (ssize_t)sizeof(res))
            _exit(2);
        raise(SIGKILL);
    }
    close(p[1]);
    ck_assert_int_eq(read(p[0], res, sizeof(res)), (ssize_t)sizeof(res));
    close(p[0]);
    st = wait_child(pid, 10000);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "child status %#x", st);
    ck_assert_int_eq(res[0], 0);
    ck_assert_msg(res[1] == 0, "%d valgrind errors in the child", res[1]);

    ck_assert_uint_eq(unwatch_count(), unwatches);
    ck_assert(!lock_is_free());
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status", NULL, 5000,
                                             &reply),
                     0);
    ck_assert_ptr_nonnull(reply);
    free(reply);
    write_state("running");
    ts_run_until_done(ctx, &w, 5000);
    ck_assert_int_eq(w.rc, 0);
    stubdm_qmp_free(q);
    /* The parent's own close unlocks. */
    ck_assert(lock_is_free());
}
END_TEST

/* A child forked without exec holds a copy of the lock's descriptor (the
 * library's fds are close-on-exec, not close-on-fork): the parent's close
 * must still release the lock, for the next client. */
START_TEST(qmp_lock_released_while_a_child_holds_a_copy)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp *q = open_qmp(s);
    int st, p[2];
    char c;
    pid_t pid;

    ck_assert(!lock_is_free());
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Holds every inherited descriptor until the parent is done. */
        close(p[1]);
        if (read(p[0], &c, 1) < 0)
            _exit(1);
        raise(SIGKILL); /* no valgrind leak check of the inherited heap */
    }
    close(p[0]);
    stubdm_qmp_free(q);
    ck_assert_msg(lock_is_free(), "the lock stays with the child's copy");
    close(p[1]);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
}
END_TEST

/* ---- close-on-exec ------------------------------------------------------ */

/* Mark every descriptor open now close-on-exec: they are the harness's
 * (Check's, the mock's), not the library's. */
static void cloexec_all(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
            continue;
        fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
    }
    closedir(d);
}

/* The helper run by exec: print the descriptors it was born with. */
static int list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    if (!d)
        return 1;
    while ((e = readdir(d))) {
        char link[300], target[256] = "";
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        printf("%s %s\n", e->d_name, target);
    }
    closedir(d);
    return 0;
}

START_TEST(every_descriptor_is_cloexec)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp *q;
    struct ts_result w = {0};
    char out[4096] = "";
    int p[2], st;
    size_t len = 0;
    ssize_t n;
    pid_t pid;

    cloexec_all();
    q = open_qmp(s); /* QMP socket, its lock, xenstore, epoll, timerfd */
    ck_assert_int_eq(stubdm_dm_wait_running(ctx, STUBDOM, GUEST, 20000,
                                            ts_on_done, &w, NULL),
                     0);
    ts_spin(ctx, 50);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(p[1], 1);
        execl(self_exe, self_exe, "--list-fds", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    while ((n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(p[0]);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        ck_assert_msg(atoi(line) <= 2, "inherited across exec: %s", line);
    stubdm_qmp_free(q);
}
END_TEST

/* ---- threads: wake and interrupt ---------------------------------------- */

struct poke {
    stubdm_ctx *ctx;
    int delay_ms;
    bool interrupt;
};

static void *poker(void *arg)
{
    struct poke *p = arg;

    usleep((useconds_t)p->delay_ms * 1000);
    if (p->interrupt)
        stubdm_ctx_interrupt(p->ctx);
    else
        stubdm_ctx_wake(p->ctx);
    return NULL;
}

static pthread_t poke_later(struct poke *p)
{
    pthread_t t;

    ck_assert_int_eq(pthread_create(&t, NULL, poker, p), 0);
    return t;
}

/* Generous: valgrind and a loaded machine.  The call would otherwise wait
 * 20 s (the wait's or the command's timeout). */
#define BOUND_MS 4000

/* How long the blocked call took to return (TEST_EMBED_VERBOSE=1). */
static void report(const char *what, int64_t t0)
{
    if (getenv("TEST_EMBED_VERBOSE"))
        fprintf(stderr, "%s: returned %lld ms after the call (poke at 200)\n",
                what, (long long)(stubdm_now_ms() - t0));
}

START_TEST(wake_returns_run_once)
{
    stubdm_ctx *c;
    struct poke p = {NULL, 200, false};
    pthread_t t;
    int64_t t0;

    ck_assert_int_eq(stubdm_ctx_new(&c), 0);
    p.ctx = c;
    /* Before any run_once: left pending, the first one does not sleep. */
    stubdm_ctx_wake(c);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_ctx_run_once(c, 20000), 0);
    ck_assert_int_lt(stubdm_now_ms() - t0, BOUND_MS);
    /* While it waits, nothing else to wake it (no fd, no timer). */
    t = poke_later(&p);
    t0 = stubdm_now_ms();
    ck_assert_int_eq(stubdm_ctx_run_once(c, 20000), 0);
    report("run_once woken", t0);
    ck_assert_int_lt(stubdm_now_ms() - t0, BOUND_MS);
    pthread_join(t, NULL);
    stubdm_ctx_free(c);
}
END_TEST

START_TEST(interrupt_cancels_wait_running_sync)
{
    struct poke p = {ctx, 200, true};
    pthread_t t = poke_later(&p);
    int64_t t0 = stubdm_now_ms();

    ck_assert_int_eq(stubdm_dm_wait_running_sync(ctx, STUBDOM, GUEST, 20000),
                     STUBDM_ECANCELED);
    report("wait_running_sync interrupted", t0);
    ck_assert_int_lt(stubdm_now_ms() - t0, BOUND_MS);
    pthread_join(t, NULL);
    /* Consumed: the next call waits as usual. */
    write_state("running");
    ck_assert_int_eq(stubdm_dm_wait_running_sync(ctx, STUBDOM, GUEST, 5000),
                     0);
}
END_TEST

START_TEST(interrupt_cancels_qmp_execute_sync)
{
    static const struct qmp_peer_step s[] = {QP_HS(), QP_H(20000), QP_E()};
    stubdm_qmp *q = open_qmp(s);
    struct poke p = {ctx, 200, true};
    char *reply = (char *)1;
    pthread_t t = poke_later(&p);
    int64_t t0 = stubdm_now_ms();

    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status", NULL, 20000,
                                             &reply),
                     STUBDM_ECANCELED);
    report("qmp_execute_sync interrupted", t0);
    ck_assert_int_lt(stubdm_now_ms() - t0, BOUND_MS);
    ck_assert_ptr_null(reply);
    pthread_join(t, NULL);
    /* Given before the call: the next one returns at once. */
    stubdm_ctx_interrupt(ctx);
    ck_assert_int_eq(stubdm_qmp_execute_sync(q, "query-status", NULL, 20000,
                                             NULL),
                     STUBDM_ECANCELED);
    stubdm_qmp_free(q);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("embed");
    TCase *hooks = tcase_create("hooks");
    TCase *host = tcase_create("host");
    TCase *threads = tcase_create("threads");

    tcase_add_test(hooks, set_timer_refused_fails_the_arm);
    tcase_add_test(hooks, set_timer_refused_fails_set_loop);
    tcase_add_test(hooks, set_timer_refused_at_dispatch_end);
    tcase_add_test(hooks, unwatch_refused_is_reported);
    suite_add_tcase(s, hooks);

    tcase_add_checked_fixture(host, sim_setup, sim_teardown);
    tcase_set_timeout(host, 60);
    tcase_add_test(host, rewatch_refused_fails_the_command);
    tcase_add_test(host, dispatch_data_reaches_callbacks);
    tcase_add_test(host, dispatch_data_reaches_qmp_replies);
    tcase_add_test(host, probe_keeps_the_ctx_error);
    tcase_add_test(host, postfork_child_leaves_the_parent_alone);
    tcase_add_test(host, qmp_lock_released_while_a_child_holds_a_copy);
    tcase_add_test(host, every_descriptor_is_cloexec);
    suite_add_tcase(s, host);

    tcase_add_checked_fixture(threads, sim_setup, sim_teardown);
    tcase_set_timeout(threads, 60);
    tcase_add_test(threads, wake_returns_run_once);
    tcase_add_test(threads, interrupt_cancels_wait_running_sync);
    tcase_add_test(threads, interrupt_cancels_qmp_execute_sync);
    suite_add_tcase(s, threads);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--list-fds"))
        return list_fds();
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n <= 0)
        return 1;
    self_exe[n] = '\0';
    return ts_run_suite(suite());
}
