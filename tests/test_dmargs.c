/*
 * dm-argv: golden encodings, read-back by the real xenstore tools as the
 * stubdomain, refusals (exact codes, messages, store unchanged),
 * permissions and request counts.
 */
#include "core/mem.h"
#include "protocol/dmargs.h"
#include "xen/xs.h"
#include "mockxs.h"
#include "run.h"
#include "xsfix.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define GUEST 4
#define STUB 5
#define OTHER 9
#define VM "/vm/00000000-0000-0000-0000-000000000001"
#define DIRP VM "/image/dm-argv"

static struct mockxs mock;
static stubdm_ctx *ctx;
static struct xs_handle *xs0;

static void setup(void)
{
    static const unsigned doms[] = {GUEST, STUB, OTHER};
    struct mockxs_opts o = {.domids = doms, .n_domids = 3};
    static const struct xs_permissions vmp[] = {{0, XS_PERM_NONE},
                                                {GUEST, XS_PERM_READ}};

    ck_assert_int_eq(mockxs_start(&mock, &o), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    xs0 = mockxs_open_as(&mock, 0);
    ck_assert_ptr_nonnull(xs0);
    ck_assert(xs_write(xs0, XBT_NULL, VM, "", 0));
    ck_assert(xs_set_permissions(xs0, XBT_NULL, VM,
                                 (struct xs_permissions *)vmp, 2));
    ck_assert(xs_write(xs0, XBT_NULL, VM "/image", "", 0));
}

static void teardown(void)
{
    xs_close(xs0);
    stubdm_ctx_free(ctx);
    ck_assert_int_eq(mockxs_stop(&mock), 0);
}

/* ---- argument files ------------------------------------------------------ */

struct argfile {
    char **args;
    size_t n, cap;
    stubdm_dm_argv_encoding enc;
    size_t max;
    char vm[128];
    unsigned stub;
};

static void push(struct argfile *f, char *a)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->args = realloc(f->args, f->cap * sizeof(*f->args));
        ck_assert_ptr_nonnull(f->args);
    }
    f->args[f->n++] = a;
}

static char *unescape(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    for (; *s; s++) {
        if (*s != '\\') {
            *o++ = *s;
            continue;
        }
        s++;
        switch (*s) {
        case 'n':
            *o++ = '\n';
            break;
        case 't':
            *o++ = '\t';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case 'x': {
            char h[3] = {s[1], s[2], 0};
            *o++ = (char)strtoul(h, NULL, 16);
            s += 2;
            break;
        }
        default:
            ck_abort_msg("bad escape \\%c", *s);
        }
    }
    *o = 0;
    return out;
}

static void load(const char *path, struct argfile *f)
{
    FILE *fp = fopen(path, "r");
    char line[8192];

    ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
    memset(f, 0, sizeof(*f));
    snprintf(f->vm, sizeof(f->vm), "%s", VM);
    f->stub = STUB;
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#')
            continue;
        if (!strncmp(line, "@encoding ", 10)) {
            const char *e = line + 10;
            f->enc = !strcmp(e, "minios") ? STUBDM_DM_ARGV_MINIOS_DMARGS
                     : !strcmp(e, "esc")  ? STUBDM_DM_ARGV_ESC_STRING
                                          : STUBDM_DM_ARGV_DIRECTORY;
        } else if (!strncmp(line, "@max ", 5)) {
            f->max = strtoul(line + 5, NULL, 10);
        } else if (!strncmp(line, "@vm ", 4)) {
            snprintf(f->vm, sizeof(f->vm), "%.100s", line + 4);
        } else if (!strncmp(line, "@repeat ", 8)) {
            char *end;
            unsigned long k = strtoul(line + 8, &end, 10);
            for (unsigned long i = 0; i < k; i++)
                push(f, unescape(end + 1));
        } else {
            push(f, unescape(line));
        }
    }
    fclose(fp);
}

static void unload(struct argfile *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->args[i]);
    free(f->args);
}

/* The golden text of an encoding: rendered nodes or the refusal. */
static char *encode_text(const struct argfile *f)
{
    stubdm_nodes *nodes = NULL;
    int rc = stubdm_dm_argv_encode(ctx, f->vm, f->stub, f->enc, f->max,
                                   (const char *const *)f->args, f->n, &nodes);
    char *out;

    if (rc) {
        ck_assert_ptr_null(nodes);
        out = stubdm__sprintf("error %s: %s\n", stubdm_errname(rc),
                              stubdm_ctx_errmsg(ctx));
    } else {
        out = stubdm__nodes_render(nodes);
        stubdm_nodes_free(nodes);
    }
    ck_assert_ptr_nonnull(out);
    return out;
}

