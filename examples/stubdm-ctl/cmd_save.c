/*
 * stubdm-ctl save STUBDOM --out FILE
 *
 * Saves the device model's state of a running stubdomain: QMP stop, then
 * xen-save-devices-state to /dev/fdset/1 (the stubdomain's console 1),
 * served by this process for the save's duration (stubdm_dm_save); the
 * command returns once the whole stream is in FILE.  The device model is
 * left stopped, as libxl expects during a domain save.
 *
 * When stubdmd serves the stubdomain it holds the QMP connection, so the
 * save goes through it: FILE is opened here and passed as an fd over the
 * control socket, stubdmd saves through its handle (stubdm_dm_save_qmp).
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct save_opts {
    const char *out;
    uint32_t guest;
    uint64_t limit;
    int timeout_ms;
};

#define O(field) offsetof(struct save_opts, field)
const struct ctl_option ctl_save_options[] = {
    {"out", 0, CTL_ARG_STRING, O(out), "FILE", 0, 0, NULL, NULL},
    {"guest", 0, CTL_ARG_DOMID, O(guest), "DOMID", 0, 0, NULL, NULL},
    {"limit", 0, CTL_ARG_UINT, O(limit), "BYTES", 1, UINT64_MAX - 1, NULL,
     NULL},
    {"timeout", 0, CTL_ARG_SECONDS, O(timeout_ms), "SECONDS", 0, 0, NULL,
     NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};
#undef O

/* The guest a stubdomain serves: its "target", as listed. */
static int target_of(stubdm_ctx *ctx, const struct ctl_global *g,
                     uint32_t stubdom, uint32_t *guest)
{
    stubdm_stubdom_list *l = NULL;
    bool found = false;
    char msg[64];
    int rc = stubdm_stubdom_list_new(ctx, &l);

    if (rc)
        return ctl_report_error(ctx, g, "save", rc, NULL);
    for (size_t i = 0; i < stubdm_stubdom_list_count(l); i++)
        if (stubdm_stubdom_list_domid(l, i) == stubdom) {
            *guest = stubdm_stubdom_list_guest(l, i);
            found = true;
        }
    stubdm_stubdom_list_free(l);
    if (found)
        return 0;
    snprintf(msg, sizeof(msg), "%u is not a stubdomain", stubdom);
    return ctl_report_error(ctx, g, "save", STUBDM_ENOENT, msg);
}

/* The save through stubdmd: 0 (done: *bytes), NOT_SERVED (stubdmd does
 * not run or does not serve stubdom: save here), or an exit code
 * (reported). */
#define NOT_SERVED (-1)
static int save_by_stubdmd(const struct ctl_global *g,
                           const struct save_opts *o, uint32_t stubdom, int fd,
                           uint64_t *bytes)
{
    struct ctl_stubdmd_reply r = {.fd = -1};
    char req[96], v[32], msg[512];
    int sock, rc = ctl_stubdmd_connect(g, &sock);

    if (rc)
        return NOT_SERVED;
    snprintf(req, sizeof(req), "save %u %d %llu", stubdom, o->timeout_ms,
             o->limit == CTL_UNSET_UINT ? 0ULL : (unsigned long long)o->limit);
    rc = ctl_stubdmd_call(sock, req, fd, o->timeout_ms + 5000, &r);
    close(sock);
    if (rc) {
        snprintf(msg, sizeof(msg), "stubdmd on %s: %s", ctl_control_path(g),
                 strerror(-rc));
        rc = ctl_report_error(NULL, g, "save",
                              rc == -ETIMEDOUT ? STUBDM_ETIMEDOUT
                                               : STUBDM_EFAIL,
                              msg);
    } else if (r.rc == STUBDM_ENOENT || r.rc == STUBDM_EPERM) {
        rc = NOT_SERVED; /* not its stubdomain, or not ours to ask: as without
                            it */
    } else if (r.rc) {
        rc = ctl_stubdmd_report(g, "save", &r);
    } else {
        *bytes = ctl_stubdmd_value(r.last, "bytes", v, sizeof(v))
                     ? strtoull(v, NULL, 10)
                     : 0;
    }
    ctl_stubdmd_reply_free(&r);
    return rc;
}

int ctl_save_run(stubdm_ctx *ctx, const struct ctl_global *g,
                 const struct ctl_command *cmd, int argc, char **argv)
{
    struct save_opts o = {.guest = CTL_UNSET_DOMID,
                          .limit = CTL_UNSET_UINT,
                          .timeout_ms = 30000};
    struct ctl_args a;
    uint32_t stubdom = 0, guest;
    uint64_t bytes = 0;
    int64_t t0;
    int fd, rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a)))
        return rc;
    if (a.npos != 1 || a.nrest || !o.out)
        return ctl_usage_error(cmd, "need STUBDOM and --out FILE");
    if (!ctl_parse_domid(a.pos[0], &stubdom))
        return ctl_usage_error(cmd, "bad STUBDOM domid '%s'", a.pos[0]);
    if (o.limit != CTL_UNSET_UINT)
        stubdm_ctx_set_save_limit(ctx, o.limit);
    guest = o.guest;
    if (guest == CTL_UNSET_DOMID && (rc = target_of(ctx, g, stubdom, &guest)))
        return rc;
    fd = open(o.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(o.out);
        return CTL_EXIT_FAIL;
    }
    t0 = stubdm_now_ms();
    rc = save_by_stubdmd(g, &o, stubdom, fd, &bytes);
    if (rc == NOT_SERVED)
        rc = stubdm_dm_save_sync(ctx, stubdom, guest, fd, o.timeout_ms,
                                 &bytes);
    else if (rc) {
        close(fd);
        unlink(o.out);
        return rc;
    }
    close(fd);
    if (rc) {
        unlink(o.out);
        return ctl_report_error(ctx, g, "save", rc, NULL);
    }
    if (g->json)
        printf("{\"stubdom\":%u,\"guest\":%u,\"bytes\":%llu,\"seconds\":%.3f}"
               "\n",
               stubdom, guest, (unsigned long long)bytes,
               (stubdm_now_ms() - t0) / 1000.0);
    else
        fprintf(stderr,
                "saved the device model of guest %u (stubdomain %u): %llu "
                "bytes to %s in %.3f s; it is stopped (QMP cont resumes it)\n",
                guest, stubdom, (unsigned long long)bytes, o.out,
                (stubdm_now_ms() - t0) / 1000.0);
    return CTL_EXIT_OK;
}

const char ctl_save_help[] =
    "QMP stop, then xen-save-devices-state to /dev/fdset/1, which the\n"
    "stubdomain connected to its console 1; this process serves console\n"
    "1 and returns once the whole stream is in FILE (the stubdomain\n"
    "reports the stream's end when it offers feature-stream-end).\n"
    "Restore with: stubdm-ctl spawn ... --restore FILE.\n"
    "When stubdmd serves STUBDOM (--control SOCKET), the save goes\n"
    "through it (it holds the QMP connection): FILE is passed to it as an\n"
    "fd, never as a path.\n"
    "Needs the libstubdm console backend.  --guest: default the\n"
    "stubdomain's target.  --timeout: default 30 s.  --limit: the\n"
    "stream's bound (default 64 MiB); a stubdomain streaming more ends\n"
    "the save (exit 9) and FILE is removed, as on any failure.\n";
