/*
 * The PV console backend: serves a stubdomain's consoles from the ctx's
 * event loop, with no QEMU in dom0.  docs/consoles.md is the guide.
 *
 * Chronologically, per console:
 *   serve: open the destination (log file, pty) -> backend state InitWait
 *     -> watch the frontend directory and the domain.
 *   frontend published (state Initialised/Connected plus ring-ref and
 *     port; console 0: ring-ref and port, no state) -> map + bind through
 *     the transport -> Connected -> pump.
 *   pump (on every notification, fd readiness and connect): out ring ->
 *     destination fd until the ring is empty or the fd would block; source
 *     fd -> in ring until the ring is full or the fd would block; notify.
 *   frontend Closing -> backend Closing (the frontend then goes Closed).
 *   end (frontend Closed, restore delivered, protocol violation, domain
 *     gone, fd failure, close): Closing -> Closed, unmap, close.
 *
 * No byte is ever copied into a buffer of ours: writev/readv work on the
 * ring's segments directly, so memory per console is constant and the
 * only backpressure mechanism needed is "don't consume / don't read".
 */
#include "console/console.h"
#include "console/ring.h"
#include "console/transport.h"
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "core/num.h"
#include "core/op.h"
#include "qmp/transport.h" /* stubdm__qmpt_default_simdir */
#include "xen/domain.h"
#include "xen/hv.h"
#include "xen/xs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <xen/io/xenbus.h>
#include <xenstore.h>

#define MOD "console"
/* Rounds of the pump per dispatch before yielding to other fds. */
#define PUMP_ROUNDS 32
/* Retry period while the simulated frontend's files are not there yet. */
#define SIM_RETRY_MS 20
/* Bounds on values the frontend writes. */
#define FE_VALUE_MAX 32

enum role {
    ROLE_NONE = 0,
    ROLE_LOG,
    ROLE_SAVE,
    ROLE_RESTORE,
    ROLE_SERIAL_PTY,
    ROLE_SERIAL_FILE,
};

struct stubdm_console_opts {
    enum role role;
    char *path;
    uint64_t cap;
    unsigned rotations;
    int fd;
    stubdm_console_transport transport;
    char *sim_dir;
    uint32_t toolstack;
    bool handover; /* stubdm_console_free lets the console go */
};

enum fdkind { FD_FILE, FD_PIPE, FD_SOCK, FD_OTHER };

struct stubdm_console {
    stubdm_op op; /* first: a console is an operation */
    uint32_t stubdom, toolstack;
    unsigned n;
    enum role role;
    bool xen;
    char *simdir;
    char fe_path[64], be_path[80];
    int be_state;

    /* destination (ring -> fd) and source (fd -> ring); may be one fd */
    int dst_fd, src_fd;
    enum fdkind dst_kind;
    bool own_dst;  /* log/serial file or pty: ours to close */
    int pty_slave; /* held open so the master never sees a hangup */
    char tty[64];
    /* file sinks */
    char *path;
    uint64_t cap, size;
    unsigned rotations;
    bool drop_warned;

    /* state */
    bool connected, out_blocked, in_wanted, src_eof;
    bool release;     /* closing hands the console over (no Closing/Closed) */
    bool input_ready; /* restore: the frontend wrote input-ready = 1 */
    struct stubdm__ctrans tr;
    struct stubdm__cring ring;
    struct stubdm__xswatch fe_watch;
    struct stubdm__domwatch death;
    struct stubdm__timer retry, kick;
    struct stubdm__fd evw, io[2]; /* io[0]: dst; io[1]: src if != dst */
    struct stubdm__list flushes;

    uint64_t bytes_out, bytes_in, dropped, nrot;

    /* stubdm_ctx_set_console_limits: output budget (bytes, refilled at
     * rate per second up to rate), rotation interval; drops not yet
     * logged and when the next log line may come */
    uint64_t rate, tokens;
    int64_t tokens_at;
    unsigned rotate_ms;
    int64_t last_rotation; /* INT64_MIN: none yet */
    uint64_t drop_unlogged;
    int64_t drop_log_at;
};

struct flush_op {
    stubdm_op op;
    stubdm_console *c;
    struct stubdm__list link;
    struct stubdm__timer deadline;
};

/* ---- Options ------------------------------------------------------------ */

int stubdm_console_opts_new(stubdm_console_opts **out)
{
    stubdm_console_opts *o;

    if (!out)
        return STUBDM_EINVAL;
    *out = o = stubdm__calloc(1, sizeof(*o));
    if (!o)
        return STUBDM_ENOMEM;
    o->fd = -1;
    return 0;
}

void stubdm_console_opts_free(stubdm_console_opts *o)
{
    if (!o)
        return;
    free(o->path);
    free(o->sim_dir);
    free(o);
}

static int set_file_role(stubdm_console_opts *o, enum role role,
                         const char *path, uint64_t max_bytes,
                         unsigned rotations)
{
    char *p;

    if (!o || !path || !*path || rotations > STUBDM_CONSOLE_MAX_ROTATIONS)
        return STUBDM_EINVAL;
    p = stubdm__strdup(path);
    if (!p)
        return STUBDM_ENOMEM;
    free(o->path);
    o->path = p;
    o->role = role;
    o->cap = max_bytes ? max_bytes : STUBDM_CONSOLE_DEFAULT_FILE_CAP;
    o->rotations = rotations;
    o->fd = -1;
    return 0;
}

int stubdm_console_opts_set_log(stubdm_console_opts *o, const char *path,
                                uint64_t max_bytes, unsigned rotations)
{
    return set_file_role(o, ROLE_LOG, path, max_bytes, rotations);
}

int stubdm_console_opts_set_serial_file(stubdm_console_opts *o,
                                        const char *path, uint64_t max_bytes,
                                        unsigned rotations)
{
    return set_file_role(o, ROLE_SERIAL_FILE, path, max_bytes, rotations);
}

static int set_fd_role(stubdm_console_opts *o, enum role role, int fd)
{
    if (!o || fd < 0)
        return STUBDM_EINVAL;
    o->role = role;
    o->fd = fd;
    return 0;
}

int stubdm_console_opts_set_save_fd(stubdm_console_opts *o, int fd)
{
    return set_fd_role(o, ROLE_SAVE, fd);
}

int stubdm_console_opts_set_restore_fd(stubdm_console_opts *o, int fd)
{
    return set_fd_role(o, ROLE_RESTORE, fd);
}

int stubdm_console_opts_set_serial_pty(stubdm_console_opts *o)
{
    if (!o)
        return STUBDM_EINVAL;
    o->role = ROLE_SERIAL_PTY;
    o->fd = -1;
    return 0;
}

int stubdm_console_opts_set_transport(stubdm_console_opts *o,
                                      stubdm_console_transport transport)
{
    if (!o || (transport != STUBDM_CONSOLE_TRANSPORT_AUTO &&
               transport != STUBDM_CONSOLE_TRANSPORT_XEN &&
               transport != STUBDM_CONSOLE_TRANSPORT_SIMULATED))
        return STUBDM_EINVAL;
    o->transport = transport;
    return 0;
}

