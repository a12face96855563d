/*
 * json.c: parsing with limits, strict UTF-8, exact integers, accessors,
 * the incremental parser at every split point, and the writer.
 */
#include "core/mem.h"
#include "qmp/json.h"
#include "run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct stubdm__json_doc *parse_ok(const char *text)
{
    struct stubdm__json_doc *doc = NULL;
    struct stubdm__json_error e;
    int rc = stubdm__json_parse(text, strlen(text), NULL, &doc, &e);
    ck_assert_msg(rc == 0, "parse of %s failed: %s", text, e.msg);
    ck_assert_ptr_nonnull(doc);
    return doc;
}

static int parse_err(const void *text, size_t len,
                     const struct stubdm__json_limits *lim,
                     struct stubdm__json_error *e)
{
    struct stubdm__json_doc *doc = (void *)1;
    int rc = stubdm__json_parse(text, len, lim, &doc, e);
    ck_assert_ptr_null(doc);
    return rc;
}

/* Re-emit a doc's root with the writer. */
static char *emit(const struct stubdm__json *v)
{
    struct stubdm__buf b;
    stubdm__buf_init(&b, 0);
    struct stubdm__json_writer *w = stubdm__json_writer_new(&b);
    stubdm__json_w_value(w, v);
    ck_assert_int_eq(stubdm__json_writer_end(w), 0);
    return b.data;
}

START_TEST(test_scalars_and_accessors)
{
    struct stubdm__json_doc *doc = parse_ok(
        " {\"s\":\"h\\u00e9\\u0000x\",\"i\":-42,\"b\":true,\"n\":null,"
        "\"d\":1.5e3,\"a\":[1,2,3],\"o\":{}} ");
    const struct stubdm__json *r = stubdm__json_doc_root(doc);
    size_t len;
    ck_assert_int_eq(stubdm__json_type(r), STUBDM__JSON_OBJECT);
    ck_assert_uint_eq(stubdm__json_len(r), 7);
    const char *s = stubdm__json_as_string(stubdm__json_get(r, "s"), &len);
    ck_assert_uint_eq(len, 5); /* h, e-acute (2 bytes), NUL, x */
    ck_assert_mem_eq(s, "h\xc3\xa9\0x", 5);
    ck_assert(!stubdm__json_string_is(stubdm__json_get(r, "s"), "h\xc3\xa9"));
    int64_t i;
    ck_assert(stubdm__json_as_int64(stubdm__json_get(r, "i"), &i));
    ck_assert_int_eq(i, -42);
    uint64_t u;
    ck_assert(!stubdm__json_as_uint64(stubdm__json_get(r, "i"), &u));
    bool b = false;
    ck_assert(stubdm__json_as_bool(stubdm__json_get(r, "b"), &b));
    ck_assert(b);
    ck_assert_int_eq(stubdm__json_type(stubdm__json_get(r, "n")),
                     STUBDM__JSON_NULL);
    ck_assert(stubdm__json_is(stubdm__json_get(r, "n"), STUBDM__JSON_NULL));
    double d;
    ck_assert(stubdm__json_as_double(stubdm__json_get(r, "d"), &d));
    ck_assert(d == 1500.0);
    ck_assert(!stubdm__json_as_int64(stubdm__json_get(r, "d"), &i));
    const struct stubdm__json *a = stubdm__json_get(r, "a");
    ck_assert_uint_eq(stubdm__json_len(a), 3);
    ck_assert(stubdm__json_as_int64(stubdm__json_at(a, 2), &i));
    ck_assert_int_eq(i, 3);
    ck_assert_ptr_null(stubdm__json_at(a, 3));
    ck_assert_uint_eq(stubdm__json_len(stubdm__json_get(r, "o")), 0);
    ck_assert_ptr_null(stubdm__json_get(r, "missing"));
    const char *key;
    ck_assert_ptr_nonnull(stubdm__json_member(r, 6, &key, &len));
    ck_assert_str_eq(key, "o");
    /* NULL-tolerant chains */
    ck_assert_ptr_null(stubdm__json_get(stubdm__json_get(r, "x"), "y"));
    ck_assert_ptr_null(stubdm__json_as_string(stubdm__json_get(r, "i"), NULL));
    size_t tlen;
    const char *text = stubdm__json_doc_text(doc, &tlen);
    ck_assert_uint_eq(tlen, strlen(text));
    ck_assert(text[0] == '{' && text[tlen - 1] == '}');
    stubdm__json_doc_free(doc);
}
END_TEST

