/*
 * Reaching a console page and its event channel: real Xen or simulated.
 * See console/transport.h and docs/consoles.md.
 */
#include "console/transport.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xen/grant_table.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>

#define PAGE_BYTES 4096u

_Static_assert(sizeof(struct xencons_interface) <= PAGE_BYTES,
               "a console page fits one page");

void stubdm__ctrans_init(struct stubdm__ctrans *t)
{
    memset(t, 0, sizeof(*t));
    t->fd = -1;
}

const char *stubdm__ctrans_name(const struct stubdm__ctrans *t)
{
    switch (t->kind) {
    case STUBDM__CTRANS_XEN:
        return "xen";
    case STUBDM__CTRANS_SIM:
        return "simulated";
    default:
        return "none";
    }
}

/* ---- simulated ---------------------------------------------------------- */

int stubdm__ctrans_sim_path(const char *simdir, uint32_t stubdom, unsigned n,
                            const char *suffix, char *out, size_t outlen)
{
    size_t max = outlen < STUBDM__CTRANS_PATH_MAX ? outlen
                                                  : STUBDM__CTRANS_PATH_MAX;
    int len = snprintf(out, outlen, "%s/console/%u.%u.%s", simdir, stubdom, n,
                       suffix);

    if (len < 0 || (size_t)len >= max)
        return STUBDM_ELIMIT;
    return 0;
}

