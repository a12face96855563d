/*
 * xt-hvc: the console-frontend helpers of the test stubdomain's init
 * (tests/xen/stubdom/init, xt.dm=qemu-argv), what examples/sim-stubdom does
 * on the simulated host, for a real Linux stubdomain whose consoles are
 * served by libstubdm (docs/consoles.md):
 *
 *   xt-hvc save FD FILE TTY
 *       Console 1.  QEMU writes its device state into FILE through fd FD
 *       (the init gives it with -add-fd fd=FD,set=1; a regular file, since
 *       QEMU 7.2 opens /dev/fdset/1 with O_TRUNC and ftruncate()s it, which
 *       fails on a tty).  What QEMU writes is pumped into TTY (/dev/hvc1,
 *       raw) as the file grows.  Offers feature-stream-end: on
 *       device/console/1/stream-end-request = SEQ it answers
 *       stream-end = "SEQ TOTAL", TOTAL = every byte written to TTY since
 *       this helper started plus what the file still holds, so the library
 *       knows the exact end.  Once everything is out, the shared offset of
 *       FD is rewound so the next save starts at 0 (QEMU's dup shares it).
 *
 *   xt-hvc restore TTY
 *       Console 2.  TTY (/dev/hvc2) in raw mode, then input-ready = 1 in
 *       device/console/2 (the library feeds the stream only then: bytes the
 *       hvc driver took while the tty was cooked would be mangled), copied
 *       to stdout (the FIFO QEMU reads as -incoming fd:3) until the backend
 *       closes the console (hangup: EOF or EIO).
 *
 *   xt-hvc wait-ready SOCK SECONDS
 *       QMP query-status on the unix socket SOCK (a private monitor) until
 *       QEMU is past its start: any status but "inmigrate" (a restoring
 *       QEMU, -incoming, leaves it only once it has loaded the stream), so
 *       the init writes "running" only then.  Prints the status.
 *
 * A tty of Linux's hvc driver starts in cooked mode (ICRNL, ISIG, IXON,
 * ECHO, OPOST/ONLCR) and is reset on the last close, so it is made raw
 * right after the open, on the fd that is then used: binary-clean both ways.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <termios.h>
#include <unistd.h>
#include <xenstore.h>

static int open_raw(const char *tty, int flags)
{
    struct termios t;
    int fd = open(tty, flags | O_NOCTTY | O_CLOEXEC);

    if (fd < 0) {
        fprintf(stderr, "xt-hvc: open %s: %s\n", tty, strerror(errno));
        exit(1);
    }
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        if (tcsetattr(fd, TCSANOW, &t) < 0)
            fprintf(stderr, "xt-hvc: raw %s: %s\n", tty, strerror(errno));
    }
    return fd;
}

static int do_restore(const char *tty)
{
    char buf[4096];
    unsigned long long total = 0;
    int fd = open_raw(tty, O_RDONLY);
    struct xs_handle *xs = xs_open(0);

    /* Raw now: tell the library's backend to start feeding (it holds the
     * stream back until then; docs/consoles.md, input-ready). */
    if (!xs || !xs_write(xs, XBT_NULL, "device/console/2/input-ready", "1", 1))
        fprintf(stderr, "xt-hvc restore: writing input-ready failed\n");
    if (xs)
        xs_close(xs);
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* the backend closed console 2: hangup */
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(1, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                fprintf(stderr, "xt-hvc restore: write: %s\n",
                        strerror(errno));
                return 1;
            }
            off += w;
        }
        total += (unsigned long long)r;
    }
    fprintf(stderr, "XT-STUB xt-hvc restore: %llu bytes from %s\n", total,
            tty);
    return 0;
}

