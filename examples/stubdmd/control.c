/*
 * The control socket: RUN-DIR/control, a unix SOCK_SEQPACKET socket made
 * with mode 0600, answering root and the daemon's own uid (SO_PEERCRED at
 * connect; anyone else gets an error and is closed).  One request per
 * message, a strict line protocol (docs/stubdmd.md, "Control socket"):
 *
 *   list
 *   save STUB TIMEOUT_MS LIMIT     + the output file's fd (SCM_RIGHTS)
 *   restore STUB                   + the input file's fd
 *   console STUB N
 *
 * A reply is lines, sent in messages of at most MSG_MAX bytes, each
 * holding whole lines; its last line is "ok[ KEY=VALUE...]" or
 * "error NAME MESSAGE" (NAME as stubdm_errname).  Everything is
 * non-blocking: a client that does not read its reply keeps only its own
 * reply waiting, a save or restore runs in the served stubdomain's ctx and
 * answers when done.  A client closing ends what it asked for.
 */
#include "stubdmd.h"
#include "fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xenstore.h>

#define REQ_MAX 256          /* bytes of a request */
#define MSG_MAX 4096         /* bytes of one reply message */
#define LINE_MAX_ 1024       /* bytes of one reply line */
#define REPLY_MAX (1u << 20) /* bytes of a whole reply */
#define CLIENTS_MAX 16
#define FDS_MAX 4 /* fds taken from one message (more: refused) */
#define WORDS_MAX 4
#define DOMID_MAX 0x7fefu

enum job { JOB_NONE, JOB_SAVE, JOB_RESTORE };

struct stubdmd_client {
    struct stubdmd *d;
    int fd;
    struct stubdmd_src src;
    char *out; /* the reply not yet sent */
    size_t outlen, outoff;
    bool overflow;
    int sendfd; /* passed with the reply's first message */
    enum job job;
    struct stubdmd_served *served; /* the job's */
    stubdm_op *op;                 /* save */
    stubdm_console *con;           /* restore */
    int jobfd;                     /* the client's file */
    bool closing;                  /* close once the reply is out */
    bool dead;                     /* freed by the sweep */
    struct stubdmd_client *next;
};

/* ---- replies ------------------------------------------------------------- */

