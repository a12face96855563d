/*
 * qmp/wire.c: framing at every split point, classification, ids, limits,
 * backpressure, discard-until-greeting, and the command encoder.
 */
#include "core/mem.h"
#include "qmp/wire.h"
#include "run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GREETING                                                              \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 2, "        \
    "\"major\": 8}, \"package\": \"Debian 1:8.2.1\"}, "                       \
    "\"capabilities\": [\"oob\"]}}\r\n"
#define GREETING_NO_OOB                                                       \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 1, "        \
    "\"major\": 2}, \"package\": \"\"}, \"capabilities\": []}}\r\n"
#define EVENT                                                                 \
    "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 5}, "        \
    "\"event\": \"STOP\"}\r\n"

/* Everything a feed produced, as one comparable string per message. */
struct outcome {
    char text[8192];
    size_t len;
    int rc;
    char errmsg[256];
};

static void describe(struct outcome *o, const struct stubdm__qmp_msg *m)
{
    char line[1024];
    int n = snprintf(line, sizeof(line),
                     "%s id=%d/%llu class=%s ev=%s raw=%.*s\n",
                     stubdm__qmp_msg_type_name(m->type), (int)m->id_kind,
                     (unsigned long long)m->id,
                     m->error_class ? m->error_class : "-",
                     m->event ? m->event : "-", (int)m->raw_len, m->raw);
    ck_assert(n > 0 && o->len + (size_t)n < sizeof(o->text));
    memcpy(o->text + o->len, line, (size_t)n);
    o->len += (size_t)n;
    o->text[o->len] = '\0';
}

/* Drain the wire into o; returns the number of messages. */
static int drain(struct stubdm__qmp_wire *w, struct outcome *o)
{
    int count = 0;
    struct stubdm__qmp_msg *m;
    int rc;
    while ((rc = stubdm__qmp_wire_next(w, &m)) == 0) {
        describe(o, m);
        stubdm__qmp_msg_free(m);
        count++;
    }
    if (rc != 1) {
        o->rc = rc;
        snprintf(o->errmsg, sizeof(o->errmsg), "%s",
                 stubdm__qmp_wire_errmsg(w));
    }
    return count;
}

/* Feed text in chunks of 'step' bytes (0: all at once), honouring
 * backpressure, then signal EOF. */
static void run(const void *text, size_t len, size_t step, bool discard,
                const struct stubdm__qmp_limits *lim, struct outcome *o)
{
    struct stubdm__qmp_wire w;
    memset(o, 0, sizeof(*o));
    ck_assert_int_eq(stubdm__qmp_wire_init(&w, lim, discard), 0);
    const char *p = text;
    size_t off = 0;
    while (off < len && o->rc == 0) {
        size_t n = step && len - off > step ? step : len - off;
        size_t used;
        int rc = stubdm__qmp_wire_feed(&w, p + off, n, &used);
        ck_assert_uint_le(used, n);
        off += used;
        drain(&w, o);
        if (rc)
            ck_assert_int_eq(o->rc, rc);
        if (rc == 0 && used == 0)
            ck_assert_msg(0, "feed made no progress with an empty queue");
    }
    if (o->rc == 0) {
        int rc = stubdm__qmp_wire_eof(&w);
        if (rc) {
            o->rc = rc;
            snprintf(o->errmsg, sizeof(o->errmsg), "%s",
                     stubdm__qmp_wire_errmsg(&w));
        }
    }
    stubdm__qmp_wire_dispose(&w);
}

/* Run at every chunk size and check all agree with the one-shot run. */
static void run_all_splits(const void *text, size_t len, bool discard,
                           const struct stubdm__qmp_limits *lim,
                           struct outcome *o)
{
    run(text, len, 0, discard, lim, o);
    struct outcome *other = malloc(sizeof(*other));
    for (size_t step = 1; step <= len; step++) {
        run(text, len, step, discard, lim, other);
        ck_assert_msg(strcmp(other->text, o->text) == 0,
                      "step %zu:\n%s\nvs whole:\n%s", step, other->text,
                      o->text);
        ck_assert_int_eq(other->rc, o->rc);
        ck_assert_str_eq(other->errmsg, o->errmsg);
    }
    free(other);
}

