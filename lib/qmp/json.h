/*
 * A small JSON value API for the QMP code: a bounded streaming parser that
 * builds an immutable tree, accessors that tolerate NULL and wrong types,
 * and a writer.  json.c is the only file that includes yajl, so yajl never
 * leaks into other modules (and could be replaced by another parser).
 *
 * Every byte parsed here may come from a hostile QEMU.  The parser
 *   - enforces limits on total bytes, nesting depth, number of values and
 *     string length, checking them as it goes, so memory stays bounded
 *     whatever the input and however it is split;
 *   - validates UTF-8 strictly (yajl alone accepts overlong forms,
 *     surrogates and code points above U+10FFFF; we do not);
 *   - refuses duplicate keys in an object, so every consumer of a message
 *     (including a caller that re-parses its raw text with another library)
 *     sees the same members;
 *   - keeps integers exact: an integer that fits int64_t or uint64_t is an
 *     integer, anything else (fraction, exponent, larger magnitude) is a
 *     double that also keeps its original text for faithful re-emission.
 *
 * Trees live in a stubdm__json_doc: one arena per parsed text, freed at
 * once.  Nodes are borrowed from the doc and valid until it is freed.
 */
#ifndef STUBDM_JSON_H
#define STUBDM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stubdm__buf;

/* ---- Values ------------------------------------------------------------- */

enum stubdm__json_type {
    STUBDM__JSON_NULL,
    STUBDM__JSON_BOOL,
    STUBDM__JSON_INT,    /* an integer that fits int64_t or uint64_t */
    STUBDM__JSON_DOUBLE, /* any other number */
    STUBDM__JSON_STRING, /* valid UTF-8, may contain NUL (from \u0000) */
    STUBDM__JSON_ARRAY,
    STUBDM__JSON_OBJECT,
};

/* A value; opaque, owned by its stubdm__json_doc. */
struct stubdm__json;

/* Name of a type ("object", "string", ...) for messages. */
const char *stubdm__json_type_name(enum stubdm__json_type t);

/*
 * All accessors accept v == NULL (and values of the wrong type), so lookups
 * can be chained: stubdm__json_as_string(stubdm__json_get(err, "class"),
 * NULL) is NULL unless err is an object with a string member "class".
 */

/* The type of v; STUBDM__JSON_NULL when v is NULL. */
enum stubdm__json_type stubdm__json_type(const struct stubdm__json *v);
bool stubdm__json_is(const struct stubdm__json *v, enum stubdm__json_type t);

/* The member 'key' of object v, or NULL (v not an object, key absent).
 * Keys are unique (the parser refuses duplicates). */
const struct stubdm__json *stubdm__json_get(const struct stubdm__json *v,
                                            const char *key);

/* Number of members of an object or elements of an array; 0 otherwise. */
size_t stubdm__json_len(const struct stubdm__json *v);
/* Element i of array v, or NULL (not an array, out of range). */
const struct stubdm__json *stubdm__json_at(const struct stubdm__json *v,
                                           size_t i);
/* Member i of object v: its key (NUL-terminated; *key_len if non-NULL)
 * and value.  NULL if v is not an object or i is out of range. */
const struct stubdm__json *stubdm__json_member(const struct stubdm__json *v,
                                               size_t i, const char **key,
                                               size_t *key_len);

/* The string, NUL-terminated, or NULL if v is not a string.  *len (if
 * non-NULL) receives its length in bytes, which exceeds strlen() when the
 * string holds NUL bytes (decoded from \u0000). */
const char *stubdm__json_as_string(const struct stubdm__json *v, size_t *len);
/* True if v is a string equal to s (a C string; NUL bytes in v never
 * match). */
bool stubdm__json_string_is(const struct stubdm__json *v, const char *s);

/* Integer conversions: true and *out set when v is an integer that fits. */
bool stubdm__json_as_int64(const struct stubdm__json *v, int64_t *out);
bool stubdm__json_as_uint64(const struct stubdm__json *v, uint64_t *out);
/* Any number as a double (integers converted); false otherwise. */
bool stubdm__json_as_double(const struct stubdm__json *v, double *out);
/* true and *out set when v is a boolean. */
bool stubdm__json_as_bool(const struct stubdm__json *v, bool *out);

/* Structural equality, exact: same types, members in the same order with
 * the same keys, same bytes in strings, integers equal, doubles with the
 * same text.  For tests (the quick parse against the incremental one). */