static void reply_line(struct stubdmd_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply_line(struct stubdmd_client *c, const char *fmt, ...)
{
    char line[LINE_MAX_];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2; /* cut: still one line */
    line[n++] = '\n';
    if (c->overflow || c->outlen + (size_t)n > REPLY_MAX) {
        c->overflow = true;
        return;
    }
    char *p = realloc(c->out, c->outlen + (size_t)n);
    if (!p) {
        c->overflow = true;
        return;
    }
    memcpy(p + c->outlen, line, (size_t)n);
    c->out = p;
    c->outlen += (size_t)n;
}

static void set_events(struct stubdmd_client *c)
{
    struct epoll_event e = {.data.ptr = &c->src};

    if (c->dead)
        return;
    e.events = EPOLLRDHUP;
    if (c->out)
        e.events |= EPOLLOUT;
    else if (c->job == JOB_NONE)
        e.events |= EPOLLIN;
    epoll_ctl(c->d->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

/* Send whole lines, at most MSG_MAX bytes a message, until done or the
 * socket is full (then EPOLLOUT resumes it). */
static void flush(struct stubdmd_client *c)
{
    while (c->out && !c->dead) {
        size_t len = c->outlen - c->outoff;
        union fdpass_buf cm;
        struct msghdr m = {0};
        struct iovec iov;
        ssize_t n;

        if (len > MSG_MAX) {
            len = MSG_MAX;
            while (len && c->out[c->outoff + len - 1] != '\n')
                len--;
            if (!len) /* no line is that long (LINE_MAX_): never cut */
                len = MSG_MAX;
        }
        iov.iov_base = c->out + c->outoff;
        iov.iov_len = len;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        if (c->sendfd >= 0)
            fdpass_attach(&m, &cm, c->sendfd);
        n = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            c->dead = true;
            break;
        }
        if (c->sendfd >= 0)
            close(c->sendfd);
        c->sendfd = -1;
        c->outoff += len;
        if (c->outoff == c->outlen) {
            free(c->out);
            c->out = NULL;
            c->outlen = c->outoff = 0;
            if (c->closing)
                c->dead = true;
        }
    }
    set_events(c);
}

/* The reply's last line; a reply grown past REPLY_MAX is replaced by an
 * error, never sent cut. */
static void reply_end(struct stubdmd_client *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_end(struct stubdmd_client *c, int rc, const char *fmt, ...)
{
    char msg[LINE_MAX_ - 64];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->overflow) {
        free(c->out);
        c->out = NULL;
        c->outlen = 0;
        c->overflow = false;
        rc = STUBDM_ELIMIT;
        snprintf(msg, sizeof(msg), "the reply exceeds %u bytes", REPLY_MAX);
    }
    if (rc) {
        /* an error carries nothing before it */
        free(c->out);
        c->out = NULL;
        c->outlen = 0;
        if (c->sendfd >= 0)
            close(c->sendfd);
        c->sendfd = -1;
        reply_line(c, "error %s %s", stubdm_errname(rc), msg);
    } else {
        reply_line(c, "ok%s%s", *msg ? " " : "", msg);
    }
    flush(c);
}

/* ---- jobs: save and restore ---------------------------------------------- */

static void end_job(struct stubdmd_client *c)
{
    stubdm_op_free(c->op); /* pending: cancelled, no callback */
    stubdm_console_free(c->con);
    if (c->jobfd >= 0)
        close(c->jobfd);
    c->op = NULL;
    c->con = NULL;
    c->jobfd = -1;
    c->job = JOB_NONE;
    c->served = NULL;
}

static void on_save_done(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_client *c = user;
    uint64_t bytes = stubdm_dm_save_bytes(op);
    struct stubdmd_served *s = c->served;

    stubdmd_log(rc ? STUBDM_LOG_WARN : STUBDM_LOG_INFO, s,
                "control: save: %s%s%s", rc ? stubdm_errname(rc) : "done",
                rc ? ": " : "", rc ? stubdm_op_errmsg(op) : "");
    if (rc)
        reply_end(c, rc, "%s", stubdm_op_errmsg(op));
    else
        reply_end(c, 0, "bytes=%llu", (unsigned long long)bytes);
    end_job(c);
    set_events(c);
}

static void on_restore_done(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_client *c = user;
    stubdm_console_stats st;

    (void)op;
    stubdm_console_get_stats(c->con, &st, sizeof(st));
    stubdmd_log(rc ? STUBDM_LOG_WARN : STUBDM_LOG_INFO, c->served,
                "control: restore: %s%s%s", rc ? stubdm_errname(rc) : "done",
                rc ? ": " : "", rc ? stubdm_console_errmsg(c->con) : "");
    if (rc)
        reply_end(c, rc, "%s", stubdm_console_errmsg(c->con));
    else
        reply_end(c, 0, "bytes=%llu", (unsigned long long)st.bytes_in);
    end_job(c);
    set_events(c);
}

void stubdmd_control_forget(struct stubdmd_served *s)
{
    for (struct stubdmd_client *c = s->d->clients; c; c = c->next) {
        if (c->served != s || c->job == JOB_NONE)
            continue;
        end_job(c);
        reply_end(c, STUBDM_EDOMAIN_GONE,
                  "dom%u is no longer served (gone, or stubdmd stops)",
                  s->stub);
    }
}

/* ---- requests ------------------------------------------------------------ */

/* Digits only, no leading zero, at most max. */
static bool parse_num(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s || (s[0] == '0' && s[1]))
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static struct stubdmd_served *find_stub(struct stubdmd *d, uint64_t stub)
{
    for (struct stubdmd_served *s = d->served; s; s = s->next)
        if (s->stub == stub && !s->gone)
            return s;
    return NULL;
}

/* The served stubdomain a request names, or an error reply. */
static struct stubdmd_served *named(struct stubdmd_client *c, const char *w)
{
    struct stubdmd_served *s;
    uint64_t v;

    if (!parse_num(w, DOMID_MAX, &v)) {
        reply_end(c, STUBDM_EINVAL, "bad stubdomain domid '%s'", w);
        return NULL;
    }
    if (!(s = find_stub(c->d, v))) {
        reply_end(c, STUBDM_ENOENT, "dom%u is not served by this stubdmd",
                  (unsigned)v);
        return NULL;
    }
    for (struct stubdmd_client *o = c->d->clients; o; o = o->next)
        if (o->served == s && o->job != JOB_NONE) {
            reply_end(c, STUBDM_EBUSY, "a %s of dom%u is running",
                      o->job == JOB_SAVE ? "save" : "restore", s->stub);
            return NULL;
        }
    return s;
}

static const char *xenbus_state(const stubdm_console *con)
{
    static const char *const names[] = {
        "unknown",   "initialising", "initwait", "initialised",
        "connected", "closing",      "closed",
    };
    int st;

    if (!con)
        return "none";
    if (stubdm_console_result(con) != STUBDM_ESTATE)
        return "ended";
    st = stubdm_console_state(con);
    return st >= 1 && st <= 6 ? names[st] : names[0];
}

/* ready; opening (never connected yet, or its open failed); lost (was
 * ready, the connection ended). */
static const char *qmp_state(const stubdm_qmp *q)
{
    stubdm_qmp_stats st;

    if (!q)
        return "none";
    if (stubdm_qmp_is_ready(q))
        return "ready";
    stubdm_qmp_get_stats(q, &st, sizeof(st));
    return st.connects ? "lost" : "opening";
}

static void list_one(struct stubdmd_client *c, const struct stubdmd_served *s)
{
    stubdm_console_stats cs = {0};
    unsigned long long clients = 0;
    char serials[LINE_MAX_ / 2] = "";
    size_t off = 0;

    if (s->con0)
        stubdm_console_get_stats(s->con0, &cs, sizeof(cs));
    /* Both sockets' clients (qmp-libxl-<guest>, qmp-event-<guest>). */
    for (size_t i = 0; i < sizeof(s->proxy) / sizeof(s->proxy[0]); i++) {
        stubdm_qmp_proxy_stats ps = {0};
        if (s->proxy[i] &&
            !stubdm_qmp_proxy_get_stats(s->proxy[i], &ps, sizeof(ps)))
            clients += ps.clients;
    }
    for (unsigned n = 3; n < 3 + STUBDM_CONSOLE_MAX_SERIALS; n++) {
        const char *tty = stubdmd_console_serial_tty(s, n);
        int k;
        if (!tty || off >= sizeof(serials))
            continue;
        k = snprintf(serials + off, sizeof(serials) - off, " con%u=%s", n,
                     tty);
        off += k > 0 ? (size_t)k : 0;
    }
    reply_line(c,
               "served stub=%u guest=%u name=%s con0=%s logged=%llu "
               "dropped=%llu qmp=%s clients=%llu%s",
               s->stub, s->guest, s->name, xenbus_state(s->con0),
               (unsigned long long)(cs.bytes_out - cs.bytes_dropped),
               (unsigned long long)cs.bytes_dropped, qmp_state(s->q), clients,
               serials);
}

static void req_list(struct stubdmd_client *c, char **w, int nw)
{
    unsigned n = 0;

    (void)w;
    if (nw != 1) {
        reply_end(c, STUBDM_EINVAL, "usage: list");
        return;
    }
    for (struct stubdmd_served *s = c->d->served; s; s = s->next)
        if (!s->gone) {
            list_one(c, s);
            n++;
        }
    reply_end(c, 0, "pid=%ld served=%u", (long)getpid(), n);
}

/* The client's file: a regular file, pipe or socket, open for writing
 * (save) or reading (restore). */
static bool file_ok(struct stubdmd_client *c, int fd, bool write)
{
    struct stat st;
    int fl = fcntl(fd, F_GETFL);

    if (fstat(fd, &st) < 0 || fl < 0 ||
        !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode) ||
          S_ISSOCK(st.st_mode))) {
        reply_end(c, STUBDM_EINVAL,
                  "the fd passed is not a regular file, pipe or socket");
        return false;
    }
    if ((fl & O_ACCMODE) != O_RDWR &&
        (fl & O_ACCMODE) != (write ? O_WRONLY : O_RDONLY)) {
        reply_end(c, STUBDM_EINVAL, "the fd passed is not open for %s",
                  write ? "writing" : "reading");
        return false;
    }
    return true;
}

