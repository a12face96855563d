/*
 * stubdm-ctl dm-argv encode|write|read
 *
 * encode and write take QEMU's arguments (without argv[0]) after "--";
 * read prints them back the way a stubdomain reads them.
 */
#include "ctl.h"

#include <string.h>

struct dmargv_opts {
    const char *vm_path;
    uint32_t stubdom;
    int encoding;
    uint64_t max_value; /* 0: the library's default */
};

#define O(field) offsetof(struct dmargv_opts, field)
const struct ctl_option ctl_dmargv_options[] = {
    {"vm", 0, CTL_ARG_STRING, O(vm_path), "/vm/UUID", 0, 0, NULL, NULL},
    {"stubdom", 0, CTL_ARG_DOMID, O(stubdom), "DOMID", 0, 0, NULL, NULL},
    {"encoding", 0, CTL_ARG_CHOICE, O(encoding), "encoding", 0, 0,
     ctl_encodings, NULL},
    {"max-value", 0, CTL_ARG_UINT, O(max_value), "N", 1, 4096, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

static int do_read(stubdm_ctx *ctx, const struct ctl_global *g,
                   const struct dmargv_opts *o)
{
    char **args = NULL;
    size_t n = 0;
    int rc = stubdm_dm_argv_read(ctx, o->vm_path,
                                 (stubdm_dm_argv_encoding)o->encoding, &args,
                                 &n);

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
    stubdm_dm_argv_free(args);
    return CTL_EXIT_OK;
}

static int do_encode(stubdm_ctx *ctx, const struct ctl_global *g,
                     const struct dmargv_opts *o, const struct ctl_args *a)
{
    stubdm_nodes *nodes = NULL;
    int rc = stubdm_dm_argv_encode(ctx, o->vm_path, o->stubdom,
                                   (stubdm_dm_argv_encoding)o->encoding,
                                   (size_t)o->max_value, a->rest, a->nrest,
                                   &nodes);

    if (rc)
        return ctl_report_error(ctx, g, "dm-argv encode", rc, NULL);
    ctl_print_nodes(g, "dm-argv encode", nodes);
    stubdm_nodes_free(nodes);
    return CTL_EXIT_OK;
}

static int do_write(stubdm_ctx *ctx, const struct ctl_global *g,
                    const struct dmargv_opts *o, const struct ctl_args *a)
{
    int rc = stubdm_dm_argv_write(ctx, o->vm_path, o->stubdom,
                                  (stubdm_dm_argv_encoding)o->encoding,
                                  (size_t)o->max_value, a->rest, a->nrest);

    if (rc)
        return ctl_report_error(ctx, g, "dm-argv write", rc, NULL);
    if (g->json)
        printf("{\"ok\":true,\"command\":\"dm-argv write\",\"args\":%zu}\n",
               a->nrest);
    else
        printf("wrote %zu arguments under %s\n", a->nrest, o->vm_path);
    return CTL_EXIT_OK;
}

int ctl_dmargv_run(stubdm_ctx *ctx, const struct ctl_global *g,
                   const struct ctl_command *cmd, int argc, char **argv)
{
    struct dmargv_opts o = {.stubdom = CTL_UNSET_DOMID,
                            .encoding = STUBDM_DM_ARGV_DIRECTORY};
    struct ctl_args a;
    const char *action;
    int rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a)))
        return rc;
    if (!a.npos)
        return ctl_usage_error(cmd, "need encode, write or read");
    if (a.npos > 1)
        return ctl_usage_error(cmd, "unexpected argument '%s'", a.pos[1]);
    action = a.pos[0];
    if (!o.vm_path)
        return ctl_usage_error(cmd, "--vm /vm/<uuid> is required");
    if (!strcmp(action, "read"))
        return do_read(ctx, g, &o);
    if (strcmp(action, "encode") && strcmp(action, "write"))
        return ctl_usage_error(cmd, "unknown action '%s'", action);
    if (o.stubdom == CTL_UNSET_DOMID)
        return ctl_usage_error(cmd, "--stubdom DOMID is required");
    return !strcmp(action, "encode") ? do_encode(ctx, g, &o, &a)
                                     : do_write(ctx, g, &o, &a);
}

const char ctl_dmargv_help[] =
    "  encode  print the nodes a write would create (no I/O)\n"
    "  write   write them in one transaction (old keys removed)\n"
    "  read    read the argv back as a stubdomain does: list the keys,\n"
    "          sort them as text, read the values; one per line\n"
    "ARGS are QEMU's arguments without argv[0], after \"--\".\n"
    "Refused input (a newline, an empty or over-long argument, more\n"
    "than 999 arguments, bytes the stubdomain's xenstore-read would\n"
    "escape) writes nothing and exits 9.\n";
