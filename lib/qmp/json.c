/*
 * JSON values, a bounded incremental parser on top of yajl's streaming
 * parser, and a writer on top of yajl_gen.  See json.h for the contract.
 *
 * The tree is built inside yajl's callbacks.  Children of every open
 * container are collected on one scratch stack; when a container closes,
 * its children are copied once into an exact-size array in the doc's arena
 * and popped.  Nothing is allocated per value except arena space, and the
 * scratch stack never holds more than max_values entries.
 */
#include "qmp/json.h"

#include "core/base.h"
#include "core/mem.h"

#include <inttypes.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

/* For the per-value paths of the parser: keep the fast path inline and
 * the failure paths out of it. */
#define JSON_INLINE static inline __attribute__((always_inline))
#define JSON_COLD __attribute__((cold, noinline))

/* ---- Arena -------------------------------------------------------------- */

struct arena_chunk {
    struct arena_chunk *next;
    max_align_t data[];
};

/* Allocation bumps 'cur' within the current chunk; the chunk headers are
 * only touched to get a new chunk and to free them all. */
struct arena {
    char *cur; /* free space of the current chunk */
    size_t left;
    struct arena_chunk *head;
    size_t next_size;
};

#define ARENA_FIRST_CHUNK 4096u
#define ARENA_MAX_CHUNK ((size_t)1 << 20)

static void arena_init(struct arena *a)
{
    a->cur = NULL;
    a->left = 0;
    a->head = NULL;
    a->next_size = ARENA_FIRST_CHUNK;
}

static void arena_dispose(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->cur = NULL;
    a->left = 0;
}

/* n is a multiple of 8 that does not fit in the current chunk. */
static __attribute__((noinline)) void *arena_alloc_slow(struct arena *a,
                                                        size_t n)
{
    /* Chunks double up to 1 MiB so small messages stay small and big ones
     * do not make thousands of chunks; oversized requests get a chunk of
     * their own. */
    size_t size = a->next_size;
    if (size < n)
        size = n;
    if (size > SIZE_MAX - sizeof(struct arena_chunk))
        return NULL;
    struct arena_chunk *c = stubdm__malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    char *p = (char *)c->data;
    if (a->head && size == n) {
        /* Keep filling the current chunk afterwards. */
        c->next = a->head->next;
        a->head->next = c;
    } else {
        c->next = a->head;
        a->head = c;
        a->cur = p + n;
        a->left = size - n;
    }
    if (a->next_size < ARENA_MAX_CHUNK)
        a->next_size *= 2;
    return p;
}

/* n > 0 (a fresh arena has no current chunk: left is 0). */
static inline void *arena_alloc(struct arena *a, size_t n)
{
    if (n > SIZE_MAX - 7)
        return NULL;
    n = (n + 7) & ~(size_t)7;
    if (n > a->left)
        return arena_alloc_slow(a, n);
    void *p = a->cur;
    a->cur += n;
    a->left -= n;
    return p;
}

/* ---- Values ------------------------------------------------------------- */

struct member;

struct stubdm__json {
    unsigned char type; /* enum stubdm__json_type */
    bool big;           /* INT: the value is v.u and exceeds INT64_MAX */
    union {
        bool b;
        int64_t i;
        uint64_t u;
        struct {
            double d;
            const char *text; /* as received, for re-emission */
        } num;
        struct {
            const char *s;
            size_t len;
        } str;
        struct {
            struct stubdm__json *items;
            size_t n;
        } arr;
        struct {
            struct member *members;
            size_t n;
        } obj;
    } v;
};

struct member {
    const char *key; /* NULL for array elements on the scratch stack */
    size_t key_len;
    struct stubdm__json value;
};

/* A reply or event of QEMU's is typically a few hundred bytes: its nodes
 * and text fit in the doc's own first chunk, so a small message costs one
 * allocation (see stubdm__json_parser_take).  The whole doc stays within
 * glibc's per-thread cache sizes (at most 1032 usable bytes), where malloc
 * and free are a few instructions instead of a trip through the bins. */
#define DOC_INLINE 944u

struct stubdm__json_doc {
    struct arena arena;
    struct stubdm__json root;
    char *text;
    size_t text_len;
    bool text_inline; /* text lives in the arena, not in its own block */
    max_align_t first[DOC_INLINE / sizeof(max_align_t)];
};
_Static_assert(sizeof(struct stubdm__json_doc) <= 1032,
               "a doc outgrows glibc's tcache");

const char *stubdm__json_type_name(enum stubdm__json_type t)
{
    switch (t) {
    case STUBDM__JSON_NULL:
        return "null";
    case STUBDM__JSON_BOOL:
        return "boolean";
    case STUBDM__JSON_INT:
        return "integer";
    case STUBDM__JSON_DOUBLE:
        return "number";
    case STUBDM__JSON_STRING:
        return "string";
    case STUBDM__JSON_ARRAY:
        return "array";
    case STUBDM__JSON_OBJECT:
        return "object";
    }
    return "?";
}

enum stubdm__json_type stubdm__json_type(const struct stubdm__json *v)
{
    return v ? (enum stubdm__json_type)v->type : STUBDM__JSON_NULL;
}

bool stubdm__json_is(const struct stubdm__json *v, enum stubdm__json_type t)
{
    return v && v->type == t;
}

const struct stubdm__json *stubdm__json_get(const struct stubdm__json *v,
                                            const char *key)
{
    if (!v || v->type != STUBDM__JSON_OBJECT || !key)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < v->v.obj.n; i++) {
        const struct member *m = &v->v.obj.members[i];
        if (m->key_len == klen && memcmp(m->key, key, klen) == 0)
            return &m->value;
    }
    return NULL;
}

size_t stubdm__json_len(const struct stubdm__json *v)
{
    if (!v)
        return 0;
    if (v->type == STUBDM__JSON_ARRAY)
        return v->v.arr.n;
    if (v->type == STUBDM__JSON_OBJECT)
        return v->v.obj.n;
    return 0;
}

const struct stubdm__json *stubdm__json_at(const struct stubdm__json *v,
                                           size_t i)
{
    if (!v || v->type != STUBDM__JSON_ARRAY || i >= v->v.arr.n)
        return NULL;
    return &v->v.arr.items[i];
}

const struct stubdm__json *stubdm__json_member(const struct stubdm__json *v,
                                               size_t i, const char **key,
                                               size_t *key_len)
{
    if (!v || v->type != STUBDM__JSON_OBJECT || i >= v->v.obj.n)
        return NULL;
    const struct member *m = &v->v.obj.members[i];
    if (key)
        *key = m->key;
    if (key_len)
        *key_len = m->key_len;
    return &m->value;
}

const char *stubdm__json_as_string(const struct stubdm__json *v, size_t *len)
{
    if (!v || v->type != STUBDM__JSON_STRING)
        return NULL;
    if (len)
        *len = v->v.str.len;
    return v->v.str.s;
}

