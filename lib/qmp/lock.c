/*
 * The cross-process QMP lock: one flock()ed file per connection.
 *
 * Two protocols share the code:
 *
 *  - the library's own (/run/xen/libstubdm/qmp-<stubdom>-<guest>.lock):
 *    the file is never unlinked, so holding the flock is enough;
 *  - libxl's (XEN_LIB_DIR/userdata-l.<guest>.<uuid>.qmp-socket-lock, see
 *    libxl__ev_slowlock_lock and libxl__unlock_file in libxl 4.17): the
 *    holder unlinks the file before it unlocks, so whoever acquires a flock
 *    must check that the inode it locked is still the one at the path
 *    (fstat against stat) and start again if not.  A client that skipped
 *    the check could hold an unlinked inode while libxl, creating a new
 *    file, holds the real one; one that unlocked before unlinking would let
 *    a waiter pass the check on an inode about to disappear.
 *
 * Never blocking either way: LOCK_EX | LOCK_NB, the waiting modes retry on
 * a timer in qmp.c.  Release is LOCK_UN then close: the descriptor is
 * O_CLOEXEC, but a child forked without exec shares the open file
 * description, and closing only our copy would leave the lock held by it.
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
/* Stale inodes in a row before giving up this try (the timer retries): each
 * one means a holder released between our open and our flock. */
#define MAX_STALE 16

void stubdm__qmplock_init(struct stubdm__qmplock *l)
{
    l->fd = -1;
    l->unlink_path = NULL;
}

char *stubdm__qmplock_default_path(bool simulated, const char *simdir,
                                   uint32_t stubdom, uint32_t guest)
{
    if (simulated && simdir)
        return stubdm__sprintf("%s/qmp-vchan/%u.%u.lock", simdir, stubdom,
                               guest);
    return stubdm__sprintf(DEFAULT_LOCK_DIR "/qmp-%u-%u.lock", stubdom, guest);
}

char *stubdm__teardown_lock_path(bool simulated, const char *simdir,
                                 uint32_t stubdom)
{
    if (simulated && simdir)
        return stubdm__sprintf("%s/teardown-%u.lock", simdir, stubdom);
    return stubdm__sprintf(DEFAULT_LOCK_DIR "/teardown-%u.lock", stubdom);
}

char *stubdm__qmplock_libxl_path(const char *lib_dir, uint32_t guest,
                                 const char *uuid)
{
    /* libxl__userdata_path(gc, domid, "qmp-socket-lock", "l") */
    return stubdm__sprintf("%s/userdata-l.%u.%s.qmp-socket-lock", lib_dir,
                           guest, uuid);
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

static int open_lock(stubdm_ctx *ctx, const char *path, bool libxl)
{
    int fd, err;

    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    /* libxl's XEN_LIB_DIR exists wherever libxl runs: never create it. */
    if (fd < 0 && errno == ENOENT && !libxl) {
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
    return fd;
}

/* Unlock, then close (see the top of the file). */
static void drop(int fd)
{
    flock(fd, LOCK_UN);
    close(fd);
}

/* libxl's check after acquiring: is the locked inode still at path?
 * 1 yes, 0 no (unlinked or replaced: try again), <0 a failure. */
static int still_linked(stubdm_ctx *ctx, int fd, const char *path)
{
    struct stat fst, st;

    if (fstat(fd, &fst) != 0)
        return stubdm__fail(ctx, STUBDM_EFAIL, errno, "fstat of %s: %s", path,
                            strerror(errno));
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return stubdm__fail(ctx, STUBDM_EFAIL, errno, "stat of %s: %s", path,
                            strerror(errno));
    }
    return st.st_dev == fst.st_dev && st.st_ino == fst.st_ino;
}

static int lock_fd(stubdm_ctx *ctx, int fd, const char *path)
{
    int err;

    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno;
        if (err == EINTR)
            continue;
        if (err == EWOULDBLOCK)
            return stubdm__fail(ctx, STUBDM_EBUSY, 0,
                                "QMP lock %s is held by another client", path);
        return stubdm__fail(ctx, STUBDM_EFAIL, err, "locking %s: %s", path,
                            strerror(err));
    }
    return 0;
}

int stubdm__qmplock_try(stubdm_ctx *ctx, struct stubdm__qmplock *l,
                        const char *path, bool libxl)
{
    int fd, rc;

    if (l->fd >= 0)
        return 0;
    for (int stale = 0; stale < MAX_STALE; stale++) {
        fd = open_lock(ctx, path, libxl);
        if (fd < 0)
            return fd;
        rc = lock_fd(ctx, fd, path);
        if (rc) {
            close(fd);
            return rc;
        }
        rc = libxl ? still_linked(ctx, fd, path) : 1;
        if (rc == 1) {
            l->fd = fd;
            l->unlink_path = libxl ? path : NULL;
            return 0;
        }
        drop(fd);
        if (rc < 0)
            return rc;
    }
    return stubdm__fail(ctx, STUBDM_EBUSY, 0,
                        "QMP lock %s was released and taken again %d times "
                        "while locking it",
                        path, MAX_STALE);
}

void stubdm__qmplock_release(struct stubdm__qmplock *l, bool inherited)
{
    if (l->fd < 0)
        return;
    if (inherited) {
        /* A forked child only closes: the lock belongs to the open file
         * description it shares with the parent, and so does the file. */
        close(l->fd);
    } else {
        /* Unlink first, as libxl__ev_slowlock_unlock: a waiter that gets
         * the flock then finds the inode gone and starts again. */
        if (l->unlink_path)
            unlink(l->unlink_path);
        drop(l->fd);
    }
    l->fd = -1;
    l->unlink_path = NULL;
}
