/*
 * The QMP proxy as a service uses it (issue 14): made before its handle
 * is ready (clients wait, bounded, then are served or get an error), after
 * a loss (new clients wait for the reconnect), on a listening socket the
 * caller bound, and with its socket's mode and group exact whatever the
 * umask, the file appearing at its path only when complete.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "libstubdm.h"
#include "qmp_peer.h"
#include "run.h"

#define STUBDOM 5
#define GUEST 1

static struct qmp_sim sim;
static struct qmp_peer peer;
static stubdm_ctx *ctx;
static char dir[64], path[128];
static char logbuf[8192];

static void capture_log(void *user, stubdm_log_level level, int os_errno,
                        const char *context, const char *msg)
{
    size_t n = strlen(logbuf);
    (void)user;
    (void)level;
    (void)os_errno;
    snprintf(logbuf + n, sizeof(logbuf) - n, "%s: %s\n", context, msg);
}

static void setup(void)
{
    ck_assert_int_eq(qmp_sim_start(&sim, STUBDOM, GUEST), 0);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    logbuf[0] = '\0';
    stubdm_ctx_set_log(ctx, capture_log, NULL, STUBDM_LOG_INFO);
    peer.pid = -1;
    snprintf(dir, sizeof(dir), "/tmp/stubdm-proxy.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/proxy.sock", dir);
}

static void teardown(void)
{
    stubdm_ctx_free(ctx);
    ctx = NULL;
    qmp_peer_stop(&peer);
    qmp_sim_stop(&sim);
    unlink(path);
    rmdir(dir);
}

static stubdm_qmp_opts *sim_opts(void)
{
    stubdm_qmp_opts *o = NULL;
    ck_assert_int_eq(stubdm_qmp_opts_new(&o), 0);
    ck_assert_int_eq(
        stubdm_qmp_opts_set_transport(o, STUBDM_QMP_TRANSPORT_SIMULATED), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_sim_dir(o, sim.simdir), 0);
    ck_assert_int_eq(stubdm_qmp_opts_set_open_timeout(o, 10000), 0);
    return o;
}

/* A handle still opening: the stubdomain has not published its QMP server
 * yet (qmp_sim_server_ready not called). */
static stubdm_qmp *open_pending(void)
{
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q = NULL;

    ck_assert_int_eq(stubdm_qmp_open(ctx, STUBDOM, GUEST, o, NULL, NULL, &q,
                                     NULL),
                     0);
    stubdm_qmp_opts_free(o);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
    return q;
}

static stubdm_qmp *open_ready(void)
{
    stubdm_qmp_opts *o = sim_opts();
    stubdm_qmp *q = NULL;
    int rc = stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q);

    stubdm_qmp_opts_free(o);
    ck_assert_msg(rc == 0, "open: %s: %s", stubdm_errname(rc),
                  stubdm_ctx_errmsg(ctx));
    return q;
}

/* ---- a raw QMP client, read while the ctx's loop runs ------------------- */

struct client {
    int fd;
    char buf[8192];
    size_t len;
    bool eof;
};

static void client_connect(struct client *c, const char *where)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    memset(c, 0, sizeof(*c));
    ck_assert_uint_lt(strlen(where), sizeof(sa.sun_path));
    memcpy(sa.sun_path, where, strlen(where) + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c->fd, 0);
    ck_assert_msg(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
                  "connect %s: %s", where, strerror(errno));
}

static void client_send(struct client *c, const char *text)
{
    ck_assert_int_eq(send(c->fd, text, strlen(text), MSG_NOSIGNAL),
                     (ssize_t)strlen(text));
}

static void client_pull(struct client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len,
                     MSG_DONTWAIT);
    if (n == 0)
        c->eof = true;
    else if (n > 0)
        c->len += (size_t)n;
    c->buf[c->len] = '\0';
}

/* The next line (without "\r\n") into out, running the loop meanwhile;
 * false on EOF or after ms. */
static bool client_line(struct client *c, char *out, size_t size, int ms)
{
    int64_t end = stubdm_now_ms() + ms * ts_time_scale();

    for (;;) {
        char *nl;
        client_pull(c);
        if ((nl = strstr(c->buf, "\r\n"))) {
            size_t n = (size_t)(nl - c->buf);
            snprintf(out, size, "%.*s", (int)n, c->buf);
            memmove(c->buf, nl + 2, c->len - n - 2);
            c->len -= n + 2;
            c->buf[c->len] = '\0';
            return true;
        }
        if (c->eof || stubdm_now_ms() >= end)
            return false;
        stubdm_ctx_run_once(ctx, 5);
    }
}

