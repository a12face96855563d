/*
 * The ctx's xenstore connection, through the real libxenstore.
 *
 * Watches carry a token "stubdm/<id>" with a never-reused 64-bit id, looked
 * up in a hash table, so delivering an event costs O(1) whatever the
 * number of watches, and an event for a watch removed meanwhile (xenstore
 * may still deliver it) finds nothing and is dropped.
 *
 * A dispatch takes at most XS_EVENT_BUDGET events from libxenstore's queue
 * and runs each watch that had any once: a stubdomain rewriting a watched
 * node in a loop gets one callback per dispatch, and the other fds and
 * timers are served in between.  What is left waits in libxenstore's
 * queue; a zero-delay timer (run on the next dispatch, see
 * stubdm__timer_arm) comes back for it, since events already read off the
 * socket need not make the fd readable again.
 */
#include "core/base.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "xen/xs.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define TOKEN_PREFIX "stubdm/"
/* Events taken from libxenstore per dispatch. */
#define XS_EVENT_BUDGET 1024

uint64_t stubdm__xs_requests(const stubdm_ctx *ctx)
{
    return ctx->xs.requests;
}

void stubdm__xs_count(stubdm_ctx *ctx, unsigned n)
{
    ctx->xs.requests += n;
}

int stubdm__xs_handle(stubdm_ctx *ctx, struct xs_handle **out)
{
    /* A forked child's teardown writes nothing (a console's state, a
     * spawn's removal): the parent may still be using those nodes. */
    if (!ctx->xs.xsh && ctx->postfork)
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "the ctx was inherited across fork: no xenstore");
    if (!ctx->xs.xsh) {
        const char *where = getenv("XENSTORED_PATH");
        ctx->xs.xsh = xs_open(0);
        if (!ctx->xs.xsh && where)
            return stubdm__fail(ctx, STUBDM_EXENSTORE, errno,
                                "cannot connect to xenstore at %s "
                                "(XENSTORED_PATH): %s",
                                where, strerror(errno));
        if (!ctx->xs.xsh)
            return stubdm__fail(ctx, STUBDM_EXENSTORE, errno,
                                "cannot connect to xenstore (its default "
                                "socket, then /dev/xen/xenbus): %s; without "
                                "Xen, point XENSTORED_PATH at a simulated "
                                "host (stubdm-ctl sim start)",
                                strerror(errno));
    }
    *out = ctx->xs.xsh;
    return 0;
}

/* ---- watches ------------------------------------------------------------ */

static size_t bucket_of(const struct stubdm__xs_state *xs, uint64_t id)
{
    /* Fibonacci hashing spreads sequential ids across the table. */
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) &
           (xs->nbuckets - 1);
}

static int table_grow(stubdm_ctx *ctx)
{
    struct stubdm__xs_state *xs = &ctx->xs;
    size_t n = xs->nbuckets ? xs->nbuckets * 2 : 64;
    struct stubdm__xswatch **b = stubdm__calloc(n, sizeof(*b));
    size_t old = xs->nbuckets;
    struct stubdm__xswatch **ob = xs->buckets;

    if (!b)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "watch table");
    xs->buckets = b;
    xs->nbuckets = n;
    for (size_t i = 0; i < old; i++) {
        struct stubdm__xswatch *w = ob[i], *next;
        for (; w; w = next) {
            next = w->hash_next;
            size_t k = bucket_of(xs, w->id);
            w->hash_next = b[k];
            b[k] = w;
        }
    }
    free(ob);
    return 0;
}

static struct stubdm__xswatch *table_find(struct stubdm__xs_state *xs,
                                          uint64_t id)
{
    if (!xs->nbuckets)
        return NULL;
    for (struct stubdm__xswatch *w = xs->buckets[bucket_of(xs, id)]; w;
         w = w->hash_next)
        if (w->id == id)
            return w;
    return NULL;
}

static void table_remove(struct stubdm__xs_state *xs,
                         struct stubdm__xswatch *w)
{
    struct stubdm__xswatch **p = &xs->buckets[bucket_of(xs, w->id)];

    for (; *p; p = &(*p)->hash_next) {
        if (*p == w) {
            *p = w->hash_next;
            w->hash_next = NULL;
            xs->nwatches--;
            return;
        }
    }
}

