/*
 * The consoles of the stubdomain protocol (console.c): their roles, and
 * the console internals spawn.c and dm_state.c use.
 */
#ifndef STUBDM_CONSOLE_CONSOLE_H
#define STUBDM_CONSOLE_CONSOLE_H

#include "core/base.h"

/* How many a stubdomain can have: log, save, restore, then the serials. */
#define STUBDM__NCONSOLES (STUBDM_CONSOLE_SERIAL0 + STUBDM_CONSOLE_MAX_SERIALS)

/* The role of console n in the stubdomain protocol, for messages. */
static inline const char *stubdm__console_role(unsigned n)
{
    return n == STUBDM_CONSOLE_LOG       ? "log"
           : n == STUBDM_CONSOLE_SAVE    ? "save"
           : n == STUBDM_CONSOLE_RESTORE ? "restore"
                                         : "serial";
}

/* Role save with no destination yet: the frontend's bytes stay in the ring
 * (backpressure) until a save attaches an fd. */
void stubdm__console_opts_set_save_held(stubdm_console_opts *o);
/* Role restore with no source: console 2 as the placeholder that keeps
 * the serials' numbering (contract.c); served so the frontend connects
 * (Linux waits 25 s at boot for an unconnected console), its output is
 * dropped, it never completes. */
void stubdm__console_opts_set_placeholder(stubdm_console_opts *o);
/* Stop serving without telling the frontend to close: the backend state
 * goes back to InitWait and the frontend stays connected, so another
 * backend (process) can take the console over.  As stubdm_console_free
 * otherwise (no callback; a console that already ended is just freed). */
void stubdm__console_release(stubdm_console *c);
/* Give a held save console its destination (made non-blocking, not
 * closed).  STUBDM_ESTATE (not a served save console), STUBDM_EBUSY (one is
 * attached already), STUBDM_EINVAL. */
int stubdm__console_save_attach(stubdm_console *c, int fd);
/* Hold again: stop writing to the fd. */
void stubdm__console_save_detach(stubdm_console *c);
/* 1 if connected and the frontend's output ring is empty, 0 if not, -1 on
 * a bad frontend index. */
int stubdm__console_out_empty(stubdm_console *c);
/* Still serving. */
bool stubdm__console_pending(const stubdm_console *c);
/* Whether the frontend's output ring has been consumed (written to the
 * destination) up to total bytes since the console was created (the
 * frontend's count; compared modulo 2^32 with the ring's out_cons, so it
 * holds across backends: a save by another process than the one that
 * served the earlier bytes). */
bool stubdm__console_out_reached(const stubdm_console *c, uint64_t total);

#endif /* STUBDM_CONSOLE_CONSOLE_H */