START_TEST(test_integers_exact)
{
    struct stubdm__json_doc *doc = parse_ok(
        "[9223372036854775807,-9223372036854775808,18446744073709551615,"
        "18446744073709551616,-9223372036854775809,0,-0,1.0]");
    const struct stubdm__json *r = stubdm__json_doc_root(doc);
    int64_t i;
    uint64_t u;
    ck_assert(stubdm__json_as_int64(stubdm__json_at(r, 0), &i));
    ck_assert_int_eq(i, INT64_MAX);
    ck_assert(stubdm__json_as_int64(stubdm__json_at(r, 1), &i));
    ck_assert(i == INT64_MIN);
    ck_assert(!stubdm__json_as_int64(stubdm__json_at(r, 2), &i));
    ck_assert(stubdm__json_as_uint64(stubdm__json_at(r, 2), &u));
    ck_assert(u == UINT64_MAX);
    ck_assert_int_eq(stubdm__json_type(stubdm__json_at(r, 3)),
                     STUBDM__JSON_DOUBLE);
    ck_assert_int_eq(stubdm__json_type(stubdm__json_at(r, 4)),
                     STUBDM__JSON_DOUBLE);
    ck_assert(stubdm__json_as_uint64(stubdm__json_at(r, 5), &u));
    ck_assert(stubdm__json_as_int64(stubdm__json_at(r, 6), &i));
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(stubdm__json_type(stubdm__json_at(r, 7)),
                     STUBDM__JSON_DOUBLE);
    /* Re-emission keeps every number's text. */
    char *out = emit(r);
    ck_assert_str_eq(out, "[9223372036854775807,-9223372036854775808,"
                          "18446744073709551615,18446744073709551616,"
                          "-9223372036854775809,0,0,1.0]");
    free(out);
    stubdm__json_doc_free(doc);
}
END_TEST

START_TEST(test_invalid_json)
{
    static const char *const bad[] = {
        "",         "   ",     "{",           "{\"a\"}",     "{\"a\":}",
        "[1,]",     "{'a':1}", "nul",         "{\"a\":1} x", "01",
        "\"\x01\"", "[1] [2]", "{\"a\":1,}",  "/**/1",       "{\"a\":\"\\x\"}",
        "1.",       "-",       "[\"a\x00\"]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct stubdm__json_error e;
        size_t len = strlen(bad[i]);
        if (i == sizeof(bad) / sizeof(bad[0]) - 1)
            len = 6; /* the NUL inside the string */
        int rc = parse_err(bad[i], len, NULL, &e);
        ck_assert_msg(rc == STUBDM_EPROTO, "%s: rc %d (%s)", bad[i], rc,
                      e.msg);
        ck_assert_int_eq(e.code, STUBDM_EPROTO);
        ck_assert(e.msg[0] != '\0');
    }
    struct stubdm__json_error e;
    ck_assert_int_eq(parse_err("{\"a\":1} x", 9, NULL, &e), STUBDM_EPROTO);
    ck_assert_str_eq(e.msg, "has data after the value");
    ck_assert_uint_eq(e.offset, 8);
    ck_assert_int_eq(parse_err("{\"a\"", 4, NULL, &e), STUBDM_EPROTO);
    ck_assert_str_eq(e.msg, "is truncated");
    ck_assert_int_eq(parse_err("{\"a\":1,}", 8, NULL, &e), STUBDM_EPROTO);
    ck_assert_msg(strncmp(e.msg, "is not valid JSON: ", 19) == 0, "%s", e.msg);
}
END_TEST