START_TEST(test_golden)
{
    const char *dir = STUBDM_TEST_DATA "/dmargs";
    const char *regen = getenv("STUBDM_REGEN_GOLDEN");
    DIR *d = opendir(dir);
    struct dirent *e;
    int checked = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        char path[512], gold[512];
        struct argfile f;
        char *got, *want;

        if (len < 6 || strcmp(e->d_name + len - 5, ".args"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        snprintf(gold, sizeof(gold), "%s/%.*s.gold", dir, (int)(len - 5),
                 e->d_name);
        load(path, &f);
        got = encode_text(&f);
        if (regen && *regen == '1') {
            FILE *fp = fopen(gold, "w");
            ck_assert_ptr_nonnull(fp);
            fputs(got, fp);
            fclose(fp);
        }
        want = ts_slurp(gold);
        ck_assert_msg(want != NULL, "missing %s (STUBDM_REGEN_GOLDEN=1)",
                      gold);
        ck_assert_msg(!strcmp(got, want), "%s differs from %s:\n%s", path,
                      gold, got);
        free(got);
        free(want);
        unload(&f);
        checked++;
    }
    closedir(d);
    ck_assert_int_ge(checked, 15);
}
END_TEST

/* ---- read-back with the real tools, as the stubdomain --------------------- */

/* Run readback.sh as domid; returns the NUL-separated output. */
static char *tools_readback(unsigned domid, const char *dir, size_t *len)
{
    char cmd[1024];
    struct stubdm__buf b;
    char chunk[4096];
    size_t n;
    FILE *p;

    snprintf(cmd, sizeof(cmd),
             "XENSTORED_PATH='%s' bash '%s/dmargs/readback.sh' '%s'",
             mockxs_domain_socket(&mock, domid), STUBDM_TEST_DATA, dir);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    stubdm__buf_init(&b, 0);
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        ck_assert_int_eq(stubdm__buf_append(&b, chunk, n), 0);
    ck_assert_int_eq(pclose(p), 0);
    *len = b.len;
    stubdm__buf_append(&b, "", 1);
    return b.data;
}

static void assert_tools_give(const char *const *args, size_t nargs)
{
    size_t len, off = 0, i = 0;
    char *out = tools_readback(STUB, DIRP, &len);

    for (; off < len; i++) {
        ck_assert_uint_lt(i, nargs);
        ck_assert_msg(!strcmp(out + off, args[i]),
                      "argument %zu: got \"%.80s\"", i, out + off);
        off += strlen(out + off) + 1;
    }
    ck_assert_uint_eq(i, nargs);
    free(out);
}

static void assert_library_gives(stubdm_dm_argv_encoding enc,
                                 const char *const *args, size_t nargs)
{
    char **got = NULL;
    size_t n = 0;

    ck_assert_int_eq(stubdm_dm_argv_read(ctx, VM, enc, &got, &n), 0);
    ck_assert_uint_eq(n, nargs);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(got[i], args[i]);
    ck_assert_ptr_null(got[n]);
    stubdm_dm_argv_free(got);
}

START_TEST(test_roundtrip_tools)
{
    const char *meta[] = {
        "-name",     "my guest \"q\" 'x' $HOME `id` *.img ;|&<>",
        "a  b",      " leading",
        "trailing ", "=,:%",
        "-m",        "1"};
    char *big = malloc(STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN + 1);
    const char *one[2];
    char **many = calloc(STUBDM_DM_ARGV_MAX_ARGS, sizeof(*many));

    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0, meta,
                                          8),
                     0);
    assert_tools_give(meta, 8);
    assert_library_gives(STUBDM_DM_ARGV_DIRECTORY, meta, 8);

    /* A maximal argument: 2048 bytes, the default entry-size quota. */
    for (int i = 0; i < STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN; i++)
        big[i] = (char)('a' + i % 26);
    big[STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN] = 0;
    one[0] = "-append";
    one[1] = big;
    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0, one, 2),
                     0);
    assert_tools_give(one, 2);
    assert_library_gives(STUBDM_DM_ARGV_DIRECTORY, one, 2);

    /* 999 arguments: the keys still sort as text in numeric order. */
    for (int i = 0; i < STUBDM_DM_ARGV_MAX_ARGS; i++)
        many[i] = stubdm__sprintf("arg-%d", i + 1);
    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0,
                                          (const char *const *)many,
                                          STUBDM_DM_ARGV_MAX_ARGS),
                     0);
    assert_tools_give((const char *const *)many, STUBDM_DM_ARGV_MAX_ARGS);
    assert_library_gives(STUBDM_DM_ARGV_DIRECTORY, (const char *const *)many,
                         STUBDM_DM_ARGV_MAX_ARGS);
    for (int i = 0; i < STUBDM_DM_ARGV_MAX_ARGS; i++)
        free(many[i]);
    free(many);
    free(big);
}
END_TEST