int stubdm_console_opts_set_sim_dir(stubdm_console_opts *o, const char *dir)
{
    char *d = NULL;

    if (!o)
        return STUBDM_EINVAL;
    if (dir && !(d = stubdm__strdup(dir)))
        return STUBDM_ENOMEM;
    free(o->sim_dir);
    o->sim_dir = d;
    return 0;
}

int stubdm_console_opts_set_toolstack_domid(stubdm_console_opts *o,
                                            uint32_t domid)
{
    if (!o || !stubdm__domid_ok(domid))
        return STUBDM_EINVAL;
    o->toolstack = domid;
    return 0;
}

int stubdm_console_opts_set_handover(stubdm_console_opts *o, int on)
{
    if (!o)
        return STUBDM_EINVAL;
    o->handover = on != 0;
    return 0;
}

/* ---- Small helpers ------------------------------------------------------ */

static const char *role_name(enum role r)
{
    switch (r) {
    case ROLE_LOG:
        return "log";
    case ROLE_SAVE:
        return "save";
    case ROLE_RESTORE:
        return "restore";
    case ROLE_SERIAL_PTY:
        return "serial (pty)";
    case ROLE_SERIAL_FILE:
        return "serial (file)";
    default:
        return "none";
    }
}

static int xs_write_str(stubdm_ctx *ctx, const char *path, const char *val)
{
    struct xs_handle *xsh = NULL;
    int rc = stubdm__xs_handle(ctx, &xsh);

    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    if (!xs_write(xsh, XBT_NULL, path, val, (unsigned)strlen(val))) {
        int err = errno;
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "writing %s: %s", path, strerror(err));
    }
    return 0;
}

static int set_be_state(stubdm_console *c, int state)
{
    char path[96], v[4];

    snprintf(path, sizeof(path), "%s/state", c->be_path);
    snprintf(v, sizeof(v), "%d", state);
    c->be_state = state;
    LOG_DEBUG(c->op.ctx, MOD, "console %u of %u: backend state %d", c->n,
              c->stubdom, state);
    return xs_write_str(c->op.ctx, path, v);
}

/* Read a frontend key: 0 with *v, STUBDM_ENOENT, STUBDM_EPROTO (oversized
 * or not a number), or a xenstore failure. */
static int read_fe_num(stubdm_console *c, const char *key, uint64_t max,
                       uint64_t *v)
{
    char path[96], *val = NULL;
    size_t len = 0;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", c->fe_path, key);
    rc = stubdm__xs_read(c->op.ctx, 0, path, FE_VALUE_MAX, &val, &len);
    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(c->op.ctx);
        return rc;
    }
    if (rc == STUBDM_ELIMIT)
        return STUBDM_EPROTO;
    if (rc)
        return rc;
    rc = stubdm__num_parse_u64_n(val, len, max, v) ? STUBDM_EPROTO : 0;
    free(val);
    return rc;
}

static enum fdkind fd_kind(int fd)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return FD_OTHER;
    if (S_ISREG(st.st_mode))
        return FD_FILE;
    if (S_ISFIFO(st.st_mode))
        return FD_PIPE;
    if (S_ISSOCK(st.st_mode))
        return FD_SOCK;
    return FD_OTHER;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -1;
    if (fl & O_NONBLOCK)
        return 0;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/*
 * writev that never raises SIGPIPE: sockets use MSG_NOSIGNAL; pipes block
 * the signal around the write and swallow the one it raised (if it was
 * not already pending), so the application's disposition is untouched.
 */