START_TEST(test_utf8_strict)
{
    static const char *const bad[] = {
        "[\"\xff\"]",             /* never valid */
        "[\"\xc0\x80\"]",         /* overlong NUL */
        "[\"\xc1\xbf\"]",         /* overlong */
        "[\"\xe0\x80\xaf\"]",     /* overlong '/' */
        "[\"\xed\xa0\x80\"]",     /* surrogate */
        "[\"\xf4\x90\x80\x80\"]", /* above U+10FFFF */
        "[\"\xf8\x88\x80\x80\x80\"]",
        "[\"\xe2\x82\"]",   /* truncated */
        "{\"\xc0\xaf\":1}", /* in a key */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct stubdm__json_error e;
        int rc = parse_err(bad[i], strlen(bad[i]), NULL, &e);
        ck_assert_msg(rc == STUBDM_EPROTO, "case %zu: rc %d", i, rc);
    }
    struct stubdm__json_error e;
    parse_err("[\"\xed\xa0\x80\"]", 7, NULL, &e);
    ck_assert_str_eq(e.msg, "has a string that is not valid UTF-8");
    struct stubdm__json_doc *doc = parse_ok(
        "[\"\xf0\x9f\x98\x80 \xe2\x82\xac \xc3\xa9 \xef\xbf\xbf\"]");
    stubdm__json_doc_free(doc);
}
END_TEST

START_TEST(test_duplicate_keys)
{
    struct stubdm__json_error e;
    ck_assert_int_eq(parse_err("{\"a\":1,\"b\":2,\"a\":3}", 19, NULL, &e),
                     STUBDM_EPROTO);
    ck_assert_str_eq(e.msg, "has a duplicate key \"a\"");
    /* A large object goes through the sorted check. */
    struct stubdm__buf b;
    stubdm__buf_init(&b, 0);
    stubdm__buf_append(&b, "{", 1);
    for (int i = 0; i < 100; i++) {
        char m[32];
        int n = snprintf(m, sizeof(m), "%s\"k%d\":%d", i ? "," : "",
                         i == 99 ? 42 : i, i);
        stubdm__buf_append(&b, m, (size_t)n);
    }
    stubdm__buf_append(&b, "}", 1);
    ck_assert_int_eq(parse_err(b.data, b.len, NULL, &e), STUBDM_EPROTO);
    ck_assert_str_eq(e.msg, "has a duplicate key \"k42\"");
    stubdm__buf_dispose(&b);
    /* Same keys in different objects are fine. */
    stubdm__json_doc_free(parse_ok("[{\"a\":1},{\"a\":2}]"));
}
END_TEST

START_TEST(test_limits)
{
    struct stubdm__json_limits lim = {.max_bytes = 10};
    struct stubdm__json_error e;
    ck_assert_int_eq(parse_err("[1,2,3,4,5,6]", 13, &lim, &e), STUBDM_ELIMIT);
    ck_assert_str_eq(e.msg, "exceeds 10 bytes");
    stubdm__json_doc_free(NULL);
    struct stubdm__json_doc *doc = NULL;
    ck_assert_int_eq(stubdm__json_parse("[1,2,3,4]", 9, &lim, &doc, &e), 0);
    stubdm__json_doc_free(doc);

    lim = (struct stubdm__json_limits){.max_depth = 3};
    ck_assert_int_eq(parse_err("[[[[1]]]]", 9, &lim, &e), STUBDM_ELIMIT);
    ck_assert_str_eq(e.msg, "is nested deeper than 3");
    ck_assert_uint_eq(e.offset, 4);

    lim = (struct stubdm__json_limits){.max_values = 4};
    ck_assert_int_eq(parse_err("[1,2,3,4]", 9, &lim, &e), STUBDM_ELIMIT);
    ck_assert_str_eq(e.msg, "has more than 4 values");

    lim = (struct stubdm__json_limits){.max_string = 3};
    ck_assert_int_eq(parse_err("[\"abcd\"]", 8, &lim, &e), STUBDM_ELIMIT);
    ck_assert_str_eq(e.msg, "has a string longer than 3 bytes");
    ck_assert_int_eq(parse_err("{\"abcd\":1}", 10, &lim, &e), STUBDM_ELIMIT);
    ck_assert_str_eq(e.msg, "has a key longer than 3 bytes");
}
END_TEST

