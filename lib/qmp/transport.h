/*
 * The byte pipe under a QMP connection: either a libxenvchan client to the
 * stubdomain's vchan server (a real Xen host) or, on the simulated host, a
 * unix socket standing in for the vchan rings.  qmp.c only sees this
 * interface: an fd to poll, non-blocking read and write, and a close.
 *
 * Both transports are found the same way, through xenstore: the stubdomain
 * writes <dm>/qmp-vchan/ring-ref and <dm>/qmp-vchan/event-channel when its
 * server is ready (dm = /local/domain/<stubdom>/device-model/<guest>).  The
 * simulated transport never takes the socket path from xenstore (the
 * stubdomain writes those values and is hostile): the path is derived from
 * a dom0-controlled directory and the domids, see docs/qmp.md.
 */
#ifndef STUBDM_QMP_TRANSPORT_H
#define STUBDM_QMP_TRANSPORT_H

#include "core/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/types.h>

enum stubdm__qmpt_kind {
    STUBDM__QMPT_NONE = 0,
    STUBDM__QMPT_VCHAN,
    STUBDM__QMPT_UNIX,
};

struct stubdm__qmpt {
    enum stubdm__qmpt_kind kind;
    int fd;      /* the fd to poll: socket or event channel; -1 closed */
    void *vchan; /* struct libxenvchan *, VCHAN only */
    void *xtl;   /* the logger handed to libxenvchan, VCHAN only */
    bool eof;    /* the peer closed */
};

/* Results of read/write besides a byte count (>= 0 means bytes). */
#define STUBDM__QMPT_AGAIN 0  /* nothing possible now */
#define STUBDM__QMPT_EOF (-1) /* the peer closed (read only) */
#define STUBDM__QMPT_ERR (-2) /* failure; errno says why */

void stubdm__qmpt_init(struct stubdm__qmpt *t);

/*
 * The simulated socket path: <simdir>/qmp-vchan/<stubdom>.<guest>.sock.
 * Returns 0, or STUBDM_ELIMIT when it does not fit a sockaddr_un.
 */
int stubdm__qmpt_sim_path(const char *simdir, uint32_t stubdom, uint32_t guest,
                          char *out, size_t outlen);

/*
 * The default simulation directory: $STUBDM_SIM_DIR, else the directory
 * holding $XENSTORED_PATH, else NULL.  Returns a malloc'ed string.
 */
char *stubdm__qmpt_default_simdir(void);

/*
 * Connect the unix-socket stand-in (non-blocking).  Returns 0 (connected),
 * STUBDM_ENOENT (nothing listens yet: absent socket or ECONNREFUSED, worth
 * retrying), or another code with the ctx message set.
 */
int stubdm__qmpt_connect_unix(stubdm_ctx *ctx, struct stubdm__qmpt *t,
                              const char *path);

/*
 * Connect the libxenvchan client to the server of 'stubdom' at xs_path
 * (".../qmp-vchan").  Returns 0 or STUBDM_EVCHAN / STUBDM_ENOMEM.
 */
int stubdm__qmpt_connect_vchan(stubdm_ctx *ctx, struct stubdm__qmpt *t,
                               uint32_t stubdom, const char *xs_path);

/*
 * Called when t->fd is readable (vchan: acknowledges the event with
 * libxenvchan_wait so the fd is re-armed).  Harmless when spurious.
 */
void stubdm__qmpt_ack(struct stubdm__qmpt *t);

/* Read up to len bytes: a count > 0, STUBDM__QMPT_AGAIN, _EOF or _ERR. */
ssize_t stubdm__qmpt_read(struct stubdm__qmpt *t, void *buf, size_t len);

/* Write up to len bytes: a count >= 0 (0: no room now) or _ERR. */
ssize_t stubdm__qmpt_write(struct stubdm__qmpt *t, const void *buf,
                           size_t len);

/*
 * The poll events to ask for t->fd when 'want_write' (output pending).
 * A socket needs POLLOUT for writability; a vchan's single event fd signals
 * every change of the shared ring, so it only ever needs POLLIN.
 */
static inline short stubdm__qmpt_events(const struct stubdm__qmpt *t,
                                        bool want_write)
{
    if (t->kind == STUBDM__QMPT_UNIX)
        return (short)(POLLIN | (want_write ? POLLOUT : 0));
    return POLLIN;
}

/* Close and release everything.  Idempotent. */
/* inherited: in a forked child (stubdm_ctx_postfork_child), where a vchan
 * is left as it is: closing it tells the server and the ring is the
 * parent's. */
void stubdm__qmpt_close(struct stubdm__qmpt *t, bool inherited);

/* A human name for messages ("vchan", "unix socket"). */
const char *stubdm__qmpt_name(const struct stubdm__qmpt *t);

/* ---- The cross-process lock (qmp/lock.c) -------------------------------- */
/*
 * A vchan server accepts one client and does no locking of its own, so two
 * processes connecting at once would corrupt each other's stream.  Like
 * libxl's "qmp-socket-lock", a file is flock()ed for as long as a process
 * holds the connection.  Never blocking: LOCK_EX | LOCK_NB, the waiting
 * modes retry on a timer in qmp.c.
 */

struct stubdm__qmplock {
    int fd;                  /* -1 while not held */
    const char *unlink_path; /* libxl protocol: the path (borrowed) */
};

void stubdm__qmplock_init(struct stubdm__qmplock *l);
/* The default lock path for (stubdom, guest), malloc'ed: see docs/qmp.md. */
char *stubdm__qmplock_default_path(bool simulated, const char *simdir,
                                   uint32_t stubdom, uint32_t guest);
/* The lock a teardown of stubdom holds across all of it (teardown.c), in
 * the same directory, malloc'ed. */
char *stubdm__teardown_lock_path(bool simulated, const char *simdir,
                                 uint32_t stubdom);
/* libxl's lock path for guest: <lib_dir>/userdata-l.<guest>.<uuid>.
 * qmp-socket-lock, malloc'ed. */
char *stubdm__qmplock_libxl_path(const char *lib_dir, uint32_t guest,
                                 const char *uuid);
/*
 * Try once.  Creates the file (0600) and, outside the libxl protocol,
 * missing parent directories (0700).  With libxl, follows libxl's protocol
 * (lock.c): after the flock the inode must still be the one at path, else
 * the attempt starts again.  Returns 0 (held), STUBDM_EBUSY (another open
 * file description, in this process or another, holds it), or a failure
 * with the ctx message naming the path.  path must outlive the hold.
 */
int stubdm__qmplock_try(stubdm_ctx *ctx, struct stubdm__qmplock *l,
                        const char *path, bool libxl);
/* Release: with libxl unlink the file first; LOCK_UN, then close.
 * Idempotent.  inherited: in a forked child, which only closes (the lock
 * and the file are the parent's). */
void stubdm__qmplock_release(struct stubdm__qmplock *l, bool inherited);

/* The ctx of a handle (for qmp/proxy.c). */
stubdm_ctx *stubdm__qmp_ctx(const stubdm_qmp *q);

#endif /* STUBDM_QMP_TRANSPORT_H */
