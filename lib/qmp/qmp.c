/*
 * The QMP connection layer: one connection per (stubdom, guest) per ctx,
 * shared by any number of stubdm_qmp handles.
 *
 * Connection states, in the order a connection goes through them:
 *
 *   DOWN --open--> LOCKING --lock held--> WAIT_SERVER --ring-ref and
 *     ^              | (wait mode:          | event-channel present-->
 *     |              |  retry timer)        |
 *     |            CONNECTING (unix socket: retried until it listens)
 *     |              | connected: marker byte?, wire in discard mode
 *     |            GREETING --greeting--> NEGOTIATING --return--> READY
 *     |                                                            |
 *     +------------- any failure, EOF, death, protocol error <-----+
 *
 * DOWN keeps the reason of the last failure.  Leaving DOWN is always an
 * explicit request (open, reconnect).  Handle opens wait on the connection
 * with their own deadlines; when the last waiting open gives up, the
 * attempt is abandoned.
 *
 * Commands: ids are integers unique on the connection, assigned at
 * execute().  At most STUBDM_QMP_MAX_IN_FLIGHT are on the wire; the rest
 * wait in FIFO order.  A command on the wire that is cancelled or times
 * out leaves a tombstone: its id stays reserved (and its slot counted,
 * since QEMU still has it queued) until its reply arrives and is dropped.
 * If every slot holds a command that timed out, QEMU is wedged and the
 * connection ends.
 *
 * Reentrancy: user callbacks for commands and opens go through the op
 * queue (never inside the starting call).  Event callbacks run from the
 * read loop; while it runs (conn->busy), closing handles and removing
 * subscriptions only mark them, and they are reaped when the loop ends.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/num.h"
#include "core/op.h"
#include "core/peer.h"
#include "qmp/events.h"
#include "qmp/qmp.h"
#include "qmp/transport.h"
#include "qmp/wire.h"
#include "xen/domain.h"
#include "xen/hv.h"
#include "xen/xs.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "qmp"
#define LOCK_RETRY_MS 100
#define CONNECT_RETRY_MS 50
#define XS_VALUE_MAX 32
#define READ_CHUNK 65536
/* Bytes read per dispatch before yielding to other fds (then a zero-delay
 * timer continues), so a flooding peer cannot starve the loop. */
#define READ_BUDGET (1u << 20)

/* ---- Types -------------------------------------------------------------- */

struct stubdm_qmp_opts {
    stubdm_qmp_transport transport;
    char *sim_dir;
    int open_timeout_ms;
    bool marker, oob;
    size_t max_message;
    unsigned max_depth;
    size_t max_queued;
    char *lock_path;
    stubdm_qmp_lock_mode lock_mode;
    /* libxl's lock by guest (set_libxl_lock): the path is made at open */
    char *libxl_uuid, *libxl_dir;
};

enum conn_state {
    C_DOWN,
    C_LOCKING,
    C_WAIT_SERVER,
    C_CONNECTING,
    C_GREETING,
    C_NEGOTIATING,
    C_READY,
};

/* One connection to a stubdomain's QEMU, shared by its handles.  The
 * fields every command and reply touches come first, together, so a round
 * trip touches fewer cache lines; configuration and the big buffers of the
 * rare paths follow. */
struct qmp_conn {
    stubdm_ctx *ctx;
    /* the round trip's */
    enum conn_state state;
    struct stubdm__qmpt t;
    struct stubdm__fd fdw;
    bool wire_live;
    bool oob_enabled;
    /* Bumped whenever the transport and wire are released.  A read that
     * finds it changed after calling out stops at once: a callback failed,
     * reconnected or closed the connection, and the rest of the chunk
     * belongs to a wire that is gone. */
    unsigned wire_gen;
    /* reentrancy */
    bool reap_needed;
    bool read_more;
    unsigned busy;
    struct stubdm__buf out;
    char *rbuf; /* READ_CHUNK bytes, made on the first read */
    uint64_t next_id, caps_id;
    /* commands */
    struct stubdm__list queued, inflight;
    size_t n_queued, n_live; /* n_live: live commands on the wire */
    size_t n_tomb;
    size_t max_queued;
    stubdm_qmp_stats stats;
    struct stubdm__timer kick; /* deferred work: pump, read more */
    struct stubdm__list handles;
    struct stubdm__qmp_wire wire;
    uint64_t tomb[STUBDM_QMP_MAX_IN_FLIGHT];
    bool tomb_timedout[STUBDM_QMP_MAX_IN_FLIGHT];
    /* configuration, from the first opener */
    struct stubdm__list link; /* ctx->qmp_conns */
    uint32_t stubdom, guest;
    enum stubdm__qmpt_kind kind;
    char *sim_path;
    char *lock_path;
    stubdm_qmp_lock_mode lock_mode;
    bool marker, want_oob;
    struct stubdm__qmp_limits lim;
    char dm_path[80], vchan_path[96];
    /* connecting, failing */
    int down_rc;
    char down_msg[STUBDM_ERRMSG_MAX];
    struct stubdm__list opening; /* open_ops waiting */
    struct stubdm__qmplock lock;
    struct stubdm__timer retry; /* lock wait, connect retry */
    struct stubdm__xswatch server_watch;
    struct stubdm__domwatch death;
    struct stubdm__qmp_msg *greeting;
};

struct stubdm_qmp {
    stubdm_ctx *ctx;
    struct qmp_conn *conn;
    struct stubdm__list link; /* conn->handles */
    struct stubdm__list cmds; /* this handle's pending commands */
    struct stubdm__list subs;
    struct open_op *open;
    int open_timeout_ms;
    int open_rc; /* result of the last open/reconnect */
    /* Its message, kept here because the ctx's own message may be
     * overwritten by other timers before a blocking caller reads it. */
    char open_msg[STUBDM_ERRMSG_MAX];
    bool closed; /* closed during event delivery: reaped later */
    struct stubdm__qmp_evq *evq; /* stubdm_qmp_events_enable (events.c) */
    struct stubdm__list lost;    /* lost_ops (stubdm_qmp_watch_lost) */
};

struct stubdm_qmp_sub {
    stubdm_qmp *q;
    struct stubdm__list link;
    char *name; /* NULL: all */
    stubdm_qmp_event_fn *fn;
    void *user;
    bool dead;
};

struct stubdm_qmp_reply {
    struct stubdm__qmp_msg *msg;
    char *return_json; /* rendered on first use */
};

struct open_op {
    stubdm_op op;
    stubdm_qmp *q;
    struct qmp_conn *conn;
    struct stubdm__list link; /* conn->opening */
    struct stubdm__timer deadline;
    int timeout_ms;
    int64_t started_ms;
};

/* stubdm_qmp_watch_lost: completes when the ready connection goes down. */
struct lost_op {
    stubdm_op op;
    stubdm_qmp *q;
    struct stubdm__list link; /* q->lost */
};

enum cmd_where { CMD_NEW, CMD_QUEUED, CMD_INFLIGHT, CMD_GONE };

struct cmd_op {
    stubdm_op op;
    stubdm_qmp *q;
    struct qmp_conn *conn;
    struct stubdm__list hlink; /* q->cmds */
    struct stubdm__list clink; /* conn->queued or conn->inflight */
    enum cmd_where where;
    uint64_t id;
    char name[STUBDM__QMP_MAX_COMMAND_NAME + 1];
    struct stubdm__buf bytes;
    struct stubdm__timer deadline;
    int timeout_ms;
    stubdm_qmp_reply_fn *cb;
    void *cb_user;
    struct stubdm_qmp_reply reply;
    bool have_reply;
};

static void conn_fail(struct qmp_conn *c, int rc, const char *fmt, ...)
    STUBDM_PRINTF(3, 4) STUBDM_COLD;
static void conn_pump(struct qmp_conn *c);
static void conn_flush(struct qmp_conn *c);
static void conn_maybe_free(struct qmp_conn *c);
static void reap(struct qmp_conn *c);

static const char *state_doing(enum conn_state s)
{
    switch (s) {
    case C_DOWN:
        return "not connected";
    case C_LOCKING:
        return "waiting for the QMP lock";
    case C_WAIT_SERVER:
        return "waiting for the stubdomain's qmp-vchan/ring-ref";
    case C_CONNECTING:
        return "waiting for the QMP server to accept the connection";
    case C_GREETING:
        return "no greeting from QEMU";
    case C_NEGOTIATING:
        return "no answer to qmp_capabilities";
    case C_READY:
        return "connected";
    }
    return "?";
}

/* ---- Options ------------------------------------------------------------ */

int stubdm_qmp_opts_new(stubdm_qmp_opts **out)
{
    stubdm_qmp_opts *o;

    if (!out)
        return STUBDM_EINVAL;
    *out = NULL;
    o = stubdm__calloc(1, sizeof(*o));
    if (!o)
        return STUBDM_ENOMEM;
    o->transport = STUBDM_QMP_TRANSPORT_AUTO;
    o->open_timeout_ms = STUBDM_QMP_DEFAULT_OPEN_TIMEOUT_MS;
    o->max_message = STUBDM_QMP_DEFAULT_MAX_MESSAGE;
    o->max_depth = STUBDM_QMP_DEFAULT_MAX_DEPTH;
    o->max_queued = STUBDM_QMP_DEFAULT_MAX_QUEUED;
    o->lock_mode = STUBDM_QMP_LOCK_FAIL;
    *out = o;
    return 0;
}

void stubdm_qmp_opts_free(stubdm_qmp_opts *o)
{
    if (!o)
        return;
    free(o->sim_dir);
    free(o->lock_path);
    free(o->libxl_uuid);
    free(o->libxl_dir);
    free(o);
}

