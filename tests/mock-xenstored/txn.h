/* Transactions: a private overlay of whole-node copies.  Every node the
 * transaction looks at (present or absent) is recorded with the
 * generation it had, and commit fails with EAGAIN if any of them changed
 * in the live tree meanwhile.  Children lists live inside nodes, so a
 * directory listing or a create/delete below a node is covered by that
 * node's generation too. */
#ifndef MOCKXS_TXN_H
#define MOCKXS_TXN_H

#include "store.h"

struct txacc {
	unsigned domid;
	long delta;
};

struct txn {
	struct txn *next;
	uint32_t id;
	struct hmap ents; /* path -> struct txent */
	struct evlist ev; /* fired only at commit */
	struct txacc *acc;
	size_t nacc;
};

struct txn *txn_new(uint32_t id);
void txn_free(struct txn *t);
struct node *txn_get(struct txn *t, struct store *s, const char *path);
void txn_put(struct txn *t, struct store *s, struct node *n);
void txn_put_absent(struct txn *t, struct store *s, const char *path);
void txn_dirty(struct txn *t, struct node *n);
long txn_owned_delta(struct txn *t, unsigned domid);
void txn_account(struct txn *t, unsigned domid, int delta);
/* 0, or EAGAIN (nothing applied).  Does not free t. */
int txn_commit(struct txn *t, struct store *s);

#endif
