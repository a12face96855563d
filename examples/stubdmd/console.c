/*
 * The consoles of one served stubdomain: console 0 (QEMU's log) into
 * qemu-dm-<name>.log, capped and rotated; consoles 3.. (the guest's
 * serials) as ptys.  Each is handed over (not closed) when the service
 * stops, so that the next one continues it from the ring's indexes.
 *
 * A serial's pty path is published where the toolstack's tools look:
 * the library writes the frontend's /local/domain/S/device/console/N/tty
 * (`xl console <guest>`, libxl's primary console of a stubdomain's guest),
 * and this service writes /local/domain/G/serial/<N-3>/tty (`xl console
 * -t serial -n <N-3> <guest>`, which libxl writes only for a dom0 QEMU's
 * "pty:" serials).  Both are written by dom0 and never read back: the
 * control socket takes the path from the console handle.
 */
#include "stubdmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

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

static int log_start(struct stubdmd_served *s)
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

/* ---- serials ------------------------------------------------------------- */

/* Console n: digits only, no leading zero, a serial's number. */
static bool parse_serial(const char *v, unsigned *n)
{
    unsigned x = 0;

    if (!*v || (v[0] == '0' && v[1]) || strlen(v) > 2)
        return false;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        x = x * 10 + (unsigned)(*p - '0');
    }
    if (x < STUBDM_CONSOLE_SERIAL0 ||
        x >= STUBDM_CONSOLE_SERIAL0 + STUBDM_CONSOLE_MAX_SERIALS)
        return false;
    *n = x;
    return true;
}

static bool dom0_owns(struct xs_handle *xs, xs_transaction_t t,
                      const char *path)
{
    unsigned np = 0;
    struct xs_permissions *p = xs_get_permissions(xs, t, path, &np);
    bool ok = p && np >= 1 && p[0].id == 0;

    free(p);
    return ok;
}

/* The serials S has: its backend directories
 * /local/domain/0/backend/console/S/N (N >= 3) that the contract wrote,
 * dom0-owned (the stubdomain may only read them); one transaction. */
static void find_serials(struct stubdmd_served *s, bool want[])
{
    struct xs_handle *xs = s->d->xs;
    char dir[64], path[96];

    snprintf(dir, sizeof(dir), "/local/domain/0/backend/console/%u", s->stub);
    for (int tries = 0; tries < 8; tries++) {
        xs_transaction_t t = xs_transaction_start(xs);
        unsigned n = 0, num;
        char **ents;

        if (t == XBT_NULL)
            return;
        memset(want, 0, STUBDM_CONSOLE_MAX_SERIALS * sizeof(*want));
        ents = dom0_owns(xs, t, dir) ? xs_directory(xs, t, dir, &n) : NULL;
        for (unsigned i = 0; ents && i < n; i++) {
            if (!parse_serial(ents[i], &num))
                continue;
            snprintf(path, sizeof(path), "%s/%u", dir, num);
            want[num - STUBDM_CONSOLE_SERIAL0] = dom0_owns(xs, t, path);
        }
        free(ents);
        if (xs_transaction_end(xs, t, false) || errno != EAGAIN)
            return;
    }
}

/* /local/domain/G/serial/<i>/tty = value, owned by dom0, G may read it
 * (as libxl's); only while G's directory exists (never recreated). */
static void publish_guest_tty(struct stubdmd_served *s, unsigned i,
                              const char *value)
{
    struct xs_handle *xs = s->d->xs;
    struct xs_permissions perms[2] = {{.id = 0, .perms = XS_PERM_NONE},
                                      {.id = s->guest, .perms = XS_PERM_READ}};
    char home[32], path[96];

    snprintf(home, sizeof(home), "/local/domain/%u", s->guest);
    snprintf(path, sizeof(path), "%s/serial/%u/tty", home, i);
    for (int tries = 0; tries < 8; tries++) {
        xs_transaction_t t = xs_transaction_start(xs);
        unsigned len;
        char *v;
        bool ok;

        if (t == XBT_NULL)
            break;
        v = xs_read(xs, t, home, &len);
        if (!v) { /* the guest is gone */
            xs_transaction_end(xs, t, true);
            return;
        }
        free(v);
        ok = xs_write(xs, t, path, value, (unsigned)strlen(value)) &&
             xs_set_permissions(xs, t, path, perms, 2);
        if (xs_transaction_end(xs, t, !ok) && ok)
            return;
        if (!ok || errno != EAGAIN)
            break;
    }
    stubdmd_log(STUBDM_LOG_WARN, s, "cannot write %s", path);
}

