/*
 * The client side of stubdmd's control socket (docs/stubdmd.md, "Control
 * socket"): connect, send one request (with an fd), read the reply's
 * lines until its last ("ok ..." or "error NAME MESSAGE").
 */
#include "ctl.h"
#include "fdpass.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_REPLY_MAX (1u << 20) /* as the daemon's bound */
#define CTL_MSG_MAX 4096

const char *ctl_control_path(const struct ctl_global *g)
{
    return g->control ? g->control : CTL_CONTROL_DEFAULT;
}

int ctl_stubdmd_connect(const struct ctl_global *g, int *fd_out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = ctl_control_path(g);
    int fd;

    *fd_out = -1;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    *fd_out = fd;
    return 0;
}

bool ctl_stubdmd_absent(int err)
{
    return err == -ENOENT || err == -ECONNREFUSED;
}

static int send_request(int sock, const char *req, int fd)
{
    union fdpass_buf cm;
    struct iovec iov = {(void *)req, strlen(req)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

    if (fd >= 0)
        fdpass_attach(&m, &cm, fd);
    return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* One message appended to r->text; an fd it carries kept in r->fd. */
static int recv_message(int sock, struct ctl_stubdmd_reply *r)
{
    char buf[CTL_MSG_MAX + 1];
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } cm;
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = cm.b,
                       .msg_controllen = sizeof(cm.b)};
    ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    char *p;

    /* A refused client's request may be left unread by stubdmd's close:
     * the first read then fails with ECONNRESET (consumed), the next one
     * gets the reply. */
    if (n < 0 && errno == ECONNRESET && !r->reset) {
        r->reset = true;
        return 0;
    }
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
            h->cmsg_len == CMSG_LEN(sizeof(int)) && r->fd < 0)
            memcpy(&r->fd, CMSG_DATA(h), sizeof(int));
    if (n == 0)
        return -ECONNRESET; /* closed before the reply's end */
    if ((m.msg_flags & MSG_TRUNC) || r->len + (size_t)n > CTL_REPLY_MAX ||
        buf[n - 1] != '\n' || memchr(buf, '\0', (size_t)n))
        return -EPROTO;
    if (!(p = realloc(r->text, r->len + (size_t)n + 1)))
        return -ENOMEM;
    memcpy(p + r->len, buf, (size_t)n);
    r->text = p;
    r->len += (size_t)n;
    r->text[r->len] = '\0';
    return 1;
}

/* The reply's last line: "ok ..." or "error NAME MESSAGE". */
static bool parse_last(struct ctl_stubdmd_reply *r)
{
    char *end = r->text + r->len - 1, *line = end;
    const char *sp;

    while (line > r->text && line[-1] != '\n')
        line--;
    if (!strncmp(line, "ok", 2) && (line[2] == '\n' || line[2] == ' ')) {
        *end = '\0';
        r->last = line[2] == ' ' ? line + 3 : line + 2;
        r->rc = 0;
        return true;
    }
    if (strncmp(line, "error ", 6) || !(sp = strchr(line + 6, ' ')) ||
        sp > end)
        return false;
    *end = '\0';
    r->last = (char *)sp + 1;
    r->rc = STUBDM_EFAIL;
    for (int rc = -1; rc > -100; rc--)
        if (!strncmp(line + 6, stubdm_errname(rc), (size_t)(sp - line - 6)) &&
            strlen(stubdm_errname(rc)) == (size_t)(sp - line - 6))
            r->rc = rc;
    return true;
}

static bool complete(const struct ctl_stubdmd_reply *r)
{
    const char *line = r->text + r->len - 1;

    while (line > r->text && line[-1] != '\n')
        line--;
    return !strncmp(line, "ok", 2) || !strncmp(line, "error ", 6);
}

int ctl_stubdmd_call(int sock, const char *req, int fd, int timeout_ms,
                     struct ctl_stubdmd_reply *r)
{
    int64_t end = timeout_ms > 0 ? stubdm_now_ms() + timeout_ms : INT64_MAX;
    int rc = send_request(sock, req, fd);

    memset(r, 0, sizeof(*r));
    r->fd = -1;
    /* A refused client (EPERM, EBUSY) was sent its reply and closed:
     * read it even when the send failed. */
    for (;;) {
        struct pollfd p = {sock, POLLIN, 0};
        int n, got;

        if (r->len && complete(r))
            return parse_last(r) ? 0 : -EPROTO;
        if (ctl_interrupted())
            return -EINTR;
        if (stubdm_now_ms() >= end)
            return -ETIMEDOUT;
        n = poll(&p, 1, 100);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n <= 0)
            continue;
        if ((got = recv_message(sock, r)) < 0)
            return rc ? rc : got;
    }
}

void ctl_stubdmd_reply_free(struct ctl_stubdmd_reply *r)
{
    free(r->text);
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

bool ctl_stubdmd_value(const char *line, const char *key, char *out,
                       size_t cap)
{
    size_t k = strlen(key), n;

    for (const char *p = line; p && *p; p = strchr(p, ' ')) {
        if (*p == ' ')
            p++;
        if (strncmp(p, key, k) || p[k] != '=')
            continue;
        p += k + 1;
        n = strcspn(p, " \n");
        if (n >= cap)
            return false;
        memcpy(out, p, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

int ctl_stubdmd_report(const struct ctl_global *g, const char *what,
                       const struct ctl_stubdmd_reply *r)
{
    return ctl_report_error(NULL, g, what, r->rc, r->last);
}

int ctl_stubdmd_unreachable(stubdm_ctx *ctx, const struct ctl_global *g,
                            const char *what, int err)
{
    char msg[512];

    snprintf(msg, sizeof(msg), "stubdmd's control socket %s: %s",
             ctl_control_path(g), strerror(-err));
    return ctl_report_error(ctx, g, what,
                            err == -EACCES || err == -EPERM ? STUBDM_EPERM
                                                            : STUBDM_EFAIL,
                            msg);
}