/* Why the refusals exist: what the real tools do to such values. */
START_TEST(test_real_stubdomain_mangles)
{
    size_t len;
    char *out;
    static const struct xs_permissions p[] = {{0, XS_PERM_NONE},
                                              {STUB, XS_PERM_READ}};

    ck_assert(xs_write(xs0, XBT_NULL, DIRP, "", 0));
    ck_assert(xs_set_permissions(xs0, XBT_NULL, DIRP,
                                 (struct xs_permissions *)p, 2));
    ck_assert(xs_write(xs0, XBT_NULL, DIRP "/001", "a", 1));
    ck_assert(xs_write(xs0, XBT_NULL, DIRP "/002", "", 0));
    ck_assert(xs_write(xs0, XBT_NULL, DIRP "/003", "caf\xc3\xa9", 5));
    ck_assert(xs_write(xs0, XBT_NULL, DIRP "/004", "x\x1by", 3));
    ck_assert(xs_write(xs0, XBT_NULL, DIRP "/005", "b\\s", 3));
    ck_assert(xs_write(xs0, XBT_NULL, DIRP "/006", "t\tu", 3));
    out = tools_readback(STUB, DIRP, &len);
    /* The empty value is dropped; the others come back escaped. */
    ck_assert_uint_eq(len, sizeof("a\0caf\\xc3\\xa9\0x\\x1by\0b\\\\s\0t\\tu"));
    ck_assert_int_eq(memcmp(out, "a\0caf\\xc3\\xa9\0x\\x1by\0b\\\\s\0t\\tu",
                            len),
                     0);
    free(out);
    /* The library's reader reads the same way. */
    {
        const char *want[] = {"a", "caf\\xc3\\xa9", "x\\x1by", "b\\\\s",
                              "t\\tu"};
        assert_library_gives(STUBDM_DM_ARGV_DIRECTORY, want, 5);
    }
}
END_TEST

/* ---- refusals ------------------------------------------------------------ */

struct refusal {
    stubdm_dm_argv_encoding enc;
    size_t max;
    const char *vm;
    unsigned stub;
    const char *args[6];
    size_t nargs;
    int rc;
    const char *msg; /* substring */
};

static void check_refusal(const struct refusal *r, const char *const *args,
                          size_t nargs)
{
    char *before = xsfix_dump(&mock), *after;
    uint64_t req = stubdm__xs_requests(ctx);
    int rc = stubdm_dm_argv_write(ctx, r->vm ? r->vm : VM,
                                  r->stub ? r->stub : STUB, r->enc, r->max,
                                  args, nargs);

    ck_assert_msg(rc == r->rc, "expected %s, got %s (%s)",
                  stubdm_errname(r->rc), stubdm_errname(rc),
                  stubdm_ctx_errmsg(ctx));
    ck_assert_msg(strstr(stubdm_ctx_errmsg(ctx), r->msg),
                  "message \"%s\" lacks \"%s\"", stubdm_ctx_errmsg(ctx),
                  r->msg);
    /* Refused before any request, and the store is untouched. */
    ck_assert_uint_eq(stubdm__xs_requests(ctx), req);
    after = xsfix_dump(&mock);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}

static char longarg[STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN + 2];

