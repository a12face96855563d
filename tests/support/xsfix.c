/* See xsfix.h. */
#include "xsfix.h"
#include "mockxs.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <xenstore.h>

char *xsfix_dump(const struct mockxs *m)
{
    char *s = NULL;
    ck_assert_int_eq(mockxs_dump(m, &s), 0);
    return s;
}

void xsfix_dir(struct xs_handle *xs, const char *path, unsigned owner,
               unsigned reader)
{
    struct xs_permissions p[2] = {{owner, XS_PERM_NONE},
                                  {reader, XS_PERM_READ}};
    ck_assert(xs_mkdir(xs, XBT_NULL, path));
    ck_assert(xs_set_permissions(xs, XBT_NULL, path, p, 2));
}

void xsfix_guest(struct xs_handle *xs, unsigned guest, unsigned stub,
                 const char *vm)
{
    char p[256];

    snprintf(p, sizeof(p), "/local/domain/%u", guest);
    xsfix_dir(xs, p, 0, guest);
    snprintf(p, sizeof(p), "/local/domain/%u", stub);
    xsfix_dir(xs, p, 0, stub);
    snprintf(p, sizeof(p), "/local/domain/%u/device", stub);
    xsfix_dir(xs, p, stub, 0);
    snprintf(p, sizeof(p), "/local/domain/%u/vm", guest);
    ck_assert(xs_write(xs, XBT_NULL, p, vm, (unsigned)strlen(vm)));
    xsfix_dir(xs, vm, 0, guest);
    snprintf(p, sizeof(p), "%s/image", vm);
    xsfix_dir(xs, p, 0, guest);
    xsfix_dir(xs, "/local/domain/0/backend", 0, 0);
}
