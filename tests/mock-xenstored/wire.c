#include "daemon.h"
#include "simhost.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Errors travel as their errno names (xs_wire.h), which is how
 * libxenstore maps them back. */
static const char *err_name(int err)
{
	if (err == XS_EQUOTA)
		return "EQUOTA";
	for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
		if (xsd_errors[i].errnum == err)
			return xsd_errors[i].errstring;
	return "EINVAL";
}

struct req {
	struct daemon *d;
	struct conn *c;
	const struct xsd_sockmsg *h;
	const char *body;
	/* Payload split at NULs; valid only if the payload ends in NUL. */
	const char **argv;
	unsigned argc;
	bool terminated;
	struct who who;
};

static void reply(struct req *r, uint32_t type, const void *data, size_t len)
{
	conn_send(r->d, r->c, type, r->h->req_id, r->h->tx_id, data, len);
}

static void reply_str(struct req *r, const char *s)
{
	reply(r, r->h->type, s, strlen(s) + 1);
}

static void reply_err(struct req *r, int err)
{
	const char *s = err_name(err);
	vlog(r->d, "conn %d: type %u -> %s", r->c->fd, r->h->type, s);
	reply(r, XS_ERROR, s, strlen(s) + 1);
}

static void reply_ok(struct req *r)
{
	reply_str(r, "OK");
}

static bool parse_domid(const char *s, unsigned *out)
{
	char *end;
	if (!s || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v >= DOMID_LIMIT)
		return false;
	*out = (unsigned)v;
	return true;
}