static ssize_t write_nosig(int fd, enum fdkind kind, const struct iovec *iov,
                           int iovcnt)
{
    if (kind == FD_SOCK) {
        struct msghdr m = {.msg_iov = (struct iovec *)iov,
                           .msg_iovlen = (size_t)iovcnt};
        return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (kind == FD_PIPE) {
        sigset_t pipe_set, old, pending;
        ssize_t r;
        int err;
        bool was_pending;

        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        sigpending(&pending);
        was_pending = sigismember(&pending, SIGPIPE);
        r = writev(fd, iov, iovcnt);
        err = errno;
        if (r < 0 && err == EPIPE && !was_pending) {
            struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        errno = err;
        return r;
    }
    return writev(fd, iov, iovcnt);
}

/* ---- File sinks: log and serial file, capped, rotated ------------------- */

static int open_sink_file(stubdm_console *c)
{
    struct stat st;
    int fd = open(c->path,
                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW |
                      O_NONBLOCK,
                  0640);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    c->dst_fd = fd;
    c->dst_kind = FD_FILE;
    c->own_dst = true;
    c->size = (uint64_t)st.st_size;
    return 0;
}

/* Count n dropped bytes; say so at most once per second. */
static void count_drop(stubdm_console *c, uint64_t n, const char *why)
{
    int64_t now = stubdm_now_ms();

    c->dropped += n;
    c->drop_unlogged += n;
    if (now < c->drop_log_at)
        return;
    stubdm__log(c->op.ctx, STUBDM_LOG_WARN, 0, MOD,
                "console %u of stubdomain %u: %" PRIu64 " bytes of output "
                "dropped (%s); %" PRIu64 " in all",
                c->n, c->stubdom, c->drop_unlogged, why, c->dropped);
    c->drop_unlogged = 0;
    c->drop_log_at = now + 1000;
}

/* How many of want bytes the output budget allows now. */
static size_t budget_allows(stubdm_console *c, size_t want)
{
    int64_t now = stubdm_now_ms();

    if (!c->rate || c->role == ROLE_SAVE)
        return want;
    if (now > c->tokens_at) {
        int64_t dt = now - c->tokens_at;
        uint64_t room = c->rate - c->tokens;
        uint64_t add = dt >= 1000 ? c->rate
                       : c->rate > UINT64_MAX / 1000
                           ? c->rate / 1000 * (uint64_t)dt
                           : c->rate * (uint64_t)dt / 1000;
        c->tokens += add < room ? add : room;
        c->tokens_at = now;
    }
    return want < c->tokens ? want : (size_t)c->tokens;
}

static void budget_spend(stubdm_console *c, size_t n)
{
    if (c->rate && c->role != ROLE_SAVE)
        c->tokens -= n < c->tokens ? n : c->tokens;
}

/* path.N-1 -> path.N, ..., path -> path.1, then a new, empty path. */
static int rotate(stubdm_console *c)
{
    size_t len = strlen(c->path) + 8;
    char *from = stubdm__malloc(len), *to = stubdm__malloc(len);
    int rc = -1;

    if (!from || !to)
        goto out;
    for (unsigned i = c->rotations; i > 1; i--) {
        snprintf(from, len, "%s.%u", c->path, i - 1);
        snprintf(to, len, "%s.%u", c->path, i);
        if (rename(from, to) < 0 && errno != ENOENT)
            goto out;
    }
    snprintf(to, len, "%s.1", c->path);
    if (rename(c->path, to) < 0 && errno != ENOENT)
        goto out;
    stubdm__fd_stop(c->op.ctx, &c->io[0]);
    close(c->dst_fd);
    c->dst_fd = -1;
    if (open_sink_file(c) < 0)
        goto out;
    c->nrot++;
    c->last_rotation = stubdm_now_ms();
    rc = 0;
out:
    free(from);
    free(to);
    return rc;
}

/*
 * Write n bytes of segments to a capped file.  Returns the bytes consumed
 * (written or dropped: always n unless the fd would block).
 */
static ssize_t sink_file(stubdm_console *c, struct iovec *iov, int cnt,
                         size_t n)
{
    size_t done = 0;

    while (done < n) {
        size_t want = n - done, room;
        struct iovec v[2];
        int vc = 0;
        size_t skip = done;
        ssize_t r;

        bool too_soon = c->rotate_ms && c->last_rotation != INT64_MIN &&
                        stubdm_now_ms() - c->last_rotation <
                            (int64_t)c->rotate_ms;
        if (c->dst_fd >= 0 && c->size >= c->cap && c->rotations && too_soon) {
            count_drop(c, want,
                       "the file is full and was rotated less "
                       "than the minimum interval ago");
            return (ssize_t)n;
        }
        if (c->dst_fd >= 0 && c->size >= c->cap && c->rotations) {
            if (rotate(c) < 0) {
                int err = errno;
                if (!c->drop_warned)
                    stubdm__log(c->op.ctx, STUBDM_LOG_WARN, err, MOD,
                                "console %u of %u: rotating %s failed (%s); "
                                "dropping output",
                                c->n, c->stubdom, c->path, strerror(err));
                c->drop_warned = true;
            }
        }
        room = c->dst_fd >= 0 && c->size < c->cap ? c->cap - c->size : 0;
        if (room == 0) {
            c->dropped += want;
            return (ssize_t)n;
        }
        if (want > room)
            want = room;
        for (int i = 0; i < cnt && want; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[vc].iov_base = (char *)iov[i].iov_base + skip;
            v[vc].iov_len = iov[i].iov_len - skip;
            if (v[vc].iov_len > want)
                v[vc].iov_len = want;
            want -= v[vc].iov_len;
            skip = 0;
            vc++;
        }
        r = writev(c->dst_fd, v, vc);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return (ssize_t)done;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            /* A full disk must not stop the stubdomain: drop, count. */
            int err = r < 0 ? errno : EIO;
            if (!c->drop_warned)
                stubdm__log(c->op.ctx, STUBDM_LOG_WARN, err, MOD,
                            "console %u of %u: writing %s: %s; dropping "
                            "output",
                            c->n, c->stubdom, c->path, strerror(err));
            c->drop_warned = true;
            c->dropped += n - done;
            return (ssize_t)n;
        }
        c->size += (uint64_t)r;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* ---- The end of a console ----------------------------------------------- */

static void flush_check_all(stubdm_console *c, int final_rc);
static void check_input_ready(stubdm_console *c);

#define END(c, rc, ...) stubdm__op_complete(&(c)->op, (rc), __VA_ARGS__)

static bool be_dir_exists(stubdm_console *c)
{
    char path[96], *v = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s/state", c->be_path);
    rc = stubdm__xs_read(c->op.ctx, 0, path, FE_VALUE_MAX, &v, NULL);
    free(v);
    stubdm__clear_error(c->op.ctx);
    return rc == 0;
}

static void console_stop(stubdm_op *op)
{
    stubdm_console *c = (stubdm_console *)op;
    stubdm_ctx *ctx = op->ctx;

    /* Flushes already satisfied complete with 0, the others with the
     * console's end (ECANCELED when closed or ended cleanly). */
    flush_check_all(c, 0);
    flush_check_all(c, op->state == STUBDM__OP_PENDING || !op->rc
                           ? STUBDM_ECANCELED
                           : op->rc);
    stubdm__xswatch_stop(ctx, &c->fe_watch);
    stubdm__domwatch_stop(ctx, &c->death);
    stubdm__timer_stop(ctx, &c->retry);
    stubdm__timer_stop(ctx, &c->kick);
    stubdm__fd_stop(ctx, &c->evw);
    stubdm__fd_stop(ctx, &c->io[0]);
    stubdm__fd_stop(ctx, &c->io[1]);
    c->connected = false;
    c->tr.inherited = ctx->postfork;
    stubdm__ctrans_close(&c->tr);
    /* The pty closes with the console and its number may go to another
     * pty: its path must not stay where clients look for this one. */
    if (c->role == ROLE_SERIAL_PTY && c->tty[0] && be_dir_exists(c)) {
        char path[96];
        snprintf(path, sizeof(path), "%s/tty", c->fe_path);
        xs_write_str(ctx, path, "");
    }
    /* Tell the frontend, unless the contract is already gone (writing
     * would recreate the backend directory).  A release only hands the
     * console over: back to InitWait, so the frontend stays connected.
     * Closing would make Linux's hvc_xen remove the tty (hvc_remove, a
     * hangup of every open file, QEMU's fdset included) and never come
     * back, so no later backend (another process: stubdm-ctl save, a new
     * --serve) could use the console again. */
    if (c->release && be_dir_exists(c) && c->op.state == STUBDM__OP_PENDING) {
        set_be_state(c, XenbusStateInitWait);
    } else if (be_dir_exists(c)) {
        if (c->be_state != XenbusStateClosing)
            set_be_state(c, XenbusStateClosing);
        set_be_state(c, XenbusStateClosed);
    } else {
        c->be_state = XenbusStateClosed;
    }
    stubdm__clear_error(ctx);
    if (c->own_dst && c->dst_fd >= 0)
        close(c->dst_fd);
    if (c->pty_slave >= 0)
        close(c->pty_slave);
    c->dst_fd = c->src_fd = c->pty_slave = -1;
}

static void console_destroy(stubdm_op *op)
{
    stubdm_console *c = (stubdm_console *)op;

    free(c->simdir);
    free(c->path);
}

static const struct stubdm__op_type console_type = {
    .name = "console",
    .stop = console_stop,
    .destroy = console_destroy,
};

/* ---- The pump ----------------------------------------------------------- */

static void update_watches(stubdm_console *c)
{
    stubdm_ctx *ctx = c->op.ctx;
    short ev0 = 0, ev1 = 0;

    if (!c->connected)
        return;
    if (c->dst_fd >= 0 && c->out_blocked)
        ev0 |= POLLOUT;
    if (c->src_fd >= 0 && c->in_wanted) {
        if (c->src_fd == c->dst_fd)
            ev0 |= POLLIN;
        else
            ev1 |= POLLIN;
    }
    if (ev0 ? stubdm__fd_watch(ctx, &c->io[0], c->dst_fd, ev0)
            : (stubdm__fd_stop(ctx, &c->io[0]), 0)) {
        END(c, STUBDM_EFAIL, "console %u of stubdomain %u: %s", c->n,
            c->stubdom, ctx->errmsg);
        return;
    }
    if (ev1 ? stubdm__fd_watch(ctx, &c->io[1], c->src_fd, ev1)
            : (stubdm__fd_stop(ctx, &c->io[1]), 0))
        END(c, STUBDM_EFAIL, "console %u of stubdomain %u: %s", c->n,
            c->stubdom, ctx->errmsg);
}

/* The frontend's out_prod is not within the ring of out_cons: the console
 * ends. */
static __attribute__((cold)) void out_ring_violation(stubdm_console *c)
{
    END(c, STUBDM_EPROTO,
        "console %u of stubdomain %u: the frontend's out_prod %" PRIu32
        " is not within %u bytes of out_cons %" PRIu32
        ": ring protocol violation, console disconnected",
        c->n, c->stubdom, c->ring.seen_rx_prod, STUBDM__CRING_OUT_SIZE,
        c->ring.rx_cons);
}

/* Cut the nseg segments of iov down to allow bytes in all. */
static inline void iov_trim(struct iovec *iov, unsigned *nseg, size_t allow)
{
    size_t keep = allow;
    for (unsigned i = 0; i < *nseg; i++) {
        if (iov[i].iov_len > keep)
            iov[i].iov_len = keep;
        keep -= iov[i].iov_len;
    }
    if (iov[*nseg - 1].iov_len == 0)
        (*nseg)--;
}

/* What writing the ring's bytes to the destination came to. */
enum out_write { OUT_WROTE, OUT_RETRY, OUT_HELD, OUT_ENDED };

/* Offer the allowed bytes in iov to the console's destination; with
 * OUT_WROTE, *r is how many it took (avail when they are dropped: nobody
 * wants them). */
static inline enum out_write out_write(stubdm_console *c, struct iovec *iov,
                                       unsigned nseg, size_t allow, long avail,
                                       ssize_t *r)
{
    if (c->dst_fd < 0 && c->role == ROLE_SAVE) {
        /* A held save console (spawn): no destination yet, so the
         * bytes stay in the ring until a save attaches one. */
        return OUT_HELD;
    }
    if (c->dst_fd < 0 && c->path == NULL) {
        /* Restore console: nobody wants the frontend's output. */
        c->dropped += (uint64_t)avail;
        *r = avail;
        return OUT_WROTE;
    }
    if (c->role == ROLE_LOG || c->role == ROLE_SERIAL_FILE) {
        *r = sink_file(c, iov, (int)nseg, allow);
        return OUT_WROTE;
    }
    *r = write_nosig(c->dst_fd, c->dst_kind, iov, (int)nseg);
    if (*r >= 0)
        return OUT_WROTE;
    int err = errno;
    if (err == EINTR)
        return OUT_RETRY;
    if (err == EAGAIN || err == EWOULDBLOCK) {
        *r = 0;
        return OUT_WROTE;
    }
    END(c, STUBDM_EFAIL, "console %u of stubdomain %u (%s): writing fd %d: %s",
        c->n, c->stubdom, role_name(c->role), c->dst_fd, strerror(err));
    return OUT_ENDED;
}

/* Take r bytes off the ring (all avail when the budget cut the rest and
 * the destination took what it allowed, the rest dropped).  True when the
 * destination took less than it was offered. */
static inline bool out_consume(stubdm_console *c, ssize_t r, size_t allow,
                               long avail, bool *notify)
{
    if (r > 0)
        budget_spend(c, (size_t)r);
    if (r == (ssize_t)allow && allow < (size_t)avail) {
        count_drop(c, (uint64_t)avail - allow, "over the output budget");
        r = avail;
    }
    if (r > 0) {
        stubdm__cring_rx_consume(&c->ring, (uint32_t)r);
        c->bytes_out += (uint64_t)r;
        *notify = true;
    }
    return r < avail;
}

/* Ring -> destination.  Returns -1 when the console ended. */
static int pump_out(stubdm_console *c, bool *notify, bool *more)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        const char *ptr[2];
        uint32_t len[2];
        unsigned nseg;
        struct iovec iov[2];
        long avail = stubdm__cring_rx_peek(&c->ring, STUBDM__CRING_OUT_SIZE,
                                           ptr, len, &nseg);
        ssize_t r;

        if (avail < 0) {
            out_ring_violation(c);
            return -1;
        }
        c->out_blocked = false;
        if (avail == 0)
            return 0;
        for (unsigned i = 0; i < nseg; i++) {
            iov[i].iov_base = (void *)ptr[i];
            iov[i].iov_len = len[i];
        }
        /* Over the budget: what it does not allow is taken and dropped,
         * after what it allows is written. */
        size_t allow = budget_allows(c, (size_t)avail);
        if (allow == 0 && c->role != ROLE_SAVE && c->dst_fd >= 0) {
            count_drop(c, (uint64_t)avail, "over the output budget");
            stubdm__cring_rx_consume(&c->ring, (uint32_t)avail);
            c->bytes_out += (uint64_t)avail;
            *notify = true;
            continue;
        }
        if (allow < (size_t)avail)
            iov_trim(iov, &nseg, allow);
        switch (out_write(c, iov, nseg, allow, avail, &r)) {
        case OUT_RETRY:
            continue;
        case OUT_HELD:
            return 0;
        case OUT_ENDED:
            return -1;
        case OUT_WROTE:
            break;
        }
        if (out_consume(c, r, allow, avail, notify)) {
            c->out_blocked = true;
            return 0;
        }
    }
    *more = true;
    return 0;
}

/* Source -> ring.  Returns -1 when the console ended. */
static int pump_in(stubdm_console *c, bool *notify, bool *more)
{
    c->in_wanted = false;
    if (c->src_fd < 0 || c->src_eof)
        return 0;
    /* Restore: nothing goes into the ring before the frontend says its
     * reader is ready.  A Linux stubdomain's /dev/hvc2 is a tty in cooked
     * mode until its userspace opens it and makes it raw; bytes the hvc
     * driver takes from the ring before that (it does at the open itself)
     * are mangled: 0x03 (the stream's version word) is ^C, CR becomes
     * LF, ^S stops the flow.  The ring keeps the stream meanwhile. */
    if (c->role == ROLE_RESTORE && !c->input_ready)
        return 0;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        char *ptr[2];
        uint32_t len[2];
        unsigned nseg;
        struct iovec iov[2];
        long room = stubdm__cring_tx_room(&c->ring, STUBDM__CRING_IN_SIZE, ptr,
                                          len, &nseg);
        ssize_t r;

        if (room < 0) {
            END(c, STUBDM_EPROTO,
                "console %u of stubdomain %u: the frontend's in_cons %" PRIu32
                " is not within %u bytes of in_prod %" PRIu32
                ": ring protocol violation, console disconnected",
                c->n, c->stubdom, c->ring.seen_tx_cons, STUBDM__CRING_IN_SIZE,
                c->ring.tx_prod);
            return -1;
        }
        if (room == 0)
            return 0; /* full: the frontend's next notification resumes */
        for (unsigned i = 0; i < nseg; i++) {
            iov[i].iov_base = ptr[i];
            iov[i].iov_len = len[i];
        }
        r = readv(c->src_fd, iov, (int)nseg);
        if (r < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK ||
                (err == EIO && c->role == ROLE_SERIAL_PTY)) {
                c->in_wanted = true;
                return 0;
            }
            END(c, STUBDM_EFAIL,
                "console %u of stubdomain %u (%s): reading fd %d: %s", c->n,
                c->stubdom, role_name(c->role), c->src_fd, strerror(err));
            return -1;
        }
        if (r == 0) {
            if (c->role == ROLE_SERIAL_PTY) {
                c->in_wanted = true;
                return 0;
            }
            c->src_eof = true;
            LOG_DEBUG(c->op.ctx, MOD,
                      "console %u of %u: end of the %s stream after %" PRIu64
                      " bytes",
                      c->n, c->stubdom, role_name(c->role), c->bytes_in);
            return 0;
        }
        stubdm__cring_tx_produce(&c->ring, (uint32_t)r);
        c->bytes_in += (uint64_t)r;
        *notify = true;
    }
    *more = true;
    return 0;
}

