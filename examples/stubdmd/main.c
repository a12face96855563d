/*
 * stubdmd [options]: the service's process: options, the single-instance
 * lock, signals through a signalfd, one epoll loop over the signalfd,
 * xenstore's watch fd and each served stubdomain's ctx (adopt.c).
 */
#include "stubdmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

stubdm_log_level stubdmd_min_level = STUBDM_LOG_INFO;
/* stderr is the journal: each line starts with its syslog priority, "<N>"
 * (systemd's SyslogLevelPrefix=, on by default). */
static bool log_to_journal;

/* systemd sets $JOURNAL_STREAM to "DEV:INODE" of the stream it connected
 * to the journal; stderr is it if it is still that file. */
static bool stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char tail;

    return e && sscanf(e, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
           fstat(STDERR_FILENO, &st) == 0 && st.st_dev == (dev_t)dev &&
           st.st_ino == (ino_t)ino;
}

static int syslog_priority(stubdm_log_level level)
{
    if (level >= STUBDM_LOG_ERROR)
        return 3;
    if (level >= STUBDM_LOG_WARN)
        return 4;
    return level >= STUBDM_LOG_INFO ? 6 : 7;
}

static const char *level_name(stubdm_log_level level)
{
    if (level >= STUBDM_LOG_ERROR)
        return "error";
    if (level >= STUBDM_LOG_WARN)
        return "warning";
    return level >= STUBDM_LOG_INFO ? "info" : "debug";
}

void stubdmd_log(stubdm_log_level level, const struct stubdmd_served *s,
                 const char *fmt, ...)
{
    char msg[1024], pri[8] = "";
    va_list ap;

    if (level < stubdmd_min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_to_journal) /* one write per line: the journal reads lines */
        snprintf(pri, sizeof(pri), "<%d>", syslog_priority(level));
    if (s)
        fprintf(stderr, "%sstubdmd: %s: dom%u (guest %u): %s\n", pri,
                level_name(level), s->stub, s->guest, msg);
    else
        fprintf(stderr, "%sstubdmd: %s: %s\n", pri, level_name(level), msg);
}

/* ---- options ------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: stubdmd [options]\n"
          "Serve the stubdomains whose contract asks for a service\n"
          "(/local/domain/<guest>/image/device-model-service).\n"
          "  --run-dir DIR        lock file DIR/stubdmd.pid, control socket\n"
          "                       DIR/control (/run/stubdmd)\n"
          "  --log-dir DIR        console 0 into DIR/qemu-dm-<name>.log "
          "(/var/log/xen)\n"
          "  --qmp-dir DIR        QMP proxy at DIR/qmp-libxl-<guest> "
          "(/var/run/xen)\n"
          "  --log-size BYTES     cap of each log file (1048576)\n"
          "  --log-rotations N    rotated log files kept (10)\n"
          "  --qmp-timeout SECONDS  wait for a stubdomain's QMP (60)\n"
          "  --hotplug-dir DIR    remove scripts run when cleaning up\n"
          "                       after a dead stubdomain (/etc/xen/scripts)\n"
          "  --console-rate BYTES   output budget of each console per "
          "second\n"
          "                       (1048576; 0: none)\n"
          "  --ready-fd FD        write a newline to FD and close it once "
          "ready\n"
          "  -v, --verbose        debug messages\n"
          "  -h, --help\n",
          f);
}

/* Digits only, no sign, within max. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (max - (uint64_t)(*p - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, struct stubdmd_conf *c)
{
    static const struct option opts[] = {
        {"run-dir", required_argument, NULL, 'r'},
        {"log-dir", required_argument, NULL, 'l'},
        {"qmp-dir", required_argument, NULL, 'q'},
        {"log-size", required_argument, NULL, 's'},
        {"log-rotations", required_argument, NULL, 'n'},
        {"qmp-timeout", required_argument, NULL, 't'},
        {"hotplug-dir", required_argument, NULL, 'H'},
        {"console-rate", required_argument, NULL, 'c'},
        {"ready-fd", required_argument, NULL, 'f'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int ch, idx = 0;

    while ((ch = getopt_long(argc, argv, "vh", opts, &idx)) != -1) {
        switch (ch) {
        case 'r':
            c->run_dir = optarg;
            break;
        case 'l':
            c->log_dir = optarg;
            break;
        case 'q':
            c->qmp_dir = optarg;
            break;
        case 's':
            if (!parse_u64(optarg, UINT64_C(1) << 40, &v) || !v)
                goto bad;
            c->log_cap = v;
            break;
        case 'n':
            if (!parse_u64(optarg, STUBDM_CONSOLE_MAX_ROTATIONS, &v))
                goto bad;
            c->log_rotations = (unsigned)v;
            break;
        case 't':
            if (!parse_u64(optarg, 3600, &v) || !v)
                goto bad;
            c->qmp_open_timeout_ms = (int)v * 1000;
            break;
        case 'H':
            if (optarg[0] != '/')
                goto bad;
            c->hotplug_dir = optarg;
            break;
        case 'c':
            if (!parse_u64(optarg, UINT64_C(1) << 40, &v))
                goto bad;
            c->console_rate = v;
            break;
        case 'f': /* an fd the caller opened for us: not stdin/out/err */
            if (!parse_u64(optarg, 65535, &v) || v < 3 ||
                fcntl((int)v, F_SETFD, FD_CLOEXEC) < 0)
                goto bad;
            c->ready_fd = (int)v;
            break;
        case 'v':
            c->level = STUBDM_LOG_DEBUG;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "stubdmd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "stubdmd: --%s: '%s' is not a valid value\n",
            opts[idx].name, optarg);
    return -1;
}

