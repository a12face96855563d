#include "store.h"
#include "txn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xen/io/xs_wire.h>

static const char *const special_names[2] = {"@introduceDomain",
					     "@releaseDomain"};

void perms_copy(struct perms *dst, const struct perms *src)
{
	dst->n = src->n;
	dst->p = src->n ? xmemdup(src->p, src->n * sizeof(*src->p)) : NULL;
}

void perms_free(struct perms *p)
{
	free(p->p);
	p->p = NULL;
	p->n = 0;
}

static struct perms perms_dom0_none(void)
{
	struct perms p = {1, xmalloc(sizeof(struct xsperm))};
	p.p[0].domid = 0;
	p.p[0].perm = 0;
	return p;
}

unsigned perm_for(const struct who *w, const struct perms *p)
{
	const unsigned all = PERM_READ | PERM_WRITE | PERM_OWNER;

	if (w->priv || p->n == 0)
		return all;
	/* A device model stubdomain owns whatever its target owns. */
	if (p->p[0].domid == w->domid ||
	    (w->target != NO_TARGET && p->p[0].domid == (unsigned)w->target))
		return all;
	for (unsigned i = 1; i < p->n; i++)
		if (p->p[i].domid == w->domid ||
		    (w->target != NO_TARGET &&
		     p->p[i].domid == (unsigned)w->target))
			return p->p[i].perm;
	return p->p[0].perm;
}

bool perm_parse(const char *s, struct xsperm *out)
{
	switch (s[0]) {
	case 'n':
		out->perm = 0;
		break;
	case 'r':
		out->perm = PERM_READ;
		break;
	case 'w':
		out->perm = PERM_WRITE;
		break;
	case 'b':
		out->perm = PERM_READ | PERM_WRITE;
		break;
	default:
		return false;
	}
	if (s[1] < '0' || s[1] > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long d = strtoul(s + 1, &end, 10);
	if (errno || *end || d >= DOMID_LIMIT)
		return false;
	out->domid = (unsigned)d;
	return true;
}

void perm_format(const struct xsperm *p, char *out, size_t outsz)
{
	static const char letters[4] = {'n', 'r', 'w', 'b'};
	snprintf(out, outsz, "%c%u", letters[p->perm & 3], p->domid);
}

struct node *node_new(const char *path, const struct perms *perms)
{
	struct node *n = xcalloc(1, sizeof(*n));
	n->path = xstrdup(path);
	perms_copy(&n->perms, perms);
	return n;
}

struct node *node_clone(const struct node *o)
{
	struct node *n = node_new(o->path, &o->perms);
	n->val = o->vlen ? xmemdup(o->val, o->vlen) : NULL;
	n->vlen = o->vlen;
	n->gen = o->gen;
	n->nkids = n->kcap = o->nkids;
	n->kids = o->nkids ? xmalloc(o->nkids * sizeof(char *)) : NULL;
	for (size_t i = 0; i < o->nkids; i++)
		n->kids[i] = xstrdup(o->kids[i]);
	return n;
}

void node_free(struct node *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		free(n->kids[i]);
	free(n->kids);
	free(n->val);
	perms_free(&n->perms);
	free(n->path);
	free(n);
}

void node_add_kid(struct node *n, const char *name)
{
	if (n->nkids == n->kcap) {
		n->kcap = n->kcap ? n->kcap * 2 : 4;
		n->kids = xrealloc(n->kids, n->kcap * sizeof(char *));
	}
	n->kids[n->nkids++] = xstrdup(name);
}

void node_del_kid(struct node *n, const char *name)
{
	for (size_t i = 0; i < n->nkids; i++) {
		if (!strcmp(n->kids[i], name)) {
			free(n->kids[i]);
			memmove(&n->kids[i], &n->kids[i + 1],
				(n->nkids - i - 1) * sizeof(char *));
			n->nkids--;
			return;
		}
	}
}

static void free_node_cb(void *p)
{
	node_free(p);
}

/* Live-tree primitives. */
static void live_insert(struct store *s, struct node *n)
{
	n->gen = ++s->gen;
	s->owned[n->perms.p[0].domid]++;
	hmap_put(&s->nodes, n->path, n);
}

static void live_create(struct store *s, const char *parent, const char *path)
{
	struct perms p = perms_dom0_none();
	struct node *n = node_new(path, &p);
	perms_free(&p);
	live_insert(s, n);
	if (parent) {
		struct node *par = hmap_get(&s->nodes, parent);
		node_add_kid(par, path_base(path));
	}
}

void store_init(struct store *s, const struct config *cfg)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	hmap_init(&s->nodes);
	s->owned = xcalloc(DOMID_LIMIT, sizeof(*s->owned));
	/* C xenstored's initial tree, plus /local/domain which xen-init-dom0
	 * creates on every real host before any toolstack runs. */
	live_create(s, NULL, "/");
	live_create(s, "/", "/tool");
	live_create(s, "/tool", "/tool/xenstored");
	live_create(s, "/", "/local");
	live_create(s, "/local", "/local/domain");
	for (int i = 0; i < 2; i++)
		s->special_perms[i] = perms_dom0_none();
}

