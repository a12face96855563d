/*
 * Child processes of the library (the hotplug scripts): started with
 * posix_spawn, watched in the ctx's loop through a pidfd (or, where
 * pidfd_open is missing, by polling), signalled only through that pidfd,
 * and reaped by one of two owners (stubdm_ctx_set_child_reaping):
 *
 *   library  waitpid(pid) once the pidfd says it ended.  A host that reaps
 *            every child (waitpid(-1), SIGCHLD ignored) takes the status
 *            away: the child then ended with an unknown status.
 *   host     the library never reaps (no waitpid, no waitid without
 *            WNOWAIT): the host does, and hands the status over with
 *            stubdm_ctx_child_exited, from its loop.  The pidfd still
 *            says when the child ended (it is readable from the exit on,
 *            reaped or not), and keeps signals from reaching a reused pid.
 *
 * The ctx lists every child not yet reaped or handed over, so that
 * stubdm_ctx_child_exited can say which pids are the library's; in host
 * mode a child the library gave up on (killed at a cancel) stays owed
 * until the host hands its status over.  No global state, no SIGCHLD
 * handler: each child is the ctx's.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "spawn/child.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define MOD "hotplug"
#define POLL_FIRST_MS 5 /* reaping without a pidfd: first look ... */
#define POLL_MAX_MS 50  /* ... then backing off to this */

#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1u << 2) /* Linux 6.9 */
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

void stubdm__child_init(struct stubdm__child *c)
{
    memset(c, 0, sizeof(*c));
    c->pidfd = -1;
    c->outfd = -1;
    c->poll_ms = POLL_FIRST_MS;
    stubdm__fd_init(&c->outw, NULL);
    stubdm__fd_init(&c->pidw, NULL);
    stubdm__timer_init(&c->poll, NULL);
    stubdm__list_init(&c->link);
}

/* ---- the ctx's children ------------------------------------------------- */

static void child_list(stubdm_ctx *ctx, struct stubdm__child *c)
{
    c->ctx = ctx;
    c->host = ctx->child_host;
    stubdm__list_add_tail(&ctx->children, &c->link);
    c->listed = true;
}

static void child_unlist(struct stubdm__child *c)
{
    if (!c->listed)
        return;
    stubdm__list_del(&c->link);
    c->listed = false;
}

/* A child of host mode the library stops following before its status
 * came: the host still reaps it and hands the status over, and must hear
 * that the pid was the library's.  The oldest is forgotten when full (a
 * host handing nothing over would fill it). */
static void child_owe(stubdm_ctx *ctx, pid_t pid)
{
    size_t n = STUBDM_ARRAY_SIZE(ctx->child_owed);

    if (ctx->n_child_owed == n) {
        memmove(ctx->child_owed, ctx->child_owed + 1,
                (n - 1) * sizeof(ctx->child_owed[0]));
        ctx->n_child_owed--;
    }
    ctx->child_owed[ctx->n_child_owed++] = pid;
}

int stubdm_ctx_set_child_reaping(stubdm_ctx *ctx, stubdm_child_reaping mode)
{
    if (!ctx || (mode != STUBDM_CHILD_REAPING_LIBRARY &&
                 mode != STUBDM_CHILD_REAPING_HOST))
        return STUBDM_EINVAL;
    ctx->child_host = mode == STUBDM_CHILD_REAPING_HOST;
    return 0;
}

int stubdm_ctx_child_exited(stubdm_ctx *ctx, pid_t pid, int wstatus)
{
    struct stubdm__list *it;

    if (!ctx || pid <= 0)
        return STUBDM_EINVAL;
    for (it = ctx->children.next; it != &ctx->children; it = it->next) {
        struct stubdm__child *c = STUBDM_CONTAINER_OF(it, struct stubdm__child,
                                                      link);
        if (c->pid != pid)
            continue;
        child_unlist(c);
        if (!c->exited) {
            c->exited = true;
            c->wstatus = wstatus;
            c->lost = STUBDM__CHILD_LOST_NONE;
        }
        /* Its watcher takes it from the next dispatch (this may run
         * outside one, or inside a callback). */
        if (c->end && !c->ended)
            stubdm__timer_arm(ctx, &c->poll, stubdm_now_ms());
        return 1;
    }
    for (size_t i = 0; i < ctx->n_child_owed; i++) {
        if (ctx->child_owed[i] != pid)
            continue;
        memmove(ctx->child_owed + i, ctx->child_owed + i + 1,
                (ctx->n_child_owed - i - 1) * sizeof(ctx->child_owed[0]));
        ctx->n_child_owed--;
        return 1;
    }
    return 0;
}