/* ---- the single-instance lock -------------------------------------------- */

/* DIR/stubdmd.pid, flock()ed for the process's life; a second instance
 * is refused with the holder's pid.  The lock, not the file, decides: a
 * file left by a killed instance is taken over. */
static int take_lock(const char *dir)
{
    char path[512], buf[32];
    ssize_t n;
    int fd;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "stubdmd: cannot create %s: %s\n", dir,
                strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/stubdmd.pid", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        fprintf(stderr, "stubdmd: cannot open %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        n = read(fd, buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (err == EWOULDBLOCK)
            fprintf(stderr,
                    "stubdmd: another stubdmd is running (pid %s, holding "
                    "the lock on %s)\n",
                    *buf ? buf : "unknown", path);
        else
            fprintf(stderr, "stubdmd: cannot lock %s: %s\n", path,
                    strerror(err));
        close(fd);
        return -1;
    }
    n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        fprintf(stderr, "stubdmd: cannot write %s: %s\n", path,
                strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the loop ------------------------------------------------------------ */

static int add_fd(struct stubdmd *d, int fd, struct stubdmd_src *src)
{
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = src};
    return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &e);
}

/* SIGTERM and SIGINT end the loop; this program owns its signals. */
static int signals_start(struct stubdmd *d)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    d->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return d->sigfd;
}

static void on_signal(struct stubdmd *d)
{
    struct signalfd_siginfo si;

    while (read(d->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        stubdmd_log(STUBDM_LOG_INFO, NULL,
                    "signal %u: letting every stubdomain go",
                    (unsigned)si.ssi_signo);
        if (!d->stop)
            stubdmd_sd_stopping(d);
        d->stop = true;
    }
}

static void run(struct stubdmd *d)
{
    struct epoll_event evs[32];

    while (!d->stop) {
        /* Ended in the previous batch (or found dead at start): its epoll
         * fd may have been in evs, so cleaned up and freed only now; the
         * clients of a stubdomain freed are ended by it, so swept after. */
        stubdmd_sweep(d, false);
        stubdmd_control_sweep(d, false);
        stubdmd_sd_status(d);
        int n = epoll_wait(d->epfd, evs, 32, -1);
        if (n < 0 && errno != EINTR) {
            stubdmd_log(STUBDM_LOG_ERROR, NULL, "epoll_wait: %s",
                        strerror(errno));
            return;
        }
        for (int i = 0; i < n && !d->stop; i++) {
            struct stubdmd_src *src = evs[i].data.ptr;
            if (src->kind == SRC_SIGNAL)
                on_signal(d);
            else if (src->kind == SRC_XENSTORE)
                stubdmd_xs_events(d);
            else if (src->kind == SRC_TIMER)
                src->timer(src->served);
            else if (src->kind == SRC_CONTROL)
                stubdmd_control_accept(d);
            else if (src->kind == SRC_CLIENT)
                stubdmd_control_event(src->client, evs[i].events);
            else if (!src->served->cleaned)
                stubdmd_served_dispatch(src->served);
        }
    }
}

static int start(struct stubdmd *d)
{
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    d->sig_src.kind = SRC_SIGNAL;
    d->xs_src.kind = SRC_XENSTORE;
    if (d->epfd < 0 || signals_start(d) < 0 ||
        add_fd(d, d->sigfd, &d->sig_src) < 0) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "cannot set up the loop: %s",
                    strerror(errno));
        return -1;
    }
    if (stubdmd_sd_start(d))
        return -1;
    if (stubdmd_xs_start(d) || add_fd(d, d->xsfd, &d->xs_src) < 0 ||
        stubdmd_control_start(d))
        return -1;
    return stubdmd_adopt_existing(d);
}

int main(int argc, char **argv)
{
    struct stubdmd_conf conf = {
        .run_dir = "/run/stubdmd",
        .log_dir = "/var/log/xen",
        .qmp_dir = "/var/run/xen",
        .log_cap = STUBDM_CONSOLE_DEFAULT_FILE_CAP,
        .log_rotations = 10,
        .qmp_open_timeout_ms = 60000,
        .level = STUBDM_LOG_INFO,
        .console_rate = STUBDM_CONSOLE_DEFAULT_RATE,
        .ready_fd = -1,
    };
    struct stubdmd d = {.conf = &conf,
                        .epfd = -1,
                        .sigfd = -1,
                        .xsfd = -1,
                        .ctlfd = -1,
                        .sd = {.notify_fd = -1}};
    int lock, rc = 1;

    if (parse_args(argc, argv, &conf))
        return 2;
    stubdmd_min_level = conf.level;
    log_to_journal = stderr_is_journal();
    if ((lock = take_lock(conf.run_dir)) < 0)
        return 1;
    if (!start(&d)) {
        stubdmd_log(STUBDM_LOG_INFO, NULL, "ready: serving %s",
                    d.served ? "stubdomains" : "nothing yet");
        stubdmd_sd_ready(&d, conf.ready_fd);
        run(&d);
        rc = 0;
    }
    /* Let go, never close: every stubdomain runs on, a restarted stubdmd
     * serves its consoles and QMP again. */
    stubdmd_control_stop(&d);
    stubdmd_sweep(&d, true);
    stubdmd_sd_stop(&d);
    stubdmd_xs_stop(&d);
    if (d.sigfd >= 0)
        close(d.sigfd);
    if (d.epfd >= 0)
        close(d.epfd);
    close(lock);
    return rc;
}
