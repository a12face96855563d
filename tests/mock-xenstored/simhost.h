/* The simulated Xen host's "hypervisor": domains the mock creates, runs
 * as processes and reaps.  See docs/simulated-host.md. */
#ifndef MOCKXS_SIMHOST_H
#define MOCKXS_SIMHOST_H

#include "daemon.h"

/* A CONTROL command from dom0.  Returns -1 if argv[0] is not a sim-*
 * command this module handles; otherwise 0 with the reply text in *out
 * (NUL-terminated), or an errno value. */
int simhost_control(struct daemon *d, const char *const *argv, unsigned argc,
		    struct buf *out);

/* SIGCHLD was seen: reap every exited simulated domain, record why under
 * /tool/stubdm-sim/domain/<id>/exit and release it. */
void simhost_reap(struct daemon *d);

/* The simulated dom0's blkback and netback, after the events in l were
 * announced: a vbd or vif backend of a simulated domain whose "state" was
 * written "1" (Initialising) goes to "2" (InitWait), as the real drivers
 * do when they probe a new backend.  Nothing further is simulated (no
 * physical device, rings or Connected): InitWait is what a toolstack
 * waits for to run the hotplug scripts. */
void simhost_backends(struct daemon *d, const struct evlist *l);

/* The daemon is exiting: kill every simulated domain and wait for it. */
void simhost_shutdown(struct daemon *d);

/* wire.c: record the reason and release the domain (the sim-release
 * control command's body).  Returns 0 or an errno value. */
int wire_sim_release(struct daemon *d, unsigned domid, const char *reason,
		     size_t len);

#endif
