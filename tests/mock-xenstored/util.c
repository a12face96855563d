#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fputs("mock-xenstored: out of memory\n", stderr);
		abort();
	}
	return p;
}

void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p) {
		fputs("mock-xenstored: out of memory\n", stderr);
		abort();
	}
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fputs("mock-xenstored: out of memory\n", stderr);
		abort();
	}
	return p;
}

char *xstrdup(const char *s)
{
	return xmemdup(s, strlen(s) + 1);
}

void *xmemdup(const void *p, size_t n)
{
	void *r = xmalloc(n);
	if (n)
		memcpy(r, p, n);
	return r;
}

void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 64;
		while (nc < b->len + n)
			nc *= 2;
		b->d = xrealloc(b->d, nc);
		b->cap = nc;
	}
	if (n)
		memcpy(b->d + b->len, p, n);
	b->len += n;
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s) + 1);
}

void buf_free(struct buf *b)
{
	free(b->d);
	b->d = NULL;
	b->len = b->cap = 0;
}

static uint32_t hash_str(const char *s)
{
	/* FNV-1a: paths share long prefixes, so mix every byte. */
	uint32_t h = 2166136261u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

void hmap_init(struct hmap *m)
{
	m->nb = 64;
	m->n = 0;
	m->b = xcalloc(m->nb, sizeof(*m->b));
}

void hmap_destroy(struct hmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->nb; i++) {
		struct hent *e = m->b[i];
		while (e) {
			struct hent *nx = e->next;
			if (free_val)
				free_val(e->val);
			free(e->key);
			free(e);
			e = nx;
		}
	}
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

static struct hent **find_slot(const struct hmap *m, const char *key, uint32_t h)
{
	struct hent **pp = &m->b[h & (m->nb - 1)];
	while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key)))
		pp = &(*pp)->next;
	return pp;
}

void *hmap_get(const struct hmap *m, const char *key)
{
	struct hent **pp = find_slot(m, key, hash_str(key));
	return *pp ? (*pp)->val : NULL;
}

static void grow(struct hmap *m)
{
	size_t nb = m->nb * 2;
	struct hent **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < m->nb; i++) {
		struct hent *e = m->b[i];
		while (e) {
			struct hent *nx = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
			e = nx;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

void *hmap_put(struct hmap *m, const char *key, void *val)
{
	uint32_t h = hash_str(key);
	struct hent **pp = find_slot(m, key, h);
	if (*pp) {
		void *old = (*pp)->val;
		(*pp)->val = val;
		return old;
	}
	struct hent *e = xmalloc(sizeof(*e));
	e->next = NULL;
	e->hash = h;
	e->key = xstrdup(key);
	e->val = val;
	*pp = e;
	if (++m->n > m->nb)
		grow(m);
	return NULL;
}

void *hmap_del(struct hmap *m, const char *key)
{
	struct hent **pp = find_slot(m, key, hash_str(key));
	struct hent *e = *pp;
	if (!e)
		return NULL;
	void *val = e->val;
	*pp = e->next;
	free(e->key);
	free(e);
	m->n--;
	return val;
}

void hiter_init(struct hiter *it, const struct hmap *m)
{
	it->m = m;
	it->i = 0;
	it->e = NULL;
}

bool hiter_next(struct hiter *it, const char **key, void **val)
{
	if (it->e)
		it->e = it->e->next;
	while (!it->e) {
		if (it->i >= it->m->nb)
			return false;
		it->e = it->m->b[it->i++];
	}
	*key = it->e->key;
	*val = it->e->val;
	return true;
}
