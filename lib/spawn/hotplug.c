/*
 * Hotplug scripts of a stubdomain's backends, run as libxl runs them
 * (xl.conf's run_hotplug_scripts=1, its default): Xen 4.17 on Debian
 * ships no udev rules for them, so without this a vbd's blkback never
 * gets "physical-device" (it stays in InitWait) and a vif never joins
 * its bridge.
 *
 * Chronologically, for each device of a spawn (stubdm__hotplug_add):
 *
 *   the backend (dom0's kernel driver) reaches InitWait (state 2)
 *   -> the add (vbd) / online (vif) script is started: posix_spawn, in
 *      its own process group, stdin /dev/null, stdout+stderr to a pipe,
 *      nothing else inherited;
 *   -> it exits (pidfd readable, or waitpid polled where pidfd_open is
 *      missing) and the backend's hotplug-status says "connected"
 *      (a watch on the backend directory sees both state and status);
 *   -> the device is done; all done: the op completes.
 *
 * The library keeps no global state for this (no SIGCHLD handler): each
 * child is reaped by its pid.  A script dies with its op (timeout, cancel,
 * stubdomain death, ctx_free), not with the process: no PR_SET_PDEATHSIG,
 * which follows the spawning thread and would cut a script off in
 * mid-device (docs/simulated-host.md, "Devices").  The teardown's
 * remove/offline scripts run blocking (stubdm__hotplug_remove_all), as the
 * rest of a teardown does.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/num.h"
#include "core/op.h"
#include "core/peer.h"
#include "spawn/hotplug.h"
#include "xen/domain.h"
#include "xen/nodes.h"
#include "xen/xs.h"

#include <dirent.h>
#include <errno.h>
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
#include <xenstore.h>

#define MOD "hotplug"
#define OUT_TAIL 4096         /* bytes of a script's output kept for the log */
#define STATE_MAX 16          /* backend "state" */
#define STATUS_MAX 32         /* backend "hotplug-status" */
#define HOTPLUG_ERROR_MAX 256 /* backend "hotplug-error" (text) */
#define SCRIPT_MAX 1024       /* backend "script" (teardown reads it back) */
#define POLL_FIRST_MS 5       /* reaping without a pidfd: first look ... */
#define POLL_MAX_MS 50        /* ... then backing off to this */
#define DEFAULT_PATH                                                          \
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define TOOLSTACK_DOMID 0u

/* ---- one script run ----------------------------------------------------- */

struct child {
    pid_t pid; /* 0: never started */
    int pidfd; /* -1: none (reaped by polling waitpid) */
    int outfd; /* read end of stdout+stderr, -1 once closed */
    bool exited;
    int wstatus;  /* waitpid's status; -1: unknown (reaped elsewhere) */
    size_t total; /* bytes of output seen */
    size_t len;   /* bytes in tail */
    char tail[OUT_TAIL];
};

static void child_init(struct child *c)
{
    memset(c, 0, sizeof(*c));
    c->pidfd = -1;
    c->outfd = -1;
}

/* "exited with status 1", "killed by signal 9", ... */
static void describe_status(const struct child *c, char *out, size_t len)
{
    if (c->wstatus < 0)
        snprintf(out, len,
                 "ended with an unknown status (reaped by "
                 "someone else: is SIGCHLD ignored, or are all "
                 "children reaped by the application?)");
    else if (WIFEXITED(c->wstatus))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(c->wstatus));
    else if (WIFSIGNALED(c->wstatus))
        snprintf(out, len, "killed by signal %d", WTERMSIG(c->wstatus));
    else
        snprintf(out, len, "ended (wait status 0x%x)", (unsigned)c->wstatus);
}

static bool child_ok(const struct child *c)
{
    return c->exited && c->wstatus >= 0 && WIFEXITED(c->wstatus) &&
           WEXITSTATUS(c->wstatus) == 0;
}

/* The script's environment (at most 9 entries), built here, not
 * inherited: what libxl gives a hotplug script, plus the caller's PATH and
 * XENSTORED_PATH (the xenstore-* tools the scripts run must reach the same
 * xenstored as the library).  Returns the number of entries; one that
 * could not be allocated is NULL. */
static size_t child_env(char **env, const char *script, const char *kind,
                        uint32_t domid, unsigned devid)
{
    const char *path = getenv("PATH"), *xsp = getenv("XENSTORED_PATH");
    size_t ne = 0;

    env[ne++] = stubdm__sprintf("script=%s", script);
    env[ne++] = stubdm__sprintf("XENBUS_TYPE=%s", kind);
    env[ne++] = stubdm__sprintf("XENBUS_PATH=backend/%s/%u/%u", kind, domid,
                                devid);
    env[ne++] = stubdm__sprintf("XENBUS_BASE_PATH=backend");
    if (!strcmp(kind, "vif")) {
        /* libxl: the backend's "gatewaydev", which this library never
         * writes; vif-common.sh reads it for the nat/route scripts. */
        env[ne++] = stubdm__sprintf("netdev=");
        env[ne++] = stubdm__sprintf("vif=vif%u.%u", domid, devid);
    }
    env[ne++] = stubdm__sprintf("PATH=%s",
                                path && *path ? path : DEFAULT_PATH);
    if (xsp)
        env[ne++] = stubdm__sprintf("XENSTORED_PATH=%s", xsp);
    return ne;
}

