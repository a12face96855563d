/*
 * Saving the device model's state through console 1 (docs/consoles.md,
 * "Save and restore").
 *
 * Chronologically:
 *   [domids forms] serve console 1 with the caller's fd; open QMP, or
 *     take the caller's ready handle (stubdm_dm_save_qmp).
 *   [handle form] attach the caller's fd to the spawn's held console 1.
 *   QMP "stop" (xenopsd: stop before xen-save-devices-state).
 *   QMP "xen-save-devices-state" {"filename": "/dev/fdset/1"}: QEMU writes
 *     into the fd the stubdomain gave it with add-fd (fdset 1), which the
 *     stubdomain pumps into console 1.
 *   Drain: the command returning means QEMU has written the stream, not
 *     that it reached dom0.  If the frontend offers "feature-stream-end",
 *     ask it (stream-end-request = SEQ) how many bytes it has put into the
 *     ring in all (stream-end = "SEQ TOTAL", counting what it still holds)
 *     and complete once the backend has written that many; otherwise
 *     complete once the ring has stayed empty with no new byte for
 *     QUIET_MS (a heuristic: a frontend may still hold bytes).
 *   Detach (or close) console 1; completion with the stream's size.
 *
 * Restoring is a spawn with stubdm_spawn_opts_set_restore_fd(): console
 * 2 carries the stream into QEMU's -incoming; spawn.c does it.
 */
#include "console/console.h"
#include "console/dm_state.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/num.h"
#include "core/op.h"
#include "core/peer.h"
#include "qmp/qmp.h"
#include "qmp/transport.h"
#include "spawn/stubdom.h"
#include "xen/host.h"
#include "xen/xs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xenstore.h>

#define MOD "dm-state"
#define POLL_MS 5
#define QUIET_MS 100
#define CMD_TIMEOUT_MS 10000 /* libxl's LIBXL_QMP_CMD_TIMEOUT */
#define FE_VALUE_MAX 64

enum phase { PH_OPEN, PH_STOP, PH_SAVE, PH_DRAIN };

struct save_op {
    stubdm_op op;
    stubdm_stubdom *s; /* handle form, NULL for the domids form */
    uint32_t stubdom, guest;
    stubdm_console *con; /* console 1 */
    bool own_con, attached;
    stubdm_qmp *q;
    bool own_q;
    stubdm_op *cmd;
    int fd;
    enum phase phase;
    struct stubdm__timer deadline, poll, guard;
    uint64_t base, last, seq;
    int64_t quiet_since, t0;
    bool exact;      /* the frontend reports the stream's end */
    uint64_t target; /* with exact: backend bytes_out to reach */
    bool have_target;
    uint64_t bytes;
    uint64_t limit;      /* out_fd's bound (stubdm_ctx_set_save_limit) */
    uint64_t limit_base; /* console 1's bytes_out when out_fd was attached */
    off_t fd_start;      /* out_fd's offset then, if a regular file; or -1 */
    char fe_dir[64];
};

static const struct stubdm__op_type save_type;

static void save_fail(struct save_op *so, int rc, const char *what,
                      const char *msg)
{
    stubdm__op_complete(&so->op, rc, "save of stubdomain %u: %s: %s",
                        so->stubdom, what, msg);
}

static uint64_t out_bytes(const struct save_op *so)
{
    stubdm_console_stats st;

    if (stubdm_console_get_stats(so->con, &st, sizeof(st)))
        return 0;
    return st.bytes_out;
}

static void save_stop(stubdm_op *op)
{
    struct save_op *so = (struct save_op *)op;
    stubdm_ctx *ctx = op->ctx;

    stubdm__timer_stop(ctx, &so->deadline);
    stubdm__timer_stop(ctx, &so->poll);
    stubdm__timer_stop(ctx, &so->guard);
    if (so->cmd) {
        stubdm_op_free(so->cmd);
        so->cmd = NULL;
    }
    if (so->con && so->attached)
        stubdm__console_save_detach(so->con);
    so->attached = false;
    if (so->own_con) {
        /* Hand console 1 back (InitWait), never Closing: a Linux
         * stubdomain would remove /dev/hvc1, and with it QEMU's fdset,
         * so no later save could work. */
        stubdm__console_release(so->con);
        so->own_con = false;
    }
    so->con = NULL;
    if (so->own_q) {
        stubdm_qmp_free(so->q);
        so->own_q = false;
    }
    so->q = NULL;
    if (so->s) {
        stubdm_op **slot = stubdm__stubdom_dm_op(so->s);
        if (*slot == op)
            *slot = NULL;
        so->s = NULL;
    }
}

