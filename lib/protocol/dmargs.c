/*
 * dm-argv: the QEMU command line of a Linux stubdomain in xenstore.
 *
 * The encoding is a pure function of the arguments (stubdm_dm_argv_encode,
 * golden-tested); the writer replays the node list in one transaction; the
 * reader reads the way a real stubdomain does.  docs/protocol.md explains
 * each refusal; in short, a real stubdomain runs
 *
 *     xenstore-read $(xenstore-list -p $vm/image/dm-argv | sort)
 *
 * and splits the output on newlines with IFS=$'\n', so an argument must
 * come out of xenstore-read unchanged (no escaped bytes), contain no
 * newline, not be empty (the shell drops empty fields), and there may be
 * at most 999 keys (the sort is textual).
 */
#include "core/base.h"
#include "core/error.h"
#include "core/mem.h"
#include "protocol/dmargs.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define MAX_VM_PATH 256 /* "/vm/<uuid>" is 40 bytes; leave room */

static const char *enc_name(stubdm_dm_argv_encoding e)
{
    switch (e) {
    case STUBDM_DM_ARGV_DIRECTORY:
        return "dm-argv";
    case STUBDM_DM_ARGV_MINIOS_DMARGS:
        return "dmargs (MiniOS)";
    case STUBDM_DM_ARGV_ESC_STRING:
        return "dmargs (\\x1b-separated)";
    }
    return "?";
}

int stubdm__vm_path_check(stubdm_ctx *ctx, const char *vm_path)
{
    if (!vm_path)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "the vm path is NULL");
    if (strncmp(vm_path, "/vm/", 4) != 0 || !vm_path[4])
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "vm path \"%.64s\" does not start with /vm/<name>",
                            vm_path);
    if (strlen(vm_path) > MAX_VM_PATH)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "vm path is %zu bytes, more than %d",
                            strlen(vm_path), MAX_VM_PATH);
    if (!stubdm__xs_path_ok(vm_path))
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "vm path \"%.64s\" is not a valid xenstore path "
                            "(characters A-Za-z0-9-_@/, no // or trailing /)",
                            vm_path);
    return 0;
}

/* Check one argument against what the encoding's reader can carry. */
static int check_arg(stubdm_ctx *ctx, stubdm_dm_argv_encoding enc, size_t i,
                     const char *a, size_t max_value_len, size_t path_len)
{
    const char *what = enc_name(enc);
    char key[32] = "";
    size_t len;

    if (enc == STUBDM_DM_ARGV_DIRECTORY)
        snprintf(key, sizeof(key), " (key %03zu)", i + 1);
    if (!a)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "%s: args[%zu] is NULL",
                            what, i);
    len = strlen(a);
    if (!len)
        return stubdm__fail(
            ctx, STUBDM_EINVAL, 0,
            "%s: args[%zu]%s is empty: the stubdomain splits the argv with "
            "the shell, which drops empty fields, so the argument would be "
            "lost",
            what, i, key);
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)a[k];

        if (c == '\n')
            return stubdm__fail(
                ctx, STUBDM_EINVAL, 0,
                "%s: args[%zu]%s contains a newline at byte %zu: the "
                "stubdomain splits the argv on newlines and would see two "
                "arguments",
                what, i, key, k);
        switch (enc) {
        case STUBDM_DM_ARGV_DIRECTORY:
            if (!stubdm__xs_read_keeps(c))
                return stubdm__fail(
                    ctx, STUBDM_EINVAL, 0,
                    "%s: args[%zu]%s contains byte 0x%02x at byte %zu: "
                    "xenstore-read in the stubdomain prints it escaped "
                    "(only 0x20-0x7e other than '\\' pass unchanged), so QEMU "
                    "would receive a different argument",
                    what, i, key, c, k);
            break;
        case STUBDM_DM_ARGV_MINIOS_DMARGS:
            if (c == ' ')
                return stubdm__fail(
                    ctx, STUBDM_EINVAL, 0,
                    "%s: args[%zu] contains a space at byte %zu: the "
                    "single string is split on spaces",
                    what, i, k);
            break;
        case STUBDM_DM_ARGV_ESC_STRING:
            if (c == 0x1b)
                return stubdm__fail(
                    ctx, STUBDM_EINVAL, 0,
                    "%s: args[%zu] contains the separator byte 0x1b at byte "
                    "%zu",
                    what, i, k);
            break;
        }
    }
    if (enc == STUBDM_DM_ARGV_DIRECTORY) {
        if (len > max_value_len)
            return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                                "%s: args[%zu]%s is %zu bytes, more than the "
                                "%zu a xenstore value may hold",
                                what, i, key, len, max_value_len);
        /* A write request carries "<path>\0<value>" in one message. */
        if (path_len + 1 + len > STUBDM__XS_PAYLOAD_MAX)
            return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                                "%s: args[%zu]%s: path and value need %zu "
                                "bytes, more than a %d-byte xenstore message",
                                what, i, key, path_len + 1 + len,
                                STUBDM__XS_PAYLOAD_MAX);
    }
    return 0;
}

