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
 *   -> it ends (child.c: its status, reaped by the library or handed
 *      over by the host) and the backend's hotplug-status says
 *      "connected" (a watch on the backend directory sees both state and
 *      status);
 *   -> the device is done; all done: the op completes.
 *
 * At teardown, the remove (vbd) / offline (vif) of every backend whose add
 * ran, one after another: from the loop for the destroys and a failed
 * spawn's rollback (stubdm__hotplug_remove), blocking only where no loop
 * turns any more, stubdm_ctx_free (stubdm__hotplug_remove_all).
 *
 * A script dies with its op (timeout, cancel, stubdomain death,
 * ctx_free), not with the process: no PR_SET_PDEATHSIG, which follows the
 * spawning thread and would cut a script off in mid-device
 * (docs/simulated-host.md, "Devices").
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
#include "spawn/child.h"
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
#define STATE_MAX 16          /* backend "state" */
#define STATUS_MAX 32         /* backend "hotplug-status" */
#define HOTPLUG_ERROR_MAX 256 /* backend "hotplug-error" (text) */
#define SCRIPT_MAX 1024       /* backend "script" (teardown reads it back) */
#define DEFAULT_PATH                                                          \
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define TOOLSTACK_DOMID 0u

/* ---- one script run ----------------------------------------------------- */

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

/* Start script for backend kind/domid/devid with action. */
static int child_start(stubdm_ctx *ctx, struct stubdm__child *c,
                       const char *script, const char *kind, uint32_t domid,
                       unsigned devid, const char *action)
{
    bool vif = !strcmp(kind, "vif");
    char *env[10] = {NULL}, *argv[4];
    size_t ne;
    int rc = 0;

    stubdm__child_init(c);
    ne = child_env(env, script, kind, domid, devid);
    for (size_t i = 0; i < ne; i++)
        if (!env[i])
            rc = stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug: env");
    argv[0] = (char *)script;
    argv[1] = (char *)action;
    argv[2] = vif ? (char *)"type_if=vif" : NULL;
    argv[3] = NULL;
    if (!rc)
        rc = stubdm__child_spawn(ctx, c, script, argv, env);
    if (!rc)
        LOG_DEBUG(ctx, MOD, "%s %u/%u: started %s %s (pid %ld)", kind, domid,
                  devid, script, action, (long)c->pid);
    for (size_t i = 0; i < ne; i++)
        free(env[i]);
    return rc;
}

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
    struct stubdm__child ch;
    struct stubdm__xswatch w; /* the backend directory */
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
            stubdm__child_drain(&d->ch);
        stubdm__child_kill(&d->ch);
        stubdm__child_log_output(h->op.ctx, &d->ch, d->who);
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

