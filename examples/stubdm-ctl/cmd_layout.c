/*
 * stubdm-ctl layout: print every xenstore node a stubdomain start writes,
 * with its permissions, without writing anything — a dry run for toolstack
 * developers.
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

static struct ctl_command cmd_layout;

static bool parse_backend(const char *s, stubdm_console_backend *out)
{
    if (!strcmp(s, "ioemu"))
        *out = STUBDM_CONSOLE_IOEMU;
    else if (!strcmp(s, "xenconsoled"))
        *out = STUBDM_CONSOLE_XENCONSOLED;
    else if (!strcmp(s, "libstubdm"))
        *out = STUBDM_CONSOLE_LIBSTUBDM;
    else
        return false;
    return true;
}

static int run_layout(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                      char **argv)
{
    stubdm_contract *c = NULL;
    stubdm_nodes *nodes = NULL;
    uint32_t guest = 0, stubdom = 0, toolstack = 0;
    bool have_guest = false, have_stubdom = false;
    const char *vm = NULL, *bios = NULL;
    stubdm_argv_encoding enc = STUBDM_ARGV_DIRECTORY;
    stubdm_console_backend backend = STUBDM_CONSOLE_IOEMU;
    const char *outputs[3 + STUBDM_MAX_SERIALS] = {NULL};
    unsigned nserials = 0;
    const char *const *args = NULL;
    size_t nargs = 0;
    int rc, code = CTL_EXIT_OK;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--")) {
            args = (const char *const *)&argv[i + 1];
            nargs = (size_t)(argc - i - 1);
            break;
        }
        if (!v)
            return ctl_usage_error(&cmd_layout, "%s needs a value", a);
        i++;
        if (!strcmp(a, "--guest")) {
            if (!(have_guest = ctl_parse_domid(v, &guest)))
                return ctl_usage_error(&cmd_layout, "bad domid '%s'", v);
        } else if (!strcmp(a, "--stubdom")) {
            if (!(have_stubdom = ctl_parse_domid(v, &stubdom)))
                return ctl_usage_error(&cmd_layout, "bad domid '%s'", v);
        } else if (!strcmp(a, "--toolstack")) {
            if (!ctl_parse_domid(v, &toolstack))
                return ctl_usage_error(&cmd_layout, "bad domid '%s'", v);
        } else if (!strcmp(a, "--vm")) {
            vm = v;
        } else if (!strcmp(a, "--encoding")) {
            if (!ctl_parse_encoding(v, &enc))
                return ctl_usage_error(&cmd_layout, "unknown encoding '%s'", v);
        } else if (!strcmp(a, "--console-backend")) {
            if (!parse_backend(v, &backend))
                return ctl_usage_error(&cmd_layout, "unknown backend '%s'", v);
        } else if (!strcmp(a, "--log")) {
            outputs[STUBDM_CONSOLE_LOG] = v;
        } else if (!strcmp(a, "--save")) {
            outputs[STUBDM_CONSOLE_SAVE] = v;
        } else if (!strcmp(a, "--restore")) {
            outputs[STUBDM_CONSOLE_RESTORE] = v;
        } else if (!strcmp(a, "--serial")) {
            if (nserials >= STUBDM_MAX_SERIALS)
                return ctl_usage_error(&cmd_layout, "at most %d serials",
                                       STUBDM_MAX_SERIALS);
            outputs[STUBDM_CONSOLE_SERIAL0 + nserials++] = v;
        } else if (!strcmp(a, "--hvmloader")) {
            bios = v;
        } else {
            return ctl_usage_error(&cmd_layout, "unexpected argument '%s'", a);
        }
    }
    if (!have_guest || !have_stubdom || !vm)
        return ctl_usage_error(&cmd_layout,
                               "--guest, --stubdom and --vm are required");

    if ((rc = stubdm_contract_new(&c)) ||
        (rc = stubdm_contract_set_domains(c, guest, stubdom)) ||
        (rc = stubdm_contract_set_vm_path(c, vm)) ||
        (rc = stubdm_contract_set_toolstack_domid(c, toolstack)) ||
        (rc = stubdm_contract_set_argv_encoding(c, enc, 0)) ||
        (rc = stubdm_contract_set_console_backend(c, backend)) ||
        (nargs && (rc = stubdm_contract_set_args(c, args, nargs))) ||
        (bios && (rc = stubdm_contract_set_hvmloader(c, bios, 0))))
        goto out;
    for (unsigned n = 0; n < 3 + nserials; n++)
        if (outputs[n] &&
            (rc = stubdm_contract_set_console_output(c, n, outputs[n])))
            goto out;
    rc = stubdm_contract_layout(ctx, c, &nodes);
    if (!rc)
        ctl_print_nodes(g, "layout", nodes);
out:
    if (rc)
        code = ctl_report_error(ctx, g, "layout", rc, NULL);
    stubdm_nodes_free(nodes);
    stubdm_contract_free(c);
    return code;
}

CTL_COMMAND(cmd_layout) = {
    .name = "layout",
    .usage = "--guest DOMID --stubdom DOMID --vm /vm/UUID [options] "
             "[-- QEMU-ARGS...]",
    .summary = "print every node a stubdomain start writes (dry run)",
    .help = "Computes the xenstore contract and prints each node with its\n"
            "value and permissions (owner first, xenstore-chmod syntax), in\n"
            "write order.  Nothing is written; no xenstore is needed.\n"
            "  --toolstack DOMID        console backend / vchan peer (0)\n"
            "  --encoding E             directory (default), minios, esc\n"
            "  --console-backend B      ioemu (default), xenconsoled, libstubdm\n"
            "  --log OUT, --save OUT    outputs of consoles 0 and 1\n"
            "  --restore IN             console 2 (means: restoring)\n"
            "  --serial OUT             a guest serial (repeat: consoles 3..)\n"
            "  --hvmloader seabios|ovmf the guest's hvmloader keys\n",
    .run = run_layout,
};