static const struct refusal refusals[] = {
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0,
     {0},
     0,
     STUBDM_EINVAL,
     "dm-argv: the argument list is empty"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0,
     {"-a", "-b", "x\ny"},
     3,
     STUBDM_EINVAL,
     "dm-argv: args[2] (key 003) contains a newline at byte 1"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0,
     {"-a", ""},
     2,
     STUBDM_EINVAL,
     "dm-argv: args[1] (key 002) is empty"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0,
     {"caf\xc3\xa9"},
     1,
     STUBDM_EINVAL,
     "dm-argv: args[0] (key 001) contains byte 0xc3 at byte 3"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0,
     {"-a", "x\x1b"},
     2,
     STUBDM_EINVAL,
     "args[1] (key 002) contains byte 0x1b"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0,
     {"a\\b"},
     1,
     STUBDM_EINVAL,
     "args[0] (key 001) contains byte 0x5c"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0,
     {"a", "b", "c", "d\te"},
     4,
     STUBDM_EINVAL,
     "args[3] (key 004) contains byte 0x09"},
    {STUBDM_DM_ARGV_DIRECTORY,
     4,
     NULL,
     0,
     {"-m", "12345"},
     2,
     STUBDM_ELIMIT,
     "dm-argv: args[1] (key 002) is 5 bytes, more than the 4"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     "/local/domain/4",
     0,
     {"-m"},
     1,
     STUBDM_EINVAL,
     "does not start with /vm/"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     "/vm/a.b",
     0,
     {"-m"},
     1,
     STUBDM_EINVAL,
     "not a valid xenstore path"},
    {STUBDM_DM_ARGV_DIRECTORY,
     0,
     NULL,
     0x7FF0,
     {"-m"},
     1,
     STUBDM_EINVAL,
     "invalid stubdomain domid"},
    {STUBDM_DM_ARGV_MINIOS_DMARGS,
     0,
     NULL,
     0,
     {"-name", "a b"},
     2,
     STUBDM_EINVAL,
     "dmargs (MiniOS): args[1] contains a space at byte 1"},
    {STUBDM_DM_ARGV_MINIOS_DMARGS,
     0,
     NULL,
     0,
     {"-name", ""},
     2,
     STUBDM_EINVAL,
     "dmargs (MiniOS): args[1] is empty"},
    {STUBDM_DM_ARGV_MINIOS_DMARGS,
     8,
     NULL,
     0,
     {"-m", "1024", "-x"},
     3,
     STUBDM_ELIMIT,
     "the joined string reaches 10 bytes at args[2]"},
    {STUBDM_DM_ARGV_ESC_STRING,
     0,
     NULL,
     0,
     {"a", "b\x1b"},
     2,
     STUBDM_EINVAL,
     "args[1] contains the separator byte 0x1b at byte 1"},
    {STUBDM_DM_ARGV_ESC_STRING,
     0,
     NULL,
     0,
     {"a\n"},
     1,
     STUBDM_EINVAL,
     "args[0] contains a newline at byte 1"},
};

START_TEST(test_refusals)
{
    /* Something to keep: an earlier argv must survive refused writes. */
    const char *prev[] = {"-m", "512"};
    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0, prev,
                                          2),
                     0);
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
        check_refusal(&refusals[i], refusals[i].args, refusals[i].nargs);
}
END_TEST

START_TEST(test_refusal_limits)
{
    struct refusal r = {STUBDM_DM_ARGV_DIRECTORY,
                        0,
                        NULL,
                        0,
                        {0},
                        0,
                        STUBDM_ELIMIT,
                        "dm-argv: args[1] (key 002) is 2049 "
                        "bytes, more than the 2048"};
    const char *args[2] = {"-append", longarg};
    const char **many = calloc(1000, sizeof(*many));
    const char *withnull[] = {"-a", NULL};

    memset(longarg, 'x', STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN + 1);
    check_refusal(&r, args, 2);
    for (int i = 0; i < 1000; i++)
        many[i] = "-x";
    r.msg = "dm-argv: 1000 arguments, more than the 999";
    check_refusal(&r, many, 1000);
    r.rc = STUBDM_EINVAL;
    r.msg = "dm-argv: args[1] is NULL";
    check_refusal(&r, withnull, 2);
    /* A large configured limit is still bounded by the message size. */
    {
        static char huge[4090];
        const char *h[] = {huge};
        memset(huge, 'y', sizeof(huge) - 1);
        r.max = 8192;
        r.rc = STUBDM_ELIMIT;
        r.msg = "more than a 4096-byte xenstore message";
        check_refusal(&r, h, 1);
    }
    free(many);
}
END_TEST

/* ---- behaviour ----------------------------------------------------------- */