void store_destroy(struct store *s)
{
	hmap_destroy(&s->nodes, free_node_cb);
	free(s->owned);
	for (int i = 0; i < 2; i++)
		perms_free(&s->special_perms[i]);
}

struct perms *special_perms(struct store *s, const char *p)
{
	for (int i = 0; i < 2; i++)
		if (!strcmp(p, special_names[i]))
			return &s->special_perms[i];
	return NULL;
}

struct node *v_get(struct view *v, const char *path)
{
	if (v->t)
		return txn_get(v->t, v->s, path);
	return hmap_get(&v->s->nodes, path);
}

void v_dirty(struct view *v, struct node *n)
{
	if (v->t)
		txn_dirty(v->t, n);
	else
		n->gen = ++v->s->gen;
}

struct node *v_create(struct view *v, const char *path, const struct perms *perms)
{
	struct node *n = node_new(path, perms);
	if (v->t) {
		txn_put(v->t, v->s, n);
		v_account(v, perms->p[0].domid, 1);
	} else {
		live_insert(v->s, n);
	}
	return n;
}

void v_remove(struct view *v, const char *path)
{
	if (v->t) {
		struct node *n = txn_get(v->t, v->s, path);
		if (n)
			v_account(v, n->perms.p[0].domid, -1);
		txn_put_absent(v->t, v->s, path);
		return;
	}
	struct node *n = hmap_del(&v->s->nodes, path);
	if (n) {
		v->s->owned[n->perms.p[0].domid]--;
		node_free(n);
	}
	/* Deletion also counts as a change for conflict detection: the
	 * absent node's generation is 0 and differs from any recorded one. */
	v->s->gen++;
}

long v_owned(struct view *v, unsigned domid)
{
	long base = v->s->owned[domid];
	return v->t ? base + txn_owned_delta(v->t, domid) : base;
}

void v_account(struct view *v, unsigned domid, int delta)
{
	if (v->t)
		txn_account(v->t, domid, delta);
	else
		v->s->owned[domid] += (uint32_t)delta;
}

void evlist_init(struct evlist *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

void evlist_add(struct evlist *l, const char *path, bool exact,
		const struct perms *perms, const struct perms *oldperms)
{
	struct event *e = xcalloc(1, sizeof(*e));
	e->path = xstrdup(path);
	e->exact = exact;
	perms_copy(&e->perms, perms);
	if (oldperms)
		perms_copy(&e->oldperms, oldperms);
	*l->tail = e;
	l->tail = &e->next;
}

void evlist_clear(struct evlist *l)
{
	struct event *e = l->head;
	while (e) {
		struct event *nx = e->next;
		free(e->path);
		perms_free(&e->perms);
		perms_free(&e->oldperms);
		free(e);
		e = nx;
	}
	evlist_init(l);
}

bool path_is_special(const char *p)
{
	return !strcmp(p, special_names[0]) || !strcmp(p, special_names[1]);
}

int path_canon(unsigned domid, const char *in, bool allow_special, char **out)
{
	size_t len = strlen(in);

	if (in[0] == '@') {
		if (!allow_special || !path_is_special(in))
			return EINVAL;
		*out = xstrdup(in);
		return 0;
	}
	if (len == 0)
		return EINVAL;
	if (in[0] == '/' ? len > XENSTORE_ABS_PATH_MAX
			 : len > XENSTORE_REL_PATH_MAX)
		return EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '/' ||
			  c == '_' || c == '@';
		if (!ok)
			return EINVAL;
		if (c == '/' && in[i + 1] == '/')
			return EINVAL;
	}
	if (len > 1 && in[len - 1] == '/')
		return EINVAL;
	if (in[0] == '/') {
		*out = xstrdup(in);
		return 0;
	}
	char *abs = xmalloc(len + 32);
	snprintf(abs, len + 32, "/local/domain/%u/%s", domid, in);
	*out = abs;
	return 0;
}

