/*
 * stubdm-ctl save STUBDOM --out FILE
 *
 * Saves the device model's state of a running stubdomain: QMP stop, then
 * xen-save-devices-state to /dev/fdset/1 (the stubdomain's console 1),
 * served by this process for the save's duration (stubdm_dm_save); the
 * command returns once the whole stream is in FILE.  The device model is
 * left stopped, as libxl expects during a domain save.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ctl_command cmd_save;

static int run_save(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                    char **argv)
{
    const char *out = NULL;
    uint32_t stubdom = 0, guest = 0;
    bool have = false, have_guest = false;
    int timeout_ms = 30000, fd, rc;
    uint64_t bytes = 0;
    int64_t t0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            if (++i >= argc)
                return ctl_usage_error(&cmd_save, "--out needs a file");
            out = argv[i];
        } else if (!strcmp(argv[i], "--guest")) {
            if (++i >= argc || !ctl_parse_domid(argv[i], &guest))
                return ctl_usage_error(&cmd_save, "--guest needs a domid");
            have_guest = true;
        } else if (!strcmp(argv[i], "--limit")) {
            char *end;
            unsigned long long v;
            if (++i >= argc || argv[i][0] < '0' || argv[i][0] > '9')
                return ctl_usage_error(&cmd_save, "--limit needs bytes");
            errno = 0;
            v = strtoull(argv[i], &end, 10);
            if (errno || *end || v == 0)
                return ctl_usage_error(&cmd_save, "--limit needs bytes");
            stubdm_ctx_set_save_limit(ctx, (uint64_t)v);
        } else if (!strcmp(argv[i], "--timeout")) {
            if (++i >= argc || !ctl_parse_seconds(argv[i], &timeout_ms))
                return ctl_usage_error(&cmd_save, "--timeout needs seconds");
        } else if (!have && ctl_parse_domid(argv[i], &stubdom)) {
            have = true;
        } else {
            return ctl_usage_error(&cmd_save, "unexpected argument '%s'",
                                   argv[i]);
        }
    }
    if (!have || !out)
        return ctl_usage_error(&cmd_save, "need STUBDOM and --out FILE");
    if (!have_guest) {
        /* The guest it serves: its "target", as listed. */
        stubdm_stubdom_list *l = NULL;
        rc = stubdm_list(ctx, &l);
        if (rc)
            return ctl_report_error(ctx, g, "save", rc, NULL);
        for (size_t i = 0; i < stubdm_stubdom_list_count(l); i++)
            if (stubdm_stubdom_list_domid(l, i) == stubdom) {
                guest = stubdm_stubdom_list_guest(l, i);
                have_guest = true;
            }
        stubdm_stubdom_list_free(l);
        if (!have_guest) {
            fprintf(stderr, "stubdm-ctl save: %u is not a stubdomain\n",
                    stubdom);
            return CTL_EXIT_XENSTORE;
        }
    }
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(out);
        return CTL_EXIT_FAIL;
    }
    t0 = stubdm_now_ms();
    rc = stubdm_dm_save_sync(ctx, NULL, stubdom, guest, fd, timeout_ms,
                             &bytes);
    close(fd);
    if (rc) {
        unlink(out);
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
                guest, stubdom, (unsigned long long)bytes, out,
                (stubdm_now_ms() - t0) / 1000.0);
    return CTL_EXIT_OK;
}

CTL_COMMAND(cmd_save) = {
    .name = "save",
    .usage = "STUBDOM --out FILE [--guest DOMID] [--timeout SECONDS] "
             "[--limit BYTES]",
    .summary = "save the device model's state through console 1",
    .help =
        "QMP stop, then xen-save-devices-state to /dev/fdset/1, which the\n"
        "stubdomain connected to its console 1; this process serves console\n"
        "1 and returns once the whole stream is in FILE (the stubdomain\n"
        "reports the stream's end when it offers feature-stream-end).\n"
        "Restore with: stubdm-ctl spawn ... --restore FILE.\n"
        "Needs the libstubdm console backend.  --guest: default the\n"
        "stubdomain's target.  --timeout: default 30 s.  --limit: the\n"
        "stream's bound (default 64 MiB); a stubdomain streaming more ends\n"
        "the save (exit 9) and FILE is removed, as on any failure.\n",
    .run = run_save,
};
