/*
 * stubdm-ctl dm-argv encode|write|read
 *
 * encode and write take QEMU's arguments (without argv[0]) after "--";
 * read prints them back the way a stubdomain reads them.
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

static struct ctl_command cmd_dmargv;

struct dmargv_opts {
    const char *action;
    const char *vm_path;
    uint32_t stubdom;
    bool have_stubdom;
    stubdm_argv_encoding encoding;
    size_t max_value;
    const char *const *args;
    size_t nargs;
};

static int parse(int argc, char **argv, struct dmargv_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->encoding = STUBDM_ARGV_DIRECTORY;
    if (argc < 2)
        return ctl_usage_error(&cmd_dmargv, "need encode, write or read");
    o->action = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            o->args = (const char *const *)&argv[i + 1];
            o->nargs = (size_t)(argc - i - 1);
            break;
        } else if (!strcmp(a, "--vm") && i + 1 < argc) {
            o->vm_path = argv[++i];
        } else if (!strcmp(a, "--stubdom") && i + 1 < argc) {
            if (!ctl_parse_domid(argv[++i], &o->stubdom))
                return ctl_usage_error(&cmd_dmargv, "bad domid '%s'", argv[i]);
            o->have_stubdom = true;
        } else if (!strcmp(a, "--encoding") && i + 1 < argc) {
            if (!ctl_parse_encoding(argv[++i], &o->encoding))
                return ctl_usage_error(&cmd_dmargv, "unknown encoding '%s'",
                                       argv[i]);
        } else if (!strcmp(a, "--max-value") && i + 1 < argc) {
            char *end;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (*end || !v || v > 4096)
                return ctl_usage_error(&cmd_dmargv, "bad --max-value");
            o->max_value = v;
        } else {
            return ctl_usage_error(&cmd_dmargv, "unexpected argument '%s'", a);
        }
    }
    if (!o->vm_path)
        return ctl_usage_error(&cmd_dmargv, "--vm /vm/<uuid> is required");
    return 0;
}

static int do_read(stubdm_ctx *ctx, const struct ctl_global *g,
                   const struct dmargv_opts *o)
{
    char **args = NULL;
    size_t n = 0;
    int rc = stubdm_dm_argv_read(ctx, o->vm_path, o->encoding, &args, &n);

    if (rc)
        return ctl_report_error(ctx, g, "dm-argv read", rc, NULL);
    if (g->json) {
        printf("{\"ok\":true,\"command\":\"dm-argv read\",\"args\":[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                putchar(',');
            ctl_json_string(stdout, args[i]);
        }
        printf("]}\n");
    } else {
        /* One argument per line: what the stubdomain would pass to QEMU.
         * Values came from xenstore, so keep control bytes visible. */
        for (size_t i = 0; i < n; i++) {
            for (const char *p = args[i]; *p; p++) {
                unsigned char c = (unsigned char)*p;
                if (c < 0x20 || c == 0x7f)
                    printf("\\x%02x", c);
                else
                    putchar(c);
            }
            putchar('\n');
        }
    }
    stubdm_argv_free(args);
    return CTL_EXIT_OK;
}

static int run_dmargv(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                      char **argv)
{
    struct dmargv_opts o;
    int rc = parse(argc, argv, &o);

    if (rc)
        return rc;
    if (!strcmp(o.action, "read"))
        return do_read(ctx, g, &o);
    if (strcmp(o.action, "encode") && strcmp(o.action, "write"))
        return ctl_usage_error(&cmd_dmargv, "unknown action '%s'", o.action);
    if (!o.have_stubdom)
        return ctl_usage_error(&cmd_dmargv, "--stubdom DOMID is required");
    if (!strcmp(o.action, "encode")) {
        stubdm_nodes *nodes = NULL;
        rc = stubdm_dm_argv_encode(ctx, o.vm_path, o.stubdom, o.encoding,
                                   o.max_value, o.args, o.nargs, &nodes);
        if (rc)
            return ctl_report_error(ctx, g, "dm-argv encode", rc, NULL);
        ctl_print_nodes(g, "dm-argv encode", nodes);
        stubdm_nodes_free(nodes);
        return CTL_EXIT_OK;
    }
    rc = stubdm_dm_argv_write(ctx, o.vm_path, o.stubdom, o.encoding,
                              o.max_value, o.args, o.nargs);
    if (rc)
        return ctl_report_error(ctx, g, "dm-argv write", rc, NULL);
    if (g->json)
        printf("{\"ok\":true,\"command\":\"dm-argv write\",\"args\":%zu}\n",
               o.nargs);
    else
        printf("wrote %zu arguments under %s\n", o.nargs, o.vm_path);
    return CTL_EXIT_OK;
}

CTL_COMMAND(cmd_dmargv) = {
    .name = "dm-argv",
    .usage = "encode|write|read --vm /vm/UUID [--stubdom DOMID] "
             "[--encoding directory|minios|esc] [--max-value N] [-- ARGS...]",
    .summary = "encode, write or read back the QEMU command line in xenstore",
    .help = "  encode  print the nodes a write would create (no I/O)\n"
            "  write   write them in one transaction (old keys removed)\n"
            "  read    read the argv back as a stubdomain does: list the keys,\n"
            "          sort them as text, read the values; one per line\n"
            "ARGS are QEMU's arguments without argv[0], after \"--\".\n"
            "Refused input (a newline, an empty or over-long argument, more\n"
            "than 999 arguments, bytes the stubdomain's xenstore-read would\n"
            "escape) writes nothing and exits 9.\n",
    .run = run_dmargv,
};
