/*
 * The multiplexing QMP proxy: many local clients, one stubdm_qmp handle.
 *
 * Each client is a small QMP server session: a greeting synthesised from
 * QEMU's (its version, no capabilities), capabilities negotiation answered
 * locally, then commands forwarded through the library, which assigns its
 * own ids; the client's "id" (any JSON value) is kept as JSON text and put
 * back into the reply, so every client has its own id space.  Events go to
 * every client that negotiated.  Input and output per client are bounded:
 * an oversized message or a client that stops reading gets it disconnected,
 * so no client can grow the proxy's memory.
 *
 * A client that connects while the QMP handle is not ready (before the
 * stubdomain's QEMU answered, or while the handle reconnects) waits,
 * greeting withheld and input kept (bounded), until the handle is ready or
 * its wait bound passes: then it gets a GenericError and is closed.  The
 * handle's readiness is polled while someone waits (the QMP layer has no
 * readiness callback for a handle it does not own the open of).
 */
#include "core/base.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/mem.h"
#include "qmp/json.h"
#include "qmp/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MOD "qmp-proxy"
#define MIN_CLIENT_BUFFER (64u << 10)
/* Reads of a client's socket per dispatch: a client that writes as fast as
 * it is answered must not hold the loop (the fd stays readable, so the
 * next dispatch takes the rest after the other fds and timers). */
#define CLIENT_READS_PER_DISPATCH 4
/* How often a waiting client's proxy looks whether the handle is ready. */
#define READY_POLL_MS 20

struct pclient;

struct pcmd {
    struct pclient *cl;
    struct stubdm__list link; /* cl->cmds */
    stubdm_op *op;
    char *id_json; /* NULL: the client sent no id */
};

struct pclient {
    stubdm_qmp_proxy *p;
    struct stubdm__list link; /* p->clients */
    int fd;
    struct stubdm__fd w;
    struct stubdm__buf out;
    struct stubdm__json_parser *parser;
    bool negotiated;
    struct stubdm__list cmds;
    unsigned serial;
    bool greeted;            /* false: waiting for the handle to be ready */
    int64_t deadline_ms;     /* of the wait */
    struct stubdm__buf held; /* what it sent while waiting */
    unsigned pins;           /* client_pin()ed: drop only marks */
    bool dead;
};

struct stubdm_qmp_proxy_opts {
    char *path;
    int listen_fd;
    unsigned mode;
    bool has_mode, has_group;
    uint32_t group;
    int cmd_timeout_ms, ready_timeout_ms;
};

struct stubdm_qmp_proxy {
    stubdm_ctx *ctx;
    stubdm_qmp *q;
    char *path; /* the socket file; the caller's fd: a name for the logs */
    int lfd;
    bool own_file; /* made here: closed, and its file removed, on free */
    dev_t dev;     /* the file made here */
    ino_t ino;
    struct stubdm__fd lw;
    struct stubdm__list clients;
    size_t nclients, nwaiting, max_clients, client_buffer;
    int cmd_timeout_ms, ready_timeout_ms;
    struct stubdm__timer wait_timer;
    stubdm_qmp_sub *sub;
    stubdm_op *lost; /* stubdm_qmp_watch_lost on q */
    uint64_t dropped;
    uint64_t refused; /* by credentials */
    uint64_t timed_out;
    unsigned serial;
    bool has_group;
    uint32_t group; /* stubdm_qmp_proxy_allow_group */
};

/* ---- client output ------------------------------------------------------ */

static void client_drop(struct pclient *cl, const char *why);

