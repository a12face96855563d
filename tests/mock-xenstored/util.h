/* Small helpers shared by the mock xenstored: allocation, growable
 * buffers and a string-keyed hash map. */
#ifndef MOCKXS_UTIL_H
#define MOCKXS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The mock is a test tool: running out of memory is not a state worth
 * recovering from, so allocation failure aborts loudly. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void *xmemdup(const void *p, size_t n);

struct buf {
	char *d;
	size_t len, cap;
};
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s); /* adds s including its NUL */
void buf_free(struct buf *b);

struct hent {
	struct hent *next;
	uint32_t hash;
	char *key;
	void *val;
};

struct hmap {
	struct hent **b;
	size_t nb, n;
};

void hmap_init(struct hmap *m);
/* free_val may be NULL. */
void hmap_destroy(struct hmap *m, void (*free_val)(void *));
void *hmap_get(const struct hmap *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *hmap_put(struct hmap *m, const char *key, void *val);
void *hmap_del(struct hmap *m, const char *key);

struct hiter {
	const struct hmap *m;
	size_t i;
	struct hent *e;
};
void hiter_init(struct hiter *it, const struct hmap *m);
/* Returns false at the end.  The current entry may not be deleted. */
bool hiter_next(struct hiter *it, const char **key, void **val);

#endif
