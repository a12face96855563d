/*
 * Ring arithmetic on a PV console page (struct xencons_interface of
 * <xen/io/console.h>), with no I/O: what console.c and the simulated
 * frontend (tests/support/simcons.c) use to move bytes, and what
 * tests/test_console_ring.c and tests/fuzz/fuzz_console_ring.c exercise.
 *
 * The page is shared with a domain we do not trust.  Its indexes are free
 * running 32-bit counters; the bytes between cons and prod are the data.
 * Every index the peer owns is read once per operation, checked
 * (prod - cons <= ring size, unsigned), and only then used; the indexes
 * this side owns are kept privately (struct stubdm__cring) and only ever
 * written to the page, never read back, so a peer scribbling on them hurts
 * nobody but itself.  Offsets into the page are always masked, so no index
 * value, however hostile, can address memory outside the page.
 *
 * Barriers: after reading the peer's producer index, an acquire fence
 * before reading the data; after reading or writing the data, a full fence
 * before publishing our own index (xen_mb(), as the Xen ring protocol
 * asks).  The indexes themselves are accessed with relaxed atomics.
 */
#ifndef STUBDM_CONSOLE_RING_H
#define STUBDM_CONSOLE_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/io/console.h>

#define STUBDM__CRING_IN_SIZE                                                 \
    ((uint32_t)sizeof(((struct xencons_interface *)0)->in))
#define STUBDM__CRING_OUT_SIZE                                                \
    ((uint32_t)sizeof(((struct xencons_interface *)0)->out))

/* A contiguous piece of a ring: offset into the data array and length. */
struct stubdm__cring_seg {
    uint32_t off, len;
};

/*
 * Bytes between cons and prod in a ring of 'size' bytes (a power of two).
 * Returns false (and *used untouched) when the distance exceeds size:
 * indexes no honest peer can produce.
 */
bool stubdm__cring_used(uint32_t cons, uint32_t prod, uint32_t size,
                        uint32_t *used);

/*
 * Split n bytes starting at free-running index idx into at most two
 * contiguous segments of a ring of 'size' bytes (n <= size).  Returns the
 * number of segments (0 when n == 0).
 */
unsigned stubdm__cring_segs(uint32_t idx, uint32_t n, uint32_t size,
                            struct stubdm__cring_seg seg[2]);

/* Which end of the page this side is. */
enum stubdm__cring_side {
    STUBDM__CRING_BACKEND,  /* consumes out, produces in */
    STUBDM__CRING_FRONTEND, /* produces out, consumes in */
};

/*
 * One side's view of a page: the page and the indexes this side owns.
 * 'rx' is the ring this side reads (backend: out; frontend: in), 'tx' the
 * ring it writes.
 */
struct stubdm__cring {
    struct xencons_interface *intf;
    enum stubdm__cring_side side;
    uint32_t rx_cons; /* our consumer index on the rx ring */
    uint32_t tx_prod; /* our producer index on the tx ring */
    /* The peer's indexes as this side last read them (each once per
     * operation): what a message about a violation reports.  Reading the
     * page again for the message could show a value the peer wrote since,
     * one that was never checked (even a valid one). */
    uint32_t seen_rx_prod; /* rx_peek, rx_empty, attach */
    uint32_t seen_tx_cons; /* tx_room, tx_drained, attach */
};

/*
 * Attach to a page, taking our own indexes from it as they are now (a
 * frontend may have written before the backend connected).  Returns false
 * if the page's indexes are already inconsistent.
 */
bool stubdm__cring_attach(struct stubdm__cring *r,
                          struct xencons_interface *intf,
                          enum stubdm__cring_side side);

/* Size of the rx / tx ring for this side. */
uint32_t stubdm__cring_rx_size(const struct stubdm__cring *r);
uint32_t stubdm__cring_tx_size(const struct stubdm__cring *r);

/*
 * Bytes waiting in the rx ring, as segments (pointers into the page), at
 * most 'max' of them.  Returns the byte count, or -1 when the peer's
 * producer index is out of range (protocol violation: disconnect).
 */
long stubdm__cring_rx_peek(struct stubdm__cring *r, size_t max,
                           const char *ptr[2], uint32_t len[2],
                           unsigned *nseg);
/* Mark n bytes (<= what peek returned) consumed and publish rx_cons. */
void stubdm__cring_rx_consume(struct stubdm__cring *r, uint32_t n);

/*
 * Free room in the tx ring, as segments (pointers into the page), at most
 * 'max' bytes.  Returns the byte count, or -1 when the peer's consumer
 * index is out of range.
 */
long stubdm__cring_tx_room(struct stubdm__cring *r, size_t max, char *ptr[2],
                           uint32_t len[2], unsigned *nseg);
/* Publish n bytes (<= what room returned) written into the segments. */
void stubdm__cring_tx_produce(struct stubdm__cring *r, uint32_t n);

/* Copying helpers built on the above (frontends, tests, the fuzzer).
 * Return the bytes moved, or -1 on a protocol violation. */
long stubdm__cring_read(struct stubdm__cring *r, void *buf, size_t len);
long stubdm__cring_write(struct stubdm__cring *r, const void *buf, size_t len);

/* True when everything we produced on tx was consumed by the peer (or -1
 * on a bad peer index). */
int stubdm__cring_tx_drained(struct stubdm__cring *r);
/* True when the rx ring holds no data (or -1). */
int stubdm__cring_rx_empty(struct stubdm__cring *r);

#endif /* STUBDM_CONSOLE_RING_H */