static const struct stubdm__op_type save_type = {
    .name = "dm-save",
    .stop = save_stop,
    .destroy = NULL,
};

void stubdm__dm_state_cancel(stubdm_op *op, const char *why)
{
    stubdm__op_complete(op, STUBDM_ECANCELED, "save: cancelled: %s", why);
}

/* ---- drain -------------------------------------------------------------- */

static void finish(struct save_op *so)
{
    stubdm_ctx *ctx = so->op.ctx;

    so->bytes = out_bytes(so) - so->base;
    LOG_INFO(ctx, MOD,
             "stubdomain %u: device state saved, %" PRIu64 " bytes in %.3f s "
             "(%s end)",
             so->stubdom, so->bytes,
             (double)(stubdm_now_ms() - so->t0) / 1000.0,
             so->exact ? "reported" : "quiet");
    stubdm__op_complete(&so->op, 0, NULL);
}

/* Read "SEQ TOTAL" from the frontend, if it answered our request. */
static void read_stream_end(struct save_op *so)
{
    char path[96], *v = NULL, *sp;
    uint64_t seq = 0, total = 0;

    snprintf(path, sizeof(path), "%s/stream-end", so->fe_dir);
    if (stubdm__xs_read(so->op.ctx, 0, path, FE_VALUE_MAX, &v, NULL)) {
        stubdm__clear_error(so->op.ctx);
        return;
    }
    /* Exactly "SEQ TOTAL", one space between. */
    sp = strchr(v, ' ');
    if (sp &&
        stubdm__num_parse_u64_n(v, (size_t)(sp - v), UINT64_MAX, &seq) == 0 &&
        stubdm__num_parse_u64(sp + 1, UINT64_MAX, &total) == 0 &&
        seq == so->seq) {
        so->target = total;
        so->have_target = true;
    }
    free(v);
}

static void on_poll(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct save_op *so = STUBDM_CONTAINER_OF(t, struct save_op, poll);
    uint64_t now_out;
    int64_t now = stubdm_now_ms();

    if (!stubdm__console_pending(so->con)) {
        save_fail(so,
                  stubdm_console_result(so->con) == 0
                      ? STUBDM_EFAIL
                      : stubdm_console_result(so->con),
                  "console 1 ended", stubdm_console_errmsg(so->con));
        return;
    }
    now_out = out_bytes(so);
    if (so->exact) {
        if (!so->have_target)
            read_stream_end(so);
        /* TOTAL counts from the console's creation, not from this
         * backend's: compare with the ring's own index. */
        if (so->have_target &&
            stubdm__console_out_reached(so->con, so->target)) {
            finish(so);
            return;
        }
    } else {
        if (now_out != so->last || stubdm__console_out_empty(so->con) != 1) {
            so->last = now_out;
            so->quiet_since = now;
        } else if (now - so->quiet_since >= QUIET_MS) {
            finish(so);
            return;
        }
    }
    if (stubdm__timer_arm(ctx, &so->poll, now + POLL_MS))
        save_fail(so, STUBDM_ENOMEM, "draining", ctx->errmsg);
}

static void start_drain(struct save_op *so)
{
    stubdm_ctx *ctx = so->op.ctx;
    struct xs_handle *xsh = NULL;
    char path[96], *v = NULL, val[32];

    so->phase = PH_DRAIN;
    so->last = out_bytes(so);
    so->quiet_since = stubdm_now_ms();
    snprintf(path, sizeof(path), "%s/feature-stream-end", so->fe_dir);
    so->exact = stubdm__xs_read(ctx, 0, path, FE_VALUE_MAX, &v, NULL) == 0 &&
                !strcmp(v, "1");
    free(v);
    stubdm__clear_error(ctx);
    if (so->exact) {
        so->seq = (uint64_t)stubdm_now_ms();
        snprintf(path, sizeof(path), "%s/stream-end-request", so->fe_dir);
        snprintf(val, sizeof(val), "%" PRIu64, so->seq);
        if (stubdm__xs_handle(ctx, &xsh) == 0) {
            stubdm__xs_count(ctx, 1);
            if (!xs_write(xsh, XBT_NULL, path, val, (unsigned)strlen(val)))
                so->exact = false; /* fall back to the quiet rule */
        } else {
            so->exact = false;
        }
        stubdm__clear_error(ctx);
    }
    if (stubdm__timer_arm(ctx, &so->poll, stubdm_now_ms()))
        save_fail(so, STUBDM_ENOMEM, "draining", ctx->errmsg);
}

