#include "txn.h"

#include <errno.h>
#include <stdlib.h>

struct txent {
	struct node *n; /* NULL: absent in this transaction's view */
	uint64_t seen;  /* live generation at first access, 0 if absent */
	bool dirty;
};

struct txn *txn_new(uint32_t id)
{
	struct txn *t = xcalloc(1, sizeof(*t));
	t->id = id;
	hmap_init(&t->ents);
	evlist_init(&t->ev);
	return t;
}

static void free_ent(void *p)
{
	struct txent *e = p;
	node_free(e->n);
	free(e);
}

void txn_free(struct txn *t)
{
	if (!t)
		return;
	hmap_destroy(&t->ents, free_ent);
	evlist_clear(&t->ev);
	free(t->acc);
	free(t);
}

static struct txent *ent(struct txn *t, struct store *s, const char *path)
{
	struct txent *e = hmap_get(&t->ents, path);
	if (e)
		return e;
	struct node *live = hmap_get(&s->nodes, path);
	e = xcalloc(1, sizeof(*e));
	e->seen = live ? live->gen : 0;
	e->n = live ? node_clone(live) : NULL;
	hmap_put(&t->ents, path, e);
	return e;
}

struct node *txn_get(struct txn *t, struct store *s, const char *path)
{
	return ent(t, s, path)->n;
}

void txn_put(struct txn *t, struct store *s, struct node *n)
{
	struct txent *e = ent(t, s, n->path);
	node_free(e->n);
	e->n = n;
	e->dirty = true;
}

void txn_put_absent(struct txn *t, struct store *s, const char *path)
{
	struct txent *e = ent(t, s, path);
	/* path may point into e->n: do not touch it after this. */
	node_free(e->n);
	e->n = NULL;
	e->dirty = true;
}

void txn_dirty(struct txn *t, struct node *n)
{
	struct txent *e = hmap_get(&t->ents, n->path);
	if (e)
		e->dirty = true;
}

long txn_owned_delta(struct txn *t, unsigned domid)
{
	for (size_t i = 0; i < t->nacc; i++)
		if (t->acc[i].domid == domid)
			return t->acc[i].delta;
	return 0;
}

void txn_account(struct txn *t, unsigned domid, int delta)
{
	for (size_t i = 0; i < t->nacc; i++) {
		if (t->acc[i].domid == domid) {
			t->acc[i].delta += delta;
			return;
		}
	}
	t->acc = xrealloc(t->acc, (t->nacc + 1) * sizeof(*t->acc));
	t->acc[t->nacc].domid = domid;
	t->acc[t->nacc].delta = delta;
	t->nacc++;
}

int txn_commit(struct txn *t, struct store *s)
{
	struct hiter it;
	const char *path;
	void *val;

	hiter_init(&it, &t->ents);
	while (hiter_next(&it, &path, &val)) {
		struct txent *e = val;
		struct node *live = hmap_get(&s->nodes, path);
		if ((live ? live->gen : 0) != e->seen)
			return EAGAIN;
	}
	hiter_init(&it, &t->ents);
	while (hiter_next(&it, &path, &val)) {
		struct txent *e = val;
		if (!e->dirty)
			continue;
		struct node *old = hmap_del(&s->nodes, path);
		if (old) {
			s->owned[old->perms.p[0].domid]--;
			node_free(old);
		}
		if (e->n) {
			e->n->gen = ++s->gen;
			s->owned[e->n->perms.p[0].domid]++;
			hmap_put(&s->nodes, path, e->n);
			e->n = NULL;
		} else {
			s->gen++;
		}
	}
	return 0;
}
