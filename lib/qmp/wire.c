/*
 * QMP framing: bytes -> classified messages, commands -> bytes.  See
 * qmp/wire.h for the contract; json.c does the (bounded) JSON parsing.
 */
#include "core/base.h"
#include "core/mem.h"
#include "qmp/wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In discard mode the wire holds at most this many unexamined bytes. */
#define RESYNC_WINDOW (2 * STUBDM__QMP_MAX_GREETING)

void stubdm__qmp_limits_default(struct stubdm__qmp_limits *lim)
{
    lim->max_message = STUBDM__QMP_DEFAULT_MAX_MESSAGE;
    lim->max_depth = STUBDM__QMP_DEFAULT_MAX_DEPTH;
    lim->max_values = STUBDM__QMP_DEFAULT_MAX_VALUES;
    lim->max_string = STUBDM__QMP_DEFAULT_MAX_MESSAGE;
    lim->max_queued = STUBDM__QMP_DEFAULT_MAX_QUEUED;
    lim->max_queued_bytes = STUBDM__QMP_DEFAULT_MAX_QUEUED_BYTES;
    lim->max_discard = STUBDM__QMP_DEFAULT_MAX_DISCARD;
}

static void limits_fill(struct stubdm__qmp_limits *dst,
                        const struct stubdm__qmp_limits *src)
{
    stubdm__qmp_limits_default(dst);
    if (!src)
        return;
#define TAKE(f)                                                               \
    if (src->f)                                                               \
        dst->f = src->f;
    TAKE(max_message)
    TAKE(max_depth)
    TAKE(max_values)
    TAKE(max_queued)
    TAKE(max_queued_bytes)
    TAKE(max_discard)
#undef TAKE
    dst->max_string = src->max_string ? src->max_string : dst->max_message;
    if (dst->max_string > dst->max_message)
        dst->max_string = dst->max_message;
}

static struct stubdm__json_limits json_limits(
    const struct stubdm__qmp_limits *l, bool greeting)
{
    struct stubdm__json_limits j = {
        .max_bytes = l->max_message,
        .max_depth = l->max_depth,
        .max_values = l->max_values,
        .max_string = l->max_string,
    };
    if (greeting && j.max_bytes > STUBDM__QMP_MAX_GREETING)
        j.max_bytes = STUBDM__QMP_MAX_GREETING;
    if (j.max_string > j.max_bytes)
        j.max_string = j.max_bytes;
    return j;
}

/* ---- Messages ----------------------------------------------------------- */

void stubdm__qmp_msg_free(struct stubdm__qmp_msg *msg)
{
    /* The message lives in its doc's arena (take_message). */
    if (msg)
        stubdm__json_doc_free(msg->doc);
}

void stubdm__qmp_wire_recycle(struct stubdm__qmp_wire *w,
                              struct stubdm__qmp_msg *msg)
{
    if (msg)
        stubdm__json_parser_recycle(w->parser, msg->doc);
}

const char *stubdm__qmp_msg_type_name(enum stubdm__qmp_msg_type t)
{
    switch (t) {
    case STUBDM__QMP_GREETING:
        return "greeting";
    case STUBDM__QMP_RETURN:
        return "return";
    case STUBDM__QMP_ERROR:
        return "error";
    case STUBDM__QMP_EVENT:
        return "event";
    }
    return "?";
}

static int refuse(char *why, size_t why_len, const char *fmt, ...)
    STUBDM_PRINTF(3, 4) STUBDM_COLD;

static int refuse(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return STUBDM_EPROTO;
}

/* A required string member; NULL if absent or of another type. */
static const char *string_member(const struct stubdm__json *obj,
                                 const char *key)
{
    return stubdm__json_as_string(stubdm__json_get(obj, key), NULL);
}

