/*
 * libFuzzer target for the dm-argv reader (lib/protocol/dmargs.c,
 * stubdm_dm_argv_read): what a stubdomain makes of the argv in its store,
 * with the store's content chosen by the fuzzer.
 *
 * The library is linked whole; libxenstore's xs_open, xs_close,
 * xs_directory and xs_read are replaced (this executable's definitions win
 * over the shared library's) by a store held in memory, so every byte of
 * every key name and value is the fuzzer's, and the real read path runs:
 * stubdm_dm_argv_read -> read_directory / stubdm__xs_read -> escaping ->
 * splitting.
 *
 * Input: byte 0 selects the encoding (bits 0-1) and the mode (bit 2).
 *  - hostile store (bit 2 clear): the rest, split on 0x00, is a list of
 *    key, value, key, value... under <vm>/image/dm-argv (the directory
 *    encoding) or one value of <vm>/image/dmargs.  The result is compared
 *    with a reference model written from docs/protocol.md (sort the keys as
 *    bytes, print each value as xenstore-read does, one per line, split on
 *    newlines dropping empty fields; or split the one value on its
 *    separators), or must be a clean refusal (ENOENT, ELIMIT).
 *  - round trip (bit 2 set): the rest, split on 0x00, is an argv.  If
 *    stubdm_dm_argv_encode accepts it, its nodes are put in the store and
 *    the read must give back exactly that argv.
 * Invariants: no memory error (ASan), no leak, the model's answer, every
 * returned argument non-empty and free of the encoding's separators.
 */
#include "core/base.h"
#include "protocol/dmargs.h"
#include "xen/nodes.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c))                                                             \
            abort();                                                          \
    } while (0)

#define VM "/vm/fuzz"
#define MAX_ENTRIES                                                           \
    1100 /* past STUBDM_DM_ARGV_MAX_ARGS, so its refusal is hit */

/* ---- the in-memory store behind the replaced libxenstore calls --------- */

struct entry {
    char *path;
    char *value;
    size_t len;
};

static struct entry store[MAX_ENTRIES + 2];
static size_t nstore;
static int fake_handle;

static void store_clear(void)
{
    for (size_t i = 0; i < nstore; i++) {
        free(store[i].path);
        free(store[i].value);
    }
    nstore = 0;
}

/* A NUL-terminated copy of n bytes.  Not strndup: ASan's
 * strict_string_checks (as CI runs it) reads strndup's source up to a NUL,
 * which a piece of the fuzzer's input need not have. */
static char *dup_bytes(const void *p, size_t n)
{
    char *d = malloc(n + 1);

    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* Entries are appended, then sorted by path once (store_seal): xs_read
 * is a binary search, so a 1000-key argv costs no quadratic time. */
static void store_put(const char *path, size_t plen, const char *v, size_t len)
{
    struct entry *e;

    if (nstore == sizeof(store) / sizeof(store[0]))
        return;
    e = &store[nstore];
    e->path = dup_bytes(path, plen);
    e->value = dup_bytes(v, len);
    CHECK(e->path && e->value);
    e->len = len;
    nstore++;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    /* equal paths: the first put wins (a path holds one value) */
    return c ? c : (x < y ? -1 : x > y);
}

static void store_seal(void)
{
    size_t n = 0;

    qsort(store, nstore, sizeof(store[0]), cmp_entry);
    for (size_t i = 0; i < nstore; i++) {
        if (n && !strcmp(store[n - 1].path, store[i].path)) {
            free(store[i].path);
            free(store[i].value);
            continue;
        }
        store[n++] = store[i];
    }
    nstore = n;
}

static int cmp_key(const void *k, const void *e)
{
    return strcmp(k, ((const struct entry *)e)->path);
}

struct xs_handle *xs_open(unsigned long flags)
{
    (void)flags;
    return (struct xs_handle *)&fake_handle;
}

void xs_close(struct xs_handle *h)
{
    CHECK(h == (struct xs_handle *)&fake_handle);
}

void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path,
              unsigned int *len)
{
    (void)t;
    CHECK(h == (struct xs_handle *)&fake_handle);
    const struct entry *e = bsearch(path, store, nstore, sizeof(store[0]),
                                    cmp_key);
    if (e) {
        char *v = malloc(e->len + 1);
        CHECK(v);
        memcpy(v, e->value, e->len + 1);
        *len = (unsigned)e->len;
        return v;
    }
    errno = ENOENT;
    return NULL;
}