bool stubdm__json_string_is(const struct stubdm__json *v, const char *s)
{
    if (!v || v->type != STUBDM__JSON_STRING || !s)
        return false;
    size_t n = strlen(s);
    return v->v.str.len == n && memcmp(v->v.str.s, s, n) == 0;
}

bool stubdm__json_as_int64(const struct stubdm__json *v, int64_t *out)
{
    if (!v || v->type != STUBDM__JSON_INT || v->big)
        return false;
    *out = v->v.i;
    return true;
}

bool stubdm__json_as_uint64(const struct stubdm__json *v, uint64_t *out)
{
    if (!v || v->type != STUBDM__JSON_INT)
        return false;
    if (v->big) {
        *out = v->v.u;
        return true;
    }
    if (v->v.i < 0)
        return false;
    *out = (uint64_t)v->v.i;
    return true;
}

bool stubdm__json_as_double(const struct stubdm__json *v, double *out)
{
    if (!v)
        return false;
    if (v->type == STUBDM__JSON_DOUBLE)
        *out = v->v.num.d;
    else if (v->type == STUBDM__JSON_INT)
        *out = v->big ? (double)v->v.u : (double)v->v.i;
    else
        return false;
    return true;
}

bool stubdm__json_as_bool(const struct stubdm__json *v, bool *out)
{
    if (!v || v->type != STUBDM__JSON_BOOL)
        return false;
    *out = v->v.b;
    return true;
}

bool stubdm__json_equal(const struct stubdm__json *a,
                        const struct stubdm__json *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type || a->big != b->big)
        return false;
    switch ((enum stubdm__json_type)a->type) {
    case STUBDM__JSON_NULL:
        return true;
    case STUBDM__JSON_BOOL:
        return a->v.b == b->v.b;
    case STUBDM__JSON_INT:
        return a->big ? a->v.u == b->v.u : a->v.i == b->v.i;
    case STUBDM__JSON_DOUBLE:
        return strcmp(a->v.num.text, b->v.num.text) == 0 &&
               memcmp(&a->v.num.d, &b->v.num.d, sizeof(double)) == 0;
    case STUBDM__JSON_STRING:
        return a->v.str.len == b->v.str.len &&
               memcmp(a->v.str.s, b->v.str.s, a->v.str.len + 1) == 0;
    case STUBDM__JSON_ARRAY:
        if (a->v.arr.n != b->v.arr.n)
            return false;
        for (size_t i = 0; i < a->v.arr.n; i++)
            if (!stubdm__json_equal(&a->v.arr.items[i], &b->v.arr.items[i]))
                return false;
        return true;
    case STUBDM__JSON_OBJECT:
        if (a->v.obj.n != b->v.obj.n)
            return false;
        for (size_t i = 0; i < a->v.obj.n; i++) {
            const struct member *x = &a->v.obj.members[i],
                                *y = &b->v.obj.members[i];
            if (x->key_len != y->key_len ||
                memcmp(x->key, y->key, x->key_len + 1) != 0 ||
                !stubdm__json_equal(&x->value, &y->value))
                return false;
        }
        return true;
    }
    return false;
}

const struct stubdm__json *stubdm__json_doc_root(
    const struct stubdm__json_doc *doc)
{
    return doc ? &doc->root : NULL;
}

const char *stubdm__json_doc_text(const struct stubdm__json_doc *doc,
                                  size_t *len)
{
    if (len)
        *len = doc ? doc->text_len : 0;
    return doc ? doc->text : NULL;
}

void *stubdm__json_doc_alloc(struct stubdm__json_doc *doc, size_t size)
{
    void *m = size ? arena_alloc(&doc->arena, size) : NULL;
    if (m)
        memset(m, 0, size);
    return m;
}

void stubdm__json_doc_free(struct stubdm__json_doc *doc)
{
    if (!doc)
        return;
    arena_dispose(&doc->arena);
    if (!doc->text_inline)
        free(doc->text);
    free(doc);
}

void stubdm__json_limits_default(struct stubdm__json_limits *lim)
{
    lim->max_bytes = STUBDM__JSON_DEFAULT_MAX_BYTES;
    lim->max_depth = STUBDM__JSON_DEFAULT_MAX_DEPTH;
    lim->max_values = STUBDM__JSON_DEFAULT_MAX_VALUES;
    lim->max_string = STUBDM__JSON_DEFAULT_MAX_BYTES;
}

static void limits_fill(struct stubdm__json_limits *dst,
                        const struct stubdm__json_limits *src)
{
    stubdm__json_limits_default(dst);
    if (!src)
        return;
    if (src->max_bytes)
        dst->max_bytes = src->max_bytes;
    if (src->max_depth)
        dst->max_depth = src->max_depth;
    if (src->max_values)
        dst->max_values = src->max_values;
    dst->max_string = src->max_string ? src->max_string : dst->max_bytes;
}

/* ---- Strict UTF-8 ------------------------------------------------------- */
/* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */

static __attribute__((noinline)) bool utf8_valid(const unsigned char *s,
                                                 size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* Most QMP text is ASCII: skip it eight bytes at a time. */
        while (n - i >= 8) {
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (word & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the 2nd byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return false;
        }
        if (n - i - 1 < need)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += need + 1;
    }
    return true;
}

/* ---- Parser ------------------------------------------------------------- */

enum parser_state {
    PARSER_RUNNING,
    PARSER_DONE,
    PARSER_FAILED,
};

struct stubdm__json_parser {
    struct stubdm__json_limits lim;
    bool require_object;
    yajl_handle yh;
    enum parser_state state;
    size_t bytes; /* consumed for this value, leading whitespace too */
    bool started; /* the first byte of the value has been seen */
    struct stubdm__buf text;
    unsigned depth;
    size_t values;
    struct stubdm__json_doc *doc;
    /* Children of the open containers, innermost last. */
    struct member *stack;
    size_t stack_len, stack_cap;
    /* Open containers, outermost first (at most max_depth). */
    struct frame {
        size_t first; /* where its children start on the stack */
        bool object;
    } * frames;
    size_t frames_cap;
    bool in_obj;  /* the innermost open container is an object */
    bool in_yajl; /* inside yajl_parse: callbacks may be running */
    /* The yajl handle can parse the next value: it is fresh, or its last
     * value ended cleanly (see parser_feed).  Otherwise reset replaces it. */
    bool yh_reusable;
    size_t done_at; /* bytes of the current yajl_parse call up to the
                     * root value's last byte */
    /* An emptied doc handed back by its consumer (parser_recycle), for the
     * next value: saves a malloc and a free per message. */
    struct stubdm__json_doc *spare;
    locale_t c_locale; /* for strtod_l; created on the first fraction */
    struct stubdm__json_error err;
};

static int fail(struct stubdm__json_parser *p, int code, const char *fmt, ...)
    STUBDM_PRINTF(3, 4) STUBDM_COLD;