static bool version_number(const struct stubdm__json *qemu, const char *key,
                           uint32_t *out)
{
    uint64_t v;
    if (!stubdm__json_as_uint64(stubdm__json_get(qemu, key), &v) ||
        v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int classify_greeting(const struct stubdm__json *qmp,
                             struct stubdm__qmp_msg *msg, char *why,
                             size_t why_len)
{
    if (!stubdm__json_is(qmp, STUBDM__JSON_OBJECT))
        return refuse(why, why_len, "greeting: \"QMP\" is not an object");
    const struct stubdm__json *version = stubdm__json_get(qmp, "version");
    const struct stubdm__json *qemu = stubdm__json_get(version, "qemu");
    if (!stubdm__json_is(qemu, STUBDM__JSON_OBJECT) ||
        !version_number(qemu, "major", &msg->qemu_major) ||
        !version_number(qemu, "minor", &msg->qemu_minor) ||
        !version_number(qemu, "micro", &msg->qemu_micro))
        return refuse(why, why_len,
                      "greeting: version.qemu.{major,minor,micro} are not "
                      "all unsigned 32-bit integers");
    const struct stubdm__json *package = stubdm__json_get(version, "package");
    if (package) {
        msg->qemu_package = stubdm__json_as_string(package, NULL);
        if (!msg->qemu_package)
            return refuse(why, why_len,
                          "greeting: version.package is not a string");
    } else {
        msg->qemu_package = "";
    }
    const struct stubdm__json *caps = stubdm__json_get(qmp, "capabilities");
    if (!stubdm__json_is(caps, STUBDM__JSON_ARRAY))
        return refuse(why, why_len,
                      "greeting: \"capabilities\" is not an array");
    for (size_t i = 0; i < stubdm__json_len(caps); i++) {
        const struct stubdm__json *c = stubdm__json_at(caps, i);
        if (!stubdm__json_is(c, STUBDM__JSON_STRING))
            return refuse(why, why_len,
                          "greeting: capability %zu is not a string", i);
        if (stubdm__json_string_is(c, "oob"))
            msg->oob = true;
    }
    msg->capabilities = caps;
    msg->value = qmp;
    return 0;
}

static void classify_id(const struct stubdm__json *id,
                        struct stubdm__qmp_msg *msg)
{
    if (!id)
        msg->id_kind = STUBDM__QMP_ID_NONE;
    else if (stubdm__json_as_uint64(id, &msg->id))
        msg->id_kind = STUBDM__QMP_ID_NUMBER;
    else
        msg->id_kind = STUBDM__QMP_ID_FOREIGN;
}

/* The top-level members classification looks at, found in one pass over
 * the object's members (keys are unique: the parser refuses duplicates). */
struct top_members {
    const struct stubdm__json *kind[4]; /* "QMP", "return", "error", "event" */
    const struct stubdm__json *id, *data, *timestamp;
};

static void scan_top(const struct stubdm__json *root, struct top_members *t)
{
    size_t n = stubdm__json_len(root);

    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        const struct stubdm__json *v = stubdm__json_member(root, i, &k, &kl);
        switch (kl) {
        case 2:
            if (memcmp(k, "id", 2) == 0)
                t->id = v;
            break;
        case 3:
            if (memcmp(k, "QMP", 3) == 0)
                t->kind[0] = v;
            break;
        case 4:
            if (memcmp(k, "data", 4) == 0)
                t->data = v;
            break;
        case 5:
            if (memcmp(k, "error", 5) == 0)
                t->kind[2] = v;
            else if (memcmp(k, "event", 5) == 0)
                t->kind[3] = v;
            break;
        case 6:
            if (memcmp(k, "return", 6) == 0)
                t->kind[1] = v;
            break;
        case 9:
            if (memcmp(k, "timestamp", 9) == 0)
                t->timestamp = v;
            break;
        }
    }
}

int stubdm__qmp_classify(const struct stubdm__json *root,
                         struct stubdm__qmp_msg *msg, char *why,
                         size_t why_len)
{
    static const char *const kinds[] = {"QMP", "return", "error", "event"};
    struct top_members top;
    const struct stubdm__json *const *found = top.kind;
    const char *first = NULL;
    size_t nfound = 0;

    if (!stubdm__json_is(root, STUBDM__JSON_OBJECT))
        return refuse(why, why_len, "is not a JSON object");
    scan_top(root, &top);
    for (size_t i = 0; i < 4; i++) {
        if (found[i]) {
            /* A message must be exactly one kind: a reply that is also an
             * event would be routed differently by different readers. */
            if (first)
                return refuse(why, why_len, "has both \"%s\" and \"%s\"",
                              first, kinds[i]);
            first = kinds[i];
            nfound++;
        }
    }
    if (nfound == 0)
        return refuse(why, why_len,
                      "has none of \"QMP\", \"return\", "
                      "\"error\" and \"event\"");
    msg->root = root;
    msg->id_kind = STUBDM__QMP_ID_NONE;
    if (found[0]) {
        msg->type = STUBDM__QMP_GREETING;
        return classify_greeting(found[0], msg, why, why_len);
    }
    if (found[1]) {
        msg->type = STUBDM__QMP_RETURN;
        msg->value = found[1];
        classify_id(top.id, msg);
        return 0;
    }
    if (found[2]) {
        msg->type = STUBDM__QMP_ERROR;
        if (!stubdm__json_is(found[2], STUBDM__JSON_OBJECT))
            return refuse(why, why_len, "error: \"error\" is not an object");
        msg->error_class = string_member(found[2], "class");
        msg->error_desc = string_member(found[2], "desc");
        if (!msg->error_class || !msg->error_desc)
            return refuse(
                why, why_len,
                "error: \"class\" and \"desc\" are not both strings");
        msg->value = found[2];
        classify_id(top.id, msg);
        return 0;
    }
    msg->type = STUBDM__QMP_EVENT;
    msg->event = stubdm__json_as_string(found[3], NULL);
    if (!msg->event)
        return refuse(why, why_len, "event: \"event\" is not a string");
    const struct stubdm__json *data = top.data;
    if (data && !stubdm__json_is(data, STUBDM__JSON_OBJECT))
        return refuse(why, why_len, "event %.64s: \"data\" is not an object",
                      msg->event);
    msg->value = data;
    const struct stubdm__json *ts = top.timestamp;
    if (!stubdm__json_as_int64(stubdm__json_get(ts, "seconds"),
                               &msg->ts_seconds) ||
        !stubdm__json_as_int64(stubdm__json_get(ts, "microseconds"),
                               &msg->ts_microseconds))
        return refuse(why, why_len,
                      "event %.64s: \"timestamp\" lacks integer \"seconds\" "
                      "and \"microseconds\"",
                      msg->event);
    return 0;
}

/* ---- Receiving ---------------------------------------------------------- */

static int wire_fail(struct stubdm__qmp_wire *w, int rc, const char *fmt, ...)
    STUBDM_PRINTF(3, 4) STUBDM_COLD;

static int wire_fail(struct stubdm__qmp_wire *w, int rc, const char *fmt, ...)
{
    if (w->error)
        return w->error;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->errmsg, sizeof(w->errmsg), fmt, ap);
    va_end(ap);
    w->error = rc;
    return rc;
}

