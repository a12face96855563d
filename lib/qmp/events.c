/*
 * QMP events without callbacks: a bounded queue per handle that the caller
 * drains (bindings that cannot take calls from C, such as OCaml's).
 *
 * The queue keeps each event's text only, copied when the read loop
 * delivers it; stubdm_qmp_event_next parses it again (with the strict
 * parser, bounded by the text's own size) into an event the caller owns.
 * So a flood costs a copy per event, and memory is bounded by the
 * capacity and by STUBDM_QMP_EVENTS_MAX_BYTES of text.  An eventfd is
 * readable exactly while the queue is not empty, for a caller that polls.
 */
#include "core/error.h"
#include "core/mem.h"
#include "qmp/events.h"
#include "qmp/transport.h"
#include "qmp/wire.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct qev {
    size_t len;
    char text[];
};

struct stubdm__qmp_evq {
    struct qev **ring; /* cap slots; n events from head */
    size_t cap, head, n, bytes;
    stubdm_qmp_events_overflow overflow;
    int efd;
};

static void set_ready(struct stubdm__qmp_evq *e, bool ready)
{
    uint64_t v = 1;

    /* Level-triggered: one count while not empty, none when empty. */
    if (ready)
        (void)!write(e->efd, &v, sizeof(v));
    else
        (void)!read(e->efd, &v, sizeof(v));
}

static void drop_oldest(struct stubdm__qmp_evq *e)
{
    struct qev *old = e->ring[e->head];

    e->ring[e->head] = NULL;
    e->head = (e->head + 1) % e->cap;
    e->n--;
    e->bytes -= old->len;
    free(old);
}

void stubdm__qmp_evq_push(struct stubdm__qmp_evq *e,
                          const struct stubdm__qmp_msg *m,
                          stubdm_qmp_stats *stats)
{
    size_t len = m->raw_len;
    struct qev *ev;
    bool was_empty = e->n == 0;

    if (len > STUBDM_QMP_EVENTS_MAX_BYTES)
        goto dropped;
    if (e->overflow == STUBDM_QMP_EVENTS_DROP_NEWEST &&
        (e->n == e->cap || e->bytes + len > STUBDM_QMP_EVENTS_MAX_BYTES))
        goto dropped;
    while (e->n == e->cap || e->bytes + len > STUBDM_QMP_EVENTS_MAX_BYTES) {
        drop_oldest(e);
        stats->events_dropped++;
    }
    ev = stubdm__malloc(sizeof(*ev) + len + 1);
    if (!ev)
        goto dropped;
    ev->len = len;
    memcpy(ev->text, m->raw, len);
    ev->text[len] = '\0';
    e->ring[(e->head + e->n) % e->cap] = ev;
    e->n++;
    e->bytes += len;
    stats->events_queued++;
    if (was_empty)
        set_ready(e, true);
    return;
dropped:
    stats->events_dropped++;
    if (was_empty != (e->n == 0))
        set_ready(e, false);
}

void stubdm__qmp_evq_free(struct stubdm__qmp_evq *e)
{
    if (!e)
        return;
    while (e->n)
        drop_oldest(e);
    free(e->ring);
    close(e->efd);
    free(e);
}

int stubdm_qmp_events_enable(stubdm_qmp *q, size_t capacity,
                             stubdm_qmp_events_overflow overflow)
{
    struct stubdm__qmp_evq **slot, *e;

    if (!q || capacity == 0 || capacity > STUBDM_QMP_EVENTS_MAX_CAPACITY ||
        (overflow != STUBDM_QMP_EVENTS_DROP_OLDEST &&
         overflow != STUBDM_QMP_EVENTS_DROP_NEWEST))
        return STUBDM_EINVAL;
    slot = stubdm__qmp_evq_slot(q);
    if (!slot)
        return STUBDM_EINVAL;
    if (*slot)
        return stubdm__fail(stubdm__qmp_ctx(q), STUBDM_ESTATE, 0,
                            "the handle's event queue is already enabled");
    e = stubdm__calloc(1, sizeof(*e));
    if (e)
        e->ring = stubdm__calloc(capacity, sizeof(*e->ring));
    if (!e || !e->ring) {
        if (e)
            free(e->ring);
        free(e);
        return stubdm__fail(stubdm__qmp_ctx(q), STUBDM_ENOMEM, ENOMEM,
                            "QMP event queue");
    }
    e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->efd < 0) {
        int err = errno;
        free(e->ring);
        free(e);
        return stubdm__fail(stubdm__qmp_ctx(q), STUBDM_EFAIL, err,
                            "eventfd for the QMP event queue: %s",
                            strerror(err));
    }
    e->cap = capacity;
    e->overflow = overflow;
    *slot = e;
    return 0;
}