bool stubdm__json_equal(const struct stubdm__json *a,
                        const struct stubdm__json *b);

/* ---- Documents and parsing ---------------------------------------------- */

/* Zero fields mean "the default". */
struct stubdm__json_limits {
    size_t max_bytes;   /* text of the value, from its first byte */
    unsigned max_depth; /* open arrays/objects; the top-level one is 1 */
    size_t max_values;  /* scalars + containers, all levels */
    size_t max_string;  /* bytes of one string or key, after unescaping */
};

#define STUBDM__JSON_DEFAULT_MAX_BYTES ((size_t)16 << 20)
#define STUBDM__JSON_DEFAULT_MAX_DEPTH 64u
#define STUBDM__JSON_DEFAULT_MAX_VALUES ((size_t)1000000)

/* The defaults above (max_string = max_bytes). */
void stubdm__json_limits_default(struct stubdm__json_limits *lim);

/* A parsed value and the memory behind it. */
struct stubdm__json_doc;

/* The root value (never NULL for a doc returned by the parser). */
const struct stubdm__json *stubdm__json_doc_root(
    const struct stubdm__json_doc *doc);
/* The exact text the value was parsed from (NUL-terminated, *len bytes),
 * without surrounding whitespace. */
const char *stubdm__json_doc_text(const struct stubdm__json_doc *doc,
                                  size_t *len);
/* Accepts NULL. */
void stubdm__json_doc_free(struct stubdm__json_doc *doc);
/* size zeroed bytes (size > 0) that live as long as the doc, for a
 * consumer's per-value record (qmp_wire's messages).  NULL: out of
 * memory. */
void *stubdm__json_doc_alloc(struct stubdm__json_doc *doc, size_t size);

/*
 * Why a parse failed.  'code' is STUBDM_EPROTO (not valid JSON, invalid
 * UTF-8, duplicate key, not an object when one was required), STUBDM_ELIMIT
 * (a limit was exceeded) or STUBDM_ENOMEM.  'offset' is the number of bytes
 * of the value's text consumed when the failure was detected.  'msg' is a
 * sentence fragment meant to follow a subject, e.g. "exceeds 16777216
 * bytes", "nested deeper than 64", "is not valid JSON: invalid char in json
 * text".
 */
struct stubdm__json_error {
    int code;
    size_t offset;
    char msg[160];
};

/*
 * Incremental parser of ONE top-level value, built on yajl's streaming
 * parser: text may be split at any byte; the tree is built while parsing;
 * the limits are enforced as bytes arrive.  Parse the next value after
 * stubdm__json_parser_reset().
 */
struct stubdm__json_parser;

/* *out receives the parser (NULL on failure).  lim is copied; NULL means
 * the defaults.  Returns 0 or STUBDM_ENOMEM. */
int stubdm__json_parser_new(struct stubdm__json_parser **out,
                            const struct stubdm__json_limits *lim);
/* Accepts NULL. */
void stubdm__json_parser_free(struct stubdm__json_parser *p);

/* Start over (a new value), optionally with new limits (NULL: keep). */
int stubdm__json_parser_reset(struct stubdm__json_parser *p,
                              const struct stubdm__json_limits *lim);

/* Require the top-level value to be an object: anything else fails with
 * STUBDM_EPROTO as soon as its first token is seen. */
void stubdm__json_parser_require_object(struct stubdm__json_parser *p,
                                        bool on);

#define STUBDM__JSON_MORE 1 /* the value is not complete: feed more */

/*
 * Feed the next bytes of the value.  Leading whitespace is part of the
 * value's byte count but not of its text.
 *
 * @param consumed  receives how many bytes of data were used: all of them
 *                  on STUBDM__JSON_MORE; on 0, the bytes up to and
 *                  including the value's last byte (the rest belongs to
 *                  whatever follows).
 * @return 0 when the value is complete (take it with parser_take),
 *         STUBDM__JSON_MORE, or a negative code with the reason in
 *         stubdm__json_parser_error().  Errors are sticky until reset.
 *
 * A top-level number is only known to be complete when a byte follows it
 * (or at stubdm__json_parser_finish); objects, arrays, strings and
 * literals complete on their last byte.
 */
int stubdm__json_parser_feed(struct stubdm__json_parser *p, const void *data,
                             size_t len, size_t *consumed);

/* End of input: completes a pending top-level number; otherwise a value
 * still incomplete fails with STUBDM_EPROTO ("is truncated").
 * @return 0 (complete) or a negative code. */
