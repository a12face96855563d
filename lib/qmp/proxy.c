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
    bool in_io; /* on_client is running: drop only marks */
    bool dead;
};

struct stubdm_qmp_proxy {
    stubdm_ctx *ctx;
    stubdm_qmp *q;
    char *path;
    int lfd;
    struct stubdm__fd lw;
    struct stubdm__list clients;
    size_t nclients, max_clients, client_buffer;
    int cmd_timeout_ms;
    stubdm_qmp_sub *sub;
    uint64_t dropped;
    uint64_t refused; /* by credentials */
    char *greeting;   /* synthesised, with "\r\n" */
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

static void proxy_drop_all(stubdm_qmp_proxy *p, const char *why);

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
        proxy_drop_all(p, "QMP connection to the stubdomain lost");
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

static void client_input(struct pclient *cl, short revents);

static void on_client(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    struct pclient *cl = STUBDM_CONTAINER_OF(w, struct pclient, w);

    (void)ctx;
    cl->in_io = true;
    client_input(cl, revents);
    cl->in_io = false;
    if (cl->dead)
        free(cl);
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
        size_t off = 0;
        if (n < 0 &&
            (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            client_drop(cl, n == 0 ? "client closed" : "read error");
            return;
        }
        while (off < (size_t)n) {
            size_t used = 0;
            int rc = stubdm__json_parser_feed(cl->parser, buf + off,
                                              (size_t)n - off, &used);
            off += used;
            if (rc == STUBDM__JSON_MORE)
                break;
            if (rc < 0) {
                send_error(cl, NULL, "GenericError",
                           "JSON parse error: client disconnected");
                if (!cl->dead)
                    client_drop(cl, "malformed or oversized input");
                return;
            }
            struct stubdm__json_doc *doc = stubdm__json_parser_take(
                cl->parser);
            stubdm__json_parser_reset(cl->parser, NULL);
            if (doc) {
                handle_command(cl, stubdm__json_doc_root(doc));
                stubdm__json_doc_free(doc);
            }
            /* The client may be gone (dropped while answering). */
            if (cl->dead)
                return;
        }
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
    stubdm__json_parser_free(cl->parser);
    stubdm__list_del(&cl->link);
    p->nclients--;
    cl->dead = true;
    if (!cl->in_io)
        free(cl);
}

static void proxy_drop_all(stubdm_qmp_proxy *p, const char *why)
{
    while (!stubdm__list_empty(&p->clients))
        client_drop(STUBDM_CONTAINER_OF(p->clients.next, struct pclient, link),
                    why);
}

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

static void on_accept(stubdm_ctx *ctx, struct stubdm__fd *w, short revents)
{
    stubdm_qmp_proxy *p = STUBDM_CONTAINER_OF(w, stubdm_qmp_proxy, lw);
    struct stubdm__json_limits lim;

    (void)revents;
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct pclient *cl;
        if (fd < 0)
            return;
        if (p->nclients >= p->max_clients || !stubdm_qmp_is_ready(p->q)) {
            LOG_DEBUG(ctx, MOD, "refusing a client (%s)",
                      p->nclients >= p->max_clients ? "too many clients"
                                                    : "QMP not ready");
            p->dropped++;
            close(fd);
            continue;
        }
        if (!client_allowed(p, fd)) {
            p->refused++;
            close(fd);
            continue;
        }
        cl = stubdm__calloc(1, sizeof(*cl));
        stubdm__json_limits_default(&lim);
        lim.max_bytes = p->client_buffer;
        lim.max_string = p->client_buffer;
        if (!cl || stubdm__json_parser_new(&cl->parser, &lim)) {
            free(cl);
            close(fd);
            continue;
        }
        stubdm__json_parser_require_object(cl->parser, true);
        cl->p = p;
        cl->fd = fd;
        cl->serial = ++p->serial ? p->serial : ++p->serial;
        stubdm__fd_init(&cl->w, on_client);
        stubdm__buf_init(&cl->out, 0);
        stubdm__list_init(&cl->cmds);
        stubdm__list_add_tail(&p->clients, &cl->link);
        p->nclients++;
        if (stubdm__fd_watch(ctx, &cl->w, fd, POLLIN)) {
            client_drop(cl, "cannot watch");
            continue;
        }
        client_send(cl, p->greeting, strlen(p->greeting));
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

/* ---- lifecycle ---------------------------------------------------------- */

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

/* The proxy object, not listening yet; NULL when out of memory. */
static stubdm_qmp_proxy *proxy_alloc(stubdm_qmp *q, const char *listen_path,
                                     int command_timeout_ms)
{
    stubdm_qmp_proxy *p = stubdm__calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->ctx = stubdm__qmp_ctx(q);
    p->q = q;
    p->lfd = -1;
    p->max_clients = STUBDM_QMP_PROXY_DEFAULT_MAX_CLIENTS;
    p->client_buffer = STUBDM_QMP_PROXY_DEFAULT_CLIENT_BUFFER;
    p->cmd_timeout_ms = command_timeout_ms;
    stubdm__list_init(&p->clients);
    stubdm__fd_init(&p->lw, on_accept);
    p->path = stubdm__strdup(listen_path);
    p->greeting = make_greeting(stubdm_qmp_greeting_json(q));
    if (!p->path || !p->greeting) {
        free(p->path);
        free(p->greeting);
        free(p);
        return NULL;
    }
    return p;
}

/* The listening socket at sa, mode 0600, in p->lfd. */
static int proxy_listen(stubdm_qmp_proxy *p, const struct sockaddr_un *sa)
{
    stubdm_ctx *ctx = p->ctx;
    struct stat st;

    p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->lfd < 0)
        return stubdm__fail(ctx, STUBDM_EFAIL, errno, "QMP proxy: socket: %s",
                            strerror(errno));
    /* Only a stale socket is replaced, never another kind of file. */
    if (lstat(sa->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(sa->sun_path);
    /* Linux creates the socket file with the socket inode's mode less the
     * umask, so the mode is set here, before bind, and never wider than
     * 0600, without touching the process-wide umask (other threads). */
    if (fchmod(p->lfd, 0600))
        return stubdm__fail(ctx, STUBDM_EFAIL, errno,
                            "QMP proxy: setting the socket's mode: %s",
                            strerror(errno));
    if (bind(p->lfd, (const struct sockaddr *)sa, sizeof(*sa)) ||
        listen(p->lfd, 16))
        return stubdm__fail(ctx, STUBDM_EFAIL, errno,
                            "QMP proxy: cannot listen on %s: %s", sa->sun_path,
                            strerror(errno));
    return 0;
}

int stubdm_qmp_proxy_new(stubdm_qmp *q, const char *listen_path,
                         int command_timeout_ms, stubdm_qmp_proxy **out)
{
    stubdm_ctx *ctx;
    stubdm_qmp_proxy *p;
    struct sockaddr_un sa;
    int rc;

    if (out)
        *out = NULL;
    if (!q || !out)
        return STUBDM_EINVAL;
    ctx = stubdm__qmp_ctx(q);
    if (!listen_path || !*listen_path || command_timeout_ms <= 0)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "QMP proxy: a socket path and a positive command "
                            "timeout are required");
    if (!stubdm_qmp_is_ready(q))
        return stubdm__fail(ctx, STUBDM_ESTATE, 0,
                            "QMP proxy: the QMP handle is not ready");
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(listen_path) >= sizeof(sa.sun_path))
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "QMP proxy: socket path too long: %s",
                            listen_path);
    memcpy(sa.sun_path, listen_path, strlen(listen_path) + 1);
    p = proxy_alloc(q, listen_path, command_timeout_ms);
    if (!p)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "QMP proxy");
    if ((rc = proxy_listen(p, &sa)))
        goto fail;
    rc = stubdm__fd_watch(ctx, &p->lw, p->lfd, POLLIN);
    if (!rc)
        rc = stubdm_qmp_subscribe(q, NULL, on_event, p, &p->sub);
    if (rc) {
        unlink(listen_path);
        goto fail;
    }
    *out = p;
    return 0;

fail:
    stubdm__fd_stop(ctx, &p->lw);
    if (p->lfd >= 0)
        close(p->lfd);
    free(p->path);
    free(p->greeting);
    free(p);
    return rc;
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
    return stubdm__stats_copy(stats, size, &st, sizeof(st));
}

int stubdm_qmp_proxy_allow_group(stubdm_qmp_proxy *p, uint32_t gid)
{
    struct stat st;
    int fd, err;

    if (!p || gid == (uint32_t)-1)
        return STUBDM_EINVAL;
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
    {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (chmod(proc, 0660)) {
            err = errno;
            close(fd);
            return stubdm__fail(p->ctx, STUBDM_EFAIL, err,
                                "QMP proxy: mode 0660 on %s: %s", p->path,
                                strerror(err));
        }
    }
    close(fd);
    p->has_group = true;
    p->group = gid;
    LOG_INFO(p->ctx, MOD, "%s: group %lu allowed (mode 0660)", p->path,
             (unsigned long)gid);
    return 0;
}

void stubdm_qmp_proxy_free(stubdm_qmp_proxy *p)
{
    if (!p)
        return;
    proxy_drop_all(p, "proxy closing");
    stubdm_qmp_sub_free(p->sub);
    stubdm__fd_stop(p->ctx, &p->lw);
    close(p->lfd);
    unlink(p->path);
    free(p->path);
    free(p->greeting);
    free(p);
}