/* ---- the size bound ----------------------------------------------------- */

/*
 * A device state is kilobytes (docs/consoles.md); without a bound a
 * stubdomain that streams on would fill dom0's disk until the timeout.
 * Checked every POLL_MS in every phase (the stream flows during the QMP
 * commands too): out_fd may get at most what console 1 moves in POLL_MS
 * past the limit before the save ends.
 */
static void on_guard(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct save_op *so = STUBDM_CONTAINER_OF(t, struct save_op, guard);
    uint64_t got = so->con ? out_bytes(so) - so->limit_base : 0;

    if (got > so->limit) {
        int fd = so->fd;
        off_t start = so->fd_start;
        stubdm__op_complete(&so->op, STUBDM_ELIMIT,
                            "save of stubdomain %u: the stream exceeds the "
                            "limit of %" PRIu64 " bytes (%" PRIu64 " written; "
                            "stubdm_ctx_set_save_limit): no device state is "
                            "that large, the save is ended%s",
                            so->stubdom, so->limit, got,
                            start >= 0 ? " and the output truncated back"
                                       : "");
        /* Console 1 is detached now (the stop hook): nothing more comes.
         * The partial stream is no state anyone can restore; give the
         * disk space back at once. */
        if (start >= 0 && ftruncate(fd, start) != 0)
            LOG_WARN(ctx, MOD,
                     "stubdomain %u: truncating the partial save "
                     "stream: %s",
                     so->stubdom, strerror(errno));
        return;
    }
    if (stubdm__timer_arm(ctx, &so->guard, stubdm_now_ms() + POLL_MS))
        save_fail(so, STUBDM_ENOMEM, "bounding the stream", ctx->errmsg);
}

/* Start bounding what out_fd gets, from console 1's count now. */
static int start_guard(struct save_op *so)
{
    stubdm_ctx *ctx = so->op.ctx;
    struct stat st;

    so->limit = ctx->save_limit ? ctx->save_limit
                                : STUBDM_DM_SAVE_DEFAULT_LIMIT;
    so->limit_base = out_bytes(so);
    so->fd_start = -1;
    if (fstat(so->fd, &st) == 0 && S_ISREG(st.st_mode))
        so->fd_start = lseek(so->fd, 0, SEEK_CUR);
    return stubdm__timer_arm(ctx, &so->guard, stubdm_now_ms() + POLL_MS);
}

int stubdm_ctx_set_save_limit(stubdm_ctx *ctx, uint64_t max_bytes)
{
    if (!ctx)
        return STUBDM_EINVAL;
    ctx->save_limit = max_bytes;
    return 0;
}

/* ---- QMP steps ---------------------------------------------------------- */

static void on_cmd(stubdm_qmp *q, stubdm_op *op, int rc,
                   const stubdm_qmp_reply *reply, void *user)
{
    struct save_op *so = user;
    const char *what = so->phase == PH_STOP ? "stop"
                                            : "xen-save-devices-state";
    char msg[STUBDM_ERRMSG_MAX];

    (void)q;
    if (so->cmd == op) {
        so->cmd = NULL;
        stubdm_op_free(op);
    }
    if (so->op.state != STUBDM__OP_PENDING)
        return;
    if (!stubdm__console_pending(so->con)) {
        /* Console 1 ended meanwhile (a hostile ring, the domain's death):
         * that is the cause, whatever QEMU answered. */
        int crc = stubdm_console_result(so->con);
        save_fail(so, crc ? crc : STUBDM_EFAIL, "console 1 ended",
                  stubdm_console_errmsg(so->con));
        return;
    }
    if (rc) {
        if (rc == STUBDM_EQMP && reply) {
            /* QEMU's text: printable and bounded before it is a message. */
            char cls[64], desc[256];
            snprintf(
                msg, sizeof(msg), "%s: %s",
                stubdm__printable_str(cls, sizeof(cls),
                                      stubdm_qmp_reply_error_class(reply)),
                stubdm__printable_str(desc, sizeof(desc),
                                      stubdm_qmp_reply_error_desc(reply)));
        } else
            snprintf(msg, sizeof(msg), "%s", stubdm_strerror(rc));
        save_fail(so, rc, what, msg);
        return;
    }
    if (so->phase == PH_STOP) {
        so->phase = PH_SAVE;
        rc = stubdm_qmp_execute(so->q, "xen-save-devices-state",
                                "{\"filename\":\"/dev/fdset/1\"}",
                                CMD_TIMEOUT_MS, on_cmd, so, &so->cmd);
        if (rc)
            save_fail(so, rc, "xen-save-devices-state", so->op.ctx->errmsg);
        return;
    }
    start_drain(so);
}