static void client_flush(struct pclient *cl)
{
    while (cl->out.len) {
        ssize_t n = send(cl->fd, cl->out.data, cl->out.len,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 &&
            (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        if (n <= 0) {
            client_drop(cl, "write failed");
            return;
        }
        stubdm__buf_consume(&cl->out, (size_t)n);
    }
    if (stubdm__fd_watch(cl->p->ctx, &cl->w, cl->fd,
                         (short)(POLLIN | (cl->out.len ? POLLOUT : 0))))
        client_drop(cl, "the application's loop refused its watch");
}

/* Queue text + "\r\n"; false when the client was dropped (over its bound). */
static bool client_send(struct pclient *cl, const char *text, size_t len)
{
    if (cl->out.len + len + 2 > cl->p->client_buffer ||
        stubdm__buf_append(&cl->out, text, len) ||
        stubdm__buf_append(&cl->out, "\r\n", 2)) {
        cl->p->dropped++;
        client_drop(cl, "output buffer full (client not reading)");
        return false;
    }
    client_flush(cl);
    return !cl->dead;
}

/* Append s as a JSON string to b. */
static int put_string(struct stubdm__buf *b, const char *s)
{
    struct stubdm__json_writer *w = stubdm__json_writer_new(b);
    stubdm__json_w_cstring(w, s ? s : "");
    return stubdm__json_writer_end(w);
}

/* End a reply whose start is in b (built if ok): the client's id, if it
 * gave one, then the closing brace; send it, or drop the client when the
 * memory ran out. */
static void send_reply(struct pclient *cl, struct stubdm__buf *b, bool ok,
                       const char *id_json)
{
    if (ok && id_json)
        ok = !stubdm__buf_append(b, ", \"id\": ", 8) &&
             !stubdm__buf_append(b, id_json, strlen(id_json));
    if (ok && !stubdm__buf_append(b, "}", 1))
        client_send(cl, b->data, b->len);
    else
        client_drop(cl, "out of memory");
    stubdm__buf_dispose(b);
}

static void send_error(struct pclient *cl, const char *id_json,
                       const char *cls, const char *desc)
{
    struct stubdm__buf b;

    stubdm__buf_init(&b, 0);
    send_reply(cl, &b,
               !stubdm__buf_append(&b, "{\"error\": {\"class\": ", 20) &&
                   !put_string(&b, cls) &&
                   !stubdm__buf_append(&b, ", \"desc\": ", 10) &&
                   !put_string(&b, desc) && !stubdm__buf_append(&b, "}", 1),
               id_json);
}

static void send_return(struct pclient *cl, const char *id_json,
                        const char *ret_json)
{
    struct stubdm__buf b;

    stubdm__buf_init(&b, 0);
    send_reply(cl, &b,
               !stubdm__buf_append(&b, "{\"return\": ", 11) &&
                   !stubdm__buf_append(&b, ret_json, strlen(ret_json)),
               id_json);
}

/* ---- commands ----------------------------------------------------------- */

static void pcmd_free(struct pcmd *pc)
{
    stubdm__list_del(&pc->link);
    free(pc->id_json);
    free(pc);
}

static void proxy_drop_greeted(stubdm_qmp_proxy *p, const char *why);

static void on_forwarded(stubdm_qmp *q, stubdm_op *op, int rc,
                         const stubdm_qmp_reply *r, void *user)
{
    struct pcmd *pc = user;
    struct pclient *cl = pc->cl;
    stubdm_qmp_proxy *p = cl->p;
    char desc[STUBDM_ERRMSG_MAX + 16];

    (void)q;
    /* Detached first: answering may drop the client, which must not see
     * (and free) this command. */
    stubdm__list_del(&pc->link);
    pc->op = NULL;
    stubdm_op_free(op); /* deferred by the library until we return */
    if (rc == 0) {
        const char *ret = stubdm_qmp_reply_return_json(r);
        send_return(cl, pc->id_json, ret ? ret : "{}");
    } else if (rc == STUBDM_EQMP) {
        send_error(cl, pc->id_json, stubdm_qmp_reply_error_class(r),
                   stubdm_qmp_reply_error_desc(r));
    } else {
        snprintf(desc, sizeof(desc), "libstubdm: %s", stubdm_op_errmsg(op));
        send_error(cl, pc->id_json, "GenericError", desc);
    }
    pcmd_free(pc);
    if ((rc == STUBDM_EVCHAN || rc == STUBDM_EPROTO ||
         rc == STUBDM_EDOMAIN_GONE) &&
        !stubdm_qmp_is_ready(p->q))
        proxy_drop_greeted(p, "QMP connection to the stubdomain lost");
}

/* v as JSON text in a NUL-terminated string of its own (*out); false when
 * out of memory. */
static bool json_text(const struct stubdm__json *v, char **out)
{
    struct stubdm__json_writer *w;
    struct stubdm__buf b;

    stubdm__buf_init(&b, 0);
    w = stubdm__json_writer_new(&b);
    stubdm__json_w_value(w, v);
    if (stubdm__json_writer_end(w) || stubdm__buf_append(&b, "", 0)) {
        stubdm__buf_dispose(&b);
        return false;
    }
    *out = b.data;
    return true;
}

/* qmp_capabilities, answered here: the proxy negotiates each client on
 * its own and offers no capabilities. */
static void handle_capabilities(struct pclient *cl,
                                const struct stubdm__json *args,
                                const char *id_json)
{
    if (cl->negotiated)
        send_error(cl, id_json, "CommandNotFound",
                   "Capabilities negotiation is already complete, command "
                   "ignored");
    else if (stubdm__json_len(stubdm__json_get(args, "enable")))
        send_error(cl, id_json, "GenericError",
                   "this proxy offers no QMP capabilities");
    else {
        cl->negotiated = true;
        send_return(cl, id_json, "{}");
    }
}

/* Forward the client's command to QEMU; on_forwarded answers it.  Takes
 * id_json. */
static void forward_command(struct pclient *cl, const char *name,
                            char *id_json, const char *args_json)
{
    stubdm_qmp_proxy *p = cl->p;
    struct pcmd *pc = stubdm__calloc(1, sizeof(*pc));
    int rc;

    if (!pc) {
        free(id_json);
        client_drop(cl, "out of memory");
        return;
    }
    pc->cl = cl;
    pc->id_json = id_json;
    stubdm__list_add_tail(&cl->cmds, &pc->link);
    rc = stubdm_qmp_execute(p->q, name, args_json, p->cmd_timeout_ms,
                            on_forwarded, pc, &pc->op);
    if (rc) {
        char desc[STUBDM_ERRMSG_MAX + 16];
        snprintf(desc, sizeof(desc), "libstubdm: %s",
                 stubdm_ctx_errmsg(p->ctx));
        stubdm__list_del(&pc->link);
        send_error(cl, pc->id_json, "GenericError", desc);
        pcmd_free(pc);
    }
}

static void handle_command(struct pclient *cl, const struct stubdm__json *root)
{
    const struct stubdm__json *idv = stubdm__json_get(root, "id");
    const struct stubdm__json *args = stubdm__json_get(root, "arguments");
    const char *name = stubdm__json_as_string(stubdm__json_get(root,
                                                               "execute"),
                                              NULL);
    char *id_json = NULL, *args_json = NULL;

    if (idv && !json_text(idv, &id_json)) {
        client_drop(cl, "out of memory");
        return;
    }
    if (!name) {
        send_error(cl, id_json, "GenericError",
                   stubdm__json_get(root, "exec-oob")
                       ? "out-of-band execution is not offered by this proxy"
                       : "QMP input lacks member 'execute'");
    } else if (args && !stubdm__json_is(args, STUBDM__JSON_OBJECT)) {
        send_error(cl, id_json, "GenericError",
                   "QMP input member 'arguments' must be an object");
    } else if (!strcmp(name, "qmp_capabilities")) {
        handle_capabilities(cl, args, id_json);
    } else if (!cl->negotiated) {
        send_error(cl, id_json, "CommandNotFound",
                   "Expecting capabilities negotiation with "
                   "'qmp_capabilities'");
    } else if (args && !json_text(args, &args_json)) {
        client_drop(cl, "out of memory");
    } else {
        forward_command(cl, name, id_json, args_json);
        id_json = NULL;
    }
    free(id_json);
    free(args_json);
}

/* ---- client input ------------------------------------------------------- */

/* While cl is pinned, client_drop only marks it dead; the last unpin frees
 * it.  client_unpin returns false when cl was dropped (and is gone). */
static void client_pin(struct pclient *cl)
{
    cl->pins++;
}

static bool client_unpin(struct pclient *cl)
{
    if (--cl->pins || !cl->dead)
        return !cl->dead;
    free(cl);
    return false;
}

/* Parse and answer what a greeted client sent; cl must be pinned.  False
 * when it was dropped. */
static bool client_feed(struct pclient *cl, const char *data, size_t n)
{
    size_t off = 0;

    while (off < n) {
        size_t used = 0;
        int rc = stubdm__json_parser_feed(cl->parser, data + off, n - off,
                                          &used);
        off += used;
        if (rc == STUBDM__JSON_MORE)
            break;
        if (rc < 0) {
            send_error(cl, NULL, "GenericError",
                       "JSON parse error: client disconnected");
            if (!cl->dead)
                client_drop(cl, "malformed or oversized input");
            return false;
        }
        struct stubdm__json_doc *doc = stubdm__json_parser_take(cl->parser);
        stubdm__json_parser_reset(cl->parser, NULL);
        if (doc) {
            handle_command(cl, stubdm__json_doc_root(doc));
            stubdm__json_doc_free(doc);
        }
        /* The client may be gone (dropped while answering). */
        if (cl->dead)
            return false;
    }
    return true;
}

/* Keep what a waiting client sent for after its greeting (a client may
 * send qmp_capabilities without waiting for it); false when that went
 * over its bound and it was dropped. */
static bool client_hold(struct pclient *cl, const char *data, size_t n)
{
    if (cl->held.len + n > cl->p->client_buffer ||
        stubdm__buf_append(&cl->held, data, n)) {
        cl->p->dropped++;
        client_drop(cl, "input buffer full while waiting for QMP");
        return false;
    }
    return true;
}

static void client_input(struct pclient *cl, short revents);

static void on_client(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    struct pclient *cl = STUBDM_CONTAINER_OF(w, struct pclient, w);

    (void)ctx;
    client_pin(cl);
    client_input(cl, revents);
    client_unpin(cl);
}

static void client_input(struct pclient *cl, short revents)
{
    char buf[16384];

    if (revents & POLLOUT) {
        client_flush(cl);
        if (cl->dead)
            return;
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return;
    for (int round = 0; round < CLIENT_READS_PER_DISPATCH; round++) {
        ssize_t n = recv(cl->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 &&
            (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            client_drop(cl, n == 0 ? "client closed" : "read error");
            return;
        }
        if (!(cl->greeted ? client_feed(cl, buf, (size_t)n)
                          : client_hold(cl, buf, (size_t)n)))
            return;
    }
}

static void client_drop(struct pclient *cl, const char *why)
{
    stubdm_qmp_proxy *p = cl->p;

    LOG_DEBUG(p->ctx, MOD, "client %d disconnected: %s", cl->fd, why);
    while (!stubdm__list_empty(&cl->cmds)) {
        struct pcmd *pc = STUBDM_CONTAINER_OF(cl->cmds.next, struct pcmd,
                                              link);
        stubdm_op *op = pc->op;
        pc->cl = NULL;
        stubdm__list_del(&pc->link);
        if (op) {
            /* Silent cancel; from inside its own callback the library
             * defers the free, and on_forwarded sees pc->cl == NULL. */
            stubdm_op_free(op);
            free(pc->id_json);
            free(pc);
        }
    }
    stubdm__fd_stop(p->ctx, &cl->w);
    close(cl->fd);
    stubdm__buf_dispose(&cl->out);
    stubdm__buf_dispose(&cl->held);
    stubdm__json_parser_free(cl->parser);
    stubdm__list_del(&cl->link);
    p->nclients--;
    if (!cl->greeted)
        p->nwaiting--;
    cl->dead = true;
    if (!cl->pins)
        free(cl);
}

static void proxy_drop_all(stubdm_qmp_proxy *p, const char *why)
{
    while (!stubdm__list_empty(&p->clients))
        client_drop(STUBDM_CONTAINER_OF(p->clients.next, struct pclient, link),
                    why);
}

/* The clients that were talking to the connection just lost; the waiting
 * ones go on waiting for it to come back. */
static void proxy_drop_greeted(stubdm_qmp_proxy *p, const char *why)
{
    for (struct stubdm__list *n = p->clients.next, *next; n != &p->clients;
         n = next) {
        struct pclient *cl = STUBDM_CONTAINER_OF(n, struct pclient, link);
        next = n->next;
        if (cl->greeted)
            client_drop(cl, why);
    }
}

/* ---- greeting, or waiting for the handle -------------------------------- */

static char *make_greeting(const char *real)
{
    struct stubdm__json_doc *doc = NULL;
    struct stubdm__json_writer *w;
    struct stubdm__buf b;

    if (!real || stubdm__json_parse(real, strlen(real), NULL, &doc, NULL))
        return NULL;
    stubdm__buf_init(&b, 0);
    w = stubdm__json_writer_new(&b);
    stubdm__json_w_object_begin(w);
    stubdm__json_w_key(w, "QMP");
    stubdm__json_w_object_begin(w);
    stubdm__json_w_key(w, "version");
    stubdm__json_w_value(
        w,
        stubdm__json_get(stubdm__json_get(stubdm__json_doc_root(doc), "QMP"),
                         "version"));
    stubdm__json_w_key(w, "capabilities");
    stubdm__json_w_array_begin(w);
    stubdm__json_w_array_end(w);
    stubdm__json_w_object_end(w);
    stubdm__json_w_object_end(w);
    stubdm__json_doc_free(doc);
    if (stubdm__json_writer_end(w) || stubdm__buf_append(&b, "", 0)) {
        stubdm__buf_dispose(&b);
        return NULL;
    }
    return b.data;
}

/* The handle is ready: cl's greeting, made from the greeting of the
 * connection as it is now (a reconnect may have reached a new QEMU), then
 * whatever cl sent while it waited. */
static void client_greet(struct pclient *cl)
{
    stubdm_qmp_proxy *p = cl->p;
    char *greeting = make_greeting(stubdm_qmp_greeting_json(p->q));
    struct stubdm__buf held = cl->held;

    cl->greeted = true;
    p->nwaiting--;
    stubdm__buf_init(&cl->held, 0);
    client_pin(cl);
    if (!greeting)
        client_drop(cl, "out of memory");
    else if (client_send(cl, greeting, strlen(greeting)) && held.len)
        client_feed(cl, held.data, held.len);
    client_unpin(cl);
    free(greeting);
    stubdm__buf_dispose(&held);
}

/* cl waited longer than the bound: a QMP error in place of the greeting
 * (what a client waiting for one reports), then the end. */
static void client_wait_expired(struct pclient *cl)
{
    stubdm_qmp_proxy *p = cl->p;
    char desc[160];

    p->timed_out++;
    LOG_WARN(p->ctx, MOD,
             "client %u on %s disconnected: the QMP connection was not ready "
             "within %d ms",
             cl->serial, p->path, p->ready_timeout_ms);
    snprintf(desc, sizeof(desc),
             "libstubdm proxy: the QMP connection to the stubdomain's QEMU "
             "was not ready within %d ms",
             p->ready_timeout_ms);
    client_pin(cl);
    send_error(cl, NULL, "GenericError", desc);
    if (!cl->dead)
        client_drop(cl, "QMP not ready in time");
    client_unpin(cl);
}

/* Keep the readiness poll running while someone waits; false when it
 * could not be armed (out of memory). */
static bool wait_timer_arm(stubdm_qmp_proxy *p)
{
    if (!p->nwaiting || stubdm__timer_armed(&p->wait_timer))
        return true;
    return !stubdm__timer_arm(p->ctx, &p->wait_timer,
                              stubdm_now_ms() + READY_POLL_MS);
}

/* Every waiting client is greeted once the handle is ready, or given up
 * on at its deadline. */
static void waiting_serve(stubdm_qmp_proxy *p, bool expire_all)
{
    int64_t now = stubdm_now_ms();

    for (struct stubdm__list *n = p->clients.next, *next; n != &p->clients;
         n = next) {
        struct pclient *cl = STUBDM_CONTAINER_OF(n, struct pclient, link);
        next = n->next;
        if (cl->greeted)
            continue;
        /* Asked each time: serving a client may write to the connection,
         * and a failed write ends it. */
        if (stubdm_qmp_is_ready(p->q))
            client_greet(cl);
        else if (expire_all || now >= cl->deadline_ms)
            client_wait_expired(cl);
    }
}

static void on_wait_tick(stubdm_ctx *ctx, struct stubdm__timer *t)
{
    stubdm_qmp_proxy *p = STUBDM_CONTAINER_OF(t, stubdm_qmp_proxy, wait_timer);

    (void)ctx;
    waiting_serve(p, false);
    if (!wait_timer_arm(p))
        waiting_serve(p, true); /* no poll: nobody may wait unbounded */
}

/* A client accepted: greeted now, or waiting. */
static void client_start(struct pclient *cl)
{
    stubdm_qmp_proxy *p = cl->p;

    if (stubdm_qmp_is_ready(p->q)) {
        client_greet(cl);
        return;
    }
    cl->deadline_ms = stubdm_now_ms() + p->ready_timeout_ms;
    LOG_DEBUG(p->ctx, MOD, "client %u on %s waits for QMP (up to %d ms)",
              cl->serial, p->path, p->ready_timeout_ms);
    if (!wait_timer_arm(p))
        client_wait_expired(cl);
}

/* ---- accepting ---------------------------------------------------------- */

/* Whether SO_PEERGROUPS (Linux 4.13) lists gid among the peer's groups. */
static bool peer_in_group(int fd, uint32_t gid)
{
    gid_t groups[64];
    socklen_t len = sizeof(groups);

#ifdef SO_PEERGROUPS
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
        for (size_t i = 0; i < len / sizeof(groups[0]); i++)
            if (groups[i] == (gid_t)gid)
                return true;
#else
    (void)fd;
    (void)gid;
    (void)groups;
    (void)len;
#endif
    return false;
}

/*
 * Who connected (SO_PEERCRED: the credentials at connect()), logged for
 * every client; only root, the proxy's own effective uid and members of
 * the allowed group may talk to the stubdomain's QEMU.  The socket's mode
 * already keeps others out; this holds even where the file's mode or
 * group was changed behind the proxy's back.
 */
static bool client_allowed(stubdm_qmp_proxy *p, int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) ||
        len != sizeof(cr)) {
        LOG_WARN(p->ctx, MOD,
                 "refusing a client on %s: no peer credentials "
                 "(%s)",
                 p->path, strerror(errno));
        return false;
    }
    if (cr.uid == 0 || cr.uid == geteuid() ||
        (p->has_group &&
         (cr.gid == (gid_t)p->group || peer_in_group(fd, p->group)))) {
        LOG_INFO(p->ctx, MOD,
                 "client connected on %s: pid %ld uid %lu gid %lu", p->path,
                 (long)cr.pid, (unsigned long)cr.uid, (unsigned long)cr.gid);
        return true;
    }
    LOG_WARN(p->ctx, MOD,
             "refusing a client on %s: pid %ld uid %lu gid %lu "
             "is not root, not uid %lu%s",
             p->path, (long)cr.pid, (unsigned long)cr.uid,
             (unsigned long)cr.gid, (unsigned long)geteuid(),
             p->has_group ? " and not in the allowed group" : "");
    return false;
}

/* A client on fd (taken), watched, not started; NULL when it could not be
 * made (fd closed). */
static struct pclient *client_new(stubdm_qmp_proxy *p, int fd)
{
    struct pclient *cl = stubdm__calloc(1, sizeof(*cl));
    struct stubdm__json_limits lim;

    stubdm__json_limits_default(&lim);
    lim.max_bytes = p->client_buffer;
    lim.max_string = p->client_buffer;
    if (!cl || stubdm__json_parser_new(&cl->parser, &lim)) {
        free(cl);
        close(fd);
        return NULL;
    }
    stubdm__json_parser_require_object(cl->parser, true);
    cl->p = p;
    cl->fd = fd;
    cl->serial = ++p->serial ? p->serial : ++p->serial;
    stubdm__fd_init(&cl->w, on_client);
    stubdm__buf_init(&cl->out, 0);
    stubdm__buf_init(&cl->held, 0);
    stubdm__list_init(&cl->cmds);
    stubdm__list_add_tail(&p->clients, &cl->link);
    p->nclients++;
    p->nwaiting++; /* until greeted */
    if (stubdm__fd_watch(p->ctx, &cl->w, fd, POLLIN)) {
        client_drop(cl, "cannot watch");
        return NULL;
    }
    return cl;
}

static void on_accept(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    stubdm_qmp_proxy *p = STUBDM_CONTAINER_OF(w, stubdm_qmp_proxy, lw);

    (void)revents;
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct pclient *cl;
        if (fd < 0)
            return;
        if (p->nclients >= p->max_clients) {
            LOG_DEBUG(ctx, MOD, "refusing a client (too many clients)");
            p->dropped++;
            close(fd);
            continue;
        }
        if (!client_allowed(p, fd)) {
            p->refused++;
            close(fd);
            continue;
        }
        if ((cl = client_new(p, fd)))
            client_start(cl);
    }
}

/* ---- events ------------------------------------------------------------- */

static void on_event(stubdm_qmp *q, const stubdm_qmp_event *ev, void *user)
{
    stubdm_qmp_proxy *p = user;
    const char *json = stubdm_qmp_event_json(ev);
    size_t len = strlen(json);

    (void)q;
    for (struct stubdm__list *n = p->clients.next, *next; n != &p->clients;
         n = next) {
        struct pclient *cl = STUBDM_CONTAINER_OF(n, struct pclient, link);
        next = n->next;
        if (cl->negotiated)
            client_send(cl, json, len);
    }
}

/* ---- options ------------------------------------------------------------ */

static void opts_defaults(struct stubdm_qmp_proxy_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->listen_fd = -1;
    o->mode = STUBDM_QMP_PROXY_DEFAULT_MODE;
    o->cmd_timeout_ms = STUBDM_QMP_PROXY_DEFAULT_COMMAND_TIMEOUT_MS;
    o->ready_timeout_ms = STUBDM_QMP_PROXY_DEFAULT_READY_TIMEOUT_MS;
}

int stubdm_qmp_proxy_opts_new(stubdm_qmp_proxy_opts **out)
{
    stubdm_qmp_proxy_opts *o;

    if (!out)
        return STUBDM_EINVAL;
    *out = NULL;
    if (!(o = stubdm__calloc(1, sizeof(*o))))
        return STUBDM_ENOMEM;
    opts_defaults(o);
    *out = o;
    return 0;
}

void stubdm_qmp_proxy_opts_free(stubdm_qmp_proxy_opts *o)
{
    if (!o)
        return;
    free(o->path);
    free(o);
}

int stubdm_qmp_proxy_opts_set_path(stubdm_qmp_proxy_opts *o, const char *path)
{
    char *copy = NULL;

    if (!o || (path && !*path))
        return STUBDM_EINVAL;
    if (path && !(copy = stubdm__strdup(path)))
        return STUBDM_ENOMEM;
    free(o->path);
    o->path = copy;
    return 0;
}

int stubdm_qmp_proxy_opts_set_listen_fd(stubdm_qmp_proxy_opts *o, int fd)
{
    if (!o || fd < -1)
        return STUBDM_EINVAL;
    o->listen_fd = fd;
    return 0;
}

int stubdm_qmp_proxy_opts_set_mode(stubdm_qmp_proxy_opts *o, unsigned mode)
{
    if (!o || (mode & ~0777u))
        return STUBDM_EINVAL;
    o->mode = mode;
    o->has_mode = true;
    return 0;
}

int stubdm_qmp_proxy_opts_set_group(stubdm_qmp_proxy_opts *o, uint32_t gid)
{
    if (!o || gid == (uint32_t)-1)
        return STUBDM_EINVAL;
    o->group = gid;
    o->has_group = true;
    return 0;
}

int stubdm_qmp_proxy_opts_set_timeouts(stubdm_qmp_proxy_opts *o,
                                       int command_timeout_ms,
                                       int ready_timeout_ms)
{
    if (!o || command_timeout_ms < 0 || ready_timeout_ms < 0)
        return STUBDM_EINVAL;
    o->cmd_timeout_ms = command_timeout_ms
                            ? command_timeout_ms
                            : STUBDM_QMP_PROXY_DEFAULT_COMMAND_TIMEOUT_MS;
    o->ready_timeout_ms = ready_timeout_ms
                              ? ready_timeout_ms
                              : STUBDM_QMP_PROXY_DEFAULT_READY_TIMEOUT_MS;
    return 0;
}

/* ---- the listening socket ----------------------------------------------- */

/* The caller's fd: a listening unix stream socket, made non-blocking (the
 * accept loop runs until EAGAIN). */
static int adopt_listen_fd(stubdm_qmp_proxy *p, int fd)
{
    int domain = 0, type = 0, acc = 0, fl;
    socklen_t l1 = sizeof(domain), l2 = sizeof(type), l3 = sizeof(acc);
    struct sockaddr_un sa;
    socklen_t salen = sizeof(sa);
    const char *why = NULL;

    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l1) ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2) ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l3))
        return stubdm__fail(p->ctx, STUBDM_EINVAL, errno,
                            "QMP proxy: fd %d is not a socket: %s", fd,
                            strerror(errno));
    if (domain != AF_UNIX)
        why = "not a unix socket";
    else if (type != SOCK_STREAM)
        why = "not a stream socket";
    else if (!acc)
        why = "not listening";
    if (why)
        return stubdm__fail(p->ctx, STUBDM_EINVAL, 0, "QMP proxy: fd %d: %s",
                            fd, why);
    if ((fl = fcntl(fd, F_GETFL)) < 0 ||
        (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK)))
        return stubdm__fail(p->ctx, STUBDM_EFAIL, errno,
                            "QMP proxy: fd %d: making it non-blocking: %s", fd,
                            strerror(errno));
    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0 &&
        salen > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0])
        p->path = stubdm__strndup(sa.sun_path, sizeof(sa.sun_path));
    else
        p->path = stubdm__sprintf("listening fd %d", fd);
    if (!p->path)
        return stubdm__fail(p->ctx, STUBDM_ENOMEM, ENOMEM, "QMP proxy");
    p->lfd = fd;
    return 0;
}

