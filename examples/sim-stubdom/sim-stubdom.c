/*
 * stubdm-sim-stubdom: the simulated host's stand-in for a Linux stubdomain.
 *
 * The simulated hypervisor (stubdm-mock-xenstored, sim-start) runs this
 * program as domain $STUBDM_SIM_DOMID with XENSTORED_PATH pointing at that
 * domain's xenstore socket, so everything below is done with the rights of
 * the stubdomain, exactly as a real stubdomain's init would:
 *
 *   1. read `target` (relative: /local/domain/<self>/target) -> guest G;
 *   2. read /local/domain/G/vm -> V (allowed through xs_set_target);
 *   3. read V/image/dm-argv (list, sort as text, read: stubdm_dm_argv_read),
 *      or the legacy V/image/dmargs;
 *   4. start QEMU with the arguments that make sense without Xen, plus a
 *      QMP monitor on the simulated vchan socket
 *      <sim dir>/qmp-vchan/<self>.<G>.sock (docs/qmp.md) and a private one
 *      on a socket connected before QEMU starts (see MONITOR_FD);
 *   5. when QEMU reports (query-status on the private monitor) that it is
 *      running, write device-model/G/state = running, then the vchan
 *      server's device-model/G/qmp-vchan/{ring-ref,event-channel};
 *   6. wait for QEMU; exit as it exited (a signal is re-raised), so the
 *      simulated hypervisor records "crashed (signal N)" or the status.
 *
 * Consoles.  With the library's console backend (console/type =
 * "libstubdm") this program is a PV console frontend over the simulated
 * transport (docs/consoles.md), as a real stubdomain's hvc driver is:
 *   0  its own log and QEMU's stdout/stderr (a pipe) go into console 0's
 *      ring; the library writes the log file;
 *   1  save: an O_WRONLY fd of a memfd is given to QEMU with QMP add-fd
 *      (fdset 1, SCM_RIGHTS over the private monitor, as the Qubes init's
 *      add-fd helper does with /dev/hvc1), so xen-save-devices-state to
 *      /dev/fdset/1 writes into it; what it writes is pumped into console
 *      1's ring as it grows.  Not a pipe: QEMU 7.2 opens the fdset with
 *      O_TRUNC and ftruncate() fails on a pipe or tty.  The monitor that
 *      did add-fd stays connected (QEMU drops fdsets otherwise).  It offers
 *      feature-stream-end: asked with stream-end-request = SEQ, it answers
 *      stream-end = "SEQ TOTAL", TOTAL = bytes put in the ring so far plus
 *      those not yet, so the library knows the end;
 *   2  restore (output set): console 2's ring is pumped into a pipe whose
 *      read end QEMU gets as -incoming fd:N (the replacement of libxl's
 *      $STUBDOM_RESTORE_INCOMING_ARG); the pipe is closed once the backend
 *      has closed console 2 and the ring is empty (QEMU sees EOF);
 *   3+ -serial /dev/hvcN: a pty whose slave QEMU gets, pumped both ways
 *      to console N's ring.
 * Otherwise (ioemu, xenconsoled): console 0's output "file:PATH" is written
 * directly and -serial /dev/hvcN is replaced by console N's output.
 * Device state: QEMU gets -global apic.vapic=off (the kvm-tpr-opt state
 * does not load under TCG) and, when restoring, -global
 * migration.send-configuration=off (xen-save-devices-state writes no
 * configuration section; a Xen machine expects none).
 *
 * Failure injection for tests: --die-at=before-argv|after-argv|
 * before-running|after-running (crash with --die-signal, default SIGSEGV,
 * or exit with --die-exit=N), --no-running (never write running), and
 * --no-qemu (answer QMP here instead of running QEMU: a light stubdomain
 * for many-domain tests; its serials echo their input, and lines written
 * to the FIFO <sim dir>/console/<domid>.say as "N TEXT" go out on console
 * N: see noqemu_serials; SIGUSR1 closes the QMP client's connection, as a
 * channel that breaks while the stubdomain lives).  It is also a
 * reference for stubdomain authors: docs/simulated-host.md.
 */
#include <libstubdm.h>

#include "simcons.h"
#include "fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

enum step {
    STEP_NONE,
    STEP_BEFORE_ARGV,
    STEP_AFTER_ARGV,
    STEP_BEFORE_RUNNING,
    STEP_AFTER_RUNNING
};

static struct {
    enum step die_at;
    int die_signal, die_exit;
    bool no_running, no_qemu;
    const char *qemu;
} opt = {STEP_NONE, SIGSEGV, -1, false, false, "qemu-system-x86_64"};

static unsigned self_domid, guest_domid;
static FILE *conlog; /* console 0, or NULL */
static volatile sig_atomic_t got_term, got_usr1;
static pid_t qemu_pid;
static int qemu_status;

/* ---- consoles as a frontend (backend "libstubdm") ----------------------- */

#define NCONS (3 + 16)
#define RESTORE_FD 3 /* QEMU's -incoming fd:3, as the Qubes init */
/*
 * QEMU's private monitor is one end of a socketpair, never a listening
 * socket: QEMU 7.2 watches a QMP listening socket from both its main
 * thread and its monitor I/O thread until the I/O thread first runs, and
 * a client that connects in that window (likely when many QEMUs start at
 * once) gets the greeting and then no answer, ever (fixed upstream in
 * QEMU 11.0, "monitor/qmp: cleanup SocketChardev listener sources
 * early").  A connected socket has no listener.  Its first answer also
 * proves that the I/O thread has set up the public monitor (created
 * before it, its setup runs first), so the toolstack, which connects
 * only after "running", never meets the window either.
 */
#define MONITOR_FD 4

struct con {
    struct simcons *sc;
    int src;         /* fd pumped into the ring (-1: none) */
    int dst;         /* fd the ring is pumped into (-1: none) */
    char obuf[4096]; /* read from src, not yet in the ring */
    size_t olen, ooff;
    char ibuf[1024]; /* read from the ring, not yet written to dst */
    size_t ilen, ioff;
    uint64_t total_out; /* bytes put into the ring */
    bool src_eof;
};

static bool served; /* console/type is "libstubdm" */
static struct con cons[NCONS];
static struct xs_handle *xsh;
static const char *sim_dir;
static int qemu_out[2] = {-1, -1};     /* QEMU stdout/stderr -> console 0 */
static int save_pipe[2] = {-1, -1};    /* QEMU (fdset 1) -> console 1 */
static int restore_pipe[2] = {-1, -1}; /* console 2 -> QEMU -incoming */
static char last_request[32];
static int kept_monitor = -1; /* the private monitor that did add-fd */
static int monitor_pair[2] = {-1, -1}; /* [0] ours, [1] QEMU's MONITOR_FD */