static int do_save(int qfd, const char *file, const char *tty)
{
    struct xs_handle *xs = xs_open(0);
    int rfd = open(file, O_RDONLY | O_CLOEXEC);
    int tfd = open_raw(tty, O_WRONLY | O_NONBLOCK);
    uint64_t off = 0, written = 0;
    char last[64] = "", buf[4096];
    size_t blen = 0, boff = 0;
    bool rewind_pending = false;

    if (!xs || rfd < 0) {
        fprintf(stderr, "xt-hvc save: xs_open or open %s failed\n", file);
        return 1;
    }
    if (!xs_write(xs, XBT_NULL, "device/console/1/feature-stream-end", "1", 1))
        fprintf(stderr, "xt-hvc save: writing feature-stream-end failed\n");
    for (;;) {
        struct stat st;
        struct pollfd p = {.fd = tfd, .events = POLLOUT};
        unsigned len;
        char *v;

        if (fstat(rfd, &st) < 0)
            return 1;
        if ((uint64_t)st.st_size < off)
            off = 0; /* truncated by the next save's open */
        /* file -> tty, as far as the ring takes it */
        for (;;) {
            if (boff == blen) {
                ssize_t n = pread(rfd, buf, sizeof(buf), (off_t)off);
                if (n <= 0)
                    break;
                off += (uint64_t)n;
                blen = (size_t)n;
                boff = 0;
            }
            ssize_t w = write(tfd, buf + boff, blen - boff);
            if (w <= 0)
                break; /* EAGAIN: the ring is full */
            boff += (size_t)w;
            written += (uint64_t)w;
        }
        /* the library's request for the end of the stream */
        v = xs_read(xs, XBT_NULL, "device/console/1/stream-end-request", &len);
        if (v && len < sizeof(last) && strcmp(v, last)) {
            char val[96];
            uint64_t pending = (uint64_t)st.st_size > off
                                   ? (uint64_t)st.st_size - off
                                   : 0;
            snprintf(last, sizeof(last), "%s", v);
            snprintf(val, sizeof(val), "%s %llu", v,
                     (unsigned long long)(written + (blen - boff) + pending));
            if (!xs_write(xs, XBT_NULL, "device/console/1/stream-end", val,
                          (unsigned)strlen(val)))
                fprintf(stderr, "xt-hvc save: writing stream-end failed\n");
            fprintf(stderr, "XT-STUB xt-hvc save: stream-end %s\n", val);
            rewind_pending = true;
        }
        free(v);
        if (rewind_pending && boff == blen && off == (uint64_t)st.st_size) {
            /* Everything is in the ring: QEMU's next open truncates the
             * file, and its dup shares our offset, so start at 0 again. */
            if (ftruncate(qfd, 0) < 0 || lseek(qfd, 0, SEEK_SET) < 0)
                fprintf(stderr, "xt-hvc save: rewind: %s\n", strerror(errno));
            off = 0;
            rewind_pending = false;
        }
        /* ring full: wait for room; otherwise look again in 20 ms */
        if (boff < blen)
            poll(&p, 1, 20);
        else
            usleep(20000);
    }
}

/* One QMP line (the monitor ends each message with CRLF). */
static int qmp_line(int fd, char *buf, size_t len)
{
    size_t n = 0;

    while (n + 1 < len) {
        ssize_t r = read(fd, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = 0;
    return 0;
}

/* Send cmd; its reply line into line.  0, or -1 on error. */
static int qmp_ask(int fd, const char *cmd, char *line, size_t len)
{
    if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
        return -1;
    for (;;) {
        if (qmp_line(fd, line, len) < 0)
            return -1;
        if (strstr(line, "\"return\"") || strstr(line, "\"error\""))
            return 0;
    }
}

static int do_wait_running(const char *sock, int seconds)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    time_t end = time(NULL) + seconds;
    char line[4096];
    int fd = -1;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    while (time(NULL) < end) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
        usleep(200000);
    }
    if (fd < 0 || qmp_line(fd, line, sizeof(line)) < 0 ||
        qmp_ask(fd, "{\"execute\":\"qmp_capabilities\"}\r\n", line,
                sizeof(line)) < 0) {
        fprintf(stderr, "xt-hvc: no QMP on %s\n", sock);
        return 1;
    }
    while (time(NULL) < end) {
        char *st;
        if (qmp_ask(fd, "{\"execute\":\"query-status\"}\r\n", line,
                    sizeof(line)) < 0)
            return 1;
        st = strstr(line, "\"status\": \"");
        if (st && strncmp(st + 11, "inmigrate", 9) != 0) {
            char *q = strchr(st + 11, '"');
            printf("%.*s\n", q ? (int)(q - st - 11) : 16, st + 11);
            return 0;
        }
        usleep(200000);
    }
    fprintf(stderr, "xt-hvc: QEMU still starting after %d s\n", seconds);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "wait-ready"))
        return do_wait_running(argv[2], atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "save"))
        return do_save(atoi(argv[2]), argv[3], argv[4]);
    if (argc == 3 && !strcmp(argv[1], "restore"))
        return do_restore(argv[2]);
    fprintf(stderr, "usage: xt-hvc save FD FILE TTY | restore TTY | "
                    "wait-ready SOCK SECONDS\n");
    return 2;
}