/* Where the socket is bound before it moves into place: a private
 * directory next to path (same filesystem: the rename is atomic). */
struct staging {
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
    int dfd;
    struct sockaddr_un sa;
};

static int staging_make(stubdm_qmp_proxy *p, const char *path,
                        struct staging *s)
{
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) + 1 : 0; /* < sun_path */
    size_t n;

    s->dfd = -1;
    snprintf(s->dir, sizeof(s->dir), "%.*s.qmp-proxy.XXXXXX", dlen, path);
    if (!mkdtemp(s->dir)) {
        s->dir[0] = '\0'; /* nothing to remove */
        return stubdm__fail(p->ctx, STUBDM_EFAIL, errno,
                            "QMP proxy: making a directory next to %s: %s",
                            path, strerror(errno));
    }
    /* 0700 whatever the umask made of mkdtemp's: only we may reach the
     * socket while its mode is not the final one. */
    s->dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->dfd < 0 || fchmod(s->dfd, 0700))
        return stubdm__fail(p->ctx, STUBDM_EFAIL, errno, "QMP proxy: %s: %s",
                            s->dir, strerror(errno));
    memset(&s->sa, 0, sizeof(s->sa));
    s->sa.sun_family = AF_UNIX;
    n = strlen(s->dir);
    /* Its name through /proc when the directory's is too long for
     * sun_path (the final path fits; the directory's may not). */
    if (n + 3 > sizeof(s->sa.sun_path)) {
        snprintf(s->sa.sun_path, sizeof(s->sa.sun_path), "/proc/self/fd/%d/s",
                 s->dfd);
    } else {
        memcpy(s->sa.sun_path, s->dir, n);
        memcpy(s->sa.sun_path + n, "/s", 3);
    }
    return 0;
}

