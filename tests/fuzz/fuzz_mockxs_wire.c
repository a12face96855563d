/*
 * libFuzzer target for the mock xenstored's wire parser and request
 * handlers (tests/mock-xenstored/wire.c and the store, watch and
 * transaction code behind it): arbitrary bytes as one client's request
 * stream, with a fresh daemon (store, watches, domains) per input.
 *
 * The daemon's own conn.c reads the bytes (conn_on_readable: framing, the
 * payload bound) from one end of a socketpair and queues replies that
 * conn_on_writable sends back; main.c (listeners, epoll) is replaced by the
 * stubs below, and the simulated host's CONTROL commands (sim-start runs
 * programs) by one that refuses them: simhost.c is compiled with
 * simhost_control renamed.
 *
 * Input: byte 0 selects who the client is (bit 0: dom0, else domain 5;
 * bit 1: domain 5 is introduced; bits 2-3: a smaller entry-size, quota and
 * output limit so they are reached), then the raw stream, fed in chunks
 * whose sizes come from byte 0's high bits.
 * Invariants: no memory error or leak (ASan/LSan, the daemon is torn down
 * per input); while the connection lives, every complete request gets
 * exactly one reply (its type or XS_ERROR, its req_id and tx_id), every
 * message sent back is well framed and within XENSTORE_PAYLOAD_MAX, and
 * the connection is dropped only for an oversized payload or its output
 * limit.
 */
#include "daemon.h"
#include "simhost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c))                                                             \
            abort();                                                          \
    } while (0)

/* ---- what main.c provides the daemon ----------------------------------- */

void vlog(const struct daemon *d, const char *fmt, ...)
{
    (void)d;
    (void)fmt;
}

int listener_add(struct daemon *d, unsigned domid, const char *path,
                 bool introduced)
{
    (void)d, (void)domid, (void)path, (void)introduced;
    return 0;
}

void listener_del_introduced(struct daemon *d, unsigned domid)
{
    (void)d, (void)domid;
}

/* The simulated host's commands start and kill processes: not here. */
int simhost_control(struct daemon *d, const char *const *argv, unsigned argc,
                    struct buf *out)
{
    (void)d, (void)argv, (void)argc, (void)out;
    return -1;
}

/* ---- checking what comes back ---------------------------------------- */

struct expect {
    uint32_t type, req_id, tx_id;
};

struct rx {
    char buf[2 * (HDR_SIZE + XENSTORE_PAYLOAD_MAX)];
    size_t len;
    struct expect want[512];
    size_t nwant, head;
    bool overflow; /* more requests than want[] tracks: stop checking */
};

static void check_replies(struct rx *x)
{
    size_t off = 0;

    while (x->len - off >= HDR_SIZE) {
        struct xsd_sockmsg h;
        memcpy(&h, x->buf + off, HDR_SIZE);
        CHECK(h.len <= XENSTORE_PAYLOAD_MAX);
        if (x->len - off < HDR_SIZE + h.len)
            break;
        if (h.type != XS_WATCH_EVENT && !x->overflow) {
            CHECK(x->head < x->nwant);
            const struct expect *e = &x->want[x->head++];
            CHECK(h.req_id == e->req_id);
            CHECK(h.type == e->type || h.type == XS_ERROR);
            /* A transaction's start reply carries the id in the body. */
            if (e->type != XS_TRANSACTION_START || h.type == XS_ERROR)
                CHECK(h.tx_id == e->tx_id);
        }
        off += HDR_SIZE + h.len;
    }
    memmove(x->buf, x->buf + off, x->len - off);
    x->len -= off;
}

static void drain(struct daemon *d, struct conn *c, int peer, struct rx *x)
{
    for (;;) {
        conn_on_writable(d, c);
        ssize_t n = recv(peer, x->buf + x->len, sizeof(x->buf) - x->len,
                         MSG_DONTWAIT);
        if (n <= 0)
            break;
        x->len += (size_t)n;
        check_replies(x);
    }
}