static void pump(stubdm_console *c)
{
    bool notify = false, more = false;

    if (!c->connected || c->op.state != STUBDM__OP_PENDING)
        return;
    if (pump_out(c, &notify, &more) < 0 || pump_in(c, &notify, &more) < 0)
        return;
    if (notify && stubdm__ctrans_notify(&c->tr) < 0) {
        int err = errno;
        END(c, STUBDM_EXEN, "console %u of stubdomain %u: notifying: %s", c->n,
            c->stubdom, strerror(err));
        return;
    }
    if (c->src_eof) {
        int d = stubdm__cring_tx_drained(&c->ring);
        if (d < 0) {
            END(c, STUBDM_EPROTO,
                "console %u of stubdomain %u: the frontend's in_cons is out "
                "of range: ring protocol violation, console disconnected",
                c->n, c->stubdom);
            return;
        }
        if (d == 1) {
            LOG_INFO(c->op.ctx, MOD,
                     "console %u of %u: restore stream delivered (%" PRIu64
                     " bytes)",
                     c->n, c->stubdom, c->bytes_in);
            END(c, 0, NULL);
            return;
        }
    }
    if (more)
        stubdm__timer_arm(c->op.ctx, &c->kick, 0);
    update_watches(c);
    flush_check_all(c, 0);
}