/* posix_spawn the script with stdin /dev/null, stdout and stderr on out,
 * nothing else open; 0 or an errno value. */
static int child_spawn(const char *script, char **argv, char **env, int out,
                       pid_t *pid)
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
        err = posix_spawn(pid, script, &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return err;
}

/* A pidfd to reap the script by, unless the kernel has none (then the
 * ctx reaps every script by polling from here on). */
static void child_open_pidfd(stubdm_ctx *ctx, struct child *c)
{
    if (ctx->no_pidfd)
        return;
    c->pidfd = pidfd_open(c->pid, 0); /* always close-on-exec */
    if (c->pidfd < 0 && errno == ENOSYS) {
        ctx->no_pidfd = true;
        LOG_DEBUG(ctx, MOD, "pidfd_open: %s: reaping scripts by polling",
                  strerror(ENOSYS));
    }
}

/* Start script for backend kind/domid/devid with action. */
static int child_start(stubdm_ctx *ctx, struct child *c, const char *script,
                       const char *kind, uint32_t domid, unsigned devid,
                       const char *action)
{
    bool vif = !strcmp(kind, "vif");
    char *env[10] = {NULL}, *argv[4];
    size_t ne;
    int p[2] = {-1, -1}, rc = 0, err;
    pid_t pid = 0;

    child_init(c);
    ne = child_env(env, script, kind, domid, devid);
    for (size_t i = 0; i < ne; i++)
        if (!env[i])
            rc = stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug: env");
    argv[0] = (char *)script;
    argv[1] = (char *)action;
    argv[2] = vif ? (char *)"type_if=vif" : NULL;
    argv[3] = NULL;

    /* Only the read end is non-blocking: the script's stdout stays a
     * normal blocking pipe. */
    if (!rc &&
        (pipe2(p, O_CLOEXEC) < 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) < 0))
        rc = stubdm__fail(ctx, STUBDM_EFAIL, errno, "hotplug: pipe: %s",
                          strerror(errno));
    if (rc)
        goto out;
    err = child_spawn(script, argv, env, p[1], &pid);
    close(p[1]);
    if (err) {
        close(p[0]);
        rc = stubdm__fail(ctx, err == ENOENT ? STUBDM_ENOENT : STUBDM_EFAIL,
                          err, "starting %s %s: %s", script, action,
                          strerror(err));
        goto out;
    }
    c->pid = pid;
    c->outfd = p[0];
    child_open_pidfd(ctx, c);
    LOG_DEBUG(ctx, MOD, "%s %u/%u: started %s %s (pid %ld)", kind, domid,
              devid, script, action, (long)pid);
out:
    for (size_t i = 0; i < ne; i++)
        free(env[i]);
    return rc;
}

/* Keep the last OUT_TAIL bytes of what the script printed (n is at most
 * one read, smaller than OUT_TAIL). */
static void tail_add(struct child *c, const char *b, size_t n)
{
    c->total += n;
    if (c->len + n > OUT_TAIL) {
        size_t drop = c->len + n - OUT_TAIL;
        memmove(c->tail, c->tail + drop, c->len - drop);
        c->len -= drop;
    }
    memcpy(c->tail + c->len, b, n);
    c->len += n;
}

/* Read what is there; true at end of file (or a read error). */
static bool child_drain(struct child *c)
{
    char b[OUT_TAIL / 4];

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

/* Collect the exit status if the script has ended; true once it has. */
static bool child_reap(struct child *c)
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
    return true;
}

#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1u << 2) /* Linux 6.9 */
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/*
 * SIGKILL for a script still running and its process group, through the
 * pidfd: when the host reaps children itself (a SIGCHLD handler calling
 * waitpid(-1)), the script's pid may be freed and reused by the time we
 * kill, and kill(pid) or kill(-pid) would hit whoever has it now; a pidfd
 * names this process only (ESRCH once it is reaped).  Before Linux 6.9
 * the group cannot be named by pidfd: it is killed by number only after
 * the pidfd shows the leader unreaped, which keeps the number allocated.
 */
static void child_signal_pidfd(struct child *c)
{
    if (pidfd_send_signal(c->pidfd, SIGKILL, NULL,
                          PIDFD_SIGNAL_PROCESS_GROUP) == 0 ||
        errno != EINVAL) {
        pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0); /* left the group? */
        return;
    }
    if (pidfd_send_signal(c->pidfd, 0, NULL, 0) == 0)
        kill(-c->pid, SIGKILL);
    pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0);
}

