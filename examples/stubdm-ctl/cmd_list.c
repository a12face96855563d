/*
 * stubdm-ctl list: the stubdomains in xenstore and their state; when
 * stubdmd runs, also what it serves of each (its "list" request).
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* stubdmd's "served" lines, or none (no stubdmd: today's output). */
struct served {
    bool asked;
    long pid;
    struct ctl_stubdmd_reply r;
};

static void ask_stubdmd(const struct ctl_global *g, struct served *sv)
{
    char pid[24];
    int sock, rc = ctl_stubdmd_connect(g, &sock);

    if (rc) {
        if (!ctl_stubdmd_absent(rc))
            fprintf(stderr,
                    "stubdm-ctl list: note: stubdmd's control socket %s: "
                    "%s; listing without it\n",
                    ctl_control_path(g), strerror(-rc));
        return;
    }
    rc = ctl_stubdmd_call(sock, "list", -1, 5000, &sv->r);
    close(sock);
    if (rc || sv->r.rc) {
        fprintf(stderr,
                "stubdm-ctl list: note: stubdmd on %s: %s%s%s; "
                "listing without it\n",
                ctl_control_path(g), rc ? strerror(-rc) : sv->r.last,
                rc ? "" : " ", rc ? "" : stubdm_errname(sv->r.rc));
        ctl_stubdmd_reply_free(&sv->r);
        return;
    }
    sv->asked = true;
    sv->pid = ctl_stubdmd_value(sv->r.last, "pid", pid, sizeof(pid))
                  ? strtol(pid, NULL, 10)
                  : 0;
}

/* stubdmd's line about stubdom, or NULL. */
static const char *served_line(const struct served *sv, uint32_t stubdom)
{
    char key[32];
    size_t k = (size_t)snprintf(key, sizeof(key), "served stub=%u ", stubdom);

    for (const char *p = sv->asked ? sv->r.text : NULL; p && *p;) {
        if (!strncmp(p, key, k))
            return p;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return NULL;
}

static void value(const char *line, const char *key, char *out, size_t cap)
{
    if (!line || !ctl_stubdmd_value(line, key, out, cap))
        snprintf(out, cap, "-");
}

static void print_served_json(const struct served *sv, uint32_t stubdom)
{
    static const char *const keys[] = {"con0", "logged", "dropped", "qmp",
                                       "clients"};
    const char *line = served_line(sv, stubdom);
    char v[256];

    printf(",\"served_by\":");
    if (!line) {
        printf("null");
        return;
    }
    printf("{\"service\":\"stubdmd\",\"pid\":%ld", sv->pid);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        value(line, keys[i], v, sizeof(v));
        printf(",\"%s\":", keys[i]);
        if (strspn(v, "0123456789") == strlen(v) && *v)
            printf("%s", v);
        else
            ctl_json_string(stdout, v);
    }
    printf("}");
}

const struct ctl_option ctl_list_options[] = {
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};

static void print_json(const stubdm_stubdom_list *l, size_t n,
                       const struct served *sv)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"stubdom\":%u,\"guest\":%u,\"name\":", i ? "," : "",
               stubdm_stubdom_list_domid(l, i),
               stubdm_stubdom_list_guest(l, i));
        ctl_json_string(stdout, stubdm_stubdom_list_name(l, i));
        printf(",\"state\":");
        ctl_json_string(stdout, stubdm_stubdom_list_state(l, i));
        if (sv->asked)
            print_served_json(sv, stubdm_stubdom_list_domid(l, i));
        printf("}");
    }
    printf("]\n");
}

static void print_text(const stubdm_stubdom_list *l, size_t n)
{
    printf("%-8s %-6s %-24s %s\n", "STUBDOM", "GUEST", "NAME", "STATE");
    for (size_t i = 0; i < n; i++)
        printf("%-8u %-6u %-24s %s\n", stubdm_stubdom_list_domid(l, i),
               stubdm_stubdom_list_guest(l, i), stubdm_stubdom_list_name(l, i),
               stubdm_stubdom_list_state(l, i));
}

/* With stubdmd: who serves each, console 0, QMP and its proxy clients. */
static void print_text_served(const stubdm_stubdom_list *l, size_t n,
                              const struct served *sv)
{
    char by[32], con0[16], logged[24], qmp[16], clients[24];

    printf("%-8s %-6s %-24s %-8s %-14s %-12s %-10s %-8s %s\n", "STUBDOM",
           "GUEST", "NAME", "STATE", "SERVED-BY", "CON0", "LOGGED", "QMP",
           "CLIENTS");
    for (size_t i = 0; i < n; i++) {
        const char *line = served_line(sv, stubdm_stubdom_list_domid(l, i));
        if (line)
            snprintf(by, sizeof(by), "stubdmd[%ld]", sv->pid);
        else
            snprintf(by, sizeof(by), "-");
        value(line, "con0", con0, sizeof(con0));
        value(line, "logged", logged, sizeof(logged));
        value(line, "qmp", qmp, sizeof(qmp));
        value(line, "clients", clients, sizeof(clients));
        printf("%-8u %-6u %-24s %-8s %-14s %-12s %-10s %-8s %s\n",
               stubdm_stubdom_list_domid(l, i),
               stubdm_stubdom_list_guest(l, i), stubdm_stubdom_list_name(l, i),
               stubdm_stubdom_list_state(l, i), by, con0, logged, qmp,
               clients);
    }
}

int ctl_list_run(stubdm_ctx *ctx, const struct ctl_global *g,
                 const struct ctl_command *cmd, int argc, char **argv)
{
    stubdm_stubdom_list *l = NULL;
    struct served sv = {.r.fd = -1};
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
    ask_stubdmd(g, &sv);
    n = stubdm_stubdom_list_count(l);
    if (g->json)
        print_json(l, n, &sv);
    else if (!sv.asked)
        print_text(l, n);
    else
        print_text_served(l, n, &sv);
    ctl_stubdmd_reply_free(&sv.r);
    stubdm_stubdom_list_free(l);
    return CTL_EXIT_OK;
}

const char ctl_list_help[] =
    "STATE is running (device model running), starting, or why the\n"
    "domain is gone (e.g. \"crashed (signal 11)\").\n"
    "When stubdmd runs (--control SOCKET), also who serves each\n"
    "stubdomain (SERVED-BY stubdmd[PID], or -), its console 0's state and\n"
    "bytes logged, its QMP (ready, opening, lost) and the QMP proxy's\n"
    "clients; in JSON a \"served_by\" object (or null).  Without stubdmd\n"
    "the output is as before.\n";