/* ---- starting ----------------------------------------------------------- */

/* posix_spawn path with stdin /dev/null, stdout and stderr on out, nothing
 * else open; 0 or an errno value. */
static int spawn_one(const char *path, char *const *argv, char *const *env,
                     int out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    int err;

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigfillset(&all);
    /* closefrom(3): every library fd (libxenstore's socket and watch
     * pipe, libxenctrl's, the loop's epoll set...) and the application's
     * stay out of the script, CLOEXEC or not. */
    err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!err)
        err = posix_spawn_file_actions_adddup2(&fa, out, 1);
    if (!err)
        err = posix_spawn_file_actions_adddup2(&fa, out, 2);
    if (!err)
        err = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (!err)
        err = posix_spawn_file_actions_addchdir_np(&fa, "/");
    /* A clean signal state (the application may block or ignore some),
     * and a process group of its own, so a timeout kills what the script
     * started too. */
    if (!err)
        err = posix_spawnattr_setsigmask(&at, &none);
    if (!err)
        err = posix_spawnattr_setsigdefault(&at, &all);
    if (!err)
        err = posix_spawnattr_setpgroup(&at, 0);
    if (!err)
        err = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF |
                                                POSIX_SPAWN_SETPGROUP);
    if (!err)
        err = posix_spawn(pid, path, &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return err;
}

/* A pidfd to watch and signal the child by, unless the kernel has none
 * (then the ctx polls for every child from here on). */
static void open_pidfd(stubdm_ctx *ctx, struct stubdm__child *c)
{
    if (ctx->no_pidfd)
        return;
    c->pidfd = pidfd_open(c->pid, 0); /* always close-on-exec */
    if (c->pidfd < 0 && errno == ENOSYS) {
        ctx->no_pidfd = true;
        LOG_DEBUG(ctx, MOD, "pidfd_open: %s: watching children by polling",
                  strerror(ENOSYS));
    }
}

int stubdm__child_spawn(stubdm_ctx *ctx, struct stubdm__child *c,
                        const char *path, char *const *argv, char *const *env)
{
    int p[2] = {-1, -1}, err;
    pid_t pid = 0;

    stubdm__child_init(c);
    /* Only the read end is non-blocking: the child's stdout stays a
     * normal blocking pipe. */
    if (pipe2(p, O_CLOEXEC) < 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
        err = errno;
        if (p[0] >= 0) {
            close(p[0]);
            close(p[1]);
        }
        return stubdm__fail(ctx, STUBDM_EFAIL, err, "hotplug: pipe: %s",
                            strerror(err));
    }
    err = spawn_one(path, argv, env, p[1], &pid);
    close(p[1]);
    if (err) {
        close(p[0]);
        return stubdm__fail(ctx, err == ENOENT ? STUBDM_ENOENT : STUBDM_EFAIL,
                            err, "starting %s %s: %s", path,
                            argv[1] ? argv[1] : "", strerror(err));
    }
    c->pid = pid;
    c->outfd = p[0];
    child_list(ctx, c);
    open_pidfd(ctx, c);
    return 0;
}

/* ---- output ------------------------------------------------------------- */

/* Keep the last STUBDM__CHILD_TAIL bytes of what the child printed (n is
 * at most one read, smaller than the tail). */
static void tail_add(struct stubdm__child *c, const char *b, size_t n)
{
    c->total += n;
    if (c->len + n > STUBDM__CHILD_TAIL) {
        size_t drop = c->len + n - STUBDM__CHILD_TAIL;
        memmove(c->tail, c->tail + drop, c->len - drop);
        c->len -= drop;
    }
    memcpy(c->tail + c->len, b, n);
    c->len += n;
}