static int check_args(stubdm_ctx *ctx, const char *vm_path,
                      stubdm_dm_argv_encoding enc, size_t max_value_len,
                      const char *const *args, size_t nargs)
{
    size_t path_len = strlen(vm_path) +
                      sizeof("/" STUBDM__DM_ARGV_DIR "/999") - 1;
    size_t total = 0;
    int rc;

    if (enc != STUBDM_DM_ARGV_DIRECTORY &&
        enc != STUBDM_DM_ARGV_MINIOS_DMARGS &&
        enc != STUBDM_DM_ARGV_ESC_STRING)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "unknown argv encoding %d",
                            (int)enc);
    if (!nargs || !args)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "%s: the argument list is empty: QEMU needs at "
                            "least one argument",
                            enc_name(enc));
    if (enc == STUBDM_DM_ARGV_DIRECTORY && nargs > STUBDM_DM_ARGV_MAX_ARGS)
        return stubdm__fail(
            ctx, STUBDM_ELIMIT, 0,
            "%s: %zu arguments, more than the %d a stubdomain orders "
            "correctly (it sorts the keys as text, so key 1000 would come "
            "before key 101)",
            enc_name(enc), nargs, STUBDM_DM_ARGV_MAX_ARGS);
    for (size_t i = 0; i < nargs; i++) {
        if ((rc = check_arg(ctx, enc, i, args[i], max_value_len, path_len)))
            return rc;
        if (enc != STUBDM_DM_ARGV_DIRECTORY) {
            total += strlen(args[i]) + (i ? 1 : 0);
            if (total > max_value_len)
                return stubdm__fail(
                    ctx, STUBDM_ELIMIT, 0,
                    "%s: the joined string reaches %zu bytes at args[%zu], "
                    "more than the %zu a xenstore value may hold",
                    enc_name(enc), total, i, max_value_len);
        }
    }
    if (enc != STUBDM_DM_ARGV_DIRECTORY &&
        strlen(vm_path) + sizeof("/" STUBDM__DMARGS_KEY) + total >
            STUBDM__XS_PAYLOAD_MAX)
        return stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                            "%s: path and value exceed a %d-byte xenstore "
                            "message",
                            enc_name(enc), STUBDM__XS_PAYLOAD_MAX);
    return 0;
}

int stubdm__dm_argv_nodes(stubdm_ctx *ctx, const char *vm_path,
                          uint32_t owner_domid, uint32_t stubdom_domid,
                          stubdm_dm_argv_encoding encoding,
                          size_t max_value_len, const char *const *args,
                          size_t nargs, stubdm_nodes *into)
{
    stubdm_nodes *tmp;
    char perms[32];
    int rc;

    if (!max_value_len)
        max_value_len = STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN;
    if ((rc = stubdm__vm_path_check(ctx, vm_path)))
        return rc;
    if (!stubdm__domid_ok(stubdom_domid) || stubdom_domid == 0 ||
        stubdom_domid == owner_domid)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0,
                            "invalid stubdomain domid %u", stubdom_domid);
    if ((rc = check_args(ctx, vm_path, encoding, max_value_len, args, nargs)))
        return rc;

    tmp = stubdm__nodes_new();
    if (!tmp)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "dm-argv nodes");
    snprintf(perms, sizeof(perms), "n%u r%u", owner_domid, stubdom_domid);
    rc = stubdm__nodes_add_rm(tmp, "%s/" STUBDM__DM_ARGV_DIR, vm_path);
    if (!rc)
        rc = stubdm__nodes_add_rm(tmp, "%s/" STUBDM__DMARGS_KEY, vm_path);
    if (!rc && encoding == STUBDM_DM_ARGV_DIRECTORY) {
        rc = stubdm__nodes_add(tmp, perms, "", 0, "%s/" STUBDM__DM_ARGV_DIR,
                               vm_path);
        for (size_t i = 0; i < nargs && !rc; i++)
            rc = stubdm__nodes_add_str(tmp, NULL, args[i],
                                       "%s/" STUBDM__DM_ARGV_DIR "/%03zu",
                                       vm_path, i + 1);
    } else if (!rc) {
        struct stubdm__buf b;
        char sep = encoding == STUBDM_DM_ARGV_ESC_STRING ? 0x1b : ' ';

        stubdm__buf_init(&b, 0);
        for (size_t i = 0; i < nargs && !rc; i++) {
            if (i)
                rc = stubdm__buf_append(&b, &sep, 1);
            if (!rc)
                rc = stubdm__buf_append(&b, args[i], strlen(args[i]));
        }
        if (!rc)
            rc = stubdm__nodes_add(tmp, perms, b.data, b.len,
                                   "%s/" STUBDM__DMARGS_KEY, vm_path);
        stubdm__buf_dispose(&b);
    }
    if (!rc)
        rc = stubdm__nodes_splice(into, tmp);
    stubdm_nodes_free(tmp);
    if (rc)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "dm-argv nodes");
    return 0;
}