/* A 100k-deep bomb is refused at depth 65 without deep recursion. */
START_TEST(test_nesting_bomb)
{
    size_t n = 100000;
    char *bomb = malloc(n);
    memset(bomb, '[', n);
    struct stubdm__json_error e;
    ck_assert_int_eq(parse_err(bomb, n, NULL, &e), STUBDM_ELIMIT);
    ck_assert_str_eq(e.msg, "is nested deeper than 64");
    ck_assert_uint_eq(e.offset, 65);
    memset(bomb, '{', n);
    ck_assert_int_eq(parse_err(bomb, n, NULL, &e), STUBDM_EPROTO);
    free(bomb);
}
END_TEST

/* Feeding one byte at a time gives the same tree and text. */
START_TEST(test_incremental_every_split)
{
    const char *text = "  {\"a\":[1,-2.5e1,\"x\\ny\",{\"b\":null}],"
                       "\"\xc3\xa9\":true}  ";
    size_t len = strlen(text);
    struct stubdm__json_doc *whole = parse_ok(text);
    char *expect = emit(stubdm__json_doc_root(whole));
    for (size_t split = 0; split <= len; split++) {
        struct stubdm__json_parser *p;
        ck_assert_int_eq(stubdm__json_parser_new(&p, NULL), 0);
        size_t used1 = 0, used2 = 0;
        int rc = stubdm__json_parser_feed(p, text, split, &used1);
        ck_assert_int_eq(used1, split < len - 2 ? split : len - 2);
        if (rc == STUBDM__JSON_MORE)
            rc = stubdm__json_parser_feed(p, text + split, len - split,
                                          &used2);
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_eq(used1 + used2, len - 2);
        struct stubdm__json_doc *doc = stubdm__json_parser_take(p);
        char *got = emit(stubdm__json_doc_root(doc));
        ck_assert_str_eq(got, expect);
        size_t tlen;
        ck_assert_str_eq(stubdm__json_doc_text(doc, &tlen),
                         stubdm__json_doc_text(whole, NULL));
        ck_assert_uint_eq(tlen, len - 4);
        free(got);
        stubdm__json_doc_free(doc);
        stubdm__json_parser_free(p);
    }
    /* One byte at a time. */
    struct stubdm__json_parser *p;
    ck_assert_int_eq(stubdm__json_parser_new(&p, NULL), 0);
    int rc = STUBDM__JSON_MORE;
    size_t i = 0;
    for (; i < len && rc == STUBDM__JSON_MORE; i++) {
        size_t used;
        rc = stubdm__json_parser_feed(p, text + i, 1, &used);
        ck_assert_uint_eq(used, 1);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(i, len - 2);
    struct stubdm__json_doc *doc = stubdm__json_parser_take(p);
    char *got = emit(stubdm__json_doc_root(doc));
    ck_assert_str_eq(got, expect);
    free(got);
    stubdm__json_doc_free(doc);
    /* The parser is reusable. */
    ck_assert_int_eq(stubdm__json_parser_reset(p, NULL), 0);
    size_t used;
    ck_assert_int_eq(stubdm__json_parser_feed(p, "7 ", 2, &used), 0);
    ck_assert_uint_eq(used, 1);
    doc = stubdm__json_parser_take(p);
    int64_t v;
    ck_assert(stubdm__json_as_int64(stubdm__json_doc_root(doc), &v));
    ck_assert_int_eq(v, 7);
    stubdm__json_doc_free(doc);
    /* require_object refuses a scalar at its first token. */
    ck_assert_int_eq(stubdm__json_parser_reset(p, NULL), 0);
    stubdm__json_parser_require_object(p, true);
    ck_assert_int_eq(stubdm__json_parser_feed(p, "[1]", 3, &used),
                     STUBDM_EPROTO);
    ck_assert_str_eq(stubdm__json_parser_error(p)->msg,
                     "is not a JSON object");
    stubdm__json_parser_free(p);
    free(expect);
    stubdm__json_doc_free(whole);
}
END_TEST

START_TEST(test_writer)
{
    struct stubdm__buf b;
    stubdm__buf_init(&b, 0);
    struct stubdm__json_writer *w = stubdm__json_writer_new(&b);
    stubdm__json_w_object_begin(w);
    stubdm__json_w_key(w, "s");
    stubdm__json_w_string(w, "q\"\\\n\x01\0\xc3\xa9", 8);
    stubdm__json_w_key(w, "n");
    stubdm__json_w_int64(w, -5);
    stubdm__json_w_key(w, "u");
    stubdm__json_w_uint64(w, UINT64_MAX);
    stubdm__json_w_key(w, "a");
    stubdm__json_w_array_begin(w);
    stubdm__json_w_bool(w, false);
    stubdm__json_w_null(w);
    stubdm__json_w_array_end(w);
    stubdm__json_w_object_end(w);
    ck_assert_int_eq(stubdm__json_writer_end(w), 0);
    ck_assert_str_eq(b.data, "{\"s\":\"q\\\"\\\\\\n\\u0001\\u0000\xc3\xa9\","
                             "\"n\":-5,\"u\":18446744073709551615,"
                             "\"a\":[false,null]}");
    /* Round trip through the parser. */
    struct stubdm__json_doc *doc = parse_ok(b.data);
    size_t len;
    const char *s = stubdm__json_as_string(
        stubdm__json_get(stubdm__json_doc_root(doc), "s"), &len);
    ck_assert_uint_eq(len, 8);
    ck_assert_mem_eq(s, "q\"\\\n\x01\0\xc3\xa9", 8);
    stubdm__json_doc_free(doc);

    /* Invalid UTF-8 and unbalanced containers are refused. */
    b.len = 0;
    w = stubdm__json_writer_new(&b);
    stubdm__json_w_string(w, "\xc0\x80", 2);
    ck_assert_int_eq(stubdm__json_writer_end(w), STUBDM_EINVAL);
    w = stubdm__json_writer_new(&b);
    stubdm__json_w_array_begin(w);
    ck_assert_int_eq(stubdm__json_writer_end(w), STUBDM_EINVAL);
    w = stubdm__json_writer_new(&b);
    stubdm__json_w_array_end(w);
    ck_assert_int_eq(stubdm__json_writer_end(w), STUBDM_EINVAL);
    stubdm__buf_dispose(&b);

    /* The buffer's limit bounds the output. */
    stubdm__buf_init(&b, 8);
    w = stubdm__json_writer_new(&b);
    stubdm__json_w_cstring(w, "0123456789");
    ck_assert_int_eq(stubdm__json_writer_end(w), STUBDM_ELIMIT);
    stubdm__buf_dispose(&b);
}
END_TEST

/* ---- the quick path against the incremental parse ----------------------- */

/* Outcome of one parse: a doc, or an error. */
struct outcome {
    struct stubdm__json_doc *doc;
    size_t used;
    int rc;
    struct stubdm__json_error err;
};

/* The wire's way: quick, and on a decline reset + feed on the same parser. */
static bool parse_wire_way(struct stubdm__json_parser *p,
                           const struct stubdm__json_limits *lim,
                           const unsigned char *t, size_t n, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->doc = stubdm__json_parser_quick(p, lim, t, n, &o->used);
    if (o->doc)
        return true;
    ck_assert_uint_eq(o->used, 0);
    ck_assert_int_eq(stubdm__json_parser_reset(p, lim), 0);
    o->rc = stubdm__json_parser_feed(p, t, n, &o->used);
    if (o->rc == 0)
        o->doc = stubdm__json_parser_take(p);
    else
        o->err = *stubdm__json_parser_error(p);
    return false;
}

static void parse_full_way(struct stubdm__json_parser *p,
                           const struct stubdm__json_limits *lim,
                           const unsigned char *t, size_t n, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    ck_assert_int_eq(stubdm__json_parser_reset(p, lim), 0);
    o->rc = stubdm__json_parser_feed(p, t, n, &o->used);
    if (o->rc == 0)
        o->doc = stubdm__json_parser_take(p);
    else
        o->err = *stubdm__json_parser_error(p);
}

/* Same verdict, same bytes used, same tree and text, same error. */
static bool check_same(struct stubdm__json_parser *wp,
                       struct stubdm__json_parser *fp,
                       const struct stubdm__json_limits *lim,
                       const unsigned char *t, size_t n)
{
    struct outcome a, b;
    bool quick = parse_wire_way(wp, lim, t, n, &a);
    parse_full_way(fp, lim, t, n, &b);
    ck_assert_msg(a.rc == b.rc, "rc %d vs %d on %.*s", a.rc, b.rc, (int)n, t);
    ck_assert_msg(a.used == b.used, "used %zu vs %zu on %.*s", a.used, b.used,
                  (int)n, t);
    if (b.rc == 0) {
        size_t la, lb;
        const char *ta = stubdm__json_doc_text(a.doc, &la);
        const char *tb = stubdm__json_doc_text(b.doc, &lb);
        ck_assert_uint_eq(la, lb);
        ck_assert(memcmp(ta, tb, la + 1) == 0);
        ck_assert_msg(stubdm__json_equal(stubdm__json_doc_root(a.doc),
                                         stubdm__json_doc_root(b.doc)),
                      "trees differ on %.*s", (int)n, t);
    } else {
        ck_assert_int_eq(a.err.code, b.err.code);
        ck_assert_uint_eq(a.err.offset, b.err.offset);
        ck_assert_str_eq(a.err.msg, b.err.msg);
    }
    stubdm__json_doc_free(a.doc);
    stubdm__json_doc_free(b.doc);
    return quick;
}

static struct stubdm__json_parser *object_parser(void)
{
    struct stubdm__json_parser *p;
    ck_assert_int_eq(stubdm__json_parser_new(&p, NULL), 0);
    stubdm__json_parser_require_object(p, true);
    return p;
}

START_TEST(test_quick_path_cases)
{
    /* Taken by the quick path (QMP's everyday messages). */
    static const char *const quick[] = {
        "{\"return\": {}, \"id\": 14}",
        "{\"return\":{},\"id\":1}\r\n",
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
        "\"running\": true}, \"id\": 7}\r\n{\"return\": {}}",
        "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 12}, "
        "\"event\": \"STOP\"}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, "
        "\"id\": 3}",
        "{}",
        "{\"a\":[],\"b\":[[],{}],\"c\":[1,-2,0,-0,true,false,null,\"\"]}",
        "{\"big\":18446744073709551615,\"neg\":-9223372036854775808}",
        "{\"huge\":18446744073709551616}", /* becomes a double */
        "{ \"a\" :\t1 ,\n\"b\"\r:[ 2 , 3 ] }",
    };
    /* Declined (then the incremental parse decides, identically). */
    static const char *const other[] = {
        "{\"a\":\"x\\\"y\"}",
        "{\"a\":\"\xc3\xa9\"}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\xff\"}",
        "{\"a\":1.5}",
        "{\"a\":1e5}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":-x}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":nul}",
        "{\"a\":true,\"a\":false}",
        "{\"a\" \"b\"}",
        "{\"a\":1,}",
        "{\"a\":[1,]}",
        "{,}",
        "[1]",
        " {\"a\":1}",
        "{\"a\":1",
        "{\"a\":\v1}",
        "{\"a\":1]",
        "{\"a\":[1}",
        "{\"a\"}",
        "{\"a\":}",
        "{1:2}",
        "{\"a\":\"b",
        "{\"a\":\"b\"",
        "{\"a\":[",
        "{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", /* deeper than the limit below */
        "{\"long string here\":1}",           /* longer than max_string */
    };
    struct stubdm__json_limits lim = {0, 4, 0, 12};
    struct stubdm__json_parser *wp = object_parser(), *fp = object_parser();

    for (size_t i = 0; i < sizeof(quick) / sizeof(quick[0]); i++)
        ck_assert_msg(check_same(wp, fp, NULL, (const unsigned char *)quick[i],
                                 strlen(quick[i])),
                      "not quick: %s", quick[i]);
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        const unsigned char *t = (const unsigned char *)other[i];
        ck_assert_msg(!check_same(wp, fp, &lim, t, strlen(other[i])),
                      "quick: %s", other[i]);
        check_same(wp, fp, NULL, t, strlen(other[i]));
    }
    stubdm__json_parser_free(wp);
    stubdm__json_parser_free(fp);
}
END_TEST

