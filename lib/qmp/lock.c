/*
 * The cross-process QMP lock: one flock()ed file per (stubdom, guest).
 *
 * libxl serialises its QMP users with /var/lib/xen/userdata-l.<domid>.
 * <uuid>.qmp-socket-lock (held around each connection, taken in a forked
 * child because its flock blocks).  We hold ours for the life of the shared
 * connection and never block: a busy lock is either an error or retried on
 * a timer by the caller.
 */
#include "core/error.h"
#include "core/mem.h"
#include "qmp/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_LOCK_DIR "/run/xen/libstubdm"

void stubdm__qmplock_init(struct stubdm__qmplock *l)
{
    l->fd = -1;
}

char *stubdm__qmplock_default_path(bool simulated, const char *simdir,
                                   uint32_t stubdom, uint32_t guest)
{
    if (simulated && simdir)
        return stubdm__sprintf("%s/qmp-vchan/%u.%u.lock", simdir, stubdom,
                               guest);
    return stubdm__sprintf(DEFAULT_LOCK_DIR "/qmp-%u-%u.lock", stubdom, guest);
}

/* mkdir -p of path's parent directories. */
static int make_parents(const char *path)
{
    char *p = stubdm__strdup(path);
    int rc = 0;

    if (!p)
        return ENOMEM;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = errno;
            break;
        }
        *s = '/';
    }
    free(p);
    return rc;
}

int stubdm__qmplock_try(stubdm_ctx *ctx, struct stubdm__qmplock *l,
                        const char *path)
{
    int fd, err;

    if (l->fd >= 0)
        return 0;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == ENOENT) {
        err = make_parents(path);
        if (err)
            return stubdm__fail(ctx, STUBDM_EFAIL, err,
                                "creating the directory of QMP lock %s: %s",
                                path, strerror(err));
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0)
        return stubdm__fail(ctx, errno == EACCES ? STUBDM_EPERM : STUBDM_EFAIL,
                            errno, "opening QMP lock %s: %s", path,
                            strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno;
        close(fd);
        if (err == EWOULDBLOCK)
            return stubdm__fail(ctx, STUBDM_EBUSY, 0,
                                "QMP lock %s is held by another client", path);
        return stubdm__fail(ctx, STUBDM_EFAIL, err, "locking %s: %s", path,
                            strerror(err));
    }
    l->fd = fd;
    return 0;
}

void stubdm__qmplock_release(struct stubdm__qmplock *l, bool inherited)
{
    /* Unlocked explicitly: a copy of the descriptor in a child that
     * forked without exec would otherwise keep the lock after our close.
     * That child itself only closes: the lock belongs to the description
     * it shares with us. */
    if (l->fd >= 0 && !inherited)
        flock(l->fd, LOCK_UN);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}
