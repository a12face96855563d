/*
 * What `qmp` and `qmp-proxy` share: the QMP connection options (one
 * option table, searched after each command's own) and the open.
 */
#ifndef STUBDM_CTL_QMP_CONN_H
#define STUBDM_CTL_QMP_CONN_H

#include "ctl.h"

struct qmp_args {
    uint32_t stubdom, guest;
    int timeout_ms;      /* per command */
    int open_timeout_ms; /* 0: the library's default */
    int transport;       /* CTL_UNSET_CHOICE: the library's default */
    const char *sim_dir;
    bool lock_wait, marker, oob;
    bool interactive, events;   /* qmp */
    const char *listen, *group; /* qmp-proxy */
};

#define QMP_ARGS_DEFAULTS                                                     \
    {                                                                         \
        .timeout_ms = 10000, .transport = CTL_UNSET_CHOICE                    \
    }

extern const struct ctl_option ctl_qmp_conn_options[];

/* "  --timeout S ..." lines of both commands' help. */
#define CTL_QMP_CONN_HELP                                                     \
    "  --timeout S          per-command timeout (default 10)\n"               \
    "  --open-timeout S     connect + greeting + negotiation (default 10)\n"  \
    "  --transport T        auto (default), vchan or sim\n"                   \
    "  --sim-dir DIR        simulated host runtime directory\n"               \
    "  --lock-wait          wait for another client's lock instead of\n"      \
    "                       failing with exit 10\n"                           \
    "  --reconnect-marker   send Qubes' 0x01 marker first\n"                  \
    "  --oob                enable out-of-band execution if offered\n"

/* The STUBDOM and GUEST positional domids.  0 or CTL_EXIT_USAGE. */
int ctl_qmp_domids(const struct ctl_command *cmd, const struct ctl_args *p,
                   struct qmp_args *a);

/* Open QMP as a says; 0 or the exit code (reported as what). */
int ctl_qmp_open(stubdm_ctx *ctx, const struct ctl_global *g,
                 const struct qmp_args *a, const char *what, stubdm_qmp **q);

/* Drive the ctx until interrupted or the connection is lost; 0 if
 * interrupted, else the "QMP connection lost" exit code. */
int ctl_qmp_follow(stubdm_ctx *ctx, const struct ctl_global *g, stubdm_qmp *q,
                   const char *what);

/* One loop iteration over the library's fds plus, optionally, stdin. */
int ctl_qmp_loop_once(stubdm_ctx *ctx, bool with_stdin, bool *stdin_ready,
                      int max_ms);

#endif