char *path_parent(const char *p)
{
	const char *slash = strrchr(p, '/');
	if (slash == p)
		return xstrdup("/");
	char *r = xmemdup(p, (size_t)(slash - p) + 1);
	r[slash - p] = '\0';
	return r;
}

const char *path_base(const char *p)
{
	return strrchr(p, '/') + 1;
}

bool path_is_under(const char *c, const char *p)
{
	size_t pl = strlen(p);
	if (!strcmp(p, "/"))
		return c[0] == '/';
	return !strncmp(c, p, pl) && (c[pl] == '\0' || c[pl] == '/');
}

/* A missing node reads as EACCES rather than ENOENT when the caller may
 * not read its nearest existing ancestor, so existence does not leak
 * (C xenstored's errno_from_parents). */
static int missing_err(struct view *v, const struct who *w, const char *path)
{
	char *p = xstrdup(path);
	int err = ENOENT;
	while (strcmp(p, "/")) {
		char *par = path_parent(p);
		free(p);
		p = par;
		struct node *n = v_get(v, p);
		if (n) {
			if (!(perm_for(w, &n->perms) & PERM_READ))
				err = EACCES;
			break;
		}
	}
	free(p);
	return err;
}

int op_read(struct view *v, const struct who *w, const char *path,
	    struct node **out)
{
	struct node *n = v_get(v, path);
	if (!n)
		return missing_err(v, w, path);
	if (!(perm_for(w, &n->perms) & PERM_READ))
		return EACCES;
	*out = n;
	return 0;
}

/* Creates path and any missing ancestors.  Each new node inherits its
 * parent's permissions; an unprivileged creator becomes the owner (C
 * xenstored's construct_node).  Write permission is needed on the
 * nearest existing ancestor only. */
static int create_path(struct view *v, const struct who *w, const char *path,
		       struct node **out)
{
	char *ppath = path_parent(path);
	struct node *par = v_get(v, ppath);
	int err = 0;

	if (!par) {
		err = create_path(v, w, ppath, &par);
		if (err)
			goto out;
	} else if (!(perm_for(w, &par->perms) & PERM_WRITE)) {
		err = EACCES;
		goto out;
	}

	struct perms np;
	perms_copy(&np, &par->perms);
	if (!w->priv)
		np.p[0].domid = w->domid;
	if (!w->priv && v->s->cfg->quota_nodes &&
	    v_owned(v, np.p[0].domid) >= (long)v->s->cfg->quota_nodes) {
		perms_free(&np);
		err = XS_EQUOTA;
		goto out;
	}
	node_add_kid(par, path_base(path));
	v_dirty(v, par);
	*out = v_create(v, path, &np);
	perms_free(&np);
out:
	free(ppath);
	return err;
}

int op_write(struct view *v, const struct who *w, const char *path,
	     const void *val, size_t len, struct evlist *ev)
{
	struct node *n = NULL;
	int err;

	if (path_is_special(path))
		return EINVAL;
	if (v->s->cfg->entry_size && len > v->s->cfg->entry_size)
		return E2BIG;
	n = v_get(v, path);
	if (n) {
		if (!(perm_for(w, &n->perms) & PERM_WRITE))
			return EACCES;
	} else {
		err = create_path(v, w, path, &n);
		if (err)
			return err;
	}
	free(n->val);
	n->val = len ? xmemdup(val, len) : NULL;
	n->vlen = len;
	v_dirty(v, n);
	evlist_add(ev, path, false, &n->perms, NULL);
	return 0;
}

