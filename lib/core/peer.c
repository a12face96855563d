/*
 * Values from untrusted parties: printable copies, owner-checked reads,
 * path checks (see peer.h).
 */
#include "core/error.h"
#include "core/peer.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

char *stubdm__printable(char *out, size_t out_size, const char *in,
                        size_t in_len)
{
    size_t n, i;

    if (!in)
        in_len = 0;
    n = in_len < out_size - 1 ? in_len : out_size - 1;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        out[i] = ch < 0x20 || ch > 0x7e ? '?' : (char)ch;
    }
    out[n] = '\0';
    if (n < in_len && n >= 3)
        memcpy(out + n - 3, "...", 3);
    return out;
}

char *stubdm__printable_str(char *out, size_t out_size, const char *in)
{
    return stubdm__printable(out, out_size, in,
                             in ? strnlen(in, out_size) : 0);
}

struct owned_read {
    const char *path;
    size_t max_len;
    uint32_t owner;
    char *val;
    size_t len;
};

static int owned_read_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                          void *arg)
{
    struct owned_read *a = arg;
    struct xs_permissions *perm;
    unsigned np = 0;
    int rc;

    free(a->val);
    a->val = NULL;
    rc = stubdm__xs_read(ctx, t, a->path, a->max_len, &a->val, &a->len);
    if (rc)
        return rc;
    stubdm__xs_count(ctx, 1);
    perm = xs_get_permissions(xsh, t, a->path, &np);
    if (!perm) {
        int err = errno;
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "reading the permissions of %s: %s", a->path,
                            strerror(err));
    }
    rc = np > 0 && perm[0].id == a->owner
             ? 0
             : stubdm__fail(ctx, STUBDM_EPERM, 0,
                            "%s is owned by domain %u, not %u: not taken",
                            a->path, np > 0 ? perm[0].id : 0u, a->owner);
    free(perm);
    return rc;
}

int stubdm__xs_read_owned(stubdm_ctx *ctx, const char *path, size_t max_len,
                          uint32_t owner, char **val_out, size_t *len_out)
{
    struct owned_read a = {path, max_len, owner, NULL, 0};
    int rc;

    *val_out = NULL;
    rc = stubdm__xs_transaction(ctx, path, owned_read_txn, &a, NULL);
    if (rc) {
        free(a.val);
        return rc;
    }
    *val_out = a.val;
    if (len_out)
        *len_out = a.len;
    return 0;
}

bool stubdm__script_path_ok(const char *path, const char *dir,
                            const char *const *also, size_t n)
{
    size_t dl = dir ? strlen(dir) : 0;
    const char *base;

    if (!path || path[0] != '/')
        return false;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return false;
    for (size_t i = 0; i < n; i++)
        if (also[i] && !strcmp(path, also[i]))
            return true;
    if (strstr(path, "//") || strstr(path, "/./") || strstr(path, "/../"))
        return false;
    if (!dl || strncmp(path, dir, dl) != 0 || path[dl] != '/')
        return false;
    base = path + dl + 1;
    return *base && !strchr(base, '/') && strcmp(base, ".") != 0 &&
           strcmp(base, "..") != 0;
}