static void on_serial_done(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_serial *ser = user;
    struct stubdmd_served *s = ser->s;

    (void)op;
    stubdmd_log(rc ? STUBDM_LOG_WARN : STUBDM_LOG_INFO, s,
                "console %u ended: %s%s%s", ser->n, stubdm_errname(rc),
                rc ? ": " : "", rc ? stubdm_console_errmsg(ser->con) : "");
    if (rc == STUBDM_EDOMAIN_GONE)
        s->gone = true;
}

static int serial_start(struct stubdmd_served *s, unsigned i)
{
    struct stubdmd_serial *ser = &s->serial[i];
    stubdm_console_opts *o = NULL;
    int rc;

    ser->s = s;
    ser->n = STUBDM_CONSOLE_SERIAL0 + i;
    rc = stubdm_console_opts_new(&o);
    if (!rc)
        rc = stubdm_console_opts_set_serial_pty(o);
    if (!rc)
        rc = stubdm_console_opts_set_handover(o, 1);
    if (!rc) /* the pty exists and the frontend's tty is written now */
        rc = stubdm_console_serve(s->ctx, s->stub, ser->n, o, on_serial_done,
                                  ser, &ser->con);
    stubdm_console_opts_free(o);
    if (rc) {
        stubdmd_log(STUBDM_LOG_ERROR, s, "console %u: %s: %s", ser->n,
                    stubdm_errname(rc), stubdm_ctx_errmsg(s->ctx));
        return rc;
    }
    publish_guest_tty(s, i, stubdm_console_tty(ser->con));
    stubdmd_log(STUBDM_LOG_INFO, s, "console %u (serial %u) at %s", ser->n, i,
                stubdm_console_tty(ser->con));
    return 0;
}

const char *stubdmd_console_serial_tty(const struct stubdmd_served *s,
                                       unsigned n)
{
    const stubdm_console *c;

    if (!s || n < STUBDM_CONSOLE_SERIAL0 ||
        n >= STUBDM_CONSOLE_SERIAL0 + STUBDM_CONSOLE_MAX_SERIALS)
        return NULL;
    c = s->serial[n - STUBDM_CONSOLE_SERIAL0].con;
    /* An ended console has closed its pty. */
    return stubdm_console_result(c) == STUBDM_ESTATE ? stubdm_console_tty(c)
                                                     : NULL;
}

/* ---- start, stop --------------------------------------------------------- */

/* Console 0, then each serial: one that fails leaves the others served. */
int stubdmd_console_start(struct stubdmd_served *s)
{
    bool want[STUBDM_CONSOLE_MAX_SERIALS];
    int rc = log_start(s);

    find_serials(s, want);
    for (unsigned i = 0; i < STUBDM_CONSOLE_MAX_SERIALS; i++)
        if (want[i])
            serial_start(s, i);
    return rc;
}

void stubdmd_console_stop(struct stubdmd_served *s)
{
    stubdm_console_free(s->con0);
    s->con0 = NULL;
    for (unsigned i = 0; i < STUBDM_CONSOLE_MAX_SERIALS; i++) {
        struct stubdmd_serial *ser = &s->serial[i];
        if (!ser->con)
            continue;
        stubdm_console_free(ser->con);
        ser->con = NULL;
        /* Its pty is gone: no path to a pts number another may reuse
         * (also when only the stubdomain died: the guest's node stays). */
        publish_guest_tty(s, i, "");
    }
}
