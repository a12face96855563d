/*
 * QMP transports: libxenvchan (real Xen) and the unix-socket stand-in used
 * on the simulated host.  Everything is non-blocking; neither transport
 * spawns a helper process (libxl runs vchan-socket-proxy in dom0 for this).
 */
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "qmp/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <libxenvchan.h>
#include <xentoollog.h>

void stubdm__qmpt_init(struct stubdm__qmpt *t)
{
    memset(t, 0, sizeof(*t));
    t->fd = -1;
}

const char *stubdm__qmpt_name(const struct stubdm__qmpt *t)
{
    switch (t->kind) {
    case STUBDM__QMPT_VCHAN:
        return "vchan";
    case STUBDM__QMPT_UNIX:
        return "unix socket";
    default:
        return "no transport";
    }
}

/* ---- the simulated host's unix socket ----------------------------------- */

int stubdm__qmpt_sim_path(const char *simdir, uint32_t stubdom, uint32_t guest,
                          char *out, size_t outlen)
{
    struct sockaddr_un sa;
    size_t max = outlen < sizeof(sa.sun_path) ? outlen : sizeof(sa.sun_path);
    int n = snprintf(out, outlen, "%s/qmp-vchan/%u.%u.sock", simdir, stubdom,
                     guest);

    if (n < 0 || (size_t)n >= max)
        return STUBDM_ELIMIT;
    return 0;
}

char *stubdm__qmpt_default_simdir(void)
{
    const char *env = getenv("STUBDM_SIM_DIR");
    char *copy, *dir;

    if (env && *env)
        return stubdm__strdup(env);
    env = getenv("XENSTORED_PATH");
    if (!env || !*env)
        return NULL;
    copy = stubdm__strdup(env);
    if (!copy)
        return NULL;
    dir = stubdm__strdup(dirname(copy));
    free(copy);
    return dir;
}

int stubdm__qmpt_connect_unix(stubdm_ctx *ctx, struct stubdm__qmpt *t,
                              const char *path)
{
    struct sockaddr_un sa;
    int fd, err;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path))
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "QMP socket path too long: %s", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return stubdm__fail(ctx, STUBDM_EVCHAN, errno, "socket: %s",
                            strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
        errno != EINPROGRESS) {
        err = errno;
        close(fd);
        if (err == ENOENT || err == ECONNREFUSED || err == EAGAIN)
            return stubdm__fail(ctx, STUBDM_ENOENT, err,
                                "nothing listens on %s: %s", path,
                                strerror(err));
        return stubdm__fail(ctx, STUBDM_EVCHAN, err, "connecting to %s: %s",
                            path, strerror(err));
    }
    /* A unix stream connect completes at once or fails (EINPROGRESS only
     * under memory pressure); a pending one shows up as writable later, and
     * writes before that return EAGAIN, which the caller handles. */
    t->kind = STUBDM__QMPT_UNIX;
    t->fd = fd;
    t->eof = false;
    return 0;
}

/* ---- libxenvchan -------------------------------------------------------- */

int stubdm__qmpt_connect_vchan(stubdm_ctx *ctx, struct stubdm__qmpt *t,
                               uint32_t stubdom, const char *xs_path)
{
    xentoollog_logger *logger = stubdm__xtl_logger_new(ctx, "vchan");
    struct libxenvchan *v;
    int fd;

    if (!logger)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "vchan logger");
    errno = 0;
    v = libxenvchan_client_init(logger, (int)stubdom, xs_path);
    if (!v) {
        int err = errno;
        stubdm__xtl_logger_free(logger);
        return stubdm__fail(ctx, STUBDM_EVCHAN, err,
                            "connecting the vchan of stubdomain %u at %s: %s",
                            stubdom, xs_path,
                            err ? strerror(err)
                                : "libxenvchan_client_init "
                                  "failed");
    }
    /* Never let a read or write sleep inside the library. */
    v->blocking = 0;
    fd = libxenvchan_fd_for_select(v);
    if (fd < 0) {
        libxenvchan_close(v);
        stubdm__xtl_logger_free(logger);
        return stubdm__fail(ctx, STUBDM_EVCHAN, 0,
                            "vchan of stubdomain %u has no event fd", stubdom);
    }
    t->kind = STUBDM__QMPT_VCHAN;
    t->vchan = v;
    t->xtl = logger;
    t->fd = fd;
    t->eof = false;
    return 0;
}

/* ---- I/O ---------------------------------------------------------------- */

void stubdm__qmpt_ack(struct stubdm__qmpt *t)
{
    if (t->kind == STUBDM__QMPT_VCHAN && t->vchan) {
        /* The fd was readable, so this does not block: it consumes the
         * pending event and unmasks the port. */
        libxenvchan_wait(t->vchan);
    }
}

ssize_t stubdm__qmpt_read(struct stubdm__qmpt *t, void *buf, size_t len)
{
    ssize_t n;

    if (t->eof)
        return STUBDM__QMPT_EOF;
    if (t->kind == STUBDM__QMPT_UNIX) {
        n = recv(t->fd, buf, len, MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n == 0) {
            t->eof = true;
            return STUBDM__QMPT_EOF;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return STUBDM__QMPT_AGAIN;
        if (errno == ECONNRESET) {
            t->eof = true;
            return STUBDM__QMPT_EOF;
        }
        return STUBDM__QMPT_ERR;
    }
    if (t->kind == STUBDM__QMPT_VCHAN) {
        struct libxenvchan *v = t->vchan;
        int avail = libxenvchan_data_ready(v);
        if (avail > 0) {
            int r = libxenvchan_read(v, buf,
                                     len > INT32_MAX ? INT32_MAX : len);
            if (r > 0)
                return r;
        }
        /* Pending data is always drained before the close is reported. */
        if (!libxenvchan_is_open(v)) {
            t->eof = true;
            return STUBDM__QMPT_EOF;
        }
        return STUBDM__QMPT_AGAIN;
    }
    errno = EBADF;
    return STUBDM__QMPT_ERR;
}

ssize_t stubdm__qmpt_write(struct stubdm__qmpt *t, const void *buf, size_t len)
{
    if (t->kind == STUBDM__QMPT_UNIX) {
        ssize_t n = send(t->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
            errno == ENOTCONN)
            return 0;
        return STUBDM__QMPT_ERR;
    }
    if (t->kind == STUBDM__QMPT_VCHAN) {
        struct libxenvchan *v = t->vchan;
        int space, r;
        if (!libxenvchan_is_open(v)) {
            errno = EPIPE;
            return STUBDM__QMPT_ERR;
        }
        space = libxenvchan_buffer_space(v);
        if (space <= 0)
            return 0;
        r = libxenvchan_write(v, buf,
                              len < (size_t)space ? len : (size_t)space);
        if (r < 0) {
            errno = EPIPE;
            return STUBDM__QMPT_ERR;
        }
        return r;
    }
    errno = EBADF;
    return STUBDM__QMPT_ERR;
}

void stubdm__qmpt_close(struct stubdm__qmpt *t, bool inherited)
{
    if (t->kind == STUBDM__QMPT_UNIX && t->fd >= 0)
        close(t->fd);
    if (t->kind == STUBDM__QMPT_VCHAN && t->vchan && !inherited) {
        /* Tells the server (cli_live = 0) so vchan-socket-proxy drops its
         * QEMU socket and is ready for the next client. */
        libxenvchan_close(t->vchan);
        stubdm__xtl_logger_free(t->xtl);
    }
    stubdm__qmpt_init(t);
}
