/*
 * The host's sysfs for PCI passthrough: whether a device is pciback's,
 * its resources and irq, and pciback's knobs.  What sysfs says is read
 * once, bounded and through one strict parser each (a file under a
 * test's or a broken kernel's control is no reason to grant a range).
 */
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/num.h"
#include "core/peer.h"
#include "pci/pci.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD "pci"
#define PATH_LEN 400
/* Linux's resource file: 17 lines of 3 x 18 + 3 bytes. */
#define RESOURCE_MAX 4096
#define IRQ_MAX 16
/* Linux's IORESOURCE_IO. */
#define IORESOURCE_IO 0x100u
/* x86's I/O port space. */
#define IOPORT_LIMIT 0x10000u

static const char *root(stubdm_ctx *ctx)
{
    return ctx->sysfs_root[0] ? ctx->sysfs_root : "/sys";
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return false;
    return true;
}

int stubdm_ctx_set_sysfs_root(stubdm_ctx *ctx, const char *dir)
{
    size_t len;

    if (!ctx)
        return STUBDM_EINVAL;
    if (!dir) {
        ctx->sysfs_root[0] = '\0';
        return 0;
    }
    len = strlen(dir);
    if (len < 2 || len > 200 || dir[0] != '/' || dir[len - 1] == '/' ||
        !printable(dir))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "sysfs root: not an absolute path of at most "
                            "200 printable bytes");
    memcpy(ctx->sysfs_root, dir, len + 1);
    return 0;
}

static void bdf_of(const stubdm_pci_addr *a, char bdf[STUBDM_PCI_ADDR_STRLEN])
{
    stubdm_pci_addr_format(a, bdf, STUBDM_PCI_ADDR_STRLEN);
}

/* ROOT/bus/pci/<rest>. */
static void path_of(stubdm_ctx *ctx, char *out, const char *fmt,
                    const char *bdf)
{
    char rest[96];

    snprintf(rest, sizeof(rest), fmt, bdf);
    snprintf(out, PATH_LEN, "%s/bus/pci/%s", root(ctx), rest);
}

/* The file's first max bytes; a longer file is refused (STUBDM_ELIMIT).
 * *len_out the bytes read, buf NUL-terminated (buf has max + 1). */
static int read_bounded(stubdm_ctx *ctx, const char *path, char *buf,
                        size_t max, size_t *len_out)
{
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return stubdm__fail(ctx,
                            errno == ENOENT ? STUBDM_ENOENT : STUBDM_EFAIL,
                            errno, "reading %s: %s", path, strerror(errno));
    for (;;) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            close(fd);
            return stubdm__fail(ctx, STUBDM_EFAIL, err, "reading %s: %s", path,
                                strerror(err));
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            close(fd);
            return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                                "%s: longer than %zu bytes", path, max);
        }
    }
    close(fd);
    buf[len] = '\0';
    *len_out = len;
    return 0;
}

/* One write of s to path (sysfs takes a write whole). */
static int write_once(const char *path, const char *s)
{
    size_t len = strlen(s);
    int fd = open(path, O_WRONLY | O_CLOEXEC), err;
    ssize_t n;

    if (fd < 0)
        return -1;
    do
        n = write(fd, s, len);
    while (n < 0 && errno == EINTR);
    err = errno;
    close(fd);
    errno = err;
    return n == (ssize_t)len ? 0 : -1;
}

/* ---- pciback ------------------------------------------------------------- */

/* The driver a device is bound to (the driver link's last component),
 * "" when none. */
static void driver_of(stubdm_ctx *ctx, const char *bdf, char *out,
                      size_t outlen)
{
    char path[PATH_LEN], link[PATH_LEN];
    const char *name;
    ssize_t n;

    out[0] = '\0';
    path_of(ctx, path, "devices/%s/driver", bdf);
    n = readlink(path, link, sizeof(link) - 1);
    if (n <= 0)
        return;
    link[n] = '\0';
    name = strrchr(link, '/');
    stubdm__printable_str(out, outlen, name ? name + 1 : link);
}