/* Record the first failure; returns 0 so callbacks can "return fail()". */
static int fail(struct stubdm__json_parser *p, int code, const char *fmt, ...)
{
    if (p->state == PARSER_FAILED)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err.msg, sizeof(p->err.msg), fmt, ap);
    va_end(ap);
    p->err.code = code;
    p->err.offset = p->bytes;
    if (p->in_yajl)
        p->err.offset += yajl_get_bytes_consumed(p->yh);
    p->state = PARSER_FAILED;
    return 0;
}

/* Grow the stack for one more entry; the slow path of stack_push. */
static JSON_COLD struct member *stack_grow(struct stubdm__json_parser *p)
{
    size_t cap = p->stack_cap ? p->stack_cap * 2 : 64;
    struct member *s = stubdm__reallocarray(p->stack, cap, sizeof(*s));
    if (!s) {
        fail(p, STUBDM_ENOMEM, "could not be parsed: out of memory");
        return NULL;
    }
    p->stack = s;
    p->stack_cap = cap;
    return &p->stack[p->stack_len++];
}

/* A new, uninitialised entry on top of the stack (NULL: out of memory).
 * Callers fill its fields in place: building a struct and copying it
 * costs a store-forwarding stall per value. */
static inline struct member *stack_push(struct stubdm__json_parser *p)
{
    if (p->stack_len == p->stack_cap)
        return stack_grow(p);
    return &p->stack[p->stack_len++];
}

/* Count a value against max_values. */
static inline int count_value(struct stubdm__json_parser *p, bool object)
{
    /* A second value after the root in the same input: stop yajl there
     * (the bytes belong to the next parse; the handle is then replaced). */
    if (p->state != PARSER_RUNNING)
        return 0;
    if (p->depth == 0 && p->require_object && !object)
        return fail(p, STUBDM_EPROTO, "is not a JSON object");
    if (++p->values > p->lim.max_values)
        return fail(p, STUBDM_ELIMIT, "has more than %zu values",
                    p->lim.max_values);
    return 1;
}

/* Where the next finished value goes: the root, a new array element, or
 * the value of the object member whose key was pushed last.  NULL: out of
 * memory.  Valid until the next push. */
static inline struct stubdm__json *value_slot(struct stubdm__json_parser *p)
{
    if (p->depth == 0)
        return &p->doc->root;
    if (p->in_obj)
        return &p->stack[p->stack_len - 1].value;
    struct member *m = stack_push(p);
    if (!m)
        return NULL;
    m->key = NULL;
    m->key_len = 0;
    return &m->value;
}

/* The value just written to its slot is complete.  For the root, note
 * where it ends and let yajl go on: cancelling would make the handle
 * unusable, and what follows is usually just the "\r\n" (see feed). */
static inline int value_done(struct stubdm__json_parser *p)
{
    if (p->depth > 0)
        return 1;
    p->state = PARSER_DONE;
    /* (The quick path finds the end itself.) */
    p->done_at = p->in_yajl ? yajl_get_bytes_consumed(p->yh) : 0;
    return 1;
}

/* Why copy_string refused a string. */
static JSON_COLD const char *string_refused(struct stubdm__json_parser *p,
                                            const char *what, int why)
{
    if (why == STUBDM_ELIMIT)
        fail(p, STUBDM_ELIMIT, "has a %s longer than %zu bytes", what,
             p->lim.max_string);
    else if (why == STUBDM_ENOMEM)
        fail(p, STUBDM_ENOMEM, "could not be parsed: out of memory");
    else
        fail(p, STUBDM_EPROTO, "has a %s that is not valid UTF-8", what);
    return NULL;
}

/*
 * Copy a string or key into the arena, NUL-terminated, checking its length
 * and UTF-8.  The copy and the ASCII check are one pass, a word at a time;
 * only text with a byte >= 0x80 goes through the full UTF-8 validator.
 */
JSON_INLINE const char *copy_string(struct stubdm__json_parser *p,
                                    const unsigned char *s, size_t len,
                                    const char *what)
{
    if (len > p->lim.max_string)
        return string_refused(p, what, STUBDM_ELIMIT);
    /* Room for len + 1 rounded up to 8: whole words can be stored. */
    char *c = arena_alloc(&p->doc->arena, len + 1);
    if (!c)
        return string_refused(p, what, STUBDM_ENOMEM);
    uint64_t high = 0;
    if (len >= 8) {
        /* Whole words, the last one overlapping its predecessor. */
        for (size_t i = 0; i + 8 < len; i += 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            high |= w;
            memcpy(c + i, &w, 8);
        }
        uint64_t w;
        memcpy(&w, s + len - 8, 8);
        high |= w;
        memcpy(c + len - 8, &w, 8);
    } else if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + len - 4, 4);
        high |= a | b;
        memcpy(c, &a, 4);
        memcpy(c + len - 4, &b, 4);
    } else if (len > 0) {
        unsigned char a = s[0], b = s[len / 2], d = s[len - 1];
        high |= (uint64_t)(a | b | d);
        c[0] = (char)a;
        c[len / 2] = (char)b;
        c[len - 1] = (char)d;
    }
    c[len] = '\0';
    if ((high & UINT64_C(0x8080808080808080)) &&
        !utf8_valid((const unsigned char *)c, len))
        return string_refused(p, what, STUBDM_EPROTO);
    return c;
}

/* The slot of a scalar value, counted against the limits and typed (not
 * big); NULL when the parse has failed. */
JSON_INLINE struct stubdm__json *scalar_slot(struct stubdm__json_parser *p,
                                             int type)
{
    if (!count_value(p, false))
        return NULL;
    struct stubdm__json *v = value_slot(p);
    if (!v)
        return NULL;
    v->type = type;
    v->big = false;
    return v;
}

static int cb_null(void *ctx)
{
    return scalar_slot(ctx, STUBDM__JSON_NULL) ? value_done(ctx) : 0;
}

static int cb_boolean(void *ctx, int b)
{
    struct stubdm__json *v = scalar_slot(ctx, STUBDM__JSON_BOOL);
    if (!v)
        return 0;
    v->v.b = b != 0;
    return value_done(ctx);
}

/* yajl has checked the JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?
 * ([eE][+-]?[0-9]+)?.  Integers are converted here, exactly. */
JSON_INLINE bool parse_integer(const char *s, size_t len,
                               struct stubdm__json *v)
{
    bool neg = len > 0 && s[0] == '-';
    uint64_t mag = 0;
    for (size_t i = neg; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false; /* fraction or exponent */
        unsigned d = (unsigned)(s[i] - '0');
        if (mag > (UINT64_MAX - d) / 10)
            return false; /* too large: a double */
        mag = mag * 10 + d;
    }
    v->type = STUBDM__JSON_INT;
    v->big = false;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return false;
        v->v.i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else if (mag > (uint64_t)INT64_MAX) {
        v->big = true;
        v->v.u = mag;
    } else {
        v->v.i = (int64_t)mag;
    }
    return true;
}

