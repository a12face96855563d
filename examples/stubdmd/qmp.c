/*
 * The single QMP connection of one served stubdomain, and the
 * multiplexing proxy that exposes it at libxl's path.
 */
#include "stubdmd.h"

#include <stdio.h>

static void on_qmp_open(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_served *s = user;

    if (rc == STUBDM_ECANCELED)
        return; /* freed by us; s may be gone */
    if (!rc)
        stubdmd_log(STUBDM_LOG_INFO, s, "QMP ready, served at %s",
                    s->proxy_path);
    else
        stubdmd_log(STUBDM_LOG_WARN, s, "QMP open failed: %s",
                    stubdm_op_errmsg(op));
    if (rc == STUBDM_EDOMAIN_GONE)
        s->gone = true;
}

/* The QMP handle, connecting, then the proxy on it at once: libxl's
 * clients find the socket before the stubdomain is unpaused and are
 * greeted when QEMU is ready (docs/embedding.md, the order of a start). */
int stubdmd_qmp_start(struct stubdmd_served *s)
{
    const struct stubdmd_conf *c = s->d->conf;
    stubdm_qmp_opts *qo = NULL;
    stubdm_qmp_proxy_opts *po = NULL;
    int rc;

    snprintf(s->proxy_path, sizeof(s->proxy_path), "%s/qmp-libxl-%u",
             c->qmp_dir, s->guest);
    rc = stubdm_qmp_opts_new(&qo);
    if (!rc)
        rc = stubdm_qmp_opts_set_open_timeout(qo, c->qmp_open_timeout_ms);
    if (!rc) /* a spawning toolstack may hold it until it exits */
        rc = stubdm_qmp_opts_set_lock(qo, NULL, STUBDM_QMP_LOCK_WAIT);
    if (!rc)
        rc = stubdm_qmp_open(s->ctx, s->stub, s->guest, qo, on_qmp_open, s,
                             &s->q, NULL);
    stubdm_qmp_opts_free(qo);
    if (!rc)
        rc = stubdm_qmp_proxy_opts_new(&po);
    if (!rc) { /* kept by the service manager across a restart */
        char name[64];
        snprintf(name, sizeof(name), "qmp-libxl-%u", s->guest);
        rc = stubdmd_sock_listen(s->d, name, s->proxy_path, &s->proxy_sock) < 0
                 ? STUBDM_EFAIL
                 : stubdm_qmp_proxy_opts_set_listen_fd(po, s->proxy_sock.fd);
    }
    if (!rc)
        rc = stubdm_qmp_proxy_new_ext(s->q, po, &s->proxy);
    stubdm_qmp_proxy_opts_free(po);
    if (rc)
        stubdmd_log(STUBDM_LOG_ERROR, s, "QMP proxy at %s: %s: %s",
                    s->proxy_path, stubdm_errname(rc),
                    stubdm_ctx_errmsg(s->ctx));
    return rc;
}

void stubdmd_qmp_stop(struct stubdmd_served *s)
{
    stubdm_qmp_proxy_free(s->proxy);
    stubdmd_sock_close(s->d, &s->proxy_sock, s->gone);
    stubdm_qmp_free(s->q);
    s->proxy = NULL;
    s->q = NULL;
}