int stubdm_dm_argv_encode(stubdm_ctx *ctx, const char *vm_path,
                          uint32_t stubdom_domid,
                          stubdm_dm_argv_encoding encoding,
                          size_t max_value_len, const char *const *args,
                          size_t nargs, stubdm_nodes **out)
{
    stubdm_nodes *nodes;
    int rc;

    if (out)
        *out = NULL;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!out)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "out is NULL");
    nodes = stubdm__nodes_new();
    if (!nodes)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "dm-argv nodes");
    rc = stubdm__dm_argv_nodes(ctx, vm_path, 0, stubdom_domid, encoding,
                               max_value_len, args, nargs, nodes);
    if (rc) {
        stubdm_nodes_free(nodes);
        return rc;
    }
    *out = nodes;
    return 0;
}

static int write_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                     void *arg)
{
    return stubdm__nodes_write_txn(ctx, xsh, t, arg);
}

int stubdm_dm_argv_write(stubdm_ctx *ctx, const char *vm_path,
                         uint32_t stubdom_domid,
                         stubdm_dm_argv_encoding encoding,
                         size_t max_value_len, const char *const *args,
                         size_t nargs)
{
    stubdm_nodes *nodes = NULL;
    int rc = stubdm_dm_argv_encode(ctx, vm_path, stubdom_domid, encoding,
                                   max_value_len, args, nargs, &nodes);

    if (rc)
        return rc;
    rc = stubdm__xs_transaction(ctx, "writing the dm-argv", write_txn, nodes,
                                NULL);
    stubdm_nodes_free(nodes);
    if (!rc)
        stubdm__clear_error(ctx);
    return rc;
}

/* ---- reading, as the stubdomain does ------------------------------------ */

/* Append what xenstore-read (without -R) prints for a value. */
static int put_as_xenstore_read(struct stubdm__buf *b, const char *v,
                                size_t len)
{
    int rc = 0;

    for (size_t i = 0; i < len && !rc; i++) {
        unsigned char c = (unsigned char)v[i];
        char tmp[8];
        size_t n;

        if (stubdm__xs_read_keeps(c)) {
            rc = stubdm__buf_append(b, v + i, 1);
            continue;
        }
        tmp[0] = '\\';
        n = 2;
        switch (c) {
        case '\t':
            tmp[1] = 't';
            break;
        case '\n':
            tmp[1] = 'n';
            break;
        case '\r':
            tmp[1] = 'r';
            break;
        case '\f':
            tmp[1] = 'f';
            break;
        case '\\':
            tmp[1] = '\\';
            break;
        default:
            /* Xen 4.17's sanitise_value: octal below 8, hex otherwise. */
            if (c < 010) {
                tmp[1] = '0';
                tmp[2] = '0';
                tmp[3] = (char)('0' + c);
            } else {
                static const char hex[] = "0123456789abcdef";
                tmp[1] = 'x';
                tmp[2] = hex[c >> 4];
                tmp[3] = hex[c & 15];
            }
            n = 4;
        }
        rc = stubdm__buf_append(b, tmp, n);
    }
    return rc;
}

/* Split s[0..len) on any byte of seps, dropping empty fields (shell IFS
 * splitting of whitespace-class separators). */
static int split_fields(stubdm_ctx *ctx, const char *s, size_t len,
                        const char *seps, size_t nseps, char ***args_out,
                        size_t *nargs_out)
{
    char **v = NULL;
    size_t n = 0, start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && !memchr(seps, s[i], nseps))
            continue;
        if (i > start) {
            char **nv = stubdm__reallocarray(v, n + 2, sizeof(*v));
            if (!nv)
                goto nomem;
            v = nv;
            v[n] = stubdm__strndup(s + start, i - start);
            if (!v[n])
                goto nomem;
            v[++n] = NULL;
        }
        start = i + 1;
    }
    if (!n)
        return stubdm__fail(ctx, STUBDM_ENOENT, 0,
                            "the stored argv has no arguments");
    *args_out = v;
    if (nargs_out)
        *nargs_out = n;
    return 0;
nomem:
    if (v) {
        v[n] = NULL;
        stubdm_dm_argv_free(v);
    }
    return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "reading the argv");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read dir/key, a value the stubdomain's side may have written: bounded. */