/* The requests complete in data[0..len): what the replies must match. */
static size_t expect_requests(struct rx *x, const uint8_t *data, size_t len,
                              bool *oversized)
{
    size_t off = 0;

    while (len - off >= HDR_SIZE) {
        struct xsd_sockmsg h;
        memcpy(&h, data + off, HDR_SIZE);
        if (h.len > XENSTORE_PAYLOAD_MAX) {
            *oversized = true;
            break;
        }
        if (len - off < HDR_SIZE + h.len)
            break;
        if (x->nwant < sizeof(x->want) / sizeof(x->want[0]))
            x->want[x->nwant++] = (struct expect){h.type, h.req_id, h.tx_id};
        else
            x->overflow = true;
        off += HDR_SIZE + h.len;
    }
    return off;
}

static struct domain doms[DOMID_LIMIT];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct daemon d;
    static struct rx x;
    int sv[2];

    if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        return 0;
    uint8_t mode = data[0];
    unsigned domid = (mode & 1) ? 0 : 5;
    size_t chunk = (size_t)(mode >> 4) * 512 + 1;
    data++;
    size--;

    memset(&d, 0, sizeof(d));
    memset(&x, 0, sizeof(x));
    d.cfg.entry_size = (mode & 4) ? 64 : 2048;
    d.cfg.quota_nodes = (mode & 4) ? 8 : 1000;
    d.cfg.quota_watches = (mode & 4) ? 2 : 128;
    d.cfg.quota_transactions = (mode & 4) ? 1 : 10;
    d.cfg.max_output = (mode & 8) ? 256 : 4u << 20;
    d.dir = "/nonexistent";
    d.epfd = -1;
    d.doms = doms;
    for (unsigned i = 0; i < DOMID_LIMIT; i++)
        doms[i] = (struct domain){false, NO_TARGET};
    doms[5].introduced = mode & 2;
    store_init(&d.store, &d.cfg);
    hmap_init(&d.watches);

    struct conn *c = conn_new(&d, sv[0], domid);
    bool oversized = false;
    size_t sent = 0, parsed = 0;
    while (sent < size && !c->dead) {
        size_t n = size - sent;
        if (n > chunk)
            n = chunk;
        if (n > sizeof(c->in) - c->inlen)
            n = sizeof(c->in) - c->inlen;
        if (n == 0)
            break; /* cannot happen: the buffer holds two messages */
        ssize_t w = send(sv[1], data + sent, n, MSG_DONTWAIT);
        CHECK(w > 0);
        sent += (size_t)w;
        parsed += expect_requests(&x, data + parsed, sent - parsed,
                                  &oversized);
        conn_on_readable(&d, c);
        CHECK(c->inlen < HDR_SIZE ||
              ((const struct xsd_sockmsg *)c->in)->len >
                  XENSTORE_PAYLOAD_MAX ||
              c->inlen < HDR_SIZE + ((const struct xsd_sockmsg *)c->in)->len ||
              c->dead);
        drain(&d, c, sv[1], &x);
    }
    /* Whatever the socket still holds (recv fills at most the buffer). */
    for (int k = 0; k < 4 && !c->dead; k++) {
        conn_on_readable(&d, c);
        drain(&d, c, sv[1], &x);
    }
    if (c->dead) {
        /* Only an oversized payload, the output limit or a released
         * domain (RELEASE of itself by dom0) ends the connection. */
        CHECK(oversized || c->oq > 0 || d.cfg.max_output < 4096 || domid == 0);
    } else {
        drain(&d, c, sv[1], &x);
        CHECK(x.overflow || x.head == x.nwant);
        CHECK(c->oq == 0 || d.cfg.max_output < 4096);
    }

    for (struct conn *k = d.conns; k; k = k->next)
        k->dead = true;
    conn_reap(&d); /* closes sv[0] */
    close(sv[1]);
    hmap_destroy(&d.watches, NULL);
    store_destroy(&d.store);
    free(d.drop_on); /* a dom0 input may arm CONTROL drop-on */
    return 0;
}
