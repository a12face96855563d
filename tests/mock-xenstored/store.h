/* The node tree, permissions, quotas and the "view" through which every
 * operation reads and modifies it (either the live tree or a
 * transaction's private overlay, see txn.h). */
#ifndef MOCKXS_STORE_H
#define MOCKXS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define PERM_READ 1u
#define PERM_WRITE 2u
#define PERM_OWNER 4u /* only ever a result of perm_for(), never stored */

#define DOMID_LIMIT 65536u
/* oxenstored's quota error; not an errno, libxenstore maps it to EINVAL. */
#define XS_EQUOTA 100001
#define NO_TARGET (-1)

struct xsperm {
	unsigned domid;
	unsigned perm; /* PERM_READ | PERM_WRITE */
};

struct perms {
	unsigned n;
	struct xsperm *p; /* p[0]: owner, and the default for everybody else */
};

struct node {
	char *path;
	unsigned char *val;
	size_t vlen;
	struct perms perms;
	/* Insertion order, like C xenstored: xenstore-ls output matches. */
	char **kids;
	size_t nkids, kcap;
	/* Global modification counter value of the last change; transactions
	 * compare it at commit to detect conflicting outside changes. */
	uint64_t gen;
};

/* Who is asking: the identity a connection acts as. */
struct who {
	unsigned domid;
	bool priv;
	int target; /* NO_TARGET or the domain this one may act for */
};

struct config {
	size_t entry_size;
	unsigned quota_nodes;
	unsigned quota_watches;
	unsigned quota_transactions;
	size_t max_output;
	bool verbose;
};

struct store {
	struct hmap nodes; /* absolute path -> struct node */
	uint64_t gen;
	uint32_t *owned; /* DOMID_LIMIT counters: nodes owned per domain */
	struct perms special_perms[2]; /* @introduceDomain, @releaseDomain */
	const struct config *cfg;
};

struct txn;

struct view {
	struct store *s;
	struct txn *t; /* NULL: the live tree */
};

/* A change to report to watchers.  Perms are a snapshot so events for
 * deleted nodes (and transaction commits) can still be filtered. */
struct event {
	struct event *next;
	char *path;
	bool exact; /* only watches on exactly this path (rm descendants) */
	struct perms perms;
	struct perms oldperms; /* n == 0 unless perms changed */
};

struct evlist {
	struct event *head, **tail;
};

void store_init(struct store *s, const struct config *cfg);
void store_destroy(struct store *s);

void perms_copy(struct perms *dst, const struct perms *src);
void perms_free(struct perms *p);
/* Rights of w under p: PERM_READ|PERM_WRITE|PERM_OWNER subset. */
unsigned perm_for(const struct who *w, const struct perms *p);
/* Parses "r5" style strings; returns false if malformed. */
bool perm_parse(const char *s, struct xsperm *out);
void perm_format(const struct xsperm *p, char *out, size_t outsz);

struct node *node_new(const char *path, const struct perms *perms);
struct node *node_clone(const struct node *n);
void node_free(struct node *n);
void node_add_kid(struct node *n, const char *name);
void node_del_kid(struct node *n, const char *name);

/* View primitives: implemented for the live tree here and for
 * transactions in txn.c. */
struct node *v_get(struct view *v, const char *path);
void v_dirty(struct view *v, struct node *n);
struct node *v_create(struct view *v, const char *path,
		      const struct perms *perms);
void v_remove(struct view *v, const char *path);
long v_owned(struct view *v, unsigned domid);
void v_account(struct view *v, unsigned domid, int delta);

void evlist_init(struct evlist *l);
void evlist_add(struct evlist *l, const char *path, bool exact,
		const struct perms *perms, const struct perms *oldperms);
void evlist_clear(struct evlist *l);

/* Path handling.  Returns 0 and a malloc'ed absolute path, or EINVAL.
 * allow_special admits the two "@" watch names. */
int path_canon(unsigned domid, const char *in, bool allow_special, char **out);
bool path_is_special(const char *p);
/* Returns the parent of an absolute non-root path (malloc'ed). */
char *path_parent(const char *p);
const char *path_base(const char *p);
/* Is c equal to or below p? */
bool path_is_under(const char *c, const char *p);
struct perms *special_perms(struct store *s, const char *p);

/* Operations: 0 or an errno value; events appended to ev. */
int op_read(struct view *v, const struct who *w, const char *path,
	    struct node **out);
int op_write(struct view *v, const struct who *w, const char *path,
	     const void *val, size_t len, struct evlist *ev);
int op_mkdir(struct view *v, const struct who *w, const char *path,
	     struct evlist *ev);
int op_rm(struct view *v, const struct who *w, const char *path,
	  struct evlist *ev);
int op_get_perms(struct view *v, const struct who *w, const char *path,
		 struct perms *out);
int op_set_perms(struct view *v, const struct who *w, const char *path,
		 const struct perms *np, struct evlist *ev);

#endif