static int read_key(stubdm_ctx *ctx, const char *dir, const char *key,
                    char **val, size_t *len)
{
    char *path = stubdm__sprintf("%s/%s", dir, key);
    int rc;

    if (!path)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "reading the argv");
    rc = stubdm__xs_read(ctx, XBT_NULL, path, STUBDM__XS_PAYLOAD_MAX, val,
                         len);
    free(path);
    return rc;
}
static int read_directory(stubdm_ctx *ctx, const char *vm_path,
                          struct stubdm__buf *out)
{
    struct xs_handle *xsh = NULL;
    char *dir = NULL;
    char **keys = NULL;
    unsigned nkeys = 0;
    int rc = stubdm__xs_handle(ctx, &xsh);

    if (rc)
        return rc;
    dir = stubdm__sprintf("%s/" STUBDM__DM_ARGV_DIR, vm_path);
    if (!dir)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "reading the argv");
    stubdm__xs_count(ctx, 1);
    keys = xs_directory(xsh, XBT_NULL, dir, &nkeys);
    if (!keys) {
        int err = errno;
        rc = stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                          "listing %s: %s", dir, strerror(err));
        free(dir);
        return rc;
    }
    if (nkeys > STUBDM_DM_ARGV_MAX_ARGS) {
        rc = stubdm__fail(ctx, STUBDM_ELIMIT, 0,
                          "%s has %u keys, more than the %d a stubdomain "
                          "orders correctly",
                          dir, nkeys, STUBDM_DM_ARGV_MAX_ARGS);
        goto out;
    }
    if (!nkeys) {
        rc = stubdm__fail(ctx, STUBDM_ENOENT, 0, "%s has no keys", dir);
        goto out;
    }
    /* `xenstore-list -p | sort`: full paths share the prefix, so sorting
     * the names as bytes gives the same order. */
    qsort(keys, nkeys, sizeof(*keys), cmp_str);
    for (unsigned i = 0; i < nkeys && !rc; i++) {
        char *val = NULL;
        size_t len = 0;

        rc = read_key(ctx, dir, keys[i], &val, &len);
        if (rc)
            break;
        /* xenstore-read prints each value escaped, one per line. */
        rc = put_as_xenstore_read(out, val, len);
        if (!rc)
            rc = stubdm__buf_append(out, "\n", 1);
        free(val);
        if (rc)
            rc = stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "reading the argv");
    }
out:
    free(keys);
    free(dir);
    return rc;
}

int stubdm_dm_argv_read(stubdm_ctx *ctx, const char *vm_path,
                        stubdm_dm_argv_encoding encoding, char ***args_out,
                        size_t *nargs_out)
{
    struct stubdm__buf b;
    int rc;

    if (args_out)
        *args_out = NULL;
    if (nargs_out)
        *nargs_out = 0;
    if (!ctx)
        return STUBDM_EINVAL;
    if (!args_out)
        return stubdm__fail(ctx, STUBDM_EINVAL, 0, "args_out is NULL");
    if ((rc = stubdm__vm_path_check(ctx, vm_path)))
        return rc;
    /* Bound: 999 values, each at most a message, each byte escaped to at
     * most 4; this limit only guards the buffer. */
    stubdm__buf_init(&b, (size_t)STUBDM_DM_ARGV_MAX_ARGS *
                             (4 * STUBDM__XS_PAYLOAD_MAX + 1));
    switch (encoding) {
    case STUBDM_DM_ARGV_DIRECTORY:
        rc = read_directory(ctx, vm_path, &b);
        if (!rc)
            rc = split_fields(ctx, b.data, b.len, "\n", 1, args_out,
                              nargs_out);
        break;
    case STUBDM_DM_ARGV_MINIOS_DMARGS:
    case STUBDM_DM_ARGV_ESC_STRING: {
        char *val = NULL;
        size_t len = 0;

        rc = read_key(ctx, vm_path, STUBDM__DMARGS_KEY, &val, &len);
        if (!rc) {
            /* The stubdomain reads the value as a C string: a NUL ends it
             * (split_fields would otherwise cut fields at it, even to
             * empty ones). */
            len = strnlen(val, len);
            if (encoding == STUBDM_DM_ARGV_MINIOS_DMARGS)
                rc = split_fields(ctx, val, len, " ", 1, args_out, nargs_out);
            else
                rc = split_fields(ctx, val, len, "\x1b\n", 2, args_out,
                                  nargs_out);
        }
        free(val);
        break;
    }
    default:
        rc = stubdm__fail(ctx, STUBDM_EINVAL, 0, "unknown argv encoding %d",
                          (int)encoding);
    }
    stubdm__buf_dispose(&b);
    if (!rc)
        stubdm__clear_error(ctx);
    return rc;
}

void stubdm_dm_argv_free(char **args)
{
    if (!args)
        return;
    for (char **p = args; *p; p++)
        free(*p);
    free(args);
}