/*
 * Without a pidfd (pidfd_open missing: valgrind 3.19, Linux < 5.3): by
 * pid, only while waitid(WNOWAIT) shows it still an unreaped child of
 * ours, whose number the kernel cannot hand out again.  What remains is
 * bounded to the host reaping it and a new child of this process getting
 * the same number (a whole cycle of the pid space) between the two calls.
 */
static void child_signal_pid(struct child *c)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT))
        return; /* ECHILD: reaped by someone else, nothing of ours left */
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
}

/* Reap a killed script through its pidfd: by pid, a reused number would
 * make us wait for (and reap) a stranger.  Returns waitpid's result. */
static pid_t child_wait_pidfd(struct child *c, int *st)
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
    if (si.si_code == CLD_EXITED)
        *st = W_EXITCODE(si.si_status, 0);
    else
        *st = si.si_status | (si.si_code == CLD_DUMPED ? WCOREFLAG : 0);
    return c->pid;
}

/* Kill a script still running, with its process group, and reap it (at
 * once: SIGKILL cannot be caught). */
static void child_kill(struct child *c)
{
    int st = 0;
    pid_t r;

    if (c->pid <= 0 || c->exited)
        return;
    if (c->pidfd >= 0) {
        child_signal_pidfd(c);
        r = child_wait_pidfd(c, &st);
    } else {
        child_signal_pid(c);
        do
            r = waitpid(c->pid, &st, 0);
        while (r < 0 && errno == EINTR);
    }
    c->exited = true;
    c->wstatus = r == c->pid ? st : -1;
}

/* Bytes of output per log message: a message is at most 1023 bytes
 * (log.c), and the device's name comes first. */
#define LOG_CHUNK 768

/* The kept output, as log messages of at most LOG_CHUNK bytes each, cut at
 * line ends where it can be: printable, newlines as " | ".  The bytes come
 * from a dom0 script, but a script prints what it read (values a domain
 * may have written), so they are data. */
static void log_output(stubdm_ctx *ctx, const struct child *c, const char *who)
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

/* The backend's hotplug-error, for a message ("" if none). */
static void read_hotplug_error(stubdm_ctx *ctx, const char *be, char *out,
                               size_t len)
{
    char p[128], *v = NULL;
    size_t n = 0;
    int rc;

    out[0] = '\0';
    snprintf(p, sizeof(p), "%s/hotplug-error", be);
    /* Read whole (a xenstore value is at most STUBDM__XS_PAYLOAD_MAX), kept
     * to its start: a long message's start is still the useful part. */
    rc = stubdm__xs_read(ctx, 0, p, STUBDM__XS_PAYLOAD_MAX, &v, &n);
    if (rc == 0)
        stubdm__printable(out,
                          len < HOTPLUG_ERROR_MAX + 1 ? len
                                                      : HOTPLUG_ERROR_MAX + 1,
                          v, n);
    free(v);
    stubdm__clear_error(ctx);
}

/* ---- the add op: every device of a spawn -------------------------------- */

struct hp_op;

struct hp_dev {
    struct hp_op *h;
    char kind[4];
    unsigned devid;
    char be[96];
    char *script;
    char who[160]; /* "vbd 51712 (/etc/xen/scripts/block add)" */
    int state;     /* last backend state seen, -1: none */
    bool started, connected, done;
    struct child ch;
    struct stubdm__xswatch w; /* the backend directory */
    struct stubdm__fd outw, pidw;
    struct stubdm__timer poll; /* reaping without a pidfd */
    int poll_ms;
};

struct hp_op {
    stubdm_op op;
    uint32_t domid;
    int timeout_ms;
    int64_t started_ms;
    size_t n, left;
    struct hp_dev *dev;
    struct stubdm__domwatch death;
    struct stubdm__timer deadline;
};

static double elapsed_s(const struct hp_op *h)
{
    return (double)(stubdm_now_ms() - h->started_ms) / 1000.0;
}

/* Stop watching the script's fds and close them. */
static void dev_release_child(stubdm_ctx *ctx, struct hp_dev *d)
{
    stubdm__fd_stop(ctx, &d->outw);
    stubdm__fd_stop(ctx, &d->pidw);
    stubdm__timer_stop(ctx, &d->poll);
    if (d->ch.outfd >= 0) {
        close(d->ch.outfd);
        d->ch.outfd = -1;
    }
    if (d->ch.pidfd >= 0) {
        close(d->ch.pidfd);
        d->ch.pidfd = -1;
    }
}

static void hp_fail(struct hp_dev *d, int rc, const char *fmt, ...)
    STUBDM_PRINTF(3, 4);