static bool restoring(void)
{
    return cons[2].sc != NULL;
}

static void con_flush_out(struct con *c)
{
    while (c->ooff < c->olen) {
        long n = simcons_write(c->sc, c->obuf + c->ooff, c->olen - c->ooff);
        if (n <= 0)
            return;
        c->ooff += (size_t)n;
        c->total_out += (uint64_t)n;
    }
    c->olen = c->ooff = 0;
}

/* src -> ring, as far as the ring takes it. */
static void con_pump_out(struct con *c)
{
    if (!c->sc)
        return;
    con_flush_out(c);
    while (c->src >= 0 && !c->src_eof && c->olen == 0) {
        ssize_t n = read(c->src, c->obuf, sizeof(c->obuf));
        if (n == 0) {
            c->src_eof = true;
            break;
        }
        if (n < 0)
            break; /* EAGAIN (or EIO on a pty without a peer) */
        c->olen = (size_t)n;
        c->ooff = 0;
        con_flush_out(c);
    }
}

/* ring -> dst. */
static void con_pump_in(struct con *c)
{
    if (!c->sc || c->dst < 0)
        return;
    for (;;) {
        if (c->ioff == c->ilen) {
            long n = simcons_read(c->sc, c->ibuf, sizeof(c->ibuf));
            if (n <= 0)
                return;
            c->ilen = (size_t)n;
            c->ioff = 0;
        }
        ssize_t w = write(c->dst, c->ibuf + c->ioff, c->ilen - c->ioff);
        if (w <= 0)
            return;
        c->ioff += (size_t)w;
    }
}

static int backend_state(unsigned n)
{
    char p[96], *v;
    unsigned len;
    int st = 0;

    snprintf(p, sizeof(p), "/local/domain/0/backend/console/%u/%u/state",
             self_domid, n);
    v = xs_read(xsh, XBT_NULL, p, &len);
    if (v)
        st = atoi(v);
    free(v);
    return st;
}

static uint64_t save_off; /* read offset in the console 1 file */
static bool save_rewind;  /* rewind once everything is in the ring */

static uint64_t save_size(void)
{
    struct stat st;
    return save_pipe[0] >= 0 && fstat(save_pipe[0], &st) == 0
               ? (uint64_t)st.st_size
               : 0;
}

/* QEMU's stream (the console 1 file) -> console 1's ring, as it grows. */
static void pump_save(void)
{
    struct con *c = &cons[1];
    uint64_t size;

    if (!c->sc || save_pipe[0] < 0)
        return;
    con_flush_out(c);
    size = save_size();
    if (size < save_off)
        save_off = 0; /* truncated by the next save's open */
    while (c->olen == 0 && save_off < size) {
        ssize_t n = pread(save_pipe[0], c->obuf, sizeof(c->obuf),
                          (off_t)save_off);
        if (n <= 0)
            break;
        save_off += (uint64_t)n;
        c->olen = (size_t)n;
        c->ooff = 0;
        con_flush_out(c);
    }
    if (save_rewind && c->olen == 0 && save_off == size) {
        /* The stream is all in the ring: the next one starts at 0. */
        if (ftruncate(save_pipe[0], 0) < 0)
            fprintf(stderr, "sim-stubdom: truncating console 1: %s\n",
                    strerror(errno));
        lseek(save_pipe[1], 0, SEEK_SET);
        save_off = 0;
        save_rewind = false;
    }
}

/* The library's stream-end request on console 1. */
static void answer_stream_end(void)
{
    char p[96], *v, val[64];
    unsigned len;
    uint64_t pending;

    if (!cons[1].sc)
        return;
    snprintf(p, sizeof(p), "device/console/1/stream-end-request");
    v = xs_read(xsh, XBT_NULL, p, &len);
    if (!v)
        return;
    if (strcmp(v, last_request)) {
        snprintf(last_request, sizeof(last_request), "%s", v);
        /* QEMU's command returned: the file holds the whole stream. */
        pending = save_size() > save_off ? save_size() - save_off : 0;
        save_rewind = true;
        snprintf(val, sizeof(val), "%s %llu", v,
                 (unsigned long long)(cons[1].total_out +
                                      (cons[1].olen - cons[1].ooff) +
                                      pending));
        if (getenv("SIM_STUBDOM_DEBUG"))
            fprintf(stderr, "stream-end %s (off %llu size %llu)\n", val,
                    (unsigned long long)save_off,
                    (unsigned long long)save_size());
        if (!xs_write(xsh, XBT_NULL, "device/console/1/stream-end", val,
                      strlen(val)))
            fprintf(stderr, "sim-stubdom: writing stream-end failed\n");
    }
    free(v);
}

/* The restore stream ends when the backend closed console 2 and everything
 * it gave was read and written to QEMU. */
static void maybe_end_restore(void)
{
    struct con *c = &cons[2];

    if (restore_pipe[1] < 0 || c->ioff != c->ilen)
        return;
    if (backend_state(2) < 5)
        return;
    con_pump_in(c);
    if (c->ioff != c->ilen)
        return;
    {
        char probe;
        if (simcons_read(c->sc, &probe, 0) != 0)
            return;
    }
    close(restore_pipe[1]);
    restore_pipe[1] = -1;
    c->dst = -1;
}

/* What the consoles wait for: their event channels, a source with room
 * in the ring, a destination with bytes to take.  Returns the count. */
static int cons_pollfds(struct pollfd *p)
{
    int n = 0;

    for (unsigned i = 0; i < NCONS; i++) {
        struct con *c = &cons[i];
        if (!c->sc)
            continue;
        p[n++] = (struct pollfd){simcons_fd(c->sc), POLLIN, 0};
        if (c->src >= 0 && !c->src_eof && c->olen == 0)
            p[n++] = (struct pollfd){c->src, POLLIN, 0};
        if (c->dst >= 0 && c->ioff < c->ilen)
            p[n++] = (struct pollfd){c->dst, POLLOUT, 0};
    }
    return n;
}

static void cons_drain_notifications(void)
{
    char b[64];

    for (unsigned i = 0; i < NCONS; i++)
        if (cons[i].sc)
            while (recv(simcons_fd(cons[i].sc), b, sizeof(b), MSG_DONTWAIT) >
                   0)
                ;
}