static void start_stop(struct save_op *so)
{
    int rc;

    so->phase = PH_STOP;
    so->base = out_bytes(so);
    rc = stubdm_qmp_execute(so->q, "stop", NULL, CMD_TIMEOUT_MS, on_cmd, so,
                            &so->cmd);
    if (rc)
        save_fail(so, rc, "stop", so->op.ctx->errmsg);
}

static void on_qmp_open(stubdm_op *op, int rc, void *user)
{
    struct save_op *so = user;

    if (so->op.state != STUBDM__OP_PENDING)
        return;
    if (rc) {
        save_fail(so, rc, "opening QMP", stubdm_op_errmsg(op));
        return;
    }
    start_stop(so);
}

static void on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct save_op *so = STUBDM_CONTAINER_OF(t, struct save_op, deadline);
    static const char *const names[] = {"opening QMP", "stop",
                                        "xen-save-devices-state",
                                        "waiting for the end of the stream"};

    (void)ctx;
    stubdm__op_complete(&so->op, STUBDM_ETIMEDOUT,
                        "save of stubdomain %u: %s: timed out (%" PRIu64
                        " bytes written so far)",
                        so->stubdom, names[so->phase],
                        so->con ? out_bytes(so) - so->base : 0);
}

/* ---- starting ----------------------------------------------------------- */

static struct save_op *save_new(stubdm_ctx *ctx, uint32_t stubdom,
                                uint32_t guest, int fd, int timeout_ms,
                                stubdm_done_fn *done, void *user)
{
    struct save_op *so = (struct save_op *)stubdm__op_new(ctx, &save_type,
                                                          sizeof(*so), done,
                                                          user);

    if (!so)
        return NULL;
    so->stubdom = stubdom;
    so->guest = guest;
    so->fd = fd;
    so->t0 = stubdm_now_ms();
    stubdm__timer_init(&so->deadline, on_deadline);
    stubdm__timer_init(&so->poll, on_poll);
    stubdm__timer_init(&so->guard, on_guard);
    snprintf(so->fe_dir, sizeof(so->fe_dir),
             "/local/domain/%u/device/console/%u", stubdom,
             STUBDM_CONSOLE_SAVE);
    if (stubdm__timer_arm(ctx, &so->deadline, so->t0 + timeout_ms)) {
        stubdm__op_abandon(&so->op);
        return NULL;
    }
    return so;
}

int stubdm_stubdom_save(stubdm_stubdom *s, int out_fd, int timeout_ms,
                        stubdm_done_fn *done, void *user, stubdm_op **op_out)
{
    stubdm_ctx *ctx;
    stubdm_op **slot;
    stubdm_console *con;
    struct save_op *so;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!s)
        return STUBDM_EINVAL;
    ctx = stubdm__stubdom_ctx(s);
    if (out_fd < 0 || timeout_ms <= 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "save: an fd and a positive timeout are needed");
    if (stubdm_stubdom_step(s) != STUBDM_SPAWN_STEP_RUNNING)
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "save: the stubdomain is %s, not running",
                            stubdm_spawn_step_name(stubdm_stubdom_step(s)));
    if (!stubdm_qmp_is_ready(stubdm_stubdom_qmp(s)))
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "save: the spawn has no ready QMP connection "
                            "(stubdm_spawn_opts_set_qmp)");
    con = stubdm_stubdom_console(s, STUBDM_CONSOLE_SAVE);
    if (!con || !stubdm__console_pending(con))
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "save: console 1 is not served by this library "
                            "(console backend libstubdm)");
    slot = stubdm__stubdom_dm_op(s);
    if (*slot)
        return stubdm__fail(ctx, STUBDM_EBUSY, 0,
                            "save: one is already in progress");
    if (stubdm__stubdom_paused(s))
        return stubdm__fail(
            ctx, STUBDM_ESTATE, 0,
            "save: the stubdomain is paused; unpause it first");
    so = save_new(ctx, stubdm_stubdom_domid(s), stubdm_stubdom_guest(s),
                  out_fd, timeout_ms, done, user);
    if (!so)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "save");
    rc = stubdm__console_save_attach(con, out_fd);
    if (rc) {
        stubdm__op_abandon(&so->op);
        return rc;
    }
    so->s = s;
    so->con = con;
    so->attached = true;
    so->q = stubdm_stubdom_qmp(s);
    *slot = &so->op;
    if (start_guard(so)) {
        rc = stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "save");
        stubdm__op_abandon(&so->op);
        return rc;
    }
    start_stop(so);
    stubdm__op_started(&so->op, op_out);
    return 0;
}

