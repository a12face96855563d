/*
 * Allocation helpers.  The library never aborts on allocation failure: it
 * reports STUBDM_ENOMEM.  Multiplications are overflow-checked because
 * several sizes come from peers.
 */
#include "core/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *stubdm__calloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size ? size : 1);
}

void *stubdm__malloc(size_t size)
{
    return malloc(size ? size : 1);
}

void *stubdm__reallocarray(void *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    size_t bytes = n * size;
    return realloc(p, bytes ? bytes : 1);
}

char *stubdm__strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *stubdm__strndup(const char *s, size_t n)
{
    return s ? strndup(s, n) : NULL;
}

char *stubdm__vsprintf(const char *fmt, va_list ap)
{
    char *s = NULL;

    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    return s;
}

char *stubdm__sprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = stubdm__vsprintf(fmt, ap);
    va_end(ap);
    return s;
}

void stubdm__buf_dispose(struct stubdm__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Capacity for n more bytes and the NUL (n <= SIZE_MAX - len - 1). */
static int buf_grow(struct stubdm__buf *b, size_t n)
{
    /* One spare byte keeps the contents NUL-terminable for text users. */
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return STUBDM_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    return 0;
}

char *stubdm__buf_room(struct stubdm__buf *b, size_t n)
{
    if (n > SIZE_MAX - 1 - b->len || buf_grow(b, n))
        return NULL;
    return b->data + b->len;
}

int stubdm__buf_append(struct stubdm__buf *b, const void *p, size_t n)
{
    if (n > b->limit - b->len)
        return STUBDM_ELIMIT;
    if (buf_grow(b, n))
        return STUBDM_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void stubdm__buf_consume(struct stubdm__buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

int stubdm__stats_copy(void *dst, size_t dst_size, const void *src,
                       size_t src_size)
{
    if (!dst || dst_size == 0)
        return STUBDM_EINVAL;
    memset(dst, 0, dst_size);
    if (!src)
        return STUBDM_EINVAL;
    memcpy(dst, src, dst_size < src_size ? dst_size : src_size);
    return 0;
}