static void staging_remove(struct staging *s)
{
    if (s->dfd >= 0) {
        unlinkat(s->dfd, "s", 0);
        close(s->dfd);
    }
    if (s->dir[0])
        rmdir(s->dir);
}

/* Put the staged socket at path: over a stale socket (replace), or where
 * nothing is (a file that appeared meanwhile is not replaced). */
static int staging_publish(struct staging *s, const char *path, bool replace)
{
    if (replace)
        return renameat(s->dfd, "s", AT_FDCWD, path);
    if (renameat2(s->dfd, "s", AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* A filesystem without RENAME_NOREPLACE: link fails on EEXIST too. */
    if (linkat(s->dfd, "s", AT_FDCWD, path, 0))
        return -1;
    unlinkat(s->dfd, "s", 0);
    return 0;
}

/* Whether path may be taken: free (*replace false) or a stale socket
 * (*replace true); any other file is not ours to replace. */
static int path_check(stubdm_qmp_proxy *p, const char *path, bool *replace)
{
    struct stat st;

    *replace = false;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return stubdm__fail(p->ctx, STUBDM_EFAIL, EEXIST,
                                "QMP proxy: %s exists and is not a socket; "
                                "not replaced",
                                path);
        *replace = true;
    } else if (errno != ENOENT) {
        return stubdm__fail(p->ctx, STUBDM_EFAIL, errno, "QMP proxy: %s: %s",
                            path, strerror(errno));
    }
    return 0;
}

/* The staged socket, listening, with its final mode and group. */
static int staging_listen(stubdm_qmp_proxy *p, struct staging *s,
                          const struct stubdm_qmp_proxy_opts *o)
{
    struct stat st;
    const char *what = "socket";

    p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->lfd < 0)
        goto fail;
    what = "bind";
    if (bind(p->lfd, (const struct sockaddr *)&s->sa, sizeof(s->sa)))
        goto fail;
    what = "listen";
    if (listen(p->lfd, 16))
        goto fail;
    what = "chown";
    if (o->has_group &&
        fchownat(s->dfd, "s", (uid_t)-1, (gid_t)o->group, AT_SYMLINK_NOFOLLOW))
        goto fail;
    what = "chmod";
    if (fchmodat(s->dfd, "s", (mode_t)o->mode, 0))
        goto fail;
    what = "stat";
    if (fstatat(s->dfd, "s", &st, AT_SYMLINK_NOFOLLOW))
        goto fail;
    p->dev = st.st_dev;
    p->ino = st.st_ino;
    return 0;
fail:
    return stubdm__fail(p->ctx, STUBDM_EFAIL, errno,
                        "QMP proxy: the socket for %s: %s: %s", o->path, what,
                        strerror(errno));
}

