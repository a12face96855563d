/*
 * stubdm-ctl list: the stubdomains in xenstore and their state.
 */
#include "ctl.h"

const struct ctl_option ctl_list_options[] = {
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};

static void print_json(const stubdm_stubdom_list *l, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"stubdom\":%u,\"guest\":%u,\"name\":", i ? "," : "",
               stubdm_stubdom_list_domid(l, i),
               stubdm_stubdom_list_guest(l, i));
        ctl_json_string(stdout, stubdm_stubdom_list_name(l, i));
        printf(",\"state\":");
        ctl_json_string(stdout, stubdm_stubdom_list_state(l, i));
        printf("}");
    }
    printf("]\n");
}

int ctl_list_run(stubdm_ctx *ctx, const struct ctl_global *g,
                 const struct ctl_command *cmd, int argc, char **argv)
{
    stubdm_stubdom_list *l = NULL;
    struct ctl_args a;
    size_t n;
    int rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, NULL, &a)))
        return rc;
    if (a.npos || a.nrest)
        return ctl_usage_error(cmd, "unexpected argument '%s'",
                               a.npos ? a.pos[0] : a.rest[0]);
    rc = stubdm_stubdom_list_new(ctx, &l);
    if (rc)
        return ctl_report_error(ctx, g, "list", rc, NULL);
    n = stubdm_stubdom_list_count(l);
    if (g->json) {
        print_json(l, n);
    } else {
        printf("%-8s %-6s %-24s %s\n", "STUBDOM", "GUEST", "NAME", "STATE");
        for (size_t i = 0; i < n; i++)
            printf("%-8u %-6u %-24s %s\n", stubdm_stubdom_list_domid(l, i),
                   stubdm_stubdom_list_guest(l, i),
                   stubdm_stubdom_list_name(l, i),
                   stubdm_stubdom_list_state(l, i));
    }
    stubdm_stubdom_list_free(l);
    return CTL_EXIT_OK;
}

const char ctl_list_help[] =
    "STATE is running (device model running), starting, or why the\n"
    "domain is gone (e.g. \"crashed (signal 11)\").\n";
