/*
 * The one decimal parser for every number a stubdomain, a guest or a
 * simulated host writes (xenstore node values and names, "SEQ TOTAL"
 * pairs, control replies).  Internal: not part of the ABI.
 *
 * Accepted: the canonical form libxl, xenstored and Linux's xenbus write
 * with "%u": one or more ASCII digits, no sign, no '+', no space, no
 * trailing byte, and no leading zero except the number "0" itself (so one
 * value has one spelling: "05" is not the domid 5, and a peer cannot pad a
 * value to make dom0 scan it).  At most STUBDM__NUM_DIGITS_MAX digits (the
 * length of UINT64_MAX): only that many bytes of s are ever read past the
 * first, whatever its length.
 *
 * Each returns 0 with *out set, or STUBDM_EINVAL (s NULL, malformed, or
 * above max) with *out untouched.  No ctx, no errno, no locale.
 */
#ifndef STUBDM_NUM_H
#define STUBDM_NUM_H

#include <stddef.h>
#include <stdint.h>

#define STUBDM__NUM_DIGITS_MAX 20

int stubdm__num_parse_u64(const char *s, uint64_t max, uint64_t *out);
int stubdm__num_parse_u32(const char *s, uint32_t max, uint32_t *out);
/* A domid: 0 .. DOMID_FIRST_RESERVED - 1 (0x7FEF). */
int stubdm__num_parse_domid(const char *s, uint32_t *out);

/* The same on the n bytes at s (a field of a longer string, not
 * NUL-terminated): the whole field must be the number. */
int stubdm__num_parse_u64_n(const char *s, size_t n, uint64_t max,
                            uint64_t *out);

#endif /* STUBDM_NUM_H */