/* Nothing arrives and the proxy keeps the connection, for ms. */
static void client_quiet(struct client *c, int ms)
{
    int64_t end = stubdm_now_ms() + ms;

    while (stubdm_now_ms() < end) {
        stubdm_ctx_run_once(ctx, 5);
        client_pull(c);
        ck_assert_msg(c->len == 0 && !c->eof, "the waiting client got %s",
                      c->eof ? "EOF" : c->buf);
    }
}

/* Greeting, negotiation (sent early: it may be held), then one command
 * forwarded to the peer (which answers every command with {}). */
static void client_served(struct client *c, bool negotiated_early)
{
    char line[1024];

    ck_assert_msg(client_line(c, line, sizeof(line), 5000),
                  "no greeting (eof %d)", c->eof);
    ck_assert_str_eq(line, "{\"QMP\":{\"version\":{\"qemu\":{\"micro\":0,"
                           "\"minor\":2,\"major\":7},\"package\":\"peer\"},"
                           "\"capabilities\":[]}}");
    if (!negotiated_early)
        client_send(c, "{\"execute\":\"qmp_capabilities\",\"id\":\"n\"}");
    ck_assert(client_line(c, line, sizeof(line), 5000));
    ck_assert_str_eq(line, "{\"return\": {}, \"id\": \"n\"}");
    client_send(c, "{\"execute\":\"query-status\",\"id\":7}\r\n");
    ck_assert(client_line(c, line, sizeof(line), 5000));
    ck_assert_str_eq(line, "{\"return\": {}, \"id\": 7}");
}

static void wait_not_ready(stubdm_qmp *q)
{
    for (int i = 0; i < 300 * ts_time_scale() && stubdm_qmp_is_ready(q); i++)
        stubdm_ctx_run_once(ctx, 10);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);
}

/* ---- waiting for the handle --------------------------------------------- */

START_TEST(test_proxy_before_ready)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp_proxy *p = NULL;
    struct client early, late;
    stubdm_qmp *q;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    q = open_pending();
    /* The service's order: the socket first, then the stubdomain runs. */
    ck_assert_msg(stubdm_qmp_proxy_new(q, path, 5000, &p) == 0, "%s",
                  stubdm_ctx_errmsg(ctx));
    client_connect(&early, path);
    /* Negotiating without waiting for the greeting: kept for later. */
    client_send(&early, "{\"execute\":\"qmp_capabilities\",\"id\":\"n\"}");
    client_quiet(&early, 300);
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 1);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_waiting, 1);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 0);

    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    client_served(&early, true);
    ck_assert_int_eq(stubdm_qmp_is_ready(q), 1);
    /* Once ready, a new client is greeted at once. */
    client_connect(&late, path);
    client_served(&late, false);
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 2);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_waiting, 0);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_timed_out, 0);
    close(early.fd);
    close(late.fd);
    stubdm_qmp_proxy_free(p);
    stubdm_qmp_free(q);
}
END_TEST

START_TEST(test_proxy_wait_bound)
{
    stubdm_qmp_proxy_opts *o = NULL;
    stubdm_qmp_proxy *p = NULL;
    struct client c, gone;
    char line[1024];
    int64_t t0, waited;
    stubdm_qmp *q = open_pending(); /* and never ready */

    ck_assert_int_eq(stubdm_qmp_proxy_opts_new(&o), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_path(o, path), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_timeouts(o, 5000, 300), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_timeouts(o, -1, 300),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_proxy_new_ext(q, o, &p), 0);
    stubdm_qmp_proxy_opts_free(o);

    /* A waiting client that leaves is noticed (and not counted). */
    client_connect(&gone, path);
    client_connect(&c, path);
    t0 = stubdm_now_ms();
    ts_spin(ctx, 50);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_waiting, 2);
    close(gone.fd);
    ck_assert_msg(client_line(&c, line, sizeof(line), 3000),
                  "no answer within 3 s (eof %d)", c.eof);
    waited = stubdm_now_ms() - t0;
    ck_assert_msg(waited >= 290, "answered after %lld ms", (long long)waited);
    ck_assert_msg(strstr(line, "{\"error\": {\"class\": \"GenericError\"") ==
                          line &&
                      strstr(line, "not ready within 300 ms"),
                  "%s", line);
    ck_assert(!client_line(&c, line, sizeof(line), 2000));
    ck_assert_msg(c.eof, "not closed after the error");
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 0);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_waiting, 0);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_timed_out, 1);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_dropped, 0);
    ck_assert_msg(strstr(logbuf, "was not ready within 300 ms"), "log: %s",
                  logbuf);
    close(c.fd);
    stubdm_qmp_proxy_free(p);
    stubdm_qmp_free(q);
}
END_TEST

