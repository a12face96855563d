/*
 * The consoles of one served stubdomain: console 0 (QEMU's log) into
 * qemu-dm-<name>.log, capped and rotated, handed over (not closed) when
 * the service stops so that the next one continues it.
 */
#include "stubdmd.h"

#include <stdio.h>
#include <string.h>

static void on_console_done(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_served *s = user;

    (void)op;
    stubdmd_log(rc ? STUBDM_LOG_WARN : STUBDM_LOG_INFO, s,
                "console 0 ended: %s%s%s", stubdm_errname(rc), rc ? ": " : "",
                rc ? stubdm_console_errmsg(s->con0) : "");
    if (rc == STUBDM_EDOMAIN_GONE)
        s->gone = true;
}

int stubdmd_console_start(struct stubdmd_served *s)
{
    const struct stubdmd_conf *c = s->d->conf;
    stubdm_console_opts *o = NULL;
    char path[512];
    int rc;

    snprintf(path, sizeof(path), "%s/qemu-dm-%s.log", c->log_dir, s->name);
    rc = stubdm_console_opts_new(&o);
    if (!rc)
        rc = stubdm_console_opts_set_log(o, path, c->log_cap,
                                         c->log_rotations);
    if (!rc) /* a restarted stubdmd serves it again */
        rc = stubdm_console_opts_set_handover(o, 1);
    if (!rc)
        rc = stubdm_console_serve(s->ctx, s->stub, STUBDM_CONSOLE_LOG, o,
                                  on_console_done, s, &s->con0);
    stubdm_console_opts_free(o);
    if (rc)
        stubdmd_log(STUBDM_LOG_ERROR, s, "console 0 into %s: %s: %s", path,
                    stubdm_errname(rc), stubdm_ctx_errmsg(s->ctx));
    else
        stubdmd_log(STUBDM_LOG_INFO, s, "console 0 into %s", path);
    return rc;
}


void stubdmd_console_stop(struct stubdmd_served *s)
{
    stubdm_console_free(s->con0);
    s->con0 = NULL;
}

const char *stubdmd_console_serial_tty(const struct stubdmd_served *s,
                                       unsigned n)
{
    (void)s;
    (void)n;
    return NULL; /* no serial served yet */
}