START_TEST(test_session_every_split)
{
    const char *text = GREETING
        "{\"return\": {}, \"id\": 1}\r\n"
        "{\"return\": {\"status\": \"running\", \"running\": true}, "
        "\"id\": 2}\r\n" EVENT
        "{\"id\": 3, \"error\": {\"class\": \"GenericError\", "
        "\"desc\": \"no \\\"such\\\" device\"}}\r\n"
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"x\"}}\n";
    struct outcome o;
    run_all_splits(text, strlen(text), false, NULL, &o);
    ck_assert_int_eq(o.rc, 0);
    ck_assert_str_eq(
        o.text,
        "greeting id=0/0 class=- ev=- raw={\"QMP\": {\"version\": {\"qemu\": "
        "{\"micro\": 1, \"minor\": 2, \"major\": 8}, \"package\": \"Debian "
        "1:8.2.1\"}, \"capabilities\": [\"oob\"]}}\n"
        "return id=1/1 class=- ev=- raw={\"return\": {}, \"id\": 1}\n"
        "return id=1/2 class=- ev=- raw={\"return\": {\"status\": "
        "\"running\", \"running\": true}, \"id\": 2}\n"
        "event id=0/0 class=- ev=STOP raw={\"timestamp\": {\"seconds\": "
        "1700000000, \"microseconds\": 5}, \"event\": \"STOP\"}\n"
        "error id=1/3 class=GenericError ev=- raw={\"id\": 3, \"error\": "
        "{\"class\": \"GenericError\", \"desc\": \"no \\\"such\\\" "
        "device\"}}\n"
        "error id=0/0 class=CommandNotFound ev=- raw={\"error\": {\"class\": "
        "\"CommandNotFound\", \"desc\": \"x\"}}\n");
}
END_TEST

static struct stubdm__qmp_msg *one(const char *text)
{
    struct stubdm__qmp_wire w;
    ck_assert_int_eq(stubdm__qmp_wire_init(&w, NULL, false), 0);
    size_t used;
    ck_assert_int_eq(stubdm__qmp_wire_feed(&w, text, strlen(text), &used), 0);
    ck_assert_uint_eq(used, strlen(text));
    struct stubdm__qmp_msg *m;
    ck_assert_int_eq(stubdm__qmp_wire_next(&w, &m), 0);
    ck_assert_int_eq(stubdm__qmp_wire_next(&w, &(struct stubdm__qmp_msg *){0}),
                     1);
    stubdm__qmp_wire_dispose(&w);
    return m; /* messages outlive the wire */
}

/* The error message for a single bad message. */
static int bad(const char *text, size_t len, char *msg, size_t msg_len)
{
    struct outcome o;
    run(text, len, 0, false, NULL, &o);
    snprintf(msg, msg_len, "%s", o.errmsg);
    return o.rc;
}

START_TEST(test_greeting_fields)
{
    struct stubdm__qmp_msg *m = one(GREETING);
    ck_assert_int_eq(m->type, STUBDM__QMP_GREETING);
    ck_assert_uint_eq(m->qemu_major, 8);
    ck_assert_uint_eq(m->qemu_minor, 2);
    ck_assert_uint_eq(m->qemu_micro, 1);
    ck_assert_str_eq(m->qemu_package, "Debian 1:8.2.1");
    ck_assert(m->oob);
    ck_assert_uint_eq(stubdm__json_len(m->capabilities), 1);
    stubdm__qmp_msg_free(m);

    m = one(GREETING_NO_OOB);
    ck_assert(!m->oob);
    ck_assert_uint_eq(m->qemu_major, 2);
    ck_assert_uint_eq(stubdm__json_len(m->capabilities), 0);
    stubdm__qmp_msg_free(m);

    m = one("{\"QMP\":{\"version\":{\"qemu\":{\"major\":9,\"minor\":0,"
            "\"micro\":0}},\"capabilities\":[\"x\",\"oob\"]}}");
    ck_assert_str_eq(m->qemu_package, "");
    ck_assert(m->oob);
    stubdm__qmp_msg_free(m);

    char e[256];
    const char *g = "{\"QMP\":{\"version\":{\"qemu\":{\"major\":-1,"
                    "\"minor\":0,\"micro\":0}},\"capabilities\":[]}}";
    ck_assert_int_eq(bad(g, strlen(g), e, sizeof(e)), STUBDM_EPROTO);
    ck_assert_str_eq(e, "malformed QMP message at stream byte 0: greeting: "
                        "version.qemu.{major,minor,micro} are not all "
                        "unsigned 32-bit integers");
    g = "{\"QMP\":{\"version\":{\"qemu\":{\"major\":1,\"minor\":0,"
        "\"micro\":0}},\"capabilities\":[1]}}";
    ck_assert_int_eq(bad(g, strlen(g), e, sizeof(e)), STUBDM_EPROTO);
    ck_assert_str_eq(e, "malformed QMP message at stream byte 0: greeting: "
                        "capability 0 is not a string");
    g = "{\"QMP\":[]}";
    ck_assert_int_eq(bad(g, strlen(g), e, sizeof(e)), STUBDM_EPROTO);
    ck_assert_str_eq(e, "malformed QMP message at stream byte 0: greeting: "
                        "\"QMP\" is not an object");
}
END_TEST