static struct txn *find_txn(struct conn *c, uint32_t id)
{
	for (struct txn *t = c->txns; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

static void unlink_txn(struct conn *c, struct txn *t)
{
	for (struct txn **pp = &c->txns; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			c->ntxns--;
			return;
		}
	}
}

/* Changes made inside a transaction are announced at commit only. */
static void publish(struct req *r, struct view *v, struct evlist *ev)
{
	if (v->t) {
		*v->t->ev.tail = ev->head;
		if (ev->head)
			v->t->ev.tail = ev->tail;
		evlist_init(ev);
	} else {
		watch_fire_list(r->d, ev);
	}
}

static int canon_arg(struct req *r, unsigned i, bool special, char **out)
{
	if (!r->terminated || r->argc <= i)
		return EINVAL;
	return path_canon(r->c->domid, r->argv[i], special, out);
}

static void do_read(struct req *r, struct view *v)
{
	char *path = NULL;
	struct node *n = NULL;
	int err = canon_arg(r, 0, false, &path);
	if (!err)
		err = op_read(v, &r->who, path, &n);
	if (err)
		reply_err(r, err);
	else
		reply(r, XS_READ, n->val, n->vlen);
	free(path);
}

static void do_write(struct req *r, struct view *v)
{
	/* The value follows the first NUL and is not itself terminated. */
	size_t plen = strnlen(r->body, r->h->len);
	if (plen == r->h->len) {
		reply_err(r, EINVAL);
		return;
	}
	char *path;
	int err = path_canon(r->c->domid, r->body, false, &path);
	if (err) {
		reply_err(r, err);
		return;
	}
	struct evlist ev;
	evlist_init(&ev);
	err = op_write(v, &r->who, path, r->body + plen + 1,
		       r->h->len - plen - 1, &ev);
	free(path);
	if (err) {
		evlist_clear(&ev);
		reply_err(r, err);
		return;
	}
	publish(r, v, &ev);
	reply_ok(r);
}

static void do_simple_mod(struct req *r, struct view *v)
{
	char *path = NULL;
	struct evlist ev;
	evlist_init(&ev);
	int err = canon_arg(r, 0, false, &path);
	if (!err)
		err = r->h->type == XS_MKDIR ? op_mkdir(v, &r->who, path, &ev)
					     : op_rm(v, &r->who, path, &ev);
	free(path);
	if (err) {
		evlist_clear(&ev);
		reply_err(r, err);
		return;
	}
	publish(r, v, &ev);
	reply_ok(r);
}

static void do_directory(struct req *r, struct view *v)
{
	char *path = NULL;
	struct node *n = NULL;
	int err = canon_arg(r, 0, false, &path);
	if (!err)
		err = op_read(v, &r->who, path, &n);
	free(path);
	if (err) {
		reply_err(r, err);
		return;
	}
	struct buf b = {0};
	if (r->h->type == XS_DIRECTORY) {
		for (size_t i = 0; i < n->nkids; i++)
			buf_adds(&b, n->kids[i]);
		if (b.len > XENSTORE_PAYLOAD_MAX)
			reply_err(r, E2BIG);
		else
			reply(r, XS_DIRECTORY, b.d, b.len);
		buf_free(&b);
		return;
	}
	/* DIRECTORY_PART: "<generation>\0" then whole names starting at the
	 * byte offset into the NUL-separated list; an extra empty string
	 * marks the end.  The client restarts if the generation changes. */
	if (r->argc < 2 || r->argv[1][0] < '0' || r->argv[1][0] > '9') {
		reply_err(r, EINVAL);
		return;
	}
	char *end;
	errno = 0;
	unsigned long off = strtoul(r->argv[1], &end, 10);
	if (errno || *end) {
		reply_err(r, EINVAL);
		return;
	}
	char gen[24];
	snprintf(gen, sizeof(gen), "%llu", (unsigned long long)n->gen);
	buf_adds(&b, gen);
	size_t pos = 0, i = 0;
	for (; i < n->nkids && pos < off; i++)
		pos += strlen(n->kids[i]) + 1;
	for (; i < n->nkids; i++) {
		size_t kl = strlen(n->kids[i]) + 1;
		if (b.len + kl + 1 > XENSTORE_PAYLOAD_MAX)
			break;
		buf_add(&b, n->kids[i], kl);
	}
	if (i == n->nkids)
		buf_add(&b, "", 1);
	reply(r, XS_DIRECTORY_PART, b.d, b.len);
	buf_free(&b);
}

static void do_get_perms(struct req *r, struct view *v)
{
	char *path = NULL;
	struct perms p = {0, NULL};
	int err = canon_arg(r, 0, true, &path);
	if (!err)
		err = op_get_perms(v, &r->who, path, &p);
	free(path);
	if (err) {
		reply_err(r, err);
		return;
	}
	struct buf b = {0};
	for (unsigned i = 0; i < p.n; i++) {
		char s[16];
		perm_format(&p.p[i], s, sizeof(s));
		buf_adds(&b, s);
	}
	reply(r, XS_GET_PERMS, b.d, b.len);
	buf_free(&b);
	perms_free(&p);
}

static void do_set_perms(struct req *r, struct view *v)
{
	char *path = NULL;
	int err = canon_arg(r, 0, true, &path);
	if (!err && r->argc < 2)
		err = EINVAL;
	struct perms p = {0, NULL};
	if (!err) {
		p.n = r->argc - 1;
		p.p = xcalloc(p.n, sizeof(*p.p));
		for (unsigned i = 0; i < p.n && !err; i++)
			if (!perm_parse(r->argv[i + 1], &p.p[i]))
				err = EINVAL;
	}
	struct evlist ev;
	evlist_init(&ev);
	if (!err)
		err = op_set_perms(v, &r->who, path, &p, &ev);
	free(path);
	perms_free(&p);
	if (err) {
		evlist_clear(&ev);
		reply_err(r, err);
		return;
	}
	publish(r, v, &ev);
	reply_ok(r);
}

static void do_watch(struct req *r)
{
	char *path = NULL;
	int err = canon_arg(r, 0, true, &path);
	if (!err && r->argc < 2)
		err = EINVAL;
	if (!err) {
		/* A third argument (watch depth, newer protocols) is ignored. */
		if (r->h->type == XS_WATCH)
			err = watch_add(r->d, r->c, r->argv[0], path, r->argv[1]);
		else
			err = watch_del(r->d, r->c, path, r->argv[1]);
	}
	if (err) {
		free(path);
		reply_err(r, err);
		return;
	}
	reply_ok(r);
	if (r->h->type == XS_WATCH) {
		/* Fires once at once, reporting the path as registered. */
		for (struct watch *w = r->c->watches; w; w = w->next_conn) {
			if (!strcmp(w->abs, path) &&
			    !strcmp(w->token, r->argv[1])) {
				size_t pl = strlen(w->orig),
				       tl = strlen(w->token);
				char *msg = xmalloc(pl + tl + 2);
				memcpy(msg, w->orig, pl + 1);
				memcpy(msg + pl + 1, w->token, tl + 1);
				conn_send(r->d, r->c, XS_WATCH_EVENT, 0, 0, msg,
					  pl + tl + 2);
				free(msg);
				break;
			}
		}
	}
	free(path);
}

static void do_txn_start(struct req *r)
{
	struct daemon *d = r->d;
	if (r->h->tx_id) {
		reply_err(r, EBUSY);
		return;
	}
	if (!r->who.priv && d->cfg.quota_transactions &&
	    r->c->ntxns >= d->cfg.quota_transactions) {
		reply_err(r, XS_EQUOTA);
		return;
	}
	do {
		d->next_txid++;
	} while (d->next_txid == 0);
	struct txn *t = txn_new(d->next_txid);
	t->next = r->c->txns;
	r->c->txns = t;
	r->c->ntxns++;
	char s[16];
	snprintf(s, sizeof(s), "%u", t->id);
	reply_str(r, s);
}

static void do_txn_end(struct req *r, struct txn *t)
{
	if (!t) {
		reply_err(r, ENOENT);
		return;
	}
	if (!r->terminated || r->argc < 1 ||
	    (strcmp(r->argv[0], "T") && strcmp(r->argv[0], "F"))) {
		reply_err(r, EINVAL);
		return;
	}
	unlink_txn(r->c, t);
	int err = 0;
	if (!strcmp(r->argv[0], "T")) {
		err = txn_commit(t, &r->d->store);
		if (!err)
			watch_fire_list(r->d, &t->ev);
	}
	txn_free(t);
	if (err)
		reply_err(r, err);
	else
		reply_ok(r);
}

static void fire_special(struct daemon *d, const char *name)
{
	struct event e = {0};
	e.path = (char *)name;
	e.exact = true;
	e.perms = *special_perms(&d->store, name);
	watch_fire(d, &e);
}

/* The domain went away: its connections and their watches and
 * transactions go with it. */
static void release_domain(struct daemon *d, unsigned domid)
{
	d->doms[domid].introduced = false;
	d->doms[domid].target = NO_TARGET;
	listener_del_introduced(d, domid);
	for (struct conn *c = d->conns; c; c = c->next)
		if (c->domid == domid)
			conn_kill(d, c);
	fire_special(d, "@releaseDomain");
}

static void do_introduce(struct req *r)
{
	unsigned domid;
	if (!r->who.priv) {
		reply_err(r, EACCES);
		return;
	}
	if (!r->terminated || r->argc < 3 || !parse_domid(r->argv[0], &domid) ||
	    domid == 0) {
		reply_err(r, EINVAL);
		return;
	}
	struct daemon *d = r->d;
	if (!d->doms[domid].introduced) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/domain-%u.sock", d->dir, domid);
		if (listener_add(d, domid, path, true)) {
			reply_err(r, EIO);
			return;
		}
		d->doms[domid].introduced = true;
		fire_special(d, "@introduceDomain");
	}
	reply_ok(r);
}