/* The script ended (child.c: its status, or why it is unknown). */
static void on_script_end(stubdm_ctx *ctx, struct stubdm__child *c)
{
    struct hp_dev *d = STUBDM_CONTAINER_OF(c, struct hp_dev, ch);
    char how[400], herr[HOTPLUG_ERROR_MAX + 1];

    stubdm__child_release(c);
    if (stubdm__child_ok(c)) {
        dev_check_done(d);
        return;
    }
    stubdm__child_describe(c, how, sizeof(how));
    read_hotplug_error(ctx, d->be, herr, sizeof(herr));
    hp_fail(d, STUBDM_EFAIL, "%s%s%s%s", how,
            herr[0] ? " (hotplug-error: " : "", herr, herr[0] ? ")" : "");
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
    return stubdm__child_watch(ctx, &d->ch, on_script_end);
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
        stubdm__child_kill(&d->ch);
        stubdm__child_release(&d->ch);
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
        stubdm__child_init(&d->ch);
        snprintf(d->be, sizeof(d->be), "/local/domain/%u/backend/%s/%u/%u",
                 TOOLSTACK_DOMID, d->kind, domid, d->devid);
        snprintf(d->who, sizeof(d->who), "%s %u (%.100s %s)", d->kind,
                 d->devid, devs[i].script,
                 !strcmp(d->kind, "vif") ? "online" : "add");
        stubdm__xswatch_init(&d->w, on_backend);
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

/* The end of a remove/offline run: 0, or its failure (message on the
 * ctx, its output logged). */
static int remove_result(stubdm_ctx *ctx, const struct stubdm__child *c,
                         const char *who, uint32_t domid, bool timed_out)
{
    char how[400];

    if (!timed_out && stubdm__child_ok(c)) {
        LOG_DEBUG(ctx, MOD, "stubdomain %u: %s: done", domid, who);
        return 0;
    }
    if (timed_out)
        snprintf(how, sizeof(how), "still running after %d ms: killed",
                 STUBDM__HOTPLUG_REMOVE_TIMEOUT_MS);
    else
        stubdm__child_describe(c, how, sizeof(how));
    stubdm__child_log_output(ctx, c, who);
    return stubdm__fail(ctx, STUBDM_EFAIL, 0, "%s of stubdomain %u: %s", who,
                        domid, how);
}

/* Run one script to its end, blocking, bounded by
 * STUBDM__HOTPLUG_REMOVE_TIMEOUT_MS (then its process group is killed).
 * 0 if it exited 0. */
static int run_sync(stubdm_ctx *ctx, const char *script, const char *kind,
                    uint32_t domid, unsigned devid, const char *action)
{
    int64_t deadline = stubdm_now_ms() + STUBDM__HOTPLUG_REMOVE_TIMEOUT_MS;
    struct stubdm__child c;
    char who[200];
    bool timed_out;
    int rc;

    rc = child_start(ctx, &c, script, kind, domid, devid, action);
    if (rc)
        return rc;
    snprintf(who, sizeof(who), "%s %u (%.100s %s)", kind, devid, script,
             action);
    timed_out = !stubdm__child_wait(ctx, &c, deadline);
    if (timed_out) {
        stubdm__child_drain(&c);
        stubdm__child_kill(&c);
    }
    stubdm__child_release(&c);
    return remove_result(ctx, &c, who, domid, timed_out);
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
#define ORPHAN_POLL_MS 20
#define ORPHAN_KILL_ROUNDS 50

struct orphans {
    char want[96];
    size_t wlen; /* with its '\0' */
    pid_t pids[ORPHAN_MAX];
    size_t n;
};

static size_t orphans_find(struct orphans *o, const char *kind, uint32_t domid,
                           unsigned devid)
{
    if (kind)
        o->wlen = (size_t)snprintf(o->want, sizeof(o->want),
                                   "XENBUS_PATH=backend/%s/%u/%u", kind, domid,
                                   devid) +
                  1;
    o->n = find_runners(o->want, o->wlen, o->pids, ORPHAN_MAX);
    return o->n;
}

/* One round of SIGKILL, each through a pidfd taken before it is checked
 * again: never a pid reused meanwhile.  What the script started carries
 * its XENBUS_PATH too, so its whole tree is found and killed. */
static void orphans_kill(const struct orphans *o)
{
    for (size_t i = 0; i < o->n; i++) {
        int fd = pidfd_open(o->pids[i], 0);
        if (fd < 0)
            continue;
        if (runs_for(o->pids[i], o->want, o->wlen))
            pidfd_send_signal(fd, SIGKILL, NULL, 0);
        close(fd);
    }
}

static void end_orphaned_add(stubdm_ctx *ctx, const char *kind, uint32_t domid,
                             unsigned devid)
{
    int64_t deadline = stubdm_now_ms() + ORPHAN_WAIT_MS;
    struct orphans o;

    if (!orphans_find(&o, kind, domid, devid))
        return;
    LOG_INFO(ctx, MOD,
             "%s %u/%u: %zu process(es) of an add whose spawn is gone still "
             "run (pid %ld): waiting up to %d ms for them",
             kind, domid, devid, o.n, (long)o.pids[0], ORPHAN_WAIT_MS);
    while (o.n && stubdm_now_ms() < deadline) {
        usleep(ORPHAN_POLL_MS * 1000);
        orphans_find(&o, NULL, 0, 0);
    }
    if (!o.n)
        return;
    LOG_WARN(ctx, MOD,
             "%s %u/%u: the add of a gone spawn still runs after "
             "%d ms: killing it",
             kind, domid, devid, ORPHAN_WAIT_MS);
    for (int round = 0; o.n && round < ORPHAN_KILL_ROUNDS; round++) {
        orphans_kill(&o);
        usleep(ORPHAN_POLL_MS * 1000);
        orphans_find(&o, NULL, 0, 0);
    }
    if (o.n)
        LOG_WARN(ctx, MOD, "%s %u/%u: pid %ld could not be killed", kind,
                 domid, devid, (long)o.pids[0]);
}

/* ---- which removes a teardown runs -------------------------------------- */

struct rm_dev {
    const char *kind; /* "vbd" or "vif" */
    unsigned devid;
    char *script;      /* trusted, to run; NULL: not run (refused) */
    bool orphan_check; /* no hotplug-status: its add may still run */
};

struct rm_list {
    struct rm_dev *dev;
    size_t n, cap;
    int first; /* the first refusal, its message in first_msg */
    char first_msg[STUBDM_ERRMSG_MAX];
};

static void rm_list_free(struct rm_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->dev[i].script);
    free(l->dev);
    l->dev = NULL;
    l->n = l->cap = 0;
}

/* Record the first failure (the ctx's message), log every one. */
static void rm_keep_first(stubdm_ctx *ctx, int rc, int *first, char *msg,
                          size_t len)
{
    if (!rc)
        return;
    stubdm__log(ctx, STUBDM_LOG_WARN, 0, MOD, "teardown: %s", ctx->errmsg);
    if (*first)
        return;
    *first = rc;
    snprintf(msg, len, "%s", ctx->errmsg);
}

/* Backend dir/id of kind: its add ran (marked), so a remove is due. */
static int rm_add(stubdm_ctx *ctx, struct rm_list *l, const char *kind,
                  const char *dir, const char *id, uint32_t domid,
                  const char *const *own, size_t n_own)
{
    char p[160], *v = NULL;
    struct rm_dev *d;
    uint32_t devid;
    int rc;

    if (stubdm__num_parse_u32(id, UINT32_MAX, &devid))
        return 0;
    snprintf(p, sizeof(p), "%s/%s/" STUBDM__HOTPLUG_MARK, dir, id);
    rc = stubdm__xs_read(ctx, 0, p, 8, &v, NULL);
    free(v);
    v = NULL;
    if (rc) { /* its add never ran */
        stubdm__clear_error(ctx);
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct rm_dev *nd = stubdm__reallocarray(l->dev, cap, sizeof(*nd));
        if (!nd)
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug");
        l->dev = nd;
        l->cap = cap;
    }
    d = &l->dev[l->n++];
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->devid = (unsigned)devid;
    snprintf(p, sizeof(p), "%s/%s/hotplug-status", dir, id);
    d->orphan_check = stubdm__xs_read(ctx, 0, p, STATUS_MAX, &v, NULL) ==
                      STUBDM_ENOENT;
    free(v);
    v = NULL;
    stubdm__clear_error(ctx);
    snprintf(p, sizeof(p), "%s/%s/script", dir, id);
    rc = trusted_script(ctx, p, own, n_own, &d->script);
    rm_keep_first(ctx, rc, &l->first, l->first_msg, sizeof(l->first_msg));
    (void)domid;
    return 0;
}

/* Every marked backend of domid, each with the script to run. */
static int rm_collect(stubdm_ctx *ctx, uint32_t domid, const char *const *own,
                      size_t n_own, struct rm_list *l)
{
    static const char *const kinds[] = {"vbd", "vif"};
    struct xs_handle *xsh = NULL;
    int rc;

    memset(l, 0, sizeof(*l));
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    for (size_t k = 0; k < STUBDM_ARRAY_SIZE(kinds); k++) {
        char dir[96], **ids;
        unsigned nids = 0;

        snprintf(dir, sizeof(dir), "/local/domain/%u/backend/%s/%u",
                 TOOLSTACK_DOMID, kinds[k], domid);
        stubdm__xs_count(ctx, 1);
        ids = xs_directory(xsh, XBT_NULL, dir, &nids);
        if (!ids)
            continue; /* none of this kind */
        for (unsigned i = 0; !rc && i < nids; i++)
            rc = rm_add(ctx, l, kinds[k], dir, ids[i], domid, own, n_own);
        free(ids);
        if (rc) {
            rm_list_free(l);
            return rc;
        }
    }
    return 0;
}

static const char *rm_action(const struct rm_dev *d)
{
    return strcmp(d->kind, "vif") ? "remove" : "offline";
}

int stubdm__hotplug_remove_all(stubdm_ctx *ctx, uint32_t domid,
                               const char *const *own_scripts, size_t n_own)
{
    struct rm_list l;
    int rc;

    rc = rm_collect(ctx, domid, own_scripts, n_own, &l);
    if (rc)
        return rc;
    for (size_t i = 0; i < l.n; i++) {
        struct rm_dev *d = &l.dev[i];
        if (d->orphan_check)
            end_orphaned_add(ctx, d->kind, domid, d->devid);
        if (!d->script)
            continue;
        rc = run_sync(ctx, d->script, d->kind, domid, d->devid, rm_action(d));
        rm_keep_first(ctx, rc, &l.first, l.first_msg, sizeof(l.first_msg));
    }
    rc = l.first;
    if (rc)
        stubdm__fail(ctx, rc, 0, "%s", l.first_msg);
    else
        stubdm__clear_error(ctx);
    rm_list_free(&l);
    return rc;
}

/* ---- teardown, asynchronous: the remove op ------------------------------ */

/*
 * The same removes, one backend after another, each step from the ctx's
 * loop: a dispatch never waits for a script (nor for an orphaned add,
 * looked for every ORPHAN_POLL_MS).
 */
enum rm_state {
    RM_NEXT,        /* the next backend, or the end */
    RM_ORPHAN_WAIT, /* its orphaned add still runs: let it finish */
    RM_ORPHAN_KILL, /* ... past ORPHAN_WAIT_MS: kill it, rounds */
    RM_RUN,         /* its remove/offline runs */
};

struct rm_op {
    stubdm_op op;
    uint32_t domid;
    struct rm_list l;
    size_t i; /* the backend at hand */
    enum rm_state state;
    struct orphans orph;
    int64_t orphan_deadline;
    int rounds;
    struct stubdm__child ch;
    bool running;
    char who[200];
    struct stubdm__timer tick, deadline;
};

static void rm_go(struct rm_op *r, enum rm_state st, int64_t at_ms)
{
    r->state = st;
    if (stubdm__timer_arm(r->op.ctx, &r->tick, at_ms))
        stubdm__op_complete(&r->op, STUBDM_ENOMEM, "hotplug: %s",
                            r->op.ctx->errmsg);
}

/* The backend at hand is done: on to the next, from the next dispatch. */
static void rm_next(struct rm_op *r, int rc)
{
    stubdm_ctx *ctx = r->op.ctx;

    rm_keep_first(ctx, rc, &r->l.first, r->l.first_msg,
                  sizeof(r->l.first_msg));
    r->running = false;
    r->i++;
    rm_go(r, RM_NEXT, stubdm_now_ms());
}

static void rm_on_end(stubdm_ctx *ctx, struct stubdm__child *c)
{
    struct rm_op *r = STUBDM_CONTAINER_OF(c, struct rm_op, ch);

    stubdm__timer_stop(ctx, &r->deadline);
    stubdm__child_release(c);
    rm_next(r, remove_result(ctx, c, r->who, r->domid, false));
}

static void rm_on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct rm_op *r = STUBDM_CONTAINER_OF(t, struct rm_op, deadline);

    if (r->ch.outfd >= 0)
        stubdm__child_drain(&r->ch);
    stubdm__child_kill(&r->ch);
    stubdm__child_release(&r->ch);
    rm_next(r, remove_result(ctx, &r->ch, r->who, r->domid, true));
}

