/*
 * A simulated PV console FRONTEND: the stubdomain's side of one console on
 * the simulated host (no Xen), for tests, benchmarks and stubdomain
 * stand-ins.  It follows the mapping of docs/consoles.md ("Simulated
 * transport") exactly:
 *
 *   <simdir>/console/<S>.<n>.ring    a 4096-byte file holding a struct
 *                                     xencons_interface, mmap(MAP_SHARED);
 *   <simdir>/console/<S>.<n>.evtchn  a unix datagram socket this side
 *                                     binds; notifications to the backend
 *                                     go to <S>.<n>.evtchn-be.
 *
 * Usage: simcons_open() creates both, simcons_publish() writes the
 * frontend's xenstore nodes (ring-ref, port, console 2's input-ready = 1,
 * state = 3
 * Initialised for n >= 1; for console 0 ring-ref and port, which on Xen
 * the domain builder writes, so pass a dom0 handle), then simcons_write /
 * simcons_read move bytes (non-blocking: they return what fitted) and
 * simcons_wait sleeps until the backend notifies.  Needs lib/console/ring.c
 * (stubdm_testsupport links libstubdm's static archive; a program outside
 * the tests compiles lib/console/ring.c in).
 */
#ifndef STUBDM_TESTS_SIMCONS_H
#define STUBDM_TESTS_SIMCONS_H

#include <stddef.h>
#include <stdint.h>
#include <xen/io/console.h>

struct xs_handle;
struct simcons;

/* Create the ring file and the socket.  Returns 0 or -1 with errno. */
int simcons_open(struct simcons **out, const char *simdir, unsigned stubdom,
                 unsigned n);
/* Write the frontend nodes through xs (acting as the stubdomain for
 * n >= 1, as dom0 for console 0).  Returns 0 or -1 with errno. */
int simcons_publish(struct simcons *sc, struct xs_handle *xs);
/* Write the frontend's xenbus state (n >= 1). */
int simcons_set_state(struct simcons *sc, struct xs_handle *xs, int state);
/* Put up to len bytes into the out ring (frontend -> backend) and notify.
 * Returns bytes written (0: ring full) or -1 (the indexes are bad). */
long simcons_write(struct simcons *sc, const void *buf, size_t len);
/* Take up to len bytes from the in ring (backend -> frontend) and notify.
 * Returns bytes read (0: empty) or -1. */
long simcons_read(struct simcons *sc, void *buf, size_t len);
/* Wait up to timeout_ms for a notification from the backend and consume
 * it.  Returns 1 (notified), 0 (timeout) or -1. */
int simcons_wait(struct simcons *sc, int timeout_ms);
/* Notify the backend. */
void simcons_notify(struct simcons *sc);
/* The socket (poll it for POLLIN: the backend notified). */
int simcons_fd(const struct simcons *sc);
/* The shared page, for tests that misbehave on purpose. */
struct xencons_interface *simcons_page(struct simcons *sc);
/* Unmap, close, remove the files.  NULL is ignored. */
void simcons_close(struct simcons *sc);

#endif