static void req_save(struct stubdmd_client *c, char **w, int nw, int *fds,
                     int nfds)
{
    struct stubdmd_served *s;
    uint64_t tmo, limit;
    int rc;

    if (nw != 4 || nfds != 1 || !parse_num(w[2], 3600000, &tmo) || !tmo ||
        !parse_num(w[3], UINT64_C(1) << 40, &limit)) {
        reply_end(c, STUBDM_EINVAL,
                  "usage: save STUB TIMEOUT_MS LIMIT, with the output "
                  "file's fd");
        return;
    }
    if (!(s = named(c, w[1])) || !file_ok(c, fds[0], true))
        return;
    if (!stubdm_qmp_is_ready(s->q)) {
        reply_end(c, STUBDM_ESTATE, "QMP of dom%u is %s, not ready", s->stub,
                  qmp_state(s->q));
        return;
    }
    stubdm_ctx_set_save_limit(s->ctx, limit);
    rc = stubdm_dm_save_qmp(s->q, fds[0], (int)tmo, on_save_done, c, &c->op);
    if (rc) {
        reply_end(c, rc, "%s", stubdm_ctx_errmsg(s->ctx));
        return;
    }
    stubdmd_log(STUBDM_LOG_INFO, s, "control: save started");
    c->job = JOB_SAVE;
    c->served = s;
    c->jobfd = fds[0];
    fds[0] = -1;
}

