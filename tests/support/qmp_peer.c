/* See qmp_peer.h. */
#include "qmp_peer.h"
#include "proccheck.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

/* qmp_qemu_start's pre-connected monitor, and how long QEMU may take to
 * answer on it (a machine starting many QEMUs at once is slow). */
#define QEMU_READY_FD 3
#define QEMU_READY_FD_STR "3"
#define QEMU_READY_MS 60000

const char qmp_peer_greeting[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
    "\"major\": 7}, \"package\": \"peer\"}, \"capabilities\": [\"oob\"]}}\r\n";

/* ---- the simulated host ---------------------------------------------- */

int qmp_sim_start(struct qmp_sim *s, unsigned stubdom, unsigned guest)
{
    char path[128], dir[300];

    memset(s, 0, sizeof(*s));
    s->stubdom = stubdom;
    s->guest = guest;
    if (mockxs_start(&s->mock, NULL))
        return -1;
    setenv("XENSTORED_PATH", mockxs_socket(&s->mock), 1);
    snprintf(s->simdir, sizeof(s->simdir), "/tmp/qmpsim-XXXXXX");
    if (!mkdtemp(s->simdir))
        return -1;
    snprintf(dir, sizeof(dir), "%s/qmp-vchan", s->simdir);
    if (mkdir(dir, 0700))
        return -1;
    setenv("STUBDM_SIM_DIR", s->simdir, 1);
    snprintf(s->sock, sizeof(s->sock), "%s/%u.%u.sock", dir, stubdom, guest);
    snprintf(s->lock, sizeof(s->lock), "%s/%u.%u.lock", dir, stubdom, guest);
    s->xs = mockxs_open_as(&s->mock, 0);
    if (!s->xs)
        return -1;
    if (!xs_introduce_domain(s->xs, stubdom, 1, 1))
        return -1;
    snprintf(path, sizeof(path), "/local/domain/%u/device-model/%u", stubdom,
             guest);
    if (!xs_mkdir(s->xs, XBT_NULL, path))
        return -1;
    return 0;
}

int qmp_sim_server_ready(struct qmp_sim *s)
{
    char path[160];

    snprintf(path, sizeof(path),
             "/local/domain/%u/device-model/%u/qmp-vchan/ring-ref", s->stubdom,
             s->guest);
    if (!xs_write(s->xs, XBT_NULL, path, "8", 1))
        return -1;
    snprintf(path, sizeof(path),
             "/local/domain/%u/device-model/%u/qmp-vchan/event-channel",
             s->stubdom, s->guest);
    return xs_write(s->xs, XBT_NULL, path, "3", 1) ? 0 : -1;
}

int qmp_sim_kill_stubdom(struct qmp_sim *s)
{
    return xs_release_domain(s->xs, s->stubdom) ? 0 : -1;
}

void qmp_sim_stop(struct qmp_sim *s)
{
    char cmd[600];

    if (s->xs)
        xs_close(s->xs);
    s->xs = NULL;
    mockxs_stop(&s->mock);
    if (s->simdir[0] && strncmp(s->simdir, "/tmp/qmpsim-", 12) == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", s->simdir);
        if (system(cmd) != 0)
            fprintf(stderr, "qmp_sim_stop: could not remove %s\n", s->simdir);
    }
    s->simdir[0] = '\0';
}

/* ---- the scripted peer (child side) ------------------------------------ */

struct reader {
    int fd;
    char buf[65536];
    size_t len;
    char line[1 << 20];
    char id[64];
};

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One line (without "\r\n") into r->line; remembers its "id" text. */
static int read_line(struct reader *r)
{
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl) {
            size_t n = (size_t)(nl - r->buf) + 1;
            size_t copy = n < sizeof(r->line) ? n : sizeof(r->line) - 1;
            memcpy(r->line, r->buf, copy);
            r->line[copy] = '\0';
            memmove(r->buf, r->buf + n, r->len - n);
            r->len -= n;
            /* The library writes its id last, after the arguments, which
             * may hold "id" keys of their own (a proxied client's). */
            const char *idp = NULL;
            for (const char *f = r->line; (f = strstr(f, "\"id\":")); f++)
                idp = f;
            r->id[0] = '\0';
            if (idp) {
                idp += 5;
                size_t k = 0;
                while (*idp && *idp != '}' && *idp != ',' &&
                       k + 1 < sizeof(r->id))
                    r->id[k++] = *idp++;
                r->id[k] = '\0';
            }
            return 0;
        }
        if (r->len == sizeof(r->buf))
            return -1;
        ssize_t n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        r->len += (size_t)n;
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* fmt with every "%s" replaced by the last command's id. */
static int reply(struct reader *r, const char *fmt)
{
    char out[4096];
    const char *id = r->id[0] ? r->id : "null";
    size_t n = 0, idl = strlen(id);

    for (const char *f = fmt; *f; f++) {
        if (f[0] == '%' && f[1] == 's') {
            if (n + idl >= sizeof(out) - 2)
                return -1;
            memcpy(out + n, id, idl);
            n += idl;
            f++;
        } else {
            if (n + 1 >= sizeof(out) - 2)
                return -1;
            out[n++] = *f;
        }
    }
    memcpy(out + n, "\r\n", 2);
    return write_all(r->fd, out, n + 2);
}

static int run_step(struct reader *r, int lfd, const struct qmp_peer_step *st)
{
    switch (st->op) {
    case QP_END:
        return 0;
    case QP_SEND:
        return write_all(r->fd, st->text,
                         st->len ? st->len : strlen(st->text));
    case QP_GREET:
        return write_all(r->fd, qmp_peer_greeting, strlen(qmp_peer_greeting));
    case QP_READ_CMD:
        if (read_line(r))
            return -1;
        return st->text && !strstr(r->line, st->text) ? -1 : 0;
    case QP_REPLY:
        return reply(r, st->text);
    case QP_HANDSHAKE:
        if (write_all(r->fd, qmp_peer_greeting, strlen(qmp_peer_greeting)) ||
            read_line(r) || !strstr(r->line, "qmp_capabilities"))
            return -1;
        return reply(r, "{\"return\": {}, \"id\": %s}");
    case QP_DELAY:
        sleep_ms(st->ms);
        return 0;
    case QP_SLOW:
        for (const char *c = st->text; *c; c++) {
            if (write_all(r->fd, c, 1))
                return -1;
            sleep_ms(st->ms);
        }
        return 0;
    case QP_FLOOD: {
        char batch[65536];
        size_t used = 0;
        for (long i = 0; i < st->n; i++) {
            int n = snprintf(batch + used, sizeof(batch) - used,
                             "{\"event\": \"FLOOD\", \"data\": {\"i\": %ld}, "
                             "\"timestamp\": {\"seconds\": 1, "
                             "\"microseconds\": 2}}\r\n",
                             i);
            if (n < 0 || (size_t)n >= sizeof(batch) - used) {
                if (write_all(r->fd, batch, used))
                    return -1;
                used = 0;
                i--;
                continue;
            }
            used += (size_t)n;
        }
        return write_all(r->fd, batch, used);
    }
    case QP_HOLD: {
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            long el = (t.tv_sec - t0.tv_sec) * 1000 +
                      (t.tv_nsec - t0.tv_nsec) / 1000000;
            if (el >= st->ms)
                return 0;
            struct pollfd p = {r->fd, POLLIN, 0};
            if (poll(&p, 1, (int)(st->ms - el)) > 0) {
                char junk[4096];
                if (read(r->fd, junk, sizeof(junk)) <= 0)
                    return 0; /* the client left: holding is over */
            }
        }
    }
    case QP_ANSWER:
        while (read_line(r) == 0)
            if (reply(r, "{\"return\": {}, \"id\": %s}"))
                return -1;
        return 0;
    case QP_ECHO: {
        char b[65536];
        for (;;) {
            ssize_t n = read(r->fd, b, sizeof(b));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return 0;
            if (write_all(r->fd, b, (size_t)n))
                return -1;
        }
    }
    case QP_CLOSE:
        close(r->fd);
        r->fd = -1;
        return 0;
    case QP_SHUTRD:
        return shutdown(r->fd, SHUT_RD);
    case QP_ACCEPT:
        if (r->fd >= 0)
            close(r->fd);
        r->len = 0;
        r->fd = accept(lfd, NULL, NULL);
        return r->fd < 0 ? -1 : 0;
    }
    return -1;
}

