/*
 * The single QMP connection of one served stubdomain, and the
 * multiplexing proxies that expose it at libxl's path (qmp-libxl-<guest>,
 * libxl's ev_qmp) and xenopsd's (qmp-event-<guest>): two sockets, one
 * connection, each client with its own session.
 */
#include "stubdmd.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

static const char *const proxy_prefix[2] = {"qmp-libxl", "qmp-event"};

static void on_qmp_open(stubdm_op *op, int rc, void *user);
static void retry_fire(struct stubdmd_served *s);

/* ---- retries ------------------------------------------------------------- */

/* The wait before retry n (from 1): 1 s, doubling, at most
 * STUBDMD_QMP_RETRY_MAX_MS: a QEMU that never comes costs one attempt
 * per half minute, one that comes late is found within a second or so. */
static int retry_delay_ms(unsigned n)
{
    int64_t ms = (int64_t)STUBDMD_QMP_RETRY_FIRST_MS << (n > 16 ? 16 : n - 1);
    return ms > STUBDMD_QMP_RETRY_MAX_MS ? STUBDMD_QMP_RETRY_MAX_MS : (int)ms;
}

/* The retry's timerfd, in the daemon's loop (armed only while a retry is
 * due: nothing wakes an idle daemon). */
static int retry_fd(struct stubdmd_served *s)
{
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &s->retry_src};

    if (s->retry_fd >= 0)
        return 0;
    s->retry_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->retry_fd < 0)
        return -1;
    s->retry_src.kind = SRC_TIMER;
    s->retry_src.served = s;
    s->retry_src.timer = retry_fire;
    if (epoll_ctl(s->d->epfd, EPOLL_CTL_ADD, s->retry_fd, &e) == 0)
        return 0;
    close(s->retry_fd);
    s->retry_fd = -1;
    return -1;
}

static void retry_schedule(struct stubdmd_served *s, const char *why)
{
    int ms = retry_delay_ms(++s->qmp_retries);
    struct itimerspec its = {.it_value = {ms / 1000, (ms % 1000) * 1000000L}};

    if (retry_fd(s) < 0 || timerfd_settime(s->retry_fd, 0, &its, NULL) < 0) {
        stubdmd_log(STUBDM_LOG_ERROR, s, "%s; cannot retry: %s", why,
                    strerror(errno));
        return;
    }
    stubdmd_log(STUBDM_LOG_WARN, s, "%s; retry %u in %d.%03d s", why,
                s->qmp_retries, ms / 1000, ms % 1000);
}

static void reopen(struct stubdmd_served *s)
{
    int rc = stubdm_qmp_reconnect(s->q, on_qmp_open, s, NULL);

    if (rc)
        retry_schedule(s, stubdm_ctx_errmsg(s->ctx));
}

/* The retry's timer fired (from the daemon's loop, outside any dispatch
 * of the ctx). */
static void retry_fire(struct stubdmd_served *s)
{
    uint64_t n;

    if (read(s->retry_fd, &n, sizeof(n)) != (ssize_t)sizeof(n) || !s->q ||
        s->gone)
        return;
    stubdmd_log(STUBDM_LOG_INFO, s, "QMP: retry %u", s->qmp_retries);
    reopen(s);
}

/* ---- the connection ------------------------------------------------------ */

/* The ready connection went down while the stubdomain lives: the proxies
 * closed their clients (a clean close: they connect again and wait);
 * reopened at once, then with the retries' backoff. */
static void on_qmp_lost(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_served *s = user;

    stubdm_op_free(op);
    if (rc == STUBDM_ECANCELED)
        return; /* freed by us */
    s->lost = NULL;
    if (rc == STUBDM_EDOMAIN_GONE) {
        s->gone = true;
        return;
    }
    stubdmd_log(STUBDM_LOG_WARN, s, "%s; reopening", stubdm_op_errmsg(op));
    reopen(s);
}

static void on_qmp_open(stubdm_op *op, int rc, void *user)
{
    struct stubdmd_served *s = user;
    char why[1024];

    if (rc == STUBDM_ECANCELED)
        return; /* freed by us; s may be gone */
    if (rc == STUBDM_EDOMAIN_GONE) {
        stubdmd_log(STUBDM_LOG_INFO, s, "QMP: %s", stubdm_op_errmsg(op));
        s->gone = true;
        return;
    }
    if (rc) {
        snprintf(why, sizeof(why), "QMP open failed: %s",
                 stubdm_op_errmsg(op));
        retry_schedule(s, why);
        return;
    }
    stubdmd_log(STUBDM_LOG_INFO, s, "QMP ready, served at %s and %s",
                s->proxy_path[0], s->proxy_path[1]);
    s->qmp_retries = 0;
    if (stubdm_qmp_watch_lost(s->q, on_qmp_lost, s, &s->lost))
        stubdmd_log(STUBDM_LOG_ERROR, s,
                    "QMP: cannot watch the connection: %s",
                    stubdm_ctx_errmsg(s->ctx));
}

/* A proxy on s->q at s->proxy_path[i], on a listening socket the service
 * manager keeps across a restart (stubdmd_sock_listen: the one it passed,
 * else a new one given to it). */
static int proxy_start(struct stubdmd_served *s, int i)
{
    stubdm_qmp_proxy_opts *po = NULL;
    char name[64];
    int rc = stubdm_qmp_proxy_opts_new(&po);

    snprintf(name, sizeof(name), "%s-%u", proxy_prefix[i], s->guest);
    if (!rc)
        rc = stubdmd_sock_listen(s->d, name, s->proxy_path[i],
                                 &s->proxy_sock[i]) < 0
                 ? STUBDM_EFAIL
                 : stubdm_qmp_proxy_opts_set_listen_fd(po,
                                                       s->proxy_sock[i].fd);
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
    stubdm_op_free(s->lost);
    s->lost = NULL;
    if (s->retry_fd >= 0) {
        epoll_ctl(s->d->epfd, EPOLL_CTL_DEL, s->retry_fd, NULL);
        close(s->retry_fd);
        s->retry_fd = -1;
    }
    for (int i = 0; i < 2; i++) {
        stubdm_qmp_proxy_free(s->proxy[i]);
        s->proxy[i] = NULL;
        stubdmd_sock_close(s->d, &s->proxy_sock[i], s->gone);
    }
    stubdm_qmp_free(s->q);
    s->q = NULL;
}