int stubdm_qmp_opts_set_transport(stubdm_qmp_opts *o, stubdm_qmp_transport t)
{
    if (!o ||
        (t != STUBDM_QMP_TRANSPORT_AUTO && t != STUBDM_QMP_TRANSPORT_VCHAN &&
         t != STUBDM_QMP_TRANSPORT_SIMULATED))
        return STUBDM_EINVAL;
    o->transport = t;
    return 0;
}

static int set_str(char **dst, const char *s)
{
    char *c = NULL;

    if (s && !*s)
        return STUBDM_EINVAL;
    if (s && !(c = stubdm__strdup(s)))
        return STUBDM_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

int stubdm_qmp_opts_set_sim_dir(stubdm_qmp_opts *o, const char *dir)
{
    return o ? set_str(&o->sim_dir, dir) : STUBDM_EINVAL;
}

int stubdm_qmp_opts_set_open_timeout(stubdm_qmp_opts *o, int timeout_ms)
{
    if (!o || timeout_ms <= 0)
        return STUBDM_EINVAL;
    o->open_timeout_ms = timeout_ms;
    return 0;
}

int stubdm_qmp_opts_set_reconnect_marker(stubdm_qmp_opts *o, int on)
{
    if (!o)
        return STUBDM_EINVAL;
    o->marker = on != 0;
    return 0;
}

int stubdm_qmp_opts_set_oob(stubdm_qmp_opts *o, int on)
{
    if (!o)
        return STUBDM_EINVAL;
    o->oob = on != 0;
    return 0;
}

int stubdm_qmp_opts_set_limits(stubdm_qmp_opts *o, size_t max_message,
                               unsigned max_depth, size_t max_queued)
{
    if (!o || (max_message && max_message < 4096) || max_depth > 1024)
        return STUBDM_EINVAL;
    o->max_message = max_message ? max_message
                                 : STUBDM_QMP_DEFAULT_MAX_MESSAGE;
    o->max_depth = max_depth ? max_depth : STUBDM_QMP_DEFAULT_MAX_DEPTH;
    o->max_queued = max_queued ? max_queued : STUBDM_QMP_DEFAULT_MAX_QUEUED;
    return 0;
}

int stubdm_qmp_opts_set_lock(stubdm_qmp_opts *o, const char *path,
                             stubdm_qmp_lock_mode mode)
{
    int rc;

    if (!o ||
        (mode != STUBDM_QMP_LOCK_FAIL && mode != STUBDM_QMP_LOCK_WAIT &&
         mode != STUBDM_QMP_LOCK_NONE && mode != STUBDM_QMP_LOCK_LIBXL) ||
        (mode == STUBDM_QMP_LOCK_LIBXL && (!path || path[0] != '/')))
        return STUBDM_EINVAL;
    rc = set_str(&o->lock_path, path);
    if (rc)
        return rc;
    o->lock_mode = mode;
    free(o->libxl_uuid);
    free(o->libxl_dir);
    o->libxl_uuid = o->libxl_dir = NULL;
    return 0;
}

/* libxl's LIBXL_UUID_FMT: 8-4-4-4-12 lower-case hex digits.  Any other
 * spelling would name a file libxl never locks. */
static bool libxl_uuid_ok(const char *u)
{
    size_t i;

    for (i = 0; u[i]; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-'
                 : !((u[i] >= '0' && u[i] <= '9') ||
                     (u[i] >= 'a' && u[i] <= 'f')))
            return false;
    }
    return i == 36;
}

int stubdm_qmp_opts_set_libxl_lock(stubdm_qmp_opts *o, const char *guest_uuid,
                                   const char *lib_dir)
{
    char *u, *d;

    if (!o || !guest_uuid || !libxl_uuid_ok(guest_uuid) ||
        (lib_dir && lib_dir[0] != '/'))
        return STUBDM_EINVAL;
    u = stubdm__strdup(guest_uuid);
    d = stubdm__strdup(lib_dir ? lib_dir : STUBDM_QMP_LIBXL_LIB_DIR);
    if (!u || !d) {
        free(u);
        free(d);
        return STUBDM_ENOMEM;
    }
    free(o->libxl_uuid);
    free(o->libxl_dir);
    o->libxl_uuid = u;
    o->libxl_dir = d;
    free(o->lock_path);
    o->lock_path = NULL;
    o->lock_mode = STUBDM_QMP_LOCK_LIBXL;
    return 0;
}

/* ---- The per-ctx list of connections (ctx->qmp_conns) ------------------- */

static void conn_destroy(struct qmp_conn *c);

/* ctx teardown, after the ops were dropped: every connection goes, without
 * callbacks.  Handles the application still holds become dangling, as
 * everything else of the ctx does. */
void stubdm__qmp_dispose(stubdm_ctx *ctx)
{
    while (!stubdm__list_empty(&ctx->qmp_conns))
        conn_destroy(
            STUBDM_CONTAINER_OF(ctx->qmp_conns.next, struct qmp_conn, link));
}

static struct qmp_conn *conn_find(stubdm_ctx *ctx, uint32_t stubdom,
                                  uint32_t guest)
{
    for (struct stubdm__list *n = ctx->qmp_conns.next; n != &ctx->qmp_conns;
         n = n->next) {
        struct qmp_conn *c = STUBDM_CONTAINER_OF(n, struct qmp_conn, link);
        if (c->stubdom == stubdom && c->guest == guest)
            return c;
    }
    return NULL;
}

/* ---- Replies and events: views handed to callbacks ---------------------- */

static char *render(const struct stubdm__json *v)
{
    struct stubdm__buf b;
    struct stubdm__json_writer *w;

    if (!v)
        return NULL;
    stubdm__buf_init(&b, 0);
    w = stubdm__json_writer_new(&b);
    stubdm__json_w_value(w, v);
    if (stubdm__json_writer_end(w) || stubdm__buf_append(&b, "", 0)) {
        stubdm__buf_dispose(&b);
        return NULL;
    }
    return b.data;
}

const char *stubdm_qmp_reply_json(const stubdm_qmp_reply *r)
{
    return r && r->msg ? r->msg->raw : NULL;
}

const char *stubdm_qmp_reply_return_json(const stubdm_qmp_reply *r)
{
    struct stubdm_qmp_reply *m = (struct stubdm_qmp_reply *)r;

    if (!r || !r->msg || r->msg->type != STUBDM__QMP_RETURN)
        return NULL;
    if (!m->return_json)
        m->return_json = render(r->msg->value);
    return m->return_json;
}

const char *stubdm_qmp_reply_error_class(const stubdm_qmp_reply *r)
{
    return r && r->msg && r->msg->type == STUBDM__QMP_ERROR
               ? r->msg->error_class
               : NULL;
}

const char *stubdm_qmp_reply_error_desc(const stubdm_qmp_reply *r)
{
    return r && r->msg && r->msg->type == STUBDM__QMP_ERROR
               ? r->msg->error_desc
               : NULL;
}

const char *stubdm_qmp_event_name(const stubdm_qmp_event *ev)
{
    return ev ? ev->msg->event : NULL;
}

const char *stubdm_qmp_event_json(const stubdm_qmp_event *ev)
{
    return ev ? ev->msg->raw : NULL;
}

const char *stubdm_qmp_event_data_json(const stubdm_qmp_event *ev)
{
    struct stubdm_qmp_event *m = (struct stubdm_qmp_event *)ev;

    if (!ev || !ev->msg->value)
        return NULL;
    if (!m->data_json)
        m->data_json = render(ev->msg->value);
    return m->data_json;
}

void stubdm_qmp_event_timestamp(const stubdm_qmp_event *ev, int64_t *seconds,
                                int64_t *microseconds)
{
    if (seconds)
        *seconds = ev ? ev->msg->ts_seconds : -1;
    if (microseconds)
        *microseconds = ev ? ev->msg->ts_microseconds : -1;
}

/* ---- Commands ----------------------------------------------------------- */

static void cmd_unlink_conn(struct cmd_op *cmd)
{
    struct qmp_conn *c = cmd->conn;

    if (!c)
        return;
    if (cmd->where == CMD_QUEUED) {
        c->n_queued--;
    } else if (cmd->where == CMD_INFLIGHT) {
        /* Still in QEMU's queue: keep the id reserved, its slot counted. */
        c->n_live--;
        if (c->state == C_READY && c->n_tomb < STUBDM_QMP_MAX_IN_FLIGHT) {
            /* op.rc is set before stop: a timeout says QEMU is slow or
             * stuck, a cancellation says nothing about QEMU. */
            c->tomb_timedout[c->n_tomb] = cmd->op.rc == STUBDM_ETIMEDOUT;
            c->tomb[c->n_tomb++] = cmd->id;
            LOG_DEBUG(c->ctx, MOD,
                      "stubdomain %u: command %s (id %" PRIu64
                      ") abandoned on the wire",
                      c->stubdom, cmd->name, cmd->id);
        }
        stubdm__timer_arm(c->ctx, &c->kick, stubdm_now_ms());
    }
    stubdm__list_del(&cmd->clink);
    cmd->where = CMD_GONE;
}

static void cmd_stop(stubdm_op *op)
{
    struct cmd_op *cmd = (struct cmd_op *)op;

    /* hlink stays until destroy: a closing handle must find its completed
     * commands too, whose callbacks have yet to run. */
    if (cmd->conn)
        stubdm__timer_stop(cmd->conn->ctx, &cmd->deadline);
    cmd_unlink_conn(cmd);
}