int stubdm__pci_sysfs_check(stubdm_ctx *ctx, const stubdm_pci_addr *a)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN], path[PATH_LEN], drv[64];
    struct stat st;

    bdf_of(a, bdf);
    path_of(ctx, path, "devices/%s", bdf);
    if (stat(path, &st) != 0)
        return stubdm__fail(ctx, STUBDM_ENOENT, errno,
                            "PCI device %s does not exist (no %s)", bdf, path);
    /* Bound to pciback: its directory has the device (libxl's test). */
    path_of(ctx, path, "drivers/pciback/%s", bdf);
    if (stat(path, &st) == 0)
        return 0;
    driver_of(ctx, bdf, drv, sizeof(drv));
    if (drv[0])
        return stubdm__fail(ctx, STUBDM_EPERM, 0,
                            "PCI device %s is bound to '%s', not pciback: "
                            "not assignable (xl pci-assignable-add %s)",
                            bdf, drv, bdf);
    return stubdm__fail(ctx, STUBDM_EPERM, 0,
                        "PCI device %s is bound to no driver, not pciback: "
                        "not assignable (xl pci-assignable-add %s)",
                        bdf, bdf);
}

int stubdm__pci_sysfs_reset(stubdm_ctx *ctx, const stubdm_pci_addr *a)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN], path[PATH_LEN];

    bdf_of(a, bdf);
    path_of(ctx, path, "drivers/pciback/do_flr", bdf);
    if (!write_once(path, bdf))
        return 0;
    if (errno != ENOENT)
        return stubdm__fail(ctx, STUBDM_EFAIL, errno,
                            "resetting PCI device %s (%s): %s", bdf, path,
                            strerror(errno));
    path_of(ctx, path, "devices/%s/reset", bdf);
    if (!write_once(path, "1"))
        return 0;
    if (errno != ENOENT)
        return stubdm__fail(ctx, STUBDM_EFAIL, errno,
                            "resetting PCI device %s (%s): %s", bdf, path,
                            strerror(errno));
    LOG_WARN(ctx, MOD,
             "PCI device %s has no reset (no do_flr, no reset "
             "file): attached without one",
             bdf);
    return 0;
}

static int pciback_write(stubdm_ctx *ctx, const char *knob,
                         const stubdm_pci_addr *a)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN], path[PATH_LEN];

    bdf_of(a, bdf);
    path_of(ctx, path, knob, bdf);
    if (!write_once(path, bdf))
        return 0;
    return stubdm__fail(ctx, errno == ENOENT ? STUBDM_ENOENT : STUBDM_EFAIL,
                        errno, "PCI device %s: writing it to %s: %s", bdf,
                        path, strerror(errno));
}

int stubdm__pci_sysfs_permissive(stubdm_ctx *ctx, const stubdm_pci_addr *a)
{
    return pciback_write(ctx, "drivers/pciback/permissive", a);
}

int stubdm__pci_sysfs_interrupt_control(stubdm_ctx *ctx,
                                        const stubdm_pci_addr *a)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN];
    int rc = pciback_write(ctx, "drivers/pciback/allow_interrupt_control", a);

    if (rc != STUBDM_ENOENT)
        return rc;
    rc = pciback_write(ctx, "drivers/pciback/allow_msi_enable", a);
    if (rc != STUBDM_ENOENT)
        return rc;
    stubdm__clear_error(ctx);
    bdf_of(a, bdf);
    LOG_WARN(ctx, MOD,
             "PCI device %s: pciback has neither "
             "allow_interrupt_control nor allow_msi_enable: the "
             "stubdomain's QEMU cannot enable MSI or MSI-X",
             bdf);
    return 0;
}

/* ---- resources ----------------------------------------------------------- */

