/* Daemon-wide state: connections, listening sockets, domains, watches. */
#ifndef MOCKXS_DAEMON_H
#define MOCKXS_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <errno.h> /* xs_wire.h only defines xsd_errors after errno.h */
#include <xen/io/xs_wire.h>

#include "store.h"
#include "txn.h"

#define HDR_SIZE sizeof(struct xsd_sockmsg)
#define INBUF_SIZE (2 * (HDR_SIZE + XENSTORE_PAYLOAD_MAX))

struct conn;

struct watch {
	struct watch *next_path; /* same watched path */
	struct watch *next_conn; /* same connection */
	struct conn *conn;
	char *abs;  /* canonical path or "@..." name */
	char *orig; /* as registered: events report relative paths relative */
	char *token;
};

struct outbuf {
	struct outbuf *next;
	size_t len, off;
	char data[];
};

struct conn {
	struct conn *next, *prev;
	int fd;
	unsigned domid;
	bool dead;
	bool ep_out; /* POLLOUT interest registered with epoll */
	size_t inlen;
	char in[INBUF_SIZE];
	struct outbuf *oh, *ot;
	size_t oq;
	struct watch *watches;
	unsigned nwatches;
	struct txn *txns;
	unsigned ntxns;
};

struct listener {
	struct listener *next;
	int fd;
	unsigned domid;
	char *path;
	bool introduced; /* created by INTRODUCE, removed by RELEASE */
};

struct domain {
	bool introduced;
	int target;
};

struct daemon {
	struct config cfg;
	struct store store;
	struct hmap watches; /* abs path -> first struct watch */
	struct conn *conns;
	size_t nconns;
	struct listener *listeners;
	struct domain *doms; /* DOMID_LIMIT entries */
	char *dir;
	uint32_t next_txid;
	int epfd; /* every listener and connection is registered here */
	/* XS_CONTROL "drop-on PREFIX": the next request whose path starts
	 * with it closes its connection unanswered (a xenstored lost
	 * mid-request); one shot. */
	char *drop_on;
	/* UNWATCH requests received (XS_CONTROL "unwatch-count"): a forked
	 * child must send none on the connection it shares. */
	unsigned long unwatches;
};

void vlog(const struct daemon *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct who conn_who(const struct daemon *d, const struct conn *c);

/* conn.c */
struct conn *conn_new(struct daemon *d, int fd, unsigned domid);
void conn_send(struct daemon *d, struct conn *c, uint32_t type, uint32_t req_id,
	       uint32_t tx_id, const void *data, size_t len);
void conn_kill(struct daemon *d, struct conn *c);
void conn_reap(struct daemon *d);
void conn_on_readable(struct daemon *d, struct conn *c);
void conn_on_writable(struct daemon *d, struct conn *c);

/* watch.c */
int watch_add(struct daemon *d, struct conn *c, const char *orig,
	      const char *abs, const char *token);
int watch_del(struct daemon *d, struct conn *c, const char *abs,
	      const char *token);
void watch_del_all(struct daemon *d, struct conn *c);
void watch_send_event(struct daemon *d, struct watch *w, const char *abspath);
void watch_fire(struct daemon *d, const struct event *e);
void watch_fire_list(struct daemon *d, struct evlist *l);

/* wire.c */
void wire_dispatch(struct daemon *d, struct conn *c,
		   const struct xsd_sockmsg *hdr, const char *body);

/* main.c */
int listener_add(struct daemon *d, unsigned domid, const char *path,
		 bool introduced);
void listener_del_introduced(struct daemon *d, unsigned domid);

#endif
