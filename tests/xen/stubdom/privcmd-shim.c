/*
 * privcmd-shim.so: LD_PRELOAD for qemu-xen (and ioreq-probe) in the test
 * stubdomain.  Works around an interaction between Linux's restricted
 * privcmd and Xen 4.17's libxendevicemodel (docs/real-xen.md, "The ioreq
 * blocker"):
 *
 *   - Linux (6.1.0-56 here, "xen/privcmd: restrict usage in unprivileged
 *     domU") restricts every /dev/xen/privcmd file of a domU to the domid
 *     in xenstore "target", read when the module loads.  A restricted file
 *     refuses IOCTL_PRIVCMD_HYPERCALL and any IOCTL_PRIVCMD_DM_OP whose dom
 *     is not the target, with EPERM.
 *   - libxendevicemodel's open probes for IOCTL_PRIVCMD_DM_OP with
 *     dom = DOMID_INVALID, num = 0.  On a restricted file that is EPERM,
 *     so the library concludes "no DM_OP ioctl" and sends every dm_op
 *     through libxencall, i.e. IOCTL_PRIVCMD_HYPERCALL: EPERM again.
 *
 * The shim answers that one probe (DM_OP, dom DOMID_INVALID, num 0) with
 * success, so libxendevicemodel keeps the DM_OP ioctl, which the kernel
 * allows for the target.  Everything else goes to the real ioctl.
 *
 * Diagnostics (the shim is in every qemu-xen the test starts): on SIGSEGV,
 * SIGBUS, SIGILL, SIGFPE or SIGABRT it prints the faulting address, the
 * registers' instruction and stack pointers as "file+offset", and every
 * stack word that points into an executable mapping (a poor man's
 * backtrace: the binaries are stripped and there is no gdb in the
 * stubdomain) to stderr, as "XT-SHIM-CRASH" lines, then dies of the signal.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <ucontext.h>
#include <unistd.h>

/* From Linux include/uapi/xen/privcmd.h (not installed on every host). */
struct xt_privcmd_dm_op {
    uint16_t dom;
    uint16_t num;
    const void *ubufs;
};
#define XT_IOCTL_PRIVCMD_DM_OP                                                \
    _IOC(_IOC_NONE, 'P', 5, sizeof(struct xt_privcmd_dm_op))
#define XT_DOMID_INVALID 0x7FF4U

int ioctl(int fd, unsigned long req, ...)
{
    static int (*real)(int, unsigned long, ...);
    va_list ap;
    void *arg;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (req == XT_IOCTL_PRIVCMD_DM_OP && arg) {
        const struct xt_privcmd_dm_op *op = arg;
        if (op->dom == XT_DOMID_INVALID && op->num == 0)
            return 0;
    }
    if (!real)
        real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    return real(fd, req, arg);
}

/* ---- crash report ------------------------------------------------------ */
#define XT_MAXMAP 512
static struct xt_map {
    uintptr_t lo, hi, off;
    char exec;
    char file[96];
} xt_maps[XT_MAXMAP];
static int xt_nmaps;

/* Called in the handler: /proc/self/maps with read(2) and hand parsing. */
static void xt_load_maps(void)
{
    static char buf[65536];
    int fd = open("/proc/self/maps", O_RDONLY), n = 0, r;
    char *p, *e;

    xt_nmaps = 0;
    if (fd < 0)
        return;
    while (n < (int)sizeof(buf) - 1 &&
           (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
        n += r;
    close(fd);
    buf[n] = 0;
    for (p = buf; *p && xt_nmaps < XT_MAXMAP; p = e + 1) {
        struct xt_map *m = &xt_maps[xt_nmaps];
        char perms[8] = "", *f;
        unsigned long lo, hi, off;
        int last = 0;
        if (!(e = strchr(p, '\n'))) {
            e = p + strlen(p);
            last = 1;
        }
        *e = 0;
        if (sscanf(p, "%lx-%lx %7s %lx", &lo, &hi, perms, &off) != 4)
            break;
        f = strchr(p, '/');
        m->lo = lo;
        m->hi = hi;
        m->off = off;
        m->exec = perms[2] == 'x';
        snprintf(m->file, sizeof(m->file), "%s",
                 f ? f : (strchr(p, '[') ? strchr(p, '[') : "anon"));
        xt_nmaps++;
        if (last)
            break;
    }
}

static const struct xt_map *xt_find(uintptr_t a)
{
    for (int i = 0; i < xt_nmaps; i++)
        if (a >= xt_maps[i].lo && a < xt_maps[i].hi)
            return &xt_maps[i];
    return NULL;
}

static void xt_say(const char *what, uintptr_t a)
{
    char line[256];
    const struct xt_map *m = xt_find(a);
    int n = m ? snprintf(line, sizeof(line),
                         "XT-SHIM-CRASH %s 0x%lx = %s+0x%lx%s\n", what,
                         (unsigned long)a, m->file,
                         (unsigned long)(a - m->lo + m->off),
                         m->exec ? "" : " (not exec)")
              : snprintf(line, sizeof(line),
                         "XT-SHIM-CRASH %s 0x%lx (unmapped)\n", what,
                         (unsigned long)a);
    if (write(2, line, n) < 0) { /* nothing to do */
    }
}

static void xt_crash(int sig, siginfo_t *si, void *uc_)
{
    ucontext_t *uc = uc_;
    char line[160];
    int n;

    xt_load_maps();
    n = snprintf(line, sizeof(line),
                 "XT-SHIM-CRASH signal %d code %d addr %p pid %d\n", sig,
                 si->si_code, si->si_addr, (int)getpid());
    if (write(2, line, n) < 0) { /* nothing to do */
    }
#if defined(__x86_64__)
    {
        greg_t *g = uc->uc_mcontext.gregs;
        uintptr_t *sp = (uintptr_t *)g[REG_RSP];
        int found = 0;
        xt_say("rip", g[REG_RIP]);
        xt_say("rsp", g[REG_RSP]);
        n = snprintf(
            line, sizeof(line),
            "XT-SHIM-CRASH rdi 0x%llx rsi 0x%llx rdx 0x%llx rax 0x%llx\n",
            (unsigned long long)g[REG_RDI], (unsigned long long)g[REG_RSI],
            (unsigned long long)g[REG_RDX], (unsigned long long)g[REG_RAX]);
        if (write(2, line, n) < 0) { /* nothing to do */
        }
        for (int i = 0; i < 2048 && found < 40; i++) {
            const struct xt_map *m = xt_find((uintptr_t)(sp + i));
            if (!m)
                break;
            m = xt_find(sp[i]);
            if (m && m->exec) {
                snprintf(line, sizeof(line), "stack[%d]", i);
                xt_say(line, sp[i]);
                found++;
            }
        }
    }
#endif
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void xt_shim_init(void)
{
    static char altstack[65536];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
    struct sigaction sa;
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = xt_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}