bool stubdm__child_drain(struct stubdm__child *c)
{
    char b[STUBDM__CHILD_TAIL / 4];

    for (;;) {
        ssize_t n = read(c->outfd, b, sizeof(b));
        if (n > 0) {
            tail_add(c, b, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

/* ---- reaping ------------------------------------------------------------ */

/* Library mode: collect the exit status if the child has ended; true once
 * it has. */
static bool reap(struct stubdm__child *c)
{
    int st = 0;
    pid_t r;

    if (c->exited || c->pid <= 0)
        return true;
    do
        r = waitpid(c->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    c->exited = true;
    c->wstatus = r == c->pid ? st : -1;
    c->lost = r == c->pid ? STUBDM__CHILD_LOST_NONE
                          : STUBDM__CHILD_LOST_STOLEN;
    child_unlist(c);
    return true;
}

/* The status from a waitid siginfo. */
static int status_of(const siginfo_t *si)
{
    if (si->si_code == CLD_EXITED)
        return W_EXITCODE(si->si_status, 0);
    return si->si_status | (si->si_code == CLD_DUMPED ? WCOREFLAG : 0);
}

/*
 * Host mode: whether the child ended, looked at without reaping it
 * (WNOWAIT leaves the zombie, and its status, to the host).  1: ended,
 * *st its status, or -1 when the host reaped it already; 0: runs.
 */
static int peek(const struct stubdm__child *c, int *st)
{
    siginfo_t si;
    int r;

    memset(&si, 0, sizeof(si));
    *st = -1;
    if (c->pidfd >= 0) {
        r = waitid((idtype_t)P_PIDFD, (id_t)c->pidfd, &si,
                   WEXITED | WNOHANG | WNOWAIT);
        if (r < 0 && errno == EINVAL) /* Linux 5.3: no P_PIDFD */
            r = pidfd_send_signal(c->pidfd, 0, NULL, 0) == 0
                    ? waitid(P_PID, (id_t)c->pid, &si,
                             WEXITED | WNOHANG | WNOWAIT)
                    : -1;
    } else {
        r = waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT);
    }
    if (r < 0)
        return 1; /* ECHILD: reaped by the host */
    if (si.si_pid != c->pid)
        return 0;
    *st = status_of(&si);
    return 1;
}

/* ---- signals ------------------------------------------------------------ */

/* Each process of process group pgid, by a pidfd taken before its group
 * is read (so a pid reused meanwhile is never the one signalled), into
 * fds; how many (at most max). */
static size_t group_pidfds(pid_t pgid, int *fds, size_t max)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    size_t n = 0;

    if (!d)
        return 0;
    while (n < max && (e = readdir(d))) {
        char p[64], st[512], *rp;
        long pid = strtol(e->d_name, &rp, 10), pg = 0;
        ssize_t len;
        int fd, sfd;

        if (*rp || pid <= 1 || pid == (long)pgid)
            continue;
        fd = pidfd_open((pid_t)pid, 0);
        if (fd < 0)
            continue;
        snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
        sfd = open(p, O_RDONLY | O_CLOEXEC);
        len = sfd >= 0 ? read(sfd, st, sizeof(st) - 1) : -1;
        if (sfd >= 0)
            close(sfd);
        if (len > 0) {
            st[len] = '\0';
            rp = strrchr(st, ')'); /* the command may hold anything */
            if (!rp || sscanf(rp + 1, " %*c %*d %ld", &pg) != 1)
                pg = 0;
        }
        /* Still the process the pidfd names: the stat was its. */
        if (pg == (long)pgid && pidfd_send_signal(fd, 0, NULL, 0) == 0)
            fds[n++] = fd;
        else
            close(fd);
    }
    closedir(d);
    return n;
}

/*
 * SIGKILL for a child still running and its process group, through
 * pidfds only: when the host reaps children itself, the child's pid may
 * be freed and reused by the time we kill, and kill(pid) or kill(-pid)
 * would hit whoever has it now; a pidfd names this process only (ESRCH
 * once it is reaped).  Since Linux 6.9 the group is one pidfd call.
 * Before, its members are found in /proc, each by a pidfd of its own, and
 * signalled only if the child was still unreaped after their group was
 * read (its number, the group's id, was then still ours).
 */
static void signal_pidfd(stubdm_ctx *ctx, struct stubdm__child *c)
{
    int fds[64];
    size_t n;

    if (!ctx->no_pidfd_group) {
        if (pidfd_send_signal(c->pidfd, SIGKILL, NULL,
                              PIDFD_SIGNAL_PROCESS_GROUP) == 0 ||
            errno != EINVAL) {
            pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0); /* left it? */
            return;
        }
        ctx->no_pidfd_group = true;
    }
    n = group_pidfds(c->pid, fds, STUBDM_ARRAY_SIZE(fds));
    bool ours = pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0) == 0;
    for (size_t i = 0; i < n; i++) {
        if (ours)
            pidfd_send_signal(fds[i], SIGKILL, NULL, 0);
        close(fds[i]);
    }
}

/*
 * Without a pidfd (pidfd_open missing: valgrind 3.19, Linux < 5.3): by
 * pid, only while waitid(WNOWAIT) shows it still an unreaped child of
 * ours, whose number the kernel cannot hand out again.  What remains is
 * bounded to the host reaping it and a new process getting the same
 * number (a whole cycle of the pid space) between the two calls.
 */
static void signal_pid(struct stubdm__child *c)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT))
        return; /* ECHILD: reaped by someone else, nothing of ours left */
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
}

