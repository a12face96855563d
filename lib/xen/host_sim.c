/*
 * The simulated host's "hypervisor": the mock xenstored's dom0-only
 * control commands (docs/simulated-host.md).  Only libxenstore is used:
 * the library starts no process for it (its only children are hotplug
 * scripts, hotplug.c); the mock starts, reaps and reports the
 * simulated stubdomain's process, so its death reaches the library as a
 * released domain with a recorded cause, exactly like a real one.
 */
#include "core/error.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/num.h"
#include "xen/host.h"
#include "xen/xs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

/* The stand-in stubdomain the mock finds next to itself (or in $PATH). */
#define SIM_DEFAULT_PROGRAM "stubdm-sim-stubdom"

/* Send "cmd\0arg\0arg\0..." and return the reply (free() it). */
static int sim_control(stubdm_ctx *ctx, const char *what,
                       const char *const *words, size_t nwords,
                       char **reply_out)
{
    struct xs_handle *xsh = NULL;
    struct stubdm__buf b;
    char *reply, empty[1] = "";
    int rc = stubdm__xs_handle(ctx, &xsh);

    if (reply_out)
        *reply_out = NULL;
    if (rc)
        return rc;
    stubdm__buf_init(&b, 4000); /* below XENSTORE_PAYLOAD_MAX */
    for (size_t i = 1; i < nwords; i++) {
        rc = stubdm__buf_append(&b, words[i], strlen(words[i]) + 1);
        if (rc) {
            stubdm__buf_dispose(&b);
            return stubdm__fail(ctx, rc == STUBDM_ELIMIT ? STUBDM_ELIMIT : rc,
                                0, "%s: the control command is too long",
                                what);
        }
    }
    stubdm__xs_count(ctx, 1);
    reply = xs_control_command(xsh, words[0], b.data ? b.data : empty,
                               (unsigned)b.len);
    stubdm__buf_dispose(&b);
    if (!reply) {
        int err = errno;
        if (err == EACCES || err == EINVAL || err == ENOSYS)
            return stubdm__fail(ctx, STUBDM_ENOTSUP, err,
                                "%s: xenstored refused '%s' (%s): it is not "
                                "the simulated host's stubdm-mock-xenstored, "
                                "or this connection is not dom0",
                                what, words[0], strerror(err));
        return stubdm__fail(ctx, stubdm__xs_errno_to_rc(err), err,
                            "%s: %s: %s", what, words[0], strerror(err));
    }
    if (reply_out)
        *reply_out = reply;
    else
        free(reply);
    return 0;
}

static int sim_create(stubdm_ctx *ctx, struct stubdm__build *b)
{
    char req[16], *reply = NULL;
    const char *words[2] = {"sim-create", req};
    uint32_t v = 0;
    int rc;

    snprintf(req, sizeof(req), "%u", b->domid_req);
    rc = sim_control(ctx, "creating the simulated domain", words,
                     b->domid_req ? 2 : 1, &reply);
    if (rc)
        return rc;
    if (stubdm__num_parse_domid(reply, &v) || v == 0) {
        rc = stubdm__fail(ctx, STUBDM_EPROTO, 0,
                          "sim-create answered '%.40s', not a domid", reply);
        free(reply);
        return rc;
    }
    free(reply);
    b->domid = v;
    /* No rings: the simulated domain talks to xenstore over a socket. */
    b->store_mfn = b->console_mfn = 0;
    b->store_port = b->console_port = 0;
    LOG_DEBUG(ctx, "spawn", "simulated domain %u created", b->domid);
    return 0;
}

static int sim_set_target(stubdm_ctx *ctx, uint32_t domid, uint32_t guest)
{
    (void)ctx;
    (void)domid;
    (void)guest;
    return 0; /* no hypervisor-side privileges to grant */
}

static int sim_unpause(stubdm_ctx *ctx, const struct stubdm__build *b)
{
    const char **words;
    char domid[16];
    size_t n = 0;
    int rc;

    words = stubdm__calloc(b->sim_nargs + 3, sizeof(*words));
    if (!words)
        return stubdm__fail(ctx, STUBDM_ENOMEM, ENOMEM, "sim-start");
    snprintf(domid, sizeof(domid), "%u", b->domid);
    words[n++] = "sim-start";
    words[n++] = domid;
    words[n++] = b->sim_program ? b->sim_program : SIM_DEFAULT_PROGRAM;
    for (size_t i = 0; i < b->sim_nargs; i++)
        words[n++] = b->sim_args[i];
    rc = sim_control(ctx, "starting the simulated stubdomain", words, n, NULL);
    free(words);
    return rc;
}

static int sim_destroy(stubdm_ctx *ctx, uint32_t domid)
{
    char d[16];
    const char *words[2] = {"sim-destroy", d};
    int rc;

    snprintf(d, sizeof(d), "%u", domid);
    rc = sim_control(ctx, "destroying the simulated domain", words, 2, NULL);
    if (rc == STUBDM_ENOENT) {
        stubdm__clear_error(ctx);
        return 0;
    }
    return rc;
}

/* SIGSTOP / SIGCONT of the simulated domain's process group. */
static int sim_pause(stubdm_ctx *ctx, uint32_t domid, bool pause)
{
    char d[16];
    const char *words[2] = {pause ? "sim-pause" : "sim-unpause", d};

    snprintf(d, sizeof(d), "%u", domid);
    return sim_control(ctx,
                       pause ? "pausing the simulated domain"
                             : "unpausing the simulated domain",
                       words, 2, NULL);
}

const struct stubdm__host_ops stubdm__host_sim = {
    .name = "simulated",
    .simulated = true,
    .create = sim_create,
    .set_target = sim_set_target,
    .unpause = sim_unpause,
    .destroy = sim_destroy,
    .pause = sim_pause,
};