/*
 * The listening socket at o->path, exactly o->mode (and o->group), never
 * at path before it is: bound in a private 0700 directory next to it (bind
 * applies the umask, narrowing only a file nobody else can reach), given
 * its mode and group there, listening, then renamed into place, which also
 * replaces a stale socket without a moment where path names nothing.  The
 * process umask is neither read nor changed (other threads).
 */
static int listen_at_path(stubdm_qmp_proxy *p,
                          const struct stubdm_qmp_proxy_opts *o)
{
    struct staging s;
    bool replace;
    int rc;

    if (strlen(o->path) >= sizeof(s.sa.sun_path))
        return stubdm__fail(p->ctx, STUBDM_ELIMIT, 0,
                            "QMP proxy: socket path too long: %s", o->path);
    if ((rc = path_check(p, o->path, &replace)))
        return rc;
    if (!(p->path = stubdm__strdup(o->path)))
        return stubdm__fail(p->ctx, STUBDM_ENOMEM, ENOMEM, "QMP proxy");
    rc = staging_make(p, o->path, &s);
    if (!rc)
        rc = staging_listen(p, &s, o);
    if (!rc && staging_publish(&s, o->path, replace))
        rc = stubdm__fail(p->ctx, STUBDM_EFAIL, errno,
                          "QMP proxy: cannot listen on %s: %s", o->path,
                          strerror(errno));
    staging_remove(&s);
    if (rc && p->lfd >= 0) {
        close(p->lfd);
        p->lfd = -1;
    }
    p->own_file = !rc;
    return rc;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The proxy object, not listening yet; NULL when out of memory. */
static stubdm_qmp_proxy *proxy_alloc(stubdm_qmp *q,
                                     const struct stubdm_qmp_proxy_opts *o)
{
    stubdm_qmp_proxy *p = stubdm__calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->ctx = stubdm__qmp_ctx(q);
    p->q = q;
    p->lfd = -1;
    p->max_clients = STUBDM_QMP_PROXY_DEFAULT_MAX_CLIENTS;
    p->client_buffer = STUBDM_QMP_PROXY_DEFAULT_CLIENT_BUFFER;
    p->cmd_timeout_ms = o->cmd_timeout_ms;
    p->ready_timeout_ms = o->ready_timeout_ms;
    p->has_group = o->has_group;
    p->group = o->group;
    stubdm__list_init(&p->clients);
    stubdm__fd_init(&p->lw, on_accept);
    stubdm__timer_init(&p->wait_timer, on_wait_tick);
    return p;
}

/* Stop listening; the socket file made here is removed if it is still
 * ours (not replaced by another proxy's meanwhile). */
static void proxy_unlisten(stubdm_qmp_proxy *p)
{
    struct stat st;

    stubdm__fd_stop(p->ctx, &p->lw);
    if (!p->own_file)
        return;
    close(p->lfd);
    if (lstat(p->path, &st) == 0 && st.st_dev == p->dev && st.st_ino == p->ino)
        unlink(p->path);
}

/* q's connection went down: its greeted clients' QEMU session is gone,
 * even for those that send nothing (one waiting for events learns it
 * only so), so each sees a close and may connect again. */
static void on_lost(stubdm_op *op, int rc, void *user)
{
    stubdm_qmp_proxy *p = user;

    stubdm_op_free(op);
    p->lost = NULL;
    if (rc == STUBDM_ECANCELED)
        return;
    proxy_drop_greeted(p, "QMP connection to the stubdomain lost");
    if (stubdm_qmp_watch_lost(p->q, on_lost, p, &p->lost))
        LOG_WARN(p->ctx, MOD, "%s: cannot watch the QMP connection: %s",
                 p->path, stubdm_ctx_errmsg(p->ctx));
}

static int proxy_create(stubdm_qmp *q, const struct stubdm_qmp_proxy_opts *o,
                        stubdm_qmp_proxy **out)
{
    stubdm_ctx *ctx = stubdm__qmp_ctx(q);
    stubdm_qmp_proxy *p = proxy_alloc(q, o);
    int rc;

    if (!p)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "QMP proxy");
    rc = o->path ? listen_at_path(p, o) : adopt_listen_fd(p, o->listen_fd);
    if (!rc)
        rc = stubdm__fd_watch(ctx, &p->lw, p->lfd, POLLIN);
    if (!rc)
        rc = stubdm_qmp_subscribe(q, NULL, on_event, p, &p->sub);
    if (!rc)
        rc = stubdm_qmp_watch_lost(q, on_lost, p, &p->lost);
    if (rc) {
        stubdm_qmp_sub_free(p->sub);
        proxy_unlisten(p);
        free(p->path);
        free(p);
        return rc;
    }
    if (o->has_group)
        LOG_INFO(ctx, MOD, "%s: group %lu allowed", p->path,
                 (unsigned long)o->group);
    *out = p;
    return 0;
}

