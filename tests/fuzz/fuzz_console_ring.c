/*
 * Fuzz target for the PV console ring arithmetic (lib/console_ring.c).
 *
 * The input is a program of one-byte opcodes (plus arguments) run on one
 * console page shared by a backend view and a frontend view:
 *   0 frontend writes N bytes     1 backend reads up to N bytes
 *   2 backend writes N bytes      3 frontend reads up to N bytes
 *   4 the peer sets a raw index (which of the four, 32-bit value)
 *   5 backend peeks up to N / consumes part of it
 *   6 re-attach the backend (a reconnect)
 * Invariants checked: no access outside the page (the page is allocated at
 * its exact size, so ASan sees any overrun); counts never exceed the ring
 * or the request; while nobody forged an index, the bytes arrive in order
 * and unchanged in both directions; after a forged index, calls either
 * work or report -1, never anything else.
 */
#include "console_ring.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c))                                                             \
            abort();                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xencons_interface *page = calloc(1, sizeof(*page));
    struct stubdm__cring fe, be;
    unsigned char buf[4096];
    /* stream positions: byte k of a stream has value (k * 131 + dir) & 255 */
    uint64_t fe_sent = 0, be_got = 0, be_sent = 0, fe_got = 0;
    int forged = 0;
    size_t i = 0;

    if (!page)
        return 0;
    CHECK(stubdm__cring_attach(&fe, page, STUBDM__CRING_FRONTEND));
    CHECK(stubdm__cring_attach(&be, page, STUBDM__CRING_BACKEND));
    while (i < size) {
        uint8_t op = data[i++] % 7;
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
                CHECK(buf[k] == (unsigned char)((be_got + (uint64_t)k) * 131 + 1));
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
                CHECK(buf[k] == (unsigned char)((fe_got + (uint64_t)k) * 131 + 2));
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
            break;
        }
    }
    free(page);
    return 0;
}