int stubdm__qmp_wire_init(struct stubdm__qmp_wire *w,
                          const struct stubdm__qmp_limits *lim,
                          bool discard_until_greeting)
{
    memset(w, 0, sizeof(*w));
    limits_fill(&w->lim, lim);
    w->discarding = discard_until_greeting;
    w->jl_msg = json_limits(&w->lim, false);
    stubdm__buf_init(&w->resync, RESYNC_WINDOW);
    struct stubdm__json_limits jl = json_limits(&w->lim, w->discarding);
    int rc = stubdm__json_parser_new(&w->parser, &jl);
    if (rc)
        return wire_fail(w, rc, "out of memory setting up the QMP parser");
    stubdm__json_parser_require_object(w->parser, true);
    return 0;
}

void stubdm__qmp_wire_dispose(struct stubdm__qmp_wire *w)
{
    stubdm__json_parser_free(w->parser);
    w->parser = NULL;
    while (w->head) {
        struct stubdm__qmp_msg *m = w->head;
        w->head = m->next;
        stubdm__qmp_msg_free(m);
    }
    w->tail = NULL;
    w->queued = w->queued_bytes = 0;
    stubdm__buf_dispose(&w->resync);
}

static bool queue_full(const struct stubdm__qmp_wire *w)
{
    return w->queued >= w->lim.max_queued ||
           w->queued_bytes >= w->lim.max_queued_bytes;
}

