/* stubdm_console(3): serve a stubdomain's log console into a file. */
#include <libstubdm.h>
#include <stdio.h>

static void console_done(stubdm_op *op, int rc, void *user)
{
    (void)op;
    (void)user;
    if (rc != STUBDM_OK)
        fprintf(stderr, "console ended: %s\n", stubdm_strerror(rc));
}

int serve_log(stubdm_ctx *ctx, uint32_t stubdom, stubdm_console **out)
{
    stubdm_console_opts *o;
    int rc;

    if ((rc = stubdm_console_opts_new(&o)) != STUBDM_OK)
        return rc;
    rc = stubdm_console_opts_set_log(o, "/var/log/xen/qemu-dm-vm5.log",
                                     1 << 20, 3);
    if (rc == STUBDM_OK)
        rc = stubdm_console_serve(ctx, stubdom, STUBDM_CONSOLE_LOG, o,
                                  console_done, NULL, out);
    if (rc != STUBDM_OK)
        fprintf(stderr, "console: %s\n", stubdm_ctx_errmsg(ctx));
    stubdm_console_opts_free(o);
    return rc;
}
