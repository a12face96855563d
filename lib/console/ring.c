/*
 * PV console ring arithmetic: see console/ring.h.  No I/O, no allocation,
 * no state besides the caller's struct, so it can be tested and fuzzed on
 * its own.
 */
#include "console/ring.h"

#include <string.h>

_Static_assert((STUBDM__CRING_IN_SIZE & (STUBDM__CRING_IN_SIZE - 1)) == 0,
               "console in ring size is a power of two");
_Static_assert((STUBDM__CRING_OUT_SIZE & (STUBDM__CRING_OUT_SIZE - 1)) == 0,
               "console out ring size is a power of two");

static uint32_t load_idx(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void store_idx(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

bool stubdm__cring_used(uint32_t cons, uint32_t prod, uint32_t size,
                        uint32_t *used)
{
    uint32_t d = prod - cons; /* free-running: wraps modulo 2^32 */

    if (d > size)
        return false;
    *used = d;
    return true;
}

unsigned stubdm__cring_segs(uint32_t idx, uint32_t n, uint32_t size,
                            struct stubdm__cring_seg seg[2])
{
    uint32_t off = idx & (size - 1);
    uint32_t first;

    if (n == 0)
        return 0;
    if (n > size)
        n = size;
    first = size - off;
    if (first >= n) {
        seg[0].off = off;
        seg[0].len = n;
        return 1;
    }
    seg[0].off = off;
    seg[0].len = first;
    seg[1].off = 0;
    seg[1].len = n - first;
    return 2;
}

/* The four index slots and data arrays, by side. */
static uint32_t *rx_prod_p(struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? &r->intf->out_prod
                                            : &r->intf->in_prod;
}
static uint32_t *rx_cons_p(struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? &r->intf->out_cons
                                            : &r->intf->in_cons;
}
static uint32_t *tx_prod_p(struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? &r->intf->in_prod
                                            : &r->intf->out_prod;
}
static uint32_t *tx_cons_p(struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? &r->intf->in_cons
                                            : &r->intf->out_cons;
}
static char *rx_data(struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? r->intf->out : r->intf->in;
}
static char *tx_data(struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? r->intf->in : r->intf->out;
}

uint32_t stubdm__cring_rx_size(const struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? STUBDM__CRING_OUT_SIZE
                                            : STUBDM__CRING_IN_SIZE;
}

uint32_t stubdm__cring_tx_size(const struct stubdm__cring *r)
{
    return r->side == STUBDM__CRING_BACKEND ? STUBDM__CRING_IN_SIZE
                                            : STUBDM__CRING_OUT_SIZE;
}

bool stubdm__cring_attach(struct stubdm__cring *r,
                          struct xencons_interface *intf,
                          enum stubdm__cring_side side)
{
    uint32_t used;

    r->intf = intf;
    r->side = side;
    r->rx_cons = load_idx(rx_cons_p(r));
    r->tx_prod = load_idx(tx_prod_p(r));
    r->seen_rx_prod = load_idx(rx_prod_p(r));
    r->seen_tx_cons = load_idx(tx_cons_p(r));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return stubdm__cring_used(r->rx_cons, r->seen_rx_prod,
                              stubdm__cring_rx_size(r), &used) &&
           stubdm__cring_used(r->seen_tx_cons, r->tx_prod,
                              stubdm__cring_tx_size(r), &used);
}

long stubdm__cring_rx_peek(struct stubdm__cring *r, size_t max,
                           const char *ptr[2], uint32_t len[2], unsigned *nseg)
{
    uint32_t size = stubdm__cring_rx_size(r);
    uint32_t prod = load_idx(rx_prod_p(r)), used;
    struct stubdm__cring_seg seg[2];
    unsigned n;

    r->seen_rx_prod = prod;
    /* Read the index before the data it covers (rmb). */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (!stubdm__cring_used(r->rx_cons, prod, size, &used))
        return -1;
    if (used > max)
        used = (uint32_t)max;
    n = stubdm__cring_segs(r->rx_cons, used, size, seg);
    for (unsigned i = 0; i < n; i++) {
        ptr[i] = rx_data(r) + seg[i].off;
        len[i] = seg[i].len;
    }
    *nseg = n;
    return (long)used;
}

void stubdm__cring_rx_consume(struct stubdm__cring *r, uint32_t n)
{
    if (n == 0)
        return;
    /* Finish reading the data before the peer may overwrite it (mb). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    r->rx_cons += n;
    store_idx(rx_cons_p(r), r->rx_cons);
}

long stubdm__cring_tx_room(struct stubdm__cring *r, size_t max, char *ptr[2],
                           uint32_t len[2], unsigned *nseg)
{
    uint32_t size = stubdm__cring_tx_size(r);
    uint32_t cons = load_idx(tx_cons_p(r)), used, room;
    struct stubdm__cring_seg seg[2];
    unsigned n;

    r->seen_tx_cons = cons;
    /* The peer's reads of the old data are done before we overwrite. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!stubdm__cring_used(cons, r->tx_prod, size, &used))
        return -1;
    room = size - used;
    if (room > max)
        room = (uint32_t)max;
    n = stubdm__cring_segs(r->tx_prod, room, size, seg);
    for (unsigned i = 0; i < n; i++) {
        ptr[i] = tx_data(r) + seg[i].off;
        len[i] = seg[i].len;
    }
    *nseg = n;
    return (long)room;
}

void stubdm__cring_tx_produce(struct stubdm__cring *r, uint32_t n)
{
    if (n == 0)
        return;
    /* The data is visible before the index that publishes it (wmb). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    r->tx_prod += n;
    store_idx(tx_prod_p(r), r->tx_prod);
}

long stubdm__cring_read(struct stubdm__cring *r, void *buf, size_t len)
{
    const char *ptr[2];
    uint32_t l[2];
    unsigned nseg;
    long n = stubdm__cring_rx_peek(r, len, ptr, l, &nseg);
    size_t done = 0;

    if (n <= 0)
        return n;
    for (unsigned i = 0; i < nseg; i++) {
        memcpy((char *)buf + done, ptr[i], l[i]);
        done += l[i];
    }
    stubdm__cring_rx_consume(r, (uint32_t)n);
    return n;
}

long stubdm__cring_write(struct stubdm__cring *r, const void *buf, size_t len)
{
    char *ptr[2];
    uint32_t l[2];
    unsigned nseg;
    long n = stubdm__cring_tx_room(r, len, ptr, l, &nseg);
    size_t done = 0;

    if (n <= 0)
        return n;
    for (unsigned i = 0; i < nseg; i++) {
        memcpy(ptr[i], (const char *)buf + done, l[i]);
        done += l[i];
    }
    stubdm__cring_tx_produce(r, (uint32_t)n);
    return n;
}

int stubdm__cring_tx_drained(struct stubdm__cring *r)
{
    uint32_t used;

    r->seen_tx_cons = load_idx(tx_cons_p(r));
    if (!stubdm__cring_used(r->seen_tx_cons, r->tx_prod,
                            stubdm__cring_tx_size(r), &used))
        return -1;
    return used == 0;
}

int stubdm__cring_rx_empty(struct stubdm__cring *r)
{
    uint32_t used;

    r->seen_rx_prod = load_idx(rx_prod_p(r));
    if (!stubdm__cring_used(r->rx_cons, r->seen_rx_prod,
                            stubdm__cring_rx_size(r), &used))
        return -1;
    return used == 0;
}