static void hp_fail(struct hp_dev *d, int rc, const char *fmt, ...)
{
    struct hp_op *h = d->h;
    char msg[STUBDM_ERRMSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (d->started) {
        /* Whatever it printed so far, then kill what still runs. */
        if (d->ch.outfd >= 0)
            child_drain(&d->ch);
        child_kill(&d->ch);
        log_output(h->op.ctx, &d->ch, d->who);
    }
    stubdm__op_complete(&h->op, rc, "%s of stubdomain %u: %s", d->who,
                        h->domid, msg);
}

static void dev_check_done(struct hp_dev *d)
{
    struct hp_op *h = d->h;

    if (d->done || !d->connected || !d->ch.exited)
        return;
    d->done = true;
    stubdm__xswatch_stop(h->op.ctx, &d->w);
    LOG_DEBUG(h->op.ctx, MOD, "%s of stubdomain %u: connected after %.3f s",
              d->who, h->domid, elapsed_s(h));
    if (--h->left == 0)
        stubdm__op_complete(&h->op, 0, NULL);
}

static void on_exit_status(struct hp_dev *d)
{
    stubdm_ctx *ctx = d->h->op.ctx;
    char how[200], herr[HOTPLUG_ERROR_MAX + 1];

    if (d->ch.outfd >= 0)
        child_drain(&d->ch);
    dev_release_child(ctx, d);
    if (child_ok(&d->ch)) {
        dev_check_done(d);
        return;
    }
    describe_status(&d->ch, how, sizeof(how));
    read_hotplug_error(ctx, d->be, herr, sizeof(herr));
    hp_fail(d, STUBDM_EFAIL, "%s%s%s%s", how,
            herr[0] ? " (hotplug-error: " : "", herr, herr[0] ? ")" : "");
}

static void on_pidfd(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    struct hp_dev *d = STUBDM_CONTAINER_OF(w, struct hp_dev, pidw);

    (void)revents;
    if (child_reap(&d->ch))
        on_exit_status(d);
    else
        stubdm__fd_stop(ctx, w); /* readable yet not reapable: poll instead */
    if (!d->ch.exited && !stubdm__timer_armed(&d->poll))
        stubdm__timer_arm(ctx, &d->poll, stubdm_now_ms() + d->poll_ms);
}

static void on_poll(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct hp_dev *d = STUBDM_CONTAINER_OF(t, struct hp_dev, poll);

    if (child_reap(&d->ch)) {
        on_exit_status(d);
        return;
    }
    if (d->poll_ms < POLL_MAX_MS)
        d->poll_ms *= 2;
    if (stubdm__timer_arm(ctx, t, stubdm_now_ms() + d->poll_ms))
        hp_fail(d, STUBDM_ENOMEM, "arming a timer: %s", ctx->errmsg);
}

static void on_output(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    struct hp_dev *d = STUBDM_CONTAINER_OF(w, struct hp_dev, outw);

    (void)revents;
    if (child_drain(&d->ch)) {
        /* End of output; the exit comes through the pidfd or the poll. */
        stubdm__fd_stop(ctx, w);
        close(d->ch.outfd);
        d->ch.outfd = -1;
    }
}

static int dev_start_script(stubdm_ctx *ctx, struct hp_dev *d)
{
    struct xs_handle *xsh = NULL;
    char p[128];
    int rc;

    /* Marked before it runs: a teardown (maybe by another process) then
     * runs remove even for an add that failed half way (a loop device
     * made, the script then killed). */
    snprintf(p, sizeof(p), "%s/" STUBDM__HOTPLUG_MARK, d->be);
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    if (!xs_write(xsh, XBT_NULL, p, "1", 1))
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                            "writing %s: %s", p, strerror(errno));
    d->started = true;
    rc = child_start(ctx, &d->ch, d->script, d->kind, d->h->domid, d->devid,
                     !strcmp(d->kind, "vif") ? "online" : "add");
    if (rc)
        return rc;
    rc = stubdm__fd_watch(ctx, &d->outw, d->ch.outfd, POLLIN);
    if (!rc && d->ch.pidfd >= 0)
        rc = stubdm__fd_watch(ctx, &d->pidw, d->ch.pidfd, POLLIN);
    else if (!rc)
        rc = stubdm__timer_arm(ctx, &d->poll, stubdm_now_ms() + d->poll_ms);
    return rc;
}

