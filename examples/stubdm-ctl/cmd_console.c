/*
 * stubdm-ctl console STUBDOM N
 *
 * Attach the terminal to serial console N (3 or more) of a stubdomain
 * that stubdmd serves: stubdmd opens the console's pty and passes it over
 * its control socket (SCM_RIGHTS), this process relays stdin to it and it
 * to stdout.  Ctrl-] leaves; so does the end of stdin (after what the pty
 * says within half a second) and the pty's end.  Without stubdmd nothing
 * serves a console for this process to attach to.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define ESCAPE 0x1d /* Ctrl-] */

const struct ctl_option ctl_console_options[] = {
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR && !ctl_interrupted())
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* stdin -> pty; false: leave (escape, or the pty failed). */
static bool from_stdin(int pty, bool raw, bool *eof)
{
    char buf[4096];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    char *esc;

    if (n <= 0) {
        *eof = n == 0 || errno != EINTR;
        return true;
    }
    if (raw && (esc = memchr(buf, ESCAPE, (size_t)n))) {
        write_all(pty, buf, (size_t)(esc - buf));
        return false;
    }
    return write_all(pty, buf, (size_t)n);
}

static void relay(int pty, bool raw)
{
    bool eof = false;
    int64_t drain_end = 0;
    char buf[4096];

    while (!ctl_interrupted()) {
        struct pollfd p[2] = {{pty, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        int n = poll(p, eof ? 1 : 2, 100);

        if (eof && !drain_end)
            drain_end = stubdm_now_ms() + 500;
        if (drain_end && stubdm_now_ms() >= drain_end)
            return;
        if (n <= 0)
            continue;
        if (p[0].revents) {
            ssize_t k = read(pty, buf, sizeof(buf));
            if (k < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (k <= 0 || !write_all(STDOUT_FILENO, buf, (size_t)k))
                return; /* the console ended */
        }
        if (!eof && p[1].revents && !from_stdin(pty, raw, &eof))
            return;
    }
}

static int attach(const struct ctl_global *g, const char *tty, int pty)
{
    struct termios saved, t;
    bool raw = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    int fl = fcntl(pty, F_GETFL);

    (void)g;
    if (fl >= 0) /* writes wait for the console; reads are polled */
        fcntl(pty, F_SETFL, fl & ~O_NONBLOCK);
    if (raw) {
        t = saved;
        cfmakeraw(&t);
        tcsetattr(STDIN_FILENO, TCSANOW, &t);
        fprintf(stderr, "connected to %s (Ctrl-] leaves)\r\n", tty);
    }
    relay(pty, raw);
    if (raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        fprintf(stderr, "\n");
    }
    return ctl_interrupted() ? CTL_EXIT_INTERRUPTED : CTL_EXIT_OK;
}

int ctl_console_run(stubdm_ctx *ctx, const struct ctl_global *g,
                    const struct ctl_command *cmd, int argc, char **argv)
{
    struct ctl_stubdmd_reply r = {.fd = -1};
    struct ctl_args a;
    uint32_t stubdom;
    uint64_t n;
    char req[64], tty[256], msg[512];
    int sock, rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, NULL, &a)))
        return rc;
    if (a.npos != 2 || a.nrest)
        return ctl_usage_error(cmd, "need STUBDOM and N");
    if (!ctl_parse_domid(a.pos[0], &stubdom))
        return ctl_usage_error(cmd, "bad STUBDOM domid '%s'", a.pos[0]);
    if (ctl_parse_uint(a.pos[1], 3, 2 + STUBDM_CONSOLE_MAX_SERIALS, &n))
        return ctl_usage_error(cmd, "bad console '%s' (a serial: 3 to %u)",
                               a.pos[1], 2 + STUBDM_CONSOLE_MAX_SERIALS);
    if ((rc = ctl_stubdmd_connect(g, &sock))) {
        if (!ctl_stubdmd_absent(rc))
            return ctl_stubdmd_unreachable(ctx, g, "console", rc);
        snprintf(msg, sizeof(msg),
                 "no stubdmd answers on %s (%s): serial consoles are "
                 "served by stubdmd",
                 ctl_control_path(g), strerror(-rc));
        return ctl_report_error(ctx, g, "console", STUBDM_ENOTSUP, msg);
    }
    snprintf(req, sizeof(req), "console %u %u", stubdom, (unsigned)n);
    rc = ctl_stubdmd_call(sock, req, -1, 10000, &r);
    close(sock);
    if (rc) {
        snprintf(msg, sizeof(msg), "stubdmd on %s: %s", ctl_control_path(g),
                 strerror(-rc));
        ctl_stubdmd_reply_free(&r);
        return ctl_report_error(ctx, g, "console", STUBDM_EFAIL, msg);
    }
    if (r.rc || r.fd < 0 ||
        !ctl_stubdmd_value(r.last, "tty", tty, sizeof(tty))) {
        rc = r.rc ? ctl_stubdmd_report(g, "console", &r)
                  : ctl_report_error(ctx, g, "console", STUBDM_EPROTO,
                                     "stubdmd's reply has no pty");
        ctl_stubdmd_reply_free(&r);
        return rc;
    }
    rc = attach(g, tty, r.fd);
    ctl_stubdmd_reply_free(&r);
    return rc;
}

const char ctl_console_help[] =
    "Asks stubdmd (--control SOCKET, default " CTL_CONTROL_DEFAULT ") for\n"
    "serial console N (3 = the first serial) of STUBDOM; stubdmd passes\n"
    "the pty it serves it on, and this process relays the terminal to it\n"
    "(raw mode when stdin is a terminal).  Ctrl-] leaves; so do the end of\n"
    "stdin (after half a second of what the console says) and the end of\n"
    "the console.  Without stubdmd running: exit 11 (nothing serves it).\n";
