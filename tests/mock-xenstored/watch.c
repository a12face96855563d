#include "daemon.h"
#include "simhost.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int watch_add(struct daemon *d, struct conn *c, const char *orig,
	      const char *abs, const char *token)
{
	for (struct watch *w = c->watches; w; w = w->next_conn)
		if (!strcmp(w->abs, abs) && !strcmp(w->token, token))
			return EEXIST;
	if (c->domid != 0 && d->cfg.quota_watches &&
	    c->nwatches >= d->cfg.quota_watches)
		return XS_EQUOTA;

	struct watch *w = xcalloc(1, sizeof(*w));
	w->conn = c;
	w->abs = xstrdup(abs);
	w->orig = xstrdup(orig);
	w->token = xstrdup(token);
	w->next_conn = c->watches;
	c->watches = w;
	c->nwatches++;
	w->next_path = hmap_get(&d->watches, abs);
	hmap_put(&d->watches, abs, w);
	return 0;
}

static void unlink_path(struct daemon *d, struct watch *w)
{
	struct watch *head = hmap_get(&d->watches, w->abs);
	if (head == w) {
		if (w->next_path)
			hmap_put(&d->watches, w->abs, w->next_path);
		else
			hmap_del(&d->watches, w->abs);
		return;
	}
	for (struct watch *p = head; p; p = p->next_path) {
		if (p->next_path == w) {
			p->next_path = w->next_path;
			return;
		}
	}
}

static void watch_free(struct watch *w)
{
	free(w->abs);
	free(w->orig);
	free(w->token);
	free(w);
}

int watch_del(struct daemon *d, struct conn *c, const char *abs, const char *token)
{
	for (struct watch **pp = &c->watches; *pp; pp = &(*pp)->next_conn) {
		struct watch *w = *pp;
		if (!strcmp(w->abs, abs) && !strcmp(w->token, token)) {
			*pp = w->next_conn;
			c->nwatches--;
			unlink_path(d, w);
			watch_free(w);
			return 0;
		}
	}
	return ENOENT;
}

void watch_del_all(struct daemon *d, struct conn *c)
{
	while (c->watches) {
		struct watch *w = c->watches;
		c->watches = w->next_conn;
		unlink_path(d, w);
		watch_free(w);
	}
	c->nwatches = 0;
}

void watch_send_event(struct daemon *d, struct watch *w, const char *abspath)
{
	const char *rep = abspath;
	/* A relative watch reports paths relative to the domain's home. */
	if (w->orig[0] != '/' && w->orig[0] != '@') {
		char prefix[40];
		int pl = snprintf(prefix, sizeof(prefix), "/local/domain/%u/",
				  w->conn->domid);
		if (!strncmp(abspath, prefix, (size_t)pl))
			rep = abspath + pl;
	}
	size_t pl = strlen(rep), tl = strlen(w->token);
	char *msg = xmalloc(pl + tl + 2);
	memcpy(msg, rep, pl + 1);
	memcpy(msg + pl + 1, w->token, tl + 1);
	conn_send(d, w->conn, XS_WATCH_EVENT, 0, 0, msg, pl + tl + 2);
	free(msg);
}

static void fire_at(struct daemon *d, const char *key, const struct event *e)
{
	for (struct watch *w = hmap_get(&d->watches, key); w; w = w->next_path) {
		struct conn *c = w->conn;
		if (c->dead)
			continue;
		struct who who = conn_who(d, c);
		if (!who.priv && !(perm_for(&who, &e->perms) & PERM_READ) &&
		    !(e->oldperms.n && (perm_for(&who, &e->oldperms) & PERM_READ)))
			continue;
		watch_send_event(d, w, e->path);
	}
}

void watch_fire(struct daemon *d, const struct event *e)
{
	if (e->exact || e->path[0] == '@') {
		fire_at(d, e->path, e);
		return;
	}
	/* Watches on the node itself and on each ancestor: O(depth) lookups
	 * rather than a scan over every watch. */
	size_t len = strlen(e->path);
	char *pfx = xmalloc(len + 1);
	fire_at(d, "/", e);
	for (size_t i = 1; len > 1 && i <= len; i++) {
		if (e->path[i] == '/' || e->path[i] == '\0') {
			memcpy(pfx, e->path, i);
			pfx[i] = '\0';
			fire_at(d, pfx, e);
		}
	}
	free(pfx);
}

void watch_fire_list(struct daemon *d, struct evlist *l)
{
	for (struct event *e = l->head; e; e = e->next)
		watch_fire(d, e);
	/* The simulated dom0's backend drivers react to what was announced. */
	simhost_backends(d, l);
	evlist_clear(l);
}
