/*
 * The single QMP connection of one served stubdomain, and the
 * multiplexing proxies that expose it at libxl's path (qmp-libxl-<guest>,
 * libxl's ev_qmp) and xenopsd's (qmp-event-<guest>): two sockets, one
 * connection, each client with its own session.
 */
#include "stubdmd.h"

#include <stdio.h>

static const char *const proxy_prefix[2] = {"qmp-libxl", "qmp-event"};

static void on_qmp_open(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_served *s = user;

    if (rc == STUBDM_ECANCELED)
        return; /* freed by us; s may be gone */
    if (!rc)
        stubdmd_log(STUBDM_LOG_INFO, s, "QMP ready, served at %s and %s",
                    s->proxy_path[0], s->proxy_path[1]);
    else
        stubdmd_log(STUBDM_LOG_WARN, s, "QMP open failed: %s",
                    stubdm_op_errmsg(op));
    if (rc == STUBDM_EDOMAIN_GONE)
        s->gone = true;
}

/* A proxy on s->q at s->proxy_path[i]. */
static int proxy_start(struct stubdmd_served *s, int i)
{
    stubdm_qmp_proxy_opts *po = NULL;
    int rc = stubdm_qmp_proxy_opts_new(&po);

    if (!rc)
        rc = stubdm_qmp_proxy_opts_set_path(po, s->proxy_path[i]);
    if (!rc)
        rc = stubdm_qmp_proxy_new_ext(s->q, po, &s->proxy[i]);
    stubdm_qmp_proxy_opts_free(po);
    if (rc)
        stubdmd_log(STUBDM_LOG_ERROR, s, "QMP proxy at %s: %s: %s",
                    s->proxy_path[i], stubdm_errname(rc),
                    stubdm_ctx_errmsg(s->ctx));
    return rc;
}

/* The QMP handle, connecting, then both proxies on it at once: libxl's
 * and xenopsd's clients find their socket before the stubdomain is
 * unpaused and are greeted when QEMU is ready (docs/embedding.md, the
 * order of a start). */
int stubdmd_qmp_start(struct stubdmd_served *s)
{
    const struct stubdmd_conf *c = s->d->conf;
    stubdm_qmp_opts *qo = NULL;
    int rc;

    for (int i = 0; i < 2; i++)
        snprintf(s->proxy_path[i], sizeof(s->proxy_path[i]), "%s/%s-%u",
                 c->qmp_dir, proxy_prefix[i], s->guest);
    rc = stubdm_qmp_opts_new(&qo);
    if (!rc)
        rc = stubdm_qmp_opts_set_open_timeout(qo, c->qmp_open_timeout_ms);
    if (!rc) /* a spawning toolstack may hold it until it exits */
        rc = stubdm_qmp_opts_set_lock(qo, NULL, STUBDM_QMP_LOCK_WAIT);
    if (!rc)
        rc = stubdm_qmp_open(s->ctx, s->stub, s->guest, qo, on_qmp_open, s,
                             &s->q, NULL);
    stubdm_qmp_opts_free(qo);
    if (rc) {
        stubdmd_log(STUBDM_LOG_ERROR, s, "QMP: %s: %s", stubdm_errname(rc),
                    stubdm_ctx_errmsg(s->ctx));
        return rc;
    }
    /* Each on its own: one path that cannot be bound leaves the other. */
    int rc0 = proxy_start(s, 0), rc1 = proxy_start(s, 1);
    return rc0 && rc1 ? rc0 : 0;
}

void stubdmd_qmp_stop(struct stubdmd_served *s)
{
    for (int i = 0; i < 2; i++) {
        stubdm_qmp_proxy_free(s->proxy[i]);
        s->proxy[i] = NULL;
    }
    stubdm_qmp_free(s->q);
    s->q = NULL;
}