/* Console 2 exists: its backend's state, under dom0's own directory
 * (nothing but dom0 writes there), was made by the contract of a spawn
 * for restore. */
static bool has_restore_console(struct stubdmd *d, uint32_t stub)
{
    char path[96];
    unsigned len = 0;
    char *v;

    snprintf(path, sizeof(path), "/local/domain/0/backend/console/%u/2/state",
             stub);
    v = xs_read(d->xs, XBT_NULL, path, &len);
    free(v);
    return v != NULL;
}

static void req_restore(struct stubdmd_client *c, char **w, int nw, int *fds,
                        int nfds)
{
    struct stubdmd_served *s;
    stubdm_console_opts *o = NULL;
    int rc;

    if (nw != 2 || nfds != 1) {
        reply_end(c, STUBDM_EINVAL,
                  "usage: restore STUB, with the input file's fd");
        return;
    }
    if (!(s = named(c, w[1])) || !file_ok(c, fds[0], false))
        return;
    if (stubdm_qmp_is_ready(s->q)) {
        reply_end(c, STUBDM_ESTATE,
                  "the device model of dom%u runs: restore feeds a "
                  "stubdomain spawned for restore, waiting on console 2",
                  s->stub);
        return;
    }
    if (!has_restore_console(c->d, s->stub)) {
        reply_end(c, STUBDM_ENOENT,
                  "dom%u has no console 2: it was not spawned for restore",
                  s->stub);
        return;
    }
    rc = stubdm_console_opts_new(&o);
    if (!rc)
        rc = stubdm_console_opts_set_restore_fd(o, fds[0]);
    if (!rc)
        rc = stubdm_console_serve(s->ctx, s->stub, STUBDM_CONSOLE_RESTORE, o,
                                  on_restore_done, c, &c->con);
    stubdm_console_opts_free(o);
    if (rc) {
        reply_end(c, rc, "console 2: %s", stubdm_ctx_errmsg(s->ctx));
        return;
    }
    stubdmd_log(STUBDM_LOG_INFO, s, "control: restore started");
    c->job = JOB_RESTORE;
    c->served = s;
    c->jobfd = fds[0];
    fds[0] = -1;
}

static void req_console(struct stubdmd_client *c, char **w, int nw)
{
    struct stubdmd_served *s;
    const char *tty;
    uint64_t n;
    int fd;

    if (nw != 3 || !parse_num(w[2], 2 + STUBDM_CONSOLE_MAX_SERIALS, &n)) {
        reply_end(c, STUBDM_EINVAL, "usage: console STUB N (N: 3 to %u)",
                  2 + STUBDM_CONSOLE_MAX_SERIALS);
        return;
    }
    if (!(s = named(c, w[1])))
        return;
    if (n < 3 || !(tty = stubdmd_console_serial_tty(s, (unsigned)n))) {
        reply_end(c, STUBDM_ENOENT,
                  "console %u of dom%u is not a serial served as a pty",
                  (unsigned)n, s->stub);
        return;
    }
    /* The path is the library's (stubdm_console_tty), never a client's. */
    fd = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        reply_end(c, STUBDM_EFAIL, "opening %s: %s", tty, strerror(errno));
        return;
    }
    c->sendfd = fd;
    reply_end(c, 0, "tty=%s", tty);
}

