/*
 * Node lists (nodes.c): the library's xenstore writes as data, and the one
 * function that turns a list into xenstore requests inside a transaction.
 */
#ifndef STUBDM_NODES_H
#define STUBDM_NODES_H

#include "core/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xs_handle;
struct xs_permissions;

/* Xenstore limits (docs/misc/xenstore.txt, xs_wire.h). */
#define STUBDM__XS_PAYLOAD_MAX 4096 /* XENSTORE_PAYLOAD_MAX */
#define STUBDM__XS_ABS_PATH_MAX 3072

struct stubdm__node {
    char *path;
    char *value; /* NUL-terminated too */
    size_t len;
    char *perms; /* "n0 r5", or NULL: inherit from the parent */
};

struct stubdm_nodes {
    struct stubdm__node *v;
    size_t n, cap;
    /* Subtrees removed (in the same transaction) before the nodes are
     * written: what an earlier start may have left.  Missing is fine. */
    char **rm;
    size_t nrm, rmcap;
};

/* An empty list, or NULL (out of memory). */
stubdm_nodes *stubdm__nodes_new(void);

/*
 * Append a node: path from path_fmt, value[0..len) (value NULL: ""),
 * perms in xenstore-chmod syntax or NULL.  0 or STUBDM_ENOMEM.
 */
int stubdm__nodes_add(stubdm_nodes *nodes, const char *perms,
                      const char *value, size_t len, const char *path_fmt, ...)
    STUBDM_PRINTF(5, 6);
/* The same with a NUL-terminated value. */
int stubdm__nodes_add_str(stubdm_nodes *nodes, const char *perms,
                          const char *value, const char *path_fmt, ...)
    STUBDM_PRINTF(4, 5);
/* Append a subtree to remove before writing.  0 or STUBDM_ENOMEM. */
int stubdm__nodes_add_rm(stubdm_nodes *nodes, const char *path_fmt, ...)
    STUBDM_PRINTF(2, 3);
/* Move every node and removal of src to the end of dst (src is emptied). */
int stubdm__nodes_splice(stubdm_nodes *dst, stubdm_nodes *src);

/* Number of subtrees removed first, and removal i. */
size_t stubdm__nodes_rm_count(const stubdm_nodes *nodes);
const char *stubdm__nodes_rm_path(const stubdm_nodes *nodes, size_t i);

/*
 * Parse "n0 r5 w3 b7" (first = owner and default) into a malloc'ed array.
 * 0 or STUBDM_EINVAL / STUBDM_ENOMEM (no ctx message: the callers hold
 * perms they built themselves).
 */
int stubdm__perms_parse(const char *text, struct xs_permissions **out,
                        unsigned *n_out);

/* Whether path is a valid absolute xenstore path (xenstored's rules). */
bool stubdm__xs_path_ok(const char *path);

/*
 * Inside a transaction: remove the list's subtrees, then write every node
 * (xs_write, then xs_set_permissions when it has perms), counting each
 * request.  The message of a failure names the path.
 */
int stubdm__nodes_write_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                            const stubdm_nodes *nodes);

/* Inside a transaction: remove path and its subtree; absence is fine. */
int stubdm__xs_rm_txn(stubdm_ctx *ctx, struct xs_handle *xsh, uint32_t t,
                      const char *path);

/*
 * Render the list as text, one line per entry, for golden files and
 * stubdm-ctl: "rm <path>" lines first, then
 * "<path> = \"<escaped value>\" [perms]".  Values are C-escaped
 * (\\, \", \n, \xHH for bytes outside 0x20..0x7e).  Free with free().
 */
char *stubdm__nodes_render(const stubdm_nodes *nodes);

#endif /* STUBDM_NODES_H */
