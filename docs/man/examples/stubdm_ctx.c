/* stubdm_ctx(3): a context with its messages sent to stderr. */
#include <libstubdm.h>
#include <stdio.h>

static void log_stderr(void *user, stubdm_log_level level, int os_errno,
                       const char *context, const char *msg)
{
    (void)user;
    fprintf(stderr, "libstubdm[%d] %s: %s (errno %d)\n", (int)level, context,
            msg, os_errno);
}

int main(void)
{
    stubdm_ctx *ctx;
    int rc = stubdm_ctx_new(&ctx);

    if (rc != STUBDM_OK) {
        fprintf(stderr, "stubdm_ctx_new: %s\n", stubdm_strerror(rc));
        return 1;
    }
    stubdm_ctx_set_log(ctx, log_stderr, NULL, STUBDM_LOG_INFO);
    /* ... use it from this thread ... */
    stubdm_ctx_free(ctx);
    return 0;
}