static void on_evtchn(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    stubdm_console *c = STUBDM_CONTAINER_OF(w, stubdm_console, evw);

    (void)ctx;
    (void)revents;
    if (stubdm__ctrans_ack(&c->tr) < 0) {
        int err = errno;
        END(c, STUBDM_EXEN, "console %u of stubdomain %u: event channel: %s",
            c->n, c->stubdom, strerror(err));
        return;
    }
    pump(c);
}

static void on_io0(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    stubdm_console *c = STUBDM_CONTAINER_OF(w, stubdm_console, io[0]);

    (void)ctx;
    (void)revents;
    pump(c);
}

static void on_io1(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    stubdm_console *c = STUBDM_CONTAINER_OF(w, stubdm_console, io[1]);

    (void)ctx;
    (void)revents;
    pump(c);
}

static void on_kick(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)ctx;
    pump(STUBDM_CONTAINER_OF(t, stubdm_console, kick));
}

/* ---- Connecting --------------------------------------------------------- */

/* The frontend's ring-ref and port, once it has published them (for
 * consoles past 0, in state Initialised or Connected).  STUBDM_ENOENT: not
 * yet; another error: a value is not valid. */
static int read_fe_ring(stubdm_console *c, uint64_t *ring_ref, uint64_t *port)
{
    uint64_t fe_state = 0;
    int rc;

    if (c->n > 0) {
        rc = read_fe_num(c, "state", 255, &fe_state);
        if (rc)
            return rc;
        /* Any other state (Closing or Closed: not started yet, or a
         * leftover): wait. */
        if (fe_state != XenbusStateInitialised &&
            fe_state != XenbusStateConnected)
            return STUBDM_ENOENT;
    }
    rc = read_fe_num(c, "ring-ref", c->n == 0 ? UINT64_MAX : UINT32_MAX,
                     ring_ref);
    if (rc)
        return rc;
    /* "port" for every console: the domain builder's for console 0, and
     * the key Linux's hvc_xen frontend writes for the others (as QEMU's
     * xen_console backend and xenconsoled read it). */
    return read_fe_num(c, "port", UINT32_MAX, port);
}

static void fe_bad_value(stubdm_console *c, int rc)
{
    if (rc == STUBDM_EPROTO)
        END(c, rc,
            "console %u of stubdomain %u: a frontend value under %s is not a "
            "valid number: console disconnected",
            c->n, c->stubdom, c->fe_path);
    else
        END(c, rc, "console %u of stubdomain %u: %s", c->n, c->stubdom,
            c->op.ctx->errmsg);
}

/* Map the ring, bind the event channel (or their simulations), check the
 * ring's indexes and announce the backend Connected.  False: not
 * connected, the console ended or a retry is armed. */
static bool attach_transport(stubdm_console *c, uint64_t ring_ref,
                             uint64_t port)
{
    stubdm_ctx *ctx = c->op.ctx;
    int rc;

    if (c->xen)
        rc = stubdm__ctrans_connect_xen(ctx, &c->tr, c->stubdom, c->n,
                                        ring_ref, (uint32_t)port);
    else
        rc = stubdm__ctrans_connect_sim(ctx, &c->tr, c->simdir, c->stubdom,
                                        c->n);
    if (rc == STUBDM_ENOENT && !c->xen) {
        /* Published in xenstore before the files exist: look again soon. */
        stubdm__timer_arm(ctx, &c->retry, stubdm_now_ms() + SIM_RETRY_MS);
        return false;
    }
    if (rc) {
        END(c, rc, "console %u of stubdomain %u: %s", c->n, c->stubdom,
            ctx->errmsg);
        return false;
    }
    if (!stubdm__cring_attach(&c->ring, c->tr.intf, STUBDM__CRING_BACKEND)) {
        END(c, STUBDM_EPROTO,
            "console %u of stubdomain %u: the ring's indexes are inconsistent "
            "at connection (in %" PRIu32 "/%" PRIu32 ", out %" PRIu32
            "/%" PRIu32 "): console disconnected",
            c->n, c->stubdom, c->ring.seen_tx_cons, c->ring.tx_prod,
            c->ring.rx_cons, c->ring.seen_rx_prod);
        return false;
    }
    rc = stubdm__fd_watch(ctx, &c->evw, c->tr.fd, POLLIN);
    if (!rc)
        rc = set_be_state(c, XenbusStateConnected);
    if (rc) {
        END(c, rc, "console %u of stubdomain %u: %s", c->n, c->stubdom,
            ctx->errmsg);
        return false;
    }
    return true;
}