START_TEST(test_proxy_waits_for_reconnect)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(), QP_ACC(), /* the connection is lost, then accepted again */
        QP_HS(), QP_ANS(), QP_E(),
    };
    stubdm_qmp_proxy *p = NULL;
    struct client c;
    stubdm_qmp *q;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready();
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path, 5000, &p), 0);
    wait_not_ready(q);
    client_connect(&c, path);
    client_quiet(&c, 300);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_waiting, 1);
    ck_assert_int_eq(stubdm_qmp_reconnect(q, NULL, NULL, NULL), 0);
    client_served(&c, false);
    ck_assert_uint_eq(ts_proxy_stats(p).clients_waiting, 0);
    close(c.fd);
    stubdm_qmp_proxy_free(p);
    stubdm_qmp_free(q);
}
END_TEST

/* Two proxies on one handle (libxl's path and xenopsd's, as stubdmd
 * serves them): the connection lost while their clients are idle, each
 * client sees a close at once, without a command of its own; after the
 * reconnect a new client is served. */
static void client_negotiated(struct client *c)
{
    char line[1024];

    ck_assert_msg(client_line(c, line, sizeof(line), 5000), "no greeting");
    client_send(c, "{\"execute\":\"qmp_capabilities\",\"id\":\"n\"}");
    ck_assert(client_line(c, line, sizeof(line), 5000));
    ck_assert_str_eq(line, "{\"return\": {}, \"id\": \"n\"}");
}

START_TEST(test_proxy_lost_closes_idle)
{
    static const struct qmp_peer_step script[] = {
        QP_HS(), QP_H(500), QP_ACC(), QP_HS(), QP_ANS(), QP_E(),
    };
    stubdm_qmp_proxy *p = NULL, *p2 = NULL;
    struct client c, c2, c3;
    char line[1024], path2[160];
    stubdm_qmp *q;

    snprintf(path2, sizeof(path2), "%s/proxy2.sock", dir);
    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready();
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path, 5000, &p), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path2, 5000, &p2), 0);
    client_connect(&c, path);
    client_connect(&c2, path2);
    client_negotiated(&c);
    client_negotiated(&c2);
    ck_assert(!client_line(&c, line, sizeof(line), 3000));
    ck_assert_msg(c.eof, "the idle client on %s still connected", path);
    ck_assert(!client_line(&c2, line, sizeof(line), 3000));
    ck_assert_msg(c2.eof, "the idle client on %s still connected", path2);
    ck_assert_int_eq(stubdm_qmp_reconnect(q, NULL, NULL, NULL), 0);
    client_connect(&c3, path2);
    client_served(&c3, false);
    close(c.fd);
    close(c2.fd);
    close(c3.fd);
    stubdm_qmp_proxy_free(p2);
    stubdm_qmp_proxy_free(p);
    stubdm_qmp_free(q);
    ck_assert_int_eq(access(path2, F_OK), -1);
}
END_TEST

/* ---- a listening socket the caller made ---------------------------------- */

/* A unix socket bound at where, listening if listening; blocking, as a
 * caller (or systemd) may hand it over. */
static int bound_socket(const char *where, int type, bool listening)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_uint_lt(strlen(where), sizeof(sa.sun_path));
    memcpy(sa.sun_path, where, strlen(where) + 1);
    unlink(where);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (listening)
        ck_assert_int_eq(listen(fd, 8), 0);
    return fd;
}