/* The backend directory changed: its state, or the script's status. */
static void on_backend(stubdm_ctx *ctx, struct stubdm__xswatch *xw,
                       const char *path)
{
    struct hp_dev *d = STUBDM_CONTAINER_OF(xw, struct hp_dev, w);
    char p[128], *v = NULL, val[STATUS_MAX + 1];
    size_t n = 0;
    int rc;

    (void)path; /* events come for every key below: re-read */
    if (d->done)
        return;
    snprintf(p, sizeof(p), "%s/state", d->be);
    rc = stubdm__xs_read(ctx, 0, p, STATE_MAX, &v, &n);
    if (rc == STUBDM_ENOENT) {
        hp_fail(d, STUBDM_EPROTO, "the backend %s was removed", d->be);
        return;
    }
    if (rc) {
        hp_fail(d, rc, "reading %s: %s", p, ctx->errmsg);
        return;
    }
    {
        uint32_t st;
        if (stubdm__num_parse_u32(v, 255, &st)) {
            char shown[STATE_MAX + 1];
            stubdm__printable(shown, sizeof(shown), v, n);
            free(v);
            hp_fail(d, STUBDM_EPROTO, "%s is \"%s\", not a state", p, shown);
            return;
        }
        d->state = (int)st;
    }
    free(v);
    v = NULL;
    if (!d->started) {
        /* XenbusStateInitWait: the backend driver probed the device and
         * waits for what the script provides (libxl's trigger too). */
        if (d->state >= 5 || d->state < 1) {
            hp_fail(d, STUBDM_EPROTO,
                    "the backend went to state %d before its hotplug "
                    "script ran",
                    d->state);
            return;
        }
        if (d->state < 2)
            return;
        rc = dev_start_script(ctx, d);
        if (rc) {
            hp_fail(d, rc, "%s", ctx->errmsg);
            return;
        }
    }
    snprintf(p, sizeof(p), "%s/hotplug-status", d->be);
    rc = stubdm__xs_read(ctx, 0, p, STATUS_MAX, &v, &n);
    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        return;
    }
    if (rc) {
        hp_fail(d, rc, "reading %s: %s", p, ctx->errmsg);
        return;
    }
    stubdm__printable(val, sizeof(val), v, n);
    free(v);
    if (!strcmp(val, "connected")) {
        d->connected = true;
        dev_check_done(d);
    } else if (!strcmp(val, "error") || !strcmp(val, "busy")) {
        char herr[HOTPLUG_ERROR_MAX + 1];
        read_hotplug_error(ctx, d->be, herr, sizeof(herr));
        hp_fail(d, STUBDM_EFAIL, "hotplug-status \"%s\"%s%s%s", val,
                herr[0] ? " (hotplug-error: " : "", herr, herr[0] ? ")" : "");
    }
    /* Anything else: not yet (a later write or the exit decides). */
}

static void on_death(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                     enum stubdm__dom_state st, const char *detail)
{
    struct hp_op *h = STUBDM_CONTAINER_OF(dw, struct hp_op, death);

    (void)ctx;
    (void)st;
    stubdm__op_complete(&h->op, STUBDM_EDOMAIN_GONE,
                        "stubdomain %u %s after %.1f s of hotplug", h->domid,
                        detail, elapsed_s(h));
}

static void on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct hp_op *h = STUBDM_CONTAINER_OF(t, struct hp_op, deadline);

    (void)ctx;
    for (size_t i = 0; i < h->n; i++) {
        struct hp_dev *d = &h->dev[i];
        if (d->done)
            continue;
        if (!d->started)
            hp_fail(d, STUBDM_ETIMEDOUT,
                    "not started after %.1f s (timeout %d ms): the backend "
                    "is in state %d, not InitWait (2): is its driver "
                    "(blkback/netback) loaded?",
                    elapsed_s(h), h->timeout_ms, d->state);
        else if (!d->ch.exited)
            hp_fail(d, STUBDM_ETIMEDOUT,
                    "still running after %.1f s (timeout %d ms): killed",
                    elapsed_s(h), h->timeout_ms);
        else
            hp_fail(d, STUBDM_ETIMEDOUT,
                    "exited 0, but no hotplug-status \"connected\" after "
                    "%.1f s (timeout %d ms)",
                    elapsed_s(h), h->timeout_ms);
        return;
    }
}

static void hp_stop(stubdm_op *op)
{
    struct hp_op *h = (struct hp_op *)op;

    stubdm__timer_stop(op->ctx, &h->deadline);
    stubdm__domwatch_stop(op->ctx, &h->death);
    for (size_t i = 0; i < h->n; i++) {
        struct hp_dev *d = &h->dev[i];
        stubdm__xswatch_stop(op->ctx, &d->w);
        /* In a forked child the scripts are the parent's children. */
        if (!op->ctx->postfork)
            child_kill(&d->ch);
        dev_release_child(op->ctx, d);
    }
}

static void hp_destroy(stubdm_op *op)
{
    struct hp_op *h = (struct hp_op *)op;

    for (size_t i = 0; i < h->n; i++)
        free(h->dev[i].script);
    free(h->dev);
    h->dev = NULL;
    h->n = 0;
}

static const struct stubdm__op_type hp_type = {
    .name = "hotplug",
    .stop = hp_stop,
    .destroy = hp_destroy,
};

