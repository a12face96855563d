/*
 * stubdm-ctl restore STUBDOM --in FILE
 *
 * Give stubdmd the saved device state for a stubdomain it serves that was
 * spawned for restore (its QEMU waiting with -incoming on console 2, the
 * console left to the service: stubdm-ctl spawn --service
 * --restore-by-service): stubdmd serves console 2 from FILE, passed as an
 * fd (it never opens a path it is given), and answers once QEMU has read
 * the whole stream.  A running device model cannot be restored into.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

struct restore_opts {
    const char *in;
    int timeout_ms;
};

#define O(field) offsetof(struct restore_opts, field)
const struct ctl_option ctl_restore_options[] = {
    {"in", 0, CTL_ARG_STRING, O(in), "FILE", 0, 0, NULL, NULL},
    {"timeout", 0, CTL_ARG_SECONDS, O(timeout_ms), "SECONDS", 0, 0, NULL,
     NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

int ctl_restore_run(stubdm_ctx *ctx, const struct ctl_global *g,
                    const struct ctl_command *cmd, int argc, char **argv)
{
    struct restore_opts o = {.timeout_ms = 30000};
    struct ctl_stubdmd_reply r = {.fd = -1};
    struct ctl_args a;
    uint32_t stubdom;
    char req[64], msg[512], bytes[32] = "?";
    int sock, fd, rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a)))
        return rc;
    if (a.npos != 1 || a.nrest || !o.in)
        return ctl_usage_error(cmd, "need STUBDOM and --in FILE");
    if (!ctl_parse_domid(a.pos[0], &stubdom))
        return ctl_usage_error(cmd, "bad STUBDOM domid '%s'", a.pos[0]);
    if ((rc = ctl_stubdmd_connect(g, &sock))) {
        if (!ctl_stubdmd_absent(rc))
            return ctl_stubdmd_unreachable(ctx, g, "restore", rc);
        snprintf(msg, sizeof(msg),
                 "no stubdmd answers on %s (%s); without it, restore at the "
                 "spawn: stubdm-ctl spawn --restore FILE",
                 ctl_control_path(g), strerror(-rc));
        return ctl_report_error(ctx, g, "restore", STUBDM_ENOTSUP, msg);
    }
    if ((fd = open(o.in, O_RDONLY | O_CLOEXEC)) < 0) {
        perror(o.in);
        close(sock);
        return CTL_EXIT_FAIL;
    }
    snprintf(req, sizeof(req), "restore %u", stubdom);
    rc = ctl_stubdmd_call(sock, req, fd, o.timeout_ms, &r);
    close(fd);
    close(sock); /* on a timeout, this ends the restore */
    if (rc) {
        snprintf(msg, sizeof(msg), "stubdmd on %s: %s", ctl_control_path(g),
                 strerror(-rc));
        ctl_stubdmd_reply_free(&r);
        return ctl_report_error(ctx, g, "restore",
                                rc == -ETIMEDOUT ? STUBDM_ETIMEDOUT
                                                 : STUBDM_EFAIL,
                                msg);
    }
    if (r.rc) {
        rc = ctl_stubdmd_report(g, "restore", &r);
        ctl_stubdmd_reply_free(&r);
        return rc;
    }
    ctl_stubdmd_value(r.last, "bytes", bytes, sizeof(bytes));
    if (g->json)
        printf("{\"stubdom\":%u,\"bytes\":%s,\"by\":\"stubdmd\"}\n", stubdom,
               bytes);
    else
        fprintf(stderr,
                "restored: stubdmd gave %s bytes of %s to stubdomain %u\n",
                bytes, o.in, stubdom);
    ctl_stubdmd_reply_free(&r);
    return CTL_EXIT_OK;
}

const char ctl_restore_help[] =
    "For a stubdomain stubdmd serves that was spawned for restore with\n"
    "console 2 left to the service (spawn --service --restore-by-service):\n"
    "stubdmd feeds console 2 from FILE (passed as an fd) and answers once\n"
    "the stubdomain has read it all; the spawn then sees the device model\n"
    "running.  Needs stubdmd (--control SOCKET); without it, restore at\n"
    "the spawn (spawn --restore FILE).  --timeout: default 30 s; on it the\n"
    "restore is ended.\n";