static int new_with_fd(stubdm_qmp *q, int fd, bool with_mode)
{
    stubdm_qmp_proxy_opts *o = NULL;
    stubdm_qmp_proxy *p = (stubdm_qmp_proxy *)&p;
    int rc;

    ck_assert_int_eq(stubdm_qmp_proxy_opts_new(&o), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_listen_fd(o, fd), 0);
    if (with_mode)
        ck_assert_int_eq(stubdm_qmp_proxy_opts_set_mode(o, 0600), 0);
    rc = stubdm_qmp_proxy_new_ext(q, o, &p);
    stubdm_qmp_proxy_opts_free(o);
    ck_assert_ptr_null(p);
    return rc;
}

START_TEST(test_proxy_caller_listen_fd)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    char other[160];
    stubdm_qmp_proxy_opts *o = NULL;
    stubdm_qmp_proxy *p = NULL;
    struct client a, b, after;
    struct stat st0, st1;
    int sv[2], lfd, fd;
    stubdm_qmp *q;

    ck_assert_int_eq(qmp_peer_start(&peer, sim.sock, script), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&sim), 0);
    q = open_ready();
    snprintf(other, sizeof(other), "%s/other.sock", dir);

    /* Refused: not a socket, not unix, not stream, not listening; a mode
     * for the caller's file; both or neither of path and fd. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(new_with_fd(q, sv[0], false), STUBDM_EINVAL);
    close(sv[0]);
    close(sv[1]);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    ck_assert_int_eq(new_with_fd(q, fd, false), STUBDM_EINVAL);
    close(fd);
    fd = bound_socket(other, SOCK_DGRAM, false);
    ck_assert_int_eq(new_with_fd(q, fd, false), STUBDM_EINVAL);
    close(fd);
    fd = bound_socket(other, SOCK_STREAM, false);
    ck_assert_int_eq(new_with_fd(q, fd, false), STUBDM_EINVAL);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx), "not listening"), "%s",
                  stubdm_ctx_errmsg(ctx));
    close(fd);
    ck_assert_int_eq(new_with_fd(q, STDIN_FILENO, false), STUBDM_EINVAL);
    lfd = bound_socket(path, SOCK_STREAM, true);
    ck_assert_int_eq(new_with_fd(q, lfd, true), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_new(&o), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_new_ext(q, o, &p), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_listen_fd(o, lfd), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_path(o, other), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_new_ext(q, o, &p), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_path(o, NULL), 0);
    ck_assert_int_eq(fcntl(lfd, F_GETFD), FD_CLOEXEC); /* still open */

    /* Served: two clients queued at once (a blocking fd must not block
     * the accept loop), both greeted and answered. */
    ck_assert_int_eq(lstat(path, &st0), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_new_ext(q, o, &p), 0);
    stubdm_qmp_proxy_opts_free(o);
    client_connect(&a, path);
    client_connect(&b, path);
    client_served(&a, false);
    client_served(&b, false);
    ck_assert_uint_eq(ts_proxy_stats(p).clients, 2);
    close(a.fd);
    close(b.fd);

    /* Freed: the fd is still the caller's, open and listening, and its
     * file untouched. */
    stubdm_qmp_proxy_free(p);
    ck_assert_int_eq(fcntl(lfd, F_GETFD), FD_CLOEXEC);
    ck_assert_int_eq(lstat(path, &st1), 0);
    ck_assert(st1.st_ino == st0.st_ino && st1.st_mode == st0.st_mode);
    client_connect(&after, path);
    close(after.fd);
    close(lfd);
    unlink(other);
    stubdm_qmp_free(q);
}
END_TEST

/* ---- the socket file: exact mode and group, appearing complete ---------- */

/* What happened to the name "proxy.sock" in dir, from the inotify fd. */
struct name_events {
    int created, deleted, attrib, moved_to;
};

static struct name_events name_events(int ifd)
{
    struct name_events ev = {0};
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    while ((n = read(ifd, buf, sizeof(buf))) > 0) {
        for (char *at = buf; at < buf + n;) {
            const struct inotify_event *e = (const void *)at;
            at += sizeof(*e) + e->len;
            if (!e->len || strcmp(e->name, "proxy.sock"))
                continue;
            ev.created += !!(e->mask & IN_CREATE);
            ev.deleted += !!(e->mask & IN_DELETE);
            ev.attrib += !!(e->mask & IN_ATTRIB);
            ev.moved_to += !!(e->mask & IN_MOVED_TO);
        }
    }
    return ev;
}