START_TEST(test_two_greetings_classified)
{
    struct outcome o;
    const char *text = GREETING GREETING_NO_OOB;
    run(text, strlen(text), 0, false, NULL, &o);
    ck_assert_int_eq(o.rc, 0);
    ck_assert(strncmp(o.text, "greeting", 8) == 0);
    ck_assert_ptr_nonnull(strstr(o.text + 8, "\ngreeting"));
}
END_TEST

START_TEST(test_ids)
{
    static const struct {
        const char *text;
        enum stubdm__qmp_id_kind kind;
        uint64_t id;
    } cases[] = {
        {"{\"return\":{},\"id\":0}", STUBDM__QMP_ID_NUMBER, 0},
        {"{\"return\":{},\"id\":18446744073709551615}", STUBDM__QMP_ID_NUMBER,
         UINT64_MAX},
        {"{\"return\":{},\"id\":18446744073709551616}", STUBDM__QMP_ID_FOREIGN,
         0},
        {"{\"return\":{},\"id\":\"1\"}", STUBDM__QMP_ID_FOREIGN, 0},
        {"{\"return\":{},\"id\":-1}", STUBDM__QMP_ID_FOREIGN, 0},
        {"{\"return\":{},\"id\":1.0}", STUBDM__QMP_ID_FOREIGN, 0},
        {"{\"return\":{},\"id\":1e2}", STUBDM__QMP_ID_FOREIGN, 0},
        {"{\"return\":{},\"id\":null}", STUBDM__QMP_ID_FOREIGN, 0},
        {"{\"return\":{},\"id\":{\"a\":1}}", STUBDM__QMP_ID_FOREIGN, 0},
        {"{\"return\":{},\"id\":[7]}", STUBDM__QMP_ID_FOREIGN, 0},
        {"{\"return\":42}", STUBDM__QMP_ID_NONE, 0},
        {"{\"error\":{\"class\":\"c\",\"desc\":\"d\"},\"id\":\"x\"}",
         STUBDM__QMP_ID_FOREIGN, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct stubdm__qmp_msg *m = one(cases[i].text);
        ck_assert_msg(m->id_kind == cases[i].kind, "%s: kind %d",
                      cases[i].text, m->id_kind);
        if (m->id_kind == STUBDM__QMP_ID_NUMBER)
            ck_assert(m->id == cases[i].id);
        stubdm__qmp_msg_free(m);
    }
    struct stubdm__qmp_msg *m = one("{\"return\":[1,2]}");
    ck_assert_int_eq(m->type, STUBDM__QMP_RETURN);
    ck_assert_uint_eq(stubdm__json_len(m->value), 2);
    stubdm__qmp_msg_free(m);
}
END_TEST

START_TEST(test_error_and_event_fields)
{
    struct stubdm__qmp_msg *m = one(
        "{\"error\":{\"class\":\"DeviceNotFound\",\"desc\":\"Device "
        "'x' not found\"},\"id\":9}");
    ck_assert_int_eq(m->type, STUBDM__QMP_ERROR);
    ck_assert_str_eq(m->error_class, "DeviceNotFound");
    ck_assert_str_eq(m->error_desc, "Device 'x' not found");
    ck_assert(m->id == 9);
    stubdm__qmp_msg_free(m);

    m = one("{\"event\":\"DEVICE_DELETED\",\"data\":{\"device\":\"nic0\"},"
            "\"timestamp\":{\"seconds\":-1,\"microseconds\":0}}");
    ck_assert_int_eq(m->type, STUBDM__QMP_EVENT);
    ck_assert_str_eq(m->event, "DEVICE_DELETED");
    ck_assert(
        stubdm__json_string_is(stubdm__json_get(m->value, "device"), "nic0"));
    ck_assert_int_eq(m->ts_seconds, -1);
    stubdm__qmp_msg_free(m);

    static const struct {
        const char *text, *why;
    } cases[] = {
        {"{\"error\":\"x\"}", "error: \"error\" is not an object"},
        {"{\"error\":{\"class\":1,\"desc\":\"d\"}}",
         "error: \"class\" and \"desc\" are not both strings"},
        {"{\"error\":{\"class\":\"c\"}}",
         "error: \"class\" and \"desc\" are not both strings"},
        {"{\"event\":1}", "event: \"event\" is not a string"},
        {"{\"event\":\"E\",\"data\":[],\"timestamp\":{\"seconds\":1,"
         "\"microseconds\":1}}",
         "event E: \"data\" is not an object"},
        {"{\"event\":\"E\"}", "event E: \"timestamp\" lacks integer "
                              "\"seconds\" and \"microseconds\""},
        {"{\"return\":1,\"error\":{}}", "has both \"return\" and \"error\""},
        {"{\"QMP\":{},\"event\":\"E\"}", "has both \"QMP\" and \"event\""},
        {"{\"foo\":1}",
         "has none of \"QMP\", \"return\", \"error\" and \"event\""},
        {"{}", "has none of \"QMP\", \"return\", \"error\" and \"event\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char e[256], expect[256];
        ck_assert_int_eq(bad(cases[i].text, strlen(cases[i].text), e,
                             sizeof(e)),
                         STUBDM_EPROTO);
        snprintf(expect, sizeof(expect),
                 "malformed QMP message at stream byte 0: %s", cases[i].why);
        ck_assert_str_eq(e, expect);
    }
}
END_TEST

START_TEST(test_malformed_input)
{
    char e[256];
    ck_assert_int_eq(bad("[1]", 3, e, sizeof(e)), STUBDM_EPROTO);
    ck_assert_str_eq(e, "QMP message is not a JSON object (stream byte 1)");
    ck_assert_int_eq(bad("\"s\" ", 4, e, sizeof(e)), STUBDM_EPROTO);
    ck_assert_str_eq(e, "QMP message is not a JSON object (stream byte 3)");
    ck_assert_int_eq(bad(EVENT "{\"a\" 1}", strlen(EVENT) + 8, e, sizeof(e)),
                     STUBDM_EPROTO);
    ck_assert_str_eq(e, "QMP message is not valid JSON: parse error: object "
                        "key and value must be separated by a colon "
                        "(':') (stream byte 82)");
    ck_assert_int_eq(bad("{\"return\":\"\xff\"}", 14, e, sizeof(e)),
                     STUBDM_EPROTO);
    ck_assert_int_eq(bad("{\"return\":\"\xc0\x80\"}", 15, e, sizeof(e)),
                     STUBDM_EPROTO);
    ck_assert_str_eq(e, "QMP message has a string that is not valid UTF-8 "
                        "(stream byte 14)");
    ck_assert_int_eq(bad("{\"return\":\"a\0b\"}", 16, e, sizeof(e)),
                     STUBDM_EPROTO);
    ck_assert_int_eq(bad("{\"return\":1}\0", 13, e, sizeof(e)), STUBDM_EPROTO);
    ck_assert_int_eq(bad("{\"return\":1,\"return\":2}", 23, e, sizeof(e)),
                     STUBDM_EPROTO);
    ck_assert_str_eq(e, "QMP message has a duplicate key \"return\" "
                        "(stream byte 23)");
    /* yajl skips \f and \v as whitespace; JSON does not (fuzzer find). */
    ck_assert_int_eq(bad("\f{\"return\":1}", 13, e, sizeof(e)), STUBDM_EPROTO);
    ck_assert_str_eq(e, "QMP message is not valid JSON: invalid whitespace "
                        "(stream byte 0)");
    /* A NUL decoded from \u0000 is fine inside a string. */
    struct stubdm__qmp_msg *m = one("{\"return\":\"a\\u0000b\"}");
    size_t len;
    ck_assert_mem_eq(stubdm__json_as_string(m->value, &len), "a\0b", 3);
    ck_assert_uint_eq(len, 3);
    stubdm__qmp_msg_free(m);
}
END_TEST

START_TEST(test_truncated_at_eof)
{
    struct outcome o;
    const char *text = EVENT "{\"return\": {\"a\":";
    run_all_splits(text, strlen(text), false, NULL, &o);
    ck_assert_int_eq(o.rc, STUBDM_EPROTO);
    ck_assert_str_eq(o.errmsg, "connection closed in the middle of a QMP "
                               "message (started at stream byte 76)");
    ck_assert_ptr_nonnull(strstr(o.text, "ev=STOP"));
    /* Trailing whitespace is not a message. */
    run(EVENT "  \r\n", strlen(EVENT) + 4, 0, false, NULL, &o);
    ck_assert_int_eq(o.rc, 0);
}
END_TEST

START_TEST(test_size_limit_small)
{
    struct stubdm__qmp_limits lim = {.max_message = 32};
    struct outcome o;
    const char *ok = "{\"return\":\"0123456789012345678\"}"; /* 32 bytes */
    ck_assert_uint_eq(strlen(ok), 32);
    run_all_splits(ok, 32, false, &lim, &o);
    ck_assert_int_eq(o.rc, 0);
    const char *big = "{\"return\":\"01234567890123456789\"}";
    run_all_splits(big, strlen(big), false, &lim, &o);
    ck_assert_int_eq(o.rc, STUBDM_ELIMIT);
    ck_assert_str_eq(o.errmsg,
                     "QMP message exceeds 32 bytes (stream byte 32)");
    /* Depth and values. */
    lim = (struct stubdm__qmp_limits){.max_depth = 2};
    run("{\"return\":{\"a\":{}}}", 19, 0, false, &lim, &o);
    ck_assert_int_eq(o.rc, STUBDM_ELIMIT);
    ck_assert_str_eq(o.errmsg,
                     "QMP message is nested deeper than 2 (stream byte 16)");
    lim = (struct stubdm__qmp_limits){.max_values = 3};
    run("{\"return\":[1,2,3]}", 18, 0, false, &lim, &o);
    ck_assert_int_eq(o.rc, STUBDM_ELIMIT);
    ck_assert_str_eq(o.errmsg,
                     "QMP message has more than 3 values (stream byte 14)");
}
END_TEST

/* The default 16 MiB limit, with a generated message. */
START_TEST(test_size_limit_default)
{
    size_t n = ((size_t)16 << 20) + 100;
    char *text = malloc(n);
    memcpy(text, "{\"return\":\"", 11);
    memset(text + 11, 'a', n - 11);
    struct stubdm__qmp_wire w;
    ck_assert_int_eq(stubdm__qmp_wire_init(&w, NULL, false), 0);
    size_t off = 0, used = 0;
    int rc = 0;
    while (off < n && rc == 0) {
        size_t chunk = n - off < 65536 ? n - off : 65536;
        rc = stubdm__qmp_wire_feed(&w, text + off, chunk, &used);
        off += used;
    }
    ck_assert_int_eq(rc, STUBDM_ELIMIT);
    ck_assert_uint_eq(off, (size_t)16 << 20);
    ck_assert_str_eq(stubdm__qmp_wire_errmsg(&w),
                     "QMP message exceeds 16777216 bytes (stream byte "
                     "16777216)");
    struct stubdm__qmp_msg *m;
    ck_assert_int_eq(stubdm__qmp_wire_next(&w, &m), STUBDM_ELIMIT);
    /* Sticky. */
    ck_assert_int_eq(stubdm__qmp_wire_feed(&w, "{}", 2, &used), STUBDM_ELIMIT);
    ck_assert_uint_eq(used, 0);
    stubdm__qmp_wire_dispose(&w);

    /* A message just under the limit passes. */
    size_t ok = (size_t)16 << 20;
    memset(text + 11, 'a', ok - 13);
    memcpy(text + ok - 2, "\"}", 2);
    ck_assert_int_eq(stubdm__qmp_wire_init(&w, NULL, false), 0);
    ck_assert_int_eq(stubdm__qmp_wire_feed(&w, text, ok, &used), 0);
    ck_assert_uint_eq(used, ok);
    ck_assert_int_eq(stubdm__qmp_wire_next(&w, &m), 0);
    ck_assert_uint_eq(m->raw_len, ok);
    stubdm__qmp_msg_free(m);
    stubdm__qmp_wire_dispose(&w);
    free(text);
}
END_TEST

START_TEST(test_nesting_bomb)
{
    size_t n = 100000;
    char *text = malloc(n + 11);
    memcpy(text, "{\"return\":", 10);
    memset(text + 10, '[', n);
    struct outcome o;
    run(text, n + 10, 0, false, NULL, &o);
    ck_assert_int_eq(o.rc, STUBDM_ELIMIT);
    ck_assert_str_eq(o.errmsg,
                     "QMP message is nested deeper than 64 (stream byte 74)");
    run(text, n + 10, 4096, false, NULL, &o);
    ck_assert_int_eq(o.rc, STUBDM_ELIMIT);
    free(text);
}
END_TEST

/* 100k tiny events in one buffer: the queue stays bounded. */
START_TEST(test_flood_backpressure)
{
    const char *ev = "{\"event\":\"X\",\"timestamp\":{\"seconds\":1,"
                     "\"microseconds\":2}}\r\n";
    size_t evlen = strlen(ev), count = 100000;
    char *text = malloc(evlen * count);
    for (size_t i = 0; i < count; i++)
        memcpy(text + i * evlen, ev, evlen);
    struct stubdm__qmp_limits lim = {.max_queued = 100};
    struct stubdm__qmp_wire w;
    ck_assert_int_eq(stubdm__qmp_wire_init(&w, &lim, false), 0);
    size_t off = 0, got = 0, feeds = 0;
    while (off < evlen * count) {
        size_t used;
        ck_assert_int_eq(stubdm__qmp_wire_feed(&w, text + off,
                                               evlen * count - off, &used),
                         0);
        ck_assert_uint_le(w.queued, 100);
        ck_assert_uint_gt(used, 0);
        off += used;
        feeds++;
        struct stubdm__qmp_msg *m;
        while (stubdm__qmp_wire_next(&w, &m) == 0) {
            ck_assert_str_eq(m->event, "X");
            stubdm__qmp_msg_free(m);
            got++;
        }
    }
    ck_assert_uint_eq(got, count);
    ck_assert_uint_eq(feeds, count / 100);
    stubdm__qmp_wire_dispose(&w);

    /* The byte bound works the same way. */
    lim = (struct stubdm__qmp_limits){.max_queued_bytes = 10 * (evlen - 2)};
    ck_assert_int_eq(stubdm__qmp_wire_init(&w, &lim, false), 0);
    size_t used;
    ck_assert_int_eq(stubdm__qmp_wire_feed(&w, text, evlen * 50, &used), 0);
    ck_assert_uint_eq(w.queued, 10);
    ck_assert_uint_eq(used, 10 * evlen); /* up to the 11th message */
    stubdm__qmp_wire_dispose(&w);
    free(text);
}
END_TEST

/* ------------------------------------------------------------------------
 * Discard until greeting
 * ------------------------------------------------------------------------ */

static void check_greeting_first(const char *text, size_t len,
                                 uint64_t discarded)
{
    struct outcome o;
    run_all_splits(text, len, true, NULL, &o);
    ck_assert_msg(o.rc == 0, "%s", o.errmsg);
    ck_assert_msg(strncmp(o.text, "greeting", 8) == 0, "%s", o.text);
    /* And the exact count of dropped bytes, whole input at once. */
    struct stubdm__qmp_wire w;
    ck_assert_int_eq(stubdm__qmp_wire_init(&w, NULL, true), 0);
    size_t used;
    ck_assert_int_eq(stubdm__qmp_wire_feed(&w, text, len, &used), 0);
    ck_assert_uint_eq(used, len);
    ck_assert(!stubdm__qmp_wire_discarding(&w));
    ck_assert_uint_eq(stubdm__qmp_wire_discarded(&w), discarded);
    stubdm__qmp_wire_dispose(&w);
}

START_TEST(test_discard_garbage)
{
    const char *text = "\xff\x01garbage}}]]\"{\"{{ " GREETING EVENT;
    check_greeting_first(text, strlen(text), 19);
    struct outcome o;
    run(text, strlen(text), 0, true, NULL, &o);
    ck_assert_ptr_nonnull(strstr(o.text, "\nevent"));
}
END_TEST

START_TEST(test_discard_stale_messages)
{
    /* Half a reply, a stale whole reply and an event, then the greeting. */
    const char *text =
        "\"desc\": \"x\"}, \"id\": 3}\r\n"
        "{\"return\": {\"a\": [1, {\"b\": 2}]}, \"id\": 7}\r\n" EVENT
        "{\"return\": {\"QMP\" " GREETING "{\"return\": {}, \"id\": 1}\r\n";
    size_t greet_at = strstr(text, GREETING) - text;
    check_greeting_first(text, strlen(text), greet_at);
    struct outcome o;
    run(text, strlen(text), 0, true, NULL, &o);
    ck_assert_int_eq(o.rc, 0);
    ck_assert_ptr_nonnull(strstr(o.text, "\nreturn id=1/1"));
    ck_assert_ptr_null(strstr(o.text, "id=1/7"));
}
END_TEST

START_TEST(test_discard_budget)
{
    struct stubdm__qmp_limits lim = {.max_discard = 1000};
    size_t n = 5000;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++)
        text[i] = "{\"a\":["[i % 6];
    struct outcome o;
    run(text, n, 0, true, &lim, &o);
    ck_assert_int_eq(o.rc, STUBDM_ELIMIT);
    ck_assert_msg(strncmp(o.errmsg,
                          "no QMP greeting found in the first "
                          "1000 bytes examined",
                          54) == 0,
                  "%s", o.errmsg);
    /* Pure garbage with the default budget. */
    size_t big = (2u << 20);
    char *junk = malloc(big);
    memset(junk, 'x', big);
    run(junk, big, 0, true, NULL, &o);
    ck_assert_int_eq(o.rc, STUBDM_ELIMIT);
    /* EOF before any greeting. */
    run("{\"return\":{}}", 13, 0, true, NULL, &o);
    ck_assert_int_eq(o.rc, STUBDM_EPROTO);
    ck_assert_str_eq(o.errmsg, "connection closed before a QMP greeting "
                               "(13 bytes discarded)");
    free(junk);
    free(text);
}
END_TEST

/* ------------------------------------------------------------------------
 * Encoder
 * ------------------------------------------------------------------------ */

START_TEST(test_encode_command)
{
    struct stubdm__buf b;
    stubdm__buf_init(&b, 0);
    char why[256];
    ck_assert_int_eq(stubdm__qmp_encode_command(&b, "query-status", NULL, 0, 5,
                                                false, why, sizeof(why)),
                     0);
    ck_assert_str_eq(b.data, "{\"execute\":\"query-status\",\"id\":5}\r\n");
    b.len = 0;
    const char *args = " { \"id\" : \"caf\xc3\xa9\\u2603\\n\", \"n\": 1.50,"
                       " \"big\": 18446744073709551615 } ";
    ck_assert_int_eq(stubdm__qmp_encode_command(&b, "device_del", args,
                                                strlen(args), UINT64_MAX, true,
                                                why, sizeof(why)),
                     0);
    ck_assert_str_eq(b.data,
                     "{\"exec-oob\":\"device_del\",\"arguments\":"
                     "{\"id\":\"caf\xc3\xa9\xe2\x98\x83\\n\",\"n\":1.50,"
                     "\"big\":18446744073709551615},"
                     "\"id\":18446744073709551615}\r\n");
    size_t before = b.len;
    static const char *const bad_names[] = {
        "", "a\"b", "x y", "a\\", "\xc3\xa9", "q\n",
    };
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        ck_assert_int_eq(stubdm__qmp_encode_command(&b, bad_names[i], NULL, 0,
                                                    1, false, why,
                                                    sizeof(why)),
                         STUBDM_EINVAL);
        ck_assert_uint_eq(b.len, before);
    }
    ck_assert_str_eq(why, "QMP command name must be 1 to 128 characters of "
                          "[A-Za-z0-9_-]");
    char longname[200];
    memset(longname, 'a', 129);
    longname[129] = '\0';
    ck_assert_int_eq(stubdm__qmp_encode_command(&b, longname, NULL, 0, 1,
                                                false, why, sizeof(why)),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm__qmp_encode_command(&b, NULL, NULL, 0, 1, false,
                                                why, sizeof(why)),
                     STUBDM_EINVAL);
    static const char *const bad_args[] = {
        "[1]",
        "1",
        "\"x\"",
        "{",
        "{\"a\":1} {}",
        "{\"a\":\"\xc0\x80\"}",
        "{\"a\":1,\"a\":2}",
        "",
    };
    for (size_t i = 0; i < sizeof(bad_args) / sizeof(bad_args[0]); i++) {
        ck_assert_int_eq(stubdm__qmp_encode_command(&b, "x", bad_args[i],
                                                    strlen(bad_args[i]), 1,
                                                    false, why, sizeof(why)),
                         STUBDM_EINVAL);
        ck_assert_uint_eq(b.len, before);
    }
    ck_assert_int_eq(stubdm__qmp_encode_command(&b, "x", "[1]", 3, 1, false,
                                                why, sizeof(why)),
                     STUBDM_EINVAL);
    ck_assert_str_eq(why, "arguments of x is not a JSON object");
    stubdm__buf_dispose(&b);

    /* Output limit: the buffer is left as it was. */
    stubdm__buf_init(&b, 20);
    ck_assert_int_eq(stubdm__qmp_encode_command(&b, "query-status", NULL, 0, 1,
                                                false, why, sizeof(why)),
                     STUBDM_ELIMIT);
    ck_assert_uint_eq(b.len, 0);
    stubdm__buf_dispose(&b);
}
END_TEST