JSON_INLINE int cb_number(void *ctx, const char *s, size_t len)
{
    struct stubdm__json_parser *p = ctx;
    struct stubdm__json *v = scalar_slot(p, STUBDM__JSON_INT);
    if (!v)
        return 0;
    if (!parse_integer(s, len, v)) {
        /* strtod follows LC_NUMERIC, which the application may have set to
         * a locale with a decimal comma: parse in the C locale. */
        if (!p->c_locale) {
            p->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
            if (!p->c_locale)
                return fail(p, STUBDM_ENOMEM,
                            "could not be parsed: out of memory");
        }
        char *text = arena_alloc(&p->doc->arena, len + 1);
        if (!text)
            return fail(p, STUBDM_ENOMEM,
                        "could not be parsed: out of memory");
        memcpy(text, s, len);
        text[len] = '\0';
        v->type = STUBDM__JSON_DOUBLE;
        v->big = false;
        v->v.num.d = strtod_l(text, NULL, p->c_locale);
        v->v.num.text = text;
    }
    return value_done(p);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    struct stubdm__json_parser *p = ctx;
    struct stubdm__json *v = scalar_slot(p, STUBDM__JSON_STRING);
    if (!v)
        return 0;
    const char *c = copy_string(p, s, len, "string");
    if (!c)
        return 0;
    v->v.str.s = c;
    v->v.str.len = len;
    return value_done(p);
}

/*
 * Containers.  A nested container's slot on the stack precedes its
 * children: the member pushed by its key inside an object, a slot pushed
 * here inside an array.  The root has no slot.
 */
JSON_INLINE int begin_container(struct stubdm__json_parser *p, bool object)
{
    if (!count_value(p, object))
        return 0;
    if (p->depth >= p->lim.max_depth)
        return fail(p, STUBDM_ELIMIT, "is nested deeper than %u",
                    p->lim.max_depth);
    if (p->depth > 0 && !p->in_obj) {
        struct member *slot = stack_push(p);
        if (!slot)
            return 0;
        slot->key = NULL;
        slot->key_len = 0;
    }
    if (p->depth == p->frames_cap) {
        size_t cap = p->frames_cap ? p->frames_cap * 2 : 16;
        struct frame *f = stubdm__reallocarray(p->frames, cap, sizeof(*f));
        if (!f)
            return fail(p, STUBDM_ENOMEM,
                        "could not be parsed: out of memory");
        p->frames = f;
        p->frames_cap = cap;
    }
    p->frames[p->depth].first = p->stack_len;
    p->frames[p->depth].object = object;
    p->depth++;
    p->in_obj = object;
    return 1;
}

/* Duplicate keys: pairwise for small objects, sorted copy for large ones. */
static int key_cmp(const void *a, const void *b)
{
    const struct member *x = *(const struct member *const *)a;
    const struct member *y = *(const struct member *const *)b;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return memcmp(x->key, y->key, x->key_len);
}

static int check_duplicates(struct stubdm__json_parser *p,
                            const struct member *m, size_t n)
{
    const struct member *dup = NULL;
    if (n <= 16) {
        /* Keys are NUL-terminated, so key[0] can be read even when empty:
         * most distinct keys of the same length differ there, which spares
         * the call to memcmp. */
        for (size_t i = 1; i < n && !dup; i++)
            for (size_t j = 0; j < i; j++)
                if (m[i].key_len == m[j].key_len &&
                    m[i].key[0] == m[j].key[0] &&
                    memcmp(m[i].key, m[j].key, m[i].key_len) == 0) {
                    dup = &m[i];
                    break;
                }
    } else {
        const struct member **sorted = stubdm__reallocarray(NULL, n,
                                                            sizeof(*sorted));
        if (!sorted)
            return fail(p, STUBDM_ENOMEM,
                        "could not be parsed: out of memory");
        for (size_t i = 0; i < n; i++)
            sorted[i] = &m[i];
        qsort(sorted, n, sizeof(*sorted), key_cmp);
        for (size_t i = 1; i < n && !dup; i++)
            if (key_cmp(&sorted[i - 1], &sorted[i]) == 0)
                dup = sorted[i];
        free(sorted);
    }
    if (dup) {
        /* The key is valid UTF-8 but may hold anything: print a prefix,
         * replacing what is not printable ASCII. */
        char shown[40];
        size_t k = 0;
        for (; k < dup->key_len && k < sizeof(shown) - 1; k++) {
            char c = dup->key[k];
            shown[k] = c >= 0x20 && c < 0x7f && c != '"' ? c : '?';
        }
        shown[k] = '\0';
        return fail(p, STUBDM_EPROTO, "has a duplicate key \"%s\"%s", shown,
                    k < dup->key_len ? "..." : "");
    }
    return 1;
}

JSON_INLINE int end_container(struct stubdm__json_parser *p, bool object)
{
    size_t first = p->frames[--p->depth].first;
    size_t n = p->stack_len - first;
    void *dst = NULL;
    if (n > 0) {
        struct member *children = p->stack + first; /* stack is not NULL */
        if (object && !check_duplicates(p, children, n))
            return 0;
        size_t each = object ? sizeof(struct member)
                             : sizeof(struct stubdm__json);
        dst = arena_alloc(&p->doc->arena, n * each);
        if (!dst)
            return fail(p, STUBDM_ENOMEM,
                        "could not be parsed: out of memory");
        if (object) {
            memcpy(dst, children, n * each);
        } else {
            struct stubdm__json *items = dst;
            for (size_t i = 0; i < n; i++)
                items[i] = children[i].value;
        }
    }
    p->stack_len = first;
    p->in_obj = p->depth > 0 && p->frames[p->depth - 1].object;
    /* The container's slot: the root, or the entry below its children. */
    struct stubdm__json *v = p->depth == 0 ? &p->doc->root
                                           : &p->stack[first - 1].value;
    v->big = false;
    if (object) {
        v->type = STUBDM__JSON_OBJECT;
        v->v.obj.members = dst;
        v->v.obj.n = n;
    } else {
        v->type = STUBDM__JSON_ARRAY;
        v->v.arr.items = dst;
        v->v.arr.n = n;
    }
    return value_done(p);
}

static int cb_start_map(void *ctx)
{
    return begin_container(ctx, true);
}

static int cb_end_map(void *ctx)
{
    return end_container(ctx, true);
}

static int cb_start_array(void *ctx)
{
    return begin_container(ctx, false);
}

static int cb_end_array(void *ctx)
{
    return end_container(ctx, false);
}

JSON_INLINE int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct stubdm__json_parser *p = ctx;
    const char *key = copy_string(p, s, len, "key");
    if (!key)
        return 0;
    struct member *m = stack_push(p);
    if (!m)
        return 0;
    m->key = key;
    m->key_len = len;
    m->value.type = STUBDM__JSON_NULL; /* until its value arrives */
    return 1;
}

static const yajl_callbacks parser_callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number, /* integers/doubles converted by us */
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end_map,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end_array,
};

/* Empty a doc's contents (not the doc itself). */
static void doc_empty(struct stubdm__json_doc *doc)
{
    arena_dispose(&doc->arena);
    if (!doc->text_inline)
        free(doc->text);
    doc->text = NULL;
    doc->text_inline = true;
}