static void try_connect(stubdm_console *c)
{
    uint64_t ring_ref = 0, port = 0;
    int rc;

    if (c->connected || c->op.state != STUBDM__OP_PENDING)
        return;
    rc = read_fe_ring(c, &ring_ref, &port);
    if (rc == STUBDM_ENOENT)
        return;
    if (rc) {
        fe_bad_value(c, rc);
        return;
    }
    if (!attach_transport(c, ring_ref, port))
        return;
    c->connected = true;
    LOG_DEBUG(c->op.ctx, MOD, "console %u of %u connected (%s transport, %s)",
              c->n, c->stubdom, stubdm__ctrans_name(&c->tr),
              role_name(c->role));
    /* The frontend may have written before we came, or wait for room. */
    stubdm__ctrans_notify(&c->tr);
    pump(c);
    check_input_ready(c);
}

/* Restore: has the frontend written input-ready = 1 (its reader is
 * raw and waiting)?  Pump once it has. */
static void check_input_ready(stubdm_console *c)
{
    uint64_t v = 0;

    if (c->role != ROLE_RESTORE || c->input_ready || c->src_fd < 0)
        return;
    if (read_fe_num(c, "input-ready", 1, &v) == 0 && v == 1) {
        c->input_ready = true;
        LOG_DEBUG(c->op.ctx, MOD,
                  "console %u of %u: the frontend is ready "
                  "for input",
                  c->n, c->stubdom);
        pump(c);
    }
    stubdm__clear_error(c->op.ctx);
}

static void on_fe_change(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                         const char *path)
{
    stubdm_console *c = STUBDM_CONTAINER_OF(w, stubdm_console, fe_watch);
    uint64_t st = 0;
    int rc;

    (void)ctx;
    (void)path;
    if (!c->connected) {
        try_connect(c);
        return;
    }
    check_input_ready(c);
    if (c->op.state != STUBDM__OP_PENDING)
        return;
    if (c->n == 0)
        return; /* console 0 has no frontend state */
    rc = read_fe_num(c, "state", 255, &st);
    if (rc == 0 && st == XenbusStateClosing) {
        /* Answer Closing and end on the frontend's Closed, as blkback
         * does.  Linux shutting down completes a frontend's close only on
         * a backend state it reads as Closing (xenbus_otherend_changed
         * past SYSTEM_RUNNING): Closing then Closed at once reads as
         * Closed, and each console then costs the domain's poweroff 5 s
         * (xenbus_frontend_dev_shutdown's timeout). */
        pump(c);
        if (c->be_state != XenbusStateClosing) {
            LOG_DEBUG(c->op.ctx, MOD,
                      "console %u of %u: the frontend is "
                      "closing",
                      c->n, c->stubdom);
            set_be_state(c, XenbusStateClosing);
        }
        return;
    }
    if (rc == STUBDM_ENOENT || (rc == 0 && st == XenbusStateClosed)) {
        LOG_DEBUG(c->op.ctx, MOD, "console %u of %u: the frontend closed",
                  c->n, c->stubdom);
        /* Deliver what is already in the ring first. */
        pump(c);
        END(c, 0, NULL);
    }
}

static void on_retry(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)ctx;
    try_connect(STUBDM_CONTAINER_OF(t, stubdm_console, retry));
}

static void on_death(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                     enum stubdm__dom_state st, const char *detail)
{
    stubdm_console *c = STUBDM_CONTAINER_OF(dw, stubdm_console, death);

    (void)ctx;
    (void)st;
    END(c, STUBDM_EDOMAIN_GONE,
        "console %u of stubdomain %u: the stubdomain %s (%" PRIu64
        " bytes out, %" PRIu64 " in)",
        c->n, c->stubdom, detail, c->bytes_out, c->bytes_in);
}

/* ---- Serving ------------------------------------------------------------ */

static int open_pty(stubdm_ctx *ctx, stubdm_console *c)
{
    struct termios tio;
    const char *name;
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK), err;

    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || !(name = ptsname(m)) ||
        strlen(name) >= sizeof(c->tty))
        goto fail;
    snprintf(c->tty, sizeof(c->tty), "%s", name);
    /* Hold the slave open: without it the master reads EIO / polls HUP
     * until someone opens the pty, and the byte pump would spin. */
    c->pty_slave = open(c->tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (c->pty_slave < 0)
        goto fail;
    /* Raw: binary-clean both ways (no echo, no CR/LF mapping). */
    if (tcgetattr(c->pty_slave, &tio) == 0) {
        cfmakeraw(&tio);
        tcsetattr(c->pty_slave, TCSANOW, &tio);
    }
    c->dst_fd = c->src_fd = m;
    c->dst_kind = FD_OTHER;
    c->own_dst = true;
    return 0;
fail:
    err = errno;
    if (m >= 0)
        close(m);
    return stubdm__fail(ctx, STUBDM_EFAIL, err,
                        "console %u of stubdomain %u: creating a pty: %s",
                        c->n, c->stubdom, strerror(err));
}

static bool role_fits(enum role r, unsigned n)
{
    switch (r) {
    case ROLE_LOG:
        return n == STUBDM_CONSOLE_LOG;
    case ROLE_SAVE:
        return n == STUBDM_CONSOLE_SAVE;
    case ROLE_RESTORE:
        return n == STUBDM_CONSOLE_RESTORE;
    case ROLE_SERIAL_PTY:
    case ROLE_SERIAL_FILE:
        return n >= STUBDM_CONSOLE_SERIAL0;
    default:
        return false;
    }
}

/* The arguments of stubdm_console_serve, before anything is allocated. */
static int serve_check_args(stubdm_ctx *ctx, uint32_t stubdom_domid,
                            unsigned n, const stubdm_console_opts *opts,
                            stubdm_console **out)
{
    if (!out || !opts)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "console: NULL %s",
                            out ? "options" : "handle");
    *out = NULL;
    if (!stubdm__domid_ok(stubdom_domid) || stubdom_domid == 0 ||
        n > STUBDM_CONSOLE_SERIAL0 + STUBDM_CONSOLE_MAX_SERIALS - 1)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "console: invalid stubdomain %u or console %u",
                            stubdom_domid, n);
    if (!role_fits(opts->role, n))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "console %u: role %s does not fit (0 log, 1 "
                            "save, 2 restore, 3.. serial)",
                            n, role_name(opts->role));
    return 0;
}

static bool serve_over_xen(stubdm_ctx *ctx, const stubdm_console_opts *opts)
{
    switch (opts->transport) {
    case STUBDM_CONSOLE_TRANSPORT_XEN:
        return true;
    case STUBDM_CONSOLE_TRANSPORT_SIMULATED:
        return false;
    default:
        return stubdm__xc_present(ctx);
    }
}

