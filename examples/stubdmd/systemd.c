/*
 * The service manager's side of stubdmd, by hand: systemd's notification
 * protocol (sd_notify(3): one datagram of "KEY=VALUE" lines to the unix
 * socket $NOTIFY_SOCKET, file descriptors as SCM_RIGHTS) and its fd passing
 * at start (sd_listen_fds(3): fds 3.. with $LISTEN_FDS, $LISTEN_FDNAMES,
 * $LISTEN_PID).  Both are stable interfaces that systemd documents for
 * reimplementation; linking libsystemd for them would add a dependency to
 * hosts without systemd and a library to the daemon's attack surface for
 * some sixty lines.
 *
 * Readiness: READY=1 once the stubdomains running at start are adopted,
 * STATUS= with how many are served, STOPPING=1 on SIGTERM.  Without a
 * service manager, --ready-fd N gets a newline and is closed at the same
 * moment (the s6 / dinit convention).
 *
 * The QMP proxies' listening sockets outlive a restart: each is given to
 * the manager's fd store (FDSTORE=1, FDNAME=qmp-libxl-<guest>) and passed
 * back to the next instance, so a client that connects while no stubdmd
 * runs waits in the socket's backlog and is served by the next one.
 */
#include "stubdmd.h"
#include "fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_FDS_START 3
#define LISTEN_BACKLOG 128 /* clients queued while no stubdmd runs */

/* ---- the notification socket -------------------------------------------- */

static int notify_open(struct stubdmd_sd *sd)
{
    const char *e = getenv("NOTIFY_SOCKET");
    size_t n;

    sd->notify_fd = -1;
    if (!e || !*e)
        return 0;
    n = strlen(e);
    if ((e[0] != '/' && e[0] != '@') || n >= sizeof(sd->addr.sun_path)) {
        stubdmd_log(STUBDM_LOG_WARN, NULL,
                    "NOTIFY_SOCKET '%s' is not a unix socket path: not "
                    "notifying",
                    e);
        return 0;
    }
    memset(&sd->addr, 0, sizeof(sd->addr));
    sd->addr.sun_family = AF_UNIX;
    memcpy(sd->addr.sun_path, e, n);
    if (e[0] == '@') /* abstract namespace */
        sd->addr.sun_path[0] = '\0';
    sd->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                              (e[0] == '@' ? 0 : 1));
    sd->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sd->notify_fd < 0)
        return -1;
    return 0;
}

/* One notification: msg, with fd (>= 0) as SCM_RIGHTS.  Best effort: a
 * manager that does not take it is logged, never fatal. */
static void notify(struct stubdmd *d, const char *msg, int fd)
{
    struct stubdmd_sd *sd = &d->sd;
    union fdpass_buf cbuf;
    struct iovec iov = {(void *)msg, strlen(msg)};
    struct msghdr m = {.msg_name = &sd->addr,
                       .msg_namelen = sd->addrlen,
                       .msg_iov = &iov,
                       .msg_iovlen = 1};

    if (sd->notify_fd < 0)
        return;
    if (fd >= 0)
        fdpass_attach(&m, &cbuf, fd);
    while (sendmsg(sd->notify_fd, &m, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR)
            continue;
        stubdmd_log(STUBDM_LOG_WARN, NULL, "notifying the service manager: %s",
                    strerror(errno));
        return;
    }
}

/* ---- the fds passed at start --------------------------------------------- */

static bool env_uint(const char *name, unsigned long max, unsigned long *out)
{
    const char *e = getenv(name);
    char *end;

    if (!e || !*e || *e < '0' || *e > '9')
        return false;
    errno = 0;
    *out = strtoul(e, &end, 10);
    return !errno && !*end && *out <= max;
}