/* Reap a killed child through its pidfd: by pid, a reused number would
 * make us wait for (and reap) a stranger.  Returns waitpid's result. */
static pid_t wait_pidfd(struct stubdm__child *c, int *st)
{
    siginfo_t si;
    int r;

    memset(&si, 0, sizeof(si));
    do
        r = waitid((idtype_t)P_PIDFD, (id_t)c->pidfd, &si, WEXITED);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EINVAL) /* Linux 5.3: pidfd_open, no P_PIDFD */
        return pidfd_send_signal(c->pidfd, 0, NULL, 0) == 0
                   ? waitpid(c->pid, st, 0)
                   : -1;
    if (r < 0)
        return -1;
    *st = status_of(&si);
    return c->pid;
}

void stubdm__child_kill(struct stubdm__child *c)
{
    int st = 0;
    pid_t r;

    if (c->pid <= 0 || c->exited || !c->ctx)
        return;
    /* In a forked child (stubdm_ctx_postfork_child) the scripts are the
     * parent's children: not ours to signal or reap. */
    if (c->ctx->postfork)
        return;
    if (c->pidfd >= 0)
        signal_pidfd(c->ctx, c);
    else
        signal_pid(c);
    if (c->host)
        return; /* the host reaps it, and hands the status over */
    if (c->pidfd >= 0) {
        r = wait_pidfd(c, &st);
    } else {
        do
            r = waitpid(c->pid, &st, 0);
        while (r < 0 && errno == EINTR);
    }
    c->exited = true;
    c->wstatus = r == c->pid ? st : -1;
    c->lost = r == c->pid ? STUBDM__CHILD_LOST_NONE
                          : STUBDM__CHILD_LOST_STOLEN;
    child_unlist(c);
}

void stubdm__child_release(struct stubdm__child *c)
{
    stubdm_ctx *ctx = c->ctx;

    if (!ctx)
        return;
    stubdm__fd_stop(ctx, &c->outw);
    stubdm__fd_stop(ctx, &c->pidw);
    stubdm__timer_stop(ctx, &c->poll);
    if (c->outfd >= 0) {
        close(c->outfd);
        c->outfd = -1;
    }
    if (c->pidfd >= 0) {
        close(c->pidfd);
        c->pidfd = -1;
    }
    if (c->listed && c->host)
        child_owe(ctx, c->pid);
    child_unlist(c);
}

/* ---- watching, in the loop ---------------------------------------------- */

static void watch_end(stubdm_ctx *ctx, struct stubdm__child *c)
{
    if (c->ended)
        return;
    c->ended = true;
    if (c->outfd >= 0)
        stubdm__child_drain(c);
    stubdm__fd_stop(ctx, &c->pidw);
    stubdm__timer_stop(ctx, &c->poll);
    c->end(ctx, c);
}

/* Host mode, the child seen ended (now, or earlier at gone_ms): its status
 * is handed over, or after the grace it is unknown. */
