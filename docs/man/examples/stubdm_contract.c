/* stubdm_contract(3): write a stubdomain's contract, remove it on failure. */
#include <libstubdm.h>
#include <stdio.h>

int write_contract(stubdm_ctx *ctx, uint32_t guest, uint32_t stubdom,
                   const char *vm_path)
{
    static const char *const args[] = {"-xen-domid", "5", "-nodefaults"};
    stubdm_contract *c;
    int rc;

    rc = stubdm_contract_new(&c);
    if (rc != STUBDM_OK)
        return rc;
    if ((rc = stubdm_contract_set_domains(c, guest, stubdom)) != STUBDM_OK ||
        (rc = stubdm_contract_set_vm_path(c, vm_path)) != STUBDM_OK ||
        (rc = stubdm_contract_set_args(c, args, 3)) != STUBDM_OK)
        goto out;
    rc = stubdm_contract_write(ctx, c);
    if (rc != STUBDM_OK) {
        fprintf(stderr, "contract: %s\n", stubdm_ctx_errmsg(ctx));
        stubdm_contract_remove(ctx, c);
    }
out:
    stubdm_contract_free(c);
    return rc;
}