/*
 * Console 1 must exist and be this library's to serve: with any other
 * backend the save would wait for a frontend nobody connects, or fight
 * the backend that has it (one event channel binding per port), until
 * the timeout.  Say why at once instead.
 */
static int check_save_console(stubdm_ctx *ctx, uint32_t stubdom)
{
    char path[96], *type = NULL;
    size_t len = 0;
    int rc;

    snprintf(path, sizeof(path), "/local/domain/%u/device/console/%u/type",
             stubdom, STUBDM_CONSOLE_SAVE);
    /* The stubdomain owns device/console/1, so it can remove "type" and
     * write its own: only dom0's (the contract's) decides. */
    rc = stubdm__xs_read_owned(ctx, path, FE_VALUE_MAX, 0, &type, &len);
    if (rc == STUBDM_EPERM) {
        char why[STUBDM_ERRMSG_MAX];
        snprintf(why, sizeof(why), "%s", ctx->errmsg);
        return stubdm__fail(ctx, STUBDM_EPROTO, 0,
                            "save: console 1 of stubdomain %u: %s", stubdom,
                            why);
    }
    if (rc == STUBDM_ENOENT)
        return stubdm__fail(ctx, STUBDM_ENOENT, 0,
                            "save: stubdomain %u has no console 1 (%s is "
                            "absent): nothing can carry the device state; "
                            "a stubdomain spawned with the xenconsoled "
                            "backend has console 0 only",
                            stubdom, path);
    if (rc)
        return rc;
    if (strlen(type) != len || strcmp(type, "libstubdm") != 0) {
        char shown[24];
        rc = stubdm__fail(ctx, STUBDM_ENOTSUP, 0,
                          "save: console 1 of stubdomain %u is served by "
                          "'%s' (%s), not by this library (backend "
                          "libstubdm)",
                          stubdom,
                          stubdm__printable(shown, sizeof(shown), type, len),
                          path);
        free(type);
        return rc;
    }
    free(type);
    return 0;
}

/* Open QMP for a save by domids (the connection is shared if this ctx
 * already has it). */
static int open_qmp(struct save_op *so, bool sim)
{
    stubdm_qmp_opts *qo = NULL;
    int rc;

    rc = stubdm_qmp_opts_new(&qo);
    if (!rc)
        rc = stubdm_qmp_opts_set_transport(qo,
                                           sim ? STUBDM_QMP_TRANSPORT_SIMULATED
                                               : STUBDM_QMP_TRANSPORT_VCHAN);
    if (!rc)
        rc = stubdm_qmp_open(so->op.ctx, so->stubdom, so->guest, qo,
                             on_qmp_open, so, &so->q, NULL);
    stubdm_qmp_opts_free(qo);
    if (rc)
        return rc;
    so->own_q = true;
    so->phase = PH_OPEN;
    return 0;
}

/* Both forms by domids: serve console 1 for the save; use held (the
 * caller's ready handle) or open QMP. */
static int dm_save_start(stubdm_ctx *ctx, uint32_t stubdom_domid,
                         uint32_t guest_domid, stubdm_qmp *held, int out_fd,
                         int timeout_ms, stubdm_done_fn *done, void *user,
                         stubdm_op **op_out)
{
    stubdm_console_opts *o = NULL;
    struct save_op *so;
    bool sim;
    int rc;

    if (out_fd < 0 || timeout_ms <= 0 || stubdom_domid == 0 ||
        !stubdm__domid_ok(stubdom_domid) || !stubdm__domid_ok(guest_domid))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "save: bad domid, fd or timeout");
    sim = stubdm__host(ctx)->simulated;
    if ((rc = check_save_console(ctx, stubdom_domid)))
        return rc;
    so = save_new(ctx, stubdom_domid, guest_domid, out_fd, timeout_ms, done,
                  user);
    if (!so)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "save");
    rc = stubdm_console_opts_new(&o);
    if (!rc)
        rc = stubdm_console_opts_set_save_fd(o, out_fd);
    if (!rc)
        rc = stubdm_console_opts_set_transport(
            o, sim ? STUBDM_CONSOLE_TRANSPORT_SIMULATED
                   : STUBDM_CONSOLE_TRANSPORT_XEN);
    if (!rc)
        rc = stubdm_console_serve(ctx, stubdom_domid, STUBDM_CONSOLE_SAVE, o,
                                  NULL, NULL, &so->con);
    stubdm_console_opts_free(o);
    if (rc)
        goto fail;
    so->own_con = true;
    if (start_guard(so)) {
        rc = stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "save");
        goto fail;
    }
    if (held) {
        so->q = held;
        start_stop(so);
    } else if ((rc = open_qmp(so, sim))) {
        goto fail;
    }
    stubdm__op_started(&so->op, op_out);
    return 0;
