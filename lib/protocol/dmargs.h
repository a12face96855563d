/*
 * dm-argv encoding internals (dmargs.c), shared with contract.c.
 */
#ifndef STUBDM_DMARGS_H
#define STUBDM_DMARGS_H

#include "xen/nodes.h"

/* Check a guest vm path: "/vm/<name>", valid xenstore characters, short
 * enough for every node below it.  Message names the problem. */
int stubdm__vm_path_check(stubdm_ctx *ctx, const char *vm_path);

/*
 * Append the dm-argv nodes (and the removals of what an earlier start may
 * have left: both dm-argv/ and dmargs) to 'into'.  owner_domid owns the
 * nodes (the toolstack), stubdom_domid may read them.  Validates
 * everything first: on failure 'into' is unchanged.
 */
int stubdm__dm_argv_nodes(stubdm_ctx *ctx, const char *vm_path,
                          uint32_t owner_domid, uint32_t stubdom_domid,
                          stubdm_dm_argv_encoding encoding,
                          size_t max_value_len, const char *const *args,
                          size_t nargs, stubdm_nodes *into);

/* The subtrees holding an argv below vm_path, for teardown. */
#define STUBDM__DM_ARGV_DIR "image/dm-argv"
#define STUBDM__DMARGS_KEY "image/dmargs"

/*
 * What `xenstore-read` (without -R) prints for a value: it escapes bytes
 * outside 0x20..0x7e and the backslash.  true if the byte comes out as
 * itself.
 */
static inline bool stubdm__xs_read_keeps(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e && c != '\\';
}

#endif /* STUBDM_DMARGS_H */
