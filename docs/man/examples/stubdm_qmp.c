/* stubdm_qmp(3): open QMP to a stubdomain's QEMU and ask its status. */
#include <libstubdm.h>
#include <stdio.h>
#include <stdlib.h>

int query_status(stubdm_ctx *ctx, uint32_t stubdom, uint32_t guest)
{
    stubdm_qmp *q;
    char *reply;
    int rc;

    rc = stubdm_qmp_open_sync(ctx, stubdom, guest, NULL, &q);
    if (rc != STUBDM_OK) {
        fprintf(stderr, "qmp: %s\n", stubdm_ctx_errmsg(ctx));
        return rc;
    }
    rc = stubdm_qmp_execute_sync(q, "query-status", NULL, 5000, &reply);
    if (rc == STUBDM_OK) {
        printf("%s\n", reply);
        free(reply);
    } else {
        fprintf(stderr, "query-status: %s\n", stubdm_ctx_errmsg(ctx));
    }
    stubdm_qmp_free(q);
    return rc;
}