int stubdm__hotplug_add(stubdm_ctx *ctx, uint32_t domid,
                        const struct stubdm__hotplug_dev *devs, size_t n,
                        int timeout_ms, stubdm_done_fn *done, void *user,
                        stubdm_op **op_out)
{
    enum stubdm__dom_state st;
    char detail[160];
    struct hp_op *h;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!n || timeout_ms <= 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "hotplug: nothing to do");
    h = (struct hp_op *)stubdm__op_new(ctx, &hp_type, sizeof(*h), done, user);
    if (!h)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug op");
    h->domid = domid;
    h->timeout_ms = timeout_ms;
    h->started_ms = stubdm_now_ms();
    stubdm__domwatch_init(&h->death, on_death);
    stubdm__timer_init(&h->deadline, on_deadline);
    h->dev = stubdm__calloc(n, sizeof(*h->dev));
    if (!h->dev) {
        stubdm__op_abandon(&h->op);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug op");
    }
    for (size_t i = 0; i < n; i++) {
        struct hp_dev *d = &h->dev[i];
        h->n = i + 1; /* what the stop hook may touch: initialised ones */
        d->h = h;
        snprintf(d->kind, sizeof(d->kind), "%s", devs[i].kind);
        d->devid = devs[i].devid;
        d->state = -1;
        d->poll_ms = POLL_FIRST_MS;
        child_init(&d->ch);
        snprintf(d->be, sizeof(d->be), "/local/domain/%u/backend/%s/%u/%u",
                 TOOLSTACK_DOMID, d->kind, domid, d->devid);
        snprintf(d->who, sizeof(d->who), "%s %u (%.100s %s)", d->kind,
                 d->devid, devs[i].script,
                 !strcmp(d->kind, "vif") ? "online" : "add");
        stubdm__xswatch_init(&d->w, on_backend);
        stubdm__fd_init(&d->outw, on_output);
        stubdm__fd_init(&d->pidw, on_pidfd);
        stubdm__timer_init(&d->poll, on_poll);
        d->script = stubdm__strdup(devs[i].script);
        if (!d->script) {
            stubdm__op_abandon(&h->op);
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug op");
        }
    }
    h->left = n;
    rc = stubdm__timer_arm(ctx, &h->deadline, h->started_ms + timeout_ms);
    for (size_t i = 0; !rc && i < n; i++)
        rc = stubdm__xswatch_start(ctx, &h->dev[i].w, h->dev[i].be);
    if (!rc)
        rc = stubdm__domwatch_start(ctx, &h->death, domid, &st, detail,
                                    sizeof(detail));
    if (rc) {
        stubdm__op_abandon(&h->op); /* stops what was started */
        return rc;
    }
    stubdm__op_started(&h->op, op_out);
    if (st != STUBDM__DOM_RUNNING)
        on_death(ctx, &h->death, st, detail); /* queued, not called back */
    return 0;
}

/* ---- teardown: remove / offline ----------------------------------------- */

/* Run one script to its end, blocking, bounded by timeout_ms (then its
 * process group is killed).  0 if it exited 0. */
static int run_sync(stubdm_ctx *ctx, const char *script, const char *kind,
                    uint32_t domid, unsigned devid, const char *action,
                    int timeout_ms)
{
    int64_t deadline = stubdm_now_ms() + timeout_ms;
    struct child c;
    char who[200], how[200];
    int poll_ms = POLL_FIRST_MS, rc;

    rc = child_start(ctx, &c, script, kind, domid, devid, action);
    if (rc)
        return rc;
    snprintf(who, sizeof(who), "%s %u (%.100s %s)", kind, devid, script,
             action);
    while (!child_reap(&c)) {
        struct pollfd p[2];
        nfds_t np = 0;
        int64_t left = deadline - stubdm_now_ms();
        int wait_ms;

        if (left <= 0) {
            child_kill(&c);
            break;
        }
        if (c.outfd >= 0)
            p[np++] = (struct pollfd){c.outfd, POLLIN, 0};
        if (c.pidfd >= 0)
            p[np++] = (struct pollfd){c.pidfd, POLLIN, 0};
        wait_ms = left > INT32_MAX ? INT32_MAX : (int)left;
        if (c.pidfd < 0) { /* no pidfd: look again soon */
            if (wait_ms > poll_ms)
                wait_ms = poll_ms;
            if (poll_ms < POLL_MAX_MS)
                poll_ms *= 2;
        }
        if (poll(p, np, wait_ms) < 0 && errno != EINTR)
            usleep(1000);
        if (c.outfd >= 0 && child_drain(&c)) {
            close(c.outfd);
            c.outfd = -1;
        }
    }
    if (c.outfd >= 0) {
        child_drain(&c);
        close(c.outfd);
    }
    if (c.pidfd >= 0)
        close(c.pidfd);
    if (child_ok(&c)) {
        LOG_DEBUG(ctx, MOD, "stubdomain %u: %s: done", domid, who);
        return 0;
    }
    if (stubdm_now_ms() >= deadline && c.wstatus >= 0 &&
        WIFSIGNALED(c.wstatus) && WTERMSIG(c.wstatus) == SIGKILL)
        snprintf(how, sizeof(how), "still running after %d ms: killed",
                 timeout_ms);
    else
        describe_status(&c, how, sizeof(how));
    log_output(ctx, &c, who);
    return stubdm__fail(ctx, STUBDM_EFAIL, 0, "%s of stubdomain %u: %s", who,
                        domid, how);
}

#define DEFAULT_SCRIPT_DIR "/etc/xen/scripts"