/* Free a message, keeping its memory for the connection's next one while
 * the connection reads. */
static void conn_msg_free(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    if (c && c->wire_live)
        stubdm__qmp_wire_recycle(&c->wire, m);
    else
        stubdm__qmp_msg_free(m);
}

static void cmd_destroy(stubdm_op *op)
{
    struct cmd_op *cmd = (struct cmd_op *)op;

    stubdm__list_del(&cmd->hlink);
    stubdm__buf_dispose(&cmd->bytes);
    /* cmd->conn is only known to be alive while the handle is: a closed
     * handle's commands keep the pointer of a connection that may be gone
     * (close NULLs cmd->q, not cmd->conn). */
    conn_msg_free(cmd->q ? cmd->conn : NULL, cmd->reply.msg);
    free(cmd->reply.return_json);
}

static const struct stubdm__op_type cmd_type = {
    .name = "qmp-command",
    .stop = cmd_stop,
    .destroy = cmd_destroy,
};

/* Runs from the op queue: adapt the generic op callback to a reply_fn. */
static void cmd_trampoline(stubdm_op *op, int rc, void *user)
{
    struct cmd_op *cmd = (struct cmd_op *)op;

    if (cmd->cb)
        cmd->cb(cmd->q, op, rc, cmd->have_reply ? &cmd->reply : NULL, user);
}

static void cmd_on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct cmd_op *cmd = STUBDM_CONTAINER_OF(t, struct cmd_op, deadline);

    (void)ctx;
    stubdm__op_complete(&cmd->op, STUBDM_ETIMEDOUT,
                        "QMP command %s to stubdomain %u: no reply after "
                        "%d ms%s",
                        cmd->name, cmd->conn ? cmd->conn->stubdom : 0,
                        cmd->timeout_ms,
                        cmd->where == CMD_INFLIGHT
                            ? " (sent; a late reply will be dropped)"
                            : " (never sent: queued behind others)");
}

/* Whether the command can be taken now: a valid name (its length in
 * *name_len), a positive timeout, a ready connection with room. */
static inline int cmd_check(stubdm_qmp *q, const char *command, int timeout_ms,
                            size_t *name_len)
{
    stubdm_ctx *ctx = q->ctx;
    struct qmp_conn *c = q->conn;

    *name_len = stubdm__qmp_command_name_len(command);
    if (!*name_len)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "QMP: invalid command name \"%.64s\"",
                            command ? command : "(null)");
    if (timeout_ms <= 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "QMP %s: timeout must be positive (got %d ms)",
                            command, timeout_ms);
    if (c->state != C_READY)
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "QMP %s: the connection to stubdomain %u is not "
                            "ready (%s%s%s)",
                            command, c->stubdom, state_doing(c->state),
                            c->state == C_DOWN && c->down_msg[0] ? ": " : "",
                            c->state == C_DOWN ? c->down_msg : "");
    if (c->n_live + c->n_tomb >= STUBDM_QMP_MAX_IN_FLIGHT &&
        c->n_queued >= c->max_queued)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "QMP %s: %zu commands already wait for stubdomain "
                            "%u (limit %zu)",
                            command, c->n_queued, c->stubdom, c->max_queued);
    return 0;
}

/* A new command op of q (not started), with the next id of the
 * connection. */
static inline struct cmd_op *cmd_alloc(stubdm_qmp *q, const char *command,
                                       size_t name_len, int timeout_ms,
                                       stubdm_qmp_reply_fn *cb, void *user)
{
    struct cmd_op *cmd = (struct cmd_op *)stubdm__op_new(q->ctx, &cmd_type,
                                                         sizeof(*cmd),
                                                         cmd_trampoline, user);
    if (!cmd)
        return NULL;
    cmd->q = q;
    cmd->conn = q->conn;
    cmd->cb = cb;
    cmd->cb_user = user;
    cmd->timeout_ms = timeout_ms;
    cmd->where = CMD_NEW;
    memcpy(cmd->name, command, name_len + 1); /* a valid name fits */
    stubdm__list_init(&cmd->hlink);
    stubdm__list_init(&cmd->clink);
    stubdm__timer_init(&cmd->deadline, cmd_on_deadline);
    stubdm__buf_init(&cmd->bytes, 0);
    cmd->id = ++q->conn->next_id;
    return cmd;
}

/* The started command on the wire (direct: its bytes are in c->out
 * already) or queued behind others. */
static inline void cmd_enqueue(struct qmp_conn *c, struct cmd_op *cmd,
                               bool direct)
{
    if (direct) {
        stubdm__list_add_tail(&c->inflight, &cmd->clink);
        cmd->where = CMD_INFLIGHT;
        c->n_live++;
        c->stats.commands_sent++;
    } else {
        stubdm__list_add_tail(&c->queued, &cmd->clink);
        cmd->where = CMD_QUEUED;
        c->n_queued++;
        conn_pump(c);
    }
    conn_flush(c);
}

static int cmd_start(stubdm_qmp *q, const char *command, const char *args,
                     int timeout_ms, stubdm_qmp_reply_fn *cb, void *user,
                     stubdm_op **op_out)
{
    struct qmp_conn *c;
    struct cmd_op *cmd;
    size_t name_len;
    char why[160];
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!q || q->closed)
        return STUBDM_EINVAL;
    c = q->conn;
    if ((rc = cmd_check(q, command, timeout_ms, &name_len)))
        return rc;
    cmd = cmd_alloc(q, command, name_len, timeout_ms, cb, user);
    if (!cmd)
        return stubdm__fail(q->ctx, STUBDM_ENOMEM, ENOMEM, "QMP command");
    /* With nothing queued ahead and a slot free, the command goes straight
     * into the output buffer (no copy of its own) and is written below,
     * inside this call when the channel has room: that saves a poll round.
     * Only the callback is deferred, as for every op. */
    bool direct = stubdm__list_empty(&c->queued) &&
                  c->n_live + c->n_tomb < STUBDM_QMP_MAX_IN_FLIGHT;
    /* The deadline first: abandoning the op stops it, whereas encoded bytes
     * could not be taken back out of c->out as simply. */
    rc = stubdm__timer_arm(q->ctx, &cmd->deadline,
                           stubdm_now_ms() + timeout_ms);
    if (rc) {
        stubdm__op_abandon(&cmd->op);
        return rc;
    }
    rc = stubdm__qmp_encode_command_n(direct ? &c->out : &cmd->bytes, command,
                                      name_len, args, args ? strlen(args) : 0,
                                      cmd->id, false, why, sizeof(why));
    if (rc) {
        stubdm__op_abandon(&cmd->op);
        return stubdm__fail(q->ctx, rc, 0, "QMP %s: %s", command,
                            why[0] ? why : stubdm_strerror(rc));
    }
    stubdm__list_add_tail(&q->cmds, &cmd->hlink);
    stubdm__op_started(&cmd->op, op_out);
    cmd_enqueue(c, cmd, direct);
    return 0;
}

int stubdm_qmp_execute(stubdm_qmp *q, const char *command,
                       const char *args_json, int timeout_ms,
                       stubdm_qmp_reply_fn *cb, void *user, stubdm_op **op_out)
{
    if (q && !cb)
        return stubdm__fail(q->ctx, STUBDM_EINVAL, 0, "QMP: no callback");
    return cmd_start(q, command, args_json, timeout_ms, cb, user, op_out);
}

int stubdm_qmp_execute_sync(stubdm_qmp *q, const char *command,
                            const char *args_json, int timeout_ms,
                            char **reply_json_out)
{
    stubdm_ctx *ctx;
    stubdm_op *op = NULL;
    struct cmd_op *cmd;
    int rc;

    if (reply_json_out)
        *reply_json_out = NULL;
    if (!q)
        return STUBDM_EINVAL;
    ctx = q->ctx;
    rc = stubdm__sync_check(ctx, "stubdm_qmp_execute_sync");
    if (rc)
        return rc;
    rc = cmd_start(q, command, args_json, timeout_ms, NULL, NULL, &op);
    if (rc)
        return rc;
    rc = stubdm__op_wait(op);
    if (!stubdm_op_is_done(op)) {
        stubdm_op_free(op);
        return rc;
    }
    cmd = (struct cmd_op *)op;
    if (cmd->have_reply && reply_json_out) {
        *reply_json_out = stubdm__strdup(cmd->reply.msg->raw);
        if (!*reply_json_out) {
            stubdm_op_free(op);
            return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "QMP reply");
        }
    }
    if (!rc)
        stubdm__clear_error(ctx);
    stubdm_op_free(op);
    return rc;
}

/* Move queued commands onto the wire while slots are free. */
static void conn_pump(struct qmp_conn *c)
{
    while (c->state == C_READY && !stubdm__list_empty(&c->queued) &&
           c->n_live + c->n_tomb < STUBDM_QMP_MAX_IN_FLIGHT) {
        struct cmd_op *cmd = STUBDM_CONTAINER_OF(c->queued.next, struct cmd_op,
                                                 clink);
        if (stubdm__buf_append(&c->out, cmd->bytes.data, cmd->bytes.len)) {
            conn_fail(c, STUBDM_ENOMEM, "out of memory queueing %s",
                      cmd->name);
            return;
        }
        stubdm__list_del(&cmd->clink);
        stubdm__list_add_tail(&c->inflight, &cmd->clink);
        cmd->where = CMD_INFLIGHT;
        c->n_queued--;
        c->n_live++;
        c->stats.commands_sent++;
        stubdm__buf_dispose(&cmd->bytes);
    }
}

/* ---- Opening ------------------------------------------------------------ */