/* As libxenstore: one allocation, the pointers then the names. */
char **xs_directory(struct xs_handle *h, xs_transaction_t t, const char *path,
                    unsigned int *num)
{
    size_t plen = strlen(path), n = 0, bytes = 0;
    char **v, *s;

    (void)t;
    CHECK(h == (struct xs_handle *)&fake_handle);
    for (size_t i = 0; i < nstore; i++) {
        const char *p = store[i].path;
        if (!strncmp(p, path, plen) && p[plen] == '/' && p[plen + 1] &&
            !strchr(p + plen + 1, '/')) {
            n++;
            bytes += strlen(p + plen + 1) + 1;
        }
    }
    if (!n && !nstore) {
        errno = ENOENT;
        return NULL;
    }
    v = malloc(n * sizeof(*v) + bytes + 1);
    CHECK(v);
    s = (char *)(v + n);
    n = 0;
    for (size_t i = 0; i < nstore; i++) {
        const char *p = store[i].path;
        if (!strncmp(p, path, plen) && p[plen] == '/' && p[plen + 1] &&
            !strchr(p + plen + 1, '/')) {
            size_t l = strlen(p + plen + 1) + 1;
            memcpy(s, p + plen + 1, l);
            v[n++] = s;
            s += l;
        }
    }
    *num = (unsigned)n;
    return v;
}

/* ---- the reference model ---------------------------------------------- */

struct sbuf {
    char *d;
    size_t len, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->d = realloc(b->d, b->cap);
        CHECK(b->d);
    }
    memcpy(b->d + b->len, s, n);
    b->len += n;
    b->d[b->len] = '\0';
}

/* xenstore-read without -R (Xen 4.17's sanitise_value). */
static void sb_put_escaped(struct sbuf *b, const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        char t[8];

        if (c >= 0x20 && c <= 0x7e && c != '\\') {
            sb_put(b, (const char *)&c, 1);
            continue;
        }
        switch (c) {
        case '\t':
            sb_put(b, "\\t", 2);
            break;
        case '\n':
            sb_put(b, "\\n", 2);
            break;
        case '\r':
            sb_put(b, "\\r", 2);
            break;
        case '\f':
            sb_put(b, "\\f", 2);
            break;
        case '\\':
            sb_put(b, "\\\\", 2);
            break;
        default:
            if (c < 8)
                snprintf(t, sizeof(t), "\\00%o", c);
            else
                snprintf(t, sizeof(t), "\\x%02x", c);
            sb_put(b, t, 4);
        }
    }
}

/* Fields of s split on any of seps, empty ones dropped: compare with
 * args.  Fields end at a NUL too (a C string holds no NUL). */
static void check_split(const char *s, size_t len, const char *seps,
                        char **args, size_t nargs)
{
    size_t n = 0, start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && !memchr(seps, s[i], strlen(seps)))
            continue;
        if (i > start) {
            size_t flen = strnlen(s + start, i - start);
            CHECK(n < nargs);
            CHECK(strlen(args[n]) == flen);
            CHECK(!memcmp(args[n], s + start, flen));
            n++;
        }
        start = i + 1;
    }
    CHECK(n == nargs);
}

/* What the read must give for the directory encoding: 0 and the argv, or
 * the refusal expected. */
static int model_directory(struct sbuf *out)
{
    const char *dir = VM "/" STUBDM__DM_ARGV_DIR;
    size_t n = 0, dlen = strlen(dir);

    for (size_t i = 0; i < nstore; i++)
        if (!strncmp(store[i].path, dir, dlen) && store[i].path[dlen] == '/')
            n++;
    if (n == 0)
        return STUBDM_ENOENT;
    if (n > STUBDM_DM_ARGV_MAX_ARGS)
        return STUBDM_ELIMIT;
    /* The store is sorted by path, so by key name below one directory. */
    for (size_t i = 0; i < nstore; i++) {
        if (strncmp(store[i].path, dir, dlen) || store[i].path[dlen] != '/')
            continue;
        if (store[i].len > STUBDM__XS_PAYLOAD_MAX)
            return STUBDM_ELIMIT;
        sb_put_escaped(out, store[i].value, store[i].len);
        sb_put(out, "\n", 1);
    }
    return 0;
}

static size_t count_args(char **args)
{
    size_t n = 0;
    while (args && args[n])
        n++;
    return n;
}

/* ---- the two modes ------------------------------------------------------ */

static const stubdm_dm_argv_encoding encodings[] = {
    STUBDM_DM_ARGV_DIRECTORY, STUBDM_DM_ARGV_MINIOS_DMARGS,
    STUBDM_DM_ARGV_ESC_STRING, STUBDM_DM_ARGV_DIRECTORY};

static const char *seps_of(stubdm_dm_argv_encoding enc)
{
    return enc == STUBDM_DM_ARGV_DIRECTORY       ? "\n"
           : enc == STUBDM_DM_ARGV_MINIOS_DMARGS ? " "
                                                 : "\x1b\n";
}