START_TEST(test_stale_keys_removed)
{
    const char *five[] = {"1", "2", "3", "4", "5"};
    const char *two[] = {"a", "b"};
    unsigned n = 0;
    char **k;

    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_MINIOS_DMARGS, 0,
                                          five, 5),
                     0);
    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0, five,
                                          5),
                     0);
    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0, two, 2),
                     0);
    k = xs_directory(xs0, XBT_NULL, DIRP, &n);
    ck_assert_uint_eq(n, 2);
    free(k);
    /* The legacy string of the first write is gone too. */
    ck_assert_ptr_null(xs_read(xs0, XBT_NULL, VM "/image/dmargs", NULL));
    assert_tools_give(two, 2);
}
END_TEST

START_TEST(test_legacy_roundtrip)
{
    const char *a[] = {"-M", "xenfv", "-m", "1024", "caf\xc3\xa9"};
    const char *e[] = {"-name", "my guest", "a\\b", "caf\xc3\xa9", "t\tx"};
    unsigned int len;
    char *v;

    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_MINIOS_DMARGS, 0, a,
                                          5),
                     0);
    v = xs_read(xs0, XBT_NULL, VM "/image/dmargs", &len);
    ck_assert_str_eq(v, "-M xenfv -m 1024 caf\xc3\xa9");
    free(v);
    assert_library_gives(STUBDM_DM_ARGV_MINIOS_DMARGS, a, 5);
    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_ESC_STRING, 0, e, 5),
                     0);
    assert_library_gives(STUBDM_DM_ARGV_ESC_STRING, e, 5);
    ck_assert_int_eq(stubdm_dm_argv_read(ctx, VM, STUBDM_DM_ARGV_DIRECTORY,
                                         NULL, NULL),
                     STUBDM_EINVAL);
}
END_TEST

START_TEST(test_permissions)
{
    const char *a[] = {"-m", "512"};
    struct xs_handle *stub = mockxs_open_as(&mock, STUB);
    struct xs_handle *guest = mockxs_open_as(&mock, GUEST);
    struct xs_handle *other = mockxs_open_as(&mock, OTHER);
    unsigned n;
    char *v, **k;

    ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0, a, 2),
                     0);
    /* The stubdomain reads and lists, but cannot change, its argv. */
    v = xs_read(stub, XBT_NULL, DIRP "/002", NULL);
    ck_assert_str_eq(v, "512");
    free(v);
    k = xs_directory(stub, XBT_NULL, DIRP, &n);
    ck_assert_uint_eq(n, 2);
    free(k);
    ck_assert(!xs_write(stub, XBT_NULL, DIRP "/002", "1", 1));
    ck_assert_int_eq(errno, EACCES);
    ck_assert(!xs_write(stub, XBT_NULL, DIRP "/003", "1", 1));
    ck_assert_int_eq(errno, EACCES);
    /* The guest and an unrelated domain can do nothing. */
    ck_assert_ptr_null(xs_read(guest, XBT_NULL, DIRP "/001", NULL));
    ck_assert_int_eq(errno, EACCES);
    ck_assert_ptr_null(xs_directory(guest, XBT_NULL, DIRP, &n));
    ck_assert_int_eq(errno, EACCES);
    ck_assert_ptr_null(xs_read(other, XBT_NULL, DIRP "/001", NULL));
    ck_assert_int_eq(errno, EACCES);
    ck_assert(!xs_write(other, XBT_NULL, DIRP "/001", "1", 1));
    ck_assert_int_eq(errno, EACCES);
    ck_assert(!xs_rm(other, XBT_NULL, DIRP));
    xs_close(stub);
    xs_close(guest);
    xs_close(other);
}
END_TEST

START_TEST(test_request_count)
{
    static const size_t sizes[] = {10, 100, 999};
    char **args = calloc(999, sizeof(*args));

    for (size_t i = 0; i < 999; i++)
        args[i] = stubdm__sprintf("-arg%zu", i);
    for (size_t s = 0; s < 3; s++) {
        uint64_t before = stubdm__xs_requests(ctx);
        ck_assert_int_eq(stubdm_dm_argv_write(ctx, VM, STUB,
                                              STUBDM_DM_ARGV_DIRECTORY, 0,
                                              (const char *const *)args,
                                              sizes[s]),
                         0);
        /* start + rm dm-argv + rm dmargs + write dir + set perms + N
         * writes + commit, in one transaction. */
        ck_assert_uint_eq(stubdm__xs_requests(ctx) - before, sizes[s] + 6);
    }
    for (size_t i = 0; i < 999; i++)
        free(args[i]);
    free(args);
}
END_TEST

