/* stubdm_qmp_proxy(3): let libxl's QMP clients share the connection. */
#include <libstubdm.h>
#include <stdio.h>

int serve_qmp(stubdm_ctx *ctx, stubdm_qmp *q, uint32_t guest,
              stubdm_qmp_proxy **out)
{
    char path[64];
    int rc;

    snprintf(path, sizeof(path), "/var/run/xen/qmp-libxl-%u", guest);
    rc = stubdm_qmp_proxy_new(q, path, 0, out);
    if (rc != STUBDM_OK)
        fprintf(stderr, "proxy: %s\n", stubdm_ctx_errmsg(ctx));
    /* the ctx's loop serves it; stubdm_qmp_proxy_free(*out) stops it */
    return rc;
}