static void rm_run(struct rm_op *r)
{
    stubdm_ctx *ctx = r->op.ctx;
    struct rm_dev *d = &r->l.dev[r->i];
    int rc;

    if (!d->script) {
        rm_next(r, 0); /* refused: recorded when collected */
        return;
    }
    snprintf(r->who, sizeof(r->who), "%s %u (%.100s %s)", d->kind, d->devid,
             d->script, rm_action(d));
    LOG_DEBUG(ctx, MOD, "stubdomain %u: %s", r->domid, r->who);
    rc = child_start(ctx, &r->ch, d->script, d->kind, r->domid, d->devid,
                     rm_action(d));
    if (rc) {
        rm_next(r, rc);
        return;
    }
    r->running = true;
    r->state = RM_RUN;
    rc = stubdm__child_watch(ctx, &r->ch, rm_on_end);
    if (!rc)
        rc = stubdm__timer_arm(ctx, &r->deadline,
                               stubdm_now_ms() +
                                   STUBDM__HOTPLUG_REMOVE_TIMEOUT_MS);
    if (rc) {
        stubdm__child_kill(&r->ch);
        stubdm__child_release(&r->ch);
        rm_next(r, rc);
    }
}

/* RM_NEXT and the orphan states, each from the tick. */
static void rm_on_tick(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct rm_op *r = STUBDM_CONTAINER_OF(t, struct rm_op, tick);
    struct rm_dev *d;
    int64_t now = stubdm_now_ms();

    if (r->state == RM_NEXT && r->i == r->l.n) {
        if (r->l.first)
            stubdm__op_complete(&r->op, r->l.first, "%s", r->l.first_msg);
        else
            stubdm__op_complete(&r->op, 0, NULL);
        return;
    }
    d = &r->l.dev[r->i];
    switch (r->state) {
    case RM_NEXT:
        if (!d->orphan_check ||
            !orphans_find(&r->orph, d->kind, r->domid, d->devid))
            break;
        LOG_INFO(ctx, MOD,
                 "%s %u/%u: %zu process(es) of an add whose spawn is gone "
                 "still run (pid %ld): waiting up to %d ms for them",
                 d->kind, r->domid, d->devid, r->orph.n, (long)r->orph.pids[0],
                 ORPHAN_WAIT_MS);
        r->orphan_deadline = now + ORPHAN_WAIT_MS;
        rm_go(r, RM_ORPHAN_WAIT, now + ORPHAN_POLL_MS);
        return;
    case RM_ORPHAN_WAIT:
        if (!orphans_find(&r->orph, NULL, 0, 0))
            break;
        if (now < r->orphan_deadline) {
            rm_go(r, RM_ORPHAN_WAIT, now + ORPHAN_POLL_MS);
            return;
        }
        LOG_WARN(ctx, MOD,
                 "%s %u/%u: the add of a gone spawn still runs after "
                 "%d ms: killing it",
                 d->kind, r->domid, d->devid, ORPHAN_WAIT_MS);
        r->rounds = 0;
        /* fall through */
    case RM_ORPHAN_KILL:
        if (r->state == RM_ORPHAN_KILL && !orphans_find(&r->orph, NULL, 0, 0))
            break;
        if (r->rounds++ < ORPHAN_KILL_ROUNDS) {
            orphans_kill(&r->orph);
            rm_go(r, RM_ORPHAN_KILL, now + ORPHAN_POLL_MS);
            return;
        }
        LOG_WARN(ctx, MOD, "%s %u/%u: pid %ld could not be killed", d->kind,
                 r->domid, d->devid, (long)r->orph.pids[0]);
        break;
    case RM_RUN:
        return;
    }
    rm_run(r);
}

