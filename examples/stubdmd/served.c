/*
 * One served stubdomain: a ctx of its own (every library line names it)
 * attached to the daemon's epoll loop, its consoles and its QMP.
 */
#include "stubdmd.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

static void lib_log(void *user, stubdm_log_level level, int os_errno,
                    const char *context, const char *msg)
{
    const struct stubdmd_served *s = user;

    if (os_errno)
        stubdmd_log(level, s, "%s: %s (%s)", context, msg, strerror(os_errno));
    else
        stubdmd_log(level, s, "%s: %s", context, msg);
}

void stubdmd_served_free(struct stubdmd_served *s)
{
    stubdmd_control_forget(s);
    stubdmd_cleanup_stop(s);
    stubdmd_qmp_stop(s);
    stubdmd_console_stop(s);
    if (s->ep_attached) {
        epoll_ctl(s->d->epfd, EPOLL_CTL_DEL, s->ep.epfd, NULL);
        stubdm_epoll_detach(&s->ep);
    }
    stubdm_ctx_free(s->ctx);
    free(s);
}

/* Its ctx in the daemon's loop, serving nothing yet. */
int stubdmd_served_attach(struct stubdmd_served *s)
{
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &s->src};
    int rc = stubdm_ctx_new(&s->ctx);

    if (rc)
        return rc;
    stubdm_ctx_set_log(s->ctx, lib_log, s, stubdmd_min_level);
    if (s->d->conf->hotplug_dir &&
        (rc = stubdm_ctx_set_hotplug_dir(s->ctx, s->d->conf->hotplug_dir)))
        return rc;
    stubdm_ctx_set_console_limits(s->ctx, s->d->conf->console_rate,
                                  STUBDM_CONSOLE_DEFAULT_ROTATE_INTERVAL_MS);
    if ((rc = stubdm_epoll_attach(&s->ep, s->ctx)))
        return rc;
    if (epoll_ctl(s->d->epfd, EPOLL_CTL_ADD, s->ep.epfd, &e) < 0) {
        stubdm_epoll_detach(&s->ep);
        return STUBDM_EFAIL;
    }
    s->ep_attached = true;
    return 0;
}

int stubdmd_served_start(struct stubdmd_served *s)
{
    int rc = stubdmd_served_attach(s);

    if (rc)
        return rc;
    /* Each on its own: a log that cannot be opened leaves QMP served. */
    int log_rc = stubdmd_console_start(s), qmp_rc = stubdmd_qmp_start(s);
    return log_rc && qmp_rc ? qmp_rc : 0;
}

void stubdmd_served_dispatch(struct stubdmd_served *s)
{
    int rc = stubdm_epoll_run_once(&s->ep, 0);

    if (rc)
        stubdmd_log(STUBDM_LOG_WARN, s, "dispatch: %s: %s", stubdm_errname(rc),
                    stubdm_ctx_errmsg(s->ctx));
}

/* Clean up after the stubdomains that died and drop those done with
 * (all: drop every one, at shutdown), outside any dispatch of their ctx. */
void stubdmd_sweep(struct stubdmd *d, bool all)
{
    struct stubdmd_served **pp = &d->served;

    while (*pp) {
        struct stubdmd_served *s = *pp;
        if (!all && s->gone)
            stubdmd_cleanup_begin(s);
        if (!all && !s->cleaned) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        stubdmd_log(STUBDM_LOG_INFO, s, all ? "let go" : "gone: not served");
        stubdmd_served_free(s);
    }
}