static void open_stop(stubdm_op *op)
{
    struct open_op *o = (struct open_op *)op;
    struct qmp_conn *c = o->conn;

    if (c)
        stubdm__timer_stop(c->ctx, &o->deadline);
    stubdm__list_del(&o->link);
    if (o->q && o->q->open == o) {
        o->q->open = NULL;
        /* op_complete sets rc before stop; an owned op freed while
         * pending stops without completing: that is a cancel. */
        if (op->state == STUBDM__OP_PENDING) {
            o->q->open_rc = STUBDM_ECANCELED;
            snprintf(o->q->open_msg, sizeof(o->q->open_msg),
                     "QMP open cancelled");
        } else {
            o->q->open_rc = op->rc;
            snprintf(o->q->open_msg, sizeof(o->q->open_msg), "%s",
                     op->rc ? op->errmsg : "");
        }
    }
    o->q = NULL;
    o->conn = NULL;
    /* The last waiter gone: nobody wants this attempt any more. */
    if (c && c->state != C_READY && c->state != C_DOWN &&
        stubdm__list_empty(&c->opening))
        stubdm__timer_arm(c->ctx, &c->kick, stubdm_now_ms());
}

static const struct stubdm__op_type open_type = {
    .name = "qmp-open",
    .stop = open_stop,
    .destroy = NULL,
};

static void open_on_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct open_op *o = STUBDM_CONTAINER_OF(t, struct open_op, deadline);
    struct qmp_conn *c = o->conn;

    (void)ctx;
    stubdm__op_complete(&o->op, STUBDM_ETIMEDOUT,
                        "QMP connection to stubdomain %u (guest %u): %s after "
                        "%d ms%s%s",
                        c->stubdom, c->guest, state_doing(c->state),
                        o->timeout_ms, c->state == C_LOCKING ? " at " : "",
                        c->state == C_LOCKING ? c->lock_path : "");
}

static void opens_complete(struct qmp_conn *c, int rc, const char *msg)
{
    while (!stubdm__list_empty(&c->opening)) {
        struct open_op *o = STUBDM_CONTAINER_OF(c->opening.next,
                                                struct open_op, link);
        stubdm__op_complete(&o->op, rc, "%s", msg);
    }
}

static int open_op_new(stubdm_qmp *q, stubdm_done_fn *done, void *user,
                       stubdm_op **op_out)
{
    struct open_op *o;
    int rc;

    o = (struct open_op *)stubdm__op_new(q->ctx, &open_type, sizeof(*o), done,
                                         user);
    if (!o)
        return stubdm__fail(q->ctx, STUBDM_ENOMEM, ENOMEM, "QMP open");
    o->q = q;
    o->conn = q->conn;
    o->timeout_ms = q->open_timeout_ms;
    o->started_ms = stubdm_now_ms();
    stubdm__timer_init(&o->deadline, open_on_deadline);
    stubdm__list_init(&o->link);
    rc = stubdm__timer_arm(q->ctx, &o->deadline,
                           o->started_ms + o->timeout_ms);
    if (rc) {
        o->conn = NULL;
        stubdm__op_abandon(&o->op);
        return rc;
    }
    stubdm__list_add_tail(&q->conn->opening, &o->link);
    q->open = o;
    stubdm__op_started(&o->op, op_out);
    return 0;
}

/* ---- connection attempt, chronologically -------------------------------- */

static void conn_try_lock(struct qmp_conn *c);
static void conn_wait_server(struct qmp_conn *c);
static void conn_try_connect(struct qmp_conn *c);

static void conn_begin(struct qmp_conn *c)
{
    c->down_rc = 0;
    c->down_msg[0] = '\0';
    c->state = C_LOCKING;
    conn_try_lock(c);
}

static void conn_try_lock(struct qmp_conn *c)
{
    int rc;

    if (c->lock_mode == STUBDM_QMP_LOCK_NONE) {
        conn_wait_server(c);
        return;
    }
    rc = stubdm__qmplock_try(c->ctx, &c->lock, c->lock_path,
                             c->lock_mode == STUBDM_QMP_LOCK_LIBXL);
    if (rc == 0) {
        conn_wait_server(c);
        return;
    }
    if (rc == STUBDM_EBUSY && (c->lock_mode == STUBDM_QMP_LOCK_WAIT ||
                               c->lock_mode == STUBDM_QMP_LOCK_LIBXL)) {
        stubdm__clear_error(c->ctx);
        stubdm__timer_arm(c->ctx, &c->retry, stubdm_now_ms() + LOCK_RETRY_MS);
        return;
    }
    conn_fail(c, rc, "%s%s", stubdm_ctx_errmsg(c->ctx),
              rc == STUBDM_EBUSY ? " (another process is connected to this "
                                   "stubdomain's QMP)"
                                 : "");
}

static void on_death(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                     enum stubdm__dom_state st, const char *detail)
{
    struct qmp_conn *c = STUBDM_CONTAINER_OF(dw, struct qmp_conn, death);

    (void)ctx;
    (void)st;
    conn_fail(c, STUBDM_EDOMAIN_GONE, "stubdomain %u %s (%s)", c->stubdom,
              detail, state_doing(c->state));
}

/* A decimal number > 0 that fits 32 bits, as libxenvchan expects. */
static bool sane_number(const char *v)
{
    uint32_t n;

    return stubdm__num_parse_u32(v, UINT32_MAX, &n) == 0 && n > 0;
}

static void on_server_node(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                           const char *path)
{
    struct qmp_conn *c = STUBDM_CONTAINER_OF(w, struct qmp_conn, server_watch);
    char p[128], *ring = NULL, *evtchn = NULL;
    int rc1, rc2;

    (void)path;
    if (c->state != C_WAIT_SERVER)
        return;
    snprintf(p, sizeof(p), "%s/ring-ref", c->vchan_path);
    rc1 = stubdm__xs_read(ctx, 0, p, XS_VALUE_MAX, &ring, NULL);
    snprintf(p, sizeof(p), "%s/event-channel", c->vchan_path);
    rc2 = stubdm__xs_read(ctx, 0, p, XS_VALUE_MAX, &evtchn, NULL);
    stubdm__clear_error(ctx);
    if (rc1 == 0 && rc2 == 0 && sane_number(ring) && sane_number(evtchn)) {
        LOG_DEBUG(ctx, MOD,
                  "stubdomain %u: QMP server ready (ring-ref %s, "
                  "event-channel %s)",
                  c->stubdom, ring, evtchn);
        free(ring);
        free(evtchn);
        stubdm__xswatch_stop(ctx, &c->server_watch);
        c->state = C_CONNECTING;
        conn_try_connect(c);
        return;
    }
    if ((rc1 == 0 && !sane_number(ring)) || (rc2 == 0 && !sane_number(evtchn)))
        LOG_DEBUG(ctx, MOD, "%s: ignoring malformed ring-ref/event-channel",
                  c->vchan_path);
    free(ring);
    free(evtchn);
}

static void conn_wait_server(struct qmp_conn *c)
{
    enum stubdm__dom_state st;
    char detail[160];
    int rc;

    c->state = C_WAIT_SERVER;
    rc = stubdm__domwatch_start(c->ctx, &c->death, c->stubdom, &st, detail,
                                sizeof(detail));
    if (rc) {
        conn_fail(c, rc, "%s", stubdm_ctx_errmsg(c->ctx));
        return;
    }
    if (st != STUBDM__DOM_RUNNING) {
        conn_fail(c, STUBDM_EDOMAIN_GONE, "stubdomain %u %s (%s)", c->stubdom,
                  detail, state_doing(c->state));
        return;
    }
    /* Fires once at once, then on every change below the directory. */
    rc = stubdm__xswatch_start(c->ctx, &c->server_watch, c->vchan_path);
    if (rc)
        conn_fail(c, rc, "%s", stubdm_ctx_errmsg(c->ctx));
}

static void on_conn_fd(stubdm_ctx *ctx, struct stubdm__fd *w, short revents);

static void conn_try_connect(struct qmp_conn *c)
{
    int rc;

    if (c->kind == STUBDM__QMPT_VCHAN)
        rc = stubdm__qmpt_connect_vchan(c->ctx, &c->t, c->stubdom,
                                        c->vchan_path);
    else
        rc = stubdm__qmpt_connect_unix(c->ctx, &c->t, c->sim_path);
    if (rc == STUBDM_ENOENT) {
        /* ring-ref is written, the listener not there yet: retry. */
        stubdm__clear_error(c->ctx);
        stubdm__timer_arm(c->ctx, &c->retry,
                          stubdm_now_ms() + CONNECT_RETRY_MS);
        return;
    }
    if (rc) {
        conn_fail(c, rc, "%s", stubdm_ctx_errmsg(c->ctx));
        return;
    }
    rc = stubdm__qmp_wire_init(&c->wire, &c->lim, true);
    if (rc) {
        conn_fail(c, rc, "QMP wire: out of memory");
        return;
    }
    c->wire_live = true;
    c->state = C_GREETING;
    stubdm__buf_consume(&c->out, c->out.len);
    /* Qubes' marker: the server drops whatever it held for an earlier
     * client and reconnects to QEMU, which then greets us afresh. */
    if (c->marker && stubdm__buf_append(&c->out, "\x01", 1)) {
        conn_fail(c, STUBDM_ENOMEM, "out of memory");
        return;
    }
    rc = stubdm__fd_watch(c->ctx, &c->fdw, c->t.fd,
                          stubdm__qmpt_events(&c->t, c->out.len > 0));
    if (rc) {
        conn_fail(c, rc, "%s", stubdm_ctx_errmsg(c->ctx));
        return;
    }
    LOG_DEBUG(c->ctx, MOD, "stubdomain %u: connected over %s", c->stubdom,
              stubdm__qmpt_name(&c->t));
    conn_flush(c);
}

