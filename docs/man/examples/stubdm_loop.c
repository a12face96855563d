/* stubdm_loop(3): drive a ctx from a poll(2) loop until an op ends. */
#include <libstubdm.h>
#include <poll.h>

int run_until_done(stubdm_ctx *ctx, const stubdm_op *op)
{
    struct pollfd fds[64];

    while (!stubdm_op_is_done(op)) {
        size_t n = 64;
        int timeout_ms, rc;

        rc = stubdm_ctx_poll_prepare(ctx, fds, &n, &timeout_ms);
        if (rc != STUBDM_OK)
            return rc; /* STUBDM_EBUFFERFULL: n says how many are needed */
        if (poll(fds, n, timeout_ms) < 0)
            continue; /* EINTR */
        rc = stubdm_ctx_poll_dispatch(ctx, fds, n);
        if (rc != STUBDM_OK)
            return rc;
    }
    return stubdm_op_result(op);
}