static void enqueue(struct stubdm__qmp_wire *w, struct stubdm__qmp_msg *m)
{
    m->next = NULL;
    if (w->tail)
        w->tail->next = m;
    else
        w->head = m;
    w->tail = m;
    w->queued++;
    w->queued_bytes += m->raw_len;
}

/*
 * A parsed message (doc, NULL if the parser could not hand it over):
 * classify it.  Returns the message, or NULL with *why set (classification
 * failed) or *rc set (ENOMEM).
 */
static struct stubdm__qmp_msg *doc_message(struct stubdm__json_doc *doc,
                                           char *why, size_t why_len, int *rc)
{
    *rc = 0;
    why[0] = '\0';
    /* In the doc's arena: one free releases the message and its tree. */
    struct stubdm__qmp_msg *m = doc ? stubdm__json_doc_alloc(doc, sizeof(*m))
                                    : NULL;
    if (!m) {
        stubdm__json_doc_free(doc);
        *rc = STUBDM_ENOMEM;
        return NULL;
    }
    m->doc = doc;
    m->raw = stubdm__json_doc_text(doc, &m->raw_len);
    if (stubdm__qmp_classify(stubdm__json_doc_root(doc), m, why, why_len)) {
        stubdm__qmp_msg_free(m);
        return NULL;
    }
    return m;
}

/* The parser has completed a message: take and classify it. */
static struct stubdm__qmp_msg *take_message(struct stubdm__qmp_wire *w,
                                            char *why, size_t why_len, int *rc)
{
    return doc_message(stubdm__json_parser_take(w->parser), why, why_len, rc);
}

/* A message is complete: queue it, or fail the wire. */
static void message_done(struct stubdm__qmp_wire *w, struct stubdm__qmp_msg *m,
                         int rc, const char *why)
{
    if (m)
        enqueue(w, m);
    else if (rc)
        wire_fail(w, rc, "out of memory parsing QMP input");
    else
        wire_fail(w, STUBDM_EPROTO,
                  "malformed QMP message at stream byte %" PRIu64 ": %s",
                  w->msg_start, why);
}

