/* libstubdm(3): check the loaded library against the header, report an error. */
#include <libstubdm.h>
#include <stdio.h>

int main(void)
{
    stubdm_ctx *ctx;
    char **args = NULL;
    int rc;

    if (stubdm_version_hex() < STUBDM_VERSION_HEX)
        fprintf(stderr, "built for a newer libstubdm than %s\n",
                stubdm_version());
    if (stubdm_ctx_new(&ctx) != STUBDM_OK)
        return 1;
    rc = stubdm_dm_argv_read(ctx, "/vm/no-such-uuid", STUBDM_DM_ARGV_DIRECTORY,
                             &args, NULL);
    if (rc != STUBDM_OK)
        fprintf(stderr, "%s (%s): %s\n", stubdm_errname(rc),
                stubdm_strerror(rc), stubdm_ctx_errmsg(ctx));
    stubdm_dm_argv_free(args);
    stubdm_ctx_free(ctx);
    return rc == STUBDM_OK ? 0 : 1;
}