static void on_retry(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct qmp_conn *c = STUBDM_CONTAINER_OF(t, struct qmp_conn, retry);

    (void)ctx;
    if (c->state == C_LOCKING)
        conn_try_lock(c);
    else if (c->state == C_CONNECTING)
        conn_try_connect(c);
}

/* ---- I/O ---------------------------------------------------------------- */

static void conn_update_events(struct qmp_conn *c)
{
    short ev = stubdm__qmpt_events(&c->t, c->out.len > 0);

    /* Refused by the application's loop: the output would never drain. */
    if (stubdm__fd_active(&c->fdw) && ev != c->fdw.events &&
        stubdm__fd_watch(c->ctx, &c->fdw, c->t.fd, ev))
        conn_fail(c, STUBDM_EFAIL, "%s", c->ctx->errmsg);
}

static void conn_flush(struct qmp_conn *c)
{
    while (c->out.len && c->t.fd >= 0 && c->state >= C_GREETING) {
        ssize_t n = stubdm__qmpt_write(&c->t, c->out.data, c->out.len);
        if (n == STUBDM__QMPT_ERR) {
            int err = errno;
            conn_fail(c, STUBDM_EVCHAN, "writing to the %s: %s",
                      stubdm__qmpt_name(&c->t), strerror(err));
            return;
        }
        if (n == 0)
            break;
        c->stats.bytes_out += (uint64_t)n;
        stubdm__buf_consume(&c->out, (size_t)n);
    }
    conn_update_events(c);
}

static bool tomb_take(struct qmp_conn *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_tomb; i++) {
        if (c->tomb[i] == id) {
            c->n_tomb--;
            c->tomb[i] = c->tomb[c->n_tomb];
            c->tomb_timedout[i] = c->tomb_timedout[c->n_tomb];
            return true;
        }
    }
    return false;
}

static struct cmd_op *inflight_find(struct qmp_conn *c, uint64_t id)
{
    for (struct stubdm__list *n = c->inflight.next; n != &c->inflight;
         n = n->next) {
        struct cmd_op *cmd = STUBDM_CONTAINER_OF(n, struct cmd_op, clink);
        if (cmd->id == id)
            return cmd;
    }
    return NULL;
}

/* QEMU's error class and description as they may go into a message or a
 * log line: printable and bounded (they are the peer's text: a newline
 * would forge a log line, an escape sequence reach a terminal). */
struct peer_error {
    char cls[64], desc[256];
};

static void peer_error(struct peer_error *e, const struct stubdm__qmp_msg *m)
{
    stubdm__printable_str(e->cls, sizeof(e->cls), m->error_class);
    stubdm__printable_str(e->desc, sizeof(e->desc), m->error_desc);
}

/* A reply for cmd: hand it the message (ownership) and complete it. */
static void cmd_answer(struct qmp_conn *c, struct cmd_op *cmd,
                       struct stubdm__qmp_msg *m)
{
    stubdm__list_del(&cmd->clink);
    cmd->where = CMD_GONE;
    c->n_live--;
    c->stats.replies++;
    cmd->reply.msg = m;
    cmd->have_reply = true;
    if (m->type == STUBDM__QMP_RETURN) {
        stubdm__op_complete(&cmd->op, 0, NULL);
    } else {
        struct peer_error e;
        peer_error(&e, m);
        stubdm__op_complete(&cmd->op, STUBDM_EQMP, "QMP %s: %s: %s", cmd->name,
                            e.cls, e.desc);
    }
}

static void deliver_event(struct qmp_conn *c, const struct stubdm__qmp_msg *m)
{
    struct stubdm_qmp_event ev = {.msg = m, .data_json = NULL, .owned = NULL};

    c->stats.events++;
    /* Nothing is unlinked while busy (only marked), so the lists are
     * stable; subscriptions added meanwhile go to the tail. */
    for (struct stubdm__list *hn = c->handles.next; hn != &c->handles;
         hn = hn->next) {
        stubdm_qmp *q = STUBDM_CONTAINER_OF(hn, stubdm_qmp, link);
        for (struct stubdm__list *sn = q->subs.next; sn != &q->subs;
             sn = sn->next) {
            stubdm_qmp_sub *s = STUBDM_CONTAINER_OF(sn, stubdm_qmp_sub, link);
            if (q->closed || s->dead ||
                (s->name && strcmp(s->name, m->event) != 0))
                continue;
            stubdm__callback_enter(c->ctx);
            s->fn(q, &ev, s->user);
            if (!stubdm__callback_leave(c->ctx))
                goto out; /* the ctx is being freed */
        }
        /* After the callbacks, which may have disabled it. */
        if (q->evq && !q->closed)
            stubdm__qmp_evq_push(q->evq, m, &c->stats);
    }
out:
    free(ev.data_json);
}

/* The greeting: negotiation starts (qmp_capabilities, with oob if both
 * sides want it).  False: the connection failed. */
static bool conn_greeting(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    stubdm_ctx *ctx = c->ctx;

    if (c->state != C_GREETING) {
        conn_msg_free(c, m);
        conn_fail(c, STUBDM_EPROTO,
                  "QEMU in stubdomain %u sent a second greeting", c->stubdom);
        return false;
    }
    c->greeting = m;
    c->oob_enabled = c->want_oob && m->oob;
    c->caps_id = ++c->next_id;
    c->stats.bytes_discarded += stubdm__qmp_wire_discarded(&c->wire);
    if (stubdm__qmp_wire_discarded(&c->wire))
        LOG_INFO(ctx, MOD,
                 "stubdomain %u: discarded %" PRIu64
                 " stale bytes before QEMU's greeting",
                 c->stubdom, stubdm__qmp_wire_discarded(&c->wire));
    LOG_DEBUG(ctx, MOD, "stubdomain %u: QEMU %u.%u.%u%s", c->stubdom,
              m->qemu_major, m->qemu_minor, m->qemu_micro,
              c->oob_enabled ? ", enabling oob" : "");
    if (stubdm__qmp_encode_capabilities(&c->out, c->caps_id, c->oob_enabled)) {
        conn_fail(c, STUBDM_ENOMEM, "out of memory");
        return false;
    }
    c->state = C_NEGOTIATING;
    return true;
}

static bool conn_event(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    const unsigned gen = c->wire_gen;

    if (c->state != C_READY) {
        char name[64];
        LOG_DEBUG(c->ctx, MOD,
                  "stubdomain %u: event %s before negotiation "
                  "ignored",
                  c->stubdom,
                  stubdm__printable_str(name, sizeof(name), m->event));
    } else {
        deliver_event(c, m);
    }
    /* A callback may have replaced the wire: its parser did not make
     * this message. */
    conn_msg_free(c->wire_gen == gen ? c : NULL, m);
    return true;
}

/* QEMU's error to qmp_capabilities: the connection fails (returns false). */
static bool conn_caps_refused(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    struct peer_error e;

    peer_error(&e, m);
    conn_fail(c, STUBDM_EQMP,
              "QEMU in stubdomain %u refused qmp_capabilities: %s: %s",
              c->stubdom, e.cls, e.desc);
    conn_msg_free(c, m);
    return false;
}

/* While negotiating: whether m answers qmp_capabilities (then *ok says
 * whether to go on processing). */
static bool conn_negotiation_reply(struct qmp_conn *c,
                                   struct stubdm__qmp_msg *m, bool *ok)
{
    if (m->id_kind == STUBDM__QMP_ID_NUMBER && m->id == c->caps_id) {
        if (m->type == STUBDM__QMP_ERROR) {
            *ok = conn_caps_refused(c, m);
            return true;
        }
        conn_msg_free(c, m);
        c->state = C_READY;
        c->stats.connects++;
        LOG_DEBUG(c->ctx, MOD, "stubdomain %u: QMP ready", c->stubdom);
        opens_complete(c, 0, "");
        conn_pump(c);
        *ok = true;
        return true;
    }
    /* An id-less error here is QEMU refusing our negotiation outright. */
    if (m->id_kind == STUBDM__QMP_ID_NONE && m->type == STUBDM__QMP_ERROR) {
        *ok = conn_caps_refused(c, m);
        return true;
    }
    return false;
}

/* An error without id once ready: QEMU could not parse or dispatch one of
 * our commands and could not tell which.  Unambiguous only with one
 * command on the wire; otherwise the connection fails (returns false). */
static bool conn_idless_error(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    if (c->n_live + c->n_tomb == 1) {
        if (c->n_live == 1) {
            struct cmd_op *cmd = STUBDM_CONTAINER_OF(c->inflight.next,
                                                     struct cmd_op, clink);
            cmd_answer(c, cmd, m);
        } else {
            c->n_tomb = 0;
            c->stats.replies_dropped++;
            conn_msg_free(c, m);
        }
        conn_pump(c);
        return true;
    }
    struct peer_error e;
    peer_error(&e, m);
    conn_fail(c, STUBDM_EPROTO,
              "QEMU in stubdomain %u sent an error without id with %zu "
              "commands in flight (%s: %s); cannot tell which failed",
              c->stubdom, c->n_live + c->n_tomb, e.cls, e.desc);
    conn_msg_free(c, m);
    return false;
}