static bool parse_token(const char *token, uint64_t *id)
{
    char *end;

    if (strncmp(token, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0)
        return false;
    token += strlen(TOKEN_PREFIX);
    errno = 0;
    *id = strtoull(token, &end, 10);
    return errno == 0 && end != token && *end == '\0';
}

/* Take up to the budget of events, marking their watches; true when the
 * budget ran out (more may wait). */
static bool take_events(stubdm_ctx *ctx)
{
    struct stubdm__xs_state *xs = &ctx->xs;

    for (unsigned n = 0; n < XS_EVENT_BUDGET; n++) {
        char **ev = xs->xsh ? xs_check_watch(xs->xsh) : NULL;
        uint64_t id;

        if (!ev) {
            if (xs->xsh && errno != EAGAIN)
                stubdm__log(ctx, STUBDM_LOG_WARN, errno, "xs",
                            "reading watch events: %s", strerror(errno));
            return false;
        }
        if (parse_token(ev[XS_WATCH_TOKEN], &id)) {
            struct stubdm__xswatch *w = table_find(xs, id);
            if (w && stubdm__list_empty(&w->pending))
                stubdm__list_add_tail(&xs->pending, &w->pending);
        }
        free(ev);
    }
    return true;
}

static void dispatch_events(stubdm_ctx *ctx)
{
    struct stubdm__xs_state *xs = &ctx->xs;
    bool more;

    /* The fd and the timer both come here: one share per dispatch. */
    stubdm__timer_stop(ctx, &xs->more);
    more = take_events(ctx);
    /* A callback may stop any watch (it leaves the list) or start one. */
    while (!stubdm__list_empty(&xs->pending) && !ctx->free_requested) {
        struct stubdm__xswatch *w = STUBDM_CONTAINER_OF(xs->pending.next,
                                                        struct stubdm__xswatch,
                                                        pending);
        stubdm__list_del(&w->pending);
        w->cb(ctx, w, w->path);
    }
    if (more && !ctx->free_requested)
        stubdm__timer_arm(ctx, &xs->more, 0);
}

static void on_xs_readable(stubdm_ctx *ctx, struct stubdm__fd *fdw,
                           short revents)
{
    (void)fdw;
    (void)revents;
    dispatch_events(ctx);
}

static void on_xs_more(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    (void)t;
    dispatch_events(ctx);
}

/* ---- lost connections --------------------------------------------------- */

static bool errno_lost(int e)
{
    return e == EBADF || e == ECONNRESET || e == EPIPE || e == ENOTCONN ||
           e == ESHUTDOWN;
}

bool stubdm__xs_conn_lost(const stubdm_ctx *ctx)
{
    return errno_lost(ctx->os_errno);
}

/* The probe's read: whether the connection is lost, with why in msg and
 * *err.  The ctx's error is the caller's (its last failure, which a
 * dispatch must not change): saved around the read, put back. */
static int probe_read(stubdm_ctx *ctx, char *msg, size_t len, int *err)
{
    char saved[STUBDM_ERRMSG_MAX], *v = NULL;
    int saved_errno = ctx->os_errno, rc;

    snprintf(saved, sizeof(saved), "%s", ctx->errmsg);
    rc = stubdm__xs_read(ctx, 0, "/", 16, &v, NULL);
    free(v);
    snprintf(msg, len, "%s", ctx->errmsg);
    *err = ctx->os_errno;
    snprintf(ctx->errmsg, sizeof(ctx->errmsg), "%s", saved);
    ctx->os_errno = saved_errno;
    return rc == STUBDM_EXENSTORE && errno_lost(*err) ? rc : 0;
}

static void on_probe(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    struct stubdm__xs_state *xs = &ctx->xs;
    char msg[STUBDM_ERRMSG_MAX];
    int rc, err;

    (void)t;
    rc = probe_read(ctx, msg, sizeof(msg), &err);
    if (!rc) {
        rc = stubdm__timer_arm(ctx, &xs->probe,
                               stubdm_now_ms() + STUBDM__XS_PROBE_MS);
        if (!rc)
            return;
        /* No timer: tell the subscribers rather than leave them blind. */
        snprintf(msg, sizeof(msg), "xenstore connection probe: %s",
                 stubdm_strerror(rc));
        err = 0;
    }
    /* Each subscriber's callback may stop others (a spawn's teardown
     * ends its own waits): take them one at a time. */
    while (!stubdm__list_empty(&xs->probes)) {
        struct stubdm__xsprobe *p = STUBDM_CONTAINER_OF(xs->probes.next,
                                                        struct stubdm__xsprobe,
                                                        link);
        stubdm__xsprobe_stop(ctx, p);
        stubdm__fail(ctx, rc, err, "%s", msg);
        p->cb(ctx, p, rc);
    }
}

void stubdm__xsprobe_init(struct stubdm__xsprobe *p, stubdm__xsprobe_cb *cb)
{
    memset(p, 0, sizeof(*p));
    p->cb = cb;
    stubdm__list_init(&p->link);
}

int stubdm__xsprobe_start(stubdm_ctx *ctx, struct stubdm__xsprobe *p)
{
    struct stubdm__xs_state *xs = &ctx->xs;
    int rc;

    stubdm__xsprobe_stop(ctx, p);
    if (stubdm__list_empty(&xs->probes) &&
        (rc = stubdm__timer_arm(ctx, &xs->probe,
                                stubdm_now_ms() + STUBDM__XS_PROBE_MS)))
        return rc;
    stubdm__list_add_tail(&xs->probes, &p->link);
    p->on = true;
    return 0;
}

void stubdm__xsprobe_stop(stubdm_ctx *ctx, struct stubdm__xsprobe *p)
{
    if (!p->on)
        return;
    p->on = false;
    stubdm__list_del(&p->link);
    if (stubdm__list_empty(&ctx->xs.probes))
        stubdm__timer_stop(ctx, &ctx->xs.probe);
}

void stubdm__xs_init(stubdm_ctx *ctx)
{
    stubdm__fd_init(&ctx->xs.fdw, NULL);
    stubdm__list_init(&ctx->xs.pending);
    stubdm__timer_init(&ctx->xs.more, on_xs_more);
    stubdm__list_init(&ctx->xs.probes);
    stubdm__timer_init(&ctx->xs.probe, on_probe);
}

void stubdm__xswatch_init(struct stubdm__xswatch *w, stubdm__xswatch_cb *cb)
{
    memset(w, 0, sizeof(*w));
    w->cb = cb;
    stubdm__list_init(&w->pending);
}

int stubdm__xswatch_start(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                          const char *path)
{
    struct stubdm__xs_state *xs = &ctx->xs;
    struct xs_handle *xsh = NULL;
    char token[48];
    int rc;

    stubdm__xswatch_stop(ctx, w);
    rc = stubdm__xs_handle(ctx, &xsh);
    if (rc)
        return rc;
    if (!stubdm__fd_active(&xs->fdw)) {
        int fd = xs_fileno(xsh);
        if (fd < 0)
            return stubdm__fail(ctx, STUBDM_EXENSTORE, errno,
                                "xenstore watch fd: %s", strerror(errno));
        xs->fdw.cb = on_xs_readable;
        rc = stubdm__fd_watch(ctx, &xs->fdw, fd, POLLIN);
        if (rc)
            return rc;
    }
    if (xs->nwatches + 1 > xs->nbuckets * 2 && (rc = table_grow(ctx)))
        return rc;
    w->path = stubdm__strdup(path);
    if (!w->path)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "watch path");
    w->id = ++xs->next_id;
    snprintf(token, sizeof(token), TOKEN_PREFIX "%" PRIu64, w->id);
    stubdm__xs_count(ctx, 1);
    if (!xs_watch(xsh, path, token)) {
        int err = errno;
        free(w->path);
        w->path = NULL;
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "xenstore watch on %s: %s", path, strerror(err));
    }
    size_t k = bucket_of(xs, w->id);
    w->hash_next = xs->buckets[k];
    xs->buckets[k] = w;
    xs->nwatches++;
    return 0;
}

