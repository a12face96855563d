/*
 * Memory (mem.c): abort-free, NULL on failure, overflow-checked; and a
 * growable byte buffer with a bound.
 */
#ifndef STUBDM_CORE_MEM_H
#define STUBDM_CORE_MEM_H

#include "core/base.h"

void *stubdm__calloc(size_t n, size_t size);
/* Uninitialised, for buffers filled at once (I/O, arena chunks). */
void *stubdm__malloc(size_t size);
void *stubdm__reallocarray(void *p, size_t n, size_t size);
char *stubdm__strdup(const char *s);
char *stubdm__strndup(const char *s, size_t n);
/* Copy a stats struct of src_size bytes into the caller's of dst_size
 * (stubdm_*_get_stats): the common prefix, the rest of dst zeroed.  src
 * NULL (no object): dst all zero, STUBDM_EINVAL. */
int stubdm__stats_copy(void *dst, size_t dst_size, const void *src,
                       size_t src_size);
char *stubdm__sprintf(const char *fmt, ...) STUBDM_PRINTF(1, 2);
char *stubdm__vsprintf(const char *fmt, va_list ap) STUBDM_PRINTF(1, 0);

/* A growable byte buffer, bounded by 'limit' (0: SIZE_MAX). */
struct stubdm__buf {
    char *data;
    size_t len, cap, limit;
};
static inline void stubdm__buf_init(struct stubdm__buf *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit ? limit : SIZE_MAX;
}
void stubdm__buf_dispose(struct stubdm__buf *b);
/* 0, STUBDM_ENOMEM, or STUBDM_ELIMIT when len would exceed limit. */
int stubdm__buf_append(struct stubdm__buf *b, const void *p, size_t n);
/* Drop the first n bytes. */
void stubdm__buf_consume(struct stubdm__buf *b, size_t n);
/* Capacity for n more bytes (limit not checked): where they go, to be
 * written and then accounted for by the caller (len, NUL); NULL: out of
 * memory. */
char *stubdm__buf_room(struct stubdm__buf *b, size_t n);

/* Memory kept for reuse (op blocks, docs) is off limits while it waits:
 * use after free is still caught by ASan, and by memcheck when its header
 * is there. */
#if defined(__SANITIZE_ADDRESS__)
#define STUBDM__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STUBDM__ASAN 1
#endif
#endif
#if defined(STUBDM__ASAN)
#include <sanitizer/asan_interface.h>
#define STUBDM__MEM_HIDE(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define STUBDM__MEM_SHOW(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define STUBDM__MEM_HIDE(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define STUBDM__MEM_SHOW(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#endif
#endif
#ifndef STUBDM__MEM_HIDE
#define STUBDM__MEM_HIDE(p, n) ((void)(p), (void)(n))
#define STUBDM__MEM_SHOW(p, n) ((void)(p), (void)(n))
#endif

#endif /* STUBDM_CORE_MEM_H */