/* A reply nobody waits for: counted, logged, freed. */
static void conn_drop_unmatched(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    stubdm_ctx *ctx = c->ctx;

    c->stats.replies_dropped++;
    if (m->id_kind == STUBDM__QMP_ID_NUMBER)
        LOG_WARN(ctx, MOD,
                 "stubdomain %u: dropped a reply with unknown id %" PRIu64,
                 c->stubdom, m->id);
    else if (stubdm__log_enabled(ctx, STUBDM_LOG_WARN)) {
        char raw[121];
        stubdm__log(ctx, STUBDM_LOG_WARN, 0, MOD,
                    "stubdomain %u: dropped a %s %s id: %s", c->stubdom,
                    stubdm__qmp_msg_type_name(m->type),
                    m->id_kind == STUBDM__QMP_ID_NONE ? "without"
                                                      : "with a foreign",
                    stubdm__printable_str(raw, sizeof(raw), m->raw));
    }
    conn_msg_free(c, m);
}

/* A return or an error: matched to its command by id, to qmp_capabilities
 * while negotiating, or dropped.  False: the connection failed. */
static inline bool conn_reply(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    struct cmd_op *cmd;
    bool ok;

    if (c->state == C_NEGOTIATING && conn_negotiation_reply(c, m, &ok))
        return ok;
    if (m->id_kind == STUBDM__QMP_ID_NUMBER) {
        if ((cmd = inflight_find(c, m->id)) != NULL) {
            cmd_answer(c, cmd, m);
            conn_pump(c);
            return true;
        }
        if (tomb_take(c, m->id)) {
            LOG_DEBUG(c->ctx, MOD,
                      "stubdomain %u: late reply to abandoned "
                      "id %" PRIu64 " dropped",
                      c->stubdom, m->id);
            c->stats.replies_dropped++;
            conn_msg_free(c, m);
            conn_pump(c);
            return true;
        }
    } else if (m->id_kind == STUBDM__QMP_ID_NONE &&
               m->type == STUBDM__QMP_ERROR && c->state == C_READY) {
        return conn_idless_error(c, m);
    }
    conn_drop_unmatched(c, m);
    return true;
}

/* Handle one message; false: stop processing (connection failed). */
static bool conn_handle(struct qmp_conn *c, struct stubdm__qmp_msg *m)
{
    switch (m->type) {
    case STUBDM__QMP_GREETING:
        return conn_greeting(c, m);
    case STUBDM__QMP_EVENT:
        return conn_event(c, m);
    case STUBDM__QMP_RETURN:
    case STUBDM__QMP_ERROR:
        break;
    }
    return conn_reply(c, m);
}

/* Take every queued message of wire generation gen; false when the
 * connection went down or was replaced, or the ctx is being freed. */
static bool conn_drain_wire(struct qmp_conn *c, unsigned gen)
{
    for (;;) {
        struct stubdm__qmp_msg *m = NULL;
        int rc = stubdm__qmp_wire_next(&c->wire, &m);
        if (rc == 1)
            return true;
        if (rc < 0) {
            conn_fail(c, rc == STUBDM_ENOMEM ? rc : STUBDM_EPROTO,
                      "malformed data from QEMU in stubdomain %u: %s",
                      c->stubdom, stubdm__qmp_wire_errmsg(&c->wire));
            return false;
        }
        if (!conn_handle(c, m))
            return false;
        if (c->ctx->free_requested || c->wire_gen != gen)
            return false;
    }
}

static void conn_read(struct qmp_conn *c)
{
    size_t budget = READ_BUDGET;
    char *buf = c->rbuf;
    const unsigned gen = c->wire_gen;

    c->read_more = false;
    /* On the heap, not on the stack: callees' frames would sit 64 KiB
     * below their callers', one more page touched per dispatch. */
    if (!buf && !(buf = c->rbuf = stubdm__malloc(READ_CHUNK))) {
        conn_fail(c, STUBDM_ENOMEM, "out of memory reading from QEMU");
        return;
    }
    while (c->state >= C_GREETING && c->wire_gen == gen) {
        ssize_t n;
        size_t off = 0;

        if (!budget) {
            /* Yield; a zero-delay timer comes back for the rest (a vchan
             * will not signal again for data already in the ring). */
            c->read_more = true;
            stubdm__timer_arm(c->ctx, &c->kick, stubdm_now_ms());
            return;
        }
        n = stubdm__qmpt_read(&c->t, buf,
                              READ_CHUNK < budget ? READ_CHUNK : budget);
        if (n == STUBDM__QMPT_AGAIN)
            return;
        if (n == STUBDM__QMPT_EOF || n == STUBDM__QMPT_ERR) {
            int err = n == STUBDM__QMPT_ERR ? errno : 0;
            if (stubdm__qmp_wire_eof(&c->wire)) {
                conn_fail(c, STUBDM_EVCHAN, "the peer closed the %s: %s",
                          stubdm__qmpt_name(&c->t),
                          stubdm__qmp_wire_errmsg(&c->wire));
                return;
            }
            conn_fail(c, STUBDM_EVCHAN, "%s%s%s%s",
                      err ? "reading the " : "the peer closed the ",
                      stubdm__qmpt_name(&c->t), err ? ": " : "",
                      err ? strerror(err) : "");
            return;
        }
        budget -= (size_t)n;
        c->stats.bytes_in += (uint64_t)n;
        /* A short read drained the socket: poll (level-triggered) reports
         * the next bytes, so spare the recv that would say EAGAIN.  A
         * vchan is drained to the end (reads there are no syscalls). */
        bool drained = c->t.kind == STUBDM__QMPT_UNIX &&
                       (size_t)n < READ_CHUNK;
        while (off < (size_t)n) {
            size_t used = 0;
            int rc = stubdm__qmp_wire_feed(&c->wire, buf + off,
                                           (size_t)n - off, &used);
            off += used;
            if (!conn_drain_wire(c, gen))
                return;
            if (rc < 0) {
                conn_fail(c, rc == STUBDM_ENOMEM ? rc : STUBDM_EPROTO,
                          "malformed data from QEMU in stubdomain %u: %s",
                          c->stubdom, stubdm__qmp_wire_errmsg(&c->wire));
                return;
            }
        }
        if (drained)
            return;
    }
}

static void conn_io(struct qmp_conn *c)
{
    c->busy++;
    conn_read(c);
    if (!c->ctx->free_requested) {
        conn_flush(c);
    }
    c->busy--;
    if (!c->busy && !c->ctx->free_requested && c->reap_needed)
        reap(c);
}

static void on_conn_fd(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    struct qmp_conn *c = STUBDM_CONTAINER_OF(w, struct qmp_conn, fdw);

    (void)ctx;
    if (revents & (POLLIN | POLLERR | POLLHUP))
        stubdm__qmpt_ack(&c->t);
    conn_io(c);
}

static void on_kick(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct qmp_conn *c = STUBDM_CONTAINER_OF(t, struct qmp_conn, kick);

    (void)ctx;
    /* Every open gave up: abandon the attempt (nothing to report). */
    if (c->state != C_READY && c->state != C_DOWN &&
        stubdm__list_empty(&c->opening)) {
        conn_fail(c, STUBDM_ECANCELED, "connection attempt abandoned");
        return;
    }
    size_t timedout = 0;
    for (size_t i = 0; i < c->n_tomb; i++)
        timedout += c->tomb_timedout[i];
    if (c->state == C_READY && timedout >= STUBDM_QMP_MAX_IN_FLIGHT) {
        conn_fail(c, STUBDM_ETIMEDOUT,
                  "QMP connection to stubdomain %u wedged: %d commands timed "
                  "out on the wire without an answer",
                  c->stubdom, STUBDM_QMP_MAX_IN_FLIGHT);
        return;
    }
    conn_pump(c);
    if (c->read_more)
        conn_io(c);
    else
        conn_flush(c);
}

/* ---- Failure and teardown ----------------------------------------------- */

/* Release the transport, watches and timers of a connection attempt. */
static void conn_release_io(struct qmp_conn *c)
{
    stubdm__fd_stop(c->ctx, &c->fdw);
    stubdm__qmpt_close(&c->t, c->ctx->postfork);
    if (c->wire_live)
        stubdm__qmp_wire_dispose(&c->wire);
    c->wire_live = false;
    c->wire_gen++;
    stubdm__xswatch_stop(c->ctx, &c->server_watch);
    stubdm__domwatch_stop(c->ctx, &c->death);
    stubdm__timer_stop(c->ctx, &c->retry);
    stubdm__timer_stop(c->ctx, &c->kick);
    stubdm__qmplock_release(&c->lock, c->ctx->postfork);
    stubdm__buf_consume(&c->out, c->out.len);
    stubdm__qmp_msg_free(c->greeting);
    c->greeting = NULL;
    c->oob_enabled = false;
    c->n_tomb = 0;
    c->read_more = false;
}

/* Every handle's loss watchers (stubdm_qmp_watch_lost), with the cause. */
static void lost_notify(struct qmp_conn *c, int rc)
{
    for (struct stubdm__list *hn = c->handles.next; hn != &c->handles;
         hn = hn->next) {
        stubdm_qmp *q = STUBDM_CONTAINER_OF(hn, stubdm_qmp, link);
        while (!q->closed && !stubdm__list_empty(&q->lost))
            stubdm__op_complete(
                &STUBDM_CONTAINER_OF(q->lost.next, struct lost_op, link)->op,
                rc, "%s", c->down_msg);
    }
}

