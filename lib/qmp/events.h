/*
 * The event queue of a QMP handle (events.c): events kept for a caller that
 * takes them with stubdm_qmp_event_next instead of a callback.  qmp.c
 * pushes each event a handle receives and frees the queue with the handle.
 */
#ifndef STUBDM_QMP_EVENTS_H
#define STUBDM_QMP_EVENTS_H

#include "core/base.h"
#include "qmp/wire.h"

/* An event: borrowed from the read loop (owned NULL, valid during the
 * callback only) or taken from a queue (owned == msg, freed with
 * stubdm_qmp_event_free). */
struct stubdm_qmp_event {
    const struct stubdm__qmp_msg *msg;
    char *data_json; /* rendered on first use */
    struct stubdm__qmp_msg *owned;
};

struct stubdm__qmp_evq;

/* Queue m (its text, copied) on q, counting it or its drop in stats.  The
 * overflow policy of the queue decides what is dropped. */
void stubdm__qmp_evq_push(struct stubdm__qmp_evq *evq,
                          const struct stubdm__qmp_msg *m,
                          stubdm_qmp_stats *stats);
/* Free the queue and the events in it.  Accepts NULL. */
void stubdm__qmp_evq_free(struct stubdm__qmp_evq *evq);

/* From qmp.c: the queue slot of a handle (*slot NULL: no queue; NULL for
 * a handle closed during event delivery). */
struct stubdm__qmp_evq **stubdm__qmp_evq_slot(stubdm_qmp *q);

#endif /* STUBDM_QMP_EVENTS_H */