/* Printable ASCII words separated by single spaces; one trailing newline
 * allowed.  Splits buf in place. */
static int split(char *buf, size_t len, char **w)
{
    int nw = 0;

    if (len && buf[len - 1] == '\n')
        len--;
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return -1;
    if (!len || buf[0] == ' ' || buf[len - 1] == ' ' || strstr(buf, "  "))
        return -1;
    for (char *p = buf; p; nw++) {
        if (nw == WORDS_MAX)
            return -1;
        w[nw] = p;
        if ((p = strchr(p, ' ')))
            *p++ = '\0';
    }
    return nw;
}

static void request(struct stubdmd_client *c, char *buf, size_t len, int *fds,
                    int nfds)
{
    char *w[WORDS_MAX];
    int nw = split(buf, len, w);

    if (nw < 0) {
        reply_end(c, STUBDM_EINVAL,
                  "malformed request: printable ASCII words separated by "
                  "single spaces");
        return;
    }
    if (nfds && strcmp(w[0], "save") && strcmp(w[0], "restore")) {
        reply_end(c, STUBDM_EINVAL, "'%.32s' takes no fd", w[0]);
        return;
    }
    if (!strcmp(w[0], "list"))
        req_list(c, w, nw);
    else if (!strcmp(w[0], "save"))
        req_save(c, w, nw, fds, nfds);
    else if (!strcmp(w[0], "restore"))
        req_restore(c, w, nw, fds, nfds);
    else if (!strcmp(w[0], "console"))
        req_console(c, w, nw);
    else
        reply_end(c, STUBDM_ENOTSUP,
                  "unknown request '%.32s' (list, save, restore, console)",
                  w[0]);
}

/* The fds of a message; *trunc if it carried more than FDS_MAX. */
static int take_fds(struct msghdr *m, int *fds)
{
    int n = 0;

    for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR(m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
            if (n < FDS_MAX)
                fds[n++] = fd;
            else
                close(fd);
        }
    }
    return n;
}

/* One message from fd, without blocking: its bytes in buf (REQ_MAX + 1
 * bytes), its fds (at most FDS_MAX, close-on-exec) in fds, its recvmsg
 * flags (MSG_TRUNC, MSG_CTRUNC) in *flags.  Returns recvmsg's count. */
static ssize_t recv_request(int fd, char *buf, int *fds, int *nfds, int *flags)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * FDS_MAX)];
    } cm;
    struct iovec iov = {buf, REQ_MAX + 1};
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = cm.b,
                       .msg_controllen = sizeof(cm.b)};
    ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

    *nfds = n < 0 ? 0 : take_fds(&m, fds);
    *flags = n < 0 ? 0 : m.msg_flags;
    return n;
}

static void on_readable(struct stubdmd_client *c, uint32_t events)
{
    char buf[REQ_MAX + 1];
    int fds[FDS_MAX], nfds, flags;
    ssize_t n = recv_request(c->fd, buf, fds, &nfds, &flags);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n < 0 || (n == 0 && (events & (EPOLLRDHUP | EPOLLHUP)))) {
        c->dead = true; /* gone: a job of its own ends with it */
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return;
    }
    if (flags & MSG_TRUNC)
        reply_end(c, STUBDM_ELIMIT, "request over %d bytes", REQ_MAX);
    else if (flags & MSG_CTRUNC)
        reply_end(c, STUBDM_EINVAL, "more than %d fds", FDS_MAX);
    else
        request(c, buf, (size_t)n, fds, nfds);
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

void stubdmd_control_event(struct stubdmd_client *c, uint32_t events)
{
    if (c->dead)
        return;
    if (events & EPOLLOUT)
        flush(c);
    if (!c->dead && (events & EPOLLIN) && !c->out && c->job == JOB_NONE)
        on_readable(c, events);
    else if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        c->dead = true;
}

/* ---- the listening socket ------------------------------------------------ */

/* Discard what a refused client has sent already: closing a unix socket
 * with unread messages makes the peer's next read fail with ECONNRESET
 * before it reads our reply. */
