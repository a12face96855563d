/*
 * What a toolstack has written to xenstore before a contract, for the
 * suites that write one against the mock xenstored (test_contract,
 * test_console, test_alloc_fail).  Failures are Check failures of the
 * running test.
 */
#ifndef STUBDM_TESTS_XSFIX_H
#define STUBDM_TESTS_XSFIX_H

struct mockxs;
struct xs_handle;

/* The mock's whole store (mockxs_dump); free() it. */
char *xsfix_dump(const struct mockxs *m);

/* An empty node at path, owned by owner, readable by reader. */
void xsfix_dir(struct xs_handle *xs, const char *path, unsigned owner,
               unsigned reader);

/* The two domains' home directories, the stubdomain's device directory,
 * the guest's "vm" node naming vm and vm itself with its image directory,
 * dom0's backend directory (all dom0's, each domain reading its own; the
 * stubdomain owns its device dir), as libxl's domain_make leaves them: no
 * /local/domain/<guest>/image, which the contract's device-model-domid
 * creates. */
void xsfix_guest(struct xs_handle *xs, unsigned guest, unsigned stub,
                 const char *vm);

#endif
