/*
 * Fuzz target for the PV console ring arithmetic (lib/console/ring.c).
 *
 * The input is a program of one-byte opcodes (plus arguments) run on one
 * console page shared by a backend view and a frontend view:
 *   0 frontend writes N bytes     1 backend reads up to N bytes
 *   2 backend writes N bytes      3 frontend reads up to N bytes
 *   4 the peer sets a raw index (which of the four, 32-bit value)
 *   5 backend peeks up to N / consumes part of it
 *   6 re-attach the backend (a reconnect)
 *   7 one dispatch of the backend's pump, ring -> destination, as
 *     lib/console/console.c's pump_out drives the ring: up to PUMP_ROUNDS
 * rounds of peek, write to the destination, consume; in every round the next
 *     input byte says how much the destination takes and what the hostile
 *     frontend does meanwhile (write more and advance out_prod, forge
 *     out_prod, scribble on out_cons), as a peer running on another CPU
 *     could between our peek and our consume
 *   8 the same for pump_in, source -> ring (tx_room, fill, produce), the
 *     peer moving in_cons meanwhile
 * Invariants checked: no access outside the page (the page is allocated at
 * its exact size, so ASan sees any overrun); counts never exceed the ring
 * or the request; while nobody forged an index, the bytes arrive in order
 * and unchanged in both directions; after a forged index, calls either
 * work or report -1, never anything else.  For the pump: what a peek
 * offers is exactly out_prod - our consumer index as the page holds it at
 * that moment (never more, never stale), or -1 if that exceeds the ring;
 * the bytes the backend delivers never exceed what the frontend claimed to
 * produce (forward moves of out_prod); one dispatch does at most
 * PUMP_ROUNDS rounds, however fast the peer refills (bounded work).  After
 * a -1 the harness, as console.c (which disconnects), pumps no more until
 * a re-attach (op 6).
 */
#include "console/ring.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* lib/console/console.c's bound: rounds of the pump per dispatch. */
#define PUMP_ROUNDS 32

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c))                                                             \
            abort();                                                          \
    } while (0)

/* The frontend moves out_prod to v: a claim of v - prev bytes if forward. */
static void peer_set_prod(struct xencons_interface *page, uint32_t v,
                          uint32_t *last_prod, uint64_t *claimed)
{
    if ((int32_t)(v - *last_prod) > 0)
        *claimed += v - *last_prod;
    *last_prod = v;
    page->out_prod = v;
}

/*
 * One dispatch of the backend pump, ring -> destination (console.c's
 * pump_out), with the peer acting in every round between our peek and our
 * consume.  Each round reads one control byte c: c & 3 is what the
 * destination takes (all, half, nothing: blocked, all), c >> 2 & 7 what the
 * peer does (0-2 nothing, 3 writes c >> 5 * 290 bytes and advances
 * out_prod, 4 moves out_prod forward by the next byte * 16, 5 sets
 * out_prod to the next 4 bytes, 6 scribbles on out_cons, 7 sets out_prod
 * just past the ring's bound).
 */