START_TEST(test_proxy_socket_mode_exact)
{
    stubdm_qmp_proxy_opts *o = NULL;
    stubdm_qmp_proxy *p = NULL;
    uint32_t gid = geteuid() == 0 ? 65534 : (uint32_t)getegid();
    struct name_events ev;
    struct stat stale, st;
    mode_t old;
    int ifd, fd;
    stubdm_qmp *q = open_pending();

    /* A stale socket at the path, as a crashed service leaves it. */
    close(bound_socket(path, SOCK_STREAM, true));
    ck_assert_int_eq(lstat(path, &stale), 0);
    ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ck_assert_int_ge(ifd, 0);
    ck_assert_int_ge(inotify_add_watch(ifd, dir,
                                       IN_CREATE | IN_DELETE | IN_ATTRIB |
                                           IN_MOVED_TO | IN_MOVED_FROM),
                     0);

    ck_assert_int_eq(stubdm_qmp_proxy_opts_new(&o), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_path(o, path), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_mode(o, 01660), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_mode(o, 0660), 0);
    ck_assert_int_eq(stubdm_qmp_proxy_opts_set_group(o, gid), 0);
    old = umask(077);
    ck_assert_int_eq(stubdm_qmp_proxy_new_ext(q, o, &p), 0);
    ck_assert_uint_eq(umask(old), 077); /* and the umask is untouched */
    stubdm_qmp_proxy_opts_free(o);

    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_msg((st.st_mode & 07777) == 0660, "mode %o",
                  (unsigned)(st.st_mode & 07777));
    ck_assert_uint_eq(st.st_gid, gid);
    /* The name was replaced in one step, the file complete: never absent,
     * never another mode or group at that name. */
    ev = name_events(ifd);
    ck_assert_msg(ev.moved_to == 1 && !ev.created && !ev.deleted && !ev.attrib,
                  "proxy.sock: %d created, %d deleted, %d attrib, %d moved "
                  "in",
                  ev.created, ev.deleted, ev.attrib, ev.moved_to);
    ck_assert(st.st_ino != stale.st_ino);
    /* Nothing left of the staging directory. */
    {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 1", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    stubdm_qmp_proxy_free(p);
    ck_assert_int_eq(lstat(path, &st), -1);

    /* The simple form: 0600 exactly, even under a umask that takes the
     * owner's write bit. */
    old = umask(0277);
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path, 5000, &p), 0);
    umask(old);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_msg((st.st_mode & 07777) == 0600, "mode %o",
                  (unsigned)(st.st_mode & 07777));
    stubdm_qmp_proxy_free(p);

    /* A directory whose name leaves no room in sun_path for the staging
     * directory's: bound through /proc/self/fd, same result. */
    {
        char deep[128], at[160];
        size_t n = strlen(dir);
        memcpy(deep, dir, n);
        deep[n++] = '/';
        memset(deep + n, 'd', 95 - n);
        deep[95] = '\0';
        ck_assert_uint_eq(strlen(deep), 95);
        ck_assert_int_eq(mkdir(deep, 0700), 0);
        snprintf(at, sizeof(at), "%s/p", deep);
        old = umask(077);
        ck_assert_msg(stubdm_qmp_proxy_new(q, at, 5000, &p) == 0, "%s",
                      stubdm_ctx_errmsg(ctx));
        umask(old);
        ck_assert_int_eq(lstat(at, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        stubdm_qmp_proxy_free(p);
        ck_assert_int_eq(rmdir(deep), 0); /* nothing left in it */
    }

    /* Another kind of file is not replaced. */
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(stubdm_qmp_proxy_new(q, path, 5000, &p), STUBDM_EFAIL);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    close(ifd);
    stubdm_qmp_free(q);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("proxy");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_proxy_before_ready);
    tcase_add_test(tc, test_proxy_wait_bound);
    tcase_add_test(tc, test_proxy_waits_for_reconnect);
    tcase_add_test(tc, test_proxy_lost_closes_idle);
    tcase_add_test(tc, test_proxy_caller_listen_fd);
    tcase_add_test(tc, test_proxy_socket_mode_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