void stubdm_qmp_events_disable(stubdm_qmp *q)
{
    struct stubdm__qmp_evq **slot = q ? stubdm__qmp_evq_slot(q) : NULL;

    if (!slot)
        return;
    stubdm__qmp_evq_free(*slot);
    *slot = NULL;
}

int stubdm_qmp_events_fd(stubdm_qmp *q)
{
    struct stubdm__qmp_evq **slot = q ? stubdm__qmp_evq_slot(q) : NULL;

    return slot && *slot ? (*slot)->efd : -1;
}

/* Parse an event's text again into a message the caller will own.  The
 * text passed the connection's limits once; the bounds here are its own
 * size (and the largest nesting a connection allows). */
static int parse_event(const struct qev *ev, struct stubdm__qmp_msg **out)
{
    struct stubdm__qmp_limits lim;
    struct stubdm__qmp_wire w;
    size_t used = 0;
    int rc;

    *out = NULL;
    stubdm__qmp_limits_default(&lim);
    if (lim.max_message <= ev->len)
        lim.max_message = lim.max_string = lim.max_queued_bytes = ev->len + 1;
    lim.max_depth = 1024;
    rc = stubdm__qmp_wire_init(&w, &lim, false);
    if (!rc)
        rc = stubdm__qmp_wire_feed(&w, ev->text, ev->len, &used);
    if (!rc)
        rc = stubdm__qmp_wire_next(&w, out);
    stubdm__qmp_wire_dispose(&w);
    if (rc == 0 && (*out)->type == STUBDM__QMP_EVENT)
        return 0;
    stubdm__qmp_msg_free(*out);
    *out = NULL;
    return rc == STUBDM_ENOMEM ? STUBDM_ENOMEM : STUBDM_EPROTO;
}

int stubdm_qmp_event_next(stubdm_qmp *q, stubdm_qmp_event **ev_out)
{
    struct stubdm__qmp_evq **slot, *e;
    struct stubdm__qmp_msg *m;
    stubdm_qmp_event *ev;
    int rc;

    if (ev_out)
        *ev_out = NULL;
    slot = q ? stubdm__qmp_evq_slot(q) : NULL;
    if (!slot || !ev_out)
        return STUBDM_EINVAL;
    e = *slot;
    if (!e)
        return STUBDM_ESTATE;
    if (e->n == 0)
        return STUBDM_EAGAIN;
    ev = stubdm__calloc(1, sizeof(*ev));
    if (!ev)
        return stubdm__fail(stubdm__qmp_ctx(q), STUBDM_ENOMEM, ENOMEM,
                            "QMP event");
    rc = parse_event(e->ring[e->head], &m);
    if (rc == STUBDM_ENOMEM) {
        free(ev); /* left queued: the caller may try again */
        return stubdm__fail(stubdm__qmp_ctx(q), STUBDM_ENOMEM, ENOMEM,
                            "QMP event");
    }
    drop_oldest(e);
    if (e->n == 0)
        set_ready(e, false);
    if (rc) {
        /* Not reachable with text the connection parsed already. */
        free(ev);
        return stubdm__fail(stubdm__qmp_ctx(q), STUBDM_EPROTO, 0,
                            "a queued QMP event no longer parses");
    }
    ev->msg = ev->owned = m;
    *ev_out = ev;
    return 0;
}

void stubdm_qmp_event_free(stubdm_qmp_event *ev)
{
    if (!ev)
        return;
    free(ev->data_json);
    stubdm__qmp_msg_free(ev->owned);
    free(ev);
}
