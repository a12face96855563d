/*
 * json.c: parsing with limits, strict UTF-8, exact integers, accessors,
 * the incremental parser at every split point, and the writer.
 */
#include "internal.h"
#include "json.h"

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
        "", "   ", "{", "{\"a\"}", "{\"a\":}", "[1,]", "{'a':1}", "nul",
        "{\"a\":1} x", "01", "\"\x01\"", "[1] [2]", "{\"a\":1,}", "/**/1",
        "{\"a\":\"\\x\"}", "1.", "-", "[\"a\x00\"]",
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
        "[\"\xe2\x82\"]", /* truncated */
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
    struct stubdm__json_doc *doc =
        parse_ok("[\"\xf0\x9f\x98\x80 \xe2\x82\xac \xc3\xa9 \xef\xbf\xbf\"]");
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
    ck_assert_str_eq(stubdm__json_parser_error(p)->msg, "is not a JSON object");
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
    const char *s =
        stubdm__json_as_string(stubdm__json_get(stubdm__json_doc_root(doc),
                                                "s"),
                               &len);
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
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