static int start_message(struct stubdm__qmp_wire *w, bool greeting)
{
    struct stubdm__json_limits jl = greeting ? json_limits(&w->lim, true)
                                             : w->jl_msg;
    int rc = stubdm__json_parser_reset(w->parser, &jl);
    if (rc)
        return wire_fail(w, rc, "out of memory parsing QMP input");
    w->in_message = true;
    return 0;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Normal mode: parse messages from data (whose first byte is at stream
 * offset base) until the input ends, the queue is full or an error.
 * Returns the bytes used.
 */
static size_t consume(struct stubdm__qmp_wire *w, const unsigned char *data,
                      size_t len, uint64_t base)
{
    size_t p = 0;
    while (p < len && !w->error) {
        if (!w->in_message) {
            while (p < len && is_space(data[p]))
                p++;
            if (p == len || queue_full(w))
                break;
            w->msg_start = base + p;
            /* A message whose line ends in this buffer (QEMU ends each
             * with "\r\n") is usually whole here: try the parser's quick
             * path, which declines anything it does not lex plainly (then
             * the same bytes go through the incremental parse below). */
            if (memchr(data + p, '\n', len - p)) {
                size_t used;
                struct stubdm__json_doc *doc = stubdm__json_parser_quick(
                    w->parser, &w->jl_msg, data + p, len - p, &used);
                if (doc) {
                    char why[160];
                    int rc;
                    p += used;
                    struct stubdm__qmp_msg *m = doc_message(doc, why,
                                                            sizeof(why), &rc);
                    message_done(w, m, rc, why);
                    continue;
                }
            }
            if (start_message(w, false))
                break;
        }
        size_t used;
        int rc = stubdm__json_parser_feed(w->parser, data + p, len - p, &used);
        p += used;
        if (rc == STUBDM__JSON_MORE)
            continue;
        w->in_message = false;
        if (rc < 0) {
            const struct stubdm__json_error *e = stubdm__json_parser_error(
                w->parser);
            wire_fail(w, rc, "QMP message %s (stream byte %" PRIu64 ")",
                      e->msg, w->msg_start + e->offset);
            break;
        }
        char why[160];
        struct stubdm__qmp_msg *m = take_message(w, why, sizeof(why), &rc);
        message_done(w, m, rc, why);
    }
    return p;
}

/* Stream offset of resync byte i. */
static uint64_t resync_offset(const struct stubdm__qmp_wire *w, size_t i)
{
    return w->fed - w->resync.len + i;
}

/* Normal mode: parse what discard mode left after the greeting. */
static void drain_leftover(struct stubdm__qmp_wire *w)
{
    if (w->discarding || w->resync_pos >= w->resync.len)
        return;
    size_t pos = w->resync_pos;
    size_t used = consume(w, (const unsigned char *)w->resync.data + pos,
                          w->resync.len - pos, resync_offset(w, pos));
    w->resync_pos += used;
    if (w->resync_pos == w->resync.len) {
        stubdm__buf_consume(&w->resync, w->resync.len);
        w->resync_pos = 0;
    }
}

static bool over_discard_budget(struct stubdm__qmp_wire *w)
{
    if (w->discard_work <= w->lim.max_discard)
        return false;
    wire_fail(w, STUBDM_ELIMIT,
              "no QMP greeting found in the first %zu bytes examined "
              "(%" PRIu64 " bytes discarded)",
              w->lim.max_discard, w->discarded);
    return true;
}

/*
 * Discard mode: look for a greeting in the resync buffer.  Each '{' starts
 * a candidate parse.  A candidate that fails is dropped one byte at a time
 * (its '{'), and scanning resumes right after that '{', inside the failed
 * text, where a real message may start (e.g. after half a stale reply).
 * A candidate that parses but is not a greeting (stale reply, event) is
 * dropped whole.  Every byte examined counts against max_discard.
 */
static void resync_run(struct stubdm__qmp_wire *w)
{
    const unsigned char *data = (const unsigned char *)w->resync.data;
    size_t len = w->resync.len, pos = w->resync_pos;

    while (w->discarding && !w->error && pos < len) {
        if (!w->in_message) {
            const unsigned char *brace = memchr(data + pos, '{', len - pos);
            size_t skip = brace ? (size_t)(brace - (data + pos)) : len - pos;
            w->discarded += skip;
            w->discard_work += skip;
            pos += skip;
            if (over_discard_budget(w) || !brace)
                break;
            if (start_message(w, true))
                break;
            w->attempt_start = pos;
        }
        size_t used;
        int rc = stubdm__json_parser_feed(w->parser, data + pos, len - pos,
                                          &used);
        pos += used;
        w->discard_work += used;
        if (rc == STUBDM__JSON_MORE) {
            over_discard_budget(w);
            break;
        }
        w->in_message = false;
        if (rc < 0) {
            if (rc == STUBDM_ENOMEM) {
                wire_fail(w, rc, "out of memory parsing QMP input");
                break;
            }
            /* Not a message from here: retry after this '{'. */
            pos = w->attempt_start + 1;
            w->discarded++;
            over_discard_budget(w);
            continue;
        }
        char why[160];
        struct stubdm__qmp_msg *m = take_message(w, why, sizeof(why), &rc);
        if (rc) {
            wire_fail(w, rc, "out of memory parsing QMP input");
            break;
        }
        if (m && m->type == STUBDM__QMP_GREETING) {
            enqueue(w, m);
            w->discarding = false;
            break;
        }
        stubdm__qmp_msg_free(m);
        w->discarded += pos - w->attempt_start;
        over_discard_budget(w);
    }

    /* Keep only what is still needed: the current candidate, or what
     * follows the greeting. */
    size_t keep_from = w->in_message ? w->attempt_start : pos;
    if (keep_from > len)
        keep_from = len;
    stubdm__buf_consume(&w->resync, keep_from);
    w->attempt_start -= w->in_message ? keep_from : 0;
    w->resync_pos = pos - keep_from;
}

int stubdm__qmp_wire_feed(struct stubdm__qmp_wire *w, const void *data,
                          size_t len, size_t *consumed)
{
    const unsigned char *in = data;
    size_t used = 0;
    *consumed = 0;

    while (w->discarding && !w->error && used < len) {
        size_t room = w->resync.limit - w->resync.len;
        size_t take = len - used < room ? len - used : room;
        if (take == 0)
            break; /* cannot happen: a candidate is at most half the window */
        int rc = stubdm__buf_append(&w->resync, in + used, take);
        if (rc)
            return wire_fail(w, rc, "out of memory buffering QMP input");
        used += take;
        w->fed += take;
        resync_run(w);
    }
    if (!w->error && !w->discarding) {
        drain_leftover(w);
        if (w->resync.len == 0 && !w->error) {
            size_t n = consume(w, in + used, len - used, w->fed);
            used += n;
            w->fed += n;
        }
    }
    *consumed = used;
    return w->error;
}

int stubdm__qmp_wire_next(struct stubdm__qmp_wire *w,
                          struct stubdm__qmp_msg **out)
{
    *out = NULL;
    if (!w->head && !w->error)
        drain_leftover(w);
    struct stubdm__qmp_msg *m = w->head;
    if (!m)
        return w->error ? w->error : 1;
    w->head = m->next;
    if (!w->head)
        w->tail = NULL;
    w->queued--;
    w->queued_bytes -= m->raw_len;
    m->next = NULL;
    *out = m;
    return 0;
}

int stubdm__qmp_wire_eof(struct stubdm__qmp_wire *w)
{
    if (w->error)
        return w->error;
    if (w->discarding)
        return wire_fail(w, STUBDM_EPROTO,
                         "connection closed before a QMP greeting "
                         "(%" PRIu64 " bytes discarded)",
                         w->discarded + (w->resync.len - w->resync_pos));
    drain_leftover(w);
    if (w->in_message)
        return wire_fail(w, STUBDM_EPROTO,
                         "connection closed in the middle of a QMP message "
                         "(started at stream byte %" PRIu64 ")",
                         w->msg_start);
    return w->error;
}

const char *stubdm__qmp_wire_errmsg(const struct stubdm__qmp_wire *w)
{
    return w->errmsg;
}

uint64_t stubdm__qmp_wire_discarded(const struct stubdm__qmp_wire *w)
{
    return w->discarded;
}

bool stubdm__qmp_wire_discarding(const struct stubdm__qmp_wire *w)
{
    return w->discarding;
}

/* ---- Sending ------------------------------------------------------------ */

/* [A-Za-z0-9_-] */
static const unsigned char name_char[256] = {
    ['-'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

size_t stubdm__qmp_command_name_len(const char *name)
{
    size_t n = 0;

    if (!name)
        return 0;
    while (name_char[(unsigned char)name[n]]) {
        if (++n > STUBDM__QMP_MAX_COMMAND_NAME)
            return 0;
    }
    return name[n] == '\0' ? n : 0;
}

/* Decimal digits of v into p (room for 20); returns the count. */
static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* Undo a partial append (out keeps its old contents). */
static void truncate_to(struct stubdm__buf *out, size_t len)
{
    out->len = len;
    if (out->data)
        out->data[len] = '\0';
}

/*
 * The envelope is written by hand, not through the JSON writer: the name is
 * restricted to [A-Za-z0-9_-] (nothing to escape) and the id is a decimal
 * integer, so the text is the writer's compact output byte for byte, at a
 * fraction of the cost (this is on every command's path).  Arguments come
 * from the caller and still go through the parser and the writer.
 */
int stubdm__qmp_encode_command_n(struct stubdm__buf *out, const char *name,
                                 size_t name_len, const char *args_json,
                                 size_t args_len, uint64_t id, bool oob,
                                 char *why, size_t why_len)
{
    static const char execute[] = "{\"execute\":\"";
    static const char exec_oob[] = "{\"exec-oob\":\"";
    struct stubdm__json_doc *args = NULL;
    size_t old_len = out->len;
    int rc;

    if (why && why_len)
        why[0] = '\0';
    if (args_json) {
        struct stubdm__qmp_limits ql;
        stubdm__qmp_limits_default(&ql);
        struct stubdm__json_limits jl = json_limits(&ql, false);
        struct stubdm__json_error e;
        rc = stubdm__json_parse(args_json, args_len, &jl, &args, &e);
        if (rc == 0 && !stubdm__json_is(stubdm__json_doc_root(args),
                                        STUBDM__JSON_OBJECT)) {
            rc = STUBDM_EPROTO;
            snprintf(e.msg, sizeof(e.msg), "is not a JSON object");
        }
        if (rc) {
            refuse(why, why_len, "arguments of %s %s", name, e.msg);
            stubdm__json_doc_free(args);
            return rc == STUBDM_EPROTO ? STUBDM_EINVAL : rc;
        }
    }

    /* {"exec-oob":"<name>"  [,"arguments":<args>]  ,"id":<20 digits>}\r\n:
     * the fixed parts go straight into out, in room made once. */
    size_t head = (oob ? sizeof(exec_oob) : sizeof(execute)) - 1;
    size_t most = head + name_len + 1 + 6 + 20 + 3;
    char *p = NULL;
    if (head + name_len + 1 > out->limit - old_len)
        rc = STUBDM_ELIMIT;
    else
        rc = (p = stubdm__buf_room(out, most)) ? 0 : STUBDM_ENOMEM;
    if (rc == 0) {
        memcpy(p, oob ? exec_oob : execute, head);
        memcpy(p + head, name, name_len);
        p[head + name_len] = '"';
        p += head + name_len + 1;
        if (args) {
            out->len = (size_t)(p - out->data);
            rc = stubdm__buf_append(out, ",\"arguments\":", 13);
            if (rc == 0) {
                struct stubdm__json_writer *jw = stubdm__json_writer_new(out);
                if (jw)
                    stubdm__json_w_value(jw, stubdm__json_doc_root(args));
                rc = stubdm__json_writer_end(jw);
            }
            p = rc == 0 ? stubdm__buf_room(out, 6 + 20 + 3) : NULL;
            if (rc == 0 && !p)
                rc = STUBDM_ENOMEM;
        }
    }
    if (rc == 0) {
        memcpy(p, ",\"id\":", 6);
        p += 6;
        p += put_u64(p, id);
        memcpy(p, "}\r\n", 3);
        p += 3;
        size_t len = (size_t)(p - out->data);
        if (len > out->limit) {
            rc = STUBDM_ELIMIT;
        } else {
            out->len = len;
            out->data[len] = '\0';
        }
    }
    stubdm__json_doc_free(args);
    if (rc) {
        truncate_to(out, old_len);
        refuse(why, why_len, "could not encode QMP command %s: %s", name,
               stubdm_strerror(rc));
    }
    return rc;
}

int stubdm__qmp_encode_command(struct stubdm__buf *out, const char *name,
                               const char *args_json, size_t args_len,
                               uint64_t id, bool oob, char *why,
                               size_t why_len)
{
    size_t name_len = stubdm__qmp_command_name_len(name);

    if (why && why_len)
        why[0] = '\0';
    if (!name_len) {
        refuse(why, why_len,
               "QMP command name must be 1 to %d characters of "
               "[A-Za-z0-9_-]",
               STUBDM__QMP_MAX_COMMAND_NAME);
        return STUBDM_EINVAL;
    }
    return stubdm__qmp_encode_command_n(out, name, name_len, args_json,
                                        args_len, id, oob, why, why_len);
}

int stubdm__qmp_encode_capabilities(struct stubdm__buf *out, uint64_t id,
                                    bool enable_oob)
{
    static const char enable[] = "{\"enable\":[\"oob\"]}";
    return stubdm__qmp_encode_command(out, "qmp_capabilities",
                                      enable_oob ? enable : NULL,
                                      enable_oob ? sizeof(enable) - 1 : 0, id,
                                      false, NULL, 0);
}