/*
 * The script of backend dir/id, to run at teardown: dom0's node only (the
 * backend directory is dom0's; an xenstored or a domain that could write
 * it must not choose what dom0 executes), and a path the ctx trusts.
 * 0 with *script_out (malloc'ed), or the failure (message on the ctx).
 */
static int trusted_script(stubdm_ctx *ctx, const char *p,
                          const char *const *own, size_t n, char **script_out)
{
    const char *dir = ctx->hotplug_dir[0] ? ctx->hotplug_dir
                                          : DEFAULT_SCRIPT_DIR;
    char *v = NULL, shown[120];
    size_t len = 0;
    int rc;

    *script_out = NULL;
    rc = stubdm__xs_read_owned(ctx, p, SCRIPT_MAX, TOOLSTACK_DOMID, &v, &len);
    if (rc)
        return rc;
    if (strlen(v) != len || !stubdm__script_path_ok(v, dir, own, n)) {
        stubdm__printable(shown, sizeof(shown), v, len);
        free(v);
        return stubdm__fail(ctx, STUBDM_EPERM, 0,
                            "%s is \"%s\": not run (not in %s, not a script "
                            "of this spawn)",
                            p, shown, dir);
    }
    *script_out = v;
    return 0;
}

/* Absolute, printable, no "//", no "." or ".." component. */
static bool clean_dir(const char *dir, size_t len)
{
    char probe[sizeof(((stubdm_ctx *)0)->hotplug_dir) + 2];

    snprintf(probe, sizeof(probe), "%.*s/x", (int)len, dir);
    return stubdm__script_path_ok(probe, dir, NULL, 0) &&
           strcmp(dir + len - 2, "/.") != 0 &&
           (len < 3 || strcmp(dir + len - 3, "/..") != 0);
}

int stubdm_ctx_set_hotplug_dir(stubdm_ctx *ctx, const char *dir)
{
    size_t len;

    if (!ctx)
        return STUBDM_EINVAL;
    if (!dir) {
        ctx->hotplug_dir[0] = '\0';
        return 0;
    }
    len = strlen(dir);
    /* As a script path is checked: "dir/x" must pass for an entry x. */
    if (len < 2 || len + 2 >= sizeof(ctx->hotplug_dir) ||
        dir[len - 1] == '/' || !clean_dir(dir, len))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "hotplug dir: not an absolute, clean path of at "
                            "most %zu bytes",
                            sizeof(ctx->hotplug_dir) - 1);
    memcpy(ctx->hotplug_dir, dir, len + 1);
    return 0;
}

/* Whether /proc/<pid> is a live (not zombie) process of ours whose
 * environment holds want (a "XENBUS_PATH=..." the library gave it). */
static bool runs_for(pid_t pid, const char *want, size_t wlen)
{
    char p[64], buf[8192], st[256], *c;
    ssize_t n;
    int fd;

    snprintf(p, sizeof(p), "/proc/%ld/stat", (long)pid);
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, st, sizeof(st) - 1);
    close(fd);
    if (n <= 0)
        return false;
    st[n] = '\0';
    c = strrchr(st, ')'); /* the command name may hold anything */
    if (!c || c[1] != ' ' || c[2] == 'Z' || c[2] == 'X')
        return false;
    snprintf(p, sizeof(p), "/proc/%ld/environ", (long)pid);
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false; /* another user's, or gone */
    n = read(fd, buf, sizeof(buf));
    close(fd);
    for (ssize_t i = 0; n > 0 && i + (ssize_t)wlen <= n;) {
        if (!memcmp(buf + i, want, wlen))
            return true;
        char *z = memchr(buf + i, '\0', (size_t)(n - i));
        if (!z)
            break;
        i = z - buf + 1;
    }
    return false;
}

/* The pids of every process whose environment holds want, wlen bytes
 * with its '\0' (a script and what it started inherit the XENBUS_PATH
 * the library gave it), at most max. */
static size_t find_runners(const char *want, size_t wlen, pid_t *out,
                           size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;

    if (!d)
        return 0;
    while (n < max && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1 || pid == (long)getpid())
            continue;
        if (runs_for((pid_t)pid, want, wlen))
            out[n++] = (pid_t)pid;
    }
    closedir(d);
    return n;
}

/*
 * An add/online still running for this backend although no spawn runs it
 * any more: the process that started it died (a toolstack killed during
 * HOTPLUG), and the script, in a process group of its own, lives on.  It
 * is let finish first (a block script killed half way has made a loop
 * device that nothing records, so its remove could not undo it), at most
 * ORPHAN_WAIT_MS (a block add on a loaded host can take over 10 s,
 * docs/real-xen.md), then it is killed with what it started; only then
 * the remove runs.
 * Found by the XENBUS_PATH the library gave it, among this user's
 * processes: no pid is kept anywhere.
 */