static int set_sun(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return -1;
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

/* "/proc/<pid>/fd/<n>", digits only: where the frontend's page is. */
static bool proc_fd_link(const char *t)
{
    size_t i = 0;

    if (strncmp(t, "/proc/", 6))
        return false;
    t += 6;
    while (t[i] >= '0' && t[i] <= '9')
        i++;
    if (i == 0 || i > 10 || strncmp(t + i, "/fd/", 4))
        return false;
    t += i + 4;
    for (i = 0; t[i] >= '0' && t[i] <= '9'; i++)
        ;
    return i > 0 && i <= 10 && t[i] == '\0';
}

/*
 * Open and map the frontend's page.  It must be a memfd sealed against
 * shrinking (F_SEAL_SHRINK), named for this console: the frontend keeps
 * its own fd and mapping, and a file it could truncate after we mapped it
 * would make our next access to the page fault (SIGBUS kills dom0; a
 * library may install no handler), which a grant mapping on Xen never
 * does.  The path is a symlink to /proc/<pid>/fd/<n>: opened O_PATH first,
 * so nothing that is not a sealed memfd is ever opened for real (a device
 * node's open could have effects), then reopened read-write through our
 * own /proc/self/fd.  Returns 0, STUBDM_ENOENT (not there yet: retry), or
 * STUBDM_EPROTO / STUBDM_EFAIL with the ctx message set.
 */
static int open_sim_page(stubdm_ctx *ctx, const char *ring, uint32_t stubdom,
                         unsigned n, void **map_out)
{
    char target[64], self[64], name[96], want[96];
    struct stat st;
    ssize_t len;
    int pfd, rfd, seals, err;
    void *map;

    len = readlink(ring, target, sizeof(target) - 1);
    if (len < 0 && errno == ENOENT)
        return STUBDM_ENOENT;
    if (len < 0 || (target[len] = '\0', !proc_fd_link(target)))
        return stubdm__fail(ctx, STUBDM_EPROTO, len < 0 ? errno : 0,
                            "console %u: %s is not a link to the frontend's "
                            "page (/proc/<pid>/fd/<n> of a memfd sealed "
                            "against shrinking): a ring file the frontend "
                            "could truncate under dom0's mapping is refused",
                            n, ring);
    pfd = open(target, O_PATH | O_CLOEXEC);
    if (pfd < 0)
        return errno == ENOENT ? STUBDM_ENOENT /* frontend not (yet) there */
                               : stubdm__fail(ctx, STUBDM_EFAIL, errno,
                                              "console %u: opening %s: %s", n,
                                              target, strerror(errno));
    snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
    snprintf(want, sizeof(want), "/memfd:libstubdm-console-%u.%u (deleted)",
             stubdom, n);
    len = readlink(self, name, sizeof(name) - 1);
    if (len >= 0)
        name[len] = '\0';
    if (fstat(pfd, &st) < 0 || !S_ISREG(st.st_mode) || len < 0 ||
        strcmp(name, want) ||
        st.st_size < (off_t)sizeof(struct xencons_interface)) {
        close(pfd);
        return stubdm__fail(ctx, STUBDM_EPROTO, 0,
                            "console %u: %s does not lead to a memfd named "
                            "libstubdm-console-%u.%u of at least %zu bytes",
                            n, ring, stubdom, n,
                            sizeof(struct xencons_interface));
    }
    rfd = open(self, O_RDWR | O_CLOEXEC);
    err = errno;
    close(pfd);
    if (rfd < 0)
        return stubdm__fail(ctx, STUBDM_EFAIL, err,
                            "console %u: opening the frontend's page: %s", n,
                            strerror(err));
    seals = fcntl(rfd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        close(rfd);
        return stubdm__fail(ctx, STUBDM_EPROTO, 0,
                            "console %u: the frontend's page is not sealed "
                            "against shrinking (F_SEAL_SHRINK): it could "
                            "truncate it under dom0's mapping",
                            n);
    }
    map = mmap(NULL, PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
    err = errno;
    close(rfd);
    if (map == MAP_FAILED)
        return stubdm__fail(ctx, STUBDM_EFAIL, err,
                            "console %u: mapping %s: %s", n, ring,
                            strerror(err));
    *map_out = map;
    return 0;
}

int stubdm__ctrans_connect_sim(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                               const char *simdir, uint32_t stubdom,
                               unsigned n)
{
    char ring[STUBDM__CTRANS_PATH_MAX], fe[STUBDM__CTRANS_PATH_MAX];
    char be[STUBDM__CTRANS_PATH_MAX];
    struct sockaddr_un sa;
    void *map = NULL;
    int sfd, err, rc;

    if (stubdm__ctrans_sim_path(simdir, stubdom, n, "ring", ring,
                                sizeof(ring)) ||
        stubdm__ctrans_sim_path(simdir, stubdom, n, "evtchn", fe,
                                sizeof(fe)) ||
        stubdm__ctrans_sim_path(simdir, stubdom, n, "evtchn-be", be,
                                sizeof(be)))
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "console %u: simulation directory %s is too long "
                            "for a unix socket path",
                            n, simdir);
    rc = open_sim_page(ctx, ring, stubdom, n, &map);
    if (rc)
        return rc;

    sfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sfd < 0) {
        err = errno;
        munmap(map, PAGE_BYTES);
        return stubdm__fail(ctx, STUBDM_EFAIL, err, "console %u: socket: %s",
                            n, strerror(err));
    }
    /* A stale socket from an earlier backend would make bind fail. */
    unlink(be);
    set_sun(&sa, be);
    if (bind(sfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = errno;
        close(sfd);
        munmap(map, PAGE_BYTES);
        return stubdm__fail(ctx, STUBDM_EFAIL, err,
                            "console %u: binding %s: %s", n, be,
                            strerror(err));
    }
    set_sun(&sa, fe);
    if (connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = errno;
        close(sfd);
        unlink(be);
        munmap(map, PAGE_BYTES);
        if (err == ENOENT || err == ECONNREFUSED)
            return STUBDM_ENOENT;
        return stubdm__fail(ctx, STUBDM_EFAIL, err,
                            "console %u: connecting to %s: %s", n, fe,
                            strerror(err));
    }
    t->kind = STUBDM__CTRANS_SIM;
    t->intf = map;
    t->map_len = PAGE_BYTES;
    t->fd = sfd;
    snprintf(t->be_path, sizeof(t->be_path), "%s", be);
    return 0;
}

/* ---- Xen ---------------------------------------------------------------- */

/* Console 0's page by frame number (builders that grant no reserved
 * reference): the page, or NULL with errno set.  When the foreign memory
 * interface cannot even be opened, t is closed and *rc says why. */
static void *map_by_frame(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                          uint32_t stubdom, uint64_t ring_ref, int *rc)
{
    xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
    xen_pfn_t mfn = (xen_pfn_t)ring_ref;
    void *page;
    int merr = 0;

    if (!fm) {
        int err = errno;
        stubdm__ctrans_close(t);
        *rc = stubdm__fail(ctx, STUBDM_EXEN, err,
                           "console 0: xenforeignmemory_open: %s",
                           strerror(err));
        return NULL;
    }
    t->fmem = fm;
    page = xenforeignmemory_map(fm, stubdom, PROT_READ | PROT_WRITE, 1, &mfn,
                                &merr);
    if (page && merr) {
        xenforeignmemory_unmap(fm, page, 1);
        page = NULL;
        errno = -merr > 0 ? -merr : merr;
    }
    if (page)
        LOG_DEBUG(ctx, "console",
                  "console 0 of domain %u: no reserved grant, mapped "
                  "its page by frame %llu",
                  stubdom, (unsigned long long)ring_ref);
    return page;
}

/* Console 0's page: the domain builder grants it with the reserved
 * reference; old builders did not, then ring-ref is an mfn.  As
 * map_by_frame. */
static void *map_console0(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                          uint32_t stubdom, uint64_t ring_ref, int *rc)
{
    void *page = xengnttab_map_grant_ref(t->xgt, stubdom,
                                         GNTTAB_RESERVED_CONSOLE,
                                         PROT_READ | PROT_WRITE);
    if (!page)
        return map_by_frame(ctx, t, stubdom, ring_ref, rc);
    LOG_DEBUG(ctx, "console",
              "console 0 of domain %u: mapped through the reserved "
              "grant reference %u",
              stubdom, (unsigned)GNTTAB_RESERVED_CONSOLE);
    return page;
}

/* The ring page of console n into t->intf; on failure t is closed. */
static int map_ring(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                    uint32_t stubdom, unsigned n, uint64_t ring_ref)
{
    void *page;
    int rc = 0, err;

    if (n == 0) {
        page = map_console0(ctx, t, stubdom, ring_ref, &rc);
        if (rc)
            return rc;
    } else {
        if (ring_ref > UINT32_MAX) {
            stubdm__ctrans_close(t);
            return stubdm__fail(ctx, STUBDM_EPROTO, 0,
                                "console %u: ring-ref %llu is not a grant "
                                "reference",
                                n, (unsigned long long)ring_ref);
        }
        page = xengnttab_map_grant_ref(t->xgt, stubdom, (uint32_t)ring_ref,
                                       PROT_READ | PROT_WRITE);
    }
    if (!page) {
        err = errno;
        stubdm__ctrans_close(t);
        return stubdm__fail(ctx, STUBDM_EXEN, err,
                            "console %u: mapping ring-ref %llu of domain %u: "
                            "%s",
                            n, (unsigned long long)ring_ref, stubdom,
                            strerror(err));
    }
    t->intf = page;
    return 0;
}

/* The stubdomain's event channel port, bound; on failure t is closed. */
static int bind_evtchn(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                       uint32_t stubdom, unsigned n, uint32_t port)
{
    xenevtchn_handle *xce = xenevtchn_open(NULL, 0);
    xenevtchn_port_or_error_t lp;
    int err;

    if (!xce) {
        err = errno;
        stubdm__ctrans_close(t);
        return stubdm__fail(ctx, STUBDM_EXEN, err,
                            "console %u: xenevtchn_open: %s", n,
                            strerror(err));
    }
    t->xce = xce;
    lp = xenevtchn_bind_interdomain(xce, stubdom, port);
    if (lp < 0) {
        err = errno;
        stubdm__ctrans_close(t);
        return stubdm__fail(ctx, STUBDM_EXEN, err,
                            "console %u: binding event channel %u of domain "
                            "%u: %s",
                            n, port, stubdom, strerror(err));
    }
    t->local_port = (uint32_t)lp;
    t->port_bound = true;
    t->fd = xenevtchn_fd(xce);
    return 0;
}

int stubdm__ctrans_connect_xen(stubdm_ctx *ctx, struct stubdm__ctrans *t,
                               uint32_t stubdom, unsigned n, uint64_t ring_ref,
                               uint32_t port)
{
    int rc;

    t->kind = STUBDM__CTRANS_XEN;
    t->xgt = xengnttab_open(NULL, 0);
    if (!t->xgt) {
        int err = errno;
        return stubdm__fail(ctx, STUBDM_ENOTSUP, err,
                            "console %u: xengnttab_open: %s", n,
                            strerror(err));
    }
    if ((rc = map_ring(ctx, t, stubdom, n, ring_ref)))
        return rc;
    return bind_evtchn(ctx, t, stubdom, n, port);
}

/* ---- both --------------------------------------------------------------- */

int stubdm__ctrans_ack(struct stubdm__ctrans *t)
{
    if (t->kind == STUBDM__CTRANS_SIM) {
        char b[64];
        /* Bounded: at most 64 datagrams per call, the rest next time. */
        for (int i = 0; i < 64; i++) {
            ssize_t r = recv(t->fd, b, sizeof(b), MSG_DONTWAIT);
            if (r < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ||
                               errno == EINTR || errno == ECONNREFUSED
                           ? 0
                           : -1;
        }
        return 0;
    }
    if (t->kind == STUBDM__CTRANS_XEN && t->xce) {
        xenevtchn_port_or_error_t p = xenevtchn_pending(t->xce);
        if (p < 0)
            return errno == EAGAIN ? 0 : -1;
        if (xenevtchn_unmask(t->xce, (evtchn_port_t)p) < 0)
            return -1;
        return 0;
    }
    return 0;
}

int stubdm__ctrans_notify(struct stubdm__ctrans *t)
{
    if (t->kind == STUBDM__CTRANS_SIM) {
        if (send(t->fd, "!", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            /* Full queue: a notification is pending anyway.  Gone peer:
             * the domain monitor reports it. */
            if (errno == EAGAIN || errno == EWOULDBLOCK ||
                errno == ECONNREFUSED || errno == ENOENT || errno == EINTR)
                return 0;
            return -1;
        }
        return 0;
    }
    if (t->kind == STUBDM__CTRANS_XEN && t->port_bound)
        return xenevtchn_notify(t->xce, t->local_port) < 0 ? -1 : 0;
    return 0;
}

void stubdm__ctrans_close(struct stubdm__ctrans *t)
{
    int saved = errno;

    if (t->kind == STUBDM__CTRANS_SIM) {
        if (t->intf)
            munmap(t->intf, t->map_len);
        if (t->fd >= 0)
            close(t->fd);
        if (t->be_path[0] && !t->inherited)
            unlink(t->be_path);
    } else if (t->kind == STUBDM__CTRANS_XEN) {
        if (t->port_bound && !t->inherited)
            xenevtchn_unbind(t->xce, t->local_port);
        if (t->xce)
            xenevtchn_close(t->xce); /* closes t->fd */
        if (t->intf && t->fmem)
            xenforeignmemory_unmap(t->fmem, t->intf, 1);
        else if (t->intf)
            xengnttab_unmap(t->xgt, t->intf, 1);
        if (t->fmem)
            xenforeignmemory_close(t->fmem);
        if (t->xgt)
            xengnttab_close(t->xgt);
    }
    stubdm__ctrans_init(t);
    errno = saved;
}
