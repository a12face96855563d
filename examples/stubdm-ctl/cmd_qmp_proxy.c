/*
 * stubdm-ctl qmp-proxy STUBDOM GUEST --listen PATH [options]
 *
 * The multiplexing proxy: holds the stubdomain's single QMP connection and
 * serves local clients on a unix socket.
 */
#include "qmp_conn.h"

#include <grp.h>

#define O(field) offsetof(struct qmp_args, field)
const struct ctl_option ctl_qmp_proxy_options[] = {
    {"listen", 0, CTL_ARG_STRING, O(listen), "PATH", 0, 0, NULL, NULL},
    {"group", 0, CTL_ARG_STRING, O(group), "GROUP", 0, 0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, ctl_qmp_conn_options},
};
#undef O

/* --group: a group name, else a numeric gid. */
static bool group_id(const char *name, uint32_t *gid)
{
    struct group *gr = getgrnam(name);
    uint64_t v;

    if (gr) {
        *gid = (uint32_t)gr->gr_gid;
        return true;
    }
    if (ctl_parse_uint(name, 0, UINT32_MAX - 1, &v))
        return false;
    *gid = (uint32_t)v;
    return true;
}

static int start_proxy(stubdm_ctx *ctx, const struct ctl_global *g,
                       const struct ctl_command *cmd, const struct qmp_args *a,
                       stubdm_qmp *q, stubdm_qmp_proxy **p)
{
    stubdm_qmp_proxy_opts *o = NULL;
    uint32_t gid = 0;
    int rc;

    if (a->group && !group_id(a->group, &gid))
        return ctl_usage_error(cmd, "--group: no group '%s'", a->group);
    /* With --group the socket appears already 0660 and the group's. */
    rc = stubdm_qmp_proxy_opts_new(&o);
    if (!rc)
        rc = stubdm_qmp_proxy_opts_set_path(o, a->listen);
    if (!rc)
        rc = stubdm_qmp_proxy_opts_set_timeouts(o, a->timeout_ms, 0);
    if (!rc && a->group)
        rc = stubdm_qmp_proxy_opts_set_group(o, gid);
    if (!rc && a->group)
        rc = stubdm_qmp_proxy_opts_set_mode(o, 0660);
    if (!rc)
        rc = stubdm_qmp_proxy_new_ext(q, o, p);
    stubdm_qmp_proxy_opts_free(o);
    return rc ? ctl_report_error(ctx, g, "qmp-proxy", rc, NULL) : 0;
}

int ctl_qmp_proxy_run(stubdm_ctx *ctx, const struct ctl_global *g,
                      const struct ctl_command *cmd, int argc, char **argv)
{
    struct qmp_args a = QMP_ARGS_DEFAULTS;
    struct ctl_args pa;
    stubdm_qmp *q = NULL;
    stubdm_qmp_proxy *p = NULL;
    int code;

    if ((code = ctl_parse(cmd, cmd->options, argc, argv, false, &a, &pa)) ||
        (code = ctl_qmp_domids(cmd, &pa, &a)))
        return code;
    if (pa.npos != 2 || pa.nrest || !a.listen)
        return ctl_usage_error(cmd, "need --listen PATH");
    if ((code = ctl_qmp_open(ctx, g, &a, "qmp-proxy", &q)))
        return code;
    code = start_proxy(ctx, g, cmd, &a, q, &p);
    if (!code) {
        if (g->json) {
            printf("{\"ok\":true,\"command\":\"qmp-proxy\",\"listen\":");
            ctl_json_string(stdout, a.listen);
            printf("}\n");
        } else {
            fprintf(stderr,
                    "qmp-proxy: stubdomain %u guest %u, listening on %s\n",
                    a.stubdom, a.guest, a.listen);
        }
        fflush(stdout);
        code = ctl_qmp_follow(ctx, g, q, "qmp-proxy");
    }
    stubdm_qmp_proxy_free(p);
    stubdm_qmp_free(q);
    return code;
}

const char ctl_qmp_proxy_help[] =
    "Holds the stubdomain's single QMP connection and serves any\n"
    "number of QMP clients on the unix socket PATH, each with its own\n"
    "greeting, negotiation and id space; events go to all.  Runs until\n"
    "SIGINT or SIGTERM.  The socket is mode 0600; clients are\n"
    "identified by their credentials, and only root and this user\n"
    "are served (others are refused and logged).\n"
    "  --group GROUP        also serve GROUP's members (name or gid;\n"
    "                       the socket becomes 0660, group "
    "GROUP)\n" CTL_QMP_CONN_HELP;