int qmp_peer_start(struct qmp_peer *p, const char *path,
                   const struct qmp_peer_step *steps)
{
    struct sockaddr_un sa;

    p->pid = -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    unlink(path);
    p->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->listen_fd < 0)
        return -1;
    if (bind(p->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
        listen(p->listen_fd, 8)) {
        close(p->listen_fd);
        return -1;
    }
    p->pid = proc_child_fork();
    if (p->pid < 0) {
        close(p->listen_fd);
        return -1;
    }
    if (p->pid == 0) {
        static struct reader r;
        signal(SIGPIPE, SIG_IGN);
        r.fd = accept(p->listen_fd, NULL, NULL);
        if (r.fd < 0)
            _exit(100);
        for (int i = 0; steps[i].op != QP_END; i++)
            if (run_step(&r, p->listen_fd, &steps[i]))
                _exit(i + 1 > 99 ? 99 : i + 1);
        if (r.fd >= 0)
            close(r.fd);
        _exit(0);
    }
    close(p->listen_fd);
    p->listen_fd = -1;
    return 0;
}

int qmp_peer_wait(struct qmp_peer *p, int timeout_ms)
{
    int status;

    if (p->pid <= 0)
        return -1;
    for (int waited = 0;; waited += 5) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid)
            break;
        if (waited >= timeout_ms) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            p->pid = -1;
            return -1;
        }
        sleep_ms(5);
    }
    p->pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Read from fd until needle arrives (0), or EOF, error or ms pass (-1). */
