/* stubdm_wait_running(3): block until the device model runs. */
#include <libstubdm.h>
#include <stdio.h>

int wait_running(stubdm_ctx *ctx, uint32_t stubdom, uint32_t guest)
{
    int rc = stubdm_dm_wait_running_sync(ctx, stubdom, guest, 60000);

    if (rc == STUBDM_EDOMAIN_GONE)
        fprintf(stderr, "stubdomain died: %s\n", stubdm_ctx_errmsg(ctx));
    else if (rc != STUBDM_OK)
        fprintf(stderr, "%s: %s\n", stubdm_errname(rc),
                stubdm_ctx_errmsg(ctx));
    return rc;
}