static void conn_fail(struct qmp_conn *c, int rc, const char *fmt, ...)
{
    bool was_ready = c->state == C_READY;
    char why[STUBDM_ERRMSG_MAX - 96];
    va_list ap;

    if (c->state == C_DOWN)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    conn_release_io(c);
    c->state = C_DOWN;
    c->down_rc = rc;
    if (was_ready)
        snprintf(c->down_msg, sizeof(c->down_msg),
                 "QMP connection to stubdomain %u lost: %s", c->stubdom, why);
    else
        snprintf(c->down_msg, sizeof(c->down_msg),
                 "QMP connection to stubdomain %u (guest %u) failed: %s",
                 c->stubdom, c->guest, why);
    if (rc != STUBDM_ECANCELED)
        LOG_INFO(c->ctx, MOD, "%s", c->down_msg);
    opens_complete(c, rc, c->down_msg);
    if (was_ready)
        lost_notify(c, rc);
    /* Every pending command fails once.  A lost channel is EVCHAN whatever
     * the cause, except the causes a caller acts on differently. */
    if (rc != STUBDM_EPROTO && rc != STUBDM_EDOMAIN_GONE)
        rc = STUBDM_EVCHAN;
    while (!stubdm__list_empty(&c->inflight)) {
        struct cmd_op *cmd = STUBDM_CONTAINER_OF(c->inflight.next,
                                                 struct cmd_op, clink);
        stubdm__list_del(&cmd->clink);
        cmd->where = CMD_GONE;
        c->n_live--;
        stubdm__op_complete(&cmd->op, rc, "QMP %s: %s", cmd->name,
                            c->down_msg);
    }
    while (!stubdm__list_empty(&c->queued)) {
        struct cmd_op *cmd = STUBDM_CONTAINER_OF(c->queued.next, struct cmd_op,
                                                 clink);
        stubdm__list_del(&cmd->clink);
        cmd->where = CMD_GONE;
        c->n_queued--;
        stubdm__op_complete(&cmd->op, rc, "QMP %s: %s", cmd->name,
                            c->down_msg);
    }
}

static void sub_free(stubdm_qmp_sub *s)
{
    stubdm__list_del(&s->link);
    free(s->name);
    free(s);
}

/* Detach a handle's ops from it and free it (ctx teardown or close). */
static void handle_free(stubdm_qmp *q)
{
    while (!stubdm__list_empty(&q->lost)) {
        struct lost_op *l = STUBDM_CONTAINER_OF(q->lost.next, struct lost_op,
                                                link);
        stubdm__list_del(&l->link);
        l->q = NULL;
    }
    while (!stubdm__list_empty(&q->subs))
        sub_free(STUBDM_CONTAINER_OF(q->subs.next, stubdm_qmp_sub, link));
    stubdm__qmp_evq_free(q->evq);
    stubdm__list_del(&q->link);
    free(q);
}

/* Free a connection now: ctx teardown (ops are being dropped). */
static void conn_destroy(struct qmp_conn *c)
{
    while (!stubdm__list_empty(&c->opening)) {
        struct open_op *o = STUBDM_CONTAINER_OF(c->opening.next,
                                                struct open_op, link);
        stubdm__timer_stop(c->ctx, &o->deadline);
        stubdm__list_del(&o->link);
        o->conn = NULL;
        o->q = NULL;
    }
    while (!stubdm__list_empty(&c->handles)) {
        stubdm_qmp *q = STUBDM_CONTAINER_OF(c->handles.next, stubdm_qmp, link);
        while (!stubdm__list_empty(&q->cmds)) {
            struct cmd_op *cmd = STUBDM_CONTAINER_OF(q->cmds.next,
                                                     struct cmd_op, hlink);
            stubdm__timer_stop(c->ctx, &cmd->deadline);
            stubdm__list_del(&cmd->hlink);
            stubdm__list_del(&cmd->clink);
            cmd->where = CMD_GONE;
            cmd->conn = NULL;
            cmd->q = NULL;
        }
        handle_free(q);
    }
    conn_release_io(c);
    stubdm__buf_dispose(&c->out);
    free(c->rbuf);
    stubdm__list_del(&c->link);
    free(c->sim_path);
    free(c->lock_path);
    free(c);
}

/* The last handle went: close the connection (outside of its read loop). */
static void conn_maybe_free(struct qmp_conn *c)
{
    if (c->busy || !stubdm__list_empty(&c->handles))
        return;
    conn_fail(c, STUBDM_ECANCELED, "closed");
    conn_destroy(c);
}

static void reap(struct qmp_conn *c)
{
    c->reap_needed = false;
    for (struct stubdm__list *hn = c->handles.next, *hnext; hn != &c->handles;
         hn = hnext) {
        stubdm_qmp *q = STUBDM_CONTAINER_OF(hn, stubdm_qmp, link);
        hnext = hn->next;
        for (struct stubdm__list *sn = q->subs.next, *snext; sn != &q->subs;
             sn = snext) {
            stubdm_qmp_sub *s = STUBDM_CONTAINER_OF(sn, stubdm_qmp_sub, link);
            snext = sn->next;
            if (s->dead)
                sub_free(s);
        }
        if (q->closed)
            handle_free(q);
    }
    conn_maybe_free(c);
}

/* ---- Handles ------------------------------------------------------------ */

static int conn_new(stubdm_ctx *ctx, uint32_t stubdom, uint32_t guest,
                    const stubdm_qmp_opts *o, struct qmp_conn **out)
{
    struct qmp_conn *c = stubdm__calloc(1, sizeof(*c));
    stubdm_qmp_transport tr = o->transport;
    char *simdir = NULL;
    int rc;

    if (!c)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "QMP connection");
    c->ctx = ctx;
    c->stubdom = stubdom;
    c->guest = guest;
    stubdm__list_init(&c->link);
    stubdm__list_init(&c->handles);
    stubdm__list_init(&c->opening);
    stubdm__list_init(&c->queued);
    stubdm__list_init(&c->inflight);
    stubdm__qmplock_init(&c->lock);
    stubdm__timer_init(&c->retry, on_retry);
    stubdm__timer_init(&c->kick, on_kick);
    stubdm__xswatch_init(&c->server_watch, on_server_node);
    stubdm__domwatch_init(&c->death, on_death);
    stubdm__qmpt_init(&c->t);
    stubdm__fd_init(&c->fdw, on_conn_fd);
    stubdm__buf_init(&c->out, 0);
    c->marker = o->marker;
    c->want_oob = o->oob;
    c->lock_mode = o->lock_mode;
    c->max_queued = o->max_queued;
    stubdm__qmp_limits_default(&c->lim);
    c->lim.max_message = o->max_message;
    c->lim.max_depth = o->max_depth;
    c->lim.max_string = o->max_message;
    snprintf(c->dm_path, sizeof(c->dm_path),
             "/local/domain/%u/device-model/%u", stubdom, guest);
    snprintf(c->vchan_path, sizeof(c->vchan_path), "%s/qmp-vchan", c->dm_path);

    if (tr == STUBDM_QMP_TRANSPORT_AUTO)
        tr = stubdm__xc_present(ctx) ? STUBDM_QMP_TRANSPORT_VCHAN
                                     : STUBDM_QMP_TRANSPORT_SIMULATED;
    c->kind = tr == STUBDM_QMP_TRANSPORT_VCHAN ? STUBDM__QMPT_VCHAN
                                               : STUBDM__QMPT_UNIX;
    if (c->kind == STUBDM__QMPT_UNIX) {
        char path[128];
        simdir = o->sim_dir ? stubdm__strdup(o->sim_dir)
                            : stubdm__qmpt_default_simdir();
        if (!simdir) {
            rc = stubdm__fail(
                ctx, STUBDM_EINVAL, 0,
                "QMP on the simulated host needs a simulation "
                "directory: set STUBDM_SIM_DIR or XENSTORED_PATH, "
                "or stubdm_qmp_opts_set_sim_dir()");
            goto fail;
        }
        if (stubdm__qmpt_sim_path(simdir, stubdom, guest, path,
                                  sizeof(path))) {
            rc = stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                              "QMP socket path under %s is too long", simdir);
            goto fail;
        }
        c->sim_path = stubdm__strdup(path);
    }
    if (o->lock_path)
        c->lock_path = stubdm__strdup(o->lock_path);
    else if (o->libxl_uuid)
        c->lock_path = stubdm__qmplock_libxl_path(o->libxl_dir, guest,
                                                  o->libxl_uuid);
    else
        c->lock_path = stubdm__qmplock_default_path(c->kind ==
                                                        STUBDM__QMPT_UNIX,
                                                    simdir, stubdom, guest);
    if (!c->lock_path || (c->kind == STUBDM__QMPT_UNIX && !c->sim_path)) {
        rc = stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "QMP connection");
        goto fail;
    }
    free(simdir);
    stubdm__list_add_tail(&ctx->qmp_conns, &c->link);
    *out = c;
    return 0;

fail:
    free(simdir);
    free(c->sim_path);
    free(c->lock_path);
    free(c);
    return rc;
}