/* $LISTEN_FDNAMES' i-th name (colon-separated), or "" */
static void nth_name(const char *names, size_t i, char *out, size_t sz)
{
    const char *p = names ? names : "";

    for (; i > 0 && p; i--) {
        p = strchr(p, ':');
        if (p)
            p++;
    }
    out[0] = '\0';
    if (p) {
        size_t n = strcspn(p, ":");
        if (n < sz) {
            memcpy(out, p, n);
            out[n] = '\0';
        }
    }
}

/* The fds systemd passed, if they are for this process ($LISTEN_PID).
 * The variables are removed: nothing this process starts may take them. */
static int listen_fds_take(struct stubdmd_sd *sd)
{
    const char *names = getenv("LISTEN_FDNAMES");
    unsigned long pid, n;

    if (!env_uint("LISTEN_PID", 0x7fffffffUL, &pid) ||
        (pid_t)pid != getpid() || !env_uint("LISTEN_FDS", 4096, &n) || !n)
        goto out;
    sd->passed = calloc(n, sizeof(*sd->passed));
    if (!sd->passed)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct stubdmd_passed *p = &sd->passed[sd->npassed];
        int fd = LISTEN_FDS_START + (int)i;
        nth_name(names, i, p->name, sizeof(p->name));
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            continue;
        p->fd = fd;
        sd->npassed++;
        stubdmd_log(STUBDM_LOG_DEBUG, NULL,
                    "passed by the service manager: "
                    "fd %d '%s'",
                    fd, p->name);
    }
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return 0;
}

int stubdmd_sd_start(struct stubdmd *d)
{
    d->sd.status_served = (size_t)-1;
    if (notify_open(&d->sd) < 0 || listen_fds_take(&d->sd) < 0) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "the service manager's socket: %s",
                    strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- listening sockets that outlive the process -------------------------- */

/* A new listening socket at path, mode 0600 whatever the umask (bound
 * under umask 0177: never reachable with a wider mode), a stale socket
 * there replaced; any other kind of file is not.  Bound at path itself,
 * not renamed into place, so that the proxy's log lines name it. */
static int bind_at(const char *path, dev_t *dev, ino_t *ino)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    mode_t old;
    int fd, err;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0 && (!S_ISSOCK(st.st_mode) || unlink(path))) {
        errno = S_ISSOCK(st.st_mode) ? errno : EEXIST;
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    old = umask(0177);
    err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ? errno : 0;
    umask(old);
    if (err || listen(fd, LISTEN_BACKLOG) || lstat(path, &st)) {
        err = err ? err : errno;
        close(fd);
        errno = err;
        return -1;
    }
    *dev = st.st_dev;
    *ino = st.st_ino;
    return fd;
}

static struct stubdmd_passed *passed_find(struct stubdmd_sd *sd,
                                          const char *name)
{
    for (size_t i = 0; i < sd->npassed; i++)
        if (sd->passed[i].fd >= 0 && !strcmp(sd->passed[i].name, name))
            return &sd->passed[i];
    return NULL;
}

/* The passed fd, if it still listens and path is still a socket (taken
 * to be the one it is bound to: the lock makes the directory's
 * qmp-libxl-* ours).  Else it is dropped from the store. */
static int passed_take(struct stubdmd *d, struct stubdmd_passed *p,
                       const char *path, struct stubdmd_sock *out)
{
    int fd = p->fd, on = 0;
    socklen_t len = sizeof(on);
    struct stat st;
    char msg[128];

    p->fd = -1;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on &&
        lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        out->fd = fd;
        out->dev = st.st_dev;
        out->ino = st.st_ino;
        return 0;
    }
    snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", p->name);
    notify(d, msg, -1);
    close(fd);
    return -1;
}

int stubdmd_sock_listen(struct stubdmd *d, const char *name, const char *path,
                        struct stubdmd_sock *out)
{
    struct stubdmd_passed *p = passed_find(&d->sd, name);
    char msg[128];