static void hostile_store(stubdm_ctx *ctx, stubdm_dm_argv_encoding enc,
                          const uint8_t *data, size_t size)
{
    const char *dir = VM "/" STUBDM__DM_ARGV_DIR;
    char **args = NULL;
    size_t nargs = 99, off = 0;
    struct sbuf want = {0};
    int rc, want_rc;

    if (enc == STUBDM_DM_ARGV_DIRECTORY) {
        /* key \0 value \0 key \0 value ... */
        while (off < size && nstore < MAX_ENTRIES) {
            const uint8_t *k = data + off, *z = memchr(k, 0, size - off);
            size_t klen = z ? (size_t)(z - k) : size - off;
            char path[600];
            int pl;

            off += klen + 1;
            if (klen == 0 || klen > 512 || memchr(k, '/', klen))
                klen = 0; /* xs_directory never returns such names */
            pl = snprintf(path, sizeof(path), "%s/%.*s", dir, (int)klen,
                          (const char *)k);
            const uint8_t *v = data + (off < size ? off : size);
            const uint8_t *vz = off < size ? memchr(v, 0, size - off) : NULL;
            size_t vlen = off < size ? (vz ? (size_t)(vz - v) : size - off)
                                     : 0;
            off += vlen + 1;
            if (klen)
                store_put(path, (size_t)pl, (const char *)v, vlen);
        }
        store_seal();
        want_rc = model_directory(&want);
    } else {
        store_put(VM "/" STUBDM__DMARGS_KEY, strlen(VM "/" STUBDM__DMARGS_KEY),
                  (const char *)data, size);
        store_seal();
        want_rc = size > STUBDM__XS_PAYLOAD_MAX ? STUBDM_ELIMIT : 0;
        /* A C string to the stubdomain: it ends at a NUL. */
        if (!want_rc)
            sb_put(&want, (const char *)data,
                   strnlen((const char *)data, size));
    }
    rc = stubdm_dm_argv_read(ctx, VM, enc, &args, &nargs);
    if (want_rc) {
        CHECK(rc == want_rc);
        CHECK(!args && nargs == 0);
    } else if (rc == 0) {
        CHECK(nargs == count_args(args) && nargs > 0);
        for (size_t i = 0; i < nargs; i++)
            CHECK(args[i][0] && !strpbrk(args[i], seps_of(enc)));
        check_split(want.d, want.len, seps_of(enc), args, nargs);
    } else {
        /* Only an argv of nothing but separators is refused. */
        CHECK(rc == STUBDM_ENOENT && !args && nargs == 0);
        for (size_t i = 0; i < want.len; i++)
            CHECK(!want.d[i] ||
                  memchr(seps_of(enc), want.d[i], strlen(seps_of(enc))));
    }
    CHECK(rc != 0 || stubdm_ctx_errmsg(ctx)[0] == '\0');
    stubdm_dm_argv_free(args);
    free(want.d);
}

static void round_trip(stubdm_ctx *ctx, stubdm_dm_argv_encoding enc,
                       const uint8_t *data, size_t size)
{
    char *argv[64] = {NULL};
    size_t n = 0, off = 0;
    stubdm_nodes *nodes = NULL;
    char **back = NULL;
    size_t nback = 0;

    while (off < size && n < 64) {
        const uint8_t *z = memchr(data + off, 0, size - off);
        size_t len = z ? (size_t)(z - (data + off)) : size - off;
        argv[n] = dup_bytes((const char *)data + off, len);
        CHECK(argv[n]);
        n++;
        off += len + 1;
    }
    if (stubdm_dm_argv_encode(ctx, VM, 5, enc, 0, (const char *const *)argv, n,
                              &nodes) == 0) {
        for (size_t i = 0; i < nodes->n; i++)
            store_put(nodes->v[i].path, strlen(nodes->v[i].path),
                      nodes->v[i].value, nodes->v[i].len);
        store_seal();
        CHECK(stubdm_dm_argv_read(ctx, VM, enc, &back, &nback) == 0);
        CHECK(nback == n && count_args(back) == n);
        for (size_t i = 0; i < n; i++)
            CHECK(!strcmp(back[i], argv[i]));
    }
    stubdm_dm_argv_free(back);
    stubdm_nodes_free(nodes);
    for (size_t i = 0; i < n; i++)
        free(argv[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stubdm_ctx *ctx = NULL;

    if (size < 1 || stubdm_ctx_new(&ctx))
        return 0;
    if (data[0] & 4)
        round_trip(ctx, encodings[data[0] & 3], data + 1, size - 1);
    else
        hostile_store(ctx, encodings[data[0] & 3], data + 1, size - 1);
    store_clear();
    stubdm_ctx_free(ctx);
    return 0;
}