int stubdm__json_parser_finish(struct stubdm__json_parser *p);

/* After a 0 return: hand the doc over (the caller frees it).  NULL if the
 * value is not complete. */
struct stubdm__json_doc *stubdm__json_parser_take(
    struct stubdm__json_parser *p);

/*
 * The quick path for a value that is whole in one buffer: data must start
 * with the value's first byte (no leading whitespace) and the parser must
 * require an object.  Returns the doc (the caller frees it), *consumed
 * being the bytes up to and including the value's last one; or NULL when
 * the quick path declines: the value is not in the plain subset it lexes
 * (strings of printable ASCII without escapes, integers without fraction
 * or exponent, literals, containers, space/tab/CR/LF), is not complete in
 * data, fails, or reaches a limit.  Then nothing is consumed, and the
 * caller resets the parser and feeds the same bytes, whose verdict
 * (value or error) is authoritative.  When the quick path succeeds, the
 * tree and text are exactly what reset + feed would have produced: it
 * calls the same tree-building code with the same tokens.
 * @param lim  the limits for this value, as for reset (NULL: keep).
 */
struct stubdm__json_doc *stubdm__json_parser_quick(
    struct stubdm__json_parser *p, const struct stubdm__json_limits *lim,
    const void *data, size_t len, size_t *consumed);

/* Free doc (any doc, from any parser; NULL accepted), keeping its memory
 * for the next value p parses.  Same effect as stubdm__json_doc_free. */
void stubdm__json_parser_recycle(struct stubdm__json_parser *p,
                                 struct stubdm__json_doc *doc);

/* The failure, after a negative return.  Owned by the parser. */
const struct stubdm__json_error *stubdm__json_parser_error(
    const struct stubdm__json_parser *p);

/*
 * Parse a complete text holding exactly one value (surrounding whitespace
 * allowed), with limits lim (NULL: defaults).
 * @param doc_out  receives the doc (free with stubdm__json_doc_free), or
 *                 NULL on failure.
 * @param err      receives the reason on failure; may be NULL.
 * @return 0, STUBDM_EPROTO, STUBDM_ELIMIT or STUBDM_ENOMEM.
 */
int stubdm__json_parse(const void *text, size_t len,
                       const struct stubdm__json_limits *lim,
                       struct stubdm__json_doc **doc_out,
                       struct stubdm__json_error *err);

/* ---- Writing ------------------------------------------------------------ */

/*
 * A writer appends compact JSON to a caller-owned stubdm__buf (whose limit
 * bounds the output).  Calls do not return errors: the first failure
 * (ENOMEM, ELIMIT, EINVAL for a misplaced key, invalid UTF-8 in a string or
 * unbalanced containers) is sticky and reported by stubdm__json_writer_end,
 * which must be called once and frees the writer.  On failure the buffer
 * may hold a partial text: truncate it to its old length.
 */
struct stubdm__json_writer;

/* @return the writer, or NULL (out of memory). */
struct stubdm__json_writer *stubdm__json_writer_new(struct stubdm__buf *out);
/* Flushes to the buffer, frees the writer (NULL accepted: STUBDM_ENOMEM),
 * and returns 0 or the first failure. */
int stubdm__json_writer_end(struct stubdm__json_writer *w);

void stubdm__json_w_object_begin(struct stubdm__json_writer *w);
void stubdm__json_w_object_end(struct stubdm__json_writer *w);
void stubdm__json_w_array_begin(struct stubdm__json_writer *w);
void stubdm__json_w_array_end(struct stubdm__json_writer *w);
/* An object key (a C string): call it before each member's value. */
void stubdm__json_w_key(struct stubdm__json_writer *w, const char *key);
/* A string of len bytes, which must be valid UTF-8 (NUL bytes allowed). */
void stubdm__json_w_string(struct stubdm__json_writer *w, const char *s,
                           size_t len);
void stubdm__json_w_cstring(struct stubdm__json_writer *w, const char *s);
void stubdm__json_w_int64(struct stubdm__json_writer *w, int64_t i);
void stubdm__json_w_uint64(struct stubdm__json_writer *w, uint64_t u);
void stubdm__json_w_bool(struct stubdm__json_writer *w, bool b);
void stubdm__json_w_null(struct stubdm__json_writer *w);
/* A whole parsed value, re-emitted exactly (numbers keep their text). */
void stubdm__json_w_value(struct stubdm__json_writer *w,
                          const struct stubdm__json *v);

#endif /* STUBDM_JSON_H */