static void host_check(stubdm_ctx *ctx, struct stubdm__child *c)
{
    int64_t now = stubdm_now_ms();

    if (c->exited) {
        watch_end(ctx, c);
        return;
    }
    if (!c->gone_ms)
        c->gone_ms = now;
    if (now - c->gone_ms >= STUBDM__CHILD_HOST_GRACE_MS) {
        c->exited = true;
        c->wstatus = -1;
        c->lost = STUBDM__CHILD_LOST_SILENT;
        watch_end(ctx, c);
        return;
    }
    stubdm__timer_arm(ctx, &c->poll, c->gone_ms + STUBDM__CHILD_HOST_GRACE_MS);
}

static void on_pidfd(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    struct stubdm__child *c = STUBDM_CONTAINER_OF(w, struct stubdm__child,
                                                  pidw);

    (void)revents;
    /* Readable from the exit on, whoever reaps: watched once. */
    stubdm__fd_stop(ctx, w);
    if (c->host) {
        host_check(ctx, c);
        return;
    }
    if (reap(c))
        watch_end(ctx, c);
    else if (!stubdm__timer_armed(&c->poll)) /* readable, not reapable */
        stubdm__timer_arm(ctx, &c->poll, stubdm_now_ms() + c->poll_ms);
}

static void on_poll(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct stubdm__child *c = STUBDM_CONTAINER_OF(t, struct stubdm__child,
                                                  poll);
    int st;

    if (c->exited || (!c->host && reap(c))) {
        watch_end(ctx, c);
        return;
    }
    if (c->host && (c->gone_ms || (c->pidfd < 0 && peek(c, &st)))) {
        host_check(ctx, c);
        return;
    }
    if (c->host && c->pidfd >= 0)
        return; /* the pidfd says when */
    if (c->poll_ms < POLL_MAX_MS)
        c->poll_ms *= 2;
    stubdm__timer_arm(ctx, t, stubdm_now_ms() + c->poll_ms);
}

static void on_output(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    struct stubdm__child *c = STUBDM_CONTAINER_OF(w, struct stubdm__child,
                                                  outw);

    (void)revents;
    if (stubdm__child_drain(c)) {
        /* End of output; the end comes through the pidfd or the poll. */
        stubdm__fd_stop(ctx, w);
        close(c->outfd);
        c->outfd = -1;
    }
}

int stubdm__child_watch(stubdm_ctx *ctx, struct stubdm__child *c,
                        stubdm__child_end_fn *end)
{
    int rc;

    c->end = end;
    c->outw.cb = on_output;
    c->pidw.cb = on_pidfd;
    c->poll.cb = on_poll;
    rc = stubdm__fd_watch(ctx, &c->outw, c->outfd, POLLIN);
    if (!rc && c->pidfd >= 0)
        rc = stubdm__fd_watch(ctx, &c->pidw, c->pidfd, POLLIN);
    else if (!rc)
        rc = stubdm__timer_arm(ctx, &c->poll, stubdm_now_ms() + c->poll_ms);
    return rc;
}

/* ---- waiting, blocking -------------------------------------------------- */

/* Whether the child ended, in a blocking wait (pidfd readable or not). */
static bool wait_check(struct stubdm__child *c)
{
    int st;

    if (c->exited)
        return true;
    if (!c->host)
        return reap(c);
    if (!peek(c, &st))
        return false;
    c->exited = true;
    c->wstatus = st;
    c->lost = st < 0 ? STUBDM__CHILD_LOST_BLOCKING : STUBDM__CHILD_LOST_NONE;
    /* Listed still: the host reaps it and hands the status over. */
    return true;
}