static void do_domid_cmd(struct req *r)
{
	unsigned domid;
	struct daemon *d = r->d;
	if (!r->terminated || r->argc < 1 || !parse_domid(r->argv[0], &domid)) {
		reply_err(r, EINVAL);
		return;
	}
	switch (r->h->type) {
	case XS_GET_DOMAIN_PATH: {
		char s[40];
		snprintf(s, sizeof(s), "/local/domain/%u", domid);
		reply_str(r, s);
		return;
	}
	case XS_IS_DOMAIN_INTRODUCED:
		reply_str(r, domid == 0 || d->doms[domid].introduced ? "T" : "F");
		return;
	default: /* RELEASE, RESUME */
		if (!r->who.priv) {
			reply_err(r, EACCES);
			return;
		}
		if (domid == 0 || !d->doms[domid].introduced) {
			reply_err(r, ENOENT);
			return;
		}
		if (r->h->type == XS_RELEASE)
			release_domain(d, domid);
		reply_ok(r);
	}
}

static void do_set_target(struct req *r)
{
	unsigned domid, target;
	if (!r->who.priv) {
		reply_err(r, EACCES);
		return;
	}
	if (!r->terminated || r->argc < 2 || !parse_domid(r->argv[0], &domid) ||
	    !parse_domid(r->argv[1], &target)) {
		reply_err(r, EINVAL);
		return;
	}
	r->d->doms[domid].target = (int)target;
	reply_ok(r);
}