void stubdm__xswatch_stop(stubdm_ctx *ctx, struct stubdm__xswatch *w)
{
    struct stubdm__xs_state *xs = &ctx->xs;
    char token[48];

    if (!w->path)
        return;
    stubdm__list_del(&w->pending);
    table_remove(xs, w);
    snprintf(token, sizeof(token), TOKEN_PREFIX "%" PRIu64, w->id);
    if (xs->xsh) {
        stubdm__xs_count(ctx, 1);
        /* Failure leaves a dangling watch in xenstored whose events find no
         * entry in the table and are dropped: harmless, so only logged. */
        if (!xs_unwatch(xs->xsh, w->path, token))
            stubdm__log(ctx, STUBDM_LOG_DEBUG, errno, "xs", "unwatch %s: %s",
                        w->path, strerror(errno));
    }
    free(w->path);
    w->path = NULL;
}

/* ---- reads and transactions --------------------------------------------- */

int stubdm__xs_read(stubdm_ctx *ctx, uint32_t t, const char *path,
                    size_t max_len, char **val_out, size_t *len_out)
{
    struct xs_handle *xsh = NULL;
    unsigned int len;
    char *v;
    int rc = stubdm__xs_handle(ctx, &xsh);

    *val_out = NULL;
    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    v = xs_read(xsh, t, path, &len);
    if (!v) {
        int err = errno;
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "reading %s: %s", path, strerror(err));
    }
    if (len > max_len) {
        free(v);
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "value of %s is %u bytes, more than the %zu "
                            "allowed",
                            path, len, max_len);
    }
    *val_out = v; /* libxenstore NUL-terminates values */
    if (len_out)
        *len_out = len;
    return 0;
}