fail:
    /* abandon runs the stop hook: it releases what was made here */
    so->own_q = so->q != NULL && !held;
    stubdm__op_abandon(&so->op);
    return rc;
}

int stubdm_dm_save(stubdm_ctx *ctx, uint32_t stubdom_domid,
                   uint32_t guest_domid, int out_fd, int timeout_ms,
                   stubdm_done_fn *done, void *user, stubdm_op **op_out)
{
    if (op_out)
        *op_out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    return dm_save_start(ctx, stubdom_domid, guest_domid, NULL, out_fd,
                         timeout_ms, done, user, op_out);
}

int stubdm_dm_save_qmp(stubdm_qmp *q, int out_fd, int timeout_ms,
                       stubdm_done_fn *done, void *user, stubdm_op **op_out)
{
    stubdm_ctx *ctx;
    uint32_t stubdom, guest;

    if (op_out)
        *op_out = NULL;
    if (!q)
        return STUBDM_EINVAL;
    ctx = stubdm__qmp_ctx(q);
    if (!stubdm_qmp_is_ready(q))
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "save: the QMP handle is not ready");
    stubdm__qmp_domids(q, &stubdom, &guest);
    return dm_save_start(ctx, stubdom, guest, q, out_fd, timeout_ms, done,
                         user, op_out);
}

uint64_t stubdm_dm_save_bytes(const stubdm_op *op)
{
    if (!op || op->type != &save_type)
        return 0;
    return ((const struct save_op *)op)->bytes;
}

/* The blocking tail of both save forms: wait for the started op. */
static int save_wait(stubdm_op *op, int rc, uint64_t *bytes_out)
{
    if (!rc)
        rc = stubdm__op_wait(op);
    if (!rc && bytes_out)
        *bytes_out = stubdm_dm_save_bytes(op);
    stubdm_op_free(op);
    return rc;
}

int stubdm_stubdom_save_sync(stubdm_stubdom *s, int out_fd, int timeout_ms,
                             uint64_t *bytes_out)
{
    stubdm_op *op = NULL;
    int rc;

    if (bytes_out)
        *bytes_out = 0;
    if (!s)
        return STUBDM_EINVAL;
    rc = stubdm__sync_check(stubdm__stubdom_ctx(s),
                            "stubdm_stubdom_save_sync");
    if (rc)
        return rc;
    rc = stubdm_stubdom_save(s, out_fd, timeout_ms, NULL, NULL, &op);
    return save_wait(op, rc, bytes_out);
}

int stubdm_dm_save_sync(stubdm_ctx *ctx, uint32_t stubdom_domid,
                        uint32_t guest_domid, int out_fd, int timeout_ms,
                        uint64_t *bytes_out)
{
    stubdm_op *op = NULL;
    int rc;

    if (bytes_out)
        *bytes_out = 0;
    if (!ctx)
        return STUBDM_EINVAL;
    rc = stubdm__sync_check(ctx, "stubdm_dm_save_sync");
    if (rc)
        return rc;
    rc = stubdm_dm_save(ctx, stubdom_domid, guest_domid, out_fd, timeout_ms,
                        NULL, NULL, &op);
    return save_wait(op, rc, bytes_out);
}

int stubdm_dm_save_qmp_sync(stubdm_qmp *q, int out_fd, int timeout_ms,
                            uint64_t *bytes_out)
{
    stubdm_op *op = NULL;
    int rc;

    if (bytes_out)
        *bytes_out = 0;
    if (!q)
        return STUBDM_EINVAL;
    rc = stubdm__sync_check(stubdm__qmp_ctx(q), "stubdm_dm_save_qmp_sync");
    if (rc)
        return rc;
    rc = stubdm_dm_save_qmp(q, out_fd, timeout_ms, NULL, NULL, &op);
    return save_wait(op, rc, bytes_out);
}