/* "0x" and 1..16 hex digits, ending at stop; *s moves past stop. */
static bool hex_field(const char **s, const char *end, char stop,
                      uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    size_t n = 0;

    if (end - p < 3 || p[0] != '0' || p[1] != 'x')
        return false;
    for (p += 2; p < end && *p != stop; p++, n++) {
        int d = (*p >= '0' && *p <= '9')   ? *p - '0'
                : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
                                           : -1;
        if (d < 0 || n == 16)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    if (n == 0 || p == end)
        return false;
    *s = p + 1;
    *out = v;
    return true;
}

/* One "0xSTART 0xEND 0xFLAGS\n" line: a used range into r. */
static bool resource_line(const char **s, const char *end,
                          struct stubdm__pci_res *r)
{
    uint64_t start, last, flags;
    struct stubdm__pci_bar *b;

    if (!hex_field(s, end, ' ', &start) || !hex_field(s, end, ' ', &last) ||
        !hex_field(s, end, '\n', &flags))
        return false;
    if (start == 0)
        return true; /* an unused BAR */
    if (last < start || last == UINT64_MAX)
        return false;
    b = &r->bar[r->nbars++];
    b->start = start;
    b->size = last - start + 1;
    b->io = (flags & IORESOURCE_IO) != 0;
    return !b->io || last < IOPORT_LIMIT;
}

int stubdm__pci_parse_resource(const char *text, size_t len,
                               struct stubdm__pci_res *out, size_t *bad_line)
{
    const char *s = text, *end = text + len;
    size_t line = 0;

    out->nbars = 0;
    *bad_line = 0;
    /* The first 7 lines (BARs 0-5, the ROM); the bridge windows after
     * them are not the device's to pass. */
    while (s < end && line < STUBDM__PCI_NUM_BARS) {
        line++;
        if (!resource_line(&s, end, out)) {
            *bad_line = line;
            out->nbars = 0;
            return STUBDM_EPROTO;
        }
    }
    if (line == 0) {
        *bad_line = 1;
        return STUBDM_EPROTO;
    }
    return 0;
}

int stubdm__pci_parse_irq(const char *text, size_t len, uint32_t *irq)
{
    uint64_t v = 0;

    /* One decimal and its newline, below any machine's irq count. */
    if (len == 0 || text[len - 1] != '\n' ||
        stubdm__num_parse_u64_n(text, len - 1, 0xFFFF, &v))
        return STUBDM_EPROTO;
    *irq = (uint32_t)v;
    return 0;
}

int stubdm__pci_res_render(const struct stubdm__pci_res *r, char *out,
                           size_t len)
{
    size_t at = 0;

    out[0] = '\0';
    if (!r->nbars) {
        int n = snprintf(out, len, "0x0 0x0 0x0\n");
        return n < 0 || (size_t)n >= len ? STUBDM_ELIMIT : 0;
    }
    for (size_t i = 0; i < r->nbars; i++) {
        const struct stubdm__pci_bar *b = &r->bar[i];
        int n = snprintf(out + at, len - at,
                         "0x%016" PRIx64 " 0x%016" PRIx64 " 0x%016x\n",
                         b->start, b->start + b->size - 1,
                         b->io ? IORESOURCE_IO : 0x200u);
        if (n < 0 || (size_t)n >= len - at)
            return STUBDM_ELIMIT;
        at += (size_t)n;
    }
    return 0;
}

int stubdm__pci_sysfs_resources(stubdm_ctx *ctx, const stubdm_pci_addr *a,
                                struct stubdm__pci_res *out)
{
    char bdf[STUBDM_PCI_ADDR_STRLEN], path[PATH_LEN], buf[RESOURCE_MAX + 1];
    size_t len, bad;
    int rc;

    memset(out, 0, sizeof(*out));
    bdf_of(a, bdf);
    path_of(ctx, path, "devices/%s/resource", bdf);
    if ((rc = read_bounded(ctx, path, buf, RESOURCE_MAX, &len)))
        return rc;
    if (stubdm__pci_parse_resource(buf, len, out, &bad))
        return stubdm__fail(ctx, STUBDM_EPROTO, 0,
                            "PCI device %s: %s line %zu: malformed", bdf, path,
                            bad);
    path_of(ctx, path, "devices/%s/irq", bdf);
    if ((rc = read_bounded(ctx, path, buf, IRQ_MAX, &len)))
        return rc;
    if (stubdm__pci_parse_irq(buf, len, &out->irq))
        return stubdm__fail(ctx, STUBDM_EPROTO, 0,
                            "PCI device %s: %s: malformed", bdf, path);
    return 0;
}