START_TEST(test_failure_midway)
{
    /* A store with a smaller entry-size quota refuses the 3rd value in
     * the middle of the transaction: nothing may remain. */
    struct mockxs small;
    static const unsigned doms[] = {STUB};
    struct mockxs_opts o = {.domids = doms, .n_domids = 1, .entry_size = 8};
    const char *a[] = {"-m", "512", "0123456789", "-x"};
    stubdm_ctx *c2;
    char *before, *after;

    ck_assert_int_eq(mockxs_start(&small, &o), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&small), 1);
    ck_assert_int_eq(stubdm_ctx_new(&c2), 0);
    ck_assert_int_eq(mockxs_dump(&small, &before), 0);
    ck_assert_int_eq(stubdm_dm_argv_write(c2, VM, STUB,
                                          STUBDM_DM_ARGV_DIRECTORY, 0, a, 4),
                     STUBDM_ELIMIT);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(c2), DIRP "/003"));
    ck_assert_int_eq(stubdm_ctx_os_errno(c2), E2BIG);
    ck_assert_int_eq(mockxs_dump(&small, &after), 0);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    stubdm_ctx_free(c2);
    ck_assert_int_eq(mockxs_stop(&small), 0);
}
END_TEST

START_TEST(test_reader_bounds)
{
    char p[128];
    char **got = NULL;

    ck_assert_int_eq(stubdm_dm_argv_read(ctx, VM, STUBDM_DM_ARGV_DIRECTORY,
                                         &got, NULL),
                     STUBDM_ENOENT);
    for (int i = 1; i <= 1000; i++) {
        snprintf(p, sizeof(p), DIRP "/%03d", i);
        ck_assert(xs_write(xs0, XBT_NULL, p, "x", 1));
    }
    ck_assert_int_eq(stubdm_dm_argv_read(ctx, VM, STUBDM_DM_ARGV_DIRECTORY,
                                         &got, NULL),
                     STUBDM_ELIMIT);
    ck_assert_ptr_null(got);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "1000 keys"));
}
END_TEST

/* A legacy value is a C string to the stubdomain reading it: a NUL byte a
 * hostile store put in it ends it, and no empty argument comes out (found
 * by tests/fuzz/fuzz_dmargs_decode: "a \0c" gave "a" and ""). */
START_TEST(test_legacy_value_with_nul)
{
    static const char v[] = "-m 512 \0-x\0\0 y";
    char **got = NULL;
    size_t n = 0;

    ck_assert(xs_write(xs0, XBT_NULL, VM "/image/dmargs", "a \0c", 4));
    ck_assert_int_eq(stubdm_dm_argv_read(ctx, VM, STUBDM_DM_ARGV_MINIOS_DMARGS,
                                         &got, &n),
                     0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(got[0], "a");
    ck_assert_ptr_null(got[1]);
    stubdm_dm_argv_free(got);
    ck_assert(xs_write(xs0, XBT_NULL, VM "/image/dmargs", v, sizeof(v) - 1));
    ck_assert_int_eq(stubdm_dm_argv_read(ctx, VM, STUBDM_DM_ARGV_ESC_STRING,
                                         &got, &n),
                     0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(got[0], "-m 512 ");
    stubdm_dm_argv_free(got);
    ck_assert(xs_write(xs0, XBT_NULL, VM "/image/dmargs", "\0x", 2));
    ck_assert_int_eq(stubdm_dm_argv_read(ctx, VM, STUBDM_DM_ARGV_MINIOS_DMARGS,
                                         &got, &n),
                     STUBDM_ENOENT);
    ck_assert_ptr_null(got);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dmargs");
    TCase *t = tcase_create("dmargs");

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_golden);
    tcase_add_test(t, test_roundtrip_tools);
    tcase_add_test(t, test_real_stubdomain_mangles);
    tcase_add_test(t, test_refusals);
    tcase_add_test(t, test_refusal_limits);
    tcase_add_test(t, test_stale_keys_removed);
    tcase_add_test(t, test_legacy_roundtrip);
    tcase_add_test(t, test_permissions);
    tcase_add_test(t, test_request_count);
    tcase_add_test(t, test_failure_midway);
    tcase_add_test(t, test_reader_bounds);
    tcase_add_test(t, test_legacy_value_with_nul);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