/* A console op with nothing opened or started yet: its fields, watches,
 * timers and xenstore paths set up. */
static stubdm_console *console_alloc(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                     unsigned n,
                                     const stubdm_console_opts *opts, bool xen,
                                     stubdm_done_fn *done, void *user)
{
    stubdm_console *c = (stubdm_console *)stubdm__op_new(ctx, &console_type,
                                                         sizeof(*c), done,
                                                         user);
    if (!c)
        return NULL;
    c->stubdom = stubdom_domid;
    c->toolstack = opts->toolstack;
    c->release = opts->handover;
    c->n = n;
    c->role = opts->role;
    c->xen = xen;
    c->dst_fd = c->src_fd = c->pty_slave = -1;
    c->be_state = XenbusStateInitialising;
    c->rate = ctx->console_rate;
    c->rotate_ms = ctx->console_rotate_ms;
    c->tokens = c->rate;
    c->tokens_at = stubdm_now_ms();
    c->last_rotation = INT64_MIN;
    stubdm__ctrans_init(&c->tr);
    stubdm__xswatch_init(&c->fe_watch, on_fe_change);
    stubdm__domwatch_init(&c->death, on_death);
    stubdm__timer_init(&c->retry, on_retry);
    stubdm__timer_init(&c->kick, on_kick);
    stubdm__fd_init(&c->evw, on_evtchn);
    stubdm__fd_init(&c->io[0], on_io0);
    stubdm__fd_init(&c->io[1], on_io1);
    stubdm__list_init(&c->flushes);
    if (n == 0)
        snprintf(c->fe_path, sizeof(c->fe_path), "/local/domain/%u/console",
                 stubdom_domid);
    else
        snprintf(c->fe_path, sizeof(c->fe_path),
                 "/local/domain/%u/device/console/%u", stubdom_domid, n);
    snprintf(c->be_path, sizeof(c->be_path),
             "/local/domain/%u/backend/console/%u/%u", opts->toolstack,
             stubdom_domid, n);
    return c;
}

/* ROLE_LOG, ROLE_SERIAL_FILE: the capped, rotated file. */
static int serve_open_file(stubdm_ctx *ctx, stubdm_console *c,
                           const stubdm_console_opts *opts)
{
    c->cap = opts->cap;
    c->rotations = opts->rotations;
    c->path = stubdm__strdup(opts->path);
    if (!c->path)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "console path");
    if (open_sink_file(c) < 0) {
        int err = errno;
        return stubdm__fail(ctx,
                            err == ENOENT   ? STUBDM_ENOENT
                            : err == EACCES ? STUBDM_EPERM
                                            : STUBDM_EFAIL,
                            err, "console %u: opening %s: %s", c->n, c->path,
                            strerror(err));
    }
    return 0;
}

/* ROLE_SAVE, ROLE_RESTORE: the caller's fd, if any. */
static int serve_adopt_fd(stubdm_ctx *ctx, stubdm_console *c,
                          const stubdm_console_opts *opts)
{
    if (opts->fd < 0)
        return 0; /* save: held (stubdm__console_opts_set_save_held);
                   * restore: the serials' placeholder
                   * (stubdm__console_opts_set_placeholder) */
    if (set_nonblock(opts->fd) < 0) {
        int err = errno;
        return stubdm__fail(ctx, STUBDM_EINVAL, err, "console %u: fd %d: %s",
                            c->n, opts->fd, strerror(err));
    }
    if (c->role == ROLE_SAVE) {
        c->dst_fd = opts->fd;
        c->dst_kind = fd_kind(opts->fd);
    } else {
        c->src_fd = opts->fd;
    }
    return 0;
}

/* ROLE_SERIAL_PTY: the pty, its slave's name published as the frontend's
 * "tty". */
static int serve_open_pty(stubdm_ctx *ctx, stubdm_console *c)
{
    char path[96];
    int rc = open_pty(ctx, c);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/tty", c->fe_path);
    return xs_write_str(ctx, path, c->tty);
}

/* What the console's role reads from or writes to. */
static int serve_open_endpoint(stubdm_ctx *ctx, stubdm_console *c,
                               const stubdm_console_opts *opts)
{
    switch (c->role) {
    case ROLE_LOG:
    case ROLE_SERIAL_FILE:
        return serve_open_file(ctx, c, opts);
    case ROLE_SAVE:
    case ROLE_RESTORE:
        return serve_adopt_fd(ctx, c, opts);
    case ROLE_SERIAL_PTY:
        return serve_open_pty(ctx, c);
    default:
        return STUBDM_EINVAL;
    }
}

/* The backend announced, then the watches on the frontend and on the
 * stubdomain's death; the op runs from here on. */
static int serve_start(stubdm_ctx *ctx, stubdm_console *c,
                       stubdm_console **out)
{
    enum stubdm__dom_state st;
    char detail[160];
    int rc;

    if ((rc = set_be_state(c, XenbusStateInitWait)))
        return rc;
    /* The watch's first firing looks at what was published before. */
    if ((rc = stubdm__xswatch_start(ctx, &c->fe_watch, c->fe_path)))
        return rc;
    if ((rc = stubdm__domwatch_start(ctx, &c->death, c->stubdom, &st, detail,
                                     sizeof(detail))))
        return rc;
    stubdm__op_started(&c->op, (stubdm_op **)out);
    if (st != STUBDM__DOM_RUNNING)
        on_death(ctx, &c->death, st, detail); /* queued, not called back */
    return 0;
}

int stubdm_console_serve(stubdm_ctx *ctx, uint32_t stubdom_domid, unsigned n,
                         const stubdm_console_opts *opts, stubdm_done_fn *done,
                         void *user, stubdm_console **out)
{
    stubdm_console *c;
    bool xen;
    int rc;

    if (!ctx)
        return STUBDM_EINVAL;
    if ((rc = serve_check_args(ctx, stubdom_domid, n, opts, out)))
        return rc;
    xen = serve_over_xen(ctx, opts);
    c = console_alloc(ctx, stubdom_domid, n, opts, xen, done, user);
    if (!c)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "console");
    if (!xen) {
        c->simdir = opts->sim_dir ? stubdm__strdup(opts->sim_dir)
                                  : stubdm__qmpt_default_simdir();
        if (!c->simdir) {
            rc = stubdm__fail(ctx, STUBDM_EINVAL, 0,
                              "console %u: no simulation directory: set "
                              "STUBDM_SIM_DIR or XENSTORED_PATH, or "
                              "stubdm_console_opts_set_sim_dir()",
                              n);
            goto fail;
        }
    }
    if ((rc = serve_open_endpoint(ctx, c, opts)))
        goto fail;
    if ((rc = serve_start(ctx, c, out)))
        goto fail;
    LOG_DEBUG(ctx, MOD, "serving console %u of stubdomain %u (%s, %s)", n,
              stubdom_domid, role_name(c->role), xen ? "xen" : "simulated");
    return 0;