static void do_reset_watches(struct req *r)
{
	watch_del_all(r->d, r->c);
	while (r->c->txns) {
		struct txn *t = r->c->txns;
		r->c->txns = t->next;
		txn_free(t);
	}
	r->c->ntxns = 0;
	reply_ok(r);
}

/* The simulated host's domain-death hook: records why the domain died
 * where the simulated toolstack can find it, then releases it.  Also
 * called by simhost.c when a simulated domain's process exits. */
int wire_sim_release(struct daemon *d, unsigned domid, const char *reason,
		     size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/tool/stubdm-sim/domain/%u/exit", domid);
	struct view v = {&d->store, NULL};
	struct evlist ev;
	evlist_init(&ev);
	struct who dom0 = {0, true, NO_TARGET};
	int err = op_write(&v, &dom0, path, reason, len, &ev);
	if (err) {
		evlist_clear(&ev);
		return err;
	}
	struct node *n = v_get(&v, path);
	if (n->perms.n != 1 || n->perms.p[0].domid != 0 ||
	    n->perms.p[0].perm != 0) {
		struct perms p = {1, &(struct xsperm){0, 0}};
		op_set_perms(&v, &dom0, path, &p, &ev);
	}
	watch_fire_list(d, &ev);
	release_domain(d, domid);
	return 0;
}

static void sim_release(struct req *r)
{
	unsigned domid;
	if (r->argc < 3 || !parse_domid(r->argv[1], &domid) || domid == 0) {
		reply_err(r, EINVAL);
		return;
	}
	struct buf reason = {0};
	for (unsigned i = 2; i < r->argc; i++) {
		if (!r->argv[i][0])
			continue;
		if (reason.len)
			buf_add(&reason, " ", 1);
		buf_add(&reason, r->argv[i], strlen(r->argv[i]));
	}
	int err = wire_sim_release(r->d, domid, reason.d, reason.len);
	buf_free(&reason);
	if (err) {
		reply_err(r, err);
		return;
	}
	reply_ok(r);
}

static void do_control(struct req *r)
{
	if (!r->who.priv) {
		reply_err(r, EACCES);
		return;
	}
	if (r->argc < 1 || !r->argv[0][0]) {
		reply_err(r, EINVAL);
		return;
	}
	const char *cmd = r->argv[0];
	if (!strcmp(cmd, "check") || !strcmp(cmd, "log") ||
	    !strcmp(cmd, "logfile")) {
		reply_ok(r);
	} else if (!strcmp(cmd, "help")) {
		reply_str(r, "check\nlog\nhelp\nquota\ndrop-on <path "
			     "prefix>\ndrop-now\nunwatch-count\n"
			     "sim-release <domid> <reason>\n"
			     "sim-create [<domid>]\nsim-start <domid> "
			     "<program> [<arg>...]\n"
			     "sim-destroy <domid>\nsim-list\n");
	} else if (!strcmp(cmd, "quota")) {
		char s[256];
		snprintf(s,
			 sizeof(s), "entry-size %zu\nquota-nodes %u\nquota-watches %u\nquota-transactions %u\n",
			 r->d->cfg.entry_size, r->d->cfg.quota_nodes,
			 r->d->cfg.quota_watches, r->d->cfg.quota_transactions);
		reply_str(r, s);
	} else if (!strcmp(cmd, "drop-on")) {
		if (r->argc != 2 || r->argv[1][0] != '/' || !r->terminated) {
			reply_err(r, EINVAL);
			return;
		}
		free(r->d->drop_on);
		r->d->drop_on = xstrdup(r->argv[1]);
		vlog(r->d, "drop-on %s: armed", r->d->drop_on);
		reply_ok(r);
	} else if (!strcmp(cmd, "drop-now") && r->argc == 1) {
		/* Every other dom0 connection, now: a xenstored gone while
		 * the toolstack waits. */
		for (struct conn *o = r->d->conns; o; o = o->next)
			if (o != r->c && !o->dead && o->domid == 0) {
				vlog(r->d, "conn %d: closed (drop-now)", o->fd);
				conn_kill(r->d, o);
			}
		reply_ok(r);
	} else if (!strcmp(cmd, "unwatch-count") && r->argc == 1) {
		char s[32];
		snprintf(s, sizeof(s), "%lu", r->d->unwatches);
		reply_str(r, s);
	} else if (!strcmp(cmd, "sim-release")) {
		sim_release(r);
	} else if (r->terminated) {
		struct buf out = {0};
		int err = simhost_control(r->d, r->argv, r->argc, &out);
		if (err < 0)
			reply_err(r, EINVAL);
		else if (err)
			reply_err(r, err);
		else
			reply(r, r->h->type, out.d, out.len);
		buf_free(&out);
	} else {
		reply_err(r, EINVAL);
	}
}