bool stubdm__child_wait(stubdm_ctx *ctx, struct stubdm__child *c,
                        int64_t deadline_ms)
{
    (void)ctx;
    while (!wait_check(c)) {
        struct pollfd p[2];
        nfds_t np = 0;
        int64_t left = deadline_ms - stubdm_now_ms();
        int wait_ms;

        if (left <= 0)
            return false;
        if (c->outfd >= 0)
            p[np++] = (struct pollfd){c->outfd, POLLIN, 0};
        if (c->pidfd >= 0)
            p[np++] = (struct pollfd){c->pidfd, POLLIN, 0};
        wait_ms = left > INT32_MAX ? INT32_MAX : (int)left;
        if (c->pidfd < 0) { /* no pidfd: look again soon */
            if (wait_ms > c->poll_ms)
                wait_ms = c->poll_ms;
            if (c->poll_ms < POLL_MAX_MS)
                c->poll_ms *= 2;
        }
        if (poll(p, np, wait_ms) < 0 && errno != EINTR)
            usleep(1000);
        if (c->outfd >= 0 && stubdm__child_drain(c)) {
            close(c->outfd);
            c->outfd = -1;
        }
    }
    if (c->outfd >= 0) {
        stubdm__child_drain(c);
        close(c->outfd);
        c->outfd = -1;
    }
    return true;
}

/* ---- results ------------------------------------------------------------ */

bool stubdm__child_ok(const struct stubdm__child *c)
{
    return c->exited && c->wstatus >= 0 && WIFEXITED(c->wstatus) &&
           WEXITSTATUS(c->wstatus) == 0;
}

void stubdm__child_describe(const struct stubdm__child *c, char *out,
                            size_t len)
{
    if (c->wstatus >= 0 && WIFEXITED(c->wstatus))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(c->wstatus));
    else if (c->wstatus >= 0 && WIFSIGNALED(c->wstatus))
        snprintf(out, len, "killed by signal %d", WTERMSIG(c->wstatus));
    else if (c->wstatus >= 0)
        snprintf(out, len, "ended (wait status 0x%x)", (unsigned)c->wstatus);
    else if (c->lost == STUBDM__CHILD_LOST_SILENT)
        snprintf(out, len,
                 "ended with an unknown status (the host reaps children, "
                 "STUBDM_CHILD_REAPING_HOST, but did not hand its status "
                 "over with stubdm_ctx_child_exited within %d ms)",
                 STUBDM__CHILD_HOST_GRACE_MS);
    else if (c->lost == STUBDM__CHILD_LOST_BLOCKING)
        snprintf(out, len,
                 "ended with an unknown status (the host reaped it while a "
                 "blocking call waited: only an asynchronous one takes "
                 "statuses from stubdm_ctx_child_exited)");
    else
        snprintf(out, len,
                 "ended with an unknown status (reaped by someone else: is "
                 "SIGCHLD ignored, or are all children reaped by the "
                 "application? then set STUBDM_CHILD_REAPING_HOST and hand "
                 "statuses over with stubdm_ctx_child_exited)");
}

/* Bytes of output per log message: a message is at most 1023 bytes
 * (log.c), and the device's name comes first. */
#define LOG_CHUNK 768

/* The kept output, as log messages of at most LOG_CHUNK bytes each, cut at
 * line ends where it can be: printable, newlines as " | ".  The bytes come
 * from a dom0 script, but a script prints what it read (values a domain
 * may have written), so they are data. */
void stubdm__child_log_output(stubdm_ctx *ctx, const struct stubdm__child *c,
                              const char *who)
{
    char text[LOG_CHUNK + 8];
    size_t i = 0, part = 0;

    if (!c->total) {
        stubdm__log(ctx, STUBDM_LOG_WARN, 0, MOD, "%s: no output", who);
        return;
    }
    if (c->total > c->len) /* the first line kept is only its end: skip */
        while (i < c->len && c->tail[i++] != '\n')
            ;
    while (i < c->len) {
        size_t o = 0, cut = 0, cut_i = 0;
        for (; i < c->len && o + 3 < LOG_CHUNK; i++) {
            unsigned char ch = (unsigned char)c->tail[i];
            if (ch == '\n') {
                cut = o;
                cut_i = i + 1;
                if (i + 1 < c->len) {
                    memcpy(text + o, " | ", 3);
                    o += 3;
                }
            } else {
                text[o++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
            }
        }
        if (i < c->len && cut) { /* full: end at the last line's end */
            o = cut;
            i = cut_i;
        }
        text[o] = '\0';
        part++;
        stubdm__log(ctx, STUBDM_LOG_WARN, 0, MOD,
                    "%s: output%s, part %zu%s: %s", who,
                    c->total > c->len ? " (its last 4 KiB)" : "", part,
                    i < c->len ? "" : " (end)", text);
    }
}