static void pump_out(struct xencons_interface *page, struct stubdm__cring *be,
                     const uint8_t *data, size_t size, size_t *ip,
                     uint32_t *last_prod, uint64_t *claimed,
                     uint64_t *delivered, int *dead, int *forged)
{
    size_t i = *ip;
    int round;

    for (round = 0; round < PUMP_ROUNDS; round++) {
        const char *p[2];
        uint32_t l[2];
        unsigned ns = 9;
        uint32_t prod = page->out_prod, cons = be->rx_cons;
        long avail = stubdm__cring_rx_peek(be, STUBDM__CRING_OUT_SIZE, p, l,
                                           &ns);
        uint8_t c = i < size ? data[i++] : 0;
        long take;

        /* Exactly what the page says now, or a violation. */
        if (prod - cons > STUBDM__CRING_OUT_SIZE) {
            CHECK(avail == -1);
            *dead = 1;
            break;
        }
        CHECK(avail == (long)(prod - cons));
        if (avail == 0)
            break;
        /* The pumps move bytes outside the ordered streams ops 0-3
         * check: from here on only the bounds are checked. */
        *forged = 1;
        CHECK(ns >= 1 && ns <= 2);
        for (unsigned k = 0; k < ns; k++)
            CHECK(p[k] >= page->out && p[k] + l[k] <= page->out + 2048 &&
                  l[k] > 0);
        take = (c & 3) == 1 ? avail / 2 : (c & 3) == 2 ? 0 : avail;
        switch (c >> 2 & 7) {
        case 3: {
            /* An honest-looking write racing with our consume: it fills
             * free space only, from the peer's view of out_cons. */
            struct stubdm__cring fe = {.intf = page,
                                       .side = STUBDM__CRING_FRONTEND,
                                       .rx_cons = page->in_cons,
                                       .tx_prod = *last_prod};
            unsigned char buf[2048];
            size_t n = (size_t)(c >> 5) * 290;
            memset(buf, 'x', n);
            long r = stubdm__cring_write(&fe, buf, n);
            CHECK(r >= -1 && r <= (long)n);
            if (r > 0)
                peer_set_prod(page, fe.tx_prod, last_prod, claimed);
            break;
        }
        case 4:
            peer_set_prod(page,
                          *last_prod +
                              (uint32_t)(i < size ? data[i++] : 1) * 16,
                          last_prod, claimed);
            *forged = 1;
            break;
        case 5: {
            uint32_t v = 0;
            for (int k = 0; k < 4 && i < size; k++)
                v = v << 8 | data[i++];
            peer_set_prod(page, v, last_prod, claimed);
            *forged = 1;
            break;
        }
        case 6:
            page->out_cons = 0xdeadbeef; /* ours: must never be read back */
            *forged = 1;
            break;
        case 7:
            peer_set_prod(page, be->rx_cons + STUBDM__CRING_OUT_SIZE + 1,
                          last_prod, claimed);
            *forged = 1;
            break;
        default:
            break;
        }
        if (take > 0) {
            stubdm__cring_rx_consume(be, (uint32_t)take);
            *delivered += (uint64_t)take;
            CHECK(page->out_cons == be->rx_cons);
        }
        if (take < avail)
            break; /* destination blocked: console.c waits for POLLOUT */
    }
    CHECK(round <= PUMP_ROUNDS);
    *ip = i;
}

/* One dispatch of pump_in: source -> ring, the peer moving in_cons in
 * every round (next byte: 0-3 consumes that quarter of what is there
 * honestly, 4 forges in_cons to the next 4 bytes, others nothing). */
