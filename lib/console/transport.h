/*
 * The two ways the console backend reaches a stubdomain's console page and
 * event channel (console.c sees only this interface):
 *
 *  - XEN: the page is mapped with libxengnttab (device/console/N, whose
 *    ring-ref is a grant reference; console 0 first through the reserved
 *    grant GNTTAB_RESERVED_CONSOLE) or, for console 0 when that fails,
 *    with libxenforeignmemory (the domain builder wrote ring-ref as an
 *    mfn); the event channel is bound with libxenevtchn.  libxengnttab and
 *    libxenevtchn are loaded with dlopen() on first use, so the library
 *    keeps no link-time dependency on them (they are only needed on a Xen
 *    host).  The frontend it meets is Linux's hvc_xen (docs/real-xen.md).
 *
 *  - SIM: the simulated host, where there are no grants or event
 *    channels.  The frontend's page (a struct xencons_interface, mapped
 *    MAP_SHARED) is a memfd named libstubdm-console-<S>.<n>, sealed
 *    against shrinking, published as the symlink
 *    <simdir>/console/<S>.<n>.ring -> /proc/<pid>/fd/<fd> (a file the
 *    frontend could truncate would make the backend's next access to its
 *    mapping a SIGBUS, which a grant mapping never is); it binds a
 *    unix datagram socket <simdir>/console/<S>.<n>.evtchn; the backend
 *    binds <simdir>/console/<S>.<n>.evtchn-be and connects it to the
 *    frontend's.  A notification is one datagram (any content, 1 byte by
 *    convention) either way.  Every path comes from the dom0-controlled
 *    simdir and the domids, never from xenstore.  docs/consoles.md.
 */
#ifndef STUBDM_CONSOLE_TRANSPORT_H
#define STUBDM_CONSOLE_TRANSPORT_H

#include "core/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/io/console.h>

enum stubdm__ctrans_kind {
    STUBDM__CTRANS_NONE = 0,
    STUBDM__CTRANS_XEN,
    STUBDM__CTRANS_SIM,
};

/* Longest path the simulated transport uses (sockaddr_un's sun_path). */
#define STUBDM__CTRANS_PATH_MAX 108

struct stubdm__ctrans {
    enum stubdm__ctrans_kind kind;
    struct xencons_interface *intf; /* the mapped page, NULL if none */
    int fd;                         /* poll for notifications; -1 if none */
    /* SIM */
    size_t map_len;
    char be_path[STUBDM__CTRANS_PATH_MAX]; /* bound by us: unlink on close */
    /* XEN */
    void *xgt;  /* xengnttab_handle * */
    void *xce;  /* xenevtchn_handle * */
    void *fmem; /* xenforeignmemory_handle * when mapped by mfn */
    uint32_t local_port;
    bool port_bound;
    /* in a forked child (stubdm_ctx_postfork_child): close only, since the
     * bound path and the port binding (per open file) are the parent's */
    bool inherited;
};

void stubdm__ctrans_init(struct stubdm__ctrans *t);

/*
 * The simulated paths for console n of stubdom: suffix is "ring",
 * "evtchn" or "evtchn-be".  Returns 0 or STUBDM_ELIMIT (too long for a
 * sockaddr_un).
 */
int stubdm__ctrans_sim_path(const char *simdir, uint32_t stubdom, unsigned n,
                            const char *suffix, char *out, size_t outlen);

/*
 * Connect the simulated transport.  Returns 0; STUBDM_ENOENT when the
 * frontend has not created its page or socket yet (retry later);
 * STUBDM_EPROTO for a ring that is not a link to that sealed memfd of at
 * least one console page; or another failure, with the ctx message set.
 */
int stubdm__ctrans_connect_sim(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                               const char *simdir, uint32_t stubdom,
                               unsigned n);

/*
 * Connect the Xen transport: map ring_ref (a grant reference, or for
 * console 0 an mfn after the reserved grant failed) of stubdom and bind
 * its event channel port.  Returns 0, STUBDM_ENOTSUP (the Xen libraries
 * cannot be loaded or opened), STUBDM_EXEN (a mapping or binding failed).
 */
int stubdm__ctrans_connect_xen(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                               uint32_t stubdom, unsigned n, uint64_t ring_ref,
                               uint32_t port);

/*
 * Consume pending notifications (t->fd was readable).  Returns 0, or -1
 * when the channel failed (errno set).
 */
int stubdm__ctrans_ack(struct stubdm__ctrans *t);

/* Notify the frontend.  A lost notification on a full queue is fine: the
 * peer has one pending already.  Returns 0 or -1 (errno set). */
int stubdm__ctrans_notify(struct stubdm__ctrans *t);

/* Unmap, unbind, close, unlink.  Idempotent. */
void stubdm__ctrans_close(struct stubdm__ctrans *t);

const char *stubdm__ctrans_name(const struct stubdm__ctrans *t);

#endif /* STUBDM_CONSOLE_TRANSPORT_H */