int stubdm_qmp_open(stubdm_ctx *ctx, uint32_t stubdom, uint32_t guest,
                    const stubdm_qmp_opts *opts, stubdm_done_fn *done,
                    void *user, stubdm_qmp **q_out, stubdm_op **op_out)
{
    stubdm_qmp_opts *defaults = NULL;
    struct qmp_conn *c;
    stubdm_qmp *q;
    bool new_conn = false;
    int rc;

    if (q_out)
        *q_out = NULL;
    if (op_out)
        *op_out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!q_out)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "QMP open: q_out is NULL");
    if (!stubdm__domid_ok(stubdom) || !stubdm__domid_ok(guest) || stubdom == 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "QMP open: invalid domids (stubdomain %u, guest "
                            "%u)",
                            stubdom, guest);
    if (!opts) {
        rc = stubdm_qmp_opts_new(&defaults);
        if (rc)
            return stubdm__fail(ctx, rc, ENOMEM, "QMP options");
        opts = defaults;
    }
    c = conn_find(ctx, stubdom, guest);
    if (!c) {
        rc = conn_new(ctx, stubdom, guest, opts, &c);
        if (rc) {
            stubdm_qmp_opts_free(defaults);
            return rc;
        }
        new_conn = true;
    }
    q = stubdm__calloc(1, sizeof(*q));
    if (!q) {
        rc = stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "QMP handle");
        goto fail;
    }
    q->ctx = ctx;
    q->conn = c;
    q->open_timeout_ms = opts->open_timeout_ms;
    stubdm__list_init(&q->cmds);
    stubdm__list_init(&q->subs);
    stubdm__list_init(&q->lost);
    stubdm__list_add_tail(&c->handles, &q->link);
    rc = open_op_new(q, done, user, op_out);
    if (rc) {
        stubdm__list_del(&q->link);
        free(q);
        goto fail;
    }
    stubdm_qmp_opts_free(defaults);
    *q_out = q;
    if (c->state == C_READY)
        stubdm__op_complete(&q->open->op, 0, NULL);
    else if (c->state == C_DOWN)
        conn_begin(c); /* may complete the open (queued, not called) */
    return 0;

fail:
    stubdm_qmp_opts_free(defaults);
    if (new_conn)
        conn_destroy(c);
    return rc;
}

int stubdm_qmp_open_sync(stubdm_ctx *ctx, uint32_t stubdom, uint32_t guest,
                         const stubdm_qmp_opts *opts, stubdm_qmp **q_out)
{
    stubdm_qmp *q = NULL;
    int rc, result = STUBDM_ESTATE;
    char msg[STUBDM_ERRMSG_MAX];

    if (q_out)
        *q_out = NULL;
    if (!ctx || !q_out)
        return STUBDM_EINVAL;
    rc = stubdm__sync_check(ctx, "stubdm_qmp_open_sync");
    if (rc)
        return rc;
    rc = stubdm_qmp_open(ctx, stubdom, guest, opts, NULL, NULL, &q, NULL);
    if (rc)
        return rc;
    /* The open op is floating; watch its handle instead. */
    while (q->open) {
        if (stubdm__interrupt_take(ctx)) {
            stubdm_qmp_free(q);
            return stubdm__fail(ctx, STUBDM_ECANCELED, 0,
                                "stubdm_qmp_open_sync interrupted");
        }
        rc = stubdm_ctx_run_once(ctx, -1);
        if (rc) {
            stubdm_qmp_free(q);
            return rc;
        }
    }
    /* The result and message come from the handle, not the ctx: running
     * the loop once more (or the close below) may fire other timers of the
     * connection that overwrite the ctx's message (seen under valgrind:
     * the lock retry timer cleared it). */
    result = q->open_rc;
    if (result) {
        snprintf(msg, sizeof(msg), "%s", q->open_msg);
        stubdm_qmp_free(q);
        return stubdm__fail(ctx, result, 0, "%s", msg);
    }
    stubdm__clear_error(ctx);
    *q_out = q;
    return 0;
}

int stubdm_qmp_reconnect(stubdm_qmp *q, stubdm_done_fn *done, void *user,
                         stubdm_op **op_out)
{
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!q || q->closed)
        return STUBDM_EINVAL;
    if (q->conn->state != C_DOWN)
        return stubdm__fail(q->ctx, STUBDM_ESTATE, 0,
                            "QMP reconnect: the connection to stubdomain %u "
                            "is %s",
                            q->conn->stubdom,
                            q->conn->state == C_READY ? "ready"
                                                      : "connecting");
    if (q->open)
        stubdm__op_complete(&q->open->op, STUBDM_ECANCELED, "superseded");
    rc = open_op_new(q, done, user, op_out);
    if (rc)
        return rc;
    conn_begin(q->conn);
    return 0;
}

static void lost_stop(stubdm_op *op)
{
    struct lost_op *l = (struct lost_op *)op;

    stubdm__list_del(&l->link);
    l->q = NULL;
}

static const struct stubdm__op_type lost_type = {
    .name = "qmp-watch-lost",
    .stop = lost_stop,
    .destroy = NULL,
};

int stubdm_qmp_watch_lost(stubdm_qmp *q, stubdm_done_fn *done, void *user,
                          stubdm_op **op_out)
{
    struct lost_op *l;

    if (op_out)
        *op_out = NULL;
    if (!q || q->closed)
        return STUBDM_EINVAL;
    l = (struct lost_op *)stubdm__op_new(q->ctx, &lost_type, sizeof(*l), done,
                                         user);
    if (!l)
        return stubdm__fail(q->ctx, STUBDM_ENOMEM, ENOMEM, "QMP watch");
    l->q = q;
    stubdm__list_add_tail(&q->lost, &l->link);
    stubdm__op_started(&l->op, op_out);
    return 0;
}

void stubdm_qmp_free(stubdm_qmp *q)
{
    struct qmp_conn *c;

    if (!q || q->closed)
        return;
    c = q->conn;
    if (q->open)
        stubdm__op_complete(&q->open->op, STUBDM_ECANCELED,
                            "QMP handle closed while opening");
    while (!stubdm__list_empty(&q->cmds)) {
        struct cmd_op *cmd = STUBDM_CONTAINER_OF(q->cmds.next, struct cmd_op,
                                                 hlink);
        cmd->q = NULL; /* also for completed ones whose callback is due */
        stubdm__op_complete(&cmd->op, STUBDM_ECANCELED,
                            "QMP %s cancelled: handle closed", cmd->name);
        stubdm__list_del(&cmd->hlink);
    }
    while (!stubdm__list_empty(&q->lost))
        stubdm__op_complete(
            &STUBDM_CONTAINER_OF(q->lost.next, struct lost_op, link)->op,
            STUBDM_ECANCELED, "QMP handle closed");
    if (c->busy) {
        q->closed = true;
        c->reap_needed = true;
        for (struct stubdm__list *sn = q->subs.next; sn != &q->subs;
             sn = sn->next)
            STUBDM_CONTAINER_OF(sn, stubdm_qmp_sub, link)->dead = true;
        return;
    }
    handle_free(q);
    conn_maybe_free(c);
}

int stubdm_qmp_is_ready(const stubdm_qmp *q)
{
    return q && !q->closed && q->conn->state == C_READY;
}

int stubdm_qmp_qemu_version(const stubdm_qmp *q, int *major, int *minor,
                            int *micro)
{
    const struct stubdm__qmp_msg *g;

    if (!q)
        return STUBDM_EINVAL;
    g = q->conn->greeting;
    if (!g)
        return STUBDM_ESTATE;
    if (major)
        *major = (int)(g->qemu_major > INT32_MAX ? INT32_MAX : g->qemu_major);
    if (minor)
        *minor = (int)(g->qemu_minor > INT32_MAX ? INT32_MAX : g->qemu_minor);
    if (micro)
        *micro = (int)(g->qemu_micro > INT32_MAX ? INT32_MAX : g->qemu_micro);
    return 0;
}

int stubdm_qmp_is_oob_enabled(const stubdm_qmp *q)
{
    return q && q->conn->oob_enabled;
}

const char *stubdm_qmp_greeting_json(const stubdm_qmp *q)
{
    return q && q->conn->greeting ? q->conn->greeting->raw : NULL;
}

int stubdm_qmp_get_stats(const stubdm_qmp *q, stubdm_qmp_stats *stats,
                         size_t size)
{
    return stubdm__stats_copy(stats, size, q ? &q->conn->stats : NULL,
                              sizeof(q->conn->stats));
}

int stubdm_qmp_subscribe(stubdm_qmp *q, const char *name,
                         stubdm_qmp_event_fn *fn, void *user,
                         stubdm_qmp_sub **sub_out)
{
    stubdm_qmp_sub *s;

    if (sub_out)
        *sub_out = NULL;
    if (!q || q->closed || !fn)
        return STUBDM_EINVAL;
    s = stubdm__calloc(1, sizeof(*s));
    if (!s)
        return stubdm__fail(q->ctx, STUBDM_ENOMEM, ENOMEM, "subscription");
    if (name && !(s->name = stubdm__strdup(name))) {
        free(s);
        return stubdm__fail(q->ctx, STUBDM_ENOMEM, ENOMEM, "subscription");
    }
    s->q = q;
    s->fn = fn;
    s->user = user;
    stubdm__list_add_tail(&q->subs, &s->link);
    if (sub_out)
        *sub_out = s;
    return 0;
}

void stubdm_qmp_sub_free(stubdm_qmp_sub *s)
{
    if (!s || s->dead)
        return;
    if (s->q->conn->busy) {
        s->dead = true;
        s->q->conn->reap_needed = true;
        return;
    }
    sub_free(s);
}

void stubdm__qmp_domids(const stubdm_qmp *q, uint32_t *stubdom,
                        uint32_t *guest)
{
    *stubdom = q->conn->stubdom;
    *guest = q->conn->guest;
}

/* ---- For the proxy (qmp/proxy.c) ---------------------------------------- */

stubdm_ctx *stubdm__qmp_ctx(const stubdm_qmp *q)
{
    return q->ctx;
}

/* ---- For the event queue (qmp/events.c) --------------------------------- */

struct stubdm__qmp_evq **stubdm__qmp_evq_slot(stubdm_qmp *q)
{
    return q->closed ? NULL : &q->evq;
}
