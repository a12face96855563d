/*
 * A minimal program using an installed libstubdm, built by
 * tests/install-check.sh through pkg-config, find_package() and
 * add_subdirectory().  Needs no Xen: the ctx opens xenstore lazily.
 */
#include <libstubdm.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    stubdm_ctx *ctx = NULL;
    int rc;

    if (stubdm_version_hex() != STUBDM_VERSION_HEX) {
        fprintf(stderr, "header is %#x but the library is %#x\n",
                (unsigned)STUBDM_VERSION_HEX, stubdm_version_hex());
        return 1;
    }
    rc = stubdm_ctx_new(&ctx);
    if (rc != STUBDM_OK) {
        fprintf(stderr, "stubdm_ctx_new: %s\n", stubdm_strerror(rc));
        return 1;
    }
    stubdm_ctx_free(ctx);
    if (strcmp(stubdm_errname(STUBDM_ETIMEDOUT), "STUBDM_ETIMEDOUT") != 0)
        return 1;
    printf("libstubdm %s\n", stubdm_version());
    return 0;
}