/* One round of every console, then sleep at most ms for work. */
static void pump_for(int ms)
{
    struct pollfd p[2 * NCONS + 2];
    int n;

    if (!served) {
        if (ms > 0)
            usleep((useconds_t)ms * 1000);
        return;
    }
    for (unsigned i = 0; i < NCONS; i++) {
        con_pump_out(&cons[i]);
        con_pump_in(&cons[i]);
    }
    answer_stream_end();
    pump_save();
    maybe_end_restore();
    n = cons_pollfds(p);
    /* Requests and backend states come through xenstore: look often. */
    if (poll(p, (nfds_t)n, ms < 20 ? ms : 20) > 0)
        cons_drain_notifications();
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int open_con(unsigned n, bool publish)
{
    struct con *c = &cons[n];

    c->src = c->dst = -1;
    if (simcons_open(&c->sc, sim_dir, self_domid, n) < 0) {
        fprintf(stderr, "sim-stubdom %u: console %u: %s\n", self_domid, n,
                strerror(errno));
        c->sc = NULL;
        return -1;
    }
    if (publish && simcons_publish(c->sc, xsh) < 0) {
        fprintf(stderr, "sim-stubdom %u: publishing console %u: %s\n",
                self_domid, n, strerror(errno));
        return -1;
    }
    return 0;
}

/* Console n's frontend key, or NULL. */
static char *con_key(unsigned n, const char *key)
{
    char p[96];
    unsigned len;

    if (n == 0)
        snprintf(p, sizeof(p), "console/%s", key);
    else
        snprintf(p, sizeof(p), "device/console/%u/%s", n, key);
    return xs_read(xsh, XBT_NULL, p, &len);
}

/* Consoles 0, 1 and (restoring) 2 as a frontend, before QEMU starts. */
static void setup_consoles(void)
{
    char *type = con_key(0, "type");

    served = type && !strcmp(type, "libstubdm");
    free(type);
    if (!served)
        return;
    /* Console 0: ring-ref and port are the toolstack's (the builder's). */
    if (open_con(0, false) < 0) {
        served = false;
        return;
    }
    if (pipe2(qemu_out, O_CLOEXEC) == 0) {
        set_nonblock(qemu_out[0]);
        cons[0].src = qemu_out[0];
    }
    if (open_con(1, true) == 0) {
        char self[64];
        xs_write(xsh, XBT_NULL, "device/console/1/feature-stream-end", "1", 1);
        /* A file, not a pipe: QEMU 7.2 opens /dev/fdset/1 with O_TRUNC and
         * ftruncate()s the fd, which fails (EINVAL) on a pipe or tty.  The
         * write end QEMU gets must be O_WRONLY (add-fd matches the access
         * mode), a second open of the same memfd. */
        save_pipe[0] = memfd_create("sim-stubdom-console1", MFD_CLOEXEC);
        snprintf(self, sizeof(self), "/proc/self/fd/%d", save_pipe[0]);
        if (save_pipe[0] >= 0)
            save_pipe[1] = open(self, O_WRONLY | O_CLOEXEC);
    }
    char *o2 = con_key(2, "output");
    if (o2 && strcmp(o2, "null") && open_con(2, true) == 0 &&
        pipe2(restore_pipe, O_CLOEXEC) == 0) {
        set_nonblock(restore_pipe[1]);
        cons[2].dst = restore_pipe[1];
    }
    free(o2);
}

/* -serial /dev/hvcN with the library's backend: a pty pumped to the ring. */
static char *serial_pty(unsigned n)
{
    struct termios t;
    char *name;
    int m;

    if (!served || n < 3 || n >= NCONS || cons[n].sc)
        return NULL;
    m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (m < 0 || grantpt(m) || unlockpt(m) || !(name = ptsname(m))) {
        if (m >= 0)
            close(m);
        return NULL;
    }
    if (open_con(n, true) < 0) {
        close(m);
        return NULL;
    }
    /* Raw, as the Qubes kernel sets hvc consoles: binary-clean. */
    int sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (sl >= 0) {
        if (tcgetattr(sl, &t) == 0) {
            cfmakeraw(&t);
            tcsetattr(sl, TCSANOW, &t);
        }
        /* kept open: the master would read EIO until QEMU opens it */
    }
    cons[n].src = cons[n].dst = m;
    return strdup(name);
}

/* The log line into console 0's ring: wait a little for room (the backend
 * consumes it), then drop rather than hang the stubdomain. */
static void log_to_ring(const char *line)
{
    struct con *c = &cons[0];
    size_t len = strlen(line), off = 0;
    int64_t waited = 0;

    while (off < len && waited < 200) {
        long n = simcons_write(c->sc, line + off, len - off);
        if (n < 0)
            return;
        off += (size_t)n;
        c->total_out += (uint64_t)n;
        if (off < len) {
            simcons_wait(c->sc, 10);
            waited += 10;
        }
    }
}

/* Give the save pipe's write end to QEMU: add-fd, fdset 1 (SCM_RIGHTS). */
static int add_fd(int mon)
{
    static const char cmd[] = "{\"execute\":\"add-fd\",\"arguments\":{\"fdset-"
                              "id\":1},\"id\":42}\r\n";
    union fdpass_buf cbuf;
    struct iovec iov = {(void *)cmd, sizeof(cmd) - 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

    fdpass_attach(&m, &cbuf, save_pipe[1]);
    return sendmsg(mon, &m, MSG_NOSIGNAL) == (ssize_t)(sizeof(cmd) - 1) ? 0
                                                                        : -1;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    char msg[1024];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Once console 0 is known, it is the log (as on a real stubdomain,
     * where /dev/hvc0 is all there is); stderr before that. */
    if (served && cons[0].sc) {
        char line[1100];
        snprintf(line, sizeof(line), "sim-stubdom %u: %s\n", self_domid, msg);
        log_to_ring(line);
        return;
    }
    if (!conlog)
        fprintf(stderr, "sim-stubdom %u: %s\n", self_domid, msg);
    if (conlog) {
        fprintf(conlog, "sim-stubdom %u: %s\n", self_domid, msg);
        fflush(conlog);
    }
}

static void maybe_die(enum step at, const char *name)
{
    if (opt.die_at != at)
        return;
    say("dying at %s, as asked", name);
    if (opt.die_exit >= 0)
        exit(opt.die_exit);
    signal(opt.die_signal, SIG_DFL);
    raise(opt.die_signal);
    _exit(128 + opt.die_signal);
}

static char *xs_get(struct xs_handle *xs, const char *path)
{
    unsigned len;
    char *v = xs_read(xs, XBT_NULL, path, &len);
    return v;
}

/* ---- argv mapping ------------------------------------------------------- */

struct argv {
    char **v;
    size_t n, cap;
};

static void add(struct argv *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->v = realloc(a->v, a->cap * sizeof(char *));
        if (!a->v)
            abort();
    }
    a->v[a->n++] = strdup(s);
    a->v[a->n] = NULL;
}

static void addf(struct argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void addf(struct argv *a, const char *fmt, ...)
{
    char s[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    add(a, s);
}

/* Linux's xvd numbering: xvda = 51712, 16 minors each; beyond xvdp the
 * extended scheme (1 << 28 | index << 8). */
static unsigned vbd_devid(unsigned idx)
{
    return idx < 16 ? (202u << 8) | (idx << 4) : (1u << 28) | (idx << 8);
}

/* The image behind /dev/xvdX: the vbd backend's params. */
static char *disk_image(struct xs_handle *xs, const char *dev)
{
    char p[256], *be, *params;

    if (strncmp(dev, "/dev/xvd", 8) || dev[8] < 'a' || dev[8] > 'z' || dev[9])
        return NULL;
    snprintf(p, sizeof(p), "device/vbd/%u/backend",
             vbd_devid((unsigned)(dev[8] - 'a')));
    be = xs_get(xs, p);
    if (!be)
        return NULL;
    snprintf(p, sizeof(p), "%s/params", be);
    free(be);
    params = xs_get(xs, p);
    if (params && !*params) {
        free(params);
        return NULL;
    }
    return params;
}

static bool has_opt(const char *s, const char *key)
{
    return strstr(s, key) != NULL;
}

/* -drive file=/dev/xvdX,... -> the backend's image, or dropped. */
static bool map_drive(struct xs_handle *xs, struct argv *out, const char *spec)
{
    const char *f = strstr(spec, "file=");
    char dev[16] = "", *img;
    size_t i;

    if (!f)
        return false;
    f += 5;
    for (i = 0; i < sizeof(dev) - 1 && f[i] && f[i] != ','; i++)
        dev[i] = f[i];
    dev[i] = '\0';
    if (strncmp(dev, "/dev/xvd", 8))
        return false;
    img = disk_image(xs, dev);
    if (!img) {
        say("dropping -drive %s (no image behind %s)", spec, dev);
        return true;
    }
    /* Rebuild the spec with the image, keeping the other options. */
    char *rest = strdup(f + i);
    size_t pre = (size_t)(f - spec);
    char *spec2 = malloc(pre + strlen(img) + strlen(rest) + 1);
    if (!rest || !spec2)
        abort();
    memcpy(spec2, spec, pre);
    strcpy(spec2 + pre, img);
    strcat(spec2, rest);
    add(out, "-drive");
    add(out, spec2);
    say("-drive: %s is %s", dev, img);
    free(spec2);
    free(rest);
    free(img);
    return true;
}

static void map_args(struct xs_handle *xs, char **in, size_t n,
                     struct argv *out, const char *qmp_sock)
{
    bool have_machine = false, pc = false;

    add(out, opt.qemu);
    for (size_t i = 0; i < n; i++) {
        const char *a = in[i];
        const char *next = i + 1 < n ? in[i + 1] : NULL;

        /* Xen-only options, with and without an argument. */
        if (!strcmp(a, "-xen-domid") || !strcmp(a, "-pidfile") ||
            !strcmp(a, "-runas") || !strcmp(a, "-sandbox") ||
            !strcmp(a, "-qmp") || !strcmp(a, "-monitor") ||
            !strcmp(a, "-netdev") || !strcmp(a, "-net")) {
            i += next != NULL;
            continue;
        }
        if (!strcmp(a, "-xen-attach") || !strcmp(a, "-xen-domid-restrict") ||
            !strcmp(a, "-daemonize"))
            continue;
        if ((!strcmp(a, "-machine") || !strcmp(a, "-M")) && next) {
            have_machine = true;
            if (!strncmp(next, "xenfv", 5) || !strncmp(next, "xenpv", 5) ||
                has_opt(next, "accel=xen")) {
                add(out, "-machine");
                add(out, "pc");
                add(out, "-accel");
                add(out, "tcg");
                pc = true;
            } else {
                add(out, a);
                add(out, next);
                pc = pc || !strncmp(next, "pc", 2);
            }
            i++;
            continue;
        }
        if (!strcmp(a, "-accel") && next) {
            add(out, "-accel");
            add(out, strcmp(next, "xen") ? next : "tcg");
            i++;
            continue;
        }
        if (!strcmp(a, "-device") && next &&
            (!strncmp(next, "xen-", 4) || has_opt(next, "netdev="))) {
            i++;
            continue;
        }
        if (!strcmp(a, "-drive") && next) {
            if (!map_drive(xs, out, next)) {
                add(out, a);
                add(out, next);
            }
            i++;
            continue;
        }
        if (!strcmp(a, "-incoming") && next) {
            /* libxl's placeholder, replaced as the Qubes init does */
            if (!strcmp(next, "$STUBDOM_RESTORE_INCOMING_ARG")) {
                if (restoring()) {
                    addf(out, "-incoming");
                    addf(out, "fd:%d", RESTORE_FD);
                    say("-incoming fd:%d (console 2)", RESTORE_FD);
                } else {
                    say("dropping -incoming %s: no console 2", next);
                }
            } else {
                add(out, a);
                add(out, next);
            }
            i++;
            continue;
        }
        if (!strcmp(a, "-serial") && next && !strncmp(next, "/dev/hvc", 8) &&
            served) {
            char *pty = serial_pty((unsigned)strtoul(next + 8, NULL, 10));
            if (pty) {
                add(out, "-serial");
                add(out, pty);
                say("-serial %s is %s, pumped to console %s", next, pty,
                    next + 8);
                free(pty);
            } else {
                say("dropping -serial %s (no console)", next);
            }
            i++;
            continue;
        }
        if (!strcmp(a, "-serial") && next && !strncmp(next, "/dev/hvc", 8)) {
            char p[64], *o;
            snprintf(p, sizeof(p), "device/console/%s/output", next + 8);
            o = xs_get(xs, p);
            if (o && *o) {
                add(out, "-serial");
                add(out, o);
                say("-serial %s is %s", next, o);
            } else {
                say("dropping -serial %s (console has no output)", next);
            }
            free(o);
            i++;
            continue;
        }
        add(out, a);
    }
    (void)have_machine;
    if (pc) {
        /* Device state that saves and loads under TCG (see the top). */
        add(out, "-global");
        add(out, "apic.vapic=off");
        if (restoring()) {
            add(out, "-global");
            add(out, "migration.send-configuration=off");
        }
    }
    addf(out, "-qmp");
    addf(out, "unix:%s,server=on,wait=off", qmp_sock);
    addf(out, "-chardev");
    addf(out, "socket,id=stubdm-private,fd=%d", MONITOR_FD);
    addf(out, "-mon");
    addf(out, "chardev=stubdm-private,mode=control");
}

/* ---- a tiny QMP client for the private monitor -------------------------- */

/* How long one exchange on the private monitor may take: bounds only a
 * QEMU that is alive and stuck (a dead one closes the monitor), so it is
 * generous for a machine starting fifty QEMUs at once. */
#define QEMU_STEP_MS 30000

/* Read until a line contains needle (or a "return"/"error"); 0 if found. */
static int read_until(int fd, char *buf, size_t cap, const char *needle,
                      int ms)
{
    size_t len = 0;
    struct pollfd p = {fd, POLLIN, 0};

    buf[0] = '\0';
    while (len + 1 < cap) {
        if (poll(&p, 1, ms) <= 0)
            return -1;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, needle))
            return 0;
    }
    return -1;
}

/* In QEMU's child: its private monitor and restore stream at their fixed
 * numbers, whatever numbers they have here (first moved out of the way,
 * close-on-exec; dup2 clears that flag on the copies QEMU keeps). */
static void qemu_child_fds(void)
{
    int mon = fcntl(monitor_pair[1], F_DUPFD_CLOEXEC, 10);
    int restore = restore_pipe[0] >= 0
                      ? fcntl(restore_pipe[0], F_DUPFD_CLOEXEC, 10)
                      : -1;

    if (restore >= 0)
        dup2(restore, RESTORE_FD);
    dup2(mon, MONITOR_FD);
}

/* Whether QEMU has exited, given a second to be reaped after closing its
 * monitor; its status is kept for exit_like. */
static bool qemu_exited(void)
{
    for (int waited = 0; qemu_pid > 0 && waited <= 1000; waited += 20) {
        int st;
        if (waitpid(qemu_pid, &st, WNOHANG) == qemu_pid) {
            qemu_status = st;
            qemu_pid = 0;
            return true;
        }
        pump_for(20);
    }
    return false;
}

static int qemu_running(void)
{
    char buf[8192];
    int fd = monitor_pair[0], rc = -1;

    monitor_pair[0] = -1;
    static const char caps[] = "{\"execute\":\"qmp_capabilities\"}\n";
    static const char qs[] = "{\"execute\":\"query-status\"}\n";
    if (read_until(fd, buf, sizeof(buf), "\"QMP\"", QEMU_STEP_MS))
        goto out;
    if (write(fd, caps, sizeof(caps) - 1) < 0 ||
        read_until(fd, buf, sizeof(buf), "\"return\"", QEMU_STEP_MS))
        goto out;
    if (save_pipe[1] >= 0) {
        if (add_fd(fd) < 0 ||
            read_until(fd, buf, sizeof(buf), "\"id\": 42", QEMU_STEP_MS) ||
            !strstr(buf, "\"return\"")) {
            say("add-fd (fdset 1, console 1) failed: %s", buf);
            goto out;
        }
        /* Kept: its file offset is QEMU's, rewound after each stream. */
        say("console 1 given to QEMU as fdset 1 (add-fd)");
        /* QEMU drops unused fdsets when no QMP monitor is connected:
         * stay connected for the stubdomain's lifetime. */
        kept_monitor = fd;
    }
    /* Restoring: incoming can take a while; QEMU runs when it is loaded. */
    for (int tries = 0; tries < (restoring() ? 600 : 100); tries++) {
        if (write(fd, qs, sizeof(qs) - 1) < 0 ||
            read_until(fd, buf, sizeof(buf), "\"return\"", QEMU_STEP_MS))
            goto out;
        if (strstr(buf, "\"running\": true") ||
            strstr(buf, "\"running\":true")) {
            rc = 0;
            goto out;
        }
        pump_for(50);
    }
out:
    if (fd != kept_monitor)
        close(fd);
    if (rc && qemu_exited()) {
        say("QEMU exited before it was running");
        return -2;
    }
    return rc;
}

/* ---- --no-qemu: answer QMP ourselves ------------------------------------ */

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        close(fd);
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Copy the JSON value of "id" (number or simple string) into out. */
static void extract_id(const char *msg, char *out, size_t cap)
{
    const char *p = NULL, *q = msg;
    size_t i = 0;

    /* The command's id comes after its arguments (which may have an
     * "id" of their own: device_add's). */
    while ((q = strstr(q, "\"id\"")))
        p = q++;
    out[0] = '\0';
    if (!p)
        return;
    p = strchr(p + 4, ':');
    if (!p)
        return;
    p++;
    while (*p == ' ')
        p++;
    if (*p == '"') {
        out[i++] = *p++;
        while (*p && *p != '"' && i + 2 < cap)
            out[i++] = *p++;
        out[i++] = '"';
    } else {
        while (*p && strchr("-0123456789", *p) && i + 1 < cap)
            out[i++] = *p++;
    }
    out[i] = '\0';
}

/* Console 0 load for bench/bench_stubdmd: x-sim-console-write {"bytes":
 * N} puts N bytes of 64-byte lines into console 0's ring after its answer,
 * waiting for room (never dropped; 60 s at most); x-sim-console-mark
 * {"mark": "WORD"} one line "sim-mark WORD <CLOCK_MONOTONIC ns>" before it
 * (a line's latency to the log). */
static void ring_write_all(const char *buf, size_t len)
{
    size_t off = 0;
    int waited = 0;

    while (served && cons[0].sc && off < len && waited < 60000) {
        long n = simcons_write(cons[0].sc, buf + off, len - off);
        if (n < 0)
            return;
        off += (size_t)n;
        cons[0].total_out += (uint64_t)n;
        int w = off < len ? simcons_wait(cons[0].sc, 100) : 1;
        if (w < 0)
            return;
        waited += w ? 0 : 100;
    }
}

static const char *console_mark(const char *msg)
{
    const char *m = strstr(msg, "\"mark\":");
    static char line[128];
    struct timespec ts;

    if (m) {
        char word[32] = "";
        sscanf(m + 7, " \"%31[A-Za-z0-9_-]\"", word);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int n = snprintf(line, sizeof(line), "sim-mark %s %lld\n", word,
                         (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        ring_write_all(line, (size_t)n);
    }
    return "\"return\": {}";
}

static void console_flood(const char *msg)
{
    const char *b = strstr(msg, "\"bytes\":");
    static char line[4096];
    unsigned long long total = b ? strtoull(b + 8, NULL, 10) : 0, seq = 0;

    for (unsigned long long done = 0; done < total && total < (1ULL << 32);) {
        size_t len = 0;
        while (len + 65 <= sizeof(line) && done + len < total)
            len += (size_t)snprintf(line + len, 65, "sim-flood %012llu %40s\n",
                                    seq++, "x");
        if (done + len > total)
            len = (size_t)(total - done);
        ring_write_all(line, len);
        done += len;
    }
}

/* ---- --no-qemu: simulated PCI passthrough --------------------------------
 * A QEMU without Xen has no xen-pci-passthrough; the stand-in plays its
 * QMP side (docs/pci.md): device_add of that driver takes the device at
 * its addr or the next free slot from 3, query-pci lists them, device_del
 * drops one and sends DEVICE_DELETED. */
#define SIM_PCI_MAX 16
static struct {
    char qid[40];
    unsigned slot;
} sim_pci[SIM_PCI_MAX];
static size_t n_sim_pci;
static char pci_body[2048];

/* The string value of "key" in the arguments, into out ("" if none). */
static void arg_string(const char *msg, const char *key, char *out, size_t cap)
{
    char pat[40];
    const char *a = strstr(msg, "\"arguments\""), *p;
    size_t i = 0;

    out[0] = '\0';
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    if (!a || !(p = strstr(a, pat)))
        return;
    for (p += strlen(pat); *p && *p != '"' && i + 1 < cap; p++)
        out[i++] = *p;
    out[i] = '\0';
}

static bool slot_used(unsigned slot)
{
    for (size_t i = 0; i < n_sim_pci; i++)
        if (sim_pci[i].slot == slot)
            return true;
    return false;
}

static const char *pci_add(const char *msg)
{
    char qid[40], addr[16];
    unsigned slot = 3;

    arg_string(msg, "id", qid, sizeof(qid));
    arg_string(msg, "addr", addr, sizeof(addr));
    if (!strstr(msg, "\"xen-pci-passthrough\"") || !qid[0] ||
        n_sim_pci == SIM_PCI_MAX)
        return "\"error\": {\"class\": \"GenericError\", \"desc\": "
               "\"sim-stubdom: only xen-pci-passthrough with an id\"}";
    if (addr[0])
        slot = (unsigned)strtoul(addr, NULL, 16);
    else
        while (slot_used(slot))
            slot++;
    if (slot_used(slot) || slot > 31)
        return "\"error\": {\"class\": \"GenericError\", \"desc\": "
               "\"sim-stubdom: PCI slot in use\"}";
    snprintf(sim_pci[n_sim_pci].qid, sizeof(sim_pci[0].qid), "%s", qid);
    sim_pci[n_sim_pci++].slot = slot;
    return "\"return\": {}";
}

static const char *pci_query(void)
{
    size_t len = (size_t)snprintf(pci_body, sizeof(pci_body),
                                  "\"return\": [{\"bus\": 0, \"devices\": [");

    for (size_t i = 0; i < n_sim_pci && len < sizeof(pci_body); i++)
        len += (size_t)snprintf(pci_body + len, sizeof(pci_body) - len,
                                "%s{\"bus\": 0, \"slot\": %u, \"function\": "
                                "0, \"qdev_id\": \"%s\"}",
                                i ? ", " : "", sim_pci[i].slot,
                                sim_pci[i].qid);
    if (len < sizeof(pci_body))
        snprintf(pci_body + len, sizeof(pci_body) - len, "]}]");
    return pci_body;
}

/* Drop the device; *gone its id for the event ("" if it was unknown). */
static const char *pci_del(const char *msg, char *gone, size_t cap)
{
    char qid[40];

    arg_string(msg, "id", qid, sizeof(qid));
    gone[0] = '\0';
    for (size_t i = 0; i < n_sim_pci; i++) {
        if (strcmp(sim_pci[i].qid, qid))
            continue;
        snprintf(gone, cap, "%s", qid);
        sim_pci[i] = sim_pci[--n_sim_pci];
        return "\"return\": {}";
    }
    snprintf(pci_body, sizeof(pci_body),
             "\"error\": {\"class\": \"GenericError\", \"desc\": "
             "\"Device '%.40s' not found\"}",
             qid);
    return pci_body;
}

static void answer(int fd, const char *msg)
{
    char id[64], reply[2600], gone[40] = "";
    const char *body;

    extract_id(msg, id, sizeof(id));
    if (strstr(msg, "\"x-sim-console-write\""))
        body = "\"return\": {}";
    else if (strstr(msg, "\"x-sim-console-mark\""))
        body = console_mark(msg);
    else if (strstr(msg, "\"qmp_capabilities\"") || strstr(msg, "\"cont\"") ||
             strstr(msg, "\"stop\""))
        body = "\"return\": {}";
    else if (strstr(msg, "\"query-status\""))
        body = "\"return\": {\"status\": \"running\", \"singlestep\": false, "
               "\"running\": true}";
    else if (strstr(msg, "\"device_add\""))
        body = pci_add(msg);
    else if (strstr(msg, "\"query-pci\""))
        body = pci_query();
    else if (strstr(msg, "\"device_del\""))
        body = pci_del(msg, gone, sizeof(gone));
    else if (strstr(msg, "\"query-version\""))
        body = "\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
               "\"major\": 7}, "
               "\"package\": \"sim-stubdom --no-qemu\"}";
    else
        body = "\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
               "\"sim-stubdom --no-qemu knows few commands\"}";
    int n = snprintf(reply, sizeof(reply), "{%s%s%s}\r\n", body,
                     id[0] ? ", \"id\": " : "", id);
    if (write(fd, reply, (size_t)n) < 0)
        return;
    if (gone[0]) {
        n = snprintf(reply, sizeof(reply),
                     "{\"event\": \"DEVICE_DELETED\", \"data\": "
                     "{\"device\": \"%s\", \"path\": "
                     "\"/machine/peripheral/%s\"}, \"timestamp\": "
                     "{\"seconds\": 0, \"microseconds\": 0}}\r\n",
                     gone, gone);
        if (write(fd, reply, (size_t)n) < 0)
            return;
    }
    if (strstr(msg, "\"x-sim-console-write\""))
        console_flood(msg);
}

/* ---- --no-qemu: serials echoed, console lines on demand ----------------- */

/*
 * Without QEMU nothing is behind -serial /dev/hvcN: console N's input is
 * echoed to its output instead (a pipe from the ring's "in" back to its
 * "out"), so a test sees what it typed come back.  And the FIFO
 * <sim dir>/console/<self>.say takes lines "N TEXT": TEXT and a newline
 * go out on console N (0: the log) as if QEMU had written them, so tests
 * make console output on demand, also while nobody serves the console
 * (it waits in the ring).
 */
static int inject[NCONS]; /* write end feeding console n's output, or -1 */
static int say_fd = -1;

static void noqemu_serials(char **args, size_t nargs)
{
    for (unsigned n = 0; n < NCONS; n++)
        inject[n] = -1;
    if (!served)
        return;
    if (qemu_out[1] >= 0) {
        set_nonblock(qemu_out[1]);
        inject[0] = qemu_out[1];
    }
    for (size_t i = 0; i + 1 < nargs; i++) {
        const char *dev = args[i + 1];
        unsigned n;
        int p[2];

        if (strcmp(args[i], "-serial") || strncmp(dev, "/dev/hvc", 8))
            continue;
        n = (unsigned)strtoul(dev + 8, NULL, 10);
        if (n < 3 || n >= NCONS || cons[n].sc || open_con(n, true) < 0 ||
            pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
            say("dropping -serial %s (no console)", dev);
            continue;
        }
        /* Room for a test's burst of lines: what does not fit is dropped. */
        fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        cons[n].dst = inject[n] = p[1];
        cons[n].src = p[0];
        say("-serial %s: console %u echoes its input (no QEMU)", dev, n);
    }
}

static void open_say_fifo(void)
{
    char p[300];

    if (!served)
        return;
    snprintf(p, sizeof(p), "%s/console/%u.say", sim_dir, self_domid);
    unlink(p);
    /* O_RDWR: never EOF while no writer has it open. */
    if (mkfifo(p, 0600) == 0)
        say_fd = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (say_fd < 0)
        say("cannot make %s: %s", p, strerror(errno));
}

/* "N TEXT\n" lines from the FIFO into console N's output. */
static void read_say(void)
{
    static char buf[4096];
    static size_t len;
    ssize_t r;

    while ((r = read(say_fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
        char *nl;
        len += (size_t)r;
        while ((nl = memchr(buf, '\n', len))) {
            size_t l = (size_t)(nl - buf) + 1;
            unsigned n;
            int off = 0;
            *nl = '\0';
            if (sscanf(buf, "%u %n", &n, &off) == 1 && off > 0 && n < NCONS &&
                inject[n] >= 0) {
                *nl = '\n';
                if (write(inject[n], buf + off, l - (size_t)off) < 0)
                    say("console %u: dropping a line: %s", n, strerror(errno));
            }
            memmove(buf, buf + l, len - l);
            len -= l;
        }
        if (len == sizeof(buf) - 1)
            len = 0; /* no newline in 4 KiB: garbage */
    }
}

static void serve_qmp(int lfd)
{
    static const char greeting[] =
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
        "\"major\": 7}, \"package\": \"sim-stubdom --no-qemu\"}, "
        "\"capabilities\": []}}\r\n";
    char buf[65536];
    size_t len = 0;
    int cfd = -1;

    while (!got_term) {
        if (got_usr1) {
            got_usr1 = 0;
            if (cfd >= 0) {
                say("QMP: closing the client's connection (SIGUSR1)");
                close(cfd);
                cfd = -1;
            }
        }
        struct pollfd p[2 * NCONS + 4];
        int np = 0;

        p[np++] = (struct pollfd){cfd >= 0 ? cfd : lfd, POLLIN, 0};
        if (say_fd >= 0)
            p[np++] = (struct pollfd){say_fd, POLLIN, 0};
        if (served) {
            for (unsigned i = 0; i < NCONS; i++) {
                con_pump_out(&cons[i]);
                con_pump_in(&cons[i]);
            }
            np += cons_pollfds(p + np);
        }
        /* No timeout: every console waits for an fd or a notification. */
        if (poll(p, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (served)
            cons_drain_notifications();
        if (say_fd >= 0 && p[1].revents)
            read_say();
        if (!p[0].revents)
            continue;
        if (cfd < 0) {
            cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            len = 0;
            if (cfd >= 0 && write(cfd, greeting, sizeof(greeting) - 1) < 0) {
                close(cfd);
                cfd = -1;
            }
            continue;
        }
        ssize_t n = read(cfd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            close(cfd);
            cfd = -1;
            continue;
        }
        len += (size_t)n;
        buf[len] = '\0';
        /* One command per line or per closing brace at depth 0. */
        for (;;) {
            int depth = 0;
            size_t end = 0;
            bool in_str = false;
            for (size_t i = 0; i < len; i++) {
                char ch = buf[i];
                if (in_str) {
                    if (ch == '\\')
                        i++;
                    else if (ch == '"')
                        in_str = false;
                } else if (ch == '"') {
                    in_str = true;
                } else if (ch == '{') {
                    depth++;
                } else if (ch == '}' && --depth == 0) {
                    end = i + 1;
                    break;
                }
            }
            if (!end)
                break;
            char save = buf[end];
            buf[end] = '\0';
            answer(cfd, buf);
            buf[end] = save;
            memmove(buf, buf + end, len - end);
            len -= end;
            buf[len] = '\0';
        }
        if (len >= sizeof(buf) - 1)
            len = 0; /* garbage: drop it */
    }
    if (cfd >= 0)
        close(cfd);
}

/* ---- main --------------------------------------------------------------- */

static void on_usr1(int sig)
{
    (void)sig;
    got_usr1 = 1;
}

static void on_term(int sig)
{
    (void)sig;
    got_term = 1;
    if (qemu_pid > 0)
        kill(qemu_pid, SIGTERM);
}

static enum step parse_step(const char *s)
{
    if (!strcmp(s, "before-argv"))
        return STEP_BEFORE_ARGV;
    if (!strcmp(s, "after-argv"))
        return STEP_AFTER_ARGV;
    if (!strcmp(s, "before-running"))
        return STEP_BEFORE_RUNNING;
    if (!strcmp(s, "after-running"))
        return STEP_AFTER_RUNNING;
    fprintf(stderr, "sim-stubdom: unknown --die-at step '%s'\n", s);
    exit(2);
}

static void usage(FILE *f)
{
    fputs(
        "usage: stubdm-sim-stubdom [--die-at=before-argv|after-argv|"
        "before-running|after-running]\n"
        "         [--die-signal=N | --die-exit=N] [--no-running] [--no-qemu]\n"
        "         [--qemu=PATH]\n"
        "Run by the simulated host (sim-start) as a stubdomain; see\n"
        "docs/simulated-host.md.\n",
        f);
}

static void open_console_log(struct xs_handle *xs)
{
    char *out = xs_get(xs, "console/output");

    if (out && !strncmp(out, "file:", 5) && out[5]) {
        conlog = fopen(out + 5, "a");
        if (!conlog)
            say("cannot open console log %s: %s", out + 5, strerror(errno));
    }
    free(out);
}

static int write_node(struct xs_handle *xs, const char *path, const char *val)
{
    if (!xs_write(xs, XBT_NULL, path, val, strlen(val))) {
        say("writing %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Exit the way the device model did, so the host records the same. */
static void exit_like(int status)
{
    if (WIFSIGNALED(status)) {
        say("QEMU was killed by signal %d", WTERMSIG(status));
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
        _exit(128 + WTERMSIG(status));
    }
    say("QEMU exited with status %d", WEXITSTATUS(status));
    exit(WEXITSTATUS(status));
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"die-at", required_argument, NULL, 'd'},
        {"die-signal", required_argument, NULL, 's'},
        {"die-exit", required_argument, NULL, 'e'},
        {"no-running", no_argument, NULL, 'n'},
        {"no-qemu", no_argument, NULL, 'Q'},
        {"qemu", required_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("STUBDM_SIM_DOMID");
    const char *simdir = getenv("STUBDM_SIM_DIR");
    struct xs_handle *xs;
    stubdm_ctx *ctx = NULL;
    char **args = NULL, *v, path[256], qmp_sock[200];
    size_t nargs = 0;
    int o, rc;

    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (o) {
        case 'd':
            opt.die_at = parse_step(optarg);
            break;
        case 's':
            opt.die_signal = atoi(optarg);
            break;
        case 'e':
            opt.die_exit = atoi(optarg);
            break;
        case 'n':
            opt.no_running = true;
            break;
        case 'Q':
            opt.no_qemu = true;
            break;
        case 'q':
            opt.qemu = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!env || !simdir) {
        fprintf(stderr, "sim-stubdom: run me through the simulated host "
                        "(STUBDM_SIM_DOMID and STUBDM_SIM_DIR are unset)\n");
        return 2;
    }
    self_domid = (unsigned)strtoul(env, NULL, 10);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    if (opt.no_qemu) /* no restart flag: poll() must see EINTR */
        sigaction(SIGUSR1,
                  &(struct sigaction){.sa_handler = on_usr1, .sa_flags = 0},
                  NULL);
    signal(SIGPIPE, SIG_IGN);

    maybe_die(STEP_BEFORE_ARGV, "before-argv");
    xs = xs_open(0);
    if (!xs) {
        say("cannot reach xenstore: %s", strerror(errno));
        return 1;
    }
    xsh = xs;
    sim_dir = simdir;
    setup_consoles();
    if (!served)
        open_console_log(xs);
    /* 1-2: who am I serving, and where is its argv. */
    v = xs_get(xs, "target");
    if (!v) {
        say("reading target: %s", strerror(errno));
        return 1;
    }
    guest_domid = (unsigned)strtoul(v, NULL, 10);
    free(v);
    snprintf(path, sizeof(path), "/local/domain/%u/vm", guest_domid);
    char *vm = xs_get(xs, path);
    if (!vm) {
        say("reading %s: %s", path, strerror(errno));
        return 1;
    }
    /* 3: the argv, read as a real stubdomain reads it. */
    if (stubdm_ctx_new(&ctx))
        return 1;
    rc = stubdm_dm_argv_read(ctx, vm, STUBDM_DM_ARGV_DIRECTORY, &args, &nargs);
    if (rc == STUBDM_ENOENT)
        rc = stubdm_dm_argv_read(ctx, vm, STUBDM_DM_ARGV_MINIOS_DMARGS, &args,
                                 &nargs);
    if (rc) {
        say("reading the argv under %s: %s", vm, stubdm_ctx_errmsg(ctx));
        return 1;
    }
    say("guest %u, vm %s, %zu arguments", guest_domid, vm, nargs);
    free(vm);
    maybe_die(STEP_AFTER_ARGV, "after-argv");

    snprintf(path, sizeof(path), "%s/qmp-vchan", simdir);
    mkdir(path, 0700);
    snprintf(qmp_sock, sizeof(qmp_sock), "%s/qmp-vchan/%u.%u.sock", simdir,
             self_domid, guest_domid);
    unlink(qmp_sock);

    int lfd = -1;
    if (opt.no_qemu) {
        noqemu_serials(args, nargs);
        open_say_fifo();
        lfd = listen_unix(qmp_sock);
        if (lfd < 0) {
            say("cannot listen on %s: %s", qmp_sock, strerror(errno));
            return 1;
        }
    } else {
        struct argv q = {0};
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, monitor_pair)) {
            say("socketpair: %s", strerror(errno));
            return 1;
        }
        map_args(xs, args, nargs, &q, qmp_sock);
        {
            char line[4096] = "";
            for (size_t i = 0; i < q.n; i++) {
                strncat(line, q.v[i], sizeof(line) - strlen(line) - 2);
                strncat(line, " ", sizeof(line) - strlen(line) - 1);
            }
            say("starting %s", line);
        }
        qemu_pid = fork();
        if (qemu_pid < 0) {
            say("fork: %s", strerror(errno));
            return 1;
        }
        if (qemu_pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (conlog) {
                dup2(fileno(conlog), 2);
                dup2(fileno(conlog), 1);
            }
            if (qemu_out[1] >= 0) {
                dup2(qemu_out[1], 2);
                dup2(qemu_out[1], 1);
            }
            qemu_child_fds();
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            signal(SIGPIPE, SIG_DFL);
            execvp(q.v[0], q.v);
            fprintf(stderr, "sim-stubdom: cannot run %s: %s\n", q.v[0],
                    strerror(errno));
            _exit(127);
        }
        for (size_t i = 0; i < q.n; i++)
            free(q.v[i]);
        free(q.v);
        if (qemu_out[1] >= 0) {
            close(qemu_out[1]);
            qemu_out[1] = -1;
        }
        if (restore_pipe[0] >= 0) {
            close(restore_pipe[0]);
            restore_pipe[0] = -1;
        }
        close(monitor_pair[1]);
        monitor_pair[1] = -1;
    }
    stubdm_dm_argv_free(args);
    stubdm_ctx_free(ctx);

    maybe_die(STEP_BEFORE_RUNNING, "before-running");
    if (!opt.no_qemu) {
        rc = qemu_running();
        if (rc == -2)
            exit_like(qemu_status);
        if (rc) {
            say("QEMU never reported running");
            kill(qemu_pid, SIGKILL);
            return 1;
        }
    }
    /* 5: readiness, then the (simulated) vchan server's nodes. */
    if (!opt.no_running) {
        snprintf(path, sizeof(path), "device-model/%u/state", guest_domid);
        if (write_node(xs, path, "running"))
            goto fail;
        say("device model running");
    } else {
        say("not writing running (--no-running)");
    }
    snprintf(path, sizeof(path), "device-model/%u/qmp-vchan/ring-ref",
             guest_domid);
    if (write_node(xs, path, "8"))
        goto fail;
    snprintf(path, sizeof(path), "device-model/%u/qmp-vchan/event-channel",
             guest_domid);
    if (write_node(xs, path, "5"))
        goto fail;
    maybe_die(STEP_AFTER_RUNNING, "after-running");

    /* 6: live as long as the device model does. */
    if (opt.no_qemu) {
        serve_qmp(lfd);
        close(lfd);
        unlink(qmp_sock);
        say("terminated");
        return 0;
    }
    for (;;) {
        int st;
        pid_t p = waitpid(qemu_pid, &st, served ? WNOHANG : 0);
        if (p == 0) {
            pump_for(20);
            continue;
        }
        if (p == qemu_pid) {
            pump_for(0); /* QEMU's last words */
            unlink(qmp_sock);
            if (got_term && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM)
                return 0;
            exit_like(st);
        }
        if (p < 0 && errno != EINTR)
            return 1;
    }
fail:
    if (qemu_pid > 0)
        kill(qemu_pid, SIGKILL);
    return 1;
}
