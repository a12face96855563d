/* stubdm_dm_argv(3): write a QEMU command line and read it back. */
#include <libstubdm.h>
#include <stdio.h>

int store_argv(stubdm_ctx *ctx, const char *vm_path, uint32_t stubdom)
{
    static const char *const args[] = {"-xen-domid", "5", "-nodefaults",
                                       "-machine", "xenfv"};
    char **back;
    size_t n;
    int rc;

    rc = stubdm_dm_argv_write(ctx, vm_path, stubdom, STUBDM_DM_ARGV_DIRECTORY,
                              0, args, sizeof(args) / sizeof(args[0]));
    if (rc != STUBDM_OK) {
        fprintf(stderr, "dm-argv: %s\n", stubdm_ctx_errmsg(ctx));
        return rc;
    }
    rc = stubdm_dm_argv_read(ctx, vm_path, STUBDM_DM_ARGV_DIRECTORY, &back,
                             &n);
    if (rc == STUBDM_OK) {
        for (size_t i = 0; i < n; i++)
            printf("dm-argv/%03zu %s\n", i + 1, back[i]);
        stubdm_dm_argv_free(back);
    }
    return rc;
}