static void pump_in(struct xencons_interface *page, struct stubdm__cring *be,
                    const uint8_t *data, size_t size, size_t *ip, int *dead,
                    int *forged)
{
    size_t i = *ip;
    int round;

    for (round = 0; round < PUMP_ROUNDS; round++) {
        char *p[2];
        uint32_t l[2];
        unsigned ns = 9;
        uint32_t cons = page->in_cons, prod = be->tx_prod;
        long room = stubdm__cring_tx_room(be, STUBDM__CRING_IN_SIZE, p, l,
                                          &ns);
        uint8_t c = i < size ? data[i++] : 0;
        uint32_t fill = 0;

        if (prod - cons > STUBDM__CRING_IN_SIZE) {
            CHECK(room == -1);
            *dead = 1;
            break;
        }
        CHECK(room == (long)(STUBDM__CRING_IN_SIZE - (prod - cons)));
        if (room == 0)
            break;
        for (unsigned k = 0; k < ns; k++) {
            CHECK(p[k] >= page->in && p[k] + l[k] <= page->in + 1024 &&
                  l[k] > 0);
            memset(p[k], 'y', l[k]);
            fill += l[k];
        }
        CHECK(fill == (uint32_t)room);
        *forged = 1; /* as in pump_out */
        switch (c & 7) {
        case 0:
        case 1:
        case 2:
        case 3:
            page->in_cons = cons + (prod - cons) * (c & 3) / 4;
            break;
        case 4: {
            uint32_t v = 0;
            for (int k = 0; k < 4 && i < size; k++)
                v = v << 8 | data[i++];
            page->in_cons = v;
            *forged = 1;
            break;
        }
        default:
            break;
        }
        /* As a source that had c >> 3 * 64 bytes ready. */
        uint32_t n = (uint32_t)(c >> 3) * 64;
        if (n > (uint32_t)room)
            n = (uint32_t)room;
        if (n == 0)
            break;
        stubdm__cring_tx_produce(be, n);
        CHECK(page->in_prod == be->tx_prod);
    }
    CHECK(round <= PUMP_ROUNDS);
    *ip = i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xencons_interface *page = calloc(1, sizeof(*page));
    struct stubdm__cring fe, be;
    unsigned char buf[4096];
    /* stream positions: byte k of a stream has value (k * 131 + dir) & 255 */
    uint64_t fe_sent = 0, be_got = 0, be_sent = 0, fe_got = 0;
    int forged = 0;
    size_t i = 0;
    /* pump accounting: forward moves of out_prod (what the peer claims to
     * have produced) against what the backend delivered */
    uint64_t claimed = 0, delivered = 0;
    uint32_t last_prod = 0;
    int dead = 0; /* the backend saw a protocol violation */

    if (!page)
        return 0;
    CHECK(stubdm__cring_attach(&fe, page, STUBDM__CRING_FRONTEND));
    CHECK(stubdm__cring_attach(&be, page, STUBDM__CRING_BACKEND));
    while (i < size) {
        uint8_t op = data[i++] % 9;
        size_t n = i < size ? (size_t)data[i++] * 17 % 4097 : 0;
        long r;

        switch (op) {
        case 0:
            for (size_t k = 0; k < n; k++)
                buf[k] = (unsigned char)((fe_sent + k) * 131 + 1);
            r = stubdm__cring_write(&fe, buf, n);
            CHECK(r >= -1 && r <= (long)n && r <= 2048);
            if (r > 0)
                fe_sent += (uint64_t)r;
            break;
        case 1:
            r = stubdm__cring_read(&be, buf, n);
            CHECK(r >= -1 && r <= (long)n && r <= 2048);
            CHECK(forged || r >= 0);
            for (long k = 0; k < r && !forged; k++)
                CHECK(buf[k] ==
                      (unsigned char)((be_got + (uint64_t)k) * 131 + 1));
            if (r > 0)
                be_got += (uint64_t)r;
            break;
        case 2:
            for (size_t k = 0; k < n; k++)
                buf[k] = (unsigned char)((be_sent + k) * 131 + 2);
            r = stubdm__cring_write(&be, buf, n);
            CHECK(r >= -1 && r <= (long)n && r <= 1024);
            CHECK(forged || r >= 0);
            if (r > 0)
                be_sent += (uint64_t)r;
            break;
        case 3:
            r = stubdm__cring_read(&fe, buf, n);
            CHECK(r >= -1 && r <= (long)n && r <= 1024);
            for (long k = 0; k < r && !forged; k++)
                CHECK(buf[k] ==
                      (unsigned char)((fe_got + (uint64_t)k) * 131 + 2));
            if (r > 0)
                fe_got += (uint64_t)r;
            break;
        case 4: {
            uint32_t v = 0;
            uint32_t *slot[4] = {&page->in_cons, &page->in_prod,
                                 &page->out_cons, &page->out_prod};
            for (int k = 0; k < 4 && i < size; k++)
                v = v << 8 | data[i++];
            *slot[n % 4] = v;
            forged = 1;
            break;
        }
        case 5: {
            const char *p[2];
            uint32_t l[2], tot = 0;
            unsigned ns = 9;
            r = stubdm__cring_rx_peek(&be, n, p, l, &ns);
            CHECK(r >= -1 && r <= (long)n && r <= 2048);
            if (r < 0)
                break;
            CHECK(ns <= 2);
            for (unsigned k = 0; k < ns; k++) {
                CHECK(p[k] >= page->out && p[k] + l[k] <= page->out + 2048);
                CHECK(l[k] > 0);
                tot += l[k];
            }
            CHECK(tot == (uint32_t)r);
            stubdm__cring_rx_consume(&be, (uint32_t)r / 2);
            if (!forged)
                be_got += (uint32_t)r / 2;
            break;
        }
        case 6:
            if (!stubdm__cring_attach(&be, page, STUBDM__CRING_BACKEND))
                CHECK(forged);
            else {
                dead = 0;
                claimed = delivered = 0;
                last_prod = be.rx_cons;
            }
            break;
        case 7:
            if (!dead)
                pump_out(page, &be, data, size, &i, &last_prod, &claimed,
                         &delivered, &dead, &forged);
            break;
        case 8:
            if (!dead)
                pump_in(page, &be, data, size, &i, &dead, &forged);
            break;
        }
        /* Ops 0-5 move out_prod as an honest frontend (or a forger, op 4):
         * account for it as a claim too. */
        if ((int32_t)(page->out_prod - last_prod) > 0)
            claimed += page->out_prod - last_prod;
        last_prod = page->out_prod;
        CHECK(delivered <= claimed + STUBDM__CRING_OUT_SIZE);
    }
    free(page);
    return 0;
}