int stubdm__xs_transaction(stubdm_ctx *ctx, const char *what,
                           stubdm__xs_txn_fn *fn, void *arg,
                           unsigned *attempts_out)
{
    struct xs_handle *xsh = NULL;
    int rc = stubdm__xs_handle(ctx, &xsh);

    if (rc)
        return rc;
    for (unsigned attempt = 1; attempt <= STUBDM__XS_TXN_RETRIES; attempt++) {
        xs_transaction_t t;

        if (attempts_out)
            *attempts_out = attempt;
        stubdm__xs_count(ctx, 1);
        t = xs_transaction_start(xsh);
        if (t == XBT_NULL)
            return stubdm__fail(ctx, STUBDM_EXENSTORE, errno,
                                "%s: starting a transaction: %s", what,
                                strerror(errno));
        rc = fn(ctx, xsh, t, arg);
        stubdm__xs_count(ctx, 1);
        if (rc) {
            int saved = ctx->os_errno;
            char msg[STUBDM_ERRMSG_MAX];
            /* Aborting must not clobber the message of the real failure. */
            snprintf(msg, sizeof(msg), "%s", ctx->errmsg);
            xs_transaction_end(xsh, t, true);
            snprintf(ctx->errmsg, sizeof(ctx->errmsg), "%s", msg);
            ctx->os_errno = saved;
            return rc;
        }
        if (xs_transaction_end(xsh, t, false))
            return 0;
        if (errno != EAGAIN)
            return stubdm__fail(ctx, stubdm__xs_errno_to_rc(errno), errno,
                                "%s: committing the transaction: %s", what,
                                strerror(errno));
        LOG_DEBUG(ctx, "xs", "%s: transaction conflict, attempt %u", what,
                  attempt);
    }
    return stubdm__fail(ctx, STUBDM_EXENSTORE, EAGAIN,
                        "%s: the transaction conflicted %d times in a row",
                        what, STUBDM__XS_TXN_RETRIES);
}

void stubdm__xs_postfork(stubdm_ctx *ctx)
{
    struct stubdm__xs_state *xs = &ctx->xs;

    stubdm__fd_stop(ctx, &xs->fdw);
    /* The socket is shared with the parent: no XS_UNWATCH on it (the
     * watches stay the parent's), no lock of a mutex a thread that does
     * not exist here may hold.  The watches' stops then find no handle and
     * send nothing. */
    if (xs->xsh)
        xs_daemon_destroy_postfork(xs->xsh);
    xs->xsh = NULL;
}

void stubdm__xs_dispose(stubdm_ctx *ctx)
{
    struct stubdm__xs_state *xs = &ctx->xs;

    /* Watches still registered belong to ops already stopped; the table only
     * holds pointers into them, so dropping it is enough.  Closing the
     * connection removes the watches in xenstored. */
    stubdm__fd_stop(ctx, &xs->fdw);
    stubdm__timer_stop(ctx, &xs->more);
    stubdm__timer_stop(ctx, &xs->probe);
    while (!stubdm__list_empty(&xs->probes))
        stubdm__list_del(xs->probes.next);
    while (!stubdm__list_empty(&xs->pending))
        stubdm__list_del(xs->pending.next);
    if (xs->xsh)
        xs_close(xs->xsh);
    xs->xsh = NULL;
    free(xs->buckets);
    xs->buckets = NULL;
    xs->nbuckets = xs->nwatches = 0;
}
