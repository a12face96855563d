/*
 * PCI addresses (the one parser for a BDF, from a caller or from sysfs)
 * and the device options object.
 */
#include "core/mem.h"
#include "pci/pci.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One hex digit, or -1: no locale, no sign, no space. */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Exactly width hex digits at s into *out; false if any is not one. */
static bool hexfield(const char *s, size_t width, unsigned *out)
{
    unsigned v = 0;

    for (size_t i = 0; i < width; i++) {
        int d = hexval(s[i]);
        if (d < 0)
            return false;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return true;
}

/* "BB:DD.F" at s, exactly 7 bytes. */
static bool parse_bdf(const char *s, unsigned *bus, unsigned *dev,
                      unsigned *func)
{
    return hexfield(s, 2, bus) && s[2] == ':' && hexfield(s + 3, 2, dev) &&
           s[5] == '.' && s[6] >= '0' && s[6] <= '7' &&
           hexfield(s + 6, 1, func) && *dev <= 31;
}

int stubdm__pci_addr_parse_n(const char *s, size_t n, stubdm_pci_addr *out)
{
    unsigned seg = 0, bus, dev, func;

    if (!s || !out)
        return STUBDM_EINVAL;
    if (n == 12) {
        if (!hexfield(s, 4, &seg) || s[4] != ':')
            return STUBDM_EINVAL;
        s += 5;
    } else if (n != 7) {
        return STUBDM_EINVAL;
    }
    if (!parse_bdf(s, &bus, &dev, &func))
        return STUBDM_EINVAL;
    out->domain = (uint16_t)seg;
    out->bus = (uint8_t)bus;
    out->dev = (uint8_t)dev;
    out->func = (uint8_t)func;
    return 0;
}

int stubdm__pci_vdev_parse_n(const char *s, size_t n, stubdm_pci_addr *out)
{
    char b[12];

    if (s && n == 13 && s[11] == '0') {
        memcpy(b, s, 11);
        b[11] = s[12];
        return stubdm__pci_addr_parse_n(b, sizeof(b), out);
    }
    return stubdm__pci_addr_parse_n(s, n, out);
}

int stubdm_pci_addr_parse(const char *s, stubdm_pci_addr *out)
{
    if (!s)
        return STUBDM_EINVAL;
    /* strnlen: a longer string is refused without reading it all. */
    return stubdm__pci_addr_parse_n(s, strnlen(s, 13), out);
}

int stubdm_pci_addr_format(const stubdm_pci_addr *a, char *buf, size_t len)
{
    if (buf && len)
        buf[0] = '\0';
    if (!a || !buf || a->dev > 31 || a->func > 7)
        return STUBDM_EINVAL;
    if (len < STUBDM_PCI_ADDR_STRLEN)
        return STUBDM_ELIMIT;
    snprintf(buf, len, "%04x:%02x:%02x.%u", a->domain, a->bus, a->dev,
             a->func);
    return 0;
}

bool stubdm__pci_addr_eq(const stubdm_pci_addr *a, const stubdm_pci_addr *b)
{
    return a->domain == b->domain && a->bus == b->bus && a->dev == b->dev &&
           a->func == b->func;
}

int stubdm_pci_dev_new(const char *bdf, stubdm_pci_dev **out)
{
    stubdm_pci_addr a;
    stubdm_pci_dev *d;

    if (!out)
        return STUBDM_EINVAL;
    *out = NULL;
    if (stubdm_pci_addr_parse(bdf, &a))
        return STUBDM_EINVAL;
    if (!(d = stubdm__calloc(1, sizeof(*d))))
        return STUBDM_ENOMEM;
    d->addr = a;
    d->vslot = -1;
    *out = d;
    return 0;
}

void stubdm_pci_dev_free(stubdm_pci_dev *d)
{
    free(d);
}

int stubdm_pci_dev_set_vslot(stubdm_pci_dev *d, int vslot)
{
    /* Slot 0 is the host bridge of the guest's bus. */
    if (!d || (vslot != -1 && (vslot < 1 || vslot > 31)))
        return STUBDM_EINVAL;
    d->vslot = vslot;
    return 0;
}

int stubdm_pci_dev_set_flags(stubdm_pci_dev *d, unsigned flags)
{
    if (!d || (flags & ~(unsigned)STUBDM__PCI_FLAGS_ALL))
        return STUBDM_EINVAL;
    d->flags = flags;
    return 0;
}

stubdm_pci_addr stubdm_pci_dev_addr(const stubdm_pci_dev *d)
{
    stubdm_pci_addr zero = {0, 0, 0, 0};

    return d ? d->addr : zero;
}

int stubdm_pci_dev_vslot(const stubdm_pci_dev *d)
{
    return d ? d->vslot : -1;
}

unsigned stubdm_pci_dev_flags(const stubdm_pci_dev *d)
{
    return d ? d->flags : 0;
}
