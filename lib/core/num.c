/*
 * Strict decimal numbers from peers (see num.h for the accepted form).
 * strtoul and friends are not used: they skip spaces, take a sign (and
 * negate "-1" into ULONG_MAX), accept "0x" with base 0, depend on the
 * locale, and a 64-bit result cast to 32 bits wraps ("4294967301" became
 * domid 5).
 */
#include "core/num.h"

#include "core/base.h"

#include <string.h>

int stubdm__num_parse_u64_n(const char *s, size_t n, uint64_t max,
                            uint64_t *out)
{
    uint64_t v = 0;

    if (!s || n == 0 || n > STUBDM__NUM_DIGITS_MAX)
        return STUBDM_EINVAL;
    if (s[0] == '0' && n > 1)
        return STUBDM_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';

        if (d > 9)
            return STUBDM_EINVAL;
        if (v > (UINT64_MAX - d) / 10)
            return STUBDM_EINVAL;
        v = v * 10 + d;
    }
    if (v > max)
        return STUBDM_EINVAL;
    *out = v;
    return 0;
}

int stubdm__num_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s)
        return STUBDM_EINVAL;
    /* One byte past the cap tells "too long" without reading further. */
    return stubdm__num_parse_u64_n(s, strnlen(s, STUBDM__NUM_DIGITS_MAX + 1),
                                   max, out);
}

int stubdm__num_parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v;
    int rc = stubdm__num_parse_u64(s, max, &v);

    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int stubdm__num_parse_domid(const char *s, uint32_t *out)
{
    return stubdm__num_parse_u32(s, STUBDM__DOMID_MAX, out);
}
