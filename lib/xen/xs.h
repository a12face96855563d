/*
 * Xenstore (xs.c): one libxenstore connection per ctx, watches dispatched
 * by token in O(1), bounded reads of values a peer may write, and
 * transactions retried on EAGAIN.
 */
#ifndef STUBDM_XEN_XS_H
#define STUBDM_XEN_XS_H

#include "core/list.h"
#include "core/loop.h"

struct xs_handle;

/* Open the connection on first use. */
int stubdm__xs_handle(stubdm_ctx *ctx, struct xs_handle **out);

struct stubdm__xswatch;
/* Events are coalesced: a watch's callback runs at most once per dispatch,
 * however many events it had (a peer rewriting a watched node in a loop
 * costs one callback per dispatch), so it must re-read what it watches.
 * path is the watched path (not the node that changed), valid until the
 * watch is stopped. */
typedef void stubdm__xswatch_cb(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                                const char *path);

struct stubdm__xswatch {
    stubdm__xswatch_cb *cb;
    char *path;  /* NULL while not watching */
    uint64_t id; /* the token, "stubdm/<id>" */
    struct stubdm__xswatch *hash_next;
    struct stubdm__list pending; /* in the ctx's list while an event waits */
};

void stubdm__xswatch_init(struct stubdm__xswatch *w, stubdm__xswatch_cb *cb);
/* Register a watch; xenstore fires it once right away, then on changes. */
int stubdm__xswatch_start(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                          const char *path);
/* Idempotent. */
void stubdm__xswatch_stop(stubdm_ctx *ctx, struct stubdm__xswatch *w);

/*
 * Read path in transaction t (0 for none), refusing values longer than
 * max_len: the value comes from a possibly hostile writer.  *val_out is
 * NUL-terminated, free() it.  STUBDM_ENOENT when absent.
 */
int stubdm__xs_read(stubdm_ctx *ctx, uint32_t t, const char *path,
                    size_t max_len, char **val_out, size_t *len_out);

/* One transaction, retried on EAGAIN up to STUBDM__XS_TXN_RETRIES times. */
#define STUBDM__XS_TXN_RETRIES 16
typedef int stubdm__xs_txn_fn(stubdm_ctx *ctx, struct xs_handle *xsh,
                              uint32_t t, void *arg);
int stubdm__xs_transaction(stubdm_ctx *ctx, const char *what,
                           stubdm__xs_txn_fn *fn, void *arg,
                           unsigned *attempts_out);

/*
 * A lost connection.  libxenstore's reader thread ends without a word
 * when xenstored closes the connection, so while no request is in flight
 * (a wait for a watch) nothing would tell.  A probe subscriber is told
 * when a cheap read, one per ctx every STUBDM__XS_PROBE_MS while anyone
 * subscribes (the first one a period after the first subscriber, so a
 * quick wait sends none), finds the connection lost; the read's failure
 * is then the ctx's error.  The callback runs once: the subscription has
 * ended.
 */
#define STUBDM__XS_PROBE_MS 1000
struct stubdm__xsprobe;
typedef void stubdm__xsprobe_cb(stubdm_ctx *ctx, struct stubdm__xsprobe *p,
                                int rc);
struct stubdm__xsprobe {
    stubdm__xsprobe_cb *cb;
    struct stubdm__list link; /* in the ctx's probes while subscribed */
    bool on;
};
void stubdm__xsprobe_init(struct stubdm__xsprobe *p, stubdm__xsprobe_cb *cb);
int stubdm__xsprobe_start(stubdm_ctx *ctx, struct stubdm__xsprobe *p);
/* Idempotent. */
void stubdm__xsprobe_stop(stubdm_ctx *ctx, struct stubdm__xsprobe *p);
/* Whether the ctx's last error is a request on a connection xenstored
 * closed (EBADF once libxenstore's reader thread closed the socket). */
bool stubdm__xs_conn_lost(const stubdm_ctx *ctx);

/* Count of xenstore requests made on this ctx (for benchmarks). */
uint64_t stubdm__xs_requests(const stubdm_ctx *ctx);
void stubdm__xs_count(stubdm_ctx *ctx, unsigned n);

struct stubdm__xs_state {
    struct xs_handle *xsh;
    struct stubdm__fd fdw;
    /* Watches with an event not yet delivered; a zero-delay timer that
     * takes the next share of libxenstore's queue on a later dispatch. */
    struct stubdm__list pending;
    struct stubdm__timer more;
    struct stubdm__xswatch **buckets;
    size_t nbuckets, nwatches;
    uint64_t next_id;
    uint64_t requests;
    struct stubdm__list probes; /* struct stubdm__xsprobe */
    struct stubdm__timer probe;
};
void stubdm__xs_init(stubdm_ctx *ctx);
void stubdm__xs_dispose(stubdm_ctx *ctx);
/* In a forked child: drop the connection without a word on it. */
void stubdm__xs_postfork(stubdm_ctx *ctx);

#endif /* STUBDM_XEN_XS_H */
