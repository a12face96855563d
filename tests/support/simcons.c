/*
 * The simulated console frontend: see simcons.h and docs/consoles.md.
 */
#include "simcons.h"

#include "console/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xenstore.h>

#define SIMCONS_PAGE 4096

struct simcons {
    unsigned stubdom, n;
    char ring_path[108], fe_sock[108], be_sock[108];
    struct xencons_interface *page;
    int fd;
    int mfd; /* the page: a memfd sealed against shrinking */
    struct stubdm__cring ring;
};

static int mkpath(char *out, size_t len, const char *simdir, unsigned s,
                  unsigned n, const char *suffix)
{
    int r = snprintf(out, len, "%s/console/%u.%u.%s", simdir, s, n, suffix);
    if (r < 0 || (size_t)r >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int simcons_open(struct simcons **out, const char *simdir, unsigned stubdom,
                 unsigned n)
{
    struct simcons *sc = calloc(1, sizeof(*sc));
    struct sockaddr_un sa;
    char dir[108], name[64], target[64];
    int rfd, err;

    *out = NULL;
    if (!sc)
        return -1;
    sc->stubdom = stubdom;
    sc->n = n;
    sc->fd = -1;
    sc->mfd = -1;
    if (snprintf(dir, sizeof(dir), "%s/console", simdir) >= (int)sizeof(dir) ||
        mkpath(sc->ring_path, sizeof(sc->ring_path), simdir, stubdom, n,
               "ring") ||
        mkpath(sc->fe_sock, sizeof(sc->fe_sock), simdir, stubdom, n,
               "evtchn") ||
        mkpath(sc->be_sock, sizeof(sc->be_sock), simdir, stubdom, n,
               "evtchn-be"))
        goto fail;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        goto fail;
    /* The page is a memfd sealed against shrinking (the backend maps it
     * and must never fault), published as a link to /proc/<pid>/fd/<n>,
     * which the backend opens (docs/consoles.md). */
    snprintf(name, sizeof(name), "libstubdm-console-%u.%u", stubdom, n);
    rfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (rfd < 0)
        goto fail;
    sc->mfd = rfd;
    if (ftruncate(rfd, SIMCONS_PAGE) < 0 ||
        fcntl(rfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        goto fail;
    sc->page = mmap(NULL, SIMCONS_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
                    rfd, 0);
    if (sc->page == MAP_FAILED) {
        sc->page = NULL;
        goto fail;
    }
    snprintf(target, sizeof(target), "/proc/%ld/fd/%d", (long)getpid(), rfd);
    if ((unlink(sc->ring_path) < 0 && errno != ENOENT) ||
        symlink(target, sc->ring_path) < 0)
        goto fail;
    stubdm__cring_attach(&sc->ring, sc->page, STUBDM__CRING_FRONTEND);
    sc->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sc->fd < 0)
        goto fail;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, sc->fe_sock, strlen(sc->fe_sock));
    unlink(sc->fe_sock);
    if (bind(sc->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    *out = sc;
    return 0;
fail:
    err = errno;
    simcons_close(sc);
    errno = err;
    return -1;
}

static int xs_put(struct xs_handle *xs, const char *dir, const char *key,
                  const char *val)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    return xs_write(xs, XBT_NULL, path, val, (unsigned)strlen(val)) ? 0 : -1;
}

int simcons_publish(struct simcons *sc, struct xs_handle *xs)
{
    char dir[64];

    if (sc->n == 0) {
        /* What the domain builder would have written (values unused by
         * the simulated transport, but their presence is the signal). */
        snprintf(dir, sizeof(dir), "/local/domain/%u/console", sc->stubdom);
        return xs_put(xs, dir, "ring-ref", "4242") ||
                       xs_put(xs, dir, "port", "2")
                   ? -1
                   : 0;
    }
    snprintf(dir, sizeof(dir), "/local/domain/%u/device/console/%u",
             sc->stubdom, sc->n);
    if (xs_put(xs, dir, "ring-ref", "8") || xs_put(xs, dir, "port", "3"))
        return -1;
    /* Restore input: this frontend has no cooked tty in the way, so its
     * reader is ready from the start (docs/consoles.md, input-ready). */
    if (sc->n == 2 && xs_put(xs, dir, "input-ready", "1"))
        return -1;
    return simcons_set_state(sc, xs, 3 /* XenbusStateInitialised */);
}

int simcons_set_state(struct simcons *sc, struct xs_handle *xs, int state)
{
    char dir[64], v[8];

    snprintf(dir, sizeof(dir), "/local/domain/%u/device/console/%u",
             sc->stubdom, sc->n);
    snprintf(v, sizeof(v), "%d", state);
    return xs_put(xs, dir, "state", v);
}

void simcons_notify(struct simcons *sc)
{
    struct sockaddr_un sa;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, sc->be_sock, strlen(sc->be_sock));
    /* No backend yet, or its queue full: it will look at the ring anyway. */
    (void)sendto(sc->fd, "!", 1, MSG_DONTWAIT | MSG_NOSIGNAL,
                 (struct sockaddr *)&sa, sizeof(sa));
}

long simcons_write(struct simcons *sc, const void *buf, size_t len)
{
    long n = stubdm__cring_write(&sc->ring, buf, len);

    if (n > 0)
        simcons_notify(sc);
    return n;
}

long simcons_read(struct simcons *sc, void *buf, size_t len)
{
    long n = stubdm__cring_read(&sc->ring, buf, len);

    if (n > 0)
        simcons_notify(sc);
    return n;
}

int simcons_wait(struct simcons *sc, int timeout_ms)
{
    struct pollfd p = {.fd = sc->fd, .events = POLLIN};
    char b[64];
    int r = poll(&p, 1, timeout_ms);

    if (r <= 0)
        return r < 0 && errno != EINTR ? -1 : 0;
    while (recv(sc->fd, b, sizeof(b), MSG_DONTWAIT) > 0)
        ;
    return 1;
}

int simcons_fd(const struct simcons *sc)
{
    return sc->fd;
}

struct xencons_interface *simcons_page(struct simcons *sc)
{
    return sc->page;
}

void simcons_close(struct simcons *sc)
{
    if (!sc)
        return;
    if (sc->page)
        munmap(sc->page, SIMCONS_PAGE);
    if (sc->fd >= 0)
        close(sc->fd);
    if (sc->mfd >= 0)
        close(sc->mfd);
    if (sc->ring_path[0])
        unlink(sc->ring_path);
    if (sc->fe_sock[0])
        unlink(sc->fe_sock);
    free(sc);
}