static int read_until(int fd, const char *needle, int ms)
{
    char buf[4096];
    size_t len = 0;
    struct pollfd p = {fd, POLLIN, 0};

    while (len + 1 < sizeof(buf)) {
        ssize_t n;
        if (poll(&p, 1, ms) <= 0)
            return -1;
        n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, needle))
            return 0;
    }
    return -1;
}

/* QEMU's main loop answers on its pre-connected monitor (fd), so its
 * listening QMP socket is past QEMU 7.2's start-up race: see
 * qmp_qemu_start. */
static int qemu_wait_ready(int fd)
{
    static const char caps[] = "{\"execute\":\"qmp_capabilities\"}\n";

    if (read_until(fd, "\"QMP\"", QEMU_READY_MS))
        return -1;
    if (write(fd, caps, sizeof(caps) - 1) != (ssize_t)sizeof(caps) - 1)
        return -1;
    return read_until(fd, "\"return\"", QEMU_READY_MS);
}

pid_t qmp_qemu_start(const char *path)
{
    char qmp[400];
    int pair[2];
    pid_t pid;

    if (snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", path) >=
        (int)sizeof(qmp))
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair))
        return -1;
    pid = proc_child_fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        proc_child_cloexec();
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(pair[1], QEMU_READY_FD);
        execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "none",
               "-nodefaults", "-display", "none", "-accel", "tcg", "-qmp", qmp,
               "-chardev", "socket,id=ready,fd=" QEMU_READY_FD_STR, "-mon",
               "chardev=ready,mode=control", (char *)NULL);
        _exit(127);
    }
    close(pair[1]);
    if (pid > 0 && qemu_wait_ready(pair[0])) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = -1;
    }
    close(pair[0]);
    return pid;
}

void qmp_peer_stop(struct qmp_peer *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    p->pid = -1;
}
