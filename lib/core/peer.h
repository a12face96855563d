/*
 * What the library takes from a party it does not trust (a stubdomain, a
 * guest, QEMU, a xenstored node such a party can write): printable copies
 * for messages and logs, reads that check who owns a node, and the checks
 * on names and paths built from such values.  Internal: not in the ABI.
 */
#ifndef STUBDM_PEER_H
#define STUBDM_PEER_H

#include "core/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Copy at most in_len bytes of in into out (out_size bytes, > 0), always
 * NUL-terminated: every byte outside printable ASCII (0x20..0x7e: control
 * bytes, DEL, and every byte >= 0x80, so no escape sequence, line break or
 * stray UTF-8 reaches a log line or a terminal) becomes '?'; when in does
 * not fit, the copy ends with "..." (so a cut is visible).  in may be NULL
 * ("").  Returns out.
 */
char *stubdm__printable(char *out, size_t out_size, const char *in,
                        size_t in_len);
/* The same for a NUL-terminated in; reads at most out_size bytes of it. */
char *stubdm__printable_str(char *out, size_t out_size, const char *in);

/*
 * Read path (at most max_len bytes, as stubdm__xs_read) only if its owner
 * (the first entry of its permissions) is domain owner: value and owner
 * come from one transaction, so a node the peer removes and re-creates
 * in between is never taken for the owner's.  0 with *val_out
 * (malloc'ed, NUL-terminated) and *len_out (may be NULL);
 * STUBDM_ENOENT; STUBDM_EPERM (another domain owns it: the message names
 * it); or the read's failure.
 */
int stubdm__xs_read_owned(stubdm_ctx *ctx, const char *path, size_t max_len,
                          uint32_t owner, char **val_out, size_t *len_out);

/*
 * A hotplug script path read back from a backend (the teardown): absolute,
 * printable, no "." or ".." component, no "//", and either in dir (one of
 * its entries, no subdirectory) or equal to one of the n paths in also.
 */
bool stubdm__script_path_ok(const char *path, const char *dir,
                            const char *const *also, size_t n);

#endif /* STUBDM_PEER_H */