fail:
    stubdm__op_abandon(&c->op);
    return rc;
}

void stubdm_console_free(stubdm_console *c)
{
    if (c)
        stubdm_op_free(&c->op);
}

int stubdm_console_result(const stubdm_console *c)
{
    return c ? stubdm_op_result(&c->op) : STUBDM_EINVAL;
}

const char *stubdm_console_errmsg(const stubdm_console *c)
{
    return c ? stubdm_op_errmsg(&c->op) : "";
}

int stubdm_console_state(const stubdm_console *c)
{
    return c ? c->be_state : 0;
}

const char *stubdm_console_tty(const stubdm_console *c)
{
    return c && c->tty[0] ? c->tty : NULL;
}

int stubdm_console_get_stats(const stubdm_console *c,
                             stubdm_console_stats *stats, size_t size)
{
    stubdm_console_stats st;

    if (!c)
        return stubdm__stats_copy(stats, size, NULL, 0);
    st.bytes_out = c->bytes_out;
    st.bytes_in = c->bytes_in;
    st.bytes_dropped = c->dropped;
    st.rotations = c->nrot;
    return stubdm__stats_copy(stats, size, &st, sizeof(st));
}

int stubdm_ctx_set_console_limits(stubdm_ctx *ctx, uint64_t bytes_per_second,
                                  unsigned min_rotate_interval_ms)
{
    if (!ctx)
        return STUBDM_EINVAL;
    ctx->console_rate = bytes_per_second;
    ctx->console_rotate_ms = min_rotate_interval_ms;
    return 0;
}

/* ---- Flush -------------------------------------------------------------- */

static void flush_stop(stubdm_op *op)
{
    struct flush_op *f = (struct flush_op *)op;

    stubdm__list_del(&f->link);
    if (op->ctx)
        stubdm__timer_stop(op->ctx, &f->deadline);
}

static const struct stubdm__op_type flush_type = {
    .name = "console-flush",
    .stop = flush_stop,
    .destroy = NULL,
};

/* final_rc != 0: the console ended; complete every flush with it. */
static void flush_check_all(stubdm_console *c, int final_rc)
{
    int empty = 0;

    if (stubdm__list_empty(&c->flushes))
        return;
    if (!final_rc && c->connected)
        empty = stubdm__cring_rx_empty(&c->ring) == 1;
    if (!final_rc && !empty)
        return;
    while (!stubdm__list_empty(&c->flushes)) {
        struct flush_op *f = STUBDM_CONTAINER_OF(c->flushes.next,
                                                 struct flush_op, link);
        /* complete() unlinks it through flush_stop */
        if (final_rc)
            stubdm__op_complete(&f->op, final_rc, "console %u ended: %s", c->n,
                                final_rc == STUBDM_ECANCELED ? "closed"
                                                             : c->op.errmsg);
        else
            stubdm__op_complete(&f->op, 0, NULL);
    }
}

static void on_flush_deadline(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct flush_op *f = STUBDM_CONTAINER_OF(t, struct flush_op, deadline);

    (void)ctx;
    stubdm__op_complete(&f->op, STUBDM_ETIMEDOUT,
                        "console %u of stubdomain %u: output not drained "
                        "within the timeout",
                        f->c->n, f->c->stubdom);
}

int stubdm_console_flush(stubdm_console *c, int timeout_ms,
                         stubdm_done_fn *done, void *user, stubdm_op **op_out)
{
    stubdm_ctx *ctx;
    struct flush_op *f;
    int rc;

    if (op_out)
        *op_out = NULL;
    if (!c || !c->op.ctx)
        return STUBDM_EINVAL;
    ctx = c->op.ctx;
    if (timeout_ms <= 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "console flush: timeout must be positive");
    if (c->op.state != STUBDM__OP_PENDING)
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "console %u: no longer served", c->n);
    f = (struct flush_op *)stubdm__op_new(ctx, &flush_type, sizeof(*f), done,
                                          user);
    if (!f)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "console flush");
    f->c = c;
    stubdm__timer_init(&f->deadline, on_flush_deadline);
    stubdm__list_add_tail(&c->flushes, &f->link);
    rc = stubdm__timer_arm(ctx, &f->deadline, stubdm_now_ms() + timeout_ms);
    if (rc) {
        stubdm__op_abandon(&f->op);
        return rc;
    }
    stubdm__op_started(&f->op, op_out);
    flush_check_all(c, 0); /* queued, never called back from here */
    return 0;
}

/* ---- Held save consoles (internal: spawn.c and dm_state.c) -------------- */

void stubdm__console_opts_set_save_held(stubdm_console_opts *o)
{
    o->role = ROLE_SAVE;
    o->fd = -1;
}

void stubdm__console_opts_set_placeholder(stubdm_console_opts *o)
{
    o->role = ROLE_RESTORE;
    o->fd = -1;
}

void stubdm__console_release(stubdm_console *c)
{
    if (!c)
        return;
    c->release = true;
    stubdm_console_free(c);
}

int stubdm__console_save_attach(stubdm_console *c, int fd)
{
    stubdm_ctx *ctx = c->op.ctx;

    if (c->role != ROLE_SAVE || c->op.state != STUBDM__OP_PENDING)
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "console %u of stubdomain %u is not a served "
                            "save console",
                            c->n, c->stubdom);
    if (c->dst_fd >= 0)
        return stubdm__fail(ctx, STUBDM_EBUSY, 0,
                            "console %u of stubdomain %u: a save is already "
                            "in progress",
                            c->n, c->stubdom);
    if (set_nonblock(fd) < 0) {
        int err = errno;
        return stubdm__fail(ctx, STUBDM_EINVAL, err, "console %u: fd %d: %s",
                            c->n, fd, strerror(err));
    }
    c->dst_fd = fd;
    c->dst_kind = fd_kind(fd);
    c->out_blocked = false;
    /* From a timer, never from here: the caller may hold state. */
    stubdm__timer_arm(ctx, &c->kick, 0);
    return 0;
}

void stubdm__console_save_detach(stubdm_console *c)
{
    if (c->role != ROLE_SAVE)
        return;
    stubdm__fd_stop(c->op.ctx, &c->io[0]);
    c->dst_fd = -1;
    c->out_blocked = false;
}

int stubdm__console_out_empty(stubdm_console *c)
{
    if (!c->connected)
        return 0;
    return stubdm__cring_rx_empty(&c->ring);
}

bool stubdm__console_out_reached(const stubdm_console *c, uint64_t total)
{
    if (!c->connected)
        return false;
    /* The ring's out_cons is free-running from the console's creation,
     * whichever backend (process) consumed the earlier bytes: modulo 2^32
     * it is the frontend's count of every byte ever consumed. */
    return (uint32_t)(c->ring.rx_cons - (uint32_t)total) < 0x80000000u;
}

bool stubdm__console_pending(const stubdm_console *c)
{
    return c->op.state == STUBDM__OP_PENDING;
}
