/*
 * libFuzzer target for the strict number parser (lib/core/num.c): every number
 * and domid dom0 reads from a node a peer owns goes through it.
 *
 * Differential: each input is checked against a reference written from
 * num.h's contract, not from num.c: one or more ASCII digits, no sign,
 * space or trailing byte, no leading zero except "0" itself, at most
 * STUBDM__NUM_DIGITS_MAX digits, value <= max (computed with strtoull
 * after that validation, overflow by errno).  Accepted values must match;
 * on refusal *out is untouched.  A buffer longer than the digit cap is
 * handed over without a terminator, exactly STUBDM__NUM_DIGITS_MAX + 1
 * bytes long, so ASan sees a read past the cap.
 *
 * Input: byte 0 picks max (UINT64_MAX, UINT32_MAX, 0, 255, or the next
 * 8 bytes), the rest is the text.
 */
#include "core/base.h"
#include "core/num.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c))                                                             \
            abort();                                                          \
    } while (0)

#define SENTINEL 0xa5a5a5a5a5a5a5a5ull

/* The contract: 0 and *v, or -1. */
static int reference(const char *s, size_t n, uint64_t max, uint64_t *v)
{
    char tmp[STUBDM__NUM_DIGITS_MAX + 1];
    unsigned long long r;

    if (n == 0 || n > STUBDM__NUM_DIGITS_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    if (s[0] == '0' && n > 1)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    r = strtoull(tmp, NULL, 10);
    if (errno == ERANGE || r > max)
        return -1;
    *v = r;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t max, want = 0, got = SENTINEL;
    uint32_t got32 = (uint32_t)SENTINEL;
    size_t n;
    char *s;
    int ref, rc;

    if (size < 1)
        return 0;
    switch (data[0] % 5) {
    case 0:
        max = UINT64_MAX;
        break;
    case 1:
        max = UINT32_MAX;
        break;
    case 2:
        max = 0;
        break;
    case 3:
        max = 255;
        break;
    default:
        max = 0;
        for (int i = 1; i <= 8 && (size_t)i < size; i++)
            max = max << 8 | data[i];
        data += size > 8 ? 8 : size - 1;
        size -= size > 8 ? 8 : size - 1;
    }
    data++;
    size--;

    /* The text ends at a NUL, as the C string a caller passes would. */
    n = strnlen((const char *)data, size);
    ref = reference((const char *)data, n, max, &want);

    /* Longer than the cap: no terminator within reach, to catch an
     * over-read; otherwise an exact, terminated copy. */
    if (n > STUBDM__NUM_DIGITS_MAX) {
        s = malloc(STUBDM__NUM_DIGITS_MAX + 1);
        CHECK(s);
        memcpy(s, data, STUBDM__NUM_DIGITS_MAX + 1);
    } else {
        s = malloc(n + 1);
        CHECK(s);
        memcpy(s, data, n);
        s[n] = '\0';
    }

    rc = stubdm__num_parse_u64(s, max, &got);
    CHECK(rc == 0 || rc == STUBDM_EINVAL);
    CHECK((rc == 0) == (ref == 0));
    CHECK(rc == 0 ? got == want : got == SENTINEL);

    if (max <= UINT32_MAX) {
        rc = stubdm__num_parse_u32(s, (uint32_t)max, &got32);
        CHECK((rc == 0) == (ref == 0));
        CHECK(rc == 0 ? got32 == want : got32 == (uint32_t)SENTINEL);
    }

    got32 = (uint32_t)SENTINEL;
    rc = stubdm__num_parse_domid(s, &got32);
    ref = reference((const char *)data, n, STUBDM__DOMID_MAX, &want);
    CHECK((rc == 0) == (ref == 0));
    CHECK(rc == 0 ? got32 == want && stubdm__domid_ok(got32)
                  : got32 == (uint32_t)SENTINEL);

    /* The counted form on the same bytes, NULs and all. */
    got = SENTINEL;
    rc = stubdm__num_parse_u64_n((const char *)data, size, max, &got);
    ref = reference((const char *)data, size, max, &want);
    CHECK((rc == 0) == (ref == 0));
    CHECK(rc == 0 ? got == want : got == SENTINEL);
    free(s);
    return 0;
}