static void rm_stop(stubdm_op *op)
{
    struct rm_op *r = (struct rm_op *)op;

    stubdm__timer_stop(op->ctx, &r->tick);
    stubdm__timer_stop(op->ctx, &r->deadline);
    if (r->running) {
        stubdm__child_kill(&r->ch);
        stubdm__child_release(&r->ch);
        r->running = false;
    }
}

static void rm_destroy(stubdm_op *op)
{
    rm_list_free(&((struct rm_op *)op)->l);
}

static const struct stubdm__op_type rm_type = {
    .name = "hotplug remove",
    .stop = rm_stop,
    .destroy = rm_destroy,
};

int stubdm__hotplug_remove(stubdm_ctx *ctx, uint32_t domid,
                           const char *const *own_scripts, size_t n_own,
                           stubdm_done_fn *done, void *user,
                           stubdm_op **op_out)
{
    struct rm_list l;
    struct rm_op *r;
    int rc;

    *op_out = NULL;
    rc = rm_collect(ctx, domid, own_scripts, n_own, &l);
    if (rc || !l.n) /* nothing to run: nothing allocated */
        return rc;
    r = (struct rm_op *)stubdm__op_new(ctx, &rm_type, sizeof(*r), done, user);
    if (!r) {
        rm_list_free(&l);
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "hotplug op");
    }
    r->domid = domid;
    r->l = l;
    stubdm__child_init(&r->ch);
    stubdm__timer_init(&r->tick, rm_on_tick);
    stubdm__timer_init(&r->deadline, rm_on_deadline);
    rc = stubdm__timer_arm(ctx, &r->tick, stubdm_now_ms());
    if (rc) {
        stubdm__op_abandon(&r->op);
        return rc;
    }
    stubdm__op_started(&r->op, op_out);
    return 0;
}

int stubdm_ctx_set_hotplug(stubdm_ctx *ctx, int run_scripts)
{
    if (!ctx)
        return STUBDM_EINVAL;
    ctx->no_hotplug = !run_scripts;
    return 0;
}