/* A doc handed back to a parser (from it or another one, small or with
 * extra chunks and an external text) serves its next values, quick or
 * incremental, and the parser frees a spare it still holds. */
START_TEST(test_parser_recycle)
{
    struct stubdm__json_parser *wp = object_parser(), *fp = object_parser(),
                               *other = object_parser();
    struct stubdm__buf big;
    struct outcome o;
    stubdm__buf_init(&big, 0);
    ck_assert_int_eq(stubdm__buf_append(&big, "{\"a\":[", 6), 0);
    for (int i = 0; i < 2000; i++)
        ck_assert_int_eq(stubdm__buf_append(&big, i ? ",\"xyzzy\"" : "1",
                                            i ? 8 : 1),
                         0);
    ck_assert_int_eq(stubdm__buf_append(&big, "]}", 2), 0);

    for (int round = 0; round < 6; round++) {
        /* A doc from the other parser, large every other round. */
        const char *t = round % 2 ? big.data : "{\"return\": {}, \"id\": 1}";
        size_t n = round % 2 ? big.len : strlen(t);
        parse_full_way(other, NULL, (const unsigned char *)t, n, &o);
        ck_assert_int_eq(o.rc, 0);
        stubdm__json_parser_recycle(wp, o.doc);
        /* The parser's next values are right, by either path. */
        check_same(wp, fp, NULL, (const unsigned char *)"{\"x\": [1, 2]}", 13);
        check_same(wp, fp, NULL, (const unsigned char *)"{\"x\": \"\\n\"}",
                   12);
        check_same(wp, fp, NULL, (const unsigned char *)big.data, big.len);
    }
    stubdm__json_parser_recycle(wp, NULL);
    parse_full_way(other, NULL, (const unsigned char *)"{}", 2, &o);
    stubdm__json_parser_recycle(wp, o.doc); /* held when the parser goes */
    stubdm__buf_dispose(&big);
    stubdm__json_parser_free(wp);
    stubdm__json_parser_free(fp);
    stubdm__json_parser_free(other);
}
END_TEST