void wire_dispatch(struct daemon *d, struct conn *c,
		   const struct xsd_sockmsg *h, const char *body)
{
	struct req r = {d, c, h, body, NULL, 0, false, conn_who(d, c)};

	vlog(d, "conn %d: type %u req %u tx %u len %u", c->fd, h->type,
	     h->req_id, h->tx_id, h->len);
	r.terminated = h->len == 0 || body[h->len - 1] == '\0';
	r.argv = xcalloc(h->len + 1, sizeof(char *));
	for (size_t i = 0; i < h->len;) {
		r.argv[r.argc++] = body + i;
		i += strlen(body + i) + 1;
	}

	if (d->drop_on && h->type != XS_CONTROL && h->len && r.argc >= 1 &&
	    !strncmp(r.argv[0], d->drop_on, strlen(d->drop_on))) {
		vlog(d, "conn %d: closed unanswered (drop-on %s)", c->fd,
		     d->drop_on);
		free(d->drop_on);
		d->drop_on = NULL;
		conn_kill(d, c);
		goto out;
	}

	struct view v = {&d->store, NULL};
	switch (h->type) {
	case XS_READ:
	case XS_WRITE:
	case XS_MKDIR:
	case XS_RM:
	case XS_DIRECTORY:
	case XS_DIRECTORY_PART:
	case XS_GET_PERMS:
	case XS_SET_PERMS:
	case XS_TRANSACTION_END:
		if (h->tx_id) {
			v.t = find_txn(c, h->tx_id);
			if (!v.t) {
				reply_err(&r, ENOENT);
				goto out;
			}
		}
		break;
	default:
		break;
	}

	switch (h->type) {
	case XS_READ:
		do_read(&r, &v);
		break;
	case XS_WRITE:
		do_write(&r, &v);
		break;
	case XS_MKDIR:
	case XS_RM:
		do_simple_mod(&r, &v);
		break;
	case XS_DIRECTORY:
	case XS_DIRECTORY_PART:
		do_directory(&r, &v);
		break;
	case XS_GET_PERMS:
		do_get_perms(&r, &v);
		break;
	case XS_SET_PERMS:
		do_set_perms(&r, &v);
		break;
	case XS_UNWATCH:
		r.d->unwatches++;
		do_watch(&r);
		break;
	case XS_WATCH:
		do_watch(&r);
		break;
	case XS_TRANSACTION_START:
		do_txn_start(&r);
		break;
	case XS_TRANSACTION_END:
		do_txn_end(&r, v.t);
		break;
	case XS_INTRODUCE:
		do_introduce(&r);
		break;
	case XS_RELEASE:
	case XS_RESUME:
	case XS_GET_DOMAIN_PATH:
	case XS_IS_DOMAIN_INTRODUCED:
		do_domid_cmd(&r);
		break;
	case XS_SET_TARGET:
		do_set_target(&r);
		break;
	case XS_RESET_WATCHES:
		do_reset_watches(&r);
		break;
	case XS_CONTROL:
		do_control(&r);
		break;
	default:
		reply_err(&r, EINVAL);
		break;
	}
out:
	free(r.argv);
}
