#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct who conn_who(const struct daemon *d, const struct conn *c)
{
	struct who w = {c->domid, c->domid == 0, d->doms[c->domid].target};
	return w;
}

struct conn *conn_new(struct daemon *d, int fd, unsigned domid)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->domid = domid;
	c->next = d->conns;
	if (d->conns)
		d->conns->prev = c;
	d->conns = c;
	d->nconns++;
	vlog(d, "conn %d: new, acting as domain %u", fd, domid);
	return c;
}

void conn_send(struct daemon *d, struct conn *c, uint32_t type, uint32_t req_id,
	       uint32_t tx_id, const void *data, size_t len)
{
	if (c->dead)
		return;
	struct outbuf *o = xmalloc(sizeof(*o) + HDR_SIZE + len);
	struct xsd_sockmsg h = {type, req_id, tx_id, (uint32_t)len};
	memcpy(o->data, &h, HDR_SIZE);
	if (len)
		memcpy(o->data + HDR_SIZE, data, len);
	o->len = HDR_SIZE + len;
	o->off = 0;
	o->next = NULL;
	if (c->ot)
		c->ot->next = o;
	else
		c->oh = o;
	c->ot = o;
	c->oq += o->len;
	/* A client that never reads must not make us grow without bound. */
	if (d->cfg.max_output && c->oq > d->cfg.max_output) {
		vlog(d, "conn %d: output queue over %zu bytes, dropping", c->fd,
		     d->cfg.max_output);
		conn_kill(d, c);
	}
}

/* Only marks the connection: callers may be iterating over watch lists
 * that still reference it.  conn_reap() frees it between poll rounds. */
void conn_kill(struct daemon *d, struct conn *c)
{
	(void)d;
	c->dead = true;
}

static void conn_free(struct daemon *d, struct conn *c)
{
	vlog(d, "conn %d: closed", c->fd);
	watch_del_all(d, c);
	while (c->txns) {
		struct txn *t = c->txns;
		c->txns = t->next;
		txn_free(t);
	}
	while (c->oh) {
		struct outbuf *o = c->oh;
		c->oh = o->next;
		free(o);
	}
	close(c->fd);
	free(c);
}

void conn_reap(struct daemon *d)
{
	struct conn *c = d->conns;
	while (c) {
		struct conn *nx = c->next;
		if (c->dead) {
			if (c->prev)
				c->prev->next = c->next;
			else
				d->conns = c->next;
			if (c->next)
				c->next->prev = c->prev;
			d->nconns--;
			conn_free(d, c);
		}
		c = nx;
	}
}

void conn_on_readable(struct daemon *d, struct conn *c)
{
	ssize_t r = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen,
			 MSG_DONTWAIT);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		conn_kill(d, c);
		return;
	}
	if (r < 0)
		return;
	c->inlen += (size_t)r;

	size_t off = 0;
	while (!c->dead && c->inlen - off >= HDR_SIZE) {
		struct xsd_sockmsg h;
		memcpy(&h, c->in + off, HDR_SIZE);
		/* Like real xenstored: an oversized payload is a protocol
		 * violation, not an error reply. */
		if (h.len > XENSTORE_PAYLOAD_MAX) {
			vlog(d, "conn %d: payload %u > %d, closing", c->fd,
			     h.len, XENSTORE_PAYLOAD_MAX);
			conn_kill(d, c);
			return;
		}
		if (c->inlen - off < HDR_SIZE + h.len)
			break;
		char body[XENSTORE_PAYLOAD_MAX + 1];
		memcpy(body, c->in + off + HDR_SIZE, h.len);
		body[h.len] = '\0';
		off += HDR_SIZE + h.len;
		wire_dispatch(d, c, &h, body);
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

void conn_on_writable(struct daemon *d, struct conn *c)
{
	while (c->oh && !c->dead) {
		struct outbuf *o = c->oh;
		ssize_t r = send(c->fd, o->data + o->off, o->len - o->off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				conn_kill(d, c);
			return;
		}
		o->off += (size_t)r;
		c->oq -= (size_t)r;
		if (o->off < o->len)
			return;
		c->oh = o->next;
		if (!c->oh)
			c->ot = NULL;
		free(o);
	}
}