int stubdm_qmp_proxy_new_ext(stubdm_qmp *q, const stubdm_qmp_proxy_opts *opts,
                             stubdm_qmp_proxy **out)
{
    stubdm_ctx *ctx;

    if (out)
        *out = NULL;
    if (!q || !opts || !out)
        return STUBDM_EINVAL;
    ctx = stubdm__qmp_ctx(q);
    if (!opts->path == (opts->listen_fd < 0))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "QMP proxy: give a socket path or a listening "
                            "fd, not %s",
                            opts->path ? "both" : "neither");
    if (opts->listen_fd >= 0 && opts->has_mode)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "QMP proxy: the mode of a caller's socket is "
                            "the caller's to set");
    return proxy_create(q, opts, out);
}

int stubdm_qmp_proxy_new(stubdm_qmp *q, const char *listen_path,
                         int command_timeout_ms, stubdm_qmp_proxy **out)
{
    struct stubdm_qmp_proxy_opts o;

    if (out)
        *out = NULL;
    if (!q || !out)
        return STUBDM_EINVAL;
    if (!listen_path || !*listen_path || command_timeout_ms <= 0)
        return stubdm__fail(stubdm__qmp_ctx(q), STUBDM_EINVAL, 0,
                            "QMP proxy: a socket path and a positive command "
                            "timeout are required");
    opts_defaults(&o);
    o.path = (char *)listen_path; /* read only */
    o.cmd_timeout_ms = command_timeout_ms;
    return proxy_create(q, &o, out);
}