#define ORPHAN_WAIT_MS 30000
#define ORPHAN_MAX 16
static void end_orphaned_add(stubdm_ctx *ctx, const char *kind, uint32_t domid,
                             unsigned devid)
{
    pid_t pids[ORPHAN_MAX];
    int64_t deadline = stubdm_now_ms() + ORPHAN_WAIT_MS;
    char want[96];
    size_t wlen = (size_t)snprintf(want, sizeof(want),
                                   "XENBUS_PATH=backend/%s/%u/%u", kind, domid,
                                   devid) +
                  1;
    size_t n = find_runners(want, wlen, pids, ORPHAN_MAX);

    if (!n)
        return;
    LOG_INFO(ctx, MOD,
             "%s %u/%u: %zu process(es) of an add whose spawn is gone still "
             "run (pid %ld): waiting up to %d ms for them",
             kind, domid, devid, n, (long)pids[0], ORPHAN_WAIT_MS);
    while (n && stubdm_now_ms() < deadline) {
        usleep(20000);
        n = find_runners(want, wlen, pids, ORPHAN_MAX);
    }
    if (!n)
        return;
    LOG_WARN(ctx, MOD,
             "%s %u/%u: the add of a gone spawn still runs after "
             "%d ms: killing it",
             kind, domid, devid, ORPHAN_WAIT_MS);
    for (int round = 0; n && round < 50; round++) {
        /* Each through a pidfd taken before it is checked again: never
         * a pid reused meanwhile.  What the script started carries its
         * XENBUS_PATH too, so its whole tree is found and killed. */
        for (size_t i = 0; i < n; i++) {
            int fd = pidfd_open(pids[i], 0);
            if (fd < 0)
                continue;
            if (runs_for(pids[i], want, wlen))
                pidfd_send_signal(fd, SIGKILL, NULL, 0);
            close(fd);
        }
        usleep(20000);
        n = find_runners(want, wlen, pids, ORPHAN_MAX);
    }
    if (n)
        LOG_WARN(ctx, MOD, "%s %u/%u: pid %ld could not be killed", kind,
                 domid, devid, (long)pids[0]);
}

int stubdm__hotplug_remove_all(stubdm_ctx *ctx, uint32_t domid,
                               const char *const *own_scripts, size_t n_own)
{
    static const char *const kinds[] = {"vbd", "vif"};
    char first_msg[STUBDM_ERRMSG_MAX] = "";
    struct xs_handle *xsh = NULL;
    int first = 0, rc;

    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    for (size_t k = 0; k < STUBDM_ARRAY_SIZE(kinds); k++) {
        char dir[96], p[160], **ids, *v = NULL;
        unsigned nids = 0;

        snprintf(dir, sizeof(dir), "/local/domain/%u/backend/%s/%u",
                 TOOLSTACK_DOMID, kinds[k], domid);
        stubdm__xs_count(ctx, 1);
        ids = xs_directory(xsh, XBT_NULL, dir, &nids);
        if (!ids)
            continue; /* none of this kind */
        for (unsigned i = 0; i < nids; i++) {
            uint32_t devid;
            if (stubdm__num_parse_u32(ids[i], UINT32_MAX, &devid))
                continue;
            snprintf(p, sizeof(p), "%s/%s/" STUBDM__HOTPLUG_MARK, dir, ids[i]);
            rc = stubdm__xs_read(ctx, 0, p, 8, &v, NULL);
            free(v);
            v = NULL;
            if (rc) { /* its add never ran */
                stubdm__clear_error(ctx);
                continue;
            }
            /* No status: its add may still run, orphaned. */
            snprintf(p, sizeof(p), "%s/%s/hotplug-status", dir, ids[i]);
            if (stubdm__xs_read(ctx, 0, p, STATUS_MAX, &v, NULL) ==
                STUBDM_ENOENT)
                end_orphaned_add(ctx, kinds[k], domid, (unsigned)devid);
            free(v);
            v = NULL;
            stubdm__clear_error(ctx);
            snprintf(p, sizeof(p), "%s/%s/script", dir, ids[i]);
            rc = trusted_script(ctx, p, own_scripts, n_own, &v);
            if (!rc)
                rc = run_sync(ctx, v, kinds[k], domid, (unsigned)devid,
                              k ? "offline" : "remove",
                              STUBDM__HOTPLUG_REMOVE_TIMEOUT_MS);
            free(v);
            v = NULL;
            if (rc) {
                stubdm__log(ctx, STUBDM_LOG_WARN, 0, MOD, "teardown: %s",
                            ctx->errmsg);
                if (!first) {
                    first = rc;
                    snprintf(first_msg, sizeof(first_msg), "%s", ctx->errmsg);
                }
            }
        }
        free(ids);
    }
    if (first)
        return stubdm__fail(ctx, first, 0, "%s", first_msg);
    stubdm__clear_error(ctx);
    return 0;
}

int stubdm_ctx_set_hotplug(stubdm_ctx *ctx, int run_scripts)
{
    if (!ctx)
        return STUBDM_EINVAL;
    ctx->no_hotplug = !run_scripts;
    return 0;
}
