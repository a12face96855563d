/*
 * Node lists: what the library writes to xenstore, as data (path, value,
 * permissions), and the writer that replays a list inside a transaction.
 */
#include "core/error.h"
#include "core/mem.h"
#include "core/num.h"
#include "xen/nodes.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

stubdm_nodes *stubdm__nodes_new(void)
{
    return stubdm__calloc(1, sizeof(stubdm_nodes));
}

void stubdm_nodes_free(stubdm_nodes *nodes)
{
    if (!nodes)
        return;
    for (size_t i = 0; i < nodes->n; i++) {
        free(nodes->v[i].path);
        free(nodes->v[i].value);
        free(nodes->v[i].perms);
    }
    for (size_t i = 0; i < nodes->nrm; i++)
        free(nodes->rm[i]);
    free(nodes->v);
    free(nodes->rm);
    free(nodes);
}

size_t stubdm_nodes_count(const stubdm_nodes *nodes)
{
    return nodes ? nodes->n : 0;
}

const char *stubdm_nodes_path(const stubdm_nodes *nodes, size_t i)
{
    return nodes && i < nodes->n ? nodes->v[i].path : NULL;
}

const char *stubdm_nodes_value(const stubdm_nodes *nodes, size_t i,
                               size_t *len_out)
{
    if (!nodes || i >= nodes->n) {
        if (len_out)
            *len_out = 0;
        return NULL;
    }
    if (len_out)
        *len_out = nodes->v[i].len;
    return nodes->v[i].value;
}

const char *stubdm_nodes_perms(const stubdm_nodes *nodes, size_t i)
{
    return nodes && i < nodes->n ? nodes->v[i].perms : NULL;
}

size_t stubdm__nodes_rm_count(const stubdm_nodes *nodes)
{
    return nodes ? nodes->nrm : 0;
}

const char *stubdm__nodes_rm_path(const stubdm_nodes *nodes, size_t i)
{
    return nodes && i < nodes->nrm ? nodes->rm[i] : NULL;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = stubdm__reallocarray(*arr, ncap, elem);
    if (!p)
        return STUBDM_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int vadd(stubdm_nodes *nodes, const char *perms, const char *value,
                size_t len, const char *path_fmt, va_list ap)
{
    struct stubdm__node nd = {0};
    char *path;
    void *arr = nodes->v;

    if (!(path = stubdm__vsprintf(path_fmt, ap)))
        return STUBDM_ENOMEM;
    if (grow(&arr, &nodes->cap, nodes->n + 1, sizeof(*nodes->v))) {
        free(path);
        return STUBDM_ENOMEM;
    }
    nodes->v = arr;
    nd.path = path;
    nd.len = value ? len : 0;
    nd.value = stubdm__malloc(nd.len + 1);
    nd.perms = perms ? stubdm__strdup(perms) : NULL;
    if (!nd.value || (perms && !nd.perms)) {
        free(nd.path);
        free(nd.value);
        free(nd.perms);
        return STUBDM_ENOMEM;
    }
    if (nd.len)
        memcpy(nd.value, value, nd.len);
    nd.value[nd.len] = '\0';
    nodes->v[nodes->n++] = nd;
    return 0;
}

int stubdm__nodes_add(stubdm_nodes *nodes, const char *perms,
                      const char *value, size_t len, const char *path_fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, path_fmt);
    rc = vadd(nodes, perms, value, len, path_fmt, ap);
    va_end(ap);
    return rc;
}

int stubdm__nodes_add_str(stubdm_nodes *nodes, const char *perms,
                          const char *value, const char *path_fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, path_fmt);
    rc = vadd(nodes, perms, value, value ? strlen(value) : 0, path_fmt, ap);
    va_end(ap);
    return rc;
}

int stubdm__nodes_add_rm(stubdm_nodes *nodes, const char *path_fmt, ...)
{
    va_list ap;
    char *path;
    void *arr = nodes->rm;

    va_start(ap, path_fmt);
    path = stubdm__vsprintf(path_fmt, ap);
    va_end(ap);
    if (!path)
        return STUBDM_ENOMEM;
    if (grow(&arr, &nodes->rmcap, nodes->nrm + 1, sizeof(*nodes->rm))) {
        free(path);
        return STUBDM_ENOMEM;
    }
    nodes->rm = arr;
    nodes->rm[nodes->nrm++] = path;
    return 0;
}

int stubdm__nodes_splice(stubdm_nodes *dst, stubdm_nodes *src)
{
    void *arr = dst->v, *rarr = dst->rm;

    if (grow(&arr, &dst->cap, dst->n + src->n, sizeof(*dst->v)))
        return STUBDM_ENOMEM;
    dst->v = arr;
    if (grow(&rarr, &dst->rmcap, dst->nrm + src->nrm, sizeof(*dst->rm)))
        return STUBDM_ENOMEM;
    dst->rm = rarr;
    if (src->n)
        memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
    if (src->nrm)
        memcpy(dst->rm + dst->nrm, src->rm, src->nrm * sizeof(*src->rm));
    dst->n += src->n;
    dst->nrm += src->nrm;
    src->n = src->nrm = 0;
    return 0;
}