/* ---- random JSON-ish text, mostly plain, sometimes not ---------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

struct gen {
    unsigned char buf[2048];
    size_t n;
};

static void put(struct gen *g, const char *s)
{
    size_t l = strlen(s);
    if (g->n + l <= sizeof(g->buf)) {
        memcpy(g->buf + g->n, s, l);
        g->n += l;
    }
}

static void put_ws(struct gen *g)
{
    static const char *const ws[] = {"",     "",   "",   " ",  "\t",
                                     "\r\n", "  ", "\v", "\f", "\n"};
    unsigned k = rnd(40);
    if (k < 10)
        put(g, ws[k]);
}

static void gen_string(struct gen *g)
{
    static const char *const bits[] = {"a",
                                       "id",
                                       "return",
                                       "event",
                                       "b",
                                       "x y",
                                       "-",
                                       "0",
                                       "",
                                       "QMP",
                                       "\\n",
                                       "\\\"",
                                       "\\u00e9",
                                       "\\ud83d\\ude00",
                                       "\\ud800",
                                       "\xc3\xa9",
                                       "\xff",
                                       "\x01",
                                       "\xe0\x80\x80",
                                       "\\u0000",
                                       "~",
                                       "{",
                                       "}",
                                       ":"};
    put(g, "\"");
    unsigned parts = rnd(4);
    for (unsigned i = 0; i < parts; i++) {
        unsigned k = rnd(60);
        put(g, k < 24 ? bits[k] : bits[k % 10]);
    }
    put(g, "\"");
}

static void gen_value(struct gen *g, int depth)
{
    static const char *const scalars[] = {"0",
                                          "1",
                                          "-1",
                                          "42",
                                          "-0",
                                          "01",
                                          "-",
                                          "1.5",
                                          "2e3",
                                          "-0.0e-1",
                                          "9223372036854775807",
                                          "9223372036854775808",
                                          "-9223372036854775808",
                                          "-9223372036854775809",
                                          "18446744073709551615",
                                          "18446744073709551616",
                                          "true",
                                          "false",
                                          "null",
                                          "tru",
                                          "nul",
                                          "falsey",
                                          "1.",
                                          ".5",
                                          "1e",
                                          "+1"};
    unsigned k = depth > 5 || g->n > sizeof(g->buf) - 64 ? 6 + rnd(8)
                                                         : rnd(14);
    put_ws(g);
    if (k < 4) {
        put(g, "{");
        unsigned m = rnd(5);
        for (unsigned i = 0; i < m; i++) {
            if (i)
                put(g, ",");
            put_ws(g);
            gen_string(g);
            put_ws(g);
            put(g, ":");
            gen_value(g, depth + 1);
            put_ws(g);
        }
        put(g, "}");
    } else if (k < 6) {
        put(g, "[");
        unsigned m = rnd(5);
        for (unsigned i = 0; i < m; i++) {
            if (i)
                put(g, ",");
            gen_value(g, depth + 1);
        }
        put_ws(g);
        put(g, "]");
    } else if (k < 9) {
        gen_string(g);
    } else {
        unsigned j = rnd(60);
        put(g, scalars[j < 26 ? j : j % 5]);
    }
}

START_TEST(test_quick_path_random)
{
    struct stubdm__json_parser *wp = object_parser(), *fp = object_parser();
    size_t quick = 0, total = 0;

    /* Memcheck runs this ~50x slower: fewer texts there (its point is
     * memory errors; the paths are the same). */
    const char *pre = getenv("LD_PRELOAD");
    int iters = pre && strstr(pre, "vgpreload") ? 2000 : 40000;
    for (int iter = 0; iter < iters; iter++) {
        struct gen g = {.n = 0};
        put(&g, "{");
        unsigned m = rnd(4);
        for (unsigned i = 0; i < m; i++) {
            if (i)
                put(&g, ",");
            put_ws(&g);
            gen_string(&g);
            put(&g, ":");
            gen_value(&g, 1);
        }
        put(&g, "}");
        if (rnd(2))
            put(&g, "\r\n");
        /* Mutations: a byte changed, dropped or inserted; cut short;
         * followed by more. */
        unsigned mut = rnd(10);
        if (mut == 0 && g.n)
            g.buf[rnd((unsigned)g.n)] = (unsigned char)rnd(256);
        else if (mut == 1 && g.n > 1) {
            size_t at = rnd((unsigned)g.n);
            memmove(g.buf + at, g.buf + at + 1, g.n - at - 1);
            g.n--;
        } else if (mut == 2 && g.n < sizeof(g.buf)) {
            size_t at = rnd((unsigned)g.n + 1);
            memmove(g.buf + at + 1, g.buf + at, g.n - at);
            g.buf[at] = (unsigned char)"{}[]\",:0-e.tn \\"[rnd(15)];
            g.n++;
        } else if (mut == 3 && g.n) {
            g.n = rnd((unsigned)g.n);
        } else if (mut == 4) {
            put(&g, rnd(2) ? "{\"return\":{}}" : "x");
        }
        /* Limits: default, or small enough to be reached. */
        struct stubdm__json_limits small = {.max_bytes = 16 + rnd(200),
                                            .max_depth = 1 + rnd(5),
                                            .max_values = 1 + rnd(30),
                                            .max_string = rnd(12)};
        const struct stubdm__json_limits *lim = rnd(3) ? NULL : &small;
        total++;
        quick += check_same(wp, fp, lim, g.buf, g.n);
    }
    /* The generator is mostly plain: the quick path must be exercised. */
    ck_assert_msg(quick > total / 10, "quick %zu of %zu", quick, total);
    stubdm__json_parser_free(wp);
    stubdm__json_parser_free(fp);
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_scalars_and_accessors);
    tcase_add_test(tc, test_integers_exact);
    tcase_add_test(tc, test_invalid_json);
    tcase_add_test(tc, test_utf8_strict);
    tcase_add_test(tc, test_duplicate_keys);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_nesting_bomb);
    tcase_add_test(tc, test_incremental_every_split);
    tcase_add_test(tc, test_writer);
    suite_add_tcase(s, tc);
    /* The quick path against the incremental parser: tens of thousands of
     * parses (seconds under ASan in a Debug build, more on a loaded
     * machine), beyond Check's default 4 s. */
    tc = tcase_create("quick");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_quick_path_cases);
    tcase_add_test(tc, test_quick_path_random);
    tcase_add_test(tc, test_parser_recycle);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(json_suite());
}