/* An empty doc for the parser's next value: the one it holds (never handed
 * out) emptied for reuse, a recycled one, or a new one.  NULL: out of
 * memory. */
static struct stubdm__json_doc *doc_fresh(struct stubdm__json_parser *p)
{
    struct stubdm__json_doc *doc = p->doc;

    if (doc) {
        doc_empty(doc);
    } else if (p->spare) {
        doc = p->spare;
        p->spare = NULL;
        STUBDM__MEM_SHOW(doc, sizeof(*doc));
    } else {
        doc = stubdm__malloc(sizeof(*doc));
        if (!doc)
            return NULL;
    }
    arena_init(&doc->arena);
    doc->arena.cur = (char *)doc->first;
    doc->arena.left = sizeof(doc->first);
    memset(&doc->root, 0, sizeof(doc->root));
    doc->text = NULL;
    doc->text_len = 0;
    doc->text_inline = false;
    return doc;
}

int stubdm__json_parser_new(struct stubdm__json_parser **out,
                            const struct stubdm__json_limits *lim)
{
    *out = NULL;
    struct stubdm__json_parser *p = stubdm__calloc(1, sizeof(*p));
    if (!p)
        return STUBDM_ENOMEM;
    limits_fill(&p->lim, lim);
    int rc = stubdm__json_parser_reset(p, NULL);
    if (rc) {
        stubdm__json_parser_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void stubdm__json_parser_free(struct stubdm__json_parser *p)
{
    if (!p)
        return;
    if (p->yh)
        yajl_free(p->yh);
    stubdm__json_doc_free(p->doc);
    if (p->spare) {
        STUBDM__MEM_SHOW(p->spare, sizeof(*p->spare));
        free(p->spare);
    }
    stubdm__buf_dispose(&p->text);
    free(p->stack);
    free(p->frames);
    if (p->c_locale)
        freelocale(p->c_locale);
    free(p);
}

int stubdm__json_parser_reset(struct stubdm__json_parser *p,
                              const struct stubdm__json_limits *lim)
{
    if (lim)
        limits_fill(&p->lim, lim);
    /* yajl has no reset.  A handle whose last value ended cleanly is in its
     * "between values" state (yajl_allow_multiple_values) and parses the
     * next one like a fresh handle; any other is replaced (a few mallocs). */
    if (p->yh && !p->yh_reusable) {
        yajl_free(p->yh);
        p->yh = NULL;
    }
    if (!p->yh) {
        p->yh = yajl_alloc(&parser_callbacks, NULL, p);
        p->yh_reusable = p->yh != NULL;
        if (p->yh) {
            /* yajl's other defaults are what we want: no comments, no
             * partial values at the end.  Its UTF-8 check is both laxer
             * than ours and the most expensive part of its lexer: turn it
             * off.  Nothing is lost: every string and key reaches
             * copy_string (decoded), which checks it strictly, and bytes
             * >= 0x80 outside strings remain invalid JSON to yajl.
             * Decoding only inserts complete sequences (or '?'), so a bad
             * raw byte cannot be repaired by a neighbouring escape. */
            yajl_config(p->yh, yajl_dont_validate_strings, 1);
            yajl_config(p->yh, yajl_allow_multiple_values, 1);
        }
    }
    p->doc = doc_fresh(p);
    /* The text buffer is kept across values (take copies small texts),
     * unless a large value left it large. */
    if (p->text.cap > 4 * DOC_INLINE)
        stubdm__buf_dispose(&p->text);
    stubdm__buf_consume(&p->text, p->text.len);
    p->text.limit = p->lim.max_bytes;
    p->state = PARSER_RUNNING;
    p->bytes = 0;
    p->started = false;
    p->depth = 0;
    p->in_obj = false;
    p->values = 0;
    p->stack_len = 0;
    memset(&p->err, 0, sizeof(p->err));
    if (!p->yh || !p->doc) {
        fail(p, STUBDM_ENOMEM, "could not be parsed: out of memory");
        return STUBDM_ENOMEM;
    }
    return 0;
}

void stubdm__json_parser_require_object(struct stubdm__json_parser *p, bool on)
{
    p->require_object = on;
}

static bool is_json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Turn yajl's error into ours ("is not valid JSON: <yajl's words>"). */
static void fail_from_yajl(struct stubdm__json_parser *p)
{
    unsigned char *e = yajl_get_error(p->yh, 0, NULL, 0);
    const char *text = e ? (const char *)e : "parse error";
    size_t n = strlen(text);
    while (n > 0 &&
           (text[n - 1] == '\n' || text[n - 1] == '.' || text[n - 1] == ' '))
        n--;
    fail(p, STUBDM_EPROTO, "is not valid JSON: %.*s", (int)n, text);
    if (e)
        yajl_free_error(p->yh, e);
}

int stubdm__json_parser_feed(struct stubdm__json_parser *p, const void *data,
                             size_t len, size_t *consumed)
{
    const unsigned char *in = data;
    size_t used = 0;
    *consumed = 0;
    if (p->state == PARSER_FAILED)
        return p->err.code;
    if (p->state == PARSER_DONE)
        return 0;
    if (!p->started) {
        while (used < len && is_json_space(in[used]))
            used++;
        if (used > p->lim.max_bytes - p->bytes) {
            p->bytes = p->lim.max_bytes;
            *consumed = used;
            fail(p, STUBDM_ELIMIT, "exceeds %zu bytes", p->lim.max_bytes);
            return p->err.code;
        }
        p->bytes += used;
        if (used == len) {
            *consumed = used;
            return STUBDM__JSON_MORE;
        }
        /* yajl also skips \v and \f, which JSON does not allow: refuse
         * them here so a value's text always starts with the value.  (Between
         * tokens yajl still tolerates them; the tree is unaffected.) */
        if (in[used] == '\v' || in[used] == '\f') {
            *consumed = used;
            fail(p, STUBDM_EPROTO, "is not valid JSON: invalid whitespace");
            return p->err.code;
        }
        p->started = true;
    }
    /* Never hand yajl more than the byte limit allows, so neither yajl's
     * token buffer nor our text buffer can outgrow it. */
    size_t room = p->lim.max_bytes - p->bytes;
    size_t chunk = len - used < room ? len - used : room;
    if (chunk == 0) {
        *consumed = used;
        fail(p, STUBDM_ELIMIT, "exceeds %zu bytes", p->lim.max_bytes);
        return p->err.code;
    }
    p->in_yajl = true;
    p->yh_reusable = false;
    yajl_status st = yajl_parse(p->yh, in + used, chunk);
    p->in_yajl = false;
    size_t taken = yajl_get_bytes_consumed(p->yh);
    if (st == yajl_status_ok)
        taken = chunk;
    if (p->state == PARSER_DONE) {
        /* The value ends at done_at; yajl may have looked further.  Its
         * handle can serve the next value only if it saw nothing but
         * whitespace after this one (a token, even a partial one it
         * buffers, belongs to the next value, which must start afresh). */
        bool clean = st == yajl_status_ok;
        for (size_t i = p->done_at; clean && i < chunk; i++)
            clean = is_json_space(in[used + i]);
        p->yh_reusable = clean;
        taken = p->done_at;
    }
    if (p->state != PARSER_FAILED &&
        stubdm__buf_append(&p->text, in + used, taken) != 0)
        fail(p, STUBDM_ENOMEM, "could not be parsed: out of memory");
    if (p->state == PARSER_RUNNING && st == yajl_status_error) {
        fail_from_yajl(p);
        p->err.offset = p->bytes + taken;
    }
    p->bytes += taken;
    used += taken;
    *consumed = used;
    if (p->state == PARSER_FAILED)
        return p->err.code;
    if (p->state == PARSER_DONE)
        return 0;
    if (st != yajl_status_ok) {
        fail(p, STUBDM_EPROTO, "could not be parsed: yajl status %d", st);
        return p->err.code;
    }
    if (used < len) {
        /* yajl took all we offered, which was all the limit allows. */
        fail(p, STUBDM_ELIMIT, "exceeds %zu bytes", p->lim.max_bytes);
        return p->err.code;
    }
    return STUBDM__JSON_MORE;
}

int stubdm__json_parser_finish(struct stubdm__json_parser *p)
{
    if (p->state == PARSER_FAILED)
        return p->err.code;
    if (p->state == PARSER_DONE)
        return 0;
    if (!p->started) {
        fail(p, STUBDM_EPROTO, "is empty");
        return p->err.code;
    }
    p->in_yajl = true;
    p->yh_reusable = false;
    yajl_status st = yajl_complete_parse(p->yh);
    p->in_yajl = false;
    if (p->state == PARSER_DONE)
        return 0;
    if (p->state == PARSER_RUNNING) {
        if (st == yajl_status_error && p->depth == 0)
            fail_from_yajl(p); /* e.g. a number cut short: "1." */
        else
            fail(p, STUBDM_EPROTO, "is truncated");
    }
    return p->err.code;
}

struct stubdm__json_doc *stubdm__json_parser_take(struct stubdm__json_parser *p)
{
    if (p->state != PARSER_DONE || !p->doc)
        return NULL;
    struct stubdm__json_doc *doc = p->doc;
    p->doc = NULL;
    /* The text buffer's storage becomes the doc's. */
    if (!p->text.data) {
        if (stubdm__buf_append(&p->text, "", 0) != 0) {
            p->doc = doc;
            return NULL;
        }
    }
    doc->text_len = p->text.len;
    /* A small text is copied into the doc's arena (usually its inline
     * chunk) and the parser keeps its buffer for the next value; a large
     * one is handed over, so the parser never holds on to big buffers. */
    char *t = p->text.len < DOC_INLINE
                  ? arena_alloc(&doc->arena, p->text.len + 1)
                  : NULL;
    if (t) {
        memcpy(t, p->text.data, p->text.len + 1);
        doc->text = t;
        doc->text_inline = true;
        stubdm__buf_consume(&p->text, p->text.len);
    } else {
        doc->text = p->text.data;
        stubdm__buf_init(&p->text, p->lim.max_bytes);
    }
    return doc;
}

/*
 * The quick path: a whole value already in one buffer, tokenised here in
 * one pass and handed to the very callbacks yajl would call, with the same
 * arguments and in the same order, so the tree, the limits (depth, values,
 * string length, bytes), the duplicate-key check and the strict UTF-8
 * check are the incremental parser's own.  Only the lexing differs, and it
 * covers the plain subset that makes up nearly every QMP message: strings
 * of printable ASCII without escapes, integers, true/false/null, objects
 * and arrays, and space/tab/CR/LF between tokens.  Anything else (an
 * escape, a byte >= 0x80 or a control byte in a string, a fraction or
 * exponent, a leading zero, other whitespace, a syntax error, a value cut
 * off by the end of the buffer, a limit reached, out of memory) declines,
 * and the caller parses the same bytes with the incremental parser, whose
 * verdict and error message are authoritative.
 */

/* Byte classes of the quick path: Q_PLAIN may appear unescaped in a string
 * there (printable ASCII but '"' and '\\'); Q_SPACE is skipped between
 * tokens (space, tab, CR, LF). */
enum { Q_PLAIN = 1, Q_SPACE = 2 };
#define Q_PLAIN_RANGE(c)                                                      \
    ((c) >= 0x20 && (c) < 0x7f && (c) != '"' && (c) != '\\')
#define Q_CLASS(c)                                                            \
    ((Q_PLAIN_RANGE(c) ? Q_PLAIN : 0) |                                       \
     ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n' ? Q_SPACE : 0))
#define Q_ROW(b)                                                              \
    Q_CLASS(b + 0), Q_CLASS(b + 1), Q_CLASS(b + 2), Q_CLASS(b + 3),           \
        Q_CLASS(b + 4), Q_CLASS(b + 5), Q_CLASS(b + 6), Q_CLASS(b + 7),       \
        Q_CLASS(b + 8), Q_CLASS(b + 9), Q_CLASS(b + 10), Q_CLASS(b + 11),     \
        Q_CLASS(b + 12), Q_CLASS(b + 13), Q_CLASS(b + 14), Q_CLASS(b + 15)
static const unsigned char quick_class[256] = {
    Q_ROW(0x00), Q_ROW(0x10), Q_ROW(0x20), Q_ROW(0x30),
    Q_ROW(0x40), Q_ROW(0x50), Q_ROW(0x60), Q_ROW(0x70),
    /* 0x80..0xff: neither */
};

static inline bool quick_plain(unsigned char c)
{
    return quick_class[c] & Q_PLAIN;
}

static inline bool quick_space(unsigned char c)
{
    return quick_class[c] & Q_SPACE;
}

/* The string starting after the opening quote at s[i]: its end (the closing
 * quote's index), or 0 when it is not plain or not complete. */
static inline size_t quick_string_end(const unsigned char *s, size_t i,
                                      size_t n)
{
    while (i < n && quick_plain(s[i]))
        i++;
    return i < n && s[i] == '"' ? i : 0;
}

/* What the quick path may meet next: after a value (or a key's colon). */
enum quick_want { Q_VALUE, Q_KEY, Q_KEY_OR_CLOSE, Q_VALUE_OR_CLOSE, Q_AFTER };

/* Sets p up for a quick parse; false when the quick path does not apply
 * (no object at the very start, or a fresh doc cannot be had).  *n is the
 * part of len within the byte limit. */
JSON_INLINE bool quick_begin(struct stubdm__json_parser *p,
                             const struct stubdm__json_limits *lim,
                             const unsigned char *s, size_t len, size_t *n)
{
    if (lim)
        limits_fill(&p->lim, lim);
    *n = len < p->lim.max_bytes ? len : p->lim.max_bytes;
    if (*n == 0 || s[0] != '{' || !p->require_object)
        return false;
    p->doc = doc_fresh(p);
    if (!p->doc)
        return false;
    p->state = PARSER_RUNNING;
    p->depth = 0;
    p->in_obj = false;
    p->values = 0;
    p->stack_len = 0;
    p->bytes = 0;
    p->started = true;
    return true;
}

/* Q_AFTER, at a container's closing bracket c: whether it closes the
 * innermost container. */
JSON_INLINE bool quick_close(struct stubdm__json_parser *p, unsigned char c)
{
    if (p->in_obj)
        return c == '}' && cb_end_map(p);
    return c == ']' && cb_end_array(p);
}

/* Q_KEY or Q_KEY_OR_CLOSE, at the '"' of s[i]: a plain key and its colon.
 * Returns the index after the colon, or 0 to decline. */
JSON_INLINE size_t quick_key(struct stubdm__json_parser *p,
                             const unsigned char *s, size_t i, size_t n)
{
    if (s[i] != '"')
        return 0;
    size_t end = quick_string_end(s, i + 1, n);
    if (!end || !cb_map_key(p, s + i + 1, end - i - 1))
        return 0;
    i = end + 1;
    while (i < n && quick_space(s[i]))
        i++;
    if (i >= n || s[i] != ':')
        return 0;
    return i + 1;
}

/* A number at s[i]: -?(0|[1-9][0-9]*), then a byte that cannot continue a
 * number (yajl lexes "01" as two numbers, "1." and "1e" on).  Returns the
 * index after it, or 0 to decline. */
JSON_INLINE size_t quick_number(struct stubdm__json_parser *p,
                                const unsigned char *s, size_t i, size_t n)
{
    size_t k = i + (s[i] == '-');
    if (k >= n || s[k] < '0' || s[k] > '9')
        return 0;
    if (s[k] == '0')
        k++;
    else
        while (k < n && s[k] >= '0' && s[k] <= '9')
            k++;
    if (k >= n || (s[k] >= '0' && s[k] <= '9') || s[k] == '.' || s[k] == 'e' ||
        s[k] == 'E')
        return 0;
    return cb_number(p, (const char *)s + i, k - i) ? k : 0;
}

/* The literal word (true, false, null) at s[i]: whether it is there in
 * full and its callback accepted it. */
JSON_INLINE bool quick_literal(struct stubdm__json_parser *p,
                               const unsigned char *s, size_t i, size_t n,
                               const char *word, size_t wlen)
{
    if (n - i < wlen || memcmp(s + i, word, wlen) != 0)
        return false;
    if (word[0] == 'n')
        return cb_null(p);
    return cb_boolean(p, word[0] == 't');
}

/* Q_VALUE or Q_VALUE_OR_CLOSE: a value at s[i], or the end of an empty
 * array.  Returns the index after it (and sets *want for what follows),
 * or 0 to decline.  Indexes go by value: the loop's locals stay out of
 * memory even in an unoptimised build. */
JSON_INLINE size_t quick_value(struct stubdm__json_parser *p,
                               const unsigned char *s, size_t i, size_t n,
                               enum quick_want *want)
{
    enum quick_want after = Q_AFTER;
    size_t next = i + 1;
    bool ok;

    switch (s[i]) {
    case ']':
        ok = *want == Q_VALUE_OR_CLOSE && cb_end_array(p);
        break;
    case '{':
        ok = cb_start_map(p);
        after = Q_KEY_OR_CLOSE;
        break;
    case '[':
        ok = cb_start_array(p);
        after = Q_VALUE_OR_CLOSE;
        break;
    case '"': {
        size_t end = quick_string_end(s, i + 1, n);
        ok = end && cb_string(p, s + i + 1, end - i - 1);
        next = end + 1;
        break;
    }
    case 't':
        ok = quick_literal(p, s, i, n, "true", 4);
        next = i + 4;
        break;
    case 'f':
        ok = quick_literal(p, s, i, n, "false", 5);
        next = i + 5;
        break;
    case 'n':
        ok = quick_literal(p, s, i, n, "null", 4);
        next = i + 4;
        break;
    default:
        next = quick_number(p, s, i, n);
        ok = next != 0;
        break;
    }
    *want = after;
    return ok ? next : 0;
}

/* The root object closed at s[i - 1]: its text goes with the tree, which
 * is handed out; NULL to decline. */
JSON_INLINE struct stubdm__json_doc *quick_finish(struct stubdm__json_parser *p,
                                                  const unsigned char *s,
                                                  size_t i, size_t *consumed)
{
    if (p->state != PARSER_DONE)
        return NULL;
    char *t = arena_alloc(&p->doc->arena, i + 1);
    if (!t)
        return NULL;
    memcpy(t, s, i);
    t[i] = '\0';
    struct stubdm__json_doc *doc = p->doc;
    doc->text = t;
    doc->text_len = i;
    doc->text_inline = true;
    p->doc = NULL;
    p->bytes = i;
    *consumed = i;
    return doc;
}

struct stubdm__json_doc *stubdm__json_parser_quick(
    struct stubdm__json_parser *p, const struct stubdm__json_limits *lim,
    const void *data, size_t len, size_t *consumed)
{
    const unsigned char *s = data;
    size_t n;
    size_t i = 0;
    enum quick_want want = Q_VALUE;

    *consumed = 0;
    if (!quick_begin(p, lim, s, len, &n))
        return NULL;
    for (;;) {
        while (i < n && quick_space(s[i]))
            i++;
        if (i >= n)
            goto decline;
        if (want == Q_AFTER) {
            /* Inside a container: a comma, or its end. */
            if (s[i] == ',') {
                want = p->in_obj ? Q_KEY : Q_VALUE;
                i++;
                continue;
            }
            if (!quick_close(p, s[i]))
                goto decline;
            i++;
            if (p->depth == 0)
                break;
        } else if (want == Q_KEY || want == Q_KEY_OR_CLOSE) {
            if (s[i] == '}' && want == Q_KEY_OR_CLOSE) {
                if (!cb_end_map(p))
                    goto decline;
                i++;
                if (p->depth == 0)
                    break;
                want = Q_AFTER;
                continue;
            }
            if (!(i = quick_key(p, s, i, n)))
                goto decline;
            want = Q_VALUE;
        } else if (!(i = quick_value(p, s, i, n, &want))) {
            goto decline;
        }
    }
    struct stubdm__json_doc *doc = quick_finish(p, s, i, consumed);
    if (doc)
        return doc;
decline:
    /* Whatever was built stays in p->doc, which the next reset empties. */
    p->state = PARSER_FAILED;
    return NULL;
}

void stubdm__json_parser_recycle(struct stubdm__json_parser *p,
                                 struct stubdm__json_doc *doc)
{
    if (!doc)
        return;
    if (p->spare) {
        stubdm__json_doc_free(doc);
        return;
    }
    doc_empty(doc);
    p->spare = doc;
    STUBDM__MEM_HIDE(doc, sizeof(*doc));
}

const struct stubdm__json_error *stubdm__json_parser_error(
    const struct stubdm__json_parser *p)
{
    return &p->err;
}

int stubdm__json_parse(const void *text, size_t len,
                       const struct stubdm__json_limits *lim,
                       struct stubdm__json_doc **doc_out,
                       struct stubdm__json_error *err)
{
    struct stubdm__json_parser *p;
    size_t used = 0;
    *doc_out = NULL;
    int rc = stubdm__json_parser_new(&p, lim);
    if (rc) {
        if (err) {
            *err = (struct stubdm__json_error){.code = rc};
            snprintf(err->msg, sizeof(err->msg),
                     "could not be parsed: out of memory");
        }
        return rc;
    }
    rc = stubdm__json_parser_feed(p, text, len, &used);
    if (rc == STUBDM__JSON_MORE)
        rc = stubdm__json_parser_finish(p);
    if (rc == 0) {
        const unsigned char *rest = (const unsigned char *)text + used;
        size_t i = 0;
        while (i < len - used && is_json_space(rest[i]))
            i++;
        if (i < len - used) {
            fail(p, STUBDM_EPROTO, "has data after the value");
            p->err.offset = used + i;
            rc = p->err.code;
        }
    }
    if (rc == 0) {
        *doc_out = stubdm__json_parser_take(p);
        if (!*doc_out) {
            fail(p, STUBDM_ENOMEM, "could not be parsed: out of memory");
            rc = STUBDM_ENOMEM;
        }
    }
    if (rc && err)
        *err = p->err;
    stubdm__json_parser_free(p);
    return rc;
}

/* ---- Writer ------------------------------------------------------------- */

struct stubdm__json_writer {
    yajl_gen gen;
    struct stubdm__buf *out;
    int rc;         /* first failure */
    unsigned depth; /* open containers */
};

/* yajl_gen prints straight into the caller's buffer. */
static void writer_print(void *ctx, const char *s, size_t len)
{
    struct stubdm__json_writer *w = ctx;
    if (w->rc)
        return;
    int rc = stubdm__buf_append(w->out, s, len);
    if (rc)
        w->rc = rc;
}

struct stubdm__json_writer *stubdm__json_writer_new(struct stubdm__buf *out)
{
    struct stubdm__json_writer *w = stubdm__calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->out = out;
    w->gen = yajl_gen_alloc(NULL);
    if (!w->gen) {
        free(w);
        return NULL;
    }
    yajl_gen_config(w->gen, yajl_gen_print_callback, writer_print, w);
    return w;
}

int stubdm__json_writer_end(struct stubdm__json_writer *w)
{
    if (!w)
        return STUBDM_ENOMEM;
    int rc = w->rc;
    if (!rc && w->depth != 0)
        rc = STUBDM_EINVAL;
    yajl_gen_free(w->gen);
    free(w);
    return rc;
}

static void writer_check(struct stubdm__json_writer *w, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok && !w->rc)
        w->rc = STUBDM_EINVAL;
}

/* Open (delta 1) or close (delta -1) a map or an array. */
static void writer_nest(struct stubdm__json_writer *w,
                        yajl_gen_status (*gen)(yajl_gen), int delta)
{
    if (w->rc)
        return;
    writer_check(w, gen(w->gen));
    if (delta > 0)
        w->depth++;
    else if (delta < 0)
        w->depth--;
}

void stubdm__json_w_object_begin(struct stubdm__json_writer *w)
{
    writer_nest(w, yajl_gen_map_open, 1);
}

void stubdm__json_w_object_end(struct stubdm__json_writer *w)
{
    writer_nest(w, yajl_gen_map_close, -1);
}

void stubdm__json_w_array_begin(struct stubdm__json_writer *w)
{
    writer_nest(w, yajl_gen_array_open, 1);
}

void stubdm__json_w_array_end(struct stubdm__json_writer *w)
{
    writer_nest(w, yajl_gen_array_close, -1);
}

void stubdm__json_w_string(struct stubdm__json_writer *w, const char *s,
                           size_t len)
{
    if (w->rc)
        return;
    /* yajl_gen's own UTF-8 check is as lax as its parser's. */
    if (!s || !utf8_valid((const unsigned char *)s, len)) {
        w->rc = STUBDM_EINVAL;
        return;
    }
    writer_check(w, yajl_gen_string(w->gen, (const unsigned char *)s, len));
}

void stubdm__json_w_cstring(struct stubdm__json_writer *w, const char *s)
{
    stubdm__json_w_string(w, s, s ? strlen(s) : 0);
}

void stubdm__json_w_key(struct stubdm__json_writer *w, const char *key)
{
    stubdm__json_w_cstring(w, key);
}

void stubdm__json_w_int64(struct stubdm__json_writer *w, int64_t i)
{
    if (w->rc)
        return;
    writer_check(w, yajl_gen_integer(w->gen, (long long)i));
}

void stubdm__json_w_uint64(struct stubdm__json_writer *w, uint64_t u)
{
    if (w->rc)
        return;
    char text[24];
    int n = snprintf(text, sizeof(text), "%" PRIu64, u);
    writer_check(w, yajl_gen_number(w->gen, text, (size_t)n));
}

void stubdm__json_w_bool(struct stubdm__json_writer *w, bool b)
{
    if (w->rc)
        return;
    writer_check(w, yajl_gen_bool(w->gen, b));
}

void stubdm__json_w_null(struct stubdm__json_writer *w)
{
    writer_nest(w, yajl_gen_null, 0);
}

void stubdm__json_w_value(struct stubdm__json_writer *w,
                          const struct stubdm__json *v)
{
    if (w->rc)
        return;
    if (!v) {
        w->rc = STUBDM_EINVAL;
        return;
    }
    /* Parsed trees are at most max_depth deep, so recursion is bounded. */
    switch ((enum stubdm__json_type)v->type) {
    case STUBDM__JSON_NULL:
        stubdm__json_w_null(w);
        break;
    case STUBDM__JSON_BOOL:
        stubdm__json_w_bool(w, v->v.b);
        break;
    case STUBDM__JSON_INT:
        if (v->big)
            stubdm__json_w_uint64(w, v->v.u);
        else
            stubdm__json_w_int64(w, v->v.i);
        break;
    case STUBDM__JSON_DOUBLE:
        writer_check(w, yajl_gen_number(w->gen, v->v.num.text,
                                        strlen(v->v.num.text)));
        break;
    case STUBDM__JSON_STRING:
        stubdm__json_w_string(w, v->v.str.s, v->v.str.len);
        break;
    case STUBDM__JSON_ARRAY:
        stubdm__json_w_array_begin(w);
        for (size_t i = 0; i < v->v.arr.n; i++)
            stubdm__json_w_value(w, &v->v.arr.items[i]);
        stubdm__json_w_array_end(w);
        break;
    case STUBDM__JSON_OBJECT:
        stubdm__json_w_object_begin(w);
        for (size_t i = 0; i < v->v.obj.n; i++) {
            const struct member *m = &v->v.obj.members[i];
            stubdm__json_w_string(w, m->key, m->key_len);
            stubdm__json_w_value(w, &m->value);
        }
        stubdm__json_w_object_end(w);
        break;
    }
}