int stubdm__perms_parse(const char *text, struct xs_permissions **out,
                        unsigned *n_out)
{
    struct xs_permissions *p = NULL;
    unsigned n = 0, cap = 0;
    const char *s = text;

    *out = NULL;
    *n_out = 0;
    if (!text)
        return STUBDM_EINVAL;
    for (;;) {
        unsigned perm;
        uint64_t id;
        size_t len;

        while (*s == ' ')
            s++;
        if (!*s)
            break;
        switch (*s) {
        case 'n':
            perm = XS_PERM_NONE;
            break;
        case 'r':
            perm = XS_PERM_READ;
            break;
        case 'w':
            perm = XS_PERM_WRITE;
            break;
        case 'b':
            perm = XS_PERM_READ | XS_PERM_WRITE;
            break;
        default:
            free(p);
            return STUBDM_EINVAL;
        }
        s++;
        len = strcspn(s, " ");
        if (stubdm__num_parse_u64_n(s, len, 0xFFFFu, &id)) {
            free(p);
            return STUBDM_EINVAL;
        }
        s += len;
        if (n == cap) {
            unsigned ncap = cap ? cap * 2 : 4;
            struct xs_permissions *np = stubdm__reallocarray(p, ncap,
                                                             sizeof(*p));
            if (!np) {
                free(p);
                return STUBDM_ENOMEM;
            }
            p = np;
            cap = ncap;
        }
        p[n].id = (unsigned)id;
        p[n].perms = perm;
        n++;
    }
    if (!n)
        return STUBDM_EINVAL;
    *out = p;
    *n_out = n;
    return 0;
}

bool stubdm__xs_path_ok(const char *path)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789-/_@";
    size_t len;

    if (!path || path[0] != '/')
        return false;
    len = strlen(path);
    if (len > STUBDM__XS_ABS_PATH_MAX || strspn(path, ok) != len)
        return false;
    if (strstr(path, "//"))
        return false;
    return len == 1 || path[len - 1] != '/';
}

int stubdm__xs_rm_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      const char *path)
{
    stubdm__xs_count(ctx, 1);
    if (!xs_rm(xsh, t, path) && errno != ENOENT) {
        int err = errno;
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "removing %s: %s", path, strerror(err));
    }
    return 0;
}

int stubdm__nodes_write_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                            const stubdm_nodes *nodes)
{
    int rc;

    for (size_t i = 0; i < nodes->nrm; i++)
        if ((rc = stubdm__xs_rm_txn(ctx, xsh, t, nodes->rm[i])))
            return rc;
    for (size_t i = 0; i < nodes->n; i++) {
        const struct stubdm__node *nd = &nodes->v[i];

        stubdm__xs_count(ctx, 1);
        if (!xs_write(xsh, t, nd->path, nd->value, (unsigned)nd->len)) {
            int err = errno;
            return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                                "writing %s: %s", nd->path, strerror(err));
        }
        if (nd->perms) {
            struct xs_permissions *p;
            unsigned np;

            rc = stubdm__perms_parse(nd->perms, &p, &np);
            if (rc)
                return stubdm__fail(ctx, rc, 0,
                                    "bad permissions \"%s\" for %s", nd->perms,
                                    nd->path);
            stubdm__xs_count(ctx, 1);
            if (!xs_set_permissions(xsh, t, nd->path, p, np)) {
                int err = errno;
                free(p);
                return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                                    "setting permissions %s on %s: %s",
                                    nd->perms, nd->path, strerror(err));
            }
            free(p);
        }
    }
    return 0;
}

static int put_escaped(struct stubdm__buf *b, const char *v, size_t len)
{
    int rc = 0;

    for (size_t i = 0; i < len && !rc; i++) {
        unsigned char c = (unsigned char)v[i];
        char tmp[8];

        if (c == '\\' || c == '"') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            rc = stubdm__buf_append(b, tmp, 2);
        } else if (c == '\n') {
            rc = stubdm__buf_append(b, "\\n", 2);
        } else if (c < 0x20 || c > 0x7e) {
            snprintf(tmp, sizeof(tmp), "\\x%02x", c);
            rc = stubdm__buf_append(b, tmp, 4);
        } else {
            rc = stubdm__buf_append(b, v + i, 1);
        }
    }
    return rc;
}

char *stubdm__nodes_render(const stubdm_nodes *nodes)
{
    struct stubdm__buf b;
    int rc = 0;

    stubdm__buf_init(&b, 0);
    for (size_t i = 0; i < nodes->nrm && !rc; i++) {
        rc = stubdm__buf_append(&b, "rm ", 3);
        if (!rc)
            rc = stubdm__buf_append(&b, nodes->rm[i], strlen(nodes->rm[i]));
        if (!rc)
            rc = stubdm__buf_append(&b, "\n", 1);
    }
    for (size_t i = 0; i < nodes->n && !rc; i++) {
        const struct stubdm__node *nd = &nodes->v[i];

        rc = stubdm__buf_append(&b, nd->path, strlen(nd->path));
        if (!rc)
            rc = stubdm__buf_append(&b, " = \"", 4);
        if (!rc)
            rc = put_escaped(&b, nd->value, nd->len);
        if (!rc)
            rc = stubdm__buf_append(&b, "\"", 1);
        if (!rc && nd->perms) {
            rc = stubdm__buf_append(&b, " [", 2);
            if (!rc)
                rc = stubdm__buf_append(&b, nd->perms, strlen(nd->perms));
            if (!rc)
                rc = stubdm__buf_append(&b, "]", 1);
        }
        if (!rc)
            rc = stubdm__buf_append(&b, "\n", 1);
    }
    if (!rc)
        rc = stubdm__buf_append(&b, "", 1);
    if (rc) {
        stubdm__buf_dispose(&b);
        return NULL;
    }
    return b.data;
}