    snprintf(out->name, sizeof(out->name), "%s", name);
    snprintf(out->path, sizeof(out->path), "%s", path);
    if (p && passed_take(d, p, path, out) == 0) {
        stubdmd_log(STUBDM_LOG_DEBUG, NULL,
                    "%s: the socket kept by the "
                    "service manager",
                    path);
        return out->fd;
    }
    out->fd = bind_at(path, &out->dev, &out->ino);
    if (out->fd < 0) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "cannot listen on %s: %s", path,
                    strerror(errno));
        return -1;
    }
    snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
    notify(d, msg, out->fd);
    return out->fd;
}

/* The file is removed only while it is still the socket made or taken
 * here (another instance may have replaced it). */
static void unlink_ours(const struct stubdmd_sock *k)
{
    struct stat st;

    if (lstat(k->path, &st) == 0 && st.st_dev == k->dev && st.st_ino == k->ino)
        unlink(k->path);
}

void stubdmd_sock_close(struct stubdmd *d, struct stubdmd_sock *k, bool gone)
{
    char msg[128];

    if (k->fd < 0)
        return;
    if (gone || d->sd.notify_fd < 0) {
        /* The stubdomain is gone, or no manager keeps the socket for the
         * next instance: nobody may find it any more. */
        unlink_ours(k); /* first: no client finds it meanwhile */
        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", k->name);
        notify(d, msg, -1);
    }
    close(k->fd);
    k->fd = -1;
}

/* ---- readiness and status ------------------------------------------------ */

static size_t served_count(const struct stubdmd *d)
{
    size_t n = 0;

    for (const struct stubdmd_served *s = d->served; s; s = s->next)
        n++;
    return n;
}

void stubdmd_sd_status(struct stubdmd *d)
{
    size_t n;
    char msg[96];

    if (d->sd.notify_fd < 0 || (n = served_count(d)) == d->sd.status_served)
        return;
    d->sd.status_served = n;
    snprintf(msg, sizeof(msg), "STATUS=serving %zu stubdomain%s", n,
             n == 1 ? "" : "s");
    notify(d, msg, -1);
}

/* The passed sockets no stubdomain took.  Once ready (drop): it died
 * while no stubdmd ran, so out of the store; the file stays (a client finds
 * ECONNREFUSED, as after any dead server) for the cleanup of gone
 * stubdomains.  A start that failed before: only our copies closed, the
 * store keeps them for the next attempt. */
static void passed_release(struct stubdmd *d, bool drop)
{
    char msg[128];

    for (size_t i = 0; i < d->sd.npassed; i++) {
        struct stubdmd_passed *p = &d->sd.passed[i];
        if (p->fd < 0)
            continue;
        if (!drop) {
            close(p->fd);
            continue;
        }
        stubdmd_log(STUBDM_LOG_INFO, NULL,
                    "'%s' passed by the service manager: no stubdomain for "
                    "it, dropped",
                    p->name);
        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", p->name);
        notify(d, msg, -1);
        close(p->fd);
        p->fd = -1;
    }
    free(d->sd.passed);
    d->sd.passed = NULL;
    d->sd.npassed = 0;
}

void stubdmd_sd_ready(struct stubdmd *d, int ready_fd)
{
    char msg[96];

    passed_release(d, true);
    d->sd.status_served = served_count(d);
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving %zu stubdomain%s",
             d->sd.status_served, d->sd.status_served == 1 ? "" : "s");
    notify(d, msg, -1);
    if (ready_fd >= 0) {
        if (write(ready_fd, "\n", 1) < 0)
            stubdmd_log(STUBDM_LOG_WARN, NULL, "--ready-fd %d: %s", ready_fd,
                        strerror(errno));
        close(ready_fd);
    }
}

void stubdmd_sd_stopping(struct stubdmd *d)
{
    notify(d, "STOPPING=1\nSTATUS=stopping: letting every stubdomain go", -1);
}

void stubdmd_sd_stop(struct stubdmd *d)
{
    passed_release(d, false);
    if (d->sd.notify_fd >= 0)
        close(d->sd.notify_fd);
    d->sd.notify_fd = -1;
}