static void discard(int fd)
{
    for (int i = 0; i < FDS_MAX; i++) {
        char buf[REQ_MAX + 1];
        int fds[FDS_MAX], nfds, flags;
        ssize_t n = recv_request(fd, buf, fds, &nfds, &flags);

        while (nfds--)
            close(fds[nfds]);
        if (n <= 0)
            return;
    }
}

/* One line and close, for a client never served. */
static void refuse(int fd, int rc, const char *msg)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "error %s %s\n", stubdm_errname(rc),
                     msg);

    if (send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* it is closed either way */
    }
    discard(fd);
    close(fd);
}

static bool peer_allowed(int fd, uid_t *uid)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
        len != sizeof(cr))
        return false;
    *uid = cr.uid;
    return cr.uid == 0 || cr.uid == geteuid();
}

static void add_client(struct stubdmd *d, int fd)
{
    struct stubdmd_client *c = calloc(1, sizeof(*c));
    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP};

    if (!c) {
        refuse(fd, STUBDM_ENOMEM, "out of memory");
        return;
    }
    c->d = d;
    c->fd = fd;
    c->sendfd = c->jobfd = -1;
    c->src.kind = SRC_CLIENT;
    c->src.client = c;
    e.data.ptr = &c->src;
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        free(c);
        refuse(fd, STUBDM_EFAIL, "cannot watch the connection");
        return;
    }
    c->next = d->clients;
    d->clients = c;
    d->nclients++;
}

void stubdmd_control_accept(struct stubdmd *d)
{
    /* Bounded work per wake-up: the rest stay in the backlog. */
    for (int i = 0; i < CLIENTS_MAX; i++) {
        int fd = accept4(d->ctlfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        uid_t uid = (uid_t)-1;
        char msg[96];

        if (fd < 0)
            return;
        if (!peer_allowed(fd, &uid)) {
            stubdmd_log(STUBDM_LOG_WARN, NULL,
                        "control: refused a client of uid %ld",
                        (long)(int)uid);
            snprintf(msg, sizeof(msg),
                     "uid %ld may not use the control socket (root only)",
                     (long)(int)uid);
            refuse(fd, STUBDM_EPERM, msg);
        } else if (d->nclients >= CLIENTS_MAX) {
            refuse(fd, STUBDM_EBUSY, "too many control clients");
        } else {
            add_client(d, fd);
        }
    }
}

int stubdmd_control_start(struct stubdmd *d)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &d->ctl_src};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control",
                     d->conf->run_dir);
    int rc;

    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "control: %s/control: too long",
                    d->conf->run_dir);
        return -1;
    }
    d->ctl_src.kind = SRC_CONTROL;
    d->ctlfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      0);
    /* Ours under the lock: a socket left by a killed stubdmd goes. */
    unlink(sa.sun_path);
    /* The socket's mode before bind is the file's (less the umask): 0600
     * from its first moment, and the process's umask untouched. */
    rc = d->ctlfd < 0 || fchmod(d->ctlfd, 0600) < 0
             ? -1
             : bind(d->ctlfd, (struct sockaddr *)&sa, sizeof(sa));
    if (rc < 0 || listen(d->ctlfd, CLIENTS_MAX) < 0 ||
        epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->ctlfd, &e) < 0) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "control: %s: %s", sa.sun_path,
                    strerror(errno));
        return -1;
    }
    stubdmd_log(STUBDM_LOG_INFO, NULL, "control socket %s", sa.sun_path);
    return 0;
}

static void client_free(struct stubdmd_client *c)
{
    end_job(c);
    epoll_ctl(c->d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->sendfd >= 0)
        close(c->sendfd);
    free(c->out);
    c->d->nclients--;
    free(c);
}

void stubdmd_control_sweep(struct stubdmd *d, bool all)
{
    struct stubdmd_client **pp = &d->clients;

    while (*pp) {
        struct stubdmd_client *c = *pp;
        if (!all && !c->dead) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        client_free(c);
    }
}

void stubdmd_control_stop(struct stubdmd *d)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

    stubdmd_control_sweep(d, true);
    if (d->ctlfd < 0)
        return;
    close(d->ctlfd);
    d->ctlfd = -1;
    snprintf(path, sizeof(path), "%s/control", d->conf->run_dir);
    unlink(path);
}