int op_mkdir(struct view *v, const struct who *w, const char *path,
	     struct evlist *ev)
{
	struct node *n = NULL;
	int err;

	if (path_is_special(path))
		return EINVAL;
	n = v_get(v, path);
	if (n)
		return (perm_for(w, &n->perms) & PERM_WRITE) ? 0 : EACCES;
	err = create_path(v, w, path, &n);
	if (err)
		return err;
	evlist_add(ev, path, false, &n->perms, NULL);
	return 0;
}

/* Deletes a subtree bottom-up, reporting each descendant to watches set
 * exactly on it (the top node is reported by the caller). */
static void rm_subtree(struct view *v, struct node *n, bool top, struct evlist *ev)
{
	while (n->nkids) {
		const char *kid = n->kids[n->nkids - 1];
		size_t plen = strlen(n->path);
		char *cpath = xmalloc(plen + strlen(kid) + 2);
		sprintf(cpath, "%s%s%s", n->path,
			strcmp(n->path, "/") ? "/" : "", kid);
		struct node *c = v_get(v, cpath);
		if (c)
			rm_subtree(v, c, false, ev);
		free(n->kids[n->nkids - 1]);
		n->nkids--;
		free(cpath);
	}
	if (!top)
		evlist_add(ev, n->path, true, &n->perms, NULL);
	v_remove(v, n->path);
}

int op_rm(struct view *v, const struct who *w, const char *path, struct evlist *ev)
{
	struct node *n = NULL;

	if (path_is_special(path))
		return EINVAL;
	n = v_get(v, path);
	if (!n) {
		int err = missing_err(v, w, path);
		if (err != ENOENT)
			return err;
		/* Removing a missing node is fine if its parent exists. */
		if (!strcmp(path, "/"))
			return ENOENT;
		char *pp = path_parent(path);
		bool have_parent = v_get(v, pp) != NULL;
		free(pp);
		return have_parent ? 0 : ENOENT;
	}
	if (!(perm_for(w, &n->perms) & PERM_WRITE))
		return EACCES;
	if (!strcmp(path, "/"))
		return EINVAL;

	char *pp = path_parent(path);
	struct node *par = v_get(v, pp);
	free(pp);
	struct perms top;
	perms_copy(&top, &n->perms);
	rm_subtree(v, n, true, ev);
	node_del_kid(par, path_base(path));
	v_dirty(v, par);
	evlist_add(ev, path, false, &top, NULL);
	perms_free(&top);
	return 0;
}

int op_get_perms(struct view *v, const struct who *w, const char *path,
		 struct perms *out)
{
	struct perms *sp = special_perms(v->s, path);
	if (sp) {
		if (!(perm_for(w, sp) & PERM_READ))
			return EACCES;
		perms_copy(out, sp);
		return 0;
	}
	struct node *n = NULL;
	int err = op_read(v, w, path, &n);
	if (err)
		return err;
	perms_copy(out, &n->perms);
	return 0;
}

int op_set_perms(struct view *v, const struct who *w, const char *path,
		 const struct perms *np, struct evlist *ev)
{
	struct perms *sp = special_perms(v->s, path);
	if (sp) {
		if (!(perm_for(w, sp) & PERM_OWNER))
			return EACCES;
		perms_free(sp);
		perms_copy(sp, np);
		return 0;
	}
	struct node *n = v_get(v, path);
	if (!n)
		return missing_err(v, w, path);
	if (!(perm_for(w, &n->perms) & PERM_OWNER))
		return EACCES;
	/* Only the toolstack may give a node away. */
	if (!w->priv && np->p[0].domid != n->perms.p[0].domid)
		return EPERM;
	unsigned oldowner = n->perms.p[0].domid;
	if (np->p[0].domid != oldowner) {
		v_account(v, oldowner, -1);
		v_account(v, np->p[0].domid, 1);
	}
	struct perms old = n->perms;
	perms_copy(&n->perms, np);
	v_dirty(v, n);
	evlist_add(ev, path, false, &n->perms, &old);
	perms_free(&old);
	return 0;
}