START_TEST(test_encode_capabilities)
{
    struct stubdm__buf b;
    stubdm__buf_init(&b, 0);
    ck_assert_int_eq(stubdm__qmp_encode_capabilities(&b, 1, false), 0);
    ck_assert_int_eq(stubdm__qmp_encode_capabilities(&b, 2, true), 0);
    ck_assert_str_eq(b.data, "{\"execute\":\"qmp_capabilities\",\"id\":1}\r\n"
                             "{\"execute\":\"qmp_capabilities\",\"arguments\":"
                             "{\"enable\":[\"oob\"]},\"id\":2}\r\n");
    /* What we send parses back as an object. */
    struct stubdm__json_doc *doc;
    ck_assert_int_eq(stubdm__json_parse(b.data,
                                        strstr(b.data, "\r\n") - b.data, NULL,
                                        &doc, NULL),
                     0);
    ck_assert(
        stubdm__json_is(stubdm__json_doc_root(doc), STUBDM__JSON_OBJECT));
    stubdm__json_doc_free(doc);
    stubdm__buf_dispose(&b);
}
END_TEST

static Suite *qmp_wire_suite(void)
{
    Suite *s = suite_create("qmp_wire");
    TCase *tc = tcase_create("receive");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_session_every_split);
    tcase_add_test(tc, test_greeting_fields);
    tcase_add_test(tc, test_two_greetings_classified);
    tcase_add_test(tc, test_ids);
    tcase_add_test(tc, test_error_and_event_fields);
    tcase_add_test(tc, test_malformed_input);
    tcase_add_test(tc, test_truncated_at_eof);
    tcase_add_test(tc, test_size_limit_small);
    tcase_add_test(tc, test_size_limit_default);
    tcase_add_test(tc, test_nesting_bomb);
    tcase_add_test(tc, test_flood_backpressure);
    suite_add_tcase(s, tc);
    tc = tcase_create("discard");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_discard_garbage);
    tcase_add_test(tc, test_discard_stale_messages);
    tcase_add_test(tc, test_discard_budget);
    suite_add_tcase(s, tc);
    tc = tcase_create("encode");
    tcase_add_test(tc, test_encode_command);
    tcase_add_test(tc, test_encode_capabilities);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ts_run_suite(qmp_wire_suite());
}
