/* stubdm_spawn(3): start a stubdomain for guest 5, then destroy it. */
#include <libstubdm.h>
#include <stdio.h>

int spawn_and_destroy(stubdm_ctx *ctx)
{
    static const char *const args[] = {"-xen-domid", "5", "-nodefaults",
                                       "-machine", "xenfv"};
    stubdm_spawn_opts *opts;
    stubdm_stubdom *s = NULL;
    int rc;

    if ((rc = stubdm_spawn_opts_new(&opts)) != STUBDM_OK)
        return rc;
    stubdm_spawn_opts_set_guest(opts, 5,
                                "00000000-0000-0000-0000-000000000005", "vm5");
    stubdm_spawn_opts_set_kernel(opts,
                                 "/usr/lib/xen/boot/qemu-stubdom-linux-kernel",
                                 "/usr/lib/xen/boot/qemu-stubdom-linux-rootfs",
                                 NULL);
    stubdm_spawn_opts_set_args(opts, args, 5);
    rc = stubdm_spawn_sync(ctx, opts, NULL, NULL, &s);
    if (rc != STUBDM_OK) {
        fprintf(stderr, "spawn: %s\n", stubdm_ctx_errmsg(ctx));
    } else {
        printf("stubdomain %u runs QEMU for guest %u\n",
               stubdm_stubdom_domid(s), stubdm_stubdom_guest(s));
        rc = stubdm_stubdom_destroy_sync(s);
    }
    stubdm_stubdom_free(s);
    stubdm_spawn_opts_free(opts);
    return rc;
}