int stubdm_qmp_proxy_set_limits(stubdm_qmp_proxy *p, size_t max_clients,
                                size_t client_buffer)
{
    if (!p || (client_buffer && client_buffer < MIN_CLIENT_BUFFER))
        return STUBDM_EINVAL;
    p->max_clients = max_clients ? max_clients
                                 : STUBDM_QMP_PROXY_DEFAULT_MAX_CLIENTS;
    p->client_buffer = client_buffer ? client_buffer
                                     : STUBDM_QMP_PROXY_DEFAULT_CLIENT_BUFFER;
    return 0;
}

int stubdm_qmp_proxy_get_stats(const stubdm_qmp_proxy *p,
                               stubdm_qmp_proxy_stats *stats, size_t size)
{
    stubdm_qmp_proxy_stats st;

    if (!p)
        return stubdm__stats_copy(stats, size, NULL, 0);
    st.clients = p->nclients;
    st.clients_dropped = p->dropped;
    st.clients_refused = p->refused;
    st.clients_waiting = p->nwaiting;
    st.clients_timed_out = p->timed_out;
    return stubdm__stats_copy(stats, size, &st, sizeof(st));
}

/* The socket file made here, given to gid with mode 0660. */
static int file_give_group(stubdm_qmp_proxy *p, uint32_t gid)
{
    struct stat st;
    char proc[64];
    int fd, err;

    /* Through an O_PATH fd of the very socket file: a path swapped for a
     * symlink in between is never followed. */
    fd = open(p->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st))
        err = errno;
    else
        err = S_ISSOCK(st.st_mode) ? 0 : ENOTSOCK;
    if (!err && fchownat(fd, "", (uid_t)-1, (gid_t)gid, AT_EMPTY_PATH))
        err = errno;
    if (err) {
        if (fd >= 0)
            close(fd);
        return stubdm__fail(p->ctx, STUBDM_EFAIL, err,
                            "QMP proxy: giving %s to group %lu: %s", p->path,
                            (unsigned long)gid, strerror(err));
    }
    /* fchmod does not work on an O_PATH fd; the /proc path does. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (chmod(proc, 0660)) {
        err = errno;
        close(fd);
        return stubdm__fail(p->ctx, STUBDM_EFAIL, err,
                            "QMP proxy: mode 0660 on %s: %s", p->path,
                            strerror(err));
    }
    close(fd);
    return 0;
}

int stubdm_qmp_proxy_allow_group(stubdm_qmp_proxy *p, uint32_t gid)
{
    int rc;

    if (!p || gid == (uint32_t)-1)
        return STUBDM_EINVAL;
    if (p->own_file && (rc = file_give_group(p, gid)))
        return rc;
    p->has_group = true;
    p->group = gid;
    LOG_INFO(p->ctx, MOD, "%s: group %lu allowed%s", p->path,
             (unsigned long)gid, p->own_file ? " (mode 0660)" : "");
    return 0;
}

void stubdm_qmp_proxy_free(stubdm_qmp_proxy *p)
{
    if (!p)
        return;
    proxy_drop_all(p, "proxy closing");
    stubdm__timer_stop(p->ctx, &p->wait_timer);
    stubdm_qmp_sub_free(p->sub);
    stubdm_op_free(p->lost);
    proxy_unlisten(p);
    free(p->path);
    free(p);
}
