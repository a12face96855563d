/* stubdm_op(3): start an operation, get its result from the callback. */
#include <libstubdm.h>
#include <stdio.h>

static void done(stubdm_op *op, int rc, void *user)
{
    int *finished = user;

    if (rc != STUBDM_OK)
        fprintf(stderr, "wait: %s\n", stubdm_op_errmsg(op));
    *finished = 1;
}

int wait_for_dm(stubdm_ctx *ctx, uint32_t stubdom, uint32_t guest)
{
    stubdm_op *op;
    int finished = 0, rc;

    rc = stubdm_dm_wait_running(ctx, stubdom, guest, 30000, done, &finished,
                                &op);
    if (rc != STUBDM_OK)
        return rc; /* refused at once: no callback will come */
    while (!finished && stubdm_ctx_run_once(ctx, -1) == STUBDM_OK)
        ;
    rc = stubdm_op_result(op);
    stubdm_op_free(op);
    return rc;
}
